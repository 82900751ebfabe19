"""Run ``restorever`` in a child process that sends itself a real OS signal right after its ``after``-th cache
entry is written: an interruption at a known point of the run, whatever the machine's load (a parent polling the
cache folder and signalling from outside missed the middle of a short run on a loaded 2-core machine).

The child starts with SIGINT at its default action even where the test runner was started as a background job
(a non-interactive shell's ``cmd &`` ignores SIGINT in the job, the children inherit that, and Python then installs
no KeyboardInterrupt handler): a user's Ctrl-C at a terminal always reaches the command."""
from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any, Sequence

_SELF_SIGNAL = """
import os, sys
from restorever.pipeline import cache
signum, after = int(sys.argv[1]), int(sys.argv[2])
put, written = cache.ArrayCache.put, []
def put_then_signal(self, kind, key, data):
    put(self, kind, key, data)
    written.append(key)
    if len(written) == after:
        os.kill(os.getpid(), signum)
cache.ArrayCache.put = put_then_signal
from restorever.cli import main
sys.argv = ["restorever", *sys.argv[3:]]
main()
"""


def _sigint_at_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_signalled(args: Sequence[Any], signum: int, after: int, *, env: dict[str, str],
                  timeout: float = 600) -> subprocess.CompletedProcess:
    """``restorever *args`` in a child that signals itself with ``signum`` after its ``after``-th cache entry;
    stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-c", _SELF_SIGNAL, str(int(signum)), str(after), *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=_sigint_at_default)

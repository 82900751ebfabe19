"""A run lock: one process at a time writes a run folder."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import RestoreverError


class RunLockedError(RestoreverError):
    """Another process holds the run folder's lock."""


class RunLock:
    """``with RunLock(out):`` holds an exclusive, non-blocking ``flock`` on ``out/.restorever.lock``.

    The lock is released by the kernel if the process dies (``kill -9`` included), so a stale lock file never blocks a
    resume.
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / ".restorever.lock"
        self._fh = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunLockedError(f"{self.path.parent} is being written by {holder}; wait for it to finish or pass "
                                 f"another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

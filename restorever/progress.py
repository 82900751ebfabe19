"""Progress bars for long stages, one rule everywhere: a bar on a terminal, a plain line a minute in a log.

A bar is shown when the caller enables it and the ``restorever`` logger lets warnings through (``restorever -q``
raises it to errors only: quiet means nothing on stderr but errors). On a terminal it is tqdm's bar. When stderr is
a log file or a pipe (a batch job), the same bar is written as whole lines, at most one every
:data:`LOG_INTERVAL_S` seconds and none for a stage or download that ends sooner: a log gets no carriage-return
residue, yet a job hours long (or a large weight download) still shows signs of life. Every command's bar goes
through :func:`progress_bar`.
"""
from __future__ import annotations

import io
import logging
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")

__all__ = ["LOG_INTERVAL_S", "progress_bar", "progress_shown"]

#: seconds between two progress lines when stderr is not a terminal (and before the first one)
LOG_INTERVAL_S = 60.0
_LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f} %) after {elapsed}, about {remaining} left"


def progress_shown(enabled: bool = True) -> bool | None:
    """tqdm's ``disable`` argument for a bar the caller ``enabled``: ``True`` (hidden) when not enabled or when the
    ``restorever`` logger is quieter than warnings, else ``None`` (tqdm hides it when stderr is not a terminal)."""
    if not enabled or not logging.getLogger("restorever").isEnabledFor(logging.WARNING):
        return True
    return None


class _Lines(io.TextIOBase):
    """A text stream that writes each of tqdm's carriage-return redraws to ``stream`` as one whole line (blank
    redraws, which clear a bar, are dropped, and so is a redraw equal to the line before it: the close of a bar
    whose last step was just written)."""

    def __init__(self, stream) -> None:
        super().__init__()
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", enabled: bool = True,
                 *, unit: str = "batch", leave: bool = False, unit_scale: bool = False):
    """``iterable`` under a tqdm bar of ``total`` steps of ``unit`` (``iterable`` None: a bar to ``update`` by
    hand, e.g. bytes of a download), shown by the rule of this module."""
    from tqdm.auto import tqdm

    disable = progress_shown(enabled)
    if disable is None and not _is_terminal(sys.stderr) and "ipykernel" not in sys.modules:
        # a log file or a pipe: whole lines, one a minute at most (a notebook keeps tqdm.auto's widget)
        return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=True,
                    file=_Lines(sys.stderr), mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S,
                    delay=LOG_INTERVAL_S, miniters=1, bar_format=_LOG_FORMAT if total else None)
    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=leave, disable=disable)

"""Progress bars for long stages, one rule everywhere: a bar is drawn only on a terminal.

A bar is shown when the caller enables it, stderr is a terminal (a log file or a pipe gets no carriage-return
lines), and the ``restorever`` logger lets warnings through (``restorever -q`` raises it to errors only: quiet means
nothing on stderr but errors). Every command's bar goes through :func:`progress_bar`.
"""
from __future__ import annotations

import logging
from typing import Iterable, TypeVar

T = TypeVar("T")

__all__ = ["progress_bar", "progress_shown"]


def progress_shown(enabled: bool = True) -> bool | None:
    """tqdm's ``disable`` argument for a bar the caller ``enabled``: ``True`` (hidden) when not enabled or when the
    ``restorever`` logger is quieter than warnings, else ``None`` (tqdm hides it when stderr is not a terminal)."""
    if not enabled or not logging.getLogger("restorever").isEnabledFor(logging.WARNING):
        return True
    return None


def progress_bar(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", enabled: bool = True,
                 *, unit: str = "batch", leave: bool = False, unit_scale: bool = False):
    """``iterable`` under a tqdm bar of ``total`` steps of ``unit`` (``iterable`` None: a bar to ``update`` by
    hand, e.g. bytes of a download), hidden by the rule of this module."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=leave,
                disable=progress_shown(enabled))

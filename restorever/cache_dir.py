"""Where restorever keeps its files: the cache folder (weights, data, computed entries) and how a message names it.

``cache_dir=`` argument, else ``$RESTOREVER_HOME``, else ``$XDG_CACHE_HOME/restorever``, else ``~/.cache/restorever``.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["get_cache_dir", "cache_dir_origin", "weights_cache_name", "refetch_fix"]


def get_cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Return the weights/data cache directory (not created)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("RESTOREVER_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "restorever"


def cache_dir_origin(override: str | os.PathLike | None = None) -> str:
    """Which setting chose :func:`get_cache_dir`'s folder, for messages (``"RESTOREVER_HOME=/data/rv"``)."""
    if override:
        return "the cache_dir argument"
    for name in ("RESTOREVER_HOME", "XDG_CACHE_HOME"):
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    return "the default ~/.cache/restorever (RESTOREVER_HOME and XDG_CACHE_HOME are not set)"


def weights_cache_name(path: Path) -> str | None:
    """``NAME`` when ``path`` lies in the weights cache (``<cache>/weights/NAME/...``), else None."""
    try:
        parts = path.resolve().relative_to((get_cache_dir() / "weights").resolve()).parts
    except (ValueError, OSError, RuntimeError):
        return None
    return parts[0] if len(parts) > 1 else None


def refetch_fix(name: str) -> str:
    """How to replace a bad file in the weights cache of backend ``name``."""
    return (f"delete it and fetch it again (`restorever weights download {name}`, or `restorever weights add {name} "
            f"FILE` for a file you downloaded)")

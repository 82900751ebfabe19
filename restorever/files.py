"""Atomic file writes: a reader sees the old file or the whole new one, never a part (temporary file in the same
folder, fsync, rename); a full disk is one typed error."""
from __future__ import annotations

import errno
import functools
import os
import tempfile
from pathlib import Path

from .errors import RestoreverError

#: errno values that mean "no space left" (a full disk or an exhausted quota)
NO_SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(RestoreverError, OSError):
    """A write failed because the disk (or quota) is full; nothing partial was left behind."""



@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read once, without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # fallback: read by setting (restored at once)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, rename.

    The file gets the usual permissions (``0o666`` minus the umask), not the private ``0o600`` of a temporary file.
    On any failure (a full disk included, raised as :class:`DiskFullError`) or interruption the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError) and not isinstance(exc, RestoreverError) and exc.errno in NO_SPACE_ERRNOS:
            error = DiskFullError(f"{path}: disk full while writing it; nothing partial was left (the file is as it "
                                  f"was before); free some space and rerun")
            error.errno = exc.errno
            raise error from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))

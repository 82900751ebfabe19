"""Content-addressed on-disk cache of stage outputs (landmarks, restored faces as uint8, embeddings).

Each entry is addressed by :func:`cache_key` over everything it depends on and stored as one ``.npz`` holding the
array, its sha256 and its own key (so a file copied to the wrong name is caught as well as a damaged one). Writes
are atomic (temporary file, fsync, rename), so a run killed at any moment leaves either the whole entry or nothing;
an entry that fails these checks is reported, deleted and recomputed. A write that
fails (disk full, read-only or unwritable folder) leaves nothing behind and raises :class:`CacheWriteError`, a typed
error the command line turns into one line; the entries finished before it stay, so rerunning resumes.

:func:`landmarks_key` and :func:`embedding_key` are the keys of the two cached stages (``restorever validate`` uses
them to find the entries a finished run read).
"""
from __future__ import annotations

import errno
import functools
import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RestoreverError

logger = logging.getLogger(__name__)

#: bump a stage's version when its numerical output changes, so old entries are not reused
STAGE_VERSIONS = {"landmarks": 1, "restored": 1, "embedding": 1}


#: errno values that mean "no space left" (a full disk or an exhausted quota)
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(RestoreverError, OSError):
    """A write failed because the disk (or quota) is full; nothing partial was left behind."""


class CacheWriteError(RestoreverError, OSError):
    """A cache entry could not be written (disk full, read-only or unwritable cache folder)."""


def cache_key(**parts: Any) -> str:
    """Stable hex key of keyword parts (JSON-serialised with sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def landmarks_key(image_sha256: str, detector: str, decode: str | None = None) -> str:
    """Key of the five landmarks of an image (by content sha256) found by ``detector``; ``decode`` is
    :func:`restorever.images.decode_tag` (None for plain 8-bit images without EXIF rotation, which keeps their keys
    as they always were)."""
    if decode is None:
        return cache_key(stage="landmarks", v=STAGE_VERSIONS["landmarks"], image=image_sha256, detector=detector)
    return cache_key(stage="landmarks", v=STAGE_VERSIONS["landmarks"], image=image_sha256, detector=detector,
                     decode=decode)


def embedding_key(image_sha256: str, landmarks: Any, *, recognizer_id: Any, restorer_id: Any = None,
                  degradation: str | None = None, scale: int | None = None, seed: int | None = None) -> str:
    """Key of one embedding: image content, its landmarks (float32, rounded to 1e-3 px), the ffhq_512 template, the
    recognizer (name, weights, flip) and, for a degraded condition (``scale`` not None), the degradation preset,
    scale, seed and restorer (name, weights, options). The clean condition ignores the last four."""
    lm = np.round(np.asarray(landmarks, dtype=np.float32), 3).tolist()
    degraded = scale is not None
    return cache_key(stage="embedding", v=STAGE_VERSIONS["embedding"], image=image_sha256, landmarks=lm,
                     template="ffhq_512", recognizer=recognizer_id,
                     degradation=degradation if degraded else None, scale=int(scale) if degraded else None,
                     seed=seed if degraded else None, restorer=restorer_id if degraded else None)


def _array_digest(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(arr.dtype).encode() + str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


class ArrayCache:
    """``root/<kind>/<key[:2]>/<key>.npz``; ``root=None`` disables caching."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    def path(self, kind: str, key: str) -> Path:
        assert self.root is not None
        return self.root / kind / key[:2] / f"{key}.npz"

    def _read(self, kind: str, key: str) -> tuple[np.ndarray | None, str]:
        path = self.path(kind, key)
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = npz["data"]
                digest = str(npz["sha256"])
                stored_key = str(npz["key"]) if "key" in npz.files else None  # entries before the key was stored
        except FileNotFoundError:
            return None, "missing"
        except PermissionError as exc:
            return None, f"unreadable: {exc.strerror or exc}"
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            return None, f"corrupt: {type(exc).__name__}: {exc}"
        if _array_digest(data) != digest:
            return None, "corrupt: content does not match its sha256"
        if stored_key is None:  # such a file could be any entry copied to this name: it cannot be trusted
            return None, ("corrupt: an old-format entry that does not store its key (written before 2026-11-24), "
                          "so a file copied to the wrong name cannot be ruled out")
        if stored_key != key:
            return None, f"corrupt: it holds the entry {stored_key[:12]}..., not {key[:12]}... (a misplaced file)"
        return data, "ok"

    def check(self, kind: str, key: str) -> tuple[np.ndarray | None, str]:
        """Read an entry without side effects (no counters, nothing deleted): ``(data, "ok")`` or
        ``(None, "missing" | "corrupt: REASON" | "unreadable: REASON")``."""
        if self.root is None:
            return None, "missing"
        return self._read(kind, key)

    def get(self, kind: str, key: str) -> np.ndarray | None:
        """The entry's array, or None (a miss). A damaged entry is reported, deleted and counted in ``corrupt``; an
        entry this process may not read is a miss but is left in place (it may be another user's)."""
        if self.root is None:
            self.misses += 1
            return None
        data, status = self._read(kind, key)
        if data is not None:
            self.hits += 1
            return data
        if status.startswith("corrupt"):
            logger.warning("cache entry %s is %s; recomputing it", self.path(kind, key), status)
            self._discard(self.path(kind, key))
            return None
        if status.startswith("unreadable"):
            logger.warning("cache entry %s is %s; recomputing it", self.path(kind, key), status)
        self.misses += 1
        return None

    def _discard(self, path: Path) -> None:
        self.corrupt += 1
        self.misses += 1
        try:
            path.unlink()
        except OSError:
            pass

    def put(self, kind: str, key: str, data: np.ndarray) -> None:
        """Store ``data`` under ``kind/key`` atomically; raises :class:`CacheWriteError` (nothing partial is left)."""
        if self.root is None:
            return
        path = self.path(kind, key)
        buf = io.BytesIO()
        np.savez(buf, data=data, sha256=np.array(_array_digest(data)), key=np.array(key))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            full = exc.errno in _NO_SPACE
            reason = "disk full" if full else (exc.strerror or type(exc).__name__)
            fix = "free some space" if full else "make it writable"
            error = CacheWriteError(
                f"cache {self.root}: cannot write entry {kind}/{key[:12]} ({reason}); the entries finished so far are "
                f"kept and nothing partial was written; {fix} or pass --cache-dir DIR, then rerun the same command "
                f"to resume")
            error.errno = exc.errno
            raise error from exc


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
        if isinstance(exc, OSError) and not isinstance(exc, RestoreverError) and exc.errno in _NO_SPACE:
            error = DiskFullError(f"{path}: disk full while writing it; nothing partial was left (the file is as it "
                                  f"was before); free some space and rerun")
            error.errno = exc.errno
            raise error from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))

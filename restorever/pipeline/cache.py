"""Content-addressed on-disk cache of stage outputs (landmarks, embeddings).

Each entry is addressed by :func:`cache_key` over everything it depends on and stored as one ``.npz`` holding the
array and its sha256. Writes are atomic (temporary file, fsync, rename), so a run killed at any moment leaves either
the whole entry or nothing; an entry whose checksum does not match is reported, deleted and recomputed.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: bump a stage's version when its numerical output changes, so old entries are not reused
STAGE_VERSIONS = {"landmarks": 1, "embedding": 1}


def cache_key(**parts: Any) -> str:
    """Stable hex key of keyword parts (JSON-serialised with sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


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

    def get(self, kind: str, key: str) -> np.ndarray | None:
        if self.root is None:
            self.misses += 1
            return None
        path = self.path(kind, key)
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = npz["data"]
                digest = str(npz["sha256"])
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, KeyError, EOFError) as exc:
            logger.warning("cache entry %s is unreadable (%s); recomputing it", path, exc)
            self._discard(path)
            return None
        if _array_digest(data) != digest:
            logger.warning("cache entry %s fails its checksum; recomputing it", path)
            self._discard(path)
            return None
        self.hits += 1
        return data

    def _discard(self, path: Path) -> None:
        self.corrupt += 1
        self.misses += 1
        try:
            path.unlink()
        except OSError:
            pass

    def put(self, kind: str, key: str, data: np.ndarray) -> None:
        if self.root is None:
            return
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, data=data, sha256=np.array(_array_digest(data)))
        atomic_write_bytes(path, buf.getvalue())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))

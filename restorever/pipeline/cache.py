"""Content-addressed on-disk cache of stage outputs (landmarks, restored faces as uint8, embeddings).

Each entry is addressed by :func:`cache_key` over everything it depends on and stored as one ``.npz`` holding the
array, its sha256 and its own key (so a file copied to the wrong name is caught as well as a damaged one). Writes
are atomic (temporary file, fsync, rename), so a run killed at any moment leaves either the whole entry or nothing;
an entry that fails these checks is reported, deleted and recomputed. A write that
fails (disk full, read-only or unwritable folder) leaves nothing behind and raises :class:`CacheWriteError`, a typed
error the command line turns into one line; the entries finished before it stay, so rerunning resumes.

:func:`landmarks_key`, :func:`restored_key` and :func:`embedding_key` are the only recipes of the cached stages' keys;
:class:`restorever.pipeline.identity.RunIdentity` applies them for a run (and ``restorever validate`` for a finished
one, with the key versions that run recorded).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import RestoreverError
from ..files import NO_SPACE_ERRNOS, DiskFullError, atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["ArrayCache", "CacheWriteError", "DiskFullError", "atomic_write_bytes", "atomic_write_text", "cache_key",
           "landmarks_key", "restored_key", "embedding_key", "STAGE_VERSIONS", "current_key_versions",
           "open_run_cache", "STALE_TEMPORARY_AGE_S"]

#: bump a stage's version when its numerical output changes, so old entries are not reused
#: embedding 2 (2026-12-06): an ONNX recognition graph that normalises its own input gets raw pixels (it was
#: normalised twice); its embeddings change while its weights do not, so the recipe's version moves for every entry.
STAGE_VERSIONS = {"landmarks": 1, "restored": 1, "embedding": 2}

#: version of the degradation's device path (off the CPU), a part of degraded keys there only: the CPU path and its
#: keys are unchanged. 2 (2026-12-05): steps 1-3 batched, which can round a rare pixel the other way than version 1.
DEVICE_DEGRADATION_VERSION = 2


#: version of the degraded keys' item part. 1 (2026-12-06): a degraded or restored face's key holds its protocol
#: item id, which seeds its degradation (with the seed and scale): before, the same bytes listed under two names (two
#: copies in one protocol, or another data root) shared one entry made with one name's degradation.
DEGRADED_ITEM_VERSION = 1

#: version of the landmark keys' detector-file part. 1 (2026-12-07): an SCRFD landmark key holds the sha256 of the
#: ONNX file that found them; before, it named the detector only, so another ``det_10g.onnx`` at the same path reused
#: the first file's landmarks. MTCNN keys carry no such part (its weights are fixed by the pinned facenet-pytorch).
DETECTOR_FILE_VERSION = 1


def current_key_versions() -> dict[str, int]:
    """The key recipe versions this restorever writes: each stage's (:data:`STAGE_VERSIONS`),
    ``"device_degradation"`` (:data:`DEVICE_DEGRADATION_VERSION`), ``"degraded_item"``
    (:data:`DEGRADED_ITEM_VERSION`) and ``"detector_file"`` (:data:`DETECTOR_FILE_VERSION`). A run records them
    (``cache.identity``), so a finished run's entries are found with its own versions after an upgrade changes one."""
    return {**STAGE_VERSIONS, "device_degradation": DEVICE_DEGRADATION_VERSION,
            "degraded_item": DEGRADED_ITEM_VERSION, "detector_file": DETECTOR_FILE_VERSION}


def _fit_part(fit: str) -> dict[str, str]:
    """How the face was fitted to the template, as a key part: none for least squares (the keys runs always wrote)."""
    return {} if fit == "least-squares" else {"fit": fit}


def _aligned_part(aligned_on: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where a degraded face was aligned, as a key part: none for the clean-landmark ("oracle") alignment, the keys
    runs always wrote; ``{"on": "degraded", "landmarks": 5x2 in the degraded crop or None (no face found)}`` for
    ``align_on="degraded"`` (landmarks rounded to 1e-3 px, like the clean ones)."""
    if aligned_on is None:
        return {}
    lms = aligned_on.get("landmarks")
    return {"aligned_on": {"on": str(aligned_on["on"]), "landmarks": None if lms is None else _rounded(lms)}}


def _item_part(item: str | None, versions: Mapping[str, int]) -> dict[str, str]:
    """The item id of a degraded face as a key part (from ``degraded_item`` version 1; none before)."""
    if versions.get("degraded_item", 0) < 1:
        return {}
    if item is None:
        raise ValueError("a degraded face's cache key needs its item id (it seeds the degradation)")
    return {"item": str(item)}


class CacheWriteError(RestoreverError, OSError):
    """A cache entry could not be written (disk full, read-only or unwritable cache folder)."""


def cache_key(**parts: Any) -> str:
    """Stable hex key of keyword parts (JSON-serialised with sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _device_part(device: str | None) -> dict[str, str]:
    """The device kind as a key part. CPU entries carry none (so caches made before devices were keyed stay valid);
    any other kind (``cuda``) keeps its entries apart, since kernels there can differ from the CPU in the last bits
    and ``precision="auto"`` picks half precision on a GPU."""
    kind = str(device or "cpu").split(":")[0]
    return {} if kind == "cpu" else {"device": kind}


def _degraded_device_part(device: str | None, version: int) -> dict[str, Any]:
    """:func:`_device_part` of a degraded face's key: off the CPU it adds the device degradation path's ``version``
    (from 2 on; version 1 keys had no such part)."""
    part = _device_part(device)
    return {**part, "degrade_path": version} if part and version >= 2 else part


def _detector_file_part(detector: str, detector_file: str | None, versions: Mapping[str, int]) -> dict[str, str]:
    """The SCRFD model file's sha256 as a key part (from ``detector_file`` version 1; none before, none for MTCNN)."""
    if detector != "scrfd" or versions.get("detector_file", 0) < 1:
        return {}
    if not detector_file:
        raise ValueError("an scrfd landmark key needs the sha256 of the det_10g.onnx file that finds them "
                         "(restorever.detectors.detector_file_sha256); no SCRFD model file was found")
    return {"detector_file": str(detector_file)}


def landmarks_key(image_sha256: str, detector: str, decode: str | None = None, *, device: str | None = None,
                  versions: Mapping[str, int] | None = None, detector_file: str | None = None) -> str:
    """Key of the five landmarks of an image (by content sha256) found by ``detector`` on ``device`` (a kind);
    ``decode`` is :func:`restorever.images.decode_tag` (None for plain 8-bit images without EXIF rotation, which keeps
    their keys as they always were). ``detector_file``: the hex sha256 of the SCRFD ONNX file (required for
    ``scrfd`` from ``detector_file`` version 1; ignored for MTCNN, whose keys are unchanged). ``versions``: a run's
    :func:`current_key_versions` (default: this restorever's)."""
    versions = versions or current_key_versions()
    return cache_key(stage="landmarks", v=versions["landmarks"], image=image_sha256, detector=detector,
                     **({} if decode is None else {"decode": decode}), **_device_part(device),
                     **_detector_file_part(detector, detector_file, versions))


def restored_key(image_sha256: str, landmarks: Any, *, restorer_id: Any, degradation: str, scale: int, seed: int,
                 item: str | None = None, device: str | None = None, versions: Mapping[str, int] | None = None,
                 fit: str = "least-squares", aligned_on: Mapping[str, Any] | None = None) -> str:
    """Key of one restored face (uint8): image, landmarks (rounded to 1e-3 px), degradation, scale, seed, the item id
    (which seeds the degradation), restorer (name, weights, options), the alignment ``fit`` when it is not least
    squares, the device kind and, off the CPU, the device degradation path's version; with ``aligned_on``
    (``align_on="degraded"``) also the landmarks found on the degraded crop (:func:`_aligned_part`)."""
    versions = versions or current_key_versions()
    return cache_key(stage="restored", v=versions["restored"], image=image_sha256,
                     landmarks=_rounded(landmarks), degradation=degradation, scale=int(scale), seed=seed,
                     restorer=restorer_id, **_item_part(item, versions), **_fit_part(fit),
                     **_degraded_device_part(device, versions["device_degradation"]), **_aligned_part(aligned_on))


def embedding_key(image_sha256: str, landmarks: Any, *, recognizer_id: Any, restorer_id: Any = None,
                  degradation: str | None = None, scale: int | None = None, seed: int | None = None,
                  item: str | None = None, device: str | None = None,
                  versions: Mapping[str, int] | None = None, fit: str = "least-squares",
                  aligned_on: Mapping[str, Any] | None = None) -> str:
    """Key of one embedding: image content, its landmarks (float32, rounded to 1e-3 px), the ffhq_512 template, the
    recognizer (name, weights, flip), the device kind and, for a degraded condition (``scale`` not None), the
    degradation preset, scale, seed, item id (it seeds the degradation) and restorer (name, weights, options) and,
    off the CPU, the device degradation path's version. The clean condition ignores the last six: a clean embedding
    depends on the image's content only. The alignment ``fit`` is a part when it is not least squares, and for a
    degraded condition of an ``align_on="degraded"`` run ``aligned_on`` (:func:`_aligned_part`)."""
    versions = versions or current_key_versions()
    degraded = scale is not None
    device_part = (_degraded_device_part(device, versions["device_degradation"]) if degraded
                   else _device_part(device))
    return cache_key(stage="embedding", v=versions["embedding"], image=image_sha256,
                     landmarks=_rounded(landmarks), template="ffhq_512", recognizer=recognizer_id,
                     degradation=degradation if degraded else None, scale=int(scale) if degraded else None,
                     seed=seed if degraded else None, restorer=restorer_id if degraded else None,
                     **(_item_part(item, versions) if degraded else {}), **_fit_part(fit), **device_part,
                     **(_aligned_part(aligned_on) if degraded else {}))


def _rounded(landmarks: Any) -> list:
    return np.round(np.asarray(landmarks, dtype=np.float32), 3).tolist()


def _array_digest(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(arr.dtype).encode() + str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


#: age (seconds since the last write) from which an entry's temporary file is a dead process's: a live write takes
#: well under a second, and no lock covers a cache shared by several runs and ranks
STALE_TEMPORARY_AGE_S = 3600.0

#: an entry's temporary file (``restorever.files.atomic_write_bytes``: ``.<key>.npz.<mkstemp part>.tmp``)
_ENTRY_TEMPORARY = re.compile(r"\.[0-9a-f]{64}\.npz\.[A-Za-z0-9_]+\.tmp")


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
        except ValueError as exc:  # neither zip nor .npy: numpy's message suggests unpickling, which we never do
            if "pickle" in str(exc):
                return None, "corrupt: not an .npz archive (unknown bytes)"
            return None, f"corrupt: {type(exc).__name__}: {exc}"
        except (OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
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

    def remove_stale_temporaries(self, max_age_s: float = STALE_TEMPORARY_AGE_S) -> tuple[int, int]:
        """Delete the temporary files of entry writes that a killed process (``kill -9``, power loss) left in
        ``root/<kind>/<xx>/``, when not modified for ``max_age_s`` seconds (a younger one may be a live write of
        another run). Only restorever's entry temporaries are touched. Returns ``(files, bytes)`` removed."""
        if self.root is None or not self.root.is_dir():
            return 0, 0
        now, count, size = time.time(), 0, 0
        for kind in os.scandir(self.root):
            if not kind.is_dir(follow_symlinks=False):
                continue
            for shard in os.scandir(kind.path):
                if not shard.is_dir(follow_symlinks=False):
                    continue
                for entry in os.scandir(shard.path):
                    if not _ENTRY_TEMPORARY.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                        continue
                    try:
                        stat = entry.stat(follow_symlinks=False)
                        if now - stat.st_mtime < max_age_s:
                            continue
                        os.unlink(entry.path)
                    except OSError:  # gone already, or not ours to remove
                        continue
                    count, size = count + 1, size + stat.st_size
        if count:
            logger.info("cache %s: removed %d temporary file(s) (%d bytes) left by killed runs", self.root, count, size)
        return count, size

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
            full = exc.errno in NO_SPACE_ERRNOS
            reason = "disk full" if full else (exc.strerror or type(exc).__name__)
            fix = "free some space" if full else "make it writable"
            error = CacheWriteError(
                f"cache {self.root}: cannot write entry {kind}/{key[:12]} ({reason}); the entries finished so far are "
                f"kept and nothing partial was written; {fix} or pass --cache-dir DIR, then rerun the same command "
                f"to resume")
            error.errno = exc.errno
            raise error from exc


def open_run_cache(root: str | os.PathLike | None) -> ArrayCache:
    """The cache a run writes to, cleared of the stale temporary files of killed runs
    (:meth:`ArrayCache.remove_stale_temporaries`)."""
    cache = ArrayCache(root)
    cache.remove_stale_temporaries()
    return cache

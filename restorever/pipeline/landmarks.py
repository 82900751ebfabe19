"""Stage 1 of a run: read and hash each image, find its five landmarks (cached per image content and detector),
apply the protocol's fallback landmarks and the ``--on-error`` policy, and align images to ``ffhq_512`` crops.

:func:`restorever.pipeline.evaluate.evaluate`, identification runs and ``restorever align`` share these.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Sequence

import numpy as np

from ..errors import DetectorError, FaceNotFoundError, RestoreverError
from ..protocol import Protocol
from ..protocol_specs import alignment_fit
from .cache import ArrayCache, landmarks_key
from .identity import device_kind
from .stages import align_faces, detect_each, in_batches, progress_bar, single_thread_on_cpu

logger = logging.getLogger(__name__)


class ImageInfo:
    """What stage 1 learnt about one image: its content hash, landmarks, or why it failed (``no_face`` marks a
    detector miss, as opposed to an unreadable image or a detector failure); ``decode`` is
    :func:`restorever.images.decode_tag` (None for plain 8-bit images)."""

    __slots__ = ("sha256", "landmarks", "error", "no_face", "decode")

    def __init__(self, sha256: str | None = None, landmarks: np.ndarray | None = None, error: str | None = None,
                 no_face: bool = False, decode: str | None = None):
        self.sha256, self.landmarks, self.error, self.no_face = sha256, landmarks, error, no_face
        self.decode = decode


def landmark_stage(protocol: Protocol, items: Sequence[str], *, detector: str, device, cache: ArrayCache,
                   batch_size: int = 16, progress: bool = True) -> dict[str, "ImageInfo"]:
    """Read each image, hash its bytes and find its five landmarks (cached per image content + detector).

    Returns ``{item: ImageInfo}``; an image that is missing, undecodable or has no face carries ``error`` instead
    of landmarks (the caller applies the ``--on-error`` policy).
    """
    from ..detectors import create_detector, detector_file_sha256
    from ..images import decode_image, decode_tag

    info: dict[str, ImageInfo] = {}
    det = None
    detector_file = detector_file_sha256(detector)  # SCRFD keys hold the ONNX file's sha256 (None for MTCNN)
    if detector == "scrfd" and detector_file is None:
        det = create_detector(detector, device=str(device))  # raises the error that says where det_10g.onnx goes
    for batch in progress_bar(in_batches(list(items), batch_size), -(-len(items) // batch_size), "landmarks",
                              progress):
        todo = []
        for item in batch:
            try:
                data = protocol.read_bytes(item)
            except RestoreverError as exc:
                info[item] = ImageInfo(error=str(exc))
                continue
            sha = hashlib.sha256(data).hexdigest()
            tag = decode_tag(data)
            key = landmarks_key(sha, detector, tag, device=device_kind(device), detector_file=detector_file)
            cached = cache.get("landmarks", key)
            if cached is not None:
                lm = None if np.isnan(cached).any() else cached.astype(np.float32)
                info[item] = ImageInfo(sha, lm, None if lm is not None else
                                       f"{describe_item(protocol, item)}: no face found by {detector}", lm is None, tag)
                continue
            try:
                array = decode_image(data, source=describe_item(protocol, item))
            except RestoreverError as exc:
                info[item] = ImageInfo(sha, error=str(exc), decode=tag)
                continue
            todo.append((item, sha, key, array, tag))
        if todo:
            if det is None:
                det = create_detector(detector, device=str(device))
            # Each result is cached as soon as it is known; a detector *failure* (DetectorError) is a per-image error
            # that is never cached, so only "the detector ran and found no face" is remembered as no face.
            together = _detect_together(det, [t[3] for t in todo], device)
            for k, (item, sha, key, array, tag) in enumerate(todo):
                try:
                    # one image per call (batch-independent) unless the detector is a batched one
                    found = together[k] if together is not None else detect_each(det, [array], device)[0]
                except DetectorError as exc:
                    info[item] = ImageInfo(sha, error=f"{describe_item(protocol, item)}: {exc}", decode=tag)
                    continue
                lm = None if found is None else np.asarray(found.landmarks, dtype=np.float32).reshape(5, 2)
                cache.put("landmarks", key, np.full((5, 2), np.nan, np.float32) if lm is None else lm)
                info[item] = ImageInfo(sha, lm, None if lm is not None else
                                       f"{describe_item(protocol, item)}: no face found by {detector}", lm is None, tag)
    return info


def _detect_together(det, arrays: list[np.ndarray], device) -> list | None:
    """A batched detector's results for all ``arrays`` in one call; ``None`` for per-image detectors, and when the
    batch raised a :class:`DetectorError` (then each image runs alone, so the failure is pinned to its image)."""
    if not getattr(det, "batched", False):
        return None
    try:
        with single_thread_on_cpu(device):
            return det.detect(arrays)
    except DetectorError:
        return None


def apply_fallback_landmarks(protocol: Protocol, info: dict[str, ImageInfo]) -> list[str]:
    """Give images where no face was found the protocol's declared ``alignment.fallback_landmarks`` (for datasets
    of roughly centred faces such as LFW). Returns the items that used them; unreadable images are left failed."""
    fallback = (protocol.spec.get("alignment") or {}).get("fallback_landmarks")
    if not fallback:
        return []
    points = np.asarray(fallback, dtype=np.float32)
    if points.shape != (5, 2):
        raise RestoreverError(f"protocol {protocol.name}: alignment.fallback_landmarks must be five [x, y] points")
    used = []
    for item, inf in info.items():
        if inf.no_face:
            inf.landmarks, inf.error, inf.no_face = points.copy(), None, False
            used.append(item)
    if used:
        logger.warning("%d image(s) with no face found use the protocol's fallback landmarks (e.g. %s)", len(used),
                       used[0])
    return used


def align_items(protocol: Protocol, items: Sequence[str], info: dict[str, "ImageInfo"], device):
    """Decode ``items`` and align them to ffhq_512: ``(faces [B,3,512,512] on device, landmarks [B,5,2] in crop)``."""
    from ..images import decode_image, to_tensor

    arrays = []
    for i in items:
        data = protocol.read_bytes(i)
        if info[i].sha256 is not None and hashlib.sha256(data).hexdigest() != info[i].sha256:
            raise RestoreverError(f"{describe_item(protocol, i)} changed while the run was going on; finished entries "
                                  f"are cached: rerun to pick up the new content")
        arrays.append(decode_image(data, source=describe_item(protocol, i)))
    return align_faces([to_tensor([a])[0] for a in arrays], np.stack([info[i].landmarks for i in items]), device,
                       fit=alignment_fit(protocol.spec))


def apply_error_policy(info: dict[str, "ImageInfo"], on_error: str) -> dict[str, str]:
    """``{item: reason}`` of failed images; raises on the first one when ``on_error == "error"``."""
    failed = {item: inf.error for item, inf in info.items() if inf.error}
    if failed and on_error == "error":
        item, reason = next(iter(failed.items()))
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise FaceNotFoundError(f"{reason}{more}; rerun with on_error='skip' (--on-error skip) to skip the pairs "
                                f"that use it")
    return failed


def describe_item(protocol: Protocol, item: str) -> str:
    return str(protocol.root / item) if protocol.root is not None else f"{protocol.source}[{item}]"

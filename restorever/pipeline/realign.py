"""``align_on="degraded"``: the realistic front end of ``restorever eval``.

By default (``"clean"``) a degraded face keeps the landmarks found on the clean photo (the "oracle alignment" of
restoration papers). With ``"degraded"`` the run's detector looks at each degraded 512 crop ``D`` (8-bit, one image
per call as :func:`~restorever.pipeline.stages.detect_each` does):

* found: ``D`` is aligned again to ``ffhq_512`` with those landmarks (``D`` taken as the photo); that crop is
  restored and embedded with its own crop landmarks;
* not found: ``D`` is restored and embedded as it is, with the template's own five points (nothing of the clean
  image is used), and counted as ``not_found``.

The crop ``D`` itself is still cut from the clean photo with the clean landmarks (the degradation applies to the
aligned crop), so the realistic part is the second alignment, not the framing of ``D``.

Landmarks of ``D`` are cached like a photo's, by the sha256 of its raw RGB bytes (decode tag
:data:`DEGRADED_CROP_DECODE`); the restored and embedding keys of a degraded condition hold them (or ``None``).

Every function takes the run's context (``restorever.pipeline.evaluate.RunContext``, typed ``Any`` here: this
module sits below ``evaluate``, which imports it).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import DetectorError, RestoreverError
from ..protocol_specs import alignment_fit
from .identity import NOT_GIVEN
from .landmarks import align_items
from .stages import align_faces, detect_each, in_batches, progress_bar

if TYPE_CHECKING:
    from .landmarks import ImageInfo

logger = logging.getLogger(__name__)

__all__ = ["ALIGN_ON", "DEGRADED_CROP_DECODE", "DegradedLandmarks", "alignment_block", "degraded_landmark_stage",
           "degraded_landmarks_of", "realign_batch", "sidecar_fields"]

#: the values of ``EvalConfig.align_on`` / ``--align-on``
ALIGN_ON = ("clean", "degraded")

#: the landmark cache's decode tag for a degraded crop: its sha256 is of raw ``512x512x3`` RGB bytes, not of a file
DEGRADED_CROP_DECODE = "degraded-crop-rgb8-512"


@dataclass(frozen=True)
class DegradedLandmarks:
    """What the detector found on one degraded crop: the sha256 of its 8-bit RGB bytes and its five landmarks
    (``[5, 2]`` float32, pixels of the 512 crop), ``None`` when no face was found."""

    sha256: str
    landmarks: np.ndarray | None


def degraded_landmark_stage(ctx: Any, items: Sequence[str], info: dict[str, "ImageInfo"], *,
                            progress: bool = True) -> dict[tuple[str, int], DegradedLandmarks]:
    """Degrade each of ``items`` at each of the run's scales and find the landmarks of the 8-bit crop (cached by
    its content and the detector). Returns ``{(item, scale): DegradedLandmarks}``. A detector *failure* stops the
    run with the item and scale named (it is never cached)."""
    from ..detectors import create_detector
    from ..images import to_uint8

    config, cache = ctx.config, ctx.cache
    out: dict[tuple[str, int], DegradedLandmarks] = {}
    detector = None
    batches = [(scale, batch) for scale in config.scales for batch in in_batches(list(items), config.batch_size)]
    for scale, batch in progress_bar(batches, len(batches), "landmarks of degraded faces", progress):
        faces, _ = align_items(ctx.protocol, batch, info, ctx.device)
        degraded = ctx.degradation.apply(faces, ctx.degradation.sample_params(list(batch), scale, config.seed))
        for item, array in zip(batch, to_uint8(degraded)):
            sha = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
            key = ctx.identity.landmarks_key(sha, DEGRADED_CROP_DECODE)
            cached = cache.get("landmarks", key)
            if cached is None:
                if detector is None:
                    detector = create_detector(config.detector, device=str(ctx.device))
                try:
                    found = detect_each(detector, [array], ctx.device)[0]
                except DetectorError as exc:
                    raise RestoreverError(f"{item} at x{scale}: the {config.detector} detector failed on the degraded "
                                          f"face ({exc}); rerun, or use --align-on clean") from exc
                cached = (np.full((5, 2), np.nan, np.float32) if found is None
                          else np.asarray(found.landmarks, dtype=np.float32).reshape(5, 2))
                cache.put("landmarks", key, cached)
            lms = None if np.isnan(cached).any() else cached.astype(np.float32)
            out[(item, int(scale))] = DegradedLandmarks(sha, lms)
    return out


def degraded_landmarks_of(ctx: Any, item: str, scale: int | None) -> Any:
    """The ``degraded_landmarks`` argument of the run identity's keys for ``item`` at ``scale``: not given for the
    clean condition and for ``align_on="clean"``, else the landmarks found on the degraded crop (or ``None``)."""
    if scale is None or ctx.config.align_on == "clean":
        return NOT_GIVEN
    return ctx.realigned[(item, int(scale))].landmarks


def realign_batch(ctx: Any, items: Sequence[str], degraded: Any, scale: int) -> tuple[Any, Any]:
    """Degraded crops ``[B,3,512,512]`` of ``items`` at ``scale`` -> ``(faces, crop landmarks [B,5,2])`` as the
    restorer and the recognizer get them: aligned again with the landmarks found on each crop (rounded to 8-bit
    levels, like ``D``), or the crop as it is with the ``ffhq_512`` template's points where no face was found."""
    import torch

    from ..alignment import get_template

    template = np.asarray(get_template("ffhq_512").points, dtype=np.float32)
    faces = degraded.clone()
    crop_lms = torch.from_numpy(np.repeat(template[None], len(items), axis=0))
    found = [j for j, item in enumerate(items) if ctx.realigned[(item, int(scale))].landmarks is not None]
    if found:
        lms = np.stack([ctx.realigned[(items[j], int(scale))].landmarks for j in found])
        aligned, aligned_lms = align_faces([degraded[j] for j in found], lms, ctx.device,
                                           fit=alignment_fit(getattr(ctx.protocol, "spec", None) or {}))
        # on the 8-bit grid, as the degradation's own output: restorers always get 8-bit faces, and the ``none``
        # restorer's pass-through equals the quantised restorer output it stands for
        faces[found] = aligned.mul(255).round_().div_(255).to(faces.dtype)
        crop_lms[found] = aligned_lms.to(crop_lms.dtype).cpu()
    return faces, crop_lms


def alignment_block(ctx: Any, items: Sequence[str], scale: int | None) -> dict[str, Any] | None:
    """A degraded condition's ``alignment`` record, ``{"on": "degraded", "detected": n, "not_found": m}`` over the
    ``items`` it compared; ``None`` for the clean condition and for ``align_on="clean"`` runs."""
    if scale is None or ctx.config.align_on == "clean":
        return None
    found = sum(ctx.realigned[(i, int(scale))].landmarks is not None for i in items)
    return {"on": "degraded", "detected": int(found), "not_found": len(items) - int(found)}


def sidecar_fields(ctx: Any, item: str, scale: int) -> dict[str, Any]:
    """What ``degradation.jsonl`` records of a degraded crop's alignment (nothing for ``align_on="clean"``): the
    sha256 of its 8-bit RGB bytes and its landmarks (``null``: no face found), so ``validate`` rebuilds its keys."""
    if ctx.config.align_on == "clean":
        return {}
    found = ctx.realigned[(item, int(scale))]
    return {"degraded_sha256": found.sha256,
            "degraded_landmarks": None if found.landmarks is None else found.landmarks.tolist()}

"""A verification threshold taken from a finished run's ``results.json``."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ConfigError, RestoreverError

__all__ = ["threshold_from_results"]


def threshold_from_results(results: str | os.PathLike | dict[str, Any], *, restorer: str = "none",
                           scale: int | None = None, recognizer: str | None = None,
                           degradation: str | None = None, similarity: str | None = None) -> float:
    """The accuracy-maximising threshold of one condition of a finished run, on the run's own score scale.

    The threshold is :func:`restorever.metrics.best_threshold` over all of the condition's stored pair scores (the
    exact rule the k-fold accuracy uses per fold, applied to every pair); a pair is *same* when
    ``score > threshold``. Records without stored scores fall back to the median of the per-fold thresholds.

    Args:
        results: a ``results.json`` path, a run folder, or a loaded record.
        restorer: the condition's restorer (``"none"`` for the clean or unrestored condition).
        scale: the condition's degradation scale; ``None`` is the clean condition (restorer ``"none"`` only:
            clean faces are never restored).
        recognizer: when given, must be the run's recognizer (a threshold means nothing for another model).
        degradation: when given, must be the condition's degradation preset.
        similarity: when given, the score the caller compares with (``"cosine"``, ``"euclidean"``, ...): a run that
            scored its pairs with another one (``scoring.similarity`` in its protocol) is refused, as its threshold
            is on another scale.

    Example:
        >>> t = threshold_from_results("runs/lfw-dlib/results.json")        # clean condition
        >>> t16 = threshold_from_results("runs/lfw-dlib", scale=16)          # probes degraded x16, not restored
    """
    from ..metrics.verification import best_threshold
    from ..reports.results import load_results

    record = results if isinstance(results, dict) else load_results(results)
    where = "the given record" if isinstance(results, dict) else str(results)
    conditions = record.get("conditions") or []
    if recognizer is not None:
        used = {c.get("recognizer") for c in conditions}
        if recognizer not in used:
            raise RestoreverError(f"{where}: recognizer {recognizer!r} was not evaluated in this run (it has "
                                  f"{', '.join(sorted(map(str, used)))}); its thresholds do not apply")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, np.integer))):
        raise ConfigError("scale", f"must be an integer scale factor such as 16 (or None for clean faces), got "
                                   f"{scale!r}")
    if scale is None and restorer != "none":
        raise RestoreverError(f"{where}: clean faces are never restored, so there is no clean condition of "
                              f"{restorer!r} (the clean one is restorer 'none'); pass scale= for {restorer}'s "
                              f"threshold on degraded faces")
    matches = [c for c in conditions if c.get("scale") == scale and c.get("restorer") == restorer
               and (recognizer is None or c.get("recognizer") == recognizer)
               and (degradation is None or scale is None or c.get("degradation") == degradation)]
    if not matches:
        show_preset = degradation is not None and scale is not None

        def label(restorer_: Any, scale_: Any, preset: Any) -> str:
            return f"({restorer_}, scale={scale_}" + (f", degradation={preset}" if show_preset else "") + ")"

        have = ", ".join(label(c.get("restorer"), c.get("scale"), c.get("degradation")) for c in conditions)
        raise RestoreverError(f"{where}: no condition {label(restorer, scale, degradation)} (it has {have})")
    cond = matches[0]
    scored = cond.get("similarity")
    if similarity is not None and scored is not None and scored != similarity:
        raise RestoreverError(f"{where}: the run scored its pairs by {scored} similarity, while these scores are "
                              f"{similarity}: its threshold is on another scale (rerun it with "
                              f"scoring.similarity: {similarity} in its protocol, or pass a threshold)")
    scores = cond.get("scores") or {}
    if scores.get("score") and scores.get("same"):
        threshold, _ = best_threshold(np.asarray(scores["same"]), np.asarray(scores["score"], dtype=np.float64))
        if np.isfinite(threshold):
            return float(threshold)
    thresholds = [t for t in (cond.get("verification") or {}).get("thresholds", []) if t is not None]
    if not thresholds:
        raise RestoreverError(f"{where}: the condition ({restorer}, scale={scale}) stores no scores or thresholds")
    return float(np.median(thresholds))

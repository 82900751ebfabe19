"""Measured seconds per item of each stage, remembered per cache folder (``<cache>/costs.json``) for ``--dry-run``:
a machine's runs share them when they share a cache folder."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

COSTS_FILE = "costs.json"


def record_costs(cache_root: Path | None, device_type: str, counts: dict[str, int], seconds: dict[str, float],
                 names: dict[str, str]) -> None:
    """Remember measured seconds per item of each stage in the cache folder (``<cache>/costs.json``) for estimates."""
    if cache_root is None:
        return
    path = Path(cache_root) / COSTS_FILE
    costs = load_costs(cache_root)
    for stage, n in counts.items():
        if n > 0 and seconds.get(stage, 0) > 0:
            costs[f"{device_type}|{stage}|{names.get(stage, '')}"] = seconds[stage] / n
    from ..files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(costs, indent=1, sort_keys=True))


def load_costs(cache_root: Path | None) -> dict[str, float]:
    """``{"<device>|<stage>|<backend>": seconds per item}`` recorded in ``cache_root`` (empty when none is). Entries
    that are not a finite non-negative number are left out, and a file that is not a JSON object reads as empty:
    the estimates are a convenience, and the next run rewrites the file."""
    import math

    path = Path(cache_root) / COSTS_FILE if cache_root else None
    try:
        data = json.loads(path.read_text()) if path and path.exists() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}

    def usable(v: object) -> bool:
        try:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)) and v >= 0
        except OverflowError:  # an integer beyond float's range
            return False

    return {str(k): float(v) for k, v in data.items() if usable(v)}


def record_run_costs(cache_root: Path | None, device_type: str, config: Any, timings: dict[str, float],
                     n_landmarks: int) -> None:
    """Store an evaluation's measured seconds per item of each stage (``timings`` as ``evaluate`` keeps them,
    ``config`` its :class:`~restorever.pipeline.evaluate.EvalConfig`) for ``--dry-run`` estimates; never raises
    for an unwritable folder."""
    restorers = [r for r in config.restorers if r != "none"]
    try:
        record_costs(cache_root, device_type,
                     {"landmarks": n_landmarks, "embed": int(timings.get("n_embedded", 0)),
                      "degrade": int(timings.get("n_degraded", 0)),
                      "restore": int(timings.get("n_restored", 0)) if len(restorers) == 1 else 0},
                     {"landmarks": timings.get("landmarks_s", 0), "embed": timings.get("embed_s", 0),
                      "degrade": timings.get("degrade_s", 0), "restore": timings.get("restore_s", 0)},
                     {"landmarks": config.detector, "embed": config.recognizer, "degrade": config.degradation,
                      "restore": restorers[0] if len(restorers) == 1 else ""})
    except OSError as exc:  # estimates are a convenience; never fail a run for them
        logger.debug("could not record stage costs: %s", exc)

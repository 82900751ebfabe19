"""``--dry-run``: what a run would compute, what is cached already, and roughly how long the rest takes."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..errors import RestoreverError
from ..images import decode_tag
from .cache import STAGE_VERSIONS, cache_key, landmarks_key

logger = logging.getLogger(__name__)

COSTS_FILE = "costs.json"


def record_costs(cache_root: Path | None, device_type: str, counts: dict[str, int], seconds: dict[str, float],
                 names: dict[str, str]) -> None:
    """Remember measured seconds per item of each stage on this machine (``<cache>/costs.json``) for estimates."""
    if cache_root is None:
        return
    path = Path(cache_root) / COSTS_FILE
    try:
        costs = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        costs = {}
    for stage, n in counts.items():
        if n > 0 and seconds.get(stage, 0) > 0:
            costs[f"{device_type}|{stage}|{names.get(stage, '')}"] = seconds[stage] / n
    from .cache import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(costs, indent=1, sort_keys=True))


def describe_plan(config) -> str:
    """A human-readable work plan for ``config`` (nothing is computed or written)."""
    from .evaluate import _weights_id, build_context, limit_pairs, route_restorer_options

    ctx = build_context(config)
    pairs = limit_pairs(ctx.protocol.pairs, config.limit_pairs)
    images = pairs.images()
    probes = set(pairs.b) if config.degrade_side == "probe" else set(images)
    landmarks_cached, landmarks = 0, {}
    unreadable = 0
    for item in images:
        try:
            data = ctx.protocol.read_bytes(item)
        except RestoreverError:
            unreadable += 1
            continue
        sha = hashlib.sha256(data).hexdigest()
        key = landmarks_key(sha, config.detector, decode_tag(data))  # the key landmark_stage uses
        path = ctx.cache.path("landmarks", key) if ctx.cache.root else None
        if path is not None and path.exists():
            landmarks_cached += 1
            lm = ctx.cache.get("landmarks", key)
            if lm is not None and not np.isnan(lm).any():
                landmarks[item] = (sha, lm)
    recognizer_id = {"name": config.recognizer, "weights": _weights_id(ctx.recognizer), "flip": config.flip_test}
    routed = route_restorer_options(config.restorers, config.restorer_options)
    restorer_ids = {n: {"name": n, "weights": _weights_id(r), "options": routed[n]} for n, r in ctx.restorers.items()}
    lines = [f"protocol {ctx.protocol.name}: {len(pairs)} pairs, {len(images)} images ({len(probes)} probes), "
             f"{int(np.unique(pairs.fold).size)} folds; unreadable now: {unreadable}",
             f"landmarks ({config.detector}): {landmarks_cached} cached, {len(images) - landmarks_cached} to detect",
             f"device {ctx.device}; recognizer {config.recognizer}; restorers {', '.join(config.restorers)}; "
             f"scales {config.scales or '-'} ({config.degradation})", "conditions:"]
    todo: dict[str, int] = {}
    for restorer, scale in ctx.conditions:
        wanted = images if scale is None else [i for i in images if i in probes]
        cached = 0
        for item in wanted:
            if item not in landmarks:
                continue
            sha, lm = landmarks[item]
            key = cache_key(stage="embedding", v=STAGE_VERSIONS["embedding"], image=sha,
                            landmarks=np.round(lm, 3).tolist(), template="ffhq_512", recognizer=recognizer_id,
                            degradation=None if scale is None else config.degradation, scale=scale,
                            seed=None if scale is None else config.seed,
                            restorer=None if scale is None else restorer_ids[restorer])
            cached += ctx.cache.path("embedding", key).exists() if ctx.cache.root else 0
        label = "clean" if scale is None else f"{restorer} x{scale}"
        lines.append(f"  {label:24s} {cached:6d} cached, {len(wanted) - cached:6d} to compute")
        todo[restorer if scale is not None else "clean"] = todo.get(restorer, 0) + len(wanted) - cached
    estimate = _estimate(ctx, config, len(images) - landmarks_cached, todo)
    lines.append(f"estimated time for what is missing: {estimate}")
    return "\n".join(lines)


def _estimate(ctx, config, n_landmarks: int, todo: dict[str, int]) -> str:
    path = Path(ctx.cache.root) / COSTS_FILE if ctx.cache.root else None
    try:
        costs = json.loads(path.read_text()) if path and path.exists() else {}
    except (OSError, json.JSONDecodeError):
        costs = {}
    dev = ctx.device.type
    known = True

    def cost(stage: str, name: str = "") -> float:
        nonlocal known
        value = costs.get(f"{dev}|{stage}|{name}")
        if value is None:
            known = False
            return 0.0
        return value

    total = n_landmarks * cost("landmarks", config.detector)
    for restorer, n in todo.items():
        total += n * cost("embed", config.recognizer)
        if restorer != "clean":
            total += n * (cost("degrade", config.degradation) + cost("restore", restorer) * (restorer != "none"))
    if known:
        return f"{total / 60:.1f} min on {dev} (from stage costs measured by earlier runs on this machine)"
    return (f"unknown: some stages were never measured on this machine (run a small --limit-pairs job first); "
            f"the measured stages alone take {total / 60:.1f} min on {dev}")

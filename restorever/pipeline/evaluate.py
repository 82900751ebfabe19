"""One evaluation run: protocol -> landmarks -> align -> degrade -> restore -> embed -> score -> results record.

Every image is embedded once per condition and cached (:mod:`restorever.pipeline.cache`), so a rerun, or a run that
adds a scale or a restorer, computes only what is new. Metrics are pure functions of the cached embeddings.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
from concurrent.futures import ThreadPoolExecutor
import logging
import math
import numbers
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..devices import resolve_device
from ..detectors import detector_file_sha256, list_detectors
from ..errors import ConfigError, RestoreverError, unknown_name
from ..metrics.similarity import identity_to_clean, score_pairs
from ..protocol import PairList, Protocol, load_protocol, pairs_digest
from ..protocol_specs import ON_ERROR, SIMILARITY_CHOICES, alignment_fit
from . import distributed
from .cache import ArrayCache, open_run_cache
from .costs import record_run_costs
from .environment import environment_info, restorever_version, setup_info
from .identity import RunIdentity, conditions_of, plugins_of, weights_files
from .landmarks import ImageInfo, align_items, apply_error_policy, apply_fallback_landmarks, landmark_stage
from .realign import (ALIGN_ON, alignment_block, degraded_landmark_stage, degraded_landmarks_of, realign_batch,
                      sidecar_fields)
from .routing import resolve_recognizer, route_recognizer_options, route_restorer_options, route_restorer_weights
from .records import (CacheRecord, ConditionRecord, IdentityToClean, PairIds, PairScores, ProtocolRecord, RunHeader,
                      RunRecord, VerificationMetrics, WeightRecord)
from .protocol_defaults import check_template, pair_similarity, resolve_protocol_defaults
from .stages import embed_faces, in_batches, progress_bar, restore_faces, select_rows

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """Options of one run (stored, resolved, under ``config`` in results.json).

    ``None`` for ``seed``, ``detector``, ``template``, ``similarity`` or ``on_error`` means "the protocol file's
    value" (else the code default); :func:`~restorever.pipeline.protocol_defaults.resolve_protocol_defaults` fills
    them, and ``sources`` / ``overrides`` (set by that resolution) say where each came from.
    """

    protocol: str = "lfw"
    data_root: str | None = None
    pairs: str | None = None
    restorers: list[str] = field(default_factory=lambda: ["none"])
    recognizer: str = "dlib"
    scales: list[int] = field(default_factory=list)
    degradation: str = "difface-test"
    degrade_side: str = "probe"
    seed: int | None = None
    limit_pairs: int | None = None
    device: str = "auto"
    batch_size: int = 16
    detector: str | None = None
    on_error: str | None = None
    flip_test: bool = False
    restorer_weights: dict[str, str] = field(default_factory=dict)
    recognizer_weights: dict[str, str] = field(default_factory=dict)
    restorer_options: dict[str, Any] = field(default_factory=dict)
    recognizer_options: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None
    out: str | None = None
    template: str | None = None
    similarity: str | None = None
    align_on: str = "clean"  # "degraded": detect landmarks on each degraded crop (restorever.pipeline.realign)
    sources: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`~restorever.errors.ConfigError` naming the field (``EvalConfig.batch_size``) at fault, or the
        unknown-name / option error of a detector, restorer or recognizer (before any file or model is made)."""
        if self.degrade_side not in ("probe", "both"):
            raise ConfigError("degrade_side", f"must be 'probe' or 'both', got {self.degrade_side!r}")
        if self.align_on not in ALIGN_ON:
            raise ConfigError("align_on", f"must be 'clean' or 'degraded', got {self.align_on!r}")
        if self.on_error is not None and self.on_error not in ON_ERROR:
            raise ConfigError("on_error", f"must be one of {', '.join(map(repr, ON_ERROR))}, got {self.on_error!r}")
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1, got {self.batch_size}")
        if self.seed is not None:  # 1.5 or True were keyed as seed 1 but seeded the restorers from "1.5" / "True"
            whole = _whole_number(self.seed)
            if whole is None or not 0 <= whole < 2 ** 63:
                raise ConfigError("seed", f"must be an integer from 0 to 2**63 - 1, got {self.seed!r}")
            self.seed = whole
        if self.similarity is not None and self.similarity not in SIMILARITY_CHOICES:
            raise ConfigError("similarity", f"must be one of {', '.join(SIMILARITY_CHOICES)}, got {self.similarity!r}")
        whole = [_whole_number(s) for s in self.scales]
        if any(w is None or w < 1 for w in whole):  # keys and labels hold int(scale): x4.5 would run, cached as x4
            raise ConfigError("scales", f"must be positive integers, got {self.scales}")
        self.scales = whole  # 4.0, "4", numpy.int64(4) are the scale 4 everywhere; a tuple/array becomes a list
        if not self.restorers:
            raise ConfigError("restorers", "needs at least one name (e.g. ['none'])")
        route_restorer_weights(self.restorers, self.restorer_weights)  # ConfigError for weights no restorer takes
        if self.limit_pairs is not None and self.limit_pairs < 2:
            raise ConfigError("limit_pairs", f"must be at least 2 (one same and one different pair), got "
                                             f"{self.limit_pairs}")
        for option, values in (("scales", self.scales), ("restorers", self.restorers)):
            if len(set(values)) != len(values):  # each condition once: a repeat would be scored (and counted) twice
                repeated = sorted({str(v) for v in values if values.count(v) > 1})
                logger.warning("%s lists %s more than once; each condition is evaluated once", option,
                               ", ".join(repeated))
                values[:] = list(dict.fromkeys(values))
        if self.detector is not None and self.detector not in list_detectors():
            raise unknown_name("detector", self.detector, list_detectors())
        from ..degradation_params import get_preset

        get_preset(self.degradation)  # recorded in results.json even when no scale uses it: never an unknown name
        route_restorer_options(self.restorers, self.restorer_options)  # unknown restorers and bad option values
        route_recognizer_options(self.recognizer, self.recognizer_options)
        if self.flip_test:
            from ..recognizers import check_flip_test

            check_flip_test(self.recognizer)


def _whole_number(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (``4``, ``4.0``, ``"4"``, ``numpy.int64(4)``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


def limit_pairs(pairs: PairList, n: int | None) -> PairList:
    """Keep ``n`` pairs (all when ``n`` is None or not smaller), balanced over folds and classes: the first ones of
    each (fold, class) group in file order, taken in turn; no randomness."""
    if n is None or n >= len(pairs):
        return pairs
    if n < 2:
        raise ConfigError("limit_pairs", f"must be at least 2 (one same and one different pair), got {n}")
    # Deal the pairs out group by group, one (fold, class) group after another: the first pair of every group, then
    # the second of every group, ... and keep the first n dealt (in file order). With more groups than n (10 folds x
    # 2 classes for --limit-pairs 10) the groups are visited class by class alternately, so both classes are kept.
    groups = sorted({(int(f), int(s)) for f, s in zip(pairs.fold, pairs.same)}, key=lambda g: (g[0], g[1]))
    by_class = {c: [g for g in groups if g[1] == c] for c in (0, 1)}
    order = [g for pair in zip(by_class[1], by_class[0]) for g in pair]
    order += [g for g in groups if g not in order]
    members: dict[tuple[int, int], list[int]] = {g: [] for g in groups}
    for i, key in enumerate(zip(pairs.fold.tolist(), pairs.same.tolist())):
        members[key].append(i)
    keep: list[int] = []
    depth = 0
    while len(keep) < n:
        for g in order:
            if depth < len(members[g]) and len(keep) < n:
                keep.append(members[g][depth])
        depth += 1
    return pairs.subset(sorted(keep))


def item_seed(seed: int, item: str, scale: int | None, purpose: str) -> int:
    """A 63-bit seed from (seed, item id, scale, purpose); independent of batch, device and process."""
    if scale is not None and float(scale).is_integer():
        scale = int(scale)  # 16.0 draws what 16 draws (the degradation's own seeds normalise it alike)
    blob = f"{seed}|{item}|{scale}|{purpose}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


@dataclass
class RunContext:
    """Everything a run builds once from its config: protocol, device, cache and models."""

    config: EvalConfig
    protocol: Protocol
    device: Any
    cache: ArrayCache
    recognizer: Any
    restorers: dict[str, Any]
    degradation: Any
    identity: RunIdentity
    realigned: dict = field(default_factory=dict)  # align_on="degraded": {(item, scale): DegradedLandmarks}

    @property
    def conditions(self) -> list[tuple[str, int | None]]:
        """``(restorer, scale)`` pairs; ``("none", None)`` is the clean condition and always first."""
        return conditions_of(self.config.restorers, self.config.scales)


def build_context(config: EvalConfig, protocol: Protocol | None = None) -> RunContext:
    """Load the protocol (unless given: identification passes its own), resolve the config's protocol defaults
    (``ctx.config`` is the resolved copy) and create the models a run needs; errors here happen before any work.
    Verification and identification runs are built here alike."""
    from .. import hub
    from ..recognizers import create_recognizer
    from ..restorers import create_restorer, restorer_card

    config.validate()
    device = resolve_device(config.device)  # an unavailable device is the first thing a run says
    if protocol is None:
        protocol = load_protocol(config.protocol, data_root=config.data_root, pairs=config.pairs)
    config = resolve_protocol_defaults(config, getattr(protocol, "spec", None) or {})  # a bare stand-in: code defaults
    total = len(getattr(protocol, "pairs", None) or ())
    if config.limit_pairs is not None and config.limit_pairs >= total > 0:  # no subset: recorded as a run of all
        logger.info("--limit-pairs %d: the protocol has %d pairs; every one is evaluated", config.limit_pairs, total)
        config = replace(config, limit_pairs=None)
    check_template(config.template, [restorer_card(n) for n in config.restorers],
                   source=config.sources.get("template", "cli"))
    cache = open_run_cache(Path(config.cache_dir) if config.cache_dir else hub.get_cache_dir() / "cache")
    config, recognizer_options = resolve_recognizer(config, device)
    recognizer = create_recognizer(config.recognizer, weights=config.recognizer_weights or None, device=device,
                                   **({"flip_test": True} if config.flip_test else {}), **recognizer_options)
    restorers = {}
    routed = route_restorer_options(config.restorers, config.restorer_options)
    weights = route_restorer_weights(config.restorers, config.restorer_weights)
    for name in config.restorers:
        restorers[name] = create_restorer(name, weights=weights[name], device=device, **routed[name])
    degradation = None
    if config.scales:
        from ..degradation import Degradation

        degradation = Degradation(config.degradation)
    identity = RunIdentity.of(detector=config.detector, detector_file=detector_file_sha256(config.detector),
                              recognizer_name=config.recognizer, recognizer=recognizer,
                              flip_test=config.flip_test, restorers=restorers, restorer_options=routed,
                              degradation=config.degradation, seed=config.seed, device=device,
                              recognizer_options=recognizer_options,
                              alignment_fit=alignment_fit(getattr(protocol, "spec", None) or {}),
                              align_on=getattr(config, "align_on", "clean"),  # identification: always clean
                              plugins=plugins_of(config.recognizer, config.restorers))
    return RunContext(config, protocol, device, cache, recognizer, restorers, degradation, identity)


def embed_conditions(ctx: RunContext, items: Sequence[str], probe_set: set[str], info: dict[str, "ImageInfo"], *,
                     progress: bool = True) -> tuple[dict[tuple[str, int | None], dict[str, np.ndarray]],
                                                     dict[str, float]]:
    """Embeddings of ``items`` in every condition (clean for all; degraded/restored for ``probe_set`` only).

    Cached entries are read; missing ones are computed batch by batch (align once, degrade once per scale, restore
    per restorer, embed) and written to the cache as they finish. Returns ``(embeddings, stage_seconds)``.
    """
    config, cache = ctx.config, ctx.cache
    conditions = ctx.conditions
    embeddings: dict[tuple[str, int | None], dict[str, np.ndarray]] = {c: {} for c in conditions}
    if config.align_on == "degraded" and config.scales:  # the degraded faces' landmarks are part of their keys
        ctx.realigned.update(degraded_landmark_stage(ctx, [i for i in items if i in probe_set], info,
                                                     progress=progress))

    def key_for(item: str, condition: tuple[str, int | None]) -> str:
        inf = info[item]
        return ctx.identity.embedding_key(inf.sha256, inf.landmarks, *condition, item=item,
                                          degraded_landmarks=degraded_landmarks_of(ctx, item, condition[1]))

    width = getattr(ctx.recognizer, "embedding_dim", None)
    work = []
    for item in items:
        missing = []
        for cond in conditions:
            if cond[1] is not None and item not in probe_set:
                continue
            cached = cache.get("embedding", key_for(item, cond))
            if cached is not None and width is not None and np.shape(cached) != (int(width),):
                logger.warning("cached embedding of %s %s has shape %s where %s gives %d values; computing it again",
                               item, cond, np.shape(cached), ctx.config.recognizer, int(width))
                cached = None
            if cached is None:
                missing.append(cond)
            else:
                embeddings[cond][item] = cached
        if missing:
            work.append((item, missing))
    stage_time = {"align_s": 0.0, "degrade_s": 0.0, "restore_s": 0.0, "embed_s": 0.0,
                  "n_embedded": 0, "n_degraded": 0, "n_restored": 0}
    batches = list(in_batches(work, config.batch_size))
    # Decode + align of batch k+1 runs in a background thread while batch k is degraded, restored and embedded
    # (PIL decoding and torch kernels release the GIL), so the device waits less for the CPU.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="restorever-prefetch") as pool:
        upcoming = pool.submit(align_items, ctx.protocol, [w[0] for w in batches[0]], info, ctx.device) \
            if batches else None
        for k, batch in enumerate(progress_bar(batches, len(batches), "embeddings", progress)):
            tick = time.perf_counter()
            faces, crop_lms = upcoming.result()
            if k + 1 < len(batches):
                upcoming = pool.submit(align_items, ctx.protocol, [w[0] for w in batches[k + 1]], info, ctx.device)
            stage_time["align_s"] += time.perf_counter() - tick  # time spent waiting for the prefetch
            _embed_batch(ctx, batch, faces, crop_lms, info, conditions, key_for, embeddings, stage_time)
    return embeddings, stage_time


def _embed_batch(ctx: RunContext, batch, faces, crop_lms, info, conditions, key_for, embeddings,
                 stage_time) -> None:
    """Clean embeddings, then per scale: degrade once, restore per restorer, embed; cache every entry."""
    config, cache, recognizer = ctx.config, ctx.cache, ctx.recognizer
    batch_items = [w[0] for w in batch]
    wanted = {cond: [j for j, w in enumerate(batch) if cond in w[1]] for cond in conditions}
    if wanted[("none", None)]:
        idx = wanted[("none", None)]
        tick = time.perf_counter()
        emb = embed_faces(recognizer, select_rows(faces, idx), crop_lms[idx])
        stage_time["embed_s"] += time.perf_counter() - tick
        stage_time["n_embedded"] += len(idx)
        for j, e in zip(idx, emb):
            embeddings[("none", None)][batch_items[j]] = e
            cache.put("embedding", key_for(batch_items[j], ("none", None)), e)
    for scale in config.scales:
        idx = sorted({j for r in config.restorers for j in wanted[(r, scale)]})
        if not idx:
            continue
        tick = time.perf_counter()
        params = ctx.degradation.sample_params([batch_items[j] for j in idx], scale, config.seed)
        degraded, scale_lms = ctx.degradation.apply(select_rows(faces, idx), params), crop_lms[idx]  # pure: reads only
        if config.align_on == "degraded":  # aligned again with the landmarks found on each degraded crop
            degraded, scale_lms = realign_batch(ctx, [batch_items[j] for j in idx], degraded, scale)
        stage_time["degrade_s"] += time.perf_counter() - tick
        stage_time["n_degraded"] += len(idx)
        for name in config.restorers:
            wanted_here = set(wanted[(name, scale)])
            sub = [k for k, j in enumerate(idx) if j in wanted_here]
            if not sub:
                continue
            tick = time.perf_counter()
            sub_items = [batch_items[idx[k]] for k in sub]
            restored, n_new = _restore_cached(ctx, name, scale, sub_items, select_rows(degraded, sub), info)
            stage_time["restore_s"] += time.perf_counter() - tick
            stage_time["n_restored"] += n_new
            tick = time.perf_counter()
            sub_lms = scale_lms[sub]
            emb = embed_faces(recognizer, restored, sub_lms)
            stage_time["embed_s"] += time.perf_counter() - tick
            stage_time["n_embedded"] += len(sub)
            for k, e in zip(sub, emb):
                item = batch_items[idx[k]]
                embeddings[(name, scale)][item] = e
                cache.put("embedding", key_for(item, (name, scale)), e)


def save_examples(ctx: RunContext, items: Sequence[str], info: dict[str, "ImageInfo"], out: str | Path
                  ) -> list[dict[str, Any]]:
    """Write the clean, degraded and restored faces of ``items`` as PNGs under ``out/examples/`` (for figure grids).

    The images are recomputed with the run's seeds, so they are exactly the ones that were embedded. Returns one
    record per item: ``{"item", "clean": relpath, "images": {"x8/degraded": relpath, "x8/none": relpath, ...}}``.
    """
    from ..images import to_uint8
    from ..files import atomic_write_bytes

    config = ctx.config
    out = Path(out)
    records = []
    if not items:
        return records
    faces, _ = align_items(ctx.protocol, list(items), info, ctx.device)
    outputs: dict[str, Any] = {"clean": faces}
    for scale in config.scales:
        params = ctx.degradation.sample_params(list(items), scale, config.seed)
        degraded = ctx.degradation.apply(faces, params)
        if config.align_on == "degraded":
            degraded = realign_batch(ctx, list(items), degraded, scale)[0]
        outputs[f"x{scale}/degraded"] = degraded
        for name in ctx.restorers:
            if name == "none":
                continue
            outputs[f"x{scale}/{name}"], _ = _restore_cached(ctx, name, scale, list(items), degraded, info)
    for j, item in enumerate(items):
        safe = hashlib.sha256(item.encode()).hexdigest()[:12] + "_" + Path(item).stem
        entry: dict[str, Any] = {"item": item, "images": {}}
        for label, tensor in outputs.items():
            rel = Path("examples") / label / f"{safe}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / rel, _png_bytes(to_uint8(tensor[j:j + 1])[0]))
            if label == "clean":
                entry["clean"] = str(rel)
            else:
                entry["images"][label] = str(rel)
        records.append(entry)
    return records


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _restore_cached(ctx: RunContext, name: str, scale: int, items: list[str], degraded, info):
    """Restore ``degraded`` faces of ``items`` with restorer ``name``; returns ``(faces, n_computed)``.

    Restored faces are quantised to 8 bits (as a saved PNG would be) and, for real restorers, cached as uint8 arrays
    keyed by image, landmarks, degradation, scale, seed and restorer: a new recognizer on a finished run re-embeds
    but never re-restores. ``none`` is neither run nor cached: ``degraded`` (``Degradation.apply``'s 8-bit levels in
    [0, 1]) is returned as it is, bit for bit what the identity, its clamp and the quantisation give (tested).
    """
    import torch

    config = ctx.config
    if name == "none":
        return degraded, 0
    seeds = [item_seed(config.seed, i, scale, "restore") for i in items]

    def run(index: list[int]):  # restored faces quantised to 8 bits
        return restore_faces(ctx.restorers[name], degraded[index], [seeds[i] for i in index])

    keys = [ctx.identity.restored_key(info[i].sha256, info[i].landmarks, name, scale, item=i,
                                      degraded_landmarks=degraded_landmarks_of(ctx, i, scale)) for i in items]
    out: list = [None] * len(items)
    for j, key in enumerate(keys):
        cached = ctx.cache.get("restored", key)
        if cached is not None:
            out[j] = torch.from_numpy(cached).to(degraded.device)
    todo = [j for j, face in enumerate(out) if face is None]
    if todo:
        computed = run(todo).mul(255).round_().clamp_(0, 255).to(torch.uint8)
        for j, face in zip(todo, computed):
            ctx.cache.put("restored", keys[j], face.cpu().numpy())
            out[j] = face
    return torch.stack(out).float().div_(255), len(todo)


def evaluate(config: EvalConfig, *, progress: bool = True, examples: int = 0,
             examples_dir: str | Path | None = None) -> dict[str, Any] | None:
    """Run one evaluation and return the results record (the ``results.json`` layout of DESIGN.md).

    Under ``torchrun`` each rank computes a shard and every rank but 0 returns ``None``; rank 0 returns the record.

    Nothing is written here except cache entries; :func:`restorever.reports.results.write_run` writes the outputs.
    Besides the results.json keys, the record holds ``degradation_records`` (one dict of drawn parameters per probe
    and scale), which ``write_run`` moves to ``degradation.jsonl``. Invalid ``config`` fields raise
    :class:`~restorever.errors.ConfigError` naming the field.
    """
    from ..metrics.verification import verification_report

    started = time.perf_counter()
    timings: dict[str, float] = {}
    dist_info = distributed.from_env()
    if dist_info.enabled and config.device in (None, "", "auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            config.device = f"cuda:{dist_info.local_rank}"
    ctx = build_context(config)
    config = ctx.config  # protocol defaults resolved
    protocol, device, cache, recognizer = ctx.protocol, ctx.device, ctx.cache, ctx.recognizer
    restorers, degradation = ctx.restorers, ctx.degradation
    distributed.init(dist_info, device.type)
    progress = progress and dist_info.is_main
    pairs = limit_pairs(protocol.pairs, config.limit_pairs)
    images = pairs.images()
    probe_set = set(pairs.b) if config.degrade_side == "probe" else set(images)

    # ---- stage 1: read, hash, landmarks (cached per image bytes + detector)
    t0 = time.perf_counter()
    misses_before = cache.misses
    # under torchrun, each rank's read-back of the whole list: hits on the entries the ranks have just written, and
    # misses on the images that are never cached (undecodable, detector failures; their own rank counted them),
    # which the record leaves out
    readback_hits = readback_misses = 0
    if dist_info.enabled:  # each rank fills the cache for its shard; then everyone reads the whole list back
        landmark_stage(protocol, distributed.shard(images, dist_info), detector=config.detector, device=device,
                       cache=cache, batch_size=config.batch_size, progress=progress)
        distributed.barrier(dist_info)
        readback_hits, readback_misses = -cache.hits, -cache.misses
    info = landmark_stage(protocol, images, detector=config.detector, device=device, cache=cache,
                          batch_size=config.batch_size, progress=progress)
    if dist_info.enabled:
        readback_hits, readback_misses = readback_hits + cache.hits, readback_misses + cache.misses
    timings["landmarks_s"] = time.perf_counter() - t0
    n_landmark_misses = cache.misses - misses_before
    fallbacks = apply_fallback_landmarks(protocol, info)
    failed = apply_error_policy(info, config.on_error)
    keep = [i for i in range(len(pairs)) if pairs.a[i] not in failed and pairs.b[i] not in failed]
    kept = set(keep)
    skipped = [{"pair": int(pairs.lines[i]) if pairs.lines else i, "a": pairs.a[i], "b": pairs.b[i],
                "reason": failed.get(pairs.a[i]) or failed.get(pairs.b[i]),
                "same": int(pairs.same[i]), "fold": int(pairs.fold[i])}
               for i in range(len(pairs)) if i not in kept]
    valid = pairs.subset(keep)
    if len(valid) == 0 or len(np.unique(valid.same)) < 2:
        raise RestoreverError(f"{len(valid)} pair(s) left after skipping {len(skipped)} of {len(pairs)}; "
                              f"verification needs both same and different pairs")

    # ---- stage 2: embeddings per condition
    t0 = time.perf_counter()
    needed_images = valid.images()
    conditions = ctx.conditions
    if dist_info.enabled:
        shard_time = embed_conditions(ctx, distributed.shard(needed_images, dist_info), probe_set, info,
                                      progress=progress)[1]
        shard_time.update(n_cache_hits=cache.hits - readback_hits, n_cache_misses=cache.misses - readback_misses,
                          n_cache_corrupt=cache.corrupt)  # this rank's own shards, not the read-backs
        shard_time = distributed.sum_over_ranks(dist_info, shard_time)  # rank 0's merge below only reads
        distributed.barrier(dist_info)
        if not dist_info.is_main:
            distributed.finish(dist_info)
            return None  # rank 0 merges and scores
    merge_start = {"misses": cache.misses, "corrupt": cache.corrupt}
    embeddings, stage_time = embed_conditions(ctx, needed_images, probe_set, info, progress=progress)
    merge_hits = cache.hits
    if dist_info.enabled:
        stage_time = {k: int(round(v)) if k.startswith("n_") else v for k, v in shard_time.items()}
        shard_counts = {k: stage_time.pop(f"n_cache_{k}") for k in ("hits", "misses", "corrupt")}
    timings["embeddings_s"] = time.perf_counter() - t0
    timings.update(stage_time)

    # ---- stage 3: metrics (pure functions of the embeddings)
    clean = embeddings[("none", None)]
    records: list[ConditionRecord] = []
    for restorer, scale in conditions:
        emb = embeddings[(restorer, scale)]
        side_a = clean if (scale is None or config.degrade_side == "probe") else emb
        a = np.stack([side_a[i] for i in valid.a])
        b = np.stack([(emb if scale is not None else clean)[i] for i in valid.b])
        similarity = pair_similarity(config, recognizer)
        scores = score_pairs(similarity, a, b)
        compared = [i for i in needed_images if i in emb and (i in probe_set or not scale)]
        records.append(ConditionRecord(
            restorer=restorer, degradation=None if scale is None else config.degradation, scale=scale,
            degrade_side=config.degrade_side, recognizer=config.recognizer, similarity=similarity,
            verification=VerificationMetrics.from_json(verification_report(valid.same, scores, valid.fold),
                                                       check=False),
            identity=IdentityToClean.from_json(identity_to_clean(clean, emb, compared), check=False),
            scores=PairScores(valid.same.tolist(), valid.fold.tolist(), scores.tolist()),
            alignment=alignment_block(ctx, compared, scale)))
    distributed.finish(dist_info)
    record_run_costs(cache.root, device.type, config, timings, n_landmark_misses)
    example_records = []
    if examples and examples_dir is not None:
        chosen = [i for i in dict.fromkeys(valid.b) if i in probe_set][:examples]
        example_records = save_examples(ctx, chosen, info, examples_dir)
    timings["total_s"] = time.perf_counter() - started
    degradation_records = []
    if degradation is not None:
        probe_items = [i for i in needed_images if i in probe_set]
        for scale in config.scales:
            for items in in_batches(probe_items, 1024):
                params = degradation.sample_params(list(items), scale, config.seed)
                for item, rec in zip(items, params.to_records()):
                    degradation_records.append({"item": item, "scale": scale, **rec,
                                                **sidecar_fields(ctx, item, scale)})
    run = RunRecord(
        header=run_header(config, device, [recognizer, *restorers.values()]),
        protocol=ProtocolRecord(
            name=protocol.name, source=protocol.source, pairs=len(valid), pairs_requested=len(pairs),
            folds=int(np.unique(valid.fold).size), images=len(needed_images), skipped=skipped,
            landmark_fallbacks=fallbacks, failed_images=[{"image": k, "reason": v} for k, v in failed.items()],
            pairs_sha256=pairs_digest(pairs.a, pairs.b, pairs.same, pairs.fold),
            images_sha256={i: info[i].sha256 for i in images if info[i].sha256},
            images_decode={i: info[i].decode for i in images if info[i].decode}),
        cache=CacheRecord(**_cache_counts(cache, shard_counts if dist_info.enabled else None, merge_start,
                                          merge_hits),
                          dir=str(Path(cache.root).resolve()) if cache.root else None,
                          identity=ctx.identity.as_record()),
        timings={k: round(v, 3) for k, v in timings.items()},
        pairs=PairIds(list(valid.a), list(valid.b)),
        examples=example_records,
        conditions=records,
        degradation_records=degradation_records,
        distributed={"world_size": dist_info.world_size})
    return run.to_json()


def _cache_counts(cache: ArrayCache, shards: dict[str, int] | None, merge_start: dict[str, int],
                  merge_hits: int) -> dict[str, int]:
    """The record's ``hits``, ``misses`` and ``corrupt``: the cache's own counters in one process; under torchrun
    (``shards``: the counters of every rank's own shards, summed) those plus rank 0's misses and corrupt entries
    while it read the ranks' entries back, and its hits after that (examples), but not the read-back hits: a fresh
    cache gives ``hits=0`` and every entry a miss, as one process does."""
    if shards is None:
        return {"hits": cache.hits, "misses": cache.misses, "corrupt": cache.corrupt}
    return {"hits": shards["hits"] + cache.hits - merge_hits,
            "misses": shards["misses"] + cache.misses - merge_start["misses"],
            "corrupt": shards["corrupt"] + cache.corrupt - merge_start["corrupt"]}


def run_header(config: EvalConfig, device: Any, models: Sequence[Any]) -> RunHeader:
    """The header every results record starts with: version, time (UTC, seconds), ``config`` as resolved, the
    machine, the weight files of ``models`` (recognizer first, then the restorers) and ``setup``
    (:func:`~restorever.pipeline.environment.setup_info`)."""
    weights = {}
    for model in models:
        weights.update({n: WeightRecord(f, s) for n, (f, s) in weights_files(model).items()})
    return RunHeader(restorever_version=restorever_version(),
                     created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     config=asdict(config), environment=environment_info(device), weights=weights,
                     setup=setup_info(config, models[0], models[1:], device) if models else None)

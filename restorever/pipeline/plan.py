"""``--dry-run``: what a run would compute, what is cached already, and roughly how long the rest takes."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RestoreverError
from ..images import decode_tag, header_decodes
from ..protocol_specs import alignment_fit
from .cache import ArrayCache
from .costs import load_costs
from .identity import RunIdentity, conditions_of, plugins_of

logger = logging.getLogger(__name__)

@dataclass
class PlanContext:
    """What a work plan needs of a run: its protocol, device, cache and the identity (cache keys) the run will
    have; ``missing`` names the backends whose weight files are not there (their entries count as to compute);
    ``files`` maps each backend with weights to the ``{role: (path, sha256)}`` the run will load."""

    config: Any
    protocol: Any
    device: Any
    cache: ArrayCache
    identity: RunIdentity
    missing: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict[str, tuple[str, str | None]]] = field(default_factory=dict)

    @property
    def conditions(self) -> list[tuple[str, int | None]]:
        return conditions_of(self.config.restorers, self.config.scales)


def plan_context(config, protocol=None) -> PlanContext:
    """The run's identity from its configuration and weight files alone: no network is built, nothing is
    downloaded. A weight file that is missing is reported in ``missing``, not raised."""
    from .. import hub
    from ..devices import resolve_device
    from ..errors import WeightsNotFoundError
    from ..protocol import load_protocol
    from ..recognizers import locate_recognizer_weights
    from ..restorers import locate_restorer_weights
    from .routing import resolve_recognizer, route_restorer_options, route_restorer_weights
    from .protocol_defaults import resolve_protocol_defaults

    config.validate()
    device = resolve_device(config.device)
    if protocol is None:
        protocol = load_protocol(config.protocol, data_root=config.data_root, pairs=config.pairs)
    config = resolve_protocol_defaults(config, getattr(protocol, "spec", None) or {})  # as build_context does
    cache = ArrayCache(Path(config.cache_dir) if config.cache_dir else hub.get_cache_dir() / "cache")
    routed = route_restorer_options(config.restorers, config.restorer_options)
    config, recognizer_options = resolve_recognizer(config, device)
    missing: dict[str, str] = {}

    def files(kind: str, name: str, locate, weights) -> dict[str, tuple[str, str | None]]:
        try:
            return {role: (str(path), hub.sha256_file(path)) for role, path in locate(name, weights).items()}
        except WeightsNotFoundError as exc:
            missing[name] = str(exc)
            return {"missing": (f"{kind} {name}", None)}

    recognizer_files = files("recognizer", config.recognizer, locate_recognizer_weights,
                             config.recognizer_weights or None)
    restorer_weights = route_restorer_weights(config.restorers, config.restorer_weights)
    restorer_files = {name: files("restorer", name, locate_restorer_weights, restorer_weights[name])
                      for name in config.restorers}
    from ..detectors import detector_file_sha256

    detector_file = detector_file_sha256(config.detector)
    if config.detector == "scrfd" and detector_file is None:
        missing["scrfd"] = ("det_10g.onnx not found (restorever.detectors.scrfd_candidate_paths lists where it is "
                            "looked for)")
    identity = RunIdentity.from_files(detector=config.detector, detector_file=detector_file,
                                      recognizer_name=config.recognizer,
                                      recognizer_files=recognizer_files, flip_test=config.flip_test,
                                      restorer_files=restorer_files, restorer_options=routed,
                                      degradation=config.degradation, seed=config.seed, device=device,
                                      recognizer_options=recognizer_options,
                                      alignment_fit=alignment_fit(getattr(protocol, "spec", None) or {}),
                                      align_on=getattr(config, "align_on", "clean"),
                                      plugins=plugins_of(config.recognizer, config.restorers))
    found = {name: f for name, f in [(config.recognizer, recognizer_files), *restorer_files.items()]
             if f and name not in missing}
    return PlanContext(config, protocol, device, cache, identity, missing, found)


def _options_text(options: dict) -> str:
    """`` (engine=torch, precision=fp16)`` for a plan line; empty without options."""
    return f" ({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})" if options else ""


def describe_plan(config) -> str:
    """A human-readable work plan for ``config`` (nothing is computed or written, no model is built): verification
    protocols plan their pairs, identification protocols (``lfw-ident``) their gallery and probes. An
    identification config plans as its run loads, so a verification protocol is refused as the run refuses it."""
    from ..datasets_ident import is_ident_protocol
    from .evaluate import limit_pairs
    from .identification import IdentConfig

    if isinstance(config, IdentConfig) or is_ident_protocol(config.protocol):
        from ..datasets_ident import build_split, draw_candidates, load_ident_protocol, split_options

        ident = load_ident_protocol(config.protocol, data_root=config.data_root)
        options = split_options(ident.spec, min_images=getattr(config, "min_images", None),
                                max_probes_per_person=getattr(config, "max_probes_per_person", None),
                                max_distractors=getattr(config, "max_distractors", None))
        enrolled, distractors = draw_candidates(ident.people, ident.folder, options)
        split = build_split(enrolled, distractors, {}, max_probes_per_person=options.max_probes_per_person)
        ctx = plan_context(config, ident.as_protocol())
        images = list(dict.fromkeys([*split.gallery, *split.probes]))
        probes = set(split.probes)
        header = (f"protocol {ctx.protocol.name}: {split.n_enrolled} enrolled people, gallery {len(split.gallery)} "
                  f"({len(split.gallery) - split.n_enrolled} distractors), {len(split.probes)} probes (before images "
                  f"without a face are dropped)")
    else:
        ctx = plan_context(config)
        pairs = limit_pairs(ctx.protocol.pairs, config.limit_pairs)
        images = pairs.images()
        probes = set(pairs.b) if config.degrade_side == "probe" else set(images)
        header = (f"protocol {ctx.protocol.name}: {len(pairs)} pairs, {len(images)} images ({len(probes)} probes), "
                  f"{int(np.unique(pairs.fold).size)} folds")
    return _plan(ctx, images, probes, header)


def _plan(ctx, images: list[str], probes: set[str], header: str) -> str:
    config = ctx.config
    landmarks_cached, landmarks = 0, {}
    unreadable, no_face = 0, 0
    fallback = (ctx.protocol.spec.get("alignment") or {}).get("fallback_landmarks")
    failed: set[str] = set()  # never embedded: the run skips them (or stops, with on_error: error)
    for item in images:
        try:
            data = ctx.protocol.read_bytes(item)
        except RestoreverError:
            unreadable += 1
            failed.add(item)
            continue
        if not header_decodes(data):  # the run skips it (or stops) every time: a failure to decode is not cached
            unreadable += 1
            failed.add(item)
            continue
        sha = hashlib.sha256(data).hexdigest()
        if ctx.identity.detector == "scrfd" and ctx.identity.detector_file is None:
            continue  # no SCRFD file: its keys hold the file's sha256, so nothing can be found cached
        key = ctx.identity.landmarks_key(sha, decode_tag(data))  # the key landmark_stage uses
        path = ctx.cache.path("landmarks", key) if ctx.cache.root else None
        if path is not None and path.exists():
            landmarks_cached += 1
            lm = ctx.cache.get("landmarks", key)
            if lm is not None and not np.isnan(lm).any():
                landmarks[item] = (sha, lm)
            elif lm is not None and fallback:  # no face found: the run aligns it with the protocol's points
                landmarks[item] = (sha, np.asarray(fallback, dtype=np.float32))
            elif lm is not None:
                no_face += 1
                failed.add(item)
    lines = [f"{header}; unreadable or not an image now: {unreadable}; no face found (cached): {no_face}",
             f"landmarks ({config.detector}): {landmarks_cached} cached, "
             f"{len(images) - landmarks_cached - unreadable} to detect",
             f"device {ctx.device}; recognizer {config.recognizer}{_options_text(config.recognizer_options)}; "
             f"restorers {', '.join(config.restorers)}; "
             f"scales {config.scales or '-'} ({config.degradation})"]
    lines += [f"weights of {name}: " + ", ".join(f"{role} {path} (sha256 {(sha or '?')[:12]})"
                                                 for role, (path, sha) in files.items())
              for name, files in ctx.files.items()]
    lines += [f"weights missing for {name} (the run stops there until they are in place): {why}"
              for name, why in ctx.missing.items()]
    lines.append("conditions:")
    todo: dict[str, int] = {}
    for restorer, scale in ctx.conditions:
        wanted = [i for i in images if i not in failed and (scale is None or i in probes)]
        if scale is not None and ctx.identity.align_on == "degraded":
            # the keys hold the landmarks found on each degraded crop, which only the run detects: count it all
            lines.append(f"  {restorer + ' x' + str(scale):24s}      ? cached, {len(wanted):6d} at most to compute "
                         f"(--align-on degraded: not known before the degraded faces are made)")
            todo[restorer] = todo.get(restorer, 0) + len(wanted)
            continue
        cached = 0
        for item in wanted:
            if item not in landmarks:
                continue
            sha, lm = landmarks[item]
            key = ctx.identity.embedding_key(sha, lm, restorer, scale, item=item)
            cached += ctx.cache.path("embedding", key).exists() if ctx.cache.root else 0
        label = "clean" if scale is None else f"{restorer} x{scale}"
        lines.append(f"  {label:24s} {cached:6d} cached, {len(wanted) - cached:6d} to compute")
        stage = "clean" if scale is None else restorer
        todo[stage] = todo.get(stage, 0) + len(wanted) - cached
    to_detect = len(images) - landmarks_cached - unreadable
    if ctx.identity.align_on == "degraded":  # each degraded crop may need a detection as well (cached ones do not)
        to_detect += len([i for i in images if i in probes and i not in failed]) * len(config.scales)
    estimate = _estimate(ctx, config, to_detect, todo)
    lines.append(f"estimated time for what is missing: {estimate}")
    return "\n".join(lines)


def _estimate(ctx, config, n_landmarks: int, todo: dict[str, int]) -> str:
    if n_landmarks == 0 and not any(todo.values()):
        return "nothing is missing (every entry is cached)"
    costs = load_costs(ctx.cache.root)
    dev = ctx.device.type
    known = True

    def cost(stage: str, name: str = "") -> float:
        nonlocal known
        value = costs.get(f"{dev}|{stage}|{name}")
        if value is None:
            known = False
            return 0.0
        return value

    # only the stages with work to do are looked up: `none` restores nothing, so it has no measured cost
    total = n_landmarks * cost("landmarks", config.detector) if n_landmarks else 0.0
    for restorer, n in todo.items():
        if not n:
            continue
        total += n * cost("embed", config.recognizer)
        if restorer != "clean":
            total += n * cost("degrade", config.degradation)
            if restorer != "none":
                total += n * cost("restore", restorer)
    if known:
        return f"{_duration(total)} on {dev} (from stage costs measured by earlier runs with this cache folder)"
    small = ("--max-distractors 20 --max-probes-per-person 1" if hasattr(config, "max_distractors")
             else "--limit-pairs 20")  # identification configs have no pair limit
    return (f"unknown: some stages were never measured with this cache folder (its costs.json; run a small job "
            f"first, e.g. {small}); the measured stages alone take {_duration(total)} on {dev}")


def _duration(seconds: float) -> str:
    """``"42 s"`` under two minutes, else ``"3.5 min"`` (a small job read "0.0 min")."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"

"""Closed-set identification (``lfw-ident``) with attribute filtering, and fitting the attribute probe.

One run: split (gallery / probes / distractors, :mod:`restorever.datasets_ident`) -> landmarks -> embeddings of
every image clean and of every probe degraded + restored per condition (the shared, cached stages of
:mod:`restorever.pipeline.evaluate`) -> attribute probabilities (probe over the embeddings, or a pixel model) ->
FAISS search per condition: unfiltered, filtered by the predicted attributes, and filtered after the re-weighting
module -> ``retrieval`` and ``attributes`` sections per condition.

Nothing is written here except cache entries; :func:`restorever.reports.ident.write_ident_run` writes ``results.json``, ``results.md`` and
``cmc.png``.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, ProtocolError, RestoreverError
from .evaluate import EvalConfig, RunContext, build_context, embed_conditions, run_header
from .records import CacheRecord, IdentConditionRecord, IdentRunRecord
from .landmarks import apply_error_policy, apply_fallback_landmarks, landmark_stage
from .identity import recognizer_id, weights_id

logger = logging.getLogger(__name__)


@dataclass
class IdentConfig(EvalConfig):
    """Options of an identification run (``EvalConfig`` plus the split, attribute and search options).

    ``None`` for a split or attribute option means "the protocol file's value".
    """

    protocol: str = "lfw-ident"
    min_images: int | None = None
    max_probes_per_person: int | None = None
    max_distractors: int | None = None
    attribute_model: str | None = None
    attribute_weights: dict[str, str] = field(default_factory=dict)
    attribute_filter: list[str] | None = None
    filter_threshold: float | None = None
    age_tolerance: int | None = None
    age_bins: list[float] | None = None
    reweight: str | None = None
    top_k: int = 10
    search_backend: str = "auto"
    index: str = "flat"
    ivf_nlist: int = 64
    nprobe: int = 16
    filter_mode: str = "partition"

    def validate(self) -> None:
        super().validate()
        if self.top_k < 10:
            raise ValueError("--top-k must be at least 10 (rank-10 and the CMC curve need it)")
        if self.top_k > MAX_TOP_K:
            raise ValueError(f"--top-k must be at most {MAX_TOP_K} (the CMC is stored up to it), got {self.top_k}")
        if self.nprobe < 1 or self.ivf_nlist < 1:
            raise ValueError(f"--nprobe and --ivf-nlist must be at least 1, got {self.nprobe} and {self.ivf_nlist}")
        if self.index not in ("flat", "ivf"):
            raise ValueError(f"--index must be flat or ivf, got {self.index!r}")
        if self.filter_mode not in ("partition", "selector"):
            raise ValueError(f"--filter-mode must be partition or selector, got {self.filter_mode!r}")
        if self.attribute_filter and not self.attribute_model:
            raise ValueError("--attribute-filter needs --attribute-model (a fitted probe .pt, or "
                             "insightface-genderage)")
        if not self.attribute_model and (self.filter_threshold is not None or self.age_tolerance is not None):
            raise ValueError("--threshold and --age-tolerance apply to the attribute filter: give --attribute-model")
        named = list(self.attribute_filter or ())
        twice = sorted({a for a in named if named.count(a) > 1})
        if twice:
            raise ValueError(f"--attribute-filter names {', '.join(twice)} more than once")
        from ..retrieval import AttributeFilter

        # the filter's own checks (names, threshold in [0, 1], tolerance >= 0) before any image is read; the
        # protocol's values fill what is not given here, and are checked again where the filter is built
        AttributeFilter(tuple(dict.fromkeys(self.attribute_filter or ())),
                        0.9 if self.filter_threshold is None else float(self.filter_threshold),
                        1 if self.age_tolerance is None else int(self.age_tolerance))


#: the largest --top-k: the CMC of every condition is stored in results.json up to it
MAX_TOP_K = 10_000


# ---------------------------------------------------------------------------------------------------- setup

@dataclass
class _Prepared:
    ident: Any
    options: Any
    split: Any
    ctx: RunContext
    info: dict
    failed: dict
    timings: dict
    fallbacks: list


def _prepare(config: IdentConfig, *, progress: bool) -> _Prepared:
    from ..datasets_ident import build_split, draw_candidates, load_ident_protocol, split_options
    from ..formats.lfw_ident import refill_candidates

    config.validate()
    timings: dict[str, float] = {}
    ident = load_ident_protocol(config.protocol, data_root=config.data_root)
    options = split_options(ident.spec, min_images=config.min_images,
                            max_probes_per_person=config.max_probes_per_person,
                            max_distractors=config.max_distractors)
    enrolled, distractors = draw_candidates(ident.people, ident.folder, options)
    if not enrolled:  # known before any face is detected: no person has --min-images images
        raise RestoreverError(f"protocol {ident.name}: no person has {options.min_images} or more images, so the "
                              f"split has no enrolled people; lower --min-images or check the data root")
    candidates = [i for items in enrolled.values() for i in items] + list(distractors.values())
    protocol = ident.as_protocol()
    ctx = build_context(config, protocol)
    config = ctx.config = search_similarity(ctx.config)  # protocol defaults resolved
    t0 = time.perf_counter()
    info = landmark_stage(protocol, candidates, detector=config.detector, device=ctx.device, cache=ctx.cache,
                          batch_size=config.batch_size, progress=progress)
    fallbacks = apply_fallback_landmarks(protocol, info)
    failed = apply_error_policy(info, config.on_error)
    while extra := refill_candidates(enrolled, ident.people, ident.folder, failed, options.max_probes_per_person):
        # an image that failed is replaced by the person's next one, so --max-probes-per-person N still gives N
        new = [i for items in extra.values() for i in items]
        more = landmark_stage(protocol, new, detector=config.detector, device=ctx.device, cache=ctx.cache,
                              batch_size=config.batch_size, progress=False)
        fallbacks += apply_fallback_landmarks(protocol, more)
        failed.update(apply_error_policy(more, config.on_error))
        info.update(more)
        enrolled = {name: [*items, *extra.get(name, [])] for name, items in enrolled.items()}
    timings["landmarks_s"] = time.perf_counter() - t0
    split = build_split(enrolled, distractors, failed, max_probes_per_person=options.max_probes_per_person)
    if split.n_enrolled == 0 or not split.probes:
        raise RestoreverError(f"protocol {ident.name}: the split has {split.n_enrolled} enrolled people and "
                              f"{len(split.probes)} probes; lower --min-images or check the data root")
    return _Prepared(ident, options, split, ctx, info, failed, timings, fallbacks)


def search_similarity(config: IdentConfig) -> IdentConfig:
    """The gallery search ranks by cosine similarity (inner product of normalised embeddings): a protocol silent on
    ``scoring.similarity`` gets ``cosine``; any other value is an error rather than a setting quietly ignored."""
    if config.sources.get("similarity") == "default":
        return replace(config, similarity="cosine", sources={**config.sources, "similarity": "default"})
    if config.similarity != "cosine":
        problem = f"identification searches by cosine similarity; got {config.similarity!r}"
        if config.sources.get("similarity") == "protocol":
            raise ProtocolError(f"protocol {config.protocol}: scoring.similarity: {problem}; set it to cosine")
        raise ConfigError("similarity", problem)
    return config


def attribute_settings(config: IdentConfig, spec: Mapping) -> dict[str, Any]:
    """Resolved attribute options: CLI values over the protocol's ``attributes`` section."""
    section = spec.get("attributes") or {}
    return {
        "filter": list(dict.fromkeys(config.attribute_filter if config.attribute_filter is not None
                                     else section.get("filter", ["gender", "age"]))),
        "threshold": float(config.filter_threshold if config.filter_threshold is not None
                           else section.get("threshold", 0.9)),
        "age_tolerance": int(config.age_tolerance if config.age_tolerance is not None
                             else section.get("age_tolerance", 1)),
        "age_bins": list(config.age_bins if config.age_bins is not None else section.get("age_bins", [13, 20, 60])),
    }


def load_labels(ident, schema) -> dict[str, dict[str, int]]:
    """Attribute labels named in the protocol's ``labels`` section (files relative to the data root; a missing
    file only disables that attribute's accuracy, with a warning)."""
    from ..attributes.labels import read_gender_lists, read_kumar_ages
    from ..images import safe_join

    section = ident.spec.get("labels") or {}
    out: dict[str, dict[str, int]] = {}
    gender = section.get("gender")
    if "gender" in schema.attributes and isinstance(gender, dict):
        male, female = (safe_join(ident.root, gender[k], what="label file") for k in ("male", "female"))
        if male.is_file() and female.is_file():
            out["gender"] = read_gender_lists(male, female)
        else:
            logger.warning("gender labels not found (%s, %s): no gender accuracy", male, female)
    age = section.get("age")
    if "age" in schema.attributes and isinstance(age, dict) and age.get("kumar_scores"):
        path = safe_join(ident.root, age["kumar_scores"], what="label file")
        if path.is_file():
            out["age"] = read_kumar_ages(path, schema.age_groups)
        else:
            logger.warning("age labels not found (%s): no age accuracy", path)
    return out


# ---------------------------------------------------------------------------------------------------- attributes

class _AttributeRecognizer:
    """Wraps a pixel attribute model so the cached embedding stage computes its probabilities per condition."""

    similarity = "cosine"

    def __init__(self, predictor, schema, cache_name: str):
        from ..hub import ModelCard

        self.predictor, self.schema = predictor, schema
        self.card = ModelCard(name=cache_name, arch="attributes", template="ffhq_512")
        self.embedding_dim = schema.width
        self.weight_files = getattr(predictor, "weight_files", {})

    def embed(self, faces, landmarks):
        import torch

        return torch.as_tensor(self.schema.concat(self.predictor.predict_images(faces, landmarks)),
                               dtype=torch.float32)


def _attribute_model(config: IdentConfig, settings: Mapping[str, Any], recognizer_weights: Sequence[Sequence[str]]):
    """``(predictor, schema, reweight_module_or_None, description)``; ``recognizer_weights`` is the run's
    ``[(role, sha256), ...]`` (:func:`restorever.pipeline.identity.weights_id`), checked against the one an embedding
    probe was fitted on."""
    from ..attributes import load_attribute_model
    from ..attributes.groups import AgeGroups, AttributeSchema

    if not config.attribute_model:
        return None, None, None, None
    wanted = AttributeSchema(AgeGroups.parse([float(b) for b in settings["age_bins"]]))
    model = load_attribute_model(config.attribute_model, weights=config.attribute_weights or None,
                                 **({} if _is_path(config.attribute_model) else {"schema": wanted}))
    schema = model.schema
    if model.kind == "embedding":
        if model.recognizer != config.recognizer:
            raise RestoreverError(f"attribute model {config.attribute_model} was fitted on {model.recognizer} "
                                  f"embeddings; this run uses --recognizer {config.recognizer}")
        _check_fitted_weights(config.attribute_model, model.meta.get("recognizer_weights"), recognizer_weights)
        if config.age_bins is not None and list(schema.age_groups.edges) != [float(b) for b in config.age_bins]:
            raise RestoreverError(f"attribute model {config.attribute_model} has age bins "
                                  f"{list(schema.age_groups.edges)}; refit it with --age-bins to change them")
    reweight, source = None, None
    if config.reweight in (None, "", "auto"):
        if getattr(model, "has_reweighting", False):
            reweight, source = "own", config.attribute_model
    elif config.reweight != "none":
        from ..attributes.predictor import EmbeddingAttributePredictor

        other = EmbeddingAttributePredictor.load(config.reweight)
        if other.model.reweight is None:
            raise RestoreverError(f"--reweight {config.reweight}: that checkpoint has no re-weighting module")
        if other.schema.to_dict() != schema.to_dict():  # same sizes are not enough: other age edges, other groups
            raise RestoreverError(f"--reweight {config.reweight}: its layout ({_layout(other.schema)}) does not match "
                                  f"the attribute model's ({_layout(schema)}); refit it with `restorever attributes "
                                  f"fit --age-bins ...` to the same groups, or pass --reweight none")
        # the checkpoint, not its final module: that one was fitted with every person's labels, the people of
        # this run included; refine() sends each person through the fold module that did not see them
        reweight, source = other, config.reweight
    description = {"model": config.attribute_model, "kind": model.kind, "schema": schema.to_dict(),
                   "reweighting": source}
    if model.kind == "embedding":
        description["fit_report"] = _slim_report(model.meta.get("report"))
    for role, (path, sha) in (getattr(model, "weight_files", None) or {}).items():
        description.setdefault("files", {})[role] = {"file": path, "sha256": sha}
    if model.kind == "embedding" and "file" in model.meta:
        from ..hub import sha256_file

        description["files"] = {"model": {"file": model.meta["file"], "sha256": sha256_file(model.meta["file"])}}
    return model, schema, reweight, description


def _check_fitted_weights(spec: str, fitted: Any, run: Sequence[Sequence[str]]) -> None:
    """An embedding probe reads one set of recognizer weights: other weights of the same architecture give other
    embeddings, and the probe's probabilities would be silently wrong. Models fitted before the weights were
    recorded (``fitted`` None) are accepted with a warning."""
    run_ids = sorted([str(role), str(sha)] for role, sha in run)
    if fitted is None:
        logger.warning("attribute model %s does not record which recognizer weights it was fitted on (made before "
                       "restorever stored them); make sure they are this run's, or refit it", spec)
        return
    fitted_ids = sorted([str(role), str(sha)] for role, sha in fitted)
    if fitted_ids != run_ids:
        def show(ids: list[list[str]]) -> str:
            return ", ".join(f"{role} {sha[:12]}" for role, sha in ids) or "none"

        raise RestoreverError(f"attribute model {spec} was fitted on recognizer weights {show(fitted_ids)}; this run "
                              f"loads {show(run_ids)}. Use the same --recognizer-weights, or refit the model with "
                              f"`restorever attributes fit --recognizer-weights ...`")


def _layout(schema) -> str:
    """``gender 2, age 4 (13,20,60)``: the attributes in order, their class counts and the age edges in years."""
    parts = [f"{a} {n}" + (f" ({','.join(f'{e:g}' for e in schema.age_groups.edges)})" if a == "age" else "")
             for a, n in schema.sizes.items()]
    return ", ".join(parts)


def _is_path(spec: str) -> bool:
    return spec.endswith((".pt", ".pth")) or Path(spec).exists()


def _slim_report(report: Mapping | None) -> dict | None:
    if not report:
        return None
    out = {"images": report.get("images"), "people": report.get("people"), "folds": report.get("folds"),
           "attributes": {}}
    for a, entry in (report.get("attributes") or {}).items():
        out["attributes"][a] = {k: (entry[k]["accuracy"], entry[k]["ece"]) for k in ("raw", "reweighted")
                                if k in entry}
    return out


def _predict(model, schema, reweight, embeddings: np.ndarray, people: Sequence[str], *, reweighted: bool
             ) -> dict[str, np.ndarray]:
    """Attribute probabilities from embeddings (embedding model) or from the probability vectors the pixel model
    produced in the embedding stage."""
    if model.kind == "embedding":
        if not reweighted:
            return model.predict(embeddings, people=people)
        if reweight == "own":
            return model.predict(embeddings, people=people, reweight=True)
        raw = model.predict(embeddings, people=people)
        return reweight.refine(schema.concat(raw), people=people)
    raw = schema.split(np.asarray(embeddings, dtype=np.float64))
    if not reweighted:
        return raw
    if reweight == "own" or reweight is None:
        raise RestoreverError("a pixel attribute model has no re-weighting module of its own; pass --reweight PATH")
    return reweight.refine(schema.concat(raw), people=people)


# ---------------------------------------------------------------------------------------------------- evaluate

def evaluate_identification(config: IdentConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run one identification evaluation and return the results record (``conditions[]`` with ``retrieval`` and
    ``attributes``)."""
    from ..attributes.labels import label_arrays
    from ..attributes.metrics import attribute_report, consistency_report
    from ..metrics.retrieval import identification_report
    from ..retrieval import AttributeFilter, GalleryIndex, attribute_codes, probe_constraints

    started = time.perf_counter()
    prep = _prepare(config, progress=progress)
    config = prep.ctx.config  # protocol defaults resolved
    ctx, split, info, timings = prep.ctx, prep.split, prep.info, prep.timings
    settings = attribute_settings(config, prep.ident.spec)
    model, schema, reweight, attr_desc = _attribute_model(config, settings, ctx.identity.recognizer["weights"])

    t0 = time.perf_counter()
    items = split.items
    probe_set = set(split.probes)
    embeddings, stage_time = embed_conditions(ctx, items, probe_set, info, progress=progress)
    timings["embeddings_s"] = time.perf_counter() - t0
    timings.update(stage_time)
    attr_vectors = embeddings
    if model is not None and model.kind == "image":
        t0 = time.perf_counter()
        cache_name = (f"attributes:{model.name}:{json.dumps(schema.to_dict(), sort_keys=True)}:"
                      f"{getattr(model, 'age_sigma', '')}")
        attribute_recognizer = _AttributeRecognizer(model, schema, cache_name)
        # its own identity: the recognizer's would key the attribute vectors as the embeddings just cached
        actx = replace(ctx, config=replace(config, recognizer=cache_name, flip_test=False),
                       recognizer=attribute_recognizer,
                       identity=replace(ctx.identity, recognizer=recognizer_id(
                           cache_name, weights_id(attribute_recognizer), flip_test=False)))
        attr_vectors, _ = embed_conditions(actx, items, probe_set, info, progress=progress)
        timings["attributes_s"] = time.perf_counter() - t0
        _require_finite(attr_vectors, f"the attribute probabilities of {model.name}")
    _require_finite(embeddings, f"the {config.recognizer} embeddings")

    clean = embeddings[("none", None)]
    gallery_emb = np.stack([clean[i] for i in split.gallery])
    mate = split.probe_mate
    k = min(int(config.top_k), max(len(split.gallery), 10))  # the CMC never runs past the gallery (rank-10 kept)
    index_opts = dict(backend=config.search_backend, device=str(ctx.device),
                      ivf_nlist=config.ivf_nlist if config.index == "ivf" else 0, nprobe=config.nprobe)
    plain = GalleryIndex(gallery_emb, **index_opts)

    flt = None
    variants: list[str] = []
    gallery_probs: dict[str, dict[str, np.ndarray]] = {}
    filtered_index: dict[str, GalleryIndex] = {}
    labels_probe: dict[str, np.ndarray] = {}
    if model is not None:
        variants = ["raw"] + (["reweighted"] if reweight is not None else [])
        g_vec = np.stack([attr_vectors[("none", None)][i] for i in split.gallery])
        for v in variants:
            gallery_probs[v] = _predict(model, schema, reweight, g_vec, split.gallery_people,
                                        reweighted=v == "reweighted")
        labels_probe = label_arrays(split.probes, load_labels(prep.ident, schema))
        if settings["filter"]:
            flt = AttributeFilter(tuple(settings["filter"]), settings["threshold"], settings["age_tolerance"])
            missing = [a for a in flt.attributes if a not in schema.attributes]
            if missing:
                have = [a for a in flt.attributes if a in schema.attributes]
                fix = f"--attribute-filter {','.join(have)}" if have else "--attribute-filter none"
                raise RestoreverError(f"--attribute-filter {','.join(missing)}: the attribute model does not "
                                      f"predict it (it predicts {', '.join(schema.attributes)}); pass {fix}")
            for v in variants:
                codes = attribute_codes({a: gallery_probs[v][a] for a in flt.attributes}, flt.threshold)
                filtered_index[v] = GalleryIndex(gallery_emb, codes=codes, partition_by=flt.attributes,
                                                 mode=config.filter_mode, **index_opts)

    records: list[IdentConditionRecord] = []
    clean_probs: dict[str, dict[str, np.ndarray]] = {}
    for restorer, scale in ctx.conditions:
        emb = embeddings[(restorer, scale)]
        probe_emb = np.stack([emb[p] for p in split.probes])
        res = plain.search(probe_emb, k)
        ranks = plain.mate_ranks(probe_emb, res, mate)
        retrieval = identification_report(ranks, searched_fraction=res.searched / plain.n,
                                          search_seconds=res.seconds, max_rank=k)
        attributes: dict[str, Any] = {}
        if model is not None:
            vec = attr_vectors[(restorer, scale)]
            p_vec = np.stack([vec[p] for p in split.probes])
            for v in variants:
                probs = _predict(model, schema, reweight, p_vec, split.probe_people, reweighted=v == "reweighted")
                if scale is None:
                    clean_probs[v] = probs
                entry: dict[str, Any] = {}
                for a in schema.attributes:
                    rep = attribute_report(labels_probe.get(a, np.full(len(split.probes), -1)), probs[a],
                                           schema.classes(a))
                    entry[a] = {key: rep[key] for key in ("n", "accuracy", "balanced_accuracy", "ece", "nll")}
                    if scale is not None:
                        entry[a]["consistency"] = consistency_report(clean_probs[v][a], probs[a],
                                                                     ordinal=a == "age")
                attributes[v] = entry
                if flt is not None:
                    cons = probe_constraints(probs, flt)
                    idx = filtered_index[v]
                    res_f = idx.search(probe_emb, k, constraints=cons)
                    ranks_f = idx.mate_ranks(probe_emb, res_f, mate, cons)
                    key = "filtered" if v == "raw" else "filtered_reweighted"
                    retrieval[key] = identification_report(
                        ranks_f, searched_fraction=res_f.searched / idx.n, search_seconds=res_f.seconds,
                        max_rank=k, reference_ranks=ranks)
                    retrieval[key]["probes_filtered"] = float(np.mean([c is not None for c in cons]))
            if scale is not None and "raw" in attributes:
                attributes["gender_flip_rate"] = attributes["raw"].get("gender", {}).get("consistency", {}).get(
                    "changed_rate")
                attributes["age_group_change_rate"] = attributes["raw"].get("age", {}).get("consistency", {}).get(
                    "changed_rate")
        records.append(IdentConditionRecord(
            restorer=restorer, degradation=None if scale is None else config.degradation, scale=scale,
            degrade_side="probe", recognizer=config.recognizer, retrieval=retrieval, attributes=attributes))
    timings["total_s"] = time.perf_counter() - started
    run = IdentRunRecord(
        header=run_header(config, ctx.device, [ctx.recognizer, *ctx.restorers.values()]),
        protocol={**prep.ident.describe(prep.options), "task": "identification", **split.summary(),
                  "skipped": split.skipped, "landmark_fallbacks": prep.fallbacks,
                  "failed_images": [{"image": i, "reason": r} for i, r in prep.failed.items()]},
        index=plain.describe(), attribute_model=attr_desc,
        attribute_filter=None if flt is None else asdict(flt),
        cache=CacheRecord(hits=ctx.cache.hits, misses=ctx.cache.misses, corrupt=ctx.cache.corrupt,
                          dir=str(ctx.cache.root) if ctx.cache.root else None,
                          identity=ctx.identity.as_record()),
        timings={key: round(v, 3) for key, v in timings.items()},
        conditions=records)
    return run.to_json()


def _require_finite(vectors: Mapping[tuple[str, int | None], Mapping[str, np.ndarray]], what: str) -> None:
    """``RestoreverError`` naming the condition and images whose vectors hold NaN or inf: the search would refuse
    them later without saying which, and a NaN probability would read as "not confident" without a sign."""
    for (restorer, scale), by_item in vectors.items():
        bad = sorted(item for item, v in by_item.items() if not np.isfinite(v).all())
        if bad:
            condition = "clean" if scale is None else f"{restorer} x{scale}"
            raise RestoreverError(f"{what} of {len(bad)} image(s) hold NaN or inf under {condition} (first: "
                                  f"{', '.join(bad[:3])}), so they cannot be ranked; a model at reduced precision "
                                  f"can overflow: run it in fp32 (e.g. --recognizer-option precision=fp32 or "
                                  f"--restorer-option precision=fp32) or check its weights")


# ---------------------------------------------------------------------------------------------------- fitting

def clean_embeddings(config: IdentConfig, *, progress: bool = True) -> dict[str, Any]:
    """Clean embeddings of every image of the split (gallery, probes, distractors), with each image's person.

    Returns ``{"items", "people", "embeddings" [N, D], "ident", "split", "recognizer_weights"}`` (the last the
    recognizer's ``[[role, sha256], ...]``); computed through the shared cache.
    """
    clean_config = replace(config, scales=[], restorers=["none"])
    prep = _prepare(clean_config, progress=progress)
    split = prep.split
    person = dict(zip(split.gallery, split.gallery_people))
    person.update(zip(split.probes, split.probe_people))
    items = split.items
    embeddings, _ = embed_conditions(prep.ctx, items, set(), prep.info, progress=progress)
    _require_finite(embeddings, f"the {config.recognizer} embeddings")
    clean = embeddings[("none", None)]
    return {"items": items, "people": [person[i] for i in items],
            "embeddings": np.stack([clean[i] for i in items]), "ident": prep.ident, "split": split,
            "recognizer_weights": [list(w) for w in prep.ctx.identity.recognizer["weights"]]}


def fit_attributes(config: IdentConfig, options=None, *, reweight: bool = True, progress: bool = True
                   ) -> tuple[Any, dict[str, Any]]:
    """Fit the embedding attribute predictor on the labelled images of the split; returns ``(predictor, report)``."""
    from ..attributes.groups import AgeGroups, AttributeSchema
    from ..attributes.labels import label_arrays
    from ..attributes.predictor import FitOptions, fit_attribute_predictor

    settings = attribute_settings(config, _spec_of(config))
    schema = AttributeSchema(AgeGroups.parse([float(b) for b in settings["age_bins"]]))
    data = clean_embeddings(config, progress=progress)
    labels = label_arrays(data["items"], load_labels(data["ident"], schema))
    if not labels:
        raise RestoreverError("no attribute labels found: the protocol's labels section names files missing under "
                              f"{data['ident'].root}")
    keep = np.zeros(len(data["items"]), dtype=bool)
    for y in labels.values():
        keep |= y >= 0
    x = data["embeddings"][keep]
    people = [p for p, m in zip(data["people"], keep) if m]
    labels = {a: y[keep] for a, y in labels.items()}
    meta = {"protocol": data["ident"].name, "split": data["split"].summary(), "data_root": str(data["ident"].root),
            "recognizer_weights": data["recognizer_weights"],
            "label_rules": {"gender": "LFW gender name lists; images in both lists dropped",
                            "age": "Kumar et al. scores: Senior > 0 -> 65 years (old), else 40 years (adult), "
                                   "binned with the age groups"}}
    return fit_attribute_predictor(x, labels, people, schema, recognizer=config.recognizer,
                                   options=options or FitOptions(), reweight=reweight, meta=meta)


def _spec_of(config: IdentConfig) -> dict:
    from ..datasets_ident import load_ident_spec

    return load_ident_spec(config.protocol)[0]


# ---------------------------------------------------------------------------------------------------- outputs

def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(obj, float):
        return None if (math.isnan(obj) or math.isinf(obj)) else obj
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj

"""Typed records of ``results.json`` (the layout in DESIGN.md, the rules in ``restorever/schemas/*.schema.json``).

Each record's :meth:`to_json` gives the dict ``results.json`` holds, with its keys in the order the pipeline has
always written them; :meth:`from_json` reads one back, after checking it against its part of the schema, and
raises :class:`RecordError` naming the file and the key at fault. Keys a record does not model (added by a later
version, or by ``reports``: ``comparison_to_clean``, ``outputs``) are kept in ``extra`` and written back after
the modelled ones, so ``from_json(d).to_json() == d`` for every valid ``d`` written by this version.

An optional key that the schema does not allow to be ``null`` is left out of :meth:`to_json` when its field is
``None``; an optional key that may be ``null`` (``accuracy_sem``) is always written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, TypeVar

from ..errors import RestoreverError
from .record_schema import definition, load_schema, schema_problems

R = TypeVar("R", bound="_Record")


class RecordError(RestoreverError, ValueError):
    """A results record that does not match its schema (the message names the source and the key)."""


def check_record(data: Any, schema: str, part: str | None, source: str, path: str = "") -> None:
    """Raise :class:`RecordError` when ``data`` breaks the schema ``schema`` (its ``$defs`` entry ``part``)."""
    problems = schema_problems(data, load_schema(schema) if part is None else definition(schema, part), path)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise RecordError(f"{source}: {problems[0]}{more}; run `restorever validate` on it")


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Write an optional, non-nullable key only when it has a value."""
    if value is not None:
        out[key] = value


def _extra(data: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in known}


class _Record:
    """What every record shares: the schema part that checks it and :meth:`from_json`."""

    SCHEMA: ClassVar[tuple[str, str | None]] = ("results", None)  # (schema file, $defs entry or None for the root)

    @classmethod
    def from_json(cls: type[R], data: Any, *, source: str = "results.json", path: str = "",
                  check: bool = True) -> R:
        """Parse ``data`` (a dict from ``results.json``); with ``check``, validate it against the schema first.
        ``path`` names where ``data`` sits in the file (``conditions[2]``), for the messages."""
        if check:
            check_record(data, *cls.SCHEMA, source=source, path=path)
            problem = cls._inconsistency(data)
            if problem:
                raise RecordError(f"{source}: {path + '.' if path else ''}{problem}; run `restorever validate` on it")
        return cls._parse(data)

    @classmethod
    def _inconsistency(cls, data: Mapping[str, Any]) -> str | None:
        """What a schema cannot say: parts of ``data`` (already schema-checked) that disagree with each other."""
        return None

    @classmethod
    def _parse(cls: type[R], data: Mapping[str, Any]) -> R:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------- verification parts

@dataclass
class VerificationMetrics(_Record):
    """``conditions[].verification``: k-fold accuracy, AUC, EER, TAR@FAR and a thinned ROC (fractions in [0, 1])."""

    SCHEMA: ClassVar[tuple[str, str | None]] = ("results", "verification")
    KEYS: ClassVar[tuple[str, ...]] = ("accuracy_mean", "accuracy_std", "accuracy_sem", "fold_accuracies",
                                       "thresholds", "auc", "eer", "tar_at_far", "roc", "n_pairs")

    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    thresholds: list[float]
    auc: float | None
    eer: float | None
    tar_at_far: dict[str, float | None]
    roc_fpr: list[float | None]
    roc_tpr: list[float | None]
    accuracy_sem: float | None = None
    n_pairs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> "VerificationMetrics":
        return cls(accuracy_mean=data["accuracy_mean"], accuracy_std=data["accuracy_std"],
                   fold_accuracies=list(data["fold_accuracies"]), thresholds=list(data["thresholds"]),
                   auc=data["auc"], eer=data["eer"], tar_at_far=dict(data["tar_at_far"]),
                   roc_fpr=list(data["roc"]["fpr"]), roc_tpr=list(data["roc"]["tpr"]),
                   accuracy_sem=data.get("accuracy_sem"), n_pairs=data.get("n_pairs"),
                   extra=_extra(data, cls.KEYS))

    def to_json(self) -> dict[str, Any]:
        out = {"accuracy_mean": self.accuracy_mean, "accuracy_std": self.accuracy_std,
               "accuracy_sem": self.accuracy_sem, "fold_accuracies": list(self.fold_accuracies),
               "thresholds": list(self.thresholds), "auc": self.auc, "eer": self.eer,
               "tar_at_far": dict(self.tar_at_far), "roc": {"fpr": list(self.roc_fpr), "tpr": list(self.roc_tpr)}}
        _put(out, "n_pairs", self.n_pairs)
        return {**out, **self.extra}


@dataclass
class IdentityToClean(_Record):
    """``conditions[].identity``: how close each probe's embedding stays to its clean one (``n`` probes; the
    statistics are ``None``, and left out, when ``n`` is 0)."""

    SCHEMA: ClassVar[tuple[str, str | None]] = ("results", "identity")
    KEYS: ClassVar[tuple[str, ...]] = ("cosine_to_clean_mean", "cosine_to_clean_std", "cosine_to_clean_median",
                                       "l2_to_clean_mean", "n", "per_item")

    cosine_to_clean_mean: float | None
    n: int | None = None
    cosine_to_clean_std: float | None = None
    cosine_to_clean_median: float | None = None
    l2_to_clean_mean: float | None = None
    per_item: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> "IdentityToClean":
        per_item = data.get("per_item")
        return cls(cosine_to_clean_mean=data.get("cosine_to_clean_mean"), n=data.get("n"),
                   cosine_to_clean_std=data.get("cosine_to_clean_std"),
                   cosine_to_clean_median=data.get("cosine_to_clean_median"),
                   l2_to_clean_mean=data.get("l2_to_clean_mean"),
                   per_item=None if per_item is None else dict(per_item), extra=_extra(data, cls.KEYS))

    def to_json(self) -> dict[str, Any]:
        out = {"cosine_to_clean_mean": self.cosine_to_clean_mean}
        for key in self.KEYS[1:4]:
            _put(out, key, getattr(self, key))
        _put(out, "n", self.n)
        _put(out, "per_item", None if self.per_item is None else dict(self.per_item))
        return {**out, **self.extra}


@dataclass
class PairScores(_Record):
    """``conditions[].scores``: every scored pair's label (1 same person), fold and similarity, in pair order."""

    SCHEMA: ClassVar[tuple[str, str | None]] = ("results", "scores")

    same: list[int]
    fold: list[int]
    score: list[float]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> "PairScores":
        return cls(same=list(data["same"]), fold=list(data["fold"]), score=list(data["score"]),
                   extra=_extra(data, ("same", "fold", "score")))

    def to_json(self) -> dict[str, Any]:
        return {"same": list(self.same), "fold": list(self.fold), "score": list(self.score), **self.extra}


@dataclass
class ConditionRecord(_Record):
    """One verification condition: (restorer, degradation, scale, degraded side, recognizer) and its metrics.
    ``scale`` and ``degradation`` are ``None`` for the clean condition."""

    SCHEMA: ClassVar[tuple[str, str | None]] = ("results", "condition")
    KEYS: ClassVar[tuple[str, ...]] = ("restorer", "degradation", "scale", "degrade_side", "recognizer", "similarity",
                                       "verification", "identity", "scores", "alignment")

    restorer: str
    degradation: str | None
    scale: int | None
    degrade_side: str
    recognizer: str
    verification: VerificationMetrics
    similarity: str | None = None
    identity: IdentityToClean | None = None
    scores: PairScores | None = None
    alignment: dict[str, Any] | None = None  # align_on="degraded": {"on": "degraded", "detected", "not_found"}
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_clean(self) -> bool:
        return self.scale is None

    @property
    def label(self) -> str:
        """``clean`` or ``restorer xSCALE``, as reports and validate name a condition."""
        return "clean" if self.scale is None else f"{self.restorer} x{self.scale}"

    @classmethod
    def _inconsistency(cls, data: Mapping[str, Any]) -> str | None:
        """Per-pair lists of unequal length, or fewer thresholds than fold accuracies: every figure and statistic
        indexes one list by another."""
        scores, verification = data.get("scores"), data["verification"]
        if scores is not None:
            lengths = {key: len(scores[key]) for key in ("same", "fold", "score")}
            if len(set(lengths.values())) > 1:
                return "scores: " + ", ".join(f"{k} has {n} entries" for k, n in lengths.items())
            n_pairs = verification.get("n_pairs")
            if n_pairs is not None and n_pairs != lengths["score"]:
                return f"scores: {lengths['score']} pairs, but verification.n_pairs is {n_pairs}"
        if len(verification["fold_accuracies"]) != len(verification["thresholds"]):
            return (f"verification: {len(verification['fold_accuracies'])} fold accuracies but "
                    f"{len(verification['thresholds'])} thresholds")
        return None

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> "ConditionRecord":
        identity, scores = data.get("identity"), data.get("scores")
        return cls(restorer=data["restorer"], degradation=data["degradation"], scale=data["scale"],
                   degrade_side=data["degrade_side"], recognizer=data["recognizer"],
                   verification=VerificationMetrics._parse(data["verification"]), similarity=data.get("similarity"),
                   identity=None if identity is None else IdentityToClean._parse(identity),
                   scores=None if scores is None else PairScores._parse(scores),
                   alignment=None if data.get("alignment") is None else dict(data["alignment"]),
                   extra=_extra(data, cls.KEYS))

    def to_json(self) -> dict[str, Any]:
        out = {"restorer": self.restorer, "degradation": self.degradation, "scale": self.scale,
               "degrade_side": self.degrade_side, "recognizer": self.recognizer}
        _put(out, "similarity", self.similarity)
        out["verification"] = self.verification.to_json()
        _put(out, "identity", None if self.identity is None else self.identity.to_json())
        _put(out, "scores", None if self.scores is None else self.scores.to_json())
        _put(out, "alignment", self.alignment)
        return {**out, **self.extra}


# ------------------------------------------------------------------------------------------------ shared header

@dataclass
class WeightRecord(_Record):
    """``weights[name]``: the file a model loaded and its sha256 (``None`` when it was not hashed)."""

    SCHEMA: ClassVar[tuple[str, str | None]] = ("results", "weight")

    file: str
    sha256: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> "WeightRecord":
        return cls(file=data["file"], sha256=data["sha256"], extra=_extra(data, ("file", "sha256")))

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, **self.extra}


@dataclass
class CacheRecord(_Record):
    """``cache``: the run's cache folder, its hit/miss/corrupt counts and the run identity its keys came from."""

    SCHEMA: ClassVar[tuple[str, str | None]] = ("results", "cache")
    KEYS: ClassVar[tuple[str, ...]] = ("hits", "misses", "corrupt", "dir", "identity")

    hits: int | None = None
    misses: int | None = None
    corrupt: int | None = None
    dir: str | None = None
    identity: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> "CacheRecord":
        return cls(hits=data.get("hits"), misses=data.get("misses"), corrupt=data.get("corrupt"),
                   dir=data.get("dir"), identity=data.get("identity"), extra=_extra(data, cls.KEYS))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("hits", "misses", "corrupt"):
            _put(out, key, getattr(self, key))
        out["dir"] = self.dir
        _put(out, "identity", self.identity)
        return {**out, **self.extra}


@dataclass
class RunHeader:
    """What verification and identification runs share at the top of ``results.json``: the version, the time,
    the resolved options (``config``), the machine (``environment``), the weight files and ``setup`` (template
    size, embedding size, degradation ranges: :func:`restorever.pipeline.environment.setup_info`; absent in records
    made before it)."""

    restorever_version: str
    created: str
    config: dict[str, Any]
    environment: dict[str, Any]
    weights: dict[str, WeightRecord]
    setup: dict[str, Any] | None = None

    KEYS: ClassVar[tuple[str, ...]] = ("restorever_version", "created", "config", "environment", "weights", "setup")

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> "RunHeader":
        """The header of a record already checked against its schema."""
        return cls(restorever_version=data["restorever_version"], created=data["created"],
                   config=dict(data["config"]), environment=dict(data["environment"]),
                   weights={name: WeightRecord._parse(w) for name, w in data["weights"].items()},
                   setup=data.get("setup"))

    def to_json(self) -> dict[str, Any]:
        out = {"restorever_version": self.restorever_version, "created": self.created, "config": self.config,
               "environment": self.environment, "weights": {n: w.to_json() for n, w in self.weights.items()}}
        _put(out, "setup", self.setup)
        return out


# --------------------------------------------------------------------------------------------- verification run

@dataclass
class ProtocolRecord(_Record):
    """``protocol`` of a verification run: the pairs evaluated, requested and skipped (with why), the folds, the
    images and their digests."""

    SCHEMA: ClassVar[tuple[str, str | None]] = ("results", "protocol")
    KEYS: ClassVar[tuple[str, ...]] = ("name", "source", "pairs", "pairs_requested", "folds", "images", "skipped",
                                       "landmark_fallbacks", "failed_images", "pairs_sha256", "images_sha256",
                                       "images_decode")

    name: str
    pairs: int
    folds: int
    skipped: list[dict[str, Any]]
    source: str | None = None
    pairs_requested: int | None = None
    images: int | None = None
    landmark_fallbacks: list[str] | None = None
    failed_images: list[dict[str, Any]] | None = None
    pairs_sha256: str | None = None
    images_sha256: dict[str, str] | None = None
    images_decode: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> "ProtocolRecord":
        return cls(**{k: data.get(k) for k in cls.KEYS if k in data}, extra=_extra(data, cls.KEYS))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.KEYS:
            _put(out, key, getattr(self, key))
        return {**out, **self.extra}


@dataclass
class PairIds:
    """``pairs``: the image ids of the scored pairs' two sides, in the order of ``conditions[].scores``."""

    a: list[str]
    b: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"a": list(self.a), "b": list(self.b)}


@dataclass
class RunRecord(_Record):
    """A verification run's ``results.json`` (``restorever eval``).

    ``degradation_records`` (the drawn degradation parameters, one dict per probe and scale) travel with the record
    :func:`restorever.pipeline.evaluate.evaluate` returns and go to ``degradation.jsonl``, not to results.json;
    ``outputs`` (digests of the files beside it) is added when the run is written."""

    header: RunHeader
    protocol: ProtocolRecord
    conditions: list[ConditionRecord]
    cache: CacheRecord | None = None
    timings: dict[str, float] | None = None
    pairs: PairIds | None = None
    examples: list[dict[str, Any]] | None = None
    degradation_records: list[dict[str, Any]] | None = None
    distributed: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KEYS: ClassVar[tuple[str, ...]] = RunHeader.KEYS + ("protocol", "cache", "timings", "pairs", "examples",
                                                        "conditions", "degradation_records", "distributed",
                                                        "outputs")

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> "RunRecord":
        cache, pairs = data.get("cache"), data.get("pairs")
        return cls(header=RunHeader.parse(data), protocol=ProtocolRecord._parse(data["protocol"]),
                   conditions=[ConditionRecord._parse(c) for c in data["conditions"]],
                   cache=None if cache is None else CacheRecord._parse(cache), timings=data.get("timings"),
                   pairs=None if pairs is None else PairIds(list(pairs["a"]), list(pairs["b"])),
                   examples=data.get("examples"), degradation_records=data.get("degradation_records"),
                   distributed=data.get("distributed"), outputs=data.get("outputs"), extra=_extra(data, cls.KEYS))

    @property
    def config(self) -> dict[str, Any]:
        return self.header.config

    def condition(self, restorer: str, scale: int | None) -> ConditionRecord:
        """The condition of ``restorer`` at ``scale`` (``None``: clean); KeyError naming the ones there are."""
        for cond in self.conditions:
            if cond.restorer == restorer and cond.scale == scale:
                return cond
        raise KeyError(f"no condition ({restorer}, {scale}); the run has {[c.label for c in self.conditions]}")

    def to_json(self) -> dict[str, Any]:
        out = self.header.to_json()
        out["protocol"] = self.protocol.to_json()
        _put(out, "cache", None if self.cache is None else self.cache.to_json())
        _put(out, "timings", self.timings)
        _put(out, "pairs", None if self.pairs is None else self.pairs.to_json())
        _put(out, "examples", self.examples)
        out["conditions"] = [c.to_json() for c in self.conditions]
        for key in ("degradation_records", "distributed", "outputs"):
            _put(out, key, getattr(self, key))
        return {**out, **self.extra}


# ------------------------------------------------------------------------------------------- identification run

@dataclass
class IdentConditionRecord(_Record):
    """One identification condition: (restorer, scale, recognizer), its ``retrieval`` block (rank-k rates, mAP,
    the filtered searches) and its ``attributes`` block."""

    SCHEMA: ClassVar[tuple[str, str | None]] = ("ident-results", "condition")
    KEYS: ClassVar[tuple[str, ...]] = ("restorer", "degradation", "scale", "degrade_side", "recognizer", "retrieval",
                                       "attributes")

    restorer: str
    scale: int | None
    recognizer: str
    retrieval: dict[str, Any]
    degradation: str | None = None
    degrade_side: str | None = None
    attributes: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "clean" if self.scale is None else f"{self.restorer} x{self.scale}"

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> "IdentConditionRecord":
        return cls(restorer=data["restorer"], scale=data["scale"], recognizer=data["recognizer"],
                   retrieval=data["retrieval"], degradation=data.get("degradation"),
                   degrade_side=data.get("degrade_side"), attributes=data.get("attributes"),
                   extra=_extra(data, cls.KEYS))

    def to_json(self) -> dict[str, Any]:
        out = {"restorer": self.restorer, "degradation": self.degradation, "scale": self.scale}
        _put(out, "degrade_side", self.degrade_side)
        out["recognizer"] = self.recognizer
        out["retrieval"] = self.retrieval
        _put(out, "attributes", self.attributes)
        return {**out, **self.extra}


@dataclass
class IdentRunRecord(_Record):
    """An identification run's ``results.json`` (``restorever ident``). ``protocol`` (the split's description)
    stays a dict; ``index``, ``attribute_model`` and ``attribute_filter`` are written even when ``None``."""

    SCHEMA: ClassVar[tuple[str, str | None]] = ("ident-results", None)
    KEYS: ClassVar[tuple[str, ...]] = RunHeader.KEYS + ("protocol", "index", "attribute_model", "attribute_filter",
                                                        "cache", "timings", "conditions")

    header: RunHeader
    protocol: dict[str, Any]
    conditions: list[IdentConditionRecord]
    index: dict[str, Any] | None = None
    attribute_model: dict[str, Any] | None = None
    attribute_filter: dict[str, Any] | None = None
    cache: CacheRecord | None = None
    timings: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> "IdentRunRecord":
        cache = data.get("cache")
        return cls(header=RunHeader.parse(data), protocol=dict(data["protocol"]),
                   conditions=[IdentConditionRecord._parse(c) for c in data["conditions"]],
                   index=data.get("index"), attribute_model=data.get("attribute_model"),
                   attribute_filter=data.get("attribute_filter"),
                   cache=None if cache is None else CacheRecord._parse(cache), timings=data.get("timings"),
                   extra=_extra(data, cls.KEYS))

    @property
    def config(self) -> dict[str, Any]:
        return self.header.config

    def to_json(self) -> dict[str, Any]:
        out = self.header.to_json()
        out.update(protocol=self.protocol, index=self.index, attribute_model=self.attribute_model,
                   attribute_filter=self.attribute_filter)
        _put(out, "cache", None if self.cache is None else self.cache.to_json())
        _put(out, "timings", self.timings)
        out["conditions"] = [c.to_json() for c in self.conditions]
        return {**out, **self.extra}


def is_identification(data: Any) -> bool:
    """Whether a results dict is an identification run's (``protocol.task == "identification"``)."""
    proto = data.get("protocol") if isinstance(data, dict) else None
    return isinstance(proto, dict) and proto.get("task") == "identification"


def record_from_json(data: Any, *, source: str = "results.json") -> RunRecord | IdentRunRecord:
    """The typed record of a ``results.json`` dict: :class:`IdentRunRecord` for identification runs, else
    :class:`RunRecord`; :class:`RecordError` naming ``source`` and the key when it breaks its schema."""
    if not isinstance(data, dict):
        raise RecordError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
    kind = IdentRunRecord if is_identification(data) else RunRecord
    return kind.from_json(data, source=source)

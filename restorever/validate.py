"""Validation of finished runs and of protocol files (``restorever validate``).

A run folder is valid when

1. ``results.json`` is strict JSON (no ``NaN``, no duplicate keys) that matches :data:`RESULTS_SCHEMA` and whose
   parts agree with each other (pair counts, folds, the conditions the config asks for);
2. every metric recomputes from the stored per-pair scores to the stored number (:func:`verification_report`, and
   the paired statistics when present), and ``degradation.jsonl`` holds the parameters this version draws;
3. when the cache folder the run used still exists: every embedding the run scored is there with a matching
   checksum, and the embeddings reproduce the stored scores and identity figures.

Protocol files are checked without any data: the loader's own checks, then paths (relative or
``${RESTOREVER_DATA}``), downloads, metrics and landmarks.

Nothing here modifies a run or the cache.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import RestoreverError

logger = logging.getLogger(__name__)

__all__ = ["RESULTS_SCHEMA", "IDENT_SCHEMA", "RunValidation", "check_run", "validate_run", "schema_problems",
           "validate_protocol_file", "validate_protocols"]

RESULTS_FILE = "results.json"
MAX_RESULTS_BYTES = 1 << 30  # a results.json above 1 GiB is refused unread
MAX_PROBLEMS_PER_CHECK = 20  # long lists are cut (the count is still reported)

# ------------------------------------------------------------------------------------------------------------ schema
# A JSON Schema (draft 2020-12 subset: type, enum, required, properties, additionalProperties, items, minItems,
# minimum, maximum, pattern, minLength). Keys may be added to a record; the ones listed here may not change meaning.

_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_FRACTION_OR_NULL = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_NAME = {"type": "string", "minLength": 1}

_VERIFICATION = {
    "type": "object",
    "required": ["accuracy_mean", "accuracy_std", "fold_accuracies", "thresholds", "auc", "eer", "tar_at_far", "roc"],
    "properties": {
        "accuracy_mean": _FRACTION,
        "accuracy_std": {"type": "number", "minimum": 0, "maximum": 1},
        "accuracy_sem": {"type": ["number", "null"], "minimum": 0},
        "fold_accuracies": {"type": "array", "minItems": 1, "items": _FRACTION},
        "thresholds": {"type": "array", "minItems": 1, "items": {"type": "number"}},
        "auc": _FRACTION_OR_NULL,
        "eer": _FRACTION_OR_NULL,
        "tar_at_far": {"type": "object", "additionalProperties": _FRACTION_OR_NULL},
        "roc": {"type": "object", "required": ["fpr", "tpr"],
                "properties": {"fpr": {"type": "array", "items": _FRACTION_OR_NULL},
                               "tpr": {"type": "array", "items": _FRACTION_OR_NULL}}},
        "n_pairs": {"type": "integer", "minimum": 1},
    },
}

_CONDITION = {
    "type": "object",
    "required": ["restorer", "degradation", "scale", "degrade_side", "recognizer", "verification"],
    "properties": {
        "restorer": _NAME,
        "degradation": {"type": ["string", "null"]},
        "scale": {"type": ["integer", "null"], "minimum": 1},
        "degrade_side": {"enum": ["probe", "both"]},
        "recognizer": _NAME,
        "similarity": {"enum": ["cosine", "euclidean"]},
        "verification": _VERIFICATION,
        "identity": {"type": "object", "properties": {
            "cosine_to_clean_mean": {"type": ["number", "null"], "minimum": -1.0001, "maximum": 1.0001},
            "n": {"type": "integer", "minimum": 0},
            "per_item": {"type": "object", "additionalProperties": {"type": "number"}}}},
        "scores": {"type": "object", "required": ["same", "fold", "score"], "properties": {
            "same": {"type": "array", "items": {"enum": [0, 1]}},
            "fold": {"type": "array", "items": {"type": "integer"}},
            "score": {"type": "array", "items": {"type": "number"}}}},
    },
}

RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "restorever results.json",
    "type": "object",
    "required": ["restorever_version", "created", "config", "environment", "weights", "protocol", "conditions"],
    "properties": {
        "restorever_version": _NAME,
        "created": _NAME,
        "config": {"type": "object",
                   "required": ["protocol", "restorers", "recognizer", "scales", "degradation", "degrade_side", "seed"],
                   "properties": {
                       "protocol": _NAME,
                       "restorers": {"type": "array", "minItems": 1, "items": _NAME},
                       "recognizer": _NAME,
                       "scales": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                       "degradation": _NAME,
                       "degrade_side": {"enum": ["probe", "both"]},
                       "seed": {"type": "integer"},
                       "cache_dir": {"type": ["string", "null"]},
                   }},
        "environment": {"type": "object", "required": ["python", "torch", "device"]},
        "weights": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["file", "sha256"],
            "properties": {"file": {"type": "string"},
                           "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"}}}},
        "protocol": {"type": "object", "required": ["name", "pairs", "folds", "skipped"], "properties": {
            "name": _NAME,
            "pairs": {"type": "integer", "minimum": 1},
            "pairs_requested": {"type": "integer", "minimum": 1},
            "folds": {"type": "integer", "minimum": 1},
            "images": {"type": "integer", "minimum": 1},
            "skipped": {"type": "array", "items": {"type": "object", "required": ["pair", "reason"]}},
            "landmark_fallbacks": {"type": "array", "items": {"type": "string"}},
            "images_sha256": {"type": "object",
                              "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
            "images_decode": {"type": "object", "additionalProperties": _NAME},
            "pairs_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        }},
        "cache": {"type": "object", "properties": {
            "hits": {"type": "integer", "minimum": 0},
            "misses": {"type": "integer", "minimum": 0},
            "corrupt": {"type": "integer", "minimum": 0},
            "dir": {"type": ["string", "null"]},
        }},
        "outputs": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["sha256"],
            "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "lines": {"type": "integer", "minimum": 0}}}},
        "pairs": {"type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "array", "items": {"type": "string"}},
            "b": {"type": "array", "items": {"type": "string"}}}},
        "conditions": {"type": "array", "minItems": 1, "items": _CONDITION},
    },
}

#: identification runs (``protocol.task == "identification"``, ``restorever ident``): the shared header and one
#: ``retrieval`` block per condition; their ranks are not stored, so their metrics are not recomputed
IDENT_SCHEMA: dict[str, Any] = {
    "$schema": RESULTS_SCHEMA["$schema"],
    "title": "restorever identification results.json",
    "type": "object",
    "required": RESULTS_SCHEMA["required"],
    "properties": {
        **{k: RESULTS_SCHEMA["properties"][k] for k in ("restorever_version", "created", "environment", "weights",
                                                       "cache")},
        "config": {"type": "object", "required": ["protocol", "restorers", "recognizer", "scales", "seed"]},
        "protocol": {"type": "object", "required": ["name", "task"],
                     "properties": {"task": {"enum": ["identification"]}}},
        "conditions": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["restorer", "scale", "recognizer", "retrieval"],
            "properties": {"restorer": _NAME, "scale": {"type": ["integer", "null"], "minimum": 1},
                           "recognizer": _NAME, "retrieval": {"type": "object"}}}},
    },
}

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value: Any, name: str) -> bool:
    if name in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return name == "number" or isinstance(value, int) or float(value).is_integer()
    return isinstance(value, _TYPES[name])


def _where(path: str) -> str:
    return path or "(top level)"


def schema_problems(value: Any, schema: dict[str, Any] = RESULTS_SCHEMA, path: str = "") -> list[str]:
    """Where ``value`` breaks ``schema`` (the JSON Schema subset listed above), as ``"path: what"`` strings."""
    out: list[str] = []
    _check_schema(value, schema, path, out)
    return out


def _check_schema(value: Any, schema: dict[str, Any], path: str, out: list[str]) -> None:
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            out.append(f"{_where(path)}: expected {' or '.join(types)}, got {type(value).__name__} "
                       f"{_short(value)}")
            return
    if "enum" in schema and not any(_json_equal(value, e) for e in schema["enum"]):
        out.append(f"{_where(path)}: expected one of {schema['enum']}, got {_short(value)}")
        return
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{_where(path)}: {value!r} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{_where(path)}: {value!r} is above the maximum {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{_where(path)}: empty string")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{_where(path)}: {_short(value)} does not match {schema['pattern']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(f"{_where(path)}: needs at least {schema['minItems']} item(s), has {len(value)}")
        if "items" in schema:
            before = len(out)
            for i, item in enumerate(value):
                _check_schema(item, schema["items"], f"{path}[{i}]", out)
                if len(out) - before >= MAX_PROBLEMS_PER_CHECK:
                    break
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                out.append(f"{_where(path)}: missing key {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in props:
                _check_schema(item, props[key], sub, out)
            elif extra is False:
                out.append(f"{_where(path)}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                _check_schema(item, extra, sub, out)


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema's ``enum`` defines it (``True`` is not ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


# ------------------------------------------------------------------------------------------------------------ runs

@dataclass
class RunValidation:
    """The outcome of :func:`check_run`: ``problems`` (the run is invalid when there is any), ``notes`` (checks that
    were skipped and why) and ``checked`` (what was verified, as counts)."""

    run_dir: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        done = ", ".join(f"{v} {k}" for k, v in self.checked.items() if v)
        return f"{self.run_dir}: " + ("valid" if self.ok else f"{len(self.problems)} problem(s)") + \
            (f" (checked {done})" if done else "")


def validate_run(run_dir: str | os.PathLike, *, check_cache: bool = True,
                 cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Problems found in the run folder ``run_dir`` (an empty list when it is valid); see :func:`check_run`."""
    return check_run(run_dir, check_cache=check_cache, cache_dir=cache_dir).problems


def check_run(run_dir: str | os.PathLike, *, check_cache: bool = True,
              cache_dir: str | os.PathLike | None = None) -> RunValidation:
    """Validate a finished run folder (``results.json`` and, when present, ``degradation.jsonl`` and the cache).

    Args:
        run_dir: the folder ``restorever eval --out`` wrote (or its ``results.json``).
        check_cache: also check the cached embeddings the run scored (when its cache folder exists).
        cache_dir: the cache folder, when it moved since the run (default: the one results.json records).
    """
    run = Path(run_dir)
    if run.is_file():
        run = run.parent
    report = RunValidation(run)
    record = _read_record(run / RESULTS_FILE, report)
    if record is None:
        return report
    if isinstance(record.get("protocol"), dict) and record["protocol"].get("task") == "identification":
        report.problems += _cut(schema_problems(record, IDENT_SCHEMA), "schema")
        report.checked["schema"] = 1
        report.notes.append("identification run: strict JSON and its schema checked; its retrieval metrics are not "
                            "recomputed (per-probe ranks are not stored)")
        return report
    found = schema_problems(record)
    report.checked["schema"] = 1
    if found:
        report.problems += _cut(found, "schema")
        return report
    _guarded(_check_consistency, report, record, report)
    if report.problems:  # the recomputations below assume a consistent record
        return report
    _guarded(_check_metrics, report, record, report)
    _guarded(_check_outputs, report, record, run, report)
    _guarded(_check_degradation_file, report, record, run, report)
    _guarded(_check_pairs, report, record, run, report)
    if check_cache:
        _guarded(_check_cache, report, record, report, cache_dir, run)
    else:
        report.notes.append("cache check skipped (--no-cache)")
    return report


VALIDATOR_ERROR = "validator error"


def _guarded(check, report: RunValidation, *args) -> None:
    """Run one check; an exception it did not foresee on a hostile record becomes a problem (so the command still
    reports and exits 2) instead of a traceback. The fuzz tests require that this never happens."""
    try:
        check(*args)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.debug("%s failed", check.__name__, exc_info=True)
        report.problems.append(f"{VALIDATOR_ERROR} in {check.__name__.lstrip('_')}: {type(exc).__name__}: {exc} "
                               f"(the record is malformed in a way restorever does not describe yet)")


def _cut(problems: list[str], what: str) -> list[str]:
    if len(problems) <= MAX_PROBLEMS_PER_CHECK:
        return problems
    return problems[:MAX_PROBLEMS_PER_CHECK] + [f"... and {len(problems) - MAX_PROBLEMS_PER_CHECK} more {what} "
                                                f"problem(s)"]


def _read_record(path: Path, report: RunValidation) -> dict[str, Any] | None:
    if not path.is_file():
        report.problems.append(f"{path}: missing (the run did not finish, or this is not a run folder)")
        return None
    size = path.stat().st_size
    if size > MAX_RESULTS_BYTES:
        report.problems.append(f"{path}: {size} bytes, larger than the {MAX_RESULTS_BYTES} allowed; not read")
        return None

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            out[key] = value
        return out

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON (a metric was NaN or infinite)")

    try:
        raw = path.read_bytes()
    except OSError as exc:
        report.problems.append(f"{path}: cannot be read ({exc.strerror or exc})")
        return None
    try:
        record = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs_hook, parse_constant=no_constants)
    except UnicodeDecodeError as exc:
        report.problems.append(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    except RecursionError:
        report.problems.append(f"{path}: nested too deeply to be a results file")
        return None
    except ValueError as exc:  # json.JSONDecodeError and the hooks above
        report.problems.append(f"{path}: not strict JSON ({exc})")
        return None
    if not isinstance(record, dict):
        report.problems.append(f"{path}: expected a JSON object at the top level, got {type(record).__name__}")
        return None
    return record


def _condition_label(cond: dict[str, Any]) -> str:
    return "clean" if cond.get("scale") is None else f"{cond.get('restorer')} x{cond.get('scale')}"


def _check_consistency(record: dict[str, Any], report: RunValidation) -> None:
    """Cross-field rules the schema cannot express."""
    import datetime as dt

    problems = report.problems
    cfg, proto, conds = record["config"], record["protocol"], record["conditions"]
    try:
        dt.datetime.fromisoformat(record["created"])
    except ValueError:
        problems.append(f"created: {_short(record['created'])} is not an ISO-8601 time")
    n = proto["pairs"]
    if "pairs_requested" in proto and proto["pairs_requested"] - n != len(proto["skipped"]):
        problems.append(f"protocol: {proto['pairs_requested']} pairs requested - {n} evaluated != "
                        f"{len(proto['skipped'])} skipped")
    pairs = record.get("pairs")
    if pairs is not None and not (len(pairs["a"]) == len(pairs["b"]) == n):
        problems.append(f"pairs: {len(pairs['a'])} a-side and {len(pairs['b'])} b-side ids for {n} pairs")
    from .pipeline.identity import conditions_of

    expected = conditions_of(cfg["restorers"], cfg["scales"])
    found = [(c["restorer"], c["scale"]) for c in conds]
    if sorted(found, key=repr) != sorted(expected, key=repr):
        problems.append(f"conditions: {found} do not match the config (restorers {cfg['restorers']}, scales "
                        f"{cfg['scales']}, plus the clean condition)")
    first_scores = None
    for i, cond in enumerate(conds):
        where = f"conditions[{i}] ({_condition_label(cond)})"
        if cond["recognizer"] != cfg["recognizer"] or cond["degrade_side"] != cfg["degrade_side"]:
            problems.append(f"{where}: recognizer/degrade_side differ from the config")
        if (cond["scale"] is None) != (cond["degradation"] is None):
            problems.append(f"{where}: a degraded condition needs both a scale and a degradation")
        elif cond["scale"] is not None and cond["degradation"] != cfg["degradation"]:
            problems.append(f"{where}: degradation {cond['degradation']!r} differs from the config's "
                            f"{cfg['degradation']!r}")
        ver = cond["verification"]
        scores = cond.get("scores")
        if scores is None:
            report.notes.append(f"{where}: no per-pair scores stored; its metrics cannot be recomputed")
            continue
        lengths = {len(scores["same"]), len(scores["fold"]), len(scores["score"])}
        if lengths != {n}:
            problems.append(f"{where}: scores hold {sorted(lengths)} entries for {n} pairs")
            continue
        if ver.get("n_pairs", n) != n:
            problems.append(f"{where}: verification.n_pairs {ver['n_pairs']} != {n} pairs")
        n_folds = len(set(scores["fold"]))
        if n_folds != proto["folds"] or len(ver["fold_accuracies"]) != n_folds or len(ver["thresholds"]) != n_folds:
            problems.append(f"{where}: {n_folds} folds in the scores, protocol.folds {proto['folds']}, "
                            f"{len(ver['fold_accuracies'])} fold accuracies, {len(ver['thresholds'])} thresholds")
        if len(set(scores["same"])) < 2:
            problems.append(f"{where}: the scored pairs hold only one class")
        if first_scores is None:
            first_scores = scores
        elif scores["same"] != first_scores["same"] or scores["fold"] != first_scores["fold"]:
            problems.append(f"{where}: scores a different list of pairs (labels or folds) than conditions[0]")
        roc = ver["roc"]
        if len(roc["fpr"]) != len(roc["tpr"]) or any(
                x is None or y is None for x, y in zip(roc["fpr"], roc["tpr"])) or \
                np.any(np.diff(np.asarray(roc["fpr"], float)) < 0) or \
                np.any(np.diff(np.asarray(roc["tpr"], float)) < 0):
            problems.append(f"{where}: verification.roc is not a non-decreasing curve of equal-length fpr/tpr")


def _close(a: float, b: float, rel: float, abs_: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def _compare(stored: Any, fresh: Any, path: str, out: list[str], *, rel: float = 1e-9, abs_: float = 1e-12) -> None:
    """Record where ``stored`` (from JSON) differs from ``fresh`` (recomputed); keys only one side has are skipped
    (a newer or older version may add keys), lists must have equal lengths."""
    if isinstance(fresh, (np.floating, np.integer)):
        fresh = fresh.item()
    if isinstance(fresh, dict) and isinstance(stored, dict):
        for key in fresh:
            if key in stored:
                _compare(stored[key], fresh[key], f"{path}.{key}", out, rel=rel, abs_=abs_)
        return
    if isinstance(fresh, (list, tuple, np.ndarray)) and isinstance(stored, list):
        fresh = list(fresh)
        if len(fresh) != len(stored):
            out.append(f"{path}: {len(stored)} values stored, {len(fresh)} recomputed")
            return
        bad = [i for i, (s, f) in enumerate(zip(stored, fresh)) if not _same_number(s, f, rel, abs_)]
        if bad:
            i = bad[0]
            out.append(f"{path}: {len(bad)} of {len(stored)} values differ from the recomputation (e.g. [{i}] "
                       f"stored {stored[i]!r}, recomputed {fresh[i]!r})")
        return
    if not _same_number(stored, fresh, rel, abs_):
        out.append(f"{path}: stored {_short(stored)}, recomputed {_short(fresh)}")


def _same_number(stored: Any, fresh: Any, rel: float, abs_: float) -> bool:
    if isinstance(fresh, (np.floating, np.integer)):
        fresh = fresh.item()
    if fresh is None or (isinstance(fresh, float) and math.isnan(fresh)):
        return stored is None
    if isinstance(fresh, (int, float)) and not isinstance(fresh, bool):
        try:
            return _is_type(stored, "number") and _close(float(stored), float(fresh), rel, abs_)
        except OverflowError:  # an integer beyond float range
            return False
    if isinstance(fresh, dict) and not isinstance(stored, dict):
        return False
    if isinstance(fresh, (list, tuple, np.ndarray)) and not isinstance(stored, list):
        return False
    if isinstance(fresh, (dict, list, tuple, np.ndarray)):
        found: list[str] = []
        _compare(stored, fresh, "", found, rel=rel, abs_=abs_)
        return not found
    return stored == fresh


def _check_metrics(record: dict[str, Any], report: RunValidation) -> None:
    """Recompute every condition's verification metrics (and the paired statistics) from the stored scores."""
    import copy

    from .metrics.verification import verification_report

    found: list[str] = []
    n_checked = 0
    for i, cond in enumerate(record["conditions"]):
        scores = cond.get("scores")
        if scores is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fresh = verification_report(np.asarray(scores["score"], dtype=np.float64),
                                            np.asarray(scores["same"], dtype=np.int64),
                                            np.asarray(scores["fold"], dtype=np.int64))
            except (ValueError, OverflowError) as exc:
                found.append(f"conditions[{i}] ({_condition_label(cond)}): metrics cannot be recomputed ({exc})")
                continue
        _compare(cond["verification"], fresh, f"conditions[{i}] ({_condition_label(cond)}).verification", found)
        n_checked += 1
    keys = ("comparison_to_clean", "comparison_to_none")
    if any(key in c for c in record["conditions"] for key in keys):
        from .reports.statistics import add_comparisons

        fresh_record = copy.deepcopy({k: record[k] for k in ("config", "pairs", "conditions") if k in record})
        stored = fresh_record["conditions"]
        try:
            first = next(c[key] for c in stored for key in keys if key in c)
            options = {"n_boot": int(first["bootstrap"]["n_boot"]), "level": float(first["ci_level"]),
                       "seed": int(first["bootstrap"]["seed"])}
            for cond in stored:
                for key in keys:
                    cond.pop(key, None)
            add_comparisons(fresh_record, overwrite=True, **options)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
            found.append(f"paired statistics cannot be recomputed ({type(exc).__name__}: {exc})")
        else:
            for i, (old, new) in enumerate(zip(record["conditions"], fresh_record["conditions"])):
                for key in keys:
                    if (key in old) != (key in new):
                        found.append(f"conditions[{i}] ({_condition_label(old)}).{key}: "
                                     f"{'stored but not recomputed' if key in old else 'missing'}")
                    elif key in old:
                        where = f"conditions[{i}] ({_condition_label(old)}).{key}"
                        method = _get(old[key], "bootstrap", "resampled")
                        if method != _get(new[key], "bootstrap", "resampled"):
                            report.notes.append(f"{where}: computed by another bootstrap method ({method!r}); not "
                                                f"recomputed")
                            continue
                        _compare(old[key], new[key], where, found)
                        n_checked += 1
    report.checked["metrics recomputed"] = n_checked
    report.problems += _cut(found, "metric")


def _get(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...`` or None when a level is missing or not a mapping."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _check_degradation_file(record: dict[str, Any], run: Path, report: RunValidation) -> None:
    """``degradation.jsonl``: one record per (probe, scale) with the parameters this version of restorever draws."""
    cfg = record["config"]
    path = run / "degradation.jsonl"
    if not cfg["scales"]:
        return
    if not path.is_file():
        if record.get("outputs") is None:  # older records: the file was optional
            report.notes.append(f"{path.name}: missing; the degradation parameters cannot be checked")
        return  # newer records: _check_outputs reports it missing
    from . import __version__
    from .degradation import Degradation, DegradationError, DegradationParams

    problems: list[str] = []
    records = []
    if path.stat().st_size > MAX_RESULTS_BYTES:
        report.problems.append(f"{path.name}: larger than {MAX_RESULTS_BYTES} bytes; not read")
        return
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            records.append(rec)
        except ValueError as exc:
            problems.append(f"{path.name}:{line_no}: not a JSON object ({exc})")
    if not problems and records:
        try:
            stored = DegradationParams.from_records(records)
        except (DegradationError, ValueError, TypeError) as exc:
            problems.append(f"{path.name}: malformed records ({exc})")
        else:
            try:
                deg = Degradation(cfg["degradation"])
            except RestoreverError as exc:
                problems.append(f"{path.name}: {exc}")
                deg = None
            differ = []
            if deg is not None:
                by_scale: dict[Any, list[int]] = {}
                for k, rec in enumerate(records):
                    by_scale.setdefault(rec.get("scale"), []).append(k)
                for scale, idx in by_scale.items():
                    try:
                        fresh = deg.sample_params([str(records[k]["item_id"]) for k in idx], scale, int(cfg["seed"]))
                    except (DegradationError, ValueError, TypeError) as exc:
                        problems.append(f"{path.name}: records at scale {scale!r} cannot be redrawn ({exc})")
                        continue
                    for j, k in enumerate(idx):
                        if not _same_params(fresh, j, stored, k):
                            differ.append(f"{path.name}:{k + 1}: parameters of {records[k]['item_id']!r} at x{scale} "
                                          f"differ from what restorever {__version__} draws")
            if differ:
                if record["restorever_version"] == __version__:
                    problems += differ
                else:
                    report.notes.append(f"{path.name}: {len(differ)} record(s) differ from what restorever "
                                        f"{__version__} draws (the run used {record['restorever_version']})")
            report.checked["degradation records"] = len(records)
    pairs = record.get("pairs")
    if pairs and not problems:
        probes = set(pairs["b"]) if cfg["degrade_side"] == "probe" else set(pairs["a"]) | set(pairs["b"])
        want = {(item, int(scale)) for item in probes for scale in cfg["scales"]}
        have = [(str(r.get("item_id", r.get("item"))), r.get("scale")) for r in records]
        if len(have) != len(want) or set(have) != want:
            problems.append(f"{path.name}: {len(have)} record(s) for {len(want)} (probe, scale) pairs the run "
                            f"degraded ({len(probes)} probe(s) x {len(cfg['scales'])} scale(s)); it was truncated "
                            f"or edited")
    report.problems += _cut(problems, "degradation")


def _check_outputs(record: dict[str, Any], run: Path, report: RunValidation) -> None:
    """The files beside results.json are the ones this run wrote (``outputs``: sha256 and line counts), so a
    truncated or emptied ``degradation.jsonl`` or another run's ``results.md`` is detected. Records written before
    ``outputs`` existed get only the count check of :func:`_check_degradation_file`."""
    import hashlib

    outputs = record.get("outputs")
    if outputs is None:
        report.notes.append("results.json records no digests of its outputs (written before they were recorded)")
        return
    if not isinstance(outputs, dict):
        report.problems.append(f"outputs: expected a mapping of file name to digest, got {_short(outputs)}")
        return
    problems = []
    if record["config"]["scales"] and "degradation.jsonl" not in outputs:
        problems.append("outputs: a run with scales must record degradation.jsonl")
    from .errors import UnsafePathError
    from .images import safe_join

    for name, expected in outputs.items():
        if not isinstance(expected, dict) or not (name in ("degradation.jsonl", "results.md", "roc.png")
                                                  or name.startswith("examples/")):
            problems.append(f"outputs: unexpected entry {_short(name)}")
            continue
        try:
            path = safe_join(run, name, what="outputs entry")
        except UnsafePathError as exc:
            problems.append(str(exc))
            continue
        if not path.is_file():
            problems.append(f"{name}: missing (results.json records it); the folder is incomplete or mixed")
            continue
        if path.stat().st_size > MAX_RESULTS_BYTES:
            problems.append(f"{name}: larger than {MAX_RESULTS_BYTES} bytes; not read")
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            n_lines = data.count(b"\n")
            lines = f" ({n_lines} lines, results.json says {expected['lines']})" if "lines" in expected else ""
            problems.append(f"{name}: changed since the run wrote it (sha256 differs from results.json){lines}; "
                            f"it was edited, truncated or comes from another run")
    report.checked["output files"] = len(outputs)
    report.problems += problems


def _origin(record: dict[str, Any], run: Path) -> Path | None:
    """The folder the run was started from, when ``config.out`` was relative and names the tail of ``run``
    (``--out runs/x`` from /home/u gives /home/u), so relative paths of the record resolve from anywhere."""
    out = record["config"].get("out")
    if not isinstance(out, str) or not out or Path(out).is_absolute():
        return None
    tail = Path(out).parts
    here = run.resolve()
    if tail and len(here.parts) > len(tail) and here.parts[-len(tail):] == tail:
        return Path(*here.parts[:-len(tail)])
    return None


def _resolve(value: Any, record: dict[str, Any], run: Path) -> Any:
    """A path of the record as the run saw it: absolute as is; relative from the run's start folder (see
    :func:`_origin`) when that exists, else from the current folder."""
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        return value
    origin = _origin(record, run)
    if origin is not None and (origin / value).exists():
        return str(origin / value)
    return value


def _recorded_rows(record: dict[str, Any]) -> list[tuple[str, str, int, int]] | None:
    """``(a, b, same, fold)`` of every pair the run was asked for: the scored ones (labels from the scores) and the
    skipped ones (labels stored with them since they are recorded); None when the record lacks them."""
    pairs, conds = record.get("pairs"), record["conditions"]
    scores = conds[0].get("scores") if conds else None
    if not pairs or not scores:
        return None
    try:
        rows = [(str(a), str(b), int(s), int(f)) for a, b, s, f in zip(pairs["a"], pairs["b"], scores["same"],
                                                                           scores["fold"])]
        for skip in record["protocol"]["skipped"]:
            if not all(k in skip for k in ("a", "b", "same", "fold")):
                return None
            rows.append((str(skip["a"]), str(skip["b"]), int(skip["same"]), int(skip["fold"])))
    except (TypeError, ValueError, OverflowError):  # a label that is not an integer: the schema reports it
        return None
    return rows


def _check_pairs(record: dict[str, Any], run: Path, report: RunValidation) -> None:
    """Labels, folds and skips against what the run was asked for: the recorded ``pairs_sha256`` (no data needed),
    then the protocol itself when its files can be read (a flipped label, a moved fold or a pair dropped behind a
    fake skip is a problem)."""
    from .protocol import pairs_digest

    proto, cfg = record["protocol"], record["config"]
    rows = _recorded_rows(record)
    problems = report.problems
    recorded = proto.get("pairs_sha256")
    if recorded is not None:
        if rows is None:
            problems.append("protocol.pairs_sha256 is recorded but the skipped pairs lack their labels")
            return
        if not rows or pairs_digest(*zip(*rows)) != recorded:
            problems.append("pairs: the scored and skipped pairs with their labels and folds do not digest to "
                            "protocol.pairs_sha256; a label, fold or pair was changed")
        report.checked["pair digest"] = 1
    from .errors import DETECTOR_FAILURE

    failed = {f["image"] for f in proto.get("failed_images") or [] if isinstance(f, dict)
              and isinstance(f.get("image"), str)}
    transient = [f["image"] for f in proto.get("failed_images") or [] if isinstance(f, dict)
                 and isinstance(f.get("image"), str) and DETECTOR_FAILURE in str(f.get("reason"))]
    if transient:
        problems.append(f"{len(transient)} image(s) skipped because the detector failed on them (e.g. "
                        f"{_short(transient[0])}), not because no face was found: the run is incomplete; rerun it to "
                        f"retry them")
    for skip in proto["skipped"]:
        sides = {skip.get("a"), skip.get("b")} if all(isinstance(skip.get(k), str) for k in ("a", "b")) else set()
        if "failed_images" in proto and not sides & failed:
            problems.append(f"skipped pair {_short(skip.get('a'))}, {_short(skip.get('b'))}: neither image is listed "
                            f"in protocol.failed_images")
    try:
        from .pipeline.evaluate import limit_pairs
        from .protocol import load_protocol

        protocol = load_protocol(cfg["protocol"], data_root=_resolve(cfg.get("data_root"), record, run),
                                 pairs=_resolve(cfg.get("pairs"), record, run), download=False)
        wanted = limit_pairs(protocol.pairs, cfg.get("limit_pairs"))
    except Exception as exc:  # noqa: BLE001 - without the protocol's files only this check is skipped
        report.notes.append(f"labels not checked against the protocol: its files cannot be read "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        return
    expected = sorted((a, b, int(s), int(f)) for a, b, s, f in zip(wanted.a, wanted.b, wanted.same, wanted.fold))
    if rows is None:
        report.notes.append("labels not checked against the protocol: the record lacks the skipped pairs' labels")
        return
    got = sorted(rows)
    if got != expected:
        exp_set, got_set = set(expected), set(got)
        extra = [r for r in got if r not in exp_set][:3]
        lost = [r for r in expected if r not in got_set][:3]
        message = (f"pairs: the run's pairs and labels differ from protocol {cfg['protocol']} "
                   f"({len(got)} recorded, {len(expected)} in the protocol; e.g. recorded {extra or '-'}, "
                   f"protocol {lost or '-'})")
        if recorded is None and cfg.get("limit_pairs") is not None:  # --limit-pairs chose differently before 0.x
            report.notes.append(message + "; the run predates protocol.pairs_sha256 and --limit-pairs selected "
                                          "pairs differently then")
        else:
            problems.append(message)
    report.checked["pairs checked against the protocol"] = len(expected)


def _same_params(a, i: int, b, j: int) -> bool:
    fields = ("scale", "sigma_x", "sigma_y", "theta", "noise_sigma", "jpeg_quality", "noise_seed")
    return (a.item_ids[i] == b.item_ids[j] and a.preset == b.preset and a.seed == b.seed
            and all(float(getattr(a, f)[i]) == float(getattr(b, f)[j]) for f in fields))


# ------------------------------------------------------------------------------------------------------------ cache

def _check_cache(record: dict[str, Any], report: RunValidation, cache_dir: str | os.PathLike | None,
                 run: Path | None = None) -> None:
    """The cached embeddings each condition scored: present, intact, and reproducing the stored scores; and every
    "no face found" skip backed by a landmark entry that says so."""
    from .pipeline.cache import ArrayCache

    cfg = record["config"]
    root = cache_dir or (record.get("cache") or {}).get("dir") or cfg.get("cache_dir")
    if run is not None and not cache_dir:
        root = _resolve(root, record, run)
    if not root or not Path(root).is_dir():
        report.notes.append(f"cache check skipped: the cache folder {root or '(none recorded)'} does not exist "
                            f"(pass --cache-dir DIR if it moved)")
        return
    cache = ArrayCache(Path(root))
    pairs = record.get("pairs")
    if not pairs:
        report.notes.append("cache check skipped: results.json does not list the pair ids")
        return
    items = list(dict.fromkeys([*pairs["a"], *pairs["b"]]))
    shas = _image_hashes(record, items, report)
    if shas is None:
        return
    identity = _run_identity(record, report)
    if identity is None:
        return
    _check_skips(record, cache, identity, report)
    landmarks = _landmarks(record, cache, items, shas, identity, report)
    if landmarks is None:
        return
    _check_embeddings(record, cache, shas, landmarks, identity, report)


def _image_hashes(record: dict[str, Any], items: list[str], report: RunValidation) -> dict[str, str] | None:
    """``{item: sha256 of its bytes}``: recorded in results.json, else read from the run's data."""
    recorded = record["protocol"].get("images_sha256")
    if recorded is not None:
        missing = [i for i in items if i not in recorded]
        if missing:
            report.problems.append(f"protocol.images_sha256: no hash for {len(missing)} scored image(s) "
                                   f"(e.g. {missing[0]!r})")
            return None
        return {i: recorded[i] for i in items}
    import hashlib

    from .protocol import load_protocol

    cfg = record["config"]
    try:
        protocol = load_protocol(cfg["protocol"], data_root=cfg.get("data_root"), pairs=cfg.get("pairs"),
                                 download=False)
        out = {i: hashlib.sha256(protocol.read_bytes(i)).hexdigest() for i in items}
    except Exception as exc:  # noqa: BLE001 - any failure to read the data only skips this check
        report.notes.append(f"cache check skipped: results.json records no image hashes and the run's data cannot "
                            f"be read ({type(exc).__name__}: {exc})")
        return None
    report.notes.append("image hashes read from the data (results.json does not record them)")
    return out


def _run_identity(record: dict[str, Any], report: RunValidation):
    """The run identity that built the cache keys: recorded (``cache.identity``), checked against the one rebuilt
    from the config and the weights table (what the run loaded); records made before the identity was stored are
    keyed by the rebuilt one (on the CPU). A changed weight hash, option or model name is a problem, and the keys
    then follow the config, so the entries the record claims are looked for where the changed run would have put
    them."""
    import json

    from .pipeline.identity import RunIdentity

    cfg = record["config"]

    def weights_of(name: str) -> list[list[str]]:
        rows = []
        for key, wf in record["weights"].items():
            model, _, role = key.rpartition(":")
            if model == name:
                rows.append([role, wf["sha256"] or wf["file"]])
        return sorted(rows)

    try:
        recorded = RunIdentity.from_record(record)
    except (KeyError, TypeError, ValueError) as exc:
        report.problems.append(f"cache.identity: malformed ({type(exc).__name__}: {exc})")
        return None
    try:
        from .pipeline.evaluate import route_restorer_options

        routed = route_restorer_options(cfg["restorers"], cfg.get("restorer_options") or {})
    except Exception as exc:  # noqa: BLE001 - an unknown restorer or a missing backend only skips this check
        if recorded is not None:
            return recorded
        report.notes.append(f"cache check skipped: the restorer options cannot be resolved ({exc})")
        return None
    rebuilt = RunIdentity(detector=cfg.get("detector", "mtcnn"),
                          recognizer={"name": cfg["recognizer"], "weights": weights_of(cfg["recognizer"]),
                                      "flip": bool(cfg.get("flip_test", False))},
                          restorers={n: {"name": n, "weights": weights_of(n), "options": routed[n]}
                                     for n in cfg["restorers"]},
                          degradation=cfg["degradation"], seed=int(cfg["seed"]),
                          device=recorded.device if recorded is not None else "cpu")
    if recorded is None:
        return rebuilt
    canon = lambda ident: json.dumps(ident.as_record(), sort_keys=True, default=str)  # noqa: E731
    if canon(recorded) != canon(rebuilt):
        report.problems.append("cache.identity does not match the config and the weights table (a weight hash, an "
                               "option or a model name was changed)")
        return rebuilt
    return recorded


def _check_skips(record: dict[str, Any], cache, identity, report: RunValidation) -> None:
    """An image skipped as "no face found" must have the landmark entry that says so (written only when the
    detector ran and found nothing); an entry holding landmarks means the skip was invented."""
    proto = record["protocol"]
    shas = proto.get("images_sha256")
    if not shas or not proto["skipped"]:
        return
    decode = proto.get("images_decode") or {}
    problems, n = [], 0
    for failed in proto.get("failed_images") or []:
        if not isinstance(failed, dict) or not isinstance(failed.get("image"), str):
            problems.append(f"protocol.failed_images: malformed entry {_short(failed)}")
            continue
        image, reason = failed["image"], str(failed.get("reason"))
        if "no face found by " not in reason:  # the reason landmark_stage gives a genuine miss
            continue
        if image not in shas:
            problems.append(f"failed image {_short(image)}: skipped as no face found, but no hash is recorded")
            continue
        data, status = cache.check("landmarks", identity.landmarks_key(shas[image], decode.get(image)))
        n += 1
        if data is None:
            problems.append(f"failed image {_short(image)}: skipped as no face found, but the cache holds no "
                            f"landmark entry that says so ({status})")
        elif data.shape == (5, 2) and not np.isnan(data).any():
            problems.append(f"failed image {_short(image)}: skipped as no face found, but the cache holds its "
                            f"landmarks; the skip is not genuine")
    report.checked["skips checked"] = n
    report.problems += _cut(problems, "skip")


def _landmarks(record: dict[str, Any], cache, items: list[str], shas: dict[str, str], identity,
               report: RunValidation) -> dict[str, np.ndarray] | None:
    cfg = record["config"]
    fallbacks = set(record["protocol"].get("landmark_fallbacks") or [])
    fallback_points = None
    if fallbacks:
        from .protocol import load_spec

        try:
            spec, _ = load_spec(cfg["protocol"])
            fallback_points = np.asarray(spec["alignment"]["fallback_landmarks"], dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - only skips this check
            report.notes.append(f"cache check skipped: the protocol's fallback landmarks cannot be read ({exc})")
            return None
    decode = record["protocol"].get("images_decode") or {}
    out: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for item in items:
        if item in fallbacks:
            out[item] = fallback_points.copy()
            continue
        data, status = cache.check("landmarks", identity.landmarks_key(shas[item], decode.get(item)))
        if data is None:
            problems.append(f"landmarks of {item!r}: cache entry {status}")
        elif data.shape != (5, 2) or np.isnan(data).any():
            problems.append(f"landmarks of {item!r}: the cache says no face was found, yet the run scored it")
        else:
            out[item] = data.astype(np.float32)
    report.checked["landmark entries"] = len(items) - len(fallbacks) - len(problems)
    if problems:
        report.problems += _cut(problems, "landmark cache")
        return None
    return out


def _check_embeddings(record, cache, shas, landmarks, identity, report: RunValidation) -> None:
    from .metrics.similarity import identity_to_clean, score_pairs

    cfg = record["config"]
    pairs = record["pairs"]
    side = cfg["degrade_side"]
    problems: list[str] = []
    loaded: dict[tuple[str, Any], dict[str, np.ndarray]] = {}

    def embeddings(restorer: str, scale: int | None, items: Iterable[str], label: str) -> dict[str, np.ndarray]:
        """Load (once) and check the entries of ``items`` in one condition; returns what could be loaded."""
        cond = ("none", None) if scale is None else (restorer, scale)
        table = loaded.setdefault(cond, {})
        missing, bad = [], []
        for item in dict.fromkeys(items):
            if item in table:
                continue
            if item not in shas or item not in landmarks:
                missing.append((item, "?" * 64, "missing"))
                continue
            key = identity.embedding_key(shas[item], landmarks[item], restorer, scale)
            data, status = cache.check("embedding", key)
            if data is None:
                (missing if status == "missing" else bad).append((item, key, status))
            else:
                table[item] = data
        if missing:
            item, key, _ = missing[0]
            problems.append(f"{label}: {len(missing)} cached embedding(s) missing (e.g. {item!r}, entry "
                            f"embedding/{key[:2]}/{key}.npz); the cache was cleaned, or the run used other data or "
                            f"weights")
        for item, key, status in bad[:MAX_PROBLEMS_PER_CHECK]:
            problems.append(f"{label}: cached embedding of {item!r} (embedding/{key[:2]}/{key}.npz) is {status}")
        return table

    for i, cond in enumerate(record["conditions"]):
        label = f"conditions[{i}] ({_condition_label(cond)})"
        scale, restorer = cond["scale"], cond["restorer"]
        if scale is not None and restorer not in identity.restorers:
            problems.append(f"{label}: restorer {restorer!r} is not in the config")
            continue
        before = len(problems)
        degraded_a = scale is not None and side == "both"
        emb_a = embeddings(restorer, scale if degraded_a else None, pairs["a"], label)
        emb_b = embeddings(restorer, scale, pairs["b"], label)
        if len(problems) > before or not cond.get("scores"):
            continue
        a = np.stack([emb_a[x] for x in pairs["a"]])
        b = np.stack([emb_b[x] for x in pairs["b"]])
        try:
            stored = np.asarray(cond["scores"]["score"], dtype=np.float64)
        except OverflowError:
            problems.append(f"{label}: a stored score is beyond float range")
            continue
        similarities = [cond["similarity"]] if cond.get("similarity") else ["cosine", "euclidean"]
        errors = {s: float(np.max(np.abs(score_pairs(s, a, b).astype(np.float64) - stored))) for s in similarities}
        best = min(errors, key=errors.get)
        if errors[best] > 1e-5:
            problems.append(f"{label}: the cached embeddings do not reproduce the stored scores ({best} similarity: "
                            f"largest difference {errors[best]:.3g})")
            continue
        ident = cond.get("identity")
        if ident and ident.get("n") and isinstance(ident.get("per_item"), dict):
            probes = list(ident["per_item"])
            clean = embeddings("none", None, probes, f"{label}.identity")
            emb = clean if scale is None else embeddings(restorer, scale, probes, f"{label}.identity")
            if len(problems) == before:
                _compare(ident, identity_to_clean(clean, emb, probes), f"{label}.identity", problems, rel=1e-5, abs_=1e-6)
    report.checked["cache entries"] = sum(len(t) for t in loaded.values())
    report.problems += _cut(problems, "cache")


# ------------------------------------------------------------------------------------------------------- protocols

_KNOWN_KEYS = {"protocol", "version", "include", "description", "citation", "dataset", "folds", "alignment",
               "degradation", "scoring", "metrics", "attributes", "seed", "split", "labels"}
_SIMILARITIES = {"cosine", "euclidean", "l2sq", "recognizer"}
_SPEC_LOADERS = {"lfw-ident": "restorever.datasets_ident:load_ident_spec"}  # other formats: protocol.load_spec
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_INCLUDES = 8


def validate_protocols(paths: Sequence[str | os.PathLike] | None = None
                       ) -> tuple[dict[Path, list[str]], dict[Path, list[str]]]:
    """Validate protocol files (all the ones ``restorever protocols`` lists when ``paths`` is empty):
    ``({path: problems}, {path: notes})``."""
    from .protocol import list_protocols

    files = [Path(p) for p in paths] if paths else sorted(set(list_protocols().values()))
    problems, notes = {}, {}
    for f in files:
        notes[f] = []
        problems[f] = validate_protocol_file(f, notes=notes[f])
    return problems, notes


def validate_protocol_file(path: str | os.PathLike, *, notes: list[str] | None = None) -> list[str]:
    """Problems of one protocol YAML file (empty when valid), without reading any data."""
    import importlib

    path = Path(path)
    notes = notes if notes is not None else []
    if not path.is_file():
        return [f"{path}: no such file"]
    fmt, problem = _raw_format(path)
    if problem:
        return [problem]
    loader_ref = _SPEC_LOADERS.get(fmt)
    try:
        if loader_ref:
            module, _, name = loader_ref.partition(":")
            spec, _ = getattr(importlib.import_module(module), name)(str(path))
        else:
            from .protocol import load_spec

            spec, _ = load_spec(str(path))
    except RestoreverError as exc:
        return [str(exc).splitlines()[0]]
    except (ImportError, AttributeError) as exc:
        return [f"{path}: no loader for format {fmt!r} ({exc})"]
    except Exception as exc:  # noqa: BLE001 - a loader bug on a hostile file is reported, not raised
        return [f"{path}: cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"]
    return _spec_problems(spec, path, notes)


def _raw_format(path: Path) -> tuple[str | None, str | None]:
    """``dataset.format`` of a file, following ``include:`` (at most 8 deep, no cycles): ``(format, problem)``."""
    import yaml

    seen: list[Path] = []
    current = path
    while True:
        resolved = current.resolve()
        if resolved in seen:
            return None, f"{path}: include cycle ({' -> '.join(p.name for p in [*seen, resolved])})"
        if len(seen) >= _MAX_INCLUDES:
            return None, f"{path}: more than {_MAX_INCLUDES} nested includes"
        seen.append(resolved)
        try:
            data = yaml.safe_load(current.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return None, f"{path}: included file {current} does not exist"
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"{current}: cannot be read as UTF-8 text ({exc})"
        except RecursionError:
            return None, f"{current}: nested too deeply"
        except yaml.YAMLError as exc:
            return None, f"{current}: invalid YAML ({str(exc).splitlines()[0]})"
        except Exception as exc:  # noqa: BLE001 - PyYAML raises others on hostile text (OverflowError for "\\U...")
            return None, f"{current}: invalid YAML ({type(exc).__name__}: {exc})"
        if not isinstance(data, dict):
            return None, f"{current}: a protocol file must be a mapping"
        ds = data.get("dataset")
        if isinstance(ds, dict) and "format" in ds:
            fmt = ds["format"]
            return (fmt if isinstance(fmt, str) else None), None
        include = data.get("include")
        if include is None:
            return None, None
        if not isinstance(include, str) or not include.strip():
            return None, f"{current}: include must name one YAML file, got {_short(include)}"
        current = current.parent / include


def _spec_problems(spec: dict[str, Any], path: Path, notes: list[str]) -> list[str]:
    """Rules on a loaded (merged) spec beyond the loader's own."""
    out: list[str] = []
    name = spec.get("protocol")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        out.append(f"{path}: protocol must be a name of letters, digits, '.', '_' or '-', got {_short(name)}")
    elif name != path.stem:
        notes.append(f"{path}: protocol {name!r} differs from the file name (it is listed as {path.stem!r})")
    unknown = sorted(str(k) for k in spec if k not in _KNOWN_KEYS)
    if unknown:
        notes.append(f"{path}: unknown key(s) {unknown} (a typo?)")
    for key in ("version", "folds"):
        if key in spec and not (_is_type(spec[key], "integer") and spec[key] >= 1):
            out.append(f"{path}: {key} must be a positive integer, got {_short(spec[key])}")
    if "seed" in spec and not _is_type(spec["seed"], "integer"):
        out.append(f"{path}: seed must be an integer, got {_short(spec['seed'])}")
    ds = spec.get("dataset") or {}
    for key in ("pairs", "people", "root"):
        values = ds.get(key)
        for value in (values if isinstance(values, list) else [values] if values is not None else []):
            problem = _relative_path_problem(value)
            if problem:
                out.append(f"{path}: dataset.{key} {_short(value)} {problem}")
    images = ds.get("images")
    if images is not None:
        if not isinstance(images, list) or not images:
            out.append(f"{path}: dataset.images must be a non-empty list of folder names")
        else:
            for value in images:
                problem = _relative_path_problem(value)
                if problem:
                    out.append(f"{path}: dataset.images entry {_short(value)} {problem}")
    downloads = ds.get("download")
    if downloads is not None:
        if not isinstance(downloads, list):
            out.append(f"{path}: dataset.download must be a list of {{filename, url, sha256}} entries")
        else:
            for i, item in enumerate(downloads):
                out += [f"{path}: dataset.download[{i}]: {p}" for p in _download_problems(item)]
    metrics = spec.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, list):
            out.append(f"{path}: metrics must be a list of {{name, higher_is_better}} entries")
        else:
            for i, m in enumerate(metrics):
                if not (isinstance(m, dict) and isinstance(m.get("name"), str) and m["name"]
                        and isinstance(m.get("higher_is_better"), bool)):
                    out.append(f"{path}: metrics[{i}] needs a name and a true/false higher_is_better, got {_short(m)}")
    alignment = spec.get("alignment")
    if alignment is not None:
        if not isinstance(alignment, dict):
            out.append(f"{path}: alignment must be a mapping")
        elif "fallback_landmarks" in alignment:
            pts = alignment["fallback_landmarks"]
            ok = (isinstance(pts, list) and len(pts) == 5 and all(
                isinstance(p, list) and len(p) == 2 and all(_is_type(v, "number") and math.isfinite(v) for v in p)
                for p in pts))
            if not ok:
                out.append(f"{path}: alignment.fallback_landmarks must be five [x, y] pixel points")
    scoring = spec.get("scoring")
    if scoring is not None:
        if not isinstance(scoring, dict):
            out.append(f"{path}: scoring must be a mapping")
        elif "similarity" in scoring and scoring["similarity"] not in _SIMILARITIES:
            out.append(f"{path}: scoring.similarity must be one of {sorted(_SIMILARITIES)}, "
                       f"got {_short(scoring['similarity'])}")
    return out


def _relative_path_problem(value: Any) -> str | None:
    """Why ``value`` is not a safe data path (relative, inside the data root, or under ``${RESTOREVER_DATA}``)."""
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if "\x00" in value:
        return "contains a NUL character"
    text = value.replace("\\", "/")
    if text.startswith("${RESTOREVER_DATA}"):
        text = text[len("${RESTOREVER_DATA}"):].lstrip("/") or "."
    if text.startswith("/") or text.startswith("~") or re.match(r"^[A-Za-z]:", text):
        return "must be relative to the data root (or start with ${RESTOREVER_DATA})"
    if any(part == ".." for part in text.split("/")):
        return "must not contain '..' (it would leave the data root)"
    return None


def _download_problems(item: Any) -> list[str]:
    if not isinstance(item, dict):
        return [f"expected a mapping, got {_short(item)}"]
    out = []
    from .protocol import download_filename_problem, download_url_problem

    out += [p for p in (download_filename_problem(item.get("filename")), download_url_problem(item.get("url"))) if p]
    sha = item.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256_RE.match(sha)):
        out.append(f"sha256 must be null or 64 lower-case hex digits, got {_short(sha)}")
    if "extract" in item and not isinstance(item["extract"], bool):
        out.append("extract must be true or false")
    return out

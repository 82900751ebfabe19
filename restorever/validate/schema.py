"""The schema of ``results.json`` (:data:`RESULTS_SCHEMA`, :data:`IDENT_SCHEMA`) and the small engine that checks a
record against it (:func:`schema_problems`)."""
from __future__ import annotations

import re
from typing import Any


from .common import MAX_PROBLEMS_PER_CHECK, is_type, short



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
        if not any(is_type(value, t) for t in types):
            out.append(f"{_where(path)}: expected {' or '.join(types)}, got {type(value).__name__} "
                       f"{short(value)}")
            return
    if "enum" in schema and not any(_json_equal(value, e) for e in schema["enum"]):
        out.append(f"{_where(path)}: expected one of {schema['enum']}, got {short(value)}")
        return
    if is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{_where(path)}: {value!r} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{_where(path)}: {value!r} is above the maximum {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{_where(path)}: empty string")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{_where(path)}: {short(value)} does not match {schema['pattern']}")
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

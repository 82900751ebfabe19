"""The JSON Schemas of ``results.json`` (files shipped in ``restorever/schemas/``) and :func:`schema_problems`,
which checks a record against one with ``jsonschema`` (Draft 2020-12) and words each violation as ``"path: what"``.

``jsonschema`` is imported on first use only, so ``import restorever`` stays light.
"""
from __future__ import annotations

import functools
import itertools
import json
from importlib import resources
from typing import Any

#: the schema files, by the name :func:`load_schema` takes
SCHEMA_FILES = {"results": "results.schema.json", "ident-results": "ident-results.schema.json"}

#: at most this many violations are collected from one record (a hostile file may break a rule a million times)
MAX_SCHEMA_PROBLEMS = 1000


@functools.lru_cache(maxsize=None)
def _schema_text(name: str) -> str:
    if name not in SCHEMA_FILES:
        raise KeyError(f"no results schema {name!r}; known: {', '.join(SCHEMA_FILES)}")
    return resources.files("restorever").joinpath("schemas", SCHEMA_FILES[name]).read_text(encoding="utf-8")


def load_schema(name: str = "results") -> dict[str, Any]:
    """A fresh copy of the schema ``name`` (``"results"`` or ``"ident-results"``), read from the package."""
    return json.loads(_schema_text(name))


def definition(name: str, part: str) -> dict[str, Any]:
    """A schema for one ``$defs`` entry of the schema ``name`` (e.g. ``("results", "condition")``), with the
    definitions it refers to."""
    root = load_schema(name)
    if part not in root["$defs"]:
        raise KeyError(f"schema {name!r} defines no {part!r}; it defines {', '.join(root['$defs'])}")
    return {"$schema": root["$schema"], "$defs": root["$defs"], "$ref": f"#/$defs/{part}"}


@functools.lru_cache(maxsize=16)
def _validator(text: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(text))


def schema_problems(value: Any, schema: dict[str, Any] | None = None, path: str = "") -> list[str]:
    """Where ``value`` breaks ``schema`` (default: the results schema), as ``"path: what"`` strings; ``path``
    prefixes every location (``conditions[0].verification.auc: 1.5 is above the maximum 1``)."""
    text = _schema_text("results") if schema is None else json.dumps(schema, sort_keys=True)
    validator = _validator(text)
    out: list[str] = []
    for error in itertools.islice(validator.iter_errors(value), MAX_SCHEMA_PROBLEMS):
        where = _where(path, error.absolute_path)
        for what in _describe(error):
            line = f"{where}: {what}"
            if line not in out:
                out.append(line)
    return out


def _where(prefix: str, parts: Any) -> str:
    text = prefix
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _describe(error: Any) -> list[str]:
    """The violation in restorever's words (the wording ``restorever validate`` has always used)."""
    kind, rule, value = error.validator, error.validator_value, error.instance
    if kind == "required":
        return [f"missing key {key!r}" for key in rule if isinstance(value, dict) and key not in value]
    if kind == "type":
        types = rule if isinstance(rule, list) else [rule]
        return [f"expected {' or '.join(types)}, got {type(value).__name__} {_short(value)}"]
    if kind == "enum":
        return [f"expected one of {rule}, got {_short(value)}"]
    if kind == "minimum":
        return [f"{value!r} is below the minimum {rule}"]
    if kind == "maximum":
        return [f"{value!r} is above the maximum {rule}"]
    if kind == "minLength":
        return ["empty string" if rule == 1 else f"shorter than {rule} characters"]
    if kind == "pattern":
        return [f"{_short(value)} does not match {rule}"]
    if kind == "minItems":
        return [f"needs at least {rule} item(s), has {len(value)}"]
    return [error.message]

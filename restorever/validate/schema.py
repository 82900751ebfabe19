"""The schemas of ``results.json`` as ``restorever validate`` uses them: :data:`RESULTS_SCHEMA` (verification runs)
and :data:`IDENT_SCHEMA` (identification runs), read from the JSON Schema files shipped in ``restorever/schemas/``,
and :func:`schema_problems`, which checks a record with ``jsonschema`` (see
:mod:`restorever.pipeline.record_schema`)."""
from __future__ import annotations

from typing import Any

from ..pipeline.record_schema import load_schema, schema_problems

#: the verification schema (``restorever/schemas/results.schema.json``)
RESULTS_SCHEMA: dict[str, Any] = load_schema("results")

#: identification runs (``protocol.task == "identification"``, ``restorever ident``): the shared header and one
#: ``retrieval`` block per condition (``restorever/schemas/ident-results.schema.json``)
IDENT_SCHEMA: dict[str, Any] = load_schema("ident-results")

__all__ = ["RESULTS_SCHEMA", "IDENT_SCHEMA", "load_schema", "schema_problems"]

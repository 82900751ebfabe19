"""Validation of finished runs and of protocol files (``restorever validate``).

A run folder is valid when

1. ``results.json`` is strict JSON (no ``NaN``, no duplicate keys) that matches :data:`RESULTS_SCHEMA` and whose
   parts agree with each other (pair counts, folds, the conditions the config asks for);
2. every metric recomputes from the stored per-pair scores to the stored number (:func:`verification_report`, and
   the paired statistics when present), and ``degradation.jsonl`` holds the parameters this version draws;
3. when the cache folder the run used still exists: every embedding the run scored is there with a matching
   checksum, and the embeddings reproduce the stored scores and identity figures.

Protocol files are checked without any data: the loader's own checks, then paths (relative to the
data root, no variable), downloads, metrics and landmarks.

Nothing here modifies a run or the cache. One module per job: :mod:`.schema` (the results schemas, checked with
``jsonschema``), :mod:`.runs` (a finished run), :mod:`.run_cache` (the cache it used), :mod:`.protocols` (protocol
files) and :mod:`.common` (what they share).
"""
from __future__ import annotations

from .common import (MAX_PROBLEMS_PER_CHECK, MAX_RESULTS_BYTES, RESULTS_FILE,  # noqa: F401 - importable as before
                     VALIDATOR_ERROR, RunValidation)
from .protocols import validate_protocol_file, validate_protocols
from .runs import check_run, validate_run
from .schema import IDENT_SCHEMA, RESULTS_SCHEMA, schema_problems

__all__ = ["RESULTS_SCHEMA", "IDENT_SCHEMA", "RunValidation", "check_run", "validate_run", "schema_problems",
           "validate_protocol_file", "validate_protocols"]

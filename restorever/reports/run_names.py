"""Naming several runs drawn in one figure: a legend prefix per results record that tells the records apart, and a
warning when the overlaid records evaluated different pair sets (their curves are then not a paired comparison)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

#: config keys that never tell two runs apart in a legend (paths, bookkeeping)
_NOISE_KEYS = {"out", "data_root", "cache_dir", "sources", "overrides", "device", "batch_size"}
#: protocol fields that identify the evaluated pair (or probe/gallery) set
_PROTOCOL_KEYS = ("name", "pairs", "pairs_sha256", "gallery_size", "probes", "distractors")


def _distinct(names: Sequence[str] | None) -> bool:
    return bool(names) and all(names) and len(set(names)) == len(names)


def _differing_config(records: Sequence[dict[str, Any]]) -> list[str]:
    """``key=value, ...`` of the config keys whose values differ between the records (one string per record)."""
    configs = [r.get("config") or {} for r in records]
    keys = sorted({k for c in configs for k in c} - _NOISE_KEYS)
    differing = [k for k in keys if len({_text(c.get(k)) for c in configs}) > 1]
    return [", ".join(f"{k}={_text(c.get(k))}" for k in differing) for c in configs]


def _text(value: Any) -> str:
    """A short, stable text of a config value (lists as ``8,16``)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def record_names(records: Sequence[dict[str, Any]], names: Sequence[str] | None = None) -> list[str]:
    """One legend prefix per record that tells the records apart (``""`` for a single record): the recognizers
    when they all differ, else ``names`` (the run folders, as the CLI passes them), else the folder names in
    ``config.out``, else the config keys that differ, else ``run 1``, ``run 2``, ..."""
    if len(records) < 2:
        return ["" for _ in records]
    recognizers = [str(r.get("config", {}).get("recognizer")) for r in records]
    folders = [Path(str(r.get("config", {}).get("out") or "")).name for r in records]
    for candidate in (recognizers, names, folders, _differing_config(records)):
        if _distinct(candidate):
            return list(candidate)
    return [f"run {i + 1}" for i in range(len(records))]


def legend_prefixes(records: Sequence[dict[str, Any]], names: Sequence[str] | None) -> list[str]:
    """``"NAME: "`` legend prefixes of :func:`record_names`, after warning when the records differ in protocol."""
    _warn_different_protocols(records)
    return [f"{n}: " if n else "" for n in record_names(records, names)]


def _warn_different_protocols(records: Sequence[dict[str, Any]]) -> None:
    """Log a warning when overlaid records evaluated different pair sets (their numbers are not comparable)."""
    if len(records) < 2:
        return
    protocols = [r.get("protocol") or {} for r in records]
    differing = [k for k in _PROTOCOL_KEYS if len({_text(p.get(k)) for p in protocols}) > 1]
    if differing:
        values = "; ".join(f"{k}: " + " vs ".join(_text(p.get(k))[:12] for p in protocols) for k in differing)
        log.warning("the overlaid runs evaluated different pair sets (%s): their curves are not a paired "
                    "comparison", values)

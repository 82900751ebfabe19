"""Identification outputs: the markdown tables of a run and its files (``results.json``, ``results.md``,
``cmc.png``)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from ..files import atomic_write_text
from ..pipeline.identification import json_safe
from .labels import condition_label
from .plots import plot_cmc
from .results import attribute_table


def _pct(x: Any) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _ms(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}"


def ident_tables(record: Mapping[str, Any]) -> str:
    """Markdown tables: retrieval per condition, then attributes per condition."""
    rows = ["| condition | rank-1 % | rank-5 % | rank-10 % | mAP % | filtered rank-1 % | filtered mAP % | "
            "gallery searched % | rank-1 lost to filter % | reweighted filtered rank-1 % | search ms/query | "
            "filtered search ms/query |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cond in record["conditions"]:
        r = cond["retrieval"]
        f = r.get("filtered") or {}
        fr = r.get("filtered_reweighted") or {}
        rows.append(f"| {condition_label(cond)} | {_pct(r['rank1'])} | {_pct(r['rank5'])} | {_pct(r['rank10'])} | "
                    f"{_pct(r['map'])} | {_pct(f.get('rank1'))} | {_pct(f.get('map'))} | "
                    f"{_pct(f.get('gallery_fraction'))} | {_pct(f.get('rank1_lost_to_filter'))} | "
                    f"{_pct(fr.get('rank1'))} | {_ms(r.get('search_ms_per_query'))} | "
                    f"{_ms(f.get('search_ms_per_query'))} |")
    out = "\n".join(rows)
    header, attribute_rows = attribute_table(dict(record))
    if attribute_rows:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in attribute_rows]
        out += "\n\n" + "\n".join(lines)
    return out


def write_ident_run(record: Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``results.md``, ``cmc.png`` and, last and atomically, ``results.json`` into ``out``. A previous
    ``results.json`` there is removed first: an interruption in between leaves an unfinished run, never the old
    results beside new tables and figures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = json_safe(dict(record))
    proto = record["protocol"]
    cfg = record["config"]
    md = [f"# restorever identification: {proto['name']} / {cfg['recognizer']}", "",
          f"- created {record['created']}, restorever {record['restorever_version']}, device "
          f"{record['environment'].get('device')}",
          f"- gallery {proto['gallery_size']} ({proto['enrolled_people']} enrolled + {proto['distractors']} "
          f"distractors), probes {proto['probes']}; split options {proto['split_options']}",
          f"- degradation {cfg['degradation'] if cfg['scales'] else 'none'} at scales {cfg['scales'] or '—'}, "
          f"seed {cfg['seed']}; index {record['index']['backend']}/{record['index']['index']}, "
          f"filter {record.get('attribute_filter')}", "", ident_tables(record), ""]
    paths = {"markdown": out / "results.md", "cmc": out / "cmc.png", "results": out / "results.json"}
    if paths["results"].exists():
        paths["results"].unlink()
    atomic_write_text(paths["markdown"], "\n".join(md))
    plot_cmc([record], paths["cmc"])
    atomic_write_text(paths["results"], json.dumps(record, indent=1, allow_nan=False))
    return paths

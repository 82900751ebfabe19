"""Identification outputs: the markdown tables of a run and its files (``results.json``, ``results.md``,
``cmc.png``)."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..files import atomic_write_bytes
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
    """Write ``results.md``, ``cmc.png`` and, last, ``results.json`` into ``out``, all or nothing (as
    :func:`restorever.reports.results.write_run`): each is staged in full first, so a failure leaves the previous
    run's files as they were; then the old ``results.json`` is removed and the files renamed into place, results.json
    last, so an interruption leaves an unfinished run, never the old results beside new tables and figures."""
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
    drawing = Path(tempfile.mkdtemp(prefix=".roc-", dir=out))  # a leftover name run_folder removes
    try:
        plot_cmc([record], drawing / "cmc.png")
        contents = {"markdown": "\n".join(md).encode("utf-8"), "cmc": (drawing / "cmc.png").read_bytes(),
                    "results": json.dumps(record, indent=1, allow_nan=False).encode("utf-8")}
    finally:
        shutil.rmtree(drawing, ignore_errors=True)
    staged = {key: out / f".{paths[key].name}.staged" for key in paths}
    try:  # all staged first: a failure here leaves the previous run's files as they were
        for key, data in contents.items():
            atomic_write_bytes(staged[key], data)
        if paths["results"].exists():
            paths["results"].unlink()  # from here to the last rename: an unfinished run, never a mixed one
        for key in ("markdown", "cmc", "results"):
            os.replace(staged[key], paths[key])
    finally:
        for path in staged.values():
            try:
                path.unlink()
            except OSError:  # renamed into place already
                pass
    return paths

"""Writing and reading a run's outputs: ``results.json``, ``results.md``, ``roc.png``, ``degradation.jsonl``."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import RestoreverError
from ..files import atomic_write_text
from .labels import condition_label

RESULTS_FILE = "results.json"


def _pct(x: Any, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def comparison_cell(comp: dict[str, Any] | None) -> str:
    """``+1.23 [-0.50, +2.90] p=0.031``: accuracy difference in percentage points with its bootstrap interval and
    McNemar's p-value, or ``—``."""
    if not comp:
        return "—"
    p = comp["mcnemar"]["p_value"]
    return (f"{100 * comp['accuracy_difference']:+.2f} [{100 * comp['ci_low']:+.2f}, {100 * comp['ci_high']:+.2f}] "
            f"p={p:.2g}")


def results_table(record: dict[str, Any]) -> str:
    """A markdown table: one row per condition. When the record holds paired statistics (see
    :mod:`restorever.reports.statistics`), a column compares each degraded condition with the clean one and another
    each restorer with ``none`` at the same scale (a column is left out when no condition has its comparison)."""
    conds = record["conditions"]
    extra = [(key, title) for key, title in (("comparison_to_clean", "Δ acc vs clean, pp [95 % CI] McNemar p"),
                                             ("comparison_to_none", "Δ acc vs none, pp [95 % CI] McNemar p"))
             if any(c.get(key) for c in conds)]
    rows = ["| condition | accuracy % (± std) | AUC | EER % | TAR@FAR=1e-3 % | cos to clean |"
            + "".join(f" {title} |" for _, title in extra),
            "|---|---|---|---|---|---|" + "---|" * len(extra)]
    for cond in conds:
        v = cond["verification"]
        ident = cond.get("identity") or {}
        cos = ident.get("cosine_to_clean_mean")
        auc = v.get("auc")
        rows.append(f"| {condition_label(cond)} | {_pct(v['accuracy_mean'])} ± {_pct(v['accuracy_std'])} | "
                    f"{'—' if auc is None else f'{auc:.4f}'} | {_pct(v.get('eer'))} | "
                    f"{_pct(v['tar_at_far'].get('0.001'))} | {'—' if cos is None else f'{cos:.4f}'} |"
                    + "".join(f" {comparison_cell(cond.get(key))} |" for key, _ in extra))
    return "\n".join(rows)


STATISTICS_NOTE = (
    "Δ columns: accuracy difference in percentage points (condition minus reference) over all pairs at the fold "
    "thresholds, a 95 % percentile bootstrap interval resampling people (the person of each probe, with all their "
    "pairs), and McNemar's test on the per-pair decisions (exact binomial below 25 discordant pairs, else "
    "chi-square with continuity correction).")


def results_markdown(record: dict[str, Any]) -> str:
    cfg = record["config"]
    proto = record["protocol"]
    lines = [
        f"# restorever results: {proto['name']} / {cfg['recognizer']}",
        "",
        f"- created {record['created']}, restorever {record['restorever_version']}, device "
        f"{record['environment'].get('device')}",
        f"- pairs evaluated: {proto['pairs']} of {proto['pairs_requested']} in {proto['folds']} folds; "
        f"images: {proto['images']}; skipped pairs: {len(proto['skipped'])}; images aligned with the protocol's "
        f"fallback landmarks (no face found): {len(proto.get('landmark_fallbacks', []))}",
        f"- degradation: {cfg['degradation'] if cfg['scales'] else 'none'} on the {cfg['degrade_side']} side, "
        f"scales {cfg['scales'] or '—'}, seed {cfg['seed']}",
        "",
        results_table(record),
        "",
    ]
    if any(c.get("comparison_to_clean") or c.get("comparison_to_none") for c in record["conditions"]):
        lines += [STATISTICS_NOTE, ""]
    if proto["skipped"]:
        lines += ["## Skipped pairs", ""]
        lines += [f"- line {s['pair']}: {s['reason']}" for s in proto["skipped"][:50]]
        if len(proto["skipped"]) > 50:
            lines.append(f"- ... and {len(proto['skipped']) - 50} more (see results.json)")
        lines.append("")
    return "\n".join(lines)


def write_run(record: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``results.json`` (last, atomically: its presence means the run is complete), ``results.md``, ``roc.png``
    and ``degradation.jsonl`` into ``out``.

    The paired statistics of :func:`restorever.reports.statistics.add_comparisons` (``comparison_to_clean``,
    ``comparison_to_none``) are added to the record's conditions first (in place)."""
    from .plots import plot_roc
    from .statistics import add_comparisons

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = dict(record)
    params = record.pop("degradation_records", [])
    add_comparisons(record)  # adds keys to the caller's condition dicts too, so its printed table shows them
    paths = {}
    if params:
        paths["degradation"] = out / "degradation.jsonl"
        atomic_write_text(paths["degradation"], "".join(json.dumps(p, sort_keys=True) + "\n" for p in params))
    paths["markdown"] = out / "results.md"
    atomic_write_text(paths["markdown"], results_markdown(record))
    paths["roc"] = out / "roc.png"
    plot_roc([record], paths["roc"])
    paths["results"] = out / RESULTS_FILE
    atomic_write_text(paths["results"], json.dumps(record, indent=1, allow_nan=False))
    return paths


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` (or the one inside a run folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RestoreverError(f"{p}: no results file (did the run finish?)") from exc
    except json.JSONDecodeError as exc:
        raise RestoreverError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(record, dict) or "conditions" not in record:
        raise RestoreverError(f"{p}: not a restorever results file (no 'conditions')")
    return record

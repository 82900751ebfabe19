"""``restorever report RUN_DIR``: one self-contained HTML page and a markdown summary of a run.

The page holds the results table, the paired statistics, every figure (embedded as base64 PNG, so the file can be
mailed or attached to a paper's supplement on its own), the run's configuration, versions and weight hashes. The
markdown summary holds the same tables and links the figure files written beside it. Everything is read from
``results.json`` (and the example PNGs); only the paired statistics are added when an older record lacks them.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..pipeline.environment import restorever_version
from .identity_stats import IDENTITY_KIND
from .results import (IDENTITY_NOTE, RESULTS_FILE, STATISTICS_NOTE, attribute_table, comparison_cell, condition_label,
                      few_clusters_note, identity_comparison_cell, load_results, p_text, results_table, subset_note)
from .rate_stats import RATES_NOTE, compared_fars, rate_cell, rule_note, stored_rule
from .methods import METHODS_FILES, write_methods
from .methods_ident import ident_paragraphs, is_identification
from .tables import results_table_rows, run_references, to_csv, to_latex

log = logging.getLogger(__name__)

__all__ = ["Table", "build_report", "report_tables", "render_html", "render_markdown"]

CAPTIONS = {
    "roc": "ROC curves of every condition (log false-accept axis). Colour: restorer; line style and shade: scale; "
           "dots: TAR at FAR 1e-3 and 1e-2 where the run has enough different-person pairs.",
    "scales": "Verification accuracy against degradation scale (error bars: std over folds); dashed: clean.",
    "similarity": "Pair-score distributions per scale: same person filled and different people outlined (with "
                  "several restorers: same person solid, different people dashed outlines); dotted line: mean of "
                  "the fold thresholds.",
    "grid": "Example probes: clean, degraded and restored, with each face's cosine similarity to its clean "
            "embedding (the run's recognizer).",
    "cmc": "Cumulative match characteristic: identification rate against rank.",
}


#: tables shown before the figures; the others (protocol, configuration, versions, weights) follow them
MAIN_TABLES = ("tampered", "results", "statistics", "folds", "retrieval", "attributes")


@dataclass
class Table:
    """A titled table of strings; ``rows`` never include the header."""

    key: str
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    if isinstance(x, (list, tuple, dict)):
        return json.dumps(x, sort_keys=isinstance(x, dict))
    return str(x)


def _fixed(x: Any, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _pct(x: Any, digits: int = 2) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}"


#: how to read the ``time: ...`` rows of the environment table
TIMINGS_NOTE = ("time: seconds of wall clock for landmarks_s, embeddings_s and total_s; the per-stage seconds "
                "(align_s, degrade_s, restore_s, embed_s) and the n_* counts are summed over the processes of a "
                "torchrun run (process-seconds), so they can exceed total_s.")


#: how the statistics table names each comparison kind's family (see restorever.reports.statistics)
_FAMILY = {"comparison_to_none": "vs none", "comparison_to_clean": "vs clean"}


def _holm_text(test: dict[str, Any] | None) -> str:
    """A test's Holm-adjusted p for the statistics table, or ``—`` where none is stored."""
    p = (test or {}).get("p_holm")
    return "—" if p is None else p_text(p, 3)


def report_tables(record: dict[str, Any]) -> list[Table]:
    """Every table of the report, from a results record (with the statistics of
    :func:`restorever.reports.statistics.add_comparisons` when present)."""
    conds = [c for c in record["conditions"] if c.get("verification")]
    fars = sorted({k for c in conds for k in c["verification"].get("tar_at_far", {})}, key=float, reverse=True)
    cos_ci = any((c.get("identity") or {}).get("ci_level") for c in conds)
    results = Table("results", "Verification and identity",
                    ["condition", "pairs", "accuracy %", "± std", "± sem", "AUC", "EER %",
                     *[f"TAR@FAR={f} %" for f in fars], "cos to clean (mean)", "cos to clean (median)",
                     *(["cos to clean 95 % CI (people)"] if cos_ci else [])])
    for c in conds:
        v = c["verification"]
        ident = c.get("identity") or {}
        results.rows.append([
            condition_label(c), _fmt(v.get("n_pairs", len((c.get("scores") or {}).get("score", [])) or None)),
            _pct(v["accuracy_mean"]), _pct(v.get("accuracy_std")), _pct(v.get("accuracy_sem")),
            _fixed(v.get("auc")), _pct(v.get("eer")), *[_pct(v["tar_at_far"].get(f)) for f in fars],
            _fixed(ident.get("cosine_to_clean_mean")), _fixed(ident.get("cosine_to_clean_median")),
            *([f"[{ident['ci_low']:.4f}, {ident['ci_high']:.4f}]" if ident.get("ci_low") is not None else "—"]
              if cos_ci else []),
        ])
    retrieval = Table("retrieval", "Identification",
                      ["condition", "probes", "rank-1 %", "rank-5 %", "rank-10 %", "mAP %", "filtered rank-1 %",
                       "filtered mAP %", "gallery searched %"])
    for c in record["conditions"]:
        r = c.get("retrieval")
        if not r:
            continue
        f = r.get("filtered") or {}
        retrieval.rows.append([condition_label(c), _fmt(r.get("n_probes")), _pct(r.get("rank1")), _pct(r.get("rank5")),
                               _pct(r.get("rank10")), _pct(r.get("map")), _pct(f.get("rank1")), _pct(f.get("map")),
                               _pct(f.get("gallery_fraction"))])
    header, rows = attribute_table(record)
    attributes = Table("attributes", "Predicted attributes", header, rows,
                       note="Accuracy and expected calibration error of the attribute model on the probes, without "
                            "and with the re-weighting module; flip: the predicted gender or age group differs "
                            "from the clean image's.")
    few_people = few_clusters_note(record)
    stats = Table("statistics", "Paired comparisons",
                  ["condition", "reference", "accuracy %", "reference %", "Δ pp [95 % CI]", "discordant b / c",
                   "McNemar test", "p", "p (clustered)", "Holm p", "Holm p (clustered)", "family"],
                  note=STATISTICS_NOTE + " Discordant pairs: b = right in the reference and wrong in the condition, "
                  "c = the reverse." + (" " + few_people if few_people else ""))
    for c in record["conditions"]:
        for key in ("comparison_to_none", "comparison_to_clean"):
            comp = c.get(key)
            if not comp:
                continue
            mc = comp["mcnemar"]
            ref = comp["reference"]
            stats.rows.append([
                condition_label(c), condition_label({"restorer": ref["restorer"], "scale": ref["scale"]}),
                _pct(comp["accuracy"]), _pct(comp["accuracy_reference"]),
                comparison_cell(comp).split(" p", 1)[0], f"{mc['b']} / {mc['c']}",
                "exact binomial" if mc["method"] == "exact" else "χ² (continuity corrected)",
                p_text(mc["p_value"], 3),
                p_text(comp["mcnemar_clustered"]["p_value"], 3) if comp.get("mcnemar_clustered") else "—",
                *[_holm_text(comp.get(test)) for test in ("mcnemar", "mcnemar_clustered")],
                f"{_FAMILY[key]} ({mc['family_size']})" if mc.get("family_size") is not None else "—",
            ])
    rate_fars = compared_fars([c.get("comparison_to_none") for c in record["conditions"]])
    rules = rule_note([(condition_label(c), stored_rule(c.get("comparison_to_none"))) for c in record["conditions"]])
    rates = Table("rates", "AUC and TAR@FAR: restorer against none",
                  ["condition", "reference", "AUC", "reference AUC", "Δ AUC [95 % CI]",
                   *[f"Δ TAR@FAR={f} pp [95 % CI]" for f in rate_fars]], note=f"{RATES_NOTE} {rules}".strip())
    for c in record["conditions"]:
        comp = c.get("comparison_to_none")
        if not isinstance(comp, dict) or "auc" not in comp:
            continue
        auc = comp["auc"] or {}
        tars = comp.get("tar_at_far") or {}
        rates.rows.append([condition_label(c), condition_label(comp["reference"]), _fixed(auc.get("value")),
                           _fixed(auc.get("reference")), rate_cell(auc, 1, 4),
                           *[rate_cell(tars.get(f), 100, 2) for f in rate_fars]])
    identity = Table("identity", "Identity to clean: restorer against none",
                     ["condition", "reference", "images", "people", "cos", "reference cos", "Δ cos [95 % CI]",
                      "sign-flip test", "p", "Holm p", "family"], note=IDENTITY_NOTE)
    for c in record["conditions"]:
        comp = c.get(IDENTITY_KIND)
        if not isinstance(comp, dict):
            continue
        test = comp.get("sign_flip") or {}
        method = test.get("method", "—") + (f" ({test['n_draws']} draws, seed {test['seed']})"
                                             if test.get("n_draws") else "")
        identity.rows.append([
            condition_label(c), condition_label(comp["reference"]), _fmt(comp.get("n")),
            _fmt((comp.get("bootstrap") or {}).get("clusters")), _fixed(comp.get("cosine")),
            _fixed(comp.get("cosine_reference")), identity_comparison_cell(comp).split(" p", 1)[0], method,
            p_text(test["p_value"], 3) if test.get("p_value") is not None else "—", _holm_text(test),
            f"vs none ({test['family_size']})" if test.get("family_size") is not None else "—",
        ])
    proto = record.get("protocol") or {}
    protocol = Table("protocol", "Protocol", ["field", "value"],
                     [[k, _fmt(v if not isinstance(v, (list, dict)) or len(v) <= 10 else f"{len(v)} entries")]
                      for k, v in proto.items() if k not in ("skipped", "failed_images")])
    what = "pairs" if "pairs" in proto else "images or people"  # an identification run skips images, not pairs
    protocol.rows.append([f"skipped {what}", str(len(proto.get("skipped") or []))])
    protocol.rows.append(["failed images", str(len(proto.get("failed_images") or []))])
    config = Table("config", "Configuration", ["option", "value"],
                   [[k, _fmt(v)] for k, v in (record.get("config") or {}).items()])
    env = {"restorever": record.get("restorever_version"), "created": record.get("created"),
           **(record.get("environment") or {})}
    env.update({f"time: {k}": v for k, v in (record.get("timings") or {}).items()})
    environment = Table("environment", "Versions and environment", ["item", "value"],
                        [[k, _fmt(v)] for k, v in env.items()],
                        note=TIMINGS_NOTE if record.get("timings") else "")
    weights = Table("weights", "Weights", ["model:role", "file", "sha256"],
                    [[name, Path(str(w.get("file", ""))).name or "—", w.get("sha256") or "—"]
                     for name, w in (record.get("weights") or {}).items()])
    references = Table("references", "References", ["used as", "name", "reference"],
                       [list(entry) for entry in run_references(record)],
                       note="What this run used, from the protocol file's citation and the backend cards' papers; "
                            "tables.csv and tables.tex (written by `restorever report`) hold the main numbers.")
    tables = [results, stats, rates, identity, *fold_tables(conds), retrieval, attributes, protocol, config,
              environment, weights, references]
    skipped = proto.get("skipped") or []
    if skipped:
        tables.append(Table("skipped", "Skipped pairs", ["line of the pairs file", "reason"],
                            [[str(s.get("pair")), str(s.get("reason"))] for s in skipped]))
    return [t for t in tables if t.rows]


def fold_tables(conds: Sequence[dict[str, Any]]) -> list[Table]:
    """Per-fold accuracy (with each fold's number of pairs) and per-fold thresholds of the verification
    conditions: the table's accuracy is their mean, so a small fold (after skipped pairs) weighs as much as a full
    one. Empty when the conditions store no fold accuracies."""
    conds = [c for c in conds if c["verification"].get("fold_accuracies")]
    if not conds:
        return []
    n_folds = max(len(c["verification"]["fold_accuracies"]) for c in conds)
    header = ["condition", *[f"fold {k + 1}" for k in range(n_folds)]]
    accuracy = Table("folds", "Per-fold accuracy", header,
                     note="Accuracy % of each fold at the threshold chosen on the other folds (the accuracy column "
                          "above is their mean); the first row counts each fold's pairs.")
    scores = next((c.get("scores") for c in conds if c.get("scores")), None)
    if scores:
        _, counts = np.unique(np.asarray(scores["fold"]), return_counts=True)
        accuracy.rows.append(["pairs", *[str(int(n)) for n in counts]])
    thresholds = Table("fold_thresholds", "Per-fold thresholds", header,
                       note="Score threshold of each fold (a pair is the same person when its score is above it); "
                            "'below all' is the stored -1.8e308: every pair called the same person.")
    for c in conds:
        v = c["verification"]
        accuracy.rows.append([condition_label(c), *[_pct(a) for a in v["fold_accuracies"]]])
        thresholds.rows.append([condition_label(c), *["below all" if t is not None and t <= -1e308 else _fmt(t)
                                                      for t in v.get("thresholds") or []]])
    return [accuracy, thresholds]


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}
h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td:first-child{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td code{font-size:12px;word-break:break-all}
figure{margin:1.2em 1.5em 1.2em 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{width:100%;height:auto;border:1px solid #eee}
figcaption,.note{font-size:12.5px;color:#555}
.meta{color:#555}
"""


def _is_number(text: str) -> bool:
    t = text.replace("%", "").replace("±", "").strip()
    try:
        float(t)
        return True
    except ValueError:
        return False


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = []
        for value in row:
            text = html.escape(value)
            if table.key == "weights" and len(value) == 64:
                cells.append(f"<td><code>{text}</code></td>")
            else:
                cells.append(f'<td class="num">{text}</td>' if _is_number(value) else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (f'<h2 id="{table.key}">{html.escape(table.title)}</h2>\n<table id="table-{table.key}">'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + f"\n</tbody></table>\n{note}")


def _display_width(path: Path, dpi: int = 300, zoom: float = 1.5) -> int | None:
    """CSS pixels to show a PNG at ``zoom`` times its printed size (from the IHDR width and the figures' dpi)."""
    head = path.read_bytes()[:24]
    if path.suffix.lower() != ".png" or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return round(int.from_bytes(head[16:20], "big") / dpi * 96 * zoom)


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml"}[path.suffix.lower()]
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(record: dict[str, Any], tables: Sequence[Table], figures: dict[str, Path],
                skipped_figures: dict[str, str]) -> str:
    """The self-contained page: ``figures`` maps a figure name to a PNG or SVG file, embedded as a data URI."""
    proto = record.get("protocol") or {}
    cfg = record.get("config") or {}
    title = f"restorever: {proto.get('name', '?')} / {cfg.get('recognizer', '?')}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(_summary_line(record))}</p>',
    ]
    by_key = {t.key: t for t in tables}
    for key in MAIN_TABLES:
        if key in by_key:
            parts.append(_html_table(by_key[key]))
    parts.append('<h2 id="figures">Figures</h2>')
    for name, path in figures.items():
        caption = CAPTIONS.get(name, name)
        width = _display_width(path)
        size = f' style="width:{width}px"' if width else ""
        parts.append(f'<figure id="figure-{name}"{size}><img src="{_data_uri(path)}" alt="{html.escape(name)}">'
                     f"<figcaption><b>{html.escape(name)}.</b> {html.escape(caption)}</figcaption></figure>")
    if skipped_figures:
        items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in skipped_figures.items())
        parts.append(f'<p class="note">Figures not drawn:</p><ul class="note">{items}</ul>')
    for table in tables:
        if table.key not in MAIN_TABLES:
            parts.append(_html_table(table))
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    parts.append(f'<p class="note">Report written {html.escape(stamp)} from {html.escape(RESULTS_FILE)} by '
                 f"restorever {html.escape(str(restorever_version()))}.</p></body></html>")
    return "\n".join(parts) + "\n"


def _summary_line(record: dict[str, Any]) -> str:
    proto = record.get("protocol") or {}
    cfg = record.get("config") or {}
    scales = cfg.get("scales") or []
    degradation = (f"{cfg.get('degradation')} on the {cfg.get('degrade_side', 'probe')} side at scales "
                   f"{', '.join(f'x{s}' for s in scales)}" if scales else "no degradation")
    if "pairs" in proto:
        folds = proto.get("folds", "?")
        what = f"{proto['pairs']} pairs{subset_note(record)} in {folds} fold{'' if folds == 1 else 's'}"
    else:
        what = f"{proto.get('task', 'evaluation')}: gallery {proto.get('gallery_size', '?')}, probes " \
               f"{proto.get('probes', '?')}"
    return (f"{what}, recognizer "
            f"{cfg.get('recognizer', '?')}, restorers {', '.join(cfg.get('restorers') or ['none'])}, {degradation}, "
            f"seed {cfg.get('seed', '?')}; run created {record.get('created', '?')}.")


def _md_table(table: Table) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"## {table.title}", "", "| " + " | ".join(map(esc, table.header)) + " |",
             "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def render_markdown(record: dict[str, Any], tables: Sequence[Table], figure_links: dict[str, str],
                    skipped_figures: dict[str, str]) -> str:
    """The markdown summary: the condensed results table, the statistics, links to the figures, then the other
    tables."""
    proto = record.get("protocol") or {}
    cfg = record.get("config") or {}
    lines = [f"# restorever: {proto.get('name', '?')} / {cfg.get('recognizer', '?')}", "", _summary_line(record), ""]
    by_key = {t.key: t for t in tables}
    if "tampered" in by_key:
        lines.append(_md_table(by_key["tampered"]))
    if all(c.get("verification") for c in record["conditions"]):
        lines += [results_table(record), ""]
    elif "results" in by_key:
        lines.append(_md_table(by_key["results"]))
    for key in ("statistics", "folds", "retrieval", "attributes"):
        if key in by_key:
            lines.append(_md_table(by_key[key]))
    if figure_links:
        lines += ["## Figures", ""]
        for name, link in figure_links.items():
            lines += [f"![{name}]({link})", "", f"*{name}.* {CAPTIONS.get(name, '')}", ""]
    if skipped_figures:
        lines += ["Figures not drawn: " + "; ".join(f"{k}: {v}" for k, v in skipped_figures.items()), ""]
    for table in tables:
        if table.key not in MAIN_TABLES:
            lines.append(_md_table(table))
    return "\n".join(lines)


def build_report(run_dir: str | Path, *, html_path: str | Path | None = None, markdown_path: str | Path | None = None,
                 figures_dir: str | Path | None = None, formats: Sequence[str] = ("png", "pdf"),
                 n_boot: int = 2000, csv_path: str | Path | None = None,
                 latex_path: str | Path | None = None, methods_dir: str | Path | None = None) -> dict[str, Any]:
    """Write the report of the run in ``run_dir``.

    Args:
        run_dir: a run folder (holding ``results.json`` and ``examples/``) or its ``results.json``.
        html_path: default ``RUN_DIR/report.html``; markdown_path: default ``RUN_DIR/report.md``.
        figures_dir: where the figure files go (default ``RUN_DIR/figures``); the HTML embeds the PNGs.
        formats: figure formats to write; ``png`` is always written (the page embeds it).
        n_boot: bootstrap replicates, used only when the record lacks the paired statistics.
        csv_path: the tidy table of :func:`restorever.reports.tables.results_table_rows` (default
            ``RUN_DIR/tables.csv``); latex_path: the booktabs accuracy table (default ``RUN_DIR/tables.tex``). Both
            are left out, with the reason in ``skipped_tables``, for a run without verification conditions.
        methods_dir: where ``methods.md``, ``methods.tex`` and ``references.bib`` go
            (:func:`restorever.reports.methods.write_methods`; default ``RUN_DIR``); an identification run's from
            :func:`restorever.reports.methods_ident.ident_paragraphs`.

    Returns:
        ``{"html": Path, "markdown": Path, "csv": Path | None, "latex": Path | None, "methods": {file name: Path},
        "figures": {name: [Path, ...]}, "skipped_figures": {name: reason}, "skipped_tables": reason or ""}``.
    """
    from ..files import atomic_write_text
    from .identity_stats import add_identity_statistics
    from .plots import plot_all
    from .rate_stats import add_rate_comparisons
    from .statistics import add_comparisons

    run_dir = Path(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    record = load_results(run_dir)
    add_comparisons(record, n_boot=n_boot)  # no-op when write_run already stored them
    add_rate_comparisons(record)  # AUC / TAR@FAR intervals beside comparison_to_none, for records written before
    add_identity_statistics(record, n_boot=n_boot)  # as add_comparisons: completes a record written before it
    html_path = Path(html_path) if html_path else run_dir / "report.html"
    markdown_path = Path(markdown_path) if markdown_path else run_dir / "report.md"
    figures_dir = Path(figures_dir) if figures_dir else run_dir / "figures"
    csv_path = Path(csv_path) if csv_path else run_dir / "tables.csv"
    latex_path = Path(latex_path) if latex_path else run_dir / "tables.tex"
    methods_dir = Path(methods_dir) if methods_dir else run_dir
    _check_outputs({"--html": html_path, "--markdown": markdown_path, "--csv": csv_path, "--latex": latex_path,
                    **{"--methods-dir": methods_dir / name for name in METHODS_FILES}},
                   figures_dir)  # before any figure is drawn
    rows = results_table_rows(record)
    ident = not rows and is_identification(record)
    skipped_tables = "" if rows else ("the run has no verification conditions (an identification run)" if ident
                                      else "the run has no verification conditions")
    fmts = ["png", *[f.lstrip(".").lower() for f in formats if f.lstrip(".").lower() != "png"]]
    written, skipped = plot_all(record, run_dir, figures_dir, formats=fmts)
    pngs = {name: next(p for p in paths if p.suffix == ".png") for name, paths in written.items()}
    tables = report_tables(record)
    differences = stored_metric_differences(record)
    if differences:
        log.warning("%s: %d stored metric(s) differ from the ones the stored scores give (e.g. %s); the report shows "
                    "the stored numbers: run `restorever validate %s`", RESULTS_FILE, len(differences),
                    differences[0], run_dir)
        tables.insert(0, Table("tampered", "Warning: stored metrics differ from the scores", ["difference"],
                               [[d] for d in differences[:20]],
                               note="results.json was changed after the run, or is damaged: the tables below show "
                                    "the stored numbers. `restorever validate RUN_DIR` checks everything."))
    atomic_write_text(html_path, render_html(record, tables, pngs, skipped))
    links = {name: _relative(p, markdown_path.parent) for name, p in pngs.items()}
    atomic_write_text(markdown_path, render_markdown(record, tables, links, skipped))
    methods: dict[str, Path] = {}
    if rows:
        atomic_write_text(csv_path, to_csv(rows))
        atomic_write_text(latex_path, to_latex(record))
        methods = write_methods(record, methods_dir)
        log.info("wrote %s, %s, %s, %s and %s", html_path, markdown_path, csv_path, latex_path,
                 ", ".join(map(str, methods.values())))
    elif ident:  # no accuracy table, but a methods text from the identification record
        methods = write_methods(record, methods_dir, ident_paragraphs)
        log.info("wrote %s, %s and %s; tables.csv and tables.tex skipped: %s", html_path, markdown_path,
                 ", ".join(map(str, methods.values())), skipped_tables)
    else:
        log.info("wrote %s and %s; tables.csv and tables.tex skipped: %s", html_path, markdown_path, skipped_tables)
    return {"html": html_path, "markdown": markdown_path, "csv": csv_path if rows else None,
            "latex": latex_path if rows else None, "methods": methods, "figures": written, "skipped_figures": skipped,
            "skipped_tables": skipped_tables}


def _check_outputs(files: dict[str, Path], figures_dir: Path) -> None:
    """Every place the report writes is a writable folder (created) or a file path that is not a folder: one
    :class:`RestoreverError` line naming the option, before any figure is drawn."""
    from ..errors import RestoreverError
    from .results import prepare_out_dir

    for option, path in files.items():
        if path.is_dir():
            raise RestoreverError(f"{option} {path}: is a folder; give the file to write")
        prepare_out_dir(path.parent, option=option)
    prepare_out_dir(figures_dir, option="--figures-dir")


#: the stored verification numbers a report shows, compared with a recomputation from the stored scores
_SHOWN_METRICS = ("accuracy_mean", "accuracy_std", "accuracy_sem", "fold_accuracies", "thresholds", "auc", "eer",
                  "tar_at_far")


def stored_metric_differences(record: dict[str, Any]) -> list[str]:
    """Where a condition's stored verification numbers differ from :func:`restorever.metrics.verification_report`
    of its stored scores (an edited or damaged results.json): one line per number, empty when all agree."""
    from ..metrics import verification_report
    from ..validate.common import compare

    import warnings

    found: list[str] = []
    for cond in record["conditions"]:
        scores, stored = cond.get("scores"), cond.get("verification")
        if not scores or not stored:
            continue
        try:
            with warnings.catch_warnings():  # one class or few pairs: the stored record carries the same gaps
                warnings.simplefilter("ignore")
                fresh = verification_report(np.asarray(scores["same"], dtype=np.int64),
                                            np.asarray(scores["score"], dtype=np.float64),
                                            np.asarray(scores["fold"], dtype=np.int64))
        except (ValueError, OverflowError) as exc:
            found.append(f"{condition_label(cond)}: metrics cannot be recomputed ({exc})")
            continue
        for key in _SHOWN_METRICS:
            if key in stored and key in fresh:
                compare(stored[key], fresh[key], f"{condition_label(cond)}: {key}", found)
    return found


def _relative(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()

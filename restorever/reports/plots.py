"""Figures from results records (matplotlib, Agg). Nothing here computes a metric: every number drawn is read from
``results.json`` (and the example PNGs a run saved for :func:`plot_grid`).

Conventions, so that the figures sit together in a paper:

- one colour per restorer in every figure (:func:`restorer_colour`); the clean condition is black;
- the degradation scale is drawn with a line style and a lighter shade of the restorer's colour, in the same order
  in every figure (:func:`scale_style`);
- sizes fit a single paper column (3.5 in) with 7-8 pt text, except the image grid, which grows with its columns;
- the output format follows the file suffix: ``.png`` (300 dpi), ``.pdf`` (TrueType fonts embedded) or ``.svg``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import RestoreverError, UnsafePathError
from .labels import condition_label

log = logging.getLogger(__name__)

#: one colour per restorer across every figure
RESTORER_COLOURS = {"none": "#4d4d4d", "vqfr-v1": "#1f77b4", "vqfr-v2": "#2ca02c", "difface": "#d62728",
                    "gfpgan-v1.4": "#ff7f0e", "gfpgan-v1.3": "#bcbd22", "codeformer": "#9467bd"}
_EXTRA = ["#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#aec7e8", "#98df8a"]
CLEAN_COLOUR = "#000000"
#: line styles of the degraded scales, mildest first
_SCALE_LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (6, 2))]
FORMATS = (".png", ".pdf", ".svg")
COLUMN_WIDTH = 3.5  # inches: one column of a two-column paper


class MissingDataError(RestoreverError):
    """A results record lacks the section a figure needs (e.g. no ``retrieval`` or no saved examples)."""


def restorer_colour(name: str) -> str:
    """The restorer's colour (hex), the same in every figure; unknown names get a stable colour from their text."""
    if name in RESTORER_COLOURS:
        return RESTORER_COLOURS[name]
    return _EXTRA[sum(map(ord, name)) % len(_EXTRA)]


def _shade(colour: str, t: float) -> tuple[float, float, float]:
    """``colour`` mixed with white by the fraction ``t`` in [0, 1]."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (r + (1 - r) * t, g + (1 - g) * t, b + (1 - b) * t)


def _scales_of(records: Sequence[dict[str, Any]]) -> list[int]:
    return sorted({c["scale"] for r in records for c in r["conditions"] if c.get("scale") is not None})


def scale_style(scale: int | None, scales: Sequence[int]) -> tuple[Any, float]:
    """``(linestyle, lightening)`` of a scale: solid and full colour for the mildest degradation, then dashed,
    dash-dotted, ... and up to 45 % lighter for the strongest. The clean condition (``None``) is solid."""
    if scale is None or scale not in scales:
        return "-", 0.0
    i = sorted(scales).index(scale)
    return _SCALE_LINESTYLES[i % len(_SCALE_LINESTYLES)], 0.45 * i / max(1, len(scales) - 1)


def condition_colour(cond: dict[str, Any], scales: Sequence[int]) -> Any:
    """Black for the clean condition, else the restorer's colour lightened by the scale."""
    if cond.get("scale") is None:
        return CLEAN_COLOUR
    return _shade(restorer_colour(cond["restorer"]), scale_style(cond["scale"], scales)[1])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5, "xtick.labelsize": 7,
        "ytick.labelsize": 7, "figure.dpi": 150, "savefig.dpi": 300, "pdf.fonttype": 42, "ps.fonttype": 42,
        "svg.fonttype": "path", "axes.linewidth": 0.6, "lines.linewidth": 1.2, "legend.handlelength": 2.6,
    })
    return plt


def _check_output(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"{out}: unsupported figure format {out.suffix or '(none)'!r}; use one of "
                         f"{', '.join(FORMATS)}")
    return out


def _figure(width: float = COLUMN_WIDTH, height: float = 2.8, **subplots):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(width, height), **subplots)
    return fig, ax, plt


def _save(fig, plt, out: str | Path, *, tight: bool = True) -> Path:
    out = _check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if tight:
            fig.tight_layout(pad=0.3)
        fig.savefig(out, bbox_inches="tight", pad_inches=0.02, metadata=_metadata(out))
    finally:
        plt.close(fig)
    log.info("wrote %s", out)
    return out


def _metadata(out: Path) -> dict[str, Any]:
    """Reproducible files: no creation date in PDF/SVG, a fixed creator."""
    suffix = out.suffix.lower()
    if suffix == ".pdf":
        return {"Creator": "restorever", "CreationDate": None}
    if suffix == ".svg":
        return {"Creator": "restorever", "Date": None}
    return {"Software": "restorever"}


def _verified(records: Sequence[dict[str, Any]], what: str) -> None:
    if not any(c.get("verification") for r in records for c in r["conditions"]):
        raise MissingDataError(f"no condition has verification results: {what} needs a pair-verification run "
                               "(`restorever eval`)")


def _prefix(record: dict[str, Any], records: Sequence[dict[str, Any]]) -> str:
    return f"{record['config'].get('recognizer')}: " if len(records) > 1 else ""


# ---------------------------------------------------------------------------------------------------------------
# ROC and accuracy against scale


def _check_wanted(records: Sequence[dict[str, Any]], scales: Sequence[int] | None,
                  restorers: Sequence[str] | None) -> None:
    """A ``scales`` / ``restorers`` value that no record has is an error, not a figure of the clean curve alone."""
    degraded = [c for r in records for c in r["conditions"] if c.get("scale") is not None]
    have_scales = sorted({c["scale"] for c in degraded})
    have_restorers = sorted({str(c.get("restorer")) for c in degraded})
    missing = ([f"scale {s}" for s in scales or () if s not in have_scales]
               + [f"restorer {n}" for n in restorers or () if n not in have_restorers])
    if missing:
        raise MissingDataError(f"{', '.join(missing)}: not in the results (scales {have_scales or 'none'}, "
                               f"restorers {have_restorers or 'none'})")


def _keep(cond: dict[str, Any], scales: Sequence[int] | None, restorers: Sequence[str] | None) -> bool:
    """Condition filter of the line figures: the clean condition is always kept."""
    if cond.get("scale") is None:
        return True
    return (not scales or cond["scale"] in scales) and (not restorers or cond["restorer"] in restorers)


def _legend(fig, ax, height: float, *, loc: str = "lower right", max_inside: int = 8) -> None:
    """The legend inside the axes for a few entries; below them in two columns (the figure growing taller) for
    more, so that a column-wide figure stays readable."""
    n = len(ax.get_legend_handles_labels()[1])
    if n <= max_inside:
        ax.legend(loc=loc, frameon=False)
        return
    fig.set_size_inches(COLUMN_WIDTH, height + 0.11 * -(-n // 2))
    ax.legend(loc="upper center", bbox_to_anchor=(0.45, -0.2), ncol=2, frameon=False, fontsize=5.5,
              handlelength=2.4, columnspacing=1.0)


def plot_roc(records: Sequence[dict[str, Any]], out: str | Path, *, fars: Sequence[float] = (1e-3, 1e-2),
             scales: Sequence[int] | None = None, restorers: Sequence[str] | None = None) -> Path:
    """ROC curves of every condition of every record: log-scale false-accept axis, AUC in the legend, a marker at
    each stored TAR@FAR in ``fars``. Colour = restorer, line style and shade = scale; several records (one per
    recognizer, say) are told apart by a prefix in the legend and a thinner line. ``scales`` / ``restorers`` keep
    only those conditions (and the clean one). With more than 8 curves the legend goes below the axes in two
    columns, so the plot stays readable at column width."""
    _check_output(out)
    _verified(records, "the ROC figure")
    _check_wanted(records, scales, restorers)
    conds = [(r_index, record, c) for r_index, record in enumerate(records) for c in record["conditions"]
             if c.get("verification") and _keep(c, scales, restorers)]
    fig, ax, plt = _figure(COLUMN_WIDTH, 2.8)
    all_scales = _scales_of(records)
    min_fpr = 1.0
    for r_index, record, cond in conds:
        ver = cond["verification"]
        roc = ver["roc"]
        positive = [x for x in roc["fpr"] if x > 0]
        if positive:
            min_fpr = min(min_fpr, min(positive))
        fpr = [max(x, 1e-6) for x in roc["fpr"]]
        auc = ver.get("auc")
        colour = condition_colour(cond, all_scales)
        style = scale_style(cond.get("scale"), all_scales)[0]
        label = _prefix(record, records) + condition_label(cond) + (f" (AUC {auc:.3f})" if auc is not None else "")
        ax.plot(fpr, roc["tpr"], linestyle=style, color=colour, lw=1.4 if r_index == 0 else 0.8, label=label)
        for far in fars:
            tar = ver["tar_at_far"].get(f"{far:g}")
            if tar is not None:
                ax.plot([far], [tar], marker="o", color=colour, ms=3, mec="white", mew=0.4, zorder=3)
    for far in fars:
        ax.axvline(far, color="0.6", lw=0.5, ls=":", zorder=0)
    ax.set_xscale("log")
    ax.set_xlim(max(1e-4, min(min_fpr, 1e-2) / 2), 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(True, which="major", alpha=0.25, lw=0.4)
    _legend(fig, ax, 2.8)
    return _save(fig, plt, out)


def plot_scales(records: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Verification accuracy (± std over folds, error bars) against the degradation scale, one line per restorer,
    the clean accuracy as a dashed reference line."""
    _check_output(out)
    _verified(records, "the accuracy-against-scale figure")
    fig, ax, plt = _figure(COLUMN_WIDTH, 2.7)
    all_scales = _scales_of(records)
    for r_index, record in enumerate(records):
        prefix = _prefix(record, records)
        conds = [c for c in record["conditions"] if c.get("verification")]
        clean = [c for c in conds if c.get("scale") is None]
        if clean:
            acc = 100 * clean[0]["verification"]["accuracy_mean"]
            ax.axhline(acc, color=CLEAN_COLOUR, ls="--", lw=0.8, alpha=1.0 if r_index == 0 else 0.5,
                       label=f"{prefix}clean ({acc:.2f} %)")
        for name in dict.fromkeys(c["restorer"] for c in conds if c.get("scale") is not None):
            pts = sorted((c["scale"], c["verification"]) for c in conds
                         if c["restorer"] == name and c.get("scale") is not None)
            xs = [p[0] for p in pts]
            ys = [100 * p[1]["accuracy_mean"] for p in pts]
            es = clipped_error_bars(ys, [100 * p[1]["accuracy_std"] for p in pts])
            ax.errorbar(xs, ys, yerr=es, marker="os^Dv"[r_index % 5], ms=3, capsize=2, lw=1.2, elinewidth=0.7,
                        color=restorer_colour(name), label=prefix + name)
    if all_scales:
        ax.set_xticks(all_scales)
        ax.set_xticklabels([f"x{s}" for s in all_scales])
    ax.set_xlabel("degradation scale (of a 512 px face)")
    ax.set_ylabel("verification accuracy (%)")
    ax.grid(True, alpha=0.25, lw=0.4)
    ax.legend(frameon=False)
    return _save(fig, plt, out)


def clipped_error_bars(values: Sequence[float], spreads: Sequence[float], low: float = 0.0,
                       high: float = 100.0) -> list[list[float]]:
    """``[lower, upper]`` error-bar lengths of ``values ± spreads`` cut at ``[low, high]`` (an accuracy of 99 % ±
    3 % is drawn up to 100 %, not 102 %), in the form ``Axes.errorbar(yerr=...)`` takes."""
    return [[min(e, v - low) for v, e in zip(values, spreads)], [min(e, high - v) for v, e in zip(values, spreads)]]


# ---------------------------------------------------------------------------------------------------------------
# score distributions


def plot_similarity(record: dict[str, Any], out: str | Path, *, bins: int = 40, ncols: int = 2) -> Path:
    """Genuine (same person) and impostor (different people) pair-score distributions: one panel per scale (clean
    first), one colour per restorer, shared score axis; a dotted line at each condition's mean fold threshold.
    Densities are normalised per class. With one restorer the genuine histogram is filled and the impostor one an
    outline; with several, both are outlines (impostors dashed) so that the restorers stay apart."""
    import numpy as np

    _check_output(out)
    conds = [c for c in record["conditions"] if c.get("scores") and c.get("verification")]
    if not conds:
        raise MissingDataError("results.json has no per-pair scores (conditions[].scores); rerun `restorever eval`")
    scales = _scales_of([record])
    panels: list[int | None] = ([None] if any(c.get("scale") is None for c in conds) else []) + scales
    all_scores = np.concatenate([np.asarray(c["scores"]["score"], dtype=float) for c in conds])
    overlaid = max(sum(c.get("scale") == p for c in conds) for p in panels) > 1  # several restorers per panel
    edges = np.linspace(all_scores.min(), all_scores.max(), bins + 1)
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(COLUMN_WIDTH, 0.35 + 1.3 * nrows), sharex=True, squeeze=False)
    for ax, scale in zip(axes.ravel(), panels):
        for cond in (c for c in conds if c.get("scale") == scale):
            score = np.asarray(cond["scores"]["score"], dtype=float)
            same = np.asarray(cond["scores"]["same"]).astype(bool)
            colour = CLEAN_COLOUR if scale is None else restorer_colour(cond["restorer"])
            if same.any():
                if overlaid:
                    ax.hist(score[same], bins=edges, density=True, histtype="step", color=colour, lw=0.8)
                else:
                    ax.hist(score[same], bins=edges, density=True, histtype="stepfilled", color=colour, alpha=0.35,
                            lw=0)
            if (~same).any():
                ax.hist(score[~same], bins=edges, density=True, histtype="step", color=colour, lw=0.8,
                        ls=(0, (2.5, 1.2)) if overlaid else "-")
            thresholds = cond["verification"].get("thresholds") or []
            if thresholds:
                ax.axvline(float(np.mean(thresholds)), color=colour, ls=":", lw=0.8)
        ax.set_title("clean" if scale is None else f"x{scale}", pad=2)
        ax.tick_params(labelleft=False, left=False)
        ax.grid(True, axis="x", alpha=0.25, lw=0.4)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("density")
    fig.supxlabel("pair score (higher = more alike)", fontsize=8)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color="0.2", lw=0.8, label="same person") if overlaid
               else Patch(facecolor="0.55", alpha=0.5, lw=0, label="same person"),
               Line2D([], [], color="0.2", lw=0.8, ls=(0, (2.5, 1.2)), label="different people") if overlaid
               else Patch(facecolor="none", edgecolor="0.2", lw=0.8, label="different people"),
               Line2D([], [], color="0.2", ls=":", lw=0.8, label="mean threshold")]
    handles += [Line2D([], [], color=restorer_colour(name), lw=3, label=name)
                for name in dict.fromkeys(c["restorer"] for c in conds if c.get("scale") is not None)]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(3, len(handles)),
               frameon=False)
    return _save(fig, plt, out)


# ---------------------------------------------------------------------------------------------------------------
# image grid


def _select_examples(examples: list[dict[str, Any]], items: Sequence[str] | None, max_items: int
                     ) -> list[dict[str, Any]]:
    if not items:
        return examples[:max_items]
    chosen = []
    for wanted in items:
        hits = [e for e in examples if e["item"] == wanted] or [e for e in examples if wanted in e["item"]]
        if not hits:
            known = ", ".join(e["item"] for e in examples[:6])
            raise ValueError(f"no saved example matches {wanted!r}; saved examples: {known}"
                             f"{' ...' if len(examples) > 6 else ''}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


@dataclass(frozen=True)
class GridCell:
    """One face of :func:`plot_grid`: the PNG (relative to the run folder; ``None`` for an empty cell) and the
    text written under it."""

    image: str | None
    caption: str
    kind: str  # "clean", "probe" or "blank"


@dataclass(frozen=True)
class GridLayout:
    headers: list[str]
    row_labels: list[str]
    cells: list[list[GridCell]]
    header_colours: list[str]


def grid_layout(record: dict[str, Any], *, items: Sequence[str] | None = None, max_items: int = 3,
                scales: Sequence[int] | None = None, max_columns: int = 8) -> GridLayout:
    """What :func:`plot_grid` draws, without drawing: which PNG goes in which cell and the caption under it
    (``cos 0.912``: the probe's cosine to its clean face, ``identity.per_item`` of that condition)."""
    examples = record.get("examples") or []
    if not examples:
        raise MissingDataError("results.json has no saved examples; rerun `restorever eval` with --examples N (N > 0)")
    chosen = _select_examples(examples, items, max_items)
    run_scales = _scales_of([record])
    scales = list(scales) if scales else run_scales
    missing = [s for s in scales if s not in run_scales]
    if missing:
        raise ValueError(f"scale(s) {missing} not in this run (it has {run_scales})")
    if not scales:
        raise MissingDataError("nothing to show: the run has no degraded scales")
    restorers = [r for r in dict.fromkeys(c["restorer"] for c in record["conditions"] if c.get("scale") is not None)
                 if r != "none"]
    methods = ["degraded", *restorers]
    per_item = {(c["restorer"], c.get("scale")): (c.get("identity") or {}).get("per_item") or {}
                for c in record["conditions"]}

    def clean(e: dict[str, Any]) -> GridCell:
        person = Path(e["item"]).parent.name or Path(e["item"]).stem
        return GridCell(e.get("clean"), person.replace("_", " ")[:18], "clean")

    def probe(e: dict[str, Any], scale: int, method: str) -> GridCell:
        cos = per_item.get(("none" if method == "degraded" else method, scale), {}).get(e["item"])
        return GridCell(e["images"].get(f"x{scale}/{method}"), "" if cos is None else f"cos {cos:.3f}", "probe")

    def colour(method: str) -> str:
        return restorer_colour(method) if method in restorers else "black"

    if 1 + len(scales) * len(methods) <= max_columns:  # wide: one row per probe
        return GridLayout(["clean"] + [f"x{s} {m}" for s in scales for m in methods], ["" for _ in chosen],
                          [[clean(e)] + [probe(e, s, m) for s in scales for m in methods] for e in chosen],
                          ["black"] + [colour(m) for s in scales for m in methods])
    cells, labels = [], []
    for e in chosen:  # tall: one row per (probe, scale), the clean face on the probe's first row
        for i, s in enumerate(scales):
            cells.append([clean(e) if i == 0 else GridCell(None, "", "blank")] + [probe(e, s, m) for m in methods])
            labels.append(f"x{s}")
    return GridLayout(["clean", *methods], labels, cells, ["black"] + [colour(m) for m in methods])


def plot_grid(record: dict[str, Any], run_dir: str | Path, out: str | Path, *, items: Sequence[str] | None = None,
              max_items: int = 3, scales: Sequence[int] | None = None, thumb: int = 160,
              max_columns: int = 8) -> Path:
    """Image grid of saved example probes with each one's cosine similarity to its clean face
    (``identity.per_item``, from the run's recognizer) written under it.

    Wide layout (when ``1 + scales x (1 + restorers) <= max_columns``): one row per probe, columns
    ``clean | x4 degraded | x4 restorer ... | x8 degraded | ...``. Tall layout otherwise: one row per (probe, scale),
    columns ``clean | degraded | each restorer``, the clean face shown on the probe's first row only
    (see :func:`grid_layout`).

    Args:
        record: the run's results; ``record["examples"]`` names PNGs relative to ``run_dir``.
        items: image ids (or parts of them, e.g. a person's name) to show; default the first ``max_items``.
        scales: scales to show (default all the run has).
        thumb: pixels per face in the figure (the 512 crops are downsampled).
    """
    import numpy as np
    from PIL import Image

    _check_output(out)
    run_dir = Path(run_dir)
    layout = grid_layout(record, items=items, max_items=max_items, scales=scales, max_columns=max_columns)

    def load(rel: str):
        import io

        from ..images import read_file_bytes, safe_join

        if not isinstance(rel, str):
            raise UnsafePathError(f"{run_dir}/results.json: example image path {rel!r} is not a string")
        path = safe_join(run_dir, rel, what="example image in results.json")  # never a file outside the run folder
        if not path.is_file():
            raise MissingDataError(f"{path}: example image missing (results.json names it; was the run folder "
                                   "moved without its examples/ folder?)")
        try:
            with Image.open(io.BytesIO(read_file_bytes(path))) as im:
                return np.asarray(im.convert("RGB").resize((thumb, thumb), Image.LANCZOS))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise MissingDataError(f"{path}: example image cannot be read ({type(exc).__name__}: {exc})") from None

    cell = 0.9
    nrows, ncols = len(layout.cells), len(layout.headers)
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols + 0.15, (cell + 0.17) * nrows + 0.12),
                             squeeze=False, gridspec_kw={"wspace": 0.03, "hspace": 0.2})
    for r, row in enumerate(layout.cells):
        for c, item in enumerate(row):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if item.image is not None:
                ax.imshow(load(item.image), interpolation="lanczos")
            elif item.kind != "blank":
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=7, color="0.5", transform=ax.transAxes)
            ax.set_xlabel(item.caption, fontsize=6.5, labelpad=1.5)
            if r == 0:
                ax.set_title(layout.headers[c], fontsize=7, pad=3, color=layout.header_colours[c])
            if c == 1 and layout.row_labels[r]:
                ax.set_ylabel(layout.row_labels[r], fontsize=7.5, labelpad=2)
    fig.subplots_adjust(left=0.02, right=0.99, top=1 - 0.2 / fig.get_figheight(), bottom=0.02)
    return _save(fig, plt, out, tight=False)


# ---------------------------------------------------------------------------------------------------------------
# retrieval


#: CMC variants of an identification condition: (key under ``retrieval``, legend suffix, marker, filled)
CMC_VARIANTS = (("", "", "o", True), ("filtered", " (filtered)", "s", False),
                ("filtered_reweighted", " (filtered, reweighted)", "^", False))


def _cmc_of(cond: dict[str, Any], key: str) -> list[float] | None:
    retrieval = cond.get("retrieval") or {}
    section = retrieval if not key else (retrieval.get(key) or {})
    curve = section.get("cmc")
    return [float(x) if x is not None else float("nan") for x in curve] if curve else None


def plot_cmc(records: Sequence[dict[str, Any]], out: str | Path, *, max_rank: int | None = None,
             scales: Sequence[int] | None = None, restorers: Sequence[str] | None = None) -> Path:
    """Cumulative match characteristic: identification rate at rank k (``conditions[].retrieval.cmc``, fractions
    for ranks 1, 2, ...) for every condition that has one; attribute-filtered searches
    (``retrieval.filtered.cmc``, ``retrieval.filtered_reweighted.cmc``) in the same colour and line style with
    hollow square / triangle markers. Conditions without a ``retrieval`` section are skipped;
    :class:`MissingDataError` when none has one. ``scales`` / ``restorers`` keep only those conditions (and the
    clean one)."""
    _check_output(out)
    _check_wanted(records, scales, restorers)
    curves = [(record, c) for record in records for c in record["conditions"]
              if _cmc_of(c, "") and _keep(c, scales, restorers)]
    if not curves:
        raise MissingDataError("no condition has a retrieval section (conditions[].retrieval.cmc): the CMC curve "
                               "needs an identification run (`restorever ident`)")
    skipped = sum(len(r["conditions"]) for r in records) - len(curves)
    if skipped:
        log.info("plot_cmc: %d condition(s) without retrieval.cmc skipped", skipped)
    fig, ax, plt = _figure(COLUMN_WIDTH, 2.8)
    scales = _scales_of(records)
    longest = 1
    for record, cond in curves:
        colour = condition_colour(cond, scales)
        style = scale_style(cond.get("scale"), scales)[0]
        for key, suffix, marker, filled in CMC_VARIANTS:
            cmc = _cmc_of(cond, key)
            if not cmc:
                continue
            cmc = cmc[: max_rank or None]
            longest = max(longest, len(cmc))
            ax.plot(range(1, len(cmc) + 1), [100 * x for x in cmc], linestyle=style, color=colour,
                    lw=1.2 if filled else 0.8, marker=marker if len(cmc) <= 20 else None, ms=2.8,
                    mfc=colour if filled else "white", mec=colour, mew=0.7,
                    label=f"{_prefix(record, records)}{condition_label(cond)}{suffix} (rank-1 {100 * cmc[0]:.1f} %)")
    if longest > 20:
        ax.set_xscale("log")
    ax.set_xlim(1, max(2, longest))
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (%)")
    ax.grid(True, which="both", alpha=0.25, lw=0.4)
    _legend(fig, ax, 2.8)
    return _save(fig, plt, out)


# ---------------------------------------------------------------------------------------------------------------
# all figures of a run

FIGURES = ("roc", "scales", "similarity", "grid", "cmc")


def plot_all(record: dict[str, Any], run_dir: str | Path, out_dir: str | Path, *,
             formats: Sequence[str] = ("png",), prefix: str = "") -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Every figure of one run into ``out_dir`` as ``{prefix}{name}.{format}``.

    Returns ``(written, skipped)``: ``written[name]`` lists the files, ``skipped[name]`` says why a figure was left
    out (no scales, no examples). Figures of the other task are in neither: a verification run has no CMC curve and
    an identification run no ROC, accuracy-against-scale or score-distribution figure.
    """
    out_dir = Path(out_dir)
    fmts = [f if f.startswith(".") else "." + f for f in formats]
    for f in fmts:
        _check_output(Path("x" + f))
    has_scales = bool(_scales_of([record]))
    verified = any(c.get("verification") for c in record["conditions"])
    makers = {
        "roc": lambda p: plot_roc([record], p),
        "scales": lambda p: plot_scales([record], p),
        "similarity": lambda p: plot_similarity(record, p),
        "grid": lambda p: plot_grid(record, run_dir, p),
        "cmc": lambda p: plot_cmc([record], p),
    }
    written: dict[str, list[Path]] = {}
    skipped: dict[str, str] = {}
    identified = any(c.get("retrieval") for c in record["conditions"])
    for name in FIGURES:
        if (name in ("roc", "scales", "similarity") and not verified) or (name == "cmc" and not identified):
            continue
        if name == "scales" and not has_scales:
            skipped[name] = "the run has no degraded scales"
            continue
        try:
            written[name] = [makers[name](out_dir / f"{prefix}{name}{f}") for f in fmts]
        except MissingDataError as exc:
            skipped[name] = str(exc)
            log.info("figure %s skipped: %s", name, exc)
    return written, skipped

"""Figures from results records (matplotlib, Agg). Nothing here computes a metric: every number drawn is read from
``results.json`` (and the example PNGs a run saved for :func:`plot_grid`).

Conventions, so that the figures sit together in a paper:

- one colour and one marker shape per restorer in every figure (:func:`restorer_colour`, :func:`restorer_marker`),
  and a hatch where restorers share a panel of areas (:func:`restorer_hatch`, score distributions), so that
  restorers stay apart in a greyscale print; the clean condition is black (in the ROC and CMC figures a
  wide, light black band under the other curves);
- the degradation scale is drawn with a line style and a lighter shade of the restorer's colour, in the same order
  in every figure (:func:`scale_style`);
- sizes fit a single paper column (3.5 in) with 7-8 pt text; the image grid fits a column up to four faces a row
  and a page (:data:`.figure_io.PAGE_WIDTH`) beyond;
- the output format follows the file suffix: ``.png`` (300 dpi), ``.pdf`` (TrueType fonts embedded) or ``.svg``.

This module draws the ROC, accuracy-against-scale, score-distribution and CMC figures and :func:`plot_all`; what they
share lives beside it: :mod:`.figure_io` (formats, saving, input checks), :mod:`.figure_style` (colours, line
styles), :mod:`.run_names` (several runs in one figure) and :mod:`.grid` (the example image grid). Their public names
are importable from here too.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from ..errors import RestoreverError
from .figure_io import (COLUMN_WIDTH, FORMATS, MissingDataError, check_output, check_positive, new_figure, paper_style,
                        require_verification, save_figure)
from .figure_style import (CLEAN_COLOUR, CLEAN_LINE, CLEAN_WIDTH_FACTOR, RESTORER_COLOURS, condition_colour,
                           condition_marker, line_style, restorer_colour, restorer_hatch, restorer_marker,
                           scale_style, scales_of)
from .grid import GridCell, GridLayout, grid_layout, plot_grid
from .labels import condition_label, figure_label, figure_restorer_name
from .run_names import legend_prefixes, record_names

__all__ = [
    # drawn here
    "plot_roc", "plot_scales", "plot_similarity", "plot_cmc", "plot_all", "clipped_error_bars", "recognizer_title",
    "legend_below",
    "finite_thresholds", "score_axis_label", "SCORE_NAMES", "curve_marker_points", "CURVE_MARKERS",
    "RECORD_FILLS",
    "SENTINEL_THRESHOLD", "SCALE_DODGE", "DIFFERENT_DASHES", "CMC_VARIANTS", "FIGURES", "VERIFICATION_FIGURES",
    # from figure_io, figure_style, run_names and grid, so that ``from restorever.reports.plots import X`` keeps working
    "MissingDataError", "FORMATS", "COLUMN_WIDTH", "RESTORER_COLOURS", "CLEAN_COLOUR", "CLEAN_LINE",
    "CLEAN_WIDTH_FACTOR", "restorer_colour", "scale_style", "condition_colour", "record_names", "GridCell",
    "GridLayout", "grid_layout", "plot_grid",
]

log = logging.getLogger(__name__)


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


def legend_below(fig, ax, height: float) -> None:
    """The legend below the axes, outside them, so that it never covers a curve (on a log-FAR axis strongly degraded
    ROC curves run through every inside corner); one column for a few entries, two for more, the figure growing
    taller by the legend's rows so that the axes keep their size at column width."""
    n = len(ax.get_legend_handles_labels()[1])
    ncol = 1 if n <= 3 else 2
    fig.set_size_inches(COLUMN_WIDTH, height + 0.3 + 0.11 * -(-n // ncol))
    ax.legend(loc="upper center", bbox_to_anchor=(0.45, -0.2), ncol=ncol, frameon=False, fontsize=5.5,
              handlelength=2.8, columnspacing=1.0)


def recognizer_title(records: Sequence[dict[str, Any]]) -> str:
    """``"recognizer NAME"`` when every condition of the records was embedded by one recognizer (the legend title
    of each figure, so that a figure copied on its own still says which recognizer it shows), else ``""`` (the
    legend prefixes of :func:`record_names` then name the recognizers)."""
    names = {c.get("recognizer") or (r.get("config") or {}).get("recognizer")
             for r in records for c in r["conditions"]} - {None}
    return f"recognizer {names.pop()}" if len(names) == 1 else ""


def _legend_title(ax, text: str) -> None:
    """Give the axes' legend the title ``text`` (nothing when empty), in the legend's font size."""
    if text:
        ax.get_legend().set_title(text, prop={"size": 5.5})


@paper_style
def plot_roc(records: Sequence[dict[str, Any]], out: str | Path, *, fars: Sequence[float] = (1e-3, 1e-2),
             scales: Sequence[int] | None = None, restorers: Sequence[str] | None = None,
             names: Sequence[str] | None = None) -> Path:
    """ROC curves of every condition of every record: log-scale false-accept axis, AUC in the legend, a marker at
    each stored TAR@FAR in ``fars``. Colour and marker shape = restorer (a few markers along each degraded curve,
    :func:`curve_marker_points`, so that restorers stay apart in greyscale), line style and shade = scale; the clean
    curve is a wide light black band under the others. Several records are told apart by a prefix in the legend
    (:func:`record_names`; ``names``, e.g. the run folders, when given) and a thinner line; a warning is logged when
    they evaluated different pair sets. ``scales`` / ``restorers`` keep only those conditions (and the clean one).
    The legend sits below the axes, so that it covers no curve."""
    check_output(out)
    require_verification(records, "the ROC figure")
    _check_wanted(records, scales, restorers)
    prefixes = legend_prefixes(records, names)
    conds = [(r_index, c) for r_index, record in enumerate(records) for c in record["conditions"]
             if c.get("verification") and _keep(c, scales, restorers)]
    fig, ax = new_figure(COLUMN_WIDTH, 2.8)
    all_scales = scales_of(records)
    positive = [x for _, c in conds for x in c["verification"]["roc"]["fpr"] if x > 0]
    low = max(1e-4, min(min(positive, default=1.0), 1e-2) / 2)  # the FAR axis' left end
    series = list(dict.fromkeys(c["restorer"] for _, c in conds if c.get("scale") is not None))
    for r_index, cond in conds:
        ver = cond["verification"]
        roc = ver["roc"]
        fpr = [max(x, 1e-6) for x in roc["fpr"]]
        auc = ver.get("auc")
        style = line_style(cond, all_scales, 1.4 if r_index == 0 else 0.8)
        label = prefixes[r_index] + figure_label(cond) + (f" (AUC {auc:.3f})" if auc is not None else "")
        colour = condition_colour(cond, all_scales)
        marks = {"marker": condition_marker(cond), "ms": 3, "mfc": colour, "mec": "white", "mew": 0.4}
        degraded = cond.get("scale") is not None  # the clean band needs no marker along it
        ax.plot(fpr, roc["tpr"], label=label, markevery=[], **(marks if degraded else {}), **style)
        if degraded:
            xs, ys = curve_marker_points(fpr, roc["tpr"], low, series.index(cond["restorer"]), len(series))
            ax.plot(xs, ys, ls="none", zorder=2.5, **marks)
        for far in fars:
            tar = ver["tar_at_far"].get(f"{far:g}")
            if tar is not None:
                ax.plot([far], [tar], ls="none", zorder=3, **marks)
    for far in fars:
        ax.axvline(far, color="0.6", lw=0.5, ls=":", zorder=0)
    ax.set_xscale("log")
    ax.set_xlim(low, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(True, which="major", alpha=0.25, lw=0.4)
    legend_below(fig, ax, 2.8)
    _legend_title(ax, recognizer_title(records))
    return save_figure(fig, out, records=records)


#: restorer markers along each ROC curve, spread evenly over the FAR axis' decades (staggered between restorers)
CURVE_MARKERS = 4


def curve_marker_points(fpr: Sequence[float], tpr: Sequence[float], low: float, index: int, count: int
                        ) -> tuple[list[float], list[float]]:
    """``(far, tar)`` of :data:`CURVE_MARKERS` points on a ROC curve as drawn on the log-FAR axis from ``low`` to 1
    (straight segments between the stored points in log FAR), so that the restorer's marker shape tells its curve
    apart in greyscale; the ``index``-th of ``count`` restorers is shifted by ``index / count`` of the spacing, so
    that markers of curves lying on one another do not hide each other."""
    import numpy as np

    log_fpr = np.log10(np.maximum(np.asarray(fpr, dtype=float), 1e-300))
    steps = (np.arange(CURVE_MARKERS) + (index + 0.5) / max(count, 1)) / CURVE_MARKERS
    log_x = np.log10(low) * (1 - steps)
    return (10 ** log_x).tolist(), np.interp(log_x, log_fpr, np.asarray(tpr, dtype=float)).tolist()


def _fold_count_text(records: Sequence[dict[str, Any]]) -> str:
    """``"10 folds"`` when every drawn condition has the same number of fold accuracies, else ``"folds"``."""
    counts = {len(c["verification"].get("fold_accuracies") or []) for r in records for c in r["conditions"]
              if c.get("verification")}
    return f"{counts.pop()} folds" if len(counts) == 1 and 0 not in counts else "folds"


#: marker fill of the records overlaid in one accuracy-against-scale figure (the shape is the restorer's)
RECORD_FILLS = ("full", "left", "bottom", "right", "top")

#: horizontal spread (in octaves of the scale axis) between the error bars of the series drawn at one scale
SCALE_DODGE = 0.06


@paper_style
def plot_scales(records: Sequence[dict[str, Any]], out: str | Path, *, names: Sequence[str] | None = None,
                described: Sequence[dict[str, Any]] | None = None) -> Path:
    """Verification accuracy (%, mean ± population std over folds as error bars, the legend title saying so)
    against the degradation scale on a log-2 axis, one line per restorer, the clean accuracy as a dashed reference
    line. The series are shifted apart by :data:`SCALE_DODGE` octaves at each scale so that their error bars do
    not hide one another. Several records are told apart as in :func:`plot_roc` (legend prefix); the
    legend sits below the axes. Marker shape = restorer (as in every figure), its fill = record: full for the first,
    half-white for the others. :class:`MissingDataError` when no record has a degraded scale. ``described``: the
    runs the file's metadata describes, when ``records`` is one made of several (``compare``'s merged record)."""
    check_output(out)
    require_verification(records, "the accuracy-against-scale figure")
    all_scales = scales_of(records)
    if not all_scales:
        raise MissingDataError("the accuracy-against-scale figure needs degraded conditions: the run has no "
                               "degraded scales")
    prefixes = legend_prefixes(records, names)
    fig, ax = new_figure(COLUMN_WIDTH, 2.7)
    series = [(r_index, name) for r_index, record in enumerate(records)
              for name in dict.fromkeys(c["restorer"] for c in record["conditions"]
                                        if c.get("verification") and c.get("scale") is not None)]
    for r_index, record in enumerate(records):
        prefix = prefixes[r_index]
        conds = [c for c in record["conditions"] if c.get("verification")]
        clean = [c for c in conds if c.get("scale") is None]
        if clean:
            acc = 100 * clean[0]["verification"]["accuracy_mean"]
            ax.axhline(acc, color=CLEAN_COLOUR, ls="--", lw=0.8, alpha=1.0 if r_index == 0 else 0.5,
                       label=f"{prefix}clean ({acc:.2f} %)")
        for name in dict.fromkeys(c["restorer"] for c in conds if c.get("scale") is not None):
            pts = sorted((c["scale"], c["verification"]) for c in conds
                         if c["restorer"] == name and c.get("scale") is not None)
            shift = 2 ** (SCALE_DODGE * (series.index((r_index, name)) - (len(series) - 1) / 2))
            xs = [p[0] * shift for p in pts]
            ys = [100 * p[1]["accuracy_mean"] for p in pts]
            es = clipped_error_bars(ys, [100 * p[1]["accuracy_std"] for p in pts])
            ax.errorbar(xs, ys, yerr=es, marker=restorer_marker(name), ms=3.5, capsize=2, lw=1.2, elinewidth=0.7,
                        fillstyle=RECORD_FILLS[r_index % len(RECORD_FILLS)], mfc=restorer_colour(name),
                        mfcalt="white", color=restorer_colour(name), label=prefix + figure_restorer_name(name))
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_scales)
    ax.set_xticklabels([f"x{s}" for s in all_scales])
    ax.minorticks_off()
    ax.set_xlim(all_scales[0] / 2 ** 0.4, all_scales[-1] * 2 ** 0.4)
    ax.set_xlabel("degradation scale (of a 512 px face)")
    ax.set_ylabel("verification accuracy (%)")
    ax.grid(True, alpha=0.25, lw=0.4)
    legend_below(fig, ax, 2.7)
    bars = f"error bars: ± std over {_fold_count_text(records)}"
    _legend_title(ax, "; ".join(t for t in (recognizer_title(records), bars) if t))
    return save_figure(fig, out, records=records if described is None else described)


def clipped_error_bars(values: Sequence[float], spreads: Sequence[float], low: float = 0.0,
                       high: float = 100.0) -> list[list[float]]:
    """``[lower, upper]`` error-bar lengths of ``values ± spreads`` cut at ``[low, high]`` (an accuracy of 99 % ±
    3 % is drawn up to 100 %, not 102 %), in the form ``Axes.errorbar(yerr=...)`` takes."""
    return [[min(e, v - low) for v, e in zip(values, spreads)], [min(e, high - v) for v, e in zip(values, spreads)]]


# ---------------------------------------------------------------------------------------------------------------
# score distributions


#: thresholds at or beyond this magnitude are the "all same" / "all different" sentinels (±1.797e308)
SENTINEL_THRESHOLD = 1e308


def _pair_scores(cond: dict[str, Any], index: int) -> tuple[Any, Any]:
    """``(score, same)`` arrays of ``conditions[index].scores``, after checking that its arrays have equal
    lengths (a results.json edited by hand would otherwise fail deep inside numpy)."""
    import numpy as np

    scores = cond["scores"]
    lengths = {key: len(scores.get(key) or []) for key in ("score", "same", "fold")}
    if len(set(lengths.values())) > 1:
        text = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise RestoreverError(f"results.json: conditions[{index}].scores: arrays of different lengths ({text} "
                              "entries); run `restorever validate` on the run folder")
    return np.asarray(scores["score"], dtype=float), np.asarray(scores["same"]).astype(bool)


def finite_thresholds(thresholds: Sequence[float] | None) -> list[float]:
    """The fold thresholds without the non-finite and ``±1.797e308`` ("all same" / "all different") sentinels."""
    import math

    return [float(t) for t in thresholds or () if math.isfinite(float(t)) and abs(float(t)) < SENTINEL_THRESHOLD]


def _score_edges(scores: Any, bins: int) -> Any:
    """``bins + 1`` histogram edges over the finite scores (widened around a constant score)."""
    import numpy as np

    finite = scores[np.isfinite(scores)]
    if not finite.size:
        raise MissingDataError("results.json has no finite per-pair score to draw")
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        pad = max(abs(low) * 0.05, 1e-3)
        low, high = low - pad, high + pad
    return np.linspace(low, high, bins + 1)


def _draw_threshold(ax, cond: dict[str, Any], colour: Any, marker: str | None = None) -> bool:
    """A dotted line at the mean of the condition's finite fold thresholds (with ``marker`` near its top, where
    several restorers share the panel); when every fold's threshold is a sentinel, a ``<`` marker at the left edge
    instead (the threshold lies below every score). Returns whether the ``<`` marker was drawn."""
    thresholds = cond["verification"].get("thresholds") or []
    finite = finite_thresholds(thresholds)
    if finite:
        mean = sum(finite) / len(finite)
        ax.axvline(mean, color=colour, ls=":", lw=0.8)
        if marker:
            ax.plot([mean], [0.94], marker=marker, ms=3, color=colour, ls="none", clip_on=False,
                    transform=ax.get_xaxis_transform())
        return False
    if thresholds:
        ax.plot([0.0], [0.92], marker="<", ms=4, color=colour, ls="none", clip_on=False,
                transform=ax.transAxes)
        log.info("similarity figure: %s has no finite fold threshold (every fold accepts all pairs)",
                 condition_label(cond))
        return True
    return False


def _draw_histograms(ax, score: Any, same: Any, edges: Any, colour: Any, overlaid: bool,
                     look: tuple[str | None, str | None] = (None, None)) -> None:
    """Same-person and different-people histograms of one condition (see :func:`plot_similarity`); ``look`` is
    the condition's ``(hatch, marker)`` where several restorers share a panel: the same-person area is hatched and
    the marker sits on the peak of each histogram, so that a greyscale print keeps the restorers apart."""
    hatch, marker = look
    if same.any():
        if overlaid:
            density, _, _ = ax.hist(score[same], bins=edges, density=True, histtype="stepfilled", fill=False,
                                    edgecolor=colour, lw=0.8, hatch=hatch, hatch_linewidth=0.4)
            _mark_peak(ax, density, edges, colour, marker)
        else:
            ax.hist(score[same], bins=edges, density=True, histtype="stepfilled", color=colour, alpha=0.35, lw=0)
    if (~same).any():
        density, _, _ = ax.hist(score[~same], bins=edges, density=True, histtype="step", color=colour, lw=0.8,
                                ls=DIFFERENT_DASHES if overlaid else "-")
        if overlaid:
            _mark_peak(ax, density, edges, colour, marker)


def _mark_peak(ax, density: Any, edges: Any, colour: Any, marker: str | None) -> None:
    """``marker`` on the highest bin of a histogram (the first such bin), at its centre."""
    import numpy as np

    if marker:
        i = int(np.argmax(density))
        ax.plot([(edges[i] + edges[i + 1]) / 2], [density[i]], marker=marker, ms=3.5, color=colour, ls="none")


#: line style of the different-people outline when several restorers share a panel
DIFFERENT_DASHES = (0, (2.5, 1.2))


def _show_bottom_tick_labels(axes: Any, n_panels: int) -> None:
    """Hide the unused axes and keep x tick labels on the lowest visible panel of each column (``sharex`` hides
    them on every row but the last, also above a hidden panel)."""
    flat = axes.ravel()
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    for column in axes.T:
        visible = [ax for ax in column if ax.get_visible()]
        if visible:
            visible[-1].tick_params(axis="x", labelbottom=True)


def _similarity_handles(conds: Sequence[dict[str, Any]], overlaid: bool, below_all: bool) -> list[Any]:
    """Legend handles of :func:`plot_similarity`."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if overlaid:
        handles = [Line2D([], [], color="0.2", lw=0.8, label="same person"),
                   Line2D([], [], color="0.2", lw=0.8, ls=DIFFERENT_DASHES, label="different people")]
    else:
        handles = [Patch(facecolor="0.55", alpha=0.5, lw=0, label="same person"),
                   Patch(facecolor="none", edgecolor="0.2", lw=0.8, label="different people")]
    handles.append(Line2D([], [], color="0.2", ls=":", lw=0.8, label="mean threshold"))
    if below_all:
        handles.append(Line2D([], [], color="0.2", marker="<", ms=4, ls="none", label="threshold below all scores"))
    names = dict.fromkeys(c["restorer"] for c in conds if c.get("scale") is not None)
    if not overlaid:
        return handles + [Line2D([], [], color=restorer_colour(name), lw=3, label=figure_restorer_name(name))
                          for name in names]
    return handles + [(Patch(fill=False, edgecolor=restorer_colour(name), hatch=restorer_hatch(name), lw=0.8,
                             hatch_linewidth=0.4, label=figure_restorer_name(name)),
                       Line2D([], [], color=restorer_colour(name), marker=restorer_marker(name), ms=3.5, ls="none"))
                      for name in names]


def _handle_label(handle: Any) -> str:
    """A legend handle's label; a ``(hatched patch, marker)`` pair's is its patch's."""
    return (handle[0] if isinstance(handle, tuple) else handle).get_label()


#: what a pair score is, by the ``similarity`` a condition records (``restorever.metrics.similarity``)
SCORE_NAMES = {"cosine": "cosine similarity", "euclidean": "minus the Euclidean distance"}


def score_axis_label(conds: Sequence[dict[str, Any]]) -> str:
    """The score axis label: names the score when every condition records the same known ``similarity``."""
    kinds = {c.get("similarity") for c in conds}
    name = SCORE_NAMES.get(kinds.pop()) if len(kinds) == 1 else None
    return f"pair score: {name} (higher = more alike)" if name else "pair score (higher = more alike)"


@paper_style
def plot_similarity(record: dict[str, Any], out: str | Path, *, bins: int = 40, ncols: int = 2) -> Path:
    """Genuine (same person) and impostor (different people) pair-score distributions: one panel per scale (clean
    first), one colour per restorer (the clean panel black), shared score axis whose limits come from the scores
    alone; a dotted line at each condition's mean fold threshold, the "all same" sentinel folds left out (a ``<``
    at the left edge when every fold is one). Densities are normalised per class. With one restorer (one condition
    per panel) the same-person histogram is filled and the different-people one a solid outline; with several
    restorers both are outlines, same person solid and hatched and different people dashed, and each restorer has
    its own hatch (:func:`restorer_hatch`) and its marker (:func:`restorer_marker`, as in the other figures) on the
    peak of both its histograms and at the top of its threshold line, so that the restorers stay apart in a
    greyscale print. The lowest visible panel of each column keeps its x tick labels."""
    import numpy as np

    check_output(out)
    check_positive(bins, "bins")
    check_positive(ncols, "ncols")
    require_verification([record], "the score-distribution figure")
    conds = [(i, c) for i, c in enumerate(record["conditions"]) if c.get("scores") and c.get("verification")]
    if not conds:
        raise MissingDataError("results.json has no per-pair scores (conditions[].scores); rerun `restorever eval`")
    data = {i: _pair_scores(c, i) for i, c in conds}
    scales = scales_of([record])
    panels: list[int | None] = ([None] if any(c.get("scale") is None for _, c in conds) else []) + scales
    edges = _score_edges(np.concatenate([score for score, _ in data.values()]), bins)
    overlaid = max(sum(c.get("scale") == p for _, c in conds) for p in panels) > 1  # several restorers per panel
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = new_figure(COLUMN_WIDTH, 0.35 + 1.3 * nrows, nrows=nrows, ncols=ncols, sharex=True, squeeze=False)
    below_all = False
    for ax, scale in zip(axes.ravel(), panels):
        for i, cond in ((i, c) for i, c in conds if c.get("scale") == scale):
            colour = CLEAN_COLOUR if scale is None else restorer_colour(cond["restorer"])
            look = (None, None) if not overlaid or scale is None else (restorer_hatch(cond["restorer"]),
                                                                       restorer_marker(cond["restorer"]))
            _draw_histograms(ax, *data[i], edges, colour, overlaid, look)
            below_all |= _draw_threshold(ax, cond, colour, look[1])
        ax.set_title("clean" if scale is None else f"x{scale}", pad=2)
        ax.tick_params(labelleft=False, left=False)
        ax.grid(True, axis="x", alpha=0.25, lw=0.4)
    margin = 0.02 * (edges[-1] - edges[0])  # shared: the scores set the axis, never a threshold line
    axes[0, 0].set_xlim(edges[0] - margin, edges[-1] + margin)
    _show_bottom_tick_labels(axes, len(panels))
    for row in axes:
        row[0].set_ylabel("density")
    fig.supxlabel(score_axis_label([c for _, c in conds]), fontsize=8)
    handles = _similarity_handles([c for _, c in conds], overlaid, below_all)
    fig.legend(handles=handles, labels=[_handle_label(h) for h in handles], loc="lower center",
               bbox_to_anchor=(0.5, 1.0), ncol=min(3, len(handles)), frameon=False,
               title=recognizer_title([record]) or None, title_fontsize=6.5)
    return save_figure(fig, out, records=[record])


# ---------------------------------------------------------------------------------------------------------------
# retrieval


#: CMC variants of an identification condition: (key under ``retrieval``, legend suffix, marker fill); the marker
#: shape is the condition's (:func:`condition_marker`)
CMC_VARIANTS = (("", "", "full"), ("filtered", " (filtered)", "none"),
                ("filtered_reweighted", " (filtered, reweighted)", "bottom"))


def _cmc_of(cond: dict[str, Any], key: str) -> list[float] | None:
    retrieval = cond.get("retrieval") or {}
    section = retrieval if not key else (retrieval.get(key) or {})
    curve = section.get("cmc")
    return [float(x) if x is not None else float("nan") for x in curve] if curve else None


@paper_style
def plot_cmc(records: Sequence[dict[str, Any]], out: str | Path, *, max_rank: int | None = None,
             scales: Sequence[int] | None = None, restorers: Sequence[str] | None = None,
             names: Sequence[str] | None = None) -> Path:
    """Cumulative match characteristic: identification rate at rank k (``conditions[].retrieval.cmc``, fractions
    for ranks 1, 2, ...) for every condition that has one; attribute-filtered searches
    (``retrieval.filtered.cmc``, ``retrieval.filtered_reweighted.cmc``) in the same colour, line style and marker
    shape (the restorer's, as in every figure; a star for clean), the marker hollow (filtered) or half-filled
    (filtered, reweighted) and the line thinner; markers at each rank up to rank 20. Conditions without a
    ``retrieval`` section are skipped; :class:`MissingDataError` when none has one. ``scales`` / ``restorers`` keep
    only those conditions (and the clean one). Several records are told apart by a legend prefix
    (:func:`record_names`, ``names``); the clean curve is a wide light black band and the legend sits below the
    axes, as in :func:`plot_roc`."""
    check_output(out)
    _check_wanted(records, scales, restorers)
    curves = [(r_index, c) for r_index, record in enumerate(records) for c in record["conditions"]
              if _cmc_of(c, "") and _keep(c, scales, restorers)]
    if not curves:
        raise MissingDataError("no condition has a retrieval section (conditions[].retrieval.cmc): the CMC curve "
                               "needs an identification run (`restorever ident`)")
    skipped = sum(1 for r in records for c in r["conditions"] if not _cmc_of(c, ""))  # not those left out on purpose
    if skipped:
        log.info("plot_cmc: %d condition(s) without retrieval.cmc skipped", skipped)
    prefixes = legend_prefixes(records, names)
    fig, ax = new_figure(COLUMN_WIDTH, 2.8)
    scales = scales_of(records)
    longest = 1
    for r_index, cond in curves:
        colour = condition_colour(cond, scales)
        for key, suffix, fill in CMC_VARIANTS:
            cmc = _cmc_of(cond, key)
            if not cmc:
                continue
            cmc = cmc[: max_rank or None]
            longest = max(longest, len(cmc))
            label = f"{prefixes[r_index]}{figure_label(cond)}{suffix} (rank-1 {100 * cmc[0]:.1f} %)"
            ax.plot(range(1, len(cmc) + 1), [100 * x for x in cmc], **line_style(cond, scales, 0.8 if key else 1.2),
                    marker=condition_marker(cond), markevery=None if len(cmc) <= 20 else [], ms=3, fillstyle=fill,
                    mfc=colour, mfcalt="white", mec=colour, mew=0.7, label=label)
    if longest > 20:
        ax.set_xscale("log")
    ax.set_xlim(1, max(2, longest))
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (%)")
    ax.grid(True, which="both", alpha=0.25, lw=0.4)
    legend_below(fig, ax, 2.8)
    _legend_title(ax, recognizer_title(records))
    return save_figure(fig, out, records=records)


# ---------------------------------------------------------------------------------------------------------------
# all figures of a run

FIGURES = ("roc", "scales", "similarity", "grid", "cmc")
#: figures of a pair-verification run (left out of :func:`plot_all` for an identification run)
VERIFICATION_FIGURES = ("roc", "scales", "similarity", "grid")


def plot_all(record: dict[str, Any], run_dir: str | Path, out_dir: str | Path, *,
             formats: Sequence[str] = ("png",), prefix: str = "") -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Every figure of one run into ``out_dir`` as ``{prefix}{name}.{format}``.

    Returns ``(written, skipped)``: ``written[name]`` lists the files, ``skipped[name]`` says why a figure was left
    out (no scales, no examples). Figures of the other task are in neither: a verification run has no CMC curve and
    an identification run no ROC, accuracy-against-scale, score-distribution or example-grid figure.
    """
    out_dir = Path(out_dir)
    fmts = [f if f.startswith(".") else "." + f for f in formats]
    for f in fmts:
        check_output(Path("x" + f))
    has_scales = bool(scales_of([record]))
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
        if (name in VERIFICATION_FIGURES and not verified) or (name == "cmc" and not identified):
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

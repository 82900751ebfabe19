"""Figures from results records (matplotlib, Agg). Nothing here computes a metric."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .results import condition_label

#: one colour per restorer across every figure
RESTORER_COLOURS = {"none": "#4d4d4d", "vqfr-v1": "#1f77b4", "vqfr-v2": "#2ca02c", "difface": "#d62728"}
_EXTRA = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e"]


def restorer_colour(name: str) -> str:
    if name in RESTORER_COLOURS:
        return RESTORER_COLOURS[name]
    return _EXTRA[sum(map(ord, name)) % len(_EXTRA)]


def _figure(width: float = 3.5, height: float = 3.0):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 6.5, "figure.dpi": 150})
    fig, ax = plt.subplots(figsize=(width, height))
    return fig, ax, plt


def _save(fig, plt, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_roc(records: Sequence[dict[str, Any]], out: str | Path, *, fars: Sequence[float] = (1e-3, 1e-2)) -> Path:
    """ROC curves of every condition of every record (log-scale FAR axis; AUC in the legend; TAR@FAR markers)."""
    fig, ax, plt = _figure(4.2, 3.4)
    styles = ["-", "--", ":", "-."]
    scales = sorted({c.get("scale") or 0 for r in records for c in r["conditions"]})
    widths = {s: 2.0 - 1.4 * i / max(1, len(scales) - 1) for i, s in enumerate(scales)}
    for r_index, record in enumerate(records):
        prefix = f"{record['config'].get('recognizer')}: " if len(records) > 1 else ""
        for cond in record["conditions"]:
            roc = cond["verification"]["roc"]
            fpr = [max(x, 1e-5) for x in roc["fpr"]]
            auc = cond["verification"].get("auc")
            colour = restorer_colour(cond["restorer"]) if cond.get("scale") is not None else "black"
            label = f"{prefix}{condition_label(cond)} (AUC {auc:.3f})" if auc is not None else condition_label(cond)
            ax.plot(fpr, roc["tpr"], styles[r_index % len(styles)], color=colour, lw=widths[cond.get("scale") or 0],
                    alpha=0.9 if cond.get("scale") is None else 0.8, label=label)
            for far in fars:
                tar = cond["verification"]["tar_at_far"].get(f"{far:g}")
                if tar is not None:
                    ax.plot([far], [tar], "o", color=colour, ms=2.5)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(True, which="both", alpha=0.25, lw=0.4)
    ax.legend(loc="lower right", frameon=False)
    return _save(fig, plt, out)


def plot_scales(records: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Verification accuracy (± std over folds) against the degradation scale, one line per restorer, the clean
    accuracy as a dashed reference line."""
    fig, ax, plt = _figure(3.6, 2.9)
    for record in records:
        conds = record["conditions"]
        clean = [c for c in conds if c.get("scale") is None]
        if clean:
            acc = 100 * clean[0]["verification"]["accuracy_mean"]
            ax.axhline(acc, color="black", ls="--", lw=0.8, label=f"clean ({acc:.2f} %)")
        for name in dict.fromkeys(c["restorer"] for c in conds if c.get("scale") is not None):
            pts = sorted((c["scale"], c["verification"]) for c in conds if c["restorer"] == name and c.get("scale"))
            xs = [p[0] for p in pts]
            ys = [100 * p[1]["accuracy_mean"] for p in pts]
            es = [100 * p[1]["accuracy_std"] for p in pts]
            ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, lw=1.2, color=restorer_colour(name),
                        label=name)
        ax.set_xticks(sorted({c["scale"] for c in conds if c.get("scale")}))
    ax.set_xlabel("degradation scale (x, of a 512 face crop)")
    ax.set_ylabel("verification accuracy (%)")
    ax.grid(True, alpha=0.25, lw=0.4)
    ax.legend(frameon=False)
    return _save(fig, plt, out)

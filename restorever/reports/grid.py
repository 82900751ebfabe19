"""The image grid of saved example probes (:func:`plot_grid`): which PNG goes in which cell (:func:`grid_layout`)
and the drawing, each face captioned with its cosine similarity to its clean face."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import UnsafePathError
from .figure_io import (COLUMN_WIDTH, PAGE_WIDTH, MissingDataError, check_output, check_positive, new_figure,
                        paper_style, require_verification, save_figure)
from .figure_style import restorer_colour, scales_of


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
    check_positive(max_items, "max_items")
    require_verification([record], "the example grid")
    examples = record.get("examples") or []
    if not examples:
        raise MissingDataError("results.json has no saved examples; rerun `restorever eval` with --examples N (N > 0)")
    chosen = _select_examples(examples, items, max_items)
    run_scales = scales_of([record])
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


#: the largest face of the grid (inches); fewer columns than fill the width keep this size
GRID_CELL = 0.9
#: room left of the clean column for the tall layout's scale labels (inches)
GRID_LABEL_MARGIN = 0.16


def grid_size(ncols: int, row_labels: bool) -> tuple[float, float, float]:
    """``(figure width, face size, label margin)`` in inches of a grid of ``ncols`` faces a row: at most
    :data:`GRID_CELL` a face, and no wider than one column (:data:`COLUMN_WIDTH`) up to four faces a row or a page
    (:data:`PAGE_WIDTH`) beyond, so that the figure goes into a paper at its own size and text size."""
    margin = GRID_LABEL_MARGIN if row_labels else 0.0
    target = COLUMN_WIDTH if ncols <= 4 else PAGE_WIDTH
    cell = min(GRID_CELL, (target - 0.15 - margin) / ncols)
    return cell * ncols + 0.15 + margin, cell, margin


@paper_style
def plot_grid(record: dict[str, Any], run_dir: str | Path, out: str | Path, *, items: Sequence[str] | None = None,
              max_items: int = 3, scales: Sequence[int] | None = None, thumb: int = 160,
              max_columns: int = 8) -> Path:
    """Image grid of saved example probes with each one's cosine similarity to its clean face
    (``identity.per_item``, from the run's recognizer) written under it.

    Wide layout (when ``1 + scales x (1 + restorers) <= max_columns``): one row per probe, columns
    ``clean | x4 degraded | x4 restorer ... | x8 degraded | ...``. Tall layout otherwise: one row per (probe, scale),
    columns ``clean | degraded | each restorer``, the clean face shown on the probe's first row only and the row's scale
    written left of the clean column (see :func:`grid_layout`).

    Args:
        record: the run's results; ``record["examples"]`` names PNGs relative to ``run_dir``.
        items: image ids (or parts of them, e.g. a person's name) to show; default the first ``max_items``.
        scales: scales to show (default all the run has).
        thumb: pixels per face in the figure (the 512 crops are downsampled).
    """
    import numpy as np
    from PIL import Image

    check_output(out)
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

    nrows, ncols = len(layout.cells), len(layout.headers)
    width, cell, label_margin = grid_size(ncols, any(layout.row_labels))
    fig, axes = new_figure(width, (cell + 0.17) * nrows + 0.12, nrows=nrows, ncols=ncols, squeeze=False,
                           gridspec_kw={"wspace": 0.03, "hspace": 0.2})
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
            if c == 0 and layout.row_labels[r]:  # left of the clean column: the gap beside it is too narrow
                ax.set_ylabel(layout.row_labels[r], fontsize=7.5, labelpad=2)
    fig.subplots_adjust(left=(0.02 + label_margin) / width, right=0.99, top=1 - 0.2 / fig.get_figheight(),
                        bottom=0.02)
    return save_figure(fig, out, tight=False, records=[record])

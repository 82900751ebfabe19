"""Round 18: the figures as a paper author puts them in a paper: the same bytes for the same record in every
format, TrueType fonts in the PDF, one marker shape per restorer in every figure (greyscale print), and sizes that
go into one column (or a page) without scaling."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
from PIL import Image

from restorever.reports import figure_io
from restorever.reports.breakdown import breakdown, plot_breakdown
from restorever.reports.figure_io import COLUMN_WIDTH, PAGE_WIDTH
from restorever.reports.figure_style import RESTORER_MARKERS, restorer_marker
from restorever.reports.grid import grid_size, plot_grid
from restorever.reports.plots import CURVE_MARKERS, curve_marker_points, plot_all, plot_cmc, plot_roc, plot_scales
from restorever.reports.results import load_results

from .conftest import make_record
from .test_plots import keep_figures

GROUPS = ("female", "male")


def _inches(png: Path) -> float:
    with Image.open(png) as im:
        return im.width / 300


def _groups(record: dict) -> dict[str, str]:
    """Every person of the record's pairs in one of two groups, by the last digit of the name."""
    people = {Path(i).parent.name for i in record["pairs"]["a"] + record["pairs"]["b"]}
    return {p: GROUPS[int(p[-1]) % 2] for p in people}


def test_every_figure_is_the_same_file_for_the_same_record(run_dir, tmp_path):
    """matplotlib salts an SVG's clip-path ids with a random uuid unless svg.hashsalt is set: the same record gave
    another SVG on every call (PNG and PDF were already reproducible)."""
    record = load_results(run_dir)
    first, _ = plot_all(record, run_dir, tmp_path / "a", formats=("png", "pdf", "svg"))
    second, _ = plot_all(record, run_dir, tmp_path / "b", formats=("png", "pdf", "svg"))
    pairs = [(p, q) for name in first for p, q in zip(first[name], second[name])]
    assert len(pairs) == 15
    for p, q in pairs:
        assert p.read_bytes() == q.read_bytes(), p.name
    svg = first["roc"][2].read_text()
    assert "clip-path" in svg and "<dc:date>" not in svg  # clipped curves, no date


def test_pdf_fonts_are_embedded_truetype(run_dir, tmp_path):
    """A camera-ready check refuses Type 3 fonts: every PDF embeds its text as TrueType (fonttype 42)."""
    written, _ = plot_all(load_results(run_dir), run_dir, tmp_path, formats=("pdf",))
    for name, (pdf,) in written.items():
        data = pdf.read_bytes()
        assert b"/FontFile2" in data and b"/Type3" not in data, name


def _roc_markers(fig) -> dict[str, str]:
    ax = fig.axes[0]
    return {label.split(" x")[0]: handle.get_marker()
            for handle, label in zip(*ax.get_legend_handles_labels()) if not label.startswith("clean")}


def _scales_markers(fig) -> dict[str, str]:
    ax = fig.axes[0]
    return {label: handle.lines[0].get_marker()
            for handle, label in zip(*ax.get_legend_handles_labels()) if hasattr(handle, "lines")}


def test_each_restorer_keeps_one_marker_shape_in_every_figure(run_dir, monkeypatch, tmp_path):
    """Restorers were told apart by colour alone in the ROC, CMC and accuracy-against-scale figures (every
    restorer a circle in the latter), so a greyscale print lost them. Now each has one marker shape, the same in
    the ROC, accuracy, CMC and breakdown figures."""
    record = load_results(run_dir)
    figures = keep_figures(monkeypatch)
    plot_roc([record], tmp_path / "r.png")
    plot_scales([record], tmp_path / "s.png")
    plot_cmc([record], tmp_path / "c.png")
    roc, scales, cmc = figures
    expected = {"no restoration": restorer_marker("none"), "vqfr-v2": restorer_marker("vqfr-v2")}
    assert expected["no restoration"] != expected["vqfr-v2"]
    assert _roc_markers(roc) == expected and _roc_markers(cmc) == expected
    assert _scales_markers(scales) == expected
    # the ROC draws the markers on each degraded curve, not only in the legend
    ax = roc.axes[0]
    marker_only = [ln for ln in ax.get_lines() if ln.get_linestyle() == "None" and len(ln.get_xdata()) > 1]
    degraded = [c for c in record["conditions"] if c.get("scale") is not None]
    assert len(marker_only) == len(degraded)
    assert {ln.get_marker() for ln in marker_only} == set(expected.values())
    assert all(len(ln.get_xdata()) == CURVE_MARKERS for ln in marker_only)
    # breakdown: colour = group, marker = the restorer's marker
    seen = {}

    def capture(fig, out, *args, **kwargs):
        seen["markers"] = {lb.split("(")[-1].rstrip(")"): h.lines[0].get_marker()
                           for h, lb in zip(*fig.axes[0].get_legend_handles_labels())}
        return out

    monkeypatch.setattr(figure_io, "save_figure", capture)
    rec = make_record(tmp_path)
    plot_breakdown(breakdown(rec, _groups(rec), GROUPS, n_boot=50), tmp_path / "b.png")
    assert seen["markers"] == expected


def test_named_restorers_have_distinct_markers_and_unknown_ones_are_stable():
    assert len(set(RESTORER_MARKERS.values())) == len(RESTORER_MARKERS)
    for name in ("my-net", "Réstaurateur", "修复网络"):
        assert restorer_marker(name) == restorer_marker(name) and restorer_marker(name) not in RESTORER_MARKERS.values()


def test_roc_curve_markers_lie_on_the_drawn_curve():
    """The markers sit on the straight segments the log-FAR axis draws between stored points, inside the axis."""
    import numpy as np

    fpr, tpr = [1e-6, 1e-3, 1e-3, 1e-1, 1.0], [0.2, 0.2, 0.6, 0.9, 1.0]
    for index in range(3):
        xs, ys = curve_marker_points(fpr, tpr, 1e-4, index, 3)
        assert all(1e-4 < x < 1 for x in xs)
        for x, y in zip(xs, ys):
            if x < 1e-3:
                assert y == pytest.approx(0.2)
            elif x < 1e-1:  # on the segment from (1e-3, 0.6) to (1e-1, 0.9), straight in log FAR
                assert y == pytest.approx(0.6 + 0.3 * (np.log10(x) + 3) / 2)
            else:
                assert y == pytest.approx(0.9 + 0.1 * (np.log10(x) + 1))
    assert curve_marker_points(fpr, tpr, 1e-4, 0, 3)[0] != curve_marker_points(fpr, tpr, 1e-4, 1, 3)[0]


def _three_restorers(run_dir: Path) -> dict:
    """The run with a third restorer (vqfr-v2's numbers and example images under another name)."""
    record = copy.deepcopy(load_results(run_dir))
    record["conditions"] += [dict(copy.deepcopy(c), restorer="codeformer") for c in record["conditions"]
                             if c["restorer"] == "vqfr-v2"]
    for example in record["examples"]:
        example["images"].update({k.replace("vqfr-v2", "codeformer"): v for k, v in example["images"].items()
                                  if k.endswith("/vqfr-v2")})
    return record


@pytest.mark.parametrize("scales, max_columns, width", [([16], 8, COLUMN_WIDTH), (None, 4, COLUMN_WIDTH),
                                                         (None, 8, PAGE_WIDTH)])
def test_grid_fits_a_column_or_the_page(run_dir, tmp_path, scales, max_columns, width):
    """Four faces a row gave a 3.7-3.8 in grid (0.9 in a face), wider than the column it was made for; eight a
    7.4 in one, wider than a page: scaled down in LaTeX, its 6.5 pt captions shrank with it."""
    out = plot_grid(_three_restorers(run_dir), run_dir, tmp_path / "g.png", scales=scales, max_columns=max_columns)
    assert 0.8 * width < _inches(out) <= width + 0.01  # seven faces at 0.9 in: 6.4 in, no need to shrink


def test_grid_size_keeps_small_grids_at_full_size():
    assert grid_size(3, False)[1] == 0.9  # three faces: 2.85 in, no need to shrink
    for ncols in range(1, 13):
        for labels in (False, True):
            width, cell, margin = grid_size(ncols, labels)
            assert width <= (COLUMN_WIDTH if ncols <= 4 else PAGE_WIDTH) + 1e-9
            assert width == pytest.approx(cell * ncols + 0.15 + margin)


def test_breakdown_legend_is_below_the_axes_and_the_figure_fits_a_column(tmp_path, monkeypatch):
    """The legend sat inside the axes (six entries for three restorers over two groups covered the upper half) and
    the title made the figure 3.58 in wide; now the legend is below the axes, as in the other line figures, its
    title says what the error bars are, and the figure is one column wide."""
    rec = make_record(tmp_path, restorers=("none", "vqfr-v2"))
    result = breakdown(rec, _groups(rec), GROUPS, n_boot=50)
    seen = {}
    real_save = figure_io.save_figure

    def capture(fig, out, *args, **kwargs):
        fig.canvas.draw()
        ax = fig.axes[0]
        seen["legend_top"] = ax.get_legend().get_window_extent().y1
        seen["axes_bottom"] = ax.get_window_extent().y0
        seen["title"] = ax.get_title()
        return real_save(fig, out, *args, **kwargs)

    monkeypatch.setattr(figure_io, "save_figure", capture)
    out = plot_breakdown(result, tmp_path / "b.png")
    assert seen["legend_top"] < seen["axes_bottom"] and seen["title"] == ""
    assert _inches(out) <= COLUMN_WIDTH + 0.01


def test_characters_missing_from_the_font_are_one_warning_that_names_them(run_dir, tmp_path, caplog):
    """A CJK restorer name printed as boxes with 72 matplotlib warnings, one per glyph and drawing pass, none
    saying what to do; now one log warning names the characters and the fix, and no glyph warning escapes."""
    import logging
    import warnings

    record = copy.deepcopy(load_results(run_dir))
    for cond in record["conditions"]:
        if cond["restorer"] == "vqfr-v2":
            cond["restorer"] = "修复网络"
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        plot_roc([record], tmp_path / "r.pdf")
    assert not [w for w in caught if "missing from font" in str(w.message)]
    messages = [r.getMessage() for r in caplog.records if "empty boxes" in r.getMessage()]
    assert len(messages) == 1 and "修复网络" in messages[0] and "DejaVu Sans" in messages[0]
    assert "font.sans-serif" in messages[0]
    record["conditions"] = [c for c in record["conditions"] if c["restorer"] != "修复网络"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        plot_roc([record], tmp_path / "ascii.pdf")  # Latin names: no warning
    assert not [r for r in caplog.records if "empty boxes" in r.getMessage()]


def test_drawing_a_figure_leaves_the_callers_matplotlib_as_it_was(run_dir, tmp_path):
    """A library call inside a notebook: the figures set matplotlib's global rcParams (a notebook's later figures
    took 8 pt text and 300 dpi) and ``matplotlib.use("Agg")`` switched pyplot's backend away from the notebook's.
    Now the paper style holds only while a figure is drawn and saved, and no figure goes through pyplot."""
    import matplotlib
    import matplotlib.pyplot as plt

    before_backend = matplotlib.get_backend()
    before = {k: copy.deepcopy(v) for k, v in matplotlib.rcParams.items()}
    before_figures = plt.get_fignums()
    written, _ = plot_all(load_results(run_dir), run_dir, tmp_path, formats=("pdf",))
    assert written
    after = dict(matplotlib.rcParams.items())
    assert {k for k in before if before[k] != after[k]} == set()
    assert matplotlib.get_backend() == before_backend and plt.get_fignums() == before_figures
    # and the style still reaches the files: TrueType fonts (fonttype 42) are the paper style's, not the default's
    assert matplotlib.rcParams["pdf.fonttype"] == 3
    assert all(b"/FontFile2" in pdf.read_bytes() for (pdf,) in written.values())

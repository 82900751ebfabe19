"""Figures: every kind written in every format, at column width, from stored results only."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from restorever.cli import cli
from restorever.reports.figure_io import COLUMN_WIDTH, MissingDataError
from restorever.reports.figure_style import condition_colour, restorer_colour, scale_style
from restorever.reports.grid import grid_layout, plot_grid
from restorever.reports.plots import plot_all, plot_cmc, plot_roc, plot_scales, plot_similarity
from restorever.reports.results import load_results

MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}


def _inches(png) -> float:
    with Image.open(png) as im:
        return im.width / 300


def test_every_figure_in_every_format(run_dir, tmp_path):
    record = load_results(run_dir)
    written, skipped = plot_all(record, run_dir, tmp_path / "figs", formats=("png", "pdf", "svg"))
    assert skipped == {} and set(written) == {"roc", "scales", "similarity", "grid", "cmc"}
    for name, paths in written.items():
        assert [p.suffix for p in paths] == [".png", ".pdf", ".svg"]
        for path in paths:
            assert path.stat().st_size > 3000 and path.read_bytes()[:5].startswith(MAGIC[path.suffix]), path


def test_line_figures_fit_one_column(run_dir, tmp_path):
    record = load_results(run_dir)
    for make in (lambda p: plot_roc([record], p), lambda p: plot_scales([record], p),
                 lambda p: plot_similarity(record, p), lambda p: plot_cmc([record], p)):
        path = make(tmp_path / "f.png")
        assert 0.75 * COLUMN_WIDTH < _inches(path) <= COLUMN_WIDTH + 0.05


def test_figures_read_only_stored_numbers(run_dir, tmp_path):
    """ROC and accuracy-vs-scale draw from the stored summaries: they work without per-pair scores."""
    record = copy.deepcopy(load_results(run_dir))
    for cond in record["conditions"]:
        del cond["scores"]
    assert plot_roc([record], tmp_path / "roc.png").stat().st_size > 3000
    assert plot_scales([record], tmp_path / "acc.png").stat().st_size > 3000
    with pytest.raises(MissingDataError, match="per-pair scores"):
        plot_similarity(record, tmp_path / "sim.png")


def test_unsupported_suffix(run_dir, tmp_path):
    with pytest.raises(ValueError, match="unsupported figure format '.jpg'"):
        plot_roc([load_results(run_dir)], tmp_path / "roc.jpg")
    assert not (tmp_path / "roc.jpg").exists()


def test_colours_are_consistent():
    assert restorer_colour("vqfr-v2") == restorer_colour("vqfr-v2") != restorer_colour("difface")
    assert restorer_colour("my-plugin") == restorer_colour("my-plugin")
    scales = [4, 8, 16, 32]
    assert condition_colour({"restorer": "none", "scale": None}, scales) == "#000000"
    first = np.array(condition_colour({"restorer": "difface", "scale": 4}, scales))
    last = np.array(condition_colour({"restorer": "difface", "scale": 32}, scales))
    from matplotlib.colors import to_rgb

    np.testing.assert_allclose(first, to_rgb(restorer_colour("difface")))
    assert (last >= first).all() and (last > first).any()  # lighter, same hue family
    assert len({str(scale_style(s, scales)[0]) for s in scales}) == 4


def test_grid_layout_cells_and_captions(run_dir):
    record = load_results(run_dir)
    layout = grid_layout(record, max_items=2)  # 1 + 2 scales x (degraded, vqfr-v2) = 5 columns: wide
    assert layout.headers == ["clean", "x4 degraded", "x4 vqfr-v2", "x16 degraded", "x16 vqfr-v2"]
    per_item = {(c["restorer"], c["scale"]): c["identity"]["per_item"] for c in record["conditions"]}
    for example, row in zip(record["examples"], layout.cells):
        assert row[0].image == example["clean"] and row[0].caption == example["item"].split("/")[1].replace("_", " ")
        for header, cell in zip(layout.headers[1:], row[1:]):
            scale, method = header.split()
            scale = int(scale[1:])
            assert cell.image == example["images"][f"x{scale}/{method}"]
            cos = per_item[("none" if method == "degraded" else method, scale)][example["item"]]
            assert cell.caption == f"cos {cos:.3f}"
    tall = grid_layout(record, max_items=1, max_columns=4)
    assert tall.headers == ["clean", "degraded", "vqfr-v2"] and tall.row_labels == ["x4", "x16"]
    assert tall.cells[1][0].kind == "blank" and tall.cells[1][2].image.startswith("examples/x16/vqfr-v2/")


def test_grid_draws_the_example_pixels(run_dir, tmp_path):
    """Each column shows its own PNG: the synthetic examples are flat red (clean), green (degraded), blue (vqfr)."""
    record = load_results(run_dir)
    path = plot_grid(record, run_dir, tmp_path / "grid.png", max_items=1, scales=[16])
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
    for colour in [(200, 30, 30), (30, 200, 30), (30, 30, 200)]:
        assert (np.abs(pixels - colour).sum(1) < 12).mean() > 0.1, colour


def test_grid_errors(own_run_dir, tmp_path):
    run_dir = own_run_dir
    record = load_results(run_dir)
    with pytest.raises(ValueError, match="no saved example matches 'Nobody'"):
        plot_grid(record, run_dir, tmp_path / "g.png", items=["Nobody"])
    with pytest.raises(ValueError, match=r"scale\(s\) \[8\] not in this run"):
        plot_grid(record, run_dir, tmp_path / "g.png", scales=[8])
    with pytest.raises(MissingDataError, match="--examples"):
        plot_grid({**record, "examples": []}, run_dir, tmp_path / "g.png")
    (run_dir / record["examples"][0]["clean"]).unlink()
    with pytest.raises(MissingDataError, match="example image missing"):
        plot_grid(record, run_dir, tmp_path / "g.png")


def test_cmc_skips_conditions_without_retrieval(run_dir, tmp_path):
    record = copy.deepcopy(load_results(run_dir))
    for cond in record["conditions"][1:]:
        del cond["retrieval"]
    assert plot_cmc([record], tmp_path / "cmc.svg").stat().st_size > 3000
    for cond in record["conditions"]:
        cond.pop("retrieval", None)
    with pytest.raises(MissingDataError, match="retrieval"):
        plot_cmc([record], tmp_path / "cmc2.png")
    written, skipped = plot_all(record, run_dir, tmp_path / "all")
    assert "cmc" not in skipped and "cmc" not in written and "roc" in written  # no retrieval: not this run's figure


def test_plot_commands(run_dir, tmp_path):
    runner = CliRunner()
    for args in (["similarity", str(run_dir / "results.json"), "-o", str(tmp_path / "s.pdf")],
                 ["grid", str(run_dir), "--item", "Person_00", "--scales", "x4", "-o", str(tmp_path / "g.png")],
                 ["cmc", str(run_dir / "results.json"), "-o", str(tmp_path / "c.svg")]):
        result = runner.invoke(cli, ["plot", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "wrote" in result.output and (tmp_path / args[-1].rsplit("/", 1)[-1]).stat().st_size > 3000
    record = json.loads((run_dir / "results.json").read_text())
    for cond in record["conditions"]:
        del cond["retrieval"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(record))
    result = runner.invoke(cli, ["plot", "cmc", str(bare), "-o", str(tmp_path / "c2.png")])
    assert result.exit_code == 2 and result.output.startswith("error:") and "retrieval section" in result.output
    result = runner.invoke(cli, ["plot", "grid", str(run_dir), "--scales", "a,b", "-o", str(tmp_path / "g2.png")])
    assert result.exit_code == 2 and "--scales" in result.output


def keep_figures(monkeypatch) -> list:
    """Keep the matplotlib figures the plot functions draw in the returned list instead of saving them."""
    from restorever.reports import grid, plots

    figures = []

    def keep(fig, out, **kwargs):
        figures.append(fig)
        return out

    for module in (plots, grid):
        monkeypatch.setattr(module, "save_figure", keep)
    return figures


def test_same_colour_per_restorer_in_every_figure(run_dir, monkeypatch, tmp_path):
    from matplotlib.colors import to_hex

    record = load_results(run_dir)
    figures = keep_figures(monkeypatch)
    plot_roc([record], tmp_path / "r.png")
    plot_scales([record], tmp_path / "s.png")
    plot_cmc([record], tmp_path / "c.png")
    for fig in figures:
        colours = {}
        for handle, label in zip(*fig.axes[0].get_legend_handles_labels()):
            line = handle.lines[0] if hasattr(handle, "lines") else handle  # errorbar containers
            for name in ("vqfr-v2 x4", "no restoration x4", "vqfr-v2", "no restoration"):
                if label.startswith(name + " ") or label == name:
                    colours.setdefault(name.removesuffix(" x4"), to_hex(line.get_color()))
                    break
        assert colours == {"no restoration": restorer_colour("none"), "vqfr-v2": restorer_colour("vqfr-v2")}, colours


def test_cmc_draws_filtered_variants(run_dir, monkeypatch, tmp_path):
    record = copy.deepcopy(load_results(run_dir))
    cond = record["conditions"][2]
    cond["retrieval"]["filtered"] = {"cmc": [min(1.0, x + 0.05) for x in cond["retrieval"]["cmc"]]}
    cond["retrieval"]["filtered_reweighted"] = {"cmc": cond["retrieval"]["cmc"]}
    figures = keep_figures(monkeypatch)
    plot_cmc([record], tmp_path / "c.png", max_rank=5)
    lines = [ln for ln in figures[0].axes[0].get_lines() if not ln.get_label().startswith("_")]
    assert len(lines) == len(record["conditions"]) + 2
    labels = [ln.get_label() for ln in lines]
    assert sum("(filtered)" in lb for lb in labels) == 1 and sum("(filtered, reweighted)" in lb for lb in labels) == 1
    assert all(len(ln.get_xdata()) == 5 for ln in lines)
    filtered = next(ln for ln in lines if "(filtered)" in ln.get_label())
    np.testing.assert_allclose(filtered.get_ydata(), [100 * v for v in cond["retrieval"]["filtered"]["cmc"][:5]])


def test_roc_condition_filter_and_legend_below(run_dir, monkeypatch, tmp_path):
    record = load_results(run_dir)
    figures = keep_figures(monkeypatch)
    plot_roc([record], tmp_path / "r.png", scales=[16], restorers=["vqfr-v2"])
    labels = figures[0].axes[0].get_legend_handles_labels()[1]
    assert [lb.split(" (")[0] for lb in labels] == ["clean", "vqfr-v2 x16"]
    many = copy.deepcopy(record)
    many["conditions"] += [dict(c, restorer=f"r{i}") for i, c in enumerate(record["conditions"][1:] * 2)]
    plot_roc([many], tmp_path / "r2.png")
    fig = figures[1]
    assert len(fig.axes[0].get_legend_handles_labels()[1]) == 13
    assert fig.get_figwidth() == COLUMN_WIDTH and fig.get_figheight() > 3.2  # legend below, figure taller
    result = CliRunner().invoke(cli, ["plot", "roc", str(run_dir), "--scales", "4", "-o", str(tmp_path / "r3.png")])
    assert result.exit_code == 0, result.output


def test_accuracy_error_bars_stop_at_0_and_100_percent():
    """plot scales drew 99 % ± 3 % up to 102 %; the bars are cut at the range an accuracy can take."""
    from restorever.reports.plots import clipped_error_bars

    assert clipped_error_bars([99.0, 50.0, 1.0], [3.0, 3.0, 3.0]) == [[3.0, 3.0, 1.0], [1.0, 3.0, 3.0]]


def test_a_scale_or_restorer_not_in_the_run_is_an_error(run_dir, tmp_path):
    """`plot cmc --scales 16` on a run without x16 (or --restorers vqfr) drew the clean curve alone, silently."""
    record = load_results(run_dir)
    with pytest.raises(MissingDataError, match=r"scale 8: not in the results \(scales \[4, 16\]"):
        plot_roc([record], tmp_path / "r.png", scales=[8])
    with pytest.raises(MissingDataError, match="restorer vqfr: not in the results"):
        plot_cmc([record], tmp_path / "c.png", restorers=["vqfr"])
    result = CliRunner().invoke(cli, ["plot", "cmc", str(run_dir), "--max-rank", "0", "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 2 and "--max-rank" in result.output


def test_tall_grid_scale_labels_do_not_cover_a_face(run_dir, monkeypatch):
    """In the tall layout the scale of each row (``x4``) was the y label of the degraded column, so with the
    narrow gap between columns it was drawn over the right edge of the clean face on the probe's first row."""
    record = load_results(run_dir)
    figures = keep_figures(monkeypatch)
    plot_grid(record, run_dir, "g.png", max_items=2, max_columns=4)
    fig = figures[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    faces = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_images()]
    labels = [ax.yaxis.label for ax in fig.axes if ax.yaxis.label.get_text()]
    assert [t.get_text() for t in labels] == ["x4", "x16"] * 2
    for text in labels:
        box = text.get_window_extent(renderer)
        assert not any(box.overlaps(face) for face in faces), text.get_text()


def _errorbar_containers(ax) -> list:
    from matplotlib.container import ErrorbarContainer

    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_scales_error_bars_say_what_they_are_and_stay_apart(run_dir, monkeypatch):
    """The accuracy-against-scale figure drew every restorer's ± std bar at the same x (one bar hid the other) and
    said nowhere, outside the HTML caption, what the bars are."""
    record = load_results(run_dir)
    figures = keep_figures(monkeypatch)
    plot_scales([record], "s.png")
    ax = figures[0].axes[0]
    legend = ax.get_legend()
    assert legend.get_title().get_text().endswith("error bars: ± std over 10 folds")
    xs = {c.get_label(): list(c.lines[0].get_xdata()) for c in _errorbar_containers(ax)}
    assert set(xs) == {"no restoration", "vqfr-v2"}
    for scale, a, b in zip([4, 16], xs["no restoration"], xs["vqfr-v2"]):
        assert a != b and abs(a / scale - 1) < 0.1 and abs(b / scale - 1) < 0.1  # apart, still at their scale
    # the bars are the stored std over folds, centred on the stored mean
    cond = next(c for c in record["conditions"] if c["restorer"] == "vqfr-v2" and c["scale"] == 16)
    bar = next(c for c in _errorbar_containers(ax) if c.get_label() == "vqfr-v2")
    segment = bar.lines[2][0].get_segments()[1]
    mean, std = 100 * cond["verification"]["accuracy_mean"], 100 * cond["verification"]["accuracy_std"]
    np.testing.assert_allclose([segment[0][1], segment[1][1]], [max(0, mean - std), min(100, mean + std)])


def test_scales_axis_is_logarithmic_and_the_legend_covers_nothing(run_dir, monkeypatch):
    """Scales are factors (x4, x8, x16, x32): on a linear axis x4 and x8 were crowded together and x32 far away,
    and the legend sat inside the axes over the lines and bars."""
    record = load_results(run_dir)
    figures = keep_figures(monkeypatch)
    plot_scales([record], "s.png")
    fig = figures[0]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x4", "x16"]
    assert fig.get_figwidth() == COLUMN_WIDTH
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert not ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


# Machado, Oliveira & Fernandes (2009), severity 1.0: linear-RGB matrices of deuteranopia and protanopia
_DEUTAN = np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]])
_PROTAN = np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]])


def _lab(colour: str, vision: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of an sRGB colour as seen through ``vision`` (a 3x3 matrix on linear RGB)."""
    from matplotlib.colors import to_rgb

    c = np.asarray(to_rgb(colour))
    linear = np.clip(vision @ np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4), 0, 1)
    srgb_to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = srgb_to_xyz @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_restorer_colours_stay_apart_for_colour_blind_readers():
    """The tab10 colours put vqfr-v2 (green) next to gfpgan-v1.4 (orange) and difface (red): for a protanope the
    first two were 4.6 CIELAB units apart, the same colour. Every pair of restorers must differ by >= 15 units in
    normal, deuteranope and protanope vision (Machado et al. 2009 simulation)."""
    from itertools import combinations

    from restorever.reports.figure_style import RESTORER_COLOURS

    assert _lab("#000000", np.eye(3))[0] == pytest.approx(0, abs=1e-6)  # the conversion's known answers
    assert _lab("#ffffff", np.eye(3)) == pytest.approx([100, 0, 0], abs=0.05)
    assert _lab("#ff0000", np.eye(3)) == pytest.approx([53.2, 80.1, 67.2], abs=0.2)
    for vision in (np.eye(3), _DEUTAN, _PROTAN):
        for a, b in combinations(RESTORER_COLOURS, 2):
            distance = np.linalg.norm(_lab(RESTORER_COLOURS[a], vision) - _lab(RESTORER_COLOURS[b], vision))
            assert distance >= 15, (a, b, distance)


def _draw_every_line_figure(record, monkeypatch) -> list:
    """Draw the ROC, scales, CMC and score-distribution figures of ``record``; the figures, in that order (later
    figures of the test append to the same list)."""
    figures = keep_figures(monkeypatch)
    plot_roc([record], "r.png")
    plot_scales([record], "s.png")
    plot_cmc([record], "c.png")
    plot_similarity(record, "d.png")
    return figures


def test_every_figure_names_the_recognizer(run_dir, monkeypatch):
    """A figure of one run named restorer and scale but not the recognizer (arcface-r50 here), so a copy of it in a
    paper or slide could not be told from the same figure of a dlib or facenet run."""
    record = load_results(run_dir)
    figures = _draw_every_line_figure(record, monkeypatch)
    titles = [fig.axes[0].get_legend().get_title().get_text() for fig in figures[:3]]
    titles.append(figures[3].legends[0].get_title().get_text())
    assert titles[0] == titles[2] == titles[3] == "recognizer arcface-r50", titles
    assert titles[1] == "recognizer arcface-r50; error bars: ± std over 10 folds"
    other = copy.deepcopy(record)
    for cond in other["conditions"]:
        cond["recognizer"] = "dlib"
    other["config"]["recognizer"] = "dlib"
    plot_roc([record, other], "r2.png")  # two recognizers: the legend prefixes name them, no shared title
    legend = figures[4].axes[0].get_legend()
    assert legend.get_title().get_text() == ""
    assert {t.get_text().split(":")[0] for t in legend.get_texts()} == {"arcface-r50", "dlib"}


def test_similarity_axis_names_the_score(run_dir, monkeypatch):
    """The score axis said only "pair score": a dlib run's scores are minus the Euclidean distance (all negative),
    which the figure did not say, so a reader could take them for cosines gone wrong."""
    record = copy.deepcopy(load_results(run_dir))
    figures = keep_figures(monkeypatch)
    for similarity in ("euclidean", "cosine", None):
        for cond in record["conditions"]:
            cond["similarity"] = similarity
        plot_similarity(record, "d.png")
    labels = [fig.get_supxlabel() for fig in figures]
    assert labels == ["pair score: minus the Euclidean distance (higher = more alike)",
                      "pair score: cosine similarity (higher = more alike)",
                      "pair score (higher = more alike)"]


def test_the_unrestored_baseline_is_not_named_like_a_restorer(run_dir, monkeypatch):
    """The line figures listed the degraded, unrestored probe as ``none x4`` / ``none``, beside ``vqfr-v2 x4``, as
    if ``none`` were a method (the example grid of the same run calls its column ``degraded``)."""
    record = load_results(run_dir)
    figures = _draw_every_line_figure(record, monkeypatch)
    legends = [[t.get_text() for t in fig.axes[0].get_legend().get_texts()] for fig in figures[:3]]
    legends.append([t.get_text() for t in figures[3].legends[0].get_texts()])
    assert all(not any(text.startswith("none") for text in legend) for legend in legends), legends
    assert [t.split(" (")[0] for t in legends[0]] == ["clean", "no restoration x4", "vqfr-v2 x4",
                                                      "no restoration x16", "vqfr-v2 x16"]
    assert legends[1][1:] == ["no restoration", "vqfr-v2"]
    assert legends[2][1].startswith("no restoration x4 (rank-1") and "no restoration" in legends[3]

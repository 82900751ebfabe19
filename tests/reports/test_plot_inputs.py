"""Figures from unusual but valid inputs (sentinel thresholds, several runs, identification runs) and bad arguments:
each test inspects the matplotlib figure the plot function draws, not just the file it writes."""
from __future__ import annotations

import copy
import json
import logging
import shutil
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.errors import RestoreverError
from restorever.reports.figure_io import MissingDataError
from restorever.reports.figure_style import CLEAN_COLOUR, restorer_colour
from restorever.reports.grid import grid_layout
from restorever.reports.plots import finite_thresholds, plot_all, plot_cmc, plot_roc, plot_scales, plot_similarity
from restorever.reports.run_names import record_names
from restorever.reports.results import load_results

from .test_plots import keep_figures

SENTINEL = -1.7976931348623157e308  # the "all same" fold threshold results.json stores


@pytest.fixture()
def figures(monkeypatch):
    """The matplotlib figures the plot functions draw, kept instead of saved (plain figures: nothing to close)."""
    return keep_figures(monkeypatch)


@pytest.fixture()
def record(run_dir) -> dict:
    return copy.deepcopy(load_results(run_dir))


def _panels(fig) -> dict:
    """The visible panels of a similarity figure by title."""
    return {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}


def _score_range(record: dict) -> tuple[float, float]:
    scores = np.concatenate([c["scores"]["score"] for c in record["conditions"]])
    return float(scores.min()), float(scores.max())


# --- F02: the "all same" threshold sentinel ------------------------------------------------------------------------


def test_similarity_leaves_sentinel_thresholds_out_of_the_mean(record, figures, tmp_path):
    """A fold at the -1.797e308 sentinel dragged the mean threshold to -9e307, the shared x axis with it."""
    cond = record["conditions"][1]  # none x4
    finite = cond["verification"]["thresholds"][:9]
    cond["verification"]["thresholds"] = [SENTINEL, *finite]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warnings leaked to the console
        plot_similarity(record, tmp_path / "s.png")
    low, high = _score_range(record)
    ax = _panels(figures[0])["x4"]
    left, right = ax.get_xlim()
    assert low - 0.05 * (high - low) <= left < low and high < right <= high + 0.05 * (high - low)
    vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    drawn = [ln.get_xdata()[0] for ln in vlines]
    assert any(np.isclose(x, np.mean(finite)) for x in drawn), drawn
    assert all(low <= x <= high for x in drawn)


def test_similarity_marks_a_condition_whose_every_fold_is_the_sentinel(record, figures, tmp_path):
    """All folds at the sentinel: the line was -inf and vanished without a word (and numpy warned of overflow)."""
    record["conditions"][3]["verification"]["thresholds"] = [SENTINEL] * 10  # none x16
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warnings leaked to the console
        plot_similarity(record, tmp_path / "s.png")
    fig = figures[0]
    ax = _panels(fig)["x16"]
    markers = [ln for ln in ax.get_lines() if ln.get_marker() == "<"]
    assert len(markers) == 1 and markers[0].get_color() == restorer_colour("none")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "threshold below all scores" in legend
    low, high = _score_range(record)
    assert ax.get_xlim()[0] > low - 0.05 * (high - low)


def test_finite_thresholds():
    assert finite_thresholds([SENTINEL, -0.5, float("inf"), float("nan"), 1.8e308, 0.25]) == [-0.5, 0.25]
    assert finite_thresholds(None) == []


# --- F03: score arrays of different lengths ------------------------------------------------------------------------


def test_similarity_refuses_score_arrays_of_different_lengths(record, tmp_path):
    """A hand-edited results.json with 10 of 40 scores gave an IndexError traceback from numpy."""
    scores = record["conditions"][1]["scores"]
    scores["score"] = scores["score"][:10]
    with pytest.raises(RestoreverError, match=r"conditions\[1\]\.scores: .*score has 10, same has 160"):
        plot_similarity(record, tmp_path / "s.png")


# --- F05: several runs in one figure -------------------------------------------------------------------------------


def _two_runs(record: dict) -> list[dict]:
    other = copy.deepcopy(record)
    other["config"]["seed"] = 1
    return [record, other]


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_two_runs_with_the_same_recognizer_are_told_apart(record, figures, tmp_path):
    """`plot roc RUN1 RUN2` of one recognizer labelled both runs 'arcface-r50: clean', twice the same text."""
    records = _two_runs(record)
    plot_roc(records, tmp_path / "r.png", names=["base", "reseeded"])
    plot_scales(records, tmp_path / "s.png", names=["base", "reseeded"])
    plot_cmc(records, tmp_path / "c.png", names=["base", "reseeded"])
    plot_roc(records, tmp_path / "r2.png")  # no names: the config keys that differ
    for fig in figures[:3]:
        texts = _legend_texts(fig)
        assert len(set(texts)) == len(texts), texts
        assert {t.split(":")[0] for t in texts} == {"base", "reseeded"}, texts
    texts = _legend_texts(figures[3])
    assert {t.split(": ")[0] for t in texts} == {"seed=0", "seed=1"}, texts


def test_runs_of_different_recognizers_keep_the_recognizer_prefix(record):
    other = copy.deepcopy(record)
    other["config"]["recognizer"] = "dlib"
    assert record_names([record, other], ["a", "b"]) == ["arcface-r50", "dlib"]
    assert record_names([record]) == [""]
    assert record_names([record, copy.deepcopy(record)]) == ["run 1", "run 2"]


def test_different_pair_sets_are_warned_about(record, figures, tmp_path, caplog):
    records = _two_runs(record)
    with caplog.at_level(logging.WARNING, logger="restorever.reports.run_names"):
        plot_roc(records, tmp_path / "r.png")
    assert not caplog.records  # same protocol: a paired comparison
    records[1]["protocol"] = {**records[1]["protocol"], "pairs": 40, "pairs_sha256": "cd" * 32}
    records[0]["protocol"]["pairs_sha256"] = "ab" * 32
    with caplog.at_level(logging.WARNING, logger="restorever.reports.run_names"):
        plot_scales(records, tmp_path / "s.png")
    [message] = [r.getMessage() for r in caplog.records]
    assert "different pair sets" in message and "pairs: 160 vs 40" in message and "pairs_sha256" in message


def test_plot_roc_command_names_the_run_folders(run_dir, figures, tmp_path):
    first = shutil.copytree(run_dir, tmp_path / "lfw-seed0")
    second = shutil.copytree(run_dir, tmp_path / "lfw-seed1")
    result = CliRunner().invoke(cli, ["plot", "roc", str(first), str(second / "results.json"), "-o",
                                      str(tmp_path / "r.png")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    texts = _legend_texts(figures[0])
    assert {t.split(":")[0] for t in texts} == {"lfw-seed0", "lfw-seed1"} and len(set(texts)) == len(texts)


# --- F07: tick labels above a hidden panel; how same / different people are drawn --------------------------------


def _labelled(ax) -> bool:
    return any(t.get_visible() and t.get_text() for t in ax.get_xticklabels())


def test_similarity_keeps_tick_labels_above_a_hidden_panel(record, figures, tmp_path):
    """clean + 2 scales in 2 columns: the x4 panel sits above the hidden fourth axes and lost its tick labels."""
    plot_similarity(record, tmp_path / "s.png")
    fig = figures[0]
    fig.canvas.draw()
    panels = _panels(fig)
    assert set(panels) == {"clean", "x4", "x16"}
    assert _labelled(panels["x4"]) and _labelled(panels["x16"]) and not _labelled(panels["clean"])


def _dashed(patch) -> bool:
    """Whether a histogram outline is drawn with dashes (a solid one reads ``"solid"`` or ``(offset, None)``)."""
    style = patch.get_linestyle()
    return not (style in ("-", "solid") or (isinstance(style, tuple) and style[1] is None))


def test_similarity_draws_same_and_different_people_as_documented(record, figures, tmp_path):
    """One restorer: same person filled, different people a solid outline. Several: both outlines, same person
    solid, different people dashed. (The report caption describes these.)"""
    from matplotlib.patches import Polygon

    single = copy.deepcopy(record)
    single["conditions"] = [c for c in record["conditions"] if c["restorer"] == "none"]
    plot_similarity(single, tmp_path / "one.png")
    plot_similarity(record, tmp_path / "many.png")
    one, many = figures
    assert [t.get_text() for t in one.legends[0].get_texts()][:2] == ["same person", "different people"]
    hist = [p for p in _panels(one)["x4"].patches if isinstance(p, Polygon)]
    assert [p.get_fill() for p in hist] == [True, False] and not _dashed(hist[1])
    hist = [p for p in _panels(many)["x4"].patches if isinstance(p, Polygon)]  # none, then vqfr-v2
    assert [(p.get_fill(), _dashed(p)) for p in hist] == [(False, False), (False, True)] * 2
    assert [t.get_text() for t in many.legends[0].get_texts()][:2] == ["same person", "different people"]


# --- F08: arguments ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bins", [0, -3])
def test_similarity_bins_must_be_positive(record, tmp_path, bins):
    with pytest.raises(ValueError, match=f"bins must be an integer >= 1, not {bins}"):
        plot_similarity(record, tmp_path / "s.png", bins=bins)
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("max_items", [0, -1])
def test_grid_max_items_must_be_positive(record, max_items):
    """--max-items -1 showed 1 of 2 examples (a [:-1] slice); 0 failed inside matplotlib."""
    with pytest.raises(ValueError, match=f"max_items must be an integer >= 1, not {max_items}"):
        grid_layout(record, max_items=max_items)


@pytest.mark.parametrize("args,option", [(["similarity", "--bins", "0"], "--bins"),
                                         (["similarity", "--bins", "-3"], "--bins"),
                                         (["grid", "--max-items", "0"], "--max-items"),
                                         (["grid", "--max-items", "-1"], "--max-items")])
def test_plot_commands_check_counts(run_dir, tmp_path, args, option):
    out = tmp_path / "f.png"
    result = CliRunner().invoke(cli, ["plot", args[0], str(run_dir), *args[1:], "-o", str(out)])
    assert result.exit_code == 2 and option in result.output, result.output
    assert not out.exists()


def test_scales_figure_refuses_a_run_without_degraded_scales(run_dir, record, tmp_path):
    """`plot scales` drew the clean line alone with exit 0; `report` skips the figure for this reason."""
    record["conditions"] = record["conditions"][:1]
    with pytest.raises(MissingDataError, match="the run has no degraded scales"):
        plot_scales([record], tmp_path / "s.png")
    clean_only = tmp_path / "clean.json"
    clean_only.write_text(json.dumps(record))
    result = CliRunner().invoke(cli, ["plot", "scales", str(clean_only), "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 2 and "no degraded scales" in result.output
    assert not (tmp_path / "s.png").exists()


# --- F09: output path through a file -------------------------------------------------------------------------------


def test_output_path_through_a_file_is_named(run_dir, record, tmp_path):
    """`-o afile/x.png` said 'afile: File exists', which reads as 'will not overwrite'."""
    (tmp_path / "afile").write_text("")
    with pytest.raises(RestoreverError, match=r"a part of the path, .*afile, is a file, not a folder"):
        plot_roc([record], tmp_path / "afile" / "sub" / "x.png")
    result = CliRunner().invoke(cli, ["plot", "roc", str(run_dir), "-o", str(tmp_path / "afile" / "x.png")])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output, result.output


# --- F10: identification runs --------------------------------------------------------------------------------------


@pytest.fixture()
def ident_record(record) -> dict:
    """The record as `restorever ident` writes it: retrieval results, no verification, no scores, no examples."""
    for cond in record["conditions"]:
        for key in ("verification", "scores", "identity"):
            cond.pop(key, None)
    record["examples"] = None
    return record


def test_verification_figures_say_they_do_not_apply_to_identification(ident_record, run_dir, tmp_path):
    for draw in (lambda: plot_similarity(ident_record, tmp_path / "s.png"),
                 lambda: grid_layout(ident_record),
                 lambda: plot_roc([ident_record], tmp_path / "r.png")):
        with pytest.raises(MissingDataError, match="does not apply to an identification run") as info:
            draw()
        assert "rerun" not in str(info.value) and "--examples" not in str(info.value)
    written, skipped = plot_all(ident_record, run_dir, tmp_path / "figs")
    assert set(written) == {"cmc"} and skipped == {}


# --- F13: ROC legend and the clean curve ---------------------------------------------------------------------------


@pytest.mark.parametrize("draw", [plot_roc, plot_cmc])
def test_legend_sits_outside_the_axes_and_clean_has_its_own_style(record, figures, tmp_path, draw):
    """The frameless legend at 'lower right' covered degraded ROC curves; the clean curve (solid black) could not be
    told from `none` at the mildest scale (solid dark grey, same width)."""
    draw([record], tmp_path / "f.png")
    fig = figures[0]
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend_box, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend_box.y1 < axes_box.y0  # below the axes, over no curve
    curves = {ln.get_label().split(" (")[0]: ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    clean, mild = curves["clean"], curves["no restoration x4"]
    assert clean.get_color() == CLEAN_COLOUR and clean.get_alpha() < 1
    assert clean.get_linewidth() >= 2 * max(ln.get_linewidth() for name, ln in curves.items() if name != "clean")
    assert clean.get_zorder() < mild.get_zorder()  # a band under the curves, which stay visible on it
    styles = {(ln.get_color(), ln.get_linestyle(), ln.get_linewidth(), ln.get_alpha()) for ln in curves.values()}
    assert len(styles) == len(curves)

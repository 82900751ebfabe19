"""Round 22, nineteenth mutation pass (a second sample of the figures, the group breakdown and the comparison of
runs made separately): tests for the mutants that survived the modules' own tests (docs/reliability.md, "Round 22:
mutation testing, nineteenth pass"). Each asserts a property of what is drawn or written, read back from the
figure's artists or the files, against numbers put in by hand or recomputed independently."""
from __future__ import annotations

from pathlib import Path

import pytest

from restorever.reports import plots
from restorever.reports.breakdown import MAX_FIGURE_GROUPS, breakdown, plot_breakdown, write_breakdown
from restorever.reports.compare import comparison_markdown, compare_runs, merged_record
from restorever.reports.plots import plot_cmc, plot_scales
from restorever.reports.results import load_results

from .conftest import make_record
from .test_compare import _rename
from .test_plots import keep_figures


def _people(record: dict) -> list[str]:
    return sorted({Path(i).parent.name for i in record["pairs"]["a"] + record["pairs"]["b"]})


def _kept_breakdown_figures(monkeypatch, result: dict, tmp_path: Path) -> list:
    """The figures ``plot_breakdown(result)`` draws, kept instead of saved."""
    import restorever.reports.figure_io as figure_io

    figures = []
    monkeypatch.setattr(figure_io, "save_figure", lambda fig, out, **kw: figures.append(fig) or out)
    plot_breakdown(result, tmp_path / "b.png")
    return figures


# ---------------------------------------------------------------------------------------------------------------
# plots.py


def test_plots_exports_every_figure_function():
    """Every figure function is public (that each listed name exists is `test_import.py`'s check of every
    module)."""
    for name in ("plot_roc", "plot_scales", "plot_similarity", "plot_cmc", "plot_all", "score_axis_label",
                 "finite_thresholds", "plot_grid"):
        assert name in plots.__all__


def test_scales_figure_grows_by_its_legend_rows_only(run_dir, monkeypatch, tmp_path):
    """``legend_below`` keeps the axes at the height the figure was made with and adds the legend's rows below:
    the scales figure's final height is its initial height plus the legend's rows (another height given to the
    legend gave a figure with taller axes than every other column figure)."""
    import math

    made = []
    real_new_figure = plots.new_figure

    def spy(width, height, **kwargs):
        made.append(height)
        return real_new_figure(width, height, **kwargs)

    monkeypatch.setattr(plots, "new_figure", spy)
    figures = keep_figures(monkeypatch)
    plot_scales([load_results(run_dir)], tmp_path / "s.png")
    fig = figures[0]
    legend = fig.axes[0].get_legend()
    rows = math.ceil(len(legend.get_texts()) / legend._ncols)
    assert fig.get_size_inches()[1] == pytest.approx(made[0] + 0.3 + 0.11 * rows)
    assert fig.get_size_inches()[0] == pytest.approx(plots.COLUMN_WIDTH)


def test_cmc_axes_are_named_and_gridded(run_dir, monkeypatch, tmp_path):
    """The CMC figure says what its axes are (rank, identification rate in %) and draws its grid, as the ROC does."""
    figures = keep_figures(monkeypatch)
    plot_cmc([load_results(run_dir)], tmp_path / "c.png")
    ax = figures[0].axes[0]
    assert ax.get_xlabel() == "rank" and ax.get_ylabel() == "identification rate (%)"
    assert any(g.get_visible() for g in ax.xaxis.get_gridlines())
    assert any(g.get_visible() for g in ax.yaxis.get_gridlines())


# ---------------------------------------------------------------------------------------------------------------
# breakdown.py


def test_breakdown_figure_takes_the_recognizer_from_the_run_when_conditions_lack_it(tmp_path, monkeypatch):
    """An older record names its recognizer in ``config`` only: the breakdown figure's legend title still names it
    (the run's entry, not the conditions', is the one source then)."""
    rec = make_record(tmp_path)
    for cond in rec["conditions"]:
        del cond["recognizer"]
    people = _people(rec)
    groups = {p: ("female", "male")[n % 2] for n, p in enumerate(people)}
    res = breakdown(rec, groups, ("female", "male"), n_boot=20, key="person")
    assert all(c["recognizer"] is None for c in res["conditions"])
    title = _kept_breakdown_figures(monkeypatch, res, tmp_path)[0].axes[0].get_legend().get_title().get_text()
    assert title.split("; ")[0] == "recognizer arcface-r50"


def test_eight_groups_still_get_their_figure(tmp_path, monkeypatch):
    """Eight labelled groups are what the eight colour-blind-safe colours tell apart: the figure is drawn, each
    group in its own colour (nine groups get none: ``test_many_groups_get_tables_but_no_figure``)."""
    rec = make_record(tmp_path)
    people = _people(rec)
    groups = {p: f"g{n % MAX_FIGURE_GROUPS}" for n, p in enumerate(people)}
    res = breakdown(rec, groups, sorted(set(groups.values())), by="many", n_boot=20, key="person")
    paths = write_breakdown(res, tmp_path)
    assert paths["figure"] is not None and paths["figure"].is_file()
    ax = _kept_breakdown_figures(monkeypatch, res, tmp_path)[0].axes[0]
    colours: dict[str, set] = {}  # labels "g0 (no restoration)", "g0 (vqfr-v2)", ...: one colour per group
    for bars in ax.containers:
        colours.setdefault(bars.get_label().split(" (")[0], set()).add(bars.lines[0].get_color())
    groups_drawn = {f"g{n}" for n in range(MAX_FIGURE_GROUPS)}
    assert set(colours) >= groups_drawn and all(len(colours[g]) == 1 for g in groups_drawn)
    assert len({colours[g].pop() for g in groups_drawn}) == MAX_FIGURE_GROUPS


@pytest.mark.parametrize("level", [95, 1.0, 0.0])
def test_breakdown_refuses_a_level_outside_0_1(tmp_path, level):
    """``level`` is a fraction: 95 (for 95 %) or 1 would give a percentile interval of nothing."""
    rec = make_record(tmp_path)
    groups = {p: ("female", "male")[n % 2] for n, p in enumerate(_people(rec))}
    with pytest.raises(ValueError, match="level must be in"):
        breakdown(rec, groups, ("female", "male"), n_boot=20, level=level, key="person")


def test_breakdown_figure_ticks_are_the_runs_scales(tmp_path, monkeypatch):
    """The breakdown figure's scale axis is ticked at the run's scales and labelled ``x4``, ``x16`` (as the scales
    figure), not with matplotlib's powers of two."""
    rec = make_record(tmp_path)
    groups = {p: ("female", "male")[n % 2] for n, p in enumerate(_people(rec))}
    res = breakdown(rec, groups, ("female", "male"), n_boot=20, key="person")
    ax = _kept_breakdown_figures(monkeypatch, res, tmp_path)[0].axes[0]
    assert list(ax.get_xticks()) == [4, 16]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x4", "x16"]


# ---------------------------------------------------------------------------------------------------------------
# compare.py


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of one protocol and pairs made separately: none and vqfr-v2, then none and codeformer."""
    root = tmp_path_factory.mktemp("round22-compare")
    runs = make_record(root, examples=0), _rename(make_record(root, examples=0), "vqfr-v2", "codeformer", 0.2)
    for record in runs:
        record["protocol"]["pairs_sha256"] = "cd" * 32
    return runs


def test_comparison_names_each_runs_restorers(two_runs):
    """comparison.json's ``runs`` and comparison.md's runs table name each run's restorers (its
    ``config.restorers``), in the run's order."""
    first, second = two_runs
    comparison = compare_runs([first, second], ["vqfr", "codeformer"], n_boot=50)
    assert [r["restorers"] for r in comparison["runs"]] == [["none", "vqfr-v2"], ["none", "codeformer"]]
    md = comparison_markdown(comparison, merged_record(comparison, [first, second])).splitlines()
    assert "| vqfr | none, vqfr-v2 | 4, 16 | 0 | difface-test | probe |" in md
    assert "| codeformer | none, codeformer | 4, 16 | 0 | difface-test | probe |" in md

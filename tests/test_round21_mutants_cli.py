"""Round 21, mutation testing eleventh pass: the command line and a run's set-up. Each test closes a gap a surviving
mutant showed (docs/reliability.md): what a flag parses to, which value wins, what a run records."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.pipeline.costs import load_costs, record_run_costs


def _config(restorers):
    return SimpleNamespace(restorers=list(restorers), detector="mtcnn", recognizer="dlib", degradation="bicubic")


def test_run_costs_are_seconds_per_item_of_every_stage(tmp_path):
    """``record_run_costs`` stores each stage's measured seconds divided by its item count, keyed
    ``device|stage|backend``; the restore stage only when the run had one restorer (its time is not split)."""
    timings = {"n_embedded": 40, "embed_s": 10.0, "n_degraded": 16, "degrade_s": 2.0, "n_restored": 16,
               "restore_s": 48.0, "landmarks_s": 6.0}
    record_run_costs(tmp_path, "cpu", _config(["none", "vqfr-v2"]), timings, n_landmarks=12)
    assert load_costs(tmp_path) == {"cpu|landmarks|mtcnn": 0.5, "cpu|embed|dlib": 0.25, "cpu|degrade|bicubic": 0.125,
                                    "cpu|restore|vqfr-v2": 3.0}
    record_run_costs(tmp_path, "cuda", _config(["difface", "vqfr-v2"]), timings, n_landmarks=0)
    costs = json.loads((tmp_path / "costs.json").read_text())
    assert costs == {"cpu|landmarks|mtcnn": 0.5, "cpu|embed|dlib": 0.25, "cpu|degrade|bicubic": 0.125,
                     "cpu|restore|vqfr-v2": 3.0, "cuda|embed|dlib": 0.25, "cuda|degrade|bicubic": 0.125}


def test_plot_scales_flag_reaches_the_figure(monkeypatch, tmp_path):
    """``plot roc/cmc --scales 8,x32`` asks for scales [8, 32]; no flag asks for all (None); restorers likewise."""
    import restorever.reports.plots as plots
    import restorever.reports.results as results

    seen = []
    monkeypatch.setattr(results, "load_results", lambda path: {"path": path})
    for name in ("plot_roc", "plot_cmc"):
        monkeypatch.setattr(plots, name, lambda records, output, **kw: seen.append(kw) or output)
    run = tmp_path / "run"
    run.mkdir()
    for command in ("roc", "cmc"):
        for args, scales, restorers in [(["--scales", "8, x32"], [8, 32], None), ([], None, None),
                                        (["--restorers", "none,vqfr-v2"], None, ["none", "vqfr-v2"])]:
            seen.clear()
            result = CliRunner().invoke(cli, ["plot", command, str(run), "-o", str(tmp_path / "f.png"), *args])
            assert result.exit_code == 0, result.output
            assert seen[0]["scales"] == scales and seen[0]["restorers"] == restorers, (command, args, seen)
            assert seen[0]["names"] == ["run"]

"""Round 21, mutation testing, ninth pass: what a run writes and draws (results.json / results.md, the figures'
data, the retrieval metrics, attribute prediction). Each test closes a gap a surviving mutant showed; each asserts a
known answer (brute force, scikit-learn, numbers recomputed from the run's own predictions)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from restorever.attributes.groups import AttributeSchema
from restorever.attributes.metrics import accuracy_score
from restorever.attributes.predictor import FitOptions, fit_attribute_predictor
from restorever.attributes.probe import AttributeProbe, fit_probe
from restorever.metrics.retrieval import average_precision
from restorever.reports.grid import plot_grid
from restorever.reports.plots import SCALE_DODGE, plot_cmc, plot_scales
from restorever.reports.results import load_results, results_markdown, write_run

from .conftest import make_record

from .test_plots import _errorbar_containers, keep_figures


def _people_data(n_people: int = 18, per_person: int = 4, dim: int = 10, seed: int = 3):
    """Embeddings of ``n_people`` people with a noisy gender direction (axis 0) and age direction (axis 1), so the
    held-out accuracies lie strictly between chance and 1; every fourth person has no age label."""
    rng = np.random.default_rng(seed)
    gender, age = rng.integers(0, 2, n_people), rng.integers(0, 4, n_people)
    centres = rng.normal(size=(n_people, dim))
    centres[:, 0] += 1.2 * (2 * gender - 1)
    centres[:, 1] += 0.8 * (age - 1.5)
    x = np.repeat(centres, per_person, 0) + 0.9 * rng.normal(size=(n_people * per_person, dim))
    people = np.repeat([f"q{i:02d}" for i in range(n_people)], per_person).tolist()
    age_rows = np.repeat(age, per_person)
    age_rows[np.repeat(np.arange(n_people) % 4 == 0, per_person)] = -1
    return x.astype(np.float32), {"gender": np.repeat(gender, per_person), "age": age_rows}, people


@pytest.fixture(scope="module")
def fitted():
    x, labels, people = _people_data()
    predictor, report = fit_attribute_predictor(x, labels, people, AttributeSchema(), recognizer="dlib",
                                                options=FitOptions(folds=3, reweight_hidden=3, max_iter=40))
    return x, labels, people, predictor, report


# ------------------------------------------------------------------------------------------ attribute prediction

def test_fit_report_numbers_are_the_cross_fitted_predictions_accuracies(fitted):
    """The report's pooled and per-fold accuracies are those of the held-out (cross-fitted) predictions: each
    fold's model on its own held-out people, raw and re-weighted; the fold mean and std are numpy's of the folds."""
    x, labels, people, predictor, report = fitted
    people_arr = np.asarray(people)
    assert len(report["per_fold"]) == 3 == len(predictor.folds)
    assert (report["images"], report["people"], report["folds"]) == (len(x), 18, 3)
    for a, y in labels.items():
        entry = report["attributes"][a]
        assert (entry["images"], entry["people"]) == (int((y >= 0).sum()), len(set(people_arr[y >= 0].tolist())))
    assert report["attributes"]["age"]["people"] == 18 - 5  # every fourth of the 18 has no age label
    described = predictor.describe()  # what `restorever attributes fit` writes beside the model, and its meta
    assert described["classes"] == {"gender": 2, "age": 4} and described["embedding_dim"] == x.shape[1]
    assert described["folds"] == [sorted(held) for _, held in predictor.folds]
    assert (described["probe_hidden"], described["reweight_hidden"]) == (0, 3) and "file" not in described
    for rw, key in ((False, "raw"), (True, "reweighted")):
        pooled = predictor.predict(x, people=people, reweight=rw)  # every row by the fold model that held it out
        for a, y in labels.items():
            assert report["attributes"][a][key]["accuracy"] == pytest.approx(accuracy_score(y, pooled[a]), abs=1e-12)
        folds = []
        for k, (model, held) in enumerate(predictor.folds):
            rows = np.isin(people_arr, sorted(held))
            entry = report["per_fold"][k]
            assert (entry["fold"], entry["people"], entry["images"]) == (k, len(held), int(rows.sum()))
            for a, y in labels.items():
                own = model.probe.predict_proba(x[rows])
                if rw:
                    own = model.reweight.refine(predictor.schema.concat(own))
                assert entry[a][key] == pytest.approx(accuracy_score(y[rows], own[a]), abs=1e-12)
            folds.append([entry[a][key] for a in labels])
        for i, a in enumerate(labels):
            summary = report["attributes"][a][f"fold_accuracy_{key}"]
            values = [f[i] for f in folds]
            assert summary == {"mean": pytest.approx(np.mean(values)), "std": pytest.approx(np.std(values))}
            assert 0 < summary["std"]  # the folds differ: a swapped mean and std would not pass
    for a, y in labels.items():
        counts = np.bincount(y[y >= 0])
        assert report["attributes"][a]["majority_baseline"] == pytest.approx(counts.max() / counts.sum())


@pytest.mark.parametrize("options, ok", [
    (FitOptions(folds=2), True), (FitOptions(folds=1), False),
    (FitOptions(hidden=-1), False), (FitOptions(reweight_hidden=-1), False),
    (FitOptions(hidden=0, reweight_hidden=0), True),
    (FitOptions(l2=-1e-3), False), (FitOptions(reweight_l2=-1e-3), False), (FitOptions(l2=0.0, reweight_l2=0.0), True),
])
def test_fit_options_bounds(options, ok):
    """Two folds are the fewest that hold people out (and are allowed); a negative size or penalty of either the
    probe or the re-weighting module is refused on its own."""
    if ok:
        options.validate()
    else:
        with pytest.raises(ValueError):
            options.validate()


def test_a_head_without_labels_is_said_and_predicts_the_same_for_every_face(caplog):
    """``fit_probe`` given no ``age`` labels at all: it says so; nothing fits the age head, whose weights the L2
    penalty shrinks to zero and whose bias stays as initialised with the seed, so it gives every face the same
    probabilities (the softmax of that bias). The labelled gender head is fitted."""
    x, labels, _ = _people_data()
    with caplog.at_level(logging.WARNING, logger="restorever.attributes.probe"):
        probe = fit_probe(x, {"gender": labels["gender"]}, {"gender": 2, "age": 4}, max_iter=40, seed=7)
    assert any("no labelled example for age" in r.getMessage() for r in caplog.records)
    assert not any("for gender" in r.getMessage() for r in caplog.records)
    torch.manual_seed(7)
    start = AttributeProbe(x.shape[1], {"gender": 2, "age": 4})
    torch.testing.assert_close(probe.heads["age"].bias, start.heads["age"].bias, rtol=0, atol=0)
    with torch.no_grad():
        assert float(probe.heads["age"].weight.abs().max()) < 1e-3 < float(start.heads["age"].weight.abs().max())
        prior = torch.softmax(start.heads["age"].bias.double(), 0).numpy()
    age = probe.predict_proba(x)["age"]
    np.testing.assert_allclose(age, np.broadcast_to(prior, age.shape), atol=1e-3)
    assert accuracy_score(labels["gender"], probe.predict_proba(x)["gender"]) > 0.7


# ------------------------------------------------------------------------------------------ retrieval metrics

def test_average_precision_equals_sklearn_on_ranked_lists():
    """AP of a ranked relevance list (one or several relevant entries, or none) against scikit-learn's
    ``average_precision_score`` with the list order as the score; a single relevant entry at position k gives 1/k."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(21)
    rel = rng.random((40, 9)) < 0.25
    rel[:9] = False
    rel[np.arange(9), np.arange(9)] = True  # rows 0..8: one relevant entry at position 1..9
    rel[9] = False  # nothing relevant retrieved: 0
    ap = average_precision(rel)
    np.testing.assert_allclose(ap[:9], 1.0 / np.arange(1, 10))
    assert ap[9] == 0.0
    for row, value in zip(rel, ap):
        if row.any():
            assert value == pytest.approx(average_precision_score(row, -np.arange(row.size)), abs=1e-12)


# ------------------------------------------------------------------------------------------ figures' data

def test_grid_cells_hold_their_own_image_blank_and_missing_differ(own_run_dir, monkeypatch):
    """The tall grid: each face cell shows the PNG of its row (probe, scale) and column (method); the cell under
    the clean face of a probe's second row is blank (no image, no text), while a probe image the record lacks is
    marked ``n/a``."""
    record = load_results(own_run_dir)
    example = record["examples"][0]
    del example["images"]["x16/vqfr-v2"]
    Image.new("RGB", (64, 64), (120, 120, 30)).save(own_run_dir / example["images"]["x16/degraded"])  # row 2's own
    figures = keep_figures(monkeypatch)
    plot_grid(record, own_run_dir, "g.png", max_items=1, max_columns=4)
    axes = figures[0].axes
    assert len(axes) == 6  # 2 rows (x4, x16) x 3 columns (clean, degraded, vqfr-v2), row by row
    colours = {"clean": (200, 30, 30), "degraded": (30, 200, 30), "vqfr-v2": (30, 30, 200)}
    expected = [colours["clean"], colours["degraded"], colours["vqfr-v2"], None, (120, 120, 30), "n/a"]
    for ax, want in zip(axes, expected):
        texts = [t.get_text() for t in ax.texts]
        if want is None or want == "n/a":
            assert not ax.get_images() and texts == ([] if want is None else ["n/a"])
        else:
            pixels = np.asarray(ax.get_images()[0].get_array(), dtype=float).reshape(-1, 3)
            np.testing.assert_allclose(pixels.mean(0), want, atol=1.0)
            assert texts == []


def test_scales_points_are_the_stored_accuracies_dodged_in_legend_order(run_dir, monkeypatch):
    """Each series of the accuracy-against-scale figure: y = 100 x the stored ``accuracy_mean`` of its (restorer,
    scale), x = the scale shifted by :data:`SCALE_DODGE` octaves per series, left to right in legend order and
    centred on the scale (geometric mean); the clean line at the clean accuracy."""
    record = load_results(run_dir)
    figures = keep_figures(monkeypatch)
    plot_scales([record], "s.png")
    ax = figures[0].axes[0]
    bars = _errorbar_containers(ax)
    assert [c.get_label() for c in bars] == ["no restoration", "vqfr-v2"]
    stored = {(c["restorer"], c["scale"]): 100 * c["verification"]["accuracy_mean"] for c in record["conditions"]}
    xs = []
    for bar, restorer in zip(bars, ("none", "vqfr-v2")):
        x, y = (np.asarray(d, dtype=float) for d in bar.lines[0].get_data())
        np.testing.assert_allclose(y, [stored[(restorer, 4)], stored[(restorer, 16)]])
        xs.append(np.log2(x))
    np.testing.assert_allclose(xs[1] - xs[0], [SCALE_DODGE, SCALE_DODGE])
    np.testing.assert_allclose((xs[0] + xs[1]) / 2, np.log2([4, 16]))
    clean = [ln for ln in ax.get_lines() if ln.get_label().startswith("clean")]
    assert len(clean) == 1 and clean[0].get_ydata()[0] == pytest.approx(stored[("none", None)])


def test_cmc_counts_as_skipped_only_conditions_without_a_curve(run_dir, monkeypatch, caplog):
    """``plot_cmc(..., scales=[16])`` said "2 condition(s) without retrieval.cmc skipped" of a run whose every
    condition has one: the conditions left out on purpose were counted. Now only those without a curve are, and
    the curves drawn are the kept conditions' stored CMC."""
    import copy

    record = copy.deepcopy(load_results(run_dir))
    figures = keep_figures(monkeypatch)
    with caplog.at_level(logging.INFO, logger="restorever.reports.plots"):
        plot_cmc([record], "c.png", scales=[16])
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]
    kept = [c for c in record["conditions"] if c["scale"] in (None, 16)]
    drawn = [ln for ln in figures[0].axes[0].get_lines() if not ln.get_label().startswith("_")]
    assert len(drawn) == len(kept) == 3
    for line, cond in zip(drawn, kept):
        np.testing.assert_allclose(line.get_ydata(), [100 * v for v in cond["retrieval"]["cmc"]])
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(cond["retrieval"]["cmc"]) + 1))
    del record["conditions"][1]["retrieval"]  # none x4: left out by the filter, and without a curve
    del record["conditions"][3]["retrieval"]  # none x16: kept by the filter, without a curve
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="restorever.reports.plots"):
        plot_cmc([record], "c.png", scales=[16])
    assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()] == [
        "plot_cmc: 2 condition(s) without retrieval.cmc skipped"]


# ------------------------------------------------------------------------------------------ results.json and its folder

def test_a_rerun_removes_the_old_report_but_not_a_folder_holding_other_files(tmp_path):
    """A new run in a used folder removes the previous run's report files and a ``figures/`` folder of figures
    only (they described other results); a ``figures/`` folder that also holds the user's own file is kept whole,
    as is any other file; example PNGs the new record does not name are removed, those it names recorded with their
    sha256 in ``outputs``."""
    import hashlib

    def used(folder, extra_in_figures: bool):
        folder.mkdir()
        for name in ("report.html", "report.md", "tables.csv", "tables.tex", "mine.txt"):
            (folder / name).write_text("old")
        (folder / "figures").mkdir()
        (folder / "figures" / "roc.png").write_bytes(b"old png")
        if extra_in_figures:
            (folder / "figures" / "notes.txt").write_text("the user's own notes")
        stale = folder / "examples" / "x8" / "degraded" / "Someone_0001.png"
        stale.parent.mkdir(parents=True)
        stale.write_bytes(b"old example")
        record = make_record(folder)
        write_run(record, folder)
        return record

    for extra in (False, True):
        folder = tmp_path / f"run{int(extra)}"
        record = used(folder, extra)
        assert not any((folder / n).exists() for n in ("report.html", "report.md", "tables.csv", "tables.tex"))
        assert (folder / "mine.txt").read_text() == "old"
        assert (folder / "figures").exists() == extra
        if extra:
            assert sorted(p.name for p in (folder / "figures").iterdir()) == ["notes.txt", "roc.png"]
        assert not (folder / "examples" / "x8").exists()
        outputs = load_results(folder)["outputs"]
        named = [e["clean"] for e in record["examples"]] + [p for e in record["examples"] for p in e["images"].values()]
        assert named and all(outputs[rel]["sha256"] == hashlib.sha256((folder / rel).read_bytes()).hexdigest()
                             for rel in named)


def test_results_md_rows_are_the_numbers_recomputed_from_the_stored_scores(run_dir):
    """Each row of results.md's table: accuracy ± std, AUC, EER and TAR at the column's FAR recomputed from the
    condition's stored per-pair scores (AUC by scikit-learn), and the stored mean cosine to clean; one row per
    condition, in the record's order."""
    from sklearn.metrics import roc_auc_score

    from restorever.metrics.verification import verification_report

    record = load_results(run_dir)
    table = [line for line in (run_dir / "results.md").read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    far = header[4].removeprefix("TAR@FAR=").removesuffix(" %")
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[1:]]
    assert len(rows) == len(record["conditions"]) == 5
    for row, cond in zip(rows, record["conditions"]):
        sc = cond["scores"]
        same, score = np.asarray(sc["same"]), np.asarray(sc["score"])
        again = verification_report(same, score, np.asarray(sc["fold"]))
        tar = again["tar_at_far"][f"{float(far):g}"]
        assert tar is not None  # the column's FAR is resolved by this run
        assert row[1:6] == [f"{100 * again['accuracy_mean']:.2f} ± {100 * again['accuracy_std']:.2f}",
                            f"{roc_auc_score(same, score):.4f}", f"{100 * again['eer']:.2f}", f"{100 * tar:.2f}",
                            row[5]]
        assert row[5].split()[0] == f"{cond['identity']['cosine_to_clean_mean']:.4f}"


def test_results_md_says_how_degraded_faces_were_aligned_only_when_they_were(tmp_path):
    """With ``align_on="degraded"`` results.md lists each degraded condition's detections (``none x4 7 found / 1
    not found``, separated by ``; ``); with the default clean-landmark alignment (stored or not) it has no such
    line."""
    record = make_record(tmp_path)
    for i, cond in enumerate(c for c in record["conditions"] if c["scale"] is not None):
        cond["alignment"] = {"detected": 150 - i, "not_found": 10 + i}
    lines = results_markdown({**record, "config": {**record["config"], "align_on": "degraded"}}).splitlines()
    said = [line for line in lines if line.startswith("- landmarks of degraded faces")]
    assert len(said) == 1
    assert said[0].rsplit("as it is): ", 1)[1] == (
        "none x4 150 found / 10 not found; vqfr-v2 x4 149 found / 11 not found; none x16 148 found / 12 not found; "
        "vqfr-v2 x16 147 found / 13 not found")
    for config in ({**record["config"], "align_on": "clean"}, record["config"]):
        assert not any("landmarks of degraded" in line for line in results_markdown({**record, "config": config})
                       .splitlines())


def test_p_text_adds_digits_near_005_until_the_side_is_clear():
    """Near the 0.05 level ``p_text`` adds significant digits until the text no longer rounds onto or across it:
    0.0500003 and 0.0499997 need six. Until round 21 it stopped at six, so 0.04999997 and 0.05000003 both read
    ``0.05`` (the second is above the level); now only 0.05 itself does, and the float next to it on either side
    reads as on that side."""
    import math

    from restorever.reports.results import ALPHA, p_text

    assert p_text(0.0500003) == "0.0500003" and p_text(0.0499997, prefix="p") == "p=0.0499997"
    assert p_text(0.04999997) == "0.04999997" and p_text(0.05000003) == "0.05000003" and p_text(ALPHA) == "0.05"
    above, below = math.nextafter(ALPHA, 1), math.nextafter(ALPHA, 0)
    assert float(p_text(above)) > ALPHA and float(p_text(below)) < ALPHA
    assert p_text(0.031) == "0.031" and p_text(0.12, 3) == "0.12"  # far from the level: the digits asked for

"""Round 20, mutation testing fifth pass: the numbers of a paper's table and group breakdown.

Each test here was written for a mutant of ``metrics/verification.py``, ``reports/tables.py``, ``reports/compare.py``
or ``reports/breakdown.py`` that the module's own tests let through (docs/reliability.md, round 20); each fails on
its mutant and asserts a known answer: a cell computed by hand from a hand-built results.json, a count, scikit-learn
or brute force."""
from __future__ import annotations

import copy
import csv
import io

import numpy as np
import pytest

from restorever.metrics.verification import verification_report
from restorever.reports.breakdown import breakdown, joint_cluster_bootstrap_means
from restorever.reports.compare import compare_runs
from restorever.reports.tables import results_table_rows, to_csv, to_latex
from tests.conftest import brute_force_threshold

from .conftest import make_record
from .test_breakdown import CLASSES, GROUPS, tiny_record


def _rescored(cond: dict, shift: float) -> None:
    """``cond``'s scores moved by ``shift`` and its verification recomputed from them (so the record stays valid)."""
    s = cond["scores"]
    s["score"] = (np.asarray(s["score"]) + shift).tolist()
    cond["verification"] = verification_report(np.asarray(s["same"]), np.asarray(s["score"]), np.asarray(s["fold"]))


# --------------------------------------------------------------------------------------------- verification.py


def _brute_kfold(same: np.ndarray, score: np.ndarray, fold: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-fold accuracy and threshold by brute force: every training score (and -inf) tried as the threshold, the
    smallest of the best kept, applied to the held-out fold."""
    accs, thresholds = [], []
    for k in np.unique(fold):
        tr, te = fold != k, fold == k
        t, _ = brute_force_threshold(score[tr], same[tr])
        thresholds.append(float(t))
        accs.append(float(np.mean((score[te] > t) == same[te])))
    return accs, thresholds


def test_verification_report_layout_and_numbers_by_brute_force():
    """Every entry of a condition's ``verification`` (what tables.csv reads): the k-fold numbers by brute force,
    mean, population std and SEM (ddof 1 / sqrt k) of the folds, AUC from scikit-learn, TAR@FAR as the largest TPR
    at FPR <= FAR (None where 100 impostor pairs cannot resolve it), the pair count."""
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(20)
    same = np.repeat([1, 0], 100)
    score = np.round(rng.normal(size=200) + 1.2 * same, 2)  # rounded: tied scores
    fold = np.tile(np.arange(4), 50)
    rep = verification_report(same, score, fold)
    assert set(rep) == {"accuracy_mean", "accuracy_std", "accuracy_sem", "fold_accuracies", "thresholds", "auc",
                        "eer", "tar_at_far", "roc", "roc_thinning", "n_pairs"}
    accs, thresholds = _brute_kfold(same, score, fold)
    assert rep["fold_accuracies"] == pytest.approx(accs, abs=1e-12) and rep["thresholds"] == thresholds
    assert rep["accuracy_mean"] == pytest.approx(np.mean(accs), abs=1e-12)
    assert rep["accuracy_std"] == pytest.approx(np.std(accs), abs=1e-12)
    assert rep["accuracy_sem"] == pytest.approx(np.std(accs, ddof=1) / 2, abs=1e-12)
    assert rep["auc"] == pytest.approx(roc_auc_score(same, score), abs=1e-12) and rep["n_pairs"] == 200
    fpr, tpr, _ = roc_curve(same, score, drop_intermediate=False)
    assert rep["tar_at_far"]["0.1"] == pytest.approx(tpr[fpr <= 0.1].max(), abs=1e-12)
    assert rep["tar_at_far"]["0.01"] == pytest.approx(tpr[fpr <= 0.01].max(), abs=1e-12)
    assert rep["tar_at_far"]["0.001"] is None and rep["tar_at_far"]["0.0001"] is None
    assert 0 < rep["eer"] < 0.5


# --------------------------------------------------------------------------------------------------- tables.py


def test_a_record_without_n_pairs_counts_its_stored_scores(tmp_path):
    """An older record's verification has no ``n_pairs``: the CSV's n_pairs is the number of stored scores
    (160 pairs: 10 folds of 8 + 8), and a record that stores neither leaves the cell empty."""
    record = make_record(tmp_path, examples=0)
    for cond in record["conditions"]:
        del cond["verification"]["n_pairs"]
    rows = list(csv.DictReader(io.StringIO(to_csv(results_table_rows(record)))))
    assert [r["n_pairs"] for r in rows] == ["160"] * len(record["conditions"])
    bare = copy.deepcopy(record)
    del bare["conditions"][1]["scores"]
    assert [r["n_pairs"] for r in results_table_rows(bare)] == [160, None, *[160] * (len(record["conditions"]) - 2)]


def _hand_record(cells: dict, *, folds: int = 4, proto_folds: int | None = 4) -> dict:
    """A results.json by hand: ``cells`` is ``{(restorer, scale): (accuracy, sem)}`` (scale None: clean); each
    condition stores ``folds`` fold accuracies equal to its accuracy, so mean and SEM are as given."""
    conds = [{"restorer": r, "scale": s, "degradation": None if s is None else "blur", "degrade_side": "probe",
              "recognizer": "dlib", "verification": {"accuracy_mean": acc, "accuracy_sem": sem,
                                                     "fold_accuracies": [acc] * folds, "n_pairs": 40}}
             for (r, s), (acc, sem) in cells.items()]
    protocol = {"name": "hand", "pairs": 40, **({"folds": proto_folds} if proto_folds is not None else {})}
    restorers = list(dict.fromkeys(r for r, _ in cells))
    return {"restorever_version": "0.0.test", "config": {"protocol": "hand", "restorers": restorers, "seed": 3,
                                                         "degradation": "blur", "degrade_side": "probe"},
            "protocol": protocol, "conditions": conds}


def _body(tex: str) -> list[list[str]]:
    """The table's body rows, split into cells."""
    body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [line.removesuffix(" \\\\").split(" & ") for line in body.strip().splitlines()]


def test_every_paired_comparison_cell_of_tables_csv_by_hand():
    """A restored condition with every stored comparison (accuracy vs none and vs clean with McNemar p and their
    Holm p, the cosine difference with its sign-flip p, AUC and TAR@FAR differences, the TAR rule): each CSV cell is
    the number put in, under its own column; the unresolved FARs and the ``none`` row's comparisons are empty."""
    record = _hand_record({("none", None): (0.9, 0.01), ("none", 4): (0.75, 0.02), ("gfpgan", 4): (0.8125, 0.0125)})
    gfpgan = record["conditions"][2]
    test = {"p_value": 0.03125, "p_holm": 0.0625, "family_size": 2}
    gfpgan["comparison_to_none"] = {
        "accuracy_difference": 0.0625, "ci_low": 0.015625, "ci_high": 0.109375, "ci_level": 0.95,
        "mcnemar": dict(test), "mcnemar_clustered": {"p_value": 0.046875, "p_holm": 0.09375},
        "auc": {"difference": 0.0390625, "ci_low": -0.0078125, "ci_high": 0.0859375},
        "tar_at_far": {"0.1": {"difference": 0.125, "ci_low": 0.0, "ci_high": 0.25},
                       "0.01": {"difference": None, "ci_low": None, "ci_high": None}}, "tar_rule": 2}
    gfpgan["comparison_to_clean"] = {"accuracy_difference": -0.0875, "ci_low": -0.125, "ci_high": -0.0546875,
                                     "ci_level": 0.9, "mcnemar": {"p_value": 0.001953125, "p_holm": 0.005859375,
                                                                  "family_size": 3},
                                     "mcnemar_clustered": {"p_value": 0.0078125, "p_holm": 0.0234375}}
    gfpgan["identity"] = {"cosine_to_clean_mean": 0.875, "cosine_to_clean_median": 0.890625, "ci_low": 0.859375,
                          "ci_high": 0.8984375}
    gfpgan["identity_comparison_to_none"] = {"cosine_difference": 0.046875, "ci_low": 0.03125, "ci_high": 0.0625,
                                             "ci_level": 0.95, "bootstrap": {"clusters": 17},
                                             "sign_flip": {"p_value": 0.00390625, "p_holm": 0.01171875,
                                                           "family_size": 3}}
    want = {"vs_none_accuracy_difference": 0.0625, "vs_none_ci_low": 0.015625, "vs_none_ci_high": 0.109375,
            "vs_none_ci_level": 0.95, "vs_none_mcnemar_p": 0.03125, "vs_none_mcnemar_p_holm": 0.0625,
            "vs_none_clustered_p": 0.046875, "vs_none_clustered_p_holm": 0.09375, "vs_none_family_size": 2,
            "vs_none_auc_difference": 0.0390625, "vs_none_auc_ci_low": -0.0078125, "vs_none_auc_ci_high": 0.0859375,
            "vs_none_tar_at_far_0.1_difference": 0.125, "vs_none_tar_at_far_0.1_ci_low": 0.0,
            "vs_none_tar_at_far_0.1_ci_high": 0.25, "vs_none_tar_rule": 2,
            "vs_clean_accuracy_difference": -0.0875, "vs_clean_ci_low": -0.125, "vs_clean_ci_high": -0.0546875,
            "vs_clean_ci_level": 0.9, "vs_clean_mcnemar_p": 0.001953125, "vs_clean_mcnemar_p_holm": 0.005859375,
            "vs_clean_clustered_p": 0.0078125, "vs_clean_clustered_p_holm": 0.0234375, "vs_clean_family_size": 3,
            "cosine_to_clean_mean": 0.875, "cosine_to_clean_median": 0.890625, "cosine_to_clean_ci_low": 0.859375,
            "cosine_to_clean_ci_high": 0.8984375, "cos_vs_none_difference": 0.046875, "cos_vs_none_ci_low": 0.03125,
            "cos_vs_none_ci_high": 0.0625, "cos_vs_none_ci_level": 0.95, "cos_vs_none_sign_flip_p": 0.00390625,
            "cos_vs_none_sign_flip_p_holm": 0.01171875, "cos_vs_none_family_size": 3, "cos_vs_none_people": 17,
            "accuracy": 0.8125, "accuracy_sem": 0.0125, "accuracy_std": None, "n_pairs": 40, "folds": 4, "seed": 3}
    rows = list(csv.DictReader(io.StringIO(to_csv(results_table_rows(record)))))
    got = rows[2]
    for column, value in want.items():
        assert got[column] == ("" if value is None else repr(value)), column
    filled = {c for c, v in got.items() if v != ""}
    assert filled == set(want) - {"accuracy_std"} | {"restorer", "scale", "degradation", "degrade_side",
                                                     "recognizer"}
    assert all(rows[1][c] == "" for c in want if c.startswith(("vs_", "cos_vs_")))  # none x4: no comparison


def test_latex_rows_follow_the_runs_restorer_order():
    """Rows in ``config.restorers``' order (the user's ``--restorer`` list), whatever order the conditions are
    stored in; a restorer the config does not list comes last."""
    record = _hand_record({("gfpgan", 4): (0.8, 0.01), ("extra", 4): (0.7, 0.01), ("none", 4): (0.75, 0.02)})
    record["config"]["restorers"] = ["none", "gfpgan"]
    assert [row[0] for row in _body(to_latex(record))] == ["none", "gfpgan", "extra"]


def test_to_latex_refuses_a_record_without_verification():
    """An identification run has no accuracy to tabulate: a ValueError that says so, not a file of one comment."""
    record = _hand_record({("none", None): (0.9, 0.01)})
    del record["conditions"][0]["verification"]
    with pytest.raises(ValueError, match="the record has no verification conditions: no accuracy table to write"):
        to_latex(record)


def test_folds_are_the_stored_fold_accuracies_before_the_protocols_count():
    """A condition's folds are the fold accuracies it stores (2 here), the protocol's ``folds`` (10) only where it
    stores none; the caption says 2-fold."""
    record = _hand_record({("none", None): (0.9, 0.01), ("none", 4): (0.8, 0.02)}, folds=2, proto_folds=10)
    del record["conditions"][0]["verification"]["fold_accuracies"]
    assert [r["folds"] for r in results_table_rows(record)] == [10, 2]
    record["conditions"][0]["verification"]["fold_accuracies"] = [0.9, 0.9]
    del record["protocol"]["folds"]
    assert [r["folds"] for r in results_table_rows(record)] == [2, 2]
    assert "2-fold cross-validation" in to_latex(record)


def test_a_single_degraded_condition_gets_its_table():
    """One restorer at one scale (``--restorer none --scales 8``): one row, one cell, no bold (nothing to compare
    with), and the caption names the degradation, side and seed."""
    record = _hand_record({("none", None): (0.95, 0.005), ("none", 8): (0.8125, 0.0125)})
    tex = to_latex(record)
    assert _body(tex) == [["none", "81.25 $\\pm$ 1.25"]]
    assert "Columns: the probe images degraded with blur at scale $\\times s$ (seed 3)" in tex
    assert "Bold" not in tex and "Clean (undegraded) accuracy: 95.00 $\\pm$ 0.50." in tex
    assert "on hand: 40 pairs, 4-fold" in tex and "not available" not in tex  # every cell is there
    record["config"]["limit_pairs"] = 40  # `--limit-pairs 40`: the caption says the pairs are a subset
    record["protocol"]["pairs_requested"] = 40
    assert "on hand: 40 pairs (a subset balanced over the folds), 4-fold" in to_latex(record)


# -------------------------------------------------------------------------------------------------- compare.py


def test_a_restorer_in_three_runs_is_labelled_by_run_when_one_copy_differs(tmp_path):
    """Three runs with ``none``; the first two agree, the third's ``none`` at x16 (only there) scores otherwise
    (another device): every copy is labelled by its run, at every scale, though x4 agrees everywhere and the second
    run agrees with the first."""
    runs = [make_record(tmp_path, examples=0) for _ in range(3)]
    for i, record in enumerate(runs):
        record["protocol"]["pairs_sha256"] = "ab" * 32
        record["restorever_version"], record["created"] = f"0.{i}", f"2026-12-0{i + 1}"
    for cond in runs[2]["conditions"]:
        if cond["restorer"] == "none" and cond["scale"] == 16:
            _rescored(cond, 0.01)
    out = compare_runs(runs, ["a", "b", "c"], n_boot=20)
    for scale in (4, 16):
        labels = [c["label"] for c in out["conditions"] if c["scale"] == scale]
        assert labels == ["none (a)", "none (b)", "none (c)", "vqfr-v2"]
    assert "none: in runs a, b, c with different scores; labelled by run folder" in out["notes"]
    assert "vqfr-v2: in runs a, b, c with the same scores; one copy kept" in out["notes"]
    # comparison.json says which version made each run, and when; its clean entry names every run and holds the
    # clean numbers they share
    assert out["clean"]["runs"] == ["a", "b", "c"] and out["recognizer"] == "arcface-r50"
    assert out["clean"]["accuracy_mean"] == runs[0]["conditions"][0]["verification"]["accuracy_mean"]
    assert [(r["name"], r["restorever_version"], r["created"]) for r in out["runs"]] == [
        ("a", "0.0", "2026-12-01"), ("b", "0.1", "2026-12-02"), ("c", "0.2", "2026-12-03")]


def test_clean_conditions_with_the_same_scores_but_other_labels_are_refused(tmp_path):
    """Two runs whose clean scores are equal number for number but whose same/different labels differ in one pair
    (another pairs file of the same length): not the same evaluated pairs, refused; other folds likewise."""
    from restorever.errors import RestoreverError
    from restorever.reports.compare import check_comparable

    first, second = (make_record(tmp_path, examples=0) for _ in range(2))
    for key in ("same", "fold"):
        other = copy.deepcopy(second)
        for cond in other["conditions"]:
            values = cond["scores"][key]
            values[0] = 1 - values[0] if key == "same" else (values[0] + 1) % 10
            _rescored(cond, 0.0)
        with pytest.raises(RestoreverError, match=r"clean conditions disagree \(a and b: other labels or folds\)"):
            check_comparable([first, other], ["a", "b"])


# ------------------------------------------------------------------------------------------------ breakdown.py


def test_joint_bootstrap_takes_a_single_replicate():
    """``n_boot=1`` is a valid request (one replicate, the first of any longer run with the same seed)."""
    values, clusters = np.array([0.9, 0.7, 0.5, 0.4]), np.array(["A", "A", "B", "C"])
    in_a, in_b = np.array([True, True, False, False]), np.array([False, True, True, True])
    one_a, one_b, k = joint_cluster_bootstrap_means(values, clusters, in_a, in_b, n_boot=1, seed=5)
    many_a, many_b, _ = joint_cluster_bootstrap_means(values, clusters, in_a, in_b, n_boot=50, seed=5)
    assert k == 3 and one_a.shape == (1,)
    np.testing.assert_array_equal(np.r_[one_a, one_b], np.r_[many_a[:1], many_b[:1]])
    with pytest.raises(ValueError, match="n_boot must be positive, got 0"):
        joint_cluster_bootstrap_means(values, clusters, in_a, in_b, n_boot=0)


def test_the_joint_interval_keys_labels_by_image_id_by_default():
    """``joint_difference_interval`` reads ``groups`` by image id unless told otherwise: one person with one image
    in each group is drawn in every replicate, so the interval is the difference itself, (1 - 0.9) - (1 - 0.6)."""
    from restorever.reports.breakdown import joint_difference_interval

    per_item = {"P/P_0001.jpg": 0.9, "P/P_0002.jpg": 0.6}
    groups = {"P/P_0001.jpg": "f", "P/P_0002.jpg": "m"}
    low, high, used = joint_difference_interval(per_item, groups, "f", "m", n_boot=40)
    assert (low, high, used) == (pytest.approx(-0.3, abs=1e-12), pytest.approx(-0.3, abs=1e-12), 40)


def test_a_clean_only_run_takes_the_pairs_second_images_as_probes():
    """With no degraded condition the probes are the pairs' second images (the clean per_item also holds the
    gallery's): 4 female (A2, B1, B3, B4) and 4 male (C2, C3, C5, C6) probes, counted by hand."""
    record = tiny_record()
    record["conditions"] = record["conditions"][:1]
    res = breakdown(record, GROUPS, CLASSES, n_boot=50)
    ident = res["conditions"][0]["groups"]
    assert [ident[g]["identity"]["n_probes"] for g in CLASSES] == [4, 4]
    assert [ident[g]["identity"]["n_people"] for g in CLASSES] == [2, 1]
    assert res["reference"] == "female"  # a tie of probe counts: the first class

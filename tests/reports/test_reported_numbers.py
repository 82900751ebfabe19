"""Known answers for the numbers a paper reports, each closing a gap that mutation testing of the metric and
statistics modules found (docs/reliability.md, round 18): a change to the code that these pin made no test fail.
Cross-checks are scikit-learn, brute force over every draw, or values computed by hand in the comments."""
from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn import metrics as skm

import restorever
from restorever.cli import cli
from restorever.metrics.retrieval import identification_report, ranks_from_scores
from restorever.metrics.similarity import identity_to_clean, score_pairs
from restorever.metrics.verification import roc_auc_score, roc_curve, tar_at_far, weighted_auc_and_tar
from restorever.reports import identity_stats, paired, rate_stats, statistics
from restorever.reports.compare import DEFAULT_N_BOOT
from restorever.reports.identity_stats import identity_interval
from restorever.reports.statistics import (add_adjusted_p_values, cluster_bootstrap_replicates, clustered_mcnemar,
                                           compare_conditions, pair_decisions, percentile_interval)

# ------------------------------------------------------------------------------------------------ verification


def test_weighted_auc_and_tar_rows_equal_scikit_learn_on_each_weighting():
    """Every row of the bootstrap's vectorised AUC / TAR@FAR is the weighted ROC of scikit-learn: AUC its
    ``roc_auc_score`` and TAR the largest weighted TPR among its ROC points at a weighted FPR <= FAR (brute force
    over the points). Scores are tied in places; some weights are zero, as a replicate that misses a person."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 120)
    s = np.round(rng.normal(size=120) + 1.5 * y, 1)  # rounded: ties across the two classes
    weights = rng.integers(0, 4, size=(6, 120)).astype(float)
    fars = [0.5, 0.1, 0.05]
    area, tar = weighted_auc_and_tar(y, s, weights, fars)
    assert area.shape == (6,) and tar.shape == (6, 3)
    for r, w in enumerate(weights):
        assert area[r] == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w), abs=1e-12)
        fpr, tpr, _ = skm.roc_curve(y, s, sample_weight=w, drop_intermediate=False)
        for j, far in enumerate(fars):
            assert tar[r, j] == pytest.approx(max(t for f, t in zip(fpr, tpr) if f <= far + 1e-12), abs=1e-12)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert tar[r, j] == pytest.approx(tar_at_far(y, s, far, sample_weight=w), abs=1e-12)
        assert area[r] == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    # an impostor tied with a genuine pair at the top score: ROC (0, 0), (0.5, .5), (0.5, 1), (1, 1): TAR 0 at FAR .4
    # AUC by hand: genuine 0.9 beats impostor 0.1 and ties 0.9 (1.5), genuine 0.3 beats 0.1 (1): 2.5 / 4
    area, tar = weighted_auc_and_tar([0, 1, 1, 0], [0.9, 0.9, 0.3, 0.1], np.ones((1, 4)), [0.4, 0.5])
    assert area[0] == pytest.approx(0.625) and tar[0].tolist() == [0.0, 1.0]
    # a weighting that keeps no negative pair has no ROC: NaN, not a number
    none_negative = np.where(y == 1, 1.0, 0.0)[None, :]
    area, tar = weighted_auc_and_tar(y, s, none_negative, fars)
    assert np.isnan(area).all() and np.isnan(tar).all()
    for bad in ([0.0], [1.5], [[0.1]]):
        with pytest.raises(ValueError, match="fars must be rates"):
            weighted_auc_and_tar(y, s, weights, bad)
    with pytest.raises(ValueError, match="sample_weights must be"):
        weighted_auc_and_tar(y, s, weights[:, :-1], fars)


def test_a_curve_of_both_classes_warns_of_nothing():
    """The 'no positive pairs' / 'no negative pairs' warnings are for one-class input only (they land in a run's
    log, where a reader takes them for a broken protocol)."""
    y, s = np.array([0, 1, 0, 1, 1]), np.array([0.1, 0.9, 0.4, 0.35, 0.8])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        roc_curve(y, s)
        assert roc_auc_score(y, s) == pytest.approx(skm.roc_auc_score(y, s))


# -------------------------------------------------------------------------------------------------- similarity


def test_identity_to_clean_hand_computed():
    """Cosines 1, 0 and 1/3 to the clean embeddings: mean 4/9, population std sqrt(14)/9, median 1/3; distances
    0, sqrt(13), sqrt(8); each per-image cosine rounded to 6 decimals (as results.json stores it)."""
    clean = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 2.0]), "c": np.array([1.0, 0.0])}
    emb = {"a": np.array([5.0, 0.0]), "b": np.array([3.0, 0.0]), "c": np.array([1.0, math.sqrt(8.0)])}
    out = identity_to_clean(clean, emb, ["a", "b", "c"])
    assert out["n"] == 3
    assert out["cosine_to_clean_mean"] == pytest.approx(4 / 9, abs=1e-12)
    assert out["cosine_to_clean_std"] == pytest.approx(math.sqrt(14) / 9, abs=1e-12)
    assert out["cosine_to_clean_median"] == pytest.approx(1 / 3, abs=1e-12)
    assert out["l2_to_clean_mean"] == pytest.approx((4 + math.sqrt(13) + math.sqrt(8)) / 3, abs=1e-12)
    assert out["per_item"] == {"a": 1.0, "b": 0.0, "c": 0.333333}
    assert identity_to_clean(clean, emb, []) == {"cosine_to_clean_mean": None, "n": 0}


def test_score_pairs_known_answers():
    a = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[4.0, -3.0], [1.0, 0.0], [2.0, 2.0]])
    # orthogonal: 0; an all-zero embedding scores 0 (not NaN); parallel of different length: 1
    np.testing.assert_allclose(score_pairs("cosine", a, b), [0.0, 0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(score_pairs("euclidean", a, b), [-math.sqrt(50), -1.0, -math.sqrt(2)])


# --------------------------------------------------------------------------------------------- identification


def test_a_mate_column_past_the_gallery_is_refused_and_no_probes_give_no_rates():
    with pytest.raises(ValueError, match="scores must be \\[Q, N\\]"):
        ranks_from_scores(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="mate columns must be in 0..2"):
        ranks_from_scores(np.zeros((2, 3)), np.array([0, 3]))
    out = identification_report(np.empty(0), searched_fraction=np.empty(0), search_seconds=0.5,
                                reference_ranks=np.empty(0))
    assert out["n_probes"] == 0 and all(math.isnan(out[k]) for k in ("rank1", "map", "gallery_fraction",
                                                                     "rank1_lost_to_filter", "rank1_gained"))
    assert math.isfinite(out["search_ms_per_query"])


# ------------------------------------------------------------------------------------------------ statistics


def test_a_stored_p_value_outside_0_1_counts_as_no_test():
    """A damaged record's p of 1.5 or -0.2 is left out of the Holm family (NaN), not an error that stops report."""
    record = {"conditions": [{"comparison_to_none": {"mcnemar": {"p_value": p}}} for p in (1.5, -0.2, 0.01, 0.03)]}
    add_adjusted_p_values(record)
    tests = [c["comparison_to_none"]["mcnemar"] for c in record["conditions"]]
    assert [t["p_holm"] for t in tests] == [None, None, pytest.approx(0.02), pytest.approx(0.03)]
    assert {t["family_size"] for t in tests} == {2}


def test_clustered_mcnemar_of_no_pairs():
    assert clustered_mcnemar([], [], []) == statistics.ClusteredMcNemarResult(0, 1.0, 0)


def test_rate_comparison_of_one_class_is_none_and_a_cell_shows_four_digits(caplog):
    """With one kind of pair there is no ROC: no AUC and no TAR difference (None, not a dict of NaN). And the
    table cell of a stored difference, as rate_cell's docstring shows it."""
    cond = {"scores": {"same": [1] * 6, "score": [0.1, 0.5, 0.2, 0.9, 0.3, 0.4]},
            "verification": {"tar_at_far": {"0.1": None}}}
    assert rate_stats.compare_rates(cond, cond, np.arange(6) // 2, n_boot=50) == {
        "auc": None, "tar_at_far": {"0.1": None}, "tar_rule": rate_stats.TAR_RULE}
    cell = rate_stats.rate_cell({"difference": 0.0123, "ci_low": -0.005, "ci_high": 0.029})
    assert cell == "+0.0123 [-0.0050, +0.0290]"
    assert rate_stats.rate_cell({"difference": 0.0123, "ci_low": None, "ci_high": None}) == "+0.0123"


def test_two_people_are_enough_for_an_interval():
    """Two people resample into 3 distinct multisets: an interval, computed as the bootstrap's percentiles (only
    one person gives none). Accuracy: A's two pairs are right in both conditions, B's pair right only in other."""
    per_item = {"A/A_1.jpg": 0.2, "A/A_2.jpg": 0.4, "B/B_1.jpg": 0.9}
    out = identity_interval(per_item, n_boot=300, seed=1)
    reps, k = cluster_bootstrap_replicates([0.2, 0.4, 0.9], [0, 0, 1], n_boot=300, seed=1)
    assert k == 2 and (out["ci_low"], out["ci_high"]) == percentile_interval(reps, 0.95)
    assert out["ci_low"] == pytest.approx(0.3) and out["ci_high"] == pytest.approx(0.9)  # AA..: 0.3, BB..: 0.9

    def cond(score):
        return {"restorer": "x", "scale": 8, "scores": {"same": [1, 1, 1], "fold": [0, 1, 1], "score": score},
                "verification": {"thresholds": [0.5, 0.5]}}

    ref, other = cond([0.9, 0.9, 0.1]), cond([0.9, 0.9, 0.9])
    assert pair_decisions(ref["scores"], [0.5, 0.5]).tolist() == [True, True, False]
    comp = compare_conditions(ref, other, np.array([0, 0, 1]), n_boot=300, estimator="pooled")
    assert comp["accuracy_difference"] == pytest.approx(1 / 3)
    # replicates: both draws A -> 0, both B -> 1, one of each -> 1/3; the 95 % interval spans [0, 1]
    assert comp["ci_low"] == pytest.approx(0.0) and comp["ci_high"] == pytest.approx(1.0)


def test_paired_accuracy_test_takes_two_folds_and_refuses_any_label_but_0_and_1():
    y = np.tile([1, 0], 20)
    folds = np.repeat([0, 1], 20)
    a = (y - 0.5) + np.random.default_rng(0).normal(size=40)
    out = restorever.paired_accuracy_test(y, a, -a, folds, people=np.arange(40), n_boot=100)
    assert len(out["thresholds"]["a"]) == 2 and out["accuracy_difference"] < 0
    y_bad = y.copy()
    y_bad[7] = 2
    with pytest.raises(ValueError, match="^paired_accuracy_test: y_true must hold only 0"):  # named, up front
        restorever.paired_accuracy_test(y_bad, a, -a, folds, people=np.arange(40))


def test_library_defaults_give_a_runs_numbers():
    """A run stores its statistics with the defaults of add_comparisons / add_identity_statistics, and
    paired.py promises a run's numbers for the same options: every public entry point must default to the same
    replicates, level and seed as those and as the CLI's --bootstrap (else a library user's 'same' call differs);
    a seed of None is the run's config seed."""
    functions = [statistics.cluster_bootstrap_replicates, statistics.cluster_bootstrap_difference,
                 statistics.compare_conditions, statistics.add_comparisons, statistics.cluster_bootstrap_counts,
                 rate_stats.compare_rates, identity_stats.identity_interval, identity_stats.compare_identity,
                 identity_stats.add_identity_statistics, paired.paired_accuracy_test, paired.paired_similarity_test]
    defaults = {"n_boot": set(), "level": set(), "seed": set()}
    for fn in functions:
        for name, param in inspect.signature(fn).parameters.items():
            if name in defaults:
                defaults[name].add(param.default)
    report_default = next(p.default for p in cli.commands["report"].params if p.name == "n_boot")
    assert defaults == {"n_boot": {DEFAULT_N_BOOT}, "level": {0.95}, "seed": {0, None}}
    assert report_default == DEFAULT_N_BOOT
    assert "--bootstrap" in CliRunner().invoke(cli, ["report", "--help"]).output


def test_the_bootstrap_does_not_depend_on_how_many_replicates_are_computed_at_a_time():
    """``chunk`` bounds memory only: the draws are the same for any chunk (the generator's stream does not depend
    on how many replicates each call asks for), so the default's (256, what a run stores and validate recomputes)
    are reproduced, and the replicates and intervals up to the last bits of a matrix product (whose kernel depends
    on the number of rows). The mutants that change a ``chunk`` are equivalent by this."""
    def counts(k, n_boot, seed, chunk):
        return np.concatenate([c for _, c in statistics.cluster_bootstrap_counts(k, n_boot=n_boot, seed=seed,
                                                                                 chunk=chunk)])

    reference = counts(9, 700, 2, 256)
    for chunk in (1, 7, 64, 255, 300, 1000):
        np.testing.assert_array_equal(counts(9, 700, 2, chunk), reference, err_msg=f"chunk {chunk}")
    rng = np.random.default_rng(8)
    values, clusters = rng.random(60), rng.integers(0, 9, 60)
    clusters[:9] = np.arange(9)
    reps = {chunk: cluster_bootstrap_replicates(values, clusters, n_boot=700, seed=2, chunk=chunk)[0]
            for chunk in (7, 256)}
    np.testing.assert_allclose(reps[7], reps[256], rtol=1e-13, atol=0)
    ref, other = rng.random(60) < 0.7, rng.random(60) < 0.8
    intervals = [statistics.cluster_bootstrap_difference(ref, other, clusters, n_boot=500, seed=1, chunk=chunk)
                 for chunk in (16, 256)]
    assert (intervals[0].low, intervals[0].high) == pytest.approx((intervals[1].low, intervals[1].high), abs=1e-12)

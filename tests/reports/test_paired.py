"""The paired statistics on a user's own arrays equal those a run stores for the same scores (no results.json)."""
from __future__ import annotations

import numpy as np
import pytest

import restorever
from restorever.reports.identity_stats import compare_identity
from restorever.reports.statistics import compare_conditions, holm_adjust, pair_clusters, person_of

from .conftest import make_record


def _conditions(record, restorer, scale):
    return next(c for c in record["conditions"] if c["restorer"] == restorer and c["scale"] == scale)


def _without(d, *keys):
    return {k: (_without(v, *keys) if isinstance(v, dict) else v) for k, v in d.items() if k not in keys}


@pytest.mark.parametrize("estimator", ["fold_mean", "pooled"])
def test_accuracy_test_equals_compare_conditions_on_the_record(tmp_path, estimator):
    record = make_record(tmp_path)
    ref, oth = _conditions(record, "none", 16), _conditions(record, "vqfr-v2", 16)
    clusters = pair_clusters(record["pairs"]["a"], record["pairs"]["b"], "probe")
    stored = compare_conditions(ref, oth, clusters, n_boot=500, seed=3, estimator=estimator)
    s = ref["scores"]
    people = [person_of(b) for b in record["pairs"]["b"]]
    mine = restorever.paired_accuracy_test(s["same"], s["score"], oth["scores"]["score"], s["fold"], people=people,
                                           n_boot=500, seed=3, estimator=estimator)
    assert mine["thresholds"] == {"a": ref["verification"]["thresholds"], "b": oth["verification"]["thresholds"]}
    assert _without(mine, "thresholds", "resampled") == _without(stored, "reference", "resampled")
    assert mine["accuracy_difference"] == pytest.approx(mine["accuracy"] - mine["accuracy_reference"])
    assert stored["mcnemar"]["b"] + stored["mcnemar"]["c"] > 0  # the comparison is not trivial


def test_accuracy_test_sign_and_independent_pairs():
    rng = np.random.default_rng(1)
    y = np.tile([1, 0], 40)
    folds = np.repeat(np.arange(4), 20)
    good = (y - 0.5) * 3 + rng.normal(size=y.size)
    bad = (y - 0.5) * 0.3 + rng.normal(size=y.size)
    out = restorever.paired_accuracy_test(y, bad, good, folds, people=np.arange(y.size), n_boot=200)
    assert out["accuracy"] > out["accuracy_reference"] and out["accuracy_difference"] > 0  # b - a
    assert out["mcnemar"]["c"] > out["mcnemar"]["b"]  # c: pairs b gets right and a wrong
    assert out["bootstrap"]["clusters"] == y.size and out["bootstrap"]["resampled"].startswith("pairs")


@pytest.mark.parametrize("change, message", [
    (dict(scores_b=np.arange(79.0)), "equal length"),
    (dict(scores_a=np.r_[np.nan, np.zeros(79)]), "scores_a contains NaN"),
    (dict(folds=np.zeros(80, int)), "one fold"),
    (dict(people=None), "people is required"),
    (dict(people=["x"] * 79), "one label per entry"),
    (dict(y_true=np.full(80, 2)), "only 0"),
])
def test_accuracy_test_refuses_bad_input(change, message):
    args = dict(y_true=np.tile([1, 0], 40), scores_a=np.linspace(0, 1, 80), scores_b=np.linspace(1, 0, 80),
                folds=np.repeat(np.arange(4), 20), people=np.arange(80) // 2)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        restorever.paired_accuracy_test(args.pop("y_true"), args.pop("scores_a"), args.pop("scores_b"),
                                        args.pop("folds"), **args)


def test_similarity_test_equals_compare_identity_on_the_record(tmp_path):
    record = make_record(tmp_path)
    ref, oth = _conditions(record, "none", 4), _conditions(record, "vqfr-v2", 4)
    items = sorted(ref["identity"]["per_item"])
    for exact_max in (20, 3):  # enumerated, and drawn sign vectors
        stored = compare_identity(ref, oth, n_boot=400, seed=5, exact_max=exact_max, n_draws=3000)
        mine = restorever.paired_similarity_test([ref["identity"]["per_item"][i] for i in items],
                                                 [oth["identity"]["per_item"][i] for i in items],
                                                 people=[person_of(i) for i in items], n_boot=400, seed=5,
                                                 exact_max=exact_max, n_draws=3000)
        assert mine == _without(stored, "reference")
        assert mine["ci_low"] is not None and mine["sign_flip"]["clusters"] > 3


def test_similarity_test_refuses_bad_input():
    a, b = np.linspace(0.5, 0.9, 6), np.linspace(0.6, 1.0, 6)
    people = ["p", "p", "q", "q", "r", "r"]
    with pytest.raises(ValueError, match="equal length"):
        restorever.paired_similarity_test(a, b[:5], people=people)
    with pytest.raises(ValueError, match="similarity_b contains NaN"):
        restorever.paired_similarity_test(a, np.r_[b[:5], np.nan], people=people)
    with pytest.raises(ValueError, match="people is required"):
        restorever.paired_similarity_test(a, b, people=None)
    out = restorever.paired_similarity_test(a, b, people=people)
    assert out["cosine_difference"] == pytest.approx(0.1) and out["bootstrap"]["clusters"] == 3


def test_holm_adjust_is_exported():
    assert restorever.holm_adjust is holm_adjust
    np.testing.assert_allclose(restorever.holm_adjust([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def test_accuracy_test_gives_no_interval_for_one_person(caplog):
    """Resampling one person redraws the same pairs every time: compare_conditions' interval is [d, d], which a
    reader takes for certainty. The wrapper gives None, as the identity interval does."""
    rng = np.random.default_rng(2)
    y = np.tile([1, 0], 40)
    folds = np.repeat(np.arange(4), 20)
    a, b = (y - 0.5) + rng.normal(size=80), (y - 0.5) * 3 + rng.normal(size=80)
    out = restorever.paired_accuracy_test(y, a, b, folds, people=["Madonna"] * 80, n_boot=100)
    assert out["accuracy_difference"] > 0 and out["ci_low"] is None and out["ci_high"] is None
    assert "one person" in caplog.text

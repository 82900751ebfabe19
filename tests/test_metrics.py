"""Verification metrics: cross-checked against scikit-learn, a brute-force reference of the exact threshold rule,
and a plain implementation of insightface's grid-search rule."""
from __future__ import annotations

import warnings

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn import metrics as skm

from restorever.metrics import (auc, best_threshold, eer, kfold_accuracy, roc_auc_score, roc_curve, tar_at_far,
                                verification_report)


def _data(n=600, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + 1.5 * y
    if ties:
        s = np.round(s, 1)
    folds = np.arange(n) % 10
    return y, s, folds


def _brute_best(y, s):
    thresholds = np.r_[-np.inf, np.unique(s)]  # "all same", then each score as the highest one predicted different
    accs = [np.mean((s > t) == y) for t in thresholds]
    best = int(np.argmax(accs))
    return thresholds[best], accs[best]


def _insightface_grid(y, s, folds, thresholds=np.arange(-4, 4, 0.01)):
    """insightface eval/verification.py rule on similarities: first threshold of a fixed grid maximising train
    accuracy, applied to the test fold."""
    accs = []
    for f in np.unique(folds):
        train, test = folds != f, folds == f
        train_acc = [np.mean((s[train] > t) == y[train]) for t in thresholds]
        t = thresholds[int(np.argmax(train_acc))]
        accs.append(np.mean((s[test] > t) == y[test]))
    return np.asarray(accs)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("drop", [False, True])
def test_roc_curve_matches_sklearn(ties, drop):
    y, s, _ = _data(ties=ties)
    ours = roc_curve(y, s, drop_intermediate=drop)
    ref = skm.roc_curve(y, s, drop_intermediate=drop)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b)


def test_roc_curve_sample_weight_matches_sklearn():
    y, s, _ = _data()
    w = np.random.default_rng(1).uniform(0.1, 2, y.size)
    for a, b in zip(roc_curve(y, s, sample_weight=w), skm.roc_curve(y, s, sample_weight=w)):
        np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn(ties):
    y, s, _ = _data(ties=ties)
    assert roc_auc_score(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    assert auc(fpr, tpr) == pytest.approx(skm.auc(fpr, tpr))


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_is_exact(seed):
    y, s, _ = _data(n=300, seed=seed, ties=seed % 2 == 1)
    t, acc = best_threshold(y, s)
    t_ref, acc_ref = _brute_best(y, s)
    assert acc == pytest.approx(acc_ref)
    assert t == pytest.approx(t_ref)  # smallest among equally good thresholds
    assert np.mean((s > t) == y) == pytest.approx(acc)


def test_kfold_accuracy_beats_or_matches_grid_on_training_and_agrees_on_easy_data():
    y, s, folds = _data(n=6000, seed=3)
    ours = kfold_accuracy(y, s, folds)
    grid = _insightface_grid(y, s, folds)
    # Both rules pick a threshold between the same class clouds: fold accuracies agree closely.
    assert abs(ours.mean - grid.mean()) < 0.005
    assert ours.fold_accuracies.shape == (10,)
    assert ours.std == pytest.approx(np.std(ours.fold_accuracies))
    assert ours.sem == pytest.approx(np.std(ours.fold_accuracies, ddof=1) / np.sqrt(10))


def test_kfold_accuracy_matches_grid_when_scores_lie_on_the_grid():
    # Scores on a 0.01 grid offset by half a step: every exact boundary is a grid point, so both rules coincide.
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 2000)
    s = np.round(rng.normal(size=2000) + y, 2) + 0.005
    folds = np.arange(2000) % 10
    grid = np.round(np.arange(-5, 5, 0.01), 2)
    ours = kfold_accuracy(y, s, folds)
    np.testing.assert_allclose(ours.fold_accuracies, _insightface_grid(y, s, folds, grid))


def test_kfold_threshold_chosen_on_other_folds():
    # fold 0 alone would choose a threshold separating it perfectly; the held-out rule must not.
    y = np.array([1, 0] * 10)
    s = np.where(y == 1, 1.0, 0.0)
    s[:2] = [0.0, 1.0]  # fold 0 reversed
    folds = np.repeat(np.arange(10), 2)
    res = kfold_accuracy(y, s, folds)
    assert res.fold_accuracies[0] == 0.0
    assert np.all(res.fold_accuracies[1:] == 1.0)


def test_invariances():
    y, s, folds = _data(n=1000, seed=4)
    base = kfold_accuracy(y, s, folds)
    perm = np.random.default_rng(0).permutation(y.size)
    assert kfold_accuracy(y[perm], s[perm], folds[perm]).mean == pytest.approx(base.mean)
    # strictly monotone transforms of the scores change nothing
    assert kfold_accuracy(y, np.exp(s), folds).mean == pytest.approx(base.mean)
    assert roc_auc_score(y, 3 * s + 1) == pytest.approx(roc_auc_score(y, s))
    assert eer(y, np.tanh(s)) == pytest.approx(eer(y, s))


def test_eer_and_tar_known_answers():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    assert eer(y, s) == pytest.approx(0.25)
    perfect = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])
    assert eer(*perfect) == 0.0
    y, s, _ = _data(n=4000)
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    assert tar_at_far(y, s, 0.01) == pytest.approx(tpr[fpr <= 0.01].max())


def test_tar_at_far_nan_with_too_few_negatives():
    y, s, _ = _data(n=200)
    with pytest.warns(UserWarning, match="negative pairs"):
        assert np.isnan(tar_at_far(y, s, 1e-4))


def test_degenerate_one_class():
    y = np.ones(20, dtype=int)
    s = np.linspace(0, 1, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(roc_auc_score(y, s))
        assert np.isnan(eer(y, s))
    with pytest.warns(UserWarning, match="all pairs are same"):
        assert kfold_accuracy(y, s, np.arange(20) % 10).mean == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="0 \\(different\\) and 1"):
        roc_curve([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        kfold_accuracy([0, 1], [0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="equal length"):
        roc_curve([0, 1, 1], [0.1, 0.2])


def test_report_layout():
    y, s, folds = _data(n=6000)
    rep = verification_report(y, s, folds)
    assert set(rep["tar_at_far"]) == {"0.1", "0.01", "0.001", "0.0001"}
    assert 0 <= rep["accuracy_mean"] <= 1 and len(rep["fold_accuracies"]) == 10
    assert rep["roc"]["fpr"][0] == 0 and rep["roc"]["fpr"][-1] == 1
    assert rep["auc"] == pytest.approx(skm.roc_auc_score(y, s))


def test_zero_weight_pairs_count_for_nothing_as_in_scikit_learn():
    """roc_curve kept zero-weight pairs as threshold points ([inf .9 .8 .7 .6 .5] where scikit-learn gives
    [inf .9 .6 .5]); they are dropped now, in every metric that takes weights."""
    y, s, w = [1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 1]
    ours, ref = roc_curve(y, s, sample_weight=w), skm.roc_curve(y, s, sample_weight=w)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)
    assert best_threshold(y, s, sample_weight=w) == best_threshold([1, 0, 0, 1], [0.9, 0.8, 0.6, 0.5])


@pytest.mark.parametrize("call,message", [
    (lambda: roc_curve([], []), "no pairs"),
    (lambda: roc_auc_score([], []), "no pairs"),
    (lambda: eer([], []), "no pairs"),
    (lambda: kfold_accuracy([], [], []), "no pairs"),
    (lambda: verification_report([], [], []), "no pairs"),
    (lambda: best_threshold([1, 0], [0.2, 0.1], sample_weight=[0, 0]), "no pairs of non-zero weight"),
    (lambda: roc_auc_score([1, 0], [0.2, 0.1], sample_weight=[1, np.nan]), "finite and non-negative"),
    (lambda: roc_auc_score([1, 0], [0.2, 0.1], sample_weight=[1, -1]), "finite and non-negative"),
    (lambda: tar_at_far([1, 0], [0.2, 0.1], 0.0), r"far must be a rate in \(0, 1\], got 0.0"),
    (lambda: tar_at_far([1, 0], [0.2, 0.1], float("nan")), "far must be a rate"),
])
def test_inputs_without_an_answer_are_errors_that_say_why(call, message):
    """Empty input, bad weights and an impossible FAR raised IndexError, ZeroDivisionError or returned NaN."""
    with pytest.raises(ValueError, match=message):
        call()


def test_kfold_accuracy_takes_y_true_first_like_every_metric():
    """kfold_accuracy / verification_report took (scores, labels, folds); now (y_true, scores, folds), as
    scikit-learn and the rest of restorever.metrics: the swapped call no longer runs silently."""
    y, f = np.array([1, 0, 1, 0, 1, 0, 1, 0]), np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.9, 0.1, 0.8, 0.3, 0.85, 0.15, 0.7, 0.3])  # each fold's threshold (0.3) separates the other
    assert kfold_accuracy(y, s, f).mean == 1.0
    assert verification_report(y, s, f)["accuracy_mean"] == 1.0
    with pytest.raises(ValueError, match="y_true must hold only 0"):
        kfold_accuracy(s, y, f)


def test_eer_takes_weights_like_the_roc():
    """Integer weights are repeated pairs: the weighted EER equals the EER of the data with each pair repeated."""
    y, s, _ = _data(200, seed=4)
    w = np.random.default_rng(4).integers(0, 4, y.size)
    assert eer(y, s, sample_weight=w) == pytest.approx(eer(np.repeat(y, w), np.repeat(s, w)), abs=1e-12)
    assert eer(y, s, sample_weight=w) != pytest.approx(eer(y, s), abs=1e-6)


def test_stored_roc_reaches_the_stored_tar_and_follows_the_curve():
    """The thinned ROC kept only the lower corner of each vertical step: at FAR 1e-3 the stored TAR was 0.091 while
    the stored curve reached 0.081, and the drawn curve lay up to 3.9 points under the true one below FAR 1e-2."""
    from restorever.metrics import verification_report
    from restorever.metrics.verification import roc_curve
    from restorever.validate.runs import roc_points_off_curve

    rng = np.random.default_rng(3)
    same = np.r_[np.ones(3000, int), np.zeros(3000, int)]
    score = np.round(rng.normal(size=6000) + 1.4 * same, 2)  # ties: vertical steps of several pairs
    fold = np.arange(6000) % 10
    report = verification_report(same, score, fold)
    fpr, tpr = np.asarray(report["roc"]["fpr"]), np.asarray(report["roc"]["tpr"])
    for far, tar in report["tar_at_far"].items():
        if tar is not None:
            assert tpr[fpr <= float(far) + 1e-12].max() == tar
    true_fpr, true_tpr, _ = roc_curve(same, score, drop_intermediate=False)
    grid = np.logspace(np.log10(1 / 3000), 0, 400)
    true = np.array([true_tpr[true_fpr <= x].max() for x in grid])  # the step ROC
    drawn = np.interp(grid, fpr, tpr)
    assert np.abs(true - drawn).max() < 0.015
    scores = SimpleNamespace(same=same.tolist(), score=score.tolist())
    assert roc_points_off_curve(fpr.tolist(), tpr.tolist(), scores) == ""  # what validate checks
    old_pick = np.unique(np.r_[0, np.linspace(0, true_fpr.size - 1, 50).round().astype(int), true_fpr.size - 1])
    assert roc_points_off_curve(true_fpr[old_pick].tolist(), true_tpr[old_pick].tolist(), scores) == ""


@pytest.mark.parametrize("label", [0, 1])
def test_kfold_accuracy_warns_when_one_kind_of_pair_is_missing(label):
    scores = np.linspace(-1, 1, 20)
    folds = np.arange(20) % 2
    with pytest.warns(UserWarning, match=f"all pairs are {'same' if label else 'different'}"):
        kf = kfold_accuracy(np.full(20, label), scores, folds)
    # all same: threshold -inf, every pair right; all different: the training maximum, which test scores above it cross
    assert kf.mean == (1.0 if label else 0.95)
    assert np.all(kf.thresholds == -np.inf) if label else np.allclose(kf.thresholds, [1.0, 17 / 19])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kfold_accuracy(np.arange(20) % 3 == 0, scores, folds)  # both kinds: no warning


def test_tar_at_far_takes_sample_weight_like_roc_curve():
    y, s, _ = _data(n=3000)
    w = np.random.default_rng(5).integers(0, 4, size=y.size).astype(float)  # zeros drop pairs, as in scikit-learn
    fpr, tpr, _ = skm.roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    for far in (0.1, 0.01):
        assert tar_at_far(y, s, far, sample_weight=w) == pytest.approx(tpr[fpr <= far + 1e-12].max())
    # integer weights are repeats: the same as the pairs written out that many times
    reps = w.astype(int)
    assert tar_at_far(y, s, 0.01, sample_weight=w) == tar_at_far(np.repeat(y, reps), np.repeat(s, reps), 0.01)
    with pytest.warns(UserWarning, match="negative pairs"):  # only pairs of non-zero weight count
        assert np.isnan(tar_at_far(y, s, 1e-3, sample_weight=np.where(y == 1, 1.0, w * (np.arange(y.size) < 300))))

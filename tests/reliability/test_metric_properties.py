"""Property tests of the verification metrics: permutation and monotone-transform invariance, exactness of the
k-fold threshold rule against brute force (degenerate one-class folds included), AUC against the Mann-Whitney
statistic, and strict-JSON reports."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from restorever.metrics.verification import eer, kfold_accuracy, roc_auc_score, tar_at_far, verification_report
from tests.conftest import brute_force_threshold

from .conftest import FUZZ


@st.composite
def pair_data(draw, *, both_classes: bool = True, max_n: int = 60):
    """``(scores, labels, folds)``: scores on a coarse grid (so ties are common), any fold ids (gaps, negatives),
    folds that may hold a single class."""
    n = draw(st.integers(2, max_n))
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    if both_classes:
        assume(0 < labels.sum() < n)
    scores = np.array(draw(st.lists(st.integers(-40, 40), min_size=n, max_size=n)), dtype=np.float64) / 8
    fold_ids = draw(st.lists(st.integers(-3, 9), min_size=1, max_size=5, unique=True))
    folds = np.array(draw(st.lists(st.sampled_from(fold_ids), min_size=n, max_size=n)))
    return scores, labels, folds


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


@FUZZ
@given(pair_data(), st.randoms(use_true_random=False))
def test_permuting_pairs_changes_nothing(data, rnd):
    s, y, f = data
    perm = np.array(rnd.sample(range(s.size), s.size))
    base, moved = _quiet(verification_report, y, s, f), _quiet(verification_report, y[perm], s[perm], f[perm])
    assert json.dumps(base, sort_keys=True) == json.dumps(moved, sort_keys=True)


_TRANSFORMS = {
    "affine": lambda s: 3.0 * s + 1.0,
    "cube": lambda s: s ** 3,
    "exp": np.exp,
    "arctan": np.arctan,
    "negative-distance": lambda s: -np.sqrt(np.maximum(6.0 - s, 0.0)),  # cosine -> an L2-like score, still monotone
}


@pytest.mark.parametrize("name", list(_TRANSFORMS))
@FUZZ
@given(data=pair_data())
def test_monotone_transform_of_scores_changes_no_metric(name, data):
    """Every metric depends only on the order of the scores: the whole report except the thresholds (which are
    training scores, so they move with them) is bit-identical after any strictly increasing transform."""
    s, y, f = data
    t = _TRANSFORMS[name](s)
    assume(np.unique(t).size == np.unique(s).size)  # float rounding must not merge two scores
    base, moved = _quiet(verification_report, y, s, f), _quiet(verification_report, y, t, f)
    base.pop("thresholds")
    moved.pop("thresholds")
    assert json.dumps(base, sort_keys=True) == json.dumps(moved, sort_keys=True)
    # the thresholds are the transformed training scores (-inf stays -inf)
    kf, kt = _quiet(kfold_accuracy, y, s, f), _quiet(kfold_accuracy, y, t, f)
    finite = np.isfinite(kf.thresholds)
    assert np.array_equal(np.isfinite(kt.thresholds), finite)
    assert kt.thresholds[finite].tolist() == _TRANSFORMS[name](kf.thresholds[finite]).tolist()


@FUZZ
@given(pair_data(both_classes=False, max_n=40))
def test_kfold_rule_matches_brute_force_even_with_one_class_folds(data):
    """For each fold the threshold is the smallest most-accurate one on the *other* folds (all pairs when there is
    a single fold), and the fold accuracy is that threshold applied to the fold: checked exhaustively."""
    s, y, f = data
    res = _quiet(kfold_accuracy, y, s, f)
    ids = np.unique(f)
    assert res.folds.tolist() == ids.tolist()
    for k, fold in enumerate(ids):
        train = f != fold if ids.size > 1 else np.ones_like(f, bool)
        thr, _ = brute_force_threshold(s[train], y[train].astype(bool))
        assert res.thresholds[k] == thr
        test = f == fold
        assert res.fold_accuracies[k] == np.mean((s[test] > thr) == y[test].astype(bool))
    assert 0.0 <= res.mean <= 1.0 and res.std >= 0.0


@FUZZ
@given(pair_data())
def test_duplicating_every_pair_changes_nothing(data):
    s, y, f = data
    base = _quiet(kfold_accuracy, y, s, f)
    twice = _quiet(kfold_accuracy, np.r_[y, y], np.r_[s, s], np.r_[f, f])
    assert twice.fold_accuracies.tolist() == base.fold_accuracies.tolist()
    assert twice.thresholds.tolist() == base.thresholds.tolist()
    assert _quiet(roc_auc_score, np.r_[y, y], np.r_[s, s]) == pytest.approx(_quiet(roc_auc_score, y, s), abs=1e-12)


@FUZZ
@given(pair_data())
def test_auc_is_the_mann_whitney_probability(data):
    s, y, _ = data
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    expected = float(np.mean((pos > neg) + 0.5 * (pos == neg)))
    assert _quiet(roc_auc_score, y, s) == pytest.approx(expected, abs=1e-12)


@FUZZ
@given(pair_data())
def test_report_is_strict_json_with_fractions(data):
    s, y, f = data
    rep = _quiet(verification_report, y, s, f)
    json.dumps(rep, allow_nan=False)  # results.json is written with allow_nan=False
    for key in ("accuracy_mean", "auc", "eer"):
        assert rep[key] is None or 0.0 <= rep[key] <= 1.0
    assert all(v is None or 0.0 <= v <= 1.0 for v in rep["tar_at_far"].values())
    e = _quiet(eer, y, s)
    assert 0.0 <= e <= 1.0
    assert np.isnan(_quiet(tar_at_far, y, s, 1e-4)) == ((y == 0).sum() < 10_000)


@FUZZ
@given(pair_data(both_classes=False))
def test_one_class_is_degenerate_not_an_error(data):
    s, y, f = data
    y = np.full_like(y, y[0])
    res = _quiet(kfold_accuracy, y, s, f)
    assert np.all((0 <= res.fold_accuracies) & (res.fold_accuracies <= 1))
    assert np.isnan(_quiet(roc_auc_score, y, s)) and np.isnan(_quiet(eer, y, s))


def test_one_class_report_is_strict_json():
    rep = _quiet(verification_report, np.ones(10, int), np.linspace(0, 1, 10), np.arange(10) % 2)
    json.dumps(rep, allow_nan=False)


def test_threshold_beyond_every_training_score_does_not_depend_on_scale():
    s = np.r_[np.zeros(10), 0.375]  # fold 0: ten different pairs at 0; fold 1: one same pair at 0.375
    y = np.r_[np.zeros(10, int), 1]
    f = np.r_[np.zeros(10, int), 1]
    # trained on fold 1 alone ("everything is the same person"), fold 0 gets that rule: 0 % correct, at any scale
    for t in (s, 3 * s + 1, s / 100):
        assert _quiet(kfold_accuracy, y, t, f).fold_accuracies[0] == 0.0


def test_distance_convention_does_not_change_accuracy():
    """The same embeddings scored as -L2 and as -L2^2 give the same k-fold accuracy."""
    d = np.array([1.0, 0.0, 0.6, 1.0])  # fold 0 (training for fold 1): a different pair at 1.0, a same pair at 0
    y = np.array([0, 1, 1, 0])
    f = np.array([0, 0, 1, 1])
    l2 = _quiet(kfold_accuracy, y, -d, f).fold_accuracies
    assert l2.tolist() == _quiet(kfold_accuracy, y, -d ** 2, f).fold_accuracies.tolist()

"""The metric and paired-statistics functions on a researcher's own scores (round 18): torch tensors as they come
out of a pipeline, labels in other encodings, and folds whose training pairs are of one kind."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from restorever import paired_accuracy_test, paired_similarity_test
from restorever.metrics import best_threshold, kfold_accuracy, roc_auc_score, tar_at_far


def test_metrics_take_torch_scores_as_their_values():
    """Scores straight from a torch pipeline (requiring grad; bfloat16) were a RuntimeError / TypeError."""
    rng = np.random.default_rng(1)
    y = np.tile([1, 0], 40)
    s = (y + rng.normal(size=80)).astype(np.float32)
    folds = np.repeat(np.arange(8), 10)
    ts = torch.from_numpy(s).requires_grad_()
    assert roc_auc_score(torch.from_numpy(y), ts) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    rounded = ts.detach().bfloat16().float().numpy()  # bfloat16 ties scores: the trapezoids sum in another order
    assert roc_auc_score(y, ts.bfloat16()) == pytest.approx(skm.roc_auc_score(y, rounded), abs=1e-12)
    assert tar_at_far(torch.from_numpy(y).bool(), ts, 0.1) == tar_at_far(y, s, 0.1)
    assert best_threshold(y, ts) == best_threshold(y, s)
    assert np.array_equal(kfold_accuracy(y, ts, torch.from_numpy(folds)).fold_accuracies,
                          kfold_accuracy(y, s, folds).fold_accuracies)
    people = np.arange(80) // 4
    a = paired_accuracy_test(y, ts, ts * 1.1 + 0.2, folds, people=people, n_boot=200)
    b = paired_accuracy_test(y, s, s * np.float32(1.1) + np.float32(0.2), folds, people=people, n_boot=200)
    assert a == b
    c = paired_similarity_test(ts, ts.detach() + 0.01, people=people, n_boot=200)
    assert c["cosine_difference"] == pytest.approx(0.01, abs=1e-6)


def test_pair_labels_other_than_0_1_say_how_to_convert():
    s = np.arange(6.0)
    for labels, shown in (([-1, 1, -1, 1, 1, -1], "got -1, 1"), (["same", "diff"] * 3, "got 'diff', 'same'")):
        with pytest.raises(ValueError, match=f"y_true must hold only 0 \\(different\\) and 1 \\(same\\), {shown}; "
                                             f"convert other labels first, e.g. \\(y_true == 1\\)"):
            roc_auc_score(labels, s)
        with pytest.raises(ValueError, match=f"paired_accuracy_test: y_true must hold only 0.*{shown}"):
            paired_accuracy_test(labels, s, s, [0, 1] * 3, people=np.arange(6))
    assert roc_auc_score(np.array([True, False] * 3), s) == skm.roc_auc_score([1, 0] * 3, s)


def test_kfold_warns_when_a_folds_training_pairs_are_one_kind():
    """Two folds split by pair kind: each fold's threshold is fitted on one kind only (accuracy 0.07 here) and
    the whole set has both kinds, so no warning was given."""
    rng = np.random.default_rng(0)
    y = np.tile([1, 0], 30)
    s = y + rng.normal(size=60)
    with pytest.warns(UserWarning, match=r"training pairs of fold\(s\) \[0, 1\] .* are all of one kind"):
        result = kfold_accuracy(y, s, np.where(y == 1, 0, 1))
    assert result.mean < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # LFW-like folds, each with both kinds: silent
        kfold_accuracy(y, s, np.repeat(np.arange(10), 6))
        kfold_accuracy(y, s, np.where(np.arange(60) < 58, 0, 1))  # fold 1 holds one pair; its training set both

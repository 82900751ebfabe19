"""Attribute metrics against scikit-learn and a hand-computed ECE."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score as sk_accuracy
from sklearn.metrics import balanced_accuracy_score as sk_balanced
from sklearn.metrics import log_loss as sk_log_loss

from restorever.attributes.metrics import (accuracy_score, attribute_report, balanced_accuracy_score,
                                           consistency_report, expected_calibration_error, log_loss)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 4)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.where(rng.random(300) < 0.6, p.argmax(1), rng.integers(0, 4, 300))
    return y, p


def test_against_sklearn(data):
    y, p = data
    assert accuracy_score(y, p) == pytest.approx(sk_accuracy(y, p.argmax(1)))
    assert balanced_accuracy_score(y, p) == pytest.approx(sk_balanced(y, p.argmax(1)))
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p, labels=[0, 1, 2, 3]))


def test_unlabelled_rows_are_ignored(data):
    y, p = data
    y2 = y.copy()
    y2[::3] = -1
    keep = y2 >= 0
    assert accuracy_score(y2, p) == pytest.approx(sk_accuracy(y[keep], p[keep].argmax(1)))
    assert np.isnan(accuracy_score(np.full(3, -1), p[:3]))


def test_ece_by_hand():
    # confidences 0.95 (x2, one right), 0.55 (x2, both right), 0.75 (one wrong); 10 bins of width 0.1
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55], [0.25, 0.75]])
    y = np.array([0, 1, 0, 1, 0])
    # bins: (0.9,1]: acc 0.5 conf 0.95 ; (0.5,0.6]: acc 1 conf 0.55 ; (0.7,0.8]: acc 0 conf 0.75
    expected = 2 / 5 * 0.45 + 2 / 5 * 0.45 + 1 / 5 * 0.75
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(expected)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(np.array([0, 1]), perfect) == 0.0


def test_report_and_consistency():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    rep = attribute_report(np.array([0, 0, 1]), p, ("female", "male"))
    assert rep["confusion"] == [[1, 1], [1, 0]] and rep["label_counts"] == {"female": 2, "male": 1}
    clean = np.eye(4)[[0, 1, 2, 3, 2]]
    other = np.eye(4)[[0, 2, 0, 3, 3]]
    c = consistency_report(clean, other, ordinal=True)
    assert c["changed_rate"] == pytest.approx(3 / 5)
    assert c["mean_abs_shift"] == pytest.approx((0 + 1 + 2 + 0 + 1) / 5)
    assert c["moved_beyond_neighbour_rate"] == pytest.approx(1 / 5)
    assert c["mean_signed_shift"] == pytest.approx((0 + 1 - 2 + 0 + 1) / 5)
    with pytest.raises(ValueError):
        consistency_report(clean, other[:, :2])

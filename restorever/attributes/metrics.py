"""Attribute metrics over predicted probabilities (numpy only): accuracy, expected calibration error, consistency.

Labels are class indices with ``-1`` for "no label" (ignored). Probabilities are ``[N, C]`` rows summing to 1.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _labelled(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).reshape(-1)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"probabilities {p.shape} do not match {y.size} labels")
    keep = y >= 0
    return y[keep].astype(np.int64), p[keep]


def accuracy_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Fraction of labelled rows whose argmax is the label (NaN when nothing is labelled)."""
    y, p = _labelled(y_true, proba)
    return float(np.mean(p.argmax(1) == y)) if y.size else float("nan")


def balanced_accuracy_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``."""
    y, p = _labelled(y_true, proba)
    if not y.size:
        return float("nan")
    pred = p.argmax(1)
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, *, n_bins: int = 15) -> float:
    """ECE of the top-class confidence (Guo et al. 2017): ``sum_b |B_b|/n * |acc(B_b) - conf(B_b)|`` over
    ``n_bins`` equal-width bins ``(i/n, (i+1)/n]`` of the confidence (a confidence of exactly 0 goes to bin 0)."""
    y, p = _labelled(y_true, proba)
    if not y.size:
        return float("nan")
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        m = bins == b
        total += m.sum() / y.size * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def log_loss(y_true: np.ndarray, proba: np.ndarray, *, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the labels."""
    y, p = _labelled(y_true, proba)
    if not y.size:
        return float("nan")
    return float(-np.mean(np.log(np.clip(p[np.arange(y.size), y], eps, 1.0))))


def attribute_report(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str], *,
                     n_bins: int = 15) -> dict[str, Any]:
    """Accuracy, balanced accuracy, ECE, NLL, label counts and the confusion matrix (rows: label, cols: predicted)."""
    y, p = _labelled(y_true, proba)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    if y.size:
        np.add.at(confusion, (y, p.argmax(1)), 1)
    return {
        "n": int(y.size),
        "accuracy": accuracy_score(y_true, proba),
        "balanced_accuracy": balanced_accuracy_score(y_true, proba),
        "ece": expected_calibration_error(y_true, proba, n_bins=n_bins),
        "nll": log_loss(y_true, proba),
        "label_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "confusion": confusion.tolist(),
        "classes": list(classes),
    }


def consistency_report(proba_clean: np.ndarray, proba_other: np.ndarray, *, ordinal: bool = False) -> dict[str, Any]:
    """How often the predicted class of a degraded/restored face differs from that of its clean original.

    ``changed_rate`` is the fraction whose argmax differs (a gender *flip*, an age-group *move*); for ordinal
    attributes also the mean absolute group shift, the fraction that moved more than one group and the mean signed
    shift (positive = predicted older). ``tv_distance`` is the mean total-variation distance between the two
    probability vectors.
    """
    a = np.asarray(proba_clean, dtype=np.float64)
    b = np.asarray(proba_other, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"clean {a.shape} and restored {b.shape} probabilities must have the same [N, C] shape")
    if a.shape[0] == 0:
        return {"n": 0, "changed_rate": float("nan")}
    ca, cb = a.argmax(1), b.argmax(1)
    out: dict[str, Any] = {"n": int(a.shape[0]), "changed_rate": float(np.mean(ca != cb)),
                           "tv_distance": float(0.5 * np.abs(a - b).sum(1).mean())}
    if ordinal:
        shift = cb - ca
        out.update({"mean_abs_shift": float(np.abs(shift).mean()), "moved_beyond_neighbour_rate":
                    float(np.mean(np.abs(shift) > 1)), "mean_signed_shift": float(shift.mean())})
    return out

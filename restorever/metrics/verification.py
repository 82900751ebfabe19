"""Verification metrics over pair scores (vectorised numpy).

Conventions (scikit-learn's): ``y_true`` is 1 for a same-identity pair and 0 otherwise; ``scores`` are higher for
more similar pairs (use ``-distance`` for distances). A pair is *predicted same* when ``score > threshold``.

Thresholds are chosen exactly: a threshold is the highest training score predicted *different* (so among equally
good thresholds it is the smallest one), or ``-inf`` when every training pair is predicted *same*. Because a
threshold is always a training score (never a midpoint), the k-fold accuracy is invariant under any strictly
increasing transform of the scores (e.g. ``-L2`` vs ``-L2**2``). In JSON records ``-inf`` is written as
``-1.7976931348623157e308`` (``-sys.float_info.max``), which compares the same against any finite score.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .arrays import as_numpy, check_pair_labels

#: metric name -> higher is better (the direction reports and protocol files must agree with)
HIGHER_IS_BETTER = {"accuracy": True, "auc": True, "eer": False, "tar_at_far": True}

__all__ = [
    "best_threshold", "kfold_accuracy", "KFoldResult", "roc_curve", "auc", "roc_auc_score", "eer", "tar_at_far",
    "thin_roc", "verification_report", "finite_threshold", "weighted_auc_and_tar",
]


def _as_arrays(y_true, scores, sample_weight=None):
    y = as_numpy(y_true)
    s = as_numpy(scores, np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"y_true and scores must be 1-D of equal length, got {y.shape} and {s.shape}")
    check_pair_labels(y)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    y = y.astype(bool)
    if sample_weight is None:
        w = np.ones_like(s)
    else:
        w = as_numpy(sample_weight, np.float64)
        if w.shape != s.shape:
            raise ValueError("sample_weight must have the same length as scores")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("sample_weight must be finite and non-negative")
        keep = w != 0  # a pair of weight zero counts for nothing (scikit-learn drops them too)
        y, s, w = y[keep], s[keep], w[keep]
    if s.size == 0:
        raise ValueError("no pairs" + (" of non-zero weight" if sample_weight is not None else ""))
    return y, s, w


def best_threshold(y_true, scores, *, sample_weight=None) -> tuple[float, float]:
    """Exact accuracy-maximising threshold.

    Every cut between consecutive distinct scores is tried (plus "all same" and "all different"); the threshold of a
    cut is the highest score below it (``-inf`` for "all same"), i.e. the smallest threshold realising it.

    Returns:
        ``(threshold, accuracy)`` where accuracy is the weighted fraction of pairs classified correctly by
        ``score > threshold``.
    """
    y, s, w = _as_arrays(y_true, scores, sample_weight)
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted, w_sorted = s[order], y[order], w[order]
    distinct, first = np.unique(s_sorted, return_index=True)
    # For a threshold just below distinct[i]: pairs with index >= first[i] are predicted same.
    pos_cum = np.concatenate([[0.0], np.cumsum(w_sorted * y_sorted)])  # weight of positives among the first k
    neg_cum = np.concatenate([[0.0], np.cumsum(w_sorted * ~y_sorted)])
    total_pos = pos_cum[-1]
    cut = np.concatenate([first, [s_sorted.size]])  # k = number predicted different for each candidate
    correct = neg_cum[cut] + (total_pos - pos_cum[cut])
    best = int(np.argmax(correct))  # first maximum = smallest threshold
    threshold = -np.inf if best == 0 else distinct[best - 1]
    return float(threshold), float(correct[best] / w.sum())


@dataclass
class KFoldResult:
    """Per-fold accuracies (fractions) and the thresholds chosen on the other folds."""

    fold_accuracies: np.ndarray
    thresholds: np.ndarray
    folds: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.fold_accuracies.mean())

    @property
    def std(self) -> float:
        """Population standard deviation over folds (ddof=0, as the LFW literature reports it)."""
        return float(self.fold_accuracies.std())

    @property
    def sem(self) -> float:
        """Standard error of the mean over folds (ddof=1 std / sqrt(k))."""
        k = self.fold_accuracies.size
        return float(self.fold_accuracies.std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")


def kfold_accuracy(y_true, scores, folds) -> KFoldResult:
    """LFW / insightface k-fold verification accuracy.

    For each fold, the threshold maximising accuracy on all *other* folds is applied to that fold. The search is
    exact (every boundary between distinct training scores, as :func:`best_threshold`) and vectorised over folds:
    the scores are sorted once. ``y_true`` 1 same / 0 different; ``scores`` higher = more similar; ``folds`` an
    integer per pair. A single fold is evaluated with its own threshold (no held-out data), with a warning.
    """
    y, s, _ = _as_arrays(y_true, scores)
    f = as_numpy(folds)
    if f.shape != s.shape:
        raise ValueError("folds must have one entry per pair")
    fold_ids = np.unique(f)
    fold_index = np.searchsorted(fold_ids, f)
    n_folds = fold_ids.size
    if y.all() or not y.any():
        warnings.warn(f"all pairs are {'same' if y.all() else 'different'}: a threshold beyond the training scores "
                      "wins, so the accuracy says nothing about the recognizer; give both kinds of pair", stacklevel=2)
    if n_folds == 1:
        warnings.warn("only one fold: the threshold is chosen on the evaluated pairs themselves, so the accuracy is "
                      "optimistic; give the pairs at least 2 folds (a fold column in the CSV, or more pairs)",
                      stacklevel=2)
    order = np.argsort(s, kind="mergesort")
    ss, ys, fs = s[order], y[order], fold_index[order]
    # train[k, i]: sorted pair i is in the training set of fold k
    train = fs[None, :] != np.arange(n_folds)[:, None] if n_folds > 1 else np.ones((1, s.size), bool)
    zero = np.zeros((n_folds, 1))
    pos_cum = np.concatenate([zero, np.cumsum(train & ys[None, :], axis=1)], axis=1)
    neg_cum = np.concatenate([zero, np.cumsum(train & ~ys[None, :], axis=1)], axis=1)
    n_cum = np.concatenate([zero, np.cumsum(train, axis=1)], axis=1).astype(np.int64)
    # cut positions k (the first k sorted pairs are predicted different) that lie between distinct scores
    cuts = np.r_[0, np.where(np.diff(ss) != 0)[0] + 1, ss.size]
    one_kind = (pos_cum[:, -1] == 0) | (neg_cum[:, -1] == 0)
    if one_kind.any() and y.any() and not y.all():
        warnings.warn(f"the training pairs of fold(s) {fold_ids[one_kind].tolist()} (all other folds) are all of one "
                      "kind, so their thresholds lie beyond the training scores and those folds' accuracies say "
                      "nothing about the recognizer; give every fold both kinds of pair (LFW View 2: 300 + 300)",
                      stacklevel=2)
    correct = neg_cum[:, cuts] + (pos_cum[:, -1:] - pos_cum[:, cuts])
    best_cut = cuts[np.argmax(correct, axis=1)]  # first maximum = smallest threshold
    thresholds = np.empty(n_folds)
    for k in range(n_folds):
        train_scores = ss[train[k]]
        j = n_cum[k, best_cut[k]]  # training pairs below the cut
        thresholds[k] = -np.inf if j == 0 else train_scores[j - 1]
    correct_test = (s > thresholds[fold_index]) == y
    accs = np.bincount(fold_index, weights=correct_test, minlength=n_folds) / np.bincount(fold_index,
                                                                                          minlength=n_folds)
    return KFoldResult(accs, thresholds, fold_ids)


def roc_curve(y_true, scores, *, sample_weight=None, drop_intermediate: bool = True):
    """ROC curve with scikit-learn's conventions: returns ``fpr, tpr, thresholds`` with thresholds decreasing and a
    first point at ``(0, 0)`` for threshold ``inf``. A pair counts as positive when ``score >= threshold``."""
    y, s, w = _as_arrays(y_true, scores, sample_weight)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted, w_sorted = s[order], y[order], w[order]
    distinct_end = np.r_[np.where(np.diff(s_sorted))[0], s_sorted.size - 1]
    tps = np.cumsum(w_sorted * y_sorted)[distinct_end]
    fps = np.cumsum(w_sorted * ~y_sorted)[distinct_end]
    thresholds = s_sorted[distinct_end]
    if drop_intermediate and tps.size > 2:
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    tps = np.r_[0.0, tps]
    fps = np.r_[0.0, fps]
    thresholds = np.r_[np.inf, thresholds]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    if fps[-1] <= 0:
        warnings.warn("no negative pairs: false positive rate is undefined", stacklevel=2)
    if tps[-1] <= 0:
        warnings.warn("no positive pairs: true positive rate is undefined", stacklevel=2)
    return fpr, tpr, thresholds


def auc(x, y) -> float:
    """Area under a curve by the trapezoidal rule (``x`` monotonic)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    direction = 1.0
    dx = np.diff(x)
    if np.any(dx < 0):
        if np.all(dx <= 0):
            direction = -1.0
        else:
            raise ValueError("x is neither increasing nor decreasing")
    return float(direction * np.trapezoid(y, x))


def roc_auc_score(y_true, scores, *, sample_weight=None) -> float:
    """Area under the ROC curve (NaN with a warning when one class is absent)."""
    fpr, tpr, _ = roc_curve(y_true, scores, sample_weight=sample_weight, drop_intermediate=False)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return auc(fpr, tpr)


def eer(y_true, scores, *, sample_weight=None) -> float:
    """Equal error rate: where the false positive rate equals the false negative rate (linear interpolation between
    the two ROC points that bracket the crossing)."""
    fpr, tpr, _ = roc_curve(y_true, scores, sample_weight=sample_weight, drop_intermediate=False)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    fnr = 1.0 - tpr
    diff = fpr - fnr  # increasing from -1 to 1
    i = int(np.searchsorted(diff, 0.0))
    if i == 0:
        return float(fpr[0])
    d0, d1 = diff[i - 1], diff[i]
    t = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tar_at_far(y_true, scores, far: float, *, sample_weight=None) -> float:
    """True accept rate at a false accept rate: the largest TPR among ROC points with FPR <= ``far`` (rates weighted
    by ``sample_weight`` as in :func:`roc_curve`).

    With weights, FPR and TPR are weighted rates (scikit-learn's weighted ``roc_curve``, the same points), so the
    result is the largest weighted TPR at a threshold whose weighted FPR is <= ``far``. The resolution guard is a
    count, not a weight: NaN with a warning when there are fewer than ``1 / far`` negative pairs of non-zero weight
    (the rate cannot be resolved from fewer pairs). It does not judge how unequal the weights are: a few heavy
    negatives resolve the FPR less finely than their count suggests.
    """
    if not 0 < far <= 1:  # NaN fails too
        raise ValueError(f"far must be a rate in (0, 1], got {far}")
    y, s, w = _as_arrays(y_true, scores, sample_weight)
    n_neg = int((~y & (w > 0)).sum())
    if n_neg < 1.0 / far:
        warnings.warn(f"TAR@FAR={far:g} needs at least {int(np.ceil(1 / far))} negative pairs, got {n_neg}",
                      stacklevel=2)
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    ok = fpr <= far + 1e-12
    return float(tpr[ok].max())


def weighted_auc_and_tar(y_true, scores, sample_weights, fars: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`roc_auc_score` and :func:`tar_at_far` for many weightings of the same pairs at once (e.g. bootstrap
    replicates, where a pair's weight is how many times it was drawn).

    Args:
        y_true: ``int[n]`` 1 same / 0 different; scores: ``float[n]``, higher = more similar.
        sample_weights: ``float[m, n] >= 0``, one weighting per row.
        fars: rates in (0, 1].

    Returns:
        ``(auc float[m], tar float[m, len(fars)])``: row ``r`` equals ``roc_auc_score(y_true, scores,
        sample_weight=sample_weights[r])`` and the largest weighted TPR at a weighted FPR <= far (as
        :func:`tar_at_far`), NaN where a row weighs no positive or no negative pair. Unlike :func:`tar_at_far`
        there is no resolution guard: the caller decides which FARs the pairs resolve.
    """
    y, s, _ = _as_arrays(y_true, scores)
    w = np.asarray(sample_weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != s.size or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"sample_weights must be finite, non-negative, of shape [m, {s.size}], got {w.shape}")
    far = np.asarray(fars, dtype=np.float64)
    if far.ndim != 1 or not np.all((far > 0) & (far <= 1)):
        raise ValueError(f"fars must be rates in (0, 1], got {fars}")
    order = np.argsort(-s, kind="mergesort")  # as roc_curve: descending scores, one ROC vertex per distinct score
    ys, ws = y[order], w[:, order]
    ends = np.r_[np.where(np.diff(s[order]))[0], s.size - 1]
    zero = np.zeros((w.shape[0], 1))
    tps = np.concatenate([zero, np.cumsum(ws * ys, axis=1)[:, ends]], axis=1)
    fps = np.concatenate([zero, np.cumsum(ws * ~ys, axis=1)[:, ends]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tps / tps[:, -1:]
        fpr = fps / fps[:, -1:]
    area = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]), axis=1) / 2.0  # trapezoids, as auc()
    rows = np.arange(w.shape[0])
    tar = np.empty((w.shape[0], far.size))
    for j, rate in enumerate(far):  # fpr and tpr rise along a row: the last vertex at FPR <= far has the largest TPR
        last = np.sum(fpr <= rate + 1e-12, axis=1) - 1
        tar[:, j] = tpr[rows, np.maximum(last, 0)]
    bad = ~(np.isfinite(tpr[:, -1]) & np.isfinite(fpr[:, -1]))
    area[bad] = np.nan
    tar[bad] = np.nan
    return area, tar


FARS = (1e-1, 1e-2, 1e-3, 1e-4)
#: version of :func:`thin_roc`, stored as ``verification.roc_thinning`` (2: step tops and FAR vertices kept; records
#: without it were thinned by version 1, which kept the lower corner of each step only)
ROC_THINNING = 2


def thin_roc(fpr: np.ndarray, points: int, fars: Sequence[float] = FARS) -> np.ndarray:
    """Indices of about ``2 * points`` vertices of a ROC (``fpr`` non-decreasing, as :func:`roc_curve` gives) to
    store: evenly spaced and log-spaced picks (the low-FAR end stays dense), each with the top of its vertical step
    (the last vertex at the same FPR: the step's lower corner alone drew the curve below the true one), and the top
    vertex at or below each FAR of ``fars``, so the stored curve reaches the stored TAR@FAR."""
    last = fpr.size - 1
    idx = np.r_[0, np.linspace(0, last, points).round().astype(int), last]
    positive = np.where(fpr > 0)[0]
    if positive.size:
        logs = np.searchsorted(fpr, np.logspace(np.log10(max(fpr[positive[0]], 1e-6)), 0, points))
        idx = np.r_[idx, np.clip(logs, 0, last)]
    tops = np.searchsorted(fpr, fpr[idx], side="right") - 1  # the top of each picked vertex's vertical step
    at_far = np.searchsorted(fpr, np.asarray(fars, dtype=np.float64) + 1e-12, side="right") - 1
    return np.unique(np.r_[idx, tops, at_far[at_far >= 0]])


def verification_report(y_true, scores, folds, *, fars=FARS, roc_points: int = 200) -> dict:
    """All verification metrics in the ``results.json`` layout (fractions in [0, 1]; ROC thinned to about
    ``roc_points`` points for storage)."""
    kf = kfold_accuracy(y_true, scores, folds)
    fpr, tpr, _ = roc_curve(y_true, scores)
    if fpr.size > roc_points:
        idx = thin_roc(fpr, roc_points, fars)
        fpr_s, tpr_s = fpr[idx], tpr[idx]
    else:
        fpr_s, tpr_s = fpr, tpr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tars = {f"{far:g}": _none_if_nan(tar_at_far(y_true, scores, far)) for far in fars}
    if np.isnan(fpr_s).any() or np.isnan(tpr_s).any():  # one class absent: no ROC to store
        fpr_s, tpr_s = np.empty(0), np.empty(0)
    return {
        "accuracy_mean": kf.mean,
        "accuracy_std": kf.std,
        "accuracy_sem": _none_if_nan(kf.sem),
        "fold_accuracies": kf.fold_accuracies.tolist(),
        "thresholds": [finite_threshold(t) for t in kf.thresholds.tolist()],
        "auc": _none_if_nan(roc_auc_score(y_true, scores)),
        "eer": _none_if_nan(eer(y_true, scores)),
        "tar_at_far": tars,
        "roc": {"fpr": fpr_s.tolist(), "tpr": tpr_s.tolist()},
        "roc_thinning": ROC_THINNING,
        "n_pairs": int(np.asarray(y_true).size),
    }


def finite_threshold(t: float) -> float:
    """A threshold of ``-inf`` (a fold where calling every pair "same" scores best) as ``-sys.float_info.max``, so
    a record stays strict JSON (the same decisions against finite scores); others as they are, as ``float``."""
    import sys

    return -sys.float_info.max if t == -np.inf else float(t)


def _none_if_nan(x: float):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else x

"""Time restorever's exact k-fold accuracy against insightface's grid-search rule on the same scores.

6,000 pairs x 10 folds (LFW View 2 size). The reference evaluates accuracy at each of 400 grid thresholds
(``np.arange(0, 4, 0.01)`` on distances, as insightface's eval/verification.py) per fold.

    python scripts/bench_verification.py [--pairs 6000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _benchinfo import header
from restorever.metrics import kfold_accuracy, verification_report


def _calculate_accuracy(threshold: float, dist: np.ndarray, actual_issame: np.ndarray):
    predict_issame = np.less(dist, threshold)
    tp = np.sum(np.logical_and(predict_issame, actual_issame))
    fp = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame)))
    fn = np.sum(np.logical_and(np.logical_not(predict_issame), actual_issame))
    tpr = 0.0 if tp + fn == 0 else float(tp) / float(tp + fn)
    fpr = 0.0 if fp + tn == 0 else float(fp) / float(fp + tn)
    return tpr, fpr, float(tp + tn) / dist.size


def grid_reference(dist: np.ndarray, same: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """insightface's rule (eval/verification.py ``calculate_roc``), written plainly: per fold, accuracy of every grid
    threshold on the training folds, the best one applied to the test fold, and the ROC point of every threshold on
    the test fold."""
    thresholds = np.arange(0, 4, 0.01)
    fold_ids = np.unique(folds)
    tprs = np.zeros((fold_ids.size, thresholds.size))
    fprs = np.zeros((fold_ids.size, thresholds.size))
    accuracy = np.zeros(fold_ids.size)
    for k, f in enumerate(fold_ids):
        train, test = folds != f, folds == f
        acc_train = np.zeros(thresholds.size)
        for i, t in enumerate(thresholds):
            _, _, acc_train[i] = _calculate_accuracy(t, dist[train], same[train])
        best = int(np.argmax(acc_train))
        for i, t in enumerate(thresholds):
            tprs[k, i], fprs[k, i], _ = _calculate_accuracy(t, dist[test], same[test])
        _, _, accuracy[k] = _calculate_accuracy(thresholds[best], dist[test], same[test])
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    same = (np.arange(args.pairs) // 300) % 2 == 0
    dist = np.clip(rng.normal(1.0, 0.3, args.pairs) + 0.6 * ~same, 0, 4)  # squared-L2-like distances in [0, 4]
    folds = np.arange(args.pairs) // (args.pairs // 10)

    def best_of(fn):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    t_ours, ours = best_of(lambda: kfold_accuracy(same.astype(int), -dist, folds))
    t_roc, _ = best_of(lambda: verification_report(same.astype(int), -dist, folds))
    t_ref, ref = best_of(lambda: grid_reference(dist, same, folds))
    print(header({"pairs": args.pairs, "folds": 10, "repeat": f"best of {args.repeat}"}))
    print(f"restorever exact kfold_accuracy : {1e3 * t_ours:8.2f} ms  accuracy {ours.mean:.4f}")
    print(f"restorever full report (+ROC/AUC/EER/TAR): {1e3 * t_roc:8.2f} ms")
    print(f"insightface grid (400 thresholds): {1e3 * t_ref:8.2f} ms  accuracy {ref.mean():.4f}")
    print(f"speed-up: {t_ref / t_ours:.1f}x (goal >= 50x); with the full report: {t_ref / t_roc:.1f}x")


if __name__ == "__main__":
    main()

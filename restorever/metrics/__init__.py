"""Metrics: pure numpy functions over arrays (no models)."""
from .similarity import score_pairs
from .verification import (auc, best_threshold, eer, kfold_accuracy, roc_auc_score, roc_curve, tar_at_far,
                           verification_report)

__all__ = ["auc", "best_threshold", "eer", "kfold_accuracy", "roc_auc_score", "roc_curve", "score_pairs",
           "tar_at_far", "verification_report"]

"""Metrics: pure numpy functions over arrays (no models)."""
from .verification import (auc, best_threshold, eer, kfold_accuracy, roc_auc_score, roc_curve, tar_at_far,
                           verification_report)

__all__ = ["auc", "best_threshold", "eer", "kfold_accuracy", "roc_auc_score", "roc_curve", "tar_at_far",
           "verification_report"]

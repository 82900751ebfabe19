"""Metrics: pure numpy functions over arrays (no models)."""
from . import retrieval as _retrieval
from . import verification as _verification
from .similarity import SIMILARITIES, score_pairs
from .verification import (auc, best_threshold, eer, kfold_accuracy, roc_auc_score, roc_curve, tar_at_far,
                           verification_report)

#: every metric's direction (True: higher is better), as reports show it and protocol ``metrics:`` must declare it
HIGHER_IS_BETTER = {**_verification.HIGHER_IS_BETTER, **_retrieval.HIGHER_IS_BETTER}

__all__ = ["HIGHER_IS_BETTER", "SIMILARITIES", "auc", "best_threshold", "eer", "kfold_accuracy", "roc_auc_score",
           "roc_curve", "score_pairs", "tar_at_far", "verification_report"]

"""Array-likes in, numpy out: what the metric and statistics functions do first with their arguments."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_numpy", "check_pair_labels"]


def as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """``x`` (a list, numpy array or torch tensor) as a numpy array of ``dtype``. A tensor is detached and copied
    to the CPU first, so scores that require grad, live on a GPU or are bfloat16 are taken as their values."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):  # torch, without importing it here
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def check_pair_labels(y: np.ndarray, what: str = "y_true") -> None:
    """ValueError unless ``y`` holds only 0 (different) and 1 (same) (bools count as 0/1), saying what it holds
    and how to convert the usual other encodings."""
    if np.all(np.isin(y, (0, 1))):
        return
    try:
        values = np.unique(y)
    except TypeError:  # mixed types (an object array) do not sort
        values = np.array(list(dict.fromkeys(y.tolist())), dtype=object)
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:6])
    more = f" and {values.size - 6} more" if values.size > 6 else ""
    raise ValueError(f"{what} must hold only 0 (different) and 1 (same), got {shown}{more}; convert other labels "
                     f"first, e.g. (y_true == 1) for -1/+1 labels or (y_true == 'same') for text")

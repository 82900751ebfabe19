"""Pair scores from embeddings: the one scoring function of verification (higher = more alike)."""
from __future__ import annotations

import numpy as np

SIMILARITIES = ("cosine", "euclidean")


def score_pairs(similarity: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Scores of the pairs ``(a[i], b[i])`` of ``[N, D]`` embeddings -> ``[N]``.

    ``"cosine"``: cosine similarity in [-1, 1]; ``"euclidean"``: the negative Euclidean distance (so higher always
    means more similar). This is what ``restorever eval`` scores pairs with and what the thresholds in results.json
    refer to.
    """
    if similarity == "cosine":
        a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
        b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
        return np.sum(a * b, axis=1)
    if similarity == "euclidean":
        return -np.linalg.norm(a - b, axis=1)
    raise ValueError(f"unknown similarity {similarity!r}; known: {', '.join(SIMILARITIES)}")

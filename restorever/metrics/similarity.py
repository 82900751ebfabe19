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


def identity_to_clean(clean: dict[str, np.ndarray], emb: dict[str, np.ndarray], items: list[str]) -> dict:
    """How close each item's embedding in a condition (``emb``) stays to its clean one: cosine mean / std / median,
    mean Euclidean distance, and the per-item cosine (rounded to 1e-6); ``{"cosine_to_clean_mean": None, "n": 0}``
    for no items."""
    if not items:
        return {"cosine_to_clean_mean": None, "n": 0}
    e, c = np.stack([emb[i] for i in items]), np.stack([clean[i] for i in items])
    cos = score_pairs("cosine", e, c)
    dist = np.linalg.norm(e - c, axis=1)
    return {"cosine_to_clean_mean": float(cos.mean()), "cosine_to_clean_std": float(cos.std()),
            "cosine_to_clean_median": float(np.median(cos)), "l2_to_clean_mean": float(dist.mean()), "n": len(items),
            "per_item": {i: round(float(x), 6) for i, x in zip(items, cos)}}

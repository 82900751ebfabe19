"""Closed-set identification metrics from the rank of each probe's mate (numpy only).

A *rank* is 1-based: 1 means the probe's own person is the best match in the gallery. ``np.inf`` means the mate
was not searched at all (filtered out). With one gallery entry per person (the ``lfw-ident`` protocol), a probe's
average precision is ``1 / rank``; :func:`average_precision` handles several relevant entries.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: metric name -> higher is better (for reports and the metric registry)
HIGHER_IS_BETTER = {"rank1": True, "rank5": True, "rank10": True, "map": True, "gallery_fraction": False,
                    "search_ms_per_query": False, "rank1_lost_to_filter": False, "mate_filtered_out": False}


def ranks_from_scores(scores: np.ndarray, mate: np.ndarray, searched: np.ndarray | None = None) -> np.ndarray:
    """Rank of each probe's mate from a full score matrix ``[Q, N]`` (higher = more similar).

    ``mate`` ``[Q]`` is the gallery column of each probe's mate; ``searched`` ``[Q, N]`` (optional) marks the columns
    each probe searched. Rank = 1 + the number of searched columns scoring higher than the mate, plus the number of
    *other* searched columns with an equal score (ties count against the probe). ``inf`` when the mate is not
    searched. Raises ``ValueError`` for NaN or infinite scores in searched columns (unsearched columns may hold
    anything, e.g. ``-inf``), as the verification metrics do: a NaN compares false with everything and would rank
    a NaN mate first.
    """
    s = np.asarray(scores, dtype=np.float64)
    mate = np.asarray(mate, dtype=np.int64)
    if s.ndim != 2 or mate.shape != (s.shape[0],):
        raise ValueError(f"scores must be [Q, N] and mate [Q], got shapes {s.shape} and {mate.shape}")
    if mate.size and (mate.min() < 0 or mate.max() >= s.shape[1]):
        raise ValueError(f"mate columns must be in 0..{s.shape[1] - 1}, got {mate.min()}..{mate.max()}")
    mask = np.ones_like(s, dtype=bool) if searched is None else np.asarray(searched, dtype=bool)
    if mask.shape != s.shape:
        raise ValueError(f"searched must have the scores' shape {s.shape}, got {mask.shape}")
    bad = int((~np.isfinite(s) & mask).any(1).sum())
    if bad:
        raise ValueError(f"scores contain NaN or infinite values: {bad} of {len(s)} probes have some among the "
                         f"searched gallery columns")
    q = np.arange(s.shape[0])
    mate_score = s[q, mate]
    higher = ((s > mate_score[:, None]) & mask).sum(1)
    ties = ((s == mate_score[:, None]) & mask).sum(1) - 1
    ranks = (1 + higher + np.maximum(ties, 0)).astype(np.float64)
    ranks[~mask[q, mate]] = np.inf
    return ranks


def cmc_curve(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """Cumulative match characteristic: ``cmc[r-1]`` = fraction of probes whose mate has rank <= r."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        return np.full(max_rank, np.nan)
    return np.array([(r <= k).mean() for k in range(1, max_rank + 1)])


def rank_k(ranks: np.ndarray, k: int) -> float:
    r = np.asarray(ranks, dtype=np.float64)
    return float((r <= k).mean()) if r.size else float("nan")


def mean_average_precision(ranks: np.ndarray) -> float:
    """mAP with one relevant gallery entry per probe: the mean of ``1 / rank`` (0 for a filtered-out mate)."""
    r = np.asarray(ranks, dtype=np.float64)
    if np.any(~(r >= 1)):  # NaN, zero or negative: not a rank
        raise ValueError(f"ranks must be 1, 2, ... or inf (a filtered-out mate), got {r[~(r >= 1)][:5].tolist()}")
    return float(np.mean(1.0 / r)) if r.size else float("nan")


def average_precision(relevant_sorted: np.ndarray) -> np.ndarray:
    """AP per probe from a ``[Q, N]`` boolean matrix of relevance in ranked order (best first):
    ``mean over relevant positions of precision@position``; 0 for a probe with nothing relevant retrieved."""
    rel = np.asarray(relevant_sorted, dtype=bool)
    hits = np.cumsum(rel, axis=1)
    precision = hits / np.arange(1, rel.shape[1] + 1)[None, :]
    n_rel = rel.sum(1)
    return np.where(n_rel > 0, (precision * rel).sum(1) / np.maximum(n_rel, 1), 0.0)


def identification_report(ranks: np.ndarray, *, searched_fraction: np.ndarray | None = None,
                          search_seconds: float | None = None, max_rank: int = 10,
                          reference_ranks: np.ndarray | None = None, ks: Sequence[int] = (1, 5, 10)
                          ) -> dict[str, Any]:
    """Rank-k accuracies, mAP, CMC up to ``max_rank``, the mean fraction of the gallery searched, search time, and,
    given the unfiltered ``reference_ranks``: the rank-1 lost to wrong filtering (the unfiltered search had the mate
    first, the filter excluded it) and the rank-1 gained (the filter removed the impostors that beat the mate)."""
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, Any] = {f"rank{k}": rank_k(r, k) for k in ks}
    out.update({"map": mean_average_precision(r), "n_probes": int(r.size),
                "cmc": [float(v) for v in cmc_curve(r, max_rank)],
                "mate_filtered_out": float(np.isinf(r).mean()) if r.size else float("nan")})
    if searched_fraction is not None:
        out["gallery_fraction"] = float(np.mean(searched_fraction)) if r.size else float("nan")
    if search_seconds is not None:
        out["search_s"] = float(search_seconds)
        out["search_ms_per_query"] = 1000.0 * float(search_seconds) / max(1, r.size)
    if reference_ranks is not None:
        ref = np.asarray(reference_ranks, dtype=np.float64)
        out["rank1_lost_to_filter"] = float(np.mean((ref == 1) & np.isinf(r))) if r.size else float("nan")
        out["rank1_gained"] = float(np.mean((ref != 1) & (r == 1))) if r.size else float("nan")
    return out

"""Paired significance tests between conditions of one run (numpy and the standard library only).

Two conditions of a run score the *same* pairs, so they are compared pair by pair:

- :func:`pair_decisions` turns a condition's stored scores into per-pair correct/incorrect decisions at the
  thresholds the k-fold protocol chose (a pair is predicted *same* when ``score > threshold`` of its fold);
- :func:`mcnemar` tests whether two conditions make different numbers of errors on the pairs where they disagree
  (exact binomial for few discordant pairs, chi-square with continuity correction otherwise);
- :func:`cluster_bootstrap_difference` gives a percentile interval of the accuracy difference by resampling
  *people* with all their pairs (:func:`pair_clusters`), not pairs: pairs that share a person are not independent,
  and a pair bootstrap would give intervals that are too narrow;
- :func:`clustered_mcnemar` is McNemar's test over the same clusters (an exact sign-flip randomisation test of the
  per-cluster differences ``b_k - c_k``): the plain test treats pairs as independent, so where people contribute
  several pairs its p-value is too small and can disagree with the people-resampling interval beside it.

Which person a pair belongs to: by default the person of its *probe* (second) image, the side that is degraded and
restored, so the pairs whose difference between two conditions is driven by the same face stay together (for a
same-person pair both images are that person). ``cluster_by="components"`` instead keeps every pair that shares
any person together (connected groups of people); on LFW View 2 that still leaves 1290 independent groups, but on
small protocols with few people it can collapse into a handful of groups, where a bootstrap says little.

:func:`add_comparisons` puts ``comparison_to_none`` (a restorer against no restoration at the same scale) and
``comparison_to_clean`` (a degraded condition against the clean one) into each condition of a results record,
and :func:`add_adjusted_p_values` the family-wise adjusted p-values of both McNemar tests (:func:`holm_adjust`).

Multiple comparisons (3 restorers at 5 scales make 15 comparisons against ``none``, 20 against clean): each test's
dict stores its ``p_value``, ``p_holm`` (Holm-Bonferroni step-down, valid under any dependence between the tests)
and ``family_size``. A family is every comparison of one *kind* in one record for one test: all
``comparison_to_none``, all ``comparison_to_clean``, the per-pair and clustered McNemar tests apart (two tests of the
same hypotheses: read one). The kinds answer different questions (does restoring help; how far is a condition from
the clean faces) that a paper states as separate claims; pooled, one family's size would depend on the other's.
``restorever compare`` adjusts its kinds (``vs_none``, ``vs_clean``, ``pair``) over all compared scales alike.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = [
    "person_of", "person_clusters", "pair_clusters", "CLUSTERINGS", "pair_decisions", "McNemarResult", "mcnemar",
    "ClusteredMcNemarResult", "clustered_mcnemar", "cluster_bootstrap_counts",
    "BootstrapResult", "cluster_bootstrap_replicates", "percentile_interval", "cluster_bootstrap_difference",
    "ESTIMATORS", "fold_weights", "compare_conditions", "add_comparisons",
    "holm_adjust", "bonferroni_adjust", "COMPARISON_KINDS", "TESTS", "adjust_family", "add_adjusted_p_values",
    "MAX_N_BOOT", "checked_n_boot", "check_level",
]

log = logging.getLogger(__name__)

#: below this many discordant pairs McNemar's test uses the exact binomial distribution
EXACT_BELOW = 25
#: the most bootstrap replicates the CLI takes and ``restorever validate`` recomputes (a record stating more is
#: edited or damaged: recomputing 10^9 replicates would keep validate busy for hours)
MAX_N_BOOT = 100_000


def checked_n_boot(value: Any, what: str = "bootstrap.n_boot") -> int:
    """``value`` as an int in [1, :data:`MAX_N_BOOT`], else ValueError naming ``what``."""
    n = int(value)
    if not 1 <= n <= MAX_N_BOOT:
        raise ValueError(f"{what} {n} is outside 1..{MAX_N_BOOT:,}; an edited or damaged record")
    return n


def check_level(level: float) -> None:
    """ValueError unless ``level``, an interval's coverage, is a fraction in (0, 1) (95 for 0.95 is the usual slip)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level} (a fraction: 0.95 for a 95 % interval)")


# ---------------------------------------------------------------------------------------------------------------
# decisions and clusters


def person_of(item: str) -> str:
    """The identity an image id belongs to: its parent folder (``lfw-deepfunneled/NAME/NAME_0001.jpg`` -> ``NAME``,
    the LFW and ``pairs-csv`` layouts), or the id itself when it has no folder (``bin:17``), so that at least pairs
    sharing an image stay together."""
    parts = str(item).replace("\\", "/").rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else parts[-1]


def person_clusters(items_a: Sequence[str], items_b: Sequence[str]) -> np.ndarray:
    """One cluster id per pair: the connected groups of people linked by pairs.

    Two pairs land in the same cluster when they share a person, directly or through other pairs, so clusters are
    independent of each other and can be resampled as units. On LFW View 2 (6000 pairs, 4281 people) this gives
    1290 clusters. Returns ``int64[n_pairs]`` with ids ``0..n_clusters-1`` in order of first appearance.
    """
    if len(items_a) != len(items_b):
        raise ValueError(f"items_a and items_b differ in length ({len(items_a)} and {len(items_b)})")
    index: dict[str, int] = {}
    pa = np.array([index.setdefault(person_of(i), len(index)) for i in items_a], dtype=np.int64)
    pb = np.array([index.setdefault(person_of(i), len(index)) for i in items_b], dtype=np.int64)
    parent = list(range(len(index)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(pa.tolist(), pb.tolist()):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    first: dict[int, int] = {}  # numbered in order of first appearance
    return np.array([first.setdefault(root(int(x)), len(first)) for x in pa], dtype=np.int64)


#: what ``bootstrap.resampled`` says in the record for each ``cluster_by``
CLUSTERINGS = {
    "probe": "people (the person of each pair's probe image, with all their pairs)",
    "components": "people (connected groups of people linked by pairs, with all their pairs)",
    "pairs": "pairs (no clustering)",
}


def pair_clusters(items_a: Sequence[str], items_b: Sequence[str], by: str = "probe") -> np.ndarray:
    """One cluster id per pair for the bootstrap (``int64[n_pairs]``, ids in order of first appearance).

    ``by``: ``"probe"`` (the person of ``items_b``), ``"components"`` (:func:`person_clusters`) or ``"pairs"``
    (every pair on its own).
    """
    if by not in CLUSTERINGS:
        raise ValueError(f"cluster_by must be one of {', '.join(CLUSTERINGS)}, got {by!r}")
    if len(items_a) != len(items_b):
        raise ValueError(f"items_a and items_b differ in length ({len(items_a)} and {len(items_b)})")
    if by == "components":
        return person_clusters(items_a, items_b)
    if by == "pairs":
        return np.arange(len(items_b), dtype=np.int64)
    index: dict[str, int] = {}
    return np.array([index.setdefault(person_of(i), len(index)) for i in items_b], dtype=np.int64)


def pair_decisions(scores: dict[str, Sequence], thresholds: Sequence[float]) -> np.ndarray:
    """Whether each pair is classified correctly at its fold's threshold.

    Args:
        scores: a condition's ``scores`` section: ``same`` (1/0), ``fold`` (int) and ``score`` (higher = more
            similar) per pair.
        thresholds: ``verification.thresholds``, one per fold in increasing fold-id order (as
            :func:`restorever.metrics.kfold_accuracy` stores them).

    Returns:
        ``bool[n_pairs]``: ``(score > threshold[fold]) == same``.
    """
    same = np.asarray(scores["same"]).astype(bool)
    fold = np.asarray(scores["fold"])
    score = np.asarray(scores["score"], dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64)
    if not (same.shape == fold.shape == score.shape) or same.ndim != 1:
        raise ValueError("scores.same, scores.fold and scores.score must be 1-D lists of equal length")
    fold_ids = np.unique(fold)
    if fold_ids.size != thr.size:
        raise ValueError(f"{fold_ids.size} fold(s) in the scores but {thr.size} threshold(s)")
    return (score > thr[np.searchsorted(fold_ids, fold)]) == same


# ---------------------------------------------------------------------------------------------------------------
# McNemar


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test of two paired classifiers.

    ``b``: pairs the reference gets right and the other condition wrong; ``c``: the reverse. ``statistic`` is the
    continuity-corrected chi-square value for ``method == "chi2"`` and ``min(b, c)`` for ``"exact"``.
    """

    b: int
    c: int
    statistic: float
    p_value: float
    method: str

    @property
    def n_discordant(self) -> int:
        return self.b + self.c


def _binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips (``2 * P(X <= min(k, n-k))``, at most 1),
    in exact integer arithmetic."""
    m = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(m + 1))
    return min(1.0, 2 * tail / 2 ** n)


def _chi2_sf_1dof(x: float) -> float:
    """Survival function of the chi-square distribution with one degree of freedom."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2.0))


def mcnemar(correct_ref, correct_other, *, exact: bool | None = None, exact_below: int = EXACT_BELOW
            ) -> McNemarResult:
    """McNemar's test on per-pair decisions of two conditions over the same pairs.

    Args:
        correct_ref, correct_other: ``bool[n]``, whether each pair is classified correctly.
        exact: force the exact binomial test (True) or the chi-square test (False); by default exact when fewer
            than ``exact_below`` pairs are discordant.

    Returns:
        :class:`McNemarResult`. With no discordant pair the p-value is 1. The chi-square statistic is
        ``max(0, |b - c| - 1)^2 / (b + c)`` (Edwards' continuity correction, floored at 0 so that ``b == c``
        gives p = 1).
    """
    ref = np.asarray(correct_ref).astype(bool)
    other = np.asarray(correct_other).astype(bool)
    if ref.shape != other.shape or ref.ndim != 1:
        raise ValueError(f"decisions must be 1-D of equal length, got {ref.shape} and {other.shape}")
    b = int(np.sum(ref & ~other))
    c = int(np.sum(~ref & other))
    n = b + c
    use_exact = (n < exact_below) if exact is None else bool(exact)
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0, "exact" if use_exact else "chi2")
    if use_exact:
        return McNemarResult(b, c, float(min(b, c)), _binomial_two_sided(b, n), "exact")
    stat = max(0.0, abs(b - c) - 1.0) ** 2 / n
    return McNemarResult(b, c, float(stat), _chi2_sf_1dof(stat), "chi2")


@dataclass(frozen=True)
class ClusteredMcNemarResult:
    """McNemar's test of two paired classifiers when pairs come in clusters (people).

    ``statistic``: ``|sum_k (b_k - c_k)|``, the net number of pairs the reference gets right and the other condition
    wrong, summed over clusters; ``clusters``: clusters with a non-zero ``b_k - c_k`` (the ones that can flip).
    """

    statistic: int
    p_value: float
    clusters: int
    method: str = "exact sign-flip over clusters"


def clustered_mcnemar(correct_ref, correct_other, clusters) -> ClusteredMcNemarResult:
    """McNemar's test that keeps each cluster's pairs together: an exact randomisation test.

    Per cluster ``k``, ``d_k = b_k - c_k`` (pairs right in the reference and wrong in the other, minus the reverse).
    Under the null hypothesis the two conditions are exchangeable within a cluster, so each ``d_k`` is as likely to
    have the opposite sign; the two-sided p-value is ``P(|sum_k s_k d_k| >= |sum_k d_k|)`` over the ``2^K`` equally
    likely sign vectors ``s``, computed exactly by convolution (``O(K * sum_k |d_k|)``). With one pair per cluster
    it equals the exact binomial McNemar test (:func:`mcnemar` with ``exact=True``).

    Args:
        correct_ref, correct_other: ``bool[n]`` per-pair decisions; clusters: ``int[n]`` cluster id per pair.

    Returns:
        :class:`ClusteredMcNemarResult`; p = 1 when no cluster has a non-zero difference.
    """
    ref = np.asarray(correct_ref).astype(bool)
    other = np.asarray(correct_other).astype(bool)
    cl = np.asarray(clusters)
    if not (ref.shape == other.shape == cl.shape) or ref.ndim != 1:
        raise ValueError("correct_ref, correct_other and clusters must be 1-D arrays of equal length")
    if ref.size == 0:
        return ClusteredMcNemarResult(0, 1.0, 0)
    _, cl = np.unique(cl, return_inverse=True)
    per_cluster = np.bincount(cl, weights=ref.astype(np.int64) - other.astype(np.int64)).round().astype(np.int64)
    observed = int(abs(per_cluster.sum()))
    d = np.abs(per_cluster[per_cluster != 0])  # the null distribution depends on |d_k| only
    if d.size == 0:
        return ClusteredMcNemarResult(observed, 1.0, 0)
    total = int(d.sum())
    prob = np.zeros(2 * total + 1)  # prob[total + x]: probability that the signed sum so far is x
    prob[total] = 1.0
    for step in d.tolist():
        shifted = np.zeros_like(prob)
        shifted[step:] += 0.5 * prob[:prob.size - step]
        shifted[:prob.size - step] += 0.5 * prob[step:]
        prob = shifted
    sums = np.arange(-total, total + 1)
    p = float(prob[np.abs(sums) >= observed].sum())
    return ClusteredMcNemarResult(observed, min(1.0, p), int(d.size))


# ---------------------------------------------------------------------------------------------------------------
# bootstrap


def cluster_bootstrap_replicates(values, clusters, *, weights=None, n_boot: int = 2000, seed: int = 0,
                                 chunk: int = 256) -> tuple[np.ndarray, int]:
    """Bootstrap replicates of the (weighted) mean of ``values`` when whole clusters (people) are resampled.

    Each replicate draws ``n_clusters`` clusters with replacement (``numpy.random.default_rng(seed).integers``,
    ``chunk`` replicates at a time) and takes every value of every drawn cluster, as many times as it was drawn.
    Vectorised: a replicate is a vector of cluster counts.

    Args:
        values: ``float[n]`` (e.g. per-pair correctness differences, or per-probe cosines).
        clusters: ``int[n]`` cluster id per value. weights: ``float[n] > 0`` or None (equal weights).

    Returns:
        ``(float[n_boot] replicate means, number of clusters)``.
    """
    v = np.asarray(values, dtype=np.float64)
    cl = np.asarray(clusters)
    if v.ndim != 1 or v.size == 0 or cl.shape != v.shape:
        raise ValueError("values and clusters must be non-empty 1-D arrays of equal length")
    w = np.ones(v.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != v.shape or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be one positive finite number per value")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    _, cl = np.unique(cl, return_inverse=True)
    k = int(cl.max()) + 1
    # per-cluster sums: a replicate's statistic is (counts @ value_sum) / (counts @ size)
    value_sum = np.bincount(cl, weights=w * v, minlength=k)
    size = np.bincount(cl, weights=w, minlength=k)
    stats = np.empty(n_boot)
    for start, counts in cluster_bootstrap_counts(k, n_boot=n_boot, seed=seed, chunk=chunk):
        stats[start:start + counts.shape[0]] = (counts @ value_sum) / (counts @ size)
    return stats, k


def cluster_bootstrap_counts(n_clusters: int, *, n_boot: int = 2000, seed: int = 0, chunk: int = 256
                             ) -> Iterator[tuple[int, np.ndarray]]:
    """The draws of the people-resampling bootstrap, ``chunk`` replicates at a time: yields ``(first replicate,
    float64[m, n_clusters] counts)``, how many times each cluster (ids ``0..n_clusters-1``) is drawn in each
    replicate (``numpy.random.default_rng(seed).integers``, ``n_clusters`` draws with replacement per replicate).
    A pair's weight in a replicate is its cluster's count. :func:`cluster_bootstrap_replicates` and
    :mod:`restorever.reports.rate_stats` use these draws, so equal ``n_boot`` and ``seed`` give the same
    resampled pairs to both."""
    if n_clusters < 1 or n_boot < 1:
        raise ValueError(f"n_clusters and n_boot must be positive, got {n_clusters} and {n_boot}")
    rng = np.random.default_rng(seed)
    k = int(n_clusters)
    offsets = None
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        draws = rng.integers(0, k, size=(m, k))
        if offsets is None or offsets.shape[0] != m:
            offsets = (np.arange(m) * k)[:, None]
        yield start, np.bincount((draws + offsets).ravel(), minlength=m * k).reshape(m, k).astype(np.float64)


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``replicates`` (``numpy.quantile``'s linear rule)."""
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class BootstrapResult:
    """Accuracy difference ``other - reference`` (a fraction) with a percentile bootstrap interval."""

    difference: float
    low: float
    high: float
    std: float
    level: float
    n_boot: int
    n_clusters: int
    seed: int


def cluster_bootstrap_difference(correct_ref, correct_other, clusters, *, n_boot: int = 2000, level: float = 0.95,
                                 seed: int = 0, chunk: int = 256, weights=None) -> BootstrapResult:
    """Percentile bootstrap interval of the paired accuracy difference, resampling clusters.

    Each replicate draws ``n_clusters`` clusters with replacement (``numpy.random.default_rng(seed).integers``,
    ``chunk`` replicates at a time) and takes every pair of every drawn cluster, as many times as the cluster was
    drawn; the statistic is the (weighted) mean of ``correct_other - correct_ref`` over that multiset of pairs.
    Both conditions use the same draws (a paired bootstrap). Vectorised: a replicate is a vector of cluster counts.

    Args:
        correct_ref, correct_other: ``bool[n]`` per-pair decisions (see :func:`pair_decisions`).
        clusters: ``int[n]`` cluster id per pair (see :func:`pair_clusters`; ``arange(n)`` resamples pairs).
        n_boot: replicates; level: interval coverage in (0, 1); seed: the generator's seed.
        weights: ``float[n] > 0`` per-pair weights (:func:`fold_weights` gives the mean of the fold accuracies);
            None weighs pairs equally (the accuracy pooled over all pairs).

    Returns:
        :class:`BootstrapResult` with the observed difference, the interval and the bootstrap standard deviation.
    """
    ref = np.asarray(correct_ref).astype(bool)
    other = np.asarray(correct_other).astype(bool)
    cl = np.asarray(clusters)
    if not (ref.shape == other.shape == cl.shape) or ref.ndim != 1 or ref.size == 0:
        raise ValueError("correct_ref, correct_other and clusters must be non-empty 1-D arrays of equal length")
    w = np.ones(ref.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != ref.shape or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be one positive finite number per pair")
    check_level(level)
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    d = other.astype(np.float64) - ref.astype(np.float64)
    stats, k = cluster_bootstrap_replicates(d, cl, weights=w, n_boot=n_boot, seed=seed, chunk=chunk)
    low, high = percentile_interval(stats, level)
    return BootstrapResult(float(np.sum(w * d) / np.sum(w)), low, high,
                           float(stats.std(ddof=1)) if n_boot > 1 else 0.0, float(level), int(n_boot), k, int(seed))


#: how a comparison weighs pairs: ``fold_mean`` as the LFW accuracy (the mean of the fold accuracies, the results
#: table's number), ``pooled`` every pair alike (records before 2026-12-06 #3, which store no ``estimator``)
ESTIMATORS = ("fold_mean", "pooled")


def fold_weights(folds) -> np.ndarray:
    """Per-pair weights ``1 / (n_folds * size of the pair's fold)``: the weighted mean of per-pair correctness is
    then the mean of the fold accuracies, which the results table shows (equal to the pooled accuracy when every
    fold has as many pairs, as in LFW View 2 without skipped pairs)."""
    fold = np.asarray(folds)
    _, inverse, sizes = np.unique(fold, return_inverse=True, return_counts=True)
    return 1.0 / (sizes.size * sizes[inverse].astype(np.float64))


# ---------------------------------------------------------------------------------------------------------------
# multiple comparisons


def _p_vector(p_values) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    bad = ~np.isnan(p) & ((p < 0) | (p > 1))
    if np.any(bad):
        raise ValueError(f"p-values must lie in [0, 1] (or be NaN), got {p[bad][0]!r}")
    return p


def holm_adjust(p_values) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (family-wise error rate, valid under any dependence).

    With the ``m`` non-NaN p-values sorted ascending, ``p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``
    (``i, j = 1..m``): reject the hypotheses whose ``p~ <= alpha`` to keep the probability of any false rejection
    at most ``alpha``. Ties get equal adjusted values.

    Args:
        p_values: ``float[n]`` in [0, 1]; NaN entries (no test) stay NaN and do not count in the family.

    Returns:
        ``float64[n]`` in [0, 1], in the input's order; never below the raw p nor above :func:`bonferroni_adjust`.
    """
    p = _p_vector(p_values)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    out[ok] = adjusted
    return out


def bonferroni_adjust(p_values) -> np.ndarray:
    """Bonferroni adjusted p-values ``min(1, m p)``, ``m`` the number of non-NaN entries (NaN stays NaN);
    ``float64[n]`` in [0, 1]. Holm's (:func:`holm_adjust`) rejects everything this rejects and possibly more."""
    p = _p_vector(p_values)
    return np.minimum(1.0, int(np.sum(~np.isnan(p))) * p)


#: the comparisons a results record's conditions may hold; each kind is its own family
COMPARISON_KINDS = ("comparison_to_none", "comparison_to_clean")
#: the tests of a comparison that get ``p_holm``; each is adjusted on its own
TESTS = ("mcnemar", "mcnemar_clustered")


def adjust_family(comparisons: Sequence[dict[str, Any]], tests: Sequence[str] = TESTS) -> None:
    """Store ``p_holm`` and ``family_size`` beside ``p_value`` in each test (``tests``, by default :data:`TESTS`)
    of ``comparisons`` (dicts of :func:`compare_conditions`), in place; the family is the given list, and each test
    is adjusted over the comparisons that hold it. A stored p that is not a number (a damaged record) counts as no
    test: NaN."""
    for test in tests:
        holders = [c[test] for c in comparisons if isinstance(c.get(test), dict)]
        if not holders:
            continue
        raw = [h.get("p_value") for h in holders]
        p = np.array([float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else np.nan for x in raw])
        p[(p < 0) | (p > 1)] = np.nan
        adjusted = holm_adjust(p)
        size = int(np.sum(~np.isnan(p)))
        for holder, value in zip(holders, adjusted.tolist()):
            holder["p_holm"] = None if math.isnan(value) else value
            holder["family_size"] = size


def add_adjusted_p_values(record: dict[str, Any]) -> dict[str, Any]:
    """Holm-adjust the McNemar p-values of ``record``'s conditions (in place; returns ``record``): one family per
    comparison kind (:data:`COMPARISON_KINDS`) over all conditions of the record (per recognizer, in a record that a
    library user assembled from several), each test on its own (see the
    module docstring). Uses the stored raw p-values only, so it also completes records written before it."""
    conds = [c for c in record.get("conditions") or [] if isinstance(c, dict)]
    for kind in COMPARISON_KINDS:
        for recognizer in dict.fromkeys(str(c.get("recognizer")) for c in conds):  # a run has one recognizer
            adjust_family([c[kind] for c in conds
                           if isinstance(c.get(kind), dict) and str(c.get("recognizer")) == recognizer])
    return record


# ---------------------------------------------------------------------------------------------------------------
# records


def compare_conditions(reference: dict[str, Any], other: dict[str, Any], clusters: np.ndarray, *,
                       n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                       resampled: str = CLUSTERINGS["probe"], estimator: str = "fold_mean") -> dict[str, Any]:
    """McNemar (per pair, and over the bootstrap's clusters) and the cluster bootstrap between two conditions of one
    record (both with ``scores`` and ``verification.thresholds``). Returns a JSON-ready dict; differences are
    ``other - reference`` fractions of the ``estimator`` (:data:`ESTIMATORS`: by default the mean of the fold
    accuracies, the results table's). ``ci_low``/``ci_high`` are None (with a warning) when ``clusters`` holds one
    cluster: every replicate would redraw the same pairs and give the zero-width interval ``[d, d]``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    ref = pair_decisions(reference["scores"], reference["verification"]["thresholds"])
    oth = pair_decisions(other["scores"], other["verification"]["thresholds"])
    if ref.shape != oth.shape or not np.array_equal(np.asarray(reference["scores"]["same"]),
                                                    np.asarray(other["scores"]["same"])):
        raise ValueError("the two conditions do not score the same pairs")
    if not np.array_equal(np.asarray(reference["scores"]["fold"]), np.asarray(other["scores"]["fold"])):
        raise ValueError("the two conditions do not put the pairs in the same folds")
    weights = fold_weights(reference["scores"]["fold"]) if estimator == "fold_mean" else np.ones(ref.size)
    test = mcnemar(ref, oth)
    clustered = clustered_mcnemar(ref, oth, clusters)
    boot = cluster_bootstrap_difference(ref, oth, clusters, n_boot=n_boot, level=level, seed=seed, weights=weights)
    low, high = boot.low, boot.high
    if boot.n_clusters < 2:  # every replicate redraws the one cluster: a zero-width interval that says nothing
        log.warning("%s vs %s: the bootstrap has one cluster (one person, or one pair) to resample, so the accuracy "
                    "difference gets no interval (ci_low, ci_high None)",
                    *[f"{c.get('restorer')} x{c.get('scale')}" if c.get("scale") is not None else "clean"
                      for c in (other, reference)])
        low = high = None
    return {
        "reference": {"restorer": reference["restorer"], "scale": reference.get("scale")},
        "estimator": estimator,
        "accuracy_reference": float(np.sum(weights * ref) / np.sum(weights)),
        "accuracy": float(np.sum(weights * oth) / np.sum(weights)),
        "accuracy_difference": boot.difference,
        "ci_low": low,
        "ci_high": high,
        "ci_level": boot.level,
        "bootstrap": {"n_boot": boot.n_boot, "std": boot.std, "seed": boot.seed, "clusters": boot.n_clusters,
                      "resampled": resampled},
        "mcnemar": {**asdict(test), "n_discordant": test.n_discordant},
        "mcnemar_clustered": {**asdict(clustered), "resampled": resampled},
    }


def add_comparisons(record: dict[str, Any], *, n_boot: int = 2000, level: float = 0.95, seed: int | None = None,
                    cluster_by: str = "probe", overwrite: bool = False, estimator: str = "fold_mean"
                    ) -> dict[str, Any]:
    """Add ``comparison_to_none`` (restorer vs ``none`` at the same scale) and ``comparison_to_clean`` (any degraded
    condition vs the clean one) to the conditions of ``record``, in place; returns ``record``.

    Conditions without stored ``scores`` are left alone. The bootstrap seed defaults to the run's
    ``config.seed``; pairs are clustered with :func:`pair_clusters` (``cluster_by``) on ``record["pairs"]`` (each
    pair its own cluster, with a warning, when the record has no pair ids). Comparisons already stored are kept
    unless ``overwrite``, or unless they predate ``estimator`` (pooled accuracies, which differ from the table's
    when folds differ in size) or ``mcnemar_clustered``: those are recomputed. In every case the p-values are then
    Holm-adjusted (:func:`add_adjusted_p_values`).
    """
    conds = [c for c in record.get("conditions", []) if c.get("scores") and c.get("verification")]
    if not conds:
        return add_adjusted_p_values(record)
    current = all("comparison_to_clean" in c and "estimator" in c["comparison_to_clean"]
                  and "mcnemar_clustered" in c["comparison_to_clean"] for c in conds if c.get("scale") is not None)
    if not overwrite and current:
        return add_adjusted_p_values(record)
    n = len(conds[0]["scores"]["score"])
    pairs = record.get("pairs") or {}
    if len(pairs.get("a", ())) == n and len(pairs.get("b", ())) == n:
        clusters = pair_clusters(pairs["a"], pairs["b"], cluster_by)
    else:
        log.warning("results record has no pair ids: the bootstrap resamples pairs, not people")
        cluster_by = "pairs"
        clusters = np.arange(n)
    if seed is None:
        seed = int((record.get("config") or {}).get("seed") or 0)
    options = {"n_boot": n_boot, "level": level, "seed": seed, "resampled": CLUSTERINGS[cluster_by],
               "estimator": estimator}
    clean_of: dict[Any, dict[str, Any]] = {}  # the clean condition of each recognizer (a run has one; a record
    for c in conds:  # assembled by a library user may hold several, and each is compared with its own clean one)
        if c.get("scale") is None:
            clean_of.setdefault(c.get("recognizer"), c)
    none_at = {(c["scale"], c.get("recognizer")): c for c in conds
               if c["restorer"] == "none" and c.get("scale") is not None}
    for cond in conds:
        if cond.get("scale") is None:
            continue
        clean = clean_of.get(cond.get("recognizer"))
        if clean is not None and len(clean["scores"]["score"]) == len(cond["scores"]["score"]):
            cond["comparison_to_clean"] = compare_conditions(clean, cond, clusters, **options)
        base = none_at.get((cond["scale"], cond.get("recognizer")))
        if cond["restorer"] != "none" and base is not None:
            cond["comparison_to_none"] = compare_conditions(base, cond, clusters, **options)
    return add_adjusted_p_values(record)

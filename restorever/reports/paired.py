"""The paired statistics of a run, for scores from your own pipeline (no results.json needed).

Two systems ``a`` (the reference) and ``b`` scored on the *same* pairs, with the person each pair belongs to:

- :func:`paired_accuracy_test`: k-fold thresholds per system (as ``restorever eval`` picks them), McNemar's test
  per pair and over people, and a people-resampling bootstrap interval of the accuracy difference ``b - a``;
- :func:`paired_similarity_test`: the mean difference ``b - a`` of a per-image similarity (the identity metric:
  each probe's cosine to its clean original), with a people-resampling interval and a sign-flip test over people.

Both are thin wrappers: they build the record entries a run would store and call
:func:`restorever.reports.statistics.compare_conditions` and
:func:`restorever.reports.identity_stats.compare_identity`, so the numbers equal those of ``results.json`` for the
same scores, people, seed and options. Adjust the p-values of several comparisons with
:func:`restorever.reports.statistics.holm_adjust`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics.arrays import as_numpy, check_pair_labels
from ..metrics.verification import kfold_accuracy
from .identity_stats import EXACT_MAX_PEOPLE, N_DRAWS, compare_identity
from .statistics import CLUSTERINGS, compare_conditions

__all__ = ["paired_accuracy_test", "paired_similarity_test"]


#: what ``bootstrap.resampled`` says when the given people repeat
RESAMPLED = "people (the given person of each pair, with all their pairs)"


def _check_finite(what: str, arrays: dict[str, np.ndarray], unit: str, fix: str) -> None:
    """ValueError naming the first array of ``arrays`` that holds NaN or an infinity, and its first such entry."""
    for name, values in arrays.items():
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{what}: {name} contains NaN or infinite values ({unit} "
                             f"{int(np.argmin(np.isfinite(values)))}); {fix}")


def _people_labels(people: Any, n: int, what: str) -> list:
    """``people`` as a list of ``n`` hashable labels, else ValueError saying what to pass."""
    if people is None:
        raise ValueError(f"{what}: people is required: one person label per {'pair' if 'accuracy' in what else 'image'}"
                         " (pairs or images of one person are not independent); pass numpy.arange(n) to treat each "
                         "as independent (the intervals are then too narrow wherever people repeat)")
    labels = as_numpy(people)
    if labels.ndim != 1 or labels.size != n:
        raise ValueError(f"{what}: people must be 1-D with one label per entry ({n}), got shape {labels.shape}")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise ValueError(f"{what}: people contains NaN or infinite labels")
    return labels.tolist()


def paired_accuracy_test(y_true, scores_a, scores_b, folds, *, people, n_boot: int = 2000, level: float = 0.95,
                         seed: int = 0, estimator: str = "fold_mean") -> dict[str, Any]:
    """Paired comparison of the verification accuracy of two systems on the same pairs.

    Each system gets its own per-fold thresholds from :func:`restorever.metrics.kfold_accuracy` (for each fold
    the exact accuracy-maximising threshold of the *other* folds; a pair is *same* when ``score > threshold``),
    then the per-pair decisions are compared with :func:`restorever.reports.statistics.compare_conditions`.

    Args:
        y_true: ``int[n]`` 1 same person, 0 different. scores_a, scores_b: ``float[n]``, higher = more similar
            (pass ``-distance``), finite. folds: ``int[n]`` fold id per pair, at least 2 folds (LFW: 10).
        people: ``[n]`` one label per pair (str or int): the person whose pairs are resampled together, as a run
            clusters by the person of each pair's probe image; clusters are numbered in order of first appearance.
        n_boot, level, seed: the bootstrap's replicates, interval coverage in (0, 1) and generator seed.
        estimator: ``"fold_mean"`` (the mean of the fold accuracies, LFW's number) or ``"pooled"`` (every pair
            alike).

    Returns:
        ``compare_conditions``' dict without its ``reference`` entry, plus ``thresholds`` (``{"a": [...], "b":
        [...]}``, per fold in increasing fold id): ``accuracy_reference`` (a), ``accuracy`` (b),
        ``accuracy_difference`` (b - a, a fraction) with ``ci_low``/``ci_high``/``ci_level`` (None, with a
        warning, with one person: the bootstrap would redraw the same pairs and give ``[d, d]``), ``bootstrap``,
        ``mcnemar`` (``b``: pairs a gets right and b wrong, ``c`` the reverse) and ``mcnemar_clustered``.
    """
    what = "paired_accuracy_test"
    y = as_numpy(y_true)
    sa, sb = as_numpy(scores_a, np.float64), as_numpy(scores_b, np.float64)
    f = as_numpy(folds)
    if not (y.ndim == sa.ndim == sb.ndim == f.ndim == 1) or not (y.size == sa.size == sb.size == f.size):
        raise ValueError(f"{what}: y_true, scores_a, scores_b and folds must be 1-D of equal length, got shapes "
                         f"{y.shape}, {sa.shape}, {sb.shape} and {f.shape}")
    if y.size == 0:
        raise ValueError(f"{what}: no pairs")
    _check_finite(what, {"scores_a": sa, "scores_b": sb}, "pair", "drop those pairs from both systems, or score them")
    check_pair_labels(y, f"{what}: y_true")
    if np.unique(f).size < 2:
        raise ValueError(f"{what}: folds holds one fold; the thresholds would be fitted on the pairs they are tested "
                         "on. Give the pairs at least 2 folds (LFW View 2: 10)")
    labels = _people_labels(people, y.size, what)
    index: dict[Any, int] = {}
    clusters = np.array([index.setdefault(p, len(index)) for p in labels], dtype=np.int64)
    scores = {"same": y.astype(np.int64).tolist(), "fold": f.tolist()}
    thresholds = {key: kfold_accuracy(y, s, f).thresholds for key, s in (("a", sa), ("b", sb))}
    conditions = {key: {"restorer": key, "scale": None, "scores": {**scores, "score": s.tolist()},
                        "verification": {"thresholds": thresholds[key].tolist()}}
                  for key, s in (("a", sa), ("b", sb))}
    out = compare_conditions(conditions["a"], conditions["b"], clusters, n_boot=n_boot, level=level, seed=seed,
                             estimator=estimator, resampled=RESAMPLED if len(index) < y.size else CLUSTERINGS["pairs"])
    out.pop("reference")
    out["thresholds"] = {key: t.tolist() for key, t in thresholds.items()}
    return out


def paired_similarity_test(similarity_a, similarity_b, *, people, n_boot: int = 2000, level: float = 0.95,
                           seed: int = 0, exact_max: int = EXACT_MAX_PEOPLE, n_draws: int = N_DRAWS
                           ) -> dict[str, Any]:
    """Paired comparison of a per-image similarity (e.g. each probe's cosine to its clean original) between two
    systems on the same images, with :func:`restorever.reports.identity_stats.compare_identity`.

    Args:
        similarity_a, similarity_b: ``float[n]``, finite, one value per image in the same order (a: reference).
        people: ``[n]`` one person label per image (str or int); people are numbered in sorted label order, as a
            run numbers them by sorted image id.
        n_boot, level, seed: the bootstrap's replicates, coverage in (0, 1) and seed (also the sign-flip draws').
        exact_max, n_draws: up to ``exact_max`` people with a non-zero difference the sign-flip test enumerates
            every sign vector, beyond it draws ``n_draws``.

    Returns:
        ``compare_identity``'s dict without its ``reference`` entry: ``n``, ``cosine_reference`` (mean of a),
        ``cosine`` (mean of b), ``cosine_difference`` (b - a, over images) with ``ci_low``/``ci_high``/``ci_level``
        (None with one person), ``bootstrap`` and ``sign_flip`` (over the per-person mean differences).
    """
    what = "paired_similarity_test"
    va, vb = as_numpy(similarity_a, np.float64), as_numpy(similarity_b, np.float64)
    if va.ndim != 1 or va.shape != vb.shape:
        raise ValueError(f"{what}: similarity_a and similarity_b must be 1-D of equal length, got shapes {va.shape} "
                         f"and {vb.shape}")
    if va.size == 0:
        raise ValueError(f"{what}: no images")
    _check_finite(what, {"similarity_a": va, "similarity_b": vb}, "image", "drop those images from both systems")
    labels = _people_labels(people, va.size, what)
    _, rank = np.unique(np.asarray(labels), return_inverse=True)
    # image ids whose sorted order groups images by person in sorted label order, which compare_identity reads
    ids = [f"{int(r):09d}/{i:09d}" for i, r in enumerate(rank.ravel())]
    a = {"restorer": "a", "scale": None, "identity": {"per_item": dict(zip(ids, va.tolist()))}}
    b = {"restorer": "b", "scale": None, "identity": {"per_item": dict(zip(ids, vb.tolist()))}}
    out = compare_identity(a, b, n_boot=n_boot, level=level, seed=seed, exact_max=exact_max, n_draws=n_draws)
    out.pop("reference")
    return out

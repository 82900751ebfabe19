"""Paired intervals for the rate metrics: AUC and TAR@FAR of a restorer against ``none`` at the same scale.

LFW accuracy saturates for strong recognizers, so papers compare restorers by AUC and TAR at a low FAR. Both
conditions score the *same* pairs, so the difference ``other - reference`` (fractions) gets a paired interval:
each bootstrap replicate resamples people (the clusters of the accuracy comparison beside it, with all their pairs)
and weighs every pair by how many times its person was drawn, the same weights for both conditions.

- :func:`resolved_fars`: the FAR keys of ``verification.tar_at_far`` that a set of conditions resolves (a TAR is
  stored only where there are at least ``1 / FAR`` different-person pairs; see
  :func:`restorever.metrics.verification.tar_at_far`);
- :func:`compare_rates`: the AUC difference and the TAR@FAR difference at each resolved FAR (``None`` at the
  others), each with a percentile interval;
- :func:`add_rate_comparisons`: stores them as ``comparison_to_none.auc`` and ``comparison_to_none.tar_at_far`` in
  a results record, with the draws (``n_boot``, ``seed``, people, interval level) that the accuracy comparison
  in the same dict states in ``bootstrap`` and ``ci_level``: equal ``n_boot`` and ``seed`` give the same resampled
  pairs as its accuracy interval (:func:`restorever.reports.statistics.cluster_bootstrap_counts`).

AUC and TAR are pooled over all pairs (as ``verification.auc``), not averaged over folds, and use no threshold, so
nothing is held fixed across replicates. A replicate's TAR is the weighted TPR at a weighted FPR <= a rate
(:func:`restorever.metrics.verification.weighted_auc_and_tar`): under ``tar_rule`` 2 (stored beside the numbers)
the middle of the observed FAR's cell (:func:`replicate_far`), under rule 1 (records without ``tar_rule``) the FAR
itself. Whether a FAR is resolved is decided once, on the observed pairs. No p-value is stored (the interval is the
result), so these enter no Holm family.
"""
from __future__ import annotations

import copy
import logging
import math
import warnings
from typing import Any, Sequence

import numpy as np

from ..metrics.verification import roc_auc_score, tar_at_far, weighted_auc_and_tar
from .labels import condition_label
from .statistics import (CLUSTERINGS, check_level, checked_n_boot, cluster_bootstrap_counts, pair_clusters,
                         percentile_interval)

__all__ = ["resolved_fars", "compared_fars", "compare_rates", "add_rate_comparisons", "RATE_KEYS", "rate_cell",
           "RATES_NOTE", "TAR_RULE", "TAR_RULES", "replicate_far", "stored_rule", "rule_note", "misread_rules"]

log = logging.getLogger(__name__)

#: the keys :func:`add_rate_comparisons` adds to ``comparison_to_none``
RATE_KEYS = ("auc", "tar_at_far")
#: how the replicates read TAR@FAR, stored as ``tar_rule`` beside :data:`RATE_KEYS`: 1 (every record written before
#: the key) at the FAR itself, 2 at the middle of the observed FAR's cell (:func:`replicate_far`); a stored rule is
#: the one ``validate`` recomputes with
TAR_RULE = 2
TAR_RULES = (1, 2)
#: how a replicate reads TAR@FAR under each rule, as the notes under the rate tables say it
RULE_TEXT = {1: "at the FAR itself (tar_rule 1, records written before 2026-12-07)",
             2: "at (k + 1/2)/N, N being the impostor pairs and k the largest whole number with k/N <= FAR "
                "(tar_rule 2)"}


RATES_NOTE = (
    "Δ AUC and Δ TAR@FAR: restorer minus none at the same scale over the same pairs (AUC as a fraction, TAR in "
    "percentage points), pooled over all pairs as in the results table, with a 95 % percentile bootstrap interval "
    "that resamples people (the same people and draws as the accuracy interval of the paired comparisons, the "
    "same resampled pairs for both conditions). A FAR is shown only where the run has at least 1/FAR "
    "different-person pairs; at the lowest FAR shown, a handful of impostor pairs decide the TAR, so expect a wide "
    "interval. No test and no multiple-comparison adjustment: each is a 95 % interval on its own.")


def rate_cell(diff: Any, scale: float = 1.0, digits: int = 4) -> str:
    """``+0.0123 [-0.0050, +0.0290]``: a stored rate difference (times ``scale``: 100 for percentage points) with
    its interval, without it where it is None; ``—`` where nothing is stored."""
    if not isinstance(diff, dict) or diff.get("difference") is None:
        return "—"
    low, high = diff.get("ci_low"), diff.get("ci_high")
    text = f"{scale * diff['difference']:+.{digits}f}"
    return text + (f" [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]" if low is not None and high is not None
                   else "")


def resolved_fars(conds: Sequence[dict[str, Any]]) -> list[str]:
    """The FAR keys of ``verification.tar_at_far`` for which some condition of ``conds`` stores a TAR (not None),
    smallest rate first."""
    keys = {k for c in conds for k, v in ((c.get("verification") or {}).get("tar_at_far") or {}).items()
            if v is not None}
    return sorted(keys, key=float)


def compared_fars(comparisons: Sequence[dict[str, Any]]) -> list[str]:
    """The FAR keys for which some of ``comparisons`` (dicts holding a :func:`compare_rates` ``tar_at_far``) has a
    TAR difference, largest rate first: the TAR columns of a table of them."""
    keys = {f for c in comparisons for f, v in ((c or {}).get("tar_at_far") or {}).items() if v}
    return sorted(keys, key=float, reverse=True)


def stored_rule(comp: Any) -> Any:
    """The TAR rule a stored ``comparison_to_none`` (or a :func:`compare_rates` result) was computed by: its
    ``tar_rule``, 1 where it holds ``tar_at_far`` without one (records before the key), None where it holds none."""
    if not isinstance(comp, dict) or "tar_at_far" not in comp:
        return None
    return comp.get("tar_rule", 1)


def rule_note(rows: Sequence[tuple[str, Any]]) -> str:
    """The sentence under a table of rate comparisons saying how their replicates read TAR@FAR; ``rows``: (row
    label, :func:`stored_rule`). Where the rows differ it names the rows of each rule; empty for no rule."""
    by_rule: dict[Any, list[str]] = {}
    for label, rule in rows:
        if rule is not None:
            by_rule.setdefault(rule, []).append(label)
    texts = {rule: RULE_TEXT.get(rule, f"by tar_rule {rule!r}, unknown to this version") for rule in by_rule}
    if len(by_rule) < 2:
        return "".join(f"Bootstrap replicates read TAR@FAR {text}." for text in texts.values())
    groups = [f"{texts[rule]} in {', '.join(labels)}" for rule, labels in sorted(by_rule.items(), key=str)]
    return ("The rows' bootstrap replicates read TAR@FAR by different rules (compare keeps a run's stored rule where "
            "it reproduces that run's draws): " + "; ".join(groups) + ".")


def replicate_far(far: float, n_negatives: int) -> float:
    """The rate at which rule 2's replicates read TAR@FAR: ``(k + 1/2) / N`` (at most 1), where ``k`` is the largest
    whole number with ``k / N <= far``, ``N`` the observed impostor pairs (the impostors
    :func:`restorever.metrics.verification.tar_at_far` accepts at ``far`` when no impostor scores tie; with ties it
    may accept fewer, down to the last ROC vertex at or below ``k / N``).

    On the observed pairs it gives the TAR of ``far`` itself (so does every FAR from ``k / N`` to just below
    ``(k + 1) / N``: the cell; with tied impostor scores the observed TAR is constant over a wider range). A
    replicate of drawn impostor weight ``W`` then accepts about ``(k + 1/2) W / N``:
    where ``far x N`` is a whole number, reading at ``far`` itself made every replicate with ``W < N`` (about half)
    accept an impostor fewer, so both conditions' replicate TARs sat below the observed ones more often than above.
    """
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be positive, got {n_negatives}")
    k = min(math.floor((far + 1e-12) * n_negatives), n_negatives)
    while k > 0 and k / n_negatives > far + 1e-12:  # tar_at_far's own test, fpr <= far + 1e-12, decides k
        k -= 1
    while k < n_negatives and (k + 1) / n_negatives <= far + 1e-12:
        k += 1
    return min((k + 0.5) / n_negatives, 1.0)


def _interval(values: np.ndarray, level: float, n_clusters: int) -> tuple[float | None, float | None]:
    if n_clusters < 2 or not np.all(np.isfinite(values)):  # one person: every replicate draws the same pairs
        return None, None
    return percentile_interval(values, level)


def compare_rates(reference: dict[str, Any], other: dict[str, Any], clusters, *, n_boot: int = 2000,
                  level: float = 0.95, seed: int = 0, chunk: int = 256, tar_rule: int = TAR_RULE) -> dict[str, Any]:
    """AUC and TAR@FAR of ``other`` minus ``reference`` (fractions), two conditions with ``scores`` over the same
    pairs, with paired people-resampling percentile intervals.

    Args:
        clusters: ``int[n_pairs]`` cluster (person) per pair, as for the accuracy comparison.
        n_boot, level, seed: as :func:`restorever.reports.statistics.cluster_bootstrap_difference` (``level`` in
            (0, 1), else ValueError).
        tar_rule: how replicates read TAR@FAR (:data:`TAR_RULES`; 1 for a record that stores none).

    Returns:
        ``{"auc": {"reference", "value", "difference", "ci_low", "ci_high"} | None, "tar_at_far": {far: same | None},
        "tar_rule": int}`` with one key per FAR of ``reference``'s ``verification.tar_at_far``; None where a FAR is
        not resolved (or one class is absent); interval ends None with one cluster, or (with a warning) when some
        replicate draws no genuine or no impostor pair.
    """
    check_level(level)
    if tar_rule not in TAR_RULES or isinstance(tar_rule, bool):
        raise ValueError(f"tar_rule must be one of {TAR_RULES}, got {tar_rule!r} (a record of a newer restorever?)")
    ref, oth = reference["scores"], other["scores"]
    same = np.asarray(ref["same"], dtype=np.int64)
    if not np.array_equal(same, np.asarray(oth["same"], dtype=np.int64)):
        raise ValueError("the two conditions do not score the same pairs")
    cl = np.asarray(clusters)
    if cl.shape != same.shape:
        raise ValueError(f"{cl.size} cluster ids for {same.size} pairs")
    _, cl = np.unique(cl, return_inverse=True)
    k = int(cl.max()) + 1 if cl.size else 0
    s_ref = np.asarray(ref["score"], dtype=np.float64)
    s_oth = np.asarray(oth["score"], dtype=np.float64)
    fars = sorted(((reference.get("verification") or {}).get("tar_at_far") or {}), key=float, reverse=True)
    resolved = set(resolved_fars([reference, other]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auc_a, auc_b = roc_auc_score(same, s_ref), roc_auc_score(same, s_oth)
        tar_a = {f: tar_at_far(same, s_ref, float(f)) for f in fars}
        tar_b = {f: tar_at_far(same, s_oth, float(f)) for f in fars}
    keep = [f for f in fars if f in resolved and not (math.isnan(tar_a[f]) or math.isnan(tar_b[f]))]
    out: dict[str, Any] = {"auc": None, "tar_at_far": {f: None for f in fars}, "tar_rule": tar_rule}
    if math.isnan(auc_a) or math.isnan(auc_b) or k == 0:
        return out
    diff_auc = np.empty(n_boot)
    diff_tar = np.empty((n_boot, len(keep)))
    n_neg = int(np.sum(same == 0))
    rates = [replicate_far(float(f), n_neg) if tar_rule == 2 else float(f) for f in keep]
    for start, counts in cluster_bootstrap_counts(k, n_boot=n_boot, seed=seed, chunk=chunk):
        weights = counts[:, cl]  # a pair weighs as often as its person was drawn, in both conditions
        a_ref, t_ref = weighted_auc_and_tar(same, s_ref, weights, rates)
        a_oth, t_oth = weighted_auc_and_tar(same, s_oth, weights, rates)
        diff_auc[start:start + counts.shape[0]] = a_oth - a_ref
        diff_tar[start:start + counts.shape[0]] = t_oth - t_ref
    undefined = int(np.sum(~np.isfinite(diff_auc)))
    if undefined:
        log.warning("%s vs %s at scale %s: %d of %d bootstrap replicates draw no genuine or no impostor pair; no "
                    "AUC / TAR@FAR interval (too few people)", other.get("restorer"), reference.get("restorer"),
                    other.get("scale"), undefined, n_boot)
    low, high = _interval(diff_auc, level, k)
    out["auc"] = {"reference": auc_a, "value": auc_b, "difference": auc_b - auc_a, "ci_low": low, "ci_high": high}
    for j, f in enumerate(keep):
        low, high = _interval(diff_tar[:, j], level, k)
        out["tar_at_far"][f] = {"reference": tar_a[f], "value": tar_b[f], "difference": tar_b[f] - tar_a[f],
                                "ci_low": low, "ci_high": high}
    return out


def add_rate_comparisons(record: dict[str, Any], *, overwrite: bool = False) -> dict[str, Any]:
    """Add ``auc`` and ``tar_at_far`` (:func:`compare_rates`) to each ``comparison_to_none`` of ``record`` whose
    condition and ``none`` reference (same scale and recognizer) hold ``scores``, in place; returns ``record``.

    The draws are the accuracy comparison's own: its ``bootstrap.n_boot``, ``bootstrap.seed``, ``ci_level`` and
    people (``bootstrap.resampled`` names the clustering; pairs from ``record["pairs"]``). The TAR rule is the
    comparison's ``tar_rule`` where it names one (``validate`` sets a stored record's), else :data:`TAR_RULE`. What is
    stored is kept unless ``overwrite``; a comparison whose clustering is unknown, or whose numbers cannot be
    computed, is left without them, with a warning.
    """
    conds = [c for c in record.get("conditions") or [] if isinstance(c, dict)]
    none_at = {(c.get("scale"), c.get("recognizer")): c for c in conds
               if c.get("restorer") == "none" and c.get("scale") is not None and c.get("scores")}
    by_text = {text: key for key, text in CLUSTERINGS.items()}
    pairs = record.get("pairs") or {}
    clusters_by: dict[str, np.ndarray] = {}
    for cond in conds:
        comp = cond.get("comparison_to_none")
        base = none_at.get((cond.get("scale"), cond.get("recognizer")))
        if not isinstance(comp, dict) or base is None or not cond.get("scores"):
            continue
        if not overwrite and all(key in comp for key in RATE_KEYS):
            continue
        try:
            boot = comp["bootstrap"]
            cluster_by = by_text[boot["resampled"]]
            n = len(cond["scores"]["score"])
            if cluster_by not in clusters_by:
                if cluster_by != "pairs" and not (len(pairs.get("a", ())) == n == len(pairs.get("b", ()))):
                    raise ValueError(f"the comparison resampled {boot['resampled']} but the record has no pair ids")
                clusters_by[cluster_by] = pair_clusters(pairs.get("a", [""] * n), pairs.get("b", [""] * n),
                                                        cluster_by)
            comp.update(compare_rates(base, cond, clusters_by[cluster_by], n_boot=checked_n_boot(boot["n_boot"]),
                                      level=float(comp["ci_level"]), seed=int(boot["seed"]),
                                      tar_rule=comp.get("tar_rule", TAR_RULE)))
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            log.warning("no AUC / TAR@FAR comparison to none for %s at scale %s: %s", cond.get("restorer"),
                        cond.get("scale"), exc)
    return record


def _same_tars(a: Any, b: Any) -> bool:
    """Whether two ``tar_at_far`` blocks hold the same FARs and numbers (to float rounding)."""
    if not (isinstance(a, dict) and isinstance(b, dict)) or set(a) != set(b):
        return False
    for far in a:
        x, y = a[far] or {}, b[far] or {}
        for key in set(x) | set(y):
            u, v = x.get(key), y.get(key)
            numbers = all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in (u, v))
            if not (u == v or numbers and math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12)):
                return False
    return True


def misread_rules(record: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """Lines naming each ``comparison_to_none`` of ``record`` whose stored TAR@FAR intervals are not those of the
    rule it states (:func:`stored_rule`) but those of the other one: an edited or dropped ``tar_rule``. ``fresh``:
    ``record`` recomputed by the stated rules (``validate``'s); the other rule is computed here (one more bootstrap of
    the record's rate comparisons), so call it only where ``fresh`` disagrees."""
    other = copy.deepcopy({k: record[k] for k in ("config", "pairs", "conditions") if k in record})
    stated: dict[int, tuple[int, int]] = {}  # condition index: (the stated rule, the other one)
    for i, cond in enumerate(other.get("conditions") or []):
        comp = cond.get("comparison_to_none") if isinstance(cond, dict) else None
        rule = stored_rule(comp)
        if rule in TAR_RULES and not isinstance(rule, bool):
            stated[i] = rule, next(r for r in TAR_RULES if r != rule)
            comp["tar_rule"] = stated[i][1]
    add_rate_comparisons(other, overwrite=True)
    out = []
    for i, (rule, alt) in stated.items():
        old = record["conditions"][i]["comparison_to_none"]
        by_stated = (fresh["conditions"][i].get("comparison_to_none") or {}).get("tar_at_far")
        by_other = (other["conditions"][i].get("comparison_to_none") or {}).get("tar_at_far")
        if not _same_tars(old["tar_at_far"], by_stated) and _same_tars(old["tar_at_far"], by_other):
            said = f"stored {rule}" if "tar_rule" in old else "absent (a record without it: rule 1)"
            out.append(f"conditions[{i}] ({condition_label(record['conditions'][i])}).comparison_to_none.tar_rule: "
                       f"{said}, but its TAR@FAR intervals are those of tar_rule {alt}: the rule was edited or "
                       "dropped (restorever stores the rule it computed by)")
    return out

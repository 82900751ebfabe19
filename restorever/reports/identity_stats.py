"""Intervals and paired tests for the identity metric: each probe's cosine to its own clean embedding.

``conditions[].identity.per_item`` holds one cosine per compared image (the probes; with ``--degrade-side both``
both images of a pair). Images of one person are not independent, so everything here resamples or flips *people*
(:func:`restorever.reports.statistics.person_of` of the image id), as the accuracy comparisons do:

- :func:`identity_interval`: a percentile bootstrap interval of a condition's mean cosine to clean
  (``identity.ci_low``, ``ci_high``, ``ci_level``, ``bootstrap``), resampling people with all their images;
- :func:`sign_flip_test`: a paired randomisation test over clusters. Under the null hypothesis (restoring does not
  change the cosine) each person's mean difference is as likely to have the other sign; the two-sided p-value is
  the share of sign vectors whose ``|sum_k s_k d_k|`` reaches the observed ``|sum_k d_k|``. All ``2^K`` vectors are
  enumerated when ``K <= EXACT_MAX_PEOPLE`` people have a non-zero difference, else ``n_draws`` random vectors are
  drawn (``numpy.random.default_rng(seed)``) and ``p = (1 + hits) / (1 + n_draws)`` (never 0, a valid p-value).
  The test weighs every person alike (the per-person *mean* difference), the interval every image alike;
- :func:`compare_identity`: one restorer against ``none`` at the same scale on the same images: the mean difference
  ``restored - degraded`` of the cosine with a people-resampling bootstrap interval (the same draws for both
  conditions: a paired bootstrap) and :func:`sign_flip_test`;
- :func:`add_identity_statistics`: puts both into a results record (``identity.ci_*`` and
  ``identity_comparison_to_none`` per condition) and Holm-adjusts the sign-flip p-values as one family: every
  ``identity_comparison_to_none`` of the record (all restorers x scales, per recognizer), apart from the accuracy
  families of :mod:`restorever.reports.statistics` (a different metric and a separate claim).

The cosines are the stored ``per_item`` values (rounded to 1e-6), so the numbers can be recomputed from
results.json alone (``restorever validate`` does).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import numpy as np

from .statistics import (adjust_family, check_level, checked_n_boot, cluster_bootstrap_replicates, percentile_interval,
                         person_of)

__all__ = ["EXACT_MAX_PEOPLE", "N_DRAWS", "MAX_N_DRAWS", "IDENTITY_KIND", "RESAMPLED", "sign_flip_test",
           "identity_interval", "compare_identity", "add_identity_statistics", "identity_statistics_problems"]

log = logging.getLogger(__name__)

#: up to this many people (with a non-zero difference) the sign-flip test enumerates all 2^K sign vectors
EXACT_MAX_PEOPLE = 20
#: random sign vectors of the Monte Carlo sign-flip test above :data:`EXACT_MAX_PEOPLE` people
N_DRAWS = 20000
#: the most draws ``restorever validate`` recomputes (a record stating more is edited or damaged)
MAX_N_DRAWS = 1_000_000
#: the key of the paired identity comparison in a condition
IDENTITY_KIND = "identity_comparison_to_none"
#: what ``bootstrap.resampled`` says
RESAMPLED = "people (the person of each image, with all their images)"


def _people(items) -> np.ndarray:
    index: dict[str, int] = {}
    return np.array([index.setdefault(person_of(i), len(index)) for i in items], dtype=np.int64)


def sign_flip_test(per_cluster, *, exact_max: int = EXACT_MAX_PEOPLE, n_draws: int = N_DRAWS, seed: int = 0,
                   chunk: int = 1 << 14) -> dict[str, Any]:
    """Two-sided paired sign-flip (randomisation) test of ``per_cluster`` differences (``float[K]``, one per
    person) against a symmetric null around 0.

    Returns ``{"statistic": |sum d|, "p_value", "method": "exact" | "monte carlo", "clusters": K' (non-zero
    differences), "n_draws": None | n_draws, "seed": None | seed}``. Zero differences cannot change the sum and are
    dropped; with none left p = 1. A flipped sum within ``1e-9 * sum |d|`` of the observed one counts as reaching it
    (floating-point ties).
    """
    d = np.asarray(per_cluster, dtype=np.float64)
    if d.ndim != 1 or not np.all(np.isfinite(d)):
        raise ValueError("per_cluster must be a 1-D array of finite numbers")
    if n_draws < 1:
        raise ValueError(f"n_draws must be positive, got {n_draws}")
    d = d[d != 0]
    observed = float(abs(d.sum()))
    if d.size == 0:
        return {"statistic": observed, "p_value": 1.0, "method": "exact", "clusters": 0, "n_draws": None,
                "seed": None}
    bar = observed - 1e-9 * float(np.abs(d).sum())
    k = int(d.size)
    if k <= exact_max:
        hits = 0
        total = 1 << k
        bits = np.arange(k, dtype=np.int64)
        for start in range(0, total, chunk):
            codes = np.arange(start, min(total, start + chunk), dtype=np.int64)
            signs = 1.0 - 2.0 * ((codes[:, None] >> bits) & 1)
            hits += int(np.sum(np.abs(signs @ d) >= bar))
        return {"statistic": observed, "p_value": min(1.0, hits / total), "method": "exact", "clusters": k,
                "n_draws": None, "seed": None}
    rng = np.random.default_rng(seed)
    hits = 0
    step = max(1, chunk // max(1, k // 64))  # about chunk * 64 signs in memory at a time
    for start in range(0, n_draws, step):
        m = min(step, n_draws - start)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(m, k))
        hits += int(np.sum(np.abs(signs @ d) >= bar))
    return {"statistic": observed, "p_value": (1 + hits) / (1 + n_draws), "method": "monte carlo", "clusters": k,
            "n_draws": int(n_draws), "seed": int(seed)}


def _per_item(identity: Any) -> dict[str, float]:
    per_item = (identity or {}).get("per_item") if isinstance(identity, dict) else None
    if not isinstance(per_item, dict):
        return {}
    return {str(i): float(v) for i, v in per_item.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def identity_interval(per_item: Mapping[str, float], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                      ) -> dict[str, Any]:
    """A people-resampling percentile bootstrap interval of the mean of ``per_item`` (cosine per image id).

    Returns ``{"ci_low", "ci_high", "ci_level", "bootstrap": {"n_boot", "seed", "clusters", "resampled"}}``; with
    one person the interval is ``None`` (resampling one person says nothing about others). People are numbered in
    the order of the sorted image ids (as :func:`compare_identity` does), so the draws do not depend on the order
    of ``per_item`` (a JSON object is unordered: a key-sorted results.json gives the same interval).
    """
    if not per_item:
        raise ValueError("no per-image cosines to resample")
    check_level(level)
    items = sorted(per_item)
    values = np.array([float(per_item[i]) for i in items])
    reps, k = cluster_bootstrap_replicates(values, _people(items), n_boot=n_boot, seed=seed)
    low, high = percentile_interval(reps, level) if k > 1 else (None, None)
    return {"ci_low": low, "ci_high": high, "ci_level": float(level),
            "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "clusters": int(k), "resampled": RESAMPLED}}


def compare_identity(reference: dict[str, Any], other: dict[str, Any], *, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0, exact_max: int = EXACT_MAX_PEOPLE, n_draws: int = N_DRAWS) -> dict[str, Any]:
    """The cosine to clean of ``other`` (a restorer) against ``reference`` (``none`` at the same scale), image by
    image. Raises ValueError when the two do not hold cosines of the same images.

    Returns a JSON-ready dict: ``reference`` ({restorer, scale}), ``n`` images, ``cosine_reference`` and ``cosine``
    (means over the images), ``cosine_difference`` (other - reference), ``ci_low``/``ci_high``/``ci_level`` (its
    bootstrap interval, None with one person), ``bootstrap`` and ``sign_flip`` (:func:`sign_flip_test` on the
    per-person mean differences). ``level``: the interval's coverage, in (0, 1), else ValueError.
    """
    check_level(level)  # also with one person, where no interval is drawn but the level is stored
    ref, oth = _per_item(reference.get("identity")), _per_item(other.get("identity"))
    if not ref or set(ref) != set(oth):
        raise ValueError(f"identity.per_item of {other.get('restorer')} and {reference.get('restorer')} at scale "
                         f"{other.get('scale')} do not hold the same images ({len(oth)} and {len(ref)})")
    items = sorted(ref)
    diff = np.array([oth[i] - ref[i] for i in items])
    people = _people(items)
    reps, k = cluster_bootstrap_replicates(diff, people, n_boot=n_boot, seed=seed)
    low, high = percentile_interval(reps, level) if k > 1 else (None, None)
    per_person = np.bincount(people, weights=diff) / np.bincount(people)
    return {
        "reference": {"restorer": reference.get("restorer"), "scale": reference.get("scale")},
        "n": len(items),
        "cosine_reference": float(np.mean([ref[i] for i in items])),
        "cosine": float(np.mean([oth[i] for i in items])),
        "cosine_difference": float(diff.mean()),
        "ci_low": low, "ci_high": high, "ci_level": float(level),
        "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "clusters": int(k), "resampled": RESAMPLED},
        "sign_flip": sign_flip_test(per_person, exact_max=exact_max, n_draws=n_draws, seed=seed),
    }


def add_identity_statistics(record: dict[str, Any], *, n_boot: int = 2000, level: float = 0.95,
                            seed: int | None = None, overwrite: bool = False, n_draws: int = N_DRAWS
                            ) -> dict[str, Any]:
    """Add ``identity.ci_low/ci_high/ci_level/bootstrap`` to each degraded condition with ``identity.per_item`` and
    ``identity_comparison_to_none`` to each restorer's condition that has ``none`` at its scale (same recognizer),
    in place; returns ``record``. What is stored is kept unless ``overwrite``; the sign-flip p-values are then
    Holm-adjusted over all ``identity_comparison_to_none`` of the record per recognizer (``p_holm``,
    ``family_size`` in ``sign_flip``). The seed defaults to the run's ``config.seed``. A condition whose images
    differ from ``none``'s is left without a comparison, with a warning. ``n_draws``: random sign vectors of a
    Monte Carlo sign-flip test (more than :data:`EXACT_MAX_PEOPLE` people).
    """
    if seed is None:
        seed = int((record.get("config") or {}).get("seed") or 0)
    conds = [c for c in record.get("conditions") or [] if isinstance(c, dict)]
    none_at = {(c.get("scale"), c.get("recognizer")): c for c in conds
               if c.get("restorer") == "none" and c.get("scale") is not None}
    for cond in conds:
        if cond.get("scale") is None:
            continue
        ident = cond.get("identity")
        per_item = _per_item(ident)
        if per_item and (overwrite or "ci_level" not in ident):
            ident.update(identity_interval(per_item, n_boot=n_boot, level=level, seed=seed))
        base = none_at.get((cond.get("scale"), cond.get("recognizer")))
        if cond.get("restorer") == "none" or base is None or not per_item or (IDENTITY_KIND in cond and not overwrite):
            continue
        try:
            cond[IDENTITY_KIND] = compare_identity(base, cond, n_boot=n_boot, level=level, seed=seed,
                                                  n_draws=n_draws)
        except ValueError as exc:
            log.warning("no identity comparison to none: %s", exc)
    for recognizer in dict.fromkeys(str(c.get("recognizer")) for c in conds):
        adjust_family([c[IDENTITY_KIND] for c in conds
                       if isinstance(c.get(IDENTITY_KIND), dict) and str(c.get("recognizer")) == recognizer],
                      tests=("sign_flip",))
    return record


def identity_statistics_problems(record: dict[str, Any], compare) -> tuple[list[str], int]:
    """Recompute the stored ``identity.ci_*`` and ``identity_comparison_to_none`` of ``record`` from its
    ``per_item`` cosines (with the stored ``n_boot``, level, seed and draws) and list where they differ
    (``compare(stored, fresh, where, out)``, as ``restorever validate`` compares numbers). Returns
    ``(problems, number of blocks checked)``; a record storing neither gives ``([], 0)``."""
    import copy

    from .labels import condition_label

    conds = [c for c in record.get("conditions") or [] if isinstance(c, dict)]
    stored_ci = [c["identity"] for c in conds if isinstance(c.get("identity"), dict) and "ci_level" in c["identity"]]
    stored_cmp = [c[IDENTITY_KIND] for c in conds if isinstance(c.get(IDENTITY_KIND), dict)]
    if not stored_ci and not stored_cmp:
        return [], 0
    first = (stored_cmp or stored_ci)[0]
    try:
        options = {"n_boot": checked_n_boot(first["bootstrap"]["n_boot"]), "level": float(first["ci_level"]),
                   "seed": int(first["bootstrap"]["seed"])}
        drawn = [c["sign_flip"]["n_draws"] for c in stored_cmp
                 if isinstance(c.get("sign_flip"), dict) and c["sign_flip"].get("method") == "monte carlo"]
        if drawn:  # the draws the record states (another version's default, or a library user's choice)
            options["n_draws"] = int(drawn[0])
            if not 1 <= options["n_draws"] <= MAX_N_DRAWS:
                raise ValueError(f"sign_flip.n_draws {options['n_draws']} is outside 1..{MAX_N_DRAWS:,}; an edited "
                                 "or damaged record")
        fresh = copy.deepcopy({"config": record.get("config"), "conditions": conds})
        for cond in fresh["conditions"]:
            cond.pop(IDENTITY_KIND, None)
            if isinstance(cond.get("identity"), dict):
                for key in ("ci_low", "ci_high", "ci_level", "bootstrap"):
                    cond["identity"].pop(key, None)
        add_identity_statistics(fresh, overwrite=True, **options)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        return [f"identity statistics cannot be recomputed ({type(exc).__name__}: {exc})"], 0
    problems: list[str] = []
    checked = 0
    for i, (old, new) in enumerate(zip(conds, fresh["conditions"])):
        label = f"conditions[{i}] ({condition_label(old)})"
        old_ident, new_ident = old.get("identity") or {}, new.get("identity") or {}
        if isinstance(old_ident, dict) and "ci_level" in old_ident:
            if "ci_level" not in new_ident:
                problems.append(f"{label}.identity.ci_low: stored but not recomputed (no per_item cosines)")
            else:
                compare({k: old_ident.get(k) for k in ("ci_low", "ci_high", "ci_level", "bootstrap")},
                        {k: new_ident.get(k) for k in ("ci_low", "ci_high", "ci_level", "bootstrap")},
                        f"{label}.identity", problems)
                checked += 1
        if (IDENTITY_KIND in old) != (IDENTITY_KIND in new):
            problems.append(f"{label}.{IDENTITY_KIND}: "
                            f"{'stored but not recomputed' if IDENTITY_KIND in old else 'missing'}")
        elif IDENTITY_KIND in old:
            compare(old[IDENTITY_KIND], new[IDENTITY_KIND], f"{label}.{IDENTITY_KIND}", problems)
            checked += 1
    return problems, checked

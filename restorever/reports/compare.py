"""Paired comparison of verification runs made separately (``restorever compare RUN_DIR RUN_DIR ... --out DIR``).

Researchers often run each restorer on its own (another day, another GPU, another ``--out``). Two such runs can be
compared pair by pair only when they scored the same pairs of the same faces, degraded the same way and embedded by
the same recognizer. This module

- checks that (:func:`check_comparable`): the same evaluated pairs (``protocol.pairs_sha256`` and the pair ids,
  labels and folds of the scores), recognizer (name, weights, flip test, similarity), alignment (``align_on``, the
  landmark fit, detector, template) and degradation (preset, ``seed``, ``degrade_side``; a difference there is
  allowed only on request and makes the comparison unpaired in its inputs), and clean conditions whose scores agree
  within ``atol`` (float rounding): anything else is a :class:`~restorever.errors.RestoreverError` of one line
  naming the runs and what differs;
- merges the conditions at the scales every run has (the others are listed as left out): a restorer present in
  several runs (``none`` in each) is kept once when its scores agree, else each copy is labelled ``NAME (RUN)``;
- computes, with :func:`restorever.reports.statistics.compare_conditions` (the statistics of one run), each
  restorer against ``none`` of its own run, each degraded condition against the clean one, and each pair of
  restorers, at each scale (differences ``other - reference`` as fractions; intervals resample people), with the
  AUC and TAR@FAR differences of each restorer against ``none`` and of each pair of restorers
  (:func:`restorever.reports.rate_stats.compare_rates`, on the accuracy interval's draws), and Holm-adjusts each
  kind's McNemar p-values over all its comparisons (``p_holm``, ``family_size``: one family per kind, ``vs_none``,
  ``vs_clean`` and ``pair``, over every compared scale; per-pair and clustered tests apart).

:func:`compare_runs` returns the JSON-ready ``comparison.json`` dict (documented in docs/architecture.md),
:func:`merged_record` the merged conditions as one results record, which ``tables.py`` and ``plots.plot_scales``
take as they take one run's, and :func:`write_comparison` writes everything into a folder.
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import RestoreverError
from .html import stored_metric_differences
from .identity_stats import IDENTITY_KIND, compare_identity, identity_interval
from .rate_stats import (RATES_NOTE, TAR_RULE, TAR_RULES, compare_rates, compared_fars, rate_cell, rule_note,
                         stored_rule)
from .results import IDENTITY_NOTE, comparison_cell, identity_comparison_cell, results_table
from .statistics import CLUSTERINGS, adjust_family, compare_conditions, pair_clusters

log = logging.getLogger(__name__)

__all__ = ["SCORE_ATOL", "DEFAULT_N_BOOT", "COMPARISON_FILE", "stored_n_boot", "check_comparable", "compare_runs",
           "notes_unpaired", "merged_record", "comparison_markdown", "write_comparison"]

#: largest absolute difference between two runs' scores of one condition still taken as float rounding
SCORE_ATOL = 1e-6
#: bootstrap replicates when the compared runs do not all state the same number
DEFAULT_N_BOOT = 2000
COMPARISON_FILE = "comparison.json"
_UNPAIRED = ("the comparison is then unpaired in its inputs: each run degraded the probes differently, so a "
             "difference between restorers of different runs mixes the restorers with the degraded inputs")


#: checks made only between the records that store the fact (older records lack it)
_RECORDED_ONLY = ("pairs (protocol.pairs_sha256)", "recognizer weights or options")


def _config(record: dict[str, Any]) -> dict[str, Any]:
    return record.get("config") or {}


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    return (record.get("cache") or {}).get("identity") or {}


def _short(value: Any) -> str:
    text = "none recorded" if value is None else str(value)
    return text if len(text) <= 24 else text[:12] + "…"


def _scored(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The conditions with verification results and stored per-pair scores."""
    return [c for c in record.get("conditions") or [] if c.get("verification") and c.get("scores")]


def _clean(record: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in _scored(record) if c.get("scale") is None), None)


def _same_scores(a: dict[str, Any], b: dict[str, Any], atol: float) -> tuple[bool, float]:
    """Whether two conditions' scores agree within ``atol`` (and their labels and folds exactly), and the largest
    absolute score difference (inf when the pairs differ)."""
    sa, sb = a["scores"], b["scores"]
    if len(sa["score"]) != len(sb["score"]) or list(sa["same"]) != list(sb["same"]) \
            or list(sa["fold"]) != list(sb["fold"]):
        return False, float("inf")
    diff = np.abs(np.asarray(sa["score"], dtype=np.float64) - np.asarray(sb["score"], dtype=np.float64))
    worst = float(diff.max()) if diff.size else 0.0
    return bool(worst <= atol), worst


def _refuse(names: Sequence[str], what: str, values: Sequence[Any], fix: str) -> RestoreverError:
    shown = ", ".join(f"{n}: {_short(v)}" for n, v in zip(names, values))
    return RestoreverError(f"the runs cannot be compared: different {what} ({shown}); {fix}")


def check_comparable(records: Sequence[dict[str, Any]], names: Sequence[str], *,
                     allow_different_degradation: bool = False, atol: float = SCORE_ATOL) -> list[str]:
    """Check that verification run records can be compared pair by pair; returns notes (``[]`` when fully paired).

    Raises :class:`RestoreverError` (one line naming each run's value) on: an identification run or one without
    per-pair scores; other evaluated pairs; another recognizer (name, weights, flip test, similarity); another
    alignment (``align_on``, landmark fit, detector, template); another degradation preset, seed or degraded side
    (unless ``allow_different_degradation``: then a note says the comparison is unpaired in its inputs); clean
    scores that differ by more than ``atol``; stored metrics that differ from the ones a record's own scores give
    (an edited or damaged results.json, whose table numbers would not match the recomputed differences).
    """
    if len(records) < 2:
        raise RestoreverError("compare needs at least two run folders")
    for name, record in zip(names, records):
        if not record.get("conditions") or not any(c.get("verification") for c in record["conditions"]):
            raise RestoreverError(f"{name}: not a verification run (no verification results); compare takes "
                                  f"`restorever eval` runs of a verification protocol")
        unscored = [c for c in record["conditions"] if c.get("verification") and not c.get("scores")]
        if _clean(record) is None or unscored:
            which = "the clean condition" if _clean(record) is None else \
                f"{unscored[0]['restorer']} x{unscored[0].get('scale')}"
            raise RestoreverError(f"{name}: its results.json stores no per-pair scores of {which}, which a paired "
                                  f"comparison needs; rerun `restorever eval` with this version")
        edited = stored_metric_differences(record)
        if edited:
            raise RestoreverError(f"{name}: {len(edited)} stored metric(s) of its results.json differ from the ones "
                                  f"its stored scores give (e.g. {edited[0]}): the file was edited or damaged after "
                                  f"the run; run `restorever validate` on it, and compare runs whose numbers agree")

    def differs(values: Sequence[Any], recorded_only: bool = False) -> bool:
        """Whether the values differ (``recorded_only``: among the records that store the fact; older records
        lack ``pairs_sha256`` and ``cache.identity``, and the pair ids and clean scores are checked anyway)."""
        return len({repr(v) for v in values if v is not None or not recorded_only}) > 1

    checks = [  # (what, value of a record, fix)
        ("protocol", lambda r: (r.get("protocol") or {}).get("name"), "compare runs of one protocol"),
        ("pairs (protocol.pairs_sha256)", lambda r: (r.get("protocol") or {}).get("pairs_sha256"),
         "compare runs of the same pairs file, --limit-pairs and skipped pairs"),
        ("recognizer", lambda r: _config(r).get("recognizer"),
         "compare runs of one recognizer (a cross-recognizer comparison is not paired in its scores)"),
        ("recognizer weights or options", lambda r: _identity(r).get("recognizer"),
         "compare runs of one recognizer with the same weights, options and --flip-test"),
        ("similarity", lambda r: _config(r).get("similarity"), "compare runs scored with one similarity"),
        ("alignment (align_on)", lambda r: _config(r).get("align_on", "clean"),
         "compare runs made with the same --align-on"),
        ("alignment fit", lambda r: _identity(r).get("alignment_fit", "least-squares"),
         "compare runs whose protocols fit the landmarks the same way (alignment.fit)"),
        ("landmark detector", lambda r: (_config(r).get("detector"), _identity(r).get("detector_file")),
         "compare runs made with the same --detector (and detector file)"),
        ("alignment template", lambda r: _config(r).get("template"), "compare runs aligned to one template"),
    ]
    for what, value_of, fix in checks:
        values = [value_of(r) for r in records]
        if differs(values, recorded_only=what in _RECORDED_ONLY):
            raise _refuse(names, what, values, fix)
    first_pairs = records[0].get("pairs") or {}
    first_clean = _clean(records[0])
    for name, record in zip(names[1:], records[1:]):
        pairs = record.get("pairs") or {}
        if (pairs.get("a"), pairs.get("b")) != (first_pairs.get("a"), first_pairs.get("b")):
            raise RestoreverError(f"the runs cannot be compared: {name} evaluated other pairs than {names[0]} "
                                  f"(its pair ids differ: skipped pairs or another pairs file); compare runs of "
                                  f"the same evaluated pairs")
        same, worst = _same_scores(first_clean, _clean(record), atol)
        if not same:
            raise RestoreverError(
                f"the runs cannot be compared: their clean conditions disagree ({names[0]} and {name}: "
                + ("other labels or folds" if worst == float("inf") else f"scores differ by up to {worst:.3g}, "
                   f"more than float rounding ({atol:g})")
                + "): the same faces were embedded differently (another device, library version or weights?); "
                  "compare runs made the same way, or raise --score-tolerance if this is rounding")
    notes: list[str] = []
    for what, key in (("degradation", "degradation"), ("seed", "seed"), ("degraded side", "degrade_side")):
        values = [_config(r).get(key) for r in records]
        if not differs(values):
            continue
        if not allow_different_degradation:
            raise _refuse(names, what, values, "the degraded inputs differ, so the runs are not paired; compare "
                          "runs made with the same --degradation, --seed and --degrade-side, or pass "
                          "--allow-different-degradation (" + _UNPAIRED.split(":")[0] + ")")
        notes.append(f"different {what} ({', '.join(f'{n}: {v}' for n, v in zip(names, values))}): {_UNPAIRED}")
    return notes


def _scales(record: dict[str, Any]) -> set[int]:
    return {c["scale"] for c in _scored(record) if c.get("scale") is not None}


def _merge(records: Sequence[dict[str, Any]], names: Sequence[str], scales: Sequence[int], atol: float
           ) -> tuple[list[dict[str, Any]], dict[tuple[str, int], str], list[str]]:
    """The merged degraded conditions (copies, ``restorer`` set to their label, ``run`` to the run that made them),
    the label of each run's ``none`` at each scale, and notes on what was kept once or relabelled."""
    restorers = list(dict.fromkeys(c["restorer"] for r in records for c in _scored(r) if c.get("scale") in scales))
    at = [{(c["restorer"], c["scale"]): c for c in _scored(r) if c.get("scale") in scales} for r in records]
    merged: list[dict[str, Any]] = []
    none_label: dict[tuple[str, int], str] = {}
    notes: list[str] = []
    for restorer in restorers:
        owners = [i for i, own in enumerate(at) if any((restorer, s) in own for s in scales)]
        ref = owners[0]

        def own(i: int) -> set[int]:
            return {s for (n, s) in at[i] if n == restorer}

        equal = all(own(i) == own(ref) and all(_same_scores(at[ref][(restorer, s)], at[i][(restorer, s)], atol)[0]
                                               for s in own(i)) for i in owners[1:])
        if len(owners) > 1:
            run_list = ", ".join(names[i] for i in owners)
            notes.append(f"{restorer}: in runs {run_list} with the same scores; one copy kept" if equal else
                         f"{restorer}: in runs {run_list} with different scores; labelled by run folder")
        for i in owners[:1] if equal else owners:
            label = restorer if equal else f"{restorer} ({names[i]})"
            for s in scales:
                if (restorer, s) in at[i]:
                    merged.append({**at[i][(restorer, s)], "restorer": label, "run": names[i]})
        if restorer == "none":
            for i in owners:
                for s in scales:
                    none_label[(names[i], s)] = "none" if equal else f"none ({names[i]})"
    order = list(dict.fromkeys(m["restorer"] for m in merged))
    merged.sort(key=lambda c: (c["scale"], order.index(c["restorer"])))
    return merged, none_label, notes


def compare_runs(records: Sequence[dict[str, Any]], names: Sequence[str], *, allow_different_degradation: bool = False,
                 atol: float = SCORE_ATOL, n_boot: int | None = None, level: float = 0.95, seed: int | None = None,
                 cluster_by: str = "probe") -> dict[str, Any]:
    """Check, merge and compare verification run records (``names``: their run folders' names, distinct).

    Returns the ``comparison.json`` dict: ``runs`` (name, path-free facts of each), ``scales`` (compared),
    ``left_out_scales`` (per run), ``paired_inputs``, ``notes``, ``conditions`` (the merged record's conditions
    without their per-pair data, see :func:`merged_record`) and ``comparisons``: one entry per (scale, reference,
    other) with ``kind`` ``vs_none`` (a restorer against ``none`` of its own run; of the other runs, when it has
    none and the inputs are paired), ``vs_clean`` or ``pair`` (two
    restorers), holding :func:`compare_conditions`'s output (fractions, other - reference) with ``p_holm`` and
    ``family_size`` in each test (:func:`restorever.reports.statistics.adjust_family`, one family per kind) and,
    for ``vs_none`` and ``pair``, ``auc`` and ``tar_at_far`` (:func:`restorever.reports.rate_stats.compare_rates`:
    other - reference with people-resampling intervals on the same draws as the accuracy interval, and
    ``tar_rule``: a ``vs_none`` condition's run's own where it stores rates drawn as here, else the current one;
    no p-value);
    ``identity_comparisons``: the cosine to clean of each ``vs_none`` pair of conditions
    (:func:`restorever.reports.identity_stats.compare_identity`, Holm over all of them). The bootstrap seed of a
    condition defaults to its own run's ``config.seed`` (a pair of restorers: the reference's run), so that its
    interval equals the one in its run's results.md; ``seed`` sets one seed for all. ``n_boot`` (replicates)
    defaults, for the same reason, to the runs' stored ``bootstrap.n_boot`` (:func:`stored_n_boot`) when they all
    state the same one, else to :data:`DEFAULT_N_BOOT` with a note saying so.
    """
    if len(set(names)) != len(names):
        raise RestoreverError(f"run names must differ, got {', '.join(names)}")
    notes = check_comparable(records, names, allow_different_degradation=allow_different_degradation, atol=atol)
    all_scales = [_scales(r) for r in records]
    common = sorted(set.intersection(*all_scales))
    if not common:
        raise RestoreverError("the runs cannot be compared: no degraded scale is in every run ("
                              + ", ".join(f"{n}: {sorted(s) or 'clean only'}" for n, s in zip(names, all_scales))
                              + "); compare runs that share a --scales value")
    left_out = {n: sorted(s - set(common)) for n, s in zip(names, all_scales) if s - set(common)}
    if left_out:
        notes.append("scales not in every run, left out: "
                     + "; ".join(f"{n}: {', '.join(f'x{s}' for s in v)}" for n, v in left_out.items()))
    merged, none_label, merge_notes = _merge(records, names, common, atol)
    notes += merge_notes
    pairs = records[0].get("pairs") or {}
    n = len(_clean(records[0])["scores"]["score"])
    if len(pairs.get("a") or ()) == n and len(pairs.get("b") or ()) == n:
        clusters = pair_clusters(pairs["a"], pairs["b"], cluster_by)
    else:
        log.warning("the results records have no pair ids: the bootstrap resamples pairs, not people")
        cluster_by, clusters = "pairs", np.arange(n)
    # each run's conditions are resampled with that run's own seed (unless `seed` is given), so a condition's
    # interval here is the one its run's results.md shows: the runs' clean scores agree, and so do the clusters
    run_seed = {name: int(_config(r).get("seed") or 0) if seed is None else seed for name, r in zip(names, records)}
    if n_boot is None:  # likewise the runs' own replicate count (`report --bootstrap N` may have changed it)
        stored = {name: stored_n_boot(r) for name, r in zip(names, records)}
        if None not in stored.values() and len(set(stored.values())) == 1:
            n_boot = next(iter(stored.values()))
        else:
            n_boot = DEFAULT_N_BOOT
            if any(v is not None for v in stored.values()):
                notes.append("the runs' intervals were drawn with different numbers of bootstrap replicates ("
                             + ", ".join(f"{k}: {v if v is not None else 'none stored'}" for k, v in stored.items())
                             + f"); compared with {n_boot:,}, so an interval here can differ from its run's "
                             "results.md (set --bootstrap N)")
    base_options = {"n_boot": n_boot, "level": level, "resampled": CLUSTERINGS[cluster_by]}

    def options_of(run: str) -> dict[str, Any]:
        return {**base_options, "seed": run_seed[run]}
    clean = {**_clean(records[0]), "run": names[0]}
    by_label = {(c["restorer"], c["scale"]): c for c in merged}
    # a run without a degraded `none` (e.g. `--restorer codeformer` alone) borrows the one `none` the other runs
    # share, when the inputs are paired: the same degraded faces through the same recognizer, the scores it would
    # have had itself (only with one shared copy: `none` labelled by run means the copies disagree)
    paired = not notes_unpaired(notes)
    borrowers = sorted({c["run"] for c in merged if (c["run"], c["scale"]) not in none_label})
    if paired and borrowers and any(("none", s) in by_label for s in common):
        for run in borrowers:
            for s in common:
                if ("none", s) in by_label:
                    none_label[(run, s)] = "none"
        notes.append(f"{', '.join(borrowers)}: no `none` condition of its own; compared with the `none` of the other "
                     f"run(s), which scored the same degraded inputs")
    comparisons = []
    identity: list[dict[str, Any]] = []  # the cosine to clean against none (reports.identity_stats)
    from ..progress import progress_bar

    # about a second per restorer comparison on a full LFW study (AUC/TAR@FAR replicates): a bar per scale
    for scale in progress_bar(common, len(common), "compare", unit="scale"):
        here = [c for c in merged if c["scale"] == scale]
        for cond in here:
            cond["comparison_to_clean"] = compare_conditions(clean, cond, clusters, **options_of(cond["run"]))
            comparisons.append({**cond["comparison_to_clean"], "scale": scale, "kind": "vs_clean",
                                "reference": "clean", "other": cond["restorer"]})
            own = cond.pop("comparison_to_none", None)
            # a run's stored TAR rule (1 before the key) where these draws are its own, so its numbers come back;
            # other draws give other numbers anyway, by the current rule
            rule = stored_rule(own) if _same_draws(own, options_of(cond["run"])) else TAR_RULE
            base = by_label.get((none_label.get((cond["run"], scale)), scale))
            cond.pop(IDENTITY_KIND, None)
            ident = cond.get("identity")
            if isinstance(ident, dict) and ident.get("per_item") and "ci_level" not in ident:  # an older run's
                cond["identity"] = {**ident, **identity_interval(ident["per_item"], n_boot=n_boot, level=level,
                                                                 seed=run_seed[cond["run"]])}
            if cond["restorer"] != "none" and not cond["restorer"].startswith("none (") and base is not None:
                cond["comparison_to_none"] = compare_conditions(base, cond, clusters, **options_of(cond["run"]))
                # AUC / TAR@FAR on the same draws: a run's own comparison_to_none.auc / .tar_at_far when paired
                cond["comparison_to_none"].update(compare_rates(base, cond, clusters, n_boot=n_boot, level=level,
                                                                seed=run_seed[cond["run"]], tar_rule=rule))
                comparisons.append({**cond["comparison_to_none"], "scale": scale, "kind": "vs_none",
                                    "reference": base["restorer"], "other": cond["restorer"]})
                try:
                    cond[IDENTITY_KIND] = compare_identity(base, cond, n_boot=n_boot, level=level,
                                                           seed=run_seed[cond["run"]])
                    identity.append({**cond[IDENTITY_KIND], "scale": scale, "reference": base["restorer"],
                                     "other": cond["restorer"]})
                except ValueError as exc:  # a run without per_item cosines, or of other images
                    log.warning("no identity comparison to none: %s", exc)
        restored = [c for c in here if c["restorer"] != "none" and not c["restorer"].startswith("none (")]
        for ref, other in itertools.combinations(restored, 2):
            result = compare_conditions(ref, other, clusters, **options_of(ref["run"]))
            result.update(compare_rates(ref, other, clusters, n_boot=n_boot, level=level, seed=run_seed[ref["run"]]))
            result["paired_inputs"] = ref["run"] == other["run"] or not notes_unpaired(notes)
            comparisons.append({**result, "scale": scale, "kind": "pair", "reference": ref["restorer"],
                                "other": other["restorer"]})
    # one Holm family per kind over every compared scale; the test dicts are shared with the merged conditions'
    # comparison_to_none / comparison_to_clean, so tables.csv and comparison.md show the same adjusted p-values
    for kind in ("vs_none", "vs_clean", "pair"):
        adjust_family([c for c in comparisons if c["kind"] == kind])
    adjust_family(identity, tests=("sign_flip",))  # shares its test dicts with the merged conditions, as above
    first = records[0]
    return {
        "runs": [{"name": name, "restorers": list(_config(r).get("restorers") or []),
                  "scales": sorted(s), "seed": _config(r).get("seed"), "degradation": _config(r).get("degradation"),
                  "degrade_side": _config(r).get("degrade_side"),
                  "restorever_version": r.get("restorever_version"), "created": r.get("created")}
                 for name, r, s in zip(names, records, all_scales)],
        "protocol": {k: (first.get("protocol") or {}).get(k) for k in ("name", "pairs", "folds", "pairs_sha256")},
        "recognizer": _config(first).get("recognizer"),
        "scales": common,
        "left_out_scales": left_out,
        "paired_inputs": not notes_unpaired(notes),
        "score_tolerance": atol,
        "notes": notes,
        "clean": {"runs": list(names), **_summary(clean)},
        "conditions": [{"label": c["restorer"], "run": c["run"], "scale": c["scale"], **_summary(c)} for c in merged],
        "comparisons": comparisons,
        "identity_comparisons": identity,
        "_merged": [clean, *merged],  # removed by merged_record / the writer; not part of comparison.json
    }


def _same_draws(comp: Any, options: dict[str, Any]) -> bool:
    """Whether a run's stored ``comparison_to_none`` holds rate comparisons (by a known TAR rule) drawn as compare
    draws with ``options`` (``n_boot``, ``seed``, ``level``, ``resampled``)."""
    boot = comp.get("bootstrap") if isinstance(comp, dict) else None
    return isinstance(boot, dict) and stored_rule(comp) in TAR_RULES and comp.get("ci_level") == options["level"] \
        and all(boot.get(key) == options[key] for key in ("n_boot", "seed", "resampled"))


def stored_n_boot(record: dict[str, Any]) -> int | None:
    """The bootstrap replicates a run's paired statistics were drawn with (``bootstrap.n_boot`` of its first
    ``comparison_to_clean``/``comparison_to_none``), or None when it stores none or several different ones."""
    found = {c[key]["bootstrap"].get("n_boot") for c in record.get("conditions") or [] if isinstance(c, dict)
             for key in ("comparison_to_clean", "comparison_to_none")
             if isinstance(c.get(key), dict) and isinstance(c[key].get("bootstrap"), dict)}
    found.discard(None)
    value = found.pop() if len(found) == 1 else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def notes_unpaired(notes: Sequence[str]) -> bool:
    """Whether the notes say the runs degraded their inputs differently."""
    return any(_UNPAIRED in n for n in notes)


def _summary(cond: dict[str, Any]) -> dict[str, Any]:
    v = cond["verification"]
    return {k: v.get(k) for k in ("accuracy_mean", "accuracy_std", "accuracy_sem", "auc", "eer")}


def merged_record(comparison: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A results-record-shaped dict of the merged conditions (clean first, then each scale's restorers, labelled),
    with the comparisons of :func:`compare_runs` as ``comparison_to_clean`` / ``comparison_to_none``: what
    ``tables.results_table_rows``/``to_latex`` and ``plots.plot_scales`` take. Header and protocol: the first
    run's, with ``config.restorers`` the merged labels, ``config.scales`` the compared scales and ``config.seed``
    ``None`` when the runs' seeds differ; each condition's ``seed`` is its own run's."""
    seed_of = {run["name"]: run.get("seed") for run in comparison["runs"]}  # each row's own run's (tables.csv)
    conds = [{**{k: v for k, v in c.items() if k != "run"}, "seed": seed_of.get(c.get("run"))}
             for c in comparison["_merged"]]
    first = records[0]
    # one seed only when every run has it (tables.tex names it; with several, compare's note names each run's)
    seeds = {_config(r).get("seed") for r in records}
    seed = seeds.pop() if len(seeds) == 1 else None
    return {
        "restorever_version": first.get("restorever_version"), "created": first.get("created"),
        "config": {**_config(first), "restorers": list(dict.fromkeys(c["restorer"] for c in conds
                                                                     if c.get("scale") is not None)),
                   "scales": comparison["scales"], "out": None, "seed": seed},
        "protocol": first.get("protocol") or {},
        "pairs": first.get("pairs"),
        "conditions": conds,
    }


def comparison_markdown(comparison: dict[str, Any], record: dict[str, Any]) -> str:
    """``comparison.md``: the runs, the notes, each merged condition (the results table of one run), each pair
    of restorers at each scale (accuracy difference in percentage points, other - reference, with its interval
    and McNemar p-values) and the AUC / TAR@FAR differences of each restorer against none and of each pair."""
    proto = comparison["protocol"]
    lines = ["# restorever compare", "",
             f"Protocol {proto['name']}, {proto['pairs']} pairs, {proto['folds']} folds; recognizer "
             f"{comparison['recognizer']}; scales compared: {', '.join(f'x{s}' for s in comparison['scales'])}; "
             f"inputs {'paired' if comparison['paired_inputs'] else 'NOT paired (different degradation)'}.", "",
             "| run | restorers | scales | seed | degradation | side |", "|---|---|---|---|---|---|"]
    for run in comparison["runs"]:
        lines.append(f"| {run['name']} | {', '.join(run['restorers'])} | {', '.join(map(str, run['scales']))} | "
                     f"{run['seed']} | {run['degradation']} | {run['degrade_side']} |")
    if comparison["notes"]:
        lines += ["", *[f"- {n}" for n in comparison["notes"]]]
    lines += ["", "## Conditions", "", results_table(record), ""]
    sizes = {kind: sum(c["kind"] == kind for c in comparison["comparisons"]) for kind in ("vs_clean", "vs_none")}
    if any(sizes.values()):  # the Δ cells' Holm p: this comparison's families, not the runs' own (results.md)
        lines += ["Holm: adjusted over every comparison of its kind in this comparison, not over a run's own family "
                  f"(its results.md): {sizes['vs_clean']} vs clean, {sizes['vs_none']} vs none, at "
                  f"{', '.join(f'x{s}' for s in comparison['scales'])}; per-pair and clustered tests apart.", ""]
    lines += ["## Restorers against each other", ""]
    pairs = [c for c in comparison["comparisons"] if c["kind"] == "pair"]
    if not pairs:
        lines.append("Fewer than two restorers (other than none) at any scale: no pair to compare.")
    else:
        lines += ["| scale | reference | other | Δ acc (other − reference), pp [95 % CI] McNemar p (clustered); "
                  f"Holm over the {len(pairs)} pairs |",
                  "|---|---|---|---|"]
        lines += [f"| x{c['scale']} | {c['reference']} | {c['other']} | {comparison_cell(c)} |" for c in pairs]
    lines += _rates_markdown(comparison["comparisons"])
    ident = comparison.get("identity_comparisons") or []
    if ident:
        lines += ["", "## Cosine to clean against none", "",
                  f"| scale | reference | other | Δ cos (other − reference) [95 % CI] sign-flip p; Holm over the "
                  f"{len(ident)} comparisons |", "|---|---|---|---|"]
        lines += [f"| x{c['scale']} | {c['reference']} | {c['other']} | {identity_comparison_cell(c)} |"
                  for c in ident]
        lines += ["", IDENTITY_NOTE]
    lines.append("")
    return "\n".join(lines)


def _rates_markdown(comparisons: Sequence[dict[str, Any]]) -> list[str]:
    """comparison.md's "AUC and TAR@FAR" section: one row per ``vs_none`` and ``pair`` comparison that holds the
    rate differences (AUC as a fraction, TAR in percentage points, other - reference), one TAR column per FAR that
    some row resolves; no lines when none holds them."""
    rows = [c for c in comparisons if c["kind"] in ("vs_none", "pair") and "auc" in c]
    if not rows:
        return []
    fars = compared_fars(rows)
    head = ["scale", "reference", "other", "Δ AUC [95 % CI]", *[f"Δ TAR@FAR={f} pp [95 % CI]" for f in fars]]
    lines = ["", "## AUC and TAR@FAR", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for c in rows:
        tars = c.get("tar_at_far") or {}
        cells = [f"x{c['scale']}", c["reference"], c["other"], rate_cell(c.get("auc")),
                 *[rate_cell(tars.get(f), 100, 2) for f in fars]]
        lines.append("| " + " | ".join(cells) + " |")
    rules = rule_note([(f"x{c['scale']} {c['other']} − {c['reference']}", c.get("tar_rule")) for c in rows])
    return lines + ["", "Rows of two restorers: other − reference, on the draws of that pair's accuracy interval; "
                    "rows against none as below. " + RATES_NOTE + " " + rules]


def write_comparison(run_dirs: Sequence[str | Path], out: str | Path, *, allow_different_degradation: bool = False,
                     atol: float = SCORE_ATOL, n_boot: int | None = None, seed: int | None = None,
                     formats: Sequence[str] = ("png",)) -> dict[str, Path]:
    """Load the runs in ``run_dirs`` (folders or their results.json), compare them (:func:`compare_runs`) and write
    ``comparison.json``, ``comparison.md``, ``tables.csv``, ``tables.tex`` and the accuracy-against-scale figure
    ``scales.FORMAT`` for each of ``formats`` (``png``, ``pdf``, ``svg``) into ``out``. Runs are named by their
    folders (by their paths where two folders share a name). Returns the written paths, keyed by file name."""
    import json

    from ..files import atomic_write_text
    from ..pipeline.identification import json_safe
    from .figure_io import check_output
    from .plots import plot_scales
    from .results import RESULTS_FILE, load_results, prepare_out_dir
    from .tables import results_table_rows, to_csv, to_latex

    figures = [f"scales.{f.lstrip('.').lower()}" for f in dict.fromkeys(formats)]
    for name in figures:  # before any work: a bad format is refused before the runs are read
        check_output(name)
    paths = [Path(p) if Path(p).is_dir() else Path(p).parent for p in run_dirs]
    names = [p.resolve().name for p in paths]
    if len(set(names)) != len(names):
        names = [str(p) for p in paths]
    resolved = [p.resolve() for p in paths]
    if len(set(names)) != len(names) or len(set(resolved)) != len(resolved):
        raise RestoreverError(f"the same run folder is given twice ({', '.join(map(str, paths))}); name each run once")
    if Path(out).resolve() in resolved:
        raise RestoreverError(f"--out {out}: is the run folder {out}, whose own tables.csv and tables.tex (`restorever "
                              f"report`'s, of that run alone) the merged tables would replace; choose another --out")
    records = [load_results(p) for p in run_dirs]
    comparison = compare_runs(records, names, allow_different_degradation=allow_different_degradation, atol=atol,
                              n_boot=n_boot, seed=seed)
    record = merged_record(comparison, records)
    out = prepare_out_dir(out)  # after every refusal: a refused comparison leaves no (empty) folder behind
    del comparison["_merged"]
    for run, path in zip(comparison["runs"], paths):
        run["path"] = str(path)
    note = None
    if not comparison["paired_inputs"]:  # the caption must say it, not only comparison.md: tables travel alone
        runs = "; ".join(f"{', '.join(r['restorers']) or '?'} from run {r['name']}: {r['degradation']}, seed "
                         f"{r['seed']}, degraded side {r['degrade_side']}" for r in comparison["runs"])
        note = (f"Rows come from runs whose degraded inputs differ ({runs}), so differences between rows of "
                f"different runs are not paired.")
    written = {}
    for name, text in ((COMPARISON_FILE, json.dumps(json_safe(comparison), indent=1, allow_nan=False) + "\n"),
                       ("comparison.md", comparison_markdown(comparison, record)),
                       ("tables.csv", to_csv(results_table_rows(record))),
                       ("tables.tex", to_latex(record, source=f"the {RESULTS_FILE} of runs {', '.join(names)} "
                                                              "(restorever compare)",
                                               label_prefix="tab:restorever-compare", note=note))):
        atomic_write_text(out / name, text)
        written[name] = out / name
    for name in figures:
        written[name] = plot_scales([record], out / name, described=records)  # metadata: each run on its own
    return written

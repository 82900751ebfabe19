"""Per-group breakdown of a finished verification run: does degradation or restoration preserve identity equally for
every group of people (gender)?

Everything here reads a ``results.json`` record and changes nothing in it. Groups come either from the protocol's
``labels`` files (``--by gender``: attributes of *people*, an image belonging to the group of its person, the LFW name
before ``_NNNN``; a person with no label, or with contradicting labels, is ``unlabelled`` and still counted), or from
the user's CSV (``--labels FILE``, :func:`restorever.reports.group_labels.read_labels_csv`) keyed by person (the
image's folder, :func:`restorever.reports.statistics.person_of`) or by image id. The bootstrap always resamples
the image's person (its folder; an id without a folder is its own cluster), also when the labels are per image.

Per condition and group:

- ``identity``: mean cosine of the group's degraded (and restored) probes to their clean embeddings
  (``identity.per_item`` of the record), with a percentile bootstrap interval that resamples *people* with all their
  probes (:func:`restorever.reports.statistics.cluster_bootstrap_replicates`);
- ``verification``: the pairs whose two people are both in the group (genuine pairs and same-group impostor pairs),
  decided at the run's own per-fold thresholds (re-derived with :func:`restorever.metrics.kfold_accuracy` on *all*
  pairs, then applied to the group's pairs): pooled accuracy, FNMR (genuine pairs called different), FMR (impostor
  pairs called same) and AUC. Pairs whose two images are in two different labelled groups form the ``mixed`` row
  (FMR of its impostor pairs; FNMR of its genuine pairs, which only image-level labels can produce); a pair with an
  unlabelled image is in ``unlabelled``.

``difference``: the identity-similarity *drop* from clean (``1 - cosine``, the clean probe's similarity to itself
being 1) of each group minus that of the reference group, with a bootstrap interval that resamples people within
each group independently; when the two groups share people (image-level labels), the people of both groups are
resampled jointly instead (:func:`joint_cluster_bootstrap_means`: a drawn person
brings their probes in each group), so the correlation of a shared person's probes is kept. Fractions throughout
(accuracy, rates, AUC in [0, 1]; cosines in [-1, 1]).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..metrics.verification import finite_threshold, kfold_accuracy, roc_auc_score
from .figure_io import paper_style
from .labels import condition_label
from .group_labels import MIXED, UNLABELLED, BreakdownError
from .statistics import (check_level, cluster_bootstrap_counts, cluster_bootstrap_replicates, pair_decisions,
                         percentile_interval, person_of)

log = logging.getLogger(__name__)

#: attributes a run can be broken down by (the protocol's ``labels`` section must name their files). Not ``age``:
#: the Kumar scores label images, not people (47 of its 62 people have images on both sides of the 60-year
#: edge), so a person-level grouping would leave most of them unlabelled
ATTRIBUTES = ("gender",)
SCHEMA_VERSION = 1
#: how a labels source keys its groups: ``lfw-name`` (the protocol's lists: the LFW name before ``_NNNN``),
#: ``person`` (a CSV ``person,GROUP`` row: the image's folder) or ``item`` (a CSV ``item,GROUP`` row: the image id)
KEYS = ("lfw-name", "person", "item")
#: the figure draws at most this many labelled groups: the colour-blind-safe Okabe-Ito palette has 8 colours
MAX_FIGURE_GROUPS = 8


def person(item: str) -> str:
    """The person of an image id (``lfw-deepfunneled/Name/Name_0001.jpg`` -> ``Name``), as the label files key it."""
    from ..attributes.labels import person_of

    return person_of(item)


def _keying(key: str) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """``(cluster of an image id, label key of an image id)`` for a :data:`KEYS` value."""
    if key == "lfw-name":
        return person, person
    if key == "person":
        return person_of, person_of
    if key == "item":
        return person_of, lambda item: str(item).replace("\\", "/")
    raise ValueError(f"key must be one of {', '.join(KEYS)}, got {key!r}")


def person_groups(image_labels: Mapping[str, int], classes: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``({person: group name}, [people with contradicting labels])`` from per-image labels
    (``{"Name_0001": class index}``); people with contradicting labels are left out (unlabelled)."""
    seen: dict[str, set[int]] = {}
    for key, label in image_labels.items():
        seen.setdefault(person(key), set()).add(int(label))
    conflicting = sorted(p for p, s in seen.items() if len(s) > 1)
    return {p: classes[next(iter(s))] for p, s in seen.items() if len(s) == 1}, conflicting


def load_person_groups(record: dict[str, Any], run_dir: str | Path, by: str) -> tuple[dict[str, str], list[str],
                                                                                       dict[str, Any]]:
    """The run's protocol's labels for ``by``: ``({person: group}, classes, {"protocol", "files", "conflicting"})``.

    The protocol and data root are the ones recorded in ``config``. A protocol without a ``labels.<by>`` section, or
    whose label files are missing, raises :class:`BreakdownError` naming what to add.
    """
    from ..attributes.groups import AttributeSchema
    from ..pipeline.identification import load_labels
    from ..validate.common import load_recorded_protocol

    if by not in ATTRIBUTES:
        raise BreakdownError(f"--by must be one of {', '.join(ATTRIBUTES)}, got {by!r}")
    cfg = record.get("config") or {}
    if not cfg.get("protocol"):
        raise BreakdownError(f"{run_dir}: results.json records no config.protocol, so its labels cannot be found")
    protocol = load_recorded_protocol(record, Path(run_dir))  # files found from the run's start folder
    section = (protocol.spec.get("labels") or {}).get(by)
    if not isinstance(section, dict):
        raise BreakdownError(f"protocol {protocol.name} has no labels.{by} section: add one to its YAML (as in "
                             f"protocols/lfw-ident.yaml) naming the label files relative to the data root")
    schema = AttributeSchema(attributes=(by,))
    labels = load_labels(protocol, schema).get(by)
    if not labels:
        files = ", ".join(str(v) for v in section.values())
        raise BreakdownError(f"protocol {protocol.name}: the {by} label files ({files}) are missing or empty under "
                             f"the data root {protocol.root}; put them there or pass the right --data-root to eval")
    classes = list(schema.classes(by))
    groups, conflicting = person_groups(labels, classes)
    if conflicting:
        log.warning("%d person(s) with contradicting %s labels counted as %s: %s", len(conflicting), by,
                    UNLABELLED, ", ".join(conflicting[:5]))
    return groups, classes, {"protocol": protocol.name, "files": dict(section), "conflicting": conflicting}


def check_record(record: dict[str, Any], source: str = "results.json", *, lfw_names: bool = True) -> None:
    """:class:`BreakdownError` unless ``record`` is a verification run with pair ids, stored scores and per-probe
    identity in every degraded condition, and (``lfw_names``, for the protocol's label lists, which name files, not
    folders) each image's folder is the person its file name reads as (``PERSON/PERSON_NNNN.jpg``)."""
    conds = record.get("conditions") or []
    if not any(c.get("verification") for c in conds):
        raise BreakdownError(f"{source}: no condition has verification results; breakdown needs a `restorever eval` "
                             "run (pairs), not an identification run")
    pairs = record.get("pairs") or {}
    for i, c in enumerate(conds):
        scores = c.get("scores") or {}
        if not all(k in scores for k in ("same", "fold", "score")):
            raise BreakdownError(f"{source}: conditions[{i}] ({condition_label(c)}) stores no per-pair scores; "
                                 "rerun it with `restorever eval` of this version")
        n = len(scores["score"])
        if len(pairs.get("a") or ()) != n or len(pairs.get("b") or ()) != n:
            raise BreakdownError(f"{source}: no pair ids (pairs.a / pairs.b) for the {n} scored pairs, so pairs cannot "
                                 "be given to groups; rerun it with `restorever eval` of this version")
        if c.get("scale") is not None and not (c.get("identity") or {}).get("per_item"):
            raise BreakdownError(f"{source}: conditions[{i}] ({condition_label(c)}) has no identity.per_item "
                                 "(each probe's cosine to its clean embedding); rerun it with `restorever eval` of "
                                 "this version")
    if not lfw_names:
        return
    for item in dict.fromkeys([*(pairs.get("a") or ()), *(pairs.get("b") or ())]):
        parts = str(item).replace("\\", "/").split("/")
        if len(parts) >= 2 and parts[-2] != person(item):
            raise BreakdownError(f"{source}: image {item} is in folder {parts[-2]} but its name reads as person "
                                 f"{person(item)}; the label lists key people by LFW-style names, so name the images "
                                 "PERSON/PERSON_NNNN.jpg (and list them as PERSON_NNNN.jpg), or give a labels CSV "
                                 "keyed by folder or image id with --labels FILE")


def identity_by_group(per_item: Mapping[str, float], groups: Mapping[str, str], names: Sequence[str], *,
                      n_boot: int = 2000, level: float = 0.95, seed: int = 0, key: str = "lfw-name"
                      ) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Mean cosine to clean of each group's probes, with a people-resampling bootstrap interval.

    Returns ``({group: {"mean", "ci_low", "ci_high", "n_probes", "n_people"}}, {group: replicate means})``; a group
    without probes gets ``mean`` None. A group of one person gets no interval (``ci_low``/``ci_high`` None, no
    replicates): resampling one person repeats their mean, a zero-width interval that says nothing about the group.
    Group ``names[i]`` draws with seed ``seed + i``. ``key`` (:data:`KEYS`) says what ``groups`` is keyed by; the
    resampled cluster is the probe's person in every case.
    """
    cluster_of, key_of = _keying(key)
    items = list(per_item)
    cos = np.array([float(per_item[i]) for i in items], dtype=np.float64)
    people = np.array([cluster_of(i) for i in items])
    member = np.array([groups.get(key_of(i), UNLABELLED) for i in items])
    out: dict[str, dict[str, Any]] = {}
    reps: dict[str, np.ndarray] = {}
    for g_index, g in enumerate(names):
        mask = member == g
        if not mask.any():
            out[g] = {"mean": None, "ci_low": None, "ci_high": None, "n_probes": 0, "n_people": 0}
            continue
        stats, k = cluster_bootstrap_replicates(cos[mask], people[mask], n_boot=n_boot, seed=seed + g_index)
        low, high = percentile_interval(stats, level) if k > 1 else (None, None)
        out[g] = {"mean": float(cos[mask].mean()), "ci_low": low, "ci_high": high, "n_probes": int(mask.sum()),
                  "n_people": int(k)}
        if k > 1:
            reps[g] = stats
    return out, reps


def joint_cluster_bootstrap_means(values, clusters, in_a, in_b, *, n_boot: int = 2000, seed: int = 0,
                                  chunk: int = 256) -> tuple[np.ndarray, np.ndarray, int]:
    """Paired bootstrap replicates of two groups' means when the groups can share clusters (people).

    The clusters of both groups together (sorted, as :func:`numpy.unique` orders them) are resampled once per
    replicate, ``n_clusters`` draws with replacement (``numpy.random.default_rng(seed).integers``, ``chunk``
    replicates at a time), and both means come from that one draw: a drawn cluster brings its values in group a
    to a's mean and its values in group b to b's, as many times as it was drawn. A cluster in both groups so moves
    both means together, which independent resampling of each group (:func:`cluster_bootstrap_replicates`)
    ignores.

    Args:
        values: ``float[n]`` (per-probe cosines). clusters: ``[n]`` cluster id per value.
        in_a, in_b: ``bool[n]``, the values in group a and in group b (a value may be in either, both or neither).

    Returns:
        ``(float[n_boot] means of a, float[n_boot] means of b, number of clusters)``; a replicate that drew no
        cluster of a group has NaN as that group's mean.
    """
    v = np.asarray(values, dtype=np.float64)
    cl = np.asarray(clusters)
    a, b = np.asarray(in_a, dtype=bool), np.asarray(in_b, dtype=bool)
    if v.ndim != 1 or cl.shape != v.shape or a.shape != v.shape or b.shape != v.shape:
        raise ValueError("values, clusters, in_a and in_b must be 1-D arrays of equal length")
    if not a.any() or not b.any():
        raise ValueError("both groups need at least one value")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    used = a | b
    _, cl = np.unique(cl[used], return_inverse=True)
    v, a, b = v[used], a[used], b[used]
    k = int(cl.max()) + 1
    sums = [np.bincount(cl[m], weights=v[m], minlength=k) for m in (a, b)]
    sizes = [np.bincount(cl[m], minlength=k).astype(np.float64) for m in (a, b)]
    means = np.empty((2, n_boot))
    for start, counts in cluster_bootstrap_counts(k, n_boot=n_boot, seed=seed, chunk=chunk):  # the project's draws
        m = counts.shape[0]
        for g in (0, 1):
            total, n = counts @ sums[g], counts @ sizes[g]
            means[g, start:start + m] = np.divide(total, n, out=np.full(m, np.nan), where=n > 0)
    return means[0], means[1], k


def joint_difference_interval(per_item: Mapping[str, float], groups: Mapping[str, str], group: str, reference: str,
                              *, n_boot: int = 2000, level: float = 0.95, seed: int = 0, key: str = "item"
                              ) -> tuple[float | None, float | None, int]:
    """Paired percentile interval of ``group``'s identity drop minus ``reference``'s, for groups that share people.

    The people with probes in either group are resampled together (:func:`joint_cluster_bootstrap_means`, seeded
    with ``seed``), and each replicate's difference ``(1 - mean of group) - (1 - mean of reference)`` uses the same
    draw for both means. A replicate that drew no person of one of the groups has no difference and is left out.
    Returns ``(low, high, replicates used)``; ``(None, None, 0)`` when none is left.
    """
    cluster_of, key_of = _keying(key)
    items = list(per_item)
    cos = np.array([float(per_item[i]) for i in items], dtype=np.float64)
    member = np.array([groups.get(key_of(i), UNLABELLED) for i in items])
    mean_g, mean_ref, _ = joint_cluster_bootstrap_means(cos, [cluster_of(i) for i in items], member == group,
                                                        member == reference, n_boot=n_boot, seed=seed)
    diff = (1.0 - mean_g) - (1.0 - mean_ref)
    diff = diff[np.isfinite(diff)]
    if not diff.size:
        log.warning("%s − %s has no interval: no replicate drew people of both groups", group, reference)
        return None, None, 0
    low, high = percentile_interval(diff, level)
    return low, high, int(diff.size)


def pair_groups(items_a: Sequence[str], items_b: Sequence[str], groups: Mapping[str, str], *,
                key: str = "lfw-name") -> np.ndarray:
    """Group of each pair: the group of both images (their people's, or their own with ``key="item"``) when they
    share it, :data:`MIXED` when both are labelled and differ, else :data:`UNLABELLED`."""
    key_of = _keying(key)[1]
    ga = [groups.get(key_of(a), UNLABELLED) for a in items_a]
    gb = [groups.get(key_of(b), UNLABELLED) for b in items_b]
    return np.array([x if x == y else (UNLABELLED if UNLABELLED in (x, y) else MIXED) for x, y in zip(ga, gb)])


def _rate(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def verification_by_group(scores: Mapping[str, Sequence], pair_group: np.ndarray, names: Sequence[str]
                          ) -> tuple[list[float], dict[str, dict[str, Any]]]:
    """Per-group verification at the run's per-fold thresholds, re-derived from all pairs' scores.

    Returns ``(thresholds per fold, {group: {"n_pairs", "n_genuine", "n_impostor", "accuracy", "fnmr", "fmr",
    "auc"}})`` for ``names`` and :data:`MIXED` (``n_impostor``, ``fmr``, ``n_genuine``, ``fnmr`` only). A rate
    without pairs to measure it on is None; AUC is None unless the group has both genuine and impostor pairs.
    """
    same = np.asarray(scores["same"]).astype(bool)
    score = np.asarray(scores["score"], dtype=np.float64)
    thresholds = kfold_accuracy(same, score, np.asarray(scores["fold"])).thresholds
    correct = pair_decisions(scores, thresholds)
    called_same = correct == same
    out: dict[str, dict[str, Any]] = {}
    for g in names:
        m = pair_group == g
        gen, imp = m & same, m & ~same
        out[g] = {"n_pairs": int(m.sum()), "n_genuine": int(gen.sum()), "n_impostor": int(imp.sum()),
                  "accuracy": _rate(correct[m]), "fnmr": _rate(~called_same[gen]), "fmr": _rate(called_same[imp]),
                  "auc": float(roc_auc_score(same[m], score[m])) if gen.any() and imp.any() else None}
    imp, gen = (pair_group == MIXED) & ~same, (pair_group == MIXED) & same
    out[MIXED] = {"n_impostor": int(imp.sum()), "fmr": _rate(called_same[imp]), "n_genuine": int(gen.sum()),
                  "fnmr": _rate(~called_same[gen])}
    return [finite_threshold(t) for t in thresholds], out  # -inf: strict JSON, as results.json


def breakdown(record: dict[str, Any], groups: Mapping[str, str], classes: Sequence[str], *, by: str = "gender",
              reference: str | None = None, n_boot: int = 2000, level: float = 0.95, seed: int | None = None,
              source: str = "results.json", key: str = "lfw-name") -> dict[str, Any]:
    """The breakdown of a verification record by ``groups``; see the module docstring.

    ``groups`` is ``{key: group}`` for ``key`` in :data:`KEYS`: ``lfw-name`` (the protocol's lists, ``{LFW name:
    group}``), ``person`` (``{image folder: group}``) or ``item`` (``{image id: group}``). ``reference``: the group the
    others are compared with (default: the labelled group with the most probes). ``seed`` defaults to the run's
    ``config.seed``. Returns a JSON-ready dict (keys in docs/attributes.md).
    """
    cluster_of, key_of = _keying(key)
    check_record(record, source, lfw_names=key == "lfw-name")
    check_level(level)
    seed = int((record.get("config") or {}).get("seed") or 0) if seed is None else int(seed)
    names = [*classes, UNLABELLED]
    pairs = record["pairs"]
    pg = pair_groups(pairs["a"], pairs["b"], groups, key=key)
    # probes: the images the degraded conditions score against their clean embeddings (else the pairs' second
    # images); the clean condition's per_item also holds the gallery images, which would count twice otherwise
    probes = {i for c in record["conditions"] if c.get("scale") is not None
              for i in ((c.get("identity") or {}).get("per_item") or {})} or set(pairs["b"])
    counts = {g: sum(groups.get(key_of(i), UNLABELLED) == g for i in probes) for g in classes}
    if reference is None:
        reference = max(classes, key=lambda g: counts[g])
    elif reference not in classes:
        raise BreakdownError(f"--reference must be one of {', '.join(classes)}, got {reference!r}")
    if not counts[reference]:
        raise BreakdownError(f"{source}: no probe of the run is labelled by {by}; the breakdown would be empty")
    # a person's images may fall in several groups (item labels: age bands); a difference of two groups that share
    # people resamples the people of both groups jointly (paired), others each group's people independently
    shared: dict[str, set[str]] = {}
    if key == "item":
        for i in probes:
            if groups.get(key_of(i), UNLABELLED) in classes:
                shared.setdefault(cluster_of(i), set()).add(groups[key_of(i)])
    from ..progress import progress_bar

    conditions = []
    for cond in progress_bar(record["conditions"], len(record["conditions"]), "breakdown",
                             unit="condition"):  # bootstraps per group
        if not cond.get("verification"):
            continue
        thresholds, ver = verification_by_group(cond["scores"], pg, names)
        per_item = {i: v for i, v in ((cond.get("identity") or {}).get("per_item") or {}).items() if i in probes}
        ident, reps = identity_by_group(per_item, groups, names, n_boot=n_boot, level=level, seed=seed, key=key)
        entry: dict[str, Any] = {
            "restorer": cond["restorer"], "scale": cond.get("scale"), "recognizer": cond.get("recognizer"),
            "degrade_side": cond.get("degrade_side"), "label": condition_label(cond), "thresholds": thresholds,
            "groups": {g: {"identity": ident[g], "verification": ver[g]} for g in names},
            "mixed": ver[MIXED], "difference": {},
        }
        if cond.get("scale") is not None:
            for g in classes:
                if g == reference or ident[g]["mean"] is None or ident[reference]["mean"] is None:
                    continue
                n_shared = sum({g, reference} <= s for s in shared.values()) if key == "item" else 0
                low = high = None  # no interval when either group has a single person
                used = 0
                if g in reps and reference in reps and n_shared:
                    low, high, used = joint_difference_interval(
                        per_item, groups, g, reference, n_boot=n_boot, level=level,
                        seed=seed + len(names) + list(classes).index(g), key=key)
                elif g in reps and reference in reps:
                    low, high = percentile_interval((1.0 - reps[g]) - (1.0 - reps[reference]), level)
                else:
                    log.warning("%s: %s − %s has no interval: a group of one person cannot be resampled",
                                condition_label(cond), g, reference)
                entry["difference"][g] = {
                    "minus": reference, "drop": 1.0 - ident[g]["mean"],
                    "drop_reference": 1.0 - ident[reference]["mean"],
                    "difference": (1.0 - ident[g]["mean"]) - (1.0 - ident[reference]["mean"]),
                    "ci_low": low, "ci_high": high}
                if key == "item":
                    entry["difference"][g]["shared_people"] = n_shared
                    if n_shared:
                        entry["difference"][g]["ci_note"] = (
                            f"{n_shared} people have probes in both {g} and {reference}; the interval resamples "
                            "the people of both groups jointly (paired: a drawn person brings their probes in each "
                            "group), so it keeps the correlation of a shared person's probes")
                        if low is not None:
                            entry["difference"][g]["ci_replicates"] = used
        conditions.append(entry)
    resampled = "people (with all their probes), independently within each group"
    extra: dict[str, Any] = {}
    if key == "item":
        resampled = ("people (each with their probes in the group; an image id without a folder is its own "
                     "cluster), independently within each group; a difference of two groups that share people "
                     "(difference.<g>.shared_people) resamples the people of both groups jointly")
        extra = {"labelled_items": {g: sum(v == g for v in groups.values()) for g in classes},
                 "people_in_several_groups": sum(len(v) > 1 for v in shared.values())}
        n_people = {g: len({cluster_of(k) for k, v in groups.items() if v == g}) for g in classes}
    else:
        n_people = {g: sum(v == g for v in groups.values()) for g in classes}
    cfg = record.get("config") or {}
    return {
        "schema_version": SCHEMA_VERSION, "by": by, "groups": names, "reference": reference,
        "identity_metric": "cosine of the probe's embedding to its clean embedding (identity.per_item)",
        "drop": "1 - cosine to clean (a clean probe's cosine to itself is 1)",
        "accuracy": "pooled over the group's pairs at the run's per-fold thresholds (re-derived from all pairs)",
        "bootstrap": {"n_boot": int(n_boot), "level": float(level), "seed": seed,
                      "resampled": resampled},
        "labelled_people": n_people, **extra, "run": {"protocol": cfg.get("protocol"),
                                             "recognizer": cfg.get("recognizer"),
                                             "pairs": len(pairs["a"]), "created": record.get("created"),
                                             # the degraded faces: another seed is another set of images
                                             "degradation": cfg.get("degradation"), "seed": cfg.get("seed"),
                                             "degrade_side": cfg.get("degrade_side")},
        "conditions": conditions,
    }


def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}"


def _ci(low: float | None, high: float | None, fmt: str) -> str:
    """``[low, high]``, or ``[no CI: 1 person]`` for a group too small to resample."""
    return "[no CI: 1 person]" if low is None or high is None else f"[{low:{fmt}}, {high:{fmt}}]"


def breakdown_markdown(result: dict[str, Any]) -> str:
    """Two markdown tables: per condition and group, then the group differences of the identity drop."""
    level = f"{100 * result['bootstrap']['level']:g} %"
    run = result.get("run") or {}
    lines = [f"Breakdown by {result['by']}: cosine to clean ({level} CI, people resampled), verification at the "
             "run's per-fold thresholds", "",
             f"Run: {run.get('protocol')}, {run.get('pairs')} pairs, recognizer {run.get('recognizer')}, "
             f"{run.get('degrade_side') or 'probe'} images degraded with {run.get('degradation')} "
             f"(seed {run.get('seed')}).", "",
             "| condition | group | people | probes | cos to clean [CI] | pairs gen/imp | acc % | FNMR % | FMR % "
             "| AUC |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["conditions"]:
        for g in result["groups"]:
            i, v = c["groups"][g]["identity"], c["groups"][g]["verification"]
            if not i["n_probes"] and not v["n_pairs"]:
                continue
            cos = "—" if i["mean"] is None else f"{i['mean']:.4f} {_ci(i['ci_low'], i['ci_high'], '.4f')}"
            auc = "—" if v["auc"] is None else f"{v['auc']:.4f}"
            lines.append(f"| {c['label']} | {g} | {i['n_people']} | {i['n_probes']} | {cos} | {v['n_genuine']}/"
                         f"{v['n_impostor']} | {_pct(v['accuracy'])} | {_pct(v['fnmr'])} | {_pct(v['fmr'])} | {auc} |")
        m = c["mixed"]
        if m["n_impostor"] or m.get("n_genuine"):
            lines.append(f"| {c['label']} | {MIXED} | | | | {m.get('n_genuine', 0)}/{m['n_impostor']} | | "
                         f"{_pct(m.get('fnmr'))} | {_pct(m['fmr'])} | |")
    diffs = [(c, g, d) for c in result["conditions"] for g, d in c["difference"].items()]
    if diffs:
        lines += ["", f"Identity drop (1 − cos to clean) of each group minus {result['reference']}'s, with a "
                  f"{level} people-resampling bootstrap interval:", "",
                  "| condition | difference | drop | reference drop | Δ drop [CI] |", "|---|---|---|---|---|"]
        for c, g, d in diffs:
            mark = "*" if d.get("shared_people") else ""
            lines.append(f"| {c['label']} | {g} − {d['minus']} | {d['drop']:.4f} | {d['drop_reference']:.4f} | "
                         f"{d['difference']:+.4f} {_ci(d['ci_low'], d['ci_high'], '+.4f')}{mark} |")
        shared = max((d.get("shared_people") or 0 for _, _, d in diffs), default=0)
        if shared:
            lines += ["", f"\\* Up to {shared} people have probes in both groups of the difference; such an interval "
                      "resamples the people of both groups jointly (paired: a drawn person brings their probes in "
                      "each group), so it keeps the correlation of a shared person's probes."]
    return "\n".join(lines) + "\n"


def _shown_groups(result: dict[str, Any]) -> list[str]:
    """The groups with probes in some degraded condition (the figure's lines)."""
    conds = [c for c in result["conditions"] if c["scale"] is not None]
    return [g for g in result["groups"] if any(c["groups"][g]["identity"]["n_probes"] for c in conds)]


@paper_style
def plot_breakdown(result: dict[str, Any], out: str | Path) -> Path:
    """Mean cosine to clean against scale, one line per (restorer, group) with its bootstrap interval as error bars;
    colour = group (colour-blind safe), line style and marker shape = restorer (the marker it has in every figure).
    The legend sits below the axes (as in the ROC and scales figures, so that it covers no line) and its title names
    the recognizer, the grouping and the interval, so that a figure copied on its own still says what it shows."""
    from .figure_io import new_figure, save_figure
    from .figure_style import RESTORER_LINESTYLES, group_colours, restorer_marker
    from .plots import legend_below, recognizer_title

    conds = [c for c in result["conditions"] if c["scale"] is not None]
    if not conds:
        raise BreakdownError("the run has no degraded condition: nothing to plot against scale")
    scales = sorted({c["scale"] for c in conds})
    restorers = list(dict.fromkeys(c["restorer"] for c in conds))
    fig, ax = new_figure()
    shown = _shown_groups(result)
    if sum(g != UNLABELLED for g in shown) > MAX_FIGURE_GROUPS:
        raise BreakdownError(f"{len(shown)} groups are more than the figure tells apart ({MAX_FIGURE_GROUPS} "
                             "colour-blind-safe colours); merge groups in the labels file, or use the tables")
    colours = group_colours(shown)
    for r_index, restorer in enumerate(restorers):
        for g_index, g in enumerate(shown):
            rows = [c for c in conds if c["restorer"] == restorer and c["groups"][g]["identity"]["mean"] is not None]
            if not rows:
                continue
            x = np.array([c["scale"] for c in rows], dtype=float) * 2 ** (0.04 * (g_index - (len(shown) - 1) / 2))
            y = np.array([c["groups"][g]["identity"]["mean"] for c in rows])
            ci = [c["groups"][g]["identity"] for c in rows]  # a one-person group has no interval: no error bar
            err = np.array([[0.0, 0.0] if i["ci_low"] is None else [v - i["ci_low"], i["ci_high"] - v]
                            for i, v in zip(ci, y)]).T
            name = "no restoration" if restorer == "none" else restorer
            ax.errorbar(x, y, yerr=err, color=colours[g], capsize=2, marker=restorer_marker(restorer), ms=3.5,
                        linestyle=RESTORER_LINESTYLES[r_index % len(RESTORER_LINESTYLES)],
                        label=f"{g} ({name})" if len(restorers) > 1 else g)
    ax.set_xscale("log", base=2)
    ax.set_xticks(scales, [f"x{s}" for s in scales])
    ax.set_xlabel("degradation scale (of a 512 px face)")
    ax.set_ylabel("cosine to clean embedding")
    ax.grid(alpha=0.3, lw=0.4)
    recognizer = recognizer_title([{"config": {"recognizer": (result.get("run") or {}).get("recognizer")},
                                    "conditions": conds}])
    legend_below(fig, ax, 2.8)
    title = [recognizer, f"groups by {result['by']}",
             f"error bars: {100 * result['bootstrap']['level']:g} % CI, people resampled"]
    ax.get_legend().set_title("; ".join(t for t in title if t), prop={"size": 5.5})
    run = result.get("run") or {}
    described = {"config": {"seed": run.get("seed")}, "created": run.get("created"),
                 "protocol": {"name": run.get("protocol"), "pairs": run.get("pairs")},
                 "conditions": [dict(c, recognizer=run.get("recognizer"), degradation=run.get("degradation"),
                                     degrade_side=run.get("degrade_side")) for c in conds]}
    return save_figure(fig, out, records=[described])


def write_breakdown(result: dict[str, Any], run_dir: str | Path, *, figure: str | Path | None = None
                    ) -> dict[str, Path | None]:
    """Write ``breakdown-<by>.json`` and ``.md`` into ``run_dir`` (atomically) and the figure (default
    ``run_dir/figures/breakdown-<by>.png``); returns their paths. With more than :data:`MAX_FIGURE_GROUPS` labelled
    groups the figure is not drawn (``paths["figure"]`` None, with a warning): its colours would repeat."""
    from ..files import atomic_write_text

    run_dir = Path(run_dir)
    stem = f"breakdown-{result['by']}"
    paths: dict[str, Path | None] = {"json": run_dir / f"{stem}.json", "markdown": run_dir / f"{stem}.md"}
    atomic_write_text(paths["json"], json.dumps(result, indent=1, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], breakdown_markdown(result))
    n_groups = sum(g != UNLABELLED for g in _shown_groups(result))
    if n_groups > MAX_FIGURE_GROUPS:
        log.warning("no figure: %d groups are more than its %d colour-blind-safe colours tell apart; the tables "
                    "hold every group", n_groups, MAX_FIGURE_GROUPS)
        paths["figure"] = None
    else:
        paths["figure"] = plot_breakdown(result, figure or run_dir / "figures" / f"{stem}.png")
    return paths

"""What a paper takes from a run: its main numbers as a tidy CSV, a booktabs LaTeX table, and the references.

- :func:`results_table_rows`: one dict per verification condition (restorer x scale x recognizer) with the numbers
  of ``results.json`` as stored (fractions in [0, 1], not percent; ``None`` where a number is missing);
- :func:`to_csv`: those rows as CSV text (a missing number is an empty cell, never ``nan``);
- :func:`to_latex`: restorers as rows, scales as columns, accuracy in % with ± its standard error over the folds,
  the best of each column in bold, and a caption that states the protocol, recognizer, pairs, folds,
  degradation and its seed;
- :func:`run_references`: what the run used that a paper should cite (protocol, restorers, recognizer, landmark
  detector, degradation, restorever), from the protocol YAML's ``citation``, the backend cards' and the degradation
  presets' ``paper``.

Everything is read from the record; nothing is recomputed.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import re
from typing import Any, Sequence

from .rate_stats import stored_rule
from .results import RESULTS_FILE, is_subset

log = logging.getLogger(__name__)

__all__ = ["FARS", "CSV_COLUMNS", "results_table_rows", "to_csv", "to_latex", "latex_escape", "run_references"]

#: the false-accept rates ``verification.tar_at_far`` is stored at (keys as in results.json)
FARS = ("0.1", "0.01", "0.001", "0.0001")

#: the paired comparisons a condition may hold: (key in results.json, column prefix)
_COMPARISONS = (("comparison_to_none", "vs_none"), ("comparison_to_clean", "vs_clean"))

CSV_COLUMNS = (
    "restorer", "scale", "degradation", "degrade_side", "seed", "recognizer", "n_pairs", "folds",
    "accuracy", "accuracy_std", "accuracy_sem", "auc", "eer", *[f"tar_at_far_{far}" for far in FARS],
    "cosine_to_clean_mean", "cosine_to_clean_median", "cosine_to_clean_ci_low", "cosine_to_clean_ci_high",
    *[f"{prefix}_{name}" for _, prefix in _COMPARISONS
      for name in ("accuracy_difference", "ci_low", "ci_high", "ci_level", "mcnemar_p", "clustered_p",
                   "mcnemar_p_holm", "clustered_p_holm", "family_size")],
    *[f"cos_vs_none_{name}" for name in ("difference", "ci_low", "ci_high", "ci_level", "sign_flip_p",
                                         "sign_flip_p_holm", "family_size", "people")],
    *[f"vs_none_{rate}_{name}" for rate in ("auc", *[f"tar_at_far_{far}" for far in FARS])
      for name in ("difference", "ci_low", "ci_high")],
    "vs_none_tar_rule",
)


def _number(value: Any) -> float | int | None:
    """A stored number, or ``None`` for a missing, non-numeric or NaN/inf value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def results_table_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per condition with verification results, keys :data:`CSV_COLUMNS`.

    Accuracies, AUC, EER, TAR and the paired differences are fractions as in results.json; ``scale`` and
    ``degradation`` are ``None`` for the clean condition; ``seed`` is the run's ``--seed`` (the degradation's, and the
    bootstrap's default; a condition's own ``seed`` where it has one, as a merged ``restorever compare`` record of
    runs with different seeds does); ``vs_none_*`` / ``vs_clean_*`` are the stored paired
    comparisons (bootstrap interval of the accuracy difference, McNemar p per pair and over the resampled clusters,
    both also Holm-adjusted over their family of ``*_family_size`` comparisons: every ``vs_none`` comparison of
    the record is one family, every ``vs_clean`` one another), ``None`` where the record has none;
    ``cosine_to_clean_ci_*`` the people-resampling interval of the mean cosine to clean and ``cos_vs_none_*`` the
    cosine difference restored - none with its interval and sign-flip p (raw and Holm over its own family of
    ``cos_vs_none_family_size``; ``cos_vs_none_people`` the people resampled), from
    :mod:`restorever.reports.identity_stats`; ``vs_none_auc_*`` and ``vs_none_tar_at_far_<far>_*`` the AUC and
    TAR@FAR differences restored - none with their people-resampling intervals
    (:mod:`restorever.reports.rate_stats`; empty where the FAR is not resolved) and ``vs_none_tar_rule`` the rule
    their replicates read TAR@FAR by (:func:`~restorever.reports.rate_stats.stored_rule`). Conditions
    without ``verification`` (identification runs) are left out.
    """
    proto = record.get("protocol") or {}
    rows = []
    for cond in record["conditions"]:
        v = cond.get("verification")
        if not v:
            continue
        ident = cond.get("identity") or {}
        tar = v.get("tar_at_far") or {}
        n_pairs = v.get("n_pairs")
        if n_pairs is None and cond.get("scores"):
            n_pairs = len(cond["scores"].get("score") or [])
        folds = len(v["fold_accuracies"]) if v.get("fold_accuracies") else proto.get("folds")
        row: dict[str, Any] = {
            "restorer": cond["restorer"], "scale": cond.get("scale"), "degradation": cond.get("degradation"),
            "degrade_side": cond.get("degrade_side"),
            "seed": _number(cond.get("seed", (record.get("config") or {}).get("seed"))),
            "recognizer": cond.get("recognizer"),
            "n_pairs": _number(n_pairs), "folds": _number(folds),
            "accuracy": _number(v.get("accuracy_mean")), "accuracy_std": _number(v.get("accuracy_std")),
            "accuracy_sem": _number(v.get("accuracy_sem")), "auc": _number(v.get("auc")),
            "eer": _number(v.get("eer")),
            **{f"tar_at_far_{far}": _number(tar.get(far)) for far in FARS},
            "cosine_to_clean_mean": _number(ident.get("cosine_to_clean_mean")),
            "cosine_to_clean_median": _number(ident.get("cosine_to_clean_median")),
        }
        for key, prefix in _COMPARISONS:
            comp = cond.get(key) if isinstance(cond.get(key), dict) else {}
            row[f"{prefix}_accuracy_difference"] = _number(comp.get("accuracy_difference"))
            row[f"{prefix}_ci_low"] = _number(comp.get("ci_low"))
            row[f"{prefix}_ci_high"] = _number(comp.get("ci_high"))
            row[f"{prefix}_ci_level"] = _number(comp.get("ci_level"))
            row[f"{prefix}_mcnemar_p"] = _number((comp.get("mcnemar") or {}).get("p_value"))
            row[f"{prefix}_clustered_p"] = _number((comp.get("mcnemar_clustered") or {}).get("p_value"))
            row[f"{prefix}_mcnemar_p_holm"] = _number((comp.get("mcnemar") or {}).get("p_holm"))
            row[f"{prefix}_clustered_p_holm"] = _number((comp.get("mcnemar_clustered") or {}).get("p_holm"))
            row[f"{prefix}_family_size"] = _number((comp.get("mcnemar") or {}).get("family_size"))
        row["cosine_to_clean_ci_low"] = _number(ident.get("ci_low"))
        row["cosine_to_clean_ci_high"] = _number(ident.get("ci_high"))
        comp = cond.get("identity_comparison_to_none") if isinstance(cond.get("identity_comparison_to_none"),
                                                                     dict) else {}
        test = comp.get("sign_flip") or {}
        row["cos_vs_none_difference"] = _number(comp.get("cosine_difference"))
        for name in ("ci_low", "ci_high", "ci_level"):
            row[f"cos_vs_none_{name}"] = _number(comp.get(name))
        row["cos_vs_none_sign_flip_p"] = _number(test.get("p_value"))
        row["cos_vs_none_sign_flip_p_holm"] = _number(test.get("p_holm"))
        row["cos_vs_none_family_size"] = _number(test.get("family_size"))
        row["cos_vs_none_people"] = _number((comp.get("bootstrap") or {}).get("clusters"))
        comp = cond.get("comparison_to_none") if isinstance(cond.get("comparison_to_none"), dict) else {}
        tars = comp.get("tar_at_far") if isinstance(comp.get("tar_at_far"), dict) else {}
        for rate, value in [("auc", comp.get("auc")), *[(f"tar_at_far_{far}", tars.get(far)) for far in FARS]]:
            value = value if isinstance(value, dict) else {}
            for name in ("difference", "ci_low", "ci_high"):
                row[f"vs_none_{rate}_{name}"] = _number(value.get(name))
        row["vs_none_tar_rule"] = _number(stored_rule(comp))
        rows.append(row)
    return rows


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text of :func:`results_table_rows` (header :data:`CSV_COLUMNS`): floats at full precision (``repr``, so
    they read back equal to results.json), ``None`` as an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else repr(row[k]) if isinstance(row[k], float) else row[k]
                         for k in CSV_COLUMNS})
    return buffer.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}

#: a missing number in the LaTeX table
MISSING = "--"


#: control characters (line breaks, tabs, ...): a line break in a name would end a ``%`` comment line or, doubled,
#: the paragraph inside ``\\caption{}``; each is written as a space
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def latex_escape(text: Any) -> str:
    """``text`` with LaTeX's special characters escaped (``vqfr_v2`` -> ``vqfr\\_v2``, ``&``, ``%``, ``$`` ...) and
    control characters (line breaks, tabs) as spaces."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in _CONTROL.sub(" ", str(text)))


def _pct(x: float | None) -> str:
    return MISSING if x is None else f"{100 * x:.2f}"


def _cell(row: dict[str, Any] | None, bold: bool) -> str:
    if row is None or row["accuracy"] is None:
        return MISSING
    value = _pct(row["accuracy"])
    value = rf"\textbf{{{value}}}" if bold else value
    return value if row["accuracy_sem"] is None else rf"{value} $\pm$ {_pct(row['accuracy_sem'])}"


def _ties(accuracy: float | None, best: float) -> bool:
    """Whether ``accuracy`` equals the column's best up to float summation order (the same fold accuracies summed
    in another order differ in the last bit: 0.9166666666666667 and 0.9166666666666666)."""
    return accuracy is not None and math.isclose(accuracy, best, rel_tol=1e-12, abs_tol=1e-12)


def to_latex(record: dict[str, Any], *, source: str = RESULTS_FILE, label_prefix: str = "tab:restorever",
             note: str | None = None) -> str:
    """A booktabs ``table`` (one per recognizer) of verification accuracy in %: restorers as rows (in the run's
    order), scales as columns, each cell ``accuracy ± SEM over the folds``; the highest accuracy of each column is
    bold when the column compares two or more restorers (ties, up to float summation order: all bold). The clean
    (undegraded) accuracy and the protocol, number of pairs and folds are in the caption. Missing numbers are
    ``--``. Needs ``\\usepackage{booktabs}``. ``source`` names where the numbers come from (the first line's
    comment); ``label_prefix`` starts each ``\\label`` (``PREFIX-PROTOCOL-RECOGNIZER``), so that two tables of one
    paper (a run's and a comparison's) do not share a label. ``note`` (plain text, escaped here) ends each caption:
    ``restorever compare`` says there that rows come from runs whose degraded inputs differ."""
    rows = results_table_rows(record)
    if not rows:
        raise ValueError("the record has no verification conditions: no accuracy table to write")
    recognizers = list(dict.fromkeys(r["recognizer"] for r in rows))
    version = record.get("restorever_version", "?")
    parts = [_CONTROL.sub(" ", f"% restorever {version}: verification accuracy from {source}; needs "
                               f"\\usepackage{{booktabs}}")]  # one comment line, whatever the names hold
    for recognizer in recognizers:
        parts.append(_latex_one(record, [r for r in rows if r["recognizer"] == recognizer], recognizer,
                                label_prefix, note))
    return "\n".join(parts) + "\n"


def _latex_one(record: dict[str, Any], rows: list[dict[str, Any]], recognizer: str | None,
               label_prefix: str, note: str | None = None) -> str:
    cfg = record.get("config") or {}
    proto = record.get("protocol") or {}
    degraded = [r for r in rows if r["scale"] is not None]
    clean = next((r for r in rows if r["scale"] is None), None)
    order = list(cfg.get("restorers") or [])
    restorers = [*[n for n in order if any(r["restorer"] == n for r in degraded)],
                 *dict.fromkeys(r["restorer"] for r in degraded if r["restorer"] not in order)]
    scales = sorted({r["scale"] for r in degraded})
    at = {(r["restorer"], r["scale"]): r for r in degraded}
    best = {}
    for s in scales:
        values = [at[(n, s)]["accuracy"] for n in restorers if (n, s) in at and at[(n, s)]["accuracy"] is not None]
        best[s] = max(values) if len(values) >= 2 else None
    folds = next((r["folds"] for r in rows if r["folds"] is not None), proto.get("folds"))
    pairs = proto.get("pairs", next((r["n_pairs"] for r in rows if r["n_pairs"] is not None), None))
    skipped = len(proto.get("skipped") or [])
    degradation = degraded[0]["degradation"] if degraded else None
    side = degraded[0]["degrade_side"] if degraded else None
    caption = [
        f"Verification accuracy (\\%) on {latex_escape(proto.get('name', cfg.get('protocol', '?')))}: "
        f"{pairs if pairs is not None else '?'} pairs"
        + (" (a subset balanced over the folds)" if is_subset(record) else "")
        + (f" ({skipped} of the protocol's pairs skipped)" if skipped else "")
        + (", a single fold (the threshold chosen on the same pairs, so the accuracy is optimistic)" if folds == 1
           else f", {folds if folds is not None else '?'}-fold cross-validation (each fold's threshold chosen on the "
                f"other folds)")
        + f"; recognizer {latex_escape(recognizer)}.",
    ]
    settings = {r["restorer"]: (r["degradation"], r["degrade_side"]) for r in degraded}
    if len(set(settings.values())) > 1:  # rows of runs degraded differently (`restorever compare`)
        per_row = "; ".join(f"{latex_escape(n)}: {'both' if settings[n][1] == 'both' else 'the probe'} images, "
                            f"{latex_escape(settings[n][0] or '?')}" for n in restorers)
        caption.append(f"Columns: the images degraded at scale $\\times s$, with another degradation or degraded "
                       f"side in some rows ({per_row}); rows: the restorer applied (none: not restored).")
    elif degraded:
        seed = cfg.get("seed")  # None in a comparison of runs with different seeds (their note names each)
        caption.append(f"Columns: the {latex_escape(side or 'probe')} images degraded with "
                       f"{latex_escape(degradation or '?')} at scale $\\times s$"
                       + (f" (seed {latex_escape(seed)})" if seed is not None else "")
                       + "; rows: the restorer applied (none: not restored).")
    if folds != 1:  # one fold has no standard error (its cells carry no \pm)
        caption.append(f"$\\pm$: standard error of the mean over the {folds if folds is not None else '?'} fold "
                       f"accuracies.")
    if any(v is not None for v in best.values()):
        caption.append("Bold: the highest accuracy of each column.")
    if clean is not None:
        caption.append(f"Clean (undegraded) accuracy: {_cell(clean, False)}.")
    if any(_cell(at.get((n, s)), False) == MISSING for n in restorers for s in scales):
        caption.append(f"{MISSING}: not available.")
    if note:
        caption.append(latex_escape(note))
    label = re.sub(r"[^A-Za-z0-9:.-]+", "-", f"{label_prefix}-{proto.get('name', 'run')}-{recognizer}")
    lines = [r"\begin{table}[t]", r"\centering",
             r"\caption{" + " ".join(caption) + "}", rf"\label{{{label}}}",
             r"\begin{tabular}{l" + "r" * len(scales) + "}", r"\toprule",
             " & ".join(["Restorer", *[f"$\\times${s}" for s in scales]]) + r" \\", r"\midrule"]
    for name in restorers:
        cells = [_cell(at.get((name, s)), best[s] is not None and _ties(at.get((name, s), {}).get("accuracy"), best[s]))
                 for s in scales]
        lines.append(" & ".join([latex_escape(name), *cells]) + r" \\")
    if not restorers:
        lines.append(r"no degraded condition \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def run_references(record: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(role, name, reference)`` for what the run used: the protocol (its YAML's ``citation``), each restorer and
    recognizer (the ``paper`` URLs of its card's weight files, else its ``origin_url``), the degradation preset (the
    paper of the method it comes from, and its source file), the landmark detector, and restorever itself. The
    ``none`` restorer is not a method and has no entry; a backend or protocol that is not found here (a plugin no
    longer installed, a moved YAML) is logged and left out."""
    from ..degradation_params import PRESETS
    from ..detectors import DETECTOR_PAPERS
    from ..errors import RestoreverError
    from ..protocol_specs import load_spec
    from ..recognizers import recognizer_card
    from ..restorers import restorer_card

    cfg = record.get("config") or {}
    proto = record.get("protocol") or {}
    out: list[tuple[str, str, str]] = []
    name = cfg.get("protocol") or proto.get("name")
    if name:
        try:
            spec, _ = load_spec(str(name))
        except (RestoreverError, OSError) as exc:
            log.warning("References: protocol %s not found here (%s); it is left out", name, exc)
        else:
            if spec.get("citation"):
                out.append(("protocol", str(proto.get("name", name)), str(spec["citation"])))
    conds = record.get("conditions") or []
    used = [("restorer", restorer_card, n) for n in dict.fromkeys(c.get("restorer") for c in conds) if n != "none"]
    used += [("recognizer", recognizer_card, n) for n in dict.fromkeys(c.get("recognizer") for c in conds)]
    for role, card_of, backend in used:
        if not backend:
            continue
        try:
            card = card_of(backend)
        except (KeyError, RestoreverError) as exc:
            log.warning("References: %s %s has no card here (%s); it is left out", role, backend, exc)
            continue
        papers = list(dict.fromkeys(w.paper for w in card.weights.values() if w.paper))
        origins = list(dict.fromkeys(w.origin_url for w in card.weights.values() if w.origin_url))
        if papers or origins:
            out.append((role, backend, "; ".join(papers) if papers else "code: " + "; ".join(origins)))
    for degradation in dict.fromkeys(c.get("degradation") for c in conds if c.get("degradation")):
        preset = PRESETS.get(degradation)
        if preset is None or not preset.paper:
            log.warning("References: degradation %s has no preset here; it is left out", degradation)
            continue
        out.append(("degradation", str(degradation), f"{preset.paper} ({preset.source})"))
    detector = cfg.get("detector")
    if detector in DETECTOR_PAPERS:
        out.append(("landmark detector", str(detector), DETECTOR_PAPERS[detector]))
    version = record.get("restorever_version", "?")
    out.append(("software", f"restorever {version}",
                "restorever contributors, restorever (software), version " + str(version)
                + "; CITATION.cff in the restorever source tree"))
    return out

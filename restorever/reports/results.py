"""Writing and reading a run's outputs: ``results.json``, ``results.md``, ``roc.png``, ``degradation.jsonl``."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import RestoreverError
from ..pipeline.records import (ConditionRecord, IdentConditionRecord, IdentRunRecord, RunRecord, is_identification,
                                record_from_json)
from .identity_stats import EXACT_MAX_PEOPLE, IDENTITY_KIND, N_DRAWS
from .labels import condition_label
from .rate_stats import resolved_fars

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
MAX_RESULTS_BYTES = 1 << 30  # as restorever validate: a results.json above 1 GiB is refused unread


def _pct(x: Any, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


#: p-values below this are shown as ``<1e-300``: a stored 0.0 is a float underflow, not a p of zero
P_FLOOR = 1e-300


#: the level the reports' notes name ("a Holm p at or below 0.05 is a finding"): never rounded across or onto
ALPHA = 0.05


def p_text(p: float, digits: int = 2, prefix: str = "") -> str:
    """A p-value for a table: ``0.031`` (``p=0.031`` with ``prefix="p"``), or ``<1e-300`` where it underflowed (never
    ``0``). ``digits`` significant digits, more where fewer would round onto or across :data:`ALPHA` (0.0496 and
    0.0504 are ``0.0496`` and ``0.0504``, not both ``0.05``; 0.05000003 is ``0.05000003``): only a p equal to
    ALPHA reads ``0.05``."""
    if p < P_FLOOR:
        return f"{prefix}<{P_FLOOR:.0e}"
    text = f"{p:.{digits}g}"
    while digits < 17 and p != ALPHA and (float(text) == ALPHA or (float(text) <= ALPHA) != (p <= ALPHA)):
        digits += 1
        text = f"{p:.{digits}g}"
    return f"{prefix}{'=' if prefix else ''}{text}"


def comparison_cell(comp: dict[str, Any] | None) -> str:
    """``+1.23 [-0.50, +2.90] p=0.031 (clustered 0.12); Holm 0.093 (0.36)``: accuracy difference in percentage
    points with its bootstrap interval (``[—]`` when the bootstrap had one person), McNemar's p-value over pairs
    and, when stored, over the bootstrap's clusters, then the same two p-values Holm-adjusted over their family
    (when stored); or ``—``."""
    if not comp:
        return "—"
    p = comp["mcnemar"]["p_value"]
    clustered = comp.get("mcnemar_clustered")  # older records have none
    low, high = comp.get("ci_low"), comp.get("ci_high")  # None: one person, no interval
    interval = "[—]" if low is None or high is None else f"[{100 * low:+.2f}, {100 * high:+.2f}]"
    text = (f"{100 * comp['accuracy_difference']:+.2f} {interval} {p_text(p, prefix='p')}"
            + (f" (clustered {p_text(clustered['p_value'])})" if clustered else ""))
    holm = comp["mcnemar"].get("p_holm")
    if holm is not None:
        holm_clustered = (clustered or {}).get("p_holm")
        text += f"; Holm {p_text(holm)}" + (f" ({p_text(holm_clustered)})" if holm_clustered is not None else "")
    return text


def identity_cell(identity: Any) -> str:
    """``0.6123 [0.5801, 0.6420]``: the mean cosine to clean with its interval when stored, ``0.6123`` without,
    ``—`` without a mean."""
    ident = identity if isinstance(identity, dict) else {}
    cos = ident.get("cosine_to_clean_mean")
    if cos is None:
        return "—"
    low, high = ident.get("ci_low"), ident.get("ci_high")
    return f"{cos:.4f}" + (f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else "")


def identity_comparison_cell(comp: Any) -> str:
    """``+0.0912 [+0.0500, +0.1310] p=0.0039; Holm 0.012``: the cosine difference restored - none with its
    interval, the sign-flip p and its Holm-adjusted p; ``—`` without a comparison."""
    if not isinstance(comp, dict):
        return "—"
    low, high = comp.get("ci_low"), comp.get("ci_high")
    test = comp.get("sign_flip") or {}
    text = f"{comp['cosine_difference']:+.4f}" + (f" [{low:+.4f}, {high:+.4f}]" if low is not None else "")
    text += f" {p_text(test['p_value'], prefix='p')}" if test.get("p_value") is not None else ""
    return text + (f"; Holm {p_text(test['p_holm'])}" if test.get("p_holm") is not None else "")


IDENTITY_NOTE = (
    "cos to clean: the mean cosine of each probe's embedding to its own clean embedding, with a 95 % percentile "
    "bootstrap interval resampling people (all images of a drawn person). Δ cos vs none: the same mean, restored "
    "minus unrestored at the same scale, over the same probes, with a paired people-resampling interval, and a "
    "sign-flip randomisation test over people (each person's mean difference may change sign under the null; "
    f"exact up to {EXACT_MAX_PEOPLE} people, else {N_DRAWS} random sign vectors with the run's seed). The test "
    "weighs people equally, the difference and interval weigh images equally. Holm: adjusted over every Δ cos vs "
    "none of the run (all restorers x scales), a family of its own beside the accuracy families.")


def results_table(record: dict[str, Any]) -> str:
    """A markdown table: one row per condition. When the record holds paired statistics (see
    :mod:`restorever.reports.statistics`), a column compares each degraded condition with the clean one and another
    each restorer with ``none`` at the same scale (a column is left out when no condition has its comparison)."""
    conds = record["conditions"]
    titles = (("comparison_to_clean", "Δ acc vs clean, pp [95 % CI] McNemar p (clustered); Holm"),
              ("comparison_to_none", "Δ acc vs none, pp [95 % CI] McNemar p (clustered); Holm"))
    extra = [(key, title) for key, title in titles if any(c.get(key) for c in conds)]
    identity_extra = any(c.get(IDENTITY_KIND) for c in conds)
    cos_title = ("cos to clean [95 % CI]" if any((c.get("identity") or {}).get("ci_level") for c in conds)
                 else "cos to clean")
    far = lowest_resolved_far(conds)
    rows = [f"| condition | accuracy % (± std) | AUC | EER % | TAR@FAR={far_label(far)} % | {cos_title} |"
            + "".join(f" {title} |" for _, title in extra)
            + (" Δ cos vs none [95 % CI] sign-flip p; Holm |" if identity_extra else ""),
            "|---|---|---|---|---|---|" + "---|" * (len(extra) + identity_extra)]
    for cond in conds:
        v = cond["verification"]
        auc = v.get("auc")
        rows.append(f"| {condition_label(cond)} | {_pct(v['accuracy_mean'])} ± {_pct(v['accuracy_std'])} | "
                    f"{'—' if auc is None else f'{auc:.4f}'} | {_pct(v.get('eer'))} | "
                    f"{_pct(v['tar_at_far'].get(far))} | {identity_cell(cond.get('identity'))} |"
                    + "".join(f" {comparison_cell(cond.get(key))} |" for key, _ in extra)
                    + (f" {identity_comparison_cell(cond.get(IDENTITY_KIND))} |" if identity_extra else ""))
    return "\n".join(rows)


def lowest_resolved_far(conds: Sequence[dict[str, Any]], default: str = "0.001") -> str:
    """The smallest FAR key of ``verification.tar_at_far`` that some condition resolves (TAR is stored only where a
    run has at least 1/FAR different-person pairs), so a short run's condensed table does not show an empty TAR
    column; ``default`` when none does."""
    keys = resolved_fars(conds)
    return keys[0] if keys else default


def far_label(far: str) -> str:
    """``"0.001"`` -> ``"1e-3"``; other values as given."""
    exponent = round(math.log10(float(far))) if float(far) > 0 else 0
    return f"1e-{-exponent}" if exponent < 0 and math.isclose(10.0 ** exponent, float(far)) else far


STATISTICS_NOTE = (
    "Δ columns: difference of the accuracies in the table (the mean of the fold accuracies at the fold thresholds; "
    "with folds of unequal size each pair weighs 1 / (folds × its fold's size)) in percentage points, condition "
    "minus reference, with a 95 % percentile bootstrap interval resampling people (the person of each probe, with "
    "all their pairs), and McNemar's test on the per-pair decisions (exact binomial below 25 discordant pairs, else "
    "chi-square with continuity correction). It treats pairs as independent; the clustered p keeps each person's "
    "pairs together as the interval does (an exact sign-flip test over the same people), so with few people or "
    "many pairs per person trust it, not the per-pair p. Each raw p and each interval is for its own comparison; "
    "the Holm p-values are adjusted for multiple comparisons (Holm-Bonferroni step-down, family-wise error rate): "
    "the family is every comparison of one kind in the run (all restorers x scales vs none; all degraded "
    "conditions vs clean), the per-pair and the clustered test each adjusted on their own. A Holm p at or below "
    "0.05 is a finding at a family-wise 5 % level; the intervals are not adjusted (each is a 95 % interval on its "
    "own), and the thresholds are held at the run's fold thresholds (their choice is not resampled).")


#: below this many resampled clusters (people) a percentile bootstrap interval is too narrow to take at face value
FEW_CLUSTERS = 30


def few_clusters_note(record: dict[str, Any], below: int = FEW_CLUSTERS) -> str:
    """A warning sentence when the paired comparisons resampled fewer than ``below`` clusters (people), else ``""``:
    a percentile bootstrap over a handful of people covers far less than its nominal 95 %."""
    counts = [c[key]["bootstrap"]["clusters"] for c in record.get("conditions", [])
              for key in ("comparison_to_clean", "comparison_to_none")
              if isinstance(c.get(key), dict) and isinstance(c[key].get("bootstrap"), dict)
              and isinstance(c[key]["bootstrap"].get("clusters"), int)]
    if not counts or min(counts) >= below:
        return ""
    return (f"Warning: the intervals resample only {min(counts)} clusters (people); with fewer than {below} a "
            f"percentile bootstrap is too narrow. Read the clustered p (exact at any number of people), or evaluate "
            f"more people.")


def attribute_table(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of an identification run's attribute predictions per condition: accuracy and ECE per
    attribute (raw / re-weighted when the run re-weights), and how often a probe's predicted gender or age group
    differs from its clean image's. No rows when the run predicted no attributes."""
    rows: list[list[str]] = []
    both = any((c.get("attributes") or {}).get("reweighted") for c in record["conditions"])
    pair_note = " (raw / reweighted)" if both else ""
    header = ["condition", f"gender acc %{pair_note}", f"age acc %{pair_note}", f"gender ECE %{pair_note}",
              f"age ECE %{pair_note}", "gender flip %", "age group changed %"]
    if not any(c.get("attributes") for c in record["conditions"]):
        return header, rows
    for cond in record["conditions"]:
        a = cond.get("attributes") or {}
        raw, rw = a.get("raw", {}), a.get("reweighted", {})

        def pair(attr: str, key: str) -> str:
            first = _pct(raw.get(attr, {}).get(key))
            return f"{first} / {_pct(rw.get(attr, {}).get(key))}" if rw else first

        rows.append([condition_label(cond), pair("gender", "accuracy"), pair("age", "accuracy"), pair("gender", "ece"),
                     pair("age", "ece"), _pct(a.get("gender_flip_rate")), _pct(a.get("age_group_change_rate"))])
    return header, rows


def _alignment_lines(record: dict[str, Any]) -> list[str]:
    """For ``align_on="degraded"`` runs, a line saying so with each degraded condition's detections (none for the
    default, clean-landmark alignment)."""
    if record["config"].get("align_on", "clean") == "clean":
        return []
    counts = [f"{condition_label(c)} {c['alignment']['detected']} found / {c['alignment']['not_found']} not found"
              for c in record["conditions"] if c.get("alignment")]
    return ["- landmarks of degraded faces: detected on each degraded crop, which is aligned again (where no face is "
            "found, the crop is used as it is): " + ("; ".join(counts) or "no degraded condition")]


def is_subset(record: dict[str, Any]) -> bool:
    """Whether ``--limit-pairs`` left out some of the protocol's pairs. A limit below the protocol's count keeps
    exactly that many pairs (``protocol.pairs_requested``); one at or above it keeps them all (fewer requested than
    the limit; ``eval`` records such a limit as none since round 19's second review)."""
    limit = (record.get("config") or {}).get("limit_pairs")
    requested = (record.get("protocol") or {}).get("pairs_requested")
    return bool(limit) and (requested is None or requested >= limit)


def subset_note(record: dict[str, Any]) -> str:
    """`` (a subset: --limit-pairs N ...)`` for a run limited to part of its protocol's pairs (:func:`is_subset`),
    else ``""``: the pair count alone reads as the whole protocol (40 pairs of LFW's 6,000 are not LFW View 2)."""
    if not is_subset(record):
        return ""
    return (f" (a subset: --limit-pairs {record['config']['limit_pairs']}, dealt over folds and same/different in "
            f"file order)")


def results_markdown(record: dict[str, Any]) -> str:
    cfg = record["config"]
    proto = record["protocol"]
    lines = [
        f"# restorever results: {proto['name']} / {cfg['recognizer']}",
        "",
        f"- created {record['created']}, restorever {record['restorever_version']}, device "
        f"{record['environment'].get('device')}",
        f"- pairs evaluated: {proto['pairs']} of {proto['pairs_requested']}{subset_note(record)} in {proto['folds']} "
        f"fold{'' if proto['folds'] == 1 else 's'}; "
        f"images: {proto['images']}; skipped pairs: {len(proto['skipped'])}; images aligned with the protocol's "
        f"fallback landmarks (no face found): {len(proto.get('landmark_fallbacks', []))}",
        f"- degradation: {cfg['degradation'] if cfg['scales'] else 'none'} on the {cfg['degrade_side']} side, "
        f"scales {cfg['scales'] or '—'}, seed {cfg['seed']}",
        *_alignment_lines(record),
        "",
        results_table(record),
        "",
    ]
    if any(c.get("comparison_to_clean") or c.get("comparison_to_none") for c in record["conditions"]):
        lines += [STATISTICS_NOTE, ""]
        few_people = few_clusters_note(record)
        if few_people:
            lines += [few_people, ""]
    if any((c.get("identity") or {}).get("ci_level") or c.get(IDENTITY_KIND) for c in record["conditions"]):
        lines += [IDENTITY_NOTE, ""]
    if proto["skipped"]:
        lines += ["## Skipped pairs", ""]
        lines += [f"- line {s['pair']}: {s['reason']}" for s in proto["skipped"][:50]]
        if len(proto["skipped"]) > 50:
            lines.append(f"- ... and {len(proto['skipped']) - 50} more (see results.json)")
        lines.append("")
    return "\n".join(lines)


def prepare_out_dir(out: str | Path, *, option: str = "--out") -> Path:
    """Create the output folder (and its parents) and check that files can be written in it, before any work:
    ``--out`` naming a file, a read-only or unwritable place is one :class:`RestoreverError` line."""
    import tempfile

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RestoreverError(f"{option} {out}: exists and is not a folder; choose another {option}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except (FileExistsError, NotADirectoryError):
        raise RestoreverError(f"{option} {out}: a part of the path is a file, not a folder; choose another "
                              f"{option}") from None
    except OSError as exc:
        raise RestoreverError(f"{option} {out}: cannot create or write the folder ({exc.strerror or exc}); choose "
                              f"a writable {option}") from None
    return out


@contextlib.contextmanager
def run_folder(out: str | Path) -> Iterator[Path]:
    """``with run_folder(out):`` prepares ``out`` (:func:`prepare_out_dir`) and holds its run lock. A run that fails
    before writing anything there (missing data or weights, a bad protocol, an interruption at the start) leaves no
    folder behind: one this call created and that still holds nothing but the lock file is removed again."""
    from ..pipeline.lock import RunLock

    out = Path(out)
    created = not out.exists()
    prepare_out_dir(out)
    with RunLock(out) as lock:  # only the holder may clean up: a process refused the lock leaves the folder alone
        _remove_leftovers(out)
        try:
            yield out
        except BaseException:
            if created:
                try:
                    _remove_leftovers(out)  # e.g. examples staged when the run was interrupted
                    if [p.name for p in out.iterdir()] == [lock.path.name]:
                        lock.path.unlink()
                        out.rmdir()
                except OSError:  # a folder made unwritable meanwhile: keep it, and report the run's own error
                    pass
            raise


#: where ``restorever eval`` writes example PNGs until :func:`write_run` moves them into ``examples/`` with the other
#: outputs (written straight into ``examples/``, an interrupted rerun left them beside the previous results.json)
EXAMPLES_STAGING = ".examples.staged"


#: the files a run writes atomically into ``out`` (their ``.NAME.XXXX.tmp`` temporaries are a dead run's)
_OWN_FILES = ("results.json", "results.md", "roc.png", "degradation.jsonl", "cmc.png")


def _is_staged_output(name: str) -> bool:
    """``.results.json.staged`` and the like: :func:`write_run`'s staging names."""
    return name.startswith(".") and name.endswith(".staged") and name[1:-len(".staged")] in _OWN_FILES


def _is_leftover_file(name: str) -> bool:
    """A staged output, or the ``.TARGET.XXXX.tmp`` temporary of an atomic write of one of :data:`_OWN_FILES` or of
    a staged output (``mkstemp``'s random part holds no dot)."""
    if _is_staged_output(name):
        return True
    if name.startswith(".") and name.endswith(".tmp"):
        target = name[1:-len(".tmp")].rsplit(".", 1)[0]
        return target in _OWN_FILES or _is_staged_output(target)
    return False


def _remove_leftovers(out: Path) -> None:
    """Remove what an interrupted or killed run left in ``out`` (called under the run lock, so no live writer owns
    them): the example staging folder, staged outputs (``.NAME.staged``), temporary files of their atomic writes
    (``.NAME.XXXX.tmp``) and ROC drawing folders (``.roc-XXXX``), for the NAMEs of :data:`_OWN_FILES` only. Nothing
    else is touched."""
    for path in out.iterdir():
        name = path.name
        if not name.startswith("."):
            continue
        leftover = (name == EXAMPLES_STAGING or name.startswith(".roc-")) if path.is_dir() else _is_leftover_file(name)
        if not leftover:
            continue
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            logger.info("%s: removed %s, left by an interrupted run", out, name)
        except OSError as exc:
            logger.warning("%s: could not remove %s, left by an interrupted run (%s)", out, name, exc)


OUTPUT_FILES = ("degradation.jsonl", "results.md", "roc.png")  # the files results.json records digests of


def _roc_png(record: dict[str, Any], out: Path) -> bytes:
    """The ROC figure as PNG bytes (drawn in a private temporary folder inside ``out``)."""
    import shutil
    import tempfile

    from .plots import plot_roc

    tmp = Path(tempfile.mkdtemp(prefix=".roc-", dir=out))
    try:
        return plot_roc([record], tmp / "roc.png").read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _example_files(record: dict[str, Any]) -> list[str]:
    """The relative paths of the example PNGs a record names (``examples[].clean`` and ``examples[].images``)."""
    out = []
    for entry in record.get("examples") or []:
        if isinstance(entry, dict):
            out += [p for p in [entry.get("clean"), *((entry.get("images") or {}).values())] if isinstance(p, str)]
    return out


#: `restorever report`'s default outputs, beside its figures/ folder
REPORT_OUTPUTS = ("report.html", "report.md", "tables.csv", "tables.tex")
_FIGURE_SUFFIXES = {".png", ".pdf", ".svg"}


def _remove_stale_outputs(out: Path, examples: set[str]) -> None:
    """Remove what a previous run in ``out`` left that would describe the wrong results: the default report
    (``report.html``, ``report.md``, ``tables.csv``, ``tables.tex`` and a ``figures/`` folder holding only
    figures) and example PNGs this record does not name. Anything else in ``out`` is left alone."""
    removed = [name for name in REPORT_OUTPUTS if (out / name).is_file()]
    for name in removed:
        (out / name).unlink()
    figures = out / "figures"
    if figures.is_dir() and all(p.is_file() and p.suffix.lower() in _FIGURE_SUFFIXES for p in figures.iterdir()):
        shutil.rmtree(figures)
        removed.append("figures/")
    examples_dir = out / "examples"
    if examples_dir.is_dir():
        old = [p for p in examples_dir.rglob("*.png") if p.relative_to(out).as_posix() not in examples]
        for path in old:
            path.unlink()
        for folder in sorted((d for d in examples_dir.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
            if not any(folder.iterdir()):
                folder.rmdir()
        removed += [f"{len(old)} example image(s)"] if old else []
    if removed:
        logger.warning("%s: removed what the previous run there left (%s): it described other results; "
                       "`restorever report %s` makes the report again", out, ", ".join(removed), out)


def _say_what_is_replaced(old_results: Path, config: dict[str, Any]) -> None:
    """Log which options of the finished run in ``old_results`` differ from ``config``, the run replacing it (nothing
    when they are the same: a rerun of the same command)."""
    try:
        data = json.loads(old_results.read_text())
    except (OSError, ValueError):
        data = None
    old = data.get("config") if isinstance(data, dict) else None
    if not isinstance(old, dict):
        logger.warning("%s: replaced a results.json that holds no readable config", old_results)
        return
    config = json.loads(json.dumps(config, default=str))  # as it will be stored: tuples become lists
    # where each value came from, and where the outputs and cache go: not what the run computed
    provenance = {"overrides", "sources", "out", "cache_dir"}
    changed = [k for k in sorted({*old, *config} - provenance) if old.get(k) != config.get(k)]
    if changed:
        logger.warning("%s: replaced the finished run there, which had other options (%s)", old_results.parent,
                       "; ".join(f"{k}: {_brief(old.get(k))} -> {_brief(config.get(k))}" for k in changed[:6])
                       + (f"; {len(changed) - 6} more" if len(changed) > 6 else ""))


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def write_run(record: dict[str, Any], out: str | Path, *, staged_examples: str | Path | None = None
              ) -> dict[str, Path]:
    """Write ``results.json``, ``results.md``, ``roc.png`` and ``degradation.jsonl`` into ``out``, all or nothing.

    Every file is first written in full under a hidden staging name (fsynced); only when all four exist are they
    renamed into place: an old ``results.json`` is removed first and the new one comes last, so a folder never holds
    a ``results.json`` beside outputs of another run (its presence means the run is complete). A failure while
    staging (disk full, an unwritable folder) removes the staged files and leaves the previous outputs as they were.
    ``results.json`` records the sha256 (and for ``degradation.jsonl`` the line count) of the other files under
    ``outputs``, so ``restorever validate`` detects a changed, truncated or mixed file.

    ``staged_examples``: the folder :func:`restorever.pipeline.evaluate.evaluate` wrote the record's example PNGs
    into (``examples_dir``); they are moved to ``out`` after the old ``results.json`` is gone, with the other outputs.
    Without it the PNGs are expected in ``out`` already.

    The paired statistics of :func:`restorever.reports.statistics.add_comparisons` (``comparison_to_clean``,
    ``comparison_to_none``, completed with ``auc`` and ``tar_at_far`` by
    :func:`restorever.reports.rate_stats.add_rate_comparisons`) and
    :func:`restorever.reports.identity_stats.add_identity_statistics` (``identity.ci_*``,
    ``identity_comparison_to_none``) are added to the record's conditions first (in place)."""
    import hashlib
    import os

    from ..files import atomic_write_bytes
    from .identity_stats import add_identity_statistics
    from .rate_stats import add_rate_comparisons
    from .statistics import add_comparisons

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RestoreverError(f"--out {out}: exists and is not a folder; choose another --out") from None
    record = dict(record)
    params = record.pop("degradation_records", [])
    # tens of seconds on a full LFW study (docs/benchmarks.md): said, so a quiet end of a run is not taken for a hang
    logger.info("%s: paired statistics (McNemar, people bootstrap, AUC/TAR@FAR and identity intervals)", out)
    add_comparisons(record)  # adds keys to the caller's condition dicts too, so its printed table shows them
    add_rate_comparisons(record)
    add_identity_statistics(record)
    contents: dict[str, bytes] = {}
    if params:
        contents["degradation.jsonl"] = "".join(json.dumps(p, sort_keys=True) + "\n" for p in params).encode()
    contents["results.md"] = results_markdown(record).encode("utf-8")
    contents["roc.png"] = _roc_png(record, out)
    record["outputs"] = {name: {"sha256": hashlib.sha256(data).hexdigest(),
                                **({"lines": data.count(b"\n")} if name.endswith(".jsonl") else {})}
                         for name, data in contents.items()}
    examples_from = Path(staged_examples) if staged_examples is not None else out
    moves = []
    for rel in _example_files(record):  # written by evaluate() before; a later run's examples must not pass as these
        path = examples_from / rel
        if path.is_file():
            record["outputs"][rel] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
            if staged_examples is not None:
                moves.append(rel)
    contents[RESULTS_FILE] = json.dumps(record, indent=1, allow_nan=False).encode("utf-8")
    staged: dict[str, Path] = {}
    try:
        for name, data in contents.items():
            staged[name] = out / f".{name}.staged"
            atomic_write_bytes(staged[name], data)
        final = out / RESULTS_FILE
        if final.exists():
            _say_what_is_replaced(final, record.get("config") or {})
            final.unlink()  # from here until the last rename the folder is an unfinished run, never a mixed one
        stale = out / "degradation.jsonl"
        if "degradation.jsonl" not in contents and stale.exists():
            stale.unlink()
        _remove_stale_outputs(out, set(_example_files(record)))
        for rel in moves:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(examples_from / rel, out / rel)
        if staged_examples is not None:
            shutil.rmtree(examples_from, ignore_errors=True)
        for name in [n for n in contents if n != RESULTS_FILE] + [RESULTS_FILE]:
            os.replace(staged[name], out / name)
    finally:  # after a failure or an interruption: no staged file is left behind
        for path in staged.values():
            try:
                path.unlink()
            except OSError:  # already renamed into place (FileNotFoundError), or a folder we can no longer write
                pass
    keys = {"degradation.jsonl": "degradation", "results.md": "markdown", "roc.png": "roc", RESULTS_FILE: "results"}
    return {keys[name]: out / name for name in contents}


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` (or the one inside a run folder): the dict as stored, each condition checked against
    its part of the schema (the header is not: figures and tables can be drawn from a record that lacks, say, the
    environment). :func:`load_record` checks the whole file and gives it as a typed record."""
    record = _read_results(path)
    source = str(_results_path(path))
    kind = IdentConditionRecord if is_identification(record) else ConditionRecord
    for i, cond in enumerate(record["conditions"]):
        kind.from_json(cond, source=source, path=f"conditions[{i}]")
    return record


def load_record(path: str | Path) -> RunRecord | IdentRunRecord:
    """Read a ``results.json`` (or the one inside a run folder) as a typed record: :class:`RunRecord`, or
    :class:`IdentRunRecord` for an identification run. A file that breaks its schema raises
    :class:`~restorever.pipeline.records.RecordError` naming the file and the key."""
    return record_from_json(_read_results(path), source=str(_results_path(path)))


def _results_path(path: str | Path) -> Path:
    p = Path(path)
    return p / RESULTS_FILE if p.is_dir() else p


def _read_results(path: str | Path) -> dict[str, Any]:
    p = _results_path(path)
    if p.is_file() and p.stat().st_size > MAX_RESULTS_BYTES:
        raise RestoreverError(f"{p}: {p.stat().st_size} bytes, more than the {MAX_RESULTS_BYTES} allowed for a "
                              f"results file; not read")
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RestoreverError(f"{p}: no results file (did the run finish?)") from exc
    except json.JSONDecodeError as exc:
        raise RestoreverError(f"{p}: not valid JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise RestoreverError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise RestoreverError(f"{p}: nested too deeply to be a results file") from None
    except OSError as exc:
        raise RestoreverError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(record, dict) or "conditions" not in record:
        raise RestoreverError(f"{p}: not a restorever results file (no 'conditions')")
    _check_conditions(record, p)  # the fields every report keys on, in words that say what to fix
    return record


def _check_conditions(record: dict[str, Any], source: Path) -> None:
    """The fields every report and plot keys on: each condition's ``restorer`` (a name) and ``scale`` (an integer
    >= 1, or null for the clean condition). Anything else is one line naming the file, not a traceback later."""
    conds = record["conditions"]
    if not isinstance(conds, list) or not conds:
        raise RestoreverError(f"{source}: 'conditions' must be a non-empty list (run `restorever validate` on it)")
    for i, cond in enumerate(conds):
        if not isinstance(cond, dict):
            raise RestoreverError(f"{source}: conditions[{i}] is not an object (run `restorever validate` on it)")
        scale, restorer = cond.get("scale"), cond.get("restorer")
        if not (scale is None or (isinstance(scale, int) and not isinstance(scale, bool) and scale >= 1)):
            raise RestoreverError(f"{source}: conditions[{i}].scale must be an integer >= 1 or null, got "
                                  f"{str(scale)[:40]!r} (run `restorever validate` on it)")
        if not isinstance(restorer, str) or not restorer:
            raise RestoreverError(f"{source}: conditions[{i}].restorer must be a name, got {str(restorer)[:40]!r} "
                                  f"(run `restorever validate` on it)")

"""Checks of a finished run folder (:func:`check_run`): strict JSON and the schema, the record's consistency, every
metric recomputed from the stored scores, ``degradation.jsonl``, the output digests and the pairs against the
protocol. The cache checks live in :mod:`restorever.validate.run_cache`."""
from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import RestoreverError
from ..pipeline.records import RunRecord, is_identification
from .common import (MAX_RESULTS_BYTES, RESULTS_FILE, VALIDATOR_ERROR, RunValidation, compare, condition_label, cut,
    load_recorded_protocol, short)
from .run_cache import check_cache as _check_cache
from .schema import IDENT_SCHEMA, schema_problems

logger = logging.getLogger(__name__)


def validate_run(run_dir: str | os.PathLike, *, check_cache: bool = True,
                 cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Problems found in the run folder ``run_dir`` (an empty list when it is valid); see :func:`check_run`."""
    return check_run(run_dir, check_cache=check_cache, cache_dir=cache_dir).problems


def check_run(run_dir: str | os.PathLike, *, check_cache: bool = True,
              cache_dir: str | os.PathLike | None = None) -> RunValidation:
    """Validate a finished run folder (``results.json`` and, when present, ``degradation.jsonl`` and the cache).

    Args:
        run_dir: the folder ``restorever eval --out`` wrote (or its ``results.json``).
        check_cache: also check the cached embeddings the run scored (when its cache folder exists).
        cache_dir: the cache folder, when it moved since the run (default: the one results.json records).
    """
    run = Path(run_dir)
    if run.is_file():
        run = run.parent
    report = RunValidation(run)
    record = _read_record(run / RESULTS_FILE, report)
    if record is None:
        return report
    if is_identification(record):
        found = schema_problems(record, IDENT_SCHEMA)
        report.problems += cut(found, "schema")
        report.checked["schema"] = 1
        if not found:
            report.problems += cut(retrieval_problems(record), "retrieval")
            report.checked["retrieval sections checked"] = sum(
                len(_retrieval_sections(c)) for c in record["conditions"] if isinstance(c, dict))
        report.notes.append("identification run: strict JSON, its schema and the consistency of its retrieval "
                            "figures checked; the figures are not recomputed (per-probe ranks are not stored)")
        return report
    found = schema_problems(record)
    report.checked["schema"] = 1
    if found:
        report.problems += cut(found, "schema")
        return report
    typed = _typed(record, report)
    if typed is None:
        return report
    _guarded(_check_consistency, report, typed, report)
    if report.problems:  # the recomputations below assume a consistent record
        return report
    _guarded(_check_metrics, report, record, typed, report)
    _guarded(_check_outputs, report, record, run, report)
    _guarded(_check_degradation_file, report, record, run, report)
    _guarded(_check_pairs, report, record, run, report)
    if check_cache:
        _guarded(_check_cache, report, record, report, cache_dir, run)
    else:
        report.notes.append("cache check skipped (--no-cache)")
    return report


def _guarded(check, report: RunValidation, *args) -> None:
    """Run one check; an exception it did not foresee on a hostile record becomes a problem (so the command still
    reports and exits 2) instead of a traceback. The fuzz tests require that this never happens."""
    try:
        check(*args)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.debug("%s failed", check.__name__, exc_info=True)
        report.problems.append(f"{VALIDATOR_ERROR} in {check.__name__.lstrip('_')}: {type(exc).__name__}: {exc} "
                               f"(the record is malformed in a way restorever does not describe yet)")


def _typed(record: dict[str, Any], report: RunValidation) -> RunRecord | None:
    """The typed record of a ``results.json`` that passed its schema (None, with a problem, if it cannot be read)."""
    try:
        return RunRecord.from_json(record, source=str(report.run_dir / RESULTS_FILE), check=False)
    except Exception as exc:  # noqa: BLE001 - as in _guarded: a hostile record is a problem, not a traceback
        logger.debug("reading the record failed", exc_info=True)
        report.problems.append(f"{VALIDATOR_ERROR} reading the record: {type(exc).__name__}: {exc}")
        return None


def _read_record(path: Path, report: RunValidation) -> dict[str, Any] | None:
    if not path.is_file():
        report.problems.append(f"{path}: missing (the run did not finish, or this is not a run folder)")
        return None
    size = path.stat().st_size
    if size > MAX_RESULTS_BYTES:
        report.problems.append(f"{path}: {size} bytes, larger than the {MAX_RESULTS_BYTES} allowed; not read")
        return None

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            out[key] = value
        return out

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON (a metric was NaN or infinite)")

    try:
        raw = path.read_bytes()
    except OSError as exc:
        report.problems.append(f"{path}: cannot be read ({exc.strerror or exc})")
        return None
    try:
        record = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs_hook, parse_constant=no_constants)
    except UnicodeDecodeError as exc:
        report.problems.append(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    except RecursionError:
        report.problems.append(f"{path}: nested too deeply to be a results file")
        return None
    except ValueError as exc:  # json.JSONDecodeError and the hooks above
        report.problems.append(f"{path}: not strict JSON ({exc})")
        return None
    if not isinstance(record, dict):
        report.problems.append(f"{path}: expected a JSON object at the top level, got {type(record).__name__}")
        return None
    return record


def _check_consistency(run: RunRecord, report: RunValidation) -> None:
    """Cross-field rules the schema cannot express."""
    import datetime as dt

    problems = report.problems
    cfg, proto, conds = run.config, run.protocol, run.conditions
    try:
        dt.datetime.fromisoformat(run.header.created)
    except ValueError:
        problems.append(f"created: {short(run.header.created)} is not an ISO-8601 time")
    n = proto.pairs
    if proto.pairs_requested is not None and proto.pairs_requested - n != len(proto.skipped):
        problems.append(f"protocol: {proto.pairs_requested} pairs requested - {n} evaluated != "
                        f"{len(proto.skipped)} skipped")
    if run.pairs is not None and not (len(run.pairs.a) == len(run.pairs.b) == n):
        problems.append(f"pairs: {len(run.pairs.a)} a-side and {len(run.pairs.b)} b-side ids for {n} pairs")
    from ..pipeline.identity import conditions_of

    expected = conditions_of(cfg["restorers"], cfg["scales"])
    found = [(c.restorer, c.scale) for c in conds]
    if sorted(found, key=repr) != sorted(expected, key=repr):
        problems.append(f"conditions: {found} do not match the config (restorers {cfg['restorers']}, scales "
                        f"{cfg['scales']}, plus the clean condition)")
    first_scores = None
    for i, cond in enumerate(conds):
        where = f"conditions[{i}] ({cond.label})"
        if cond.recognizer != cfg["recognizer"] or cond.degrade_side != cfg["degrade_side"]:
            problems.append(f"{where}: recognizer/degrade_side differ from the config")
        if (cond.scale is None) != (cond.degradation is None):
            problems.append(f"{where}: a degraded condition needs both a scale and a degradation")
        elif cond.scale is not None and cond.degradation != cfg["degradation"]:
            problems.append(f"{where}: degradation {cond.degradation!r} differs from the config's "
                            f"{cfg['degradation']!r}")
        ver, scores = cond.verification, cond.scores
        if scores is None:
            report.notes.append(f"{where}: no per-pair scores stored; its metrics cannot be recomputed")
            continue
        lengths = {len(scores.same), len(scores.fold), len(scores.score)}
        if lengths != {n}:
            problems.append(f"{where}: scores hold {sorted(lengths)} entries for {n} pairs")
            continue
        if ver.n_pairs is not None and ver.n_pairs != n:
            problems.append(f"{where}: verification.n_pairs {ver.n_pairs} != {n} pairs")
        n_folds = len(set(scores.fold))
        if n_folds != proto.folds or len(ver.fold_accuracies) != n_folds or len(ver.thresholds) != n_folds:
            problems.append(f"{where}: {n_folds} folds in the scores, protocol.folds {proto.folds}, "
                            f"{len(ver.fold_accuracies)} fold accuracies, {len(ver.thresholds)} thresholds")
        if len(set(scores.same)) < 2:
            problems.append(f"{where}: the scored pairs hold only one class")
        if first_scores is None:
            first_scores = scores
        elif scores.same != first_scores.same or scores.fold != first_scores.fold:
            problems.append(f"{where}: scores a different list of pairs (labels or folds) than conditions[0]")
        fpr, tpr = ver.roc_fpr, ver.roc_tpr
        if len(fpr) != len(tpr) or any(x is None or y is None for x, y in zip(fpr, tpr)) or \
                np.any(np.diff(np.asarray(fpr, float)) < 0) or np.any(np.diff(np.asarray(tpr, float)) < 0):
            problems.append(f"{where}: verification.roc is not a non-decreasing curve of equal-length fpr/tpr")


def _check_metrics(record: dict[str, Any], run: RunRecord, report: RunValidation) -> None:
    """Recompute every condition's verification metrics (and the paired statistics) from the stored scores."""
    import copy

    from ..metrics.verification import verification_report

    found: list[str] = []
    n_checked = 0
    for i, cond in enumerate(run.conditions):
        if cond.scores is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fresh = verification_report(np.asarray(cond.scores.same, dtype=np.int64),
                                            np.asarray(cond.scores.score, dtype=np.float64),
                                            np.asarray(cond.scores.fold, dtype=np.int64))
            except (ValueError, OverflowError) as exc:
                found.append(f"conditions[{i}] ({cond.label}): metrics cannot be recomputed ({exc})")
                continue
        # against the stored block itself: a key an older version did not write is not compared (to_json would
        # give it as null). The ROC is stored thinned; a record thinned by this version is compared point by point,
        # an older one (no roc_thinning) must hold vertices of the scores' ROC.
        where = f"conditions[{i}] ({cond.label}).verification"
        stored = record["conditions"][i]["verification"]
        if "roc_thinning" not in stored:
            fresh.pop("roc")
            off = roc_points_off_curve(cond.verification.roc_fpr, cond.verification.roc_tpr, cond.scores)
            if off:
                found.append(f"{where}.roc: {off}")
        compare(stored, fresh, where, found)
        n_checked += 1
    keys = ("comparison_to_clean", "comparison_to_none")
    if any(key in c for c in record["conditions"] for key in keys):
        from ..reports.rate_stats import RATE_KEYS, add_rate_comparisons
        from ..reports.statistics import add_comparisons, checked_n_boot

        has_rates = any(rate in c["comparison_to_none"] for c in record["conditions"]
                        if isinstance(c.get("comparison_to_none"), dict) for rate in RATE_KEYS)
        fresh_record = copy.deepcopy({k: record[k] for k in ("config", "pairs", "conditions") if k in record})
        stored = fresh_record["conditions"]
        try:
            first = next(c[key] for c in stored for key in keys if key in c)
            options = {"n_boot": checked_n_boot(first["bootstrap"]["n_boot"]), "level": float(first["ci_level"]),
                       "seed": int(first["bootstrap"]["seed"]),
                       "estimator": str(first.get("estimator", "pooled"))}  # records before it: pooled
            for cond in stored:
                for key in keys:
                    cond.pop(key, None)
            add_comparisons(fresh_record, overwrite=True, **options)
            if has_rates:  # comparison_to_none.auc / .tar_at_far, where stored, by the stored TAR rule
                for old_cond, new_cond in zip(record["conditions"], stored):
                    old_comp, new_comp = old_cond.get("comparison_to_none"), new_cond.get("comparison_to_none")
                    if isinstance(old_comp, dict) and isinstance(new_comp, dict):
                        new_comp["tar_rule"] = old_comp.get("tar_rule", 1)  # records before the key: rule 1
                add_rate_comparisons(fresh_record)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
            found.append(f"paired statistics cannot be recomputed ({type(exc).__name__}: {exc})")
        else:
            for i, (old, new) in enumerate(zip(record["conditions"], fresh_record["conditions"])):
                for key in keys:
                    if (key in old) != (key in new):
                        found.append(f"conditions[{i}] ({condition_label(old)}).{key}: "
                                     f"{'stored but not recomputed' if key in old else 'missing'}")
                    elif key in old:
                        where = f"conditions[{i}] ({condition_label(old)}).{key}"
                        method = _get(old[key], "bootstrap", "resampled")
                        if method != _get(new[key], "bootstrap", "resampled"):
                            report.notes.append(f"{where}: computed by another bootstrap method ({method!r}); not "
                                                f"recomputed")
                            continue
                        if _older_zero_width_interval(old[key], new[key]):
                            new[key] = {**new[key], "ci_low": old[key]["ci_low"], "ci_high": old[key]["ci_high"]}
                            report.notes.append(f"{where}: stores the zero-width interval [d, d] of one resampled "
                                                f"person (an older version); this version stores no interval there")
                        found += _rate_entry_problems(old[key], new[key], where, has_rates)
                        compare(old[key], new[key], where, found)
                        n_checked += 1
            if has_rates and any(".comparison_to_none.tar_at_far." in p for p in found):  # an edited tar_rule?
                from ..reports.rate_stats import misread_rules
                found += misread_rules(record, fresh_record)
    from ..reports.identity_stats import identity_statistics_problems

    identity_found, identity_checked = identity_statistics_problems(record, compare)
    found += identity_found
    report.checked["metrics recomputed"] = n_checked
    if identity_checked:
        report.checked["identity statistics recomputed"] = identity_checked
    report.problems += cut(found, "metric")


def _rate_entry_problems(old: Any, new: dict[str, Any], where: str, has_rates: bool) -> list[str]:
    """Entries of a stored ``comparison_to_none`` (``old``) that its recomputation (``new``) does not hold, or the
    reverse, for ``auc``, ``tar_at_far`` and the FAR keys of ``tar_at_far``: these follow from the data (the FAR keys
    are those of ``verification.tar_at_far``), so one added or removed is an edit (:func:`compare` skips keys only
    one side has). A missing key is a problem only in a record that stores rate comparisons (``has_rates``)."""
    from ..reports.rate_stats import RATE_KEYS

    if not isinstance(old, dict):
        return []
    found = [f"{where}.{rate}: stored but not recomputed" for rate in RATE_KEYS if rate in old and rate not in new]
    if has_rates:
        found += [f"{where}.{rate}: missing" for rate in RATE_KEYS if rate in new and rate not in old]
    stored, fresh = old.get("tar_at_far"), new.get("tar_at_far")
    if isinstance(stored, dict) and isinstance(fresh, dict):
        found += [f"{where}.tar_at_far.{far}: {'stored but not recomputed' if far in stored else 'missing'}"
                  for far in sorted(set(stored) ^ set(fresh), key=str)]
    return found


def _older_zero_width_interval(stored: Any, fresh: Any) -> bool:
    """Whether ``stored`` is a comparison from before 2026-12-07 holding ``[d, d]`` where ``fresh`` (one resampled
    cluster) holds no interval: the same statistics, written the old way."""
    if not (isinstance(stored, dict) and isinstance(fresh, dict)) or fresh.get("ci_low") is not None:
        return False
    d, low, high = stored.get("accuracy_difference"), stored.get("ci_low"), stored.get("ci_high")
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (d, low, high))
    return numbers and _get(fresh, "bootstrap", "clusters") == 1 and math.isclose(low, d, abs_tol=1e-12) \
        and math.isclose(high, d, abs_tol=1e-12)


def roc_points_off_curve(fpr: Sequence[Any], tpr: Sequence[Any], scores: Any) -> str:
    """Empty when every stored ``(fpr, tpr)`` point is a vertex of the ROC of ``scores`` (``same``, ``score``) and
    the curve runs from FPR 0 to (1, 1); else what is wrong, e.g. ``3 of 318 points are not on the ROC (first:
    [12] (0.01, 0.5))``. A record storing no ROC (one class) passes."""
    from ..metrics.verification import roc_curve

    if not fpr:
        return ""
    full_fpr, full_tpr, _ = roc_curve(np.asarray(scores.same, dtype=np.int64),
                                      np.asarray(scores.score, dtype=np.float64), drop_intermediate=False)
    vertices = {(round(float(f), 12), round(float(t), 12)) for f, t in zip(full_fpr, full_tpr)}
    stored = list(zip(fpr, tpr))
    off = [k for k, (f, t) in enumerate(stored) if (round(float(f), 12), round(float(t), 12)) not in vertices]
    if off:
        k = off[0]
        return f"{len(off)} of {len(stored)} points are not on the ROC of the stored scores (first: [{k}] {stored[k]})"
    if float(fpr[0]) != 0.0 or (float(fpr[-1]), float(tpr[-1])) != (1.0, 1.0):
        return f"the curve does not run from FPR 0 to (1, 1): {stored[0]} ... {stored[-1]}"
    return ""


def _get(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...`` or None when a level is missing or not a mapping."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _check_degradation_file(record: dict[str, Any], run: Path, report: RunValidation) -> None:
    """``degradation.jsonl``: one record per (probe, scale) with the parameters this version of restorever draws."""
    cfg = record["config"]
    path = run / "degradation.jsonl"
    if not cfg["scales"]:
        return
    if not path.is_file():
        if record.get("outputs") is None:  # older records: the file was optional
            report.notes.append(f"{path.name}: missing; the degradation parameters cannot be checked")
        return  # newer records: _check_outputs reports it missing
    from .. import __version__
    from ..degradation import Degradation, DegradationError, DegradationParams

    problems: list[str] = []
    records = []
    if path.stat().st_size > MAX_RESULTS_BYTES:
        report.problems.append(f"{path.name}: larger than {MAX_RESULTS_BYTES} bytes; not read")
        return
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            records.append(rec)
        except ValueError as exc:
            problems.append(f"{path.name}:{line_no}: not a JSON object ({exc})")
    if not problems and records:
        try:
            stored = DegradationParams.from_records(records)
        except (DegradationError, ValueError, TypeError) as exc:
            problems.append(f"{path.name}: malformed records ({exc})")
        else:
            try:
                deg = Degradation(cfg["degradation"])
            except RestoreverError as exc:
                problems.append(f"{path.name}: {exc}")
                deg = None
            differ = []
            if deg is not None:
                by_scale: dict[Any, list[int]] = {}
                for k, rec in enumerate(records):
                    by_scale.setdefault(rec.get("scale"), []).append(k)
                for scale, idx in by_scale.items():
                    try:
                        fresh = deg.sample_params([str(records[k]["item_id"]) for k in idx], scale, int(cfg["seed"]))
                    except (DegradationError, ValueError, TypeError) as exc:
                        problems.append(f"{path.name}: records at scale {scale!r} cannot be redrawn ({exc})")
                        continue
                    for j, k in enumerate(idx):
                        if not _same_params(fresh, j, stored, k):
                            differ.append(f"{path.name}:{k + 1}: parameters of {records[k]['item_id']!r} at x{scale} "
                                          f"differ from what restorever {__version__} draws")
            if differ:
                if record["restorever_version"] == __version__:
                    problems += differ
                else:
                    report.notes.append(f"{path.name}: {len(differ)} record(s) differ from what restorever "
                                        f"{__version__} draws (the run used {record['restorever_version']})")
            report.checked["degradation records"] = len(records)
    pairs = record.get("pairs")
    if pairs and not problems:
        probes = set(pairs["b"]) if cfg["degrade_side"] == "probe" else set(pairs["a"]) | set(pairs["b"])
        want = {(item, int(scale)) for item in probes for scale in cfg["scales"]}
        have = [(str(r.get("item_id", r.get("item"))), r.get("scale")) for r in records]
        if len(have) != len(want) or set(have) != want:
            problems.append(f"{path.name}: {len(have)} record(s) for {len(want)} (probe, scale) pairs the run "
                            f"degraded ({len(probes)} probe(s) x {len(cfg['scales'])} scale(s)); it was truncated "
                            f"or edited")
    report.problems += cut(problems, "degradation")


def _check_outputs(record: dict[str, Any], run: Path, report: RunValidation) -> None:
    """The files beside results.json are the ones this run wrote (``outputs``: sha256 and line counts), so a
    truncated or emptied ``degradation.jsonl`` or another run's ``results.md`` is detected. Records written before
    ``outputs`` existed get only the count check of :func:`_check_degradation_file`."""
    import hashlib

    outputs = record.get("outputs")
    if outputs is None:
        report.notes.append("results.json records no digests of its outputs (written before they were recorded)")
        return
    if not isinstance(outputs, dict):
        report.problems.append(f"outputs: expected a mapping of file name to digest, got {short(outputs)}")
        return
    problems = []
    if record["config"]["scales"] and "degradation.jsonl" not in outputs:
        problems.append("outputs: a run with scales must record degradation.jsonl")
    from ..errors import UnsafePathError
    from ..images import safe_join

    for name, expected in outputs.items():
        if not isinstance(expected, dict) or not (name in ("degradation.jsonl", "results.md", "roc.png")
                                                  or name.startswith("examples/")):
            problems.append(f"outputs: unexpected entry {short(name)}")
            continue
        try:
            path = safe_join(run, name, what="outputs entry")
        except UnsafePathError as exc:
            problems.append(str(exc))
            continue
        if not path.is_file():
            problems.append(f"{name}: missing (results.json records it); the folder is incomplete or mixed")
            continue
        if path.stat().st_size > MAX_RESULTS_BYTES:
            problems.append(f"{name}: larger than {MAX_RESULTS_BYTES} bytes; not read")
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            n_lines = data.count(b"\n")
            lines = f" ({n_lines} lines, results.json says {expected['lines']})" if "lines" in expected else ""
            problems.append(f"{name}: changed since the run wrote it (sha256 differs from results.json){lines}; "
                            f"it was edited, truncated or comes from another run")
    report.checked["output files"] = len(outputs)
    report.problems += problems


def _recorded_rows(record: dict[str, Any]) -> list[tuple[str, str, int, int]] | None:
    """``(a, b, same, fold)`` of every pair the run was asked for: the scored ones (labels from the scores) and the
    skipped ones (labels stored with them since they are recorded); None when the record lacks them."""
    pairs, conds = record.get("pairs"), record["conditions"]
    scores = conds[0].get("scores") if conds else None
    if not pairs or not scores:
        return None
    try:
        rows = [(str(a), str(b), int(s), int(f)) for a, b, s, f in zip(pairs["a"], pairs["b"], scores["same"],
                                                                           scores["fold"])]
        for skip in record["protocol"]["skipped"]:
            if not all(k in skip for k in ("a", "b", "same", "fold")):
                return None
            rows.append((str(skip["a"]), str(skip["b"]), int(skip["same"]), int(skip["fold"])))
    except (TypeError, ValueError, OverflowError):  # a label that is not an integer: the schema reports it
        return None
    return rows


def _check_pairs(record: dict[str, Any], run: Path, report: RunValidation) -> None:
    """Labels, folds and skips against what the run was asked for: the recorded ``pairs_sha256`` (no data needed),
    then the protocol itself when its files can be read (a flipped label, a moved fold or a pair dropped behind a
    fake skip is a problem)."""
    from ..protocol import pairs_digest

    proto, cfg = record["protocol"], record["config"]
    rows = _recorded_rows(record)
    problems = report.problems
    recorded = proto.get("pairs_sha256")
    if recorded is not None:
        if rows is None:
            problems.append("protocol.pairs_sha256 is recorded but the skipped pairs lack their labels")
            return
        if not rows or pairs_digest(*zip(*rows)) != recorded:
            problems.append("pairs: the scored and skipped pairs with their labels and folds do not digest to "
                            "protocol.pairs_sha256; a label, fold or pair was changed")
        report.checked["pair digest"] = 1
    from ..errors import DETECTOR_FAILURE

    failed = {f["image"] for f in proto.get("failed_images") or [] if isinstance(f, dict)
              and isinstance(f.get("image"), str)}
    transient = [f["image"] for f in proto.get("failed_images") or [] if isinstance(f, dict)
                 and isinstance(f.get("image"), str) and DETECTOR_FAILURE in str(f.get("reason"))]
    if transient:
        problems.append(f"{len(transient)} image(s) skipped because the detector failed on them (e.g. "
                        f"{short(transient[0])}), not because no face was found: the run is incomplete; rerun it to "
                        f"retry them")
    for skip in proto["skipped"]:
        sides = {skip.get("a"), skip.get("b")} if all(isinstance(skip.get(k), str) for k in ("a", "b")) else set()
        if "failed_images" in proto and not sides & failed:
            problems.append(f"skipped pair {short(skip.get('a'))}, {short(skip.get('b'))}: neither image is listed "
                            f"in protocol.failed_images")
    try:
        from ..pipeline.evaluate import limit_pairs

        protocol = load_recorded_protocol(record, run)
        wanted = limit_pairs(protocol.pairs, cfg.get("limit_pairs"))
        if proto.get("name") != protocol.name:
            problems.append(f"protocol.name is {short(proto.get('name'))} but config.protocol {short(cfg['protocol'])} "
                            f"loads protocol {protocol.name!r}: the record was edited")
    except Exception as exc:  # noqa: BLE001 - without the protocol's files only this check is skipped
        report.notes.append(f"labels not checked against the protocol: its files cannot be read "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        return
    expected = sorted((a, b, int(s), int(f)) for a, b, s, f in zip(wanted.a, wanted.b, wanted.same, wanted.fold))
    if rows is None:
        report.notes.append("labels not checked against the protocol: the record lacks the skipped pairs' labels")
        return
    got = sorted(rows)
    if got != expected:
        exp_set, got_set = set(expected), set(got)
        extra = [r for r in got if r not in exp_set][:3]
        lost = [r for r in expected if r not in got_set][:3]
        message = (f"pairs: the run's pairs and labels differ from protocol {cfg['protocol']} "
                   f"({len(got)} recorded, {len(expected)} in the protocol; e.g. recorded {extra or '-'}, "
                   f"protocol {lost or '-'})")
        if recorded is None and cfg.get("limit_pairs") is not None:  # --limit-pairs chose differently before 0.x
            report.notes.append(message + "; the run predates protocol.pairs_sha256 and --limit-pairs selected "
                                          "pairs differently then")
        else:
            problems.append(message)
    report.checked["pairs checked against the protocol"] = len(expected)


def _same_params(a, i: int, b, j: int) -> bool:
    fields = ("scale", "sigma_x", "sigma_y", "theta", "noise_sigma", "jpeg_quality", "noise_seed")
    return (a.item_ids[i] == b.item_ids[j] and a.preset == b.preset and a.seed == b.seed
            and all(float(getattr(a, f)[i]) == float(getattr(b, f)[j]) for f in fields))


def _retrieval_sections(cond: dict) -> dict[str, dict]:
    """``{"retrieval": ..., "retrieval.filtered": ..., ...}``: the sections of one condition that hold figures."""
    retrieval = cond.get("retrieval")
    if not isinstance(retrieval, dict):
        return {}
    out = {"retrieval": retrieval}
    for key in ("filtered", "filtered_reweighted"):
        if isinstance(retrieval.get(key), dict):
            out[f"retrieval.{key}"] = retrieval[key]
    return out


def retrieval_problems(record: dict) -> list[str]:
    """What cannot hold in an identification record's figures, whatever the ranks were: a rate outside [0, 1],
    rank-1 > rank-5 > rank-10, a CMC that falls or disagrees with the stored rank-k, an mAP below rank-1 (each
    probe adds at least 1 to mAP's sum when its mate is first)."""
    problems = []
    for i, cond in enumerate(record["conditions"]):
        for name, sec in _retrieval_sections(cond).items():
            where = f"conditions[{i}].{name}"
            rates = {k: sec.get(k) for k in ("rank1", "rank5", "rank10", "map", "gallery_fraction",
                                             "mate_filtered_out") if isinstance(sec.get(k), (int, float))}
            problems += [f"{where}.{k} {v} is outside [0, 1]" for k, v in rates.items() if not 0 <= v <= 1]
            ranks = [rates[k] for k in ("rank1", "rank5", "rank10") if k in rates]
            if any(b < a - 1e-12 for a, b in zip(ranks, ranks[1:])):
                problems.append(f"{where}: rank-1/5/10 {ranks} decrease")
            if "map" in rates and "rank1" in rates and rates["map"] < rates["rank1"] - 1e-12:
                problems.append(f"{where}: map {rates['map']} is below rank1 {rates['rank1']}")
            cmc = sec.get("cmc")
            if isinstance(cmc, list) and all(isinstance(v, (int, float)) for v in cmc):
                if any(not 0 <= v <= 1 for v in cmc) or any(b < a - 1e-12 for a, b in zip(cmc, cmc[1:])):
                    problems.append(f"{where}.cmc is not a non-decreasing curve in [0, 1]")
                for k in (1, 5, 10):
                    stored = rates.get(f"rank{k}")
                    if stored is not None and len(cmc) >= k and abs(cmc[k - 1] - stored) > 1e-9:
                        problems.append(f"{where}: cmc at rank {k} is {cmc[k - 1]}, rank{k} is {stored}")
    return problems

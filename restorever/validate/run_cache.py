"""Checks of the cache a finished run used: its run identity, the landmark entries behind "no face found" skips,
and the cached embeddings, which must reproduce the stored scores and identity figures."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .common import MAX_PROBLEMS_PER_CHECK, RunValidation, compare, condition_label, cut, resolve_recorded_path, short



def check_cache(record: dict[str, Any], report: RunValidation, cache_dir: str | os.PathLike | None,
                 run: Path | None = None) -> None:
    """The cached embeddings each condition scored: present, intact, and reproducing the stored scores; and every
    "no face found" skip backed by a landmark entry that says so."""
    from ..pipeline.cache import ArrayCache

    cfg = record["config"]
    root = cache_dir or (record.get("cache") or {}).get("dir") or cfg.get("cache_dir")
    if run is not None and not cache_dir:
        root = resolve_recorded_path(root, record, run)
    if not root or not Path(root).is_dir():
        report.notes.append(f"cache check skipped: the cache folder {root or '(none recorded)'} does not exist "
                            f"(pass --cache-dir DIR if it moved)")
        return
    cache = ArrayCache(Path(root))
    pairs = record.get("pairs")
    if not pairs:
        report.notes.append("cache check skipped: results.json does not list the pair ids")
        return
    items = list(dict.fromkeys([*pairs["a"], *pairs["b"]]))
    shas = _image_hashes(record, items, report)
    if shas is None:
        return
    identity = _run_identity(record, report)
    if identity is None:
        return
    _check_skips(record, cache, identity, report)
    landmarks = _landmarks(record, cache, items, shas, identity, report)
    if landmarks is None:
        return
    degraded = None
    if identity.align_on == "degraded" and cfg["scales"]:
        degraded = _degraded_landmarks(record, cache, identity, run, report)
        if degraded is None:
            return
    _check_embeddings(record, cache, shas, landmarks, identity, report, degraded)


def _image_hashes(record: dict[str, Any], items: list[str], report: RunValidation) -> dict[str, str] | None:
    """``{item: sha256 of its bytes}``: recorded in results.json, else read from the run's data."""
    recorded = record["protocol"].get("images_sha256")
    if recorded is not None:
        missing = [i for i in items if i not in recorded]
        if missing:
            report.problems.append(f"protocol.images_sha256: no hash for {len(missing)} scored image(s) "
                                   f"(e.g. {missing[0]!r})")
            return None
        return {i: recorded[i] for i in items}
    import hashlib

    from ..protocol import load_protocol

    cfg = record["config"]
    try:
        protocol = load_protocol(cfg["protocol"], data_root=cfg.get("data_root"), pairs=cfg.get("pairs"),
                                 download=False)
        out = {i: hashlib.sha256(protocol.read_bytes(i)).hexdigest() for i in items}
    except Exception as exc:  # noqa: BLE001 - any failure to read the data only skips this check
        report.notes.append(f"cache check skipped: results.json records no image hashes and the run's data cannot "
                            f"be read ({type(exc).__name__}: {exc})")
        return None
    report.notes.append("image hashes read from the data (results.json does not record them)")
    return out


def _run_identity(record: dict[str, Any], report: RunValidation):
    """The run identity that built the cache keys: recorded (``cache.identity``), checked against the one rebuilt
    from the config and the weights table (what the run loaded); records made before the identity was stored are
    keyed by the rebuilt one (on the CPU). A changed weight hash, option or model name is a problem, and the keys
    then follow the config, so the entries the record claims are looked for where the changed run would have put
    them."""
    import json

    from ..pipeline.identity import RECORDED_BEFORE_VERSIONS, RunIdentity, recognizer_id, restorer_id

    cfg = record["config"]

    def weights_of(name: str) -> list[list[str]]:
        rows = []
        for key, wf in record["weights"].items():
            model, _, role = key.rpartition(":")
            if model == name:
                rows.append([role, wf["sha256"] or wf["file"]])
        return sorted(rows)

    try:
        recorded = RunIdentity.from_record(record)
    except (KeyError, TypeError, ValueError) as exc:
        report.problems.append(f"cache.identity: malformed ({type(exc).__name__}: {exc})")
        return None
    if recorded is not None and _newer_key_versions(recorded.key_versions, report):
        return None
    if recorded is not None:
        _note_plugins(recorded, report)
    try:
        from ..pipeline.evaluate import route_recognizer_options, route_restorer_options

        routed = route_restorer_options(cfg["restorers"], cfg.get("restorer_options") or {})
        recognizer_options = route_recognizer_options(cfg["recognizer"], cfg.get("recognizer_options") or {})
    except Exception as exc:  # noqa: BLE001 - an unknown restorer or a missing backend only skips this check
        if recorded is not None:
            return recorded
        report.notes.append(f"cache check skipped: the backend options cannot be resolved ({exc})")
        return None
    # a plugin's file is known from the record only (validate need not import it): the keys use the recorded one
    plugin = (lambda part: part.get("plugin") if isinstance(part, dict) else None)  # noqa: E731
    rebuilt = RunIdentity(detector=cfg.get("detector", "mtcnn"),
                          recognizer=recognizer_id(cfg["recognizer"], weights_of(cfg["recognizer"]),
                                                   bool(cfg.get("flip_test", False)), recognizer_options,
                                                   plugin(recorded.recognizer) if recorded is not None else None),
                          restorers={n: restorer_id(n, weights_of(n), routed[n],
                                                    plugin(recorded.restorers.get(n)) if recorded is not None else None)
                                     for n in cfg["restorers"]},
                          degradation=cfg["degradation"], seed=int(cfg["seed"]),
                          device=recorded.device if recorded is not None else "cpu",
                          key_versions=dict(recorded.key_versions if recorded is not None
                                            else RECORDED_BEFORE_VERSIONS),
                          alignment_fit=recorded.alignment_fit if recorded is not None else "least-squares",
                          align_on=str(cfg.get("align_on", "clean")),
                          detector_file=recorded.detector_file if recorded is not None else None)
    from ..pipeline.identity import device_kind

    _note_key_versions(rebuilt, report)
    if recorded is None:
        return rebuilt
    # the cache keys hold the device kind: the recorded device of the run must be the one its keys were made with
    env_device = (record.get("environment") or {}).get("device")
    cfg_device = cfg.get("device")
    for field_name, value in (("environment.device", env_device), ("config.device", cfg_device)):
        value = value.strip().lower() if isinstance(value, str) else value  # as resolve_device reads it
        if isinstance(value, str) and value not in ("", "auto") and device_kind(value) != recorded.device:
            report.problems.append(f"{field_name} is {value!r} but the run's cache keys were made on "
                                   f"{recorded.device!r} (cache.identity.device): one of them was changed")
    canon = lambda ident: json.dumps(ident.as_record(), sort_keys=True, default=str)  # noqa: E731
    if canon(recorded) != canon(rebuilt):
        report.problems.append("cache.identity does not match the config and the weights table (a weight hash, an "
                               "option or a model name was changed)")
        return rebuilt
    return recorded


def _newer_key_versions(versions: dict[str, Any], report: RunValidation) -> bool:
    """A problem (and True) when a recorded key version is newer than this restorever's: its cache entries cannot be
    rebuilt here, and calling them missing would send the user to the wrong cause."""
    from ..pipeline.cache import current_key_versions

    now = current_key_versions()
    newer = sorted(k for k, v in versions.items() if k in now and isinstance(v, int) and v > now[k])
    if newer:
        report.problems.append("cache.identity.key_versions: " + ", ".join(f"{k} {versions[k]}" for k in newer)
                               + " is newer than this restorever's (" + ", ".join(f"{k} {now[k]}" for k in newer)
                               + "): the run was made by a later version, or the field was edited; upgrade "
                               "restorever to check its cache entries")
    return bool(newer)


def _note_plugins(identity, report: RunValidation) -> None:
    """A note per plugin model of the run whose module is not loaded here (its entries are checked by the file
    recorded), or whose file has changed since the run (a new run computes new entries; these stay the old one's)."""
    from ..errors import RestoreverError
    from ..pipeline.plugins import plugin_of

    parts = [("recognizer", identity.recognizer), *(("restorer", r) for r in identity.restorers.values())]
    for kind, part in parts:
        then = part.get("plugin")
        if not isinstance(then, dict):
            continue
        name, module = part.get("name"), then.get("module")
        try:
            now = plugin_of(kind, str(name))
        except (RestoreverError, KeyError, ImportError):
            now = None
        if now is None:
            report.notes.append(f"{kind} {name} came from plugin {module} (sha256 {str(then.get('sha256'))[:12]}), "
                                f"not loaded here (--plugin {module} loads it); its cache entries are looked up by the "
                                f"recorded file")
        elif now.get("sha256") != then.get("sha256") or now.get("version") != then.get("version"):
            report.notes.append(f"{kind} {name}: plugin {module} has changed since the run (sha256 "
                                f"{str(then.get('sha256'))[:12]} then, {str(now.get('sha256'))[:12]} now); this run's "
                                f"entries are the old file's, a new run computes its own")
        elif (now.get("helpers") or {}) != (then.get("helpers") or {}):
            then_h, now_h = then.get("helpers") or {}, now.get("helpers") or {}
            changed = sorted(f for f in {*then_h, *now_h} if then_h.get(f) != now_h.get(f))
            report.notes.append(f"{kind} {name}: the helper module(s) {', '.join(changed)} of plugin {module} have "
                                f"changed since the run; this run's entries are the old files', a new run computes "
                                f"its own")


def _note_key_versions(identity, report: RunValidation) -> None:
    """A note when the run's key recipes are older than this restorever's: its entries are still checked (with the
    run's versions), but ``restorever eval`` with the same config would recompute the stages whose version changed."""
    from ..pipeline.cache import current_key_versions

    now = current_key_versions()
    changed = sorted(k for k in now if identity.key_versions.get(k) != now[k]
                     and (k != "detector_file" or identity.detector == "scrfd"))  # MTCNN keys have no file part
    if changed:
        report.notes.append("cache keys follow the run's own recipe versions (" + ", ".join(
            f"{k} {identity.key_versions.get(k)} -> {now[k]}" for k in changed) + " in this restorever): a new "
            "`restorever eval` of this config recomputes those entries instead of reusing them")


def _check_skips(record: dict[str, Any], cache, identity, report: RunValidation) -> None:
    """An image skipped as "no face found" must have the landmark entry that says so (written only when the
    detector ran and found nothing); an entry holding landmarks means the skip was invented."""
    proto = record["protocol"]
    shas = proto.get("images_sha256")
    if not shas or not proto["skipped"]:
        return
    decode = proto.get("images_decode") or {}
    problems, n = [], 0
    for failed in proto.get("failed_images") or []:
        if not isinstance(failed, dict) or not isinstance(failed.get("image"), str):
            problems.append(f"protocol.failed_images: malformed entry {short(failed)}")
            continue
        image, reason = failed["image"], str(failed.get("reason"))
        if "no face found by " not in reason:  # the reason landmark_stage gives a genuine miss
            continue
        if image not in shas:
            problems.append(f"failed image {short(image)}: skipped as no face found, but no hash is recorded")
            continue
        data, status = cache.check("landmarks", identity.landmarks_key(shas[image], decode.get(image)))
        n += 1
        if data is None:
            problems.append(f"failed image {short(image)}: skipped as no face found, but the cache holds no "
                            f"landmark entry that says so ({status})")
        elif data.shape == (5, 2) and not np.isnan(data).any():
            problems.append(f"failed image {short(image)}: skipped as no face found, but the cache holds its "
                            f"landmarks; the skip is not genuine")
    report.checked["skips checked"] = n
    report.problems += cut(problems, "skip")


def _landmarks(record: dict[str, Any], cache, items: list[str], shas: dict[str, str], identity,
               report: RunValidation) -> dict[str, np.ndarray] | None:
    cfg = record["config"]
    fallbacks = set(record["protocol"].get("landmark_fallbacks") or [])
    fallback_points = None
    if fallbacks:
        from ..protocol import load_spec

        try:
            spec, _ = load_spec(cfg["protocol"])
            fallback_points = np.asarray(spec["alignment"]["fallback_landmarks"], dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - only skips this check
            report.notes.append(f"cache check skipped: the protocol's fallback landmarks cannot be read ({exc})")
            return None
    decode = record["protocol"].get("images_decode") or {}
    out: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for item in items:
        if item in fallbacks:
            out[item] = fallback_points.copy()
            continue
        data, status = cache.check("landmarks", identity.landmarks_key(shas[item], decode.get(item)))
        if data is None:
            problems.append(f"landmarks of {item!r}: cache entry {status}")
        elif data.shape != (5, 2) or np.isnan(data).any():
            problems.append(f"landmarks of {item!r}: the cache says no face was found, yet the run scored it")
        else:
            out[item] = data.astype(np.float32)
    report.checked["landmark entries"] = len(items) - len(fallbacks) - len(problems)
    if problems:
        report.problems += cut(problems, "landmark cache")
        return None
    return out


def _degraded_landmarks(record: dict[str, Any], cache, identity, run: Path | None,
                        report: RunValidation) -> dict[tuple[str, int], Any] | None:
    """``align_on="degraded"``: ``{(item, scale): landmarks or None}`` found on each degraded crop, as
    ``degradation.jsonl`` records them; each must match its crop's landmark entry (by the crop's recorded sha256),
    and each condition's ``alignment`` counts must match them. The crops are not made again, so whether they still
    hash to the recorded sha256 (and the detector still finds those landmarks) is not checked here."""
    import json

    from ..pipeline.realign import DEGRADED_CROP_DECODE

    path = None if run is None else run / "degradation.jsonl"
    if path is None or not path.is_file():
        report.notes.append("cache check skipped: an --align-on degraded run's cache keys need the landmarks "
                            "recorded in degradation.jsonl, which is missing")
        return None
    out: dict[tuple[str, int], Any] = {}
    problems: list[str] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        try:
            rec = json.loads(line)
            item, scale, sha = str(rec["item"]), int(rec["scale"]), str(rec["degraded_sha256"])
            lms = rec["degraded_landmarks"]
            lms = None if lms is None else np.asarray(lms, dtype=np.float32).reshape(5, 2)
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path.name}:{line_no}: no degraded_sha256 / degraded_landmarks of an --align-on "
                            f"degraded run ({type(exc).__name__}: {exc})")
            continue
        data, status = cache.check("landmarks", identity.landmarks_key(sha, DEGRADED_CROP_DECODE))
        if data is None:
            problems.append(f"{path.name}:{line_no}: landmark entry of the degraded crop of {item!r} at x{scale}: "
                            f"{status}")
        elif (lms is None) != bool(np.isnan(data).any()) or (lms is not None and
                                                             not np.allclose(data, lms, atol=1e-3)):
            problems.append(f"{path.name}:{line_no}: the degraded crop of {item!r} at x{scale} has other landmarks "
                            f"in the cache than the file records")
        out[(item, scale)] = lms
    pairs, side = record["pairs"], record["config"]["degrade_side"]
    probes = list(dict.fromkeys(pairs["b"] if side == "probe" else [*pairs["a"], *pairs["b"]]))
    for i, cond in enumerate(record["conditions"]):
        if cond["scale"] is None or any((p, cond["scale"]) not in out for p in probes):
            continue
        found = sum(out[(p, cond["scale"])] is not None for p in probes)
        want = {"on": "degraded", "detected": found, "not_found": len(probes) - found}
        if cond.get("alignment") != want:
            problems.append(f"conditions[{i}] ({condition_label(cond)}): alignment is {short(cond.get('alignment'))}"
                            f", but degradation.jsonl records {want}")
    report.checked["degraded-crop landmark entries"] = len(out)
    report.notes.append("--align-on degraded: the degraded crops were not made again; their landmarks are checked "
                        "against degradation.jsonl and the cache, not detected again")
    if problems:
        report.problems += cut(problems, "degraded alignment")
        return None
    return out


def _check_embeddings(record, cache, shas, landmarks, identity, report: RunValidation,
                      degraded: dict[tuple[str, int], Any] | None = None) -> None:
    from ..metrics.similarity import identity_to_clean, score_pairs

    cfg = record["config"]
    pairs = record["pairs"]
    side = cfg["degrade_side"]
    problems: list[str] = []
    loaded: dict[tuple[str, Any], dict[str, np.ndarray]] = {}

    def embeddings(restorer: str, scale: int | None, items: Iterable[str], label: str) -> dict[str, np.ndarray]:
        """Load (once) and check the entries of ``items`` in one condition; returns what could be loaded."""
        cond = ("none", None) if scale is None else (restorer, scale)
        table = loaded.setdefault(cond, {})
        missing, bad = [], []
        for item in dict.fromkeys(items):
            if item in table:
                continue
            if item not in shas or item not in landmarks or (degraded is not None and scale is not None
                                                             and (item, scale) not in degraded):
                missing.append((item, "?" * 64, "missing"))
                continue
            extra = {} if degraded is None or scale is None else {"degraded_landmarks": degraded[(item, scale)]}
            key = identity.embedding_key(shas[item], landmarks[item], restorer, scale, item=item, **extra)
            data, status = cache.check("embedding", key)
            if data is None:
                (missing if status == "missing" else bad).append((item, key, status))
            else:
                table[item] = data
        if missing:
            item, key, _ = missing[0]
            problems.append(f"{label}: {len(missing)} cached embedding(s) missing (e.g. {item!r}, entry "
                            f"embedding/{key[:2]}/{key}.npz); the cache was cleaned, or the run used other data or "
                            f"weights")
        for item, key, status in bad[:MAX_PROBLEMS_PER_CHECK]:
            problems.append(f"{label}: cached embedding of {item!r} (embedding/{key[:2]}/{key}.npz) is {status}")
        return table

    for i, cond in enumerate(record["conditions"]):
        label = f"conditions[{i}] ({condition_label(cond)})"
        scale, restorer = cond["scale"], cond["restorer"]
        if scale is not None and restorer not in identity.restorers:
            problems.append(f"{label}: restorer {restorer!r} is not in the config")
            continue
        before = len(problems)
        degraded_a = scale is not None and side == "both"
        emb_a = embeddings(restorer, scale if degraded_a else None, pairs["a"], label)
        emb_b = embeddings(restorer, scale, pairs["b"], label)
        if len(problems) > before or not cond.get("scores"):
            continue
        a = np.stack([emb_a[x] for x in pairs["a"]])
        b = np.stack([emb_b[x] for x in pairs["b"]])
        try:
            stored = np.asarray(cond["scores"]["score"], dtype=np.float64)
        except OverflowError:
            problems.append(f"{label}: a stored score is beyond float range")
            continue
        similarities = [cond["similarity"]] if cond.get("similarity") else ["cosine", "euclidean"]
        errors = {s: float(np.max(np.abs(score_pairs(s, a, b).astype(np.float64) - stored))) for s in similarities}
        best = min(errors, key=errors.get)
        if errors[best] > 1e-5:
            problems.append(f"{label}: the cached embeddings do not reproduce the stored scores ({best} similarity: "
                            f"largest difference {errors[best]:.3g})")
            continue
        ident = cond.get("identity")
        if ident and ident.get("n") and isinstance(ident.get("per_item"), dict):
            probes = list(ident["per_item"])
            clean = embeddings("none", None, probes, f"{label}.identity")
            emb = clean if scale is None else embeddings(restorer, scale, probes, f"{label}.identity")
            if len(problems) == before:
                compare(ident, identity_to_clean(clean, emb, probes), f"{label}.identity", problems,
                        rel=1e-5, abs_=1e-6)
    report.checked["cache entries"] = sum(len(t) for t in loaded.values())
    report.problems += cut(problems, "cache")

"""``eval --align-on degraded``: landmarks detected on each degraded crop (real MTCNN + dlib on a few LFW pairs)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.errors import ConfigError
from restorever.pipeline.evaluate import EvalConfig
from restorever.pipeline.identity import RunIdentity
from restorever.validate.runs import check_run
from restorever.validate.schema import RESULTS_SCHEMA, schema_problems

PAIRS = 6
SCALES = "4,16"


def _eval(lfw_root, cache, out, *extra):
    result = CliRunner().invoke(cli, ["eval", "--protocol", "lfw", "--data-root", str(lfw_root), "--limit-pairs",
                                      str(PAIRS), "--scales", SCALES, "--cache-dir", str(cache), "--out", str(out),
                                      "--no-progress", "--examples", "0", *map(str, extra)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text()), result.output


@pytest.fixture(scope="module")
def runs(lfw_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("align_on")
    cache = tmp / "cache"
    degraded, _ = _eval(lfw_root, cache, tmp / "degraded", "--align-on", "degraded")
    again, _ = _eval(lfw_root, cache, tmp / "again", "--align-on", "degraded")
    clean, _ = _eval(lfw_root, cache, tmp / "clean")
    return {"tmp": tmp, "cache": cache, "degraded": degraded, "again": again, "clean": clean}


def _cond(record, scale):
    return next(c for c in record["conditions"] if c["scale"] == scale)


def test_clean_numbers_and_keys_unchanged(runs):
    deg, clean = runs["degraded"], runs["clean"]
    assert _cond(deg, None)["scores"] == _cond(clean, None)["scores"]
    assert _cond(deg, None)["verification"] == _cond(clean, None)["verification"]
    assert "alignment" not in _cond(clean, 4) and "align_on" not in clean["cache"]["identity"]
    assert clean["config"]["align_on"] == "clean"
    # the degraded faces were embedded from other crops: their scores differ from the oracle alignment's
    assert _cond(deg, 16)["scores"]["score"] != _cond(clean, 16)["scores"]["score"]
    # a clean key is the same whichever align_on; a clean run's degraded keys are the recipe's without the new part
    from restorever.pipeline.cache import embedding_key, restored_key

    ident = RunIdentity.from_record(clean)
    other = RunIdentity(**{**ident.__dict__, "align_on": "degraded"})
    lms = np.arange(10, dtype=np.float32).reshape(5, 2)
    assert ident.embedding_key("ab" * 32, lms, "none", None) == other.embedding_key("ab" * 32, lms, "none", None)
    assert ident.embedding_key("ab" * 32, lms, "none", 4, item="x") == embedding_key(
        "ab" * 32, lms, recognizer_id=ident.recognizer, restorer_id=ident.restorers["none"],
        degradation=ident.degradation, scale=4, seed=ident.seed, item="x", device="cpu", versions=ident.key_versions)
    assert ident.restored_key("ab" * 32, lms, "none", 4, item="x") == restored_key(
        "ab" * 32, lms, restorer_id=ident.restorers["none"], degradation=ident.degradation, scale=4, seed=ident.seed,
        item="x", device="cpu", versions=ident.key_versions)
    # found and not-found landmarks are different entries, and a degraded run cannot build a key without them
    assert other.embedding_key("ab" * 32, lms, "none", 4, item="x", degraded_landmarks=None) != \
        other.embedding_key("ab" * 32, lms, "none", 4, item="x", degraded_landmarks=lms)
    with pytest.raises(ValueError, match="degraded_landmarks"):
        other.embedding_key("ab" * 32, lms, "none", 4, item="x")


def test_recorded_config_alignment_and_report(runs):
    deg = runs["degraded"]
    assert deg["config"]["align_on"] == "degraded" and deg["cache"]["identity"]["align_on"] == "degraded"
    assert schema_problems(deg, RESULTS_SCHEMA) == []
    for scale in (4, 16):
        block = _cond(deg, scale)["alignment"]
        assert block["on"] == "degraded" and block["detected"] + block["not_found"] == PAIRS
    assert "alignment" not in _cond(deg, None)
    md = (runs["tmp"] / "degraded" / "results.md").read_text()
    assert "detected on each degraded crop" in md and "none x4 " in md
    old = json.loads(json.dumps(runs["clean"]))
    del old["config"]["align_on"]  # a record made before the option: still valid
    assert schema_problems(old, RESULTS_SCHEMA) == []


def test_x4_mostly_detected_and_realigned_close_to_template(runs, lfw_root):
    import torch

    from restorever.alignment import estimate_similarity, get_template, transform_points
    from restorever.pipeline.cache import ArrayCache
    from restorever.pipeline.landmarks import align_items, landmark_stage
    from restorever.protocol import load_protocol

    assert _cond(runs["degraded"], 4)["alignment"]["detected"] >= PAIRS - 1
    template = np.asarray(get_template("ffhq_512").points, dtype=np.float64)
    rows = [json.loads(line) for line in (runs["tmp"] / "degraded" / "degradation.jsonl").read_text().splitlines()]
    assert all(len(r["degraded_sha256"]) == 64 for r in rows)
    found = {r["item"]: np.asarray(r["degraded_landmarks"], dtype=np.float64) for r in rows
             if r["scale"] == 4 and r["degraded_landmarks"] is not None}
    assert len(found) >= PAIRS - 1
    # where the clean landmarks put the face in the crop (the oracle): detection at x4 finds it within a few px
    protocol = load_protocol("lfw", data_root=str(lfw_root))
    items = sorted(found)
    info = landmark_stage(protocol, items, detector="mtcnn", device=torch.device("cpu"),
                          cache=ArrayCache(runs["cache"]), progress=False)
    oracle = align_items(protocol, items, info, torch.device("cpu"))[1].numpy()
    # (12 px of the 512 crop are 3 px of the x4 face's 128)
    for lms, clean_lms in zip((found[i] for i in items), oracle):
        assert np.linalg.norm(lms - clean_lms, axis=1).mean() < 12
        # aligning the degraded crop again moves its landmarks towards the template (least squares: never further)
        realigned = transform_points(lms[None], estimate_similarity(lms, template)).numpy().reshape(5, 2)
        assert ((realigned - template) ** 2).sum() <= ((lms - template) ** 2).sum() + 1e-6


def test_rerun_resumes_from_cache_with_same_numbers(runs):
    first, again = runs["degraded"], runs["again"]
    assert again["cache"]["misses"] == 0 and again["cache"]["hits"] > 0
    assert [c["scores"] for c in again["conditions"]] == [c["scores"] for c in first["conditions"]]
    assert [c.get("alignment") for c in again["conditions"]] == [c.get("alignment") for c in first["conditions"]]


def test_not_found_is_counted_and_embedded_without_clean_information(runs, lfw_root, monkeypatch):
    import restorever.detectors as detectors

    real = detectors.create_detector

    class NoFaceOnCrops:  # the real detector on photos; nothing found on a 512 degraded crop
        def __init__(self, inner):
            self.inner, self.batched = inner, False

        def detect(self, arrays):
            return [None] if arrays[0].shape[:2] == (512, 512) else self.inner.detect(arrays)

    monkeypatch.setattr(detectors, "create_detector", lambda *a, **k: NoFaceOnCrops(real(*a, **k)))
    out = runs["tmp"] / "nothing"
    record, _ = _eval(lfw_root, runs["cache"], out, "--align-on", "degraded", "--seed", 7)
    for scale in (4, 16):
        assert _cond(record, scale)["alignment"] == {"on": "degraded", "detected": 0, "not_found": PAIRS}
    rows = [json.loads(line) for line in (out / "degradation.jsonl").read_text().splitlines()]
    assert rows and all(r["degraded_landmarks"] is None for r in rows)
    # not found: the degraded crop as it is, embedded with the template's points
    import torch

    from restorever.alignment import get_template
    from restorever.degradation import Degradation
    from restorever.pipeline.landmarks import align_items, landmark_stage
    from restorever.pipeline.cache import ArrayCache
    from restorever.protocol import load_protocol
    from restorever.recognizers import create_recognizer

    protocol = load_protocol("lfw", data_root=str(lfw_root))
    probes = list(dict.fromkeys(record["pairs"]["b"]))[:2]
    info = landmark_stage(protocol, probes, detector="mtcnn", device=torch.device("cpu"),
                          cache=ArrayCache(runs["cache"]), progress=False)
    faces, crop_lms = align_items(protocol, probes, info, torch.device("cpu"))
    deg = Degradation("difface-test")
    degraded = deg.apply(faces, deg.sample_params(probes, 16, 7))
    points = torch.from_numpy(np.repeat(np.asarray(get_template("ffhq_512").points, np.float32)[None], 2, 0))
    recognizer = create_recognizer("dlib")
    emb = recognizer.embed(degraded, points).numpy()
    clean_emb = recognizer.embed(faces, crop_lms).numpy()
    stored = _cond(record, 16)["identity"]["per_item"]
    for j, item in enumerate(probes):
        cos = float(np.dot(emb[j], clean_emb[j]) / np.linalg.norm(emb[j]) / np.linalg.norm(clean_emb[j]))
        assert stored[item] == pytest.approx(cos, abs=1e-5)
    assert check_run(out).problems == []


def test_validate_checks_the_degraded_alignment(runs):
    run = runs["tmp"] / "degraded"
    report = check_run(run)
    assert report.problems == [], report.problems
    assert report.checked["degraded-crop landmark entries"] == 2 * PAIRS
    assert any("not detected again" in n for n in report.notes)
    tampered = runs["tmp"] / "tampered"
    tampered.mkdir()
    for f in run.iterdir():
        if f.is_file():
            (tampered / f.name).write_bytes(f.read_bytes())
    record = json.loads((tampered / "results.json").read_text())
    block = _cond(record, 4)["alignment"]
    block["detected"], block["not_found"] = block["detected"] - 1, block["not_found"] + 1
    (tampered / "results.json").write_text(json.dumps(record))
    assert any("alignment is" in p for p in check_run(tampered).problems)
    # the degraded-alignment check passing must not end the cache check: the embeddings are compared too (round 19)
    record = json.loads((run / "results.json").read_text())
    _cond(record, 4)["scores"]["score"][0] += 0.05
    (tampered / "results.json").write_text(json.dumps(record))
    assert any("x4" in p and "do not reproduce the stored scores" in p for p in check_run(tampered).problems)
    # one damaged line of degradation.jsonl is reported; its condition's counts, now unknowable, are not compared
    (tampered / "results.json").write_text((run / "results.json").read_text())
    lines = (run / "degradation.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    del first["degraded_sha256"]
    (tampered / "degradation.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    problems = check_run(tampered).problems
    assert any("degradation.jsonl:1: no degraded_sha256" in p for p in problems), problems
    assert not any("alignment is" in p for p in problems), problems


def test_dry_run_and_bad_values(runs, lfw_root):
    result = CliRunner().invoke(cli, ["eval", "--protocol", "lfw", "--data-root", str(lfw_root), "--limit-pairs",
                                      str(PAIRS), "--scales", SCALES, "--cache-dir", str(runs["cache"]),
                                      "--align-on", "degraded", "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "? cached" in result.output and "clean" in result.output
    assert f"{2 * PAIRS} cached" in result.output  # the clean condition's entries are known
    with pytest.raises(ConfigError, match="align_on"):
        EvalConfig(align_on="probe").validate()
    bad = CliRunner().invoke(cli, ["eval", "--protocol", "lfw-ident", "--align-on", "degraded"])
    assert bad.exit_code == 2 and "--align-on" in bad.output


def test_realigned_crops_stay_on_the_8_bit_grid():
    """A crop aligned again is a bilinear warp of the 8-bit degraded crop; it is rounded back to 8-bit levels, so
    every restorer gets 8-bit faces (as with the clean landmarks) and the ``none`` restorer, which passes its input
    through, equals the quantised output it stands for. A crop with no face found is kept bit for bit."""
    from types import SimpleNamespace

    import torch

    from restorever.alignment import get_template
    from restorever.pipeline.realign import DegradedLandmarks, realign_batch
    from restorever.pipeline.stages import restore_faces

    template = np.asarray(get_template("ffhq_512").points, dtype=np.float32)
    moved = template * 0.93 + np.float32([11.3, -7.6])  # a face slightly smaller and off the template
    ctx = SimpleNamespace(realigned={("a", 4): DegradedLandmarks("0" * 64, moved), ("b", 4): DegradedLandmarks(
        "1" * 64, None)}, device=torch.device("cpu"), protocol=None)
    degraded = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 512, 512))).float().div(255)
    faces, lms = realign_batch(ctx, ["a", "b"], degraded, 4)
    assert torch.equal(faces, faces.mul(255).round().div(255))
    assert not torch.equal(faces[0], degraded[0])
    assert torch.equal(faces[1], degraded[1]) and np.allclose(lms[1].numpy(), template)
    identity = SimpleNamespace(restore=lambda x, seeds: x)
    assert torch.equal(restore_faces(identity, faces, [0, 1]), faces)

"""Round 23, mutation testing twentieth pass: the tests that close the gaps its survivors showed in the code that
routes options and weights to the backends and plans a run (``--dry-run``: the protocol's defaults and alignment in
the plan's identity, its landmark lookups, its fallback points, the weights it lists)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from restorever.images import decode_tag
from restorever.pipeline.evaluate import EvalConfig
from restorever.pipeline.plan import describe_plan, plan_context

PROTOCOLS = Path(__file__).resolve().parents[1] / "protocols"
FACES = ("madonna/madonna_0001.jpg", "madonna/madonna_0005.jpg")


def _config(tmp_path: Path, faces_root: Path, protocol: str = "pairs-csv", **kwargs) -> EvalConfig:
    """A one-pair run (two real faces, the dlib recognizer, scale 8) with its own cache folder."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"{FACES[0]},{FACES[1]},1\n")
    return EvalConfig(protocol=protocol, pairs=str(pairs), data_root=str(faces_root), scales=[8],
                      cache_dir=str(tmp_path / "cache"), **kwargs)


def _cache_landmarks(ctx, faces_root: Path, name: str, points: np.ndarray) -> None:
    """Store ``points`` as the landmarks the run found for face ``name``, under the key the run would use."""
    data = (faces_root / name).read_bytes()
    key = ctx.identity.landmarks_key(hashlib.sha256(data).hexdigest(), decode_tag(data))
    ctx.cache.put("landmarks", key, points.astype(np.float32))


def _row(plan: str, label: str) -> tuple[str, str]:
    """``(cached, to compute)`` of a condition's line of the plan."""
    line = next(ln for ln in plan.splitlines() if ln.strip().startswith(label + " "))
    words = line.split()
    return words[-5], words[-3]


def test_the_plan_takes_the_protocols_seed_and_fit_as_the_run_does(tmp_path, faces_root):
    """A protocol whose seed is 7 and whose landmarks are fitted with LMedS: the plan's configuration and identity
    take both, as the run's do (``build_context``), so the plan looks up the run's cache keys. Reading the protocol's
    defaults or its fit from an empty spec (seed 0, least squares) survived the earlier lists, whose protocols use
    the code defaults."""
    from restorever.pipeline.evaluate import build_context

    protocol = tmp_path / "seven.yaml"
    protocol.write_text(f"include: {PROTOCOLS / 'pairs-csv.yaml'}\nprotocol: seven\nseed: 7\n"
                        "alignment: {landmarks: mtcnn, template: ffhq_512, select: nearest-centre, fit: lmeds}\n")
    config = _config(tmp_path, faces_root, str(protocol))
    ctx = plan_context(config)
    assert ctx.config.seed == 7 and ctx.config.sources["seed"] == "protocol"
    assert ctx.identity.seed == 7 and ctx.identity.alignment_fit == "lmeds"
    assert ctx.identity.as_record() == build_context(config).identity.as_record()


def test_a_cached_face_without_landmarks_is_planned_with_the_protocols_fallback_points(tmp_path, faces_root):
    """The run aligns an image where no face was found with the protocol's ``alignment.fallback_landmarks`` (lfw's
    rule), so the plan counts it as work, not as a face-less image it skips; without fallback points it is skipped.
    Reading the protocol's alignment as empty (``or {}`` made ``and {}``) survived."""
    nan = np.full((5, 2), np.nan)
    plans = {}
    for name, fallback in (("with", "fallback_landmarks: [[104.7, 113.5], [147.1, 112.5], [126.2, 137.7], "
                                     "[108.3, 159.0], [145.3, 158.3]]"), ("without", "")):
        protocol = tmp_path / f"{name}.yaml"
        protocol.write_text(f"include: {PROTOCOLS / 'pairs-csv.yaml'}\nprotocol: {name}\n"
                            f"alignment: {{landmarks: mtcnn, template: ffhq_512, select: nearest-centre"
                            f"{', ' + fallback if fallback else ''}}}\n")
        (tmp_path / name).mkdir()
        config = _config(tmp_path / name, faces_root, str(protocol))
        _cache_landmarks(plan_context(config), faces_root, FACES[0], nan)
        plans[name] = describe_plan(config)
    assert "no face found (cached): 0" in plans["with"] and "landmarks (mtcnn): 1 cached, 1 to detect" in plans["with"]
    assert _row(plans["with"], "clean") == ("0", "2") and _row(plans["with"], "none x8") == ("0", "1")
    assert "no face found (cached): 1" in plans["without"]
    assert _row(plans["without"], "clean") == ("0", "1") and _row(plans["without"], "none x8") == ("0", "1")


def test_a_scrfd_plan_with_its_model_file_finds_the_cached_landmarks(tmp_path, faces_root, monkeypatch):
    """With SCRFD's model file in place (its sha256 is part of every landmark key), the plan looks its landmarks up:
    two cached faces need no detection. Skipping the lookup when the file is there (``is None`` made ``is not None``)
    survived: the earlier lists plan MTCNN runs, and SCRFD ones only without the file."""
    from restorever import detectors

    monkeypatch.setattr(detectors, "detector_file_sha256", lambda name, model_path=None: "5c" * 32)
    config = _config(tmp_path, faces_root, detector="scrfd")
    ctx = plan_context(config)
    assert ctx.identity.detector == "scrfd" and ctx.identity.detector_file == "5c" * 32 and "scrfd" not in ctx.missing
    for name in FACES:
        _cache_landmarks(ctx, faces_root, name, np.array([[190, 240], [320, 240], [256, 300], [200, 370],
                                                          [310, 370]]))
    plan = describe_plan(config)
    assert "landmarks (scrfd): 2 cached, 0 to detect" in plan and "no face found (cached): 0" in plan
    assert _row(plan, "clean") == ("0", "2") and _row(plan, "none x8") == ("0", "1")

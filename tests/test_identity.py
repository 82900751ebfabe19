"""The run identity: one owner of every cache key and backend id, shared by verification and identification."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from restorever.pipeline.cache import STAGE_VERSIONS, current_key_versions
from restorever.pipeline.identity import RECORDED_BEFORE_VERSIONS, RunIdentity, conditions_of, device_kind

ITEM = "lfw-deepfunneled/Person/Person_0002.jpg"  # a protocol's item id: it seeds the degradation
LANDMARKS = np.array([[190.1, 240.5], [320.0, 240.25], [256.0, 320.0], [200.0, 380.0], [310.0, 380.0]], np.float32)


def _legacy_key(**parts) -> str:
    """The key recipe runs used before the identity existed (written out here, independently of the package)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


def _identity(device: str = "cpu", versions: dict | None = None) -> RunIdentity:
    return RunIdentity(detector="mtcnn", recognizer={"name": "dlib", "weights": [("model", "ab" * 32)], "flip": False},
                       restorers={"none": {"name": "none", "weights": [], "options": {}},
                                  "difface": {"name": "difface", "weights": [("unet", "cd" * 32)],
                                              "options": {"steps": 50}}},
                       degradation="difface-test", seed=3, device=device,
                       key_versions=current_key_versions() if versions is None else versions)


def test_cpu_keys_are_the_keys_earlier_runs_wrote():
    """Caches made before the identity existed stay valid on the CPU (known answers from the old recipe; degraded
    keys without the item id, as runs recorded before ``degraded_item`` 1 wrote them)."""
    ident, sha = _identity(versions={**current_key_versions(), "degraded_item": 0}), "f" * 64
    lm = np.round(LANDMARKS, 3).tolist()
    assert ident.landmarks_key(sha) == _legacy_key(stage="landmarks", v=STAGE_VERSIONS["landmarks"], image=sha,
                                                   detector="mtcnn")
    recognizer = {"name": "dlib", "weights": [["model", "ab" * 32]], "flip": False}
    restorer = {"name": "difface", "weights": [["unet", "cd" * 32]], "options": {"steps": 50}}
    assert ident.embedding_key(sha, LANDMARKS, "none", None) == _legacy_key(
        stage="embedding", v=STAGE_VERSIONS["embedding"], image=sha, landmarks=lm, template="ffhq_512",
        recognizer=recognizer, degradation=None, scale=None, seed=None, restorer=None)
    assert ident.embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM) == _legacy_key(
        stage="embedding", v=STAGE_VERSIONS["embedding"], image=sha, landmarks=lm, template="ffhq_512",
        recognizer=recognizer, degradation="difface-test", scale=8, seed=3, restorer=restorer)
    assert ident.restored_key(sha, LANDMARKS, "difface", 8, item=ITEM) == _legacy_key(
        stage="restored", v=STAGE_VERSIONS["restored"], image=sha, landmarks=lm, degradation="difface-test", scale=8,
        seed=3, restorer=restorer)


def test_degraded_keys_hold_the_item_id_that_seeds_the_degradation():
    """The same bytes under two names (two copies in one protocol, or another data root) shared one degraded entry,
    made with the first name's degradation: a rerun changed x16 AUC from 0.5 to 0.0 and validate then rejected the
    first run. From ``degraded_item`` 1 the item id is part of degraded keys (known answer); clean keys stay."""
    ident, sha = _identity(), "e" * 64
    lm = np.round(LANDMARKS, 3).tolist()
    restorer = {"name": "difface", "weights": [["unet", "cd" * 32]], "options": {"steps": 50}}
    assert current_key_versions()["degraded_item"] == 1 and RECORDED_BEFORE_VERSIONS["degraded_item"] == 0
    assert ident.restored_key(sha, LANDMARKS, "difface", 8, item=ITEM) == _legacy_key(
        stage="restored", v=STAGE_VERSIONS["restored"], image=sha, landmarks=lm, degradation="difface-test", scale=8,
        seed=3, restorer=restorer, item=ITEM)
    copy = "lfw-deepfunneled/Person/copy_of_0002.jpg"
    for key in ("restored_key", "embedding_key"):
        assert getattr(ident, key)(sha, LANDMARKS, "difface", 8, item=ITEM) != \
            getattr(ident, key)(sha, LANDMARKS, "difface", 8, item=copy)
    clean = ident.embedding_key(sha, LANDMARKS, "none", None)
    assert ident.embedding_key(sha, LANDMARKS, "none", None, item=ITEM) == clean
    assert ident.embedding_key(sha, LANDMARKS, "none", None, item=copy) == clean
    with pytest.raises(ValueError, match="needs its item id"):
        ident.embedding_key(sha, LANDMARKS, "difface", 8)


def test_device_kinds_keep_their_entries_apart():
    cpu, cuda, cuda1 = _identity("cpu"), _identity("cuda"), _identity(device_kind("cuda:1"))
    sha = "0" * 64
    for key in ("landmarks_key",):
        assert getattr(cpu, key)(sha) != getattr(cuda, key)(sha)
    for key in ("embedding_key", "restored_key"):
        assert getattr(cpu, key)(sha, LANDMARKS, "difface", 8, item=ITEM) != \
            getattr(cuda, key)(sha, LANDMARKS, "difface", 8, item=ITEM)
    # the GPU's index does not change numbers: cuda:0 and cuda:1 share entries
    assert cuda.embedding_key(sha, LANDMARKS, "none", None) == cuda1.embedding_key(sha, LANDMARKS, "none", None)


def test_device_degradation_path_version_is_in_degraded_keys_off_the_cpu_only():
    """A new device degradation path (batched steps 1-3) does not reuse degraded entries of the old one; CPU keys and
    clean (undegraded) keys stay as they were."""
    def versions(device_degradation):
        return {**current_key_versions(), "device_degradation": device_degradation}

    sha = "2" * 64
    keys = {"restored": lambda i: i.restored_key(sha, LANDMARKS, "difface", 8, item=ITEM),
            "degraded embedding": lambda i: i.embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM),
            "clean embedding": lambda i: i.embedding_key(sha, LANDMARKS, "none", None)}
    now = current_key_versions()["device_degradation"]
    before = {name: (f(_identity("cpu", versions(now))), f(_identity("cuda", versions(now))))
              for name, f in keys.items()}
    after = {name: (f(_identity("cpu", versions(now + 1))), f(_identity("cuda", versions(now + 1))))
             for name, f in keys.items()}
    for name in keys:
        assert after[name][0] == before[name][0], name  # the CPU: unchanged
    assert after["restored"][1] != before["restored"][1]
    assert after["degraded embedding"][1] != before["degraded embedding"][1]
    assert after["clean embedding"][1] == before["clean embedding"][1]


def test_device_degradation_versions_1_and_2_are_the_recipes_runs_wrote():
    """Known answers: version 1 keys (before 2026-12-05) had no device-path part, version 2 keys have
    ``degrade_path: 2`` beside the device kind."""
    sha, lm = "3" * 64, np.round(LANDMARKS, 3).tolist()
    restorer = {"name": "difface", "weights": [["unet", "cd" * 32]], "options": {"steps": 50}}
    parts = dict(stage="restored", v=1, image=sha, landmarks=lm, degradation="difface-test", scale=8, seed=3,
                 restorer=restorer, device="cuda")
    v1 = _identity("cuda", {**current_key_versions(), "device_degradation": 1, "degraded_item": 0})
    v2 = _identity("cuda", {**current_key_versions(), "device_degradation": 2, "degraded_item": 0})
    assert v1.restored_key(sha, LANDMARKS, "difface", 8, item=ITEM) == _legacy_key(**parts)
    assert v2.restored_key(sha, LANDMARKS, "difface", 8, item=ITEM) == _legacy_key(**parts, degrade_path=2)


def test_a_stage_version_changes_only_that_stage_s_keys():
    sha = "4" * 64
    base, bumped = _identity(), _identity(versions={**current_key_versions(), "embedding": 7})
    assert bumped.landmarks_key(sha) == base.landmarks_key(sha)
    assert bumped.restored_key(sha, LANDMARKS, "difface", 8, item=ITEM) == \
        base.restored_key(sha, LANDMARKS, "difface", 8, item=ITEM)
    assert bumped.embedding_key(sha, LANDMARKS, "none", None) != base.embedding_key(sha, LANDMARKS, "none", None)
    assert bumped.embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM) != \
        base.embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM)


def test_keys_depend_on_what_they_should_and_nothing_else():
    ident, sha = _identity(), "1" * 64
    base = ident.embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM)
    assert ident.embedding_key(sha, LANDMARKS + 0.0004, "difface", 8, item=ITEM) == base  # below the 1e-3 px rounding
    assert ident.embedding_key(sha, LANDMARKS + 0.01, "difface", 8, item=ITEM) != base
    assert ident.embedding_key(sha, LANDMARKS, "difface", 16, item=ITEM) != base
    assert ident.embedding_key(sha, LANDMARKS, "none", 8, item=ITEM) != base
    # the clean condition ignores restorer, degradation and seed
    other_seed = RunIdentity(**{**ident.__dict__, "seed": 99})
    assert other_seed.embedding_key(sha, LANDMARKS, "none", None) == ident.embedding_key(sha, LANDMARKS, "none", None)
    assert other_seed.embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM) != base
    with pytest.raises(KeyError, match="not part of this run"):
        ident.embedding_key(sha, LANDMARKS, "vqfr-v2", 8)


def test_identity_round_trips_through_results_json():
    ident = _identity("cuda")
    record = {"cache": {"identity": json.loads(json.dumps(ident.as_record()))}}
    back = RunIdentity.from_record(record)
    sha = "2" * 64
    assert back.embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM) == \
        ident.embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM)
    assert back.landmarks_key(sha) == ident.landmarks_key(sha)
    assert back.key_versions == current_key_versions()
    assert RunIdentity.from_record({"cache": {}}) is None


def test_a_record_keeps_its_key_versions_after_an_upgrade(monkeypatch):
    """The keys of a finished run are rebuilt with the versions it recorded, not the installed restorever's; a
    record from before the versions were stored reads as the recipes of that time."""
    from restorever.pipeline import cache

    ident, sha = _identity("cuda"), "5" * 64
    record = {"cache": {"identity": json.loads(json.dumps(ident.as_record()))}}
    old_key = ident.embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM)
    monkeypatch.setitem(cache.STAGE_VERSIONS, "embedding", cache.STAGE_VERSIONS["embedding"] + 1)
    monkeypatch.setattr(cache, "DEVICE_DEGRADATION_VERSION", cache.DEVICE_DEGRADATION_VERSION + 1)
    assert _identity("cuda").embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM) != old_key  # a new run: new keys
    assert RunIdentity.from_record(record).embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM) == old_key
    del record["cache"]["identity"]["key_versions"]
    assert RunIdentity.from_record(record).key_versions == RECORDED_BEFORE_VERSIONS


def test_conditions_clean_first_then_scales_by_restorer():
    assert conditions_of(["none", "difface"], [8, 16]) == [("none", None), ("none", 8), ("difface", 8),
                                                         ("none", 16), ("difface", 16)]


def test_identification_routes_restorer_options_like_verification(monkeypatch):
    """IdentConfig(restorers=['vqfr-v2', 'difface'], restorer_options={'steps': 50}) used to hand `steps` to VQFR
    (TypeError); identification now builds its context with the one builder verification uses."""
    import restorever.restorers as restorers
    from restorever.pipeline.evaluate import build_context
    from restorever.pipeline.identification import IdentConfig

    received = {}
    real_create = restorers.create_restorer

    def fake_create(name, *, weights=None, device="cpu", **options):
        received[name] = options
        return real_create("none")

    monkeypatch.setattr(restorers, "create_restorer", fake_create)
    config = IdentConfig(restorers=["vqfr-v2", "difface"], restorer_options={"steps": 50}, recognizer="dlib",
                         device="cpu", cache_dir=None)
    ctx = build_context(config, protocol=object())
    assert received == {"vqfr-v2": {}, "difface": {"steps": 50}}
    assert ctx.identity.restorers["difface"]["options"] == {"steps": 50}
    assert ctx.identity.restorers["vqfr-v2"]["options"] == {}


def test_recognizer_options_join_the_identity_only_when_given():
    """``--recognizer-option`` values become part of the recognizer's id (their embeddings are other entries); a run
    without them keeps the id, and so the embedding keys, it always had."""
    def identity(**recognizer_options):
        return RunIdentity.from_files(detector="mtcnn", recognizer_name="dlib",
                                      recognizer_files={"model": ("/w/dlib.dat", "ab" * 32)}, flip_test=False,
                                      restorer_files={"none": {}, "difface": {"unet": ("/w/u.pth", "cd" * 32)}},
                                      restorer_options={"difface": {"steps": 50}}, degradation="difface-test", seed=3,
                                      device="cpu", recognizer_options=recognizer_options)

    plain, fp32, compiled = identity(), identity(precision="fp32"), identity(precision="fp32", compile=True)
    sha = "2" * 64
    assert plain.embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM) == \
        _identity().embedding_key(sha, LANDMARKS, "difface", 8, item=ITEM)
    assert "options" not in plain.recognizer and fp32.recognizer["options"] == {"precision": "fp32"}
    keys = {ident.embedding_key(sha, LANDMARKS, "none", None) for ident in (plain, fp32, compiled)}
    assert len(keys) == 3
    # landmarks and restored faces do not depend on the recognizer
    assert plain.restored_key(sha, LANDMARKS, "difface", 8, item=ITEM) == \
        fp32.restored_key(sha, LANDMARKS, "difface", 8, item=ITEM)
    assert RunIdentity.from_record({"cache": {"identity": fp32.as_record()}}).as_record() == fp32.as_record()


def test_the_alignment_fit_is_part_of_keys_only_when_it_is_not_least_squares():
    """Faces fitted by LMEDS (a protocol's alignment.fit) are other crops: every embedding and restored key differs,
    while least-squares runs keep the keys they always had; the identity records the fit and reads it back."""
    sha = "5" * 64
    base = _identity()
    lmeds = RunIdentity(**{**base.__dict__, "alignment_fit": "lmeds"})
    assert base.alignment_fit == "least-squares"
    assert lmeds.embedding_key(sha, LANDMARKS, "none", None) != base.embedding_key(sha, LANDMARKS, "none", None)
    for key in ("embedding_key", "restored_key"):
        assert getattr(lmeds, key)(sha, LANDMARKS, "difface", 8, item=ITEM) != \
            getattr(base, key)(sha, LANDMARKS, "difface", 8, item=ITEM)
    assert lmeds.landmarks_key(sha) == base.landmarks_key(sha)  # detection does not depend on the fit
    back = RunIdentity.from_record({"cache": {"identity": lmeds.as_record()}})
    assert back.alignment_fit == "lmeds" and back.embedding_key(sha, LANDMARKS, "none", None) == \
        lmeds.embedding_key(sha, LANDMARKS, "none", None)
    older = lmeds.as_record()
    older.pop("alignment_fit")  # a record made before the fit was recorded: least squares
    assert RunIdentity.from_record({"cache": {"identity": older}}).alignment_fit == "least-squares"


def test_scrfd_identity_keys_hold_the_onnx_file_and_old_records_keep_theirs():
    """An SCRFD run's identity carries the sha256 of its det_10g.onnx and records it; a record made before
    ``detector_file`` version 1 rebuilds the keys it wrote (the detector's name only); MTCNN records are unchanged."""
    sha, onnx_a, onnx_b = "7" * 64, "a" * 64, "b" * 64
    ident = RunIdentity(detector="scrfd", recognizer={"name": "dlib", "weights": [], "flip": False},
                        detector_file=onnx_a)
    other = RunIdentity(detector="scrfd", recognizer={"name": "dlib", "weights": [], "flip": False},
                        detector_file=onnx_b)
    assert ident.landmarks_key(sha) != other.landmarks_key(sha)
    record = {"cache": {"identity": json.loads(json.dumps(ident.as_record()))}}
    assert record["cache"]["identity"]["detector_file"] == onnx_a
    assert RunIdentity.from_record(record).landmarks_key(sha) == ident.landmarks_key(sha)
    stored = record["cache"]["identity"]
    del stored["detector_file"]
    del stored["key_versions"]["detector_file"]  # a run finished before the file was part of the key
    assert RunIdentity.from_record(record).landmarks_key(sha) == _legacy_key(
        stage="landmarks", v=STAGE_VERSIONS["landmarks"], image=sha, detector="scrfd")
    assert "detector_file" not in _identity().as_record()  # MTCNN: the record it always had

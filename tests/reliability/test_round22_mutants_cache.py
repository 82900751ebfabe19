"""Round 22, eighteenth mutation pass (a second sample of run records, the cache and the validator's cache check):
one test per surviving mutant that was a test gap (docs/reliability.md, the round 22 eighteenth pass)."""
from __future__ import annotations

import copy
import io
import json
import logging
from dataclasses import replace

import numpy as np
import pytest

from restorever.pipeline.cache import DETECTOR_FILE_VERSION, ArrayCache, cache_key, current_key_versions
from restorever.pipeline.identity import RunIdentity
from restorever.pipeline.records import CacheRecord, ConditionRecord, IdentRunRecord, RecordError
from restorever.validate.common import RunValidation
from restorever.validate.run_cache import _note_key_versions, check_cache

from .test_records import IDENT_RECORD
from .test_validate import run_copy  # noqa: F401 - the fixture

# ------------------------------------------------------------------------------------------------------ records

VERIFICATION = {"accuracy_mean": 0.75, "accuracy_std": 0.25, "accuracy_sem": 0.25, "fold_accuracies": [0.5, 1.0],
                "thresholds": [0.3, 0.4], "auc": 0.8, "eer": 0.25,
                "tar_at_far": {"0.1": 0.5, "0.01": 0.5, "0.001": None, "0.0001": None},
                "roc": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.5, 1.0, 1.0]}, "n_pairs": 4}
CONDITION = {"restorer": "none", "degradation": "difface-test", "scale": 8, "degrade_side": "probe",
             "recognizer": "dlib", "similarity": "cosine", "verification": VERIFICATION,
             "identity": {"cosine_to_clean_mean": 0.9, "cosine_to_clean_std": 0.1, "cosine_to_clean_median": 0.9,
                          "l2_to_clean_mean": 0.4, "n": 2, "per_item": {"p1.jpg": 0.8, "p2.jpg": 1.0}},
             "scores": {"same": [1, 1, 0, 0], "fold": [0, 1, 0, 1], "score": [0.9, 0.8, 0.1, 0.2]}}
IDENTITY = {"detector": "mtcnn", "recognizer": {"name": "dlib", "weights": [], "flip": False},
            "restorers": {"none": {"name": "none", "weights": []}}, "degradation": "difface-test", "seed": 0,
            "device": "cpu", "key_versions": {"landmarks": 1, "restored": 1, "embedding": 2},
            "alignment_fit": "least-squares"}


def test_every_key_a_record_models_stays_out_of_extra():
    """``extra`` holds only the keys a record does not model; a modelled key there (its name changed in ``KEYS``)
    would be written back from the parsed copy, over a value the program changed since."""
    cond = ConditionRecord.from_json(copy.deepcopy(CONDITION), path="conditions[1]")
    assert cond.extra == {} and cond.verification.extra == {} and cond.identity.extra == {}
    assert cond.scores.extra == {}
    cache = CacheRecord.from_json({"hits": 1, "misses": 2, "corrupt": 0, "dir": "/c", "identity": IDENTITY})
    assert cache.extra == {} and cache.identity == IDENTITY
    cond.verification.accuracy_sem = 0.125
    assert cond.to_json()["verification"]["accuracy_sem"] == 0.125
    assert ConditionRecord.from_json({**CONDITION, "later": 1}).extra == {"later": 1}  # a key of a later version


def test_a_cache_block_with_its_identity_and_an_identification_filter_round_trip():
    """``cache.identity`` (the keys ``validate`` rebuilds) and ``attribute_filter`` are written back as read."""
    record = copy.deepcopy(IDENT_RECORD)
    record["cache"]["identity"] = copy.deepcopy(IDENTITY)
    record["attribute_filter"] = {"attributes": ["gender"], "threshold": 0.5, "age_tolerance": 0}
    parsed = IdentRunRecord.from_json(copy.deepcopy(record))
    assert parsed.attribute_filter == record["attribute_filter"]
    assert parsed.to_json() == record
    assert list(parsed.to_json()["cache"]) == ["hits", "misses", "corrupt", "dir", "identity"]


def test_is_clean_is_true_for_the_clean_condition_only():
    clean = ConditionRecord.from_json({**CONDITION, "degradation": None, "scale": None})
    degraded = ConditionRecord.from_json(copy.deepcopy(CONDITION))
    assert clean.is_clean and clean.label == "clean"
    assert not degraded.is_clean and degraded.label == "none x8"


@pytest.mark.parametrize("change, found", [
    (lambda c: c["scores"]["fold"].pop(), "scores: same has 4 entries, fold has 3 entries, score has 4 entries"),
    (lambda c: c["verification"].update(n_pairs=5), "scores: 4 pairs, but verification.n_pairs is 5"),
    (lambda c: c["verification"]["thresholds"].pop(), "verification: 2 fold accuracies but 1 thresholds"),
])
def test_a_condition_whose_lists_disagree_is_refused(change, found):
    """What the schema cannot say (per-pair lists of one length, a threshold per fold) is refused on reading, with
    the source and the condition's path; it is not parsed into a record whose figures index past a list."""
    bad = copy.deepcopy(CONDITION)
    change(bad)
    with pytest.raises(RecordError, match=r"run\.json: conditions\[1\]\.") as err:
        ConditionRecord.from_json(bad, source="run.json", path="conditions[1]")
    assert found in str(err.value)
    assert ConditionRecord.from_json(bad, check=False).scale == 8  # unchecked reads are the caller's choice


# -------------------------------------------------------------------------------------------------------- cache

def _rewrite(path, data, digest, key) -> None:
    """An entry file holding ``data`` under another entry's stored sha256 and key (what a bad copy or an edit
    leaves): the same bytes, read with another dtype or shape."""
    buf = io.BytesIO()
    np.savez(buf, data=data, sha256=np.array(digest), key=np.array(key))
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("reread", [lambda a: a.view(np.int32), lambda a: a.reshape(2, 5),
                                    lambda a: a.reshape(10)])
def test_an_entry_whose_bytes_are_read_as_another_dtype_or_shape_is_corrupt(tmp_path, reread):
    """The stored sha256 covers the array's dtype and shape as well as its bytes: five landmarks' float32 bytes
    stored as int32, or as a 2x5 array, are not the entry (a run would align to garbage)."""
    store, key = ArrayCache(tmp_path), cache_key(stage="landmarks", image="a")
    points = np.arange(10, dtype=np.float32).reshape(5, 2) + 0.5
    store.put("landmarks", key, points)
    path = store.path("landmarks", key)
    with np.load(path) as npz:
        digest, stored_key = str(npz["sha256"]), str(npz["key"])
    _rewrite(path, reread(points), digest, stored_key)
    assert np.asarray(reread(points)).tobytes() == points.tobytes()
    data, status = store.check("landmarks", key)
    assert data is None and status == "corrupt: content does not match its sha256"
    assert store.get("landmarks", key) is None and store.corrupt == 1 and not path.exists()


def test_an_entry_this_process_may_not_read_is_a_logged_miss_and_stays(tmp_path, monkeypatch, caplog):
    """A permission error (another user's entry on a shared cache) is a miss with a warning naming it unreadable;
    the entry is neither counted corrupt nor deleted. Root reads any mode, so the error is raised by ``np.load``."""
    store, key = ArrayCache(tmp_path), cache_key(stage="embedding", image="b")
    store.put("embedding", key, np.ones(4, np.float32))
    path = store.path("embedding", key)

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(np, "load", refused)
    with caplog.at_level(logging.WARNING, logger="restorever.pipeline.cache"):
        assert store.get("embedding", key) is None
    assert (store.hits, store.misses, store.corrupt) == (0, 1, 0) and path.exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"cache entry {path} is unreadable: Permission denied; recomputing it"]
    assert store.check("embedding", key) == (None, "unreadable: Permission denied")


def test_a_file_copied_to_another_entrys_name_names_both_entries(tmp_path):
    """A misplaced file (intact, under another key's name) is corrupt, and the status names the entry it holds and
    the one it should be by their first 12 hex digits, as the cache's other messages name an entry."""
    store, key, other = ArrayCache(tmp_path), cache_key(stage="embedding", image="c"), cache_key(stage="x")
    store.put("embedding", other, np.zeros(3, np.float32))
    store.path("embedding", key).parent.mkdir(parents=True, exist_ok=True)
    store.path("embedding", other).replace(store.path("embedding", key))
    assert store.check("embedding", key) == (
        None, f"corrupt: it holds the entry {other[:12]}..., not {key[:12]}... (a misplaced file)")


# ------------------------------------------------------------------------------------ the validator's cache check

def _copied(run_copy):
    """``(run, cache, record)`` of test_validate's private copy of the tiny reference run."""
    run, store = run_copy
    return run, store, json.loads((run / "results.json").read_text())


def test_a_record_without_image_hashes_is_checked_with_hashes_read_from_the_data(run_copy):
    """Records made before ``images_sha256`` was recorded: the cache check hashes the protocol's images itself
    and finds every entry (it must not stop at reading the config)."""
    run, store, record = _copied(run_copy)
    full = RunValidation(run)
    check_cache(record, full, store, run)
    del record["protocol"]["images_sha256"]
    report = RunValidation(run)
    check_cache(record, report, store, run)
    assert report.problems == [] and "image hashes read from the data (results.json does not record them)" in \
        report.notes
    assert report.checked == full.checked and report.checked["cache entries"] > 0


def test_a_malformed_failed_image_entry_of_a_skipped_run_is_reported(run_copy):
    """A run with skips: each ``failed_images`` entry must be an object naming its image; a string or an entry
    without an image is named as malformed (not taken as a skip backed by nothing to check)."""
    run, store, record = _copied(run_copy)
    record["protocol"]["skipped"] = [{"pair": 0, "reason": "no face found by mtcnn"}]
    record["protocol"]["failed_images"] = ["x.jpg", {"reason": "no face found by mtcnn"}]
    report = RunValidation(run)
    check_cache(record, report, store, run)
    assert [p for p in report.problems if "failed_images" in p] == [
        "protocol.failed_images: malformed entry 'x.jpg'",
        "protocol.failed_images: malformed entry {'reason': 'no face found by mtcnn'}"]
    assert report.checked["skips checked"] == 0


def test_an_scrfd_run_with_an_older_detector_file_recipe_gets_the_recompute_note(run_copy):
    """Only SCRFD landmark keys hold the detector file: an SCRFD run recorded before that part is told a new eval
    recomputes its landmarks; an MTCNN run of the same versions is not."""
    run, _, record = _copied(run_copy)
    recorded = RunIdentity.from_record(record)
    old = {**current_key_versions(), "detector_file": 0}
    for detector, noted in (("scrfd", True), ("mtcnn", False)):
        report = RunValidation(run)
        _note_key_versions(replace(recorded, detector=detector, key_versions=old), report)
        assert any(f"detector_file 0 -> {DETECTOR_FILE_VERSION}" in n for n in report.notes) is noted, report.notes

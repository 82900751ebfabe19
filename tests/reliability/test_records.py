"""The results schemas (files shipped in the package) and the typed records built on them: the schemas are valid
Draft 2020-12, a real run's results.json validates and round-trips through its record, and a broken record is
refused with the path of what broke."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from restorever.pipeline.record_schema import SCHEMA_FILES, definition, load_schema, schema_problems
from restorever.pipeline.records import (ConditionRecord, IdentConditionRecord, IdentityToClean, IdentRunRecord,
                                         RecordError, RunRecord, VerificationMetrics, record_from_json)
from restorever.reports.results import load_record, load_results

jsonschema = pytest.importorskip("jsonschema")

def _retrieval(rank1: float) -> dict:
    return {"rank1": rank1, "rank5": 1.0, "rank10": 1.0, "map": rank1, "n_probes": 4, "cmc": [rank1, 1.0],
            "mate_filtered_out": 0.0, "gallery_fraction": 1.0}


IDENT_RECORD = {
    "restorever_version": "0", "created": "2026-01-01T00:00:00+00:00",
    "config": {"protocol": "lfw-ident", "restorers": ["none"], "recognizer": "dlib", "scales": [16], "seed": 0},
    "environment": {"python": "3", "torch": "2", "cuda": None, "device": "cpu"}, "weights": {},
    "protocol": {"name": "lfw-ident", "task": "identification", "skipped": []},
    "index": {"kind": "flat"}, "attribute_model": None, "attribute_filter": None,
    "cache": {"hits": 1, "misses": 2, "corrupt": 0, "dir": "/c"}, "timings": {"total_s": 1.0},
    "conditions": [{"restorer": "none", "degradation": None, "scale": None, "degrade_side": "probe",
                    "recognizer": "dlib", "retrieval": _retrieval(0.9), "attributes": {}},
                   {"restorer": "none", "degradation": "difface-test", "scale": 16, "degrade_side": "probe",
                    "recognizer": "dlib", "retrieval": _retrieval(0.5), "attributes": {}}],
}


@pytest.fixture(scope="module")
def results(reference_run) -> dict:
    """The results.json of the tiny real run (clean and none x8, dlib)."""
    return json.loads((reference_run[2] / "results.json").read_text())


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_schema_files_are_valid_draft_2020_12(name):
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    for part in schema["$defs"]:  # every definition is usable on its own (records check their part)
        jsonschema.Draft202012Validator.check_schema(definition(name, part))


def test_identification_schema_shares_the_header_definitions():
    results, ident = load_schema("results")["$defs"], load_schema("ident-results")["$defs"]
    for part in ("name", "sha256", "environment", "weights", "weight", "cache"):
        assert ident[part] == results[part], part


def test_a_real_results_json_validates_and_round_trips(results):
    assert schema_problems(results) == []
    assert list(jsonschema.Draft202012Validator(load_schema("results")).iter_errors(results)) == []
    run = RunRecord.from_json(results)
    assert json.dumps(run.to_json()) == json.dumps(results)  # same keys, same order, same values
    assert RunRecord.from_json(run.to_json()) == run
    assert [c.label for c in run.conditions] == ["clean", "none x8"]
    assert run.condition("none", 8).verification.n_pairs == run.protocol.pairs
    assert "comparison_to_clean" in run.condition("none", 8).extra  # added by write_run, kept as is
    for part in run.conditions:
        assert ConditionRecord.from_json(part.to_json()) == part


def test_the_loaders_give_the_same_record(results, reference_run):
    assert load_results(reference_run[2]) == results
    assert load_record(reference_run[2]) == RunRecord.from_json(results)


MUTATIONS = {
    "missing-protocol": (lambda r: r.pop("protocol"), "(top level): missing key 'protocol'"),
    "accuracy-above-1": (lambda r: r["conditions"][1]["verification"]["fold_accuracies"].__setitem__(0, 1.5),
                         "conditions[1].verification.fold_accuracies[0]: 1.5 is above the maximum 1"),
    "scale-string": (lambda r: r["conditions"][1].update(scale="x8"),
                     "conditions[1].scale: expected integer or null, got str 'x8'"),
    "side": (lambda r: r["conditions"][0].update(degrade_side="left"),
             "conditions[0].degrade_side: expected one of ['probe', 'both'], got 'left'"),
    "label-2": (lambda r: r["conditions"][0]["scores"]["same"].__setitem__(0, 2),
                "conditions[0].scores.same[0]: expected one of [0, 1], got 2"),
    "sha256": (lambda r: r["protocol"].update(pairs_sha256="xyz"), "protocol.pairs_sha256: 'xyz' does not match"),
    "empty-name": (lambda r: r["config"].update(recognizer=""), "config.recognizer: empty string"),
    "no-conditions": (lambda r: r.update(conditions=[]), "conditions: needs at least 1 item(s), has 0"),
    "negative-hits": (lambda r: r["cache"].update(hits=-1), "cache.hits: -1 is below the minimum 0"),
    # the keys DESIGN.md's results.json requires, which the schema once let a file leave out
    "no-cuda": (lambda r: r["environment"].pop("cuda"), "environment: missing key 'cuda'"),
    "no-sem": (lambda r: r["conditions"][1]["verification"].pop("accuracy_sem"),
               "conditions[1].verification: missing key 'accuracy_sem'"),
    "no-far-1e-3": (lambda r: r["conditions"][0]["verification"]["tar_at_far"].pop("0.001"),
                    "conditions[0].verification.tar_at_far: missing key '0.001'"),
    "no-identity": (lambda r: r["conditions"][1].pop("identity"), "conditions[1]: missing key 'identity'"),
    "created-not-iso": (lambda r: r.update(created="06/12/2026"), "created: '06/12/2026' does not match"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_mutated_record_is_refused_with_its_path(results, name):
    mutate, expected = MUTATIONS[name]
    record = copy.deepcopy(results)
    mutate(record)
    problems = schema_problems(record)
    assert any(p.startswith(expected) for p in problems), problems
    with pytest.raises(RecordError, match="run `restorever validate`") as caught:
        RunRecord.from_json(record, source="somewhere/results.json")
    assert str(caught.value).startswith("somewhere/results.json: ")
    assert expected in str(caught.value) or "more problem(s)" in str(caught.value)


def test_a_part_is_checked_with_its_own_definition(results):
    cond = copy.deepcopy(results["conditions"][1])
    cond["verification"]["auc"] = "high"
    with pytest.raises(RecordError, match=r"^r\.json: conditions\[1\]\.verification\.auc: expected number or null"):
        ConditionRecord.from_json(cond, source="r.json", path="conditions[1]")
    with pytest.raises(RecordError, match="missing key 'accuracy_mean'"):
        VerificationMetrics.from_json({})


def test_optional_keys_stay_out_when_absent():
    ident = IdentityToClean.from_json({"cosine_to_clean_mean": None, "n": 0})
    assert ident.to_json() == {"cosine_to_clean_mean": None, "n": 0}


def test_identification_records_round_trip_and_are_checked():
    run = record_from_json(IDENT_RECORD)
    assert isinstance(run, IdentRunRecord) and run.conditions[1].label == "none x16"
    assert json.dumps(run.to_json()) == json.dumps(IDENT_RECORD)
    assert IdentRunRecord.from_json(run.to_json()) == run
    broken = copy.deepcopy(IDENT_RECORD)
    del broken["conditions"][0]["retrieval"]
    with pytest.raises(RecordError, match=r"conditions\[0\]: missing key 'retrieval'"):
        record_from_json(broken)
    with pytest.raises(RecordError, match="expected a JSON object"):
        record_from_json([1])
    assert IdentConditionRecord.from_json(IDENT_RECORD["conditions"][0]).retrieval == _retrieval(0.9)


def test_import_restorever_does_not_import_jsonschema():
    code = "import sys, restorever, restorever.validate; print('jsonschema' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"

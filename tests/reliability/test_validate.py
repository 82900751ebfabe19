"""``restorever validate``: a real run is valid; every kind of tampering with results.json, degradation.jsonl or the
cache is reported; protocol files are checked without data."""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.validate import check_run, validate_protocol_file, validate_protocols



def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_real_run_is_valid_and_every_cache_entry_is_checked(reference_run):
    _, ref_entries, out, cache = reference_run
    report = check_run(out)
    assert report.ok, report.problems
    # the cache keys validate rebuilds (restorever.pipeline.cache.landmarks_key / embedding_key) are exactly the
    # entries the run wrote: a drift between them and evaluate.py would show here
    assert report.checked["landmark entries"] + report.checked["cache entries"] == len(ref_entries)
    record = json.loads((out / "results.json").read_text())
    assert report.checked["metrics recomputed"] >= len(record["conditions"])
    assert report.checked["degradation records"] == len(set(record["pairs"]["b"]))
    result = _invoke("validate", out)
    assert result.exit_code == 0 and "valid" in result.output


def test_a_run_stays_valid_after_an_upgrade_changes_a_key_recipe(reference_run, monkeypatch):
    """A run made before a stage's key version was bumped is checked with the versions it recorded (its entries are
    all found) and the report says that a new eval would recompute them."""
    from restorever.pipeline import cache

    out = reference_run[2]
    before = check_run(out)
    version = cache.STAGE_VERSIONS["embedding"]
    monkeypatch.setitem(cache.STAGE_VERSIONS, "embedding", version + 1)
    report = check_run(out)
    assert report.ok, report.problems
    assert report.checked["cache entries"] == before.checked["cache entries"] > 0
    assert any(f"embedding {version} -> {version + 1}" in n and "recomputes" in n for n in report.notes), report.notes
    assert not any("recipe versions" in n for n in before.notes)


def test_cli_without_cache_and_on_a_folder_that_is_not_a_run(reference_run, tmp_path):
    out = reference_run[2]
    result = _invoke("validate", out, "--no-cache")
    assert result.exit_code == 0 and "cache check skipped" in result.output
    result = _invoke("validate", tmp_path)
    assert result.exit_code == 2 and "results.json: missing" in result.output
    assert "error: 1 of 1 run(s) invalid" in result.output


def test_identification_record_gets_its_own_schema(tmp_path):
    record = {"restorever_version": "0", "created": "2026-01-01T00:00:00+00:00",
              "config": {"protocol": "lfw-ident", "restorers": ["none"], "recognizer": "dlib", "scales": [], "seed": 0},
              "environment": {"python": "3", "torch": "2", "cuda": None, "device": "cpu"}, "weights": {},
              "protocol": {"name": "lfw-ident", "task": "identification"},
              "conditions": [{"restorer": "none", "scale": None, "recognizer": "dlib", "retrieval": {
                  "rank1": 0.9, "rank5": 1.0, "rank10": 1.0, "map": 0.95, "n_probes": 10, "cmc": [0.9, 1.0],
                  "mate_filtered_out": 0.0, "gallery_fraction": 1.0}}]}
    (tmp_path / "results.json").write_text(json.dumps(record))
    report = check_run(tmp_path)
    assert report.ok and any("identification run" in n for n in report.notes)
    # the retrieval block's rates are required, fractions or null (no probe); a filtered block is checked alike
    retrieval = record["conditions"][0]["retrieval"]
    for edit, found in ((lambda r: r.pop("rank5"), "missing key 'rank5'"), (lambda r: r.update(map=1.5), "map"),
                        (lambda r: r.update(filtered={"rank1": 0.5}), "filtered")):
        bad = copy.deepcopy(record)
        edit(bad["conditions"][0]["retrieval"])
        (tmp_path / "results.json").write_text(json.dumps(bad))
        assert any(found in p for p in check_run(tmp_path).problems), found
    retrieval.update(rank1=None, rank5=None, rank10=None, map=None, n_probes=0, cmc=[None, None])
    (tmp_path / "results.json").write_text(json.dumps(record))
    assert check_run(tmp_path).ok
    del record["conditions"][0]["retrieval"]
    (tmp_path / "results.json").write_text(json.dumps(record))
    assert any("missing key 'retrieval'" in p for p in check_run(tmp_path).problems)


@pytest.fixture
def run_copy(reference_run, tmp_path):
    """A private copy of the reference run and its cache (results.json pointing at the copy)."""
    _, _, out, cache = reference_run
    run, store = tmp_path / "run", tmp_path / "cache"
    shutil.copytree(out, run)
    shutil.copytree(cache, store)
    record = json.loads((run / "results.json").read_text())
    record["cache"]["dir"] = str(store)
    (run / "results.json").write_text(json.dumps(record, indent=1))
    return run, store


def _edit(run: Path, change) -> None:
    record = json.loads((run / "results.json").read_text())
    change(record)
    (run / "results.json").write_text(json.dumps(record, indent=1))


def _first_embedding(store: Path) -> Path:
    return sorted((store / "embedding").rglob("*.npz"))[0]


def _set(path: list, value):
    def change(record):
        node = record
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(node[path[-1]]) if callable(value) else value

    return change


def _move_roc_point(record):
    """Move one stored ROC point a little to the left (the curve stays non-decreasing, but the point is off the ROC)."""
    roc = record["conditions"][1]["verification"]["roc"]
    k = next(k for k in range(1, len(roc["fpr"])) if roc["fpr"][k] > roc["fpr"][k - 1] + 1e-6)
    roc["fpr"][k] -= 1e-7


TAMPERING = {
    "accuracy": (lambda run, store: _edit(run, _set(["conditions", 0, "verification", "accuracy_mean"],
                                                    lambda v: v - 0.01)), "accuracy_mean: stored"),
    "one-score": (lambda run, store: _edit(run, _set(["conditions", 1, "scores", "score", 0], lambda v: v + 0.05)),
                  "do not reproduce the stored scores"),
    "labels": (lambda run, store: _edit(run, lambda r: [c["scores"]["same"].reverse() for c in r["conditions"]]),
               "differ from the recomputation"),
    "nan": (lambda run, store: (run / "results.json").write_text(re.sub(
        r'"accuracy_std": [-0-9.e]+', '"accuracy_std": NaN', (run / "results.json").read_text(), count=1)),
        "NaN is not valid JSON"),
    "condition-dropped": (lambda run, store: _edit(run, lambda r: r["conditions"].pop()), "do not match the config"),
    "schema": (lambda run, store: _edit(run, lambda r: r.pop("protocol")), "missing key 'protocol'"),
    "fold-count": (lambda run, store: _edit(run, _set(["protocol", "folds"], 3)), "protocol.folds 3"),
    "accuracy-out-of-range": (lambda run, store: _edit(run, _set(["conditions", 0, "verification",
                                                                  "fold_accuracies", 0], 1.5)), "above the maximum"),
    "identity": (lambda run, store: _edit(run, _set(["conditions", 1, "identity", "cosine_to_clean_mean"],
                                                    lambda v: v - 0.1)), "identity.cosine_to_clean_mean"),
    "comparison-value": (lambda run, store: _edit(run, _set(["conditions", 1, "comparison_to_clean", "ci_low"],
                                                            lambda v: v - 0.05)), "comparison_to_clean.ci_low"),
    "comparison-shape": (lambda run, store: _edit(run, _set(["conditions", 1, "comparison_to_clean", "mcnemar"], 3)),
                         "comparison_to_clean.mcnemar"),
    "roc-point": (lambda run, store: _edit(run, _move_roc_point), "verification.roc.fpr: 1 of"),
    "roc-point-older-record": (lambda run, store: _edit(run, lambda r: (_move_roc_point(r), [
        c["verification"].pop("roc_thinning") for c in r["conditions"]])),
        "points are not on the ROC of the stored scores"),
    "weights-hash": (lambda run, store: _edit(run, lambda r: [w.update(sha256="0" * 64)
                                                              for w in r["weights"].values()]),
                     "does not match the config and the weights table"),
    "cache-entry-deleted": (lambda run, store: _first_embedding(store).unlink(), "cached embedding(s) missing"),
    "cache-entry-corrupt": (lambda run, store: _corrupt(_first_embedding(store)), "is corrupt"),
    "landmarks-deleted": (lambda run, store: sorted((store / "landmarks").rglob("*.npz"))[0].unlink(),
                          "cache entry missing"),
    "degradation-params": (lambda run, store: _edit_jsonl(run / "degradation.jsonl"), "differ from what restorever"),
}


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_jsonl(path: Path) -> None:
    lines = path.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["sigma_x"] += 2.0
    lines[0] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_is_reported(run_copy, name):
    run, store = run_copy
    assert check_run(run).ok  # the copy is valid before the change
    tamper, expected = TAMPERING[name]
    tamper(run, store)
    problems = check_run(run).problems
    assert any(expected in p for p in problems), problems
    result = _invoke("validate", run)
    assert result.exit_code == 2 and expected in result.output


def test_validation_never_modifies_the_cache(run_copy):
    run, store = run_copy
    _corrupt(_first_embedding(store))
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    check_run(run)
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------------------------------ protocols

def test_shipped_protocols_are_valid():
    problems, _ = validate_protocols()
    assert problems and not any(problems.values()), problems
    result = _invoke("validate", "--protocols")
    assert result.exit_code == 0, result.output


BASE = "protocol: p\nversion: 1\ndataset: {format: lfw-pairs, pairs: pairs.txt}\n"


@pytest.mark.parametrize("text, expected", [
    ("protocol: p\ndataset: {format: lfw-pairs, pairs: /etc/pairs.txt}\n", "must be relative"),
    ("protocol: p\ndataset: {format: lfw-pairs, pairs: ../pairs.txt}\n", "must not contain '..'"),
    ("protocol: p\ndataset: {format: lfw-pairs, pairs: [a.txt, ~/b.txt]}\n", "must be relative"),
    (BASE.replace("pairs.txt}", "pairs.txt, images: [../lfw]}"), "dataset.images entry"),
    (BASE.replace("pairs.txt}", "pairs.txt, download: [{filename: ../x.tgz, url: 'http://h/x'}]}"),
     "plain file name"),
    (BASE.replace("pairs.txt}", "pairs.txt, download: [{filename: x.tgz, url: 'file:///etc/passwd'}]}"),
     "http(s) URL"),
    (BASE.replace("pairs.txt}", "pairs.txt, download: [{filename: x, url: 'https://h/x', sha256: abc}]}"),
     "64 lower-case hex"),
    (BASE + "folds: 0\n", "folds must be a positive integer"),
    (BASE + "version: one\n", "version must be a positive integer"),
    (BASE + "metrics: [{name: accuracy}]\n", "higher_is_better"),
    (BASE + "alignment: {fallback_landmarks: [[1, 2], [3, 4]]}\n", "five [x, y]"),
    (BASE + "scoring: {similarity: dot}\n", "scoring.similarity"),
    (BASE + "alignment: {select: largest}\n", "alignment.select must be nearest-centre"),
    ("protocol: p\ndataset: {format: nope}\n", "dataset.format must be one of"),
    ("protocol: p\n", "missing key 'dataset'"),
    ("protocol: p\ninclude: p.yaml\n", "include cycle"),
    ("protocol: p\ninclude: 5\n", "include must name one YAML file"),
    ("protocol: p\ninclude: missing.yaml\n", "does not exist"),
    ("protocol: p\ndataset: !!python/object/apply:os.system [echo]\n", "invalid YAML"),
    ("[" * 1000 + "]" * 1000, "nested too deeply"),
    (b"protocol: \xff\n", "UTF-8"),
    ("protocol: ../evil\ndataset: {format: pairs-csv}\n", "protocol must be a name"),
])
def test_bad_protocol_files_are_reported(tmp_path, text, expected):
    path = tmp_path / "p.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    problems = validate_protocol_file(path)
    assert any(expected in p for p in problems), problems
    result = _invoke("validate", "--protocols", path)
    assert result.exit_code == 2 and expected in result.output


def test_protocol_notes_do_not_fail(tmp_path):
    path = tmp_path / "other-name.yaml"
    path.write_text(BASE + "colour: blue\n")
    notes: list[str] = []
    assert validate_protocol_file(path, notes=notes) == []
    assert any("differs from the file name" in n for n in notes) and any("unknown key" in n for n in notes)


def test_include_by_name_is_resolved_as_the_loader_resolves_it(tmp_path, monkeypatch):
    """`include: lfw` (the docs' own lfw-seed7.yaml) was "included file lfw does not exist" for validate --protocols,
    and a file with `include: lfw-ident` was neither a verification nor an identification protocol for eval's
    routing (two contradicting errors): both joined the name to the file's folder."""
    from restorever.protocol_specs import raw_format
    from restorever.formats.lfw_ident import is_ident_protocol

    seed7 = tmp_path / "lfw-seed7.yaml"
    seed7.write_text("include: lfw\nprotocol: lfw-seed7\nseed: 7\n")
    assert validate_protocol_file(seed7) == []
    mine = tmp_path / "myident.yaml"
    mine.write_text("include: lfw-ident\nprotocol: myident\n")
    assert raw_format(str(mine)) == "lfw-ident" and is_ident_protocol(str(mine))
    monkeypatch.setenv("RESTOREVER_PROTOCOL_PATH", str(tmp_path))
    assert is_ident_protocol("myident") and not is_ident_protocol("lfw-seed7")


def test_validate_protocols_takes_a_protocol_name(tmp_path, monkeypatch):
    """`validate --protocols myfaces` said "no such file", while eval takes the name."""
    (tmp_path / "myfaces.yaml").write_text("include: pairs-csv\nprotocol: myfaces\nseed: 3\n")
    monkeypatch.setenv("RESTOREVER_PROTOCOL_PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    result = _invoke("validate", "--protocols", "myfaces", "lfw")
    assert result.exit_code == 0 and f"{tmp_path / 'myfaces.yaml'}: valid" in result.output
    assert "lfw.yaml: valid" in result.output
    assert "nosuch: no such file" in _invoke("validate", "--protocols", "nosuch").output


def test_a_protocol_yaml_given_by_a_relative_path_is_checked_from_another_folder(run_copy, tmp_path, monkeypatch):
    """`restorever eval --protocol my.yaml` from the project folder, then `restorever validate` from elsewhere: the
    data root and pairs file were found from the run's start folder but the protocol YAML was not, so the check of
    the pairs against the protocol became a note ("its files cannot be read") instead of being made."""
    from tests.conftest import REPO

    run, _ = run_copy
    (tmp_path / "my.yaml").write_text((REPO / "protocols" / "pairs-csv.yaml").read_text())
    _edit(run, lambda r: r["config"].update(protocol="my.yaml", out="run"))  # run = tmp_path/run, started in tmp_path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    report = check_run(run)
    assert not any("labels not checked" in n for n in report.notes), report.notes
    assert report.checked["pairs checked against the protocol"] > 0

"""Round 22, fifteenth mutation pass: the tests that close the gaps its sampled mutants showed in run validation
(``validate/runs.py``, ``validate/common.py``, ``validate/protocols.py``), the degradation pipeline and its batched
path, ``restore.json`` records and the identification / insightface ``.bin`` readers (docs/reliability.md, round
22, fifteenth pass). Each test fails on its mutant and passes on the code."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from restorever.validate import check_run

from .test_validate import _edit


@pytest.fixture
def run_dir(reference_run, tmp_path) -> Path:
    """A private copy of the reference run's folder (its cache is not checked by these tests)."""
    return shutil.copytree(reference_run[2], tmp_path / "run")


def _problems(run: Path) -> list[str]:
    return check_run(run, check_cache=False).problems


# ------------------------------------------------------------------------------------------- validate/runs.py
def test_requested_pairs_must_equal_evaluated_plus_skipped(run_dir):
    """``pairs_requested`` one above the evaluated pairs with nothing skipped: a pair was dropped unrecorded."""
    run = run_dir
    assert _problems(run) == []
    record = json.loads((run / "results.json").read_text())
    requested = record["protocol"].get("pairs_requested", record["protocol"]["pairs"])

    def change(r):
        r["protocol"]["pairs_requested"] = requested + 1
    _edit(run, change)
    assert any("pairs requested" in p and "!= 0 skipped" in p for p in _problems(run))


@pytest.mark.parametrize("field, value", [("degradation", None), ("scale", None)])
def test_a_degraded_condition_needs_both_scale_and_degradation(run_dir, field, value):
    """A degraded condition whose degradation is dropped, or made clean while keeping its degradation."""
    run = run_dir
    _edit(run, lambda r: r["conditions"][1].update({field: value}))
    problems = _problems(run)
    assert any("needs both a scale and a degradation" in p for p in problems), problems


def test_an_older_roc_must_run_from_fpr_0_to_the_corner(run_dir):
    """A record without ``roc_thinning`` (older) whose ROC lost its last point: every point left is a vertex of the
    scores' ROC, but the curve stops short of (1, 1)."""
    run = run_dir

    def change(r):
        for cond in r["conditions"]:
            cond["verification"].pop("roc_thinning")
        roc = r["conditions"][1]["verification"]["roc"]
        assert (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0) and len(roc["fpr"]) > 2
        roc["fpr"].pop()
        roc["tpr"].pop()
    _edit(run, change)
    problems = _problems(run)
    assert any("does not run from FPR 0 to (1, 1)" in p for p in problems), problems


def test_an_unreadable_results_file_is_a_problem(run_dir, monkeypatch):
    """results.json that exists but cannot be read (a permission error; root reads anything, so it is injected)."""
    run = run_dir
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "results.json":
            raise PermissionError(13, "Permission denied")
        return real(self)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    report = check_run(run, check_cache=False)
    assert not report.ok and any("cannot be read (Permission denied)" in p for p in report.problems)


def test_an_output_file_above_the_size_limit_is_a_problem(run_dir):
    """results.md grown (sparse) past the 1 GiB limit: refused unread, and a problem, not a silent skip."""
    from restorever.validate.common import MAX_RESULTS_BYTES

    run = run_dir
    assert "results.md" in json.loads((run / "results.json").read_text())["outputs"]
    os.truncate(run / "results.md", MAX_RESULTS_BYTES + 1)
    problems = _problems(run)
    assert any(p.startswith("results.md: larger than") for p in problems), problems


def _ident_record(**retrieval) -> dict:
    rates = {"rank1": 0.9, "rank5": 0.95, "rank10": 1.0, "map": 0.95, "n_probes": 10, "cmc": [0.9, 0.92],
             "mate_filtered_out": 0.0, "gallery_fraction": 1.0, **retrieval}
    return {"restorever_version": "0", "created": "2026-01-01T00:00:00+00:00",
            "config": {"protocol": "lfw-ident", "restorers": ["none"], "recognizer": "dlib", "scales": [], "seed": 0},
            "environment": {"python": "3", "torch": "2", "cuda": None, "device": "cpu"}, "weights": {},
            "protocol": {"name": "lfw-ident", "task": "identification"},
            "conditions": [{"restorer": "none", "scale": None, "recognizer": "dlib", "retrieval": rates}]}


def test_identification_ranks_that_decrease_are_a_problem(tmp_path):
    """rank-5 below rank-1 (a retrieval rate at k can only grow with k); the CMC stored is too short to disagree."""
    (tmp_path / "results.json").write_text(json.dumps(_ident_record()))
    assert check_run(tmp_path).ok
    (tmp_path / "results.json").write_text(json.dumps(_ident_record(rank5=0.8)))
    problems = check_run(tmp_path).problems
    assert problems == ["conditions[0].retrieval: rank-1/5/10 [0.9, 0.8, 1.0] decrease"], problems


def test_an_older_limited_run_gets_a_note_not_a_problem(run_dir):
    """A record without ``pairs_sha256`` (older) made with --limit-pairs, whose pairs differ from what the option
    selects now: a note (the option chose differently then); with the digest recorded it is a problem."""
    run = run_dir

    def change(r):
        r["config"]["limit_pairs"] = 2
        r["protocol"].pop("pairs_sha256")
    _edit(run, change)
    report = check_run(run, check_cache=False)
    assert report.ok, report.problems
    assert any("--limit-pairs selected pairs differently then" in n for n in report.notes), report.notes


# ------------------------------------------------------------------------------------ pipeline/restore_record.py
@pytest.mark.parametrize("content", [{"record_version": 2, "settings": {"seed": 1}, "inputs": {}},
                                     {"settings": {"seed": 1}, "inputs": {}}, [1, 2]])
def test_a_record_of_another_version_or_shape_is_refused(tmp_path, content):
    """restore.json of a later record version (or none, or not an object) is refused, even with equal settings:
    its entries may mean something else."""
    from restorever.errors import RestoreverError
    from restorever.pipeline.restore_record import RECORD_VERSION, RestoreRecord

    assert RECORD_VERSION == 1
    (tmp_path / "restore.json").write_text(json.dumps(content))
    with pytest.raises(RestoreverError, match="not a restore record of version 1"):
        RestoreRecord(tmp_path, {"seed": 1}, {}, overwrite=False)
    (tmp_path / "restore.json").write_text(json.dumps({"record_version": 1, "settings": {"seed": 1}, "inputs": {}}))
    RestoreRecord(tmp_path, {"seed": 1}, {}, overwrite=False)  # the version this code writes is read


# --------------------------------------------------------------------------------------- validate/protocols.py
@pytest.mark.parametrize("pairs, problem", [("lfw/pairs.txt", None), ("a$b/pairs.txt", None),
                                            ("~/pairs.txt", "must be relative"),
                                            ("C:/pairs.txt", "must be relative"),
                                            ("lfw/../pairs.txt", "must not contain '..'"),
                                            ("${RESTOREVER_DATA}/lfw/pairs.txt", "starts with a variable"),
                                            ("${RESTOREVER_DATA}", "starts with a variable"),
                                            ("$HOME/pairs.txt", "starts with a variable")])
def test_a_data_path_is_relative_without_a_variable(tmp_path, pairs, problem):
    """Data paths are relative to the data root: no home folder, no drive, no '..', and no variable (nothing expands
    one: ``${RESTOREVER_DATA}/pairs.txt`` would name a folder called ``${RESTOREVER_DATA}``)."""
    from restorever.validate import validate_protocol_file

    path = tmp_path / "p.yaml"
    path.write_text(f"protocol: p\nversion: 1\ndataset: {{format: lfw-pairs, pairs: '{pairs}'}}\n")
    problems = validate_protocol_file(path)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and f"dataset.pairs {pairs!r} {problem}" in problems[0], problems


def test_a_variable_in_a_data_path_is_refused_at_load_naming_the_relative_path(tmp_path, monkeypatch):
    """The loader refuses it before looking for any data (it used to search for a folder named after the variable
    and report the data missing), and says what to write instead; so do label files."""
    from restorever.errors import ProtocolError
    from restorever.protocol import load_protocol

    monkeypatch.setenv("RESTOREVER_DATA", str(tmp_path))
    (tmp_path / "p.yaml").write_text("protocol: p\nversion: 1\n"
                                    "dataset: {format: lfw-pairs, pairs: '${RESTOREVER_DATA}/lfw/pairs.txt'}\n")
    with pytest.raises(ProtocolError, match=r"dataset.pairs .* not expanded.*, here 'lfw/pairs.txt'"):
        load_protocol(str(tmp_path / "p.yaml"), data_root=tmp_path)
    (tmp_path / "q.yaml").write_text("include: lfw\nprotocol: q\nlabels: {gender: {male: m.txt, female: "
                                    "'${RESTOREVER_DATA}/f.txt'}}\n")
    with pytest.raises(ProtocolError, match=r"labels.gender.female .* not expanded.*, here 'f.txt'"):
        load_protocol(str(tmp_path / "q.yaml"), data_root=tmp_path)


# ------------------------------------------------------------------------------------------------ degradation
def test_every_public_name_of_the_ops_is_exported_by_the_pipeline():
    """The module promises every public name of degradation_ops importable from it, and each name its ``__all__``
    lists exists (``from restorever.degradation import *`` works)."""
    from restorever import degradation, degradation_ops

    assert all(hasattr(degradation, name) for name in degradation_ops.__all__)
    assert all(hasattr(degradation, name) for name in degradation.__all__)
    namespace: dict = {}
    exec("from restorever.degradation import *", namespace)  # noqa: S102 - the star import itself is the property
    assert {"BATCH_CHUNK", "Degradation", "blur_downsample_batch"} <= set(namespace)


def test_the_fft_length_is_the_smallest_5_smooth_number_at_least_n():
    """The blur's FFT frame (``_fast_len``): the smallest m >= n with no prime factor above 5, checked against a
    factorisation by trial division; 512 + 41 - 1 = 552 gives 576 = 2^6 * 3^2 (a 2- and 5-only length would be
    625, another rounding of every degraded pixel)."""
    from restorever.degradation_ops import _fast_len

    def largest_prime_factor(m: int) -> int:
        largest, d = 1, 2
        while d * d <= m:
            while m % d == 0:
                largest, m = d, m // d
            d += 1
        return max(largest, m)

    for n in range(1, 400):
        expected = next(m for m in range(n, 2 * n + 2) if largest_prime_factor(m) <= 5)
        assert _fast_len(n) == expected, n
    assert _fast_len(552) == 576

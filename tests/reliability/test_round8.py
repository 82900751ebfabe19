"""Round 8 of the reliability audit (docs/reliability.md): a rerun interrupted after its example images were made,
two processes racing for a new run folder, a damaged costs.json, edits `validate` missed, and the wording of
file-system errors and of garbage cache entries."""
from __future__ import annotations

import errno
import hashlib
import json
import shutil
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from restorever.cli import _os_error_hint, cli
from restorever.pipeline.cache import ArrayCache
from restorever.pipeline.costs import COSTS_FILE, load_costs, record_costs
from restorever.pipeline.lock import RunLockedError
from restorever.reports import results as results_module
from restorever.reports.results import EXAMPLES_STAGING, run_folder
from restorever.validate import check_run

from .conftest import eval_args


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _examples_match_their_record(out: Path) -> bool:
    record = json.loads((out / "results.json").read_text())
    rels = [r for r in record["outputs"] if r.startswith("examples/")]
    assert rels, "the run recorded no example images"
    return all(hashlib.sha256((out / r).read_bytes()).hexdigest() == record["outputs"][r]["sha256"] for r in rels)


def test_an_interrupted_rerun_never_leaves_old_results_beside_new_examples(tiny_data, tmp_path, monkeypatch,
                                                                          caplog):
    """The examples of a rerun with another seed were written straight into examples/ before the outputs were
    staged: interrupted there, the folder held the seed-0 results.json beside seed-1 faces, and `report` showed
    them. Now they are staged and move with the other outputs."""
    csv, root = tiny_data
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = _invoke(*eval_args(csv, root, out, cache, "--examples", 2)[:-2], "--examples", 2)
    assert first.exit_code == 0, first.output
    assert _examples_match_their_record(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(results_module, "_roc_png", interrupted)  # in write_run, after the examples were made
    second = _invoke(*eval_args(csv, root, out, cache)[:-2], "--examples", 2, "--seed", 1)
    assert second.exit_code == 130, second.output
    assert json.loads((out / "results.json").read_text())["config"]["seed"] == 0
    assert _examples_match_their_record(out)  # the seed-0 faces, untouched
    assert check_run(out).ok
    assert (out / EXAMPLES_STAGING).is_dir()  # the interrupted run's staged faces ...
    monkeypatch.undo()
    third = _invoke(*eval_args(csv, root, out, cache)[:-2], "--examples", 2, "--seed", 1)
    assert third.exit_code == 0, third.output
    assert not (out / EXAMPLES_STAGING).exists()  # ... are gone after the resumed run
    assert json.loads((out / "results.json").read_text())["config"]["seed"] == 1
    assert _examples_match_their_record(out) and check_run(out).ok
    assert "replaced the finished run there, which had other options (seed: 0 -> 1)" in caplog.text


def test_leftovers_of_a_killed_run_are_removed_under_the_lock(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    leftovers = [out / ".results.json.staged", out / "..results.md.staged.ab12cd.tmp", out / ".roc-x1y2z3",
                 out / EXAMPLES_STAGING / "examples" / "clean"]
    kept = [out / "notes.txt", out / ".hidden_user_file", out / "results.json", out / ".my.notes.tmp",
            out / ".draft.staged"]
    for path in leftovers[:2] + kept:
        path.write_text("x")
    for path in leftovers[2:]:
        path.mkdir(parents=True)
    with run_folder(out):
        assert not (out / ".results.json.staged").exists() and not (out / ".roc-x1y2z3").exists()
        assert not (out / EXAMPLES_STAGING).exists() and not (out / "..results.md.staged.ab12cd.tmp").exists()
        assert all(p.exists() for p in kept)


def test_a_process_refused_the_lock_leaves_the_holders_new_folder_alone(tmp_path, monkeypatch):
    """Two runs started at once on a new --out both saw no folder; the one refused the lock then removed the
    folder and the lock file of the one holding it."""
    out = tmp_path / "new-run"
    with ExitStack() as stack:
        stack.enter_context(run_folder(out))  # the winner holds the lock of the folder it created
        real_exists = Path.exists
        monkeypatch.setattr(Path, "exists", lambda self, **kw: False if self == out else real_exists(self, **kw))
        with pytest.raises(RunLockedError):  # the loser looked before the winner created the folder
            with run_folder(out):
                pass
        monkeypatch.undo()
        assert (out / ".restorever.lock").is_file()
        with pytest.raises(RunLockedError):  # the winner's lock still holds: no third writer gets in
            with run_folder(out):
                pass


def test_a_damaged_costs_file_never_fails_a_run(tiny_data, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for text in ("null", "[1, 2]", '"fast"', "{not json", '{"cpu|embed|dlib": "fast", "cpu|degrade|x": -1}'):
        (cache / COSTS_FILE).write_text(text)
        assert load_costs(cache) == {}
        record_costs(cache, "cpu", {"embed": 4}, {"embed": 2.0}, {"embed": "dlib"})  # was a TypeError for null
        assert load_costs(cache) == {"cpu|embed|dlib": 0.5}
    (cache / COSTS_FILE).write_bytes(b"\xff\xfe\x00garbage")
    assert load_costs(cache) == {}
    (cache / COSTS_FILE).write_text('{"cpu|embed|dlib": 1' + "0" * 400 + ', "cpu|degrade|x": 0.5}')
    assert load_costs(cache) == {"cpu|degrade|x": 0.5}  # an integer beyond float's range is left out
    (cache / COSTS_FILE).write_text('{"cpu|embed|dlib": "fast", "cpu|landmarks|mtcnn": 0.25}')
    csv, root = tiny_data
    plan = _invoke(*eval_args(csv, root, tmp_path / "out", cache), "--dry-run")
    assert plan.exit_code == 0, plan.output  # was a TypeError in the plan's sum
    assert load_costs(cache) == {"cpu|landmarks|mtcnn": 0.25}


def _tampered(reference_run, tmp_path, edit) -> list[str]:
    out = tmp_path / "run"
    shutil.copytree(reference_run[2], out)
    record = json.loads((out / "results.json").read_text())
    edit(record)
    (out / "results.json").write_text(json.dumps(record, indent=1))
    return check_run(out).problems


def test_validate_catches_a_renamed_protocol_and_a_changed_device(reference_run, tmp_path):
    def rename(r):
        r["protocol"]["name"] = "lfw-dev"

    problems = _tampered(reference_run, tmp_path, rename)
    assert any("protocol.name is 'lfw-dev' but config.protocol" in p for p in problems), problems

    for where in ("environment", "config"):
        def move(r, where=where):
            r[where]["device"] = "cuda:0"

        problems = _tampered(reference_run, tmp_path / where, move)
        assert any(f"{where}.device is 'cuda:0' but the run's cache keys were made on 'cpu'" in p
                   for p in problems), problems


def test_a_device_typed_in_capitals_is_the_same_device(reference_run, tmp_path):
    """`--device CPU` runs on the CPU (resolve_device reads it case-blind); validate must not call it changed."""
    def upper(r):
        r["config"]["device"] = "CPU"

    assert not any("device" in p for p in _tampered(reference_run, tmp_path, upper))


def test_a_damaged_previous_results_json_does_not_fail_the_rerun(reference_run, tmp_path, caplog):
    from restorever.reports.results import write_run

    out = tmp_path / "run"
    shutil.copytree(reference_run[2], out)
    record = json.loads((out / "results.json").read_text())
    for old in ('{"config": 5}', '{"config": "x"}', '["a"]', "not json"):
        (out / "results.json").write_text(old)
        write_run(json.loads(json.dumps(record)), out)  # was a TypeError after the whole computation
        assert json.loads((out / "results.json").read_text())["config"] == record["config"]
    assert "holds no readable config" in caplog.text


def test_validate_names_a_key_version_newer_than_the_code(reference_run, tmp_path):
    def bump(r):
        r["cache"]["identity"]["key_versions"]["embedding"] += 5

    problems = _tampered(reference_run, tmp_path, bump)
    assert any("key_versions: embedding" in p and "is newer than this restorever's" in p for p in problems), problems
    assert not any("missing" in p for p in problems), problems  # not "the cache was cleaned"


def test_garbage_in_a_cache_entry_is_not_called_pickled_data(tmp_path):
    cache = ArrayCache(tmp_path)
    cache.put("embedding", "ab" * 32, np.arange(4, dtype=np.float32))
    path = cache.path("embedding", "ab" * 32)
    path.write_bytes(np.random.default_rng(0).bytes(300))
    data, reason = cache._read("embedding", "ab" * 32)
    assert data is None and reason == "corrupt: not an .npz archive (unknown bytes)"
    assert cache.get("embedding", "ab" * 32) is None and cache.corrupt == 1


def test_file_system_errors_say_what_to_do(tmp_path, tiny_data):
    hint = _os_error_hint(OSError(errno.EISDIR, "Is a directory", "x/results.json"))
    assert "a folder stands where a file belongs" in hint
    assert "a file stands where a folder belongs" in _os_error_hint(OSError(errno.ENOTDIR, "Not a directory", "x"))
    assert "writable" in _os_error_hint(PermissionError(errno.EACCES, "Permission denied", "x"))
    assert _os_error_hint(OSError(errno.EACCES, "Permission denied")) == ""  # no path named: nothing to add
    csv, root = tiny_data
    out = tmp_path / "out"
    (out / "results.json").mkdir(parents=True)  # a folder where the run's results.json goes
    result = _invoke(*eval_args(csv, root, out, tmp_path / "cache"))
    assert result.exit_code == 2
    assert "Is a directory; a folder stands where a file belongs: move it away" in result.output, result.output

"""The pipeline engine: kill -9 and resume, run lock, 1-vs-2-process equality, out-of-memory back-off, dry run."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from restorever.cli import cli
from restorever.pipeline.stages import call_with_backoff
from restorever.pipeline.lock import RunLock, RunLockedError

from .test_protocol import _faces_csv

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, faces_root):
    tmp = tmp_path_factory.mktemp("engine")
    rows = _faces_csv(faces_root).splitlines()
    csv = tmp / "pairs.csv"
    csv.write_text("\n".join(rows[:1] + rows[1:9]) + "\n")  # 8 pairs: 4 same, 4 different
    return csv


def _args(csv, faces_root, out, cache, *extra):
    return ["eval", "--protocol", "pairs-csv", "--pairs", str(csv), "--data-root", str(faces_root), "--scales", "8",
            "--batch-size", "2", "--out", str(out), "--cache-dir", str(cache), "--no-progress", "--examples", "0",
            *extra]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _entries(cache: Path) -> set[str]:
    return {str(p.relative_to(cache)) for p in cache.rglob("*.npz")} if cache.exists() else set()


def _scores(out: Path):
    record = json.loads((out / "results.json").read_text())
    return [c["scores"] for c in record["conditions"]], record


@pytest.fixture(scope="module")
def reference(tiny, faces_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    result = CliRunner().invoke(cli, _args(tiny, faces_root, tmp / "out", tmp / "cache"), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return _scores(tmp / "out")[0], _entries(tmp / "cache")


@pytest.mark.parametrize("kill_after", [3, 12])
def test_kill_9_and_resume(tiny, faces_root, tmp_path, reference, kill_after):
    ref_scores, ref_entries = reference
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-m", "restorever", *_args(tiny, faces_root, out, cache)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(_entries(cache)) < kill_after and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    present = _entries(cache)
    assert 0 < len(present) < len(ref_entries), "the kill must land mid-run"
    assert not (out / "results.json").exists()  # no partial result written as if complete
    result = CliRunner().invoke(cli, _args(tiny, faces_root, out, cache), catch_exceptions=False)
    assert result.exit_code == 0, result.output  # the dead process's lock does not block the resume
    scores, record = _scores(out)
    assert scores == ref_scores
    assert record["cache"]["corrupt"] == 0
    assert _entries(cache) == ref_entries
    # nothing done twice: the resumed run computed exactly the entries the killed one had not finished
    assert record["cache"]["misses"] == len(ref_entries) - len(present)


def test_run_lock(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match="is being written by pid"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released
        pass


def test_two_processes_equal_one(tiny, faces_root, tmp_path, reference):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), "-m", "restorever", *_args(tiny, faces_root, out, cache)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores, record = _scores(out)
    assert scores == reference[0]
    assert record["distributed"]["world_size"] == 2
    assert _entries(cache) == reference[1]
    # the stage timings cover both ranks' work (rank 0's merge only reads the cache, which counted nothing)
    timings, entries = record["timings"], _entries(cache)
    n_embeddings = len([e for e in entries if e.startswith("embedding")])
    n_images = len([e for e in entries if e.startswith("landmarks")])  # one clean embedding each, the rest x8
    assert timings["n_embedded"] == n_embeddings and timings["n_degraded"] == n_embeddings - n_images > 0
    assert timings["embed_s"] > 0 and timings["degrade_s"] > 0
    # the cache counters say what a single process would: a fresh cache is all misses (rank 0's read-back of the
    # entries the ranks wrote is no hit), and a rerun on the warm cache is all hits
    assert (record["cache"]["hits"], record["cache"]["misses"], record["cache"]["corrupt"]) == (0, len(entries), 0)
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores, record = _scores(out)
    assert scores == reference[0]
    assert (record["cache"]["hits"], record["cache"]["misses"], record["cache"]["corrupt"]) == (len(entries), 0, 0)



def test_two_processes_count_an_undecodable_image_once(tiny, faces_root, tmp_path):
    """An image that never gets a cache entry (undecodable, skipped with --on-error skip) is one miss in one process;
    under torchrun every rank's read-back of the whole list missed it again, so two processes reported two more."""
    import shutil

    data = tmp_path / "data"
    rows = tiny.read_text().splitlines()[1:5]  # 2 same + 2 different pairs
    for row in rows:
        for rel in row.split(",")[:2]:
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(faces_root / rel, data / rel)
    first = rows[0].split(",")[0]
    (data / "broken.jpg").write_bytes((faces_root / first).read_bytes()[:500])  # a truncated JPEG
    csv = tmp_path / "pairs.csv"
    csv.write_text("\n".join(["path_a,path_b,same", *rows, f"{first},broken.jpg,1"]) + "\n")
    counts = {}
    for label in ("one", "two"):
        out, cache = tmp_path / f"out_{label}", tmp_path / f"cache_{label}"
        args = _args(csv, data, out, cache, "--on-error", "skip")
        if label == "one":
            result = CliRunner().invoke(cli, args, catch_exceptions=False)
            assert result.exit_code == 0, result.output
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                   "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "restorever",
                                   *args], env=_env(), capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
        record = _scores(out)[1]
        assert [p["b"] for p in record["protocol"]["skipped"]] == ["broken.jpg"]
        counts[label] = (record["cache"]["hits"], record["cache"]["misses"], record["cache"]["corrupt"])
        assert counts[label] == (0, len(_entries(cache)) + 1, 0)  # every entry written, plus the broken image
    assert counts["two"] == counts["one"]

def test_out_of_memory_backoff_keeps_results():
    calls = []

    def fn(index):
        calls.append(len(index))
        if len(index) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.tensor(index, dtype=torch.float32) * 10

    out = call_with_backoff(fn, 7)
    assert out.tolist() == [0, 10, 20, 30, 40, 50, 60]
    assert max(c for c in calls if c <= 2) == 2 and calls[0] == 7

    def broken(index):
        raise RuntimeError("some other error")

    with pytest.raises(RuntimeError, match="some other error"):
        call_with_backoff(broken, 4)


def test_dry_run_reports_cache(tiny, faces_root, tmp_path, reference):
    result = CliRunner().invoke(cli, _args(tiny, faces_root, tmp_path / "o", tmp_path / "empty", "--dry-run"),
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "to detect" in result.output and "none x8" in result.output and "estimated time" in result.output
    assert not (tmp_path / "o" / "results.json").exists()


def test_dry_run_estimates_a_plan_of_restorer_none(tiny, faces_root, tmp_path):
    """`none` restores nothing, so no run ever measures a restore cost for it: after one run its plan for a new
    scale is estimated from the stages that were measured, not called unknown."""
    cache = tmp_path / "cache"
    first = CliRunner().invoke(cli, _args(tiny, faces_root, tmp_path / "o", cache), catch_exceptions=False)
    assert first.exit_code == 0, first.output
    plan = CliRunner().invoke(cli, _args(tiny, faces_root, tmp_path / "o2", cache, "--dry-run", "--scales", "16"),
                              catch_exceptions=False)
    assert plan.exit_code == 0, plan.output
    assert "none x16                      0 cached,      8 to compute" in plan.output
    # a small job in seconds (it read "0.0 min"); the costs belong to the cache folder, not to "this machine"
    assert re.search(r"estimated time for what is missing: [0-9]+ s on cpu \(from stage costs measured by earlier "
                     r"runs with this cache folder\)", plan.output), plan.output
    fresh = CliRunner().invoke(cli, _args(tiny, faces_root, tmp_path / "o3", tmp_path / "fresh", "--dry-run"),
                               catch_exceptions=False)
    assert "never measured with this cache folder" in fresh.output, fresh.output


def test_new_recognizer_reuses_cached_restorations(tiny, faces_root, tmp_path, monkeypatch):
    """Restored faces are cached as uint8: evaluating the same restorer with another recognizer never re-restores."""
    import sys as _sys

    from restorever.pipeline.evaluate import EvalConfig, evaluate
    from restorever.recognizers import REGISTRY as RECOGNIZERS
    from restorever.restorers import REGISTRY as RESTORERS
    from tests import plugin_backends

    monkeypatch.setitem(_sys.modules, "tests.plugin_backends.recognizers", plugin_backends.recognizers)
    RESTORERS.register_module("tests.plugin_backends")
    RECOGNIZERS.register_module("tests.plugin_backends.recognizers")
    try:
        def run(recognizer):
            return evaluate(EvalConfig(protocol="pairs-csv", pairs=str(tiny), data_root=str(faces_root), scales=[8],
                                       restorers=["none", "test-blur"], recognizer=recognizer,
                                       cache_dir=str(tmp_path / "cache"), batch_size=3), progress=False)

        before = plugin_backends.CALLS["restore"]
        first = run("dlib")
        restored_first = plugin_backends.CALLS["restore"] - before
        assert restored_first == first["timings"]["n_restored"] > 0
        entries = len(list((tmp_path / "cache" / "restored").rglob("*.npz")))
        assert entries == restored_first
        second = run("test-pixels")
        assert plugin_backends.CALLS["restore"] - before == restored_first  # nothing restored again
        assert second["timings"]["n_restored"] == 0
        blur = [c for c in second["conditions"] if c["restorer"] == "test-blur"][0]
        assert 0 < blur["identity"]["cosine_to_clean_mean"] < 1
    finally:
        RESTORERS._modules.remove("tests.plugin_backends")
        RECOGNIZERS._modules.remove("tests.plugin_backends.recognizers")
        RESTORERS._cards = RECOGNIZERS._cards = None


def test_dry_run_builds_no_model_and_finds_the_run_cache(tiny, faces_root, tmp_path, monkeypatch):
    """After a run, its dry run finds every entry cached, with the same cache identity as the run recorded, while
    no backend may be created; a restorer whose weights are missing is named and counted as to compute."""
    from restorever.pipeline.evaluate import EvalConfig
    from restorever.pipeline.plan import plan_context
    from restorever.recognizers import REGISTRY as RECOGNIZERS
    from restorever.restorers import REGISTRY as RESTORERS

    out, cache = tmp_path / "o", tmp_path / "cache"
    result = CliRunner().invoke(cli, _args(tiny, faces_root, out, cache), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "results.json").read_text())["cache"]["identity"]

    def refuse(self, name, **kwargs):
        raise AssertionError(f"the dry run built {self.kind} {name}")

    for registry in (RECOGNIZERS, RESTORERS):
        monkeypatch.setattr(registry, "create", refuse.__get__(registry))
    config = EvalConfig(protocol="pairs-csv", pairs=str(tiny), data_root=str(faces_root), scales=[8],
                        cache_dir=str(cache))
    assert plan_context(config).identity.as_record() == recorded
    plan = CliRunner().invoke(cli, _args(tiny, faces_root, tmp_path / "o2", cache, "--dry-run"),
                              catch_exceptions=False)
    assert plan.exit_code == 0, plan.output
    assert "landmarks (mtcnn): 12 cached, 0 to detect" in plan.output
    assert "clean                        12 cached,      0 to compute" in plan.output
    assert "none x8                       8 cached,      0 to compute" in plan.output
    assert "estimated time for what is missing: nothing is missing" in plan.output
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))  # no weights there
    plan = CliRunner().invoke(cli, _args(tiny, faces_root, tmp_path / "o3", cache, "--dry-run", "--restorer",
                                         "none,vqfr-v2"), catch_exceptions=False)
    assert plan.exit_code == 0, plan.output
    assert "weights missing for vqfr-v2" in plan.output and "VQFR_v2.pth" in plan.output
    assert "vqfr-v2 x8                    0 cached,      8 to compute" in plan.output
    assert "none x8                       8 cached,      0 to compute" in plan.output
    assert not (tmp_path / "o3").exists()

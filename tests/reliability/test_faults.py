"""Faults during a run: a full disk (a patched writer and a real tiny tmpfs), an image deleted or replaced mid-run,
CUDA out-of-memory (simulated on the CPU), SIGINT and SIGTERM. Each must end with the finished cache entries kept and
intact, a clear one-line message, no results.json, and a resume that reproduces the uninterrupted run exactly.

Complements tests/test_engine.py (kill -9 + resume, run lock, OOM back-off of call_with_backoff itself).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from restorever.cli import cli
from restorever import files as files_module
from restorever.pipeline.cache import ArrayCache, CacheWriteError, DiskFullError, atomic_write_bytes
from restorever.validate import check_run

from ..signals import run_signalled
from .conftest import cache_entries, eval_args, run_scores, stray_files, subprocess_env

DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full to produce a real ENOSPC")


def _invoke(args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def _assert_entries_intact(cache: Path) -> set[str]:
    """Every entry present loads with a matching checksum and no temporary file is left; returns the entries."""
    assert not stray_files(cache), stray_files(cache)
    store = ArrayCache(cache)
    for rel in cache_entries(cache):
        kind, _, name = rel.split("/")
        data, status = store.check(kind, name[:-4])
        assert status == "ok", f"{rel}: {status}"
    return cache_entries(cache)


def _assert_resume_reproduces(reference_run, args, out: Path, cache: Path, present: set[str]) -> dict:
    """Rerun ``args``: exit 0, the reference scores, and only what was missing computed."""
    ref_scores, ref_entries, _, _ = reference_run
    result = _invoke(args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    scores, record = run_scores(out)
    assert scores == ref_scores
    assert cache_entries(cache) == ref_entries
    assert record["cache"]["misses"] == len(ref_entries) - len(present)  # nothing done twice
    assert record["cache"]["corrupt"] == 0
    report = check_run(out)
    assert report.ok, report.problems
    return record


def _one_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


# ------------------------------------------------------------------------------------------------------ disk full

def _dev_full_after(n_ok: int):
    """A ``tempfile`` stand-in whose ``mkstemp`` hands out real temporary files for the first ``n_ok`` writes and
    then file descriptors on /dev/full, where every write fails with the kernel's ENOSPC."""
    import tempfile

    calls = {"n": 0}

    def mkstemp(*args, **kwargs):
        fd, name = tempfile.mkstemp(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > n_ok:
            os.close(fd)
            fd = os.open(DEV_FULL, os.O_WRONLY)
        return fd, name

    return types.SimpleNamespace(mkstemp=mkstemp), calls


@needs_dev_full
def test_disk_full_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")
    fake, _ = _dev_full_after(0)
    monkeypatch.setattr(files_module, "tempfile", fake)
    with pytest.raises(DiskFullError, match="disk full") as info:
        atomic_write_bytes(target, b"new" * 10_000)
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@needs_dev_full
def test_disk_full_cache_put_is_a_typed_error_with_no_partial_entry(tmp_path, monkeypatch):
    store = ArrayCache(tmp_path)
    store.put("embedding", "ab" * 32, np.arange(4, dtype=np.float32))
    fake, _ = _dev_full_after(0)
    monkeypatch.setattr(files_module, "tempfile", fake)
    with pytest.raises(CacheWriteError, match="disk full.*--cache-dir"):
        store.put("embedding", "cd" * 32, np.ones(4, np.float32))
    assert cache_entries(tmp_path) == {f"embedding/ab/{'ab' * 32}.npz"}
    assert store.get("embedding", "ab" * 32).tolist() == [0, 1, 2, 3]
    _assert_entries_intact(tmp_path)


def test_atomic_writes_get_normal_permissions(tmp_path):
    """Not the private 0600 of a temporary file: other users of a shared cache or run folder can read them."""
    atomic_write_bytes(tmp_path / "f", b"x")
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~files_module._umask()


@needs_dev_full
def test_disk_full_mid_run_stops_cleanly_and_resumes(tiny_data, reference_run, tmp_path, monkeypatch):
    csv, root = tiny_data
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = eval_args(csv, root, out, cache)
    fake, calls = _dev_full_after(7)  # landmarks and a first embedding fit, then the disk is full
    monkeypatch.setattr(files_module, "tempfile", fake)
    result = _invoke(args)
    assert result.exit_code == 2, result.output
    line = _one_line(result.output)
    assert line.startswith("error: cache ") and "disk full" in line and "--cache-dir" in line and "rerun" in line
    assert not (out / "results.json").exists()
    present = _assert_entries_intact(cache)
    assert len(present) == 7
    monkeypatch.undo()
    _assert_resume_reproduces(reference_run, args, out, cache, present)


def _can_mount_tmpfs() -> str | None:
    if not shutil.which("unshare"):
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=8k tmpfs $d && umount $d && rmdir $d"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount a tmpfs here ({probe.stderr.strip()[:80]})"


def test_real_full_tmpfs_mid_run_then_resume(tiny_data, reference_run, tmp_path):
    """The cache on a 24 KiB tmpfs (six 4 KiB pages) in a private mount namespace: the kernel's ENOSPC ends the
    run; after the tmpfs is grown the same command resumes and reproduces the uninterrupted run."""
    reason = _can_mount_tmpfs()
    if reason:
        pytest.skip(reason)
    csv, root = tiny_data
    ref_scores, ref_entries, _, _ = reference_run
    cache, out1, out2, copy = tmp_path / "cache", tmp_path / "out1", tmp_path / "out2", tmp_path / "copy"
    cache.mkdir()
    run = " ".join([sys.executable, "-m", "restorever"])
    script = f"""
        set -e
        mount -t tmpfs -o size=24k tmpfs {cache}
        set +e
        {run} {' '.join(eval_args(csv, root, out1, cache))} 2> {tmp_path}/stderr1; echo $? > {tmp_path}/rc1
        find {cache} -name '*.npz' | wc -l > {tmp_path}/n1; find {cache} -name '*.tmp' | wc -l > {tmp_path}/tmp1
        mount -o remount,size=16m {cache} || exit 3
        {run} {' '.join(eval_args(csv, root, out2, cache))} 2> {tmp_path}/stderr2; echo $? > {tmp_path}/rc2
        cp -r {cache} {copy} || exit 4
    """
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-ec", script],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    read = lambda name: (tmp_path / name).read_text().strip()  # noqa: E731
    assert read("rc1") == "2", read("stderr1")[-2000:]
    assert "disk full" in read("stderr1") and "rerun the same command" in read("stderr1")
    assert not (out1 / "results.json").exists()
    assert read("tmp1") == "0" and 0 < int(read("n1")) < len(ref_entries)
    assert read("rc2") == "0", read("stderr2")[-2000:]
    scores, record = run_scores(out2)
    assert scores == ref_scores
    assert record["cache"]["misses"] == len(ref_entries) - int(read("n1"))
    assert cache_entries(copy) == ref_entries


@pytest.mark.parametrize("damage", ["bit-flip", "truncated", "empty", "other-array"])
def test_damaged_cache_entries_are_recomputed(tiny_data, reference_run, tmp_path, damage):
    """A damaged entry (bit rot, a copy cut short, an empty file, an intact entry under another name) is reported,
    deleted and recomputed; the run's numbers do not change."""
    csv, root = tiny_data
    ref_scores, ref_entries, _, ref_cache = reference_run
    out, cache = tmp_path / "out", tmp_path / "cache"
    shutil.copytree(ref_cache, cache)
    victims = sorted((cache / "embedding").rglob("*.npz"))[:2] + sorted((cache / "landmarks").rglob("*.npz"))[:1]
    for path in victims:
        data = path.read_bytes()
        if damage == "bit-flip":
            path.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x10]) + data[len(data) // 2 + 1:])
        elif damage == "truncated":
            path.write_bytes(data[: len(data) // 3])
        elif damage == "empty":
            path.write_bytes(b"")
        else:
            other = sorted(p for p in (cache / path.parent.parent.name).rglob("*.npz") if p not in victims)[0]
            shutil.copyfile(other, path)
    result = _invoke(eval_args(csv, root, out, cache), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    scores, record = run_scores(out)
    assert scores == ref_scores
    # "other-array" (an intact entry copied under another name) is caught by the key each entry stores
    assert record["cache"]["corrupt"] == len(victims) and record["cache"]["misses"] == len(victims)
    assert cache_entries(cache) == ref_entries


# ------------------------------------------------------------------------------------------------------ images

def _copy_data(tiny_data, tmp_path) -> tuple[Path, Path]:
    csv, root = tiny_data
    shutil.copytree(root, tmp_path / "faces")
    return csv, tmp_path / "faces"


def _align_hook(monkeypatch, action):
    """Call ``action(items)`` just before the second batch is aligned (the images were read once already)."""
    from restorever.pipeline import evaluate

    original = evaluate.align_items
    calls = {"n": 0}

    def hooked(protocol, items, info, device):
        calls["n"] += 1
        if calls["n"] == 2:
            action(protocol, items)
        return original(protocol, items, info, device)

    monkeypatch.setattr(evaluate, "align_items", hooked)


def test_image_deleted_mid_run(tiny_data, reference_run, tmp_path, monkeypatch):
    csv, root = _copy_data(tiny_data, tmp_path)
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = eval_args(csv, root, out, cache)
    saved = {}

    def delete(protocol, items):
        path = protocol.root / items[0]
        saved["path"], saved["bytes"] = path, path.read_bytes()
        path.unlink()

    _align_hook(monkeypatch, delete)
    result = _invoke(args)
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    line = _one_line(result.output)
    assert "image file not found" in line and str(saved["path"]) in line
    assert not (out / "results.json").exists()
    present = _assert_entries_intact(cache)
    # resuming without the image: its pairs are skipped, visibly, when asked to
    result = _invoke([*args, "--on-error", "skip"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "results.json").read_text())
    assert record["protocol"]["skipped"] and all("not found" in s["reason"] for s in record["protocol"]["skipped"])
    # with the image back, the same command reproduces the uninterrupted run
    saved["path"].write_bytes(saved["bytes"])
    _assert_resume_reproduces(reference_run, args, out, cache, present | (cache_entries(cache) - present))


def test_image_replaced_mid_run_is_detected(tiny_data, tmp_path, monkeypatch):
    """An image overwritten between the landmark pass and its alignment is not embedded under its old content's
    cache key: the run stops naming it, and the rerun uses the new content consistently."""
    csv, root = _copy_data(tiny_data, tmp_path)
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = eval_args(csv, root, out, cache)
    other = sorted(root.rglob("*.jpg"))
    replaced = {}

    def replace(protocol, items):
        target = protocol.root / items[0]
        donor = next(p for p in other if p != target)
        target.write_bytes(donor.read_bytes())
        replaced["path"] = target

    _align_hook(monkeypatch, replace)
    result = _invoke(args)
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    line = _one_line(result.output)
    assert str(replaced["path"]) in line and "changed" in line
    assert not (out / "results.json").exists()
    _assert_entries_intact(cache)
    result = _invoke(args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = check_run(out)
    assert report.ok, report.problems


def test_unreadable_image_is_a_per_image_failure(tiny_data, tmp_path, monkeypatch):
    csv, root = tiny_data
    victim = sorted(root.rglob("*.jpg"))[0]
    import restorever.images

    original = restorever.images._open_fd

    def open_fd(path):
        if Path(path) == victim:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return original(path)

    monkeypatch.setattr(restorever.images, "_open_fd", open_fd)
    args = eval_args(csv, root, tmp_path / "out", tmp_path / "cache")
    result = _invoke(args)
    assert result.exit_code == 2 and victim.name in _one_line(result.output)
    assert not (tmp_path / "out" / "results.json").exists()
    _assert_entries_intact(tmp_path / "cache")
    result = _invoke([*args, "--on-error", "skip"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    skipped = json.loads((tmp_path / "out" / "results.json").read_text())["protocol"]["skipped"]
    assert skipped and all(victim.name in (s["a"] + s["b"]) for s in skipped)


# ------------------------------------------------------------------------------------------------------ CUDA OOM

def _oom_recognizer(monkeypatch, *, above: int):
    """Make the dlib recognizer raise CUDA's out-of-memory error for batches larger than ``above`` (the tiny run's
    ``none`` restorer is not run per batch, so the embedding stage carries the simulated OOM; both stages back off
    through the same ``call_with_backoff``)."""
    from restorever.recognizers import dlib as dlib_backend

    original = dlib_backend.DlibRecognizer.embed
    seen = []

    def embed(self, faces, landmarks):
        seen.append(faces.shape[0])
        if faces.shape[0] > above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return original(self, faces, landmarks)

    monkeypatch.setattr(dlib_backend.DlibRecognizer, "embed", embed)
    return seen


def test_simulated_cuda_oom_inside_a_run_backs_off(tiny_data, reference_run, tmp_path, monkeypatch, caplog):
    csv, root = tiny_data
    out, cache = tmp_path / "out", tmp_path / "cache"
    seen = _oom_recognizer(monkeypatch, above=1)
    result = _invoke(eval_args(csv, root, out, cache), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert 2 in seen and max(s for s in seen if s <= 1) == 1  # a batch of 2 failed and was retried as 1 + 1
    assert "out of memory on a batch of 2" in caplog.text
    assert run_scores(out)[0] == reference_run[0]  # splitting a batch never changes a number


def test_persistent_oom_keeps_finished_entries_and_resumes(tiny_data, reference_run, tmp_path, monkeypatch):
    csv, root = tiny_data
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = eval_args(csv, root, out, cache)
    _oom_recognizer(monkeypatch, above=0)  # not even one face fits
    result = _invoke(args)
    assert result.exit_code == 2
    assert not (out / "results.json").exists()
    present = _assert_entries_intact(cache)
    assert present  # the landmarks were finished before the failing embeddings
    monkeypatch.undo()
    _assert_resume_reproduces(reference_run, args, out, cache, present)


def test_persistent_oom_is_one_clear_line(tiny_data, tmp_path, monkeypatch):
    csv, root = tiny_data
    _oom_recognizer(monkeypatch, above=0)
    result = _invoke(eval_args(csv, root, tmp_path / "out", tmp_path / "cache"))
    assert result.exit_code == 2, result.output
    line = _one_line(result.output)
    assert "out of memory even for a single face" in line and "--device cpu" in line


# ------------------------------------------------------------------------------------------------------ signals

@pytest.mark.parametrize("signum, after, status", [(signal.SIGINT, 2, 130), (signal.SIGTERM, 9, 143)],
                         ids=["SIGINT-during-landmarks", "SIGTERM-during-embeddings"])
def test_signal_mid_run_then_resume(tiny_data, reference_run, tmp_path, signum, after, status):
    """The exit status is 128 + the signal's number, as a shell reports a process the signal killed (130 Ctrl-C,
    143 SIGTERM), so that a batch scheduler's time limit is told apart from a user's Ctrl-C."""
    csv, root = tiny_data
    ref_entries = reference_run[1]
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = eval_args(csv, root, out, cache)
    proc = run_signalled(args, signum, after, env=subprocess_env(), timeout=300)
    stderr = proc.stderr
    present = _assert_entries_intact(cache)
    assert 0 < len(present) < len(ref_entries), "the signal must land mid-run"
    assert proc.returncode == status, stderr[-2000:]
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"  # a log tells a time limit apart
    assert _one_line(stderr) == f"{what}: finished cache entries are kept; rerun the same command to resume"
    assert not (out / "results.json").exists()
    _assert_resume_reproduces(reference_run, args, out, cache, present)

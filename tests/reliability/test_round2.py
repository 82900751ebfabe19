"""Hostile input and faults, round 2 (issue 15): protocol downloads, transient detector failures, validate's blind
spots (degradation.jsonl, mixed folders, labels and skips), paths in results.json, colliding outputs, memory
bounds, one-line errors and decoding (16-bit, float, EXIF orientation). Numbered as the issue's items.
"""
from __future__ import annotations

import io
import json
import os
import resource
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from restorever.cli import cli
from restorever.errors import CheckpointLayoutError, DeviceError, ImageError, ProtocolError
from restorever.images import decode_image
from restorever.pipeline.cache import ArrayCache
from restorever.validate import check_run

from .conftest import cache_entries, eval_args, run_scores


def _invoke(args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def _one_line(output: str) -> str:
    """The single non-empty line of ``output`` (no traceback, no second line)."""
    lines = [line for line in output.strip().splitlines() if line.strip() and "%|" not in line]  # not progress
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.fixture
def run_copy(reference_run, tmp_path):
    """A private copy of the reference run and its cache (results.json pointing at the copy)."""
    _, _, out, cache = reference_run
    run, store = tmp_path / "run", tmp_path / "cache"
    shutil.copytree(out, run)
    shutil.copytree(cache, store)
    _edit(run, lambda r: r["cache"].update(dir=str(store)))
    return run, store


def _edit(run: Path, change) -> None:
    record = json.loads((run / "results.json").read_text())
    change(record)
    (run / "results.json").write_text(json.dumps(record, indent=1))


def _recompute_metrics(record: dict) -> None:
    """Make a tampered record self-consistent again (metrics and paired statistics from its scores), as a careful
    forger would, so that only the checks against the protocol and the cache can catch it."""
    from restorever.metrics.verification import verification_report
    from restorever.reports.statistics import add_comparisons

    for cond in record["conditions"]:
        s = cond["scores"]
        cond["verification"] = verification_report(np.asarray(s["same"]), np.asarray(s["score"]),
                                                   np.asarray(s["fold"]))
        cond.pop("comparison_to_clean", None)
        cond.pop("comparison_to_none", None)
    add_comparisons(record)
    record["protocol"]["folds"] = len(set(record["conditions"][0]["scores"]["fold"]))


# ------------------------------------------------------------------------------------------ 1. protocol downloads

@pytest.mark.parametrize("entry, protocol, message", [
    ("{filename: ABS/abs_PWNED, url: 'file:///etc/hostname', sha256: null}", "evil", "plain file name"),
    ("{filename: ../../../../x_PWNED, url: 'https://h/x', sha256: null}", "evil", "plain file name"),
    ("{filename: a/b/c_PWNED, url: 'https://h/x', sha256: null}", "evil", "plain file name"),
    ("{filename: x_PWNED, url: 'file:///etc/hostname', sha256: null}", "evil", "http(s) URL"),
    ("{filename: x_PWNED, url: 'ftp://h/x', sha256: null}", "evil", "http(s) URL"),
    ("{filename: x_PWNED, url: 'https://h/x', sha256: null}", "'../../../x'", "protocol must be a name"),
    ("{filename: x_PWNED, url: 'https://h/x', sha256: null}", "{a: 1}", "protocol must be a name"),
])
def test_unsafe_download_entries_are_refused_at_load(tmp_path, monkeypatch, entry, protocol, message):
    """The issue's reproducer and variants, through `eval --dry-run` online without --data-root: one line, exit 2,
    and nothing is written anywhere (the cache folder is not even created)."""
    home = tmp_path / "deep" / "er" / "home"
    monkeypatch.setenv("RESTOREVER_HOME", str(home))
    monkeypatch.delenv("RESTOREVER_OFFLINE", raising=False)
    monkeypatch.delenv("RESTOREVER_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    entry = entry.replace("ABS", str(tmp_path))
    (tmp_path / "evil.yaml").write_text(f"protocol: {protocol}\ndataset: {{format: pairs-csv, download: [{entry}]}}\n")
    (tmp_path / "p.csv").write_text("a.jpg,b.jpg,1\nc.jpg,d.jpg,0\n")
    before = {p for p in tmp_path.rglob("*")}
    result = _invoke(["eval", "--protocol", tmp_path / "evil.yaml", "--pairs", tmp_path / "p.csv", "--dry-run"])
    assert result.exit_code == 2 and message in _one_line(result.output)
    assert {p for p in tmp_path.rglob("*")} == before
    assert not list(Path("/").glob("x_PWNED")) and not (tmp_path.parent / "x_PWNED").exists()


def test_download_folder_may_hold_one_plain_subfolder(tmp_path):
    from restorever.protocol import download_filename_problem, download_url_problem, validate_spec

    spec = {"protocol": "ok", "dataset": {"format": "pairs-csv", "download": [
        {"filename": "images/faces.tgz", "url": "https://example.org/faces.tgz", "sha256": None},
        {"filename": "pairs.txt", "url": "http://vis-www.cs.umass.edu/lfw/pairs.txt", "sha256": "0" * 64}]}}
    validate_spec(spec, source="ok.yaml")
    for bad in ("..", ".hidden", "a\\b", "a/../b", "/x", "C:x", "", None, "a/b/c", "x\x00y"):
        assert download_filename_problem(bad), bad
    for bad in ("file:///etc/passwd", "https:///nohost", "javascript:alert(1)", "ftp://h/x", "https://h/a b", 5):
        assert download_url_problem(bad), bad


def test_download_step_checks_entries_built_in_code(tmp_path):
    """A spec dict that skipped validate_spec (built in code) is checked again where the file would be written."""
    from restorever.data_root import download_dataset

    with pytest.raises(ProtocolError, match="plain file name"):
        download_dataset([{"filename": "../x", "url": "https://h/x"}], tmp_path / "data" / "p", "p")
    assert not (tmp_path / "data" / "x").exists()


# ------------------------------------------------------------------------------------- 2. transient detector failure

def _failing_mtcnn(monkeypatch, exc: BaseException, *, times: int = 1):
    """MTCNN raising ``exc`` on its first ``times`` calls (one image per call in a run), then working."""
    from restorever.detectors import MTCNNDetector

    original = MTCNNDetector._detect_batch
    calls = {"n": 0}

    def detect_batch(self, batch):
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc
        return original(self, batch)

    monkeypatch.setattr(MTCNNDetector, "_detect_batch", detect_batch)
    return calls


def _landmark_entries(cache: Path) -> list[np.ndarray]:
    store = ArrayCache(cache)
    out = []
    for path in sorted((cache / "landmarks").rglob("*.npz")) if (cache / "landmarks").exists() else []:
        data, status = store.check("landmarks", path.stem)
        assert status == "ok", status
        out.append(data)
    return out


def test_detector_failure_is_an_error_not_a_cached_no_face(tiny_data, reference_run, tmp_path, monkeypatch):
    csv, root = tiny_data
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = eval_args(csv, root, out, cache)
    _failing_mtcnn(monkeypatch, RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                                             "allocate memory: you tried to allocate 123456789 bytes"))
    result = _invoke(args)
    assert result.exit_code == 2
    line = _one_line(result.output)
    assert "mtcnn failed" in line and "not a 'no face found'" in line and "no face found by" not in line
    entries = _landmark_entries(cache)
    images = {path for row in csv.read_text().splitlines()[1:] for path in row.split(",")[:2]}
    assert len(entries) == len(images) - 1  # every other image was cached
    assert not any(np.isnan(e).any() for e in entries)  # nothing cached as "no face"
    monkeypatch.undo()
    result = _invoke(args, catch_exceptions=False)  # the fault is gone: the face is found, the run matches
    assert result.exit_code == 0, result.output
    assert run_scores(out)[0] == reference_run[0]
    assert check_run(out).ok


def test_detector_failure_with_skip_is_reported_and_retried(tiny_data, reference_run, tmp_path, monkeypatch):
    csv, root = tiny_data
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = eval_args(csv, root, out, cache, "--on-error", "skip")
    _failing_mtcnn(monkeypatch, NotImplementedError("Could not run 'aten::empty.memory_format' with arguments "
                                                    "from the 'Meta' backend"))
    result = _invoke(args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "results.json").read_text())
    skipped = record["protocol"]["skipped"]
    assert skipped and all("mtcnn failed" in s["reason"] for s in skipped)
    problems = check_run(out).problems  # recorded with its reason, and not a valid evaluation
    assert any("skipped because the detector failed" in p for p in problems), problems
    monkeypatch.undo()
    result = _invoke(args, catch_exceptions=False)  # retried, not remembered as "no face"
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results.json").read_text())["protocol"]["skipped"] == []
    assert run_scores(out)[0] == reference_run[0]


def test_out_of_memory_inside_the_detector_is_the_oom_line(tiny_data, tmp_path, monkeypatch):
    csv, root = tiny_data
    _failing_mtcnn(monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                   times=100)
    result = _invoke(eval_args(csv, root, tmp_path / "out", tmp_path / "cache"))
    assert result.exit_code == 2 and "out of memory" in _one_line(result.output)
    assert _landmark_entries(tmp_path / "cache") == []


@pytest.mark.parametrize("device, message", [("meta", "not 'meta'"), ("tpu", "not a device name"),
                                             ("cuda:99", "cuda"), ("xla", "not 'xla'")])
def test_devices_that_cannot_run_are_one_line(tiny_data, tmp_path, device, message):
    csv, root = tiny_data
    result = _invoke(eval_args(csv, root, tmp_path / "out", tmp_path / "cache", "--device", device))
    assert result.exit_code == 2 and message in _one_line(result.output).lower()
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line():
    from restorever.devices import resolve_device

    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the library on a machine without a GPU")
@pytest.mark.parametrize("factory, name", [("restorers", "none"), ("recognizers", "dlib")])
def test_library_factories_refuse_an_unavailable_device(factory, name):
    """create_restorer("none", device="cuda") used to succeed silently without a GPU (issue 13)."""
    import importlib

    module = importlib.import_module(f"restorever.{factory}")
    create = getattr(module, "create_restorer" if factory == "restorers" else "create_recognizer")
    for device in ("cuda", "tpu", "meta"):
        with pytest.raises(DeviceError):
            create(name, device=device)
    assert create(name, device="cpu") is not None


def test_resolve_device_has_one_home():
    """The pipeline, the stages and the recognizers share one resolve_device (restorever/devices.py)."""
    import restorever.devices
    import restorever.pipeline.evaluate
    import restorever.recognizers.arcface

    assert restorever.pipeline.evaluate.resolve_device is restorever.devices.resolve_device
    assert restorever.recognizers.arcface.resolve_device is restorever.devices.resolve_device
    assert str(restorever.devices.resolve_device("auto")) in ("cpu", "cuda")


# ------------------------------------------------------------------------------ 3. degradation.jsonl and mixed folders

def _truncate(run: Path, keep: int | None) -> None:
    path = run / "degradation.jsonl"
    if keep is None:
        path.unlink()
    else:
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:keep]))


@pytest.mark.parametrize("keep", [1, 0, None], ids=["first-line-only", "emptied", "deleted"])
def test_changed_degradation_file_is_detected(run_copy, keep):
    run, _ = run_copy
    assert check_run(run).ok
    _truncate(run, keep)
    problems = check_run(run).problems
    assert any("degradation.jsonl" in p for p in problems), problems


@pytest.mark.parametrize("keep", [1, 0], ids=["first-line-only", "emptied"])
def test_changed_degradation_file_is_detected_in_records_without_digests(run_copy, keep):
    """A record written before ``outputs`` existed: the line count is still checked against the pairs."""
    run, _ = run_copy
    _edit(run, lambda r: r.pop("outputs"))
    assert check_run(run).ok
    _truncate(run, keep)
    problems = check_run(run).problems
    assert any("record(s) for" in p for p in problems), problems


def test_other_runs_files_beside_results_json_are_detected(run_copy, tmp_path):
    run, _ = run_copy
    (run / "results.md").write_text((run / "results.md").read_text().replace("restorever results", "results"))
    problems = check_run(run).problems
    assert any("results.md: changed" in p for p in problems), problems


def test_failed_rerun_into_a_finished_folder_leaves_no_mix(tiny_data, run_copy, monkeypatch):
    """A rerun that fails inside write_run (disk full while drawing roc.png) leaves the previous complete set of
    outputs, byte for byte, and no staged file."""
    import restorever.reports.results as results_module
    from restorever.pipeline.cache import DiskFullError

    csv, root = tiny_data
    run, store = run_copy
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    def full(record, out):
        raise DiskFullError(f"{out}/roc.png: disk full while writing it")

    monkeypatch.setattr(results_module, "_roc_png", full)
    result = _invoke(eval_args(csv, root, run, store, "--scales", "8,16"))
    assert result.exit_code == 2 and "disk full" in _one_line(result.output)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert check_run(run).ok


def test_interrupted_commit_leaves_an_unfinished_run_not_a_mixed_one(tiny_data, run_copy, monkeypatch):
    """Killed between the renames: the old results.json is already gone, so the folder reads as unfinished."""
    csv, root = tiny_data
    run, store = run_copy
    real_replace = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        if Path(src).name.endswith(".staged"):  # the renames into place, after every file was staged
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    result = _invoke(eval_args(csv, root, run, store, "--scales", "8,16"))
    monkeypatch.undo()
    assert result.exit_code == 130 and calls["n"] == 2
    assert not (run / "results.json").exists() and not list(run.glob(".*staged*"))
    assert any("missing" in p for p in check_run(run).problems)
    result = _invoke(eval_args(csv, root, run, store, "--scales", "8,16"), catch_exceptions=False)
    assert result.exit_code == 0 and check_run(run).ok
    assert not list(run.glob(".*staged*"))


# ------------------------------------------------------------------------------------ 4. labels and skips vs protocol

def _flip_label(record: dict, i: int = 1) -> None:
    for cond in record["conditions"]:
        cond["scores"]["same"][i] = 1 - cond["scores"]["same"][i]
    _recompute_metrics(record)


def test_flipped_label_is_detected(run_copy):
    run, _ = run_copy
    _edit(run, _flip_label)
    problems = check_run(run).problems
    assert any("pairs_sha256" in p for p in problems), problems
    assert any("differ from protocol pairs-csv" in p for p in problems), problems
    assert not any("stored" in p and "recomputed" in p for p in problems)  # the metrics themselves agree


def test_flipped_label_is_detected_without_the_digest(run_copy):
    """A forger who also deletes protocol.pairs_sha256 is caught by the protocol's own files."""
    run, _ = run_copy

    def tamper(record):
        _flip_label(record)
        del record["protocol"]["pairs_sha256"]

    _edit(run, tamper)
    problems = check_run(run).problems
    assert any("differ from protocol pairs-csv" in p for p in problems), problems


def test_dropped_pair_behind_a_fake_no_face_skip_is_detected(run_copy):
    run, _ = run_copy

    def tamper(record):
        i = 0
        a, b = record["pairs"]["a"].pop(i), record["pairs"]["b"].pop(i)
        same, fold = record["conditions"][0]["scores"]["same"][i], record["conditions"][0]["scores"]["fold"][i]
        for cond in record["conditions"]:
            for key in ("same", "fold", "score"):
                cond["scores"][key].pop(i)
        reason = f"{b}: no face found by mtcnn"
        record["protocol"]["skipped"].append({"pair": 2, "a": a, "b": b, "reason": reason, "same": same,
                                              "fold": fold})
        record["protocol"]["failed_images"].append({"image": b, "reason": reason})
        record["protocol"]["pairs"] -= 1
        _recompute_metrics(record)

    _edit(run, tamper)
    problems = check_run(run).problems
    assert any("the skip is not genuine" in p for p in problems), problems


def test_genuine_no_face_skip_is_valid(tiny_data, reference_run, tmp_path):
    """A real image without a face (a blank frame) skipped with --on-error skip: the run validates, its landmark
    entry says "no face", and the pair is listed with its label."""
    csv, root = tiny_data
    data = tmp_path / "faces"
    shutil.copytree(root, data)
    Image.new("RGB", (160, 160), (128, 128, 128)).save(data / "blank.png")
    rows = csv.read_text().splitlines() + ["ben_afflek/ben_afflek_0001.jpg,blank.png,0"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    shutil.copytree(reference_run[3], tmp_path / "cache")
    out = tmp_path / "out"
    result = _invoke(eval_args(tmp_path / "pairs.csv", data, out, tmp_path / "cache", "--on-error", "skip"),
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "results.json").read_text())
    assert [(s["b"], s["same"]) for s in record["protocol"]["skipped"]] == [("blank.png", 0)]
    report = check_run(out)
    assert report.ok, report.problems
    assert report.checked["skips checked"] == 1


# -------------------------------------------------------------------------------------- 5. paths in results.json

@pytest.fixture(scope="module")
def run_with_examples(tiny_data, reference_run, tmp_path_factory):
    csv, root = tiny_data
    tmp = tmp_path_factory.mktemp("examples")
    shutil.copytree(reference_run[3], tmp / "cache")
    args = eval_args(csv, root, tmp / "out", tmp / "cache")
    args[args.index("--examples") + 1] = "2"
    result = _invoke(args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tmp / "out"


@pytest.mark.parametrize("path", ["ABS/secret.png", "../../secret.png", "examples/../../secret.png"])
@pytest.mark.parametrize("command", ["report", "grid"])
def test_example_paths_outside_the_run_folder_are_refused(run_with_examples, tmp_path, path, command):
    run = tmp_path / "deep" / "run"
    shutil.copytree(run_with_examples, run)
    Image.new("RGB", (64, 64), (255, 0, 0)).save(tmp_path / "secret.png")
    _edit(run, lambda r: r["examples"][0].update(clean=path.replace("ABS", str(tmp_path))))
    if command == "report":
        result = _invoke(["report", run])
    else:
        result = _invoke(["plot", "grid", run / "results.json", "-o", tmp_path / "grid.png"])
    assert result.exit_code == 2
    assert "absolute" in _one_line(result.output) or "escape" in result.output
    assert not (tmp_path / "grid.png").exists() and not (run / "report.html").exists()


def test_report_on_a_malformed_scale_is_one_line(run_with_examples, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_with_examples, run)
    _edit(run, lambda r: r["conditions"][1].update(scale="x8"))
    result = _invoke(["report", run])
    assert result.exit_code == 2 and "scale must be an integer" in _one_line(result.output)


# ------------------------------------------------------------------------------------------ 6. colliding outputs

def test_restore_refuses_two_inputs_with_one_output_name(faces_root, tmp_path):
    face = sorted(faces_root.rglob("*.jpg"))[0]
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    Image.open(face).convert("RGB").resize((512, 512)).save(tmp_path / "d1" / "face.png")
    Image.open(face).convert("RGB").resize((512, 512)).save(tmp_path / "d2" / "face.jpg")
    result = _invoke(["restore", tmp_path / "d1" / "face.png", tmp_path / "d2" / "face.jpg", "--restorer", "none",
                      "--aligned", "--out", tmp_path / "o"])
    assert result.exit_code == 2 and "would both be written to" in _one_line(result.output)
    assert not (tmp_path / "o").exists()


def test_degrade_refuses_two_images_with_one_output_name(tiny_data, tmp_path):
    csv, root = tiny_data
    data = tmp_path / "faces"
    shutil.copytree(root, data)
    jpg = sorted(data.rglob("*.jpg"))[0]
    Image.open(jpg).save(jpg.with_suffix(".png"))
    rel = str(jpg.relative_to(data))
    rows = [f"{rel},{Path(rel).with_suffix('.png')},1", f"{rel},{sorted(data.rglob('*.jpg'))[-1].relative_to(data)},0"]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    result = _invoke(["degrade", "--protocol", "pairs-csv", "--pairs", tmp_path / "p.csv", "--data-root", data,
                      "--side", "both", "--scales", "8", "--out", tmp_path / "o"])
    assert result.exit_code == 2 and "would both be written to" in _one_line(result.output)
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------- 7. memory bounds

def _zip_bomb(path: Path, size: int = 1 << 30) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        with zf.open("archive/data/0", "w", force_zip64=True) as fh:
            chunk = bytes(1 << 24)
            for _ in range(size // len(chunk)):
                fh.write(chunk)
    return path


def test_checkpoint_compression_bomb_is_refused_before_decompressing(tmp_path):
    from restorever.hub import load_checkpoint

    bomb = _zip_bomb(tmp_path / "bomb.pth")
    assert bomb.stat().st_size < 2 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(CheckpointLayoutError, match=r"declare 10737418\d\d bytes uncompressed"):
        load_checkpoint(bomb)
    assert time.perf_counter() - start < 2.0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 64, f"refusing the bomb allocated {grown_mib:.0f} MiB"
    result = _invoke(["restore", sorted(Path(__file__).parents[2].rglob("*.py"))[0], "--restorer", "vqfr-v2",
                      "--weights", bomb, "--out", tmp_path / "o"])
    assert result.exit_code == 2 and "refused before decompressing" in _one_line(result.output)


def test_real_checkpoints_are_not_refused(tmp_path):
    from restorever.hub import load_checkpoint

    state = {"w": torch.zeros(1 << 20), "b": torch.arange(10.0)}  # zeros: would compress 1000x if deflated
    torch.save(state, tmp_path / "ok.pth")
    loaded = load_checkpoint(tmp_path / "ok.pth")
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])


def test_devices_and_fifos_are_refused_by_the_image_reader(tmp_path):
    from restorever.images import read_file_bytes

    result = _invoke(["restore", "/dev/zero", "--restorer", "none", "--out", tmp_path / "o"])
    assert result.exit_code == 2 and "not a regular file" in _one_line(result.output)
    fifo = tmp_path / "face.jpg"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(ImageError, match="not a regular file"):
        read_file_bytes(fifo)  # opened non-blocking: no writer, no hang
    assert time.perf_counter() - start < 1.0


def test_oversized_image_file_is_refused_unread(tmp_path, monkeypatch):
    import restorever.images as images

    big = tmp_path / "big.jpg"
    big.write_bytes(bytes(4096))
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1024)
    with pytest.raises(ImageError, match="more than the 1024 allowed"):
        images.read_image(big)


def test_fifo_in_a_run_is_a_per_image_failure(tiny_data, tmp_path):
    csv, root = tiny_data
    data = tmp_path / "faces"
    shutil.copytree(root, data)
    victim = sorted(data.rglob("*.jpg"))[0]
    victim.unlink()
    os.mkfifo(victim)
    result = _invoke(eval_args(csv, data, tmp_path / "out", tmp_path / "cache"))
    assert result.exit_code == 2 and "not a regular file" in _one_line(result.output)
    assert victim.name in result.output


# ------------------------------------------------------------------------------------------- 8. one line, no trace

def _csv_rows(tiny_data) -> list[str]:
    return tiny_data[0].read_text().splitlines()


@pytest.mark.parametrize("case", ["fold-overflow", "folds-list", "alignment-int", "fallback-dict", "out-is-file",
                                  "out-under-file", "out-unwritable", "dlib-junk", "onnx-junk", "examples-negative",
                                  "latin1-csv"])
def test_hostile_options_and_files_are_one_line(tiny_data, tmp_path, case):
    csv, root = tiny_data
    rows = _csv_rows(tiny_data)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(rows) + "\n")
    protocol = "pairs-csv"
    extra: list = []
    out = tmp_path / "out"
    expected = ""
    if case == "fold-overflow":
        pairs.write_text("\n".join([rows[0] + ",fold"] + [r + (",99999999999999999999" if i else ",0")
                                                          for i, r in enumerate(rows[1:])]) + "\n")
        expected = "fold must be an integer"
    elif case in ("folds-list", "alignment-int", "fallback-dict"):
        body = {"folds-list": "folds: [3]", "alignment-int": "alignment: 5",
                "fallback-dict": "alignment: {fallback_landmarks: {a: 1}}"}[case]
        (tmp_path / "p.yaml").write_text(f"protocol: p\ndataset: {{format: pairs-csv}}\n{body}\n")
        protocol = tmp_path / "p.yaml"
        expected = {"folds-list": "folds must be a positive integer", "alignment-int": "alignment must be a mapping",
                    "fallback-dict": "five [x, y]"}[case]
    elif case == "out-is-file":
        out.write_text("x")
        expected = "exists and is not a folder"
    elif case == "out-under-file":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "run"
        expected = "is a file, not a folder"
    elif case == "out-unwritable":
        out = Path("/proc/restorever-cannot-write/run")
        expected = "cannot create or write the folder"
    elif case == "dlib-junk":
        (tmp_path / "junk").write_text("junk")
        extra = ["--recognizer", "dlib", "--recognizer-weights", tmp_path / "junk"]
        expected = "not a dlib face recognition model"
    elif case == "onnx-junk":
        (tmp_path / "g.onnx").write_bytes(os.urandom(3000))
        extra = ["--recognizer", "arcface-r50-ms1mv3", "--recognizer-weights", tmp_path / "g.onnx"]
        expected = "not an ONNX model"
    elif case == "examples-negative":
        extra = ["--examples", "-1"]
        expected = "-1"
    elif case == "latin1-csv":
        pairs.write_bytes("path_a,path_b,same\n\u00e9t\u00e9/a.jpg,b.jpg,1\n".encode("latin-1"))
        expected = "pairs.csv: not UTF-8 text"
    args = eval_args(pairs, root, out, tmp_path / "cache", *extra)
    args[args.index("--protocol") + 1] = str(protocol)
    result = _invoke(args)
    assert result.exit_code == 2, result.output
    if case == "examples-negative":  # click's own usage error: two lines of usage, then the reason
        assert "Traceback" not in result.output and expected in result.output
        return
    assert expected in _one_line(result.output)
    assert not (tmp_path / "cache" / "embedding").exists()


def test_utf8_bom_csv_is_read(tiny_data, tmp_path):
    from restorever.protocol import load_protocol

    csv, root = tiny_data
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + csv.read_bytes())
    proto = load_protocol("pairs-csv", data_root=root, pairs=tmp_path / "bom.csv")
    plain = load_protocol("pairs-csv", data_root=root, pairs=csv)
    assert proto.pairs.a == plain.pairs.a and proto.pairs.same.tolist() == plain.pairs.same.tolist()


def test_malformed_attribute_model_is_one_line(tmp_path):
    from restorever.attributes.predictor import FORMAT

    for i, bad in enumerate([{"format": FORMAT, "version": 1, "meta": 5, "tensors": {}},
                             {"format": FORMAT, "version": 1, "meta": "{}", "tensors": {}},
                             {"format": FORMAT, "version": "x", "meta": "{}", "tensors": {}},
                             {"format": FORMAT, "version": 1, "meta": '{"schema": 3}', "tensors": [1]}]):
        torch.save(bad, tmp_path / f"a{i}.pt")
        result = _invoke(["attributes", "show", tmp_path / f"a{i}.pt"])
        assert result.exit_code == 2 and "malformed attribute model" in _one_line(result.output)


def test_pickle_payload_is_one_line_without_unsafe_advice(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"params": Exploit()}, tmp_path / "payload.pth")
    result = _invoke(["restore", "/dev/null", "--restorer", "vqfr-v2", "--weights", tmp_path / "payload.pth",
                      "--out", tmp_path / "o"])
    assert result.exit_code == 2
    line = _one_line(result.output)
    assert "payload.pth" in line and "needs code to be unpickled" in line
    assert "weights_only=False" not in result.output and "weights_only` set to `False" not in result.output


def test_single_fold_is_one_warning_line(tiny_data, tmp_path):
    csv, root = tiny_data
    rows = _csv_rows(tiny_data)
    (tmp_path / "p.csv").write_text("\n".join([rows[0] + ",fold"] + [r + ",0" for r in rows[1:]]) + "\n")
    shutil.copytree(root, tmp_path / "faces")
    args = eval_args(tmp_path / "p.csv", tmp_path / "faces", tmp_path / "out", tmp_path / "cache", "--scales", "")
    result = _invoke(args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "only one fold" in line]
    assert warnings and all(line.startswith("warning: only one fold") for line in warnings)
    assert "UserWarning" not in result.output and "warnings.warn" not in result.output


# ---------------------------------------------------------------------------------------------- 9. wrong results

def _face_array(faces_root: Path) -> np.ndarray:
    return np.asarray(Image.open(sorted(faces_root.rglob("*.jpg"))[0]).convert("RGB"))


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(faces_root):
    grey8 = np.asarray(Image.fromarray(_face_array(faces_root)).convert("L"))
    want = np.repeat(grey8[..., None], 3, axis=-1)
    cases = {
        "png-16": _encode(Image.fromarray(grey8.astype(np.uint16) * 257), "PNG"),
        "tiff-16": _encode(Image.fromarray(grey8.astype(np.uint16) * 257), "TIFF"),
        "tiff-int32": _encode(Image.fromarray(grey8.astype(np.int32) * 257), "TIFF"),
        "tiff-float-unit": _encode(Image.fromarray(grey8.astype(np.float32) / 255), "TIFF"),
        "tiff-float-255": _encode(Image.fromarray(grey8.astype(np.float32)), "TIFF"),
    }
    for name, data in cases.items():
        got = decode_image(data, source=name)
        assert got.dtype == np.uint8 and got.shape == want.shape, name
        assert np.abs(got.astype(int) - want).max() <= 1, name  # not clipped to white, not black
    with pytest.raises(ImageError, match="expected"):
        decode_image(_encode(Image.fromarray(np.full((32, 32), 300.0, np.float32)), "TIFF"), source="hot.tiff")


@pytest.mark.parametrize("orientation, rotate", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                                 (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_is_applied(faces_root, orientation, rotate):
    upright = Image.fromarray(_face_array(faces_root))
    stored = upright.transpose(rotate)  # as a phone stores a sideways photo, with the tag that undoes it
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(stored, "PNG", exif=exif.tobytes())
    assert np.array_equal(decode_image(data, source="phone.png"), np.asarray(upright))


def test_rotated_photo_is_found_in_a_run(faces_root, tmp_path):
    """landmark_stage on an EXIF-rotated copy finds the same face as on the upright original, under its own key."""
    from restorever.images import decode_tag
    from restorever.pipeline.landmarks import landmark_stage
    from restorever.protocol import load_protocol

    upright = Image.fromarray(_face_array(faces_root))
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "data").mkdir()
    upright.save(tmp_path / "data" / "up.png")
    (tmp_path / "data" / "phone.png").write_bytes(_encode(upright.transpose(Image.Transpose.ROTATE_90), "PNG",
                                                          exif=exif.tobytes()))
    (tmp_path / "p.csv").write_text("up.png,phone.png,1\nphone.png,up.png,0\n")
    proto = load_protocol("pairs-csv", data_root=tmp_path / "data", pairs=tmp_path / "p.csv")
    info = landmark_stage(proto, ["up.png", "phone.png"], detector="mtcnn", device="cpu",
                          cache=ArrayCache(tmp_path / "cache"), progress=False)
    assert info["phone.png"].landmarks is not None, info["phone.png"].error
    assert np.abs(info["phone.png"].landmarks - info["up.png"].landmarks).max() < 1.0
    assert info["phone.png"].decode == "orient=6" and info["up.png"].decode is None
    assert decode_tag((tmp_path / "data" / "up.png").read_bytes()) is None


def test_limit_pairs_keeps_both_classes():
    from restorever.pipeline.evaluate import limit_pairs
    from restorever.protocol import parse_pairs_csv

    text = "\n".join([f"p{i}/a.jpg,p{i}/b.jpg,1" for i in range(10)] + [f"p{i}/a.jpg,q{i}/b.jpg,0" for i in range(10)])
    pairs = parse_pairs_csv(text)
    for n in (2, 3, 9, 10, 11, 19):
        kept = limit_pairs(pairs, n)
        assert len(kept) == n
        assert abs(int(kept.same.sum()) - (n - int(kept.same.sum()))) <= 1, (n, kept.same.tolist())


def test_duplicate_conditions_are_evaluated_once():
    from restorever.pipeline.evaluate import EvalConfig

    config = EvalConfig(protocol="pairs-csv", restorers=["none", "none"], scales=[8, 8, 4])
    config.validate()
    assert config.restorers == ["none"] and config.scales == [8, 4]


def test_old_format_cache_entry_copied_over_another_is_not_used(tmp_path):
    cache = ArrayCache(tmp_path)
    cache.put("embedding", "a" * 64, np.ones(3, np.float32))
    path = cache.path("embedding", "b" * 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.full(3, 7.0, np.float32)
    from restorever.pipeline.cache import _array_digest

    np.savez(path, data=data, sha256=np.array(_array_digest(data)))  # the layout before entries stored their key
    assert cache.check("embedding", "b" * 64)[1].startswith("corrupt: an old-format entry")
    assert cache.get("embedding", "b" * 64) is None and cache.corrupt == 1 and not path.exists()
    assert np.array_equal(cache.get("embedding", "a" * 64), np.ones(3, np.float32))


def test_validate_from_another_folder_still_checks_the_cache(tiny_data, reference_run, tmp_path, monkeypatch):
    """A run made with relative --out and --cache-dir, validated from elsewhere: the cache is found (recorded as an
    absolute path) and checked; an older record holding the relative path is resolved from the run folder."""
    csv, root = tiny_data
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(reference_run[3], work / "cache")
    monkeypatch.chdir(work)
    result = _invoke(eval_args(csv, root, Path("runs/a"), Path("cache")), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path)
    report = check_run(work / "runs" / "a")
    assert report.ok, report.problems
    assert report.checked["cache entries"] > 0
    _edit(work / "runs" / "a", lambda r: r["cache"].update(dir="cache"))  # as records were written before
    report = check_run(work / "runs" / "a")
    assert report.ok and report.checked["cache entries"] > 0, (report.problems, report.notes)


def test_record_lets_validate_check_a_run_whose_data_is_gone(tiny_data, reference_run, tmp_path):
    """Image hashes, decode tags and model ids are in results.json: with the data deleted, the cache is still
    checked in full (only the label check against the protocol's files becomes a note)."""
    csv, root = tiny_data
    data = tmp_path / "faces"
    shutil.copytree(root, data)
    shutil.copytree(reference_run[3], tmp_path / "cache")
    out = tmp_path / "out"
    assert _invoke(eval_args(csv, data, out, tmp_path / "cache"), catch_exceptions=False).exit_code == 0
    record = json.loads((out / "results.json").read_text())
    assert set(record["protocol"]["images_sha256"]) == set(record["pairs"]["a"]) | set(record["pairs"]["b"])
    ident = record["cache"]["identity"]
    assert ident["recognizer"]["name"] == "dlib" and "none" in ident["restorers"]
    assert all(c["similarity"] == "euclidean" for c in record["conditions"])
    shutil.rmtree(data)
    report = check_run(out)
    assert report.ok, report.problems
    assert report.checked["landmark entries"] + report.checked["cache entries"] == len(cache_entries(
        reference_run[3]))
    assert any("labels not checked against the protocol" in n for n in report.notes)


# ------------------------------------------------------------------------------- variants of the classes above

def test_restore_refuses_to_write_over_its_input(faces_root, tmp_path):
    face = tmp_path / "o" / "face.png"
    face.parent.mkdir()
    Image.open(sorted(faces_root.rglob("*.jpg"))[0]).convert("RGB").resize((512, 512)).save(face)
    before = face.read_bytes()
    result = _invoke(["restore", face, "--restorer", "none", "--aligned", "--out", tmp_path / "o"])
    assert result.exit_code == 2 and "is one of the inputs" in _one_line(result.output)
    assert face.read_bytes() == before


def test_changed_example_image_is_detected(run_with_examples, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_with_examples, run)
    assert check_run(run, check_cache=False).ok
    record = json.loads((run / "results.json").read_text())
    entry = record["examples"][0]
    shutil.copyfile(run / entry["clean"], run / next(iter(entry["images"].values())))
    problems = check_run(run, check_cache=False).problems
    assert any("changed since the run wrote it" in p and "examples/" in p for p in problems), problems


def test_outputs_entry_leaving_the_run_folder_is_a_problem(run_copy):
    run, _ = run_copy
    _edit(run, lambda r: r["outputs"].update({"examples/../../../etc/hostname": {"sha256": "0" * 64}}))
    problems = check_run(run).problems
    assert any("escape" in p for p in problems), problems


@pytest.mark.parametrize("body, message", [
    ("dataset: {format: lfw-pairs, pairs: pairs.txt, images: 5}", "dataset.images must be a non-empty list"),
    ("dataset: {format: lfw-pairs, pairs: pairs.txt, images: [lfw, 3]}", "dataset.images must be a non-empty list"),
    ("folds: true\ndataset: {format: pairs-csv}", "folds must be a positive integer"),
    ("folds: 100000\ndataset: {format: pairs-csv}", "folds must be a positive integer"),
    ("alignment: {fallback_landmarks: [[1, 2], [3, 4], [5, 6], [7, 8], [9, .nan]]}\ndataset: {format: pairs-csv}",
     "five [x, y]"),
    ("dataset: {format: pairs-csv, download: {filename: x, url: 'https://h/x'}}", "must be a list"),
    ("dataset: {format: pairs-csv, download: [x.tgz]}", "must be a mapping"),
])
def test_more_malformed_protocol_values_are_refused_at_load(tmp_path, body, message):
    from restorever.protocol import load_spec

    (tmp_path / "p.yaml").write_text(f"protocol: p\n{body}\n")
    with pytest.raises(ProtocolError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_spec(str(tmp_path / "p.yaml"))


def test_huge_protocol_file_is_refused_unread(tmp_path):
    from restorever.protocol import MAX_SPEC_BYTES, load_spec

    (tmp_path / "p.yaml").write_text("protocol: p\ndataset: {format: pairs-csv}\n# " + "x" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(ProtocolError, match="allowed for a protocol file"):
        load_spec(str(tmp_path / "p.yaml"))


@pytest.mark.parametrize("text", ["include: 5\n", b"protocol: \xff\n", "include: p.yaml\n"])
def test_unreadable_spec_is_one_line_through_eval(tiny_data, tmp_path, text):
    """eval first asks whether the spec is an identification one; a broken file must still end in one line."""
    csv, root = tiny_data
    path = tmp_path / "p.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    args = eval_args(csv, root, tmp_path / "out", tmp_path / "cache")
    args[args.index("--protocol") + 1] = str(path)
    result = _invoke(args)
    assert result.exit_code == 2 and "p.yaml" in _one_line(result.output)


def test_negative_seed_is_one_line_naming_the_option(tiny_data, tmp_path):
    csv, root = tiny_data
    result = _invoke(eval_args(csv, root, tmp_path / "out", tmp_path / "cache", "--seed", "-5"))
    assert result.exit_code == 2 and "--seed" in _one_line(result.output)


@pytest.mark.parametrize("exc, raised", [(RuntimeError("ONNXRuntimeError: Failed to allocate memory"), "DetectorError"),
                                         (MemoryError(), "DetectorError"),
                                         (RuntimeError("CUDA out of memory"), "RuntimeError")])
def test_scrfd_failure_is_an_error_not_no_face(exc, raised):
    from restorever.detectors import SCRFDDetector

    det = SCRFDDetector.__new__(SCRFDDetector)  # no model needed: the network call is what fails

    def detect_all(image):
        raise exc

    det.detect_all = detect_all
    with pytest.raises(Exception) as info:
        det.detect([np.zeros((64, 64, 3), np.uint8)])
    assert type(info.value).__name__ == raised


def test_gpu_index_beyond_the_machine_is_one_line(monkeypatch):
    from restorever.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceError, match=r"has 2 GPU\(s\) \(cuda:0..cuda:1\)"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:1") == torch.device("cuda:1")


@pytest.mark.parametrize("content, message", [(b'{"conditions": [1]}' + b" " * 10, "is not an object"),
                                              (b'{"a": "\xff"}', "not UTF-8"),
                                              (b"[" * 100_000 + b"]" * 100_000, "nested too deeply")])
def test_report_on_broken_results_is_one_line(tmp_path, content, message):
    (tmp_path / "results.json").write_bytes(content)
    result = _invoke(["report", tmp_path])
    assert result.exit_code == 2 and message in _one_line(result.output)


def test_bin_that_is_not_a_regular_file_is_refused(tmp_path):
    from restorever.protocol import read_insightface_bin

    os.mkfifo(tmp_path / "lfw.bin")
    start = time.perf_counter()
    with pytest.raises(ProtocolError, match="not a regular file"):
        read_insightface_bin(tmp_path / "lfw.bin")
    assert time.perf_counter() - start < 1.0

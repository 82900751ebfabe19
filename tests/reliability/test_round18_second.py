"""Round 18, second review: what the four round-18 reviews changed, read by one who wrote none of them. A missing
optional package is an input error (status 2, the pip command), not "unexpected ... please report it"; with stderr
a log file, a long stage or download writes a whole line a minute instead of nothing at all."""
from __future__ import annotations

import io
import logging
import sys

import pytest
from click.testing import CliRunner

from restorever import progress
from restorever.cli import cli
from restorever.errors import MissingDependencyError, RestoreverError


def test_a_missing_optional_package_names_its_install_with_status_2(lfw_root, tmp_path, monkeypatch):
    """Since unexpected exceptions became one line with status 1, `eval --recognizer facenet-vggface2` without
    facenet-pytorch said "error: unexpected ImportError: ... pip install ... (rerun with -vv for the traceback,
    and please report it)": a missing extra read as a bug to report. The facenet and ONNX-arcface recognizers now
    raise MissingDependencyError (a RestoreverError and an ImportError), as the detectors already did."""
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import facenet_pytorch -> ImportError
    result = CliRunner().invoke(cli, ["eval", "--recognizer", "facenet-vggface2", "--data-root", str(lfw_root),
                                      "--limit-pairs", "2", "--device", "cpu", "--out", str(tmp_path / "run"),
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the facenet recognizers need facenet-pytorch: "
                                                   "pip install 'restorever[mtcnn]'"), result.stderr
    assert "unexpected" not in result.stderr and "report" not in result.stderr
    assert not (tmp_path / "run" / "results.json").exists()


def test_the_onnx_engine_without_onnxruntime_is_a_missing_dependency(monkeypatch, tmp_path):
    from restorever.recognizers.arcface import CARDS, OnnxRecognizer

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"needs onnxruntime \(pip install onnxruntime") as info:
        OnnxRecognizer(next(iter(CARDS.values())), tmp_path / "model.onnx")
    assert isinstance(info.value, RestoreverError) and isinstance(info.value, ImportError)


def test_the_detectors_error_is_the_same_class():
    """One class for every missing optional package: the detectors' name for it still works."""
    from restorever import detectors

    assert detectors.MissingDependencyError is MissingDependencyError


def test_a_long_stage_in_a_log_file_writes_whole_lines(monkeypatch, tmp_path):
    """Round 18 drew bars only on a terminal, so a batch job's log showed nothing for hours (every stage of a full
    LFW run) and a first run's weight download of hundreds of MB looked hung. Off a terminal the bar is now a plain
    line at most once a minute (none for a stage that ends sooner): no carriage returns, still a sign of life."""
    from restorever.hub import download_file
    from restorever.pipeline.stages import progress_bar

    log = io.StringIO()  # not a terminal, as a batch job's stderr
    monkeypatch.setattr(sys, "stderr", log)
    assert list(progress_bar(range(3), 3, "landmarks", True)) == [0, 1, 2]
    assert log.getvalue() == ""  # a stage shorter than the interval: nothing at all
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0, raising=False)  # every step is "a minute later"
    assert list(progress_bar(range(3), 3, "landmarks", True)) == [0, 1, 2]
    src = tmp_path / "weights.bin"
    src.write_bytes(bytes(range(256)) * (3 * 4096 + 5))  # 3 MiB and a bit: four chunks
    download_file(src.as_uri(), tmp_path / "copy.bin", sha256=None, description="demo:model")
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[-1].startswith("demo:model: 3.15M/3.15M B (100 %)"), lines
    stage = [line for line in lines if line.startswith("landmarks: ")]
    assert stage[-1].startswith("landmarks: 3/3 batch (100 %) after "), stage
    assert len(stage) >= 3 and all(line.startswith("demo:model: ") for line in lines[len(stage):])


def test_no_progress_and_quiet_still_silence_the_log_lines(monkeypatch):
    from restorever.pipeline.stages import progress_bar

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    list(progress_bar(range(3), 3, "landmarks", False))  # --no-progress
    before = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # what -q sets
    try:
        list(progress_bar(range(3), 3, "landmarks", True))
    finally:
        logging.getLogger().setLevel(before)
    assert log.getvalue() == ""

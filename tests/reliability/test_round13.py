"""Round 13: ``restore.json`` compares the SCRFD model file (breakdown's paired difference interval is tested in
``tests/reports/test_breakdown.py``). The detector file is a tiny generated ONNX model standing in for
``det_10g.onnx``."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from restorever.cli import cli

from ..test_detectors import KPS_OFFSETS, _synthetic_scrfd


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_restore_refuses_to_resume_with_another_scrfd_file(tmp_path, monkeypatch):
    """restore.json named the detector (``scrfd``) but not its ONNX file: another ``det_10g.onnx`` under the same
    name finds other landmarks, yet a rerun kept the first file's outputs and restored the rest with the second
    (``kept 1``), a folder of two detectors' crops. The file's sha256 is now a compared setting for SCRFD: the swap is
    refused in one line with nothing changed, and the same file again resumes."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is needed for the scrfd detector")
    img = np.zeros((320, 320, 3), np.uint8)
    img[96:112, 64:80] = 255  # one bright stride-32 cell: the synthetic model's "face"
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(first), img)
    cv2.imwrite(str(second), np.roll(img, 32, axis=1))
    model = tmp_path / "det_10g.onnx"
    monkeypatch.setenv("RESTOREVER_SCRFD", str(model))
    out = tmp_path / "out"
    args = ["--restorer", "none", "--detector", "scrfd", "--detect", "--device", "cpu", "--out", out]

    _synthetic_scrfd(model, KPS_OFFSETS)
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    result = _invoke("restore", first, *args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "restore.json").read_text())["settings"]["detector_file"] == sha
    before = _tree(out)

    _synthetic_scrfd(model, KPS_OFFSETS + 0.5)  # the same path, another model: other landmarks
    other = hashlib.sha256(model.read_bytes()).hexdigest()
    result = _invoke("restore", first, second, *args)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"other settings (detector_file {sha!r} -> {other!r})" in result.output
    assert "--overwrite" in result.output and "new --out" in result.output
    assert _tree(out) == before

    _synthetic_scrfd(model, KPS_OFFSETS)  # the first file back (byte for byte): the run resumes
    result = _invoke("restore", first, second, *args)
    assert result.exit_code == 0, result.output
    assert "wrote 1 image(s)" in result.output and "kept 1 already restored" in result.output
    assert _tree(out)["a.png"] == before["a.png"]


def test_mtcnn_and_detectorless_settings_are_unchanged(tmp_path, monkeypatch):
    """Only a detector with a model file gets the key: MTCNN's weights come with the pinned facenet-pytorch, so an
    MTCNN folder's settings are what the previous release wrote (it is resumed after the upgrade, not refused);
    ``auto`` without an SCRFD file is MTCNN and gets no key, with one it gets the file's sha256."""
    from restorever.detectors import detector_file_sha256
    from restorever.pipeline.restore_record import run_settings

    monkeypatch.setenv("RESTOREVER_SCRFD", str(tmp_path / "det_10g.onnx"))
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    common = dict(restorer="none", weight_files={}, options={}, seed=0, alignment_fit="least-squares",
                  faces="center", min_face_size=32.0, aligned=None)
    old_keys = {"restorer", "weights_sha256", "restorer_options", "seed", "detector", "alignment_fit", "faces",
                "min_face_size", "aligned", "pixels_version"}
    for name in ("mtcnn", "mtcnn-batched", "auto"):
        settings = run_settings(detector=name, detector_file=detector_file_sha256(name), **common)
        assert set(settings) == old_keys, name
    (tmp_path / "det_10g.onnx").write_bytes(b"a stand-in model")
    assert run_settings(detector="auto", detector_file=detector_file_sha256("auto"), **common)["detector_file"] == \
        hashlib.sha256(b"a stand-in model").hexdigest()
    assert "detector_file" not in run_settings(detector="mtcnn", detector_file=detector_file_sha256("mtcnn"),
                                               **common)


def test_an_mtcnn_folder_of_the_previous_release_resumes(faces_root, tmp_path):
    """A restore.json written before this change (MTCNN, no ``detector_file``) is resumed, not refused."""
    photo = next(p for p in sorted((faces_root).rglob("*.jpg")))
    out = tmp_path / "out"
    assert _invoke("restore", photo, "--restorer", "none", "--device", "cpu", "--out", out).exit_code == 0
    record = json.loads((out / "restore.json").read_text())
    assert "detector_file" not in record["settings"]
    result = _invoke("restore", photo, "--restorer", "none", "--device", "cpu", "--out", out)
    assert result.exit_code == 0 and "kept 1 already restored" in result.output, result.output


def test_degrade_remakes_every_face_after_the_scrfd_file_changed(tmp_path, monkeypatch):
    """degrade.json needs no file key: each entry holds its face's landmarks (round 12 review), so another
    ``det_10g.onnx`` under the same name remakes every face whose landmarks it moves, and the folder equals a fresh
    run's with that file (a confirmation, not a fix: it passes on the code before round 13 too)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is needed for the scrfd detector")
    root = tmp_path / "data"
    root.mkdir()
    img = np.zeros((320, 320, 3), np.uint8)
    img[96:112, 64:80] = 255
    for k, name in enumerate(("a.png", "b.png")):
        cv2.imwrite(str(root / name), np.roll(img, 32 * k, axis=1))
    csv = tmp_path / "pairs.csv"
    csv.write_text("a.png,b.png,1\n")
    model = tmp_path / "det_10g.onnx"
    monkeypatch.setenv("RESTOREVER_SCRFD", str(model))

    def degrade(out):
        result = _invoke("degrade", "--protocol", "pairs-csv", "--pairs", csv, "--data-root", root, "--scales", "8",
                         "--detector", "scrfd", "--degrade-side", "both", "--device", "cpu", "--out", out)
        assert result.exit_code == 0, result.output
        return result.output

    _synthetic_scrfd(model, KPS_OFFSETS)
    degrade(tmp_path / "out")
    _synthetic_scrfd(model, KPS_OFFSETS + 0.5)
    assert "kept" not in degrade(tmp_path / "out")
    degrade(tmp_path / "fresh")
    assert _tree(tmp_path / "out") == _tree(tmp_path / "fresh")


def test_restore_names_a_setting_the_new_run_lacks(tmp_path, monkeypatch):
    """Round 15: ``--detector auto`` with an SCRFD file, then again after the file is gone (auto is now MTCNN): the
    rerun is refused, but the message listed only keys the new settings hold, so it read "other settings ()" and
    named nothing. The record's ``detector_file`` now appears as ``detector_file '<sha>' -> None``."""
    from restorever.pipeline.restore_record import RestoreRecord, run_settings
    from restorever.errors import RestoreverError

    common = dict(restorer="none", weight_files={}, options={}, seed=0, detector="auto",
                  alignment_fit="least-squares", faces="center", min_face_size=32.0, aligned=None)
    sha = "ab" * 32
    record = RestoreRecord(tmp_path, run_settings(detector_file=sha, **common), {}, overwrite=False)
    record.save()
    with pytest.raises(RestoreverError) as info:
        RestoreRecord(tmp_path, run_settings(detector_file=None, **common), {}, overwrite=False)
    assert f"other settings (detector_file {sha!r} -> None)" in str(info.value)
    # and the way round (auto was MTCNN, an SCRFD file appeared since): named as before
    (tmp_path / "restore.json").unlink()
    RestoreRecord(tmp_path, run_settings(detector_file=None, **common), {}, overwrite=False).save()
    with pytest.raises(RestoreverError, match=f"other settings \\(detector_file None -> {sha!r}\\)"):
        RestoreRecord(tmp_path, run_settings(detector_file=sha, **common), {}, overwrite=False)

"""Round 12, second review: what `--overwrite` may delete, and whether `degrade` resumes only what the same code
made. Records are crafted by hand as an adversary would; the resume check runs real LFW faces and MTCNN."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from restorever.pipeline import restore_record
from restorever.pipeline.restore_record import RECORD_VERSION, RestoreRecord


def _replaced(out: Path, names: dict[str, bytes]) -> RestoreRecord:
    """An ``--overwrite`` record over ``out`` whose replaced run lists ``names`` with these bytes' sha256."""
    inputs = {name: {"input": "x.jpg", "sha256": "0" * 64, "output_sha256": hashlib.sha256(data).hexdigest()}
              for name, data in names.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "restore.json").write_text(json.dumps({"record_version": RECORD_VERSION, "settings": {"seed": 0},
                                                  "inputs": inputs}))
    return RestoreRecord(out, {"seed": 1}, {}, overwrite=True)


@pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")
def test_overwrite_never_removes_through_a_symlinked_folder(tmp_path, caplog):
    """A folder inside OUT that is a symlink to a folder elsewhere (planted, or the user's "moved x16 to another
    disk"): the old code removed the file it led to when the record named ``x16/NAME.png`` with that file's
    sha256, i.e. a file outside OUT. Now nothing reached through a symlink is removed (a warning names it); a
    real folder's recorded file still is."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.png").write_bytes(b"the user's file")
    out = tmp_path / "out"
    (out / "x4").mkdir(parents=True)
    (out / "x4" / "a.png").write_bytes(b"restorever's output")
    os.symlink(elsewhere, out / "x16")
    record = _replaced(out, {"x16/precious.png": b"the user's file", "x4/a.png": b"restorever's output"})
    with caplog.at_level(logging.WARNING, logger="restorever"):
        removed = record.remove_stale(set())
    assert (elsewhere / "precious.png").read_bytes() == b"the user's file"
    assert removed == [out / "x4" / "a.png"] and not (out / "x4" / "a.png").exists()
    assert f"reached through the symlink {out / 'x16'}" in caplog.text


def test_overwrite_keeps_a_file_replaced_while_it_was_checked(tmp_path, monkeypatch, caplog):
    """The old code hashed the file, then unlinked whatever the name held by then: a file put in its place
    between the two (another program saving there) was deleted unread. Now the unlink happens only while the
    name still holds the file that was hashed (same device, inode, size and time)."""
    out = tmp_path / "out"
    out.mkdir()
    target = out / "a.png"
    target.write_bytes(b"restorever's output")
    record = _replaced(out, {"a.png": b"restorever's output"})
    real = hashlib.sha256

    class Swapping:  # the digest is taken after the bytes are read: swap the file in at that moment
        def __init__(self, *args):
            self._h = real(*args)

        def update(self, data):
            self._h.update(data)

        def hexdigest(self):
            tmp = out / "new.tmp"
            tmp.write_bytes(b"a new file saved by someone else")
            os.replace(tmp, target)
            return self._h.hexdigest()

    monkeypatch.setattr(restore_record.hashlib, "sha256", Swapping)
    with caplog.at_level(logging.WARNING, logger="restorever"):
        removed = record.remove_stale(set())
    assert removed == [] and target.read_bytes() == b"a new file saved by someone else"
    assert "replaced while it was being checked" in caplog.text


@pytest.mark.parametrize("name", ["a\0.png", "a\n/../../b.png", "C:\\b.png", "..\\b.png", "/tmp/b.png", "x/./b.png",
                                  "x//b.png", "b.PNG"])
def test_overwrite_ignores_crafted_names(tmp_path, name):
    """Names a hand-made record may hold (NUL, newline, backslashes, absolute, ``.``/``..``, another suffix):
    none removes anything, none raises."""
    (tmp_path / "b.png").write_bytes(b"data")
    (tmp_path / "b.PNG").write_bytes(b"data")
    out = tmp_path / "out"
    (out / "x").mkdir(parents=True)
    (out / "x" / "b.png").write_bytes(b"data")
    assert _replaced(out, {name: b"data"}).remove_stale(set()) == []
    assert (tmp_path / "b.png").exists() and (out / "x" / "b.png").exists() and (tmp_path / "b.PNG").exists()


def test_degrade_refuses_to_resume_a_folder_of_other_pixel_code(lfw_root, tmp_path, monkeypatch):
    """restore.json compares ``pixels_version``; degrade.json compared only the options, so a folder half made
    by a restorever whose alignment or degradation gave other pixels was resumed into a mix of both codes' PNGs
    (`kept 2`). Now the code versions are compared settings: such a rerun is refused in one line, nothing changed."""
    from click.testing import CliRunner

    from restorever.cli import cli

    out = tmp_path / "out"
    args = ["degrade", "--data-root", str(lfw_root), "--limit-pairs", "2", "--scales", "8", "--seed", "5",
            "--device", "cpu", "--out", str(out)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert json.loads((out / "degrade.json").read_text())["settings"]["pixels_version"]["degrade"] == 1
    monkeypatch.setattr(restore_record, "DEGRADE_PIXELS_VERSION", 2, raising=False)  # the next release's code
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "other settings (pixels_version" in result.output and "--overwrite" in result.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_degrade_names_the_leftover_pngs_of_a_photo_now_skipped(faces_root, tmp_path):
    """A photo degraded once and then replaced by a faceless picture is skipped on the rerun (`--on-error skip`),
    but its clean and x8 PNGs, made from the old picture, stayed in the folder without a word (skipped.json named
    only the photo), so a script reading `OUT/x8/**/*.png` took them for this photo's faces. They are still
    never deleted (as `restore` does), but a `note:` names them."""
    import shutil

    from click.testing import CliRunner
    from PIL import Image

    from restorever.cli import cli

    data = tmp_path / "data"
    shutil.copytree(faces_root / "madonna", data / "madonna")
    csv = tmp_path / "pairs.csv"
    csv.write_text("path_a,path_b,same\nmadonna/madonna_0001.jpg,madonna/madonna_0002.jpg,1\n"
                   "madonna/madonna_0003.jpg,madonna/madonna_0004.jpg,1\n")
    out = tmp_path / "out"
    args = ["degrade", "--protocol", "pairs-csv", "--pairs", str(csv), "--data-root", str(data), "--scales", "8",
            "--device", "cpu", "--on-error", "skip", "--out", str(out)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0 and "note:" not in first.output, first.output
    Image.new("RGB", (250, 250), (128, 128, 128)).save(data / "madonna" / "madonna_0004.jpg")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "note: 2 PNG(s) under skipped images' names are not made from those photos" in result.output
    assert "clean/madonna/madonna_0004.png, x8/madonna/madonna_0004.png" in result.output
    assert (out / "x8" / "madonna" / "madonna_0004.png").exists()  # never deleted
    assert list(json.loads((out / "manifest.json").read_text())["skipped"]) == ["madonna/madonna_0004.jpg"]


def test_readme_says_how_to_tell_an_unfinished_degrade_folder():
    """The one sign of an unfinished `degrade` folder (no manifest.json) was in `--help` and this file only; the
    README's degrade line, where a user scripting over the PNGs looks, said "rerun resumes" and nothing more."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (line,) = [line for line in readme.splitlines() if line.startswith("restorever degrade ")]
    assert "without manifest.json is unfinished" in line


def test_degrade_remakes_faces_whose_landmarks_moved(lfw_root, tmp_path, monkeypatch):
    """The crop is placed by the landmarks, which the record did not hold: landmarks that move between two runs
    with the same options (another SCRFD file under the same name: the landmark cache is keyed by its sha256)
    gave `kept 2` and a folder whose PNGs do not match its own manifest.json. Each entry
    now holds its face's landmarks; a face whose landmarks moved is made again, and the folder equals a fresh
    run's."""
    from click.testing import CliRunner

    from restorever.cli import cli
    from restorever.pipeline import landmarks as stage

    def args(out):
        return ["degrade", "--data-root", str(lfw_root), "--limit-pairs", "2", "--scales", "8", "--seed", "5",
                "--device", "cpu", "--out", str(out)]

    out = tmp_path / "out"
    assert CliRunner().invoke(cli, args(out)).exit_code == 0
    real = stage.landmark_stage

    def moved(*a, **k):  # as another detector file would find them: half a pixel to the right
        info = real(*a, **k)
        for v in info.values():
            if v.landmarks is not None:
                v.landmarks = v.landmarks + np.float32([0.5, 0.0])
        return info

    monkeypatch.setattr(stage, "landmark_stage", moved)
    result = CliRunner().invoke(cli, args(out))
    assert result.exit_code == 0 and "wrote 2 faces" in result.output and "kept" not in result.output, result.output
    fresh = tmp_path / "fresh"
    assert CliRunner().invoke(cli, args(fresh)).exit_code == 0

    def tree(folder):
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    assert tree(out) == tree(fresh)

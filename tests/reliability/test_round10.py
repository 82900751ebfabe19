"""Round 10: `restorever degrade` and `restorever restore` used as standalone tools on real photos."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from restorever.cli import cli


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _photo(faces_root: Path, person: str = "madonna", n: int = 1) -> Path:
    return faces_root / person / f"{person}_{n:04d}.jpg"


def test_restore_skips_a_file_that_is_not_an_image_when_told_to(faces_root, tmp_path):
    """`restore photos/*` with a stray text file and --on-error skip stopped with exit 2 on that file (only faceless
    photos were skipped); now it is skipped with its reason, and without skip nothing is written."""
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    photo = _photo(faces_root)
    result = _invoke("restore", photo, notes, "--restorer", "none", "--device", "cpu", "--out", tmp_path / "a")
    assert result.exit_code == 2 and "not an image format Pillow reads" in result.output
    assert "nothing written" in result.output and not (tmp_path / "a").exists()
    result = _invoke("restore", photo, notes, "--restorer", "none", "--device", "cpu", "--on-error", "skip",
                     "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert f"skipped {notes}: cannot decode image" in result.output and "skipped 1" in result.output
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [photo.stem + ".png"]

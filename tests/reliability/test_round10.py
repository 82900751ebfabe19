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


def test_restore_reports_photos_with_several_faces_and_tiny_faces(faces_root, tmp_path):
    """A group photo had only its most central face restored, and a face a few dozen pixels wide was enlarged x9 and
    restored, both without a word; each is now a note on stderr (the photo is still written), and an ordinary
    photo gets none."""
    madonna, elton = (Image.open(_photo(faces_root, p)).convert("RGB") for p in ("madonna", "elton_john"))
    pair = Image.new("RGB", (300, 150))
    pair.paste(madonna, (0, 0))
    pair.paste(elton, (150, 0))
    pair.save(tmp_path / "pair.png")
    madonna.resize((30, 30), Image.BICUBIC).save(tmp_path / "tiny.png")
    result = _invoke("restore", tmp_path / "pair.png", tmp_path / "tiny.png", _photo(faces_root), "--restorer",
                     "none", "--device", "cpu", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2, result.output
    assert f"{tmp_path / 'pair.png'}: 2 faces found; only the one nearest the centre was restored" in notes[0]
    assert f"{tmp_path / 'tiny.png'}: the face spans only about" in notes[1] and "enlarged x" in notes[1]
    assert "2 note(s) above" in result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["madonna_0001.png", "pair.png", "tiny.png"]


def test_restore_keeps_the_alpha_channel_of_a_transparent_png(faces_root, tmp_path):
    """An RGBA photo came back as RGB with its transparent band turned into the stored colours (black here) without
    a word; now the output is RGBA with the input's alpha exactly, the colours restored, and a note says so."""
    rgba = np.asarray(Image.open(_photo(faces_root)).convert("RGBA").resize((300, 300), Image.BICUBIC)).copy()
    rgba[:50, :, 3] = 0
    rgba[:50, :, :3] = 0
    rgba[50:60, :, 3] = 128
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    result = _invoke("restore", tmp_path / "cut.png", "--restorer", "none", "--device", "cpu", "--out",
                     tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "alpha channel (transparency) was copied unchanged" in result.output
    out = Image.open(tmp_path / "o" / "cut.png")
    assert out.mode == "RGBA"
    got = np.asarray(out)
    assert np.array_equal(got[..., 3], rgba[..., 3])
    assert np.abs(got[..., :3].astype(int) - rgba[..., :3]).mean() < 2  # colours: the photo, face pasted back

"""A second review of `restorever restore`'s record and resume (restore.json), on real faces with `none` and MTCNN."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from restorever.cli import cli


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _photo(faces_root: Path, person: str = "madonna", n: int = 1) -> Path:
    return faces_root / person / f"{person}_{n:04d}.jpg"


@pytest.mark.parametrize("damage", ["inputs list", "entry string", "settings string"])
def test_a_damaged_record_is_one_line_naming_it(faces_root, tmp_path, damage):
    """A restore.json whose `inputs` was a list, or held a string entry, stopped the rerun with a bare
    AttributeError traceback or "dictionary update sequence element #0 ..." that named neither the file nor the fix."""
    out = tmp_path / "o"
    photo = _photo(faces_root)
    assert _invoke("restore", photo, "--restorer", "none", "--device", "cpu", "--out", out).exit_code == 0
    record = json.loads((out / "restore.json").read_text())
    if damage == "inputs list":
        record["inputs"] = ["madonna_0001.png"]
    elif damage == "entry string":
        record["inputs"]["madonna_0001.png"] = "done"
    else:
        record["settings"] = "none"
    (out / "restore.json").write_text(json.dumps(record))
    before = (out / "madonna_0001.png").read_bytes()
    result = _invoke("restore", photo, "--restorer", "none", "--device", "cpu", "--out", out)
    assert result.exit_code == 2 and not isinstance(result.exception, (AttributeError, TypeError)), result.output
    assert "restore.json: damaged record" in result.output and "delete it or choose a new --out" in result.output
    assert (out / "madonna_0001.png").read_bytes() == before


def test_names_in_the_record_are_never_written_to(faces_root, tmp_path):
    """A hostile entry name ("../x.png") in restore.json is only carried along: outputs are named by the inputs."""
    out = tmp_path / "a" / "o"
    photo = _photo(faces_root)
    assert _invoke("restore", photo, "--restorer", "none", "--device", "cpu", "--out", out).exit_code == 0
    record = json.loads((out / "restore.json").read_text())
    record["inputs"]["../x.png"] = dict(record["inputs"]["madonna_0001.png"])
    (out / "restore.json").write_text(json.dumps(record))
    (out / "madonna_0001.png").unlink()
    result = _invoke("restore", photo, "--restorer", "none", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "a" / "x.png").exists() and (out / "madonna_0001.png").is_file()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "replaced"])
def test_an_output_damaged_or_replaced_since_is_restored_again(faces_root, tmp_path, damage):
    """Resume kept any output whose file existed: a PNG truncated or overwritten by hand (or another picture saved
    under its name) was counted as "already restored" and left in the folder. The record now holds each output's
    sha256, and a file that no longer has it is restored again (the same bytes as the first run)."""
    out = tmp_path / "o"
    first, second = _photo(faces_root), _photo(faces_root, "elton_john")
    assert _invoke("restore", first, second, "--restorer", "none", "--device", "cpu", "--out", out).exit_code == 0
    good = (out / "madonna_0001.png").read_bytes()
    kept = (out / "elton_john_0001.png").stat().st_mtime_ns
    if damage == "truncated":
        (out / "madonna_0001.png").write_bytes(good[:2000])
    elif damage == "garbage":
        (out / "madonna_0001.png").write_bytes(b"not a png")
    else:
        Image.open(second).save(out / "madonna_0001.png")
    result = _invoke("restore", first, second, "--restorer", "none", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    assert "wrote 1 image(s)" in result.output and "kept 1 already restored" in result.output
    assert (out / "madonna_0001.png").read_bytes() == good
    assert (out / "elton_john_0001.png").stat().st_mtime_ns == kept  # an intact output is still kept untouched
    entry = json.loads((out / "restore.json").read_text())["inputs"]["madonna_0001.png"]
    assert entry["output_sha256"] == hashlib.sha256(good).hexdigest()


def test_a_skipped_input_names_the_earlier_output_left_under_its_name(faces_root, tmp_path):
    """An input restored once and then replaced by a faceless picture was skipped on the rerun, while the folder
    kept OUT/NAME.png restored from its old content without a word (restore.json said only "skipped"), so a
    downstream script reading OUT/*.png took it for this input's restoration. The output is still never deleted,
    but a note on stderr and in the record says it does not come from this input."""
    src, out = tmp_path / "s.png", tmp_path / "o"
    Image.open(_photo(faces_root)).save(src)
    assert _invoke("restore", src, "--restorer", "none", "--device", "cpu", "--out", out).exit_code == 0
    Image.new("RGB", (100, 100), (128, 128, 128)).save(src)
    result = _invoke("restore", src, "--restorer", "none", "--device", "cpu", "--on-error", "skip", "--out", out)
    assert result.exit_code == 0 and "skipped 1" in result.output, result.output
    assert "s.png is not this input's restoration (an earlier run's output" in result.output
    assert (out / "s.png").is_file()
    entry = json.loads((out / "restore.json").read_text())["inputs"]["s.png"]
    assert "no face found" in entry["skipped"] and "left in the folder" in entry["notes"][0]
    fresh = _invoke("restore", src, "--restorer", "none", "--device", "cpu", "--on-error", "skip", "--out",
                    tmp_path / "p")
    assert "note:" not in fresh.output  # no output under its name: nothing to say


def test_degrade_manifest_names_the_source_photos_from_any_folder(lfw_root, tmp_path, monkeypatch):
    """manifest.json recorded --data-root as typed: run with a relative one, it named nothing to a replay (or a
    reader) in another folder. It now holds the absolute path (a symlink's own name kept), and every recorded item
    is a file under it."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "lfw").symlink_to(lfw_root, target_is_directory=True)
    monkeypatch.chdir(tmp_path / "work")
    result = _invoke("degrade", "--data-root", "lfw", "--limit-pairs", "2", "--scales", "4", "--device", "cpu",
                     "--out", "deg")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "work" / "deg" / "manifest.json").read_text())
    monkeypatch.chdir(tmp_path)
    root = Path(manifest["data_root"])
    assert root == tmp_path / "work" / "lfw" and root.is_absolute()
    assert manifest["faces"] and all((root / item).is_file() for item in manifest["faces"])


@pytest.mark.parametrize("size", ["nan", "inf"])
def test_min_face_size_must_be_finite(faces_root, tmp_path, size):
    """FloatRange(min=0) let nan through (the photo then failed with "no face of at least nan px") and inf (written to
    restore.json as Infinity, which is not JSON)."""
    out = tmp_path / "o"
    result = _invoke("restore", _photo(faces_root), "--restorer", "none", "--device", "cpu", "--faces", "all",
                     "--min-face-size", size, "--out", out)
    assert result.exit_code == 2 and "--min-face-size" in result.output and "finite" in result.output, result.output
    assert not out.exists()


def test_a_folder_made_by_other_pixel_code_is_not_resumed(faces_root, tmp_path, monkeypatch):
    """The record compared settings but not the code that makes the pixels: a folder started before a change of the
    paste-back (e.g. the sharing of overlapping faces' pixels) would have been resumed into a mix of both."""
    from restorever.pipeline import restore_record

    out = tmp_path / "o"
    args = ("restore", _photo(faces_root), _photo(faces_root, n=2), "--restorer", "none", "--device", "cpu",
            "--out", out)
    assert _invoke(*args).exit_code == 0
    assert json.loads((out / "restore.json").read_text())["settings"]["pixels_version"] == \
        restore_record.PIXELS_VERSION
    monkeypatch.setattr(restore_record, "PIXELS_VERSION", restore_record.PIXELS_VERSION + 1)
    result = _invoke(*args)
    assert result.exit_code == 2 and "pixels_version" in result.output and "--overwrite" in result.output, \
        result.output

"""A second review of `restorever restore`'s record and resume (restore.json), on real faces with `none` and MTCNN."""
from __future__ import annotations

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

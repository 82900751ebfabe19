"""Round 23, twenty-second mutation pass (image reading, the protocol linter, figure files): tests that kill the
mutants which survived the run's lists (docs/reliability.md, "Round 23: mutation testing, twenty-second pass")."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorever.errors import ImageError
from restorever.images import check_faces, decode_image, decode_tag
from restorever.pipeline.protocol_defaults import protocol_default
from restorever.validate.protocols import validate_protocol_file


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def test_an_integer_image_one_past_65535_is_refused_and_65535_is_white():
    """The 16-bit ceiling is inclusive: a 32-bit integer TIFF whose largest value is 65,535 is scaled by 255/65535
    (its top is white), one whose largest value is 65,536 has no known scale and is refused."""
    ramp = np.linspace(0, 65535, 32 * 32).round().astype(np.int32).reshape(32, 32)
    got = decode_image(_encoded(ramp, "TIFF"), source="i32.tiff")
    assert got.shape == (32, 32, 3) and got.max() == 255 and got.min() == 0
    ramp[-1, -1] = 65536
    with pytest.raises(ImageError, match=r"integer image with values in \[0, 65536\]; expected 0\.\.255 or 0\.\.65535"):
        decode_image(_encoded(ramp, "TIFF"), source="i32.tiff")


@pytest.mark.parametrize("array, mode", [
    (np.linspace(0, 65535, 32 * 32).astype(np.int32).reshape(32, 32), "I"),
    (np.linspace(0, 1, 32 * 32).astype(np.float32).reshape(32, 32), "F"),
])
def test_a_32_bit_image_is_tagged_by_its_mode_because_its_decoding_is_not_pillows(array, mode):
    """A 32-bit integer or float TIFF is scaled by decode_image, not converted as Pillow converts it (which clips):
    its pixels differ from the 8-bit decoding of earlier versions, so its decode tag (part of the landmark cache
    key) must name its mode, or cached landmarks of the old decoding would be reused. A plain 8-bit PNG has none."""
    data = _encoded(array, "TIFF")
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == mode
        pillows = np.asarray(im.convert("RGB"))
    assert not np.array_equal(decode_image(data, source="deep.tiff"), pillows)
    assert decode_tag(data) == f"mode={mode}"
    assert decode_tag(_encoded(np.zeros((32, 32, 3), np.uint8), "PNG")) is None


@pytest.mark.parametrize("channels", [1, 4])
def test_a_batch_of_grey_or_rgba_faces_is_refused_by_its_shape(channels):
    """Four dimensions are not enough: a batch of grey (1 channel) or RGBA (4 channels) faces of the right size is
    refused naming its shape, before a network reads a fourth channel as colour or broadcasts a single one."""
    faces = torch.rand(2, channels, 512, 512)
    with pytest.raises(ValueError, match=rf"faces: expected shape \[B, 3, H, W\], got \(2, {channels}, 512, 512\)"):
        check_faces(faces, 512, name="faces")
    check_faces(torch.rand(2, 3, 512, 512), 512, name="faces")


def _lint(tmp_path: Path, dataset: str, extra: str = "", name: str = "mine") -> tuple[list[str], list[str]]:
    """Problems and notes of a one-format protocol file ``mine.yaml`` whose dataset mapping is ``dataset``."""
    path = tmp_path / "mine.yaml"
    path.write_text(f"protocol: {name}\nversion: 1\ndataset: {dataset}\n{extra}")
    notes: list[str] = []
    return [p.split(": ", 1)[1] for p in validate_protocol_file(path, notes=notes)], notes


def test_a_null_seed_is_named_because_a_run_would_take_no_seed(tmp_path):
    """``seed: null`` would be read as the protocol's seed None (not the code default 0): the linter names it, and the
    loader refuses it in one line. The loader let it through before, and the run then stopped with an unexpected
    ``TypeError`` (found writing this test)."""
    from restorever.errors import ProtocolError
    from restorever.protocol import load_protocol

    assert protocol_default("seed", {"seed": None}) is None
    assert _lint(tmp_path, "{format: pairs-csv}", "seed: null\n")[0] == [
        "seed must be an integer from 0 to 2**63 - 1, got null (leave the key out for the default, 0)"]
    assert _lint(tmp_path, "{format: pairs-csv}", "seed: 3\n") == ([], [])
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a/1.jpg,a/2.jpg,1\n")
    path = tmp_path / "null_seed.yaml"
    path.write_text("protocol: null-seed\nversion: 1\ndataset: {format: pairs-csv}\nseed: null\n")
    with pytest.raises(ProtocolError, match=r"null_seed.yaml: seed must be an integer .*got null \(leave the key out"):
        load_protocol(str(path), pairs=str(pairs), data_root=str(tmp_path))


def test_a_download_whose_extract_is_not_a_boolean_is_named(tmp_path):
    dataset = ("{format: pairs-csv, download: [{filename: a.zip, url: 'https://example.org/a.zip', sha256: null, "
               "extract: %s}]}")
    assert _lint(tmp_path, dataset % "'yes'")[0] == ["dataset.download[0]: extract must be true or false"]
    assert _lint(tmp_path, dataset % "true") == ([], [])


def test_a_scoring_section_without_a_similarity_lints_clean(tmp_path):
    """``similarity`` is optional (the recognizer's own by default): a scoring section of a threshold only is not
    a problem, and not a crash of the linter."""
    assert _lint(tmp_path, "{format: pairs-csv}", "scoring: {threshold: kfold_max_accuracy}\n") == ([], [])


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
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [photo.stem + ".png", "restore.json"]


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
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["madonna_0001.png", "pair.png", "restore.json",
                                                                  "tiny.png"]


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


def test_degrade_manifest_replays_every_written_face_byte_for_byte(lfw_root, tmp_path):
    """params.jsonl did not reproduce the set: its parameters applied to clean/*.png missed the written x4/x16 PNGs
    by up to 16 grey levels on up to 15 % of the pixels, because the degradation runs on the unquantised aligned
    crop (as eval does). manifest.json now records the options and each face's landmarks, and re-aligning the
    source photo with them and applying the recorded parameters gives every PNG byte for byte."""
    import io
    import json

    from restorever.degradation import Degradation
    from restorever.degradation_params import DegradationParams
    from restorever.images import read_image, to_tensor, to_uint8
    from restorever.pipeline.stages import align_faces

    out = tmp_path / "deg"
    result = _invoke("degrade", "--data-root", lfw_root, "--limit-pairs", "3", "--scales", "4,16", "--seed", "5",
                     "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("degradation", "scales", "seed", "degrade_side", "detector", "alignment_fit")} \
        == {"degradation": "difface-test", "scales": [4, 16], "seed": 5, "degrade_side": "probe",
            "detector": "mtcnn", "alignment_fit": "least-squares"}
    records = [json.loads(line) for line in (out / "params.jsonl").read_text().splitlines()]
    assert len(records) == 2 * len(manifest["faces"]) == 6

    def png(array) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    for r in records:
        face = manifest["faces"][r["item"]]
        photo = to_tensor([read_image(Path(manifest["data_root"]) / r["item"])])
        crop, _ = align_faces([photo[0]], [face["landmarks"]], "cpu", fit=manifest["alignment_fit"])
        params = DegradationParams.from_records([{k: v for k, v in r.items() if k != "item"}])
        low = Degradation(manifest["degradation"]).apply(crop, params)
        name = Path(r["item"]).with_suffix(".png")
        assert png(to_uint8(crop)[0]) == (out / "clean" / name).read_bytes(), r["item"]
        assert png(to_uint8(low)[0]) == (out / f"x{r['scale']}" / name).read_bytes(), (r["item"], r["scale"])

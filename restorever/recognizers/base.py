"""The recognizer interface."""
from __future__ import annotations

import torch

from ..errors import WeightsHashError
from ..frozen import FrozenModel
from ..hub import ModelCard, sha256_file
from ..images import check_faces
from ..precision import numerics

__all__ = ["Recognizer", "check_inputs", "check_landmarks", "checked_found_file", "template_crop"]


class Recognizer(FrozenModel):
    """Face embedder: aligned ffhq_512 faces plus their landmarks in, raw embeddings out.

    ``similarity`` says how two embeddings are compared: ``"cosine"`` or ``"euclidean"`` (scores are then the
    negative distance, so higher always means more similar).
    """

    card: ModelCard
    embedding_dim: int
    similarity: str = "cosine"

    def input_crop(self) -> dict | None:
        """How :meth:`embed` cuts the network's input from an aligned face, for results.json's
        ``setup.recognizer.input_crop`` and the methods text: ``{"method": "template", "template": NAME,
        "size": [w, h], "landmarks": N}`` (a similarity fit of the face's landmarks to an alignment template), or a
        backend's own description with ``method`` and ``size``. ``None`` (the default: a plugin that does not
        override it) where the recognizer does not say; the methods text then leaves the sentence out."""
        return None

    def numerics(self, device: torch.device) -> dict | None:
        """Weight dtypes and autocast dtype on ``device`` (:func:`restorever.precision.numerics`): results.json's
        ``setup.precision``; None where no torch weights compute (dlib, onnxruntime)."""
        return numerics(self, None)

    def embed(self, faces: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """``faces`` ``[B,3,512,512]`` float RGB [0,1] and ``landmarks`` ``[B,5,2]`` (px in the crop) ->
        ``[B,D]`` float32 embeddings."""
        raise NotImplementedError


def template_crop(template: str) -> dict:
    """:meth:`Recognizer.input_crop` of a recognizer that crops with :func:`restorever.alignment.crop_to_template`:
    the template's name, size ``[w, h]`` in pixels and number of landmarks."""
    from ..alignment import get_template

    tpl = get_template(template)
    return {"method": "template", "template": tpl.name, "size": [int(v) for v in tpl.size],
            "landmarks": len(tpl.points)}


def checked_found_file(card: ModelCard, path, folder: str):
    """``path``, a file of ``card`` found in another tool's ``folder`` (facenet-pytorch's ``$TORCH_HOME``,
    ``~/.insightface``) rather than given by the user: where the card publishes a sha256 the file must have it, as a
    file in restorever's own cache must. :class:`WeightsHashError` names the file and the two ways out."""
    expected = card.weights["model"].sha256
    if expected:
        actual = sha256_file(path)
        if actual != expected.lower():
            raise WeightsHashError(f"{path} (found in {folder}) has sha256 {actual}, but {card.name}'s released "
                                   f"file has {expected}: delete or replace it, or pass it with --recognizer-weights "
                                   f"to use it anyway")
    return path


def check_landmarks(landmarks: torch.Tensor, batch: int) -> None:
    """``landmarks`` must be a ``[batch, 5, 2]`` tensor (pixels in the face crop); ValueError otherwise."""
    if not isinstance(landmarks, torch.Tensor) or tuple(landmarks.shape) != (batch, 5, 2):
        shape = tuple(landmarks.shape) if isinstance(landmarks, torch.Tensor) else type(landmarks).__name__
        raise ValueError(f"landmarks: expected a [{batch}, 5, 2] tensor of (x, y) pixels in the face crop, got {shape}")


def check_inputs(faces: torch.Tensor, landmarks: torch.Tensor) -> None:
    """The input contract of :meth:`Recognizer.embed`: ``faces`` ``[B, 3, H, W]`` float RGB in [0, 1] and
    ``landmarks`` ``[B, 5, 2]``; TypeError/ValueError naming the argument otherwise."""
    check_faces(faces, None, name="faces")
    check_landmarks(landmarks, faces.shape[0])

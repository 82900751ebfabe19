"""insightface ``genderage.onnx`` (in the buffalo_l / buffalo_s / antelopev2 packs): gender and age from pixels.

Used only when its file is present (``--attribute-weights FILE``, or ``<cache>/weights/insightface-genderage/
genderage.onnx``): the packs cannot be downloaded automatically (non-commercial licence, zip archives).

Preprocessing, as insightface's ``model_zoo.attribute.Attribute.get``: a square crop centred on the detector box
centre, scale ``96 / (1.5 * max(w, h))``, no rotation, 96x96 output with a black border; RGB bytes 0..255 with mean 0
and std 1 (the graph normalises internally). Output ``[1, 3]``: ``[0:2]`` gender scores (0 = female, 1 = male; a
softmax gives probabilities) and ``[2]`` = age / 100.

restorever has no detector box for an aligned ffhq_512 face, so the box is a fixed rectangle in template coordinates
(:data:`FFHQ_DETECTOR_BOX`, an approximation of an SCRFD box around the template's landmarks), moved to the face by
the similarity that maps the template landmarks onto the face's landmarks. Age groups: the point estimate with a
Gaussian uncertainty of ``age_sigma`` years (default 6, an assumption, not a calibrated value) integrated over each
group.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointLayoutError, WeightsNotFoundError, with_weights_flag
from ..hub import ModelCard, WeightFile
from .groups import AttributeSchema

logger = logging.getLogger(__name__)

CARDS = {
    "insightface-genderage": ModelCard(
        name="insightface-genderage",
        arch="insightface.genderage",
        weights={"model": WeightFile(
            "genderage.onnx", None, None,
            "insightface model zoo: non-commercial research use only",
            origin_url="https://github.com/deepinsight/insightface/tree/master/model_zoo (buffalo_l.zip)")},
        template="box_1.5x",
        input_size=96,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        channel_order="RGB",
        description="insightface genderage.onnx (gender + age regression, 96x96 box crop); needs the file",
    ),
}

#: (left, top, right, bottom) of an approximate face-detector box in ffhq_512 template pixels
FFHQ_DETECTOR_BOX = (124.0, 127.0, 388.0, 466.0)


def box_crop_matrices(landmarks: torch.Tensor, *, output_size: int = 96,
                      box: tuple[float, float, float, float] = FFHQ_DETECTOR_BOX) -> torch.Tensor:
    """``[B, 5, 2]`` landmarks in the ffhq_512 crop -> ``[B, 2, 3]`` float64 matrices of insightface's box crop
    (``scale = output_size / (1.5 * side)``, centred on the box centre, no rotation)."""
    from ..alignment import estimate_similarity, get_template

    lms = torch.as_tensor(landmarks).detach().to("cpu", torch.float64)
    tpl = torch.tensor(np.array(get_template("ffhq_512").points), dtype=torch.float64)
    m = estimate_similarity(tpl.unsqueeze(0).expand(lms.shape[0], -1, -1), lms)  # template -> face crop
    l, t, r, b = box
    centre = torch.tensor([(l + r) / 2, (t + b) / 2, 1.0], dtype=torch.float64)
    cx, cy = (m @ centre).unbind(1)
    zoom = torch.sqrt(torch.abs(torch.linalg.det(m[:, :, :2])))
    side = zoom * max(r - l, b - t)
    s = output_size / (1.5 * side)
    out = torch.zeros(lms.shape[0], 2, 3, dtype=torch.float64)
    out[:, 0, 0] = s
    out[:, 1, 1] = s
    out[:, 0, 2] = output_size / 2 - cx * s
    out[:, 1, 2] = output_size / 2 - cy * s
    return out


class InsightFaceGenderAge:
    """Pixel attribute predictor: ``predict_images(faces [B,3,512,512] RGB [0,1], landmarks [B,5,2])`` ->
    ``{"gender": [B, 2], "age": [B, G]}`` float64 probabilities (plus ``last_age_years`` for inspection)."""

    kind = "image"

    def __init__(self, card: ModelCard, path: str | Path, *, schema: AttributeSchema | None = None,
                 age_sigma: float = 6.0, providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise WeightsNotFoundError("insightface-genderage needs onnxruntime: pip install 'restorever[onnx]'") \
                from exc
        self.card, self.path = card, Path(path)
        self.schema = schema or AttributeSchema()
        self.age_sigma = float(age_sigma)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several private exception types
            raise CheckpointLayoutError(f"{self.path}: cannot open as an ONNX model ({exc})") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape)
        if len(inputs) != 1 or len(outputs) != 1 or len(shape) != 4 or shape[1:] != [3, 96, 96]:
            raise CheckpointLayoutError(f"{self.path}: expected one input [N, 3, 96, 96] and one output [N, 3] "
                                        f"(insightface genderage.onnx), got input {shape}, {len(outputs)} output(s)")
        last = outputs[0].shape[-1] if outputs[0].shape else None
        if isinstance(last, int) and last != 3:
            raise CheckpointLayoutError(f"{self.path}: output shape {outputs[0].shape} is not [N, 3]")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        from ..hub import sha256_file

        self.weight_files = {"model": (str(self.path), sha256_file(self.path))}
        self.last_age_years: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.card.name

    def crop(self, faces: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 96, 96]`` float32 RGB 0..255 network inputs."""
        from ..alignment import warp_affine

        mats = box_crop_matrices(landmarks)
        return warp_affine(faces.float() * 255.0, mats.to(faces.device), (96, 96), border_value=0.0)

    def raw(self, faces: torch.Tensor, landmarks: torch.Tensor) -> np.ndarray:
        """``[B, 3]`` network outputs (one face per run, so a result never depends on its batch)."""
        blob = self.crop(faces, landmarks).detach().cpu().numpy().astype(np.float32)
        return np.concatenate([self.session.run([self.output_name], {self.input_name: blob[i:i + 1]})[0]
                               for i in range(len(blob))]).reshape(len(blob), -1)[:, :3]

    def predict_images(self, faces: torch.Tensor, landmarks: torch.Tensor) -> dict[str, np.ndarray]:
        pred = self.raw(faces, landmarks).astype(np.float64)
        scores = pred[:, :2] - pred[:, :2].max(1, keepdims=True)
        gender = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
        age_years = pred[:, 2] * 100.0
        self.last_age_years = age_years
        out = {"gender": gender, "age": self.schema.age_groups.from_gaussian(age_years, self.age_sigma)}
        return {a: out[a] for a in self.schema.attributes}


def create(name: str, *, weights: dict[str, str] | None = None, schema: AttributeSchema | None = None,
           **kwargs: Any) -> InsightFaceGenderAge:
    from ..hub import resolve_weights

    card = CARDS[name]
    try:
        path = resolve_weights(card, "model", explicit=(weights or {}).get("model"))
    except WeightsNotFoundError as exc:
        raise with_weights_flag(exc, "--attribute-weights") from exc
    return InsightFaceGenderAge(card, path, schema=schema, **kwargs)

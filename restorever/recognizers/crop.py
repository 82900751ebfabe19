"""Crop-based torch recognizers: the face crop + normalisation, precision (autocast) options, the shared adapter.

:class:`CropRecognizer` runs any torch embedding network (ArcFace IResNet, facenet InceptionResnetV1) behind the
recognizer contract; :func:`prepare_crops` turns aligned 512 faces into the network's input crop.
"""
from __future__ import annotations

import logging

import torch

from ..acceleration import CHANNELS_LAST, COMPILE, compile_module
from ..hub import ModelCard, OptionSpec, build_uninitialised
from ..precision import AUTOCAST_PRECISIONS, autocast_dtype, numerics
from .base import Recognizer, check_inputs, template_crop

logger = logging.getLogger(__name__)

__all__ = ["CropRecognizer", "prepare_crops", "autocast_dtype_for", "build_uninitialised", "CROP_OPTION_DEFAULTS",
           "CROP_OPTION_SPECS"]

#: the options a torch crop recognizer's card declares (``--recognizer-option KEY=VALUE``), with their defaults
CROP_OPTION_DEFAULTS = {"precision": "auto", "channels_last": False, "compile": False}
CROP_OPTION_SPECS = {
    "precision": OptionSpec("auto (fp16 autocast on CUDA, fp32 elsewhere), fp32, fp16 or bf16 (autocast; CUDA only)",
                            choices=AUTOCAST_PRECISIONS),
    "channels_last": CHANNELS_LAST,
    "compile": COMPILE,
}


def autocast_dtype_for(precision: str, device: torch.device) -> torch.dtype | None:
    """``precision`` option -> autocast dtype (None = no autocast); see :func:`restorever.precision.autocast_dtype`.
    Half precision acts on CUDA only: asked for elsewhere, a warning says so (the numbers are float32)."""
    dtype = autocast_dtype(precision, device, "recognizer")
    if dtype is not None and device.type != "cuda":
        logger.warning("recognizer precision %s acts on CUDA only; on %s the recognizer runs in float32", precision,
                       device)
    return dtype


def prepare_crops(faces: torch.Tensor, landmarks: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """Crop ``faces`` (``[B,3,H,W]`` RGB [0,1]) to ``card.template`` from ``landmarks`` (``[B,5,2]`` px) and normalise.

    Returns ``[B, 3, S, S]`` (S = ``card.input_size``) in the network's units: ``(255 x - mean) / std`` per channel,
    colour order ``card.channel_order``; same device and dtype as ``faces``.
    """
    from ..alignment import crop_to_template

    check_inputs(faces, landmarks)
    if not len(faces):  # no faces: no crops (torch's affine_grid refuses an empty batch)
        return faces.new_zeros((0, 3, card.input_size, card.input_size))
    crops = crop_to_template(faces, landmarks.to(faces.device), card.template)  # the fit runs in float64
    if tuple(crops.shape[-2:]) != (card.input_size, card.input_size):
        raise ValueError(f"{card.name}: template {card.template!r} gives {tuple(crops.shape[-2:])} crops, "
                         f"the network takes {card.input_size}x{card.input_size}")
    if card.channel_order.upper() == "BGR":
        crops = crops.flip(1)
    mean = torch.tensor(card.mean, device=crops.device, dtype=crops.dtype).view(1, 3, 1, 1)
    std = torch.tensor(card.std, device=crops.device, dtype=crops.dtype).view(1, 3, 1, 1)
    return (crops * 255.0 - mean) / std


# --------------------------------------------------------------------------------------------------------------------
# adapters


class CropRecognizer(Recognizer):
    """A torch embedding network behind the recognizer contract (shared by the ArcFace and facenet backends).

    ``forward(faces, landmarks)`` is differentiable: ``faces`` ``[B,3,512,512]`` float RGB [0,1] aligned to ffhq_512,
    ``landmarks`` ``[B,5,2]`` (x, y) px in that crop -> ``[B, D]`` float32 on the faces' device. :meth:`embed` is the
    same under ``torch.inference_mode``. ``flip_test`` adds the embedding of the horizontally mirrored crop.
    ``channels_last`` and ``compile`` (:mod:`restorever.acceleration`) change the values by float rounding only.
    """

    def __init__(self, card: ModelCard, net: torch.nn.Module, *, embedding_dim: int, flip_test: bool = False,
                 autocast_dtype: torch.dtype | None = None, similarity: str = "cosine", channels_last: bool = False,
                 compile: bool = False):
        super().__init__(card)
        self.net = net.eval()
        self.embedding_dim = int(embedding_dim)
        self.flip_test = bool(flip_test)
        self.autocast_dtype = autocast_dtype
        self.similarity = similarity
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.torch_compile = bool(compile)
        self._compiled_net = compile_module(self.net) if self.torch_compile else None  # a function: one state_dict

    def input_crop(self) -> dict:
        """The card's template crop (:func:`~restorever.recognizers.base.template_crop`), as :func:`prepare_crops`
        cuts it."""
        return template_crop(self.card.template)

    def numerics(self, device: torch.device) -> dict | None:
        """As :meth:`Recognizer.numerics`; the autocast acts on CUDA only (:meth:`forward`)."""
        return numerics(self, self.autocast_dtype if torch.device(device).type == "cuda" else None)

    @property
    def device(self) -> torch.device:
        for tensor in self.net.parameters():
            return tensor.device
        return torch.device("cpu")

    def forward(self, faces: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        device = self.device
        x = prepare_crops(faces.to(device), landmarks.to(device), self.card)
        param = next(self.net.parameters(), None)
        if param is not None and x.dtype != param.dtype:
            x = x.to(param.dtype)
        batch = x.shape[0]
        if not batch:  # an empty batch keeps the embedding width (some networks, facenet's, cannot run one)
            return torch.zeros(0, self.embedding_dim, device=faces.device)
        if self.flip_test:
            x = torch.cat([x, x.flip(-1)])
        use_amp = self.autocast_dtype is not None and device.type == "cuda"
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=self.autocast_dtype or torch.float16, enabled=use_amp):
            out = (self._compiled_net or self.net)(x)
        out = out.float()
        if self.flip_test:
            out = out[:batch] + out[batch:]
        return out.to(faces.device)

    def embed(self, faces: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """``[B,3,512,512]`` RGB [0,1] + ``[B,5,2]`` landmarks -> ``[B, D]`` float32 (no autograd)."""
        with torch.inference_mode():
            return self.forward(faces, landmarks)

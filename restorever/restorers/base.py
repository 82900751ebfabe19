"""The restorer interface."""
from __future__ import annotations

from typing import Sequence

import torch

from ..frozen import FrozenModel
from ..hub import ModelCard, OptionSpec
from ..images import check_faces
from ..precision import AUTOCAST_PRECISIONS, numerics


class Restorer(FrozenModel):
    """A face restorer: aligned 512x512 RGB faces in [0, 1] in, same out.

    Subclasses implement :meth:`forward` (or override :meth:`restore`). ``card`` describes the backend.
    """

    card: ModelCard

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        return torch.device("cpu")

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The dtype :meth:`forward` autocasts to on ``device`` (None: no autocast, the default); the backends with a
        ``precision`` option override it."""
        return None

    def float32_parts(self) -> tuple[str, ...]:
        """The parts of the network that stay in float32 when the rest is cast or autocast to a half precision
        (none, the default: the precision applies to the whole network)."""
        return ()

    def numerics(self, device: torch.device) -> dict | None:
        """Weight dtypes, autocast dtype on ``device`` and the parts kept in float32
        (:func:`restorever.precision.numerics`): results.json's ``setup.precision``."""
        return numerics(self, self.autocast_dtype(torch.device(device)), self.float32_parts())

    def restore(self, images: torch.Tensor, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Restore ``images`` (``[B,3,512,512]`` float RGB in [0,1]); ``seeds`` are per-item noise seeds."""
        check_faces(images, self.card.input_size)
        if seeds is not None and len(seeds) != images.shape[0]:
            raise ValueError(f"{self.name}: got {len(seeds)} seeds for {images.shape[0]} images (one per image)")
        with torch.inference_mode():
            return self.forward(images, seeds=seeds).clamp(0, 1)

    def forward(self, images: torch.Tensor, *, seeds: Sequence[int] | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


# ---- options several restorers declare on their cards (hub.OptionSpec; restorever restorers shows them) ----------
CAST_PRECISION = OptionSpec("fp32; fp16 or bf16 (weights cast once); fp16-amp or bf16-amp (autocast); auto = "
                            "fp16-amp on CUDA, fp32 elsewhere")
AUTOCAST_PRECISION = OptionSpec("auto (fp16 autocast on CUDA, fp32 elsewhere), fp32, fp16 or bf16 (autocast)",
                                choices=AUTOCAST_PRECISIONS)
QUANTIZE_OUTPUT = OptionSpec("round the output to 8-bit levels as the official demo's saved PNG does")

"""A released model bound to its card and frozen in eval mode: the common base of restorers and recognizers."""
from __future__ import annotations

import torch

from .hub import ModelCard

__all__ = ["FrozenModel"]


class FrozenModel(torch.nn.Module):
    """``torch.nn.Module`` holding a released network and the :class:`~restorever.hub.ModelCard` it was made from."""

    card: ModelCard

    def __init__(self, card: ModelCard):
        super().__init__()
        self.card = card

    @property
    def name(self) -> str:
        """The registry name, e.g. ``"vqfr-v2"`` or ``"arcface-r50"``."""
        return self.card.name

    def train(self, mode: bool = True) -> "FrozenModel":
        """Stays in eval mode whatever ``mode`` is: a released model here is frozen, and a parent module's
        ``.train()`` would otherwise switch its BatchNorm to batch statistics (and overwrite the loaded running
        statistics) and enable dropout, changing every output silently."""
        return super().train(False)

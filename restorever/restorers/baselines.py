"""Baseline restorers: ``none`` (identity: measures what the degradation alone does)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..hub import ModelCard
from .base import Restorer

CARDS = {
    "none": ModelCard(name="none", arch="identity", description="no restoration: the degraded face as it is"),
}


class IdentityRestorer(Restorer):
    """Returns its input unchanged."""

    def forward(self, images: torch.Tensor, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        return images.clone()


def create(name: str, *, weights: dict[str, str] | None = None, device: str | torch.device = "cpu",
           **kwargs) -> Restorer:
    if weights:
        raise ValueError(f"{name}: takes no weights")
    if kwargs:
        raise TypeError(f"{name}: unexpected options {sorted(kwargs)}")
    return IdentityRestorer(CARDS[name]).to(device)

"""The recognizer interface."""
from __future__ import annotations

import torch

from ..hub import ModelCard


class Recognizer(torch.nn.Module):
    """Face embedder: aligned ffhq_512 faces plus their landmarks in, raw embeddings out.

    ``similarity`` says how two embeddings are compared: ``"cosine"`` or ``"euclidean"`` (scores are then the
    negative distance, so higher always means more similar).
    """

    card: ModelCard
    embedding_dim: int
    similarity: str = "cosine"

    def __init__(self, card: ModelCard):
        super().__init__()
        self.card = card

    @property
    def name(self) -> str:
        return self.card.name

    def embed(self, faces: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """``faces`` ``[B,3,512,512]`` float RGB [0,1] and ``landmarks`` ``[B,5,2]`` (px in the crop) ->
        ``[B,D]`` float32 embeddings."""
        raise NotImplementedError

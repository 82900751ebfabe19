"""``RestoreThenEmbed``: restoration followed by recognition as one ``torch.nn.Module`` over aligned batches."""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["RestoreThenEmbed"]


class RestoreThenEmbed(torch.nn.Module):
    """``forward(faces [B,3,512,512] float RGB in [0, 1] ffhq_512 crops, landmarks [B,5,2] crop pixels,
    seeds=None)`` -> ``[B, D]`` float32 raw embeddings (on the CPU; recognizers such as dlib compute there).

    The same stages as ``restorever eval``'s restored conditions (:func:`restorever.pipeline.stages.restore_faces`
    then :func:`~restorever.pipeline.stages.embed_faces`): restored faces are quantised to 8 bits unless
    ``quantize=False``. ``seeds`` are per-face noise seeds for stochastic restorers (``None``: seed 0 for every face;
    :func:`restorever.pipeline.evaluate.item_seed` gives eval's). Inference only: no gradients flow through.

    Example:
        >>> from restorever import create_recognizer, create_restorer
        >>> model = RestoreThenEmbed(create_restorer("none"), create_recognizer("dlib"))
        >>> emb = model(faces, landmarks)        # faces, landmarks from restorever.pipeline.stages.align_faces
    """

    def __init__(self, restorer: torch.nn.Module, recognizer: torch.nn.Module, *, quantize: bool = True):
        from .models import check_recognizer, check_restorer

        super().__init__()
        self.restorer, self.recognizer = check_restorer(restorer), check_recognizer(recognizer)
        self.quantize = bool(quantize)

    def forward(self, faces: torch.Tensor, landmarks: torch.Tensor, seeds: Sequence[int] | None = None
                ) -> torch.Tensor:
        from ..pipeline.stages import call_with_backoff, embed_faces, restore_faces

        if not isinstance(faces, torch.Tensor) or faces.ndim != 4 or faces.shape[1] != 3:
            raise ValueError(f"faces: expected a [B, 3, H, W] batch of aligned crops, got "
                             f"{list(getattr(faces, 'shape', []))}" + (" (one face: add a batch dimension, faces[None])"
                                                                      if getattr(faces, "ndim", 0) == 3 else ""))
        if landmarks.ndim != 3 or tuple(landmarks.shape[1:]) != (5, 2) or landmarks.shape[0] != faces.shape[0]:
            raise ValueError(f"landmarks: expected [{faces.shape[0]}, 5, 2] crop pixels, got "
                             f"{list(landmarks.shape)}")
        seeds = [0] * faces.shape[0] if seeds is None else [int(s) for s in seeds]
        if len(seeds) != faces.shape[0]:
            raise ValueError(f"seeds: expected {faces.shape[0]} seeds (one per face), got {len(seeds)}")
        if self.quantize:
            restored = restore_faces(self.restorer, faces, seeds)
        else:
            restored = call_with_backoff(lambda idx: self.restorer.restore(faces[idx], seeds=[seeds[i] for i in idx]),
                                         len(seeds))
        return torch.from_numpy(embed_faces(self.recognizer, restored, landmarks))

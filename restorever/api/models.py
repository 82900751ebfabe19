"""Your own recognizer or restorer object in :class:`restorever.FacePipeline` and
:class:`restorever.RestoreThenEmbed`: the few attributes they must have, checked when the pipeline is built.

A recognizer needs ``embed(faces, landmarks) -> [B, D]`` (``faces`` ``[B, 3, 512, 512]`` float RGB in [0, 1],
``ffhq_512`` crops; ``landmarks`` ``[B, 5, 2]`` crop pixels) and may set ``similarity`` (``"cosine"``, the default,
or ``"euclidean"``) and ``name``. A restorer needs ``restore(faces, seeds=None)`` returning the same shape in [0, 1].
The registry's models (``create_recognizer``, ``create_restorer``) have all of these.
"""
from __future__ import annotations

import inspect
from typing import Any

from ..errors import ConfigError
from ..pipeline.stages import model_name

__all__ = ["check_recognizer", "check_restorer", "model_name", "similarity_of"]

_GUIDE = "docs/api.md#your-own-recognizer-or-restorer"


def similarity_of(recognizer: Any) -> str:
    """How the recognizer's embeddings are compared: its ``similarity`` attribute, ``"cosine"`` when it has none."""
    return getattr(recognizer, "similarity", "cosine")


def check_recognizer(model: Any) -> Any:
    """``model`` if it can embed faces; else :class:`ConfigError` (argument ``recognizer``) saying what is missing."""
    from ..metrics.similarity import SIMILARITIES

    if not callable(getattr(model, "embed", None)):
        raise ConfigError("recognizer", f"must be a registry name (`restorever recognizers`) or an object with "
                                        f"embed(faces [B,3,512,512] float RGB in [0, 1], landmarks [B,5,2]) -> [B, D]; "
                                        f"{type(model).__name__} has no embed method (wrap your network: see "
                                        f"{_GUIDE})")
    similarity = similarity_of(model)
    if similarity not in SIMILARITIES:
        raise ConfigError("recognizer", f"{model_name(model)}.similarity must be one of {', '.join(SIMILARITIES)} "
                                        f"(how two embeddings are compared), got {similarity!r}")
    return model


def check_restorer(model: Any) -> Any:
    """``model`` if it can restore faces; else :class:`ConfigError` (argument ``restorer``) saying what is missing."""
    restore = getattr(model, "restore", None)
    if not callable(restore):
        raise ConfigError("restorer", f"must be a registry name (`restorever restorers`) or an object with "
                                      f"restore(faces [B,3,512,512] float RGB in [0, 1], seeds=None) -> the same "
                                      f"shape; {type(model).__name__} has no restore method (see {_GUIDE})")
    try:
        params = inspect.signature(restore).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature: trust it
        return model
    if "seeds" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ConfigError("restorer", f"{model_name(model)}.restore must take a seeds= argument (one noise seed per "
                                      f"face, or None; a deterministic restorer ignores it): "
                                      f"def restore(self, faces, seeds=None)")
    return model

"""Restorer registry: ``create_restorer(name)``, ``list_restorers()``.

Backends (one module each): ``baselines`` (``none``), ``vqfr`` (``vqfr-v1``, ``vqfr-v2``), ``difface``,
``gfpgan`` (``gfpgan-v1.4``, ``gfpgan-v1.3``), ``codeformer``.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from .._registry import Registry
from ..hub import ModelCard

REGISTRY = Registry("restorer", [
    "restorever.restorers.baselines",
    "restorever.restorers.vqfr",
    "restorever.restorers.difface",
    "restorever.restorers.gfpgan",
    "restorever.restorers.codeformer",
], group="restorever.restorers")


def list_restorers() -> list[str]:
    """Registered restorer names."""
    return REGISTRY.names()


def restorer_card(name: str) -> ModelCard:
    return REGISTRY.card(name)


def create_restorer(name: str, *, weights: Mapping[str, str | os.PathLike] | str | os.PathLike | None = None,
                    device: Any = "cpu", **kwargs: Any):
    """Create a restorer by name.

    Example:
        >>> r = create_restorer("none")
        >>> out = r.restore(torch.rand(2, 3, 512, 512))
    """
    from ..hub import weights_mapping

    weights = weights_mapping(weights)  # a string as --weights reads it, a path, or {role: path}
    from ..devices import resolve_device

    device = resolve_device(device)  # "cuda" on a machine without a GPU is an error here, not at the first batch
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # None means "the card's default"
    return REGISTRY.created(name, REGISTRY.create(name, weights=weights or None, device=device, **kwargs), "restore",
                            "restorers")


def locate_restorer_weights(name: str, weights: dict[str, str] | None = None) -> dict:
    """``{role: path}`` of the weight files ``create_restorer(name, weights=...)`` would load, found without
    building the network or downloading (``--dry-run``); raises ``WeightsNotFoundError`` for a missing file."""
    from ..hub import locate_backend_weights

    return locate_backend_weights(REGISTRY, name, weights)

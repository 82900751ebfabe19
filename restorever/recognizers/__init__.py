"""Recognizer registry: ``create_recognizer(name)``, ``list_recognizers()``.

Backends: ``dlib`` (real, offline), ``arcface`` (torch IResNet and insightface ONNX packs), ``facenet``.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from .._registry import Registry
from ..errors import WeightsNotFoundError, with_weights_flag
from ..hub import ModelCard

REGISTRY = Registry("recognizer", [
    "restorever.recognizers.dlib",
    "restorever.recognizers.arcface",
    "restorever.recognizers.facenet",
], group="restorever.recognizers")


def list_recognizers() -> list[str]:
    """Registered recognizer names."""
    return REGISTRY.names()


def recognizer_card(name: str) -> ModelCard:
    return REGISTRY.card(name)


def create_recognizer(name: str, *, weights: Mapping[str, str | os.PathLike] | str | os.PathLike | None = None,
                      device: Any = "cpu", **kwargs: Any):
    """Create a recognizer by name (``weights``: explicit local files, see ``hub.parse_weights_option``)."""
    from ..hub import weights_mapping

    weights = weights_mapping(weights)  # a string as --weights reads it, a path, or {role: path}
    from ..devices import resolve_device

    if kwargs.get("flip_test"):
        check_flip_test(name)
    device = resolve_device(device)  # "cuda" on a machine without a GPU is an error here, not at the first batch
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        model = REGISTRY.create(name, weights=weights or None, device=device, **kwargs)
    except (WeightsNotFoundError, ValueError) as exc:
        raise with_weights_flag(exc, "--recognizer-weights") from exc
    return REGISTRY.created(name, model, "embed", "recognizer")


def resolve_recognizer_options(name: str, options: Mapping[str, Any], device: Any) -> dict[str, Any]:
    """``options`` (as routed) with the choices this machine makes written out, so a run's identity names what runs:
    an insightface pack's ``engine`` of ``auto`` (or none given) on a CUDA device becomes ``onnxruntime`` or
    ``torch`` (:func:`restorever.recognizers.arcface.choose_engine`: onnxruntime's CUDA provider installed or not),
    and two GPU machines that embed differently never share cache entries. On a CPU, ``auto`` is always
    onnxruntime and the options are returned as given. ``device``: a resolved ``torch.device``."""
    out = dict(options)
    card = recognizer_card(name)
    if "engine" not in card.option_specs or getattr(device, "type", device) != "cuda":
        return out
    from . import arcface

    if name not in arcface.CARDS:  # a plugin's engine option means what that plugin says
        return out
    given = str(out.get("engine") or card.default_kwargs.get("engine", "auto")).lower()
    if given == "auto":
        out["engine"] = arcface.choose_engine(card, given, device)
    return out


def check_flip_test(name: str) -> None:
    """:class:`~restorever.errors.ConfigError` unless recognizer ``name`` has a flip test (its card's defaults
    name ``flip_test``; dlib's descriptor has none)."""
    from ..errors import ConfigError

    if "flip_test" not in recognizer_card(name).default_kwargs:
        raise ConfigError("flip_test", f"is not available for recognizer {name} (it embeds one view of a face); "
                                       f"the arcface-* and facenet-* recognizers have it")


def locate_recognizer_weights(name: str, weights: dict[str, str] | None = None) -> dict:
    """``{role: path}`` of the weight files ``create_recognizer(name, weights=...)`` would load, found without
    building the network or downloading (``--dry-run``); raises ``WeightsNotFoundError`` for a missing file."""
    from ..hub import locate_backend_weights

    return locate_backend_weights(REGISTRY, name, weights)

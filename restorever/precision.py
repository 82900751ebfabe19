"""Precision options shared by the backends: parse ``precision`` strings, map them to dtypes, cast weights once.

``precision`` values:

* ``"fp32"`` -- everything in float32 (the fixture-exact path);
* ``"fp16"``, ``"bf16"`` -- "cast once": the chosen parts of the network hold their weights in half precision and run
  natively in it (no autocast, so no per-op casts of weights and activations); parts a backend marks as numerically
  sensitive stay float32 and the backend casts activations at those boundaries;
* ``"fp16-amp"``, ``"bf16-amp"`` -- per-op autocast over float32 weights (the former behaviour of ``fp16``/``bf16``);
* ``"auto"`` -- ``fp16-amp`` on CUDA, ``fp32`` elsewhere (unchanged, so cached results keep their meaning).

These are the restorers' values (:func:`parse_precision`). Backends that only autocast -- the recognizers and the
restorers whose cards say so -- take :data:`AUTOCAST_PRECISIONS` (:func:`autocast_dtype`), where ``fp16`` and
``bf16`` mean autocast over float32 weights and ``*-amp`` is not a value. ``restorever restorers`` and
``restorever recognizers`` print each backend's own list.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

__all__ = ["PRECISIONS", "Precision", "parse_precision", "cast_module", "AUTOCAST_PRECISIONS", "autocast_dtype",
           "numerics"]

_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
PRECISIONS = ("fp32", "bf16", "fp16", "bf16-amp", "fp16-amp", "auto")
"""The documented ``precision`` values (aliases ``float32``, ``float16``, ``bfloat16`` are accepted too)."""
AUTOCAST_PRECISIONS = ("auto", "fp32", "float32", "fp16", "float16", "bf16", "bfloat16")
"""The values of backends that run half precision by autocast only (GFPGAN, CodeFormer, the crop recognizers)."""


def autocast_dtype(value: str, device: torch.device, owner: str) -> torch.dtype | None:
    """An autocast-only ``precision`` -> its dtype on ``device`` (None = float32, no autocast): ``auto`` is float16
    on CUDA and float32 elsewhere. Raises ValueError naming ``owner`` for any other value."""
    text = str(value).lower()
    if text not in AUTOCAST_PRECISIONS:
        raise ValueError(f"{owner}: precision must be one of auto, fp32, fp16, bf16; got {value!r}")
    if text == "auto":
        return torch.float16 if device.type == "cuda" else None
    return _DTYPES.get(text)


class Precision:
    """A parsed ``precision`` option: ``mode`` is ``"fp32"``, ``"cast"``, ``"amp"`` or ``"auto"``; ``dtype`` the
    half dtype of ``cast``/``amp`` (None otherwise)."""

    def __init__(self, mode: str, dtype: torch.dtype | None, text: str):
        self.mode, self.dtype, self.text = mode, dtype, text

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype on ``device`` (None = no autocast)."""
        if self.mode == "amp":
            return self.dtype
        if self.mode == "auto":
            return torch.float16 if device.type == "cuda" else None
        return None

    @property
    def cast_dtype(self) -> torch.dtype | None:
        """The dtype weights are cast to once (None = keep float32)."""
        return self.dtype if self.mode == "cast" else None

    def __repr__(self) -> str:
        return repr(self.text)


def parse_precision(value: str, owner: str) -> Precision:
    """``"bf16"`` -> Precision("cast", bfloat16); raises ValueError naming ``owner`` and the accepted values."""
    text = str(value).lower()
    if text in ("fp32", "float32"):
        return Precision("fp32", None, text)
    if text == "auto":
        return Precision("auto", None, text)
    base, amp = (text[:-4], True) if text.endswith("-amp") else (text, False)
    if base in _DTYPES:
        return Precision("amp" if amp else "cast", _DTYPES[base], text)
    raise ValueError(f"{owner}: precision must be one of {', '.join(PRECISIONS)}; got {value!r}")


def cast_module(module: nn.Module, dtype: torch.dtype, keep: Iterable[type] = ()) -> nn.Module:
    """Cast the floating-point parameters and buffers of ``module`` to ``dtype`` in place, except inside submodules
    that are instances of ``keep`` (they stay as they are). Returns ``module``."""
    keep = tuple(keep)

    def visit(mod: nn.Module) -> None:
        if keep and isinstance(mod, keep):
            return
        for name, param in list(mod._parameters.items()):
            if param is not None and param.is_floating_point():
                mod._parameters[name] = nn.Parameter(param.detach().to(dtype), requires_grad=param.requires_grad)
        for name, buf in list(mod._buffers.items()):
            if buf is not None and buf.is_floating_point():
                mod._buffers[name] = buf.to(dtype)
        for child in mod.children():
            visit(child)

    visit(module)
    return module


def numerics(module: nn.Module, autocast: torch.dtype | None, float32_parts: Iterable[str] = ()
             ) -> dict[str, Any] | None:
    """How ``module`` computes, for results.json's ``setup.precision``: ``{"weights": [...], "autocast": ...}``, the
    sorted dtype names of its floating-point parameters (``["float16", "float32"]`` where a cast-once backend keeps
    sensitive parts in float32) and the autocast dtype's name (None = no autocast), plus ``"float32_parts"``: the
    parts that stay in float32 outside the cast and the autocast (VQFR's and CodeFormer's code selection), where the
    model computes in a reduced precision at all. None for a module without floating-point parameters (dlib,
    onnxruntime and the parameter-free restorers compute outside torch's weights)."""
    weights = sorted({str(p.dtype).removeprefix("torch.") for p in module.parameters() if p.is_floating_point()})
    if not weights:
        return None
    out: dict[str, Any] = {"weights": weights,
                           "autocast": str(autocast).removeprefix("torch.") if autocast is not None else None}
    parts = list(float32_parts)
    if parts and (autocast is not None or weights != ["float32"]):
        out["float32_parts"] = parts
    return out

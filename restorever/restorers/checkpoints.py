"""Recognise which restorer a state_dict belongs to, for error messages that name the right backend, and load an
official-layout checkpoint strictly with such messages.

Layouts are judged from characteristic key names of the official files (after ``load_checkpoint`` unwrapped
``params_ema`` / ``params`` / ``state_dict`` and stripped a ``module.`` prefix).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable

from .. import hub
from ..errors import CheckpointLayoutError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["identify_layout", "describe_layout", "load_official_checkpoint", "LAYOUTS"]

LAYOUTS: dict[str, str] = {
    "gfpgan_v1_clean": "a GFPGAN v1.2-v1.4 (GFPGANv1Clean) checkpoint; use --restorer gfpgan-v1.4 or gfpgan-v1.3",
    "gfpgan_v1_original": "a checkpoint of the original GFPGANv1 architecture (GFPGANv1.pth, custom CUDA ops), "
                          "which restorever does not implement; use GFPGANv1.3.pth or GFPGANv1.4.pth",
    "codeformer": "a CodeFormer checkpoint; use --restorer codeformer",
    "codeformer_variant": "a CodeFormer colorization or inpainting checkpoint (fewer fusion blocks), which "
                          "restorever does not run; use codeformer.pth with --restorer codeformer",
    "codeformer_vqgan": "CodeFormer's VQGAN (stage 1) checkpoint; use codeformer.pth with --restorer codeformer",
    "vqfr_v1": "a VQFR v1 checkpoint; use --restorer vqfr-v1",
    "vqfr_v2": "a VQFR v2 checkpoint; use --restorer vqfr-v2",
    "difface_unet": "DifFace's diffusion UNet checkpoint; use --restorer difface --weights unet=FILE,estimator=FILE",
    "difface_swinir": "DifFace's SwinIR estimator checkpoint; use --restorer difface --weights "
                      "unet=FILE,estimator=FILE",
}


def identify_layout(keys: Iterable[str]) -> str | None:
    """A key of :data:`LAYOUTS` for the state_dict (or its keys), or None when no known layout fits."""
    keys = set(keys)

    def has_prefix(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has_prefix("stylegan_decoder.") and has_prefix("condition_scale."):
        return "gfpgan_v1_clean" if "conv_body_first.weight" in keys else "gfpgan_v1_original"
    if has_prefix("ft_layers.") and has_prefix("idx_pred_layer."):  # the transformer: stage 2 (a missing
        # position_emb made a damaged codeformer.pth read as the VQGAN; strict loading then names the key)
        return "codeformer" if has_prefix("fuse_convs_dict.256.") else "codeformer_variant"
    if has_prefix("encoder.blocks.") and has_prefix("generator.blocks.") and has_prefix("quantize."):
        return "codeformer_vqgan"
    if has_prefix("main_decoder.align_func_dict.") and has_prefix("quantizer.quantize_dict."):
        return "vqfr_v1"
    if has_prefix("main_branch.align_func_dict.") and has_prefix("quantizer.embedding."):
        return "vqfr_v2"
    if has_prefix("time_embed.") and has_prefix("input_blocks.") and has_prefix("output_blocks."):
        return "difface_unet"
    if has_prefix("conv_first.") and has_prefix("layers.") and has_prefix("conv_last."):
        return "difface_swinir"
    return None


def describe_layout(layout: str) -> str:
    """The sentence for a layout key ("a CodeFormer checkpoint; use --restorer codeformer")."""
    return LAYOUTS[layout]


def _other_layout(path: str | os.PathLike, expected: str) -> str | None:
    """The layout of ``path`` when it is a known one other than ``expected`` (any top-level wrapper), else None."""
    try:
        found = identify_layout(hub.load_checkpoint(path))
    except CheckpointLayoutError:
        return None
    return found if found not in (None, expected) else None


def load_official_checkpoint(net: "nn.Module", path: str | os.PathLike, *, name: str, layout: str,
                             release: str) -> None:
    """Load ``path`` (its ``params_ema``, else ``params``, as the official loaders read it) strictly into ``net``.

    Raises :class:`CheckpointLayoutError` naming the file and the mismatching keys; when the file is recognisably
    another backend's (a key of :data:`LAYOUTS` other than ``layout``), the message names the backend to use instead.
    ``release`` names the expected files in the message (e.g. "codeformer.pth from sczhou/CodeFormer").
    """
    try:
        state_dict = hub.load_checkpoint(path, keys=("params_ema", "params"))
        hub.load_state_dict_strict(net, state_dict, source=str(path))
    except CheckpointLayoutError as exc:
        other = _other_layout(path, layout)
        if other is not None:
            raise CheckpointLayoutError(f"{path}: {describe_layout(other)}, not a {name} checkpoint") from exc
        if "weights-only" in str(exc):
            raise
        raise CheckpointLayoutError(f"{exc} (expected the official {name} layout: {release}, key params_ema or "
                                    f"params)") from exc


def load_model_file(net: "nn.Module", card: "hub.ModelCard", weights: "dict[str, str] | None", *, pretrained: bool,
                    cache_dir: "str | os.PathLike | None", loader) -> dict[str, tuple[str, str | None]]:
    """Load a single-file backend's ``"model"`` weights into ``net`` (explicit file, else cache, else download) with
    ``loader(net, path, name=...)``; returns the ``weight_files`` record. ``pretrained=False`` keeps the random
    initialisation (benchmarks) and refuses explicit weights."""
    import logging

    name = card.name
    weights = hub.check_weight_roles(name, weights, ["model"])
    if not pretrained:
        if weights:
            raise ValueError(f"{name}: weights given together with pretrained=False")
        return {"model": ("random-init", None)}
    path = hub.resolve_weights(card, "model", explicit=weights.get("model"), cache_dir=cache_dir)
    loader(net, path, name=name)
    logging.getLogger(__name__).info("%s: loaded %s", name, path)
    return {"model": (str(path), hub.sha256_file(path))}

"""VQFR face restorers (``vqfr-v1``, ``vqfr-v2``): our own implementation that loads the official checkpoints.

Paper: Gu et al., "VQFR: Blind Face Restoration with Vector-Quantized Dictionary and Parallel Decoder", ECCV 2022,
https://arxiv.org/abs/2205.06803. Official code and weights: https://github.com/TencentARC/VQFR (Apache-2.0).
This module was written from the description in ``shared/reference/vqfr.md``; the module tree (hence every
state_dict key) and the numerics follow the official ``VQFRv1``/``VQFRv2`` classes (commit 239c77a), so the released
``VQFR_v1-33a1fac5.pth`` and ``VQFR_v2.pth`` load strictly with ``torch.load(weights_only=True)``. The deformable
convolution runs on ``torchvision.ops.deform_conv2d``; neither mmcv nor basicsr is needed.

Input/output contract of the restorers (what the official ``demo.py --aligned`` does): an aligned 512x512 RGB face
in [0, 1] is mapped to [-1, 1] (mean 0.5, std 0.5); the network's ``main_dec`` output is clamped to [-1, 1], mapped
back to [0, 1] and, by default, rounded to the 8-bit grid (the demo writes ``uint8`` images).

``fidelity_ratio`` (v2 only) scales the main (fidelity) branch added to the texture branch's finest feature:
0 gives the pure codebook result ("best quality"), 1 the full main branch ("best fidelity", the training setting).
Official defaults: the network's ``forward`` uses 1.0, ``demo.py``/``-f`` and the Replicate predictor use 0, the
README examples use 0.1, the test yml uses 0. restorever uses 0.0 (the demo default); at exactly 0 the main branch
is skipped, since the official output is then bit-identical to the texture branch.

Order of this file: model blocks -> VQFRv1 -> VQFRv2 -> restorer adapter -> checkpoint checks -> configs/cards ->
``create`` -> memory measurement.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import logging
import math
import os
import threading
import time
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import hub
from ..errors import CheckpointLayoutError
from .base import Restorer, check_faces
from .checkpoints import describe_layout, identify_layout
from .layers.modulated_deform_conv import ModulatedDeformConv2d
from .layers.precision import PRECISIONS as PRECISION_VALUES
from .layers.precision import cast_module, parse_precision
from .layers.vqfr_blocks import (AttnBlock, BilinearResample, NearestUpsample, ResnetBlock, StridedDownsample,
                                 TextureWarpingModule, group_norm, nearest_code_indices, upsample_guide)

logger = logging.getLogger(__name__)

__all__ = ["VQFRv1", "VQFRv2", "VQFRRestorer", "CARDS", "create", "build_network", "load_vqfr_weights",
           "measure_peak_memory", "PeakMemoryMonitor", "V1_CONFIG", "V2_CONFIG"]

PRECISIONS = PRECISION_VALUES  # the documented ``precision`` values (scripts/bench_gpu.py times each one)


def _level(i: int) -> str:
    """Name of pyramid level ``i`` (downsampling factor ``2**i``), as in the checkpoints."""
    return f"Level_{2 ** i}"


def _gn_silu_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """GroupNorm -> SiLU -> 3x3 conv (checkpoint keys ``.0`` and ``.2``)."""
    return nn.Sequential(group_norm(in_channels), nn.SiLU(inplace=True), nn.Conv2d(in_channels, out_channels, 3,
                                                                                   padding=1))


def _dtype_of(module: nn.Module) -> torch.dtype:
    """The dtype of ``module``'s first parameter: where a cast-once half-precision part starts, inputs follow it."""
    return next(module.parameters()).dtype


def _autocast(device_type: str, dtype: torch.dtype | None):
    return torch.autocast(device_type=device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


# --------------------------------------------------------------------------------------------------- shared decoder
class _ParallelDecoder(nn.Module):
    """VQFR's main ("parallel") decoder: from the coarsest level down, warp each texture feature towards the input
    with a :class:`TextureWarpingModule` and fuse it into an upsampled main feature.

    ``channels[i]`` is the width of level ``i`` (factor ``2**i``). ``layout="v1"``: upsampling by
    :class:`BilinearResample` (conv then bilinear, keys ``.conv``), shortcut key ``shortcut_conv``, condition
    resampled with a conv, and an output head ``conv_out_1``/``conv_out`` over ``cat[x, x_lq]``. ``layout="v2"``:
    nearest x2 then conv (keys ``.1``), shortcut key ``residual_func``, plain bilinear condition, no head.
    """

    def __init__(self, channels: Sequence[int], cond_channels: Sequence[int], cond_rates: Sequence[int],
                 deformable_groups: Sequence[int], *, layout: str, upsample_rates: Sequence[float] | None = None):
        super().__init__()
        if layout not in ("v1", "v2"):
            raise ValueError(f"layout must be 'v1' or 'v2', got {layout!r}")
        self.layout = layout
        self.num_levels = len(channels)
        top = self.num_levels - 1
        self.decoder_dict = nn.ModuleDict()
        self.pre_upsample_dict = nn.ModuleDict()
        self.align_func_dict = nn.ModuleDict()
        shortcut = "shortcut_conv" if layout == "v1" else "residual_func"
        for i in reversed(range(self.num_levels)):
            name = _level(i)
            if i < top:
                if layout == "v1":
                    rate = upsample_rates[i] if upsample_rates is not None else 2
                    self.pre_upsample_dict[name] = BilinearResample(channels[i + 1], channels[i], rate, "up")
                else:
                    self.pre_upsample_dict[name] = nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels[i + 1], channels[i], 3,
                                                                               padding=1))
                self.decoder_dict[name] = ResnetBlock(2 * channels[i], channels[i], shortcut_name=shortcut)
            self.align_func_dict[name] = TextureWarpingModule(
                channels[i], cond_channels[i], cond_rates[i], deformable_groups[i],
                previous_channels=0 if i == top else channels[i + 1], cond_conv=layout == "v1")
        if layout == "v1":
            self.conv_out_1 = nn.Sequential(group_norm(channels[0]), nn.SiLU(inplace=True))
            self.conv_out = nn.Sequential(nn.Conv2d(channels[0] + 3, 3, 3, padding=1))

    def forward(self, texture: Sequence[torch.Tensor], cond: torch.Tensor,
                x_lq: torch.Tensor | None = None) -> torch.Tensor:
        """``texture[i]`` [B, C_i, H/2^i, W/2^i]; ``cond`` [B, C_cond, H, W]; ``x_lq`` [B, 3, H, W] (v1 head only).

        Returns the fused finest feature [B, C_0, H, W] (v2) or the 3-channel image in the network range (v1).
        """
        top = self.num_levels - 1
        x, guide = self.align_func_dict[_level(top)](texture[top], cond)
        for i in reversed(range(top)):
            name = _level(i)
            x = self.pre_upsample_dict[name](x)
            warped, guide = self.align_func_dict[name](texture[i], cond, upsample_guide(guide))
            x = self.decoder_dict[name](torch.cat([x, warped.to(x.dtype)], dim=1))
        if self.layout == "v1":
            x = self.conv_out(torch.cat([self.conv_out_1(x), x_lq.to(x.dtype)], dim=1))
        return x


# ------------------------------------------------------------------------------------------------------------ v1
class _InputFeature(nn.Module):
    """3x3 conv extracting the full-resolution condition feature from the degraded input (v1 key ``.conv``)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _V1Encoder(nn.Module):
    """VQGAN v1 encoder: per level a resample (bilinear + conv) and ``num_blocks`` ResnetBlocks; GN-SiLU-conv heads
    on the quantised levels."""

    def __init__(self, channels: Sequence[int], rates: Sequence[float], num_blocks: int, quant_level: Sequence[str]):
        super().__init__()
        self.num_levels = len(channels)
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        self.encoder_dict = nn.ModuleDict()
        self.pre_downsample_dict = nn.ModuleDict()
        for i in range(self.num_levels):
            c_in = channels[max(i - 1, 0)]
            self.pre_downsample_dict[_level(i)] = BilinearResample(c_in, channels[i], rates[i], "down")
            self.encoder_dict[_level(i)] = nn.Sequential(
                *[ResnetBlock(channels[i], shortcut_name="shortcut_conv") for _ in range(num_blocks)])
        self.quant_level = list(quant_level)
        level_index = {_level(i): i for i in range(self.num_levels)}
        self.enc_convout_dict = nn.ModuleDict(
            {name: _gn_silu_conv(channels[level_index[name]], channels[level_index[name]]) for name in quant_level})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        x = self.conv_in(x)
        for i in range(self.num_levels):
            x = self.encoder_dict[_level(i)](self.pre_downsample_dict[_level(i)](x))
            if _level(i) in self.enc_convout_dict:
                out[_level(i)] = self.enc_convout_dict[_level(i)](x)
        return out


class _V1Decoder(nn.Module):
    """VQGAN v1 (texture) decoder: from the coarsest level, resample (conv + bilinear) and ``num_blocks``
    ResnetBlocks per level; ``conv_out`` = GN-SiLU-conv to RGB."""

    def __init__(self, channels: Sequence[int], rates: Sequence[float], num_blocks: int):
        super().__init__()
        self.num_levels = len(channels)
        top = self.num_levels - 1
        self.decoder_dict = nn.ModuleDict()
        self.pre_upsample_dict = nn.ModuleDict()
        for i in reversed(range(self.num_levels)):
            c_in = channels[i] if i == top else channels[i + 1]
            self.pre_upsample_dict[_level(i)] = BilinearResample(c_in, channels[i], rates[i], "up")
            self.decoder_dict[_level(i)] = nn.Sequential(
                *[ResnetBlock(channels[i], shortcut_name="shortcut_conv") for _ in range(num_blocks)])
        self.conv_out = _gn_silu_conv(channels[0], 3)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Texture features, index ``i`` = level ``2**i`` (finest first)."""
        feats: list[torch.Tensor] = [x] * self.num_levels
        for i in reversed(range(self.num_levels)):
            x = self.decoder_dict[_level(i)](self.pre_upsample_dict[_level(i)](x))
            feats[i] = x
        return feats


class _KmeansQuantizer(nn.Module):
    """VQFR v1 quantiser (``L2VectorQuantizerKmeans`` layout): 1x1 ``quant_conv`` -> nearest code by L2 ->
    straight-through value ``z + (e - z)`` -> 1x1 ``post_quant_conv``."""

    def __init__(self, in_dim: int, num_code: int, code_dim: int):
        super().__init__()
        self.quant_conv = nn.Conv2d(in_dim, code_dim, 1)
        self.post_quant_conv = nn.Conv2d(code_dim, in_dim, 1)
        self.embedding = nn.Embedding(num_code, code_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z_conv = self.quant_conv(z)
        b, c, h, w = z_conv.shape
        codebook = self.embedding.weight
        flat = z_conv.permute(0, 2, 3, 1).reshape(-1, c)
        indices = nearest_code_indices(flat, codebook)
        dtype = torch.promote_types(flat.dtype, codebook.dtype)
        flat = flat.to(dtype)
        # the official straight-through form; differs from the code vector by at most ~1 ulp
        quant = flat + (codebook.to(dtype)[indices] - flat)
        quant = quant.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()
        info = {"z_conv": z_conv, "z_quant_before_conv": quant, "indices": indices.reshape(b, h * w)}
        return self.post_quant_conv(quant), info


class _V1Quantizer(nn.Module):
    """Holds one quantiser per quantised level (checkpoint key ``quantize_dict.<level>``)."""

    def __init__(self, quantizer_opt: Mapping[str, Mapping[str, Any]]):
        super().__init__()
        self.quantize_dict = nn.ModuleDict()
        for name, opt in quantizer_opt.items():
            kind = opt.get("type", "L2VectorQuantizerKmeans")
            if kind != "L2VectorQuantizerKmeans":
                raise ValueError(f"VQFR v1 quantizer {name}: type {kind!r} is not supported; the released v1 "
                                 "checkpoint uses 'L2VectorQuantizerKmeans' (the official demo config is wrong)")
            self.quantize_dict[name] = _KmeansQuantizer(opt["in_dim"], opt["num_code"], opt["code_dim"])


class VQFRv1(nn.Module):
    """VQFR v1 network. Constructor arguments are those of the official ``VQFRv1`` (see :data:`V1_CONFIG`).

    ``forward(x_lq)`` takes ``x_lq`` [B, 3, H, W] RGB in [-1, 1] (H, W multiples of ``2**(levels-1)``, 32 for the
    release) and returns a dict: ``main_dec`` (the restored image, [B, 3, H, W], unbounded, network range [-1, 1]),
    ``dec`` (texture-branch image, unless ``texture_output=False``), ``code_indices`` [B, h*w] (row-major) and,
    with ``return_feats=True``, ``z_conv`` / ``z_quant_before_conv`` [B, code_dim, h, w]. With ``autocast_dtype``
    the decoders run under autocast; the encoder and code selection always run in the parameters' precision.
    """

    def __init__(self, base_channels: int, proj_patch_size: int, resolution_scale_rates: Sequence[float],
                 channel_multipliers: Sequence[int], encoder_num_blocks: int, decoder_num_blocks: int,
                 quant_level: Sequence[str], inpfeat_extraction_opt: Mapping[str, int],
                 align_opt: Mapping[str, Mapping[str, int]], align_from_patch: int,
                 quantizer_opt: Mapping[str, Mapping[str, Any]], fix_keys: Sequence[str] = ()):
        super().__init__()
        del fix_keys  # training only (requires_grad toggles)
        num_levels = int(round(math.log2(proj_patch_size))) + 1
        if int(round(math.log2(align_from_patch))) + 1 != num_levels:
            raise ValueError(f"align_from_patch {align_from_patch} must equal proj_patch_size {proj_patch_size}")
        if len(channel_multipliers) < num_levels or len(resolution_scale_rates) < num_levels:
            raise ValueError(f"need {num_levels} channel multipliers and resolution scale rates")
        channels = [base_channels * m for m in channel_multipliers[:num_levels]]
        rates = list(resolution_scale_rates[:num_levels])
        top = _level(num_levels - 1)
        if top not in quant_level or set(quant_level) - set(quantizer_opt):
            raise ValueError(f"quant_level {list(quant_level)} must contain {top} and have a quantizer_opt entry each")
        missing = [_level(i) for i in range(num_levels) if _level(i) not in align_opt]
        if missing:
            raise ValueError(f"align_opt lacks levels {missing}")
        self.num_levels = num_levels
        self.top_level = top
        self.inpfeat_extraction = _InputFeature(inpfeat_extraction_opt["in_dim"], inpfeat_extraction_opt["out_dim"])
        self.encoder = _V1Encoder(channels, rates, encoder_num_blocks, quant_level)
        # the decoders use the rates in reverse order: level i upsamples by rates[L-1-i]
        self.decoder = _V1Decoder(channels, rates[::-1], decoder_num_blocks)
        levels = [align_opt[_level(i)] for i in range(num_levels)]
        self.main_decoder = _ParallelDecoder(
            channels, [o["cond_channels"] for o in levels], [o["cond_downscale_rate"] for o in levels],
            [o["deformable_groups"] for o in levels], layout="v1", upsample_rates=rates[::-1])
        self.quantizer = _V1Quantizer(quantizer_opt)

    def forward(self, x_lq: torch.Tensor, *, return_feats: bool = False, texture_output: bool = True,
                autocast_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        cond = self.inpfeat_extraction(x_lq.to(_dtype_of(self.inpfeat_extraction)))
        encoded = self.encoder(x_lq.to(_dtype_of(self.encoder)))
        quantized, info = {}, {}
        for name, quantizer in self.quantizer.quantize_dict.items():
            quantized[name], info[name] = quantizer(encoded[name].to(_dtype_of(quantizer)))
        out: dict[str, torch.Tensor] = {"code_indices": info[self.top_level]["indices"]}
        if return_feats:
            out["z_conv"] = info[self.top_level]["z_conv"]
            out["z_quant_before_conv"] = info[self.top_level]["z_quant_before_conv"]
        with _autocast(x_lq.device.type, autocast_dtype):
            texture = self.decoder(quantized[self.top_level].to(_dtype_of(self.decoder)))
            if texture_output:
                out["dec"] = self.decoder.conv_out(texture[0])
            out["main_dec"] = self.main_decoder(texture, cond, x_lq)
        return out


# ------------------------------------------------------------------------------------------------------------ v2
class _V2Encoder(nn.Module):
    """VQGAN v2 encoder: per level [strided downsample] + ``num_blocks`` ResnetBlocks (attention after each one on
    the coarsest level), a middle RB-Attn-RB, and GN-SiLU-conv to ``code_dim``."""

    def __init__(self, channels: Sequence[int], num_blocks: int, use_attention: bool, code_dim: int):
        super().__init__()
        top = len(channels) - 1
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for i, c in enumerate(channels):
            c_prev = channels[max(i - 1, 0)]
            layers: list[nn.Module] = [StridedDownsample(c_prev)] if i > 0 else []
            for j in range(num_blocks):
                layers.append(ResnetBlock(c_prev if j == 0 else c, c))
                if i == top and use_attention:
                    layers.append(AttnBlock(c))
            self.blocks.append(nn.Sequential(*layers))
        c = channels[-1]
        middle = [ResnetBlock(c), AttnBlock(c), ResnetBlock(c)] if use_attention else [ResnetBlock(c), ResnetBlock(c)]
        self.mid_blocks = nn.Sequential(*middle)
        self.conv_out = _gn_silu_conv(c, code_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        return self.conv_out(self.mid_blocks(x))


class _V2Decoder(nn.Module):
    """VQGAN v2 (texture) decoder: conv from ``code_dim``, RB-Attn-RB, then per level (coarsest first)
    [nearest x2 + conv] + ``num_blocks`` ResnetBlocks; ``conv_out`` = GN-SiLU-conv to RGB."""

    def __init__(self, channels: Sequence[int], num_blocks: int, use_attention: bool, code_dim: int):
        super().__init__()
        top = len(channels) - 1
        self.conv_in = nn.Conv2d(code_dim, channels[-1], 3, padding=1)
        c = channels[-1]
        middle = [ResnetBlock(c), AttnBlock(c), ResnetBlock(c)] if use_attention else [ResnetBlock(c), ResnetBlock(c)]
        self.mid_blocks = nn.Sequential(*middle)
        self.blocks = nn.ModuleList()
        for i in reversed(range(len(channels))):
            c_prev = channels[i] if i == top else channels[i + 1]
            layers: list[nn.Module] = [NearestUpsample(c_prev)] if i < top else []
            for j in range(num_blocks):
                layers.append(ResnetBlock(c_prev if j == 0 else channels[i], channels[i]))
                if i == top and use_attention:
                    layers.append(AttnBlock(channels[i]))
            self.blocks.append(nn.Sequential(*layers))
        self.conv_out = _gn_silu_conv(channels[0], 3)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Texture features, index ``i`` = level ``2**i`` (finest first)."""
        x = self.mid_blocks(self.conv_in(x))
        feats: list[torch.Tensor] = [x] * len(self.blocks)
        for j, block in enumerate(self.blocks):
            x = block(x)
            feats[len(self.blocks) - 1 - j] = x
        return feats


class _CodebookQuantizer(nn.Module):
    """VQFR v2 quantiser (``L2VectorQuantizer`` layout): only the ``embedding`` codebook [num_code, code_dim]."""

    def __init__(self, num_code: int, code_dim: int, spatial_size: Sequence[int] = (16, 16)):
        super().__init__()
        self.spatial_size = tuple(spatial_size)
        self.embedding = nn.Embedding(num_code, code_dim)

    def lookup(self, indices: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Code vectors for ``indices`` [B, h*w] (row-major) as a map [B, code_dim, h, w]."""
        quant = self.embedding(indices)
        # a permuted view (channels-last strides), as in the official code: convolutions then take the channels-last
        # path, and the outputs stay identical to the official ones
        return quant.reshape(indices.shape[0], height, width, -1).permute(0, 3, 1, 2)

    def nearest(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """'Nearest' code selection for a map ``z`` [B, D, h, w]: (straight-through quantised map, indices [B, h*w])."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        indices = nearest_code_indices(flat, self.embedding.weight)
        dtype = torch.promote_types(flat.dtype, self.embedding.weight.dtype)
        flat = flat.to(dtype)
        quant = flat + (self.embedding.weight.to(dtype)[indices] - flat)
        return quant.reshape(b, h, w, d).permute(0, 3, 1, 2).contiguous(), indices.reshape(b, h * w)


class VQFRv2(nn.Module):
    """VQFR v2 network. Constructor arguments are those of the official ``VQFRv2`` (see :data:`V2_CONFIG`).

    ``forward(x_lq, fidelity_ratio=1.0)`` takes ``x_lq`` [B, 3, H, W] RGB in [-1, 1] (the release expects 512x512:
    its code predictor was trained on a 16x16 token grid) and returns a dict: ``enc_feat`` [B, code_dim, h, w],
    ``quant_logit`` [B, h*w, num_code] (Predict mode), ``code_indices`` [B, h*w] (row-major), ``texture_dec`` (unless
    ``texture_output=False``) and ``main_dec`` [B, 3, H, W] (unbounded, network range). ``main_dec`` is the texture
    decoder's ``conv_out`` applied to ``texture_Level_1 + fidelity_ratio * main_branch``; at ``fidelity_ratio == 0``
    the main branch is skipped (the official result is then bit-identical to ``texture_dec``). Code logits are
    computed in float32 with autocast off; ``autocast_dtype`` puts only the decoders under autocast.
    """

    def __init__(self, base_channels: int, channel_multipliers: Sequence[int], num_enc_blocks: int,
                 use_enc_attention: bool, num_dec_blocks: int, use_dec_attention: bool, code_dim: int,
                 inpfeat_dim: int, code_selection_mode: str, align_opt: Mapping[str, int],
                 quantizer_opt: Mapping[str, Any]):
        super().__init__()
        kind = quantizer_opt.get("type", "L2VectorQuantizer")
        if kind != "L2VectorQuantizer":
            raise ValueError(f"VQFR v2 quantizer type {kind!r} is not supported (expected 'L2VectorQuantizer')")
        if code_selection_mode not in ("Predict", "Nearest"):
            raise ValueError(f"code_selection_mode must be 'Predict' or 'Nearest', got {code_selection_mode!r}")
        channels = [base_channels * m for m in channel_multipliers]
        num_levels = len(channels)
        self.encoder = _V2Encoder(channels, num_enc_blocks, use_enc_attention, code_dim)
        if code_selection_mode == "Predict":
            self.feat2index = nn.Sequential(nn.LayerNorm(quantizer_opt["code_dim"]),
                                            nn.Linear(quantizer_opt["code_dim"], quantizer_opt["num_code"]))
        else:
            self.feat2index = None
        self.decoder = _V2Decoder(channels, num_dec_blocks, use_dec_attention, code_dim)
        self.main_branch = _ParallelDecoder(
            channels, [align_opt["cond_channels"]] * num_levels, [2 ** i for i in range(num_levels)],
            [align_opt["deformable_groups"]] * num_levels, layout="v2")
        self.inpfeat_extraction = nn.Conv2d(3, inpfeat_dim, 3, padding=1)
        self.quantizer = _CodebookQuantizer(quantizer_opt["num_code"], quantizer_opt["code_dim"],
                                            quantizer_opt.get("spatial_size", (16, 16)))

    def _code_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """LayerNorm + Linear over tokens [B, N, D] in float32 (float64 for float64 inputs), autocast off."""
        norm, linear = self.feat2index
        dtype = torch.promote_types(tokens.dtype, torch.float32)
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            h = F.layer_norm(tokens.to(dtype), norm.normalized_shape, norm.weight.to(dtype), norm.bias.to(dtype),
                             norm.eps)
            return F.linear(h, linear.weight.to(dtype), linear.bias.to(dtype))

    def forward(self, x_lq: torch.Tensor, fidelity_ratio: float = 1.0, *, texture_output: bool = True,
                autocast_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        if fidelity_ratio is None:
            raise ValueError("fidelity_ratio must be a number (0 = best quality, 1 = best fidelity)")
        enc = self.encoder(x_lq.to(_dtype_of(self.encoder)))
        b, _, h, w = enc.shape
        out: dict[str, torch.Tensor] = {"enc_feat": enc}
        if self.feat2index is not None:
            logits = self._code_logits(enc.flatten(2).transpose(1, 2))
            indices = logits.argmax(dim=-1)
            out["quant_logit"] = logits
            quant = self.quantizer.lookup(indices, h, w)
        else:
            quant, indices = self.quantizer.nearest(enc)
        out["code_indices"] = indices
        with _autocast(x_lq.device.type, autocast_dtype):
            texture = self.decoder(quant.to(_dtype_of(self.decoder)))
            if texture_output or fidelity_ratio == 0:
                out["texture_dec"] = self.decoder.conv_out(texture[0])
            if fidelity_ratio == 0:
                out["main_dec"] = out["texture_dec"]
            else:
                cond = self.inpfeat_extraction(x_lq.to(_dtype_of(self.inpfeat_extraction)))
                main = self.main_branch(texture, cond)
                out["main_dec"] = self.decoder.conv_out(texture[0] + fidelity_ratio * main.to(texture[0].dtype))
        if not texture_output:
            out.pop("texture_dec", None)
        return out


# ------------------------------------------------------------------------------------------------ restorer adapter
class VQFRRestorer(Restorer):
    """Adapter: our [0, 1] RGB batch in, the official demo's conversions around the network, [0, 1] RGB out.

    ``precision`` (see :mod:`.layers.precision`): ``"fp32"``; ``"fp16"``/``"bf16"`` cast the decoders' weights once
    and run them natively in half precision (the deformable convolutions stay float32: sampling positions of a few
    pixels need more than 8 bits); ``"fp16-amp"``/``"bf16-amp"`` run the decoders under per-op autocast over float32
    weights; ``"auto"`` is ``fp16-amp`` on CUDA and float32 elsewhere. Code selection (encoder + quantiser / code
    predictor) always runs in float32 unless ``autocast_encoder=True`` (then the encoder is cast or autocast too;
    the distances/logits stay float32). If a half-precision batch produces a non-finite value it is recomputed in
    float32 (with a warning; cast modes keep a float32 copy of the network on the CPU for it). ``quantize_output``
    rounds to the 8-bit grid as the demo's ``tensor2img`` does. ``channels_last`` puts the convolution weights in
    channels-last memory order (faster cuDNN kernels on tensor cores; same values). The network is deterministic:
    ``seeds`` are accepted and ignored.
    """

    def __init__(self, card: hub.ModelCard, net: nn.Module, *, fidelity_ratio: float | None = None,
                 precision: str = "auto", quantize_output: bool = True, autocast_encoder: bool = False,
                 channels_last: bool = False):
        super().__init__(card)
        self._precision = parse_precision(precision, card.name)
        self.net = net
        self.is_v2 = isinstance(net, VQFRv2)
        self.fidelity_ratio = fidelity_ratio
        self.precision = precision
        self.quantize_output = bool(quantize_output)
        self.autocast_encoder = bool(autocast_encoder)
        self.channels_last = bool(channels_last)
        self._fp32_copy: list[nn.Module] = []  # a plain list: not a submodule, not in state_dict, not moved by .to()
        dtype = self._precision.cast_dtype
        if dtype is not None:
            self._fp32_copy.append(copy.deepcopy(net).cpu())
            parts = [net.decoder, net.inpfeat_extraction, net.main_branch if self.is_v2 else net.main_decoder]
            if self.autocast_encoder:
                parts.append(net.encoder)
            for part in parts:
                cast_module(part, dtype, keep=(ModulatedDeformConv2d,))
        if self.channels_last:
            net.to(memory_format=torch.channels_last)

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype used on ``device`` (None = no autocast)."""
        return self._precision.autocast_dtype(device)

    def _network(self, x: torch.Tensor, amp: torch.dtype | None, net: nn.Module | None = None) -> torch.Tensor:
        net = self.net if net is None else net
        kwargs: dict[str, Any] = {"texture_output": False}
        if self.is_v2:
            kwargs["fidelity_ratio"] = self.fidelity_ratio
        if amp is not None and self.autocast_encoder:
            with torch.autocast(device_type=x.device.type, dtype=amp):
                return net(x, **kwargs)["main_dec"]
        return net(x, autocast_dtype=amp, **kwargs)["main_dec"]

    def restore(self, images: torch.Tensor, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Restore ``images`` [B, 3, 512, 512] float RGB in [0, 1]; returns the same shape, dtype and range."""
        check_faces(images, self.card.input_size)
        with torch.inference_mode():  # the clamp stays inside: in-place ops on inference tensors fail outside
            return self.forward(images, seeds=seeds).clamp_(0, 1)

    def _float32_network(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fp32_copy:  # amp: the float32 weights are at hand
            return self._network(x.float(), None)
        net = self._fp32_copy[0].to(x.device)
        try:
            return self._network(x.float(), None, net)
        finally:
            net.cpu()

    def forward(self, images: torch.Tensor, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        dtype = torch.promote_types(_dtype_of(self.net.encoder), torch.float32)  # float64 nets stay float64
        x = images.to(dtype) * 2 - 1  # [0, 1] -> [-1, 1] (mean 0.5, std 0.5), RGB as the network expects
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = self.autocast_dtype(x.device)
        out = self._network(x, amp)
        if (amp is not None or self._precision.cast_dtype is not None) and not bool(torch.isfinite(out).all()):
            logger.warning("%s: non-finite output at precision %s; recomputing this batch in float32",
                           self.card.name, self.precision)
            out = self._float32_network(x)
        out = (out.to(dtype).clamp(-1, 1) + 1) / 2
        if self.quantize_output:
            out = torch.round(out * 255) / 255
        return out.to(images.dtype).contiguous()

    def extra_repr(self) -> str:
        fid = f", fidelity_ratio={self.fidelity_ratio}" if self.is_v2 else ""
        return f"name={self.card.name!r}{fid}, precision={self.precision!r}, quantize_output={self.quantize_output}"


# ------------------------------------------------------------------------------------------------ checkpoint checks
def _detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """'vqfr_v1', 'vqfr_v2' or None, judged from characteristic key prefixes."""
    keys = list(state_dict)
    if any(k.startswith("main_decoder.align_func_dict.") for k in keys) and \
            any(k.startswith("quantizer.quantize_dict.") for k in keys):
        return "vqfr_v1"
    if any(k.startswith("main_branch.align_func_dict.") for k in keys) and \
            any(k.startswith("quantizer.embedding.") for k in keys):
        return "vqfr_v2"
    return None


def load_vqfr_weights(net: nn.Module, path: str | os.PathLike, *, name: str) -> None:
    """Load an official-layout checkpoint (``params_ema``, else ``params``) strictly into ``net``.

    Raises :class:`CheckpointLayoutError` naming the file, the mismatching keys and, when the file is recognisably
    the other VQFR version, the restorer to use instead.
    """
    state_dict = hub.load_checkpoint(path, keys=("params_ema", "params"))
    expected = "vqfr_v1" if isinstance(net, VQFRv1) else "vqfr_v2"
    found = _detect_layout(state_dict)
    try:
        hub.load_state_dict_strict(net, state_dict, source=str(path))
    except CheckpointLayoutError as exc:
        if found is not None and found != expected:
            other = "vqfr-v1" if found == "vqfr_v1" else "vqfr-v2"
            raise CheckpointLayoutError(
                f"{path}: this is a {other} checkpoint, not {name}; use --restorer {other}") from exc
        other_backend = identify_layout(state_dict)  # a GFPGAN, CodeFormer or DifFace file
        if other_backend is not None and not other_backend.startswith("vqfr"):
            raise CheckpointLayoutError(f"{path}: {describe_layout(other_backend)}, not a {name} checkpoint") from exc
        raise CheckpointLayoutError(f"{exc} (expected the official {name} layout: VQFR_v1-33a1fac5.pth or "
                                    f"VQFR_v2.pth from TencentARC/VQFR, key params_ema or params)") from exc


# ------------------------------------------------------------------------------------------------- configs and cards
V1_CONFIG: dict[str, Any] = {
    "base_channels": 128, "proj_patch_size": 32, "resolution_scale_rates": [1, 2, 2, 2, 2, 2],
    "channel_multipliers": [1, 1, 2, 2, 2, 4], "encoder_num_blocks": 2, "decoder_num_blocks": 3,
    "quant_level": ["Level_32"], "fix_keys": ["embedding"], "inpfeat_extraction_opt": {"in_dim": 3, "out_dim": 32},
    "align_from_patch": 32,
    "align_opt": {f"Level_{r}": {"cond_channels": 32, "cond_downscale_rate": r, "deformable_groups": 4}
                  for r in (32, 16, 8, 4, 2, 1)},
    "quantizer_opt": {"Level_32": {"type": "L2VectorQuantizerKmeans", "in_dim": 512, "num_code": 1024,
                                   "code_dim": 256, "reservoir_size": 16384, "reestimate_iters": 2000,
                                   "reestimate_maxiters": -1, "warmup_iters": -1}},
}
"""Released VQFR v1 constructor arguments (``options/test/VQFR/test_vqfr_v1.yml``): 76,563,583 parameters."""

V2_CONFIG: dict[str, Any] = {
    "base_channels": 64, "channel_multipliers": [1, 2, 2, 4, 4, 8], "num_enc_blocks": 2, "use_enc_attention": True,
    "num_dec_blocks": 2, "use_dec_attention": True, "code_dim": 256, "inpfeat_dim": 32,
    "align_opt": {"cond_channels": 32, "deformable_groups": 4}, "code_selection_mode": "Predict",
    "quantizer_opt": {"type": "L2VectorQuantizer", "num_code": 1024, "code_dim": 256, "spatial_size": [16, 16]},
}
"""Released VQFR v2 constructor arguments (``options/test/VQFR/test_vqfr_v2.yml``): 83,486,539 parameters."""

_PAPER = "https://arxiv.org/abs/2205.06803"
_ORIGIN = "https://github.com/TencentARC/VQFR"

CARDS: dict[str, hub.ModelCard] = {
    "vqfr-v1": hub.ModelCard(
        name="vqfr-v1", arch="vqfr_v1",
        weights={"model": hub.WeightFile(
            filename="VQFR_v1-33a1fac5.pth", url=None, sha256=None, license="Apache-2.0",
            origin_url="https://drive.google.com/drive/folders/1lczKYEbARwe27FJlKoFdng7UnffGDjO2", paper=_PAPER)},
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        default_kwargs={"precision": "auto", "quantize_output": True},
        description="VQFR v1 (ECCV 2022): VQ codebook + parallel decoder, 76.6M parameters; weights on the "
                    "authors' Google Drive only",
        reported={"seconds_per_face_a100": 0.36, "params": 76_563_583}),
    "vqfr-v2": hub.ModelCard(
        name="vqfr-v2", arch="vqfr_v2",
        weights={"model": hub.WeightFile(
            filename="VQFR_v2.pth", url="https://github.com/TencentARC/VQFR/releases/download/v2.0.0/VQFR_v2.pth",
            sha256=None, license="Apache-2.0", origin_url=_ORIGIN + "/releases/tag/v2.0.0", paper=_PAPER)},
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        default_kwargs={"fidelity_ratio": 0.0, "precision": "auto", "quantize_output": True},
        description="VQFR v2: predicted codes + texture warping, 83.5M parameters; fidelity_ratio 0 (default, "
                    "best quality) to 1 (best fidelity)",
        reported={"params": 83_486_539}),
}
"""Registered variants. ``mean``/``std`` are in [0, 1] units: the network sees ``(x - 0.5) / 0.5``. No sha256 is
published for either file (the cards leave it empty; ``restorever weights verify`` records the local hash)."""

_CONFIGS = {"vqfr_v1": V1_CONFIG, "vqfr_v2": V2_CONFIG}


def build_network(arch: str, config: Mapping[str, Any] | None = None, *, initialize: bool = True) -> nn.Module:
    """A ``VQFRv1``/``VQFRv2`` (``arch`` ``"vqfr_v1"``/``"vqfr_v2"``) on the CPU in eval mode.

    ``config`` replaces the released constructor arguments (same names as the official classes, e.g. a fixture's
    ``config``); ``None`` builds the released size. ``initialize=False`` leaves the parameters uninitialised (built
    on the meta device, then allocated): use it only when a checkpoint is loaded next.
    """
    if arch not in _CONFIGS:
        raise ValueError(f"unknown VQFR arch {arch!r}; expected one of {sorted(_CONFIGS)}")
    kwargs = copy.deepcopy(dict(config if config is not None else _CONFIGS[arch]))
    cls = VQFRv1 if arch == "vqfr_v1" else VQFRv2
    if initialize:
        net = cls(**kwargs)
    else:
        with torch.device("meta"):
            net = cls(**kwargs)
        net = net.to_empty(device="cpu")
    return net.eval().requires_grad_(False)


def create(name: str, *, weights: Mapping[str, str] | None = None, device: str | torch.device = "cpu",
           fidelity_ratio: float | None = None, precision: str | None = None, quantize_output: bool | None = None,
           autocast_encoder: bool = False, channels_last: bool = False, pretrained: bool = True,
           cache_dir: str | os.PathLike | None = None, config: Mapping[str, Any] | None = None) -> VQFRRestorer:
    """Create ``vqfr-v1`` or ``vqfr-v2``.

    ``weights``: ``{"model": FILE}`` (an explicit checkpoint of the official layout), else the cache
    (``$RESTOREVER_HOME/weights/<name>/``), else a download where a URL exists; a missing file raises
    :class:`~restorever.errors.WeightsNotFoundError` naming the file and its URL. ``fidelity_ratio`` (v2 only,
    [0, 1], default 0.0 as in the official demo). ``pretrained=False`` skips loading (random weights, for
    benchmarks); ``config`` overrides the constructor arguments (reduced sizes in tests).
    """
    if name not in CARDS:
        raise KeyError(f"unknown VQFR variant {name!r}; expected one of {sorted(CARDS)}")
    card = CARDS[name]
    defaults = card.default_kwargs
    if name == "vqfr-v1" and fidelity_ratio is not None:
        logger.warning("vqfr-v1 has no fidelity control; fidelity_ratio=%s is ignored", fidelity_ratio)
        fidelity_ratio = None
    if name == "vqfr-v2":
        fidelity_ratio = defaults["fidelity_ratio"] if fidelity_ratio is None else float(fidelity_ratio)
        if not 0.0 <= fidelity_ratio <= 1.0:
            raise ValueError(f"vqfr-v2: fidelity_ratio must be in [0, 1] (0 = best quality, 1 = best fidelity), "
                             f"got {fidelity_ratio}")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - {"model"})
    if unknown:
        raise ValueError(f"{name}: unknown weight roles {unknown}; pass --weights FILE")
    net = build_network(card.arch, config, initialize=not pretrained)
    weight_files: dict[str, tuple[str, str | None]] = {}
    if pretrained:
        path = hub.resolve_weights(card, "model", explicit=weights.get("model"), cache_dir=cache_dir)
        load_vqfr_weights(net, path, name=name)
        weight_files["model"] = (str(path), hub.sha256_file(path))
        logger.info("%s: loaded %s", name, path)
    elif weights:
        raise ValueError(f"{name}: weights given together with pretrained=False")
    else:
        weight_files["model"] = ("random-init", None)
    restorer = VQFRRestorer(card, net, fidelity_ratio=fidelity_ratio,
                            precision=defaults["precision"] if precision is None else precision,
                            quantize_output=defaults["quantize_output"] if quantize_output is None else quantize_output,
                            autocast_encoder=autocast_encoder, channels_last=channels_last)
    restorer.weight_files = weight_files  # {role: (path, sha256)}: the pipeline's cache keys and results.json
    return restorer.to(device).eval()


# ------------------------------------------------------------------------------------------------ memory measurement
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _release_free_heap() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemoryMonitor:
    """Context manager measuring the peak memory of the code it wraps on ``device``.

    After exit: ``baseline_bytes`` (in use at entry), ``peak_bytes`` (highest seen, baseline included),
    ``activation_bytes`` (their difference) and ``method``. CUDA: ``torch.cuda.max_memory_allocated`` (exact,
    allocator level, tensors only). CPU: the process's resident set size sampled every ``interval_s`` seconds from
    ``/proc/self/statm`` after returning freed heap to the OS (``malloc_trim``): an estimate that can miss spikes
    shorter than the interval and includes allocator slack; where ``/proc`` is missing, ``ru_maxrss`` (the process's
    lifetime peak, an upper bound; ``activation_bytes`` is then None).
    """

    def __init__(self, device: torch.device | str, interval_s: float = 0.002):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.baseline_bytes: int | None = None
        self.peak_bytes: int | None = None
        self.method = ""
        self._done = threading.Event()
        self._sampler: threading.Thread | None = None

    @property
    def activation_bytes(self) -> int | None:
        if self.peak_bytes is None or self.baseline_bytes is None:
            return None
        return self.peak_bytes - self.baseline_bytes

    def __enter__(self) -> "PeakMemoryMonitor":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
            self.method = "cuda_max_memory_allocated"
            return self
        _release_free_heap()
        self.baseline_bytes = _rss_bytes()
        if self.baseline_bytes is None:
            self.method = "ru_maxrss (process lifetime peak)"
            return self
        self.method = f"cpu_rss_sampling_{self.interval_s * 1000:g}ms"
        self.peak_bytes = self.baseline_bytes
        self._done.clear()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak_bytes = max(self.peak_bytes or 0, _rss_bytes() or 0)
            time.sleep(self.interval_s)

    def __exit__(self, *exc_info: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._sampler is not None:
            self._done.set()
            self._sampler.join()
            self.peak_bytes = max(self.peak_bytes or 0, _rss_bytes() or 0)
        else:
            import resource
            self.peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.baseline_bytes = None


def measure_peak_memory(restorer: Restorer, batch_sizes: Sequence[int], *,
                        size: int | None = None) -> list[dict[str, Any]]:
    """Peak memory of one ``restorer.restore`` call per batch size (random faces on the restorer's device).

    Each row: ``batch_size``, ``parameter_bytes``, ``peak_bytes`` (in use at the peak, parameters included),
    ``activation_bytes`` (peak minus what was in use before the call) and ``method`` (see
    :class:`PeakMemoryMonitor`: exact on CUDA, a sampled-RSS estimate on CPU).
    """
    device = restorer.device
    size = size or restorer.card.input_size
    param_bytes = sum(p.numel() * p.element_size() for p in restorer.parameters())
    rows = []
    for batch in batch_sizes:
        images = torch.rand(batch, 3, size, size, device=device)
        with PeakMemoryMonitor(device) as monitor:
            restorer.restore(images)
        rows.append({"batch_size": batch, "parameter_bytes": param_bytes, "peak_bytes": monitor.peak_bytes,
                     "activation_bytes": monitor.activation_bytes, "method": monitor.method})
    return rows

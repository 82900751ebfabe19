"""VQFR networks: the official ``VQFRv1`` and ``VQFRv2`` module trees (hence every state_dict key) and numerics.

Written from the description in ``shared/reference/vqfr.md`` (official code: https://github.com/TencentARC/VQFR,
Apache-2.0, commit 239c77a); the released ``VQFR_v1-33a1fac5.pth`` and ``VQFR_v2.pth`` load strictly into these
classes. The restorer adapter, checkpoint checks, configs, cards and ``create`` live in ``restorers/vqfr.py``.
Tensors are NCHW RGB in [-1, 1] (the adapter maps [0, 1] faces to that range).

Order of this file: helpers -> shared parallel decoder -> VQFRv1 -> VQFRv2.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .vqfr_blocks import (AttnBlock, BilinearResample, NearestUpsample, ResnetBlock, StridedDownsample,
                          TextureWarpingModule, group_norm, nearest_code_indices, upsample_guide)

__all__ = ["VQFRv1", "VQFRv2", "dtype_of"]


def _level(i: int) -> str:
    """Name of pyramid level ``i`` (downsampling factor ``2**i``), as in the checkpoints."""
    return f"Level_{2 ** i}"


def _gn_silu_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """GroupNorm -> SiLU -> 3x3 conv (checkpoint keys ``.0`` and ``.2``)."""
    return nn.Sequential(group_norm(in_channels), nn.SiLU(inplace=True), nn.Conv2d(in_channels, out_channels, 3,
                                                                                   padding=1))


def dtype_of(module: nn.Module) -> torch.dtype:
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
        cond = self.inpfeat_extraction(x_lq.to(dtype_of(self.inpfeat_extraction)))
        encoded = self.encoder(x_lq.to(dtype_of(self.encoder)))
        quantized, info = {}, {}
        for name, quantizer in self.quantizer.quantize_dict.items():
            quantized[name], info[name] = quantizer(encoded[name].to(dtype_of(quantizer)))
        out: dict[str, torch.Tensor] = {"code_indices": info[self.top_level]["indices"]}
        if return_feats:
            out["z_conv"] = info[self.top_level]["z_conv"]
            out["z_quant_before_conv"] = info[self.top_level]["z_quant_before_conv"]
        with _autocast(x_lq.device.type, autocast_dtype):
            texture = self.decoder(quantized[self.top_level].to(dtype_of(self.decoder)))
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
        enc = self.encoder(x_lq.to(dtype_of(self.encoder)))
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
            texture = self.decoder(quant.to(dtype_of(self.decoder)))
            if texture_output or fidelity_ratio == 0:
                out["texture_dec"] = self.decoder.conv_out(texture[0])
            if fidelity_ratio == 0:
                out["main_dec"] = out["texture_dec"]
            else:
                cond = self.inpfeat_extraction(x_lq.to(dtype_of(self.inpfeat_extraction)))
                main = self.main_branch(texture, cond)
                out["main_dec"] = self.decoder.conv_out(texture[0] + fidelity_ratio * main.to(texture[0].dtype))
        if not texture_output:
            out.pop("texture_dec", None)
        return out


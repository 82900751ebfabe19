"""StyleGAN2 "clean" blocks and the spatially conditioned (SFT) generator that GFPGAN v1.2-v1.4 decode with.

Written from the description in ``shared/reference/gfpgan.md`` §3-§5; attribute names follow the official module tree
(``stylegan2_clean_arch.py`` / ``gfpganv1_clean_arch.py``), so the released ``GFPGANv1.{3,4}.pth`` load with
unchanged keys. "Clean" means the equalised-learning-rate scales and the fused activation's gain are folded into the
stored weights: no blur filters, no transposed convolutions, every resize is bilinear (``align_corners=False``).

Conventions: tensors NCHW, batch first; a style/latent is ``[B, num_style_feat]``; noise maps are ``[B or 1, 1, H, W]``
(broadcast over channels). The modulated convolution is computed as a plain convolution of the style-scaled input,
followed by the per-sample demodulation factor -- mathematically the official per-sample-kernel form, but one shared
kernel for the whole batch (fast for large batches and under autocast); the demodulation factors stay float32.
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ModulatedConv2d", "StyleConv", "ToRGB", "ConstantInput", "NormStyleCode", "StyleGAN2GeneratorCSFT",
           "stylegan_channels", "noise_resolutions"]

DEMOD_EPS = 1e-8
LRELU_SLOPE = 0.2


def stylegan_channels(channel_multiplier: float, narrow: float) -> dict[int, int]:
    """Channel width per resolution (4 ... 1024) of the clean StyleGAN2 family (``int()`` truncation as released)."""
    cm = channel_multiplier
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
            1024: 16 * cm}
    return {res: int(c * narrow) for res, c in base.items()}


def noise_resolutions(out_size: int) -> list[int]:
    """Side length of the noise map of each style layer (``style_conv1`` first): 4, 8, 8, 16, 16, ..., out, out."""
    log_size = int(math.log2(out_size))
    return [2 ** ((i + 5) // 2) for i in range((log_size - 2) * 2 + 1)]


def _bilinear2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class NormStyleCode(nn.Module):
    """``x * rsqrt(mean(x^2, dim=1) + 1e-8)``: the style MLP's input normalisation (unused when input_is_latent)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution, clean form (keys ``weight`` ``[1, out, in, k, k]``, ``modulation.*``).

    ``forward(x [B, in, H, W], style [B, num_style_feat])``: per-input-channel scales ``s = modulation(style)``; the
    effective kernel of sample b is ``weight * s_b``, demodulated (``rsqrt(sum over in,k,k of kernel^2 + 1e-8)`` per
    output channel) when ``demodulate``; with ``upsample`` the input is first resized x2 bilinearly. Stride 1, padding
    ``k // 2``, no bias. Returns ``[B, out, H', W']``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int, *,
                 demodulate: bool = True, upsample: bool = False, eps: float = DEMOD_EPS):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.upsample, self.eps = demodulate, upsample, eps
        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
                                   / math.sqrt(in_channels * kernel_size ** 2))
        # the official init: kaiming-normal (fan_in) modulation weights, modulation bias 1 (identity styles)
        nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
        nn.init.ones_(self.modulation.bias)

    def demodulation(self, s: torch.Tensor) -> torch.Tensor:
        """``[B, out]`` factors ``rsqrt(sum_i s_bi^2 * sum_k W_oik^2 + eps)``, in float32 (float64 stays float64)."""
        dtype = torch.promote_types(s.dtype, torch.float32)
        # autocast off (on a device without autocast, e.g. the meta device used for FLOP counts, nothing to turn off)
        no_autocast = torch.autocast(device_type=s.device.type, enabled=False) if s.device.type != "meta" \
            else contextlib.nullcontext()
        with no_autocast:
            w2 = self.weight[0].to(dtype).pow(2).sum(dim=(2, 3))  # [out, in]
            return torch.rsqrt(s.to(dtype).pow(2) @ w2.t() + self.eps)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.modulation(style)  # [B, in]
        x = x * s[:, :, None, None].to(x.dtype)
        if self.upsample:
            x = _bilinear2x(x)
        out = F.conv2d(x, self.weight[0].to(x.dtype), padding=self.kernel_size // 2)
        if self.demodulate:
            out = out * self.demodulation(s)[:, :, None, None].to(out.dtype)
        return out


class StyleConv(nn.Module):
    """Modulated 3x3 conv (demodulated) x sqrt(2), + ``weight`` x noise, + ``bias``, then LeakyReLU(0.2).

    Keys: ``weight`` ``[1]`` (noise strength), ``bias`` ``[1, out, 1, 1]``, ``modulated_conv.*``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int, *,
                 upsample: bool = False):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, kernel_size, num_style_feat,
                                              demodulate=True, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.modulated_conv(x, style) * math.sqrt(2)
        out = out + self.weight.to(out.dtype) * noise.to(out.dtype)
        out = out + self.bias.to(out.dtype)
        return F.leaky_relu(out, LRELU_SLOPE)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (not demodulated) + ``bias``; adds the previous RGB ``skip`` (resized x2 bilinearly
    when ``upsample``). Keys: ``bias`` ``[1, 3, 1, 1]``, ``modulated_conv.*``."""

    def __init__(self, in_channels: int, num_style_feat: int, *, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style)
        out = out + self.bias.to(out.dtype)
        if skip is not None:
            if self.upsample:
                skip = _bilinear2x(skip)
            out = out + skip.to(out.dtype)
        return out


class ConstantInput(nn.Module):
    """The learned ``[1, C, size, size]`` start tensor, repeated over the batch (key ``weight``)."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, -1, -1, -1)


class StyleGAN2GeneratorCSFT(nn.Module):
    """GFPGAN's StyleGAN2 decoder with spatial feature transform (official ``StyleGAN2GeneratorCSFT``, clean).

    ``forward(latent [B, num_latent, num_style_feat], conditions, noise)``: ``conditions`` is
    ``[scale_0, shift_0, scale_1, shift_1, ...]``, one pair per resolution level 8 ... out_size; after the upsampling
    conv of level k the **second half** of the channels becomes ``x * scale_k + shift_k`` (``sft_half``).
    ``noise``: one map per style layer (see :func:`noise_resolutions`), ``None`` = the stored ``noises.noise{i}``
    buffers. Latent slots: conv1 of level k uses slot 1+2k, conv2 2+2k, its ToRGB 3+2k. Returns the RGB image
    ``[B, 3, out_size, out_size]``, unbounded. ``style_mlp`` is built (its keys are in the checkpoints) but only
    run by :meth:`map_styles` (``input_is_latent=False``, never in the released GFPGAN configuration).
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 narrow: float = 1, sft_half: bool = True):
        super().__init__()
        if not sft_half:
            raise ValueError("only sft_half=True (the released GFPGAN configuration) is implemented")
        self.num_style_feat = num_style_feat
        layers: list[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            layers += [nn.Linear(num_style_feat, num_style_feat, bias=True), nn.LeakyReLU(LRELU_SLOPE)]
        self.style_mlp = nn.Sequential(*layers)
        channels = stylegan_channels(channel_multiplier, narrow)
        self.log_size = int(math.log2(out_size))
        if 2 ** self.log_size != out_size or out_size < 8:
            raise ValueError(f"out_size must be a power of two >= 8, got {out_size}")
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2
        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = StyleConv(channels[4], channels[4], 3, num_style_feat)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, upsample=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        in_channels = channels[4]
        for i in range(3, self.log_size + 1):
            out_channels = channels[2 ** i]
            self.style_convs.append(StyleConv(in_channels, out_channels, 3, num_style_feat, upsample=True))
            self.style_convs.append(StyleConv(out_channels, out_channels, 3, num_style_feat))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True))
            in_channels = out_channels
        for i, res in enumerate(noise_resolutions(out_size)):
            self.noises.register_buffer(f"noise{i}", torch.randn(1, 1, res, res))

    def stored_noise(self) -> list[torch.Tensor]:
        """The checkpoint's noise maps, one ``[1, 1, r, r]`` per style layer."""
        return [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]

    def map_styles(self, z: torch.Tensor) -> torch.Tensor:
        """The style MLP (normalise, then ``num_mlp`` Linear + LeakyReLU) on ``[B, num_style_feat]`` codes."""
        return self.style_mlp(z)

    def forward(self, latent: torch.Tensor, conditions: Sequence[torch.Tensor],
                noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        if latent.ndim != 3 or latent.shape[1] != self.num_latent:
            raise ValueError(f"latent must be [B, {self.num_latent}, {self.num_style_feat}], got {tuple(latent.shape)}")
        noise = self.stored_noise() if noise is None else list(noise)
        if len(noise) != self.num_layers:
            raise ValueError(f"need {self.num_layers} noise maps (one per style layer), got {len(noise)}")
        out = self.constant_input(latent.shape[0])
        out = self.style_conv1(out, latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for k, to_rgb in enumerate(self.to_rgbs):
            j = 1 + 2 * k
            out = self.style_convs[2 * k](out, latent[:, j], noise[j])
            if 2 * k + 1 < len(conditions):
                same, sft = out.split(out.shape[1] // 2, dim=1)
                sft = sft * conditions[2 * k].to(sft.dtype) + conditions[2 * k + 1].to(sft.dtype)
                out = torch.cat([same, sft], dim=1)
            out = self.style_convs[2 * k + 1](out, latent[:, j + 1], noise[j + 1])
            skip = to_rgb(out, latent[:, j + 2], skip)
        return skip

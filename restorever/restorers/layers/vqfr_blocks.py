"""VQGAN-style blocks and VQFR's texture warping module.

Written from the description in ``shared/reference/vqfr.md``; attribute names follow the official VQFR module tree so
that the released checkpoints load with unchanged keys. Conventions used by every block here:

* GroupNorm: 32 groups, ``eps=1e-6``, affine (PyTorch's default 1e-5 changes outputs measurably);
* activation: SiLU, applied in place only to fresh normalisation outputs (never to a tensor kept elsewhere);
* bilinear resampling uses ``align_corners=False``.

Tensors are NCHW, batch-first; device and dtype follow the input (under autocast the convolutions run in reduced
precision; :func:`nearest_code_indices` and :class:`~.modulated_deform_conv.ModulatedDeformConv2d` stay float32).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .modulated_deform_conv import ModulatedDeformConv2d

__all__ = [
    "group_norm", "ResnetBlock", "AttnBlock", "StridedDownsample", "NearestUpsample", "BilinearResample",
    "TextureWarpingModule", "upsample_guide", "nearest_code_indices",
]


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups and ``eps=1e-6`` (the VQGAN/VQFR setting)."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """``shortcut(x) + conv2(silu(gn2(conv1(silu(gn1(x))))))`` with 3x3 convolutions.

    The shortcut is a 1x1 convolution only when ``in_channels != out_channels``; it is registered under
    ``shortcut_name`` (VQFR v1 checkpoints call it ``shortcut_conv``, v2 checkpoints ``residual_func``).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, *, shortcut_name: str = "residual_func"):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self._shortcut_name = shortcut_name if in_channels != out_channels else None
        if self._shortcut_name is not None:
            self.add_module(shortcut_name, nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        shortcut = x if self._shortcut_name is None else getattr(self, self._shortcut_name)(x)
        return shortcut + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual: ``x + proj_out(softmax(q k^T / sqrt(C)) v)``.

    ``q``, ``k``, ``v`` and ``proj_out`` are 1x1 convolutions over ``norm(x)``; tokens are the H*W positions.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        if x.is_cuda:  # fused SDPA kernel on contiguous [B, 1, N, C] tokens (one head of C channels)
            q, k, v = (proj(hn).flatten(2).transpose(1, 2).unsqueeze(1).contiguous()
                       for proj in (self.q, self.k, self.v))
            out = F.scaled_dot_product_attention(q, k, v)  # default scale 1/sqrt(C), as below
            return x + self.proj_out(out.squeeze(1).transpose(1, 2).reshape(b, c, h, w))
        q = self.q(hn).flatten(2)  # [B, C, N], N = H*W tokens
        k = self.k(hn).flatten(2)
        v = self.v(hn).flatten(2)
        # CPU: explicit matmuls in the reference order (scale applied after q^T k): the token grid is small (16x16 for a
        # 512 face), and this keeps float64 results identical to the official implementation; the softmax runs in at
        # least float32 (a no-op for float32/float64)
        scores = torch.bmm(q.transpose(1, 2), k) * (c ** -0.5)
        weights = torch.softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), dim=2)
        out = torch.bmm(v, weights.transpose(1, 2).to(v.dtype)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class StridedDownsample(nn.Module):
    """Halve H and W: zero-pad one row at the bottom and one column at the right, then a 3x3 stride-2 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class NearestUpsample(nn.Module):
    """Double H and W with nearest-neighbour interpolation, then a 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels if out_channels is None else out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class BilinearResample(nn.Module):
    """VQFR v1's ``UpDownSample``: bilinear resize by ``scale`` combined with a 3x3 conv.

    ``direction="up"``: conv first, then resize to ``(int(scale*H), int(scale*W))``; ``"down"``: resize to
    ``(int(H/scale), int(W/scale))`` first, then conv. ``scale == 1`` is the identity and has no parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: float, direction: str):
        super().__init__()
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        self.scale = scale
        self.direction = direction
        if scale != 1:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x
        h, w = x.shape[-2:]
        if self.direction == "up":
            size = (int(self.scale * h), int(self.scale * w))
            return F.interpolate(self.conv(x), size=size, mode="bilinear", align_corners=False)
        size = (int(h / self.scale), int(w / self.scale))
        return self.conv(F.interpolate(x, size=size, mode="bilinear", align_corners=False))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, direction={self.direction!r}"


def upsample_guide(feature: torch.Tensor) -> torch.Tensor:
    """Carry a warping-guide feature to the next finer level: bilinear x2, then multiplied by 2 (as VQFR does)."""
    return F.interpolate(feature, scale_factor=2, mode="bilinear", align_corners=False) * 2


class TextureWarpingModule(nn.Module):
    """VQFR's texture warping module: warps a decoder feature with a DCN guided by the degraded-input feature.

    ``forward(x, cond, previous=None) -> (warped, guide)``: ``x`` [B, C, h, w] is the texture feature of this level,
    ``cond`` [B, C_cond, H, W] the full-resolution input feature, ``previous`` [B, C_prev, h, w] the guide of the
    coarser level after :func:`upsample_guide`. ``cond`` is brought to ``(H // rate, W // rate)``: with
    ``cond_conv=True`` (v1) by :class:`BilinearResample` (resize then conv, key ``downsample``), otherwise (v2) by a
    plain bilinear resize. ``guide`` = offset_conv2(cat[offset_conv1(cat[cond, x]), previous]) predicts the DCN
    offsets and mask; it is also returned for the next level.
    """

    def __init__(self, channels: int, cond_channels: int, cond_downscale_rate: int, deformable_groups: int,
                 previous_channels: int = 0, *, cond_conv: bool = False):
        super().__init__()
        self.cond_downscale_rate = int(cond_downscale_rate)
        if cond_conv:
            self.downsample = BilinearResample(cond_channels, cond_channels, cond_downscale_rate, "down")
        else:
            self.downsample = None
        self.offset_conv1 = nn.Sequential(
            nn.Conv2d(channels + cond_channels, channels, 1), group_norm(channels), nn.SiLU(inplace=True),
            nn.Conv2d(channels, channels, 7, padding=3, groups=channels), group_norm(channels), nn.SiLU(inplace=True),
            nn.Conv2d(channels, channels, 1))
        self.offset_conv2 = nn.Sequential(
            nn.Conv2d(channels + previous_channels, channels, 3, padding=1), group_norm(channels),
            nn.SiLU(inplace=True))
        self.dcn = ModulatedDeformConv2d(channels, channels, 3, padding=1, deformable_groups=deformable_groups)

    def _condition(self, cond: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            return self.downsample(cond)
        h, w = cond.shape[-2:]
        size = (h // self.cond_downscale_rate, w // self.cond_downscale_rate)
        if size == (h, w):
            return cond
        return F.interpolate(cond, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor,
                previous: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cond = self._condition(cond)
        guide = self.offset_conv1(torch.cat([cond.to(x.dtype), x], dim=1))
        if previous is not None:
            guide = torch.cat([guide, previous.to(guide.dtype)], dim=1)
        guide = self.offset_conv2(guide)
        return self.dcn(x, guide).to(x.dtype), guide  # the DCN may run in float32 inside a half-precision network


def nearest_code_indices(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row for each row of ``z`` (squared L2; the first index wins ties).

    ``z`` [N, D], ``codebook`` [K, D] -> [N] int64. Distances are ``|z|^2 + |e|^2 - 2 z.e`` computed in float32 (or
    float64 for float64 inputs) with autocast disabled, so reduced-precision inference cannot flip a code choice
    through the distance arithmetic.
    """
    dtype = torch.float64 if torch.float64 in (z.dtype, codebook.dtype) else torch.float32
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.to(dtype)
        codebook = codebook.to(dtype)
        distance = (z * z).sum(dim=1, keepdim=True) + (codebook * codebook).sum(dim=1) - 2 * (z @ codebook.t())
        return distance.argmin(dim=1)

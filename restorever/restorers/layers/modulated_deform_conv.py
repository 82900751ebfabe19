"""Modulated deformable convolution (DCNv2) on ``torchvision.ops.deform_conv2d``; no mmcv or compiled extension.

Parameter names (``weight``, ``bias``, ``conv_offset.*``) and the offset/mask layout follow BasicSR's
``DCNv2Pack``/``ModulatedDeformConvPack`` as used by VQFR, so its checkpoints load unchanged:

* ``conv_offset`` (a 3x3 conv) predicts ``3 * groups * k * k`` channels from a *guide* feature;
* the output is cut into three equal chunks: the offsets are the first two chunks concatenated (not interleaved),
  the mask is ``sigmoid`` of the third;
* offsets use torchvision's layout: channel ``(g * k * k + tap) * 2 + t`` with ``t = 0`` the vertical (y) and
  ``t = 1`` the horizontal (x) displacement in pixels; mask channel ``g * k * k + tap``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

__all__ = ["ModulatedDeformConv2d", "modulated_deform_conv2d"]

# deform_conv2d materialises an im2col buffer of C*k*k*H*W floats per image; bound it per call.
_MAX_COLUMN_BYTES = 1 << 30


def modulated_deform_conv2d(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None, padding: int = 1) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d`` in float32, chunked over the batch to bound the im2col buffer.

    Shapes: ``x`` [B, C, H, W]; ``offset`` [B, 2*G*k*k, H, W] (pixels, (dy, dx) pairs); ``mask`` [B, G*k*k, H, W]
    in [0, 1]; ``weight`` [C_out, C, k, k]. Runs outside autocast (torchvision has no bfloat16 CPU kernel, and
    sampling positions deserve float32); the result has the dtype of ``x``.
    """
    out_dtype = x.dtype
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    c, h, w = x.shape[1:]
    k = weight.shape[-1]
    per_image = max(1, c * k * k * h * w * 4)
    chunk = max(1, min(x.shape[0], _MAX_COLUMN_BYTES // per_image))
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, offset, mask = x.to(dtype), offset.to(dtype), mask.to(dtype)
        weight = weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
        outs = [deform_conv2d(x[i:i + chunk], offset[i:i + chunk], weight, bias, padding=padding,
                              mask=mask[i:i + chunk]) for i in range(0, x.shape[0], chunk)]
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.to(out_dtype)


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 whose offsets and mask come from a separate guide feature (VQFR's ``DCNv2Pack``).

    ``forward(x, guide)``: ``x`` [B, C_in, H, W] is sampled; ``guide`` [B, C_in, H, W] predicts offsets and mask.
    Stride 1, dilation 1, one weight group; ``deformable_groups`` offset groups each own ``C_in / groups``
    consecutive input channels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 deformable_groups: int = 1):
        super().__init__()
        if in_channels % deformable_groups:
            raise ValueError(f"in_channels {in_channels} is not divisible by deformable_groups {deformable_groups}")
        self.kernel_size = kernel_size
        self.padding = padding
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.conv_offset = nn.Conv2d(in_channels, 3 * deformable_groups * kernel_size * kernel_size, kernel_size,
                                     padding=padding)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weight, zero offsets (a plain convolution until trained)."""
        bound = 1.0 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def offsets_and_mask(self, guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets [B, 2*G*k*k, H, W] (pixels) and mask [B, G*k*k, H, W] in (0, 1) predicted from ``guide``.

        Under autocast they are still computed in float32: sampling positions of a few pixels need more precision
        than bfloat16's 8 bits.
        """
        if torch.is_autocast_enabled(guide.device.type):
            dtype = torch.promote_types(guide.dtype, torch.float32)
            with torch.autocast(device_type=guide.device.type, enabled=False):
                raw = F.conv2d(guide.to(dtype), self.conv_offset.weight.to(dtype), self.conv_offset.bias.to(dtype),
                               padding=self.conv_offset.padding)
        else:
            raw = self.conv_offset(guide)
        first, second, logits = torch.chunk(raw, 3, dim=1)
        return torch.cat((first, second), dim=1), torch.sigmoid(logits)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Runs in the weights' dtype (float32 when a half-precision network keeps this module float32)."""
        x, guide = x.to(self.weight.dtype), guide.to(self.weight.dtype)
        offset, mask = self.offsets_and_mask(guide)
        return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        c_out, c_in = self.weight.shape[:2]
        return f"{c_in}, {c_out}, kernel_size={self.kernel_size}, deformable_groups={self.deformable_groups}"


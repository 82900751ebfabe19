"""The diffusion UNet of DifFace (improved-DDPM family, DifFace's own variant).

Re-implemented from the description in ``shared/reference/difface.md`` so that the released checkpoint
``iddpm_ffhq512_ema500000.pth`` loads strictly: the module tree (and so every state_dict key) follows the official
``models.unet.UNetModel`` of github.com/zsyOAOA/DifFace. Two details differ from openai's class of the same name:
``attention_resolutions`` are absolute feature-map sizes in pixels (the resolution counter starts at ``image_size``),
and ``num_res_blocks`` may be a per-level list.

Shapes: ``x`` is ``[B, in_channels, H, W]`` (DifFace: RGB scaled to [-1, 1]); ``timesteps`` is ``[B]`` integer
timesteps on the *original* 1000-step scale; the output is ``[B, out_channels, H, W]`` (DifFace: channels 0-2 the
predicted noise, 3-5 the learned-range variance value in [-1, 1]). Device and dtype follow the input; under CUDA
autocast the convolutions run in reduced precision while group norms and the attention softmax stay in float32.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DiffusionUNet", "timestep_embedding", "GroupNorm32", "ResBlock", "AttentionBlock"]


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` (float32) of ``timesteps`` ``[B]``: the cosine half first, then the sine."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm (32 groups, eps 1e-5) computed in float32 and cast back to the input dtype (under autocast); a
    cast-once half-precision network normalises natively (the kernels accumulate the statistics in float32)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.weight.dtype:  # float32, or a half-precision (cast-once) network: statistics accumulate
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)  # in float32 in the kernel
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class TimestepSequential(nn.Sequential):
    """A sequence whose ResBlocks also receive the timestep embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Downsample(nn.Module):
    """Strided 3x3 convolution halving H and W (key ``op``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution (key ``conv``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding.

    ``in_layers`` = (norm, SiLU, conv3x3), ``emb_layers`` = (SiLU, linear to 2·out with scale-shift norm, else out),
    ``out_layers`` = (norm, SiLU, dropout, conv3x3); skip is identity or a 1x1 conv. With scale-shift norm the
    embedding's first half is the scale and the second half the shift: ``norm(h) * (1 + scale) + shift``.
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 use_scale_shift_norm: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            for layer in self.out_layers[1:]:
                h = layer(h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with the *legacy* head layout of improved-DDPM.

    ``qkv`` is a kernel-1 Conv1d (weight ``[3C, C, 1]``) on the group-normed input; each head owns a contiguous
    ``[q | k | v]`` slab of ``3 * head_channels`` channels, heads one after another. Softmax scale
    ``head_channels ** -0.5``; the result goes through ``proj_out`` and is added to the input.
    """

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"attention: {channels} channels are not divisible by {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        length = flat.shape[-1]
        qkv = self.qkv(self.norm(flat))
        heads = self.num_heads
        ch = c // heads
        qkv = qkv.reshape(b, heads, 3 * ch, length).transpose(-1, -2)  # [B, heads, L, 3*ch]
        q, k, v = qkv.split(ch, dim=-1)
        if q.is_cuda:  # fused kernels need unit stride in the last dimension; the split views do not have it
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        a = F.scaled_dot_product_attention(q, k, v)  # [B, heads, L, ch]; softmax accumulates in float32
        a = a.transpose(-1, -2).reshape(b, c, length)
        return (flat + self.proj_out(a)).reshape(b, c, *spatial)


class DiffusionUNet(nn.Module):
    """DifFace's UNet; constructor arguments and state_dict keys match the official ``UNetModel``.

    Supported: ``dims=2``, ``conv_resample=True``, ``resblock_updown=False``, ``use_new_attention_order=False``,
    unconditional (``num_classes=None``): the released configuration. ``use_fp16`` is accepted for configuration
    compatibility and ignored (use autocast instead). ``config`` holds the constructor arguments.
    """

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int | Sequence[int], attention_resolutions: Sequence[int], dropout: float = 0.0,
                 channel_mult: Sequence[int] = (1, 2, 4, 8), conv_resample: bool = True, dims: int = 2,
                 num_classes: int | None = None, use_fp16: bool = False, num_heads: int = 1,
                 num_head_channels: int = -1, use_scale_shift_norm: bool = False, resblock_updown: bool = False,
                 use_new_attention_order: bool = False):
        super().__init__()
        self.config = dict(image_size=image_size, in_channels=in_channels, model_channels=model_channels,
                           out_channels=out_channels, num_res_blocks=num_res_blocks,
                           attention_resolutions=list(attention_resolutions), dropout=dropout,
                           channel_mult=list(channel_mult), conv_resample=conv_resample, dims=dims,
                           num_classes=num_classes, use_fp16=use_fp16, num_heads=num_heads,
                           num_head_channels=num_head_channels, use_scale_shift_norm=use_scale_shift_norm,
                           resblock_updown=resblock_updown, use_new_attention_order=use_new_attention_order)
        unsupported = {"dims": (dims, 2), "conv_resample": (conv_resample, True), "num_classes": (num_classes, None),
                       "resblock_updown": (resblock_updown, False),
                       "use_new_attention_order": (use_new_attention_order, False)}
        for arg, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(f"DiffusionUNet: {arg}={value!r} is not supported (only {supported!r}, as released)")
        if isinstance(num_res_blocks, int):
            num_res_blocks = [num_res_blocks] * len(channel_mult)
        if len(num_res_blocks) != len(channel_mult):
            raise ValueError(f"DiffusionUNet: num_res_blocks {list(num_res_blocks)} needs one entry per level "
                             f"of channel_mult {list(channel_mult)}")
        self.image_size = image_size
        self.model_channels = model_channels
        self.num_res_blocks = list(num_res_blocks)
        self.attention_resolutions = list(attention_resolutions)
        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, emb_dim, dropout, cout, use_scale_shift_norm)

        def attn(c: int) -> AttentionBlock:
            return AttentionBlock(c, num_heads, num_head_channels)

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        size = image_size  # feature-map size in px: attention_resolutions are compared against it
        for level, mult in enumerate(channel_mult):
            for _ in range(self.num_res_blocks[level]):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if size in self.attention_resolutions:
                    layers.append(attn(ch))
                self.input_blocks.append(TimestepSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepSequential(Downsample(ch)))
                skip_channels.append(ch)
                size //= 2
        self.middle_block = TimestepSequential(res(ch, ch), attn(ch), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(self.num_res_blocks[level] + 1):
                layers = [res(ch + skip_channels.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if size in self.attention_resolutions:
                    layers.append(attn(ch))
                if level and i == self.num_res_blocks[level]:
                    layers.append(Upsample(ch))
                    size *= 2
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, H, W]`` (H, W divisible by 2**(levels-1)), ``timesteps`` ``[B]`` -> ``[B, out, H, W]``."""
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(self.time_embed[0].weight.dtype))
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)

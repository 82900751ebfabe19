"""SwinIR as used by DifFace for its first-stage estimator (``swinir_restoration512_L1.pth``).

Re-implemented from ``shared/reference/difface.md`` (Liang et al., "SwinIR: Image Restoration Using Swin
Transformer", ICCVW 2021, in the variant of github.com/zsyOAOA/DifFace ``models/swinir.py``): the input is first
pixel-unshuffled by ``sf`` (512 px -> 64x64x192), processed by residual Swin transformer groups, and brought back to
full size by three nearest-neighbour x2 + conv stages. Module names, and so state_dict keys, match the official class,
including the persistent buffers ``relative_position_index`` and (on shifted blocks) ``attn_mask``.

Input ``[B, 3, H, W]`` RGB in [0, 1]; output the same shape, *not* clamped. Device and dtype follow the input.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SwinIR", "relative_position_index", "shifted_window_mask"]

RGB_MEAN = (0.4488, 0.4371, 0.4040)


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B * H/ws * W/ws, ws*ws, C]`` (windows in row-major order)."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, ws*ws, C]`` -> ``[B, H, W, C]``."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(ws: int) -> torch.Tensor:
    """``[ws*ws, ws*ws]`` int64 index into the ``(2ws-1)^2``-row relative-position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)  # [2, N]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)  # [N, N, 2], each in [0, 2ws-2]
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """``[nW, ws*ws, ws*ws]`` float32 mask for shifted windows: 0 within a region, -100 across regions."""
    region = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, hs in enumerate(cuts):
        for j, wsl in enumerate(cuts):
            region[:, hs, wsl, :] = i * 3 + j
    ids = window_partition(region, ws).squeeze(-1)  # [nW, N]
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class Mlp(nn.Module):
    """Linear -> exact GELU -> linear (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``ws x ws`` windows with a learned relative-position bias."""

    def __init__(self, dim: int, ws: int, num_heads: int, qkv_bias: bool = True, qk_scale: float | None = None):
        super().__init__()
        self.ws = ws
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(ws))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B*nW, N, C]``; ``mask`` ``[nW, N, N]`` or None -> ``[B*nW, N, C]``."""
        bw, n, c = x.shape
        heads = self.num_heads
        q, k, v = self.qkv(x).reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)  # each [B*nW, h, N, d]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, heads).permute(2, 0, 1)  # [h, N, N]
        if mask is None:
            attn_bias = bias.unsqueeze(0)
        else:
            nw = mask.shape[0]
            attn_bias = (bias.unsqueeze(0) + mask.unsqueeze(1).to(bias.dtype)).reshape(1, nw * heads, n, n)
            q, k, v = (t.reshape(bw // nw, nw * heads, n, -1) for t in (q, k, v))
        if q.is_cuda:  # fused kernel (contiguous q/k/v); on CPU the explicit form below keeps the official rounding
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.to(q.dtype), scale=self.scale)
        else:
            out = ((q * self.scale) @ k.transpose(-2, -1) + attn_bias).softmax(dim=-1) @ v
        out = out.reshape(bw, heads, n, -1).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class SwinTransformerBlock(nn.Module):
    """Pre-norm window attention + MLP; shifted by ``ws // 2`` when ``shift`` is set (buffer ``attn_mask``)."""

    def __init__(self, dim: int, resolution: int, num_heads: int, ws: int, shift: int, mlp_ratio: float,
                 qkv_bias: bool = True, qk_scale: float | None = None):
        super().__init__()
        if resolution <= ws:
            ws, shift = resolution, 0
        self.ws, self.shift, self.resolution = ws, shift, resolution
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, num_heads, qkv_bias, qk_scale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(resolution, resolution, ws, shift) if shift else None
        self.register_buffer("attn_mask", mask)
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def _mask(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        if (h, w) == (self.resolution, self.resolution) and self.attn_mask is not None:
            return self.attn_mask
        key = (h, w, str(device))
        if key not in self._mask_cache:
            self._mask_cache[key] = shifted_window_mask(h, w, self.ws, self.shift).to(device)
        return self._mask_cache[key]

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.ws), self._mask(h, w, x.device) if self.shift else None)
        y = window_reverse(y, self.ws, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    """``depth`` Swin blocks; odd-numbered ones are shifted (key ``blocks``)."""

    def __init__(self, dim: int, resolution: int, depth: int, num_heads: int, ws: int, mlp_ratio: float,
                 qkv_bias: bool = True, qk_scale: float | None = None):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, resolution, num_heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_ratio,
                                 qkv_bias, qk_scale) for i in range(depth))

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, a 3x3 conv on the image form, plus the input."""

    def __init__(self, dim: int, resolution: int, depth: int, num_heads: int, ws: int, mlp_ratio: float,
                 qkv_bias: bool = True, qk_scale: float | None = None):
        super().__init__()
        self.residual_group = BasicLayer(dim, resolution, depth, num_heads, ws, mlp_ratio, qkv_bias, qk_scale)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        y = self.residual_group(x, size).transpose(1, 2).reshape(b, c, *size)
        return self.conv(y).flatten(2).transpose(1, 2) + x


class _PatchNorm(nn.Module):
    """Holds the token LayerNorm under the official key ``patch_embed.norm``."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)


class SwinIR(nn.Module):
    """SwinIR with pixel-unshuffle input and the ``nearest+conv`` reconstruction (DifFace's estimator).

    Constructor arguments use the official names. Supported: ``patch_size=1``, ``upsampler="nearest+conv"``,
    ``resi_connection="1conv"``, ``ape=False``, ``patch_norm=True`` (the released configuration). With
    ``unshuffle=True`` the unshuffle factor is ``sf`` (as in the official code; ``unshuffle_scale`` only sets the
    input channel count), so the output has the input's size. ``config`` holds the constructor arguments; other
    official arguments (dropout rates, ``use_checkpoint``, ...) are accepted and ignored: they do not act in eval.
    """

    def __init__(self, img_size: int = 64, patch_size: int = 1, in_chans: int = 3, embed_dim: int = 96,
                 depths: Sequence[int] = (6, 6, 6, 6), num_heads: Sequence[int] = (6, 6, 6, 6), window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None, sf: int = 4,
                 img_range: float = 1.0, upsampler: str = "nearest+conv", resi_connection: str = "1conv",
                 unshuffle: bool = False, unshuffle_scale: int | None = None, ape: bool = False,
                 patch_norm: bool = True, **ignored: object):
        super().__init__()
        self.config = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                           depths=list(depths), num_heads=list(num_heads), window_size=window_size,
                           mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, sf=sf, img_range=img_range,
                           upsampler=upsampler, resi_connection=resi_connection, unshuffle=unshuffle,
                           unshuffle_scale=unshuffle_scale, ape=ape, patch_norm=patch_norm)
        unsupported = {"patch_size": (patch_size, 1), "upsampler": (upsampler, "nearest+conv"),
                       "resi_connection": (resi_connection, "1conv"), "ape": (ape, False),
                       "patch_norm": (patch_norm, True)}
        for arg, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(f"SwinIR: {arg}={value!r} is not supported (only {supported!r}, as released)")
        if sf not in (2, 4, 8):
            raise ValueError(f"SwinIR: sf={sf} is not supported with nearest+conv (use 2, 4 or 8)")
        if unshuffle and not unshuffle_scale:
            raise ValueError("SwinIR: unshuffle=True needs unshuffle_scale")
        if len(depths) != len(num_heads):
            raise ValueError(f"SwinIR: depths {list(depths)} and num_heads {list(num_heads)} differ in length")
        num_feat = 64
        self.img_range = img_range
        self.sf = sf
        self.unshuffle = unshuffle
        self.window_size = window_size
        self.rgb_mean = RGB_MEAN if in_chans == 3 else (0.0,)  # a constant, not in the state_dict
        if unshuffle:
            self.conv_first: nn.Module = nn.Sequential(
                nn.PixelUnshuffle(sf), nn.Conv2d(in_chans * unshuffle_scale ** 2, embed_dim, 3, 1, 1))
        else:
            self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = _PatchNorm(embed_dim)
        self.layers = nn.ModuleList(
            RSTB(embed_dim, img_size, d, h, window_size, mlp_ratio, qkv_bias, qk_scale)
            for d, h in zip(depths, num_heads))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU())
        self.n_up = int(math.log2(sf))
        for i in range(1, self.n_up + 1):
            self.add_module(f"conv_up{i}", nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w]`` feature map -> same shape, through the RSTBs."""
        b, c, h, w = x.shape
        tokens = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        for layer in self.layers:
            tokens = layer(tokens, (h, w))
        return self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> ``[B, 3, H, W]`` (times ``sf`` without unshuffle), not clamped."""
        h, w = x.shape[-2:]
        multiple = self.window_size * (self.sf if self.unshuffle else 1)
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        mean = torch.tensor(self.rgb_mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        x = (x - mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        x = self.conv_before_upsample(x)
        for i in range(1, self.n_up + 1):
            conv = getattr(self, f"conv_up{i}")
            x = F.leaky_relu(conv(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
        x = self.conv_last(F.leaky_relu(self.conv_hr(x), 0.2))
        x = x / self.img_range + mean
        scale = 1 if self.unshuffle else self.sf
        return x[:, :, : h * scale, : w * scale]

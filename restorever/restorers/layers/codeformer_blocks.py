"""CodeFormer's parts: its VQGAN encoder/generator block lists, the code-prediction transformer layer, the
controllable feature transformation (fusion) block and AdaIN.

Written from the description in ``shared/reference/codeformer.md`` §3-§4; attribute names follow the official module
tree (``codeformer_arch.py``, ``vqgan_arch.py``) so ``codeformer.pth`` loads with unchanged keys. The VQGAN blocks are
the same as VQFR's (:mod:`.vqfr_blocks`: GroupNorm 32 groups eps 1e-6, swish, 1x1 shortcut only when the width
changes -- registered as ``conv_out`` here). Tensors NCHW, batch first; token sequences ``[B, N, C]``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .vqfr_blocks import AttnBlock, NearestUpsample, ResnetBlock, StridedDownsample, group_norm

__all__ = ["vqgan_encoder_blocks", "vqgan_generator_blocks", "TransformerSALayer", "SelfAttention",
           "FuseSFTBlock", "adaptive_instance_norm", "ENCODER_SKIP_BLOCK", "GENERATOR_FUSE_BLOCK"]

# Index of the block after which the encoder feature of a given width is kept, and after which the generator feature
# of that width is fused (official ``fuse_encoder_block`` / ``fuse_generator_block``; valid for 2 ResBlocks per level).
ENCODER_SKIP_BLOCK = {"512": 2, "256": 5, "128": 8, "64": 11, "32": 14, "16": 18}
GENERATOR_FUSE_BLOCK = {"16": 6, "32": 9, "64": 12, "128": 15, "256": 18, "512": 21}


def _resblock(c_in: int, c_out: int) -> ResnetBlock:
    return ResnetBlock(c_in, c_out, shortcut_name="conv_out")


def vqgan_encoder_blocks(nf: int, ch_mult: Sequence[int], *, emb_dim: int = 256, res_blocks: int = 2,
                         img_size: int = 512, attn_resolutions: Sequence[int] = (16,)) -> nn.ModuleList:
    """The VQGAN encoder as one flat list (checkpoint keys ``encoder.blocks.{i}``).

    conv3x3 3->nf; per level i: ``res_blocks`` ResBlocks to ``nf*ch_mult[i]`` (each followed by attention where the
    nominal resolution ``img_size / 2**i`` is in ``attn_resolutions``), then a stride-2 downsample except on the last
    level; middle ResBlock-Attn-ResBlock; GroupNorm; conv3x3 to ``emb_dim`` (no activation in between).
    """
    blocks: list[nn.Module] = [nn.Conv2d(3, nf, 3, padding=1)]
    c_in, res = nf, img_size
    for i, mult in enumerate(ch_mult):
        c_out = nf * mult
        for _ in range(res_blocks):
            blocks.append(_resblock(c_in, c_out))
            c_in = c_out
            if res in attn_resolutions:
                blocks.append(AttnBlock(c_in))
        if i != len(ch_mult) - 1:
            blocks.append(StridedDownsample(c_in))
            res //= 2
    blocks += [_resblock(c_in, c_in), AttnBlock(c_in), _resblock(c_in, c_in), group_norm(c_in),
               nn.Conv2d(c_in, emb_dim, 3, padding=1)]
    return nn.ModuleList(blocks)


def vqgan_generator_blocks(nf: int, ch_mult: Sequence[int], *, emb_dim: int = 256, res_blocks: int = 2,
                           img_size: int = 512, attn_resolutions: Sequence[int] = (16,)) -> nn.ModuleList:
    """The VQGAN generator (decoder) as one flat list (keys ``generator.blocks.{i}``).

    conv3x3 emb_dim->top width; middle ResBlock-Attn-ResBlock; per level from the coarsest: ``res_blocks`` ResBlocks
    (+ attention at the attention resolutions), nearest x2 + conv3x3 except on the finest level; GroupNorm; conv3x3
    to RGB (no activation in between).
    """
    c_in = nf * ch_mult[-1]
    res = img_size // 2 ** (len(ch_mult) - 1)
    blocks: list[nn.Module] = [nn.Conv2d(emb_dim, c_in, 3, padding=1), _resblock(c_in, c_in), AttnBlock(c_in),
                               _resblock(c_in, c_in)]
    for i in reversed(range(len(ch_mult))):
        c_out = nf * ch_mult[i]
        for _ in range(res_blocks):
            blocks.append(_resblock(c_in, c_out))
            c_in = c_out
            if res in attn_resolutions:
                blocks.append(AttnBlock(c_in))
        if i != 0:
            blocks.append(NearestUpsample(c_in))
            res *= 2
    blocks += [group_norm(c_in), nn.Conv2d(c_in, 3, 3, padding=1)]
    return nn.ModuleList(blocks)


class SelfAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameter layout (``in_proj_weight`` ``[3E, E]`` packed
    q, k, v; ``in_proj_bias``; ``out_proj``), on batch-first ``[B, N, E]`` sequences; no dropout."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        b, n, e = query.shape
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B, N, E] -> [B, heads, N, E / heads]
            return t.view(b, n, self.num_heads, e // self.num_heads).transpose(1, 2)

        q, k, v = heads(F.linear(query, wq, bq)), heads(F.linear(key, wk, bk)), heads(F.linear(value, wv, bv))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head dim)) v
        return self.out_proj(out.transpose(1, 2).reshape(b, n, e))


class TransformerSALayer(nn.Module):
    """Pre-norm transformer layer: ``x += attn(q=k=LN1(x)+pos, v=LN1(x))``; ``x += linear2(GELU(linear1(LN2(x))))``
    (exact erf GELU, LayerNorm eps 1e-5, dropout 0). Keys ``self_attn.*``, ``linear1``, ``linear2``, ``norm1``,
    ``norm2``. ``forward(x [B, N, E], pos [1 or B, N, E])``."""

    def __init__(self, embed_dim: int, nhead: int = 8, dim_mlp: int = 2048):
        super().__init__()
        self.self_attn = SelfAttention(embed_dim, nhead)
        self.linear1 = nn.Linear(embed_dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        t = self.norm1(x)
        qk = t + pos
        x = x + self.self_attn(qk, qk, t)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


def _sft_branch(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2),
                         nn.Conv2d(channels, channels, 3, padding=1))


class FuseSFTBlock(nn.Module):
    """Controllable feature transformation (official ``Fuse_sft_block``; keys ``encode_enc``, ``scale``, ``shift``).

    ``forward(enc, dec, w)``: ``t = ResBlock(cat[enc, dec])`` (2C -> C, 1x1 ``conv_out`` shortcut); scale and shift
    are conv-LeakyReLU(0.2)-conv of ``t``; returns ``dec + w * (dec * scale + shift)``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.encode_enc = _resblock(2 * channels, channels)
        self.scale = _sft_branch(channels)
        self.shift = _sft_branch(channels)

    def forward(self, enc: torch.Tensor, dec: torch.Tensor, w: float) -> torch.Tensor:
        t = self.encode_enc(torch.cat([enc.to(dec.dtype), dec], dim=1))
        return dec + w * (dec * self.scale(t) + self.shift(t))


def adaptive_instance_norm(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give ``content`` ``[B, C, H, W]`` the per-sample, per-channel mean and std of ``style`` (unbiased variance +
    ``eps`` inside the square root, as the official ``adaptive_instance_normalization``)."""

    def stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = t.flatten(2)
        return flat.mean(-1)[..., None, None], (flat.var(-1, unbiased=True) + eps).sqrt()[..., None, None]

    c_mean, c_std = stats(content)
    s_mean, s_std = stats(style)
    return (content - c_mean) / c_std * s_std + s_mean

"""Baseline JPEG compression and decompression as libjpeg(-turbo) does it, in torch tensor operations.

:func:`jpeg_roundtrip` returns, for a batch of 8-bit RGB images, exactly the pixels that
``cv2.imdecode(cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, q]))`` returns: the same integer arithmetic
as OpenCV's libjpeg-turbo with its default settings, step by step:

1. RGB -> YCbCr with libjpeg's 16-bit fixed-point tables (``jccolor.c``);
2. 4:2:0 chroma: edges replicated to whole blocks, 2x2 sums with the alternating 1, 2 bias (``jcsample.c``,
   ``jcprepct.c``);
3. the "islow" integer forward DCT (``jfdctint.c``) and quantisation by reciprocal multiplication
   (``jcdctmgr.c``) with the standard tables scaled by the quality (``jcparam.c``, baseline-limited);
4. dequantisation and the "islow" integer inverse DCT with its range-limit table (``jidctint.c``, ``jdmaster.c``);
5. "fancy" (triangular) chroma upsampling with replicated edges (``jdsample.c``, ``jdmainct.c``);
6. YCbCr -> RGB with libjpeg's fixed-point tables (``jdcolor.c``).

Huffman coding is lossless and is skipped. Every step is integer arithmetic; it is carried out in float64,
which holds every intermediate value (below 2^40) exactly, so the result does not depend on the device and
runs as batched tensor operations on a GPU. ``tests/test_jpeg.py`` checks it byte for byte against OpenCV.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch

__all__ = ["jpeg_roundtrip", "quant_tables"]

_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
           47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32
"""The standard (ITU T.81 Annex K) quantisation tables in natural row-major order."""

_SCALEBITS = 16
_CONST_BITS = 13
_PASS1_BITS = 2


def _fix(x: float, bits: int = _SCALEBITS) -> int:
    return int(x * (1 << bits) + 0.5)


# ---------------------------------------------------------------------------------------------- tables
def quant_tables(quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """libjpeg's ``jpeg_set_quality(quality, force_baseline=TRUE)``: ``(luma, chroma)`` tables, 64 ints each.

    Qualities are clamped to 1..100; below 50 the scale is ``5000 / q`` percent, from 50 ``200 - 2 q``.
    """
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return tuple(tuple(min(max((b * scale + 50) // 100, 1), 255) for b in base) for base in (_LUMA, _CHROMA))


def _reciprocal(divisor: int) -> tuple[int, int, int]:
    """``compute_reciprocal`` of libjpeg-turbo for 16-bit DCT elements: ``(reciprocal, correction, shift)``.

    A coefficient ``t >= 0`` quantises to ``((t + correction) * reciprocal) >> shift``.
    """
    if divisor <= 1:
        return 1, 0, 16
    b = divisor.bit_length() - 1
    r = 16 + b
    fq, fr = divmod(1 << r, divisor)
    c = divisor // 2
    if fr == 0:
        fq >>= 1
        r -= 1
    elif fr <= divisor // 2:
        c += 1
    else:
        fq += 1
    return fq, c, r


def _quant_rows(quality: int) -> list[list[float]]:
    """One quality: 2 tables (luma, chroma) x (quantval, reciprocal, correction, 2**-shift), 64 values each."""
    rows: list[list[float]] = []
    for table in quant_tables(quality):
        recips = [_reciprocal(v << 3) for v in table]  # the islow DCT leaves its output scaled by 8
        rows += [[float(v) for v in table], [float(f) for f, _, _ in recips], [float(c) for _, c, _ in recips],
                 [2.0 ** -r for _, _, r in recips]]
    return rows


@functools.lru_cache(maxsize=8)
def _quant_table(device: str) -> torch.Tensor:
    """``[101, 2, 4, 1, 1, 1, 8, 8]`` float64 on ``device``: :func:`_quant_rows` of qualities 0..100 (0 acts as 1),
    shaped so that indexing by per-item qualities broadcasts against ``[B, C, m, n, 8, 8]`` blocks."""
    rows = [_quant_rows(q) for q in range(101)]
    return torch.tensor(rows, dtype=torch.float64, device=device).view(101, 2, 4, 1, 1, 1, 8, 8)


# ------------------------------------------------------------------------------------------------- DCTs
Forms = list  # eight linear forms (numpy-free: lists of 8 ints) of the eight inputs


def _axpy(*terms: tuple[int, list[int]]) -> list[int]:
    return [sum(c * f[k] for c, f in terms) for k in range(8)]


def _fdct_forms(d: Forms) -> Forms:
    """The linear forms of ``jfdctint.c``'s 1-D butterfly before its descaling, outputs in natural order."""
    t = [_axpy((1, d[i]), (1, d[7 - i])) for i in range(4)]          # tmp0..tmp3
    u = [_axpy((1, d[i]), (-1, d[7 - i])) for i in range(4)]         # tmp7, tmp6, tmp5, tmp4
    tmp7, tmp6, tmp5, tmp4 = u
    tmp10, tmp13 = _axpy((1, t[0]), (1, t[3])), _axpy((1, t[0]), (-1, t[3]))
    tmp11, tmp12 = _axpy((1, t[1]), (1, t[2])), _axpy((1, t[1]), (-1, t[2]))
    out: Forms = [None] * 8  # type: ignore[list-item]
    out[0], out[4] = _axpy((1, tmp10), (1, tmp11)), _axpy((1, tmp10), (-1, tmp11))
    z1 = _axpy((4433, tmp12), (4433, tmp13))
    out[2], out[6] = _axpy((1, z1), (6270, tmp13)), _axpy((1, z1), (-15137, tmp12))
    z5 = _axpy((9633, tmp4), (9633, tmp6), (9633, tmp5), (9633, tmp7))
    z1 = _axpy((-7373, tmp4), (-7373, tmp7))
    z2 = _axpy((-20995, tmp5), (-20995, tmp6))
    z3 = _axpy((-16069, tmp4), (-16069, tmp6), (1, z5))
    z4 = _axpy((-3196, tmp5), (-3196, tmp7), (1, z5))
    out[7] = _axpy((2446, tmp4), (1, z1), (1, z3))
    out[5] = _axpy((16819, tmp5), (1, z2), (1, z4))
    out[3] = _axpy((25172, tmp6), (1, z2), (1, z3))
    out[1] = _axpy((12299, tmp7), (1, z1), (1, z4))
    return out


def _idct_forms(z: Forms) -> Forms:
    """The linear forms of ``jidctint.c``'s 1-D butterfly (dequantised inputs) before its descaling."""
    z1 = _axpy((4433, z[2]), (4433, z[6]))
    tmp2, tmp3 = _axpy((1, z1), (-15137, z[6])), _axpy((1, z1), (6270, z[2]))
    tmp0 = _axpy((1 << _CONST_BITS, z[0]), (1 << _CONST_BITS, z[4]))
    tmp1 = _axpy((1 << _CONST_BITS, z[0]), (-(1 << _CONST_BITS), z[4]))
    tmp10, tmp13 = _axpy((1, tmp0), (1, tmp3)), _axpy((1, tmp0), (-1, tmp3))
    tmp11, tmp12 = _axpy((1, tmp1), (1, tmp2)), _axpy((1, tmp1), (-1, tmp2))
    o0, o1, o2, o3 = z[7], z[5], z[3], z[1]
    zz1, zz2 = _axpy((1, o0), (1, o3)), _axpy((1, o1), (1, o2))
    zz3, zz4 = _axpy((1, o0), (1, o2)), _axpy((1, o1), (1, o3))
    z5 = _axpy((9633, zz3), (9633, zz4))
    zz1, zz2 = _axpy((-7373, zz1)), _axpy((-20995, zz2))
    zz3, zz4 = _axpy((-16069, zz3), (1, z5)), _axpy((-3196, zz4), (1, z5))
    p0 = _axpy((2446, o0), (1, zz1), (1, zz3))
    p1 = _axpy((16819, o1), (1, zz2), (1, zz4))
    p2 = _axpy((25172, o2), (1, zz2), (1, zz3))
    p3 = _axpy((12299, o3), (1, zz1), (1, zz4))
    return [_axpy((1, tmp10), (1, p3)), _axpy((1, tmp11), (1, p2)), _axpy((1, tmp12), (1, p1)),
            _axpy((1, tmp13), (1, p0)), _axpy((1, tmp13), (-1, p0)), _axpy((1, tmp12), (-1, p1)),
            _axpy((1, tmp11), (-1, p2)), _axpy((1, tmp10), (-1, p3))]


def _matrix(forms: Callable[[Forms], Forms]) -> list[list[int]]:
    """The 8x8 integer matrix of a linear butterfly (row = output, column = input)."""
    return forms([[int(i == k) for k in range(8)] for i in range(8)])


@functools.lru_cache(maxsize=8)
def _dct_constants(device: str) -> dict[str, torch.Tensor]:
    f = torch.tensor(_matrix(_fdct_forms), dtype=torch.float64, device=device)
    even = torch.zeros(8, dtype=torch.bool, device=device)
    even[0] = even[4] = True
    return {"fdct": f, "idct": torch.tensor(_matrix(_idct_forms), dtype=torch.float64, device=device),
            "even": even}


def _descale(x: torch.Tensor, bits: int) -> torch.Tensor:
    """libjpeg's ``DESCALE``: ``(x + 2**(bits-1)) >> bits`` (arithmetic shift, i.e. floor)."""
    return torch.floor((x + float(1 << (bits - 1))) * (1.0 / (1 << bits)))


def _fdct_quantise(blocks: torch.Tensor, tables: torch.Tensor, k: dict[str, torch.Tensor]) -> torch.Tensor:
    """Level-shifted ``[..., 8, 8]`` sample blocks -> quantised coefficients (natural order), exact integers.

    ``tables``: ``[B, 4, 1, 1, 1, 8, 8]`` (quantval, reciprocal, correction, 2**-shift) for ``[B, C, m, n, 8, 8]``.
    """
    even = k["even"]
    rows = blocks @ k["fdct"].T  # pass 1 along each row; outputs 0 and 4 are only scaled up by 2**PASS1_BITS
    rows = torch.where(even, rows * float(1 << _PASS1_BITS), _descale(rows, _CONST_BITS - _PASS1_BITS))
    cols = k["fdct"] @ rows      # pass 2 along each column
    coef = torch.where(even[:, None], _descale(cols, _PASS1_BITS), _descale(cols, _CONST_BITS + _PASS1_BITS))
    recip, corr, scale = tables[:, 1], tables[:, 2], tables[:, 3]
    mag = torch.floor((coef.abs() + corr) * recip * scale)
    return torch.where(coef < 0, -mag, mag)


def _dequantise_idct(coef: torch.Tensor, quantval: torch.Tensor, k: dict[str, torch.Tensor]) -> torch.Tensor:
    """Quantised ``[..., 8, 8]`` coefficients -> 8-bit samples (float64 0..255) with the range-limit table."""
    cols = _descale(k["idct"] @ (coef * quantval), _CONST_BITS - _PASS1_BITS)  # pass 1 along each column
    x = _descale(cols @ k["idct"].T, _CONST_BITS + _PASS1_BITS + 3)             # pass 2 along each row
    idx = torch.remainder(x, 1024.0)  # the table is indexed by the low 10 bits (wraps around)
    return torch.where(idx < 512, (idx + 128).clamp_(max=255), (idx - 896).clamp_(min=0))


def _to_blocks(plane: torch.Tensor) -> torch.Tensor:
    """``[B, C, 8 m, 8 n]`` -> ``[B, C, m, n, 8, 8]``."""
    b, c, h, w = plane.shape
    return plane.view(b, c, h // 8, 8, w // 8, 8).transpose(3, 4)


def _from_blocks(blocks: torch.Tensor) -> torch.Tensor:
    b, c, m, n = blocks.shape[:4]
    return blocks.transpose(3, 4).reshape(b, c, 8 * m, 8 * n)


def _pad_replicate(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Extend ``[B, C, h, w]`` to ``height x width`` by repeating the last row and column."""
    h, w = x.shape[-2:]
    rows = torch.arange(height, device=x.device).clamp_(max=h - 1)
    cols = torch.arange(width, device=x.device).clamp_(max=w - 1)
    return x.index_select(-2, rows).index_select(-1, cols)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


# ------------------------------------------------------------------------------------------------ colour
def _rgb_to_ycc(rgb: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` float64 RGB 0..255 -> YCbCr (``jccolor.c``), exact integers."""
    r, g, b = rgb.unbind(1)
    half, offset = float(1 << (_SCALEBITS - 1)), float(128 << _SCALEBITS)
    shift = 1.0 / (1 << _SCALEBITS)
    y = torch.floor((_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + half) * shift)
    cb = torch.floor((-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + offset + half - 1) * shift)
    cr = torch.floor((_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + offset + half - 1) * shift)
    return torch.stack([y, cb, cr], 1)


def _ycc_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """YCbCr planes (float64 0..255) -> ``[B, 3, H, W]`` RGB 0..255 (``jdcolor.c``)."""
    half, shift = float(1 << (_SCALEBITS - 1)), 1.0 / (1 << _SCALEBITS)
    cb, cr = cb - 128.0, cr - 128.0
    r = y + torch.floor((_fix(1.402) * cr + half) * shift)
    b = y + torch.floor((_fix(1.772) * cb + half) * shift)
    g = y + torch.floor(((-_fix(0.34414)) * cb + half + (-_fix(0.71414)) * cr) * shift)
    return torch.stack([r, g, b], 1).clamp_(0.0, 255.0)


# ---------------------------------------------------------------------------------------------- chroma
def _downsample_2x2(plane: torch.Tensor) -> torch.Tensor:
    """``h2v2_downsample``: ``[B, C, 2h, 2w]`` -> ``[B, C, h, w]``, ``(sum of 4 + bias) >> 2``, bias 1, 2, 1, ..."""
    b, c, h2, w2 = plane.shape
    sums = plane.view(b, c, h2 // 2, 2, w2 // 2, 2).sum(dim=(3, 5))
    bias = torch.ones(w2 // 2, dtype=plane.dtype, device=plane.device)
    bias[1::2] = 2.0
    return torch.floor((sums + bias) * 0.25)


def _upsample_2x2(plane: torch.Tensor) -> torch.Tensor:
    """``h2v2_fancy_upsample`` (triangular, edges replicated): ``[B, C, h, w]`` -> ``[B, C, 2h, 2w]``.

    libjpeg uses it when the chroma is more than 2 samples wide; otherwise it repeats each sample 2x2.
    """
    b, c, h, w = plane.shape
    if w <= 2:
        return plane.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    up = torch.cat([plane[..., :1, :], plane[..., :-1, :]], dim=-2)    # row above (the first row repeats)
    down = torch.cat([plane[..., 1:, :], plane[..., -1:, :]], dim=-2)  # row below (the last row repeats)
    colsum = torch.stack([3.0 * plane + up, 3.0 * plane + down], dim=-2).reshape(b, c, 2 * h, w)
    left = torch.cat([colsum[..., :1], colsum[..., :-1]], dim=-1)
    right = torch.cat([colsum[..., 1:], colsum[..., -1:]], dim=-1)
    even = torch.floor((3.0 * colsum + left + 8.0) * (1.0 / 16))
    odd = torch.floor((3.0 * colsum + right + 7.0) * (1.0 / 16))
    return torch.stack([even, odd], dim=-1).reshape(b, c, 2 * h, 2 * w)


# ------------------------------------------------------------------------------------------------ public
def jpeg_roundtrip(rgb: torch.Tensor, quality: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Encode and decode 8-bit RGB images as baseline JPEG (4:2:0, islow DCT), exactly as OpenCV does.

    Args:
        rgb: ``[B, 3, H, W]`` uint8, **RGB** channel order, any device. ``H`` and ``W`` at least 1.
        quality: JPEG quality 1..100, one for all images or one per image (``[B]``).

    Returns:
        ``[B, 3, H, W]`` uint8 RGB on ``rgb``'s device: for each image the pixels of
        ``cv2.imdecode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q]), cv2.IMREAD_COLOR)``
        (channels reversed), bit for bit.
    """
    if not isinstance(rgb, torch.Tensor) or rgb.dim() != 4 or rgb.shape[1] != 3 or rgb.dtype != torch.uint8:
        raise ValueError(f"rgb must be a [B, 3, H, W] uint8 tensor, got {getattr(rgb, 'shape', type(rgb))} "
                         f"{getattr(rgb, 'dtype', '')}.")
    n, _, height, width = rgb.shape
    dev = rgb.device
    qualities = torch.as_tensor(quality, device=dev).reshape(-1).long().clamp(0, 100)
    if qualities.numel() == 1:
        qualities = qualities.expand(n)
    if qualities.numel() != n:
        raise ValueError(f"{qualities.numel()} qualities for {n} images.")
    if n == 0:
        return rgb.clone()
    k = _dct_constants(str(dev))
    tables = _quant_table(str(dev))[qualities]  # [B, 2, 4, 1, 1, 1, 8, 8]
    ycc = _rgb_to_ycc(rgb.to(torch.float64))
    # luma: whole 8x8 blocks, edges repeated
    luma = _pad_replicate(ycc[:, :1], _round_up(height, 8), _round_up(width, 8))
    # chroma: full-resolution rows to an even count, columns to twice the chroma blocks' width; 2x2 down;
    # then rows repeated to whole blocks
    ch, cw = -(-height // 2), -(-width // 2)
    chroma = _downsample_2x2(_pad_replicate(ycc[:, 1:], 2 * ch, 2 * _round_up(cw, 8)))
    chroma = _pad_replicate(chroma, _round_up(ch, 8), chroma.shape[-1])
    planes = []
    for plane, t in ((luma, tables[:, 0]), (chroma, tables[:, 1])):
        coef = _fdct_quantise(_to_blocks(plane - 128.0), t, k)
        planes.append(_from_blocks(_dequantise_idct(coef, t[:, 0], k)))
    y = planes[0][..., :height, :width]
    cbcr = _upsample_2x2(planes[1][..., :ch, :cw])[..., :height, :width]
    return _ycc_to_rgb(y[:, 0], cbcr[:, 0], cbcr[:, 1]).to(torch.uint8)

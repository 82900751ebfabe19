"""Degradation operations: the pure tensor steps that apply one set of parameters (blur, resize, noise, JPEG).

Blur kernels (basicsr ``bivariate_Gaussian``), ``cv2.filter2D``-style correlation with ``BORDER_REFLECT_101``,
``cv2.resize(INTER_LINEAR)``-exact bilinear resizing, the fused blur + shrink (:func:`blur_downsample`, one item;
:func:`blur_downsample_batch`, a batch in fixed-size chunks), Gaussian noise and OpenCV JPEG. Tensors are
``[B, C, H, W]`` (or ``[C, H, W]`` per item) RGB in [0, 1] unless stated; see :mod:`restorever.degradation` for the
pipeline that chains them (it re-exports every public name here).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .degradation_params import DegradationError

__all__ = ["BATCH_CHUNK", "add_gaussian_noise", "blur_downsample", "blur_downsample_batch", "filter2d_reflect101",
           "gaussian_kernels", "jpeg_bgr", "lr_size", "resize_bilinear", "separable_factors"]


def gaussian_kernels(sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor,
                     kernel_size: int = 41) -> torch.Tensor:
    """basicsr ``bivariate_Gaussian`` for a batch: ``[B] x 3 -> [B, K, K]`` float64, each summing to 1.

    Row index = y offset, column index = x offset, both in ``[-K//2, K//2]``; covariance
    ``R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T`` with ``R = [[cos, -sin], [sin, cos]]``.
    """
    sx = torch.as_tensor(sigma_x, dtype=torch.float64).reshape(-1)
    sy = torch.as_tensor(sigma_y, dtype=torch.float64).reshape(-1)
    th = torch.as_tensor(theta, dtype=torch.float64).reshape(-1)
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}.")
    c, s = torch.cos(th), torch.sin(th)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # [B, 2, 2]
    cov = rot @ torch.diag_embed(torch.stack([sx * sx, sy * sy], -1)) @ rot.transpose(1, 2)
    inv = torch.linalg.inv(cov)
    ax = torch.arange(-(kernel_size // 2), kernel_size // 2 + 1, dtype=torch.float64, device=sx.device)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    quad = (inv[:, 0, 0, None, None] * xx * xx + (inv[:, 0, 1] + inv[:, 1, 0])[:, None, None] * xx * yy
            + inv[:, 1, 1, None, None] * yy * yy)
    k = torch.exp(-0.5 * quad)
    return k / k.sum(dim=(1, 2), keepdim=True)


def _fast_len(n: int) -> int:
    """Smallest 5-smooth integer >= n (a fast FFT length)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _blur_spectrum(image: torch.Tensor, kernel: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Spectrum of ``filter2D(image, kernel)`` on a reflect-101 padded frame: ``([..., C, Lh, Lw//2+1], Lh, Lw)``.

    ``image`` is ``[..., C, H, W]``; ``kernel`` is ``[K, K]`` or ``[..., 1, K, K]`` (one kernel per leading index,
    broadcast over the channels). Pixel ``(y, x)`` of the filtered image is sample ``(y, x)`` of the inverse
    transform (circular correlation; the frame is large enough that no output wraps around).
    """
    k = kernel.shape[-1]
    p = k // 2
    h, w = image.shape[-2:]
    if p >= h or p >= w:
        raise ValueError(f"image {h}x{w} is too small for a {k}x{k} kernel with reflect-101 borders.")
    lh, lw = _fast_len(h + k - 1), _fast_len(w + k - 1)
    frame = image.new_zeros((*image.shape[:-2], lh, lw))
    frame[..., p:p + h, p:p + w] = image  # reflect-101 borders (OpenCV's default), zeros beyond: no output wraps
    frame[..., p:p + h, :p] = image[..., :, 1:p + 1].flip(-1)
    frame[..., p:p + h, p + w:w + 2 * p] = image[..., :, w - 1 - p:w - 1].flip(-1)
    frame[..., :p, :w + 2 * p] = frame[..., p + 1:2 * p + 1, :w + 2 * p].flip(-2)
    frame[..., p + h:h + 2 * p, :w + 2 * p] = frame[..., h - 1:h - 1 + p, :w + 2 * p].flip(-2)
    spec = torch.fft.rfft2(frame)
    kk = kernel.to(device=image.device, dtype=image.dtype)
    kspec = torch.fft.fft(torch.fft.rfft(kk, n=lw, dim=-1), n=lh, dim=-2)  # only the K non-zero rows get a row FFT
    return spec.mul_(kspec.conj()), lh, lw


def filter2d_reflect101(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``cv2.filter2D(image, -1, kernel)`` (correlation, ``BORDER_REFLECT_101``) for ONE image, via FFT.

    Args:
        image: ``[C, H, W]`` float32/float64.
        kernel: ``[K, K]`` odd-sized kernel (anchor at the centre); cast to ``image``'s dtype and device.

    Returns:
        ``[C, H, W]`` in ``image``'s dtype. One image per call on purpose: the result then never depends on
        how many images a caller batches.
    """
    spec, lh, lw = _blur_spectrum(image, kernel)
    _, h, w = image.shape
    return torch.fft.irfft2(spec, s=(lh, lw))[:, :h, :w].contiguous()


def _linear_taps(n_in: int, n_out: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """OpenCV ``INTER_LINEAR`` taps for one axis: indices ``i0``, ``i1`` and float32 weight ``f`` of ``i1``.

    ``fx = float32((d + 0.5) * (n_in / n_out) - 0.5)``, ``i0 = floor(fx)``; positions left of the first pixel or
    right of the last are clamped to it (weight 0), as in ``cv2.resize``.
    """
    scale = 1.0 / (n_out / n_in)
    pos = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32)
    i0 = torch.floor(pos)
    frac = pos - i0
    i0 = i0.to(torch.long)
    low, high = i0 < 0, i0 >= n_in - 1
    frac = torch.where(low | high, torch.zeros_like(frac), frac)
    i0 = torch.where(low, torch.zeros_like(i0), torch.where(high, torch.full_like(i0, n_in - 1), i0))
    i1 = torch.clamp(i0 + 1, max=n_in - 1)
    return i0.to(device), i1.to(device), frac.to(device)


def _lerp_axis(x: torch.Tensor, taps, dim: int) -> torch.Tensor:
    i0, i1, f = taps
    shape = [1] * x.dim()
    shape[dim] = -1
    w1 = f.to(x.dtype).view(shape)
    return x.index_select(dim, i0) * (1 - w1) + x.index_select(dim, i1) * w1


def resize_bilinear(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``cv2.resize(..., (w, h), interpolation=INTER_LINEAR)`` for ``[..., H, W]`` floats -> ``[..., h, w]``.

    Half-pixel centres, edge clamping, no antialiasing when shrinking (for an exact 2x shrink OpenCV switches
    to INTER_AREA, which gives the same 2x2 mean). Separable like OpenCV: horizontal pass, then vertical.
    """
    h, w = int(size[0]), int(size[1])
    in_h, in_w = images.shape[-2:]
    if (in_h, in_w) == (h, w):
        return images
    x = _lerp_axis(images, _linear_taps(in_w, w, images.device), images.dim() - 1)
    return _lerp_axis(x, _linear_taps(in_h, h, images.device), images.dim() - 2)


@functools.lru_cache(maxsize=64)
def _sampling_matrix(n_in: int, n_out: int, length: int, half: bool, device: str, dtype: torch.dtype) -> torch.Tensor:
    """Inverse-DFT rows that evaluate one axis of a bilinear shrink straight from a spectrum.

    Row ``d`` holds ``sum_t w_t exp(2 pi i k p_t / L) / L`` over the two taps ``p_t`` (weights ``w_t``) of output
    sample ``d``. With ``half=True`` the columns cover ``k = 0 .. L/2`` with the weights of a real inverse
    transform (1 for ``k = 0`` and ``L/2``, 2 otherwise), so that ``Re(...)`` gives the real signal.
    """
    i0, i1, frac = _linear_taps(n_in, n_out)
    f = frac.to(torch.float64)[:, None]
    k = torch.arange(length // 2 + 1 if half else length, dtype=torch.float64)
    two_pi = 2.0 * math.pi / length

    def phase(idx: torch.Tensor) -> torch.Tensor:
        ang = two_pi * torch.outer(idx.to(torch.float64), k).remainder(length)  # exact integer products mod L
        return torch.polar(torch.ones_like(ang), ang)

    mat = ((1.0 - f) * phase(i0) + f * phase(i1)) / length
    if half:
        w = torch.full((k.numel(),), 2.0, dtype=torch.float64)
        w[0] = 1.0
        if length % 2 == 0:
            w[-1] = 1.0
        mat = mat * w
    return mat.to(device=device, dtype=dtype)


def separable_factors(kernel: torch.Tensor, tol: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(column_taps, row_taps)`` with ``kernel == outer(column_taps, row_taps)`` if the kernel has rank one.

    Axis-aligned (theta a multiple of pi/2) and isotropic Gaussians are; other rotations are not. Returns
    ``None`` when the best rank-one fit is off by more than ``tol`` times the kernel's peak.
    """
    k = kernel.to(torch.float64)
    total = k.sum()
    vertical, horizontal = k.sum(dim=1) / total, k.sum(dim=0)
    if float((torch.outer(vertical, horizontal) - k).abs().max()) > tol * float(k.abs().max()):
        return None
    return vertical, horizontal


def _reflect101(idx: torch.Tensor, n: int) -> torch.Tensor:
    period = 2 * (n - 1)
    idx = idx.remainder(period) if n > 1 else torch.zeros_like(idx)
    return torch.where(idx >= n, period - idx, idx)


def _blur_shrink_matrix(taps: torch.Tensor, n_in: int, n_out: int) -> torch.Tensor:
    """``[n_out, n_in]`` float64 matrix of a 1-D correlation (reflect-101 borders) followed by a bilinear shrink."""
    i0, i1, frac = _linear_taps(n_in, n_out)
    half = taps.numel() // 2
    offsets = torch.arange(-half, half + 1)
    mat = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)[:, None].expand(-1, taps.numel())
    f = frac.to(torch.float64)[:, None]
    for centre, weight in ((i0, 1.0 - f), (i1, f)):
        cols = _reflect101(centre[:, None] + offsets[None, :], n_in)
        mat.index_put_((rows, cols), weight * taps[None, :], accumulate=True)
    return mat


def blur_downsample(image: torch.Tensor, kernel: torch.Tensor, size: tuple[int, int], *,
                    method: str = "auto") -> torch.Tensor:
    """``cv2.resize(cv2.filter2D(image, -1, kernel), (w, h), INTER_LINEAR)`` for ONE ``[C, H, W]`` image.

    The blurred image is never formed at full size. A rank-one kernel (axis-aligned or isotropic Gaussian)
    takes ``method="separable"``: blur-and-shrink is then one ``[h, H]`` and one ``[w, W]`` matrix, applied
    with two matrix products. Any kernel can take the FFT route, after which only what the shrink reads is
    brought back: the needed rows (``"rows"``: column inverse FFTs, then row inverse FFTs on those rows only)
    or the output samples themselves (``"matmul"``: products with cached inverse-DFT sampling matrices;
    cheaper for small outputs). ``"auto"`` picks ``separable`` when it applies, else ``matmul`` for outputs
    at most 64 pixels tall, else ``rows``. All agree with the two-step computation to float rounding.
    """
    _, in_h, in_w = image.shape
    out_h, out_w = int(size[0]), int(size[1])
    factors = separable_factors(kernel) if method in ("auto", "separable") else None
    if method == "separable" and factors is None:
        raise ValueError("method='separable' needs a rank-one kernel (axis-aligned or isotropic Gaussian).")
    if factors is not None:
        rows_m = _blur_shrink_matrix(factors[0], in_h, out_h).to(device=image.device, dtype=image.dtype)
        cols_m = _blur_shrink_matrix(factors[1], in_w, out_w).to(device=image.device, dtype=image.dtype)
        return torch.matmul(torch.matmul(rows_m, image), cols_m.transpose(0, 1))
    spec, lh, lw = _blur_spectrum(image, kernel)
    if method == "auto":
        method = "matmul" if out_h <= 64 else "rows"
    if method == "matmul":
        cdtype = spec.dtype
        rows = _sampling_matrix(in_h, out_h, lh, False, str(spec.device), cdtype)
        cols = _sampling_matrix(in_w, out_w, lw, True, str(spec.device), cdtype)
        return torch.matmul(torch.matmul(rows, spec), cols.transpose(0, 1)).real.contiguous()
    if method != "rows":
        raise ValueError(f"method must be 'auto', 'separable', 'rows' or 'matmul', got {method!r}.")
    r0, r1, rf = _linear_taps(in_h, out_h)
    needed = torch.unique(torch.cat([r0, r1]))  # sorted
    remap = torch.empty(in_h, dtype=torch.long)
    remap[needed] = torch.arange(needed.numel())
    cols_first = torch.fft.ifft(spec, dim=-2).index_select(-2, needed.to(spec.device))
    blurred_rows = torch.fft.irfft(cols_first, n=lw, dim=-1)[..., :in_w]  # [C, len(needed), W]
    x = _lerp_axis(blurred_rows, _linear_taps(in_w, out_w, image.device), 2)
    dev = image.device
    return _lerp_axis(x, (remap[r0].to(dev), remap[r1].to(dev), rf.to(dev)), 1)


BATCH_CHUNK = 16
"""Items per transform in :func:`blur_downsample_batch`; every call is padded to whole chunks of this size."""


def blur_downsample_batch(images: torch.Tensor, kernels: torch.Tensor, size: tuple[int, int], *,
                          chunk: int = BATCH_CHUNK) -> torch.Tensor:
    """:func:`blur_downsample` (``method="matmul"``) for a batch, one kernel per item, on the images' device.

    Args:
        images: ``[N, C, H, W]`` float32/float64 (any value range and colour order; channels are independent).
        kernels: ``[N, K, K]`` odd-sized correlation kernels, any float dtype and device (cast to ``images``').
        size: the output size ``(h, w)``, the same for every item.

    Returns:
        ``[N, C, h, w]`` in ``images``' dtype and device: ``cv2.resize(cv2.filter2D(x, -1, k), (w, h),
        INTER_LINEAR)`` per item, equal to the per-item function up to float rounding. Every kernel takes the
        same FFT route (no separable special case), so all items are computed alike.

    Items go through the FFTs and matrix products ``chunk`` at a time, the last chunk padded with copies of
    its last item (discarded). The transforms and products therefore always have one shape, so the FFT and
    BLAS libraries pick the same algorithm in every call (cuFFT and cuBLAS choose by batch count), and a
    batched transform or ``bmm`` computes each batch entry the same way: an item's result does not depend on
    the batch size or on the other items, as :meth:`restorever.degradation.Degradation.apply` promises.
    """
    n, c, in_h, in_w = images.shape
    if kernels.dim() != 3 or kernels.shape[0] != n:
        raise ValueError(f"kernels must be [N, K, K] with N = {n}, got {tuple(kernels.shape)}.")
    out_h, out_w = int(size[0]), int(size[1])
    out = images.new_empty((n, c, out_h, out_w))
    for start in range(0, n, chunk):
        x, k = images[start:start + chunk], kernels[start:start + chunk]
        m = x.shape[0]
        if m < chunk:
            x = torch.cat([x, x[-1:].expand(chunk - m, -1, -1, -1)])
            k = torch.cat([k, k[-1:].expand(chunk - m, -1, -1)])
        spec, lh, lw = _blur_spectrum(x, k.unsqueeze(1))  # [chunk, C, Lh, Lw//2+1]
        dev = str(spec.device)
        rows = _sampling_matrix(in_h, out_h, lh, False, dev, spec.dtype)  # [h, Lh]
        cols = _sampling_matrix(in_w, out_w, lw, True, dev, spec.dtype).transpose(0, 1)  # [Lw//2+1, w]
        flat = spec.reshape(chunk * c, lh, -1)
        # one small product per (item, channel), not one folded matrix product: equal work for every entry
        small = torch.bmm(torch.bmm(rows.expand(flat.shape[0], -1, -1), flat), cols.expand(flat.shape[0], -1, -1))
        out[start:start + m] = small.real.reshape(chunk, c, out_h, out_w)[:m]
    return out


def add_gaussian_noise(images: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``clip(images + noise * sigma / 255, 0, 1)``, basicsr's ``add_gaussian_noise(clip=True, rounds=False)``.

    ``images`` and standard-normal ``noise`` are ``[B, C, h, w]``; ``sigma`` is ``[B]`` in 0-255 units.
    """
    s = torch.as_tensor(sigma, device=images.device).to(images.dtype).view(-1, 1, 1, 1)
    return (images + noise * s / 255.0).clamp_(0.0, 1.0)


def jpeg_bgr(bgr: np.ndarray, quality: int) -> np.ndarray:
    """Encode + decode one HxWx3 uint8 BGR array with OpenCV at ``quality``."""
    import cv2  # lazy: only this step needs OpenCV

    ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV failed to JPEG-encode a {bgr.shape} image at quality {quality}.")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def lr_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Low-resolution size ``(int(H // s), int(W // s))`` exactly as the reference computes it."""
    h, w = int(height // float(scale)), int(width // float(scale))
    if h < 1 or w < 1:
        raise DegradationError(
            f"scale {float(scale):g} is too large for a {height}x{width} image (low-resolution size {h}x{w}); use a "
            f"scale of at most {min(height, width)}"
        )
    return h, w


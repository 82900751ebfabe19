"""Synthetic face degradation: the DifFace test degradation and the training presets of GFPGAN, VQFR and CodeFormer.

One degradation of a 512x512 face ``x`` (RGB, [0, 1]) with parameters ``(sigma_x, sigma_y, theta, s, n, q)`` is,
exactly as DifFace's ``datapipe/face_degradation_testing.py`` (see ``shared/reference/degradation.md``)::

    y = round_clip( up_bilinear( jpeg_q( clip( down_bilinear(x (*) k, s) + n/255 * N(0, 1) ) ) ) )

1. ``k``: basicsr's ``bivariate_Gaussian(41, sigma_x, sigma_y, theta, isotropic=False)`` (covariance
   ``R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T`` on a 41x41 grid, normalised to sum 1), applied like
   ``cv2.filter2D``: correlation with ``BORDER_REFLECT_101`` borders.
2. Down to ``(int(H // s), int(W // s))`` with ``cv2.resize(INTER_LINEAR)`` semantics: half-pixel centres,
   edge clamping, no antialiasing.

   Steps 1-2 are computed together and never form the full-size blurred image (:func:`blur_downsample`): a
   rank-one kernel (axis-aligned or isotropic) becomes two small matrices, any other goes through an FFT of
   the reflect-padded image after which only the samples the shrink reads are transformed back. Both are
   exact up to float rounding.
3. Gaussian noise with sigma ``n`` in 0-255 units, per channel, then clip to [0, 1] (basicsr's
   ``add_gaussian_noise(clip=True, rounds=False)``). The noise for item *i* comes only from a CPU
   ``torch.Generator`` seeded with that item's ``noise_seed``, so batch size and device never change it.
4. JPEG at quality ``q`` with OpenCV, as basicsr's ``add_jpg_compression``: the image is rounded to uint8
   (half to even, like OpenCV's ``convertTo``), encoded with ``cv2.imencode('.jpg')`` in **BGR** channel order
   (so libjpeg's colour conversion and 4:2:0 chroma subsampling act on the same data as in the reference) and
   decoded with ``cv2.imdecode``. This step runs on the CPU whatever the device.
5. Bilinear back up to ``(H, W)`` (``cv2.resize`` semantics again).
6. Round to ``k/255`` and clip.

Parameters are sampled per item from a SHA-256 hash of ``(seed, scale, item_id)`` -- never Python's ``hash``
and never a shared random stream -- so the same item gets the same parameters and the same noise in any
batch, process or run. Every reduction (FFT, matrix product) runs on one item at a time, so pixels are
bit-identical for any batch size on a given device; across devices the float arithmetic of steps 1, 2 and 5
may differ in the last bit, which can move a rare pixel by one grey level. On the CPU the output matches a
plain OpenCV implementation of the reference to the byte on nearly every pixel (``tests/test_degradation.py``
requires 99 % equal pixels and a mean difference below one grey level).

Presets (``list_degradations()``):

* ``difface-test`` -- DifFace ICLR'23 test grid: ``sigma_x`` and ``sigma_y`` each drawn from
  {2, 4, ..., 14}, ``theta`` from {0, pi/4, pi/2, 3pi/4}, noise from {1, 5, 10, 15, 20}, JPEG quality from
  {30, 40, 50, 60, 70}, always anisotropic. The reference walks the grid; we draw one cell uniformly per item.
  Scale: given by the caller (the sweep); when ``scale=None`` it is drawn from {4, 8, 16, 24, 30}.
* ``difface-journal`` -- the journal grid: sigma from {4, 8, 12, 16}, scales {4, 8, ..., 40}.
* ``gfpgan-v1``, ``vqfr-v2``, ``codeformer-s2`` -- the basicsr ``FFHQDegradationDataset`` ranges of
  those training configs (table in the reference): iso/aniso kernels 50/50 (iso: ``sigma_y = sigma_x``,
  ``theta = 0``; aniso: both sigmas uniform, ``theta`` uniform in [-pi, pi]), noise uniform, JPEG quality a
  uniform *integer* in the range (basicsr draws a float, which today's OpenCV refuses as a JPEG quality).
  Colour jitter and grey conversion of the GFPGAN config are not applied (they change colour, not detail).
  The scale range is used only when ``scale=None``.
"""
from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .errors import ImageError, RestoreverError, UnknownNameError

__all__ = [
    "Degradation",
    "DegradationError",
    "DegradationParams",
    "DegradationPreset",
    "PRESETS",
    "add_gaussian_noise",
    "blur_downsample",
    "degrade",
    "filter2d_reflect101",
    "gaussian_kernels",
    "get_preset",
    "list_degradations",
    "lr_size",
    "resize_bilinear",
    "separable_factors",
]

logger = logging.getLogger(__name__)

_HASH_VERSION = "restorever.degradation/1"


class DegradationError(RestoreverError, ValueError):
    """Degradation parameters that cannot be used (scale too large, malformed records)."""


# ----------------------------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class _Dist:
    """A 1-D sampling rule: ``choice`` over values, ``uniform`` on [lo, hi), or ``randint`` on [lo, hi]."""

    kind: str
    values: tuple[float, ...]

    def draw(self, u: float) -> float:
        """Map a uniform ``u`` in [0, 1) to a value (inverse CDF, so one hash value gives one draw)."""
        if self.kind == "choice":
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        lo, hi = self.values
        if self.kind == "uniform":
            return lo + u * (hi - lo)
        if self.kind == "randint":
            return min(int(lo + math.floor(u * (hi - lo + 1))), int(hi))
        raise ValueError(f"unknown distribution kind {self.kind!r}")

    def contains(self, v: float) -> bool:
        if self.kind == "choice":
            return any(abs(v - c) <= 1e-12 for c in self.values)
        return self.values[0] <= v <= self.values[1]

    def describe(self) -> Any:
        if self.kind == "choice":
            return list(self.values)
        return {self.kind: list(self.values)}


def _choice(*values: float) -> _Dist:
    return _Dist("choice", tuple(float(v) for v in values))


def _uniform(lo: float, hi: float) -> _Dist:
    return _Dist("uniform", (float(lo), float(hi)))


def _randint(lo: int, hi: int) -> _Dist:
    return _Dist("randint", (float(lo), float(hi)))


@dataclass(frozen=True)
class DegradationPreset:
    """Sampling rules for one named degradation.

    Attributes:
        name: registry name (``"difface-test"``).
        sigma: rule for each of the blur sigmas (pixels of the 512 input).
        theta: rule for the kernel angle (radians) of anisotropic kernels.
        iso_prob: probability of an isotropic kernel.
        noise: rule for the noise sigma in 0-255 units.
        jpeg: rule for the JPEG quality (integers).
        scale: rule used when the caller passes ``scale=None``.
        kernel_size: blur kernel size (41 everywhere in the references).
        source: where the numbers come from.
    """

    name: str
    sigma: _Dist
    theta: _Dist
    iso_prob: float
    noise: _Dist
    jpeg: _Dist
    scale: _Dist
    kernel_size: int = 41
    source: str = ""

    def describe(self) -> dict[str, Any]:
        """JSON-able summary of the rules (for run records and ``restorever degrade --help``)."""
        return {
            "name": self.name, "sigma": self.sigma.describe(), "theta": self.theta.describe(),
            "iso_prob": self.iso_prob, "noise": self.noise.describe(), "jpeg": self.jpeg.describe(),
            "scale": self.scale.describe(), "kernel_size": self.kernel_size, "source": self.source,
        }


_THETA_GRID = _choice(0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
_THETA_ANY = _uniform(-math.pi, math.pi)

PRESETS: dict[str, DegradationPreset] = {
    p.name: p
    for p in (
        DegradationPreset(
            "difface-test", sigma=_choice(2, 4, 6, 8, 10, 12, 14), theta=_THETA_GRID, iso_prob=0.0,
            noise=_choice(1, 5, 10, 15, 20), jpeg=_choice(30, 40, 50, 60, 70), scale=_choice(4, 8, 16, 24, 30),
            source="DifFace make_testing_data.py, ICLR'23 grid (one grid cell drawn per item)",
        ),
        DegradationPreset(
            "difface-journal", sigma=_choice(4, 8, 12, 16), theta=_THETA_GRID, iso_prob=0.0,
            noise=_choice(1, 5, 10, 15, 20), jpeg=_choice(30, 40, 50, 60, 70),
            scale=_choice(4, 8, 12, 16, 20, 24, 28, 32, 36, 40),
            source="DifFace make_testing_data.py, journal grid (one grid cell drawn per item)",
        ),
        DegradationPreset(
            "gfpgan-v1", sigma=_uniform(0.1, 10), theta=_THETA_ANY, iso_prob=0.5, noise=_uniform(0, 20),
            jpeg=_randint(60, 100), scale=_uniform(0.8, 8),
            source="GFPGAN options/train_gfpgan_v1.yml (colour jitter and grey not applied)",
        ),
        DegradationPreset(
            "vqfr-v2", sigma=_uniform(1, 15), theta=_THETA_ANY, iso_prob=0.5, noise=_uniform(0, 20),
            jpeg=_randint(30, 90), scale=_uniform(1, 30),
            source="VQFR options/train/VQFR/train_vqfr_v2_B16_200K.yml",
        ),
        DegradationPreset(
            "codeformer-s2", sigma=_uniform(1, 15), theta=_THETA_ANY, iso_prob=0.5, noise=_uniform(0, 20),
            jpeg=_randint(30, 80), scale=_uniform(4, 30),
            source="CodeFormer options/CodeFormer_stage2.yml",
        ),
    )
}


def list_degradations() -> list[str]:
    """Names of the degradation presets."""
    return sorted(PRESETS)


def get_preset(name: str) -> DegradationPreset:
    """The named preset; an unknown name raises :class:`UnknownNameError` (a ``KeyError``) with a hint."""
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"Unknown degradation {name!r}.{hint} Available: {', '.join(list_degradations())}."
        ) from None


# ------------------------------------------------------------------------------------------------------ params
def _scale_key(scale: float | None) -> str:
    if scale is None:
        return "sampled"
    s = float(scale)
    return str(int(s)) if s.is_integer() else repr(s)


def _hash_uniforms(seed: int, scale: float | None, item_id: str, names: Iterable[str]) -> dict[str, float]:
    """Independent uniforms in [0, 1) per name, from SHA-256 of (version, seed, scale, item id, name)."""
    base = f"{_HASH_VERSION}|seed={int(seed)}|scale={_scale_key(scale)}|item={item_id}|"
    out = {}
    for name in names:
        digest = hashlib.sha256((base + name).encode("utf-8")).digest()
        out[name] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


def _hash_seed(seed: int, scale: float | None, item_id: str) -> int:
    base = f"{_HASH_VERSION}|seed={int(seed)}|scale={_scale_key(scale)}|item={item_id}|noise"
    return int.from_bytes(hashlib.sha256(base.encode("utf-8")).digest()[:8], "big") >> 1  # fits int64


_FIELDS = ("scale", "sigma_x", "sigma_y", "theta", "noise_sigma", "jpeg_quality", "noise_seed")


@dataclass(eq=False)
class DegradationParams:
    """Per-item degradation parameters (kornia style: one 1-D CPU tensor per parameter, length ``B``).

    Attributes:
        item_ids: the ids the parameters were drawn for.
        preset: preset name.
        seed: the run seed.
        scale: float64 down-sampling factor ``s`` (LR size ``int(H // s)``).
        sigma_x, sigma_y: float64 kernel sigmas in input pixels; theta: float64 radians.
        noise_sigma: float64, 0-255 units.
        jpeg_quality: int64 in [0, 100].
        noise_seed: int64 seed of the item's CPU noise generator.
        kernel_size: blur kernel size.
    """

    item_ids: list[str]
    preset: str
    seed: int
    scale: torch.Tensor
    sigma_x: torch.Tensor
    sigma_y: torch.Tensor
    theta: torch.Tensor
    noise_sigma: torch.Tensor
    jpeg_quality: torch.Tensor
    noise_seed: torch.Tensor
    kernel_size: int = 41

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        for name in _FIELDS:
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.shape != (n,):
                raise ValueError(f"DegradationParams.{name} must be a tensor of shape ({n},), got {t!r}.")

    def __len__(self) -> int:
        return len(self.item_ids)

    def __getitem__(self, index: int | slice | Sequence[int]) -> "DegradationParams":
        """Subset as a new ``DegradationParams`` (an int gives a length-1 subset)."""
        if isinstance(index, slice):
            idx = list(range(len(self)))[index]
        elif isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.dim() == 0):
            idx = [int(index)]
        else:
            idx = [int(i) for i in index]
        sel = torch.as_tensor(idx, dtype=torch.long)
        return DegradationParams(
            [self.item_ids[i] for i in idx], self.preset, self.seed,
            *(getattr(self, f).index_select(0, sel) for f in _FIELDS), kernel_size=self.kernel_size,
        )

    @staticmethod
    def cat(parts: Sequence["DegradationParams"]) -> "DegradationParams":
        """Concatenate parameter sets of the same preset, seed and kernel size."""
        if not parts:
            raise ValueError("DegradationParams.cat needs at least one part.")
        first = parts[0]
        for p in parts[1:]:
            if (p.preset, p.seed, p.kernel_size) != (first.preset, first.seed, first.kernel_size):
                raise ValueError("Cannot concatenate DegradationParams of different presets, seeds or kernel sizes.")
        return DegradationParams(
            [i for p in parts for i in p.item_ids], first.preset, first.seed,
            *(torch.cat([getattr(p, f) for p in parts]) for f in _FIELDS), kernel_size=first.kernel_size,
        )

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per item (what a run stores next to the degraded images)."""
        recs = []
        for i, item in enumerate(self.item_ids):
            scale = float(self.scale[i])
            recs.append({
                "item_id": item, "preset": self.preset, "seed": int(self.seed),
                "scale": int(scale) if scale.is_integer() else scale,
                "sigma_x": float(self.sigma_x[i]), "sigma_y": float(self.sigma_y[i]), "theta": float(self.theta[i]),
                "noise_sigma": float(self.noise_sigma[i]), "jpeg_quality": int(self.jpeg_quality[i]),
                "noise_seed": int(self.noise_seed[i]), "kernel_size": int(self.kernel_size),
            })
        return recs

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]]) -> "DegradationParams":
        """Rebuild parameters from :meth:`to_records` output (to replay a stored run)."""
        if not records:
            raise DegradationError("from_records got no records.")
        try:
            f64 = {k: torch.tensor([float(r[k]) for r in records], dtype=torch.float64)
                   for k in ("scale", "sigma_x", "sigma_y", "theta", "noise_sigma")}
            i64 = {k: torch.tensor([int(r[k]) for r in records], dtype=torch.int64)
                   for k in ("jpeg_quality", "noise_seed")}
            return cls([str(r["item_id"]) for r in records], str(records[0]["preset"]), int(records[0]["seed"]),
                       kernel_size=int(records[0].get("kernel_size", 41)), **f64, **i64)
        except KeyError as exc:
            raise DegradationError(f"Degradation record is missing the field {exc.args[0]!r}.") from None


# -------------------------------------------------------------------------------------------------- functional
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
    """Spectrum of ``filter2D(image, kernel)`` on a reflect-101 padded frame: ``([C, Lh, Lw//2+1], Lh, Lw)``.

    Pixel ``(y, x)`` of the filtered image is sample ``(y, x)`` of the inverse transform (circular
    correlation; the frame is large enough that no output wraps around).
    """
    k = kernel.shape[-1]
    p = k // 2
    _, h, w = image.shape
    if p >= h or p >= w:
        raise ValueError(f"image {h}x{w} is too small for a {k}x{k} kernel with reflect-101 borders.")
    lh, lw = _fast_len(h + k - 1), _fast_len(w + k - 1)
    frame = image.new_zeros((image.shape[0], lh, lw))
    frame[:, p:p + h, p:p + w] = image  # reflect-101 borders (OpenCV's default), zeros beyond: no output wraps
    frame[:, p:p + h, :p] = image[:, :, 1:p + 1].flip(-1)
    frame[:, p:p + h, p + w:w + 2 * p] = image[:, :, w - 1 - p:w - 1].flip(-1)
    frame[:, :p, :w + 2 * p] = frame[:, p + 1:2 * p + 1, :w + 2 * p].flip(-2)
    frame[:, p + h:h + 2 * p, :w + 2 * p] = frame[:, h - 1:h - 1 + p, :w + 2 * p].flip(-2)
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


def add_gaussian_noise(images: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``clip(images + noise * sigma / 255, 0, 1)``, basicsr's ``add_gaussian_noise(clip=True, rounds=False)``.

    ``images`` and standard-normal ``noise`` are ``[B, C, h, w]``; ``sigma`` is ``[B]`` in 0-255 units.
    """
    s = torch.as_tensor(sigma, device=images.device).to(images.dtype).view(-1, 1, 1, 1)
    return (images + noise * s / 255.0).clamp_(0.0, 1.0)


def _jpeg_bgr(bgr: np.ndarray, quality: int) -> np.ndarray:
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
            f"scale {scale} is too large for a {height}x{width} image (low-resolution size {h}x{w}); use a smaller "
            "--scales value."
        )
    return h, w


# ------------------------------------------------------------------------------------------------------ module
class Degradation:
    """Sample (:meth:`sample_params`) and apply (:meth:`apply`) one degradation preset.

    Example:
        >>> deg = Degradation("difface-test")
        >>> params = deg.sample_params(["Aaron_Peirsol_0001"], scale=16, seed=0)
        >>> lq = deg.apply(faces, params)        # faces: [1, 3, 512, 512] float in [0, 1], RGB
        >>> params.to_records()[0]["jpeg_quality"]
    """

    JPEG_BACKENDS = ("opencv", "torchvision")
    """Values of :meth:`apply`'s ``jpeg`` option."""

    def __init__(self, preset: str = "difface-test") -> None:
        self.preset = get_preset(preset)

    def __repr__(self) -> str:
        return f"Degradation({self.preset.name!r})"

    def sample_params(self, item_ids: Sequence[str], scale: float | None, seed: int) -> DegradationParams:
        """Draw parameters for each item from a stable hash of ``(seed, scale, item_id)``.

        Args:
            item_ids: stable ids (e.g. ``"Aaron_Peirsol/Aaron_Peirsol_0001"``); duplicates get equal parameters.
            scale: the down-sampling factor for every item, or ``None`` to draw it from the preset.
            seed: run seed (an int).
        """
        if isinstance(item_ids, str):
            raise TypeError("item_ids must be a sequence of ids, not one string.")
        if scale is not None and not float(scale) > 0:
            raise DegradationError(f"scale must be positive, got {scale}.")
        p = self.preset
        cols: dict[str, list] = {f: [] for f in _FIELDS}
        ids = [str(i) for i in item_ids]
        for item in ids:
            u = _hash_uniforms(seed, scale, item, ("scale", "iso", "sigma_x", "sigma_y", "theta", "noise", "jpeg"))
            sx = p.sigma.draw(u["sigma_x"])
            iso = u["iso"] < p.iso_prob
            cols["scale"].append(float(scale) if scale is not None else p.scale.draw(u["scale"]))
            cols["sigma_x"].append(sx)
            cols["sigma_y"].append(sx if iso else p.sigma.draw(u["sigma_y"]))
            cols["theta"].append(0.0 if iso else p.theta.draw(u["theta"]))
            cols["noise_sigma"].append(p.noise.draw(u["noise"]))
            cols["jpeg_quality"].append(int(p.jpeg.draw(u["jpeg"])))
            cols["noise_seed"].append(_hash_seed(seed, scale, item))
        tensors = {f: torch.tensor(v, dtype=torch.int64 if f in ("jpeg_quality", "noise_seed") else torch.float64)
                   for f, v in cols.items()}
        return DegradationParams(ids, p.name, int(seed), kernel_size=p.kernel_size, **tensors)

    @staticmethod
    def noise(params: DegradationParams, index: int, shape: tuple[int, int, int]) -> torch.Tensor:
        """The standard-normal noise ``[C, h, w]`` float32 (CPU) of item ``index``; reproducible anywhere."""
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(params.noise_seed[index]))
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    def apply(self, images: torch.Tensor, params: DegradationParams, *, jpeg: str = "opencv") -> torch.Tensor:
        """Degrade ``images`` ``[B, 3, H, W]`` (float, [0, 1], RGB) with ``params`` (length ``B``).

        Pure: the output depends only on each item's pixels and parameters, never on the batch. Returns a
        tensor of the input's shape, dtype and device whose values are multiples of 1/255. Work is done in
        float32 (float64 for float64 input).

        On the CPU every item runs start to finish in one thread with torch's intra-op threads set to 1 for the
        duration of the call (restored afterwards); items run in parallel, one per available thread. That
        keeps results independent of the batch and of the thread count, and it stays fast on a busy machine
        where many small multi-threaded ops would wait on each other. On other devices blur, shrink, noise and
        the final enlargement (:func:`resize_bilinear`) run on the device and JPEG runs on CPU threads.

        ``jpeg``: ``"opencv"`` (default; OpenCV's libjpeg, the reference) or ``"torchvision"``
        (``torchvision.io.encode_jpeg``/``decode_jpeg``; with ``"torchvision"`` every device, the CPU included, takes
        the device path). On the CPU torchvision's libjpeg gives OpenCV's output within one grey level. On CUDA
        (nvJPEG) it is refused: on one H200 (2026-12-04, ``scripts/bench_gpu.py``) its output differed from
        OpenCV's by up to 125 grey levels on 85-93 % of the pixels, so it is not the same degradation.
        """
        _check_images(images)
        if len(params) != images.shape[0]:
            raise DegradationError(f"{len(params)} parameter sets for a batch of {images.shape[0]} images.")
        work = torch.float64 if images.dtype == torch.float64 else torch.float32
        kernels = gaussian_kernels(params.sigma_x, params.sigma_y, params.theta, params.kernel_size)
        if jpeg not in self.JPEG_BACKENDS:
            raise DegradationError(f"jpeg={jpeg!r}: choose one of {', '.join(self.JPEG_BACKENDS)}.")
        out = torch.empty(images.shape, dtype=images.dtype, device=images.device)
        if jpeg == "torchvision" and images.device.type == "cuda":
            raise DegradationError("jpeg='torchvision' on CUDA (nvJPEG) was measured to differ from OpenCV's JPEG by "
                                   "up to 125 grey levels on most pixels; use the default jpeg='opencv'.")
        if jpeg == "torchvision":
            self._apply_torchvision_jpeg(images, params, kernels, work, out)
        elif images.device.type == "cpu":
            self._apply_cpu(images, params, kernels, work, out)
        else:
            self._apply_device(images, params, kernels, work, out)
        return out

    def _apply_torchvision_jpeg(self, images, params, kernels, work, out) -> None:
        from torchvision.io import decode_jpeg, encode_jpeg

        height, width = images.shape[-2:]
        small = [self._low_res_u8(images[i], params, i, kernels[i], work) for i in range(len(params))]
        decoded: list[torch.Tensor | None] = [None] * len(small)
        by_quality: dict[int, list[int]] = {}
        for i, q in enumerate(params.jpeg_quality.tolist()):
            by_quality.setdefault(int(q), []).append(i)
        for quality, idx in by_quality.items():
            encoded = encode_jpeg([small[i] for i in idx], quality=quality)
            # encode_jpeg returns the bytes on the images' device; decode_jpeg reads bytes from host memory only
            # (and decodes on ``device``), so the few kilobytes of each stream come back to the host once
            dec = decode_jpeg([e.cpu() for e in encoded], device=images.device)
            for i, d in zip(idx, dec):
                decoded[i] = d
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, dec in enumerate(decoded):
            groups.setdefault(tuple(dec.shape), []).append(i)
        for idx in groups.values():
            up = _upsample_round_rgb(torch.stack([decoded[i].to(images.device) for i in idx]), height, width, work)
            out[torch.as_tensor(idx, device=images.device)] = up.to(out.dtype)

    def _low_res_bgr(self, image: torch.Tensor, params: DegradationParams, i: int, kernel: torch.Tensor,
                     work: torch.dtype) -> np.ndarray:
        """Steps 1-3 for item ``i``: ``h x w x 3`` uint8 BGR, rounded as ``cv2.imencode`` rounds ``img * 255``."""
        return self._low_res_u8(image, params, i, kernel, work).flip(0).permute(1, 2, 0).contiguous().cpu().numpy()

    def _low_res_u8(self, image: torch.Tensor, params: DegradationParams, i: int, kernel: torch.Tensor,
                    work: torch.dtype) -> torch.Tensor:
        """Steps 1-3 for item ``i`` on the image's device: ``[3, h, w]`` uint8 RGB."""
        height, width = image.shape[-2:]
        size = lr_size(height, width, float(params.scale[i]))
        small = blur_downsample(image.to(work), kernel, size)
        noise = self.noise(params, i, (3, *size)).to(device=image.device, dtype=work)
        noisy = add_gaussian_noise(small.unsqueeze(0), noise.unsqueeze(0), params.noise_sigma[i:i + 1])[0]
        return (noisy * 255.0).round_().clamp_(0, 255).to(torch.uint8)

    def _apply_cpu(self, images, params, kernels, work, out) -> None:
        height, width = images.shape[-2:]
        out_np = out.numpy() if out.dtype == work else None

        def one(i: int) -> None:
            lq = _jpeg_bgr(self._low_res_bgr(images[i], params, i, kernels[i], work), int(params.jpeg_quality[i]))
            up = _upsample_round_cv2(lq, height, width, work)
            if out_np is not None:
                np.copyto(out_np[i], up.transpose(2, 0, 1))
            else:
                out[i].copy_(torch.from_numpy(up).permute(2, 0, 1))

        with _torch_threads(1) as available:
            workers = max(1, min(len(params), available))
            if workers == 1:
                for i in range(len(params)):
                    one(i)
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(one, range(len(params))))

    def _apply_device(self, images, params, kernels, work, out) -> None:
        height, width = images.shape[-2:]
        small = [self._low_res_u8(images[i], params, i, kernels[i], work) for i in range(len(params))]
        lr_bgr: list[np.ndarray] = [None] * len(small)  # type: ignore[list-item]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, u8 in enumerate(small):
            by_shape.setdefault(tuple(u8.shape), []).append(i)
        for idx in by_shape.values():  # one device-to-host copy per size, not one per item
            host = torch.stack([small[i] for i in idx]).flip(1).permute(0, 2, 3, 1).contiguous().cpu().numpy()
            for k, i in enumerate(idx):
                lr_bgr[i] = host[k]
        quality = params.jpeg_quality.tolist()
        if len(lr_bgr) < 4:
            decoded = [_jpeg_bgr(a, q) for a, q in zip(lr_bgr, quality)]
        else:  # keep the device fed: OpenCV releases the GIL
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                decoded = list(pool.map(_jpeg_bgr, lr_bgr, quality))
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, dec in enumerate(decoded):
            groups.setdefault(dec.shape, []).append(i)
        for idx in groups.values():
            up = _upsample_round_torch(np.stack([decoded[i] for i in idx]), height, width, images.device, work)
            out[torch.as_tensor(idx, device=images.device)] = up.to(out.dtype)

    def __call__(self, images: torch.Tensor, item_ids: Sequence[str], scale: float | None,
                 seed: int) -> tuple[torch.Tensor, DegradationParams]:
        params = self.sample_params(item_ids, scale, seed)
        return self.apply(images, params), params


@contextlib.contextmanager
def _torch_threads(n: int):
    """Set torch's intra-op thread count to ``n`` inside the block; yields the previous count."""
    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield old
    finally:
        if old != n:
            torch.set_num_threads(old)


def _upsample_round_cv2(bgr_u8: np.ndarray, height: int, width: int, work: torch.dtype) -> np.ndarray:
    """Steps 5-6 with OpenCV on the CPU: ``HxWx3`` RGB array of multiples of 1/255 in ``work`` precision."""
    import cv2

    np_dtype = np.float64 if work == torch.float64 else np.float32
    lq = cv2.cvtColor(bgr_u8, cv2.COLOR_BGR2RGB).astype(np_dtype) / np_dtype(255.0)
    up = cv2.resize(lq, (width, height), interpolation=cv2.INTER_LINEAR)
    np.multiply(up, np_dtype(255.0), out=up)
    np.rint(up, out=up)
    np.clip(up, 0, 255, out=up)
    np.divide(up, np_dtype(255.0), out=up)
    return up


def _upsample_round_torch(bgr_u8: np.ndarray, height: int, width: int, device: torch.device,
                          work: torch.dtype) -> torch.Tensor:
    """Steps 5-6 on ``device`` for ``[B, h, w, 3]`` uint8 BGR: ``[B, 3, H, W]`` RGB multiples of 1/255."""
    return _upsample_round_rgb(torch.from_numpy(bgr_u8).to(device).permute(0, 3, 1, 2).flip(1), height, width, work)


def _upsample_round_rgb(rgb_u8: torch.Tensor, height: int, width: int, work: torch.dtype) -> torch.Tensor:
    """Steps 5-6 for ``[B, 3, h, w]`` uint8 RGB on its device: ``[B, 3, H, W]`` multiples of 1/255."""
    up = resize_bilinear(rgb_u8.to(work) / 255.0, (height, width))
    return up.mul_(255.0).round_().clamp_(0, 255).div_(255.0)


_RANGE_SLACK = 1e-4  # resampled images may overshoot [0, 1] by float rounding


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ImageError(f"images must be a [B, 3, H, W] tensor, got {getattr(images, 'shape', type(images))}.")
    if not images.is_floating_point():
        raise TypeError(f"images must be float in [0, 1], got {images.dtype}; use images.float() / 255.")
    if images.numel():
        lo, hi = torch.aminmax(images)
        if float(lo) < -_RANGE_SLACK or float(hi) > 1.0 + _RANGE_SLACK:
            raise ImageError(f"images must lie in [0, 1], got values in [{float(lo):.4g}, {float(hi):.4g}] "
                             "(0-255 images need a division by 255).")


def degrade(images: torch.Tensor, item_ids: Sequence[str], scale: float | None, seed: int,
            preset: str = "difface-test") -> tuple[torch.Tensor, DegradationParams]:
    """Sample parameters for ``item_ids`` and degrade ``images`` ``[B, 3, H, W]``; returns ``(lq, params)``."""
    return Degradation(preset)(images, item_ids, scale, seed)

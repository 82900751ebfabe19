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
   exact up to float rounding. Off the CPU a whole batch takes the FFT route together, every kernel alike
   (:func:`blur_downsample_batch`).
3. Gaussian noise with sigma ``n`` in 0-255 units, per channel, then clip to [0, 1] (basicsr's
   ``add_gaussian_noise(clip=True, rounds=False)``). The noise for item *i* comes only from a CPU
   ``torch.Generator`` seeded with that item's ``noise_seed``, so batch size and device never change it.
4. JPEG at quality ``q`` with OpenCV, as basicsr's ``add_jpg_compression``: the image is rounded to uint8
   (half to even, like OpenCV's ``convertTo``), encoded with ``cv2.imencode('.jpg')`` in **BGR** channel order
   (so libjpeg's colour conversion and 4:2:0 chroma subsampling act on the same data as in the reference) and
   decoded with ``cv2.imdecode``. On the CPU OpenCV runs it; on other devices, by default, the same integer
   arithmetic runs on the device (:func:`restorever.jpeg.jpeg_roundtrip`, which gives OpenCV's bytes).
5. Bilinear back up to ``(H, W)`` (``cv2.resize`` semantics again).
6. Round to ``k/255`` and clip.

Parameters are sampled per item from a SHA-256 hash of ``(seed, scale, item_id)`` -- never Python's ``hash``
and never a shared random stream -- so the same item gets the same parameters and the same noise in any
batch, process or run. On the CPU every reduction (FFT, matrix product) runs on one item at a time; the device
path runs them on fixed-size chunks of :data:`BATCH_CHUNK` items (the last one padded), so their shapes, and hence
the libraries' algorithms, never depend on the batch. Either way pixels are bit-identical for any batch size on a
given device; across devices (and between the per-item CPU route and the batched route) the float arithmetic of
steps 1, 2 and 5 may differ in the last bit, which can move a rare pixel by one grey level. On the CPU the output
matches a plain OpenCV implementation of the reference to the byte on nearly every pixel
(``tests/test_degradation.py`` requires 99 % equal pixels and a mean difference below one grey level).

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

Layout: parameter sampling lives in :mod:`restorever.degradation_params`, the tensor operations in
:mod:`restorever.degradation_ops`, the :class:`Degradation` pipeline (CPU and device paths) here; every public name of
the two is importable from this module.
"""
from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch

from .degradation_ops import (BATCH_CHUNK, add_gaussian_noise, blur_downsample, blur_downsample_batch,
                              filter2d_reflect101, gaussian_kernels, jpeg_bgr, lr_size, resize_bilinear,
                              separable_factors)
from .degradation_params import (PRESETS, DegradationError, DegradationParams, DegradationPreset, get_preset,
                                 list_degradations, sample_params)
from .errors import ImageError
from .jpeg import jpeg_roundtrip

__all__ = [
    "BATCH_CHUNK",
    "Degradation",
    "DegradationError",
    "DegradationParams",
    "DegradationPreset",
    "PRESETS",
    "add_gaussian_noise",
    "blur_downsample",
    "blur_downsample_batch",
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


# ------------------------------------------------------------------------------------------------------ module
class Degradation:
    """Sample (:meth:`sample_params`) and apply (:meth:`apply`) one degradation preset.

    Example:
        >>> deg = Degradation("difface-test")
        >>> params = deg.sample_params(["Aaron_Peirsol_0001"], scale=16, seed=0)
        >>> lq = deg.apply(faces, params)        # faces: [1, 3, 512, 512] float in [0, 1], RGB
        >>> params.to_records()[0]["jpeg_quality"]
    """

    JPEG_BACKENDS = ("auto", "opencv", "torch", "torchvision")
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
        return sample_params(self.preset, item_ids, scale, seed)

    @staticmethod
    def noise(params: DegradationParams, index: int, shape: tuple[int, int, int], *,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """The standard-normal noise ``[C, h, w]`` float32 (CPU) of item ``index``; reproducible anywhere.

        ``out``: a contiguous float32 CPU tensor of ``shape`` to draw into (the same values); returned.
        """
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(params.noise_seed[index]))
        return torch.randn(shape, generator=gen, dtype=torch.float32, out=out)

    def apply(self, images: torch.Tensor, params: DegradationParams, *, jpeg: str = "auto") -> torch.Tensor:
        """Degrade ``images`` ``[B, 3, H, W]`` (float, [0, 1], RGB) with ``params`` (length ``B``).

        Pure: the output depends only on each item's pixels and parameters, never on the batch. Returns a
        tensor of the input's shape, dtype and device whose values are multiples of 1/255. Work is done in
        float32 (float64 for float64 input).

        On the CPU every item runs start to finish in one thread with torch's intra-op threads set to 1 for the
        duration of the call (restored afterwards); items run in parallel, one per available thread. That
        keeps results independent of the batch and of the thread count, and it stays fast on a busy machine
        where many small multi-threaded ops would wait on each other. On other devices blur, shrink, noise and
        the final enlargement (:func:`resize_bilinear`) run on the device, batched per low-resolution size
        (:func:`blur_downsample_batch`; the noise is drawn on CPU threads and copied once per size), and so
        does JPEG by default.

        ``jpeg`` chooses how step 4 runs; the first three give the same pixels from the same 8-bit input:

        * ``"auto"`` (default): ``"opencv"`` on the CPU, ``"torch"`` on other devices;
        * ``"opencv"``: OpenCV's libjpeg-turbo (the reference), on CPU threads whatever the device;
        * ``"torch"``: :func:`restorever.jpeg.jpeg_roundtrip`, libjpeg's integer arithmetic as tensor operations
          on the images' device, byte-identical to OpenCV (``tests/test_jpeg.py``); every device, the CPU
          included, then takes the batched device path;
        * ``"torchvision"``: ``torchvision.io.encode_jpeg``/``decode_jpeg``, the CPU only (it takes the device
          path; its libjpeg gives OpenCV's output). On CUDA (nvJPEG) it is refused: on one H200 (2026-12-04,
          ``scripts/bench_gpu.py``) its output differed from OpenCV's by up to 125 grey levels on 85-93 % of the
          pixels, so it is not the same degradation.
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
                                   "up to 125 grey levels on most pixels; use the default jpeg='auto'.")
        on_cpu = images.device.type == "cpu"
        if jpeg in ("auto", "opencv") and on_cpu:
            self._apply_cpu(images, params, kernels, work, out)
        else:
            group = {"auto": jpeg_roundtrip, "torch": jpeg_roundtrip, "opencv": _jpeg_group_opencv,
                     "torchvision": _jpeg_group_torchvision}[jpeg]
            self._apply_device(images, params, kernels, work, out, jpeg_group=group)
        return out

    def _low_res_bgr(self, image: torch.Tensor, params: DegradationParams, i: int, kernel: torch.Tensor,
                     work: torch.dtype) -> np.ndarray:
        """Steps 1-3 for item ``i``: ``h x w x 3`` uint8 BGR, rounded as ``cv2.imencode`` rounds ``img * 255``."""
        return self._low_res_u8(image, params, i, kernel, work).flip(0).permute(1, 2, 0).contiguous().cpu().numpy()

    def _low_res_u8(self, image: torch.Tensor, params: DegradationParams, i: int, kernel: torch.Tensor,
                    work: torch.dtype) -> torch.Tensor:
        """Steps 1-3 for item ``i`` on the image's device: ``[3, h, w]`` uint8 RGB (the CPU path's route)."""
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
            lq = jpeg_bgr(self._low_res_bgr(images[i], params, i, kernels[i], work), int(params.jpeg_quality[i]))
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

    def _apply_device(self, images, params, kernels, work, out, *, jpeg_group=None) -> None:
        """Steps 1-3 batched on the images' device, JPEG by ``jpeg_group`` (default :func:`_jpeg_group_opencv`),
        5-6 on the device. Any device, the CPU included (tests and benchmarks)."""
        height, width = images.shape[-2:]
        jpeg_group = jpeg_group or _jpeg_group_opencv
        for idx, small in self._low_res_groups(images, params, kernels, work):
            decoded = jpeg_group(small, params.jpeg_quality[idx].tolist())
            up = _upsample_round_rgb(decoded, height, width, work)
            out[torch.as_tensor(idx, device=images.device)] = up.to(out.dtype)

    def _low_res_groups(self, images: torch.Tensor, params: DegradationParams, kernels: torch.Tensor,
                        work: torch.dtype) -> list[tuple[list[int], torch.Tensor]]:
        """Steps 1-3 for every item, one group per low-resolution size: ``[(indices, [N, 3, h, w] uint8 RGB)]``.

        The values are :meth:`_low_res_u8`'s up to float rounding (the blur and shrink of
        :func:`blur_downsample_batch` sum in another order, so a rare pixel may round to the neighbouring level);
        the noise is the same to the bit. Tensors are on the images' device.
        """
        height, width = images.shape[-2:]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, s in enumerate(params.scale.tolist()):
            groups.setdefault(lr_size(height, width, float(s)), []).append(i)
        kernels = kernels.to(images.device)
        out = []
        for size, idx in groups.items():
            whole = len(idx) == images.shape[0]
            sel = None if whole else torch.as_tensor(idx, device=images.device)
            host = torch.empty((len(idx), 3, *size), dtype=torch.float32, pin_memory=images.device.type == "cuda")
            # the CPU draws the noise in threads (torch releases the GIL) while the device blurs
            with ThreadPoolExecutor(max_workers=min(_HOST_THREADS, len(idx))) as pool:
                drawn = [pool.submit(self.noise, params, i, (3, *size), out=host[k]) for k, i in enumerate(idx)]
                small = blur_downsample_batch(images.to(work) if whole else images.index_select(0, sel).to(work),
                                              kernels if whole else kernels.index_select(0, sel), size)
                for future in drawn:
                    future.result()
            noise = host.to(device=images.device, non_blocking=True).to(work)
            noisy = add_gaussian_noise(small, noise, params.noise_sigma[idx])
            out.append((idx, (noisy * 255.0).round_().clamp_(0, 255).to(torch.uint8)))
        return out

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


def _jpeg_group_opencv(u8: torch.Tensor, qualities: Sequence[int]) -> torch.Tensor:
    """Step 4 with OpenCV on host threads: ``[N, 3, h, w]`` uint8 RGB -> the decoded ``[N, 3, h, w]`` uint8
    RGB, on ``u8``'s device; item ``n`` at quality ``qualities[n]`` (encoded in BGR order, as the reference)."""
    host = list(u8.flip(1).permute(0, 2, 3, 1).contiguous().cpu().numpy())  # one device-to-host copy
    if len(host) < 4:
        decoded = [jpeg_bgr(a, q) for a, q in zip(host, qualities)]
    else:  # keep the device fed: OpenCV releases the GIL
        with ThreadPoolExecutor(max_workers=min(_HOST_THREADS, len(host))) as pool:
            decoded = list(pool.map(jpeg_bgr, host, qualities))
    return torch.from_numpy(np.stack(decoded)).to(u8.device).permute(0, 3, 1, 2).flip(1)


def _jpeg_group_torchvision(u8: torch.Tensor, qualities: Sequence[int]) -> torch.Tensor:
    """:func:`_jpeg_group_opencv` with ``torchvision.io`` (libjpeg on the CPU, nvJPEG on CUDA); RGB order."""
    from torchvision.io import decode_jpeg, encode_jpeg

    decoded: list[torch.Tensor | None] = [None] * len(qualities)
    by_quality: dict[int, list[int]] = {}
    for i, q in enumerate(qualities):
        by_quality.setdefault(int(q), []).append(i)
    for quality, idx in by_quality.items():
        encoded = encode_jpeg([u8[i] for i in idx], quality=quality)
        # encode_jpeg returns the bytes on the images' device; decode_jpeg reads bytes from host memory only
        # (and decodes on ``device``), so the few kilobytes of each stream come back to the host once
        for i, d in zip(idx, decode_jpeg([e.cpu() for e in encoded], device=u8.device)):
            decoded[i] = d
    return torch.stack([d.to(u8.device) for d in decoded])


def _upsample_round_rgb(rgb_u8: torch.Tensor, height: int, width: int, work: torch.dtype) -> torch.Tensor:
    """Steps 5-6 for ``[B, 3, h, w]`` uint8 RGB on its device: ``[B, 3, H, W]`` multiples of 1/255."""
    up = resize_bilinear(rgb_u8.to(work) / 255.0, (height, width))
    return up.mul_(255.0).round_().clamp_(0, 255).div_(255.0)


_HOST_THREADS = min(8, os.cpu_count() or 1)  # host threads for noise draws and OpenCV JPEG on the device path
_RANGE_SLACK = 1e-4  # resampled images may overshoot [0, 1] by float rounding


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ImageError(f"images must be a [B, 3, H, W] tensor, got {getattr(images, 'shape', type(images))}.")
    if not images.is_floating_point():
        raise TypeError(f"images must be float in [0, 1], got {images.dtype}; use images.float() / 255.")
    if images.numel():
        lo, hi = torch.aminmax(images.detach())  # no autograd warning for an input that requires grad
        if float(lo) < -_RANGE_SLACK or float(hi) > 1.0 + _RANGE_SLACK:
            raise ImageError(f"images must lie in [0, 1], got values in [{float(lo):.4g}, {float(hi):.4g}] "
                             "(0-255 images need a division by 255).")


def degrade(images: torch.Tensor, item_ids: Sequence[str], scale: float | None, seed: int,
            preset: str = "difface-test") -> tuple[torch.Tensor, DegradationParams]:
    """Sample parameters for ``item_ids`` and degrade ``images`` ``[B, 3, H, W]``; returns ``(lq, params)``."""
    return Degradation(preset)(images, item_ids, scale, seed)

"""What users pass as images -> one canonical form per image.

Accepted: file paths (``str`` / ``os.PathLike``), PIL images, ``HxWx3`` uint8 numpy arrays (RGB, or BGR with
``bgr=True`` for OpenCV users; ``HxW`` grey and ``HxWx4`` are accepted too), ``NxHxWx3`` uint8 arrays,
``[3, H, W]`` / ``[B, 3, H, W]`` torch tensors (float RGB in [0, 1], or uint8 0..255), or a list mixing these.

Every image becomes an :class:`ImageInput`: the uint8 RGB array the detector sees, the float ``[3, H, W]`` tensor
that is aligned, and a content id (sha256 of the pixels) that seeds the degradation when no item id is given. A
file decodes exactly as ``restorever eval`` decodes it, and an 8-bit image gives the same array and tensor whatever
form it came in, so it gets the same embedding (a PIL image's EXIF orientation is applied, as a file's decode does;
an alpha channel is dropped from the pixels, not composited; it is kept aside in :attr:`ImageInput.alpha` so
that :meth:`restorever.FacePipeline.restore` can hand it back).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ImageError

__all__ = ["ImageInput", "is_single_image", "flatten_images", "load_image"]


@dataclass(frozen=True, eq=False)
class ImageInput:
    """One image in canonical form.

    Attributes:
        array: ``HxWx3`` uint8 RGB (what the detector sees).
        tensor: ``[3, H, W]`` float32 RGB in [0, 1] (what is aligned; exactly ``array / 255`` for 8-bit inputs).
        source: a path or ``images[i]``, for messages.
        content_id: sha256 (hex) of the pixels of ``array`` and its shape.
        alpha: ``HxW`` uint8 transparency of a file, PIL image or ``HxWx4`` array, upright as ``array``; ``None``
            when the input has none or every pixel is opaque (it never enters ``content_id``).
    """

    array: np.ndarray
    tensor: Any
    source: str
    content_id: str
    alpha: np.ndarray | None = None


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "ndim") and hasattr(x, "dtype")


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.") and hasattr(x, "convert")


def is_single_image(x: Any) -> bool:
    """True when ``x`` is one image (a path, a PIL image, an ``HxW[xC]`` array or a ``[3, H, W]`` tensor)."""
    if isinstance(x, (str, os.PathLike)) or _is_pil(x):
        return True
    if isinstance(x, np.ndarray):
        return x.ndim in (2, 3)
    if _is_tensor(x):
        return x.ndim == 3
    return False


def flatten_images(images: Any, *, argument: str = "images") -> list[Any]:
    """Split ``images`` into a list of single images without decoding anything (batches become their items)."""
    if is_single_image(images):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        raise ImageError(f"{argument}: expected an HxWx3 array or an NxHxWx3 batch, got shape {images.shape}")
    if _is_tensor(images):
        if images.ndim == 4:
            return list(images.unbind(0))
        raise ImageError(f"{argument}: expected a [3, H, W] or [B, 3, H, W] tensor, got shape {tuple(images.shape)}")
    if isinstance(images, (list, tuple)):
        out: list[Any] = []
        for i, item in enumerate(images):
            if not is_single_image(item):
                out.extend(flatten_images(item, argument=f"{argument}[{i}]"))
            else:
                out.append(item)
        return out
    raise ImageError(f"{argument}: expected a file path, PIL image, uint8 numpy array, torch tensor or a list of "
                     f"them, got {type(images).__name__}")


def load_image(item: Any, *, bgr: bool = False, source: str = "images[0]") -> ImageInput:
    """Decode or convert one image (see the module docstring for the accepted forms)."""
    from ..images import pil_orientation, pil_to_rgb8, read_alpha, read_image, to_tensor, to_uint8, upright

    alpha = None
    if isinstance(item, (str, os.PathLike)):
        source = os.fspath(item)
        array = read_image(item)  # the same decoder as `restorever eval`
        tensor = to_tensor([array])[0]
        alpha = read_alpha(item)  # as `restorever restore` reads it
    elif _is_pil(item):
        try:  # upright and scaled as a file's decode makes it: EXIF orientation applied, 16-bit and float scaled
            up = upright(item, pil_orientation(item))
            array = np.ascontiguousarray(pil_to_rgb8(up))
            if up.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in up.info:
                alpha = np.asarray(up.convert("RGBA").getchannel("A"))
        except ValueError as exc:
            raise ImageError(f"{source}: {exc}") from exc
        tensor = to_tensor([array])[0]
    elif isinstance(item, np.ndarray):
        array = _from_numpy(item, bgr=bgr, source=source)
        tensor = to_tensor([array])[0]
        if item.ndim == 3 and item.shape[2] == 4:
            alpha = np.asarray(item[:, :, 3])
    elif _is_tensor(item):
        tensor = _from_tensor(item, source=source)
        if bgr:  # [3, H, W] in B, G, R order, as an OpenCV array moved to torch
            tensor = tensor.flip(0).contiguous()
        array = to_uint8(tensor[None])[0]
    else:
        raise ImageError(f"{source}: unsupported image type {type(item).__name__}")
    if min(array.shape[:2]) < 1:
        raise ImageError(f"{source}: empty image of shape {array.shape}")
    digest = hashlib.sha256(f"{array.shape}".encode() + array.tobytes()).hexdigest()
    if alpha is not None:
        alpha = None if bool((alpha == 255).all()) else np.ascontiguousarray(alpha)
    return ImageInput(array, tensor, source, digest, alpha)


def _from_numpy(a: np.ndarray, *, bgr: bool, source: str) -> np.ndarray:
    if a.dtype != np.uint8:
        raise ImageError(f"{source}: numpy images must be uint8 0..255, got {a.dtype}; pass float data as a torch "
                         f"tensor [3, H, W] in [0, 1]")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        hint = "; it looks channels-first: pass a.transpose(1, 2, 0)" if a.ndim == 3 and a.shape[0] in (3, 4) else ""
        raise ImageError(f"{source}: expected an HxWx3 uint8 array, got shape {a.shape}{hint}")
    a = a[:, :, :3]
    if bgr:
        a = a[:, :, ::-1]
    return np.ascontiguousarray(a)


def _from_tensor(t: Any, *, source: str):
    import torch

    if t.ndim != 3 or t.shape[0] != 3:
        hint = "; it looks channels-last: pass t.permute(2, 0, 1)" if t.ndim == 3 and t.shape[2] == 3 else ""
        raise ImageError(f"{source}: expected a [3, H, W] RGB tensor, got shape {tuple(t.shape)}{hint}")
    t = t.detach().to("cpu")
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    if not t.is_floating_point():
        raise ImageError(f"{source}: expected a float tensor in [0, 1] or uint8, got {t.dtype}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise ImageError(f"{source}: tensor holds NaN or infinite values")
    low, high = float(t.min()), float(t.max())
    if low < -1e-6 or high > 1 + 1e-6:
        fix = "map [-1, 1] data to [0, 1] with (t + 1) / 2" if low >= -1 - 1e-6 and high <= 1 + 1e-6 else \
            "divide 0..255 data by 255"
        raise ImageError(f"{source}: tensor values must lie in [0, 1] (RGB), got [{low:.3g}, {high:.3g}]; {fix}")
    return t.clamp(0.0, 1.0)

"""Image reading and validation (decode to RGB uint8, refuse absurd sizes, keep paths inside the data root)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .errors import DataNotFoundError, ImageError, UnsafePathError

MAX_PIXELS = 64_000_000  # refuse images larger than 64 megapixels (and absurd headers) before decoding
MIN_SIDE = 16


def safe_join(root: str | os.PathLike, relative: str, *, what: str = "path") -> Path:
    """Join ``relative`` to ``root`` refusing absolute paths, ``..`` components and symlinks that leave ``root``."""
    rel = str(relative).replace("\\", "/")
    if not rel or rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        raise UnsafePathError(f"{what} {relative!r} is absolute or empty; protocol paths must be relative to the data "
                              f"root {root}")
    if any(part == ".." for part in rel.split("/")):
        raise UnsafePathError(f"{what} {relative!r} contains '..' and would escape the data root {root}")
    if "\x00" in rel:
        raise UnsafePathError(f"{what} {relative!r} contains a NUL byte")
    root_path = Path(root)
    path = root_path / rel
    try:
        resolved = path.resolve()
        root_resolved = root_path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loops (RuntimeError before Python 3.13)
        raise UnsafePathError(f"{what} {relative!r} cannot be resolved: {exc}") from exc
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise UnsafePathError(f"{what} {relative!r} resolves to {resolved}, outside the data root {root_resolved} "
                              f"(a symlink leaving the root?)")
    return path


def decode_image(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to an ``HxWx3`` uint8 RGB array; raise :class:`ImageError` naming ``source``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_PIXELS or w < MIN_SIDE or h < MIN_SIDE:
                raise ImageError(f"{source}: image of {w}x{h} pixels refused (allowed: {MIN_SIDE}..{MAX_PIXELS} "
                                 f"pixels, sides >= {MIN_SIDE})")
            im.draft("RGB", (w, h))
            arr = np.asarray(im.convert("RGB"))
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ImageError(f"{source}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file to ``HxWx3`` uint8 RGB."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"{p}: image file not found") from exc
    except OSError as exc:
        raise ImageError(f"{p}: cannot read ({exc})") from exc
    return decode_image(data, source=str(p))


def to_tensor(images: list[np.ndarray]):
    """Stack equally sized ``HxWx3`` uint8 RGB arrays into a ``[B,3,H,W]`` float32 tensor in [0, 1]."""
    import torch

    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return batch.float().div_(255.0)


def to_uint8(images) -> np.ndarray:
    """``[B,3,H,W]`` float tensor in [0, 1] -> ``[B,H,W,3]`` uint8 RGB numpy (round half up)."""
    return (images.detach().clamp(0, 1).mul(255.0).add_(0.5).floor_().to("cpu").byte()
            .permute(0, 2, 3, 1).contiguous().numpy())

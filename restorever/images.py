"""Image reading and validation (decode to RGB uint8, refuse absurd sizes, keep paths inside the data root)."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import DataNotFoundError, ImageError, UnsafePathError

if TYPE_CHECKING:  # pragma: no cover
    import torch

MAX_PIXELS = 64_000_000  # refuse images larger than 64 megapixels (and absurd headers) before decoding
MIN_SIDE = 16
MAX_FILE_BYTES = 256 << 20  # an image file above 256 MiB is refused unread


def _open_fd(path: Path) -> int:
    """A read-only descriptor; non-blocking so that opening a FIFO cannot hang (the caller refuses non-files)."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))


def read_file_bytes(path: str | os.PathLike, *, max_bytes: int | None = None, what: str = "image") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``.

    Devices (``/dev/zero``), FIFOs, sockets and folders are refused before reading (a FIFO is opened non-blocking,
    so it cannot hang the run), and so is a file larger than ``max_bytes`` (default :data:`MAX_FILE_BYTES`); at
    most ``max_bytes + 1`` bytes are ever read, even from a file that grows meanwhile. Raises
    :class:`DataNotFoundError` (missing) or :class:`ImageError`.
    """
    import stat

    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    p = Path(path)
    try:
        fd = _open_fd(p)
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"{p}: {what} file not found") from exc
    except IsADirectoryError as exc:
        raise DataNotFoundError(f"{p}: is a folder, not an {what} file") from exc
    except OSError as exc:  # permission denied, EIO on a failing disk, ...
        raise ImageError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise DataNotFoundError(f"{p}: is a folder, not an {what} file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{p}: not a regular file (a device, FIFO or socket); refused")
        if st.st_size > max_bytes:
            raise ImageError(f"{p}: {st.st_size} bytes, more than the {max_bytes} allowed for an {what} file")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ImageError(f"{p}: grew beyond the {max_bytes} bytes allowed for an {what} file while read")
        return b"".join(chunks)
    except DataNotFoundError:  # an OSError too: the folder refusal above, not a failed read
        raise
    except OSError as exc:
        raise ImageError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)


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


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1..8) of encoded image bytes, read from the header only; 1 when there is none or
    it is unreadable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return pil_orientation(im)
    except Exception:  # noqa: BLE001 - a malformed header is decode_image's to report; here it means "no tag"
        return 1


def pil_orientation(im) -> int:
    """The EXIF orientation tag (1..8) of an opened Pillow image; 1 when there is none or it is unreadable."""
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - no EXIF block, or a broken one: "no tag"
        return 1
    return value if 1 <= value <= 8 else 1


def upright(im, orientation: int):
    """``im`` with the EXIF ``orientation`` applied (a photo stored sideways comes out upright; 1 returns ``im``).
    Raises ``ValueError`` when the tag is there but the transform fails."""
    from PIL import ImageOps

    if orientation == 1:
        return im
    try:
        return ImageOps.exif_transpose(im)
    except (ValueError, TypeError, KeyError, SyntaxError) as exc:
        raise ValueError(f"unreadable EXIF orientation ({type(exc).__name__}: {exc})") from exc


HIGH_DEPTH_MODES = ("I", "F")


def decode_tag(data: bytes) -> str | None:
    """``None`` for an image decoded as restorever always decoded it (8-bit, no EXIF rotation); otherwise a short
    tag naming what :func:`decode_image` now does differently (``orient=6``, ``mode=I;16``). It enters the
    landmark cache key, so entries computed before orientation and bit depth were handled are not reused for these
    images, while every other entry stays valid."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            mode = im.mode
    except Exception:  # noqa: BLE001 - undecodable: decode_image reports it
        return None
    parts = []
    orientation = exif_orientation(data)
    if orientation != 1:
        parts.append(f"orient={orientation}")
    if mode.startswith("I;16") or mode in HIGH_DEPTH_MODES:
        parts.append(f"mode={mode}")
    return ",".join(parts) or None


def pil_to_rgb8(im) -> np.ndarray:
    """``HxWx3`` uint8 RGB of a Pillow image; 16-bit and 32-bit integer and float images are scaled, not clipped:
    16-bit (``I;16*``, or ``I`` with values up to 65535) by 255/65535, float ``F`` in [0, 1] by 255 (in [0, 255]
    as is); other ranges are refused rather than guessed."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im).astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(f"{im.mode} image holds NaN or infinite values")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if im.mode == "F":
            if lo < -1e-6 or hi > 255.0 + 1e-6:
                raise ValueError(f"float image with values in [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255]")
            arr = arr * 255.0 if hi <= 1.0 else arr
        else:
            if lo < 0 or hi > 65535:
                raise ValueError(f"integer image with values in [{lo:g}, {hi:g}]; expected 0..255 or 0..65535")
            arr = arr / 257.0 if (im.mode.startswith("I;16") or hi > 255) else arr
        grey = np.clip(np.floor(arr + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(im.convert("RGB"))


def _check_size(w: int, h: int, source: str) -> None:
    if w * h > MAX_PIXELS or w < MIN_SIDE or h < MIN_SIDE:
        raise ImageError(f"{source}: image of {w}x{h} pixels refused (allowed: {MIN_SIDE}..{MAX_PIXELS} "
                         f"pixels, sides >= {MIN_SIDE})")


def header_decodes(data: bytes) -> bool:
    """Whether :func:`decode_image` can get past ``data``'s header: an image format Pillow reads, of an allowed
    size. No pixel is decoded (cheap enough for ``--dry-run`` over a whole dataset), so a truncated file passes
    here and fails in :func:`decode_image`."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            _check_size(*im.size, "")
    except Exception:  # noqa: BLE001 - anything decode_image would refuse (it names the cause)
        return False
    return True


def decode_image(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to an ``HxWx3`` uint8 RGB array; raise :class:`ImageError` naming ``source``.

    The EXIF orientation is applied (a phone photo stored sideways comes out upright), and 16-bit and float images
    are scaled to 8 bits (see :func:`pil_to_rgb8`)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            _check_size(w, h, source)
            im.draft("RGB", (w, h))
            try:
                oriented = upright(im, exif_orientation(data))
            except ValueError as exc:  # a tag was read, the transform failed
                raise ImageError(f"{source}: {exc}") from exc
            arr = pil_to_rgb8(oriented)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:  # its message names the in-memory buffer's address: not reproducible
        raise ImageError(f"{source}: cannot decode image (not an image format Pillow reads)") from exc
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ImageError(f"{source}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file to ``HxWx3`` uint8 RGB."""
    p = Path(path)
    return decode_image(read_file_bytes(p), source=str(p))


def read_alpha(path: str | os.PathLike) -> np.ndarray | None:
    """The ``HxW`` uint8 alpha (transparency) of an image file, upright as :func:`read_image` turns the colours;
    ``None`` when it has none or every pixel is opaque. :func:`read_image` drops it (the colours are kept as stored,
    never composited), so a caller that writes the image back can put it on again."""
    from PIL import Image

    p = Path(path)
    data = read_file_bytes(p)
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in im.info:
                return None
            alpha = np.asarray(upright(im, exif_orientation(data)).convert("RGBA").getchannel("A"))
    except Exception as exc:  # noqa: BLE001 - read_image has decoded it; a failure here is one line, not a guess
        raise ImageError(f"{p}: cannot read its alpha channel ({type(exc).__name__}: {exc})") from exc
    return None if bool((alpha == 255).all()) else np.ascontiguousarray(alpha)


def to_tensor(images: list[np.ndarray]):
    """Stack equally sized ``HxWx3`` uint8 RGB arrays into a ``[B,3,H,W]`` float32 tensor in [0, 1]."""
    import torch

    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return batch.float().div_(255.0)


def to_uint8(images) -> np.ndarray:
    """``[B,3,H,W]`` float tensor in [0, 1] -> ``[B,H,W,3]`` uint8 RGB numpy (round half up)."""
    return (images.detach().clamp(0, 1).mul(255.0).add_(0.5).floor_().to("cpu").byte()
            .permute(0, 2, 3, 1).contiguous().numpy())


_FACE_RANGE_SLACK = 1e-3  # float rounding of a resampled or restored face may leave [0, 1] by a hair


def check_faces(images: "torch.Tensor", size: int | None = 512, name: str = "images") -> None:
    """Check the public input contract of restorers and recognizers: float ``[B, 3, size, size]`` RGB in ``[0, 1]``
    (``size=None``: any height and width). Raises TypeError/ValueError naming ``name``."""
    import torch

    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name}: expected shape [B, 3, H, W], got {tuple(images.shape)}")
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        raise ValueError(f"{name}: expected {size}x{size} aligned faces, got {tuple(images.shape[-2:])}")
    if not images.is_floating_point():
        raise TypeError(f"{name}: expected a float tensor in [0, 1], got {images.dtype}")
    if images.numel():
        low, high = torch.stack(torch.aminmax(images.detach())).float().tolist()  # one reduction, one host sync
        if not (-_FACE_RANGE_SLACK <= low and high <= 1 + _FACE_RANGE_SLACK):  # NaN fails too
            raise ValueError(f"{name}: expected values in [0, 1], got {low:.4g} to {high:.4g}"
                             + (" (8-bit values? divide by 255)" if high > 2 else ""))

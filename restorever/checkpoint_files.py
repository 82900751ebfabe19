"""Reading checkpoint files safely: archive checks (sizes, CRC-32s), ``torch.load(weights_only=True)`` with errors
that say what a refused file is, unwrapping a state dict, strict loading into a module, and random stand-ins built
from a checkpoint manifest. :mod:`restorever.hub` finds the files; this module reads them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from .cache_dir import refetch_fix, weights_cache_name
from .errors import CheckpointLayoutError, WeightsNotFoundError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["check_archive", "check_archive_sizes", "load_error_summary", "load_error_message", "load_weights_only",
           "load_checkpoint", "load_state_dict_strict", "random_state_dict", "build_uninitialised", "MAX_EXPANSION"]


MAX_EXPANSION = 4  # a checkpoint's zip may declare at most 4x its size on disk (+ 64 MiB) uncompressed
_EXPANSION_SLACK = 64 << 20
_READ_CHUNK = 1 << 20  # bytes read at a time by the CRC-32 check


def check_archive(path: Path) -> None:
    """Check a zip-format checkpoint in one pass over its archive, before anything is unpickled:

    * its members must not *declare* far more bytes than the file holds (torch writes its members uncompressed, so
      a real checkpoint expands by a factor of about 1; a 1 MB deflate bomb declaring 1 GiB is refused before
      anything is decompressed);
    * each member's bytes must match the CRC-32 the archive records for it, so that a damaged file (a bad block, a
      partly overwritten copy) is refused instead of loading other tensors: a checkpoint's card may publish no
      sha256, and ``torch.load`` does not check CRCs. Members saved without one (CRC 0, as
      ``torch.serialization.set_crc32_options(False)`` writes them) are not checked.

    This reads the whole file once (about 0.1-0.2 s for 300 MB in the page cache; ``torch.load`` then reads it
    again, usually from the page cache). Legacy (non-zip) files carry no checksums and are left to the unpickler.
    Raises :class:`CheckpointLayoutError` naming the file, the damaged member and the fix."""
    import zipfile

    member = None
    try:
        if not zipfile.is_zipfile(path):  # may raise itself (BadZipFile on a multi-disk end record)
            return
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            declared = sum(max(info.file_size, 0) for info in infos)
            on_disk = path.stat().st_size
            if declared > MAX_EXPANSION * on_disk + _EXPANSION_SLACK:
                raise CheckpointLayoutError(
                    f"{path}: its members declare {declared} bytes uncompressed from {on_disk} bytes on disk (more "
                    f"than {MAX_EXPANSION}x + 64 MiB); refused before decompressing (a compression bomb, or not a "
                    f"torch checkpoint)")
            for info in infos:
                if info.CRC == 0:  # empty, or saved without a CRC: nothing to compare with
                    continue
                member = info.filename
                with zf.open(info) as fh:  # zipfile compares the CRC-32 when the member's last byte is read
                    while fh.read(_READ_CHUNK):
                        pass
    except CheckpointLayoutError:
        raise
    except Exception as exc:  # noqa: BLE001 - BadZipFile, struct.error, EOFError...: a damaged or hostile archive
        name = weights_cache_name(path)
        fix = refetch_fix(name) if name else ("download it again or copy it again from a good copy (`restorever "
                                               "weights add NAME FILE` then keeps it in the weights cache)")
        if member is None:
            problem = f"damaged zip archive ({type(exc).__name__}: {exc})"
        elif "CRC" in str(exc):
            problem = f"damaged file: zip member {member} fails its CRC-32 check (its bytes are not those saved)"
        else:
            problem = f"damaged file: zip member {member} cannot be read ({type(exc).__name__}: {exc})"
        raise CheckpointLayoutError(f"{path}: {problem}, so it is not a loadable weights-only checkpoint; "
                                    f"{fix}") from None


check_archive_sizes = check_archive  # its name before it also checked CRC-32s


#: first bytes of formats people pass by mistake -> what the file is
_FILE_KINDS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"), (b"%PDF-", "a PDF document"), (b"\x1f\x8b", "a gzip-compressed file (unpack it first)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive (unpack it first)"), (b"Rar!", "a RAR archive (unpack it first)"),
)


def _read_head(path: Path, size: int = 64) -> bytes | None:
    """The first ``size`` bytes of ``path``; None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError:
        return None


def _describe_head(head: bytes, *, known_only: bool) -> str | None:
    """What a file starting with ``head`` is, when that says it is no PyTorch checkpoint (``"it looks like a JPEG
    image, ..."``); None for torch's own formats (zip, pickle protocol 2+), and, with ``known_only``, for anything
    not recognised by its magic bytes."""
    if not head:
        return "it is an empty file"
    if head.startswith(b"PK") or head[:1] == b"\x80":  # torch's zip format, or a (legacy) pickle
        return None
    for magic, kind in _FILE_KINDS:
        if head.startswith(magic):
            return f"it looks like {kind}, not a PyTorch checkpoint"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page, not a PyTorch checkpoint: a download that got a web page instead of the file?"
    length = int.from_bytes(head[:8], "little")
    if len(head) > 9 and 0 < length < 100_000_000 and head[8:10] == b'{"':
        return "it looks like a safetensors file; restorever reads PyTorch checkpoints (.pth/.pt)"
    if known_only:
        return None
    for cut in range(4):  # a multi-byte character may be cut at the end of head
        try:
            text = head[:len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if all(c.isprintable() or c in "\t\r\n" for c in text):
            first = text.strip().splitlines()[0][:40] if text.strip() else ""
            return f"it is a text file starting with {first!r}, not a PyTorch checkpoint"
        break
    return f"it is not a PyTorch checkpoint: it starts with bytes {head[:8].hex(' ')}"


def load_error_summary(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused a file, without torch's advice to retry with
    ``weights_only=False`` (which would run the file's code).

    With ``path``, its first bytes say what a file that is no checkpoint at all is ("it is an empty file", "it looks
    like a JPEG image", "it is a text file", "it is a directory"); otherwise, for a pickle that needs code, the
    refused global; else torch's first line."""
    text = str(exc).strip()
    head = None
    if path is not None:
        if Path(path).is_dir():
            return "it is a directory"
        head = _read_head(Path(path))
        described = None if head is None else _describe_head(head, known_only=True)
        if described:
            return described
    if "weights only load failed" in text.lower() or "weights_only" in text:
        lines = [line.strip() for line in text.splitlines()]
        for line in lines:
            if "GLOBAL" in line or ("nsupported" in line and "operand" not in line):
                return f"it needs code to be unpickled: {line}"
        operand = next((line for line in lines if "Unsupported operand" in line), None)
        if operand is not None:  # an opcode the weights-only unpickler lacks: no pickle, another pickle, damage
            described = _describe_head(head, known_only=False) if head is not None else None
            if described:
                return described
            if head is not None and head[:1] == b"\x80":
                return f"it is a pickle the weights-only loader cannot read (not a torch.save file?): {operand}"
            return f"its pickled data is damaged or not weights-only: {operand}"
        return "it needs code to be unpickled (not a weights-only file)"
    if head is not None:
        described = _describe_head(head, known_only=False)
        if described:
            return described
    return text.splitlines()[0] if text else type(exc).__name__


def load_error_message(path: Path, exc: BaseException) -> str:
    """The one-line :class:`CheckpointLayoutError` message for a file ``torch.load(weights_only=True)`` refused:
    the file, what it is (:func:`load_error_summary`) and, for a file in the weights cache, how to replace it."""
    summary = load_error_summary(exc, path)
    message = f"{path}: not a loadable weights-only checkpoint ({summary})"
    if summary.startswith("it needs code"):
        message += "; restorever never unpickles code"
    name = weights_cache_name(path)
    return message + (f"; {refetch_fix(name)}" if name else "")


def load_weights_only(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU after :func:`check_archive` (sizes and CRC-32s); any
    failure is one :class:`CheckpointLayoutError` line naming the file and what it is."""
    import torch

    path = Path(path)
    check_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a malformed file can fail anywhere inside torch.load (struct.error, AssertionError...)
        raise CheckpointLayoutError(load_error_message(path, exc)) from exc


def load_checkpoint(
    path: str | os.PathLike,
    *,
    keys: tuple[str, ...] = ("params_ema", "params", "state_dict", "model"),
    strip_prefix: str | None = "module.",
) -> dict[str, "torch.Tensor"]:
    """Load a checkpoint safely and return a flat ``{name: tensor}`` state_dict.

    Uses ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused with
    :class:`CheckpointLayoutError`. Unwraps the first of ``keys`` present, then strips ``strip_prefix``.
    """

    import torch

    path = Path(path)
    if path.is_dir():
        raise WeightsNotFoundError(f"{path}: is a directory, not a checkpoint file; pass the file itself")
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: checkpoint file not found")
    obj = load_weights_only(path)
    if isinstance(obj, dict):
        for key in keys:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointLayoutError(f"{path}: expected a state_dict of tensors (optionally under one of {keys})")
    if strip_prefix and obj and all(k.startswith(strip_prefix) for k in obj):
        obj = {k[len(strip_prefix):]: v for k, v in obj.items()}
    return dict(obj)


def load_state_dict_strict(module: "torch.nn.Module", state_dict: Mapping[str, "torch.Tensor"], *,
                           source: str, show: int = 5) -> None:
    """Load ``state_dict`` into ``module`` requiring identical keys, shapes and kinds of dtype.

    Raises :class:`CheckpointLayoutError` naming ``source`` and the first ``show`` missing keys, unexpected keys,
    shape mismatches and entries whose tensor is not floating-point (int8, bool...) where the module's is (such a
    tensor would be cast silently by ``load_state_dict``, or refused with a bare traceback by ``assign=True``).
    Floating tensors of another precision (float16 for float32) are accepted.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                  if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    not_float = [f"{k} {str(state_dict[k].dtype).replace('torch.', '')} for {str(v.dtype).replace('torch.', '')}"
                 for k, v in expected.items() if k in state_dict and _is_float(v) and not _is_float(state_dict[k])]
    if missing or unexpected or mismatched or not_float:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:show])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:show])})")
        if mismatched:
            parts.append(f"{len(mismatched)} of wrong shape (e.g. {'; '.join(mismatched[:show])})")
        if not_float:
            parts.append(f"{len(not_float)} not floating-point where {type(module).__name__} has floating-point "
                         f"entries (e.g. {'; '.join(not_float[:show])}; a quantized or damaged file? use the "
                         f"released floating-point checkpoint)")
        raise CheckpointLayoutError(
            f"{source}: checkpoint layout does not match {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(dict(state_dict), strict=True)


def _is_float(tensor: Any) -> bool:
    """True for a floating-point or complex tensor."""
    return bool(tensor.is_floating_point() or tensor.is_complex())


def random_state_dict(entries: Iterable[Sequence[Any]], *, seed: int = 0) -> dict[str, "torch.Tensor"]:
    """A state dict with the keys and shapes of a checkpoint manifest (``[key, shape, ...]`` rows), filled with
    random values a network can run on: N(0, 0.02) weights, running variances in [0.5, 1.5), zero batch counters.
    For benchmarks and tests of the loading path (speed does not depend on weight values); never a model."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, *_ in entries:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.02
    return state


def build_uninitialised(cls: "Callable[..., torch.nn.Module]", *args: Any, **kwargs: Any) -> "torch.nn.Module":
    """Build a module on the CPU without running its random initialisation (every entry is loaded next): built on
    the meta device, then given uninitialised CPU storage."""
    import torch

    with torch.device("meta"):
        module = cls(*args, **kwargs)
    return module.to_empty(device="cpu")

"""The ``insightface-bin`` format: an insightface verification ``.bin`` (a pickled list of encoded images with a
same/different list: ``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``), read with a restricted unpickler."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataNotFoundError, ProtocolError
from .base import FormatCard, PairList, Protocol


def _bytes_from_buffer(*args):
    """``bytes``/``bytearray`` as a pickle may call them, but only on bytes-like data (never ``bytes(N)``)."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray, memoryview)):
        return bytes(args[0])
    raise pickle.UnpicklingError("refused bytes(...) with a non-bytes argument (a size would allocate memory)")


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only what an insightface ``.bin`` holds: lists/tuples of bytes and bools (and numpy bool arrays)."""

    ALLOWED = {
        ("_codecs", "encode"),
        ("builtins", "bytes"), ("builtins", "bytearray"), ("builtins", "bool"),
        ("__builtin__", "bytes"), ("__builtin__", "bytearray"), ("__builtin__", "bool"),  # protocol < 3 pickles
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # numpy arrays, protocol 5
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a .bin file may only hold encoded "
                                         f"images and a same/different list")
        if name in ("bytes", "bytearray"):  # bytes(N) would allocate N bytes from a few bytes of pickle
            return _bytes_from_buffer
        return super().find_class(module, name)


def read_insightface_bin(path: str | os.PathLike, n_folds: int = 10) -> tuple[PairList, list[bytes]]:
    """Read an insightface verification ``.bin`` (``(bins, issame_list)``): image ``2i`` and ``2i+1`` form pair ``i``.
    Folds are contiguous blocks, as insightface's evaluation splits them (KFold without shuffling)."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block, a device would never end
        raise ProtocolError(f"{path}: not a regular file; pass the .bin file itself")
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(fh, encoding="bytes").load()
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"{path}: .bin file not found") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            UnicodeDecodeError, MemoryError, OverflowError, LookupError) as exc:
        raise ProtocolError(f"{path}: not a valid insightface .bin ({type(exc).__name__}: {exc})") from exc
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise ProtocolError(f"{path}: expected a pickled (images, issame_list) pair")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not all(isinstance(x, (bytes, bytearray)) for x in bins):
        raise ProtocolError(f"{path}: the image list must hold encoded image bytes")
    try:
        issame_arr = np.asarray(issame)
        valid_labels = issame_arr.ndim == 1 and issame_arr.dtype.kind in "biu" and bool(
            np.all(np.isin(issame_arr, (0, 1))))
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError):
        valid_labels = False
    if not valid_labels:
        raise ProtocolError(f"{path}: the same/different list must be a flat list of booleans")
    if len(bins) != 2 * issame_arr.size or issame_arr.size == 0:
        raise ProtocolError(f"{path}: {len(bins)} images for {issame_arr.size} pairs; expected two images per pair")
    n = issame_arr.size
    k = max(1, min(n_folds, n))
    fold = np.minimum(np.arange(n) * k // n, k - 1)
    pairs = PairList([f"bin:{2 * i}" for i in range(n)], [f"bin:{2 * i + 1}" for i in range(n)],
                     issame_arr.astype(np.int64), fold.astype(np.int64), list(range(n)))
    return pairs, [bytes(x) for x in bins]


def create(name: str, spec: dict, *, pairs: str | os.PathLike | None = None, **_: object) -> Protocol:
    """Load the ``.bin`` given as ``pairs`` (``--pairs FILE.bin``; required). No data root: the images are inside."""
    if pairs is None:
        raise ProtocolError(f"protocol {spec['protocol']}: pass the .bin file with --pairs FILE")
    pair_list, blobs = read_insightface_bin(pairs, n_folds=int(spec.get("folds", 10)))

    def read_bin(item: str) -> bytes:
        return blobs[int(item.split(":", 1)[1])]

    return Protocol(spec["protocol"], spec, None, pair_list, read_bin, source=str(pairs))


CARDS = {"insightface-bin": FormatCard(
    "insightface-bin", "verification", "insightface verification .bin (--pairs FILE.bin; no data root)",
    dataset_keys=frozenset({"pairs"}), uses_data_root=False)}

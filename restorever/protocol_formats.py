"""The pair-list formats a protocol names: ``lfw-pairs`` (the official LFW ``pairs*.txt``), ``pairs-csv``
(``path_a,path_b,same[,fold]``) and ``insightface-bin`` (a pickled list of encoded images with a same/different list,
read with a restricted unpickler), each parsed into a :class:`PairList`; plus the bounded text reader they share."""
from __future__ import annotations

import csv
import io
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DataNotFoundError, ProtocolError, UnsafePathError



LFW_IMAGE_FOLDERS = ("lfw", "lfw-deepfunneled", "lfw_funneled")


@dataclass
class PairList:
    """Pairs as parallel arrays. ``a``/``b`` are image ids (paths relative to the data root, or ``bin:INDEX``);
    ``same`` is 1 for the same person; ``fold`` is the fold index of each pair; ``lines`` the source line numbers."""

    a: list[str]
    b: list[str]
    same: np.ndarray
    fold: np.ndarray
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.a)

    def images(self) -> list[str]:
        """Distinct image ids, in order of first appearance."""
        return list(dict.fromkeys([*self.a, *self.b]))

    def subset(self, index: Sequence[int] | np.ndarray) -> "PairList":
        idx = np.asarray(index, dtype=int)
        return PairList([self.a[i] for i in idx], [self.b[i] for i in idx], self.same[idx], self.fold[idx],
                        [self.lines[i] for i in idx] if self.lines else [])


def pairs_digest(a: Sequence[str], b: Sequence[str], same: Sequence[int], fold: Sequence[int]) -> str:
    """sha256 of a set of pairs with their labels and folds, independent of order (the rows are sorted), so that
    the scored pairs plus the skipped ones of a run digest to the same value as the pairs it was asked to run."""
    import hashlib
    import json

    rows = sorted(json.dumps([str(x), str(y), int(s), int(f)]) for x, y, s, f in zip(a, b, same, fold))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def parse_lfw_pairs(text: str, *, source: str = "pairs.txt") -> tuple[list[tuple], int, int]:
    """Parse an LFW pairs file.

    Accepts tabs or spaces, CRLF or LF, a trailing newline or none. The header is either ``N`` (one set of N matched
    then N mismatched pairs, as ``pairsDevTrain.txt``) or ``FOLDS N`` (``pairs.txt``: per fold N matched then N
    mismatched). The header is checked against the content.

    Returns:
        ``(rows, n_folds, n_per_fold)`` with rows ``(name_a, num_a, name_b, num_b, same, fold, line_no)``.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ProtocolError(f"{source}: empty pairs file")
    header = lines[0].split()
    try:
        numbers = [int(x) for x in header]
    except ValueError:
        raise ProtocolError(f"{source}:1: header must be 'N' or 'FOLDS N', got {lines[0]!r}") from None
    if len(numbers) == 1:
        n_folds, per_fold = 1, numbers[0]
    elif len(numbers) == 2:
        n_folds, per_fold = numbers
    else:
        raise ProtocolError(f"{source}:1: header must be 'N' or 'FOLDS N', got {lines[0]!r}")
    if n_folds < 1 or per_fold < 1:
        raise ProtocolError(f"{source}:1: header counts must be positive, got {lines[0]!r}")
    body = lines[1:]
    expected = n_folds * 2 * per_fold
    if len(body) != expected:
        raise ProtocolError(f"{source}: header says {n_folds} fold(s) x 2 x {per_fold} = {expected} pairs, "
                            f"the file has {len(body)} pair lines")
    rows = []
    for i, line in enumerate(body):
        line_no = i + 2
        fields = line.split()
        fold, within = divmod(i, 2 * per_fold)
        same = within < per_fold
        try:
            if same:
                if len(fields) != 3:
                    raise ValueError("a matched pair needs 'name n1 n2'")
                name, n1, n2 = fields
                row = (name, int(n1), name, int(n2))
            else:
                if len(fields) != 4:
                    raise ValueError("a mismatched pair needs 'name1 n1 name2 n2'")
                name1, n1, name2, n2 = fields
                row = (name1, int(n1), name2, int(n2))
        except ValueError as exc:
            kind = "matched" if same else "mismatched"
            raise ProtocolError(f"{source}:{line_no}: expected a {kind} pair (fold {fold + 1}): {exc}; "
                                f"got {line.strip()!r}") from None
        if row[1] < 1 or row[3] < 1:
            raise ProtocolError(f"{source}:{line_no}: image numbers start at 1, got {line.strip()!r}")
        if not same and row[0] == row[2]:
            raise ProtocolError(f"{source}:{line_no}: a mismatched pair names the same person twice")
        rows.append((*row, int(same), fold, line_no))
    return rows, n_folds, per_fold
_LFW_NAME = re.compile(r"^[^/\\\x00]+$")


def lfw_image_path(folder: str, name: str, number: int) -> str:
    if not _LFW_NAME.match(name) or name in (".", ".."):
        raise UnsafePathError(f"LFW name {name!r} is not a plain folder name")
    return f"{folder}/{name}/{name}_{number:04d}.jpg"


def find_lfw_image_folder(root: Path, candidates: Sequence[str] = LFW_IMAGE_FOLDERS) -> str:
    for folder in candidates:
        if (root / folder).is_dir():
            return folder
    raise DataNotFoundError(
        f"{root}: no LFW image folder (looked for {', '.join(candidates)}); expected layout:\n"
        f"  {root}/pairs.txt\n  {root}/lfw-deepfunneled/NAME/NAME_0001.jpg\n"
        f"pass the folder with --data-root DIR or set RESTOREVER_DATA")


def load_lfw_pairs(root: Path, files: Sequence[Path], folders: Sequence[str] = LFW_IMAGE_FOLDERS) -> PairList:
    """Pairs of one or more LFW pairs files; with several files (View 1: train, test) each file is one fold."""
    folder = find_lfw_image_folder(root, folders)
    a, b, same, fold, lines = [], [], [], [], []
    for file_index, path in enumerate(files):
        if not path.is_file():
            raise DataNotFoundError(f"{path}: pairs file not found (pass --data-root DIR holding {path.name})")
        rows, _, _ = parse_lfw_pairs(read_text_file(path), source=str(path))
        for n1, i1, n2, i2, s, f, line_no in rows:
            a.append(lfw_image_path(folder, n1, i1))
            b.append(lfw_image_path(folder, n2, i2))
            same.append(s)
            fold.append(file_index if len(files) > 1 else f)
            lines.append(line_no)
    return PairList(a, b, np.asarray(same, dtype=np.int64), np.asarray(fold, dtype=np.int64), lines)
MAX_TEXT_BYTES = 256 << 20  # a pairs or list file above 256 MiB is refused unread


def read_text_file(path: Path, *, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A pairs/list file as text: UTF-8 with or without a byte-order mark; anything else (Latin-1, UTF-16, binary) is
    a :class:`ProtocolError` naming the file and the fix."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ProtocolError(f"{path}: {size} bytes, more than the {max_bytes} allowed for a pairs file")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"{path}: file not found") from exc
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{path}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); save it as "
                            f"UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def csv_rows(reader, source: str):
    """``(line_no, row)`` pairs; a malformed row (stray CR, a field over the size limit) is a ProtocolError."""
    line_no = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ProtocolError(f"{source}:{reader.line_num or line_no + 1}: malformed CSV row ({exc})") from None
        line_no = reader.line_num
        yield line_no, row


def _is_header(row: list[str]) -> bool:
    """A first row naming the columns (``path_a,path_b,same``): its label column is a column name and its path
    columns do not look like file names."""
    return (len(row) >= 3 and row[2].strip().lower() in ("same", "label", "issame", "is_same")
            and not any("." in c or "/" in c for c in row[:2]))
MAX_FOLD_LABEL = 1_000_000
_TRUE = {"1", "true", "same", "yes", "y", "t"}
_FALSE = {"0", "false", "different", "diff", "no", "n", "f"}


def parse_pairs_csv(text: str, *, source: str = "pairs.csv", n_folds: int = 10) -> PairList:
    """Parse ``path_a,path_b,same[,fold]`` (an optional header row naming these columns is skipped).

    Without a fold column, folds are assigned round-robin within each class so every fold holds both classes when
    possible (``min(n_folds, pairs per class)`` folds).
    """
    reader = csv.reader(io.StringIO(text.replace("\r\n", "\n")))
    a, b, same, fold, lines = [], [], [], [], []
    has_fold = None
    for line_no, row in csv_rows(reader, source):
        row = [c.strip() for c in row]
        if not row or all(not c for c in row) or row[0].startswith("#"):
            continue
        if line_no == 1 and _is_header(row):
            continue
        if len(row) not in (3, 4):
            raise ProtocolError(f"{source}:{line_no}: expected 'path_a,path_b,same[,fold]', got {len(row)} fields")
        if has_fold is None:
            has_fold = len(row) == 4
        elif has_fold != (len(row) == 4):
            raise ProtocolError(f"{source}:{line_no}: every row must have a fold column, or none must")
        label = row[2].lower()
        if label in _TRUE:
            s = 1
        elif label in _FALSE:
            s = 0
        else:
            raise ProtocolError(f"{source}:{line_no}: 'same' must be 1/0 or true/false, got {row[2]!r}")
        if not row[0] or not row[1]:
            raise ProtocolError(f"{source}:{line_no}: empty image path")
        if has_fold:
            try:
                value = int(row[3])
                if abs(value) > MAX_FOLD_LABEL:
                    raise ValueError
            except ValueError:
                raise ProtocolError(f"{source}:{line_no}: fold must be an integer from -{MAX_FOLD_LABEL} to "
                                    f"{MAX_FOLD_LABEL}, got {row[3][:40]!r}") from None
            fold.append(value)
        a.append(row[0])
        b.append(row[1])
        same.append(s)
        lines.append(line_no)
    if not a:
        raise ProtocolError(f"{source}: no pairs")
    same_arr = np.asarray(same, dtype=np.int64)
    if has_fold:
        fold_arr = np.asarray(fold, dtype=np.int64)
    else:
        n_pos, n_neg = int(same_arr.sum()), int((1 - same_arr).sum())
        k = max(1, min(n_folds, min(n_pos, n_neg) if min(n_pos, n_neg) > 0 else max(n_pos, n_neg)))
        fold_arr = np.zeros(len(a), dtype=np.int64)
        for label in (0, 1):
            idx = np.where(same_arr == label)[0]
            fold_arr[idx] = np.arange(idx.size) % k
    return PairList(a, b, same_arr, fold_arr, lines)


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

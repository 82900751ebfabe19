"""Protocols: which image pairs to compare, whether each pair is the same person, and the folds.

A protocol is declared in YAML (``protocols/*.yaml``, shipped in the wheel as ``restorever.protocols``) and names a
*format* whose parser turns files under a data root into a :class:`PairList`. Formats: ``lfw-pairs`` (the official
LFW ``pairs*.txt``), ``pairs-csv`` (``path_a,path_b,same[,fold]``) and ``insightface-bin`` (a pickled list of encoded
images with a same/different list, read with a restricted unpickler).
"""
from __future__ import annotations

import csv
import io
import logging
import os
import pickle
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import DataNotFoundError, ProtocolError, UnsafePathError
from .images import read_file_bytes, safe_join

logger = logging.getLogger(__name__)

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


@dataclass
class Protocol:
    """A loaded protocol: its pairs and how to read each image's bytes."""

    name: str
    spec: dict[str, Any]
    root: Path | None
    pairs: PairList
    read_bytes: Callable[[str], bytes]
    source: str = ""

    @property
    def n_folds(self) -> int:
        return int(np.unique(self.pairs.fold).size)


# ---------------------------------------------------------------------------------------------------- LFW pairs files

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


# ---------------------------------------------------------------------------------------------------- pairs CSV

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


# ---------------------------------------------------------------------------------------------------- insightface .bin

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


# ---------------------------------------------------------------------------------------------------- YAML specs

def protocol_search_path(include_path: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Folders searched for ``NAME.yaml``: ``include_path``, ``$RESTOREVER_PROTOCOL_PATH``, the installed package."""
    paths = [Path(p) for p in include_path]
    env = os.environ.get("RESTOREVER_PROTOCOL_PATH")
    if env:
        paths += [Path(p) for p in env.split(os.pathsep) if p]
    paths += shipped_protocol_dirs()
    return paths


def shipped_protocol_dirs() -> list[Path]:
    """The folders of the ``restorever.protocols`` data package (``protocols/`` in a checkout, shipped in the wheel).

    Read from the import system's search locations, which works for editable and regular installs alike (a
    ``str()`` of ``importlib.resources.files`` does not name a folder when the package is spread over several)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("restorever.protocols")
    except (ModuleNotFoundError, ValueError):
        spec = None
    dirs = [Path(p) for p in (spec.submodule_search_locations or [])] if spec is not None else []
    checkout = Path(__file__).resolve().parent.parent / "protocols"  # source tree run without any install
    if checkout.is_dir() and checkout not in dirs:
        dirs.append(checkout)
    return dirs


def list_protocols(include_path: Sequence[str | os.PathLike] = ()) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in protocol_search_path(include_path):
        if folder.is_dir():
            for f in sorted(folder.glob("*.yaml")):
                found.setdefault(f.stem, f)
    return found


def load_spec(name_or_path: str, include_path: Sequence[str | os.PathLike] = (),
              _seen: frozenset = frozenset()) -> tuple[dict, Path]:
    """Load a protocol YAML by name or path, resolving ``include:`` (a base spec the file extends)."""
    import yaml

    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        available = list_protocols(include_path)
        if name_or_path not in available:
            import difflib

            close = difflib.get_close_matches(name_or_path, list(available), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ProtocolError(f"unknown protocol {name_or_path!r}{hint} (known: {', '.join(sorted(available))})")
        path = available[name_or_path]
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read ({exc})") from exc
    if size > MAX_SPEC_BYTES:
        raise ProtocolError(f"{path}: {size} bytes, more than the {MAX_SPEC_BYTES} allowed for a protocol file")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OverflowError, ValueError, RecursionError) as exc:  # UnicodeDecodeError: a ValueError
        raise ProtocolError(f"{path}: invalid YAML ({type(exc).__name__}: {exc})") from exc
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(spec, dict):
        raise ProtocolError(f"{path}: a protocol file must be a mapping")
    if "include" in spec:
        include = spec.pop("include")
        if not isinstance(include, str) or not include.strip():
            raise ProtocolError(f"{path}: include must name one YAML file, got {include!r}")
        seen = set(_seen) | {path.resolve()}
        target = (path.parent / include).resolve()
        if target in seen:
            raise ProtocolError(f"{path}: include {include!r} forms a cycle")
        base, _ = load_spec(str(target), include_path, _seen=frozenset(seen))
        spec = _merge(base, spec)
    validate_spec(spec, source=str(path))
    return spec, path


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


FORMATS = ("lfw-pairs", "pairs-csv", "insightface-bin", "lfw-ident")


MAX_SPEC_BYTES = 1 << 20  # a protocol YAML above 1 MiB is refused unread
#: a protocol name: it names a folder under the cache (``<cache>/data/<protocol>``), so it must be a plain slug
PROTOCOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: one component of a download's file name (``archive.tgz``, or ``sub/archive.tgz`` one folder deep)
_FILE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
#: URL schemes a protocol may download from (the official LFW host serves plain http; the sha256 guards content)
DOWNLOAD_SCHEMES = ("https", "http")
MAX_FOLDS = 1000


def download_filename_problem(filename: Any) -> str | None:
    """Why ``filename`` is not a safe download target inside ``<cache>/data/<protocol>/`` (None when it is): a plain
    relative name, at most one sub-folder deep, of letters, digits and ``._+-`` (no ``..``, no absolute path)."""
    if not isinstance(filename, str) or not filename:
        return f"filename must be a plain file name, got {filename!r}"
    parts = filename.split("/")
    if "\\" in filename or len(parts) > 2 or not all(_FILE_PART.match(p) and p not in (".", "..") for p in parts) \
            or any(".." in p for p in parts):
        return (f"filename {filename[:80]!r} must be a plain file name inside the download folder (letters, "
                f"digits, '._+-', at most one sub-folder; no absolute path, no '..')")
    return None


def download_url_problem(url: Any) -> str | None:
    """Why ``url`` may not be downloaded from (None when it may): only http(s) URLs with a host."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or any(c.isspace() for c in url):
        return f"url must be an http(s) URL, got {url!r}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"url {url!r} is malformed"
    if parts.scheme.lower() not in DOWNLOAD_SCHEMES or not parts.netloc:
        return f"url {url!r} must be an http(s) URL with a host (file://, ftp:// and others are refused)"
    return None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def validate_spec(spec: dict, *, source: str) -> None:
    """Check a protocol spec without reading any data (run at load time by every command, ``--dry-run`` included).

    The protocol name, ``folds``, ``alignment`` and every ``dataset.download`` entry are checked here because they
    become folder names, array sizes and files written under the cache."""
    for key in ("protocol", "dataset"):
        if key not in spec:
            raise ProtocolError(f"{source}: missing key {key!r}")
    name = spec["protocol"]
    if not isinstance(name, str) or not PROTOCOL_NAME.match(name):
        raise ProtocolError(f"{source}: protocol must be a name of letters, digits, '.', '_' or '-' (it names a "
                            f"folder of the cache), got {str(name)[:60]!r}")
    if "folds" in spec and not (_positive_int(spec["folds"]) and spec["folds"] <= MAX_FOLDS):
        raise ProtocolError(f"{source}: folds must be a positive integer (at most {MAX_FOLDS}), got "
                            f"{str(spec['folds'])[:60]}")
    alignment = spec.get("alignment")
    if alignment is not None:
        if not isinstance(alignment, dict):
            raise ProtocolError(f"{source}: alignment must be a mapping (e.g. {{fallback_landmarks: [[x, y], ...]}}), "
                                f"got {str(alignment)[:60]}")
        if "fallback_landmarks" in alignment:
            pts = alignment["fallback_landmarks"]
            ok = isinstance(pts, list) and len(pts) == 5 and all(
                isinstance(p, list) and len(p) == 2 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in p)
                for p in pts)
            if not ok:
                raise ProtocolError(f"{source}: alignment.fallback_landmarks must be five [x, y] pixel points, got "
                                    f"{str(pts)[:60]}")
    ds = spec["dataset"]
    if not isinstance(ds, dict) or ds.get("format") not in FORMATS:
        raise ProtocolError(f"{source}: dataset.format must be one of {', '.join(FORMATS)}")
    if ds["format"] == "lfw-pairs":
        pairs = ds.get("pairs")
        if not pairs or not all(isinstance(p, str) for p in (pairs if isinstance(pairs, list) else [pairs])):
            raise ProtocolError(f"{source}: dataset.pairs must name the pairs file(s)")
    images = ds.get("images")
    if images is not None and not (isinstance(images, list) and images and all(
            isinstance(f, str) and f.strip() for f in images)):
        raise ProtocolError(f"{source}: dataset.images must be a non-empty list of folder names, got "
                            f"{str(images)[:60]}")
    downloads = ds.get("download")
    if downloads is not None:
        if not isinstance(downloads, list):
            raise ProtocolError(f"{source}: dataset.download must be a list of {{filename, url, sha256}} entries")
        for i, item in enumerate(downloads):
            if not isinstance(item, dict):
                raise ProtocolError(f"{source}: dataset.download[{i}] must be a mapping {{filename, url, sha256}}")
            problem = download_filename_problem(item.get("filename")) or download_url_problem(item.get("url"))
            sha = item.get("sha256")
            if problem is None and sha is not None and not (
                    isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
                problem = f"sha256 must be null or 64 lower-case hex digits, got {str(sha)[:70]!r}"
            if problem:
                raise ProtocolError(f"{source}: dataset.download[{i}]: {problem}")


# ---------------------------------------------------------------------------------------------------- data root

def resolve_data_root(spec: dict, data_root: str | os.PathLike | None, *, download: bool | None = None) -> Path:
    """Find the folder holding a protocol's data: ``data_root``, then ``$RESTOREVER_DATA``, then the cache dir
    (``<cache>/data/<protocol>``); download the official archive there when the spec names one and we are online."""
    from .hub import get_cache_dir, is_offline

    name = spec["protocol"]
    ds = spec["dataset"]
    pairs = ds.get("pairs")
    first_pairs = (pairs[0] if isinstance(pairs, list) else pairs) if pairs else None

    def usable(root: Path) -> bool:
        if not root.is_dir():
            return False
        if ds["format"] == "lfw-pairs":
            folders = ds.get("images", LFW_IMAGE_FOLDERS)
            return (root / first_pairs).is_file() and any((root / f).is_dir() for f in folders)
        return True

    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(f"--data-root {root}: no such folder")
        return root
    candidates = []
    env = os.environ.get("RESTOREVER_DATA")
    if env:
        candidates += [Path(env).expanduser() / name, Path(env).expanduser()]
    if not isinstance(name, str) or not PROTOCOL_NAME.match(name):
        raise ProtocolError(f"protocol name {str(name)[:60]!r} is not a plain name; it cannot name a cache folder")
    cached = get_cache_dir() / "data" / name
    candidates.append(cached)
    for root in candidates:
        if usable(root):
            return root
    archives = ds.get("download") or []
    allowed = (not is_offline()) if download is None else (download and not is_offline())
    if archives and allowed:
        try:
            return _download_dataset(archives, cached, name)
        except OSError as exc:
            logger.warning("download of %s failed: %s", name, exc)
    layout = ""
    if ds["format"] == "lfw-pairs":
        layout = (f"\nexpected layout:\n  DIR/{first_pairs}\n  DIR/lfw-deepfunneled/NAME/NAME_0001.jpg "
                  f"(or lfw/, lfw_funneled/)")
    raise DataNotFoundError(
        f"protocol {name}: data not found (looked in {', '.join(str(c) for c in candidates)}); "
        f"pass --data-root DIR or set RESTOREVER_DATA{layout}")


def _download_dataset(archives: list[dict], target: Path, name: str) -> Path:
    from .hub import download_file

    target.mkdir(parents=True, exist_ok=True)
    for item in archives:
        problem = download_filename_problem(item.get("filename")) or download_url_problem(item.get("url"))
        if problem:  # validate_spec checked this at load; a spec built in code is checked here too
            raise ProtocolError(f"protocol {name}: download refused: {problem}")
        dest = safe_join(target, item["filename"], what="download filename")
        if not dest.exists():
            download_file(item["url"], dest, sha256=item.get("sha256"), description=f"{name}:{item['filename']}")
        if item.get("extract") and dest.suffix in (".tgz", ".gz", ".tar"):
            try:
                with tarfile.open(dest) as tar:
                    tar.extractall(target, filter="data")  # refuses members that escape the folder
            except (tarfile.TarError, OSError) as exc:  # FilterError (an escaping member) is a TarError
                raise ProtocolError(f"{dest}: refused to extract the archive ({type(exc).__name__}: {exc})") from exc
    return target


# ---------------------------------------------------------------------------------------------------- entry point

def load_protocol(name_or_path: str = "lfw", *, data_root: str | os.PathLike | None = None,
                  pairs: str | os.PathLike | None = None, include_path: Sequence[str | os.PathLike] = (),
                  download: bool | None = None) -> Protocol:
    """Load a protocol by name (``lfw``, ``lfw-dev``, ``pairs-csv``, ``insightface-bin``) or YAML path.

    ``pairs`` overrides the spec's pairs file (required for ``pairs-csv`` / ``insightface-bin``); relative to the
    current directory, or to the data root when not found there.
    """
    spec, spec_path = load_spec(name_or_path, include_path)
    ds = spec["dataset"]
    fmt = ds["format"]
    if fmt == "lfw-ident":
        raise ProtocolError(f"protocol {spec['protocol']} is an identification protocol (no pairs): run "
                            f"`restorever ident --protocol {name_or_path}`")
    if fmt == "insightface-bin":
        if pairs is None:
            raise ProtocolError(f"protocol {spec['protocol']}: pass the .bin file with --pairs FILE")
        pair_list, blobs = read_insightface_bin(pairs, n_folds=int(spec.get("folds", 10)))

        def read_bin(item: str) -> bytes:
            return blobs[int(item.split(":", 1)[1])]

        return Protocol(spec["protocol"], spec, None, pair_list, read_bin, source=str(pairs))

    root = resolve_data_root(spec, data_root, download=download)
    if fmt == "lfw-pairs":
        if pairs:
            files = [_pairs_path(root, pairs)]
        else:
            names = ds["pairs"] if isinstance(ds["pairs"], list) else [ds["pairs"]]
            files = [safe_join(root, n, what="pairs file") for n in names]
        pair_list = load_lfw_pairs(root, files, ds.get("images", LFW_IMAGE_FOLDERS))
        source = ", ".join(str(f) for f in files)
    else:  # pairs-csv
        if pairs is None:
            raise ProtocolError(f"protocol {spec['protocol']}: pass the CSV with --pairs FILE (and --data-root DIR "
                                f"for the images)")
        p = _pairs_path(root, pairs)
        pair_list = parse_pairs_csv(read_text_file(p), source=str(p), n_folds=int(spec.get("folds", 10)))
        source = str(p)
    for item in pair_list.images():  # reject escaping paths up front, before any work
        safe_join(root, item, what="image path")
    return Protocol(spec["protocol"], spec, root, pair_list, image_reader(root), source=source)


def _pairs_path(root: Path, pairs: str | os.PathLike) -> Path:
    """An explicit ``--pairs`` file: as given, else relative to the data root."""
    p = Path(pairs).expanduser()
    if p.is_file():
        return p
    p = safe_join(root, str(pairs), what="pairs file")
    if not p.is_file():
        raise DataNotFoundError(f"{pairs}: pairs file not found (looked in the current folder and in {root})")
    return p


def image_reader(root: Path) -> Callable[[str], bytes]:
    def read(item: str) -> bytes:
        return read_file_bytes(safe_join(root, item, what="image path"))

    return read

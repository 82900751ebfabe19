"""What every protocol format shares: the :class:`FormatCard` a format module registers, the loaded
:class:`Protocol` (pairs + an image reader), the :class:`PairList` the pair formats parse into, and the bounded
text reading they use."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DataNotFoundError, ProtocolError
from ..images import read_file_bytes, safe_join

#: top-level protocol keys every format accepts (DESIGN.md "Protocol file keys", plus ``on_error``)
COMMON_SPEC_KEYS = frozenset({"protocol", "version", "include", "description", "citation", "dataset", "folds",
                              "alignment", "degradation", "scoring", "metrics", "seed", "on_error"})
#: ``dataset`` keys every format accepts
COMMON_DATASET_KEYS = frozenset({"format", "root", "download"})
#: what a protocol of a format is run with
KINDS = ("verification", "identification")


@dataclass(frozen=True)
class FormatCard:
    """A registered protocol format: its name, what it is run with, the YAML keys it accepts and its checks.

    ``spec_keys`` / ``dataset_keys`` are the keys this format adds to :data:`COMMON_SPEC_KEYS` /
    :data:`COMMON_DATASET_KEYS`; ``check(spec, source)`` raises :class:`ProtocolError` for a spec this format cannot
    load (run by :func:`restorever.protocol_specs.validate_spec`, before any data is read); ``uses_data_root`` is
    False for a format whose file holds the images (its loader gets ``root=None``).
    """

    name: str
    kind: str
    description: str
    dataset_keys: frozenset[str] = frozenset()
    spec_keys: frozenset[str] = frozenset()
    check: Callable[[dict, str], None] | None = None
    uses_data_root: bool = True

    @property
    def all_spec_keys(self) -> frozenset[str]:
        return COMMON_SPEC_KEYS | self.spec_keys

    @property
    def all_dataset_keys(self) -> frozenset[str]:
        return COMMON_DATASET_KEYS | self.dataset_keys


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


@dataclass
class Protocol:
    """A loaded verification protocol: its pairs and how to read each image's bytes."""

    name: str
    spec: dict[str, Any]
    root: Path | None
    pairs: PairList
    read_bytes: Callable[[str], bytes]
    source: str = ""

    @property
    def n_folds(self) -> int:
        return int(np.unique(self.pairs.fold).size)


def image_reader(root: Path) -> Callable[[str], bytes]:
    """Read an image id (a path relative to ``root``) with the safe-path and size checks of :mod:`images`."""
    def read(item: str) -> bytes:
        return read_file_bytes(safe_join(root, item, what="image path"))

    return read


def pairs_path(root: Path, pairs: str | os.PathLike) -> Path:
    """An explicit ``--pairs`` file: as given, else relative to the data root."""
    p = Path(pairs).expanduser()
    if p.is_file():
        return p
    if p.is_absolute():  # an explicit file that is not there (the data root is only searched for relative names)
        raise DataNotFoundError(f"{pairs}: pairs file not found")
    if ".." in p.parts:  # meant from the current folder (the data root is never left): say it is not there
        raise DataNotFoundError(f"{pairs}: pairs file not found (looked in the current folder, {Path.cwd()}; a name "
                                f"with '..' is not looked for in the data root {root})")
    p = safe_join(root, str(pairs), what="pairs file")
    if not p.is_file():
        raise DataNotFoundError(f"{pairs}: pairs file not found (looked in the current folder and in {root})")
    return p


def checked_protocol(spec: dict, root: Path, pair_list: PairList, source: str) -> Protocol:
    """A :class:`Protocol` over files under ``root``; every image path is checked up front, before any work."""
    for item in pair_list.images():
        safe_join(root, item, what="image path")
    return Protocol(spec["protocol"], spec, root, pair_list, image_reader(root), source=source)


def pairs_digest(a: Sequence[str], b: Sequence[str], same: Sequence[int], fold: Sequence[int]) -> str:
    """sha256 of a set of pairs with their labels and folds, independent of order (the rows are sorted), so that
    the scored pairs plus the skipped ones of a run digest to the same value as the pairs it was asked to run."""
    import hashlib
    import json

    rows = sorted(json.dumps([str(x), str(y), int(s), int(f)]) for x, y, s, f in zip(a, b, same, fold))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


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

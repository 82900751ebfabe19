"""The ``lfw-pairs`` format: the official LFW ``pairs*.txt`` (View 1 ``pairsDevTrain/Test.txt`` as two folds, View 2
``pairs.txt`` with its ten folds) over an LFW image tree."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataNotFoundError, ProtocolError, UnsafePathError
from ..images import safe_join
from .base import FormatCard, PairList, Protocol, checked_protocol, pairs_path, read_text_file

#: image folders tried under the data root, in order (``dataset.images`` overrides)
LFW_IMAGE_FOLDERS = ("lfw", "lfw-deepfunneled", "lfw_funneled")


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


def check_spec(spec: dict, source: str) -> None:
    """``dataset.pairs`` names the pairs file(s)."""
    pairs = spec["dataset"].get("pairs")
    if not pairs or not all(isinstance(p, str) for p in (pairs if isinstance(pairs, list) else [pairs])):
        raise ProtocolError(f"{source}: dataset.pairs must name the pairs file(s)")


def create(name: str, spec: dict, *, root: Path, pairs: str | os.PathLike | None = None, **_: object) -> Protocol:
    """Load the protocol's pairs: ``pairs`` (``--pairs FILE``) instead of the spec's files when given."""
    ds = spec["dataset"]
    if pairs:
        files = [pairs_path(root, pairs)]
    else:
        names = ds["pairs"] if isinstance(ds["pairs"], list) else [ds["pairs"]]
        files = [safe_join(root, n, what="pairs file") for n in names]
    pair_list = load_lfw_pairs(root, files, ds.get("images") or LFW_IMAGE_FOLDERS)
    return checked_protocol(spec, root, pair_list, ", ".join(str(f) for f in files))


CARDS = {"lfw-pairs": FormatCard(
    "lfw-pairs", "verification", "official LFW pairs*.txt over an LFW image tree",
    dataset_keys=frozenset({"pairs", "images"}), spec_keys=frozenset({"labels"}), check=check_spec)}

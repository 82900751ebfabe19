"""The ``pairs-csv`` format: any dataset as a CSV of ``path_a,path_b,same[,fold]`` with paths relative to the data
root (``--pairs FILE --data-root DIR``)."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from ..errors import ProtocolError
from .base import FormatCard, PairList, Protocol, checked_protocol, csv_rows, pairs_path, read_text_file

MAX_FOLD_LABEL = 1_000_000


def _is_header(row: list[str]) -> bool:
    """A first row naming the columns (``path_a,path_b,same``): its label column is a column name and its path
    columns do not look like file names."""
    return (len(row) >= 3 and row[2].strip().lower() in ("same", "label", "issame", "is_same")
            and not any("." in c or "/" in c for c in row[:2]))


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


def create(name: str, spec: dict, *, root: Path, pairs: str | os.PathLike | None = None, **_: object) -> Protocol:
    """Load the CSV given as ``pairs`` (``--pairs FILE``; required)."""
    if pairs is None:
        raise ProtocolError(f"protocol {spec['protocol']}: pass the CSV with --pairs FILE (and --data-root DIR "
                            f"for the images)")
    p = pairs_path(root, pairs)
    pair_list = parse_pairs_csv(read_text_file(p), source=str(p), n_folds=int(spec.get("folds", 10)))
    return checked_protocol(spec, root, pair_list, str(p))


CARDS = {"pairs-csv": FormatCard(
    "pairs-csv", "verification", "CSV of path_a,path_b,same[,fold] under --data-root (--pairs FILE)",
    dataset_keys=frozenset({"pairs"}))}

"""Attribute labels for LFW images: the gender name lists and age groups derived from the Kumar attribute scores.

Labels are keyed by the LFW image stem ``Name_NNNN`` (the file name without ``.jpg``), so they apply to any copy of
the LFW tree (``lfw/``, ``lfw-deepfunneled/``, ...). Missing labels are ``-1`` in the arrays returned by
:func:`label_arrays`.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import DataNotFoundError, ProtocolError
from .groups import GENDERS, AgeGroups, kumar_age_years

logger = logging.getLogger(__name__)


def image_key(item: str) -> str:
    """``"lfw-deepfunneled/Name/Name_0001.jpg"`` -> ``"Name_0001"``."""
    name = item.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def person_of(item: str) -> str:
    """The LFW person of an image id: the part of the stem before ``_NNNN``."""
    stem = image_key(item)
    head, sep, tail = stem.rpartition("_")
    return head if sep and tail.isdigit() else stem


def _read_text(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"{path}: label file not found") from exc


def parse_gender_lists(male_text: str, female_text: str) -> tuple[dict[str, int], set[str]]:
    """Parse the LFW gender lists (one ``Name_NNNN.jpg`` per line, CRLF or LF).

    Returns ``({image_key: 0 female / 1 male}, ambiguous)``; an image listed in both files is left out and reported
    in ``ambiguous`` (the public lists have five such images).
    """
    def names(text: str) -> set[str]:
        return {image_key(line.strip()) for line in text.replace("\r", "\n").split("\n") if line.strip()}

    male, female = names(male_text), names(female_text)
    ambiguous = male & female
    labels = {k: GENDERS.index("male") for k in male - ambiguous}
    labels.update({k: GENDERS.index("female") for k in female - ambiguous})
    return labels, ambiguous


def read_gender_lists(male_path: str | os.PathLike, female_path: str | os.PathLike) -> dict[str, int]:
    labels, ambiguous = parse_gender_lists(_read_text(male_path), _read_text(female_path))
    if ambiguous:
        logger.info("gender lists: %d image(s) in both lists dropped (%s)", len(ambiguous),
                    ", ".join(sorted(ambiguous)[:5]))
    return labels


KUMAR_AGE_COLUMNS = ("Baby", "Child", "Youth", "Middle Aged", "Senior")


def parse_kumar_ages(text: str, groups: AgeGroups, *, source: str = "lfw_attributes.tsv") -> dict[str, int]:
    """Age group per image from the Kumar attribute-score TSV (``person``, ``imagenum``, attribute columns).

    The rule is :func:`restorever.attributes.groups.kumar_age_years` (Senior > 0 -> 65 years, else 40 years), binned
    with ``groups``.
    """
    from ..protocol import csv_rows

    rows = csv_rows(csv.reader(io.StringIO(text.replace("\r\n", "\n")), delimiter="\t"), source)
    header = next(rows, (1, None))[1]
    if not header or "person" not in header or "imagenum" not in header or "Senior" not in header:
        raise ProtocolError(f"{source}: expected a TSV header with person, imagenum and Senior columns")
    ip, ii, isen = header.index("person"), header.index("imagenum"), header.index("Senior")
    out: dict[str, int] = {}
    missing: list[str] = []
    for line_no, row in rows:
        if not row or not any(c.strip() for c in row):
            continue
        try:
            key = f"{row[ip].strip()}_{int(row[ii]):04d}"
            senior = float(row[isen])
        except (ValueError, IndexError):
            raise ProtocolError(f"{source}:{line_no}: cannot read person/imagenum/Senior from {row[:3]}") from None
        if not math.isfinite(senior):  # NaN > 0 is False: it would silently become an "adult" label
            missing.append(f"{key} (line {line_no})")
            continue
        out[key] = int(groups.index(kumar_age_years(senior)))
    if missing:
        logger.warning("%s: %d image(s) have no finite Senior score and get no age label: %s%s", source,
                       len(missing), ", ".join(missing[:3]), " ..." if len(missing) > 3 else "")
    return out


def read_kumar_ages(path: str | os.PathLike, groups: AgeGroups) -> dict[str, int]:
    return parse_kumar_ages(_read_text(path), groups, source=str(path))


def label_arrays(items: Sequence[str], labels: Mapping[str, Mapping[str, int]]) -> dict[str, np.ndarray]:
    """``{attribute: int64 [N]}`` for ``items`` (``-1`` where an image has no label)."""
    keys = [image_key(i) for i in items]
    return {a: np.array([table.get(k, -1) for k in keys], dtype=np.int64) for a, table in labels.items()}

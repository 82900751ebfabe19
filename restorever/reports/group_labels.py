"""The user's own group labels for ``restorever breakdown --labels FILE``: a CSV keyed by person (the image's
folder) or by image id, parsed strictly (:func:`parse_labels_csv`, :func:`read_labels_csv`) and matched to a run's
image ids (:func:`resolve_labels`). The format is documented in docs/attributes.md ("Labels files")."""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import RestoreverError
from .statistics import person_of

log = logging.getLogger(__name__)

__all__ = ["UNLABELLED", "MIXED", "BreakdownError", "GroupLabels", "check_group_name", "parse_labels_csv",
           "read_labels_csv", "resolve_labels"]

#: the breakdown's own rows: images without a group, and pairs whose two images are in two different groups
UNLABELLED = "unlabelled"
MIXED = "mixed"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\Z")


class BreakdownError(RestoreverError):
    """A run or protocol lacks what a breakdown needs (per-probe identity, pair ids, group labels)."""



@dataclass(frozen=True)
class GroupLabels:
    """A user's labels file: ``key`` ``"person"`` or ``"item"``, ``name`` (the header's group column),
    ``groups`` ``{person or image id: group}``, ``lines`` ``{key: line number}``, ``source`` and ``sha256`` (of the
    file's bytes when read with :func:`read_labels_csv`, else of the text as UTF-8)."""

    key: str
    name: str
    groups: dict[str, str]
    lines: dict[str, int]
    source: str
    sha256: str



def check_group_name(name: str, source: str = "--name") -> str:
    """``name`` if it can name the attribute and the output files (``breakdown-NAME.json``), else BreakdownError."""
    if not _GROUP_NAME.match(name or ""):
        raise BreakdownError(f"{source}: {name!r} cannot name the breakdown files breakdown-NAME.json; use letters, "
                             "digits, '_', '-', '.' or '+' (pass --name NAME)")
    return name


def _delimiter(text: str) -> str:
    """``,``, or ``;`` / tab when the header line (the first that is not blank or a ``#`` comment) has no comma but
    one of those: what spreadsheets write in locales with a decimal comma, or as "Unicode text"."""
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            if "," not in line:
                for d in (";", "\t"):
                    if d in line:
                        return d
            break
    return ","


def parse_labels_csv(text: str, *, source: str = "labels.csv") -> GroupLabels:
    """Parse a labels CSV: a header ``person,NAME`` (one row per person: the image's folder in ``results.json``) or
    ``item,NAME`` (one row per image id exactly as ``results.json``'s ``pairs.a``/``pairs.b`` write it), then one
    ``key,group`` row per person or image. Blank lines and lines starting with ``#`` are skipped; cells are stripped,
    and empty cells after the second column dropped; the separator is ``,``, or ``;`` or a tab when the header has no
    comma but one of those, or the character ``X`` of a first line ``sep=X`` (what Excel writes and reads to name
    the separator). A byte-order mark and CRLF line ends are accepted by the caller's decoding.

    Refused with :class:`BreakdownError` naming the file and line: no such header, a header naming both keys or more
    than two columns, a row of another width, an empty key or group, the reserved groups ``unlabelled``/``mixed``, an
    image id (a path or an image file name) under a ``person`` header, a key given two different groups, and a group
    spelt two ways that differ only in letter case. A key repeated with the same group is accepted once.
    """
    from ..formats.base import csv_rows

    text = text.replace("\r\n", "\n")
    first, newline, rest = text.partition("\n")
    if first.lower().startswith("sep="):  # Excel's separator declaration, written before the header
        if len(first) != 5 or first[4] in "\"\n":
            raise BreakdownError(f"{source}:1: {first[:80]!r} is not a separator declaration sep=X with one "
                                 "character X; write sep=, (or sep=; ) or remove the line")
        delimiter = first[4]
        text = newline + rest  # the line stays counted, so the error messages' line numbers stay the file's
    else:
        delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    key = name = ""
    groups: dict[str, str] = {}
    lines: dict[str, int] = {}
    group_lines: dict[str, tuple[str, int]] = {}
    for line_no, row in csv_rows(reader, source):
        row = [c.strip() for c in row]
        if not any(row) or row[0].startswith("#"):
            continue
        while len(row) > 2 and not row[-1]:  # the empty trailing columns of a spreadsheet export
            row.pop()
        where = f"{source}:{line_no}"
        if header is None:
            header = row
            lowered = [c.lower() for c in row]
            if "person" in lowered and "item" in lowered:
                raise BreakdownError(f"{where}: the header names both person and item, so the rows' keys are "
                                     "ambiguous; write one file keyed by person (person,NAME) or by image (item,NAME)")
            if len(row) != 2 or lowered[0] not in ("person", "item") or not row[1]:
                raise BreakdownError(f"{where}: the first row must be the header person,NAME (one row per person) or "
                                     f"item,NAME (one row per image id of results.json), got {','.join(row)[:80]!r}")
            key, name = lowered[0], row[1]
            continue
        if len(row) != 2:
            raise BreakdownError(f"{where}: expected 2 fields ({key},{name}), got {len(row)}")
        k, g = row[0].replace("\\", "/"), row[1]
        if not k:
            raise BreakdownError(f"{where}: empty {key}")
        if not g:
            raise BreakdownError(f"{where}: {k} has an empty {name}; write its group, or leave the row out (what is "
                                 f"not listed is {UNLABELLED})")
        if g in (UNLABELLED, MIXED):
            raise BreakdownError(f"{where}: {g!r} is reserved for the breakdown's own rows; rename that group")
        if key == "person" and ("/" in k or k.lower().endswith(_IMAGE_SUFFIXES)):
            raise BreakdownError(f"{where}: {k} is an image id, but the header says person; a file is keyed by "
                                 "person or by image, not both: make the header item,NAME and give every row an "
                                 "image id, or give every row a person")
        if k in groups and groups[k] != g:
            raise BreakdownError(f"{where}: {k} is {g!r} here but {groups[k]!r} on line {lines[k]}; give each "
                                 f"{key} one group")
        first = group_lines.setdefault(g.casefold(), (g, line_no))
        if first[0] != g:
            raise BreakdownError(f"{where}: group {g!r} differs from {first[0]!r} (line {first[1]}) only in letter "
                                 "case, which would make two groups; spell each group one way")
        groups.setdefault(k, g)
        lines.setdefault(k, line_no)
    if header is None or not groups:
        raise BreakdownError(f"{source}: no labels; expected a header person,NAME or item,NAME and one row per "
                             f"{key or 'person or image'}")
    return GroupLabels(key, name, groups, lines, source, hashlib.sha256(text.encode("utf-8")).hexdigest())


def read_labels_csv(path: str | Path) -> GroupLabels:
    """:func:`parse_labels_csv` of a file: UTF-8 with or without a byte-order mark, or UTF-16 with one (a
    spreadsheet's "Unicode text" export)."""
    from ..formats.base import MAX_TEXT_BYTES, read_text_file

    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) and path.stat().st_size <= MAX_TEXT_BYTES:
        try:
            text = path.read_bytes().decode("utf-16")
        except UnicodeDecodeError as exc:
            raise BreakdownError(f"{path}: starts with a UTF-16 byte-order mark but is not UTF-16 text "
                                 f"({exc.reason} at offset {exc.start}); save it as UTF-8 CSV") from None
    else:
        text = read_text_file(path)
    # the record names the file as `sha256sum` does: its bytes, byte-order mark and line ends included
    return replace(parse_labels_csv(text, source=str(path)), sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def resolve_labels(labels: GroupLabels, record: dict[str, Any], source: str = "results.json"
                   ) -> tuple[list[str], dict[str, Any]]:
    """Match a labels file to a run: ``(classes, info for breakdown-NAME.json's labels)``.

    ``classes`` are the file's groups in sorted order (the order of the tables and of the bootstrap seeds). Keys that
    name nothing in the run are counted and logged, not fatal; an ``item`` key that is one of the run's people rather
    than an image id is refused (the file mixes the two keys), as is a key that matches one of the run's only when
    letter case is ignored, and a file of which no key matches the run.
    """
    pairs = record.get("pairs") or {}
    items = {str(i).replace("\\", "/") for i in [*(pairs.get("a") or ()), *(pairs.get("b") or ())]}
    people = {person_of(i) for i in items}
    known = items if labels.key == "item" else people
    unknown = [k for k in labels.groups if k not in known]
    if labels.key == "item":
        for k in unknown:
            if k in people:
                raise BreakdownError(f"{labels.source}:{labels.lines[k]}: {k} is a person of the run, not an image id, "
                                     "but the header says item; key the whole file by person (person,NAME) or give "
                                     "every row an image id as results.json writes it")
    folded = {k.casefold(): k for k in known}
    for k in unknown:
        if k.casefold() in folded:
            raise BreakdownError(f"{labels.source}:{labels.lines[k]}: {k} is not in the run, but "
                                 f"{folded[k.casefold()]} is: ids are case-sensitive; write it as {source} does")
    if len(unknown) == len(labels.groups):
        example = sorted(known)[0] if known else "?"
        raise BreakdownError(f"{labels.source}: none of its {len(unknown)} {labels.key} keys is in the run "
                             f"{source} (e.g. the run has {example!r}, the file {unknown[0]!r}); key it by "
                             f"{'the image ids of pairs.a/pairs.b' if labels.key == 'item' else 'image folder'} "
                             "(a missing prefix?), or else the run holds none of the file's images")
    if unknown:
        log.warning("%s: %d of its %d %s keys are not in the run and are ignored (e.g. %s)", labels.source,
                    len(unknown), len(labels.groups), labels.key, ", ".join(unknown[:3]))
    classes = sorted(set(labels.groups.values()))
    return classes, {"file": labels.source, "sha256": labels.sha256, "key": labels.key, "name": labels.name,
                     "rows": len(labels.groups), "unknown": len(unknown), "unknown_examples": unknown[:5]}

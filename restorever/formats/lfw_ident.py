"""The ``lfw-ident`` format: a closed-set identification split of LFW (gallery, probes, distractors).

Registered as an *identification* format: :func:`restorever.load_protocol` refuses it with a pointer to
``restorever ident``; :func:`load_ident_protocol` loads it.

From the official ``people.txt`` (names and image counts; the image tree must match it):

* every person with at least ``min_images`` images is *enrolled*: their lowest-numbered usable image is the clean
  gallery entry, the following ones (at most ``max_probes_per_person``) are probes;
* every person with exactly one image is a gallery *distractor* (no probe looks for them); ``max_distractors``
  keeps the first N in the order of ``sha256(name)`` (a fixed, name-independent sample);
* an image is *usable* when it decodes and a face is found; an enrolled person whose images all fail is dropped
  (recorded), a failed probe or distractor is dropped (recorded).

Everything is deterministic: the same files and options give the same split on every machine.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import DataNotFoundError, ProtocolError
from ..images import safe_join
from .base import FormatCard, PairList, Protocol, image_reader, read_text_file
from .lfw_pairs import LFW_IMAGE_FOLDERS, find_lfw_image_folder

logger = logging.getLogger(__name__)

FORMAT = "lfw-ident"


def parse_people_file(text: str, *, source: str = "people.txt") -> dict[str, int]:
    """``{name: number of images}`` from an LFW people file.

    ``people.txt`` starts with the number of folds, and each fold with its number of people; ``peopleDevTrain.txt``
    starts with the number of people. Lines with one integer are these counts (checked), lines ``name<TAB>N`` are
    people. CRLF/LF and spaces instead of tabs are accepted; a name listed twice is an error.
    """
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    people: dict[str, int] = {}
    blocks: list[list[int]] = []  # [declared count, seen]
    for line_no, line in enumerate(lines, start=1):
        if not line:
            continue
        fields = line.split()
        if len(fields) == 1:
            try:
                blocks.append([int(fields[0]), 0, line_no])
            except ValueError:
                raise ProtocolError(f"{source}:{line_no}: expected a count or 'name N', got {line!r}") from None
            continue
        if len(fields) != 2:
            raise ProtocolError(f"{source}:{line_no}: expected 'name N', got {line!r}")
        name, count = fields
        try:
            n = int(count)
        except ValueError:
            raise ProtocolError(f"{source}:{line_no}: image count must be an integer, got {count!r}") from None
        if n < 1:
            raise ProtocolError(f"{source}:{line_no}: {name} has {n} images; counts start at 1")
        if name in people:
            raise ProtocolError(f"{source}:{line_no}: {name} is listed twice")
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ProtocolError(f"{source}:{line_no}: {name!r} is not a plain folder name")
        people[name] = n
        if blocks:
            blocks[-1][1] += 1
    if not people:
        raise ProtocolError(f"{source}: no people listed")
    # the first count is the number of folds when it is followed by per-fold counts
    fold_blocks = blocks[1:] if len(blocks) > 1 else blocks
    for declared, seen, line_no in fold_blocks:
        if declared != seen:
            raise ProtocolError(f"{source}:{line_no}: the count says {declared} people, {seen} follow")
    if len(blocks) > 1 and blocks[0][0] != len(blocks) - 1:
        raise ProtocolError(f"{source}:1: header says {blocks[0][0]} folds, the file has {len(blocks) - 1}")
    return people


@dataclass
class SplitOptions:
    """How the split is drawn (defaults: the full protocol; a subset narrows them)."""

    min_images: int = 2
    max_probes_per_person: int | None = None
    distractors: bool = True
    max_distractors: int | None = None

    def validate(self) -> None:
        if self.min_images < 2:
            raise ValueError("--min-images must be at least 2 (a gallery image and a probe)")
        if self.max_probes_per_person is not None and self.max_probes_per_person < 1:
            raise ValueError("--max-probes-per-person must be at least 1")
        if self.max_distractors is not None and self.max_distractors < 0:
            raise ValueError("--max-distractors must be >= 0")


@dataclass
class IdentSplit:
    """The drawn split. ``gallery`` lists the enrolled people's gallery images first, then the distractors;
    ``probe_mate[i]`` is the gallery position of probe ``i``'s person."""

    gallery: list[str]
    gallery_people: list[str]
    n_enrolled: int
    probes: list[str]
    probe_people: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def probe_mate(self) -> np.ndarray:
        pos = {p: i for i, p in enumerate(self.gallery_people[:self.n_enrolled])}
        return np.array([pos[p] for p in self.probe_people], dtype=np.int64)

    @property
    def items(self) -> list[str]:
        return list(dict.fromkeys([*self.gallery, *self.probes]))

    def summary(self) -> dict[str, Any]:
        with_probes = len(set(self.probe_people))
        return {"enrolled_people": self.n_enrolled, "enrolled_with_probes": with_probes,
                "distractors": len(self.gallery) - self.n_enrolled, "gallery_size": len(self.gallery),
                "probes": len(self.probes), "skipped": len(self.skipped)}


def image_item(folder: str, name: str, number: int) -> str:
    return f"{folder}/{name}/{name}_{number:04d}.jpg"


def draw_candidates(people: Mapping[str, int], folder: str, options: SplitOptions
                    ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Images considered before any face detection: ``({enrolled person: [gallery candidate, probes...]},
    {distractor person: image})``. With ``max_probes_per_person`` only the first ``1 + max`` images are listed
    (:func:`refill_candidates` lists the next ones for a person whose listed images fail)."""
    options.validate()
    enrolled = {}
    for name in sorted(people):
        n = people[name]
        if n >= options.min_images:
            last = n if options.max_probes_per_person is None else min(n, 1 + options.max_probes_per_person)
            enrolled[name] = [image_item(folder, name, i) for i in range(1, last + 1)]
    distractors: dict[str, str] = {}
    if options.distractors:
        singles = sorted((name for name, n in people.items() if n == 1),
                         key=lambda s: hashlib.sha256(s.encode()).hexdigest())
        if options.max_distractors is not None:
            singles = singles[:options.max_distractors]
        distractors = {name: image_item(folder, name, 1) for name in sorted(singles)}
    return enrolled, distractors


def refill_candidates(enrolled: Mapping[str, Sequence[str]], people: Mapping[str, int], folder: str,
                      failed: Mapping[str, str], max_probes_per_person: int | None) -> dict[str, list[str]]:
    """The next images of each enrolled person whose listed candidates lost some to ``failed`` (no face, unreadable)
    and who has more images: as many as were lost, so the person can still get ``1 + max_probes_per_person`` usable
    ones. ``{person: [new items]}``, empty when nothing is missing or nothing is left (and always without a cap)."""
    if max_probes_per_person is None:
        return {}
    wanted = 1 + max_probes_per_person
    extra: dict[str, list[str]] = {}
    for name, items in enrolled.items():
        usable = sum(1 for i in items if i not in failed)
        listed = len(items)  # candidates are the person's images 1..listed
        more = min(wanted - usable, people.get(name, listed) - listed)
        if more > 0:
            extra[name] = [image_item(folder, name, n) for n in range(listed + 1, listed + more + 1)]
    return extra


def build_split(enrolled: Mapping[str, Sequence[str]], distractors: Mapping[str, str],
                failed: Mapping[str, str] | None = None, *, max_probes_per_person: int | None = None) -> IdentSplit:
    """Apply detection failures (``{item: reason}``) to the candidates and return the split."""
    failed = failed or {}
    gallery, gallery_people, probes, probe_people, skipped = [], [], [], [], []
    for name, items in enrolled.items():
        ok = [i for i in items if i not in failed]
        skipped += [{"item": i, "reason": failed[i]} for i in items if i in failed]
        if not ok:
            skipped.append({"item": name, "reason": "no usable image: person dropped"})
            continue
        gallery.append(ok[0])
        gallery_people.append(name)
        rest = ok[1:] if max_probes_per_person is None else ok[1:1 + max_probes_per_person]
        probes += rest
        probe_people += [name] * len(rest)
    n_enrolled = len(gallery)
    for name, item in distractors.items():
        if item in failed:
            skipped.append({"item": item, "reason": failed[item]})
            continue
        gallery.append(item)
        gallery_people.append(name)
    return IdentSplit(gallery, gallery_people, n_enrolled, probes, probe_people, skipped)


# ---------------------------------------------------------------------------------------------------- YAML

def load_ident_spec(name_or_path: str, include_path: Sequence[str | os.PathLike] = ()) -> tuple[dict, Path]:
    """Load an identification protocol YAML by name or path with the common loader (``include:``, typed errors),
    then check its identification keys."""
    from ..protocol_specs import load_spec

    spec, path = load_spec(name_or_path, include_path)
    validate_ident_spec(spec, source=str(path))
    return spec, path


def is_ident_protocol(name_or_path: str, include_path: Sequence[str | os.PathLike] = ()) -> bool:
    """True when ``--protocol NAME`` names a protocol of an identification format (for routing ``restorever eval``);
    reads the YAML without validating it, so a broken file is reported by the loader that runs it."""
    from ..protocol_specs import format_kind, raw_format

    return format_kind(raw_format(name_or_path, include_path)) == "identification"


def is_ident_spec(spec: Mapping) -> bool:
    ds = spec.get("dataset")
    return isinstance(ds, dict) and ds.get("format") == FORMAT


def validate_ident_spec(spec: Mapping, *, source: str) -> None:
    for key in ("protocol", "dataset"):
        if key not in spec:
            raise ProtocolError(f"{source}: missing key {key!r}")
    if not is_ident_spec(spec):
        raise ProtocolError(f"{source}: dataset.format must be {FORMAT!r} for an identification protocol "
                            f"(verification protocols run with `restorever eval`)")
    check_spec(dict(spec), source)


def check_spec(spec: dict, source: str) -> None:
    """The identification keys: ``dataset.people`` and the ``split`` options (the format's registry check)."""
    if not isinstance(spec["dataset"].get("people"), str):
        raise ProtocolError(f"{source}: dataset.people must name the people file (people.txt)")
    split = spec.get("split") or {}
    if not isinstance(split, dict):
        raise ProtocolError(f"{source}: split must be a mapping")
    unknown = set(split) - {f for f in SplitOptions.__dataclass_fields__} - {"gallery"}
    if unknown:
        raise ProtocolError(f"{source}: unknown split option(s) {sorted(unknown)}")
    if split.get("gallery", "first") != "first":
        raise ProtocolError(f"{source}: split.gallery must be 'first' (the lowest-numbered usable image)")
    try:
        split_options(spec).validate()
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{source}: {exc}") from exc


def split_options(spec: Mapping, **overrides: Any) -> SplitOptions:
    """The spec's ``split`` section with non-None ``overrides`` applied."""
    values = {k: v for k, v in (spec.get("split") or {}).items() if k != "gallery"}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SplitOptions(**values)


@dataclass
class IdentProtocol:
    """A loaded identification protocol: spec, data root, people counts, image folder and an image reader."""

    name: str
    spec: dict
    root: Path
    people: dict[str, int]
    folder: str
    people_file: Path
    read_bytes: Callable[[str], bytes]

    def as_protocol(self) -> Protocol:
        """A :class:`restorever.protocol.Protocol` view (no pairs) for the shared pipeline stages."""
        empty = PairList([], [], np.zeros(0, np.int64), np.zeros(0, np.int64))
        return Protocol(self.name, self.spec, self.root, empty, self.read_bytes, source=str(self.people_file))

    def describe(self, options: SplitOptions) -> dict[str, Any]:
        return {"name": self.name, "format": FORMAT, "people_file": str(self.people_file), "folder": self.folder,
                "split_options": asdict(options)}


def load_ident_protocol(name_or_path: str = "lfw-ident", *, data_root: str | os.PathLike | None = None,
                        include_path: Sequence[str | os.PathLike] = ()) -> IdentProtocol:
    """Load ``lfw-ident`` (or another YAML of this format) and check the people file against the image tree."""
    from ..data_root import resolve_data_root

    spec, _ = load_ident_spec(name_or_path, include_path)
    return create(spec["dataset"]["format"], spec, root=resolve_data_root(spec, data_root))


def create(name: str, spec: dict, *, root: Path, **_: object) -> IdentProtocol:
    """The registry's loader: people file and image tree under ``root``, checked against each other."""
    people_file = safe_join(root, spec["dataset"]["people"], what="people file")
    if not people_file.is_file():
        raise DataNotFoundError(f"{people_file}: people file not found (pass --data-root DIR holding "
                                f"{spec['dataset']['people']} and lfw-deepfunneled/)")
    people = parse_people_file(read_text_file(people_file), source=str(people_file))
    folder = find_lfw_image_folder(root, spec["dataset"].get("images") or LFW_IMAGE_FOLDERS)
    missing = [n for n in people if not (root / folder / n).is_dir()]
    if missing:
        raise DataNotFoundError(f"{root / folder}: {len(missing)} people of {people_file.name} have no folder "
                                f"(e.g. {', '.join(missing[:3])}); is this the matching LFW tree?")
    # the verification reader: safe paths, typed errors for any read failure
    return IdentProtocol(spec["protocol"], spec, root, people, folder, people_file, image_reader(root))


CARDS = {FORMAT: FormatCard(
    FORMAT, "identification", "LFW closed-set identification from people.txt (gallery, probes, distractors)",
    dataset_keys=frozenset({"people", "images"}), spec_keys=frozenset({"split", "labels", "attributes"}),
    check=check_spec)}

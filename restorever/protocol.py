"""Protocols: which image pairs to compare, whether each pair is the same person, and the folds.

A protocol is declared in YAML (``protocols/*.yaml``, shipped in the wheel as ``restorever.protocols``) and names a
*format* whose parser turns files under a data root into a :class:`PairList`. Formats: ``lfw-pairs`` (the official
LFW ``pairs*.txt``), ``pairs-csv`` (``path_a,path_b,same[,fold]``) and ``insightface-bin`` (a pickled list of encoded
images with a same/different list, read with a restricted unpickler).

This module is the entry point (:func:`load_protocol`, :class:`Protocol`); the parsers live in
:mod:`restorever.protocol_formats`, spec loading and checking in :mod:`restorever.protocol_specs`, and finding or
downloading the data in :mod:`restorever.data_root`. Their public names are re-exported here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .data_root import download_dataset, resolve_data_root
from .errors import DataNotFoundError, ProtocolError
from .images import read_file_bytes, safe_join
from .protocol_formats import (LFW_IMAGE_FOLDERS, MAX_FOLD_LABEL, MAX_TEXT_BYTES, PairList, csv_rows,
                               find_lfw_image_folder, lfw_image_path, load_lfw_pairs, pairs_digest, parse_lfw_pairs,
                               parse_pairs_csv, read_insightface_bin, read_text_file)
from .protocol_specs import (DOWNLOAD_SCHEMES, FORMATS, MAX_FOLDS, MAX_SPEC_BYTES, PROTOCOL_NAME,
                             download_filename_problem, download_url_problem, list_protocols, load_spec,
                             protocol_search_path, shipped_protocol_dirs, validate_spec)

__all__ = ["DOWNLOAD_SCHEMES", "FORMATS", "LFW_IMAGE_FOLDERS", "MAX_FOLDS", "MAX_FOLD_LABEL", "MAX_SPEC_BYTES",
           "MAX_TEXT_BYTES", "PROTOCOL_NAME", "PairList", "Protocol", "csv_rows", "download_dataset",
           "download_filename_problem", "download_url_problem", "find_lfw_image_folder", "image_reader",
           "lfw_image_path", "list_protocols", "load_lfw_pairs", "load_protocol", "load_spec", "pairs_digest",
           "parse_lfw_pairs", "parse_pairs_csv", "protocol_search_path", "read_insightface_bin", "read_text_file",
           "resolve_data_root", "shipped_protocol_dirs", "validate_spec"]


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

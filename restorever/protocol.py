"""Protocols: which image pairs to compare, whether each pair is the same person, and the folds.

A protocol is declared in YAML (``protocols/*.yaml``, shipped in the wheel as ``restorever.protocols``) and names a
*format*: a module registered in :data:`restorever.formats.FORMATS` whose loader turns files under a data root into
a :class:`Protocol` (``lfw-pairs``, ``pairs-csv``, ``insightface-bin``) or, for the identification format
``lfw-ident``, an identification protocol (:func:`load_ident_protocol`).

This module is the entry point (:func:`load_protocol`, :class:`Protocol`); the formats live in
:mod:`restorever.formats`, spec loading and checking in :mod:`restorever.protocol_specs`, and finding or
downloading the data in :mod:`restorever.data_root`. Their public names are re-exported here.
"""
from __future__ import annotations

import os
from typing import Sequence

from .data_root import download_dataset, resolve_data_root
from .errors import ProtocolError
from .formats import FORMATS, list_formats
from .formats.base import (MAX_TEXT_BYTES, PairList, Protocol, csv_rows, image_reader, pairs_digest,
                           read_text_file)
from .formats.insightface_bin import read_insightface_bin
from .formats.lfw_ident import IdentProtocol, load_ident_protocol
from .formats.lfw_pairs import (LFW_IMAGE_FOLDERS, find_lfw_image_folder, lfw_image_path, load_lfw_pairs,
                                parse_lfw_pairs)
from .formats.pairs_csv import MAX_FOLD_LABEL, parse_pairs_csv
from .protocol_specs import (DOWNLOAD_SCHEMES, MAX_FOLDS, MAX_SPEC_BYTES, PROTOCOL_NAME, download_filename_problem,
                             download_url_problem, format_kind, list_protocols, load_spec, protocol_search_path,
                             raw_format, shadowed_protocols, shipped_protocol_dirs, validate_spec)

__all__ = ["DOWNLOAD_SCHEMES", "FORMATS", "IdentProtocol", "LFW_IMAGE_FOLDERS", "MAX_FOLDS", "MAX_FOLD_LABEL",
           "MAX_SPEC_BYTES", "MAX_TEXT_BYTES", "PROTOCOL_NAME", "PairList", "Protocol", "csv_rows",
           "download_dataset", "download_filename_problem", "download_url_problem", "find_lfw_image_folder",
           "format_kind", "image_reader", "lfw_image_path", "list_formats", "list_protocols", "load_ident_protocol",
           "load_lfw_pairs", "load_protocol", "load_spec", "pairs_digest", "parse_lfw_pairs", "parse_pairs_csv",
           "protocol_kind", "protocol_search_path", "raw_format", "read_insightface_bin", "read_text_file",
           "resolve_data_root", "shadowed_protocols", "shipped_protocol_dirs", "validate_spec"]


def protocol_kind(name_or_path: str, include_path: Sequence[str | os.PathLike] = ()) -> str | None:
    """``"verification"`` or ``"identification"``: what ``--protocol NAME`` is run with (None when the file cannot
    be read or names no registered format; loading it then says why)."""
    return format_kind(raw_format(name_or_path, include_path))


def load_protocol(name_or_path: str = "lfw", *, data_root: str | os.PathLike | None = None,
                  pairs: str | os.PathLike | None = None, include_path: Sequence[str | os.PathLike] = (),
                  download: bool | None = None) -> Protocol:
    """Load a verification protocol by name (``lfw``, ``lfw-dev``, ``pairs-csv``, ``insightface-bin``) or YAML path.

    The spec's ``dataset.format`` picks the loader from the format registry. ``pairs`` overrides the spec's pairs
    file (required for ``pairs-csv`` / ``insightface-bin``); relative to the current directory, or to the data root
    when not found there. A protocol of an identification format (``lfw-ident``) has no pairs: it raises
    :class:`ProtocolError` naming ``restorever ident`` and :func:`load_ident_protocol`.
    """
    spec, spec_path = load_spec(name_or_path, include_path)
    fmt = spec["dataset"]["format"]
    card = FORMATS.card(fmt)
    if card.kind != "verification":
        raise ProtocolError(f"{spec_path}: protocol {spec['protocol']} is an {card.kind} protocol (format {fmt}, no "
                            f"pairs): run `restorever ident --protocol {name_or_path}`, or load it with "
                            f"restorever.load_ident_protocol({name_or_path!r})")
    root = resolve_data_root(spec, data_root, download=download) if card.uses_data_root else None
    return FORMATS.create(fmt, spec=spec, root=root, pairs=pairs)

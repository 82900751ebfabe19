"""The ``lfw-ident`` identification format, under its former import path.

The format lives in :mod:`restorever.formats.lfw_ident` (registered with the other protocol formats); this module
re-exports its public names so that ``from restorever.datasets_ident import ...`` keeps working.
"""
from __future__ import annotations

from .formats.lfw_ident import (FORMAT, IdentProtocol, IdentSplit, SplitOptions, build_split, draw_candidates,
                                image_item, is_ident_protocol, is_ident_spec, load_ident_protocol, load_ident_spec,
                                parse_people_file, split_options, validate_ident_spec)

__all__ = ["FORMAT", "IdentProtocol", "IdentSplit", "SplitOptions", "build_split", "draw_candidates", "image_item",
           "is_ident_protocol", "is_ident_spec", "load_ident_protocol", "load_ident_spec", "parse_people_file",
           "split_options", "validate_ident_spec"]

"""Protocol dataset formats, one module per format, found through a registry.

Each module (``lfw_pairs``, ``pairs_csv``, ``insightface_bin``, ``lfw_ident``) defines ``CARDS = {name:
FormatCard}`` (the format's kind, the YAML keys it accepts and its spec check) and ``create(name, spec, *, root,
pairs, ...)`` (its loader). :func:`restorever.load_protocol` dispatches through :data:`FORMATS`; a plugin adds a
format with ``FORMATS.register_module("pkg.my_format")``. Importing this package imports no format module.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._registry import Registry

if TYPE_CHECKING:
    from .base import FormatCard

__all__ = ["FORMATS", "format_card", "list_formats"]

#: the registered protocol formats (lazy: a format module is imported when the registry is first read)
FORMATS = Registry("protocol format", ["restorever.formats.lfw_pairs", "restorever.formats.pairs_csv",
                                       "restorever.formats.insightface_bin", "restorever.formats.lfw_ident"],
                   listing="restorever protocols --formats")


def list_formats() -> list[str]:
    """Names of the registered formats, in registration order."""
    return FORMATS.names()


def format_card(name: str) -> "FormatCard":
    """The card of a registered format; an unknown name raises :class:`~restorever.errors.UnknownNameError`."""
    return FORMATS.card(name)

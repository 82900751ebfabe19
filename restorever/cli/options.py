"""Parsers of comma-separated option values shared by the commands."""
from __future__ import annotations

import click


def split_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def parse_scales(text: str | None, param_hint: str = "--scales") -> list[int]:
    """``"4,x8,16"`` -> ``[4, 8, 16]``; anything else is a usage error naming the option."""
    out = []
    for t in split_list(text):
        try:
            out.append(int(t.lower().lstrip("x")))
        except ValueError:
            raise click.BadParameter(f"{t!r} is not an integer scale (e.g. 4,8,16)", param_hint=param_hint) from None
    return out

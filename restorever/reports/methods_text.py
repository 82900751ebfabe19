"""The pieces a methods text is made of: :class:`Sentence` (literal text written by restorever, fields from a record,
escaped when rendered), :class:`Cite` (a References entry) and the formatting of recorded values."""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["Cite", "Sentence", "Paragraph", "get_in", "num_text", "and_text"]


@dataclass(frozen=True)
class Cite:
    """A citation of the References entry ``(role, name)``; rendered ``[n]`` in markdown, ``\\cite{key}`` in LaTeX."""

    role: str
    name: str


@dataclass
class Sentence:
    """Text pieces added with :meth:`add`: a template's literal text is written by this module, each ``{}`` field is
    a value from the record (escaped for the output format) or a :class:`Cite`."""

    parts: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def add(self, template: str, *args: Any) -> "Sentence":
        self.parts.append((template, args))
        return self

    def add_if(self, condition: Any, template: str, *args: Any) -> "Sentence":
        """:meth:`add` when ``condition`` is true (the fields of a missing value are never formatted)."""
        return self.add(template, *args) if condition else self

    def render(self, literal: Callable[[str], str], value: Callable[[Any], str]) -> str:
        out = []
        for template, args in self.parts:
            values = iter(args)
            for text, name, _, _ in string.Formatter().parse(template):
                out.append(literal(text))
                if name is not None:
                    out.append(value(next(values)))
        return "".join(out)


Paragraph = tuple[str, list[Sentence]]


def get_in(data: Any, *path: str) -> Any:
    """``data[path[0]][path[1]]...``, or ``None`` where a key or a level is missing."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def num_text(x: Any) -> str:
    """A stored number as text: whole numbers without ``.0``, others to 4 significant digits."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def and_text(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c`` (empty for no items)."""
    items = list(items)
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

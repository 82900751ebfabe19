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


def parse_key_values(pairs: tuple[str, ...] | list[str], param_hint: str = "--restorer-option") -> dict:
    """``("precision=bf16", "cuda_graph=true", "eta=0.3")`` -> ``{"precision": "bf16", "cuda_graph": True,
    "eta": 0.3}``: values read as YAML scalars (numbers, true/false, null, text)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE (e.g. precision=bf16)", param_hint=param_hint)
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        if isinstance(parsed, (dict, list)):
            parsed = value  # a scalar option: keep the text, the backend says what it accepts
        out[key.strip().replace("-", "_")] = parsed
    return out


def restorer_options_option(func):
    """``--restorer-option KEY=VALUE`` (repeatable): any option a restorer's card declares (``restorever
    restorers`` lists them), routed to the restorers that take it."""
    return click.option("--restorer-option", "restorer_option", multiple=True, metavar="KEY=VALUE",
                        help="A restorer option its card declares, e.g. precision=bf16, cuda_graph=true "
                             "(repeatable; routed to the restorers that take it).")(func)

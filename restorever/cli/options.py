"""Parsers of comma-separated option values shared by the commands, and the options several commands share."""
from __future__ import annotations

import logging

import click

log = logging.getLogger(__name__)

#: the range of every seed option: a run's seed is recorded as 0..2**63 - 1 (``EvalConfig``, a protocol's ``seed``),
#: and numpy's generators refuse a negative one with a message that names no option
SEED = click.IntRange(0, 2 ** 63 - 1)


def split_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def parse_scales(text: str | None, param_hint: str = "--scales") -> list[int]:
    """``"4,x8,16"`` -> ``[4, 8, 16]``; anything else (a zero or negative scale included) is a usage error naming
    the option."""
    out = []
    for t in split_list(text):
        try:
            value = int(t.lower().lstrip("x"))
        except ValueError:
            raise click.BadParameter(f"{t!r} is not an integer scale (e.g. 4,8,16)", param_hint=param_hint) from None
        if value < 1:
            raise click.BadParameter(f"{t!r} is not a positive scale (e.g. 4,8,16)", param_hint=param_hint)
        out.append(value)
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


#: short flags for common card options: ``--vqfr-fidelity X`` is ``--restorer-option fidelity_ratio=X``. They
#: carry no type or range of their own: the card's :class:`~restorever.hub.OptionSpec` checks the value.
RESTORER_SHORTCUTS = {
    "--vqfr-fidelity": "fidelity_ratio",
    "--codeformer-fidelity": "fidelity_weight",
    "--gfpgan-noise": "noise",
    "--difface-start": "start_step",
    "--difface-steps": "steps",
    "--difface-eta": "eta",
}
_META_KEY = "restorever.restorer_shortcuts"


def _remember_shortcut(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta.setdefault(_META_KEY, {})[RESTORER_SHORTCUTS["--" + param.name.replace("_", "-")]] = value


def restorer_options_option(func):
    """``--restorer-option KEY=VALUE`` (repeatable): any option a restorer's card declares (``restorever
    restorers`` lists them), routed to the restorers that take it; plus the :data:`RESTORER_SHORTCUTS` flags. The
    command reads the merged options with :func:`restorer_options`."""
    for flag, key in reversed(RESTORER_SHORTCUTS.items()):
        func = click.option(flag, default=None, expose_value=False, callback=_remember_shortcut, metavar="VALUE",
                            help=f"Same as --restorer-option {key}=VALUE.")(func)
    return click.option("--restorer-option", "restorer_option", multiple=True, metavar="KEY=VALUE",
                        help="A restorer option its card declares, e.g. precision=bf16, cuda_graph=true "
                             "(repeatable; routed to the restorers that take it; `restorever restorers` lists "
                             "them).")(func)


def recognizer_options_option(func):
    """``--recognizer-option KEY=VALUE`` (repeatable): an option the recognizer's card declares (precision,
    channels_last, compile for the torch recognizers; ``restorever recognizers`` lists them)."""
    return click.option("--recognizer-option", "recognizer_option", multiple=True, metavar="KEY=VALUE",
                        help="A recognizer option its card declares, e.g. precision=fp32, compile=true "
                             "(repeatable; `restorever recognizers` lists them).")(func)


def restorer_options(pairs: tuple[str, ...] | list[str]) -> dict:
    """The ``--restorer-option`` pairs merged with the shortcut flags given (a shortcut wins over the same key);
    values are still text or YAML scalars here: the restorer's card converts and checks them."""
    shortcuts = click.get_current_context().meta.get(_META_KEY, {})
    return {**parse_key_values(pairs), **shortcuts}


def _load_plugins(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """Callback of ``--plugin``: register each module at once (eager, before any other option is read), so that
    the names it defines work in ``--restorer`` / ``--recognizer`` and in the listings; a module that cannot be
    loaded is a usage error naming it and the fix."""
    from ..pipeline.plugins import load_plugin

    for spec in value or ():
        try:
            loaded = load_plugin(spec)
        except (ImportError, TypeError, ValueError) as exc:
            raise click.BadParameter(" ".join(str(exc).split()), ctx=ctx, param=param) from None
        for kind, module, names in loaded:
            log.info("plugin %s: %s(s) %s", module, kind, ", ".join(names))
    return value


def plugin_option(func):
    """``--plugin MODULE`` (repeatable): a module of your own that defines restorers or recognizers (``CARDS`` and
    ``create``), registered before the command runs."""
    return click.option("--plugin", "plugins", multiple=True, metavar="MODULE", expose_value=False, is_eager=True,
                        callback=_load_plugins, help=HELP["plugin"])(func)


#: help of the options several commands share, so that each says the same (option name without dashes -> text)
HELP = {
    "protocol": "Protocol name (`restorever protocols`) or YAML file.",
    "data-root": "Folder holding the protocol's data [$RESTOREVER_DATA, else the cache's data/PROTOCOL, where "
                 "an online run downloads the archive the protocol names].",
    "pairs": "Pairs file (CSV for pairs-csv, .bin for insightface-bin).",
    "degradation": "Degradation preset (`restorever degradations`).",
    "limit-pairs": "Use N pairs, balanced over folds and classes: the first pairs of each (fold, class) group in "
                   "pairs-file order, taken in turn (no randomness).",
    "device": "auto, cpu, cuda, cuda:1 (or $RESTOREVER_DEVICE).",
    "batch-size": "Faces per batch of each stage (halved on out-of-memory).",
    "recognizer": "Recognizer name (`restorever recognizers`).",
    "recognizer-weights": "Recognizer weights: FILE or ROLE=FILE,...",
    "flip-test": "Sum the embeddings of each face and its mirror image.",
    "cache-dir": "Cache folder (default: $RESTOREVER_HOME/cache).",
    "top-k": "Gallery entries returned per probe (rank-k rates and the CMC up to k; at most 10,000).",
    "search-backend": "Nearest-neighbour search: faiss, numpy, or auto (faiss when installed, else numpy).",
    "index": "faiss index: exact (flat), or approximate inverted lists (ivf; flat when the gallery is too small "
             "for --ivf-nlist lists).",
    "ivf-nlist": "Inverted lists of an ivf index.",
    "nprobe": "Inverted lists an ivf search visits.",
    "degrade-side": "Degrade the probe (second) image of each pair, or both images.",
    "plugin": "Your own restorers or recognizers: a module (dotted name, or a .py file) that defines CARDS and "
              "create (docs/api.md); repeatable. Installed packages' plugins (entry points) need no flag.",
}

"""``restorever protocols | restorers | recognizers | weights``."""
from __future__ import annotations

import importlib

import click

from . import handle_errors


def _status(registry, name: str) -> str:
    module, card = registry._lookup(name)
    mod = importlib.import_module(module)
    if hasattr(mod, "weight_status"):
        status = mod.weight_status(name)
    else:
        from ..hub import weight_status

        status = weight_status(card)
    if not status:
        return "no weights needed"
    return "; ".join(f"{role} {text}" for role, text in status.items())


@click.command("protocols")
@click.option("--formats", "show_formats", is_flag=True, help="List the registered dataset formats instead.")
@handle_errors
def protocols_command(show_formats: bool):
    """List the protocols (YAML files) that can be named with --protocol."""
    from ..protocol import list_protocols, load_spec

    if show_formats:
        from ..formats import FORMATS

        for name in FORMATS.names():
            card = FORMATS.card(name)
            click.echo(f"{name:18s} {card.kind:15s} {card.description}")
        return
    for name, path in list_protocols().items():
        spec, _ = load_spec(str(path))
        click.echo(f"{name:18s} {spec.get('description', '')}")


def _list(registry, registry_kind: str = "") -> None:
    for name in registry.names():
        card = registry.card(name)
        click.echo(f"{name:26s} {card.description}")
        click.echo(f"{'':26s} weights: {_status(registry, name)}")
        # restorers take every default_kwargs key; recognizers only the declared ones (flip_test has its own flag)
        keys = list(card.default_kwargs) if registry_kind == "restorer" else list(card.option_specs)
        if keys:
            click.echo(f"{'':26s} options (--{registry_kind}-option KEY=VALUE, default after =):")
            for key in keys:
                spec = card.option_specs.get(key)
                click.echo(f"{'':28s} {key}={card.default_kwargs.get(key)}" + (f"  {spec.help}" if spec else ""))


@click.command("restorers")
@handle_errors
def restorers_command():
    """List restorers with the status of their weights and the options their cards declare."""
    from ..restorers import REGISTRY

    _list(REGISTRY, "restorer")


@click.command("recognizers")
@handle_errors
def recognizers_command():
    """List recognizers with the status of their weights and the options their cards declare."""
    from ..recognizers import REGISTRY

    _list(REGISTRY, "recognizer")


def _card(name: str):
    from ..errors import UnknownNameError
    from ..recognizers import REGISTRY as REC
    from ..restorers import REGISTRY as RES

    for registry in (RES, REC):
        if name in registry.names():
            return registry.card(name)
    raise UnknownNameError(f"unknown model {name!r}; see `restorever restorers` and `restorever recognizers`")


@click.group("weights")
def weights() -> None:
    """Weight files: where they go, and whether they are intact."""


@weights.command("list")
@handle_errors
def weights_list():
    """Every weight file of every backend, with URL and sha256."""
    from ..recognizers import REGISTRY as REC
    from ..restorers import REGISTRY as RES

    for registry in (RES, REC):
        for name in registry.names():
            for role, wf in registry.card(name).weights.items():
                click.echo(f"{name:26s} {role:16s} {wf.filename}  {wf.url or wf.origin_url or '-'}  "
                           f"sha256={wf.sha256 or 'unpublished'}  licence: {wf.license}")


@weights.command("path")
@click.argument("name")
@handle_errors
def weights_path(name):
    """Where NAME's weight files are expected."""
    from ..hub import get_cache_dir

    card = _card(name)
    for role, wf in card.weights.items():
        click.echo(f"{role}: {get_cache_dir() / 'weights' / card.name / wf.filename}")


@weights.command("verify")
@click.argument("name")
@handle_errors
def weights_verify(name):
    """Check the sha256 of NAME's cached weight files."""
    from ..hub import resolve_weights

    card = _card(name)
    for role in card.weights:
        path = resolve_weights(card, role, download=False)
        click.echo(f"{role}: ok {path}")


COMMANDS = [protocols_command, restorers_command, recognizers_command, weights]

"""``restorever protocols | restorers | recognizers | weights``."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from ..errors import RestoreverError
from . import handle_errors
from .options import plugin_option


def _role_status(registry, name: str) -> dict[str, str]:
    """``{role: "present: PATH" | "missing: ..."}``: the backend's own ``weight_status`` where it keeps its files
    elsewhere (dlib, insightface packs), else the weights cache's."""
    hook = registry.hook(name, "weight_status")
    if hook is not None:
        return hook(name)
    from ..hub import weight_status

    return weight_status(registry.card(name))


def _status(registry, name: str) -> str:
    status = _role_status(registry, name)
    if not status:
        return "no weights needed"
    return "; ".join(f"{role} {text}" for role, text in status.items())


@click.command("protocols")
@click.option("--formats", "show_formats", is_flag=True, help="List the registered dataset formats instead.")
@handle_errors
def protocols_command(show_formats: bool):
    """List the protocols (YAML files) that can be named with --protocol."""
    from ..protocol import list_protocols, load_spec, shadowed_protocols

    if show_formats:
        from ..formats import FORMATS

        for name in FORMATS.names():
            card = FORMATS.card(name)
            click.echo(f"{name:18s} {card.kind:15s} {card.description}")
        return
    from ..errors import RestoreverError

    broken = 0
    shadowed = shadowed_protocols()
    for name, path in list_protocols().items():
        try:
            spec, _ = load_spec(str(path))
        except RestoreverError as exc:  # one broken file of the search path does not hide the others
            broken += 1
            click.echo(f"{name:18s} (cannot be used: {' '.join(str(exc).split())})")
            continue
        hides = (f" [uses {path}; shadows {', '.join(str(p) for p in shadowed[name])}]" if name in shadowed
                 else "")  # which file the name runs, and what it hides
        click.echo(f"{name:18s} {spec.get('description', '')}{hides}")
    if broken:
        raise click.exceptions.Exit(2)


def _list(registry, registry_kind: str = "") -> None:
    for name in registry.names():
        card = registry.card(name)
        click.echo(f"{name:26s} {card.description}")
        origin = registry.origin(name)
        if origin is not None:  # a built-in says nothing; a plugin says which module, file and package
            package = f", package {origin['package']} {origin.get('version') or ''}".rstrip() \
                if origin.get("package") else ""
            click.echo(f"{'':26s} from: plugin {origin['module']} ({origin['file']}{package})")
        click.echo(f"{'':26s} weights: {_status(registry, name)}")
        # restorers take every default_kwargs key; recognizers only the declared ones (flip_test has its own flag)
        keys = list(card.default_kwargs) if registry_kind == "restorer" else list(card.option_specs)
        if keys:
            click.echo(f"{'':26s} options (--{registry_kind}-option KEY=VALUE, default after =):")
            for key in keys:
                spec = card.option_specs.get(key)
                click.echo(f"{'':28s} {key}={card.default_kwargs.get(key)}" + (f"  {spec.help}" if spec else ""))


@click.command("restorers")
@plugin_option
@handle_errors
def restorers_command():
    """List restorers with the status of their weights and the options their cards declare."""
    from ..restorers import REGISTRY

    _list(REGISTRY, "restorer")


@click.command("degradations")
@handle_errors
def degradations_command():
    """List the degradation presets with their rules (blur sigma and noise in pixels / 0-255 units of the 512 crop,
    JPEG quality, the scales of the grid they come from) and their source."""
    from ..degradation_params import PRESETS

    def rule(d: object) -> str:
        if isinstance(d, dict):
            (kind, (lo, hi)), = d.items()
            return f"{kind} [{lo:g}, {hi:g}]"
        return "{" + ", ".join(f"{v:g}" for v in d) + "}"

    for name, preset in PRESETS.items():
        info = preset.describe()
        click.echo(f"{name:18s} {info['source']}; {info['paper']}")
        click.echo(f"{'':18s} blur sigma {rule(info['sigma'])} (kernel {info['kernel_size']}, isotropic p "
                   f"{info['iso_prob']:g}), noise sigma {rule(info['noise'])}, JPEG quality {rule(info['jpeg'])}, "
                   f"scale rule {rule(info['scale'])}")
    click.echo("--scales picks the scales of a run; the other rules are drawn per item from (seed, item, scale). "
               "difface-test at x32 (the default sweep's last scale) applies the ICLR'23 grid beyond its largest "
               "scale, x30; difface-journal is the grid whose scales include x32.")


@click.command("recognizers")
@plugin_option
@handle_errors
def recognizers_command():
    """List recognizers with the status of their weights and the options their cards declare."""
    from ..recognizers import REGISTRY

    _list(REGISTRY, "recognizer")


def _recognizer_flag(command):
    """Weight errors of a recognizer name ``--recognizer-weights``, the flag its runs take files with (the hub's
    messages name the restorers' ``--weights``)."""
    @functools.wraps(command)
    def wrapper(name, *args, **kwargs):
        from ..errors import with_weights_flag

        registry, _ = _backend(name)
        try:
            return command(name, *args, **kwargs)
        except (RestoreverError, ValueError) as exc:
            if registry is _restorers():
                raise
            raise with_weights_flag(exc, "--recognizer-weights") from exc

    return wrapper


def _backend(name: str):
    """``(registry, card)`` of a restorer or recognizer name."""
    from ..errors import unknown_name
    from ..recognizers import REGISTRY as REC
    from ..restorers import REGISTRY as RES

    for registry in (RES, REC):
        if name in registry.names():
            return registry, registry.card(name)
    raise unknown_name("model", name, [*RES.names(), *REC.names()],
                       listing="`restorever restorers` and `restorever recognizers` list them")


@click.group("weights")
def weights() -> None:
    """Weight files: where they go, and whether they are intact."""


@weights.command("list")
@plugin_option
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
@plugin_option
@handle_errors
@_recognizer_flag
def weights_path(name):
    """Where NAME's weight files are (the files a run would load), or where they are expected. A cached file whose
    sha256 is not the one the card publishes is named unusable (exit status 2)."""
    from ..cache_dir import refetch_fix
    from ..errors import WeightsHashError, WeightsNotFoundError
    from ..hub import locate_backend_weights

    registry, card = _backend(name)
    if not card.weights:
        click.echo(f"{name} takes no weight files")
        return
    bad = ""
    try:
        found = locate_backend_weights(registry, name)
    except WeightsNotFoundError:  # the status below still says where each file is
        found = {}
    except WeightsHashError as exc:  # a file is there but is not the card's: never call it present
        found, bad = {}, str(exc)
    status = _role_status(registry, name)
    for role in card.weights:
        line = f"{role}: {found[role]}" if role in found else f"{role}: {status[role]}"
        if bad and status[role].startswith("present: ") and status[role][len("present: "):] in bad:
            line = (f"{role}: unusable {status[role][len('present: '):]} (its sha256 is not the card's: "
                    f"{refetch_fix(name)})")
        click.echo(line)
    if bad:
        raise click.exceptions.Exit(2)  # as `weights verify` exits on the same file


def _build_check(registry, name: str, files: dict) -> None:
    """Build backend ``name`` on the CPU from ``files`` (``{role: path}``): the strict checks a run makes (layout,
    shapes, dtypes, archive integrity) raise here, naming the file."""
    registry.create(name, weights={role: str(path) for role, path in files.items()}, device="cpu")


@weights.command("verify")
@click.argument("name")
@plugin_option
@handle_errors
@_recognizer_flag
def weights_verify(name):
    """Check that NAME's weight files (the ones a run would load) are there, with the card's sha256, and that NAME
    can be built from them (every key, shape and dtype of the checkpoint)."""
    from ..errors import WeightsHashError
    from ..hub import locate_backend_weights, sha256_file

    registry, card = _backend(name)
    if not card.weights:
        click.echo(f"{name} takes no weight files")
        return
    paths = locate_backend_weights(registry, name)
    for role, path in paths.items():
        expected = card.weights[role].sha256
        if not expected:
            click.echo(f"{role}: present {path} (no published sha256 to check)")
            continue
        actual = sha256_file(path)
        if actual != expected.lower():
            raise WeightsHashError(f"{name}: {path} has sha256 {actual}, the card lists {expected}; replace the file")
        click.echo(f"{role}: ok {path}")
    _build_check(registry, name, paths)
    click.echo(f"{name}: built from these files (they load as a run loads them)")


@weights.command("add")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--role", default=None, help="Which of NAME's files FILE is (for backends with several: "
                                           "`restorever weights list`).")
@plugin_option
@handle_errors
@_recognizer_flag
def weights_add(name, file, role):
    """Copy a weight file you downloaded yourself into the weights cache, where runs find it: checked against the
    card's sha256 where one is published, and by building NAME from it (with NAME's other files, once they are
    there). A file that fails a check is not added."""
    from ..errors import RestoreverError, WeightsHashError, WeightsNotFoundError
    from ..hub import copy_into_cache, get_cache_dir, load_checkpoint, locate_backend_weights, sha256_file

    registry, card = _backend(name)
    roles = list(card.weights)
    if not roles:
        raise click.UsageError(f"{name} takes no weight files")
    if role is None and len(roles) > 1:
        raise click.UsageError(f"{name} has several weight files ({', '.join(roles)}); say which with --role")
    role = role or roles[0]
    if role not in card.weights:
        raise click.BadParameter(f"{name} has no weight file {role!r} (it has {', '.join(roles)})",
                                 param_hint="--role")
    flag = "--weights" if registry is _restorers() else "--recognizer-weights"
    expected = card.weights[role].sha256
    if expected and sha256_file(file).lower() != expected.lower():
        raise WeightsHashError(f"{file}: sha256 differs from the one {name} lists for {card.weights[role].filename} "
                               f"({expected}); not added (pass the file with {flag} to use it anyway)")
    cache = get_cache_dir().resolve()
    try:
        current = locate_backend_weights(registry, name).get(role)
    except WeightsNotFoundError:
        current = None
    if current is not None and cache not in Path(current).resolve().parents:
        raise RestoreverError(f"{name} loads its {role} file from {current}, not from the weights cache, so runs "
                              f"would not see {file}; not added (pass it with {flag} {role}={file} instead)")
    try:
        files = locate_backend_weights(registry, name, {role: file})
    except WeightsNotFoundError as exc:  # the other files are not there yet: check what one file alone can show
        check_one = registry.hook(name, "check_weight_file")
        if check_one is not None:  # the backend builds the part this file fills (DifFace: the UNet or the SwinIR)
            check_one(name, role, file)
            click.echo(f"note: {role} built from {file}; {name} as a whole is built once its other files are in "
                       f"place ({exc})", err=True)
        else:
            if str(file).endswith((".pth", ".pt", ".ckpt")):
                load_checkpoint(file)
            click.echo(f"note: {name} was not built to check {file} ({exc}); `restorever weights verify {name}` "
                       f"checks it once every file is in place", err=True)
    else:
        _build_check(registry, name, files)
    click.echo(f"{role}: {copy_into_cache(card, role, file)}")


def _restorers():
    from ..restorers import REGISTRY

    return REGISTRY


@weights.command("download")
@click.argument("name")
@plugin_option
@handle_errors
@_recognizer_flag
def weights_download(name):
    """Download NAME's weight files into the weights cache (where the card has a URL; checked against its sha256)."""
    from ..hub import locate_backend_weights, resolve_weights

    registry, card = _backend(name)
    if not card.weights:
        click.echo(f"{name} takes no weight files")
        return
    if registry.hook(name, "locate_weight_files") is not None:  # packs and packages: fetched where they are used
        registry.create(name, device="cpu")
        paths = locate_backend_weights(registry, name)
    else:
        paths = {role: resolve_weights(card, role, download=True) for role in card.weights}
    for role, path in paths.items():
        click.echo(f"{role}: {path}")


COMMANDS = [protocols_command, restorers_command, recognizers_command, degradations_command, weights]

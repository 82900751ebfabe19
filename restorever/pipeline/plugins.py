"""Plugins named on the command line (``--plugin MODULE``), and where a run's models come from.

A plugin is a module that defines ``CARDS`` and ``create``, or, holding both kinds, ``RESTORER_CARDS``,
``RECOGNIZER_CARDS`` and one ``create`` (docs/api.md, "Your own recognizer or restorer"). The command line registers
it in its own process with :func:`load_plugin`; every ``torchrun`` rank parses the same arguments, so each loads it.
:func:`plugin_of` is the part of a run's identity that says which plugin file made a model, so that cached entries
of a changed plugin are never reused.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from .._registry import KIND_CARDS, import_plugin, module_cards, split_kinds
from ..errors import did_you_mean


KINDS = ("restorer", "recognizer")


def load_plugin(spec: str) -> list[tuple[str, str, list[str]]]:
    """Register plugin ``spec`` (a dotted module name, importable or in the current folder, or a ``.py`` file) with
    the registry of each kind it holds; returns ``[(kind, module, names)]``, one per kind (:func:`plugin_kinds`).
    Errors (``ImportError``, ``TypeError``, ``ValueError``) name the plugin and the fix."""
    module = _import_name(spec)
    try:
        mod = import_plugin(module, f"plugin {spec!r}", "give the dotted name of a module on sys.path or in the "
                                                          "current folder, or the path of its .py file")
    except ImportError as exc:
        missing = getattr(exc.__cause__, "name", None)  # the module Python did not find, when that was the cause
        if missing and (module == missing or module.startswith(missing + ".")):  # the plugin itself, not its import
            raise ImportError(f"{exc}{_nearby_modules(module)}") from exc.__cause__
        raise
    out = []
    for kind in plugin_kinds(mod, spec):
        _registry(kind).register_module(module)
        out.append((kind, module, sorted(module_cards(mod, kind)[1])))
    return out


def _nearby_modules(module: str) -> str:
    """``"; did you mean ...?"`` naming modules spelt like dotted ``module``: the modules of its parent package
    when that imports, else those of the current folder (where a lab's plugin usually sits); empty when none is
    close. Nothing is imported to find them."""
    import pkgutil

    parent, _, _ = module.rpartition(".")
    try:
        found = importlib.util.find_spec(parent) if parent else None
    except (ImportError, ValueError):
        found = None
    folders = list(getattr(found, "submodule_search_locations", None) or ([] if parent else [os.getcwd()]))
    names = [f"{parent}.{m.name}" if parent else m.name for m in pkgutil.iter_modules(folders)]
    return did_you_mean(module, names)


def _import_name(spec: str) -> str:
    """The dotted name ``spec`` is imported by: a ``.py`` file's folder is put on ``sys.path`` (so that torchrun's
    ranks and a second import find the same module); a dotted name not found on ``sys.path`` is looked for in the
    current folder too, as ``python -m`` does (the ``restorever`` script does not put it on the path)."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = Path(spec).expanduser()
        if not path.is_file() or path.suffix != ".py":
            beside = sorted(p for p in path.parent.glob("*.py") if p.name != "__init__.py") \
                if path.parent.is_dir() else []
            hint = did_you_mean(spec, [str(p) if path.parent != Path() else p.name for p in beside])
            raise ImportError(f"plugin file {spec} not found: give a .py file that defines CARDS and create, or the "
                              f"dotted name of an importable module{hint}")
        module, folder = path.stem, str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.append(folder)
        found = importlib.util.find_spec(module)
        origin = getattr(found, "origin", None)
        if origin is None or os.path.realpath(origin) != os.path.realpath(path):
            raise ImportError(f"plugin file {spec}: the name {module!r} imports {origin or 'nothing'} instead; "
                              f"rename the file (e.g. {module}_plugin.py)")
        return module
    if importlib.util.find_spec(spec.split(".")[0]) is None and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    return spec


def plugin_kinds(mod: Any, spec: str) -> tuple[str, ...]:
    """The kinds a plugin holds: ``("restorer", "recognizer")`` (those present, in that order) for a module that
    defines ``RESTORER_CARDS`` / ``RECOGNIZER_CARDS`` and no ``CARDS``; else one, the module's ``KIND``, else the
    kind of the base classes it holds."""
    split = split_kinds(mod)
    declared = getattr(mod, "KIND", None)
    if split:
        if declared is not None and declared not in split:
            raise TypeError(f"plugin {spec!r} sets KIND = {declared!r} but defines {KIND_CARDS[split[0]]}: drop KIND "
                            f"(RESTORER_CARDS and RECOGNIZER_CARDS say which models are which)")
        return split
    if declared is not None:
        if declared not in KINDS:
            raise TypeError(f"plugin {spec!r} sets KIND = {declared!r}; it must be 'restorer' or 'recognizer'")
        return (declared,)
    from ..recognizers.base import Recognizer
    from ..restorers.base import Restorer

    classes = [v for v in vars(mod).values() if isinstance(v, type)]
    kinds = [kind for kind, base in (("restorer", Restorer), ("recognizer", Recognizer))
             if any(issubclass(c, base) for c in classes)]
    if len(kinds) != 1:
        found = "both Restorer and Recognizer classes" if kinds else "no Restorer or Recognizer class"
        both = ("; or, to keep both kinds in it, replace CARDS by RESTORER_CARDS (its restorers' cards) and "
                "RECOGNIZER_CARDS (its recognizers'), with one create(name) for all") if kinds else ""
        raise TypeError(f"plugin {spec!r} holds {found}: set KIND = 'restorer' or KIND = 'recognizer' in it"
                        f"{both}")
    return (kinds[0],)


def _registry(kind: str):
    if kind == "restorer":
        from ..restorers import REGISTRY
    else:
        from ..recognizers import REGISTRY
    return REGISTRY


def plugin_of(kind: str, name: str) -> dict[str, Any] | None:
    """The part of a run's identity that names the plugin behind model ``name``: ``{"module", "sha256"[,
    "package", "version"][, "helpers"]}`` (no file path: a moved checkout keeps its cache; ``helpers``: the
    sha256 of each helper module file, by its path relative to the plugin's folder), None for a built-in model."""
    origin = _registry(kind).origin(name)
    if origin is None:
        return None
    return {k: origin[k] for k in ("module", "sha256", "package", "version", "helpers")
            if origin.get(k) is not None}

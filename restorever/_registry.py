"""A small lazy registry: names map to backend modules that are imported only when needed.

Each backend module defines ``CARDS: dict[str, ModelCard]`` and ``create(name, **kwargs)``. ``import restorever``
imports no backend; listing imports each backend module once (torch is imported then, and nothing else heavy).
Plugins are modules added with :meth:`Registry.register_module`, or declared by installed packages as entry points
of the registry's group (``restorever.restorers``, ``restorever.recognizers``): those are read only when a name is
not found or when the names are listed, and one that cannot be loaded is a warning naming its package.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
from typing import TYPE_CHECKING, Any, Callable

from .errors import ConfigError, unknown_name

if TYPE_CHECKING:  # annotations only: the registry sits below hub in the layers
    from .hub import ModelCard


log = logging.getLogger(__name__)

_REGISTRIES: list["Registry"] = []  # every registry made, for "that name is a <kind>" hints
_BACKEND_PACKAGES = ("restorever.restorers", "restorever.recognizers")  # make their registries, for those hints
_PLUGIN_GROUPS = {"restorer": "restorever.restorers", "recognizer": "restorever.recognizers"}  # entry-point groups
KIND_CARDS = {"restorer": "RESTORER_CARDS", "recognizer": "RECOGNIZER_CARDS"}  # the cards of a module of both kinds


class Registry:
    """Names -> cards, collected lazily from a list of backend modules."""

    def __init__(self, kind: str, modules: list[str], *, listing: str | None = None, group: str | None = None):
        self.kind = kind
        self.listing = listing or f"restorever {kind}s"  # the command that lists the names, for error messages
        self.group = group  # entry-point group installed packages declare plugins in (None: no entry points)
        self._builtin = tuple(modules)
        self._modules = list(modules)
        self._cards: dict[str, tuple[str, ModelCard]] | None = None
        self._origins: dict[str, dict[str, Any]] = {}  # plugin module -> origin (see origin())
        self._entry_points_read = group is None
        _REGISTRIES.append(self)

    def register_module(self, module: str, *, package: tuple[str, str | None] | None = None) -> None:
        """Add a backend module (a plugin) by dotted path. It is imported and checked at once: it must define
        ``CARDS`` (a dict name -> card) and ``create(name, **kwargs)`` -- a module holding both kinds
        ``RESTORER_CARDS`` and ``RECOGNIZER_CARDS`` instead of ``CARDS``, each registry taking the dict of its kind
        (:func:`module_cards`), no name in both -- and none of its names may be taken already
        (a plugin never replaces a built-in model silently). Registering the same module again does nothing.
        ``package``: ``(distribution, version)`` of the installed package that declares it, for messages (the
        package :meth:`origin` reports is found from the module alone, however it was registered)."""
        if module in self._modules:
            return
        where = f"{self.kind} plugin {module!r}" + (f" (package {package[0]})" if package else "")
        mod = import_plugin(module, where)
        attr, cards = module_cards(mod, self.kind)
        if not isinstance(cards, dict) or not cards:
            raise TypeError(f"{where} must define {attr}, a dict of name -> card, got {type(cards).__name__}")
        if attr != "CARDS":
            both = sorted(set(getattr(mod, "RESTORER_CARDS", None) or ()) &
                          set(getattr(mod, "RECOGNIZER_CARDS", None) or ()))
            if both:
                raise ValueError(f"{where} names {', '.join(both)} in both RESTORER_CARDS and RECOGNIZER_CARDS: its "
                                 f"one create(name) cannot tell which to build; give the models other names")
        if not callable(getattr(mod, "create", None)):
            raise TypeError(f"{where} must define create(name, **kwargs), which builds the model of a card's name")
        known = self._load()
        taken = sorted(name for name in cards if name in known)
        if taken:
            raise ValueError(f"{where} names {', '.join(taken)}, already registered by "
                             f"{', '.join(sorted({known[n][0] for n in taken}))}: give your models other names")
        self._modules.append(module)
        self._cards = None

    def _read_entry_points(self) -> None:
        """Register the plugin modules installed packages declare in :attr:`group` (once per process). A plugin
        that cannot be loaded, or names a model already registered, is one warning naming its package."""
        if self._entry_points_read:
            return
        self._entry_points_read = True
        from importlib.metadata import entry_points

        try:
            found = list(entry_points(group=self.group))
        except Exception as exc:  # noqa: BLE001 - broken package metadata must not break the registry
            log.warning("%s plugins: the installed packages' entry points cannot be read (%s)", self.kind, exc)
            return
        for point in found:
            dist = getattr(point, "dist", None)
            package = ((dist.metadata["Name"] or "?"), dist.version) if dist is not None else ("?", None)
            try:
                module = entry_point_module(point, self.kind)
                if module is None:
                    name = point.name
                    raise TypeError(f"its entry point {name} = {point.value} names an attribute other than its "
                                    f"cards ({point.attr}); name the module that defines CARDS and create "
                                    f"({name} = {point.module}) or its cards ({name} = {point.module}:CARDS, "
                                    f":{KIND_CARDS.get(self.kind, 'CARDS')} in a module of both kinds)")
                self.register_module(module, package=package)
            except Exception as exc:  # noqa: BLE001 - one broken plugin warns, the others and the built-ins work
                log.warning("package %s%s: %s; its %s plugin %s is skipped (fix or uninstall the package)",
                            package[0], f" {package[1]}" if package[1] else "", " ".join(str(exc).split()),
                            self.kind, point.name)

    def _load(self) -> dict[str, tuple[str, ModelCard]]:
        if self._cards is None:
            cards: dict[str, tuple[str, ModelCard]] = {}
            for module in self._modules:
                mod = importlib.import_module(module)
                for name, card in module_cards(mod, self.kind)[1].items():
                    cards.setdefault(name, (module, card))  # the first module to name a card keeps it
            self._cards = cards
        return self._cards

    def names(self) -> list[str]:
        """Every registered name, installed packages' plugins included."""
        self._read_entry_points()
        return list(self._load())

    def origin(self, name: str) -> dict[str, Any] | None:
        """Where the model ``name`` comes from: None for a built-in; for a plugin ``{"module", "file", "sha256"}``
        (the module file's path and hex sha256), ``"helpers"`` (:func:`helper_files`, where it has any), plus
        ``"package"`` and ``"version"`` of the installed package that holds or declares it, where one does: the same
        whether the module came by ``--plugin``, an entry point or :meth:`register_module`, since this is part of a
        plugin run's cache keys."""
        module, _ = self._lookup(name)
        if module in self._builtin:
            return None
        if module not in self._origins:
            self._origins[module] = module_origin(module)
        return dict(self._origins[module])

    def card(self, name: str) -> ModelCard:
        return self._lookup(name)[1]

    def _lookup(self, name: str) -> tuple[str, ModelCard]:
        cards = self._load()
        if name not in cards and not self._entry_points_read:  # an installed package's plugin may define it
            self._read_entry_points()
            cards = self._load()
        if name not in cards:
            error = unknown_name(self.kind, name, cards, listing=f"`{self.listing}` lists all {len(cards)}")
            other = _registry_naming(name, besides=self)
            if other is not None:  # "create_recognizer('codeformer')": say what it is
                error = type(error)(f"{error}; {name} is a {other.kind} (`{other.listing}`), not a {self.kind}")
            raise error
        return cards[name]

    def factory(self, name: str) -> Callable[..., Any]:
        module, _ = self._lookup(name)
        return getattr(importlib.import_module(module), "create")

    def create(self, name: str, **kwargs: Any) -> Any:
        """``create(name, **kwargs)`` of the backend; an argument it does not take is a ``TypeError`` naming the
        backend and the arguments it does take (not the bare "unexpected keyword argument" of its factory)."""
        factory = self.factory(name)
        params = inspect.signature(factory).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(kwargs) - set(params))
            if unknown:
                takes = [p for p, v in params.items()
                         if p != "name" and v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)]
                raise TypeError(f"{self.kind} {name} takes no argument(s) {', '.join(unknown)}; it takes "
                                f"{', '.join(takes)}")
        return factory(name, **kwargs)

    def created(self, name: str, model: Any, method: str, argument: str) -> Any:
        """``model``, what ``create(name)`` returned, when it has ``method`` (the one the pipeline calls first);
        else a :class:`ConfigError` on ``argument`` naming the file of the backend's ``create``: a plugin's create
        that forgets its ``return`` stopped later with "'NoneType' object has no attribute ...", read as a bug; one
        that returns its model's class, not an instance, stopped at the first batch with a missing ``self``."""
        is_class = isinstance(model, type)
        if callable(getattr(model, method, None)) and not is_class:
            return model
        factory = self.factory(name)
        try:
            where = inspect.getsourcefile(factory) or factory.__module__
        except TypeError:  # a builtin or C function
            where = getattr(factory, "__module__", "?")
        if is_class:
            raise ConfigError(argument, f"{name}: create() in {where} returned the class {model.__name__}, not a "
                                        f"{self.kind}; return an instance of it, {model.__name__}(...)")
        raise ConfigError(argument, f"{name}: create() in {where} returned {type(model).__name__}, not a {self.kind} "
                                    f"(it has no {method}()); end it with `return` of the model it builds")

    def hook(self, name: str, attr: str) -> Callable[..., Any] | None:
        """The optional function ``attr`` of the module that registers ``name`` (None where it has none)."""
        module, _ = self._lookup(name)
        return getattr(importlib.import_module(module), attr, None)


def split_kinds(mod: Any) -> tuple[str, ...]:
    """The kinds a module holding both kinds declares cards for (``RESTORER_CARDS``, ``RECOGNIZER_CARDS``, one
    ``create`` for all, and no ``CARDS``), in that order; ``()`` for a module of one kind: one with ``CARDS`` is
    one, as plugins always were, whatever other names it defines."""
    return () if hasattr(mod, "CARDS") else tuple(kind for kind, attr in KIND_CARDS.items() if hasattr(mod, attr))


def module_cards(mod: Any, kind: str) -> tuple[str, Any]:
    """``(attribute, value)``: the cards module ``mod`` gives the registry of ``kind``: its ``KIND_CARDS``
    attribute in a module of both kinds (:func:`split_kinds`), else ``CARDS``."""
    attr = KIND_CARDS.get(kind, "CARDS") if split_kinds(mod) else "CARDS"
    return attr, getattr(mod, attr, None)


def entry_point_module(point: Any, kind: str) -> str | None:
    """The plugin module an entry point of ``kind``'s group declares: ``pkg.models``, or ``pkg.models:CARDS``
    (``:RESTORER_CARDS`` / ``:RECOGNIZER_CARDS`` for a module of both kinds), the usual packaging form that names
    the module's cards; both register the module ``pkg.models`` (the same origin as ``--plugin pkg.models``). None
    for any other attribute (a function, a class: the registry needs the module's cards and its create)."""
    attr = getattr(point, "attr", None)
    return point.module if not attr or attr in ("CARDS", KIND_CARDS.get(kind)) else None


def import_plugin(module: str, where: str, fix: str = "give the dotted name of a module on sys.path (the one "
                                                       "that defines CARDS and create)") -> Any:
    """Import plugin ``module``; any failure is an ``ImportError`` that starts with ``where`` (and, for a module not
    found, ends with ``fix``), never the plugin's bare traceback."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{where} cannot be imported ({exc}); {fix}") from exc
    except Exception as exc:  # noqa: BLE001 - the plugin's own code failed: name it, not a bare traceback
        raise ImportError(f"{where} failed while it was imported ({type(exc).__name__}: {exc})") from exc


def module_origin(module: str) -> dict[str, Any]:
    """``{"module", "file", "sha256"[, "package", "version"][, "helpers"]}`` of an importable module: its source
    file and that file's hex sha256 (None for a module without one), the installed distribution that holds the file
    or declares the module as a plugin entry point, with its version, and its helper modules' files
    (:func:`helper_files`)."""
    mod = importlib.import_module(module)
    path = getattr(mod, "__file__", None)
    digest = None
    if path:
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    out: dict[str, Any] = {"module": module, "file": path, "sha256": digest}
    package = _installed_package_of(module, path) if path else None
    if package is not None:
        out["package"], out["version"] = package
    helpers = helper_files(mod) if path else {}
    if helpers:
        out["helpers"] = helpers
    return out


def helper_files(mod: Any) -> dict[str, str]:
    """``{path: sha256}`` of the plugin's own helper modules: those it imports (any ``import`` statement of its
    source, inside a function too) or its namespace refers to (a module, or a class or function defined in one) and
    their parent packages, followed from module to module, that are the user's code -- a ``.py`` file outside
    ``site-packages``/``dist-packages``, the standard library and restorever (installed packages count by their
    version) -- by path relative to the plugin file's folder, in ``/`` form, sorted; the same however the plugin was
    loaded (``--plugin lab.x``, ``lab/x.py``) and whatever else the process imported (a package's submodules count
    when its own source imports them, not because another plugin did). An edited helper then changes the plugin's
    keys as an edited plugin file does. The packages that hold the plugin itself are not helpers; a helper file that
    cannot be read is a warning and left out."""
    import os
    import sysconfig

    folder = os.path.dirname(os.path.realpath(mod.__file__))
    system = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
    system.add(os.path.dirname(os.path.realpath(__file__)))  # restorever's package folder
    memo: dict[str, tuple[Any, str | None, Any]] = {mod.__name__: (mod, mod.__file__, getattr(mod, "__path__", None))}

    def user_file(path: Any) -> str | None:
        if not isinstance(path, str) or not path.endswith(".py"):
            return None
        path = os.path.realpath(path)
        if set(path.split(os.sep)) & {"site-packages", "dist-packages"}:
            return None
        return None if any(path.startswith(d + os.sep) for d in system) else path

    names = mod.__name__.split(".")
    seen, todo, out = {".".join(names[:i]) for i in range(1, len(names) + 1)}, [mod.__name__], {}
    while todo:
        name = todo.pop()
        found, path, search = _locate(name, memo)
        path = user_file(path) if name != mod.__name__ else os.path.realpath(mod.__file__)
        if path is None:
            continue
        if name != mod.__name__:
            try:
                with open(path, "rb") as fh:
                    out[os.path.relpath(path, folder).replace(os.sep, "/")] = hashlib.sha256(fh.read()).hexdigest()
            except OSError as exc:
                log.warning("plugin %s: its helper %s cannot be read (%s); it is left out of the plugin's cache keys",
                            mod.__name__, path, exc)
                continue
        for ref in _imported_names(path, name, search is not None) | _namespace_names(found):
            parts = ref.split(".")
            for parent in (".".join(parts[:i]) for i in range(len(parts), 0, -1)):  # the module and its packages
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
    return dict(sorted(out.items()))


def _locate(name: str, memo: dict[str, tuple[Any, str | None, Any]]) -> tuple[Any, str | None, Any]:
    """``(module or None, source path or None, submodule search path or None)`` of module ``name``: the imported
    module where there is one, else where the import system would find it (without importing it); nothing for a
    name that is not a module or whose ``sys.modules`` entry is not a module object."""
    import sys
    import types
    from importlib.machinery import PathFinder

    if name in memo:
        return memo[name]
    entry = sys.modules.get(name)
    if isinstance(entry, types.ModuleType):
        out = (entry, getattr(entry, "__file__", None), getattr(entry, "__path__", None))
    elif name in sys.modules:  # a stand-in object or a blocked import
        out = (None, None, None)
    else:
        parent, _, last = name.rpartition(".")
        where = _locate(parent, memo)[2] if parent else None
        spec = None
        if not parent or where is not None:
            try:
                spec = PathFinder.find_spec(last, list(where) if where is not None else None)
            except (ImportError, ValueError, OSError):
                spec = None
        out = (None, spec.origin if spec is not None and spec.has_location else None,
               spec.submodule_search_locations if spec is not None else None)
    memo[name] = out
    return out


def _imported_names(path: str, name: str, is_package: bool) -> set[str]:
    """The dotted names every ``import`` statement of the source ``path`` (module ``name``) names, relative ones
    resolved; for ``from a import b`` both ``a`` and ``a.b`` (which may be an attribute, not a module)."""
    import ast

    try:
        with open(path, "rb") as fh:
            tree = ast.parse(fh.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return set()
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if not package:
                    continue
                try:
                    base = importlib.util.resolve_name("." * node.level + base, package)
                except (ImportError, ValueError):
                    continue
            if base:
                out.add(base)
                out.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return out


def _namespace_names(found: Any) -> set[str]:
    """The modules ``found``'s namespace refers to: a module object, or the module of a class or function. A
    package's own submodules are not taken from it (the import system puts every imported submodule there, whoever
    imported it): its source's import statements name those it uses."""
    import types

    if not isinstance(found, types.ModuleType):
        return set()
    own = f"{found.__name__}." if hasattr(found, "__path__") else None
    out = set()
    for value in list(vars(found).values()):
        if isinstance(value, types.ModuleType):
            ref = getattr(value, "__name__", None)
            if own is not None and isinstance(ref, str) and ref.startswith(own):
                continue
        elif isinstance(value, (type, types.FunctionType)):
            ref = getattr(value, "__module__", None)
        else:
            continue
        if isinstance(ref, str) and ref:
            out.add(ref)
    return out


def _installed_package_of(module: str, path: str) -> tuple[str, str | None] | None:
    """``(distribution, version)`` of the installed package whose file list holds ``path``, else of the one whose
    ``restorever.*`` entry points name ``module`` (an editable install lists no module files); None for a module of
    no installed package (a file in the working folder)."""
    import os
    from importlib import metadata

    try:
        candidates = metadata.packages_distributions().get(module.split(".")[0]) or []
    except Exception:  # noqa: BLE001 - unreadable metadata: no package, the file's sha256 still identifies it
        return None
    target = os.path.realpath(path)
    for name in candidates:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if any(os.path.realpath(str(dist.locate_file(f))) == target for f in dist.files or []):
            return name, dist.version
    try:
        declared = sorted({(point.dist.metadata["Name"] or "?", point.dist.version)
                           for kind, group in _PLUGIN_GROUPS.items() for point in metadata.entry_points(group=group)
                           if entry_point_module(point, kind) == module and getattr(point, "dist", None) is not None})
    except Exception:  # noqa: BLE001 - unreadable metadata: the file's sha256 still identifies the plugin
        return None
    return declared[0] if declared else None


def _registry_naming(name: str, *, besides: Registry) -> Registry | None:
    """The registry of another kind than ``besides`` that knows ``name``, if any. The backend packages are
    imported first (only on this error path), so the hint does not depend on what the process happened to list."""
    for package in _BACKEND_PACKAGES:
        try:
            importlib.import_module(package)
        except ImportError:  # pragma: no cover - a broken install names its own error elsewhere
            continue
    for registry in list(_REGISTRIES):
        if registry is besides or registry.kind == besides.kind:
            continue
        try:
            if name in registry._load():
                return registry
        except ImportError:  # pragma: no cover - a plugin module that cannot be imported gives no hint
            continue
    return None

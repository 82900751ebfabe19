"""A small lazy registry: names map to backend modules that are imported only when needed.

Each backend module defines ``CARDS: dict[str, ModelCard]`` and ``create(name, **kwargs)``. ``import restorever``
imports no backend; listing imports each backend module once (torch is imported then, and nothing else heavy).
"""
from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, Callable

from .errors import unknown_name

if TYPE_CHECKING:  # annotations only: the registry sits below hub in the layers
    from .hub import ModelCard


_REGISTRIES: list["Registry"] = []  # every registry made, for "that name is a <kind>" hints
_BACKEND_PACKAGES = ("restorever.restorers", "restorever.recognizers")  # make their registries, for those hints


class Registry:
    """Names -> cards, collected lazily from a list of backend modules."""

    def __init__(self, kind: str, modules: list[str], *, listing: str | None = None):
        self.kind = kind
        self.listing = listing or f"restorever {kind}s"  # the command that lists the names, for error messages
        self._modules = list(modules)
        self._cards: dict[str, tuple[str, ModelCard]] | None = None
        _REGISTRIES.append(self)

    def register_module(self, module: str) -> None:
        """Add a backend module (a plugin) by dotted path. It is imported and checked at once: it must define
        ``CARDS`` (a dict name -> card) and ``create(name, **kwargs)``, and none of its names may be taken already
        (a plugin never replaces a built-in model silently). Registering the same module again does nothing."""
        if module in self._modules:
            return
        where = f"{self.kind} plugin {module!r}"
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"{where} cannot be imported ({exc}); give the dotted name of a module on sys.path "
                              f"(the one that defines CARDS and create)") from exc
        cards = getattr(mod, "CARDS", None)
        if not isinstance(cards, dict) or not cards:
            raise TypeError(f"{where} must define CARDS, a dict of name -> card, got {type(cards).__name__}")
        if not callable(getattr(mod, "create", None)):
            raise TypeError(f"{where} must define create(name, **kwargs), which builds the model of a card's name")
        known = self._load()
        taken = sorted(name for name in cards if name in known)
        if taken:
            raise ValueError(f"{where} names {', '.join(taken)}, already registered by "
                             f"{', '.join(sorted({known[n][0] for n in taken}))}: give your models other names")
        self._modules.append(module)
        self._cards = None

    def _load(self) -> dict[str, tuple[str, ModelCard]]:
        if self._cards is None:
            cards: dict[str, tuple[str, ModelCard]] = {}
            for module in self._modules:
                mod = importlib.import_module(module)
                for name, card in getattr(mod, "CARDS").items():
                    cards.setdefault(name, (module, card))  # the first module to name a card keeps it
            self._cards = cards
        return self._cards

    def names(self) -> list[str]:
        return list(self._load())

    def card(self, name: str) -> ModelCard:
        return self._lookup(name)[1]

    def _lookup(self, name: str) -> tuple[str, ModelCard]:
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

    def hook(self, name: str, attr: str) -> Callable[..., Any] | None:
        """The optional function ``attr`` of the module that registers ``name`` (None where it has none)."""
        module, _ = self._lookup(name)
        return getattr(importlib.import_module(module), attr, None)


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

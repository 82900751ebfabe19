"""The evaluation pipeline: stages, the content-addressed cache and the runner.

Submodules load on first attribute access (``restorever.pipeline.stages``), so ``import restorever.pipeline`` stays
cheap."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

_SUBMODULES = tuple(m.name for m in pkgutil.iter_modules(__path__))


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*(n for n in globals() if n.startswith("__")), *_SUBMODULES})

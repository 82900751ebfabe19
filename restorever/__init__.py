"""restorever: does face restoration preserve identity?

Public API (cheap to import; backends load lazily on first use)::

    from restorever import load_protocol, create_restorer, create_recognizer, evaluate
    from restorever import FacePipeline          # detect / embed / similarity / verify / restore your own images
    from restorever import paired_accuracy_test  # a run's paired statistics on your own scores
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_protocol": ("restorever.protocol", "load_protocol"),
    "list_protocols": ("restorever.protocol", "list_protocols"),
    "load_ident_protocol": ("restorever.protocol", "load_ident_protocol"),
    "create_restorer": ("restorever.restorers", "create_restorer"),
    "list_restorers": ("restorever.restorers", "list_restorers"),
    "create_recognizer": ("restorever.recognizers", "create_recognizer"),
    "list_recognizers": ("restorever.recognizers", "list_recognizers"),
    "Degradation": ("restorever.degradation", "Degradation"),
    "degrade": ("restorever.degradation", "degrade"),
    "evaluate": ("restorever.pipeline.evaluate", "evaluate"),
    "EvalConfig": ("restorever.pipeline.evaluate", "EvalConfig"),
    "kfold_accuracy": ("restorever.metrics.verification", "kfold_accuracy"),
    "FacePipeline": ("restorever.api", "FacePipeline"),
    "Face": ("restorever.api", "Face"),
    "RestoreThenEmbed": ("restorever.api", "RestoreThenEmbed"),
    "threshold_from_results": ("restorever.api", "threshold_from_results"),
    "paired_accuracy_test": ("restorever.reports.paired", "paired_accuracy_test"),
    "paired_similarity_test": ("restorever.reports.paired", "paired_similarity_test"),
    "holm_adjust": ("restorever.reports.statistics", "holm_adjust"),
}

#: submodules docs/api.md names as ``restorever.<name>``: imported on first attribute access, as the names above
_SUBMODULES = ("api", "degradation", "errors", "jpeg", "metrics", "mtcnn", "pipeline")

__all__ = ["__version__", *_LAZY]


def __dir__() -> list[str]:
    """The public names, lazy ones included, for ``dir(restorever)`` and tab completion."""
    return sorted({*(n for n in globals() if n.startswith("__")), *_LAZY, *_SUBMODULES})


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:  # importing a submodule sets it as this package's attribute
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'restorever' has no attribute {name!r}")

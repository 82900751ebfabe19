"""Face attributes (gender, age group): predictors, the re-weighting module and their metrics.

Two kinds of predictor, both returning ``{"gender": [N, 2], "age": [N, G]}`` probabilities:

* ``EmbeddingAttributePredictor`` (:mod:`.predictor`): a probe over a recognizer's embeddings, fitted offline with
  ``restorever attributes fit`` and saved as one ``.pt`` file together with its re-weighting module;
* pixel backends named in :data:`PIXEL_BACKENDS` (``insightface-genderage``, needs its ``genderage.onnx``).

Nothing heavy is imported here; :func:`load_attribute_model` imports the backend it needs.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

#: pixel-based backends: name -> module (each defines ``CARDS`` and ``create(name, weights=, schema=, ...)``)
PIXEL_BACKENDS = {"insightface-genderage": "restorever.attributes.insightface"}


def list_attribute_models() -> list[str]:
    """Registered pixel backends (a fitted probe is named by its file path instead)."""
    return list(PIXEL_BACKENDS)


def load_attribute_model(spec: str, *, weights: dict[str, str] | None = None, **kwargs: Any):
    """A pixel backend by name (``insightface-genderage``) or a fitted probe checkpoint by path."""
    if spec in PIXEL_BACKENDS:
        return importlib.import_module(PIXEL_BACKENDS[spec]).create(spec, weights=weights, **kwargs)
    path = Path(spec).expanduser()
    if path.suffix in (".pt", ".pth") or path.exists():
        from .predictor import EmbeddingAttributePredictor

        if kwargs.get("schema") is not None:
            raise ValueError("the age groups of a fitted probe are fixed when it is fitted; refit with --age-bins")
        return EmbeddingAttributePredictor.load(path)
    from ..errors import UnknownNameError, did_you_mean

    hint = did_you_mean(spec, PIXEL_BACKENDS)
    raise UnknownNameError(f"attribute model {spec!r} is neither a backend ({', '.join(PIXEL_BACKENDS)}) nor an "
                           f"existing .pt file{hint} (create one with `restorever attributes fit`)")

"""What a results record says about the software and machine that made it."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any, Sequence

#: modules whose version can change a run's numbers (decoding, degradation, detection, embedding, search), with
#: the distribution that ships each; recorded when the run loaded them
NUMERIC_LIBRARIES: dict[str, str] = {"PIL": "pillow", "cv2": "opencv", "dlib": "dlib",
                                     "facenet_pytorch": "facenet-pytorch", "onnxruntime": "onnxruntime",
                                     "faiss": "faiss", "scipy": "scipy"}


def restorever_version() -> str:
    from .. import __version__

    return __version__


def library_versions() -> dict[str, str]:
    """``{distribution: version}`` of the :data:`NUMERIC_LIBRARIES` this process has imported, plus ``libjpeg``
    (the JPEG decoder Pillow was built with, which sets the decoded pixels) when Pillow is loaded."""
    out: dict[str, str] = {}
    for module, dist in NUMERIC_LIBRARIES.items():
        mod = sys.modules.get(module)
        if mod is None:
            continue
        version = getattr(mod, "__version__", None)
        if version is None:
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = "unknown"
        out[dist] = str(version)
    if "PIL" in sys.modules:
        from PIL import features

        jpeg = features.version_codec("jpg")
        if jpeg is not None:
            turbo = features.version("libjpeg_turbo")
            out["libjpeg"] = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {jpeg}"
    return out


def environment_info(device: Any) -> dict[str, Any]:
    """Python, torch, numpy and CUDA versions, the device used, the platform and the CPU count (results.json's
    ``environment``); the GPU's name when ``device`` is a CUDA device. ``torch_threads`` (``torch.get_num_threads()``
    as the record is made) and ``OMP_NUM_THREADS`` are recorded because some torch kernels round differently with
    another thread count, and ``libraries`` (:func:`library_versions`) because a new Pillow, OpenCV or dlib can
    change decoded pixels or embeddings. On CUDA, ``cuda_math`` (:func:`cuda_math`) keeps the TF32 and cuDNN
    switches."""
    import numpy as np
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "cuda": torch.version.cuda if torch.cuda.is_available() else None, "device": str(device),
           "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "libraries": library_versions()}
    if getattr(device, "type", None) == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda_math"] = cuda_math()
    return env


def cuda_math() -> dict[str, Any]:
    """The process-wide switches that change float32 results on CUDA (results.json's ``environment.cuda_math``):
    TF32 in matrix products and in cuDNN convolutions, the float32 matmul precision, cuDNN's autotuning
    (``benchmark``: the chosen algorithm can differ run to run) and ``deterministic``."""
    import torch

    return {"tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic)}


def setup_info(config: Any, recognizer: Any, restorers: Sequence[Any] = (), device: Any = None) -> dict[str, Any]:
    """What a methods text needs and ``config`` does not say (results.json's ``setup``): the alignment template's
    size in pixels ``[w, h]`` and number of landmarks, the recognizer's embedding size and how it crops its input
    (:meth:`Recognizer.input_crop <restorever.recognizers.base.Recognizer.input_crop>`), and the degradation
    preset's sampling rules as this version draws them (:meth:`DegradationPreset.describe`; only when a scale
    uses it), so a record keeps the ranges its faces were degraded with even if a later version changes them.
    ``precision`` maps each model with torch weights (``recognizer``, then ``restorers``) to its weight dtypes and
    autocast dtype on ``device`` (their ``numerics`` method, :func:`restorever.precision.numerics`): ``auto``
    resolves per device, so the record keeps what it resolved to."""
    from ..alignment import get_template
    from ..degradation_params import get_preset

    out: dict[str, Any] = {}
    template = getattr(config, "template", None)
    if template:
        tpl = get_template(template)
        out["alignment"] = {"template": tpl.name, "size": [int(v) for v in tpl.size], "landmarks": len(tpl.points)}
    width = getattr(recognizer, "embedding_dim", None)
    if width is not None:
        out["recognizer"] = {"name": recognizer.card.name, "embedding_dim": int(width)}
        crop = recognizer.input_crop() if callable(getattr(recognizer, "input_crop", None)) else None
        if crop:
            out["recognizer"]["input_crop"] = dict(crop)
    if getattr(config, "scales", None) and getattr(config, "degradation", None):
        out["degradation"] = get_preset(config.degradation).describe()
    precision = {}
    for model in (recognizer, *restorers):
        numerics = getattr(model, "numerics", None)
        found = numerics(device if device is not None else "cpu") if callable(numerics) else None
        if found:
            precision[model.card.name] = found
    if precision:
        out["precision"] = precision
    return out

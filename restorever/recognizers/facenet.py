"""FaceNet recognizers: facenet-pytorch's ``InceptionResnetV1`` with its released VGGFace2 / CASIA-WebFace weights.

Paper: Schroff et al., "FaceNet", CVPR 2015 (https://arxiv.org/abs/1503.03832). Code origin: facenet-pytorch (MIT,
https://github.com/timesler/facenet-pytorch), itself a port of David Sandberg's facenet (MIT). The network class is
imported from the installed ``facenet_pytorch`` package (``pip install 'restorever[mtcnn]'``, i.e.
``facenet-pytorch==2.5.3``; 2.6 pins torch < 2.3 and numpy < 2).
**Weights: trained on VGGFace2 / CASIA-WebFace, research use.**

Weights are found as: ``--weights FILE``, then facenet-pytorch's own cache (``$TORCH_HOME/checkpoints/``, where
``InceptionResnetV1(pretrained=...)`` puts them), then our cache (``$RESTOREVER_HOME/weights/<name>/``), then a
download from facenet-pytorch's GitHub release (sha256-checked). They load with ``torch.load(weights_only=True)``;
the checkpoint's classification head (``logits.*``, 8631 or 10575 classes) is dropped, every other key must match.

Preprocessing: the aligned 512 face is cropped to 160x160 with ``alignment.crop_to_template(faces, landmarks,
"facenet_160")`` (a similarity fitted to facenet-pytorch's average ``MTCNN(margin=14)`` crop; each face sits up to
24 px, 12 px on average, from where facenet-pytorch's own, unequally stretched crop puts it), scaled to 0-255 and
standardised ``(x - 127.5) / 128`` (facenet-pytorch's ``fixed_image_standardization``), RGB. Output: 512-D,
L2-normalised by the network itself; compare with cosine similarity. ``flip_test=True`` adds the embedding of the
mirrored crop.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from ..devices import resolve_device
from ..errors import MissingDependencyError
from ..hub import (ModelCard, WeightFile, check_weight_roles, load_checkpoint, load_state_dict_strict, resolve_weights,
                   sha256_file)
from ..hub import weight_status as hub_weight_status
from .base import Recognizer, checked_found_file
from .crop import CROP_OPTION_DEFAULTS, CROP_OPTION_SPECS, CropRecognizer, autocast_dtype_for, build_uninitialised

logger = logging.getLogger(__name__)

__all__ = ["CARDS", "create", "build_inception_resnet_v1", "locate_weights", "weight_status"]

_RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
_LICENSE = "MIT code (facenet-pytorch); weights trained on research-use data (VGGFace2 / CASIA-WebFace)"
_HEAD_PREFIX = "logits."


def _import_inception_resnet_v1():
    try:
        from facenet_pytorch import InceptionResnetV1
    except ImportError as exc:
        raise MissingDependencyError("the facenet recognizers need facenet-pytorch: pip install 'restorever[mtcnn]' "
                                     "(facenet-pytorch==2.5.3; 2.6 pins torch<2.3)") from exc
    return InceptionResnetV1


def build_inception_resnet_v1(*, initialise: bool = True) -> torch.nn.Module:
    """facenet-pytorch's ``InceptionResnetV1`` as an embedder (no classification head, eval mode).

    Input ``[B,3,160,160]`` standardised RGB; output ``[B,512]`` L2-normalised. ``initialise=False`` skips the
    random initialisation (uninitialised memory) for a module whose every entry is loaded next.
    """
    cls = _import_inception_resnet_v1()
    if initialise:
        return cls(pretrained=None, classify=False).eval()
    return build_uninitialised(cls, pretrained=None, classify=False).eval()


def _torch_cache_candidate(filename: str) -> Path | None:
    """facenet-pytorch's own download location for ``filename`` (``$TORCH_HOME/checkpoints/``)."""
    try:
        from facenet_pytorch.models.inception_resnet_v1 import get_torch_home
    except ImportError:  # pragma: no cover
        return None
    return Path(get_torch_home()) / "checkpoints" / filename


def _load_facenet(path: Path) -> torch.nn.Module:
    """A facenet-pytorch state_dict -> ``InceptionResnetV1`` (head dropped, other keys strict)."""
    state = load_checkpoint(path)
    head = [k for k in state if k.startswith(_HEAD_PREFIX)]
    if head:
        logger.debug("%s: dropping the classification head %s", path, head)
    state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIX)}
    net = build_inception_resnet_v1(initialise=False)
    load_state_dict_strict(net, state, source=str(path))
    return net.eval()


def _cfg(name: str, filename: str, sha256: str, size: int, lfw: float, dataset: str) -> ModelCard:
    weight = WeightFile(filename, url=_RELEASE + filename, sha256=sha256, license=_LICENSE,
                        origin_url="https://github.com/timesler/facenet-pytorch",
                        paper="https://arxiv.org/abs/1503.03832", size_bytes=size)
    return ModelCard(name=name, arch="inception_resnet_v1", weights={"model": weight}, template="facenet_160",
                     input_size=160, mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0), channel_order="RGB",
                     default_kwargs={"flip_test": False, **CROP_OPTION_DEFAULTS}, option_specs=dict(CROP_OPTION_SPECS),
                     description=f"facenet-pytorch InceptionResnetV1 trained on {dataset}; 512-D L2-normalised "
                                 f"embedding, cosine similarity",
                     reported={"lfw_accuracy": lfw})


CARDS: dict[str, ModelCard] = {
    "facenet-vggface2": _cfg("facenet-vggface2", "20180402-114759-vggface2.pt",
                             "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b", 111_898_327,
                             0.9965, "VGGFace2"),
    "facenet-casia": _cfg("facenet-casia", "20180408-102900-casia-webface.pt",
                          "7a67afdbbc995fce5e10128675e318799a70698c2f433ba75dd7eb9a2f096e7d", 115_887_415,
                          0.9905, "CASIA-WebFace"),
}


def locate_weights(card: ModelCard, *, explicit: str | Path | None = None, cache_dir: str | Path | None = None,
                   download: bool | None = None) -> Path:
    """Explicit file, then facenet-pytorch's cache, then ours, then a download (see the module docstring)."""
    if explicit is None:
        candidate = _torch_cache_candidate(card.weights["model"].filename)
        if candidate is not None and candidate.is_file():
            return checked_found_file(card, candidate, "facenet-pytorch's $TORCH_HOME/checkpoints")
    return resolve_weights(card, explicit=explicit, cache_dir=cache_dir, download=download)


def weight_status(name: str, *, cache_dir: str | Path | None = None) -> dict[str, str]:
    """``{"model": "present: PATH" | "missing: where to put it"}`` for ``restorever recognizers`` (no hashing)."""
    card = CARDS[name]
    candidate = _torch_cache_candidate(card.weights["model"].filename)
    if candidate is not None and candidate.is_file():
        return {"model": f"present: {candidate}"}
    status = hub_weight_status(card, cache_dir)
    if status["model"].startswith("missing"):
        status["model"] += f" (downloaded on first use from {card.weights['model'].url} when online)"
    return status


def create(name: str, *, weights: Mapping[str, str] | None = None, device: Any = "cpu", flip_test: bool = False,
           precision: str = "auto", cache_dir: str | Path | None = None, download: bool | None = None,
           channels_last: bool = False, compile: bool = False) -> Recognizer:
    """Create ``facenet-vggface2`` or ``facenet-casia`` (arguments as in :func:`restorever.recognizers.arcface.create`).

    ``precision="auto"`` runs the network under CUDA fp16 autocast on a GPU and in float32 on CPU.
    """
    if name not in CARDS:
        raise KeyError(f"facenet backend has no variant {name!r}; known: {', '.join(CARDS)}")
    card = CARDS[name]
    weights = check_weight_roles(name, weights, ["model"])
    dev = resolve_device(device)
    _import_inception_resnet_v1()  # fail on a missing package before touching the weights
    path = locate_weights(card, explicit=weights.get("model"), cache_dir=cache_dir, download=download)
    net = _load_facenet(path)
    logger.info("%s: %s (torch, %s)", name, path, dev)
    rec = CropRecognizer(card, net.to(dev), embedding_dim=512, flip_test=flip_test,
                         autocast_dtype=autocast_dtype_for(precision, dev), channels_last=channels_last,
                         compile=compile).eval()
    rec.weight_files = {"model": (str(path), sha256_file(path))}
    return rec

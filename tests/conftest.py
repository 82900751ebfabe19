"""Shared fixtures: paths to ../shared data and reference files (present in CI)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RESTOREVER_SHARED", REPO.parent / "shared"))
LFW = SHARED / "data" / "lfw"
FACES = SHARED / "data" / "faces"
REFERENCE = SHARED / "reference"


def random_iresnet_checkpoint(path: Path, depth: int = 50, seed: int = 0) -> dict:
    """Write an arcface_torch ``backbone.pth`` at ``path`` with every key and shape of the official manifest
    (:func:`restorever.hub.random_state_dict`) and return its state dict."""
    import json

    import torch

    from restorever.hub import random_state_dict

    manifest = json.loads((REFERENCE / "manifests" / f"iresnet{depth}_state_dict.json").read_text())
    state = random_state_dict(manifest["state_dict"], seed=seed)
    torch.save(state, path)
    return state


def brute_force_threshold(train_s, train_y) -> tuple[float, float]:
    """The k-fold rule by brute force: the smallest most accurate threshold (``score > t`` predicts *same*) over
    "all same" (-inf) and every training score, and its training accuracy."""
    import numpy as np

    candidates = [-np.inf] + np.unique(train_s).tolist()
    accs = [float(np.mean((train_s > t) == train_y)) for t in candidates]
    best = max(accs)
    return min(t for t, a in zip(candidates, accs) if a == best), best


def two_face_canvas(faces_root: Path):
    """``(canvas, small, large)``: a 480x300 grey PIL image holding two real faces, Ben Affleck's photo (``small``)
    at its own size on the left and Madonna's shrunk to 240x240 (``large``, the larger face) on the right."""
    from PIL import Image

    small = Image.open(faces_root / "ben_afflek" / "ben_afflek_0003.jpg").convert("RGB")
    large = Image.open(faces_root / "madonna" / "madonna_0003.jpg").convert("RGB").resize((240, 240))
    canvas = Image.new("RGB", (480, 300), (128, 128, 128))
    canvas.paste(small, (20, 80))
    canvas.paste(large, (220, 30))
    return canvas, small, large


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: tests need ../shared beside the checkout (or RESTOREVER_SHARED)")
    return path


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    return _require(LFW)


@pytest.fixture(scope="session")
def faces_root() -> Path:
    return _require(FACES)


@pytest.fixture(scope="session")
def shared_lfw_cache(tmp_path_factory) -> Path:
    """One ``--cache-dir`` for the report tests' real LFW runs (dlib, MTCNN), shared by every pytest-xdist worker
    (the parent of the workers' base temporary folders), so a face's landmarks and embeddings are computed once per
    session, not once per module. The cache is content-addressed with atomic writes, built to be shared by
    processes (as ``torchrun`` ranks share one); tests that count cache hits or misses keep their own."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    return root / "shared-lfw-cache"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return _require(REFERENCE)


# RESTOREVER_CUDA_TESTS_ON_CPU=1 runs the cuda-marked tests with ``cuda_device`` = the CPU: a dry run of the test code
# itself on a machine without a GPU (it proves nothing about CUDA).
_CUDA_DRY_RUN = os.environ.get("RESTOREVER_CUDA_TESTS_ON_CPU") == "1"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.cuda`` tests are skipped, visibly and with the reason, on machines without a GPU."""
    if cuda_available() or _CUDA_DRY_RUN:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False); run -m cuda on a GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cuda_device():
    """``torch.device("cuda")`` with TF32 switched off for the test (fp32 means IEEE float32 there), restored after."""
    import warnings

    import torch

    if _CUDA_DRY_RUN and not torch.cuda.is_available():
        yield torch.device("cpu")
        return
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield torch.device("cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache dir and never touches the network."""
    home = tmp_path_factory.getbasetemp() / "restorever-home"
    monkeypatch.setenv("RESTOREVER_HOME", str(home))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    monkeypatch.delenv("RESTOREVER_DATA", raising=False)

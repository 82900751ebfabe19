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
def reference_dir() -> Path:
    return _require(REFERENCE)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache dir and never touches the network."""
    home = tmp_path_factory.getbasetemp() / "restorever-home"
    monkeypatch.setenv("RESTOREVER_HOME", str(home))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    monkeypatch.delenv("RESTOREVER_DATA", raising=False)

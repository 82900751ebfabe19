"""`import restorever` stays cheap: no torch, no backend, no faiss (checked in a fresh interpreter)."""
from __future__ import annotations

import subprocess
import sys


def test_import_is_light():
    code = ("import sys, restorever; heavy = [m for m in ('torch', 'cv2', 'dlib', 'faiss', 'onnxruntime', "
            "'facenet_pytorch', 'matplotlib') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_cli_help_is_light():
    code = ("import sys; from restorever.cli import cli; "
            "print([m for m in ('torch', 'dlib', 'faiss') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_name_a_module_exports_exists():
    """``from MODULE import *`` works for every module of the package: each name its ``__all__`` lists exists, once
    (a misspelt or stale entry raises only on a star import, which no other test makes)."""
    import importlib
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "restorever"
    checked, problems = 0, []
    for path in sorted(package.rglob("*.py")):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        if name.endswith("__main__"):
            continue
        names = getattr(importlib.import_module(name), "__all__", None)
        if names is None:
            continue
        checked += 1
        namespace: dict = {}
        exec(f"from {name} import *", namespace)  # noqa: S102 - what a user's star import does
        missing = [n for n in names if n not in namespace]
        if missing or len(set(names)) != len(names):
            problems.append(f"{name}: missing {missing}, {len(names) - len(set(names))} listed twice")
    assert problems == []
    assert checked > 60  # the walk found the package's modules (72 declare __all__)

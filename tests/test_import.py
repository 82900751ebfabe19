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

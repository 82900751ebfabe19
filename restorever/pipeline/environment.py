"""What a results record says about the software and machine that made it."""
from __future__ import annotations

import os
import platform
from typing import Any


def restorever_version() -> str:
    from .. import __version__

    return __version__


def environment_info(device: Any) -> dict[str, Any]:
    """Python, torch, numpy and CUDA versions, the device used, the platform and the CPU count (results.json's
    ``environment``); the GPU's name when ``device`` is a CUDA device."""
    import numpy as np
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "cuda": torch.version.cuda if torch.cuda.is_available() else None, "device": str(device),
           "platform": platform.platform(), "cpu_count": os.cpu_count()}
    if getattr(device, "type", None) == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env

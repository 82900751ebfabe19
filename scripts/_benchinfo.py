"""Header printed by every benchmark: date, machine, versions, commit."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess


def header(extra: dict | None = None) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(__file__), check=False).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{cpu}, {os.cpu_count()} cores", "python": platform.python_version(), "commit": commit}
    try:
        import numpy
        info["numpy"] = numpy.__version__
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    info.update(extra or {})
    return "\n".join(f"# {k}: {v}" for k, v in info.items())

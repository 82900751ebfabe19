"""One place that turns a device option into a :class:`torch.device` (or a one-line :class:`DeviceError`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DeviceError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["resolve_device", "DEVICE_HELP"]

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"
_COMPUTE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(spec: Any = "auto") -> "torch.device":
    """``"auto"``/``None``/``""`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or
    a :class:`torch.device` -> that device, checked to exist on this machine.

    Raises:
        DeviceError: an unknown device type (``tpu``), one that cannot compute (``meta``), CUDA without a GPU, a
            GPU index this machine does not have (``cuda:3`` with two GPUs), MPS where it is not available.
    """
    import torch

    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "auto")):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(spec).strip()
    try:
        dev = spec if isinstance(spec, torch.device) else torch.device(text.lower())
    except (RuntimeError, ValueError, TypeError) as exc:
        raise DeviceError(f"{text}: not a device name; use {DEVICE_HELP}") from exc
    if dev.type not in _COMPUTE_TYPES:
        raise DeviceError(f"{text}: restorever runs on {DEVICE_HELP}, not {dev.type!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{text}: CUDA is not available on this machine (no GPU, or a CPU-only torch); "
                              f"use cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"{text}: this machine has {count} GPU(s) (cuda:0..cuda:{count - 1}); pick one "
                              f"of those or use cuda")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"{text}: MPS is not available on this machine; use cpu")
    return dev

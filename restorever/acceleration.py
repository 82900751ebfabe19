"""Speed options several backends share: ``torch.compile`` behind a plain function, and the option cards
(:class:`~restorever.hub.OptionSpec`) of ``channels_last`` and ``compile`` that restorer and recognizer cards declare.

Both options change values only by float rounding (summation order), never the result's meaning; they are part of a
run's identity like every backend option, so entries made with and without them are never mixed.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .hub import OptionSpec

__all__ = ["compile_module", "CHANNELS_LAST", "COMPILE"]

CHANNELS_LAST = OptionSpec("channels-last memory order for the convolutions (faster tensor-core kernels on a GPU; "
                           "the same values within float rounding)")
COMPILE = OptionSpec("torch.compile the network (inductor: fused normalisation/activation kernels); each batch shape "
                     "compiles once, paid by its first batch; equal to eager within float rounding")


def compile_module(module: torch.nn.Module, **options: Any) -> Callable[..., Any]:
    """``torch.compile(module, dynamic=False, **options)`` behind a plain function.

    The function shares ``module``'s parameters and is not itself a module, so assigning it to a backend attribute
    adds no second copy of the keys to ``state_dict()``, and hooks registered on ``module`` still run. Compilation
    happens on the first call of each input shape.
    """
    compiled = torch.compile(module, dynamic=False, **options)

    def run(*args: Any, **kwargs: Any) -> Any:
        return compiled(*args, **kwargs)

    return run

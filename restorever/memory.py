"""Peak memory of a block of code on a device: exact on CUDA, a sampled resident-set estimate on the CPU.

Used by ``scripts/bench_restorers.py`` and :func:`restorever.restorers.vqfr.measure_peak_memory`; works for any
device and any model.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import threading
import time
from typing import Any

import torch

__all__ = ["PeakMemoryMonitor"]


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _release_free_heap() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemoryMonitor:
    """Context manager measuring the peak memory of the code it wraps on ``device``.

    After exit: ``baseline_bytes`` (in use at entry), ``peak_bytes`` (highest seen, baseline included),
    ``activation_bytes`` (their difference) and ``method``. CUDA: ``torch.cuda.max_memory_allocated`` (exact,
    allocator level, tensors only). CPU: the process's resident set size sampled every ``interval_s`` seconds from
    ``/proc/self/statm`` after returning freed heap to the OS (``malloc_trim``): an estimate that can miss spikes
    shorter than the interval and includes allocator slack; where ``/proc`` is missing, ``ru_maxrss`` (the process's
    lifetime peak, an upper bound; ``activation_bytes`` is then None).
    """

    def __init__(self, device: torch.device | str, interval_s: float = 0.002):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.baseline_bytes: int | None = None
        self.peak_bytes: int | None = None
        self.method = ""
        self._done = threading.Event()
        self._sampler: threading.Thread | None = None

    @property
    def activation_bytes(self) -> int | None:
        if self.peak_bytes is None or self.baseline_bytes is None:
            return None
        return self.peak_bytes - self.baseline_bytes

    def __enter__(self) -> "PeakMemoryMonitor":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
            self.method = "cuda_max_memory_allocated"
            return self
        _release_free_heap()
        self.baseline_bytes = _rss_bytes()
        if self.baseline_bytes is None:
            self.method = "ru_maxrss (process lifetime peak)"
            return self
        self.method = f"cpu_rss_sampling_{self.interval_s * 1000:g}ms"
        self.peak_bytes = self.baseline_bytes
        self._done.clear()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak_bytes = max(self.peak_bytes or 0, _rss_bytes() or 0)
            time.sleep(self.interval_s)

    def __exit__(self, *exc_info: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._sampler is not None:
            self._done.set()
            self._sampler.join()
            self.peak_bytes = max(self.peak_bytes or 0, _rss_bytes() or 0)
        else:
            import resource
            self.peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.baseline_bytes = None

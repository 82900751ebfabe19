"""Shared set-up of the restorer tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP spin-waiting makes 2 threads several times slower.
    (Outputs change only by float32 rounding, far below the tolerances; float64 results do not change.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

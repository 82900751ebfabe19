"""Round 21, mutation testing eighth pass: the recognizers' preprocessing, pair similarity, precision and memory.

Each test closes a gap a surviving mutant showed, or pins a preprocessing fact against an independent computation
(docs/reliability.md, "Round 21: mutation testing, eighth pass").
"""
from __future__ import annotations

import os
import re
import sys
import time

import numpy as np
import pytest
import torch

from restorever.errors import MissingDependencyError
from restorever.recognizers.base import check_landmarks


@pytest.mark.parametrize("landmarks,got", [
    (torch.zeros(2, 5, 3), "got (2, 5, 3)"),
    (torch.zeros(3, 5, 2), "got (3, 5, 2)"),
    (np.zeros((2, 5, 2)), "got ndarray"),
])
def test_a_wrong_landmark_array_is_named_by_its_shape_or_its_type(landmarks, got):
    """The error names what the caller passed: the shape of a tensor (a [2, 5, 3] from a 3-column landmark file),
    the type of anything else. A mutant that printed ``Tensor`` for every tensor survived the input tests."""
    with pytest.raises(ValueError, match=re.escape("expected a [2, 5, 2] tensor of (x, y) pixels")) as info:
        check_landmarks(landmarks, 2)
    assert str(info.value).endswith(got)


def test_facenet_without_its_package_says_which_pip_install_before_looking_for_weights(tmp_path, monkeypatch):
    """facenet-pytorch missing: the error is the ``pip install`` that fixes it, raised before the weights are looked
    for (online, the 107 MB checkpoint would otherwise be downloaded first, then refused). Without the early check
    the user met "weights not found" for a file they had, or had just downloaded."""
    from restorever.recognizers import facenet

    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import facenet_pytorch -> ImportError
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'restorever[mtcnn]'")):
        facenet.create("facenet-vggface2")
    assert not (tmp_path / "torch").exists()


def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="the sampled estimate needs /proc")
def test_cpu_peak_keeps_a_block_freed_before_the_end():
    """The peak is the highest resident set seen while the block ran, not the one at its end: 64 MiB held until
    the sampler has seen it, then freed, still count (a mutant that kept only the last sample measured ~0)."""
    from restorever.memory import PeakMemoryMonitor

    size = 64 << 20
    with PeakMemoryMonitor("cpu", interval_s=0.001) as mon:
        block = np.ones(size, np.uint8)  # touched pages: resident
        deadline = time.monotonic() + 60  # wait for the sampler thread to see the block (a wait, not a check)
        while mon.peak_bytes < mon.baseline_bytes + size // 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        del block
    assert mon.method == "cpu_rss_sampling_1ms"
    assert mon.activation_bytes >= 0.9 * size
    assert mon.peak_bytes >= mon.baseline_bytes + 0.9 * size


def test_without_proc_the_peak_is_the_lifetime_maximum_in_bytes(monkeypatch):
    """Where ``/proc`` is missing the peak is ``ru_maxrss`` (KiB on Linux) in bytes: at least the resident set of the
    process now, and no activation figure (a baseline of the whole lifetime is not one)."""
    from restorever import memory

    monkeypatch.setattr(memory, "_rss_bytes", lambda: None)
    now = _rss_now()
    with memory.PeakMemoryMonitor("cpu") as mon:
        pass
    assert mon.method.startswith("ru_maxrss")
    assert mon.activation_bytes is None and mon.baseline_bytes is None
    assert now <= mon.peak_bytes < 64 * now  # bytes, not KiB (1024 times smaller) nor MiB

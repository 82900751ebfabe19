"""Round 21, thirteenth mutation pass (detectors, MTCNN, JPEG, GFPGAN and CodeFormer adapters): each test closes a
gap a surviving mutant showed (docs/reliability.md, "Round 21: mutation testing, thirteenth pass")."""
from __future__ import annotations

import torch

from restorever.restorers import codeformer


def test_codeformer_class_defaults_are_the_released_config():
    """``CodeFormer()`` with no arguments is the released network (``CONFIG``): same constructor record and the
    four fusion widths 32..256 (a default differing from CONFIG builds another network or refuses to build)."""
    with torch.device("meta"):  # shapes only
        net = codeformer.CodeFormer()
    assert net.config == codeformer.CONFIG
    assert net.connect_list == ["32", "64", "128", "256"]
    assert sorted(net.fuse_convs_dict, key=int) == ["32", "64", "128", "256"]

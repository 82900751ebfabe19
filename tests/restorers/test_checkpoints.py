"""Which restorer a checkpoint belongs to, judged from the key names of the official manifests."""
from __future__ import annotations

import json

import pytest

from restorever.restorers.checkpoints import LAYOUTS, identify_layout

MANIFESTS = {"codeformer_state_dict.json": "codeformer", "gfpgan_v1_4_state_dict.json": "gfpgan_v1_clean",
             "vqfr_v1_state_dict.json": "vqfr_v1", "vqfr_v2_state_dict.json": "vqfr_v2",
             "difface_unet_state_dict.json": "difface_unet", "difface_swinir_state_dict.json": "difface_swinir"}


def _keys(reference_dir, name: str) -> list[str]:
    manifest = json.loads((reference_dir / "manifests" / name).read_text())
    return [key for key, *_ in manifest.get("state_dict") or manifest["entries"]]  # two manifest formats


@pytest.mark.parametrize("manifest,layout", sorted(MANIFESTS.items()))
def test_every_official_layout_is_recognised(reference_dir, manifest, layout):
    assert layout in LAYOUTS and identify_layout(_keys(reference_dir, manifest)) == layout


def test_a_codeformer_file_missing_a_key_is_still_codeformer(reference_dir):
    """Without position_emb a codeformer.pth was called "CodeFormer's VQGAN (stage 1) checkpoint", so the message
    sent the user to the file they had given instead of naming the missing key."""
    keys = _keys(reference_dir, "codeformer_state_dict.json")
    assert identify_layout([k for k in keys if k != "position_emb"]) == "codeformer"
    stage1 = [k for k in keys if k.startswith(("encoder.", "generator.", "quantize."))]
    assert identify_layout(stage1) == "codeformer_vqgan"
    assert identify_layout([k for k in keys if not k.startswith("fuse_convs_dict.256.")]) == "codeformer_variant"
    assert identify_layout(["conv.weight", "fc.bias"]) is None

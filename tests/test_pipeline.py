"""The scale sweep end to end on real photos: batch size never changes a degraded image or a number."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.pipeline.evaluate import EvalConfig, evaluate, item_seed, limit_pairs
from restorever.protocol import load_protocol

from .test_protocol import _faces_csv


def _run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory, faces_root):
    tmp = tmp_path_factory.mktemp("pipe")
    rows = _faces_csv(faces_root).splitlines()
    path = tmp / "pairs.csv"
    path.write_text("\n".join(rows[:1] + rows[1:11]) + "\n")  # 10 pairs: 5 same, 5 different
    return path


def _config(csv, faces_root, cache, batch_size):
    return EvalConfig(protocol="pairs-csv", pairs=str(csv), data_root=str(faces_root), scales=[8, 32],
                      batch_size=batch_size, cache_dir=str(cache), seed=3)


def test_batch_size_does_not_change_numbers(small_csv, faces_root, tmp_path):
    a = evaluate(_config(small_csv, faces_root, tmp_path / "c1", 2), progress=False)
    b = evaluate(_config(small_csv, faces_root, tmp_path / "c2", 7), progress=False)
    assert [c["scores"] for c in a["conditions"]] == [c["scores"] for c in b["conditions"]]
    assert [c["scale"] for c in a["conditions"]] == [None, 8, 32]
    assert a["degradation_records"] == b["degradation_records"]
    ident = {c["scale"]: c["identity"]["cosine_to_clean_mean"] for c in a["conditions"]}
    assert ident[None] == pytest.approx(1.0) and ident[8] > ident[32]  # heavier degradation, further from clean
    # cached rerun: nothing recomputed, same numbers
    c = evaluate(_config(small_csv, faces_root, tmp_path / "c1", 5), progress=False)
    assert c["cache"]["misses"] == 0
    assert [x["scores"] for x in c["conditions"]] == [x["scores"] for x in a["conditions"]]


def test_degrade_command_is_batch_invariant(small_csv, faces_root, tmp_path):
    outs = []
    for bs in (1, 4):
        out = tmp_path / f"deg{bs}"
        _run("degrade", "--protocol", "pairs-csv", "--pairs", small_csv, "--data-root", faces_root, "--scales", "4,16",
             "--batch-size", bs, "--out", out)
        outs.append(out)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*.png"))
    assert len(files) == 3 * len({line.split(",")[1] for line in small_csv.read_text().splitlines()[1:]})
    for rel in files:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    records = [json.loads(line) for line in (outs[0] / "params.jsonl").read_text().splitlines()]
    assert {r["scale"] for r in records} == {4, 16}
    assert (outs[0] / "params.jsonl").read_text() == (outs[1] / "params.jsonl").read_text()


def test_plot_scales(tmp_path, small_csv, faces_root):
    out = tmp_path / "run"
    _run("eval", "--protocol", "pairs-csv", "--pairs", small_csv, "--data-root", faces_root, "--scales", "8,32",
         "--cache-dir", tmp_path / "cache", "--out", out, "--no-progress")
    png = tmp_path / "acc.pdf"
    _run("plot", "scales", out / "results.json", "-o", png)
    assert png.read_bytes()[:4] == b"%PDF"
    record = json.loads((out / "results.json").read_text())
    assert [c["scale"] for c in record["conditions"]] == [None, 8, 32]
    assert (out / "degradation.jsonl").exists()


def test_item_seed_is_stable_and_distinct():
    assert item_seed(0, "a.jpg", 8, "restore") == item_seed(0, "a.jpg", 8, "restore")
    assert len({item_seed(0, f"{i}.jpg", s, "restore") for i in range(50) for s in (4, 8)}) == 100


def test_limit_pairs_balanced(lfw_root):
    pairs = limit_pairs(load_protocol("lfw", data_root=lfw_root).pairs, 100)
    assert len(pairs) == 100
    counts = np.bincount(pairs.fold * 2 + pairs.same)
    assert counts.tolist() == [5] * 20


def test_none_restorer_passes_degraded_faces_through_bit_for_bit(lfw_root):
    """``none`` is not run per batch: the degraded faces are returned as they are, and they equal, bit for bit, what
    running the identity restorer and its 8-bit quantisation gives (real LFW faces, every scale, float32 and
    float64, and every 8-bit level exhaustively)."""
    import types

    import cv2
    import torch

    from restorever.degradation import Degradation
    from restorever.pipeline.evaluate import _restore_cached
    from restorever.pipeline.stages import restore_faces
    from restorever.restorers import create_restorer

    for dtype in (torch.float32, torch.float64):  # every level k/255 survives x255, round, /255 unchanged
        levels = torch.arange(256, dtype=dtype) / 255
        assert torch.equal(levels.mul(255).round_().div_(255), levels)
    people = ["Aaron_Peirsol", "Colin_Powell", "Gloria_Macapagal_Arroyo"]
    photos = [cv2.resize(cv2.imread(str(lfw_root / "lfw-deepfunneled" / p / f"{p}_0001.jpg"))[:, :, ::-1],
                         (512, 512), interpolation=cv2.INTER_CUBIC) for p in people]
    faces = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 255.0
    items = [f"{p}/{p}_0001.jpg" for p in people]

    class MustNotRun:
        def restore(self, *args, **kwargs):
            raise AssertionError("the 'none' restorer was run on a batch")

    ctx = types.SimpleNamespace(config=types.SimpleNamespace(seed=0), restorers={"none": MustNotRun()})
    degradation, identity = Degradation("difface-test"), create_restorer("none")
    for dtype in (torch.float32, torch.float64):
        for scale in (4, 8, 16, 24, 32):
            degraded = degradation.apply(faces.to(dtype), degradation.sample_params(items, scale, 0))
            out, n_new = _restore_cached(ctx, "none", scale, items, degraded, info={})
            assert n_new == 0 and out.dtype == dtype
            assert torch.equal(out, restore_faces(identity, degraded, [0, 1, 2]))

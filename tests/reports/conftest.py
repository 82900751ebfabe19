"""Synthetic run folders with the results.json layout of a real run (LFW-style ids, k-fold metrics computed by
restorever.metrics from seeded scores, example PNGs), so report tests run in a second without models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from restorever.metrics.verification import verification_report

#: how well each restorer separates same from different people at each scale (larger = better)
SEPARATION = {("none", None): 4.0, ("none", 4): 3.0, ("none", 16): 1.2, ("vqfr-v2", 4): 3.2, ("vqfr-v2", 16): 2.4}


def lfw_like_pairs(folds: int = 10, per_fold: int = 8, seed: int = 0):
    """``per_fold`` same and ``per_fold`` different pairs per fold, people disjoint across folds; some people
    appear in several pairs (as in LFW)."""
    rng = np.random.default_rng(seed)
    a, b, same, fold = [], [], [], []
    for f in range(folds):
        people = [f"Person_{f:02d}_{i:02d}" for i in range(per_fold + 4)]
        for i in range(per_fold):
            p = people[i % (per_fold // 2 + 1)]  # repeats: a person in several same pairs
            a.append(f"lfw-deepfunneled/{p}/{p}_{1 + i:04d}.jpg")
            b.append(f"lfw-deepfunneled/{p}/{p}_{20 + i:04d}.jpg")
            same.append(1)
            fold.append(f)
        for i in range(per_fold):
            p, q = rng.choice(people, size=2, replace=False)
            a.append(f"lfw-deepfunneled/{p}/{p}_{40 + i:04d}.jpg")
            b.append(f"lfw-deepfunneled/{q}/{q}_{60 + i:04d}.jpg")
            same.append(0)
            fold.append(f)
    return a, b, np.array(same), np.array(fold)


def make_record(run_dir: Path, *, restorers=("none", "vqfr-v2"), scales=(4, 16), examples: int = 2,
                retrieval: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    a, b, same, fold = lfw_like_pairs(seed=seed)
    noise = rng.normal(size=same.size)  # shared: conditions are paired, as in a real run
    conditions = []
    for restorer, scale in [("none", None)] + [(r, s) for s in scales for r in restorers]:
        sep = SEPARATION[(restorer, scale)]
        score = (sep * (same - 0.5) + noise + 0.3 * rng.normal(size=same.size)) / 4.0
        cos = {item: round(float(x), 6) for item, x in
               zip(dict.fromkeys(b), 1.0 - (0.02 if scale is None else 0.1 / sep) * rng.random(len(set(b))))}
        cond = {
            "restorer": restorer, "degradation": None if scale is None else "difface-test", "scale": scale,
            "degrade_side": "probe", "recognizer": "arcface-r50",
            "verification": verification_report(same, score, fold),
            "identity": {"cosine_to_clean_mean": float(np.mean(list(cos.values()))), "n": len(cos), "per_item": cos},
            "scores": {"same": same.tolist(), "fold": fold.tolist(), "score": score.tolist()},
        }
        if retrieval:
            cmc = np.minimum(1.0, np.cumsum(np.full(10, 0.5 / (1 + 0.2 * (scale or 0))))) + 0.0
            cond["retrieval"] = {"rank1": float(cmc[0]), "cmc": np.maximum.accumulate(cmc).tolist()}
        conditions.append(cond)
    example_records = []
    colours = {"clean": (200, 30, 30), "degraded": (30, 200, 30), "vqfr-v2": (30, 30, 200)}
    for item in list(dict.fromkeys(b))[:examples]:
        stem = Path(item).stem
        entry = {"item": item, "clean": f"examples/clean/{stem}.png", "images": {}}
        labels = ["clean"] + [f"x{s}/{m}" for s in scales for m in ["degraded", *[r for r in restorers if r != "none"]]]
        for label in labels:
            rel = entry["clean"] if label == "clean" else f"examples/{label}/{stem}.png"
            path = run_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 64), colours[label.split("/")[-1]]).save(path)
            if label != "clean":
                entry["images"][label] = rel
        example_records.append(entry)
    return {
        "restorever_version": "0.0.test", "created": "2026-01-01T00:00:00+00:00",
        "config": {"protocol": "lfw", "restorers": list(restorers), "recognizer": "arcface-r50",
                   "scales": list(scales), "degradation": "difface-test", "degrade_side": "probe", "seed": seed},
        "environment": {"python": "3.11", "torch": "2.x", "cuda": None, "device": "cpu"},
        "weights": {"arcface-r50:model": {"file": "/cache/arcface_r50.pth", "sha256": "ab" * 32}},
        "protocol": {"name": "lfw", "source": "pairs.txt", "pairs": int(same.size), "pairs_requested": int(same.size),
                     "folds": 10, "images": len(set(a) | set(b)), "skipped": [], "failed_images": []},
        "pairs": {"a": a, "b": b},
        "examples": example_records,
        "conditions": conditions,
    }


def as_rule_1(record: dict) -> dict:
    """A copy of ``record`` as a restorever before ``tar_rule`` wrote it: its rate intervals recomputed by rule 1
    (replicates read TAR@FAR at the FAR itself) and stored without the key."""
    import copy

    from restorever.reports.rate_stats import add_rate_comparisons

    older = copy.deepcopy(record)
    for cond in older["conditions"]:
        if cond.get("comparison_to_none"):
            cond["comparison_to_none"]["tar_rule"] = 1
    add_rate_comparisons(older, overwrite=True)
    for cond in older["conditions"]:
        if cond.get("comparison_to_none"):
            assert cond["comparison_to_none"].pop("tar_rule") == 1
    return older


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A written run folder (results.json via write_run, with the paired statistics) holding retrieval results.
    Shared: tests must not modify it (use ``own_run_dir``)."""
    from restorever.reports.results import write_run

    out = tmp_path_factory.mktemp("report") / "run"
    out.mkdir()
    write_run(make_record(out, retrieval=True), out)
    return out


@pytest.fixture()
def own_run_dir(run_dir, tmp_path) -> Path:
    """A private copy of ``run_dir`` that a test may change."""
    import shutil

    return Path(shutil.copytree(run_dir, tmp_path / "run"))


@pytest.fixture(scope="session")
def real_run(lfw_root, tmp_path_factory, shared_lfw_cache):
    """40 real LFW View-2 pairs through MTCNN + dlib, no restorer, clean and x8 / x16 (one eval for the session;
    tests copy it before writing into it)."""
    from restorever.cli import cli

    tmp = tmp_path_factory.mktemp("paper")
    result = CliRunner().invoke(cli, ["eval", "--protocol", "lfw", "--data-root", str(lfw_root), "--recognizer",
                                      "dlib", "--restorer", "none", "--scales", "8,16", "--limit-pairs", "40",
                                      "--out", str(tmp / "run"), "--cache-dir", str(shared_lfw_cache), "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tmp / "run"

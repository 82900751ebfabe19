"""Round 18, mutation testing second pass: known answers and invariants that catch a silent change of a cache key,
of the per-item degradation draws or of the alignment (docs/reliability.md names the surviving mutant each one kills;
the hash test pins the per-item draws themselves)."""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pytest

from restorever import degradation as D


# -------------------------------------------------------------------------------------------- degradation presets
def _reference_rows(reference_dir: Path) -> dict[str, list[str]]:
    """Rows of the training-range table of reference/degradation.md (section 1.3), by the source's first words."""
    text = (reference_dir / "degradation.md").read_text(encoding="utf-8")
    section = text.split("### 1.3", 1)[1].split("###", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[1].startswith("["):
            rows[cells[0].split("`")[0].strip()] = cells[1:5]
    return rows


def _interval(cell: str) -> tuple[float, float]:
    lo, hi = re.match(r"\[([\d.]+), ([\d.]+)\]", cell).groups()
    return float(lo), float(hi)


@pytest.mark.parametrize("preset,row", [("gfpgan-v1", "GFPGAN"), ("vqfr-v2", "VQFR v2"),
                                        ("codeformer-s2", "CodeFormer stage 2")])
def test_training_presets_are_the_official_ranges(reference_dir, preset, row):
    """blur sigma, scale, noise sigma and JPEG quality of each training preset are the ranges of the official option
    files (reference/degradation.md 1.3), kernel 41, iso/aniso 50/50, any angle."""
    cells = _reference_rows(reference_dir)[row]
    p = D.get_preset(preset)
    assert (p.sigma.kind, p.sigma.values) == ("uniform", _interval(cells[0]))
    assert (p.scale.kind, p.scale.values) == ("uniform", _interval(cells[1]))
    assert (p.noise.kind, p.noise.values) == ("uniform", _interval(cells[2]))
    assert (p.jpeg.kind, p.jpeg.values) == ("randint", _interval(cells[3]))
    assert p.kernel_size == 41 and p.iso_prob == 0.5
    assert (p.theta.kind, p.theta.values) == ("uniform", (-math.pi, math.pi))


def test_difface_grids_are_the_official_grids():
    """DifFace's two test grids (reference/degradation.md 1.1): four grid angles, no isotropic kernel."""
    journal = D.get_preset("difface-journal")
    assert journal.sigma.values == (4, 8, 12, 16)
    assert journal.noise.values == (1, 5, 10, 15, 20) and journal.jpeg.values == (30, 40, 50, 60, 70)
    assert journal.scale.values == tuple(range(4, 41, 4))
    for p in (journal, D.get_preset("difface-test")):
        assert p.theta.kind == "choice" and p.theta.values == (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
        assert p.iso_prob == 0.0 and p.kernel_size == 41


# --------------------------------------------------------------------------------- per-item draws, by the rule
def _u(seed: int, scale: str, item: str, name: str) -> float:
    """The uniform of degradation_params' rule (SHA-256 of version, seed, scale, item id, name), written out: the first
    8 bytes of SHA-256("restorever.degradation/1|seed=S|scale=K|item=I|NAME"), big-endian, over 2**64."""
    blob = f"restorever.degradation/1|seed={seed}|scale={scale}|item={item}|{name}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") / 2.0**64


def _draw(dist, u: float) -> float:
    """Inverse CDF written out: a choice's index floor(u n); uniform lo + u (hi - lo); randint lo + floor(u (n))."""
    if dist.kind == "choice":
        return dist.values[int(math.floor(u * len(dist.values)))]
    lo, hi = dist.values
    return lo + u * (hi - lo) if dist.kind == "uniform" else lo + math.floor(u * (hi - lo + 1))


@pytest.mark.parametrize("preset,scale,scale_text", [("difface-test", 8, "8"), ("gfpgan-v1", None, "sampled"),
                                                     ("vqfr-v2", 2.5, "2.5"), ("difface-journal", 12.0, "12")])
def test_each_items_draws_follow_the_hash_rule(preset, scale, scale_text):
    """Every parameter of 30 items recomputed from the hash rule by hand: the same item, seed and scale give these
    numbers in any restorever, so a cached degraded face stays the face its key names."""
    p = D.get_preset(preset)
    items = [f"Person_{i}/Person_{i}_000{i % 4 + 1}" for i in range(30)]
    recs = D.Degradation(preset).sample_params(items, scale, seed=3).to_records()
    n_iso = 0
    for item, rec in zip(items, recs):
        u = {n: _u(3, scale_text, item, n) for n in ("scale", "iso", "sigma_x", "sigma_y", "theta", "noise", "jpeg")}
        iso = u["iso"] < p.iso_prob
        n_iso += iso
        sx = _draw(p.sigma, u["sigma_x"])
        assert rec["scale"] == (scale if scale is not None else _draw(p.scale, u["scale"]))
        assert rec["sigma_x"] == pytest.approx(sx, abs=1e-12)
        assert rec["sigma_y"] == pytest.approx(sx if iso else _draw(p.sigma, u["sigma_y"]), abs=1e-12)
        assert rec["theta"] == pytest.approx(0.0 if iso else _draw(p.theta, u["theta"]), abs=1e-12)
        assert rec["noise_sigma"] == pytest.approx(_draw(p.noise, u["noise"]), abs=1e-12)
        assert rec["jpeg_quality"] == int(_draw(p.jpeg, u["jpeg"]))
        noise = hashlib.sha256(f"restorever.degradation/1|seed=3|scale={scale_text}|item={item}|noise".encode())
        assert rec["noise_seed"] == int.from_bytes(noise.digest()[:8], "big") >> 1
    assert (n_iso > 0) == (p.iso_prob > 0)

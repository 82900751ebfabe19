"""Round 18, mutation testing second pass: known answers and invariants that catch a silent change of a cache key,
of the per-item degradation draws or of the alignment (docs/reliability.md names the surviving mutant each one kills;
the hash test pins the per-item draws themselves)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from restorever import alignment as A
from restorever import degradation as D
from restorever.pipeline.cache import current_key_versions, embedding_key, landmarks_key, restored_key
from restorever.pipeline.identity import RunIdentity


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


def test_sampled_parameters_have_the_documented_dtypes():
    """DegradationParams documents float64 scale, sigmas, angle and noise, and int64 JPEG quality and noise seed;
    drawn parameters and parameters replayed from records have the same dtypes, so a replayed run is the same run."""
    drawn = D.Degradation("gfpgan-v1").sample_params(["a", "b", "c"], None, seed=5)
    replayed = D.DegradationParams.from_records(drawn.to_records())
    for field in ("scale", "sigma_x", "sigma_y", "theta", "noise_sigma", "jpeg_quality", "noise_seed"):
        want = torch.int64 if field in ("jpeg_quality", "noise_seed") else torch.float64
        assert getattr(drawn, field).dtype == want and getattr(replayed, field).dtype == want, field
        assert torch.equal(getattr(drawn, field), getattr(replayed, field)), field


def test_records_replay_a_kernel_size_other_than_41():
    """A preset of one's own with a 21-tap kernel: its records name the kernel size and replaying them gives that
    size back (the blur is built from it), not the 41 of the shipped presets."""
    own = dataclasses.replace(D.get_preset("gfpgan-v1"), name="gfpgan-k21", kernel_size=21)
    drawn = D.sample_params(own, ["a", "b"], 4, seed=1)
    records = drawn.to_records()
    assert drawn.kernel_size == 21 and {r["kernel_size"] for r in records} == {21}
    assert D.DegradationParams.from_records(records).kernel_size == 21


# ------------------------------------------------------------------------------------ the run identity and its keys
_SHA, _ITEM = "9" * 64, "Person_1/Person_1_0001"
_LMS = [[190.1, 240.5], [320.0, 240.25], [256.0, 320.0], [200.0, 380.0], [310.0, 380.0]]
_FOUND = [[191.0, 241.0], [321.0, 241.0], [257.0, 321.0], [201.0, 381.0], [311.0, 381.0]]  # on the degraded crop


def _recognizer(sha: str = "ab" * 32, path: str = "/w/dlib.dat") -> SimpleNamespace:
    return SimpleNamespace(weight_files={"model": (path, sha)})


def _restorers(sha: str = "cd" * 32) -> dict:
    return {"none": SimpleNamespace(), "difface": SimpleNamespace(weight_files={"unet": ("/w/unet.pth", sha)})}


def _run_args(**change) -> dict:
    """RunIdentity.of arguments of an SCRFD run with a restorer that has weights and options (optional ones unset)."""
    return {"detector": "scrfd", "detector_file": "a" * 64, "recognizer_name": "dlib", "recognizer": _recognizer(),
            "flip_test": False, "restorers": _restorers(), "restorer_options": {"none": {}, "difface": {"steps": 50}},
            "degradation": "difface-test", "seed": 3, "device": "cpu", **change}


def _keys(ident) -> dict[str, str]:
    """L: landmarks, R: restored (difface x8), D: its embedding, C: the clean embedding."""
    return {"L": ident.landmarks_key(_SHA),
            "R": ident.restored_key(_SHA, _LMS, "difface", 8, _ITEM, degraded_landmarks=_FOUND),
            "D": ident.embedding_key(_SHA, _LMS, "difface", 8, _ITEM, degraded_landmarks=_FOUND),
            "C": ident.embedding_key(_SHA, _LMS, "none", None)}


_PLUGIN = {"module": "lab.models", "sha256": "1" * 64}
#: (what changes, RunIdentity.of arguments, the keys it must change; the others must stay), from the key recipes:
#: landmarks hold the detector's file and the device; restored faces the degradation, seed, restorer, fit, device
#: and where they were aligned; embeddings the recognizer, fit and device, and the restored face's parts if degraded
_CHANGES = [
    ("detector file", {"detector_file": "b" * 64}, "L"),
    ("recognizer", {"recognizer_name": "arcface-r50-ms1mv3"}, "DC"),
    ("recognizer weights", {"recognizer": _recognizer("ef" * 32)}, "DC"),
    ("weights path only", {"recognizer": _recognizer(path="/elsewhere/dlib.dat")}, ""),
    ("flip test", {"flip_test": True}, "DC"),
    ("recognizer option", {"recognizer_options": {"precision": "fp32"}}, "DC"),
    ("recognizer plugin file", {"plugins": {"recognizer": _PLUGIN}}, "DC"),
    ("restorer weights", {"restorers": _restorers("0f" * 32)}, "RD"),
    ("restorer option", {"restorer_options": {"none": {}, "difface": {"steps": 25}}}, "RD"),
    ("restorer plugin file", {"plugins": {"restorers": {"difface": _PLUGIN}}}, "RD"),
    ("degradation", {"degradation": "gfpgan-v1"}, "RD"),
    ("seed", {"seed": 4}, "RD"),
    ("device kind", {"device": "cuda:1"}, "LRDC"),
    ("device index", {"device": "cpu:0"}, ""),
    ("alignment fit", {"alignment_fit": "lmeds"}, "RDC"),
    ("aligned on the degraded face", {"align_on": "degraded"}, "RD"),
]


@pytest.mark.parametrize("what,change,changed", _CHANGES, ids=[c[0] for c in _CHANGES])
def test_each_part_of_a_run_changes_its_own_keys_and_no_others(what, change, changed):
    """Changing one setting of a run changes exactly the keys whose entries depend on it (a stale entry is never
    reused, a valid one never recomputed); the work plan's identity from the weight files alone is the run's, and
    the identity read back from results.json rebuilds the same keys."""
    base, ident = RunIdentity.of(**_run_args()), RunIdentity.of(**_run_args(**change))
    before, after = _keys(base), _keys(ident)
    assert {k for k in before if before[k] != after[k]} == set(changed)
    args = _run_args(**change)
    files = {**args, "recognizer_files": args.pop("recognizer").weight_files,
             "restorer_files": {n: getattr(r, "weight_files", {}) for n, r in args.pop("restorers").items()}}
    del files["recognizer"], files["restorers"]
    assert RunIdentity.from_files(**files) == ident
    back = RunIdentity.from_record({"cache": {"identity": json.loads(json.dumps(ident.as_record()))}})
    assert _keys(back) == after


def test_a_run_built_without_the_optional_settings_is_a_clean_least_squares_run():
    """RunIdentity.of's defaults are the documented ones: clean-landmark alignment (a degraded face needs no
    landmarks of its own), least squares, no recognizer options, no plugins."""
    plain = RunIdentity.of(**_run_args())
    assert plain == RunIdentity.of(**_run_args(recognizer_options=None, alignment_fit="least-squares",
                                               align_on="clean", plugins=None))
    assert plain.restored_key(_SHA, _LMS, "difface", 8, _ITEM) == _keys(plain)["R"]
    assert "align_on" not in plain.as_record()


def test_a_versions_mapping_without_a_recipe_part_is_that_part_s_version_0():
    """The key functions read a version missing from ``versions`` as 0, the recipe before that part existed (a run's
    recorded versions from before ``detector_file`` or ``degraded_item`` was added): no detector file and no item
    id in its keys, where the current versions put them in."""
    now = current_key_versions()
    onnx = "a" * 64
    without = {k: v for k, v in now.items() if k != "detector_file"}
    assert landmarks_key(_SHA, "scrfd", versions=without, detector_file=onnx) == \
        landmarks_key(_SHA, "scrfd", versions={**without, "detector_file": 0}, detector_file=onnx) == \
        landmarks_key(_SHA, "scrfd", versions={**without, "detector_file": 0})
    assert landmarks_key(_SHA, "scrfd", versions=now, detector_file=onnx) != \
        landmarks_key(_SHA, "scrfd", versions=without, detector_file=onnx)
    without = {k: v for k, v in now.items() if k != "degraded_item"}
    for key in (restored_key, embedding_key):
        extra = {"recognizer_id": "r"} if key is embedding_key else {}
        parts = dict(restorer_id="x", degradation="difface-test", scale=8, seed=0, **extra)
        old = key(_SHA, _LMS, item=_ITEM, versions=without, **parts)
        assert old == key(_SHA, _LMS, item="another item", versions={**without, "degraded_item": 0}, **parts)
        assert old != key(_SHA, _LMS, item=_ITEM, versions=now, **parts)


# ---------------------------------------------------------------------------------------------------- alignment
@pytest.mark.parametrize("name,size", [("facenet_160", 160), ("dlib_150", 150)])
def test_measured_templates_are_mirror_symmetric_about_the_crop_centre(name, size):
    """facenet_160 and dlib_150 were averaged and then mirrored about x = 79.5 and x = 74.5 (restorever.alignment),
    the centres (size - 1) / 2 of their square crops: eyes and mouth corners are mirror pairs at one height, and
    the nose sits on the axis."""
    tpl = A.get_template(name)
    p = tpl.points
    assert tuple(tpl.size) == (size, size)
    for left, right in ((0, 1), (3, 4)):
        assert p[left, 0] + p[right, 0] == pytest.approx(size - 1, abs=1e-9)
        assert p[left, 1] == p[right, 1]
    assert p[2, 0] == pytest.approx((size - 1) / 2, abs=1e-9)


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_coinciding_landmarks_are_refused_in_a_batch_of_any_size(batch):
    """Five points within a micro-pixel (mean squared spread 8e-13 px^2, under the fit's 1e-12 floor) have no
    scale or angle: the fit refuses them whether the face is alone or in a batch (its spread is per face)."""
    tiny = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.0]], dtype=torch.float64) * 1e-6
    src = (torch.tensor([100.0, 120.0], dtype=torch.float64) + tiny).expand(batch, -1, -1)
    with pytest.raises(A.AlignmentError, match="coincide"):
        A.estimate_similarity(src, A.get_template("arcface_112").points)
    fine = (torch.tensor([100.0, 120.0], dtype=torch.float64) + tiny * 1e3).expand(batch, -1, -1)
    assert A.estimate_similarity(fine, A.get_template("arcface_112").points).shape == (batch, 2, 3)


def test_one_matrix_warps_every_image_of_a_batch():
    """warp_affine takes one [2, 3] (or [1, 2, 3]) matrix for a whole batch: each image comes out as it would
    with the matrix repeated per image."""
    images = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    m = torch.tensor([[0.8, -0.2, 3.0], [0.2, 0.8, -1.5]], dtype=torch.float64)
    each = A.warp_affine(images, m.expand(3, 2, 3), (16, 18))
    assert torch.equal(A.warp_affine(images, m, (16, 18)), each)
    assert torch.equal(A.warp_affine(images, m[None], (16, 18)), each)


def test_warp_names_the_layout_it_wants_for_an_array():
    """A numpy image (HxWxC, what cv2 takes) is a ValueError naming the [B, C, H, W] tensor warp_affine wants."""
    with pytest.raises(ValueError, match=r"\[B, C, H, W\] tensor"):
        A.warp_affine(np.zeros((8, 8, 3), np.float32), torch.eye(2, 3), (8, 8))

"""Tests for restorever.degradation against a plain per-image OpenCV implementation of DifFace's test degradation."""
from __future__ import annotations

import hashlib
import json
import math

import cv2
import numpy as np
import pytest
import torch

from restorever import degradation as D

PEOPLE = ["Aaron_Peirsol", "Barbara_Boxer", "Colin_Powell", "Gloria_Macapagal_Arroyo"]


# ----------------------------------------------------------------------------------------- the reference, by hand
def ref_kernel(sig_x: float, sig_y: float, theta: float, size: int = 41) -> np.ndarray:
    """basicsr bivariate_Gaussian(isotropic=False), written out with numpy."""
    ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    grid = np.stack([xx, yy], axis=-1)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cov = rot @ np.diag([sig_x**2, sig_y**2]) @ rot.T
    k = np.exp(-0.5 * np.sum((grid @ np.linalg.inv(cov)) * grid, axis=2))
    return k / k.sum()


def ref_degrade(img_rgb: np.ndarray, rec: dict, noise_chw: np.ndarray) -> np.ndarray:
    """DifFace face_degradation on one HxWx3 float32 RGB image in [0, 1], step by step; returns uint8 RGB."""
    im = np.ascontiguousarray(img_rgb[:, :, ::-1])  # the reference works in BGR
    h, w = im.shape[:2]
    k = ref_kernel(rec["sigma_x"], rec["sigma_y"], rec["theta"], rec["kernel_size"])
    lq = cv2.filter2D(im, -1, k)
    sf = rec["scale"]
    lq = cv2.resize(lq, (int(w // sf), int(h // sf)), interpolation=cv2.INTER_LINEAR)
    noise = np.ascontiguousarray(noise_chw.transpose(1, 2, 0)[:, :, ::-1])  # same draws, BGR order
    lq = np.clip(lq + noise * np.float32(rec["noise_sigma"]) / 255.0, 0, 1)
    ok, enc = cv2.imencode(".jpg", np.clip(lq, 0, 1) * 255.0, [int(cv2.IMWRITE_JPEG_QUALITY), rec["jpeg_quality"]])
    assert ok
    lq = np.float32(cv2.imdecode(enc, cv2.IMREAD_COLOR)) / 255.0
    lq = cv2.resize(lq, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.clip((lq * 255.0).round(), 0, 255)
    return out[:, :, ::-1].astype(np.uint8)


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def faces(lfw_root) -> tuple[torch.Tensor, list[str]]:
    """Four real LFW photos enlarged to 512x512, RGB float in [0, 1]."""
    imgs, ids = [], []
    for person in PEOPLE:
        path = lfw_root / "lfw-deepfunneled" / person / f"{person}_0001.jpg"
        bgr = cv2.imread(str(path))
        assert bgr is not None, path
        imgs.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (512, 512), interpolation=cv2.INTER_CUBIC))
        ids.append(f"{person}/{person}_0001")
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0, ids


def _to_u8(t: torch.Tensor) -> np.ndarray:
    return (t * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize(
    "preset,scale",
    [("difface-test", 4), ("difface-test", 8), ("difface-test", 16), ("difface-test", 24), ("difface-test", 32),
     ("difface-test", None), ("codeformer-s2", 6.5), ("gfpgan-v1", None)],
)
def test_matches_opencv_reference(faces, preset, scale):
    images, ids = faces
    deg = D.Degradation(preset)
    params = deg.sample_params(ids, scale, seed=3)
    out = deg.apply(images, params)
    for i, rec in enumerate(params.to_records()):
        lr_h, lr_w = D.lr_size(512, 512, rec["scale"])
        noise = deg.noise(params, i, (3, lr_h, lr_w)).numpy()
        ref = ref_degrade(images[i].permute(1, 2, 0).numpy(), rec, noise).astype(np.float64)
        mine = _to_u8(out[i]).astype(np.float64)
        assert np.abs(mine - ref).mean() < 1.0, rec
        # on the CPU the two agree almost everywhere, not just on average
        assert (mine == ref).mean() > 0.99, rec


def test_blur_and_resize_match_opencv():
    rng = np.random.default_rng(0)
    img = rng.random((96, 80, 3), dtype=np.float32)
    k = ref_kernel(3.0, 9.0, math.pi / 4)
    got = D.filter2d_reflect101(torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(k))
    ref = cv2.filter2D(img, -1, k)
    assert np.abs(got.permute(1, 2, 0).numpy() - ref).max() < 1e-5
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    for size in [(24, 20), (17, 13), (96, 80), (200, 150), (48, 40)]:
        ref = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        got = D.resize_bilinear(x, size)[0].permute(1, 2, 0).numpy()
        assert np.abs(got - ref).max() < 1e-5, size
    # blur + shrink computed on the needed rows only equals the two steps done separately
    xi = x[0]
    axis_aligned = torch.from_numpy(ref_kernel(3.0, 9.0, math.pi / 2))
    assert D.separable_factors(torch.from_numpy(k)) is None and D.separable_factors(axis_aligned) is not None
    for size in [(24, 20), (5, 4), (31, 26), (96, 80)]:
        full = D.resize_bilinear(D.filter2d_reflect101(xi, torch.from_numpy(k))[None], size)[0]
        for method in ("rows", "matmul", "auto"):
            fast = D.blur_downsample(xi, torch.from_numpy(k), size, method=method)
            assert torch.allclose(full, fast, atol=1e-6), (size, method)
        full = D.resize_bilinear(D.filter2d_reflect101(xi, axis_aligned)[None], size)[0]
        for method in ("separable", "rows"):
            fast = D.blur_downsample(xi, axis_aligned, size, method=method)
            assert torch.allclose(full, fast, atol=1e-6), (size, method)
    with pytest.raises(ValueError, match="rank-one"):
        D.blur_downsample(xi, torch.from_numpy(k), (24, 20), method="separable")


def test_device_path_enlargement_matches_opencv_path():
    """The enlargement used for non-CPU tensors (torch) agrees with the OpenCV one used on the CPU."""
    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, (3, 21, 21, 3), dtype=np.uint8)  # BGR, as OpenCV decodes
    via_torch = D._upsample_round_rgb(torch.from_numpy(small).permute(0, 3, 1, 2).flip(1), 512, 512, torch.float32)
    for i in range(3):
        via_cv2 = torch.from_numpy(D._upsample_round_cv2(small[i], 512, 512, torch.float32)).permute(2, 0, 1)
        diff = (via_torch[i] - via_cv2).abs() * 255
        assert float(diff.max()) <= 1.0 + 1e-4 and float((diff > 0.5).double().mean()) < 0.01


def test_kernels_match_basicsr_formula():
    sx = torch.tensor([2.0, 14.0, 0.3, 7.5])
    sy = torch.tensor([14.0, 2.0, 0.3, 1.0])
    th = torch.tensor([0.0, math.pi / 4, 0.0, -2.0])
    ks = D.gaussian_kernels(sx, sy, th, 41)
    assert ks.shape == (4, 41, 41) and ks.dtype == torch.float64
    for i in range(4):
        ref = ref_kernel(float(sx[i]), float(sy[i]), float(th[i]))
        np.testing.assert_allclose(ks[i].numpy(), ref, rtol=0, atol=1e-12)


def test_batch_size_never_changes_a_byte(faces):
    images, ids = faces
    deg = D.Degradation("difface-test")
    params = deg.sample_params(ids, None, seed=0)  # per-item scales: mixed low-resolution sizes in one batch
    batched = deg.apply(images, params)
    single = torch.cat([deg.apply(images[i:i + 1], params[i]) for i in range(len(ids))])
    pairs = torch.cat([deg.apply(images[i:i + 2], params[i:i + 2]) for i in (0, 2)])
    assert torch.equal(batched, single)
    assert torch.equal(batched, pairs)
    # nor does the caller's thread setting, which apply leaves as it found it
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.equal(deg.apply(images, params), batched)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    deg.apply(images[:2], params[:2])
    assert torch.get_num_threads() == before


def test_parameters_are_per_item_and_deterministic():
    deg = D.Degradation("difface-test")
    a = deg.sample_params(["x", "y", "z"], 16, seed=7)
    b = deg.sample_params(["z", "x"], 16, seed=7)
    assert a.to_records()[0] == b.to_records()[1]
    assert a.to_records()[2] == b.to_records()[0]
    assert a.to_records() == deg.sample_params(["x", "y", "z"], 16, seed=7).to_records()
    other_seed = deg.sample_params(["x", "y", "z"], 16, seed=8)
    other_scale = deg.sample_params(["x", "y", "z"], 8, seed=7)
    assert not torch.equal(a.noise_seed, other_seed.noise_seed)
    assert not torch.equal(a.noise_seed, other_scale.noise_seed)
    # the documented derivation: SHA-256 of "restorever.degradation/1|seed=..|scale=..|item=..|noise", 63 bits
    digest = hashlib.sha256(b"restorever.degradation/1|seed=7|scale=16|item=y|noise").digest()
    assert int(a.noise_seed[1]) == int.from_bytes(digest[:8], "big") >> 1
    # integral float scales hash like ints, so 16 and 16.0 name the same condition
    assert deg.sample_params(["y"], 16.0, seed=7).to_records() == a[1].to_records()
    # the noise of an item is reproducible from its record alone
    n1 = deg.noise(a, 1, (3, 32, 32))
    n2 = deg.noise(D.DegradationParams.from_records(a[1].to_records()), 0, (3, 32, 32))
    assert torch.equal(n1, n2) and abs(float(n1.std()) - 1.0) < 0.1


def test_records_roundtrip_replays_exactly(faces):
    images, ids = faces
    out, params = D.degrade(images[:2], ids[:2], 8, seed=1)
    recs = json.loads(json.dumps(params.to_records()))
    assert recs[0]["item_id"] == ids[0] and recs[0]["scale"] == 8 and recs[0]["preset"] == "difface-test"
    replay = D.Degradation("difface-test").apply(images[:2], D.DegradationParams.from_records(recs))
    assert torch.equal(out, replay)
    joined = D.DegradationParams.cat([params[0], params[1]])
    assert joined.to_records() == params.to_records()


def test_output_contract(faces):
    images, ids = faces
    out, _ = D.degrade(images[:1].double(), ids[:1], 16, seed=0)
    assert out.shape == (1, 3, 512, 512) and out.dtype == torch.float64
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    k = out * 255.0
    assert torch.equal(k, k.round())
    # degradation removes detail: the x16 image is far from the original but keeps its mean colour
    diff = (out.float() - images[:1]).abs()
    assert float(diff.mean()) > 0.02
    assert float((out.float().mean() - images[:1].mean()).abs()) < 0.05


@pytest.mark.parametrize("name", D.list_degradations())
def test_preset_ranges_are_respected(name):
    preset = D.get_preset(name)
    params = D.Degradation(name).sample_params([f"item{i}" for i in range(400)], None, seed=0)
    for rec in params.to_records():
        assert preset.scale.contains(rec["scale"])
        assert preset.sigma.contains(rec["sigma_x"]) and preset.sigma.contains(rec["sigma_y"])
        assert preset.noise.contains(rec["noise_sigma"])
        assert preset.jpeg.contains(rec["jpeg_quality"]) and isinstance(rec["jpeg_quality"], int)
        iso = rec["sigma_x"] == rec["sigma_y"] and rec["theta"] == 0.0
        assert iso or preset.theta.contains(rec["theta"])
    iso_frac = float(((params.sigma_x == params.sigma_y) & (params.theta == 0)).double().mean())
    if preset.iso_prob == 0.0:
        assert iso_frac < 0.25  # only grid coincidences (sigma_x == sigma_y, theta == 0)
    else:
        assert abs(iso_frac - preset.iso_prob) < 0.1
    if preset.jpeg.kind == "choice":  # every grid value is reachable
        assert set(params.jpeg_quality.tolist()) == {int(v) for v in preset.jpeg.values}
        assert set(params.sigma_x.tolist()) == set(preset.sigma.values)
    else:
        lo, hi = preset.noise.values
        assert params.noise_sigma.min() < lo + 0.1 * (hi - lo) and params.noise_sigma.max() > hi - 0.1 * (hi - lo)


def test_difface_test_grid_values():
    p = D.get_preset("difface-test")
    assert p.kernel_size == 41 and p.iso_prob == 0.0
    assert p.sigma.values == (2, 4, 6, 8, 10, 12, 14)
    assert p.noise.values == (1, 5, 10, 15, 20) and p.jpeg.values == (30, 40, 50, 60, 70)
    assert p.scale.values == (4, 8, 16, 24, 30)
    assert {"difface-test", "gfpgan-v1", "vqfr-v2", "codeformer-s2"} <= set(D.list_degradations())


def test_errors_are_clear(faces):
    images, ids = faces
    deg = D.Degradation()
    params = deg.sample_params(ids[:2], 4, seed=0)
    with pytest.raises(ValueError, match="2 parameter sets"):
        deg.apply(images[:1], params)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        deg.apply(images[:2] * 2.0, params)
    with pytest.raises(TypeError, match="float"):
        deg.apply((images[:2] * 255).to(torch.uint8), params)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        deg.apply(images[0], params)
    with pytest.raises(KeyError, match="did you mean difface-test"):
        D.Degradation("diface-test")
    with pytest.raises(ValueError, match="too large"):
        deg.apply(images[:1], deg.sample_params(ids[:1], 1024, seed=0))
    with pytest.raises(TypeError):
        deg.sample_params("abc", 4, seed=0)
    with pytest.raises(ValueError, match="missing the field"):
        D.DegradationParams.from_records([{"item_id": "a"}])


@pytest.mark.parametrize("backend", ["torch", "torchvision"])
def test_jpeg_backends_match_the_device_path_with_opencv_on_cpu(faces, backend):
    """``jpeg="torch"`` (restorever.jpeg, the default off the CPU) and ``jpeg="torchvision"`` (nvJPEG on a GPU) on the
    CPU give exactly the device path's pixels with OpenCV's JPEG; on a GPU, tests/test_cuda.py checks "torch" again
    and scripts/bench_gpu.py measures each backend's difference from OpenCV."""
    images, ids = faces
    deg = D.Degradation("difface-test")
    for scale in (4, 16, 24):
        params = deg.sample_params(ids, scale, seed=5)
        kernels = D.gaussian_kernels(params.sigma_x, params.sigma_y, params.theta, params.kernel_size)
        via_opencv = torch.empty_like(images)
        deg._apply_device(images, params, kernels, torch.float32, via_opencv)
        assert torch.equal(deg.apply(images, params, jpeg=backend), via_opencv)
        if backend == "torch":
            assert torch.equal(deg.apply(images, params, jpeg="opencv"), deg.apply(images, params))  # auto on CPU
    with pytest.raises(D.DegradationError, match="jpeg='nvjpeg': choose one of auto, opencv, torch, torchvision"):
        deg.apply(images, params, jpeg="nvjpeg")


# --------------------------------------------------------------------------- the batched device path (steps 1-3)
# (sigma_x, sigma_y, theta): isotropic, axis-aligned anisotropic (both axes), rotated, and a tiny isotropic one
MIXED_KERNELS = [(3.0, 3.0, 0.0), (2.0, 14.0, 0.0), (14.0, 2.0, math.pi / 2), (4.0, 10.0, math.pi / 4),
                 (12.0, 2.0, -2.0), (0.5, 0.5, 0.0)]


@pytest.mark.parametrize("scale", [4, 8, 16, 24, 32])
def test_blur_downsample_batch_matches_per_item(faces, scale):
    """The batched FFT route equals the per-item ``method="matmul"`` route to float rounding, kernel by kernel
    (measured: at most 4.8e-7 in float32 and 7.8e-16 in float64)."""
    images, _ = faces
    x = images[[i % len(images) for i in range(len(MIXED_KERNELS))]]
    sx, sy, th = (torch.tensor(v) for v in zip(*MIXED_KERNELS))
    kernels = D.gaussian_kernels(sx, sy, th, 41)
    size = D.lr_size(512, 512, scale)
    for dtype, tol in ((torch.float32, 2e-6), (torch.float64, 1e-12)):
        batched = D.blur_downsample_batch(x.to(dtype), kernels, size)
        assert batched.shape == (len(x), 3, *size) and batched.dtype == dtype
        for i in range(len(x)):
            single = D.blur_downsample(x[i].to(dtype), kernels[i], size, method="matmul")
            assert float((batched[i] - single).abs().max()) < tol, (scale, dtype, MIXED_KERNELS[i])


def test_blur_downsample_batch_is_batch_independent(faces):
    """Float for float, an item's blur + shrink is the same alone, in a batch of 5 and in a batch of 37: the chunks
    are padded to :data:`BATCH_CHUNK` items, so the transforms always have one shape (without the padding the
    CPU's FFT already gives other last bits for a batch of one)."""
    images, _ = faces
    n, target = 37, 21
    x = images[[i % len(images) for i in range(n)]]
    g = torch.Generator().manual_seed(1)
    kernels = D.gaussian_kernels(2 + 12 * torch.rand(n, generator=g), 2 + 12 * torch.rand(n, generator=g),
                                 math.pi * torch.rand(n, generator=g), 41)
    size = D.lr_size(512, 512, 16)
    whole = D.blur_downsample_batch(x, kernels, size)
    five = D.blur_downsample_batch(x[target - 3:target + 2], kernels[target - 3:target + 2], size)
    alone = D.blur_downsample_batch(x[target:target + 1], kernels[target:target + 1], size)
    assert torch.equal(alone[0], whole[target]) and torch.equal(five[3], whole[target])


def _device_path(deg: D.Degradation, images: torch.Tensor, params: D.DegradationParams) -> torch.Tensor:
    kernels = D.gaussian_kernels(params.sigma_x, params.sigma_y, params.theta, params.kernel_size)
    out = torch.empty_like(images)
    deg._apply_device(images, params, kernels, torch.float32, out)
    return out


def _unequal(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(fraction of unequal 8-bit values, largest difference in grey levels) of two multiple-of-1/255 images."""
    diff = ((a - b).abs() * 255).round()
    return float((diff > 0).double().mean()), float(diff.max())


@pytest.mark.parametrize("preset,scale", [("difface-test", 4), ("difface-test", 8), ("difface-test", 16),
                                          ("difface-test", 24), ("difface-test", 32), ("gfpgan-v1", None)])
def test_device_path_on_cpu_matches_cpu_path(faces, preset, scale):
    """``_apply_device`` on CPU tensors against ``apply`` on the CPU (which equals OpenCV).

    Two causes of difference, both float summation order: (a) the batched FFT blur + shrink sums in another order
    than the CPU path's per-item route, so a rare low-resolution pixel rounds to the neighbouring 8-bit level
    before JPEG, which spreads that change over its 8x8 block; (b) the device path's torch enlargement (step 5,
    unchanged) rounds a few pixels one level off ``cv2.resize``. Measured (2-core Xeon, torch 2.14.1) with seeds
    3, 8 and 11: (a) at most 0.016 % of the low-resolution values, each by one level; against the per-item device route
    (same enlargement) at most 0.10 % of the output pixels, by at most 8 levels (gfpgan-v1, mixed scales; 11 levels
    on 64 LFW faces in ``scripts/bench_degradation.py --device-path-cpu``: one JPEG coefficient that rounds the
    other way); against the CPU path at most 0.53 % of the pixels at x4 (0.46 % for seed 3, used here), of which
    the per-item device route already had 0.35-0.48 % from (b) alone. Bounds: 0.05 % of low-resolution values (by
    one level), 99.5 % equal output pixels against the per-item device route, 99.25 % against the CPU path,
    16 levels."""
    images, ids = faces
    deg = D.Degradation(preset)
    params = deg.sample_params(ids, scale, seed=3)
    kernels = D.gaussian_kernels(params.sigma_x, params.sigma_y, params.theta, params.kernel_size)
    flips = total = 0
    for idx, small in deg._low_res_groups(images, params, kernels, torch.float32):
        assert small.dtype == torch.uint8 and small.shape[:2] == (len(idx), 3)
        for k, i in enumerate(idx):
            one = deg._low_res_u8(images[i], params, i, kernels[i], torch.float32)  # the CPU path's steps 1-3
            assert int((small[k].int() - one.int()).abs().max()) <= 1, (i, params.to_records()[i])
            flips += int((small[k] != one).sum())
            total += one.numel()
    assert flips / total < 5e-4
    mine = _device_path(deg, images, params)
    per_item = torch.cat([D._upsample_round_rgb(
        D._jpeg_group_opencv(deg._low_res_u8(images[i], params, i, kernels[i], torch.float32)[None],
                             [int(params.jpeg_quality[i])]), 512, 512, torch.float32) for i in range(len(ids))])
    frac, worst = _unequal(mine, per_item)
    assert frac < 0.005 and worst <= 16, (frac, worst)
    frac, worst = _unequal(mine, deg.apply(images, params))
    assert frac < 0.0075 and worst <= 16, (frac, worst)


@pytest.mark.parametrize("scale", [16, None])
def test_device_path_is_batch_independent(faces, scale):
    """An item's output is the same alone, in a batch of 5 and at another position of a batch of 37 (more than two
    chunks of :data:`BATCH_CHUNK`; with ``scale=None`` the items fall into groups of mixed sizes)."""
    images, _ = faces
    deg = D.Degradation("difface-test")
    ids = [f"item{i}" for i in range(37)]
    batch = images[[i % len(images) for i in range(len(ids))]]
    params = deg.sample_params(ids, scale, seed=4)
    target = 21  # in the second chunk of 16 when every item has one size
    whole = _device_path(deg, batch, params)
    five = _device_path(deg, batch[target - 3:target + 2], params[target - 3:target + 2])
    alone = _device_path(deg, batch[target:target + 1], params[[target]])
    assert torch.equal(alone[0], whole[target]) and torch.equal(five[3], whole[target])
    assert not torch.equal(whole[target], whole[target - 1])


def test_device_path_noise_is_the_per_item_noise(monkeypatch):
    """Each item of a group gets exactly ``Degradation.noise`` of its own seed, whatever the grouping."""
    deg = D.Degradation("difface-test")
    params = deg.sample_params([f"n{i}" for i in range(20)], None, seed=2)  # mixed low-resolution sizes
    images = torch.rand(20, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    kernels = D.gaussian_kernels(params.sigma_x, params.sigma_y, params.theta, params.kernel_size)
    seen: list[torch.Tensor] = []
    real = D.add_gaussian_noise

    def spy(small, noise, sigma):
        seen.append(noise.clone())
        return real(small, noise, sigma)

    monkeypatch.setattr(D, "add_gaussian_noise", spy)
    groups = deg._low_res_groups(images, params, kernels, torch.float32)
    assert len(groups) > 1 and len(seen) == len(groups)
    assert sorted(i for idx, _ in groups for i in idx) == list(range(20))
    for (idx, small), noise in zip(groups, seen):
        for k, i in enumerate(idx):
            assert torch.equal(noise[k], deg.noise(params, i, tuple(small.shape[1:]))), i


def test_a_scale_beyond_the_image_names_the_largest_that_works():
    """The message reads the same from the library and the CLI (it printed 1000.0 and named --scales)."""
    from restorever.degradation_ops import lr_size
    from restorever.degradation_params import DegradationError

    assert lr_size(512, 512, 512) == (1, 1)
    with pytest.raises(DegradationError, match=r"^scale 1000 is too large for a 512x512 image .*at most 512$"):
        lr_size(512, 512, 1000.0)

"""GFPGAN v1.4/v1.3: reproduce the official fixture, per-item seeded noise, strict loading of the released layout.

Fixture ``shared/reference/fixtures/gfpgan_small.pt``: the official ``GFPGANv1Clean`` at a reduced size with random
weights, its input, every output (float32 and float64) for stored-buffer and random-noise runs, the recorded noise
draws and intermediate features; tolerances from its ``notes`` (``shared/reference/gfpgan.md`` §10). Manifest
``shared/reference/manifests/gfpgan_v1_4_state_dict.json``: every key/shape of the released files.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from restorever import hub
from restorever.errors import CheckpointLayoutError, WeightsNotFoundError
from restorever.restorers import gfpgan

TOL_IMAGE = 2e-4      # float32 image (|image| up to 7.5)
TOL_FEATURE = 2e-5    # float32 out_rgbs, style code, conditions
TOL_FLOAT64 = 1e-9
STORED = "return_rgb=False,randomize_noise=False"
WITH_RGB = "return_rgb=True,randomize_noise=False"
RANDOM = "return_rgb=False,randomize_noise=True,torch.manual_seed(2024)"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fx(reference_dir) -> dict:
    return torch.load(reference_dir / "fixtures" / "gfpgan_small.pt", weights_only=False)  # our fixture (tests only)


def _net(fx: dict, dtype: torch.dtype = torch.float32) -> gfpgan.GFPGANv1Clean:
    net = gfpgan.build_network(fx["config"]).to(dtype)
    hub.load_state_dict_strict(net, {k: v.to(dtype) for k, v in fx["state_dict"].items()}, source="fixture")
    return net


@pytest.fixture(scope="module")
def net(fx) -> gfpgan.GFPGANv1Clean:
    return _net(fx)


def _run(net: gfpgan.GFPGANv1Clean, fx: dict, run: str, dtype: torch.dtype = torch.float32) -> dict:
    """Our outputs for a fixture run; the random-noise run replays the recorded draws."""
    kwargs = fx["forward_kwargs"][run]
    noise = [d.to(dtype) for d in fx["aux"]["random_noise_draws"]] if kwargs["randomize_noise"] else None
    with torch.no_grad():
        out = net(fx["inputs"]["x"].to(dtype), noise=noise, return_rgb=kwargs["return_rgb"], return_aux=True)
    flat = {"image": out["image"], "style_code": out["style_code"], "conditions": out["conditions"]}
    for i, rgb in enumerate(out.get("out_rgbs", [])):
        flat[f"out_rgbs.{i}"] = rgb
    return flat


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


# ------------------------------------------------------------------------------------------- fixture reproduction
def test_module_tree_matches_the_official_state_dict(fx, net):
    state = net.state_dict()
    assert list(state) == list(fx["state_dict"])  # same keys in the same order
    assert all(state[k].shape == v.shape for k, v in fx["state_dict"].items())


def test_fixture_float32_every_run_and_output(fx, net):
    assert set(fx["outputs"]) == {STORED, WITH_RGB, RANDOM}
    for run, expected in fx["outputs"].items():
        out = _run(net, fx, run)
        for key, ref in expected.items():
            tol = TOL_IMAGE if key == "image" else TOL_FEATURE
            assert _max_diff(out[key], ref) <= tol, f"{run} {key}"


def test_fixture_intermediate_features(fx, net):
    out = _run(net, fx, STORED)
    assert _max_diff(out["style_code"], fx["aux"]["style_code"]) <= TOL_FEATURE
    for i, ref in fx["aux"]["conditions"].items():  # scale/shift at 8, 16, 32 px, full tensors
        assert _max_diff(out["conditions"][int(i)], ref) <= TOL_FEATURE, f"condition {i}"
    for i, ref in fx["aux"]["conditions_channel_mean"].items():  # all ten, as channel means
        assert _max_diff(out["conditions"][int(i)].mean(dim=(2, 3)), ref) <= TOL_FEATURE, f"condition mean {i}"


def test_fixture_float64(fx):
    net64 = _net(fx, torch.float64)
    for run, expected in fx["outputs_float64"].items():
        out = _run(net64, fx, run, torch.float64)
        assert out["image"].dtype == torch.float64
        assert _max_diff(out["image"], expected["image"]) <= TOL_FLOAT64, run


def test_noise_matters_and_stored_buffers_are_the_default(fx, net):
    x = fx["inputs"]["x"]
    with torch.no_grad():
        stored = net(x)["image"]
        explicit = net(x, noise=net.stylegan_decoder.stored_noise())["image"]
        random = net(x, noise=fx["aux"]["random_noise_draws"])["image"]
    assert torch.equal(stored, explicit)
    assert _max_diff(random, stored) > 0.1  # the fixture's noise strengths make noise visible (1.02 measured)


def test_official_random_draws_are_a_seeded_cpu_stream(fx):
    """The official run drew its maps with ``torch.manual_seed(2024)`` then ``normal_`` in layer order."""
    gen = torch.Generator().manual_seed(2024)
    for draw in fx["aux"]["random_noise_draws"]:
        assert torch.equal(torch.randn(draw.shape, generator=gen), draw)


def test_batch_items_are_independent(fx, net):
    with torch.no_grad():
        single = net(fx["inputs"]["x"][1:])["image"]
    assert _max_diff(single, fx["outputs"][STORED]["image"][1:]) <= TOL_IMAGE


# ------------------------------------------------------------------------------------------- restorer adapter
def _small_restorer(fx: dict, **kwargs) -> gfpgan.GFPGANRestorer:
    card = dataclasses.replace(gfpgan.CARDS["gfpgan-v1.4"], input_size=fx["config"]["out_size"])
    return gfpgan.GFPGANRestorer(card, _net(fx), **kwargs).eval()


def test_restorer_applies_the_official_conversions(fx):
    images = (fx["inputs"]["x"] + 1) / 2  # the fixture input is in [-1, 1]
    exact = _small_restorer(fx, noise="stored", quantize_output=False).restore(images)
    ref = fx["outputs"][STORED]["image"]
    assert ((ref < -1) | (ref > 1)).any()  # the clamp is exercised
    assert exact.shape == images.shape and exact.dtype == images.dtype
    assert _max_diff(exact, (ref.clamp(-1, 1) + 1) / 2) <= TOL_IMAGE / 2
    rounded = _small_restorer(fx, noise="stored").restore(images)
    assert torch.equal(rounded, torch.round(exact * 255) / 255)  # tensor2img: x255, round
    with pytest.raises(ValueError, match="expected 128x128"):
        _small_restorer(fx).restore(torch.rand(1, 3, 64, 64))


def test_seeded_noise_is_per_item(fx):
    restorer = _small_restorer(fx, quantize_output=False)
    images = (fx["inputs"]["x"] + 1) / 2
    both = restorer.restore(images, seeds=[7, 8])
    first = restorer.restore(images[:1], seeds=[7])
    second = restorer.restore(images[1:], seeds=[8])
    assert _max_diff(both, torch.cat([first, second])) <= 1e-5  # an item's result does not depend on its batch
    assert torch.equal(first, restorer.restore(images[:1], seeds=[7]))  # reproducible
    assert _max_diff(first, restorer.restore(images[:1], seeds=[9])) > 1e-3  # the seed matters
    same_face = restorer.restore(images[:1].repeat(2, 1, 1, 1), seeds=[7, 9])
    assert _max_diff(same_face[0], same_face[1]) > 1e-3  # two items never share noise maps
    stored = _small_restorer(fx, noise="stored", quantize_output=False)
    assert torch.equal(stored.restore(images, seeds=[1, 2]), stored.restore(images, seeds=[3, 4]))
    with pytest.raises(ValueError, match="1 seeds for 2 images"):
        restorer.restore(images, seeds=[1])


def test_seeded_noise_of_one_item_replays_the_official_draws(fx):
    """A batch of one with seed s draws exactly what the official code draws after ``torch.manual_seed(s)``."""
    restorer = _small_restorer(fx)
    like = torch.zeros(1, 3, 128, 128)
    ours = restorer.draw_noise([2024], like)
    state = torch.get_rng_state()
    try:
        torch.manual_seed(2024)
        official = [torch.empty(shape).normal_() for shape in restorer.net.noise_shapes(1)]
    finally:
        torch.set_rng_state(state)
    assert len(ours) == restorer.net.num_noise_layers == 11
    assert all(torch.equal(a, b) for a, b in zip(ours, official))


def test_explicit_noise_reproduces_the_official_random_run(fx):
    restorer = _small_restorer(fx, quantize_output=False)
    images = (fx["inputs"]["x"] + 1) / 2
    out = restorer(images, noise=fx["aux"]["random_noise_draws"])
    ref = fx["outputs"][RANDOM]["image"]
    assert _max_diff(out, (ref.clamp(-1, 1) + 1) / 2) <= TOL_IMAGE / 2


def test_reduced_precision_stays_close(fx):
    images = (fx["inputs"]["x"][:1] + 1) / 2
    full = _small_restorer(fx, noise="stored", quantize_output=False).restore(images)
    half = _small_restorer(fx, noise="stored", quantize_output=False, precision="bf16").restore(images)
    diff = (half - full).abs()
    assert half.dtype == images.dtype and 0 < diff.mean().item() < 0.02 and diff.max().item() < 0.3


class _NaNUnderAutocast(torch.nn.Module):
    """The network, with one pixel of its image made NaN whenever it runs under autocast (records each dtype)."""

    def __init__(self, net: gfpgan.GFPGANv1Clean):
        super().__init__()
        self.inner = net
        self.autocast_dtypes: list[torch.dtype | None] = []

    def forward(self, x, noise=None, autocast_dtype=None):
        self.autocast_dtypes.append(autocast_dtype)
        out = self.inner(x, noise=noise, autocast_dtype=autocast_dtype)
        if autocast_dtype is None:
            return out
        image = out["image"].clone()
        image[0, 1, 5, 7] = float("nan")
        return {**out, "image": image}


def test_non_finite_autocast_batch_recomputed_in_fp32(fx, caplog):
    images = (fx["inputs"]["x"] + 1) / 2
    ref = _small_restorer(fx, noise="stored", quantize_output=False).restore(images)
    half = _small_restorer(fx, noise="stored", quantize_output=False, precision="bf16")
    half.net = _NaNUnderAutocast(half.net)
    out = half.restore(images)
    assert half.net.autocast_dtypes == [torch.bfloat16, None]  # the bf16 try, then one float32 recompute
    assert torch.equal(out, ref)  # the recompute is the fp32 restorer's own result, NaN-free
    assert "non-finite output under torch.bfloat16 autocast" in caplog.text



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_batched_restore_on_the_gpu_matches_the_cpu(fx):
    images = (fx["inputs"]["x"] + 1) / 2
    cpu = _small_restorer(fx, noise="stored", quantize_output=False, precision="fp32").restore(images)
    for precision, mean_tol in (("fp32", 2e-3), ("auto", 1e-2), ("bf16", 3e-2)):  # fp32 convs may use TF32
        gpu = _small_restorer(fx, noise="stored", quantize_output=False, precision=precision).to("cuda")
        out = gpu.restore(images.cuda()).cpu()
        assert out.dtype == images.dtype and (out - cpu).abs().mean().item() < mean_tol, precision
    seeded = _small_restorer(fx, noise_device="cpu").to("cuda")  # CPU generators: the same noise on any machine
    draws_gpu = seeded.draw_noise([5, 6], images.cuda())
    draws_cpu = _small_restorer(fx, noise_device="cpu").draw_noise([5, 6], images)
    assert all(g.is_cuda and torch.equal(g.cpu(), c) for g, c in zip(draws_gpu, draws_cpu))
    both = seeded.restore(images.cuda(), seeds=[5, 6])
    single = seeded.restore(images[1:].cuda(), seeds=[6])  # same noise; only kernel choices may differ
    assert (both[1:] - single).abs().mean().item() < 1e-3

def test_option_errors():
    with pytest.raises(ValueError, match="noise must be one of seeded, stored"):
        gfpgan.create("gfpgan-v1.4", noise="random", pretrained=False)
    with pytest.raises(ValueError, match="precision"):
        gfpgan.create("gfpgan-v1.4", precision="int8", pretrained=False)
    with pytest.raises(ValueError, match="unknown weight role"):
        gfpgan.create("gfpgan-v1.4", weights={"unet": "x.pth"})
    with pytest.raises(ValueError, match="released GFPGANv1Clean switches"):
        gfpgan.GFPGANv1Clean(out_size=512)  # the class defaults are not the released configuration


# ------------------------------------------------------------------------------------------- checkpoints and errors
def _manifest(reference_dir: Path) -> dict:
    return json.loads((reference_dir / "manifests" / "gfpgan_v1_4_state_dict.json").read_text())


def synthetic_state_dict(manifest: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with every key, shape and dtype of the released checkpoint: conv/linear weights
    ~ 1/sqrt(fan_in), modulation biases 1 (identity styles), noise maps N(0, 1), noise strengths small."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape, dtype in manifest["state_dict"]:
        t = torch.randn(*shape, generator=gen, dtype=getattr(torch, dtype))
        if ".noises.noise" in key or key.endswith("constant_input.weight"):
            pass
        elif key.endswith("modulation.bias"):
            t = 1 + 0.1 * t
        elif len(shape) >= 2:
            fan_in = t[0].numel() if len(shape) != 5 else t[0, 0].numel()
            t *= 1 / fan_in ** 0.5
        else:
            t *= 0.05
        out[key] = t
    return out


def test_released_layout_loads_strictly(reference_dir, tmp_path):
    manifest = _manifest(reference_dir)
    ema = synthetic_state_dict(manifest, seed=1)
    plain = {k: torch.zeros_like(v) for k, v in list(ema.items())[:3]}  # an incomplete "params": must be ignored
    path = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": ema, "params": plain}, path)
    del plain
    for name in ("gfpgan-v1.4", "gfpgan-v1.3"):  # one architecture, two files
        restorer = gfpgan.create(name, weights={"model": str(path)})
        state = restorer.net.state_dict()
        assert list(state) == [k for k, _, _ in manifest["state_dict"]]
        assert len(state) == manifest["num_state_dict_entries"] == 285
        assert sum(t.numel() for t in state.values()) == manifest["total_state_dict_numel"]
        assert sum(p.numel() for p in restorer.net.parameters()) == manifest["total_parameter_count"]
        for key in ("stylegan_decoder.noises.noise14", "final_linear.weight"):
            assert torch.equal(state[key], ema[key])  # params_ema was preferred; the noise buffers were loaded
        assert restorer.weight_files == {"model": (str(path), hub.sha256_file(path))}
        assert not any(t.is_meta for t in state.values())


def test_other_backends_files_are_refused_with_the_right_name(reference_dir, tmp_path):
    cf = torch.load(reference_dir / "fixtures" / "codeformer_small.pt", weights_only=False)["state_dict"]
    torch.save({"params_ema": cf}, tmp_path / "codeformer.pth")
    with pytest.raises(CheckpointLayoutError, match=r"codeformer\.pth: a CodeFormer checkpoint; use --restorer "
                                                   r"codeformer, not a gfpgan-v1\.4 checkpoint"):
        gfpgan.create("gfpgan-v1.4", weights={"model": str(tmp_path / "codeformer.pth")})
    vq = torch.load(reference_dir / "fixtures" / "vqfr_v2_small.pt", weights_only=False)["state_dict"]
    torch.save({"params": vq}, tmp_path / "VQFR_v2.pth")
    with pytest.raises(CheckpointLayoutError, match="VQFR v2 checkpoint; use --restorer vqfr-v2"):
        gfpgan.create("gfpgan-v1.3", weights={"model": str(tmp_path / "VQFR_v2.pth")})
    unet = torch.load(reference_dir / "fixtures" / "difface_unet_small.pt", weights_only=False)["state_dict"]
    torch.save(unet, tmp_path / "iddpm.pth")
    with pytest.raises(CheckpointLayoutError, match="DifFace's diffusion UNet.*--restorer difface"):
        gfpgan.create("gfpgan-v1.4", weights={"model": str(tmp_path / "iddpm.pth")})



def test_gfpgan_and_codeformer_files_given_to_vqfr_and_difface_name_their_backend(fx, reference_dir, tmp_path):
    from restorever.restorers import difface, vqfr

    torch.save({"params_ema": fx["state_dict"]}, tmp_path / "GFPGANv1.4.pth")
    cf = torch.load(reference_dir / "fixtures" / "codeformer_small.pt", weights_only=False)["state_dict"]
    torch.save({"params_ema": cf}, tmp_path / "codeformer.pth")
    with pytest.raises(CheckpointLayoutError, match=r"GFPGANv1\.4\.pth: a GFPGAN .*--restorer gfpgan-v1\.4"):
        vqfr.create("vqfr-v2", weights={"model": str(tmp_path / "GFPGANv1.4.pth")})
    with pytest.raises(CheckpointLayoutError, match="CodeFormer checkpoint; use --restorer codeformer"):
        vqfr.create("vqfr-v1", weights={"model": str(tmp_path / "codeformer.pth")})
    estimator = torch.load(reference_dir / "fixtures" / "difface_swinir_small.pt", weights_only=False)["state_dict"]
    torch.save(estimator, tmp_path / "swinir.pth")
    with pytest.raises(CheckpointLayoutError, match=r"difface unet weights .*GFPGANv1\.4\.pth: a GFPGAN"):
        difface.create("difface", weights={"unet": str(tmp_path / "GFPGANv1.4.pth"),
                                           "estimator": str(tmp_path / "swinir.pth")})

def test_incomplete_checkpoint_names_missing_and_unexpected_keys(fx, tmp_path):
    state = dict(fx["state_dict"])
    state.pop("stylegan_decoder.noises.noise3")
    state["extra.weight"] = torch.zeros(1)
    state["final_linear.bias"] = torch.zeros(10)
    path = tmp_path / "broken.pth"
    torch.save({"params_ema": state}, path)
    with pytest.raises(CheckpointLayoutError) as info:
        gfpgan.create("gfpgan-v1.4", weights={"model": str(path)}, config=fx["config"])
    message = str(info.value)
    for part in (str(path), "stylegan_decoder.noises.noise3", "extra.weight", "final_linear.bias (10,)",
                 "GFPGANv1.4.pth"):
        assert part in message
    assert "\n" not in message


class _NotATensor:
    pass


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": {"x": _NotATensor()}}, path)
    with pytest.raises(CheckpointLayoutError, match="weights-only"):
        gfpgan.create("gfpgan-v1.4", weights={"model": str(path)})


@pytest.mark.parametrize("name, filename", [("gfpgan-v1.4", "GFPGANv1.4.pth"), ("gfpgan-v1.3", "GFPGANv1.3.pth")])
def test_missing_weights_error_names_file_and_url(name, filename, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        gfpgan.create(name)
    message = str(info.value)
    url = f"https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/{filename}"
    assert filename in message and url in message and "\n" not in message
    assert str(tmp_path / "weights" / name / filename) in message


def test_checkpoint_from_cache_dir(fx, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    target = tmp_path / "weights" / "gfpgan-v1.3" / "GFPGANv1.3.pth"
    target.parent.mkdir(parents=True)
    torch.save({"params": {f"module.{k}": v for k, v in fx["state_dict"].items()}}, target)  # params + DDP prefix
    restorer = gfpgan.create("gfpgan-v1.3", config=fx["config"], noise="stored")
    assert restorer.noise == "stored"
    for key, value in fx["state_dict"].items():
        assert torch.equal(restorer.net.state_dict()[key], value)


def test_cards_describe_the_release(reference_dir):
    manifest = _manifest(reference_dir)
    assert manifest["config"] == gfpgan.CONFIG
    for name, card in gfpgan.CARDS.items():
        wf = card.weights["model"]
        assert wf.url in manifest["checkpoint"]["urls"] and wf.filename in manifest["checkpoint"]["files"]
        assert wf.filename == f"GFPGANv{name.split('-v')[1]}.pth" and wf.license.startswith("Apache-2.0")
        assert card.reported["params"] == manifest["total_parameter_count"]
        assert card.input_size == 512 and card.channel_order == "RGB" and card.stochastic
        assert card.default_kwargs["noise"] == "seeded"


def test_registered_and_created_with_random_weights_by_name():
    """How the benchmark scripts create it: by registry name, released configuration, random weights."""
    from restorever.restorers import create_restorer, list_restorers, restorer_card

    assert {"gfpgan-v1.4", "gfpgan-v1.3"} <= set(list_restorers())
    assert restorer_card("gfpgan-v1.4") is gfpgan.CARDS["gfpgan-v1.4"]
    restorer = create_restorer("gfpgan-v1.4", pretrained=False, noise=None)
    assert sum(p.numel() for p in restorer.parameters()) == gfpgan.CARDS["gfpgan-v1.4"].reported["params"]
    assert restorer.weight_files == {"model": ("random-init", None)} and restorer.noise == "seeded"


# ------------------------------------------------------------------------------------------- command line
def _cli(*args, expect: int = 0):
    from click.testing import CliRunner

    from restorever.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def test_cli_option_reaches_the_restorer_and_is_refused_elsewhere(fx, tmp_path, monkeypatch):
    from restorever.pipeline.evaluate import route_restorer_options

    routed = route_restorer_options(["none", "gfpgan-v1.4", "codeformer"], {"noise": "stored", "fidelity_weight": 0.3})
    assert routed == {"none": {}, "gfpgan-v1.4": {"noise": "stored"}, "codeformer": {"fidelity_weight": 0.3}}
    result = _cli("restore", fx_image(tmp_path), "--restorer", "vqfr-v2", "--gfpgan-noise", "stored", "--out",
                  tmp_path / "o", expect=2)
    assert "noise apply to none of the restorers vqfr-v2" in result.output


def fx_image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "face.png"
    Image.new("RGB", (512, 512), (128, 100, 90)).save(path)
    return path


@pytest.mark.slow
def test_cli_restores_a_real_low_quality_photo_with_a_synthetic_release_checkpoint(faces_root, reference_dir,
                                                                                   tmp_path):
    """`restorever restore PHOTO --restorer gfpgan-v1.4 --weights synth.pth` at the released size: a 150x150 web
    photo is detected, aligned to 512x512, restored and pasted back (random weights; about 20 s on one core)."""
    import numpy as np
    from PIL import Image

    weights = tmp_path / "GFPGANv1.4-synthetic.pth"
    torch.save({"params_ema": synthetic_state_dict(_manifest(reference_dir), seed=5)}, weights)
    photo = faces_root / "madonna" / "madonna_0001.jpg"
    out = tmp_path / "restored"
    result = _cli("restore", photo, "--restorer", "gfpgan-v1.4", "--weights", weights, "--device", "cpu",
                  "--seed", 3, "--out", out)
    assert "wrote 1 image(s)" in result.output
    original = np.asarray(Image.open(photo).convert("RGB"), dtype=np.float64)
    restored = np.asarray(Image.open(out / "madonna_0001.png"), dtype=np.float64)
    assert restored.shape == original.shape  # pasted back into the full photo
    assert np.abs(restored - original).mean() > 5 and restored.std() > 1  # restored by the network, not copied


def test_flops_per_face_as_counted_on_the_official_code():
    """395.5 GFLOP per 512x512 face (gfpgan.md §9: convolutions 395.46 G + linears 0.076 G)."""
    assert gfpgan.flops_per_face() == pytest.approx(395.5e9, rel=1e-3)
    small = {**gfpgan.CONFIG, "out_size": 128, "num_style_feat": 64, "narrow": 0.125}
    assert gfpgan.flops_per_face(small) < gfpgan.flops_per_face() / 100


@pytest.mark.slow
def test_cli_eval_and_plot_with_gfpgan_released_size(lfw_root, reference_dir, tmp_path, monkeypatch):
    """`eval --restorer none,gfpgan-v1.4 --scales 16` with a synthetic release-layout checkpoint in the cache dir,
    then `plot scales` and `report` (about a minute on one core)."""
    home = tmp_path / "home"
    monkeypatch.setenv("RESTOREVER_HOME", str(home))
    card = gfpgan.CARDS["gfpgan-v1.4"]
    folder = home / "weights" / "gfpgan-v1.4"
    folder.mkdir(parents=True)
    torch.save({"params_ema": synthetic_state_dict(_manifest(reference_dir), seed=3)},
               folder / card.weights["model"].filename)

    _cli("eval", "--protocol", "lfw", "--data-root", lfw_root, "--restorer", "none,gfpgan-v1.4", "--scales", 16,
         "--limit-pairs", 2, "--examples", 1, "--device", "cpu", "--out", tmp_path / "run", "--no-progress")
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [(c["restorer"], c["scale"]) for c in record["conditions"]] == [
        ("none", None), ("none", 16), ("gfpgan-v1.4", 16)]
    assert record["weights"]["gfpgan-v1.4:model"]["file"].endswith("GFPGANv1.4.pth")
    restored = [c for c in record["conditions"] if c["restorer"] == "gfpgan-v1.4"][0]
    degraded = [c for c in record["conditions"] if c["restorer"] == "none" and c["scale"]][0]
    assert restored["identity"]["per_item"] != degraded["identity"]["per_item"]  # the restorer really ran
    assert (tmp_path / "run" / record["examples"][0]["images"]["x16/gfpgan-v1.4"]).is_file()
    _cli("plot", "scales", tmp_path / "run" / "results.json", "-o", tmp_path / "scales.png")
    assert (tmp_path / "scales.png").stat().st_size > 5_000
    _cli("report", tmp_path / "run")
    html = next((tmp_path / "run").glob("*.html")).read_text()
    assert "gfpgan-v1.4" in html

"""VQFR v1/v2: reproduce the official fixtures, load official-layout checkpoints strictly, clear errors.

Fixtures (``shared/reference/fixtures/vqfr_v{1,2}_small.pt``) hold the official classes at reduced size with random
weights, their input and every output (float32 and float64); tolerances come from ``shared/reference/vqfr.md`` §12.
Manifests (``shared/reference/manifests/vqfr_v{1,2}_state_dict.json``) list every key/shape of the released files.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from restorever import hub
from restorever.errors import CheckpointLayoutError, WeightsNotFoundError
from restorever.restorers import vqfr
from restorever.restorers.layers.vqfr_blocks import nearest_code_indices

IMAGE_KEYS = {"dec", "texture_dec", "main_dec"}
TOL_IMAGE = 1e-4      # float32 images (thread-count noise alone: <= 1.7e-5)
TOL_FEATURE = 2e-5    # float32 enc_feat / quant_logit / z_conv
TOL_FLOAT64 = 1e-9


pytestmark = pytest.mark.usefixtures("one_thread")


def _fixture(reference_dir: Path, version: str) -> dict:
    path = reference_dir / "fixtures" / f"vqfr_{version}_small.pt"
    return torch.load(path, weights_only=False)  # our own fixture file (tests only)


@pytest.fixture(scope="module")
def fx_v1(reference_dir) -> dict:
    return _fixture(reference_dir, "v1")


@pytest.fixture(scope="module")
def fx_v2(reference_dir) -> dict:
    return _fixture(reference_dir, "v2")


def _net(fx: dict, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    net = vqfr.build_network(fx["arch"], fx["config"]).to(dtype)
    hub.load_state_dict_strict(net, {k: v.to(dtype) for k, v in fx["state_dict"].items()}, source="fixture")
    return net


@pytest.fixture(scope="module")
def net_v1(fx_v1) -> torch.nn.Module:
    return _net(fx_v1)


@pytest.fixture(scope="module")
def net_v2(fx_v2) -> torch.nn.Module:
    return _net(fx_v2)


def _forward(net: torch.nn.Module, fx: dict, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """Our outputs for every fixture run, under the official output names.

    v1's runs differ only in which outputs are returned, so one forward (with the quantiser features) serves both.
    """
    outputs = {}
    with torch.no_grad():
        if fx["arch"] == "vqfr_v1":
            out = net(x, return_feats=True)
            out = {(f"feat_dict.Level_32.{k}" if k.startswith("z_") else k): v for k, v in out.items()}
            return {run: out for run in fx["forward_kwargs"]}
        for run, kwargs in fx["forward_kwargs"].items():
            outputs[run] = net(x, **kwargs)
    return outputs


@pytest.fixture(scope="module")
def out_v1(fx_v1, net_v1) -> dict:
    return _forward(net_v1, fx_v1, fx_v1["inputs"]["x_lq"])


@pytest.fixture(scope="module")
def out_v2(fx_v2, net_v2) -> dict:
    return _forward(net_v2, fx_v2, fx_v2["inputs"]["x_lq"])


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


# ------------------------------------------------------------------------------------------- fixture reproduction
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fixture_float32_every_output(version, request):
    fx = request.getfixturevalue(f"fx_{version}")
    outputs = request.getfixturevalue(f"out_{version}")
    assert fx["outputs"], "fixture has no runs"
    for run, expected in fx["outputs"].items():
        out = outputs[run]
        for key, ref in expected.items():
            tol = TOL_IMAGE if key in IMAGE_KEYS else TOL_FEATURE
            assert _max_diff(out[key], ref) <= tol, f"{version} {run} {key}"
        assert torch.equal(out["code_indices"], fx["aux"]["code_indices"]), f"{version} {run} code indices"
        if "quant_logit" in expected:
            assert torch.equal(expected["quant_logit"].argmax(-1), out["code_indices"])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fixture_float64_every_output(version, request):
    fx = request.getfixturevalue(f"fx_{version}")
    outputs = _forward(_net(fx, torch.float64), fx, fx["inputs"]["x_lq"].double())
    for run, expected in fx["outputs_float64"].items():
        for key, ref in expected.items():
            assert outputs[run][key].dtype == torch.float64
            assert _max_diff(outputs[run][key], ref) <= TOL_FLOAT64, f"{version} {run} {key}"
        assert torch.equal(outputs[run]["code_indices"], fx["aux"]["code_indices"])


def test_v2_zero_fidelity_is_texture_branch(out_v2):
    zero, full = out_v2["fidelity_ratio=0.0"], out_v2["fidelity_ratio=1.0"]
    assert torch.equal(zero["main_dec"], zero["texture_dec"])
    assert torch.equal(zero["texture_dec"], full["texture_dec"])
    assert _max_diff(full["main_dec"], zero["main_dec"]) > 0.1  # the main branch matters at f=1


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_batch_items_are_independent(version, request):
    fx = request.getfixturevalue(f"fx_{version}")
    net = request.getfixturevalue(f"net_{version}")
    run = list(fx["outputs"])[-1]
    kwargs = fx["forward_kwargs"][run] if version == "v2" else {}
    with torch.no_grad():
        single = net(fx["inputs"]["x_lq"][1:], texture_output=False, **kwargs)["main_dec"]
    assert _max_diff(single, fx["outputs"][run]["main_dec"][1:]) <= TOL_IMAGE


# ------------------------------------------------------------------------------------------- reduced precision
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_bfloat16_autocast_keeps_code_indices(version, request):
    fx = request.getfixturevalue(f"fx_{version}")
    net = request.getfixturevalue(f"net_{version}")
    kwargs = {"fidelity_ratio": 1.0} if version == "v2" else {}
    with torch.no_grad():  # one item keeps the (slow on CPU) bfloat16 run short
        out = net(fx["inputs"]["x_lq"][:1], autocast_dtype=torch.bfloat16, texture_output=False, **kwargs)
    assert torch.equal(out["code_indices"], fx["aux"]["code_indices"][:1])
    ref = fx["outputs"]["default" if version == "v1" else "fidelity_ratio=1.0"]["main_dec"][:1]
    diff = (out["main_dec"].float() - ref).abs()
    assert out["main_dec"].dtype == torch.bfloat16  # the decoders really ran in reduced precision
    assert diff.mean().item() < 0.03 and diff.max().item() < 0.5  # bf16 noise, not a different image


def test_code_distances_stay_float32_under_autocast():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(32, 32, generator=gen) * 4
    offsets = torch.randn(32, 32, generator=gen) / 32 ** 0.5
    codebook = torch.cat([centres + offsets, centres - offsets])  # pairs of codes around each centre
    # each query sits a hair closer to the second code of its pair: a gap of ~0.008 on distances of ~500,
    # far below bfloat16 resolution but easy for float32
    z = centres - 1e-3 * offsets
    expected = nearest_code_indices(z.double(), codebook.double())
    assert torch.equal(expected, torch.arange(32, 64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nearest_code_indices(z, codebook)
        naive = ((z * z).sum(1, keepdim=True) + (codebook * codebook).sum(1) - 2 * z @ codebook.t()).argmin(1)
    assert torch.equal(got, expected)
    assert not torch.equal(naive, expected)  # the case discriminates: a bf16 matmul would flip codes


# ------------------------------------------------------------------------------------------- restorer adapter
def _small_restorer(fx: dict, **kwargs) -> vqfr.VQFRRestorer:
    card = dataclasses.replace(vqfr.CARDS["vqfr-v1" if fx["arch"] == "vqfr_v1" else "vqfr-v2"],
                               input_size=fx["inputs"]["x_lq"].shape[-1])
    return vqfr.VQFRRestorer(card, _net(fx), **kwargs).eval()


def test_restorer_applies_demo_conversions(fx_v2):
    images = (fx_v2["inputs"]["x_lq"] + 1) / 2  # the fixture input is already in [-1, 1]
    exact = _small_restorer(fx_v2, fidelity_ratio=0.5, quantize_output=False).restore(images)
    ref = fx_v2["outputs"]["fidelity_ratio=0.5"]["main_dec"]
    assert ((ref < -1) | (ref > 1)).any()  # the clamp is exercised
    assert exact.shape == images.shape and exact.dtype == images.dtype
    assert _max_diff(exact, (ref.clamp(-1, 1) + 1) / 2) <= TOL_IMAGE
    rounded = _small_restorer(fx_v2, fidelity_ratio=0.5).restore(images)
    assert torch.equal(rounded, torch.round(exact * 255) / 255)  # basicsr tensor2img: x255, round


def test_restorer_seeds_do_not_matter_and_input_is_checked(fx_v2):
    restorer = _small_restorer(fx_v2, fidelity_ratio=0.0)
    images = (fx_v2["inputs"]["x_lq"][:1] + 1) / 2
    out = restorer.restore(images, seeds=[1])
    assert torch.equal(out, restorer.restore(images, seeds=[2]))
    with pytest.raises(ValueError, match="expected 128x128"):
        restorer.restore(torch.rand(1, 3, 64, 64))
    half = _small_restorer(fx_v2, fidelity_ratio=0.0, precision="bf16").restore(images)
    assert half.dtype == images.dtype and 0 < (half - out).abs().mean().item() < 0.02


def test_measure_peak_memory_reports_each_batch_size(fx_v2):
    rows = vqfr.measure_peak_memory(_small_restorer(fx_v2, fidelity_ratio=0.0), [1, 2])
    assert [r["batch_size"] for r in rows] == [1, 2]
    n_params = sum(t.numel() for t in fx_v2["state_dict"].values())
    for row in rows:
        assert row["parameter_bytes"] == 4 * n_params
        assert row["peak_bytes"] > 0 and row["method"].startswith("cpu_rss_sampling")


# ------------------------------------------------------------------------------------------- checkpoints and errors
def _manifest(reference_dir: Path, version: str) -> dict:
    return json.loads((reference_dir / "manifests" / f"vqfr_{version}_state_dict.json").read_text())


def synthetic_state_dict(manifest: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with every key and shape of the released checkpoint (conv weights ~ 1/sqrt(fan_in))."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape, dtype in manifest["state_dict"]:
        assert dtype == "float32"
        t = torch.randn(*shape, generator=gen)
        if len(shape) >= 2:
            t *= 0.6 / (t[0].numel() ** 0.5)
        elif key.endswith(".weight"):  # GroupNorm / LayerNorm scales
            t = 1 + 0.1 * t
        else:
            t *= 0.05
        out[key] = t
    return out


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_full_size_checkpoint_loads_strictly(version, tmp_path, reference_dir):
    manifest = _manifest(reference_dir, version)
    ema = synthetic_state_dict(manifest, seed=1)
    plain = {k: torch.zeros_like(v) for k, v in list(ema.items())[:3]}  # an incomplete "params": must be ignored
    path = tmp_path / "checkpoint.pth"
    torch.save({"params_ema": ema, "params": plain}, path)
    del plain
    restorer = vqfr.create(f"vqfr-{version}", weights={"model": str(path)})
    state = restorer.net.state_dict()
    assert set(state) == set(ema) and len(state) == manifest["num_state_dict_entries"]
    assert sum(t.numel() for t in state.values()) == manifest["total_parameter_count"]
    key = manifest["state_dict"][-1][0]
    assert torch.equal(state[key], ema[key])  # params_ema was preferred
    del ema, state
    x = torch.rand(1, 3, 64, 64) * 2 - 1  # a small input keeps the full-size forward to a few seconds
    with torch.no_grad():
        out = restorer.net(x)
    assert out["main_dec"].shape == (1, 3, 64, 64) and torch.isfinite(out["main_dec"]).all()
    assert out["code_indices"].shape == (1, 4)


def test_params_key_and_module_prefix_are_accepted(fx_v1, tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"params": {f"module.{k}": v for k, v in fx_v1["state_dict"].items()}}, path)
    restorer = vqfr.create("vqfr-v1", weights={"model": str(path)}, config=fx_v1["config"])
    for key, value in fx_v1["state_dict"].items():
        assert torch.equal(restorer.net.state_dict()[key], value)
    assert restorer.weight_files == {"model": (str(path), hub.sha256_file(path))}  # for cache keys and results


def test_synthetic_checkpoint_from_cache_dir(fx_v2, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    target = tmp_path / "weights" / "vqfr-v2" / "VQFR_v2.pth"
    target.parent.mkdir(parents=True)
    torch.save({"params_ema": fx_v2["state_dict"]}, target)
    restorer = vqfr.create("vqfr-v2", config=fx_v2["config"], fidelity_ratio=0.5)
    assert restorer.fidelity_ratio == 0.5
    for key, value in fx_v2["state_dict"].items():
        assert torch.equal(restorer.net.state_dict()[key], value)


def test_other_version_checkpoint_is_refused_with_hint(fx_v1, fx_v2, tmp_path):
    path = tmp_path / "VQFR_v1-33a1fac5.pth"
    torch.save({"params_ema": fx_v1["state_dict"]}, path)
    with pytest.raises(CheckpointLayoutError, match=r"vqfr-v1 checkpoint.*--restorer vqfr-v1") as info:
        vqfr.create("vqfr-v2", weights={"model": str(path)}, config=fx_v2["config"])
    assert str(path) in str(info.value)


def test_incomplete_checkpoint_names_missing_and_unexpected_keys(fx_v2, tmp_path):
    state = dict(fx_v2["state_dict"])
    state.pop("feat2index.1.bias")
    state["extra.weight"] = torch.zeros(1)
    state["quantizer.embedding.weight"] = torch.zeros(10, 32)
    path = tmp_path / "broken.pth"
    torch.save({"params": state}, path)
    with pytest.raises(CheckpointLayoutError) as info:
        vqfr.create("vqfr-v2", weights={"model": str(path)}, config=fx_v2["config"])
    message = str(info.value)
    for part in (str(path), "feat2index.1.bias", "extra.weight", "quantizer.embedding.weight (10, 32)"):
        assert part in message


class _NotATensor:
    pass


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params": {"x": _NotATensor()}}, path)
    with pytest.raises(CheckpointLayoutError, match="weights-only"):
        vqfr.create("vqfr-v2", weights={"model": str(path)})


@pytest.mark.parametrize("name, filename, where", [
    ("vqfr-v1", "VQFR_v1-33a1fac5.pth", "https://drive.google.com/drive/folders/1lczKYEbARwe27FJlKoFdng7UnffGDjO2"),
    ("vqfr-v2", "VQFR_v2.pth", "https://github.com/TencentARC/VQFR/releases/download/v2.0.0/VQFR_v2.pth"),
])
def test_missing_weights_error_names_file_and_url(name, filename, where, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        vqfr.create(name)
    message = str(info.value)
    assert filename in message and where in message and "\n" not in message
    assert str(tmp_path / "weights" / name / filename) in message


def test_option_errors():
    with pytest.raises(ValueError, match=r"fidelity_ratio must be in \[0, 1\]"):
        vqfr.create("vqfr-v2", fidelity_ratio=1.5, pretrained=False)
    with pytest.raises(ValueError, match="unknown weight role"):
        vqfr.create("vqfr-v2", weights={"unet": "x.pth"})
    with pytest.raises(ValueError, match="precision"):
        vqfr.VQFRRestorer(vqfr.CARDS["vqfr-v2"], torch.nn.Linear(1, 1), precision="int8")


def test_cards_describe_the_release(reference_dir):
    v1, v2 = vqfr.CARDS["vqfr-v1"], vqfr.CARDS["vqfr-v2"]
    assert v1.weights["model"].filename == "VQFR_v1-33a1fac5.pth"
    assert v2.weights["model"].url.endswith("/v2.0.0/VQFR_v2.pth")
    assert v2.default_kwargs["fidelity_ratio"] == 0.0  # the official demo default
    assert (v1.input_size, v2.input_size) == (512, 512) and v1.channel_order == "RGB"
    assert v1.reported["params"] == _manifest(reference_dir, "v1")["total_parameter_count"]
    assert v2.reported["params"] == _manifest(reference_dir, "v2")["total_parameter_count"]


def test_registered_with_the_restorer_registry():
    from restorever.restorers import list_restorers, restorer_card

    assert {"vqfr-v1", "vqfr-v2"} <= set(list_restorers())
    assert restorer_card("vqfr-v2") is vqfr.CARDS["vqfr-v2"]


@pytest.mark.slow
def test_cli_eval_none_and_vqfr_v2_released_size(lfw_root, reference_dir, tmp_path, monkeypatch):
    """`eval --restorer none,vqfr-v2 --scales 8,16` end to end with a synthetic checkpoint of the released layout
    placed in a temporary cache dir (the issue's done-when; about a minute on one core)."""
    import json as _json

    from click.testing import CliRunner

    from restorever.cli import cli

    home = tmp_path / "home"
    monkeypatch.setenv("RESTOREVER_HOME", str(home))
    card = vqfr.CARDS["vqfr-v2"]
    folder = home / "weights" / "vqfr-v2"
    folder.mkdir(parents=True)
    torch.save({"params_ema": synthetic_state_dict(_manifest(reference_dir, "v2"), seed=3)},
               folder / card.weights["model"].filename)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["eval", "--protocol", "lfw", "--data-root", str(lfw_root), "--restorer",
                                      "none,vqfr-v2", "--scales", "8,16", "--limit-pairs", "2", "--examples", "1",
                                      "--out", str(out), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = _json.loads((out / "results.json").read_text())
    assert [(c["restorer"], c["scale"]) for c in record["conditions"]] == [
        ("none", None), ("none", 8), ("vqfr-v2", 8), ("none", 16), ("vqfr-v2", 16)]
    assert record["weights"]["vqfr-v2:model"]["file"].endswith(card.weights["model"].filename)
    restored = {c["scale"]: c["identity"]["per_item"] for c in record["conditions"] if c["restorer"] == "vqfr-v2"}
    degraded = {c["scale"]: c["identity"]["per_item"] for c in record["conditions"]
                if c["restorer"] == "none" and c["scale"]}
    assert restored[8] != degraded[8]  # the restorer really ran (random weights change the face)
    assert (out / record["examples"][0]["images"]["x8/vqfr-v2"]).is_file()


def test_a_non_finite_half_batch_is_recomputed_in_float32_and_counted(fx_v2, monkeypatch):
    """A half-precision batch whose output is not finite is recomputed in float32 (the benchmark reads the count:
    such a row timed float32, not half precision)."""
    images = (fx_v2["inputs"]["x_lq"][:1] + 1) / 2
    exact = _small_restorer(fx_v2, fidelity_ratio=0.0).restore(images)
    half = _small_restorer(fx_v2, fidelity_ratio=0.0, precision="bf16")
    assert half.fp32_fallbacks == 0
    real = half._network
    # the half-precision call (net=None) overflows; the float32 copy (passed as net) does not
    monkeypatch.setattr(half, "_network", lambda x, amp, net=None: real(x, amp, net) * (float("inf") if net is None
                                                                                        else 1.0))
    out = half.restore(images)
    assert half.fp32_fallbacks == 1 and torch.isfinite(out).all()
    assert _max_diff(out, exact) <= TOL_IMAGE  # the float32 network's answer

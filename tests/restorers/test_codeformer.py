"""CodeFormer: reproduce the official fixture, fidelity weight, strict loading of the released layout, clear errors.

Fixture ``shared/reference/fixtures/codeformer_small.pt``: the official ``CodeFormer`` (backbone width/multipliers
made configurable, nothing else changed) at a reduced size with random weights; input ``[2, 3, 64, 512]`` (width 512:
skips are keyed by width; a 2x16 code grid), outputs for w = 0, 0.5, 1 with AdaIN and w = 0.5 without, float64
outputs, code indices and intermediate features. Tolerances from its ``notes`` (``codeformer.md`` §9).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from restorever import hub
from restorever.errors import CheckpointLayoutError, WeightsNotFoundError
from restorever.restorers import codeformer
from restorever.restorers.layers.codeformer_blocks import adaptive_instance_norm

TOL_OUT = {"w=0.5,adain=True": 2e-4, "w=0,adain=True": 2e-4, "w=0.5,adain=False": 2e-4, "w=1,adain=True": 5e-4}
TOL_FEATURE = 3e-5   # logits, lq_feat
TOL_ENC = 1e-4       # encoder skip features
TOL_FLOAT64 = 1e-9
OFFICIAL = "w=0.5,adain=True"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fx(reference_dir) -> dict:
    return torch.load(reference_dir / "fixtures" / "codeformer_small.pt", weights_only=False)  # tests only


def _net(fx: dict, dtype: torch.dtype = torch.float32) -> codeformer.CodeFormer:
    net = codeformer.build_network(fx["config"]).to(dtype)
    hub.load_state_dict_strict(net, {k: v.to(dtype) for k, v in fx["state_dict"].items()}, source="fixture")
    return net


@pytest.fixture(scope="module")
def net(fx) -> codeformer.CodeFormer:
    return _net(fx)


@pytest.fixture(scope="module")
def outputs(fx, net) -> dict:
    with torch.no_grad():
        return {run: net(fx["inputs"]["x"], **kwargs, return_aux=True) for run, kwargs in fx["forward_kwargs"].items()}


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


# ------------------------------------------------------------------------------------------- fixture reproduction
def test_module_tree_matches_the_official_state_dict(fx, net):
    state = net.state_dict()
    assert list(state) == list(fx["state_dict"])
    assert all(state[k].shape == v.shape for k, v in fx["state_dict"].items())


def test_fixture_float32_every_run(fx, outputs):
    assert set(fx["outputs"]) == set(TOL_OUT)
    for run, expected in fx["outputs"].items():
        out = outputs[run]
        assert _max_diff(out["out"], expected["out"]) <= TOL_OUT[run], run
        assert _max_diff(out["logits"], expected["logits"]) <= TOL_FEATURE, run
        assert _max_diff(out["lq_feat"], expected["lq_feat"]) <= TOL_FEATURE, run
        assert torch.equal(out["code_indices"], fx["aux"]["code_indices"]), run
        assert torch.equal(expected["logits"].argmax(-1), out["code_indices"])


def test_fixture_intermediate_features(fx, net, outputs):
    aux = fx["aux"]
    out = outputs[OFFICIAL]
    indices = out["code_indices"]
    before = net.lookup(indices, *out["lq_feat"].shape[-2:])
    assert torch.equal(before, aux["quant_feat_before_adain"])  # exact codebook rows
    assert _max_diff(out["quant_feat"], aux["quant_feat_after_adain"]) <= 2e-5
    assert _max_diff(adaptive_instance_norm(before, out["lq_feat"]), aux["quant_feat_after_adain"]) <= 2e-5
    assert aux["quant_feat_no_adain_check"] and torch.equal(outputs["w=0.5,adain=False"]["quant_feat"], before)
    assert set(aux["enc_feat"]) <= set(out["enc_feat"])
    for width, ref in aux["enc_feat"].items():
        assert _max_diff(out["enc_feat"][width], ref) <= TOL_ENC, width


def test_fixture_float64(fx):
    net64 = _net(fx, torch.float64)
    for run, expected in fx["outputs_float64"].items():
        with torch.no_grad():
            out = net64(fx["inputs"]["x"].double(), **fx["forward_kwargs"][run])
        for key, ref in expected.items():
            assert out[key].dtype == torch.float64
            assert _max_diff(out[key], ref) <= TOL_FLOAT64, f"{run} {key}"
        assert torch.equal(out["code_indices"], fx["aux"]["code_indices"])


def test_fidelity_weight_zero_skips_the_fusion(fx, net, outputs):
    """w = 0 never touches the fusion blocks (official: they are not computed)."""
    broken = _net(fx)
    for p in broken.fuse_convs_dict.parameters():
        p.data.fill_(float("nan"))
    with torch.no_grad():
        out = broken(fx["inputs"]["x"], w=0, adain=True)["out"]
    assert torch.equal(out, outputs["w=0,adain=True"]["out"])
    assert _max_diff(outputs["w=1,adain=True"]["out"], outputs[OFFICIAL]["out"]) > 1.0  # w changes the face


def test_batch_items_are_independent(fx, net):
    with torch.no_grad():
        single = net(fx["inputs"]["x"][1:], w=0.5, adain=True)["out"]
    assert _max_diff(single, fx["outputs"][OFFICIAL]["out"][1:]) <= TOL_OUT[OFFICIAL]


def test_wrong_token_count_is_a_clear_error(net):
    with pytest.raises(ValueError, match="needs 512x512 inputs"):
        net(torch.zeros(1, 3, 32, 512))


# ------------------------------------------------------------------------------------------- restorer adapter
def _small_restorer(fx: dict, **kwargs) -> codeformer.CodeFormerRestorer:
    """The adapter on the small network; its input contract set to the fixture's 64x512 size."""
    card = dataclasses.replace(codeformer.CARDS["codeformer"], input_size=None)
    return codeformer.CodeFormerRestorer(card, _net(fx), **kwargs).eval()


def test_restorer_applies_the_official_conversions(fx):
    images = (fx["inputs"]["x"] + 1) / 2
    restorer = _small_restorer(fx, quantize_output=False)
    assert restorer.fidelity_weight == 0.5 and restorer.adain  # the inference script's settings
    exact = restorer.restore(images)
    ref = fx["outputs"][OFFICIAL]["out"]
    assert ((ref < -1) | (ref > 1)).any()
    assert exact.shape == images.shape and exact.dtype == images.dtype
    assert _max_diff(exact, (ref.clamp(-1, 1) + 1) / 2) <= TOL_OUT[OFFICIAL] / 2
    rounded = _small_restorer(fx).restore(images, seeds=[1, 2])
    assert torch.equal(rounded, torch.round(exact * 255) / 255)
    assert torch.equal(rounded, _small_restorer(fx).restore(images, seeds=[3, 4]))  # deterministic
    full = _small_restorer(fx, fidelity_weight=1.0, adain=True, quantize_output=False).restore(images)
    assert _max_diff(full, (fx["outputs"]["w=1,adain=True"]["out"].clamp(-1, 1) + 1) / 2) <= TOL_OUT[OFFICIAL]
    plain = _small_restorer(fx, adain=False, quantize_output=False).restore(images)
    assert _max_diff(plain, (fx["outputs"]["w=0.5,adain=False"]["out"].clamp(-1, 1) + 1) / 2) <= 1e-4


def test_reduced_precision_keeps_codes(fx):
    images = (fx["inputs"]["x"][:1] + 1) / 2
    full = _small_restorer(fx, quantize_output=False).restore(images)
    half_restorer = _small_restorer(fx, quantize_output=False, precision="bf16")
    with torch.no_grad():  # one bf16 pass (slow on a CPU): what restore() computes, plus the codes
        out = half_restorer.net(images * 2 - 1, w=0.5, adain=True, autocast_dtype=torch.bfloat16)
    assert torch.equal(out["code_indices"], fx["aux"]["code_indices"][:1])  # code selection stays float32
    assert out["out"].dtype == torch.bfloat16  # the generator really ran in reduced precision
    half = (out["out"].float().clamp(-1, 1) + 1) / 2
    diff = (half - full).abs()
    assert 0 < diff.mean().item() < 0.03 and diff.max().item() < 0.5
    assert half_restorer.autocast_dtype(torch.device("cpu")) == torch.bfloat16



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_batched_restore_on_the_gpu_matches_the_cpu(fx):
    images = (fx["inputs"]["x"] + 1) / 2
    cpu = _small_restorer(fx, quantize_output=False, precision="fp32").restore(images)
    for precision, mean_tol in (("fp32", 2e-3), ("auto", 1e-2), ("bf16", 3e-2)):  # fp32 convs may use TF32
        gpu = _small_restorer(fx, quantize_output=False, precision=precision).to("cuda")
        with torch.no_grad():
            codes = gpu.net(images.cuda() * 2 - 1, w=0.5, adain=True)["code_indices"].cpu()
        assert torch.equal(codes, fx["aux"]["code_indices"]), precision
        out = gpu.restore(images.cuda()).cpu()
        assert out.dtype == images.dtype and (out - cpu).abs().mean().item() < mean_tol, precision

def test_option_errors():
    with pytest.raises(ValueError, match=r"fidelity_weight must be in \[0, 1\]"):
        codeformer.create("codeformer", fidelity_weight=1.5, pretrained=False)
    with pytest.raises(ValueError, match="precision"):
        codeformer.create("codeformer", precision="int8", pretrained=False)
    with pytest.raises(ValueError, match="unknown weight role"):
        codeformer.create("codeformer", weights={"unet": "x.pth"})
    with pytest.raises(ValueError, match="vqgan_path is a training option"):
        codeformer.CodeFormer(vqgan_path="vqgan_code1024.pth")


# ------------------------------------------------------------------------------------------- checkpoints and errors
def _manifest(reference_dir: Path) -> dict:
    return json.loads((reference_dir / "manifests" / "codeformer_state_dict.json").read_text())


def synthetic_state_dict(manifest: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with every key, shape and dtype of the released checkpoint (conv/linear weights
    ~ 0.6/sqrt(fan_in), norm scales ~1, biases small; codebook and positions N(0, 1))."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape, dtype in manifest["state_dict"]:
        t = torch.randn(*shape, generator=gen, dtype=getattr(torch, dtype))
        if key in ("position_emb", "quantize.embedding.weight"):
            pass
        elif len(shape) >= 2:
            t *= 0.6 / t[0].numel() ** 0.5
        elif "norm" in key and key.endswith(".weight") or key.endswith("blocks.23.weight"):
            t = 1 + 0.1 * t
        else:
            t *= 0.05
        out[key] = t
    return out


def test_released_layout_loads_strictly(reference_dir, tmp_path):
    manifest = _manifest(reference_dir)
    ema = synthetic_state_dict(manifest, seed=1)
    plain = {k: torch.zeros_like(v) for k, v in list(ema.items())[:3]}
    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": ema, "params": plain}, path)
    del plain
    restorer = codeformer.create("codeformer", weights={"model": str(path)})
    state = restorer.net.state_dict()
    assert list(state) == [k for k, _, _ in manifest["state_dict"]]
    assert len(state) == manifest["num_state_dict_entries"] == 515
    assert sum(p.numel() for p in restorer.net.parameters()) == manifest["total_parameter_count"]
    for key in ("position_emb", "idx_pred_layer.1.weight", "fuse_convs_dict.256.shift.2.bias"):
        assert torch.equal(state[key], ema[key])  # params_ema was preferred
    assert restorer.weight_files == {"model": (str(path), hub.sha256_file(path))}


def test_other_backends_files_are_refused_with_the_right_name(fx, reference_dir, tmp_path):
    gf = torch.load(reference_dir / "fixtures" / "gfpgan_small.pt", weights_only=False)["state_dict"]
    torch.save({"params_ema": gf}, tmp_path / "GFPGANv1.4.pth")
    with pytest.raises(CheckpointLayoutError, match=r"GFPGANv1\.4\.pth: a GFPGAN v1\.2-v1\.4 \(GFPGANv1Clean\) "
                                                   r"checkpoint; use --restorer gfpgan-v1\.4 or gfpgan-v1\.3"):
        codeformer.create("codeformer", weights={"model": str(tmp_path / "GFPGANv1.4.pth")})
    vq = torch.load(reference_dir / "fixtures" / "vqfr_v1_small.pt", weights_only=False)["state_dict"]
    torch.save({"params_ema": vq}, tmp_path / "VQFR_v1.pth")
    with pytest.raises(CheckpointLayoutError, match="VQFR v1 checkpoint; use --restorer vqfr-v1"):
        codeformer.create("codeformer", weights={"model": str(tmp_path / "VQFR_v1.pth")})
    swinir = torch.load(reference_dir / "fixtures" / "difface_swinir_small.pt", weights_only=False)["state_dict"]
    torch.save({"state_dict": swinir}, tmp_path / "swinir.pth")
    with pytest.raises(CheckpointLayoutError, match="DifFace's SwinIR estimator"):
        codeformer.create("codeformer", weights={"model": str(tmp_path / "swinir.pth")})
    # the inpainting/colorization releases share the class but drop the 256-px fusion block
    variant = {k: v for k, v in fx["state_dict"].items() if not k.startswith("fuse_convs_dict.256.")}
    torch.save({"params_ema": variant}, tmp_path / "codeformer_colorization.pth")
    with pytest.raises(CheckpointLayoutError, match="colorization or inpainting checkpoint"):
        codeformer.create("codeformer", weights={"model": str(tmp_path / "codeformer_colorization.pth")},
                          config=fx["config"])


def test_incomplete_checkpoint_names_missing_and_unexpected_keys(fx, tmp_path):
    state = dict(fx["state_dict"])
    state.pop("idx_pred_layer.0.bias")
    state["idx_pred_layer.1.bias"] = torch.zeros(64)  # the logit head has no bias
    state["quantize.embedding.weight"] = torch.zeros(1024, 256)
    path = tmp_path / "broken.pth"
    torch.save({"params_ema": state}, path)
    with pytest.raises(CheckpointLayoutError) as info:
        codeformer.create("codeformer", weights={"model": str(path)}, config=fx["config"])
    message = str(info.value)
    for part in (str(path), "idx_pred_layer.0.bias", "idx_pred_layer.1.bias", "(1024, 256) != (64, 256)",
                 "codeformer.pth"):
        assert part in message, part
    assert "\n" not in message


def test_missing_weights_error_names_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        codeformer.create("codeformer")
    message = str(info.value)
    assert "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth" in message
    assert str(tmp_path / "weights" / "codeformer" / "codeformer.pth") in message and "\n" not in message


def test_checkpoint_from_cache_dir(fx, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    target = tmp_path / "weights" / "codeformer" / "codeformer.pth"
    target.parent.mkdir(parents=True)
    torch.save({"params_ema": fx["state_dict"]}, target)
    restorer = codeformer.create("codeformer", config=fx["config"], fidelity_weight=0.7)
    assert restorer.fidelity_weight == 0.7
    for key, value in fx["state_dict"].items():
        assert torch.equal(restorer.net.state_dict()[key], value)


def test_card_describes_the_release(reference_dir):
    manifest = _manifest(reference_dir)
    card = codeformer.CARDS["codeformer"]
    wf = card.weights["model"]
    assert wf.url == manifest["checkpoint"]["url"] and wf.filename == manifest["checkpoint"]["file"]
    assert "non-commercial" in wf.license and "S-Lab" in wf.license
    assert card.reported["params"] == manifest["total_parameter_count"]
    assert card.default_kwargs["fidelity_weight"] == 0.5 and card.default_kwargs["adain"] is True
    released = {k: v for k, v in codeformer.CONFIG.items() if k not in ("vqgan_nf", "vqgan_ch_mult")}
    assert released == manifest["config"]
    base = manifest["hardcoded_in_class"]["VQAutoEncoder_base_args"]
    assert (codeformer.CONFIG["vqgan_nf"], codeformer.CONFIG["vqgan_ch_mult"]) == (base["nf"], base["ch_mult"])


def test_registered_and_created_with_random_weights_by_name():
    from restorever.restorers import create_restorer, list_restorers, restorer_card

    assert "codeformer" in list_restorers()
    assert restorer_card("codeformer") is codeformer.CARDS["codeformer"]
    restorer = create_restorer("codeformer", pretrained=False)
    assert sum(p.numel() for p in restorer.parameters()) == codeformer.CARDS["codeformer"].reported["params"]
    assert restorer.weight_files == {"model": ("random-init", None)}



def test_flops_per_face_as_counted_on_the_official_code():
    """codeformer.md §8: 809.8 GFLOP for w > 0, 591.7 at w = 0 (the official one-hot lookup adds a 0.13 G matmul)."""
    assert codeformer.flops_per_face() == pytest.approx(809.8e9 - 0.134e9, rel=2e-4)
    assert codeformer.flops_per_face(fidelity_weight=0) == pytest.approx(591.7e9 - 0.134e9, rel=2e-4)
    assert codeformer.flops_per_face(fidelity_weight=1) == codeformer.flops_per_face(fidelity_weight=0.1)

# ------------------------------------------------------------------------------------------- command line
@pytest.mark.slow
def test_cli_restores_a_degraded_real_face_with_a_synthetic_release_checkpoint(lfw_root, reference_dir, tmp_path):
    """`restorever degrade` a real LFW face (x16), then `restorever restore FACE --restorer codeformer --weights
    synth.pth --codeformer-fidelity 0.7` at the released size (random weights; about a minute on one core)."""
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    from restorever.cli import cli

    def run(*args):
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    degraded = tmp_path / "degraded"
    run("degrade", "--protocol", "lfw", "--data-root", lfw_root, "--scales", 16, "--limit-pairs", 2, "--device",
        "cpu", "--out", degraded)
    face = sorted((degraded / "x16").rglob("*.png"))[0]
    weights = tmp_path / "codeformer-synthetic.pth"
    torch.save({"params_ema": synthetic_state_dict(_manifest(reference_dir), seed=5)}, weights)
    out = tmp_path / "restored"
    run("restore", face, "--restorer", "codeformer", "--weights", weights, "--codeformer-fidelity", 0.7,
        "--device", "cpu", "--out", out)
    before = np.asarray(Image.open(face).convert("RGB"), dtype=np.float64)
    after = np.asarray(Image.open(out / face.name), dtype=np.float64)
    assert after.shape == before.shape == (512, 512, 3)
    assert np.abs(after - before).mean() > 5 and after.std() > 1  # restored by the network, not copied or blank

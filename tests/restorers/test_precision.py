"""Speed levers of issue 18, checked for equivalence on the CPU: cast-once half precision (bf16 runs on the CPU),
channels_last, the CUDA-graph option's fallback, and the precision option parser.

The fp32 paths are covered bit for bit by the fixture tests in test_vqfr.py / test_difface.py; here the half
precision paths are compared with fp32 on the same small networks.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from restorever import hub
from restorever.restorers import difface, vqfr
from restorever.restorers.layers.graphed import GraphedCall
from restorever.restorers.layers.modulated_deform_conv import ModulatedDeformConv2d
from restorever.precision import PRECISIONS, cast_module, parse_precision
from tests.conftest import REFERENCE

FIXTURES = REFERENCE / "fixtures"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fx_v2() -> dict:
    return torch.load(FIXTURES / "vqfr_v2_small.pt", weights_only=False)  # our own fixture file


def _vqfr(fx: dict, **kwargs) -> vqfr.VQFRRestorer:
    net = vqfr.build_network(fx["arch"], fx["config"])
    hub.load_state_dict_strict(net, fx["state_dict"], source="fixture")
    card = dataclasses.replace(vqfr.CARDS["vqfr-v2"], input_size=fx["inputs"]["x_lq"].shape[-1])
    return vqfr.VQFRRestorer(card, net, **kwargs).eval()


# ---------------------------------------------------------------------------------------------------- the parser
def test_precision_values():
    assert PRECISIONS == ("fp32", "bf16", "fp16", "bf16-amp", "fp16-amp", "auto")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    p = parse_precision("bf16", "x")
    assert (p.mode, p.cast_dtype, p.autocast_dtype(cuda)) == ("cast", torch.bfloat16, None)
    p = parse_precision("fp16-amp", "x")
    assert (p.mode, p.cast_dtype, p.autocast_dtype(cpu)) == ("amp", None, torch.float16)
    p = parse_precision("auto", "x")
    assert p.autocast_dtype(cuda) == torch.float16 and p.autocast_dtype(cpu) is None and p.cast_dtype is None
    assert parse_precision("float32", "x").mode == "fp32"
    with pytest.raises(ValueError, match="vqfr-v2: precision must be one of fp32, bf16"):
        parse_precision("int8", "vqfr-v2")


def test_cast_module_keeps_chosen_types():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), ModulatedDeformConv2d(4, 4), torch.nn.GroupNorm(2, 4))
    cast_module(net, torch.bfloat16, keep=(ModulatedDeformConv2d,))
    assert net[0].weight.dtype == torch.bfloat16 and net[2].weight.dtype == torch.bfloat16
    assert net[1].weight.dtype == torch.float32 and net[1].conv_offset.weight.dtype == torch.float32


# --------------------------------------------------------------------------------------------------------- VQFR
@pytest.mark.parametrize("fidelity", [0.0, 1.0])
def test_vqfr_cast_once_bf16_close_to_fp32(fx_v2, fidelity):
    images = (fx_v2["inputs"]["x_lq"][:1].clamp(-1, 1) + 1) / 2
    full = _vqfr(fx_v2, fidelity_ratio=fidelity, precision="fp32")
    half = _vqfr(fx_v2, fidelity_ratio=fidelity, precision="bf16")
    net = half.net
    # weights really are bf16 where they should be, float32 where precision matters
    assert net.decoder.conv_in.weight.dtype == torch.bfloat16 and net.main_branch.decoder_dict is not None
    assert all(m.weight.dtype == torch.float32 for m in net.modules() if isinstance(m, ModulatedDeformConv2d))
    assert net.encoder.conv_in.weight.dtype == torch.float32 and net.feat2index[1].weight.dtype == torch.float32
    assert net.quantizer.embedding.weight.dtype == torch.float32
    ref, out = full.restore(images), half.restore(images)
    assert out.dtype == images.dtype and out.shape == ref.shape
    # the same codes are chosen (code selection is float32 in both) ...
    with torch.no_grad():
        codes = [r.net(images * 2 - 1, fidelity_ratio=fidelity)["code_indices"] for r in (full, half)]
    assert torch.equal(codes[0], codes[1])
    # ... and the image differs by bf16 noise (8 mantissa bits), not by content: mean < 0.02 in [0, 1] units
    diff = (out - ref).abs()
    assert 0 < float(diff.mean()) < 0.02 and float(diff.max()) < 0.5
    # the autocast path gives a similar (not identical) result
    amp = _vqfr(fx_v2, fidelity_ratio=fidelity, precision="bf16-amp").restore(images)
    assert float((amp - ref).abs().mean()) < 0.02


def test_vqfr_cast_once_autocast_encoder(fx_v2):
    images = (fx_v2["inputs"]["x_lq"][:1].clamp(-1, 1) + 1) / 2
    half = _vqfr(fx_v2, fidelity_ratio=0.5, precision="bf16", autocast_encoder=True)
    full = _vqfr(fx_v2, fidelity_ratio=0.5, precision="fp32")
    assert half.net.encoder.conv_in.weight.dtype == torch.bfloat16
    out = half.restore(images)
    assert torch.isfinite(out).all() and out.shape == images.shape
    # a bf16 encoder moves the features by bf16 noise (8 mantissa bits), which can flip code choices: 9 % of them
    # on this random-weight fixture on one of our CPUs, none on another (whose bf16 convolutions round otherwise);
    # the reason the default keeps code selection in float32
    with torch.no_grad():
        outs = [r.net(images * 2 - 1, fidelity_ratio=0.5) for r in (full, half)]
    enc_full, enc_half = outs[0]["enc_feat"].float(), outs[1]["enc_feat"].float()
    relative = float((enc_half - enc_full).norm() / enc_full.norm())
    assert 1e-4 < relative < 0.2  # half-precision noise: far above float32 rounding, far below a wrong result
    agree = float((outs[0]["code_indices"] == outs[1]["code_indices"]).float().mean())
    assert 0.7 < agree <= 1.0


def test_vqfr_non_finite_half_batch_recomputed_in_fp32(fx_v2, monkeypatch, caplog):
    images = (fx_v2["inputs"]["x_lq"][:1].clamp(-1, 1) + 1) / 2
    ref = _vqfr(fx_v2, fidelity_ratio=0.5, precision="fp32").restore(images)
    half = _vqfr(fx_v2, fidelity_ratio=0.5, precision="bf16")
    original = half._network

    def poisoned(x, amp, net=None):
        out = original(x, amp, net)
        return out if net is not None else out.float() * float("nan")  # only the half-precision network fails

    monkeypatch.setattr(half, "_network", poisoned)
    out = half.restore(images)
    assert torch.equal(out, ref)  # the float32 copy reproduces the fp32 restorer exactly
    assert "non-finite" in caplog.text
    assert half.net.decoder.conv_in.weight.dtype == torch.bfloat16  # the half network is left as it was


def test_vqfr_channels_last_same_values(fx_v2):
    images = (fx_v2["inputs"]["x_lq"][:1].clamp(-1, 1) + 1) / 2
    ref = _vqfr(fx_v2, fidelity_ratio=0.5, precision="fp32", quantize_output=False).restore(images)
    out = _vqfr(fx_v2, fidelity_ratio=0.5, precision="fp32", quantize_output=False, channels_last=True)
    assert out.net.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    got = out.restore(images)
    assert got.is_contiguous() and float((got - ref).abs().max()) < 1e-4  # summation order only


def test_vqfr_compiled_matches_eager(fx_v2):
    """``compile=True`` (torch.compile, inductor on this CPU): the same faces within float rounding, the eager
    module's keys only, and the eager network's hooks still run inside the compiled call."""
    images = (fx_v2["inputs"]["x_lq"][:1].clamp(-1, 1) + 1) / 2
    eager = _vqfr(fx_v2, fidelity_ratio=0.5, precision="fp32", quantize_output=False)
    compiled = _vqfr(fx_v2, fidelity_ratio=0.5, precision="fp32", quantize_output=False, compile=True)
    calls = []
    compiled.net.decoder.register_forward_pre_hook(lambda m, args: calls.append(1))
    want, got = eager.restore(images), compiled.restore(images)
    assert calls and "compile=True" in repr(compiled) and set(compiled.state_dict()) == set(eager.state_dict())
    assert not set(vars(compiled)) & set(dir(torch.nn.Module))  # no option hides a Module method (.compile())
    assert float((got - want).abs().max()) < 1e-4  # summation order only (1.3e-5 measured)
    other = _vqfr(fx_v2, fidelity_ratio=1.0, precision="fp32", quantize_output=False).restore(images)
    assert float((other - want).abs().max()) > 1e-2  # the bound can fail: another setting is far outside it


def test_vqfr_option_errors_name_the_values():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, bf16-amp"):
        vqfr.VQFRRestorer(vqfr.CARDS["vqfr-v2"], torch.nn.Linear(1, 1), precision="int8")


# ------------------------------------------------------------------------------------------------------ DifFace
@pytest.fixture(scope="module")
def small_difface(tmp_path_factory) -> dict:
    unet_fx = torch.load(FIXTURES / "difface_unet_small.pt", weights_only=False)
    swin_fx = torch.load(FIXTURES / "difface_swinir_small.pt", weights_only=False)
    sampler_fx = torch.load(FIXTURES / "difface_sampler_small.pt", weights_only=False)
    folder = tmp_path_factory.mktemp("difface-precision")
    torch.save({**unet_fx["state_dict"], **sampler_fx["unet_state_dict_overrides"]}, folder / "unet.pth")
    torch.save({"state_dict": swin_fx["state_dict"]}, folder / "swinir.pth")
    return {"weights": {"unet": str(folder / "unet.pth"), "estimator": str(folder / "swinir.pth")},
            "unet_config": dict(sampler_fx["unet_config"]), "estimator_config": dict(sampler_fx["swinir_config"])}


def _difface(files: dict, **kwargs) -> difface.DifFaceRestorer:
    return difface.create("difface", weights=files["weights"], unet_config=files["unet_config"],
                          estimator_config=files["estimator_config"], steps=10, **kwargs)


def test_difface_cast_once_bf16_close_to_fp32(small_difface):
    faces = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    full = _difface(small_difface, precision="fp32").restore(faces, seeds=[5, 6])
    restorer = _difface(small_difface, precision="bf16")
    assert all(p.dtype == torch.bfloat16 for p in restorer.unet.parameters())
    assert all(p.dtype == torch.bfloat16 for p in restorer.estimator.parameters())
    seen = []
    restorer.unet.register_forward_hook(lambda m, args, out: seen.append((args[0].dtype, out.dtype)))
    half = restorer.restore(faces, seeds=[5, 6])
    assert seen and all(d == (torch.bfloat16, torch.bfloat16) for d in seen)  # natively bf16, no autocast
    assert half.dtype == torch.float32
    assert 0 < float((half - full).abs().mean()) < 5e-3  # the bound of the autocast test (test_difface.py)
    amp = _difface(small_difface, precision="bf16-amp").restore(faces, seeds=[5, 6])
    assert 0 < float((amp - full).abs().mean()) < 5e-3


def test_difface_cuda_graph_option_falls_back_on_cpu(small_difface):
    faces = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(2))
    plain = _difface(small_difface, precision="fp32").restore(faces, seeds=[3])
    graphed = _difface(small_difface, precision="fp32", cuda_graph=True)
    assert "cuda_graph=True" in repr(graphed)
    assert torch.equal(graphed.restore(faces, seeds=[3]), plain)
    assert graphed._graphed.replays == 0  # nothing captured on the CPU


def test_graphed_call_is_the_function_off_cuda():
    calls = []

    def fn(x, t):
        calls.append(t)
        return x * 2 + t.view(-1, 1).float()

    g = GraphedCall(fn)
    x, t = torch.ones(2, 3), torch.tensor([1, 2])
    assert torch.equal(g(x, t), fn(x, t)) and len(calls) == 2 and not g._graphs


def test_difface_channels_last_same_values(small_difface):
    faces = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(4))
    ref = _difface(small_difface, precision="fp32").restore(faces, seeds=[1])
    out = _difface(small_difface, precision="fp32", channels_last=True).restore(faces, seeds=[1])
    assert float((out - ref).abs().max()) < 1e-4


def test_difface_compiled_matches_eager(small_difface):
    """``compile=True`` compiles the UNet (inductor on this CPU): the same faces within float rounding, the eager
    module's keys only (the compiled function is not a second submodule), hooks on the eager UNet still run."""
    faces = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(2))
    eager = _difface(small_difface, precision="fp32")
    compiled = _difface(small_difface, precision="fp32", compile=True)
    calls = []
    compiled.unet.register_forward_pre_hook(lambda m, args: calls.append(1))
    want, got = eager.restore(faces, seeds=[3, 4]), compiled.restore(faces, seeds=[3, 4])
    assert len(calls) == 4 and "compile=True" in repr(compiled)  # start 4 of 10: four UNet calls
    assert not set(vars(compiled)) & set(dir(torch.nn.Module))  # no option hides a Module method (.compile())
    assert set(compiled.state_dict()) == set(eager.state_dict())
    assert float((got - want).abs().max()) < 1e-4
    other_seed = eager.restore(faces, seeds=[3, 5])
    assert float((other_seed - want).abs().max()) > 1e-2  # the bound can fail


# ------------------------------------------------------------------------------------------------------ IResNet
def test_iresnet_cast_trunk_bf16_close_to_fp32():
    from restorever.recognizers.layers import IResNet

    fx = torch.load(FIXTURES / "iresnet_small_ref.pt", weights_only=False)
    state = {k: v.float() if v.is_floating_point() else v for k, v in fx["state_dict"].items()}

    def build() -> IResNet:
        net = IResNet(fx["config"]["layers"], num_features=fx["config"]["num_features"])
        net.load_state_dict(state)
        return net.eval()

    half = build().cast_trunk(torch.bfloat16)
    assert half.conv1.weight.dtype == torch.bfloat16 and half.layer4[0].bn1.weight.dtype == torch.bfloat16
    assert half.fc.weight.dtype == torch.float32 and half.features.weight.dtype == torch.float32
    with torch.no_grad():
        ref, out = build()(fx["inputs"]), half(fx["inputs"])
    assert out.dtype == torch.float32
    torch.testing.assert_close(ref, fx["outputs"], atol=1e-4, rtol=0)  # fp32 untouched
    cos = torch.nn.functional.cosine_similarity(out, ref)
    assert float(cos.min()) > 0.99  # bf16: 8 significant bits; the cosine criterion of the CUDA test

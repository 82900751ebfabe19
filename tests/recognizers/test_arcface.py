"""ArcFace backends without real weights: the fixture network through the torch engine, the ONNX engine and the
ONNX -> torch conversion; strict loading of manifest-shaped checkpoints; weight discovery and its error messages."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import warnings
import zipfile

import numpy as np
import pytest
import torch

from restorever.errors import CheckpointLayoutError, WeightsHashError, WeightsNotFoundError
from restorever.recognizers import arcface
from restorever.recognizers.arcface import (CARDS, CropRecognizer, OnnxRecognizer, create, iresnet_state_dict_from_onnx,
                                            locate_weights)
from restorever.recognizers.layers import IResNet
from tests.conftest import random_iresnet_checkpoint

PACKS = ["insightface-buffalo_l", "insightface-antelopev2", "insightface-buffalo_s"]
TORCH_CARDS = [n for n in CARDS if n.startswith("arcface-")]


@pytest.fixture(scope="module")
def fixture(reference_dir):
    # Our own fixture file (made by the research task), hence weights_only=False here only.
    return torch.load(reference_dir / "fixtures" / "iresnet_small_ref.pt", weights_only=False)


@pytest.fixture(scope="module")
def small_net(fixture) -> IResNet:
    """The fixture's official-layout IResNet ([2,1,1,1], 16-D) with its float16-exact random weights."""
    net = IResNet(fixture["config"]["layers"], num_features=fixture["config"]["num_features"])
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in fixture["state_dict"].items()})
    return net.eval()


def _export(net: torch.nn.Module, path, size: int = 112, dynamic: bool = True, **kwargs):
    axes = {"data": {0: "batch"}, "fc1": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, torch.zeros(2, 3, size, size), str(path), input_names=["data"], output_names=["fc1"],
                          opset_version=11, dynamo=False, dynamic_axes=axes, **kwargs)
    return path


@pytest.fixture(scope="module")
def small_onnx(small_net, tmp_path_factory):
    """The fixture network exported as arcface_torch's torch2onnx does (input "data", opset 11, conv-BN fused)."""
    return _export(small_net, tmp_path_factory.mktemp("onnx") / "small_iresnet.onnx")


@pytest.fixture(scope="module")
def faces():
    """Two aligned 512 'faces' (smooth random images in [0,1]) and landmarks near the ffhq_512 template."""
    from restorever.alignment import get_template

    g = torch.Generator().manual_seed(0)
    low = torch.rand(2, 3, 32, 32, generator=g)
    images = torch.nn.functional.interpolate(low, size=(512, 512), mode="bicubic", align_corners=False).clamp(0, 1)
    points = torch.tensor(np.asarray(get_template("ffhq_512").points), dtype=torch.float32)
    landmarks = points.expand(2, 5, 2) + torch.randn(2, 5, 2, generator=g) * 3.0
    return images, landmarks


def _official_input(images, landmarks):
    """arcface_torch's recipe on the 112 crop: /255, -0.5, /0.5 on 0-255 RGB values."""
    from restorever.alignment import crop_to_template

    crops = crop_to_template(images, landmarks, "arcface_112")
    return ((crops * 255.0) / 255.0 - 0.5) / 0.5


# ---------------------------------------------------------------------------------------------------------- cards


@pytest.mark.parametrize("name", list(CARDS))
def test_cards(name):
    card = CARDS[name]
    assert card.name == name and set(card.weights) == {"model"}
    assert (card.template, card.input_size, card.channel_order) == ("arcface_112", 112, "RGB")
    assert card.mean == (127.5,) * 3 and card.std == (127.5,) * 3
    wf = card.weights["model"]
    assert "non-commercial" in wf.license and wf.origin_url.startswith("https://")
    if name in PACKS:
        assert len(wf.sha256) == 64 and int(wf.sha256, 16) >= 0 and wf.filename.endswith(".onnx")
    else:
        assert wf.filename == "backbone.pth" and card.arch in {"iresnet18", "iresnet34", "iresnet50", "iresnet100"}
        assert 0.99 < card.reported["lfw_accuracy"] < 1.0
    for key, value in card.reported.items():
        assert 0.9 < value < 1.0, key


def test_registry_names():
    assert {"arcface-r50-ms1mv3", "arcface-r100-ms1mv3", "arcface-r100-glint360k", *PACKS} <= set(CARDS)


# ---------------------------------------------------------------------------------------------------- torch engine


def test_torch_engine_matches_official_preprocessing(small_net, faces):
    images, landmarks = faces
    rec = CropRecognizer(CARDS["arcface-r50-ms1mv3"], small_net, embedding_dim=16)
    out = rec.embed(images, landmarks)
    with torch.no_grad():
        ref = small_net(_official_input(images, landmarks))
    assert out.shape == (2, 16) and out.dtype == torch.float32 and not out.requires_grad
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # a recognizer that ignored the landmarks or the normalisation would not match
    assert (rec.embed(images, landmarks.flip(0)) - out).abs().max() > 1e-3


def test_channels_last_and_compile_equal_eager(small_net, faces):
    """The recognizer options ``channels_last`` and ``compile`` (inductor on this CPU) give the eager embeddings
    within float rounding, keep one copy of the weights in ``state_dict`` and let hooks on the network run."""
    images, landmarks = faces
    ref = CropRecognizer(CARDS["arcface-r50-ms1mv3"], small_net, embedding_dim=16).embed(images, landmarks)
    net = IResNet(small_net.layers_config, num_features=16)  # a copy: channels_last changes the module in place
    net.load_state_dict(small_net.state_dict())
    rec = CropRecognizer(CARDS["arcface-r50-ms1mv3"], net.eval(), embedding_dim=16, channels_last=True, compile=True)
    calls = []
    rec.net.register_forward_pre_hook(lambda m, args: calls.append(args[0].is_contiguous(
        memory_format=torch.channels_last)))
    out = rec.embed(images, landmarks)
    assert calls == [True] and list(rec.state_dict()) == ["net." + k for k in small_net.state_dict()]
    assert not set(vars(rec)) & set(dir(torch.nn.Module))  # no option hides a Module method (.compile())
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert (rec.embed(images, landmarks.flip(0)) - out).abs().max() > 1e-3  # the bound can fail


def test_recognizer_options_are_declared_on_the_cards_and_checked():
    from restorever.pipeline.evaluate import route_recognizer_options
    from restorever.recognizers import REGISTRY, list_recognizers, recognizer_card

    assert route_recognizer_options("arcface-r50-ms1mv3", {"precision": "fp32", "compile": "yes"}) == {
        "precision": "fp32", "compile": True}
    assert route_recognizer_options("dlib", {}) == {}
    with pytest.raises(ValueError, match="recognizer dlib takes no option.s. precision .its options: none"):
        route_recognizer_options("dlib", {"precision": "fp32"})
    with pytest.raises(ValueError, match="precision"):
        route_recognizer_options("arcface-r50-ms1mv3", {"precision": "fp8"})
    with pytest.raises(ValueError, match="flip_test"):  # a flag of its own (--flip-test), not an option
        route_recognizer_options("arcface-r50-ms1mv3", {"flip_test": True})
    import inspect

    for name in list_recognizers():  # every declared option reaches the backend's create()
        parameters = inspect.signature(REGISTRY.factory(name)).parameters
        assert set(recognizer_card(name).option_specs) <= set(parameters), name


def test_torch_engine_float64_input_and_gradients(small_net, faces):
    images, landmarks = faces
    rec = CropRecognizer(CARDS["arcface-r50-ms1mv3"], small_net, embedding_dim=16)
    x = images[:1].double().requires_grad_(True)
    out = rec(x, landmarks[:1])  # forward is differentiable (usable as an identity loss)
    assert out.dtype == torch.float32
    out.pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_flip_test_is_sum_of_embeddings(small_net, faces):
    images, landmarks = faces
    rec = CropRecognizer(CARDS["arcface-r50-ms1mv3"], small_net, embedding_dim=16, flip_test=True)
    out = rec.embed(images, landmarks)
    x = _official_input(images, landmarks)
    with torch.no_grad():
        ref = small_net(x) + small_net(x.flip(-1))
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)
    with torch.no_grad():
        assert (out - 2 * small_net(x)).abs().max() > 1e-3  # the mirror really differs


def test_bad_inputs(small_net, faces):
    images, landmarks = faces
    rec = CropRecognizer(CARDS["arcface-r50-ms1mv3"], small_net, embedding_dim=16)
    with pytest.raises(ValueError, match=r"landmarks: expected a \[2, 5, 2\]"):
        rec.embed(images, landmarks[:, :4])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        rec.embed(images[:, :1], landmarks)
    with pytest.raises(TypeError, match="float"):
        rec.embed((images * 255).to(torch.uint8), landmarks)


# ----------------------------------------------------------------------------------------------------- ONNX engine


def test_onnx_engine_matches_torch(small_net, small_onnx, faces):
    images, landmarks = faces
    rec = create("insightface-buffalo_l", weights={"model": str(small_onnx)}, engine="onnxruntime")
    assert isinstance(rec, OnnxRecognizer) and rec.providers == ["CPUExecutionProvider"]
    assert rec.embedding_dim == 16
    ref = CropRecognizer(CARDS["insightface-buffalo_l"], small_net, embedding_dim=16).embed(images, landmarks)
    out = rec.embed(images, landmarks)
    assert out.dtype == torch.float32 and out.device == images.device
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    flipped = create("insightface-buffalo_l", weights={"model": str(small_onnx)}, engine="onnxruntime",
                     flip_test=True).embed(images, landmarks)
    ref_flip = CropRecognizer(CARDS["insightface-buffalo_l"], small_net, embedding_dim=16,
                              flip_test=True).embed(images, landmarks)
    torch.testing.assert_close(flipped, ref_flip, atol=1e-4, rtol=0)


def test_onnx_fixed_batch_model(small_net, small_onnx, tmp_path, faces):
    images, landmarks = faces
    fixed = _export(small_net, tmp_path / "fixed.onnx", dynamic=False)  # input [2, 3, 112, 112]
    rec = create("insightface-buffalo_l", weights={"model": str(fixed)}, engine="onnxruntime")
    dynamic = create("insightface-buffalo_l", weights={"model": str(small_onnx)}, engine="onnxruntime")
    # one face is padded to the model's batch of 2; two faces with flip_test make four crops, two runs
    torch.testing.assert_close(rec.embed(images[:1], landmarks[:1]), dynamic.embed(images[:1], landmarks[:1]),
                               atol=1e-5, rtol=0)
    rec.flip_test = dynamic.flip_test = True
    torch.testing.assert_close(rec.embed(images, landmarks), dynamic.embed(images, landmarks), atol=1e-5, rtol=0)


def test_onnx_to_torch_conversion(small_net, small_onnx, faces):
    images, landmarks = faces
    rec = create("insightface-buffalo_l", weights={"model": str(small_onnx)}, engine="torch")
    assert isinstance(rec, CropRecognizer) and rec.net.layers_config == (2, 1, 1, 1)
    ref = CropRecognizer(CARDS["insightface-buffalo_l"], small_net, embedding_dim=16).embed(images, landmarks)
    onnx_out = create("insightface-buffalo_l", weights={"model": str(small_onnx)}).embed(images, landmarks)
    out = rec.embed(images, landmarks)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(out, onnx_out, atol=1e-4, rtol=0)


def test_unfused_export_converts_to_the_same_state_dict(small_net, tmp_path):
    path = _export(small_net, tmp_path / "unfused.onnx", do_constant_folding=False)
    layers, num_features, size, state = iresnet_state_dict_from_onnx(path)
    assert (layers, num_features, size) == ((2, 1, 1, 1), 16, 112)
    expected = small_net.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(state[key], value, atol=0, rtol=0, msg=key)


def test_converter_rejects_other_graphs(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 112 * 112, 4)).eval()
    path = _export(other, tmp_path / "other.onnx")
    with pytest.raises(CheckpointLayoutError, match="not an arcface_torch IResNet graph.*engine='onnxruntime'"):
        iresnet_state_dict_from_onnx(path)
    # the ONNX engine still runs it, and a wrong input size is refused
    assert isinstance(create("insightface-buffalo_s", weights={"model": str(path)}), OnnxRecognizer)
    small = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    wrong = _export(small, tmp_path / "wrong.onnx", size=96)
    with pytest.raises(CheckpointLayoutError, match=r"expects \[N, 3, 112, 112\]"):
        create("insightface-buffalo_l", weights={"model": str(wrong)})


# -------------------------------------------------------------------------------------- checkpoints and layouts


@pytest.fixture(scope="module")
def r50_checkpoint(reference_dir, tmp_path_factory):
    """A synthetic arcface_torch r50 backbone.pth built from the manifest (random values, listed shapes/dtypes)."""
    path = tmp_path_factory.mktemp("r50") / "backbone.pth"
    return path, random_iresnet_checkpoint(path, 50)


def test_strict_load_of_manifest_checkpoint(r50_checkpoint, faces):
    path, state = r50_checkpoint
    rec = create("arcface-r50-ms1mv3", weights={"model": str(path)})
    assert isinstance(rec, CropRecognizer) and rec.embedding_dim == 512 and rec.autocast_dtype is None
    loaded = rec.net.state_dict()
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    out = rec.embed(faces[0][:1], faces[1][:1])
    assert out.shape == (1, 512) and torch.isfinite(out).all()


def test_eval_with_recognizer_options_records_them_and_validates(r50_checkpoint, faces_root, tmp_path):
    """`restorever eval --recognizer-option precision=fp32`: the options reach the recognizer, results.json records
    them (config and the run identity, so those embeddings are entries of their own) and `validate` accepts the run;
    an option the recognizer's card does not declare is one line and exit 2."""
    from click.testing import CliRunner

    from restorever.cli import cli

    people = ["madonna/madonna_000{}.jpg", "elton_john/elton_john_000{}.jpg"]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("".join(f"{people[0].format(i)},{people[0].format(i + 4)},1\n"
                             f"{people[0].format(i)},{people[1].format(i + 4)},0\n" for i in (1, 2)))
    base = ["eval", "--protocol", "pairs-csv", "--pairs", str(pairs), "--data-root", str(faces_root), "--device",
            "cpu", "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--examples", "0"]
    result = CliRunner().invoke(cli, base + ["--recognizer", "arcface-r50-ms1mv3", "--recognizer-weights",
                                             str(r50_checkpoint[0]), "--recognizer-option", "precision=fp32",
                                             "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["config"]["recognizer_options"] == {"precision": "fp32"}
    assert record["cache"]["identity"]["recognizer"]["options"] == {"precision": "fp32"}
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, base + ["--recognizer", "dlib", "--recognizer-option", "compile=true",
                                             "--out", str(tmp_path / "dlib")])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "recognizer dlib takes no option(s) compile" in lines[0]


def test_insightface_packs_take_the_engine_and_torch_options_on_the_command_line(small_onnx, faces_root, tmp_path):
    """The packs whose network converts to our IResNet declare ``engine`` and the torch options, so the command
    line reaches what the library could (``engine=torch`` and its speed options); the run records them, scores as
    the onnxruntime engine does within float rounding, and an option the chosen engine cannot apply is one line."""
    from click.testing import CliRunner

    from restorever.cli import cli
    from restorever.pipeline.evaluate import route_recognizer_options

    assert route_recognizer_options("insightface-buffalo_l", {"engine": "torch", "channels_last": "true"}) == {
        "engine": "torch", "channels_last": True}
    with pytest.raises(ValueError, match="engine takes one of auto, onnxruntime, torch"):
        route_recognizer_options("insightface-antelopev2", {"engine": "tensorrt"})
    with pytest.raises(ValueError, match="insightface-buffalo_s takes no option.s. engine .its options: none"):
        route_recognizer_options("insightface-buffalo_s", {"engine": "torch"})  # MobileFaceNet: onnxruntime only

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("madonna/madonna_0001.jpg,madonna/madonna_0005.jpg,1\n"
                     "madonna/madonna_0002.jpg,elton_john/elton_john_0006.jpg,0\n")
    base = ["eval", "--protocol", "pairs-csv", "--pairs", str(pairs), "--data-root", str(faces_root), "--device",
            "cpu", "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--examples", "0", "--recognizer",
            "insightface-buffalo_l", "--recognizer-weights", str(small_onnx)]
    records = {}
    for engine in ("onnxruntime", "torch"):
        result = CliRunner().invoke(cli, base + ["--recognizer-option", f"engine={engine}", "--out",
                                                 str(tmp_path / engine)])
        assert result.exit_code == 0, result.output
        records[engine] = json.loads((tmp_path / engine / "results.json").read_text())
        assert records[engine]["cache"]["identity"]["recognizer"]["options"] == {"engine": engine}
    scores = [np.asarray(records[e]["conditions"][0]["scores"]["score"]) for e in ("onnxruntime", "torch")]
    assert scores[0].shape == (2,) and np.abs(scores[0] - scores[1]).max() < 1e-4
    result = CliRunner().invoke(cli, base + ["--recognizer-option", "channels_last=true", "--out",
                                             str(tmp_path / "refused")])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "--recognizer-option engine=torch" in lines[0], lines


def _fake_onnxruntime(monkeypatch, providers):
    """onnxruntime as a machine has it: ``None`` for not installed, else a module listing ``providers``."""
    import importlib.machinery
    import sys
    import types

    module = None
    if providers is not None:
        module = types.ModuleType("onnxruntime")
        module.__spec__ = importlib.machinery.ModuleSpec("onnxruntime", None)  # torch's import checks look for one
        module.get_available_providers = lambda: list(providers)
    monkeypatch.setitem(sys.modules, "onnxruntime", module)


@pytest.mark.parametrize("providers, engine", [(["CUDAExecutionProvider", "CPUExecutionProvider"], "onnxruntime"),
                                               (["CPUExecutionProvider"], "torch"), (None, "torch")])
def test_the_engine_auto_chooses_on_a_gpu_is_written_into_the_runs_options(monkeypatch, providers, engine):
    """``engine=auto`` on CUDA runs onnxruntime's CUDA provider where it is installed, else the torch conversion
    (also when onnxruntime is not installed at all: that was an ImportError). The run's options then name the engine,
    so two GPU machines that embed differently key their caches apart; on the CPU (auto: always onnxruntime), an
    explicit engine, and a recognizer without the option, the options are left as given."""
    from restorever.recognizers import resolve_recognizer_options

    _fake_onnxruntime(monkeypatch, providers)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert arcface.choose_engine(CARDS["insightface-buffalo_l"], "auto", cuda) == engine
    for given in ({}, {"engine": "auto"}, {"engine": "AUTO", "precision": "fp16"}):
        assert resolve_recognizer_options("insightface-antelopev2", given, cuda) == {**given, "engine": engine}
        assert resolve_recognizer_options("insightface-antelopev2", given, cpu) == given
    for name, given in (("insightface-buffalo_l", {"engine": "onnxruntime"}), ("insightface-buffalo_l",
                        {"engine": "torch"}), ("arcface-r50-ms1mv3", {}), ("insightface-buffalo_s", {}), ("dlib", {})):
        assert resolve_recognizer_options(name, given, cuda) == given
    # MobileFaceNet cannot convert: onnxruntime, on the CPU without the CUDA provider
    assert arcface.choose_engine(CARDS["insightface-buffalo_s"], "auto", cuda) == "onnxruntime"


def test_a_gpu_runs_plan_and_record_name_the_engine_auto_chose(monkeypatch, small_onnx, faces_root, tmp_path):
    """The ``--dry-run`` plan of a CUDA run (no GPU needed to plan) resolves ``engine=auto`` as the run does: its
    config and its cache identity name the engine, and machines with and without onnxruntime's CUDA provider get
    different embedding keys for the same image, while an explicit engine keys as the same engine chosen by auto."""
    from restorever import devices
    from restorever.pipeline.evaluate import EvalConfig
    from restorever.pipeline.plan import describe_plan, plan_context

    monkeypatch.setattr(devices, "resolve_device", lambda device=None: torch.device("cuda"))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("madonna/madonna_0001.jpg,madonna/madonna_0005.jpg,1\n")

    def planned(providers, options):
        _fake_onnxruntime(monkeypatch, providers)
        config = EvalConfig(protocol="pairs-csv", pairs=str(pairs), data_root=str(faces_root), scales=[8],
                            device="cuda", cache_dir=str(tmp_path / "cache"), recognizer="insightface-buffalo_l",
                            recognizer_weights={"model": str(small_onnx)}, recognizer_options=options)
        ctx = plan_context(config)
        return ctx.config.recognizer_options, ctx.identity

    (with_gpu_ort, ident_ort), (without, ident_torch) = planned(["CUDAExecutionProvider"], {}), planned(None, {})
    assert with_gpu_ort == {"engine": "onnxruntime"} and without == {"engine": "torch"}
    assert ident_ort.recognizer["options"] == {"engine": "onnxruntime"} and ident_torch.device == "cuda"
    key = ("0" * 64, np.zeros((5, 2)), "none", None)  # a clean embedding of one image
    assert ident_ort.embedding_key(*key) != ident_torch.embedding_key(*key)
    assert planned(None, {"engine": "onnxruntime"})[1].embedding_key(*key) == ident_ort.embedding_key(*key)
    _fake_onnxruntime(monkeypatch, None)
    config = EvalConfig(protocol="pairs-csv", pairs=str(pairs), data_root=str(faces_root), scales=[8], device="cuda",
                        cache_dir=str(tmp_path / "cache"), recognizer="insightface-buffalo_l",
                        recognizer_weights={"model": str(small_onnx)}, recognizer_options={"precision": "fp16"})
    assert "device cuda; recognizer insightface-buffalo_l (engine=torch, precision=fp16); " in describe_plan(config)


def test_wrong_layout_names_keys(r50_checkpoint, tmp_path):
    _, state = r50_checkpoint
    bad = dict(state)
    bad["output_layer.weight"] = bad.pop("fc.weight")
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointLayoutError) as info:
        create("arcface-r50-ms1mv3", weights={"model": str(path)})
    message = str(info.value)
    assert str(path) in message and "fc.weight" in message and "output_layer.weight" in message
    assert "missing" in message and "unexpected" in message

    # an r50 file offered as r100: names the first missing keys of the deeper net
    with pytest.raises(CheckpointLayoutError, match=r"missing \(e\.g\. layer2\.4\."):
        create("arcface-r100-ms1mv3", weights={"model": str(r50_checkpoint[0])})


def test_not_an_onnx_file(r50_checkpoint):
    with pytest.raises(CheckpointLayoutError, match="onnxruntime cannot load it"):
        create("insightface-buffalo_l", weights={"model": str(r50_checkpoint[0])})


def test_unpicklable_checkpoint_is_refused(tmp_path, small_net):
    path = tmp_path / "module.pth"
    torch.save(small_net, path)  # a whole pickled module, not a state_dict
    with pytest.raises(CheckpointLayoutError, match="weights-only"):
        create("arcface-r50-ms1mv3", weights={"model": str(path)})


def test_unknown_options(caplog):
    with pytest.raises(ValueError, match="unknown weight role"):
        create("arcface-r50-ms1mv3", weights={"unet": "x"})
    with pytest.raises(ValueError, match="precision"):
        arcface.autocast_dtype_for("fp8", torch.device("cpu"))
    with caplog.at_level(logging.WARNING):  # half precision asked for on the CPU: said, not silently ignored
        arcface.autocast_dtype_for("fp16", torch.device("cpu"))
    assert "precision fp16 acts on CUDA only; on cpu the recognizer runs in float32" in caplog.text


# --------------------------------------------------------------------------------------------- finding weights


def test_missing_torch_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsNotFoundError) as info:
        create("arcface-r50-ms1mv3")
    message = str(info.value)
    assert "\n" not in message
    assert "backbone.pth" in message and "https://1drv.ms/" in message
    assert str(tmp_path / "home" / "weights" / "arcface-r50-ms1mv3" / "backbone.pth") in message
    assert "ms1mv3_arcface_r50_fp16" in message
    status = arcface.weight_status("arcface-r50-ms1mv3")["model"]
    assert status.startswith("missing: put backbone.pth in ") and "ms1mv3_arcface_r50_fp16" in status


def test_missing_pack_message(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsNotFoundError) as info:
        create("insightface-antelopev2", insightface_root=tmp_path / "if")
    message = str(info.value)
    assert "\n" not in message and "glintr100.onnx" in message
    assert "https://github.com/deepinsight/insightface/releases/download/v0.7/antelopev2.zip" in message
    assert str(tmp_path / "if" / "models" / "antelopev2") in message
    assert str(tmp_path / "home" / "weights" / "insightface-antelopev2") in message


def test_pack_found_in_insightface_folder(small_onnx, tmp_path, monkeypatch, faces):
    nested = tmp_path / "if" / "models" / "antelopev2" / "antelopev2"  # the zip's nested-folder trap
    nested.mkdir(parents=True)
    assert arcface.weight_status("insightface-antelopev2", insightface_root=tmp_path / "if")["model"].startswith(
        "missing: put glintr100.onnx in ")
    (nested / "glintr100.onnx").write_bytes(small_onnx.read_bytes())
    assert arcface.weight_status("insightface-antelopev2", insightface_root=tmp_path / "if") == {
        "model": f"present: {nested / 'glintr100.onnx'}"}
    found = nested / "glintr100.onnx"
    with pytest.raises(WeightsHashError) as info:  # not the published file: refused (it was a warning) ...
        create("insightface-antelopev2", insightface_root=tmp_path / "if")
    assert str(found) in str(info.value) and "--recognizer-weights" in str(info.value)
    rec = create("insightface-antelopev2", weights={"model": str(found)})  # ... unless the user names it
    assert isinstance(rec, OnnxRecognizer) and rec.path == found
    card = arcface.CARDS["insightface-antelopev2"]
    published = hashlib.sha256(found.read_bytes()).hexdigest()
    monkeypatch.setitem(card.weights, "model", dataclasses.replace(card.weights["model"], sha256=published))
    rec = create("insightface-antelopev2", insightface_root=tmp_path / "if")  # the published file: found and used
    assert isinstance(rec, OnnxRecognizer) and rec.path == found
    assert rec.embed(*faces).shape == (2, 16)


def test_pack_download_extracts_and_verifies(small_onnx, tmp_path, monkeypatch):
    member = small_onnx.read_bytes()
    archive = tmp_path / "buffalo_l.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("buffalo_l/det_10g.onnx", b"detector")
        zf.writestr("buffalo_l/w600k_r50.onnx", member)
    zip_sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(arcface._PACKS, "buffalo_l", arcface._Pack("buffalo_l", archive.as_uri(), zip_sha, 1))
    monkeypatch.delenv("RESTOREVER_OFFLINE", raising=False)
    card = CARDS["insightface-buffalo_l"]
    good = dataclasses.replace(card, weights={"model": dataclasses.replace(
        card.weights["model"], sha256=hashlib.sha256(member).hexdigest())})
    cache = tmp_path / "cache"
    path = locate_weights(good, cache_dir=cache, insightface_root=tmp_path / "none")
    assert path == cache / "weights" / card.name / "w600k_r50.onnx" and path.read_bytes() == member
    assert [p.name for p in cache.iterdir()] == ["weights"]  # the zip and temp folder are gone
    # the published sha256 (the real file) does not match ours: refused, nothing cached
    with pytest.raises(WeightsHashError, match="w600k_r50.onnx has sha256"):
        locate_weights(card, cache_dir=tmp_path / "cache2", insightface_root=tmp_path / "none")
    assert not (tmp_path / "cache2" / "weights").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_autocast_engine(small_net, small_onnx, faces):
    images, landmarks = faces
    ref = CropRecognizer(CARDS["arcface-r50-ms1mv3"], small_net, embedding_dim=16).embed(images, landmarks)
    for precision in ("fp16", "bf16"):
        rec = create("insightface-buffalo_l", weights={"model": str(small_onnx)}, engine="torch", device="cuda",
                     precision=precision)
        out = rec.embed(images.cuda(), landmarks.cuda())
        assert out.dtype == torch.float32 and out.is_cuda
        assert torch.nn.functional.cosine_similarity(out.cpu(), ref).min() > 0.99
    auto = create("insightface-buffalo_l", weights={"model": str(small_onnx)}, device="cuda")
    out = auto.embed(images.cuda(), landmarks.cuda())
    assert out.is_cuda and torch.nn.functional.cosine_similarity(out.cpu(), ref).min() > 0.99


def test_a_parents_train_mode_never_reaches_the_network(small_net, faces):
    """A recognizer inside a model that calls .train() ran BatchNorm on batch statistics and overwrote the loaded
    running statistics: every embedding changed, for good (3.79 off on the fixture)."""
    import copy

    images, landmarks = faces
    rec = CropRecognizer(CARDS["arcface-r18-ms1mv3"], copy.deepcopy(small_net), embedding_dim=16)
    before = rec.embed(images, landmarks)
    stats = {k: v.clone() for k, v in rec.net.state_dict().items() if "running" in k}
    parent = torch.nn.Sequential(torch.nn.Identity(), rec).train()
    assert parent.training and not rec.training and not any(m.training for m in rec.modules())
    torch.testing.assert_close(rec.embed(images, landmarks), before, atol=0, rtol=0)
    rec(images, landmarks)  # the differentiable forward too
    assert all(torch.equal(v, rec.net.state_dict()[k]) for k, v in stats.items())


def _toy_onnx(path, *, normalise_inside: bool):
    """A recognition-shaped ONNX graph, input [N, 3, 112, 112] -> [N, 3] (the mean of each channel). With
    ``normalise_inside`` it first subtracts 127.5 and scales by 1/127.5, under MXNet's node names."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inputs = [], "data"
    inits = []
    if normalise_inside:
        inits = [helper.make_tensor("mean", TensorProto.FLOAT, [], [127.5]),
                 helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 127.5])]
        nodes += [helper.make_node("Sub", ["data", "mean"], ["centred"], name="_minusscalar0"),
                  helper.make_node("Mul", ["centred", "scale"], ["scaled"], name="_mulscalar0")]
        inputs = "scaled"
    nodes.append(helper.make_node("ReduceMean", [inputs], ["fc1"], axes=[2, 3], keepdims=0, name="pool"))
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                                          ["N", 3, 112, 112])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_graph_that_normalises_its_input_gets_raw_pixels(tmp_path, faces):
    """insightface feeds mean 0 / std 1 to a graph that subtracts and scales its input itself (old MXNet exports);
    restorever normalised such input a second time (cosine 0.18-0.45 to the official embedding)."""
    images, landmarks = faces
    plain = _toy_onnx(tmp_path / "plain.onnx", normalise_inside=False)
    inside = _toy_onnx(tmp_path / "inside.onnx", normalise_inside=True)
    assert not arcface.graph_normalises_input(plain) and arcface.graph_normalises_input(inside)
    assert not arcface.graph_normalises_input(tmp_path / "missing.onnx")
    a = create("insightface-buffalo_l", weights={"model": str(plain)}, engine="onnxruntime")
    b = create("insightface-buffalo_l", weights={"model": str(inside)}, engine="onnxruntime")
    assert b.input_card.mean == (0.0, 0.0, 0.0) and a.input_card is a.card
    torch.testing.assert_close(b.embed(images, landmarks), a.embed(images, landmarks), atol=1e-5, rtol=0)


def test_onnxruntime_engine_refuses_precisions_it_cannot_apply(small_onnx):
    for precision in ("fp16", "bf16", "float16", "bfloat16", "nonsense"):
        with pytest.raises(ValueError, match="precision"):
            create("insightface-buffalo_l", weights={"model": str(small_onnx)}, engine="onnxruntime",
                   precision=precision)
    for precision in ("fp32", "auto", "float32"):  # auto: fp16 autocast on CUDA for torch, float32 here
        assert isinstance(create("insightface-buffalo_l", weights={"model": str(small_onnx)}, engine="onnxruntime",
                                 precision=precision), OnnxRecognizer)


def test_the_run_keys_its_cache_with_the_engine_its_plan_names(monkeypatch, small_onnx, faces_root, tmp_path):
    """``build_context`` (the run) resolves ``engine=auto`` on CUDA through the same step as its ``--dry-run`` plan:
    the recognizer is created with the engine the identity names, and run and plan key the cache alike."""
    from restorever import devices
    from restorever.pipeline.evaluate import EvalConfig, build_context
    from restorever.pipeline.plan import plan_context
    from restorever.pipeline import evaluate
    from restorever.recognizers import REGISTRY

    for module in (devices, evaluate):
        monkeypatch.setattr(module, "resolve_device", lambda device=None: torch.device("cuda"))
    _fake_onnxruntime(monkeypatch, ["CPUExecutionProvider"])
    created = {}

    def create(name, **kwargs):  # what the run would build on the GPU: no GPU here, so the arguments are kept
        created.update(kwargs)
        return arcface.create(name, **{**kwargs, "device": "cpu"})

    monkeypatch.setattr(REGISTRY, "create", create)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("madonna/madonna_0001.jpg,madonna/madonna_0005.jpg,1\n")
    config = EvalConfig(protocol="pairs-csv", pairs=str(pairs), data_root=str(faces_root), scales=[8], device="cuda",
                        restorers=["none"], cache_dir=str(tmp_path / "cache"), recognizer="insightface-buffalo_l",
                        recognizer_weights={"model": str(small_onnx)})
    ctx = build_context(config)
    assert created["engine"] == "torch" and ctx.config.recognizer_options == {"engine": "torch"}
    assert ctx.identity.as_record() == plan_context(config).identity.as_record()
    assert ctx.identity.recognizer["options"] == {"engine": "torch"} and ctx.identity.device == "cuda"

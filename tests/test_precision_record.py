"""results.json's ``setup.precision``: the arithmetic each model ran with on the run's device (``auto`` resolves per
device), read from the built models, and the methods sentence made from it."""
from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from restorever.pipeline.environment import setup_info
from restorever.pipeline.evaluate import EvalConfig, run_header
from restorever.precision import numerics
from restorever.recognizers import create_recognizer
from restorever.reports.methods import methods_latex, methods_markdown
from restorever.restorers import create_restorer
from restorever.validate import RESULTS_SCHEMA
from tests.conftest import random_iresnet_checkpoint


def test_numerics_reads_the_parameters_and_the_autocast():
    """Weight dtypes are those of the parameters as they are now (a cast shows), sorted; buffers and integer
    parameters do not count; a module without floating-point parameters has no entry."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    assert numerics(net, None) == {"weights": ["float32"], "autocast": None}
    net[2].to(torch.bfloat16)
    assert numerics(net, torch.float16) == {"weights": ["bfloat16", "float32"], "autocast": "float16"}
    assert numerics(torch.nn.ReLU(), torch.float16) is None


@pytest.mark.parametrize("name,options,cpu,cuda", [
    ("gfpgan-v1.4", {}, None, "float16"),                       # autocast-only: auto is fp16 on CUDA
    ("gfpgan-v1.4", {"precision": "fp32"}, None, None),
    ("codeformer", {"precision": "bf16"}, "bfloat16", "bfloat16"),
    ("vqfr-v2", {"precision": "fp16-amp"}, "float16", "float16"),
    ("vqfr-v2", {}, None, "float16"),
])
def test_restorers_resolve_auto_per_device(name, options, cpu, cuda):
    """The autocast dtype recorded is the one ``forward`` uses on that device (the backends' own
    ``autocast_dtype``), so a CPU record and a GPU record of the same command say different things."""
    restorer = create_restorer(name, pretrained=False, **options)
    kept = {"codeformer": ["encoder", "code prediction"], "vqfr-v2": ["encoder", "code selection"]}.get(name)
    for device, dtype in ((torch.device("cpu"), cpu), ("cuda", cuda)):
        parts = {"float32_parts": kept} if kept and dtype else {}  # only where a half precision is in use
        assert restorer.numerics(device) == {"weights": ["float32"], "autocast": dtype, **parts}
    assert restorer.autocast_dtype(torch.device("cuda")) == (getattr(torch, cuda) if cuda else None)


def test_cast_once_restorers_record_their_half_weights():
    """``fp16`` casts VQFR's weights once and keeps its numerically sensitive parts in float32: both dtypes are
    recorded, with no autocast on either device; DifFace's UNet is all float16."""
    vqfr = create_restorer("vqfr-v2", pretrained=False, precision="fp16")
    dtypes = {p.dtype for p in vqfr.parameters()}
    assert dtypes == {torch.float16, torch.float32}
    assert vqfr.numerics("cuda") == vqfr.numerics("cpu") == {
        "weights": ["float16", "float32"], "autocast": None,
        "float32_parts": ["encoder", "code selection", "deformable convolutions"]}
    difface = create_restorer("difface", pretrained=False, precision="bf16")
    assert difface.numerics("cuda")["weights"] == sorted({str(p.dtype)[6:] for p in difface.parameters()})
    assert "bfloat16" in difface.numerics("cuda")["weights"]


def test_recognizers(tmp_path):
    """A crop recognizer resolves ``auto`` for the device it is built on and autocasts on CUDA only (its forward's
    rule), so the entry is what it does; dlib and the parameter-free ``none`` restorer compute outside torch
    weights and get no entry."""
    path = tmp_path / "backbone.pth"
    random_iresnet_checkpoint(path, 50)
    built_on_cpu = create_recognizer("arcface-r50-ms1mv3", weights={"model": str(path)})
    assert built_on_cpu.numerics(torch.device("cuda")) == {"weights": ["float32"], "autocast": None}
    half = create_recognizer("arcface-r50-ms1mv3", weights={"model": str(path)}, precision="fp16")
    assert half.numerics(torch.device("cpu")) == {"weights": ["float32"], "autocast": None}
    assert half.numerics(torch.device("cuda")) == {"weights": ["float32"], "autocast": "float16"}
    assert create_recognizer("dlib").numerics("cuda") is None
    assert create_restorer("none").numerics("cuda") is None


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / "backbone.pth"
    random_iresnet_checkpoint(path, 50)
    return [create_recognizer("arcface-r50-ms1mv3", weights={"model": str(path)}, precision="fp16"),
            create_restorer("none"),
            create_restorer("gfpgan-v1.4", pretrained=False), create_restorer("codeformer", pretrained=False,
                                                                               precision="fp32")]


def test_the_record_keeps_what_auto_resolved_to(models):
    """run_header's setup.precision names every model with torch weights, recognizer first, by card name, as it
    ran on the run's device; the record passes the schema with it."""
    config = EvalConfig(protocol="lfw", recognizer="arcface-r50-ms1mv3",
                        restorers=["none", "gfpgan-v1.4", "codeformer"], scales=[8])
    gpu = setup_info(config, models[0], models[1:], torch.device("cuda"))["precision"]
    assert list(gpu) == ["arcface-r50-ms1mv3", "gfpgan-v1.4", "codeformer"]
    assert [v["autocast"] for v in gpu.values()] == ["float16", "float16", None]
    header = run_header(config, torch.device("cpu"), models).to_json()
    assert [v["autocast"] for v in header["setup"]["precision"].values()] == [None, None, None]
    assert "precision" not in setup_info(config, create_recognizer("dlib"), [models[1]], "cuda")
    json.dumps(header, allow_nan=False)
    schema = jsonschema.Draft202012Validator(RESULTS_SCHEMA["properties"]["setup"])
    assert schema.is_valid({"precision": gpu}) and schema.is_valid(json.loads(json.dumps(header["setup"])))
    assert not schema.is_valid({"precision": {"x": {"weights": ["float32"], "autocast": "int8"}}})
    assert not schema.is_valid({"precision": {"x": {"weights": [], "autocast": None}}})


def test_methods_sentence_groups_models_that_ran_alike():
    """One sentence names each arithmetic once, with the models that ran it; a record without setup.precision
    (older, or only dlib/onnxruntime) gets none."""
    record = {"restorever_version": "1.0", "config": {}, "environment": {"device": "cuda:0", "gpu": "H100"},
              "setup": {"precision": {"arcface-r50-ms1mv3": {"weights": ["float32"], "autocast": "float16"},
                                      "vqfr-v2": {"weights": ["float16", "float32"], "autocast": None},
                                      "gfpgan-v1.4": {"weights": ["float32"], "autocast": "float16"}}}}
    text = methods_markdown(record)
    assert ("Numerical precision: arcface-r50-ms1mv3 and gfpgan-v1.4 ran with float32 weights under float16 "
            "autocast; vqfr-v2 with float16 and float32 weights without autocast.") in text
    assert "Numerical precision" in methods_latex(record)
    assert "TF32" not in text  # a record without environment.cuda_math (the CPU, older records)
    record["environment"]["cuda_math"] = {"tf32_matmul": False, "tf32_cudnn": True, "cudnn_benchmark": False}
    assert "On the GPU, TF32 was allowed in convolutions and not in matrix products; cuDNN autotuning was off." \
        in methods_markdown(record)
    record["environment"]["cuda_math"] = {"tf32_matmul": False, "tf32_cudnn": False, "cudnn_benchmark": True}
    assert "On the GPU, TF32 was off; cuDNN autotuning was on." in methods_markdown(record)
    record["environment"]["cuda_math"] = {"tf32_matmul": True, "tf32_cudnn": True,
                                          "float32_matmul_precision": "medium", "cudnn_benchmark": False}
    assert ("On the GPU, TF32 was allowed in convolutions and matrix products; float32 matrix products could also "
            "run in bfloat16 (float32 matmul precision set to medium); cuDNN autotuning was off.") in \
        " ".join(methods_markdown(record).split())  # medium also sets allow_tf32: TF32 alone would understate it
    del record["setup"], record["environment"]["cuda_math"]
    assert "Numerical precision" not in methods_markdown(record) and "TF32" not in methods_markdown(record)


def test_a_cuda_record_keeps_the_tf32_and_cudnn_switches(monkeypatch):
    """environment.cuda_math on a CUDA device: the switches as they are when the record is made (TF32 for
    matmuls is off and for cuDNN on by PyTorch's default; a user's script may flip either), schema-valid; none on
    the CPU."""
    from restorever.pipeline.environment import environment_info

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    matmul, before = torch.backends.cuda.matmul, torch.backends.cuda.matmul.allow_tf32  # a property: no monkeypatch
    matmul.allow_tf32 = True
    try:
        env = environment_info(torch.device("cuda", 0))
    finally:
        matmul.allow_tf32 = before
    assert env["gpu"] == "NVIDIA H200"
    assert env["cuda_math"] == {"tf32_matmul": True, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                                "float32_matmul_precision": "high",  # what allow_tf32 = True means
                                "cudnn_benchmark": True, "cudnn_deterministic": torch.backends.cudnn.deterministic}
    schema = jsonschema.Draft202012Validator(RESULTS_SCHEMA["$defs"]["environment"])
    assert schema.is_valid(env)
    assert not schema.is_valid({**env, "cuda_math": {**env["cuda_math"], "tf32_cudnn": "yes"}})
    assert "cuda_math" not in environment_info(torch.device("cpu"))


def test_partial_autocast_is_recorded_and_stated():
    """VQFR autocasts only its decoders and CodeFormer only its generator (code selection, and the encoder unless
    ``autocast_encoder``, stay float32): the record names the float32 parts and the methods sentence says so, where
    before it read as if the whole network ran under float16 autocast; with ``autocast_encoder`` only what still
    stays float32 is named; GFPGAN, which autocasts the whole network, names none."""
    vqfr = create_restorer("vqfr-v2", pretrained=False)
    assert vqfr.numerics("cuda")["float32_parts"] == ["encoder", "code selection"]
    assert create_restorer("vqfr-v2", pretrained=False, autocast_encoder=True).numerics("cuda")[
        "float32_parts"] == ["code selection"]
    assert "float32_parts" not in create_restorer("codeformer", pretrained=False,
                                                  autocast_encoder=True).numerics("cuda")
    assert "float32_parts" not in create_restorer("gfpgan-v1.4", pretrained=False).numerics("cuda")
    codeformer = create_restorer("codeformer", pretrained=False)
    setup = {"precision": {"vqfr-v2": vqfr.numerics("cuda"), "codeformer": codeformer.numerics("cuda")}}
    schema = jsonschema.Draft202012Validator(RESULTS_SCHEMA["properties"]["setup"])
    assert schema.is_valid(setup)
    assert not schema.is_valid({"precision": {"x": {**setup["precision"]["vqfr-v2"], "float32_parts": "encoder"}}})
    record = {"restorever_version": "1.0", "config": {}, "environment": {"device": "cuda:0"}, "setup": setup}
    assert ("Numerical precision: vqfr-v2 ran with float32 weights under float16 autocast (encoder and code "
            "selection in float32); codeformer with float32 weights under float16 autocast (encoder and code "
            "prediction in float32).") in " ".join(methods_markdown(record).split())

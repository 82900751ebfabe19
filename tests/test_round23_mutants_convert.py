"""Round 23, mutation testing twenty-first pass: the tests that close the gaps its survivors showed in the ONNX ->
IResNet conversion (Dropout looked through, graphs the IResNet cannot express refused), DifFace's timestep
respacing (sections of unequal size) and the ``ident`` command's restorer options
(docs/reliability.md)."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import helper, numpy_helper

from restorever.cli import cli
from restorever.errors import CheckpointLayoutError
from restorever.recognizers.onnx_convert import iresnet_state_dict_from_onnx
from restorever.restorers.diffusion import space_timesteps
from tests.recognizers.test_round21_mutants_recognizers import _small_iresnet


@pytest.fixture(scope="module")
def exported(reference_dir, tmp_path_factory) -> onnx.ModelProto:
    """The small official-layout IResNet of the reference fixtures ([2,1,1,1], 16-D), exported as arcface_torch's
    torch2onnx does (input ``data``, opset 11, conv-BN fused)."""
    net = _small_iresnet(reference_dir)
    path = tmp_path_factory.mktemp("convert") / "small.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net.eval(), torch.zeros(1, 3, 112, 112), str(path), input_names=["data"],
                          output_names=["fc1"], opset_version=11, dynamo=False)
    return onnx.load(str(path))


def _node(model: onnx.ModelProto, op_type: str, nth: int = 0):
    return [n for n in model.graph.node if n.op_type == op_type][nth]


def _run(model: onnx.ModelProto, image: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"data": image})[0]


def _image() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, 112, 112)).astype(np.float32)


def test_a_dropout_before_the_fc_is_looked_through(exported):
    """The name "Dropout" misspelt in the converter's pass-through list survived: no test graph had one. The
    arcface_torch IResNet applies its dropout between the flatten and the fc, and an export that keeps it (a
    training-mode export, an older exporter) has a Dropout node there, an identity at inference. Such a graph is
    the same network: it must convert to the same state dict as the graph without it."""
    model = onnx.ModelProto()
    model.CopyFrom(exported)
    flat, fc = _node(model, "Flatten"), _node(model, "Gemm")
    fc.input[0] = "dropped"
    position = list(model.graph.node).index(fc)
    model.graph.node.insert(position, helper.make_node("Dropout", [flat.output[0]], ["dropped"], ratio=0.5))
    np.testing.assert_array_equal(_run(model, _image()), _run(exported, _image()))
    layers, features, size, state = iresnet_state_dict_from_onnx(model)
    assert (layers, features, size) == ((2, 1, 1, 1), 16, 112)
    plain = iresnet_state_dict_from_onnx(exported)[3]
    assert list(state) == list(plain)
    for key, value in plain.items():
        torch.testing.assert_close(state[key], value, atol=0, rtol=0, msg=key)


def test_a_shortcut_that_does_not_reach_its_blocks_add_is_refused(exported):
    """Dropping the check that a block's identity shortcut is the input of that block's Add survived. Here the
    shortcut of layer1.1 first gets 1 added (a constant): the graph computes another function than any IResNet,
    so converting it must fail instead of building a network with other embeddings."""
    model = onnx.ModelProto()
    model.CopyFrom(exported)
    block_add = _node(model, "Add", 1)  # layer1.1, the one block with an identity shortcut
    shortcut = block_add.input[1]
    model.graph.initializer.append(numpy_helper.from_array(np.ones(1, dtype=np.float32), "one"))
    model.graph.node.insert(list(model.graph.node).index(block_add),
                            helper.make_node("Add", [shortcut, "one"], ["shifted"]))
    block_add.input[1] = "shifted"
    assert not np.allclose(_run(model, _image()), _run(exported, _image()), atol=1e-3)
    with pytest.raises(CheckpointLayoutError, match="layer1.1 identity does not reach the block's Add"):
        iresnet_state_dict_from_onnx(model, source="shifted.onnx")


def test_a_gemm_with_a_transposed_input_is_refused(exported):
    """Dropping the refusal of a Gemm with ``transA`` survived: the fc of an IResNet multiplies the flattened
    features as they are; a Gemm that transposes them first is not one, and must be refused by name."""
    model = onnx.ModelProto()
    model.CopyFrom(exported)
    _node(model, "Gemm").attribute.append(helper.make_attribute("transA", 1))
    with pytest.raises(CheckpointLayoutError, match="transposed Gemm input.*engine='onnxruntime'"):
        iresnet_state_dict_from_onnx(model, source="transposed.onnx")


def _official_sections(num_steps: int, counts: list[int]) -> list[int]:
    """improved-diffusion's ``space_timesteps`` for section counts, written out as its loop does (fractional
    stride accumulated, each index rounded); the earlier sections take one step each of the remainder."""
    size_per, extra = num_steps // len(counts), num_steps % len(counts)
    start, steps = 0, set()
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        index = 0.0
        for _ in range(count):
            steps.add(start + round(index))
            index += stride
        start += size
    return sorted(steps)


def test_sections_of_unequal_size_take_the_remainder_in_the_first_sections():
    """The extra step of an uneven division given twice to the first sections survived: DifFace's "250" divides
    1,000 steps evenly. With 10 steps in three sections the first has 4 steps (0, 2, 3) and the others 3; with
    1,001 in two the first has 501 and the last section ends at step 1,000, never past the schedule."""
    assert space_timesteps(10, "3,3,3") == [0, 2, 3, 4, 5, 6, 7, 8, 9]
    assert space_timesteps(1001, "2,2") == [0, 500, 501, 1000]
    for steps, counts in ((10, [3, 3, 3]), (1001, [2, 2]), (1000, [7, 5, 3]), (999, [250]), (50, [4, 9, 1, 6])):
        kept = space_timesteps(steps, counts)
        assert kept == _official_sections(steps, counts)
        assert max(kept) < steps


def test_ident_passes_its_restorer_options_to_the_run(lfw_root, tmp_path):
    """``ident``'s restorer options read as empty (``or {}`` made ``and {}``) survived: no identification test gave
    one. A plan checks them as the run does, so an option no restorer takes and a value its card refuses must stop
    ``ident --dry-run`` with the card's words, as they stop ``eval``."""
    args = ["ident", "--data-root", str(lfw_root), "--restorer", "gfpgan-v1.4", "--min-images", "100",
            "--max-probes-per-person", "2", "--max-distractors", "5", "--scales", "8", "--device", "cpu",
            "--out", str(tmp_path / "o"), "--dry-run"]
    plan = CliRunner().invoke(cli, args)
    assert plan.exit_code == 0 and "gfpgan-v1.4 x8" in plan.output, plan.output
    unknown = CliRunner().invoke(cli, args + ["--restorer-option", "nonsense=1"])
    assert unknown.exit_code == 2 and "option(s) nonsense apply to none of the restorers gfpgan-v1.4" in unknown.output
    wrong = CliRunner().invoke(cli, args + ["--restorer-option", "noise=0.3"])
    assert wrong.exit_code == 2 and "gfpgan-v1.4 option noise takes text" in wrong.output, wrong.output

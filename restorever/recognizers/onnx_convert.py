"""ONNX -> IResNet conversion: reads an arcface_torch IResNet exported to ONNX into our state_dict layout.

The key-remapping step of the ArcFace backend (:mod:`restorever.recognizers.arcface`): the insightface packs'
``w600k_r50.onnx`` and ``glintr100.onnx`` become our :class:`~restorever.recognizers.layers.IResNet`, so the torch
engine can run them (on CUDA with autocast) where onnxruntime has no CUDA provider.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import CheckpointLayoutError
from ..hub import load_state_dict_strict
from .crop import build_uninitialised
from .layers.iresnet import IResNet

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

__all__ = ["iresnet_state_dict_from_onnx", "onnx_to_iresnet"]


class _OnnxGraph:
    """Read-only view of an ONNX graph: constants, producers, data-path consumers (Identity/Dropout skipped)."""

    _PASS = ("Identity", "Dropout")

    def __init__(self, model: "onnx.ModelProto", source: str):
        from onnx import numpy_helper

        self.source = source
        self._to_array = numpy_helper.to_array
        graph = model.graph
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.users: dict[str, list] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                if name:
                    self.users[name].append(node)
        inputs = [i for i in graph.input if i.name not in self.inits]
        if len(inputs) != 1:
            self.fail(f"expected one image input, found {[i.name for i in inputs]}")
        self.input = inputs[0]
        self.outputs = {o.name for o in graph.output}

    def fail(self, why: str):
        raise CheckpointLayoutError(f"{self.source}: not an arcface_torch IResNet graph ({why}); "
                                    f"use engine='onnxruntime' for this model")

    def const(self, name: str) -> "np.ndarray":
        """Value of a constant tensor (initializer, Constant, or Identity/Unsqueeze/Reshape/Squeeze/Cast of one)."""
        import numpy as np

        if name in self.inits:
            return self._to_array(self.inits[name])
        node = self.producer.get(name)
        if node is None:
            self.fail(f"{name} is not a constant")
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Constant":
            return self._to_array(attrs["value"].t)
        value = self.const(node.input[0])
        if node.op_type in ("Identity", "Cast"):
            return value
        if node.op_type in ("Unsqueeze", "Squeeze"):
            axes = list(attrs["axes"].ints) if "axes" in attrs else (
                [int(a) for a in self.const(node.input[1])] if len(node.input) > 1 and node.input[1] else None)
            if node.op_type == "Squeeze":
                return np.squeeze(value, axis=tuple(axes) if axes else None)
            for axis in sorted(a % (value.ndim + len(axes)) for a in axes):
                value = np.expand_dims(value, axis)
            return value
        if node.op_type == "Reshape":
            return value.reshape([int(s) for s in self.const(node.input[1])])
        self.fail(f"constant {name} comes from an unsupported {node.op_type} node")

    def next_nodes(self, tensor: str) -> list:
        """Nodes that consume ``tensor`` on the data path, looking through Identity and Dropout."""
        found = []
        for node in self.users.get(tensor, []):
            if node.op_type in self._PASS:
                found += self.next_nodes(node.output[0])
            else:
                found.append(node)
        return found

    def is_output(self, tensor: str) -> bool:
        if tensor in self.outputs:
            return True
        return any(n.op_type in self._PASS and self.is_output(n.output[0]) for n in self.users.get(tensor, []))

    def only_next(self, tensor: str, op_types: tuple[str, ...], what: str):
        nodes = self.next_nodes(tensor)
        if len(nodes) != 1 or nodes[0].op_type not in op_types:
            self.fail(f"after {what} expected {'/'.join(op_types)}, found {[n.op_type for n in nodes]}")
        return nodes[0]


def _bn_entries(prefix: str, weight, bias, mean, var) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": torch.as_tensor(weight, dtype=torch.float32).reshape(-1),
            f"{prefix}.bias": torch.as_tensor(bias, dtype=torch.float32).reshape(-1),
            f"{prefix}.running_mean": torch.as_tensor(mean, dtype=torch.float32).reshape(-1),
            f"{prefix}.running_var": torch.as_tensor(var, dtype=torch.float32).reshape(-1),
            f"{prefix}.num_batches_tracked": torch.tensor(0, dtype=torch.int64)}


def _read_bn(g: _OnnxGraph, node, prefix: str) -> dict[str, torch.Tensor]:
    """An ONNX BatchNormalization -> torch entries with eps 1e-5 (another epsilon is folded into running_var)."""
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
    scale, bias, mean, var = (g.const(name).astype("float64") for name in node.input[1:5])
    return _bn_entries(prefix, scale, bias, mean, var + (eps - 1e-5))


def _read_conv(g: _OnnxGraph, node, conv_key: str, bn_prefix: str) -> tuple[dict[str, torch.Tensor], str, int]:
    """A Conv (+ its BatchNormalization, or a bias from conv-BN fusion) -> entries, output tensor, stride."""
    import numpy as np

    attrs = {a.name: a for a in node.attribute}
    stride = int(attrs["strides"].ints[0]) if "strides" in attrs else 1
    if "group" in attrs and attrs["group"].i != 1:
        g.fail(f"grouped convolution at {node.name or conv_key}")
    entries = {conv_key: torch.as_tensor(g.const(node.input[1]).astype("float32"))}
    out = node.output[0]
    nxt = g.next_nodes(out)
    bias = g.const(node.input[2]).astype("float64") if len(node.input) > 2 and node.input[2] else None
    if len(nxt) == 1 and nxt[0].op_type == "BatchNormalization":
        if bias is not None:  # a conv bias followed by a BN: fold the bias into the BN mean
            bn = _read_bn(g, nxt[0], bn_prefix)
            bn[f"{bn_prefix}.running_mean"] -= torch.as_tensor(bias, dtype=torch.float32)
            entries.update(bn)
        else:
            entries.update(_read_bn(g, nxt[0], bn_prefix))
        out = nxt[0].output[0]
    else:  # conv-BN fused at export: an identity BN that adds the bias
        channels = entries[conv_key].shape[0]
        bias = bias if bias is not None else np.zeros(channels)
        ones = np.ones(channels)
        entries.update(_bn_entries(bn_prefix, np.sqrt(ones + 1e-5), bias, np.zeros(channels), ones))
    return entries, out, stride


def iresnet_state_dict_from_onnx(model: "onnx.ModelProto | str | Path", *, source: str | None = None
                                 ) -> tuple[tuple[int, ...], int, int, dict[str, torch.Tensor]]:
    """Read an arcface_torch IResNet exported to ONNX (fused or not) into our state_dict layout.

    Walks the graph from the input: stem Conv(+BN) -> PRelu, pre-activation blocks (BN -> Conv(+BN) -> PRelu ->
    Conv(+BN) -> Add with the identity or a 1x1 Conv(+BN)), then BN -> Flatten -> Gemm -> BN. Conv-BN pairs that the
    exporter fused become a conv plus an identity BN carrying the bias.

    Returns ``(layers, num_features, input_size, state_dict)``; raises :class:`CheckpointLayoutError` for any other
    graph (e.g. MobileFaceNet, or old MXNet exports that normalise inside the graph).
    """
    import numpy as np
    import onnx

    if not isinstance(model, onnx.ModelProto):
        source = source or str(model)
        try:
            model = onnx.load(str(model))
        except Exception as exc:  # noqa: BLE001 - protobuf DecodeError, or anything else on a file that is not ONNX
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointLayoutError(f"{source}: not an ONNX model ({type(exc).__name__}: {first})") from None
    g = _OnnxGraph(model, source or "ONNX model")
    sd: dict[str, torch.Tensor] = {}

    stem = g.only_next(g.input.name, ("Conv",), "the input")
    entries, t, _ = _read_conv(g, stem, "conv1.weight", "bn1")
    sd.update(entries)
    prelu = g.only_next(t, ("PRelu",), "the stem")
    sd["prelu.weight"] = torch.as_tensor(g.const(prelu.input[1]).astype("float32")).reshape(-1)
    t = prelu.output[0]

    layers: list[int] = []
    while True:
        nxt = g.next_nodes(t)
        if len(nxt) == 1 and nxt[0].op_type == "BatchNormalization":
            break  # the head's bn2
        bns = [n for n in nxt if n.op_type == "BatchNormalization"]
        if len(nxt) != 2 or len(bns) != 1:
            g.fail(f"unexpected block input consumers {[n.op_type for n in nxt]}")
        side = next(n for n in nxt if n is not bns[0])
        if side.op_type == "Conv":
            layers.append(0)
        elif side.op_type != "Add" or not layers:
            g.fail(f"block shortcut is {side.op_type}")
        if len(layers) > 4:
            g.fail("more than 4 stages")
        prefix = f"layer{len(layers)}.{layers[-1]}"
        sd.update(_read_bn(g, bns[0], f"{prefix}.bn1"))
        conv1 = g.only_next(bns[0].output[0], ("Conv",), f"{prefix}.bn1")
        entries, u, _ = _read_conv(g, conv1, f"{prefix}.conv1.weight", f"{prefix}.bn2")
        sd.update(entries)
        prelu = g.only_next(u, ("PRelu",), f"{prefix}.bn2")
        sd[f"{prefix}.prelu.weight"] = torch.as_tensor(g.const(prelu.input[1]).astype("float32")).reshape(-1)
        conv2 = g.only_next(prelu.output[0], ("Conv",), f"{prefix}.prelu")
        entries, u, stride = _read_conv(g, conv2, f"{prefix}.conv2.weight", f"{prefix}.bn3")
        sd.update(entries)
        add = g.only_next(u, ("Add",), f"{prefix}.bn3")
        if side.op_type == "Conv":
            if stride != 2:
                g.fail(f"{prefix} starts a stage with stride {stride}")
            entries, v, _ = _read_conv(g, side, f"{prefix}.downsample.0.weight", f"{prefix}.downsample.1")
            sd.update(entries)
            if g.only_next(v, ("Add",), f"{prefix}.downsample") is not add:
                g.fail(f"{prefix} shortcut does not reach the block's Add")
        elif side is not add:
            g.fail(f"{prefix} identity does not reach the block's Add")
        layers[-1] += 1
        t = add.output[0]
    if len(layers) != 4:
        g.fail(f"found {len(layers)} stages, expected 4")

    head_bn = g.next_nodes(t)[0]
    sd.update(_read_bn(g, head_bn, "bn2"))
    flat = g.only_next(head_bn.output[0], ("Flatten", "Reshape"), "bn2")
    fc = g.only_next(flat.output[0], ("Gemm", "MatMul"), "the flatten")
    if fc.op_type == "Gemm":
        attrs = {a.name: a for a in fc.attribute}
        alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
        beta = attrs["beta"].f if "beta" in attrs else 1.0
        weight = g.const(fc.input[1]).astype("float64") * alpha
        if "transA" in attrs and attrs["transA"].i:
            g.fail("transposed Gemm input")
        if not ("transB" in attrs and attrs["transB"].i):
            weight = weight.T
        bias = (g.const(fc.input[2]).astype("float64") * beta) if len(fc.input) > 2 and fc.input[2] \
            else np.zeros(weight.shape[0])
        t = fc.output[0]
    else:
        weight = g.const(fc.input[1]).astype("float64").T
        add = g.only_next(fc.output[0], ("Add",), "the fc MatMul")
        other = add.input[1] if add.input[0] == fc.output[0] else add.input[0]
        bias = g.const(other).astype("float64")
        t = add.output[0]
    sd["fc.weight"] = torch.as_tensor(weight, dtype=torch.float32)
    sd["fc.bias"] = torch.as_tensor(bias, dtype=torch.float32).reshape(-1)
    features = g.only_next(t, ("BatchNormalization",), "fc")
    sd.update(_read_bn(g, features, "features"))
    if not g.is_output(features.output[0]):
        g.fail(f"nodes follow the features BatchNorm: {[n.op_type for n in g.next_nodes(features.output[0])]}")

    num_features, flat_dim = sd["fc.weight"].shape
    side = int(round((flat_dim / 512) ** 0.5))
    if 512 * side * side != flat_dim:
        g.fail(f"fc input size {flat_dim} is not 512*s*s")
    return tuple(layers), int(num_features), side * 16, sd


def onnx_to_iresnet(path: str | Path, *, source: str | None = None) -> IResNet:
    """Build our :class:`IResNet` from an arcface_torch IResNet ONNX file (strictly loaded; eval mode)."""
    layers, num_features, input_size, sd = iresnet_state_dict_from_onnx(path, source=source)
    net = build_uninitialised(IResNet, layers, num_features=num_features, input_size=input_size)
    load_state_dict_strict(net, sd, source=source or str(path))
    return net.eval()

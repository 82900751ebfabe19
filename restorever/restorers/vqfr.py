"""VQFR face restorers (``vqfr-v1``, ``vqfr-v2``): our own implementation that loads the official checkpoints.

Paper: Gu et al., "VQFR: Blind Face Restoration with Vector-Quantized Dictionary and Parallel Decoder", ECCV 2022,
https://arxiv.org/abs/2205.06803. Official code and weights: https://github.com/TencentARC/VQFR (Apache-2.0).
This module was written from the description in ``shared/reference/vqfr.md``; the module tree (hence every
state_dict key) and the numerics follow the official ``VQFRv1``/``VQFRv2`` classes (commit 239c77a), so the released
``VQFR_v1-33a1fac5.pth`` and ``VQFR_v2.pth`` load strictly with ``torch.load(weights_only=True)``. The deformable
convolution runs on ``torchvision.ops.deform_conv2d``; neither mmcv nor basicsr is needed.

Input/output contract of the restorers (what the official ``demo.py --aligned`` does): an aligned 512x512 RGB face
in [0, 1] is mapped to [-1, 1] (mean 0.5, std 0.5); the network's ``main_dec`` output is clamped to [-1, 1], mapped
back to [0, 1] and, by default, rounded to the 8-bit grid (the demo writes ``uint8`` images).

``fidelity_ratio`` (v2 only) scales the main (fidelity) branch added to the texture branch's finest feature:
0 gives the pure codebook result ("best quality"), 1 the full main branch ("best fidelity", the training setting).
Official defaults: the network's ``forward`` uses 1.0, ``demo.py``/``-f`` and the Replicate predictor use 0, the
README examples use 0.1, the test yml uses 0. restorever uses 0.0 (the demo default); at exactly 0 the main branch
is skipped, since the official output is then bit-identical to the texture branch.

Order of this file: network imports (``layers/vqfr_nets.py``) -> restorer adapter -> checkpoint checks ->
configs/cards -> ``create`` -> memory measurement (:class:`~restorever.memory.PeakMemoryMonitor`).
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .. import hub
from ..errors import CheckpointLayoutError
from ..memory import PeakMemoryMonitor
from ..images import check_faces
from ..acceleration import CHANNELS_LAST, COMPILE, compile_module
from .base import CAST_PRECISION, QUANTIZE_OUTPUT, Restorer
from .checkpoints import describe_layout, identify_layout
from .layers.modulated_deform_conv import ModulatedDeformConv2d
from ..precision import PRECISIONS as PRECISION_VALUES
from ..precision import cast_module, parse_precision
from .layers.vqfr_nets import VQFRv1, VQFRv2, dtype_of

logger = logging.getLogger(__name__)

__all__ = ["VQFRv1", "VQFRv2", "VQFRRestorer", "CARDS", "create", "build_network", "load_vqfr_weights",
           "measure_peak_memory", "PeakMemoryMonitor", "V1_CONFIG", "V2_CONFIG"]

PRECISIONS = PRECISION_VALUES  # the documented ``precision`` values (scripts/bench_gpu.py times each one)


# ------------------------------------------------------------------------------------------------ restorer adapter
class VQFRRestorer(Restorer):
    """Adapter: our [0, 1] RGB batch in, the official demo's conversions around the network, [0, 1] RGB out.

    ``precision`` (see :mod:`restorever.precision`): ``"fp32"``; ``"fp16"``/``"bf16"`` cast the decoders' weights once
    and run them natively in half precision (the deformable convolutions stay float32: sampling positions of a few
    pixels need more than 8 bits); ``"fp16-amp"``/``"bf16-amp"`` run the decoders under per-op autocast over float32
    weights; ``"auto"`` is ``fp16-amp`` on CUDA and float32 elsewhere. Code selection (encoder + quantiser / code
    predictor) always runs in float32 unless ``autocast_encoder=True`` (then the encoder is cast or autocast too;
    the distances/logits stay float32). If a half-precision batch produces a non-finite value it is recomputed in
    float32 (with a warning; cast modes keep a float32 copy of the network on the CPU for it). ``quantize_output``
    rounds to the 8-bit grid as the demo's ``tensor2img`` does. ``channels_last`` puts the convolution weights in
    channels-last memory order (faster cuDNN kernels on tensor cores; same values). ``compile`` runs the network
    through ``torch.compile`` (inductor; GroupNorm and activations fused; each batch shape compiles once; equal to
    eager within float rounding; the float32 fallback stays eager). The network is deterministic:
    ``seeds`` are accepted and ignored.
    """

    def __init__(self, card: hub.ModelCard, net: nn.Module, *, fidelity_ratio: float | None = None,
                 precision: str = "auto", quantize_output: bool = True, autocast_encoder: bool = False,
                 channels_last: bool = False, compile: bool = False):
        super().__init__(card)
        self._precision = parse_precision(precision, card.name)
        self.net = net
        self.is_v2 = isinstance(net, VQFRv2)
        self.fidelity_ratio = fidelity_ratio
        self.precision = precision
        self.quantize_output = bool(quantize_output)
        self.autocast_encoder = bool(autocast_encoder)
        self.channels_last = bool(channels_last)
        self._fp32_copy: list[nn.Module] = []  # a plain list: not a submodule, not in state_dict, not moved by .to()
        self.fp32_fallbacks = 0  # half-precision batches recomputed in float32 (non-finite output)
        dtype = self._precision.cast_dtype
        if dtype is not None:
            self._fp32_copy.append(copy.deepcopy(net).cpu())
            parts = [net.decoder, net.inpfeat_extraction, net.main_branch if self.is_v2 else net.main_decoder]
            if self.autocast_encoder:
                parts.append(net.encoder)
            for part in parts:
                cast_module(part, dtype, keep=(ModulatedDeformConv2d,))
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        self.torch_compile = bool(compile)
        self._compiled_net = compile_module(net) if self.torch_compile else None  # a function: one state_dict

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype used on ``device`` (None = no autocast)."""
        return self._precision.autocast_dtype(device)

    def float32_parts(self) -> tuple[str, ...]:
        """Code selection stays in float32, and the encoder too unless ``autocast_encoder``; a cast keeps the
        deformable convolutions in float32."""
        parts = ("code selection",) if self.autocast_encoder else ("encoder", "code selection")
        return parts + (("deformable convolutions",) if self._precision.cast_dtype is not None else ())

    def _network(self, x: torch.Tensor, amp: torch.dtype | None, net: nn.Module | None = None) -> torch.Tensor:
        net = (self._compiled_net or self.net) if net is None else net
        kwargs: dict[str, Any] = {"texture_output": False}
        if self.is_v2:
            kwargs["fidelity_ratio"] = self.fidelity_ratio
        if amp is not None and self.autocast_encoder:
            with torch.autocast(device_type=x.device.type, dtype=amp):
                return net(x, **kwargs)["main_dec"]
        return net(x, autocast_dtype=amp, **kwargs)["main_dec"]

    def restore(self, images: torch.Tensor, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Restore ``images`` [B, 3, 512, 512] float RGB in [0, 1]; returns the same shape, dtype and range."""
        check_faces(images, self.card.input_size)
        with torch.inference_mode():  # the clamp stays inside: in-place ops on inference tensors fail outside
            return self.forward(images, seeds=seeds).clamp_(0, 1)

    def _float32_network(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fp32_copy:  # amp: the float32 weights are at hand
            return self._network(x.float(), None)
        net = self._fp32_copy[0].to(x.device)
        try:
            return self._network(x.float(), None, net)
        finally:
            net.cpu()

    def forward(self, images: torch.Tensor, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        dtype = torch.promote_types(dtype_of(self.net.encoder), torch.float32)  # float64 nets stay float64
        x = images.to(dtype) * 2 - 1  # [0, 1] -> [-1, 1] (mean 0.5, std 0.5), RGB as the network expects
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = self.autocast_dtype(x.device)
        out = self._network(x, amp)
        if (amp is not None or self._precision.cast_dtype is not None) and not bool(torch.isfinite(out).all()):
            logger.warning("%s: non-finite output at precision %s; recomputing this batch in float32",
                           self.card.name, self.precision)
            self.fp32_fallbacks += 1
            out = self._float32_network(x)
        out = (out.to(dtype).clamp(-1, 1) + 1) / 2
        if self.quantize_output:
            out = torch.round(out * 255) / 255
        return out.to(images.dtype).contiguous()

    def extra_repr(self) -> str:
        fid = f", fidelity_ratio={self.fidelity_ratio}" if self.is_v2 else ""
        return (f"name={self.card.name!r}{fid}, precision={self.precision!r}, quantize_output={self.quantize_output}, "
                f"compile={self.torch_compile}")


# ------------------------------------------------------------------------------------------------ checkpoint checks
def load_vqfr_weights(net: nn.Module, path: str | os.PathLike, *, name: str) -> None:
    """Load an official-layout checkpoint (``params_ema``, else ``params``) strictly into ``net``.

    Raises :class:`CheckpointLayoutError` naming the file, the mismatching keys and, when the file is recognisably
    the other VQFR version, the restorer to use instead.
    """
    state_dict = hub.load_checkpoint(path, keys=("params_ema", "params"))
    expected = "vqfr_v1" if isinstance(net, VQFRv1) else "vqfr_v2"
    try:
        hub.load_state_dict_strict(net, state_dict, source=str(path))
    except CheckpointLayoutError as exc:
        found = identify_layout(state_dict)  # the other VQFR version, or a GFPGAN, CodeFormer or DifFace file
        if found is not None and found != expected:
            if found.startswith("vqfr"):
                other = found.replace("_", "-")
                raise CheckpointLayoutError(
                    f"{path}: this is a {other} checkpoint, not {name}; use --restorer {other}") from exc
            raise CheckpointLayoutError(f"{path}: {describe_layout(found)}, not a {name} checkpoint") from exc
        raise CheckpointLayoutError(f"{exc} (expected the official {name} layout: VQFR_v1-33a1fac5.pth or "
                                    f"VQFR_v2.pth from TencentARC/VQFR, key params_ema or params)") from exc


# ------------------------------------------------------------------------------------------------- configs and cards
V1_CONFIG: dict[str, Any] = {
    "base_channels": 128, "proj_patch_size": 32, "resolution_scale_rates": [1, 2, 2, 2, 2, 2],
    "channel_multipliers": [1, 1, 2, 2, 2, 4], "encoder_num_blocks": 2, "decoder_num_blocks": 3,
    "quant_level": ["Level_32"], "fix_keys": ["embedding"], "inpfeat_extraction_opt": {"in_dim": 3, "out_dim": 32},
    "align_from_patch": 32,
    "align_opt": {f"Level_{r}": {"cond_channels": 32, "cond_downscale_rate": r, "deformable_groups": 4}
                  for r in (32, 16, 8, 4, 2, 1)},
    "quantizer_opt": {"Level_32": {"type": "L2VectorQuantizerKmeans", "in_dim": 512, "num_code": 1024,
                                   "code_dim": 256, "reservoir_size": 16384, "reestimate_iters": 2000,
                                   "reestimate_maxiters": -1, "warmup_iters": -1}},
}
"""Released VQFR v1 constructor arguments (``options/test/VQFR/test_vqfr_v1.yml``): 76,563,583 parameters."""

V2_CONFIG: dict[str, Any] = {
    "base_channels": 64, "channel_multipliers": [1, 2, 2, 4, 4, 8], "num_enc_blocks": 2, "use_enc_attention": True,
    "num_dec_blocks": 2, "use_dec_attention": True, "code_dim": 256, "inpfeat_dim": 32,
    "align_opt": {"cond_channels": 32, "deformable_groups": 4}, "code_selection_mode": "Predict",
    "quantizer_opt": {"type": "L2VectorQuantizer", "num_code": 1024, "code_dim": 256, "spatial_size": [16, 16]},
}
"""Released VQFR v2 constructor arguments (``options/test/VQFR/test_vqfr_v2.yml``): 83,486,539 parameters."""

_PAPER = "https://arxiv.org/abs/2205.06803"
_ORIGIN = "https://github.com/TencentARC/VQFR"

# Speed levers both variants take (docs/benchmarks.md measures them): channels_last and compile change values only
# by float rounding; autocast_encoder runs code selection's encoder in the half precision too.
_SPEED_DEFAULTS = {"autocast_encoder": False, "channels_last": False, "compile": False}
_SPEED_OPTIONS = {
    "autocast_encoder": hub.OptionSpec("run the encoder in the half precision too (faster; may pick other codes, "
                                       "see docs/benchmarks.md); default: code selection in float32"),
    "channels_last": CHANNELS_LAST,
    "compile": COMPILE,
}

CARDS: dict[str, hub.ModelCard] = {
    "vqfr-v1": hub.ModelCard(
        name="vqfr-v1", arch="vqfr_v1",
        weights={"model": hub.WeightFile(
            filename="VQFR_v1-33a1fac5.pth", url=None, sha256=None, license="Apache-2.0",
            origin_url="https://drive.google.com/drive/folders/1lczKYEbARwe27FJlKoFdng7UnffGDjO2", paper=_PAPER)},
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        default_kwargs={"precision": "auto", "quantize_output": True, **_SPEED_DEFAULTS},
        option_specs={"precision": CAST_PRECISION, "quantize_output": QUANTIZE_OUTPUT, **_SPEED_OPTIONS},
        description="VQFR v1 (ECCV 2022): VQ codebook + parallel decoder, 76.6M parameters; weights on the "
                    "authors' Google Drive only",
        reported={"seconds_per_face_a100": 0.36, "params": 76_563_583}),
    "vqfr-v2": hub.ModelCard(
        name="vqfr-v2", arch="vqfr_v2",
        weights={"model": hub.WeightFile(
            filename="VQFR_v2.pth", url="https://github.com/TencentARC/VQFR/releases/download/v2.0.0/VQFR_v2.pth",
            sha256=None, license="Apache-2.0", origin_url=_ORIGIN + "/releases/tag/v2.0.0", paper=_PAPER)},
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        default_kwargs={"fidelity_ratio": 0.0, "precision": "auto", "quantize_output": True, **_SPEED_DEFAULTS},
        option_specs={"fidelity_ratio": hub.OptionSpec("0 = best quality (default) to 1 = best fidelity to the input",
                                                       minimum=0.0, maximum=1.0),
                      "precision": CAST_PRECISION, "quantize_output": QUANTIZE_OUTPUT, **_SPEED_OPTIONS},
        description="VQFR v2: predicted codes + texture warping, 83.5M parameters; fidelity_ratio 0 (default, "
                    "best quality) to 1 (best fidelity)",
        reported={"params": 83_486_539}),
}
"""Registered variants. ``mean``/``std`` are in [0, 1] units: the network sees ``(x - 0.5) / 0.5``. No sha256 is
published for either file (the cards leave it empty; ``restorever weights verify`` records the local hash)."""

_CONFIGS = {"vqfr_v1": V1_CONFIG, "vqfr_v2": V2_CONFIG}


def build_network(arch: str, config: Mapping[str, Any] | None = None, *, initialize: bool = True) -> nn.Module:
    """A ``VQFRv1``/``VQFRv2`` (``arch`` ``"vqfr_v1"``/``"vqfr_v2"``) on the CPU in eval mode.

    ``config`` replaces the released constructor arguments (same names as the official classes, e.g. a fixture's
    ``config``); ``None`` builds the released size. ``initialize=False`` leaves the parameters uninitialised (built
    on the meta device, then allocated): use it only when a checkpoint is loaded next.
    """
    if arch not in _CONFIGS:
        raise ValueError(f"unknown VQFR arch {arch!r}; expected one of {sorted(_CONFIGS)}")
    kwargs = copy.deepcopy(dict(config if config is not None else _CONFIGS[arch]))
    cls = VQFRv1 if arch == "vqfr_v1" else VQFRv2
    net = cls(**kwargs) if initialize else hub.build_uninitialised(cls, **kwargs)
    return net.eval().requires_grad_(False)


def create(name: str, *, weights: Mapping[str, str] | None = None, device: str | torch.device = "cpu",
           fidelity_ratio: float | None = None, precision: str | None = None, quantize_output: bool | None = None,
           autocast_encoder: bool = False, channels_last: bool = False, compile: bool = False, pretrained: bool = True,
           cache_dir: str | os.PathLike | None = None, config: Mapping[str, Any] | None = None) -> VQFRRestorer:
    """Create ``vqfr-v1`` or ``vqfr-v2``.

    ``weights``: ``{"model": FILE}`` (an explicit checkpoint of the official layout), else the cache
    (``$RESTOREVER_HOME/weights/<name>/``), else a download where a URL exists; a missing file raises
    :class:`~restorever.errors.WeightsNotFoundError` naming the file and its URL. ``fidelity_ratio`` (v2 only,
    [0, 1], default 0.0 as in the official demo). ``pretrained=False`` skips loading (random weights, for
    benchmarks); ``config`` overrides the constructor arguments (reduced sizes in tests).
    """
    if name not in CARDS:
        raise KeyError(f"unknown VQFR variant {name!r}; expected one of {sorted(CARDS)}")
    card = CARDS[name]
    defaults = card.default_kwargs
    if name == "vqfr-v1" and fidelity_ratio is not None:
        logger.warning("vqfr-v1 has no fidelity control; fidelity_ratio=%s is ignored", fidelity_ratio)
        fidelity_ratio = None
    if name == "vqfr-v2":
        fidelity_ratio = defaults["fidelity_ratio"] if fidelity_ratio is None else float(fidelity_ratio)
        if not 0.0 <= fidelity_ratio <= 1.0:
            raise ValueError(f"vqfr-v2: fidelity_ratio must be in [0, 1] (0 = best quality, 1 = best fidelity), "
                             f"got {fidelity_ratio}")
    weights = hub.check_weight_roles(name, weights, ["model"])
    net = build_network(card.arch, config, initialize=not pretrained)
    weight_files: dict[str, tuple[str, str | None]] = {}
    if pretrained:
        path = hub.resolve_weights(card, "model", explicit=weights.get("model"), cache_dir=cache_dir)
        load_vqfr_weights(net, path, name=name)
        weight_files["model"] = (str(path), hub.sha256_file(path))
        logger.info("%s: loaded %s", name, path)
    elif weights:
        raise ValueError(f"{name}: weights given together with pretrained=False")
    else:
        weight_files["model"] = ("random-init", None)
    restorer = VQFRRestorer(card, net, fidelity_ratio=fidelity_ratio,
                            precision=defaults["precision"] if precision is None else precision,
                            quantize_output=defaults["quantize_output"] if quantize_output is None else quantize_output,
                            autocast_encoder=autocast_encoder, channels_last=channels_last, compile=compile)
    restorer.weight_files = weight_files  # {role: (path, sha256)}: the pipeline's cache keys and results.json
    return restorer.to(device).eval()


# ------------------------------------------------------------------------------------------------ memory measurement
def measure_peak_memory(restorer: Restorer, batch_sizes: Sequence[int], *,
                        size: int | None = None) -> list[dict[str, Any]]:
    """Peak memory of one ``restorer.restore`` call per batch size (random faces on the restorer's device).

    Each row: ``batch_size``, ``parameter_bytes``, ``peak_bytes`` (in use at the peak, parameters included),
    ``activation_bytes`` (peak minus what was in use before the call) and ``method`` (see
    :class:`PeakMemoryMonitor`: exact on CUDA, a sampled-RSS estimate on CPU).
    """
    device = restorer.device
    size = size or restorer.card.input_size
    param_bytes = sum(p.numel() * p.element_size() for p in restorer.parameters())
    rows = []
    for batch in batch_sizes:
        images = torch.rand(batch, 3, size, size, device=device)
        with PeakMemoryMonitor(device) as monitor:
            restorer.restore(images)
        rows.append({"batch_size": batch, "parameter_bytes": param_bytes, "peak_bytes": monitor.peak_bytes,
                     "activation_bytes": monitor.activation_bytes, "method": monitor.method})
    return rows

"""CodeFormer face restorer (``codeformer``): our implementation that loads the official ``codeformer.pth``.

Paper: Zhou et al., "Towards Robust Blind Face Restoration with Codebook Lookup Transformer", NeurIPS 2022,
https://arxiv.org/abs/2206.11253. Official code and weights: https://github.com/sczhou/CodeFormer, released under the
**NTU S-Lab License 1.0: non-commercial use and redistribution only** (code; the weights carry no other terms).
Written from the description in ``shared/reference/codeformer.md``; the module tree (hence every state_dict key)
follows the official ``CodeFormer`` class (commit b33cc7d), so the release loads strictly with
``torch.load(weights_only=True)``. No basicsr or facelib is needed.

Network: a VQGAN encoder maps the face to a 16x16 grid of 256-d features; a transformer predicts, per position, one
of 1024 codebook entries; the looked-up codes (AdaIN-matched to the encoder features) are decoded by the VQGAN
generator, whose 32-256 px features are fused with the encoder's by controllable feature transformations scaled by
the fidelity weight ``w``: 0 = pure codebook ("quality"), 1 = full fusion ("fidelity").

Input/output contract of the restorer (``inference_codeformer.py --has_aligned``): an aligned 512x512 RGB face in
[0, 1] is mapped to [-1, 1]; ``net(x, w=w, adain=True)``; the output is clamped to [-1, 1], mapped back to [0, 1] and,
by default, rounded to the 8-bit grid. Defaults as the official inference script: ``w = 0.5``, AdaIN on. Not done
here: the script's grayscale branch (for an aligned input its ``is_gray`` flags, threshold 5, the restored face is
saved grey), which changes the output of grey faces only (45 of LFW's 13,233 photos pass that test).

Order of this file: network -> restorer adapter -> checkpoint checks -> config/card -> ``create``.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .. import hub
from ..precision import AUTOCAST_PRECISIONS, autocast_dtype
from .base import AUTOCAST_PRECISION, QUANTIZE_OUTPUT, Restorer
from .checkpoints import load_model_file, load_official_checkpoint
from .layers.codeformer_blocks import (ENCODER_SKIP_BLOCK, GENERATOR_FUSE_BLOCK, FuseSFTBlock, TransformerSALayer,
                                       adaptive_instance_norm, vqgan_encoder_blocks, vqgan_generator_blocks)

logger = logging.getLogger(__name__)

__all__ = ["CodeFormer", "CodeFormerRestorer", "CARDS", "CONFIG", "create", "build_network",
           "load_codeformer_weights", "flops_per_face", "DEFAULT_FIDELITY"]

DEFAULT_FIDELITY = 0.5  # inference_codeformer.py -w, the web demos' default
EMB_DIM = 256           # code dimension, hard-coded in the official class


def _autocast(device_type: str, dtype: torch.dtype | None):
    return torch.autocast(device_type=device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


class _Stack(nn.Module):
    """Holds a flat ``blocks`` list (official key prefix ``encoder.blocks`` / ``generator.blocks``)."""

    def __init__(self, blocks: nn.ModuleList):
        super().__init__()
        self.blocks = blocks


class _Codebook(nn.Module):
    """The VQGAN quantiser; CodeFormer uses only its ``embedding`` rows ``[codebook_size, 256]``."""

    def __init__(self, codebook_size: int, emb_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, emb_dim)


class CodeFormer(nn.Module):
    """CodeFormer network. Arguments are the official ones (see :data:`CONFIG`) plus the backbone width
    ``vqgan_nf`` and multipliers ``vqgan_ch_mult`` that the official class hard-codes (64 and [1, 2, 2, 4, 4, 8]);
    the code grid is taken from the encoder output (16x16 for a 512x512 face), so ``latent_size`` must equal h*w.

    ``forward(x, w=0.0, adain=False)`` (the official forward's defaults) takes ``x`` ``[B, 3, H, 512]`` RGB in
    [-1, 1] (skip features are keyed by feature-map width, so the width must be 512 as released; the released
    ``position_emb`` also fixes H = 512) and returns a dict: ``out`` ``[B, 3, H, W]`` (unbounded, network range),
    ``logits`` ``[B, h*w, codebook_size]`` (row-major tokens), ``lq_feat`` ``[B, 256, h, w]``, ``code_indices``
    ``[B, h*w]``; with ``return_aux`` also ``quant_feat`` (the generator input) and ``enc_feat`` (kept skips).
    ``w <= 0`` skips the fusion blocks entirely. Code selection (encoder, transformer, logits) runs in the parameters'
    precision with autocast off unless ``autocast_encoder``; ``autocast_dtype`` applies to the generator.
    """

    def __init__(self, dim_embd: int = 512, n_head: int = 8, n_layers: int = 9, codebook_size: int = 1024,
                 latent_size: int = 256, connect_list: Sequence[str] = ("32", "64", "128", "256"),
                 fix_modules: Sequence[str] = ("quantize", "generator"), vqgan_path: str | None = None,
                 vqgan_nf: int = 64, vqgan_ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8)):
        super().__init__()
        self.config = {"dim_embd": dim_embd, "n_head": n_head, "n_layers": n_layers, "codebook_size": codebook_size,
                       "latent_size": latent_size, "connect_list": list(connect_list),
                       "fix_modules": list(fix_modules), "vqgan_path": vqgan_path, "vqgan_nf": vqgan_nf,
                       "vqgan_ch_mult": list(vqgan_ch_mult)}
        if vqgan_path is not None:
            raise ValueError("vqgan_path is a training option; load a full CodeFormer checkpoint instead")
        unknown = sorted(set(connect_list) - set(GENERATOR_FUSE_BLOCK))
        if unknown:
            raise ValueError(f"connect_list entries {unknown} are not widths in {sorted(GENERATOR_FUSE_BLOCK)}")
        self.connect_list = [str(c) for c in connect_list]
        self.latent_size = latent_size
        # parameters in the official registration order (VQAutoEncoder base first), so state_dict() lists match
        self.encoder = _Stack(vqgan_encoder_blocks(vqgan_nf, vqgan_ch_mult, emb_dim=EMB_DIM))
        self.quantize = _Codebook(codebook_size, EMB_DIM)
        self.generator = _Stack(vqgan_generator_blocks(vqgan_nf, vqgan_ch_mult, emb_dim=EMB_DIM))
        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embd))
        self.feat_emb = nn.Linear(EMB_DIM, dim_embd)
        self.ft_layers = nn.Sequential(*[TransformerSALayer(dim_embd, n_head, 2 * dim_embd)
                                         for _ in range(n_layers)])
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd), nn.Linear(dim_embd, codebook_size, bias=False))
        widths = {str(512 // 2 ** i): vqgan_nf * m for i, m in enumerate(vqgan_ch_mult)}
        self.fuse_convs_dict = nn.ModuleDict({c: FuseSFTBlock(widths[c]) for c in self.connect_list})

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """VQGAN encoder: ``(lq_feat [B, 256, h, w], {width: kept skip feature})``."""
        keep = {ENCODER_SKIP_BLOCK[c]: c for c in self.connect_list}
        skips = {}
        for i, block in enumerate(self.encoder.blocks):
            x = block(x)
            if i in keep:
                skips[str(x.shape[-1])] = x
        return x, skips

    def code_logits(self, lq_feat: torch.Tensor) -> torch.Tensor:
        """Transformer over the row-major tokens of ``lq_feat``: logits ``[B, h*w, codebook_size]``."""
        tokens = self.feat_emb(lq_feat.flatten(2).transpose(1, 2))  # [B, N, dim_embd]
        if tokens.shape[1] != self.latent_size:
            raise ValueError(f"CodeFormer: the encoder gives {tokens.shape[1]} tokens ({lq_feat.shape[-2]}x"
                             f"{lq_feat.shape[-1]}) but position_emb has {self.latent_size}: the released model "
                             f"needs 512x512 inputs")
        pos = self.position_emb.unsqueeze(0).to(tokens.dtype)
        for layer in self.ft_layers:
            tokens = layer(tokens, pos)
        return self.idx_pred_layer(tokens)

    def lookup(self, indices: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Codebook rows for ``indices`` ``[B, h*w]`` as a map ``[B, 256, h, w]``."""
        quant = self.quantize.embedding.weight[indices]  # == one-hot @ codebook, exactly
        return quant.view(indices.shape[0], height, width, -1).permute(0, 3, 1, 2).contiguous()

    def decode(self, quant_feat: torch.Tensor, skips: Mapping[str, torch.Tensor], w: float) -> torch.Tensor:
        """VQGAN generator with fusion of the encoder ``skips`` (after the first ResBlock of each level) when w > 0."""
        fuse_at = {GENERATOR_FUSE_BLOCK[c] for c in self.connect_list}
        x = quant_feat
        for i, block in enumerate(self.generator.blocks):
            x = block(x)
            if i in fuse_at and w > 0:
                key = str(x.shape[-1])
                x = self.fuse_convs_dict[key](skips[key], x, w)
        return x

    def forward(self, x: torch.Tensor, w: float = 0.0, adain: bool = False, *, return_aux: bool = False,
                autocast_dtype: torch.dtype | None = None, autocast_encoder: bool = False) -> dict[str, torch.Tensor]:
        w = float(w)
        with _autocast(x.device.type, autocast_dtype if autocast_encoder else None):
            lq_feat, skips = self.encode(x)
            logits = self.code_logits(lq_feat)
        indices = logits.argmax(dim=-1)  # the official softmax + top-1 (identical except for exact ties)
        b, _, h, wd = lq_feat.shape
        quant_feat = self.lookup(indices, h, wd).to(lq_feat.dtype)
        if adain:
            quant_feat = adaptive_instance_norm(quant_feat, lq_feat)
        with _autocast(x.device.type, autocast_dtype):
            out = self.decode(quant_feat, skips, w)
        result = {"out": out, "logits": logits, "lq_feat": lq_feat, "code_indices": indices}
        if return_aux:
            result["quant_feat"] = quant_feat
            result["enc_feat"] = skips
        return result


# ------------------------------------------------------------------------------------------------ restorer adapter
class CodeFormerRestorer(Restorer):
    """Adapter: our [0, 1] RGB batch in, the official inference conversions around the network, [0, 1] RGB out.

    ``fidelity_weight`` (``w`` in [0, 1], default 0.5 as the official script), ``adain`` (default True as the script).
    ``precision``: ``"auto"`` (float16 autocast for the generator on CUDA, float32 elsewhere), ``"fp32"``,
    ``"fp16"``, ``"bf16"``; code selection stays in float32 unless ``autocast_encoder``. A reduced-precision batch with
    a non-finite output is recomputed in float32 (with a warning). ``quantize_output`` rounds to the 8-bit grid. The
    network is deterministic: ``seeds`` are accepted and ignored.
    """

    def __init__(self, card: hub.ModelCard, net: CodeFormer, *, fidelity_weight: float = DEFAULT_FIDELITY,
                 adain: bool = True, precision: str = "auto", quantize_output: bool = True,
                 autocast_encoder: bool = False):
        super().__init__(card)
        self.fidelity_weight = _check_options(card.name, fidelity_weight, precision)
        self.net = net
        self.adain = bool(adain)
        self.precision = precision
        self.quantize_output = bool(quantize_output)
        self.autocast_encoder = bool(autocast_encoder)

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype used on ``device`` (None = no autocast)."""
        return autocast_dtype(self.precision, device, self.card.name)

    def float32_parts(self) -> tuple[str, ...]:
        """The autocast covers the generator; the encoder and the code prediction stay in float32 unless
        ``autocast_encoder``."""
        return () if self.autocast_encoder else ("encoder", "code prediction")

    def _network(self, x: torch.Tensor, amp: torch.dtype | None) -> torch.Tensor:
        return self.net(x, w=self.fidelity_weight, adain=self.adain, autocast_dtype=amp,
                        autocast_encoder=self.autocast_encoder)["out"]

    def forward(self, images: torch.Tensor, *, seeds: Sequence[int] | None = None) -> torch.Tensor:
        """``images`` ``[B, 3, 512, 512]`` RGB in [0, 1] -> restored, same shape and dtype."""
        dtype = next(self.net.parameters()).dtype
        x = images.to(dtype) * 2 - 1  # [0, 1] -> [-1, 1] (mean 0.5, std 0.5), RGB as the network expects
        amp = self.autocast_dtype(x.device)
        out = self._network(x, amp)
        if amp is not None and not bool(torch.isfinite(out).all()):
            logger.warning("%s: non-finite output under %s autocast; recomputing this batch in float32",
                           self.card.name, amp)
            out = self._network(x, None)
        out = (out.to(dtype).clamp(-1, 1) + 1) / 2
        if self.quantize_output:
            out = torch.round(out * 255) / 255
        return out.to(images.dtype)

    def flops_per_face(self) -> float:
        """FLOPs (2 x multiply-accumulates) of one forward per face at this restorer's fidelity weight."""
        return flops_per_face(self.net.config, fidelity_weight=self.fidelity_weight)

    def extra_repr(self) -> str:
        return f"name={self.card.name!r}, fidelity_weight={self.fidelity_weight}, adain={self.adain}, " \
               f"precision={self.precision!r}, quantize_output={self.quantize_output}"


# ------------------------------------------------------------------------------------------------ checkpoint checks
def load_codeformer_weights(net: CodeFormer, path: str | os.PathLike, *, name: str = "codeformer") -> None:
    """Load an official-layout checkpoint (``params_ema``, else ``params``) strictly into ``net``.

    Raises :class:`CheckpointLayoutError` naming the file and the mismatching keys; when the file is recognisably
    another backend's (GFPGAN, VQFR, DifFace, a CodeFormer colorization/inpainting or VQGAN file), it names it.
    """
    load_official_checkpoint(net, path, name=name, layout="codeformer", release="codeformer.pth from sczhou/CodeFormer")


# ------------------------------------------------------------------------------------------------- config and card
CONFIG: dict[str, Any] = {
    "dim_embd": 512, "codebook_size": 1024, "n_head": 8, "n_layers": 9,
    "connect_list": ["32", "64", "128", "256"], "latent_size": 256, "fix_modules": ["quantize", "generator"],
    "vqgan_path": None, "vqgan_nf": 64, "vqgan_ch_mult": [1, 2, 2, 4, 4, 8],
}
"""Released constructor arguments (``inference_codeformer.py``; the last two are hard-coded in the official class):
94,112,707 parameters, 515 state-dict entries."""

_LICENSE = "NTU S-Lab License 1.0 (non-commercial use and redistribution only)"
_ORIGIN = "https://github.com/sczhou/CodeFormer"

CARDS: dict[str, hub.ModelCard] = {
    "codeformer": hub.ModelCard(
        name="codeformer", arch="codeformer",
        weights={"model": hub.WeightFile(
            filename="codeformer.pth", url=_ORIGIN + "/releases/download/v0.1.0/codeformer.pth", sha256=None,
            license=_LICENSE, origin_url=_ORIGIN + "/releases/tag/v0.1.0", paper="https://arxiv.org/abs/2206.11253",
            size_bytes=None)},
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        default_kwargs={"fidelity_weight": DEFAULT_FIDELITY, "adain": True, "precision": "auto",
                        "quantize_output": True},
        option_specs={"fidelity_weight": hub.OptionSpec("w: 0 = best quality to 1 = best fidelity (official 0.5)",
                                                        minimum=0.0, maximum=1.0),
                      "adain": hub.OptionSpec("AdaIN of the looked-up codes to the encoder features' per-channel "
                                              "statistics, on the 16x16 latent (official: on)"),
                      "precision": AUTOCAST_PRECISION, "quantize_output": QUANTIZE_OUTPUT},
        description="CodeFormer (NeurIPS 2022): VQGAN codebook + transformer code prediction + fusion, 94.1M "
                    "parameters; fidelity_weight w 0 (quality) to 1 (fidelity), default 0.5; non-commercial licence",
        reported={"params": 94_112_707, "gflop_per_face": 809.8, "gflop_per_face_w0": 591.7}),
}
"""``mean``/``std`` in [0, 1] units: the network sees ``(x - 0.5) / 0.5``. No sha256 is published for the file."""


def build_network(config: Mapping[str, Any] | None = None, *, initialize: bool = True) -> CodeFormer:
    """A :class:`CodeFormer` on the CPU in eval mode; ``config`` replaces :data:`CONFIG` (official kwarg names plus
    ``vqgan_nf``/``vqgan_ch_mult``). ``initialize=False`` builds on the meta device and allocates without initialising
    (use it only when a checkpoint is loaded next)."""
    kwargs = copy.deepcopy(dict(CONFIG if config is None else config))
    net = CodeFormer(**kwargs) if initialize else hub.build_uninitialised(CodeFormer, **kwargs)
    return net.eval().requires_grad_(False)


@functools.lru_cache(maxsize=8)
def _forward_flops(config_json: str, fuse: bool) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    config = json.loads(config_json)
    side = int(round(config["latent_size"] ** 0.5)) * 2 ** (len(config["vqgan_ch_mult"]) - 1)
    with torch.device("meta"):  # shapes only: no memory, no compute
        net = CodeFormer(**config)
        x = torch.empty(1, 3, side, side)
        with FlopCounterMode(display=False) as counter:
            net(x, w=1.0 if fuse else 0.0, adain=True)
    return float(counter.get_total_flops())


def flops_per_face(config: Mapping[str, Any] | None = None, *, fidelity_weight: float = DEFAULT_FIDELITY) -> float:
    """FLOPs (2 x MACs of convolutions, linears and attention matmuls, counted by ``torch.utils.flop_counter`` on the
    meta device) of one forward. Released: 809.6 GFLOP per 512x512 face for w > 0, 591.5 GFLOP at w = 0 (the fusion
    blocks are skipped); the official code counts 0.13 GFLOP more for its one-hot code lookup (a matmul here an
    indexing)."""
    cfg = dict(CONFIG if config is None else config)
    return _forward_flops(json.dumps(cfg, sort_keys=True), float(fidelity_weight) > 0)


def _check_options(name: str, fidelity_weight: float, precision: str) -> float:
    w = float(fidelity_weight)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"{name}: fidelity_weight must be in [0, 1] (0 = best quality, 1 = best fidelity; "
                         f"official default {DEFAULT_FIDELITY}), got {fidelity_weight}")
    if precision not in AUTOCAST_PRECISIONS:
        raise ValueError(f"{name}: precision must be one of auto, fp32, fp16, bf16; got {precision!r}")
    return w


def create(name: str = "codeformer", *, weights: Mapping[str, str] | None = None, device: str | torch.device = "cpu",
           fidelity_weight: float | None = None, adain: bool | None = None, precision: str | None = None,
           quantize_output: bool | None = None, autocast_encoder: bool = False, pretrained: bool = True,
           cache_dir: str | os.PathLike | None = None,
           config: Mapping[str, Any] | None = None) -> CodeFormerRestorer:
    """Create ``codeformer``.

    ``weights``: ``{"model": FILE}`` (an explicit checkpoint of the official layout), else the cache
    (``$RESTOREVER_HOME/weights/codeformer/``), else a download from the release URL; a missing file raises
    :class:`~restorever.errors.WeightsNotFoundError` naming the file and its URL. ``fidelity_weight`` in [0, 1]
    (default 0.5; CLI ``--codeformer-fidelity``). ``pretrained=False`` skips loading (random weights, for
    benchmarks); ``config`` overrides the constructor arguments (e.g. ``vqgan_nf``/``vqgan_ch_mult`` in tests).

    Example:
        >>> r = create("codeformer", weights={"model": "codeformer.pth"}, fidelity_weight=0.7, device="cuda")
        >>> out = r.restore(faces)
    """
    if name not in CARDS:
        raise KeyError(f"unknown CodeFormer variant {name!r}; expected one of {sorted(CARDS)}")
    card = CARDS[name]
    defaults = card.default_kwargs
    fidelity_weight = defaults["fidelity_weight"] if fidelity_weight is None else fidelity_weight
    precision = defaults["precision"] if precision is None else precision
    _check_options(name, fidelity_weight, precision)
    net = build_network(config, initialize=not pretrained)
    weight_files = load_model_file(net, card, weights, pretrained=pretrained, cache_dir=cache_dir,
                                   loader=load_codeformer_weights)
    restorer = CodeFormerRestorer(
        card, net, fidelity_weight=fidelity_weight, adain=defaults["adain"] if adain is None else adain,
        precision=precision, quantize_output=defaults["quantize_output"] if quantize_output is None else
        quantize_output, autocast_encoder=autocast_encoder)
    restorer.weight_files = weight_files  # {role: (path, sha256)}: the pipeline's cache keys and results.json
    return restorer.to(device).eval()

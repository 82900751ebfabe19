"""GFPGAN v1.4 / v1.3 face restorers (``gfpgan-v1.4``, ``gfpgan-v1.3``): our implementation of ``GFPGANv1Clean``.

Paper: Wang et al., "Towards Real-World Blind Face Restoration with Generative Facial Prior", CVPR 2021,
https://arxiv.org/abs/2101.04061. Official code and weights: https://github.com/TencentARC/GFPGAN (Apache-2.0).
Written from the description in ``shared/reference/gfpgan.md``; the module tree (hence every state_dict key,
including the 15 stored noise maps) follows the official ``GFPGANv1Clean`` (commit 7552a77), so the released
``GFPGANv1.4.pth`` and ``GFPGANv1.3.pth`` (same architecture and configuration, other training) load strictly with
``torch.load(weights_only=True)``. Neither basicsr, gfpgan nor facexlib is needed.

Network: a U-Net encoder squeezes the face to 4x4 and a linear layer turns it into 16 StyleGAN2 latents; the U-Net
decoder yields per-level scale/shift maps that modulate half of the channels of a StyleGAN2 decoder (SFT).

Input/output contract of the restorers (``GFPGANer.enhance(has_aligned=True)``): an aligned 512x512 RGB face in
[0, 1] is mapped to [-1, 1]; the output is clamped to [-1, 1], mapped back to [0, 1] and, by default, rounded to the
8-bit grid (``tensor2img``). There is no fidelity control (the official ``weight`` argument is ignored).

Noise: every StyleGAN2 layer adds a noise map. The official inference draws fresh, unseeded maps on every call, so its
results are not reproducible. ``noise="seeded"`` (default) draws item ``i``'s maps, in layer order, from a generator
seeded with ``seeds[i]`` (the run's per-item seed, as DifFace's noise): a face restores the same in any batch, and on
the CPU a batch of one with seed ``s`` draws exactly the maps the official code draws after ``torch.manual_seed(s)``.
``noise="stored"`` uses the checkpoint's fixed noise buffers (the official ``randomize_noise=False``; deterministic).

Order of this file: network blocks -> GFPGANv1Clean -> restorer adapter -> checkpoint checks -> config/cards ->
``create``.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import math
import os
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import hub
from ..precision import AUTOCAST_PRECISIONS, autocast_dtype
from .base import AUTOCAST_PRECISION, QUANTIZE_OUTPUT, Restorer
from .checkpoints import load_model_file, load_official_checkpoint
from .diffusion import PerItemNoise
from .layers.stylegan2_clean import StyleGAN2GeneratorCSFT, noise_resolutions, stylegan_channels

logger = logging.getLogger(__name__)

__all__ = ["GFPGANv1Clean", "GFPGANRestorer", "CARDS", "CONFIG", "create", "build_network", "load_gfpgan_weights",
           "flops_per_face", "NOISE_MODES"]

NOISE_MODES = ("seeded", "stored")
DEFAULT_SEED = 0  # seed of every item when a caller gives no seeds
LRELU_SLOPE = 0.2


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


def _autocast(device_type: str, dtype: torch.dtype | None):
    return torch.autocast(device_type=device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------- network blocks
class ResBlock(nn.Module):
    """GFPGAN's U-Net residual block (keys ``conv1``, ``conv2``, ``skip``).

    Main path: 3x3 conv (in->in), LeakyReLU, bilinear resize (x0.5 ``"down"``, x2 ``"up"``), 3x3 conv (in->out),
    LeakyReLU. Skip: the resized input through a 1x1 conv without bias. Output: their sum (no activation after).
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str):
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"mode must be 'down' or 'up', got {mode!r}")
        self.scale = 0.5 if mode == "down" else 2.0
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _lrelu(self.conv2(self._resize(_lrelu(self.conv1(x)))))
        return out + self.skip(self._resize(x))


def _sft_branch(channels: int) -> nn.Sequential:
    """conv3x3 -> LeakyReLU(0.2) -> conv3x3 (keys ``.0`` and ``.2``): one condition (scale or shift) map."""
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(LRELU_SLOPE),
                         nn.Conv2d(channels, channels, 3, padding=1))


# ------------------------------------------------------------------------------------------------------ the network
class GFPGANv1Clean(nn.Module):
    """GFPGAN v1 "clean" network. Constructor arguments are those of the official class (see :data:`CONFIG`).

    Only the released switches are implemented (``input_is_latent=True``, ``different_w=True``, ``sft_half=True``);
    ``decoder_load_path``/``fix_decoder`` are training options (a path is refused, the flag ignored).

    ``forward(x)`` takes ``x`` ``[B, 3, out_size, out_size]`` RGB in [-1, 1] (exactly ``out_size``: the U-Net must end
    at 4x4) and returns a dict: ``image`` ``[B, 3, out_size, out_size]`` (unbounded, network range), and on request
    ``out_rgbs`` (``return_rgb``: the training-time auxiliary images, 8 ... out_size px), ``style_code``
    ``[B, num_latent, num_style_feat]`` and ``conditions`` (``return_aux``). ``noise``: ``None`` uses the stored
    buffers, else one map ``[B or 1, 1, r, r]`` per style layer (:meth:`noise_shapes`). With ``autocast_dtype`` the
    whole network runs under autocast (the demodulation factors stay float32).
    """

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 decoder_load_path: str | None = None, fix_decoder: bool = True, num_mlp: int = 8,
                 input_is_latent: bool = False, different_w: bool = False, narrow: float = 1,
                 sft_half: bool = False):
        super().__init__()
        self.config = {"out_size": out_size, "num_style_feat": num_style_feat, "channel_multiplier": channel_multiplier,
                       "decoder_load_path": decoder_load_path, "fix_decoder": fix_decoder, "num_mlp": num_mlp,
                       "input_is_latent": input_is_latent, "different_w": different_w, "narrow": narrow,
                       "sft_half": sft_half}
        if decoder_load_path is not None:
            raise ValueError("decoder_load_path is a training option; load a full checkpoint instead")
        if not (input_is_latent and different_w and sft_half):
            raise ValueError("only the released GFPGANv1Clean switches are implemented: input_is_latent=True, "
                             "different_w=True, sft_half=True (the class defaults differ; use gfpgan.CONFIG)")
        self.out_size = out_size
        self.num_style_feat = num_style_feat
        self.log_size = int(math.log2(out_size))
        if 2 ** self.log_size != out_size or out_size < 8:
            raise ValueError(f"out_size must be a power of two >= 8, got {out_size}")
        unet = stylegan_channels(channel_multiplier, narrow * 0.5)  # U(r) = S(r) / 2, what sft_half needs
        levels = range(3, self.log_size + 1)  # output resolutions 8 ... out_size of the U-Net decoder
        self.conv_body_first = nn.Conv2d(3, unet[out_size], 1)
        self.conv_body_down = nn.ModuleList()
        in_channels = unet[out_size]
        for i in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_channels, unet[2 ** (i - 1)], "down"))
            in_channels = unet[2 ** (i - 1)]
        self.final_conv = nn.Conv2d(in_channels, unet[4], 3, padding=1)
        self.conv_body_up = nn.ModuleList()
        self.toRGB = nn.ModuleList()
        in_channels = unet[4]
        for i in levels:
            self.conv_body_up.append(ResBlock(in_channels, unet[2 ** i], "up"))
            self.toRGB.append(nn.Conv2d(unet[2 ** i], 3, 1))
            in_channels = unet[2 ** i]
        self.num_latent = self.log_size * 2 - 2
        self.final_linear = nn.Linear(unet[4] * 4 * 4, self.num_latent * num_style_feat)
        self.stylegan_decoder = StyleGAN2GeneratorCSFT(out_size, num_style_feat, num_mlp, channel_multiplier,
                                                       narrow, sft_half=True)
        self.condition_scale = nn.ModuleList([_sft_branch(unet[2 ** i]) for i in levels])
        self.condition_shift = nn.ModuleList([_sft_branch(unet[2 ** i]) for i in levels])

    @property
    def num_noise_layers(self) -> int:
        return self.stylegan_decoder.num_layers

    def noise_shapes(self, batch: int = 1) -> list[tuple[int, int, int, int]]:
        """Shape of the noise map of each style layer (``style_conv1``, ``style_convs.0``, ...) for ``batch``."""
        return [(batch, 1, r, r) for r in noise_resolutions(self.out_size)]

    def forward(self, x: torch.Tensor, *, noise: Sequence[torch.Tensor] | None = None, return_rgb: bool = False,
                return_aux: bool = False, autocast_dtype: torch.dtype | None = None) -> dict[str, Any]:
        if x.shape[-2:] != (self.out_size, self.out_size):
            raise ValueError(f"GFPGAN expects {self.out_size}x{self.out_size} inputs, got {tuple(x.shape[-2:])}")
        with _autocast(x.device.type, autocast_dtype):
            feat = _lrelu(self.conv_body_first(x))
            skips: list[torch.Tensor] = []
            for block in self.conv_body_down:
                feat = block(feat)
                skips.insert(0, feat)  # deepest (4x4) first
            feat = _lrelu(self.final_conv(feat))
            style_code = self.final_linear(feat.flatten(1)).view(x.shape[0], self.num_latent, self.num_style_feat)
            conditions: list[torch.Tensor] = []
            out_rgbs: list[torch.Tensor] = []
            for i, block in enumerate(self.conv_body_up):
                feat = block(feat + skips[i])
                conditions += [self.condition_scale[i](feat), self.condition_shift[i](feat)]
                if return_rgb:
                    out_rgbs.append(self.toRGB[i](feat))
            image = self.stylegan_decoder(style_code, conditions, noise)
        out: dict[str, Any] = {"image": image}
        if return_rgb:
            out["out_rgbs"] = out_rgbs
        if return_aux:
            out["style_code"] = style_code
            out["conditions"] = conditions
        return out


# ------------------------------------------------------------------------------------------------ restorer adapter
class GFPGANRestorer(Restorer):
    """Adapter: our [0, 1] RGB batch in, GFPGANer's conversions around the network, [0, 1] RGB out.

    ``noise``: ``"seeded"`` (per-item maps from ``seeds``; default) or ``"stored"`` (the checkpoint's buffers).
    ``noise_device``: where the per-item generators live (default: the input's device; ``"cpu"`` gives the same noise
    on every machine). ``precision``: ``"auto"`` (float16 autocast on CUDA, float32 elsewhere), ``"fp32"``,
    ``"fp16"``, ``"bf16"``; a reduced-precision batch with a non-finite output is recomputed in float32 (with a
    warning). ``quantize_output`` rounds to the 8-bit grid as ``tensor2img`` does.
    """

    def __init__(self, card: hub.ModelCard, net: GFPGANv1Clean, *, noise: str = "seeded", precision: str = "auto",
                 quantize_output: bool = True, noise_device: str | torch.device | None = None):
        super().__init__(card)
        _check_options(card.name, noise, precision)
        self.net = net
        self.noise = noise
        self.precision = precision
        self.quantize_output = bool(quantize_output)
        self.noise_device = noise_device

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype used on ``device`` (None = no autocast)."""
        return autocast_dtype(self.precision, device, self.card.name)

    def draw_noise(self, seeds: Sequence[int], like: torch.Tensor) -> list[torch.Tensor]:
        """One map per style layer, ``[B, 1, r, r]``: item ``i``'s maps come, in layer order, from a generator seeded
        with ``seeds[i]`` (float32 standard normal), on ``noise_device`` or ``like``'s device."""
        source = PerItemNoise(seeds, self.noise_device)
        return [source.draw(j, torch.empty(shape, device=like.device, dtype=torch.float32))
                for j, shape in enumerate(self.net.noise_shapes(len(seeds)))]

    def forward(self, images: torch.Tensor, *, seeds: Sequence[int] | None = None,
                noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """``images`` ``[B, 3, 512, 512]`` RGB in [0, 1] -> restored, same shape/dtype. ``noise`` (explicit per-layer
        maps) overrides the noise mode and ``seeds``."""
        dtype = next(self.net.parameters()).dtype
        batch = images.shape[0]
        if noise is None and self.noise == "seeded":
            seeds = [DEFAULT_SEED] * batch if seeds is None else list(seeds)
            if len(seeds) != batch:
                raise ValueError(f"{self.card.name}: got {len(seeds)} seeds for {batch} images (one per image)")
            noise = self.draw_noise(seeds, images)
        x = images.to(dtype) * 2 - 1  # [0, 1] -> [-1, 1] (mean 0.5, std 0.5), RGB as the network expects
        amp = self.autocast_dtype(x.device)
        out = self.net(x, noise=noise, autocast_dtype=amp)["image"]
        if amp is not None and not bool(torch.isfinite(out).all()):
            logger.warning("%s: non-finite output under %s autocast; recomputing this batch in float32",
                           self.card.name, amp)
            out = self.net(x, noise=noise)["image"]
        out = (out.to(dtype).clamp(-1, 1) + 1) / 2
        if self.quantize_output:
            out = torch.round(out * 255) / 255
        return out.to(images.dtype)

    def flops_per_face(self) -> float:
        """FLOPs (2 x multiply-accumulates of convolutions and linears) of one forward, per face."""
        return flops_per_face(self.net.config)

    def extra_repr(self) -> str:
        return f"name={self.card.name!r}, noise={self.noise!r}, precision={self.precision!r}, " \
               f"quantize_output={self.quantize_output}"


# ------------------------------------------------------------------------------------------------ checkpoint checks
def load_gfpgan_weights(net: GFPGANv1Clean, path: str | os.PathLike, *, name: str) -> None:
    """Load an official-layout checkpoint (``params_ema``, else ``params``) strictly into ``net``.

    Raises :class:`CheckpointLayoutError` naming the file and the mismatching keys; when the file is recognisably
    another backend's (CodeFormer, VQFR, DifFace, the original GFPGANv1), the message names that backend.
    """
    load_official_checkpoint(net, path, name=name, layout="gfpgan_v1_clean",
                             release="GFPGANv1.4.pth or GFPGANv1.3.pth from TencentARC/GFPGAN")


# ------------------------------------------------------------------------------------------------- config and cards
CONFIG: dict[str, Any] = {
    "out_size": 512, "num_style_feat": 512, "channel_multiplier": 2, "decoder_load_path": None,
    "fix_decoder": False, "num_mlp": 8, "input_is_latent": True, "different_w": True, "narrow": 1, "sft_half": True,
}
"""Released constructor arguments (``GFPGANer(arch='clean', channel_multiplier=2)``), v1.2/v1.3/v1.4 alike:
86,444,252 parameters + 699,024 noise-buffer values (285 state-dict entries)."""

_PAPER = "https://arxiv.org/abs/2101.04061"
_ORIGIN = "https://github.com/TencentARC/GFPGAN"
_RELEASE = _ORIGIN + "/releases/download/v1.3.0/"
_LICENSE = "Apache-2.0 (repository licence; no separate terms for the weights)"
_PARAMS = 86_444_252


def _card(name: str, filename: str, third_party_sha256: str, description: str) -> hub.ModelCard:
    return hub.ModelCard(
        name=name, arch="gfpgan_v1_clean",
        weights={"model": hub.WeightFile(
            filename=filename, url=_RELEASE + filename, sha256=None, license=_LICENSE,
            origin_url=_ORIGIN + "/releases/tag/v1.3.0", paper=_PAPER, size_bytes=None)},
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), stochastic=True,
        default_kwargs={"noise": "seeded", "precision": "auto", "quantize_output": True},
        option_specs={"noise": hub.OptionSpec("seeded: per-item noise maps from the run's seed; stored: the "
                                              "checkpoint's fixed maps", choices=NOISE_MODES),
                      "precision": AUTOCAST_PRECISION, "quantize_output": QUANTIZE_OUTPUT},
        description=description,
        reported={"params": _PARAMS, "state_dict_values": 87_143_276, "gflop_per_face": 395.5,
                  "sha256_third_party_unverified": third_party_sha256})


CARDS: dict[str, hub.ModelCard] = {
    "gfpgan-v1.4": _card(
        "gfpgan-v1.4", "GFPGANv1.4.pth", "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
        "GFPGAN v1.4 (CVPR 2021, clean arch): U-Net + StyleGAN2 prior with SFT, 86.4M parameters; no fidelity "
        "control; StyleGAN noise seeded per item (noise=stored: the checkpoint's fixed maps)"),
    "gfpgan-v1.3": _card(
        "gfpgan-v1.3", "GFPGANv1.3.pth", "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
        "GFPGAN v1.3: same network as v1.4 (the official CLI's default version), other weights; 86.4M "
        "parameters, noise seeded per item"),
}
"""Registered variants. The authors publish no sha256; ``reported["sha256_third_party_unverified"]`` is the hash a
third-party mirror lists (not checked here), so the cards leave ``sha256`` empty. ``mean``/``std`` in [0, 1] units."""


def build_network(config: Mapping[str, Any] | None = None, *, initialize: bool = True) -> GFPGANv1Clean:
    """A :class:`GFPGANv1Clean` on the CPU in eval mode; ``config`` replaces :data:`CONFIG` (official kwarg names,
    e.g. a fixture's ``config``). ``initialize=False`` builds on the meta device and allocates without initialising
    (use it only when a checkpoint is loaded next)."""
    kwargs = copy.deepcopy(dict(CONFIG if config is None else config))
    net = GFPGANv1Clean(**kwargs) if initialize else hub.build_uninitialised(GFPGANv1Clean, **kwargs)
    return net.eval().requires_grad_(False)


@functools.lru_cache(maxsize=8)
def _forward_flops(config_json: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    config = json.loads(config_json)
    with torch.device("meta"):  # shapes only: no memory, no compute
        net = GFPGANv1Clean(**config)
        x = torch.empty(1, 3, config["out_size"], config["out_size"])
        with FlopCounterMode(display=False) as counter:
            net(x)
    return float(counter.get_total_flops())


def flops_per_face(config: Mapping[str, Any] | None = None) -> float:
    """FLOPs (2 x MACs of convolutions and linears, counted by ``torch.utils.flop_counter`` on the meta device) of
    one forward at ``config`` (default: released, 395.5 GFLOP per 512x512 face, as counted on the official code)."""
    return _forward_flops(json.dumps(dict(CONFIG if config is None else config), sort_keys=True))


def _check_options(name: str, noise: str, precision: str) -> None:
    if noise not in NOISE_MODES:
        raise ValueError(f"{name}: noise must be one of {', '.join(NOISE_MODES)} (seeded: per-item maps from the "
                         f"run's seed; stored: the checkpoint's fixed maps), got {noise!r}")
    if precision not in AUTOCAST_PRECISIONS:
        raise ValueError(f"{name}: precision must be one of auto, fp32, fp16, bf16; got {precision!r}")


def create(name: str, *, weights: Mapping[str, str] | None = None, device: str | torch.device = "cpu",
           noise: str | None = None, precision: str | None = None, quantize_output: bool | None = None,
           noise_device: str | torch.device | None = None, pretrained: bool = True,
           cache_dir: str | os.PathLike | None = None, config: Mapping[str, Any] | None = None) -> GFPGANRestorer:
    """Create ``gfpgan-v1.4`` or ``gfpgan-v1.3``.

    ``weights``: ``{"model": FILE}`` (an explicit checkpoint of the official layout), else the cache
    (``$RESTOREVER_HOME/weights/<name>/``), else a download from the release URL; a missing file raises
    :class:`~restorever.errors.WeightsNotFoundError` naming the file and its URL. ``noise``: ``"seeded"`` (default)
    or ``"stored"`` (CLI ``--gfpgan-noise``). ``pretrained=False`` skips loading (random weights, for benchmarks);
    ``config`` overrides the constructor arguments (reduced sizes in tests).

    Example:
        >>> r = create("gfpgan-v1.4", weights={"model": "GFPGANv1.4.pth"}, device="cuda")
        >>> out = r.restore(faces, seeds=[0, 1])
    """
    if name not in CARDS:
        raise KeyError(f"unknown GFPGAN variant {name!r}; expected one of {sorted(CARDS)}")
    card = CARDS[name]
    defaults = card.default_kwargs
    noise = defaults["noise"] if noise is None else noise
    precision = defaults["precision"] if precision is None else precision
    _check_options(name, noise, precision)
    net = build_network(config, initialize=not pretrained)
    weight_files = load_model_file(net, card, weights, pretrained=pretrained, cache_dir=cache_dir,
                                   loader=load_gfpgan_weights)
    restorer = GFPGANRestorer(card, net, noise=noise, precision=precision,
                              quantize_output=defaults["quantize_output"] if quantize_output is None else
                              quantize_output, noise_device=noise_device)
    restorer.weight_files = weight_files  # {role: (path, sha256)}: the pipeline's cache keys and results.json
    return restorer.to(device).eval()

"""DifFace restorer: a SwinIR estimator, its output diffused to a middle timestep, then DDIM back to a clean face.

Paper: Z. Yue and C. C. Loy, "DifFace: Blind Face Restoration with Diffused Error Contraction", IEEE TPAMI 2024
(arXiv:2212.06512). Official code and weights: https://github.com/zsyOAOA/DifFace (commit 5c9ab80 read), released
under the NTU S-Lab License 1.0: **non-commercial** use and redistribution only, for the code and the weights.
Everything here is our own implementation of the facts in ``shared/reference/difface.md``; the released
checkpoints load strictly.

Sampling (aligned 512x512 faces, defaults as released by ``inference_difface.py``): ``im_hq = clamp(SwinIR(y))``;
``x = q_sample(2 im_hq - 1, start_step)`` on the ``ddim250`` respacing; then ``start_step`` DDIM steps with
``eta = 0.5`` (start step 100 of 250, i.e. original t = 400: 100 UNet calls, about 38 TFLOP per face). A later start
(more steps) gives more realistic, less faithful faces; ``eta`` trades the same way. Noise for item ``i`` comes only
from a generator seeded with ``seeds[i]``, so a face restores the same in any batch.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import CheckpointLayoutError, WeightsNotFoundError
from ..hub import (ModelCard, OptionSpec, WeightFile, check_weight_roles, get_cache_dir, load_checkpoint,
                   load_state_dict_strict, resolve_weights, sha256_file)
from ..acceleration import CHANNELS_LAST, COMPILE, compile_module
from .base import CAST_PRECISION, Restorer
from .checkpoints import describe_layout, identify_layout
from .diffusion import DiffusionSchedule, NoiseSource, PerItemNoise, StepCallback, ddim_loop, ddim_step_counts
from .layers.difface_unet import DiffusionUNet
from .layers.graphed import GraphedCall
from ..precision import PRECISIONS as PRECISION_VALUES
from ..precision import cast_module, parse_precision
from .layers.swinir import SwinIR, SwinTransformerBlock, WindowAttention, relative_position_index, \
    shifted_window_mask

logger = logging.getLogger(__name__)

__all__ = ["DifFaceRestorer", "difface_sample", "CARDS", "create", "unet_flops_per_face", "UNET_CONFIG",
           "SWINIR_CONFIG", "DIFFUSION_CONFIG"]

# Released constructor arguments (configs/sample/iddpm_ffhq512_swinir.yaml; same as the manifests' constructor_kwargs).
UNET_CONFIG: dict[str, Any] = dict(
    image_size=512, in_channels=3, model_channels=32, out_channels=6, attention_resolutions=[32, 16, 8], dropout=0,
    channel_mult=[1, 2, 4, 8, 8, 16, 16], num_res_blocks=[1, 2, 2, 2, 2, 3, 4], conv_resample=True, dims=2,
    use_fp16=False, num_head_channels=64, use_scale_shift_norm=True, resblock_updown=False,
    use_new_attention_order=False)
SWINIR_CONFIG: dict[str, Any] = dict(
    img_size=64, patch_size=1, in_chans=3, embed_dim=180, depths=[6] * 8, num_heads=[6] * 8, window_size=8,
    mlp_ratio=2, sf=8, img_range=1.0, upsampler="nearest+conv", resi_connection="1conv", unshuffle=True,
    unshuffle_scale=8)
# Diffusion as sampled at release: the YAML says "250", inference_difface.py overrides it with "ddim250".
DIFFUSION_CONFIG: dict[str, Any] = dict(steps=1000, noise_schedule="linear", timestep_respacing="ddim250")
DEFAULT_STEPS = 250      # length of the DDIM respacing ("ddim250")
DDIM_STEPS = ddim_step_counts(DIFFUSION_CONFIG["steps"])  # the respacing lengths "ddimN" can have
DEFAULT_START = 100      # respaced start index at DEFAULT_STEPS (original t = 400)
DEFAULT_ETA = 0.5
DEFAULT_SEED = 12345     # the official script's seed; used for every item when no seeds are given
IM_SIZE = 512

PRECISIONS = PRECISION_VALUES  # the documented ``precision`` values (scripts/bench_gpu.py times each one)


# ---- sampling -----------------------------------------------------------------------------------------------------
def difface_sample(unet: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   estimator: Callable[[torch.Tensor], torch.Tensor], y0: torch.Tensor, *,
                   schedule: DiffusionSchedule, start_step: int, eta: float, noise: NoiseSource,
                   im_size: int = IM_SIZE, callback: StepCallback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """DifFace's aligned restoration (``sample_func_ir_aligned`` with gamma 0) on a batch.

    ``y0`` ``[B, 3, H, W]`` float32 RGB in [0, 1]; inputs not ``im_size`` square are resized with antialiased bicubic
    and the result is resized back. Returns ``(sample [B, 3, H, W] in [0, 1], im_hq [B, 3, im_size, im_size])``
    where ``im_hq`` is the clamped estimator output.
    """
    h, w = y0.shape[-2:]
    resized = (h, w) != (im_size, im_size)
    if resized:
        y0 = F.interpolate(y0, size=(im_size, im_size), mode="bicubic", antialias=True)
    im_hq = estimator(y0).float().clamp(0.0, 1.0)
    x0 = ddim_loop(unet, schedule, im_hq * 2 - 1, start_step, eta, noise, clip=True, callback=callback)
    sample = (x0 * 0.5 + 0.5).clamp(0.0, 1.0)
    if resized:
        sample = F.interpolate(sample, size=(h, w), mode="bicubic", antialias=True).clamp(0.0, 1.0)
    return sample, im_hq


def resolve_steps(start_step: int | None, steps: int | None) -> tuple[int, int]:
    """Default ``steps`` to 250 and ``start_step`` to the released start (t = 400) on that respacing: 0.4 * steps."""
    steps = DEFAULT_STEPS if steps is None else int(steps)
    if steps < 2 or steps > DIFFUSION_CONFIG["steps"]:
        raise ValueError(f"difface: steps={steps} must be in [2, {DIFFUSION_CONFIG['steps']}] (released: 250)")
    valid = DDIM_STEPS
    if steps not in valid:  # "ddimN" needs an integer stride; found here, not after the networks are loaded
        near = sorted(valid, key=lambda n: (abs(n - steps), n))[:2]
        raise ValueError(f"difface: steps={steps} is no DDIM respacing of {DIFFUSION_CONFIG['steps']} steps (the "
                         f"stride must be an integer); nearest: {', '.join(map(str, sorted(near)))} (released: 250)")
    if start_step is None:
        start_step = max(1, round(DEFAULT_START * steps / DEFAULT_STEPS))
    start_step = int(start_step)
    if not 1 <= start_step < steps:
        raise ValueError(f"difface: start step {start_step} must be in [1, {steps - 1}] for steps={steps} "
                         f"(released: start {DEFAULT_START} of {DEFAULT_STEPS})")
    return start_step, steps


class DifFaceRestorer(Restorer):
    """DifFace on aligned 512x512 faces: ``restore(images, seeds=...)`` -> ``[B, 3, 512, 512]`` in [0, 1].

    ``start_step`` (respaced index the estimate is diffused to; = number of UNet calls), ``steps`` (length of the
    DDIM respacing, ``"ddim<steps>"``) and ``eta`` (DDIM stochasticity) set the realness/fidelity trade-off.
    ``precision`` (see :mod:`restorever.precision`): ``"fp32"``; ``"fp16"``/``"bf16"`` cast the UNet's and the
    estimator's weights once and run them natively in half precision (group norms accumulate in float32 inside the
    kernel); ``"fp16-amp"``/``"bf16-amp"`` run them under per-op autocast; ``"auto"`` is ``fp16-amp`` on CUDA (like
    the released ``--use_fp16`` runs) and fp32 elsewhere. The sampler arithmetic always stays float32 (the networks'
    outputs are converted before each DDIM step). ``noise_device``: where the per-item generators live (default: the
    input's device; ``"cpu"`` gives identical noise on every machine). ``channels_last``: channels-last memory order
    for the UNet (same values). ``cuda_graph``: on CUDA, capture one UNet call per batch shape as a CUDA graph and
    replay it for every step (the sampler loop is launch-bound at small batches); elsewhere the option does nothing.
    ``compile``: run the UNet through ``torch.compile`` (inductor, static shapes): GroupNorm, SiLU and the
    scale-shift arithmetic become fused kernels. Each new batch shape compiles once, paid by its first batch (the
    fixture UNet: 80-110 s on the project's 2-core CPU); the results equal the eager UNet's within float rounding
    (summation order), not bit for bit, so the option is part of the run's identity like every restorer option.
    Combines with ``cuda_graph``.
    """

    def __init__(self, card: ModelCard, unet: DiffusionUNet, estimator: SwinIR, *, start_step: int | None = None,
                 steps: int | None = None, eta: float | None = None, precision: str = "auto",
                 noise_device: str | None = None, channels_last: bool = False, cuda_graph: bool = False,
                 compile: bool = False):
        super().__init__(card)
        self.eta = _check_options(start_step, steps, eta, precision)
        self.start_step, self.steps = resolve_steps(start_step, steps)
        self._precision = parse_precision(precision, "difface")
        self.unet = unet.eval()
        self.estimator = estimator.eval()
        dtype = self._precision.cast_dtype
        if dtype is not None:
            cast_module(self.unet, dtype)
            cast_module(self.estimator, dtype)
        self.precision = precision
        self.noise_device = noise_device
        self.channels_last = channels_last
        self.cuda_graph = bool(cuda_graph)
        self.torch_compile = bool(compile)
        # The eager module stays self.unet (state_dict, hooks, cast_module); the compiled function shares its weights.
        self._compiled_unet = compile_module(self.unet) if self.torch_compile else None
        self._graphed = GraphedCall(self._unet_call)
        self.schedule = DiffusionSchedule.create(DIFFUSION_CONFIG["steps"], DIFFUSION_CONFIG["noise_schedule"],
                                                 f"ddim{self.steps}")

    def extra_repr(self) -> str:
        return (f"start_step={self.start_step}, steps={self.steps}, eta={self.eta}, precision={self.precision!r}, "
                f"cuda_graph={self.cuda_graph}, compile={self.torch_compile}")

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The UNet's autocast dtype on ``device`` (None: no autocast): ``auto`` and ``*-amp`` only."""
        return self._precision.autocast_dtype(device)

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        dtype = self.autocast_dtype(device)
        return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def _unet_call(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One UNet call in this restorer's precision: float32 ``x`` ``[B, 3, H, W]`` -> float32 ``[B, 6, H, W]``."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        weight_dtype = next(self.unet.parameters()).dtype
        with self._autocast(x.device):
            unet = self._compiled_unet or self.unet
            return unet(x.to(weight_dtype).contiguous(memory_format=fmt), t).float()

    def forward(self, images: torch.Tensor, *, seeds: Sequence[int] | None = None,
                noise: NoiseSource | None = None) -> torch.Tensor:
        """``images`` ``[B, 3, 512, 512]`` RGB in [0, 1] -> restored, same shape. ``noise`` overrides ``seeds``."""
        batch = images.shape[0]
        if noise is None:
            seeds = [DEFAULT_SEED] * batch if seeds is None else list(seeds)
            if len(seeds) != batch:
                raise ValueError(f"difface: got {len(seeds)} seeds for {batch} images (one per image)")
            noise = PerItemNoise(seeds, self.noise_device)
        unet = self._graphed if self.cuda_graph else self._unet_call

        def estimator(y: torch.Tensor) -> torch.Tensor:
            weight_dtype = next(self.estimator.parameters()).dtype
            with self._autocast(images.device):
                return self.estimator(y.to(weight_dtype)).float()

        sample, _ = difface_sample(unet, estimator, images.float(), schedule=self.schedule,
                                   start_step=self.start_step, eta=self.eta, noise=noise,
                                   im_size=self.unet.config["image_size"])
        return sample.to(images.dtype)

    def flops_per_face(self) -> float:
        """FLOPs (2 x multiply-accumulates) per restored face at this restorer's settings, estimator included."""
        return unet_flops_per_face(self.unet.config, self.start_step, self.steps,
                                   estimator_config=self.estimator.config)


# ---- checkpoint filter (key remapping) ----------------------------------------------------------------------------
def swinir_checkpoint_filter(state_dict: Mapping[str, torch.Tensor], model: SwinIR) -> dict[str, torch.Tensor]:
    """Fill in the derived buffers (``relative_position_index``, ``attn_mask``) when a file lacks them.

    The official class saves them, an older one may not (difface.md §8); they are functions of window size, shift
    and resolution, so freshly computed values stand in for missing ones. Everything else must match strictly.
    """
    out = dict(state_dict)
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, WindowAttention) and prefix + "relative_position_index" not in out:
            out[prefix + "relative_position_index"] = relative_position_index(module.ws)
        if isinstance(module, SwinTransformerBlock) and module.shift and prefix + "attn_mask" not in out:
            res = module.resolution
            out[prefix + "attn_mask"] = shifted_window_mask(res, res, module.ws, module.shift)
    return out


def _build_loaded(cls: type, config: Mapping[str, Any], path: Path, role: str,
                  device: str | torch.device) -> torch.nn.Module:
    """Build ``cls(**config)`` and fill it from ``path``: strict keys and shapes, weights-only, float32.

    The module is built on the meta device (no random init, no second copy of ~640 MB) and adopts the loaded
    tensors. A ``state_dict`` wrapper and a ``module.`` prefix in the file are accepted.
    """
    with torch.device("meta"):
        module = cls(**dict(config))
    state_dict = load_checkpoint(path)
    if isinstance(module, SwinIR):
        state_dict = swinir_checkpoint_filter(state_dict, module)
    # Key/shape check with a clear error, done on shape-only copies; then adopt the loaded tensors.
    try:
        load_state_dict_strict(module, {k: v.to("meta") for k, v in state_dict.items()},
                               source=f"difface {role} weights {path}")
    except CheckpointLayoutError as exc:
        other = identify_layout(state_dict)  # another backend's file (GFPGAN, CodeFormer, VQFR), or the other role's
        own = {"unet": "difface_unet", "estimator": "difface_swinir"}[role]
        if other is not None and other != own:
            hint = describe_layout(other)
            if other.startswith("difface"):
                hint = f"{hint.split(';')[0]}, given as {role}= (the unet= and estimator= files are swapped?)"
            raise CheckpointLayoutError(f"difface {role} weights {path}: {hint}") from exc
        raise
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    module.load_state_dict(state_dict, strict=True, assign=True)
    return module.to(device).eval().requires_grad_(False)


def check_weight_file(name: str, role: str, path: str | Path) -> None:
    """Build the network of one ``role`` (``unet`` or ``estimator``) of the released configuration from ``path`` on
    the CPU: its strict key, shape and dtype checks raise :class:`CheckpointLayoutError` naming the file (used by
    ``restorever weights add`` while the other file is not in place yet)."""
    if role not in CARDS[name].weights:
        raise KeyError(f"{name} has no weight file for role {role!r}")
    cls, config = (DiffusionUNet, UNET_CONFIG) if role == "unet" else (SwinIR, SWINIR_CONFIG)
    _build_loaded(cls, config, Path(path), role, "cpu")


# ---- cards ----------------------------------------------------------------------------------------------------------
_RELEASE = "https://github.com/zsyOAOA/DifFace/releases/download/V1.0/"
_LICENSE = "NTU S-Lab License 1.0 (non-commercial use and redistribution only)"
_PAPER = "https://arxiv.org/abs/2212.06512"


def _cfg(**kwargs: Any) -> ModelCard:
    defaults: dict[str, Any] = dict(
        arch="difface", template="ffhq_512", input_size=IM_SIZE, stochastic=True,
        default_kwargs={"start_step": DEFAULT_START, "steps": DEFAULT_STEPS, "eta": DEFAULT_ETA,
                        "precision": "auto", "cuda_graph": False, "channels_last": False, "compile": False},
        option_specs={
            "start_step": OptionSpec("the respaced step the sampler starts from (default 0.4 x steps: 100 at the "
                                     "released 250)", minimum=1),
            "steps": OptionSpec("length of the DDIM respacing of the 1,000 training steps, one with an integer "
                                "stride (released 250)", choices=DDIM_STEPS, minimum=2, maximum=1000),
            "eta": OptionSpec("DDIM eta: 0 deterministic, 1 DDPM-like (released 0.5)", minimum=0.0, maximum=1.0),
            "precision": CAST_PRECISION,
            "cuda_graph": OptionSpec("replay the UNet step as a CUDA graph (CUDA only; same numbers, fewer launches)"),
            "channels_last": CHANNELS_LAST,
            "compile": COMPILE})
    defaults.update(kwargs)
    return ModelCard(**defaults)


CARDS: dict[str, ModelCard] = {
    "difface": _cfg(
        name="difface",
        weights={
            "unet": WeightFile(
                filename="iddpm_ffhq512_ema500000.pth", url=_RELEASE + "iddpm_ffhq512_ema500000.pth", sha256=None,
                license=_LICENSE, origin_url="https://github.com/zsyOAOA/DifFace", paper=_PAPER,
                size_bytes=None),
            "estimator": WeightFile(
                filename="swinir_restoration512_L1.pth", url=_RELEASE + "swinir_restoration512_L1.pth", sha256=None,
                license=_LICENSE, origin_url="https://github.com/zsyOAOA/DifFace", paper=_PAPER,
                size_bytes=None),
        },
        description="DifFace (TPAMI 2024): SwinIR estimate diffused to t=400, then 100 DDIM steps (eta 0.5) of an "
                    "FFHQ-512 diffusion UNet; stochastic, about 38 TFLOP per face"),
}


def _check_options(start_step: int | None, steps: int | None, eta: float | None, precision: str) -> float:
    """Validate the sampling options (before any file is read); returns eta with its default applied."""
    resolve_steps(start_step, steps)
    eta = DEFAULT_ETA if eta is None else float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"difface: eta={eta} must be in [0, 1] (released: {DEFAULT_ETA})")
    parse_precision(precision, "difface")  # raises ValueError naming the accepted values
    return eta


def _resolve_both(card: ModelCard, weights: Mapping[str, str] | None, cache_dir: str | Path | None,
                  download: bool | None) -> dict[str, Path]:
    """Both weight files, or one ``WeightsNotFoundError`` line naming every missing file with its URL."""
    weights = check_weight_roles(card.name, weights, card.weights)
    paths: dict[str, Path] = {}
    missing: list[str] = []
    for role, wf in card.weights.items():
        try:
            paths[role] = resolve_weights(card, role, explicit=weights.get(role), cache_dir=cache_dir,
                                          download=download)
        except WeightsNotFoundError as exc:
            if role in weights:  # an explicit file that does not exist: hub's message names it
                raise
            reason = " (download failed)" if "download failed" in str(exc) else ""
            missing.append(f"{role} {wf.filename} from {wf.url}{reason}")
    if missing:
        folder = get_cache_dir(cache_dir) / "weights" / card.name
        raise WeightsNotFoundError(
            f"{card.name}: weights not found: {' and '.join(missing)}; put them in {folder}, "
            f"or pass --weights unet=FILE,estimator=FILE "
            f"(weights={{'unet': FILE, 'estimator': FILE}} in Python)")
    return paths


def create(name: str, *, weights: Mapping[str, str] | None = None, device: str | torch.device = "cpu",
           start_step: int | None = None, steps: int | None = None, eta: float | None = None,
           precision: str = "auto", noise_device: str | None = None, channels_last: bool = False,
           cuda_graph: bool = False, compile: bool = False, cache_dir: str | Path | None = None,
           download: bool | None = None, pretrained: bool = True,
           unet_config: Mapping[str, Any] | None = None,
           estimator_config: Mapping[str, Any] | None = None) -> DifFaceRestorer:
    """Build the DifFace restorer with both weight files loaded strictly.

    ``weights``: ``{"unet": FILE, "estimator": FILE}`` (either may be omitted to use the cache; on the CLI
    ``--weights unet=FILE,estimator=FILE``). ``start_step``/``steps``/``eta``: see :class:`DifFaceRestorer`
    (CLI ``--difface-start``, ``--difface-steps``, ``--difface-eta``). ``unet_config``/``estimator_config`` override
    entries of the released constructor arguments (reduced sizes for tests and CPU benchmarks, e.g.
    ``unet_config={"image_size": 128}``). ``pretrained=False`` skips the weights (random init; for benchmarks).
    Raises ``WeightsNotFoundError`` naming both files and their URLs when they cannot be found.

    Example:
        >>> r = create("difface", weights={"unet": "iddpm_ffhq512_ema500000.pth",
        ...                                "estimator": "swinir_restoration512_L1.pth"}, device="cuda")
        >>> out = r.restore(faces, seeds=[0, 1])
    """
    card = CARDS[name]
    eta = _check_options(start_step, steps, eta, precision)
    unet_cfg = {**UNET_CONFIG, **(unet_config or {})}
    estimator_cfg = {**SWINIR_CONFIG, **(estimator_config or {})}
    if pretrained:
        paths = _resolve_both(card, weights, cache_dir, download)
        unet = _build_loaded(DiffusionUNet, unet_cfg, paths["unet"], "unet", device)
        estimator = _build_loaded(SwinIR, estimator_cfg, paths["estimator"], "estimator", device)
        weight_files = {role: (str(path), sha256_file(path)) for role, path in paths.items()}
    else:
        if weights:
            raise ValueError(f"{name}: weights given with pretrained=False; drop one of them")
        unet = DiffusionUNet(**unet_cfg).to(device).eval().requires_grad_(False)
        estimator = SwinIR(**estimator_cfg).to(device).eval().requires_grad_(False)
        weight_files = {role: ("random-init", None) for role in card.weights}
    restorer = DifFaceRestorer(card, unet, estimator, start_step=start_step, steps=steps, eta=eta,
                               precision=precision, noise_device=noise_device, channels_last=channels_last,
                               cuda_graph=cuda_graph, compile=compile)
    restorer.weight_files = weight_files  # {role: (path, sha256)}: the pipeline's cache keys and results.json
    if channels_last:
        restorer.unet.to(memory_format=torch.channels_last)
    return restorer


# ---- compute --------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _forward_flops(kind: str, config_json: str, image_size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    config = json.loads(config_json)
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = DiffusionUNet(**config) if kind == "unet" else SwinIR(**config)
        x = torch.empty(1, 3, image_size, image_size)
        with FlopCounterMode(display=False) as counter:
            model(x, torch.zeros(1, dtype=torch.int64)) if kind == "unet" else model(x)
    return float(counter.get_total_flops())


def unet_flops_per_face(config: Mapping[str, Any] | None = None, start_step: int | None = None,
                        steps: int | None = None, *, image_size: int | None = None,
                        estimator_config: Mapping[str, Any] | None = SWINIR_CONFIG) -> float:
    """FLOPs (2 x MACs: convolutions, linears, attention matmuls) to restore one face.

    ``start_step`` UNet forwards (the default 100 at ``steps=250``) plus one estimator forward (pass
    ``estimator_config=None`` to leave it out). Counted with ``torch.utils.flop_counter`` on the meta device, so it
    is exact for the architecture and costs no memory. Released defaults: 100 x 378.3 + 181.5 GFLOP = 38.0 TFLOP.
    """
    cfg = dict(UNET_CONFIG if config is None else config)
    size = int(image_size or cfg["image_size"])
    calls, _ = resolve_steps(start_step, steps)
    total = calls * _forward_flops("unet", json.dumps(cfg, sort_keys=True), size)
    if estimator_config is not None:
        total += _forward_flops("swinir", json.dumps(dict(estimator_config), sort_keys=True), size)
    return total

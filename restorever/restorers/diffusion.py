"""Gaussian diffusion as DifFace runs it at inference: schedule, respacing, ``q_sample`` and the reverse steps.

Facts from ``shared/reference/difface.md`` §4 (improved-DDPM conventions, eps prediction, learned-range variance).
All tables are float64 (on the CPU); each coefficient is gathered per batch item and cast to float32 *before* it
multiplies a tensor, as the official code does, so float32 results match it to rounding.

Timesteps: ``t`` arguments are *respaced* indices ``0 <= t < num_timesteps``; ``timestep_map[t]`` is the original
(0..999) step the network is called with. Images live in [-1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import torch

__all__ = [
    "DiffusionSchedule", "space_timesteps", "linear_betas", "NoiseSource", "PerItemNoise", "RecordedNoise",
    "ddim_loop",
]


def linear_betas(num_steps: int = 1000) -> torch.Tensor:
    """The linear schedule of DDPM, rescaled to ``num_steps``: float64 ``[num_steps]`` from 1e-4 to 0.02."""
    scale = 1000.0 / num_steps
    start, stop = scale * 1e-4, scale * 0.02
    betas = torch.arange(num_steps, dtype=torch.float64) * ((stop - start) / (num_steps - 1)) + start
    betas[-1] = stop  # numpy.linspace's arithmetic, so the tables match the official ones to the last bit
    return betas


def space_timesteps(num_steps: int, respacing: str | Sequence[int]) -> list[int]:
    """Original steps kept by a respacing, sorted.

    ``"ddimN"``: ``range(0, num_steps, stride)`` with the integer stride that gives exactly N steps (DifFace's
    inference uses ``"ddim250"``: 0, 4, ..., 996). ``"N"`` or ``"N1,N2,..."``: the sections of equal size, each
    strided evenly with rounding (``"250"`` gives 0, 4, ..., 999). Empty string or ``None``: no respacing.
    """
    if not respacing:
        return list(range(num_steps))
    if isinstance(respacing, str) and respacing.startswith("ddim"):
        count = int(respacing[4:])
        for stride in range(1, num_steps):
            if len(range(0, num_steps, stride)) == count:
                return list(range(0, num_steps, stride))
        raise ValueError(f"respacing {respacing!r}: no integer stride gives exactly {count} of {num_steps} steps")
    counts = [int(c) for c in respacing.split(",")] if isinstance(respacing, str) else [int(c) for c in respacing]
    size_per, extra = divmod(num_steps, len(counts))
    start, steps = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"respacing {respacing!r}: cannot divide a section of {size} steps into {count}")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        steps += [start + round(j * stride) for j in range(count)]
        start += size
    return sorted(set(steps))


def ddim_step_counts(num_steps: int) -> tuple[int, ...]:
    """The ``N`` for which ``"ddimN"`` exists: the lengths of ``range(0, num_steps, stride)`` for integer strides
    (62 values for 1,000 training steps: ..., 100, 125, 143, 167, 200, 250, 334, 500, 1000), ascending."""
    return tuple(sorted({len(range(0, num_steps, stride)) for stride in range(1, num_steps)}))


_TABLES = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next", "sqrt_alphas_cumprod",
           "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
           "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
           "posterior_mean_coef1", "posterior_mean_coef2", "log_betas")


@dataclass(frozen=True, eq=False)
class DiffusionSchedule:
    """Float64 tables ``[T]`` of a (respaced) Gaussian diffusion; build with :meth:`create`."""

    timestep_map: torch.Tensor  # int64 [T]: respaced index -> original step
    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    alphas_cumprod_next: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    log_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor
    log_betas: torch.Tensor
    _on_device: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _gather(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` cast to float32, shaped ``[B, 1, ..., 1]`` on ``like``'s device (tables cached per device)."""
        key = str(like.device)
        if key not in self._on_device:
            self._on_device[key] = {n: getattr(self, n).to(torch.float32).to(like.device) for n in _TABLES}
        return self._on_device[key][name][t.to(like.device)].view(-1, *([1] * (like.ndim - 1)))

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    @classmethod
    def from_betas(cls, betas: torch.Tensor, timestep_map: torch.Tensor | None = None) -> "DiffusionSchedule":
        """All derived tables from ``betas`` (float64 ``[T]``)."""
        betas = betas.to(torch.float64)
        if betas.ndim != 1 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must be a 1-D tensor with values in (0, 1]")
        n = betas.shape[0]
        alphas = 1.0 - betas
        ac = torch.cumprod(alphas, dim=0)
        one = torch.ones(1, dtype=torch.float64)
        ac_prev = torch.cat([one, ac[:-1]])
        ac_next = torch.cat([ac[1:], torch.zeros(1, dtype=torch.float64)])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        return cls(
            timestep_map=torch.arange(n) if timestep_map is None else timestep_map.to(torch.int64),
            betas=betas, alphas_cumprod=ac, alphas_cumprod_prev=ac_prev, alphas_cumprod_next=ac_next,
            sqrt_alphas_cumprod=ac.sqrt(), sqrt_one_minus_alphas_cumprod=(1.0 - ac).sqrt(),
            log_one_minus_alphas_cumprod=(1.0 - ac).log(), sqrt_recip_alphas_cumprod=(1.0 / ac).sqrt(),
            sqrt_recipm1_alphas_cumprod=(1.0 / ac - 1).sqrt(), posterior_variance=post_var,
            posterior_log_variance_clipped=torch.cat([post_var[1:2], post_var[1:]]).log(),
            posterior_mean_coef1=betas * ac_prev.sqrt() / (1.0 - ac),
            posterior_mean_coef2=(1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
            log_betas=betas.log(),
        )

    @classmethod
    def create(cls, steps: int = 1000, noise_schedule: str = "linear",
               timestep_respacing: str | Sequence[int] | None = "ddim250") -> "DiffusionSchedule":
        """The schedule DifFace samples with: ``steps`` original steps, ``linear`` betas, respaced.

        Respaced betas are ``1 - abar[map[i]] / abar[map[i-1]]`` (``abar[map[-1]] = 1``); every other table is then
        recomputed from them.
        """
        if noise_schedule != "linear":
            raise ValueError(f"noise_schedule {noise_schedule!r} is not supported (DifFace uses 'linear')")
        base = linear_betas(steps)
        kept = space_timesteps(steps, timestep_respacing or "")
        ac = torch.cumprod(1.0 - base, dim=0)
        new_betas, last = [], torch.tensor(1.0, dtype=torch.float64)
        for i in kept:
            new_betas.append(1 - ac[i] / last)
            last = ac[i]
        return cls.from_betas(torch.stack(new_betas), torch.tensor(kept, dtype=torch.int64))

    # ---- forward process -------------------------------------------------------------------------------------
    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample ``x_t ~ q(x_t | x_0)``: ``sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise``."""
        return (self._gather("sqrt_alphas_cumprod", t, x_start) * x_start
                + self._gather("sqrt_one_minus_alphas_cumprod", t, x_start) * noise)

    # ---- reverse process -------------------------------------------------------------------------------------
    def predict_xstart(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, clip: bool = True) -> torch.Tensor:
        """``x_0 = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps``, clamped to [-1, 1] when ``clip``."""
        x0 = (self._gather("sqrt_recip_alphas_cumprod", t, x_t) * x_t
              - self._gather("sqrt_recipm1_alphas_cumprod", t, x_t) * eps)
        return x0.clamp(-1, 1) if clip else x0

    def p_mean_variance(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                        clip: bool = True) -> dict[str, torch.Tensor]:
        """Posterior mean and learned-range variance from a ``[B, 2C, ...]`` output (eps, variance value in [-1, 1]).

        Returns ``mean``, ``variance``, ``log_variance``, ``pred_xstart`` (clamped when ``clip``) and ``pred_noise``.
        """
        channels = x_t.shape[1]
        if model_output.shape[1] != 2 * channels:
            raise ValueError(f"model output has {model_output.shape[1]} channels, expected {2 * channels} "
                             "(noise and learned variance)")
        eps, var_values = model_output[:, :channels], model_output[:, channels:]
        min_log = self._gather("posterior_log_variance_clipped", t, x_t)
        max_log = self._gather("log_betas", t, x_t)
        frac = (var_values + 1) / 2
        log_variance = frac * max_log + (1 - frac) * min_log
        x0 = self.predict_xstart(x_t, t, eps, clip)
        mean = (self._gather("posterior_mean_coef1", t, x_t) * x0
                + self._gather("posterior_mean_coef2", t, x_t) * x_t)
        return {"mean": mean, "variance": torch.exp(log_variance), "log_variance": log_variance,
                "pred_xstart": x0, "pred_noise": eps}

    def ddim_sigma(self, t: torch.Tensor, eta: float, like: torch.Tensor) -> torch.Tensor:
        """DDIM noise scale ``eta * sqrt((1-abar_prev)/(1-abar)) * sqrt(1 - abar/abar_prev)`` in float32."""
        ab = self._gather("alphas_cumprod", t, like)
        ab_prev = self._gather("alphas_cumprod_prev", t, like)
        return eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)

    def ddim_step(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, eta: float,
                  noise: torch.Tensor | None, clip: bool = True) -> dict[str, torch.Tensor]:
        """One DDIM step as DifFace runs it: ``{"sample", "pred_xstart"}``.

        The direction term uses the network's raw eps (not an eps recomputed from the clipped ``x_0``, as openai's
        code does). ``noise`` may be None when ``eta == 0`` or ``t == 0`` everywhere (it is multiplied by zero).
        """
        channels = x_t.shape[1]
        eps = model_output[:, :channels]
        x0 = self.predict_xstart(x_t, t, eps, clip)
        ab_prev = self._gather("alphas_cumprod_prev", t, x_t)
        sigma = self.ddim_sigma(t, eta, x_t)
        sample = x0 * torch.sqrt(ab_prev) + torch.sqrt(1 - ab_prev - sigma ** 2) * eps
        if noise is not None:
            nonzero = (t != 0).to(device=x_t.device, dtype=torch.float32).view(-1, *([1] * (x_t.ndim - 1)))
            sample = sample + nonzero * sigma * noise
        return {"sample": sample, "pred_xstart": x0}

    def p_sample_step(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                      clip: bool = True) -> dict[str, torch.Tensor]:
        """One ancestral (DDPM) step with the learned-range variance: ``{"sample", "pred_xstart"}``."""
        out = self.p_mean_variance(model_output, x_t, t, clip)
        nonzero = (t != 0).to(device=x_t.device, dtype=torch.float32).view(-1, *([1] * (x_t.ndim - 1)))
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}


class NoiseSource(Protocol):
    """Supplies the Gaussian draws of one sampling run: ``draw(index, like)`` returns a tensor shaped like ``like``.

    Index 0 is the draw for ``q_sample`` at the start step; index ``k >= 1`` the draw of the k-th reverse step.
    """

    def draw(self, index: int, like: torch.Tensor) -> torch.Tensor: ...


class PerItemNoise:
    """Noise for item ``i`` comes only from a ``torch.Generator`` seeded with ``seeds[i]``.

    Draws happen in index order, one ``[C, H, W]`` tensor per item per index, so an item's noise does not depend on
    the batch it is in. The generator lives on ``device`` (default: the tensor's device); CPU and CUDA generators
    give different streams, so pass ``device="cpu"`` for noise that is identical on every machine.
    """

    def __init__(self, seeds: Sequence[int], device: str | torch.device | None = None):
        self.seeds = [int(s) for s in seeds]
        self.device = None if device is None else torch.device(device)
        self._generators: list[torch.Generator] | None = None

    def draw(self, index: int, like: torch.Tensor) -> torch.Tensor:
        if like.shape[0] != len(self.seeds):
            raise ValueError(f"noise: {len(self.seeds)} seeds for a batch of {like.shape[0]}")
        device = self.device or like.device
        if self._generators is None:
            self._generators = [torch.Generator(device=device).manual_seed(s) for s in self.seeds]
        shape = tuple(like.shape[1:])
        parts = [torch.randn(shape, generator=g, device=device, dtype=torch.float32) for g in self._generators]
        return torch.stack(parts).to(device=like.device, dtype=like.dtype)


class RecordedNoise:
    """Replays recorded draws: ``first`` for index 0, ``steps[k - 1]`` for index ``k`` (for reproducing fixtures)."""

    def __init__(self, first: torch.Tensor, steps: Sequence[torch.Tensor] | torch.Tensor):
        self.first, self.steps = first, steps

    def draw(self, index: int, like: torch.Tensor) -> torch.Tensor:
        noise = self.first if index == 0 else self.steps[index - 1]
        return noise.to(device=like.device, dtype=like.dtype)


ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor, dict], None]


def ddim_loop(model: ModelFn, schedule: DiffusionSchedule, x_start: torch.Tensor, start_step: int, eta: float,
              noise: NoiseSource, *, clip: bool = True, callback: StepCallback | None = None) -> torch.Tensor:
    """DifFace's diffused-estimator sampling: noise ``x_start`` to ``start_step``, then DDIM down to 0.

    ``x_start`` ``[B, C, H, W]`` in [-1, 1] (the estimator's output); ``model(x, t_original)`` returns
    ``[B, 2C, H, W]`` float32. Reproduces the official off-by-one: ``x`` is noised to respaced index ``start_step``
    but the first reverse call treats it as index ``start_step - 1``, so there are exactly ``start_step`` network
    calls. ``callback(i, x_in, out)`` is called after each step ``i`` (descending). Returns ``x_0`` in [-1, 1].
    """
    if not 1 <= start_step < schedule.num_timesteps:
        raise ValueError(f"start step {start_step} must be in [1, {schedule.num_timesteps - 1}] "
                         f"for a {schedule.num_timesteps}-step schedule")
    batch, device = x_start.shape[0], x_start.device
    t_start = torch.full((batch,), start_step, dtype=torch.int64, device=device)
    x = schedule.q_sample(x_start, t_start, noise.draw(0, x_start))
    timestep_map = schedule.timestep_map.to(device)
    for k, i in enumerate(range(start_step - 1, -1, -1), start=1):
        t = torch.full((batch,), i, dtype=torch.int64, device=device)
        out = model(x, timestep_map[t]).float()
        step_noise = noise.draw(k, x) if (eta != 0 and i != 0) else None
        result = schedule.ddim_step(out, x, t, eta, step_noise, clip)
        if callback is not None:
            callback(i, x, result)
        x = result["sample"]
    return x

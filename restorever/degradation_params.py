"""Degradation parameters: the presets' sampling rules and the per-item parameters drawn from a stable hash.

Parameters are sampled per item from a SHA-256 hash of ``(seed, scale, item_id)`` -- never Python's ``hash`` and
never a shared random stream -- so the same item gets the same parameters and the same noise seed in any batch,
process or run. The presets and the pipeline they feed are described in :mod:`restorever.degradation`, which
re-exports every public name here.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .errors import RestoreverError, unknown_name

__all__ = ["DegradationError", "DegradationParams", "DegradationPreset", "PRESETS", "get_preset",
           "list_degradations", "sample_params"]

_HASH_VERSION = "restorever.degradation/1"


class DegradationError(RestoreverError, ValueError):
    """Degradation parameters that cannot be used (scale too large, malformed records)."""


# ----------------------------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class _Dist:
    """A 1-D sampling rule: ``choice`` over values, ``uniform`` on [lo, hi), or ``randint`` on [lo, hi]."""

    kind: str
    values: tuple[float, ...]

    def draw(self, u: float) -> float:
        """Map a uniform ``u`` in [0, 1) to a value (inverse CDF, so one hash value gives one draw)."""
        if self.kind == "choice":
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        lo, hi = self.values
        if self.kind == "uniform":
            return lo + u * (hi - lo)
        if self.kind == "randint":
            return min(int(lo + math.floor(u * (hi - lo + 1))), int(hi))
        raise ValueError(f"unknown distribution kind {self.kind!r}")

    def contains(self, v: float) -> bool:
        if self.kind == "choice":
            return any(abs(v - c) <= 1e-12 for c in self.values)
        return self.values[0] <= v <= self.values[1]

    def describe(self) -> Any:
        if self.kind == "choice":
            return list(self.values)
        return {self.kind: list(self.values)}


def _choice(*values: float) -> _Dist:
    return _Dist("choice", tuple(float(v) for v in values))


def _uniform(lo: float, hi: float) -> _Dist:
    return _Dist("uniform", (float(lo), float(hi)))


def _randint(lo: int, hi: int) -> _Dist:
    return _Dist("randint", (float(lo), float(hi)))


@dataclass(frozen=True)
class DegradationPreset:
    """Sampling rules for one named degradation.

    Attributes:
        name: registry name (``"difface-test"``).
        sigma: rule for each of the blur sigmas (pixels of the 512 input).
        theta: rule for the kernel angle (radians) of anisotropic kernels.
        iso_prob: probability of an isotropic kernel.
        noise: rule for the noise sigma in 0-255 units.
        jpeg: rule for the JPEG quality (integers).
        scale: rule used when the caller passes ``scale=None``.
        kernel_size: blur kernel size (41 everywhere in the references).
        source: where the numbers come from.
        paper: the paper of the method whose degradation this is (a URL; a run's References cite it).
    """

    name: str
    sigma: _Dist
    theta: _Dist
    iso_prob: float
    noise: _Dist
    jpeg: _Dist
    scale: _Dist
    kernel_size: int = 41
    source: str = ""
    paper: str = ""

    def describe(self) -> dict[str, Any]:
        """JSON-able summary of the rules (``restorever degradations`` prints it)."""
        return {
            "name": self.name, "sigma": self.sigma.describe(), "theta": self.theta.describe(),
            "iso_prob": self.iso_prob, "noise": self.noise.describe(), "jpeg": self.jpeg.describe(),
            "scale": self.scale.describe(), "kernel_size": self.kernel_size, "source": self.source,
            "paper": self.paper,
        }


_THETA_GRID = _choice(0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
_THETA_ANY = _uniform(-math.pi, math.pi)
_DIFFACE_PAPER = "https://arxiv.org/abs/2212.06512"

PRESETS: dict[str, DegradationPreset] = {
    p.name: p
    for p in (
        DegradationPreset(
            "difface-test", sigma=_choice(2, 4, 6, 8, 10, 12, 14), theta=_THETA_GRID, iso_prob=0.0,
            noise=_choice(1, 5, 10, 15, 20), jpeg=_choice(30, 40, 50, 60, 70), scale=_choice(4, 8, 16, 24, 30),
            source="DifFace make_testing_data.py, ICLR'23 grid (one grid cell drawn per item)", paper=_DIFFACE_PAPER,
        ),
        DegradationPreset(
            "difface-journal", sigma=_choice(4, 8, 12, 16), theta=_THETA_GRID, iso_prob=0.0,
            noise=_choice(1, 5, 10, 15, 20), jpeg=_choice(30, 40, 50, 60, 70),
            scale=_choice(4, 8, 12, 16, 20, 24, 28, 32, 36, 40),
            source="DifFace make_testing_data.py, journal grid (one grid cell drawn per item)", paper=_DIFFACE_PAPER,
        ),
        DegradationPreset(
            "gfpgan-v1", sigma=_uniform(0.1, 10), theta=_THETA_ANY, iso_prob=0.5, noise=_uniform(0, 20),
            jpeg=_randint(60, 100), scale=_uniform(0.8, 8),
            source="GFPGAN options/train_gfpgan_v1.yml (colour jitter and grey not applied)",
            paper="https://arxiv.org/abs/2101.04061",
        ),
        DegradationPreset(
            "vqfr-v2", sigma=_uniform(1, 15), theta=_THETA_ANY, iso_prob=0.5, noise=_uniform(0, 20),
            jpeg=_randint(30, 90), scale=_uniform(1, 30),
            source="VQFR options/train/VQFR/train_vqfr_v2_B16_200K.yml", paper="https://arxiv.org/abs/2205.06803",
        ),
        DegradationPreset(
            "codeformer-s2", sigma=_uniform(1, 15), theta=_THETA_ANY, iso_prob=0.5, noise=_uniform(0, 20),
            jpeg=_randint(30, 80), scale=_uniform(4, 30),
            source="CodeFormer options/CodeFormer_stage2.yml", paper="https://arxiv.org/abs/2206.11253",
        ),
    )
}


def list_degradations() -> list[str]:
    """Names of the degradation presets."""
    return sorted(PRESETS)


def get_preset(name: str) -> DegradationPreset:
    """The named preset; an unknown name raises :class:`UnknownNameError` (a ``KeyError``) with a hint."""
    try:
        return PRESETS[name]
    except KeyError:
        raise unknown_name("degradation", name, list_degradations()) from None


# ------------------------------------------------------------------------------------------------------ params
def _scale_key(scale: float | None) -> str:
    if scale is None:
        return "sampled"
    s = float(scale)
    return str(int(s)) if s.is_integer() else repr(s)


def _hash_uniforms(seed: int, scale: float | None, item_id: str, names: Iterable[str]) -> dict[str, float]:
    """Independent uniforms in [0, 1) per name, from SHA-256 of (version, seed, scale, item id, name)."""
    base = f"{_HASH_VERSION}|seed={int(seed)}|scale={_scale_key(scale)}|item={item_id}|"
    out = {}
    for name in names:
        digest = hashlib.sha256((base + name).encode("utf-8")).digest()
        out[name] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


def _hash_seed(seed: int, scale: float | None, item_id: str) -> int:
    base = f"{_HASH_VERSION}|seed={int(seed)}|scale={_scale_key(scale)}|item={item_id}|noise"
    return int.from_bytes(hashlib.sha256(base.encode("utf-8")).digest()[:8], "big") >> 1  # fits int64


_FIELDS = ("scale", "sigma_x", "sigma_y", "theta", "noise_sigma", "jpeg_quality", "noise_seed")


@dataclass(eq=False)
class DegradationParams:
    """Per-item degradation parameters (kornia style: one 1-D CPU tensor per parameter, length ``B``).

    Attributes:
        item_ids: the ids the parameters were drawn for.
        preset: preset name.
        seed: the run seed.
        scale: float64 down-sampling factor ``s`` (LR size ``int(H // s)``).
        sigma_x, sigma_y: float64 kernel sigmas in input pixels; theta: float64 radians.
        noise_sigma: float64, 0-255 units.
        jpeg_quality: int64 in [0, 100].
        noise_seed: int64 seed of the item's CPU noise generator.
        kernel_size: blur kernel size.
    """

    item_ids: list[str]
    preset: str
    seed: int
    scale: torch.Tensor
    sigma_x: torch.Tensor
    sigma_y: torch.Tensor
    theta: torch.Tensor
    noise_sigma: torch.Tensor
    jpeg_quality: torch.Tensor
    noise_seed: torch.Tensor
    kernel_size: int = 41

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        for name in _FIELDS:
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.shape != (n,):
                raise ValueError(f"DegradationParams.{name} must be a tensor of shape ({n},), got {t!r}.")

    def __len__(self) -> int:
        return len(self.item_ids)

    def __getitem__(self, index: int | slice | Sequence[int]) -> "DegradationParams":
        """Subset as a new ``DegradationParams`` (an int gives a length-1 subset)."""
        if isinstance(index, slice):
            idx = list(range(len(self)))[index]
        elif isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.dim() == 0):
            idx = [int(index)]
        else:
            idx = [int(i) for i in index]
        sel = torch.as_tensor(idx, dtype=torch.long)
        return DegradationParams(
            [self.item_ids[i] for i in idx], self.preset, self.seed,
            *(getattr(self, f).index_select(0, sel) for f in _FIELDS), kernel_size=self.kernel_size,
        )

    @staticmethod
    def cat(parts: Sequence["DegradationParams"]) -> "DegradationParams":
        """Concatenate parameter sets of the same preset, seed and kernel size."""
        if not parts:
            raise ValueError("DegradationParams.cat needs at least one part.")
        first = parts[0]
        for p in parts[1:]:
            if (p.preset, p.seed, p.kernel_size) != (first.preset, first.seed, first.kernel_size):
                raise ValueError("Cannot concatenate DegradationParams of different presets, seeds or kernel sizes.")
        return DegradationParams(
            [i for p in parts for i in p.item_ids], first.preset, first.seed,
            *(torch.cat([getattr(p, f) for p in parts]) for f in _FIELDS), kernel_size=first.kernel_size,
        )

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per item (what a run stores next to the degraded images)."""
        recs = []
        for i, item in enumerate(self.item_ids):
            scale = float(self.scale[i])
            recs.append({
                "item_id": item, "preset": self.preset, "seed": int(self.seed),
                "scale": int(scale) if scale.is_integer() else scale,
                "sigma_x": float(self.sigma_x[i]), "sigma_y": float(self.sigma_y[i]), "theta": float(self.theta[i]),
                "noise_sigma": float(self.noise_sigma[i]), "jpeg_quality": int(self.jpeg_quality[i]),
                "noise_seed": int(self.noise_seed[i]), "kernel_size": int(self.kernel_size),
            })
        return recs

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]]) -> "DegradationParams":
        """Rebuild parameters from :meth:`to_records` output (to replay a stored run)."""
        if not records:
            raise DegradationError("from_records got no records.")
        try:
            f64 = {k: torch.tensor([float(r[k]) for r in records], dtype=torch.float64)
                   for k in ("scale", "sigma_x", "sigma_y", "theta", "noise_sigma")}
            i64 = {k: torch.tensor([int(r[k]) for r in records], dtype=torch.int64)
                   for k in ("jpeg_quality", "noise_seed")}
            return cls([str(r["item_id"]) for r in records], str(records[0]["preset"]), int(records[0]["seed"]),
                       kernel_size=int(records[0].get("kernel_size", 41)), **f64, **i64)
        except KeyError as exc:
            raise DegradationError(f"Degradation record is missing the field {exc.args[0]!r}.") from None



def sample_params(preset: DegradationPreset, item_ids: Sequence[str], scale: float | None,
                  seed: int) -> DegradationParams:
    """Draw ``preset``'s parameters for each item from a stable hash of ``(seed, scale, item_id)``.

    Args:
        item_ids: stable ids (e.g. ``"Aaron_Peirsol/Aaron_Peirsol_0001"``); duplicates get equal parameters.
        scale: the down-sampling factor for every item, or ``None`` to draw it from the preset.
        seed: run seed (an int).
    """
    if isinstance(item_ids, str):
        raise TypeError("item_ids must be a sequence of ids, not one string.")
    if scale is not None and not float(scale) > 0:
        raise DegradationError(f"scale must be positive, got {scale}.")
    p = preset
    cols: dict[str, list] = {f: [] for f in _FIELDS}
    ids = [str(i) for i in item_ids]
    for item in ids:
        u = _hash_uniforms(seed, scale, item, ("scale", "iso", "sigma_x", "sigma_y", "theta", "noise", "jpeg"))
        sx = p.sigma.draw(u["sigma_x"])
        iso = u["iso"] < p.iso_prob
        cols["scale"].append(float(scale) if scale is not None else p.scale.draw(u["scale"]))
        cols["sigma_x"].append(sx)
        cols["sigma_y"].append(sx if iso else p.sigma.draw(u["sigma_y"]))
        cols["theta"].append(0.0 if iso else p.theta.draw(u["theta"]))
        cols["noise_sigma"].append(p.noise.draw(u["noise"]))
        cols["jpeg_quality"].append(int(p.jpeg.draw(u["jpeg"])))
        cols["noise_seed"].append(_hash_seed(seed, scale, item))
    tensors = {f: torch.tensor(v, dtype=torch.int64 if f in ("jpeg_quality", "noise_seed") else torch.float64)
               for f, v in cols.items()}
    return DegradationParams(ids, p.name, int(seed), kernel_size=p.kernel_size, **tensors)

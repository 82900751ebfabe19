"""The attribute re-weighting module (after the APR network of Lin et al., "Improving person re-identification by
attribute and identity learning", Pattern Recognition 2019).

Input: the concatenated attribute probabilities ``a`` ``[N, K]`` (gender then age groups, see
:class:`~restorever.attributes.groups.AttributeSchema`). A small MLP maps ``a`` to per-entry confidences
``c = sigmoid(MLP(a))`` and the module outputs ``a' = c * a``, so every refined entry can draw on all the others
(the correlations between attributes). Lin et al. feed ``a'`` on as a feature; here it must stay a probability per
attribute, so ``a'`` is renormalised within each attribute's block: ``p'_k = c_k a_k / sum_j c_j a_j``.

The last layer starts at zero, so ``c = 0.5`` everywhere and the renormalised output equals the input: an unfitted
module is the identity, and fitting starts from the probe's own predictions. ``hidden=0`` gives the single fully
connected layer of the original ARM.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from .probe import lbfgs_fit


class AttributeReweighting(nn.Module):
    """``a [N, K]`` -> ``a' = sigmoid(MLP(a)) * a`` (:meth:`forward`) and renormalised probabilities
    (:meth:`refine`). ``sizes`` is the ordered ``{attribute: classes}`` layout of ``a``."""

    def __init__(self, sizes: Mapping[str, int], hidden: int = 16):
        super().__init__()
        self.sizes = dict(sizes)
        self.hidden = int(hidden)
        k = sum(self.sizes.values())
        if hidden > 0:
            self.mlp = nn.Sequential(nn.Linear(k, hidden), nn.ReLU(), nn.Linear(hidden, k))
        else:
            self.mlp = nn.Sequential(nn.Linear(k, k))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """``a [N, K]`` -> ``sigmoid(MLP(a)) * a`` ``[N, K]`` in ``a``'s floating dtype and on ``a``'s device (the
        weights are cast and moved when they differ, so float64 input is computed in float64 by a float32 module,
        and a CPU module serves CUDA input)."""
        k = sum(self.sizes.values())
        if not a.is_floating_point() or a.ndim != 2 or a.shape[1] != k:
            raise ValueError(f"AttributeReweighting expects floating-point probabilities [N, {k}], got "
                             f"{a.dtype} {tuple(a.shape)}")
        return torch.sigmoid(self._mlp_as(a)) * a

    def _mlp_as(self, a: torch.Tensor) -> torch.Tensor:
        """``MLP(a)`` with the parameters in ``a``'s dtype and device (differentiable; the module is unchanged)."""
        params = dict(self.mlp.named_parameters())
        if all(p.dtype == a.dtype and p.device == a.device for p in params.values()):
            return self.mlp(a)
        cast = {name: p.to(device=a.device, dtype=a.dtype) for name, p in params.items()}
        return torch.func.functional_call(self.mlp, cast, (a,))

    def refine_tensor(self, a: torch.Tensor) -> dict[str, torch.Tensor]:
        weighted = self.forward(a)
        out, start = {}, 0
        for name, n in self.sizes.items():
            block = weighted[:, start:start + n]
            out[name] = block / block.sum(1, keepdim=True).clamp_min(1e-30)
            start += n
        return out

    @torch.no_grad()
    def refine(self, a: np.ndarray) -> dict[str, np.ndarray]:
        """Concatenated probabilities ``[N, K]`` -> ``{attribute: refined probabilities [N, C]}``, computed and
        returned in float64 whatever the module's dtype (each row sums to 1 to float64 precision)."""
        arr = np.asarray(a, dtype=np.float64)
        k = sum(self.sizes.values())
        if arr.ndim != 2 or arr.shape[1] != k:
            raise ValueError(f"refine: expected concatenated probabilities [N, {k}], got shape {arr.shape}")
        _check_probabilities(arr, "refine")
        return {name: v.numpy() for name, v in self.refine_tensor(torch.tensor(arr)).items()}


def _check_probabilities(a: np.ndarray, where: str) -> None:
    """``ValueError`` for NaN, infinite or negative entries: ``c * a`` renormalised would turn them into NaN or
    "probabilities" far outside [0, 1] without a sign (rows need not sum to 1: each block is renormalised)."""
    bad = ~(np.isfinite(a) & (a >= 0)).all(1)
    if bad.any():
        raise ValueError(f"{where}: attribute probabilities must be finite and >= 0; {int(bad.sum())} of {len(a)} "
                         f"rows are not (first: row {int(np.argmax(bad))})")


def fit_reweighting(a: np.ndarray, labels: Mapping[str, np.ndarray], sizes: Mapping[str, int], *, hidden: int = 16,
                    l2: float = 1e-3, max_iter: int = 200, seed: int = 0) -> AttributeReweighting:
    """Fit the module on probabilities ``a [N, K]`` (ideally out-of-fold predictions of the probe) and labels
    ``{attribute: int [N]}`` (-1 = none) by full-batch L-BFGS on the summed per-attribute cross-entropy of the
    renormalised output plus ``l2`` times the squared weights."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        module = AttributeReweighting(sizes, hidden).double()
    finally:
        torch.random.set_rng_state(state)
    at = torch.as_tensor(np.asarray(a, dtype=np.float64))
    if at.ndim != 2 or at.shape[1] != sum(module.sizes.values()):
        raise ValueError(f"fit_reweighting: expected probabilities [N, {sum(module.sizes.values())}], got "
                         f"{tuple(at.shape)}")
    _check_probabilities(at.numpy(), "fit_reweighting")
    for k in module.sizes:
        y = np.asarray(labels.get(k, np.full(len(at), -1)))
        if y.shape != (len(at),) or y.max(initial=-1) >= module.sizes[k]:
            raise ValueError(f"fit_reweighting: labels for {k} must be {len(at)} class indices in -1..."
                             f"{module.sizes[k] - 1} (-1 = none), got shape {y.shape} and largest {y.max(initial=-1)}")
    yt = {k: torch.as_tensor(np.asarray(labels[k], dtype=np.int64)) for k in module.sizes if k in labels}

    def loss():
        refined = module.refine_tensor(at)
        total = at.new_zeros(())
        for k, y in yt.items():
            m = y >= 0
            if m.any():
                total = total - torch.log(refined[k][m, y[m]].clamp_min(1e-12)).mean()
        penalty = sum((p ** 2).sum() for n, p in module.named_parameters() if n.endswith("weight"))
        return total + l2 * penalty

    lbfgs_fit(module, loss, max_iter=max_iter)
    module.eval()
    return module.float()

"""A small attribute probe over face-recognition embeddings (gender and age group heads).

The probe L2-normalises an embedding, standardises it with the training mean/std (stored as buffers), optionally
passes it through one hidden ReLU layer, and has one linear head per attribute (softmax over its classes). It is fit
by full-batch L-BFGS on the mean cross-entropy of each head (rows without a label for a head do not count for it)
plus an L2 penalty, which is deterministic for a given seed and fast on a CPU (a few thousand 128-512-D vectors).
"""
from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


class AttributeProbe(nn.Module):
    """``[N, D]`` embeddings -> ``{attribute: logits [N, C]}``."""

    def __init__(self, in_dim: int, classes: Mapping[str, int], hidden: int = 0):
        super().__init__()
        self.in_dim, self.hidden = int(in_dim), int(hidden)
        self.classes = dict(classes)
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        width = in_dim
        if hidden > 0:
            self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
            width = hidden
        else:
            self.body = nn.Identity()
        self.heads = nn.ModuleDict({a: nn.Linear(width, n) for a, n in self.classes.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self.body((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        return {a: head(h) for a, head in self.heads.items()}

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """``{attribute: probabilities [N, C]}`` as float64 numpy."""
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return {a: torch.softmax(z.double(), dim=1).numpy() for a, z in self.forward(x).items()}


def _penalty(module: nn.Module) -> torch.Tensor:
    return sum((p ** 2).sum() for n, p in module.named_parameters() if n.endswith("weight"))


def masked_cross_entropy(logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Sum over attributes of the mean cross-entropy of the labelled rows (label ``-1`` = unlabelled)."""
    total = logits[next(iter(logits))].new_zeros(())
    for a, z in logits.items():
        y = labels.get(a)
        if y is None:
            continue
        m = y >= 0
        if m.any():
            total = total + nn.functional.cross_entropy(z[m], y[m])
    return total


def lbfgs_fit(module: nn.Module, loss_fn, *, max_iter: int = 300) -> float:
    """Minimise ``loss_fn()`` over ``module``'s parameters with full-batch L-BFGS (strong Wolfe line search)."""
    opt = torch.optim.LBFGS(module.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny full-batch problem: OpenMP costs more than it saves, above all on a busy CPU
    try:
        opt.step(closure)
        with torch.no_grad():
            return float(loss_fn())
    finally:
        torch.set_num_threads(threads)


def fit_probe(x: np.ndarray, labels: Mapping[str, np.ndarray], classes: Mapping[str, int], *, hidden: int = 0,
              l2: float = 1e-3, max_iter: int = 300, seed: int = 0) -> AttributeProbe:
    """Fit an :class:`AttributeProbe` on embeddings ``x [N, D]`` and labels ``{attribute: int [N]}`` (-1 = none).

    ``l2`` multiplies the summed squared weights (biases are not penalised). A head with no labelled row is fitted
    to nothing: the penalty shrinks its weights to zero and its bias keeps the seeded initial value, so it gives
    every face the same probabilities; a warning is logged.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"fit_probe: expected embeddings [N, D] with N > 0, got {x.shape}")
    for a in classes:
        y = np.asarray(labels.get(a, np.full(len(x), -1)))
        if y.shape != (len(x),):
            raise ValueError(f"fit_probe: labels for {a} have shape {y.shape}, expected ({len(x)},)")
        if (y >= 0).sum() == 0:
            logger.warning("attribute probe: no labelled example for %s; its head is fitted to nothing (the same "
                           "probabilities for every face)", a)
        if y.max(initial=-1) >= classes[a]:
            raise ValueError(f"fit_probe: label {int(y.max())} out of range for {a} ({classes[a]} classes)")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        probe = AttributeProbe(x.shape[1], classes, hidden)
    finally:
        torch.random.set_rng_state(generator_state)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        unit = xt / xt.norm(dim=1, keepdim=True).clamp_min(1e-12)
        probe.mean.copy_(unit.mean(0))
        probe.std.copy_(unit.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones(x.shape[1]))
    yt = {a: torch.as_tensor(np.asarray(labels[a], dtype=np.int64)) for a in classes if a in labels}
    lbfgs_fit(probe, lambda: masked_cross_entropy(probe(xt), yt) + l2 * _penalty(probe), max_iter=max_iter)
    probe.eval()
    return probe

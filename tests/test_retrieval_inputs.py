"""Identification inputs and ranks: non-finite scores, embedding shapes and widths, float64 attribute
re-weighting, and mate ranks that stay exact with an IVF index (audit findings F3, F5, F12)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorever.attributes.reweighting import AttributeReweighting
from restorever.metrics.retrieval import ranks_from_scores
from restorever.retrieval import GalleryIndex, import_faiss


def _backends() -> list[str]:
    """numpy always; faiss where it is installed."""
    return ["numpy"] + (["faiss"] if import_faiss() is not None else [])


def _ivf_data(n: int = 2000, q: int = 300, d: int = 32, noise: float = 1.6, seed: int = 1):
    """Gallery ``[n, d]``, probes ``[q, d]`` far enough from their mates that many are not ranked first, mate ids
    ``[q]`` and gender codes ``[n]`` in {-1, 0, 1}."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, d)).astype(np.float32)
    mate = rng.integers(0, n, q)
    probes = g[mate] + noise * rng.normal(size=(q, d)).astype(np.float32)
    return g, probes, mate, rng.integers(-1, 2, n)


def _exact(g: np.ndarray, q: np.ndarray, mate: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Brute-force ranks ``[Q]`` (ties against the probe) over the ``allowed`` ``[Q, N]`` entries."""
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    return ranks_from_scores(qn @ gn.T, mate, allowed)


# ------------------------------------------------------------------------------------------------ F12: scores

def test_ranks_from_scores_refuses_non_finite_scores():
    """A NaN mate score gave rank 1 (rank-1 100 %, mAP 1.0); a NaN impostor never outranked the mate."""
    with pytest.raises(ValueError, match="NaN or infinite values: 1 of 2 probes"):
        ranks_from_scores(np.array([[0.9, 0.2, 0.1], [np.nan, 0.8, 0.7]]), np.array([0, 0]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ranks_from_scores(np.array([[0.5, np.nan, np.nan]]), np.array([0]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ranks_from_scores(np.array([[0.5, np.inf]]), np.array([0]))
    # an unsearched column may hold anything (-inf is the usual mask)
    searched = np.array([[True, True, False]])
    assert ranks_from_scores(np.array([[0.5, 0.7, -np.inf]]), np.array([0]), searched).tolist() == [2.0]
    assert ranks_from_scores(np.array([[0.5, 0.7, np.nan]]), np.array([0]), searched).tolist() == [2.0]


def test_ranks_from_scores_checks_shapes():
    with pytest.raises(ValueError, match=r"scores must be \[Q, N\] and mate \[Q\]"):
        ranks_from_scores(np.array([0.5, 0.7]), np.array([0]))
    with pytest.raises(ValueError, match="mate columns must be in 0..1"):
        ranks_from_scores(np.array([[0.5, 0.7]]), np.array([2]))


# ------------------------------------------------------------------------------------------------ F5: inputs

@pytest.mark.parametrize("backend", _backends())
def test_gallery_and_query_shapes_widths_and_finiteness_are_value_errors(backend):
    """A 1-D gallery or query gave numpy AxisError, a query of the wrong width a bare faiss AssertionError (numpy:
    a matmul error), and a NaN query rank k+1."""
    g = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"gallery must be \[N >= 1, D >= 1\] embeddings, got shape \(8,\)"):
        GalleryIndex(np.ones(8), backend=backend)
    nan_gallery = g.copy()
    nan_gallery[3, 1] = np.nan
    with pytest.raises(ValueError, match="gallery must be finite: 1 of 20 rows"):
        GalleryIndex(nan_gallery, backend=backend)
    index = GalleryIndex(g, backend=backend)
    with pytest.raises(ValueError, match=r"queries must be \[Q, 8\].*width D = 4 differs from the gallery's D = 8"):
        index.search(np.ones((2, 4)), 10)
    with pytest.raises(ValueError, match=r"queries must be \[Q, 8\] embeddings, got shape \(8,\)"):
        index.search(np.ones(8), 10)
    with pytest.raises(ValueError, match=r"width D = 4 differs"):
        index.full.search(np.ones((2, 4), np.float32), 10)
    nan_query = np.full((1, 8), np.nan)
    with pytest.raises(ValueError, match="queries must be finite: 1 of 1 rows"):
        index.search(nan_query, 10)
    result = index.search(g[:1], 10)
    with pytest.raises(ValueError, match="queries must be finite"):
        index.mate_ranks(nan_query, result, np.array([0]))
    with pytest.raises(ValueError, match="1 rows for 2 queries"):
        index.mate_ranks(g[:2], result, np.array([0, 1]))
    with pytest.raises(ValueError, match="built without attribute codes"):
        index.mate_ranks(g[:1], result, np.array([0]), [(frozenset({0}),)])


def _fitted_like(module: AttributeReweighting, seed: int = 0) -> AttributeReweighting:
    """``module`` with random (non-identity) weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module.eval()


def test_reweighting_forward_follows_the_input_dtype_and_refine_is_float64():
    """``forward`` refused float64 input with a dtype RuntimeError; ``refine`` returned float64 arrays computed in
    float32 (row sums 1.00000005)."""
    sizes = {"gender": 2, "age": 4}
    module = _fitted_like(AttributeReweighting(sizes, hidden=8))  # float32, as fit_reweighting returns it
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.dirichlet([1, 1], 50), rng.dirichlet([1] * 4, 50)], axis=1)
    reference = _fitted_like(AttributeReweighting(sizes, hidden=8)).double()  # same weights, float64
    with torch.no_grad():
        out64 = module(torch.tensor(a))
        out32 = module(torch.tensor(a, dtype=torch.float32))
        expected = reference(torch.tensor(a))
    assert out64.dtype == torch.float64 and out32.dtype == torch.float32
    torch.testing.assert_close(out64, expected, rtol=1e-12, atol=1e-14)
    assert next(module.parameters()).dtype == torch.float32  # the module itself is not converted
    refined = module.refine(a)
    for name, probs in refined.items():
        assert probs.dtype == np.float64
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=0, atol=1e-13)
        np.testing.assert_allclose(probs, reference.refine(a)[name], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"expected concatenated probabilities \[N, 6\], got shape \(50, 5\)"):
        module.refine(a[:, :5])


# ------------------------------------------------------------------------------------------------ F3: IVF ranks

def test_ivf_mate_ranks_equal_brute_force_exact_ranks():
    """With an IVF index a returned mate was ranked among the returned entries only (too good) and a missed one got
    max(exact, k+1) (too bad): the ranks must be the exact ones, whatever the index."""
    if import_faiss() is None:
        pytest.skip("faiss is not installed: no IVF index")
    g, probes, mate, _ = _ivf_data()
    exact = _exact(g, probes, mate)
    index = GalleryIndex(g, backend="faiss", ivf_nlist=16, nprobe=1)
    assert index.full.kind == "ivf"
    result = index.search(probes, 10)
    missed = ~(result.ids == mate[:, None]).any(1)
    assert (missed & (exact <= 10)).any()  # the approximate search misses mates that are in the exact top-10
    np.testing.assert_array_equal(index.mate_ranks(probes, result, mate), exact)
    assert index.ranks_are_exact and index.describe()["ranks"].startswith("exact")


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("mode", ["partition", "selector"])
def test_filtered_ranks_are_exact_whatever_the_index(backend, mode):
    """Filtered ranks over exactly the entries the filter allows, flat or IVF (where faiss is installed)."""
    g, probes, mate, gender = _ivf_data()
    cons = [None if i % 3 == 0 else (frozenset({i % 2}),) for i in range(len(probes))]
    allowed = np.ones((len(probes), len(g)), dtype=bool)
    for i, c in enumerate(cons):
        if c is not None:
            allowed[i] = (gender < 0) | np.isin(gender, list(c[0]))
    exact = _exact(g, probes, mate, allowed)
    assert np.isinf(exact).any()  # some mates are filtered out
    for ivf_nlist in (0, 4):
        index = GalleryIndex(g, codes={"gender": gender}, partition_by=("gender",), backend=backend,
                             ivf_nlist=ivf_nlist, nprobe=1, mode=mode)
        result = index.search(probes, 10, constraints=cons)
        if backend == "faiss" and ivf_nlist:
            kinds = {index.full.kind} | {sub.kind for _, sub in index.cells.values() if sub is not None}
            assert kinds == {"ivf"}
            missed = ~(result.ids == mate[:, None]).any(1)
            assert (missed & (exact <= 10)).any()
        np.testing.assert_array_equal(index.mate_ranks(probes, result, mate, cons), exact)
    np.testing.assert_array_equal(index.mate_ranks(probes, None, mate, cons), exact)  # the result is optional

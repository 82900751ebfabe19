"""Round 18: identification and attribute-filtered retrieval against an independent brute force.

The reference here shares no code with :mod:`restorever.retrieval` or :mod:`restorever.metrics.retrieval`: cosine in
float64 over the raw embeddings, the filter rule spelled out as loops, a rank counted from those scores (copies of
the mate's own vector tie with it; the data are checked to hold no other score within float32 noise of the mate's),
and the rates as plain means. Hard cases: duplicate gallery images, the probe's own image in the gallery, mates
filtered out, a filter that leaves nothing, people with one image, embeddings of very different norms, float16
input, faiss missing.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from restorever import retrieval
from restorever.metrics.retrieval import identification_report
from restorever.retrieval import AttributeFilter, GalleryIndex, attribute_codes, import_faiss, probe_constraints

#: float32 cosines are good to about 2e-7: a gap below this between two different gallery vectors is undecidable
NEAR = 2e-6


def _cosine(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    q = np.asarray(q, np.float64)
    g = np.asarray(g, np.float64)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T


def _rank_bounds(s: np.ndarray, g: np.ndarray, mate: np.ndarray, allowed: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` ranks: 1 + allowed entries above the mate + allowed copies of the mate's own vector (ties
    count against the probe); ``high`` adds the entries within ``NEAR`` of the mate's score, which float32 may put
    either side. ``inf`` when the mate is not allowed."""
    low, high = np.full(len(s), np.inf), np.full(len(s), np.inf)
    for i in range(len(s)):
        m = mate[i]
        if not allowed[i, m]:
            continue
        others = allowed[i] & (np.arange(s.shape[1]) != m)
        copies = others & (g == g[m]).all(1)
        near = others & ~copies & (np.abs(s[i] - s[i, m]) < NEAR)
        low[i] = 1 + (others & ~copies & ~near & (s[i] > s[i, m])).sum() + copies.sum()
        high[i] = low[i] + near.sum()
    return low, high


def _reference_ranks(s: np.ndarray, g: np.ndarray, mate: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The ranks of :func:`_rank_bounds`, for data with no undecidable near-tie (checked)."""
    low, high = _rank_bounds(s, g, mate, allowed)
    assert np.array_equal(low, high), "a near-tie the test cannot decide: choose other data"
    return low


def _reference_allowed(probe_probs: dict, gallery_probs: dict, threshold: float, tolerance: int) -> np.ndarray:
    """``[Q, N]``: the gallery entries each probe may search, by the documented rule, one entry at a time."""
    def code(p):
        return int(np.argmax(p)) if np.max(p) >= threshold else -1

    nq, n = len(probe_probs["gender"]), len(gallery_probs["gender"])
    allowed = np.ones((nq, n), dtype=bool)
    for i in range(nq):
        for j in range(n):
            for a in ("gender", "age"):
                mine, theirs = code(probe_probs[a][i]), code(gallery_probs[a][j])
                if mine < 0 or theirs < 0:
                    continue
                if (a == "gender" and mine != theirs) or (a == "age" and abs(mine - theirs) > tolerance):
                    allowed[i, j] = False
    return allowed


def _reference_report(ranks: np.ndarray, allowed: np.ndarray, plain: np.ndarray | None = None) -> dict:
    out = {"rank1": np.mean(ranks <= 1), "rank5": np.mean(ranks <= 5), "rank10": np.mean(ranks <= 10),
           "map": np.mean([0.0 if np.isinf(r) else 1.0 / r for r in ranks]),
           "cmc": [np.mean(ranks <= r) for r in range(1, 11)], "mate_filtered_out": np.mean(np.isinf(ranks)),
           "gallery_fraction": np.mean(allowed.sum(1) / allowed.shape[1])}
    if plain is not None:
        out["rank1_lost_to_filter"] = np.mean((plain == 1) & np.isinf(ranks))
        out["rank1_gained"] = np.mean((plain > 1) & (ranks == 1))
    return out


def _assert_report(got: dict, expected: dict) -> None:
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-12, err_msg=key)


def _hard_gallery(seed: int = 0):
    """40 enrolled people (one gallery image each) + 25 one-image distractors, 128-D, norms from 0.01 to 100;
    probes: 0-3 per person, one probe that is its person's gallery image itself (x 7.5), and that image also
    stored a second time in the gallery as a distractor (a duplicate)."""
    rng = np.random.default_rng(seed)
    n_people, n_distract, d = 40, 25, 128
    g = rng.normal(size=(n_people + n_distract, d)) * rng.choice([0.01, 1.0, 100.0], (n_people + n_distract, 1))
    g[n_people + 3] = g[7]  # the same photo filed under a distractor's name
    per_person = rng.integers(0, 4, n_people)
    mate = np.repeat(np.arange(n_people), per_person)
    probes = g[mate] / np.linalg.norm(g[mate], axis=1, keepdims=True) + 0.09 * rng.normal(size=(len(mate), d))
    probes = np.concatenate([probes, 7.5 * g[[7]]])
    mate = np.concatenate([mate, [7]])
    return g.astype(np.float32), probes.astype(np.float32), mate


def _probs(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {"gender": rng.dirichlet([0.4, 0.4], n), "age": rng.dirichlet([0.4] * 4, n)}


def _backends() -> list[str]:
    return ["numpy", "no-faiss"] + (["faiss"] if import_faiss() is not None else [])


@pytest.fixture
def backend(request, monkeypatch):
    """``numpy``, ``faiss``, or ``no-faiss`` (auto with faiss made unimportable: the fallback path)."""
    if request.param == "no-faiss":
        monkeypatch.setattr(retrieval, "_FAISS", False)
        monkeypatch.setattr(retrieval, "_WARNED", True)
        return "auto"
    return request.param


@pytest.mark.parametrize("backend", _backends(), indirect=True)
@pytest.mark.parametrize("mode", ["partition", "selector"])
def test_every_reported_figure_equals_an_independent_brute_force(backend, mode):
    """rank-1/5/10, CMC, mAP, the share of mates filtered out, the gallery searched, rank-1 lost and gained,
    unfiltered and filtered, on the hard gallery; the probes in float16 as well as float32."""
    g, probes, mate = _hard_gallery()
    rng = np.random.default_rng(1)
    gallery_probs, probe_probs = _probs(rng, len(g)), _probs(rng, len(probes))
    flt = AttributeFilter(("gender", "age"), threshold=0.7, age_tolerance=0)
    allowed = _reference_allowed(probe_probs, gallery_probs, 0.7, 0)
    codes = attribute_codes(gallery_probs, flt.threshold)
    cons = probe_constraints(probe_probs, flt)
    for q in (probes, probes.astype(np.float16)):
        s = _cosine(q.astype(np.float64), g)
        ref_plain = _reference_ranks(s, g, mate, np.ones_like(allowed))
        ref_filtered = _reference_ranks(s, g, mate, allowed)
        assert ref_plain[-1] == 2  # the probe that is its own gallery image ties with the duplicate
        assert np.isinf(ref_filtered).any() and (ref_filtered[np.isfinite(ref_filtered)] >= 1).all()
        plain = GalleryIndex(g, backend=backend)
        ranks = plain.mate_ranks(q, plain.search(q, 10), mate)
        np.testing.assert_array_equal(ranks, ref_plain)
        _assert_report(identification_report(ranks, searched_fraction=plain.search(q, 10).searched / plain.n),
                       _reference_report(ref_plain, np.ones_like(allowed)))
        index = GalleryIndex(g, codes=codes, partition_by=flt.attributes, backend=backend, mode=mode)
        result = index.search(q, 10, constraints=cons)
        np.testing.assert_array_equal(result.searched, allowed.sum(1))
        filtered = index.mate_ranks(q, result, mate, cons)
        np.testing.assert_array_equal(filtered, ref_filtered)
        _assert_report(identification_report(filtered, searched_fraction=result.searched / index.n,
                                             reference_ranks=ranks),
                       _reference_report(ref_filtered, allowed, ref_plain))
        # scikit-learn's average precision, one relevant entry per probe, ties resolved as one threshold
        sk = [average_precision_score(np.arange(len(g)) == m, row) for m, row in zip(mate, np.round(s, 9))]
        assert identification_report(ranks)["map"] == pytest.approx(np.mean(sk), abs=1e-12)


def test_a_duplicate_gallery_image_ties_with_its_twin_wherever_it_sits():
    """Two identical gallery vectors could score an ulp apart in one float32 matrix product (BLAS computes the
    columns at a block edge with other kernels), so the same photo filed twice beat or lost to its twin by its
    position: the probe's own image with a copy in the gallery came out rank 1 in 67 of 14,040 placements
    (128-D and 512-D galleries of 3-119 entries, the copy in every column; each time in one of the last 4).
    Ties count against the probe: rank 2 wherever the twin sits.
    The ranks do not depend on the search backend (brute force over the gallery), so numpy alone is checked."""
    rng = np.random.default_rng(0)
    for d in (128, 512):
        base = rng.normal(size=(40, d)).astype(np.float32)
        for n in range(3, 40):
            for twin in range(max(1, n - 4), n):  # where the old code went wrong: the last, partial, block
                g = base[:n].copy()
                g[twin] = g[0]
                probe = 3.0 * g[[0]]
                index = GalleryIndex(g, backend="numpy")
                assert index.mate_ranks(probe, None, np.array([0])).tolist() == [2.0], (d, n, twin)
                assert index.mate_ranks(probe, None, np.array([twin])).tolist() == [2.0], (d, n, twin)
    for _ in range(40):  # random probes: the twins stay tied whatever their score
        n, d = int(rng.integers(5, 300)), int(rng.choice([128, 512]))
        g = rng.normal(size=(n, d)).astype(np.float32)
        i, j = rng.choice(n, 2, replace=False)
        g[j] = g[i]
        q = rng.normal(size=(30, d)).astype(np.float32)
        index = GalleryIndex(g, backend="numpy")
        for mate in (i, j):
            low, high = _rank_bounds(_cosine(q, g), g, np.full(30, mate), np.ones((30, n), bool))
            ranks = index.mate_ranks(q, None, np.full(30, mate))
            assert ((low <= ranks) & (ranks <= high)).all()


def test_a_filter_that_keeps_the_mate_never_worsens_its_rank():
    """The filtered ranks are computed over a subset of the gallery (another matrix product): a mate the filter
    keeps can only move up, and a filter that allows everything gives the unfiltered ranks exactly."""
    rng = np.random.default_rng(5)
    g = rng.normal(size=(400, 256)).astype(np.float32)
    g[200:260] = g[0:60]  # many duplicates across cells
    mate = rng.integers(0, 400, 300)
    q = g[mate] + 1.2 * rng.normal(size=(300, 256)).astype(np.float32)
    codes = {"gender": rng.integers(-1, 2, 400)}
    index = GalleryIndex(g, codes=codes, partition_by=("gender",), backend="numpy")
    plain = index.mate_ranks(q, None, mate)
    everything = [(frozenset({0, 1}),)] * 300
    np.testing.assert_array_equal(index.mate_ranks(q, None, mate, everything), plain)
    cons = [(frozenset({int(c)}),) for c in rng.integers(0, 2, 300)]
    filtered = index.mate_ranks(q, None, mate, cons)
    kept = np.isfinite(filtered)
    assert kept.any() and (~kept).any() and (filtered[kept] <= plain[kept]).all()


def test_a_filter_that_empties_the_gallery_is_a_filtered_out_miss():
    """Every gallery entry is confidently female; a probe confidently male searches nothing: rank inf, a miss in
    rank-k and mAP, counted under mate_filtered_out, gallery fraction 0 for it, and rank-1 lost when the
    unfiltered search had it first."""
    g = np.eye(4, 8, dtype=np.float32) + 0.01
    q = g[[0, 1]] * 2
    gallery_probs = {"gender": np.tile([0.99, 0.01], (4, 1))}
    probe_probs = {"gender": np.array([[0.02, 0.98], [0.5, 0.5]])}
    flt = AttributeFilter(("gender",), threshold=0.9)
    index = GalleryIndex(g, codes=attribute_codes(gallery_probs, 0.9), partition_by=("gender",), backend="numpy")
    cons = probe_constraints(probe_probs, flt)
    result = index.search(q, 10, constraints=cons)
    assert result.searched.tolist() == [0, 4] and (result.ids[0] == -1).all() and np.isneginf(result.scores[0]).all()
    ranks = index.mate_ranks(q, result, np.array([0, 1]), cons)
    assert ranks[0] == np.inf and ranks[1] == 1
    report = identification_report(ranks, searched_fraction=result.searched / index.n,
                                   reference_ranks=np.array([1.0, 1.0]))
    assert report["rank1"] == 0.5 and report["map"] == 0.5 and report["mate_filtered_out"] == 0.5
    assert report["gallery_fraction"] == 0.5 and report["rank1_lost_to_filter"] == 0.5


def test_reweight_from_a_checkpoint_with_other_age_groups_is_refused(tmp_path, caplog):
    """`--reweight PATH` compared only the class counts: a module fitted on the groups 13/20/60 was applied to a
    model whose four groups are 30/50/70 (its second output read as "teenager" in one and "30-49" in the other)."""
    from restorever.attributes.groups import AgeGroups, AttributeSchema
    from restorever.attributes.predictor import FitOptions, fit_attribute_predictor
    from restorever.errors import RestoreverError
    from restorever.pipeline.identification import IdentConfig, _attribute_model, attribute_settings

    from ..attributes.test_probe_reweighting import synthetic

    x, labels, people = synthetic(n_people=12, per_person=3)
    options = FitOptions(folds=2, reweight_hidden=2, max_iter=20)
    paths = {}
    for edges in ((13, 20, 60), (30, 50, 70)):
        model, _ = fit_attribute_predictor(x, labels, people, AttributeSchema(AgeGroups.parse(list(edges))),
                                           recognizer="dlib", options=options)
        paths[edges] = str(model.save(tmp_path / f"probe{edges[0]}.pt"))
    same = IdentConfig(attribute_model=paths[(30, 50, 70)], reweight=paths[(30, 50, 70)])
    assert _attribute_model(same, attribute_settings(same, {}), [])[2] is not None
    other = IdentConfig(attribute_model=paths[(30, 50, 70)], reweight=paths[(13, 20, 60)])
    with pytest.raises(RestoreverError, match=r"its layout \(gender 2, age 4 \(13,20,60\)\) does not match the "
                                              r"attribute model's \(gender 2, age 4 \(30,50,70\)\).*--reweight none"):
        _attribute_model(other, attribute_settings(other, {}), [])


def _probabilities(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.dirichlet([1, 1], n), rng.dirichlet([1] * 4, n)], axis=1)


def test_the_reweighting_module_follows_its_input_and_refuses_what_is_not_a_probability():
    """``sigmoid(MLP(a)) * a``: shape [N, K], dtype and device of ``a``; equal to the formula computed by hand;
    NaN, infinite or negative "probabilities" (which came out as NaN, or as -5e29) and labels outside the classes
    (an IndexError inside the loss) are ValueErrors naming the problem."""
    import torch

    from restorever.attributes.reweighting import AttributeReweighting, fit_reweighting

    sizes = {"gender": 2, "age": 4}
    module = AttributeReweighting(sizes, hidden=8)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    a = _probabilities(7)
    w1, b1, w2, b2 = (p.detach().double().numpy() for p in module.mlp.parameters())
    by_hand = a / (1 + np.exp(-(np.maximum(a @ w1.T + b1, 0) @ w2.T + b2)))
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6), (torch.float16, 3e-3), (torch.bfloat16, 3e-2)):
        with torch.no_grad():
            out = module(torch.tensor(a, dtype=dtype))
        assert out.dtype == dtype and out.shape == (7, 6)
        np.testing.assert_allclose(out.double().numpy(), by_hand, rtol=tol, atol=tol)
    assert module(torch.tensor(a).to("meta")).device.type == "meta"  # computed where the input is
    assert next(module.parameters()).device.type == "cpu" and next(module.parameters()).dtype == torch.float32
    refined = module.refine(a)
    np.testing.assert_allclose(refined["age"], by_hand[:, 2:] / by_hand[:, 2:].sum(1, keepdims=True), rtol=1e-6)
    with pytest.raises(ValueError, match=r"probabilities \[N, 6\], got torch.float64 \(7, 5\)"):
        module(torch.tensor(a[:, :5]))
    for bad in (np.nan, np.inf, -0.2):
        broken = a.copy()
        broken[3, 1] = bad
        with pytest.raises(ValueError, match=r"finite and >= 0; 1 of 7 rows are not \(first: row 3\)"):
            module.refine(broken)
        with pytest.raises(ValueError, match="fit_reweighting: attribute probabilities must be finite"):
            fit_reweighting(broken, {"gender": np.zeros(7, int)}, sizes, max_iter=2)
    with pytest.raises(ValueError, match=r"labels for age must be 7 class indices in -1...3"):
        fit_reweighting(a, {"age": np.array([0, 1, 2, 3, 4, -1, 0])}, sizes, max_iter=2)
    with pytest.raises(ValueError, match=r"labels for gender must be 7 class indices.*shape \(3,\)"):
        fit_reweighting(a, {"gender": np.array([0, 1, 1])}, sizes, max_iter=2)


def test_fitting_the_reweighting_module_is_deterministic_and_survives_a_checkpoint(tmp_path):
    """Same data and seed: the same weights bit for bit, the caller's torch RNG untouched; saved and loaded with
    its predictor, the refined probabilities are the same to float32 precision; a layout it never saw (an age
    class no label used) still gives probabilities that sum to 1."""
    import torch

    from restorever.attributes.predictor import EmbeddingAttributePredictor, ProbeSet
    from restorever.attributes.groups import AttributeSchema
    from restorever.attributes.probe import AttributeProbe
    from restorever.attributes.reweighting import fit_reweighting

    sizes = {"gender": 2, "age": 4}
    a = _probabilities(60, seed=3)
    labels = {"gender": (a[:, 1] > 0.5).astype(int), "age": np.where(a[:, 4] > a[:, 5], 2, 3)}  # no child, teen
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = fit_reweighting(a, labels, sizes, hidden=4, max_iter=30, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    second = fit_reweighting(a, labels, sizes, hidden=4, max_iter=30, seed=7)
    for p, q in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(p, q)
    unseen = np.zeros((1, 6))
    unseen[0, [0, 2]] = 1.0  # a confident child: a class with no training label
    for name, probs in first.refine(np.vstack([a[:5], unseen])).items():
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)
        assert (probs >= 0).all()
    probe = AttributeProbe(8, sizes)
    predictor = EmbeddingAttributePredictor(AttributeSchema(), "dlib", ProbeSet(probe.eval(), first))
    loaded = EmbeddingAttributePredictor.load(predictor.save(tmp_path / "m.pt"))
    for name, probs in loaded.refine(a).items():
        np.testing.assert_allclose(probs, first.refine(a)[name], rtol=0, atol=1e-12)

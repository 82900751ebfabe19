"""Gallery search: inner product over L2-normalised embeddings (cosine), with optional attribute filters.

Backends: FAISS (``faiss-cpu``, or ``faiss-gpu`` on a CUDA device when it sees a GPU) with a flat index, or an IVF
index for large galleries; numpy brute force when faiss is not installed (a warning is logged once).

Attribute filtering: each gallery entry carries a code per attribute (the class its clean image was predicted as,
``-1`` when that prediction was below the confidence threshold). A probe whose own prediction is confident
searches only the gallery entries whose codes are compatible (same gender; same or neighbouring age group with
``age_tolerance=1``; entries with code ``-1`` are always searched). Two implementations:

* ``mode="partition"`` (default): one sub-index per combination of codes ("cell"); a probe searches the allowed
  cells and the results are merged. The cost is proportional to the fraction of the gallery searched.
* ``mode="selector"``: one index; faiss ``IDSelectorBatch`` restricts the search to the allowed ids.

Mate ranks (:meth:`GalleryIndex.mate_ranks`) are always exact: brute force over the gallery entries a probe may
search, so an IVF index changes the search results and timings, never rank-k, CMC or mAP.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

_FAISS: Any = None
_WARNED = False
BACKENDS = ("auto", "faiss", "numpy")
MODES = ("partition", "selector")
#: faiss's k-means wants about 39 training points per list; smaller (sub-)indexes stay flat
IVF_POINTS_PER_LIST = 39


def import_faiss(required: bool = False):
    """The ``faiss`` module, or None (logging a warning once) when it is not installed."""
    global _FAISS, _WARNED
    if _FAISS is None:
        try:
            import faiss  # noqa: F401

            _FAISS = faiss
        except ImportError:
            _FAISS = False
    if _FAISS is False:
        if required:
            from .errors import RestoreverError

            raise RestoreverError("--search-backend faiss: faiss is not installed (pip install 'restorever[faiss]', "
                                  "or faiss-gpu for CUDA); use --search-backend numpy")
        if not _WARNED:
            logger.warning("faiss is not installed: gallery search falls back to numpy brute force "
                           "(pip install 'restorever[faiss]' for the FAISS index)")
            _WARNED = True
        return None
    return _FAISS


_GPU_RESOURCES: dict[int, Any] = {}


def _gpu_resources(device: int):
    """One ``StandardGpuResources`` per GPU, shared by every index (each one reserves scratch memory)."""
    if device not in _GPU_RESOURCES:
        _GPU_RESOURCES[device] = import_faiss(required=True).StandardGpuResources()
    return _GPU_RESOURCES[device]


def as_embeddings(x: Any, name: str, *, width: int | None = None, min_rows: int = 0) -> np.ndarray:
    """``x`` as float32 ``[rows, D]``; ``ValueError`` unless it is 2-D with at least ``min_rows`` rows, ``D >= 1``
    columns (exactly ``width`` when given: the gallery's) and only finite values."""
    arr = np.asarray(x, dtype=np.float32)
    rows = "N >= 1" if min_rows >= 1 else "Q"
    cols = "D >= 1" if width is None else str(width)
    expected = f"{name} must be [{rows}, {cols}] embeddings"
    if arr.ndim != 2 or len(arr) < min_rows or arr.shape[1] < 1:
        raise ValueError(f"{expected}, got shape {arr.shape}")
    if width is not None and arr.shape[1] != width:
        raise ValueError(f"{expected}: their width D = {arr.shape[1]} differs from the gallery's D = {width} "
                         f"(got shape {arr.shape})")
    bad = int((~np.isfinite(arr)).any(1).sum())
    if bad:
        raise ValueError(f"{name} must be finite: {bad} of {len(arr)} rows contain NaN or inf")
    return arr


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32, C-contiguous (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


def _numpy_topk(queries: np.ndarray, vectors: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    n = vectors.shape[0]
    k_eff = min(k, n)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    if k_eff == 0:
        return scores, ids
    for start in range(0, len(queries), block):
        s = queries[start:start + block] @ vectors.T
        if k_eff < n:
            part = np.argpartition(-s, k_eff - 1, axis=1)[:, :k_eff]
        else:
            part = np.broadcast_to(np.arange(n), (len(s), n)).copy()
        top = np.take_along_axis(s, part, axis=1)
        order = np.lexsort((part, -top), axis=1)  # best score first; equal scores by gallery id
        scores[start:start + block, :k_eff] = np.take_along_axis(top, order, axis=1)
        ids[start:start + block, :k_eff] = np.take_along_axis(part, order, axis=1)
    return scores, ids


class VectorIndex:
    """Top-k inner product over fixed unit vectors ``[N, D]``; ``search`` returns ``(scores, ids)`` ``[Q, k]``
    with ids ``-1`` (score ``-inf``) where fewer than ``k`` vectors exist."""

    def __init__(self, vectors: np.ndarray, *, backend: str = "auto", device: Any = "cpu", ivf_nlist: int = 0,
                 nprobe: int = 16):
        if backend not in BACKENDS:
            raise ValueError(f"search backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.vectors = np.ascontiguousarray(as_embeddings(vectors, "the index vectors"))
        self.n, self.d = self.vectors.shape
        faiss = None if backend == "numpy" else import_faiss(required=backend == "faiss")
        self.backend = "faiss" if faiss is not None else "numpy"
        self.kind = "flat"
        self.on_gpu = False
        self._index = None
        self.nprobe = int(nprobe)
        if faiss is None:
            return
        if ivf_nlist > 0 and self.n >= IVF_POINTS_PER_LIST * ivf_nlist:
            quantizer = faiss.IndexFlatIP(self.d)
            index = faiss.IndexIVFFlat(quantizer, self.d, int(ivf_nlist), faiss.METRIC_INNER_PRODUCT)
            index.train(self.vectors)
            index.add(self.vectors)
            index.nprobe = self.nprobe
            self._quantizer = quantizer  # keep it alive: the IVF index does not own it
            self.kind = "ivf"
        else:
            index = faiss.IndexFlatIP(self.d)
            index.add(self.vectors)
        if str(device).startswith("cuda"):
            if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
                dev = int(str(device).split(":")[1]) if ":" in str(device) else 0
                index = faiss.index_cpu_to_gpu(_gpu_resources(dev), dev, index)
                self.on_gpu = True
            else:
                logger.info("faiss has no GPU support here (install faiss-gpu); searching on the CPU")
        self._index = index
        self.vectors = None  # faiss holds its own copy

    def search(self, queries: np.ndarray, k: int, *, subset: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` over all vectors, or over the ids in ``subset`` (an IDSelector with faiss); ``queries``
        ``[Q, D]`` with the vectors' width ``D``."""
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return self._search(np.ascontiguousarray(as_embeddings(queries, "queries", width=self.d)), k, subset)

    def _search(self, q: np.ndarray, k: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` of queries already checked: float32, C-contiguous ``[Q, D]`` (GalleryIndex checks them
        once, not once per cell inside its timed search)."""
        if len(q) == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        if self._index is None:
            if subset is None:
                return _numpy_topk(q, self.vectors, k)
            subset = np.asarray(subset, dtype=np.int64)
            scores, local = _numpy_topk(q, self.vectors[subset], k)
            return scores, np.where(local >= 0, subset[np.maximum(local, 0)], -1)
        if subset is None:
            scores, ids = self._index.search(q, k)
        else:
            if self.on_gpu:
                raise ValueError("selector filtering is not available on a GPU index; use mode='partition'")
            faiss = import_faiss(required=True)
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(subset, dtype=np.int64))
            params = (faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe) if self.kind == "ivf"
                      else faiss.SearchParameters(sel=sel))
            scores, ids = self._index.search(q, k, params=params)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        return scores, ids.astype(np.int64)


@dataclass(frozen=True)
class AttributeFilter:
    """Search only compatible gallery entries when a probe's prediction of an attribute reaches ``threshold``.

    ``attributes``: which attributes filter (``gender``, ``age``); ``age_tolerance``: how many neighbouring age groups
    are still searched (0 = the same group only).
    """

    attributes: tuple[str, ...] = ("gender", "age")
    threshold: float = 0.9
    age_tolerance: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", tuple(self.attributes))
        unknown = set(self.attributes) - {"gender", "age"}
        if unknown:
            raise ValueError(f"--attribute-filter takes gender and/or age, got {sorted(unknown)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"--threshold (the filter's confidence) must be in [0, 1], got {self.threshold}")
        if self.age_tolerance < 0:
            raise ValueError(f"--age-tolerance must be >= 0, got {self.age_tolerance}")


def attribute_codes(probs: Mapping[str, np.ndarray], threshold: float) -> dict[str, np.ndarray]:
    """``{attribute: int [N]}``: the most probable class, or ``-1`` where its probability is below ``threshold`` or
    another class is as probable (a tie has no most probable class: at a threshold of 0.5 or less, ``[0.5, 0.5]``
    would otherwise be a confident class 0 and filter by the column order)."""
    out = {}
    for a, p in probs.items():
        p = np.asarray(p)
        top = np.sort(p, axis=1)
        unique = top[:, -1] > top[:, -2] if p.shape[1] > 1 else np.ones(len(p), dtype=bool)
        out[a] = np.where((top[:, -1] >= threshold) & unique, p.argmax(1), -1).astype(np.int64)
    return out


Constraint = tuple  # per filtered attribute: None (unconstrained) or a frozenset of allowed codes


def probe_constraints(probs: Mapping[str, np.ndarray], flt: AttributeFilter) -> list[Constraint | None]:
    """One constraint per probe: for each attribute in ``flt.attributes``, the allowed codes when the probe is
    confident (``None`` otherwise); ``None`` for a probe with no confident attribute."""
    n = len(next(iter(probs.values())))
    codes = attribute_codes({a: probs[a] for a in flt.attributes}, flt.threshold)
    sizes = {a: np.asarray(probs[a]).shape[1] for a in flt.attributes}
    out: list[Constraint | None] = []
    for i in range(n):
        parts = []
        for a in flt.attributes:
            c = int(codes[a][i])
            if c < 0:
                parts.append(None)
            elif a == "age":
                lo, hi = max(0, c - flt.age_tolerance), min(sizes[a] - 1, c + flt.age_tolerance)
                parts.append(frozenset(range(lo, hi + 1)))
            else:
                parts.append(frozenset([c]))
        out.append(None if all(p is None for p in parts) else tuple(parts))
    return out


@dataclass
class SearchResult:
    """``scores``/``ids`` ``[Q, k]`` (ids index the gallery; -1 = none), ``searched`` ``[Q]`` how many gallery
    entries each probe searched, ``seconds`` the wall time of the search."""

    scores: np.ndarray
    ids: np.ndarray
    searched: np.ndarray
    seconds: float


class GalleryIndex:
    """Normalised gallery embeddings with per-entry attribute codes; filtered or unfiltered top-k search.

    :meth:`mate_ranks` is exact whatever the index (flat or IVF) and backend: the index only decides what
    :meth:`search` returns and how long it takes, never the rank-k/CMC/mAP figures (``ranks_are_exact``)."""

    #: mate ranks come from brute force over the (allowed) in-memory gallery, never from the index's results
    ranks_are_exact = True

    def __init__(self, embeddings: np.ndarray, *, codes: Mapping[str, np.ndarray] | None = None,
                 partition_by: Sequence[str] = (), backend: str = "auto", device: Any = "cpu", ivf_nlist: int = 0,
                 nprobe: int = 16, mode: str = "partition"):
        if mode not in MODES:
            raise ValueError(f"filter mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.vectors = l2_normalize(as_embeddings(embeddings, "the gallery", min_rows=1))
        self.n, self.d = self.vectors.shape
        self.mode = mode
        self.partition_by = tuple(partition_by)
        missing = [a for a in self.partition_by if codes is None or a not in codes]
        if missing:
            raise ValueError(f"gallery codes missing for {missing}")
        self.codes = {a: np.asarray(codes[a], dtype=np.int64) for a in self.partition_by} if codes else {}
        opts = dict(backend=backend, device=device, ivf_nlist=ivf_nlist, nprobe=nprobe)
        self.full = VectorIndex(self.vectors, **opts)
        self.backend = self.full.backend
        if ivf_nlist > 0 and self.full.kind != "ivf":  # results.json records index "flat" too
            why = ("faiss is not installed" if self.backend == "numpy" else
                   f"{self.n} entries are fewer than {IVF_POINTS_PER_LIST} per list x {ivf_nlist} lists")
            logger.warning("an IVF index was asked for, but the gallery is searched exactly (flat): %s", why)
        self.cells: dict[tuple[int, ...], tuple[np.ndarray, VectorIndex | None]] = {}
        if self.partition_by:
            keys = np.stack([self.codes[a] for a in self.partition_by], axis=1)
            for key in sorted({tuple(int(v) for v in row) for row in keys}):
                ids = np.where((keys == np.array(key)).all(1))[0]
                sub = VectorIndex(self.vectors[ids], **opts) if mode == "partition" else None
                self.cells[key] = (ids, sub)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "index": self.full.kind, "gpu": self.full.on_gpu, "size": self.n,
                "dim": self.d, "similarity": "cosine (inner product of L2-normalised vectors)",
                "ranks": "exact (brute force over the gallery entries each probe may search, whatever the index)",
                "filter_mode": self.mode, "cells": {",".join(map(str, k)): int(len(v[0]))
                                                     for k, v in self.cells.items()}}

    def allowed_cells(self, constraint: Constraint) -> list[tuple[int, ...]]:
        """Cells compatible with ``constraint`` (a code of -1 in a cell key means "unknown": always allowed)."""
        if len(constraint) != len(self.partition_by):
            raise ValueError(f"constraint {constraint} does not match the gallery partition {self.partition_by}")
        return [key for key in self.cells
                if all(c is None or v < 0 or v in c for v, c in zip(key, constraint))]

    def allowed_ids(self, constraint: Constraint | None) -> np.ndarray | None:
        if constraint is None:
            return None
        cells = self.allowed_cells(constraint)
        return np.sort(np.concatenate([self.cells[c][0] for c in cells])) if cells else np.zeros(0, np.int64)

    def search(self, queries: np.ndarray, k: int, *, constraints: Sequence[Constraint | None] | None = None
               ) -> SearchResult:
        """Top-``k`` gallery entries per query ``[Q, D]`` (L2-normalised here); with an IVF index the top-k is
        approximate (only ``nprobe`` lists are searched)."""
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        q = l2_normalize(as_embeddings(queries, "queries", width=self.d))
        nq = len(q)
        start = time.perf_counter()
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        ids = np.full((nq, k), -1, dtype=np.int64)
        searched = np.full(nq, self.n, dtype=np.int64)
        groups = self._constraint_groups(constraints, nq)
        if constraints is None or not self.partition_by:
            scores[:], ids[:] = self.full._search(q, k)
            return SearchResult(scores, ids, searched, time.perf_counter() - start)
        keys = list(self.cells)
        allowed = np.zeros((nq, len(keys)), dtype=bool)  # query x cell
        for c, rows in groups.items():
            if c is None:
                scores[rows], ids[rows] = self.full._search(q[rows], k)
                continue
            cells = set(self.allowed_cells(c))
            allowed[np.ix_(rows, [j for j, key in enumerate(keys) if key in cells])] = True
            searched[rows] = sum(len(self.cells[key][0]) for key in cells)
            if self.mode == "selector" and cells:
                subset = np.sort(np.concatenate([self.cells[key][0] for key in cells]))
                scores[rows], ids[rows] = self.full._search(q[rows], k, subset=subset)
        if self.mode == "partition" and allowed.any():
            # one search per cell with every query allowed in it (few large calls), then a per-query merge
            width = [min(k, len(self.cells[key][0])) for key in keys]
            offsets = np.concatenate([[0], np.cumsum(width)])
            all_s = np.full((nq, offsets[-1]), -np.inf, dtype=np.float32)
            all_i = np.full((nq, offsets[-1]), -1, dtype=np.int64)
            for j, key in enumerate(keys):
                rows = np.where(allowed[:, j])[0]
                if rows.size == 0:
                    continue
                cell_ids, sub = self.cells[key]
                s, local = sub._search(q[rows], width[j])
                all_s[rows, offsets[j]:offsets[j + 1]] = s
                all_i[rows, offsets[j]:offsets[j + 1]] = np.where(local >= 0, cell_ids[np.maximum(local, 0)], -1)
            rows = np.where(allowed.any(1))[0]
            order = np.argsort(-all_s[rows], axis=1, kind="stable")[:, :k]
            take = order.shape[1]
            scores[rows, :take] = np.take_along_axis(all_s[rows], order, 1)
            ids[rows, :take] = np.take_along_axis(all_i[rows], order, 1)
        return SearchResult(scores, ids, searched, time.perf_counter() - start)

    def mate_ranks(self, queries: np.ndarray, result: SearchResult | None, mate: np.ndarray,
                   constraints: Sequence[Constraint | None] | None = None) -> np.ndarray:
        """Exact 1-based rank ``[Q]`` (float) of each query's mate (gallery id ``mate[i]``) among the gallery entries
        that query may search (all of them, or those its ``constraints`` entry allows, as :meth:`search` defines
        them): 1 + the entries scoring higher + the *other* entries scoring the same (ties count against the query);
        ``inf`` when the filter excluded the mate.

        The ranks are computed by brute force (numpy, cosine over the in-memory gallery), so they do not depend on
        the backend or on the index: with an IVF index a mate the approximate search missed still gets its exact
        rank, and one it returned is ranked against the whole allowed gallery, not just the returned entries.
        ``result`` (the :meth:`search` output for these queries, or None) is only checked for its number of rows.
        Costs one matrix product ``[Q, D] x [D, N]`` (in blocks). Raises ``ValueError`` for a mate id outside the
        gallery (an identity absent from it: open-set search is not what this rank measures)."""
        q = l2_normalize(as_embeddings(queries, "queries", width=self.d))
        mate = self._check_mates(mate, len(q))
        if result is not None and len(result.ids) != len(q):
            raise ValueError(f"result has {len(result.ids)} rows for {len(q)} queries")
        groups = self._constraint_groups(constraints, len(q))
        ranks = np.full(len(q), np.inf)
        for c, rows in groups.items():
            allowed = self.allowed_ids(c)
            if allowed is None:
                ranks[rows] = exact_ranks(q[rows], self.vectors, mate[rows])
                continue
            pos = np.minimum(np.searchsorted(allowed, mate[rows]), max(len(allowed) - 1, 0))
            inside = allowed[pos] == mate[rows] if len(allowed) else np.zeros(len(rows), bool)
            if inside.any():
                ranks[rows[inside]] = exact_ranks(q[rows[inside]], self.vectors[allowed], pos[inside])
        return ranks

    def _check_mates(self, mate: np.ndarray, nq: int) -> np.ndarray:
        """``mate`` as int64 ``[Q]`` gallery ids in ``0..N-1``."""
        mate = np.asarray(mate, dtype=np.int64)
        if mate.shape != (nq,) or (mate.size and (mate.min() < 0 or mate.max() >= self.n)):
            raise ValueError(f"mate: expected {nq} gallery ids in 0..{self.n - 1}, got "
                             f"{mate.tolist()[:5]}{' ...' if mate.size > 5 else ''}")
        return mate

    def _constraint_groups(self, constraints: Sequence[Constraint | None] | None, nq: int
                           ) -> dict[Constraint | None, np.ndarray]:
        """Query rows ``{constraint: int [rows]}`` (one group, ``None``, without constraints)."""
        if constraints is None:
            return {None: np.arange(nq)}
        if len(constraints) != nq:
            raise ValueError(f"{len(constraints)} constraints for {nq} queries")
        if not self.partition_by and any(c is not None for c in constraints):
            raise ValueError("this gallery index was built without attribute codes (partition_by)")
        groups: dict[Constraint | None, list[int]] = {}
        for i, c in enumerate(constraints):
            groups.setdefault(c, []).append(i)
        return {c: np.asarray(rows, dtype=np.int64) for c, rows in groups.items()}


def exact_ranks(queries: np.ndarray, vectors: np.ndarray, mate: np.ndarray, block_elements: int = 1 << 22
                ) -> np.ndarray:
    """Rank ``[Q]`` (float) of ``vectors[mate[i]]`` for ``queries[i]`` over all of ``vectors`` ``[N, D]`` by inner
    product (both normalised float32), ties against the query as in ``metrics.retrieval.ranks_from_scores``.

    Each score is the float64 inner product rounded to float32, so two identical gallery vectors score the same
    (a float64 rounding difference moves the float32 result only if it straddles a float32 rounding boundary, about
    one case in 2**29): a float32 matrix product can put them an ulp apart depending on where their columns fall in
    BLAS's blocks, and a duplicate gallery image then beat or lost to its twin by its position. Scores are built at most
    ``block_elements`` at a time (queries x gallery columns)."""
    q64 = np.asarray(queries, dtype=np.float64)
    mate = np.asarray(mate, dtype=np.int64)
    n, d = vectors.shape
    mate_score = np.einsum("qd,qd->q", q64, vectors[mate].astype(np.float64)).astype(np.float32)
    higher = np.zeros(len(q64), dtype=np.int64)
    ties = np.zeros(len(q64), dtype=np.int64)  # other entries scoring the same as the mate
    cols = min(n, max(1, block_elements // max(d, 1)))
    rows = max(1, block_elements // max(cols, 1))
    for c0 in range(0, n, cols):
        g64 = vectors[c0:c0 + cols].astype(np.float64)
        for r0 in range(0, len(q64), rows):
            r1 = min(r0 + rows, len(q64))
            s = (q64[r0:r1] @ g64.T).astype(np.float32)
            own = np.where((mate[r0:r1] >= c0) & (mate[r0:r1] < c0 + len(g64)))[0]
            s[own, mate[r0:r1][own] - c0] = np.nan  # the mate itself: neither higher nor a tie
            m = mate_score[r0:r1, None]
            higher[r0:r1] += (s > m).sum(1)
            ties[r0:r1] += (s == m).sum(1)
    return (1 + higher + ties).astype(np.float64)

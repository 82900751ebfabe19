"""Queries per second of gallery search: FAISS flat vs numpy brute force on the same vectors, unfiltered and
filtered by attributes (sub-index per attribute cell, and faiss IDSelector), for synthetic 512-D galleries.

Every gallery entry gets a gender (2) and an age group (4) code; each query asks for one gender and its age group
with the neighbouring groups (age tolerance 1), so a filtered query searches about 3/8 of the gallery (2/8 at the
youngest and oldest group). The filtered search should cost in proportion to that fraction.

    python scripts/bench_retrieval.py [--sizes 10000,1000000] [--dim 512] [--queries 1000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _benchinfo import header  # noqa: E402
from restorever.retrieval import AttributeFilter, GalleryIndex, l2_normalize, probe_constraints  # noqa: E402


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000", help="gallery sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000, help="queries for the smallest gallery")
    parser.add_argument("--max-work", type=float, default=2e9,
                        help="cap queries x gallery size for large galleries (keeps numpy runs bounded)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="faiss OpenMP threads (0 = faiss default)")
    args = parser.parse_args()
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(header({"faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads(), "dim": args.dim,
                  "k": args.k, "repeat": f"best of {args.repeat}"}))
    print("| gallery | queries | search | fraction searched | queries/s | vs numpy brute force | "
          "cost vs unfiltered faiss (fraction) |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n in (int(float(s)) for s in args.sizes.split(",")):
        nq = max(50, min(args.queries, int(args.max_work // n)))
        gallery = l2_normalize(rng.standard_normal((n, args.dim), dtype=np.float32))
        queries = l2_normalize(gallery[rng.integers(0, n, nq)] + 0.5 * rng.standard_normal((nq, args.dim),
                                                                                              dtype=np.float32))
        codes = {"gender": rng.integers(0, 2, n), "age": rng.integers(0, 4, n)}
        q_gender, q_age = rng.integers(0, 2, nq), rng.integers(0, 4, nq)
        probs = {"gender": np.eye(2)[q_gender], "age": np.eye(4)[q_age]}
        cons = probe_constraints(probs, AttributeFilter(("gender", "age"), threshold=0.9, age_tolerance=1))
        rows = []

        def measure(name, build, constraints=None):
            index = build()
            t, out = best_of(lambda: index.search(queries, args.k, constraints=constraints), args.repeat)
            rows.append((name, float(out.searched.mean() / n), t))
            return out

        ref = measure("numpy brute force", lambda: GalleryIndex(gallery, backend="numpy"))
        res = measure("faiss flat", lambda: GalleryIndex(gallery, backend="faiss"))
        agree = float(np.mean(res.ids[:, 0] == ref.ids[:, 0]))
        for mode in ("partition", "selector"):
            measure(f"faiss flat, filtered ({mode})", lambda: GalleryIndex(
                gallery, codes=codes, partition_by=("gender", "age"), backend="faiss", mode=mode), cons)
        measure("numpy, filtered (partition)", lambda: GalleryIndex(
            gallery, codes=codes, partition_by=("gender", "age"), backend="numpy"), cons)
        t_np, t_flat = rows[0][2], rows[1][2]
        for name, fraction, t in rows:
            print(f"| {n:,} | {nq} | {name} | {fraction:.3f} | {nq / t:,.0f} | {t_np / t:.2f}x | "
                  f"{t / t_flat:.2f} ({fraction:.2f}) |")
        print(f"| {n:,} | | top-1 id of faiss and numpy agree for {100 * agree:.1f} % of queries | | | | |")


if __name__ == "__main__":
    main()

"""Coverage of the paired TAR@FAR difference interval (restorer minus none) on simulated LFW-like studies.

Each study draws 1,500 people with person effects (uneven numbers of pairs each, many with no genuine pair),
3,000 genuine and 3,000 impostor pairs clustered by their probe person, and two correlated conditions scoring the
same pairs (``none`` and a "restorer" that raises genuine and impostor scores and adds person-level spread). The
true TAR@FAR of each condition is that of the population (the scores are Gaussian mixtures with a closed form; a
4-million-pair sample of the same population checks it). For every study the people-resampling percentile interval
is computed under three replicate rules, from the same draws (``cluster_bootstrap_counts``):

- ``drawn``: a replicate accepts impostor weight up to FAR x its drawn impostor weight W (the rule of
  :func:`restorever.metrics.verification.tar_at_far`; ``tar_rule`` 1, that of every record without the key);
- ``count``: it accepts up to ``k = floor(FAR x N)`` impostor weight, N the observed impostor count;
- ``mid``: it accepts up to ``(k + 1/2) x W / N``: the rate in the middle of the observed FAR's cell
  (:func:`restorever.reports.rate_stats.replicate_far`, ``tar_rule`` 2), so no replicate drops to ``k - 1`` for
  drawing a little less impostor weight than observed.

All three give the observed TAR on the observed pairs. Printed per FAR (on the whole-number boundary FAR x 3000 =
3 and 30, and just off it): coverage of the true difference, median width, the shares of misses with the whole
interval below / above the truth, and the share of replicates whose none-TAR lies below the observed one.

    python scripts/sim_rate_intervals.py [--studies 400] [--n-boot 1000] [--seed 0]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.stats import norm

from _benchinfo import header
from restorever.progress import progress_bar
from restorever.reports.rate_stats import replicate_far
from restorever.reports.statistics import cluster_bootstrap_counts, percentile_interval

FARS = (0.001, 0.00115, 0.01, 0.01015)  # FAR x 3000 = 3, 3.45, 30, 30.45
RULES = ("drawn", "count", "mid")
# score model (arbitrary units; impostor sd of none is 1): person effects, pair noise, restorer shifts
PERSON_GEN, NOISE_GEN = 0.4, 0.6  # variances of a person's genuine effect and of a genuine pair's noise
PERSON_IMP, OTHER_IMP, NOISE_IMP = 0.3, 0.2, 0.5  # probe person, the other person, pair noise (impostors)
MEAN_GEN_NONE, MEAN_GEN_REST = 3.3, 3.75
EXTRA_GEN, EXTRA_IMP = 0.1, 0.1  # variances the restorer adds per person (genuine / impostor)
RHO = 0.7  # correlation of a pair's noise between the two conditions


def true_tar(far: float) -> tuple[float, float]:
    """The population TAR@FAR of (none, restorer): both classes are Gaussian in each condition."""
    out = []
    for mean, gen_var, imp_var in ((MEAN_GEN_NONE, PERSON_GEN + NOISE_GEN, PERSON_IMP + OTHER_IMP + NOISE_IMP),
                                   (MEAN_GEN_REST, PERSON_GEN + NOISE_GEN + EXTRA_GEN,
                                    PERSON_IMP + OTHER_IMP + NOISE_IMP + EXTRA_IMP)):
        threshold = math.sqrt(imp_var) * norm.isf(far)
        out.append(float(norm.sf((threshold - mean) / math.sqrt(gen_var))))
    return out[0], out[1]


def draw_study(rng: np.random.Generator, people: int, n_gen: int, n_imp: int):
    """``(same int[n], cluster int[n], score_none float[n], score_restorer float[n])`` of one simulated study."""
    gen_of = rng.choice(people, n_gen, p=_shares(rng.lognormal(0.0, 1.0, people)))
    imp_of = rng.choice(people, n_imp, p=_shares(rng.lognormal(0.0, 0.5, people)))
    g, d = rng.normal(0, math.sqrt(PERSON_GEN), people), rng.normal(0, math.sqrt(EXTRA_GEN), people)
    h, c = rng.normal(0, math.sqrt(PERSON_IMP), people), rng.normal(0, math.sqrt(EXTRA_IMP), people)
    e = rng.normal(size=(2, n_gen))
    e_rest = RHO * e[0] + math.sqrt(1 - RHO ** 2) * e[1]
    gen_none = MEAN_GEN_NONE + g[gen_of] + math.sqrt(NOISE_GEN) * e[0]
    gen_rest = MEAN_GEN_REST + g[gen_of] + d[gen_of] + math.sqrt(NOISE_GEN) * e_rest
    other = rng.normal(0, math.sqrt(OTHER_IMP), n_imp)  # the other person of an impostor pair, from the population
    n = rng.normal(size=(2, n_imp))
    n_rest = RHO * n[0] + math.sqrt(1 - RHO ** 2) * n[1]
    imp_none = h[imp_of] + other + math.sqrt(NOISE_IMP) * n[0]
    imp_rest = h[imp_of] + c[imp_of] + other + math.sqrt(NOISE_IMP) * n_rest
    same = np.r_[np.ones(n_gen, np.int64), np.zeros(n_imp, np.int64)]
    return same, np.r_[gen_of, imp_of], np.r_[gen_none, imp_none], np.r_[gen_rest, imp_rest]


def _shares(x: np.ndarray) -> np.ndarray:
    return x / x.sum()


def large_sample_tar(far: float, rng: np.random.Generator, n: int = 4_000_000) -> tuple[float, float]:
    """The same TARs from one big sample of the population (every pair from a fresh person): a check."""
    same, _, a, b = draw_study(rng, n, n, n)
    out = []
    for s in (a, b):
        imp = np.sort(s[same == 0])[::-1]
        threshold = imp[int(far * n) - 1]  # accept the top FAR x n impostors
        out.append(float(np.mean(s[same == 1] >= threshold)))
    return out[0], out[1]


def budgets(rule: str, far: float, n_obs: int, drawn: np.ndarray) -> np.ndarray:
    """Impostor weight a replicate may accept (``drawn``: each replicate's impostor weight, ``float[m]``)."""
    k = math.floor(far * n_obs + 1e-9)
    if rule == "drawn":
        return (far + 1e-12) * drawn  # tar_at_far's own test, fpr <= far + 1e-12
    if rule == "count":
        return np.full_like(drawn, k + 1e-9)
    if rule == "mid":  # restorever's tar_rule 2
        return (replicate_far(far, n_obs) + 1e-12) * drawn
    raise ValueError(rule)


def replicate_tars(same: np.ndarray, score: np.ndarray, weights: np.ndarray, n_obs: int):
    """``{(rule, far): float[m]}``: each replicate's TAR under each rule (weights ``float[m, n]``)."""
    order = np.argsort(-score, kind="mergesort")
    y = same[order].astype(bool)
    ends = np.r_[np.where(np.diff(score[order]))[0], score.size - 1]
    ws = weights[:, order]
    zero = np.zeros((ws.shape[0], 1))
    tps = np.concatenate([zero, np.cumsum(ws * y, axis=1)[:, ends]], axis=1)
    fps = np.concatenate([zero, np.cumsum(ws * ~y, axis=1)[:, ends]], axis=1)
    drawn, rows = fps[:, -1], np.arange(ws.shape[0])
    out = {}
    for far in FARS:
        for rule in RULES:
            last = np.sum(fps <= budgets(rule, far, n_obs, drawn)[:, None], axis=1) - 1
            out[rule, far] = tps[rows, last] / tps[:, -1]
    return out


def one_study(rng: np.random.Generator, args, truth: dict, seed: int) -> dict:
    same, cl, s_none, s_rest = draw_study(rng, args.people, args.pairs, args.pairs)
    _, cl = np.unique(cl, return_inverse=True)
    n_obs = int(np.sum(same == 0))
    ones = np.ones((1, same.size))
    obs_none = replicate_tars(same, s_none, ones, n_obs)  # the observed TARs (weights all 1)
    reps = {key: [] for key in obs_none}
    below = {key: [] for key in obs_none}
    for _, counts in cluster_bootstrap_counts(int(cl.max()) + 1, n_boot=args.n_boot, seed=seed, chunk=250):
        w = counts[:, cl]
        r_none, r_rest = replicate_tars(same, s_none, w, n_obs), replicate_tars(same, s_rest, w, n_obs)
        for key in reps:
            reps[key].append(r_rest[key] - r_none[key])
            below[key].append(r_none[key] < obs_none[key][0])
    out = {}
    for (rule, far), diffs in reps.items():
        assert obs_none[rule, far][0] == obs_none["drawn", far][0]  # every rule gives the observed TAR
        low, high = percentile_interval(np.concatenate(diffs), 0.95)
        t = truth[far]
        share_below = float(np.mean(np.concatenate(below[rule, far])))
        out[rule, far] = (low <= t <= high, high - low, high < t, low > t, share_below)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--people", type=int, default=1500)
    parser.add_argument("--pairs", type=int, default=3000, help="genuine pairs, and as many impostor pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-sample", type=int, default=4_000_000, help="pairs per class of the truth check")
    args = parser.parse_args()
    print(header({"studies": args.studies, "n_boot": args.n_boot, "people": args.people,
                  "pairs": f"{args.pairs} genuine + {args.pairs} impostor", "seed": args.seed}))
    rng = np.random.default_rng(args.seed)
    truth = {}
    print("\n| FAR | FAR x N | TAR none | TAR restorer | true difference | 4M-pair sample check |\n"
          "|---|---|---|---|---|---|")
    for far in FARS:
        a, b = true_tar(far)
        ca, cb = large_sample_tar(far, rng, args.check_sample)
        truth[far] = b - a
        print(f"| {far:g} | {far * args.pairs:g} | {a:.4f} | {b:.4f} | {b - a:+.4f} | {cb - ca:+.4f} |")
    start = time.perf_counter()
    results = [one_study(rng, args, truth, seed=args.seed * 100_000 + i)  # about 1 s a study: a bar on stderr
               for i in progress_bar(range(args.studies), total=args.studies, desc="studies", unit="study")]
    seconds = time.perf_counter() - start
    print(f"\n{args.studies} studies in {seconds:.0f} s; 95 % percentile intervals, "
          f"Monte Carlo standard error of a coverage near 0.95: {math.sqrt(0.95 * 0.05 / args.studies):.3f}\n")
    print("| FAR | rule | coverage | median width | misses below | misses above | replicate none-TAR below observed |"
          "\n|---|---|---|---|---|---|---|")
    for far in FARS:
        for rule in RULES:
            rows = np.array([r[rule, far] for r in results], dtype=np.float64)
            print(f"| {far:g} | {rule} | {rows[:, 0].mean():.3f} | {np.median(rows[:, 1]):.4f} | "
                  f"{rows[:, 2].mean():.3f} | {rows[:, 3].mean():.3f} | {rows[:, 4].mean():.3f} |")


if __name__ == "__main__":
    main()

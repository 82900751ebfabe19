"""McNemar's test and the people bootstrap: known answers, scipy cross-checks, and the record integration."""
from __future__ import annotations

import json
from fractions import Fraction
from math import comb

import numpy as np
import pytest
from scipy import stats as sps

from restorever.metrics import kfold_accuracy
from restorever.protocol import load_protocol
from restorever.reports.results import results_table, write_run
from restorever.reports.statistics import (CLUSTERINGS, add_comparisons, cluster_bootstrap_difference,
                                           clustered_mcnemar, mcnemar, pair_clusters, pair_decisions,
                                           person_clusters, person_of)

from .conftest import lfw_like_pairs, make_record


def _decisions(b: int, c: int, both_right: int = 30, both_wrong: int = 5):
    """Decisions with exactly b (ref right, other wrong) and c (ref wrong, other right) discordant pairs."""
    ref = np.r_[np.ones(b), np.zeros(c), np.ones(both_right), np.zeros(both_wrong)].astype(bool)
    other = np.r_[np.zeros(b), np.ones(c), np.ones(both_right), np.zeros(both_wrong)].astype(bool)
    return ref, other


# ---------------------------------------------------------------------------------------------------- McNemar


def test_mcnemar_identical_decisions_p_is_one():
    ref, _ = _decisions(4, 3)
    result = mcnemar(ref, ref)
    assert (result.b, result.c, result.p_value) == (0, 0, 1.0)


def test_mcnemar_exact_known_answer():
    ref, other = _decisions(8, 1)
    result = mcnemar(ref, other)
    assert (result.b, result.c, result.method) == (8, 1, "exact")
    assert result.p_value == pytest.approx(float(Fraction(2 * (comb(9, 0) + comb(9, 1)), 2 ** 9)), abs=0)  # 20/512
    assert mcnemar(*_decisions(5, 5)).p_value == 1.0


@pytest.mark.parametrize("b,c", [(0, 1), (1, 0), (3, 7), (12, 0), (6, 6), (10, 14), (2, 20)])
def test_mcnemar_exact_matches_scipy_binomtest(b, c):
    result = mcnemar(*_decisions(b, c))
    assert result.method == "exact"
    assert result.p_value == pytest.approx(sps.binomtest(b, b + c, 0.5).pvalue, rel=1e-12)


@pytest.mark.parametrize("b,c", [(20, 5), (40, 60), (13, 12), (300, 250), (1000, 0)])
def test_mcnemar_chi2_matches_scipy(b, c):
    result = mcnemar(*_decisions(b, c))
    assert result.method == "chi2"
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    assert result.statistic == pytest.approx(stat, rel=1e-12)
    assert result.p_value == pytest.approx(sps.chi2.sf(stat, 1), rel=1e-9, abs=1e-300)


def test_mcnemar_large_exact_does_not_overflow_and_agrees_with_chi2():
    ref, other = _decisions(600, 500)
    exact = mcnemar(ref, other, exact=True)
    assert exact.p_value == pytest.approx(sps.binomtest(600, 1100, 0.5).pvalue, rel=1e-9)
    assert mcnemar(ref, other).p_value == pytest.approx(exact.p_value, rel=0.05)


def test_mcnemar_rejects_mismatched_input():
    with pytest.raises(ValueError, match="equal length"):
        mcnemar(np.ones(3, bool), np.ones(4, bool))


# ---------------------------------------------------------------------------------------------------- decisions


def test_pair_decisions_reproduce_kfold_fold_accuracies():
    rng = np.random.default_rng(1)
    _, _, same, fold = lfw_like_pairs()
    score = same * 0.8 + rng.normal(size=same.size)
    kf = kfold_accuracy(same, score, fold)
    correct = pair_decisions({"same": same, "fold": fold, "score": score}, kf.thresholds)
    per_fold = np.array([correct[fold == f].mean() for f in np.unique(fold)])
    np.testing.assert_allclose(per_fold, kf.fold_accuracies, rtol=0, atol=1e-12)


def test_pair_decisions_fold_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 fold"):
        pair_decisions({"same": [1, 0], "fold": [0, 1], "score": [0.5, 0.1]}, [0.2, 0.3, 0.4])


# ---------------------------------------------------------------------------------------------------- clusters


def test_person_of():
    assert person_of("lfw-deepfunneled/Abel_Pacheco/Abel_Pacheco_0001.jpg") == "Abel_Pacheco"
    assert person_of("madonna/madonna_0001.jpg") == "madonna"
    assert person_of("bin:17") == "bin:17"


def test_person_clusters_known_answer():
    a = ["x/A/1.jpg", "x/B/1.jpg", "x/C/1.jpg", "x/D/1.jpg", "x/E/1.jpg", "x/A/2.jpg"]
    b = ["x/A/3.jpg", "x/C/2.jpg", "x/C/3.jpg", "x/B/9.jpg", "x/F/1.jpg", "x/G/1.jpg"]
    # A-A, B-C, C-C, D-B, E-F, A-G: {A, G}, {B, C, D}, {E, F}
    assert person_clusters(a, b).tolist() == [0, 1, 1, 1, 2, 0]
    assert pair_clusters(a, b, "components").tolist() == [0, 1, 1, 1, 2, 0]
    # by the probe's person: A, C, C, B, F, G
    assert pair_clusters(a, b).tolist() == [0, 1, 1, 2, 3, 4]
    assert pair_clusters(a, b, "pairs").tolist() == list(range(6))
    with pytest.raises(ValueError, match="cluster_by must be one of"):
        pair_clusters(a, b, "folds")


def test_person_clusters_on_lfw_view2(lfw_root):
    pairs = load_protocol("lfw", data_root=lfw_root).pairs
    clusters = person_clusters(pairs.a, pairs.b)
    # reference: an independent union-find over the names in pairs.txt
    parent: dict[str, str] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for line in (lfw_root / "pairs.txt").read_text().splitlines()[1:]:
        t = line.split("\t")
        if len(t) == 4:
            ra, rb = find(t[0]), find(t[2])
            if ra != rb:
                parent[ra] = rb
        elif len(t) == 3:
            find(t[0])
    n_ref = len({find(p) for p in parent})
    assert clusters.size == 6000 and np.unique(clusters).size == n_ref
    # LFW's ten splits share no person, so no cluster crosses a fold
    assert all(np.unique(pairs.fold[clusters == k]).size == 1 for k in np.unique(clusters)[:200])


# ---------------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_identical_decisions_interval_is_zero():
    ref = np.random.default_rng(0).random(200) < 0.8
    result = cluster_bootstrap_difference(ref, ref, np.arange(200) // 4, n_boot=300)
    assert result.difference == 0 and result.low == 0 and result.high == 0


def test_bootstrap_clearly_better_condition():
    rng = np.random.default_rng(0)
    ref = rng.random(600) < 0.7
    other = ref | (rng.random(600) < 0.5)  # fixes about half the errors, breaks nothing
    clusters = np.arange(600) // 3
    result = cluster_bootstrap_difference(ref, other, clusters, n_boot=1000, seed=3)
    assert result.difference == pytest.approx(other.mean() - ref.mean())
    assert 0 < result.low < result.difference < result.high
    assert mcnemar(ref, other).p_value < 1e-10


def _naive_bootstrap(ref, other, clusters, n_boot, seed, chunk):
    """Reference: materialise each replicate's pairs from the same draws, one replicate at a time."""
    members = {k: np.where(clusters == k)[0] for k in np.unique(clusters)}
    k = len(members)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_boot, chunk):
        draws = rng.integers(0, k, size=(min(chunk, n_boot - start), k))
        for row in draws:
            idx = np.concatenate([members[j] for j in row])
            out.append(other[idx].mean() - ref[idx].mean())
    return np.array(out)


def test_bootstrap_matches_naive_resampling_of_people():
    rng = np.random.default_rng(5)
    ref = rng.random(90) < 0.75
    other = rng.random(90) < 0.85
    clusters = rng.integers(0, 25, size=90)
    clusters[:25] = np.arange(25)  # every cluster present
    naive = _naive_bootstrap(ref, other, clusters, 200, seed=11, chunk=64)
    result = cluster_bootstrap_difference(ref, other, clusters, n_boot=200, seed=11, chunk=64)
    low, high = np.quantile(naive, [0.025, 0.975])
    assert result.low == pytest.approx(low, abs=1e-12) and result.high == pytest.approx(high, abs=1e-12)
    assert result.std == pytest.approx(naive.std(ddof=1), rel=1e-9)


def test_bootstrap_std_pairs_vs_people():
    """Independent pairs: the bootstrap std matches the analytic standard error of a paired mean difference.
    Pairs in clusters of 5 with identical outcomes: resampling people widens it by about sqrt(5)."""
    rng = np.random.default_rng(2)
    d_ref = rng.random(400) < 0.7
    d_other = np.where(rng.random(400) < 0.3, ~d_ref, d_ref)
    single = cluster_bootstrap_difference(d_ref, d_other, np.arange(400), n_boot=4000, seed=0)
    d = d_other.astype(float) - d_ref
    assert single.std == pytest.approx(d.std() / np.sqrt(400), rel=0.08)
    ref5, other5 = np.repeat(d_ref, 5), np.repeat(d_other, 5)
    people = cluster_bootstrap_difference(ref5, other5, np.repeat(np.arange(400), 5), n_boot=4000, seed=0)
    pairs = cluster_bootstrap_difference(ref5, other5, np.arange(2000), n_boot=4000, seed=0)
    assert people.std / pairs.std == pytest.approx(np.sqrt(5), rel=0.1)
    assert people.std == pytest.approx(single.std, rel=0.05)


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    ref, other = rng.random(100) < 0.7, rng.random(100) < 0.8
    first = cluster_bootstrap_difference(ref, other, np.arange(100) // 2, n_boot=500, seed=4)
    assert first == cluster_bootstrap_difference(ref, other, np.arange(100) // 2, n_boot=500, seed=4)
    assert first != cluster_bootstrap_difference(ref, other, np.arange(100) // 2, n_boot=500, seed=5)


# ---------------------------------------------------------------------------------------------------- records


def test_add_comparisons_to_record(tmp_path):
    record = make_record(tmp_path)
    add_comparisons(record, n_boot=500)
    by = {(c["restorer"], c["scale"]): c for c in record["conditions"]}
    assert "comparison_to_clean" not in by[("none", None)] and "comparison_to_none" not in by[("none", 4)]
    comp = by[("vqfr-v2", 16)]["comparison_to_none"]
    assert comp["reference"] == {"restorer": "none", "scale": 16}
    # the stored per-pair accuracies agree with the k-fold accuracies (equal fold sizes)
    assert comp["accuracy"] == pytest.approx(by[("vqfr-v2", 16)]["verification"]["accuracy_mean"])
    assert comp["accuracy_reference"] == pytest.approx(by[("none", 16)]["verification"]["accuracy_mean"])
    assert comp["accuracy_difference"] == pytest.approx(comp["accuracy"] - comp["accuracy_reference"])
    assert comp["ci_low"] <= comp["accuracy_difference"] <= comp["ci_high"]
    probe_people = {item.split("/")[1] for item in record["pairs"]["b"]}
    assert comp["bootstrap"]["clusters"] == len(probe_people)
    assert comp["bootstrap"]["resampled"] == CLUSTERINGS["probe"]
    wide = add_comparisons(make_record(tmp_path), n_boot=500, cluster_by="pairs")["conditions"][-1]
    assert wide["comparison_to_none"]["bootstrap"]["clusters"] == len(record["pairs"]["b"])
    clean_cmp = by[("none", 16)]["comparison_to_clean"]
    assert clean_cmp["accuracy_difference"] < 0 and clean_cmp["ci_high"] < 0  # x16 clearly hurts (synthetic)


def _drop_pairs(record: dict, keep: np.ndarray) -> dict:
    """``record`` with only the pairs ``keep`` (a bool mask), its verification blocks recomputed: as a run that
    skipped the other pairs, leaving folds of unequal size."""
    from restorever.metrics import verification_report

    record["pairs"] = {k: [x for x, kept in zip(v, keep) if kept] for k, v in record["pairs"].items()}
    for cond in record["conditions"]:
        cond["scores"] = {k: np.asarray(v)[keep].tolist() for k, v in cond["scores"].items()}
        sc = cond["scores"]
        cond["verification"] = verification_report(np.array(sc["same"]), np.array(sc["score"]), np.array(sc["fold"]))
    return record


def test_comparisons_use_the_tables_accuracy_when_folds_differ_in_size(tmp_path):
    """With skipped pairs the folds differ in size: the table shows the mean of the fold accuracies, while the
    paired statistics used the accuracy pooled over pairs, so one report gave a condition two accuracies and a Δ
    that was not the difference of the table's numbers. Now both are the fold mean (pairs weighted by 1 / fold
    size), and the bootstrap agrees with a naive weighted resampling."""
    record = make_record(tmp_path)
    fold = np.asarray(record["conditions"][0]["scores"]["fold"])
    keep = (fold != 0) | (np.arange(fold.size) % 8 < 2)  # fold 0 keeps 2 same + 2 different pairs of 16
    record = _drop_pairs(record, keep)
    add_comparisons(record, n_boot=300)
    by = {(c["restorer"], c["scale"]): c for c in record["conditions"]}
    clean, x16 = by[("none", None)], by[("none", 16)]
    comp = x16["comparison_to_clean"]
    assert comp["estimator"] == "fold_mean"
    assert comp["accuracy"] == pytest.approx(x16["verification"]["accuracy_mean"], abs=1e-12)
    assert comp["accuracy_reference"] == pytest.approx(clean["verification"]["accuracy_mean"], abs=1e-12)
    assert comp["accuracy_difference"] == pytest.approx(
        x16["verification"]["accuracy_mean"] - clean["verification"]["accuracy_mean"], abs=1e-12)
    pooled = add_comparisons(json.loads(json.dumps(record)), n_boot=300, overwrite=True, estimator="pooled")
    pooled_cmp = pooled["conditions"][3]["comparison_to_clean"]
    assert pooled_cmp["accuracy_difference"] != pytest.approx(comp["accuracy_difference"])  # the estimators differ
    # the weighted bootstrap, replicate by replicate, against materialised resamples
    from restorever.reports.statistics import fold_weights, pair_decisions

    ref = pair_decisions(clean["scores"], clean["verification"]["thresholds"])
    oth = pair_decisions(x16["scores"], x16["verification"]["thresholds"])
    w = fold_weights(clean["scores"]["fold"])
    assert np.sum(w[fold[keep] == 0]) == pytest.approx(0.1) and np.sum(w) == pytest.approx(1.0)
    clusters = np.arange(ref.size) // 3
    members = {k: np.where(clusters == k)[0] for k in np.unique(clusters)}
    rng = np.random.default_rng(7)
    naive = []
    for row in rng.integers(0, len(members), size=(200, len(members))):
        idx = np.concatenate([members[j] for j in row])
        naive.append(np.sum(w[idx] * (oth[idx].astype(float) - ref[idx])) / np.sum(w[idx]))
    result = cluster_bootstrap_difference(ref, oth, clusters, n_boot=200, seed=7, chunk=200, weights=w)
    low, high = np.quantile(naive, [0.025, 0.975])
    assert result.low == pytest.approx(low, abs=1e-12) and result.high == pytest.approx(high, abs=1e-12)


def test_comparisons_without_an_estimator_are_recomputed(tmp_path):
    """A record from before the estimator was stored (pooled accuracies) gets its comparisons recomputed, so a
    report never shows the old pooled Δ beside fold-mean accuracies."""
    record = add_comparisons(make_record(tmp_path), n_boot=200)
    for cond in record["conditions"]:
        for key in ("comparison_to_clean", "comparison_to_none"):
            if key in cond:
                cond[key].pop("estimator")
                cond[key]["accuracy_difference"] = 0.5  # a stale value
    add_comparisons(record, n_boot=200)
    comps = [c["comparison_to_clean"] for c in record["conditions"] if "comparison_to_clean" in c]
    assert all(c["estimator"] == "fold_mean" and c["accuracy_difference"] != 0.5 for c in comps)


def test_write_run_stores_statistics_and_prints_them(tmp_path):
    record = make_record(tmp_path)
    write_run(record, tmp_path)
    stored = json.loads((tmp_path / "results.json").read_text())
    comp = next(c for c in stored["conditions"] if c["restorer"] == "vqfr-v2" and c["scale"] == 4)
    assert set(comp["comparison_to_none"]["mcnemar"]) >= {"b", "c", "p_value", "method"}
    table = results_table(record)  # the caller's record got the statistics too
    assert "Δ acc vs none" in table and "Δ acc vs clean" in table
    row = next(line for line in table.splitlines() if line.startswith("| vqfr-v2 x4 |"))
    p = comp["comparison_to_none"]["mcnemar"]["p_value"]
    assert f"p={p:.2g}" in row
    md = (tmp_path / "results.md").read_text()
    assert md.count("| clean |") == 1 and "bootstrap" in md


def test_table_without_statistics_has_no_comparison_columns(tmp_path):
    record = make_record(tmp_path, scales=())
    add_comparisons(record)
    assert "Δ" not in results_table(record)


def test_condensed_table_shows_the_lowest_far_the_run_resolves(tmp_path):
    """The condensed table (results.md, the eval console, report.md) showed only TAR@FAR=1e-3, empty for every run
    with fewer than 1,000 different-person pairs even where 1e-2 and 1e-1 were stored."""
    record = make_record(tmp_path)  # 80 different-person pairs: TAR@FAR is stored for 1e-1 only
    assert {k for k, v in record["conditions"][0]["verification"]["tar_at_far"].items() if v is not None} == {"0.1"}
    table = results_table(record)
    assert "TAR@FAR=1e-1 %" in table.splitlines()[0]
    first = table.splitlines()[2].split("|")
    assert first[5].strip() == f"{100 * record['conditions'][0]['verification']['tar_at_far']['0.1']:.2f}"
    for cond in record["conditions"]:
        cond["verification"]["tar_at_far"] = {"0.001": None}
    assert "TAR@FAR=1e-3 %" in results_table(record)  # nothing resolved: the usual column, empty


# ------------------------------------------------------------------------------------------- clustered McNemar


@pytest.mark.parametrize("b, c", [(0, 0), (3, 1), (10, 2), (7, 7), (30, 10), (200, 150)])
def test_clustered_mcnemar_with_one_pair_per_cluster_is_the_exact_test(b, c):
    ref, other = _decisions(b, c)
    result = clustered_mcnemar(ref, other, np.arange(ref.size))
    expected = sps.binomtest(b, b + c).pvalue if b + c else 1.0
    assert result.p_value == pytest.approx(expected, rel=1e-9)
    assert result.p_value == pytest.approx(mcnemar(ref, other, exact=True).p_value, rel=1e-9)
    assert result.statistic == abs(b - c) and result.clusters == b + c


def test_clustered_mcnemar_known_answers():
    # cluster differences d = (2, 1): signed sums +-2 +-1 -> |sum| >= 3 in 2 of 4 sign vectors
    result = clustered_mcnemar([1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0, 0, 1, 2, 2, 2])
    assert (result.statistic, result.p_value, result.clusters) == (3, 0.5, 2)
    # d = (3, 1, 1): |sum| >= 5 in 2 of 8; an opposite-signed cluster d = (2, -1): |sum| >= 1 always
    assert clustered_mcnemar([1] * 5, [0] * 5, [0, 0, 0, 1, 2]).p_value == 0.25
    assert clustered_mcnemar([1, 1, 0], [0, 0, 1], [0, 0, 1]).p_value == 1.0


def test_clustered_mcnemar_does_not_count_a_persons_repeated_pairs_as_evidence():
    """Every pair repeated 4 times within its person: the per-pair test's p drops by orders of magnitude, the
    clustered one (and the people bootstrap) do not move."""
    ref, other = _decisions(10, 2)
    rep = np.repeat(np.arange(ref.size), 4)
    once = clustered_mcnemar(ref, other, np.arange(ref.size))
    four = clustered_mcnemar(ref[rep], other[rep], rep)
    assert four.p_value == pytest.approx(once.p_value, rel=1e-12)
    assert mcnemar(ref[rep], other[rep]).p_value < once.p_value / 1000


def test_clustered_mcnemar_matches_enumerating_every_sign_vector():
    rng = np.random.default_rng(4)
    ref, other = rng.random(80) < 0.7, rng.random(80) < 0.5
    clusters = rng.integers(0, 12, size=80)
    d = np.array([int(ref[clusters == k].sum()) - int(other[clusters == k].sum()) for k in np.unique(clusters)])
    signs = np.array(np.meshgrid(*[[-1, 1]] * d.size)).reshape(d.size, -1).T
    brute = np.mean(np.abs(signs @ d) >= abs(d.sum()))
    assert clustered_mcnemar(ref, other, clusters).p_value == pytest.approx(brute, rel=1e-12)


def test_comparisons_store_the_clustered_test_and_the_table_shows_it(tmp_path):
    record = add_comparisons(make_record(tmp_path), n_boot=200)
    comps = [c[k] for c in record["conditions"] for k in ("comparison_to_clean", "comparison_to_none") if k in c]
    assert comps
    clusters = pair_clusters(record["pairs"]["a"], record["pairs"]["b"], "probe")
    for comp in comps:
        assert comp["mcnemar_clustered"]["resampled"] == comp["bootstrap"]["resampled"]
        assert 0 < comp["mcnemar_clustered"]["p_value"] <= 1
    cond = next(c for c in record["conditions"] if "comparison_to_none" in c)
    base = next(c for c in record["conditions"] if c["restorer"] == "none" and c["scale"] == cond["scale"])
    ref = pair_decisions(base["scores"], base["verification"]["thresholds"])
    oth = pair_decisions(cond["scores"], cond["verification"]["thresholds"])
    assert cond["comparison_to_none"]["mcnemar_clustered"]["p_value"] == clustered_mcnemar(ref, oth, clusters).p_value
    assert f"(clustered {cond['comparison_to_none']['mcnemar_clustered']['p_value']:.2g})" in results_table(record)


def test_comparisons_without_the_clustered_test_are_recomputed(tmp_path):
    record = add_comparisons(make_record(tmp_path), n_boot=200)
    for cond in record["conditions"]:
        for key in ("comparison_to_clean", "comparison_to_none"):
            cond.get(key, {}).pop("mcnemar_clustered", None)
    add_comparisons(record, n_boot=200)
    assert all("mcnemar_clustered" in c["comparison_to_clean"] for c in record["conditions"] if c["scale"])


def test_an_underflowed_p_value_is_not_shown_as_zero(tmp_path):
    """2000 discordant pairs all one way: the chi-square p underflows to 0.0 (scipy's too); the tables say <1e-300."""
    from restorever.reports.html import report_tables

    ref, other = _decisions(2000, 0)
    assert mcnemar(ref, other).p_value == 0.0 == sps.chi2.sf(1999 ** 2 / 2000, 1)
    record = add_comparisons(make_record(tmp_path), n_boot=100)
    cond = next(c for c in record["conditions"] if "comparison_to_none" in c)
    for test in ("mcnemar", "mcnemar_clustered"):
        cond["comparison_to_none"][test]["p_value"] = 0.0
        cond["comparison_to_none"][test]["p_holm"] = 0.0
    row = next(line for line in results_table(record).splitlines() if line.startswith(f"| {cond['restorer']} "))
    assert row.split("|")[-2].strip().endswith("] p<1e-300 (clustered <1e-300); Holm <1e-300 (<1e-300)")
    stats = next(t for t in report_tables(record) if t.key == "statistics")
    ps = [stats.header.index(name) for name in ("p", "p (clustered)", "Holm p", "Holm p (clustered)")]
    assert any([r[i] for i in ps] == ["<1e-300"] * 4 for r in stats.rows)


def test_statistics_note_says_which_p_values_are_adjusted_for_multiple_comparisons(tmp_path):
    """A run compares every scale with clean and every restorer with none: the reader must learn that each raw p
    stands alone and which column is Holm-adjusted, over which family, before reading ten p-values as ten
    findings."""
    from restorever.reports.results import results_markdown

    record = add_comparisons(make_record(tmp_path), n_boot=100)
    md = results_markdown(record)
    assert "Each raw p and each interval is for its own comparison" in md
    assert "the family is every comparison of one kind in the run" in md
    assert "thresholds are held at the run's fold thresholds" in md


def test_few_people_in_the_bootstrap_are_flagged(tmp_path):
    """The 5-person faces set gives 5 clusters: a percentile bootstrap over 5 people cannot be read as a 95 %
    interval, and the report says so; LFW-sized runs (hundreds of people) get no warning."""
    from restorever.reports.html import report_tables
    from restorever.reports.results import results_markdown

    record = add_comparisons(make_record(tmp_path), n_boot=100)
    n = min(c[k]["bootstrap"]["clusters"] for c in record["conditions"]
            for k in ("comparison_to_clean", "comparison_to_none") if k in c)
    assert ("resample only" in results_markdown(record)) == (n < 30)
    for cond in record["conditions"]:
        for key in ("comparison_to_clean", "comparison_to_none"):
            if key in cond:
                cond[key]["bootstrap"]["clusters"] = 5
    assert "the intervals resample only 5 clusters (people)" in results_markdown(record)
    stats = next(t for t in report_tables(record) if t.key == "statistics")
    assert "resample only 5 clusters" in stats.note
    for cond in record["conditions"]:
        for key in ("comparison_to_clean", "comparison_to_none"):
            if key in cond:
                cond[key]["bootstrap"]["clusters"] = 1290
    assert "resample only" not in results_markdown(record)


def _one_person_record(tmp_path):
    """make_record with every probe the same person: the bootstrap (people of the probes) has one cluster."""
    record = make_record(tmp_path)
    n = len(record["pairs"]["b"])
    record["pairs"]["b"] = [f"lfw-deepfunneled/Madonna/Madonna_{i + 1:04d}.jpg" for i in range(n)]
    return record


def test_a_run_with_one_person_stores_no_interval_and_every_reader_copes(tmp_path, caplog):
    """Resampling one person redraws the same pairs every time: the old code stored the zero-width [d, d], which
    reads as certainty. Now null (with a warning), and results.md, the HTML report, tables.csv/tex and validate
    all read it."""
    import csv

    from restorever.reports.html import build_report
    from restorever.validate.runs import check_run

    out = tmp_path / "run"
    out.mkdir()
    record = add_comparisons(_one_person_record(out), n_boot=50)
    comps = [c[k] for c in record["conditions"] for k in ("comparison_to_none", "comparison_to_clean") if k in c]
    assert comps and all(c["bootstrap"]["clusters"] == 1 for c in comps)
    assert all(c["ci_low"] is None and c["ci_high"] is None for c in comps)
    assert any(c["accuracy_difference"] != 0 for c in comps)
    assert "one person" in caplog.text
    write_run(record, out)
    report = check_run(out, check_cache=False)  # the synthetic run has no degradation.jsonl: not this test's
    assert [p for p in report.problems if "degradation.jsonl" not in p] == []
    md = (out / "results.md").read_text()
    assert "[—]" in md
    files = build_report(out, formats=("png",))
    rows = list(csv.DictReader(files["csv"].open()))
    assert rows and all(r["vs_clean_ci_low"] == "" for r in rows if r["scale"])
    assert "[—]" in files["html"].read_text()


def test_an_older_record_with_a_zero_width_interval_stays_valid(tmp_path):
    """A record written before the change holds [d, d] where this version stores null: validate accepts it with a
    note, and still rejects an interval that is not [d, d]."""
    import json

    from restorever.validate.runs import check_run

    out = tmp_path / "run"
    out.mkdir()
    record = add_comparisons(_one_person_record(out), n_boot=50)
    for cond in record["conditions"]:
        for key in ("comparison_to_none", "comparison_to_clean"):
            if key in cond:
                cond[key]["ci_low"] = cond[key]["ci_high"] = cond[key]["accuracy_difference"]
    write_run(record, out)
    report = check_run(out, check_cache=False)
    assert [p for p in report.problems if "degradation.jsonl" not in p] == []
    assert any("zero-width interval" in n for n in report.notes)
    data = json.loads((out / "results.json").read_text())
    comp = next(c["comparison_to_clean"] for c in data["conditions"] if "comparison_to_clean" in c)
    comp["ci_low"] = comp["accuracy_difference"] - 0.05
    (out / "results.json").write_text(json.dumps(data))
    assert any("ci_low" in p for p in check_run(out, check_cache=False).problems)

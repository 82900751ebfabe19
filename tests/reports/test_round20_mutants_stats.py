"""Known answers for the paired statistics a paper quotes (rate intervals, McNemar, the identity comparison, the
people bootstrap), each closing a gap that the fifth mutation-testing pass found (docs/reliability.md, round 20):
a change to the code that these pin made no test fail. Cross-checks are scipy, brute force or hand computation."""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest

from restorever.metrics.verification import weighted_auc_and_tar
from restorever.reports import identity_stats, paired, rate_stats
from restorever.reports.identity_stats import add_identity_statistics
from restorever.reports.rate_stats import add_rate_comparisons, misread_rules, replicate_far
from restorever.reports.statistics import (add_comparisons, cluster_bootstrap_counts, cluster_bootstrap_difference,
                                           cluster_bootstrap_replicates, fold_weights, percentile_interval)

from .conftest import make_record

# ------------------------------------------------------------------------------------------------ rate intervals


def _largest_k(far: float, n: int) -> int:
    """Brute force: the largest k with ``k / n <= far + 1e-12`` in floats (``tar_at_far``'s own test)."""
    return max(k for k in range(n + 1) if k / n <= far + 1e-12)


def test_replicate_far_is_the_brute_force_cell_even_a_rounding_error_from_its_edge():
    """FARs a few ulps from ``k / N - 1e-12``, where ``floor((far + 1e-12) * N)`` in floats lands one above or
    one below the largest k of ``tar_at_far``'s test: both correcting loops of ``replicate_far`` are needed
    (0.8333333333323333 x 6 floors to 5, yet 5/6 > far + 1e-12; 0.6818181818171818 x 22 floors to 14, yet
    15/22 <= far + 1e-12)."""
    assert replicate_far(0.8333333333323333, 6) == pytest.approx(4.5 / 6)
    assert replicate_far(0.6818181818171818, 22) == pytest.approx(15.5 / 22)
    checked = 0
    for n in range(1, 40):
        for j in range(n + 1):
            far = j / n - 1e-12
            for _ in range(8):
                far = math.nextafter(far, 2.0)
                if 0 < far <= 1:
                    k = _largest_k(far, n)
                    assert replicate_far(far, n) == min((k + 0.5) / n, 1.0), (far, n)
                    checked += 1
    assert checked > 5000


def _rate_record(tmp_path) -> dict:
    """A synthetic run (160 LFW-like pairs of 82 probe people, none and vqfr-v2 at x4 and x16) with its accuracy
    and rate comparisons."""
    record = make_record(tmp_path, examples=0)
    add_comparisons(record, n_boot=50)
    return add_rate_comparisons(record)


def test_an_interval_end_edited_to_null_is_no_misread_rule(tmp_path):
    """A stored ``ci_low`` of null where the recomputation gives a number is damage under the record's own rule:
    ``misread_rules`` names no rule (it compared None with a number as numbers, a TypeError, with ``and`` made
    ``or`` in the number check), and the untouched record names none either."""
    record = _rate_record(tmp_path)
    fresh = copy.deepcopy(record)
    assert misread_rules(record, fresh) == []
    comp = record["conditions"][2]["comparison_to_none"]
    assert (record["conditions"][2]["restorer"], comp["tar_rule"]) == ("vqfr-v2", 2)
    far = next(f for f, v in comp["tar_at_far"].items() if v)
    comp["tar_at_far"][far]["ci_low"] = None
    assert misread_rules(record, fresh) == []


def test_no_undefined_replicate_warning_where_every_replicate_is_defined(tmp_path, caplog):
    """The warning that replicates drew no genuine or no impostor pair is given only when some did: 160 pairs of 82
    people, every replicate holding both kinds (the tiny record of test_rate_stats.py checks it is given there)."""
    with caplog.at_level("WARNING", logger="restorever.reports.rate_stats"):
        record = _rate_record(tmp_path)
    comp = record["conditions"][2]["comparison_to_none"]
    assert comp["auc"]["ci_low"] is not None and comp["auc"]["ci_low"] < comp["auc"]["ci_high"]
    assert "draw no genuine or no impostor pair" not in caplog.text


def test_a_cell_of_nothing_stored_is_a_dash():
    """``rate_cell`` of a FAR this comparison does not resolve (None, while another row's does), of a record's
    damaged entry (not a dict) or of a difference of None is the dash; a stored one is formatted (x100: points),
    without its interval where an end is missing."""
    for nothing in (None, [], "0.1", {"difference": None, "ci_low": 0.1, "ci_high": 0.2}, {}):
        assert rate_stats.rate_cell(nothing) == "—"
        assert rate_stats.rate_cell(nothing, 100, 2) == "—"
    assert rate_stats.rate_cell({"difference": -0.125, "ci_low": -0.25, "ci_high": 0.0}, 100, 2) == (
        "-12.50 [-25.00, +0.00]")
    # one end null (a hand-edited record, which validate names): the difference alone, not a TypeError
    assert rate_stats.rate_cell({"difference": 0.01, "ci_low": None, "ci_high": 0.02}) == "+0.0100"
    assert rate_stats.rate_cell({"difference": 0.01, "ci_low": 0.0, "ci_high": None}) == "+0.0100"


def test_tar_columns_are_listed_largest_far_first_and_blocks_differ_by_a_key_on_one_side():
    """``compared_fars``: every FAR some comparison resolves, largest first, as a table's columns (a set's order
    survived). ``_same_tars``: a FAR entry holding a key the other lacks is not the same block."""
    comps = [{"tar_at_far": {"0.01": {"difference": 0.1}, "0.1": None}},
             {"tar_at_far": {"0.001": {"difference": 0.2}, "0.1": {"difference": 0.0}, "0.0001": None}}, None, {}]
    assert rate_stats.compared_fars(comps) == ["0.1", "0.01", "0.001"]
    one = {"0.1": {"difference": 0.5, "ci_low": 0.1, "ci_high": 0.9}}
    assert rate_stats._same_tars(one, copy.deepcopy(one))
    assert not rate_stats._same_tars(one, {"0.1": {"difference": 0.5, "ci_low": 0.1}})
    assert not rate_stats._same_tars({"0.1": {"difference": 0.5}}, one)
    ends_none = {"0.1": {"difference": 0.5, "ci_low": None, "ci_high": None}, "0.01": None}
    assert rate_stats._same_tars(ends_none, copy.deepcopy(ends_none))  # None equals None (one person's blocks)
    assert not rate_stats._same_tars(one, None) and not rate_stats._same_tars(None, one)  # a block absent on one side
    nearly = {"0.1": {"difference": 0.5 * (1 + 1e-12), "ci_low": 0.1, "ci_high": 0.9}}  # float rounding: the same
    moved = {"0.1": {**one["0.1"], "ci_low": 0.11}}
    assert rate_stats._same_tars(one, nearly) and not rate_stats._same_tars(one, moved)


def test_a_comparison_missing_one_rate_key_gets_both_back(tmp_path, caplog):
    """A stored comparison that lost ``tar_at_far`` (a tool that drops keys) but kept ``auc`` is recomputed whole
    by ``add_rate_comparisons`` without ``overwrite``, to the numbers it had; one resampling people in a record
    without pair ids gets none, with a warning (it would have been one person: no interval)."""
    record = _rate_record(tmp_path)
    comp = record["conditions"][2]["comparison_to_none"]
    whole = copy.deepcopy(comp)
    del comp["tar_at_far"]
    comp["auc"] = {"difference": 9.0}  # replaced too: a comparison missing either key gets both anew
    add_rate_comparisons(record)
    assert comp["tar_at_far"] == whole["tar_at_far"] and comp["auc"]["difference"] != 9.0
    assert comp["auc"] == whole["auc"]
    stripped = copy.deepcopy(record)
    del stripped["pairs"]
    for cond in stripped["conditions"]:
        for key in ("auc", "tar_at_far"):
            (cond.get("comparison_to_none") or {}).pop(key, None)
    with caplog.at_level("WARNING", logger="restorever.reports.rate_stats"):
        add_rate_comparisons(stripped)
    assert not any("auc" in (c.get("comparison_to_none") or {}) for c in stripped["conditions"])
    assert "but the record has no pair ids" in caplog.text
    caplog.clear()
    alone = copy.deepcopy(record)  # none x4 taken out (a trimmed record): vqfr-v2 x4 has no reference, no warning
    del alone["conditions"][1]
    del alone["conditions"][1]["comparison_to_none"]["auc"]
    with caplog.at_level("WARNING", logger="restorever.reports.rate_stats"):
        add_rate_comparisons(alone)
    assert "auc" not in alone["conditions"][1]["comparison_to_none"] and not caplog.text


def test_a_far_neither_condition_stores_gets_no_comparison(tmp_path):
    """Which FARs are compared follows the results table: a FAR that neither condition stores a TAR for (here
    set to null by hand, though the 80 impostor pairs resolve 0.1) gets None, not a difference computed from the
    scores; a FAR one of the two stores is compared. With no FAR compared, both rules agree: no misread rule."""
    record = _rate_record(tmp_path)
    assert record["conditions"][2]["comparison_to_none"]["tar_at_far"]["0.1"] is not None
    for i in (1, 2):  # none and vqfr-v2 at x4
        record["conditions"][i]["verification"]["tar_at_far"]["0.1"] = None
    record["conditions"][4]["verification"]["tar_at_far"]["0.1"] = None  # vqfr-v2 x16 only: none x16 keeps it
    add_rate_comparisons(record, overwrite=True)
    assert record["conditions"][2]["comparison_to_none"]["tar_at_far"]["0.1"] is None
    assert record["conditions"][4]["comparison_to_none"]["tar_at_far"]["0.1"] is not None
    # where no FAR is compared the two rules give the same (empty) blocks: that is no misread rule
    for cond in record["conditions"]:
        cond["verification"]["tar_at_far"]["0.1"] = None
    add_rate_comparisons(record, overwrite=True)
    assert misread_rules(record, copy.deepcopy(record)) == []


def test_two_people_get_a_rate_interval_known_by_hand():
    """Two people, each with one genuine and one impostor pair: a replicate draws P twice, Q twice or both, and
    its AUC difference is 0, 1 or 0.5 (by hand below); the interval is their percentile interval."""
    same = np.array([1, 1, 0, 0])
    people = ["P", "Q", "P", "Q"]
    ref = {"scores": {"same": same.tolist(), "score": [0.9, 0.05, 0.5, 0.1]},
           "verification": {"tar_at_far": {"0.5": 0.5}}}
    oth = {"scores": {"same": same.tolist(), "score": [0.9, 0.6, 0.5, 0.1]},
           "verification": {"tar_at_far": {"0.5": 1.0}}}
    out = rate_stats.compare_rates(ref, oth, people, n_boot=40, seed=5)
    # P alone: genuine 0.9 over impostor 0.5 in both (0); Q alone: 0.05 under 0.1, 0.6 over it (1); both: 0.5
    counts = np.concatenate([c for _, c in cluster_bootstrap_counts(2, n_boot=40, seed=5)])
    by_hand = np.where(counts[:, 0] == 2, 0.0, np.where(counts[:, 1] == 2, 1.0, 0.5))
    assert (out["auc"]["ci_low"], out["auc"]["ci_high"]) == pytest.approx(percentile_interval(by_hand, 0.95))
    assert out["auc"]["ci_low"] < out["auc"]["ci_high"]


# ------------------------------------------------------------------------------------------------ bootstrap


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_bootstrap_weights_must_each_be_positive_and_finite(bad):
    """One zero, negative, NaN or infinite pair weight is refused (a zero-weight person would still be drawn and
    could make a replicate 0/0); so are weights of another length."""
    ref, oth = np.array([1, 0, 1, 1], bool), np.array([1, 1, 0, 1], bool)
    w = np.array([1.0, 2.0, bad, 1.0])
    with pytest.raises(ValueError, match="weights must be one positive finite number per pair"):
        cluster_bootstrap_difference(ref, oth, np.arange(4), weights=w, n_boot=10)
    with pytest.raises(ValueError, match="weights must be one positive finite number per pair"):
        cluster_bootstrap_difference(ref, oth, np.arange(4), weights=np.ones(3), n_boot=10)
    with pytest.raises(ValueError, match="weights must be one positive finite number per value"):
        cluster_bootstrap_replicates([0.0, 1.0, 0.5, 1.0], np.arange(4), weights=w, n_boot=10)
    # the same weights made valid give the weighted difference: (2 * 1 + 0.5 * -1) / 4.5
    ok = cluster_bootstrap_difference(ref, oth, np.arange(4), weights=[1.0, 2.0, 0.5, 1.0], n_boot=10)
    assert ok.difference == pytest.approx(1.5 / 4.5)


def test_the_accuracy_comparison_stores_the_bootstrap_standard_deviation():
    """``bootstrap.std`` is the sample standard deviation (ddof 1) of the replicate differences, each the mean of
    the fold accuracies (fold weights) of the resampled pairs, recomputed here with the same draws."""
    rng = np.random.default_rng(8)
    y = np.r_[np.ones(40, int), np.zeros(40, int)]
    folds, people = np.arange(80) % 4, rng.integers(0, 15, 80)
    sa, sb = rng.normal(size=80) + y, rng.normal(size=80) + 1.5 * y
    out = paired.paired_accuracy_test(y, sa, sb, folds, people=people, n_boot=60, seed=2)
    assert set(out["bootstrap"]) == {"n_boot", "std", "seed", "clusters", "resampled"}
    thr = {k: np.asarray(v)[folds] for k, v in out["thresholds"].items()}
    diff = ((sb > thr["b"]) == y).astype(float) - ((sa > thr["a"]) == y).astype(float)
    _, cl = np.unique([{p: i for i, p in reversed(list(enumerate(people)))}[p] for p in people],
                      return_inverse=True)
    reps, k = cluster_bootstrap_replicates(diff, cl, weights=fold_weights(folds), n_boot=60, seed=2)
    assert k == out["bootstrap"]["clusters"] and out["bootstrap"]["std"] == pytest.approx(np.std(reps, ddof=1))


# ------------------------------------------------------------------------------------------------ identity


def test_the_identity_comparison_names_its_reference(tmp_path):
    """``identity_comparison_to_none.reference`` is the ``none`` condition it was computed against, at the same
    scale (the tables and compare read it)."""
    record = add_identity_statistics(make_record(tmp_path, examples=0), n_boot=20)
    compared = [c for c in record["conditions"] if "identity_comparison_to_none" in c]
    assert [(c["restorer"], c["scale"]) for c in compared] == [("vqfr-v2", 4), ("vqfr-v2", 16)]
    for cond in compared:
        assert cond["identity_comparison_to_none"]["reference"] == {"restorer": "none", "scale": cond["scale"]}


def test_an_interval_without_its_cosines_is_named_as_such(tmp_path):
    """A record whose ``identity.per_item`` was removed (a tool that strips the long lists) but keeps the stored
    interval: the check says the interval cannot be recomputed, not that its ends changed; an intact record has
    no problem in the same check."""
    from restorever.reports.identity_stats import identity_statistics_problems

    def compare(old, new, where, out):
        out.extend(f"{where}.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))

    record = add_identity_statistics(make_record(tmp_path, examples=0), n_boot=20)
    assert identity_statistics_problems(record, compare) == ([], 6)  # 4 degraded intervals (not clean), 2 comparisons
    stripped = copy.deepcopy(record)
    del stripped["conditions"][1]["identity"]["per_item"]  # none at x4: its interval, and vqfr-v2's comparison
    problems, _ = identity_statistics_problems(stripped, compare)
    assert problems == ["conditions[1] (none x4).identity.ci_low: stored but not recomputed (no per_item cosines)",
                        "conditions[2] (vqfr-v2 x4).identity_comparison_to_none: stored but not recomputed",
                        # the Holm family of the sign-flip tests lost x4's, so x16's p_holm and family_size differ
                        "conditions[4] (vqfr-v2 x16).identity_comparison_to_none.sign_flip"], problems


# ------------------------------------------------------------------------------------------------ paired.py


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_paired_tests_refuse_nan_person_labels_and_name_a_nan_score(bad):
    """Float person labels with NaN (a missing value read from a table) are refused: each NaN would otherwise be
    a person of its own, narrowing the interval silently. A NaN score is named with its system and pair (image)."""
    people = np.array([0.0, 0.0, 1.0, bad, 2.0, 2.0, 3.0, 3.0])
    y, folds = np.array([1, 0] * 4), np.arange(8) % 2
    with pytest.raises(ValueError, match="paired_accuracy_test: people contains NaN or infinite labels"):
        paired.paired_accuracy_test(y, np.linspace(0, 1, 8), np.linspace(1, 0, 8), folds, people=people, n_boot=10)
    with pytest.raises(ValueError, match="paired_similarity_test: people contains NaN or infinite labels"):
        paired.paired_similarity_test(np.linspace(0, 1, 8), np.linspace(1, 0, 8), people=people, n_boot=10)
    with pytest.raises(ValueError, match=r"paired_accuracy_test: scores_b contains NaN or infinite values \(pair 5\)"):
        paired.paired_accuracy_test(y, np.linspace(0, 1, 8), [0.1] * 5 + [np.nan] * 3, folds, people=np.arange(8))
    with pytest.raises(ValueError, match=r"paired_similarity_test: similarity_a contains NaN or infinite values "
                                         r"\(image 2\)"):
        paired.paired_similarity_test([0.1, 0.2, -np.inf], [0.1] * 3, people=np.arange(3))
    # integer-valued float labels are fine: four people
    out = paired.paired_similarity_test(np.linspace(0, 1, 8), np.linspace(1, 0, 8), people=np.repeat([0.0, 1, 2, 3], 2),
                                        n_boot=10)
    assert out["bootstrap"]["clusters"] == 4


@pytest.mark.parametrize("level", [95, 1.0, 0.0, -0.5, float("nan")])
def test_every_paired_interval_refuses_a_level_outside_0_1(level):
    """``paired_similarity_test`` (``compare_identity``) and ``compare_rates`` took any level: 1.0 gave the
    replicates' minimum and maximum as a "100 %" interval and 0.0 a zero-width one, stored as ``ci_level`` (the
    schema allows (0, 1) only), and 95 a numpy error about quantiles; ``paired_accuracy_test`` already refused them.
    Now all three name the level, also with one person (no interval drawn, but the level stored)."""
    sim = dict(people=np.repeat([0, 1, 2, 3], 2), level=level, n_boot=20)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got .*0\.95 for a 95 % interval"):
        paired.paired_similarity_test(np.linspace(0, 1, 8), np.linspace(0.2, 1, 8) ** 2, **sim)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        paired.paired_similarity_test([0.1, 0.3], [0.2, 0.2], people=[7, 7], level=level)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        paired.paired_accuracy_test(np.array([1, 0] * 4), np.linspace(0, 1, 8), np.linspace(1, 0, 8),
                                    np.arange(8) // 4, people=np.arange(8), level=level, n_boot=20)
    cond = {"scores": {"same": [1, 0] * 10, "score": np.linspace(0, 1, 20).tolist()},
            "verification": {"tar_at_far": {"0.1": 0.5}}}
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got .*0\.95 for a 95 % interval"):
        rate_stats.compare_rates(cond, cond, np.arange(20) // 2, n_boot=20, level=level)
    # a level inside (0, 1) is taken: 0.5 gives the replicates' quartiles
    out = paired.paired_similarity_test(np.linspace(0, 1, 8), np.linspace(0.2, 1, 8) ** 2, **{**sim, "level": 0.5})
    assert out["ci_level"] == 0.5 and out["ci_low"] < out["ci_high"]


def test_rule_2_reads_at_the_impostor_count_when_the_classes_differ_in_size():
    """30 genuine and 90 impostor pairs: rule 2's replicates read TAR at replicate_far(FAR, 90) = 9.5/90 at FAR
    0.1, N the impostor pairs (every test before had as many genuine as impostor pairs, so N the genuine count
    survived). The interval is the percentile interval of the replicate differences computed here row by row."""
    rng = np.random.default_rng(7)
    same = np.r_[np.ones(30, int), np.zeros(90, int)]
    clusters = rng.integers(0, 25, same.size)
    base = rng.normal(size=same.size)
    s_ref, s_oth = base + 1.2 * same, base + 1.6 * same + 0.4 * rng.normal(size=same.size)
    cond = {name: {"scores": {"same": same.tolist(), "score": s.tolist()},
                   "verification": {"tar_at_far": {"0.1": 0.5}}} for name, s in (("ref", s_ref), ("oth", s_oth))}
    out = rate_stats.compare_rates(cond["ref"], cond["oth"], clusters, n_boot=80, seed=3)
    assert replicate_far(0.1, 90) == pytest.approx(9.5 / 90)
    _, cl = np.unique(clusters, return_inverse=True)
    weights = np.concatenate([c for _, c in cluster_bootstrap_counts(cl.max() + 1, n_boot=80, seed=3)])[:, cl]
    rate = [9.5 / 90]
    diffs = weighted_auc_and_tar(same, s_oth, weights, rate)[1][:, 0] - weighted_auc_and_tar(same, s_ref, weights,
                                                                                          rate)[1][:, 0]
    low, high = percentile_interval(diffs, 0.95)
    tar = out["tar_at_far"]["0.1"]
    assert (tar["ci_low"], tar["ci_high"]) == pytest.approx((low, high), abs=1e-12) and low < high


def test_the_identity_comparison_skips_cosines_that_are_not_finite_numbers():
    """A stored cosine that is NaN, infinite, a boolean or text is no cosine: both conditions drop it (the rest
    are compared), so n counts the finite ones and the means are theirs."""
    ref = {"a/1": 0.5, "b/1": float("nan"), "c/1": True, "d/1": 0.7, "e/1": float("inf"), "f/1": "0.9"}
    oth = {**ref, "a/1": 0.6, "d/1": 0.9}
    out = identity_stats.compare_identity({"restorer": "none", "identity": {"per_item": ref}},
                                          {"restorer": "x", "identity": {"per_item": oth}}, n_boot=20)
    assert out["n"] == 2 and out["bootstrap"]["clusters"] == 2
    assert (out["cosine_reference"], out["cosine"], out["cosine_difference"]) == pytest.approx((0.6, 0.75, 0.15))


def test_one_monte_carlo_sign_flip_draw_is_allowed():
    """``n_draws`` 1 is the smallest Monte Carlo test (p = (1 + hits) / 2: 1/2 or 1); 0 is refused. 25 people
    with differences of one sign: the single random sign vector reaches the observed sum only if it flips none
    or all, so p is 1/2 for this seed."""
    d = np.linspace(0.01, 0.25, 25)
    res = identity_stats.sign_flip_test(d, n_draws=1, seed=0)
    assert (res["method"], res["n_draws"], res["p_value"]) == ("monte carlo", 1, 0.5)
    with pytest.raises(ValueError, match="n_draws must be positive, got 0"):
        identity_stats.sign_flip_test(d, n_draws=0)


def test_paired_accuracy_test_names_inputs_of_different_lengths():
    """Scores, labels and folds of different lengths are named together with their shapes, before any other
    check reads them."""
    y, s = np.array([1, 0] * 4), np.linspace(0, 1, 8)
    with pytest.raises(ValueError, match=r"must be 1-D of equal length, got shapes \(8,\), \(8,\), \(7,\) and \(8,\)"):
        paired.paired_accuracy_test(y, s, s[:7], np.arange(8) % 2, people=np.arange(8))
    with pytest.raises(ValueError, match=r"equal length, got shapes \(8,\), \(8,\), \(8,\) and \(2, 4\)"):
        paired.paired_accuracy_test(y, s, s, (np.arange(8) % 2).reshape(2, 4), people=np.arange(8))


def test_one_person_gets_the_rate_differences_without_intervals():
    """All pairs of one person: the AUC and TAR differences are stored (computed on the observed pairs, by hand
    below), their interval ends are None (every replicate redraws the same pairs). The FARs that two impostor pairs
    cannot resolve are None, without tar_at_far's warning for each."""
    same = np.array([1, 1, 0, 0])
    ref = {"scores": {"same": same.tolist(), "score": [0.9, 0.05, 0.5, 0.1]},
           "verification": {"tar_at_far": {"0.5": 0.5, "0.01": None, "0.001": None}}}
    oth = {"scores": {"same": same.tolist(), "score": [0.9, 0.6, 0.5, 0.1]},
           "verification": {"tar_at_far": {"0.5": 1.0, "0.01": None, "0.001": None}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FAR 0.01 and 0.001 of its reference are not resolved: no warning for that
        out = rate_stats.compare_rates(ref, oth, ["P"] * 4, n_boot=20)
    assert out["tar_at_far"]["0.01"] is None and out["tar_at_far"]["0.001"] is None
    # AUC: none's genuine 0.9 beats both impostors, 0.05 neither (2 of 4 orderings right); the other's 0.6 beats both
    assert (out["auc"]["reference"], out["auc"]["value"], out["auc"]["difference"]) == (0.5, 1.0, 0.5)
    assert (out["auc"]["ci_low"], out["auc"]["ci_high"]) == (None, None)
    # FAR 0.5 accepts the impostor 0.5 but not 0.1: none's TAR 1/2 (0.9), the other's 1 (0.9 and 0.6)
    assert out["tar_at_far"]["0.5"] == {"reference": 0.5, "value": 1.0, "difference": 0.5, "ci_low": None,
                                        "ci_high": None}
    with pytest.raises(ValueError, match="3 cluster ids for 4 pairs"):
        rate_stats.compare_rates(ref, oth, ["P"] * 3, n_boot=20)
    with pytest.raises(ValueError, match="the two conditions do not score the same pairs"):
        rate_stats.compare_rates(ref, {**oth, "scores": {**oth["scores"], "same": [1, 0, 1, 0]}}, ["P"] * 4)

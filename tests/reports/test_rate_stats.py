"""Paired AUC and TAR@FAR intervals (restorer vs none): hand-computed values on a tiny record, every replicate
against scikit-learn on the explicitly resampled pairs, a real dlib LFW run, results.json, the tables and
validate."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from restorever.metrics.verification import tar_at_far, verification_report, weighted_auc_and_tar
from restorever.reports.rate_stats import add_rate_comparisons, compare_rates, replicate_far, resolved_fars
from restorever.reports.statistics import add_comparisons, cluster_bootstrap_counts, percentile_interval

from .conftest import as_rule_1, make_record

NEG = [0.6, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.4]


def _cond(restorer, scores, same, fold):
    return {"restorer": restorer, "scale": 8, "recognizer": "dlib",
            "verification": verification_report(same, scores, fold),
            "scores": {"same": same.tolist(), "fold": fold.tolist(), "score": list(scores)}}


def _tiny_record():
    """2 genuine and 10 impostor pairs, 12 people (one per probe); none and a restorer at x8."""
    same = np.array([1, 1] + [0] * 10)
    fold = np.arange(12) % 2
    b = [f"lfw/P{i}/P{i}_0001.jpg" for i in range(12)]
    a = [f"lfw/Q{i}/Q{i}_0001.jpg" for i in range(12)]
    return {"config": {"seed": 0}, "pairs": {"a": a, "b": b},
            "conditions": [_cond("none", [0.9, 0.35] + NEG, same, fold),
                           _cond("vqfr-v2", [0.9, 0.7] + NEG, same, fold)]}


def test_tiny_record_hand_computed(caplog):
    record = add_comparisons(_tiny_record(), n_boot=200)
    add_rate_comparisons(record)
    comp = record["conditions"][1]["comparison_to_none"]
    # none: genuine 0.9 beats all 10 impostors, 0.35 beats 8 of 10 -> AUC 18/20; the restorer's 0.7 beats all -> 1
    assert comp["auc"]["reference"] == pytest.approx(0.9) and comp["auc"]["value"] == pytest.approx(1.0)
    assert comp["auc"]["difference"] == pytest.approx(0.1)
    assert comp["auc"]["reference"] == record["conditions"][0]["verification"]["auc"]
    # FAR 0.1 = at most one impostor of 10 accepted (the 0.6; 0.4 must be refused): none accepts 0.9 but not 0.35
    # (TAR 1/2), the restorer both
    tar = comp["tar_at_far"]
    assert (tar["0.1"]["reference"], tar["0.1"]["value"], tar["0.1"]["difference"]) == (0.5, 1.0, 0.5)
    # 10 impostors cannot resolve FAR 0.01 or below
    assert tar["0.01"] is None and tar["0.001"] is None and tar["0.0001"] is None
    assert resolved_fars(record["conditions"]) == ["0.1"]
    # two genuine pairs among 12 people: some replicates draw neither, so no interval, and the log says why
    assert comp["auc"]["ci_low"] is None and tar["0.1"]["ci_high"] is None
    assert "draw no genuine or no impostor pair" in caplog.text
    assert "auc" not in record["conditions"][0]  # none itself gets no comparison


def test_every_replicate_is_sklearn_on_the_resampled_pairs():
    """The interval is the percentile interval of differences that scikit-learn's roc_auc_score (and
    restorever's tar_at_far) give on the pairs each replicate draws, listed one by one: under rule 1 TAR at the FAR
    itself, under rule 2 at replicate_far (120 impostors, FAR 0.1: 12 of them, a whole number)."""
    rng = np.random.default_rng(5)
    n, people = 240, 40
    same = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    clusters = rng.integers(0, people, n)
    base = rng.normal(size=n)
    ref = {"scores": {"same": same.tolist(), "score": (base + 1.0 * same).round(2).tolist()},
           "verification": {"tar_at_far": {"0.1": 0.5, "0.01": 0.2, "0.001": None}}}
    oth = {"scores": {"same": same.tolist(), "score": (base + 1.5 * same + 0.3 * rng.normal(size=n)).tolist()},
           "verification": {"tar_at_far": {"0.1": 0.6, "0.01": 0.3, "0.001": None}}}
    n_boot, seed = 60, 11
    out = compare_rates(ref, oth, clusters, n_boot=n_boot, seed=seed, chunk=16)
    out1 = compare_rates(ref, oth, clusters, n_boot=n_boot, seed=seed, chunk=16, tar_rule=1)
    mid = replicate_far(0.1, n // 2)
    _, cl = np.unique(clusters, return_inverse=True)
    auc_diffs, tar_diffs, tar_diffs1 = [], [], []
    for _, counts in cluster_bootstrap_counts(cl.max() + 1, n_boot=n_boot, seed=seed, chunk=16):
        for row in counts:
            idx = np.repeat(np.arange(n), row[cl].astype(int))  # every pair as many times as its person was drawn
            y = same[idx]
            a = roc_auc_score(y, np.asarray(ref["scores"]["score"])[idx])
            b = roc_auc_score(y, np.asarray(oth["scores"]["score"])[idx])
            auc_diffs.append(b - a)
            for far, diffs in ((0.1, tar_diffs1), (mid, tar_diffs)):
                diffs.append(tar_at_far(y, np.asarray(oth["scores"]["score"])[idx], far)
                             - tar_at_far(y, np.asarray(ref["scores"]["score"])[idx], far))
            w = weighted_auc_and_tar(same, ref["scores"]["score"], row[cl][None, :], [0.1])
            assert w[0][0] == pytest.approx(a, abs=1e-12)
    assert len(auc_diffs) == n_boot
    assert (out["auc"]["ci_low"], out["auc"]["ci_high"]) == pytest.approx(percentile_interval(np.array(auc_diffs),
                                                                                              0.95), abs=1e-12)
    assert (out["tar_at_far"]["0.1"]["ci_low"], out["tar_at_far"]["0.1"]["ci_high"]) == pytest.approx(
        percentile_interval(np.array(tar_diffs), 0.95), abs=1e-12)
    assert (out1["tar_at_far"]["0.1"]["ci_low"], out1["tar_at_far"]["0.1"]["ci_high"]) == pytest.approx(
        percentile_interval(np.array(tar_diffs1), 0.95), abs=1e-12)
    assert tar_diffs != tar_diffs1 and out1["auc"] == out["auc"]
    assert out["tar_at_far"]["0.001"] is None and out["tar_at_far"]["0.01"] is not None


def test_the_same_draws_as_the_accuracy_interval():
    """One implementation of the draws: the accuracy replicates are the means under the counts the rate
    bootstrap uses."""
    from restorever.reports.statistics import cluster_bootstrap_replicates

    rng = np.random.default_rng(2)
    values, clusters = rng.random(50), rng.integers(0, 9, 50)
    reps, k = cluster_bootstrap_replicates(values, clusters, n_boot=40, seed=3, chunk=7)
    _, cl = np.unique(clusters, return_inverse=True)
    counts = np.concatenate([c for _, c in cluster_bootstrap_counts(k, n_boot=40, seed=3, chunk=7)])
    assert np.allclose(reps, (counts[:, cl] @ values) / counts[:, cl].sum(axis=1))


def test_real_dlib_lfw_run(lfw_root, shared_lfw_cache, tmp_path):
    """60 real LFW pairs (MTCNN + dlib, no restorer): the x8 faces as the 'restored' side of the x32 ones (the same
    probes, a milder degradation); the differences are those of the stored AUC and TAR, FAR 0.1 is the only one
    30 impostor pairs resolve."""
    from restorever.cli import cli

    result = CliRunner().invoke(cli, ["eval", "--protocol", "lfw", "--data-root", str(lfw_root), "--limit-pairs", "60",
                                      "--scales", "8,32", "--recognizer", "dlib", "--restorer", "none",
                                      "--cache-dir", str(shared_lfw_cache), "--out", str(tmp_path / "run"),
                                      "--no-progress", "--examples", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    conds = {c["scale"]: c for c in record["conditions"]}
    milder = copy.deepcopy(conds[8])
    for key in ("comparison_to_clean", "comparison_to_none", "identity_comparison_to_none"):
        milder.pop(key, None)
    milder.update(restorer="x8-as-restored", scale=32)
    record["conditions"].append(milder)
    add_comparisons(record, n_boot=500, overwrite=True)
    add_rate_comparisons(record)
    comp = milder["comparison_to_none"]
    v8, v32 = conds[8]["verification"], conds[32]["verification"]
    assert comp["auc"]["difference"] == pytest.approx(v8["auc"] - v32["auc"], abs=1e-12)
    assert comp["auc"]["value"] > comp["auc"]["reference"]
    assert comp["auc"]["ci_low"] <= comp["auc"]["difference"] <= comp["auc"]["ci_high"]
    assert comp["tar_at_far"]["0.1"]["difference"] == pytest.approx(v8["tar_at_far"]["0.1"]
                                                                    - v32["tar_at_far"]["0.1"], abs=1e-12)
    assert [f for f, v in comp["tar_at_far"].items() if v is not None] == ["0.1"]
    assert comp["bootstrap"]["clusters"] > 20


def test_results_tables_report_and_validate(tmp_path):
    from restorever.reports.html import build_report
    from restorever.reports.results import write_run
    from restorever.reports.tables import CSV_COLUMNS, results_table_rows
    from restorever.validate import check_run

    write_run(make_record(tmp_path, examples=0), tmp_path)
    path = tmp_path / "results.json"
    stored = json.loads(path.read_text())
    cond = next(c for c in stored["conditions"] if c["restorer"] != "none" and c["scale"] == 16)
    comp = cond["comparison_to_none"]
    assert comp["auc"]["difference"] > 0 and comp["tar_at_far"]["0.1"] is not None
    assert {"vs_none_auc_difference", "vs_none_tar_at_far_0.001_ci_high"} <= set(CSV_COLUMNS)
    row = next(r for r in results_table_rows(stored) if (r["restorer"], r["scale"]) == ("vqfr-v2", 16))
    assert row["vs_none_auc_ci_low"] == comp["auc"]["ci_low"]
    assert row["vs_none_tar_at_far_0.1_difference"] == comp["tar_at_far"]["0.1"]["difference"]
    assert row["vs_none_tar_at_far_0.001_difference"] is None

    baseline = check_run(tmp_path, check_cache=False).problems
    assert not any("auc" in p or "tar_at_far" in p or "schema" in p for p in baseline), baseline
    for edit, where in [(("auc", "difference"), "comparison_to_none.auc.difference"),
                        (("tar_at_far", "0.1", "ci_low"), "comparison_to_none.tar_at_far.0.1.ci_low")]:
        edited = copy.deepcopy(stored)
        target = next(c for c in edited["conditions"] if c["restorer"] != "none" and c["scale"] == 16)
        target = target["comparison_to_none"]
        for key in edit[:-1]:
            target = target[key]
        target[edit[-1]] += 0.01
        path.write_text(json.dumps(edited))
        new = [p for p in check_run(tmp_path, check_cache=False).problems if p not in baseline]
        assert len(new) == 1 and where in new[0], new

    older = copy.deepcopy(stored)  # written before these keys: valid as it is, and the report completes it
    for c in older["conditions"]:
        for key in ("auc", "tar_at_far"):
            (c.get("comparison_to_none") or {}).pop(key, None)
    path.write_text(json.dumps(older))
    assert check_run(tmp_path, check_cache=False).problems == baseline
    out = build_report(tmp_path)
    md = out["markdown"].read_text()
    assert "AUC and TAR@FAR: restorer against none" in md
    section = md.split("AUC and TAR@FAR: restorer against none", 1)[1]
    line = next(x for x in section.splitlines() if x.startswith("| vqfr-v2 x16 | none x16 |"))
    assert f"{comp['auc']['difference']:+.4f} [{comp['auc']['ci_low']:+.4f}, {comp['auc']['ci_high']:+.4f}]" in line
    header = out["csv"].read_text().splitlines()[0].split(",")
    values = out["csv"].read_text().splitlines()[-1].split(",")
    assert float(values[header.index("vs_none_auc_difference")]) == pytest.approx(comp["auc"]["difference"])
    assert json.loads(path.read_text()) == older  # report leaves results.json as it is


def test_validate_flags_added_or_removed_rate_entries(tmp_path):
    """The FAR keys of comparison_to_none.tar_at_far follow from the data (those of verification.tar_at_far), so a
    stored entry the recomputation lacks (a fabricated FAR column in the report) or a recomputed one the record lacks
    (a resolved FAR hidden from it) is an edit; so is one rate key without the other."""
    from restorever.reports.results import write_run
    from restorever.validate import check_run

    write_run(make_record(tmp_path, examples=0), tmp_path)
    path = tmp_path / "results.json"
    stored = json.loads(path.read_text())
    baseline = check_run(tmp_path, check_cache=False).problems
    where = "conditions[4] (vqfr-v2 x16).comparison_to_none"

    def extra(comp):
        comp["tar_at_far"]["0.05"] = dict(comp["tar_at_far"]["0.1"])

    for edit, expected in [(extra, f"{where}.tar_at_far.0.05: stored but not recomputed"),
                           (lambda comp: comp["tar_at_far"].pop("0.1"), f"{where}.tar_at_far.0.1: missing"),
                           (lambda comp: comp["tar_at_far"].pop("0.001"), f"{where}.tar_at_far.0.001: missing"),
                           (lambda comp: comp.pop("auc"), f"{where}.auc: missing"),
                           (lambda comp: comp.pop("tar_at_far"), f"{where}.tar_at_far: missing")]:
        edited = copy.deepcopy(stored)
        target = edited["conditions"][4]
        assert (target["restorer"], target["scale"]) == ("vqfr-v2", 16)
        edit(target["comparison_to_none"])
        path.write_text(json.dumps(edited))
        new = [p for p in check_run(tmp_path, check_cache=False).problems if p not in baseline]
        assert new == [expected], new


def test_replicate_far_reads_the_observed_tar_and_the_middle_of_its_cell():
    """Rule 2's rate is (k + 1/2) / N, k the impostors tar_at_far accepts at the FAR among N: on the observed pairs
    it gives the TAR of the FAR itself, at whole-number FAR x N and between them (brute force over FARs)."""
    assert replicate_far(0.001, 3000) == pytest.approx(3.5 / 3000)  # FAR x N = 3: the whole-number boundary
    assert replicate_far(0.00115, 3000) == replicate_far(0.001, 3000)  # 3.45: the same cell
    assert replicate_far(0.000999, 3000) == pytest.approx(2.5 / 3000)
    assert replicate_far(0.1, 80) == pytest.approx(8.5 / 80) and replicate_far(1.0, 80) == 1.0
    rng = np.random.default_rng(4)
    same = np.r_[np.ones(200, int), np.zeros(300, int)]
    score = np.round(rng.normal(size=500) + 1.5 * same, 1)  # rounded: tied scores, steps of several impostors
    for far in [j / 300 for j in range(1, 40)] + list(rng.uniform(1 / 300, 0.2, 40)):
        assert tar_at_far(same, score, replicate_far(far, 300)) == tar_at_far(same, score, far), far
    with pytest.raises(ValueError, match="n_negatives"):
        replicate_far(0.1, 0)


def _clustered_study(seed: int, people: int = 500, n: int = 1000):
    """LFW-like synthetic pairs: ``n`` genuine and ``n`` impostor pairs clustered by probe person, person effects,
    two correlated conditions (none, and a restorer that separates the classes better)."""
    rng = np.random.default_rng(seed)
    who = np.r_[rng.integers(0, people, n), rng.integers(0, people, n)]
    same = np.r_[np.ones(n, int), np.zeros(n, int)]
    person = rng.normal(0, 0.6, people)[who]
    noise = rng.normal(size=2 * n)
    none = 3.0 * same + person + noise
    restored = 3.4 * same + person + 0.7 * noise + 0.7 * rng.normal(size=2 * n)
    cond = {name: {"scores": {"same": same.tolist(), "score": s.tolist()},
                   "verification": {"tar_at_far": {"0.003": 0.5, "0.0034": 0.5}}}
            for name, s in (("none", none), ("restored", restored))}
    return same, who, cond


def test_rule_2_reads_one_operating_point_whatever_impostor_weight_a_replicate_draws():
    """FAR 0.003 of 1,000 impostor pairs (FAR x N = 3): under rule 1 the replicates that draw less impostor weight
    than observed (about half) accept an impostor fewer than the others, so the replicate TARs mix two operating
    points, the replicates with W >= N reading clearly higher; under rule 2 both halves read the same point."""
    same, who, cond = _clustered_study(seed=2)
    _, cl = np.unique(who, return_inverse=True)
    score = np.asarray(cond["none"]["scores"]["score"])
    counts = np.concatenate([c for _, c in cluster_bootstrap_counts(cl.max() + 1, n_boot=2000, seed=1)])
    weights = counts[:, cl]
    fewer = weights[:, same == 0].sum(axis=1) < 1000
    rule1 = weighted_auc_and_tar(same, score, weights, [0.003])[1][:, 0]
    rule2 = weighted_auc_and_tar(same, score, weights, [replicate_far(0.003, 1000)])[1][:, 0]
    assert 0.4 < np.mean(fewer) < 0.6
    gap1 = np.median(rule1[~fewer]) - np.median(rule1[fewer])
    gap2 = np.median(rule2[~fewer]) - np.median(rule2[fewer])
    assert gap1 > 0.02 and abs(gap2) < 0.01, (gap1, gap2)
    assert np.all(rule1[fewer] <= rule2[fewer]) and np.all(rule1[~fewer] >= rule2[~fewer])
    # the observed pairs: every rule reads the TAR of the FAR itself
    assert weighted_auc_and_tar(same, score, np.ones((1, same.size)), [replicate_far(0.003, 1000)])[1][0, 0] == (
        tar_at_far(same, score, 0.003))


def test_rule_2_interval_is_the_same_across_a_cell():
    """The observed TAR is the same at FAR 0.003 and 0.0034 (both accept 3 of 1,000 impostors); rule 2 gives them
    the same interval too, while rule 1's interval at the whole-number FAR differs from the one just off it. Rule
    1 stays available for records that store no rule; the AUC does not depend on it."""
    same, who, cond = _clustered_study(seed=3)
    new = compare_rates(cond["none"], cond["restored"], who, n_boot=1000, seed=2)
    old = compare_rates(cond["none"], cond["restored"], who, n_boot=1000, seed=2, tar_rule=1)
    assert new["tar_rule"] == 2 and old["tar_rule"] == 1
    on, off = new["tar_at_far"]["0.003"], new["tar_at_far"]["0.0034"]
    assert on == off and old["tar_at_far"]["0.003"]["difference"] == on["difference"]
    assert old["tar_at_far"]["0.003"] != old["tar_at_far"]["0.0034"]
    assert new["auc"] == old["auc"]
    with pytest.raises(ValueError, match="tar_rule"):
        compare_rates(cond["none"], cond["restored"], who, n_boot=10, tar_rule=3)


def test_old_records_validate_by_rule_1_and_new_ones_by_theirs(tmp_path):
    """A record written before tar_rule (its intervals by rule 1, no key) validates clean; so does a new one (rule
    2, stored). Rule-1 numbers under a stored rule 2, or rule-2 numbers with the key removed, are named."""
    from restorever.reports.results import write_run
    from restorever.validate import check_run

    write_run(make_record(tmp_path, examples=0), tmp_path)
    path = tmp_path / "results.json"
    stored = json.loads(path.read_text())
    comp = stored["conditions"][4]["comparison_to_none"]
    assert comp["tar_rule"] == 2 and comp["tar_at_far"]["0.1"] is not None  # 80 impostors: FAR x N = 8
    baseline = check_run(tmp_path, check_cache=False).problems
    assert not any("tar_at_far" in p or "tar_rule" in p for p in baseline), baseline

    older = as_rule_1(stored)  # every comparison by rule 1, as the version before the key did
    old_tar = older["conditions"][4]["comparison_to_none"]["tar_at_far"]["0.1"]
    assert (old_tar["ci_low"], old_tar["ci_high"]) != (comp["tar_at_far"]["0.1"]["ci_low"],
                                                       comp["tar_at_far"]["0.1"]["ci_high"])
    path.write_text(json.dumps(older))
    assert check_run(tmp_path, check_cache=False).problems == baseline

    for record, label in [(older, "rule 1 numbers under tar_rule 2"), (stored, "rule 2 numbers without tar_rule")]:
        edited = copy.deepcopy(record)
        c = edited["conditions"][4]["comparison_to_none"]
        if "tar_rule" in c:
            c.pop("tar_rule")
        else:
            c["tar_rule"] = 2
        path.write_text(json.dumps(edited))
        new = [p for p in check_run(tmp_path, check_cache=False).problems if p not in baseline]
        assert any("comparison_to_none.tar_at_far.0.1.ci_" in p for p in new), (label, new)
    edited = copy.deepcopy(stored)
    edited["conditions"][4]["comparison_to_none"]["tar_rule"] = 3  # a rule this version does not know
    path.write_text(json.dumps(edited))
    new = [p for p in check_run(tmp_path, check_cache=False).problems if p not in baseline]
    assert new == ["conditions[4].comparison_to_none.tar_rule: expected one of [1, 2], got 3"], new

"""Intervals and paired tests of the identity metric (cosine to clean): hand-computed values on a tiny record,
brute-force and scipy cross-checks of the sign-flip test, a real dlib run, and results.json, the tables and
validate."""
from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
from scipy import stats

from restorever.reports.identity_stats import (IDENTITY_KIND, add_identity_statistics, compare_identity,
                                               identity_interval, identity_statistics_problems, sign_flip_test)
from restorever.reports.statistics import cluster_bootstrap_replicates, percentile_interval

from .conftest import make_record


def _brute_force_p(d) -> float:
    """Two-sided sign-flip p over all 2^K sign vectors, one vector at a time."""
    d = [float(x) for x in d if x != 0]
    observed = abs(sum(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed - 1e-12
               for signs in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


def _cond(restorer, scale, per_item):
    return {"restorer": restorer, "scale": scale, "recognizer": "dlib",
            "identity": {"cosine_to_clean_mean": float(np.mean(list(per_item.values()))), "n": len(per_item),
                         "per_item": dict(per_item)}}


def _tiny_record():
    """3 people (A with two probes) at x8 and x16; the restorer raises every person's cosine at x16."""
    none16 = {"A/A_1.jpg": 0.50, "A/A_2.jpg": 0.60, "B/B_1.jpg": 0.40, "C/C_1.jpg": 0.70}
    rest16 = {"A/A_1.jpg": 0.60, "A/A_2.jpg": 0.70, "B/B_1.jpg": 0.60, "C/C_1.jpg": 1.00}
    none8 = {"A/A_1.jpg": 0.80, "A/A_2.jpg": 0.80, "B/B_1.jpg": 0.70, "C/C_1.jpg": 0.90}
    rest8 = {"A/A_1.jpg": 0.70, "A/A_2.jpg": 0.80, "B/B_1.jpg": 0.80, "C/C_1.jpg": 0.90}
    clean = {k: 1.0 for k in none8}
    return {"config": {"seed": 0}, "conditions": [_cond("none", None, clean), _cond("none", 8, none8),
                                                  _cond("vqfr-v2", 8, rest8), _cond("none", 16, none16),
                                                  _cond("vqfr-v2", 16, rest16)]}


def test_tiny_record_hand_computed():
    record = add_identity_statistics(_tiny_record(), n_boot=200)
    c16 = record["conditions"][4][IDENTITY_KIND]
    # differences A 0.1, 0.1; B 0.2; C 0.3: mean over the 4 images 0.7 / 4
    assert c16["cosine_difference"] == pytest.approx(0.175)
    assert (c16["cosine"], c16["cosine_reference"]) == (pytest.approx(0.725), pytest.approx(0.55))
    assert c16["n"] == 4 and c16["bootstrap"]["clusters"] == 3
    # per-person means 0.1, 0.2, 0.3 (sum 0.6): of the 8 sign vectors only +++ and --- reach |0.6| -> 2/8
    assert c16["sign_flip"] == {"statistic": pytest.approx(0.6), "p_value": 0.25, "method": "exact", "clusters": 3,
                                "n_draws": None, "seed": None, "p_holm": 0.5, "family_size": 2}
    # x8: A -0.1 and 0; B +0.1; C 0 -> per-person means -0.05, 0.1, 0 (dropped): |0.05| reached by 4 of 4 vectors
    c8 = record["conditions"][2][IDENTITY_KIND]
    assert c8["cosine_difference"] == pytest.approx(0.0) and c8["sign_flip"]["p_value"] == 1.0
    assert c8["sign_flip"]["clusters"] == 2 and c8["sign_flip"]["p_holm"] == 1.0
    # the interval lies within the range a resample of people can give, and around the estimate
    assert 0.1 - 1e-12 <= c16["ci_low"] <= 0.175 <= c16["ci_high"] <= 0.3 + 1e-12
    # identity intervals on every degraded condition, none on clean (every cosine is 1 there) or on none's refs
    assert "ci_level" not in record["conditions"][0]["identity"]
    assert all(c["identity"]["ci_level"] == 0.95 for c in record["conditions"][1:])
    assert IDENTITY_KIND not in record["conditions"][1] and IDENTITY_KIND not in record["conditions"][3]


def test_identity_interval_is_the_people_bootstrap():
    per_item = {"A/A_1.jpg": 0.5, "A/A_2.jpg": 0.7, "B/B_1.jpg": 0.2, "C/C_1.jpg": 0.9, "D/D_1.jpg": 0.4}
    got = identity_interval(per_item, n_boot=500, seed=3)
    reps, k = cluster_bootstrap_replicates([0.5, 0.7, 0.2, 0.9, 0.4], [0, 0, 1, 2, 3], n_boot=500, seed=3)
    assert k == 4 and (got["ci_low"], got["ci_high"]) == percentile_interval(reps, 0.95)
    assert got["bootstrap"]["clusters"] == 4
    one = identity_interval({"A/A_1.jpg": 0.5, "A/A_2.jpg": 0.7}, n_boot=50)
    assert one["ci_low"] is None and one["ci_high"] is None  # one person: no interval


@pytest.mark.parametrize("seed", range(6))
def test_exact_sign_flip_equals_brute_force_and_scipy(seed):
    rng = np.random.default_rng(seed)
    d = np.round(rng.normal(0.03, 0.1, size=rng.integers(3, 12)), 4)
    got = sign_flip_test(d)
    assert got["method"] == "exact"
    assert got["p_value"] == pytest.approx(_brute_force_p(d), abs=1e-12)
    ref = stats.permutation_test((d,), lambda x, axis: np.sum(x, axis=axis), permutation_type="samples",
                                 n_resamples=np.inf, alternative="two-sided").pvalue
    assert got["p_value"] == pytest.approx(ref, abs=1e-12)


def test_sign_flip_on_signed_ranks_is_the_exact_wilcoxon_test():
    d = np.array([0.31, -0.12, 0.25, 0.05, 0.42, -0.02, 0.13, 0.07, -0.21])  # distinct |d|: no ties
    ranks = stats.rankdata(np.abs(d)) * np.sign(d)
    assert sign_flip_test(ranks)["p_value"] == pytest.approx(stats.wilcoxon(d, method="exact").pvalue, abs=1e-12)


def test_monte_carlo_above_the_exact_limit():
    rng = np.random.default_rng(7)
    d = rng.normal(0.02, 0.1, size=24)
    mc = sign_flip_test(d, n_draws=20000, seed=1)
    assert (mc["method"], mc["n_draws"], mc["seed"], mc["clusters"]) == ("monte carlo", 20000, 1, 24)
    exact = sign_flip_test(d, exact_max=24)["p_value"]  # 2^24 vectors, enumerated
    assert abs(mc["p_value"] - exact) < 4 * np.sqrt(exact * (1 - exact) / 20000) + 1e-4
    assert sign_flip_test(d, n_draws=20000, seed=1) == mc  # seeded: the same p every time
    assert sign_flip_test(np.zeros(30))["p_value"] == 1.0


def test_a_condition_on_other_images_gets_no_comparison(caplog):
    record = _tiny_record()
    record["conditions"][4]["identity"]["per_item"].pop("C/C_1.jpg")
    add_identity_statistics(record, n_boot=50)
    assert IDENTITY_KIND not in record["conditions"][4] and "do not hold the same images" in caplog.text
    with pytest.raises(ValueError, match="same images"):
        compare_identity(record["conditions"][3], record["conditions"][4])


def test_real_dlib_run(faces_root, tmp_path):
    """Five real people, dlib embeddings: the x8 faces as the 'restored' side of the x32 ones (the same probes, a
    milder degradation) must be closer to clean, and the test's p is the brute-force one."""
    from restorever.pipeline.evaluate import EvalConfig, evaluate

    from ..test_protocol import _faces_csv

    rows = _faces_csv(faces_root).splitlines()
    csv = tmp_path / "pairs.csv"
    csv.write_text("\n".join(rows[:11]) + "\n")
    record = evaluate(EvalConfig(protocol="pairs-csv", pairs=str(csv), data_root=str(faces_root), scales=[8, 32],
                                 cache_dir=str(tmp_path / "cache"), seed=3), progress=False)
    conds = {c["scale"]: c for c in record["conditions"]}
    milder = copy.deepcopy(conds[8])
    milder.update(restorer="x8-as-restored", scale=32)
    record["conditions"].append(milder)
    add_identity_statistics(record, n_boot=500)
    comp = milder[IDENTITY_KIND]
    x8, x32 = conds[8]["identity"]["per_item"], conds[32]["identity"]["per_item"]
    assert comp["n"] == len(x32) and comp["cosine_difference"] == pytest.approx(
        np.mean([x8[i] - x32[i] for i in x32]))
    assert comp["cosine_difference"] > 0 and comp["ci_high"] > 0
    people: dict[str, list[float]] = {}
    for item in x32:
        people.setdefault(item.replace("\\", "/").split("/")[-2], []).append(x8[item] - x32[item])
    assert comp["bootstrap"]["clusters"] == len(people) > 1
    assert comp["sign_flip"]["p_value"] == pytest.approx(_brute_force_p([np.mean(v) for v in people.values()]))
    ident = conds[32]["identity"]
    assert ident["ci_low"] <= ident["cosine_to_clean_mean"] <= ident["ci_high"]


def test_results_tables_and_validate(tmp_path):
    from restorever.reports.html import report_tables
    from restorever.reports.results import results_markdown, write_run
    from restorever.reports.tables import CSV_COLUMNS, results_table_rows
    from restorever.validate import check_run

    write_run(make_record(tmp_path, examples=0), tmp_path)  # eval writes the statistics
    path = tmp_path / "results.json"
    stored = json.loads(path.read_text())
    cond = next(c for c in stored["conditions"] if IDENTITY_KIND in c)
    comp = cond[IDENTITY_KIND]
    assert comp["sign_flip"]["family_size"] == 2 and cond["identity"]["ci_low"] < cond["identity"]["ci_high"]
    label = f"{cond['restorer']} x{cond['scale']}"
    md = results_markdown(stored)
    row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
    assert f"{comp['cosine_difference']:+.4f} [{comp['ci_low']:+.4f}, {comp['ci_high']:+.4f}]" in row
    assert f"[{cond['identity']['ci_low']:.4f}, {cond['identity']['ci_high']:.4f}]" in row
    assert "sign-flip randomisation test over people" in md
    table = next(t for t in report_tables(stored) if t.key == "identity")
    assert [r[0] for r in table.rows] == ["vqfr-v2 x4", "vqfr-v2 x16"] and table.rows[0][-1] == "vs none (2)"
    assert {"cos_vs_none_difference", "cos_vs_none_sign_flip_p_holm", "cosine_to_clean_ci_low"} <= set(CSV_COLUMNS)
    csv_row = next(r for r in results_table_rows(stored) if (r["restorer"], r["scale"]) == (cond["restorer"],
                                                                                         cond["scale"]))
    assert csv_row["cos_vs_none_sign_flip_p"] == comp["sign_flip"]["p_value"]
    assert csv_row["cos_vs_none_ci_low"] == comp["ci_low"] and csv_row["cos_vs_none_people"] == 82

    report = check_run(tmp_path, check_cache=False)
    baseline = report.problems
    assert not any("identity" in p or "schema" in p for p in baseline), baseline
    assert report.checked["identity statistics recomputed"] == 6  # 4 degraded intervals, 2 comparisons
    for edit, where in [(("identity_comparison_to_none", "sign_flip", "p_value"), "sign_flip.p_value"),
                        (("identity", "ci_high"), "identity.ci_high")]:
        edited = copy.deepcopy(stored)
        target = next(c for c in edited["conditions"] if IDENTITY_KIND in c)
        for key in edit[:-1]:
            target = target[key]
        target[edit[-1]] = 0.0001 if edit[-1] == "p_value" else 0.9999
        path.write_text(json.dumps(edited))
        new = [p for p in check_run(tmp_path, check_cache=False).problems if p not in baseline]
        assert len(new) == 1 and where in new[0], new


def test_an_older_record_gets_them_in_its_report(tmp_path):
    """A results.json written before the identity statistics: `restorever report` completes it, as it does the
    accuracy comparisons, and validate accepts it as it is."""
    from restorever.reports.html import build_report
    from restorever.reports.results import write_run
    from restorever.validate import check_run

    write_run(make_record(tmp_path, examples=0), tmp_path)
    path = tmp_path / "results.json"
    older = json.loads(path.read_text())
    for cond in older["conditions"]:
        cond.pop(IDENTITY_KIND, None)
        for key in ("ci_low", "ci_high", "ci_level", "bootstrap"):
            cond["identity"].pop(key, None)
    path.write_text(json.dumps(older))
    report = check_run(tmp_path, check_cache=False)
    assert "identity statistics recomputed" not in report.checked
    assert not any("identity" in p for p in report.problems)
    out = build_report(tmp_path)
    assert "Identity to clean: restorer against none" in out["markdown"].read_text()
    assert "cos_vs_none_sign_flip_p" in out["csv"].read_text().splitlines()[0]
    assert out["csv"].read_text().count(",") > 0 and json.loads(path.read_text()) == older  # the file is untouched


def test_compare_shows_the_cosine_comparisons(tmp_path):
    """`restorever compare` of two runs: each restorer's cosine to clean against its none, Holm over all of them,
    in comparison.json, comparison.md, and the merged tables.csv."""
    import csv

    from restorever.reports.compare import write_comparison
    from restorever.reports.results import write_run

    from .test_compare import _rename

    dirs = []
    for name, record in (("vqfr", make_record(tmp_path, examples=0)),
                         ("codeformer", _rename(make_record(tmp_path, examples=0), "vqfr-v2", "codeformer", 0.15))):
        record["protocol"]["pairs_sha256"] = "ab" * 32
        (tmp_path / name).mkdir()
        write_run(record, tmp_path / name)
        dirs.append(tmp_path / name)
    write_comparison(dirs, tmp_path / "cmp", n_boot=50)
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    ident = comparison["identity_comparisons"]
    assert len(ident) == 4 and {c["sign_flip"]["family_size"] for c in ident} == {4}
    raw = [c["sign_flip"]["p_value"] for c in ident]
    from restorever.reports.statistics import holm_adjust

    assert [c["sign_flip"]["p_holm"] for c in ident] == pytest.approx(holm_adjust(raw).tolist(), abs=1e-15)
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "## Cosine to clean against none" in md and "Holm over the 4 comparisons" in md
    rows = list(csv.DictReader((tmp_path / "cmp" / "tables.csv").open()))
    for c in ident:
        row = next(r for r in rows if r["restorer"] == c["other"] and r["scale"] == str(c["scale"]))
        assert float(row["cos_vs_none_difference"]) == c["cosine_difference"]
        assert float(row["cos_vs_none_sign_flip_p_holm"]) == c["sign_flip"]["p_holm"]


def _many_people_record(n_people: int = 30, seed: int = 4):
    """none and vqfr-v2 at x8 over ``n_people`` people (one probe each): above the exact limit, so Monte Carlo."""
    rng = np.random.default_rng(seed)
    items = [f"P{k:02d}/P{k:02d}_0001.jpg" for k in range(n_people)]
    none8 = dict(zip(items, np.round(rng.uniform(0.5, 0.9, n_people), 6).tolist()))
    rest8 = {i: round(v + float(rng.normal(0.01, 0.05)), 6) for i, v in none8.items()}
    return {"config": {"seed": 2}, "conditions": [_cond("none", 8, none8), _cond("vqfr-v2", 8, rest8)]}


def test_validate_recomputes_with_the_stored_number_of_draws():
    """A record whose Monte Carlo sign-flip used another number of draws (a library user's choice, or a later
    version's default) is recomputed with the draws it states, not with this version's N_DRAWS, so its correct
    numbers are not reported as changed (the old validate compared them with a 20000-draw p)."""
    from restorever.validate.common import compare

    record = add_identity_statistics(_many_people_record(), n_boot=100, n_draws=500)
    test = record["conditions"][1][IDENTITY_KIND]["sign_flip"]
    assert (test["method"], test["n_draws"], test["seed"]) == ("monte carlo", 500, 2)
    default = add_identity_statistics(_many_people_record(), n_boot=100)["conditions"][1][IDENTITY_KIND]
    assert default["sign_flip"]["p_value"] != test["p_value"]  # the draws matter: validate must use the stored ones
    problems, checked = identity_statistics_problems(record, compare)
    assert problems == [] and checked == 3
    test["p_value"] = default["sign_flip"]["p_value"]  # still checked: an edited p is named
    problems, _ = identity_statistics_problems(record, compare)
    assert len(problems) == 1 and "sign_flip.p_value" in problems[0]


def test_the_interval_does_not_depend_on_the_order_of_per_item():
    """JSON objects are unordered: a results.json rewritten with sorted keys (``jq -S``, ``json.dump(sort_keys=True)``)
    holds the same cosines, so its intervals must be the same and validate must accept them. The old interval
    numbered people in the order of ``per_item``, so the same cosines gave other bootstrap draws (validate reported
    every ``identity.ci_low``/``ci_high`` of a key-sorted real run as changed)."""
    from restorever.validate.common import compare

    record = add_identity_statistics(_many_people_record(), n_boot=300)
    shuffled = copy.deepcopy(record)
    for cond in shuffled["conditions"]:
        ident = cond["identity"]
        ident["per_item"] = dict(reversed(list(ident["per_item"].items())))  # P29 first: people renumbered
    problems, checked = identity_statistics_problems(shuffled, compare)
    assert problems == [] and checked == 3
    per_item = record["conditions"][0]["identity"]["per_item"]
    forward = identity_interval(per_item, n_boot=300)
    assert identity_interval(dict(reversed(list(per_item.items()))), n_boot=300) == forward
    assert (forward["ci_low"], forward["ci_high"]) != (None, None)

"""Family-wise adjustment of the paired tests: Holm against hand-computed values and the closed-testing definition,
and the adjusted p-values in results.json, the tables, validate and compare."""
from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restorever.reports.statistics import add_adjusted_p_values, add_comparisons, bonferroni_adjust, holm_adjust

from .conftest import make_record


def _holm_by_closed_testing(p: list[float]) -> list[float]:
    """Holm's procedure is closed testing with Bonferroni tests of every intersection: the adjusted p of H_i is the
    largest, over every subset S holding i, of min(1, |S| * min_{j in S} p_j). Brute force over the 2^m subsets."""
    m = len(p)
    out = []
    for i in range(m):
        worst = 0.0
        for size in range(1, m + 1):
            for subset in itertools.combinations(range(m), size):
                if i in subset:
                    worst = max(worst, min(1.0, size * min(p[j] for j in subset)))
        out.append(worst)
    return out


def test_holm_hand_computed():
    # sorted 0.01, 0.02, 0.03, 0.04 (m = 4): 4*0.01 = 0.04, 3*0.02 = 0.06, 2*0.03 = 0.06, 1*0.04 = 0.04 -> 0.06
    assert holm_adjust([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06], abs=1e-15)
    # capped at 1; the step-down maximum carries a large early value forward
    assert holm_adjust([0.5, 0.001, 0.3]) == pytest.approx([0.6, 0.003, 0.6], abs=1e-15)
    assert holm_adjust([0.9, 0.8]).tolist() == [1.0, 1.0]
    assert holm_adjust([0.2]).tolist() == [0.2]
    assert holm_adjust([]).shape == (0,)
    # ties: equal adjusted values whatever their order
    assert holm_adjust([0.01, 0.01, 0.5]) == pytest.approx([0.03, 0.03, 0.5], abs=1e-15)
    assert bonferroni_adjust([0.03, 0.01, 0.5]) == pytest.approx([0.09, 0.03, 1.0], abs=1e-15)


def test_nan_entries_stay_nan_and_do_not_count():
    out = holm_adjust([0.01, np.nan, 0.04])
    assert np.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.04], abs=1e-15)  # m = 2, not 3
    assert np.isnan(holm_adjust([np.nan, np.nan])).all()
    b = bonferroni_adjust([0.01, np.nan, 0.04])
    assert np.isnan(b[1]) and b[[0, 2]] == pytest.approx([0.02, 0.08], abs=1e-15)


@pytest.mark.parametrize("bad", [[0.1, 1.5], [-0.01], [[0.1, 0.2]]])
def test_bad_p_values_are_refused(bad):
    with pytest.raises(ValueError, match="p-values must lie in|1-D"):
        holm_adjust(bad)


_P = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_P, st.sampled_from([0.0, 0.01, 0.05, 1.0])), min_size=1, max_size=7))
def test_holm_equals_closed_testing_and_its_bounds(p):
    adjusted = holm_adjust(p)
    assert adjusted == pytest.approx(_holm_by_closed_testing(p), rel=1e-12, abs=1e-15)
    assert np.all(adjusted >= np.asarray(p) - 1e-15) and np.all(adjusted <= bonferroni_adjust(p) + 1e-15)
    assert np.all(adjusted <= 1.0)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= -1e-15)  # monotone in the raw p
    perm = np.random.default_rng(len(p)).permutation(len(p))
    assert holm_adjust(np.asarray(p)[perm]) == pytest.approx(adjusted[perm], abs=0)  # order does not matter


# ---------------------------------------------------------------------------------------------------- records


def _comparisons(record: dict, kind: str) -> list[dict]:
    return [c[kind] for c in record["conditions"] if kind in c]


def test_record_stores_holm_per_family_and_test(tmp_path, monkeypatch):
    """3 restorers x 3 scales: the vs-none family holds the 6 restorer comparisons, the vs-clean family the 9
    degraded conditions; each test is adjusted on its own."""
    from . import conftest

    sep = dict(conftest.SEPARATION)
    for s, v in ((4, 3.0), (8, 2.0), (16, 1.2)):
        sep.update({("none", s): v, ("vqfr-v2", s): v + 0.4, ("gfpgan", s): v + 0.1})
    monkeypatch.setattr(conftest, "SEPARATION", sep)
    record = make_record(tmp_path, restorers=("none", "vqfr-v2", "gfpgan"), scales=(4, 8, 16), examples=0)
    add_comparisons(record, n_boot=50)
    for kind, size in (("comparison_to_none", 6), ("comparison_to_clean", 9)):
        comps = _comparisons(record, kind)
        assert len(comps) == size
        for test in ("mcnemar", "mcnemar_clustered"):
            raw = [c[test]["p_value"] for c in comps]
            assert [c[test]["p_holm"] for c in comps] == pytest.approx(_holm_by_closed_testing(raw), abs=1e-15)
            assert all(c[test]["family_size"] == size for c in comps)


def test_an_older_record_gets_holm_from_its_stored_p_values(tmp_path):
    """A results.json written before the adjustment (comparisons without p_holm) is completed by add_comparisons,
    which `restorever report` calls, from the stored raw p-values alone."""
    record = add_comparisons(make_record(tmp_path, examples=0), n_boot=50)
    for comp in _comparisons(record, "comparison_to_clean") + _comparisons(record, "comparison_to_none"):
        for test in ("mcnemar", "mcnemar_clustered"):
            del comp[test]["p_holm"], comp[test]["family_size"]
    comps = _comparisons(record, "comparison_to_clean")
    assert len(comps) == 4  # x4 and x16, none and vqfr-v2
    for comp, p in zip(comps, (0.01, 0.02, 0.3, 0.6)):
        comp["mcnemar"]["p_value"] = p  # stored values, not recomputed
    add_comparisons(record, n_boot=50)
    assert [c["mcnemar"]["p_holm"] for c in comps] == pytest.approx([0.04, 0.06, 0.6, 0.6], abs=1e-15)
    assert {c["mcnemar"]["family_size"] for c in comps} == {4}


def test_a_damaged_p_value_counts_as_no_test():
    record = {"conditions": [{"comparison_to_none": {"mcnemar": {"p_value": "x"}}},
                             {"comparison_to_none": {"mcnemar": {"p_value": 0.02}}},
                             {"comparison_to_none": {"mcnemar": {"p_value": 0.04}}}]}
    add_adjusted_p_values(record)
    tests = [c["comparison_to_none"]["mcnemar"] for c in record["conditions"]]
    assert tests[0]["p_holm"] is None and [t["p_holm"] for t in tests[1:]] == pytest.approx([0.04, 0.04])
    assert {t["family_size"] for t in tests} == {2}


# ---------------------------------------------------------------------------------------------------- outputs


def test_tables_show_the_adjusted_p_values(tmp_path):
    """results.md, the report's statistics table and tables.csv show each test's Holm p beside the raw one."""
    from restorever.reports.html import report_tables
    from restorever.reports.results import results_markdown, results_table
    from restorever.reports.tables import CSV_COLUMNS, results_table_rows

    record = add_comparisons(make_record(tmp_path, examples=0), n_boot=50)
    cond = next(c for c in record["conditions"] if "comparison_to_none" in c)
    comp = cond["comparison_to_none"]
    holm, holm_clustered = comp["mcnemar"]["p_holm"], comp["mcnemar_clustered"]["p_holm"]
    row = next(line for line in results_table(record).splitlines()
               if line.startswith(f"| {cond['restorer']} x{cond['scale']} |"))
    assert row.split("|")[-2].strip().endswith(f"; Holm {holm:.2g} ({holm_clustered:.2g})")
    assert "adjusted for multiple comparisons (Holm-Bonferroni" in results_markdown(record)
    stats = next(t for t in report_tables(record) if t.key == "statistics")
    col = {name: i for i, name in enumerate(stats.header)}
    by_kind = {("vs none" in r[col["family"]]): r for r in stats.rows if r[0] == row.split("|")[1].strip()}
    assert by_kind[True][col["Holm p"]] == f"{holm:.3g}"
    assert by_kind[True][col["Holm p (clustered)"]] == f"{holm_clustered:.3g}"
    assert by_kind[True][col["family"]] == "vs none (2)"
    assert "Holm-Bonferroni" in stats.note and "none is adjusted" not in stats.note
    assert {"vs_none_mcnemar_p_holm", "vs_clean_clustered_p_holm", "vs_none_family_size"} <= set(CSV_COLUMNS)
    csv_row = next(r for r in results_table_rows(record) if r["restorer"] == cond["restorer"]
                   and r["scale"] == cond["scale"])
    assert (csv_row["vs_none_mcnemar_p_holm"], csv_row["vs_none_clustered_p_holm"]) == (holm, holm_clustered)
    assert csv_row["vs_none_family_size"] == 2 and csv_row["vs_clean_family_size"] == 4


def test_validate_checks_a_stored_holm_p_and_accepts_a_record_without_one(tmp_path):
    from restorever.reports.results import write_run
    from restorever.validate import check_run

    write_run(make_record(tmp_path, examples=0), tmp_path)
    path = tmp_path / "results.json"
    stored = json.loads(path.read_text())
    comp = next(c["comparison_to_none"] for c in stored["conditions"] if "comparison_to_none" in c)
    assert 0 <= comp["mcnemar"]["p_holm"] <= 1 and comp["mcnemar"]["family_size"] == 2
    baseline = check_run(tmp_path, check_cache=False).problems  # a synthetic run: no degradation.jsonl, no data
    assert not any("comparison" in p or "schema" in p for p in baseline), baseline
    assert check_run(tmp_path, check_cache=False).checked["metrics recomputed"] == 11  # 5 conditions, 6 comparisons

    older = copy.deepcopy(stored)  # written before the adjustment existed: still valid
    for cond in older["conditions"]:
        for kind in ("comparison_to_none", "comparison_to_clean"):
            for test in ("mcnemar", "mcnemar_clustered"):
                cond.get(kind, {}).get(test, {}).pop("p_holm", None)
                cond.get(kind, {}).get(test, {}).pop("family_size", None)
    path.write_text(json.dumps(older))
    assert check_run(tmp_path, check_cache=False).problems == baseline

    edited = copy.deepcopy(stored)  # a Holm p made to look significant
    edited_comp = next(c["comparison_to_none"] for c in edited["conditions"] if "comparison_to_none" in c)
    edited_comp["mcnemar"]["p_holm"] = 0.001
    path.write_text(json.dumps(edited))
    problems = check_run(tmp_path, check_cache=False).problems
    assert [p for p in problems if p not in baseline] == [next(p for p in problems if "mcnemar.p_holm" in p)]
    assert "comparison_to_none.mcnemar.p_holm: stored 0.001" in "\n".join(problems)

    out_of_range = copy.deepcopy(stored)
    next(c["comparison_to_none"] for c in out_of_range["conditions"]
         if "comparison_to_none" in c)["mcnemar_clustered"]["p_holm"] = 1.5
    path.write_text(json.dumps(out_of_range))
    problems = check_run(tmp_path, check_cache=False).problems
    assert problems == ["conditions[2].comparison_to_none.mcnemar_clustered.p_holm: 1.5 is above the maximum 1"]


def test_compare_adjusts_each_kind_over_every_scale(tmp_path):
    from restorever.reports.compare import write_comparison
    from restorever.reports.results import write_run

    from .test_compare import _rename

    first = make_record(tmp_path, examples=0)
    second = _rename(make_record(tmp_path, examples=0), "vqfr-v2", "codeformer", 0.15)
    dirs = []
    for name, record in (("vqfr", first), ("codeformer", second)):
        record["protocol"]["pairs_sha256"] = "ab" * 32
        (tmp_path / name).mkdir()
        write_run(record, tmp_path / name)
        dirs.append(tmp_path / name)
    write_comparison(dirs, tmp_path / "cmp", n_boot=50)
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    sizes = {"vs_none": 4, "vs_clean": 6, "pair": 2}  # 2 restorers x 2 scales; 3 conditions x 2 scales; 1 x 2
    for kind, size in sizes.items():
        comps = [c for c in comparison["comparisons"] if c["kind"] == kind]
        assert len(comps) == size
        for test in ("mcnemar", "mcnemar_clustered"):
            raw = [c[test]["p_value"] for c in comps]
            assert [c[test]["p_holm"] for c in comps] == pytest.approx(_holm_by_closed_testing(raw), abs=1e-15)
            assert {c[test]["family_size"] for c in comps} == {size}
    # the merged tables show the comparison's adjusted p-values
    import csv

    rows = list(csv.DictReader((tmp_path / "cmp" / "tables.csv").open()))
    for c in comparison["comparisons"]:
        if c["kind"] == "vs_none":
            row = next(r for r in rows if r["restorer"] == c["other"] and r["scale"] == str(c["scale"]))
            assert float(row["vs_none_mcnemar_p_holm"]) == c["mcnemar"]["p_holm"]
            assert row["vs_none_family_size"] == "4"
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    pair = next(c for c in comparison["comparisons"] if c["kind"] == "pair")
    assert "Holm over the 2 pairs" in md and f"; Holm {pair['mcnemar']['p_holm']:.2g}" in md


def test_a_record_of_two_recognizers_compares_each_with_its_own_clean_condition(tmp_path):
    """A library user's record holding two recognizers' conditions: each degraded condition is compared with the
    clean condition of its own recognizer (not the first clean one in the list), and each recognizer's comparisons
    form their own Holm family."""
    import copy

    from restorever.reports.statistics import compare_conditions, pair_clusters

    first = make_record(tmp_path, examples=0)
    second = copy.deepcopy(first["conditions"])
    rng = np.random.default_rng(7)
    for cond in second:
        cond["recognizer"] = "dlib"
        score = np.asarray(cond["scores"]["score"]) + 0.5 * rng.normal(size=len(cond["scores"]["score"]))
        cond["scores"]["score"] = score.tolist()
    record = {**first, "conditions": first["conditions"] + second}
    add_comparisons(record, n_boot=50)
    clusters = pair_clusters(record["pairs"]["a"], record["pairs"]["b"])
    clean = {c["recognizer"]: c for c in record["conditions"] if c["scale"] is None}
    degraded = [c for c in record["conditions"] if c["scale"] is not None]
    for cond in degraded:
        own = compare_conditions(clean[cond["recognizer"]], cond, clusters, n_boot=50, seed=0)
        assert cond["comparison_to_clean"]["accuracy_difference"] == own["accuracy_difference"]
        assert cond["comparison_to_clean"]["mcnemar"]["p_value"] == own["mcnemar"]["p_value"]
    for recognizer in ("arcface-r50", "dlib"):
        comps = [c["comparison_to_clean"] for c in degraded if c["recognizer"] == recognizer]
        assert all(c["mcnemar"]["family_size"] == len(comps) == 4 for c in comps)
        raw = [c["mcnemar"]["p_value"] for c in comps]
        assert [c["mcnemar"]["p_holm"] for c in comps] == pytest.approx(_holm_by_closed_testing(raw), abs=1e-15)


def test_comparison_md_says_over_which_family_its_holm_p_values_are(tmp_path):
    """comparison.md's merged results table showed `; Holm P` beside each condition with no word on the family: the
    comparison's own (every compared condition of that kind across the runs), not each run's, so the same condition
    read another Holm p in its run's results.md without a hint why. The family of each kind is now named."""
    from restorever.reports.compare import write_comparison
    from restorever.reports.results import write_run

    from .test_compare import _rename

    first = make_record(tmp_path, examples=0)
    second = _rename(make_record(tmp_path, examples=0), "vqfr-v2", "codeformer", 0.15)
    dirs = []
    for name, record in (("vqfr", first), ("codeformer", second)):
        record["protocol"]["pairs_sha256"] = "ab" * 32
        (tmp_path / name).mkdir()
        write_run(record, tmp_path / name)
        dirs.append(tmp_path / name)
    write_comparison(dirs, tmp_path / "cmp", n_boot=50)
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    run_sizes = {c["comparison_to_clean"]["mcnemar"]["family_size"]
                 for c in json.loads((tmp_path / "vqfr" / "results.json").read_text())["conditions"]
                 if "comparison_to_clean" in c}
    assert run_sizes == {4}  # the run's own vs-clean family; the comparison's is 6
    conditions = md.split("## Conditions", 1)[1].split("## Restorers against each other", 1)[0]
    assert ("Holm: adjusted over every comparison of its kind in this comparison, not over a run's own family "
            "(its results.md): 6 vs clean, 4 vs none, at x4, x16; per-pair and clustered tests apart.") in conditions


@pytest.mark.parametrize("p, two, three", [(0.0496, "0.0496", "0.0496"), (0.0504, "0.0504", "0.0504"),
                                           (0.050001, "0.050001", "0.050001"), (0.05, "0.05", "0.05"),
                                           (0.031, "0.031", "0.031"), (0.12, "0.12", "0.12"),
                                           (0.0451, "0.045", "0.0451")])
def test_a_p_value_near_005_is_not_rounded_onto_or_across_it(p, two, three):
    """results.md prints p to 2 significant digits and its note says a Holm p at or below 0.05 is a finding: 0.0496
    and 0.0504 both read 0.05. Near 0.05 more digits are shown, enough to tell the side."""
    from restorever.reports.results import p_text

    assert p_text(p) == two
    assert p_text(p, 3, "p") == "p=" + three


def test_validate_refuses_to_recompute_an_absurd_number_of_replicates_or_draws(tmp_path):
    """validate recomputes a record's bootstrap with the n_boot (and sign-flip draws) it states: an edited record
    stating 10^9 kept it busy for hours. Above MAX_N_BOOT / MAX_N_DRAWS it now says so in one line, at once; the CLI
    options take no more than validate recomputes."""
    import time

    from restorever.cli import cli
    from restorever.reports.identity_stats import MAX_N_DRAWS
    from restorever.reports.results import write_run
    from restorever.reports.statistics import MAX_N_BOOT
    from restorever.validate import check_run

    write_run(make_record(tmp_path, examples=0), tmp_path)
    path = tmp_path / "results.json"
    stored = json.loads(path.read_text())
    edited = copy.deepcopy(stored)
    for cond in edited["conditions"]:
        for kind in ("comparison_to_none", "comparison_to_clean"):
            if kind in cond:
                cond[kind]["bootstrap"]["n_boot"] = 10 ** 9
    path.write_text(json.dumps(edited))
    start = time.monotonic()
    problems = check_run(tmp_path, check_cache=False).problems
    assert time.monotonic() - start < 60
    assert any("paired statistics cannot be recomputed" in p and "n_boot 1000000000 is outside 1..100,000" in p
               for p in problems), problems

    edited = copy.deepcopy(stored)
    comp = next(c["identity_comparison_to_none"] for c in edited["conditions"] if "identity_comparison_to_none" in c)
    comp["sign_flip"].update({"method": "monte carlo", "n_draws": 10 ** 9, "seed": 0})
    path.write_text(json.dumps(edited))
    problems = check_run(tmp_path, check_cache=False).problems
    assert any("identity statistics cannot be recomputed" in p and "n_draws 1000000000 is outside" in p
               for p in problems), problems

    for name in ("report", "compare", "breakdown"):
        option = next(p for p in cli.commands[name].params if p.name == "n_boot")
        assert option.type.max == MAX_N_BOOT
    assert MAX_N_DRAWS >= 20000

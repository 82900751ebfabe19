"""`restorever compare`: runs made separately, checked for comparability, merged and compared pair by pair.

Synthetic records (conftest's ``make_record``; a second run's ``vqfr-v2`` renamed ``codeformer`` and rescored, to
stand in for a second restorer) check the numbers against ``compare_conditions`` applied by hand and each refusal;
three real dlib runs (60 LFW pairs, x4 and x16, two with seed 0 in separate folders, one with seed 1) check the
same on real data."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.errors import RestoreverError
from restorever.metrics.verification import verification_report
from restorever.reports.compare import check_comparable, compare_runs, write_comparison
from restorever.reports.results import write_run
from restorever.reports.statistics import compare_conditions, pair_clusters

from .conftest import as_rule_1, make_record


def _rename(record: dict, old: str, new: str, shift: float) -> dict:
    """``record`` with restorer ``old`` renamed ``new`` and its scores changed (``shift`` * a seeded noise), its
    verification recomputed: a different restorer on the same degraded inputs."""
    record = copy.deepcopy(record)
    rng = np.random.default_rng(7)
    for cond in record["conditions"]:
        if cond["restorer"] != old:
            continue
        s = cond["scores"]
        score = np.asarray(s["score"]) + shift * rng.normal(size=len(s["score"]))
        s["score"] = score.tolist()
        cond["verification"] = verification_report(np.asarray(s["same"]), score, np.asarray(s["fold"]))
        cond["restorer"] = new
    record["config"]["restorers"] = [new if r == old else r for r in record["config"]["restorers"]]
    return record


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    first = make_record(root, examples=0)
    second = _rename(make_record(root, examples=0), "vqfr-v2", "codeformer", 0.15)
    for record in (first, second):
        record["protocol"]["pairs_sha256"] = "ab" * 32
    return first, second


def _cond(record, restorer, scale):
    return next(c for c in record["conditions"] if c["restorer"] == restorer and c["scale"] == scale)


def _unadjusted(test: dict) -> dict:
    """A test's dict without the family-wise adjustment compare adds (``p_holm``, ``family_size``), as
    ``compare_conditions`` alone returns it."""
    return {k: v for k, v in test.items() if k not in ("p_holm", "family_size")}


def _find(comparison, kind, scale, other):
    return next(c for c in comparison["comparisons"] if c["kind"] == kind and c["scale"] == scale
                and c["other"] == other)


def test_numbers_match_compare_conditions_by_hand(synthetic):
    first, second = synthetic
    out = compare_runs([first, second], ["vqfr", "codeformer"])
    clusters = pair_clusters(first["pairs"]["a"], first["pairs"]["b"])
    for scale in (4, 16):
        none, vqfr, cf = _cond(first, "none", scale), _cond(first, "vqfr-v2", scale), _cond(second, "codeformer",
                                                                                             scale)
        want = compare_conditions(vqfr, cf, clusters, seed=0)
        got = _find(out, "pair", scale, "codeformer")
        assert got["reference"] == "vqfr-v2"
        for key in ("accuracy_difference", "ci_low", "ci_high", "accuracy"):
            assert got[key] == want[key]
        for key in ("mcnemar", "mcnemar_clustered"):
            assert _unadjusted(got[key]) == want[key]
        # the known answer: the paired difference is the difference of the table's accuracies
        assert got["accuracy_difference"] == pytest.approx(cf["verification"]["accuracy_mean"]
                                                           - vqfr["verification"]["accuracy_mean"], abs=1e-12)
        assert _find(out, "vs_none", scale, "codeformer")["accuracy_difference"] == pytest.approx(
            cf["verification"]["accuracy_mean"] - none["verification"]["accuracy_mean"], abs=1e-12)
        assert _find(out, "vs_none", scale, "vqfr-v2")["ci_low"] == compare_conditions(none, vqfr, clusters)["ci_low"]
    assert out["paired_inputs"] and out["scales"] == [4, 16] and out["left_out_scales"] == {}
    # `none` is in both runs with the same scores: kept once
    labels = [(c["label"], c["scale"]) for c in out["conditions"]]
    assert labels == [("none", 4), ("vqfr-v2", 4), ("codeformer", 4), ("none", 16), ("vqfr-v2", 16),
                      ("codeformer", 16)]
    assert any("none: in runs vqfr, codeformer with the same scores; one copy kept" in n for n in out["notes"])


def test_left_out_scales_are_named(synthetic):
    first, second = synthetic
    second = copy.deepcopy(second)
    second["conditions"] = [c for c in second["conditions"] if c["scale"] != 4]
    out = compare_runs([first, second], ["vqfr", "codeformer"])
    assert out["scales"] == [16] and out["left_out_scales"] == {"vqfr": [4]}
    assert "scales not in every run, left out: vqfr: x4" in out["notes"]
    second["conditions"] = [c for c in second["conditions"] if c["scale"] is None]
    with pytest.raises(RestoreverError, match=r"no degraded scale is in every run \(vqfr: \[4, 16\], codeformer: "
                                              r"clean only\)"):
        compare_runs([first, second], ["vqfr", "codeformer"])


def _changed(record, path, value):
    record = copy.deepcopy(record)
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return record


@pytest.mark.parametrize("path, value, message", [
    (("config", "recognizer"), "dlib", r"different recognizer \(vqfr: arcface-r50, codeformer: dlib\); compare "
                                       r"runs of one recognizer"),
    (("protocol", "pairs_sha256"), "cd" * 32, r"different pairs \(protocol.pairs_sha256\) \(vqfr: abababababab…, "
                                              r"codeformer: cdcdcdcdcdcd…\)"),
    (("config", "align_on"), "degraded", r"different alignment \(align_on\) \(vqfr: clean, codeformer: degraded\)"),
    (("config", "detector"), "scrfd", r"different landmark detector"),
    (("config", "seed"), 1, r"different seed \(vqfr: 0, codeformer: 1\); the degraded inputs differ.*"
                            r"--allow-different-degradation"),
    (("config", "degrade_side"), "both", r"different degraded side \(vqfr: probe, codeformer: both\)"),
    (("config", "degradation"), "gfpgan-v1", r"different degradation \(vqfr: difface-test, codeformer: gfpgan-v1\)"),
])
def test_refusals_name_what_differs(synthetic, path, value, message):
    first, second = synthetic
    with pytest.raises(RestoreverError, match=message) as err:
        check_comparable([first, _changed(second, path, value)], ["vqfr", "codeformer"])
    assert "\n" not in str(err.value)


def test_other_recognizer_weights_refused(synthetic):
    first, second = (copy.deepcopy(r) for r in synthetic)
    for record, sha in ((first, "11"), (second, "22")):
        record["cache"] = {"identity": {"recognizer": {"name": "arcface-r50", "weights": [["model", sha * 32]],
                                                      "flip": False}}}
    with pytest.raises(RestoreverError, match="different recognizer weights or options"):
        check_comparable([first, second], ["vqfr", "codeformer"])
    del second["cache"]  # a record that predates cache.identity: checked by its scores only
    assert check_comparable([first, second], ["vqfr", "codeformer"]) == []
    del _cond(second, "codeformer", 16)["scores"]
    with pytest.raises(RestoreverError, match="codeformer: its results.json stores no per-pair scores of "
                                              "codeformer x16"):
        check_comparable([first, second], ["vqfr", "codeformer"])


def test_other_pairs_and_clean_scores_refused(synthetic):
    first, second = synthetic
    moved = _changed(second, ("pairs", "b"), ["x/y/z.jpg"] + second["pairs"]["b"][1:])
    with pytest.raises(RestoreverError, match="codeformer evaluated other pairs than vqfr"):
        check_comparable([first, moved], ["vqfr", "codeformer"])
    shifted = copy.deepcopy(second)
    _cond(shifted, "none", None)["scores"]["score"][3] += 1e-3
    with pytest.raises(RestoreverError, match=r"clean conditions disagree \(vqfr and codeformer: scores differ by "
                                              r"up to 0.001, more than float rounding \(1e-06\)\)"):
        check_comparable([first, shifted], ["vqfr", "codeformer"])
    assert check_comparable([first, shifted], ["vqfr", "codeformer"], atol=2e-3) == []
    _cond(shifted, "none", None)["scores"]["score"][3] -= 1e-3 - 1e-9  # float rounding: accepted
    assert check_comparable([first, shifted], ["vqfr", "codeformer"]) == []


def test_edited_record_refused(synthetic, tmp_path):
    """A results.json whose stored accuracy was edited by hand: its table would show the edited number beside a
    difference recomputed from the scores (90.00 in the table, a difference from 0.9 in the statistics)."""
    first, second = synthetic
    edited = copy.deepcopy(second)
    _cond(edited, "codeformer", 4)["verification"]["accuracy_mean"] = 0.999
    with pytest.raises(RestoreverError, match=r"^codeformer: 1 stored metric\(s\) of its results.json differ from "
                                              r"the ones its stored scores give \(e.g. codeformer x4: accuracy_mean: "
                                              r"stored 0.999, recomputed 0.\d+\).*restorever validate") as err:
        compare_runs([first, edited], ["vqfr", "codeformer"])
    assert "\n" not in str(err.value)
    for name, record in (("vqfr", first), ("codeformer", edited)):
        (tmp_path / name).mkdir()
        write_run(copy.deepcopy(record), tmp_path / name)
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "vqfr"), str(tmp_path / "codeformer"), "--out",
                                      str(tmp_path / "cmp")])
    assert result.exit_code == 2 and "codeformer: 1 stored metric(s)" in result.output
    assert not (tmp_path / "cmp" / "tables.tex").exists()


def test_different_seed_allowed_labels_none_by_run(synthetic, tmp_path):
    first, _ = synthetic
    other = _rename(make_record(tmp_path, examples=0), "vqfr-v2", "codeformer", 0.15)
    other["config"]["seed"] = 1
    other["protocol"]["pairs_sha256"] = "ab" * 32
    for scale in (4, 16):  # another seed: the degraded `none` scores differ
        cond = _cond(other, "none", scale)
        s = cond["scores"]
        s["score"] = (np.asarray(s["score"]) + 0.05).tolist()
        cond["verification"] = verification_report(np.asarray(s["same"]), np.asarray(s["score"]),
                                                   np.asarray(s["fold"]))
    out = compare_runs([first, other], ["vqfr", "codeformer"], allow_different_degradation=True)
    assert not out["paired_inputs"]
    assert any("different seed (vqfr: 0, codeformer: 1): the comparison is then unpaired in its inputs" in n
               for n in out["notes"])
    labels = {c["label"] for c in out["conditions"]}
    assert labels == {"none (vqfr)", "none (codeformer)", "vqfr-v2", "codeformer"}
    assert _find(out, "vs_none", 16, "codeformer")["reference"] == "none (codeformer)"
    assert _find(out, "vs_none", 16, "vqfr-v2")["reference"] == "none (vqfr)"
    assert _find(out, "pair", 16, "codeformer")["paired_inputs"] is False


def test_write_and_cli(synthetic, tmp_path):
    first, second = synthetic
    dirs = []
    for name, record in (("vqfr", first), ("codeformer", second)):
        (tmp_path / name).mkdir()
        write_run(copy.deepcopy(record), tmp_path / name)
        dirs.append(str(tmp_path / name))
    result = CliRunner().invoke(cli, ["compare", *dirs, "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "cmp"
    comparison = json.loads((out / "comparison.json").read_text())
    assert "_merged" not in comparison and [r["name"] for r in comparison["runs"]] == ["vqfr", "codeformer"]
    csv_rows = (out / "tables.csv").read_text().splitlines()
    assert [r.split(",")[:2] for r in csv_rows[1:]] == [["none", ""], ["none", "4"], ["vqfr-v2", "4"],
                                                        ["codeformer", "4"], ["none", "16"], ["vqfr-v2", "16"],
                                                        ["codeformer", "16"]]
    tex = (out / "tables.tex").read_text()
    assert "codeformer &" in tex and "vqfr-v2 &" in tex and tex.count("\nnone &") == 1
    # its own label and source: a paper with a run's table and this comparison's has no duplicate \label
    assert "\\label{tab:restorever-compare-lfw-" in tex and "of runs vqfr, codeformer (restorever compare)" in tex
    md = (out / "comparison.md").read_text()
    assert "| x16 | vqfr-v2 | codeformer |" in md
    assert (out / "scales.png").stat().st_size > 1000
    # the same comparison as the library's
    lib = compare_runs([first, second], ["vqfr", "codeformer"])
    assert comparison["comparisons"][0]["ci_low"] == lib["comparisons"][0]["ci_low"]
    bad = _changed(second, ("config", "recognizer"), "dlib")
    (tmp_path / "dlib").mkdir()
    write_run(bad, tmp_path / "dlib")
    result = CliRunner().invoke(cli, ["compare", dirs[0], str(tmp_path / "dlib"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "different recognizer (vqfr: arcface-r50, dlib: dlib)" \
        in result.output
    result = CliRunner().invoke(cli, ["compare", dirs[0], "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "at least two run folders" in result.output


# ---------------------------------------------------------------------------------------------------------------
# real runs: dlib, 60 LFW pairs, x4 and x16


def _eval(lfw_root, cache, out, seed):
    result = CliRunner().invoke(cli, ["eval", "--protocol", "lfw", "--data-root", str(lfw_root), "--limit-pairs", "60",
                                      "--scales", "4,16", "--recognizer", "dlib", "--restorer", "none", "--seed",
                                      str(seed), "--cache-dir", str(cache), "--out", str(out), "--no-progress",
                                      "--examples", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def real_runs(lfw_root, tmp_path_factory, shared_lfw_cache):
    tmp = tmp_path_factory.mktemp("compare_real")
    return {name: _eval(lfw_root, shared_lfw_cache, tmp / name, seed)
            for name, seed in (("vqfr", 0), ("codeformer", 0), ("seed1", 1))}


@pytest.mark.slow
def test_real_runs(real_runs, tmp_path):
    from restorever.reports.results import load_results

    written = write_comparison([real_runs["vqfr"], real_runs["codeformer"]], tmp_path / "ab")
    comparison = json.loads(written["comparison.json"].read_text())
    run = load_results(real_runs["vqfr"])
    assert comparison["paired_inputs"] and [c["label"] for c in comparison["conditions"]] == ["none", "none"]
    for scale in (4, 16):  # vs clean equals what the run itself stored (same pairs, seed, clusters)
        stored = _cond(run, "none", scale)["comparison_to_clean"]
        got = _find(comparison, "vs_clean", scale, "none")
        for key in ("accuracy_difference", "ci_low", "ci_high", "mcnemar", "mcnemar_clustered"):
            assert got[key] == stored[key]
    with pytest.raises(RestoreverError, match=r"different seed \(vqfr: 0, seed1: 1\)"):
        write_comparison([real_runs["vqfr"], real_runs["seed1"]], tmp_path / "ac")
    written = write_comparison([real_runs["vqfr"], real_runs["seed1"]], tmp_path / "ac",
                               allow_different_degradation=True)
    comparison = json.loads(written["comparison.json"].read_text())
    assert not comparison["paired_inputs"]
    assert {c["label"] for c in comparison["conditions"]} == {"none (vqfr)", "none (seed1)"}


def test_one_run_under_two_spellings_refused(synthetic, tmp_path, monkeypatch):
    """`compare runs/a /abs/runs/a` (or a run and its results.json) compared a run with itself as two runs."""
    first, second = synthetic
    for name, record in (("vqfr", first), ("codeformer", second)):
        (tmp_path / name).mkdir()
        write_run(copy.deepcopy(record), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    for twice in (["vqfr", str(tmp_path / "vqfr")], ["vqfr", "vqfr/results.json"]):
        result = CliRunner().invoke(cli, ["compare", *twice, "codeformer", "--out", str(tmp_path / "cmp")])
        assert result.exit_code == 2 and "the same run folder is given twice" in result.output, result.output


def test_out_is_a_run_folder_refused(synthetic, tmp_path):
    """`--out` naming one of the runs overwrote that run's own tables.csv/tables.tex with the merged tables."""
    first, second = synthetic
    for name, record in (("vqfr", first), ("codeformer", second)):
        (tmp_path / name).mkdir()
        write_run(copy.deepcopy(record), tmp_path / name)
    (tmp_path / "vqfr" / "tables.csv").write_text("the run's own table\n")
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "vqfr"), str(tmp_path / "codeformer"), "--out",
                                      str(tmp_path / "vqfr")])
    assert result.exit_code == 2 and "is the run folder" in result.output and "choose another --out" in result.output
    assert (tmp_path / "vqfr" / "tables.csv").read_text() == "the run's own table\n"
    assert not (tmp_path / "vqfr" / "comparison.json").exists()


def test_a_run_without_none_is_compared_with_the_shared_none(synthetic):
    """`--restorer codeformer` alone has no degraded `none`; its restorer got no vs-none numbers although the other
    run's `none` scored the same degraded inputs. With paired inputs it is now compared with that `none`."""
    first, second = synthetic
    alone = copy.deepcopy(second)
    alone["conditions"] = [c for c in alone["conditions"] if not (c["restorer"] == "none" and c["scale"])]
    alone["config"]["restorers"] = ["codeformer"]
    out = compare_runs([first, alone], ["vqfr", "codeformer"])
    clusters = pair_clusters(first["pairs"]["a"], first["pairs"]["b"])
    for scale in (4, 16):
        got = _find(out, "vs_none", scale, "codeformer")
        want = compare_conditions(_cond(first, "none", scale), _cond(second, "codeformer", scale), clusters, seed=0)
        assert got["reference"] == "none" and got["accuracy_difference"] == want["accuracy_difference"]
        assert got["ci_low"] == want["ci_low"] and _unadjusted(got["mcnemar"]) == want["mcnemar"]
    assert any("codeformer: no `none` condition of its own" in n for n in out["notes"])
    # unpaired inputs (another seed): nothing is borrowed
    other_seed = copy.deepcopy(alone)
    other_seed["config"]["seed"] = 1
    out = compare_runs([first, other_seed], ["vqfr", "codeformer"], allow_different_degradation=True)
    assert not any(c["kind"] == "vs_none" and c["other"] == "codeformer" for c in out["comparisons"])


@pytest.mark.parametrize("refusal", ["recognizer", "seed", "edited", "no common scale"])
def test_a_refused_compare_leaves_no_out_folder(synthetic, tmp_path, refusal):
    """Each refusal found while comparing the loaded runs came after `--out` (and its parents) had been created,
    leaving an empty folder that looked like a comparison's; now nothing is created, and a folder that existed
    before stays."""
    first, second = synthetic
    if refusal == "recognizer":
        second = _changed(second, ("config", "recognizer"), "dlib")
    elif refusal == "seed":
        second = _changed(second, ("config", "seed"), 1)
    elif refusal == "edited":
        second = copy.deepcopy(second)
        _cond(second, "codeformer", 4)["verification"]["accuracy_mean"] = 0.999
    else:
        second = _changed(second, ("conditions",), [c for c in second["conditions"] if c["scale"] in (None, 4)])
        first = _changed(first, ("conditions",), [c for c in first["conditions"] if c["scale"] in (None, 16)])
    dirs = []
    for name, record in (("vqfr", first), ("codeformer", second)):
        (tmp_path / name).mkdir()
        write_run(copy.deepcopy(record), tmp_path / name)
        dirs.append(str(tmp_path / name))
    result = CliRunner().invoke(cli, ["compare", *dirs, "--out", str(tmp_path / "new" / "cmp")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "--out" not in result.output
    assert not (tmp_path / "new").exists(), result.output
    (tmp_path / "mine").mkdir()
    result = CliRunner().invoke(cli, ["compare", *dirs, "--out", str(tmp_path / "mine")])
    assert result.exit_code == 2 and (tmp_path / "mine").is_dir()


def test_tables_tex_caption_says_when_runs_were_degraded_with_other_seeds(synthetic, tmp_path):
    """With --allow-different-degradation, runs degraded with another seed gave a tables.tex whose caption read as
    one paired experiment (it named per-row settings only for another preset or side); the caption now says which
    run used which seed, and a paired comparison's caption has no such note."""
    first, second = synthetic
    for name, record in (("vqfr", first), ("codeformer", _changed(second, ("config", "seed"), 1))):
        (tmp_path / name).mkdir()
        write_run(copy.deepcopy(record), tmp_path / name)
    written = write_comparison([tmp_path / "vqfr", tmp_path / "codeformer"], tmp_path / "cmp",
                               allow_different_degradation=True)
    tex = written["tables.tex"].read_text()
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption{"))
    assert "not paired" in caption and "seed 0" in caption and "seed 1" in caption
    assert "from run vqfr" in caption and "from run codeformer" in caption
    (tmp_path / "same").mkdir()
    write_run(copy.deepcopy(second), tmp_path / "same")
    paired = write_comparison([tmp_path / "vqfr", tmp_path / "same"], tmp_path / "cmp2")
    assert "not paired" not in paired["tables.tex"].read_text()


def test_a_second_runs_intervals_are_those_of_its_own_results(synthetic, tmp_path):
    """Round 14: compare drew every interval with the first run's seed, so a seed-1 run's conditions showed other
    intervals in comparison.md than in that run's own results.md (x16 vs clean: [-27.16, -8.11] against
    [-26.58, -8.64] on a real dlib run). Each run's conditions now use that run's seed, as its results.md does."""
    from restorever.reports.statistics import add_comparisons

    first, _ = synthetic
    second = make_record(tmp_path, examples=0)
    second["config"]["seed"] = 1
    second["protocol"]["pairs_sha256"] = "ab" * 32
    for scale in (4, 16):  # another seed: the degraded scores differ, the clean ones do not
        cond = _cond(second, "none", scale)
        s = cond["scores"]
        noise = 0.05 * np.random.default_rng(scale).normal(size=len(s["score"]))
        s["score"] = (np.asarray(s["score"]) + noise).tolist()
        cond["verification"] = verification_report(np.asarray(s["same"]), np.asarray(s["score"]),
                                                   np.asarray(s["fold"]))
    own = add_comparisons(copy.deepcopy(second))  # what the run's results.json / results.md hold
    out = compare_runs([copy.deepcopy(first), copy.deepcopy(second)], ["a", "b"], allow_different_degradation=True)
    for scale in (4, 16):
        mine = _cond(own, "none", scale)["comparison_to_clean"]
        theirs = _find(out, "vs_clean", scale, "none (b)")
        assert theirs["bootstrap"]["seed"] == 1
        assert (theirs["ci_low"], theirs["ci_high"]) == (mine["ci_low"], mine["ci_high"])
        assert _find(out, "vs_clean", scale, "none (a)")["bootstrap"]["seed"] == 0
    fixed = compare_runs([copy.deepcopy(first), copy.deepcopy(second)], ["a", "b"], allow_different_degradation=True,
                         seed=5)
    assert {c["bootstrap"]["seed"] for c in fixed["comparisons"]} == {5}


def test_merged_record_has_a_seed_only_when_the_runs_share_it(synthetic):
    """Round 14: the merged record (tables.tex of a comparison) took the first run's seed, so a caption naming it
    would have called a seed-1 run's rows seed 0."""
    from restorever.reports.compare import merged_record

    first, second = synthetic
    paired = compare_runs([copy.deepcopy(first), copy.deepcopy(second)], ["a", "b"])
    assert merged_record(paired, [first, second])["config"]["seed"] == 0
    other = _changed(second, ("config", "seed"), 1)
    unpaired = compare_runs([copy.deepcopy(first), other], ["a", "b"], allow_different_degradation=True)
    assert merged_record(unpaired, [first, other])["config"]["seed"] is None


def test_compare_draws_as_many_replicates_as_the_runs_did(synthetic):
    """`report --bootstrap 300` remakes a run's intervals with 300 replicates; compare drew 2000 regardless, so
    its intervals differed from the run's results.md. It now takes the runs' stored n_boot when they agree, and
    says so in the notes (and comparison.md) when they do not."""
    from restorever.reports.compare import comparison_markdown, merged_record
    from restorever.reports.statistics import add_comparisons

    first, second = (add_comparisons(copy.deepcopy(r), n_boot=300) for r in synthetic)
    out = compare_runs([copy.deepcopy(first), copy.deepcopy(second)], ["a", "b"])
    assert {c["bootstrap"]["n_boot"] for c in out["comparisons"]} == {300}
    mine = _cond(second, "codeformer", 16)["comparison_to_none"]
    theirs = _find(out, "vs_none", 16, "codeformer")
    assert (theirs["ci_low"], theirs["ci_high"]) == (mine["ci_low"], mine["ci_high"])
    assert not any("replicates" in n for n in out["notes"])
    other = add_comparisons(copy.deepcopy(synthetic[1]), n_boot=500)
    mixed = compare_runs([copy.deepcopy(first), other], ["a", "b"])
    assert {c["bootstrap"]["n_boot"] for c in mixed["comparisons"]} == {2000}
    note = next(n for n in mixed["notes"] if "replicates" in n)
    assert "a: 300" in note and "b: 500" in note and "2,000" in note
    assert note in comparison_markdown(mixed, merged_record(mixed, [first, other]))
    fixed = compare_runs([copy.deepcopy(first), copy.deepcopy(second)], ["a", "b"], n_boot=200)
    assert {c["bootstrap"]["n_boot"] for c in fixed["comparisons"]} == {200}


def _stored_rates(comp: dict) -> dict:
    return {key: comp[key] for key in ("auc", "tar_at_far", "tar_rule")}


def test_auc_and_tar_at_far_differences_are_the_runs_own(synthetic, tmp_path):
    """Round 17: each run's comparison_to_none holds the paired AUC and TAR@FAR differences (rate_stats), but
    compare recomputed comparison_to_none without them: the merged tables.csv had empty vs_none_auc_* and
    vs_none_tar_at_far_* columns and comparison.md no such table. compare now runs compare_rates on the accuracy
    interval's draws, so for paired runs a condition's numbers are its run's; each pair of restorers gets them too."""
    import csv

    from restorever.reports.rate_stats import compare_rates, rate_cell
    from restorever.reports.results import load_results

    first, second = synthetic
    for name, record in (("vqfr", first), ("codeformer", second)):
        write_run(copy.deepcopy(record), tmp_path / name)  # stores comparison_to_none.auc / .tar_at_far
    runs = {name: load_results(tmp_path / name) for name in ("vqfr", "codeformer")}
    written = write_comparison([tmp_path / "vqfr", tmp_path / "codeformer"], tmp_path / "cmp")
    comparison = json.loads(written["comparison.json"].read_text())
    rows = {(r["restorer"], r["scale"]): r for r in csv.DictReader(written["tables.csv"].open())}
    md = written["comparison.md"].read_text()
    clusters = pair_clusters(first["pairs"]["a"], first["pairs"]["b"])
    resolved = 0
    for scale in (4, 16):
        for run, restorer in (("vqfr", "vqfr-v2"), ("codeformer", "codeformer")):
            own = _cond(runs[run], restorer, scale)["comparison_to_none"]
            got = _find(comparison, "vs_none", scale, restorer)
            assert _stored_rates(got) == _stored_rates(own)  # the same draws: equal, not merely close
            row = rows[(restorer, str(scale))]
            assert float(row["vs_none_auc_difference"]) == pytest.approx(own["auc"]["difference"], rel=1e-12)
            assert float(row["vs_none_auc_ci_low"]) == pytest.approx(own["auc"]["ci_low"], rel=1e-12)
            tar = own["tar_at_far"]["0.1"]  # 80 different-person pairs: FAR 0.1 resolved, 0.01 not
            assert tar["ci_low"] is not None and own["tar_at_far"]["0.01"] is None
            assert float(row["vs_none_tar_at_far_0.1_ci_high"]) == pytest.approx(tar["ci_high"], rel=1e-12)
            assert row["vs_none_tar_at_far_0.01_difference"] == ""
            assert f"| x{scale} | none | {restorer} | {rate_cell(own['auc'])} | {rate_cell(tar, 100, 2)} |" in md
            resolved += 1
        vqfr, cf = _cond(first, "vqfr-v2", scale), _cond(second, "codeformer", scale)
        pair = _find(comparison, "pair", scale, "codeformer")
        want = compare_rates(vqfr, cf, clusters, seed=0)
        assert _stored_rates(pair) == json.loads(json.dumps(want))
        # the known answer: the paired difference is the difference of the stored, pooled AUCs
        assert pair["auc"]["difference"] == pytest.approx(cf["verification"]["auc"] - vqfr["verification"]["auc"],
                                                          abs=1e-12)
        assert f"| x{scale} | vqfr-v2 | codeformer | {rate_cell(pair['auc'])} |" in md
    assert resolved == 4 and "## AUC and TAR@FAR" in md and "Δ TAR@FAR=0.1 pp" in md and "FAR=0.01" not in md


@pytest.mark.slow
def test_real_runs_auc_and_tar_at_far_differences(real_runs):
    """The same on real dlib runs: runs of `--restorer none` alone have nothing to compare with none, so the x4
    condition of the second run stands in for a restorer's output at x16 (real scores of better faces of the same
    pairs); compare's AUC / TAR@FAR differences against none equal the ones that run stores itself."""
    from restorever.reports.rate_stats import add_rate_comparisons
    from restorever.reports.results import load_results
    from restorever.reports.statistics import add_comparisons

    first, second = load_results(real_runs["vqfr"]), load_results(real_runs["codeformer"])
    stand_in = {k: v for k, v in copy.deepcopy(_cond(second, "none", 4)).items() if not k.startswith("comparison_")}
    stand_in.update(restorer="x4-stand-in", scale=16)
    second["conditions"].append(stand_in)
    second["config"]["restorers"] = [*second["config"]["restorers"], "x4-stand-in"]
    own = _cond(add_rate_comparisons(add_comparisons(copy.deepcopy(second), overwrite=True)), "x4-stand-in", 16)
    out = compare_runs([first, second], ["vqfr", "codeformer"])
    got = _find(out, "vs_none", 16, "x4-stand-in")
    assert got["reference"] == "none" and got["bootstrap"] == own["comparison_to_none"]["bootstrap"]
    assert _stored_rates(got) == _stored_rates(own["comparison_to_none"])
    none16 = _cond(first, "none", 16)["verification"]
    assert got["auc"]["difference"] == pytest.approx(stand_in["verification"]["auc"] - none16["auc"], abs=1e-12)
    auc = got["auc"]
    assert auc["ci_low"] is not None and auc["ci_low"] <= auc["difference"] <= auc["ci_high"]


def test_compare_keeps_a_runs_tar_rule(synthetic, tmp_path):
    """A run written before tar_rule (rate intervals by rule 1, no key) keeps its own TAR@FAR intervals in
    compare's vs_none comparisons (80 impostors: FAR 0.1 is a whole 8, where the rules differ); a pair of restorers
    is computed by the current rule."""
    from restorever.reports.rate_stats import TAR_RULE
    from restorever.reports.results import load_results

    first, second = synthetic
    for name, record in (("vqfr", first), ("codeformer", second)):
        write_run(copy.deepcopy(record), tmp_path / name)
    path = tmp_path / "vqfr" / "results.json"
    older = json.loads(path.read_text())
    by_rule_2 = copy.deepcopy(_cond(older, "vqfr-v2", 16)["comparison_to_none"]["tar_at_far"])
    path.write_text(json.dumps(as_rule_1(older)))
    own = _cond(load_results(tmp_path / "vqfr"), "vqfr-v2", 16)["comparison_to_none"]
    comparison = json.loads(write_comparison([tmp_path / "vqfr", tmp_path / "codeformer"],
                                             tmp_path / "cmp")["comparison.json"].read_text())
    got = _find(comparison, "vs_none", 16, "vqfr-v2")
    assert got["tar_rule"] == 1 and got["tar_at_far"] == own["tar_at_far"] != by_rule_2
    newer = _find(comparison, "vs_none", 16, "codeformer")
    assert newer["tar_rule"] == TAR_RULE == 2
    assert _find(comparison, "pair", 16, "codeformer")["tar_rule"] == TAR_RULE

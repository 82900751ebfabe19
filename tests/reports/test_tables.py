"""`restorever report`'s paper outputs: tables.csv and tables.tex (restorever.reports.tables) and the References
section, checked against results.json of the shared synthetic run and of a real LFW run (MTCNN + dlib)."""
from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil

from click.testing import CliRunner

from restorever.cli import cli
from restorever.reports.results import load_results
from restorever.reports.tables import CSV_COLUMNS, FARS, results_table_rows, run_references, to_csv, to_latex

#: CSV column -> where its number is in a condition of results.json
_PATHS = {"accuracy": ("verification", "accuracy_mean"), "accuracy_std": ("verification", "accuracy_std"),
          "accuracy_sem": ("verification", "accuracy_sem"), "auc": ("verification", "auc"),
          "eer": ("verification", "eer"), "n_pairs": ("verification", "n_pairs"),
          **{f"tar_at_far_{f}": ("verification", "tar_at_far", f) for f in FARS},
          "cosine_to_clean_mean": ("identity", "cosine_to_clean_mean"),
          "cosine_to_clean_median": ("identity", "cosine_to_clean_median")}
for _key, _prefix in (("comparison_to_none", "vs_none"), ("comparison_to_clean", "vs_clean")):
    _PATHS.update({f"{_prefix}_accuracy_difference": (_key, "accuracy_difference"),
                   f"{_prefix}_ci_low": (_key, "ci_low"),
                   f"{_prefix}_ci_high": (_key, "ci_high"), f"{_prefix}_ci_level": (_key, "ci_level"),
                   f"{_prefix}_mcnemar_p": (_key, "mcnemar", "p_value"),
                   f"{_prefix}_clustered_p": (_key, "mcnemar_clustered", "p_value")})


def _stored(cond: dict, path: tuple) -> object:
    value = cond
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def check_csv_against_record(text: str, record: dict) -> int:
    """Every cell of tables.csv equals results.json (numbers read back exactly; missing numbers empty); returns
    the number of non-empty numeric cells checked."""
    rows = list(csv.DictReader(io.StringIO(text)))
    conds = [c for c in record["conditions"] if c.get("verification")]
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == len(conds)
    checked = 0
    for row, cond in zip(rows, conds):
        assert row["restorer"] == cond["restorer"] and row["recognizer"] == cond["recognizer"]
        assert row["scale"] == ("" if cond["scale"] is None else str(cond["scale"]))
        assert row["degradation"] == (cond.get("degradation") or "")
        assert int(row["folds"]) == len(cond["verification"]["fold_accuracies"])
        for column, path in _PATHS.items():
            value = _stored(cond, path)
            if column == "n_pairs" and value is None:
                value = len(cond["scores"]["score"])
            if value is None:
                assert row[column] == "", column
            else:
                assert float(row[column]) == value, (column, row[column], value)
                checked += 1
    assert "nan" not in text.lower()
    return checked


def _braces_balanced(tex: str) -> bool:
    depth = 0
    for token in re.findall(r"\\[{}]|[{}]", tex):
        if token in "{}":
            depth += 1 if token == "{" else -1
            if depth < 0:
                return False
    return depth == 0


def _body_rows(tex: str) -> list[list[str]]:
    body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [[cell.strip() for cell in line.removesuffix("\\\\").split(" & ")] for line in body.strip().splitlines()]


def test_csv_equals_results_json(run_dir):
    record = load_results(run_dir)
    text = to_csv(results_table_rows(record))
    assert check_csv_against_record(text, record) > 60
    # the paired statistics are in it: vqfr-v2 against none at the same scale, every degraded one against clean
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["restorer"] == "vqfr-v2" and r["scale"] == "16")
    assert row["vs_none_ci_low"] and row["vs_none_clustered_p"] and row["vs_clean_mcnemar_p"]


def test_missing_and_nan_numbers_are_empty_cells_and_dashes(run_dir):
    record = copy.deepcopy(load_results(run_dir))
    cond = record["conditions"][1]  # none x4
    cond["verification"]["auc"] = float("nan")
    cond["verification"]["accuracy_mean"] = float("nan")
    cond["verification"]["tar_at_far"]["0.0001"] = None
    row = next(r for r in csv.DictReader(io.StringIO(to_csv(results_table_rows(record))))
               if r["restorer"] == "none" and r["scale"] == "4")
    assert row["auc"] == row["accuracy"] == row["tar_at_far_0.0001"] == ""
    tex = to_latex(record)
    assert "nan" not in tex.lower() and "None" not in tex
    rows = {r[0]: r[1:] for r in _body_rows(tex)}
    assert rows["none"][0] == "--" and "--: not available" in tex


def test_latex_table(run_dir):
    record = load_results(run_dir)
    tex = to_latex(record)
    assert _braces_balanced(tex)
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 1
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    header = tex.split("\\toprule\n", 1)[1].split(" \\\\", 1)[0]
    assert header.split(" & ") == ["Restorer", "$\\times$4", "$\\times$16"]
    rows = _body_rows(tex)
    assert [r[0] for r in rows] == ["none", "vqfr-v2"]  # one row per restorer, in the run's order
    at = {(c["restorer"], c["scale"]): c["verification"] for c in record["conditions"]}
    for j, scale in enumerate((4, 16), start=1):
        bold = [r[0] for r in rows if r[j].startswith("\\textbf{")]
        top = max(at[(n, scale)]["accuracy_mean"] for n in ("none", "vqfr-v2"))
        assert bold == [n for n in ("none", "vqfr-v2") if at[(n, scale)]["accuracy_mean"] == top], (scale, rows)
        for name, *cells in rows:
            v = at[(name, scale)]
            shown = re.fullmatch(r"(?:\\textbf\{)?([0-9.]+)\}? \$\\pm\$ ([0-9.]+)", cells[j - 1])
            assert shown, cells[j - 1]
            assert float(shown[1]) == round(100 * v["accuracy_mean"], 2)
            assert float(shown[2]) == round(100 * v["accuracy_sem"], 2)
    assert sum(c.startswith("\\textbf{") for r in rows for c in r) == 3  # a tie at x4 (both bold), vqfr-v2 at x16
    caption = re.search(r"\\caption\{(.*)\}\n\\label", tex).group(1)
    clean = at[("none", None)]
    assert "on lfw: 160 pairs, 10-fold" in caption and "recognizer arcface-r50" in caption
    assert "standard error of the mean over the 10 fold accuracies" in caption
    assert f"Clean (undegraded) accuracy: {100 * clean['accuracy_mean']:.2f} $\\pm$" in caption


def test_latex_escapes_names(run_dir):
    record = copy.deepcopy(load_results(run_dir))
    for cond in record["conditions"]:
        if cond["restorer"] == "vqfr-v2":
            cond["restorer"] = "my_net&co 100%"
        cond["recognizer"] = "arc_face#1"
    record["config"]["restorers"] = ["none", "my_net&co 100%"]
    tex = to_latex(record)
    assert [r[0] for r in _body_rows(tex)] == ["none", "my\\_net\\&co 100\\%"]
    assert "recognizer arc\\_face\\#1" in tex and _braces_balanced(tex)
    assert not re.search(r"(?<!\\)[_#]", tex)  # no unescaped _ or # anywhere (caption, rows, label)


def test_latex_keeps_line_breaks_in_names_out_of_the_tex(run_dir):
    """A run folder or restorer name holding a line break (a legal Linux file name): the `%` comment line of
    tables.tex ended at the break and the rest of the name (here `#1`) was raw LaTeX; in the caption a blank line
    ended the paragraph inside \\caption{...}, which LaTeX refuses. Control characters are written as spaces."""
    record = copy.deepcopy(load_results(run_dir))
    for cond in record["conditions"]:
        if cond["restorer"] == "vqfr-v2":
            cond["restorer"] = "my\nnet"
    record["config"]["restorers"] = ["none", "my\nnet"]
    tex = to_latex(record, source="the results.json of runs a\n#1, b\r\n\n\tc", note="run x\n\ny: seed 1")
    lines = tex.splitlines()
    assert lines[0].startswith("% ") and "a #1, b" in lines[0] and lines[1] == r"\begin{table}[t]"
    caption = next(line for line in lines if line.startswith(r"\caption{"))
    assert caption.endswith("}") and "run x  y: seed 1" in caption and _braces_balanced(tex)
    assert [r[0] for r in _body_rows(tex)] == ["none", "my net"]
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", tex)
    assert not re.search(r"(?<!\\)#", "\n".join(lines[1:]))  # below the comment line, no raw #


def test_references_list_only_what_the_run_used(run_dir, caplog):
    record = copy.deepcopy(load_results(run_dir))
    refs = {(role, name): ref for role, name, ref in run_references(record)}
    assert ("recognizer", "arcface-r50") not in refs  # not a registered name: left out, and said so
    assert "recognizer arcface-r50 has no card here" in caplog.text
    for cond in record["conditions"]:
        cond["recognizer"] = "arcface-r50-glint360k"
    refs = {(role, name): ref for role, name, ref in run_references(record)}
    assert refs[("protocol", "lfw")].startswith("Huang et al., Labeled Faces in the Wild")
    assert refs[("restorer", "vqfr-v2")] == "https://arxiv.org/abs/2205.06803"
    assert refs[("recognizer", "arcface-r50-glint360k")] == "https://arxiv.org/abs/2010.05222"
    assert ("restorer", "none") not in refs and not any("gfpgan" in n for _, n in refs)
    # the degradation preset the conditions name is cited (DifFace's test grid: DifFace's paper and its source file)
    assert refs[("degradation", "difface-test")].startswith("https://arxiv.org/abs/2212.06512 (DifFace make_testing")
    assert not any(role == "restorer" and "difface" in n for role, n in refs)
    assert refs[("software", "restorever 0.0.test")].startswith("restorever contributors")


def test_report_writes_tables_and_references_of_a_real_run(real_run, tmp_path):
    run = shutil.copytree(real_run, tmp_path / "run")
    result = CliRunner().invoke(cli, ["report", str(run), "--format", "png", "--latex", str(tmp_path / "p" / "t.tex")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((run / "results.json").read_text())
    assert check_csv_against_record((run / "tables.csv").read_text(), record) >= 3 * 8
    tex = (tmp_path / "p" / "t.tex").read_text()
    assert not (run / "tables.tex").exists() and _braces_balanced(tex)
    assert [r[0] for r in _body_rows(tex)] == ["none"] and "textbf" not in tex  # nothing to compare: no bold
    pairs = record["protocol"]["pairs"]
    assert f"on lfw: {pairs} pairs (a subset balanced over the folds), 10-fold" in tex and "recognizer dlib" in tex
    md = (run / "report.md").read_text()
    refs = md.split("## References", 1)[1]
    assert "| protocol | lfw | Huang et al." in refs and "| recognizer | dlib | https://jmlr.org/" in refs
    assert "| landmark detector | mtcnn | https://arxiv.org/abs/1604.02878 |" in refs
    assert f"restorever {record['restorever_version']}" in refs and "arxiv.org/abs/2205" not in refs
    page = (run / "report.html").read_text()
    # listed as text: the page stays self-contained, with no link out (test_report_is_self_contained)
    assert 'id="table-references"' in page and "https://arxiv.org/abs/1604.02878" in page


def test_report_checks_csv_and_latex_paths_before_drawing(own_run_dir, tmp_path):
    (tmp_path / "folder").mkdir()
    result = CliRunner().invoke(cli, ["report", str(own_run_dir), "--csv", str(tmp_path / "folder")])
    assert result.exit_code == 2 and "--csv" in result.output and "is a folder" in result.output
    assert not (own_run_dir / "figures").exists() and not (own_run_dir / "report.html").exists()


def test_latex_bold_ties_despite_summation_order(run_dir):
    """Two restorers with the same fold accuracies in another order have means that differ in the last bit
    (55/60 correct: 0.9166666666666667 and 0.9166666666666666 in two real dlib runs); both are the best, so
    both are bold."""
    record = load_results(run_dir)
    for cond in record["conditions"]:
        if cond["scale"] == 16:
            cond["verification"]["accuracy_mean"] = {"none": 0.9166666666666667,
                                                     "vqfr-v2": 0.9166666666666666}[cond["restorer"]]
    rows = {r[0]: r[2] for r in _body_rows(to_latex(record))}
    assert rows["none"].startswith("\\textbf{91.67}") and rows["vqfr-v2"].startswith("\\textbf{91.67}"), rows


def test_latex_caption_names_each_rows_degradation_when_rows_differ(run_dir):
    """`restorever compare --allow-different-degradation` merges runs degraded differently into one table: the
    caption must not say that every row's probes were degraded with the first row's preset and side."""
    record = copy.deepcopy(load_results(run_dir))
    for cond in record["conditions"]:
        if cond["restorer"] == "vqfr-v2":
            cond["degrade_side"], cond["degradation"] = "both", "gfpgan-v1"
    caption = re.search(r"\\caption\{(.*)\}\n\\label", to_latex(record)).group(1)
    assert "the probe images degraded with difface-test" not in caption
    assert ("with another degradation or degraded side in some rows (none: the probe images, difface-test; "
            "vqfr-v2: both images, gfpgan-v1)") in caption
    plain = re.search(r"\\caption\{(.*)\}\n\\label", to_latex(load_results(run_dir))).group(1)
    assert "Columns: the probe images degraded with difface-test at scale" in plain  # one setting: as before


def test_latex_caption_names_the_seed(run_dir):
    """Round 14: the caption named protocol, recognizer, pairs, folds and degradation but not the seed, which sets
    every degraded image (another seed gave 61.25 % instead of 70.00 % at x32 on a real 80-pair dlib run); a
    comparison of runs with different seeds names each run's seed instead (compare's note), not one for all."""
    record = load_results(run_dir)
    for seed in (0, 7):
        record["config"]["seed"] = seed
        caption = next(line for line in to_latex(record).splitlines() if line.startswith(r"\caption{"))
        assert f"at scale $\\times s$ (seed {seed}); rows:" in caption
    record["config"]["seed"] = None
    assert "(seed" not in to_latex(record)


def test_csv_rows_name_their_seed_and_degradation(run_dir):
    """tables.tex's caption names the seed, but a tables.csv row, which travels alone into a spreadsheet, did not:
    two runs' rows with other seeds (other degraded images) looked alike. Each row now has ``seed`` beside
    ``degradation``; the clean row's degradation is empty."""
    record = load_results(run_dir)
    record["config"]["seed"] = 7
    rows = list(csv.DictReader(io.StringIO(to_csv(results_table_rows(record)))))
    assert {"seed", "degradation"} <= set(rows[0])
    assert {r["seed"] for r in rows} == {"7"}
    assert {r["degradation"] for r in rows if r["scale"]} == {"difface-test"}
    assert [r["degradation"] for r in rows if not r["scale"]] == [""]


def test_compare_csv_rows_carry_their_own_runs_seed(tmp_path):
    """A comparison of runs with different seeds has no one seed (config.seed None): each merged row takes its own
    run's, so the CSV still says which degraded images a row scored."""
    from restorever.reports.compare import compare_runs, merged_record

    from .conftest import make_record

    first = make_record(tmp_path, examples=0)
    second = copy.deepcopy(first)
    second["config"]["seed"] = 3
    for cond in second["conditions"]:
        if cond["restorer"] == "vqfr-v2":
            cond["restorer"] = "codeformer"
    second["config"]["restorers"] = ["none", "codeformer"]
    for record in (first, second):
        record["protocol"]["pairs_sha256"] = "ab" * 32
    comparison = compare_runs([first, second], ["a", "b"], allow_different_degradation=True, n_boot=100)
    merged = merged_record(comparison, [first, second])
    assert merged["config"]["seed"] is None
    rows = list(csv.DictReader(io.StringIO(to_csv(results_table_rows(merged)))))
    seeds = {r["restorer"]: r["seed"] for r in rows if r["scale"] == "16"}
    assert seeds["vqfr-v2"] == "0" and seeds["codeformer"] == "3"

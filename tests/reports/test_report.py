"""`restorever report`: one self-contained HTML page (checked in headless Chromium) and a markdown summary."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.reports.html import build_report, report_tables
from restorever.reports.results import load_results

#: appended to a copy of the page: lists every image's decoded size and every table's body rows
_PROBE = """<script>
window.addEventListener("load", function () {
  var out = {
    images: Array.prototype.map.call(document.images, function (im) {
      return {alt: im.alt, complete: im.complete, width: im.naturalWidth, height: im.naturalHeight}; }),
    tables: Array.prototype.map.call(document.querySelectorAll("table"), function (t) {
      return {id: t.id, rows: t.tBodies.length ? t.tBodies[0].rows.length : 0,
              cells: t.tBodies.length && t.tBodies[0].rows.length ? t.tBodies[0].rows[0].cells.length : 0,
              columns: t.tHead ? t.tHead.rows[0].cells.length : 0}; })
  };
  var pre = document.createElement("pre");
  pre.id = "probe-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it when run as root): "
                "the browser check of the HTML report needs it")


def _browser_probe(page: Path, tmp_path: Path) -> dict:
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', result.stdout, re.S)
    assert match, f"the page's load handler did not run (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-out")
    return build_report(run_dir, html_path=out / "report.html", markdown_path=out / "report.md",
                        figures_dir=out / "figures", formats=("png",))


def test_report_page_in_headless_chromium(report, run_dir, tmp_path):
    record = load_results(run_dir)
    expected = {f"table-{t.key}": (len(t.rows), len(t.header)) for t in report_tables(record)}
    seen = _browser_probe(report["html"], tmp_path)
    # every figure is on the page and decodes
    assert sorted(i["alt"] for i in seen["images"]) == sorted(report["figures"]) == sorted(
        ["roc", "scales", "similarity", "grid", "cmc"])
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 300 and image["height"] > 100, image
    # every table has its rows
    assert {t["id"]: (t["rows"], t["columns"]) for t in seen["tables"]} == expected
    assert all(t["cells"] == t["columns"] for t in seen["tables"])
    assert expected["table-results"][0] == len(record["conditions"]) == 5
    # 4 degraded conditions vs clean + 2 restorer-vs-none comparisons
    assert expected["table-statistics"][0] == 6
    assert expected["table-weights"][0] == 1


def test_report_is_self_contained(report):
    page = report["html"].read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(https?:|//|file:)', page)
    assert "ab" * 32 in page  # the weights' sha256
    assert "difface-test" in page and "arcface-r50" in page and "0.0.test" in page  # configuration, versions


def test_markdown_summary_links_existing_figures(report, run_dir):
    md = report["markdown"].read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 5
    for link in links:
        assert (report["markdown"].parent / link).is_file(), link
    record = load_results(run_dir)
    comp = next(c for c in record["conditions"] if c.get("comparison_to_none"))["comparison_to_none"]
    assert f"{comp['mcnemar']['p_value']:.3g}" in md
    assert "## Weights" in md and "## Configuration" in md


def test_report_command(own_run_dir):
    record = json.loads((own_run_dir / "results.json").read_text())
    for cond in record["conditions"]:  # an older record without statistics or retrieval: both handled
        cond.pop("comparison_to_none", None)
        cond.pop("comparison_to_clean", None)
        cond.pop("retrieval", None)
    (own_run_dir / "results.json").write_text(json.dumps(record))
    result = CliRunner().invoke(cli, ["report", str(own_run_dir), "--format", "png,svg"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.output  # a verification run has no CMC figure to skip
    page = (own_run_dir / "report.html").read_text(encoding="utf-8")
    assert page.count("<img ") == 4 and "Paired comparisons" in page
    assert sorted(p.name for p in (own_run_dir / "figures").iterdir()) == sorted(
        f"{n}.{s}" for n in ("roc", "scales", "similarity", "grid") for s in ("png", "svg"))
    bad = CliRunner().invoke(cli, ["report", str(own_run_dir), "--format", "jpg"])
    assert bad.exit_code == 2 and "unsupported format" in bad.output


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["scores"].update(score=c["scores"]["score"][:10]),
     "conditions[1].scores: same has 160 entries, fold has 160 entries, score has 10 entries"),
    (lambda c: c["verification"].update(n_pairs=7), "conditions[1].scores: 160 pairs, but verification.n_pairs is 7"),
    (lambda c: c["verification"].update(thresholds=c["verification"]["thresholds"][:3]),
     "conditions[1].verification: 10 fold accuracies but 3 thresholds"),
])
def test_per_pair_lists_of_unequal_length_are_one_error_line(own_run_dir, edit, message):
    """A results.json whose score lists differ in length passed the schema, and `report` / `plot similarity` then
    ended in an IndexError traceback; it is now refused on reading, naming the condition and the lengths."""
    record = json.loads((own_run_dir / "results.json").read_text())
    edit(record["conditions"][1])
    (own_run_dir / "results.json").write_text(json.dumps(record))
    for command in (["report", str(own_run_dir)], ["plot", "similarity", str(own_run_dir), "-o",
                                                   str(own_run_dir / "s.png")]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output


def test_per_fold_tables(run_dir):
    """The per-fold accuracies, fold sizes and thresholds were in results.json only: a small fold after skipped
    pairs, which weighs as much as a full one in the accuracy, was invisible."""
    record = load_results(run_dir)
    tables = {t.key: t for t in report_tables(record)}
    folds, thresholds = tables["folds"], tables["fold_thresholds"]
    assert folds.header == ["condition", *[f"fold {k}" for k in range(1, 11)]]
    assert folds.rows[0] == ["pairs", *["16"] * 10]
    for cond, row in zip(record["conditions"], folds.rows[1:]):
        v = cond["verification"]
        assert row[1:] == [f"{100 * a:.2f}" for a in v["fold_accuracies"]]
        assert np.mean([float(x) for x in row[1:]]) == pytest.approx(100 * v["accuracy_mean"], abs=0.01)
    assert len(thresholds.rows) == len(record["conditions"])


def test_report_warns_when_stored_metrics_differ_from_the_scores(own_run_dir, caplog):
    """An edited accuracy was shown without a word next to paired statistics computed from the scores."""
    clean = build_report(own_run_dir, formats=("png",))
    assert "Warning: stored metrics" not in md_of(clean)
    record = json.loads((own_run_dir / "results.json").read_text())
    record["conditions"][2]["verification"]["accuracy_mean"] = 0.99
    (own_run_dir / "results.json").write_text(json.dumps(record))
    out = build_report(own_run_dir, formats=("png",))
    md = md_of(out)
    assert "## Warning: stored metrics differ from the scores" in md and "accuracy_mean: stored 0.99" in md
    assert md.index("Warning: stored metrics") < md.index("| condition |")
    assert "restorever validate" in caplog.text


def test_report_warns_when_the_stored_sem_differs_from_the_scores(own_run_dir):
    """tables.tex prints accuracy ± the stored SEM: an edited SEM (±0.10 for ±5.53 in a real 40-pair run) was
    written into the paper table without a warning."""
    record = json.loads((own_run_dir / "results.json").read_text())
    record["conditions"][2]["verification"]["accuracy_sem"] = 0.001
    (own_run_dir / "results.json").write_text(json.dumps(record))
    md = md_of(build_report(own_run_dir, formats=("png",)))
    assert "## Warning: stored metrics differ from the scores" in md and "accuracy_sem: stored 0.001" in md


def test_report_checks_where_it_writes_before_drawing(own_run_dir, tmp_path):
    """`--html` under a file failed with "File exists" after all figures had been written."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    figures = tmp_path / "figs"
    result = CliRunner().invoke(cli, ["report", str(own_run_dir), "--html", str(blocker / "report.html"),
                                      "--figures-dir", str(figures)])
    assert result.exit_code == 2 and f"--html {blocker}" in result.output and "not a folder" in result.output
    assert not figures.exists()
    result = CliRunner().invoke(cli, ["report", str(own_run_dir), "--markdown", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder; give the file to write" in result.output


def test_report_of_a_folder_without_results(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no results file" in result.output


def test_make_figures_script(run_dir, tmp_path):
    import runpy
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "make_figures.py"
    argv = sys.argv
    sys.argv = [str(script), str(run_dir), "--out", str(tmp_path / "docs"), "--formats", "png"]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    assert exit_info.value.code == 0
    names = sorted(p.name for p in (tmp_path / "docs").iterdir())
    assert names == sorted(["cmc.png", "grid.png", "roc.png", "scales.png", "similarity.png", "report.html",
                            "report.md"])


def md_of(out: dict) -> str:
    return out["markdown"].read_text(encoding="utf-8")


def _rates(cmc: list[float]) -> dict:
    """The rates of an identification record's retrieval block (120 probes) from its CMC."""
    return {"rank1": cmc[0], "rank5": cmc[4], "rank10": cmc[9], "map": cmc[0] - 0.05, "n_probes": 120, "cmc": cmc,
            "mate_filtered_out": 0.0}


def test_report_of_an_identification_run(tmp_path):
    """A `restorever ident` record (retrieval and attributes, no pairs): CMC figure, identification and attribute
    tables; the verification figures are not this run's and are not listed as skipped."""
    conditions = []
    for restorer, scale, rank1 in (("none", None, 0.9), ("none", 16, 0.6), ("vqfr-v2", 16, 0.7)):
        cmc = [min(1.0, rank1 + 0.03 * k) for k in range(10)]
        conditions.append({"restorer": restorer, "scale": scale, "recognizer": "dlib",
                           "retrieval": {**_rates(cmc), "gallery_fraction": 1.0,
                                         "filtered": {**_rates([min(1, x + 0.02) for x in cmc]),
                                                      "gallery_fraction": 0.4}},
                           "attributes": {"raw": {"gender": {"accuracy": rank1, "ece": 0.05},
                                                  "age": {"accuracy": rank1 - 0.2, "ece": 0.1}},
                                          "reweighted": {"gender": {"accuracy": rank1 + 0.01, "ece": 0.04},
                                                         "age": {"accuracy": rank1 - 0.1, "ece": 0.08}},
                                          "gender_flip_rate": 0.9 - rank1, "age_group_change_rate": 0.25}})
    record = {"restorever_version": "0.0.test", "created": "2026-01-01T00:00:00+00:00",
              "config": {"protocol": "lfw-ident", "recognizer": "dlib", "restorers": ["none", "vqfr-v2"],
                         "scales": [16], "degradation": "difface-test", "seed": 0},
              "environment": {"device": "cpu"}, "weights": {},
              "protocol": {"name": "lfw-ident", "task": "identification", "gallery_size": 500, "probes": 120,
                           "skipped": []},
              "conditions": conditions}
    (tmp_path / "results.json").write_text(json.dumps(record))
    out = build_report(tmp_path, formats=("png",))
    assert set(out["figures"]) == {"cmc"}
    # the verification figures (the example grid too: ident saves no examples) do not apply: not listed as skipped,
    # where the grid's note told the user to rerun `restorever eval --examples N`
    assert out["skipped_figures"] == {}
    assert "skipped images or people" in md_of(out) and "skipped pairs" not in md_of(out)
    tables = {t.key: t for t in report_tables(json.loads((tmp_path / "results.json").read_text()))}
    assert "results" not in tables and len(tables["retrieval"].rows) == 3
    assert tables["retrieval"].rows[2][:3] == ["vqfr-v2 x16", "120", "70.00"]
    md = out["markdown"].read_text()
    assert "gallery 500, probes 120" in md and "## Identification" in md and "](figures/cmc.png)" in md
    # the attribute predictions per condition (they were in results.md only)
    assert tables["attributes"].rows[2] == ["vqfr-v2 x16", "70.00 / 71.00", "50.00 / 60.00", "5.00 / 4.00",
                                            "10.00 / 8.00", "20.00", "25.00"]
    assert "## Predicted attributes" in md and "| vqfr-v2 x16 | 70.00 / 71.00 |" in md
    assert "Predicted attributes" in out["html"].read_text()
    # no verification numbers: no tables.csv / tables.tex, and the reason is given; the references still are
    assert out["csv"] is None and out["latex"] is None and "no verification conditions" in out["skipped_tables"]
    assert not (tmp_path / "tables.csv").exists() and not (tmp_path / "tables.tex").exists()
    assert "| protocol | lfw-ident | Huang et al." in md and "| restorer | vqfr-v2 | https://arxiv.org/" in md


def test_environment_table_says_how_stage_times_add_up(run_dir):
    """Under torchrun the per-stage seconds are summed over the processes (656 s of embedding in a 407 s run of the
    README sweep); without a word on it the report read as an impossible timing."""
    record = load_results(run_dir)
    record["timings"] = {"total_s": 10.0, "embed_s": 18.0, "n_embedded": 4}
    env = {t.key: t for t in report_tables(record)}["environment"]
    assert ["time: embed_s", "18"] in env.rows and "summed over the processes" in env.note
    record["timings"] = {}
    assert {t.key: t for t in report_tables(record)}["environment"].note == ""

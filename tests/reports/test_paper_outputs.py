"""Round 18, paper outputs, second pass: `compare`'s figure in the formats a paper wants, the score-distribution
figure readable in greyscale, the recognizer's input crop in results.json and the methods text, and a methods text
for identification runs."""
from __future__ import annotations

import copy

from click.testing import CliRunner

from restorever.cli import cli
from restorever.reports.results import write_run

from .conftest import make_record
from .test_compare import _rename


def _two_runs(tmp_path) -> list[str]:
    """Two run folders made separately: ``none`` + ``vqfr-v2`` and ``none`` + ``codeformer`` on the same pairs."""
    first = make_record(tmp_path, examples=0)
    second = _rename(make_record(tmp_path, examples=0), "vqfr-v2", "codeformer", 0.15)
    dirs = []
    for name, record in (("vqfr", first), ("codeformer", second)):
        (tmp_path / name).mkdir()
        write_run(copy.deepcopy(record), tmp_path / name)
        dirs.append(str(tmp_path / name))
    return dirs


def test_compare_writes_its_figure_in_the_formats_asked_for(tmp_path):
    """`compare` wrote its accuracy-against-scale figure as scales.png only; a paper wants a vector file. `--format`
    (as `report`'s) now picks the formats; the default is still scales.png alone, byte for byte the same."""
    dirs = _two_runs(tmp_path)
    default = CliRunner().invoke(cli, ["compare", *dirs, "--out", str(tmp_path / "a")])
    assert default.exit_code == 0, default.output
    assert sorted(p.name for p in (tmp_path / "a").glob("scales.*")) == ["scales.png"]
    asked = CliRunner().invoke(cli, ["compare", *dirs, "--out", str(tmp_path / "b"), "--format", "PDF, .svg,png,pdf"])
    assert asked.exit_code == 0, asked.output
    out = tmp_path / "b"
    assert sorted(p.name for p in out.glob("scales.*")) == ["scales.pdf", "scales.png", "scales.svg"]
    assert (out / "scales.pdf").read_bytes().startswith(b"%PDF") and b"/FontFile2" in (out / "scales.pdf").read_bytes()
    assert "<svg" in (out / "scales.svg").read_text()
    assert (out / "scales.png").read_bytes() == (tmp_path / "a" / "scales.png").read_bytes()
    for name in ("tables.tex", "tables.csv", "comparison.md"):  # the figures' formats change nothing else
        assert (out / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    assert all(str(out / n) in asked.output for n in ("scales.pdf", "scales.svg", "scales.png"))
    only_pdf = CliRunner().invoke(cli, ["compare", *dirs, "--out", str(tmp_path / "c"), "--format", "pdf"])
    assert only_pdf.exit_code == 0 and [p.name for p in (tmp_path / "c").glob("scales.*")] == ["scales.pdf"]
    for bad in ("jpg", "png,eps", ","):
        refused = CliRunner().invoke(cli, ["compare", *dirs, "--out", str(tmp_path / "d"), "--format", bad])
        assert refused.exit_code == 2 and "--format" in refused.output and "png, pdf, svg" in refused.output, bad
        assert not (tmp_path / "d").exists()  # refused before anything is written

"""Round 19: a figure copied on its own says what made it. The paper figures carry no title, so the protocol,
degradation, recognizer, restorers and scales go into the file's metadata (PDF Subject, SVG and PNG Description),
where ``pdfinfo``, an image viewer's properties or ``exiftool`` show them."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from PIL import Image

from restorever.cli import cli
from restorever.reports.figure_io import MAX_DESCRIPTION, figure_description
from restorever.reports.plots import plot_roc, plot_scales

from .conftest import make_record

EXPECTED = ("protocol lfw (160 pairs); degradation difface-test (seed 0, probe side); recognizer arcface-r50; "
            "restorers none, vqfr-v2; scales x4, x16; restorever 0.0.test, 2026-01-01T00:00:00+00:00")


def _pdf_subject(data: bytes) -> str:
    """The Info dictionary's /Subject of a PDF matplotlib wrote (a literal string, \\-escapes undone)."""
    match = re.search(rb"/Subject \(((?:\\.|[^\\)])*)\)", data)
    assert match, "no /Subject in the PDF"
    return re.sub(rb"\\(.)", rb"\1", match.group(1)).decode("latin-1")


def _svg_description(path) -> str:
    texts = [el.text for el in ET.parse(path).iter() if el.tag.endswith("}description")]
    assert texts, "no dc:description in the SVG"
    return texts[0]


def test_the_description_names_every_part_of_a_run(tmp_path):
    record = make_record(tmp_path, examples=0)
    assert figure_description([record]) == EXPECTED
    other = make_record(tmp_path, examples=0, seed=3)
    other["config"]["recognizer"] = "dlib"
    for cond in other["conditions"]:
        cond["recognizer"] = "dlib"
    both = figure_description([record, other])
    assert both.split(" | ") == [EXPECTED, EXPECTED.replace("seed 0", "seed 3").replace("arcface-r50", "dlib")]
    assert figure_description([]) == ""


def test_a_record_without_the_optional_parts_gets_what_it_has(tmp_path):
    record = make_record(tmp_path, examples=0, scales=(16,), restorers=("none",))
    for key in ("restorever_version", "created"):
        del record[key]
    del record["config"]["seed"]
    assert figure_description([record]) == ("protocol lfw (160 pairs); degradation difface-test (probe side); "
                                            "recognizer arcface-r50; restorers none; scales x16")


def test_a_long_description_is_cut_with_an_ellipsis(tmp_path):
    record = make_record(tmp_path, examples=0)
    text = figure_description([record] * 40)
    assert len(text) == MAX_DESCRIPTION and text.endswith("...") and text.startswith(EXPECTED + " | ")


@pytest.mark.parametrize("suffix", [".pdf", ".svg", ".png"])
def test_each_format_carries_the_description(tmp_path, suffix):
    record = make_record(tmp_path, examples=0)
    out = plot_roc([record], tmp_path / f"roc{suffix}")
    if suffix == ".pdf":
        found = _pdf_subject(out.read_bytes())
    elif suffix == ".svg":
        found = _svg_description(out)
    else:
        with Image.open(out) as image:
            found = image.text["Description"]
    assert found == EXPECTED
    again = plot_roc([record], tmp_path / f"again{suffix}")  # still byte-reproducible
    assert again.read_bytes() == out.read_bytes()


def test_two_runs_in_one_figure_are_both_described(tmp_path):
    first, second = make_record(tmp_path, examples=0), make_record(tmp_path, examples=0, seed=1)
    out = plot_scales([first, second], tmp_path / "scales.png")
    with Image.open(out) as image:
        assert image.text["Description"].split(" | ") == [EXPECTED, EXPECTED.replace("seed 0", "seed 1")]


def test_plot_and_breakdown_from_the_command_line_describe_their_run(own_run_dir, tmp_path):
    run_dir = own_run_dir
    out = tmp_path / "sim.png"
    result = CliRunner().invoke(cli, ["plot", "similarity", str(run_dir / "results.json"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.text["Description"].startswith("protocol lfw (160 pairs); degradation difface-test")
    labels = tmp_path / "labels.csv"
    record_people = sorted({p.split("/")[1] for p in make_record(tmp_path, examples=0)["pairs"]["b"]})
    labels.write_text("person,group\n" + "".join(f"{p},{'A' if i % 2 else 'B'}\n"
                                                 for i, p in enumerate(record_people)))
    figure = tmp_path / "breakdown.png"
    result = CliRunner().invoke(cli, ["breakdown", str(run_dir), "--labels", str(labels), "--figure", str(figure),
                                      "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    with Image.open(figure) as image:
        described = image.text["Description"]
    assert described.startswith("protocol lfw (160 pairs); degradation difface-test (seed 0, probe side); "
                                "recognizer arcface-r50; restorers none, vqfr-v2; scales x4, x16"), described


def test_compares_figure_describes_each_run_it_merges(tmp_path):
    """compare's figure was described from its merged record: one line with the first run's date and version,
    "restorers none, none (a), ..." (the clean row's restorer beside the labelled ones) and no seed once the runs'
    seeds differ, where the docs promise one line per run shown. Each run is described on its own now."""
    from restorever.reports.compare import write_comparison
    from restorever.reports.results import write_run

    first = make_record(tmp_path, examples=0)
    second = make_record(tmp_path, examples=0)
    second["created"] = "2026-02-02T00:00:00+00:00"
    for name, record in (("a", first), ("b", second)):
        write_run(record, tmp_path / name)
    written = write_comparison([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp", formats=("png", "svg"))
    with Image.open(written["scales.png"]) as image:
        described = image.text["Description"]
    assert described.split(" | ") == [EXPECTED, EXPECTED.replace("2026-01-01", "2026-02-02")]
    assert _svg_description(written["scales.svg"]) == described


def test_an_identification_run_is_described_with_its_gallery_and_probes(tmp_path):
    """A CMC figure copied alone said "protocol lfw-ident" only: rank-1 over a gallery of 10 and one of 5,000 are
    different numbers, as 40 and 6,000 pairs are, so the gallery and probe counts are named as the pairs are."""
    record = make_record(tmp_path, examples=0)
    record["protocol"] = {"name": "lfw-ident", "task": "identification", "gallery_size": 10, "probes": 12}
    assert figure_description([record]) == EXPECTED.replace("lfw (160 pairs)", "lfw-ident (gallery 10, 12 probes)")

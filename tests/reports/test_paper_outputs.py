"""Round 18, paper outputs, second pass: `compare`'s figure in the formats a paper wants, the score-distribution
figure readable in greyscale, the recognizer's input crop in results.json and the methods text, and a methods text
for identification runs."""
from __future__ import annotations

import copy

import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.reports.results import load_results, write_run

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


def _panel_patches(ax) -> dict[str, tuple]:
    """``{edge colour hex: (hatch, ...)}`` of the histogram areas of one panel."""
    from matplotlib.colors import to_hex

    out: dict[str, tuple] = {}
    for patch in ax.patches:
        out.setdefault(to_hex(patch.get_edgecolor()), ())
        out[to_hex(patch.get_edgecolor())] += (patch.get_hatch(),)
    return out


def test_several_restorers_in_a_score_panel_stay_apart_without_colour(run_dir, monkeypatch):
    """With several restorers in a panel, the score-distribution figure told them apart by colour only (same and
    different people as solid and dashed outlines of the restorer's colour), so a greyscale print lost which
    histogram was whose. Each restorer now hatches its same-person area with its own hatch and puts its marker (the
    one of the ROC, CMC and accuracy figures) on the peak of both its histograms and on its threshold line."""
    import numpy as np
    from matplotlib.colors import to_hex
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from restorever.reports.figure_style import RESTORER_HATCHES, restorer_colour, restorer_hatch, restorer_marker
    from restorever.reports.plots import plot_roc, plot_similarity

    from .test_plots import keep_figures

    record = load_results(run_dir)
    figures = keep_figures(monkeypatch)
    plot_roc([record], "r.png")
    plot_similarity(record, "d.png")
    roc, sim = figures
    roc_markers = {label.split(" x")[0]: h.get_marker() for h, label in zip(*roc.axes[0].get_legend_handles_labels())
                   if not label.startswith("clean")}
    legend = sim.legends[0]
    names = {"no restoration": "none", "vqfr-v2": "vqfr-v2"}
    assert {t.get_text() for t in legend.get_texts()} >= set(names)
    drawn_hatches = {p.get_hatch() for p in legend.findobj(Patch) if p.get_hatch()}
    drawn_markers = {ln.get_marker() for ln in legend.findobj(Line2D) if ln.get_linestyle() == "None"}
    assert drawn_hatches == {restorer_hatch(n) for n in names.values()}  # the legend shows each restorer's look
    assert drawn_markers == {restorer_marker(n) for n in names.values()} == set(roc_markers.values())
    assert restorer_hatch("none") != restorer_hatch("vqfr-v2")  # a look per restorer, without colour
    assert len(set(RESTORER_HATCHES.values())) == len(RESTORER_HATCHES)
    for name in ("my-net", "修复网络"):
        assert restorer_hatch(name) == restorer_hatch(name) and restorer_hatch(name) not in RESTORER_HATCHES.values()
    panels = {ax.get_title(): ax for ax in sim.axes if ax.get_visible()}
    assert set(panels) == {"clean", "x4", "x16"}
    assert all(h is None for hatches in _panel_patches(panels["clean"]).values() for h in hatches)
    scored = [c for c in record["conditions"] if c.get("scores") and c.get("verification")]
    every = np.concatenate([c["scores"]["score"] for c in scored])
    edges = np.linspace(every.min(), every.max(), 41)  # the figure's 40 bins over all scores
    for scale in (4, 16):
        ax = panels[f"x{scale}"]
        hatches = _panel_patches(ax)
        markers = [ln for ln in ax.get_lines() if ln.get_linestyle() == "None"]
        for name in names.values():
            colour = restorer_colour(name)
            assert restorer_hatch(name) in hatches[colour]  # the same-person area; the dashed outline has none
            cond = next(c for c in record["conditions"] if c["restorer"] == name and c["scale"] == scale)
            score, same = np.asarray(cond["scores"]["score"]), np.asarray(cond["scores"]["same"], bool)
            peaks = sorted(float(np.histogram(score[mask], bins=edges, density=True)[0].max())
                           for mask in (same, ~same))
            mine = [ln for ln in markers if to_hex(ln.get_color()) == colour]
            assert {ln.get_marker() for ln in mine} == {restorer_marker(name)}
            # two peaks (same person, different people) and the threshold line's marker, in axis coordinates
            on_data = sorted(float(ln.get_ydata()[0]) for ln in mine if ln.get_transform() == ax.transData)
            assert on_data == pytest.approx(peaks)
            assert len(mine) == 3


class _Shapes(__import__("torch").nn.Module):
    """A stand-in embedding network that records the shape of each input it is given (``[B, 3, H, W]``)."""

    def __init__(self):
        super().__init__()
        import torch

        self.scale = torch.nn.Parameter(torch.ones(()))
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return x.mean(dim=(2, 3)) * self.scale


def test_a_template_recognizer_records_the_crop_it_actually_cuts():
    """The methods text did not say how the recognizer crops its input, and the record had no field for it. Now
    ``setup.recognizer.input_crop`` comes from the recognizer object: a torch crop recognizer reports its card's
    template, and the network is indeed given crops of that size (ArcFace 112, facenet 160)."""
    import torch

    from restorever.alignment import get_template
    from restorever.pipeline.environment import setup_info
    from restorever.recognizers.arcface import CARDS as ARCFACE
    from restorever.recognizers.crop import CropRecognizer
    from restorever.recognizers.facenet import CARDS as FACENET

    landmarks = torch.tensor(get_template("ffhq_512").points, dtype=torch.float32)[None]
    for card, side in ((ARCFACE["arcface-r50-ms1mv3"], 112), (FACENET["facenet-vggface2"], 160)):
        net = _Shapes()
        rec = CropRecognizer(card, net, embedding_dim=3)
        rec.embed(torch.rand(1, 3, 512, 512), landmarks)
        crop = rec.input_crop()
        assert tuple(crop["size"]) == net.seen[0][-1:-3:-1] == (side, side)  # [w, h] and the tensor's W, H
        assert crop == {"method": "template", "template": card.template, "size": [side, side], "landmarks": 5}
        config = type("C", (), {"template": "ffhq_512", "scales": [], "degradation": None})()
        assert setup_info(config, rec)["recognizer"] == {"name": card.name, "embedding_dim": 3, "input_crop": crop}


def test_the_input_crop_sentence_follows_the_record_and_drops_without_it(run_dir):
    """methods.md/.tex say the recognizer's input crop from ``setup.recognizer.input_crop``; a plugin recognizer
    that does not describe its crop (and an older record) get no sentence, never a guess from the name."""
    import re

    from restorever.pipeline.environment import setup_info
    from restorever.reports.methods import methods_latex, methods_markdown

    from tests.plugin_backends import RECOGNIZER_CARDS, PixelRecognizer

    record = load_results(run_dir)  # recognizer arcface-r50, no setup (written without one)
    assert "setup" not in record and "pixel crop" not in methods_markdown(record)
    record["setup"] = {"recognizer": {"name": "arcface-r50", "embedding_dim": 512, "input_crop": {
        "method": "template", "template": "arcface_112", "size": [112, 112], "landmarks": 5}}}
    md, tex = methods_markdown(record), methods_latex(record)
    sentence = ("Its input is a 112 x 112 pixel crop of the aligned face, cut by a similarity transform of the "
                "face's 5 landmarks to the arcface{}112 template.")
    assert sentence.format("\\_") in md and sentence.format("\\_") in tex
    other = copy.deepcopy(record)  # the setup of another recognizer: not this run's, no sentence
    other["setup"]["recognizer"]["name"] = "dlib"
    assert "pixel crop" not in methods_markdown(other)
    own = copy.deepcopy(record)  # a backend's own description, said as it is
    own["setup"]["recognizer"]["input_crop"] = {"method": "my_chip", "size": [96, 128]}
    assert "Its input is a 96 x 128 pixel crop (my\\_chip)." in methods_markdown(own)
    plugin = PixelRecognizer(RECOGNIZER_CARDS["test-pixels"])  # the base class's answer: it does not say
    assert plugin.input_crop() is None
    config = type("C", (), {"template": None, "scales": [], "degradation": None})()
    assert setup_info(config, plugin) == {"recognizer": {"name": "test-pixels", "embedding_dim": 768}}
    assert not re.search(r"\d+ x \d+ pixel", methods_markdown(dict(record, setup=setup_info(config, plugin))))

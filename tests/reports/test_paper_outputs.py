"""Round 18, paper outputs, second pass: `compare`'s figure in the formats a paper wants, the score-distribution
figure readable in greyscale, the recognizer's input crop in results.json and the methods text, and a methods text
for identification runs."""
from __future__ import annotations

import copy
import json
import re

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


@pytest.fixture(scope="module")
def ident_reported(lfw_root, shared_lfw_cache, tmp_path_factory):
    """Two real identification runs on LFW (dlib, MTCNN, x16; people with 100+ images, 2 probes each, 5
    distractors): one plain, one with a fitted attribute probe filtering by gender and age (threshold 0.5, with its
    re-weighting module), each reported with ``--methods-dir``."""
    tmp = tmp_path_factory.mktemp("ident-methods")
    small = ["--data-root", str(lfw_root), "--min-images", "100", "--max-probes-per-person", "2",
             "--max-distractors", "5", "--no-progress", "--cache-dir", str(shared_lfw_cache)]
    runs = [("plain", ["ident", *small, "--scales", "16"]),
            ("probe", ["attributes", "fit", *small, "--reweight-hidden", "4", "--out", str(tmp / "probe.pt")]),
            ("filtered", ["ident", *small, "--scales", "16", "--attribute-model", str(tmp / "probe.pt"),
                          "--attribute-filter", "gender,age", "--threshold", "0.5"])]
    outputs = {}
    for name, args in runs:
        out = [] if name == "probe" else ["--out", str(tmp / name)]
        result = CliRunner().invoke(cli, [*args, *out], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    for name in ("plain", "filtered"):
        result = CliRunner().invoke(cli, ["report", str(tmp / name), "--format", "png", "--methods-dir",
                                          str(tmp / f"{name}-paper")], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        outputs[name] = result.output
    return tmp, outputs


def _people_counts(people_txt) -> dict[str, int]:
    """``{name: images}`` of LFW's people.txt read here on its own (set headers are single numbers)."""
    rows = [line.split("\t") for line in people_txt.read_text().splitlines()]
    return {row[0]: int(row[1]) for row in rows if len(row) == 2}


def test_an_identification_run_gets_a_methods_text_from_its_record(ident_reported, lfw_root):
    """`report` on an identification run wrote no methods text ("tables.csv, tables.tex and the methods text
    skipped"). Now it writes methods.md/.tex and references.bib from the identification record: the split's counts
    and options, the degraded probes, the search and its attribute filter, the attribute probe, the rank metrics;
    every number a setting or a count of the record, none a result, and no verification sentence (pairs, folds)."""
    from .test_methods import _numbers, _paragraphs, _unescaped_specials

    tmp, outputs = ident_reported
    people = _people_counts(lfw_root / "people.txt")
    enrolled = sorted(n for n, k in people.items() if k >= 100)  # five people: Bush, Powell, Blair, ...
    single = sum(1 for k in people.values() if k == 1)
    for name in ("plain", "filtered"):
        record = json.loads((tmp / name / "results.json").read_text())
        proto = record["protocol"]
        assert "tables.csv, tables.tex skipped:" in outputs[name] and "methods text skipped" not in outputs[name]
        assert not (tmp / name / "tables.csv").exists() and not (tmp / f"{name}-paper" / "tables.tex").exists()
        assert str(tmp / f"{name}-paper" / "methods.tex") in outputs[name]
        md = (tmp / f"{name}-paper" / "methods.md").read_text()
        body = re.sub(r"\\(.)", r"\1", md.split("## References")[0])
        para = _paragraphs(body)
        expected = ["Protocol", "Alignment", "Degradation", "Restoration", "Recognition", "Search", "Metrics",
                    "Excluded data", "Software"]
        if name == "filtered":
            expected[6:6] = ["Attributes"]
            expected[8:8] = ["Attribute metrics"]
        assert list(para) == expected
        # the split, against people.txt read here: 5 people with 100+ images, 2 probes each, 5 of 4069 singles
        assert (len(enrolled), min(5, single)) == (proto["enrolled_people"], proto["distractors"]) == (5, 5)
        assert proto["probes"] == 2 * len(enrolled) and proto["gallery_size"] == len(enrolled) + 5
        assert ("Closed-set face identification was evaluated on the lfw-ident protocol [1]: a gallery of 10 "
                "images, one for each of 5 enrolled people and 5 distractors, searched by 10 probe images.") in \
            para["Protocol"]
        assert "People with at least 100 images in the people file (people.txt)" in para["Protocol"]
        assert "at most 2 a person" in para["Protocol"] and "(the first 5 of them" in para["Protocol"]
        assert para["Degradation"].startswith("Each probe image was degraded with the difface-test degradation [3] "
                                              "at the scale factors 16, seed 0; the gallery images were kept "
                                              "undegraded. Each degraded image was blurred")
        assert "128-dimensional embeddings" in para["Recognition"]
        assert "150 x 150 pixel face chip" in para["Recognition"]
        assert record["index"]["similarity"] in para["Search"] and "faiss flat index" in para["Search"]
        assert record["index"]["ranks"].startswith("exact")  # retrieval.exact_ranks: ties count against the probe
        assert "a gallery entry scoring exactly as the mate is counted as ranked above it." in para["Search"]
        cmc = {len(c["retrieval"]["cmc"]) for c in record["conditions"]}
        assert cmc == {10} and "for k = 1 to 10" in para["Metrics"]
        assert "The rank-1, rank-5 and rank-10 identification rates" in para["Metrics"]
        assert f"over its {proto['probes']} probes" in para["Metrics"]
        assert para["Excluded data"].startswith(f"{len(proto['skipped'])} images of the split were left out")
        for word in ("pair", "cross-validation", "verification", "accuracy at the threshold"):  # verification's
            assert word not in body.lower(), word
        # every number of the text is a setting or a count, never a rank-1, mAP or attribute accuracy
        allowed = _numbers_of(record)
        text = re.sub(r"(Python|PyTorch|restorever|pillow|opencv|dlib|libjpeg-turbo|facenet-pytorch|faiss) [^\s,]+",
                      "", body).replace(record["setup"]["degradation"]["source"], "")
        text = re.sub(r"rank-\d+|L2-normalised|k = 1", "", text)  # names of metrics and of the norm
        for token in _numbers(text):
            assert any(abs(float(token) - a) <= 1e-3 * max(1.0, abs(a)) for a in allowed), (name, token)
        tex = (tmp / f"{name}-paper" / "methods.tex").read_text()
        bib = (tmp / f"{name}-paper" / "references.bib").read_text()
        assert not _unescaped_specials(tex.split("\n", 1)[1])
        cited = re.findall(r"\\cite\{([^}]+)\}", tex)
        assert cited and set(cited) == set(re.findall(r"^@misc\{([^,]+),", bib, flags=re.M))
        tex_body = re.sub(r"~\\cite\{[^}]+\}|\\paragraph\{[^}]+\}", "", tex.split("\n", 1)[1])
        assert sorted(_numbers(tex_body.replace("\\%", "%"))) == sorted(_numbers(body.split("\n", 4)[4]))
    record = json.loads((tmp / "filtered" / "results.json").read_text())
    para = _paragraphs(re.sub(r"\\(.)", r"\1", (tmp / "filtered-paper" / "methods.md").read_text()))
    flt, model = record["attribute_filter"], record["attribute_model"]
    assert flt == {"attributes": ["gender", "age"], "threshold": 0.5, "age_tolerance": 1}
    assert ("searched a second time with an attribute filter (gender and age): where a probe's most probable class "
            "of an attribute has a probability of at least 0.5") in para["Search"]
    assert "(the same gender and an age group at most 1 from the probe's)" in para["Search"]
    assert "re-weighting module of probe.pt." in para["Search"]
    report = model["fit_report"]
    assert (f"by a probe, probe.pt (sha256 {model['files']['model']['sha256'][:12]}), fitted on {report['images']} "
            f"labelled images of {report['people']} people in {report['folds']} folds of people") in para["Attributes"]
    assert "gender and age in 4 groups, child, teenager, adult and old, split at 13, 20 and 60 years" in \
        para["Attributes"]
    rank1 = record["conditions"][1]["retrieval"]["rank1"]
    assert f"{100 * rank1:.2f}" not in para["Metrics"]
    # an older record: no setup, index, split options or attribute sections -> those sentences are left out
    older = {k: v for k, v in record.items() if k not in ("setup", "index", "attribute_model", "attribute_filter")}
    older["protocol"] = {k: v for k, v in record["protocol"].items() if k != "split_options"}
    from restorever.reports.methods import methods_markdown
    from restorever.reports.methods_ident import ident_paragraphs

    text = methods_markdown(older, ident_paragraphs)
    for gone in ("**Search.**", "**Attributes.**", "at least 100", "dimensional", "150 x 150", "kernel of"):
        assert gone not in text, gone
    assert "searched by 10 probe images" in text and "**Attribute metrics.**" in text


def _numbers_of(record: dict) -> set[float]:
    """The numbers an identification methods text may state: settings and counts of the record, never a rate."""
    from .test_methods import numbers_in

    out: set[float] = set()

    def walk(value):
        numbers_in(value, out)

    proto = record["protocol"]
    walk([record["config"], record.get("setup"), proto.get("split_options"), record.get("attribute_filter")])
    walk([proto[k] for k in ("enrolled_people", "enrolled_with_probes", "distractors", "gallery_size", "probes")])
    out |= {float(len(proto[k])) for k in ("skipped", "landmark_fallbacks")}
    model = record.get("attribute_model") or {}
    walk([model.get("schema"), {k: (model.get("fit_report") or {}).get(k) for k in ("images", "people", "folds")}])
    out |= {float(len(c["retrieval"]["cmc"])) for c in record["conditions"]}
    out |= {float(c["retrieval"]["n_probes"]) for c in record["conditions"]}
    out |= {float(len(model["schema"]["age_groups"]["names"]))} if model else set()
    return out


def test_custom_restorers_get_colour_marker_and_hatch_independently():
    """Two plugin restorers whose names have the same characters (``ab``, ``ba``) no longer share colour, marker
    and hatch all at once (each was chosen from the sum of the character codes, all three by the same index); over
    forty names the three are drawn independently (the old rule gave at most six looks in all), none is a built-in's
    marker or hatch, and the built-ins keep theirs."""
    from restorever.reports.figure_style import (RESTORER_COLOURS, RESTORER_HATCHES, RESTORER_MARKERS,
                                                 restorer_colour, restorer_hatch, restorer_marker)

    def look(name):
        return restorer_colour(name), restorer_marker(name), restorer_hatch(name)

    assert look("ab") != look("ba")
    names = [f"plugin{i}" for i in range(40)]
    assert len({look(n) for n in names}) > 6 and len({look(n)[1:] for n in names}) > 6
    assert not {restorer_marker(n) for n in names} & set(RESTORER_MARKERS.values())
    assert not {restorer_hatch(n) for n in names} & set(RESTORER_HATCHES.values())
    assert all(look(n) == (RESTORER_COLOURS[n], RESTORER_MARKERS[n], RESTORER_HATCHES[n]) for n in RESTORER_COLOURS)

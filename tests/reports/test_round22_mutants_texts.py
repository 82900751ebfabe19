"""Round 22, mutation testing, fourteenth pass: the paper texts and the HTML report. Each test fails on a mutant of
`reports/methods.py`, `methods_text.py`, `methods_ident.py`, `html.py`, `group_labels.py`, `run_names.py` or
`figure_io.py` that the earlier tests let through (docs/reliability.md, round 22): a methods sentence that states
another number or drops a recorded one, a report cell or a figure file that says something else."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from PIL import Image

from restorever.degradation_params import PRESETS
from restorever.reports.figure_io import _report_warnings, new_figure, paper_style, save_figure
from restorever.reports.group_labels import read_labels_csv
from restorever.reports.html import CAPTIONS, _display_width, render_markdown, report_tables
from restorever.reports.methods import methods_paragraphs
from restorever.reports.methods_ident import ident_paragraphs
from restorever.reports.methods_text import Cite
from restorever.reports.results import load_results
from restorever.reports.run_names import legend_prefixes


def _value(v: Any) -> str:
    return f"[{v.role}: {v.name}]" if isinstance(v, Cite) else str(v)


def _paragraphs(record: dict[str, Any], build=methods_paragraphs) -> dict[str, str]:
    """``{title: text}`` of a record's methods paragraphs (no References: no citations)."""
    return {title: " ".join(s.render(str, _value) for s in sentences) for title, sentences in build(record, [])}


def _verification(tar_at_far: dict[str, Any]) -> dict[str, Any]:
    return {"restorer": "none", "scale": None, "verification": {"accuracy_mean": 0.9, "tar_at_far": tar_at_far},
            "scores": {"same": [1, 1, 0, 0, 0], "score": [0.9, 0.8, 0.1, 0.2, 0.3], "fold": [0, 0, 0, 0, 0]}}


def _record(**parts: Any) -> dict[str, Any]:
    record = {"config": {"protocol": "lfw", "recognizer": "arcface-r50", "restorers": ["none"]},
              "protocol": {"name": "lfw", "pairs": 6000, "folds": 10},
              "conditions": [_verification({"0.001": 0.91, "0.01": 0.95})]}
    record.update(parts)
    return record


# --------------------------------------------------------------------------------------------------- methods.py

def test_the_fold_count_and_the_unreported_fars_follow_the_record():
    """`folds is not None` made `is` ("the None folds"), and `len(resolved) < len(fars)` made `<=` (a "TAR at FAR
    is not reported" sentence naming no FAR when every FAR has a value) survived."""
    metrics = _paragraphs(_record())["Metrics"]
    assert "mean over the 10 folds of each fold's accuracy" in metrics
    assert "not reported" not in metrics and "TAR at FAR)" in metrics and "0.001 and 0.01" in metrics
    no_folds = _record(protocol={"name": "lfw", "pairs": 6000})
    assert "mean over the folds of each fold's accuracy" in _paragraphs(no_folds)["Metrics"]
    one_missing = _record(conditions=[_verification({"0.001": None, "0.01": 0.95})])
    metrics = _paragraphs(one_missing)["Metrics"]
    assert "true accept rate at false accept rate 0.01 (TAR at FAR)" in metrics
    # the five stored scores hold three different-identity pairs
    assert "TAR at FAR 0.001 is not reported: it needs at least 1/FAR different-identity pairs, and there are 3." \
        in metrics


def test_the_degradation_rules_name_their_source():
    """Dropping the preset's source ("as in ...") from the degradation rules' sentence survived."""
    preset = PRESETS["difface-test"]
    record = _record(config={"protocol": "lfw", "scales": [8, 16], "degradation": preset.name, "seed": 3,
                             "degrade_side": "probe"},
                     setup={"degradation": preset.describe()})
    text = _paragraphs(record)["Degradation"]
    assert "at the scale factors 8 and 16, seed 3; the first image was kept undegraded." in text
    assert f"Gaussian kernel of {preset.kernel_size} x {preset.kernel_size} pixels" in text
    assert f"upsampled back to the crop size (as in {preset.source}). The parameters" in text


def test_the_device_sentence_names_the_gpu_only_for_a_cuda_device():
    """`kind == "cuda" and env.get("gpu")` made `or` survived: a run on the CPU of a machine with a GPU was said
    to have run on that GPU."""
    env = {"python": "3.11.7", "gpu": "NVIDIA H100 80GB HBM3"}
    on_cpu = _paragraphs(_record(restorever_version="1.0", environment={**env, "device": "cpu"}))["Software"]
    assert on_cpu == "The evaluation ran with restorever 1.0, Python 3.11.7 on cpu."
    on_gpu = _paragraphs(_record(restorever_version="1.0", environment={**env, "device": "cuda:0"}))["Software"]
    assert on_gpu == "The evaluation ran with restorever 1.0, Python 3.11.7 on a NVIDIA H100 80GB HBM3."


def test_a_limited_run_and_its_excluded_images_are_stated_whole():
    """The subset sentence and the fallback-landmarks sentence given another ending (a stray character after
    their full stop) survived: only their beginnings were checked."""
    ids = [f"lfw/{p}/{p}_{i:04d}.jpg" for p, i in (("Ann", 1), ("Ann", 2), ("Bob", 1), ("Cy", 1))]
    record = _record(config={"protocol": "lfw", "limit_pairs": 2, "on_error": "skip"},
                     protocol={"name": "lfw", "pairs": 2, "pairs_requested": 2, "folds": 1, "images": 4,
                               "skipped": [], "failed_images": [], "landmark_fallbacks": ["a", "b"]},
                     pairs={"a": ids[:2], "b": ids[2:]})
    text = _paragraphs(record)
    assert text["Protocol"] == ("Face verification was evaluated on the lfw protocol: 2 image pairs of 3 people (4 "
                                "images), in a single fold. These are 2 of the protocol's pairs, taken in file order "
                                "and balanced over the folds and over same and different pairs.")
    assert text["Excluded data"] == ("0 of the 2 requested pairs were skipped, as 0 images could not be used "
                                     "(on_error skip). 2 images in which no face was found were aligned with the "
                                     "protocol's fallback landmarks.")


def test_the_alignment_crop_size_keeps_width_and_height_apart():
    """`size[1]` made `size[0]` survived: every tested template is square."""
    record = _record(config={"protocol": "lfw", "detector": "mtcnn", "template": "wide"},
                     setup={"alignment": {"landmarks": 5, "template": "wide", "size": [96, 112]}})
    assert _paragraphs(record)["Alignment"] == (
        "Facial landmarks (5 points) were detected with mtcnn on each undegraded image. Each face was aligned to "
        "the wide template (96 x 112 pixels) by a similarity transform of its landmarks.")


# --------------------------------------------------------------------------------------------------- methods_ident.py

def _ident_record(**parts: Any) -> dict[str, Any]:
    cmc = [0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.8, 0.85, 0.9, 0.9]
    record = {"config": {"protocol": "lfw-ident", "recognizer": "arcface-r50", "restorers": ["none"]},
              "protocol": {"name": "lfw-ident", "task": "identification", "gallery_size": 10, "enrolled_people": 7,
                           "distractors": 3, "probes": 12},
              "conditions": [{"restorer": "none", "scale": None,
                              "retrieval": {"rank1": 0.5, "rank5": 0.75, "map": 0.6, "n_probes": 12, "cmc": cmc}}]}
    record.update(parts)
    return record


def test_the_rank_metrics_define_map_only_where_it_is_stored():
    """The test for a stored `map` renamed (the mAP definition dropped) survived."""
    metrics = _paragraphs(_ident_record(), ident_paragraphs)["Metrics"]
    assert "the cumulative match characteristic (CMC) gives it for k = 1 to 10." in metrics
    assert "Mean average precision (mAP) is, with one mate per probe, the mean over the probes of the reciprocal of " \
           "the mate's rank" in metrics
    assert "Each condition's rates are over its 12 probes." in metrics
    without = _ident_record()
    del without["conditions"][0]["retrieval"]["map"]
    assert "mAP" not in _paragraphs(without, ident_paragraphs)["Metrics"]


def test_three_attributes_are_listed_with_one_and():
    """`i < len(attributes) - 1` made `- 2` ("gender and age and race") survived: the tested models have two."""
    model = {"model": "fairface", "kind": "pixel", "schema": {"attributes": ["gender", "age", "race"]}}
    text = _paragraphs(_ident_record(attribute_model=model), ident_paragraphs)["Attributes"]
    assert text == "Attributes (gender, age and race) were predicted from each image by the fairface model (pixel)."


# --------------------------------------------------------------------------------------------------- html.py

def _cells(table) -> list[dict[str, str]]:
    return [dict(zip(table.header, row)) for row in table.rows]


def test_the_statistics_table_shows_each_stored_test(run_dir):
    """In the report's paired comparisons, the test's name changed, its p given with 4 digits, the clustered p's
    branches swapped ("—" where one is stored) and `family_size is not None` made `is` survived. The report gives
    p to 3 significant digits (docs/reliability.md, round 14)."""
    record = load_results(run_dir)
    stats = next(t for t in report_tables(record) if t.key == "statistics")
    comps = [(c[key], key) for c in record["conditions"] for key in ("comparison_to_none", "comparison_to_clean")
             if c.get(key)]
    assert len(stats.rows) == len(comps) > 0
    for row, (comp, key) in zip(_cells(stats), comps):
        mc = comp["mcnemar"]
        assert row["McNemar test"] == {"exact": "exact binomial", "chi2": "χ² (continuity corrected)"}[mc["method"]]
        assert float(row["p"]) == float(f"{mc['p_value']:.3g}")
        assert float(row["p (clustered)"]) == float(f"{comp['mcnemar_clustered']['p_value']:.3g}")
        assert row["family"] == f"vs {'none' if key == 'comparison_to_none' else 'clean'} ({mc['family_size']})"


def test_the_skipped_pairs_table_and_the_markdown_heading(own_run_dir):
    """The skipped pairs' table renamed (a caller looking the table up by its key finds none) and the blank line
    after report.md's title given text survived."""
    record = load_results(own_run_dir)
    record["protocol"]["skipped"] = [{"pair": 7, "reason": "no face in a.jpg"}]
    tables = report_tables(record)
    skipped = {t.key: t for t in tables}["skipped"]
    assert skipped.rows == [["7", "no face in a.jpg"]]
    lines = render_markdown(record, tables, {}, {}).splitlines()
    assert lines[0] == "# restorever: lfw / arcface-r50" and lines[1] == "" and lines[2].startswith("160 pairs")


def test_the_references_header_is_the_documented_one(run_dir):
    """The References table's third column renamed survived; docs/figures/report.md shows the header."""
    example = (Path(__file__).parents[2] / "docs" / "figures" / "report.md").read_text().splitlines()
    documented = example[example.index("## References") + 2]
    references = {t.key: t for t in report_tables(load_results(run_dir))}["references"]
    assert "| " + " | ".join(references.header) + " |" == documented


def test_every_caption_is_a_sentence_and_the_cmc_one_names_its_axes():
    """The CMC figure's caption given another ending survived. Its figure plots the identification rate (y) against
    the rank (x)."""
    assert all(text.endswith(".") and not text.endswith("..") for text in CAPTIONS.values())
    assert CAPTIONS["cmc"].endswith("identification rate against rank.")


def test_a_figure_is_shown_at_one_and_a_half_times_its_printed_size(tmp_path):
    """`_display_width`'s 96 CSS pixels per inch made 95 survived: a PNG 600 pixels wide at the figures' 300 dpi
    prints 2 inches wide, shown 3 inches, 288 CSS pixels."""
    for width, expected in ((600, 288), (1050, 504), (70000, 33600)):
        Image.new("RGB", (width, 4)).save(tmp_path / "f.png")
        assert _display_width(tmp_path / "f.png") == expected
    (tmp_path / "f.svg").write_text("<svg/>")
    assert _display_width(tmp_path / "f.svg") is None


# --------------------------------------------------------------------------------------------------- group_labels.py

def test_a_utf16_labels_file_at_the_size_limit_is_read(tmp_path, monkeypatch):
    """`st_size <= MAX_TEXT_BYTES` made `<` survived: a UTF-16 file of exactly the limit (which a UTF-8 one may
    have, `read_text_file` refusing only above it) was sent to the UTF-8 reader and refused."""
    import restorever.formats.base as base

    path = tmp_path / "labels.csv"
    path.write_bytes("person,cohort\nAnn_Lee,a\nBob_Ray,b\n".encode("utf-16"))
    monkeypatch.setattr(base, "MAX_TEXT_BYTES", path.stat().st_size)
    labels = read_labels_csv(path)
    assert (labels.key, labels.name, labels.groups) == ("person", "cohort", {"Ann_Lee": "a", "Bob_Ray": "b"})


# --------------------------------------------------------------------------------------------------- run_names.py

def test_overlaid_runs_of_two_protocols_are_warned_about(caplog):
    """The protocol's `name` dropped from the keys compared (renamed) survived: two runs of different protocols with
    the same pair count were overlaid without a warning."""
    records = [{"config": {"recognizer": "dlib"}, "protocol": {"name": name, "pairs": 6000}}
               for name in ("lfw", "cplfw")]
    with caplog.at_level(logging.WARNING, logger="restorever.reports.run_names"):
        assert legend_prefixes(records, ["a", "b"]) == ["a: ", "b: "]
    assert "different pair sets (name: lfw vs cplfw)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="restorever.reports.run_names"):
        legend_prefixes([records[0], records[0]], ["a", "b"])
    assert caplog.text == ""


# --------------------------------------------------------------------------------------------------- figure_io.py

@paper_style
def _saved(tmp_path: Path, name: str, **kwargs: Any) -> tuple[bytes, float]:
    """A one-panel figure saved by `save_figure`: the file's bytes and the panel's left margin in inches."""
    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1])
    ax.set_ylabel("accuracy (%)")
    out = save_figure(fig, tmp_path / name, **kwargs)
    box = ax.get_tightbbox(fig.canvas.get_renderer())
    return out.read_bytes(), box.x0 / fig.dpi


def test_a_figure_is_laid_out_tight_by_default_with_a_small_pad(tmp_path):
    """`tight=True` made `False` by default, and the layout's pad 0.3 made 0.6, survived. The pad is in units of
    the paper style's 8 pt font: 0.3 of it is 2.4 pt, 1/30 inch, between the figure's edge and the labels."""
    default, margin = _saved(tmp_path, "a.png")
    tight, _ = _saved(tmp_path, "b.png", tight=True)
    loose, _ = _saved(tmp_path, "c.png", tight=False)
    assert default == tight != loose
    assert abs(margin - 0.3 * 8 / 72) < 0.005


def test_the_missing_glyph_warning_lists_each_font_once(tmp_path, caplog):
    """The separator of the fonts missing a glyph changed survived (every test had one font)."""
    caught = [warnings.WarningMessage(f"Glyph {code} (\\N{{X}}) missing from font(s) {font}.", UserWarning, "f.py", 1)
              for code, font in ((20013, "DejaVu Sans"), (25991, "Liberation Sans"), (20013, "Liberation Sans"))]
    with caplog.at_level(logging.WARNING, logger="restorever.reports.figure_io"):
        _report_warnings(tmp_path / "roc.png", caught)
    assert "the characters 中文 are not in the font DejaVu Sans, Liberation Sans and print" in caplog.text

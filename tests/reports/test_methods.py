"""The methods text of ``restorever report`` (methods.md, methods.tex, references.bib): every number and name read
from results.json, sentences dropped where an older record lacks a field, LaTeX escaping of hostile names."""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.reports.methods import cite_keys, methods_latex, methods_markdown, references_bibtex
from restorever.reports.results import load_results
from restorever.reports.tables import run_references

#: a number in running text (not inside a word or a hex digest, not a version's part)
_NUMBER = re.compile(r"(?<![\w.+-])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w.]*\w)")


@pytest.fixture(scope="module")
def reported(real_run, tmp_path_factory):
    """A copy of the real LFW run (conftest's ``real_run``: 40 pairs, dlib, none, x8 / x16) and its report."""
    tmp = tmp_path_factory.mktemp("methods")
    shutil.copytree(real_run, tmp / "run")
    result = CliRunner().invoke(cli, ["report", str(tmp / "run"), "--format", "png", "--methods-dir",
                                      str(tmp / "pa per")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert str(tmp / "pa per" / "methods.tex") in result.output
    return tmp


def _paragraphs(md: str) -> dict[str, str]:
    return dict(re.findall(r"^\*\*(.+?)\.\*\* (.+)$", md, flags=re.M))


def numbers_in(value, out: set[float]) -> set[float]:
    """Every number (not a bool) in ``value`` and the dicts and lists it holds, added to ``out``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out.add(float(value))
    elif isinstance(value, (dict, list)):
        for v in value.values() if isinstance(value, dict) else value:
            numbers_in(v, out)
    return out


def _allowed_numbers(record: dict) -> set[float]:
    """The numbers a methods text may state: settings, counts and statistics' settings, never a result."""
    out: set[float] = set()

    def walk(value):
        numbers_in(value, out)

    walk(record["config"])
    walk(record.get("setup"))
    proto = record["protocol"]
    walk({k: proto[k] for k in ("pairs", "pairs_requested", "folds", "images")})
    out |= {float(len(proto[k])) for k in ("skipped", "failed_images", "landmark_fallbacks")}
    out.add(float(len({i.split("/")[-2] for i in record["pairs"]["a"] + record["pairs"]["b"]})))
    for cond in record["conditions"]:
        out |= {float(far) for far in cond["verification"]["tar_at_far"]}
        ident = cond.get("identity") or {}
        walk({"n": ident.get("n"), "level": 100 * ident.get("ci_level", 0), "boot": ident.get("bootstrap")})
        for key in ("comparison_to_clean", "comparison_to_none"):
            comp = cond.get(key) or {}
            walk({"level": 100 * comp.get("ci_level", 0), "boot": comp.get("bootstrap"),
                  "family": (comp.get("mcnemar") or {}).get("family_size")})
    return out


def _numbers(text: str) -> list[str]:
    text = re.sub(r"\[\d+\]", "", text)  # citations
    text = re.sub(r"\b[0-9a-f]{12}\b", "", text)  # sha256 prefixes (checked on their own)
    return _NUMBER.findall(text)


def test_every_number_and_name_of_a_real_run_comes_from_its_record(reported):
    record = json.loads((reported / "run" / "results.json").read_text())
    md = (reported / "pa per" / "methods.md").read_text()
    body = re.sub(r"\\(.)", r"\1", md.split("## References")[0])  # markdown escapes undone
    para = _paragraphs(body)
    assert list(para) == ["Protocol", "Alignment", "Degradation", "Restoration", "Recognition", "Metrics",
                          "Statistics", "Excluded data", "Software"]
    proto, cfg, setup = record["protocol"], record["config"], record["setup"]
    people = len({i.split("/")[-2] for i in record["pairs"]["a"] + record["pairs"]["b"]})  # LFW: the folder
    assert (f"on the lfw protocol [1]: {proto['pairs']} image pairs of {people} people ({proto['images']} images), "
            f"in {proto['folds']} cross-validation folds.") in para["Protocol"]
    assert f"These are {proto['pairs_requested']} of the protocol's pairs" in para["Protocol"]
    assert f"sha256 begins {proto['pairs_sha256'][:12]}." in para["Protocol"]
    # the template as this version defines it, recorded: 5 points, 512 x 512
    assert setup["alignment"] == {"template": "ffhq_512", "size": [512, 512], "landmarks": 5}
    assert "(5 points) were detected with mtcnn [4] on each undegraded image" in para["Alignment"]
    assert (f"aligned to the {cfg['template']} template (512 x 512 pixels) by a "
            f"{record['cache']['identity']['alignment_fit']} similarity transform") in para["Alignment"]
    assert "(oracle alignment)" in para["Alignment"]
    deg = setup["degradation"]
    assert deg["name"] == cfg["degradation"] == "difface-test"
    assert ("The second (probe) image of each pair was degraded with the difface-test degradation [3] at the scale "
            f"factors 8 and 16, seed {cfg['seed']}") in para["Degradation"]
    for key in ("sigma", "noise", "jpeg"):
        assert "drawn from {" + ", ".join(str(int(v)) for v in deg[key]) + "}" in md.replace("\\", "")
    assert f"kernel of {deg['kernel_size']} x {deg['kernel_size']} pixels" in para["Degradation"]
    assert para["Restoration"] == "The degraded faces were also recognised as they were, without restoration (none)."
    # dlib's descriptor: 128 values, from its own 150 x 150 chip around its shape predictor's 5 points
    assert setup["recognizer"] == {"name": "dlib", "embedding_dim": 128, "input_crop": {
        "method": "dlib_chip", "size": [150, 150], "padding": 0.25, "predictor_landmarks": 5}}
    assert ("Its input is dlib's own 150 x 150 pixel face chip (padding 0.25), cut around the 5 points that dlib's "
            "shape predictor finds inside the face box implied by the aligned face's landmarks.") in para["Recognition"]
    for key, weight in record["weights"].items():
        assert f"{Path(weight['file']).name} (sha256 {weight['sha256'][:12]})" in para["Recognition"]
    assert "gives 128-dimensional embeddings, without the flip test" in para["Recognition"]
    assert "negative Euclidean distance" in para["Recognition"]
    # only the FARs the record has a TAR for are said to be computed: tar_at_far needs 1/FAR impostor pairs
    tars = [c["verification"]["tar_at_far"] for c in record["conditions"]]
    n_neg = record["conditions"][0]["scores"]["same"].count(0)
    fars = list(tars[0])
    resolved = [f for f in fars if any(t[f] is not None for t in tars)]
    assert resolved == [f for f in fars if n_neg >= 1 / float(f)] == ["0.1"] and n_neg == 20
    assert "the true accept rate at false accept rate 0.1 (TAR at FAR) are computed" in para["Metrics"]
    assert (f"TAR at FAR 0.01, 0.001 and 0.0001 is not reported: it needs at least 1/FAR different-identity pairs, "
            f"and there are {n_neg}.") in para["Metrics"]
    assert f"over all {proto['pairs']} pairs" in para["Metrics"]
    probes = {c["identity"]["n"] for c in record["conditions"] if c["scale"]}
    assert probes == {39} and "averaged over the 39 probe images" in para["Metrics"]
    comp = record["conditions"][1]["comparison_to_clean"]
    assert (f"{round(100 * comp['ci_level'])} % percentile bootstrap intervals from {comp['bootstrap']['n_boot']} "
            f"replicates (seed {comp['bootstrap']['seed']}) that resample {comp['bootstrap']['resampled']}, "
            f"{comp['bootstrap']['clusters']} people") in para["Statistics"]
    assert f"(a family of {comp['mcnemar']['family_size']} comparisons)" in para["Statistics"]
    assert "against no restoration" not in para["Statistics"]  # restorer none only: no such family
    assert para["Excluded data"].startswith(f"0 of the {proto['pairs_requested']} requested pairs were skipped")
    env = record["environment"]
    assert (f"restorever {record['restorever_version']} [5], Python {env['python']}, PyTorch {env['torch']}"
            in para["Software"]) and f"dlib {env['libraries']['dlib']}" in para["Software"]
    # every number of the text is a setting or a count of the record, none a result
    allowed = _allowed_numbers(record)
    text = re.sub(r"(Python|PyTorch|restorever|pillow|opencv|dlib|libjpeg-turbo|facenet-pytorch) [^\s,]+", "", body)
    text = text.replace(deg["source"], "")  # a recorded name (its "ICLR'23" is no number of the run)
    allowed |= {1.0, float(n_neg)}  # "1/FAR" and the number of different-identity pairs
    for token in _numbers(text):
        assert any(abs(float(token) - a) <= 1e-3 * max(1.0, abs(a)) for a in allowed), (token, text)
    accuracy = record["conditions"][1]["verification"]["accuracy_mean"]
    assert f"{100 * accuracy:.2f}" not in body and f"{accuracy:.4g}" not in body
    # the LaTeX says the same: its numbers are the markdown's, its citations the .bib's keys
    tex = (reported / "pa per" / "methods.tex").read_text()
    bib = (reported / "pa per" / "references.bib").read_text()
    cited = re.findall(r"\\cite\{([^}]+)\}", tex)
    defined = re.findall(r"^@misc\{([^,]+),", bib, flags=re.M)
    assert cited and set(cited) == set(defined) and len(defined) == len(set(defined)) == 5
    tex_body = re.sub(r"~\\cite\{[^}]+\}|\\paragraph\{[^}]+\}", "", tex.split("\n", 1)[1])
    assert sorted(_numbers(tex_body.replace("\\%", "%"))) == sorted(_numbers(body.split("\n", 4)[4]))
    assert "\\url{https://jmlr.org/papers/v10/king09a.html}" in bib


def test_an_older_record_drops_the_sentences_it_cannot_support(reported):
    record = load_results(reported / "run")
    old = copy.deepcopy(record)
    for key in ("setup", "cache"):
        old.pop(key)
    old["protocol"].pop("pairs_sha256")
    old["protocol"].pop("landmark_fallbacks")
    old.pop("pairs")
    for cond in old["conditions"]:
        for key in ("comparison_to_clean", "comparison_to_none", "identity_comparison_to_none"):
            cond.pop(key, None)
        cond["identity"] = {"cosine_to_clean_mean": cond["identity"]["cosine_to_clean_mean"]}
    new_md, old_md = methods_markdown(record), methods_markdown(old)
    para = _paragraphs(old_md)
    assert "Statistics" not in para  # no comparison stored: no paragraph, no invented bootstrap
    for gone in ("dimensional", "(5 points)", "512 x 512", "150 x 150", "least-squares", "sha256 begins", "people",
                 "Each degraded image was blurred", "fallback landmarks", "averaged over the 39"):
        assert gone in new_md and gone not in old_md, gone
    assert "aligned to the ffhq\\_512 template by a similarity transform of its landmarks." in para["Alignment"]
    assert para["Protocol"].startswith(f"Face verification was evaluated on the lfw protocol [1]: "
                                       f"{record['protocol']['pairs']} image pairs ({record['protocol']['images']} "
                                       f"images), in 10 cross-validation folds.")
    assert "seed 0; the first image was kept undegraded." in para["Degradation"]
    # a record without degradation at all, nor a recognizer's weights, nor versions of libraries
    bare = copy.deepcopy(old)
    bare["config"]["scales"] = []
    bare["conditions"] = bare["conditions"][:1]
    bare["weights"] = {}
    bare["environment"] = {"device": "cpu"}
    para = _paragraphs(methods_markdown(bare))
    assert para["Degradation"] == "No degradation was applied." and "Restoration" not in para
    assert "(weights" not in para["Recognition"] and "oracle" not in para["Alignment"]
    assert re.fullmatch(r"The evaluation ran with restorever 0\.1\.0 \[\d\] on cpu\.", para["Software"])
    for token in _numbers(methods_markdown(bare).split("## References")[0]):
        assert any(abs(float(token) - a) <= 1e-9 for a in _allowed_numbers(record))


def _unescaped_specials(tex: str) -> list[str]:
    """LaTeX special characters left bare in ``tex`` outside the commands this module writes."""
    text = re.sub(r"~\\cite\{[^}]+\}|\\paragraph\{[^}]+\}|\\url\{[^}]+\}", "", tex)
    text = re.sub(r"\\textbackslash\{\}|\\textasciitilde\{\}|\\textasciicircum\{\}|\\[_%&#${}]", "", text)
    return re.findall(r"[_%&#${}~^\\]", text)


def test_hostile_names_are_escaped_in_latex_markdown_and_bibtex(run_dir):
    """Restorer, protocol and recognizer names holding ``_ % & # $ { }``, ``\\``, a line break and non-ASCII."""
    record = load_results(run_dir)
    evil, proto_name = "my_net 50% & #1 ${x}\\ é\nß", "lfw_ü&%#$"
    record["protocol"]["name"] = proto_name
    record["config"]["restorers"] = ["none", evil]
    record["config"]["recognizer"] = "arcface-r50-glint360k"
    for cond in record["conditions"]:
        cond["restorer"] = evil if cond["restorer"] == "vqfr-v2" else cond["restorer"]
        cond["recognizer"] = "arcface-r50-glint360k"
    record["cache"] = {"identity": {"restorers": {evil: {"name": evil, "weights": [],
                                                         "options": {"pre_cision": "fp16%"}}}}}
    record["weights"] = {f"{evil}:model": {"file": "/w/we_ights%.pth", "sha256": "cd" * 32}}
    tex, bib, md = methods_latex(record), references_bibtex(record), methods_markdown(record)
    fields = re.findall(r"^  \w+ = \{(.*)\},?$", bib, flags=re.M)
    assert len(fields) == 3 * bib.count("@misc{")
    for text in [*tex.splitlines(), *fields]:
        assert text.startswith("%") or not _unescaped_specials(text), text
    assert "my\\_net 50\\% \\& \\#1 \\$\\{x\\}\\textbackslash{} é ß" in tex  # the line break is a space
    assert "lfw\\_ü\\&\\%\\#\\$ protocol" in tex and "we\\_ights\\%.pth (sha256 cdcdcdcdcdcd)" in tex
    assert "pre\\_cision=fp16\\%" in tex
    assert re.search(r"^\\paragraph\{Restoration\.\}[^\n]*my\\_net[^\n]*fp16", tex, flags=re.M)  # one line
    assert "my\\_net 50% & \\#1 $\\{x\\}\\\\ é ß" in md and "lfw\\_ü&%\\#$ protocol [1]" in md
    keys = cite_keys(run_references(record))
    assert all(re.fullmatch(r"rv-[A-Za-z0-9-]+", k) for k in keys.values()) and len(set(keys.values())) == len(keys)
    assert keys[("protocol", proto_name)] != keys.get(("protocol", "lfw-ü")) and "title = {lfw\\_ü" in bib
    assert not any(role == "restorer" for role, _ in keys)  # a restorer without a card has no reference
    assert set(re.findall(r"\\cite\{([^}]+)\}", tex)) == set(re.findall(r"^@misc\{([^,]+),", bib, flags=re.M))
    # two names that differ only in punctuation keep apart keys
    twin = cite_keys([("restorer", "vqfr-v2", "a"), ("restorer", "vqfr_v2", "b"), ("restorer", "vqfr v2", "c")])
    assert len(set(twin.values())) == 3 and twin[("restorer", "vqfr-v2")] == "rv-restorer-vqfr-v2"


def test_report_writes_the_methods_into_the_run_folder_by_default(own_run_dir):
    result = CliRunner().invoke(cli, ["report", str(own_run_dir), "--format", "png"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for name in ("methods.md", "methods.tex", "references.bib"):
        assert (own_run_dir / name).is_file() and str(own_run_dir / name) in result.output
    md = (own_run_dir / "methods.md").read_text()
    # the synthetic run compares vqfr-v2 with none: that family and the AUC/TAR intervals are described
    assert "each restorer against no restoration at the same scale (a family of 2 comparisons)" in md
    assert "Faces were restored with vqfr-v2 [2]" in md and "sign-flip test over people (monte carlo)" in md
    result = CliRunner().invoke(cli, ["report", str(own_run_dir), "--methods-dir", str(own_run_dir / "results.json")])
    assert result.exit_code == 2 and "--methods-dir" in result.output


def test_a_single_fold_is_not_called_cross_validation(tmp_path):
    """A pairs CSV whose rows are all one fold: kfold_accuracy picks the threshold on the evaluated pairs
    themselves. methods.md said "the mean over the 1 folds ... at the threshold that maximises the accuracy on
    the other folds, with its standard error", and tables.tex "1-fold cross-validation (each fold's threshold chosen on
    the other folds)" with a standard error of one fold: both false."""
    import warnings

    import numpy as np

    from restorever.metrics.verification import best_threshold, verification_report
    from restorever.reports.tables import to_latex

    from .conftest import make_record

    record = make_record(tmp_path, restorers=("none",), scales=(4,))
    record["protocol"]["folds"] = 1
    for cond in record["conditions"]:
        scores = cond["scores"]
        scores["fold"] = [0] * len(scores["same"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # verification_report's own "only one fold" warning
            cond["verification"] = verification_report(np.array(scores["same"]), np.array(scores["score"]),
                                                       np.array(scores["fold"]))
        # what the text must say: the accuracy at the best threshold on these very pairs
        assert cond["verification"]["accuracy_mean"] == best_threshold(scores["same"], scores["score"])[1]
    para = _paragraphs(re.sub(r"\\(.)", r"\1", methods_markdown(record)))
    assert para["Protocol"].endswith("in a single fold.")
    assert para["Metrics"].startswith("Verification accuracy is the accuracy over all pairs at the threshold that "
                                      "maximises it on the same pairs")
    assert "other folds" not in para["Metrics"] and "standard error" not in para["Metrics"]
    caption = next(line for line in to_latex(record).splitlines() if line.startswith("\\caption"))
    assert "a single fold (the threshold chosen on the same pairs" in caption
    assert "cross-validation" not in caption and "$\\pm$" not in caption and "standard error" not in caption
    assert " $\\pm$ " not in to_latex(record)  # no cell carries one either (one fold has no standard error)

"""Protocol formats as registered modules, and the protocol file's values as a run's defaults (issue 14).

A config field left at None takes the protocol's value; a CLI flag wins and, when it differs, is recorded under
``config.overrides`` in results.json."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.errors import ConfigError, ProtocolError
from restorever.formats import FORMATS, format_card, list_formats
from restorever.pipeline.evaluate import EvalConfig
from restorever.pipeline.identification import IdentConfig
from restorever.pipeline.protocol_defaults import check_template, pair_similarity, resolve_protocol_defaults
from restorever.protocol import load_protocol, load_spec, protocol_kind
from restorever.validate.protocols import validate_protocol_file

from .test_protocol import _faces_csv

PROTOCOLS = Path(__file__).resolve().parents[1] / "protocols"


# ---------------------------------------------------------------------------------------------------- registry

def test_registry_lists_every_format_with_its_kind():
    assert list_formats() == ["lfw-pairs", "pairs-csv", "insightface-bin", "lfw-ident"]
    kinds = {name: format_card(name).kind for name in list_formats()}
    assert kinds == {"lfw-pairs": "verification", "pairs-csv": "verification", "insightface-bin": "verification",
                     "lfw-ident": "identification"}
    assert "split" in format_card("lfw-ident").all_spec_keys and "split" not in format_card("lfw-pairs").all_spec_keys
    result = CliRunner().invoke(cli, ["protocols", "--formats"])
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in list_formats()) and "identification" in result.output


def test_unknown_format_names_the_file_and_the_registered_formats(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("protocol: mine\ndataset: {format: lfw-pair}\n")
    with pytest.raises(ProtocolError) as info:
        load_protocol(str(path))
    text = str(info.value)
    assert str(path) in text and "lfw-pair" in text
    assert all(name in text for name in list_formats())


def test_identification_protocol_via_load_protocol_points_to_ident():
    assert protocol_kind("lfw-ident") == "identification" and protocol_kind("lfw") == "verification"
    with pytest.raises(ProtocolError) as info:
        load_protocol("lfw-ident")
    text = str(info.value)
    assert "restorever ident --protocol lfw-ident" in text and "load_ident_protocol" in text
    assert "lfw-ident.yaml" in text  # names the file


def test_datasets_ident_keeps_its_import_path():
    from restorever import datasets_ident
    from restorever.formats import lfw_ident

    assert datasets_ident.load_ident_protocol is lfw_ident.load_ident_protocol
    assert datasets_ident.is_ident_protocol("lfw-ident") and not datasets_ident.is_ident_protocol("lfw")


def test_validate_takes_the_known_keys_from_the_registry(tmp_path, monkeypatch):
    pairs = tmp_path / "p.yaml"
    pairs.write_text("protocol: p\ndataset: {format: lfw-pairs, pairs: pairs.txt, people: x.txt}\nsplit: {}\n")
    notes: list[str] = []
    assert validate_protocol_file(pairs, notes=notes) == []
    assert any("unknown key(s) ['split'] for format lfw-pairs" in n for n in notes), notes
    assert any("unknown dataset key(s) ['people']" in n for n in notes), notes

    # a plugin format: its own keys are known to the validator without touching it
    plugin = tmp_path / "plugin_fmt.py"
    plugin.write_text(textwrap.dedent('''
        from restorever.formats.base import FormatCard
        CARDS = {"toy-pairs": FormatCard("toy-pairs", "verification", "a test format",
                                         dataset_keys=frozenset({"list"}), spec_keys=frozenset({"toy"}))}
        def create(name, spec, **kwargs):
            raise NotImplementedError
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(FORMATS, "_modules", [*FORMATS._modules, "plugin_fmt"])
    monkeypatch.setattr(FORMATS, "_cards", None)
    toy = tmp_path / "toy.yaml"
    toy.write_text("protocol: toy\ndataset: {format: toy-pairs, list: l.txt}\ntoy: {a: 1}\n")
    notes = []
    assert validate_protocol_file(toy, notes=notes) == [] and notes == []
    monkeypatch.setattr(FORMATS, "_cards", None)  # forget the plugin once the module list is restored
    sys.modules.pop("plugin_fmt", None)


def test_metric_directions_must_agree_with_the_code(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("protocol: p\ndataset: {format: lfw-pairs, pairs: pairs.txt}\n"
                    "metrics: [{name: eer, higher_is_better: true}]\n")
    with pytest.raises(ProtocolError, match="eer: higher_is_better is true"):
        load_spec(str(path))
    assert any("higher_is_better" in p for p in validate_protocol_file(path))


def test_shipped_protocols_declare_the_run_defaults():
    for name in ("lfw", "lfw-dev", "pairs-csv", "insightface-bin", "lfw-ident"):
        spec, _ = load_spec(name)
        assert spec["seed"] == 0 and spec["on_error"] in ("error", "skip")
        assert spec["alignment"]["landmarks"] == "mtcnn" and spec["alignment"]["template"] == "ffhq_512"


# ---------------------------------------------------------------------------------------------------- resolution

def test_resolution_cli_over_protocol_over_default():
    spec = {"protocol": "p", "seed": 7, "alignment": {"landmarks": "scrfd"}}
    cfg = resolve_protocol_defaults(EvalConfig(protocol="p"), spec)
    assert (cfg.seed, cfg.detector, cfg.template, cfg.similarity, cfg.on_error) == (7, "scrfd", "ffhq_512",
                                                                                    "recognizer", "error")
    assert cfg.sources == {"seed": "protocol", "detector": "protocol", "template": "default",
                           "similarity": "default", "on_error": "default"}
    assert cfg.overrides == {}

    cfg = resolve_protocol_defaults(EvalConfig(protocol="p", seed=3, detector="scrfd", on_error="skip"), spec)
    assert cfg.seed == 3 and cfg.sources["seed"] == "cli" and cfg.sources["detector"] == "cli"
    # only values that differ from what the protocol (or, where it is silent, the code) gives are overrides
    assert cfg.overrides == {"seed": {"protocol": 7, "cli": 3}, "on_error": {"protocol": "error", "cli": "skip"}}
    assert resolve_protocol_defaults(cfg, spec).seed == 3  # resolving again changes nothing


def test_identification_refuses_a_similarity_it_cannot_search_with():
    from restorever.pipeline.identification import search_similarity

    ident_spec, _ = load_spec("lfw-ident")
    assert search_similarity(resolve_protocol_defaults(IdentConfig(), ident_spec)).similarity == "cosine"
    silent = {k: v for k, v in ident_spec.items() if k != "scoring"}
    assert search_similarity(resolve_protocol_defaults(IdentConfig(), silent)).similarity == "cosine"
    with pytest.raises(ConfigError, match="cosine"):
        search_similarity(resolve_protocol_defaults(IdentConfig(similarity="euclidean"), ident_spec))


def test_eval_and_ident_share_the_on_error_rule():
    ident_spec, _ = load_spec("lfw-ident")
    csv_spec, _ = load_spec("pairs-csv")
    assert resolve_protocol_defaults(IdentConfig(), ident_spec).on_error == "skip"
    assert resolve_protocol_defaults(EvalConfig(), ident_spec).on_error == "skip"
    assert resolve_protocol_defaults(IdentConfig(protocol="pairs-csv"), csv_spec).on_error == "error"
    assert resolve_protocol_defaults(EvalConfig(on_error="error"), ident_spec).overrides == {
        "on_error": {"protocol": "skip", "cli": "error"}}


def test_template_and_similarity_checks():
    from restorever.restorers import restorer_card

    check_template("ffhq_512", [restorer_card("none")])
    with pytest.raises(ConfigError, match="unknown; known: .*ffhq_512"):
        check_template("ffhq_51", [])
    with pytest.raises(ConfigError, match="takes ffhq_512 crops"):
        check_template("arcface_112", [restorer_card("none")])
    with pytest.raises(ProtocolError, match="alignment.template: alignment template 'ffhq_51' is unknown"):
        check_template("ffhq_51", [], source="protocol")

    class Rec:
        similarity = "euclidean"

    assert pair_similarity(EvalConfig(similarity="recognizer"), Rec()) == "euclidean"
    assert pair_similarity(EvalConfig(similarity="cosine"), Rec()) == "cosine"
    with pytest.raises(ConfigError, match="similarity"):
        EvalConfig(similarity="hamming").validate()


# ---------------------------------------------------------------------------------------------------- a real run

def _run(tmp_path: Path, faces_root: Path, protocol: Path, name: str, *extra: str) -> dict:
    rows = _faces_csv(faces_root).splitlines()
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(rows[:11]) + "\n")
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["eval", "--protocol", str(protocol), "--pairs", str(pairs), "--data-root",
                                      str(faces_root), "--scales", "8", "--recognizer", "dlib", "--cache-dir",
                                      str(tmp_path / "cache"), "--out", str(out), "--no-progress", "--examples", "0",
                                      *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


def test_protocol_seed_and_similarity_apply_unless_a_flag_overrides(tmp_path, faces_root):
    protocol = tmp_path / "seven.yaml"
    protocol.write_text(f"include: {PROTOCOLS / 'pairs-csv.yaml'}\nprotocol: seven\nseed: 7\n"
                        f"scoring: {{similarity: cosine}}\n")
    record = _run(tmp_path, faces_root, protocol, "from-yaml")
    config = record["config"]
    assert config["seed"] == 7 and record["cache"]["identity"]["seed"] == 7
    assert config["sources"]["seed"] == "protocol" and config["overrides"] == {}
    assert config["similarity"] == "cosine" and record["conditions"][0]["similarity"] == "cosine"  # dlib: euclidean

    record = _run(tmp_path, faces_root, protocol, "from-cli", "--seed", "3")
    config = record["config"]
    assert config["seed"] == 3 and record["cache"]["identity"]["seed"] == 3
    assert config["sources"]["seed"] == "cli"
    assert config["overrides"] == {"seed": {"protocol": 7, "cli": 3}}


def test_degrade_takes_the_protocol_defaults_as_eval_does(tmp_path, faces_root):
    """`restorever degrade` writes the faces `eval` scores: with a protocol whose seed is 7 and no --seed, its
    parameter records are eval's degradation records (it used seed 0 whatever the protocol said)."""
    protocol = tmp_path / "seven.yaml"
    protocol.write_text(f"include: {PROTOCOLS / 'pairs-csv.yaml'}\nprotocol: seven\nseed: 7\n")
    _run(tmp_path, faces_root, protocol, "run")
    result = CliRunner().invoke(cli, ["degrade", "--protocol", str(protocol), "--pairs", str(tmp_path / "pairs.csv"),
                                      "--data-root", str(faces_root), "--scales", "8", "--out",
                                      str(tmp_path / "faces")], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    def records(path: Path) -> dict:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return {(r["item"], r["scale"]): r for r in rows}

    written = records(tmp_path / "faces" / "params.jsonl")
    assert written and {r["seed"] for r in written.values()} == {7}
    assert written == records(tmp_path / "run" / "degradation.jsonl")


def test_detector_auto_resolves_to_the_detector_that_runs(tmp_path, monkeypatch):
    """`--detector auto` (or `alignment.landmarks: auto`) is SCRFD when det_10g.onnx is found, else MTCNN. The run
    records, and keys its landmark cache with, the detector that runs: keyed as "auto", MTCNN landmarks cached before
    det_10g.onnx was installed served later runs that detected the other images with SCRFD (two detectors in one run,
    and results.json said "auto")."""
    from restorever.pipeline.cache import landmarks_key

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.insightface pack
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "rv"))
    onnx = tmp_path / "det_10g.onnx"
    monkeypatch.setenv("RESTOREVER_SCRFD", str(onnx))
    for spec in ({}, {"alignment": {"landmarks": "auto"}}):
        given = EvalConfig(detector="auto" if not spec else None)
        assert resolve_protocol_defaults(given, spec).detector == "mtcnn"
    onnx.write_bytes(b"stand-in")  # only its presence decides
    resolved = resolve_protocol_defaults(EvalConfig(detector="auto"), {})
    assert resolved.detector == "scrfd"
    assert resolve_protocol_defaults(resolved, {}).detector == "scrfd"  # resolving again changes nothing
    from restorever.detectors import detector_file_sha256

    assert landmarks_key("ab" * 32, resolved.detector, detector_file=detector_file_sha256(resolved.detector)) != \
        landmarks_key("ab" * 32, "mtcnn")
    assert resolve_protocol_defaults(EvalConfig(detector="mtcnn"), {}).detector == "mtcnn"  # named: kept


def test_source_tree_protocols_come_first():
    """Code imported from a checkout reads that checkout's protocols/, even when an editable install of another
    checkout maps ``restorever.protocols`` elsewhere (a second git worktree run with PYTHONPATH)."""
    from pathlib import Path

    import restorever
    from restorever.protocol_specs import list_protocols, shipped_protocol_dirs

    tree = Path(restorever.__file__).resolve().parent.parent
    assert shipped_protocol_dirs()[0] == tree / "protocols"
    assert list_protocols()["lfw"] == tree / "protocols" / "lfw.yaml"

"""How a lab packages its models: one module holding restorers and recognizers (``RESTORER_CARDS`` and
``RECOGNIZER_CARDS`` with one ``create``), and entry points in the ``module:CARDS`` form of most packaging guides.

The plugins are real modules written into tmp_path; the models are those of tests/test_cli_plugins.py (a 3x3 box
blur and a fixed random projection of a 16x16 thumbnail), here in one file whose seed comes from a helper module.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from restorever._registry import module_origin
from restorever.cli import cli
from restorever.pipeline.plugins import load_plugin, plugin_of
from restorever.recognizers import REGISTRY as RECOGNIZERS
from restorever.restorers import REGISTRY as RESTORERS

from . import test_cli_plugins
from .test_cli_plugins import RECOGNIZER_PLUGIN, RESTORER_PLUGIN, _dist

# the two plugins of test_cli_plugins.py in one file: each dict of cards under its kind's name, one create for all
BOTH_PLUGIN = RECOGNIZER_PLUGIN + RESTORER_PLUGIN
for _old, _new in [('"thumb-net"', '"lab-thumb"'), ('"box-blur"', '"lab-blur"'),
                   ('CARDS = {"lab-thumb"', 'RECOGNIZER_CARDS = {"lab-thumb"'),
                   ('CARDS = {"lab-blur"', 'RESTORER_CARDS = {"lab-blur"'), ("SEED = 0", "from lab_seed import SEED"),
                   ("return Thumb(CARDS[name])", "return Thumb(RECOGNIZER_CARDS[name])"),
                   ("    return Blur(CARDS[name]).to(device)", "    if name in RESTORER_CARDS:\n"
                    "        return Blur(RESTORER_CARDS[name]).to(device)\n"
                    "    return Thumb(RECOGNIZER_CARDS[name]).to(device)")]:
    BOTH_PLUGIN = BOTH_PLUGIN.replace(_old, _new)

MODULES = ("lab_both", "lab_seed", "both_cards", "both_twice", "both_kind", "both_classes", "ep_cards")

registries = test_cli_plugins.registries  # the fixture: both registries, sys.path and its modules left as they were


@pytest.fixture(autouse=True)
def _forget_modules():
    """The plugin modules of this file are imported afresh by each test (their files differ)."""
    yield
    for name in MODULES:
        sys.modules.pop(name, None)


def _write_both(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lab_both.py").write_text(BOTH_PLUGIN)
    (folder / "lab_seed.py").write_text("SEED = 0\n")
    return folder


def test_one_module_holds_a_restorer_and_a_recognizer(lfw_root, tmp_path, registries, monkeypatch):
    """``--plugin lab_both`` with RESTORER_CARDS and RECOGNIZER_CARDS registers each dict with its registry (it was
    a usage error: "holds both Restorer and Recognizer classes", and KIND could name only one). Both models are
    keyed by the one file and its helper; an eval runs the blur before the thumbnail recognizer."""
    work = _write_both(tmp_path / "work")
    monkeypatch.chdir(work)
    runner = CliRunner()
    for command, name in (("restorers", "lab-blur"), ("recognizers", "lab-thumb")):
        listed = runner.invoke(cli, [command, "--plugin", "lab_both"])
        assert listed.exit_code == 0, listed.output
        lines = listed.output.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{name} "))
        assert lines[at + 1].split() == ["from:", "plugin", "lab_both", f"({work / 'lab_both.py'})"]
    assert "lab-thumb" not in RESTORERS.names() and "lab-blur" not in RECOGNIZERS.names()
    assert load_plugin("lab_both") == [("restorer", "lab_both", ["lab-blur"]),
                                       ("recognizer", "lab_both", ["lab-thumb"])]  # again: nothing new
    sha = hashlib.sha256((work / "lab_both.py").read_bytes()).hexdigest()
    helpers = {"lab_seed.py": hashlib.sha256(b"SEED = 0\n").hexdigest()}
    want = {"module": "lab_both", "sha256": sha, "helpers": helpers}
    assert plugin_of("restorer", "lab-blur") == want and plugin_of("recognizer", "lab-thumb") == want

    out = tmp_path / "run"
    result = runner.invoke(cli, ["eval", "--plugin", "lab_both", "--protocol", "lfw", "--data-root", str(lfw_root),
                                 "--limit-pairs", "4", "--recognizer", "lab-thumb", "--restorer", "none,lab-blur",
                                 "--scales", "8", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                                 "--examples", "0", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "results.json").read_text())
    identity = record["cache"]["identity"]
    assert identity["recognizer"]["plugin"] == identity["restorers"]["lab-blur"]["plugin"] == \
        {"sha256": sha, "module": "lab_both", "helpers": helpers}
    assert "plugin" not in identity["restorers"]["none"]
    cos = {c["restorer"]: c["identity"]["cosine_to_clean_mean"] for c in record["conditions"]}
    assert cos["lab-blur"] != cos["none"]


def test_a_module_of_both_kinds_is_checked(tmp_path, registries, monkeypatch):
    """Mixed forms, a name in both dicts (its one create could not tell which model to build) and a KIND that
    contradicts the dicts are refused, naming the fix; a module with both classes and one CARDS is told how to keep
    both kinds in it. Nothing is registered by a refused module."""
    work = _write_both(tmp_path / "work")
    (work / "both_cards.py").write_text(BOTH_PLUGIN + "CARDS = RESTORER_CARDS\n")
    (work / "both_twice.py").write_text(BOTH_PLUGIN + "RECOGNIZER_CARDS['lab-blur'] = RESTORER_CARDS['lab-blur']\n")
    (work / "both_kind.py").write_text(BOTH_PLUGIN.replace("RESTORER_CARDS = {", "KIND = 'restorer'\n_ = {")
                                       .replace("if name in RESTORER_CARDS:", "if False:"))
    (work / "both_classes.py").write_text(BOTH_PLUGIN + "CARDS = {**RESTORER_CARDS, **RECOGNIZER_CARDS}\n"
                                                        "del RESTORER_CARDS, RECOGNIZER_CARDS\n")
    monkeypatch.chdir(work)
    before = (RESTORERS.names(), RECOGNIZERS.names())
    cases = {"both_cards": (TypeError, "holds both Restorer and Recognizer classes: set KIND"),  # CARDS: one kind
             "both_twice": (ValueError, "names lab-blur in both RESTORER_CARDS and RECOGNIZER_CARDS: its one "
                                        "create(name) cannot tell which to build"),
             "both_kind": (TypeError, "sets KIND = 'restorer' but defines RECOGNIZER_CARDS: drop KIND"),
             "both_classes": (TypeError, "holds both Restorer and Recognizer classes: set KIND = 'restorer' or KIND "
                                         "= 'recognizer' in it; or, to keep both kinds in it, replace CARDS by "
                                         "RESTORER_CARDS")}
    for spec, (error, message) in cases.items():
        with pytest.raises(error) as caught:
            load_plugin(spec)
        assert message in str(caught.value), (spec, str(caught.value))
    assert (RESTORERS.names(), RECOGNIZERS.names()) == before
    result = CliRunner().invoke(cli, ["restorers", "--plugin", "both_twice"])
    assert result.exit_code == 2 and "names lab-blur in both" in result.output


def test_entry_points_name_the_cards(tmp_path, registries, monkeypatch, caplog):
    """``name = module:CARDS`` (the form packaging guides show) declares the module, as ``name = module`` does; it
    was refused with a warning, so the package's models were unknown. The module has the origin it has however it
    is registered, package and version included (an editable install lists no files: only the entry point names
    the package). A module of both kinds is declared in both groups. Any other attribute is still refused, with the
    two accepted forms in the warning."""
    site = tmp_path / "site"
    _write_both(site)
    (site / "ep_cards.py").write_text(RECOGNIZER_PLUGIN.replace('"thumb-net"', '"ep-cards"'))
    info = site / "labpkg-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: labpkg\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[restorever.restorers]\nlab = lab_both:RESTORER_CARDS\n"
                                           "[restorever.recognizers]\nlab = lab_both:RECOGNIZER_CARDS\n")
    _dist(site, "cardspkg", "1.0", "restorever.recognizers", {"cards": "ep_cards:CARDS", "odd": "ep_cards:create"})
    monkeypatch.syspath_prepend(str(site))
    RESTORERS._entry_points_read = RECOGNIZERS._entry_points_read = False
    with caplog.at_level("WARNING", logger="restorever._registry"):
        assert RECOGNIZERS.card("ep-cards").arch == "thumb"
        assert RECOGNIZERS.card("lab-thumb").arch == "thumb" and RESTORERS.card("lab-blur").arch == "box3"
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["package cardspkg 1.0: its entry point odd = ep_cards:create names an attribute other than "
                        "its cards (create); name the module that defines CARDS and create (odd = ep_cards) or its "
                        "cards (odd = ep_cards:CARDS, :RECOGNIZER_CARDS in a module of both kinds); its recognizer "
                        "plugin odd is skipped (fix or uninstall the package)"], warnings
    sha = hashlib.sha256((site / "ep_cards.py").read_bytes()).hexdigest()
    assert RECOGNIZERS.origin("ep-cards") == {"module": "ep_cards", "file": str(site / "ep_cards.py"),
                                              "sha256": sha, "package": "cardspkg", "version": "1.0"}
    assert module_origin("ep_cards") == RECOGNIZERS.origin("ep-cards")  # as --plugin ep_cards would key it
    assert plugin_of("restorer", "lab-blur") == plugin_of("recognizer", "lab-thumb")
    assert plugin_of("restorer", "lab-blur")["package"] == "labpkg"

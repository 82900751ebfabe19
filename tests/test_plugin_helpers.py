"""A plugin's own helper modules are part of its cache keys: editing a helper (the network, a constant) computes the
plugin's entries again instead of serving the old helper's, as editing the plugin file itself does."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from restorever._registry import helper_files
from restorever.pipeline.identity import RunIdentity, plugins_of
from restorever.pipeline.plugins import load_plugin, plugin_of
from restorever.restorers import REGISTRY as RESTORERS
from restorever.validate.common import RunValidation
from restorever.validate.run_cache import _note_plugins

PLUGIN = '''
import torch
from restorever.hub import ModelCard
from restorever.restorers.base import Restorer
import hp_consts
from hp_lab.ops import blur

CARDS = {"helped-blur": ModelCard(name="helped-blur", arch="box", description="box blur from a helper")}

class Helped(Restorer):
    def forward(self, images, *, seeds=None):
        return blur(images, hp_consts.SIZE)

def create(name, *, weights=None, device="cpu"):
    return Helped(CARDS[name]).to(device)
'''
OPS = '''
import torch
from hp_lab import shapes

def blur(images, size):
    return torch.nn.functional.avg_pool2d(images, size, stride=1, padding=size // 2, count_include_pad=False)
'''
MODULES = ("hp_plugin", "hp_consts", "hp_lab", "hp_lab.ops", "hp_lab.shapes", "hp_alone", "hp_site", "hp_site_helper")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A plugin folder: the plugin, a helper module, a helper package (whose module imports a sibling), and an
    unrelated file; the registry, sys.path and sys.modules are restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = (list(RESTORERS._modules), dict(RESTORERS._origins), RESTORERS._entry_points_read)
    (tmp_path / "hp_lab").mkdir()
    (tmp_path / "hp_plugin.py").write_text(PLUGIN)
    (tmp_path / "hp_consts.py").write_text("SIZE = 3\n")
    (tmp_path / "hp_lab" / "__init__.py").write_text("")
    (tmp_path / "hp_lab" / "ops.py").write_text(OPS)
    (tmp_path / "hp_lab" / "shapes.py").write_text("SQUARE = True\n")
    (tmp_path / "notes.py").write_text("x = 1\n")
    yield tmp_path
    RESTORERS._modules[:], RESTORERS._origins, RESTORERS._entry_points_read = saved
    RESTORERS._cards = None
    for name in MODULES:
        sys.modules.pop(name, None)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _identity() -> RunIdentity:
    return RunIdentity.from_files(detector="mtcnn", recognizer_name="dlib", recognizer_files={}, flip_test=False,
                                  restorer_files={"none": {}, "helped-blur": {}}, restorer_options={},
                                  degradation="difface-test", seed=0, device="cpu",
                                  plugins=plugins_of("dlib", ["none", "helped-blur"]))


LMS = [[1.0, 2.0], [3.0, 2.0], [2.0, 3.0], [1.0, 4.0], [3.0, 4.0]]


def test_helpers_are_found_through_the_plugins_namespace(folder):
    """Each helper the plugin refers to, directly or through another helper, by its path in the plugin's folder;
    not the plugin's own file, an unrelated file, torch or restorever."""
    load_plugin(str(folder / "hp_plugin.py"))
    plugin = plugin_of("restorer", "helped-blur")
    assert plugin == {"module": "hp_plugin", "sha256": _sha(folder / "hp_plugin.py"), "helpers": {
        "hp_consts.py": _sha(folder / "hp_consts.py"), "hp_lab/__init__.py": _sha(folder / "hp_lab" / "__init__.py"),
        "hp_lab/ops.py": _sha(folder / "hp_lab" / "ops.py"),
        "hp_lab/shapes.py": _sha(folder / "hp_lab" / "shapes.py")}}
    assert helper_files(sys.modules["hp_lab.shapes"]) == {}  # a module that imports nothing local


def test_an_edited_helper_changes_the_plugins_keys_and_only_its(folder):
    """Restored and embedding keys of the plugin's restorer change when a helper two imports away changes; the
    clean and ``none`` keys do not; an unrelated file in the folder changes nothing; validate says which helper
    changed since the run."""
    load_plugin(str(folder / "hp_plugin.py"))
    before = _identity()
    (folder / "notes.py").write_text("x = 2\n")
    RESTORERS._origins.clear()
    assert _identity().restored_key("ab" * 32, LMS, "helped-blur", 8, "x") == \
        before.restored_key("ab" * 32, LMS, "helped-blur", 8, "x")
    (folder / "hp_lab" / "shapes.py").write_text("SQUARE = False\n")
    RESTORERS._origins.clear()
    after = _identity()
    for key in ("restored_key", "embedding_key"):
        assert getattr(after, key)("ab" * 32, LMS, "helped-blur", 8, "x") != \
            getattr(before, key)("ab" * 32, LMS, "helped-blur", 8, "x")
        assert getattr(after, key)("ab" * 32, LMS, "none", 8, "x") == getattr(before, key)("ab" * 32, LMS, "none", 8,
                                                                                         "x")
    assert after.embedding_key("ab" * 32, LMS, "none", None) == before.embedding_key("ab" * 32, LMS, "none", None)
    report = RunValidation(run_dir=folder)
    _note_plugins(before, report)
    assert any("hp_lab/shapes.py" in note and "changed since the run" in note for note in report.notes), report.notes
    report = RunValidation(run_dir=folder)
    _note_plugins(after, report)
    assert not report.notes


def test_a_plugin_without_helpers_keeps_its_keys(folder):
    """A plugin that imports only installed packages and restorever has no ``helpers`` entry, so the keys of the
    runs made before helpers were hashed stay valid."""
    (folder / "hp_alone.py").write_text(PLUGIN.replace("import hp_consts\nfrom hp_lab.ops import blur\n", "")
                                        .replace("blur(images, hp_consts.SIZE)", "images")
                                        .replace("helped-blur", "alone-blur"))
    load_plugin(str(folder / "hp_alone.py"))
    assert plugin_of("restorer", "alone-blur") == {"module": "hp_alone", "sha256": _sha(folder / "hp_alone.py")}


def test_a_module_installed_into_site_packages_has_no_helpers(tmp_path, folder):
    """Modules in ``site-packages`` are installed packages, not helpers (their versions identify them): a plugin
    installed there, and the module it imports from there, give none."""
    site = tmp_path / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "hp_site_helper.py").write_text("SIZE = 3\n")
    (site / "hp_site.py").write_text("import torch\nimport hp_site_helper\n")
    sys.path.insert(0, str(site))
    import hp_site

    assert helper_files(hp_site) == {}


def test_the_same_helpers_however_the_plugin_is_loaded(folder):
    """``lab.hp_plugin`` and ``lab/hp_plugin.py`` (imported as ``hp_plugin``) are one file with one set of helpers,
    by the same paths, so both forms share the cache; the package that holds the plugin is not a helper."""
    import importlib

    lab = folder / "lab"
    lab.mkdir()
    (lab / "__init__.py").write_text("")
    (lab / "hp_plugin.py").write_text(PLUGIN)
    (folder / "hp_plugin.py").unlink()
    sys.path[:0] = [str(folder), str(lab)]
    try:
        dotted = helper_files(importlib.import_module("lab.hp_plugin"))
        by_file = helper_files(importlib.import_module("hp_plugin"))
    finally:
        for name in ("lab", "lab.hp_plugin"):
            sys.modules.pop(name, None)
    assert dotted == by_file and set(dotted) == {"../hp_consts.py", "../hp_lab/__init__.py", "../hp_lab/ops.py",
                                                 "../hp_lab/shapes.py"}


SHARED = ("hp_shared", "hp_shared.nets", "hp_shared.extra", "hp_shared.late", "hp_two", "hp_gone", "hp_shim")


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """A helper package ``hp_shared`` with three modules, on sys.path; sys.modules restored afterwards."""
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    (tmp_path / "hp_shared").mkdir()
    (tmp_path / "hp_shared" / "__init__.py").write_text("")
    for name in ("nets", "extra", "late"):
        (tmp_path / "hp_shared" / f"{name}.py").write_text(f"NAME = {name!r}\n")
    yield tmp_path
    for name in SHARED:
        sys.modules.pop(name, None)


def test_helpers_do_not_depend_on_what_else_the_process_imported(shared):
    """A plugin that imports ``hp_shared.nets`` has the package and that module as helpers, whether or not another
    plugin of the same process imported ``hp_shared.extra`` (before, every submodule anyone had imported was taken
    from the package's namespace: the keys of an unchanged plugin differed with the other plugins loaded)."""
    import importlib

    (shared / "hp_two.py").write_text("import hp_shared.nets\n")
    alone = helper_files(importlib.import_module("hp_two"))
    importlib.import_module("hp_shared.extra")  # another plugin's helper, same package
    assert helper_files(sys.modules["hp_two"]) == alone
    assert set(alone) == {"hp_shared/__init__.py", "hp_shared/nets.py"}


def test_a_helper_imported_inside_a_function_is_seen_before_and_after_it_runs(shared):
    """``from hp_shared import late`` inside ``create`` is a helper from the start: the keys computed before the
    function ran equal those after (before, it was seen only once something had imported it)."""
    import importlib

    (shared / "hp_two.py").write_text("import hp_shared.nets\n\ndef create():\n    from hp_shared import late\n"
                                      "    return late.NAME\n")
    mod = importlib.import_module("hp_two")
    before = helper_files(mod)
    assert mod.create() == "late" and helper_files(mod) == before
    assert set(before) == {"hp_shared/__init__.py", "hp_shared/nets.py", "hp_shared/late.py"}
    assert before["hp_shared/late.py"] == _sha(shared / "hp_shared" / "late.py")


def test_odd_module_objects_and_a_vanished_helper_are_no_crash(shared, caplog):
    """A ``sys.modules`` entry that is not a module (a lazy-import stand-in without ``__name__``) is skipped; a
    helper file deleted after it was imported is a warning naming it, and the others are still hashed."""
    import importlib

    class StandIn:
        __slots__ = ()

    (shared / "hp_gone.py").write_text("X = 1\n")
    (shared / "hp_two.py").write_text("import hp_gone\nimport hp_shared.nets\n")
    mod = importlib.import_module("hp_two")
    sys.modules["hp_shim"] = StandIn()

    def made_there():
        return None

    made_there.__module__ = "hp_shim.inner"
    mod.made_there = made_there
    (shared / "hp_gone.py").unlink()
    with caplog.at_level("WARNING", logger="restorever._registry"):
        found = helper_files(mod)
    assert set(found) == {"hp_shared/__init__.py", "hp_shared/nets.py"}
    assert any("hp_gone.py" in r.getMessage() and "cannot be read" in r.getMessage() for r in caplog.records)

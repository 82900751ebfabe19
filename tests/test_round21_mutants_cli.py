"""Round 21, mutation testing eleventh pass: the command line and a run's set-up. Each test closes a gap a surviving
mutant showed (docs/reliability.md): what a flag parses to, which value wins, what a run records."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.pipeline.costs import load_costs, record_run_costs


def _config(restorers):
    return SimpleNamespace(restorers=list(restorers), detector="mtcnn", recognizer="dlib", degradation="bicubic")


def test_run_costs_are_seconds_per_item_of_every_stage(tmp_path):
    """``record_run_costs`` stores each stage's measured seconds divided by its item count, keyed
    ``device|stage|backend``; the restore stage only when the run had one restorer (its time is not split)."""
    timings = {"n_embedded": 40, "embed_s": 10.0, "n_degraded": 16, "degrade_s": 2.0, "n_restored": 16,
               "restore_s": 48.0, "landmarks_s": 6.0}
    record_run_costs(tmp_path, "cpu", _config(["none", "vqfr-v2"]), timings, n_landmarks=12)
    assert load_costs(tmp_path) == {"cpu|landmarks|mtcnn": 0.5, "cpu|embed|dlib": 0.25, "cpu|degrade|bicubic": 0.125,
                                    "cpu|restore|vqfr-v2": 3.0}
    record_run_costs(tmp_path, "cuda", _config(["difface", "vqfr-v2"]), timings, n_landmarks=0)
    costs = json.loads((tmp_path / "costs.json").read_text())
    assert costs == {"cpu|landmarks|mtcnn": 0.5, "cpu|embed|dlib": 0.25, "cpu|degrade|bicubic": 0.125,
                     "cpu|restore|vqfr-v2": 3.0, "cuda|embed|dlib": 0.25, "cuda|degrade|bicubic": 0.125}


def test_plot_scales_flag_reaches_the_figure(monkeypatch, tmp_path):
    """``plot roc/cmc --scales 8,x32`` asks for scales [8, 32]; no flag asks for all (None); restorers likewise."""
    import restorever.reports.plots as plots
    import restorever.reports.results as results

    seen = []
    monkeypatch.setattr(results, "load_results", lambda path: {"path": path})
    for name in ("plot_roc", "plot_cmc"):
        monkeypatch.setattr(plots, name, lambda records, output, **kw: seen.append(kw) or output)
    run = tmp_path / "run"
    run.mkdir()
    for command in ("roc", "cmc"):
        for args, scales, restorers in [(["--scales", "8, x32"], [8, 32], None), ([], None, None),
                                        (["--restorers", "none,vqfr-v2"], None, ["none", "vqfr-v2"])]:
            seen.clear()
            result = CliRunner().invoke(cli, ["plot", command, str(run), "-o", str(tmp_path / "f.png"), *args])
            assert result.exit_code == 0, result.output
            assert seen[0]["scales"] == scales and seen[0]["restorers"] == restorers, (command, args, seen)
            assert seen[0]["names"] == ["run"]


def test_plain_cuda_needs_no_index_check(monkeypatch):
    """On a machine with GPUs, ``cuda`` (no index) is the current GPU, ``cuda:N`` is checked against the count."""
    import torch

    from restorever.devices import resolve_device
    from restorever.errors import DeviceError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda") and resolve_device(" CUDA ") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match=r"has 1 GPU\(s\)"):
        resolve_device("cuda:1")


def test_setup_records_the_template_size_and_landmarks():
    """results.json's ``setup.alignment``: the template's ``[w, h]`` in pixels and its landmark count."""
    from restorever.alignment import get_template, list_templates
    from restorever.pipeline.environment import setup_info

    for name in list_templates():
        tpl = get_template(name)
        out = setup_info(SimpleNamespace(template=name), recognizer=None)
        assert out == {"alignment": {"template": name, "size": [int(tpl.size[0]), int(tpl.size[1])],
                                     "landmarks": len(tpl.points)}}
    assert setup_info(SimpleNamespace(template="ffhq_512"), None)["alignment"]["size"] == [512, 512]


def test_library_versions_name_the_jpeg_decoder():
    """With Pillow loaded, ``libraries.libjpeg`` names the JPEG decoder Pillow was built with (it sets the pixels)."""
    from PIL import features

    from restorever.pipeline.environment import library_versions

    jpeg = features.version_codec("jpg")
    assert jpeg is not None  # this Pillow decodes JPEG (the LFW photos are JPEG)
    turbo = features.version("libjpeg_turbo")
    expected = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {jpeg}"
    versions = library_versions()
    assert versions["libjpeg"] == expected
    import PIL

    assert versions["pillow"] == PIL.__version__


def test_parse_scales_refuses_zero_and_negative_scales():
    """``--scales`` keeps each positive scale (``x8`` is 8, blanks dropped); 0 or a negative one is a usage error."""
    import click

    from restorever.cli.options import parse_scales

    assert parse_scales(" 1, x8,,X16 ") == [1, 8, 16] and parse_scales(None) == [] and parse_scales("") == []
    for text in ("0", "4,0", "-2", "x0"):
        with pytest.raises(click.BadParameter, match="is not a positive scale") as info:
            parse_scales(text, param_hint="--degrade-scales")
        assert "--degrade-scales" in info.value.format_message() or info.value.param_hint == "--degrade-scales"


def test_a_stage_of_one_item_is_recorded(tmp_path):
    """A stage that ran on a single item (one photo detected) is a measurement too: seconds / 1."""
    record_run_costs(tmp_path, "cpu", _config(["none"]), {"n_embedded": 1, "embed_s": 0.75, "landmarks_s": 2.5},
                     n_landmarks=1)
    assert load_costs(tmp_path) == {"cpu|landmarks|mtcnn": 2.5, "cpu|embed|dlib": 0.75}


def test_recognizers_listing_names_dlib_files_in_their_package():
    """``restorever recognizers`` asks the backend where its files are (dlib keeps them in face_recognition_models,
    not in the weights cache): each role of dlib's card reads ``present: <package folder>/<file>``."""
    from restorever.recognizers import recognizer_card
    from restorever.recognizers.dlib import dlib_model_dir

    result = CliRunner().invoke(cli, ["recognizers"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    weights = lines[[i for i, ln in enumerate(lines) if ln.startswith("dlib ")][0] + 1]
    folder = dlib_model_dir()
    for role, wf in recognizer_card("dlib").weights.items():
        assert f"{role} present: {folder / wf.filename}" in weights, weights
    assert "missing" not in weights


@pytest.mark.parametrize("flags, shown", [([], True), (["--no-progress"], False)])
def test_eval_no_progress_flag_reaches_the_run(monkeypatch, tmp_path, faces_root, flags, shown):
    """``eval`` shows the progress bars unless ``--no-progress`` is given (``evaluate(progress=...)``)."""
    import restorever.pipeline.evaluate as evaluate_module
    from restorever.errors import ConfigError

    seen = {}

    def fake_evaluate(config, **kw):
        seen.update(kw)
        raise ConfigError("run", "stopped by the test after its set-up")

    monkeypatch.setattr(evaluate_module, "evaluate", fake_evaluate)
    pairs = tmp_path / "p.csv"
    pairs.write_text("madonna/madonna_0001.jpg,madonna/madonna_0002.jpg,1\n"
                     "madonna/madonna_0001.jpg,elton_john/elton_john_0001.jpg,0\n")
    result = CliRunner().invoke(cli, ["eval", "--protocol", "pairs-csv", "--pairs", str(pairs), "--data-root",
                                      str(faces_root), "--restorer", "none", "--out", str(tmp_path / "o"), *flags])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    assert seen["progress"] is shown
    assert not (tmp_path / "o").exists()  # nothing was written: the run folder of a failed run is removed


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for plugin modules; the restorer registry and sys.modules are restored afterwards."""
    import sys

    from restorever.restorers import REGISTRY

    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    saved = (list(REGISTRY._modules), dict(REGISTRY._origins), REGISTRY._entry_points_read)
    before = set(sys.modules)
    yield tmp_path
    REGISTRY._modules[:], REGISTRY._origins, REGISTRY._entry_points_read = saved
    REGISTRY._cards = None
    for name in set(sys.modules) - before:
        if name.startswith("r21"):
            del sys.modules[name]


def test_relative_imports_inside_functions_are_helpers(plugin_dir):
    """A plugin's ``from .x import y`` run only inside a function is found from its source: in a module of a
    package (relative to the package) and in a package's ``__init__`` (relative to the package itself)."""
    import hashlib
    import importlib

    from restorever._registry import helper_files

    (plugin_dir / "r21lab").mkdir()
    (plugin_dir / "r21lab" / "__init__.py").write_text("")
    (plugin_dir / "r21lab" / "plug.py").write_text("def create():\n    from .consts import SIZE\n    return SIZE\n")
    (plugin_dir / "r21lab" / "consts.py").write_text("SIZE = 3\n")
    (plugin_dir / "r21pk").mkdir()
    (plugin_dir / "r21pk" / "__init__.py").write_text("def create():\n    from .net import build\n    return build\n")
    (plugin_dir / "r21pk" / "net.py").write_text("def build():\n    return 1\n")

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert helper_files(importlib.import_module("r21lab.plug")) == {
        "consts.py": digest(plugin_dir / "r21lab" / "consts.py")}
    assert helper_files(importlib.import_module("r21pk")) == {"net.py": digest(plugin_dir / "r21pk" / "net.py")}


def test_a_create_without_return_names_its_file(plugin_dir):
    """A plugin whose ``create`` returns None is a ConfigError naming the file that holds that ``create``."""
    from restorever.errors import ConfigError
    from restorever.restorers import REGISTRY

    source = plugin_dir / "r21_noreturn.py"
    source.write_text("from restorever.hub import ModelCard\n"
                      "CARDS = {'r21-noreturn': ModelCard(name='r21-noreturn', arch='x', description='no return')}\n"
                      "def create(name, **kwargs):\n    CARDS[name]\n")
    REGISTRY.register_module("r21_noreturn")
    model = REGISTRY.create("r21-noreturn")
    with pytest.raises(ConfigError, match="returned NoneType") as info:
        REGISTRY.created("r21-noreturn", model, "forward", "restorer")
    assert f"create() in {source}" in str(info.value)


def test_weights_path_names_only_the_bad_file_unusable(plugin_dir, monkeypatch):
    """A backend with two files, one cached with the wrong sha256: ``weights path`` names that one unusable (exit
    2) and the other, whose sha256 is the card's, present at its path."""
    import hashlib

    home = plugin_dir / "home"
    monkeypatch.setenv("RESTOREVER_HOME", str(home))
    good = b"the released auxiliary file"
    (plugin_dir / "r21_two.py").write_text(
        "from restorever.hub import ModelCard, WeightFile\n"
        "W = {'model': WeightFile('m.pth', None, '" + "0" * 64 + "', 'MIT'),\n"
        "     'aux': WeightFile('a.pth', None, '" + hashlib.sha256(good).hexdigest() + "', 'MIT')}\n"
        "KIND = 'restorer'\n"
        "CARDS = {'r21-two': ModelCard(name='r21-two', arch='x', description='two files', weights=W)}\n"
        "def create(name, **kwargs):\n    return None\n")
    result = CliRunner().invoke(cli, ["weights", "path", "--plugin", "r21_two", "r21-two"])
    assert result.exit_code == 0 and "model: missing: put m.pth in" in result.output, result.output
    folder = home / "weights" / "r21-two"
    assert f"model: missing: put m.pth in {folder}" in result.output
    folder.mkdir(parents=True)
    (folder / "m.pth").write_bytes(b"not the released model")
    (folder / "a.pth").write_bytes(good)
    result = CliRunner().invoke(cli, ["weights", "path", "--plugin", "r21_two", "r21-two"])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert f"model: unusable {folder / 'm.pth'} (its sha256 is not the card's" in lines[0], lines
    assert lines[1] == f"aux: present: {folder / 'a.pth'}", lines

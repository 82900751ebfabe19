"""Your own restorer or recognizer from the command line: ``--plugin MODULE`` and installed packages' entry points.

The plugins are real modules written into tmp_path: a tiny torch recognizer (a fixed random projection of a 16x16
thumbnail of the ArcFace crop) and a fixed 3x3 box blur restorer. Runs use a few LFW pairs with MTCNN landmarks.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from restorever.cli import cli
from restorever.recognizers import REGISTRY as RECOGNIZERS
from restorever.restorers import REGISTRY as RESTORERS

REPO = Path(__file__).resolve().parents[1]

RECOGNIZER_PLUGIN = '''
import torch
from restorever.alignment import crop_to_template
from restorever.hub import ModelCard
from restorever.recognizers.base import Recognizer

CARDS = {"thumb-net": ModelCard(name="thumb-net", arch="thumb", description="16x16 thumbnail projection")}
SEED = 0

class Thumb(Recognizer):
    embedding_dim = 32
    def __init__(self, card):
        super().__init__(card)
        gen = torch.Generator().manual_seed(SEED)
        self.register_buffer("proj", torch.randn(3 * 16 * 16, 32, generator=gen))
    def embed(self, faces, landmarks):
        crops = crop_to_template(faces, landmarks, "arcface_112")
        return torch.nn.functional.interpolate(crops, size=16, mode="area").flatten(1) @ self.proj

def create(name, *, weights=None, device="cpu"):
    return Thumb(CARDS[name]).to(device)
'''

RESTORER_PLUGIN = '''
import torch
from restorever.hub import ModelCard
from restorever.restorers.base import Restorer

CARDS = {"box-blur": ModelCard(name="box-blur", arch="box3", description="3x3 box blur")}

class Blur(Restorer):
    def forward(self, images, *, seeds=None):
        return torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)

def create(name, *, weights=None, device="cpu"):
    return Blur(CARDS[name]).to(device)
'''

PLUGIN_MODULES = ("my_thumb", "my_blur", "lab", "lab.my_thumb", "lab.my_blur", "ep_thumb", "ep_broken", "ep_dlib",
                  "takes_dlib", "no_kind", "json_like")


@pytest.fixture
def registries(monkeypatch):
    """Leave both registries, sys.path and sys.modules as they were (the CLI registers plugins in this process)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = [(reg, list(reg._modules), dict(reg._origins), reg._entry_points_read)
             for reg in (RESTORERS, RECOGNIZERS)]
    yield
    for reg, modules, origins, read in saved:
        reg._modules[:] = modules
        reg._origins, reg._entry_points_read, reg._cards = origins, read, None
    for name in PLUGIN_MODULES:
        sys.modules.pop(name, None)


def _write_plugins(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "my_thumb.py").write_text(RECOGNIZER_PLUGIN)
    (folder / "my_blur.py").write_text(RESTORER_PLUGIN)
    return folder


def _env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in [env.get("PYTHONPATH")] if p]])
    return env


def _launcher(tmp_path: Path) -> Path:
    """A script like the ``restorever`` console script: its own folder, not the current one, is on sys.path."""
    script = tmp_path / "bin" / "rv.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text("from restorever.cli import main\nmain()\n")
    return script


def _eval_args(lfw_root: Path, out: Path, cache: Path) -> list[str]:
    return ["eval", "--plugin", "my_thumb", "--plugin", "my_blur", "--protocol", "lfw", "--data-root", str(lfw_root),
            "--limit-pairs", "6", "--recognizer", "thumb-net", "--restorer", "none,box-blur", "--scales", "8",
            "--cache-dir", str(cache), "--out", str(out), "--examples", "0", "--device", "cpu", "-q"]


def _cache_kinds(record: dict) -> tuple[int, int]:
    return record["cache"]["hits"], record["cache"]["misses"]


def test_eval_with_plugins_from_the_command_line(lfw_root, tmp_path):
    """``restorever eval --plugin`` runs a user's recognizer and restorer (it said "unknown recognizer" before:
    the registration of a Python session does not reach the command's process). The plugin module sits in the
    current folder, which the console script does not put on sys.path. results.json names each plugin module and
    its file's sha256; a changed plugin file computes its embeddings again (the cache knew models by name and weight
    files only), and validate checks the run without the plugin, with a note."""
    work = _write_plugins(tmp_path / "work")
    script, out, cache = _launcher(tmp_path), tmp_path / "run", tmp_path / "cache"
    run = subprocess.run([sys.executable, str(script), *_eval_args(lfw_root, out, cache)], cwd=work, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((out / "results.json").read_text())
    identity = record["cache"]["identity"]
    thumb_sha = hashlib.sha256((work / "my_thumb.py").read_bytes()).hexdigest()
    assert identity["recognizer"]["plugin"] == {"module": "my_thumb", "sha256": thumb_sha}
    assert identity["restorers"]["box-blur"]["plugin"]["module"] == "my_blur"
    assert "plugin" not in identity["restorers"]["none"]  # built-ins keep the keys they always had
    cos = {(c["restorer"], c["scale"]): c["identity"]["cosine_to_clean_mean"] for c in record["conditions"]}
    assert cos[("box-blur", 8)] != cos[("none", 8)]  # the blur ran between degradation and the plugin recognizer
    n_landmarks = len(list((cache / "landmarks").rglob("*.npz")))
    n_restored = len(list((cache / "restored").rglob("*.npz")))
    n_embeddings = len(list((cache / "embedding").rglob("*.npz")))
    assert _cache_kinds(record) == (0, n_landmarks + n_restored + n_embeddings)

    # the same name, another network: the embeddings are computed again, landmarks and restored faces reused
    (work / "my_thumb.py").write_text(RECOGNIZER_PLUGIN.replace("SEED = 0", "SEED = 1"))
    out2 = tmp_path / "run2"
    run = subprocess.run([sys.executable, str(script), *_eval_args(lfw_root, out2, cache)], cwd=work, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    second = json.loads((out2 / "results.json").read_text())
    assert _cache_kinds(second) == (n_landmarks + n_restored, n_embeddings)
    assert second["cache"]["identity"]["recognizer"]["plugin"]["sha256"] != thumb_sha

    # validate needs no plugin (the keys come from the record); loaded and changed, it says so
    check = subprocess.run([sys.executable, str(script), "validate", str(out)], cwd=tmp_path, env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{n_embeddings} cache entries" in check.stdout  # its own, found by the recorded plugin file
    assert "recognizer thumb-net came from plugin my_thumb" in check.stdout and "not loaded here" in check.stdout
    check = subprocess.run([sys.executable, str(script), "validate", str(out), "--plugin", "my_thumb"], cwd=work,
                           env=_env(), capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "plugin my_thumb has changed since the run" in check.stdout
    check = subprocess.run([sys.executable, str(script), "validate", str(out2), "--plugin", "my_thumb"], cwd=work,
                           env=_env(), capture_output=True, text=True, timeout=600)
    assert check.returncode == 0 and "has changed since the run" not in check.stdout, check.stdout  # its own file


def test_torchrun_ranks_load_the_plugin(lfw_root, tmp_path):
    """Every torchrun rank parses the same argv, so each registers the plugin: the two-process run scores what the
    single process scores (to float rounding: the plugin's matmul runs over other batches)."""
    work = _write_plugins(tmp_path / "work")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    single = subprocess.run([sys.executable, "-m", "restorever", *_eval_args(lfw_root, tmp_path / "one",
                                                                             tmp_path / "c1")],
                            cwd=work, env=_env(), capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                          "127.0.0.1", "--master-port", str(port), "-m", "restorever",
                          *_eval_args(lfw_root, tmp_path / "two", tmp_path / "c2")],
                         cwd=work, env=_env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    one, both = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert both["distributed"]["world_size"] == 2
    assert [c["scores"]["same"] for c in both["conditions"]] == [c["scores"]["same"] for c in one["conditions"]]
    for a, b in zip(both["conditions"], one["conditions"]):  # a matmul over other batches: float rounding only
        assert (a["restorer"], a["scale"]) == (b["restorer"], b["scale"])
        np.testing.assert_allclose(a["scores"]["score"], b["scores"]["score"], rtol=1e-5, atol=1e-6)


def test_restore_with_a_plugin_restorer(tmp_path, registries):
    """``restorever restore --plugin my_blur.py --restorer box-blur`` on an aligned 512 crop writes the 3x3 box blur
    of its pixels (to 8-bit rounding), and restore.json records the plugin file."""
    work = _write_plugins(tmp_path / "work")
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    Image.fromarray(face).save(tmp_path / "face.png")
    result = CliRunner().invoke(cli, ["restore", str(tmp_path / "face.png"), "--plugin", str(work / "my_blur.py"),
                                      "--restorer", "box-blur", "--aligned", "--out", str(tmp_path / "out"),
                                      "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    restored = np.asarray(Image.open(tmp_path / "out" / "face.png").convert("RGB")).astype(np.float64)
    x = torch.from_numpy(face).permute(2, 0, 1)[None].double() / 255
    want = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)[0]
    want = want.permute(1, 2, 0).numpy() * 255
    assert np.abs(restored - want).max() <= 0.5 + 1e-6
    record = json.loads((tmp_path / "out" / "restore.json").read_text())
    blur_sha = hashlib.sha256((work / "my_blur.py").read_bytes()).hexdigest()
    assert record["settings"]["plugin"] == {"sha256": blur_sha}  # compared: the file, not the name it came by
    assert record["plugin_module"] == "my_blur"


def test_listing_errors_and_collisions(tmp_path, registries, monkeypatch):
    """The listing says where a plugin's model comes from; a misspelt module, a file of no kind, a name taken by a
    built-in and a .py file whose name another module holds are one-line usage errors naming the fix."""
    work = _write_plugins(tmp_path / "work")
    (work / "takes_dlib.py").write_text(RECOGNIZER_PLUGIN.replace('CARDS = {"thumb-net"', 'CARDS = {"dlib"'))
    (work / "no_kind.py").write_text("CARDS = {'x': None}\ndef create(name):\n    return None\n")
    (work / "json.py").write_text(RESTORER_PLUGIN)
    monkeypatch.chdir(work)
    runner = CliRunner()
    listed = runner.invoke(cli, ["recognizers", "--plugin", "my_thumb"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("thumb-net "))
    assert lines[at + 1].split() == ["from:", "plugin", "my_thumb", f"({work / 'my_thumb.py'})"]
    assert not any("from: plugin" in line for line in lines[:at])  # the built-ins say nothing
    assert runner.invoke(cli, ["weights", "path", "thumb-net", "--plugin", "my_thumb"]).output.strip() == \
        "thumb-net takes no weight files"
    cases = {"my_thumbb": "plugin 'my_thumbb' cannot be imported (No module named 'my_thumbb')",
             "takes_dlib": "'takes_dlib' names dlib, already registered by restorever.recognizers.dlib: give your "
                           "models other names",
             "no_kind": "holds no Restorer or Recognizer class: set KIND = 'restorer' or KIND = 'recognizer'",
             str(work / "json.py"): "the name 'json' imports",
             "missing.py": "plugin file missing.py not found"}
    for spec, message in cases.items():
        result = runner.invoke(cli, ["restorers", "--plugin", spec])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), (spec, result.output)
    assert RECOGNIZERS.card("dlib").arch != "thumb"  # the refused plugin replaced nothing


def test_a_misspelt_plugin_gets_a_suggestion(tmp_path, registries, monkeypatch):
    """Round 18 left alone that a misspelt ``--plugin`` module got no "did you mean", where every registry name,
    option and weights name did. A dotted name is compared with the modules of its parent package (the current
    folder's for a top-level name), a ``.py`` path with the files beside it; a plugin that exists but imports a
    missing package is told no other name (its own import failed, not the user's spelling)."""
    work = _write_plugins(tmp_path / "work")
    (work / "lab").mkdir()
    (work / "lab" / "__init__.py").write_text("")
    (work / "lab" / "blur_net.py").write_text(RESTORER_PLUGIN)
    (work / "needs_more.py").write_text("import restorever_no_such_package_r19\n" + RESTORER_PLUGIN)
    monkeypatch.chdir(work)
    runner = CliRunner()
    cases = {"my_thum": "(No module named 'my_thum'); give the dotted name of a module on sys.path or in the current "
                        "folder, or the path of its .py file; did you mean my_thumb",
             "lab.blur_nte": "(No module named 'lab.blur_nte'); give the dotted name of a module on sys.path or in "
                             "the current folder, or the path of its .py file; did you mean lab.blur_net?",
             "my_blr.py": "plugin file my_blr.py not found: give a .py file that defines CARDS and create, or the "
                          "dotted name of an importable module; did you mean my_blur.py",
             "lab/blur_nt.py": "plugin file lab/blur_nt.py not found: give a .py file that defines CARDS and create, "
                               "or the dotted name of an importable module; did you mean lab/blur_net.py?"}
    for spec, message in cases.items():
        result = runner.invoke(cli, ["restorers", "--plugin", spec])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), (spec, result.output)
    result = runner.invoke(cli, ["restorers", "--plugin", "needs_more"])
    assert result.exit_code == 2 and "No module named 'restorever_no_such_package_r19'" in result.output
    assert "did you mean" not in result.output, result.output
    ok = runner.invoke(cli, ["restorers", "--plugin", "lab.blur_net"])  # the suggested name is the module
    assert ok.exit_code == 0 and "box-blur" in ok.output, ok.output


def _dist(site: Path, name: str, version: str, group: str, points: dict[str, str]) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    body = "".join(f"{k} = {v}\n" for k, v in points.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{body}")


def test_installed_packages_declare_plugins(tmp_path, registries, monkeypatch, caplog):
    """An installed package's entry point (group restorever.recognizers) makes its names work with no flag; it is
    imported only when a name is not found or the names are listed; a broken plugin and one naming a built-in are
    one warning each naming the package, and the listing still works (exit status 0)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "ep_thumb.py").write_text(RECOGNIZER_PLUGIN.replace('"thumb-net"', '"ep-thumb"'))
    (site / "ep_broken.py").write_text("raise RuntimeError('no GPU driver for my net')\n")
    (site / "ep_dlib.py").write_text(RECOGNIZER_PLUGIN.replace('CARDS = {"thumb-net"', 'CARDS = {"dlib"'))
    _dist(site, "thumbpkg", "1.2", "restorever.recognizers", {"thumbs": "ep_thumb"})
    _dist(site, "brokenpkg", "0.1", "restorever.recognizers", {"broken": "ep_broken", "odd": "ep_thumb:create"})
    _dist(site, "dlibpkg", "3.0", "restorever.recognizers", {"mine": "ep_dlib"})
    monkeypatch.syspath_prepend(str(site))
    RECOGNIZERS._entry_points_read = False
    assert RECOGNIZERS.card("dlib").arch  # a built-in name reads no entry point
    assert "ep_thumb" not in sys.modules and not RECOGNIZERS._entry_points_read
    with caplog.at_level("WARNING", logger="restorever._registry"):
        assert RECOGNIZERS.card("ep-thumb").arch == "thumb"  # not found: the entry points are read
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3, warnings
    assert any(w.startswith("package brokenpkg 0.1: recognizer plugin 'ep_broken' (package brokenpkg) failed while "
                            "it was imported (RuntimeError: no GPU driver for my net)") for w in warnings)
    assert any(w.startswith("package brokenpkg 0.1: its entry point odd = ep_thumb:create names an attribute")
               for w in warnings)
    assert any(w.startswith("package dlibpkg 3.0: recognizer plugin 'ep_dlib' (package dlibpkg) names dlib")
               and w.endswith("its recognizer plugin mine is skipped (fix or uninstall the package)") for w in warnings)
    assert RECOGNIZERS.origin("ep-thumb") == {"module": "ep_thumb", "file": str(site / "ep_thumb.py"),
                                              "sha256": RECOGNIZERS.origin("ep-thumb")["sha256"],
                                              "package": "thumbpkg", "version": "1.2"}
    listed = CliRunner().invoke(cli, ["recognizers"])
    assert listed.exit_code == 0, listed.output
    assert f"from: plugin ep_thumb ({site / 'ep_thumb.py'}, package thumbpkg 1.2)" in listed.output
    from restorever.pipeline.plugins import plugin_of

    assert plugin_of("recognizer", "ep-thumb")["version"] == "1.2"  # a new release is a new cache key
    assert plugin_of("recognizer", "dlib") is None


def test_the_same_plugin_file_keeps_its_cache_however_it_is_loaded(lfw_root, tmp_path):
    """A plugin file counts by its content: ``--plugin lab.my_thumb`` and ``--plugin lab/my_thumb.py`` import the
    same file as ``lab.my_thumb`` and as ``my_thumb``. The dotted name was part of every cache key, so the second
    form recomputed every restored face and embedding of an unchanged plugin (and restore refused to resume)."""
    work = tmp_path / "work"
    _write_plugins(work / "lab")
    (work / "lab" / "__init__.py").write_text("")
    script, cache = _launcher(tmp_path), tmp_path / "cache"
    records = []
    for n, specs in enumerate([("lab.my_thumb", "lab.my_blur"), ("lab/my_thumb.py", "lab/my_blur.py")]):
        args = _eval_args(lfw_root, tmp_path / f"run{n}", cache)
        for old, new in zip(("my_thumb", "my_blur"), specs):
            args[args.index(old)] = new
        run = subprocess.run([sys.executable, str(script), *args], cwd=work, env=_env(), capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        records.append(json.loads((tmp_path / f"run{n}" / "results.json").read_text()))
    first, second = (r["cache"]["identity"]["recognizer"]["plugin"] for r in records)
    assert (first["module"], second["module"]) == ("lab.my_thumb", "my_thumb")  # the record names it as loaded
    assert first["sha256"] == second["sha256"]
    hits, misses = _cache_kinds(records[0])
    assert hits == 0 and misses > 0
    assert _cache_kinds(records[1])[1] == 0  # nothing computed again (it recomputed 30 of 42 entries before)
    assert [c["scores"]["score"] for c in records[1]["conditions"]] == \
        [c["scores"]["score"] for c in records[0]["conditions"]]


def test_an_entry_point_module_has_one_origin_however_it_is_loaded(tmp_path, registries, monkeypatch):
    """The package behind a plugin is part of its cache keys, so it must not depend on how the module was
    registered: a package installed in editable mode lists no module files, and only its entry point named the
    package; ``--plugin ep_thumb`` of the same module gave no package, hence other keys than the entry point."""
    from restorever.pipeline.plugins import load_plugin, plugin_of

    site = tmp_path / "site"
    site.mkdir()
    (site / "ep_thumb.py").write_text(RECOGNIZER_PLUGIN.replace('"thumb-net"', '"ep-thumb"'))
    _dist(site, "thumbpkg", "1.2", "restorever.recognizers", {"thumbs": "ep_thumb"})
    monkeypatch.syspath_prepend(str(site))
    RECOGNIZERS._entry_points_read = True  # as after a --plugin run that never needed the entry points
    assert load_plugin("ep_thumb") == [("recognizer", "ep_thumb", ["ep-thumb"])]
    sha = hashlib.sha256((site / "ep_thumb.py").read_bytes()).hexdigest()
    assert plugin_of("recognizer", "ep-thumb") == {"module": "ep_thumb", "sha256": sha, "package": "thumbpkg",
                                                   "version": "1.2"}


def test_cache_keys_read_a_plugin_by_its_file_and_package():
    """keyed_part: the dotted name drops out of the keys, the file's sha256 and the package version stay in, and a
    built-in model's part (no plugin) is the very object, so its keys cannot change."""
    from restorever.pipeline.identity import RunIdentity, keyed_part

    def identity(plugin):
        return RunIdentity.from_files(detector="mtcnn", recognizer_name="thumb-net", recognizer_files={},
                                      flip_test=False, restorer_files={"none": {}}, restorer_options={},
                                      degradation="difface-test", seed=0, device="cpu",
                                      plugins={"recognizer": plugin})

    def key(plugin):
        return identity(plugin).embedding_key("ab" * 32, [[1.0, 2.0]] * 5, "none", 8, item="x")

    base = {"module": "lab.my_thumb", "sha256": "1" * 64, "package": "lab", "version": "1.0"}
    assert key(base) == key({**base, "module": "my_thumb"})
    assert key(base) != key({**base, "sha256": "2" * 64})
    assert key(base) != key({**base, "version": "1.1"})
    assert key(base) != key(None)
    builtin = identity(None).recognizer
    assert keyed_part(builtin) is builtin


def test_a_plugin_restorers_file_is_in_its_keys(tmp_path, registries):
    """plugins_of gives a plugin restorer its file's sha256 (built-ins None), and the restored and degraded
    embedding keys of that restorer change with the file's sha256 while the other restorers' keys and the clean key
    do not: an edited plugin restorer is recomputed, not served from the old file's entries."""
    from restorever.pipeline.identity import RunIdentity, plugins_of
    from restorever.pipeline.plugins import load_plugin

    work = _write_plugins(tmp_path)
    load_plugin(str(work / "my_blur.py"))
    plugins = plugins_of("dlib", ["none", "box-blur"])
    sha = hashlib.sha256((work / "my_blur.py").read_bytes()).hexdigest()
    assert plugins == {"recognizer": None, "restorers": {"none": None, "box-blur": {"module": "my_blur",
                                                                                     "sha256": sha}}}

    def identity(blur):
        return RunIdentity.from_files(detector="mtcnn", recognizer_name="dlib", recognizer_files={}, flip_test=False,
                                      restorer_files={"none": {}, "box-blur": {}}, restorer_options={},
                                      degradation="difface-test", seed=0, device="cpu",
                                      plugins={"recognizer": None, "restorers": {"none": None, "box-blur": blur}})

    run, edited = identity(plugins["restorers"]["box-blur"]), identity({"module": "my_blur", "sha256": "0" * 64})
    lms, sha_img = [[1.0, 2.0], [3.0, 2.0], [2.0, 3.0], [1.0, 4.0], [3.0, 4.0]], "ab" * 32
    for key in ("restored_key", "embedding_key"):
        assert getattr(run, key)(sha_img, lms, "box-blur", 8, "x") != getattr(edited, key)(sha_img, lms, "box-blur",
                                                                                            8, "x")
        assert getattr(run, key)(sha_img, lms, "none", 8, "x") == getattr(edited, key)(sha_img, lms, "none", 8, "x")
    assert run.embedding_key(sha_img, lms, "none", None) == edited.embedding_key(sha_img, lms, "none", None)

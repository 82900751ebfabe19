"""Round 22, seventeenth mutation pass: tests that kill the mutants of the plumbing modules (the results schema's
wording, plugins, the cache folder, progress lines, figure style, the library's own-model checks, the insightface
attribute model and the compile option) that no earlier test noticed (docs/reliability.md, "Round 22: mutation
testing, seventeenth pass")."""
from __future__ import annotations

import types

import pytest

from restorever.pipeline.plugins import plugin_kinds
from restorever.recognizers.base import Recognizer
from restorever.restorers.base import Restorer


# --- pipeline/record_schema.py -----------------------------------------------------------------------------------

def test_a_long_value_is_quoted_shortened_to_60_characters_and_the_pattern_given_bare():
    """A value that breaks a pattern is quoted by its repr, whole up to 60 characters and cut to 57 plus "..."
    beyond (a hostile file's megabyte string is not copied into every message), followed by the pattern itself."""
    pytest.importorskip("jsonschema")
    from restorever.pipeline.record_schema import load_schema, schema_problems

    pattern = load_schema()["properties"]["created"]["pattern"]
    schema = {"type": "object", "properties": {"created": {"type": "string", "pattern": pattern}}}
    fits = "x" * 58  # its repr, with the two quotes, is 60 characters
    assert schema_problems({"created": fits}, schema) == [f"created: {fits!r} does not match {pattern}"]
    longer = "x" * 59
    assert schema_problems({"created": longer}, schema) == [f"created: '{'x' * 56}... does not match {pattern}"]


def test_load_schema_reads_the_results_schema_by_default():
    pytest.importorskip("jsonschema")
    from restorever.pipeline.record_schema import load_schema

    schema = load_schema()
    assert schema == load_schema("results") != load_schema("ident-results")
    assert "condition" in schema["$defs"] and "conditions" in schema["required"]


# --- pipeline/plugins.py -----------------------------------------------------------------------------------------

def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    vars(mod).update(attrs)
    return mod


def test_a_plugin_with_both_kinds_of_class_is_told_the_whole_fix():
    """The message to a module holding a Restorer and a Recognizer class names both fixes, to its last words."""
    mod = _module("two_classes", CARDS={}, A=type("A", (Restorer,), {}), B=type("B", (Recognizer,), {}))
    with pytest.raises(TypeError) as caught:
        plugin_kinds(mod, "two_classes")
    text = str(caught.value)
    assert "holds both Restorer and Recognizer classes: set KIND = 'restorer' or KIND = 'recognizer' in it" in text
    assert text.endswith("RECOGNIZER_CARDS (its recognizers'), with one create(name) for all")
    none = _module("no_classes", CARDS={})
    with pytest.raises(TypeError) as caught:
        plugin_kinds(none, "no_classes")
    assert str(caught.value).endswith("holds no Restorer or Recognizer class: set KIND = 'restorer' or KIND = "
                                      "'recognizer' in it")


# --- cache_dir.py --------------------------------------------------------------------------------------------------

def test_the_cache_folder_and_the_setting_that_chose_it(tmp_path, monkeypatch):
    """``cache_dir=`` first, then ``$RESTOREVER_HOME``, then ``$XDG_CACHE_HOME/restorever``, then
    ``~/.cache/restorever``; the message names the setting that won."""
    from restorever.cache_dir import cache_dir_origin, get_cache_dir

    monkeypatch.delenv("RESTOREVER_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_cache_dir() == tmp_path / "home" / ".cache" / "restorever"
    assert cache_dir_origin() == "the default ~/.cache/restorever (RESTOREVER_HOME and XDG_CACHE_HOME are not set)"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert get_cache_dir() == tmp_path / "xdg" / "restorever"
    assert cache_dir_origin() == f"XDG_CACHE_HOME={tmp_path / 'xdg'}"
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "rv"))
    assert get_cache_dir() == tmp_path / "rv"
    assert cache_dir_origin() == f"RESTOREVER_HOME={tmp_path / 'rv'}"
    assert get_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache_dir_origin(tmp_path / "arg") == "the cache_dir argument"


def test_a_file_in_the_weights_cache_is_named_by_its_backend_folder(tmp_path, monkeypatch):
    from restorever.cache_dir import weights_cache_name

    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "rv"))
    weights = tmp_path / "rv" / "weights"
    assert weights_cache_name(weights / "gfpgan-v1.4" / "GFPGANv1.4.pth") == "gfpgan-v1.4"
    assert weights_cache_name(weights / "difface" / "sub" / "unet.pth") == "difface"
    assert weights_cache_name(weights / "loose.pth") is None  # not in a backend's folder
    assert weights_cache_name(tmp_path / "elsewhere" / "weights" / "gfpgan-v1.4" / "GFPGANv1.4.pth") is None


# --- progress.py ---------------------------------------------------------------------------------------------------

class _NoIsatty:
    """A stream that cannot say whether it is a terminal (some wrappers): taken for a log."""

    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


class _Terminal(_NoIsatty):
    def isatty(self):
        return True


def test_a_bar_is_enabled_by_default(monkeypatch):
    """``progress_bar`` and ``progress_shown`` without ``enabled``: shown (tqdm's ``disable=None``) at the default
    logging level; ``enabled=False`` hides it."""
    import logging
    import sys

    from restorever import progress

    logger = logging.getLogger("restorever")
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        assert progress.progress_shown() is None and progress.progress_shown(False) is True
    finally:
        logger.setLevel(before)

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress.progress_bar(range(3), 3, "faces")) == [0, 1, 2]
    assert "faces:" in terminal.text and "0/3" in terminal.text  # drawn, then cleared (leave=False)


def test_a_stream_without_isatty_gets_whole_lines(monkeypatch):
    """A stream that cannot say whether it is a terminal is treated as a log: whole lines, no carriage return."""
    import sys

    from restorever import progress

    stream = _NoIsatty()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    assert list(progress.progress_bar(range(2), 2, "faces", True)) == [0, 1]
    assert "\r" not in stream.text
    assert [ln.split(" (")[0] for ln in stream.text.splitlines()] == [f"faces: {i}/2 batch" for i in range(3)]


def test_a_log_gets_the_final_line_when_the_last_steps_came_sooner_than_the_interval(monkeypatch):
    """A stage longer than the interval whose last steps follow a line within the interval: closing the bar writes
    the final count, so a log shows the stage finished (the bar is left, not cleared)."""
    import io
    import sys
    import time

    from restorever import progress

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.5)
    for i in progress.progress_bar(range(3), 3, "faces", True):
        if i == 0:
            time.sleep(0.7)  # step 1 is written, past the delay; steps 2 and 3 follow at once
    lines = log.getvalue().splitlines()
    assert lines and lines[-1].startswith("faces: 3/3 batch (100 %)"), lines


# --- attributes/insightface.py -------------------------------------------------------------------------------------

def test_the_onnx_session_is_asked_for_the_cpu_provider_unless_others_are_given(tmp_path, monkeypatch):
    """Since onnxruntime 1.9 a build with several providers (onnxruntime-gpu) refuses a session whose providers are
    not named: the model names the CPU provider when the caller names none, and passes the caller's list on."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from restorever.attributes.insightface import CARDS, InsightFaceGenderAge

    from .attributes.test_insightface import _model

    asked = []
    real = ort.InferenceSession

    def session(path, options=None, providers=None, **kwargs):
        asked.append(providers)
        return real(path, options, providers=providers, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", session)
    path = _model(tmp_path / "genderage.onnx")
    card = CARDS["insightface-genderage"]
    assert InsightFaceGenderAge(card, path).session.get_providers() == ["CPUExecutionProvider"]
    InsightFaceGenderAge(card, path, providers=["CPUExecutionProvider"])
    assert asked == [["CPUExecutionProvider"], ["CPUExecutionProvider"]]


# --- reports/figure_style.py ---------------------------------------------------------------------------------------

def test_the_strongest_scale_is_45_percent_lighter_however_many_scales():
    """Full colour for the mildest scale, 45 % lighter for the strongest, evenly between: with two scales the
    second is the strongest."""
    from restorever.reports.figure_style import scale_style

    assert scale_style(8, [8, 16]) == ("-", 0.0)
    assert scale_style(16, [16, 8]) == ("--", pytest.approx(0.45))
    assert [scale_style(s, [4, 8, 16])[1] for s in (4, 8, 16)] == pytest.approx([0.0, 0.225, 0.45])
    assert scale_style(None, [8, 16]) == scale_style(32, [8, 16]) == ("-", 0.0)
    assert scale_style(8, [8]) == ("-", 0.0)


def test_every_marker_is_a_matplotlib_marker_and_each_restorer_has_its_own():
    from matplotlib.markers import MarkerStyle

    from restorever.reports import figure_style as fs

    markers = [*fs.RESTORER_MARKERS.values(), *fs._EXTRA_MARKERS, fs.CLEAN_MARKER]
    for marker in markers:
        MarkerStyle(marker)  # raises ValueError for an unknown marker
    assert len(set(markers)) == len(markers)


# --- acceleration.py -----------------------------------------------------------------------------------------------

def test_a_compiled_module_compiles_once_per_input_shape():
    """``compile_module`` compiles static shapes: a second batch size is a second graph, the first size again none;
    the compiled function gives the module's values and keeps its parameters."""
    import torch
    from torch._dynamo.testing import CompileCounter

    from restorever.acceleration import compile_module

    torch._dynamo.reset()
    counter = CompileCounter()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    run = compile_module(net, backend=counter)
    for batch in (2, 3, 2, 3):
        x = torch.rand(batch, 3, 8, 8)
        assert torch.allclose(run(x), net(x))
    assert counter.frame_count == 2
    assert not isinstance(run, torch.nn.Module)
    torch._dynamo.reset()

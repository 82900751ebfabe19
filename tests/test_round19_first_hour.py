"""Round 19: a new user's first hour from a plain install, README.md and docs/api.md followed verbatim."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FACES, REPO

PAIRS = ("madonna/madonna_0001.jpg,madonna/madonna_0002.jpg,1\n"
         "madonna/madonna_0001.jpg,elton_john/elton_john_0001.jpg,0\n"
         "elton_john/elton_john_0001.jpg,elton_john/elton_john_0002.jpg,1\n"
         "madonna/madonna_0003.jpg,elton_john/elton_john_0003.jpg,0\n")


def _cli(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """``restorever ARGS`` in a fresh process from ``cwd`` (this checkout's package, offline, its own cache)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RESTOREVER_HOME": str(tmp_path / "home"), "RESTOREVER_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "restorever", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _module_blocks() -> dict[str, str]:
    """docs/api.md's python blocks that present a file of their own (first line ``# NAME.py...``), by file name."""
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        match = re.match(r"# (\w+\.py)\b", block)
        if match:
            blocks[match.group(1)] = block
    return blocks


def test_api_md_plugin_modules_work_as_files_of_their_own(tmp_path):
    """api.md's `my_models.py` used `crop_to_template` and `net` from the blocks before it: saved as the file it says
    it is, `restorever recognizers --plugin my_models` listed my-net and `eval --plugin my_models --recognizer
    my-net` stopped with "unexpected NameError: name 'net' is not defined". (The in-order test of api.md runs every
    block in one namespace, which hid it.) Each such block is now saved alone and run through the command line."""
    blocks = _module_blocks()
    assert {"my_models.py", "lab_models.py"} <= set(blocks), sorted(blocks)
    for name, code in blocks.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    (tmp_path / "pairs.csv").write_text(PAIRS, encoding="utf-8")
    runs = {"my_models": ["--recognizer", "my-net", "--restorer", "none"],
            "lab_models": ["--recognizer", "lab-id", "--restorer", "none,lab-sr"]}
    for module, models in runs.items():
        out = tmp_path / f"run-{module}"
        result = _cli(["eval", "--plugin", module, *models, "--protocol", "pairs-csv", "--pairs", "pairs.csv",
                       "--data-root", str(FACES), "--scales", "8", "--device", "cpu", "--out", str(out)],
                      tmp_path, tmp_path)
        assert result.returncode == 0, (module, result.stderr[-2000:])
        record = json.loads((out / "results.json").read_text())
        restorers = {c["restorer"] for c in record["conditions"] if c["scale"] is not None}
        assert restorers == set(models[3].split(","))
        assert record["config"]["recognizer"] == models[1]
        assert all(len(c["scores"]["score"]) == 4 for c in record["conditions"])


def test_an_error_in_the_users_plugin_names_its_file_and_line_not_a_restorever_bug(tmp_path):
    """A NameError in a plugin's `create` was "unexpected NameError: ... (rerun with -vv for the traceback, and please
    report it)": the user was sent to report restorever's bug for a line of their own file. The innermost frame's
    file and line are named now when that file is the user's (not restorever, not an installed package)."""
    (tmp_path / "pairs.csv").write_text(PAIRS, encoding="utf-8")
    (tmp_path / "broken_models.py").write_text(
        "from restorever.hub import ModelCard\n"
        "from restorever.recognizers.base import Recognizer\n\n"
        "CARDS = {'broken-net': ModelCard(name='broken-net', arch='x', description='raises in create')}\n\n"
        "class Broken(Recognizer):\n"
        "    embedding_dim = 4\n\n"
        "def create(name, *, weights=None, device='cpu'):\n"
        "    return Broken(CARDS[name], undefined_net)\n", encoding="utf-8")
    result = _cli(["eval", "--plugin", "broken_models", "--recognizer", "broken-net", "--protocol", "pairs-csv",
                   "--pairs", "pairs.csv", "--data-root", str(FACES), "--device", "cpu", "--out", "run"],
                  tmp_path, tmp_path)
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "NameError: name 'undefined_net' is not defined" in line
    assert f"raised in {tmp_path / 'broken_models.py'}:10: your code" in line, line
    assert "please report" not in line


def test_an_unexpected_error_inside_restorever_is_still_a_bug_to_report():
    from restorever.cli import _user_code_frame, cli_flag

    with pytest.raises(AttributeError) as info:
        cli_flag(None)  # None.replace, inside restorever/cli/__init__.py
    assert _user_code_frame(info.value) is None

    def boom():
        raise ZeroDivisionError("in this test file, outside restorever and the installed packages")

    with pytest.raises(ZeroDivisionError) as info:
        boom()
    assert _user_code_frame(info.value) == f"{__file__}:{boom.__code__.co_firstlineno + 1}"


def test_a_missing_pairs_file_given_with_dotdot_is_not_found_not_an_escape(tmp_path, monkeypatch):
    """`--pairs ../lists/pairs.csv` (meant from the current folder, with a typo or run from another folder) said
    "pairs file '../lists/pairs.csv' contains '..' and would escape the data root": a security refusal for what is a
    missing file. It is "not found" now, naming the current folder; an existing `../x.csv` is still read."""
    from restorever.errors import DataNotFoundError
    from restorever.protocol import load_protocol

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(DataNotFoundError, match=r"^\.\./lists/pairs\.csv: pairs file not found \(looked in the "
                                                r"current folder, .*work; a name with '\.\.' is not looked for in "
                                                r"the data root"):
        load_protocol("pairs-csv", data_root=FACES, pairs="../lists/pairs.csv")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "pairs.csv").write_text(PAIRS, encoding="utf-8")
    protocol = load_protocol("pairs-csv", data_root=FACES, pairs="../lists/pairs.csv")
    assert list(protocol.pairs.same) == [1, 0, 1, 0]


def test_a_limit_pairs_run_says_it_is_a_subset_in_results_md_and_the_report(tmp_path):
    """`eval --protocol lfw --limit-pairs 40` wrote "pairs evaluated: 40 of 40 in 10 folds" in results.md and "40
    pairs in 10 folds" in report.md: read beside the README's LFW figures, the first screen of a 40-pair try looked
    like the whole protocol. Only methods.md said "40 of the protocol's pairs". Both now name the subset; a run of
    every pair is unchanged."""
    (tmp_path / "pairs.csv").write_text(PAIRS, encoding="utf-8")
    common = ["--protocol", "pairs-csv", "--pairs", "pairs.csv", "--data-root", str(FACES), "--recognizer", "dlib",
              "--device", "cpu"]
    for out, extra in (("part", ["--limit-pairs", "2"]), ("all", [])):
        assert _cli(["eval", *common, *extra, "--out", out], tmp_path, tmp_path).returncode == 0
        assert _cli(["report", out], tmp_path, tmp_path).returncode == 0
    note = "(a subset: --limit-pairs 2, dealt over folds and same/different in file order)"
    part_md = (tmp_path / "part" / "results.md").read_text()
    assert f"- pairs evaluated: 2 of 2 {note} in 1 fold; " in part_md  # was "1 folds"
    assert f"\n2 pairs {note} in 1 fold, recognizer dlib" in (tmp_path / "part" / "report.md").read_text()
    all_md = (tmp_path / "all" / "results.md").read_text()
    assert "- pairs evaluated: 4 of 4 in 2 folds; " in all_md and "subset" not in all_md
    assert "\n4 pairs in 2 folds, recognizer dlib" in (tmp_path / "all" / "report.md").read_text()

"""The command line as a tool people script (round 18): the same -v/-q on every command, before or after its name;
no progress-bar output when stderr is not a terminal; exit statuses a script can rely on (2 input, 1 unexpected,
130 interrupted, 141 stdout closed); a suggestion for a mistyped name wherever one is looked up."""
from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from restorever.cli import cli

from .signals import run_signalled

REPO = Path(__file__).resolve().parent.parent


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def _leaf_commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in group.commands.items():
        out.append((*path, name))
        if isinstance(command, click.Group):
            out += _leaf_commands(command, (*path, name))
    return out


@pytest.mark.parametrize("path", _leaf_commands(), ids=" ".join)
def test_every_command_takes_v_and_q_after_its_name(path):
    """`restorever eval ... -v` was "No such option: -v": the flag existed only before the command name."""
    for flag in ("-v", "-vv", "--verbose", "-q", "--quiet"):
        result = _invoke(*path, flag, "--help")
        assert result.exit_code == 0, (path, flag, result.output)
    assert "-q, --quiet" in _invoke(*path, "--help").output


def test_v_and_q_contradict():
    result = _invoke("-q", "degradations", "-v")
    assert result.exit_code == 2 and "contradict" in result.output


def test_vv_after_the_command_shows_the_traceback_of_an_input_error(tmp_path):
    def run(*flags):
        return subprocess.run([sys.executable, "-m", "restorever", "report", str(tmp_path), *flags], env=_env(),
                              capture_output=True, text=True, timeout=120)

    last = f"error: {tmp_path}/results.json: no results file (did the run finish?)"
    debug = run("-vv")
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr and "RestoreverError" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == last
    plain = run()
    assert plain.returncode == 2 and plain.stderr == last + "\n"


def test_the_log_level_is_given_back_after_the_command():
    before = logging.getLogger().level
    assert _invoke("degradations", "-q").exit_code == 0
    assert logging.getLogger().level == before


def _broken_degradations(monkeypatch):
    import restorever.degradation_params as params

    class Broken(dict):
        def items(self):  # raised from a frame in restorever's own file, as a real bug of the package is
            exec(compile("raise TypeError('a backend bug')", params.__file__, "exec"))

    monkeypatch.setattr(params, "PRESETS", Broken())


def test_an_unexpected_error_is_one_line_with_status_1(monkeypatch):
    """A bug (an exception no check anticipated) printed a Python traceback; now one line naming its type, exit
    status 1 (not 2: nothing the user gave is wrong), and -vv gives the traceback back."""
    _broken_degradations(monkeypatch)
    result = _invoke("degradations")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == ("error: unexpected TypeError: a backend bug (rerun with -vv for the traceback, "
                                     "and please report it)")
    debug = _invoke("degradations", "-vv")
    assert isinstance(debug.exception, TypeError)


def test_a_closed_stdout_ends_the_command_quietly():
    """`restorever restorers | head -1` printed "error: Broken pipe" and exited 2; now silent, status 141 (as a
    writer killed by SIGPIPE)."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "restorever", "degradations"], stdout=write_end,
                            stderr=subprocess.PIPE, env=_env(), text=True)
    os.close(write_end)
    os.close(read_end)  # before the child has imported click: its first write meets a pipe without a reader
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 141, stderr
    assert stderr == ""


def test_progress_bars_only_on_a_terminal(monkeypatch):
    """Bars of eval, ident, attributes fit, degrade, restore and downloads went to stderr whatever it was: a log
    file got hundreds of carriage-return lines. The one helper draws them only on a terminal, and not under -q."""
    from restorever.pipeline.stages import progress_bar
    from restorever.progress import progress_shown

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert list(progress_bar(range(3), 3, "landmarks", True)) == [0, 1, 2]
        assert ("landmarks" in stream.getvalue()) == shown, stream.getvalue()
    quiet_terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet_terminal)
    before = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # what -q sets
    try:
        assert progress_shown(True) is True
        list(progress_bar(range(3), 3, "landmarks", True))
    finally:
        logging.getLogger().setLevel(before)
    assert quiet_terminal.getvalue() == ""


def test_restore_writes_no_bar_into_a_log_and_takes_no_progress(faces_root, tmp_path):
    photo = faces_root / "madonna" / "madonna_0001.jpg"
    result = _invoke("restore", photo, "--restorer", "none", "--device", "cpu", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr and "image/s" not in result.stderr and result.stderr == ""
    again = _invoke("restore", photo, "--restorer", "none", "--device", "cpu", "--out", tmp_path / "o",
                    "--no-progress")
    assert again.exit_code == 0 and "kept 1 already restored" in again.stdout


def test_an_interrupted_report_claims_no_cache(monkeypatch, tmp_path):
    """Every command said "finished cache entries are kept; rerun the same command to resume", also report,
    compare or plot, which keep nothing; degrade and restore keep their own record, not cache entries."""
    import restorever.degradation_params as params

    class Interrupted(dict):
        def items(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(params, "PRESETS", Interrupted())
    result = _invoke("degradations")
    assert result.exit_code == 130 and result.stderr == "interrupted\n"
    from restorever.cli import _RESUME

    assert _RESUME["restore"] == (": the outputs finished are recorded in OUT/restore.json; rerun the same "
                                  "command to resume")


@pytest.mark.parametrize("args, expected", [
    (["weights", "path", "dlibb"], "unknown model 'dlibb'; did you mean dlib?"),
    (["validate", "--protocols", "lfww"], "lfww: no such file, nor a protocol of that name; did you mean lfw"),
    (["eval", "--restorer", "none,codeformer", "--restorer-option", "fidelity_wieght=0.5", "--dry-run"],
     "did you mean fidelity_weight? (their options: adain, fidelity_weight, precision, quantize_output)"),
    (["eval", "--recognizer", "arcface-r100-ms1mv3", "--recognizer-option", "precison=fp16", "--dry-run"],
     "takes no option(s) precison; did you mean precision?"),
], ids=["weights-name", "validate-protocol", "restorer-option", "recognizer-option"])
def test_a_mistyped_name_gets_a_suggestion(args, expected):
    result = _invoke(*args)
    assert result.exit_code == 2
    assert expected in result.output, result.output


def test_ctrl_c_mid_run_on_lfw_is_one_line_and_the_rerun_resumes(lfw_root, tmp_path):
    """A real SIGINT to a dlib run on 20 LFW pairs, stderr a pipe as in a batch job: status 130, exactly one line
    on stderr (no traceback, no progress-bar residue), no results.json; the landmarks and embeddings finished before
    the signal are used again, untouched, by the rerun, which finishes (under -q with nothing on stderr)."""
    out, cache = tmp_path / "run é", tmp_path / "cache"
    args = ["eval", "--data-root", lfw_root, "--limit-pairs", "20", "--scales", "8", "--batch-size", "4",
            "--device", "cpu", "--examples", "0", "--out", out, "--cache-dir", cache]
    proc = run_signalled(args, signal.SIGINT, 2, env=_env())
    stderr = proc.stderr
    assert proc.returncode == 130, stderr
    assert stderr == "interrupted: finished cache entries are kept; rerun the same command to resume\n"
    assert not (out / "results.json").exists()
    kept = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npz")}
    assert kept
    rerun = subprocess.run([sys.executable, "-m", "restorever", *map(str, args), "-q"], env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and rerun.stderr == "", rerun.stderr
    assert (out / "results.json").exists()
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # reused, not computed again
    assert len(list(cache.rglob("*.npz"))) > len(kept)


def test_every_option_says_what_it_does():
    """`restorever degrade --help` listed --protocol, --data-root, --pairs, --limit-pairs, --device and --batch-size
    with no word of help, `ident --help` thirteen options, `restore --help` --out and --seed; the options several
    commands share now take one text (cli.options.HELP)."""
    missing = []
    for path in _leaf_commands():
        command = cli
        for name in path:
            command = command.commands[name]
        missing += [f"{' '.join(path)} {p.opts[0]}" for p in command.params
                    if isinstance(p, click.Option) and not p.help]
    assert not missing, missing

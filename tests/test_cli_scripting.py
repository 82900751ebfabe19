"""The command line as a tool people script (round 18): the same -v/-q on every command, before or after its name;
no progress-bar output when stderr is not a terminal; exit statuses a script can rely on (2 input, 1 unexpected,
130 interrupted, 141 stdout closed); a suggestion for a mistyped name wherever one is looked up."""
from __future__ import annotations

import io
import logging
import sys

import pytest
from click.testing import CliRunner

from restorever.cli import cli


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


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

"""The command line as a tool people script (round 18): the same -v/-q on every command, before or after its name;
no progress-bar output when stderr is not a terminal; exit statuses a script can rely on (2 input, 1 unexpected,
130 interrupted, 141 stdout closed); a suggestion for a mistyped name wherever one is looked up."""
from __future__ import annotations

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

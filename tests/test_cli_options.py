"""Generic backend options: ``--restorer-option KEY=VALUE`` routed to the restorers whose card declares KEY."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.cli.options import parse_key_values
from restorever.pipeline.evaluate import route_restorer_options


def test_values_are_read_as_yaml_scalars():
    assert parse_key_values(["precision=bf16", "cuda-graph=true", "eta=0.25", "start_step=40", "x=null"]) == {
        "precision": "bf16", "cuda_graph": True, "eta": 0.25, "start_step": 40, "x": None}
    assert parse_key_values(["name=[1, 2]"]) == {"name": "[1, 2]"}  # scalars only: the text is kept
    with pytest.raises(click.BadParameter, match="not KEY=VALUE"):
        parse_key_values(["precision"])


def test_options_reach_only_the_restorers_whose_card_declares_them():
    routed = route_restorer_options(["none", "difface", "vqfr-v2"],
                                    {"precision": "bf16", "cuda_graph": True, "fidelity_ratio": 0.5})
    assert routed == {"none": {}, "difface": {"precision": "bf16", "cuda_graph": True},
                      "vqfr-v2": {"precision": "bf16", "fidelity_ratio": 0.5}}
    with pytest.raises(ValueError, match="cuda_graph apply to none of the restorers vqfr-v2"):
        route_restorer_options(["vqfr-v2"], {"cuda_graph": True})


def test_an_option_no_restorer_takes_is_one_line(tmp_path, faces_root):
    pairs = tmp_path / "p.csv"
    pairs.write_text("madonna/madonna_0001.jpg,madonna/madonna_0002.jpg,1\n"
                     "madonna/madonna_0001.jpg,elton_john/elton_john_0001.jpg,0\n")
    result = CliRunner().invoke(cli, ["eval", "--protocol", "pairs-csv", "--pairs", str(pairs),
                                      "--data-root", str(faces_root), "--restorer", "none",
                                      "--restorer-option", "cuda_graph=true", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cuda_graph" in lines[0] and "Traceback" not in result.output

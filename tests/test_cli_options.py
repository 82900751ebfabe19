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
    speed = route_restorer_options(["difface", "vqfr-v2"], {"channels_last": "true", "autocast_encoder": True,
                                                            "compile": "yes"})
    assert speed == {"difface": {"channels_last": True, "compile": True},
                     "vqfr-v2": {"channels_last": True, "autocast_encoder": True, "compile": True}}


def test_every_declared_option_is_a_parameter_of_the_backends_create():
    """A card may declare only what its ``create`` takes: an option the CLI accepts must reach the backend."""
    import inspect

    from restorever.restorers import REGISTRY, list_restorers, restorer_card

    for name in list_restorers():
        parameters = inspect.signature(REGISTRY.factory(name)).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        missing = set(restorer_card(name).default_kwargs) - set(parameters)
        assert not missing, f"{name}: card options {sorted(missing)} are not parameters of its create()"


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


def test_card_options_are_converted_and_checked():
    """The card's default gives the type, its OptionSpec the range and choices; text from a flag converts."""
    from restorever.hub import check_option
    from restorever.restorers import list_restorers, restorer_card

    difface, vqfr, gfpgan = restorer_card("difface"), restorer_card("vqfr-v2"), restorer_card("gfpgan-v1.4")
    assert check_option(difface, "steps", "50") == 50 and type(check_option(difface, "steps", 50.0)) is int
    assert check_option(vqfr, "fidelity_ratio", 1) == 1.0 and type(check_option(vqfr, "fidelity_ratio", 1)) is float
    assert check_option(difface, "cuda_graph", "yes") is True and check_option(difface, "cuda_graph", False) is False
    for card, key, value, message in [
            (difface, "steps", 1.5, "takes an integer"), (difface, "steps", True, "takes an integer"),
            (difface, "steps", 1, "at least 2"), (difface, "eta", "-0.1", "at least 0.0"),
            (vqfr, "fidelity_ratio", "high", "takes a number"), (gfpgan, "noise", "random", "one of seeded, stored"),
            (difface, "cuda_graph", "maybe", "true or false"), (gfpgan, "precision", "fp8", "one of auto")]:
        with pytest.raises(ValueError, match=message):
            check_option(card, key, value)
    for name in list_restorers():  # every declared spec describes an option the card has
        card = restorer_card(name)
        assert set(card.option_specs) <= set(card.default_kwargs), name
        assert all(check_option(card, k, v) == v for k, v in card.default_kwargs.items()), name


def test_shortcut_flags_are_restorer_options(tmp_path, faces_root):
    """``--vqfr-fidelity 2`` is checked by the card like ``--restorer-option fidelity_ratio=2``: one line, exit 2,
    before anything is loaded; the shortcut and the generic form route to the same options."""
    from restorever.cli.options import RESTORER_SHORTCUTS
    from restorever.restorers import list_restorers, restorer_card

    pairs = tmp_path / "p.csv"
    pairs.write_text("path_a,path_b,same\na.jpg,b.jpg,1\n")
    outputs = []
    for flags in (["--vqfr-fidelity", "2"], ["--restorer-option", "fidelity_ratio=2"]):
        result = CliRunner().invoke(cli, ["eval", "--protocol", "pairs-csv", "--pairs", str(pairs), "--data-root",
                                          str(faces_root), "--restorer", "vqfr-v2", "--scales", "8", *flags,
                                          "--dry-run"])
        assert result.exit_code == 2 and "vqfr-v2 option fidelity_ratio takes a number of at most 1.0" in \
            result.output, result.output
        outputs.append(result.output.split("; got")[0])
    assert outputs[0] == outputs[1]
    declared = {k for name in list_restorers() for k in restorer_card(name).default_kwargs}
    assert set(RESTORER_SHORTCUTS.values()) <= declared

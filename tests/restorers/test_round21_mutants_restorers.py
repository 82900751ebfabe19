"""Round 21, mutation testing tenth pass: the restorer adapters, the DDIM sampler's arithmetic and the options.

Each test closes a gap a surviving mutant showed (docs/reliability.md, "Round 21: mutation testing, tenth pass"):
a checkpoint named as the wrong backend, an option refused with the wrong words, a restorer that records one
setting and runs another.
"""
from __future__ import annotations

import json

import pytest
import torch

from restorever import hub
from restorever.errors import CheckpointLayoutError
from restorever.restorers import vqfr
from restorever.restorers.checkpoints import identify_layout
from tests.conftest import REFERENCE

MANIFESTS = REFERENCE / "manifests"

# The prefixes each layout is recognised by (checkpoints.identify_layout): a file needs all of them.
SIGNATURES = {"vqfr_v1": ("main_decoder.align_func_dict.", "quantizer.quantize_dict."),
              "vqfr_v2": ("main_branch.align_func_dict.", "quantizer.embedding."),
              "difface_unet": ("time_embed.", "input_blocks.", "output_blocks."),
              "difface_swinir": ("conv_first.", "layers.", "conv_last.")}
LAYOUT_MANIFESTS = {"vqfr_v1": "vqfr_v1_state_dict.json", "vqfr_v2": "vqfr_v2_state_dict.json",
                    "difface_unet": "difface_unet_state_dict.json", "difface_swinir": "difface_swinir_state_dict.json",
                    "codeformer": "codeformer_state_dict.json"}


def _keys(manifest: str) -> list[str]:
    data = json.loads((MANIFESTS / manifest).read_text())
    return [key for key, *_ in data.get("state_dict") or data["entries"]]


# ---- checkpoints.identify_layout ------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", sorted(SIGNATURES))
def test_a_layout_needs_every_one_of_its_prefixes(layout):
    """Mutant: ``conv_first. and layers.`` -> ``or``: any file with a ``conv_first.`` key (Real-ESRGAN's RRDBNet,
    SwinIR for super-resolution without ``layers.``) was named "DifFace's SwinIR estimator checkpoint"."""
    keys = _keys(LAYOUT_MANIFESTS[layout])
    assert identify_layout(keys) == layout
    for prefix in SIGNATURES[layout]:
        without = [k for k in keys if not k.startswith(prefix)]
        assert len(without) < len(keys)
        assert identify_layout(without) != layout, prefix


def test_an_rrdbnet_file_is_no_known_layout():
    """Real-ESRGAN's RRDBNet keys (conv_first, body, conv_body, conv_up1/2, conv_hr, conv_last): not DifFace's."""
    keys = ["conv_first.weight", "conv_first.bias", "body.0.rdb1.conv1.weight", "conv_body.weight",
            "conv_up1.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.weight", "conv_last.bias"]
    assert identify_layout(keys) is None


# ---- hub.check_option ----------------------------------------------------------------------------------------------
def _card(**specs) -> hub.ModelCard:
    return hub.ModelCard(name="toy", arch="toy", option_specs=specs,
                         default_kwargs={"n": 4, "x": 0.5, "flag": False, "mode": "a", "free": None})


def test_check_option_names_the_kind_it_wanted():
    """Mutant: the words of the message ("an integer") changed: the user is told what to type."""
    card = _card(n=hub.OptionSpec("count", minimum=1, maximum=8))
    with pytest.raises(ValueError, match=r"^toy option n takes an integer \(count\); got '2\.5'$"):
        hub.check_option(card, "n", "2.5")
    with pytest.raises(ValueError, match=r"^toy option x takes a number; got 'abc'$"):
        hub.check_option(card, "x", "abc")
    with pytest.raises(ValueError, match=r"^toy option n takes an integer of at least 1 \(count\); got '0'$"):
        hub.check_option(card, "n", "0")
    with pytest.raises(ValueError, match=r"^toy option n takes an integer of at most 8 \(count\); got '9'$"):
        hub.check_option(card, "n", "9")


def test_check_option_text_takes_text_and_an_untyped_option_takes_anything():
    """Mutant: ``isinstance(default, str)`` negated: a text option (``precision``) took the number 16 of a YAML
    config unchecked, and an option with no typed default (None) refused everything but text."""
    card = _card()
    with pytest.raises(ValueError, match=r"^toy option mode takes text; got 16$"):
        hub.check_option(card, "mode", 16)
    assert hub.check_option(card, "mode", "b") == "b"
    assert hub.check_option(card, "free", 3) == 3 and hub.check_option(card, "free", [1]) == [1]


# ---- vqfr adapter: the card tells what runs -----------------------------------------------------------------------
def _vqfr_small(reference_dir, version: str, **kwargs) -> tuple[vqfr.VQFRRestorer, torch.Tensor]:
    import dataclasses

    fx = torch.load(reference_dir / "fixtures" / f"vqfr_{version}_small.pt", weights_only=False)
    net = vqfr.build_network(fx["arch"], fx["config"])
    hub.load_state_dict_strict(net, fx["state_dict"], source="fixture")
    images = (fx["inputs"]["x_lq"][:1] + 1) / 2
    card = dataclasses.replace(vqfr.CARDS[f"vqfr-{version}"], input_size=images.shape[-1])
    return vqfr.VQFRRestorer(card, net, **kwargs).eval(), images


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_vqfr_card_mean_and_std_are_what_the_network_sees(reference_dir, version):
    """Mutant: the card's ``mean``/``std`` (0.5) changed: the card (``restorever restorers``, results.json's card)
    then described another normalisation than the adapter applies; the encoder's input is ``(x - mean) / std``."""
    options = {"fidelity_ratio": 0.0} if version == "v2" else {}
    restorer, images = _vqfr_small(reference_dir, version, **options)
    seen = []
    restorer.net.encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    restorer.restore(images)
    mean = torch.tensor(restorer.card.mean).view(1, 3, 1, 1)
    std = torch.tensor(restorer.card.std).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[0], (images - mean) / std, rtol=0, atol=1e-7)


# ---- difface: the options that run are the options recorded -------------------------------------------------------
@pytest.fixture(scope="module")
def difface_configs(reference_dir) -> dict:
    fx = torch.load(reference_dir / "fixtures" / "difface_sampler_small.pt", weights_only=False)
    return {"unet_config": dict(fx["unet_config"]), "estimator_config": dict(fx["swinir_config"])}


def _difface_random(configs: dict, **kwargs):
    from restorever.restorers import difface

    return difface.create("difface", pretrained=False, **configs, **kwargs)


# ---- diffusion: the schedule's defaults are DifFace's ---------------------------------------------------------------
def test_schedule_defaults_are_the_released_ddim250_linear(reference_dir):
    """Mutant: the default ``noise_schedule="linear"`` changed: ``DiffusionSchedule.create()`` (documented as "the
    schedule DifFace samples with") refused its own defaults. The defaults give the official ddim250 tables."""
    from restorever.restorers.diffusion import DiffusionSchedule

    fx = torch.load(reference_dir / "fixtures" / "difface_schedule.pt", weights_only=False)
    sched = DiffusionSchedule.create()
    assert torch.equal(sched.timestep_map, fx["timestep_map_ddim250"])
    torch.testing.assert_close(sched.alphas_cumprod, fx["respaced_ddim250"]["alphas_cumprod"], rtol=1e-12, atol=0)


def test_difface_eta_range_ends_are_accepted_by_card_and_restorer(difface_configs):
    """Mutant: ``eta <= 1.0`` -> ``eta < 1.0``: the card (and --restorer-option eta=1) take eta = 1 ("1 DDPM-like"),
    the restorer then refused it. Both ends of [0, 1] run; the first value past either end is refused by both."""
    from restorever.restorers import difface

    card = difface.CARDS["difface"]
    for eta in (0.0, 1.0):
        assert hub.check_option(card, "eta", str(eta)) == eta
        assert _difface_random(difface_configs, steps=10, eta=eta).eta == eta
    for eta in (-1e-6, 1.000001):
        with pytest.raises(ValueError, match="eta"):
            hub.check_option(card, "eta", str(eta))
        with pytest.raises(ValueError, match=r"difface: eta=.* must be in \[0, 1\]"):
            _difface_random(difface_configs, steps=10, eta=eta)


def test_difface_constructor_defaults_are_the_cards(difface_configs):
    """Mutant: the constructor's default ``precision="auto"`` changed: ``DifFaceRestorer(card, unet, estimator)``
    (the library route for one's own networks) must run what the card lists as its defaults."""
    from restorever.restorers import difface

    built = _difface_random(difface_configs, steps=10)
    restorer = difface.DifFaceRestorer(difface.CARDS["difface"], built.unet, built.estimator)
    defaults = difface.CARDS["difface"].default_kwargs
    ran = {"start_step": restorer.start_step, "steps": restorer.steps, "eta": restorer.eta,
           "precision": restorer.precision, "cuda_graph": restorer.cuda_graph,
           "channels_last": restorer.channels_last, "compile": restorer.torch_compile}
    assert ran == dict(defaults)


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_difface_cuda_graph_option_picks_the_graph_wrapper(difface_configs, cuda_graph):
    """Mutant: the ``cuda_graph`` if-expression swapped: ``cuda_graph=False`` (the recorded default) replayed CUDA
    graphs and ``True`` ran eagerly. On the CPU both paths give the same numbers, so the wrapper's calls are counted:
    every one of the ``start_step`` UNet calls goes through it exactly when the option is on."""
    restorer = _difface_random(difface_configs, steps=10, eta=0.0, cuda_graph=cuda_graph)
    calls = []
    inner = restorer._graphed.fn
    restorer._graphed.fn = lambda x, t: calls.append(1) or inner(x, t)
    restorer.restore(torch.rand(1, 3, 512, 512), seeds=[0])
    assert len(calls) == (restorer.start_step if cuda_graph else 0)


def test_from_betas_refuses_betas_outside_zero_one():
    """Mutant: ``ndim != 1 or not in (0, 1]`` -> ``and``: a 1-D schedule with a zero beta built tables of inf and
    nan (``1 / (1 - abar)`` at abar = 1) without a word; the refusal names the valid range."""
    from restorever.restorers.diffusion import DiffusionSchedule

    good = torch.linspace(1e-4, 0.02, 10, dtype=torch.float64)
    assert DiffusionSchedule.from_betas(torch.cat([good[:-1], torch.ones(1, dtype=torch.float64)])).num_timesteps \
        == 10  # beta = 1 (the end of the range) is allowed
    for bad in (torch.cat([torch.zeros(1, dtype=torch.float64), good[1:]]), -good, good * 60, good.view(2, 5)):
        with pytest.raises(ValueError, match=r"betas must be a 1-D tensor with values in \(0, 1\]"):
            DiffusionSchedule.from_betas(bad)


@pytest.mark.parametrize("given,restorer", [("vqfr_v2", "v1"), ("vqfr_v1", "v2")])
def test_vqfr_names_the_other_version_both_ways(tmp_path, reference_dir, given, restorer):
    """Mutant: ``any`` -> ``all`` in vqfr's own copy of the v2 signature: a VQFR_v2.pth given to vqfr-v1 lost "use
    --restorer vqfr-v2" (only the v1-to-v2 direction was tested). The copy is gone: the loader now asks
    ``checkpoints.identify_layout``, the one place the layouts are judged."""
    fx = torch.load(reference_dir / "fixtures" / f"vqfr_{restorer}_small.pt", weights_only=False)
    net = vqfr.build_network(fx["arch"], fx["config"])
    path = tmp_path / "other.pth"
    torch.save({"params_ema": {k: torch.zeros(1) for k in _keys(LAYOUT_MANIFESTS[given])}}, path)
    other = given.replace("_", "-")
    with pytest.raises(CheckpointLayoutError, match=rf"this is a {other} checkpoint, not vqfr-{restorer}; "
                                                    rf"use --restorer {other}$"):
        vqfr.load_vqfr_weights(net, path, name=f"vqfr-{restorer}")


def test_every_restorer_card_cites_the_paper_its_module_names():
    """Mutant: vqfr's paper link changed: the methods' citation table (``reports/tables.py``) then linked another
    page. Each card's paper is an arXiv abstract page whose id the module's docstring gives with the paper's title."""
    from restorever.restorers import codeformer, difface, gfpgan

    for module in (vqfr, difface, gfpgan, codeformer):
        for name, card in module.CARDS.items():
            for role, weight in card.weights.items():
                assert weight.paper.startswith("https://arxiv.org/abs/"), (name, role)
                number = weight.paper.removeprefix("https://arxiv.org/abs/")
                assert f"arxiv.org/abs/{number}" in module.__doc__ or f"arXiv:{number})" in module.__doc__, name


def test_no_respacing_keeps_every_step_as_a_list():
    """Mutant: ``list(range(n))`` -> ``range(n)`` for an empty respacing: the documented ``list[int]`` became a range,
    which compares unequal to the list of the same steps (a caller's ``== [...]`` check fails silently)."""
    from restorever.restorers.diffusion import DiffusionSchedule, space_timesteps

    for respacing in ("", None, []):
        kept = space_timesteps(20, respacing)
        assert isinstance(kept, list) and kept == list(range(20))
    assert DiffusionSchedule.create(20, "linear", None).timestep_map.tolist() == list(range(20))

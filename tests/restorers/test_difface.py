"""DifFace: networks, schedule and sampler against the official fixtures; loading; options; seeds; end to end.

Fixtures (``../shared/reference/fixtures/difface_*.pt``) were produced by the official code at commit 5c9ab80
(see ``reference/difface.md`` §7 for the tolerances used here).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from restorever.errors import CheckpointLayoutError, WeightsNotFoundError
from restorever.hub import load_state_dict_strict, sha256_file
from restorever.restorers import difface
from restorever.restorers.diffusion import DiffusionSchedule, PerItemNoise, RecordedNoise, space_timesteps
from restorever.restorers.layers.difface_unet import DiffusionUNet, timestep_embedding
from restorever.restorers.layers.swinir import SwinIR, relative_position_index, shifted_window_mask
from tests.conftest import REFERENCE

FIXTURES = REFERENCE / "fixtures"
MANIFESTS = REFERENCE / "manifests"


def _fixture(name: str) -> dict:
    path = FIXTURES / name
    if not path.exists():
        pytest.fail(f"{path} is missing: tests need ../shared beside the checkout (or RESTOREVER_SHARED)")
    return torch.load(path, weights_only=False)  # our own fixture files: trusted


@pytest.fixture(scope="module")
def unet_fx() -> dict:
    return _fixture("difface_unet_small.pt")


@pytest.fixture(scope="module")
def swinir_fx() -> dict:
    return _fixture("difface_swinir_small.pt")


@pytest.fixture(scope="module")
def schedule_fx() -> dict:
    return _fixture("difface_schedule.pt")


@pytest.fixture(scope="module")
def sampler_fx() -> dict:
    return _fixture("difface_sampler_small.pt")


@pytest.fixture(scope="module")
def small_files(tmp_path_factory, unet_fx, swinir_fx, sampler_fx) -> dict:
    """The sampler fixture's small networks as checkpoint files (UNet: official-style ``module.`` keys)."""
    folder = tmp_path_factory.mktemp("difface-small")
    unet_sd = {**unet_fx["state_dict"], **sampler_fx["unet_state_dict_overrides"]}
    torch.save({f"module.{k}": v for k, v in unet_sd.items()}, folder / "unet.pth")
    torch.save({"state_dict": swinir_fx["state_dict"], "iters_start": 1000}, folder / "swinir.pth")
    return {"unet": str(folder / "unet.pth"), "estimator": str(folder / "swinir.pth"),
            "unet_config": dict(sampler_fx["unet_config"]), "estimator_config": dict(sampler_fx["swinir_config"])}


def _small(small_files: dict, **kwargs) -> difface.DifFaceRestorer:
    return difface.create("difface", weights={"unet": small_files["unet"], "estimator": small_files["estimator"]},
                          unet_config=small_files["unet_config"], estimator_config=small_files["estimator_config"],
                          **kwargs)


# ---- (a) UNet ------------------------------------------------------------------------------------------------------
def test_unet_matches_official_fixture(unet_fx):
    model = DiffusionUNet(**unet_fx["config"]).eval()
    load_state_dict_strict(model, unet_fx["state_dict"], source="difface_unet_small.pt")
    seen = {}
    model.time_embed.register_forward_hook(lambda m, i, o: seen.__setitem__("time_embed_out", o))
    model.input_blocks[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("last_input_block_out", o))
    model.middle_block.register_forward_hook(lambda m, i, o: seen.__setitem__("middle_block_out", o))
    x, t = unet_fx["inputs"]["x"], unet_fx["inputs"]["t"]
    with torch.no_grad():
        out = model(x, t)
    seen["timestep_embedding_sinusoid"] = timestep_embedding(t, unet_fx["config"]["model_channels"])
    assert out.shape == unet_fx["outputs"].shape
    torch.testing.assert_close(out, unet_fx["outputs"], atol=1e-4, rtol=0)
    for name, ref in unet_fx["intermediates"].items():
        torch.testing.assert_close(seen[name], ref, atol=1e-4, rtol=0, msg=name)


def test_unet_attention_placement_follows_absolute_resolutions(unet_fx):
    model = DiffusionUNet(**unet_fx["config"])
    found = {name: (mod.qkv.in_channels, mod.num_heads) for name, mod in model.named_modules()
             if type(mod).__name__ == "AttentionBlock"}
    assert found == {k: tuple(v) for k, v in unet_fx["attention_blocks"].items()}


def test_unet_rejects_unsupported_options(unet_fx):
    with pytest.raises(ValueError, match="resblock_updown"):
        DiffusionUNet(**{**unet_fx["config"], "resblock_updown": True})


# ---- (b) SwinIR ----------------------------------------------------------------------------------------------------
def test_swinir_matches_official_fixture(swinir_fx):
    model = SwinIR(**swinir_fx["config"]).eval()
    # the derived buffers we compute equal the ones the official class saved
    ours = model.state_dict()
    for key, ref in swinir_fx["state_dict"].items():
        if key.endswith(("relative_position_index", "attn_mask")):
            assert torch.equal(ours[key], ref), key
    load_state_dict_strict(model, swinir_fx["state_dict"], source="difface_swinir_small.pt")
    seen = {}
    model.conv_first.register_forward_hook(lambda m, i, o: seen.__setitem__("conv_first_out", o))
    model.layers[0].register_forward_hook(lambda m, i, o: seen.__setitem__("layers0_out", o))
    model.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("norm_out", o))
    with torch.no_grad():
        out = model(swinir_fx["inputs"]["x"])
    torch.testing.assert_close(out, swinir_fx["outputs"], atol=1e-5, rtol=0)
    for name, ref in swinir_fx["intermediates"].items():
        torch.testing.assert_close(seen[name], ref, atol=1e-5, rtol=0, msg=name)


def test_swinir_buffers_at_released_size():
    index = relative_position_index(8)
    assert index.shape == (64, 64) and index.dtype == torch.int64 and int(index.max()) == 15 * 15 - 1
    mask = shifted_window_mask(64, 64, 8, 4)
    assert mask.shape == (64, 64, 64) and set(mask.unique().tolist()) == {-100.0, 0.0}
    assert not mask[0].any()  # the first window lies in one region


# ---- (c) schedule --------------------------------------------------------------------------------------------------
def test_schedule_tables(schedule_fx):
    sched = DiffusionSchedule.create(**{k: schedule_fx["config"][k] for k in ("steps", "noise_schedule",
                                                                              "timestep_respacing")})
    assert torch.equal(sched.timestep_map, schedule_fx["timestep_map_ddim250"])
    assert space_timesteps(1000, "250") == schedule_fx["timestep_map_250_nonddim"].tolist()
    for name, ref in schedule_fx["respaced_ddim250"].items():
        if name.startswith("ddim_sigma"):
            continue
        torch.testing.assert_close(getattr(sched, name), ref, rtol=1e-12, atol=0, msg=name)
    sigma = sched.ddim_sigma(torch.arange(250), 0.5, torch.zeros(250, 1)).view(-1)
    torch.testing.assert_close(sigma, schedule_fx["respaced_ddim250"]["ddim_sigma_eta0.5_float32"], rtol=0,
                               atol=1e-7)


def test_schedule_one_step(schedule_fx):
    sched = DiffusionSchedule.create(1000, "linear", "ddim250")
    step = schedule_fx["one_step"]
    x, t, out, noise = step["x_t"], step["t_respaced"], step["model_output"], step["noise"]
    assert torch.equal(sched.timestep_map[t], step["model_called_with_t_original"])
    for clip, key in ((True, "p_mean_variance_clip"), (False, "p_mean_variance_noclip")):
        got = sched.p_mean_variance(out, x, t, clip)
        for name, ref in step[key].items():
            torch.testing.assert_close(got[name], ref, atol=1e-6, rtol=0, msg=f"{key}.{name}")
    cases = {"ddim_eta0.5": sched.ddim_step(out, x, t, 0.5, noise),
             "ddim_eta0.0": sched.ddim_step(out, x, t, 0.0, noise),
             "ddpm_p_sample": sched.p_sample_step(out, x, t, noise)}
    for key, got in cases.items():
        for name, ref in step[key].items():
            torch.testing.assert_close(got[name], ref, atol=1e-6, rtol=0, msg=f"{key}.{name}")
    q = step["q_sample"]
    torch.testing.assert_close(sched.q_sample(q["x_start"], torch.tensor([100, 100]), q["noise"]), q["t_100"],
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(sched.q_sample(q["x_start"], q["t_50_249"]["t"], q["noise"]), q["t_50_249"]["x_t"],
                               atol=1e-6, rtol=0)


# ---- (d) end-to-end sampler with recorded noise --------------------------------------------------------------------
def _sampler_case(sampler_fx, small_files, case):
    spec = sampler_fx["cases"][case]
    inputs = spec["inputs"]
    restorer = _small(small_files, start_step=inputs["start_timesteps"], steps=250, eta=inputs["eta"])
    assert restorer.unet.config["image_size"] == inputs["im_size"]
    noise = RecordedNoise(spec["noise"]["q_sample"], spec["noise"]["ddim_steps"])
    return spec, inputs, restorer, noise


def test_sampler_replays_official_run_trajectory(sampler_fx, small_files):
    """Fed the official run's noise draws, our sampler retraces the official trajectory (case A: as released)."""
    spec, inputs, restorer, noise = _sampler_case(sampler_fx, small_files, "A_native64_N100_eta0.5")
    calls, trajectory = [], {}
    restorer.unet.register_forward_hook(lambda m, args, out: calls.append((args[0], args[1], out)))

    def record(i, x_in, out):
        if i in spec["trajectory_subset"]:
            trajectory[i] = {"x_in": x_in, "pred_xstart": out["pred_xstart"], "sample": out["sample"]}

    with torch.no_grad():
        sample, im_hq = difface.difface_sample(
            restorer.unet, restorer.estimator, inputs["y0"], schedule=restorer.schedule,
            start_step=restorer.start_step, eta=restorer.eta, noise=noise, im_size=inputs["im_size"],
            callback=record)
    assert len(calls) == inputs["start_timesteps"]  # one UNet call per respaced step below the start
    first = spec["first_model_call"]
    torch.testing.assert_close(calls[0][0], first["x"], atol=2e-5, rtol=0)
    assert torch.equal(calls[0][1], first["t_original"])
    torch.testing.assert_close(calls[0][2], first["out"], atol=2e-5, rtol=0)
    torch.testing.assert_close(im_hq, spec["outputs"]["im_hq"], atol=2e-5, rtol=0)
    assert sorted(trajectory) == sorted(spec["trajectory_subset"])
    for i, ref in spec["trajectory_subset"].items():
        for name in ("x_in", "pred_xstart", "sample"):
            torch.testing.assert_close(trajectory[i][name], ref[name], atol=2e-5, rtol=0, msg=f"step {i} {name}")
    torch.testing.assert_close(sample, spec["outputs"]["sample"], atol=2e-5, rtol=0)


def test_sampler_replays_official_run_resized_batch(sampler_fx, small_files):
    """Case B through the restorer itself: batch 2, 48 px input resized to the network's size and back."""
    spec, inputs, restorer, noise = _sampler_case(sampler_fx, small_files, "B_resize48_bs2_N30_eta0.5")
    with torch.no_grad():
        sample = restorer.forward(inputs["y0"], noise=noise)
    assert sample.shape == inputs["y0"].shape
    torch.testing.assert_close(sample, spec["outputs"]["sample"], atol=2e-5, rtol=0)


# ---- seeds and batching ------------------------------------------------------------------------------------------
def test_noise_per_item_is_the_items_generator():
    like = torch.zeros(2, 3, 4, 4)
    noise = PerItemNoise([5, 9])
    first, second = noise.draw(0, like), noise.draw(1, like)
    g5 = torch.Generator().manual_seed(5)
    torch.testing.assert_close(first[0], torch.randn(3, 4, 4, generator=g5), rtol=0, atol=0)
    torch.testing.assert_close(second[0], torch.randn(3, 4, 4, generator=g5), rtol=0, atol=0)
    torch.testing.assert_close(first[1], torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(9)),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="2 seeds for a batch of 3"):
        noise.draw(2, torch.zeros(3, 3, 4, 4))


def test_batch_size_never_changes_a_face(small_files):
    restorer = _small(small_files, steps=10)  # start 4 of 10: original t = 400 as released, 4 UNet calls
    faces = torch.rand(3, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    seeds = [11, 22, 33]
    together = restorer.restore(faces, seeds=seeds)
    alone = torch.cat([restorer.restore(faces[i:i + 1], seeds=[s]) for i, s in enumerate(seeds)])
    reordered = restorer.restore(faces[[2, 0, 1]], seeds=[33, 11, 22])[[1, 2, 0]]
    assert together.shape == faces.shape and 0 <= float(together.min()) and float(together.max()) <= 1
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=0)
    torch.testing.assert_close(reordered, together, atol=1e-5, rtol=0)
    other_seed = restorer.restore(faces[:1], seeds=[12])
    assert (other_seed - together[:1]).abs().max() > 1e-3  # the seed matters, so the checks above can fail
    with pytest.raises(ValueError, match="2 seeds for 3 images"):
        restorer.restore(faces, seeds=[1, 2])


# ---- options: the realness/fidelity sweep ------------------------------------------------------------------------
def test_start_and_steps_options(small_files):
    def first_calls(**options):
        restorer = _small(small_files, **options)
        ts = []
        restorer.unet.register_forward_pre_hook(lambda m, args: ts.append(int(args[1][0])))
        restorer.restore(torch.rand(1, 3, 512, 512), seeds=[0])
        return restorer, ts

    restorer = _small(small_files)
    assert (restorer.start_step, restorer.steps, restorer.eta) == (100, 250, 0.5)  # as released: t = 400
    restorer, ts = first_calls(steps=25)
    assert restorer.start_step == 10 and ts == list(range(360, -1, -40))  # same start t (400), coarser steps
    restorer, ts = first_calls(steps=25, start_step=5, eta=0.0)
    assert ts == list(range(160, -1, -40)) and restorer.eta == 0.0
    for bad in ({"start_step": 250}, {"steps": 10, "start_step": 10}, {"start_step": 0}, {"eta": 1.5},
                {"steps": 1}, {"precision": "int8"}):
        with pytest.raises(ValueError):
            _small(small_files, **bad)


def test_steps_without_an_integer_stride_are_refused_before_loading():
    """``steps=300`` passed the card (2..1000) and --dry-run, then failed in the schedule after both networks were
    built (with real weights: after reading 730 MB). "ddimN" needs an integer stride: 62 values of 1..1000."""
    from restorever.hub import check_option
    from restorever.restorers.diffusion import DiffusionSchedule

    counts = difface.DDIM_STEPS
    assert len(counts) == 62 and {100, 125, 200, 250, 334, 500, 1000} <= set(counts)
    assert not {150, 300, 400} & set(counts)
    for n in (2, 7, 334, 999):  # every listed count builds its schedule, every other one does not
        ok = n in counts
        try:
            DiffusionSchedule.create(1000, "linear", f"ddim{n}")
            built = True
        except ValueError:
            built = False
        assert built == ok, n
    with pytest.raises(ValueError, match=r"steps=300 is no DDIM respacing .* nearest: 250, 334"):
        difface.create("difface", steps=300, weights={"unet": "/nonexistent/u.pth", "estimator": "/nonexistent/e.pth"})
    with pytest.raises(ValueError, match="difface option steps takes one of 2, 3,"):
        check_option(difface.CARDS["difface"], "steps", "300")
    assert check_option(difface.CARDS["difface"], "steps", "125") == 125


def test_reduced_precision_path_stays_close(small_files):
    """The autocast path (fp16 on CUDA by default; bf16 here on the CPU) runs and stays near float32."""
    faces = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    full = _small(small_files, steps=10, precision="fp32").restore(faces, seeds=[5])
    half = _small(small_files, steps=10, precision="bf16").restore(faces, seeds=[5])
    assert half.dtype == torch.float32
    assert 0 < float((half - full).abs().mean()) < 5e-3


def test_random_init_for_benchmarks(small_files):
    restorer = difface.create("difface", pretrained=False, unet_config=small_files["unet_config"],
                              estimator_config=small_files["estimator_config"], steps=10)
    assert restorer.weight_files == {"unet": ("random-init", None), "estimator": ("random-init", None)}
    assert restorer.restore(torch.rand(1, 3, 512, 512), seeds=[0]).shape == (1, 3, 512, 512)
    with pytest.raises(ValueError, match="pretrained=False"):
        difface.create("difface", pretrained=False, weights={"unet": small_files["unet"]})


def test_flops_per_face_at_defaults():
    """100 UNet forwards + 1 SwinIR forward; per-network figures as counted on the official code (difface.md §6)."""
    unet_only = difface.unet_flops_per_face(estimator_config=None)
    total = difface.unet_flops_per_face()
    assert unet_only == pytest.approx(100 * 378.3e9, rel=1e-3)
    assert total - unet_only == pytest.approx(181.5e9, rel=1e-3)
    assert total / 1e12 == pytest.approx(38.0, rel=2e-3)
    assert difface.unet_flops_per_face(start_step=10) == pytest.approx(10 * 378.3e9 + 181.5e9, rel=1e-3)


# ---- loading -------------------------------------------------------------------------------------------------------
def _from_manifest(name: str, *, prefix: str = "", buffers: bool = True, random: bool = False) -> dict:
    """A state_dict with the official keys, shapes and dtypes; entry i is filled with (i % 97) / 1000 (cheap and
    checkable), or small random values with ``random=True`` (for a forward pass)."""
    manifest = json.loads((MANIFESTS / name).read_text())
    g = torch.Generator().manual_seed(0)
    out = {}
    for i, (key, shape, dtype, kind) in enumerate(manifest["entries"]):
        if kind == "buffer" and not buffers:
            continue
        dt = getattr(torch, dtype)
        if key.endswith("relative_position_index"):  # derived buffers: the values the official class saves
            out[prefix + key] = relative_position_index(8)
        elif key.endswith("attn_mask"):
            out[prefix + key] = shifted_window_mask(64, 64, 8, 4)
        elif random:
            out[prefix + key] = (torch.randn(shape, generator=g) * 0.02).to(dt)
        else:
            out[prefix + key] = torch.full(shape, (i % 97) / 1000, dtype=dt)
    return out


def test_released_layout_loads_strictly(tmp_path):
    """Synthetic files with the official key lists load into the released configs (DDP prefix, trainer wrapper)."""
    unet_sd = _from_manifest("difface_unet_state_dict.json", prefix="module.")
    swinir_sd = _from_manifest("difface_swinir_state_dict.json", prefix="module.", buffers=False)
    torch.save(unet_sd, tmp_path / "iddpm.pth")
    torch.save({"iters_start": 100000, "log_step": {}, "state_dict": swinir_sd}, tmp_path / "swinir.pth")
    restorer = difface.create("difface", weights={"unet": str(tmp_path / "iddpm.pth"),
                                                  "estimator": str(tmp_path / "swinir.pth")})
    assert restorer.unet.config == {**difface.UNET_CONFIG, "num_classes": None, "num_heads": 1}
    assert sum(p.numel() for p in restorer.unet.parameters()) == 159_788_454
    assert sum(p.numel() for p in restorer.estimator.parameters()) == 15_792_587
    assert torch.equal(restorer.unet.output_blocks[5][0].in_layers[2].weight,
                       unet_sd["module.output_blocks.5.0.in_layers.2.weight"])
    assert torch.equal(restorer.estimator.conv_last.bias, swinir_sd["module.conv_last.bias"])
    # buffers absent from the file are computed
    block = restorer.estimator.layers[3].residual_group.blocks[5]
    assert torch.equal(block.attn_mask, shifted_window_mask(64, 64, 8, 4))
    assert torch.equal(block.attn.relative_position_index, relative_position_index(8))
    assert not any(p.is_meta for p in restorer.parameters()) and not any(b.is_meta for b in restorer.buffers())
    assert not any(p.requires_grad for p in restorer.parameters())


def test_wrong_layout_is_a_clear_error(small_files, unet_fx, tmp_path):
    renamed = dict(unet_fx["state_dict"])
    renamed["middle_block.1.qkv_renamed.weight"] = renamed.pop("middle_block.1.qkv.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointLayoutError, match=r"renamed\.pth.*middle_block\.1\.qkv\.weight"):
        _small({**small_files, "unet": str(tmp_path / "renamed.pth")})
    # the two files swapped: said so (it was a list of missing keys)
    with pytest.raises(CheckpointLayoutError, match=r"difface unet weights .*swinir\.pth: DifFace's SwinIR "
                                                    r"estimator checkpoint, given as unet= \(the unet= and "
                                                    r"estimator= files are swapped\?\)"):
        _small({**small_files, "unet": small_files["estimator"]})
    with pytest.raises(CheckpointLayoutError, match="given as estimator="):
        _small({**small_files, "estimator": small_files["unet"]})


def test_missing_weights_names_both_files_and_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        difface.create("difface")
    message = str(info.value)
    assert "\n" not in message
    for wf in difface.CARDS["difface"].weights.values():
        assert wf.filename in message and wf.url in message
    assert "--weights unet=FILE,estimator=FILE" in message and str(tmp_path) in message
    with pytest.raises(ValueError, match=r"unknown weight role.*--weights unet=FILE,estimator=FILE"):
        difface.create("difface", weights={"model": "x.pth"})


def test_card():
    card = difface.CARDS["difface"]
    assert set(card.weights) == {"unet", "estimator"} and card.stochastic
    assert card.default_kwargs == {"start_step": 100, "steps": 250, "eta": 0.5, "precision": "auto",
                                   "cuda_graph": False, "compile": False, "channels_last": False}
    assert all(wf.url.startswith("https://github.com/zsyOAOA/DifFace/releases/") for wf in card.weights.values())
    assert all("non-commercial" in wf.license for wf in card.weights.values())


# ---- command line --------------------------------------------------------------------------------------------------
def _cli(*args, expect: int = 0):
    from restorever.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def test_cli_lists_difface_with_weight_status(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    out = _cli("restorers").output
    line = out[out.index("difface"):]
    assert "iddpm_ffhq512_ema500000.pth" in line and "swinir_restoration512_L1.pth" in line and "missing" in line


def test_cli_eval_without_weights_is_one_line(lfw_root, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path))
    result = _cli("eval", "--protocol", "lfw", "--data-root", lfw_root, "--restorer", "difface", "--recognizer",
                  "dlib", "--limit-pairs", 2, "--out", tmp_path / "run", "--no-progress", expect=2)
    assert result.output.strip().count("\n") == 0
    assert "iddpm_ffhq512_ema500000.pth" in result.output and "swinir_restoration512_L1.pth" in result.output


def _eval_difface(lfw_root: Path, out: Path, *extra) -> dict:
    _cli("eval", "--protocol", "lfw", "--data-root", lfw_root, "--restorer", "difface", "--recognizer", "dlib",
         "--scales", 8, "--limit-pairs", 2, "--out", out, "--no-progress", *extra)
    return json.loads((out / "results.json").read_text())


def test_cli_eval_end_to_end_reduced(lfw_root, small_files, tmp_path, monkeypatch):
    """``eval --restorer difface`` with checkpoints in a temporary cache dir; reduced networks for speed."""
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(difface, "UNET_CONFIG", small_files["unet_config"])
    monkeypatch.setattr(difface, "SWINIR_CONFIG", small_files["estimator_config"])
    folder = tmp_path / "home" / "weights" / "difface"
    folder.mkdir(parents=True)
    for role, wf in difface.CARDS["difface"].weights.items():
        (folder / wf.filename).write_bytes(Path(small_files[role]).read_bytes())
    record = _eval_difface(lfw_root, tmp_path / "run", "--difface-steps", 10)
    conditions = {(c["restorer"], c["scale"]) for c in record["conditions"]}
    assert ("difface", 8) in conditions
    for role in ("unet", "estimator"):
        entry = record["weights"][f"difface:{role}"]
        assert Path(entry["file"]).parent == folder and entry["sha256"] == sha256_file(small_files[role])
    again = _eval_difface(lfw_root, tmp_path / "run2", "--difface-steps", 10, "--weights",
                          f"unet={small_files['unet']},estimator={small_files['estimator']}")
    first = [c for c in record["conditions"] if c["restorer"] == "difface"][0]
    second = [c for c in again["conditions"] if c["restorer"] == "difface"][0]
    assert first["verification"]["accuracy_mean"] == second["verification"]["accuracy_mean"]


@pytest.mark.slow
def test_cli_eval_end_to_end_released_size(lfw_root, tmp_path, monkeypatch):
    """The released architecture end to end, with synthetic checkpoints built from the manifests (about a minute)."""
    home = tmp_path / "home"
    monkeypatch.setenv("RESTOREVER_HOME", str(home))
    folder = home / "weights" / "difface"
    folder.mkdir(parents=True)
    card = difface.CARDS["difface"]
    torch.save(_from_manifest("difface_unet_state_dict.json", prefix="module.", random=True),
               folder / card.weights["unet"].filename)
    torch.save({"state_dict": _from_manifest("difface_swinir_state_dict.json", prefix="module.", random=True)},
               folder / card.weights["estimator"].filename)
    record = _eval_difface(lfw_root, tmp_path / "run", "--difface-steps", 2)
    assert ("difface", 8) in {(c["restorer"], c["scale"]) for c in record["conditions"]}

"""Property tests of the degradation parameters: every draw within its preset's rules, one item's parameters
independent of the batch around it, exact replay from stored records, typed errors for impossible scales, and
per-item purity of the application."""
from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from restorever.degradation import (PRESETS, Degradation, DegradationError, DegradationParams, list_degradations,
                                    lr_size)

from .conftest import EXAMPLES, FUZZ

FIELDS = ("scale", "sigma_x", "sigma_y", "theta", "noise_sigma", "jpeg_quality", "noise_seed")
item_id = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
seeds = st.integers(-(2**63), 2**63 - 1)
scales = st.one_of(st.none(), st.integers(1, 64), st.floats(0.5, 64, allow_nan=False))


def _row(params: DegradationParams, i: int) -> tuple:
    return (params.item_ids[i], *(float(getattr(params, f)[i]) for f in FIELDS))


@pytest.mark.parametrize("preset", list_degradations())
@FUZZ
@given(ids=st.lists(item_id, min_size=1, max_size=8), seed=seeds, scale=scales)
def test_every_draw_is_within_the_preset(preset, ids, seed, scale):
    p = PRESETS[preset]
    params = Degradation(preset).sample_params(ids, scale, seed)
    assert len(params) == len(ids) and params.item_ids == ids and params.preset == preset
    for i in range(len(ids)):
        sx, sy, theta = float(params.sigma_x[i]), float(params.sigma_y[i]), float(params.theta[i])
        assert p.sigma.contains(sx) and p.sigma.contains(sy)
        iso = sx == sy and theta == 0.0
        assert iso or p.theta.contains(theta)
        if p.iso_prob == 0.0:
            assert p.theta.contains(theta)
        assert p.noise.contains(float(params.noise_sigma[i]))
        q = int(params.jpeg_quality[i])
        assert p.jpeg.contains(q) and 0 <= q <= 100
        s = float(params.scale[i])
        assert s == float(scale) if scale is not None else p.scale.contains(s)
        assert 0 <= int(params.noise_seed[i]) < 2**63


@FUZZ
@given(ids=st.lists(item_id, min_size=1, max_size=8), seed=seeds, scale=scales, data=st.data())
def test_an_items_parameters_do_not_depend_on_its_batch(ids, seed, scale, data):
    """Same item, seed and scale -> same parameters alone, in any batch, in any order, duplicated."""
    deg = Degradation("difface-test")
    batch = deg.sample_params(ids, scale, seed)
    order = data.draw(st.permutations(range(len(ids))))
    shuffled = deg.sample_params([ids[k] for k in order], scale, seed)
    for j, k in enumerate(order):
        assert _row(shuffled, j) == _row(batch, k)
    for i, item in enumerate(ids):
        assert _row(deg.sample_params([item], scale, seed), 0) == _row(batch, i)
    doubled = deg.sample_params(ids + ids, scale, seed)
    assert [_row(doubled, i) for i in range(len(ids))] == [_row(doubled, i + len(ids)) for i in range(len(ids))]


@FUZZ
@given(ids=st.lists(item_id, min_size=1, max_size=6), seed=seeds, scale=scales,
       preset=st.sampled_from(list_degradations()))
def test_records_replay_exactly_through_json(ids, seed, scale, preset):
    params = Degradation(preset).sample_params(ids, scale, seed)
    records = json.loads(json.dumps(params.to_records()))
    replay = DegradationParams.from_records(records)
    assert [_row(replay, i) for i in range(len(ids))] == [_row(params, i) for i in range(len(ids))]
    assert (replay.preset, replay.seed, replay.kernel_size) == (params.preset, params.seed, params.kernel_size)


@FUZZ
@given(scale=st.one_of(st.sampled_from([0.0, -1.0, math.nan, -math.inf]), st.floats(max_value=0.0)))
def test_non_positive_scale_is_a_typed_error(scale):
    with pytest.raises(DegradationError, match="positive"):
        Degradation("difface-test").sample_params(["a"], scale, 0)


@FUZZ
@given(h=st.integers(1, 4096), w=st.integers(1, 4096), scale=st.floats(0.01, 1e12, allow_nan=False))
def test_lr_size_is_positive_or_a_typed_error(h, w, scale):
    try:
        lh, lw = lr_size(h, w, scale)
    except DegradationError as exc:
        assert "too large" in str(exc)
    else:
        assert 1 <= lh == int(h // scale) and 1 <= lw == int(w // scale)


@FUZZ
@given(records=st.lists(st.dictionaries(st.sampled_from(["item_id", "preset", "seed", "scale", "sigma_x", "sigma_y",
                                                        "theta", "noise_sigma", "jpeg_quality", "noise_seed"]),
                                        st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none()), max_size=10),
                        max_size=3))
def test_malformed_records_are_typed_errors(records):
    try:
        DegradationParams.from_records(records)
    except (DegradationError, ValueError, TypeError):
        pass  # DegradationError for a missing field; ValueError/TypeError from float()/int() of a bad value


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@given(n=st.integers(1, 3), hw=st.tuples(st.integers(21, 48), st.integers(21, 48)), scale=st.integers(1, 6),
       seed=st.integers(0, 2**31), preset=st.sampled_from(list_degradations()))
@settings(parent=FUZZ, max_examples=max(10, EXAMPLES // 10))
def test_apply_is_pure_per_item(device, n, hw, scale, seed, preset):
    """Degrading a batch equals degrading each item alone (bit-exact on one device); outputs are grey levels k/255
    in [0, 1] of the input's shape and dtype."""
    deg = Degradation(preset)
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, *hw, generator=gen).to(device)
    params = deg.sample_params([f"item{i}" for i in range(n)], scale, seed)
    out = deg.apply(images, params)
    assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal((out * 255).round() / 255, out)
    for i in range(n):
        assert torch.equal(deg.apply(images[i:i + 1], params[i]), out[i:i + 1])

"""Round 10 (left-alone items): temporaries of killed cache writes, shadowed protocols, weighted TAR@FAR."""
from __future__ import annotations

import logging
import os
import time

import numpy as np


def test_a_run_removes_stale_cache_temporaries_of_killed_writes(tmp_path, caplog):
    """A write killed between mkstemp and rename (kill -9) leaves ``.<key>.npz.XXXX.tmp`` in the cache forever; the
    next run that opens the cache removes those older than an hour (count and bytes logged), and nothing else:
    not a young one (another run's live write), not an entry, not a file of another program."""
    from restorever.pipeline.cache import ArrayCache, cache_key, open_run_cache

    root = tmp_path / "cache"
    ArrayCache(root).put("landmarks", cache_key(a=1), np.zeros((5, 2), np.float32))
    entry = next(root.glob("landmarks/*/*.npz"))
    shard = entry.parent
    old_time = time.time() - 2 * 3600
    stale = [shard / f".{'ab' * 32}.npz.k3j_x9q2.tmp", root / "embedding" / "cd" / f".{'cd' * 32}.npz.q1w2e3r4.tmp"]
    stale[1].parent.mkdir(parents=True)
    for path, size in zip(stale, (100, 250)):
        path.write_bytes(b"x" * size)
        os.utime(path, (old_time, old_time))
    live = shard / f".{'ef' * 32}.npz.abcd1234.tmp"
    live.write_bytes(b"y" * 10)
    foreign = shard / ".notes.txt.tmp"
    foreign.write_bytes(b"z")
    os.utime(foreign, (old_time, old_time))
    os.utime(entry, (old_time, old_time))

    with caplog.at_level(logging.INFO, logger="restorever.pipeline.cache"):
        cache = open_run_cache(root)
    assert not any(p.exists() for p in stale)
    assert live.exists() and foreign.exists() and entry.exists()
    assert cache.get("landmarks", cache_key(a=1)) is not None
    assert any("removed 2 temporary file(s) (350 bytes)" in r.getMessage() for r in caplog.records), caplog.text
    assert ArrayCache(root).remove_stale_temporaries() == (0, 0)  # nothing left to remove
    assert ArrayCache(None).remove_stale_temporaries() == (0, 0)



def test_a_user_protocol_named_like_a_shipped_one_is_used_with_a_warning(tmp_path, monkeypatch, caplog):
    """``lfw.yaml`` in a folder of ``$RESTOREVER_PROTOCOL_PATH`` still wins over the shipped ``lfw.yaml`` (as
    docs/protocols.md says), but no longer silently: a warning names both files, and ``restorever protocols`` says
    which file the name uses."""
    from click.testing import CliRunner

    from restorever import protocol_specs
    from restorever.cli.listing import protocols_command

    shipped = protocol_specs.list_protocols()["lfw"]
    user = tmp_path / "lfw.yaml"
    user.write_text(shipped.read_text(encoding="utf-8").replace("description: \"", "description: \"MY COPY ", 1),
                    encoding="utf-8")
    monkeypatch.setenv("RESTOREVER_PROTOCOL_PATH", str(tmp_path))
    monkeypatch.setattr(protocol_specs, "_WARNED_SHADOWS", set())
    assert protocol_specs.shadowed_protocols() == {"lfw": [shipped]}
    with caplog.at_level(logging.WARNING, logger="restorever.protocol_specs"):
        spec, path = protocol_specs.load_spec("lfw")
    assert path == user and "MY COPY" in spec["description"]  # which one wins is unchanged
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(user) in warnings[0] and f"the shipped {shipped}" in warnings[0], warnings
    result = CliRunner().invoke(protocols_command, [])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("lfw "))
    assert f"[uses {user}; shadows {shipped}]" in line and "MY COPY" in line
    assert "shadows" not in next(ln for ln in result.output.splitlines() if ln.startswith("lfw-dev "))
    monkeypatch.delenv("RESTOREVER_PROTOCOL_PATH")
    assert protocol_specs.shadowed_protocols() == {}  # the shipped files alone hide nothing


def test_weighted_tar_at_far_is_sklearns_weighted_roc_read_at_the_far():
    """Hand-computed: positives 0.95, 0.8, 0.6 (weight 1); negatives 0.9, 0.7, 0.4, 0.3 with weights 0.5, 0.5, 1.5,
    1.5 (sum 4). Thresholds 0.95, 0.9, 0.8, 0.7, 0.6 give weighted (FPR, TPR) (0, 1/3), (.125, 1/3), (.125, 2/3),
    (.25, 2/3), (.25, 1); the next negative (0.4) moves FPR to .625. So TAR@FAR=0.25 is 1.0 weighted and 2/3
    unweighted (FPR .25 is reached at 0.9 already). sklearn's weighted roc_curve gives the same points. The NaN guard
    counts negative pairs of non-zero weight (4 >= 1/0.25 here), not their weight."""
    import warnings

    from sklearn.metrics import roc_curve as sk_roc

    from restorever.metrics.verification import tar_at_far

    y = np.array([1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.95, 0.8, 0.6, 0.9, 0.7, 0.4, 0.3])
    w = np.array([1, 1, 1, 0.5, 0.5, 1.5, 1.5])
    assert tar_at_far(y, s, 0.25, sample_weight=w) == 1.0
    assert abs(tar_at_far(y, s, 0.25) - 2 / 3) < 1e-12
    fpr, tpr, _ = sk_roc(y, s, sample_weight=w, drop_intermediate=False)
    assert tar_at_far(y, s, 0.25, sample_weight=w) == tpr[fpr <= 0.25].max()
    rng = np.random.default_rng(3)
    for _ in range(50):  # random weighted data with ties and zero weights: always sklearn's number
        n = 60
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = rng.integers(0, 12, n) / 11
        w = rng.choice([0.0, 0.3, 1.0, 2.5], n)
        w[:2] = 1.0
        fpr, tpr, _ = sk_roc(y, s, sample_weight=w, drop_intermediate=False)
        for far in (0.1, 0.25, 0.5):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = tar_at_far(y, s, far, sample_weight=w)
            if ((y == 0) & (w > 0)).sum() >= 1 / far:
                assert got == tpr[fpr <= far + 1e-12].max()
            else:
                assert np.isnan(got)

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

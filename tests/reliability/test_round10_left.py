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


"""Round 10 (reproducibility): what a results record must say for a reviewer to rerun it and get the same numbers."""
from __future__ import annotations

import PIL
import pytest
import torch

from restorever.pipeline.environment import environment_info


@pytest.mark.parametrize("threads", [1, 2])
def test_environment_records_threads_and_numeric_libraries(threads, monkeypatch):
    # torch kernels (the restorers', MTCNN's batched path) can round differently with another thread count, and
    # torchrun sets OMP_NUM_THREADS=1 where a plain run uses every core: the record must say which was used
    monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        env = environment_info("cpu")
    finally:
        torch.set_num_threads(before)
    assert env["torch_threads"] == threads
    assert env["omp_num_threads"] == str(threads)
    libs = env["libraries"]
    assert libs["pillow"] == PIL.__version__  # PIL is loaded here (import above): the JPEG decoder's pixels
    assert libs["libjpeg"].startswith("libjpeg")


def test_environment_record_satisfies_the_schema():
    from restorever.pipeline.record_schema import definition, schema_problems

    env = environment_info("cpu")
    assert schema_problems(env, definition("results", "environment")) == []
    assert schema_problems({**env, "torch_threads": "2"}, definition("results", "environment"))  # must be a number


_SUBSET = """
import json, sys
from restorever.pipeline.evaluate import item_seed, limit_pairs
from restorever.protocol import load_protocol
from restorever.reports.statistics import pair_clusters
s = limit_pairs(load_protocol("lfw", data_root=sys.argv[1]).pairs, 60)
print(json.dumps([s.lines, s.images(), pair_clusters(s.a, s.b, "components").tolist(),
                  [item_seed(0, i, 16, "degrade") for i in s.b]]))
"""


def test_limit_pairs_subset_does_not_depend_on_the_hash_seed(lfw_root):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parent.parent)
    outputs = []
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": repo}
        proc = subprocess.run([sys.executable, "-c", _SUBSET, str(lfw_root)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(json.loads(proc.stdout))
    assert outputs[0] == outputs[1]
    lines = outputs[0][0]
    # LFW View 2 lists each fold as 300 matched then 300 mismatched pairs after a header line: the first three of
    # each (fold, class) group, in file order, are lines 2-4, 302-304, 602-604, ...
    assert lines == sorted(start + k for start in range(2, 6002, 300) for k in range(3))


def test_scales_are_whole_numbers_everywhere():
    import numpy as np

    from restorever.errors import ConfigError
    from restorever.pipeline.evaluate import EvalConfig, item_seed

    # keys and condition labels hold int(scale): a 4.5 used to be degraded at 4.5, then fail with a bare
    # KeyError ('none', 4.5) after the landmarks and clean embeddings were computed
    with pytest.raises(ConfigError, match="scales"):
        EvalConfig(scales=[4.5]).validate()
    config = EvalConfig(scales=[4.0, np.int64(8), "16"])
    config.validate()
    assert config.scales == [4, 8, 16] and all(type(s) is int for s in config.scales)
    # a restorer's noise seed for x16 must not depend on how 16 was spelled (the cache key says 16 either way)
    assert item_seed(0, "a/a_0001.jpg", 16.0, "restore") == item_seed(0, "a/a_0001.jpg", 16, "restore")
    assert item_seed(0, "a/a_0001.jpg", 16, "restore") == int.from_bytes(
        __import__("hashlib").sha256(b"0|a/a_0001.jpg|16|restore").digest()[:8], "little") & ((1 << 63) - 1)


def test_seed_is_a_whole_number():
    import numpy as np

    from restorever.errors import ConfigError
    from restorever.pipeline.evaluate import EvalConfig

    # seed 1.5 was keyed (and degraded) as seed 1, but the restorers' noise hashed the text "1.5"
    for bad in (1.5, True, "x"):
        with pytest.raises(ConfigError, match="seed"):
            EvalConfig(seed=bad).validate()
    for given in (3.0, "3", np.int64(3)):
        config = EvalConfig(seed=given)
        config.validate()
        assert type(config.seed) is int and config.seed == 3


def test_scales_given_as_a_tuple_or_array():
    import numpy as np

    from restorever.pipeline.evaluate import EvalConfig

    # the library's scales=(8, 16) ran before scales were normalised, then failed with a bare TypeError (a tuple
    # cannot be assigned into); a numpy array kept its numpy.int64 elements
    for given in ((8, 16.0), np.array([8, 16]), range(8, 17, 8)):
        config = EvalConfig(scales=given)
        config.validate()
        assert config.scales == [8, 16] and all(type(s) is int for s in config.scales)

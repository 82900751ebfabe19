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

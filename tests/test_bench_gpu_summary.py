"""scripts/bench_gpu.py's own arithmetic (run on a GPU machine once per session, so checked here): the targets
summary picks the right rows and verdicts, and the study-sized estimate scales stages as documented."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_estimate_scales_images_and_probes(bench):
    run = {"wall_s": 30.0, "images": 463, "timings": {"total_s": 25.0, "landmarks_s": 4.63, "align_s": 0.0,
                                                      "degrade_s": 3.0, "restore_s": 12.0, "embed_s": 3.0}}
    # start-up 5 s once; 4.63 s per 463 images -> 17.84 s for 1,784; (18 + 2.37 rest) s per 300 probes x 4
    expected = 5.0 + 4.63 * 1784 / 463 + (18.0 + 25.0 - 4.63 - 18.0) * 1200 / 300
    assert bench._study_estimate(run, probes=300) == pytest.approx(round(expected, 1))
    assert bench._study_estimate({"wall_s": 1.0, "images": 0, "timings": {"total_s": 1.0}}, probes=3) is None


def test_targets_take_the_best_row_of_the_named_configuration(bench):
    results = {"sections": {
        "restorer:vqfr-v2": {"rows": [{"batch": 8, "faces_per_s": 150.0, "peak_gib": 3.0},
                                      {"batch": 32, "faces_per_s": 170.0, "peak_gib": 9.5},
                                      {"batch": 32, "faces_per_s": 140.0, "peak_gib": 7.9}]},
        "levers:vqfr-v2": {"rows": [{"batch": 32, "error": "compile failed"}]},
        "degradation": {"rows": [{"scale": 4, "device_faces_per_s": 2500.0}, {"scale": 4, "device_faces_per_s": 900},
                                 {"scale": 8, "device_faces_per_s": 1999.0}]},
        "mtcnn": {"rows": [{"device": "cpu", "images_per_s": 900.0}, {"device": "cuda", "images_per_s": 450.0}]},
        "e2e": {"run": {"study_estimate_s": 75.0}, "run_mtcnn_batched": {"study_estimate_s": 55.0}},
    }}
    got = {t["target"]: t for t in bench.summarise_targets(results)}
    vq = got["VQFR v2 faces/s (any precision, batch)"]
    assert vq["measured"] == 170.0 and vq["met"] is True
    within = got["VQFR v2 batch 32 within 8 GiB (first calls included; fastest such row)"]
    assert within["measured"] == 7.9 and within["met"] is True and within["row"]["faces_per_s"] == 140.0
    over = {"sections": {"restorer:vqfr-v2": {"rows": [{"batch": 32, "faces_per_s": 170.0, "peak_gib": 9.5},
                                                       {"batch": 32, "faces_per_s": 150.0, "peak_gib": 7.5,
                                                        "first_calls_peak_gib": 8.4}]}}}
    missed = {t["target"]: t for t in bench.summarise_targets(over)}[
        "VQFR v2 batch 32 within 8 GiB (first calls included; fastest such row)"]
    assert missed["measured"] == 8.4 and missed["met"] is False  # measured and missed, not "not measured"
    assert got["degradation x4 faces/s (batch 256, device)"]["measured"] == 2500.0
    assert got["degradation x8 faces/s (batch 256, device)"]["met"] is False
    assert got["degradation x16 faces/s (batch 256, device)"]["met"] is None  # not measured
    assert got["MTCNN images/s (LFW 250x250, device)"]["measured"] == 450.0  # the CPU row is not the target's
    study = got["study-sized run seconds (estimated from the carried pairs)"]
    assert study["measured"] == 55.0 and study["met"] is True and study["row"]["which"] == "run_mtcnn_batched"
    assert got["VQFR v1 faces/s"]["met"] is None and got["DifFace released faces/s (100 steps + SwinIR)"]["met"] is None

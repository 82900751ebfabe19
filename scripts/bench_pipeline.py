"""End-to-end throughput: restorever's pipeline against a naive per-pair loop over the same work, same run.

The naive loop is what evaluation scripts commonly do: for every pair and condition, read both images, detect
landmarks, align, degrade the probe, restore it and embed both faces, with nothing shared between pairs. The pipeline
detects each image once, embeds each (image, condition) once, batches, and caches (a fresh cache here, so nothing is
reused from earlier runs). Both produce the same scores; the benchmark checks that.

    python scripts/bench_pipeline.py [--pairs 40] [--scales 8,16] [--restorer none] [--recognizer dlib]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _benchinfo import header
from restorever.alignment import align_to_template
from restorever.degradation import Degradation
from restorever.detectors import create_detector
from restorever.images import decode_image, to_tensor
from restorever.pipeline.evaluate import EvalConfig, evaluate, item_seed, limit_pairs
from restorever.protocol import load_protocol
from restorever.recognizers import create_recognizer
from restorever.restorers import create_restorer

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"


def naive(protocol, pairs, scales, restorer_name, recognizer_name, seed):
    detector = create_detector("mtcnn", "cpu")
    recognizer = create_recognizer(recognizer_name)
    restorer = create_restorer(restorer_name)
    degradation = Degradation("difface-test")

    def face(item):
        array = decode_image(protocol.read_bytes(item))
        det = detector.detect([array])[0]
        faces, lms = align_to_template([to_tensor([array])[0]], torch.tensor(det.landmarks[None]), "ffhq_512")
        return faces.clamp(0, 1), lms

    scores = {None: [], **{s: [] for s in scales}}
    for a, b in zip(pairs.a, pairs.b):
        for scale in [None, *scales]:
            fa, la = face(a)
            fb, lb = face(b)
            if scale is not None:
                fb = degradation.apply(fb, degradation.sample_params([b], scale, seed))
                fb = restorer.restore(fb, seeds=[item_seed(seed, b, scale, "restore")])
            ea, eb = recognizer.embed(fa, la)[0].numpy(), recognizer.embed(fb, lb)[0].numpy()
            scores[scale].append(-float(np.linalg.norm(ea - eb)))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", default=str(DEFAULT_ROOT))
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--scales", default="8,16")
    parser.add_argument("--restorer", default="none")
    parser.add_argument("--recognizer", default="dlib")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s]
    protocol = load_protocol("lfw", data_root=args.data_root)
    pairs = limit_pairs(protocol.pairs, args.pairs)
    n_faces = len(pairs) * (1 + len(scales)) * 2  # faces each approach must deliver to score every pair

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        record = evaluate(EvalConfig(protocol="lfw", data_root=args.data_root, limit_pairs=args.pairs,
                                     scales=scales, restorers=[args.restorer], recognizer=args.recognizer,
                                     batch_size=args.batch_size, cache_dir=cache, device="cpu"), progress=False)
        t_pipe = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = naive(protocol, pairs, scales, args.restorer, args.recognizer, 0)
    t_naive = time.perf_counter() - t0
    for cond in record["conditions"]:
        np.testing.assert_allclose(cond["scores"]["score"], ref[cond["scale"]], atol=1e-4)
    print(header({"pairs": len(pairs), "scales": scales, "restorer": args.restorer, "recognizer": args.recognizer,
                  "faces_per_approach": n_faces}))
    print(f"pipeline   : {t_pipe:7.1f} s  {n_faces / t_pipe:6.2f} faces/s  (stages: {record['timings']})")
    print(f"naive loop : {t_naive:7.1f} s  {n_faces / t_naive:6.2f} faces/s")
    print(f"speed-up   : {t_naive / t_pipe:.2f}x (goal >= 3x); scores identical to 1e-4")


if __name__ == "__main__":
    main()

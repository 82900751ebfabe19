"""End-to-end throughput: restorever's pipeline against a naive per-pair loop over the same work, same run.

The naive loop is what evaluation scripts commonly do: for every pair and condition, read both images, detect
landmarks, align, degrade the probe, restore it and embed both faces, with nothing shared between pairs. The pipeline
detects each image once, embeds each (image, condition) once, batches, and caches (a fresh cache here, so nothing is
reused from earlier runs). Both produce the same scores; the benchmark checks that.

    python scripts/bench_pipeline.py [--pairs 40] [--scales 8,16] [--restorer none] [--recognizer dlib]

Two more modes, for the CPU user's scale sweep (``--restorer none``, dlib):

``--mode stages`` times each stage on real LFW faces in one process (per image or per face: read + sha256, MTCNN,
align, degradation, the ``none`` restorer's route, uint8 conversion, dlib's shape predictor and descriptor, a
cache entry written with and without its fsync), and runs the ``none`` condition of one batch both ways, A (the
identity restorer run through ``restore_faces``, as before 2026-12-06) and B (the degraded faces passed through),
interleaved ``--repeat`` times, checking that the embeddings are equal bit for bit.

``--mode checkouts --a DIR --b DIR`` runs ``restorever eval`` (one process, fresh cache, ``--limit-pairs``) from two
source trees alternately, ``--repeat`` times each, and prints the wall times, their ratio and whether every pair
score is identical.
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


def stages(args, scales: list[int]) -> None:
    """Per-stage costs on real faces, and the ``none`` route A/B (see the module docstring)."""
    import hashlib
    import io
    import os

    import dlib

    from restorever.images import to_uint8
    from restorever.pipeline.cache import ArrayCache
    from restorever.pipeline.landmarks import align_items, apply_fallback_landmarks, landmark_stage
    from restorever.pipeline.stages import embed_faces, restore_faces

    protocol = load_protocol("lfw", data_root=args.data_root)
    items = list(dict.fromkeys(limit_pairs(protocol.pairs, 200).b))[:args.batch_size]
    n = len(items)
    rows: list[tuple[str, float, str]] = []  # (stage, seconds per unit, unit)
    with tempfile.TemporaryDirectory() as tmp:
        cache = ArrayCache(tmp)
        t0 = time.perf_counter()
        datas = [protocol.read_bytes(i) for i in items]
        [hashlib.sha256(d).hexdigest() for d in datas]
        rows.append(("read + sha256", (time.perf_counter() - t0) / n, "image"))
        info = landmark_stage(protocol, items[:1], detector="mtcnn", device="cpu", cache=cache,
                              progress=False)  # loads MTCNN (not timed)
        t0 = time.perf_counter()
        info.update(landmark_stage(protocol, items[1:], detector="mtcnn", device="cpu", cache=cache, progress=False))
        rows.append(("decode + MTCNN landmarks (1 thread) + cache entry", (time.perf_counter() - t0) / (n - 1),
                     "image"))
        apply_fallback_landmarks(protocol, info)
        t0 = time.perf_counter()
        faces, lms = align_items(protocol, items, info, "cpu")
        rows.append(("decode + align to ffhq_512", (time.perf_counter() - t0) / n, "image"))
        recognizer = create_recognizer(args.recognizer)
        none = create_restorer("none")
        degradation = Degradation("difface-test")
        params = {s: degradation.sample_params(items, s, 0) for s in scales}
        t0 = time.perf_counter()
        degraded = {s: degradation.apply(faces, params[s]) for s in scales}
        rows.append(("degradation (difface-test)", (time.perf_counter() - t0) / (n * len(scales)), "face"))
        t0 = time.perf_counter()
        for s in scales:
            restore_faces(none, degraded[s][list(range(n))], list(range(n)))
        rows.append(("'none' through restore_faces (before)", (time.perf_counter() - t0) / (n * len(scales)), "face"))
        t0 = time.perf_counter()
        arrays = to_uint8(faces)
        rows.append(("float -> uint8 for dlib", (time.perf_counter() - t0) / n, "face"))
        if args.recognizer == "dlib":
            boxes = recognizer.face_boxes(lms)
            t0 = time.perf_counter()
            shapes = [recognizer._predictor(a, dlib.rectangle(*[int(round(v)) for v in b]))
                      for a, b in zip(arrays, boxes)]
            rows.append(("dlib 5-point shape predictor", (time.perf_counter() - t0) / n, "face"))
            t0 = time.perf_counter()
            chips = [dlib.get_face_chip(a, sh, 150, 0.25) for a, sh in zip(arrays, shapes)]
            rows.append(("dlib 150x150 chip", (time.perf_counter() - t0) / n, "face"))
            t0 = time.perf_counter()
            [recognizer._net.compute_face_descriptor(c, 0) for c in chips]
            rows.append(("dlib ResNet descriptor", (time.perf_counter() - t0) / n, "face"))
        emb = embed_faces(recognizer, faces, lms)
        t0 = time.perf_counter()
        for j, e in enumerate(emb):
            cache.put("embedding", f"{j:064x}", e)
        rows.append(("cache entry (npz + sha256 + fsync + rename)", (time.perf_counter() - t0) / n, "entry"))
        t0 = time.perf_counter()
        for j, e in enumerate(emb):
            buf = io.BytesIO()
            np.savez(buf, data=e, sha256=np.array("0" * 64), key=np.array(f"{j:064x}"))
            path = os.path.join(tmp, f"nosync{j}.npz")
            with open(path + ".tmp", "wb") as fh:
                fh.write(buf.getvalue())
            os.replace(path + ".tmp", path)
        rows.append(("  the same without fsync (not used: for scale)", (time.perf_counter() - t0) / n, "entry"))

    print(header({"mode": "stages", "faces": n, "scales": scales, "recognizer": args.recognizer,
                  "load_average": os.getloadavg()}))
    for name, sec, unit in rows:
        print(f"{name:52s} {sec * 1000:9.1f} ms per {unit}")

    # A/B: the none condition of one batch at every scale, degrade + restore route + embed, interleaved
    def route_a():
        out = []
        for s in scales:
            d = degradation.apply(faces[list(range(n))], params[s])
            out.append(embed_faces(recognizer, restore_faces(none, d[list(range(n))], list(range(n))), lms))
        return out

    def route_b():
        out = []
        for s in scales:
            d = degradation.apply(faces, params[s])
            out.append(embed_faces(recognizer, d, lms))  # what evaluate now does for `none`
        return out

    times: dict[str, list[float]] = {"A": [], "B": []}
    cpu: dict[str, list[float]] = {"A": [], "B": []}  # process CPU seconds: less moved by other jobs than wall time
    results = {}
    for _ in range(args.repeat):
        for label, fn in (("A", route_a), ("B", route_b)):
            t0, c0 = time.perf_counter(), time.process_time()
            results[label] = fn()
            times[label].append(time.perf_counter() - t0)
            cpu[label].append(time.process_time() - c0)
    same = all(np.array_equal(a, b) for a, b in zip(results["A"], results["B"]))
    faces_done = n * len(scales)
    print(f"none condition, {faces_done} faces (degrade + restore route + embed), {args.repeat} interleaved repeats:")
    for label, what in (("A", "restore_faces(none)"), ("B", "passed through")):
        print(f"  {label} {what:20s}: wall best {min(times[label]):6.2f} s {[round(t, 2) for t in times[label]]}; "
              f"CPU best {min(cpu[label]):6.2f} s {[round(t, 2) for t in cpu[label]]}")
    print(f"  A/B wall best-vs-best {min(times['A']) / min(times['B']):.3f}x, CPU best-vs-best "
          f"{min(cpu['A']) / min(cpu['B']):.3f}x, CPU median of per-repeat ratios "
          f"{float(np.median([a / b for a, b in zip(cpu['A'], cpu['B'])])):.3f}x; embeddings identical: {same}")


def checkouts(args, scales: list[int]) -> None:
    """Alternate ``restorever eval`` from two source trees (fresh caches), compare wall time and every score."""
    import json
    import os
    import subprocess
    import sys

    trees = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    import resource

    times: dict[str, list[float]] = {"A": [], "B": []}
    cpu: dict[str, list[float]] = {"A": [], "B": []}  # user + system seconds of the child
    scores: dict[str, list] = {}

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for label, tree in trees.items():
                out = Path(tmp) / f"{label}{r}"
                cmd = [sys.executable, "-m", "restorever", "eval", "--protocol", "lfw", "--data-root", args.data_root,
                       "--recognizer", args.recognizer, "--restorer", args.restorer, "--scales",
                       ",".join(map(str, scales)), "--limit-pairs", str(args.pairs), "--batch-size",
                       str(args.batch_size), "--device", "cpu", "--cache-dir", str(out / "cache"), "--out",
                       str(out / "run"), "--no-progress"]
                env = {**os.environ, "PYTHONPATH": str(tree)}
                t0, c0 = time.perf_counter(), children_cpu()
                subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=tmp)
                times[label].append(time.perf_counter() - t0)
                cpu[label].append(children_cpu() - c0)
                record = json.loads((out / "run" / "results.json").read_text())
                scores.setdefault(label, [c["scores"] for c in record["conditions"]])
                assert [c["scores"] for c in record["conditions"]] == scores[label], "a tree changed its own scores"
    print(header({"mode": "checkouts", "a": trees["A"], "b": trees["B"], "pairs": args.pairs, "scales": scales,
                  "restorer": args.restorer, "recognizer": args.recognizer, "load_average": os.getloadavg()}))
    for label in trees:
        print(f"{label}: wall best {min(times[label]):6.1f} s {[round(t, 1) for t in times[label]]}; CPU best "
              f"{min(cpu[label]):6.1f} s {[round(t, 1) for t in cpu[label]]}")
    print(f"A/B wall best-vs-best {min(times['A']) / min(times['B']):.3f}x, CPU best-vs-best "
          f"{min(cpu['A']) / min(cpu['B']):.3f}x, CPU median of per-repeat ratios "
          f"{float(np.median([a / b for a, b in zip(cpu['A'], cpu['B'])])):.3f}x; every pair score identical: "
          f"{scores['A'] == scores['B']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["naive", "stages", "checkouts"], default="naive")
    parser.add_argument("--data-root", default=str(DEFAULT_ROOT))
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--scales", default="8,16")
    parser.add_argument("--restorer", default="none")
    parser.add_argument("--recognizer", default="dlib")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved A/B repeats (stages, checkouts)")
    parser.add_argument("--a", help="checkouts: source tree A (its folder holding restorever/)")
    parser.add_argument("--b", help="checkouts: source tree B")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s]
    if args.mode == "stages":
        return stages(args, scales)
    if args.mode == "checkouts":
        if not (args.a and args.b):
            parser.error("--mode checkouts needs --a DIR and --b DIR (two source trees)")
        return checkouts(args, scales)
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

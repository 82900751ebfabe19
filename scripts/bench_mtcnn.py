#!/usr/bin/env python
"""Benchmark: MTCNN landmarks with restorever.mtcnn.detect_batch vs facenet-pytorch's own detect, side by side.

Both run the same three networks on the same LFW photos in the same process, alternating, best of ``--repeat``
rounds each; the outputs are compared bit for bit. Besides images/s the script counts the PyTorch operator calls
per image (each one at least a kernel launch on a GPU), which is what the batched crops and NMS remove. On the CPU
the default keeps facenet-pytorch's crop loop; the table route (the GPU's default) is timed beside it.

    python scripts/bench_mtcnn.py                                   # 64 LFW photos, CPU, batch 32
    python scripts/bench_mtcnn.py --device cuda --n 512 --batch-sizes 32,128
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from restorever.detectors import create_detector
from restorever.mtcnn import detect_batch, detect_batch_facenet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchinfo import header  # noqa: E402


class OpCounter(TorchDispatchMode):
    """Counts ATen operator calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def lfw_photos(root: Path, n: int) -> np.ndarray:
    files = sorted((root / "lfw-deepfunneled").glob("*/*.jpg"))
    if not files:
        sys.exit(f"no LFW photos under {root / 'lfw-deepfunneled'}: pass --lfw (the folder holding lfw-deepfunneled/)")
    step = max(1, len(files) // n)
    return np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files[::step][:n]])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_all(route, photos: np.ndarray, batch_size: int) -> list:
    out = []
    for start in range(0, len(photos), batch_size):
        out += route(photos[start:start + batch_size])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw")
    ap.add_argument("--n", type=int, default=64, help="LFW photos (250x250)")
    ap.add_argument("--batch-sizes", default="32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    nets = create_detector("mtcnn", device=str(device))._mtcnn
    photos = lfw_photos(args.lfw, args.n)
    routes = {"facenet-pytorch": lambda b: detect_batch_facenet(b, nets),
              "restorever": lambda b: detect_batch(b, nets.pnet, nets.rnet, nets.onet)}
    if device.type == "cpu":  # the default there is the crop loop; show the table route (the GPU's) beside it
        routes["restorever, crops=table"] = lambda b: detect_batch(b, nets.pnet, nets.rnet, nets.onet, crops="table")
    print(header({"device": str(device), "photos": len(photos)}))
    print("| batch | route | images/s | operator calls per image | same output as facenet-pytorch |")
    print("|---|---|---|---|---|")
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        outputs, best, ops = {}, {name: float("inf") for name in routes}, {}
        for name, route in routes.items():  # warm-up (and the area rule, found once per device)
            outputs[name] = run_all(route, photos[:bs], bs)
        for _ in range(args.repeat):
            for name, route in routes.items():
                sync(device)
                t0 = time.perf_counter()
                outputs[name] = run_all(route, photos, bs)
                sync(device)
                best[name] = min(best[name], time.perf_counter() - t0)
        for name, route in routes.items():
            with OpCounter() as counter:
                run_all(route, photos[:bs], bs)
            ops[name] = counter.calls / min(bs, len(photos))
        for name in routes:
            same = "-" if name == "facenet-pytorch" else all(
                np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
                for a, b in zip(outputs[name], outputs["facenet-pytorch"]))
            print(f"| {bs} | {name} | {len(photos) / best[name]:.1f} | {ops[name]:.0f} | {same} |")
        for name in list(routes)[1:]:
            print(f"# batch {bs}, {name}: speed-up {best['facenet-pytorch'] / best[name]:.2f}x, operator calls "
                  f"{ops['facenet-pytorch'] / ops[name]:.1f}x fewer", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark: restorever's batched degradation vs a plain per-image OpenCV loop of the same steps.

Both run on the same 512x512 faces with the same sampled parameters and noise, in the same process,
alternating, and the best of ``--repeat`` rounds is reported for each (this machine may be shared). The
outputs are compared too (mean absolute difference in grey levels).

    python scripts/bench_degradation.py                       # 64 LFW faces, CPU
    python scripts/bench_degradation.py --device cuda --n 2048 --batch-size 256
    python scripts/bench_degradation.py --device-path-cpu --n 32   # device path: per-item vs batched, CPU tensors
    python scripts/bench_degradation.py --jpeg --device cuda        # JPEG alone: restorever.jpeg vs OpenCV
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from restorever.degradation import Degradation, gaussian_kernels, lr_size

ROOT = Path(__file__).resolve().parents[1]


def opencv_loop(images_bgr: list[np.ndarray], records: list[dict], noises: list[np.ndarray]) -> list[np.ndarray]:
    """DifFace's face_degradation, one image at a time, in OpenCV/numpy (float32 BGR in [0, 1])."""
    out = []
    ax = np.arange(-20.0, 21.0)
    xx, yy = np.meshgrid(ax, ax)
    grid = np.stack([xx, yy], -1)
    for im, rec, noise in zip(images_bgr, records, noises):
        h, w = im.shape[:2]
        c, s = np.cos(rec["theta"]), np.sin(rec["theta"])
        rot = np.array([[c, -s], [s, c]])
        cov = rot @ np.diag([rec["sigma_x"] ** 2, rec["sigma_y"] ** 2]) @ rot.T
        k = np.exp(-0.5 * np.sum((grid @ np.linalg.inv(cov)) * grid, 2))
        lq = cv2.filter2D(im, -1, k / k.sum())
        lq = cv2.resize(lq, (int(w // rec["scale"]), int(h // rec["scale"])), interpolation=cv2.INTER_LINEAR)
        lq = np.clip(lq + noise * np.float32(rec["noise_sigma"]) / 255.0, 0, 1)
        _, enc = cv2.imencode(".jpg", (lq * 255.0).round().astype(np.uint8),
                              [int(cv2.IMWRITE_JPEG_QUALITY), rec["jpeg_quality"]])
        lq = np.float32(cv2.imdecode(enc, cv2.IMREAD_COLOR)) / 255.0
        lq = cv2.resize(lq, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(np.clip((lq * 255.0).round(), 0, 255).astype(np.uint8))
    return out


class PerItemDevicePath(Degradation):
    """The device path as it was before batching: steps 1-3 one item at a time (:meth:`Degradation._low_res_u8`,
    the CPU path's route), stacked per low-resolution size; JPEG and enlargement are the current ones."""

    def _low_res_groups(self, images, params, kernels, work):
        small = [self._low_res_u8(images[i], params, i, kernels[i], work) for i in range(len(params))]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, u8 in enumerate(small):
            groups.setdefault(tuple(u8.shape), []).append(i)
        return [(idx, torch.stack([small[i] for i in idx])) for idx in groups.values()]


def compare_device_paths(preset: str, batches: list, repeat: int) -> None:
    """Per-item vs batched device path (``Degradation._apply_device``) on CPU tensors, same data, alternating;
    prints faces/s (best round) for steps 1-3 alone and for the whole path, the ratios, and the outputs' agreement."""
    old, new = PerItemDevicePath(preset), Degradation(preset)
    work = torch.float32
    prepared = [(x, p, gaussian_kernels(p.sigma_x, p.sigma_y, p.theta, p.kernel_size)) for x, p in batches]
    n = sum(len(p) for _, p, _ in prepared)

    def steps_1_3(deg: Degradation) -> None:
        for x, p, k in prepared:
            deg._low_res_groups(x, p, k, work)

    def whole(deg: Degradation) -> torch.Tensor:
        outs = []
        for x, p, k in prepared:
            outs.append(torch.empty_like(x))
            deg._apply_device(x, p, k, work, outs[-1])
        return torch.cat(outs)

    whole(old), whole(new)  # warm-up
    best = {key: float("inf") for key in ("old 1-3", "new 1-3", "old all", "new all")}
    for _ in range(repeat):
        for key, fn, deg in (("old 1-3", steps_1_3, old), ("new 1-3", steps_1_3, new), ("old all", whole, old),
                             ("new all", whole, new)):
            t0 = time.perf_counter()
            fn(deg)
            best[key] = min(best[key], time.perf_counter() - t0)
    diff = ((whole(old) - whole(new)).abs() * 255).round()
    print(f"steps 1-3, per item:   {n / best['old 1-3']:8.1f} faces/s")
    print(f"steps 1-3, batched:    {n / best['new 1-3']:8.1f} faces/s   ratio {best['old 1-3'] / best['new 1-3']:.2f}x")
    print(f"device path, per item: {n / best['old all']:8.1f} faces/s")
    print(f"device path, batched:  {n / best['new all']:8.1f} faces/s   ratio {best['old all'] / best['new all']:.2f}x")
    print(f"outputs:               {float((diff > 0).double().mean()) * 100:.3f} % of values differ, "
          f"at most {float(diff.max()):.0f} grey levels")


def compare_jpeg(faces_u8: np.ndarray, scales: list[float], quality: int, device: torch.device, repeat: int) -> None:
    """JPEG alone at each scale's low-resolution size: :func:`restorever.jpeg.jpeg_roundtrip` on ``device`` (one
    batched call) vs OpenCV one image at a time; asserts identical bytes and prints faces/s and the ratio."""
    from restorever.jpeg import jpeg_roundtrip

    for scale in scales:
        h, w = lr_size(512, 512, scale)
        small = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in faces_u8])
        batch = torch.from_numpy(small).permute(0, 3, 1, 2).contiguous().to(device)

        def ours() -> torch.Tensor:
            out = jpeg_roundtrip(batch, quality)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return out

        def opencv() -> list[np.ndarray]:
            params = [int(cv2.IMWRITE_JPEG_QUALITY), quality]
            return [cv2.imdecode(cv2.imencode(".jpg", np.ascontiguousarray(a[..., ::-1]), params)[1], cv2.IMREAD_COLOR)
                    for a in small]

        mine, ref = ours(), opencv()  # warm-up, and the bytes compared
        assert np.array_equal(mine.permute(0, 2, 3, 1).flip(-1).cpu().numpy(), np.stack(ref)), scale
        best = {"ours": float("inf"), "opencv": float("inf")}
        for _ in range(repeat):
            for key, fn in (("ours", ours), ("opencv", opencv)):
                t0 = time.perf_counter()
                fn()
                best[key] = min(best[key], time.perf_counter() - t0)
        n = len(small)
        print(f"x{scale:g} ({h}x{w}), q={quality}: restorever.jpeg on {device.type} {n / best['ours']:9.1f} faces/s, "
              f"OpenCV loop {n / best['opencv']:9.1f} faces/s, ratio {best['opencv'] / best['ours']:.2f}x, "
              "identical bytes")


def load_faces(root: Path, n: int) -> tuple[np.ndarray, list[str]]:
    """``n`` LFW photos enlarged to 512x512 (uint8 RGB), or smooth random images when LFW is absent."""
    files = sorted(root.glob("*/*_0001.jpg"))[:n] if root.is_dir() else []
    if len(files) < n:
        print(f"note: {root} has {len(files)} faces; filling up with synthetic images")
    imgs = [cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (512, 512), interpolation=cv2.INTER_CUBIC)
            for f in files]
    rng = np.random.default_rng(0)
    while len(imgs) < n:
        imgs.append(cv2.resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), (512, 512)))
    ids = [f.stem for f in files] + [f"synthetic_{i}" for i in range(len(files), n)]
    return np.stack(imgs), ids


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"{cv2.getNumThreads()} OpenCV threads")
    if hasattr(os, "getloadavg"):
        text += f", 1-min load average {os.getloadavg()[0]:.1f}"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="number of faces")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--scales", default="4,8,16,24,32", help="scales, cycled over the faces")
    ap.add_argument("--preset", default="difface-test")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the best round of each method is reported")
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (0: leave the defaults)")
    ap.add_argument("--device-path-cpu", action="store_true",
                    help="instead: time the device path per item vs batched, on CPU tensors (no OpenCV loop)")
    ap.add_argument("--jpeg", action="store_true",
                    help="instead: time JPEG alone, restorever.jpeg on --device vs the OpenCV loop")
    ap.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw" / "lfw-deepfunneled")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    if args.device_path_cpu:
        args.device = "cpu"
    dev = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(dev)
    faces_u8, ids = load_faces(args.lfw, args.n)
    scales = [float(s) for s in args.scales.split(",")]
    deg = Degradation(args.preset)
    params_per_scale = {s: deg.sample_params(ids, s, seed=0) for s in scales}
    params = [params_per_scale[scales[i % len(scales)]][i] for i in range(len(ids))]
    images = torch.from_numpy(faces_u8).permute(0, 3, 1, 2).contiguous()

    # the OpenCV loop gets the same parameters and the same noise draws
    records = [p.to_records()[0] for p in params]
    noises = []
    for p in params:
        h, w = lr_size(512, 512, float(p.scale[0]))
        noises.append(np.ascontiguousarray(deg.noise(p, 0, (3, h, w)).permute(1, 2, 0).numpy()[:, :, ::-1]))
    bgr = [np.ascontiguousarray(f[:, :, ::-1]).astype(np.float32) / 255.0 for f in faces_u8]

    # both sides start from float images in memory (the OpenCV loop's BGR float arrays are made above)
    batches = [(images[i:i + args.batch_size].to(device).float().div_(255.0),
                type(params[0]).cat(params[i:i + args.batch_size])) for i in range(0, len(ids), args.batch_size)]

    if args.jpeg:
        print(f"machine:  {machine(device)}; commit {commit()}; torch {torch.__version__}")
        compare_jpeg(faces_u8, scales, 50, device, args.repeat)
        return
    if args.device_path_cpu:
        print(f"machine:  {machine(device)}; commit {commit()}; torch {torch.__version__}")
        print(f"workload: {len(ids)} faces 512x512, preset {args.preset}, scales {args.scales}, batch "
              f"{args.batch_size}, CPU tensors, best of {args.repeat}")
        compare_device_paths(args.preset, batches, args.repeat)
        return

    def run_batched() -> torch.Tensor:
        outs = [deg.apply(batch, bp) for batch, bp in batches]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return torch.cat(outs)

    run_batched()  # warm-up (FFT plans, CUDA context)
    best_b = best_r = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        batched = run_batched()
        best_b = min(best_b, time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = opencv_loop(bgr, records, noises)
        best_r = min(best_r, time.perf_counter() - t0)

    mine = (batched.cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    mad = float(np.mean([np.abs(m.astype(np.int16) - r[:, :, ::-1].astype(np.int16)).mean()
                         for m, r in zip(mine, ref)]))
    fps_b, fps_r = len(ids) / best_b, len(ids) / best_r
    print(f"date:            {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine:         {machine(device)}")
    print(f"software:        torch {torch.__version__}, OpenCV {cv2.__version__}, python {platform.python_version()}, "
          f"commit {commit()}")
    print(f"workload:        {len(ids)} faces 512x512, preset {args.preset}, scales {args.scales}, "
          f"batch {args.batch_size}, device {device}, best of {args.repeat}")
    print(f"batched:         {fps_b:8.1f} faces/s")
    print(f"OpenCV loop:     {fps_r:8.1f} faces/s")
    print(f"ratio:           {fps_b / fps_r:8.2f}x")
    print(f"mean |diff|:     {mad:.4f} grey levels")


if __name__ == "__main__":
    main()

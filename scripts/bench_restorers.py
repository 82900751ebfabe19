#!/usr/bin/env python
"""Throughput of restorers: faces per second at several batch sizes, and peak memory per batch size.

Examples::

    python scripts/bench_restorers.py --restorers vqfr-v2 --batch-sizes 1,8,32 --device cuda
    python scripts/bench_restorers.py --restorers vqfr-v2,difface --batch-sizes 1,8 --device cpu --random-weights \\
        --repeats 1 --warmup 0 --option fidelity_ratio=1.0 --json bench.json
    python scripts/bench_restorers.py --restorers gfpgan-v1.4,codeformer --batch-sizes 1 --device cpu \\
        --random-weights --threads 1 --repeats 2 --warmup 1

Each restorer is created by name through the registry (``create_restorer``); ``--random-weights`` builds the full
released configuration with random weights (``pretrained=False``; no checkpoint needed; timing does not depend on
weight values). Inputs are random 512x512 faces on the chosen device. Reported: median seconds per call, faces/s,
the speed-up over batch 1 (per face), and the peak memory of one call (CUDA: ``max_memory_allocated``; CPU: sampled
resident set size). Restorers that count their compute (``flops_per_face()``: DifFace, GFPGAN, CodeFormer) also get
the achieved GFLOP/s. The header records date, machine, torch version, device and git commit, so figures can be
compared across machines. Published reference: VQFR (v1) takes 0.36 s per 512x512 face on an A100 (paper).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from restorever.memory import PeakMemoryMonitor  # generic: works for any device and restorer

PUBLISHED_SECONDS_PER_FACE = {"vqfr-v1": 0.36}  # paper, A100, one face at a time
PUBLISHED_DEVICE = "A100"


def create_by_name(name: str, **kwargs: Any):
    """``restorever.restorers.create_restorer``; if a registered sibling backend cannot be imported yet, fall back to
    the importable backend modules of the registry."""
    import importlib

    from restorever.restorers import REGISTRY, create_restorer

    try:
        return create_restorer(name, **kwargs)
    except ModuleNotFoundError as exc:
        logging.warning("registry incomplete (%s); looking for %s in the importable backends", exc, name)
        for module_name in getattr(REGISTRY, "_modules", []):
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError:
                continue
            if name in getattr(module, "CARDS", {}):
                weights = kwargs.pop("weights", None)
                if isinstance(weights, str):
                    from restorever.hub import parse_weights_option
                    weights = parse_weights_option(weights)
                return module.create(name, weights=weights, **{k: v for k, v in kwargs.items() if v is not None})
        raise


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--option expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def environment(device: torch.device) -> dict[str, Any]:
    """Date, machine, versions, device and commit of this run."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, " \
                      f"{torch.get_num_threads()} torch threads"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "device": str(device), "device_name": device_name, "commit": commit,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(restorer, batch_sizes: list[int], *, device: torch.device, warmup: int, repeats: int,
              memory: bool) -> list[dict[str, Any]]:
    """Rows of {batch_size, seconds (median per call), faces_per_s, peak memory...} for one restorer."""
    rows = []
    size = restorer.card.input_size
    gen = torch.Generator().manual_seed(0)
    for batch in batch_sizes:
        images = torch.rand(batch, 3, size, size, generator=gen).to(device)
        seeds = list(range(batch))
        for _ in range(warmup):
            restorer.restore(images, seeds=seeds)
        _sync(device)
        times = []
        monitor = PeakMemoryMonitor(device) if memory else contextlib.nullcontext()
        with monitor:  # the timed calls are the measured ones (the CPU sampler costs well under 1 %)
            for _ in range(repeats):
                start = time.perf_counter()
                restorer.restore(images, seeds=seeds)
                _sync(device)
                times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        row: dict[str, Any] = {"batch_size": batch, "seconds": seconds, "all_seconds": times,
                               "faces_per_s": batch / seconds}
        if memory:
            row.update(peak_bytes=monitor.peak_bytes, activation_bytes=monitor.activation_bytes,
                       method=monitor.method)
        rows.append(row)
        logging.info("batch %d: %.3f s per call, %.3f faces/s", batch, seconds, batch / seconds)
    base = rows[0]["faces_per_s"] if rows else None
    flops = restorer.flops_per_face() if hasattr(restorer, "flops_per_face") else None
    for row in rows:
        row["speedup_vs_first"] = row["faces_per_s"] / base if base else None
        row["gflop_per_face"] = flops / 1e9 if flops else None
        row["gflop_per_s"] = row["faces_per_s"] * flops / 1e9 if flops else None
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restorers", default="vqfr-v2", help="comma-separated registry names")
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes (first = baseline)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--random-weights", action="store_true", help="full config, random weights, no checkpoint")
    parser.add_argument("--weights", default=None, help="FILE or ROLE=FILE,... (as the CLI's --weights)")
    parser.add_argument("--option", action="append", default=[], type=_parse_option,
                        help="restorer option KEY=VALUE (JSON value), e.g. fidelity_ratio=1.0, precision=fp32")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per batch size")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per batch size (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    options = dict(args.option)
    env = environment(device)
    print("# restorever restorer benchmark")
    for key, value in env.items():
        print(f"# {key}: {value}")
    print(f"# options: {options}, random_weights={args.random_weights}, warmup={args.warmup}, "
          f"repeats={args.repeats}")

    results = {"environment": env, "options": options, "random_weights": args.random_weights, "restorers": {}}
    for name in [n.strip() for n in args.restorers.split(",") if n.strip()]:
        kwargs = dict(options)
        if args.random_weights:
            kwargs["pretrained"] = False
        restorer = create_by_name(name, weights=args.weights, device=device, **kwargs)
        rows = bench_one(restorer, batch_sizes, device=device, warmup=args.warmup, repeats=args.repeats,
                         memory=not args.no_memory)
        results["restorers"][name] = rows
        print(f"\n## {name}")
        print("| batch | s/call | faces/s | x vs batch 1 | GFLOP/s | peak memory (GiB) | activations (GiB) |")
        print("|------:|-------:|--------:|-------------:|--------:|------------------:|------------------:|")
        for row in rows:
            peak = f"{row['peak_bytes'] / 2 ** 30:.2f}" if row.get("peak_bytes") else "-"
            act = f"{row['activation_bytes'] / 2 ** 30:.2f}" if row.get("activation_bytes") is not None else "-"
            rate = f"{row['gflop_per_s']:.1f}" if row.get("gflop_per_s") else "-"
            print(f"| {row['batch_size']} | {row['seconds']:.3f} | {row['faces_per_s']:.3f} | "
                  f"{row['speedup_vs_first']:.2f} | {rate} | {peak} | {act} |")
        if rows and rows[0].get("method"):
            print(f"memory method: {rows[0]['method']}")
        published = PUBLISHED_SECONDS_PER_FACE.get(name)
        if published and device.type == "cuda":
            best = max(r["faces_per_s"] for r in rows)
            print(f"published: {published} s/face = {1 / published:.2f} faces/s on an {PUBLISHED_DEVICE} (batch 1); "
                  f"best here {best:.2f} faces/s = {best * published:.1f}x")
        del restorer
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

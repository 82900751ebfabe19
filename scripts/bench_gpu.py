#!/usr/bin/env python
"""One-shot GPU benchmark: every GPU figure of issues 13 and 18, printed and written as JSON as it is measured.

    python scripts/bench_gpu.py --data .devdata --out bench_gpu.json                 # the GPU run (~6 min, H200)
    python scripts/bench_gpu.py --data .devdata --out q.json --device cpu --quick    # exercise every path on a CPU

Sections, in priority order (the most wanted figures first; each one runs in ``try/except``, records its error and
lets the next one run; once ``--budget-s`` seconds have passed the remaining sections are recorded as skipped):

1. ``restorer:vqfr-v2``: faces/s at batch 1/8/32 per precision (and the channels_last / half-encoder / compile
   levers) with ``torch.cuda.max_memory_allocated`` peak; released configuration, random weights.
2. ``difface``: seconds per UNet step and for the SwinIR estimator per precision and batch, extrapolated to the
   released 100 steps (faces/s) and to TFLOP/s with the counted FLOPs per face (38.0 TFLOP).
3. ``degradation``: faces/s per scale on the device (batched path) per JPEG backend (OpenCV on host threads,
   restorever.jpeg on the device) vs the CPU path (measured on a small batch), the device output's difference from
   the CPU path (max grey levels, fraction of pixels differing), and the seconds of the device path's parts.
4. ``recognizers``: IResNet-50/100 faces/s at batch 256 in fp32 (TF32 on and off), fp16 and bf16, and fp16 with
   channels_last and compile (the ``--recognizer-option`` levers).
5. ``e2e``: ``restorever eval --protocol pairs-csv`` on the LFW subset (restorers none + vqfr-v2 with a synthetic
   random-weight checkpoint, arcface-r50 with a synthetic checkpoint from the manifest) with its stage timings,
   with per-image ``mtcnn`` and with ``--detector mtcnn-batched``; then the same pairs with restorer none on the
   CPU and on the device, and their pair-score differences.
6. ``consistency``: CPU vs device, fp32, per stage on real photos: landmarks (px), warp (grey levels), embedding
   (cosine, TF32 on and off).
7. ``mtcnn``: images/s on LFW 250x250 photos (device and a small CPU sample).
8. ``half_precision``: each restorer's and recognizer's half-precision output against its fp32 output on real
   aligned LFW faces (PSNR, max abs diff, identity cosine) -- the errors the CUDA tests' tolerances come from.
9. ``restorer:vqfr-v1`` (and ``gfpgan-v1.4``, ``codeformer`` when registered): as section 1.

Random weights: speed does not depend on weight values, but accuracy figures with random weights say how much
half precision perturbs *these* networks, not the released ones; the report says so next to each figure.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BF16_MATMUL_TFLOPS_H200 = 790.0  # dense bf16 matrix product measured on one H200 (issue 18)


# ------------------------------------------------------------------------------------------------------ harness
class Skipped(Exception):
    """Raised inside a section to record it as skipped (with the reason) rather than failed."""


class Bench:
    """Holds the results, the time budget and the JSON file (rewritten after every section)."""

    def __init__(self, out: Path | None, budget_s: float, device: torch.device, quick: bool):
        self.out = out
        self.budget_s = budget_s
        self.device = device
        self.quick = quick
        self.start = time.perf_counter()
        self.results: dict[str, Any] = {"environment": environment(device), "sections": {}}
        self.write()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def write(self) -> None:
        self.results["elapsed_s"] = round(self.elapsed(), 2)
        if self.out is not None:
            tmp = self.out.with_suffix(self.out.suffix + ".tmp")
            tmp.write_text(json.dumps(self.results, indent=1, default=_jsonable))
            tmp.replace(self.out)

    def run(self, name: str, fn: Callable[[dict], Any], *, min_left_s: float = 5.0) -> None:
        """Run section ``fn(record)``; ``record`` is a dict the section fills as it goes (kept even on failure)."""
        record: dict[str, Any] = {}
        self.results["sections"][name] = record
        if self.left() < min_left_s:
            record["skipped"] = f"time budget: {self.elapsed():.0f} s of {self.budget_s:.0f} s used"
            print(f"\n## {name}: skipped ({record['skipped']})", flush=True)
            self.write()
            return
        print(f"\n## {name}", flush=True)
        t0 = time.perf_counter()
        try:
            fn(record)
        except Skipped as exc:
            record["skipped"] = str(exc)
            print(f"skipped: {exc}", flush=True)
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the others
            record["error"] = f"{type(exc).__name__}: {exc}"
            record["traceback"] = traceback.format_exc(limit=6)[-3000:]
            print(f"ERROR in {name}: {type(exc).__name__}: {exc}", flush=True)
        finally:
            record["section_s"] = round(time.perf_counter() - t0, 2)
            release(self.device)
            self.write()

    def check(self, need_s: float = 2.0) -> None:
        """Stop the current section (as skipped) when the budget is used up."""
        if self.left() < need_s:
            raise Skipped(f"time budget used up ({self.elapsed():.0f} s of {self.budget_s:.0f} s)")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, (torch.dtype, torch.device, Path)):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return repr(obj)


def environment(device: torch.device) -> dict[str, Any]:
    """Date, GPU, versions, commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                                timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
           else None, "device": str(device), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "commit": commit}
    try:
        import restorever
        env["restorever"] = getattr(restorever, "__version__", "?")
        env["restorever_file"] = str(Path(restorever.__file__).parent)
    except Exception as exc:  # noqa: BLE001
        env["restorever"] = f"import failed: {exc}"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                   sm_count=props.multi_processor_count, capability=f"{props.major}.{props.minor}",
                   cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return env


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    import gc
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def timeit(fn: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int) -> tuple[float, list[float]]:
    """Median wall seconds of ``fn()`` (device synchronised around each call) after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


@contextlib.contextmanager
def peak_memory(device: torch.device, box: dict):
    """Fill ``box['peak_gib']`` with ``max_memory_allocated`` over the block (CUDA only)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield
    if device.type == "cuda":
        sync(device)
        box["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3)


@contextlib.contextmanager
def tf32(enabled: bool):
    """Allow (or forbid) TF32 in cuDNN convolutions and cuBLAS matmuls inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = enabled
        torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


# ------------------------------------------------------------------------------------------------------ data
class Data:
    """The ``.devdata`` folder: LFW photos, pairs.csv, manifests, CPU landmarks."""

    def __init__(self, root: Path):
        self.root = root
        self.lfw = root / "lfw"
        self.pairs_csv = root / "pairs.csv"
        if not self.pairs_csv.is_file():
            raise FileNotFoundError(f"{self.pairs_csv} missing: run scripts/prepare_devdata.py first (--data DIR)")
        rows = [line.split(",") for line in self.pairs_csv.read_text().splitlines()[1:] if line.strip()]
        self.pairs = [(a, b, int(s), int(f)) for a, b, s, f in rows]
        self.images = sorted({p for a, b, _, _ in self.pairs for p in (a, b)})
        lm_file = root / "landmarks_cpu.json"
        self.cpu_landmarks = json.loads(lm_file.read_text()) if lm_file.is_file() else {}

    def read(self, rels: list[str]) -> list[np.ndarray]:
        """HxWx3 uint8 RGB arrays."""
        from restorever.images import read_image
        return [read_image(self.lfw / r) for r in rels]

    def manifest(self, depth: int) -> dict:
        return json.loads((self.root / "manifests" / f"iresnet{depth}_state_dict.json").read_text())


def synthetic_iresnet_checkpoint(manifest: dict, path: Path, seed: int = 0) -> Path:
    """A random ``backbone.pth`` with the manifest's keys and shapes."""
    from restorever.hub import random_state_dict

    torch.save(random_state_dict(manifest["state_dict"], seed=seed), path)
    return path


def aligned_faces(data: Data, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real LFW photos aligned to ffhq_512 on ``device`` (landmarks: CPU MTCNN from .devdata, else MTCNN here):
    ``(faces [n,3,512,512] in [0,1], landmarks in crop [n,5,2])``."""
    from restorever.alignment import align_to_template
    from restorever.images import to_tensor

    rels = [r for r, lm in data.cpu_landmarks.items() if lm is not None][:n]
    lms = [data.cpu_landmarks[r] for r in rels]
    if len(rels) < n:
        from restorever.detectors import create_detector
        det = create_detector("mtcnn", device=str(device))
        extra = [r for r in data.images if r not in rels][: 2 * n]
        for r, d in zip(extra, det.detect(data.read(extra))):
            if d is not None and len(rels) < n:
                rels.append(r)
                lms.append(d.landmarks.tolist())
    arrays = data.read(rels)
    tensors = [to_tensor([a])[0].to(device) for a in arrays]
    faces, crop_lms = align_to_template(tensors, torch.tensor(lms, dtype=torch.float32), "ffhq_512")
    return faces.clamp_(0, 1), crop_lms


# ------------------------------------------------------------------------------------------------------ sections
def restorer_precisions(name: str) -> list[str]:
    """The precision values a restorer accepts (its module's ``PRECISIONS`` when declared)."""
    from restorever.restorers import REGISTRY
    try:
        module = REGISTRY.module_of(name) if hasattr(REGISTRY, "module_of") else None
    except Exception:  # noqa: BLE001
        module = None
    if module is None:
        import importlib
        for mod_name in getattr(REGISTRY, "_modules", []):
            try:
                mod = importlib.import_module(mod_name)
            except Exception:  # noqa: BLE001
                continue
            if name in getattr(mod, "CARDS", {}):
                module = mod
                break
    declared = getattr(module, "PRECISIONS", None)
    return list(declared) if declared else ["fp32", "bf16", "fp16", "auto"]


def make_restorer(name: str, device: torch.device, **kwargs: Any):
    """Released configuration, random weights, on ``device``; drops options the backend does not take."""
    from restorever.restorers import create_restorer
    try:
        return create_restorer(name, pretrained=False, device=device, **kwargs)
    except TypeError as exc:
        if "precision" in kwargs and "precision" in str(exc):
            kwargs.pop("precision")
            return create_restorer(name, pretrained=False, device=device, **kwargs)
        raise


def quick_kwargs(name: str) -> dict[str, Any]:
    """Reduced configurations for ``--quick`` (the code paths, not the figures; empty for unknown backends)."""
    if name == "vqfr-v2":
        from restorever.restorers.vqfr import V2_CONFIG
        return {"config": {**V2_CONFIG, "base_channels": 32, "channel_multipliers": [1] * 6, "num_enc_blocks": 1,
                           "num_dec_blocks": 1}}
    if name == "vqfr-v1":
        from restorever.restorers.vqfr import V1_CONFIG
        q = dict(V1_CONFIG["quantizer_opt"]["Level_32"], in_dim=32, code_dim=32, num_code=64)
        return {"config": {**V1_CONFIG, "base_channels": 32, "channel_multipliers": [1] * 6, "encoder_num_blocks": 1,
                           "decoder_num_blocks": 1, "quantizer_opt": {"Level_32": q}}}
    if name == "difface":
        return {"unet_config": {"image_size": 128, "channel_mult": [1, 2, 2, 2, 2, 2, 2],
                                "num_res_blocks": [1] * 7},
                "estimator_config": {"depths": [1], "num_heads": [6]}}
    return {}


def section_restorer(bench: Bench, name: str, rec: dict) -> None:
    dev = bench.device
    batches = [1] if bench.quick else [1, 8, 32]
    precisions = restorer_precisions(name)
    extra = quick_kwargs(name) if bench.quick else {}
    if bench.quick:  # CPU half precision is very slow: one half-precision run for the main restorer only
        precisions = [p for p in precisions if p == "fp32" or (p == "bf16" and name == "vqfr-v2")] or precisions[:1]
    warmup, repeats = (0, 1) if bench.quick else (1, 2)
    rec["precisions"] = precisions
    rec["rows"] = []
    variants: list[tuple[str, dict]] = [(p, {}) for p in precisions]
    if name.startswith("vqfr") and not bench.quick:  # the other speed levers, on top of cast-once half precision
        variants += [("bf16", {"channels_last": True}), ("bf16", {"autocast_encoder": True, "channels_last": True}),
                     ("fp16", {"autocast_encoder": True, "channels_last": True}),
                     ("bf16", {"compile": True, "channels_last": True})]  # compiled: largest batch only
    print("| precision | options | batch | s/call | faces/s | peak GiB |")
    gen = torch.Generator().manual_seed(0)
    for precision, options in variants:
        bench.check(5)
        try:
            restorer = make_restorer(name, dev, precision=precision, **options, **extra)
        except Exception as exc:  # noqa: BLE001
            rec["rows"].append({"precision": precision, "options": options, "error": f"{type(exc).__name__}: {exc}"})
            continue
        size = restorer.card.input_size
        for batch in (batches[-1:] if options.get("compile") else batches):
            bench.check(3)
            row: dict[str, Any] = {"precision": precision, "options": options, "batch": batch}
            try:
                x = torch.rand(batch, 3, size, size, generator=gen).to(dev)
                seeds = list(range(batch))
                with peak_memory(dev, row):
                    sec, times = timeit(lambda: restorer.restore(x, seeds=seeds), dev, warmup=warmup,
                                        repeats=repeats)
                row.update(seconds=round(sec, 5), all_seconds=[round(t, 5) for t in times],
                           faces_per_s=round(batch / sec, 3))
                print(f"| {precision} | {options or ''} | {batch} | {sec:.4f} | {batch / sec:.2f} | "
                      f"{row.get('peak_gib', '-')} |", flush=True)
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                print(f"| {precision} | {options or ''} | {batch} | error: {row['error'][:120]} |", flush=True)
                rec["rows"].append(row)
                if is_oom(exc):
                    release(dev)
                    continue
                break
            rec["rows"].append(row)
            bench.write()
        del restorer
        release(dev)
    ok = [r for r in rec["rows"] if "faces_per_s" in r]
    if ok:
        best = max(ok, key=lambda r: r["faces_per_s"])
        rec["best"] = {k: best[k] for k in ("precision", "options", "batch", "faces_per_s") if k in best}


def section_difface(bench: Bench, rec: dict) -> None:
    from restorever.restorers.difface import unet_flops_per_face

    dev = bench.device
    quick = bench.quick
    steps_lo, steps_hi = (1, 2) if quick else (2, 6)
    batches = [1] if quick else [1, 8]
    big = 16  # one larger batch for the two main variants
    precisions = restorer_precisions("difface")
    if quick:  # CPU half precision is very slow; the half-precision path runs in the half_precision section
        precisions = [p for p in precisions if p == "fp32"]
    kwargs = quick_kwargs("difface") if quick else {}  # quick: a small 128x128 UNet and a 1-block SwinIR
    flops_released = unet_flops_per_face()
    rec.update(flops_per_face_released=flops_released, steps_timed=[steps_lo, steps_hi], rows=[],
               note="per-face rate extrapolated: estimator + 100 UNet steps (released start 100 of ddim250)")
    print(f"released FLOPs per face: {flops_released / 1e12:.1f} TFLOP")
    print("| precision | options | batch | s/step | estimator s | faces/s (100 steps) | TFLOP/s | peak GiB |")
    gen = torch.Generator().manual_seed(0)
    variants = [(p, {}) for p in precisions]
    if quick:  # the compiled path once (fp32, the small UNet): the GPU run must not meet it first
        variants += [("fp32", {"compile": True})]
    else:
        variants += [(p, {"cuda_graph": True}) for p in precisions if p in ("bf16", "fp16")]
        variants += [("bf16", {"cuda_graph": True, "channels_last": True})]
        # torch.compile (inductor) of the UNet, inside the CUDA graph: fused GroupNorm/SiLU; compile time recorded;
        # batch 8 and the large batch only (each batch shape pays its own compilation)
        variants += [("bf16", {"cuda_graph": True, "compile": True})]
    for precision, extra in variants:
        bench.check(10)
        try:
            restorer = make_restorer("difface", dev, precision=precision, steps=250, start_step=steps_lo,
                                     **extra, **kwargs)
        except Exception as exc:  # noqa: BLE001
            rec["rows"].append({"precision": precision, "options": extra, "error": f"{type(exc).__name__}: {exc}"})
            continue
        flops_unet = unet_flops_per_face(restorer.unet.config, 100, 250, estimator_config=None) / 100
        flops_est = unet_flops_per_face(restorer.unet.config, 1, 250,
                                        estimator_config=restorer.estimator.config) - flops_unet
        main_variant = not quick and precision == "bf16" and extra in ({}, {"cuda_graph": True},
                                                                         {"cuda_graph": True, "compile": True})
        chosen = batches + ([big] if main_variant else [])
        if extra.get("compile") and not quick:
            chosen = [b for b in chosen if b != 1]
        for batch in chosen:
            bench.check(5)
            row: dict[str, Any] = {"precision": precision, "options": extra, "batch": batch}
            try:
                x = torch.rand(batch, 3, 512, 512, generator=gen).to(dev)
                seeds = list(range(batch))
                with peak_memory(dev, row):
                    restorer.start_step = steps_lo
                    if extra.get("compile"):  # the one-off compilation for this batch shape, timed on its own
                        t0 = time.perf_counter()
                        restorer.restore(x, seeds=seeds)
                        sync(dev)
                        row["first_call_s"] = round(time.perf_counter() - t0, 2)
                    t_lo, _ = timeit(lambda: restorer.restore(x, seeds=seeds), dev, warmup=1, repeats=1 if quick else 2)
                    restorer.start_step = steps_hi
                    t_hi, _ = timeit(lambda: restorer.restore(x, seeds=seeds), dev, warmup=0, repeats=1 if quick else 2)
                if t_hi <= t_lo:  # noise larger than the extra steps: no per-step time can be read off
                    raise RuntimeError(f"timing noise: {steps_hi} steps took {t_hi:.4f} s, {steps_lo} took "
                                       f"{t_lo:.4f} s; rerun with more steps or repeats")
                step = (t_hi - t_lo) / (steps_hi - steps_lo)
                est = max(t_lo - steps_lo * step, 0.0)
                per_call_100 = est + 100 * step
                faces_s = batch / per_call_100
                tflops = faces_s * (flops_est + 100 * flops_unet) / 1e12
                row.update(seconds_per_step=round(step, 5), estimator_seconds=round(est, 5),
                           faces_per_s_100_steps=round(faces_s, 4), tflop_per_s=round(tflops, 2),
                           unet_tflop_per_s=round(batch * flops_unet / step / 1e12, 2),
                           fraction_of_bf16_peak=round(tflops / BF16_MATMUL_TFLOPS_H200, 4))
                print(f"| {precision} | {extra or ''} | {batch} | {step:.4f} | {est:.4f} | {faces_s:.3f} | "
                      f"{tflops:.1f} | {row.get('peak_gib', '-')} |", flush=True)
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                print(f"| {precision} | {extra or ''} | {batch} | error: {row['error'][:120]} |", flush=True)
                rec["rows"].append(row)
                release(dev)
                if is_oom(exc):
                    continue
                break
            rec["rows"].append(row)
            bench.write()
        del restorer
        release(dev)


def _degradation_jpeg_backends(device: torch.device) -> list[str]:
    from restorever.degradation import Degradation
    names = list(getattr(Degradation, "JPEG_BACKENDS", ("opencv",)))
    if device.type == "cuda":  # "auto" is "torch" there and "torchvision" (nvJPEG) is refused
        names = [b for b in names if b not in ("auto", "torchvision")]
    return names


def _degradation_stages(deg, batch: torch.Tensor, params, bench: "Bench") -> dict[str, Any]:
    """Seconds of the device path's parts for one call: steps 1-3 (blur, shrink, noise; batched, and one item at a
    time as before 2026-12-05), JPEG by OpenCV threads and
    by restorever.jpeg on the device (with a check that both give the same bytes), and the enlargement."""
    from restorever import degradation as D
    from restorever.jpeg import jpeg_roundtrip

    dev = batch.device
    kernels = D.gaussian_kernels(params.sigma_x, params.sigma_y, params.theta, params.kernel_size)
    reps = 1 if bench.quick else 3
    sec_low, _ = timeit(lambda: deg._low_res_groups(batch, params, kernels, torch.float32), dev, warmup=1,
                        repeats=reps)
    groups = deg._low_res_groups(batch, params, kernels, torch.float32)
    row: dict[str, Any] = {"low_res_s": sec_low}
    from bench_degradation import PerItemDevicePath  # steps 1-3 one item at a time, as before batching

    old = PerItemDevicePath(deg.preset.name)
    row["low_res_per_item_s"], _ = timeit(lambda: old._low_res_groups(batch, params, kernels, torch.float32), dev,
                                          warmup=1, repeats=reps)
    for name, fn in (("jpeg_opencv_s", D._jpeg_group_opencv), ("jpeg_torch_s", jpeg_roundtrip)):
        row[name], _ = timeit(lambda f=fn: [f(u8, params.jpeg_quality[idx].tolist()) for idx, u8 in groups], dev,
                              warmup=1, repeats=reps)
    decoded = [jpeg_roundtrip(u8, params.jpeg_quality[idx].tolist()) for idx, u8 in groups]
    row["jpeg_torch_equals_opencv"] = all(
        torch.equal(d, D._jpeg_group_opencv(u8, params.jpeg_quality[idx].tolist()))
        for d, (idx, u8) in zip(decoded, groups))
    row["upsample_s"], _ = timeit(lambda: [D._upsample_round_rgb(d, *batch.shape[-2:], torch.float32)
                                           for d in decoded], dev, warmup=1, repeats=reps)
    return row


def section_degradation(bench: Bench, data: Data, rec: dict) -> None:
    from restorever.degradation import Degradation

    dev = bench.device
    n_dev = 8 if bench.quick else 256
    n_cpu = 2 if bench.quick else 16
    scales = [8, 16] if bench.quick else [4, 8, 16, 24, 32]
    faces, _ = aligned_faces(data, min(16, n_dev), torch.device("cpu"))
    reps = -(-n_dev // faces.shape[0])
    batch_cpu = faces.repeat(reps, 1, 1, 1)[:n_dev]
    ids = [f"face{i}" for i in range(n_dev)]
    batch_dev = batch_cpu.to(dev)
    rec.update(batch_device=n_dev, batch_cpu=n_cpu, cpu_threads=torch.get_num_threads(), rows=[])
    deg = Degradation("difface-test")
    backends = _degradation_jpeg_backends(dev)
    rec["jpeg_backends"] = backends
    print("| scale | jpeg | device faces/s | CPU faces/s | x | max grey diff vs CPU | frac differing |")
    for scale in scales:
        params = deg.sample_params(ids, scale, 0)
        sec_cpu, _ = timeit(lambda: deg.apply(batch_cpu[:n_cpu], params[list(range(n_cpu))]), torch.device("cpu"),
                            warmup=0, repeats=1)
        ref = deg.apply(batch_cpu[:n_cpu], params[list(range(n_cpu))])
        for backend in backends:
            bench.check(3)
            row: dict[str, Any] = {"scale": scale, "jpeg": backend, "cpu_faces_per_s": round(n_cpu / sec_cpu, 2)}
            kw = {} if backend == "opencv" else {"jpeg": backend}
            try:
                with peak_memory(dev, row):
                    sec, _ = timeit(lambda: deg.apply(batch_dev, params, **kw), dev, warmup=1,
                                    repeats=1 if bench.quick else 3)
                out = deg.apply(batch_dev[:n_cpu], params[list(range(n_cpu))], **kw).cpu()
                diff = ((out - ref).abs() * 255).round()
                row.update(device_faces_per_s=round(n_dev / sec, 2), speedup=round(n_dev / sec / (n_cpu / sec_cpu), 2),
                           max_grey_diff=int(diff.max()), frac_pixels_differing=float((diff > 0).float().mean()),
                           frac_pixels_over_1=float((diff > 1).float().mean()), mean_abs_grey=float(diff.mean()))
                print(f"| {scale} | {backend} | {row['device_faces_per_s']:.1f} | {row['cpu_faces_per_s']:.1f} | "
                      f"{row['speedup']:.1f} | {row['max_grey_diff']} | {row['frac_pixels_differing']:.5f} |",
                      flush=True)
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                print(f"| {scale} | {backend} | error: {row['error'][:120]} |", flush=True)
            rec["rows"].append(row)
            bench.write()
        bench.check(3)
        try:
            stages = {k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in _degradation_stages(deg, batch_dev, params, bench).items()}
        except Exception as exc:  # noqa: BLE001
            stages = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        print(f"| {scale} | stages, seconds for {n_dev} faces: {stages} |", flush=True)
        rec.setdefault("stages", []).append({"scale": scale, **stages})
        bench.write()


def _iresnet(depth: int, device: torch.device) -> torch.nn.Module:
    from restorever.recognizers.layers.iresnet import iresnet
    torch.manual_seed(0)
    return iresnet(depth).eval().requires_grad_(False).to(device)


def section_recognizers(bench: Bench, rec: dict) -> None:
    dev = bench.device
    batch = 4 if bench.quick else 256
    rec.update(batch=batch, rows=[])
    print("| net | mode | faces/s | peak GiB |")
    x = torch.randn(batch, 3, 112, 112, generator=torch.Generator().manual_seed(0)).to(dev)
    for depth in ([50] if bench.quick else [50, 100]):
        net = _iresnet(depth, dev)
        modes: list[tuple[str, Callable[[], Any]]] = []
        with torch.inference_mode():
            modes.append(("fp32", lambda: net(x)))
            modes.append(("fp32-no-tf32", lambda: net(x)))
            for dt, tag in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
                if dev.type != "cuda":  # half precision is for the GPU (CPU bf16 kernels are very slow here)
                    continue
                modes.append((f"{tag}-amp", (lambda d=dt: _amp_call(net, x, d))))
            half_nets = {}
            cast = getattr(net, "cast_trunk", None)
            for dt, tag in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
                if dev.type != "cuda" and (dt == torch.float16 or not bench.quick):
                    continue
                if cast is not None:
                    half_nets[tag] = _iresnet(depth, dev)
                    half_nets[tag].cast_trunk(dt)
                    modes.append((f"{tag}-cast", (lambda t=tag: half_nets[t](x))))
            if dev.type == "cuda" and not bench.quick:  # the --recognizer-option levers on the fp16 default
                from restorever.acceleration import compile_module

                fast = _iresnet(depth, dev).to(memory_format=torch.channels_last)
                x_cl = x.contiguous(memory_format=torch.channels_last)
                fast_compiled = compile_module(fast)  # compiled during the warm-up calls
                modes.append(("fp16-amp+channels_last", lambda: _amp_call(fast, x_cl, torch.float16)))
                modes.append(("fp16-amp+channels_last+compile",
                              lambda: _amp_call(fast_compiled, x_cl, torch.float16)))
            for mode, fn in modes:
                bench.check(3)
                row: dict[str, Any] = {"net": f"iresnet{depth}", "mode": mode}
                try:
                    with tf32(mode != "fp32-no-tf32"), peak_memory(dev, row):
                        sec, _ = timeit(fn, dev, warmup=1 if bench.quick else 3, repeats=1 if bench.quick else 5)
                    row["faces_per_s"] = round(batch / sec, 1)
                    print(f"| iresnet{depth} | {mode} | {row['faces_per_s']} | {row.get('peak_gib', '-')} |",
                          flush=True)
                except Exception as exc:  # noqa: BLE001
                    row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                    print(f"| iresnet{depth} | {mode} | error {row['error'][:100]} |")
                rec["rows"].append(row)
        del net
        release(dev)


def _amp_call(net, x, dtype):
    with torch.autocast(device_type=x.device.type, dtype=dtype):
        return net(x)


def section_mtcnn(bench: Bench, data: Data, rec: dict) -> None:
    """Images/s of the detector (restorever.mtcnn: batched crops and NMS) and, side by side on the device, of
    facenet-pytorch's own detect on the same batches, with a bit-for-bit comparison of their outputs."""
    from restorever.detectors import create_detector
    from restorever.mtcnn import detect_batch_facenet

    dev = bench.device
    n = 8 if bench.quick else 192
    n_cpu = 4 if bench.quick else 16
    imgs = data.read(data.images[:n])
    rec.update(images=len(imgs), size=list(imgs[0].shape), rows=[])
    for device, count, compare in ((dev, len(imgs), True), (torch.device("cpu"), n_cpu, False)):
        for bs in ([32] if device.type == "cpu" else [32, 128]):
            bench.check(3)
            row: dict[str, Any] = {"device": str(device), "batch_size": bs, "images": count}
            det = create_detector("mtcnn", device=str(device), batch_size=bs)
            sub = imgs[:count]
            sec, _ = timeit(lambda: det.detect(sub), device, warmup=1, repeats=1)
            found = det.detect(sub)
            row.update(images_per_s=round(count / sec, 2), faces_found=sum(d is not None for d in found))
            if compare:
                batches = [np.stack(sub[i:i + bs]) for i in range(0, count, bs)]
                ref_sec, _ = timeit(lambda: [detect_batch_facenet(b, det._mtcnn) for b in batches], device,
                                    warmup=1, repeats=1)
                ours = [r for b in batches for r in det._found(b)]
                ref = [r for b in batches for r in detect_batch_facenet(b, det._mtcnn)]
                row.update(facenet_images_per_s=round(count / ref_sec, 2), speedup=round(ref_sec / sec, 2),
                           same_as_facenet=all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
                                               for a, b in zip(ours, ref)))
            print(f"{device} batch {bs}: {row['images_per_s']} images/s ({row['faces_found']}/{count} faces)"
                  + (f"; facenet-pytorch {row['facenet_images_per_s']} images/s, same output: "
                     f"{row['same_as_facenet']}" if "speedup" in row else ""), flush=True)
            rec["rows"].append(row)
            if device.type == "cpu":
                break


def section_consistency(bench: Bench, data: Data, rec: dict) -> None:
    """CPU vs device in fp32, stage by stage, on the same real photos."""
    from restorever.alignment import align_to_template
    from restorever.detectors import create_detector
    from restorever.images import to_tensor

    dev = bench.device
    n = 4 if bench.quick else 32
    rels = data.images[:n]
    arrays = data.read(rels)
    # landmarks
    det_cpu = create_detector("mtcnn", device="cpu")
    det_dev = create_detector("mtcnn", device=str(dev))
    found_cpu, found_dev = det_cpu.detect(arrays), det_dev.detect(arrays)
    both = [i for i in range(n) if found_cpu[i] is not None and found_dev[i] is not None]
    diffs = [float(np.abs(found_cpu[i].landmarks - found_dev[i].landmarks).max()) for i in both]
    rec["landmarks"] = {"images": n, "both_found": len(both), "only_one_found": sum(
        (found_cpu[i] is None) != (found_dev[i] is None) for i in range(n)),
        "max_px": max(diffs) if diffs else None, "mean_of_max_px": float(np.mean(diffs)) if diffs else None}
    print("landmarks:", rec["landmarks"], flush=True)
    bench.write()
    # warp: same (CPU) landmarks, images on CPU vs device
    lms = torch.tensor(np.stack([found_cpu[i].landmarks for i in both]), dtype=torch.float32)
    tensors = [to_tensor([arrays[i]])[0] for i in both]
    faces_cpu, crop_cpu = align_to_template(tensors, lms, "ffhq_512")
    faces_dev, _ = align_to_template([t.to(dev) for t in tensors], lms, "ffhq_512")
    wdiff = (faces_dev.cpu() - faces_cpu).abs()
    rec["warp"] = {"max_abs": float(wdiff.max()), "max_grey": float(wdiff.max() * 255),
                   "frac_over_half_grey": float((wdiff * 255 > 0.5).float().mean())}
    print("warp:", rec["warp"], flush=True)
    bench.write()
    # embedding: same crops, IResNet-50 fp32, TF32 on (the default for convolutions) and off
    net_cpu = _iresnet(50, torch.device("cpu"))
    net_dev = _iresnet(50, dev)
    from restorever.recognizers.arcface import prepare_crops
    from restorever.recognizers import recognizer_card
    card = recognizer_card("arcface-r50-ms1mv3")
    x = prepare_crops(faces_cpu.clamp(0, 1), crop_cpu, card)
    with torch.inference_mode():
        e_cpu = net_cpu(x)
        rec["embedding"] = {}
        for allow in (True, False):
            with tf32(allow):
                e_dev = net_dev(x.to(dev)).cpu()
            cos = torch.nn.functional.cosine_similarity(e_cpu, e_dev)
            rec["embedding"][f"tf32_{'on' if allow else 'off'}"] = {
                "min_cosine": float(cos.min()), "max_abs": float((e_cpu - e_dev).abs().max()),
                "rel_l2": float((e_cpu - e_dev).norm() / e_cpu.norm())}
    print("embedding:", rec["embedding"], flush=True)


def section_half_precision(bench: Bench, data: Data, rec: dict) -> None:
    """Half-precision outputs against fp32 on real aligned, degraded LFW faces (random weights: see the note)."""
    from restorever.degradation import Degradation
    from restorever.restorers import list_restorers

    dev = bench.device
    n = 2 if bench.quick else 8
    faces, crop_lms = aligned_faces(data, n, dev)
    lq = Degradation("difface-test").apply(faces, Degradation("difface-test").sample_params(
        [f"f{i}" for i in range(n)], 8, 0))
    rec["note"] = ("random weights: errors of these networks, not of the released ones; "
                   "inputs are real LFW faces aligned to ffhq_512 and degraded x8")
    # recognizer embeddings of the fp32 outputs vs half outputs: identity cosine via IResNet-50 (random weights)
    net = _iresnet(50, dev)
    from restorever.recognizers import recognizer_card
    from restorever.recognizers.arcface import prepare_crops
    card = recognizer_card("arcface-r50-ms1mv3")

    def embed(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return net(prepare_crops(x.float(), crop_lms, card))

    rec["restorers"] = {}
    names = [r for r in list_restorers() if r not in ("none",)]
    names = sorted(names, key=lambda r: (r not in ("vqfr-v2", "difface"), r))  # the main two first
    if bench.quick:
        names = [r for r in names if r == "vqfr-v2"]
    for name in names:
        bench.check(8)
        out: dict[str, Any] = {}
        rec["restorers"][name] = out
        try:
            kwargs: dict[str, Any] = quick_kwargs(name) if bench.quick else {}
            if name == "difface":
                kwargs.update(steps=250, start_step=1 if bench.quick else 3)
            torch.manual_seed(0)  # every restorer below gets the same random weights
            ref_restorer = make_restorer(name, dev, precision="fp32", **kwargs)
            seeds = list(range(n))
            with tf32(False):
                ref = ref_restorer.restore(lq, seeds=seeds)
            with tf32(True):
                ref_tf32 = ref_restorer.restore(lq, seeds=seeds)
            e_ref = embed(ref)
            out["fp32-tf32"] = _compare(ref_tf32, ref, embed(ref_tf32), e_ref)
            del ref_restorer
            for precision in restorer_precisions(name):
                if precision in ("fp32", "auto") or (dev.type == "cpu" and "fp16" in precision):
                    continue
                bench.check(5)
                torch.manual_seed(0)
                r = make_restorer(name, dev, precision=precision, **kwargs)
                o = r.restore(lq, seeds=seeds)
                out[precision] = _compare(o, ref, embed(o), e_ref)
                print(f"{name} {precision}: {out[precision]}", flush=True)
                del r
                release(dev)
        except Exception as exc:  # noqa: BLE001
            out["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            print(f"{name}: error {out['error'][:150]}", flush=True)
        bench.write()
    # recognizers: half vs fp32 embeddings of the clean aligned faces
    rec["recognizers"] = {}
    x = prepare_crops(faces, crop_lms, card)
    for depth in ([50] if bench.quick else [50, 100]):
        bench.check(3)
        net_d = _iresnet(depth, dev)
        res: dict[str, Any] = {}
        with torch.inference_mode():
            with tf32(False):
                e32 = net_d(x)
            with tf32(True):
                res["fp32-tf32"] = _cos_stats(net_d(x), e32)
            for dt, tag in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
                if dev.type != "cuda" and dt == torch.float16:
                    continue
                if dev.type == "cuda":
                    res[f"{tag}-amp"] = _cos_stats(_amp_call(net_d, x, dt), e32)
                if hasattr(net_d, "cast_trunk"):
                    half = _iresnet(depth, dev)
                    half.cast_trunk(dt)
                    res[f"{tag}-cast"] = _cos_stats(half(x), e32)
        rec["recognizers"][f"iresnet{depth}"] = res
        print(f"iresnet{depth}: {res}", flush=True)


def _cos_stats(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    cos = torch.nn.functional.cosine_similarity(a.float(), b.float())
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
            "max_abs": float((a.float() - b.float()).abs().max())}


def _compare(out: torch.Tensor, ref: torch.Tensor, e_out: torch.Tensor, e_ref: torch.Tensor) -> dict[str, float]:
    diff = (out.float() - ref.float()).abs()
    cos = torch.nn.functional.cosine_similarity(e_out.float(), e_ref.float())
    return {"psnr_db": round(psnr(out, ref), 2), "max_abs": float(diff.max()),
            "max_grey": float((diff * 255).max()), "identity_cosine_min": float(cos.min()),
            "identity_cosine_mean": float(cos.mean())}


def _eval_cmd(data: Data, out: Path, *, device: str, restorers: str, scales: str, limit: int, weights: str | None,
              rec_weights: Path, cache: Path, batch_size: int, detector: str = "mtcnn") -> list[str]:
    cmd = [sys.executable, "-m", "restorever", "eval", "--protocol", "pairs-csv", "--data-root", str(data.lfw),
           "--pairs", str(data.pairs_csv), "--restorer", restorers, "--recognizer", "arcface-r50-ms1mv3",
           "--recognizer-weights", str(rec_weights), "--scales", scales, "--limit-pairs", str(limit),
           "--device", device, "--batch-size", str(batch_size), "--cache-dir", str(cache), "--out", str(out),
           "--no-progress", "--examples", "0", "--detector", detector]
    if weights:
        cmd += ["--weights", weights]
    return cmd


def _run_eval(cmd: list[str], timeout: float) -> tuple[dict, float]:
    env = dict(os.environ)
    if not env.get("RESTOREVER_PROTOCOL_PATH") and (ROOT / "protocols").is_dir():
        env["RESTOREVER_PROTOCOL_PATH"] = str(ROOT / "protocols")  # older non-editable installs list no protocol
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 5), env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"eval exited {proc.returncode}: {proc.stderr[-1500:]}")
    out = Path(cmd[cmd.index("--out") + 1])
    return json.loads((out / "results.json").read_text()), wall


def section_e2e(bench: Bench, data: Data, rec: dict, work: Path) -> None:
    dev = bench.device
    rec_weights = synthetic_iresnet_checkpoint(data.manifest(50), work / "r50_backbone.pth")
    limit = 10 if bench.quick else 200
    scales = "8" if bench.quick else "8,16"
    restorers = "none" if bench.quick and dev.type == "cpu" else "none,vqfr-v2"
    vq_path = work / "vqfr_v2_random.pth"
    if "vqfr" in restorers:
        from restorever.restorers.vqfr import build_network
        torch.manual_seed(0)
        torch.save({"params_ema": build_network("vqfr_v2").state_dict()}, vq_path)
    # per-image MTCNN, then the same run with batched MTCNN (fresh cache): landmarks were the largest stage
    for detector, key in (("mtcnn", "run"), ("mtcnn-batched", "run_mtcnn_batched")):
        bench.check(60)
        cmd = _eval_cmd(data, work / f"run_dev_{detector}", device=str(dev), restorers=restorers, scales=scales,
                        limit=limit, weights=str(vq_path) if "vqfr" in restorers else None, rec_weights=rec_weights,
                        cache=work / f"cache_dev_{detector}", batch_size=8 if bench.quick else 64, detector=detector)
        rec.setdefault("command", " ".join(cmd))
        result, wall = _run_eval(cmd, bench.left() - 60)
        rec[key] = {"wall_s": round(wall, 2), "timings": result.get("timings"), "pairs": result["protocol"]["pairs"],
                    "images": result["protocol"]["images"], "restorers": restorers, "scales": scales,
                    "detector": detector}
        print(f"e2e (device, {detector}):", rec[key], flush=True)
        bench.write()
    bench.check(30)
    # CPU vs device pair scores: restorer none, x8, fresh caches, fp32 recognizer
    limit_c = 10 if bench.quick else 100
    scores = {}
    for device in ("cpu", str(dev)):
        bench.check(20)
        cmd = _eval_cmd(data, work / f"cons_{device.replace(':', '_')}", device=device, restorers="none", scales="8",
                        limit=limit_c, weights=None, rec_weights=rec_weights, cache=work / f"cache_c_{device}",
                        batch_size=32)
        res, wall = _run_eval(cmd, bench.left() - 10)
        scores[device] = {(c["restorer"], c["scale"]): np.asarray(c["scores"]["score"]) for c in res["conditions"]}
        rec[f"consistency_{device}_wall_s"] = round(wall, 2)
    if dev.type == "cpu":
        rec["pair_scores"] = "device is the CPU: nothing to compare"
        return
    out = {}
    for key, a in scores["cpu"].items():
        b = scores[str(dev)].get(key)
        if b is None or a.shape != b.shape:
            out[str(key)] = "pair sets differ"
            continue
        d = np.abs(a - b)
        out[f"{key[0]} x{key[1]}" if key[1] else "clean"] = {"pairs": int(a.size), "max_abs": float(d.max()),
                                                              "mean_abs": float(d.mean())}
    rec["pair_scores"] = out
    print("pair scores CPU vs device:", out, flush=True)


# ------------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".devdata", help="folder made by prepare_devdata.py")
    parser.add_argument("--out", type=Path, default=None, help="JSON file, rewritten after every section")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget-s", type=float, default=400.0, help="skip the sections left after this many s")
    parser.add_argument("--quick", action="store_true", help="tiny batches and models: exercise every path")
    parser.add_argument("--only", default=None, help="comma-separated section names (default: all)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU; use --device cpu", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    bench = Bench(args.out, args.budget_s, device, args.quick)
    print("# restorever GPU benchmark (scripts/bench_gpu.py)")
    for key, value in bench.results["environment"].items():
        print(f"# {key}: {value}")
    data = Data(args.data)
    work_ctx = tempfile.TemporaryDirectory(prefix="bench_gpu_") if args.work is None else contextlib.nullcontext(
        str(args.work))
    from restorever.restorers import list_restorers

    with work_ctx as work_dir:
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        names = list_restorers()
        sections: list[tuple[str, Callable[[dict], Any]]] = [
            ("restorer:vqfr-v2", lambda r: section_restorer(bench, "vqfr-v2", r)),
            ("difface", lambda r: section_difface(bench, r)),
            ("degradation", lambda r: section_degradation(bench, data, r)),
            ("recognizers", lambda r: section_recognizers(bench, r)),
            ("e2e", lambda r: section_e2e(bench, data, r, work)),
            ("consistency", lambda r: section_consistency(bench, data, r)),
            ("mtcnn", lambda r: section_mtcnn(bench, data, r)),
            ("half_precision", lambda r: section_half_precision(bench, data, r)),
        ]
        for extra in ("vqfr-v1", "gfpgan-v1.4", "codeformer"):
            if extra in names:
                sections.append((f"restorer:{extra}", lambda r, e=extra: section_restorer(bench, e, r)))
        only = set(args.only.split(",")) if args.only else None
        for name, fn in sections:
            if only is None or name in only or name.split(":")[0] in only:
                bench.run(name, fn)
    bench.results["finished"] = True
    bench.write()
    print(f"\n# done in {bench.elapsed():.0f} s" + (f"; JSON: {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

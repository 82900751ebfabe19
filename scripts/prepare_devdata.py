#!/usr/bin/env python
"""Fill ``.devdata/`` (git-ignored) with the small real data set that ``scripts/bench_gpu.py`` needs on a GPU machine
that cannot see ``../shared``: an LFW View 2 subset and the reference manifests.

    python scripts/prepare_devdata.py                      # 300 pairs (30 per fold, half same), < 40 MB
    python scripts/prepare_devdata.py --pairs-per-fold 4   # tiny set for a CPU dry run

Written:

* ``.devdata/lfw/<person>/<image>.jpg`` -- the 250x250 LFW deep-funnelled photos the pairs use (copied unchanged);
* ``.devdata/pairs.csv`` -- ``path_a,path_b,same,fold`` (the ``pairs-csv`` protocol), the first pairs of each of
  the ten View 2 folds, half same, half different;
* ``.devdata/manifests/iresnet{50,100}_state_dict.json`` -- key/shape lists to build synthetic ArcFace checkpoints;
* ``.devdata/landmarks_cpu.json`` -- MTCNN landmarks computed here on the CPU for the first ``--landmark-images``
  photos (``{"<rel path>": [[x, y] x 5] | null}``): the CPU side of the landmark consistency figure, and a fallback
  when MTCNN cannot run on the GPU machine;
* ``.devdata/README.txt`` -- what this is and where it came from;
* ``.devshared/`` (also git-ignored) -- a slim copy of what the CUDA tests read from ``../shared`` (see
  :func:`slim_shared`); ``scripts/gpu_session.sh`` points ``RESTOREVER_SHARED`` at it;
* ``.whl/`` (also git-ignored) -- the wheels the GPU machine cannot download: facenet-pytorch 2.5.3 (its MTCNN), and
  setuptools + wheel for the non-editable install when the machine's own setuptools cannot build a wheel.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MAX_BYTES = 40 * 2 ** 20


def read_view2(path: Path, per_fold: int) -> list[tuple[str, str, int, int]]:
    """First ``per_fold`` pairs (half same, half different) of each fold of LFW ``pairs.txt``: rel paths, same, fold."""
    lines = path.read_text().split("\n")
    folds, per = (int(v) for v in lines[0].split())
    rows: list[tuple[str, str, int, int]] = []
    pos = 1
    half = max(1, per_fold // 2)
    for fold in range(folds):
        same = [lines[pos + i].split("\t") for i in range(per)]
        diff = [lines[pos + per + i].split("\t") for i in range(per)]
        pos += 2 * per
        for parts in same[:half]:
            name, a, b = parts[0], int(parts[1]), int(parts[2])
            rows.append((f"{name}/{name}_{a:04d}.jpg", f"{name}/{name}_{b:04d}.jpg", 1, fold))
        for parts in diff[:half]:
            n1, a, n2, b = parts[0], int(parts[1]), parts[2], int(parts[3])
            rows.append((f"{n1}/{n1}_{a:04d}.jpg", f"{n2}/{n2}_{b:04d}.jpg", 0, fold))
    return rows


def cpu_landmarks(image_root: Path, rels: list[str]) -> dict[str, list | None]:
    """MTCNN (CPU) landmarks of each image, or None where no face is found."""
    import cv2

    from restorever.detectors import create_detector

    det = create_detector("mtcnn", device="cpu")
    imgs = [cv2.cvtColor(cv2.imread(str(image_root / r)), cv2.COLOR_BGR2RGB) for r in rels]
    found = det.detect(imgs)
    return {r: (None if d is None else [[float(x), float(y)] for x, y in d.landmarks]) for r, d in zip(rels, found)}


# What the CUDA tests (pytest -m cuda) read from ../shared, slimmed to fit the GPU machine's 64 MiB carry limit:
# fixture keys they use (float64 outputs and recorded trajectories dropped), 4 LFW people, the 60-photo faces folder.
CUDA_TEST_PEOPLE = ["Aaron_Peirsol", "Abdullah_Gul", "Ai_Sugiyama", "Alejandro_Toledo"]
_FIXTURE_KEYS = {
    "vqfr_v2_small.pt": ("arch", "config", "state_dict", "inputs", "forward_kwargs", "outputs", "aux"),
    "difface_unet_small.pt": None, "difface_swinir_small.pt": None, "iresnet_small_ref.pt": None,
}


def slim_shared(shared: Path, out: Path) -> None:
    """A ``../shared`` look-alike for the CUDA tests on a machine without it (``RESTOREVER_SHARED=<out>``).

    ``vqfr_v1_small.pt`` is left out for size (its CUDA test then skips, saying so); the DifFace sampler fixture
    keeps only case B without its recorded trajectory.
    """
    import torch

    fixtures = out / "reference" / "fixtures"
    fixtures.mkdir(parents=True)
    for name, keys in _FIXTURE_KEYS.items():
        fx = torch.load(shared / "reference" / "fixtures" / name, weights_only=False)  # our own fixture files
        torch.save(fx if keys is None else {k: fx[k] for k in keys if k in fx}, fixtures / name)
    sampler = torch.load(shared / "reference" / "fixtures" / "difface_sampler_small.pt", weights_only=False)
    case = dict(sampler["cases"]["B_resize48_bs2_N30_eta0.5"])
    case.pop("trajectory_subset", None)
    sampler["cases"] = {"B_resize48_bs2_N30_eta0.5": case}
    torch.save(sampler, fixtures / "difface_sampler_small.pt")
    shutil.copytree(shared / "reference" / "manifests", out / "reference" / "manifests")
    lfw = out / "data" / "lfw" / "lfw-deepfunneled"
    for person in CUDA_TEST_PEOPLE:
        shutil.copytree(shared / "data" / "lfw" / "lfw-deepfunneled" / person, lfw / person)
    shutil.copytree(shared / "data" / "faces", out / "data" / "faces")


def replace_folder(path: Path) -> None:
    """Delete ``path`` (a folder this script made before) so it can be written afresh; refuse the repository, any
    folder above it, and any folder that holds a ``.git``: a mistyped ``--out .`` must not delete the checkout."""
    target = path.resolve()
    if target == ROOT or target in ROOT.parents or (target / ".git").exists():
        raise SystemExit(f"error: refusing to delete {path} (the repository or a folder above it); "
                         "pass a new folder such as .devdata")
    if target.exists():
        shutil.rmtree(target)


WHEELS = ("facenet-pytorch==2.5.3", "setuptools>=70.1", "wheel")


def download_wheels(out: Path) -> bool:
    """``pip download`` :data:`WHEELS` (no dependencies) into ``out``; False, with the reason printed, on failure."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", "-d", str(out),
           *WHEELS]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"warning: could not download {', '.join(WHEELS)} into {out} (pip said: "
              f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}); "
              "put the wheels there by hand", file=sys.stderr)
        return False
    names = sorted(p.name for p in out.glob("*.whl"))
    print(f"{out}: {', '.join(names)}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the ../shared folder (default: beside the repo)")
    parser.add_argument("--out", type=Path, default=ROOT / ".devdata")
    parser.add_argument("--pairs-per-fold", type=int, default=30, help="pairs taken from each of the 10 folds")
    parser.add_argument("--landmark-images", type=int, default=48, help="images given CPU MTCNN landmarks (0: none)")
    parser.add_argument("--shared-out", default=str(ROOT / ".devshared"),
                        help="where the slim ../shared copy for the CUDA tests goes ('' to skip)")
    parser.add_argument("--wheels", default=str(ROOT / ".whl"),
                        help="where the carried wheels go ('' to skip the download)")
    args = parser.parse_args(argv)

    lfw = args.shared / "data" / "lfw"
    images = lfw / "lfw-deepfunneled"
    if not (lfw / "pairs.txt").is_file() or not images.is_dir():
        print(f"error: {lfw} lacks pairs.txt or lfw-deepfunneled/; pass --shared DIR", file=sys.stderr)
        return 2
    out = args.out
    rows = read_view2(lfw / "pairs.txt", args.pairs_per_fold)
    rels = sorted({r for a, b, _, _ in rows for r in (a, b)})
    missing = [r for r in rels if not (images / r).is_file()]
    if missing:
        print(f"error: {len(missing)} pair images missing under {images}, e.g. {missing[0]}", file=sys.stderr)
        return 2
    replace_folder(out)
    (out / "lfw").mkdir(parents=True)
    for rel in rels:
        (out / "lfw" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(images / rel, out / "lfw" / rel)
    with open(out / "pairs.csv", "w") as fh:
        fh.write("path_a,path_b,same,fold\n")
        for a, b, same, fold in rows:
            fh.write(f"{a},{b},{same},{fold}\n")
    (out / "manifests").mkdir()
    for depth in (50, 100):
        name = f"iresnet{depth}_state_dict.json"
        shutil.copyfile(args.shared / "reference" / "manifests" / name, out / "manifests" / name)
    if args.landmark_images > 0:
        lms = cpu_landmarks(out / "lfw", rels[:args.landmark_images])
        (out / "landmarks_cpu.json").write_text(json.dumps(lms, indent=0))
    (out / "README.txt").write_text(
        f"Development data for scripts/bench_gpu.py, made by scripts/prepare_devdata.py from {args.shared}.\n"
        f"{len(rows)} LFW View 2 pairs ({args.pairs_per_fold} per fold, half same) over {len(rels)} images; "
        "LFW terms apply. Not for redistribution; rebuild with the script.\n")
    if args.shared_out:  # a str: Path("") would be the current folder, which rmtree must never see
        shared_out = Path(args.shared_out)
        replace_folder(shared_out)
        slim_shared(args.shared, shared_out)
        extra = sum(p.stat().st_size for p in shared_out.rglob("*") if p.is_file())
        print(f"{shared_out}: slim ../shared for the CUDA tests, {extra / 2 ** 20:.1f} MiB")
    if args.wheels:
        download_wheels(Path(args.wheels))
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {len(rows)} pairs, {len(rels)} images, {total / 2 ** 20:.1f} MiB")
    if total > MAX_BYTES:
        print(f"error: {out} is {total / 2 ** 20:.1f} MiB, over the 40 MiB limit; lower --pairs-per-fold",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

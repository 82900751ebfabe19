"""Single stages: ``restorever degrade`` and ``restorever restore``."""
from __future__ import annotations

import os
from pathlib import Path

import click

from ..detectors import MIN_FACE_SIZE
from ..progress import progress_bar
from . import NO_PROGRESS_HELP, handle_errors
from .options import HELP, SEED, plugin_option, restorer_options, restorer_options_option


@click.command("degrade", epilog="\b\nExample:\n  restorever degrade --protocol lfw --data-root ../shared/data/lfw "
                                 "--scales 4,16 --limit-pairs 20 --out degraded/")
@click.option("--protocol", default="lfw", show_default=True, help=HELP["protocol"])
@click.option("--data-root", type=click.Path(), help=HELP["data-root"])
@click.option("--pairs", type=click.Path(), help=HELP["pairs"])
@click.option("--scales", default="4,8,16,24,32", show_default=True, help="Degradation scales, comma-separated.")
@click.option("--degradation", default="difface-test", show_default=True, help=HELP["degradation"])
@click.option("--seed", type=SEED, default=None,
              help="Seed of the degradation parameters and noise [protocol's seed, else 0].")
@click.option("--degrade-side", "--side", "side", type=click.Choice(["probe", "both"]), default="probe",
              show_default=True, help="Degrade the probe (second) images of each pair, or every image (as eval's "
                                      "--degrade-side).")
@click.option("--limit-pairs", type=int, default=None, help=HELP["limit-pairs"])
@click.option("--detector", default=None, help="Landmark detector [protocol's alignment.landmarks, else mtcnn].")
@click.option("--device", default="auto", show_default=True, envvar="RESTOREVER_DEVICE", help=HELP["device"])
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help=HELP["batch-size"])
@click.option("--on-error", type=click.Choice(["error", "skip"]), default=None,
              help="Images without a face: stop, or skip them (listed in skipped.json) [protocol's on_error, else "
                   "error].")
@click.option("--overwrite", is_flag=True,
              help="OUT holds a degrade.json made with other settings: degrade every face again with these, start "
                   "a new record, and remove that run's PNGs that this one does not write (only files still "
                   "holding the bytes it recorded); without it such a rerun is refused.")
@click.option("--out", type=click.Path(), required=True,
              help="Output folder: OUT/clean and OUT/xSCALE PNGs, params.jsonl (parameters per face and scale), "
                   "manifest.json (options, landmarks per face), degrade.json (the resume record).")
@click.option("--no-progress", is_flag=True, help=NO_PROGRESS_HELP)
@handle_errors
def degrade_command(protocol, data_root, pairs, scales, degradation, seed, side, limit_pairs, detector, device,
                    batch_size, on_error, overwrite, out, no_progress):
    """Align and degrade a protocol's faces; write PNGs (OUT/clean, OUT/xSCALE) and the parameter records.

    \b
    A rerun with the same arguments resumes: OUT/degrade.json records the settings and, per PNG, its source
    photo's sha256, its landmarks and its own sha256; a PNG whose record matches is kept, the rest (missing,
    damaged, replaced, from a changed photo or moved landmarks) are made again; a skipped photo's PNGs of an
    earlier run are left and named in a note. Other settings are refused unless --overwrite. params.jsonl and
    manifest.json are written only when every face is done (a run that writes first removes the previous ones),
    so a folder without manifest.json holds an unfinished run: rerun the command to finish it."""
    import json

    import numpy as np

    from ..degradation import Degradation
    from ..detectors import list_detectors, resolve_detector
    from ..devices import resolve_device
    from ..errors import FaceNotFoundError, unknown_name
    from ..hub import get_cache_dir
    from ..images import to_uint8
    from ..pipeline.cache import ArrayCache, atomic_write_text
    from ..pipeline.evaluate import limit_pairs as limit
    from ..pipeline.environment import restorever_version
    from ..pipeline.landmarks import align_items, landmark_stage
    from ..pipeline.protocol_defaults import protocol_default
    from ..pipeline.restore_record import DegradeRecord, degrade_settings
    from ..protocol import load_protocol
    from ..protocol_specs import alignment_fit
    from .options import parse_scales

    scale_list = parse_scales(scales)  # every argument is checked before any image is read
    if not scale_list:
        raise click.BadParameter("needs at least one scale (e.g. 4,16)", param_hint="--scales")
    deg = Degradation(degradation)
    if detector is not None and detector not in list_detectors():
        raise unknown_name("detector", detector, list_detectors())
    proto = load_protocol(protocol, data_root=data_root, pairs=pairs)
    spec = getattr(proto, "spec", None) or {}  # the protocol's values are the defaults, as for `eval`
    seed = protocol_default("seed", spec) if seed is None else seed
    detector = resolve_detector(protocol_default("detector", spec) if detector is None else detector)
    on_error = protocol_default("on_error", spec) if on_error is None else on_error
    pair_list = limit(proto.pairs, limit_pairs)
    items = list(dict.fromkeys(pair_list.b)) if side == "probe" else pair_list.images()
    dev = resolve_device(device)
    out = Path(out)
    _refuse_collisions({i: out / "clean" / Path(i).with_suffix(".png") for i in items}, "images")
    # absolute (symlinks kept as named): a relative --data-root would name nothing to a reader in another folder
    options = {"protocol": proto.name, "data_root": os.path.abspath(proto.root),
               "pairs": os.path.abspath(pairs) if pairs else None, "degradation": degradation, "scales": scale_list,
               "seed": seed, "degrade_side": side, "limit_pairs": limit_pairs, "detector": detector,
               "alignment_fit": alignment_fit(proto.spec), "template": "ffhq_512", "device": dev.type}
    record = DegradeRecord(out, degrade_settings(options), {"restorever_version": restorever_version()},
                           overwrite=overwrite)  # refuses other settings (and other pixel code) before any work
    info = landmark_stage(proto, items, detector=detector, device=dev, cache=ArrayCache(get_cache_dir() / "cache"),
                          batch_size=batch_size)
    failed = {k: v.error for k, v in info.items() if v.error}
    if failed and on_error == "error":
        raise FaceNotFoundError(f"{next(iter(failed.values()))}; rerun with --on-error skip to skip it")
    items = [i for i in items if i not in failed]
    for name in ("manifest.json", "params.jsonl", "skipped.json"):  # written again at the end: until then, the
        (out / name).unlink(missing_ok=True)  # folder holds no record that looks finished (docs/reliability.md)

    def landmarks(item: str) -> list:  # as the manifest holds them (float32 values; exact through JSON)
        return np.asarray(info[item].landmarks, np.float32).tolist()

    def pngs(item: str) -> list[str]:  # the record's names of an item's outputs (relative, "/"-separated)
        return [f"{folder}/{Path(item).with_suffix('.png').as_posix()}"
                for folder in ["clean", *(f"x{scale}" for scale in scale_list)]]

    removed = record.remove_stale({name for i in items for name in pngs(i)}) if record.previous else []
    # a skipped photo's PNGs from an earlier run (of what the photo held then) stay, never deleted, but named
    leftover = [name for i in failed for name in pngs(i) if (out / name).exists()]
    records, kept = [], 0
    try:  # a run stopped by an error or Ctrl-C keeps the record of the PNGs it finished
        starts = range(0, len(items), batch_size)
        for start in progress_bar(starts, len(starts), "degrade", not no_progress):
            batch = items[start:start + batch_size]
            for scale in scale_list:  # parameters are per item: a batch's subset draws the same ones
                records += [{"item": i, "scale": scale, **r}
                            for i, r in zip(batch, deg.sample_params(batch, scale, seed).to_records())]
            todo = [i for i in batch if not all(record.done(name, info[i].sha256, landmarks=landmarks(i))
                                                for name in pngs(i))]
            kept += len(batch) - len(todo)
            if not todo:
                continue
            faces, _ = align_items(proto, todo, info, dev)
            outputs = {"clean": faces}
            for scale in scale_list:
                outputs[f"x{scale}"] = deg.apply(faces, deg.sample_params(todo, scale, seed))
            for folder, tensor in outputs.items():
                for item, array in zip(todo, to_uint8(tensor)):
                    name = f"{folder}/{Path(item).with_suffix('.png').as_posix()}"
                    written = _write_png(out / name, array)
                    record.add(name, {"input": item, "sha256": info[item].sha256, "landmarks": landmarks(item),
                                      "output_sha256": written})
    finally:
        record.save()
    records.sort(key=lambda r: (r["scale"], r["item"]))
    atomic_write_text(out / "params.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    # what params.jsonl alone cannot say: the degradation runs on the unquantised aligned crop (as in eval), not
    # on clean/*.png, so an exact replay re-aligns the source photo with these landmarks (docs/reliability.md)
    manifest = {"restorever_version": restorever_version(), **options,
                "faces": {i: {"sha256": info[i].sha256, "landmarks": landmarks(i)} for i in sorted(items)},
                "skipped": failed}
    if failed:
        atomic_write_text(out / "skipped.json", json.dumps(failed, indent=1))
        click.echo(f"skipped {len(failed)} image(s); reasons in {out / 'skipped.json'}")
    if leftover:
        click.echo(f"note: {len(leftover)} PNG(s) under skipped images' names are not made from those photos as "
                   f"they are now (an earlier run's, of what they held then): "
                   f"{', '.join(leftover[:3])}{', ...' if len(leftover) > 3 else ''}; left in {out}: delete them, "
                   f"or fix the photos and rerun", err=True)
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")  # last
    click.echo(f"wrote {len(items) - kept} faces x {len(scale_list)} scales (+ clean) to {out}"
               + (f"; kept {kept} already degraded (degrade.json)" if kept else "")
               + (f"; removed {len(removed)} PNG(s) of the replaced run" if removed else ""))


def _refuse_collisions(targets: dict[str, Path], what: str) -> None:
    """Refuse, before any work, two inputs that would be written to the same output file (``d1/face.png`` and
    ``d2/face.jpg`` both to ``OUT/face.png``): one line naming both, instead of one silently overwriting the other."""
    seen: dict[Path, str] = {}
    sources = {Path(s).resolve() for s in targets if Path(s).exists()}
    for source, target in targets.items():
        if target.resolve() in sources:
            raise ValueError(f"{target} is one of the inputs; writing there would replace it; choose another --out")
        key = Path(str(target).lower()) if os.path.normcase("A") == "a" else target
        if key in seen and seen[key] != source:
            raise ValueError(f"{what} {seen[key]} and {source} would both be written to {target}; rename one, or "
                             f"run them into separate --out folders")
        seen[key] = source


def _write_png(path: Path, array) -> str:
    """Write ``array`` (HxWx3 or HxWx4 uint8) to ``path`` as PNG, atomically; returns the file's sha256 (hex)."""
    from PIL import Image

    from ..files import atomic_write_bytes
    import hashlib
    import io

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


#: a detected face whose 512x512 crop spans fewer photo pixels than this (enlarged more than x8) is reported
SMALL_FACE_SIDE = 64


def _finite(param: click.Parameter, value: float) -> float:
    """A float option's value when finite (FloatRange lets nan and inf through; restore.json cannot hold them)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise click.BadParameter(f"must be a finite number, got {value}", param=param)
    return value


@click.command("restore", epilog="\b\nExamples:\n  restorever restore face.png --restorer vqfr-v2 "
                                 "--weights VQFR_v2.pth "
                                 "--out restored/\n  restorever restore photo.jpg --restorer difface --weights "
                                 "unet=U.pth,estimator=E.pth --out restored/\n  restorever restore face.png "
                                 "--restorer codeformer --weights codeformer.pth --codeformer-fidelity 0.7 "
                                 "--out restored/\n  restorever restore photos/*.jpg --restorer none --faces all "
                                 "--out restored/   # every face of each photo; rerun to resume")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--restorer", required=True, help="Restorer name (`restorever restorers`).")
@click.option("--weights", default=None, help="FILE or ROLE=FILE,ROLE=FILE (explicit local checkpoint).")
@click.option("--aligned/--detect", default=None,
              help="Treat inputs as aligned 512x512 faces, or detect and align (default: aligned iff 512x512).")
@click.option("--detector", default="mtcnn", show_default=True,
              help="Face detector of photos that are not aligned crops: mtcnn, mtcnn-batched or scrfd.")
@click.option("--faces", "faces_mode", type=click.Choice(["center", "largest", "all"]), default="center",
              show_default=True, help="Which faces of a photo to restore: the one nearest the centre (as eval picks), "
                                      "the largest, or every face of at least --min-face-size pixels (where "
                                      "two crops overlap, each photo pixel goes to the face it is nearer, "
                                      "relative to face size, so no face is covered by its neighbour's crop).")
@click.option("--min-face-size", type=click.FloatRange(min=0), default=MIN_FACE_SIZE, show_default=True,
              callback=lambda ctx, param, value: _finite(param, value),
              help="With --faces all: a face whose detected box is narrower or shorter than this (photo pixels) is "
                   "left out, and named in a note.")
@click.option("--device", default="auto", show_default=True, envvar="RESTOREVER_DEVICE", help=HELP["device"])
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the restorer's noise (each face's own seed is drawn from it and the file name).")
@click.option("--alignment-fit", type=click.Choice(["least-squares", "lmeds"]), default="least-squares",
              show_default=True, help="How the five landmarks are fitted to the 512 template: all five by least "
                                      "squares (restorever's default), or OpenCV's LMEDS as the official restoration "
                                      "scripts do (a protocol's alignment.fit; docs/architecture.md).")
@click.option("--on-error", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="A file that is not a readable image, a photo without a face (or an aligned input that is not "
                   "512x512): stop before writing anything, or skip it (named on stderr) and restore the others.")
@click.option("--overwrite", is_flag=True,
              help="OUT holds a restore.json made with other settings: restore every input again with these, start "
                   "a new record, and remove that run's outputs that this one does not write (only files still "
                   "holding the bytes it recorded; each named on stderr); without it such a rerun is refused.")
@restorer_options_option
@click.option("--out", type=click.Path(), required=True,
              help="Output folder: OUT/NAME.png per input, restore.json (the resume record).")
@click.option("--no-progress", is_flag=True, help=NO_PROGRESS_HELP)
@plugin_option
@handle_errors
def restore_command(images, restorer, weights, aligned, detector, faces_mode, min_face_size, device, seed,
                    alignment_fit, on_error, overwrite, restorer_option, out, no_progress):
    """Restore faces: aligned 512x512 crops directly, other photos via detection, alignment and paste-back.

    \b
    Writes OUT/NAME.png per input (8-bit RGB; RGBA with the input's alpha copied unchanged): for a 512x512
    aligned crop the restored crop; for any other photo the whole photo with its face(s) restored and pasted back
    (--faces: the face nearest the centre, the largest, or all; the aligned crops are not written). Faces left
    out below --min-face-size, several faces in center/largest mode, and a face whose crop spans fewer than 64
    photo pixels (enlarged more than x8) are named in a "note:" line on stderr.

    \b
    OUT/restore.json records the restorer, its weights (file, sha256), options, seed, detector (for SCRFD also
    its ONNX file's sha256), alignment fit and faces mode, and per output its input's sha256, its own sha256, the
    faces restored (boxes, landmarks), notes and skips. A rerun into the same OUT keeps each output whose input
    sha256 matches and whose file still has its recorded sha256, and restores the rest (a run killed half-way
    resumes; an output damaged or replaced since is redone); other settings are refused unless --overwrite.
    --overwrite removes the outputs the replaced record lists for other inputs, once every input is read, and
    only where the file still has its recorded sha256 (a file edited since, or one restorever did not write, is
    never removed).

    The stages are the evaluation pipeline's (``pipeline.stages``: one-image detection, ``ffhq_512`` alignment,
    restoration with out-of-memory back-off and 8-bit output) and the seeds are ``item_seed(seed, file name)``
    (with --faces all, face k, counted by box area from the smallest, uses ``file name#k``), so a photo comes out as
    ``FacePipeline(..., alignment_fit=...).restore(photo, item_ids=[file name], face="center")`` (or
    ``face="all"``) pastes it (the library's default face is the largest)."""
    import hashlib

    import numpy as np
    import torch

    from ..detectors import detector_file_sha256, faces_to_paste, nearest_to_center
    from ..devices import resolve_device
    from ..errors import ImageError, RestoreverError
    from ..images import read_alpha, read_file_bytes, read_image, to_tensor, to_uint8
    from ..pipeline.environment import restorever_version
    from ..pipeline.evaluate import item_seed, route_restorer_options
    from ..pipeline.paste import paste_faces
    from ..pipeline.plugins import plugin_of
    from ..pipeline.restore_record import RestoreRecord, run_settings
    from ..pipeline.stages import align_faces, detect_each, restore_faces
    from ..restorers import create_restorer

    dev = resolve_device(device)
    out = Path(out)
    names = {path: Path(path).stem + ".png" for path in images}
    _refuse_collisions({path: out / names[path] for path in images}, "inputs")
    routed = route_restorer_options([restorer], restorer_options(restorer_option))[restorer]
    model = create_restorer(restorer, weights=weights, device=dev, **routed)
    files = getattr(model, "weight_files", None) or {}
    # SCRFD's ONNX file by sha256 (None for MTCNN): another det_10g.onnx finds other landmarks, so other crops
    plugin = plugin_of("restorer", restorer)
    settings = run_settings(restorer=restorer, weight_files=files, options=routed, seed=seed, detector=detector,
                            alignment_fit=alignment_fit, faces=faces_mode, min_face_size=min_face_size,
                            aligned=aligned, detector_file=detector_file_sha256(detector), plugin=plugin)
    header = {"restorever_version": restorever_version(), "device": dev.type,
              "weights": {role: {"file": path, "sha256": sha} for role, (path, sha) in sorted(files.items())}}
    if plugin:  # which module made the faces (not a compared setting: the file's sha256 is)
        header["plugin_module"] = plugin["module"]
    record = RestoreRecord(out, settings, header, overwrite=overwrite)  # refuses other settings before any work
    # First every input is read and its faces found, so that a failure stops the command before anything is written
    chosen: dict[str, list | None] = {}  # path -> detections to paste (in order), or None for an aligned crop
    digests: dict[str, str] = {}
    failed: dict[str, str] = {}
    notes: dict[str, list[str]] = {path: [] for path in images}  # restored, with something the user should know
    kept = 0
    det = None
    for path in progress_bar(images, len(images), "detect", not no_progress, unit="image"):
        try:
            digests[path] = hashlib.sha256(read_file_bytes(path)).hexdigest()
            if record.done(names[path], digests[path]):
                kept += 1
                continue
            array = read_image(path)
        except ImageError as exc:  # not an image, truncated, too small or too large: a skip like a faceless photo
            failed[path] = str(exc)
            continue
        is_aligned = aligned if aligned is not None else array.shape[:2] == (512, 512)
        if is_aligned:
            if array.shape[:2] == (512, 512):
                chosen[path] = None
            else:
                failed[path] = f"{path}: --aligned needs a 512x512 face crop, got {array.shape[1]}x{array.shape[0]}"
            continue
        if det is None:
            from ..detectors import create_detector

            det = create_detector(detector, device=str(dev))
        (found,) = detect_each(det, [array], dev, all_faces=True)
        if not found:
            failed[path] = f"{path}: no face found by {detector}"
            continue
        boxes = np.stack([f.box for f in found]).astype(np.float64)
        if faces_mode == "all":
            order, small = faces_to_paste(boxes, min_face_size)
            if small:
                notes[path].append(f"{len(small)} face(s) smaller than {min_face_size:g} px left out (boxes "
                                   f"{[[round(float(v)) for v in boxes[i]] for i in small]}); lower "
                                   f"--min-face-size to restore them")
            if not order:
                failed[path] = (f"{path}: no face of at least {min_face_size:g} px found ({len(small)} smaller "
                                f"one(s) left out; lower --min-face-size)")
                continue
        else:
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            order = [nearest_to_center(boxes, *array.shape[:2]) if faces_mode == "center"
                     else int(np.argmax(areas))]
            if len(found) > 1:
                which = "the one nearest the centre" if faces_mode == "center" else "the largest"
                notes[path].append(f"{len(found)} faces found; only {which} was restored (--faces all restores "
                                   f"every face)")
        chosen[path] = [found[i] for i in order]
    if failed and on_error == "error":
        first = next(iter(failed.values()))
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise RestoreverError(f"{first}{more}; nothing written; rerun with --on-error skip to restore the others")
    for path, reason in failed.items():
        record.entries[names[path]] = {"input": str(path), "sha256": digests.get(path), "skipped": reason}
        if (out / names[path]).exists():  # an earlier run's output of what this input held then; never deleted
            notes[path].append(f"{out / names[path]} is not this input's restoration (an earlier run's output of "
                               f"another file, or of an earlier version of this one); it is left in the folder: "
                               f"delete it, or fix the input and rerun")
            record.entries[names[path]]["notes"] = notes[path]
    # --overwrite: the replaced run's outputs of inputs not given now would sit beside this run's, unrecorded
    removed = record.remove_stale(set(names.values())) if record.previous else []
    try:  # a run stopped by an error keeps the record of what it finished
        for path in progress_bar(list(chosen), len(chosen), "restore", not no_progress, unit="image"):
            photo = to_tensor([read_image(path)]).to(dev)
            name = Path(path).name
            found = chosen[path]
            if found is None:
                result = restore_faces(model, photo, [item_seed(seed, name, None, "restore")])
            else:
                ids = [f"{name}#{k}" for k in range(len(found))] if faces_mode == "all" else [name]
                lms = np.stack([f.landmarks for f in found]).astype(np.float32)
                crops, _, matrices = align_faces([photo[0]] * len(found), lms, dev, return_matrices=True,
                                                 fit=alignment_fit)
                for k in range(len(found)):
                    side = 512.0 / float(abs(torch.linalg.det(matrices[k, :, :2].double())) ** 0.5)  # photo px spanned
                    if side < SMALL_FACE_SIDE:
                        notes[path].append(f"the face spans only about {side:.0f}x{side:.0f} photo pixels of the "
                                           f"512x512 crop (enlarged x{512 / side:.0f}); restored, but most of its "
                                           f"detail is invented")
                restored_faces = restore_faces(model, crops, [item_seed(seed, i, None, "restore") for i in ids])
                result = paste_faces(photo, restored_faces, matrices.to(dev).float())
            restored = to_uint8(result)[0]
            alpha = read_alpha(path)
            if alpha is not None:  # read_image dropped it; the photo keeps its transparency
                restored = np.dstack([restored, alpha])
                notes[path].append("its alpha channel (transparency) was copied unchanged to the output; only the "
                                   "colours were restored")
            written = _write_png(out / names[path], restored)
            faces_record = [] if found is None else [
                {"box": [round(float(v), 2) for v in f.box], "landmarks": np.asarray(f.landmarks, np.float32).tolist(),
                 "score": round(float(f.score), 4), "seed_item": i} for f, i in zip(found, ids)]
            record.add(names[path], {"input": str(path), "sha256": digests[path], "output_sha256": written,
                                     "aligned": found is None, "faces": faces_record, "notes": notes[path]})
    finally:
        record.save()
    lines = [f"{path}: {note}" for path in images for note in notes[path]]
    for line in lines:
        click.echo(f"note: {line}", err=True)
    for reason in failed.values():
        click.echo(f"skipped {reason}", err=True)
    click.echo(f"wrote {len(chosen)} image(s) to {out}" + (f"; kept {kept} already restored (restore.json)"
                                                          if kept else "")
               + (f"; skipped {len(failed)}" if failed else "") + (f"; {len(lines)} note(s) above" if lines else "")
               + (f"; removed {len(removed)} output(s) of the replaced run" if removed else ""))


COMMANDS = [degrade_command, restore_command]

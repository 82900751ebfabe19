"""The command line, end to end on real faces with the offline dlib recognizer and MTCNN landmarks."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from restorever.cli import cli

from .test_protocol import _faces_csv


def run(*args, expect: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def test_listing_commands():
    out = run("protocols").output
    assert "lfw" in out and "pairs-csv" in out
    out = run("restorers").output
    assert "none" in out and "no weights needed" in out
    out = run("recognizers").output
    assert "dlib" in out


def test_unknown_recognizer_is_one_line_exit_2(lfw_root, tmp_path):
    result = run("eval", "--data-root", lfw_root, "--recognizer", "dlb", "--out", tmp_path, expect=2)
    assert result.output.strip().count("\n") == 0
    assert "did you mean dlib" in result.output


@pytest.mark.parametrize("args,message", [
    (["--detector", "mtcn"], "unknown detector 'mtcn'; did you mean mtcnn?"),
    (["--restorer", "vqfrv2"], "unknown restorer 'vqfrv2'; did you mean vqfr-v2"),
    (["--restorer", "difface", "--restorer-option", "steps=many"], "steps"),
    (["--restorer-option", "steps=10"], "steps apply to none of the restorers none"),
    (["--recognizer-option", "precision=fp16"], "recognizer dlib takes no option(s) precision"),
    (["--weights", "junk.pth"], "--weights given, but restorer 'none' takes no weights"),
    (["--limit-pairs", "1"], "--limit-pairs must be at least 2"),
    (["--restorer", "none,codeformer,gfpgan-v1.4", "--weights", "codeformer.pth"],
     "several restorers that take weights (codeformer, gfpgan-v1.4); prefix each file with its restorer's name"),
    (["--restorer", "none,codeformer", "--weights", "gfpgan-v1.4:g.pth"],
     "gfpgan-v1.4 is not a restorer of this run (none, codeformer)"),
])
def test_bad_names_and_options_stop_before_the_run_folder_exists(lfw_root, tmp_path, args, message):
    """One line, exit 2, and no --out folder (nor its lock file) left behind: checked before anything is made."""
    out = tmp_path / "run"
    result = run("eval", "--data-root", lfw_root, "--recognizer", "dlib", "--scales", "8", "--out", out, *args,
                 expect=2)
    assert result.output.strip().count("\n") == 0 and message in result.output, result.output
    assert not out.exists()


def test_one_weights_option_for_several_restorers(lfw_root, tmp_path):
    """NAME:FILE and NAME:ROLE=FILE give each restorer its own files (one --weights used to go to every restorer,
    so no run of two restorers with explicit files could start); --dry-run shows which file each one loads."""
    for name, text in (("V.pth", "v"), ("U.pth", "u"), ("E.pth", "e")):
        (tmp_path / name).write_text(text)
    spec = f"vqfr-v2:{tmp_path / 'V.pth'},difface:unet={tmp_path / 'U.pth'},difface:estimator={tmp_path / 'E.pth'}"
    out = run("eval", "--data-root", lfw_root, "--recognizer", "dlib", "--restorer", "none,vqfr-v2,difface",
              "--weights", spec, "--scales", "8", "--limit-pairs", "4", "--dry-run").output
    sha = {n: hashlib.sha256(t.encode()).hexdigest()[:12] for n, t in (("V", "v"), ("U", "u"), ("E", "e"))}
    assert f"weights of vqfr-v2: model {tmp_path / 'V.pth'} (sha256 {sha['V']})" in out, out
    assert (f"weights of difface: unet {tmp_path / 'U.pth'} (sha256 {sha['U']}), estimator {tmp_path / 'E.pth'} "
            f"(sha256 {sha['E']})") in out, out


def test_a_run_that_fails_before_writing_leaves_no_folder(lfw_root, tmp_path, monkeypatch):
    """Missing recognizer weights stop the run after its folder and lock were made: the folder goes again (one that
    existed before stays), and the message names the recognizer's flag, not the restorers' --weights."""
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    out = tmp_path / "run"
    args = ("eval", "--data-root", lfw_root, "--recognizer", "arcface-r50-ms1mv3", "--limit-pairs", "4", "--out", out)
    result = run(*args, expect=2)
    assert "backbone.pth not found" in result.output and "or pass --recognizer-weights FILE" in result.output
    assert "--weights" not in result.output.replace("--recognizer-weights", ""), result.output
    assert not out.exists()
    out.mkdir()
    run(*args, expect=2)
    assert out.is_dir()
    result = run("eval", "--data-root", lfw_root, "--recognizer", "dlib", "--recognizer-weights", "foo=x.dat",
                 "--limit-pairs", "4", "--out", tmp_path / "run2", expect=2)
    assert "unknown weight role(s) ['foo']; use --recognizer-weights FILE or model=FILE" in result.output
    assert not (tmp_path / "run2").exists()


def test_malformed_pairs_file_is_one_line_exit_2(lfw_root, tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("10\t300\nAbel_Pacheco\t1\t4\n")
    result = run("eval", "--data-root", lfw_root, "--pairs", bad, "--out", tmp_path / "o", expect=2)
    assert "header says 10 fold(s)" in result.output and str(bad) in result.output
    assert not (tmp_path / "o" / "results.json").exists()


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory, faces_root):
    tmp = tmp_path_factory.mktemp("faces")
    csv_file = tmp / "pairs.csv"
    csv_file.write_text(_faces_csv(faces_root))
    out = tmp / "run"
    result = CliRunner().invoke(cli, ["eval", "--protocol", "pairs-csv", "--pairs", str(csv_file), "--data-root",
                                      str(faces_root), "--recognizer", "dlib", "--restorer", "none", "--out",
                                      str(out), "--cache-dir", str(tmp / "cache"), "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, tmp, csv_file, result


def test_eval_pairs_csv_real_faces(faces_run):
    out, _, _, result = faces_run
    record = json.loads((out / "results.json").read_text())
    (cond,) = record["conditions"]
    ver = cond["verification"]
    # 5 celebrities, 20 same + 20 different pairs: dlib separates them well
    assert ver["accuracy_mean"] >= 0.85 and ver["auc"] >= 0.9
    same = np.array(cond["scores"]["same"], bool)
    dist = -np.array(cond["scores"]["score"])
    assert np.median(dist[same]) < 0.6 < np.median(dist[~same])  # dlib's usual L2 threshold
    assert (out / "results.md").read_text().count("| clean |") == 1
    assert (out / "roc.png").stat().st_size > 10_000
    assert "clean" in result.output


def test_rerun_uses_cache(faces_run):
    out, tmp, csv_file, _ = faces_run
    result = run("eval", "--protocol", "pairs-csv", "--pairs", csv_file, "--data-root", Path(csv_file).parent.parent,
                 "--out", tmp / "run2", "--cache-dir", tmp / "cache", "--no-progress", expect=2)
    assert "image file not found" in result.output  # wrong data root: the first missing image is named
    from tests.conftest import FACES

    run("eval", "--protocol", "pairs-csv", "--pairs", csv_file, "--data-root", FACES, "--out", tmp / "run2",
        "--cache-dir", tmp / "cache", "--no-progress")
    first = json.loads((out / "results.json").read_text())
    second = json.loads((tmp / "run2" / "results.json").read_text())
    assert second["cache"]["misses"] == 0 and second["cache"]["hits"] > 0
    assert first["conditions"][0]["scores"] == second["conditions"][0]["scores"]


def test_missing_image_skip_is_recorded(faces_root, tmp_path):
    csv_file = tmp_path / "pairs.csv"
    text = _faces_csv(faces_root) + "madonna/madonna_0099.jpg,madonna/madonna_0001.jpg,1\n"
    csv_file.write_text(text)
    args = ["eval", "--protocol", "pairs-csv", "--pairs", csv_file, "--data-root", faces_root, "--out",
            tmp_path / "run", "--no-progress"]
    result = run(*args, expect=2)
    assert "madonna_0099.jpg: image file not found" in result.output and "--on-error skip" in result.output
    result = run(*args, "--on-error", "skip")
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["protocol"]["pairs"] == 40 and len(record["protocol"]["skipped"]) == 1
    assert "madonna_0099" in record["protocol"]["skipped"][0]["reason"]
    assert "skipped 1 pair" in result.output


def test_plot_roc_overlays_runs(faces_run, tmp_path):
    out = faces_run[0]
    png = tmp_path / "roc.png"
    run("plot", "roc", out / "results.json", out / "results.json", "-o", png)
    assert png.stat().st_size > 10_000
    result = run("plot", "roc", tmp_path / "nope.json", "-o", png, expect=2)
    assert "does not exist" in result.output


@pytest.mark.slow
def test_lfw_subset_real_accuracy(lfw_root, tmp_path):
    """120 real LFW View-2 pairs (balanced over the 10 folds) through MTCNN + dlib."""
    run("eval", "--protocol", "lfw", "--data-root", lfw_root, "--limit-pairs", 120, "--recognizer", "dlib",
        "--out", tmp_path / "run", "--no-progress")
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    ver = record["conditions"][0]["verification"]
    assert record["protocol"]["pairs"] + len(record["protocol"]["skipped"]) == 120
    assert record["protocol"]["folds"] == 10
    assert ver["accuracy_mean"] >= 0.93


@pytest.mark.parametrize("args,message", [
    (["--scales", "8,abc"], "'abc' is not an integer scale"),
    (["--scales", "0"], "'0' is not a positive scale"),
    (["--scales", ","], "needs at least one scale"),
    (["--degradation", "nope"], "unknown degradation 'nope'"),
    (["--detector", "mtcn"], "unknown detector 'mtcn'; did you mean mtcnn?"),
])
def test_degrade_checks_its_arguments_before_reading_any_image(lfw_root, tmp_path, monkeypatch, args, message):
    """A bad argument of `degrade` stops it before landmarks are detected (it used to fail after that stage)."""
    import restorever.pipeline.landmarks as landmarks

    def refuse(*a, **k):
        raise AssertionError("landmarks were detected before the arguments were checked")

    monkeypatch.setattr(landmarks, "landmark_stage", refuse)
    out = tmp_path / "deg"
    result = run("degrade", "--data-root", lfw_root, "--limit-pairs", "4", "--out", out, "--scales", "8", *args,
                 expect=2)
    assert message in result.output, result.output
    assert not out.exists()


def test_a_missing_absolute_pairs_file_is_not_found(faces_root, tmp_path):
    """An absolute --pairs that does not exist is "not found" (it was called absolute, though an existing absolute
    file is accepted)."""
    missing = tmp_path / "nowhere" / "pairs.csv"
    result = run("eval", "--protocol", "pairs-csv", "--pairs", missing, "--data-root", faces_root, "--out",
                 tmp_path / "o", expect=2)
    assert f"{missing}: pairs file not found" in result.output and "is absolute or empty" not in result.output


def test_weights_path_and_verify_report_the_files_a_run_loads(tmp_path, monkeypatch):
    """dlib's files live in the installed face_recognition_models package: `weights path` and `weights verify`
    name them, as `restorever recognizers` does (they named the weights cache, and verify failed while dlib ran);
    a cached file with the wrong sha256 still fails verify."""
    import face_recognition_models

    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    models = Path(face_recognition_models.__file__).parent / "models"
    predictor = models / "shape_predictor_5_face_landmarks.dat"
    assert f"shape_predictor: {predictor}" in run("weights", "path", "dlib").output
    assert f"shape_predictor: present {predictor}" in run("weights", "verify", "dlib").output
    assert "model: missing: put VQFR_v2.pth in" in run("weights", "path", "vqfr-v2").output
    junk = tmp_path / "home" / "weights" / "facenet-vggface2" / "20180402-114759-vggface2.pt"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"not the released checkpoint")
    listed = run("weights", "path", "facenet-vggface2", expect=2).output  # it said "present", unhashed
    assert f"model: unusable {junk} (its sha256 is not the card's" in listed and "present" not in listed
    message = run("weights", "verify", "facenet-vggface2", expect=2).output
    assert "sha256" in message and "`restorever weights download facenet-vggface2`" in message
    assert run("weights", "download", "--help").exit_code == 0  # the command the message names exists


def test_weights_add_and_download(tmp_path, monkeypatch):
    """`weights add` copies a file the user fetched into the cache (refusing a wrong sha256 where one is published);
    `weights download` offline says where to put the file."""
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    mine = tmp_path / "VQFR_v2.pth"
    mine.write_bytes(b"stand-in bytes: vqfr-v2 publishes no sha256, and this is no checkpoint")
    run("weights", "add", "vqfr-v2", mine, expect=2)  # any file was added, and verify then called it present
    assert not (tmp_path / "home" / "weights" / "vqfr-v2" / "VQFR_v2.pth").exists()
    assert "sha256 differs from the one facenet-vggface2 lists" in run("weights", "add", "facenet-vggface2", mine,
                                                                       expect=2).output
    assert not (tmp_path / "home" / "weights" / "facenet-vggface2").exists()
    assert "say which with --role" in run("weights", "add", "difface", mine, expect=2).output
    out = run("weights", "download", "difface", expect=2).output
    assert "iddpm_ffhq512_ema500000.pth not found" in out and str(tmp_path / "home" / "weights" / "difface") in out


def test_weights_add_checks_one_difface_file_by_building_its_network(tmp_path, monkeypatch):
    """With only one of DifFace's two files, `weights add` used to check only that the file unpickled: any
    state dict was added. Now the UNet or SwinIR that the file fills is built from it (released configuration)."""
    import torch

    from restorever.restorers.difface import SWINIR_CONFIG
    from restorever.restorers.layers.swinir import SwinIR

    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    folder = tmp_path / "home" / "weights" / "difface"
    junk = tmp_path / "junk.pth"
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, junk)
    out = run("weights", "add", "difface", junk, "--role", "unet", expect=2).output
    assert str(junk) in out and not (folder / "iddpm_ffhq512_ema500000.pth").exists()
    torch.manual_seed(0)
    swinir = tmp_path / "swinir.pth"
    torch.save(SwinIR(**SWINIR_CONFIG).state_dict(), swinir)
    assert "swapped" in run("weights", "add", "difface", swinir, "--role", "unet", expect=2).output
    added = run("weights", "add", "difface", swinir, "--role", "estimator")
    assert f"estimator: {folder / 'swinir_restoration512_L1.pth'}" in added.output
    assert "estimator built from" in added.output


def test_weights_add_and_verify_build_the_backend_from_the_file(tmp_path, monkeypatch):
    """A file is added only when the backend builds from it (arcface-r18 publishes no sha256: an iresnet18 state
    dict is accepted, an iresnet with other blocks is not); `verify` builds it too; dlib's files are not read from
    the weights cache, so adding one there is refused rather than reported done."""
    import torch

    from restorever.recognizers.layers.iresnet import IRESNET_LAYERS, IResNet

    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    r18 = tmp_path / "r18.pth"
    torch.save(IResNet(IRESNET_LAYERS[18]).state_dict(), r18)
    other = tmp_path / "other.pth"
    torch.save(IResNet([1, 1, 1, 1]).state_dict(), other)
    cached = tmp_path / "home" / "weights" / "arcface-r18-ms1mv3" / "backbone.pth"
    result = run("weights", "add", "arcface-r18-ms1mv3", other, expect=2)
    assert str(other) in result.output and not cached.exists()
    assert f"model: {cached}" in run("weights", "add", "arcface-r18-ms1mv3", r18).output
    out = run("weights", "verify", "arcface-r18-ms1mv3").output
    assert f"model: present {cached}" in out and "arcface-r18-ms1mv3: built from these files" in out
    cached.write_bytes(b"damaged later")
    run("weights", "verify", "arcface-r18-ms1mv3", expect=2)
    dat = tmp_path / "model.dat"
    dat.write_bytes(b"x")
    result = run("weights", "add", "dlib", dat, "--role", "model", expect=2)
    assert "not from the weights cache" in result.output and "--recognizer-weights model=" in result.output
    for command in ("path", "verify", "download"):
        assert run("weights", command, "none").output.strip() == "none takes no weight files"


def test_restore_writes_nothing_when_one_photo_has_no_face_unless_told_to_skip(faces_root, tmp_path):
    """`restore a.jpg noface.png` wrote a.png and then stopped; now every face is found before anything is written,
    and --on-error skip restores the others and names the skipped photo."""
    from PIL import Image

    photo = sorted((faces_root / "madonna").glob("*.jpg"))[0]
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    out = tmp_path / "o"
    result = run("restore", photo, blank, "--restorer", "none", "--out", out, expect=2)
    assert f"{blank}: no face found by mtcnn" in result.output and "nothing written" in result.output
    assert not out.exists()
    result = run("restore", photo, blank, "--restorer", "none", "--on-error", "skip", "--out", out)
    assert f"skipped {blank}: no face found by mtcnn" in result.output
    assert sorted(p.name for p in out.iterdir()) == [photo.stem + ".png", "restore.json"]


@pytest.mark.parametrize("protocol,args,message", [
    ("lfw", ["--top-k", "5", "--min-images", "9"], "--min-images, --top-k apply only to identification protocols; "
                                                   "lfw is a verification protocol"),
    ("lfw-ident", ["--limit-pairs", "4"], "--limit-pairs applies only to verification protocols; lfw-ident is an "
                                          "identification protocol"),
])
def test_eval_refuses_options_the_protocol_s_task_does_not_use(lfw_root, tmp_path, protocol, args, message):
    """`eval` takes the options of both tasks; one the protocol's task ignores was silently dropped."""
    out = tmp_path / "o"
    result = run("eval", "--protocol", protocol, "--data-root", lfw_root, "--scales", "8", "--out", out, *args,
                 expect=2)
    assert message in result.output
    assert not out.exists()


def test_a_new_run_in_a_used_folder_removes_the_old_report_and_examples(faces_run, faces_root, tmp_path, caplog):
    """Rerunning into a finished folder with other scales left the old report.html, figures/ and examples of the
    old scales beside the new results.json; they are removed (a file of the user's is kept) and the run validates."""
    import logging

    from restorever.validate import check_run

    _, tmp, csv_file, _ = faces_run
    out = tmp_path / "run"
    base = ["eval", "--protocol", "pairs-csv", "--pairs", csv_file, "--data-root", faces_root, "--no-progress",
            "--out", out, "--cache-dir", tmp / "cache", "--examples", "2"]
    run(*base, "--scales", "8")
    run("report", out)
    (out / "notes.txt").write_text("mine")
    assert (out / "report.html").is_file() and (out / "tables.tex").is_file() and (out / "examples" / "x8").is_dir()
    with caplog.at_level(logging.WARNING, logger="restorever.reports.results"):
        run(*base, "--scales", "16")
    assert not any((out / name).exists() for name in ("report.html", "report.md", "tables.csv", "tables.tex"))
    assert not (out / "figures").exists() and not (out / "examples" / "x8").exists()
    assert (out / "examples" / "x16").is_dir() and (out / "notes.txt").read_text() == "mine"
    assert ("removed what the previous run there left (report.html, report.md, tables.csv, tables.tex, figures/, 2 "
            "example") in caplog.text
    assert check_run(out).ok


def test_restorever_data_may_name_the_folder_above_the_protocols_data(lfw_root, monkeypatch):
    """docs/protocols.md: $RESTOREVER_DATA is the data folder itself or holds it as <protocol>/. The CLI bound the
    variable to --data-root, which is used as given, so only the first form worked."""
    monkeypatch.setenv("RESTOREVER_DATA", str(lfw_root.parent))
    assert lfw_root.name == "lfw"
    out = run("eval", "--protocol", "lfw", "--recognizer", "dlib", "--limit-pairs", "4", "--dry-run").output
    assert out.startswith("protocol lfw: 4 pairs")
    monkeypatch.setenv("RESTOREVER_DATA", str(lfw_root))
    assert run("eval", "--protocol", "lfw", "--recognizer", "dlib", "--limit-pairs", "4",
               "--dry-run").output.startswith("protocol lfw: 4 pairs")
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    monkeypatch.setenv("RESTOREVER_DATA", str(lfw_root.parent))  # holds lfw/, not lfw-ident/: said, not misread
    result = run("ident", "--min-images", "100", "--dry-run", expect=2)
    assert "protocol lfw-ident: data not found" in result.output and "DIR/people.txt" in result.output


def test_degradations_lists_every_preset_with_its_rules():
    """The presets' rules could not be seen from the tool (`describe()` was never called), and nothing said that the
    default sweep's x32 lies beyond the difface-test grid's largest scale (x30)."""
    from restorever.degradation_params import PRESETS

    out = run("degradations").output
    for name, preset in PRESETS.items():
        assert f"{name} " in out and preset.source in out
    assert "blur sigma {2, 4, 6, 8, 10, 12, 14}" in out and "scale rule {4, 8, 16, 24, 30}" in out
    assert "blur sigma {4, 8, 12, 16}" in out and "x30" in out and "difface-journal" in out


def test_byte_identical_copies_keep_their_own_degradation(faces_root, tmp_path):
    """The degradation is seeded by (seed, scale, item id) but degraded cache keys held only the image's content: two
    copies of one file in a protocol shared one entry, so a rerun from the cache changed the scores (x16 AUC 0.5 ->
    0.0) and validate rejected the first run. The item id is now part of those keys."""
    import shutil

    data = tmp_path / "data"
    (data / "x").mkdir(parents=True)
    for name, source in {"m1.jpg": "madonna/madonna_0001.jpg", "m1_copy.jpg": "madonna/madonna_0001.jpg",
                         "m2.jpg": "madonna/madonna_0002.jpg", "e1.jpg": "elton_john/elton_john_0001.jpg"}.items():
        shutil.copy(faces_root / source, data / "x" / name)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\nx/m2.jpg,x/m1.jpg,1\nx/m2.jpg,x/m1_copy.jpg,1\nx/e1.jpg,x/m1.jpg,0\n"
                     "x/e1.jpg,x/m1_copy.jpg,0\n")
    args = ("eval", "--protocol", "pairs-csv", "--pairs", pairs, "--data-root", data, "--recognizer", "dlib",
            "--scales", "16", "--cache-dir", tmp_path / "cache", "--no-progress", "--examples", 0)
    run(*args, "--out", tmp_path / "first")
    run(*args, "--out", tmp_path / "rerun")
    first, rerun = (json.loads((tmp_path / r / "results.json").read_text()) for r in ("first", "rerun"))
    x16 = [c for c in first["conditions"] if c["scale"] == 16][0]["scores"]["score"]
    assert x16[0] != x16[1]  # the copies were degraded differently (their own item ids)
    assert [c["scores"] for c in rerun["conditions"]] == [c["scores"] for c in first["conditions"]]
    assert rerun["cache"]["misses"] == 0
    run("validate", tmp_path / "first")


def test_dry_run_after_a_run_counts_images_without_a_face_as_skipped(faces_root, tmp_path):
    """After a run that skipped a face-less image, its dry run still listed that image as work to do (the rerun
    computes nothing): images whose cached landmarks say "no face" are counted apart."""
    import shutil

    from PIL import Image

    data = tmp_path / "data"
    (data / "x").mkdir(parents=True)
    for name, source in {"m1.jpg": "madonna/madonna_0001.jpg", "m2.jpg": "madonna/madonna_0002.jpg",
                         "e1.jpg": "elton_john/elton_john_0001.jpg"}.items():
        shutil.copy(faces_root / source, data / "x" / name)
    Image.new("RGB", (200, 200), (120, 120, 120)).save(data / "x" / "blank.jpg")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\nx/m1.jpg,x/m2.jpg,1\nx/e1.jpg,x/m2.jpg,0\nx/m1.jpg,x/blank.jpg,0\n")
    args = ("eval", "--protocol", "pairs-csv", "--pairs", pairs, "--data-root", data, "--recognizer", "dlib",
            "--scales", "8", "--cache-dir", tmp_path / "cache", "--on-error", "skip", "--no-progress",
            "--examples", 0, "--out", tmp_path / "run")
    run(*args)
    plan = run(*args, "--dry-run").output
    assert "no face found (cached): 1" in plan and "landmarks (mtcnn): 4 cached, 0 to detect" in plan
    assert re.search(r"clean +3 cached, +0 to compute", plan)
    assert re.search(r"none x8 +1 cached, +0 to compute", plan)  # probes m2 and blank: blank has no face
    assert "nothing is missing" in plan


def test_protocols_lists_the_others_beside_a_broken_file(tmp_path, monkeypatch):
    """One broken YAML in $RESTOREVER_PROTOCOL_PATH made `restorever protocols` print only its error."""
    (tmp_path / "bad.yaml").write_text("protocol: bad\n  x: [\n")
    monkeypatch.setenv("RESTOREVER_PROTOCOL_PATH", str(tmp_path))
    out = run("protocols", expect=2).output
    assert "bad                (cannot be used: " in out and "invalid YAML" in out
    assert "\nlfw " in out and "\npairs-csv " in out and len(out.splitlines()) == 6


def test_protocol_alignment_fit_lmeds_aligns_as_the_official_scripts(faces_root, tmp_path):
    """`alignment.fit: lmeds` fits the landmarks as facexlib does (cv2 LMEDS): on Elton_John_0006, whose MTCNN mouth
    corner does not fit the template, the crop moves (about 32 px) and its scores change (1e-3); faces whose five
    points fit keep theirs to 3e-6 (OpenCV's refinement against the closed form). The fit is part of the run's identity and its keys, and validate checks such a run."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path_a,path_b,same\nelton_john/elton_john_0001.jpg,elton_john/elton_john_0006.jpg,1\n"
                     "madonna/madonna_0001.jpg,elton_john/elton_john_0006.jpg,0\n"
                     "madonna/madonna_0001.jpg,madonna/madonna_0002.jpg,1\n"
                     "elton_john/elton_john_0001.jpg,madonna/madonna_0002.jpg,0\n")
    spec = tmp_path / "faces-lmeds.yaml"
    spec.write_text("include: pairs-csv\nprotocol: faces-lmeds\nalignment: {fit: lmeds}\n")
    common = ("--pairs", pairs, "--data-root", faces_root, "--recognizer", "dlib", "--cache-dir", tmp_path / "cache",
              "--no-progress")
    run("eval", "--protocol", "pairs-csv", *common, "--out", tmp_path / "lsq")
    run("eval", "--protocol", spec, *common, "--out", tmp_path / "lmeds")
    lsq, lmeds = (json.loads((tmp_path / r / "results.json").read_text()) for r in ("lsq", "lmeds"))
    assert lmeds["cache"]["identity"]["alignment_fit"] == "lmeds"
    assert lsq["cache"]["identity"]["alignment_fit"] == "least-squares"
    a, b = (np.asarray(r["conditions"][0]["scores"]["score"]) for r in (lsq, lmeds))
    moved = np.abs(a - b)
    assert moved[:2].min() > 20 * moved[2:].max()  # the pairs with Elton_John_0006
    assert moved[2:].max() < 1e-4  # OpenCV's refined fit and the closed form agree to rounding on the others
    run("validate", tmp_path / "lmeds")
    # the library aligns the same way when asked to (FacePipeline scores equal eval's with the protocol's face rule)
    from restorever import FacePipeline

    photos = [faces_root / "elton_john" / n for n in ("elton_john_0001.jpg", "elton_john_0006.jpg")]
    for fit, expected in (("lmeds", b[0]), ("least-squares", a[0])):
        pipe = FacePipeline(recognizer="dlib", device="cpu", alignment_fit=fit)
        e = pipe.embed([str(p) for p in photos], face="center")
        assert pipe.similarity_of_embeddings(e[0], e[1]) == pytest.approx(expected, abs=1e-6)
    from restorever.errors import ConfigError

    with pytest.raises(ConfigError, match="alignment_fit must be one of least-squares, lmeds"):
        FacePipeline(recognizer="dlib", device="cpu", alignment_fit="ransac")
    bad = tmp_path / "bad.yaml"
    bad.write_text("include: pairs-csv\nprotocol: bad\nalignment: {fit: ransac}\n")
    assert "alignment.fit must be one of least-squares, lmeds" in run("eval", "--protocol", bad, *common, "--out",
                                                                      tmp_path / "x", expect=2).output


def test_eval_refuses_an_unknown_degradation_even_without_scales(lfw_root, tmp_path, monkeypatch):
    """`--degradation` is recorded in results.json (config and cache identity) even when no scale uses it: a typo
    there was accepted and written into the record as the run's degradation (validate called it valid)."""
    import restorever.pipeline.landmarks as landmarks

    def refuse(*a, **k):
        raise AssertionError("landmarks were detected before the arguments were checked")

    monkeypatch.setattr(landmarks, "landmark_stage", refuse)
    out = tmp_path / "run"
    result = run("eval", "--data-root", lfw_root, "--limit-pairs", "4", "--degradation", "difface-tset",
                 "--out", out, "--no-progress", expect=2)
    assert "unknown degradation 'difface-tset'; did you mean difface-test" in result.output, result.output
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("flag", ["--side", "--degrade-side"])
def test_degrade_takes_evals_degrade_side_flag(lfw_root, tmp_path, monkeypatch, flag):
    """`degrade` names the degraded side as `eval` (and DESIGN.md) do, `--degrade-side`; its older `--side` stays.
    With `both`, every image of the pairs is degraded, not only the probes."""
    import restorever.pipeline.landmarks as landmarks

    class Stop(Exception):
        pass

    seen = {}

    def capture(protocol, items, **kwargs):
        seen["items"] = list(items)
        raise Stop

    monkeypatch.setattr(landmarks, "landmark_stage", capture)
    result = CliRunner().invoke(cli, ["degrade", "--data-root", str(lfw_root), "--limit-pairs", "4", "--scales", "8",
                                      flag, "both", "--out", str(tmp_path / "deg")])
    assert result.exit_code == 1 and "unexpected Stop" in result.stderr  # stopped in the landmark stage
    from restorever.pipeline.evaluate import limit_pairs
    from restorever.protocol import load_protocol

    pairs = limit_pairs(load_protocol("lfw", data_root=lfw_root).pairs, 4)
    assert sorted(seen["items"]) == sorted(pairs.images()) and len(seen["items"]) > len(set(pairs.b))

"""Round 19, fourth mutation pass: the code between a hostile or broken input and the user's disk and numbers
(data root, atomic writes, downloads and the weights cache, checkpoint files, images, the validator's cache check).

Each test here fails on a mutant that survived the modules' own tests (docs/reliability.md, "Round 19: mutation
testing, fourth pass"); the answers are known properties of the files involved (sizes, hashes, names, modes).
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from restorever import data_root, files as files_module, hub
from restorever import checkpoint_files
from restorever.checkpoint_files import check_archive, load_error_summary
from restorever.data_root import download_dataset
from restorever.errors import (CheckpointLayoutError, DataNotFoundError, ImageError, ProtocolError, UnsafePathError,
                               WeightsHashError)
from restorever.hub import sha256_file
from restorever.images import (MIN_SIDE, decode_image, exif_orientation, header_decodes, read_alpha,
                               read_file_bytes, read_image)
from restorever.cli import cli
from restorever.files import atomic_write_bytes, atomic_write_text
from restorever.pipeline.cache import _ENTRY_TEMPORARY
from restorever.reports.results import _is_leftover_file
from restorever.validate import check_run

from .conftest import eval_args
from .test_validate import run_copy  # noqa: F401 - the fixture: a private copy of the reference run and its cache


# ---------------------------------------------------------------------------------------------------- files.py

@pytest.fixture
def umask_027():
    """The process umask set to 0o027 for the test (not the usual 0o022, so a fallback's 0o022 shows)."""
    real_umask = os.umask  # the test may replace os.umask, and its monkeypatch may be undone after this fixture
    old = real_umask(0o027)
    files_module._umask.cache_clear()
    yield 0o027
    real_umask(old)
    files_module._umask.cache_clear()


def test_umask_is_read_from_proc_without_setting_it(umask_027, monkeypatch):
    """Where /proc says the umask, it is read there: ``os.umask`` (process-wide, racing with other threads that
    create files) is never called."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("no /proc/self/status on this system")

    def refuse(mask):
        raise AssertionError("os.umask called although /proc/self/status gives the umask")

    monkeypatch.setattr(files_module.os, "umask", refuse)
    assert files_module._umask() == umask_027


def test_umask_fallback_restores_the_process_umask(umask_027, monkeypatch):
    """Without /proc the umask is read by setting it; the fallback must put the old value back."""
    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(files_module, "open", no_proc, raising=False)
    assert files_module._umask() == umask_027
    now = os.umask(0o077)
    os.umask(now)
    assert now == umask_027


def test_atomic_write_syncs_the_whole_content_before_the_rename(tmp_path, monkeypatch):
    """The temporary file holds every byte on disk (flushed from Python's buffer, then fsync'd) before it replaces
    the target: a crash after the rename cannot leave a short file under the final name."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_size))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.getsize(src)))
        real_replace(src, dst)

    monkeypatch.setattr(files_module.os, "fsync", fsync)
    monkeypatch.setattr(files_module.os, "replace", replace)
    data = b"0123456789" * 10  # far below the write buffer: without the flush, fsync sees an empty file
    atomic_write_bytes(tmp_path / "f.bin", data)
    assert events == [("fsync", 100), ("replace", 100)]
    assert (tmp_path / "f.bin").read_bytes() == data


@pytest.mark.parametrize("target, recognised", [
    ("0" * 64 + ".npz", lambda name: _ENTRY_TEMPORARY.fullmatch(name) is not None),
    ("results.json", _is_leftover_file),
])
def test_temporary_names_are_the_ones_leftover_cleaning_knows(tmp_path, monkeypatch, target, recognised):
    """A killed writer leaves its temporary file; the cache (``.<key>.npz.XXXX.tmp``) and the run folder
    (``.results.json.XXXX.tmp``) recognise such files by name, so the name atomic_write_bytes gives must match."""
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(files_module.os, "replace", lambda src, dst: (seen.append(src), real_replace(src, dst)))
    atomic_write_bytes(tmp_path / target, b"x")
    name = os.path.basename(seen[0])
    assert name.startswith(f".{target}.") and name.endswith(".tmp")
    assert recognised(name), name


def test_atomic_write_text_is_utf8(tmp_path):
    text = "Zoë Ångström 北京 \u2603\n"
    atomic_write_text(tmp_path / "t.txt", text)
    assert (tmp_path / "t.txt").read_bytes() == text.encode("utf-8")


# ---------------------------------------------------------------------------------------------------- data_root.py

def _archive(path: Path, members: dict[str, bytes], mode: str) -> Path:
    """A tar archive at ``path`` (``mode`` ``"w"`` plain, ``"w:gz"`` gzip) holding ``members``."""
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _no_network(monkeypatch) -> list:
    """Downloads recorded instead of made (an archive already in place must not be fetched again)."""
    calls = []
    monkeypatch.setattr(hub, "download_file", lambda url, dest, **kw: calls.append(url))
    return calls


@pytest.mark.parametrize("suffix, mode", [(".tar", "w"), (".tgz", "w:gz"), (".gz", "w:gz")])
def test_every_archive_suffix_is_extracted(tmp_path, monkeypatch, suffix, mode):
    target = tmp_path / "data" / "mine"
    target.mkdir(parents=True)
    _archive(target / f"faces{suffix}", {"faces/a/a_0001.txt": b"alpha"}, mode)
    calls = _no_network(monkeypatch)
    download_dataset([{"filename": f"faces{suffix}", "url": "https://example.org/f", "extract": True}], target, "mine")
    assert (target / "faces" / "a" / "a_0001.txt").read_bytes() == b"alpha" and calls == []


def test_an_archive_already_there_must_have_the_listed_sha256(tmp_path, monkeypatch):
    """A file left under the entry's name by an older or another download is not extracted as if it were the one
    the protocol lists (fixed in this round: it was used unchecked)."""
    good = _archive(tmp_path / "good.tgz", {"faces/x.txt": b"new"}, "w:gz")
    target = tmp_path / "data" / "mine"
    target.mkdir(parents=True)
    old = _archive(target / "faces.tgz", {"faces/x.txt": b"old"}, "w:gz")
    entry = {"filename": "faces.tgz", "url": "https://example.org/faces.tgz", "sha256": sha256_file(good).upper(),
             "extract": True}
    calls = _no_network(monkeypatch)
    with pytest.raises(WeightsHashError, match=f"{re.escape(str(old))}: sha256 {sha256_file(old)}.*delete the file"):
        download_dataset([entry], target, "mine")
    assert not (target / "faces").exists() and calls == []
    shutil.copyfile(good, old)  # the listed file (its sha256 given in capitals): used, not downloaded again
    download_dataset([entry], target, "mine")
    assert (target / "faces" / "x.txt").read_bytes() == b"new" and calls == []


def test_an_absent_archive_is_downloaded_with_its_sha256_then_extracted(tmp_path, monkeypatch):
    good = _archive(tmp_path / "good.tgz", {"faces/x.txt": b"new"}, "w:gz")
    target = tmp_path / "data" / "mine"
    calls = []

    def fetch(url, dest, *, sha256, description=""):
        calls.append((url, dest, sha256))
        shutil.copyfile(good, dest)

    monkeypatch.setattr(hub, "download_file", fetch)
    entry = {"filename": "faces.tgz", "url": "https://example.org/faces.tgz", "sha256": "ab" * 32, "extract": True}
    assert download_dataset([entry], target, "mine") == target
    assert calls == [("https://example.org/faces.tgz", target / "faces.tgz", "ab" * 32)]
    assert (target / "faces" / "x.txt").read_bytes() == b"new"



def _lfw_spec(download: list) -> dict:
    return {"protocol": "mine", "dataset": {"format": "lfw-pairs", "pairs": "pairs.txt", "download": download}}


@pytest.mark.parametrize("download, offline, fetched", [(None, False, True), (True, False, True), (False, False, False),
                                                        (None, True, False), (True, True, False)])
def test_data_is_downloaded_only_when_asked_and_online(tmp_path, monkeypatch, download, offline, fetched):
    """``download=False`` forbids the download even online; offline forbids it even with ``download=True``."""
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RESTOREVER_DATA", raising=False)
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1" if offline else "0")
    calls = []
    monkeypatch.setattr(data_root, "download_dataset", lambda archives, target, name: calls.append(target) or target)
    spec = _lfw_spec([{"filename": "pairs.txt", "url": "https://example.org/pairs.txt"}])
    if fetched:
        assert data_root.resolve_data_root(spec, None, download=download) == tmp_path / "home" / "data" / "mine"
    else:
        with pytest.raises(DataNotFoundError, match="protocol mine: data not found"):
            data_root.resolve_data_root(spec, None, download=download)
    assert len(calls) == fetched


def test_a_download_filename_through_a_symlink_out_of_the_root_is_refused(tmp_path, monkeypatch):
    """A plain sub-folder name passes the spec check; a symlink of that name leaving the data folder does not."""
    target = tmp_path / "data" / "mine"
    target.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "sub").symlink_to(outside)
    calls = _no_network(monkeypatch)
    with pytest.raises(UnsafePathError, match="download filename 'sub/x.tgz' resolves to .*outside the data root"):
        download_dataset([{"filename": "sub/x.tgz", "url": "https://example.org/x.tgz"}], target, "mine")
    assert calls == [] and not list(outside.iterdir())


# ---------------------------------------------------------------------------------------------------- hub.py

def _card(sha: str | None = None) -> hub.ModelCard:
    return hub.ModelCard(name="toy", arch="toy", weights={
        "model": hub.WeightFile("toy.pth", "https://example.invalid/toy.pth", sha, "MIT")})


def test_copy_into_cache_puts_the_whole_file_under_its_name(tmp_path):
    source = tmp_path / "mine.pth"
    source.write_bytes(os.urandom(3000))
    target = hub.copy_into_cache(_card(), "model", source, cache_dir=tmp_path / "cache")
    assert target == tmp_path / "cache" / "weights" / "toy" / "toy.pth"
    assert sha256_file(target) == sha256_file(source)
    assert sorted(p.name for p in target.parent.iterdir()) == ["toy.pth"]  # no .part left


# ------------------------------------------------------------------------------------------ validate/run_cache.py

def test_a_record_without_similarity_is_checked_under_either_similarity(run_copy):
    """Records made before conditions stored their ``similarity`` are checked with cosine and with euclidean
    scores, the closer one counting: the (dlib, euclidean) run stays valid, and a changed score is still reported."""
    run, _ = run_copy
    record = json.loads((run / "results.json").read_text())
    assert {c["similarity"] for c in record["conditions"]} == {"euclidean"}
    for cond in record["conditions"]:
        del cond["similarity"]
    (run / "results.json").write_text(json.dumps(record, indent=1))
    report = check_run(run)
    assert report.ok, report.problems
    record["conditions"][1]["scores"]["score"][0] += 0.05
    (run / "results.json").write_text(json.dumps(record, indent=1))
    assert any("do not reproduce the stored scores (euclidean similarity" in p for p in check_run(run).problems)


# ---------------------------------------------------------------------------------------------------- images.py

def _tiff_or_png(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def test_every_16_bit_value_is_rounded_to_the_nearest_8_bit_value():
    """All 65,536 16-bit values (one 256x256 image) against integer arithmetic: v -> round(v * 255 / 65535), halves
    up; 8-bit values stored in a 32-bit TIFF come back unchanged, and k / 255 as float comes back as k."""
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    want = (values.astype(np.int64) * 2 + 257) // (2 * 257)  # floor(v / 257 + 1/2), exactly
    for fmt in ("PNG", "TIFF"):
        got = decode_image(_tiff_or_png(values, fmt), source=f"ramp.{fmt}")
        assert np.array_equal(got[..., 0], want) and np.array_equal(got[..., 2], want), fmt
    eight = np.arange(256, dtype=np.int32).reshape(16, 16).repeat(2, 0).repeat(2, 1)
    assert np.array_equal(decode_image(_tiff_or_png(eight, "TIFF"), source="i32.tiff")[..., 1], eight)
    unit = (np.arange(256, dtype=np.float32) / 255).reshape(16, 16).repeat(2, 0).repeat(2, 1)
    assert np.array_equal(decode_image(_tiff_or_png(unit, "TIFF"), source="f.tiff")[..., 1], eight)
    dark = np.linspace(0, 2, 32 * 32, dtype=np.float32).reshape(32, 32)  # a float image in 0..255 units, max 2
    assert decode_image(_tiff_or_png(dark, "TIFF"), source="dark.tiff").max() == 2  # as is, not taken for 0..1


def test_the_order_of_the_weights_table_does_not_matter(run_copy):
    """JSON objects are unordered: a record whose weights table lists dlib's two files in the other order (as a
    tool rewriting the file may) rebuilds the same run identity and stays valid."""
    run, _ = run_copy
    record = json.loads((run / "results.json").read_text())
    assert list(record["weights"]) == ["dlib:model", "dlib:shape_predictor"]
    record["weights"] = dict(reversed(list(record["weights"].items())))
    (run / "results.json").write_text(json.dumps(record, indent=1))
    report = check_run(run)
    assert report.ok, report.problems
    assert report.checked["cache entries"] > 0


# ------------------------------------------------------------------------------------------ checkpoint_files.py

def test_a_checkpoint_that_needs_code_names_the_refused_global(tmp_path):
    """A pickle that would call ``os.system`` is refused unread, and the message names what it wanted to import."""
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "run": os.system}, path)
    with pytest.raises(CheckpointLayoutError, match=r"it needs code to be unpickled: .*system") as info:
        hub.load_checkpoint(path)
    assert str(path) in str(info.value) and "never unpickles code" in str(info.value)


# ------------------------------------------------------------------------------- the rest of the sample (finished)

@pytest.mark.parametrize("name", ["../elsewhere", "a/b", ".hidden"])
def test_a_protocol_name_that_is_not_plain_cannot_name_the_cache_folder(tmp_path, monkeypatch, name):
    """The cache folder of a protocol's data is ``<cache>/data/<name>``: a name with a path in it is refused before
    any folder is looked at or made (it would place the data outside the cache's data folder)."""
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RESTOREVER_DATA", raising=False)
    spec = {"protocol": name, "dataset": {"format": "lfw-pairs", "pairs": "pairs.txt"}}
    with pytest.raises(ProtocolError, match="is not a plain name; it cannot name a cache folder"):
        data_root.resolve_data_root(spec, None)
    assert not (tmp_path / "home").exists()


def test_an_unrecognised_offline_value_warns_once_per_value(monkeypatch, caplog):
    """Every download decision reads the setting again; its warning comes once per variable and value, not once
    per file looked up (a run checks several weight files and data folders)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_warned_offline_values", set())
    with caplog.at_level(logging.WARNING, logger="restorever.hub"):
        monkeypatch.setenv("RESTOREVER_OFFLINE", "maybe")
        assert all(hub.is_offline() for _ in range(3))
        monkeypatch.setenv("RESTOREVER_OFFLINE", "perhaps")
        assert all(hub.is_offline() for _ in range(2))
    warned = [r.getMessage() for r in caplog.records if "is not one of" in r.getMessage()]
    assert len(warned) == 2 and "RESTOREVER_OFFLINE=maybe " in warned[0] and "=perhaps " in warned[1], warned


def test_a_checkpoint_with_only_an_extra_key_is_a_layout_error(tmp_path):
    """An extra key alone (no missing key, every shape right) is named like the other layout faults, before any
    tensor is copied into the module, not left to ``load_state_dict``'s bare RuntimeError."""
    module = torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    state = {"weight": torch.ones(2, 3), "bias": torch.ones(2), "ema_step": torch.zeros(1)}
    with pytest.raises(CheckpointLayoutError, match=r"mine\.pth: .* 1 unexpected \(e\.g\. ema_step\)$"):
        hub.load_state_dict_strict(module, state, source="mine.pth")
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def _jpeg(orientation: int | None, size: tuple[int, int] = (40, 24)) -> bytes:
    """A JPEG of ``size`` (w, h), with the EXIF orientation tag set when given."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 10)).save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def test_exif_orientation_is_the_tag_or_1():
    """The tag as stored (1..8); 1 (no rotation) for no tag, an out-of-range tag, and bytes that are no image."""
    assert [exif_orientation(_jpeg(k)) for k in range(1, 9)] == list(range(1, 9))
    assert exif_orientation(_jpeg(None)) == 1 and exif_orientation(_jpeg(9)) == 1
    assert exif_orientation(b"not an image at all") == 1 and exif_orientation(_jpeg(6)[:10]) == 1


def test_the_smallest_allowed_side_is_allowed():
    """Sides of MIN_SIDE pixels are decoded; one pixel less on either side is refused (header check and decode)."""
    assert decode_image(_jpeg(None, (MIN_SIDE, MIN_SIDE)), source="s.jpg").shape == (MIN_SIDE, MIN_SIDE, 3)
    assert header_decodes(_jpeg(None, (MIN_SIDE, MIN_SIDE)))
    for size in ((MIN_SIDE - 1, MIN_SIDE), (MIN_SIDE, MIN_SIDE - 1)):
        assert not header_decodes(_jpeg(None, size))
        with pytest.raises(ImageError, match=rf"s\.jpg: image of {size[0]}x{size[1]} pixels refused"):
            decode_image(_jpeg(None, size), source="s.jpg")


def test_a_folder_given_as_an_image_is_named_as_a_folder(tmp_path):
    """Opening a folder read-only succeeds on POSIX; it is refused as a folder (missing data), not reported as a
    device or FIFO."""
    (tmp_path / "x.jpg").mkdir()
    with pytest.raises(DataNotFoundError, match=re.escape(f"{tmp_path / 'x.jpg'}: is a folder, not an image file")):
        read_image(tmp_path / "x.jpg")


def test_an_unreadable_alpha_channel_is_an_image_error_naming_the_file(tmp_path):
    """A PNG whose header says RGBA but whose pixels are cut off: one ImageError naming the file."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8), "RGBA").save(buf, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[:400])
    with pytest.raises(ImageError, match=re.escape(f"{path}: cannot read its alpha channel")):
        read_alpha(path)


def test_a_record_made_before_the_cache_identity_is_checked_not_crashed_on(run_copy):
    """Records written before ``cache.identity`` existed get their identity rebuilt from the config (CPU, the key
    recipes of that time). This run's entries were made with today's recipes, so the check must report them
    missing under the old keys and say which recipes it used; it must not stop on the absent identity."""
    run, _ = run_copy
    record = json.loads((run / "results.json").read_text())
    del record["cache"]["identity"]
    (run / "results.json").write_text(json.dumps(record, indent=1))
    report = check_run(run)
    assert not report.ok and report.problems
    assert all("cached embedding(s) missing" in p for p in report.problems), report.problems
    assert any("cache keys follow the run's own recipe versions" in n for n in report.notes), report.notes


def test_data_already_in_the_cache_folder_is_found_offline(tmp_path, monkeypatch):
    """``<cache>/data/<protocol>`` holding the data is used as it is: found offline, nothing downloaded again; a
    folder without the protocol's pairs file (here both RESTOREVER_DATA candidates) is passed over."""
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    (tmp_path / "elsewhere" / "mine").mkdir(parents=True)  # RESTOREVER_DATA's folders exist but hold no pairs file
    monkeypatch.setenv("RESTOREVER_DATA", str(tmp_path / "elsewhere"))
    cached = tmp_path / "home" / "data" / "mine"
    (cached / "lfw-deepfunneled").mkdir(parents=True)
    (cached / "pairs.txt").write_text("1\t1\n")
    calls = []
    monkeypatch.setattr(data_root, "download_dataset", lambda archives, target, name: calls.append(target) or target)
    spec = _lfw_spec([{"filename": "pairs.txt", "url": "https://example.org/pairs.txt"}])
    assert data_root.resolve_data_root(spec, None) == cached and calls == []


def test_an_oversized_file_is_refused_unread(tmp_path, monkeypatch):
    """A regular file above ``max_bytes`` is refused from its size alone: not one byte of it is read."""
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff" * 5000)
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    with pytest.raises(ImageError, match=re.escape(f"{path}: 5000 bytes, more than the 4096 allowed")):
        read_file_bytes(path, max_bytes=4096)
    assert reads == []
    assert read_file_bytes(path, max_bytes=5000) == b"\xff" * 5000 and reads  # at the limit: read whole


def test_a_text_file_given_as_a_checkpoint_is_quoted_up_to_40_characters(tmp_path):
    """The message quotes the text's first line, cut to its first 40 characters (a long line is no run-on)."""
    path = tmp_path / "notes.pth"
    line = "".join(chr(ord("a") + i % 26) for i in range(70))
    path.write_text(line + "\nmore\n")
    with pytest.raises(CheckpointLayoutError, match=re.escape(f"text file starting with {line[:40]!r}, not a")):
        hub.load_checkpoint(path)


def test_a_truncated_checkpoint_names_torchs_reason(tmp_path):
    """A torch zip checkpoint cut in half is no text, no pickle and no other known file: the message carries
    torch's own first line (the missing central directory), not only the exception's class name."""
    path = tmp_path / "cut.pth"
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(100)}, buf)
    path.write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    with pytest.raises(CheckpointLayoutError, match=re.escape(str(path)) + ".*failed finding central directory"):
        hub.load_checkpoint(path)
    assert load_error_summary(RuntimeError("")) == "RuntimeError"  # no text: the class name


def test_a_genuine_no_face_skip_of_a_rotated_photo_is_valid(tiny_data, reference_run, tmp_path):
    """A faceless photo with an EXIF orientation tag skipped with --on-error skip: its landmark entry is keyed with
    the decode tag (``orient=6``), and the validator looks the skip up under that key: the run stays valid."""
    csv, root = tiny_data
    data = tmp_path / "faces"
    shutil.copytree(root, data)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (200, 120), (128, 128, 128)).save(data / "blank.jpg", exif=exif.tobytes())
    (tmp_path / "pairs.csv").write_text(csv.read_text() + "ben_afflek/ben_afflek_0001.jpg,blank.jpg,0\n")
    shutil.copytree(reference_run[3], tmp_path / "cache")
    out = tmp_path / "out"
    args = eval_args(tmp_path / "pairs.csv", data, out, tmp_path / "cache", "--on-error", "skip")
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "results.json").read_text())
    assert record["protocol"]["images_decode"] == {"blank.jpg": "orient=6"}
    assert [s["b"] for s in record["protocol"]["skipped"]] == ["blank.jpg"]
    report = check_run(out)
    assert report.ok, report.problems
    assert report.checked["skips checked"] == 1


def test_a_safetensors_file_given_as_a_checkpoint_is_named_as_one(tmp_path):
    """safetensors: an 8-byte little-endian header length, then the JSON header (``{"...``). Named as such, so the
    user knows to convert it, not called an unknown binary."""
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00" * 4)
    with pytest.raises(CheckpointLayoutError, match=re.escape(f"{path}") + ".*it looks like a safetensors file"):
        hub.load_checkpoint(path)


def test_a_changed_detector_in_the_config_is_reported(run_copy):
    """The rebuilt identity reads the config's detector: a config edited to name another detector than the one
    whose landmarks the cache holds no longer matches ``cache.identity``."""
    run, _ = run_copy
    record = json.loads((run / "results.json").read_text())
    assert record["config"]["detector"] == record["cache"]["identity"]["detector"] == "mtcnn"
    record["config"]["detector"] = "scrfd"
    (run / "results.json").write_text(json.dumps(record, indent=1))
    assert any("cache.identity does not match the config" in p for p in check_run(run).problems)


def _racing_mkdir(monkeypatch, taken: Path, by_folder: bool) -> None:
    """``Path.mkdir`` of ``taken`` loses a race: another process makes that folder (or a file of that name) first."""
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == taken:
            real_mkdir(self) if by_folder else self.write_bytes(b"x")
            raise FileExistsError(17, "File exists", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_a_folder_made_meanwhile_by_another_process_is_used_not_claimed(tmp_path, monkeypatch):
    _racing_mkdir(monkeypatch, tmp_path / "a" / "b", by_folder=True)
    created = hub._make_folders(tmp_path / "a" / "b" / "c")
    assert created == [tmp_path / "a", tmp_path / "a" / "b" / "c"]  # b is the other process's: never removed
    assert (tmp_path / "a" / "b" / "c").is_dir()


def test_a_file_taking_a_folder_name_meanwhile_is_named(tmp_path, monkeypatch):
    """The error names the file in the way; nothing is made below it (``a`` stays: it holds the other's file)."""
    _racing_mkdir(monkeypatch, tmp_path / "a" / "b", by_folder=False)
    with pytest.raises(hub.WeightsNotFoundError, match=re.escape(f"{tmp_path / 'a' / 'b'} is a file, not a folder")):
        hub._make_folders(tmp_path / "a" / "b" / "c")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"] and (tmp_path / "a" / "b").is_file()


def test_a_file_where_the_folder_should_be_is_refused(tmp_path):
    """``_make_folders`` returns only after the folder exists: a file of its name is an error naming that file."""
    (tmp_path / "w").write_bytes(b"x")
    with pytest.raises(hub.WeightsNotFoundError, match=re.escape(f"{tmp_path / 'w'} is a file, not a folder")):
        hub._make_folders(tmp_path / "w")


def test_a_folder_that_cannot_be_made_is_named_with_the_reason(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name == "b":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(hub.WeightsNotFoundError, match=re.escape(f"folder {tmp_path / 'a' / 'b' / 'c'} (Permission")):
        hub._make_folders(tmp_path / "a" / "b" / "c")
    assert not (tmp_path / "a").exists()  # the folder made before the failure is removed again


def test_a_part_file_name_in_use_is_never_opened(tmp_path, monkeypatch):
    """Part files are created exclusively: a name another download holds is skipped, its bytes untouched."""
    names = iter(["aaaa0000", "bbbb1111"])
    monkeypatch.setattr(hub.secrets, "token_hex", lambda n: next(names))
    other = tmp_path / "toy.pth.aaaa0000.part"
    other.write_bytes(b"another download")
    fd, path = hub._create_part_file(tmp_path / "toy.pth")
    os.close(fd)
    assert path == tmp_path / "toy.pth.bbbb1111.part" and other.read_bytes() == b"another download"


def test_a_file_growing_while_read_is_cut_after_max_bytes_plus_one(tmp_path, monkeypatch):
    """A file that grows after its size was checked: at most ``max_bytes + 1`` bytes are read, then it is refused."""
    path = tmp_path / "growing.jpg"
    path.write_bytes(b"\xff" * 100_000)
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: SimpleNamespace(st_mode=real_fstat(fd).st_mode, st_size=100))
    got = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: got.append(len(data := real_read(fd, n))) or data)
    with pytest.raises(ImageError, match="grew beyond the 4096 bytes allowed"):
        read_file_bytes(path, max_bytes=4096)
    assert sum(got) == 4097


@pytest.mark.parametrize("low, high", [(-5, 200), (0, 70_000)])
def test_an_integer_image_outside_16_bit_range_is_refused(low, high):
    """A 32-bit integer image with a value below 0 or above 65535 has no known scale: refused, not clipped."""
    values = np.linspace(low, high, 32 * 32).astype(np.int32).reshape(32, 32)
    with pytest.raises(ImageError, match=rf"integer image with values in \[{low}, {high}\]"):
        decode_image(_tiff_or_png(values, "TIFF"), source="i32.tiff")


def test_an_empty_checkpoint_file_is_called_empty(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointLayoutError, match=r"empty\.pth: not a loadable .* \(it is an empty file\)$"):
        hub.load_checkpoint(tmp_path / "empty.pth")


def test_the_expansion_limit_is_inclusive(tmp_path, monkeypatch):
    """Members may declare exactly ``MAX_EXPANSION x size + slack`` bytes; one byte more is refused unread. (The
    limit is lowered here so that a small torch file meets it.)"""
    path = tmp_path / "w.pth"
    torch.save({"w": torch.arange(1000.0)}, path)
    with zipfile.ZipFile(path) as zf:
        declared = sum(info.file_size for info in zf.infolist())
    monkeypatch.setattr(checkpoint_files, "MAX_EXPANSION", 0)
    monkeypatch.setattr(checkpoint_files, "_EXPANSION_SLACK", declared)
    check_archive(path)
    monkeypatch.setattr(checkpoint_files, "_EXPANSION_SLACK", declared - 1)
    with pytest.raises(CheckpointLayoutError, match=f"declare {declared} bytes uncompressed"):
        check_archive(path)

"""Round 19, fourth mutation pass: the code between a hostile or broken input and the user's disk and numbers
(data root, atomic writes, downloads and the weights cache, checkpoint files, images, the validator's cache check).

Each test here fails on a mutant that survived the modules' own tests (docs/reliability.md, "Round 19: mutation
testing, fourth pass"); the answers are known properties of the files involved (sizes, hashes, names, modes).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorever import data_root, files as files_module, hub
from restorever.data_root import download_dataset
from restorever.errors import CheckpointLayoutError, DataNotFoundError, UnsafePathError, WeightsHashError
from restorever.hub import sha256_file
from restorever.images import decode_image
from restorever.files import atomic_write_bytes, atomic_write_text
from restorever.pipeline.cache import _ENTRY_TEMPORARY
from restorever.reports.results import _is_leftover_file
from restorever.validate import check_run

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

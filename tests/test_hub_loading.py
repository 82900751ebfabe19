"""Weight loading and fetching defects found by the audit: damaged checkpoints, short downloads, the offline switch,
load-error messages, integer tensors for float parameters, failed copies into the cache, unusable cache folders and
paths containing '='."""
from __future__ import annotations

import contextlib
import http.server
import logging
import os
import threading
from pathlib import Path

import pytest
import torch

from restorever import hub
from restorever.errors import CheckpointLayoutError, WeightsNotFoundError
from tests.conftest import REFERENCE

FIXTURES = REFERENCE / "fixtures"
OFFLINE_VARIABLES = ("RESTOREVER_OFFLINE", "HF_HUB_OFFLINE")


def _card(url: str = "https://example.invalid/toy.pth", name: str = "toy") -> hub.ModelCard:
    return hub.ModelCard(name=name, arch="toy", weights={"model": hub.WeightFile("toy.pth", url, None, "MIT")})


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty cache folder chosen by RESTOREVER_HOME, with downloads allowed."""
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    for name in OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def _fixture(name: str) -> dict:
    path = FIXTURES / name
    if not path.exists():
        pytest.fail(f"{path} is missing: tests need ../shared beside the checkout (or RESTOREVER_SHARED)")
    return torch.load(path, weights_only=False)  # our own fixture files: trusted


def _damage(path: Path, size: int = 4096) -> None:
    """Overwrite ``size`` bytes in the middle of ``path`` with other bytes."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + size] = bytes((b + 1) % 256 for b in data[middle:middle + size])
    path.write_bytes(bytes(data))


# ---- 1. damaged checkpoints ----------------------------------------------------------------------------------------
def test_damaged_zip_checkpoint_is_refused_naming_the_member(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    path = tmp_path / "ck.pth"
    torch.save({"params_ema": {"a": torch.randn(64, 1024), "b": torch.randn(8)}}, path)
    assert torch.equal(hub.load_checkpoint(path)["b"], torch.load(path, weights_only=True)["params_ema"]["b"])
    _damage(path)
    for load in (hub.load_weights_only, hub.load_checkpoint):
        with pytest.raises(CheckpointLayoutError) as info:
            load(path)
        message = str(info.value)
        assert str(path) in message and "ck/data/0" in message and "CRC-32" in message, message
        assert "download it again" in message and "restorever weights add" in message, message


def test_damaged_checkpoint_in_the_cache_names_the_commands_that_replace_it(home):
    path = home / "weights" / "toy" / "toy.pth"
    path.parent.mkdir(parents=True)
    torch.save({"w": torch.randn(64, 1024)}, path)
    _damage(path)
    with pytest.raises(CheckpointLayoutError, match=r"delete it and fetch it again \(`restorever weights download "
                                                    r"toy`, or `restorever weights add toy FILE`"):
        hub.load_checkpoint(hub.resolve_weights(_card()))


def test_damaged_checkpoint_through_create_restorer(tmp_path):
    from restorever.restorers import create_restorer

    fx = _fixture("codeformer_small.pt")
    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": fx["state_dict"]}, path)
    _damage(path)
    with pytest.raises(CheckpointLayoutError, match=r"codeformer\.pth: damaged file: zip member \S+ fails its "
                                                    r"CRC-32 check"):
        create_restorer("codeformer", weights={"model": str(path)}, config=fx["config"])


def test_checkpoint_saved_without_crcs_still_loads(tmp_path):
    torch.serialization.set_crc32_options(False)
    try:
        torch.save({"w": torch.arange(6.0)}, tmp_path / "nocrc.pth")
    finally:
        torch.serialization.set_crc32_options(True)
    assert torch.equal(hub.load_checkpoint(tmp_path / "nocrc.pth")["w"], torch.arange(6.0))


# ---- 2. downloads ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _server(body: bytes, announced: int | None = None):
    """An HTTP server on 127.0.0.1 answering every GET with ``body`` under a Content-Length of ``announced``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) if announced is None else announced))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/toy.pth"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")


def test_short_download_is_refused_and_leaves_nothing(tmp_path, no_proxy):
    dest = tmp_path / "new" / "folder" / "toy.pth"
    with _server(b"x" * 1000, announced=1_000_000) as url:
        with pytest.raises(WeightsNotFoundError) as info:
            hub.download_file(url, dest, sha256=None)
    message = str(info.value)
    assert url in message and "1000 of the 1000000 bytes" in message and "partial file was deleted" in message
    assert not (tmp_path / "new").exists()  # no final file, no .part, no folder the call created


def test_short_download_through_resolve_weights_leaves_no_empty_folder(home, no_proxy):
    with _server(b"x" * 1000, announced=1_000_000) as url:
        with pytest.raises(WeightsNotFoundError, match="download failed .*1000 of the 1000000 bytes"):
            hub.resolve_weights(_card(url))
    assert not (home / "weights" / "toy").exists() and not home.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_downloaded_file_has_the_usual_mode_and_an_honest_log(tmp_path, no_proxy, caplog, umask):
    previous = os.umask(umask)
    try:
        with _server(b"weights" * 100) as url, caplog.at_level(logging.WARNING, logger="restorever.hub"):
            path = hub.download_file(url, tmp_path / "toy.pth", sha256=None)
    finally:
        os.umask(previous)
    assert path.read_bytes() == b"weights" * 100
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert "not checked" in caplog.text and "recorded" not in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["toy.pth"]


# ---- 3. the offline switch ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("YES", True), ("on", True),
                                            ("0", False), ("false", False), ("No", False), ("off", False),
                                            ("", False), (" ", False)])
@pytest.mark.parametrize("variable", ["RESTOREVER_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_values_read_like_other_booleans(monkeypatch, variable, value, offline):
    for name in OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, value)
    assert hub.is_offline() is offline


def test_unrecognised_offline_value_warns_naming_the_variable(monkeypatch, caplog):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("RESTOREVER_OFFLINE", "maybe-later")
    monkeypatch.setattr(hub, "_warned_offline_values", set(), raising=False)  # warned once per value and process
    with caplog.at_level(logging.WARNING, logger="restorever.hub"):
        assert hub.is_offline()
    assert "RESTOREVER_OFFLINE=maybe-later" in caplog.text and "set it to 0 or unset it" in caplog.text


def test_offline_message_says_which_variable_blocks_the_download(home, monkeypatch):
    monkeypatch.setenv("RESTOREVER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        hub.resolve_weights(_card())
    message = str(info.value)
    assert "RESTOREVER_OFFLINE=1 forbids network access" in message and "`unset RESTOREVER_OFFLINE`" in message
    assert "https://example.invalid/toy.pth" in message
    with pytest.raises(WeightsNotFoundError) as info:  # download=False: offline is not the reason
        hub.resolve_weights(_card(), download=False)
    assert "RESTOREVER_OFFLINE" not in str(info.value)


# ---- 4. load-error messages -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, expected", [
    (b"hello world\n", "it is a text file starting with 'hello world', not a PyTorch checkpoint"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100), "it looks like a JPEG image, not a PyTorch checkpoint"),
    (b"", "it is an empty file"),
    (b"\x00\x01\x02\x03\xfe" * 4, "it is not a PyTorch checkpoint: it starts with bytes 00 01 02 03 fe 00 01 02"),
    (b"<!DOCTYPE html><html>", "it is an HTML page"),
])
def test_load_errors_say_what_the_file_is(tmp_path, monkeypatch, content, expected):
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointLayoutError) as info:
        hub.load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "unpickled" not in message and "weights-only" in message


def test_bad_file_in_the_cache_names_the_fix(home):
    path = home / "weights" / "toy" / "toy.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(CheckpointLayoutError) as info:
        hub.load_checkpoint(hub.resolve_weights(_card()))
    message = str(info.value)
    assert str(path) in message and "HTML page" in message and "`restorever weights download toy`" in message


def test_directory_given_as_weights_file(tmp_path):
    (tmp_path / "toy.pth").write_bytes(b"x")
    with pytest.raises(WeightsNotFoundError, match=rf"toy: {tmp_path} is a directory, not a weights file \(given "
                                                   rf"with --weights\); pass the file itself, e\.g\. .*toy\.pth$"):
        hub.resolve_weights(_card(), explicit=tmp_path)
    with pytest.raises(WeightsNotFoundError, match="is a directory"):
        hub.load_checkpoint(tmp_path)
    with pytest.raises(CheckpointLayoutError, match=rf"{tmp_path}: .*\(it is a directory\)"):
        hub.load_weights_only(tmp_path)


# ---- 5. integer tensors for floating parameters ---------------------------------------------------------------------
def test_integer_tensors_for_float_parameters_are_refused():
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    sd = module.state_dict()
    sd["0.weight"] = sd["0.weight"].to(torch.int8)
    sd["1.running_mean"] = sd["1.running_mean"].bool()
    with pytest.raises(CheckpointLayoutError) as info:
        hub.load_state_dict_strict(module, sd, source="ck.pth")
    message = str(info.value)
    assert message.startswith("ck.pth: ") and "2 not floating-point" in message
    assert "0.weight int8 for float32" in message and "1.running_mean bool for float32" in message
    sd = module.state_dict()  # num_batches_tracked stays an integer; float16 for float32 is fine
    sd["0.weight"] = sd["0.weight"].half()
    hub.load_state_dict_strict(module, sd, source="ck.pth")


def test_integer_checkpoint_through_codeformer_and_difface(tmp_path):
    from restorever.restorers import codeformer, difface

    fx = _fixture("codeformer_small.pt")
    torch.save({"params_ema": {k: v.to(torch.int8) for k, v in fx["state_dict"].items()}}, tmp_path / "cf.pth")
    with pytest.raises(CheckpointLayoutError, match=r"cf\.pth: .*not floating-point .*int8 for float32"):
        codeformer.create("codeformer", weights={"model": str(tmp_path / "cf.pth")}, config=fx["config"])
    unet, swinir = _fixture("difface_unet_small.pt"), _fixture("difface_swinir_small.pt")
    torch.save({k: v.to(torch.int8) for k, v in unet["state_dict"].items()}, tmp_path / "unet.pth")
    torch.save({"state_dict": swinir["state_dict"]}, tmp_path / "swinir.pth")
    with pytest.raises(CheckpointLayoutError, match=r"difface unet weights .*unet\.pth: .*int8 for float32"):
        difface.create("difface", weights={"unet": str(tmp_path / "unet.pth"), "estimator": str(tmp_path /
                                                                                                 "swinir.pth")},
                       unet_config=unet["config"], estimator_config=swinir["config"])


# ---- 6. / 7. copies into the cache and unusable cache folders -------------------------------------------------------
def test_failed_copy_into_cache_names_both_files_and_leaves_nothing(home):
    with pytest.raises(WeightsNotFoundError) as info:
        hub.copy_into_cache(_card(), "model", "/proc/self/mem")
    message = str(info.value)
    target = home / "weights" / "toy" / "toy.pth"
    assert "/proc/self/mem" in message and str(target) in message and "nothing was added" in message
    assert not home.exists()  # no .part, no folders this call created


def test_cache_under_a_regular_file_names_the_folder_and_the_variable(tmp_path, monkeypatch, no_proxy):
    (tmp_path / "file").write_text("not a folder")
    home = tmp_path / "file" / "home"
    monkeypatch.setenv("RESTOREVER_HOME", str(home))
    monkeypatch.delenv("RESTOREVER_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    source = tmp_path / "mine.pth"
    source.write_bytes(b"w")
    expected = (rf"{home / 'weights' / 'toy'} \({tmp_path / 'file'} is a file, not a folder\); it is in the "
                rf"restorever cache {home}, chosen by RESTOREVER_HOME={home}: set RESTOREVER_HOME to a writable folder")
    with pytest.raises(WeightsNotFoundError, match=expected):
        hub.copy_into_cache(_card(), "model", source)
    with _server(b"w") as url, pytest.raises(WeightsNotFoundError, match=expected):
        hub.resolve_weights(_card(url))


def test_unwritable_cache_folder_names_the_folder_and_the_variable(home, monkeypatch, no_proxy):
    real_open = os.open

    def refuse_part_files(path, *args, **kwargs):  # as root, a chmod-ed folder would still be writable
        if str(path).endswith(".part"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_part_files)
    with _server(b"w") as url, pytest.raises(WeightsNotFoundError) as info:
        hub.resolve_weights(_card(url))
    message = str(info.value)
    assert f"cannot create or write the folder {home / 'weights' / 'toy'} (Permission denied)" in message
    assert f"chosen by RESTOREVER_HOME={home}" in message and not home.exists()


# ---- 8. file paths containing '=' -----------------------------------------------------------------------------------
def test_path_containing_equals_gets_a_hint():
    weights = hub.parse_weights_option("ck/run=2/codeformer.pth")
    assert weights == {"ck/run": "2/codeformer.pth"}  # the parse result is unchanged
    with pytest.raises(ValueError, match=r"unknown weight role\(s\) \['ck/run'\]; use --weights FILE \(if "
                                         r"ck/run=2/codeformer\.pth is one file: a path containing '=' must be "
                                         r"written model=PATH, e\.g\. --weights model=ck/run=2/codeformer\.pth\)$"):
        hub.check_weight_roles("codeformer", weights, ["model"])
    with pytest.raises(ValueError, match=r"written unet=PATH"):
        hub.check_weight_roles("difface", {"old.pth": "x.pth"}, ["unet", "estimator"])
    with pytest.raises(ValueError, match=r"use --weights FILE$"):  # a plain unknown role: no hint
        hub.check_weight_roles("codeformer", {"unet": "u.pth"}, ["model"])

"""Hostile files: code in pickles (checkpoints, .bin), YAML tags, absurd image headers, paths and archives that leave
the data root, and broken results files. Each is refused with a typed error and nothing runs or is written.

Complements tests/test_hub.py (one checkpoint payload) and tests/test_protocol.py (one .bin payload, '..' and
absolute CSV paths, one symlink). The last section holds the regression tests of the defects the fuzzers found
(docs/reliability.md); a defect found before its fix lands is pinned there with ``xfail(strict=True)``.
"""
from __future__ import annotations

import ast
import io
import json
import os
import pickle
import resource
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from restorever import hub
from restorever.cli import cli
from restorever.errors import CheckpointLayoutError, ImageError, ProtocolError, UnsafePathError
from restorever.images import decode_image, safe_join
from restorever.protocol import load_protocol, load_spec, parse_pairs_csv, read_insightface_bin
from restorever.validate import check_run

from .fuzz_targets import jpeg_header, png_header

PACKAGE = Path(__file__).resolve().parents[2] / "restorever"


@pytest.fixture
def marker(tmp_path):
    """A file a successful payload would create; every test asserts it does not exist."""
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload ran"


def _payload(marker: Path, how: str = "os.system"):
    class Exploit:
        def __reduce__(self):
            if how == "eval":
                return (eval, (f"open({str(marker)!r}, 'w').write('x')",))
            if how == "subprocess":
                import subprocess

                return (subprocess.call, (["touch", str(marker)],))
            return (os.system, (f"touch {marker}",))

    return Exploit()


# ------------------------------------------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("variant", ["top-level", "in-state-dict", "legacy-format", "eval", "subprocess",
                                     "plain-pickle", "pickle-protocol-0"])
def test_checkpoint_with_code_is_refused(tmp_path, marker, variant):
    path = tmp_path / "evil.pth"
    how = variant if variant in ("eval", "subprocess") else "os.system"
    exploit = _payload(marker, how)
    if variant == "top-level":
        torch.save(exploit, path)
    elif variant == "legacy-format":
        torch.save({"params": {"w": torch.zeros(1)}, "x": exploit}, path, _use_new_zipfile_serialization=False)
    elif variant == "plain-pickle":
        path.write_bytes(pickle.dumps({"params_ema": {"w": exploit}}))
    elif variant == "pickle-protocol-0":
        path.write_bytes(pickle.dumps(exploit, protocol=0))
    else:
        torch.save({"params_ema": {"w": torch.zeros(1), "b": exploit}}, path)
    with pytest.raises(CheckpointLayoutError, match="weights-only"):
        hub.load_checkpoint(path)


@pytest.mark.parametrize("content, message", [
    (b"", "weights-only"),
    (b"PK\x03\x04 not really a zip", "weights-only"),
    (None, "state_dict of tensors"),  # a valid weights-only file that is not a state_dict
])
def test_checkpoint_garbage_is_a_layout_error(tmp_path, content, message):
    path = tmp_path / "x.pth"
    if content is None:
        torch.save({"w": torch.zeros(1), "note": "text", "n": 3}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointLayoutError, match=message):
        hub.load_checkpoint(path)


@pytest.mark.parametrize("name", ["vqfr-v1", "vqfr-v2"])
def test_checkpoint_through_a_restorer_backend(tmp_path, marker, name):
    """The real loading path of a backend (``create_restorer(weights=...)``) refuses the payload the same way."""
    from restorever.restorers import create_restorer

    path = tmp_path / "weights.pth"
    torch.save({"params_ema": {"w": torch.zeros(1)}, "x": _payload(marker)}, path)
    with pytest.raises(CheckpointLayoutError, match="weights-only"):
        create_restorer(name, weights={"model": str(path)})


_UNSAFE_CALLS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("cPickle", "load"), ("marshal", "loads"),
    ("marshal", "load"), ("dill", "load"), ("dill", "loads"), ("joblib", "load"), ("shelve", "open"),
    ("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("yaml", "load_all"), ("os", "system"),
    ("os", "popen"), ("jit", "load"),
}


_WATCHED = {attr for _, attr in _UNSAFE_CALLS} | {"extractall", "extract"}


def _library_files():
    return sorted(PACKAGE.rglob("*.py"))


def test_library_never_uses_an_unsafe_loader():
    """Static check of every module: ``torch.load`` only with ``weights_only=True``; no pickle/marshal/yaml.load,
    ``np.load(allow_pickle=True)``, ``eval``/``exec``, ``torch.jit.load`` or ``os.system``; tar archives extracted
    with ``filter="data"``; a pickle.Unpickler subclass must override ``find_class``."""
    problems = []
    for path in _library_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if any(b.endswith("Unpickler") for b in bases):
                    methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                    if "find_class" not in methods:
                        problems.append(f"{where}: Unpickler subclass without find_class")
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            kwargs = {k.arg: k.value for k in node.keywords}
            if isinstance(func, ast.Name) and func.id in ("eval", "exec", "compile"):
                problems.append(f"{where}: {func.id}()")
            if isinstance(func, ast.Name) and func.id == "__import__" and not (
                    node.args and isinstance(node.args[0], ast.Constant)):
                problems.append(f"{where}: __import__ of a computed name")
            if isinstance(func, ast.Attribute) and func.attr in _WATCHED:
                owner = ast.unparse(func.value).split(".")[-1]
                if (owner, func.attr) in _UNSAFE_CALLS:
                    problems.append(f"{where}: {owner}.{func.attr}()")
                if owner == "torch" and func.attr == "load":
                    value = kwargs.get("weights_only")
                    if not (isinstance(value, ast.Constant) and value.value is True):
                        problems.append(f"{where}: torch.load without weights_only=True")
                if func.attr == "load" and owner in ("np", "numpy"):
                    value = kwargs.get("allow_pickle")
                    if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                        problems.append(f"{where}: np.load(allow_pickle=...) must be False")
                if func.attr in ("extractall", "extract"):
                    value = kwargs.get("filter")
                    if not (isinstance(value, ast.Constant) and value.value == "data"):
                        problems.append(f"{where}: archive extraction without filter='data'")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------------ .bin files

def _bin(tmp_path: Path, obj=None, raw: bytes | None = None, protocol: int = 2) -> Path:
    path = tmp_path / "evil.bin"
    path.write_bytes(raw if raw is not None else pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("variant", ["global-p0", "stack-global-p4", "p5", "eval", "subprocess", "inst-opcode",
                                     "object-array", "in-issame-list"])
def test_bin_with_code_is_refused(tmp_path, marker, variant):
    exploit = _payload(marker, "eval" if variant == "eval" else "subprocess" if variant == "subprocess" else "")
    protocol = {"global-p0": 0, "stack-global-p4": 4, "p5": 5}.get(variant, 2)
    if variant == "inst-opcode":  # protocol-0 INST: build a class instance by module/name
        raw = b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n."
        path = _bin(tmp_path, raw=raw)
    elif variant == "object-array":
        path = _bin(tmp_path, ([b"a", b"b"], np.array([exploit], dtype=object)))
    elif variant == "in-issame-list":
        path = _bin(tmp_path, ([b"a", b"b"], [True, exploit]))
    else:
        path = _bin(tmp_path, (exploit, [True]), protocol=protocol)
    with pytest.raises(ProtocolError, match="refused to load"):
        read_insightface_bin(path)


def test_bin_payload_through_the_cli(tmp_path, marker):
    path = _bin(tmp_path, ([_payload(marker)], [True]))
    result = CliRunner().invoke(cli, ["eval", "--protocol", "insightface-bin", "--pairs", str(path), "--out",
                                      str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "refused to load" in result.output and result.output.strip().count("\n") == 0
    assert not (tmp_path / "out" / "results.json").exists()


# ------------------------------------------------------------------------------------------------------ YAML

@pytest.mark.parametrize("text", [
    "!!python/object/apply:os.system ['touch {marker}']\n",
    "protocol: x\ndataset: !!python/object/apply:os.system ['touch {marker}']\n",
    "protocol: x\ndataset: !!python/name:os.system\n",
    "protocol: x\ndataset: {{format: pairs-csv}}\n"
    "metrics: !!python/object/new:subprocess.Popen [[touch, '{marker}']]\n",
])
def test_protocol_yaml_tags_are_refused(tmp_path, marker, text):
    path = tmp_path / "evil.yaml"
    path.write_text(text.format(marker=marker))
    with pytest.raises(ProtocolError, match="invalid YAML"):
        load_spec(str(path))
    from restorever.validate import validate_protocol_file

    assert validate_protocol_file(path)


# ------------------------------------------------------------------------------------------------------ images

@pytest.mark.parametrize("header", [
    pytest.param(png_header(1_000_000, 1_000_000), id="png-1e6x1e6"),
    pytest.param(png_header(2**31 - 1, 1), id="png-2^31x1"),
    pytest.param(jpeg_header(65500, 65500), id="jpeg-65500^2"),
    pytest.param(png_header(10_000, 10_000, data=b"\x00" * 1000), id="png-100-megapixel-bomb"),
])
def test_absurd_image_header_is_refused_before_decoding(header):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ImageError, match="refused|cannot decode"):
        decode_image(header, source="bomb.png")
    assert time.perf_counter() - start < 2.0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 64, f"decoding a header allocated {grown_mib:.0f} MiB"


def test_absurd_image_in_a_run_is_named_and_skippable(tiny_data, tmp_path):
    """A 1e6 x 1e6 PNG among real faces: the run stops with one line naming it, or skips its pair, recorded."""
    csv, root = tiny_data
    data = tmp_path / "faces"
    import shutil

    shutil.copytree(root, data)
    (data / "bomb.png").write_bytes(png_header(1_000_000, 1_000_000))
    rows = csv.read_text().splitlines()[:5] + ["bomb.png,ben_afflek/ben_afflek_0001.jpg,0"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    args = ["eval", "--protocol", "pairs-csv", "--pairs", str(tmp_path / "pairs.csv"), "--data-root", str(data),
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--examples", "0"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "bomb.png" in result.output and "--on-error skip" in result.output
    assert "refused" in result.output or "decompression bomb" in result.output
    result = CliRunner().invoke(cli, [*args, "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [s["a"] for s in record["protocol"]["skipped"]] == ["bomb.png"]
    assert "bomb" in record["protocol"]["skipped"][0]["reason"]


# ------------------------------------------------------------------------------------------------------ paths

@pytest.mark.parametrize("row, message", [
    ("..\\..\\etc\\passwd,a.jpg,1", "escape"),
    ("a/../../etc/passwd,a.jpg,1", "escape"),
    ("C:\\Windows\\win.ini,a.jpg,1", "absolute"),
    ("//server/share/x.jpg,a.jpg,1", "absolute"),
    ("out/x.jpg,a.jpg,1", "outside the data root"),  # out -> a folder outside the root (a symlinked folder)
])
def test_csv_paths_leaving_the_root_are_refused(tmp_path, row, message):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"x")
    (root / "out").symlink_to(outside, target_is_directory=True)
    (tmp_path / "pairs.csv").write_text(row + "\nb.jpg,c.jpg,0\n")
    with pytest.raises(UnsafePathError, match=message):
        load_protocol("pairs-csv", data_root=root, pairs=tmp_path / "pairs.csv")


def test_symlink_inside_the_root_is_allowed(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.jpg").write_bytes(b"jpeg")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    assert safe_join(root, "alias/a.jpg").read_bytes() == b"jpeg"


def test_protocol_yaml_pairs_leaving_the_root_is_refused(tmp_path):
    root = tmp_path / "root"
    (root / "lfw").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("1\nA 1 2\nA 1 B 1\n")
    spec = tmp_path / "evil.yaml"
    spec.write_text("protocol: evil\ndataset: {format: lfw-pairs, pairs: ../secret.txt}\n")
    with pytest.raises(UnsafePathError, match="escape"):
        load_protocol(str(spec), data_root=root)
    from restorever.validate import validate_protocol_file

    assert any("'..'" in p for p in validate_protocol_file(spec))


def _serve_locally(monkeypatch, archive: Path) -> str:
    """An https URL whose "download" copies ``archive`` (protocol downloads accept http(s) URLs only)."""
    def download_file(url, destination, *, sha256, description=""):
        destination.write_bytes(archive.read_bytes())
        return destination

    monkeypatch.setattr(hub, "download_file", download_file)
    return "https://example.invalid/evil.tgz"


def test_archive_members_leaving_the_folder_are_not_written(tmp_path, monkeypatch):
    from restorever.errors import RestoreverError
    from restorever.data_root import download_dataset

    archive = tmp_path / "evil.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("../escaped.txt", str(tmp_path / "absolute.txt")):
            info = tarfile.TarInfo(name)
            info.size = 5
            tar.addfile(info, io.BytesIO(b"pwned"))
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path)
        tar.addfile(link)
    target = tmp_path / "data"
    with pytest.raises(RestoreverError, match="refused to extract"):
        download_dataset([{"filename": "evil.tgz", "url": _serve_locally(monkeypatch, archive), "extract": True}],
                          target, "evil")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "absolute.txt").exists()


# ------------------------------------------------------------------------------------------------------ results.json

@pytest.mark.parametrize("content, message", [
    (b'{"conditions": [], "x": NaN}', "NaN is not valid JSON"),
    (b'{"conditions": [], "conditions": []}', "duplicate key"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a": "\xff"}', "not UTF-8"),
    (b"[1, 2]", "expected a JSON object"),
    (b"", "not strict JSON"),
])
def test_hostile_results_file_is_reported_not_crashed(tmp_path, content, message):
    (tmp_path / "results.json").write_bytes(content)
    problems = check_run(tmp_path).problems
    assert len(problems) == 1 and message in problems[0]


def test_oversized_results_file_is_not_read(tmp_path):
    path = tmp_path / "results.json"
    with open(path, "wb") as fh:  # sparse: 1 GiB + 1 byte that take no disk
        fh.truncate((1 << 30) + 1)
    start = time.perf_counter()
    problems = check_run(tmp_path).problems
    assert "larger than" in problems[0] and time.perf_counter() - start < 1


# ------------------------------------------------------------------------------------------ defects the fuzzers found
# Regression tests of the defects the fuzzers found, fixed in protocol.py, images.py, hub.py and attributes/labels.py
# (docs/reliability.md). A new defect goes here as xfail(strict=True) until its fix lands.

@pytest.mark.parametrize("text", ["a\rb.jpg,c.jpg,1\n", "a" * 200_000 + ",b.jpg,1\n"], ids=["lone-CR", "huge-field"])
def test_malformed_csv_row_is_a_protocol_error(text):
    with pytest.raises(ProtocolError, match="x.csv:1"):
        parse_pairs_csv(text, source="x.csv")


def test_csv_first_row_labelled_same_is_kept():
    pl = parse_pairs_csv("a.jpg,b.jpg,same\nc.jpg,d.jpg,different\n")
    assert pl.a == ["a.jpg", "c.jpg"] and pl.same.tolist() == [1, 0]
    assert parse_pairs_csv("path_a,path_b,same\nc.jpg,d.jpg,0\ne.jpg,f.jpg,1\n").a == ["c.jpg", "e.jpg"]


@pytest.mark.parametrize("issame", [[[1], [1, 2]], ["x", b"\xce"], [2, 0]], ids=["ragged", "str-and-bytes", "two"])
def test_bad_issame_list_is_a_protocol_error(tmp_path, issame):
    with pytest.raises(ProtocolError):
        read_insightface_bin(_bin(tmp_path, ([b"a", b"b", b"c", b"d"], issame), protocol=3))


def test_unknown_codec_in_bin_is_a_protocol_error(tmp_path):
    raw = b"\x80\x02]q\x00(c_codecs\nencode\nq\x01X\x01\x00\x00\x00aX\x05\x00\x00\x00nopeq\x86q\x02Rq\x03e."
    with pytest.raises(ProtocolError, match="LookupError"):
        read_insightface_bin(_bin(tmp_path, raw=raw))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_bin_from_any_pickle_protocol_is_read(tmp_path, protocol):
    """Empty images (``__builtin__.bytes`` below protocol 3) and numpy labels (``_frombuffer`` at protocol 5)."""
    pairs, blobs = read_insightface_bin(_bin(tmp_path, ([b"", b"x"], np.array([True])), protocol=protocol))
    assert blobs == [b"", b"x"] and pairs.same.tolist() == [1]


@pytest.mark.parametrize("text, message", [
    ("protocol: a\ninclude: 5\n", "include must name one YAML file"),
    ("protocol: a\ninclude: [x]\n", "include must name one YAML file"),
    ("protocol: a\ninclude: self.yaml\n", "cycle"),
    ('protocol: "\\UBF8302FC30f"\n', "invalid YAML"),
    ('protocol: "\\U00110000"\n', "invalid YAML"),
    (b"protocol: \xff\n", "invalid YAML"),
    ("protocol: a\ndataset: {format: pairs-csv}\nmetrics: [{name: [1], higher_is_better: true}]\n",
     r"metrics\[0\]\.name must be a metric name"),  # was TypeError: unhashable type: 'list'
    ("protocol: a\ndataset: {format: pairs-csv}\nmetrics: 1.5\n", "metrics must be a list"),  # was TypeError
])
def test_malformed_protocol_yaml_is_a_protocol_error(tmp_path, text, message):
    path = tmp_path / "self.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ProtocolError, match=message):
        load_spec(str(path))


@pytest.mark.parametrize("rel", ["loop/x.jpg", "a\x00b.jpg"])
def test_symlink_loop_and_nul_are_unsafe_path_errors(tmp_path, rel):
    (tmp_path / "loop").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop")
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, rel)


def test_escaping_archive_is_a_typed_error(tmp_path, monkeypatch):
    from restorever.errors import RestoreverError
    from restorever.data_root import download_dataset

    archive = tmp_path / "evil.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(RestoreverError, match="refused to extract"):
        download_dataset([{"filename": "evil.tgz", "url": _serve_locally(monkeypatch, archive), "extract": True}],
                          tmp_path / "d", "e")
    assert not (tmp_path / "escaped.txt").exists()


def test_truncated_legacy_checkpoint_is_a_layout_error(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"\x80")
    with pytest.raises(CheckpointLayoutError):
        hub.load_checkpoint(tmp_path / "x.pth")


@pytest.mark.parametrize("content", [b"G/]", None], ids=["struct.error", "AssertionError"])
def test_malformed_legacy_checkpoint_is_a_layout_error(tmp_path, content):
    if content is None:  # a legacy file whose storage table names a storage that is not there
        buf = io.BytesIO()
        torch.save({"w": torch.zeros(2)}, buf, _use_new_zipfile_serialization=False)
        data = buf.getvalue()
        key = data.index(b"storage")  # corrupt the first storage key the pickle refers to
        content = data[:key + 40] + bytes(b ^ 1 if 48 <= b <= 57 else b for b in data[key + 40:key + 80]) + \
            data[key + 80:]
    (tmp_path / "x.pth").write_bytes(content)
    with pytest.raises(CheckpointLayoutError):
        hub.load_checkpoint(tmp_path / "x.pth")


def test_deep_yaml_is_a_protocol_error(tmp_path):
    (tmp_path / "x.yaml").write_text("[" * 1000 + "]" * 1000)
    with pytest.raises(ProtocolError):
        load_spec(str(tmp_path / "x.yaml"))


def test_kumar_lone_cr_is_a_protocol_error():
    from restorever.attributes.groups import AgeGroups
    from restorever.attributes.labels import parse_kumar_ages

    with pytest.raises(ProtocolError):
        parse_kumar_ages("person\timagenum\tSenior\na\rb\t1\t0.5\n", AgeGroups.parse("13,20,60"))


def test_bin_size_amplification_is_refused(tmp_path):
    """``bytes(N)`` in a 60-byte file must not become an N-byte image (memory exhaustion once hashed)."""
    import struct

    n = 1 << 20  # each REDUCE(bytes, (n,)) is 12 bytes of file for 1 MiB of image
    blob = b"c__builtin__\nbytes\nJ" + struct.pack("<i", n) + b"\x85R"
    raw = b"\x80\x02]q\x00(" + blob * 2 + b"e]q\x01\x88a\x86."
    with pytest.raises(ProtocolError):
        read_insightface_bin(_bin(tmp_path, raw=raw))


def test_undecodable_bytes_give_a_reproducible_message():
    """Pillow's "cannot identify image file <_io.BytesIO object at 0x7f...>" named a memory address, so the skip
    reasons in results.json changed from run to run; the message now names the file only."""
    messages = set()
    for _ in range(2):
        with pytest.raises(ImageError) as info:
            decode_image(b"this is not an image", source="faces/a.jpg")
        messages.add(str(info.value))
    assert messages == {"faces/a.jpg: cannot decode image (not an image format Pillow reads)"}


def test_lfw_images_null_means_the_default_folders(tmp_path, lfw_root):
    """``dataset.images: null`` (a key left empty) took None as the folder list: TypeError 'NoneType' object is not
    iterable; it means the default folders, as when the key is absent."""
    spec = tmp_path / "p.yaml"
    spec.write_text(f"include: {Path(__file__).resolve().parents[2] / 'protocols' / 'lfw-dev.yaml'}\n"
                    "protocol: p\ndataset: {format: lfw-pairs, pairs: pairsDevTest.txt, images: null}\n")
    protocol = load_protocol(str(spec), data_root=lfw_root)
    assert len(protocol.pairs) == 1000

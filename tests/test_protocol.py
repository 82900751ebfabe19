"""Protocol parsers on the real LFW files and on crafted variants."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from restorever.errors import DataNotFoundError, ProtocolError, UnsafePathError
from restorever.protocol import (list_protocols, load_protocol, parse_lfw_pairs, parse_pairs_csv,
                                 read_insightface_bin)


def test_lfw_view2_real_file(lfw_root):
    proto = load_protocol("lfw", data_root=lfw_root)
    pairs = proto.pairs
    assert len(pairs) == 6000 and proto.n_folds == 10
    assert pairs.same.sum() == 3000
    for f in range(10):
        in_fold = pairs.fold == f
        assert in_fold.sum() == 600 and pairs.same[in_fold].sum() == 300
    assert pairs.a[0] == "lfw-deepfunneled/Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert len(pairs.images()) == 7701  # SOURCES.md: 7,701 distinct images
    assert all((lfw_root / p).is_file() for p in pairs.images()[:200])


def test_lfw_dev_two_folds(lfw_root):
    proto = load_protocol("lfw-dev", data_root=lfw_root)
    assert len(proto.pairs) == 2200 + 1000
    assert np.bincount(proto.pairs.fold).tolist() == [2200, 1000]


def test_protocols_are_listed_and_shipped():
    names = list_protocols()
    assert {"lfw", "lfw-dev", "pairs-csv", "insightface-bin"} <= set(names)


SAMPLE = "2\t2\nA\t1\t2\nB\t1\t3\nA\t1\tB\t2\nC\t4\tD\t1\nE\t1\t2\nF\t2\t3\nE\t1\tF\t1\nG\t2\tH\t1"


@pytest.mark.parametrize("variant", ["plain", "crlf", "trailing", "spaces", "mixed"])
def test_lfw_parser_formatting_variants(variant):
    text = {"plain": SAMPLE, "crlf": SAMPLE.replace("\n", "\r\n"), "trailing": SAMPLE + "\n\n",
            "spaces": SAMPLE.replace("\t", "  "), "mixed": SAMPLE.replace("\t", " \t", 3)}[variant]
    rows, folds, per = parse_lfw_pairs(text)
    assert (folds, per) == (2, 2)
    assert [r[4] for r in rows] == [1, 1, 0, 0, 1, 1, 0, 0]
    assert [r[5] for r in rows] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert rows[2][:4] == ("A", 1, "B", 2)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("x y\nA 1 2", "header"),
    ("2 2\nA 1 2", "header says 2 fold"),
    ("1 1\nA 1\nA 1 B 2", ":2: expected a matched pair"),
    ("1 1\nA 1 2\nA 1 2", ":3: expected a mismatched pair"),
    ("1 1\nA one 2\nA 1 B 2", ":2:"),
    ("1 1\nA 0 2\nA 1 B 2", "start at 1"),
    ("1 1\nA 1 2\nA 1 A 2", "same person twice"),
])
def test_lfw_parser_errors_name_the_line(text, message):
    with pytest.raises(ProtocolError, match=message):
        parse_lfw_pairs(text, source="p.txt")


def test_lfw_names_cannot_escape():
    from restorever.protocol import lfw_image_path

    with pytest.raises(UnsafePathError):
        lfw_image_path("lfw", "..", 1)


def _faces_csv(faces_root: Path) -> str:
    people = sorted(p.name for p in faces_root.iterdir())
    lines = ["path_a,path_b,same"]
    for i, person in enumerate(people):
        other = people[(i + 1) % len(people)]
        for k in range(1, 5):
            lines.append(f"{person}/{person}_{k:04d}.jpg,{person}/{person}_{k + 4:04d}.jpg,1")
            lines.append(f"{person}/{person}_{k:04d}.jpg,{other}/{other}_{k + 4:04d}.jpg,0")
    return "\n".join(lines) + "\n"


def test_pairs_csv_real_folder(faces_root, tmp_path):
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text(_faces_csv(faces_root))
    proto = load_protocol("pairs-csv", data_root=faces_root, pairs=csv_file)
    assert len(proto.pairs) == 40 and proto.n_folds == 10
    for f in range(10):  # both classes in every fold
        assert set(proto.pairs.same[proto.pairs.fold == f]) == {0, 1}
    assert proto.read_bytes(proto.pairs.a[0])[:2] == b"\xff\xd8"  # a JPEG


@pytest.mark.parametrize("select", ["largest", "bogus-value"])
def test_a_face_selection_runs_do_not_implement_is_refused(faces_root, tmp_path, select):
    """`alignment.select: largest` was accepted and never read: a run still embedded the face nearest the centre."""
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text(_faces_csv(faces_root))
    spec = tmp_path / "mine.yaml"
    spec.write_text(f"include: pairs-csv\nprotocol: mine\nalignment: {{select: {select}}}\n")
    with pytest.raises(ProtocolError, match="alignment.select must be nearest-centre"):
        load_protocol(str(spec), data_root=faces_root, pairs=csv_file)


@pytest.mark.parametrize("row, message", [
    ("../etc/passwd,a.jpg,1", "escape"),
    ("/etc/passwd,a.jpg,1", "absolute"),
])
def test_pairs_csv_refuses_escaping_paths(faces_root, tmp_path, row, message):
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text(row + "\nb.jpg,c.jpg,0\n")
    with pytest.raises(UnsafePathError, match=message):
        load_protocol("pairs-csv", data_root=faces_root, pairs=csv_file)


def test_symlink_leaving_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"x")
    (root / "link.jpg").symlink_to(outside)
    (tmp_path / "pairs.csv").write_text("link.jpg,link.jpg,1\nlink.jpg,link.jpg,0\n")
    with pytest.raises(UnsafePathError, match="outside the data root"):
        load_protocol("pairs-csv", data_root=root, pairs=tmp_path / "pairs.csv")


@pytest.mark.parametrize("text, message", [
    ("a,b,maybe", "'same' must be"),
    ("a,b", "expected 'path_a,path_b,same"),
    ("a,b,1,0\nc,d,0", "fold column"),
    ("a,b,1,x", "fold must be an integer"),
    ("# only a comment\n", "no pairs"),
])
def test_pairs_csv_errors(text, message):
    with pytest.raises(ProtocolError, match=message):
        parse_pairs_csv(text, source="x.csv")


def test_pairs_csv_explicit_folds():
    pl = parse_pairs_csv("a,b,1,3\nc,d,0,3\ne,f,true,7\ng,h,false,7")
    assert pl.fold.tolist() == [3, 3, 7, 7] and pl.same.tolist() == [1, 0, 1, 0]


def _bin_file(tmp_path, faces_root, payload=None):
    jpgs = sorted(faces_root.rglob("*.jpg"))[:8]
    bins = [p.read_bytes() for p in jpgs]
    issame = [True, False, True, False]
    path = tmp_path / "test.bin"
    with open(path, "wb") as fh:
        pickle.dump(payload if payload is not None else (bins, issame), fh, protocol=2)
    return path, bins


def test_insightface_bin_roundtrip(tmp_path, faces_root):
    path, bins = _bin_file(tmp_path, faces_root)
    pairs, blobs = read_insightface_bin(path, n_folds=2)
    assert pairs.same.tolist() == [1, 0, 1, 0] and pairs.fold.tolist() == [0, 0, 1, 1]
    assert blobs[3] == bins[3]
    proto = load_protocol("insightface-bin", pairs=path)
    assert proto.read_bytes("bin:5") == bins[5]


def test_insightface_bin_with_numpy_issame(tmp_path, faces_root):
    jpgs = [p.read_bytes() for p in sorted(faces_root.rglob("*.jpg"))[:4]]
    path, _ = _bin_file(tmp_path, faces_root, payload=(jpgs, np.array([True, False])))
    pairs, _ = read_insightface_bin(path)
    assert pairs.same.tolist() == [1, 0]


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/restorever-pwned",))


def test_insightface_bin_refuses_code(tmp_path, faces_root):
    path, _ = _bin_file(tmp_path, faces_root, payload=([b"x", b"y"], [_Exploit()]))
    with pytest.raises(ProtocolError, match="refused to load posix.system|refused to load os.system"):
        read_insightface_bin(path)
    assert not Path("/tmp/restorever-pwned").exists()


@pytest.mark.parametrize("payload, message", [
    (([b"a", b"b", b"c"], [True]), "two images per pair"),
    (([1, 2], [True]), "encoded image bytes"),
    ({"a": 1}, "pickled"),
])
def test_insightface_bin_bad_content(tmp_path, faces_root, payload, message):
    path, _ = _bin_file(tmp_path, faces_root, payload=payload)
    with pytest.raises(ProtocolError, match=message):
        read_insightface_bin(path)


def test_missing_data_message_shows_layout(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_protocol("lfw")  # RESTOREVER_HOME is an empty temp dir, offline
    text = str(info.value)
    assert "--data-root" in text and "pairs.txt" in text and "lfw-deepfunneled" in text


def test_unknown_protocol_suggests():
    with pytest.raises(ProtocolError, match="did you mean lfw"):
        load_protocol("lwf")


def test_a_users_protocol_can_include_a_shipped_one_by_name(lfw_root, tmp_path, monkeypatch):
    """`include:` was only a path relative to the including file, so a user's YAML could not extend the shipped
    `lfw` (it said "unknown protocol '<folder>/lfw'"); a name is now looked up where --protocol NAME is, including
    $RESTOREVER_PROTOCOL_PATH. A FILE.yaml is still relative to the including file; an unknown name is refused."""
    from restorever.protocol_specs import load_spec

    mine = tmp_path / "lfw-seed7.yaml"
    mine.write_text("include: lfw\nprotocol: lfw-seed7\nseed: 7\n")
    spec, _ = load_spec(str(mine))
    shipped, _ = load_spec("lfw")
    assert spec["seed"] == 7 and spec["dataset"] == shipped["dataset"] and spec["folds"] == shipped["folds"]
    assert len(load_protocol(str(mine), data_root=lfw_root).pairs) == 6000
    extra = tmp_path / "search"
    extra.mkdir()
    (extra / "base-x.yaml").write_text(mine.read_text().replace("seed: 7", "seed: 9").replace("lfw-seed7", "base-x"))
    monkeypatch.setenv("RESTOREVER_PROTOCOL_PATH", str(extra))
    child = tmp_path / "child.yaml"
    child.write_text("include: base-x\nprotocol: child\n")
    assert load_spec(str(child))[0]["seed"] == 9
    (tmp_path / "beside.yaml").write_text("include: lfw\nprotocol: beside\nseed: 3\n")
    child.write_text("include: beside.yaml\nprotocol: child\n")  # a file name: relative to the including file
    assert load_spec(str(child))[0]["seed"] == 3
    child.write_text("include: nowhere\nprotocol: child\n")
    with pytest.raises(ProtocolError, match="unknown protocol"):
        load_spec(str(child))

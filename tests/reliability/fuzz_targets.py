"""Fuzz targets shared by the property tests (``test_fuzz_parsers.py``) and ``scripts/fuzz_parsers.py``.

Each :class:`Target` pairs a hypothesis strategy of *inputs* (random text or bytes, structured valid files, and
mutations of valid files) with a *run* function that feeds one input to a restorever parser. A run either returns
(the input was accepted) or raises one of the parser's typed errors (the input was refused with a clear message);
anything else is an unhandled exception, i.e. a bug. :data:`KNOWN_BUGS` lists open bugs whose fix lies outside
tests/reliability (each with a strict-xfail regression test in ``test_hostile_files.py``); the fuzzers count them
apart so that every other crash still fails. Remove an entry when its fix lands.
"""
from __future__ import annotations

import csv
import io
import json
import pickle
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

from restorever.errors import RestoreverError

# ---------------------------------------------------------------------------------------------------------- outcomes


class Unhandled(Exception):
    """A parser raised something other than its typed errors."""


@dataclass(frozen=True)
class KnownBug:
    """A crash already reported to the owner of the file, recognised by target, exception type and message."""

    target: str
    exc_types: tuple[str, ...]  # "module.QualName" of the exception(s)
    message: str  # a substring of the message ("" matches any)
    fix: str  # where the fix goes

    def matches(self, target: str, exc: BaseException) -> bool:
        name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        return target == self.target and name in self.exc_types and self.message in str(exc)


KNOWN_BUGS: dict[str, KnownBug] = {
    # none open: the 14 crash signatures found so far are fixed (docs/reliability.md lists them); add new ones here,
    # e.g. KnownBug("pairs-csv", ("_csv.Error",), "", "protocol.parse_pairs_csv: catch csv.Error")
}


def classify(target: str, exc: BaseException) -> str | None:
    """The name of the known bug ``exc`` is, or None."""
    for name, bug in KNOWN_BUGS.items():
        if bug.matches(target, exc):
            return name
    return None


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy
    run: Callable[[Any], Any]
    allowed: tuple[type[BaseException], ...] = (RestoreverError,)

    def check(self, value: Any) -> str:
        """``"accepted"``, ``"refused"``, or ``"known:NAME"``; raises :class:`Unhandled` for anything else."""
        try:
            self.run(value)
        except self.allowed:
            return "refused"
        except Exception as exc:  # noqa: BLE001 - this is what we are looking for
            known = classify(self.name, exc)
            if known:
                return f"known:{known}"
            raise Unhandled(f"{self.name}: {type(exc).__module__}.{type(exc).__qualname__}: {exc}") from exc
        return "accepted"


# ------------------------------------------------------------------------------------------------------ shared bits

def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="restorever-fuzz-"))


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@st.composite
def mutated(draw, base: st.SearchStrategy) -> bytes:
    """Bytes of ``base`` after 1-4 random edits: flip, overwrite, delete, insert, duplicate a slice, truncate.

    Every edit draws the same values whatever the data (positions are fractions scaled to the current length), so
    generation stays reproducible when ``base`` itself is not byte-stable (legacy ``torch.save`` writes object ids).
    """
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "delete", "insert", "dup", "truncate"]))
        where, length = draw(st.integers(0, 2**16 - 1)), draw(st.integers(1, 8))
        value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, ord("("), ord("."), ord("c"), ord("\n")]))
        extra = draw(st.binary(min_size=1, max_size=8))
        n = len(data)
        i = where * n >> 16
        if op == "flip" and n:
            data[i] ^= 1 << (length - 1)
        elif op == "set" and n:
            data[i] = value
        elif op == "delete" and n:
            del data[i:i + length]
        elif op == "insert":
            data[i:i] = extra
        elif op == "dup" and n:
            data[i:i] = data[i:i + length * (1 + (where & 7))]
        elif op == "truncate":
            del data[i:]
    return bytes(data)


_WORDS = ["same", "different", "true", "false", "1", "0", "-1", "yes", "no", "fold", "path_a", "path_b", "label",
          "issame", "#", "..", ".", "/", "\\", "a.jpg", "Aaron_Peirsol", "C:", "~", "${RESTOREVER_DATA}", "٣", "1_0",
          "9" * 30, "-0", "+1", "1e3", "nan", "inf", "\x00", "\u2028", "\x85", "é", "名前", '"', "'", ",", "\t", " "]


def token_lines(seps: list[str]) -> st.SearchStrategy[str]:
    """Text of lines built from tokens that matter to the parsers (numbers, labels, paths, odd characters)."""
    token = st.one_of(st.sampled_from(_WORDS), st.integers(-10, 10**6).map(str),
                      st.text(min_size=0, max_size=6))
    line = st.lists(token, max_size=6).flatmap(lambda toks: st.sampled_from(seps).map(lambda s: s.join(toks)))
    newline = st.sampled_from(["\n", "\r\n", "\r"])
    return st.tuples(st.lists(line, max_size=12), newline).map(lambda t: t[1].join(t[0]))


# ---------------------------------------------------------------------------------------------------- LFW pairs

_NAME_CHARS = st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="/\\\x85")
lfw_name = st.text(_NAME_CHARS, min_size=1, max_size=10).filter(
    lambda s: s not in (".", "..") and not any(c.isspace() for c in s))


@st.composite
def lfw_pairs_file(draw) -> tuple[str, list[tuple]]:
    """A valid LFW pairs file and the rows it must parse to."""
    n_folds = draw(st.integers(1, 3))
    per = draw(st.integers(1, 3))
    single = n_folds == 1 and draw(st.booleans())
    sep = draw(st.sampled_from(["\t", " ", "  ", " \t"]))
    lines = [str(per) if single else f"{n_folds}{sep}{per}"]
    rows = []
    for fold in range(n_folds):
        for _ in range(per):
            name, n1, n2 = draw(lfw_name), draw(st.integers(1, 9999)), draw(st.integers(1, 9999))
            lines.append(sep.join([name, str(n1), str(n2)]))
            rows.append((name, n1, name, n2, 1, fold))
        for _ in range(per):
            a, b = draw(lfw_name), draw(lfw_name)
            if a == b:
                b = b + "x"
            n1, n2 = draw(st.integers(1, 9999)), draw(st.integers(1, 9999))
            lines.append(sep.join([a, str(n1), b, str(n2)]))
            rows.append((a, n1, b, n2, 0, fold))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + (newline * draw(st.integers(0, 2)))
    return text, rows


def _run_lfw(text: str) -> None:
    from restorever.protocol import lfw_image_path, parse_lfw_pairs

    rows, n_folds, per = parse_lfw_pairs(text, source="fuzz.txt")
    assert len(rows) == 2 * n_folds * per
    for n1, i1, n2, i2, _, _, _ in rows:  # as load_lfw_pairs does next
        lfw_image_path("lfw", n1, i1)
        lfw_image_path("lfw", n2, i2)


lfw_inputs = st.one_of(
    lfw_pairs_file().map(lambda t: t[0]),
    mutated(lfw_pairs_file().map(lambda t: t[0].encode())).map(lambda b: b.decode("utf-8", "replace")),
    st.tuples(st.sampled_from(["1 1", "2 1", "1", "10 300", "0 0", "-1 2", "1 1 1"]),
              token_lines([" ", "\t"])).map(lambda t: t[0] + "\n" + t[1]),
    st.text(max_size=200),
)

# ---------------------------------------------------------------------------------------------------- pairs CSV

_PATH_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n")
csv_path = st.text(_PATH_CHARS, min_size=1, max_size=12).map(str.strip).filter(
    lambda s: bool(s) and not s.startswith("#"))
_TRUE = ["1", "true", "same", "yes", "y", "t", "TRUE", "Same"]
_FALSE = ["0", "false", "different", "diff", "no", "n", "f", "False"]


@st.composite
def pairs_csv_file(draw) -> tuple[str, list[tuple[str, str, int, int | None]]]:
    """A valid pairs CSV (quoted as csv.writer quotes) and the rows it must parse to."""
    n = draw(st.integers(1, 8))
    with_fold = draw(st.booleans())
    header = draw(st.booleans())
    rows = []
    for _ in range(n):
        same = draw(st.integers(0, 1))
        label = draw(st.sampled_from(_TRUE if same else _FALSE))
        rows.append((draw(csv_path), draw(csv_path), same, draw(st.integers(-3, 20)) if with_fold else None, label))
    if not header and rows[0][4].lower() == "same" and not any("." in p or "/" in p for p in rows[0][:2]):
        # protocol._is_header reads such a row as a header by design ("a,b,same" names columns); real paths have
        # a '.' or a '/' (test_hostile_files.test_csv_first_row_labelled_same_is_kept)
        rows[0] = (*rows[0][:4], "1")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    if header:
        writer.writerow(["path_a", "path_b", "same"] + (["fold"] if with_fold else []))
    for a, b, _, fold, label in rows:
        writer.writerow([a, b, label] + ([fold] if with_fold else []))
    return buf.getvalue(), [r[:4] for r in rows]


def _run_csv(text: str) -> None:
    from restorever.protocol import parse_pairs_csv

    pl = parse_pairs_csv(text, source="fuzz.csv")
    assert len(pl.a) == len(pl.b) == pl.same.size == pl.fold.size > 0


csv_inputs = st.one_of(
    pairs_csv_file().map(lambda t: t[0]),
    mutated(pairs_csv_file().map(lambda t: t[0].encode())).map(lambda b: b.decode("utf-8", "replace")),
    token_lines([",", ", ", ",,", ";"]),
    st.text(max_size=200),
)

# ------------------------------------------------------------------------------------------------ insightface .bin

@st.composite
def bin_payload(draw) -> tuple[list[bytes], Any]:
    n = draw(st.integers(1, 5))
    bins = [draw(st.binary(min_size=0, max_size=16)) for _ in range(2 * n)]
    labels = [draw(st.booleans()) for _ in range(n)]
    kind = draw(st.sampled_from(["list", "numpy", "ints", "tuple"]))
    issame = {"list": labels, "numpy": np.array(labels), "ints": [int(x) for x in labels],
              "tuple": tuple(labels)}[kind]
    return bins, issame


def valid_bin_bytes() -> st.SearchStrategy[bytes]:
    return st.tuples(bin_payload(), st.integers(0, pickle.HIGHEST_PROTOCOL)).map(
        lambda t: pickle.dumps((t[0][0], t[0][1]), protocol=t[1]))


_json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=8),
              st.binary(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.tuples(children, children),
                               st.dictionaries(st.text(max_size=4), children, max_size=3)),
    max_leaves=12)

bin_inputs = st.one_of(
    valid_bin_bytes(),
    mutated(valid_bin_bytes()),
    st.tuples(_json_like, st.integers(0, pickle.HIGHEST_PROTOCOL)).map(lambda t: pickle.dumps(t[0], protocol=t[1])),
    st.tuples(st.tuples(st.lists(st.binary(max_size=4), max_size=6), _json_like),
              st.integers(0, pickle.HIGHEST_PROTOCOL)).map(lambda t: pickle.dumps(t[0], protocol=t[1])),
    st.binary(max_size=200),
)


def _run_bin(data: bytes) -> None:
    from restorever.protocol import read_insightface_bin

    tmp = _scratch()
    try:
        path = tmp / "fuzz.bin"
        path.write_bytes(data)
        pairs, blobs = read_insightface_bin(path, n_folds=10)
        assert len(blobs) == 2 * len(pairs)
    finally:
        _rmtree(tmp)


# ------------------------------------------------------------------------------------------------ protocol YAML

_yaml_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.text(max_size=10),
              st.sampled_from(["lfw-pairs", "pairs-csv", "insightface-bin", "lfw-ident", "pairs.txt", "../x.txt",
                               "/etc/passwd", "lfw.yaml", "self.yaml", "${RESTOREVER_DATA}/x"])),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.sampled_from(["format", "pairs", "root", "people", "images",
                                                                "download", "url", "filename", "sha256"]),
                                               children, max_size=3)),
    max_leaves=10)


@st.composite
def protocol_mapping(draw) -> dict:
    keys = draw(st.lists(st.sampled_from(["protocol", "version", "dataset", "folds", "include", "alignment",
                                          "scoring", "metrics", "split", "unknown"]), unique=True, max_size=6))
    spec = {k: draw(_yaml_value) for k in keys}
    if draw(st.booleans()):
        spec["protocol"] = draw(st.sampled_from(["self", "x", "", "lfw"]))
        spec["dataset"] = {"format": draw(st.sampled_from(["lfw-pairs", "pairs-csv", "insightface-bin", "lfw-ident",
                                                           "other"])),
                           "pairs": draw(st.sampled_from(["pairs.txt", ["a.txt", "b.txt"], 5, None, "../up.txt"]))}
    return spec


_HOSTILE_YAML = [
    "!!python/object/apply:os.system ['echo pwned']",
    "protocol: x\ndataset: !!python/object/new:os.system [echo pwned]\n",
    "a: &a [*a]\n",
    "[" * 1000 + "]" * 1000,
    "a: &x 1\nb: *y\n",
    "protocol: self\ninclude: fuzz.yaml\ndataset: {format: pairs-csv}\n",  # includes itself
    "protocol: self\ninclude: [a]\n",
    "protocol: self\ninclude: 3\n",
    "? [a]\n: 1\n",
    "%YAML 9.9\n---\na: 1\n",
    'protocol: "\\UBF8302FC30f"\n',  # a \U escape beyond a C int
    'protocol: "\\U00110000"\n',  # a \U escape beyond U+10FFFF
]

yaml_inputs = st.one_of(
    protocol_mapping().map(lambda d: _yaml_dump(d).encode()),
    st.sampled_from(_HOSTILE_YAML).map(str.encode),
    mutated(protocol_mapping().map(lambda d: _yaml_dump(d).encode())),
    st.text(max_size=200).map(str.encode),
    st.binary(max_size=60),
)


def _yaml_dump(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, allow_unicode=True)


def _run_yaml(data: bytes) -> None:
    from restorever.protocol import load_spec

    tmp = _scratch()
    try:
        path = tmp / "fuzz.yaml"
        path.write_bytes(data)
        spec, found = load_spec(str(path))
        assert isinstance(spec, dict) and found == path
    finally:
        _rmtree(tmp)


def _run_yaml_validator(data: bytes) -> None:
    """``restorever validate --protocols`` must report, never crash, whatever the file holds."""
    from restorever.validate import validate_protocol_file

    tmp = _scratch()
    try:
        path = tmp / "fuzz.yaml"
        path.write_bytes(data)
        problems = validate_protocol_file(path)
        assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)
    finally:
        _rmtree(tmp)


# --------------------------------------------------------------------------------------------------- people files

@st.composite
def people_file(draw) -> str:
    folds = draw(st.integers(0, 3))
    lines = [str(folds)] if folds else []
    for _ in range(max(folds, 1)):
        people = draw(st.lists(lfw_name, min_size=1, max_size=4, unique=True))
        lines.append(str(len(people)))
        lines += [f"{p}\t{draw(st.integers(1, 50))}" for p in people]
    return "\n".join(lines) + "\n"


people_inputs = st.one_of(people_file(), mutated(people_file().map(str.encode)).map(
    lambda b: b.decode("utf-8", "replace")), token_lines(["\t", " "]), st.text(max_size=120))


def _run_people(text: str) -> None:
    from restorever.datasets_ident import parse_people_file

    people = parse_people_file(text, source="fuzz-people.txt")
    assert all(isinstance(n, int) and n >= 1 for n in people.values())


def _run_gender(text: str) -> None:
    from restorever.attributes.labels import parse_gender_lists

    half = len(text) // 2
    parse_gender_lists(text[:half], text[half:])


def _run_kumar(text: str) -> None:
    from restorever.attributes.groups import AgeGroups
    from restorever.attributes.labels import parse_kumar_ages

    parse_kumar_ages(text, AgeGroups.parse("13,20,60"), source="fuzz.tsv")


kumar_inputs = st.one_of(
    st.tuples(st.sampled_from(["person\timagenum\tSenior", "person\timagenum\tBaby\tSenior", "x"]),
              token_lines(["\t"])).map(lambda t: t[0] + "\n" + t[1]),
    st.text(max_size=120))

# ------------------------------------------------------------------------------------------------------ images


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_header(width: int, height: int, *, data: bytes = b"") -> bytes:
    """A PNG whose IHDR claims ``width x height`` (8-bit RGB), with ``data`` as its (tiny) IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(data))
            + _png_chunk(b"IEND", b""))


def jpeg_header(width: int, height: int) -> bytes:
    """A baseline JPEG start (SOI, SOF0 claiming ``width x height``) with no scan data."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


@st.composite
def small_image(draw) -> bytes:
    from PIL import Image

    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"]))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "1"]))
    if fmt == "JPEG" and mode in ("RGBA", "P", "1"):
        mode = "RGB"
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


image_inputs = st.one_of(
    small_image(),
    mutated(small_image()),
    st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)).map(lambda t: png_header(*t)),
    st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(lambda t: jpeg_header(*t)),
    st.binary(max_size=100),
)


def _run_image(data: bytes) -> None:
    from restorever.images import MAX_PIXELS, MIN_SIDE, decode_image

    arr = decode_image(data, source="fuzz")
    h, w = arr.shape[:2]
    assert arr.dtype == np.uint8 and arr.shape == (h, w, 3) and h * w <= MAX_PIXELS and min(h, w) >= MIN_SIDE


# ------------------------------------------------------------------------------------------------- checkpoints

@st.composite
def checkpoint_bytes(draw) -> bytes:
    import torch

    n = draw(st.integers(0, 3))
    sd = {f"w{i}": torch.zeros(draw(st.integers(0, 3))) for i in range(n)}
    obj = draw(st.sampled_from(["plain", "params_ema", "module"]))
    if obj == "params_ema":
        sd = {"params_ema": sd, "iter": torch.tensor(1)}
    elif obj == "module":
        sd = {f"module.{k}": v for k, v in sd.items()}
    buf = io.BytesIO()
    torch.save(sd, buf, _use_new_zipfile_serialization=draw(st.booleans()))
    return buf.getvalue()


checkpoint_inputs = st.one_of(checkpoint_bytes(), mutated(checkpoint_bytes()), st.binary(max_size=200))


def _run_checkpoint(data: bytes) -> None:
    import torch

    from restorever.hub import load_checkpoint

    tmp = _scratch()
    try:
        path = tmp / "fuzz.pth"
        path.write_bytes(data)
        sd = load_checkpoint(path)
        assert all(isinstance(v, torch.Tensor) for v in sd.values())
    finally:
        _rmtree(tmp)


# -------------------------------------------------------------------------------------------------- results.json

@st.composite
def results_record(draw) -> dict:
    """A small, valid results record (no cache) built with the library's own metric functions."""
    import warnings

    from restorever.metrics.verification import verification_report

    n = draw(st.integers(4, 24))
    same = [i % 2 for i in range(n)]
    n_folds = draw(st.integers(1, 3))
    fold = [i % n_folds for i in range(n)]
    restorers = draw(st.lists(st.sampled_from(["none", "vqfr-v2", "difface"]), min_size=1, max_size=2, unique=True))
    scales = draw(st.lists(st.integers(1, 32), max_size=2, unique=True))
    conditions = []
    for restorer, scale in [("none", None)] + [(r, s) for s in scales for r in restorers]:
        scores = [float(np.float32(draw(st.floats(-1, 1, width=32)))) for _ in range(n)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ver = verification_report(np.asarray(same), np.asarray(scores), np.asarray(fold))
        conditions.append({"restorer": restorer, "degradation": None if scale is None else "difface-test",
                           "scale": scale, "degrade_side": "probe", "recognizer": "dlib", "verification": ver,
                           "identity": {"cosine_to_clean_mean": None, "n": 0},
                           "scores": {"same": same, "fold": fold, "score": scores}})
    record = {
        "restorever_version": "0.0.0-fuzz", "created": "2026-01-01T00:00:00+00:00",
        "config": {"protocol": "pairs-csv", "restorers": restorers, "recognizer": "dlib", "scales": scales,
                   "degradation": "difface-test", "degrade_side": "probe", "seed": 0, "cache_dir": None},
        "environment": {"python": "3", "torch": "2", "cuda": None, "device": "cpu"}, "weights": {},
        "protocol": {"name": "pairs-csv", "pairs": n, "pairs_requested": n, "folds": n_folds, "skipped": []},
        "cache": {"hits": 0, "misses": 0, "corrupt": 0, "dir": None},
        "pairs": {"a": [f"p{i // 2}/a.jpg" for i in range(n)], "b": [f"p{(i + i % 2) // 2}/b.jpg" for i in range(n)]},
        "conditions": conditions,
    }
    if scales and draw(st.booleans()):  # the paired statistics write_run adds
        from restorever.reports.statistics import add_comparisons

        add_comparisons(record, n_boot=50)
    return json.loads(json.dumps(record))


def _json_mutations(draw, value: Any, depth: int = 0) -> Any:
    """Replace, delete or retype one random leaf or branch of a JSON value."""
    if isinstance(value, dict) and value and depth < 8 and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value)))
        out = dict(value)
        if draw(st.integers(0, 5)) == 0:
            del out[key]
        else:
            out[key] = _json_mutations(draw, value[key], depth + 1)
        return out
    if isinstance(value, list) and value and depth < 8 and draw(st.integers(0, 3)):
        i = draw(st.integers(0, len(value) - 1))
        out = list(value)
        if draw(st.integers(0, 5)) == 0:
            del out[i]
        else:
            out[i] = _json_mutations(draw, value[i], depth + 1)
        return out
    return draw(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.floats(-2, 2),
                          st.floats(), st.text(max_size=3), st.just([]), st.just({})))


@st.composite
def results_inputs(draw) -> bytes:
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "random", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=80))
    if kind == "random":
        return json.dumps(draw(_json_like.filter(lambda v: not isinstance(v, bytes))), default=repr).encode()
    record = draw(results_record())
    if kind == "mutated":
        record = _json_mutations(draw, record)
    return json.dumps(record, allow_nan=True).encode()


def _run_results(data: bytes) -> None:
    from restorever.validate import VALIDATOR_ERROR, check_run

    tmp = _scratch()
    try:
        (tmp / "results.json").write_bytes(data)
        report = check_run(tmp)
        assert all(isinstance(p, str) and p for p in report.problems)
        crashed = [p for p in report.problems if p.startswith(VALIDATOR_ERROR)]
        assert not crashed, crashed
    finally:
        _rmtree(tmp)


# ---------------------------------------------------------------------------------------------------- registry

def _run_weights_option(text: str) -> None:
    from restorever.hub import parse_weights_option

    out = parse_weights_option(text)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("lfw-pairs", lfw_inputs, _run_lfw),
    Target("pairs-csv", csv_inputs, _run_csv),
    Target("insightface-bin", bin_inputs, _run_bin),
    Target("protocol-yaml", yaml_inputs, _run_yaml),
    Target("protocol-validator", yaml_inputs, _run_yaml_validator, allowed=()),
    Target("people-file", people_inputs, _run_people),
    Target("gender-lists", st.text(max_size=200), _run_gender, allowed=()),
    Target("kumar-ages", kumar_inputs, _run_kumar),
    Target("image-decode", image_inputs, _run_image),
    Target("checkpoint", checkpoint_inputs, _run_checkpoint),
    Target("results-validator", results_inputs(), _run_results, allowed=()),
    Target("weights-option", st.one_of(st.text(max_size=40), token_lines(["=", ","])), _run_weights_option,
           allowed=(RestoreverError, ValueError)),
]}


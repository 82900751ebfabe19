"""Property tests of every parser: any input is accepted or refused with a typed error (never another exception),
and valid files parse to exactly what was written. ``scripts/fuzz_parsers.py`` runs the same targets at 10,000
inputs each; here each runs at the CI profile (``conftest.EXAMPLES``)."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from restorever.errors import ProtocolError
from restorever.protocol import parse_lfw_pairs, parse_pairs_csv, read_insightface_bin

from .conftest import FUZZ
from .fuzz_targets import KNOWN_BUGS, TARGETS, bin_payload, lfw_pairs_file, pairs_csv_file, results_record


@pytest.mark.parametrize("name", list(TARGETS))
@FUZZ
@given(data=st.data())
def test_parser_never_crashes(name, data):
    """Accepted, or refused with the parser's typed error; an open bug listed in ``KNOWN_BUGS`` (none today) is
    tolerated only with its exact signature."""
    target = TARGETS[name]
    outcome = target.check(data.draw(target.strategy, label=name))
    assert outcome in ("accepted", "refused") or outcome[6:] in KNOWN_BUGS


@FUZZ
@given(lfw_pairs_file())
def test_lfw_pairs_roundtrip(case):
    text, expected = case
    rows, n_folds, per = parse_lfw_pairs(text)
    assert [r[:6] for r in rows] == expected
    assert n_folds * 2 * per == len(rows)
    assert [r[6] for r in rows] == list(range(2, len(rows) + 2))  # line numbers of the pairs


@FUZZ
@given(lfw_pairs_file(), st.data())
def test_lfw_pairs_wrong_count_names_header(case, data):
    text, _ = case
    lines = text.strip().replace("\r\n", "\n").split("\n")
    drop = data.draw(st.integers(1, len(lines) - 1))
    broken = "\n".join(lines[:drop] + lines[drop + 1:])
    with pytest.raises(ProtocolError, match="p.txt"):
        parse_lfw_pairs(broken, source="p.txt")


@FUZZ
@given(pairs_csv_file())
def test_pairs_csv_roundtrip(case):
    text, expected = case
    pl = parse_pairs_csv(text, n_folds=10)
    assert list(zip(pl.a, pl.b, pl.same.tolist())) == [r[:3] for r in expected]
    if expected[0][3] is not None:
        assert pl.fold.tolist() == [r[3] for r in expected]
    else:  # round-robin within each class over k folds; every fold holds both classes when both have >= k pairs
        n_pos, n_neg = int(pl.same.sum()), int((1 - pl.same).sum())
        k = max(1, min(10, min(n_pos, n_neg) if min(n_pos, n_neg) else max(n_pos, n_neg)))
        for label in (0, 1):
            assert pl.fold[pl.same == label].tolist() == [i % k for i in range(int((pl.same == label).sum()))]
        if min(n_pos, n_neg) >= k:
            assert all(set(pl.same[pl.fold == f]) == {0, 1} for f in range(k))


@FUZZ
@given(bin_payload(), st.integers(0, pickle.HIGHEST_PROTOCOL), st.integers(1, 12))
def test_insightface_bin_roundtrip(tmp_path_factory, payload, protocol, n_folds):
    bins, issame = payload
    path = tmp_path_factory.mktemp("bin") / "x.bin"
    path.write_bytes(pickle.dumps((bins, issame), protocol=protocol))
    pairs, blobs = read_insightface_bin(path, n_folds=n_folds)
    n = len(bins) // 2
    assert blobs == bins and pairs.same.tolist() == [int(x) for x in issame]
    assert pairs.a == [f"bin:{2 * i}" for i in range(n)] and pairs.b == [f"bin:{2 * i + 1}" for i in range(n)]
    folds = pairs.fold.tolist()
    assert folds == sorted(folds) and folds[0] == 0  # contiguous blocks, as insightface splits them
    sizes = np.bincount(pairs.fold)
    assert len(sizes) == min(n_folds, n) and sizes.max() - sizes.min() <= 1


@FUZZ
@given(results_record())
def test_validator_accepts_every_valid_record(tmp_path_factory, record):
    from restorever.validate import check_run

    run = tmp_path_factory.mktemp("run")
    (run / "results.json").write_text(json.dumps(record, allow_nan=False))
    report = check_run(run)
    assert report.ok, report.problems
    assert report.checked["metrics recomputed"] >= len(record["conditions"])  # + the paired statistics


def _numeric_leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numeric_leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numeric_leaves(v, (*path, i))
    elif isinstance(value, float):
        yield path


@FUZZ
@given(results_record(), st.data())
def test_validator_detects_any_tampered_metric(tmp_path_factory, record, data):
    """Changing any stored metric number (by more than rounding) makes the run invalid."""
    from restorever.validate import check_run

    i = data.draw(st.integers(0, len(record["conditions"]) - 1))
    leaves = list(_numeric_leaves(record["conditions"][i]["verification"]))
    path = data.draw(st.sampled_from(leaves))
    node = record["conditions"][i]["verification"]
    for key in path[:-1]:
        node = node[key]
    old = node[path[-1]]
    node[path[-1]] = data.draw(st.floats(0, 1).filter(lambda x: abs(x - old) > 1e-6 * max(1.0, abs(old))))
    run = tmp_path_factory.mktemp("run")
    (run / "results.json").write_text(json.dumps(record))
    problems = check_run(run).problems
    assert problems, f"tampering {path} was not detected"


@FUZZ
@given(st.data())
def test_schema_agrees_with_jsonschema(data):
    """``schema_problems`` (restorever's wording of what ``jsonschema`` finds) and ``jsonschema`` itself agree on
    valid and mutated records."""
    jsonschema = pytest.importorskip("jsonschema")
    from restorever.validate import RESULTS_SCHEMA, schema_problems

    from .fuzz_targets import _json_mutations

    record = data.draw(results_record())
    if data.draw(st.booleans()):
        record = _json_mutations(data.draw, record)
    reference = jsonschema.Draft202012Validator(RESULTS_SCHEMA)
    ours = schema_problems(record)
    theirs = list(reference.iter_errors(record))
    assert bool(ours) == bool(theirs), (ours[:3], [e.message for e in theirs[:3]])


def test_schema_is_valid_json_schema():
    jsonschema = pytest.importorskip("jsonschema")
    from restorever.validate import RESULTS_SCHEMA

    jsonschema.Draft202012Validator.check_schema(RESULTS_SCHEMA)


HOSTILE_VALUES = ([1], {"a": 1}, 1.5, True, None, "x", -3, [[1]], {"name": [1]})


def _key_paths(node, prefix=()):
    """Every key / index path of a parsed YAML document."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield prefix + (key,)
        yield from _key_paths(value, prefix + (key,))


@pytest.mark.parametrize("name", ["lfw", "lfw-dev", "pairs-csv", "lfw-ident", "insightface-bin"])
def test_every_key_of_a_shipped_protocol_takes_hostile_values(tmp_path, name):
    """Each key of the shipped protocol, replaced by a list, mapping, number, bool, null or text, is loaded or
    refused with a ProtocolError, never a bare exception (`metrics: 1.5` and `metrics: [{name: [1]}]` were
    TypeErrors)."""
    import copy
    from pathlib import Path

    import yaml

    from restorever.errors import RestoreverError
    from restorever.protocol import load_spec

    base = yaml.safe_load((Path(__file__).resolve().parents[2] / "protocols" / f"{name}.yaml").read_text())
    path, crashes = tmp_path / "p.yaml", []
    for keys in list(_key_paths(base)):
        for value in HOSTILE_VALUES:
            spec = copy.deepcopy(base)
            node = spec
            for key in keys[:-1]:
                node = node[key]
            node[keys[-1]] = value
            path.write_text(yaml.safe_dump(spec))
            try:
                load_spec(str(path))
            except RestoreverError:
                pass
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                crashes.append(f"{'.'.join(map(str, keys))} = {value!r}: {type(exc).__name__}: {exc}")
    assert not crashes, crashes[:5]

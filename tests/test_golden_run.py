"""A fixed small run whose results.json is pinned: restructuring the pipeline must not change a number.

The run: 20 pairs of ``../shared/data/faces`` (the pairs-csv protocol), dlib, restorer ``none``, scales x8 and x32,
seed 3. ``tests/golden/pairs_csv_dlib.json`` holds its results.json as the code wrote it before the run-model
restructuring (issue 14), with what legitimately varies between machines taken out (:func:`normalise`). A key that
the golden file lacks may be added to a new record; every key it has must keep its value (floats
to 1e-9 relative or 5e-4 absolute: the float32 kernels of dlib and BLAS take other paths on other CPUs, which moved
pair scores by up to 4.5e-5 between two of our VMs; a real change in pairing, alignment,
degradation or scoring moves them by 1e-2 or more, and counts, names and labels must match exactly)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from restorever.cli import cli

from .test_protocol import _faces_csv

GOLDEN = Path(__file__).parent / "golden" / "pairs_csv_dlib.json"

#: float tolerance across CPUs (see the module docstring)
FLOAT_ABS_TOL = 5e-4

#: top-level keys that describe the machine or the clock, not the result
VOLATILE = ("created", "environment", "timings", "restorever_version")


def normalise(record: dict[str, Any], *, replace: dict[str, str]) -> dict[str, Any]:
    """``record`` without clock/machine fields, with the run's own absolute paths replaced by placeholders, the
    weight files named by their file name, and the hashes of files whose bytes depend on library versions (PNG
    encoders, matplotlib, the Markdown summary that holds timings) dropped."""
    text = json.dumps(record)
    for path, token in replace.items():
        text = text.replace(json.dumps(path)[1:-1], token)
    out = json.loads(text)
    for key in VOLATILE:
        out.pop(key, None)
    for entry in out.get("weights", {}).values():
        entry["file"] = os.path.basename(entry["file"])
    out["outputs"] = {k: v for k, v in out.get("outputs", {}).items() if k.endswith(".jsonl")}
    return out


def _differences(golden: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(golden, dict):
        if not isinstance(new, dict):
            return [f"{path}: was an object, now {type(new).__name__}"]
        out = []
        for key, value in golden.items():
            if key not in new:
                out.append(f"{path}.{key}: missing")
            else:
                out += _differences(value, new[key], f"{path}.{key}")
        return out
    if isinstance(golden, list):
        if not isinstance(new, list) or len(new) != len(golden):
            return [f"{path}: was a list of {len(golden)}, now {new!r:.80}"]
        return [d for i, (g, n) in enumerate(zip(golden, new)) for d in _differences(g, n, f"{path}[{i}]")]
    if isinstance(golden, float) and isinstance(new, (int, float)) and not isinstance(new, bool):
        close = math.isclose(golden, new, rel_tol=1e-9, abs_tol=FLOAT_ABS_TOL)
        return [] if close else [f"{path}: {golden!r} -> {new!r}"]
    return [] if golden == new and type(golden) is type(new) else [f"{path}: {golden!r} -> {new!r}"]


def fixed_run(faces_root: Path, tmp: Path) -> dict[str, Any]:
    """Run the fixed small evaluation in ``tmp`` and return its normalised results.json."""
    rows = _faces_csv(faces_root).splitlines()
    pairs = tmp / "pairs.csv"
    pairs.write_text("\n".join(rows[:21]) + "\n")
    out = tmp / "run"
    result = CliRunner().invoke(cli, ["eval", "--protocol", "pairs-csv", "--pairs", str(pairs), "--data-root",
                                      str(faces_root), "--scales", "8,32", "--seed", "3", "--recognizer", "dlib",
                                      "--cache-dir", str(tmp / "cache"), "--out", str(out), "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "results.json").read_text())
    return normalise(record, replace={str(tmp): "<tmp>", str(faces_root): "<data>"})


def test_results_json_of_a_fixed_run_is_unchanged(faces_root, tmp_path):
    new = fixed_run(faces_root, tmp_path)
    if os.environ.get("RESTOREVER_WRITE_GOLDEN") == "1":  # only to pin a deliberate change, reviewed in the diff
        GOLDEN.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    problems = _differences(golden, new)
    assert not problems, "results.json changed:\n" + "\n".join(problems[:40])


def test_the_comparison_can_fail():
    """A changed score, a dropped key and a changed string are each reported; an added key is not."""
    golden = {"a": [0.5, 1], "b": {"c": "x"}}
    assert _differences(golden, {"a": [0.5, 1], "b": {"c": "x"}, "new": 1}) == []
    assert _differences(golden, {"a": [0.5001, 1], "b": {"c": "x"}}) == []  # CPU-dependent float32 noise
    assert _differences(golden, {"a": [0.501, 1], "b": {"c": "x"}}) == [".a[0]: 0.5 -> 0.501"]
    assert _differences(golden, {"a": [0.5, 1], "b": {}}) == [".b.c: missing"]
    assert _differences(golden, {"a": [0.5, 1.0], "b": {"c": "y"}}) == [".a[1]: 1 -> 1.0", ".b.c: 'x' -> 'y'"]

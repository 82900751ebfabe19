"""Fixtures of the reliability tests: a tiny real run (8 pairs of real faces, one scale) and hypothesis settings.

``RESTOREVER_HYPOTHESIS_EXAMPLES`` sets the examples per property test (default 100, the CI profile);
``scripts/fuzz_parsers.py`` runs the same targets with 10,000 inputs each.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

from restorever.cli import cli

from ..test_protocol import _faces_csv

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("RESTOREVER_HYPOTHESIS_EXAMPLES", "100"))

#: settings of every property test here: no example database in the checkout, no deadline on a shared CPU
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])


def eval_args(csv: Path, root: Path, out: Path, cache: Path, *extra) -> list[str]:
    """``restorever eval`` arguments of the tiny run (scale 8, batch 2, the dlib recognizer, MTCNN landmarks)."""
    return ["eval", "--protocol", "pairs-csv", "--pairs", str(csv), "--data-root", str(root), "--scales", "8",
            "--batch-size", "2", "--out", str(out), "--cache-dir", str(cache), "--no-progress", "--examples", "0",
            *[str(e) for e in extra]]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def cache_entries(cache: Path) -> set[str]:
    return {str(p.relative_to(cache)) for p in cache.rglob("*.npz")} if cache.exists() else set()


def stray_files(cache: Path) -> list[str]:
    """Temporary files an interrupted write left behind (there must be none)."""
    return [str(p) for p in cache.rglob("*.tmp")] if cache.exists() else []


def run_scores(out: Path):
    record = json.loads((out / "results.json").read_text())
    return [c["scores"] for c in record["conditions"]], record


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, faces_root) -> tuple[Path, Path]:
    """``(pairs.csv, data root)``: 4 pairs (2 same, 2 different, 2 folds) over a private copy of 6 real face
    images, so tests may delete or replace files."""
    tmp = tmp_path_factory.mktemp("tiny-data")
    rows = _faces_csv(faces_root).splitlines()[:5]
    root = tmp / "faces"
    for row in rows[1:]:
        for rel in row.split(",")[:2]:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            if not (root / rel).exists():
                shutil.copyfile(faces_root / rel, root / rel)
    csv = tmp / "pairs.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv, root


@pytest.fixture(scope="session")
def reference_run(tiny_data, tmp_path_factory):
    """The uninterrupted run every fault test compares with: ``(scores, cache entries, out dir, cache dir)``."""
    csv, root = tiny_data
    tmp = tmp_path_factory.mktemp("reference")
    result = CliRunner().invoke(cli, eval_args(csv, root, tmp / "out", tmp / "cache"), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    scores, _ = run_scores(tmp / "out")
    return scores, cache_entries(tmp / "cache"), tmp / "out", tmp / "cache"

"""Round 19, review of the TAR@FAR replicate rule (``tar_rule``): validate names an edited or dropped rule, compare
says which rule each row's interval used and keeps a run's old rule only where it reproduces that run's draws, the
report's note, tables.csv and the methods text state the rule, and the coverage docs state the widths their table
shows."""
from __future__ import annotations

import copy
import csv
import json
import re
from pathlib import Path

import pytest

from restorever.reports.compare import write_comparison
from restorever.reports.rate_stats import add_rate_comparisons
from restorever.reports.results import write_run

from .conftest import make_record
from .test_compare import _rename

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _as_rule_1(record: dict) -> dict:
    """``record`` as a restorever before ``tar_rule`` wrote it: its rate intervals by rule 1, no key."""
    older = copy.deepcopy(record)
    for cond in older["conditions"]:
        if cond.get("comparison_to_none"):
            cond["comparison_to_none"]["tar_rule"] = 1
    add_rate_comparisons(older, overwrite=True)
    for cond in older["conditions"]:
        if cond.get("comparison_to_none"):
            assert cond["comparison_to_none"].pop("tar_rule") == 1
    return older


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of the same pairs (80 impostor pairs: FAR 0.1 is a whole 8, where the rules differ): ``new``
    as written now (rule 2, restorers none and codeformer), ``old`` rewritten as a record from before the key (rule
    1, none and vqfr-v2); their ``none`` agree, so compare keeps one."""
    root = tmp_path_factory.mktemp("tar_rule")
    first = make_record(root, examples=0)
    for name, record in (("old", first), ("new", _rename(first, "vqfr-v2", "codeformer", 0.15))):
        record["protocol"]["pairs_sha256"] = "ab" * 32
        write_run(copy.deepcopy(record), root / name)
    path = root / "old" / "results.json"
    path.write_text(json.dumps(_as_rule_1(json.loads(path.read_text()))))
    return root


def _problems(run_dir: Path, record: dict) -> list[str]:
    from restorever.validate import check_run

    (run_dir / "results.json").write_text(json.dumps(record))
    return check_run(run_dir, check_cache=False).problems


def test_validate_names_an_edited_or_dropped_tar_rule(runs, tmp_path):
    """The intervals of one rule under another rule's label were reported as two interval mismatches
    (``tar_at_far.0.1.ci_low: stored ..., recomputed ...``), which reads as damaged numbers; validate now also
    recomputes with the other rule and, where that reproduces the stored intervals, names the rule."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "new", run)
    stored = json.loads((run / "results.json").read_text())
    baseline = _problems(run, stored)
    where = "conditions[4] (codeformer x16).comparison_to_none.tar_rule"
    for edit, says in [(lambda c: c.update(tar_rule=1), "stored 1"), (lambda c: c.pop("tar_rule"), "absent")]:
        edited = copy.deepcopy(stored)
        edit(edited["conditions"][4]["comparison_to_none"])
        new = [p for p in _problems(run, edited) if p not in baseline]
        named = [p for p in new if p.startswith(where)]
        assert len(named) == 1 and says in named[0] and "those of tar_rule 2" in named[0], new
    older = _as_rule_1(stored)  # rule-1 numbers labelled rule 2
    older["conditions"][4]["comparison_to_none"]["tar_rule"] = 2
    new = [p for p in _problems(run, older) if p not in baseline]
    assert any(p.startswith(where) and "stored 2" in p and "those of tar_rule 1" in p for p in new), new
    damaged = copy.deepcopy(stored)  # a damaged interval, the rule as written: no rule named
    damaged["conditions"][4]["comparison_to_none"]["tar_at_far"]["0.1"]["ci_low"] += 0.01
    new = [p for p in _problems(run, damaged) if p not in baseline]
    assert new and not any("tar_rule" in p for p in new), new


def _rows(path: Path) -> dict:
    return {(r["restorer"], r["scale"]): r for r in csv.DictReader(path.open())}


def _section(text: str, title: str) -> str:
    body = text.split(title, 1)[1]
    return re.split(r"\n#{2,3} ", body, maxsplit=1)[0]

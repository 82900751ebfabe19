"""docs/api.md tells a library user what a record from ``evaluate()`` and the paired-statistics functions hold,
against a record written by ``write_run`` (the keys ``restorever eval`` stores)."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np

from restorever import paired_accuracy_test
from restorever.metrics import verification_report
from restorever.reports.rate_stats import compare_rates
from restorever.reports.results import write_run

from .conftest import make_record

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _section(heading: str) -> str:
    text = API_MD.read_text(encoding="utf-8")
    assert heading in text
    body = re.sub(r"^```.*?^```", "", text.split(heading, 1)[1], flags=re.M | re.S)  # code comments are no headings
    return re.split(r"^#+ ", body, maxsplit=1, flags=re.M)[0]


def _condition_keys(record: dict) -> set[str]:
    """`key` and `key.sub` of every condition (one level into dicts), `per_item` and scores left out."""
    keys = set()
    for cond in record["conditions"]:
        for key, value in cond.items():
            keys.add(key)
            if isinstance(value, dict) and key != "scores":
                keys.update(f"{key}.{sub}" for sub in value if sub != "per_item")
    return keys


def test_evaluate_section_names_what_write_run_adds(tmp_path):
    """evaluate() returns the record before the paired statistics; api.md said it had results.json's keys, so a
    library user looked in vain for comparison_to_none (found by running evaluate on 20 LFW pairs)."""
    record = make_record(tmp_path)
    before = _condition_keys(copy.deepcopy(record))
    write_run(record, tmp_path)
    added = _condition_keys(record) - before
    assert {"comparison_to_clean", "comparison_to_none", "identity_comparison_to_none", "identity.ci_low"} <= added
    text = _section("## evaluate and EvalConfig")
    assert "write_run" in text
    for key in added:
        top, _, sub = key.partition(".")
        if top in added:  # a new block: naming it is enough
            assert f"`{top}`" in text, top
        else:  # a new key of an existing block (identity.ci_low)
            assert f"`{key}`" in text or f"`{top}.{sub}`" in text or f"`{sub}`" in text and f"`{top}." in text, key


def test_paired_section_names_the_stored_keys_paired_accuracy_test_leaves_out(tmp_path):
    """A run's comparison_to_none holds auc and tar_at_far, which paired_accuracy_test does not compute: the
    section said it gave "the stored comparison_to_none"; it now names them and the function that does, and that
    function works on condition dicts built from one's own scores, as the section says."""
    record = make_record(tmp_path)
    write_run(record, tmp_path)
    stored = next(c["comparison_to_none"] for c in record["conditions"] if c.get("comparison_to_none"))
    rng = np.random.default_rng(0)
    y, folds = np.tile([1, 0], 100), np.repeat(np.arange(10), 20)
    a, b = y + rng.normal(size=200), y + 0.5 * rng.normal(size=200)
    people = rng.integers(0, 60, size=200)
    mine = paired_accuracy_test(y, a, b, folds, people=people, seed=0)
    missing = set(stored) - set(mine) - {"reference"}
    assert missing == {"auc", "tar_at_far", "tar_rule"}
    text = _section("## Paired statistics on your own scores")
    for key in missing:
        assert f"`{key}`" in text
    assert "rate_stats.compare_rates" in text
    cond = {k: {"scores": {"same": y.tolist(), "score": s.tolist()}, "verification": verification_report(y, s, folds)}
            for k, s in (("a", a), ("b", b))}
    rates = compare_rates(cond["a"], cond["b"], people, n_boot=200, seed=0)
    assert rates["auc"]["ci_low"] <= rates["auc"]["difference"] <= rates["auc"]["ci_high"]
    assert rates["tar_at_far"]["0.1"] is not None  # 100 impostor pairs resolve FAR 0.1 and 0.01 only
    assert rates["tar_at_far"]["0.001"] is None


def test_architecture_md_names_every_comparison_json_key(tmp_path):
    """The comparison.json key list of docs/architecture.md against compare_runs' dict (top level, `runs`, `clean`,
    `conditions` entries): it missed `identity_comparisons` and `clean`'s `runs`."""
    from restorever.reports.compare import compare_runs

    first, second = make_record(tmp_path, examples=0), make_record(tmp_path, examples=0)
    for cond in second["conditions"]:
        cond["restorer"] = "codeformer" if cond["restorer"] == "vqfr-v2" else cond["restorer"]
    second["config"]["restorers"] = ["none", "codeformer"]
    for record in (first, second):
        record["protocol"]["pairs_sha256"] = "ab" * 32
    comparison = compare_runs([first, second], ["a", "b"], n_boot=200)
    text = (API_MD.parent / "architecture.md").read_text(encoding="utf-8")
    text = text.split("## Comparing runs made separately", 1)[1].split("\n## ", 1)[0]
    keys = set(comparison) | set(comparison["runs"][0]) | set(comparison["clean"]) | set(comparison["conditions"][0])
    assert {"identity_comparisons", "comparisons", "runs"} <= keys
    assert not [k for k in sorted(keys) if f"`{k}`" not in text and not k.startswith("_")]  # _merged: dropped on write

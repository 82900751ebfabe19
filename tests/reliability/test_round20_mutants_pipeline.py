"""Round 20, mutation testing sixth pass: the tests that close the gaps its survivors showed in the code that drives a
run and writes its record (the dry run's counts, the stages, the records, sharding, thresholds from a run).

Counts are by hand on a 5-pair CSV over 6 real faces and one file that is not an image (the 4 pairs of the tiny
reliability run plus one pair to the broken file)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.errors import RestoreverError

from .conftest import eval_args


@pytest.fixture(scope="module")
def broken_run(tiny_data, tmp_path_factory):
    """``(pairs.csv, data root, cache, out, dry-run output before the run)``: the tiny pairs plus ``ben_afflek_0001``
    against ``broken.jpg`` (text bytes), run with ``--on-error skip --examples 1``. Images: the 6 faces and the broken
    file (7); probes (the pairs' b side): 4 faces and the broken file."""
    csv, root = tiny_data
    tmp = tmp_path_factory.mktemp("round20-pipeline")
    data = tmp / "faces"
    shutil.copytree(root, data)
    (data / "broken.jpg").write_text("not an image\n")
    first = csv.read_text().splitlines()[1].split(",")[0]
    pairs = tmp / "pairs.csv"
    pairs.write_text(csv.read_text() + f"{first},broken.jpg,0\n")
    cache, out = tmp / "cache", tmp / "out"
    before = _dry(pairs, data, cache, tmp / "o-dry")
    result = CliRunner().invoke(cli, eval_args(pairs, data, out, cache, "--on-error", "skip", "--examples", "1"),
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return pairs, data, cache, out, before


def _dry(pairs: Path, data: Path, cache: Path, out: Path, *extra) -> str:
    result = CliRunner().invoke(cli, eval_args(pairs, data, out, cache, "--dry-run", *extra), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not (out / "results.json").exists()
    return result.output


def _row(plan: str, label: str) -> tuple[str, str]:
    """``(cached, to compute)`` of one condition's line of a dry run."""
    found = re.search(rf"^  {re.escape(label)} +(\S+) cached, +(\d+) (?:at most )?to compute", plan, re.M)
    assert found, plan
    return found.group(1), found.group(2)


def test_dry_run_counts_an_unreadable_image_once_and_plans_only_the_rest(broken_run):
    """Before any run: 1 unreadable file, 6 photos to detect, 6 clean and 4 probe embeddings to compute (the broken
    file is in neither). `unreadable += 2` and a dropped `failed.add` survived the earlier lists."""
    plan = broken_run[4]
    assert "protocol pairs-csv: 5 pairs, 7 images (5 probes)" in plan
    assert "unreadable or not an image now: 1; no face found (cached): 0" in plan
    assert "landmarks (mtcnn): 0 cached, 6 to detect" in plan
    assert _row(plan, "clean") == ("0", "6") and _row(plan, "none x8") == ("0", "4")
    assert "estimated time for what is missing" in plan
    assert "\nconditions:\n  clean " in plan


def test_dry_run_counts_a_missing_file_as_unreadable(broken_run, tmp_path):
    """An image the protocol names but the folder lacks is unreadable too and planned nowhere (dropping its
    `failed.add` survived: only an undecodable file was tried)."""
    pairs, data = broken_run[:2]
    more = tmp_path / "pairs.csv"
    more.write_text(pairs.read_text() + "ben_afflek/ben_afflek_0002.jpg,gone.jpg,1\n")
    plan = _dry(more, data, tmp_path / "cache", tmp_path / "o")
    assert "protocol pairs-csv: 6 pairs, 8 images (6 probes)" in plan
    assert "unreadable or not an image now: 2; no face found (cached): 0" in plan
    assert "landmarks (mtcnn): 0 cached, 6 to detect" in plan
    assert _row(plan, "clean") == ("0", "6") and _row(plan, "none x8") == ("0", "4")


def test_dry_run_after_the_run_finds_every_entry_and_plans_a_new_scale(broken_run):
    pairs, data, cache, out, _ = broken_run
    plan = _dry(pairs, data, cache, out.parent / "o-dry2")
    assert "unreadable or not an image now: 1" in plan and "landmarks (mtcnn): 6 cached, 0 to detect" in plan
    assert _row(plan, "clean") == ("6", "0") and _row(plan, "none x8") == ("4", "0")
    assert "estimated time for what is missing: nothing is missing (every entry is cached)" in plan
    plan = _dry(pairs, data, cache, out.parent / "o-dry3", "--scales", "8,16")
    assert _row(plan, "none x8") == ("4", "0") and _row(plan, "none x16") == ("0", "4")
    assert re.search(r"estimated time for what is missing: \d+ s on cpu", plan), plan
    # --align-on degraded: the degraded crops' landmarks are not known before the run, so every probe is counted
    plan = _dry(pairs, data, cache, out.parent / "o-dry4", "--align-on", "degraded")
    assert _row(plan, "clean") == ("6", "0") and _row(plan, "none x8") == ("?", "4")


def test_a_run_with_examples_and_a_skipped_pair_round_trips_through_its_record(broken_run):
    """`_put(out, "examples", ...)` dropped from RunRecord.to_json survived: no test's run kept an example. The
    record of a run that skipped a pair lists it, its subset counts, and reads back key for key."""
    from restorever.pipeline.records import RunRecord

    results = json.loads((broken_run[3] / "results.json").read_text())
    protocol = results["protocol"]
    assert (protocol["pairs"], protocol["pairs_requested"], protocol["images"]) == (4, 5, 6)
    assert [(s["pair"], s["b"]) for s in protocol["skipped"]] == [(6, "broken.jpg")]  # the CSV's line 6
    assert [f["image"] for f in protocol["failed_images"]] == ["broken.jpg"]
    assert [e["item"] for e in results["examples"]] == ["ben_afflek/ben_afflek_0005.jpg"]
    assert [(c["scale"], c["verification"]["n_pairs"], c["identity"]["n"]) for c in results["conditions"]] == [
        (None, 4, 6), (8, 4, 4)]
    probes = sorted({line.split(",")[1] for line in broken_run[0].read_text().splitlines()[1:5]})
    assert sorted(results["conditions"][1]["identity"]["per_item"]) == probes  # what breakdown reads
    record = RunRecord.from_json(results)
    assert json.dumps(record.to_json()) == json.dumps(results)
    assert record.condition("none", 8).identity.n == 4 and record.condition("none", None).label == "clean"
    with pytest.raises(KeyError, match=r"no condition \(none, 16\); the run has \['clean', 'none x8'\]"):
        record.condition("none", 16)  # dropping the raise returned None


def test_a_record_without_stored_scores_gives_the_median_of_its_fold_thresholds():
    """Older records keep per-fold thresholds only; the key `"thresholds"` changed survived (every test's record
    stored scores), and would have refused such a record."""
    from restorever.api import threshold_from_results

    cond = {"restorer": "none", "degradation": None, "scale": None, "recognizer": "dlib",
            "verification": {"thresholds": [-0.7, -0.5, None, -0.6]}}
    assert threshold_from_results({"conditions": [cond]}) == -0.6  # median of the three found
    # neither scores nor thresholds: refused (dropping the raise returned the median of nothing, nan)
    cond["verification"]["thresholds"] = [None]
    with pytest.raises(RestoreverError, match=r"the given record: the condition \(none, scale=None\) stores no "
                                              r"scores or thresholds"):
        threshold_from_results({"conditions": [cond]})


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_item_goes_to_exactly_one_rank_in_order(world):
    from restorever.pipeline.distributed import DistInfo, shard

    for n in range(10):
        items = [f"img{i}" for i in range(n)]
        shards = [shard(items, DistInfo(rank, world)) for rank in range(world)]
        assert sorted(sum(shards, [])) == sorted(items)  # each once
        for rank, part in enumerate(shards):
            assert part == [items[i] for i in range(rank, n, world)]  # every world-th, in list order
        assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced


def test_rank_and_world_come_from_torchrun_variables(monkeypatch):
    """torchrun sets all three; a launcher that sets WORLD_SIZE and RANK only gets local rank 0 (the default "0"
    changed survived), and WORLD_SIZE 1 or unset is a single process."""
    from restorever.pipeline.distributed import DistInfo, from_env

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert from_env() == DistInfo() and not from_env().enabled
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert from_env() == DistInfo(0, 2, 0) and from_env().enabled and from_env().is_main
    monkeypatch.setenv("RANK", "1")
    assert from_env() == DistInfo(1, 2, 0) and not from_env().is_main
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert from_env() == DistInfo(1, 2, 1)


def test_a_model_is_named_by_its_card_then_its_name_then_its_class():
    """The name in the messages about a model's wrong output: swapping card and model in `model_name` survived."""
    from types import SimpleNamespace

    from restorever.pipeline.stages import model_name

    class MyRestorer:
        pass

    mine = MyRestorer()
    assert model_name(mine) == "MyRestorer"
    mine.name = "sharpen"
    assert model_name(mine) == "sharpen"
    mine.card = SimpleNamespace(name="codeformer")
    assert model_name(mine) == "codeformer"
    mine.card = SimpleNamespace(name="")
    assert model_name(mine) == "MyRestorer"  # an empty card name is no name


def test_the_estimate_adds_each_stage_cost_by_hand(broken_run, tmp_path):
    """Seconds per item from a hand-written costs.json: 6 photos to detect at 10 s, 6 clean embeddings at 20 s,
    4 probes at x8 degraded (1 s) and embedded (20 s) = 60 + 120 + 84 = 264 s, "4.4 min". With --align-on degraded
    each probe's degraded crop is detected too: + 4 x 10 s = 304 s, "5.1 min". The clean stage's name changed in
    `_estimate` survived (it then asked for a clean restore cost no run measures)."""
    pairs, data = broken_run[:2]
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "costs.json").write_text(json.dumps({"cpu|landmarks|mtcnn": 10, "cpu|embed|dlib": 20,
                                                  "cpu|degrade|difface-test": 1}))
    plan = _dry(pairs, data, cache, tmp_path / "o")
    assert "estimated time for what is missing: 4.4 min on cpu (from stage costs" in plan, plan
    plan = _dry(pairs, data, cache, tmp_path / "o", "--align-on", "degraded")
    assert "estimated time for what is missing: 5.1 min on cpu (from stage costs" in plan, plan


def test_a_runtime_error_saying_out_of_memory_is_split_like_a_cuda_one():
    """Backends other than CUDA (MPS, older torch) raise a plain RuntimeError "... out of memory ..."; every test
    raised torch.cuda.OutOfMemoryError, so the message check changed survived. Other errors are raised at once."""
    import torch

    from restorever.pipeline.stages import call_with_backoff, is_out_of_memory

    calls = []

    def fn(index):
        calls.append(len(index))
        if len(index) > 2:
            raise RuntimeError("MPS backend out of memory (MPS allocated: 7 GB)")
        return torch.tensor(index) * 10

    assert call_with_backoff(fn, 5).tolist() == [0, 10, 20, 30, 40]  # in order, each item once
    assert calls == [5, 2, 3, 1, 2]
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory")) and not is_out_of_memory(ValueError("x"))

    def broken(index):
        calls.append(len(index))
        raise RuntimeError("expected scalar type Float but found Half")

    calls.clear()
    with pytest.raises(RuntimeError, match="scalar type"):
        call_with_backoff(broken, 4)
    assert calls == [4]

"""Round 19: items earlier rounds left alone that were still true and worth fixing (docs/reliability.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from restorever.cli import cli


def _write_run(path: Path, seed: int = 0) -> Path:
    """A synthetic verification run folder (tests/reports/conftest.py's record, written as a run writes it)."""
    from restorever.reports.results import write_run
    from tests.reports.conftest import make_record

    path.mkdir(parents=True)
    write_run(make_record(path, seed=seed), path)
    return path


def _labels(run: Path, out: Path) -> Path:
    """A ``person,cohort`` file putting every other person of ``run`` in cohort A, the rest in B."""
    record = json.loads((run / "results.json").read_text(encoding="utf-8"))
    people = sorted({p.split("/")[1] for p in record["pairs"]["a"] + record["pairs"]["b"]})
    out.write_text("person,cohort\n" + "".join(f"{p},{'AB'[i % 2]}\n" for i, p in enumerate(people)),
                   encoding="utf-8")
    return out


@pytest.mark.parametrize("command", ["breakdown", "compare"])
def test_a_negative_bootstrap_seed_names_its_option(tmp_path, command):
    """Round 18 left alone that restore's --seed takes negative numbers. Checking every seed option found worse:
    ``breakdown --seed -1`` and ``compare --bootstrap-seed -1`` ran up to numpy's generator and stopped with
    ``error: expected non-negative integer``, naming neither the option nor the range. Both now refuse it as
    degrade does (the range of a run's seed), before anything is read or written."""
    run = _write_run(tmp_path / "run")
    if command == "breakdown":
        args = ["breakdown", str(run), "--labels", str(_labels(run, tmp_path / "labels.csv")), "--seed", "-1"]
        written = run / "breakdown-cohort.json"
    else:
        args = ["compare", str(run), str(_write_run(tmp_path / "run2")), "--out", str(tmp_path / "cmp"),
                "--bootstrap-seed", "-1"]
        written = tmp_path / "cmp"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    option = "--seed" if command == "breakdown" else "--bootstrap-seed"
    assert f"Invalid value for '{option}'" in result.output and "0<=x<=9223372036854775807" in result.output, \
        result.output
    assert not written.exists()
    # a seed in the range still works (the same option, one above the refused value)
    ok = CliRunner().invoke(cli, args[:-1] + ["0"])
    assert ok.exit_code == 0, ok.output
    assert written.exists()


def _yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_shadowing_protocol_includes_the_file_it_shadows(tmp_path, monkeypatch):
    """Round 7 left alone that a user's ``lfw.yaml`` with ``include: lfw`` (the natural way to change one key of
    LFW) shadows the shipped file, so its include named itself: ``error: ...lfw.yaml: include 'lfw' forms a
    cycle``, a message that names no fix. The include of a file's own name now resolves to the next file of that
    name on the search path, the one it shadows: here two user folders, each changing one key, over the shipped
    file. The loader, the format lookup and ``validate --protocols`` share the rule."""
    from restorever import protocol_specs
    from restorever.errors import ProtocolError

    first = _yaml(tmp_path / "a" / "lfw.yaml", "include: lfw\nseed: 7\n")
    second = _yaml(tmp_path / "b" / "lfw.yaml", "include: lfw\ndescription: second copy\n")
    monkeypatch.setenv("RESTOREVER_PROTOCOL_PATH", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setattr(protocol_specs, "_WARNED_SHADOWS", set())
    shipped = protocol_specs.shadowed_protocols()["lfw"][-1]
    assert protocol_specs.shadowed_protocols()["lfw"] == [second, shipped]
    spec, path = protocol_specs.load_spec("lfw")
    assert path == first
    assert spec["seed"] == 7 and spec["description"] == "second copy"  # each file's own key
    assert spec["dataset"]["format"] == "lfw-pairs" and spec["dataset"]["pairs"] == "pairs.txt"  # the shipped rest
    assert spec["folds"] == 10 and spec["protocol"] == "lfw"
    assert protocol_specs.raw_format("lfw") == "lfw-pairs"
    result = CliRunner().invoke(cli, ["validate", "--protocols", "lfw"])
    assert result.exit_code == 0 and f"{first}: valid" in result.output, result.output
    # a file that includes its own name and shadows nothing is still a cycle
    _yaml(tmp_path / "a" / "mine.yaml", "include: mine\nprotocol: mine\n")
    with pytest.raises(ProtocolError, match="forms a cycle"):
        protocol_specs.load_spec("mine")
    # the last file of a name may not include that name again (it would be itself)
    _yaml(tmp_path / "b" / "mine.yaml", "include: mine\nprotocol: mine\n")
    with pytest.raises(ProtocolError, match="forms a cycle"):
        protocol_specs.load_spec("mine")


def test_a_dry_run_after_a_run_counts_an_undecodable_image_as_failed_not_as_work(tmp_path, faces_root):
    """Round 7 left alone that an undecodable image stays "to compute" in a dry run: its failure is not cached (it
    is retried on every run), and ``--dry-run`` counted only files it could not read as failed. So after a finished
    run with ``--on-error skip`` the plan still said "1 to detect" and a clean embedding "to compute", and never
    "nothing is missing": a user checking whether a cache is complete could not tell. The plan now reads each
    image's header as well (no pixels decoded): a file that is not an image, or of a size the reader refuses, is
    counted with the unreadable ones and as no work."""
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    faces = ["madonna/madonna_0001.jpg", "madonna/madonna_0002.jpg", "elton_john/elton_john_0001.jpg"]
    for face in faces:
        (data / Path(face).name).write_bytes((faces_root / face).read_bytes())
    (data / "notes.jpg").write_text("not an image\n", encoding="utf-8")  # a text file under an image name
    Image.new("RGB", (8, 8), (90, 90, 90)).save(data / "tiny.png")  # an image below the smallest side allowed
    (data / "pairs.csv").write_text("madonna_0001.jpg,madonna_0002.jpg,1\nmadonna_0001.jpg,elton_john_0001.jpg,0\n"
                                    "notes.jpg,madonna_0002.jpg,1\ntiny.png,elton_john_0001.jpg,0\n", encoding="utf-8")
    args = ["eval", "--protocol", "pairs-csv", "--pairs", str(data / "pairs.csv"), "--data-root", str(data),
            "--recognizer", "dlib", "--restorer", "none", "--scales", "8", "--on-error", "skip",
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    run = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    record = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert sorted(f["image"] for f in record["protocol"]["failed_images"]) == ["notes.jpg", "tiny.png"]
    plan = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "unreadable or not an image now: 2; no face found (cached): 0" in plan.output, plan.output
    assert "landmarks (mtcnn): 3 cached, 0 to detect" in plan.output, plan.output
    lines = {ln.split()[0]: ln for ln in plan.output.splitlines() if ln.startswith("  ")}
    assert lines["clean"].split()[1:] == ["3", "cached,", "0", "to", "compute"], plan.output
    assert "nothing is missing" in plan.output, plan.output


def test_a_log_gets_the_last_progress_line_once(monkeypatch):
    """Round 18's second review left alone that a progress line's final 100 % could appear twice in a log: off a
    terminal each redraw is a whole line, and a bar whose last step was drawn is drawn again when it closes. A line
    equal to the one before it is no longer written (the step lines stay)."""
    import io
    import sys

    from restorever import progress

    log = io.StringIO()  # not a terminal, as a batch job's stderr
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)  # every step is "a minute later"
    assert list(progress.progress_bar(range(3), 3, "landmarks", True)) == [0, 1, 2]
    lines = log.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines] == [f"landmarks: {i}/3 batch" for i in range(4)], lines

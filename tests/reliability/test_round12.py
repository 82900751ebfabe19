"""Round 12: `degrade` resumes, a refused `compare` leaves no folder, `restore --overwrite` leaves no stale output.
Real LFW faces and real MTCNN landmarks; interruptions simulated in-process (Ctrl-C) and by killing a process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from restorever.cli import cli

from .conftest import subprocess_env


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _degrade_args(lfw_root: Path, out: Path, *extra) -> list:
    return ["degrade", "--data-root", lfw_root, "--limit-pairs", "3", "--scales", "4,16", "--seed", "5",
            "--batch-size", "1", "--device", "cpu", "--out", out, *extra]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _count_writes(monkeypatch, fail_at: int | None = None) -> list:
    """Wrap degrade's PNG writer: count its calls, and raise KeyboardInterrupt (Ctrl-C) at call ``fail_at``."""
    from restorever.cli import stages

    real, calls = stages._write_png, []

    def write(path, array):
        calls.append(path)
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(path, array)

    monkeypatch.setattr(stages, "_write_png", write)
    return calls


def test_degrade_resumes_after_ctrl_c_and_gives_the_same_bytes(lfw_root, tmp_path, monkeypatch):
    """A rerun after an interruption redid every face. Now the PNGs recorded in degrade.json are kept, the rest
    are made, and the folder ends byte for byte as an uninterrupted run's (manifest.json and params.jsonl
    included); the stopped run leaves no manifest.json or params.jsonl (how a reader tells it is unfinished)."""
    ref = tmp_path / "ref"
    assert _invoke(*_degrade_args(lfw_root, ref)).exit_code == 0
    out = tmp_path / "run"
    _count_writes(monkeypatch, fail_at=5)  # face 1's three PNGs and face 2's clean one are written
    result = _invoke(*_degrade_args(lfw_root, out))
    assert result.exit_code == 130, result.output
    assert not (out / "manifest.json").exists() and not (out / "params.jsonl").exists()
    assert len(json.loads((out / "degrade.json").read_text())["inputs"]) == 4
    calls = _count_writes(monkeypatch)
    result = _invoke(*_degrade_args(lfw_root, out))
    assert result.exit_code == 0, result.output
    assert len(calls) == 6 and "kept 1 already degraded" in result.output  # faces 2 and 3, three PNGs each
    assert _tree(out) == _tree(ref)
    calls.clear()
    result = _invoke(*_degrade_args(lfw_root, out))  # a finished folder: nothing is made again
    assert result.exit_code == 0 and not calls and "kept 3" in result.output
    assert _tree(out) == _tree(ref)


KILL = """
import os, sys
from restorever.cli import cli, stages
from restorever.pipeline import restore_record
restore_record.SAVE_EVERY_S = 0.0   # save the record after every PNG, as a long run does every 30 s
real, calls = stages._write_png, []
def write(path, array):
    calls.append(path)
    if len(calls) == 5:
        os._exit(137)               # as kill -9: no cleanup, no finally
    return real(path, array)
stages._write_png = write
cli.main(sys.argv[1:])
"""


def test_degrade_resumes_after_kill_9(lfw_root, tmp_path, monkeypatch):
    """A process killed without cleanup (kill -9) between two PNGs: the rerun keeps the recorded ones, remakes the
    rest, and the folder equals an uninterrupted run's."""
    ref = tmp_path / "ref"
    assert _invoke(*_degrade_args(lfw_root, ref)).exit_code == 0
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILL, *map(str, _degrade_args(lfw_root, out))],
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr[-2000:]
    assert not (out / "manifest.json").exists() and (out / "x4").is_dir()
    calls = _count_writes(monkeypatch)
    result = _invoke(*_degrade_args(lfw_root, out))
    assert result.exit_code == 0, result.output
    assert len(calls) == 6 and "kept 1" in result.output
    assert _tree(out) == _tree(ref)


def test_degrade_remakes_a_damaged_png(lfw_root, tmp_path, monkeypatch):
    """A PNG truncated after the run is not trusted because it exists: its face is made again (a warning names
    it) and the file is restored byte for byte; the other faces are kept."""
    out = tmp_path / "run"
    assert _invoke(*_degrade_args(lfw_root, out)).exit_code == 0
    ref = _tree(out)
    damaged = sorted((out / "x16").rglob("*.png"))[1]
    damaged.write_bytes(damaged.read_bytes()[:100])
    calls = _count_writes(monkeypatch)
    result = _invoke(*_degrade_args(lfw_root, out))
    assert result.exit_code == 0, result.output
    assert len(calls) == 3 and "kept 2" in result.output
    assert _tree(out) == ref


def test_degrade_refuses_other_settings_and_overwrite_removes_only_its_own_stale_pngs(lfw_root, tmp_path,
                                                                                       monkeypatch):
    """Other settings are refused in one line (nothing changed); --overwrite makes the faces again, removes the
    replaced run's PNGs that it does not write only where they still hold the recorded bytes, and an
    interrupted overwrite leaves no manifest.json describing the old run."""
    out = tmp_path / "run"
    assert _invoke(*_degrade_args(lfw_root, out)).exit_code == 0
    before = _tree(out)
    result = _invoke(*_degrade_args(lfw_root, out, "--seed", "6"))
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "other settings (seed 5 -> 6" in result.output and "--overwrite" in result.output
    assert _tree(out) == before
    _count_writes(monkeypatch, fail_at=1)
    result = _invoke(*_degrade_args(lfw_root, out, "--seed", "6", "--overwrite"))
    assert result.exit_code == 130 and not (out / "manifest.json").exists()
    record = json.loads((out / "degrade.json").read_text())
    assert record["settings"]["seed"] == 6 and record["inputs"] == {}
    # the third face's outputs: x4 edited by hand (stays), clean and x16 as the first run wrote them (removed)
    from restorever.pipeline.evaluate import limit_pairs
    from restorever.protocol import load_protocol

    (third,) = set(json.loads(before["manifest.json"])["faces"]) - set(
        limit_pairs(load_protocol("lfw", data_root=lfw_root).pairs, 2).b)  # the face --limit-pairs 2 leaves out
    png = Path(third).with_suffix(".png")
    (out / "x4" / png).write_bytes(b"the user's own edit")
    (out / "x4" / "mine.png").write_bytes(b"a user's file")
    calls = _count_writes(monkeypatch)
    result = _invoke(*_degrade_args(lfw_root, out, "--seed", "6", "--limit-pairs", "2", "--overwrite"))
    assert result.exit_code == 0, result.output
    assert len(calls) == 6 and "removed 2 PNG(s) of the replaced run" in result.output
    assert not (out / "clean" / png).exists() and not (out / "x16" / png).exists()
    assert (out / "x4" / png).read_bytes() == b"the user's own edit" and (out / "x4" / "mine.png").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 6 and len(manifest["faces"]) == 2


def test_restore_overwrite_removes_only_its_own_unchanged_outputs(faces_root, tmp_path, caplog):
    """`restore --overwrite` with other settings and fewer inputs left the replaced run's outputs of the other
    inputs in the folder (a warning only), so `OUT/*.png` mixed two settings. Now each such output is removed
    and logged, only while it holds the bytes that run recorded: a file edited since, a user's own file and a
    name in a hand-edited record pointing outside the folder all stay."""
    import hashlib
    import logging

    photos = [faces_root / "madonna" / f"madonna_{n:04d}.jpg" for n in (1, 2, 3)]
    out = tmp_path / "out"
    result = _invoke("restore", *photos, "--restorer", "none", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    (out / "madonna_0003.png").write_bytes(b"edited by hand")
    (out / "mine.png").write_bytes(b"a user's file")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not restorever's")
    record = json.loads((out / "restore.json").read_text())
    record["inputs"]["../outside.png"] = {"input": "x.jpg", "sha256": "0" * 64,
                                          "output_sha256": hashlib.sha256(outside.read_bytes()).hexdigest()}
    (out / "restore.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="restorever"):
        result = _invoke("restore", photos[0], "--restorer", "none", "--seed", "1", "--device", "cpu",
                         "--overwrite", "--out", out)
    assert result.exit_code == 0, result.output
    assert "removed 1 output(s) of the replaced run" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["madonna_0001.png", "madonna_0003.png", "mine.png",
                                                     "restore.json"]
    assert outside.read_bytes() == b"not restorever's"
    assert f"{out / 'madonna_0002.png'}: removed" in caplog.text
    assert f"{out / 'madonna_0003.png'}: recorded by the replaced run but changed since" in caplog.text
    assert list(json.loads((out / "restore.json").read_text())["inputs"]) == ["madonna_0001.png"]

"""Round 22, sixteenth mutation pass (the remaining commands: degrade / restore, the group's exit statuses and error
lines, ident, attributes, compare, breakdown, report, validate): one test per mutant that survived every existing
test, each failing on its mutant (docs/reliability.md)."""
from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

from restorever.cli import cli


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _leaf_commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, path + (name,))
        else:
            yield path + (name,), command


def test_every_option_with_a_default_value_shows_it_in_its_help():
    """`--device` of degrade and restore lost its "[default: auto]" (show_default dropped) unseen: every option of
    every command that has a value when not given (a string or a number, not a flag) says which in --help, so the
    user can tell what a run without it does."""
    shown, hidden = 0, []
    for path, command in _leaf_commands():
        ctx = click.Context(command, info_name=" ".join(path))
        for option in command.params:
            if not isinstance(option, click.Option) or option.is_flag or option.count:
                continue
            if not isinstance(option.default, (str, int, float)) or option.default == "":
                continue
            record = option.get_help_record(ctx)
            if record and "[default:" in record[1]:
                shown += 1
            else:
                hidden.append(f"{' '.join(path)} {option.opts[0]}")
    assert not hidden, hidden
    assert shown > 40  # the walk found the commands' options


def test_restore_faces_largest_picks_the_face_with_the_largest_box(faces_root, tmp_path):
    """The area of `--faces largest` computed as (x2 - y1) * (y2 - y1) survived: the one test put both faces at the
    top of the photo, where that product still ranks them right. Here the large face sits low on the left and a
    small one high on the right, so only the true area (x2 - x1) * (y2 - y1) picks the large one."""
    photo = Image.new("RGB", (420, 420), (90, 90, 90))
    photo.paste(Image.open(faces_root / "elton_john" / "elton_john_0001.jpg").convert("RGB"), (0, 260))
    small = Image.open(faces_root / "madonna" / "madonna_0001.jpg").convert("RGB").resize((60, 60), Image.BICUBIC)
    photo.paste(small, (350, 0))
    photo.save(tmp_path / "group.png")
    result = _invoke("restore", tmp_path / "group.png", "--restorer", "none", "--device", "cpu", "--faces",
                     "largest", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "2 faces found; only the largest was restored" in result.output
    (face,) = json.loads((tmp_path / "o" / "restore.json").read_text())["inputs"]["group.png"]["faces"]
    x1, y1, x2, y2 = face["box"]
    centre = ((x1 + x2) / 2, (y1 + y2) / 2)
    assert centre[0] < 150 and centre[1] > 260 and (x2 - x1) * (y2 - y1) > 60 * 60  # elton's, not the 60 px one


def test_a_library_argument_is_named_by_the_commands_own_flag():
    """`cli_flag` replacing "X_" instead of "_" (an error on `batch_size` named `--batch_size`, a flag no command
    has) survived: every option whose flag is its argument's name with dashes must be named by that flag."""
    from restorever.cli import cli_flag

    checked = 0
    for _, command in _leaf_commands():
        for option in command.params:
            dashed = "--" + (option.name or "").replace("_", "-")
            if isinstance(option, click.Option) and "_" in option.name and dashed in option.opts:
                assert cli_flag(option.name) == dashed
                checked += 1
    assert checked > 20
    assert cli_flag("restorer_weights") == "--weights" and cli_flag("restorers") == "--restorer"


def test_an_error_inside_the_standard_library_points_at_the_line_that_called_it():
    """The standard library's folder left out of the installed paths (its `sysconfig` key renamed) survived: an
    error raised inside `json` was then reported as the user's own code at json/decoder.py. The walk must pass
    the library's frames and name the first frame outside them: here this file's line."""
    from restorever.cli import _user_code_frame

    try:
        json.loads("{")
    except ValueError as exc:
        where = _user_code_frame(exc)
    assert where is not None and where.startswith(__file__ + ":"), where


def test_a_warning_goes_to_stderr_as_one_line_and_stdout_keeps_only_the_output():
    """Warnings echoed to stdout (`err=True` dropped) survived: a script reading a command's output (`restorever
    validate RUN > log`, `restorever restorers | head`) would read warnings as output."""
    import warnings

    from restorever.cli import handle_errors

    @click.command("demo")
    @handle_errors
    def demo():
        warnings.warn("careful: something\nsecond line")
        click.echo("the output")

    result = CliRunner().invoke(demo, [])
    assert result.exit_code == 0, result.output
    assert result.stdout == "the output\n"
    assert result.stderr == "warning: careful: something\n"


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_an_interrupted_degrade_says_how_to_resume_and_the_rerun_keeps_what_it_finished(lfw_root, tmp_path,
                                                                                       monkeypatch, stop):
    """The resume hint of an interrupted `degrade` (its `_RESUME` entry renamed) was lost unseen: Ctrl-C (130) or
    SIGTERM (143, a scheduler's time limit) in the middle of writing must name OUT/degrade.json, leave no
    manifest.json (the folder does not look finished), and the rerun must keep the face it finished and end with
    the files an uninterrupted run writes."""
    import os
    import signal

    from restorever.cli import stages

    def args(out):
        return ["degrade", "--data-root", lfw_root, "--limit-pairs", "2", "--scales", "4", "--seed", "3",
                "--batch-size", "1", "--device", "cpu", "--out", out]

    assert _invoke(*args(tmp_path / "fresh")).exit_code == 0
    write, calls = stages._write_png, []

    def stopping(path, array):
        calls.append(path)
        if len(calls) == 3:  # the first face's clean and x4 PNGs are written, the second's are not
            if stop == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return write(path, array)

    monkeypatch.setattr(stages, "_write_png", stopping)
    out = tmp_path / "o"
    result = _invoke(*args(out))
    status, what = (130, "interrupted") if stop == "ctrl-c" else (143, "terminated (SIGTERM)")
    assert result.exit_code == status, result.output
    assert result.stderr == (f"{what}: the outputs finished are recorded in OUT/degrade.json; rerun the same "
                             f"command to resume\n")
    assert not (out / "manifest.json").exists() and len(json.loads((out / "degrade.json").read_text())) > 0
    monkeypatch.setattr(stages, "_write_png", write)
    result = _invoke(*args(out))
    assert result.exit_code == 0 and "kept 1 already degraded" in result.output, result.output
    fresh = {p.relative_to(tmp_path / "fresh"): p.read_bytes() for p in (tmp_path / "fresh").rglob("*.png")}
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.png")} == fresh
    assert (out / "params.jsonl").read_bytes() == (tmp_path / "fresh" / "params.jsonl").read_bytes()


def test_validate_without_a_run_folder_is_a_usage_error_not_success():
    """`restorever validate` with nothing to check exited 0, "valid", when its usage error was dropped: a batch
    job whose RUN_DIR variable came out empty (`restorever validate $RUN`) must fail, status 2, naming the fix."""
    result = _invoke("validate")
    assert result.exit_code == 2, result.output
    assert "give a RUN_DIR (or --protocols)" in result.stderr and result.stdout == ""


def _two_runs(root: Path, clean_shift: float = 0.0) -> list[Path]:
    """Two synthetic runs of the same pairs (the second's restorer renamed and rescored, as in test_compare), the
    second's clean score of pair 3 moved by ``clean_shift``."""
    import copy

    from restorever.reports.results import write_run

    from .reports.conftest import make_record
    from .reports.test_compare import _rename

    first = make_record(root, examples=0)
    second = _rename(make_record(root, examples=0), "vqfr-v2", "codeformer", 0.15)
    clean = next(c for c in second["conditions"] if c["restorer"] == "none" and c["scale"] is None)
    clean["scores"]["score"][3] += clean_shift
    dirs = []
    for name, record in (("a", first), ("b", second)):
        record["protocol"]["pairs_sha256"] = "ab" * 32
        write_run(copy.deepcopy(record), root / name)
        dirs.append(root / name)
    return dirs


def test_compare_names_every_file_it_wrote_on_stdout(tmp_path):
    """`compare`'s closing line dropped survived: a script that collects a comparison's outputs reads them from
    stdout. It must be one line naming each file written in OUT, and only those."""
    result = _invoke("compare", *_two_runs(tmp_path), "--out", tmp_path / "cmp", "--format", "png,svg")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote ") and result.stdout.count("\n") == 1
    named = {Path(p) for p in result.stdout[len("wrote "):].strip().split(", ")}
    assert named == {p for p in (tmp_path / "cmp").iterdir() if p.is_file()}
    assert {p.name for p in named} >= {"comparison.json", "comparison.md", "tables.csv", "tables.tex", "scales.png",
                                       "scales.svg"}


def test_compare_refuses_clean_scores_beyond_float_rounding_unless_told_the_tolerance(tmp_path):
    """`--score-tolerance`'s default 1e-6 made 1.000002 survived (the library's default was tested, the command's
    not): two runs whose clean scores differ by 0.001 (other weights, another preprocessing) are not paired, and
    the command must say so unless a larger tolerance is given."""
    dirs = _two_runs(tmp_path, clean_shift=1e-3)
    result = _invoke("compare", *dirs, "--out", tmp_path / "cmp")
    assert result.exit_code == 2 and "clean conditions disagree" in result.stderr, result.output
    assert not (tmp_path / "cmp").exists()
    result = _invoke("compare", *dirs, "--out", tmp_path / "cmp", "--score-tolerance", "2e-3")
    assert result.exit_code == 0, result.output


def test_ident_prints_its_tables_and_report_of_an_ident_run_says_what_it_skipped(lfw_root, tmp_path):
    """Two survivors on an identification run: `ident` no longer printing its tables, and `report` crashing (a
    KeyError, status 1) on the tables an identification run has none of (the `methods` key renamed). The tables
    printed are those of the results.json written; `report` must exit 0 and name the tables the library skipped."""
    from restorever.reports.html import build_report
    from restorever.reports.ident import ident_tables

    run = tmp_path / "ident"
    result = _invoke("ident", "--data-root", lfw_root, "--min-images", 100, "--max-probes-per-person", 2,
                     "--max-distractors", 5, "--no-progress", "--cache-dir", tmp_path / "cache", "--scales", 16,
                     "--out", run)
    assert result.exit_code == 0, result.output
    assert ident_tables(json.loads((run / "results.json").read_text())) in result.stdout
    result = _invoke("report", run, "--format", "png")
    assert result.exit_code == 0, result.output
    lib = build_report(run, html_path=tmp_path / "r.html", markdown_path=tmp_path / "r.md",
                       figures_dir=tmp_path / "f", formats=["png"], csv_path=tmp_path / "t.csv",
                       latex_path=tmp_path / "t.tex", methods_dir=tmp_path / "m")
    assert lib["skipped_tables"] and lib["methods"]
    assert f"tables.csv, tables.tex skipped: {lib['skipped_tables']}\n" in result.stdout


def test_run_ident_takes_the_ident_commands_defaults():
    """`run_ident`'s default `index="flat"` renamed survived (the command always passes its own): `eval` routes an
    identification protocol here and library callers leave options out, so each default of `run_ident` must be
    the `ident` option's default."""
    import inspect

    from restorever.cli.ident_cmd import ident_command, run_ident

    defaults = {n: p.default for n, p in inspect.signature(run_ident).parameters.items()}
    options = [o for o in ident_command.params if isinstance(o, click.Option) and o.name in defaults]
    assert len(options) > 25
    for option in options:
        given = option.default if isinstance(option.default, (str, int, float)) else None  # unset: None
        assert defaults[option.name] == (False if option.is_flag and given is None else given), option.name


def test_breakdown_given_a_file_for_its_run_folder_names_the_mistake(tmp_path):
    """`file_okay=False` of breakdown's RUN_DIR made True survived: `restorever breakdown RUN/results.json` (the
    file, not its folder) must be a usage error saying that a file was given where a folder belongs."""
    (tmp_path / "results.json").write_text("{}")
    result = _invoke("breakdown", tmp_path / "results.json", "--by", "gender")
    assert result.exit_code == 2 and "is a file" in result.stderr, result.output


def test_report_names_each_figure_it_skips_and_why(tmp_path):
    """`report`'s "figure NAME skipped: REASON" lines dropped survived (no tested run had a figure the report
    skips): a clean-only run has no degraded scales, and the command must name each figure the library skipped,
    with the library's reason, on stdout."""
    from restorever.reports.html import build_report
    from restorever.reports.results import write_run

    from .reports.conftest import make_record

    run = tmp_path / "clean"
    write_run(make_record(run, scales=(), examples=0), run)
    lib = build_report(run, html_path=tmp_path / "r.html", markdown_path=tmp_path / "r.md",
                       figures_dir=tmp_path / "f", formats=["png"], csv_path=tmp_path / "t.csv",
                       latex_path=tmp_path / "t.tex", methods_dir=tmp_path / "m")
    assert lib["skipped_figures"].get("scales") == "the run has no degraded scales"
    result = _invoke("report", run, "--format", "png")
    assert result.exit_code == 0, result.output
    for name, reason in lib["skipped_figures"].items():
        assert f"figure {name} skipped: {reason}\n" in result.stdout


def test_the_bootstrap_defaults_of_report_and_breakdown_are_the_librarys():
    """`report`'s `--bootstrap` default 2000 made 2001 survived (it acts only on a results.json written before
    the paired statistics were stored). The count a run stores (`write_run` calls `add_comparisons` with its
    default) must be the one `report` completes an older record with, so a record gets the same intervals either
    way; `breakdown`'s option likewise is its library function's default."""
    import inspect

    from restorever.cli.breakdown_cmd import breakdown_command
    from restorever.cli.report_cmd import report_command
    from restorever.reports.breakdown import breakdown
    from restorever.reports.compare import DEFAULT_N_BOOT
    from restorever.reports.html import build_report
    from restorever.reports.identity_stats import add_identity_statistics
    from restorever.reports.statistics import add_comparisons

    def option(command):
        return next(o.default for o in command.params if o.name == "n_boot")

    library = {f.__name__: inspect.signature(f).parameters["n_boot"].default
               for f in (build_report, add_comparisons, add_identity_statistics, breakdown)}
    assert set(library.values()) == {DEFAULT_N_BOOT}, library
    assert option(report_command) == option(breakdown_command) == DEFAULT_N_BOOT

"""The docs name only things that exist: every `restorever ...` command line in README.md, docs/*.md and the CLI's
own --help examples names a real command and real options; every `scripts/NAME.py --option` a real script and
argparse option; every relative link a file (and heading) that exists; every `tests/...::test` a real test.

A reader copies these lines; an option renamed in the code and not in the docs is a usage error for them."""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from restorever.cli import cli

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# `restorever` followed by words, then the rest of the command up to the end of its code span or line
COMMAND = re.compile(r"restorever((?: [a-z][a-z0-9_|-]*)+)([^`\n]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
# `restorever protocols | restorers | recognizers`, `restorever weights list | path NAME | verify NAME`: alternatives
# written with spaces, each replacing the last subcommand
SPACED_ALTERNATIVES = re.compile(r"(restorever(?: [a-z][a-z0-9_-]*)+)((?: [A-Z][A-Z_]*)*(?: +\| +[a-z][a-z0-9_-]*"
                                 r"(?: [A-Z][A-Z_]*)*)+)")
# an option and the value written after it (` ` or `=`)
OPTION_VALUE = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?:[ =]([^\s`\\]+))?")


def _joined(text: str) -> str:
    """Shell continuation lines and inline code spans that wrap in the prose joined into one line each, so a
    command's options on later lines count as its own."""
    text = re.sub(r"\\\n\s*", " ", text)
    return re.sub(r"(?<!`)`(?!`)[^`]*?(?<!`)`(?!`)", lambda m: m.group(0).replace("\n", " "), text)


def _command_problems(text: str, where: str) -> list[str]:
    """Unknown subcommands and options in the `restorever ...` command lines of `text`."""
    problems = []
    for line_no, line in enumerate(_joined(text).splitlines(), 1):
        line = SPACED_ALTERNATIVES.sub(
            lambda m: m.group(1) + "".join("|" + a for a in re.findall(r"\|\s+([a-z][a-z0-9_-]*)", m.group(2))), line)
        for match in COMMAND.finditer(line):
            words = match.group(1).split()
            firsts = words[0].split("|")  # `restorever plot roc|scales|grid` style alternatives
            if len(firsts) > 1 and any(first in cli.commands for first in firsts):
                problems += [f"{where}:{line_no}: restorever has no command {first}" for first in firsts
                             if first not in cli.commands]
            for first in firsts:
                if first not in cli.commands:
                    continue  # prose ("restorever runs for days"), not a command
                command, path = cli.commands[first], [first]
                rest = words[1:]
                while isinstance(command, click.Group) and rest:
                    names = rest[0].split("|")
                    unknown = [n for n in names if n not in command.commands]
                    if unknown:
                        problems.append(f"{where}:{line_no}: restorever {' '.join(path)} has no subcommand "
                                        f"{', '.join(unknown)}")
                    if unknown or len(names) > 1:
                        command = None
                        break
                    command, path, rest = command.commands[names[0]], path + [names[0]], rest[1:]
                if command is None or isinstance(command, click.Group):
                    continue
                known = {"-h", "--help"}
                for param in command.params:
                    known.update(param.opts)
                    known.update(param.secondary_opts)
                for option in OPTION.findall(match.group(0)):
                    if option not in known:
                        problems.append(f"{where}:{line_no}: restorever {' '.join(path)} has no option {option}")
                problems += _value_problems(command, match.group(0), f"{where}:{line_no}: restorever {' '.join(path)}")
    return problems


def _value_problems(command: click.Command, text: str, where: str) -> list[str]:
    """Values the docs give to a choice or number option that the option refuses (`--faces every`,
    `--min-face-size -1`); placeholders (`N`, `FILE`, `...`, `$VAR`) and `a|b` alternatives of a choice are fine."""
    params = {opt: p for p in command.params for opt in p.opts if isinstance(p, click.Option) and not p.is_flag}
    problems = []
    for option, value in OPTION_VALUE.findall(text):
        param = params.get(option)
        if (param is None or not value or value.startswith(("$", "<")) or re.match(r"-[^\d]", value)
                or value.isupper() or "..." in value):
            continue
        if isinstance(param.type, click.Choice):
            bad = [v for v in value.split("|") if v not in param.type.choices]
            if bad:
                problems.append(f"{where}: {option} {value}: not one of {', '.join(param.type.choices)}")
        elif isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
            try:
                param.type.convert(value, param, None)
            except click.BadParameter as error:
                problems.append(f"{where}: {option} {value}: {error.message}")
    return problems


def _walk(command: click.Command, path: list[str]):
    yield command, path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, path + [name])


def test_command_lines_in_the_docs_name_real_commands_and_options():
    problems = []
    for doc in DOCS:
        problems += _command_problems(doc.read_text(encoding="utf-8"), doc.relative_to(REPO).as_posix())
    assert not problems, "\n".join(problems)


def test_command_lines_in_the_cli_help_name_real_commands_and_options():
    problems = []
    for command, path in _walk(cli, []):
        texts = [command.epilog or "", command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            problems += _command_problems(text, f"restorever {' '.join(path)} --help")
    assert not problems, "\n".join(problems)


def test_the_checker_finds_a_wrong_option_and_subcommand():
    text = ("restorever eval --protocol lfw \\\n    --scale 8\n`restorever weights fetch vqfr-v2`\n"
            "restorever plot roc|curves x.json -o f.pdf\nrestorever runs for days: `restorever eval --protocol\n"
            "lfw --limit-pair 20` (a code span wrapped in the prose)\n")
    assert _command_problems(text, "t") == ["t:1: restorever eval has no option --scale",
                                            "t:2: restorever weights has no subcommand fetch",
                                            "t:3: restorever plot has no subcommand curves",
                                            "t:4: restorever eval has no option --limit-pair"]


def test_the_checker_reads_spaced_alternatives_and_option_values():
    text = ("restorever protocols | restorers | recognisers  # what exists\n"
            "restorever weights list | path NAME | fetch NAME | add NAME FILE\n"
            "`restorever restore photos/*.jpg --restorer none --faces every --min-face-size -1 --out r/`\n"
            "restorever degrade --side probe|both --limit-pairs N --batch-size 0 --out d/\n")
    assert _command_problems(text, "t") == [
        "t:1: restorever has no command recognisers",
        "t:2: restorever weights has no subcommand fetch",
        "t:3: restorever restore: --faces every: not one of center, largest, all",
        "t:3: restorever restore: --min-face-size -1: -1.0 is not in the range x>=0.",
        "t:4: restorever degrade: --batch-size 0: 0 is not in the range x>=1."]


def test_script_options_in_the_docs_exist():
    problems = []
    for doc in DOCS:
        text = _joined(doc.read_text(encoding="utf-8"))
        for match in re.finditer(r"scripts/(\w+\.(?:py|sh))((?: +--?[a-z][a-z0-9-]*(?: +[^\s`-][^\s`]*)?)*)", text):
            script = REPO / "scripts" / match.group(1)
            if not script.is_file():
                problems.append(f"{doc.name}: scripts/{match.group(1)} does not exist")
                continue
            source = script.read_text(encoding="utf-8")
            for option in OPTION.findall(match.group(2)):
                if f'"{option}"' not in source:
                    problems.append(f"{doc.name}: scripts/{match.group(1)} has no option {option}")
    assert not problems, "\n".join(problems)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", doc.read_text(encoding="utf-8"), re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_and_named_tests_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path) if path else doc
        if not linked.exists():
            problems.append(f"link {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            problems.append(f"link {target}: {linked.name} has no heading with that anchor")
    for path, name in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text):
        if not (REPO / path).is_file() or f"def {name}(" not in (REPO / path).read_text(encoding="utf-8"):
            problems.append(f"{path}::{name} does not exist")
    assert not problems, f"{doc.name}: " + "; ".join(problems)


def test_anchor_rule_matches_a_known_heading():
    # README links here; the heading has an apostrophe-free title with spaces and a hyphen-free slug
    assert "where-restorever-departs-from-the-official-restoration-code" in _anchors(REPO / "docs" / "architecture.md")
    assert _anchor("Clean LFW View 2 with the offline dlib recognizer (2026-11-24, 2-core CPU)") == \
        "clean-lfw-view-2-with-the-offline-dlib-recognizer-2026-11-24-2-core-cpu"


def _layer_block_problems(text: str, package: Path) -> list[str]:
    """Modules of `package` that docs/architecture.md's layer diagram (the code block whose lines start with a
    layer number) names neither by name nor under a `folder/*` entry."""
    block = re.search(r"```\n(\d  .*?)```", text, re.S)
    if block is None:
        return ["docs/architecture.md has no layer diagram"]
    words = set(re.findall(r"\w+", block.group(1)))
    folders = set(re.findall(r"(\w+)/\*", block.group(1)))
    problems = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if not parts or parts[0] == "__main__" or parts[0] in folders:
            continue
        if parts[-1] not in words:
            problems.append(f"{'/'.join(parts)}.py is in no layer of the diagram")
    return problems


def test_the_layer_diagram_places_every_module():
    """The diagram left out pipeline/routing.py (split from evaluate.py in round 11), pipeline/restore_record.py,
    reports/compare.py, breakdown.py, statistics.py, cache_dir.py, checkpoint_files.py and others."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    problems = _layer_block_problems(text, REPO / "restorever")
    assert not problems, "\n".join(problems)


def test_the_layer_check_finds_a_module_left_out(tmp_path):
    for name in ("cli/__init__.py", "cli/eval_cmd.py", "pipeline/__init__.py", "pipeline/routing.py", "jpeg.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    text = "```\n6  cli  restorever/cli/*\n4  pipeline  evaluate\n2  data  jpeg\n```\n"
    assert _layer_block_problems(text, tmp_path) == ["pipeline/routing.py is in no layer of the diagram"]


def test_modules_named_in_architecture_md_exist():
    """Every `name.py` / `folder/name.py` in docs/architecture.md's module table is a file of the package."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    files = {p.relative_to(REPO / "restorever").as_posix() for p in (REPO / "restorever").rglob("*.py")}
    missing, checked = [], 0
    for row in re.findall(r"^\| (`[^|]*`) \|", text, re.M):
        folder = ""
        for name in re.findall(r"`([\w/]+\.py)`", row):
            folder = name.rpartition("/")[0] or folder  # `formats/lfw_pairs.py`, `pairs_csv.py`: the same folder
            path = name if "/" in name else (f"{folder}/{name}" if folder else name)
            checked += 1
            if path not in files:
                missing.append(path)
    assert checked >= 30, f"docs/architecture.md: only {checked} modules found in the module table"
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_docs_name_every_place_the_cache_folder_can_be(monkeypatch, tmp_path):
    """README and docs/protocols.md gave the cache folder as `$RESTOREVER_HOME` or `~/.cache/restorever`; with
    `$XDG_CACHE_HOME` set (common on clusters) the weights and data are looked for under it instead."""
    from restorever.cache_dir import get_cache_dir

    monkeypatch.delenv("RESTOREVER_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert get_cache_dir() == tmp_path / "restorever"
    for doc in DOCS:
        for paragraph in doc.read_text(encoding="utf-8").split("\n\n"):
            if "~/.cache/restorever" in paragraph:
                assert "$XDG_CACHE_HOME" in paragraph, f"{doc.name}: {paragraph[:200]}"


def test_readme_measurements_state_date_and_machine():
    """Each measured-figures section of the README, and the groups row of its feature table, names the date and
    the machine of the measurement (the identification section and the breakdown figure named no machine or no
    date)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    measured = text.split("## Measured figures", 1)[1]
    headings = re.findall(r"^### (.*)$", measured, re.M)
    groups = [line for line in text.splitlines() if line.startswith("| groups |")]
    assert headings and groups
    for where in headings + [re.sub(r"\[[^]]*\]\([^)]*\)", "", g) for g in groups]:
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", where), f"README: no date in {where[:120]!r}"
        assert re.search(r"\b(CPU|GPU|H100|H200)\b", where), f"README: no machine in {where[:120]!r}"


def _section(doc: str, heading: str) -> str:
    """The text under a markdown heading up to the next heading of any level."""
    text = (REPO / doc).read_text(encoding="utf-8")
    assert heading in text, f"{doc}: no heading {heading!r}"
    body = re.sub(r"^```.*?^```", "", text.split(heading, 1)[1], flags=re.M | re.S)  # code comments are no headings
    return re.split(r"^#+ ", body, maxsplit=1, flags=re.M)[0]


def _documented_columns(text: str, fars) -> list[str]:
    """Backticked column names of a list such as architecture.md's, with `<far>` expanded per FAR; words that name
    no column (`none`, `compare`, the FAR values themselves) are dropped."""
    out: list[str] = []
    for token in re.findall(r"`([a-z][a-z0-9_.<>]*)`", text):
        if token in ("none", "compare") or token in fars:
            continue
        out.extend(token.replace("<far>", far) for far in fars) if "<far>" in token else out.append(token)
    return out


def test_architecture_md_lists_every_tables_csv_column():
    """The column list researchers load tables.csv by is the header `report` writes, no more, no fewer (the README
    summarised an older header: no cosine interval, no identity or AUC/TAR@FAR differences against none)."""
    from restorever.reports.tables import FARS, to_csv

    header = to_csv([]).splitlines()[0].split(",")
    documented = _documented_columns(_section("docs/architecture.md", "### The columns of tables.csv"), FARS)
    assert sorted(documented) == sorted(header), (set(documented) ^ set(header))
    assert len(documented) == len(header)
    assert "architecture.md#the-columns-of-tablescsv" in (REPO / "README.md").read_text(encoding="utf-8")

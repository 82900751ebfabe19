"""The wheel ships every subpackage and data file the code imports (a non-editable install has nothing else)."""
from __future__ import annotations

import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return parser


def _listed(parser: configparser.ConfigParser, option: str) -> list[str]:
    return [line.strip() for line in parser.get("options", option).splitlines() if line.strip()]


def test_every_package_directory_is_listed_in_setup_cfg() -> None:
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "restorever").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    listed = set(_listed(_setup_cfg(), "packages"))
    missing = sorted(on_disk - listed)
    assert not missing, f"setup.cfg [options] packages lacks {missing}: the wheel would not ship them"
    for name in listed - on_disk:
        # Only mapped packages (package_dir) may live outside restorever/.
        mapped = dict(
            line.split("=", 1) for line in _listed(_setup_cfg(), "package_dir")
        )
        assert name.strip() in {key.strip() for key in mapped}, f"setup.cfg lists {name}, which does not exist"


def test_package_data_patterns_match_real_files() -> None:
    parser = _setup_cfg()
    package_dir = {
        key.strip(): value.strip()
        for key, value in (line.split("=", 1) for line in _listed(parser, "package_dir"))
    }
    for package, patterns in parser.items("options.package_data"):
        root = REPO / package_dir.get(package, package.replace(".", "/"))
        for pattern in patterns.split():
            assert list(root.glob(pattern)), f"package_data {package} = {pattern} matches no file under {root}"

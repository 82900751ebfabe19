"""CITATION.cff at the repository root: valid CFF 1.2.0 keys, the package's version and licence."""
from __future__ import annotations

import configparser

import yaml

import restorever
from tests.conftest import REPO


def test_citation_cff_matches_the_package():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert {"cff-version", "message", "title", "authors", "type", "version", "license"} <= set(cff)
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert str(cff["version"]) == restorever.__version__
    assert cff["authors"] == [{"name": "restorever contributors"}]
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert cff["license"] == setup["metadata"]["license"]
    assert "repository-code" not in cff  # the project states no repository URL; one must not be invented
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## Citing" in readme and "CITATION.cff" in readme.split("## Citing", 1)[1]

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
    assert setup["metadata"]["license_files"].strip() == "LICENSE"
    licence = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence and cff["license"] == "Apache-2.0"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## Citing" in readme and "CITATION.cff" in readme.split("## Citing", 1)[1]


# The parts of the Citation File Format 1.2.0 schema (citation-file-format/schema.json) that a software record of
# this kind touches: the required keys, the allowed top-level keys (the schema admits no others), and the author
# forms (a person or an entity, each with its own closed set of keys; an entity needs `name`).
_ENTITY_KEYS = ["name", "address", "alias", "city", "country", "date-end", "date-start", "email", "fax",
                "location", "orcid", "post-code", "region", "tel", "website"]
_PERSON_KEYS = ["family-names", "given-names", "name-particle", "name-suffix", "affiliation", "address", "alias",
                "city", "country", "email", "fax", "orcid", "post-code", "region", "tel", "website"]
_TEXT = {"type": "string", "minLength": 1}
CFF_1_2_0_SUBSET = {
    "type": "object",
    "required": ["authors", "cff-version", "message", "title"],
    "additionalProperties": False,
    "properties": {
        "abstract": _TEXT, "cff-version": {"type": "string", "pattern": r"^1\.2\.0$"}, "commit": _TEXT,
        "contact": {"type": "array"}, "date-released": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        "doi": _TEXT, "identifiers": {"type": "array"}, "license-url": _TEXT, "message": _TEXT,
        "preferred-citation": {"type": "object"}, "references": {"type": "array"}, "repository": _TEXT,
        "repository-artifact": _TEXT, "repository-code": _TEXT, "title": _TEXT,
        "type": {"enum": ["software", "dataset"]}, "url": _TEXT,
        "version": {"anyOf": [_TEXT, {"type": "number"}]},
        "keywords": {"type": "array", "minItems": 1, "items": _TEXT},
        "license": {"anyOf": [{"type": "string", "pattern": r"^[A-Za-z0-9.+-]+$"},
                              {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
        "authors": {"type": "array", "minItems": 1, "items": {"anyOf": [
            {"type": "object", "additionalProperties": False, "minProperties": 1,
             "properties": {k: _TEXT for k in _PERSON_KEYS}},
            {"type": "object", "additionalProperties": False, "required": ["name"],
             "properties": {k: _TEXT for k in _ENTITY_KEYS}}]}},
    },
}


def test_citation_cff_satisfies_the_cff_1_2_0_schema():
    """cffconvert is not installed here: the file is checked against the CFF 1.2.0 schema's rules for its keys
    (a misspelt key such as `repository_code` or an author given as a plain string is refused by that schema)."""
    import jsonschema

    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    jsonschema.validate(cff, CFF_1_2_0_SUBSET)
    for bad in ({**cff, "repository_code": "x"}, {**cff, "authors": ["restorever contributors"]},
                {k: v for k, v in cff.items() if k != "message"}, {**cff, "type": "library"},
                {**cff, "authors": [{"name": "x", "given-names": "y"}]}):
        assert list(jsonschema.Draft7Validator(CFF_1_2_0_SUBSET).iter_errors(bad)), bad

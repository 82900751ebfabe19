"""scripts/lfw_age_labels.py: the image-level LFW age bands it writes for ``restorever breakdown --labels``, on the
real attribute file (counts as documented in docs/attributes.md) and read back by the labels parser."""
from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

from restorever.reports.group_labels import parse_labels_csv, resolve_labels

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "lfw_age_labels.py"


def _script():
    spec = importlib.util.spec_from_file_location("lfw_age_labels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lfw_age_labels_counts_and_format(lfw_root, tmp_path):
    out = tmp_path / "age.csv"
    assert _script().main(["--data-root", str(lfw_root), "--out", str(out)]) == 0
    labels = parse_labels_csv(out.read_text(), source=str(out))
    assert (labels.key, labels.name) == ("item", "age_band")
    assert Counter(labels.groups.values()) == {"adult": 1960, "old": 1039}
    people = {}
    for item, band in labels.groups.items():
        people.setdefault(item.split("/")[1], set()).add(band)
    assert len(people) == 62 and sum(len(b) == 2 for b in people.values()) == 47
    # Alejandro_Toledo_0002: Senior -0.62 -> adult (first data rows of the TSV); ids as `eval --protocol lfw` has them
    assert labels.groups["lfw-deepfunneled/Alejandro_Toledo/Alejandro_Toledo_0002.jpg"] == "adult"
    assert all((lfw_root / item).is_file() for item in list(labels.groups)[:50])
    record = {"pairs": {"a": ["lfw-deepfunneled/Alejandro_Toledo/Alejandro_Toledo_0002.jpg"],
                        "b": ["lfw-deepfunneled/Zed/Zed_0001.jpg"]}}
    classes, info = resolve_labels(labels, record)
    assert classes == ["adult", "old"] and info["unknown"] == 2998


def test_missing_data_root_is_one_line(tmp_path, capsys):
    assert _script().main(["--data-root", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "lfw_attributes_62people.tsv not found" in capsys.readouterr().err

"""Age groups, the concatenated attribute layout, and the LFW label files (real files from ../shared)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.stats import norm

from restorever.attributes.groups import AgeGroups, AttributeSchema, kumar_age_years
from restorever.attributes.labels import (image_key, label_arrays, parse_gender_lists, parse_kumar_ages, person_of,
                                          read_gender_lists, read_kumar_ages)
from restorever.errors import ProtocolError


def test_age_group_boundaries():
    g = AgeGroups()
    ages = [0, 12.99, 13, 19.5, 20, 59.99, 60, 101]
    assert g.index(ages).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [g.names[i] for i in g.index([5, 15, 40, 70])] == ["child", "teenager", "adult", "old"]
    assert g.allowed(2, 1) == (1, 2, 3) and g.allowed(0, 1) == (0, 1) and g.allowed(3, 0) == (3,)


def test_age_groups_are_configurable_and_checked():
    g = AgeGroups.parse("15,25,65")
    assert g.names == ("child", "teenager", "adult", "old") and g.index(24.9) == 1
    g2 = AgeGroups.parse("30", "young,older")
    assert g2.n == 2 and g2.index([29, 30]).tolist() == [0, 1]
    assert AgeGroups.parse("10,50").names == ("0-9", "10-49", "50+")
    for bad in ("20,13", "0,10", "13,13"):
        with pytest.raises(ValueError):
            AgeGroups.parse(bad)
    with pytest.raises(ValueError, match="names"):
        AgeGroups((13.0,), ("a", "b", "c"))


def test_gaussian_and_distribution_group_probabilities():
    g = AgeGroups()
    mean = np.array([5.0, 18.0, 35.0, 61.0])
    p = g.from_gaussian(mean, 6.0)
    edges = np.array([-np.inf, 13, 20, 60, np.inf])
    reference = np.diff(norm.cdf((edges[None, :] - mean[:, None]) / 6.0), axis=1)
    np.testing.assert_allclose(p, reference, atol=1e-12)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert g.from_gaussian(mean, 0).argmax(1).tolist() == [0, 1, 2, 3]
    ages = np.arange(0, 81)
    dist = np.zeros((1, ages.size))
    dist[0, [10, 15, 30, 70]] = [0.1, 0.2, 0.3, 0.4]
    np.testing.assert_allclose(g.from_distribution(ages, dist), [[0.1, 0.2, 0.3, 0.4]])


def test_schema_concat_split_roundtrip():
    s = AttributeSchema()
    assert s.sizes == {"gender": 2, "age": 4} and s.width == 6
    probs = {"gender": np.array([[0.3, 0.7]]), "age": np.array([[0.1, 0.2, 0.3, 0.4]])}
    vec = s.concat(probs)
    assert vec.tolist() == [[0.3, 0.7, 0.1, 0.2, 0.3, 0.4]]
    back = s.split(vec)
    assert all(np.array_equal(back[a], probs[a]) for a in probs)
    assert AttributeSchema.from_dict(s.to_dict()) == s


def test_image_keys():
    assert image_key("lfw-deepfunneled/George_W_Bush/George_W_Bush_0012.jpg") == "George_W_Bush_0012"
    assert person_of("lfw/Roh_Moo-hyun/Roh_Moo-hyun_0003.jpg") == "Roh_Moo-hyun"


def test_gender_lists_real_files(lfw_root):
    labels = read_gender_lists(lfw_root / "gender" / "male_names.txt", lfw_root / "gender" / "female_names.txt")
    male = (lfw_root / "gender" / "male_names.txt").read_bytes()
    assert b"\r\n" in male  # CRLF, as documented
    _, ambiguous = parse_gender_lists(male.decode(), (lfw_root / "gender" / "female_names.txt").read_text())
    assert ambiguous == {"Allison_Searing_0001", "Claudia_Coslovich_0001", "Elizabeth_Hill_0001",
                         "Erika_Reyes_0001", "Tatiana_Shchegoleva_0001"}
    assert len(labels) == 13229 - 5
    assert labels["George_W_Bush_0001"] == 1 and labels["Angelina_Jolie_0001"] == 0
    assert "Erika_Reyes_0001" not in labels
    arrays = label_arrays(["lfw/Angelina_Jolie/Angelina_Jolie_0001.jpg", "x/Nobody_0001.jpg"], {"gender": labels})
    assert arrays["gender"].tolist() == [0, -1]


def test_kumar_age_rule_real_file(lfw_root):
    path = lfw_root / "attributes" / "lfw_attributes_62people.tsv"
    ages = read_kumar_ages(path, AgeGroups())
    rows = list(csv.DictReader(path.open(), delimiter="\t"))
    assert len(ages) == len(rows) == 2999
    for row in rows[::97]:  # the rule, re-derived from the raw column
        key = f"{row['person']}_{int(row['imagenum']):04d}"
        assert ages[key] == (3 if float(row["Senior"]) > 0 else 2), key
    assert set(ages.values()) == {2, 3}  # no child/teenager labels from this file (documented)
    sharon = [v for k, v in ages.items() if k.startswith("Ariel_Sharon_")]
    assert np.mean(np.array(sharon) == 3) > 0.9
    coarse = read_kumar_ages(path, AgeGroups((50.0,), ("under50", "50plus")))
    assert all(coarse[k] == (1 if v == 3 else 0) for k, v in ages.items())
    assert kumar_age_years([0.5, -0.1, 0.0]).tolist() == [65.0, 40.0, 40.0]


def test_kumar_parser_errors():
    with pytest.raises(ProtocolError, match="header"):
        parse_kumar_ages("a\tb\n", AgeGroups())
    with pytest.raises(ProtocolError, match=":2:"):
        parse_kumar_ages("person\timagenum\tSenior\nX\tone\t0.3\n", AgeGroups())


def test_kumar_scores_that_are_not_numbers_give_no_age_label(caplog):
    """A missing score written as NaN compares false with 0 and used to become an "adult" label."""
    text = "person\timagenum\tSenior\nA_B\t1\tnan\nA_B\t2\t0.5\nA_B\t3\t-0.5\nC_D\t1\tinf\n"
    with caplog.at_level("WARNING"):
        ages = parse_kumar_ages(text, AgeGroups(), source="ages.tsv")
    assert ages == {"A_B_0002": 3, "A_B_0003": 2}
    assert "ages.tsv: 2 image(s) have no finite Senior score" in caplog.text and "A_B_0001 (line 2)" in caplog.text

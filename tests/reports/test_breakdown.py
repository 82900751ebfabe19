"""``restorever breakdown``: per-group identity and verification, against hand-computed numbers, scikit-learn and a
direct k-fold computation, plus one real run (MTCNN + dlib on LFW) through the command line."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.metrics.verification import best_threshold, verification_report
from restorever.reports.breakdown import (MAX_FIGURE_GROUPS, MIXED, UNLABELLED, BreakdownError, breakdown,
                                          breakdown_markdown, check_record, load_person_groups, pair_groups,
                                          person_groups, plot_breakdown, verification_by_group, write_breakdown)
from restorever.reports.group_labels import parse_labels_csv, read_labels_csv, resolve_labels

from .conftest import make_record

GROUPS = {"A": "female", "B": "female", "C": "male"}
CLASSES = ("female", "male")


def _img(name: str) -> str:
    person, n = name[0], int(name[1:])
    return f"lfw-deepfunneled/{person}/{person}_{n:04d}.jpg"


def tiny_record() -> dict:
    """8 pairs in 2 folds; people A, B female and C male. Thresholds by hand: fold 0 gets 0.4 (from fold 1's
    scores), fold 1 gets 0.2."""
    rows = [("A1", "A2", 1, 0, 0.9), ("C1", "C2", 1, 0, 0.3), ("A3", "B1", 0, 0, 0.5), ("A4", "C3", 0, 0, 0.2),
            ("B2", "B3", 1, 1, 0.8), ("C4", "C5", 1, 1, 0.6), ("A5", "B4", 0, 1, 0.4), ("B5", "C6", 0, 1, 0.7)]
    a, b = [_img(r[0]) for r in rows], [_img(r[1]) for r in rows]
    same, fold, score = (np.array([r[i] for r in rows]) for i in (2, 3, 4))
    probe_cos = {"A2": 0.9, "B1": 0.7, "B3": 0.8, "B4": 0.6, "C2": 0.5, "C3": 0.6, "C5": 0.4, "C6": 0.5}
    scores = {"same": same.tolist(), "fold": fold.tolist(), "score": score.tolist()}
    clean = {"restorer": "none", "scale": None, "recognizer": "dlib", "scores": scores,
             "verification": verification_report(same, score, fold),
             "identity": {"per_item": {i: 1.0 for i in a + b}}}
    degraded = {"restorer": "none", "scale": 8, "recognizer": "dlib", "scores": scores,
                "verification": verification_report(same, score, fold),
                "identity": {"per_item": {_img(k): v for k, v in probe_cos.items()}}}
    return {"config": {"protocol": "lfw", "seed": 0}, "pairs": {"a": a, "b": b}, "conditions": [clean, degraded]}


def test_hand_computed_verification_by_group():
    rec = tiny_record()
    pg = pair_groups(rec["pairs"]["a"], rec["pairs"]["b"], GROUPS)
    assert pg.tolist() == ["female", "male", "female", MIXED, "female", "male", "female", MIXED]
    thresholds, ver = verification_by_group(rec["conditions"][1]["scores"], pg, [*CLASSES, UNLABELLED])
    assert thresholds == [0.4, 0.2]
    # female: A1-A2 and B2-B3 accepted, A3-B1 (0.5 > 0.4) and A5-B4 (0.4 > 0.2) falsely accepted
    assert ver["female"] == {"n_pairs": 4, "n_genuine": 2, "n_impostor": 2, "accuracy": 0.5, "fnmr": 0.0,
                             "fmr": 1.0, "auc": 1.0}
    # male: C1-C2 (0.3 <= 0.4) rejected, C4-C5 accepted; no male impostor pair
    assert ver["male"] == {"n_pairs": 2, "n_genuine": 2, "n_impostor": 0, "accuracy": 0.5, "fnmr": 0.5,
                           "fmr": None, "auc": None}
    # B5-C6 (0.7 > 0.2) accepted, A4-C3 (0.2) rejected; person labels put no genuine pair in mixed
    assert ver[MIXED] == {"n_impostor": 2, "fmr": 0.5, "n_genuine": 0, "fnmr": None}
    assert ver[UNLABELLED]["n_pairs"] == 0


def test_hand_computed_identity_and_difference():
    res = breakdown(tiny_record(), GROUPS, CLASSES, reference="male", n_boot=2000)
    clean, x8 = res["conditions"]
    assert clean["groups"]["female"]["identity"]["mean"] == 1.0
    assert clean["groups"]["female"]["identity"]["n_probes"] == 4  # probes only, not the gallery images
    f, m = x8["groups"]["female"]["identity"], x8["groups"]["male"]["identity"]
    assert f["mean"] == pytest.approx(0.75) and f["n_probes"] == 4 and f["n_people"] == 2
    # two people: a replicate is A,A (0.9), B,B (0.7) or A,B (0.75), each of the first two with probability 1/4
    assert (f["ci_low"], f["ci_high"]) == pytest.approx((0.7, 0.9))
    # male is one person (C): resampling them repeats their mean, so there is no interval rather than [0.5, 0.5]
    assert m["mean"] == pytest.approx(0.5) and m["n_people"] == 1 and m["ci_low"] is None and m["ci_high"] is None
    d = x8["difference"]["female"]
    assert d["minus"] == "male"
    assert d["difference"] == pytest.approx((1 - 0.75) - (1 - 0.5))
    assert d["ci_low"] is None and d["ci_high"] is None  # not female's spread alone, presented as the difference's
    assert clean["difference"] == {}
    assert x8["groups"][UNLABELLED]["identity"]["n_probes"] == 0
    assert "0.5000 [no CI: 1 person]" in breakdown_markdown(res)


def test_hand_computed_difference_interval_two_people_per_group():
    rec = tiny_record()
    rec["conditions"][1]["identity"]["per_item"][_img("D1")] = 0.7  # a second male person, probe only
    res = breakdown(rec, {**GROUPS, "D": "male"}, CLASSES, reference="male", n_boot=2000)
    m, d = res["conditions"][1]["groups"]["male"]["identity"], res["conditions"][1]["difference"]["female"]
    # male replicates: C,C 0.5 and D,D 0.7 (1/4 each), C,D (4 * 0.5 + 0.7) / 5 = 0.54 (1/2)
    assert (m["mean"], m["n_people"]) == (pytest.approx(0.54), 2) and (m["ci_low"], m["ci_high"]) == pytest.approx(
        (0.5, 0.7))
    # female - male drop = male cos - female cos: extremes 0.5 - 0.9 and 0.7 - 0.7, each with probability 1/16
    assert d["difference"] == pytest.approx(0.54 - 0.75)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((-0.4, 0.0), abs=1e-12)


def _parity_groups(record: dict) -> dict[str, str]:
    people = {Path(i).parent.name for i in record["pairs"]["a"] + record["pairs"]["b"]}
    return {p: CLASSES[int(p[-1]) % 2] for p in people if not p.endswith("3")}  # people *3 unlabelled


def test_group_auc_matches_sklearn(tmp_path):
    from sklearn.metrics import roc_auc_score

    rec = make_record(tmp_path)
    groups = _parity_groups(rec)
    pg = pair_groups(rec["pairs"]["a"], rec["pairs"]["b"], groups)
    res = breakdown(rec, groups, CLASSES, n_boot=200)
    for cond, out in zip(rec["conditions"], res["conditions"]):
        same, score = np.array(cond["scores"]["same"]), np.array(cond["scores"]["score"])
        for g in (*CLASSES, UNLABELLED):
            m = pg == g
            if len(set(same[m])) == 2:
                assert out["groups"][g]["verification"]["auc"] == pytest.approx(roc_auc_score(same[m], score[m]),
                                                                                 abs=1e-12)


def test_group_accuracy_uses_thresholds_from_all_pairs(tmp_path):
    rec = make_record(tmp_path)
    groups = _parity_groups(rec)
    pg = pair_groups(rec["pairs"]["a"], rec["pairs"]["b"], groups)
    res = breakdown(rec, groups, CLASSES, n_boot=200)
    for cond, out in zip(rec["conditions"], res["conditions"]):
        same, fold = np.array(cond["scores"]["same"]), np.array(cond["scores"]["fold"])
        score = np.array(cond["scores"]["score"])
        assert np.allclose(out["thresholds"], cond["verification"]["thresholds"])
        for g in CLASSES:
            correct = []
            for k in np.unique(fold):
                thr, _ = best_threshold(same[fold != k], score[fold != k])  # every other pair, all groups
                m = (fold == k) & (pg == g)
                correct += ((score[m] > thr) == same[m]).tolist()
            assert out["groups"][g]["verification"]["accuracy"] == pytest.approx(np.mean(correct), abs=1e-12)


def test_person_groups_and_bad_records():
    groups, conflicting = person_groups({"Ann_0001": 0, "Ann_0002": 0, "Bob_0001": 1, "Kim_0001": 0, "Kim_0002": 1},
                                        CLASSES)
    assert groups == {"Ann": "female", "Bob": "male"} and conflicting == ["Kim"]
    rec = tiny_record()
    del rec["conditions"][1]["identity"]["per_item"]
    with pytest.raises(BreakdownError, match=r"none x8.*identity.per_item"):
        check_record(rec)
    rec = tiny_record()
    del rec["pairs"]
    with pytest.raises(BreakdownError, match="no pair ids"):
        check_record(rec)


def test_protocol_without_labels(tmp_path, lfw_root):
    from tests.conftest import REPO

    text = (REPO / "protocols" / "lfw.yaml").read_text()
    assert "labels:" in text  # the shipped verification protocol names the gender lists
    spec = tmp_path / "nolabels.yaml"
    spec.write_text("\n".join(line for line in text.splitlines()
                              if not line.startswith(("labels:", "  gender:", "  age:"))).replace("protocol: lfw",
                                                                                                   "protocol: nolab"))
    rec = tiny_record()
    rec["config"] = {"protocol": str(spec), "data_root": str(lfw_root)}
    with pytest.raises(BreakdownError, match=r"protocol nolab has no labels.gender section"):
        load_person_groups(rec, tmp_path, "gender")


def test_protocol_yaml_given_relative_to_the_start_folder(tmp_path, lfw_root, monkeypatch):
    # `restorever eval --protocol my.yaml --out run` from proj/, then `restorever breakdown proj/run` from elsewhere
    from tests.conftest import REPO

    proj = tmp_path / "proj"
    (proj / "run").mkdir(parents=True)
    (proj / "my.yaml").write_text((REPO / "protocols" / "lfw.yaml").read_text().replace("protocol: lfw",
                                                                                        "protocol: mine"))
    rec = tiny_record()
    rec["config"] = {"protocol": "my.yaml", "data_root": str(lfw_root), "out": "run"}
    monkeypatch.chdir(tmp_path)
    groups, classes, info = load_person_groups(rec, proj / "run", "gender")
    assert info["protocol"] == "mine" and classes == ["female", "male"]
    assert groups["Aaron_Peirsol"] == "male" and groups["Serena_Williams"] == "female"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, lfw_root, shared_lfw_cache):
    tmp = tmp_path_factory.mktemp("breakdown")
    out = tmp / "run"
    result = CliRunner().invoke(cli, ["eval", "--protocol", "lfw", "--data-root", str(lfw_root), "--recognizer",
                                      "dlib", "--restorer", "none", "--scales", "8,16", "--limit-pairs", "60",
                                      "--cache-dir", str(shared_lfw_cache), "--out", str(out), "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_breakdown_cli_real_run(real_run, lfw_root, tmp_path):
    result = CliRunner().invoke(cli, ["breakdown", str(real_run), "--by", "gender", "--bootstrap", "500"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "| none x16 | female − male |" in result.output
    res = json.loads((real_run / "breakdown-gender.json").read_text())
    assert (real_run / "breakdown-gender.md").read_text() in result.output
    assert (real_run / "figures" / "breakdown-gender.png").stat().st_size > 10_000
    record = json.loads((real_run / "results.json").read_text())
    male = {line.strip()[:-4].rsplit("_", 1)[0] for line in (lfw_root / "gender" / "male_names.txt").open()}
    for cond, out in zip(record["conditions"][1:], res["conditions"][1:]):
        cos = [v for i, v in cond["identity"]["per_item"].items() if Path(i).parent.name in male]
        assert out["groups"]["male"]["identity"]["n_probes"] == len(cos) > 20
        assert out["groups"]["male"]["identity"]["mean"] == pytest.approx(np.mean(cos))
        ident = out["groups"]["male"]["identity"]
        assert ident["ci_low"] <= ident["mean"] <= ident["ci_high"]
        n = sum(g["verification"]["n_pairs"] for g in out["groups"].values()) + out["mixed"]["n_impostor"]
        assert n == 60  # every pair is counted once
    # a run without per-probe identity: one line naming the fix, exit status 2
    broken = tmp_path / "broken"
    broken.mkdir()
    for c in record["conditions"]:
        c["identity"].pop("per_item")
    (broken / "results.json").write_text(json.dumps(record))
    result = CliRunner().invoke(cli, ["breakdown", str(broken)])
    assert result.exit_code == 2 and "no identity.per_item" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_images_not_named_after_their_folder_are_refused():
    # a pairs-csv layout alice/IMG_0001.jpg, bob/IMG_0002.jpg: read by file name, every image would be person "IMG"
    # (one person for the bootstrap, one label for all); the folders are the people
    rec = tiny_record()
    for side in ("a", "b"):
        rec["pairs"][side] = [i.replace("lfw-deepfunneled/", "photos/").replace(f"/{Path(i).stem[0]}_", "/IMG_")
                              for i in rec["pairs"][side]]
    assert rec["pairs"]["b"][0] == "photos/A/IMG_0002.jpg"
    with pytest.raises(BreakdownError, match=r"image photos/A/IMG_0001.jpg is in folder A but its name reads as "
                                             r"person IMG.*PERSON/PERSON_NNNN.jpg"):
        check_record(rec)
    check_record(tiny_record())  # LFW names: folder and name agree


# --- --labels FILE: the user's own groups, keyed by person (the image's folder) or by image id


def _labels(text: str, record: dict | None = None):
    labels = parse_labels_csv(text, source="labels.csv")
    classes, info = resolve_labels(labels, record or tiny_record())
    return labels, classes, info


def test_labels_csv_by_person_gives_the_hand_computed_breakdown(tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes("\ufeffperson,gender\r\nA,female\r\n# a comment\r\n\r\nB,female\r\nC,male\r\nA,female\r\n"
                     .encode("utf-8"))  # BOM, CRLF, a comment, a blank line, a repeated row with the same group
    labels = read_labels_csv(path)
    assert (labels.key, labels.name, labels.groups) == ("person", "gender", GROUPS)
    classes, info = resolve_labels(labels, tiny_record())
    assert classes == ["female", "male"] and info["key"] == "person" and info["unknown"] == 0
    res = breakdown(tiny_record(), labels.groups, classes, by="gender", reference="male", n_boot=2000, key="person")
    f = res["conditions"][1]["groups"]["female"]
    assert f["identity"]["mean"] == pytest.approx(0.75) and f["identity"]["n_people"] == 2
    assert (f["identity"]["ci_low"], f["identity"]["ci_high"]) == pytest.approx((0.7, 0.9))
    assert f["verification"] == {"n_pairs": 4, "n_genuine": 2, "n_impostor": 2, "accuracy": 0.5, "fnmr": 0.0,
                                 "fmr": 1.0, "auc": 1.0}
    assert res == breakdown(tiny_record(), GROUPS, CLASSES, reference="male", n_boot=2000)  # as the protocol lists


#: image-level labels of tiny_record's 16 images: y(oung) and o(ld) photos; B and C have images in both
ITEM_GROUPS = {**{_img(k): "y" for k in ("A1", "A2", "C1", "B1", "A3", "B2", "B3", "C4")},
               **{_img(k): "o" for k in ("C2", "A4", "C3", "C5", "A5", "B4", "B5", "C6")}}


def test_item_labels_hand_computed():
    text = "item,age\n" + "".join(f"{k},{g}\n" for k, g in ITEM_GROUPS.items())
    labels, classes, info = _labels(text)
    assert labels.key == "item" and classes == ["o", "y"] and info["rows"] == 16
    res = breakdown(tiny_record(), labels.groups, classes, by="age", n_boot=2000, key="item")
    x8 = res["conditions"][1]
    assert res["reference"] == "o"  # 5 old probes, 3 young
    y, o = x8["groups"]["y"], x8["groups"]["o"]
    # pairs by both images' groups, thresholds 0.4 (fold 0) and 0.2 (fold 1):
    # y: A1-A2 0.9 accepted, A3-B1 0.5 falsely accepted, B2-B3 0.8 accepted
    assert y["verification"] == {"n_pairs": 3, "n_genuine": 2, "n_impostor": 1, "accuracy": pytest.approx(2 / 3),
                                 "fnmr": 0.0, "fmr": 1.0, "auc": 1.0}
    # o: A4-C3 0.2 rejected, A5-B4 0.4 and B5-C6 0.7 falsely accepted
    assert o["verification"] == {"n_pairs": 3, "n_genuine": 0, "n_impostor": 3, "accuracy": pytest.approx(1 / 3),
                                 "fnmr": None, "fmr": pytest.approx(2 / 3), "auc": None}
    # the genuine pairs C1(y)-C2(o) (0.3 <= 0.4: missed) and C4(y)-C5(o) (0.6 > 0.2) are mixed
    assert x8["mixed"] == {"n_impostor": 0, "fmr": None, "n_genuine": 2, "fnmr": 0.5}
    assert "| none x8 | mixed | | | | 2/0 | | 50.0 | — | |" in breakdown_markdown(res)
    # identity per image; the clusters are still people: y = A2 .9 | B1 .7, B3 .8; o = B4 .6 | C .5 .6 .4 .5
    assert (y["identity"]["mean"], y["identity"]["n_probes"], y["identity"]["n_people"]) == (pytest.approx(0.8), 3, 2)
    assert (y["identity"]["ci_low"], y["identity"]["ci_high"]) == pytest.approx((0.75, 0.9))  # B,B / A,A
    assert (o["identity"]["mean"], o["identity"]["n_probes"], o["identity"]["n_people"]) == (pytest.approx(0.52), 5, 2)
    assert (o["identity"]["ci_low"], o["identity"]["ci_high"]) == pytest.approx((0.5, 0.6))  # C,C / B,B
    assert x8["difference"]["y"]["difference"] == pytest.approx((1 - 0.8) - (1 - 0.52))
    assert res["people_in_several_groups"] == 1  # B: probes B1, B3 young and B4 old
    assert res["labelled_items"] == {"o": 8, "y": 8} and res["labelled_people"] == {"o": 3, "y": 3}
    assert "own cluster" in res["bootstrap"]["resampled"]


def test_item_labels_say_beside_the_difference_interval_that_it_is_paired(tmp_path):
    # B has young probes (B1, B3) and an old one (B4): the y − o interval resamples the people of both groups
    # jointly, so B's probes move both means together; the JSON entry and the markdown table say so
    text = "item,age\n" + "".join(f"{k},{g}\n" for k, g in ITEM_GROUPS.items())
    labels, classes, _ = _labels(text)
    res = breakdown(tiny_record(), labels.groups, classes, by="age", n_boot=200, key="item")
    d = res["conditions"][1]["difference"]["y"]
    assert d["shared_people"] == 1 and "jointly (paired" in d["ci_note"] and d["ci_replicates"] <= 200
    assert "jointly" in res["bootstrap"]["resampled"]
    md = breakdown_markdown(res)
    row = next(line for line in md.splitlines() if line.startswith("| none x8 | y − o |"))
    assert row.endswith("]* |")
    assert "Up to 1 people have probes in both groups of the difference; such an interval resamples the people " \
           "of both groups jointly" in md
    # person labels cannot share people: no key, no note (the --by gender output is unchanged)
    res = breakdown(tiny_record(), GROUPS, CLASSES, n_boot=200)
    diffs = res["conditions"][1]["difference"].values()
    assert diffs and not any("shared_people" in d for d in diffs)
    assert "Up to" not in breakdown_markdown(res)


def test_labels_for_a_pairs_csv_layout():
    # alice/IMG_0001.jpg: --by refuses it (the lists name files), a CSV keyed by folder takes it
    rec = tiny_record()
    for side in ("a", "b"):
        rec["pairs"][side] = [i.replace("lfw-deepfunneled/", "").replace(f"/{Path(i).stem[0]}_", "/IMG_")
                              for i in rec["pairs"][side]]
    for c in rec["conditions"]:
        c["identity"]["per_item"] = {k.replace("lfw-deepfunneled/", "").replace(f"/{Path(k).stem[0]}_", "/IMG_"): v
                                     for k, v in c["identity"]["per_item"].items()}
    assert rec["pairs"]["b"][0] == "A/IMG_0002.jpg"
    with pytest.raises(BreakdownError, match="--labels FILE"):
        check_record(rec)
    labels, classes, _ = _labels("person,gender\nA,female\nB,female\nC,male\n", rec)
    res = breakdown(rec, labels.groups, classes, reference="male", n_boot=2000, key="person")
    ref = breakdown(tiny_record(), GROUPS, CLASSES, reference="male", n_boot=2000)
    assert [c["groups"] for c in res["conditions"]] == [c["groups"] for c in ref["conditions"]]
    # item keys as results.json writes them
    labels, classes, _ = _labels("item,q\nA/IMG_0002.jpg,good\nB/IMG_0001.jpg,bad\n", rec)
    res = breakdown(rec, labels.groups, classes, n_boot=200, key="item")
    assert res["conditions"][1]["groups"]["good"]["identity"]["mean"] == pytest.approx(0.9)


@pytest.mark.parametrize("text, message", [
    ("person,g\nA,f\nA,m\n", r"labels.csv:3: A is 'm' here but 'f' on line 2"),
    ("person,g\nA,\n", r"labels.csv:2: A has an empty g; write its group, or leave the row out"),
    ("A,female\nB,male\n", r"labels.csv:1: the first row must be the header person,NAME"),
    ("person,item,g\nA,x,f\n", r"labels.csv:1: the header names both person and item"),
    ("person,g\nA,f\nlfw-deepfunneled/B/B_0001.jpg,m\n", r"labels.csv:3: .* is an image id, but the header says "
                                                         "person"),
    ("person,g\nB_0001.jpg,m\n", r"labels.csv:2: B_0001.jpg is an image id"),
    ("person,g\nA,unlabelled\n", r"labels.csv:2: 'unlabelled' is reserved"),
    ("person,g\nA,f,extra\n", r"labels.csv:2: expected 2 fields \(person,g\), got 3"),
    ("person,g\nA,old\nB,Old\n", r"labels.csv:3: group 'Old' differs from 'old' \(line 2\) only in letter case"),
    ("person,g\n\n", r"labels.csv: no labels"),
    ("", r"labels.csv: no labels"),
])
def test_bad_labels_csv(text, message):
    with pytest.raises(BreakdownError, match=message):
        parse_labels_csv(text, source="labels.csv")


@pytest.mark.parametrize("data", [
    "\ufeffperson,g\r\nA,f\r\nC,m\r\n".encode("utf-8"),                  # Excel "CSV UTF-8"
    "person;g\r\nA;f\r\nC;m\r\n".encode("utf-8"),                          # Excel CSV, decimal-comma locale
    "person\tg\r\nA\tf\r\nC\tm\r\n".encode("utf-16"),                     # Excel "Unicode text" (UTF-16, BOM)
    "person,g,,\nA,f,,\nC,m,,\n".encode("utf-8"),                            # empty trailing columns
    'person;g;\n"A";"f";\n"C";"m";\n'.encode("utf-8"),                      # quoted, ';', a trailing empty column
])
def test_spreadsheet_exports_are_read(tmp_path, data):
    path = tmp_path / "labels.csv"
    path.write_bytes(data)
    labels = read_labels_csv(path)
    assert (labels.key, labels.name, labels.groups) == ("person", "g", {"A": "f", "C": "m"})
    # the recorded sha256 is the file's, as sha256sum prints it (not that of the decoded text)
    assert labels.sha256 == hashlib.sha256(data).hexdigest()


def test_labels_matched_to_the_run(caplog):
    # an item file that names people mixes the two keys
    with pytest.raises(BreakdownError, match=r"labels.csv:3: B is a person of the run, not an image id"):
        _labels(f"item,g\n{_img('A1')},f\nB,f\n")
    # nothing matches: ids written differently from results.json
    with pytest.raises(BreakdownError, match=r"none of its 1 item keys is in the run .*'A_0001.jpg'"):
        _labels("item,g\nA_0001.jpg,f\n")
    # a key spelt with other letter case than the run's: refused, not silently unlabelled
    with pytest.raises(BreakdownError, match=r"labels.csv:3: c is not in the run, but C is: ids are case-sensitive"):
        _labels("person,g\nA,f\nc,m\n")
    with pytest.raises(BreakdownError, match=r"labels.csv:2: LFW-DEEPFUNNELED/A/A_0001.JPG is not in the run, but "):
        _labels(f"item,g\n{_img('A1').upper()},f\n{_img('C1')},m\n")
    with caplog.at_level("WARNING"):
        _, classes, info = _labels("person,g\nA,f\nZed,m\nYan,m\n")
    assert info["unknown"] == 2 and classes == ["f", "m"] and "2 of its 3 person keys are not in the run" in caplog.text


def test_many_groups_get_tables_but_no_figure(tmp_path):
    from restorever.reports.figure_style import group_colours

    colours = group_colours(["female", "male", *"abcdef", UNLABELLED])
    assert len(set(colours.values())) == 9  # 8 groups and unlabelled: all distinct
    rec = make_record(tmp_path)
    people = sorted({Path(i).parent.name for i in rec["pairs"]["a"] + rec["pairs"]["b"]})
    groups = {p: f"g{n % (MAX_FIGURE_GROUPS + 1)}" for n, p in enumerate(people)}
    res = breakdown(rec, groups, sorted(set(groups.values())), by="many", n_boot=100, key="person")
    paths = write_breakdown(res, tmp_path)
    assert paths["figure"] is None and json.loads(paths["json"].read_text())["groups"][-1] == UNLABELLED
    assert not (tmp_path / "figures").exists()
    with pytest.raises(BreakdownError, match="more than the figure tells apart"):
        plot_breakdown(res, tmp_path / "x.png")


def test_labels_cli_equals_by_gender_on_a_real_run(real_run, lfw_root, tmp_path):
    from restorever.attributes.labels import read_gender_lists

    labels = read_gender_lists(lfw_root / "gender" / "male_names.txt", lfw_root / "gender" / "female_names.txt")
    groups, _ = person_groups(labels, CLASSES)
    csv_path = tmp_path / "gender.csv"
    csv_path.write_text("person,gender\n" + "".join(f"{p},{g}\n" for p, g in sorted(groups.items())))
    runner = CliRunner()
    result = runner.invoke(cli, ["breakdown", str(real_run), "--by", "gender", "--bootstrap", "300"])
    assert result.exit_code == 0, result.output
    by = json.loads((real_run / "breakdown-gender.json").read_text())
    result = runner.invoke(cli, ["breakdown", str(real_run), "--labels", str(csv_path), "--name", "gender_csv",
                                 "--bootstrap", "300"])
    assert result.exit_code == 0, result.output
    mine = json.loads((real_run / "breakdown-gender_csv.json").read_text())
    assert (real_run / "figures" / "breakdown-gender_csv.png").exists()
    assert mine["conditions"] == by["conditions"]  # every number, bootstrap intervals included
    for k in ("groups", "reference", "labelled_people", "bootstrap", "run"):
        assert mine[k] == by[k], k
    assert mine["by"] == "gender_csv" and mine["labels"]["key"] == "person"
    result = runner.invoke(cli, ["breakdown", str(real_run), "--labels", str(csv_path), "--by", "gender"])
    assert result.exit_code == 2 and "give one of them" in result.output
    csv_path.write_text("person,skin type\nAaron_Peirsol,I\n")
    result = runner.invoke(cli, ["breakdown", str(real_run), "--labels", str(csv_path)])
    assert result.exit_code == 2 and "pass --name NAME" in result.output


def overlap_record() -> dict:
    """21 pairs in 2 folds of 7 people A-G with 5 images each; each person's probes have nearly the same cosine to
    clean (a strong person effect, the case where shared people make two groups' means correlated)."""
    people = "ABCDEFG"
    effect = dict(zip(people, (0.9, 0.8, 0.7, 0.55, 0.45, 0.6, 0.65)))
    rows = []
    for k, p in enumerate(people):
        rows += [(f"{p}1", f"{p}2", 1, k % 2), (f"{p}3", f"{p}4", 1, (k + 1) % 2),
                 (f"{p}1", f"{people[(k + 1) % 7]}5", 0, k % 2)]
    a, b = [_img(r[0]) for r in rows], [_img(r[1]) for r in rows]
    same, fold = np.array([r[2] for r in rows]), np.array([r[3] for r in rows])
    score = np.round(0.35 + 0.4 * same + 0.03 * (np.arange(len(rows)) % 5) - 0.25 * (np.arange(len(rows)) % 6 == 0),
                     3)  # genuine pairs 0.50-0.87, impostor pairs 0.35-0.47: a few errors, finite thresholds
    scores = {"same": same.tolist(), "fold": fold.tolist(), "score": score.tolist()}
    nudge = {2: -0.02, 4: -0.05, 5: 0.01}
    per_item = {_img(r[1]): round(effect[r[1][0]] + nudge[int(r[1][1:])], 4) for r in rows}
    conditions = [{"restorer": "none", "scale": scale, "recognizer": "dlib", "scores": scores,
                   "verification": verification_report(same, score, fold),
                   "identity": {"per_item": cos}}
                  for scale, cos in ((None, {i: 1.0 for i in a + b}), (8, per_item))]
    return {"config": {"protocol": "lfw", "seed": 3}, "pairs": {"a": a, "b": b}, "conditions": conditions}


#: image labels of overlap_record: images 1-2 young, 3-5 old, except F (all young) and G (all old): A-E have probes
#: in both groups, F only in y, G only in o
OVERLAP_ITEMS = {_img(f"{p}{n}"): ("y" if p == "F" or (p != "G" and n <= 2) else "o") for p in "ABCDEFG"
                 for n in range(1, 6)}
#: the same images labelled by person (no one in two groups)
DISJOINT_ITEMS = {_img(f"{p}{n}"): ("y" if p in "ABCF" else "o") for p in "ABCDEFG" for n in range(1, 6)}


def _independent_joint_interval(record: dict, labels: dict, group: str, reference: str, *, n_boot: int,
                                seed: int, level: float = 0.95) -> tuple[float, float, int]:
    """The paired interval written out as a plain loop: draw the union's people (sorted) with replacement, pool
    each drawn person's probes per group, skip a draw without a person of either group."""
    per_item = record["conditions"][1]["identity"]["per_item"]
    probes = {}  # person -> group -> cosines
    for item, cos in per_item.items():
        probes.setdefault(Path(item).parent.name, {}).setdefault(labels[item], []).append(cos)
    union = sorted(p for p, by in probes.items() if group in by or reference in by)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        drawn = [union[j] for j in rng.integers(0, len(union), size=len(union))]
        g = [c for p in drawn for c in probes[p].get(group, [])]
        r = [c for p in drawn for c in probes[p].get(reference, [])]
        if g and r:
            diffs.append((1 - sum(g) / len(g)) - (1 - sum(r) / len(r)))
    low, high = np.quantile(diffs, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(low), float(high), len(diffs)


def test_shared_people_get_the_paired_interval_of_an_independent_loop():
    """With image labels a person can have probes in two groups; the difference's interval resampled each group's
    people independently, ignoring that a shared person's probes move both means together (conservative). It now
    resamples the union of both groups' people once per replicate: the interval equals a plain loop doing that
    (seed ``seed + len(groups) + index of the group``), and with a strong person effect it is much narrower than
    the independent one."""
    from restorever.reports.breakdown import identity_by_group
    from restorever.reports.statistics import percentile_interval

    rec = overlap_record()
    res = breakdown(rec, OVERLAP_ITEMS, ["o", "y"], by="age", reference="o", n_boot=3000, key="item")
    assert res["people_in_several_groups"] == 5
    d = res["conditions"][1]["difference"]["y"]
    assert d["shared_people"] == 5 and res["bootstrap"]["seed"] == 3
    low, high, used = _independent_joint_interval(rec, OVERLAP_ITEMS, "y", "o", n_boot=3000, seed=3 + 3 + 1)
    assert (d["ci_low"], d["ci_high"], d["ci_replicates"]) == (pytest.approx(low, abs=1e-12),
                                                               pytest.approx(high, abs=1e-12), used)
    assert low < d["difference"] < high
    # young probes are 0.02-0.03 worse off than old ones of the same person: the paired interval sees it
    _, reps = identity_by_group(rec["conditions"][1]["identity"]["per_item"], OVERLAP_ITEMS, ["o", "y", UNLABELLED],
                                n_boot=3000, seed=3, key="item")
    ind_low, ind_high = percentile_interval((1 - reps["y"]) - (1 - reps["o"]), 0.95)
    assert ind_low < ind_high and high - low < 0.5 * (ind_high - ind_low)


#: sha256 of ``json.dumps(result, indent=1, allow_nan=False)`` (as breakdown-BY.json is written) from the code
#: before paired intervals, for records whose groups share no people; for the item-labelled case, of its
#: ``conditions`` only (``bootstrap.resampled`` now names the paired resampling)
UNCHANGED = {
    "tiny-gender": "2ec5b04343693df416cbc7c1fca57ead09511f72dd8653b9c5736a6090ec623c",
    "tiny-person": "2ec5b04343693df416cbc7c1fca57ead09511f72dd8653b9c5736a6090ec623c",
    "two-per-group": "07c89e0aef61588a6e11c381a018f5be19c68127959fba896252afd12ff740f6",
    "overlap-person": "f2beac579e51052027f8440b5cda90e68f63aff17a30a086eb687218df4d4f48",
    "overlap-disjoint-items": "a17a960a45a28dbaa62b072c08c40837f42ace37347702635748f71fc728e0cf",
}


def _unshared_results() -> dict[str, object]:
    rec = tiny_record()
    two = tiny_record()
    two["conditions"][1]["identity"]["per_item"][_img("D1")] = 0.7
    people = {p: DISJOINT_ITEMS[_img(f"{p}1")] for p in "ABCDEFG"}
    return {
        "tiny-gender": breakdown(rec, GROUPS, CLASSES, reference="male", n_boot=500),
        "tiny-person": breakdown(rec, GROUPS, CLASSES, reference="male", n_boot=500, key="person"),
        "two-per-group": breakdown(two, {**GROUPS, "D": "male"}, CLASSES, reference="male", n_boot=500),
        "overlap-person": breakdown(overlap_record(), people, ["o", "y"], by="age", n_boot=500, key="person"),
        "overlap-disjoint-items": breakdown(overlap_record(), DISJOINT_ITEMS, ["o", "y"], by="age", n_boot=500,
                                            key="item")["conditions"],
    }


def test_groups_without_shared_people_give_the_same_json_as_before():
    results = _unshared_results()
    for result in results.values():  # keys added later (the run's degradation, seed and side): not in the digests
        for key in ("degradation", "seed", "degrade_side"):
            if isinstance(result, dict):
                result["run"].pop(key)
    digests = {name: hashlib.sha256(json.dumps(result, indent=1, allow_nan=False).encode()).hexdigest()
               for name, result in results.items()}
    assert digests == UNCHANGED


def test_the_breakdown_names_the_runs_degradation_and_seed():
    """The breakdown named protocol, recognizer and pairs but not the degradation or its seed, which decide every
    degraded face (another seed moved an 80-pair run's x32 accuracy by 9 points)."""
    rec = tiny_record()
    rec["config"].update({"degradation": "difface-test", "seed": 3, "degrade_side": "probe"})
    result = breakdown(rec, GROUPS, CLASSES, reference="male", n_boot=200)
    assert {k: result["run"][k] for k in ("degradation", "seed", "degrade_side")} == \
        {"degradation": "difface-test", "seed": 3, "degrade_side": "probe"}
    assert "probe images degraded with difface-test (seed 3)" in breakdown_markdown(result)


def test_a_fold_whose_best_threshold_is_minus_infinity_is_written(tmp_path):
    """A fold where calling every pair "same" scores best gets the threshold -inf; breakdown-NAME.json (strict JSON)
    refused it with a ValueError. It is now written as results.json writes it (-float max), and the decisions are
    those of -inf: every pair of that fold accepted."""
    import sys

    rows = [("A1", "A2", 1, 0, 0.1), ("B2", "B3", 1, 0, 0.2), ("C1", "C2", 1, 0, 0.3), ("A3", "C3", 0, 0, 0.9),
            ("A4", "A5", 1, 1, 0.1), ("B4", "B5", 1, 1, 0.2), ("C4", "C5", 1, 1, 0.3), ("A6", "C6", 0, 1, 0.9)]
    a, b = [_img(r[0]) for r in rows], [_img(r[1]) for r in rows]
    same, fold, score = (np.array([r[i] for r in rows]) for i in (2, 3, 4))
    scores = {"same": same.tolist(), "fold": fold.tolist(), "score": score.tolist()}
    ver = verification_report(same, score, fold)
    clean = {"restorer": "none", "scale": None, "recognizer": "dlib", "scores": scores, "verification": ver,
             "identity": {"per_item": {i: 1.0 for i in a + b}}}
    degraded = {**clean, "scale": 8, "identity": {"per_item": {i: 0.5 + 0.01 * k for k, i in enumerate(b)}}}
    record = {"config": {"protocol": "lfw", "seed": 0}, "pairs": {"a": a, "b": b}, "conditions": [clean, degraded]}
    result = breakdown(record, GROUPS, CLASSES, n_boot=200)
    paths = write_breakdown(result, tmp_path)
    written = json.loads(paths["json"].read_text())
    assert written["conditions"][1]["thresholds"] == [-sys.float_info.max] * 2 == ver["thresholds"]
    # every pair accepted: female (A1-A2, B2-B3, A4-A5, B4-B5) all genuine, so FNMR 0 and accuracy 1
    assert written["conditions"][1]["groups"]["female"]["verification"]["fnmr"] == 0.0
    assert written["conditions"][1]["groups"]["female"]["verification"]["accuracy"] == 1.0


def test_breakdown_figure_names_the_recognizer(tmp_path, monkeypatch):
    """The ROC and scales figures name the recognizer in their legend title; the breakdown figure did not, so a
    copy of it in a paper draft did not say whose embeddings it measured."""
    import restorever.reports.figure_io as figure_io

    seen = {}
    real_save = figure_io.save_figure

    def capture(fig, out, *args, **kwargs):
        seen["title"] = fig.axes[0].get_legend().get_title().get_text()
        return real_save(fig, out, *args, **kwargs)

    monkeypatch.setattr(figure_io, "save_figure", capture)
    rec = make_record(tmp_path)
    res = breakdown(rec, _parity_groups(rec), CLASSES, n_boot=50)
    assert plot_breakdown(res, tmp_path / "b.png").is_file()
    assert seen["title"].split("; ") == ["recognizer arcface-r50", "groups by gender",
                                         "error bars: 95 % CI, people resampled"]


@pytest.mark.parametrize("text", ["sep=,\nperson,skin\nalice,II\nbob,IV\n",
                                  "sep=;\r\nperson;skin\r\nalice;II\r\nbob;IV\r\n",
                                  "SEP=|\nperson|skin\nalice|II\nbob|IV\n",
                                  "sep=\t\nperson\tskin\nalice\tII\nbob\tIV\n"])
def test_excels_sep_line_declares_the_separator(text):
    """Excel writes (and reads) a first line sep=X naming the separator; it was refused as a wrong header."""
    labels = parse_labels_csv(text, source="skin.csv")
    assert (labels.key, labels.name, labels.groups) == ("person", "skin", {"alice": "II", "bob": "IV"})
    assert labels.lines == {"alice": 3, "bob": 4}  # the sep line still counts: numbers are the file's lines


def test_a_sep_line_with_more_than_one_character_is_refused_by_name():
    with pytest.raises(BreakdownError, match=r"skin.csv:1: 'sep=;;' is not a separator declaration"):
        parse_labels_csv("sep=;;\nperson;skin\nalice;II\n", source="skin.csv")

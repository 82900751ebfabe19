"""``restorever breakdown``: per-group identity and verification, against hand-computed numbers, scikit-learn and a
direct k-fold computation, plus one real run (MTCNN + dlib on LFW) through the command line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from restorever.cli import cli
from restorever.metrics.verification import best_threshold, verification_report
from restorever.reports.breakdown import (MIXED, UNLABELLED, BreakdownError, breakdown, breakdown_markdown,
                                          check_record, load_person_groups, pair_groups, person_groups,
                                          verification_by_group)

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
    assert ver[MIXED] == {"n_impostor": 2, "fmr": 0.5}  # B5-C6 (0.7 > 0.2) accepted, A4-C3 (0.2) rejected
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
def real_run(tmp_path_factory, lfw_root):
    tmp = tmp_path_factory.mktemp("breakdown")
    out = tmp / "run"
    result = CliRunner().invoke(cli, ["eval", "--protocol", "lfw", "--data-root", str(lfw_root), "--recognizer",
                                      "dlib", "--restorer", "none", "--scales", "8,16", "--limit-pairs", "60",
                                      "--cache-dir", str(tmp / "cache"), "--out", str(out), "--no-progress"],
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

"""Identification: metrics against scikit-learn, the FAISS/numpy index against brute force, attribute filtering,
the lfw-ident split on the real LFW files, and a small end-to-end run on real faces."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score

from restorever import retrieval
from restorever.datasets_ident import (SplitOptions, build_split, draw_candidates, is_ident_protocol,
                                       load_ident_protocol, parse_people_file, split_options)
from restorever.errors import ProtocolError
from restorever.metrics.retrieval import (average_precision, cmc_curve, identification_report,
                                          mean_average_precision, ranks_from_scores)
from restorever.retrieval import AttributeFilter, GalleryIndex, probe_constraints


def _data(n=600, q=80, d=32, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, d)).astype(np.float32)
    mate = rng.integers(0, n, q)
    probes = g[mate] + 0.9 * rng.normal(size=(q, d)).astype(np.float32)
    codes = {"gender": rng.integers(-1, 2, n), "age": rng.integers(-1, 4, n)}
    return g, probes, mate, codes


def _brute(g, q, k, allowed=None):
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = qn @ gn.T
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), order, s


# ---------------------------------------------------------------------------------------------------- metrics

def test_ranks_cmc_map_against_sklearn():
    _, _, _, _ = _data()
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(40, 50))
    mate = rng.integers(0, 50, 40)
    ranks = ranks_from_scores(scores, mate)
    expected = np.array([1 + (scores[i] > scores[i, mate[i]]).sum() for i in range(40)])
    np.testing.assert_array_equal(ranks, expected)
    onehot = np.zeros_like(scores, dtype=bool)
    onehot[np.arange(40), mate] = True
    sk = np.mean([average_precision_score(onehot[i], scores[i]) for i in range(40)])
    assert mean_average_precision(ranks) == pytest.approx(sk)
    cmc = cmc_curve(ranks, 10)
    assert cmc[0] == pytest.approx(np.mean(ranks == 1)) and np.all(np.diff(cmc) >= 0)
    # several relevant entries per query
    rel = rng.random((40, 50)) < 0.1
    rel[:, 0] = True
    order = np.argsort(-scores, axis=1)
    ap = average_precision(np.take_along_axis(rel, order, 1))
    np.testing.assert_allclose(ap, [average_precision_score(rel[i], scores[i]) for i in range(40)])


def test_ranks_with_filter_ties_and_report():
    scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.2, 0.8, 0.8, 0.3]])
    searched = np.array([[True, True, True, False], [True, False, True, True]])
    r = ranks_from_scores(scores, np.array([1, 1]), searched)
    assert r[0] == 3 and np.isinf(r[1])  # a tie counts against the probe; a filtered-out mate has rank inf
    rep = identification_report(np.array([1, np.inf, 2, 1]), reference_ranks=np.array([1, 1, 3, 2]),
                                searched_fraction=np.array([0.5, 0.5, 0.25, 0.25]), search_seconds=0.2)
    assert rep["rank1"] == 0.5 and rep["map"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert rep["rank1_lost_to_filter"] == 0.25 and rep["rank1_gained"] == 0.25
    assert rep["mate_filtered_out"] == 0.25 and rep["gallery_fraction"] == pytest.approx(0.375)
    assert rep["search_ms_per_query"] == pytest.approx(50.0)


# ---------------------------------------------------------------------------------------------------- index

@pytest.mark.parametrize("backend", ["faiss", "numpy"])
def test_unfiltered_search_matches_brute_force(backend):
    if backend == "faiss":
        pytest.importorskip("faiss", reason="faiss-cpu is the [faiss] extra")
    g, q, mate, _ = _data()
    idx = GalleryIndex(g, backend=backend)
    assert idx.backend == backend
    res = idx.search(q, 10)
    s_ref, i_ref, full = _brute(g, q, 10)
    np.testing.assert_array_equal(res.ids, i_ref)
    np.testing.assert_allclose(res.scores, s_ref, atol=1e-5)
    assert (res.searched == len(g)).all()
    ranks = idx.mate_ranks(q, res, mate)
    np.testing.assert_array_equal(ranks, ranks_from_scores(full, mate))


@pytest.mark.parametrize("backend,mode", [("faiss", "partition"), ("faiss", "selector"), ("numpy", "partition")])
def test_filtered_search_matches_brute_force(backend, mode):
    if backend == "faiss":
        pytest.importorskip("faiss", reason="faiss-cpu is the [faiss] extra")
    g, q, mate, codes = _data()
    rng = np.random.default_rng(1)
    probs = {"gender": rng.dirichlet([0.3, 0.3], len(q)), "age": rng.dirichlet([0.3] * 4, len(q))}
    flt = AttributeFilter(("gender", "age"), threshold=0.7, age_tolerance=1)
    cons = probe_constraints(probs, flt)
    assert any(c is None for c in cons) and any(c is not None for c in cons)
    idx = GalleryIndex(g, codes=codes, partition_by=("gender", "age"), backend=backend, mode=mode)
    res = idx.search(q, 10, constraints=cons)
    allowed = np.ones((len(q), len(g)), dtype=bool)
    for i, c in enumerate(cons):
        if c is None:
            continue
        for a, allow in zip(("gender", "age"), c):
            if allow is not None:
                allowed[i] &= (codes[a] < 0) | np.isin(codes[a], list(allow))
    s_ref, i_ref, full = _brute(g, q, 10, allowed)
    np.testing.assert_array_equal(res.ids, i_ref)
    np.testing.assert_array_equal(res.searched, allowed.sum(1))
    ranks = idx.mate_ranks(q, res, mate, cons)
    np.testing.assert_array_equal(ranks, ranks_from_scores(full, mate, allowed))
    assert np.isinf(ranks).any()


def test_probe_constraints_threshold_and_age_tolerance():
    probs = {"gender": np.array([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9]]),
             "age": np.array([[0, 0, 0.97, 0.03], [0.25] * 4, [0.92, 0.08, 0, 0]])}
    cons = probe_constraints(probs, AttributeFilter(threshold=0.9, age_tolerance=1))
    assert cons == [(frozenset({0}), frozenset({1, 2, 3})), None, (frozenset({1}), frozenset({0, 1}))]
    cons0 = probe_constraints(probs, AttributeFilter(("age",), threshold=0.9, age_tolerance=0))
    assert cons0 == [(frozenset({2}),), None, (frozenset({0}),)]
    with pytest.raises(ValueError):
        AttributeFilter(("hair",))


def test_ivf_with_all_lists_probed_is_exact():
    pytest.importorskip("faiss", reason="faiss-cpu is the [faiss] extra")
    g, q, _, _ = _data(n=2000)
    idx = GalleryIndex(g, backend="faiss", ivf_nlist=8, nprobe=8)
    assert idx.full.kind == "ivf"
    np.testing.assert_array_equal(idx.search(q, 10).ids, _brute(g, q, 10)[1])
    small = GalleryIndex(g[:100], backend="faiss", ivf_nlist=8)  # too few points to train 8 lists: stays flat
    assert small.full.kind == "flat"


def test_numpy_fallback_when_faiss_is_missing(monkeypatch, caplog):
    monkeypatch.setattr(retrieval, "_FAISS", False)
    monkeypatch.setattr(retrieval, "_WARNED", False)
    g, q, _, _ = _data(n=50, q=5)
    with caplog.at_level(logging.WARNING, logger="restorever.retrieval"):
        idx = GalleryIndex(g)
    assert idx.backend == "numpy" and "faiss is not installed" in caplog.text
    np.testing.assert_array_equal(idx.search(q, 10).ids, _brute(g, q, 10)[1])
    with pytest.raises(Exception, match="faiss is not installed"):
        GalleryIndex(g, backend="faiss")


# ---------------------------------------------------------------------------------------------------- split

def test_people_file_real_and_errors(lfw_root):
    people = parse_people_file((lfw_root / "people.txt").read_text())
    assert len(people) == 5749 and sum(people.values()) == 13233  # SOURCES.md
    dev = parse_people_file((lfw_root / "peopleDevTrain.txt").read_text())
    assert len(dev) == int((lfw_root / "peopleDevTrain.txt").read_text().split()[0])
    with pytest.raises(ProtocolError, match="says 3 people, 2 follow"):
        parse_people_file("3\nA\t1\nB\t2\n")
    with pytest.raises(ProtocolError, match="twice"):
        parse_people_file("2\nA\t1\nA\t2\n")
    with pytest.raises(ProtocolError, match="folds"):
        parse_people_file("3\n1\nA\t1\n1\nB\t2\n")


def test_lfw_ident_split(lfw_root):
    assert is_ident_protocol("lfw-ident") and not is_ident_protocol("lfw") and not is_ident_protocol("nope")
    ident = load_ident_protocol("lfw-ident", data_root=lfw_root)
    enrolled, distractors = draw_candidates(ident.people, ident.folder, split_options(ident.spec))
    split = build_split(enrolled, distractors)
    assert split.summary() == {"enrolled_people": 1680, "enrolled_with_probes": 1680, "distractors": 4069,
                               "gallery_size": 5749, "probes": 13233 - 5749, "skipped": 0}
    assert split.gallery[0].endswith("_0001.jpg") and all(p.endswith(("_0002.jpg",)) for p in split.probes[:1])
    mate = split.probe_mate
    assert all(split.gallery_people[m] == p for m, p in zip(mate, split.probe_people))
    # subsets are deterministic and nested
    opt = SplitOptions(min_images=10, max_probes_per_person=3, max_distractors=100)
    e1, d1 = draw_candidates(ident.people, ident.folder, opt)
    e2, d2 = draw_candidates(dict(reversed(list(ident.people.items()))), ident.folder, opt)
    assert e1 == e2 and d1 == d2 and len(e1) == 158 and len(d1) == 100
    assert set(d1) <= {n for n, c in ident.people.items() if c == 1}
    # detection failures: the next image becomes the gallery image; a person with none left is dropped
    name = "Colin_Powell"
    items = e1[name]
    failed = {items[0]: "no face", items[2]: "no face", d1[next(iter(d1))]: "unreadable"}
    failed.update({i: "no face" for i in e1["Abdullah_Gul"]})
    s = build_split(e1, d1, failed, max_probes_per_person=3)
    g = s.gallery[s.gallery_people.index(name)]
    assert g == items[1] and [p for p, who in zip(s.probes, s.probe_people) if who == name] == [items[3]]
    assert "Abdullah_Gul" not in s.gallery_people and len(s.gallery) == 157 + 99
    assert {x["item"] for x in s.skipped} >= {items[0], "Abdullah_Gul"}


# ---------------------------------------------------------------------------------------------------- end to end

def _run(*args, expect=0):
    from restorever.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


SMALL = ("--min-images", 100, "--max-probes-per-person", 2, "--max-distractors", 5, "--no-progress")


@pytest.fixture(scope="module")
def ident_run(lfw_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ident")
    cache = ("--cache-dir", tmp / "cache")  # module fixtures run before the per-test cache isolation of conftest
    _run("ident", "--data-root", lfw_root, *SMALL, *cache, "--scales", 16, "--out", tmp / "plain")
    _run("attributes", "fit", "--data-root", lfw_root, *SMALL, *cache, "--reweight-hidden", 4, "--out",
         tmp / "probe.pt")
    _run("ident", "--data-root", lfw_root, *SMALL, *cache, "--scales", 16, "--batch-size", 3, "--attribute-model",
         tmp / "probe.pt", "--attribute-filter", "gender,age", "--threshold", 0.5, "--out", tmp / "filtered")
    return tmp


def test_ident_end_to_end_real_faces(ident_run):
    plain = json.loads((ident_run / "plain" / "results.json").read_text())
    filt = json.loads((ident_run / "filtered" / "results.json").read_text())
    assert plain["protocol"]["gallery_size"] == 10 and plain["protocol"]["probes"] == 10
    assert [c["scale"] for c in plain["conditions"]] == [None, 16]
    clean, x16 = (c["retrieval"] for c in plain["conditions"])
    assert clean["rank1"] >= 0.9 and clean["rank1"] >= x16["rank1"]  # dlib finds these people when clean
    assert clean["map"] >= clean["rank1"] - 1e-9 and clean["cmc"][-1] == 1.0
    # batch size 16 vs 3 and a second process: identical unfiltered numbers (cached, batch-invariant embeddings)
    for a, b in zip(plain["conditions"], filt["conditions"]):
        assert a["retrieval"]["rank1"] == b["retrieval"]["rank1"] and a["retrieval"]["map"] == b["retrieval"]["map"]
    f = filt["conditions"][1]["retrieval"]["filtered"]
    assert 0 < f["gallery_fraction"] <= 1 and f["n_probes"] == 10
    assert set(filt["conditions"][1]["retrieval"]) >= {"filtered", "filtered_reweighted"}
    attrs = filt["conditions"][1]["attributes"]
    assert attrs["raw"]["gender"]["n"] == 10 and 0 <= attrs["gender_flip_rate"] <= 1
    assert "consistency" in attrs["raw"]["age"] and attrs["raw"]["age"]["n"] == 10  # all five are in the Kumar file
    fit = json.loads((ident_run / "probe.json").read_text())
    assert fit["report"]["attributes"]["gender"]["images"] == 20 and fit["recognizer"] == "dlib"
    assert "| clean |" in (ident_run / "filtered" / "results.md").read_text()
    assert plain["cache"]["dir"] == str(ident_run / "cache") and filt["cache"]["misses"] == 0


def test_plot_cmc_and_errors(ident_run, lfw_root, tmp_path):
    out = tmp_path / "cmc.pdf"
    _run("plot", "cmc", ident_run / "plain" / "results.json", ident_run / "filtered" / "results.json", "-o", out)
    assert out.read_bytes()[:4] == b"%PDF"
    r = _run("ident", "--data-root", lfw_root, *SMALL, "--attribute-filter", "gender", "--out", tmp_path, expect=2)
    assert "needs --attribute-model" in r.output and r.output.strip().count("\n") == 0
    r = _run("ident", "--data-root", lfw_root, "--min-images", 1, "--out", tmp_path, expect=2)
    assert "--min-images" in r.output


def test_refill_candidates_replaces_failed_images_with_the_next_ones():
    from restorever.formats.lfw_ident import refill_candidates

    enrolled = {"A": ["f/A/A_0001.jpg", "f/A/A_0002.jpg", "f/A/A_0003.jpg"], "B": ["f/B/B_0001.jpg", "f/B/B_0002.jpg"]}
    people = {"A": 5, "B": 2}
    failed = {"f/A/A_0001.jpg": "no face", "f/A/A_0003.jpg": "no face", "f/B/B_0002.jpg": "no face"}
    assert refill_candidates(enrolled, people, "f", failed, 2) == {"A": ["f/A/A_0004.jpg", "f/A/A_0005.jpg"]}
    assert refill_candidates(enrolled, {"A": 4, "B": 2}, "f", failed, 2) == {"A": ["f/A/A_0004.jpg"]}  # all left
    assert refill_candidates(enrolled, people, "f", {}, 2) == {} and refill_candidates(enrolled, people, "f",
                                                                                        failed, None) == {}


def test_max_probes_per_person_counts_usable_images(lfw_root, tmp_path):
    """A person whose first image fails got N-1 probes under --max-probes-per-person N although they had more
    images: only the first 1 + N were ever looked at. The next images now stand in for failed ones."""
    import shutil

    root = tmp_path / "lfw"
    counts = {"Colin_Powell": 4, "Tony_Blair": 3, "Aaron_Eckhart": 1}
    for name, n in counts.items():
        (root / "lfw-deepfunneled" / name).mkdir(parents=True)
        for i in range(1, n + 1):
            image = f"{name}/{name}_{i:04d}.jpg"
            shutil.copy(lfw_root / "lfw-deepfunneled" / image, root / "lfw-deepfunneled" / image)
    (root / "lfw-deepfunneled" / "Colin_Powell" / "Colin_Powell_0001.jpg").write_text("not a jpeg")
    (root / "people.txt").write_text("3\n" + "".join(f"{n}\t{c}\n" for n, c in counts.items()))
    out = tmp_path / "run"
    _run("ident", "--data-root", root, "--max-probes-per-person", 2, "--min-images", 2, "--on-error", "skip",
         "--no-progress", "--cache-dir", tmp_path / "cache", "--out", out)
    record = json.loads((out / "results.json").read_text())
    assert record["protocol"]["probes"] == 4  # 2 each; Colin Powell: gallery _0002, probes _0003 and _0004
    assert [f["image"].rsplit("/", 1)[1] for f in record["protocol"]["failed_images"]] == ["Colin_Powell_0001.jpg"]


def test_ident_tables_label_what_they_show(ident_run):
    """The search time column showed the filtered search's time whenever a filter existed (clean: 0.009 ms for a
    0.203 ms unfiltered search); the ECE columns held raw / reweighted pairs unlabelled; `attributes show` listed
    age before gender (the saved report's keys are sorted)."""
    record = json.loads((ident_run / "filtered" / "results.json").read_text())
    md = (ident_run / "filtered" / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| condition | rank-1"))
    row = next(line for line in md.splitlines() if line.startswith("| clean |"))
    cells = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))
    r = record["conditions"][0]["retrieval"]
    assert float(cells["search ms/query"]) == pytest.approx(r["search_ms_per_query"], abs=6e-4)
    assert float(cells["filtered search ms/query"]) == pytest.approx(
        r["filtered"]["search_ms_per_query"], abs=6e-4)
    assert "gender ECE % (raw / reweighted)" in md
    shown = _run("attributes", "show", ident_run / "probe.pt").output
    assert shown.index("| gender |") < shown.index("| age |")


def test_a_filter_attribute_named_twice_is_refused(ident_run, lfw_root, tmp_path):
    """`--attribute-filter gender,gender` was accepted and recorded with the duplicate (the index partitioned on two
    identical columns)."""
    r = _run("ident", "--data-root", lfw_root, *SMALL, "--attribute-model", ident_run / "probe.pt",
             "--attribute-filter", "gender,age,gender", "--out", tmp_path / "o", expect=2)
    assert "--attribute-filter names gender more than once" in r.output and not (tmp_path / "o").exists()


def test_ident_with_a_pixel_attribute_model(ident_run, lfw_root, tmp_path):
    """The pixel-model path: attribute probabilities computed per condition through the cached embedding stage
    (a synthetic genderage.onnx; the real file cannot be downloaded here)."""
    pytest.importorskip("onnxruntime", reason="the onnx extra runs genderage.onnx")
    from .attributes.test_insightface import _model

    onnx_file = _model(tmp_path / "genderage.onnx")
    out = tmp_path / "pixel"
    _run("ident", "--data-root", lfw_root, *SMALL, "--cache-dir", ident_run / "cache", "--scales", 16,
         "--attribute-model", "insightface-genderage", "--attribute-weights", onnx_file, "--attribute-filter",
         "gender", "--threshold", 0.5, "--reweight", ident_run / "probe.pt", "--out", out)
    record = json.loads((out / "results.json").read_text())
    plain = json.loads((ident_run / "plain" / "results.json").read_text())
    assert record["attribute_model"]["kind"] == "image" and record["attribute_model"]["reweighting"]
    # The model really ran: its probabilities are cached under their own keys (6 = 2 gender + 4 age groups) and
    # sum to one per attribute. The attribute stage used to be keyed as the recognizer, so every lookup returned
    # the 128-D dlib embedding just cached and the "probabilities" were embedding coordinates.
    widths = {}
    for entry in (ident_run / "cache").rglob("embedding/**/*.npz"):
        with np.load(entry) as npz:
            widths.setdefault(npz["data"].shape, []).append(npz["data"])
    assert len(widths.get((6,), [])) == 20 + 10, sorted(widths)  # clean: 10 gallery + 10 probes; x16: probes
    vectors = np.stack(widths[(6,)])
    np.testing.assert_allclose(vectors[:, :2].sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(vectors[:, 2:].sum(1), 1, atol=1e-5)
    assert record["cache"]["misses"] >= 20
    for a, b in zip(record["conditions"], plain["conditions"]):
        assert a["retrieval"]["rank1"] == b["retrieval"]["rank1"]  # the search itself is unchanged
        assert a["attributes"]["raw"]["gender"]["n"] == 10 and "filtered_reweighted" in a["retrieval"]


def test_eval_dry_run_plans_identification_without_running(ident_run, lfw_root, tmp_path):
    """`eval --protocol lfw-ident --dry-run` prints the split and what is cached; it computes and writes nothing."""
    cache = ident_run / "cache"
    before = sorted(p.name for p in cache.rglob("*.npz"))
    out = tmp_path / "never"
    result = _run("eval", "--protocol", "lfw-ident", "--data-root", lfw_root, *SMALL, "--cache-dir", cache,
                  "--scales", "16,32", "--dry-run", "--out", out)
    text = result.output
    assert "protocol lfw-ident: 5 enrolled people, gallery 10 (5 distractors), 10 probes" in text
    assert "landmarks (mtcnn): 20 cached, 0 to detect" in text
    assert "clean                        20 cached,      0 to compute" in text  # the plain run embedded all 20
    assert "none x16                     10 cached,      0 to compute" in text
    assert "none x32                      0 cached,     10 to compute" in text  # a scale never run
    assert not out.exists() and sorted(p.name for p in cache.rglob("*.npz")) == before


def test_ident_dry_run_refuses_a_verification_protocol_as_the_run_does(lfw_root, tmp_path):
    """`ident --protocol lfw --dry-run` printed a verification plan and exited 0, while the run itself refuses
    lfw; both now give the run's one-line error."""
    args = ("ident", "--protocol", "lfw", "--data-root", lfw_root, "--scales", "8", "--out", tmp_path / "o")
    for extra in ((), ("--dry-run",)):
        result = _run(*args, *extra, expect=2)
        assert "dataset.format must be 'lfw-ident' for an identification protocol" in result.output


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_tied_scores_count_against_the_probe_on_every_backend(backend):
    """Inside the top-k the rank was the index's output position, so equal scores (duplicate gallery images) gave
    numpy [1, 2, 3] and faiss [3, 2, 1]; the documented rule (ties count against the probe) gives [3, 3, 3] on
    both, also when the tie runs past the k-th returned entry."""
    from restorever.retrieval import GalleryIndex, import_faiss

    if backend == "faiss" and import_faiss() is None:
        pytest.skip("faiss is not installed")
    gallery = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], np.float32)
    probes = np.array([[1, 0]] * 3, np.float32)
    index = GalleryIndex(gallery, backend=backend)
    result = index.search(probes, 10)
    assert index.mate_ranks(probes, result, np.array([0, 1, 3])).tolist() == [3, 3, 3]
    assert index.mate_ranks(probes, result, np.array([2, 2, 2])).tolist() == [4, 4, 4]
    same = GalleryIndex(np.ones((12, 2), np.float32), backend=backend)
    probes = np.ones((2, 2), np.float32)
    assert same.mate_ranks(probes, same.search(probes, 10), np.array([0, 11])).tolist() == [12, 12]
    with pytest.raises(ValueError, match="gallery ids in 0..11"):  # an identity absent from the gallery
        same.mate_ranks(probes, same.search(probes, 10), np.array([-1, 3]))


def test_top_k_is_capped_at_the_gallery_and_index_sizes_are_checked(ident_run, lfw_root, tmp_path):
    """--top-k 1000 on a 10-entry gallery stored a 1000-point CMC per condition; --nprobe 0 failed inside faiss
    with a traceback after all the work."""
    out = tmp_path / "big-k"
    _run("ident", "--data-root", lfw_root, *SMALL, "--cache-dir", ident_run / "cache", "--top-k", 1000, "--out", out)
    record = json.loads((out / "results.json").read_text())
    assert {len(c["retrieval"]["cmc"]) for c in record["conditions"]} == {10}
    for option in (("--nprobe", 0), ("--ivf-nlist", -5), ("--top-k", 10 ** 10)):
        result = _run("ident", "--data-root", lfw_root, *SMALL, "--cache-dir", ident_run / "cache", *option,
                      "--out", tmp_path / "never", expect=2)
        assert option[0] in result.output and not (tmp_path / "never").exists()


@pytest.mark.parametrize("args,message", [
    (("--min-images", 600), "no person has 600 or more images"),
    (("--attribute-model", "x.pt", "--attribute-filter", "gender", "--threshold", 1.5), "--threshold"),
    (("--attribute-model", "x.pt", "--attribute-filter", "gendr"), "takes gender and/or age, got ['gendr']"),
    (("--attribute-model", "x.pt", "--age-tolerance", -1), "--age-tolerance must be >= 0"),
    (("--threshold", 0.5), "give --attribute-model"),
])
def test_ident_refuses_impossible_settings_before_detecting_a_face(lfw_root, tmp_path, monkeypatch, args, message):
    """An empty split was found after MTCNN had run on every candidate (283 s), bad filter values after every probe
    was embedded; both are known from the arguments."""
    import restorever.pipeline.identification as identification

    def refuse(*a, **k):
        raise AssertionError("faces were detected before the arguments were checked")

    monkeypatch.setattr(identification, "landmark_stage", refuse)
    result = _run("ident", "--data-root", lfw_root, "--out", tmp_path / "o", "--no-progress", *args, expect=2)
    assert message in result.output


def test_library_inputs_without_an_answer_are_value_errors():
    """An empty gallery (IndexError later), k=0 (faiss AssertionError, numpy [Q, 0]) and a rank of 0 in mAP (inf)."""
    from restorever.metrics.retrieval import mean_average_precision
    from restorever.retrieval import GalleryIndex

    with pytest.raises(ValueError, match="gallery must be"):
        GalleryIndex(np.zeros((0, 8), np.float32), backend="numpy")
    index = GalleryIndex(np.eye(3, dtype=np.float32), backend="numpy")
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.full.search(np.eye(3, dtype=np.float32), 0)
    with pytest.raises(ValueError, match="ranks must be"):
        mean_average_precision(np.array([0.0, 1.0]))
    assert mean_average_precision(np.array([1.0, 2.0, np.inf])) == pytest.approx(0.5)


def test_validate_checks_the_consistency_of_identification_figures(ident_run, tmp_path):
    """`validate` said "valid" for rank1 0.99 > rank5 0.5, mAP 1.7 and a falling CMC; those cannot come from any
    ranks, and are reported now (a real run stays valid)."""
    import shutil

    from restorever.validate import check_run

    for name in ("plain", "filtered"):
        report = check_run(ident_run / name, check_cache=False)
        assert report.ok, report.problems
        assert report.checked["retrieval sections checked"] >= 2
    run = tmp_path / "run"
    shutil.copytree(ident_run / "filtered", run)
    record = json.loads((run / "results.json").read_text())
    retrieval = record["conditions"][1]["retrieval"]
    retrieval.update(rank1=0.99, rank5=0.5, map=0.6)
    retrieval["cmc"] = [0.9] + [0.2] * (len(retrieval["cmc"]) - 1)
    (run / "results.json").write_text(json.dumps(record))
    problems = "\n".join(check_run(run, check_cache=False).problems)
    for expected in ("rank-1/5/10 [0.99, 0.5", "cmc is not a non-decreasing", "map 0.6 is below rank1 0.99"):
        assert expected in problems, problems
    retrieval["map"], retrieval["filtered"]["rank1"] = 1.7, 1.4  # not a fraction: the schema says so first
    (run / "results.json").write_text(json.dumps(record))
    problems = "\n".join(check_run(run, check_cache=False).problems)
    for expected in ("retrieval.map: 1.7 is above the maximum 1", "retrieval.filtered.rank1: 1.4 is above the maximum"):
        assert expected in problems, problems


def test_small_rough_edges_of_the_ident_options(lfw_root, tmp_path, caplog):
    """--age-bins 13,x printed "could not convert string to float: 'x'"; an IVF index that fell back to flat search
    did so silently."""
    from restorever.retrieval import GalleryIndex

    result = _run("ident", "--data-root", lfw_root, "--age-bins", "13,x", "--out", tmp_path / "o", expect=2)
    assert "--age-bins" in result.output and "'13,x' is not a comma list of ages" in result.output
    with caplog.at_level(logging.WARNING, logger="restorever.retrieval"):
        index = GalleryIndex(np.random.default_rng(0).random((30, 8), dtype=np.float32), ivf_nlist=4)
    assert index.full.kind == "flat" and "searched exactly (flat)" in caplog.text


def test_an_attribute_model_reads_only_the_recognizer_weights_it_was_fitted_on(ident_run, lfw_root, tmp_path,
                                                                                caplog):
    """Other weights of the same recognizer give other embeddings: the probe's probabilities would be wrong
    without a word. The fit records the weights' sha256; a run with other weights is refused, and a model made
    before the record existed runs with a warning."""
    from restorever.attributes.predictor import EmbeddingAttributePredictor

    plain = json.loads((ident_run / "plain" / "results.json").read_text())
    fit = json.loads((ident_run / "probe.json").read_text())
    run_weights = plain["cache"]["identity"]["recognizer"]["weights"]
    assert fit["recognizer_weights"] and fit["recognizer_weights"] == run_weights
    model = EmbeddingAttributePredictor.load(ident_run / "probe.pt")
    model.meta["recognizer_weights"] = [[role, "0" * 64] for role, _ in fit["recognizer_weights"]]
    model.save(tmp_path / "other.pt")
    del model.meta["recognizer_weights"]
    model.save(tmp_path / "old.pt")
    common = ("ident", "--data-root", lfw_root, *SMALL, "--cache-dir", ident_run / "cache", "--scales", 16,
              "--attribute-filter", "gender")
    result = _run(*common, "--attribute-model", tmp_path / "other.pt", "--out", tmp_path / "a", expect=2)
    assert "was fitted on recognizer weights" in result.output and "000000000000" in result.output
    assert not (tmp_path / "a" / "results.json").exists()
    with caplog.at_level(logging.WARNING, logger="restorever.pipeline.identification"):
        _run(*common, "--attribute-model", tmp_path / "old.pt", "--out", tmp_path / "b")
    assert "does not record which recognizer weights" in caplog.text
    assert (tmp_path / "b" / "results.json").is_file()
    shown = _run("attributes", "show", ident_run / "probe.pt").output
    assert f"sha256 {fit['recognizer_weights'][0][1]}" in shown
    assert "not recorded" in _run("attributes", "show", tmp_path / "old.pt").output


def test_an_interrupted_ident_write_never_mixes_two_runs(ident_run, tmp_path, monkeypatch):
    """results.md and cmc.png were written before results.json, over the previous run's: interrupted in between,
    the folder held the old results.json beside the new tables. Now all three are staged first, then the old
    results.json goes, then the renames (results.json last)."""
    import shutil

    from restorever.reports import ident as ident_report

    out = tmp_path / "plain"
    shutil.copytree(ident_run / "plain", out)
    record = json.loads((out / "results.json").read_text())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ident_report, "plot_cmc", interrupted)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(KeyboardInterrupt):  # while drawing: nothing staged yet, the previous run stays whole
        ident_report.write_ident_run(record, out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".restorever.lock"]  # no leftovers
    monkeypatch.undo()
    real_replace = ident_report.os.replace

    def interrupted_rename(src, dst):
        if Path(dst).name == "cmc.png":
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(ident_report.os, "replace", interrupted_rename)
    with pytest.raises(KeyboardInterrupt):  # between the renames: an unfinished run, not a mixed one
        ident_report.write_ident_run(record, out)
    assert not (out / "results.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".staged")]
    monkeypatch.undo()
    ident_report.write_ident_run(record, out)
    assert json.loads((out / "results.json").read_text()) == record


def test_every_retrieval_figure_of_a_real_run_equals_brute_force(ident_run, lfw_root, tmp_path, monkeypatch):
    """Round 18: the filtered run again (all cached), with the embeddings and attribute probabilities it searched
    recorded on the way; every figure of every condition in results.json (rank-1/5/10, CMC, mAP, mates filtered
    out, gallery searched, probes filtered, rank-1 lost and gained, raw and re-weighted filters) is recomputed by
    the brute force of tests/reliability/test_round18_ident.py, which shares no code with the library."""
    from restorever import retrieval

    from .reliability.test_round18_ident import _cosine, _reference_allowed, _reference_ranks, _reference_report

    seen: dict[str, list] = {"gallery": [], "queries": [], "probe_probs": [], "gallery_probs": []}
    init, ranks, constraints, codes = (retrieval.GalleryIndex.__init__, retrieval.GalleryIndex.mate_ranks,
                                       retrieval.probe_constraints, retrieval.attribute_codes)

    def record_init(self, embeddings, **kwargs):
        seen["gallery"].append(np.array(embeddings))
        init(self, embeddings, **kwargs)

    def record_ranks(self, queries, result, mate, cons=None):
        seen["queries"].append((np.array(queries), np.array(mate)))
        return ranks(self, queries, result, mate, cons)

    def record_constraints(probs, flt):
        seen["probe_probs"].append(({a: np.array(p) for a, p in probs.items()}, flt))
        return constraints(probs, flt)

    def record_codes(probs, threshold):
        seen["gallery_probs"].append({a: np.array(p) for a, p in probs.items()})
        return codes(probs, threshold)

    monkeypatch.setattr(retrieval.GalleryIndex, "__init__", record_init)
    monkeypatch.setattr(retrieval.GalleryIndex, "mate_ranks", record_ranks)
    monkeypatch.setattr(retrieval, "probe_constraints", record_constraints)
    monkeypatch.setattr(retrieval, "attribute_codes", record_codes)
    _run("ident", "--data-root", lfw_root, *SMALL, "--cache-dir", ident_run / "cache", "--scales", 16,
         "--attribute-model", ident_run / "probe.pt", "--attribute-filter", "gender,age", "--threshold", 0.5,
         "--out", tmp_path / "again")
    record = json.loads((tmp_path / "again" / "results.json").read_text())
    stored = json.loads((ident_run / "filtered" / "results.json").read_text())
    gallery = seen["gallery"][0]
    assert all(np.array_equal(g, gallery) for g in seen["gallery"])  # one gallery: plain, raw, re-weighted
    assert len(gallery) == stored["protocol"]["gallery_size"] == 10
    searched = iter(seen["queries"])
    probe_probs = iter(seen["probe_probs"])
    variants = dict(zip(("filtered", "filtered_reweighted"), seen["gallery_probs"]))
    assert len(variants) == 2
    checked = 0
    for condition, before in zip(record["conditions"], stored["conditions"]):
        queries, mate = next(searched)
        scores = _cosine(queries, gallery)
        everything = np.ones(scores.shape, dtype=bool)
        plain = _reference_ranks(scores, gallery, mate, everything)
        expected = {"": _reference_report(plain, everything)}
        for key, gallery_probs in variants.items():
            again, mate_again = next(searched)
            probs, flt = next(probe_probs)
            assert np.array_equal(again, queries) and np.array_equal(mate_again, mate)
            assert (flt.threshold, flt.age_tolerance) == (0.5, 1)
            allowed = _reference_allowed(probs, gallery_probs, flt.threshold, flt.age_tolerance)
            expected[key] = _reference_report(_reference_ranks(scores, gallery, mate, allowed), allowed, plain)
            expected[key]["probes_filtered"] = np.mean([max(probs[a][i].max() for a in probs) >= flt.threshold
                                                        for i in range(len(queries))])
        for key, figures in expected.items():
            for name, value in figures.items():
                for where in (condition, before):  # this run and the fixture's, made in another process
                    got = where["retrieval"][key][name] if key else where["retrieval"][name]
                    np.testing.assert_allclose(got, value, rtol=0, atol=1e-12, err_msg=f"{key}.{name}")
                    checked += 1
    assert checked == 2 * 2 * (7 + 2 * 10)


def test_a_non_finite_embedding_names_its_condition_and_image(ident_run, lfw_root, tmp_path, monkeypatch):
    """A NaN embedding (a recognizer or restorer overflowing) stopped the run with "queries must be finite: 1 of 10
    rows contain NaN or inf", naming neither the image nor the condition; now both, with the usual cause, and
    nothing is written."""
    import restorever.pipeline.identification as identification

    real = identification.embed_conditions
    victims = []

    def poisoned(ctx, items, probe_set, info, **kwargs):
        embeddings, times = real(ctx, items, probe_set, info, **kwargs)
        victims.append(sorted(probe_set)[1])
        embeddings[("none", 16)][victims[-1]] = np.full_like(embeddings[("none", 16)][victims[-1]], np.nan)
        return embeddings, times

    monkeypatch.setattr(identification, "embed_conditions", poisoned)
    out = tmp_path / "nan"
    result = _run("ident", "--data-root", lfw_root, *SMALL, "--cache-dir", ident_run / "cache", "--scales", 16,
                  "--out", out, expect=2)
    assert f"the dlib embeddings of 1 image(s) hold NaN or inf under none x16 (first: {victims[0]})" in result.output
    assert "precision=fp32" in result.output and result.output.strip().count("\n") == 0
    assert not (out / "results.json").exists()


def test_a_tied_prediction_is_not_a_confident_class():
    """At a threshold of 0.5 or less a ``[0.5, 0.5]`` gender (or a tie at the top of the age groups) has no most
    probable class: it gets code -1 (a gallery entry searched by every probe, a probe searching everything), not the
    first column's class; a unique top class at the threshold is still confident."""
    probs = {"gender": np.array([[0.5, 0.5], [0.3, 0.7], [0.5, 0.5]]),
             "age": np.array([[0.4, 0.4, 0.2], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])}
    codes = retrieval.attribute_codes(probs, 0.4)
    assert codes["gender"].tolist() == [-1, 1, -1] and codes["age"].tolist() == [-1, 1, 2]
    assert retrieval.attribute_codes({"one": np.ones((2, 1))}, 0.9)["one"].tolist() == [0, 0]
    flt = retrieval.AttributeFilter(threshold=0.4, age_tolerance=0)
    constraints = retrieval.probe_constraints(probs, flt)
    assert constraints[0] is None and constraints[1] == (frozenset([1]), frozenset([1]))
    assert constraints[2] == (None, frozenset([2]))

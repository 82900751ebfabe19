"""Round 18, third mutation pass: protocol files, the identification split, filtered retrieval and attributes.

Each test here fails on a mutant that survived the modules' own tests (docs/reliability.md, "Round 18: mutation
testing, third pass"); the answers are the official files' known counts, hand-computed cases or brute force.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from restorever.attributes.groups import AgeGroups
from restorever.attributes.labels import image_key, person_of
from restorever.attributes.metrics import attribute_report, consistency_report
from restorever.attributes.reweighting import AttributeReweighting, fit_reweighting
from restorever.datasets_ident import SplitOptions, build_split, split_options
from restorever.errors import ProtocolError, UnsafePathError
from restorever.protocol import (load_protocol, load_spec, parse_lfw_pairs, parse_pairs_csv, protocol_kind, raw_format,
                                 validate_spec)
from restorever.formats import format_card
from restorever import retrieval
from restorever.retrieval import AttributeFilter, GalleryIndex, VectorIndex, probe_constraints
from restorever.validate.protocols import validate_protocol_file

PROTOCOLS = Path(__file__).resolve().parents[2] / "protocols"


def _spec(**extra) -> dict:
    return {"protocol": "mine", "dataset": {"format": "pairs-csv"}, **extra}


# ---------------------------------------------------------------------------------------------------- specs

def test_a_seed_must_fit_in_63_bits():
    validate_spec(_spec(seed=2 ** 63 - 1), source="mine.yaml")
    validate_spec(_spec(seed=0), source="mine.yaml")
    for bad in (2 ** 63, 2 ** 64 - 1, -1, True, 1.5):
        with pytest.raises(ProtocolError, match="seed must be an integer from 0 to 2\\*\\*63 - 1"):
            validate_spec(_spec(seed=bad), source="mine.yaml")


def test_the_scoring_section_is_checked():
    for ok in ("recognizer", "cosine", "euclidean"):
        validate_spec(_spec(scoring={"similarity": ok}), source="mine.yaml")
    with pytest.raises(ProtocolError, match="scoring.similarity must be one of"):
        validate_spec(_spec(scoring={"similarity": "hamming"}), source="mine.yaml")
    with pytest.raises(ProtocolError, match="scoring must be a mapping"):
        validate_spec(_spec(scoring="cosine"), source="mine.yaml")


def test_alignment_landmarks_and_template_must_be_names():
    validate_spec(_spec(alignment={"landmarks": "mtcnn", "template": "ffhq_512"}), source="mine.yaml")
    for key, bad in (("landmarks", ""), ("landmarks", " "), ("template", 5), ("template", None)):
        with pytest.raises(ProtocolError, match=f"alignment.{key} must be a name"):
            validate_spec(_spec(alignment={key: bad}), source="mine.yaml")


def test_image_folders_must_be_a_list_of_names():
    spec = {"protocol": "mine", "dataset": {"format": "lfw-pairs", "pairs": "pairs.txt"}}
    validate_spec(spec, source="mine.yaml")
    spec["dataset"]["images"] = ["lfw", "lfw-deepfunneled"]
    validate_spec(spec, source="mine.yaml")
    for bad in ("lfw-deepfunneled", [], [""], [" "], [3], ["lfw", None]):  # a string would be read letter by letter
        spec["dataset"]["images"] = bad
        with pytest.raises(ProtocolError, match="dataset.images must be a non-empty list of folder names"):
            validate_spec(spec, source="mine.yaml")


def test_a_dataset_that_is_not_a_mapping_is_refused_by_name():
    for ds, shown in (("lfw", "'lfw'"), ({"format": "lfw-pair"}, "'lfw-pair'"), ({"pairs": "p.txt"}, "'None'")):
        with pytest.raises(ProtocolError, match=f"dataset.format must be one of the registered formats .*got {shown}"):
            validate_spec({"protocol": "mine", "dataset": ds}, source="mine.yaml")


def test_fallback_landmarks_must_be_five_finite_numbers():
    five = [[104.7, 113.5], [147.1, 112.5], [126, 137], [108.3, 159.0], [145.3, 158.3]]
    validate_spec(_spec(alignment={"fallback_landmarks": five}), source="mine.yaml")
    for bad in (float("inf"), float("nan"), True, "1"):
        pts = [list(p) for p in five]
        pts[2][1] = bad
        with pytest.raises(ProtocolError, match="fallback_landmarks must be five"):
            validate_spec(_spec(alignment={"fallback_landmarks": pts}), source="mine.yaml")


def test_the_format_of_a_protocol_follows_its_include(tmp_path):
    (tmp_path / "mine.yaml").write_text("include: lfw-ident\nprotocol: mine\nsplit: {min_images: 3}\n")
    (tmp_path / "two.yaml").write_text("include: mine.yaml\nprotocol: two\n")
    for name in ("mine.yaml", "two.yaml"):
        path = str(tmp_path / name)
        assert raw_format(path) == "lfw-ident" and protocol_kind(path) == "identification"
    (tmp_path / "none.yaml").write_text("protocol: none\n")
    assert raw_format(str(tmp_path / "none.yaml")) is None and protocol_kind("lfw") == "verification"


def test_an_escaping_pairs_file_is_named_as_one(tmp_path):
    (tmp_path / "lfw").mkdir()
    (tmp_path / "mine.yaml").write_text("protocol: mine\ndataset: {format: lfw-pairs, pairs: ../pairs.txt}\n")
    with pytest.raises(UnsafePathError, match="^pairs file '../pairs.txt' contains '..'"):
        load_protocol(str(tmp_path / "mine.yaml"), data_root=tmp_path)


@pytest.mark.parametrize("name", ["lfw", "lfw-dev", "lfw-ident", "pairs-csv", "insightface-bin"])
def test_the_shipped_protocols_lint_without_a_note(name):
    """The linter's known keys are each format's own plus the common ones (``format``, ``protocol``, ...)."""
    notes: list[str] = []
    assert validate_protocol_file(PROTOCOLS / f"{name}.yaml", notes=notes) == [] and notes == []
    for key in ("format", "root", "download"):
        assert key in format_card(load_spec(name)[0]["dataset"]["format"]).all_dataset_keys


def test_load_protocol_without_a_name_is_lfw_view2(lfw_root):
    proto = load_protocol(data_root=lfw_root)
    assert proto.name == "lfw" and len(proto.pairs) == 6000 and proto.n_folds == 10


def test_view1_files_are_two_folds_of_equal_classes(lfw_root):
    """pairsDevTrain.txt: 1,100 matched + 1,100 mismatched pairs; pairsDevTest.txt: 500 + 500 (LFW README)."""
    pairs = load_protocol("lfw-dev", data_root=lfw_root).pairs
    for fold, per_class in ((0, 1100), (1, 500)):
        in_fold = pairs.fold == fold
        assert int(pairs.same[in_fold].sum()) == per_class and int((1 - pairs.same[in_fold]).sum()) == per_class
    # every matched pair names one person twice, every mismatched pair two people
    person = [p.split("/")[1] for p in pairs.a], [p.split("/")[1] for p in pairs.b]
    assert all((x == y) == bool(s) for x, y, s in zip(*person, pairs.same))


def test_pairs_relative_to_the_data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "lists").mkdir(parents=True)
    (root / "lists" / "mine.csv").write_text("a/1.jpg,a/2.jpg,1\na/1.jpg,b/1.jpg,0\n")
    monkeypatch.chdir(tmp_path)  # "lists/mine.csv" is not under the current folder: the data root has it
    proto = load_protocol("pairs-csv", data_root=root, pairs="lists/mine.csv")
    assert proto.pairs.a == ["a/1.jpg", "a/1.jpg"] and proto.pairs.same.tolist() == [1, 0]


def test_an_lfw_header_of_no_folds_or_no_pairs_is_refused():
    for header in ("0 3", "0", "-1 2", "2 0", "2 -1"):
        with pytest.raises(ProtocolError, match="header counts must be positive"):
            parse_lfw_pairs(header + "\n")
    rows, folds, per = parse_lfw_pairs("1\nA 1 2\nA 1 B 1\n")
    assert (folds, per) == (1, 1) and [r[4] for r in rows] == [1, 0] and [r[5] for r in rows] == [0, 0]


# ---------------------------------------------------------------------------------------------------- pairs-csv

def test_only_a_first_row_of_column_names_is_a_header():
    pairs = parse_pairs_csv("path_a,path_b,same\nx.jpg,y.jpg,0\n")
    assert pairs.a == ["x.jpg"]
    # a first row with folder paths is a pair, even when its label is spelt "same"
    pairs = parse_pairs_csv("dir/a,dir/b,same\nx.jpg,y.jpg,0\n")
    assert pairs.a == ["dir/a", "x.jpg"] and pairs.same.tolist() == [1, 0]


def test_an_escaping_image_path_is_named_as_one(tmp_path):
    (tmp_path / "p.csv").write_text("../etc/passwd,a.jpg,1\nb.jpg,c.jpg,0\n")
    with pytest.raises(UnsafePathError, match="^image path '../etc/passwd' contains '..'"):
        load_protocol("pairs-csv", data_root=tmp_path, pairs=tmp_path / "p.csv")


def test_every_spelling_of_a_label():
    same = ("1", "true", "TRUE", "same", "yes", "y", "t")
    different = ("0", "false", "different", "diff", "no", "n", "f")
    text = "".join(f"a{i}.jpg,b.jpg,{w}\n" for i, w in enumerate(same + different))
    assert parse_pairs_csv(text).same.tolist() == [1] * len(same) + [0] * len(different)


@pytest.mark.parametrize("n_same, n_diff, n_folds, k", [(3, 20, 10, 3), (20, 3, 10, 3), (25, 25, 10, 10),
                                                        (4, 0, 10, 4), (0, 13, 10, 10), (7, 9, 5, 5), (1, 1, 10, 1)])
def test_folds_without_a_fold_column_hold_both_classes(n_same, n_diff, n_folds, k):
    """Round robin within each class over ``min(n_folds, pairs of the smaller class)`` folds (of the one class when
    the other is absent)."""
    labels = [1] * n_same + [0] * n_diff
    text = "".join(f"a{i}.jpg,b{i}.jpg,{s}\n" for i, s in enumerate(labels))
    pairs = parse_pairs_csv(text, n_folds=n_folds)
    assert sorted(set(pairs.fold.tolist())) == list(range(k))
    for label in (0, 1):
        folds = pairs.fold[pairs.same == label].tolist()
        assert folds == [i % k for i in range(len(folds))]
    if n_same and n_diff:
        assert all({0, 1} <= set(pairs.same[pairs.fold == f].tolist()) for f in range(k))


# ---------------------------------------------------------------------------------------------------- split

def test_split_items_are_a_list_gallery_first_without_repeats():
    enrolled = {"A": ["f/A/A_0001.jpg", "f/A/A_0002.jpg", "f/A/A_0003.jpg"], "B": ["f/B/B_0001.jpg", "f/B/B_0002.jpg"]}
    split = build_split(enrolled, {"C": "f/C/C_0001.jpg"}, {"f/A/A_0001.jpg": "no face"})
    assert split.gallery == ["f/A/A_0002.jpg", "f/B/B_0001.jpg", "f/C/C_0001.jpg"]
    assert split.probes == ["f/A/A_0003.jpg", "f/B/B_0002.jpg"] and split.probe_mate.tolist() == [0, 1]
    assert split.items == split.gallery + split.probes and isinstance(split.items, list)
    assert split.items[-1] == "f/B/B_0002.jpg"
    dropped = build_split(enrolled, {}, {"f/B/B_0001.jpg": "no face", "f/B/B_0002.jpg": "unreadable"})
    assert dropped.gallery_people == ["A"] and dropped.skipped == [
        {"item": "f/B/B_0001.jpg", "reason": "no face"}, {"item": "f/B/B_0002.jpg", "reason": "unreadable"},
        {"item": "B", "reason": "no usable image: person dropped"}]


def test_split_option_limits():
    for ok in (SplitOptions(min_images=2), SplitOptions(max_probes_per_person=1), SplitOptions(max_distractors=0)):
        ok.validate()
    for bad, message in ((SplitOptions(min_images=1), "--min-images must be at least 2"),
                         (SplitOptions(max_probes_per_person=0), "--max-probes-per-person must be at least 1"),
                         (SplitOptions(max_distractors=-1), "--max-distractors must be >= 0")):
        with pytest.raises(ValueError, match=message):
            bad.validate()


def test_split_options_come_from_the_spec_and_non_none_overrides():
    spec = {"split": {"gallery": "first", "min_images": 3, "max_probes_per_person": 2, "distractors": False,
                      "max_distractors": 5}}
    assert split_options(spec) == SplitOptions(3, 2, False, 5)
    assert split_options(spec, min_images=None, max_distractors=7) == SplitOptions(3, 2, False, 7)
    assert split_options({}) == SplitOptions(2, None, True, None)


# ---------------------------------------------------------------------------------------------------- search

def test_a_vector_index_is_flat_unless_ivf_lists_are_asked_for():
    vectors = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    for backend in ("numpy", "auto"):
        assert VectorIndex(vectors, backend=backend).kind == "flat"


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_top_k_beyond_the_vectors_pads_with_minus_inf_and_no_id(backend):
    if backend == "faiss":
        pytest.importorskip("faiss", reason="faiss-cpu is the [faiss] extra")
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(5, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    q = rng.normal(size=(3, 4)).astype(np.float32)
    scores, ids = VectorIndex(vectors, backend=backend).search(q, 8)
    brute = q @ vectors.T
    np.testing.assert_array_equal(ids[:, :5], np.argsort(-brute, axis=1, kind="stable"))
    np.testing.assert_allclose(scores[:, :5], -np.sort(-brute, axis=1), atol=1e-5)
    assert (ids[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    top1 = VectorIndex(vectors, backend=backend).search(q, 1)[1]
    np.testing.assert_array_equal(top1[:, 0], ids[:, 0])


def test_a_gallery_describes_its_size_and_cells():
    vectors = np.random.default_rng(3).normal(size=(7, 5)).astype(np.float32)
    codes = {"gender": np.array([0, 1, 1, -1, 0, 1, 1])}
    desc = GalleryIndex(vectors, codes=codes, partition_by=("gender",), backend="numpy").describe()
    assert (desc["size"], desc["dim"], desc["backend"], desc["index"], desc["gpu"]) == (7, 5, "numpy", "flat", False)
    assert desc["cells"] == {"-1": 1, "0": 2, "1": 4} and desc["filter_mode"] == "partition"


def test_a_cuda_device_puts_the_index_on_that_gpu(monkeypatch):
    """The GPU path without a GPU: a stand-in faiss module that reports two GPUs records where each index goes."""
    real = pytest.importorskip("faiss", reason="faiss-cpu is the [faiss] extra")
    placed: list[int] = []

    class TwoGpus:
        StandardGpuResources = object

        def __getattr__(self, name):
            return getattr(real, name)

        def get_num_gpus(self):
            return 2

        def index_cpu_to_gpu(self, resources, device, index):
            placed.append(device)
            return index

    monkeypatch.setattr(retrieval, "_FAISS", TwoGpus())
    monkeypatch.setattr(retrieval, "_GPU_RESOURCES", {})
    vectors = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
    for device in ("cuda:1", "cuda", "cuda:0", "cpu"):
        assert VectorIndex(vectors, backend="faiss", device=device).on_gpu == (device != "cpu")
    assert placed == [1, 0, 0] and sorted(retrieval._GPU_RESOURCES) == [0, 1]


def test_age_tolerance_stops_at_the_first_and_last_group():
    """Each probe's allowed age groups are ``AgeGroups.allowed(code, tolerance)``: never a group that does not exist."""
    groups = AgeGroups()
    age = np.eye(4)
    gender = np.tile([0.5, 0.5], (4, 1))  # never confident: only age constrains
    for tolerance in (0, 1, 2, 5):
        cons = probe_constraints({"gender": gender, "age": age}, AttributeFilter(age_tolerance=tolerance))
        assert [c[1] for c in cons] == [frozenset(groups.allowed(g, tolerance)) for g in range(4)]
        assert all(c[0] is None for c in cons)
    assert groups.allowed(3, 1) == (2, 3) and groups.allowed(0, 1) == (0, 1) and groups.allowed(1, 5) == (0, 1, 2, 3)


# ---------------------------------------------------------------------------------------------------- attributes

def test_image_keys_of_windows_paths():
    assert image_key("lfw\\Ann_Veneman\\Ann_Veneman_0004.jpg") == "Ann_Veneman_0004"
    assert person_of("C:\\data\\lfw\\Roh_Moo-hyun\\Roh_Moo-hyun_0003.jpg") == "Roh_Moo-hyun"


def test_gaussian_group_probabilities_of_a_scalar_and_a_column():
    groups = AgeGroups()
    z = [(e - 30.0) / (10.0 * math.sqrt(2.0)) for e in (13.0, 20.0, 60.0)]
    cdf = [0.0] + [0.5 * (1 + math.erf(v)) for v in z] + [1.0]
    want = np.diff(cdf)
    np.testing.assert_allclose(groups.from_gaussian(30.0, 10.0), [want], atol=1e-12)
    np.testing.assert_allclose(groups.from_gaussian(np.array([[30.0], [30.0]]), 10.0), [want, want], atol=1e-12)
    assert groups.from_gaussian(60.0, 0.0).tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_fit_reweighting_refuses_probabilities_of_the_wrong_shape():
    y = {"gender": np.array([0, 1])}
    for bad in (np.full((2, 3), 0.5), np.full(2, 0.5), np.full((2, 1), 0.5)):
        with pytest.raises(ValueError, match="fit_reweighting: expected probabilities \\[N, 2\\]"):
            fit_reweighting(bad, y, {"gender": 2}, max_iter=1)
    for labels in (np.array([0, 2]), np.array([0]), np.array([[0, 1]])):  # a class that does not exist, a wrong shape
        with pytest.raises(ValueError, match="labels for gender must be 2 class indices in -1...1"):
            fit_reweighting(np.full((2, 2), 0.5), {"gender": labels}, {"gender": 2}, max_iter=1)


def test_reweighting_refuses_infinite_and_negative_probabilities():
    module = AttributeReweighting({"gender": 2})
    module.refine(np.array([[0.3, 0.7]]))
    for bad in ([[np.inf, 0.5]], [[-0.1, 1.1]], [[np.nan, 0.5]], [[0.5, -np.inf]]):
        with pytest.raises(ValueError, match="finite and >= 0"):
            module.refine(np.array(bad))


def test_an_attribute_without_labels_is_unlabelled_whatever_its_classes():
    """A one-group age schema (``AgeGroups((), ("all",))``) with gender labels only: nothing to check for age."""
    rng = np.random.default_rng(0)
    gender = rng.dirichlet([1, 1], size=20)
    a = np.concatenate([gender, np.ones((20, 1))], 1)
    module = fit_reweighting(a, {"gender": (gender[:, 1] > 0.5).astype(int)}, {"gender": 2, "age": 1}, max_iter=5)
    refined = module.refine(a)
    assert np.allclose(refined["age"], 1.0) and np.allclose(refined["gender"].sum(1), 1.0)


def test_attribute_report_by_hand():
    y = np.array([0, 1, 1, -1])
    p = np.array([[0.8, 0.2], [0.4, 0.6], [0.7, 0.3], [0.5, 0.5]])
    rep = attribute_report(y, p, ["female", "male"], n_bins=2)
    assert rep["n"] == 3 and rep["accuracy"] == pytest.approx(2 / 3)
    assert rep["balanced_accuracy"] == pytest.approx((1 + 0.5) / 2)
    assert rep["nll"] == pytest.approx(-(math.log(0.8) + math.log(0.6) + math.log(0.3)) / 3)
    # bins (0, .5], (.5, 1]: all three confidences (.8, .6, .7) in the upper one, 2 of 3 correct
    assert rep["ece"] == pytest.approx(abs(2 / 3 - 0.7))
    assert rep["label_counts"] == {"female": 1, "male": 2} and rep["confusion"] == [[1, 0], [1, 1]]


def test_consistency_of_no_faces_and_by_hand():
    empty = consistency_report(np.zeros((0, 4)), np.zeros((0, 4)), ordinal=True)
    assert empty["n"] == 0 and math.isnan(empty["changed_rate"])
    clean = np.eye(4)[[0, 1, 2, 3]]
    other = np.eye(4)[[0, 3, 1, 3]]  # shifts 0, +2, -1, 0
    rep = consistency_report(clean, other, ordinal=True)
    assert rep["n"] == 4 and rep["changed_rate"] == 0.5 and rep["tv_distance"] == 0.5
    assert rep["mean_abs_shift"] == 0.75 and rep["moved_beyond_neighbour_rate"] == 0.25
    assert rep["mean_signed_shift"] == 0.25

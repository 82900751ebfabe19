"""Round 18, third mutation pass: protocol files, the identification split, filtered retrieval and attributes.

Each test here fails on a mutant that survived the modules' own tests (docs/reliability.md, "Round 18: mutation
testing, third pass"); the answers are the official files' known counts, hand-computed cases or brute force.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pytest

from restorever.attributes.groups import AgeGroups
from restorever.attributes.metrics import attribute_report, consistency_report
from restorever.attributes.reweighting import AttributeReweighting, fit_reweighting
from restorever.datasets_ident import SplitOptions, split_options
from restorever.errors import ProtocolError, UnsafePathError
from restorever.protocol import load_protocol, load_spec, parse_pairs_csv, validate_spec
from restorever.formats import format_card
from restorever import retrieval
from restorever.retrieval import AttributeFilter, VectorIndex, probe_constraints
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


# ---------------------------------------------------------------------------------------------------- split

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

def test_fit_reweighting_refuses_probabilities_of_the_wrong_shape():
    y = {"gender": np.array([0, 1])}
    for bad in (np.full((2, 3), 0.5), np.full(2, 0.5), np.full((2, 1), 0.5)):
        with pytest.raises(ValueError, match="fit_reweighting: expected probabilities \\[N, 2\\]"):
            fit_reweighting(bad, y, {"gender": 2}, max_iter=1)


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


# ---------------------------------------------------------------------------------------------------- __all__

@pytest.mark.parametrize("module", ["restorever.protocol", "restorever.datasets_ident"])
def test_every_exported_name_exists(module):
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    assert names, module
    namespace: dict = {}
    exec(f"from {module} import *", namespace)  # noqa: S102 - what a user's star import does
    assert [n for n in names if n not in namespace] == []

"""Round 21, twelfth mutation pass: the run's middle (one verification run, one identification run, stage 1's
landmarks and ``--on-error``, pasting a face back, the run lock). Each test closes a gap a surviving mutant showed:
an item dropped, repeated or paired with the wrong one, or a lock that names the wrong holder, with no test failing.
"""
from __future__ import annotations

import os

import pytest

from restorever.errors import RestoreverError
from restorever.pipeline.lock import RunLock, RunLockedError


def test_the_lock_file_names_its_holder_alone_after_any_earlier_run(tmp_path):
    """The lock file is opened for appending; without its truncation the second run's id was written after the
    first's (``pid 11pid 22``), and a refused run named a holder that does not exist."""
    (tmp_path / ".restorever.lock").write_text("pid 999999 left by a killed run")
    with RunLock(tmp_path):
        assert (tmp_path / ".restorever.lock").read_text() == f"pid {os.getpid()}"
        with pytest.raises(RunLockedError) as refused:
            with RunLock(tmp_path):
                pass
    assert f"{tmp_path} is being written by pid {os.getpid()}; wait for it" in str(refused.value)
    with RunLock(tmp_path):  # released, taken again: still the one holder
        assert (tmp_path / ".restorever.lock").read_text() == f"pid {os.getpid()}"


def test_an_embedding_probe_runs_only_with_the_age_bins_it_was_fitted_on(tmp_path):
    """``--age-bins`` must equal the probe's own edges: a probe's age head has one output per fitted group, so
    other edges would read its outputs as other groups. The same edges are accepted, other ones refused."""
    from restorever.attributes.groups import AgeGroups, AttributeSchema
    from restorever.attributes.predictor import FitOptions, fit_attribute_predictor
    from restorever.pipeline.identification import IdentConfig, _attribute_model, attribute_settings

    from ..attributes.test_probe_reweighting import synthetic

    x, labels, people = synthetic(n_people=12, per_person=3)
    model, _ = fit_attribute_predictor(x, labels, people, AttributeSchema(AgeGroups.parse([30, 50, 70])),
                                       recognizer="dlib", options=FitOptions(folds=2, reweight_hidden=2, max_iter=20))
    path = str(model.save(tmp_path / "probe.pt"))
    same = IdentConfig(attribute_model=path, age_bins=[30, 50, 70])
    _, schema, _, description = _attribute_model(same, attribute_settings(same, {}), [])
    assert list(schema.age_groups.edges) == [30.0, 50.0, 70.0] and description["kind"] == "embedding"
    other = IdentConfig(attribute_model=path, age_bins=[13, 20, 60])
    with pytest.raises(RestoreverError, match=r"has age bins \[30.0, 50.0, 70.0\]; refit it with --age-bins"):
        _attribute_model(other, attribute_settings(other, {}), [])


def test_limit_pairs_deals_one_pair_per_group_in_turn_and_stops_at_n(lfw_root):
    """``--limit-pairs 25`` on LFW View 2 (10 folds x 2 classes): the first pair of each of the 20 groups, then the
    second pair of the first five groups visited (fold 1 same, fold 1 different, fold 2 same, ...), and no more.
    Taking a group's next pair while the subset was already full (``and`` made ``or``) went unseen because every
    tested size was a multiple of 20."""
    from restorever.pipeline.evaluate import limit_pairs
    from restorever.protocol import load_protocol

    pairs = load_protocol("lfw", data_root=lfw_root).pairs
    # each fold is 300 matched then 300 mismatched pairs after the header line: group starts at lines 2, 302, ...
    first = [2 + 300 * g for g in range(20)]
    second = [3 + 300 * g for g in range(5)]
    for n, expected in ((25, first + second), (7, first[:7]), (2, first[:2])):
        subset = limit_pairs(pairs, n)
        assert sorted(subset.lines) == sorted(expected), n
        assert len(subset) == n and subset.lines == sorted(subset.lines)
        assert set(subset.same.tolist()) == {0, 1}  # both classes, even for n = 2


def _blank_root(faces_root, tmp_path):
    """A data root with two photos of each of three people and one grey image (no face) in ``c/``, and a pairs
    CSV with folds that uses the grey image in two pairs (lines 5 and 7)."""
    import shutil

    from PIL import Image

    people = {"a": "ben_afflek", "b": "elton_john", "c": "madonna"}
    for short, name in people.items():
        (tmp_path / short).mkdir(parents=True)
        for k in (1, 2):
            shutil.copy(faces_root / name / f"{name}_{k:04d}.jpg", tmp_path / short / f"{short}{k}.jpg")
    Image.new("RGB", (250, 250), (128, 128, 128)).save(tmp_path / "c" / "grey.png")
    rows = [("a/a1.jpg", "a/a2.jpg", 1, 0), ("b/b1.jpg", "b/b2.jpg", 1, 1), ("a/a1.jpg", "b/b1.jpg", 0, 0),
            ("c/c1.jpg", "c/grey.png", 1, 1), ("b/b2.jpg", "c/c2.jpg", 0, 1), ("c/grey.png", "a/a2.jpg", 0, 0),
            ("c/c1.jpg", "c/c2.jpg", 1, 0)]
    csv = tmp_path / "pairs.csv"
    csv.write_text("path_a,path_b,same,fold\n" + "".join(f"{a},{b},{s},{f}\n" for a, b, s, f in rows))
    return csv, rows


def test_a_skipped_image_s_pairs_are_recorded_whole_and_every_other_pair_is_scored_once(faces_root, tmp_path,
                                                                                          monkeypatch):
    """``--on-error skip``: each pair of the grey image is listed under ``skipped`` with its line, both images, the
    reason, its label and fold (an entry without ``a``, ``b`` or ``fold`` went unseen), and each other pair is scored
    exactly once, in file order, with its own label and fold, in every condition. ``progress=False`` reaches every
    stage's bar (``progress and is_main`` made ``or`` showed them anyway; bars draw only on a terminal)."""
    import restorever.pipeline.evaluate as ev
    import restorever.pipeline.landmarks as lm
    from restorever.pipeline.evaluate import EvalConfig, evaluate

    asked = []
    for module in (ev, lm):
        real = module.progress_bar
        monkeypatch.setattr(module, "progress_bar", lambda it, total, desc, enabled, real=real: (
            asked.append((desc, enabled)), real(it, total, desc, enabled))[1])

    csv, rows = _blank_root(faces_root, tmp_path / "data")
    record = evaluate(EvalConfig(protocol="pairs-csv", pairs=str(csv), data_root=str(tmp_path / "data"),
                                 scales=[8], on_error="skip", seed=0, cache_dir=str(tmp_path / "cache")),
                      progress=False)
    proto = record["protocol"]
    reason = f"{tmp_path / 'data' / 'c' / 'grey.png'}: no face found by mtcnn"
    assert proto["skipped"] == [
        {"pair": 5, "a": "c/c1.jpg", "b": "c/grey.png", "reason": reason, "same": 1, "fold": 1},
        {"pair": 7, "a": "c/grey.png", "b": "a/a2.jpg", "reason": reason, "same": 0, "fold": 0}]
    assert proto["failed_images"] == [{"image": "c/grey.png", "reason": reason}]
    assert proto["pairs"] == 5 and proto["pairs_requested"] == 7 and proto["images"] == 6
    kept = [r for r in rows if "c/grey.png" not in r[:2]]
    assert record["pairs"] == {"a": [r[0] for r in kept], "b": [r[1] for r in kept]}
    assert [c["scale"] for c in record["conditions"]] == [None, 8]
    for condition in record["conditions"]:
        scores = condition["scores"]
        assert scores["same"] == [r[2] for r in kept] and scores["fold"] == [r[3] for r in kept]
        assert len(scores["score"]) == 5
    assert {r["item"] for r in record["degradation_records"]} == {r[1] for r in kept}  # the probes, each once
    assert len(record["degradation_records"]) == 4  # c/c2.jpg is the probe of two pairs, drawn once
    # a fresh cache: the landmarks of the 7 images, the clean embeddings of the 6 kept, the x8 ones of the 4 probes
    # (``none`` is not cached); no detector ran on a degraded crop, as the clean alignment asks
    assert record["cache"]["misses"] == 7 + 6 + 4 and record["cache"]["hits"] == 0
    assert {desc for desc, _ in asked} == {"landmarks", "embeddings"} and not any(on for _, on in asked)
    timings = record["timings"]  # every stage's seconds lie within the run's
    assert all(0 <= timings[k] <= timings["total_s"] for k in ("landmarks_s", "embeddings_s", "align_s", "embed_s"))


def test_a_protocol_s_fallback_landmarks_rescue_a_missed_face_and_only_that(faces_root, tmp_path):
    """A protocol declaring ``alignment.fallback_landmarks`` (a user's own, for centred faces) gives them to the
    image where no face was found, so its pairs are scored; the faces found keep theirs, and an unreadable image is
    still skipped. Reading another section (``alignment`` renamed) or the test negated went unseen: no shipped
    protocol declares them."""
    import numpy as np

    from restorever.pipeline.evaluate import EvalConfig, build_context
    from restorever.pipeline.landmarks import apply_error_policy, apply_fallback_landmarks, landmark_stage
    from restorever.protocol import load_protocol

    csv, rows = _blank_root(faces_root, tmp_path / "data")
    (tmp_path / "data" / "c" / "broken.jpg").write_bytes(b"not a JPEG")
    csv.write_text(csv.read_text() + "c/broken.jpg,a/a1.jpg,0,1\n")
    points = [[95.0, 115.0], [155.0, 115.0], [125.0, 145.0], [100.0, 175.0], [150.0, 175.0]]
    spec = tmp_path / "centred.yaml"
    spec.write_text(f"include: pairs-csv\nprotocol: centred\nalignment: {{fallback_landmarks: {points}}}\n")
    protocol = load_protocol(str(spec), data_root=tmp_path / "data", pairs=csv)
    ctx = build_context(EvalConfig(protocol=str(spec), cache_dir=str(tmp_path / "cache")), protocol)
    items = protocol.pairs.images()
    info = landmark_stage(protocol, items, detector="mtcnn", device=ctx.device, cache=ctx.cache, progress=False)
    found = {i: info[i].landmarks.copy() for i in items if info[i].landmarks is not None}
    assert sorted(found) == sorted(({r[0] for r in rows} | {r[1] for r in rows}) - {"c/grey.png"})
    assert apply_fallback_landmarks(protocol, info) == ["c/grey.png"]
    assert np.array_equal(info["c/grey.png"].landmarks, np.asarray(points, np.float32))
    assert info["c/grey.png"].error is None and not info["c/grey.png"].no_face
    assert all(np.array_equal(info[i].landmarks, lm) for i, lm in found.items())  # the found faces keep theirs
    assert list(apply_error_policy(info, "skip")) == ["c/broken.jpg"]  # unreadable: no landmarks to fall back on
    assert info["c/broken.jpg"].landmarks is None


def test_leaving_the_lock_releases_it_while_the_lock_object_is_still_alive(tmp_path):
    """``__exit__`` must release the ``flock`` itself: with the release skipped, the lock was still let go when the
    unreferenced object was collected, so the tests passed; a reference kept alive (a caught error's traceback in a
    notebook, ``with RunLock(out) as lock``) kept the folder locked against the same process's next run."""
    lock = RunLock(tmp_path)
    with lock:
        pass
    with RunLock(tmp_path):  # ``lock`` is alive: only its own __exit__ can have released the flock
        pass
    kept = []
    try:
        with RunLock(tmp_path) as held:
            raise ValueError("the run failed")
    except ValueError as exc:
        kept.append((held, exc))  # the error and the lock object kept, as a notebook keeps the last traceback
    with RunLock(tmp_path):
        assert (tmp_path / ".restorever.lock").read_text() == f"pid {os.getpid()}"
    assert kept[0][0]._fh is None  # its file closed, not left to the garbage collector


def test_a_scale_must_be_a_positive_whole_number_and_x1_is_one():
    """``x1`` (blur, noise and JPEG at full size) is a valid scale; 0 and negative scales are refused with the
    option named. ``< 1`` made ``<= 1`` (x1 refused) and ``or`` made ``and`` (0 taken) went unseen."""
    from restorever.errors import ConfigError
    from restorever.pipeline.evaluate import EvalConfig

    config = EvalConfig(scales=[1, "2", 4.0])
    config.validate()
    assert config.scales == [1, 2, 4]
    for bad in ([0], [-4], [1, 0], ["x"], [2.5]):
        with pytest.raises(ConfigError, match=r"scales.*must be positive integers"):
            EvalConfig(scales=bad).validate()


def test_a_pixel_model_s_raw_and_reweighted_probabilities_are_not_swapped(tmp_path):
    """For a pixel attribute model the embedding stage stores its probability vectors; ``raw`` must be those
    vectors split per attribute, ``reweighted`` the ``--reweight`` checkpoint's module applied to them. The test
    negated (raw reweighted and reweighted raw) went unseen: the CLI run only checks both sections exist."""
    import numpy as np

    pytest.importorskip("onnxruntime", reason="the onnx extra runs genderage.onnx")
    from restorever.attributes import load_attribute_model
    from restorever.attributes.groups import AgeGroups, AttributeSchema
    from restorever.attributes.predictor import FitOptions, fit_attribute_predictor
    from restorever.pipeline.identification import _predict

    from ..attributes.test_insightface import _model
    from ..attributes.test_probe_reweighting import synthetic

    pixel = load_attribute_model("insightface-genderage", weights={"model": str(_model(tmp_path / "ga.onnx"))})
    schema = pixel.schema
    x, labels, people = synthetic(n_people=12, per_person=3)
    probe, _ = fit_attribute_predictor(x, labels, people, AttributeSchema(AgeGroups.parse(
        list(schema.age_groups.edges))), recognizer="dlib", options=FitOptions(folds=2, reweight_hidden=2,
                                                                                max_iter=20))
    rng = np.random.default_rng(1)
    vectors = np.concatenate([rng.dirichlet([1] * n, 5) for n in schema.sizes.values()], axis=1)
    names = [f"q{i}" for i in range(5)]  # people the module never saw: the final module refines them
    raw = _predict(pixel, schema, probe, vectors, names, reweighted=False)
    refined = _predict(pixel, schema, probe, vectors, names, reweighted=True)
    expected = probe.refine(vectors, people=names)
    for a, n in schema.sizes.items():
        start = sum(list(schema.sizes.values())[:list(schema.sizes).index(a)])
        np.testing.assert_array_equal(raw[a], vectors[:, start:start + n])
        np.testing.assert_allclose(refined[a], expected[a])
        assert not np.allclose(refined[a], raw[a])  # the module changes them: the two are told apart
    with pytest.raises(RestoreverError, match="no re-weighting module of its own; pass --reweight PATH"):
        _predict(pixel, schema, "own", vectors, names, reweighted=True)


def test_a_probe_fitted_on_other_weights_names_every_file_of_both_sides(caplog):
    """A recognizer with two weight files (roles) is compared as a set of ``(role, sha256)``: the same files in
    another order pass, one other file is refused, and the message lists each side's files as ``role sha12``
    separated by commas (another separator went unseen: dlib has one file)."""
    from restorever.pipeline.identification import _check_fitted_weights

    run = [("model", "a" * 64), ("detector", "b" * 64)]
    _check_fitted_weights("probe.pt", [["detector", "b" * 64], ["model", "a" * 64]], run)
    with pytest.raises(RestoreverError) as refused:
        _check_fitted_weights("probe.pt", [["detector", "b" * 64], ["model", "c" * 64]], run)
    assert str(refused.value).startswith(
        f"attribute model probe.pt was fitted on recognizer weights detector {'b' * 12}, model {'c' * 12}; this run "
        f"loads detector {'b' * 12}, model {'a' * 12}. Use the same --recognizer-weights")
    with pytest.raises(RestoreverError, match=r"fitted on recognizer weights none; this run loads detector"):
        _check_fitted_weights("probe.pt", [], run)
    with caplog.at_level("WARNING"):
        _check_fitted_weights("old.pt", None, run)  # made before the weights were recorded: a warning only
    assert "attribute model old.pt does not record which recognizer weights" in caplog.text


def test_the_index_asked_for_is_the_index_the_gallery_is_built_with(lfw_root, tmp_path, caplog):
    """``--index ivf --ivf-nlist 64`` must reach the gallery index (here 10 entries, too few for 64 lists: searched
    exactly, with the warning that says why) and the default flat index must ask for no lists. The if-expression
    swapped (flat runs built as IVF, IVF runs as flat) went unseen: small galleries are searched exactly either way,
    while a full LFW gallery would have been searched approximately under ``index: flat``."""
    from restorever.pipeline.identification import IdentConfig, evaluate_identification

    small = dict(data_root=str(lfw_root), min_images=100, max_probes_per_person=2, max_distractors=5,
                 cache_dir=str(tmp_path / "cache"))
    with caplog.at_level("WARNING", logger="restorever.retrieval"):
        flat = evaluate_identification(IdentConfig(**small), progress=False)
    assert flat["index"]["index"] == "flat" and flat["index"]["size"] == 10
    assert "an IVF index was asked for" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="restorever.retrieval"):
        ivf = evaluate_identification(IdentConfig(**small, index="ivf", ivf_nlist=64), progress=False)
    assert "an IVF index was asked for, but the gallery is searched exactly (flat): 10 entries are fewer than " \
           "39 per list x 64 lists" in caplog.text
    timing = ("search_s", "search_ms_per_query")
    assert {k: v for k, v in ivf["conditions"][0]["retrieval"].items() if k not in timing} == \
        {k: v for k, v in flat["conditions"][0]["retrieval"].items() if k not in timing}  # both exact


def test_a_protocol_asking_identification_for_another_similarity_is_the_protocol_s_error():
    """``scoring.similarity: euclidean`` in an identification protocol is the protocol file's fault (a
    ``ProtocolError`` naming the protocol and the fix), the same value from the command line the option's
    (``ConfigError``). Reading another source key turned the first into the second and went unseen."""
    from restorever.errors import ConfigError, ProtocolError
    from restorever.pipeline.identification import IdentConfig, search_similarity
    from restorever.pipeline.protocol_defaults import resolve_protocol_defaults
    from restorever.protocol_specs import load_spec

    spec, _ = load_spec("lfw-ident")
    euclidean = {**spec, "scoring": {**spec.get("scoring", {}), "similarity": "euclidean"}}
    with pytest.raises(ProtocolError, match=r"protocol lfw-ident: scoring.similarity: identification searches by "
                                            r"cosine similarity; got 'euclidean'; set it to cosine"):
        search_similarity(resolve_protocol_defaults(IdentConfig(), euclidean))
    with pytest.raises(ConfigError) as option:
        search_similarity(resolve_protocol_defaults(IdentConfig(similarity="euclidean"), spec))
    assert not isinstance(option.value, ProtocolError) and "similarity" in str(option.value)


def test_attribute_settings_fall_back_to_the_schema_s_own_defaults():
    """A protocol without an ``attributes`` section and no options: filter gender and age at 0.9, tolerance 1, and
    the age edges of the default :class:`AgeGroups` (13, 20, 60), so a probe fitted with defaults matches a run
    with defaults. Other default edges went unseen: ``lfw-ident`` states its own."""
    from restorever.attributes.groups import AgeGroups
    from restorever.pipeline.identification import IdentConfig, attribute_settings

    assert attribute_settings(IdentConfig(), {}) == {"filter": ["gender", "age"], "threshold": 0.9,
                                                     "age_tolerance": 1,
                                                     "age_bins": [float(e) for e in AgeGroups().edges]}
    assert AgeGroups().edges == (13, 20, 60)
    given = IdentConfig(attribute_filter=["age", "age"], filter_threshold=0.5, age_tolerance=0, age_bins=[30, 50])
    assert attribute_settings(given, {"attributes": {"age_bins": [1, 2]}}) == {
        "filter": ["age"], "threshold": 0.5, "age_tolerance": 0, "age_bins": [30, 50]}



def test_a_filter_on_an_attribute_the_model_lacks_names_the_filter_that_works(lfw_root, tmp_path):
    """A probe fitted for gender only, asked to filter by gender and age, must say to pass ``--attribute-filter
    gender``; asked for age alone, ``--attribute-filter none``. The two fixes swapped went unseen."""
    from restorever.attributes.groups import AttributeSchema
    from restorever.attributes.predictor import FitOptions, fit_attribute_predictor
    from restorever.pipeline.identification import IdentConfig, evaluate_identification

    from ..attributes.test_probe_reweighting import synthetic

    x, labels, people = synthetic(n_people=12, per_person=3, dim=128)
    model, _ = fit_attribute_predictor(x, {"gender": labels["gender"]}, people, AttributeSchema(attributes=("gender",)),
                                       recognizer="dlib", options=FitOptions(folds=2, max_iter=20), reweight=False)
    path = str(model.save(tmp_path / "gender.pt"))
    small = dict(data_root=str(lfw_root), min_images=100, max_probes_per_person=2, max_distractors=5,
                 cache_dir=str(tmp_path / "cache"), attribute_model=path)
    for asked, fix in ((["gender", "age"], "--attribute-filter gender"), (["age"], "--attribute-filter none")):
        with pytest.raises(RestoreverError, match=rf"--attribute-filter age: the attribute model does not predict it "
                                                  rf"\(it predicts gender\); pass {fix}$"):
            evaluate_identification(IdentConfig(**small, attribute_filter=asked), progress=False)


def test_a_pixel_model_run_records_its_attribute_stage_seconds_within_the_run_s(lfw_root, tmp_path):
    """The attribute stage of a pixel model is timed as ``now - start`` (``+`` recorded the clock's reading plus
    the start, a number of days, unseen): every stage's seconds lie within ``total_s``."""
    pytest.importorskip("onnxruntime", reason="the onnx extra runs genderage.onnx")
    from restorever.pipeline.identification import IdentConfig, evaluate_identification

    from ..attributes.test_insightface import _model

    record = evaluate_identification(IdentConfig(
        data_root=str(lfw_root), min_images=100, max_probes_per_person=2, max_distractors=5,
        cache_dir=str(tmp_path / "cache"), attribute_model="insightface-genderage",
        attribute_weights={"model": str(_model(tmp_path / "ga.onnx"))}, attribute_filter=["gender"],
        filter_threshold=0.5), progress=False)
    timings = record["timings"]
    assert record["attribute_model"]["kind"] == "image"
    assert all(0 <= timings[k] <= timings["total_s"] for k in ("landmarks_s", "embeddings_s", "attributes_s"))

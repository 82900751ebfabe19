"""The library API (FacePipeline) on real photos: every input form gives the same embedding, the embeddings are
exactly those of `restorever eval`, faces are chosen as asked, and the README's library example runs as written."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import restorever
from restorever.api import Face, FacePipeline, RestoreThenEmbed, threshold_from_results
from restorever.errors import ConfigError, FaceNotFoundError, ImageError, RestoreverError, UnknownNameError
from restorever.images import read_image, to_tensor
from restorever.metrics import best_threshold, score_pairs
from restorever.pipeline.evaluate import EvalConfig, build_context, embed_conditions, evaluate, item_seed
from restorever.pipeline.landmarks import landmark_stage
from tests.conftest import two_face_canvas

REPO = Path(__file__).resolve().parent.parent
PAIRS = [("ben_afflek/ben_afflek_0001.jpg", "ben_afflek/ben_afflek_0005.jpg", 1),
         ("ben_afflek/ben_afflek_0001.jpg", "elton_john/elton_john_0005.jpg", 0),
         ("madonna/madonna_0002.jpg", "madonna/madonna_0006.jpg", 1),
         ("madonna/madonna_0002.jpg", "mindy_kaling/mindy_kaling_0006.jpg", 0)]


@pytest.fixture(scope="module")
def pipe():
    return FacePipeline(restorer="none", recognizer="dlib", detector="mtcnn", device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory, faces_root):
    return _eval_run(tmp_path_factory.mktemp("api-eval"), faces_root, "cpu")


def _eval_run(tmp, faces_root, device):
    """A tiny `restorever eval` (clean + x8, seed 3) and the embeddings its pipeline computed per condition."""
    csv = tmp / "pairs.csv"
    csv.write_text("path_a,path_b,same\n" + "".join(f"{a},{b},{s}\n" for a, b, s in PAIRS))
    config = EvalConfig(protocol="pairs-csv", pairs=str(csv), data_root=str(faces_root), scales=[8], seed=3,
                        batch_size=2, cache_dir=str(tmp / "cache"), device=device)
    record = evaluate(config, progress=False)
    # the embeddings the evaluation computed (read back from its cache through the pipeline's own functions)
    ctx = build_context(config)
    items = list(dict.fromkeys([p for a, b, _ in PAIRS for p in (a, b)]))
    info = landmark_stage(ctx.protocol, items, detector="mtcnn", device=ctx.device, cache=ctx.cache, progress=False)
    probes = {b for _, b, _ in PAIRS}
    embeddings, _ = embed_conditions(ctx, items, probes, info, progress=False)
    results = tmp / "results.json"
    results.write_text(json.dumps({k: v for k, v in record.items() if k != "degradation_records"}))
    return {"record": record, "embeddings": embeddings, "items": items, "probes": sorted(probes),
            "results": results}


def test_public_names_are_lazy_exports():
    for name in ("FacePipeline", "Face", "RestoreThenEmbed", "threshold_from_results"):
        assert name in restorever.__all__ and getattr(restorever, name) is not None


@pytest.mark.parametrize("orientation", [2, 6])
def test_a_pil_image_is_turned_upright_as_its_file_is(pipe, faces_root, tmp_path, orientation):
    """A PIL image of an EXIF-rotated photo was embedded sideways: orientation 6 found no face, orientation 2 (a
    mirror) gave another embedding (0.046 off) without a word, while the same file's path matched `eval`."""
    upright = Image.open(faces_root / "madonna" / "madonna_0003.jpg").convert("RGB")
    stored = upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT if orientation == 2 else Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"exif{orientation}.jpg"
    stored.save(path, quality=95, exif=exif.tobytes())
    from_path = pipe.embed(str(path))
    assert torch.equal(pipe.embed(Image.open(path)), from_path)


def test_every_input_form_gives_the_same_embedding(pipe, faces_root):
    path = faces_root / "elton_john" / "elton_john_0003.jpg"
    rgb = read_image(path)
    forms = {
        "str path": (str(path), {}),
        "Path": (path, {}),
        "PIL": (Image.open(path), {}),
        "numpy RGB": (rgb, {}),
        "numpy BGR": (np.ascontiguousarray(rgb[:, :, ::-1]), {"bgr": True}),
        "numpy batch": (rgb[None], {}),
        "float tensor [B,3,H,W]": (to_tensor([rgb]), {}),
        "float tensor [3,H,W]": (to_tensor([rgb])[0], {}),
        "uint8 tensor": (torch.from_numpy(rgb.copy()).permute(2, 0, 1), {}),
    }
    reference = pipe.embed(str(path))
    assert reference.shape == (1, 128) and reference.dtype == torch.float32
    for name, (images, kwargs) in forms.items():
        assert torch.equal(pipe.embed(images, **kwargs), reference), name
    # also with a degradation: the default item id is the pixels' hash, the same for every form
    low = pipe.embed(str(path), degrade=16)
    for name in ("PIL", "numpy BGR", "float tensor [B,3,H,W]"):
        images, kwargs = forms[name]
        assert torch.equal(pipe.embed(images, degrade=16, **kwargs), low), name
    # the BGR array without bgr=True is a different (colour-swapped) image
    assert not torch.equal(pipe.embed(forms["numpy BGR"][0]), reference)
    # a mixed list keeps its order
    mixed = pipe.embed([str(path), to_tensor([rgb]), Image.open(faces_root / "madonna" / "madonna_0001.jpg")])
    assert torch.equal(mixed[:2], reference.expand(2, -1))
    assert not torch.equal(mixed[2], reference[0])


def test_embeddings_equal_the_eval_pipeline(pipe, eval_run, faces_root):
    items, emb = eval_run["items"], eval_run["embeddings"]
    paths = [str(faces_root / i) for i in items]
    clean = pipe.embed(paths)
    np.testing.assert_array_equal(clean.numpy(), np.stack([emb[("none", None)][i] for i in items]))
    probes = eval_run["probes"]
    degraded = pipe.embed([str(faces_root / i) for i in probes], degrade=8, seed=3, item_ids=probes)
    np.testing.assert_array_equal(degraded.numpy(), np.stack([emb[("none", 8)][i] for i in probes]))
    # another seed draws other degradations
    assert not torch.equal(pipe.embed([str(faces_root / probes[0])], degrade=8, seed=4, item_ids=probes[:1]),
                           degraded[:1])
    # and the scores are the evaluation's scores, for both conditions
    a = pipe.embed([str(faces_root / a) for a, _, _ in PAIRS])
    for cond in eval_run["record"]["conditions"]:
        b = pipe.embed([str(faces_root / b) for _, b, _ in PAIRS], degrade=cond["scale"], seed=3,
                       item_ids=[b for _, b, _ in PAIRS])
        assert pipe.similarity_of_embeddings(a, b).tolist() == cond["scores"]["score"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (MTCNN, alignment and degradation on it)")
def test_embeddings_equal_the_eval_pipeline_on_cuda(tmp_path, faces_root):
    run = _eval_run(tmp_path, faces_root, "cuda")
    gpu = FacePipeline(restorer="none", recognizer="dlib", detector="mtcnn", device="cuda", batch_size=3)
    items, probes, emb = run["items"], run["probes"], run["embeddings"]
    np.testing.assert_array_equal(gpu.embed([str(faces_root / i) for i in items]).numpy(),
                                  np.stack([emb[("none", None)][i] for i in items]))
    np.testing.assert_array_equal(gpu.embed([str(faces_root / i) for i in probes], degrade=8, seed=3,
                                            item_ids=probes).numpy(),
                                  np.stack([emb[("none", 8)][i] for i in probes]))


def test_record_has_no_private_keys(eval_run):
    record = eval_run["record"]
    assert not [k for k in record if k.startswith("_")]
    assert {r["scale"] for r in record["degradation_records"]} == {8}


def test_similarity_verify_and_thresholds(pipe, eval_run, faces_root):
    a, b, c = (str(faces_root / p) for p in ("madonna/madonna_0002.jpg", "madonna/madonna_0006.jpg",
                                            "mindy_kaling/mindy_kaling_0006.jpg"))
    same, different = pipe.similarity(a, b), pipe.similarity(a, c)
    assert isinstance(same, float) and same > different
    e = pipe.embed([a, b]).numpy()
    assert same == pipe.similarity_of_embeddings(e[0], e[1]) == score_pairs("euclidean", e[:1], e[1:])[0]
    assert pipe.similarity_of_embeddings(e[0], e).shape == (2,)
    both = pipe.similarity([a, a], [b, c])
    assert both.tolist() == [same, different]
    assert pipe.similarity(a, [b, c]).tolist() == [same, different]  # one image against several
    assert pipe.similarity([b, c], a).tolist() == [same, different]
    with pytest.raises(ConfigError, match="give equal counts, or one image"):
        pipe.similarity([a, a], [a, b, c])
    assert pipe.verify(a, b, threshold=-0.6) and not pipe.verify(a, c, threshold=-0.6)
    assert pipe.verify([a, a], [b, c], threshold=-0.6).tolist() == [True, False]
    # thresholds from a finished run: the exact accuracy-maximising threshold over the condition's pairs
    record = eval_run["record"]
    for cond in record["conditions"]:
        expected, _ = best_threshold(cond["scores"]["same"], cond["scores"]["score"])
        got = threshold_from_results(eval_run["results"], restorer=cond["restorer"], scale=cond["scale"],
                                     recognizer="dlib")
        assert got == expected
    t_clean = threshold_from_results(eval_run["results"])
    assert pipe.verify(a, b, results=eval_run["results"]) == (same > t_clean)
    t8 = threshold_from_results(record, scale=8)
    assert pipe.verify(a, c, results=eval_run["results"], degrade=8) == (pipe.similarity(a, c, degrade=8) > t8)
    with pytest.raises(Exception, match="no condition"):
        threshold_from_results(record, scale=16)
    with pytest.raises(Exception, match="not evaluated"):
        threshold_from_results(record, recognizer="arcface-r50-ms1mv3")
    with pytest.raises(ConfigError, match="threshold"):
        pipe.verify(a, b)
    # a run scored by cosine (scoring.similarity) has thresholds near 0.9, while dlib's scores are minus distances:
    # every pair came out "different" without a word
    cosine = json.loads(json.dumps(record))
    for cond in cosine["conditions"]:
        cond["similarity"] = "cosine"
    with pytest.raises(RestoreverError, match="scored its pairs by cosine similarity, while these scores are "
                                              "euclidean"):
        pipe.verify(a, b, results=cosine)
    assert threshold_from_results(cosine) == t_clean  # asked without a similarity: the run's own threshold


def test_detect_and_face_selection(pipe, faces_root, tmp_path):
    canvas, small, large = two_face_canvas(faces_root)
    faces = pipe.detect(canvas)[0]
    assert len(faces) == 2 and isinstance(faces[0], Face)
    assert faces[0].area > faces[1].area and faces[0].box[0] > 200 > faces[1].box[2]  # largest (right) first
    assert faces[0].landmarks.shape == (5, 2) and 0.9 < faces[0].score <= 1.0
    with pytest.raises(ValueError):
        faces[0].landmarks[0, 0] = 1.0  # read-only
    first = pipe.embed(canvas)
    kps = faces[0].landmarks.copy()

    class InsightFaceLike(dict):  # insightface's Face: a dict with attribute access
        __getattr__ = dict.get

    same_face = [0, "largest", faces[0], tuple(faces[0].box + np.float32([3, -2, 2, 4])), kps, torch.from_numpy(kps),
                 InsightFaceLike(kps=kps, bbox=faces[0].box), {"kps": kps.tolist()}]
    for selector in same_face:
        assert torch.equal(pipe.embed(canvas, face=selector), first), selector
    assert torch.equal(pipe.embed(canvas, face="center"), first)  # eval's rule: Madonna's box is nearer the centre
    second = pipe.embed([canvas, canvas, small, large], face=[1, -1, None, None])
    assert torch.equal(second[0], second[1])
    # the second face is Ben Affleck: close to his own photo, far from Madonna's
    assert pipe.similarity_of_embeddings(second[0], second[2]) > -0.3 > pipe.similarity_of_embeddings(second[0],
                                                                                                          second[3])
    assert pipe.similarity_of_embeddings(first[0], second[3]) > -0.3
    with pytest.raises(FaceNotFoundError, match="face=2"):
        pipe.embed(canvas, face=2)
    with pytest.raises(ConfigError, match="one selector per image"):
        pipe.embed([canvas, canvas], face=[0])
    with pytest.raises(FaceNotFoundError, match="no face"):
        pipe.embed(np.full((120, 120, 3), 128, np.uint8))
    # explicit landmarks skip detection: a blank image embeds
    assert pipe.embed(np.full((120, 120, 3), 128, np.uint8), face=kps / 4).shape == (1, 128)


def test_restore_pastes_back(pipe, faces_root):
    path = str(faces_root / "jerry_seinfeld" / "jerry_seinfeld_0002.jpg")
    photo = to_tensor([read_image(path)])[0]
    out = pipe.restore(path)
    assert out.faces.shape == (1, 3, 512, 512) and out.landmarks.shape == (1, 5, 2)
    assert out.images[0].shape == photo.shape
    assert (out.images[0] - photo).abs().mean() < 0.01  # "none" restores nothing: the photo comes back
    assert torch.equal(out.faces * 255, (out.faces * 255).round())  # 8-bit values, as eval's restored faces
    low = pipe.restore([path], paste_back=False, degrade=16)
    assert low.images is None and (low.faces - out.faces).abs().mean() > 0.01


def test_restore_command_equals_the_library(pipe, faces_root, tmp_path):
    """`restorever restore PHOTO` runs the library's stages: its PNG is FacePipeline.restore's pasted photo, to the
    8-bit level; an aligned crop (``--aligned``) comes back as it went in (restorer none)."""
    from click.testing import CliRunner

    from restorever.cli import cli
    from restorever.images import to_uint8

    path = faces_root / "jerry_seinfeld" / "jerry_seinfeld_0002.jpg"
    want = pipe.restore(str(path), item_ids=[path.name])
    result = CliRunner().invoke(cli, ["restore", str(path), "--restorer", "none", "--device", "cpu",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    got = np.asarray(Image.open(tmp_path / "o" / "jerry_seinfeld_0002.png"))
    expected = to_uint8(want.images[0][None])[0]
    assert got.shape == expected.shape and np.array_equal(got, expected)
    assert not np.array_equal(got, read_image(path))  # the crop was pasted back: resampling left its trace
    crop = tmp_path / "crop.png"
    Image.fromarray(to_uint8(want.faces)[0]).save(crop)
    result = CliRunner().invoke(cli, ["restore", str(crop), "--restorer", "none", "--device", "cpu",
                                      "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "crop.png")), to_uint8(want.faces)[0])
    # --alignment-fit lmeds aligns as FacePipeline(alignment_fit="lmeds"): on this photo LMEDS drops a landmark
    elton = faces_root / "elton_john" / "elton_john_0006.jpg"
    lmeds = FacePipeline(restorer="none", device="cpu", alignment_fit="lmeds").restore(str(elton),
                                                                                       item_ids=[elton.name])
    for fit, want_elton in (("lmeds", lmeds), ("least-squares", pipe.restore(str(elton), item_ids=[elton.name]))):
        result = CliRunner().invoke(cli, ["restore", str(elton), "--restorer", "none", "--device", "cpu",
                                          "--alignment-fit", fit, "--out", str(tmp_path / fit)])
        assert result.exit_code == 0, result.output
        got = np.asarray(Image.open(tmp_path / fit / "elton_john_0006.png"))
        assert np.array_equal(got, to_uint8(want_elton.images[0][None])[0]), fit
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "lmeds" / "elton_john_0006.png")),
                              np.asarray(Image.open(tmp_path / "least-squares" / "elton_john_0006.png")))


def test_restore_then_embed_module(pipe, faces_root):
    from restorever.degradation import Degradation
    from restorever.pipeline.stages import align_faces

    path = str(faces_root / "mindy_kaling" / "mindy_kaling_0004.jpg")
    module = pipe.module()
    assert isinstance(module, torch.nn.Module) and isinstance(module, RestoreThenEmbed)
    assert module.restorer is pipe.restorer and module.recognizer is pipe.recognizer
    landmarks = pipe.detect(path)[0][0].landmarks[None]
    faces, crop_lms = align_faces([to_tensor([read_image(path)])[0]], landmarks, "cpu")
    deg = Degradation("difface-test")
    low = deg.apply(faces, deg.sample_params(["mindy"], 8, 0))
    emb = module(low, crop_lms, seeds=[item_seed(0, "mindy", 8, "restore")])
    assert torch.equal(emb, pipe.embed(path, degrade=8, item_ids=["mindy"]))
    with pytest.raises(ValueError, match="seeds"):
        module(low, crop_lms, seeds=[1, 2])


def test_attributes_from_a_probe(pipe, faces_root):
    from restorever.attributes.groups import GENDERS, AttributeSchema
    from restorever.attributes.predictor import FitOptions, fit_attribute_predictor

    people = {"ben_afflek": "male", "elton_john": "male", "jerry_seinfeld": "male", "madonna": "female",
              "mindy_kaling": "female"}
    train = [f"{p}/{p}_{k:04d}.jpg" for p in people for k in (1, 2, 3)]
    x = pipe.embed([str(faces_root / t) for t in train]).numpy()
    labels = {"gender": np.array([GENDERS.index(people[t.split("/")[0]]) for t in train])}
    predictor, _ = fit_attribute_predictor(x, labels, [t.split("/")[0] for t in train],
                                           AttributeSchema(attributes=("gender",)), recognizer="dlib",
                                           options=FitOptions(folds=2, max_iter=100), reweight=False)
    with_attributes = FacePipeline(restorer=pipe.restorer, recognizer=pipe.recognizer, device="cpu",
                                   attributes=predictor)
    held_out = [str(faces_root / p / f"{p}_0011.jpg") for p in people]
    out = with_attributes.attributes(held_out)
    assert [o["gender"]["label"] for o in out] == list(people.values())
    probs = predictor.predict(with_attributes.embed(held_out).numpy())["gender"]
    for o, p in zip(out, probs):
        assert o["gender"]["confidence"] == pytest.approx(p.max())
        assert sum(o["gender"]["probabilities"].values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="attributes"):
        pipe.attributes(held_out[:1])


def test_errors_name_library_arguments(pipe):
    with pytest.raises(ConfigError, match=r"^batch_size must be at least 1") as info:
        EvalConfig(batch_size=0).validate()
    assert info.value.argument == "batch_size"
    with pytest.raises(ConfigError, match=r"^degrade_side must be 'probe' or 'both'"):
        EvalConfig(degrade_side="left").validate()
    with pytest.raises(ConfigError, match="^batch_size"):
        FacePipeline(batch_size=0, device="cpu")
    with pytest.raises(UnknownNameError, match="difface-test"):
        pipe.embed(np.zeros((64, 64, 3), np.uint8), degrade="difface-tset")
    with pytest.raises(ConfigError, match="^degrade"):
        pipe.embed(np.zeros((64, 64, 3), np.uint8), degrade=0)
    with pytest.raises(ConfigError, match="^item_ids"):
        pipe.embed(np.zeros((64, 64, 3), np.uint8), item_ids=["a", "b"])
    with pytest.raises(ImageError, match=r"images\[0\].*\[0, 1\]"):
        pipe.embed(torch.full((3, 64, 64), 2.0))
    with pytest.raises(ImageError, match="uint8"):
        pipe.embed(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ConfigError, match="^backend_options option.s. steps apply to none of the restorers"):
        FacePipeline(device="cpu", steps=10)
    with pytest.raises(ConfigError, match="^flip_test is not available for recognizer dlib"):
        FacePipeline(device="cpu", flip_test=True)  # was a TypeError from deep inside dlib's constructor
    for bad in (float("nan"), "-0.6", True):
        with pytest.raises(ConfigError, match="^threshold must be a finite number"):
            pipe.verify("a.jpg", "b.jpg", threshold=bad)
    with pytest.raises(ConfigError, match="^images holds no image to restore"):
        pipe.restore([])  # was torch.cat's ValueError
    assert pipe.similarity([], []).shape == (0,) and pipe.verify([], [], threshold=-0.6).shape == (0,)
    with pytest.raises(ConfigError, match="^recognizer_options recognizer dlib takes no option.s. compile"):
        FacePipeline(device="cpu", recognizer_options={"compile": True})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="^device 'cuda' is not usable"):
            FacePipeline(device="cuda")
    with pytest.raises(ConfigError, match="^device"):
        FacePipeline(device="tpu")


def test_cli_still_names_its_flags(faces_root, tmp_path):
    from click.testing import CliRunner

    from restorever.cli import cli

    csv = tmp_path / "pairs.csv"
    csv.write_text("path_a,path_b,same\n" + "".join(f"{a},{b},{s}\n" for a, b, s in PAIRS))
    result = CliRunner().invoke(cli, ["eval", "--protocol", "pairs-csv", "--pairs", str(csv), "--data-root",
                                      str(faces_root), "--batch-size", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--batch-size must be at least 1" in result.output
    assert not (tmp_path / "o").exists()  # refused before the run folder was created


def _library_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("As a library", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md: no ```python block after 'As a library'"
    return match.group(1)


def test_readme_library_example_runs_as_written(tmp_path):
    _run_example(_library_example(), REPO, tmp_path)


def _run_example(code: str, cwd, tmp_path) -> None:
    """Run ``code`` in a fresh Python from ``cwd`` with this checkout's package, offline, with its own cache."""
    ast.parse(code)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RESTOREVER_HOME": str(tmp_path / "home"), "RESTOREVER_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_api_md_examples_run_in_order(tmp_path):
    """docs/api.md's python blocks run top to bottom as one session (a reader copies them in order). The backends
    block called degrade(faces, 2 ids, ...) on the 1-face batch the block before it left in `faces`: a
    DegradationError. Given by the test, as the text says the reader brings them: `pairs.csv`, the metrics block's
    `y_true, scores, folds`, and the insightface block's `app` (that block is left out)."""
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "app.get(" not in b]
    assert len(blocks) >= 12, "docs/api.md: fewer python blocks than expected"
    checkout = tmp_path / "checkout"  # ../shared must resolve from the working directory, as from a checkout
    checkout.mkdir()
    (tmp_path / "shared").symlink_to(REPO.parent / "shared", target_is_directory=True)
    (checkout / "pairs.csv").write_text("madonna/madonna_0001.jpg,madonna/madonna_0002.jpg,1\n"
                                        "madonna/madonna_0001.jpg,elton_john/elton_john_0001.jpg,0\n")
    preamble = ("import numpy as np\n"
                "y_true = np.array([1, 0, 1, 0, 1, 0]); scores = np.array([.9, .2, .8, .7, .6, .1])\n"
                "folds = np.array([0, 0, 0, 1, 1, 1])\n")
    _run_example(preamble + "\n".join(textwrap.dedent(b) for b in blocks), checkout, tmp_path)


def test_api_modules_import_no_private_names():
    """The API reuses the pipeline's public stage functions, never another module's private helpers."""
    files = list((REPO / "restorever" / "api").glob("*.py")) + [REPO / "restorever" / "pipeline" / "stages.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports private {private} from {node.module}"


def test_threshold_lookup_names_a_degradation_preset_that_does_not_match():
    """A run with (none, x8, difface-test) asked for gfpgan-v1 at x8 said "no condition with restorer='none',
    scale=8 (it has ... (none, scale=8))", contradicting itself; the presets are named now."""
    from restorever.api import threshold_from_results
    from restorever.errors import RestoreverError

    scores = {"same": [1, 0, 1, 0], "score": [0.9, 0.1, 0.8, 0.2], "fold": [0, 0, 1, 1]}
    record = {"conditions": [
        {"restorer": "none", "scale": None, "degradation": None, "recognizer": "dlib", "scores": scores},
        {"restorer": "none", "scale": 8, "degradation": "difface-test", "recognizer": "dlib", "scores": scores}]}
    assert threshold_from_results(record, scale=8, degradation="difface-test") == 0.2
    with pytest.raises(RestoreverError, match=r"no condition \(none, scale=8, degradation=gfpgan-v1\) \(it has "
                                              r"\(none, scale=None, degradation=None\), \(none, scale=8, "
                                              r"degradation=difface-test\)\)"):
        threshold_from_results(record, scale=8, degradation="gfpgan-v1")
    with pytest.raises(RestoreverError, match="clean faces are never restored"):  # gave none's clean threshold
        threshold_from_results(record, restorer="vqfr-v2")


def test_a_16_bit_image_is_the_same_as_a_pil_object_and_as_a_file(tmp_path):
    """load_image(PIL image) used convert("RGB"), which clips 16-bit values to white, while the file's decode scales
    them by 255/65535: the same picture gave two different embeddings."""
    from PIL import Image

    from restorever.api.inputs import load_image

    path = tmp_path / "g16.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
        from_pil = load_image(im).array
    from_file = load_image(path).array
    np.testing.assert_array_equal(from_pil, from_file)
    assert from_file[32, 32, 0] == round((32 * 64 + 32) * 16 / 257)  # scaled, not clipped to 255


def test_other_kind_hint_in_a_fresh_process():
    """The "X is a restorer" hint needed the other registry to exist already: in a fresh interpreter,
    ``create_restorer('dlib')`` gave only the unknown-name list."""
    import subprocess
    import sys

    calls = {"import restorever; restorever.create_restorer('dlib')": "dlib is a recognizer",
             "from restorever.restorers import create_restorer; create_restorer('dlib')": "dlib is a recognizer",
             "from restorever.recognizers import create_recognizer; create_recognizer('codeformer')":
                 "codeformer is a restorer"}
    for call, hint in calls.items():
        run = subprocess.run([sys.executable, "-c", call], capture_output=True, text=True)
        assert run.returncode == 1 and hint in run.stderr, (call, run.stderr[-500:])


def test_create_functions_take_paths_and_name_what_they_refuse(tmp_path):
    """A pathlib.Path for weights raised "'PosixPath' object is not iterable"; an unknown keyword the factory's bare
    TypeError; a restorer's name given to create_recognizer no hint of what it is."""
    import restorever
    from restorever.errors import UnknownNameError, WeightsNotFoundError

    missing = tmp_path / "codeformer.pth"
    for weights in (missing, {"model": missing}, str(missing)):
        with pytest.raises(WeightsNotFoundError, match=str(missing)):
            restorever.create_restorer("codeformer", weights=weights)
    with pytest.raises(TypeError, match=r"restorer codeformer takes no argument\(s\) bogus; it takes weights, "):
        restorever.create_restorer("codeformer", bogus=1)
    with pytest.raises(TypeError, match="recognizer dlib takes no argument"):
        restorever.create_recognizer("dlib", bogus=1)
    with pytest.raises(UnknownNameError, match="codeformer is a restorer"):
        restorever.create_recognizer("codeformer")
    restorever.list_recognizers()
    with pytest.raises(UnknownNameError, match="dlib is a recognizer"):
        restorever.create_restorer("dlib")


def test_similarity_and_verify_pick_faces_as_asked(pipe, faces_root):
    """`eval` takes the face nearest the centre, the API the largest by default; similarity / verify take
    face_a / face_b (and item_ids for the degraded side) so that they can score what a run scored."""
    ben = Image.open(faces_root / "ben_afflek" / "ben_afflek_0003.jpg").convert("RGB").resize((160, 160))
    madonna = Image.open(faces_root / "madonna" / "madonna_0003.jpg").convert("RGB").resize((240, 240))
    canvas = Image.new("RGB", (800, 300), (128, 128, 128))
    canvas.paste(ben, (320, 70))       # small, at the centre
    canvas.paste(madonna, (550, 30))   # large, at the right
    ben_photo = str(faces_root / "ben_afflek" / "ben_afflek_0003.jpg")  # the photo pasted, at its own size
    largest, central = pipe.embed(canvas), pipe.embed(canvas, face="center")
    reference = pipe.embed(ben_photo)
    assert pipe.similarity_of_embeddings(central[0], reference[0]) > -0.3 > \
        pipe.similarity_of_embeddings(largest[0], reference[0])  # Ben is the central face, Madonna the largest
    assert pipe.similarity(canvas, ben_photo) == pipe.similarity_of_embeddings(largest[0], reference[0])
    assert pipe.similarity(canvas, ben_photo, face_a="center") == pipe.similarity_of_embeddings(central[0],
                                                                                                 reference[0])
    assert pipe.similarity(ben_photo, canvas, face_b="center") == pipe.similarity(canvas, ben_photo, face_a="center")
    assert pipe.verify(canvas, ben_photo, threshold=-0.3, face_a="center")
    assert not pipe.verify(canvas, ben_photo, threshold=-0.3)
    # item_ids seed the degradation of b, as embed's do
    low = pipe.embed(ben_photo, degrade=8, item_ids=["ben_afflek/ben_afflek_0003.jpg"])
    assert pipe.similarity(canvas, ben_photo, face_a="center", degrade=8,
                           item_ids=["ben_afflek/ben_afflek_0003.jpg"]) == \
        pipe.similarity_of_embeddings(central[0], low[0])


def test_api_refuses_what_it_would_get_silently_wrong(pipe, faces_root):
    path = str(faces_root / "madonna" / "madonna_0002.jpg")
    rgb = read_image(path)
    # a BGR tensor with bgr=True is flipped like a BGR array (it was ignored: another embedding, no error)
    bgr_tensor = torch.from_numpy(np.ascontiguousarray(rgb[:, :, ::-1])).permute(2, 0, 1)
    assert torch.equal(pipe.embed(bgr_tensor, bgr=True), pipe.embed(path))
    with pytest.raises(ImageError, match=r"channels-last: pass t.permute\(2, 0, 1\)"):
        pipe.embed(torch.from_numpy(rgb))
    with pytest.raises(ConfigError, match=r"^item_ids must be a list with one id per image, not one string"):
        pipe.embed(path, item_ids="madonna/madonna_0002.jpg")
    with pytest.raises(ConfigError, match="^weights restorer 'none' takes no weights"):
        FacePipeline(device="cpu", weights="x.pth")
    # a distance where minus a distance is meant, or a cosine threshold beyond [-1, 1]: every answer would be "no"
    with pytest.raises(ConfigError, match=r"^threshold is 0.6, but the scores are minus a Euclidean distance.*-0.6"):
        pipe.verify(path, path, threshold=0.6)
    from restorever.api.pipeline import _check_threshold_scale

    _check_threshold_scale(0.35, "cosine")
    with pytest.raises(ConfigError, match="cosine scores lie in"):
        _check_threshold_scale(1.5, "cosine")
    with pytest.raises(ConfigError, match="^scale must be an integer scale factor"):
        threshold_from_results({"conditions": []}, scale="16")
    # landmarks that coincide name face=, not the detector
    with pytest.raises(ConfigError, match="^face landmarks .* coincide"):
        pipe.embed(path, face=np.full((5, 2), 40.0))
    with pytest.raises(FaceNotFoundError, match=r"pass face= five \[5, 2\] landmarks to skip detection"):
        pipe.embed(np.full((120, 120, 3), 128, np.uint8))


def test_modules_check_their_batches(pipe, faces_root):
    module = pipe.module()
    faces = torch.rand(3, 512, 512)
    with pytest.raises(ValueError, match=r"^faces: expected a \[B, 3, H, W\] batch.*faces\[None\]"):
        module(faces, torch.zeros(1, 5, 2))  # was "landmarks: expected [3, 5, 2]", taking channels for the batch
    with pytest.raises(ValueError, match=r"^none: got 2 seeds for 1 images \(one per image\)"):
        pipe.restorer.restore(faces[None], seeds=[0, 1])
    # a parent's .train() leaves released models in eval mode (BatchNorm statistics, dropout)
    from restorever.restorers.base import Restorer

    class WithBatchNorm(Restorer):
        def __init__(self):
            super().__init__(pipe.restorer.card)
            self.norm = torch.nn.BatchNorm2d(3)

        def forward(self, images, *, seeds=None):
            return self.norm(images)

    model = RestoreThenEmbed(WithBatchNorm(), pipe.recognizer).train()
    assert model.training and not model.restorer.training and not model.restorer.norm.training
    assert not model.recognizer.training


def test_submodules_load_on_attribute_access():
    code = ("import sys, restorever; assert 'torch' not in sys.modules; "
            "names = [n for n in dir(restorever) if not n.startswith('__')]; "
            "assert 'Any' not in names and 'annotations' not in names, names; "
            "assert 'degradation' in names; "
            "assert restorever.pipeline.stages.align_faces and 'stages' in dir(restorever.pipeline); "
            "print(restorever.degradation.Degradation.__name__, restorever.jpeg.jpeg_roundtrip.__name__, "
            "restorever.mtcnn.detect_batch.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Degradation", "jpeg_roundtrip", "detect_batch"]

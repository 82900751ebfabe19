"""Round 20, mutation testing seventh pass: the library API (FacePipeline, faces, inputs, RestoreThenEmbed).

Each test closes a gap a surviving mutant showed (docs/reliability.md, "Round 20: mutation testing, seventh pass").
"""
from __future__ import annotations

import inspect
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from restorever.api import Face, FacePipeline, RestoreThenEmbed
from restorever.api.faces import _iou, sort_largest_first
from restorever.api.inputs import flatten_images, load_image
from restorever.errors import ConfigError, FaceNotFoundError, ImageError
from tests.conftest import REPO, two_face_canvas



@pytest.fixture(scope="module")
def pipe():
    return FacePipeline(restorer="none", recognizer="dlib", detector="mtcnn", device="cpu", batch_size=4)


def _raster_iou(a, b) -> float:
    """IoU of two integer boxes by counting the unit pixels each covers."""
    grid = np.zeros((2, 40, 40), bool)
    for k, (x1, y1, x2, y2) in enumerate((a, b)):
        grid[k, y1:y2, x1:x2] = True
    union = (grid[0] | grid[1]).sum()
    return float((grid[0] & grid[1]).sum() / union) if union else 0.0


def test_box_overlap_equals_counted_pixels():
    """``face=(x1, y1, x2, y2)`` picks the detected face of largest IoU: the IoU of random integer boxes (some
    disjoint, some nested, some sharing only an edge) equals the count of shared over covered pixels."""
    rng = np.random.default_rng(20)
    for _ in range(300):
        boxes = []
        for _ in range(2):
            x = np.sort(rng.choice(40, 2, replace=False))
            y = np.sort(rng.choice(40, 2, replace=False))
            boxes.append((int(x[0]), int(y[0]), int(x[1]), int(y[1])))
        got = _iou(np.float64(boxes[0]), np.float64(boxes[1]))
        assert got == pytest.approx(_raster_iou(*boxes), abs=1e-12), boxes
        assert got == pytest.approx(_iou(np.float64(boxes[1]), np.float64(boxes[0])), abs=1e-12)


def test_face_area_box_and_score_forms():
    face = Face(box=[10, 20, 40, 60], landmarks=np.arange(10), score=np.float32(0.75))
    assert face.area == 30 * 40
    assert Face([40, 20, 10, 60], np.arange(10), 1.0).area == 0.0  # a box given right-to-left has no area
    assert face.box.dtype == np.float32 and face.landmarks.shape == (5, 2)
    for array in (face.box, face.landmarks):
        with pytest.raises(ValueError):
            array[0] = 1.0
    # a Python float, so that a face's fields go into JSON as they are
    assert type(face.score) is float and json.loads(json.dumps({"score": face.score})) == {"score": 0.75}


def test_largest_face_first_and_ties_in_detector_order():
    """Sorted by box area, not by position: a small face at the right comes after a large one at the left."""
    def det(box, tag):
        return SimpleNamespace(box=np.float32(box), landmarks=np.full((5, 2), tag, np.float32), score=0.9)

    found = [det((300, 0, 310, 10), 1), det((0, 0, 50, 50), 2), det((100, 100, 110, 110), 3),
             det((5, 5, 45, 45), 4)]
    order = [int(f.landmarks[0, 0]) for f in sort_largest_first(found)]
    assert order == [2, 4, 1, 3]  # 2500, 1600, then the two of 100 in the detector's order


def test_center_on_a_photo_without_a_face_names_the_image(pipe):
    with pytest.raises(FaceNotFoundError, match=r"^images\[0\]: no face found"):
        pipe.embed(np.full((96, 96, 3), 128, np.uint8), face="center")


def test_tensors_with_one_bad_value_or_an_integer_dtype_are_refused():
    t = torch.rand(3, 16, 16)
    t[1, 5, 7] = float("nan")
    with pytest.raises(ImageError, match=r"^images\[0\]: tensor holds NaN or infinite values"):
        load_image(t)
    with pytest.raises(ImageError, match=r"^images\[0\]: expected a float tensor in \[0, 1\] or uint8, got "
                                         r"torch.int64"):
        load_image(torch.ones(3, 16, 16, dtype=torch.int64))  # 0/1 ints would otherwise pass the range check


def test_a_grey_array_is_one_image_equal_to_its_rgb_copy(pipe, faces_root):
    grey = np.asarray(Image.open(faces_root / "madonna" / "madonna_0001.jpg").convert("L"))
    assert len(flatten_images(grey)) == 1 and len(flatten_images([grey, grey])) == 2
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    assert np.array_equal(load_image(grey).array, rgb)
    assert load_image(grey).content_id == load_image(rgb).content_id
    assert torch.equal(pipe.embed(grey), pipe.embed(rgb))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_a_pil_image_keeps_its_alpha_aside(mode):
    rgb = np.random.default_rng(3).integers(0, 256, (12, 10, 3), np.uint8)
    alpha = np.full((12, 10), 255, np.uint8)
    opaque = Image.fromarray(np.dstack([rgb, alpha])).convert(mode)
    assert load_image(opaque).alpha is None  # every pixel opaque: no alpha to hand back
    alpha[4:7, 2:5] = 0
    alpha[0, 0] = 17
    img = Image.fromarray(np.dstack([rgb, alpha])).convert(mode)
    got = load_image(img)
    assert got.alpha is not None and np.array_equal(got.alpha, alpha)
    want = rgb if mode == "RGBA" else np.asarray(Image.fromarray(rgb).convert("L").convert("RGB"))
    assert np.array_equal(got.array, want)  # the colours, not composited over a background


def _documented_signatures() -> dict[str, str]:
    """``name(params)`` in backticks at the start of a docs/api.md line (signatures may wrap over lines)."""
    text = (REPO / "docs" / "api.md").read_text()
    out = {}
    for m in re.finditer(r"^`(\w+)\(([^`]*?)\)(?: -> [^`]*)?`", text, flags=re.M):
        out.setdefault(m.group(1), " ".join(m.group(2).split()))
    return out


@pytest.mark.parametrize("name", ["FacePipeline", "detect", "embed", "similarity_of_embeddings", "similarity",
                                  "verify", "restore", "RestoreThenEmbed"])
def test_api_md_signatures_match_the_code(name):
    """docs/api.md writes each method's signature out: names, order, keyword-only marks and defaults must be the
    code's (a default changed in the code, e.g. ``batch_size`` or ``min_face_size``, left the page wrong)."""
    import ast

    documented = _documented_signatures()
    assert name in documented, f"docs/api.md has no `{name}(...)` signature line"
    tree = ast.parse(f"def f({documented[name]}): pass").body[0].args
    doc = [(a.arg, "pos") for a in tree.args] + [(a.arg, "kw") for a in tree.kwonlyargs]
    doc_defaults = dict(zip([a.arg for a in tree.args][len(tree.args) - len(tree.defaults):],
                            [ast.literal_eval(d) for d in tree.defaults]))
    doc_defaults.update({a.arg: ast.literal_eval(d) for a, d in zip(tree.kwonlyargs, tree.kw_defaults)
                         if d is not None})
    obj = {"FacePipeline": FacePipeline, "RestoreThenEmbed": RestoreThenEmbed}.get(name)
    code = inspect.signature(obj if obj is not None else getattr(FacePipeline, name))
    params = [p for p in code.parameters.values() if p.name != "self"]
    kinds = {inspect.Parameter.POSITIONAL_OR_KEYWORD: "pos", inspect.Parameter.KEYWORD_ONLY: "kw"}
    assert [(p.name, kinds[p.kind]) for p in params if p.kind in kinds] == doc
    assert (tree.kwarg is not None) == any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    assert {p.name: p.default for p in params if p.default is not inspect.Parameter.empty} == doc_defaults


def test_restore_then_embed_refuses_landmarks_of_another_shape(pipe):
    module = pipe.module()
    faces = torch.rand(2, 3, 64, 64)
    for bad in (torch.zeros(2, 5, 3), torch.zeros(1, 5, 2), torch.zeros(2, 10)):
        with pytest.raises(ValueError, match=r"^landmarks: expected \[2, 5, 2\] crop pixels"):
            module(faces, bad)


def test_scale_one_is_a_degradation_and_zero_is_refused(pipe, faces_root):
    path = str(faces_root / "mindy_kaling" / "mindy_kaling_0001.jpg")
    one = pipe.embed(path, degrade=1)
    assert torch.equal(one, pipe.embed(path, degrade=("difface-test", 1)))
    assert not torch.equal(one, pipe.embed(path))  # blur, noise and JPEG at full size still change the face
    with pytest.raises(ConfigError, match=r"^degrade scale must be a positive integer, got 0"):
        pipe.embed(path, degrade=("difface-test", 0))


def test_every_face_is_seeded_by_its_item_id_and_paste_order(pipe, faces_root):
    """``face="all"`` restores face k of an image as ``face=<its landmarks>`` with item id ``"{id}#{k}"`` (k:
    smallest box first); ``min_face_size`` leaves out the faces with a shorter box side, 0 keeps every face."""
    canvas = two_face_canvas(faces_root)[0]
    found = pipe.detect(canvas)[0]  # largest first: Madonna, Ben
    assert len(found) == 2
    every = pipe.restore(canvas, paste_back=False, face="all", degrade=8, item_ids=["group"], min_face_size=0)
    assert every.faces.shape == (2, 3, 512, 512) and every.image_index.tolist() == [0, 0]
    for k, face in enumerate((found[1], found[0])):  # paste order: the smaller box first
        one = pipe.restore(canvas, paste_back=False, face=face, degrade=8, item_ids=[f"group#{k}"])
        assert torch.equal(every.faces[k], one.faces[0]), k
    small_side = float(min(found[1].box[2] - found[1].box[0], found[1].box[3] - found[1].box[1]))
    big_only = pipe.restore(canvas, paste_back=False, face="all", degrade=8, item_ids=["group"],
                            min_face_size=small_side + 1)
    assert len(big_only.faces) == 1
    assert torch.equal(big_only.faces[0], pipe.restore(canvas, paste_back=False, face=found[0], degrade=8,
                                                       item_ids=["group#0"]).faces[0])
    with pytest.raises(ConfigError, match=r"^item_ids must be a list with one id per image \(1\)"):
        pipe.restore(canvas, face="all", item_ids="group")
    blank = np.full((96, 96, 3), 128, np.uint8)
    for size, text in ((32, "32 px found (0 smaller"), (0, "0 px found (0 smaller")):
        with pytest.raises(FaceNotFoundError, match=rf"^images\[0\]: no face of at least {re.escape(text)}"):
            pipe.restore(blank, face="all", min_face_size=size)


def test_a_value_that_is_no_image_is_not_called_a_tensor():
    """Only torch tensors take the tensor path: a numpy scalar (it has ``ndim`` and ``dtype`` too) is named as what
    it is, with the forms that are accepted."""
    for value in (np.float32(0.5), np.uint8(3)):
        with pytest.raises(ImageError, match=r"^images: expected a file path, PIL image, uint8 numpy array, torch "
                                             rf"tensor or a list of them, got {type(value).__name__}$"):
            flatten_images(value)


def test_similarity_of_embeddings_forms_and_known_answers(pipe):
    """dlib's score is minus the Euclidean distance: two ``[D]`` give a Python float, ``[N, D]`` against one ``[D]``
    give ``[N]`` numpy scores, each the distance computed here; a bad row names the argument it is in."""
    rng = np.random.default_rng(7)
    e = rng.normal(size=(3, 128)).astype(np.float32)
    one = pipe.similarity_of_embeddings(e[0], e[1])
    assert type(one) is float
    assert one == pytest.approx(-float(np.linalg.norm(e[0].astype(np.float64) - e[1])), rel=1e-6)
    many = pipe.similarity_of_embeddings(torch.from_numpy(e), e[2])
    assert isinstance(many, np.ndarray) and many.shape == (3,)
    np.testing.assert_allclose(many, -np.linalg.norm(e.astype(np.float64) - e[2], axis=1), rtol=1e-6)
    assert pipe.similarity_of_embeddings(e[:1], e[1:2]).shape == (1,)  # [1, D] pairs stay an array
    bad = e.copy()
    bad[1, 5] = np.inf
    with pytest.raises(ConfigError, match=r"^e2 holds NaN or infinite values \(row\(s\) \[1\]\)"):
        pipe.similarity_of_embeddings(e, bad)
    with pytest.raises(ConfigError, match=r"^e1 holds NaN"):
        pipe.similarity_of_embeddings(bad, e)


def test_a_selector_of_another_shape_is_refused_naming_face(pipe, faces_root):
    path = str(faces_root / "madonna" / "madonna_0001.jpg")
    for bad, shape in ((np.zeros(3), "[3]"), ((1.0, 2.0, 3.0, 4.0, 5.0), "[5]"), (np.zeros((4, 2)), "[4, 2]")):
        with pytest.raises(ConfigError, match=rf"^face must be 'largest', 'center', an index, a box .* got "
                                              rf"(ndarray|tuple) of shape {re.escape(shape)}$"):
            pipe.embed(path, face=bad)


def test_an_out_of_range_tensor_is_told_its_fix():
    """0..255 floats and [-1, 1] floats are the two usual mistakes: each message gives its own fix."""
    with pytest.raises(ImageError, match=r"got \[0, 255\]; divide 0\.\.255 data by 255$"):
        load_image(torch.linspace(0, 255, 3 * 16 * 16).reshape(3, 16, 16))
    with pytest.raises(ImageError, match=r"got \[-1, 1\]; map \[-1, 1\] data to \[0, 1\] with \(t \+ 1\) / 2$"):
        load_image(torch.linspace(-1, 1, 3 * 16 * 16).reshape(3, 16, 16))

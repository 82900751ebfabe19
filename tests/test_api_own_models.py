"""A researcher's own models and scores in the library API (round 18): a recognizer or restorer object of their own
in FacePipeline / RestoreThenEmbed, a plugin module in the registry, and the input errors' hints."""
from __future__ import annotations

import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from restorever import FacePipeline, RestoreThenEmbed, create_recognizer
from restorever.errors import ConfigError
from restorever.images import read_image, to_tensor
from restorever.pipeline.stages import align_faces
from restorever.recognizers import REGISTRY as RECOGNIZERS


class ThumbnailNet(torch.nn.Module):
    """A trainable network of the user's own: an ``embed`` whose output requires grad, no card, no ``similarity``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3 * 16 * 16, 24)

    def embed(self, faces, landmarks):
        return self.lin(torch.nn.functional.interpolate(faces, size=16, mode="area").flatten(1))


class Brighten:
    """A restorer of the user's own, not a torch module: it overshoots [0, 1] and returns a grad-requiring tensor."""

    def __init__(self):
        self.seen: list[list[int]] = []
        self.gain = torch.tensor(1.6, requires_grad=True)

    def restore(self, faces, seeds=None):
        self.seen.append(list(seeds))
        return faces * self.gain - 0.3


@pytest.fixture(scope="module")
def photo(faces_root):
    return str(faces_root / "madonna" / "madonna_0001.jpg")


@pytest.fixture(scope="module")
def dlib_pipe():
    return FacePipeline(device="cpu")


def _aligned(pipe, path):
    kps = pipe.detect(path)[0][0].landmarks
    return align_faces([to_tensor([read_image(path)])[0]], kps[None], "cpu")


def test_own_recognizer_embeds_as_called_by_hand(dlib_pipe, photo):
    """An nn.Module with only ``embed`` (output requiring grad) works: it failed with "Can't call numpy() on Tensor
    that requires grad", and ``repr``/``recognizer_name`` with AttributeError 'card'. Its embedding is its own
    ``embed`` on the aligned crop, and the default score is the cosine (sklearn's)."""
    net = ThumbnailNet()
    pipe = FacePipeline(recognizer=net, device="cpu")
    assert pipe.recognizer_name == "ThumbnailNet" and "ThumbnailNet" in repr(pipe)
    emb = pipe.embed([photo, photo])
    faces, crop_lms = _aligned(dlib_pipe, photo)
    with torch.no_grad():
        expected = net.embed(faces, crop_lms)
    assert emb.shape == (2, 24) and emb.dtype == torch.float32 and not emb.requires_grad
    assert torch.equal(pipe.embed(photo)[0], expected[0])
    assert torch.allclose(emb, expected.expand(2, -1), atol=1e-6)  # a batch of two: matmul rounding only
    other = pipe.embed(dlib_pipe.restore(photo, degrade=16).images[0])
    got = pipe.similarity_of_embeddings(emb[0], other[0])
    assert got == pytest.approx(float(skm.pairwise.cosine_similarity(emb[:1], other)[0, 0]), abs=1e-6)
    assert got < 0.9999  # the degraded copy is another face to the network


def test_own_restorer_is_clamped_quantised_and_seeded(photo):
    """A restorer object of the user's own: its grad-requiring output is taken without autograd, clamped to [0, 1]
    and quantised to 8 bits, as a registry restorer's; it gets one seed per face."""
    mine = Brighten()
    pipe = FacePipeline(restorer=mine, device="cpu")
    assert pipe.restorer_name == "Brighten"
    out = pipe.restore([photo, photo], degrade=8, seed=3)
    plain = FacePipeline(device="cpu").restore([photo, photo], degrade=8, seed=3)
    expected = (plain.faces * 1.6 - 0.3).clamp(0, 1).mul(255).round().div(255)
    assert torch.allclose(out.faces, expected, atol=1.01 / 255)  # 1.6 x an 8-bit level: rounding may differ by one
    assert out.faces.min() == 0 and out.faces.max() == 1
    assert torch.equal(out.faces, out.faces.mul(255).round().div(255))
    assert len(mine.seen) == 1 and len(mine.seen[0]) == 2 and mine.seen[0][0] == mine.seen[0][1]  # same pixels
    model = RestoreThenEmbed(mine, ThumbnailNet())
    faces, lms = out.faces, out.landmarks
    assert model(faces, lms).shape == (2, 24)


def test_own_models_missing_what_they_need_are_named():
    class Forward(torch.nn.Module):
        def forward(self, x):
            return x

    class DotProduct(ThumbnailNet):
        similarity = "dot"

    class NoSeeds:
        def restore(self, faces):
            return faces

    with pytest.raises(ConfigError, match="Forward has no embed method.*your-own-recognizer-or-restorer") as err:
        FacePipeline(recognizer=Forward(), device="cpu")
    assert err.value.argument == "recognizer"
    with pytest.raises(ConfigError, match="similarity must be one of cosine, euclidean.*'dot'"):
        FacePipeline(recognizer=DotProduct(), device="cpu")
    with pytest.raises(ConfigError, match="NoSeeds.restore must take a seeds= argument"):
        FacePipeline(restorer=NoSeeds(), device="cpu")
    with pytest.raises(ConfigError, match="has no restore method"):
        FacePipeline(restorer=ThumbnailNet(), device="cpu")
    with pytest.raises(ConfigError, match="Forward has no embed method"):
        RestoreThenEmbed(Brighten(), Forward())


def test_own_models_wrong_outputs_are_named(photo):
    """A 2x super-resolving restorer gave the recognizer 1024-pixel crops with 512-crop landmarks (no error); an
    ``embed`` returning numpy failed inside ``.float()``."""
    class Upscale2x:
        def restore(self, faces, seeds=None):
            return torch.nn.functional.interpolate(faces, scale_factor=2)

    class NumpyOut(ThumbnailNet):
        def embed(self, faces, landmarks):
            return super().embed(faces, landmarks).detach().numpy()

    with pytest.raises(ValueError, match=r"Upscale2x.restore returned shape \[1, 3, 1024, 1024\] for a batch of 1; "
                                         r"expected a tensor with the same shape as its input \(resize"):
        FacePipeline(restorer=Upscale2x(), device="cpu").embed(photo, degrade=8)
    with pytest.raises(ValueError, match=r"NumpyOut.embed returned ndarray .*\[B, D\]"):
        FacePipeline(recognizer=NumpyOut(), device="cpu").embed(photo)


@pytest.fixture()
def plugin_dir(tmp_path, monkeypatch):
    """A user's module on sys.path, as the docs' plugin route expects; the registry is restored afterwards."""
    (tmp_path / "my_recognizers.py").write_text(textwrap.dedent('''
        import torch
        from restorever.hub import ModelCard
        from restorever.recognizers.base import Recognizer

        CARDS = {"thumb-24": ModelCard(name="thumb-24", arch="thumbnail", description="16x16 thumbnail, 24-D")}

        class Thumb(Recognizer):
            embedding_dim = 24

            def __init__(self, card):
                super().__init__(card)
                torch.manual_seed(0)
                self.lin = torch.nn.Linear(3 * 16 * 16, 24)

            def embed(self, faces, landmarks):
                return self.lin(torch.nn.functional.interpolate(faces, size=16, mode="area").flatten(1))

        def create(name, *, weights=None, device="cpu"):
            return Thumb(CARDS[name]).to(device)
    '''))
    (tmp_path / "shadows_dlib.py").write_text("from my_recognizers import *\nCARDS = {'dlib': CARDS['thumb-24']}\n")
    (tmp_path / "no_cards.py").write_text("def create(name):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = list(RECOGNIZERS._modules)
    yield tmp_path
    RECOGNIZERS._modules[:] = modules
    RECOGNIZERS._cards = None
    for name in ("my_recognizers", "shadows_dlib", "no_cards"):
        sys.modules.pop(name, None)


def test_registry_plugin_from_a_users_module(plugin_dir, photo, dlib_pipe):
    """The documented plugin steps: the name works in create_recognizer and FacePipeline; a plugin naming a built-in
    model is refused (it replaced dlib silently: ``create_recognizer("dlib")`` built the plugin's network), and a
    misspelt module or one without CARDS is named when registered, not at every later listing."""
    RECOGNIZERS.register_module("my_recognizers")
    RECOGNIZERS.register_module("my_recognizers")  # again: nothing changes
    assert RECOGNIZERS._modules.count("my_recognizers") == 1
    assert "thumb-24" in RECOGNIZERS.names() and "dlib" in RECOGNIZERS.names()
    pipe = FacePipeline(recognizer="thumb-24", device="cpu")
    faces, crop_lms = _aligned(dlib_pipe, photo)
    with torch.no_grad():
        assert torch.equal(pipe.embed(photo)[0], pipe.recognizer.embed(faces, crop_lms)[0])
    with pytest.raises(ValueError, match="'shadows_dlib' names dlib, already registered by "
                                         "restorever.recognizers.dlib: give your models other names"):
        RECOGNIZERS.register_module("shadows_dlib")
    assert type(create_recognizer("dlib")).__module__ == "restorever.recognizers.dlib"
    with pytest.raises(ImportError, match="recognizer plugin 'my_recognizer' cannot be imported"):
        RECOGNIZERS.register_module("my_recognizer")
    with pytest.raises(TypeError, match="'no_cards' must define CARDS"):
        RECOGNIZERS.register_module("no_cards")
    assert "thumb-24" in RECOGNIZERS.names()  # the refused modules left the registry as it was


def test_similarity_of_embeddings_in_half_precision_and_with_nan(dlib_pipe):
    """bfloat16 embeddings were a TypeError (numpy has no bfloat16) and float16 ones were scored in float16; a NaN
    embedding gave a NaN score, which ``verify``'s ``score > threshold`` turns into a silent "different"."""
    e = torch.randn(3, 128, generator=torch.Generator().manual_seed(0))
    for low in (torch.bfloat16, torch.float16):
        got = dlib_pipe.similarity_of_embeddings(e.to(low), e)
        want = -np.linalg.norm(e.to(low).float().numpy() - e.numpy(), axis=1)
        assert got.dtype == np.float32 and np.allclose(got, want, rtol=1e-6, atol=1e-6)
    bad = e.clone()
    bad[1, 5] = float("nan")
    with pytest.raises(ConfigError, match=r"holds NaN or infinite values \(row\(s\) \[1\]\)") as err:
        dlib_pipe.similarity_of_embeddings(e, bad)
    assert err.value.argument == "e2"


def test_image_layout_and_range_errors_name_the_fix(dlib_pipe, photo):
    """A channels-first numpy array and a tensor in [-1, 1] (GAN restorers' range) were refused with a fix that
    did not apply ("divide 0..255 data by 255"); after the named fix each embeds as the photo does."""
    from restorever.errors import ImageError

    rgb = read_image(photo)
    want = dlib_pipe.embed(photo)
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    with pytest.raises(ImageError, match=r"images\[0\]: expected an HxWx3 uint8 array, got shape \(3, 150, 150\); "
                                         r"it looks channels-first: pass a.transpose\(1, 2, 0\)"):
        dlib_pipe.embed(chw)
    assert torch.equal(dlib_pipe.embed(chw.transpose(1, 2, 0)), want)
    signed = torch.tensor(rgb).permute(2, 0, 1).double() / 127.5 - 1
    with pytest.raises(ImageError, match=r"got \[-1, 1\]; map \[-1, 1\] data to \[0, 1\] with \(t \+ 1\) / 2"):
        dlib_pipe.embed(signed)
    with pytest.raises(ImageError, match=r"got \[0, 255\]; divide 0..255 data by 255"):
        dlib_pipe.embed(torch.tensor(rgb).permute(2, 0, 1).float())
    assert torch.equal(dlib_pipe.embed((signed + 1) / 2), want)


def test_degrade_takes_a_tensor_that_requires_grad_silently():
    """degrade() on a batch that requires grad warned "Converting a tensor with requires_grad=True to a scalar"
    (its range check); the result equals the plain batch's."""
    from restorever import degrade

    faces = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    plain, _ = degrade(faces, ["a", "b"], 4, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, _ = degrade(faces.clone().requires_grad_(), ["a", "b"], 4, seed=0)
    assert torch.equal(low.detach(), plain)

"""facenet backends with random-weight InceptionResnetV1 checkpoints (the released files cannot be downloaded here)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from restorever.errors import CheckpointLayoutError, WeightsHashError, WeightsNotFoundError
from restorever.hub import sha256_file
from restorever.recognizers import facenet
from restorever.recognizers.arcface import CropRecognizer

facenet_pytorch = pytest.importorskip("facenet_pytorch", reason="facenet backends need facenet-pytorch==2.5.3")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random InceptionResnetV1 state_dict with a classification head, saved like the released files."""
    torch.manual_seed(0)
    net = facenet_pytorch.InceptionResnetV1(pretrained=None, classify=True, num_classes=32).eval()
    with torch.no_grad():  # make the BN statistics non-trivial so a wrong preprocessing shows
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("facenet") / "20180402-114759-vggface2.pt"
    torch.save(net.state_dict(), path)
    net.classify = False  # the reference embedder below
    return path, net


@pytest.fixture(scope="module")
def faces():
    from restorever.alignment import get_template

    g = torch.Generator().manual_seed(1)
    low = torch.rand(2, 3, 24, 24, generator=g)
    images = torch.nn.functional.interpolate(low, size=(512, 512), mode="bilinear", align_corners=False)
    points = torch.tensor(np.asarray(get_template("ffhq_512").points), dtype=torch.float32)
    return images, points.expand(2, 5, 2) + torch.randn(2, 5, 2, generator=g) * 3.0


def _reference(net, images, landmarks):
    """facenet-pytorch's own preprocessing on our 160 crop (fixed_image_standardization of 0-255 RGB).

    Returns the plain embeddings of the two faces and the flip-test embedding of the first (every forward has
    batch 2, so CPU kernels are set up once).
    """
    from restorever.alignment import crop_to_template

    x = facenet_pytorch.fixed_image_standardization(crop_to_template(images, landmarks, "facenet_160") * 255.0)
    with torch.no_grad():
        plain, pair = net(x), net(torch.cat([x[:1], x[:1].flip(-1)]))
    return plain, pair[:1] + pair[1:]


@pytest.mark.parametrize("name", list(facenet.CARDS))
def test_cards(name):
    card = facenet.CARDS[name]
    wf = card.weights["model"]
    assert (card.template, card.input_size) == ("facenet_160", 160)
    assert wf.url == "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/" + wf.filename
    assert len(wf.sha256) == 64 and wf.size_bytes > 100_000_000
    assert 0.99 < card.reported["lfw_accuracy"] < 1.0


def test_loads_and_embeds(checkpoint, faces):
    path, net = checkpoint
    rec = facenet.create("facenet-vggface2", weights={"model": str(path)})
    assert isinstance(rec, CropRecognizer) and rec.embedding_dim == 512 and rec.similarity == "cosine"
    assert not hasattr(rec.net, "logits")  # the classification head is dropped
    images, landmarks = faces
    out = rec.embed(images, landmarks)
    assert out.shape == (2, 512) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)
    plain, flipped = _reference(net, images, landmarks)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=0)
    rec = facenet.create("facenet-casia", weights={"model": str(path)}, flip_test=True)
    torch.testing.assert_close(rec.embed(images[:1], landmarks[:1]), flipped, atol=1e-5, rtol=0)


def test_found_in_torch_cache(checkpoint, tmp_path, monkeypatch):
    path, net = checkpoint
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "checkpoints" / path.name).write_bytes(path.read_bytes())
    found = tmp_path / "torch" / "checkpoints" / path.name
    assert facenet.weight_status("facenet-vggface2") == {"model": f"present: {found}"}
    # not the released file (random weights): refused, as the same file in restorever's cache is (it was loaded
    # with a warning about "an explicit file" the user never gave)
    with pytest.raises(WeightsHashError) as info:
        facenet.create("facenet-vggface2")
    assert str(found) in str(info.value) and "--recognizer-weights" in str(info.value)
    card = facenet.CARDS["facenet-vggface2"]
    monkeypatch.setitem(card.weights, "model", dataclasses.replace(card.weights["model"], sha256=sha256_file(found)))
    loaded = facenet.create("facenet-vggface2").net.state_dict()  # the released file (its sha256) is used
    expected = {k: v for k, v in net.state_dict().items() if not k.startswith("logits.")}
    assert list(loaded) == list(expected) and all(torch.equal(loaded[k], v) for k, v in expected.items())


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RESTOREVER_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsNotFoundError) as info:
        facenet.create("facenet-casia")
    message = str(info.value)
    assert "\n" not in message and "20180408-102900-casia-webface.pt" in message
    assert facenet.CARDS["facenet-casia"].weights["model"].url in message
    assert str(tmp_path / "home" / "weights" / "facenet-casia") in message
    assert facenet.weight_status("facenet-casia")["model"].startswith("missing: put 20180408-102900-casia-webface.pt")


def test_wrong_layout(checkpoint, tmp_path):
    _, net = checkpoint
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("last_bn.")}
    state["last_norm.weight"] = torch.ones(512)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointLayoutError) as info:
        facenet.create("facenet-vggface2", weights={"model": str(path)})
    message = str(info.value)
    assert str(path) in message and "last_bn.weight" in message and "last_norm.weight" in message
    torch.save(net, path)  # a pickled module: refused by weights_only loading
    with pytest.raises(CheckpointLayoutError, match="weights-only"):
        facenet.create("facenet-vggface2", weights={"model": str(path)})

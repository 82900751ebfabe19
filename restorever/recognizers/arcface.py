"""ArcFace recognizers: arcface_torch IResNet checkpoints (torch) and insightface ONNX model packs.

Papers: ArcFace (Deng et al., CVPR 2019, https://arxiv.org/abs/1801.07698); Partial FC / Glint360K (An et al., 2021,
https://arxiv.org/abs/2010.05222); WebFace260M/WebFace600K (Zhu et al., CVPR 2021, https://arxiv.org/abs/2103.04098).
Code origin: insightface ``recognition/arcface_torch`` (MIT). **Weights: non-commercial research use only** (the
InsightFace model zoo's terms); none of them ship with restorever.

Two kinds of variants:

* ``arcface-r{18,34,50,100}-{ms1mv3,glint360k}``: arcface_torch ``backbone.pth`` state_dicts run by our
  :class:`~restorever.recognizers.layers.IResNet` (strict, ``weights_only=True`` loading). The model zoo lives on
  OneDrive / Baidu only (no direct URL): download the folder's ``backbone.pth`` and put it where the error message
  says (``$RESTOREVER_HOME/weights/<name>/backbone.pth``) or pass ``--weights FILE``. An ``.onnx`` export of the same
  network is accepted too and converted.
* ``insightface-buffalo_l`` (``w600k_r50.onnx``), ``insightface-antelopev2`` (``glintr100.onnx``) and
  ``insightface-buffalo_s`` (``w600k_mbf.onnx``): the recognition model of insightface's packs, found in
  ``~/.insightface/models/<pack>/`` (where ``insightface.app.FaceAnalysis`` keeps them; ``antelopev2``'s nested
  ``antelopev2/antelopev2/`` folder is accepted), else in our cache, else downloaded (the pack zip from the v0.7
  GitHub release, sha256-checked, only the recognition file kept).

Engines (``engine=`` for the insightface variants): ``"onnxruntime"`` runs the ONNX file with the model's own input
size, mean and std from the card (mean 0 and std 1 for a graph that subtracts and scales its input itself, as old
MXNet exports do: insightface's rule, a ``Sub``/``_minus`` and a ``Mul``/``_mul`` node among the first eight), on
``CUDAExecutionProvider`` when the device is CUDA and the provider exists;
``"torch"`` converts the ONNX initializers into our IResNet (``w600k_r50`` and ``glintr100`` are arcface_torch
IResNets; the MobileFaceNet of ``buffalo_s`` is not, and stays on onnxruntime); ``"auto"`` (default) uses onnxruntime
on CPU, and on CUDA uses onnxruntime's CUDA provider when installed, otherwise the torch conversion.

GPU and onnxruntime: the ``onnxruntime`` wheel is CPU-only. For its CUDA provider replace it (the two wheels clash)::

    pip uninstall -y onnxruntime && pip install onnxruntime-gpu

matching the CUDA/cuDNN major version of your torch build (``python -c "import onnxruntime as o;
print(o.get_available_providers())"`` must list ``CUDAExecutionProvider``). Without the swap, ``engine="torch"`` (or
``"auto"``) runs the same weights on the GPU through torch, with autocast.

Preprocessing (both engines): the aligned 512 face is cropped with ``alignment.crop_to_template(faces, landmarks,
"arcface_112")`` (the insightface ``norm_crop``: similarity to the 5-point ArcFace template, bilinear; beyond the
photo's edge the 512 crop's grey fill, where ``norm_crop`` on the photo is black: docs/architecture.md),
scaled to 0-255 and normalised ``(x - 127.5) / 127.5`` in RGB. Output: the raw 512-D embedding (not L2-normalised);
compare with cosine similarity. ``flip_test=True`` adds the embedding of the mirrored crop, as insightface's
verification benchmark does (sum before normalisation).

Precision (torch engine): ``precision="auto"`` runs the trunk under CUDA fp16 autocast with the ``fc``/``features``
head in float32 (arcface_torch's ``fp16=True``), and float32 on CPU; ``"fp16"``/``"bf16"``/``"fp32"`` force it
(half precisions only act on CUDA).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

from ..devices import resolve_device
from ..errors import CheckpointLayoutError, MissingDependencyError, WeightsHashError, WeightsNotFoundError
from ..hub import (ModelCard, OptionSpec, WeightFile, check_weight_roles, copy_into_cache, download_file,
                   is_offline, load_checkpoint, load_state_dict_strict, resolve_weights, sha256_file)
from ..hub import weight_status as hub_weight_status
from .base import Recognizer, checked_found_file, template_crop
from .crop import (CROP_OPTION_DEFAULTS, CROP_OPTION_SPECS, CropRecognizer, autocast_dtype_for, build_uninitialised,
                   prepare_crops)
from .layers.iresnet import IRESNET_LAYERS, IResNet
from .onnx_convert import iresnet_state_dict_from_onnx, onnx_to_iresnet

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CARDS", "create", "CropRecognizer", "OnnxRecognizer", "prepare_crops", "onnx_to_iresnet",
           "iresnet_state_dict_from_onnx", "locate_weights", "weight_status", "resolve_device", "autocast_dtype_for",
           "build_uninitialised", "choose_engine"]


# --------------------------------------------------------------------------------------------------------------------
# adapters


def graph_normalises_input(path: str | Path) -> bool:
    """Whether an ONNX recognition model subtracts the mean and scales its input itself (MXNet-era exports): a node
    named ``Sub...`` / ``_minus...`` and one named ``Mul...`` / ``_mul...`` among its first eight, the rule
    insightface's ``ArcFaceONNX`` applies to choose mean 0 and std 1 (raw 0..255 input) over 127.5 / 127.5. False
    when the graph cannot be parsed here (onnxruntime then reports the file)."""
    try:
        import onnx
    except ImportError:
        logger.warning("%s: the onnx package is missing, so whether this graph normalises its own input cannot be "
                       "checked; it gets (x - 127.5) / 127.5 (pip install onnx)", path)
        return False
    try:
        nodes = onnx.load(str(path), load_external_data=False).graph.node[:8]
    except Exception:  # noqa: BLE001 - an unreadable file: onnxruntime's own error names it
        return False
    names = [node.name for node in nodes]
    return (any(n.startswith(("Sub", "_minus")) for n in names)
            and any(n.startswith(("Mul", "_mul")) for n in names))


class OnnxRecognizer(Recognizer):
    """An ONNX embedding model run by onnxruntime (``CUDAExecutionProvider`` when asked for and installed).

    Same contract as :class:`CropRecognizer` (not differentiable). The network's input size must match the card.
    """

    def __init__(self, card: ModelCard, path: str | Path, *, device: Any = "cpu", flip_test: bool = False,
                 similarity: str = "cosine"):
        super().__init__(card)
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
            raise MissingDependencyError(f"{card.name}: the ONNX engine needs onnxruntime (pip install onnxruntime, "
                                         f"or onnxruntime-gpu for CUDA)") from exc
        self.path = Path(path)
        self.flip_test = bool(flip_test)
        self.similarity = similarity
        #: the card whose crop and normalisation this graph takes: raw 0..255 pixels when it normalises them itself
        self.input_card = (replace(card, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
                           if graph_normalises_input(self.path) else card)
        device = resolve_device(device)
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" in available:
                providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
            else:
                logger.warning("%s: onnxruntime has no CUDAExecutionProvider (installed: %s); running on CPU. "
                               "Install onnxruntime-gpu or use engine='torch'", card.name, ", ".join(available))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointLayoutError(f"{self.path}: onnxruntime cannot load it as an ONNX model ({first}); "
                                        f"{card.name} needs {card.weights['model'].filename}") from exc
        self.providers = self.session.get_providers()
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] != 3 or shape[2:] != [card.input_size, card.input_size]:
            raise CheckpointLayoutError(
                f"{self.path}: ONNX input {inp.name} has shape {shape}; {card.name} expects "
                f"[N, 3, {card.input_size}, {card.input_size}] (is this the recognition model of the pack?)")
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        out_shape = self.session.get_outputs()[0].shape
        if isinstance(out_shape[-1], int):
            self.embedding_dim = int(out_shape[-1])
        else:  # a symbolic output size: read it off one blank crop
            import numpy as np

            blank = np.zeros((self._fixed_batch or 1, 3, card.input_size, card.input_size), np.float32)
            self.embedding_dim = int(self._run(blank).shape[-1])

    def input_crop(self) -> dict:
        """The card's template crop, as :class:`CropRecognizer`'s."""
        return template_crop(self.input_card.template)

    def _run(self, x: "np.ndarray") -> "np.ndarray":
        import numpy as np

        if not len(x):
            return np.zeros((0, self.embedding_dim), np.float32)
        step = self._fixed_batch or len(x)
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            if len(chunk) < step:  # a model exported with a fixed batch: pad the last chunk, drop the padding
                chunk = np.concatenate([chunk, np.zeros((step - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            outs.append(self.session.run(None, {self._input_name: np.ascontiguousarray(chunk)})[0][:len(x) - i])
        return np.concatenate(outs).astype(np.float32, copy=False)

    def forward(self, faces: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = prepare_crops(faces, landmarks, self.input_card).float()
            batch = x.shape[0]
            if self.flip_test:
                x = torch.cat([x, x.flip(-1)])
            out = torch.from_numpy(self._run(x.cpu().numpy()))
        if self.flip_test:
            out = out[:batch] + out[batch:]
        return out.to(faces.device)

    def embed(self, faces: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """``[B,3,512,512]`` RGB [0,1] + ``[B,5,2]`` landmarks -> ``[B, D]`` float32."""
        return self.forward(faces, landmarks)


# --------------------------------------------------------------------------------------------------------------------
# weight files


@dataclass(frozen=True)
class _Pack:
    """An insightface model pack zip (v0.7 release) that holds a card's recognition ONNX."""

    name: str
    url: str
    sha256: str
    size_bytes: int


_PACKS: dict[str, _Pack] = {
    "buffalo_l": _Pack("buffalo_l", "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
                       "80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f", 288_621_354),
    "antelopev2": _Pack("antelopev2",
                        "https://github.com/deepinsight/insightface/releases/download/v0.7/antelopev2.zip",
                        "8e182f14fc6e80b3bfa375b33eb6cff7ee05d8ef7633e738d1c89021dcf0c5c5", 360_662_982),
    "buffalo_s": _Pack("buffalo_s", "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_s.zip",
                       "d85a87f503f691807cd8bb97128bdf7a0660326cd9cd02657127fa978bab8b5e", 127_607_557),
}
_PACK_OF_CARD: dict[str, str] = {}


def _insightface_candidates(card: ModelCard, root: str | Path | None) -> list[Path]:
    pack = _PACK_OF_CARD[card.name]
    base = Path(root).expanduser() if root else Path.home() / ".insightface"
    filename = card.weights["model"].filename
    return [base / "models" / pack / filename, base / "models" / pack / pack / filename]


def _extract_member(zip_path: Path, filename: str, dest_dir: Path, sha256: str | None) -> Path:
    """Extract the member named ``filename`` (in any folder of the zip) to ``dest_dir``; verify its sha256."""
    with zipfile.ZipFile(zip_path) as archive:
        names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == filename]
        if not names:
            raise WeightsNotFoundError(f"{zip_path}: archive has no {filename}")
        target = dest_dir / filename
        with archive.open(names[0]) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    if sha256:
        actual = sha256_file(target)
        if actual != sha256.lower():
            target.unlink()
            raise WeightsHashError(f"{zip_path}:{names[0]} has sha256 {actual}, expected {sha256}")
    return target


def _download_pack_member(card: ModelCard, cache_dir: str | Path | None) -> Path:
    """Download the card's pack zip into a temp folder of the cache, keep only the recognition file."""
    from ..hub import get_cache_dir

    pack = _PACKS[_PACK_OF_CARD[card.name]]
    wf = card.weights["model"]
    root = get_cache_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{pack.name}-", dir=root))
    try:
        logger.info("%s: downloading %s (%d MB) for %s", card.name, pack.url, pack.size_bytes >> 20, wf.filename)
        zip_path = download_file(pack.url, tmp / f"{pack.name}.zip", sha256=pack.sha256,
                                 description=f"{card.name}:{pack.name}.zip")
        member = _extract_member(zip_path, wf.filename, tmp, wf.sha256)
        return copy_into_cache(card, "model", member, cache_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def locate_weights(card: ModelCard, *, explicit: str | Path | None = None, cache_dir: str | Path | None = None,
                   download: bool | None = None, insightface_root: str | Path | None = None) -> Path:
    """The weight file of ``card``: explicit path, then (packs) ``~/.insightface/models/<pack>/``, then the cache,
    then a download when allowed. Raises :class:`WeightsNotFoundError` naming the file, its source and the folders."""
    if explicit is not None or card.name not in _PACK_OF_CARD:
        try:
            return resolve_weights(card, explicit=explicit, cache_dir=cache_dir, download=download)
        except WeightsNotFoundError as exc:
            hint = _ZOO_FOLDER.get(card.name)
            if explicit is None and hint:
                raise WeightsNotFoundError(f"{exc} (in the arcface_torch model zoo: {hint}/backbone.pth)") from exc
            raise
    for candidate in _insightface_candidates(card, insightface_root):
        if candidate.is_file():
            return checked_found_file(card, candidate, "the insightface models folder")
    try:
        return resolve_weights(card, cache_dir=cache_dir, download=False)
    except WeightsNotFoundError as exc:
        pack = _PACKS[_PACK_OF_CARD[card.name]]
        folder = _insightface_candidates(card, insightface_root)[0].parent
        allowed = (download is None or download) and not is_offline()
        if allowed:
            try:
                return _download_pack_member(card, cache_dir)
            except OSError as err:  # URLError is an OSError
                raise WeightsNotFoundError(f"{exc}; downloading {pack.url} failed ({err}); or unzip that pack into "
                                           f"{folder}") from err
        raise WeightsNotFoundError(f"{exc}; or unzip {pack.url} into {folder}") from exc


def locate_weight_files(name: str, weights: Mapping[str, str] | None = None, *,
                        insightface_root: str | Path | None = None) -> dict[str, Path]:
    """``{"model": path}`` as :func:`create` would find it, without downloading (work plans)."""
    return {"model": locate_weights(CARDS[name], explicit=(weights or {}).get("model"), download=False,
                                    insightface_root=insightface_root)}


def weight_status(name: str, *, cache_dir: str | Path | None = None,
                  insightface_root: str | Path | None = None) -> dict[str, str]:
    """``{"model": "present: PATH" | "missing: where to put it"}`` for ``restorever recognizers`` (no hashing)."""
    card = CARDS[name]
    if name in _PACK_OF_CARD:
        for candidate in _insightface_candidates(card, insightface_root):
            if candidate.is_file():
                return {"model": f"present: {candidate}"}
    status = hub_weight_status(card, cache_dir)
    if status["model"].startswith("missing"):
        if name in _PACK_OF_CARD:
            pack = _PACKS[_PACK_OF_CARD[name]]
            folder = _insightface_candidates(card, insightface_root)[0].parent
            status["model"] += f" or unzip {pack.url} into {folder} (downloaded on first use when online)"
        else:
            status["model"] += f" (model zoo folder {_ZOO_FOLDER[name]} at {card.weights['model'].origin_url})"
    return status


def _load_iresnet(card: ModelCard, path: Path) -> IResNet:
    """A ``backbone.pth`` state_dict (or an ``.onnx`` export) -> our IResNet of the card's depth, strictly."""
    if path.suffix.lower() == ".onnx":
        net = onnx_to_iresnet(path)
    else:
        depth = int(card.arch.removeprefix("iresnet"))
        net = build_uninitialised(IResNet, IRESNET_LAYERS[depth])
        load_state_dict_strict(net, load_checkpoint(path), source=str(path))
    expected = int(card.arch.removeprefix("iresnet")) if card.arch.startswith("iresnet") else None
    if expected is not None and net.layers_config != IRESNET_LAYERS[expected]:
        raise CheckpointLayoutError(f"{path}: an IResNet with blocks {net.layers_config}, {card.name} is "
                                    f"iresnet{expected} {IRESNET_LAYERS[expected]}")
    return net.eval()


# --------------------------------------------------------------------------------------------------------------------
# cards

_LICENSE = "non-commercial research only (InsightFace model zoo terms)"
_ZOO_URL = "https://1drv.ms/u/s!AswpsDO2toNKq0lWY69vN58GR6mw?e=p9Ov5d"
_ARCFACE_PAPER = "https://arxiv.org/abs/1801.07698"
_ZOO_FOLDER: dict[str, str] = {}


def _reported(lfw: float, cfp_fp: float, agedb: float, ijbc_e4: float | None = None,
              ijbc_e5: float | None = None) -> dict[str, float]:
    """Published figures in percent -> fractions (keys shared with the calibration tests)."""
    out = {"lfw_accuracy": lfw / 100, "cfp_fp_accuracy": cfp_fp / 100, "agedb30_accuracy": agedb / 100}
    if ijbc_e4 is not None:
        out["ijbc_tar_at_far_1e-4"] = ijbc_e4 / 100
    if ijbc_e5 is not None:
        out["ijbc_tar_at_far_1e-5"] = ijbc_e5 / 100
    return out


def _cfg(name: str, arch: str, weight: WeightFile, reported: Mapping[str, float], description: str,
         options: bool = False, **extra: Any) -> ModelCard:
    """A card; ``options``: declare the torch crop recognizer's options (``--recognizer-option``)."""
    return ModelCard(name=name, arch=arch, weights={"model": weight}, template="arcface_112", input_size=112,
                     mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5), channel_order="RGB",
                     default_kwargs={"flip_test": False, "precision": "auto",
                                     **(CROP_OPTION_DEFAULTS if options else {}), **extra},
                     option_specs=dict(CROP_OPTION_SPECS) if options else {}, description=description,
                     reported=dict(reported))


def _torch_card(depth: int, dataset: str, folder: str, reported: Mapping[str, float], loss: str) -> ModelCard:
    name = f"arcface-r{depth}-{dataset}"
    _ZOO_FOLDER[name] = folder
    paper = _ARCFACE_PAPER if dataset == "ms1mv3" else "https://arxiv.org/abs/2010.05222"
    weight = WeightFile("backbone.pth", url=None, sha256=None, license=_LICENSE, origin_url=_ZOO_URL, paper=paper)
    return _cfg(name, f"iresnet{depth}", weight, reported,
                f"arcface_torch IResNet-{depth}, {loss} loss on {dataset.upper()} (model zoo folder {folder}); "
                f"512-D raw embedding, cosine similarity", options=True)


ENGINES = ("auto", "onnxruntime", "torch")
#: the engine option of the packs whose network converts to our IResNet (``--recognizer-option engine=torch``)
ENGINE_OPTION = OptionSpec("auto (onnxruntime; on a GPU without onnxruntime's CUDA provider, the ONNX weights "
                           "converted to our IResNet), onnxruntime, or torch (that conversion, where precision, "
                           "channels_last and compile apply)", choices=ENGINES)


def _pack_card(pack: str, filename: str, arch: str, sha256: str, size: int, reported: Mapping[str, float],
               description: str) -> ModelCard:
    """A pack's card; one whose network converts to our IResNet declares the torch options and ``engine``."""
    name = f"insightface-{pack}"
    _PACK_OF_CARD[name] = pack
    weight = WeightFile(filename, url=None, sha256=sha256, license=_LICENSE, origin_url=_PACKS[pack].url,
                        paper="https://arxiv.org/abs/2103.04098", size_bytes=size)
    convertible = arch.startswith("iresnet")
    card = _cfg(name, arch, weight, reported, description, options=convertible, engine="auto")
    return replace(card, option_specs={**card.option_specs, "engine": ENGINE_OPTION}) if convertible else card


_TORCH_CARDS = [
    _torch_card(18, "ms1mv3", "ms1mv3_arcface_r18_fp16", _reported(99.77, 97.73, 97.77, 94.66, 92.07), "ArcFace"),
    _torch_card(34, "ms1mv3", "ms1mv3_arcface_r34_fp16", _reported(99.80, 98.67, 98.10, 95.90, 94.10), "ArcFace"),
    _torch_card(50, "ms1mv3", "ms1mv3_arcface_r50_fp16", _reported(99.83, 98.96, 98.35, 96.46, 94.79), "ArcFace"),
    _torch_card(100, "ms1mv3", "ms1mv3_arcface_r100_fp16", _reported(99.85, 99.06, 98.48, 96.81, 95.31), "ArcFace"),
    _torch_card(18, "glint360k", "glint360k_cosface_r18_fp16_0.1", _reported(99.77, 97.73, 97.72, 95.33, 93.16),
                "CosFace (Partial FC 0.1)"),
    _torch_card(34, "glint360k", "glint360k_cosface_r34_fp16_0.1", _reported(99.82, 98.78, 98.33, 96.56, 95.16),
                "CosFace (Partial FC 0.1)"),
    _torch_card(50, "glint360k", "glint360k_cosface_r50_fp16_0.1", _reported(99.83, 99.20, 98.38, 96.97, 95.61),
                "CosFace (Partial FC 0.1)"),
    _torch_card(100, "glint360k", "glint360k_cosface_r100_fp16_0.1", _reported(99.82, 99.29, 98.48, 97.32, 95.88),
                "CosFace (Partial FC 0.1)"),
]
_PACK_CARDS = [
    _pack_card("buffalo_l", "w600k_r50.onnx", "iresnet50",
               "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43", 174_383_860,
               _reported(99.83, 99.33, 98.23, 97.25),
               "insightface buffalo_l recognition model: IResNet-50 ArcFace on WebFace600K (ONNX)"),
    _pack_card("antelopev2", "glintr100.onnx", "iresnet100",
               "4ab1d6435d639628a6f3e5008dd4f929edf4c4124b1a7169e1048f9fef534cdf", 260_665_334, {},
               "insightface antelopev2 recognition model: IResNet-100 on Glint360K (ONNX); the model zoo publishes "
               "no LFW figure for it"),
    _pack_card("buffalo_s", "w600k_mbf.onnx", "mobilefacenet",
               "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f", 13_616_099,
               _reported(99.70, 98.00, 96.58, 95.02),
               "insightface buffalo_s recognition model: MobileFaceNet ArcFace on WebFace600K (ONNX; onnxruntime "
               "only)"),
]

CARDS: dict[str, ModelCard] = {card.name: card for card in _TORCH_CARDS + _PACK_CARDS}


# --------------------------------------------------------------------------------------------------------------------
# entry point


def choose_engine(card: ModelCard, engine: str, device: torch.device) -> str:
    """The engine that runs variant ``card`` for ``engine`` (``auto``, ``onnxruntime`` or ``torch``) on ``device``:
    ``auto`` is onnxruntime on a CPU; on CUDA, onnxruntime when its CUDA provider is installed, else the torch
    conversion (an IResNet; another network stays on onnxruntime, with a warning)."""
    engine = str(engine).lower()
    if engine not in ENGINES:
        raise ValueError(f"{card.name}: engine={engine!r}; choose auto, onnxruntime or torch")
    if engine != "auto":
        return engine
    if device.type != "cuda":
        return "onnxruntime"
    try:
        import onnxruntime as ort
    except ImportError:
        providers, why = [], "onnxruntime is not installed"  # the torch conversion when the network allows it
    else:
        providers, why = list(ort.get_available_providers()), "onnxruntime has no CUDA provider"
    if "CUDAExecutionProvider" in providers:
        return "onnxruntime"
    if not card.arch.startswith("iresnet"):
        logger.warning("%s: %s and %s cannot run in torch; using onnxruntime on CPU (pip uninstall onnxruntime && "
                       "pip install onnxruntime-gpu)", card.name, why, card.arch)
        return "onnxruntime"
    logger.info("%s: %s; converting the ONNX weights to torch", card.name, why)
    return "torch"


def create(name: str, *, weights: Mapping[str, str] | None = None, device: Any = "cpu", flip_test: bool = False,
           precision: str = "auto", engine: str | None = None, cache_dir: str | Path | None = None,
           download: bool | None = None, insightface_root: str | Path | None = None, channels_last: bool = False,
           compile: bool = False) -> Recognizer:
    """Create an ArcFace recognizer by registry name (see :data:`CARDS`).

    Args:
        weights: ``{"model": FILE}``, an explicit ``backbone.pth`` (or ``.onnx``) instead of the cache.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
        flip_test: add the embedding of the mirrored crop (insightface's benchmark protocol).
        precision: ``auto`` | ``fp32`` | ``fp16`` | ``bf16`` (torch engine; half precisions act on CUDA only).
        engine: insightface variants only: ``auto`` | ``onnxruntime`` | ``torch``.
        channels_last, compile: torch engine speed options (:mod:`restorever.acceleration`).
        cache_dir, download: see :func:`restorever.hub.resolve_weights`.
        insightface_root: where insightface keeps packs (default ``~/.insightface``).
    """
    if name not in CARDS:
        raise KeyError(f"arcface backend has no variant {name!r}; known: {', '.join(CARDS)}")
    card = CARDS[name]
    weights = check_weight_roles(name, weights, ["model"])
    dev = resolve_device(device)
    path = locate_weights(card, explicit=weights.get("model"), cache_dir=cache_dir, download=download,
                          insightface_root=insightface_root)
    if name in _PACK_OF_CARD:
        chosen = choose_engine(card, engine or card.default_kwargs.get("engine", "auto"), dev)
        if chosen == "onnxruntime":
            if channels_last or compile:
                raise ValueError(f"{name}: channels_last and compile apply to the torch engine; pass engine='torch' "
                                 f"(--recognizer-option engine=torch)")
            from ..precision import autocast_dtype

            autocast_dtype(precision, dev, "recognizer")  # an unknown value is refused here too
            if str(precision).lower() != "auto" and autocast_dtype(precision, torch.device("cuda"),
                                                                   "recognizer") is not None:  # fp16, float16, ...
                raise ValueError(f"{name}: precision={precision!r} applies to the torch engine (onnxruntime runs the "
                                 f"file's own float32 graph); pass engine='torch' (--recognizer-option "
                                 f"engine=torch), or precision='fp32'")
            rec: Recognizer = OnnxRecognizer(card, path, device=dev, flip_test=flip_test)
            rec.weight_files = {"model": (str(path), sha256_file(path))}
            logger.info("%s: %s on %s", name, path, ", ".join(rec.providers))
            return rec
        net = onnx_to_iresnet(path)
    else:
        if engine not in (None, "torch", "auto"):
            raise ValueError(f"{name}: a torch checkpoint runs with engine='torch' only")
        net = _load_iresnet(card, path)
    logger.info("%s: %s (torch, %s)", name, path, dev)
    rec = CropRecognizer(card, net.to(dev), embedding_dim=net.num_features, flip_test=flip_test,
                         autocast_dtype=autocast_dtype_for(precision, dev), channels_last=channels_last,
                         compile=compile).eval()
    rec.weight_files = {"model": (str(path), sha256_file(path))}
    return rec


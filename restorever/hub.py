"""Weight cards and checkpoint handling.

A *card* (:class:`ModelCard`) describes one registered backend variant: its weight files (URL, full sha256, licence),
its input contract (template, size, range, colour order) and its behaviour. :func:`resolve_weights` finds a weight
file (explicit path, cache, or download) and :func:`load_checkpoint` / :func:`load_state_dict_strict` load it safely
(``torch.load(..., weights_only=True)``, strict key and shape checks).

Cache directory: ``cache_dir=`` argument, else ``$RESTOREVER_HOME``, else ``$XDG_CACHE_HOME/restorever``, else
``~/.cache/restorever``. Set ``RESTOREVER_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) to forbid network access.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .errors import CheckpointLayoutError, WeightsNotFoundError, WeightsHashError

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "WeightFile", "ModelCard", "get_cache_dir", "resolve_weights", "sha256_file", "load_checkpoint",
    "load_state_dict_strict", "parse_weights_option", "check_weight_roles", "weight_status", "download_file",
]


@dataclass(frozen=True)
class WeightFile:
    """One weight file of a backend: where it comes from and how to check it."""

    filename: str
    url: str | None
    sha256: str | None
    license: str
    origin_url: str = ""
    paper: str = ""
    size_bytes: int | None = None


@dataclass(frozen=True)
class ModelCard:
    """Everything a user needs to know to run a registered backend variant.

    ``weights`` maps a role (``"model"`` for single-file backends; ``"unet"``/``"estimator"`` for DifFace) to its file.
    ``template``/``input_size``/``mean``/``std`` describe what the network itself consumes (in 0-255 units for
    ``mean``/``std`` unless the backend says otherwise); the public entry points always take ``[B,3,H,W]`` float RGB in
    ``[0, 1]``. ``reported`` holds published figures (e.g. ``{"lfw_accuracy": 0.9983}``).
    """

    name: str
    arch: str
    weights: Mapping[str, WeightFile] = field(default_factory=dict)
    template: str = "ffhq_512"
    input_size: int = 512
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    stochastic: bool = False
    default_kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    reported: Mapping[str, Any] = field(default_factory=dict)
    option_specs: Mapping[str, "OptionSpec"] = field(default_factory=dict)
    """What each key of ``default_kwargs`` means and which values it takes (``restorever restorers`` shows it; the
    CLI's ``--restorer-option KEY=VALUE`` is checked and converted by :func:`check_option`)."""


@dataclass(frozen=True)
class OptionSpec:
    """A backend option declared on its card. Its type is the type of the card's default (bool, int, float, text);
    ``choices`` and ``minimum``/``maximum`` restrict the values further."""

    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def check_option(card: ModelCard, key: str, value: Any) -> Any:
    """``value`` of option ``key`` converted to the type of the card's default and checked against its
    :class:`OptionSpec`. Raises ValueError naming the backend, the option and what it accepts."""
    default = card.default_kwargs[key]
    spec = card.option_specs.get(key)
    where = f"{card.name} option {key}"
    about = f" ({spec.help})" if spec else ""

    def fail(kind: str) -> ValueError:
        return ValueError(f"{where} takes {kind}{about}; got {value!r}")

    if isinstance(default, bool):
        text = str(value).strip().lower()
        if isinstance(value, bool):
            out: Any = value
        elif text in _TRUE or text in _FALSE:
            out = text in _TRUE
        else:
            raise fail("true or false")
    elif isinstance(default, (int, float)):
        kind = "an integer" if isinstance(default, int) else "a number"
        if isinstance(value, bool):
            raise fail(kind)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise fail(kind) from None
        if isinstance(default, int):
            if not number.is_integer():
                raise fail(kind)
            out = int(number)
        else:
            out = number
        if spec and spec.minimum is not None and out < spec.minimum:
            raise fail(f"{kind} of at least {spec.minimum}")
        if spec and spec.maximum is not None and out > spec.maximum:
            raise fail(f"{kind} of at most {spec.maximum}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise fail("text")
        out = value
    else:
        out = value
    if spec and spec.choices and out not in spec.choices:
        raise fail("one of " + ", ".join(map(str, spec.choices)))
    return out


def get_cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Return the weights/data cache directory (not created)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("RESTOREVER_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "restorever"


def is_offline() -> bool:
    """True when the environment forbids downloads."""
    return any(os.environ.get(k, "").strip() not in ("", "0") for k in ("RESTOREVER_OFFLINE", "HF_HUB_OFFLINE"))


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _weights_folder(card: ModelCard, root: Path) -> Path:
    return root / "weights" / card.name


def download_file(url: str, destination: Path, *, sha256: str | None, description: str = "") -> Path:
    """Download ``url`` to ``destination`` atomically with a progress bar; verify ``sha256`` before the rename.

    Raises ``WeightsHashError`` on a mismatch (the partial file is deleted) and ``OSError`` on network failure.
    """
    from tqdm.auto import tqdm

    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=destination.name + ".", suffix=".part", dir=destination.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=description or destination.name) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if sha256 and actual != sha256.lower():
            raise WeightsHashError(
                f"{url}: downloaded file has sha256 {actual}, expected {sha256}; the file was discarded")
        os.replace(tmp_name, destination)
        if not sha256:
            logger.warning("%s has no published sha256; recorded %s for it", destination, actual)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return destination


def resolve_weights(
    card: ModelCard,
    role: str = "model",
    *,
    explicit: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool | None = None,
) -> Path:
    """Find the weight file ``role`` of ``card``.

    Order: ``explicit`` path (must exist; a sha256 different from the card's only warns), then
    ``<cache>/weights/<card.name>/<filename>`` (a sha256 mismatch is an error), then a download when allowed.
    Raises :class:`WeightsNotFoundError` with the expected path, URL and fix when nothing is found.
    """
    if role not in card.weights:
        raise KeyError(f"{card.name} has no weight file for role {role!r}; roles: {sorted(card.weights)}")
    wf = card.weights[role]
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"{card.name}: weights file {path} does not exist (given with --weights)")
        if wf.sha256:
            actual = sha256_file(path)
            if actual != wf.sha256.lower():
                logger.warning("%s: %s has sha256 %s, the card lists %s (an explicit file: using it anyway)",
                               card.name, path, actual, wf.sha256)
        return path
    folder = _weights_folder(card, get_cache_dir(cache_dir))
    path = folder / wf.filename
    if path.is_file():
        if wf.sha256:
            actual = sha256_file(path)
            if actual != wf.sha256.lower():
                raise WeightsHashError(
                    f"{card.name}: cached file {path} has sha256 {actual}, expected {wf.sha256}; delete it and "
                    f"fetch it again (`restorever weights download {card.name}`, or `restorever weights add "
                    f"{card.name} FILE` for a file you downloaded)")
        return path
    allowed = (not is_offline()) if download is None else (download and not is_offline())
    if allowed and wf.url:
        try:
            logger.info("downloading %s from %s", wf.filename, wf.url)
            return download_file(wf.url, path, sha256=wf.sha256, description=f"{card.name}:{role}")
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise WeightsNotFoundError(_missing_message(card, role, path, reason=f"download failed ({exc})")) from exc
    raise WeightsNotFoundError(_missing_message(card, role, path))


def locate_weight_files(card: ModelCard, weights: Mapping[str, str] | None = None, *,
                        cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Every weight file of ``card`` as :func:`resolve_weights` would find it, without downloading: ``{role: path}``.

    For work plans (``--dry-run``), which must name the files a run would hash into its cache keys without building
    a network. Raises :class:`WeightsNotFoundError` for the first file that is neither given nor cached."""
    weights = check_weight_roles(card.name, weights, card.weights)
    return {role: resolve_weights(card, role, explicit=weights.get(role), cache_dir=cache_dir, download=False)
            for role in card.weights}


def locate_backend_weights(registry: Any, name: str, weights: Mapping[str, str] | None = None) -> dict[str, Path]:
    """``{role: path}`` of the files backend ``name`` of ``registry`` would load: its module's
    ``locate_weight_files(name, weights)`` where it keeps files elsewhere (dlib, insightface packs), else
    :func:`locate_weight_files` on its card. No network is built and nothing is downloaded."""
    hook = registry.hook(name, "locate_weight_files")
    if hook is not None:
        return hook(name, weights)
    return locate_weight_files(registry.card(name), weights)


def _missing_message(card: ModelCard, role: str, path: Path, reason: str = "") -> str:
    wf = card.weights[role]
    where = f"download it from {wf.url}" if wf.url else f"obtain it from {wf.origin_url or 'the authors'}"
    flag = "--weights FILE" if len(card.weights) == 1 else f"--weights {role}=FILE"
    extra = f" ({reason})" if reason else ""
    return (f"{card.name}: weights file {wf.filename} not found{extra}; {where} and put it at {path}, "
            f"or pass {flag}")


def weight_status(card: ModelCard, cache_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Role -> 'present: PATH' or 'missing: put FILENAME in FOLDER' (no hashing, no download)."""
    folder = _weights_folder(card, get_cache_dir(cache_dir))
    status = {}
    for role, wf in card.weights.items():
        path = folder / wf.filename
        status[role] = f"present: {path}" if path.is_file() else f"missing: put {wf.filename} in {folder}"
    return status


MAX_EXPANSION = 4  # a checkpoint's zip may declare at most 4x its size on disk (+ 64 MiB) uncompressed
_EXPANSION_SLACK = 64 << 20


def check_archive_sizes(path: Path) -> None:
    """Refuse a zip-format checkpoint whose members *declare* far more bytes than the file holds, before anything is
    decompressed (torch writes its members uncompressed, so a real checkpoint expands by a factor of about 1; a
    1 MB deflate bomb declaring 1 GiB is refused here). Legacy (non-zip) files are left to the unpickler."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            declared = sum(max(info.file_size, 0) for info in zf.infolist())
    except Exception as exc:  # noqa: BLE001 - BadZipFile, struct.error, ...: any failure on a hostile central directory
        raise CheckpointLayoutError(f"{path}: damaged zip archive ({type(exc).__name__}: {exc})") from None
    on_disk = path.stat().st_size
    if declared > MAX_EXPANSION * on_disk + _EXPANSION_SLACK:
        raise CheckpointLayoutError(f"{path}: its members declare {declared} bytes uncompressed from {on_disk} bytes "
                                    f"on disk (more than {MAX_EXPANSION}x + 64 MiB); refused before decompressing "
                                    f"(a compression bomb, or not a torch checkpoint)")


def load_error_summary(exc: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused a file, without torch's advice to retry with
    ``weights_only=False`` (which would run the file's code): the refused global when there is one."""
    text = str(exc).strip()
    if "weights only load failed" in text.lower() or "weights_only" in text:
        for line in text.splitlines():
            if "GLOBAL" in line or "Unsupported" in line or "unsupported" in line:
                return f"it needs code to be unpickled: {line.strip()}"
        return "it needs code to be unpickled (not a weights-only file)"
    return text.splitlines()[0] if text else type(exc).__name__


def load_weights_only(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU after :func:`check_archive_sizes`; any failure is one
    :class:`CheckpointLayoutError` line."""
    import torch

    path = Path(path)
    check_archive_sizes(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a malformed file can fail anywhere inside torch.load (struct.error, AssertionError...)
        raise CheckpointLayoutError(f"{path}: not a loadable weights-only checkpoint ({load_error_summary(exc)}); "
                                    f"restorever never unpickles code") from exc


def load_checkpoint(
    path: str | os.PathLike,
    *,
    keys: tuple[str, ...] = ("params_ema", "params", "state_dict", "model"),
    strip_prefix: str | None = "module.",
) -> dict[str, "torch.Tensor"]:
    """Load a checkpoint safely and return a flat ``{name: tensor}`` state_dict.

    Uses ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused with
    :class:`CheckpointLayoutError`. Unwraps the first of ``keys`` present, then strips ``strip_prefix``.
    """

    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: checkpoint file not found")
    obj = load_weights_only(path)
    if isinstance(obj, dict):
        for key in keys:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointLayoutError(f"{path}: expected a state_dict of tensors (optionally under one of {keys})")
    if strip_prefix and obj and all(k.startswith(strip_prefix) for k in obj):
        obj = {k[len(strip_prefix):]: v for k, v in obj.items()}
    return dict(obj)


def load_state_dict_strict(module: "torch.nn.Module", state_dict: Mapping[str, "torch.Tensor"], *,
                           source: str, show: int = 5) -> None:
    """Load ``state_dict`` into ``module`` requiring identical keys and shapes.

    Raises :class:`CheckpointLayoutError` naming ``source`` and the first ``show`` missing keys, unexpected keys and
    shape mismatches.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                  if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:show])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:show])})")
        if mismatched:
            parts.append(f"{len(mismatched)} of wrong shape (e.g. {'; '.join(mismatched[:show])})")
        raise CheckpointLayoutError(
            f"{source}: checkpoint layout does not match {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(dict(state_dict), strict=True)


def parse_weights_option(text: str | None, *, backends: Iterable[str] = ()) -> dict[str, str]:
    """Parse ``--weights``: ``"FILE"`` -> ``{"model": FILE}``; ``"unet=A,estimator=B"`` -> ``{"unet": A, ...}``.

    A part may start with the name of one of ``backends`` and a colon, for runs of several restorers:
    ``"vqfr-v2:V.pth,difface:unet=U.pth"`` -> ``{"vqfr-v2:model": "V.pth", "difface:unet": "U.pth"}`` (see
    :func:`restorever.pipeline.evaluate.route_restorer_weights`).
    """
    if not text:
        return {}
    names = sorted(backends, key=len, reverse=True)  # "gfpgan-v1.4" before a name it starts with

    def prefix_of(part: str) -> str | None:
        return next((n for n in names if part.startswith(f"{n}:")), None)

    if "=" not in text and prefix_of(text) is None:
        return {"model": text}  # one file, commas and all
    out: dict[str, str] = {}
    for part in text.split(","):
        prefix = prefix_of(part)
        body = part[len(prefix) + 1:] if prefix else part
        role, sep, value = body.partition("=") if ("=" in body or not prefix) else ("model", "=", body)
        if not sep or not role.strip() or not value.strip():
            raise ValueError(f"--weights: cannot parse {part!r}; use FILE or ROLE=FILE[,ROLE=FILE], each optionally "
                             f"prefixed with the restorer's name (vqfr-v2:FILE,difface:unet=FILE)")
        key = f"{prefix}:{role.strip()}" if prefix else role.strip()
        if key in out:
            raise ValueError(f"--weights: {key} is given twice")
        out[key] = value.strip()
    return out


def check_weight_roles(name: str, weights: Mapping[str, str] | None, roles: Iterable[str]) -> dict[str, str]:
    """``weights`` (``{role: path}``, as :func:`parse_weights_option` gives) as a dict, or ``ValueError`` naming the
    roles backend ``name`` does not take and the ``--weights`` forms it does."""
    weights = dict(weights or {})
    roles = list(roles)
    unknown = sorted(set(weights) - set(roles))
    if unknown:
        forms = ["FILE"] if "model" in roles else []  # a bare FILE means {"model": FILE}
        if roles != ["model"]:
            forms.append(",".join(f"{role}=FILE" for role in roles))
        raise ValueError(f"{name}: unknown weight role(s) {unknown}; use --weights {' or '.join(forms)}")
    return weights


def copy_into_cache(card: ModelCard, role: str, source: str | os.PathLike,
                    cache_dir: str | os.PathLike | None = None) -> Path:
    """Copy a local file into the cache location for ``card``/``role`` (used by ``restorever weights add``)."""
    wf = card.weights[role]
    folder = _weights_folder(card, get_cache_dir(cache_dir))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / wf.filename
    tmp = target.with_suffix(target.suffix + ".part")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def build_uninitialised(cls: "Callable[..., torch.nn.Module]", *args: Any, **kwargs: Any) -> "torch.nn.Module":
    """Build a module on the CPU without running its random initialisation (every entry is loaded next): built on
    the meta device, then given uninitialised CPU storage."""
    import torch

    with torch.device("meta"):
        module = cls(*args, **kwargs)
    return module.to_empty(device="cpu")

"""Weight cards and checkpoint handling.

A *card* (:class:`ModelCard`) describes one registered backend variant: its weight files (URL, full sha256, licence),
its input contract (template, size, range, colour order) and its behaviour. :func:`resolve_weights` finds a weight
file (explicit path, cache, or download); :mod:`restorever.checkpoint_files` reads it safely (``load_checkpoint``,
``load_state_dict_strict``, re-exported here: ``torch.load(..., weights_only=True)``, CRC-32s, strict keys and shapes).

Cache directory: ``cache_dir=`` argument, else ``$RESTOREVER_HOME``, else ``$XDG_CACHE_HOME/restorever``, else
``~/.cache/restorever``. Set ``RESTOREVER_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) to forbid network access
(``0``/``false``/``no``/``off`` or empty allow it).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .cache_dir import cache_dir_origin, get_cache_dir, refetch_fix
from .checkpoint_files import (build_uninitialised, load_checkpoint, load_state_dict_strict,  # re-exported
                               load_weights_only, random_state_dict)
from .errors import WeightsNotFoundError, WeightsHashError

logger = logging.getLogger(__name__)

__all__ = [
    "WeightFile", "ModelCard", "get_cache_dir", "resolve_weights", "sha256_file", "load_checkpoint",
    "load_state_dict_strict", "load_weights_only", "parse_weights_option", "check_weight_roles", "weight_status",
    "download_file", "weights_mapping", "copy_into_cache", "locate_backend_weights", "random_state_dict",
    "build_uninitialised",
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


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or below it (both resolved: symlinks and ``..`` followed)."""
    try:
        path, folder = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare as written
        pass
    return path == folder or folder in path.parents


def _folder_error(folder: Path, exc: OSError, cache_dir: str | os.PathLike | None = None) -> WeightsNotFoundError:
    """The error for a folder that cannot be created or written (``exc``): names the folder, the file in its way
    when there is one, and, inside the cache, the setting that chose the cache and how to change it."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    what = f"{blocker} is a file, not a folder" if blocker is not None else (exc.strerror or str(exc))
    message = f"cannot create or write the folder {folder} ({what})"
    root = get_cache_dir(cache_dir)
    if _inside(folder, root):
        fix = "pass a writable cache_dir" if cache_dir else "set RESTOREVER_HOME to a writable folder"
        message += f"; it is in the restorever cache {root}, chosen by {cache_dir_origin(cache_dir)}: {fix}"
    else:
        message += "; choose a writable folder"
    return WeightsNotFoundError(message)


def _make_folders(folder: Path, cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Create ``folder`` and its missing parents; return the folders created (outermost first), so that a failure
    after this can remove them again with :func:`_remove_folders`. Raises :func:`_folder_error`'s error."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    created: list[Path] = []
    for candidate in reversed(missing):
        try:
            candidate.mkdir()
        except FileExistsError as exc:
            if candidate.is_dir():  # made by another process meanwhile: not ours to remove
                continue
            _remove_folders(created)
            raise _folder_error(folder, exc, cache_dir) from exc
        except OSError as exc:
            _remove_folders(created)
            raise _folder_error(folder, exc, cache_dir) from exc
        created.append(candidate)
    return created


def _remove_folders(created: list[Path]) -> None:
    """Remove the folders :func:`_make_folders` created, innermost first, as far as they are empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:  # not empty (another process uses it) or already gone
            break


#: the environment variables that forbid downloads (the second is the Hugging Face convention)
OFFLINE_VARIABLES = ("RESTOREVER_OFFLINE", "HF_HUB_OFFLINE")
_warned_offline_values: set[tuple[str, str]] = set()


def offline_setting() -> str | None:
    """``"NAME=value"`` for the first of :data:`OFFLINE_VARIABLES` that forbids downloads, else None.

    Values are read like the other boolean settings: true/yes/on/1 or false/no/off/0, any case; empty means unset.
    Any other value also forbids downloads (the cautious reading of an "offline" switch), with a warning, once per
    value, naming the variable and the values it takes."""
    for name in OFFLINE_VARIABLES:
        raw = os.environ.get(name, "")
        text = raw.strip().lower()
        if not text or text in _FALSE:
            continue
        if text not in _TRUE and (name, raw) not in _warned_offline_values:
            _warned_offline_values.add((name, raw))
            logger.warning("%s=%s is not one of %s (offline) or %s (online); read as offline: set it to 0 or unset "
                           "it to allow downloads", name, raw, "/".join(_TRUE), "/".join(_FALSE))
        return f"{name}={raw}"
    return None


def is_offline() -> bool:
    """True when the environment forbids downloads (see :func:`offline_setting`)."""
    return offline_setting() is not None


def _offline_reason(setting: str) -> str:
    """Why nothing was downloaded, for a missing-file message: the variable that forbids it and how to lift that."""
    name = setting.partition("=")[0]
    return f"not downloaded: {setting} forbids network access; `unset {name}` or set it to 0 to allow the download"


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _weights_folder(card: ModelCard, root: Path) -> Path:
    return root / "weights" / card.name


def _create_part_file(destination: Path) -> tuple[int, Path]:
    """A new, empty ``<destination>.<random>.part`` beside ``destination``, opened for writing: ``(fd, path)``.

    Created with mode 0o666 less the umask, the mode ``open()`` gives, so the renamed file has the mode any other
    file of the user would have (``mkstemp`` makes 0o600 files)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = destination.with_name(f"{destination.name}.{secrets.token_hex(4)}.part")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"{destination.parent}: could not find a free name for {destination.name}.*.part")


def download_file(url: str, destination: Path, *, sha256: str | None, description: str = "") -> Path:
    """Download ``url`` to ``destination`` atomically with a progress bar; verify ``sha256`` before the rename.

    The bytes go to ``<destination>.<random>.part``, renamed to ``destination`` only once complete: as many bytes as
    the server's Content-Length promised, and the right ``sha256`` where one is given. On any failure the ``.part``
    file is deleted (there is no resume) and the folders this call created are removed again. The file gets the
    usual umask-respecting mode. Raises ``WeightsHashError`` on a sha256 mismatch, ``WeightsNotFoundError`` (an
    ``OSError``) on a short download or a folder that cannot be written, and ``OSError`` on network failure.
    """
    from .progress import progress_bar

    created = _make_folders(destination.parent)
    tmp: Path | None = None
    done = False
    try:
        try:
            fd, tmp = _create_part_file(destination)
        except OSError as exc:
            raise _folder_error(destination.parent, exc) from exc
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            try:
                total: int | None = int(response.headers.get("Content-Length") or "")
            except ValueError:  # absent or malformed: the size cannot be checked
                total = None
            with progress_bar(total=total, desc=description or destination.name, unit="B", unit_scale=True,
                              leave=True) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if total is not None and received != total:
            raise WeightsNotFoundError(
                f"{url}: the download stopped after {received} of the {total} bytes the server announced "
                f"(Content-Length); the partial file was deleted, {destination} was not written: try again")
        actual = digest.hexdigest()
        if sha256 and actual != sha256.lower():
            raise WeightsHashError(
                f"{url}: downloaded file has sha256 {actual}, expected {sha256}; the file was discarded")
        os.replace(tmp, destination)
        done = True
        if not sha256:
            logger.warning("%s: no sha256 is published for this file, so its content was not checked (%d bytes, "
                           "sha256 %s; not stored anywhere)", destination, received, actual)
    finally:
        if not done:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            _remove_folders(created)
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
        if path.is_dir():
            inside = path / wf.filename
            example = f", e.g. {inside}" if inside.is_file() else ""
            raise WeightsNotFoundError(f"{card.name}: {path} is a directory, not a weights file (given with "
                                       f"--weights); pass the file itself{example}")
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
                raise WeightsHashError(f"{card.name}: cached file {path} has sha256 {actual}, expected {wf.sha256}; "
                                       f"{refetch_fix(card.name)}")
        return path
    offline = offline_setting()
    wanted = download is None or bool(download)
    if wanted and offline is None and wf.url:
        try:
            created = _make_folders(folder, cache_dir)
        except WeightsNotFoundError as exc:
            raise WeightsNotFoundError(_missing_message(card, role, path, reason=str(exc))) from exc
        done = False
        try:
            logger.info("downloading %s from %s", wf.filename, wf.url)
            path = download_file(wf.url, path, sha256=wf.sha256, description=f"{card.name}:{role}")
            done = True
            return path
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise WeightsNotFoundError(_missing_message(card, role, path, reason=f"download failed ({exc})")) from exc
        finally:
            if not done:
                _remove_folders(created)
    reason = _offline_reason(offline) if (wanted and offline is not None and wf.url) else ""
    raise WeightsNotFoundError(_missing_message(card, role, path, reason=reason))


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
    single = len(card.weights) == 1
    flag = "--weights FILE" if single else f"--weights {role}=FILE"
    python = "weights=FILE" if single else f"weights={{{role!r}: FILE}}"  # create_restorer / create_recognizer
    extra = f" ({reason})" if reason else ""
    return (f"{card.name}: weights file {wf.filename} not found{extra}; {where} and put it at {path}, "
            f"or pass {flag} ({python} in Python)")


def weight_status(card: ModelCard, cache_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Role -> 'present: PATH' or 'missing: put FILENAME in FOLDER' (no hashing, no download)."""
    folder = _weights_folder(card, get_cache_dir(cache_dir))
    status = {}
    for role, wf in card.weights.items():
        path = folder / wf.filename
        status[role] = f"present: {path}" if path.is_file() else f"missing: put {wf.filename} in {folder}"
    return status


def parse_weights_option(text: str | None, *, backends: Iterable[str] = ()) -> dict[str, str]:
    """Parse ``--weights``: ``"FILE"`` -> ``{"model": FILE}``; ``"unet=A,estimator=B"`` -> ``{"unet": A, ...}``.
    A comma separates parts only before ``ROLE=`` or ``NAME:``; elsewhere it belongs to the path.

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
    # A comma separates parts only where the next part starts (ROLE= or NAME:), so a path may contain commas.
    starts = [r"[A-Za-z_][\w-]*="] + [re.escape(f"{n}:") for n in names]
    for part in re.split(f",(?=(?:{'|'.join(starts)}))", text):
        prefix = prefix_of(part)
        body = part[len(prefix) + 1:] if prefix else part
        role, sep, value = body.partition("=") if ("=" in body or not prefix) else ("model", "=", body)
        if not sep or not role.strip() or not value.strip() or value.rstrip().endswith(","):  # "a,," or "a,"
            raise ValueError(f"--weights: cannot parse {part!r}; use FILE or ROLE=FILE[,ROLE=FILE], each optionally "
                             f"prefixed with the restorer's name (vqfr-v2:FILE,difface:unet=FILE)")
        key = f"{prefix}:{role.strip()}" if prefix else role.strip()
        if key in out:
            raise ValueError(f"--weights: {key} is given twice")
        out[key] = value.strip()
    return out


def weights_mapping(weights: "str | os.PathLike | Mapping[str, str | os.PathLike] | None",
                    ) -> dict[str, str] | None:
    """The ``weights`` argument of ``create_restorer`` / ``create_recognizer`` as ``{role: path}``: a string as
    :func:`parse_weights_option` reads it, a path as ``{"model": path}``, a mapping with its paths as strings."""
    if weights is None:
        return None
    if isinstance(weights, str):
        return parse_weights_option(weights)
    if isinstance(weights, os.PathLike):
        return {"model": os.fspath(weights)}
    if isinstance(weights, Mapping):
        return {str(role): os.fspath(path) for role, path in weights.items()}
    raise TypeError(f"weights must be a file path or a {{role: path}} mapping, got {type(weights).__name__}")


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
        hint = _path_with_equals_hint(unknown, weights, roles)
        raise ValueError(f"{name}: unknown weight role(s) {unknown}; use --weights {' or '.join(forms)}{hint}")
    return weights


#: file suffixes that show a "role" is really part of a file path
_WEIGHT_SUFFIXES = (".pth", ".pt", ".pkl", ".ckpt", ".bin", ".tar", ".zip", ".onnx", ".safetensors", ".dat")


def _path_with_equals_hint(unknown: list[str], weights: Mapping[str, str], roles: list[str]) -> str:
    """A hint for an unknown role that is the start of a file path with '=' in it (``ck/run=2/codeformer.pth``
    parses as role ``ck/run``): how to write such a path; empty otherwise."""
    for role in unknown:
        whole = f"{role}={weights[role]}"
        if "/" in role or "\\" in role or role.lower().endswith(_WEIGHT_SUFFIXES) or os.path.exists(whole):
            first = "model" if "model" in roles else (roles[0] if roles else "ROLE")
            return (f" (if {whole} is one file: a path containing '=' must be written {first}=PATH, "
                    f"e.g. --weights {first}={whole})")
    return ""


def copy_into_cache(card: ModelCard, role: str, source: str | os.PathLike,
                    cache_dir: str | os.PathLike | None = None) -> Path:
    """Copy a local file into the cache location for ``card``/``role`` (used by ``restorever weights add``).

    The copy goes to ``<file>.part`` and is renamed when complete; on a failure the ``.part`` file and the folders
    this call created are removed, and :class:`WeightsNotFoundError` names the source, the target and the cause
    (for an unusable cache folder: the setting that chose it)."""
    wf = card.weights[role]
    folder = _weights_folder(card, get_cache_dir(cache_dir))
    created = _make_folders(folder, cache_dir)
    target = folder / wf.filename
    tmp = target.with_name(target.name + ".part")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        _remove_folders(created)
        if exc.filename is not None and Path(exc.filename) in (tmp, target):  # the cache folder is the problem
            raise WeightsNotFoundError(f"cannot copy {source} to {target}: "
                                       f"{_folder_error(folder, exc, cache_dir)}") from exc
        raise WeightsNotFoundError(f"cannot copy {source} to {target} ({type(exc).__name__}: "
                                   f"{exc.strerror or exc}); nothing was added: check that {source} is a readable "
                                   f"regular file and that {folder} has room for it") from exc
    return target

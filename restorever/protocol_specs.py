"""Protocol YAML files: where they are searched (:func:`list_protocols`), how one is loaded with its ``include:``
resolved (:func:`load_spec`), and the checks every spec passes before any data is read (:func:`validate_spec`,
including the safety of its download entries). The known formats, and the format-specific checks, come from the
format registry (:mod:`restorever.formats`)."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ProtocolError, UnknownNameError, did_you_mean
from .formats import FORMATS

logger = logging.getLogger(__name__)

#: ``alignment.select`` values runs implement: the face nearest the image centre (``restorever.detectors``); another
#: value would be ignored, so it is refused rather than accepted
FACE_SELECTION = ("nearest-centre",)
#: ``alignment.fit`` values, also ``restorever.alignment.FITS`` (defined here so that checking a spec imports no torch)
ALIGNMENT_FITS = ("least-squares", "lmeds")


def alignment_fit(spec: dict) -> str:
    """The protocol's ``alignment.fit`` (how landmarks are fitted to the template), ``least-squares`` when unset."""
    alignment = spec.get("alignment") or {}
    return str(alignment.get("fit", "least-squares")) if isinstance(alignment, dict) else "least-squares"


def protocol_search_path(include_path: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Folders searched for ``NAME.yaml``: ``include_path``, ``$RESTOREVER_PROTOCOL_PATH``, the installed package."""
    paths = [Path(p) for p in include_path]
    env = os.environ.get("RESTOREVER_PROTOCOL_PATH")
    if env:
        paths += [Path(p) for p in env.split(os.pathsep) if p]
    paths += shipped_protocol_dirs()
    return paths


def shipped_protocol_dirs() -> list[Path]:
    """The folders of the ``restorever.protocols`` data package (``protocols/`` in a checkout, shipped in the wheel);
    the ``protocols/`` of the source tree this module was imported from first, when there is one.

    Read from the import system's search locations, which works for editable and regular installs alike (a
    ``str()`` of ``importlib.resources.files`` does not name a folder when the package is spread over several)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("restorever.protocols")
    except (ModuleNotFoundError, ValueError):
        spec = None
    dirs = [Path(p) for p in (spec.submodule_search_locations or [])] if spec is not None else []
    # the source tree this code was imported from comes first: an editable install of another checkout (a second
    # git worktree run with PYTHONPATH) maps restorever.protocols to *its* protocols/, which would pair this
    # code with another tree's protocol files
    tree = Path(__file__).resolve().parent.parent
    checkout = tree / "protocols"
    if checkout.is_dir() and (tree / "setup.cfg").is_file():
        dirs = [checkout, *(d for d in dirs if d.resolve() != checkout)]
    elif checkout.is_dir() and checkout not in dirs:
        dirs.append(checkout)
    return dirs


def list_protocols(include_path: Sequence[str | os.PathLike] = ()) -> dict[str, Path]:
    """``{name: file}`` of every protocol on the search path; a name found in several folders is the first one's
    (:func:`shadowed_protocols` lists the files it hides)."""
    found: dict[str, Path] = {}
    for folder in protocol_search_path(include_path):
        if folder.is_dir():
            for f in sorted(folder.glob("*.yaml")):
                found.setdefault(f.stem, f)
    return found


def shadowed_protocols(include_path: Sequence[str | os.PathLike] = ()) -> dict[str, list[Path]]:
    """``{name: [files hidden by the one used]}`` for protocol names found in more than one folder of the search
    path (a user's ``lfw.yaml`` on ``$RESTOREVER_PROTOCOL_PATH`` hides the shipped ``lfw.yaml``)."""
    shipped = set(shipped_protocol_dirs())  # copies of the package's own files (checkout and install) hide nothing
    files: dict[str, list[Path]] = {}
    for folder in protocol_search_path(include_path):
        if folder.is_dir():
            for f in sorted(folder.glob("*.yaml")):
                seen = files.setdefault(f.stem, [])
                same = os.path.realpath(f) in {os.path.realpath(p) for p in seen}  # one folder named twice (a link)
                if not same and not (folder in shipped and any(p.parent in shipped for p in seen)):
                    seen.append(f)
    return {name: paths[1:] for name, paths in files.items() if len(paths) > 1}


_WARNED_SHADOWS: set[tuple[str, str]] = set()


def _named_protocol(name: str, include_path: Sequence[str | os.PathLike] = ()) -> Path | None:
    """The file ``--protocol NAME`` (or ``include: NAME``) resolves to, or None; a file that hides another of the
    same name is used as before, with a warning naming both (once per process and file)."""
    path = list_protocols(include_path).get(name)
    hidden = shadowed_protocols(include_path).get(name) if path is not None else None
    if hidden and (name, str(path)) not in _WARNED_SHADOWS:
        _WARNED_SHADOWS.add((name, str(path)))
        shipped = set(shipped_protocol_dirs())
        logger.warning("protocol %r: using %s, which shadows %s; rename your file to run both (`restorever "
                       "protocols` shows which file each name uses)", name, path,
                       ", ".join(f"{'the shipped ' if h.parent in shipped else ''}{h}" for h in hidden))
    return path


def load_spec(name_or_path: str, include_path: Sequence[str | os.PathLike] = (),
              _seen: frozenset = frozenset()) -> tuple[dict, Path]:
    """Load a protocol YAML by name or path, resolving ``include:`` (a base spec the file extends)."""
    import yaml

    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        available = list_protocols(include_path)
        if name_or_path not in available:
            hint = did_you_mean(name_or_path, available)
            raise ProtocolError(f"unknown protocol {name_or_path!r}{hint} (known: {', '.join(sorted(available))})")
        path = _named_protocol(name_or_path, include_path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read ({exc})") from exc
    if size > MAX_SPEC_BYTES:
        raise ProtocolError(f"{path}: {size} bytes, more than the {MAX_SPEC_BYTES} allowed for a protocol file")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OverflowError, ValueError, RecursionError) as exc:  # UnicodeDecodeError: a ValueError
        raise ProtocolError(f"{path}: invalid YAML ({type(exc).__name__}: {exc})") from exc
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(spec, dict):
        raise ProtocolError(f"{path}: a protocol file must be a mapping")
    if "include" in spec:
        include = spec.pop("include")
        if not isinstance(include, str) or not include.strip():
            raise ProtocolError(f"{path}: include must name one YAML file, got {include!r}")
        seen = set(_seen) | {path.resolve()}
        target = include_target(path, include, include_path).resolve()
        if target in seen:
            raise ProtocolError(f"{path}: include {include!r} forms a cycle")
        base, _ = load_spec(str(target), include_path, _seen=frozenset(seen))
        spec = _merge(base, spec)
    validate_spec(spec, source=str(path))
    return spec, path


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


MAX_SPEC_BYTES = 1 << 20  # a protocol YAML above 1 MiB is refused unread
#: a protocol name: it names a folder under the cache (``<cache>/data/<protocol>``), so it must be a plain slug
PROTOCOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: one component of a download's file name (``archive.tgz``, or ``sub/archive.tgz`` one folder deep)
_FILE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
#: URL schemes a protocol may download from (the official LFW host serves plain http; the sha256 guards content)
DOWNLOAD_SCHEMES = ("https", "http")
MAX_FOLDS = 1000
#: values of ``on_error`` (protocol key and ``--on-error``): stop at a bad image, or skip it (recorded)
ON_ERROR = ("error", "skip")
#: values of ``scoring.similarity``: ``recognizer`` = the recognizer's own metric, else a fixed one
SIMILARITY_CHOICES = ("recognizer", "cosine", "euclidean")
_MAX_INCLUDES = 8


def include_target(path: Path, include: str, include_path: Sequence[str | os.PathLike] = ()) -> Path:
    """The file ``include:`` in the protocol file ``path`` names: a protocol name (``include: lfw``) is looked up as
    ``--protocol NAME`` is (the search path), anything else is a file beside ``path``. The one rule of the loader,
    the format lookup and ``restorever validate --protocols``.

    A file that names itself (a user's ``lfw.yaml`` with ``include: lfw``, which shadows the shipped ``lfw.yaml``)
    includes the next file of that name on the search path, the one it shadows, rather than itself (a cycle)."""
    if PROTOCOL_NAME.match(include) and not include.endswith((".yaml", ".yml")):
        named = _named_protocol(include, include_path)
        if named is not None:
            files = [named, *shadowed_protocols(include_path).get(include, [])]
            here = [f.resolve() for f in files]
            if path.resolve() in here[:-1]:
                return files[here.index(path.resolve()) + 1]
            return named
    return path.parent / include


def raw_format(name_or_path: str, include_path: Sequence[str | os.PathLike] = ()) -> str | None:
    """``dataset.format`` of a protocol (following ``include:``) without validating it; None when the file cannot
    be read or names no format (the loader that runs it reports why)."""
    import yaml

    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = list_protocols(include_path).get(name_or_path)
        if path is None:
            return None
    for _ in range(_MAX_INCLUDES + 1):
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - any unreadable file has "no format"; the loader reports it
            return None
        if not isinstance(spec, dict):
            return None
        ds = spec.get("dataset")
        if isinstance(ds, dict) and "format" in ds:
            return ds["format"] if isinstance(ds["format"], str) else None
        if not isinstance(spec.get("include"), str):
            return None
        path = include_target(path, spec["include"], include_path)
    return None


def format_kind(fmt: str | None) -> str | None:
    """``"verification"`` or ``"identification"`` for a registered format, None for anything else."""
    if fmt is None:
        return None
    try:
        return FORMATS.card(fmt).kind
    except UnknownNameError:
        return None


def download_filename_problem(filename: Any) -> str | None:
    """Why ``filename`` is not a safe download target inside ``<cache>/data/<protocol>/`` (None when it is): a plain
    relative name, at most one sub-folder deep, of letters, digits and ``._+-`` (no ``..``, no absolute path)."""
    if not isinstance(filename, str) or not filename:
        return f"filename must be a plain file name, got {filename!r}"
    parts = filename.split("/")
    if "\\" in filename or len(parts) > 2 or not all(_FILE_PART.match(p) and p not in (".", "..") for p in parts) \
            or any(".." in p for p in parts):
        return (f"filename {filename[:80]!r} must be a plain file name inside the download folder (letters, "
                f"digits, '._+-', at most one sub-folder; no absolute path, no '..')")
    return None


#: a path that starts with a shell or template variable (``$HOME/...``, ``${RESTOREVER_DATA}/...``), with the
#: slashes after it
_VARIABLE_START = re.compile(r"^\$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)/*")
#: the ``dataset`` keys that name files or folders under the data root
DATA_PATH_KEYS = ("pairs", "people", "root", "images")


def variable_path_problem(value: Any) -> str | None:
    """Why a protocol data path that starts with a variable is refused (None for any other value): nothing expands
    variables, so ``${RESTOREVER_DATA}/pairs.txt`` would name a folder called ``${RESTOREVER_DATA}``. Data paths are
    relative to the data root, which ``--data-root`` or ``$RESTOREVER_DATA`` chooses, so no machine path is needed."""
    match = _VARIABLE_START.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    return (f"starts with a variable, which is not expanded: write it relative to the data root (chosen by "
            f"--data-root or $RESTOREVER_DATA), here {value[match.end():][:80] or '.'!r}")


def download_url_problem(url: Any) -> str | None:
    """Why ``url`` may not be downloaded from (None when it may): only http(s) URLs with a host."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or any(c.isspace() for c in url):
        return f"url must be an http(s) URL, got {url!r}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"url {url!r} is malformed"
    if parts.scheme.lower() not in DOWNLOAD_SCHEMES or not parts.netloc:
        return f"url {url!r} must be an http(s) URL with a host (file://, ftp:// and others are refused)"
    return None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def validate_spec(spec: dict, *, source: str) -> None:
    """Check a protocol spec without reading any data (run at load time by every command, ``--dry-run`` included).

    The protocol name, ``folds``, ``alignment`` and every ``dataset.download`` entry are checked here because they
    become folder names, array sizes and files written under the cache."""
    for key in ("protocol", "dataset"):
        if key not in spec:
            raise ProtocolError(f"{source}: missing key {key!r}")
    name = spec["protocol"]
    if not isinstance(name, str) or not PROTOCOL_NAME.match(name):
        raise ProtocolError(f"{source}: protocol must be a name of letters, digits, '.', '_' or '-' (it names a "
                            f"folder of the cache), got {str(name)[:60]!r}")
    if "folds" in spec and not (_positive_int(spec["folds"]) and spec["folds"] <= MAX_FOLDS):
        raise ProtocolError(f"{source}: folds must be a positive integer (at most {MAX_FOLDS}), got "
                            f"{str(spec['folds'])[:60]}")
    alignment = spec.get("alignment")
    if alignment is not None:
        if not isinstance(alignment, dict):
            raise ProtocolError(f"{source}: alignment must be a mapping (e.g. {{fallback_landmarks: [[x, y], ...]}}), "
                                f"got {str(alignment)[:60]}")
        if "fit" in alignment and alignment["fit"] not in ALIGNMENT_FITS:
            raise ProtocolError(f"{source}: alignment.fit must be one of {', '.join(ALIGNMENT_FITS)} (least-squares: "
                                f"all five points; lmeds: as the official restoration scripts), got "
                                f"{str(alignment['fit'])[:60]!r}")
        if "select" in alignment and alignment["select"] not in FACE_SELECTION:
            raise ProtocolError(f"{source}: alignment.select must be {' or '.join(FACE_SELECTION)} (the face a run "
                                f"uses when an image holds several), got {str(alignment['select'])[:60]!r}")
        if "fallback_landmarks" in alignment:
            pts = alignment["fallback_landmarks"]
            ok = isinstance(pts, list) and len(pts) == 5 and all(
                isinstance(p, list) and len(p) == 2 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in p)
                for p in pts)
            if not ok:
                raise ProtocolError(f"{source}: alignment.fallback_landmarks must be five [x, y] pixel points, got "
                                    f"{str(pts)[:60]}")
    _check_run_defaults(spec, source)
    ds = spec["dataset"]
    registered = FORMATS.names()
    if not isinstance(ds, dict) or ds.get("format") not in registered:
        got = ds.get("format") if isinstance(ds, dict) else ds
        raise ProtocolError(f"{source}: dataset.format must be one of the registered formats "
                            f"({', '.join(registered)}), got {str(got)[:60]!r}")
    card = FORMATS.card(ds["format"])
    if card.check is not None:
        card.check(spec, source)
    images = ds.get("images")
    if images is not None and not (isinstance(images, list) and images and all(
            isinstance(f, str) and f.strip() for f in images)):
        raise ProtocolError(f"{source}: dataset.images must be a non-empty list of folder names, got "
                            f"{str(images)[:60]}")
    paths = [(f"dataset.{key}", value) for key in DATA_PATH_KEYS
             for value in (ds[key] if isinstance(ds.get(key), list) else [ds.get(key)])]
    labels = spec.get("labels")
    for group, files in labels.items() if isinstance(labels, dict) else ():
        paths += [(f"labels.{group}.{key}", value) for key, value in (files.items() if isinstance(files, dict) else ())]
    for where, value in paths:
        problem = variable_path_problem(value)
        if problem:
            raise ProtocolError(f"{source}: {where} {str(value)[:80]!r} {problem}")
    downloads = ds.get("download")
    if downloads is not None:
        if not isinstance(downloads, list):
            raise ProtocolError(f"{source}: dataset.download must be a list of {{filename, url, sha256}} entries")
        for i, item in enumerate(downloads):
            if not isinstance(item, dict):
                raise ProtocolError(f"{source}: dataset.download[{i}] must be a mapping {{filename, url, sha256}}")
            problem = download_filename_problem(item.get("filename")) or download_url_problem(item.get("url"))
            sha = item.get("sha256")
            if problem is None and sha is not None and not (
                    isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
                problem = f"sha256 must be null or 64 lower-case hex digits, got {str(sha)[:70]!r}"
            if problem:
                raise ProtocolError(f"{source}: dataset.download[{i}]: {problem}")


def _check_run_defaults(spec: dict, source: str) -> None:
    """The keys that become a run's defaults (``seed``, ``on_error``, ``alignment.landmarks/template``,
    ``scoring.similarity``) and the metric directions, which must agree with the code's."""
    from .metrics import HIGHER_IS_BETTER

    seed = spec.get("seed")
    if "seed" in spec and not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2 ** 63):
        shown = "null (leave the key out for the default, 0)" if seed is None else str(seed)[:60]
        raise ProtocolError(f"{source}: seed must be an integer from 0 to 2**63 - 1, got {shown}")
    if "on_error" in spec and spec["on_error"] not in ON_ERROR:
        raise ProtocolError(f"{source}: on_error must be one of {', '.join(ON_ERROR)}, got "
                            f"{str(spec['on_error'])[:60]}")
    alignment = spec.get("alignment") or {}
    for key in ("landmarks", "template"):
        if isinstance(alignment, dict) and key in alignment and not (
                isinstance(alignment[key], str) and alignment[key].strip()):
            raise ProtocolError(f"{source}: alignment.{key} must be a name, got {str(alignment[key])[:60]}")
    scoring = spec.get("scoring")
    if scoring is not None:
        if not isinstance(scoring, dict):
            raise ProtocolError(f"{source}: scoring must be a mapping, got {str(scoring)[:60]}")
        if "similarity" in scoring and scoring["similarity"] not in SIMILARITY_CHOICES:
            raise ProtocolError(f"{source}: scoring.similarity must be one of {', '.join(SIMILARITY_CHOICES)}, "
                                f"got {str(scoring['similarity'])[:60]}")
    metrics = spec.get("metrics") or []
    if not isinstance(metrics, list):
        raise ProtocolError(f"{source}: metrics must be a list of {{name, higher_is_better}} entries, got "
                            f"{str(metrics)[:60]}")
    for i, metric in enumerate(metrics):
        if not isinstance(metric, dict):
            continue  # the shape is the linter's (restorever validate --protocols) to report
        name, declared = metric.get("name"), metric.get("higher_is_better")
        if not isinstance(name, str):  # a list or mapping from YAML is not a metric name (nor hashable)
            raise ProtocolError(f"{source}: metrics[{i}].name must be a metric name, got {str(name)[:60]}")
        if isinstance(declared, bool) and HIGHER_IS_BETTER.get(name, declared) != declared:
            raise ProtocolError(f"{source}: metrics[{i}] {name}: higher_is_better is {str(declared).lower()}, but "
                                f"restorever computes {name} as a metric where "
                                f"{'higher' if HIGHER_IS_BETTER[name] else 'lower'} is better")

"""Linting of protocol YAML files (``restorever validate --protocols``) without reading any data: the loader's own
checks, then paths (relative to the data root), downloads, metrics, alignment and scoring. The keys a
file may hold are its format's (:class:`restorever.formats.base.FormatCard`), read from the format registry."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Sequence


from ..errors import RestoreverError, did_you_mean
from ..protocol_specs import ALIGNMENT_FITS, FACE_SELECTION, SIMILARITY_CHOICES, include_target
from .common import is_type, short



_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


_MAX_INCLUDES = 8


def validate_protocols(paths: Sequence[str | os.PathLike] | None = None
                       ) -> tuple[dict[Path, list[str]], dict[Path, list[str]]]:
    """Validate protocol files, given as paths or as protocol names (all the ones ``restorever protocols`` lists
    when ``paths`` is empty): ``({path: problems}, {path: notes})``."""
    from ..protocol import list_protocols

    known = list_protocols()
    # a name is looked up as --protocol NAME is (a file of that name beside the caller comes first)
    files = ([Path(p) if Path(p).exists() or str(p) not in known else known[str(p)] for p in paths] if paths
             else sorted(set(known.values())))
    problems, notes = {}, {}
    for f in files:
        notes[f] = []
        if not f.exists() and str(f) not in known:  # a mistyped name: say which names exist, as --protocol does
            problems[f] = [f"{f}: no such file, nor a protocol of that name{did_you_mean(f, known)} (`restorever "
                           f"protocols` lists them)"]
            continue
        problems[f] = validate_protocol_file(f, notes=notes[f])
    return problems, notes


def validate_protocol_file(path: str | os.PathLike, *, notes: list[str] | None = None) -> list[str]:
    """Problems of one protocol YAML file (empty when valid), without reading any data."""
    from ..protocol import load_spec

    path = Path(path)
    notes = notes if notes is not None else []
    if not path.is_file():
        return [f"{path}: no such file"]
    fmt, problem = _raw_format(path)
    if problem:
        return [problem]
    try:  # the loader runs the registered format's own check (lfw-ident: people file, split options)
        spec, _ = load_spec(str(path))
    except RestoreverError as exc:
        return [str(exc).splitlines()[0]]
    except Exception as exc:  # noqa: BLE001 - a loader bug on a hostile file is reported, not raised
        return [f"{path}: cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"]
    return _spec_problems(spec, path, notes)


def _raw_format(path: Path) -> tuple[str | None, str | None]:
    """``dataset.format`` of a file, following ``include:`` (at most 8 deep, no cycles): ``(format, problem)``."""
    import yaml

    seen: list[Path] = []
    current = path
    while True:
        resolved = current.resolve()
        if resolved in seen:
            return None, f"{path}: include cycle ({' -> '.join(p.name for p in [*seen, resolved])})"
        if len(seen) >= _MAX_INCLUDES:
            return None, f"{path}: more than {_MAX_INCLUDES} nested includes"
        seen.append(resolved)
        try:
            data = yaml.safe_load(current.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return None, f"{path}: included file {current} does not exist"
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"{current}: cannot be read as UTF-8 text ({exc})"
        except RecursionError:
            return None, f"{current}: nested too deeply"
        except yaml.YAMLError as exc:
            return None, f"{current}: invalid YAML ({str(exc).splitlines()[0]})"
        except Exception as exc:  # noqa: BLE001 - PyYAML raises others on hostile text (OverflowError for "\\U...")
            return None, f"{current}: invalid YAML ({type(exc).__name__}: {exc})"
        if not isinstance(data, dict):
            return None, f"{current}: a protocol file must be a mapping"
        ds = data.get("dataset")
        if isinstance(ds, dict) and "format" in ds:
            fmt = ds["format"]
            return (fmt if isinstance(fmt, str) else None), None
        include = data.get("include")
        if include is None:
            return None, None
        if not isinstance(include, str) or not include.strip():
            return None, f"{current}: include must name one YAML file, got {short(include)}"
        current = include_target(current, include)


def _spec_problems(spec: dict[str, Any], path: Path, notes: list[str]) -> list[str]:
    """Rules on a loaded (merged) spec beyond the loader's own."""
    out: list[str] = []
    name = spec.get("protocol")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        out.append(f"{path}: protocol must be a name of letters, digits, '.', '_' or '-', got {short(name)}")
    elif name != path.stem:
        notes.append(f"{path}: protocol {name!r} differs from the file name (it is listed as {path.stem!r})")
    from ..formats import format_card

    card = format_card(spec["dataset"]["format"])  # load_spec accepted it: a registered format
    unknown = sorted(str(k) for k in spec if k not in card.all_spec_keys)
    if unknown:
        notes.append(f"{path}: unknown key(s) {unknown} for format {card.name} (a typo?)")
    unknown = sorted(str(k) for k in spec["dataset"] if k not in card.all_dataset_keys)
    if unknown:
        notes.append(f"{path}: unknown dataset key(s) {unknown} for format {card.name} (a typo?)")
    for key in ("version", "folds"):
        if key in spec and not (is_type(spec[key], "integer") and spec[key] >= 1):
            out.append(f"{path}: {key} must be a positive integer, got {short(spec[key])}")
    ds = spec.get("dataset") or {}
    for key in ("pairs", "people", "root"):
        values = ds.get(key)
        for value in (values if isinstance(values, list) else [values] if values is not None else []):
            problem = _relative_path_problem(value)
            if problem:
                out.append(f"{path}: dataset.{key} {short(value)} {problem}")
    images = ds.get("images")
    if images is not None:
        if not isinstance(images, list) or not images:
            out.append(f"{path}: dataset.images must be a non-empty list of folder names")
        else:
            for value in images:
                problem = _relative_path_problem(value)
                if problem:
                    out.append(f"{path}: dataset.images entry {short(value)} {problem}")
    downloads = ds.get("download")
    if downloads is not None:
        if not isinstance(downloads, list):
            out.append(f"{path}: dataset.download must be a list of {{filename, url, sha256}} entries")
        else:
            for i, item in enumerate(downloads):
                out += [f"{path}: dataset.download[{i}]: {p}" for p in _download_problems(item)]
    metrics = spec.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, list):
            out.append(f"{path}: metrics must be a list of {{name, higher_is_better}} entries")
        else:
            for i, m in enumerate(metrics):
                if not (isinstance(m, dict) and isinstance(m.get("name"), str) and m["name"]
                        and isinstance(m.get("higher_is_better"), bool)):
                    out.append(f"{path}: metrics[{i}] needs a name and a true/false higher_is_better, got {short(m)}")
    alignment = spec.get("alignment")
    if alignment is not None:
        if not isinstance(alignment, dict):
            out.append(f"{path}: alignment must be a mapping")
        elif "template" in alignment and alignment["template"] not in _template_names():
            out.append(f"{path}: alignment.template must be one of {', '.join(_template_names())}, "
                       f"got {short(alignment['template'])}")
        if isinstance(alignment, dict) and "fit" in alignment and alignment["fit"] not in ALIGNMENT_FITS:
            out.append(f"{path}: alignment.fit must be one of {', '.join(ALIGNMENT_FITS)}, "
                       f"got {short(alignment['fit'])}")
        if isinstance(alignment, dict) and "select" in alignment and alignment["select"] not in FACE_SELECTION:
            out.append(f"{path}: alignment.select must be {' or '.join(FACE_SELECTION)} (the only face selection "
                       f"runs implement), got {short(alignment['select'])}")
        if isinstance(alignment, dict) and "fallback_landmarks" in alignment:
            pts = alignment["fallback_landmarks"]
            ok = (isinstance(pts, list) and len(pts) == 5 and all(
                isinstance(p, list) and len(p) == 2 and all(is_type(v, "number") and math.isfinite(v) for v in p)
                for p in pts))
            if not ok:
                out.append(f"{path}: alignment.fallback_landmarks must be five [x, y] pixel points")
    scoring = spec.get("scoring")
    if scoring is not None:
        if not isinstance(scoring, dict):
            out.append(f"{path}: scoring must be a mapping")
        elif "similarity" in scoring and scoring["similarity"] not in SIMILARITY_CHOICES:
            out.append(f"{path}: scoring.similarity must be one of {list(SIMILARITY_CHOICES)}, "
                       f"got {short(scoring['similarity'])}")
    return out


def _template_names() -> list[str]:
    """The alignment templates :mod:`restorever.alignment` defines."""
    from ..alignment import list_templates

    return list_templates()


def _relative_path_problem(value: Any) -> str | None:
    """Why ``value`` is not a safe data path (relative, inside the data root; a leading variable is refused by the
    loader's own check, which runs first)."""
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if "\x00" in value:
        return "contains a NUL character"
    text = value.replace("\\", "/")
    if text.startswith("/") or text.startswith("~") or re.match(r"^[A-Za-z]:", text):
        return "must be relative to the data root"
    if any(part == ".." for part in text.split("/")):
        return "must not contain '..' (it would leave the data root)"
    return None


def _download_problems(item: Any) -> list[str]:
    if not isinstance(item, dict):
        return [f"expected a mapping, got {short(item)}"]
    out = []
    from ..protocol import download_filename_problem, download_url_problem

    out += [p for p in (download_filename_problem(item.get("filename")), download_url_problem(item.get("url"))) if p]
    sha = item.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256_RE.match(sha)):
        out.append(f"sha256 must be null or 64 lower-case hex digits, got {short(sha)}")
    if "extract" in item and not isinstance(item["extract"], bool):
        out.append("extract must be true or false")
    return out

"""Where a protocol's data lives: ``--data-root``, ``$RESTOREVER_DATA`` or ``<cache>/data/<protocol>``, downloading
the official archive there (sha256-checked, extracted safely) when the spec names one and we are online."""
from __future__ import annotations

import logging
import os
import tarfile
from pathlib import Path


from .errors import DataNotFoundError, ProtocolError, WeightsHashError
from .images import safe_join
from .formats.lfw_pairs import LFW_IMAGE_FOLDERS
from .protocol_specs import PROTOCOL_NAME, download_filename_problem, download_url_problem

logger = logging.getLogger(__name__)


def resolve_data_root(spec: dict, data_root: str | os.PathLike | None, *, download: bool | None = None) -> Path:
    """Find the folder holding a protocol's data: ``data_root``, then ``$RESTOREVER_DATA``, then the cache dir
    (``<cache>/data/<protocol>``); download the official archive there when the spec names one and we are online."""
    from .hub import get_cache_dir, is_offline

    name = spec["protocol"]
    ds = spec["dataset"]
    pairs = ds.get("pairs")
    first_pairs = (pairs[0] if isinstance(pairs, list) else pairs) if pairs else None

    marker = {"lfw-pairs": first_pairs, "lfw-ident": ds.get("people")}.get(ds["format"])  # a file the data has

    def usable(root: Path) -> bool:
        if not root.is_dir():
            return False
        if marker:
            folders = ds.get("images") or LFW_IMAGE_FOLDERS
            return (root / marker).is_file() and any((root / f).is_dir() for f in folders)
        return True

    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(f"--data-root {root}: no such folder")
        return root
    candidates = []
    env = os.environ.get("RESTOREVER_DATA")
    if env:
        candidates += [Path(env).expanduser() / name, Path(env).expanduser()]
    if not isinstance(name, str) or not PROTOCOL_NAME.match(name):
        raise ProtocolError(f"protocol name {str(name)[:60]!r} is not a plain name; it cannot name a cache folder")
    cached = get_cache_dir() / "data" / name
    candidates.append(cached)
    for root in candidates:
        if usable(root):
            return root
    archives = ds.get("download") or []
    allowed = (not is_offline()) if download is None else (download and not is_offline())
    if archives and allowed:
        try:
            return download_dataset(archives, cached, name)
        except OSError as exc:
            logger.warning("download of %s failed: %s", name, exc)
    layout = ""
    if marker:
        folders = list(ds.get("images") or LFW_IMAGE_FOLDERS)
        layout = (f"\nexpected layout:\n  DIR/{marker}\n  DIR/{folders[0]}/NAME/NAME_0001.jpg "
                  f"(or {', '.join(f + '/' for f in folders[1:])}: the first that exists)")
    raise DataNotFoundError(
        f"protocol {name}: data not found (looked in {', '.join(str(c) for c in candidates)}); "
        f"pass --data-root DIR or set RESTOREVER_DATA{layout}")


def download_dataset(archives: list[dict], target: Path, name: str) -> Path:
    """Download each of a spec's ``dataset.download`` entries into ``target`` (sha256-checked where the entry gives
    one) and extract those marked ``extract``. A file already there is used only if it has the entry's sha256: an
    older or another download under the same name is refused, naming the file, not extracted as if it were this."""
    from .hub import download_file, sha256_file

    target.mkdir(parents=True, exist_ok=True)
    for item in archives:
        problem = download_filename_problem(item.get("filename")) or download_url_problem(item.get("url"))
        if problem:  # validate_spec checked this at load; a spec built in code is checked here too
            raise ProtocolError(f"protocol {name}: download refused: {problem}")
        dest = safe_join(target, item["filename"], what="download filename")
        expected = item.get("sha256")
        if not dest.exists():
            download_file(item["url"], dest, sha256=expected, description=f"{name}:{item['filename']}")
        elif expected and (actual := sha256_file(dest)) != str(expected).lower():
            raise WeightsHashError(
                f"{dest}: sha256 {actual}, but protocol {name} lists {expected} for {item['filename']} (an older or "
                f"another download under the same name?); delete the file and rerun to download it again")
        if item.get("extract") and dest.suffix in (".tgz", ".gz", ".tar"):
            try:
                with tarfile.open(dest) as tar:
                    tar.extractall(target, filter="data")  # refuses members that escape the folder
            except (tarfile.TarError, OSError) as exc:  # FilterError (an escaping member) is a TarError
                raise ProtocolError(f"{dest}: refused to extract the archive ({type(exc).__name__}: {exc})") from exc
    return target

"""``OUT/restore.json``: what ``restorever restore`` did, and the check that lets a rerun resume (``OUT/degrade.json``
is the same kind of record for ``restorever degrade``: :class:`DegradeRecord`, one entry per written PNG).

The record holds the run's settings (restorer, weights sha256, restorer options, seed, detector and, for SCRFD, its
ONNX file's sha256, alignment fit, faces mode, minimum face size, aligned/detect) and one entry per output file
(``NAME.png``): the input's path and sha256, the output file's sha256, the faces restored (boxes and landmarks in
photo pixels), notes, or the reason it was skipped. A rerun into the same folder keeps an output whose entry has the
same input sha256 and whose file still has the recorded sha256 (a truncated, corrupted or replaced output is
restored again), and refuses other settings rather than mix two kinds of output in one folder. Every write is
atomic; during a run the record is rewritten at most every :data:`SAVE_EVERY_S` seconds (rewriting a large
collection's record after every image would write its size squared), so a killed run redoes at most that much work,
and never trusts an unrecorded output. With ``--overwrite`` the replaced record's outputs that the new run does not
write are removed (:meth:`OutputRecord.remove_stale`: only files that still hold the bytes recorded); until the new
run has written the others, their entries stay in the record under ``replaced``, so an interrupted overwrite loses
track of none.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

from ..errors import RestoreverError
from ..files import atomic_write_text
from ..images import read_file_bytes

__all__ = ["DEGRADE_RECORD_NAME", "DegradeRecord", "OutputRecord", "RECORD_NAME", "RestoreRecord",
           "degrade_settings", "run_settings"]

logger = logging.getLogger(__name__)

RECORD_NAME = "restore.json"
DEGRADE_RECORD_NAME = "degrade.json"
RECORD_VERSION = 1
#: version of the code that makes restore's output pixels (alignment, paste-back blend, the sharing of overlapping
#: faces' pixels); part of the compared settings, so a folder started by other code is never resumed into a mix.
#: Bump it when that code's output changes.
PIXELS_VERSION = 1
#: version of the code that makes ``degrade``'s PNGs (``ffhq_512`` alignment, the degradation presets' pixel code);
#: part of ``degrade.json``'s compared settings (:func:`degrade_settings`). Bump it when that code's output changes.
DEGRADE_PIXELS_VERSION = 1
#: seconds between two saves of the record while a run adds entries (and once at the end)
SAVE_EVERY_S = 30.0


def run_settings(*, restorer: str, weight_files: Mapping[str, tuple[str, str | None]], options: Mapping[str, Any],
                 seed: int, detector: str, alignment_fit: str, faces: str, min_face_size: float,
                 aligned: bool | None, detector_file: str | None = None,
                 plugin: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings that decide the output pixels (JSON-ready), with :data:`PIXELS_VERSION`. Weights count by
    sha256 only: the same file in another folder gives the same faces; ``min_face_size`` (photo pixels) counts only
    with ``faces="all"``. ``detector_file``: the hex sha256 of the detector's model file
    (:func:`restorever.detectors.detector_file_sha256`: SCRFD's ONNX file), a compared setting only when there is
    one: MTCNN's weights are fixed by the pinned facenet-pytorch, and its folders' settings stay as they were.
    ``plugin``: :func:`restorever.pipeline.plugins.plugin_of` a plugin's restorer; its file's and its helpers'
    sha256 and package version are compared, so an edited plugin does not resume into the old one's outputs, while
    the dotted name it was imported by is not (the same file by path or as ``lab.my_blur`` resumes); built-ins'
    settings stay as they were."""
    settings = {"restorer": restorer,
                "weights_sha256": {role: sha for role, (_, sha) in sorted(weight_files.items())},
                "restorer_options": {k: options[k] for k in sorted(options)}, "seed": int(seed), "detector": detector,
                "alignment_fit": alignment_fit, "faces": faces,
                "min_face_size": float(min_face_size) if faces == "all" else None,
                "aligned": aligned, "pixels_version": PIXELS_VERSION}
    if detector_file is not None:
        settings["detector_file"] = detector_file
    if plugin:
        settings["plugin"] = {k: v for k, v in plugin.items() if k != "module"}
    return settings


def degrade_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """``degrade``'s compared settings: the manifest's ``options`` (``device`` among them) and ``pixels_version``,
    the versions of the code behind the pixels: :data:`DEGRADE_PIXELS_VERSION`, the landmark stage's (its
    landmarks place the crop) and, off the CPU, the device degradation path's (another one rounds a rare pixel the
    other way). A folder started by other code is then refused, not resumed into a mix."""
    from .cache import DEVICE_DEGRADATION_VERSION, STAGE_VERSIONS

    version = {"degrade": DEGRADE_PIXELS_VERSION, "landmarks": STAGE_VERSIONS["landmarks"]}
    if options.get("device") != "cpu":
        version["device_degradation"] = DEVICE_DEGRADATION_VERSION
    return {**options, "pixels_version": version}


class OutputRecord:
    """The record of one output folder: load it, check a rerun's settings against it, add entries, save.

    Args:
        out: the output folder.
        settings: the settings that decide the output pixels (JSON-ready; :func:`run_settings` for restore).
        header: facts recorded but not compared (restorever version, weight file paths, device).
        overwrite: start a new record even when the folder holds one made with other settings (the replaced
            record's entries stay in :attr:`previous` for :meth:`remove_stale`).
    """

    #: the record's file name in the output folder, the command that writes it, and what ``--overwrite`` does
    record_name = RECORD_NAME
    command = "restore"
    redo = "restore every input again with these"

    def __init__(self, out: Path, settings: dict[str, Any], header: dict[str, Any], *, overwrite: bool) -> None:
        self.path = Path(out) / self.record_name
        self.settings = json.loads(json.dumps(settings))  # as it reads back from the file (tuples -> lists)
        self.header = header
        self.entries: dict[str, dict[str, Any]] = {}
        self.previous: dict[str, dict[str, Any]] = {}
        self._saved_at = time.monotonic()
        old = self._load()
        # outputs of a replaced run not yet removed or written again (an --overwrite run stopped half-way)
        self.previous = dict(old.get("replaced") or {}) if old is not None else {}
        if old is None or overwrite:
            if old is not None:
                self.previous.update(old.get("inputs") or {})
                logger.warning("%s: replacing the record of an earlier run (--overwrite)", self.path)
            return
        if old.get("settings") != self.settings:
            was = old.get("settings") or {}
            # every key either side holds: a key only the old record has (SCRFD's detector_file, then MTCNN) too
            keys = [*self.settings, *(k for k in was if k not in self.settings)]
            diff = ", ".join(f"{k} {was.get(k)!r} -> {self.settings.get(k)!r}" for k in keys
                             if was.get(k) != self.settings.get(k))
            raise RestoreverError(f"{self.path.parent} holds outputs made with other settings ({diff}); choose a "
                                  f"new --out, or pass --overwrite to {self.redo}")
        self.entries = dict(old.get("inputs") or {})

    def _load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RestoreverError(f"{self.path}: unreadable record ({type(exc).__name__}: {exc}); delete it or "
                                  f"choose a new --out") from exc
        if not isinstance(data, dict) or data.get("record_version") != RECORD_VERSION:
            raise RestoreverError(f"{self.path}: not a {self.command} record of version {RECORD_VERSION}; delete "
                                  f"it or choose a new --out")
        inputs, replaced = data.get("inputs", {}), data.get("replaced", {})
        if not isinstance(data.get("settings", {}), dict) or not isinstance(inputs, dict) \
                or not isinstance(replaced, dict) \
                or not all(isinstance(entry, dict) for entry in [*inputs.values(), *replaced.values()]):
            raise RestoreverError(f"{self.path}: damaged record ('settings' and each entry of 'inputs' and "
                                  f"'replaced' must be JSON objects); delete it or choose a new --out")
        return data

    def done(self, name: str, sha256: str, **facts: Any) -> bool:
        """True when output ``name``'s entry was made from an input with this sha256 (and, for each of ``facts``,
        JSON-ready values such as ``degrade``'s landmarks, the same value) and the file still holds the bytes that
        run wrote (its ``output_sha256``): an output truncated, corrupted or replaced since, or an entry without
        that digest, is made again rather than trusted because the file exists."""
        entry = self.entries.get(name)
        if entry is None or entry.get("sha256") != sha256 or "skipped" in entry \
                or any(entry.get(key) != value for key, value in facts.items()):
            return False
        expected = entry.get("output_sha256")
        if not isinstance(expected, str):
            return False
        try:  # not a plain read: a FIFO put there by hand must not hang the run
            data = read_file_bytes(self.path.parent / name, max_bytes=1 << 32, what="output")
        except (RestoreverError, OSError):  # gone, a folder, not a regular file, unreadable: restore it again
            return False
        if hashlib.sha256(data).hexdigest() != expected:
            logger.warning("%s: not the file restorever wrote (changed or damaged since); making it again",
                           self.path.parent / name)
            return False
        return True

    def add(self, name: str, entry: dict[str, Any]) -> None:
        """Record ``entry`` for output ``name``; save the record when the last save is over ``SAVE_EVERY_S`` old."""
        self.entries[name] = entry
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        """Write the record atomically (a run killed at any moment leaves the old or the new file)."""
        data = {"record_version": RECORD_VERSION, **self.header, "settings": self.settings,
                "inputs": {k: self.entries[k] for k in sorted(self.entries)}}
        pending = {k: self.previous[k] for k in sorted(self.previous) if k not in self.entries}
        if pending:  # a replaced run's outputs this run has not yet written again: a later --overwrite still knows
            data["replaced"] = pending
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")
        self._saved_at = time.monotonic()

    def remove_stale(self, keep: set[str]) -> list[Path]:
        """``--overwrite``: delete the outputs of the replaced record (:attr:`previous`) that this run does not
        write again (names not in ``keep``), so the folder holds no output of other settings beside this run's.
        Only a regular file under the folder, named as a relative ``.png`` path in its one plain spelling (no
        ``..``, ``.``, ``//``), reached through real folders (no symlink anywhere below the output folder: one to a
        folder elsewhere would take the removal outside it), whose bytes still have the entry's ``output_sha256``
        (what that run wrote) is removed: a file edited or replaced since (also while it was being checked), a
        skip's leftover, a symlink or anything the record does not name stays. Each removal is logged; returns
        the removed paths."""
        from pathlib import PurePosixPath

        removed = []
        for name in sorted(set(self.previous) - set(keep)):
            expected = self.previous[name].get("output_sha256")
            rel = PurePosixPath(name)
            if not isinstance(expected, str) or rel.is_absolute() or rel.suffix != ".png" \
                    or ".." in rel.parts or "\\" in name \
                    or rel.as_posix() != name:  # "x//a.png", "x/./a.png": another name of a file this run keeps
                continue
            path = self._remove_if_written(rel, expected)
            if path is not None:
                logger.warning("%s: removed (an output of the replaced run that this run does not write)", path)
                removed.append(path)
        self.previous = {name: entry for name, entry in self.previous.items() if name in keep}
        return removed

    def _remove_if_written(self, rel: Any, expected: str) -> Path | None:
        """Unlink ``folder/rel`` when every folder on the way is a real folder (not a symlink), the file is a
        regular file (opened without following a symlink) with sha256 ``expected``, and it is still the same file
        (device, inode, size, modification time) just before the unlink; returns its path, else None."""
        import stat

        folder = self.path.parent
        current = folder
        for part in rel.parts[:-1]:
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except (OSError, ValueError):  # gone, or a name the system refuses (NUL)
                return None
            if stat.S_ISLNK(mode):
                logger.warning("%s: reached through the symlink %s, which may lead outside %s; left in place",
                               folder / rel, current, folder)
                return None
            if not stat.S_ISDIR(mode):
                return None
        path = folder / rel
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        try:
            if path.is_symlink():  # where O_NOFOLLOW does not exist (Windows)
                return None
            fd = os.open(path, flags)
        except (OSError, ValueError):
            return None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return None
            digest = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                digest.update(chunk)
        except OSError:
            return None
        finally:
            os.close(fd)
        if digest.hexdigest() != expected:
            logger.warning("%s: recorded by the replaced run but changed since; left in place", path)
            return None
        try:
            now = os.lstat(path)
        except OSError:
            return None
        if (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != \
                (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns):
            logger.warning("%s: replaced while it was being checked; left in place", path)
            return None
        path.unlink()
        return path


class RestoreRecord(OutputRecord):
    """``OUT/restore.json`` of ``restorever restore``: one entry per ``NAME.png``."""


class DegradeRecord(OutputRecord):
    """``OUT/degrade.json`` of ``restorever degrade``: one entry per written PNG (``clean/ITEM.png``,
    ``xSCALE/ITEM.png``) with the source photo's sha256, its landmarks (they place the crop: another detector
    file or landmark code moves them) and the PNG's sha256; settings are the manifest's options
    with ``pixels_version`` (:func:`degrade_settings`).
    ``manifest.json`` and ``params.jsonl`` are written only once every face is done."""

    record_name = DEGRADE_RECORD_NAME
    command = "degrade"
    redo = "degrade every face again with these"

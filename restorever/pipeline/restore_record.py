"""``OUT/restore.json``: what ``restorever restore`` did, and the check that lets a rerun resume.

The record holds the run's settings (restorer, weights sha256, restorer options, seed, detector, alignment fit,
faces mode, minimum face size, aligned/detect) and one entry per output file (``NAME.png``): the input's path and
sha256, the output file's sha256, the faces restored (boxes and landmarks in photo pixels), notes, or the reason it
was skipped. A rerun into the same folder keeps an output whose entry has the same input sha256 and whose file
still has the recorded sha256 (a truncated, corrupted or replaced output is restored again), and refuses
other settings rather than mix two kinds of output in one folder. Every write is atomic; during a run the record
is rewritten at most every :data:`SAVE_EVERY_S` seconds (rewriting a large collection's record after every image
would write its size squared), so a killed run redoes at most that much work, and never trusts an unrecorded
output.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

from ..errors import RestoreverError
from ..files import atomic_write_text
from ..images import read_file_bytes

__all__ = ["RECORD_NAME", "RestoreRecord", "run_settings"]

logger = logging.getLogger(__name__)

RECORD_NAME = "restore.json"
RECORD_VERSION = 1
#: version of the code that makes restore's output pixels (alignment, paste-back blend, the sharing of overlapping
#: faces' pixels); part of the compared settings, so a folder started by other code is never resumed into a mix.
#: Bump it when that code's output changes.
PIXELS_VERSION = 1
#: seconds between two saves of the record while a run adds entries (and once at the end)
SAVE_EVERY_S = 30.0


def run_settings(*, restorer: str, weight_files: Mapping[str, tuple[str, str | None]], options: Mapping[str, Any],
                 seed: int, detector: str, alignment_fit: str, faces: str, min_face_size: float,
                 aligned: bool | None) -> dict[str, Any]:
    """The settings that decide the output pixels (JSON-ready), with :data:`PIXELS_VERSION`. Weights count by
    sha256 only: the same file in another folder gives the same faces; ``min_face_size`` (photo pixels) counts only
    with ``faces="all"``."""
    return {"restorer": restorer, "weights_sha256": {role: sha for role, (_, sha) in sorted(weight_files.items())},
            "restorer_options": {k: options[k] for k in sorted(options)}, "seed": int(seed), "detector": detector,
            "alignment_fit": alignment_fit, "faces": faces,
            "min_face_size": float(min_face_size) if faces == "all" else None,
            "aligned": aligned, "pixels_version": PIXELS_VERSION}


class RestoreRecord:
    """The record of one output folder: load it, check a rerun's settings against it, add entries, save.

    Args:
        out: the output folder.
        settings: :func:`run_settings` of this run.
        header: facts recorded but not compared (restorever version, weight file paths, device).
        overwrite: start a new record even when the folder holds one made with other settings.
    """

    def __init__(self, out: Path, settings: dict[str, Any], header: dict[str, Any], *, overwrite: bool) -> None:
        self.path = Path(out) / RECORD_NAME
        self.settings = json.loads(json.dumps(settings))  # as it reads back from the file (tuples -> lists)
        self.header = header
        self.entries: dict[str, dict[str, Any]] = {}
        self._saved_at = time.monotonic()
        old = self._load()
        if old is None or overwrite:
            if old is not None:
                logger.warning("%s: replacing the record of a run with other settings (--overwrite); outputs of "
                               "that run's inputs that this run does not rewrite stay in the folder, unrecorded",
                               self.path)
            return
        if old.get("settings") != self.settings:
            diff = ", ".join(f"{k} {old.get('settings', {}).get(k)!r} -> {v!r}" for k, v in self.settings.items()
                             if (old.get("settings") or {}).get(k) != v)
            raise RestoreverError(f"{self.path.parent} holds outputs made with other settings ({diff}); choose a "
                                  f"new --out, or pass --overwrite to restore every input again with these")
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
            raise RestoreverError(f"{self.path}: not a restore record of version {RECORD_VERSION}; delete it or "
                                  f"choose a new --out")
        inputs = data.get("inputs", {})
        if not isinstance(data.get("settings", {}), dict) or not isinstance(inputs, dict) \
                or not all(isinstance(entry, dict) for entry in inputs.values()):
            raise RestoreverError(f"{self.path}: damaged record ('settings' and each entry of 'inputs' must be JSON "
                                  f"objects); delete it or choose a new --out")
        return data

    def done(self, name: str, sha256: str) -> bool:
        """True when output ``name``'s entry was restored from an input with this sha256 and the file still holds
        the bytes that run wrote (its ``output_sha256``): an output truncated, corrupted or replaced since, or
        an entry without that digest, is restored again rather than trusted because the file exists."""
        entry = self.entries.get(name)
        if entry is None or entry.get("sha256") != sha256 or "skipped" in entry:
            return False
        expected = entry.get("output_sha256")
        if not isinstance(expected, str):
            return False
        try:  # not a plain read: a FIFO put there by hand must not hang the run
            data = read_file_bytes(self.path.parent / name, max_bytes=1 << 32, what="output")
        except (RestoreverError, OSError):  # gone, a folder, not a regular file, unreadable: restore it again
            return False
        if hashlib.sha256(data).hexdigest() != expected:
            logger.warning("%s: not the file restorever wrote (changed or damaged since); restoring it again",
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")
        self._saved_at = time.monotonic()

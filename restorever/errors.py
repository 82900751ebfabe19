"""Typed errors. Every error a user can cause derives from :class:`RestoreverError` and carries a one-line message
that names the file or option at fault and the fix; the CLI prints it and exits with status 2."""
from __future__ import annotations

import re
from typing import Iterable


class RestoreverError(Exception):
    """Base class of all user-facing restorever errors."""


class ProtocolError(RestoreverError, ValueError):
    """A malformed protocol, pairs or CSV file (the message names the file and line)."""


class DataNotFoundError(RestoreverError, FileNotFoundError):
    """A dataset or image that is missing."""


class ImageError(RestoreverError, ValueError):
    """An image that cannot be decoded or is out of bounds."""


class FaceNotFoundError(RestoreverError):
    """No face could be detected in an image."""


class UnsafePathError(RestoreverError, ValueError):
    """A path in a protocol escapes the data root."""


class WeightsNotFoundError(RestoreverError, FileNotFoundError):
    """A weight file is missing (the message names the file, its URL and where to put it)."""


class WeightsHashError(RestoreverError, ValueError):
    """A downloaded or cached weight file has the wrong sha256."""


class CheckpointLayoutError(RestoreverError, ValueError):
    """A checkpoint whose keys or shapes do not match the architecture, or that is not a weights-only file."""


class UnknownNameError(RestoreverError, KeyError):
    """An unknown registry name (the message suggests the closest names)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class ConfigError(RestoreverError, ValueError):
    """An invalid argument of a library call or config object; ``argument`` names it (``batch_size``), so the CLI can
    translate it into its flag (``--batch-size``)."""

    def __init__(self, argument: str, problem: str):
        super().__init__(f"{argument} {problem}")
        self.argument, self.problem = argument, problem


class DeviceError(ConfigError):
    """A device this machine does not have (or that cannot run a computation, such as ``meta``). A
    :class:`ConfigError` of the ``device`` argument: the library says ``device cuda: ...``, the command line
    ``--device cuda: ...``."""

    def __init__(self, problem: str):
        super().__init__("device", problem)


class MissingDependencyError(RestoreverError, ImportError):
    """An optional package a model needs is not installed; the message names the ``pip install`` that fixes it
    (a :class:`RestoreverError`, so the command line prints it as an input error with status 2, not as a bug)."""


class DetectorError(RestoreverError):
    """The face detector failed on an image (an error, not a finding: it is never cached as "no face found").
    Its message contains :data:`DETECTOR_FAILURE`, by which ``restorever validate`` recognises such a skip."""


#: the phrase every :class:`DetectorError` message carries
DETECTOR_FAILURE = "failed on the image"


def did_you_mean(name: object, known: "Iterable[str]", *, n: int = 3) -> str:
    """``"; did you mean a, b?"`` for the names in ``known`` close to ``name`` (empty when none is close): the one
    hint every unknown-name message (registries, presets, templates, detectors, protocols) ends with."""
    import difflib

    close = difflib.get_close_matches(str(name), list(known), n=n, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def unknown_name(kind: str, name: object, known: "Iterable[str]", *, listing: str = "") -> UnknownNameError:
    """An :class:`UnknownNameError` saying ``unknown <kind> 'name'; did you mean ...? (known: ...)``; ``listing``
    replaces the list of known names (e.g. a command that prints them)."""
    known = list(known)
    where = listing or f"known: {', '.join(known)}"
    return UnknownNameError(f"unknown {kind} {name!r}{did_you_mean(name, known)} ({where})")


def with_weights_flag(exc: Exception, flag: str) -> Exception:
    """``exc`` (a :class:`WeightsNotFoundError` or ``ValueError``) with the restorers' ``--weights`` in its message
    replaced by ``flag``: the hub's weight messages name ``--weights``, while recognizers and attribute models take
    their files with ``--recognizer-weights`` / ``--attribute-weights``. Other errors come back unchanged."""
    message = str(exc)
    pattern = re.compile(r"--weights(?![\w-])")  # "--weights FILE", "(given with --weights)", not "--weights-x"
    if not pattern.search(message) or type(exc) not in (WeightsNotFoundError, WeightsHashError, ValueError):
        return exc
    return type(exc)(pattern.sub(flag, message))

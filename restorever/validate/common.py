"""What every check of ``restorever validate`` shares: the report (:class:`RunValidation`), the limits on what is
read, JSON type tests, short reprs of hostile values, and the comparison of stored numbers with recomputed ones."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np




RESULTS_FILE = "results.json"


MAX_RESULTS_BYTES = 1 << 30  # a results.json above 1 GiB is refused unread


MAX_PROBLEMS_PER_CHECK = 20  # long lists are cut (the count is still reported)


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def is_type(value: Any, name: str) -> bool:
    if name in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return name == "number" or isinstance(value, int) or float(value).is_integer()
    return isinstance(value, _TYPES[name])


def short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


@dataclass
class RunValidation:
    """The outcome of :func:`check_run`: ``problems`` (the run is invalid when there is any), ``notes`` (checks that
    were skipped and why) and ``checked`` (what was verified, as counts)."""

    run_dir: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        done = ", ".join(f"{v} {k}" for k, v in self.checked.items() if v)
        return f"{self.run_dir}: " + ("valid" if self.ok else f"{len(self.problems)} problem(s)") + \
            (f" (checked {done})" if done else "")


VALIDATOR_ERROR = "validator error"


def cut(problems: list[str], what: str) -> list[str]:
    if len(problems) <= MAX_PROBLEMS_PER_CHECK:
        return problems
    return problems[:MAX_PROBLEMS_PER_CHECK] + [f"... and {len(problems) - MAX_PROBLEMS_PER_CHECK} more {what} "
                                                f"problem(s)"]


def condition_label(cond: dict[str, Any]) -> str:
    return "clean" if cond.get("scale") is None else f"{cond.get('restorer')} x{cond.get('scale')}"


def _close(a: float, b: float, rel: float, abs_: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def compare(stored: Any, fresh: Any, path: str, out: list[str], *, rel: float = 1e-9, abs_: float = 1e-12) -> None:
    """Record where ``stored`` (from JSON) differs from ``fresh`` (recomputed); keys only one side has are skipped
    (a newer or older version may add keys), lists must have equal lengths."""
    if isinstance(fresh, (np.floating, np.integer)):
        fresh = fresh.item()
    if isinstance(fresh, dict) and isinstance(stored, dict):
        for key in fresh:
            if key in stored:
                compare(stored[key], fresh[key], f"{path}.{key}", out, rel=rel, abs_=abs_)
        return
    if isinstance(fresh, (list, tuple, np.ndarray)) and isinstance(stored, list):
        fresh = list(fresh)
        if len(fresh) != len(stored):
            out.append(f"{path}: {len(stored)} values stored, {len(fresh)} recomputed")
            return
        bad = [i for i, (s, f) in enumerate(zip(stored, fresh)) if not _same_number(s, f, rel, abs_)]
        if bad:
            i = bad[0]
            out.append(f"{path}: {len(bad)} of {len(stored)} values differ from the recomputation (e.g. [{i}] "
                       f"stored {stored[i]!r}, recomputed {fresh[i]!r})")
        return
    if not _same_number(stored, fresh, rel, abs_):
        out.append(f"{path}: stored {short(stored)}, recomputed {short(fresh)}")


def _same_number(stored: Any, fresh: Any, rel: float, abs_: float) -> bool:
    if isinstance(fresh, (np.floating, np.integer)):
        fresh = fresh.item()
    if fresh is None or (isinstance(fresh, float) and math.isnan(fresh)):
        return stored is None
    if isinstance(fresh, (int, float)) and not isinstance(fresh, bool):
        try:
            return is_type(stored, "number") and _close(float(stored), float(fresh), rel, abs_)
        except OverflowError:  # an integer beyond float range
            return False
    if isinstance(fresh, dict) and not isinstance(stored, dict):
        return False
    if isinstance(fresh, (list, tuple, np.ndarray)) and not isinstance(stored, list):
        return False
    if isinstance(fresh, (dict, list, tuple, np.ndarray)):
        found: list[str] = []
        compare(stored, fresh, "", found, rel=rel, abs_=abs_)
        return not found
    return stored == fresh


def _origin(record: dict[str, Any], run: Path) -> Path | None:
    """The folder the run was started from, when ``config.out`` was relative and names the tail of ``run``
    (``--out runs/x`` from /home/u gives /home/u), so relative paths of the record resolve from anywhere."""
    out = record["config"].get("out")
    if not isinstance(out, str) or not out or Path(out).is_absolute():
        return None
    tail = Path(out).parts
    here = run.resolve()
    if tail and len(here.parts) > len(tail) and here.parts[-len(tail):] == tail:
        return Path(*here.parts[:-len(tail)])
    return None


def resolve_recorded_path(value: Any, record: dict[str, Any], run: Path) -> Any:
    """A path of the record as the run saw it: absolute as is; relative from the run's start folder (see
    :func:`_origin`) when that exists, else from the current folder."""
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        return value
    origin = _origin(record, run)
    if origin is not None and (origin / value).exists():
        return str(origin / value)
    return value


def load_recorded_protocol(record: dict[str, Any], run: Path):
    """The :class:`~restorever.protocol.Protocol` a record's ``config`` names, its files found as the run found
    them: a protocol given as a relative YAML path (``--protocol my.yaml``), the data root and the pairs file from
    the run's start folder (:func:`resolve_recorded_path`); a protocol name as it is. Never downloads."""
    from ..protocol import load_protocol

    cfg = record.get("config") or {}
    spec = resolve_recorded_path(cfg["protocol"], record, run)
    return load_protocol(spec if isinstance(spec, str) and Path(spec).is_file() else cfg["protocol"],
                         data_root=resolve_recorded_path(cfg.get("data_root"), record, run),
                         pairs=resolve_recorded_path(cfg.get("pairs"), record, run), download=False)

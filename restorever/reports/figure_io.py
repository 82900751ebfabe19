"""Output and input checks shared by every figure: the file formats, the pyplot style (column width, 7-8 pt text),
creating and saving a figure reproducibly, and the checks that a results record has what a figure needs."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError, RestoreverError

log = logging.getLogger(__name__)

FORMATS = (".png", ".pdf", ".svg")
COLUMN_WIDTH = 3.5  # inches: one column of a two-column paper


class MissingDataError(RestoreverError):
    """A results record lacks the section a figure needs (e.g. no ``retrieval`` or no saved examples)."""


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, with the paper style (font sizes, embedded fonts) set."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5, "xtick.labelsize": 7,
        "ytick.labelsize": 7, "figure.dpi": 150, "savefig.dpi": 300, "pdf.fonttype": 42, "ps.fonttype": 42,
        "svg.fonttype": "path", "axes.linewidth": 0.6, "lines.linewidth": 1.2, "legend.handlelength": 2.6,
    })
    return plt


def check_output(out: str | Path) -> Path:
    """``out`` as a path, after checking that its suffix is one of :data:`FORMATS` (:class:`ValueError` if not)."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"{out}: unsupported figure format {out.suffix or '(none)'!r}; use one of "
                         f"{', '.join(FORMATS)}")
    return out


def new_figure(width: float = COLUMN_WIDTH, height: float = 2.8, **subplots):
    """``(figure, axes, pyplot)`` of a new figure of ``width`` x ``height`` inches in the paper style."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(width, height), **subplots)
    return fig, ax, plt


def save_figure(fig, plt, out: str | Path, *, tight: bool = True) -> Path:
    """Write ``fig`` to ``out`` (format from the suffix, reproducible metadata) and close it; returns the path."""
    out = check_output(out)
    _prepare_folder(out)
    try:
        if tight:
            fig.tight_layout(pad=0.3)
        fig.savefig(out, bbox_inches="tight", pad_inches=0.02, metadata=_metadata(out))
    finally:
        plt.close(fig)
    log.info("wrote %s", out)
    return out


def _prepare_folder(out: Path) -> None:
    """Create the figure's folder. A part of the path that is a file, or a folder that cannot be created, is one
    :class:`RestoreverError` line that says so (as ``eval --out`` does), not ``File exists``."""
    folder = out.parent
    blocking = next((p for p in reversed([folder, *folder.parents]) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise RestoreverError(f"{out}: a part of the path, {blocking}, is a file, not a folder; choose another "
                              "output path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RestoreverError(f"{out}: cannot create the folder {folder} ({exc.strerror or exc}); choose a "
                              "writable output path") from None


def _metadata(out: Path) -> dict[str, Any]:
    """Reproducible files: no creation date in PDF/SVG, a fixed creator."""
    suffix = out.suffix.lower()
    if suffix == ".pdf":
        return {"Creator": "restorever", "CreationDate": None}
    if suffix == ".svg":
        return {"Creator": "restorever", "Date": None}
    return {"Software": "restorever"}


def require_verification(records: Sequence[dict[str, Any]], what: str) -> None:
    """:class:`MissingDataError` unless some condition has verification results; for an identification run the
    message says that the figure does not apply (no option of `restorever ident` would produce it)."""
    if any(c.get("verification") for r in records for c in r["conditions"]):
        return
    if _is_identification(records):
        raise MissingDataError(f"{what} does not apply to an identification run (it has retrieval results, no "
                               "pair verification); `restorever plot cmc` draws its figure")
    raise MissingDataError(f"no condition has verification results: {what} needs a pair-verification run "
                           "(`restorever eval`)")


def _is_identification(records: Sequence[dict[str, Any]]) -> bool:
    """True for identification records: retrieval results and no pair verification anywhere."""
    conds = [c for r in records for c in r["conditions"]]
    return any(c.get("retrieval") for c in conds) and not any(c.get("verification") for c in conds)


def check_positive(value: int, argument: str) -> None:
    """:class:`ConfigError` naming ``argument`` unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(argument, f"must be an integer >= 1, not {value!r}")

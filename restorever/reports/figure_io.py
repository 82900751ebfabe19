"""Output and input checks shared by every figure: the file formats, the paper style (column width, 7-8 pt text),
creating and saving a figure reproducibly, and the checks that a results record has what a figure needs."""
from __future__ import annotations

import functools
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from ..errors import ConfigError, RestoreverError

log = logging.getLogger(__name__)

FORMATS = (".png", ".pdf", ".svg")
COLUMN_WIDTH = 3.5  # inches: one column of a two-column paper
PAGE_WIDTH = 6.875  # inches: the text width of a two-column paper (CVPR/ICCV), for figures wider than a column
#: matplotlib salts the ids of an SVG's clip paths with a random uuid unless ``svg.hashsalt`` is set, so the same
#: record gave another SVG file on every run; a fixed salt makes the SVG as byte-reproducible as the PNG and PDF
SVG_HASH_SALT = "restorever"


class MissingDataError(RestoreverError):
    """A results record lacks the section a figure needs (e.g. no ``retrieval`` or no saved examples)."""


#: the paper style (font sizes in points, embedded TrueType fonts, reproducible SVG): applied only while a figure is
#: drawn and saved (:func:`paper_style`), never to matplotlib's global settings, so that a notebook's own figures
#: keep their look after a restorever figure is made
PAPER_STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "figure.dpi": 150, "savefig.dpi": 300, "pdf.fonttype": 42, "ps.fonttype": 42,
    "svg.fonttype": "path", "svg.hashsalt": SVG_HASH_SALT, "axes.linewidth": 0.6, "lines.linewidth": 1.2,
    "legend.handlelength": 2.6,
}

F = TypeVar("F", bound=Callable[..., Any])


def paper_style(func: F) -> F:
    """Decorator: ``func`` draws and saves its figure inside ``matplotlib.rc_context(PAPER_STYLE)``. Figures are
    :class:`matplotlib.figure.Figure` objects made without pyplot (:func:`new_figure`), so drawing one neither
    switches the caller's backend (a notebook's inline one) nor registers a figure in pyplot's list."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context(PAPER_STYLE):
            return func(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def check_output(out: str | Path) -> Path:
    """``out`` as a path, after checking that its suffix is one of :data:`FORMATS` (:class:`ValueError` if not)."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"{out}: unsupported figure format {out.suffix or '(none)'!r}; use one of "
                         f"{', '.join(FORMATS)}")
    return out


def new_figure(width: float = COLUMN_WIDTH, height: float = 2.8, **subplots):
    """``(figure, axes)`` of a new figure of ``width`` x ``height`` inches (``**subplots`` as for
    ``Figure.subplots``): a bare :class:`matplotlib.figure.Figure`, not a pyplot one; call it inside a function
    decorated with :func:`paper_style` so that the figure takes the paper style."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # a canvas that can measure text (legend placement) and draw, as pyplot's Agg gave
    return fig, fig.subplots(**subplots)


def save_figure(fig, out: str | Path, *, tight: bool = True, records: Sequence[dict[str, Any]] = ()) -> Path:
    """Write ``fig`` to ``out`` (format from the suffix, reproducible metadata); returns the path. ``records``, the
    results the figure shows, are described in the file's metadata (PDF Subject, SVG and PNG Description:
    :func:`figure_description`), so that a figure copied on its own still says which protocol, degradation,
    recognizer and restorers made it, without a title on the figure itself."""
    out = check_output(out)
    _prepare_folder(out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if tight:
            fig.tight_layout(pad=0.3)
        fig.savefig(out, bbox_inches="tight", pad_inches=0.02, metadata=_metadata(out, figure_description(records)))
    _report_warnings(out, caught)
    log.info("wrote %s", out)
    return out


_MISSING_GLYPH = re.compile(r"^Glyph (\d+) .*missing from font\(s\) (.+?)\.?$")


def _report_warnings(out: Path, caught: list) -> None:
    """Re-issue the warnings of drawing a figure, except matplotlib's one per missing glyph and drawing pass (72
    for one CJK restorer name in a ROC legend): those become one log warning that names the characters, which
    print as empty boxes, and the fix."""
    missing: dict[str, str] = {}
    for w in caught:
        match = _MISSING_GLYPH.match(str(w.message))
        if match:
            missing.setdefault(chr(int(match.group(1))), match.group(2))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if missing:
        fonts = ", ".join(sorted(set(missing.values())))
        log.warning("%s: the characters %s are not in the font %s and print as empty boxes; install a font that "
                    "has them and list it first in matplotlib's font.sans-serif (matplotlibrc), or rename what "
                    "holds them (restorer, run folder, group)", out, "".join(missing), fonts)


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


def _metadata(out: Path, description: str = "") -> dict[str, Any]:
    """Reproducible files: no creation date in PDF/SVG, a fixed creator; ``description`` (when not empty) as the
    PDF's Subject, the SVG's and PNG's Description."""
    suffix = out.suffix.lower()
    if suffix == ".pdf":
        meta = {"Creator": "restorever", "CreationDate": None, "Subject": description}
    elif suffix == ".svg":
        meta = {"Creator": "restorever", "Date": None, "Description": description}
    else:
        meta = {"Software": "restorever", "Description": description}
    return {k: v for k, v in meta.items() if v != ""}


#: the longest description written into a figure's metadata (characters); longer ones end with "..."
MAX_DESCRIPTION = 2000


def figure_description(records: Sequence[dict[str, Any]]) -> str:
    """One line per results record that a figure shows, joined by ``" | "``: ``protocol lfw (6000 pairs); degradation
    difface-test (seed 0, probe side); recognizer dlib; restorers none, vqfr-v2; scales x8, x16; restorever 0.9.0,
    2026-12-07T10:00:00Z``; an identification run's protocol as ``lfw-ident (gallery 10, 10 probes)``. Parts a
    record lacks are left out; ``""`` for no records. At most :data:`MAX_DESCRIPTION` characters."""
    text = " | ".join(filter(None, (_describe_record(r) for r in records)))
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 3] + "..."


def _describe_record(record: dict[str, Any]) -> str:
    """:func:`figure_description` of one record."""
    config, conds = record.get("config") or {}, record.get("conditions") or []
    proto = record.get("protocol") or {}

    def distinct(key: str) -> list[Any]:
        return list(dict.fromkeys(c.get(key) for c in conds if c.get(key) is not None))

    parts = []
    name = proto.get("name") or config.get("protocol")
    if name:
        size = (f" ({proto['pairs']} pairs)" if isinstance(proto.get("pairs"), int) else
                f" (gallery {proto['gallery_size']}, {proto.get('probes', '?')} probes)"
                if isinstance(proto.get("gallery_size"), int) else "")  # identification: rank-1 depends on it
        parts.append(f"protocol {name}{size}")
    degradations = distinct("degradation")
    if degradations:
        details = [f"seed {config['seed']}" if config.get("seed") is not None else "",
                   ", ".join(f"{side} side" for side in distinct("degrade_side"))]
        details = [d for d in details if d]
        parts.append(f"degradation {', '.join(map(str, degradations))}" + (f" ({', '.join(details)})"
                                                                          if details else ""))
    for key, label in (("recognizer", "recognizer"), ("restorer", "restorers")):
        values = distinct(key)
        if values:
            parts.append(f"{label} {', '.join(map(str, values))}")
    scales = sorted(s for s in distinct("scale") if isinstance(s, (int, float)))
    if scales:
        parts.append("scales " + ", ".join(f"x{s:g}" for s in scales))
    made = ", ".join(str(record[k]) for k in ("restorever_version", "created") if record.get(k))
    if made:
        parts.append(f"restorever {made}")
    return "; ".join(parts)


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

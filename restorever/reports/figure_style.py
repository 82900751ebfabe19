"""Colours, markers and line styles shared by every figure: one colour and one marker shape per restorer, the clean
condition black, the degradation scale as a line style and a lighter shade of the restorer's colour, in the same order
everywhere."""
from __future__ import annotations

from typing import Any, Sequence

#: one colour per restorer across every figure, from the Okabe-Ito palette: every pair stays distinguishable in
#: deuteranope and protanope vision (tests/reports/test_plots.py checks it); ``none`` (no restoration) is grey
RESTORER_COLOURS = {"none": "#4d4d4d", "vqfr-v1": "#56b4e9", "vqfr-v2": "#0072b2", "difface": "#d55e00",
                    "gfpgan-v1.4": "#009e73", "gfpgan-v1.3": "#e69f00", "codeformer": "#cc79a7"}
_EXTRA = ["#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#aec7e8", "#98df8a"]
CLEAN_COLOUR = "#000000"
#: one marker shape per restorer across every figure, so that restorers stay apart where colour is lost (a greyscale
#: print, a reader who cannot tell two hues apart): ``none`` a circle, the clean condition a star
RESTORER_MARKERS = {"none": "o", "vqfr-v1": "p", "vqfr-v2": "s", "difface": "^", "gfpgan-v1.4": "D",
                    "gfpgan-v1.3": "v", "codeformer": "X"}
_EXTRA_MARKERS = ["P", "h", "<", ">", "d", "H"]
CLEAN_MARKER = "*"
#: one hatch per restorer for filled areas (the same-person histograms of several restorers in one panel of the
#: score-distribution figure), so that overlapping areas stay apart in a greyscale print
RESTORER_HATCHES = {"none": "...", "vqfr-v1": "|||", "vqfr-v2": "///", "difface": "xx", "gfpgan-v1.4": "\\\\\\",
                    "gfpgan-v1.3": "---", "codeformer": "++"}
_EXTRA_HATCHES = ["oo", "**", "/.", "\\.", "|.", "-."]
#: line styles of the degraded scales, mildest first
_SCALE_LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (6, 2))]

#: the clean condition's own line style in the ROC and CMC figures: a wide, light black band under the curves, so
#: that a degraded curve lying on it (``none`` at the mildest scale, say) stays visible and distinguishable
CLEAN_LINE = {"color": CLEAN_COLOUR, "linestyle": "-", "alpha": 0.35, "zorder": 1.5}
CLEAN_WIDTH_FACTOR = 2.5


#: one colour per group of people (breakdown figures), Okabe-Ito as above; ``unlabelled`` is grey
GROUP_COLOURS = {"female": "#d55e00", "male": "#0072b2", "unlabelled": "#999999"}
_GROUP_CYCLE = ["#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#f0e442", "#000000", "#d55e00", "#0072b2"]
#: line styles that tell restorers apart where colour already means something else (breakdown figures)
RESTORER_LINESTYLES = ["-", "--", "-.", ":"]


def group_colour(name: str, index: int = 0) -> str:
    """The colour of a group of people: fixed for gender and ``unlabelled``, else the ``index``-th colour of an
    Okabe-Ito cycle (age groups in their order)."""
    return GROUP_COLOURS.get(name, _GROUP_CYCLE[index % len(_GROUP_CYCLE)])


def group_colours(names: list[str]) -> dict[str, str]:
    """One colour per group of ``names``: the fixed ones for gender and ``unlabelled``, the others the Okabe-Ito
    colours those leave free, in order. Distinct for up to 8 groups besides ``unlabelled``; beyond that they repeat."""
    taken = {GROUP_COLOURS[n] for n in names if n in GROUP_COLOURS}
    free = iter([c for c in _GROUP_CYCLE if c not in taken] or _GROUP_CYCLE)
    out = {}
    for i, n in enumerate(names):
        out[n] = GROUP_COLOURS.get(n) or next(free, _GROUP_CYCLE[i % len(_GROUP_CYCLE)])
    return out


def restorer_colour(name: str) -> str:
    """The restorer's colour (hex), the same in every figure; unknown names get a stable colour from their text."""
    if name in RESTORER_COLOURS:
        return RESTORER_COLOURS[name]
    return _extra_pick(name, _EXTRA, 0)


def _extra_pick(name: str, options: Sequence[Any], place: int) -> Any:
    """A stable choice for a restorer without its own look: digit ``place`` (0 colour, 1 marker, 2 hatch) of the
    name's sha256 in base ``len(options)``, so that colour, marker and hatch are drawn independently (two names
    share all three about once in 216 pairs, not whenever their character codes add up alike: ``ab`` and ``ba``)
    and stay the same in every process, unlike ``hash()``."""
    import hashlib

    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    return options[digest // len(options) ** place % len(options)]


def restorer_marker(name: str) -> str:
    """The restorer's matplotlib marker, the same in every figure; unknown names get a stable one from their text,
    never one of the named restorers' shapes."""
    if name in RESTORER_MARKERS:
        return RESTORER_MARKERS[name]
    return _extra_pick(name, _EXTRA_MARKERS, 1)


def restorer_hatch(name: str) -> str:
    """The restorer's matplotlib hatch, the same in every figure that fills areas; unknown names get a stable one
    from their text, never one of the named restorers' hatches."""
    if name in RESTORER_HATCHES:
        return RESTORER_HATCHES[name]
    return _extra_pick(name, _EXTRA_HATCHES, 2)


def condition_marker(cond: dict[str, Any]) -> str | None:
    """The marker of a condition: its restorer's (:func:`restorer_marker`), :data:`CLEAN_MARKER` for the clean one."""
    return CLEAN_MARKER if cond.get("scale") is None else restorer_marker(cond["restorer"])


def _shade(colour: str, t: float) -> tuple[float, float, float]:
    """``colour`` mixed with white by the fraction ``t`` in [0, 1]."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (r + (1 - r) * t, g + (1 - g) * t, b + (1 - b) * t)


def scales_of(records: Sequence[dict[str, Any]]) -> list[int]:
    """The degraded scales of the records' conditions, sorted (the clean condition has none)."""
    return sorted({c["scale"] for r in records for c in r["conditions"] if c.get("scale") is not None})


def scale_style(scale: int | None, scales: Sequence[int]) -> tuple[Any, float]:
    """``(linestyle, lightening)`` of a scale: solid and full colour for the mildest degradation, then dashed,
    dash-dotted, ... and up to 45 % lighter for the strongest. The clean condition (``None``) is solid."""
    if scale is None or scale not in scales:
        return "-", 0.0
    i = sorted(scales).index(scale)
    return _SCALE_LINESTYLES[i % len(_SCALE_LINESTYLES)], 0.45 * i / max(1, len(scales) - 1)


def condition_colour(cond: dict[str, Any], scales: Sequence[int]) -> Any:
    """Black for the clean condition, else the restorer's colour lightened by the scale."""
    if cond.get("scale") is None:
        return CLEAN_COLOUR
    return _shade(restorer_colour(cond["restorer"]), scale_style(cond["scale"], scales)[1])


def line_style(cond: dict[str, Any], scales: Sequence[int], width: float) -> dict[str, Any]:
    """``Axes.plot`` keywords of a condition's curve: restorer colour and scale style, or the clean band."""
    if cond.get("scale") is None:
        return {**CLEAN_LINE, "lw": width * CLEAN_WIDTH_FACTOR}
    return {"color": condition_colour(cond, scales), "linestyle": scale_style(cond["scale"], scales)[0],
            "lw": width, "zorder": 2}

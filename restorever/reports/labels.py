"""Names of conditions as tables and figures print them."""
from __future__ import annotations

from typing import Any

#: the line figures' name of the ``none`` restorer, the degraded probe as it is (the example grid's "degraded"
#: column)
UNRESTORED = "no restoration"


def condition_label(cond: dict[str, Any]) -> str:
    """``clean`` or ``RESTORER xSCALE`` (tables)."""
    if cond.get("scale") is None:
        return "clean"
    return f"{cond['restorer']} x{cond['scale']}"


def figure_label(cond: dict[str, Any]) -> str:
    """A condition in a figure legend: ``clean``, ``no restoration xSCALE`` (``none``) or ``RESTORER xSCALE``,
    so that the unrestored baseline does not read as a method called "none"."""
    if cond.get("scale") is None:
        return "clean"
    return f"{UNRESTORED if cond['restorer'] == 'none' else cond['restorer']} x{cond['scale']}"


def figure_restorer_name(name: str) -> str:
    """A restorer in a legend without scales: ``no restoration`` for ``none``, else the name."""
    return UNRESTORED if name == "none" else name

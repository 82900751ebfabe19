"""Names of conditions as tables and figures print them."""
from __future__ import annotations

from typing import Any


def condition_label(cond: dict[str, Any]) -> str:
    """``clean`` or ``RESTORER xSCALE``."""
    if cond.get("scale") is None:
        return "clean"
    return f"{cond['restorer']} x{cond['scale']}"

"""Single stages: ``restorever degrade`` and ``restorever restore`` (filled in by the stage modules)."""
from __future__ import annotations

COMMANDS: list = []

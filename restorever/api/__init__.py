"""The library API for recognition pipelines: :class:`FacePipeline` (detect, align, degrade, restore, embed, score),
the :class:`Face` it detects, :func:`threshold_from_results` and the :class:`RestoreThenEmbed` module.

Documented in ``docs/api.md``; also reachable as ``restorever.FacePipeline`` etc. (imported on first use).
"""
from .faces import Face
from .modules import RestoreThenEmbed
from .pipeline import FacePipeline, Restoration
from .thresholds import threshold_from_results

__all__ = ["Face", "FacePipeline", "Restoration", "RestoreThenEmbed", "threshold_from_results"]

"""The protocol file's values as a run's defaults: a config field left at ``None`` takes the protocol's value, else
the code's default; a value set on the config (a CLI flag, or a library caller) wins and, when it differs from the
protocol's, is recorded as an override.

=============  ========================  ==============  ===================================================
config field   protocol key              code default    used for
=============  ========================  ==============  ===================================================
``seed``       ``seed``                  ``0``           degradation and restorer noise (per item)
``detector``   ``alignment.landmarks``   ``mtcnn``       the landmark detector
``template``   ``alignment.template``    ``ffhq_512``    the crop every restorer takes (checked, see below)
``similarity`` ``scoring.similarity``    ``recognizer``  pair scores; ``recognizer`` = the recognizer's own
``on_error``   ``on_error``              ``error``       unreadable images / no face: stop or skip (recorded)
=============  ========================  ==============  ===================================================

``config.sources`` names where each value came from (``cli``, ``protocol`` or ``default``); ``config.overrides``
lists ``{field: {"protocol": value, "cli": value}}`` for the fields set on the config that differ from what the
protocol (or, where it is silent, the code default) gives. Both land in results.json under ``config``.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, ProtocolError

logger = logging.getLogger(__name__)

__all__ = ["PROTOCOL_DEFAULTS", "ProtocolDefault", "check_template", "pair_similarity", "protocol_default",
           "resolve_protocol_defaults"]


@dataclass(frozen=True)
class ProtocolDefault:
    """One config field whose default comes from the protocol file: ``path`` is its key path in the YAML."""

    field: str
    path: tuple[str, ...]
    default: Any

    def from_spec(self, spec: Mapping[str, Any]) -> tuple[bool, Any]:
        """``(found, value)`` of this key in ``spec``."""
        node: Any = spec
        for key in self.path:
            if not isinstance(node, Mapping) or key not in node:
                return False, None
            node = node[key]
        return True, node


PROTOCOL_DEFAULTS: tuple[ProtocolDefault, ...] = (
    ProtocolDefault("seed", ("seed",), 0),
    ProtocolDefault("detector", ("alignment", "landmarks"), "mtcnn"),
    ProtocolDefault("template", ("alignment", "template"), "ffhq_512"),
    ProtocolDefault("similarity", ("scoring", "similarity"), "recognizer"),
    ProtocolDefault("on_error", ("on_error",), "error"),
)


def protocol_default(field: str, spec: Mapping[str, Any]) -> Any:
    """The value ``field`` takes when no flag sets it: the protocol's, else the code default (for commands without
    a config, such as ``restorever degrade``, so that they make the faces ``eval`` scores)."""
    item = next(d for d in PROTOCOL_DEFAULTS if d.field == field)
    found, value = item.from_spec(spec)
    return value if found else item.default


def resolve_protocol_defaults(config: Any, spec: Mapping[str, Any]) -> Any:
    """A copy of ``config`` (an ``EvalConfig`` or ``IdentConfig``) with every :data:`PROTOCOL_DEFAULTS` field
    resolved (given value, else the protocol's, else the code default) and ``sources`` / ``overrides`` filled.

    Resolving an already resolved config again gives the same values (its fields are then all "given")."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    overrides: dict[str, dict[str, Any]] = {}
    for item in PROTOCOL_DEFAULTS:
        given = getattr(config, item.field)
        found, from_protocol = item.from_spec(spec)
        baseline = from_protocol if found else item.default
        if given is None:
            values[item.field] = baseline
            sources[item.field] = "protocol" if found else "default"
            continue
        values[item.field] = given
        sources[item.field] = "cli"
        if given != baseline:
            overrides[item.field] = {"protocol": baseline, "cli": given}
    if overrides:
        logger.info("options overriding protocol %s: %s", spec.get("protocol"),
                    ", ".join(f"{k}={v['cli']!r} (protocol: {v['protocol']!r})" for k, v in overrides.items()))
    if values.get("detector") == "auto":  # the detector that runs: it names the landmarks in the cache and record
        from ..detectors import resolve_detector

        values["detector"] = resolve_detector("auto")
        logger.info("detector auto: %s", values["detector"])
    resolved = dataclasses.replace(config, **values, sources=sources, overrides=overrides)
    resolved.validate()
    return resolved


def check_template(template: str, restorer_cards: Sequence[Any], *, source: str = "cli") -> None:
    """The alignment template must be a known one, and the one every restorer of the run takes (runs align once,
    to the crop the restorers consume; recognizers re-crop to their own template from the landmarks).

    ``source`` (``config.sources["template"]``) picks the error: a :class:`ProtocolError` naming the protocol key
    when the value came from the protocol file, else a :class:`ConfigError` naming the config field."""
    from ..alignment import list_templates

    problem = None
    if template not in list_templates():
        problem = f"alignment template {template!r} is unknown; known: {', '.join(list_templates())}"
    else:
        for card in restorer_cards:
            wanted = getattr(card, "template", None)
            if wanted and wanted != template:
                problem = (f"restorer {card.name} takes {wanted} crops, but the run aligns to {template!r}; runs "
                           f"support only the template the restorers take ({wanted})")
                break
    if problem is None:
        return
    if source == "protocol":
        raise ProtocolError(f"protocol alignment.template: {problem}")
    raise ConfigError("template", problem)


def pair_similarity(config: Any, recognizer: Any) -> str:
    """The similarity pairs are scored with: the recognizer's own for ``recognizer``, else the named one."""
    return recognizer.similarity if config.similarity in (None, "recognizer") else config.similarity

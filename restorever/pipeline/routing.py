"""How a run's backend options and weight files reach each backend: every restorer gets only the options its card
declares and the files that name it; a recognizer only the options its card declares. Errors name the option."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, did_you_mean

logger = logging.getLogger(__name__)

__all__ = ["route_restorer_options", "route_restorer_weights", "route_recognizer_options", "resolve_recognizer"]


def route_restorer_options(names: Sequence[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Give each restorer only the options its card declares (``default_kwargs``), converted to the declared type
    and checked (:func:`restorever.hub.check_option`); an option no chosen restorer takes is an error (e.g.
    ``steps`` without ``--restorer difface``)."""
    from ..hub import check_option
    from ..restorers import restorer_card

    routed: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for name in names:
        card = restorer_card(name)
        routed[name] = {k: check_option(card, k, v) for k, v in options.items()
                        if k in card.default_kwargs and v is not None}
        used |= set(routed[name])
    unused = sorted(k for k, v in options.items() if v is not None and k not in used)
    if unused:
        takes = sorted({k for name in names for k in restorer_card(name).default_kwargs})
        raise ValueError(f"option(s) {', '.join(unused)} apply to none of the restorers {', '.join(names)}"
                         f"{did_you_mean(unused[0], takes)} (their options: {', '.join(takes) or 'none'})")
    return routed


def route_restorer_weights(names: Sequence[str], weights: Mapping[str, str]) -> dict[str, dict[str, str] | None]:
    """Each restorer's ``{role: file}`` from a run's ``restorer_weights``: a key ``"NAME:ROLE"`` belongs to restorer
    NAME; plain ``"ROLE"`` keys belong to the one restorer of the run that takes weights (every restorer but
    ``none``). ``None`` for a restorer given no files (it loads its cached weights). ``ConfigError`` for a name the run
    does not use and for plain keys that several restorers could take."""
    routed: dict[str, dict[str, str] | None] = {name: None for name in names}
    takers = [n for n in dict.fromkeys(names) if n != "none"]
    plain = {k: v for k, v in weights.items() if ":" not in k}
    for key, path in weights.items():
        if ":" not in key:
            continue
        name, role = key.split(":", 1)
        if name not in takers:
            why = "takes no weights" if name == "none" else f"is not a restorer of this run ({', '.join(names)})"
            raise ConfigError("restorer_weights", f"{key}={path}: {name} {why}")
        routed[name] = {**(routed[name] or {}), role: path}
    if plain:
        if not takers:
            raise ConfigError("restorer_weights", "given, but restorer 'none' takes no weights; name the restorer "
                                                  "they belong to (e.g. --restorer none,vqfr-v2)")
        if len(takers) > 1:
            example = ",".join(f"{n}:FILE" for n in takers)
            raise ConfigError("restorer_weights", f"{', '.join(f'{k}={v}' for k, v in plain.items())}: this run has "
                                                  f"several restorers that take weights ({', '.join(takers)}); "
                                                  f"prefix each file with its restorer's name ({example}), or add "
                                                  f"them to the cache with `restorever weights add NAME FILE`")
        routed[takers[0]] = {**plain, **(routed[takers[0]] or {})}
    return routed


def route_recognizer_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for recognizer ``name``, each converted and checked against its card's declared options
    (``option_specs``; :func:`restorever.hub.check_option`); an option the card does not declare is an error."""
    from ..hub import check_option
    from ..recognizers import recognizer_card

    card = recognizer_card(name)
    unknown = sorted(k for k, v in options.items() if v is not None and k not in card.option_specs)
    if unknown:
        takes = ", ".join(card.option_specs) or "none"
        raise ValueError(f"recognizer {name} takes no option(s) {', '.join(unknown)}"
                         f"{did_you_mean(unknown[0], card.option_specs)} (its options: {takes})")
    return {k: check_option(card, k, v) for k, v in options.items() if v is not None}


def resolve_recognizer(config: Any, device: Any) -> tuple[Any, dict[str, Any]]:
    """The recognizer options a run on ``device`` uses (routed, then
    :func:`restorever.recognizers.resolve_recognizer_options`) and a copy of ``config`` (an ``EvalConfig`` or
    ``IdentConfig``) whose ``recognizer_options`` record the engine the machine chose, as the detector ``auto`` is
    recorded: the run, its ``--dry-run`` plan and ``restorever validate`` then key the cache alike."""
    from ..recognizers import resolve_recognizer_options

    options = resolve_recognizer_options(config.recognizer, route_recognizer_options(config.recognizer,
                                                                                     config.recognizer_options),
                                         device)
    engine = options.get("engine")
    if engine is None or engine == config.recognizer_options.get("engine"):
        return config, options
    logger.info("recognizer %s: engine %s on this machine (recorded in the run's configuration and cache keys)",
                config.recognizer, engine)
    return dataclasses.replace(config, recognizer_options={**config.recognizer_options, "engine": engine}), options

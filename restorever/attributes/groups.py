"""Attribute vocabularies: gender classes, configurable age groups, and the concatenated probability layout.

Every attribute predictor returns ``{attribute: probabilities [N, C]}`` with the classes in the order given here;
:class:`AttributeSchema` concatenates them into one vector ``[N, sum C]`` (gender first, then age), the input of the
re-weighting module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

#: gender classes, in this order everywhere (index 0 = female, 1 = male, as insightface and dlib/Cydral)
GENDERS: tuple[str, ...] = ("female", "male")


@dataclass(frozen=True)
class AgeGroups:
    """Age groups as half-open year intervals ``[edge[i-1], edge[i])``.

    The default is child < 13, teenager 13-19, adult 20-59, old 60+. ``edges`` are the lower bounds of groups 1..G-1
    in years (strictly increasing); ``names`` has one entry more than ``edges``.
    """

    edges: tuple[float, ...] = (13.0, 20.0, 60.0)
    names: tuple[str, ...] = ("child", "teenager", "adult", "old")

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.edges)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if len(self.names) != len(edges) + 1:
            raise ValueError(f"age groups: {len(edges)} edge(s) need {len(edges) + 1} names, got {list(self.names)}")
        if any(b <= a for a, b in zip(edges, edges[1:])) or any(e <= 0 for e in edges):
            raise ValueError(f"age group edges must be positive and strictly increasing, got {list(edges)}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"age group names must be distinct, got {list(self.names)}")

    @classmethod
    def parse(cls, edges: str | Sequence[float], names: str | Sequence[str] | None = None) -> "AgeGroups":
        """From ``"13,20,60"`` (and optional ``"child,teenager,adult,old"``); default names for 3 edges."""
        if isinstance(edges, str):
            try:
                edges = [float(t) for t in edges.split(",") if t.strip()]
            except ValueError:
                raise ValueError(f"age bins must be numbers like 13,20,60, got {edges!r}") from None
        if isinstance(names, str):
            names = [t.strip() for t in names.split(",") if t.strip()]
        if names is None:
            names = cls().names if len(edges) == 3 else [_range_name(edges, i) for i in range(len(edges) + 1)]
        return cls(tuple(edges), tuple(names))

    @property
    def n(self) -> int:
        return len(self.names)

    def index(self, age: float | np.ndarray) -> np.ndarray:
        """Group index of each age in years (``searchsorted`` on the edges: an age equal to an edge goes up)."""
        return np.searchsorted(np.asarray(self.edges), np.asarray(age, dtype=float), side="right")

    def allowed(self, group: int, tolerance: int = 0) -> tuple[int, ...]:
        """Groups within ``tolerance`` steps of ``group`` (``tolerance=1``: the neighbouring groups too)."""
        return tuple(range(max(0, group - tolerance), min(self.n, group + tolerance + 1)))

    def from_distribution(self, ages: Sequence[float], probabilities: np.ndarray) -> np.ndarray:
        """Sum a distribution over discrete ages ``[N, K]`` into group probabilities ``[N, G]``."""
        p = np.asarray(probabilities, dtype=np.float64)
        groups = self.index(np.asarray(ages, dtype=float))
        out = np.zeros((p.shape[0], self.n))
        for g in range(self.n):
            out[:, g] = p[:, groups == g].sum(axis=1)
        return out

    def from_gaussian(self, mean: np.ndarray, sigma: float) -> np.ndarray:
        """Group probabilities of a point estimate ``mean`` (years, ``[N]``) with Gaussian uncertainty ``sigma``."""
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        if sigma <= 0:
            out = np.zeros((mean.size, self.n))
            out[np.arange(mean.size), self.index(mean)] = 1.0
            return out
        bounds = np.array([-np.inf, *self.edges, np.inf])
        z = (bounds[None, :] - mean[:, None]) / (sigma * math.sqrt(2.0))
        cdf = 0.5 * (1.0 + _erf(z))
        return np.diff(cdf, axis=1)

    def to_dict(self) -> dict:
        return {"edges": list(self.edges), "names": list(self.names)}


def _range_name(edges: Sequence[float], i: int) -> str:
    lo = 0 if i == 0 else edges[i - 1]
    return f"{lo:g}+" if i == len(edges) else f"{lo:g}-{edges[i] - 1:g}"


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x)


@dataclass(frozen=True)
class AttributeSchema:
    """Which attributes a model predicts, their classes, and the layout of the concatenated vector."""

    age_groups: AgeGroups = field(default_factory=AgeGroups)
    attributes: tuple[str, ...] = ("gender", "age")

    def __post_init__(self) -> None:
        unknown = set(self.attributes) - {"gender", "age"}
        if unknown or not self.attributes:
            raise ValueError(f"attributes must be gender and/or age, got {list(self.attributes)}")

    def classes(self, attribute: str) -> tuple[str, ...]:
        if attribute == "gender":
            return GENDERS
        if attribute == "age":
            return self.age_groups.names
        raise KeyError(f"unknown attribute {attribute!r}; known: {', '.join(self.attributes)}")

    @property
    def sizes(self) -> dict[str, int]:
        return {a: len(self.classes(a)) for a in self.attributes}

    @property
    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for a, n in self.sizes.items():
            out[a] = slice(start, start + n)
            start += n
        return out

    @property
    def width(self) -> int:
        return sum(self.sizes.values())

    def concat(self, probs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``{attribute: [N, C]}`` -> ``[N, sum C]`` in schema order."""
        return np.concatenate([np.asarray(probs[a], dtype=np.float64) for a in self.attributes], axis=1)

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """``[N, sum C]`` -> ``{attribute: [N, C]}``."""
        return {a: vector[:, s] for a, s in self.slices.items()}

    def to_dict(self) -> dict:
        return {"attributes": list(self.attributes), "age_groups": self.age_groups.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "AttributeSchema":
        ag = d.get("age_groups") or {}
        return cls(AgeGroups(tuple(ag.get("edges", (13, 20, 60))), tuple(ag.get("names", AgeGroups().names))),
                   tuple(d.get("attributes", ("gender", "age"))))


# ---------------------------------------------------------------------------------------------------- label rules

#: Representative ages (years) used to place a Kumar et al. attribute-score image into the configured age groups.
KUMAR_OLD_AGE = 65.0
KUMAR_ADULT_AGE = 40.0


def kumar_age_years(senior_score: float | np.ndarray) -> np.ndarray:
    """The age label rule for the LFW attribute file (Kumar et al. classifier scores, positive = attribute present).

    An image is *old* (represented by 65 years) when its ``Senior`` score is positive, otherwise *adult* (40 years);
    the caller bins the representative age with its :class:`AgeGroups`. ``Baby``/``Child``/``Youth`` are not used:
    all 62 people of that file are adults in their LFW photos (the youngest, e.g. Lleyton Hewitt and Serena
    Williams, were about 20-22), while the Child classifier fires on 48 % of Amelie Mauresmo's images and Youth on
    most images of Jennifer Lopez (32) and Megawati Sukarnoputri (55), so those scores would produce wrong child and
    teenager labels. See ``docs/attributes.md``.
    """
    return np.where(np.asarray(senior_score, dtype=float) > 0.0, KUMAR_OLD_AGE, KUMAR_ADULT_AGE)

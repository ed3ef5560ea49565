"""Knobs: every effect parameter is a normalised value in [0, 1].

A ``ParamSpec`` describes one knob: its kind, the ranges sampled for training data,
the class labels of a categorical knob, its default and how to show it to a person in
physical units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import attrs
import numpy as np

from serumrnn.core.errors import ParameterError

Interval = tuple[float, float]


def _check_intervals(instance: "ParamSpec", attribute: attrs.Attribute, value: tuple) -> None:
    if not value:
        raise ValueError(f"{instance.name}: sample_ranges must hold at least one interval")
    for low, high in value:
        if not (0.0 <= low <= high <= 1.0):
            raise ValueError(f"{instance.name}: interval ({low}, {high}) is not inside [0, 1]")


def _to_intervals(value: Sequence[Sequence[float]]) -> tuple[Interval, ...]:
    return tuple((float(low), float(high)) for low, high in value)


@attrs.frozen
class ParamSpec:
    """One knob of an effect.

    Parameters
    ----------
    name:
        Knob name, unique within its effect (``drive``, ``low_cut``).
    kind:
        ``"continuous"`` or ``"categorical"``.
    sample_ranges:
        Union of intervals inside [0, 1] that training data samples from.
    classes:
        Class labels of a categorical knob, in order. Class ``i`` of ``n`` owns the knob
        interval ``[i/n, (i+1)/n)`` and is encoded as its centre ``(i + 0.5) / n``.
    default:
        Knob value used when the knob is not set.
    label:
        Name shown to a person (``"Drive"``).
    unit, physical_min, physical_max, scale:
        How the knob maps to physical units for display: ``linear`` or ``log``
        interpolation between ``physical_min`` and ``physical_max`` in ``unit``.
        An empty ``unit`` shows the knob as a percentage.
    scan_points:
        Values a search scans the knob at, evenly over its range, when coarser moves are
        stuck: for a knob whose match is a narrow basin (an LFO rate); 0 for none. A hint to
        the search only: not compared and not saved with a bundle.
    """

    name: str
    kind: Literal["continuous", "categorical"] = attrs.field(
        validator=attrs.validators.in_(("continuous", "categorical"))
    )
    sample_ranges: tuple[Interval, ...] = attrs.field(
        default=((0.0, 1.0),), converter=_to_intervals, validator=_check_intervals
    )
    classes: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    default: float = 0.5
    label: str = ""
    unit: str = ""
    physical_min: float = 0.0
    physical_max: float = 1.0
    scale: Literal["linear", "log"] = "linear"
    sampled: bool = True
    # a hint to the search, not part of what a bundle was trained on: not compared, not saved
    scan_points: int = attrs.field(default=0, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.kind == "categorical" and len(self.classes) < 2:
            raise ValueError(f"{self.name}: a categorical knob needs at least two classes")
        if self.kind == "continuous" and self.classes:
            raise ValueError(f"{self.name}: a continuous knob has no classes")
        if not 0.0 <= self.default <= 1.0:
            raise ValueError(f"{self.name}: default {self.default} is not inside [0, 1]")

    # -- categorical encoding -------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def class_index(self, knob: float) -> int:
        """Class index owning a knob value of a categorical knob."""
        n = self.n_classes
        return min(int(math.floor(float(knob) * n)), n - 1)

    def class_knob(self, index: int) -> float:
        """Knob value at the centre of class ``index``."""
        return (index + 0.5) / self.n_classes

    def one_hot(self, knob: float) -> np.ndarray:
        """One-hot vector, shape ``(n_classes,)``, of a categorical knob value."""
        vector = np.zeros(self.n_classes, dtype=np.float32)
        vector[self.class_index(knob)] = 1.0
        return vector

    def from_one_hot(self, scores: Sequence[float] | np.ndarray) -> float:
        """Knob value of the most probable class in ``scores`` (shape ``(n_classes,)``)."""
        return self.class_knob(int(np.argmax(np.asarray(scores))))

    # -- sampling -------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> float:
        """Draw a knob value for training data: a uniform class for a categorical
        knob; otherwise uniform over the union of ``sample_ranges`` (by length)."""
        if self.kind == "categorical":
            return self.class_knob(int(rng.integers(self.n_classes)))
        lengths = np.array([high - low for low, high in self.sample_ranges])
        if lengths.sum() <= 0:
            return float(self.sample_ranges[int(rng.integers(len(self.sample_ranges)))][0])
        position = rng.uniform(0.0, lengths.sum())
        for (low, high), length in zip(self.sample_ranges, lengths):
            if position <= length:
                return float(low + position)
            position -= length
        return float(self.sample_ranges[-1][1])

    # -- display --------------------------------------------------------------------
    def physical(self, knob: float) -> float:
        """Physical value of a continuous knob in ``unit``."""
        knob = float(knob)
        if self.scale == "log":
            return self.physical_min * (self.physical_max / self.physical_min) ** knob
        return self.physical_min + (self.physical_max - self.physical_min) * knob

    def knob_at(self, value: float) -> float:
        """The knob value whose ``physical`` value is ``value`` (outside [0, 1] when the
        value is outside the knob's physical range)."""
        if self.scale == "log":
            return float(math.log(value / self.physical_min) / math.log(self.physical_max / self.physical_min))
        return (float(value) - self.physical_min) / (self.physical_max - self.physical_min)

    def describe(self, knob: float) -> str:
        """Knob value for a person: a class label, or the value in physical units."""
        if self.kind == "categorical":
            return self.classes[self.class_index(knob)]
        if not self.unit:
            return f"{100 * float(knob):.0f}%"
        value = self.physical(knob)
        if self.unit == "Hz" and abs(value) >= 1000:
            return f"{value / 1000:.2f} kHz"
        if self.unit == "%":
            return f"{value:.0f}%"
        sign = "+" if self.unit == "dB" and value > 0 else ""
        return f"{sign}{value:.3g} {self.unit}"

    def parse(self, text: str, *, effect: str = "") -> float:
        """Knob value from user text: a number in [0, 1] or, for a categorical knob, a
        class label (case and ``-``/``_``/space insensitive)."""
        where = f"{effect}:{self.name}" if effect else self.name
        text = text.strip()
        if self.kind == "categorical":
            wanted = _fold(text)
            for index, label in enumerate(self.classes):
                if _fold(label) == wanted:
                    return self.class_knob(index)
        try:
            value = float(text)
        except ValueError:
            choices = f"one of {', '.join(self.classes)} or " if self.classes else ""
            raise ParameterError(
                f"Knob {where} got {text!r}; give {choices}a number between 0 and 1."
            ) from None
        return check_knob_value(value, where)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "sample_ranges": [list(r) for r in self.sample_ranges],
            "classes": list(self.classes),
            "default": self.default,
            "label": self.label,
            "unit": self.unit,
            "physical_min": self.physical_min,
            "physical_max": self.physical_max,
            "scale": self.scale,
            "sampled": self.sampled,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> "ParamSpec":
        return cls(**dict(data))


def _fold(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def check_knob_value(value: float, where: str) -> float:
    """Return ``value`` as float if it is a finite number in [0, 1], else raise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"Knob {where} got {value!r}; give a number between 0 and 1.") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise ParameterError(f"Knob {where} is {value}; knobs take a number between 0 and 1.")
    return number


def resolve_knobs(
    effect_name: str, specs: Sequence[ParamSpec], knobs: Mapping[str, float] | None
) -> dict[str, float]:
    """All knobs of an effect with defaults filled in; refuses unknown names and values
    outside [0, 1]."""
    known = {spec.name: spec for spec in specs}
    given = dict(knobs or {})
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ParameterError(
            f"Effect {effect_name} has no knob {unknown[0]!r}; its knobs are {', '.join(known)}."
        )
    return {
        name: check_knob_value(given[name], f"{effect_name}:{name}") if name in given else spec.default
        for name, spec in known.items()
    }


def default_knobs(specs: Sequence[ParamSpec]) -> dict[str, float]:
    """Every knob of ``specs`` at its default."""
    return {spec.name: spec.default for spec in specs}


def sample_knobs(specs: Sequence[ParamSpec], rng: np.random.Generator) -> dict[str, float]:
    """Sample every ``sampled`` knob from its training ranges; others keep their default."""
    return {spec.name: spec.sample(rng) if spec.sampled else spec.default for spec in specs}

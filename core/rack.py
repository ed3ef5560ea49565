"""A rack: one synth plus the effects that go with it, and chain rendering."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from serumrnn.core.errors import ParameterError
from serumrnn.core.interfaces import Effect, KnobClasses, Synth
from serumrnn.core.loudness import LoudnessConvention
from serumrnn.core.params import resolve_knobs

SAMPLE_RATE = 44100
DURATION_S = 1.0
NOTE = 60
VELOCITY = 127

Chain = Sequence[tuple[str, Mapping[str, float]]]


class Rack:
    """One synth and an ordered set of effects.

    ``render(source, chain)`` renders a preset name (the synth plays C4 for 1 s) or given
    audio through the chain ``[(effect_name, knobs), ...]`` in order. Dry preset renders
    are cached.
    """

    def __init__(
        self,
        name: str,
        synth: Synth,
        effects: Sequence[Effect],
        *,
        sample_rate: int = SAMPLE_RATE,
        duration_s: float = DURATION_S,
        description: str = "",
        pure_effects: bool | None = None,
    ) -> None:
        self.name = name
        self.synth = synth
        self.effects: dict[str, Effect] = {effect.name: effect for effect in effects}
        # Pure effects let a chain be continued from an earlier output (``process``); an
        # effect that keeps state between calls (a hosted plugin) says ``pure = False``.
        self.pure_effects = (all(getattr(effect, "pure", True) for effect in self.effects.values())
                             if pure_effects is None else bool(pure_effects))
        self.sample_rate = sample_rate
        self.duration_s = duration_s
        self.description = description
        self._dry_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def effect_names(self) -> tuple[str, ...]:
        return tuple(self.effects)

    def effect(self, name: str) -> Effect:
        try:
            return self.effects[name]
        except KeyError:
            raise ParameterError(
                f"Rack {self.name} has no effect {name!r}; its effects are {', '.join(self.effects)}."
            ) from None

    def dry(self, preset: str) -> np.ndarray:
        """The synth's render of ``preset`` (cached; do not modify the array)."""
        if preset not in self._dry_cache:
            self.synth.preset(preset)  # clear error for an unknown preset
            audio = self.synth.render(
                preset, note=NOTE, velocity=VELOCITY, duration_s=self.duration_s, sample_rate=self.sample_rate
            )
            audio = np.asarray(audio, dtype=np.float32)
            audio.setflags(write=False)
            self._dry_cache[preset] = audio
            while len(self._dry_cache) > 64:
                self._dry_cache.popitem(last=False)
        return self._dry_cache[preset]

    def validate_chain(self, chain: Chain) -> list[tuple[str, dict[str, float]]]:
        """Chain with every knob resolved; refuses unknown effects, knobs, values and repeats."""
        resolved = []
        seen: set[str] = set()
        for name, knobs in chain:
            effect = self.effect(name)
            if name in seen:
                raise ParameterError(f"Effect {name} appears twice in the chain; use each effect once.")
            seen.add(name)
            resolved.append((name, resolve_knobs(name, effect.params, knobs)))
        return resolved

    def render(self, source: str | np.ndarray, chain: Chain = (), *, loudness: LoudnessConvention | None = None
               ) -> np.ndarray:
        """Render ``source`` (preset name or float32 audio ``(n_samples,)``) through ``chain``.

        With a ``loudness`` convention the source is levelled before the chain and the
        result after it (``core/loudness.py``); without one both stay as they are.

        Returns float32 audio, shape ``(n_samples,)``.
        """
        raw = self.process(self.level_source(source, loudness), chain)
        return raw if loudness is None else loudness.apply(raw, self.sample_rate)

    def level_source(self, source: str | np.ndarray, loudness: LoudnessConvention | None = None) -> np.ndarray:
        """The audio that enters a chain: the preset's render or the given audio, levelled."""
        audio = self.dry(source) if isinstance(source, str) else np.asarray(source, dtype=np.float32)
        return audio if loudness is None else loudness.apply(audio, self.sample_rate)

    def measure_knobs(self, effect: str, before: np.ndarray, after: np.ndarray, predicted: Mapping[str, float],
                      classes: KnobClasses | None = None) -> dict[str, float]:
        """``Effect.measured_knobs`` of ``effect`` for the change from ``before`` to ``after``
        (the prediction unchanged for an effect type without the method: racks may hand out
        bare types)."""
        measure = getattr(self.effect(effect), "measured_knobs", None)
        return measure(before, after, self.sample_rate, predicted, classes) if measure else dict(predicted)

    def process(self, audio: np.ndarray, chain: Chain) -> np.ndarray:
        """Run ``audio`` through ``chain`` as it is (no levelling): a chain can be continued
        from where an earlier call stopped when ``pure_effects`` (every effect's ``process``
        is pure)."""
        for name, knobs in self.validate_chain(chain):
            audio = self.effects[name].process(audio, self.sample_rate, knobs)
        return audio


@attrs.frozen
class RackSpec:
    """How to build a rack, registered through ``serumrnn_register_racks``.

    ``build(manager) -> Rack``; ``availability() -> (available, reason)``;
    ``effect_names``: the rack's effects, for listings where the rack cannot be built.
    """

    name: str
    description: str
    build: Callable[[Any], Rack]
    availability: Callable[[], tuple[bool, str]] = lambda: (True, "")
    effect_names: tuple[str, ...] = attrs.field(default=(), converter=tuple)

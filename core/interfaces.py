"""What a plugin implements or hands to serumrnn, all in one place (``docs/plugins.md``).

- ``Synth`` and its ``Preset`` objects: a synthesizer (``serumrnn_register_synths``).
- ``Effect`` with ``ParamSpec`` knobs: an audio effect (``serumrnn_register_effects``).
- ``Selector``, reading a ``SelectionState``: ranks the effects for the next step
  (``serumrnn_register_selectors``).
- ``RackSpec``, whose ``build`` returns a ``Rack``: a synth plus an ordered set of
  effects (``serumrnn_register_racks``).
- ``FeatureExtractor``: what ``run_session`` and the search take as ``extractor``. It is
  not a plugin hook: a bundle's models only understand the features they were trained
  on (``core/features.py``, recorded as ``FeatureSettings``).

Audio everywhere is a mono float32 array of shape ``(n_samples,)`` in roughly [-1, 1].
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import attrs
import numpy as np

from serumrnn.core.errors import ParameterError
from serumrnn.core.params import ParamSpec, resolve_knobs

if TYPE_CHECKING:
    from serumrnn.core.features import Features

__all__ = [
    "Effect", "FeatureExtractor", "ParamSpec", "Preset", "Rack", "RackSpec", "SelectionState", "Selector",
    "Synth",
]

Named = TypeVar("Named")
# Per categorical knob, every class as (knob value, probability), most probable first:
# what a parameter model gives beside its knobs (``Effect.measured_knobs``).
KnobClasses = Mapping[str, Sequence[tuple[float, float]]]


def _find_named(items: Sequence[Named], name: str, *, owner: str, kind: str) -> Named:
    """The item of ``items`` called ``name``; otherwise a ``ParameterError`` that lists them."""
    for item in items:
        if item.name == name:
            return item
    raise ParameterError(f"{owner} has no {kind} {name!r}; its {kind}s are {', '.join(i.name for i in items)}.")


class Effect(abc.ABC):
    """An audio effect with normalised knobs.

    Subclasses set ``name`` (registry key, lower case), ``label`` (shown to a person),
    ``params`` (its knobs) and implement ``_process``. ``process`` is pure: the same
    input and knobs give bit-identical output (no state survives between calls). An
    effect that cannot promise that sets ``pure = False``.
    """

    name: str = ""
    label: str = ""
    description: str = ""
    params: tuple[ParamSpec, ...] = ()
    # False for an effect that keeps state between calls (a hosted plugin): racks then
    # re-render whole chains instead of continuing an earlier output.
    pure: bool = True

    def param(self, name: str) -> ParamSpec:
        return _find_named(self.params, name, owner=f"Effect {self.name}", kind="knob")

    @property
    def sampled_params(self) -> tuple[ParamSpec, ...]:
        return tuple(spec for spec in self.params if spec.sampled)

    def knob_hints(self, before: np.ndarray, after: np.ndarray, sample_rate: int) -> dict[str, list[float]]:
        """Knob values worth trying if this effect is part of what turned ``before`` into
        ``after``, by knob name, most likely first (a phaser's rate, read from how often
        the change repeats): a searched step starts from the first few, the revision tries
        them all beside its own scans. None by default."""
        return {}

    def measured_knobs(self, before: np.ndarray, after: np.ndarray, sample_rate: int,
                       predicted: Mapping[str, float],
                       classes: KnobClasses | None = None) -> dict[str, float]:
        """``predicted`` (a parameter model's knobs for this effect turning ``before`` toward
        ``after``) with the knobs this effect can measure from the two sounds more exactly
        than a model reads them from features, the prediction as the prior (a phaser's
        rate, from how its sweep moves in time). ``classes``, where the model gives them:
        per categorical knob, every class as ``(knob value, probability)``, most probable
        first (a distortion weighs its modes' fits by them). Every knob prediction passes
        through it: plain steps, one-shot chains, a search's starting point. Unchanged by
        default."""
        return dict(predicted)

    def knob_steps(self, knobs: Mapping[str, float]) -> dict[str, list[float]]:
        """Continuous knobs whose sound, with the other knobs at ``knobs``, changes in steps
        rather than smoothly, by name: a value inside each step, in knob order (a
        downsampler's hold length). A search tries each value instead of refining such a
        knob, which would stall on its flat stretches. None by default."""
        return {}

    def process(
        self, audio: np.ndarray, sample_rate: int, knobs: Mapping[str, float] | None = None
    ) -> np.ndarray:
        """Apply the effect.

        Parameters
        ----------
        audio: float32 array, shape ``(n_samples,)``.
        sample_rate: Hz.
        knobs: knob name -> value in [0, 1]; missing knobs take their default.

        Returns
        -------
        float32 array of the same shape, finite, peak at most 1.
        """
        resolved = resolve_knobs(self.name, self.params, knobs)
        out = self._process(np.ascontiguousarray(audio, dtype=np.float32), int(sample_rate), resolved)
        out = np.nan_to_num(np.asarray(out, dtype=np.float32).reshape(-1)[: audio.shape[0]])
        if out.shape[0] < audio.shape[0]:
            out = np.pad(out, (0, audio.shape[0] - out.shape[0]))
        return np.clip(out, -1.0, 1.0)

    @abc.abstractmethod
    def _process(self, audio: np.ndarray, sample_rate: int, knobs: dict[str, float]) -> np.ndarray:
        """Effect body: ``audio`` shape ``(n_samples,)``, all knobs resolved."""


@attrs.frozen
class Preset:
    """A synth preset: ``name`` (unique within the synth), ``group`` and a description."""

    name: str
    group: str
    description: str = ""


class Synth(abc.ABC):
    """A synthesizer with named presets.

    Subclasses set ``name``, ``label``, ``presets`` and implement ``render``.
    """

    name: str = ""
    label: str = ""
    presets: tuple[Preset, ...] = ()
    # Families of generated presets, addressed by seed rather than listed: group -> description.
    families: Mapping[str, str] = {}

    def generated_presets(self, family: str, first_seed: int, count: int) -> tuple[str, ...]:
        """Names of ``count`` generated presets of ``family`` from ``first_seed`` on."""
        raise ParameterError(f"Synth {self.name} has no generated presets of family {family!r}; "
                             f"its families are {', '.join(self.families) or 'none'}.")

    def preset(self, name: str) -> Preset:
        return _find_named(self.presets, name, owner=f"Synth {self.name}", kind="preset")

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Preset group -> preset names, in preset order."""
        out: dict[str, list[str]] = {}
        for preset in self.presets:
            out.setdefault(preset.group, []).append(preset.name)
        return {group: tuple(names) for group, names in out.items()}

    @abc.abstractmethod
    def render(
        self,
        preset: str,
        *,
        note: int = 60,
        velocity: int = 127,
        duration_s: float = 1.0,
        sample_rate: int = 44100,
    ) -> np.ndarray:
        """Render one note of ``preset``.

        Parameters
        ----------
        preset: preset name (see ``presets``); an unknown one raises ``ParameterError``.
        note: MIDI note 0..127 (69 = A4 = 440 Hz).
        velocity: 0..127.
        duration_s: note length in s, release included.
        sample_rate: Hz.

        Returns
        -------
        float32 array, shape ``(round(duration_s * sample_rate),)``.
        """


@attrs.define
class SelectionState:
    """What a selector may look at.

    history: features of the input, then after each applied effect
        (``len(history) == len(applied) + 1``).
    applied: effect names applied so far, in order.
    target: features of the target.
    effect_names: the rack's effects, in rack order (probabilities use this order).
    bundle: the loaded ``ModelBundle`` (None for selectors that need no model).
    true_chain: effect names of the chain that made the target (evaluation only).
    rng: random generator of the session.
    """

    history: Sequence[Features]
    applied: Sequence[str]
    target: Features
    effect_names: tuple[str, ...]
    bundle: object = None
    true_chain: Sequence[str] | None = None
    rng: np.random.Generator = attrs.field(factory=lambda: np.random.default_rng(0))


@runtime_checkable
class Selector(Protocol):
    """Chooses the next effect of a session.

    Each step the session calls ``probabilities(state)`` and applies the most probable
    effect not yet applied; with search on, the most probable unused effects are the
    search's candidates (``core/search.py``). Subclass it to inherit the defaults below,
    or give every attribute yourself.
    """

    name: str
    # The kind of the bundle's selection model it reads (``state.bundle``), or None. A
    # session refuses a bundle without that model; one without any bundle (search alone)
    # puts ``core.search.SEARCH_ONLY`` in its place.
    model_kind: str | None = None
    # True: called once, on the input alone; every effect scoring over 0.5 (at least the
    # best) is applied at once with the bundle's predicted knobs, without search.
    one_shot: bool = False
    # True: reads ``state.true_chain`` (evaluation and the demo only; suggest refuses
    # to run it without a true chain).
    needs_true_chain: bool = False

    def probabilities(self, state: SelectionState) -> np.ndarray:
        """Scores, shape ``(len(state.effect_names),)``, finite; higher is more likely next."""
        ...


@runtime_checkable
class FeatureExtractor(Protocol):
    """Features of a sound, as the models and the distances see them."""

    def extract(self, audio: np.ndarray, sample_rate: int) -> Features:
        """Features of mono float32 audio, shape ``(n_samples,)``."""
        ...


# core/rack.py builds on Effect and Synth above, so it is imported once they exist.
from serumrnn.core.rack import Rack, RackSpec  # noqa: E402

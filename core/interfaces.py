"""Abstract interfaces that plugins implement: ``Effect``, ``Synth``, ``Preset``.

Audio everywhere is a mono float32 array of shape ``(n_samples,)`` in roughly [-1, 1].
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import attrs
import numpy as np

from serumrnn.core.params import ParamSpec, resolve_knobs


class Effect(abc.ABC):
    """An audio effect with normalised knobs.

    Subclasses set ``name`` (registry key, lower case), ``label`` (shown to a person),
    ``params`` (its knobs) and implement ``_process``. ``process`` is pure: the same
    input and knobs give bit-identical output (no state survives between calls).
    """

    name: str = ""
    label: str = ""
    description: str = ""
    params: tuple[ParamSpec, ...] = ()

    def param(self, name: str) -> ParamSpec:
        for spec in self.params:
            if spec.name == name:
                return spec
        from serumrnn.core.errors import ParameterError

        raise ParameterError(
            f"Effect {self.name} has no knob {name!r}; its knobs are "
            f"{', '.join(s.name for s in self.params)}."
        )

    @property
    def sampled_params(self) -> tuple[ParamSpec, ...]:
        return tuple(spec for spec in self.params if spec.sampled)

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

    def describe_knobs(self, knobs: Mapping[str, float]) -> str:
        """``"Mode: Tube. Drive: 0.71 (+14 dB)."`` for the sampled knobs in ``knobs``."""
        parts = []
        for spec in self.params:
            if spec.name not in knobs:
                continue
            value = knobs[spec.name]
            shown = spec.label or spec.name.replace("_", " ").capitalize()
            if spec.kind == "categorical":
                parts.append(f"{shown}: {spec.describe(value)}.")
            elif spec.unit:
                parts.append(f"{shown}: {value:.2f} ({spec.describe(value)}).")
            else:
                parts.append(f"{shown}: {value:.2f}.")
        return " ".join(parts)


@attrs.frozen
class Preset:
    """A synth preset: ``name`` (unique within the synth), ``group`` and a description."""

    name: str
    group: str
    description: str = ""


class Synth(abc.ABC):
    """A synthesizer with named presets."""

    name: str = ""
    label: str = ""
    presets: tuple[Preset, ...] = ()
    # Families of generated presets, addressed by seed rather than listed: group -> description.
    families: Mapping[str, str] = {}

    def generated_presets(self, family: str, first_seed: int, count: int) -> tuple[str, ...]:
        """Names of ``count`` generated presets of ``family`` from ``first_seed`` on."""
        from serumrnn.core.errors import ParameterError

        raise ParameterError(f"Synth {self.name} has no generated presets of family {family!r}; "
                             f"its families are {', '.join(self.families) or 'none'}.")

    def preset(self, name: str) -> Preset:
        for preset in self.presets:
            if preset.name == name:
                return preset
        from serumrnn.core.errors import ParameterError

        raise ParameterError(
            f"Synth {self.name} has no preset {name!r}; its presets are "
            f"{', '.join(p.name for p in self.presets)}."
        )

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
        """Render one note of ``preset``: float32, shape ``(round(duration_s * sample_rate),)``."""

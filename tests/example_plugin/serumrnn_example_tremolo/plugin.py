"""Registers a tremolo effect, a rack that adds it to the built-in rack, and a selector
that tries the tremolo first."""

import numpy as np

from serumrnn.core import Effect, ParamSpec, Rack, RackSpec, SelectionState, Selector, hookimpl


class Tremolo(Effect):
    name = "tremolo"
    label = "Tremolo"
    description = "Amplitude modulation by a sine LFO."
    params = (
        ParamSpec("rate", "continuous", default=0.5, label="Rate", unit="Hz",
                  physical_min=1.0, physical_max=16.0, scale="log"),
        ParamSpec("depth", "continuous", default=0.5, label="Depth"),
    )

    def _process(self, audio, sample_rate, knobs):
        rate_hz = self.param("rate").physical(knobs["rate"])
        time_s = np.arange(audio.shape[0]) / sample_rate
        lfo = 0.5 * (1.0 + np.sin(2 * np.pi * rate_hz * time_s))
        return audio * (1.0 - knobs["depth"] * lfo)


class TremoloFirst(Selector):
    """Needs no model: the tremolo first, then the rack's other effects in rack order."""

    name = "tremolo-first"

    def probabilities(self, state: SelectionState) -> np.ndarray:
        scores = np.linspace(1.0, 0.5, len(state.effect_names))
        if "tremolo" in state.effect_names:
            scores[state.effect_names.index("tremolo")] = 2.0
        return scores


@hookimpl
def serumrnn_register_effects(register):
    register(Tremolo())


@hookimpl
def serumrnn_register_selectors(register):
    register(TremoloFirst())


def _build(manager):
    builtin = manager.rack("builtin")
    effects = [*builtin.effects.values(), manager.effects.get("tremolo")]
    return Rack("builtin-tremolo", builtin.synth, effects, description="built-in rack plus a tremolo")


@hookimpl
def serumrnn_register_racks(register):
    register(RackSpec(name="builtin-tremolo", description="built-in rack plus a tremolo", build=_build))

"""Registers a tremolo effect and a rack that adds it to the built-in rack."""

import numpy as np

from serumrnn.core import Effect, ParamSpec, RackSpec, hookimpl
from serumrnn.core.rack import Rack


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


@hookimpl
def serumrnn_register_effects(register):
    register(Tremolo())


def _build(manager):
    builtin = manager.rack("builtin")
    effects = list(builtin.effects.values()) + [manager.effects.get("tremolo")]
    return Rack("builtin-tremolo", builtin.synth, effects, description="built-in rack plus a tremolo")


@hookimpl
def serumrnn_register_racks(register):
    register(RackSpec(name="builtin-tremolo", description="built-in rack plus a tremolo", build=_build))

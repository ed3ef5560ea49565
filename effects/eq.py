"""EQ (high band): one peaking bell with frequency, resonance (Q) and gain."""

from __future__ import annotations

import numpy as np
import pedalboard

from serumrnn.core.interfaces import Effect
from serumrnn.core.params import ParamSpec

MIN_FREQUENCY_HZ = 20.0
MAX_FREQUENCY_HZ = 20000.0
MIN_Q = 0.5
MAX_Q = 10.0
MAX_GAIN_DB = 24.0
# The bell must stay below Nyquist whatever the sample rate.
MAX_FREQUENCY_OF_NYQUIST = 0.9


class HighBandEQ(Effect):
    """A peaking bell filter, the high band of a parametric EQ."""

    name = "eq"
    label = "EQ (high band)"
    description = (
        "Peaking bell (20 Hz to 20 kHz, Q 0.5 to 10, -24 to +24 dB); gain knob 0.5 is 0 dB."
    )
    params = (
        ParamSpec(
            "frequency",
            "continuous",
            ((0.5, 0.95),),
            default=0.75,
            label="Frequency",
            unit="Hz",
            physical_min=MIN_FREQUENCY_HZ,
            physical_max=MAX_FREQUENCY_HZ,
            scale="log",
        ),
        ParamSpec(
            "resonance",
            "continuous",
            ((0.0, 1.0),),
            default=0.25,
            label="Resonance",
            unit="Q",
            physical_min=MIN_Q,
            physical_max=MAX_Q,
            scale="log",
        ),
        ParamSpec(
            "gain",
            "continuous",
            ((0.0, 0.4), (0.6, 1.0)),
            default=0.5,
            label="Gain",
            unit="dB",
            physical_min=-MAX_GAIN_DB,
            physical_max=MAX_GAIN_DB,
        ),
    )

    def _process(self, audio: np.ndarray, sample_rate: int, knobs: dict[str, float]) -> np.ndarray:
        gain_db = self.param("gain").physical(knobs["gain"])
        if gain_db == 0.0:
            return audio.copy()  # a 0 dB bell is the identity; skip its rounding noise
        frequency = min(
            self.param("frequency").physical(knobs["frequency"]),
            MAX_FREQUENCY_OF_NYQUIST * sample_rate / 2.0,
        )
        bell = pedalboard.PeakFilter(
            cutoff_frequency_hz=frequency,
            gain_db=gain_db,
            q=self.param("resonance").physical(knobs["resonance"]),
        )
        return bell.process(audio, sample_rate, reset=True)

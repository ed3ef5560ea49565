"""Hall reverb: pedalboard's large-room reverb with low and high cut on the wet signal.

The tail is cut at the input's length, as for every effect of the rack.
"""

from __future__ import annotations

import numpy as np
import pedalboard

from serumrnn.core.interfaces import Effect
from serumrnn.core.params import ParamSpec
from serumrnn.effects.filters import butterworth_sos, sosfilt

ROOM_SIZE = 0.9  # hall
DAMPING = 0.4
# pedalboard's reverb at wet level 1 is louder than its input; this brings it near the
# dry level so the mix knob trades timbre, not loudness.
WET_TRIM = 0.5
MIN_LOW_CUT_HZ, MAX_LOW_CUT_HZ = 20.0, 1000.0
MIN_HIGH_CUT_HZ, MAX_HIGH_CUT_HZ = 1000.0, 20000.0


class HallReverb(Effect):
    """Large-room reverb with filtered wet signal and a dry/wet mix."""

    name = "reverb"
    label = "Hall Reverb"
    description = (
        "Hall reverb; low cut (20 Hz to 1 kHz) and high cut (1 to 20 kHz) shape the wet "
        "signal (12 dB/octave), mix sets the dry/wet balance."
    )
    params = (
        ParamSpec(
            "mix",
            "continuous",
            ((0.3, 0.7),),
            default=0.5,
            label="Mix",
            unit="%",
            physical_min=0.0,
            physical_max=100.0,
        ),
        ParamSpec(
            "low_cut",
            "continuous",
            ((0.0, 1.0),),
            default=0.25,
            label="Low cut",
            unit="Hz",
            physical_min=MIN_LOW_CUT_HZ,
            physical_max=MAX_LOW_CUT_HZ,
            scale="log",
        ),
        ParamSpec(
            "high_cut",
            "continuous",
            ((0.0, 1.0),),
            default=0.75,
            label="High cut",
            unit="Hz",
            physical_min=MIN_HIGH_CUT_HZ,
            physical_max=MAX_HIGH_CUT_HZ,
            scale="log",
        ),
    )

    def _process(self, audio: np.ndarray, sample_rate: int, knobs: dict[str, float]) -> np.ndarray:
        if audio.shape[0] == 0:
            return audio.copy()
        hall = pedalboard.Reverb(
            room_size=ROOM_SIZE, damping=DAMPING, wet_level=1.0, dry_level=0.0, width=1.0
        )
        wet = hall.process(audio, sample_rate, reset=True)
        # butterworth_sos clamps both cut-offs below Nyquist.
        cuts = np.concatenate(
            [
                butterworth_sos(self.param("low_cut").physical(knobs["low_cut"]), sample_rate, "highpass"),
                butterworth_sos(self.param("high_cut").physical(knobs["high_cut"]), sample_rate, "lowpass"),
            ]
        )
        wet = sosfilt(cuts.astype(np.float32), wet)  # float32 in and out
        mix = knobs["mix"]
        return np.float32(1.0 - mix) * audio + np.float32(mix * WET_TRIM) * wet

"""Phaser: pedalboard's swept all-pass phaser with LFO depth, rate and feedback."""

from __future__ import annotations

import numpy as np
import pedalboard

from serumrnn.core.interfaces import Effect
from serumrnn.core.params import ParamSpec

# 0.5 Hz is the slowest rate that still sweeps half a cycle in a one-second note.
MIN_RATE_HZ = 0.5
MAX_RATE_HZ = 10.0
# pedalboard accepts feedback up to 1, where the all-pass loop rings without end.
MAX_FEEDBACK = 0.9
CENTRE_FREQUENCY_HZ = 1300.0
# Equal dry and wet gives the deepest notches.
MIX = 0.5
# The all-pass phase shifts make a saw's peaks up to about 1.5x higher, and feedback
# resonance adds more; scale down so the output stays mostly below full scale.
OUTPUT_TRIM = 0.8


class Phaser(Effect):
    """Swept all-pass phaser."""

    name = "phaser"
    label = "Phaser"
    description = (
        "All-pass phaser centred at 1.3 kHz: LFO depth, LFO rate (0.5 to 10 Hz) and "
        "feedback (0 to 90%)."
    )
    params = (
        ParamSpec("depth", "continuous", ((0.0, 1.0),), default=0.5, label="LFO depth"),
        ParamSpec(
            "rate",
            "continuous",
            ((0.0, 1.0),),
            default=0.5,
            label="LFO rate",
            unit="Hz",
            physical_min=MIN_RATE_HZ,
            physical_max=MAX_RATE_HZ,
            scale="log",
        ),
        ParamSpec(
            "feedback",
            "continuous",
            ((0.0, 1.0),),
            default=0.5,
            label="Feedback",
            unit="%",
            physical_min=0.0,
            physical_max=100.0 * MAX_FEEDBACK,
        ),
    )

    def _process(self, audio: np.ndarray, sample_rate: int, knobs: dict[str, float]) -> np.ndarray:
        feedback = MAX_FEEDBACK * knobs["feedback"]
        phaser = pedalboard.Phaser(
            rate_hz=self.param("rate").physical(knobs["rate"]),
            depth=knobs["depth"],
            centre_frequency_hz=CENTRE_FREQUENCY_HZ,
            feedback=feedback,
            mix=MIX,
        )
        wet = phaser.process(audio, sample_rate, reset=True)
        return wet * np.float32(OUTPUT_TRIM / (1.0 + feedback))

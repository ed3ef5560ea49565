"""EQ (high band): one peaking bell with frequency, resonance (Q) and gain."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import pedalboard

from serumrnn.core.interfaces import Effect, KnobClasses
from serumrnn.core.params import ParamSpec
from serumrnn.effects.spectrum_fit import (
    FIT_FFT,
    average_spectrum_db,
    knob_grid,
    most_plausible,
    spectrum_bins_hz,
    spectrum_misfit,
)

MIN_FREQUENCY_HZ = 20.0
MAX_FREQUENCY_HZ = 20000.0
MIN_Q = 0.5
MAX_Q = 10.0
MAX_GAIN_DB = 24.0
# The bell must stay below Nyquist whatever the sample rate.
MAX_FREQUENCY_OF_NYQUIST = 0.9
# The bell fit: a filter multiplies a sound's average spectrum by its response, so each
# candidate bell is scored without rendering, as the sound's spectrum plus the bell's dB
# response against the target's. A coarse grid over the sampled ranges (these steps in
# knob units), then a grid four times finer one coarse step around its winner.
FIT_KNOBS = ("frequency", "resonance", "gain")
FIT_COARSE_STEPS = (0.02, 0.1, 0.05)
FIT_REFINEMENT = 4
# How far, in knob units, the fitted knobs may stray from the model's (as for the phaser's
# rate and the distortion's drive).
KNOB_PRIOR_SPREAD = 0.2


def bell_response_db(frequency_hz: np.ndarray, q: np.ndarray, gain_db: np.ndarray,
                     bins_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Magnitude response in dB, float32 ``(candidates, bins)``, of peaking bells (the
    Audio EQ Cookbook's digital peaking filter, the biquad pedalboard's PeakFilter runs)."""
    amplitude = np.power(10.0, np.asarray(gain_db, np.float64) / 40.0)[:, None]
    centre = 2.0 * np.pi * np.asarray(frequency_hz, np.float64)[:, None] / sample_rate
    alpha = np.sin(centre) / (2.0 * np.asarray(q, np.float64)[:, None])
    cosine = -2.0 * np.cos(centre)
    angle = 2.0 * np.pi * np.asarray(bins_hz, np.float64) / sample_rate
    once, twice = np.cos(angle).astype(np.float32)[None, :], np.cos(2.0 * angle).astype(np.float32)[None, :]

    def power(outer_sum: np.ndarray) -> np.ndarray:
        # |c0 + c1 z + c2 z^2|^2 on the unit circle, for c0 = 1 + s, c1 = cosine, c2 = 1 - s
        edge, far = (1.0 + outer_sum), (1.0 - outer_sum)
        return ((edge**2 + cosine**2 + far**2).astype(np.float32) + (2.0 * cosine * (edge + far)).astype(np.float32) * once
                + (2.0 * edge * far).astype(np.float32) * twice)

    ratio = power(alpha * amplitude) / np.maximum(power(alpha / amplitude), np.float32(1e-30))
    return np.float32(10.0) * np.log10(np.maximum(ratio, np.float32(1e-24)))


@functools.lru_cache(maxsize=4)
def _coarse_bells(effect_type: type[HighBandEQ], sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The coarse grid and its bells' responses (27 MB at 44.1 kHz), kept between
    measurements: they depend on the sample rate and the knobs' ranges only."""
    effect = effect_type()
    grid = effect._fit_grid(None)
    bells = effect._bell_db(grid, sample_rate)
    grid.setflags(write=False)  # shared by every later call
    bells.setflags(write=False)
    return grid, bells


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

    def measured_knobs(self, before: np.ndarray, after: np.ndarray, sample_rate: int,
                       predicted: Mapping[str, float],
                       classes: KnobClasses | None = None) -> dict[str, float]:
        """``predicted`` with the bell whose response best turns ``before``'s average
        spectrum into ``after``'s (levels aside), weighed against its distance from the
        predicted knobs (``KNOB_PRIOR_SPREAD``): a boost or cut shows where and how wide it
        is in the spectrum; the features a model reads blur that."""
        knobs = dict(predicted)
        if any(name not in knobs for name in FIT_KNOBS) or min(len(before), len(after)) < FIT_FFT:
            return knobs
        before_db = average_spectrum_db(before, sample_rate)
        target_db = average_spectrum_db(after, sample_rate)
        predicted_knobs = np.array([knobs[name] for name in FIT_KNOBS])

        def best(candidates: np.ndarray, bells_db: np.ndarray) -> np.ndarray | None:
            misfit = spectrum_misfit(before_db[None, :] + bells_db, target_db)
            if not np.max(misfit) > 0:  # nothing tells the bells apart
                return None
            return candidates[most_plausible(misfit, candidates, predicted_knobs, KNOB_PRIOR_SPREAD)]

        coarse = best(*_coarse_bells(type(self), sample_rate))
        if coarse is None:
            return knobs
        fine_grid = self._fit_grid(coarse)
        fine = best(fine_grid, self._bell_db(fine_grid, sample_rate))
        knobs.update({name: float(value) for name, value in zip(FIT_KNOBS, fine if fine is not None else coarse)})
        return knobs

    def _fit_grid(self, around: np.ndarray | None) -> np.ndarray:
        """The coarse grid of ``FIT_KNOBS``, or the fine one around a coarse winner."""
        return knob_grid(self, FIT_KNOBS, FIT_COARSE_STEPS, FIT_REFINEMENT, around)

    def _bell_db(self, candidates: np.ndarray, sample_rate: int) -> np.ndarray:
        """dB responses of the bells set by ``candidates`` rows, on the fit's bins."""
        physical = [np.array([self.param(name).physical(knob) for knob in column])
                    for name, column in zip(FIT_KNOBS, candidates.T)]
        frequency = np.minimum(physical[0], MAX_FREQUENCY_OF_NYQUIST * sample_rate / 2.0)
        return bell_response_db(frequency, physical[1], physical[2], spectrum_bins_hz(sample_rate), sample_rate)

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

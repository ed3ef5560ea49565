"""Distortion: twelve numpy waveshapers behind an input drive.

Every mode maps the driven signal through a memoryless curve (``downsample`` instead
holds samples, with the drive setting how many). The output is scaled back towards the
input's RMS so the modes differ in timbre, not in loudness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from serumrnn.core.interfaces import Effect
from serumrnn.core.params import ParamSpec
from serumrnn.effects.filters import lfilter
from serumrnn.effects.spectrum_fit import FIT_FFT, average_spectrum_db, detail_misfit, most_plausible, spectrum_misfit

MODES: tuple[str, ...] = (
    "tube",
    "soft clip",
    "hard clip",
    "diode 1",
    "diode 2",
    "linear fold",
    "sine fold",
    "zero-square",
    "downsample",
    "asymmetric",
    "rectify",
    "x-shaper",
)

MAX_DRIVE_DB = 24.0
# Downsample mode: the drive knob sets the hold length, 1 (knob 0) to 32 samples (knob 1).
MAX_HOLD_OCTAVES = 5.0
TUBE_BIAS = 0.3
# Shapers that add DC get a one-pole high-pass at about 10 Hz.
DC_BLOCK_HZ = 10.0

# The drive fit: the sound shaped at 36 drives across the sampled range, compared by
# long-term average spectrum (``spectrum_fit``). Later effects in a chain (filters,
# reverb, a compressor) change that spectrum smoothly or by a level; the shaper's
# harmonics do not: the drive is chosen by the spectra's detail (``detail_misfit``), the
# mode rule below reads the whole misfit (``spectrum_misfit``).
FIT_DRIVES = 36
# How far, in knob units, the fitted drive may stray from the model's (the drive model's
# validation RMSE is about 0.18): the spectrum decides between drives the model cannot
# tell apart, the model where several drives fit about as well.
DRIVE_PRIOR_SPREAD = 0.2
# The mode: when the predicted mode at its fitted drive leaves the target's average
# spectrum this far away or more (mean dB, ``spectrum_misfit``), the change is not that
# shaper's alone, or not that shaper's: every other mode is fitted too (``FIT_MODE_DRIVES``
# drives each, then the winner at ``FIT_DRIVES``), and one that comes under it takes over.
# Under it, the model's mode stands (a close fit says little about the others).
MODE_SWITCH_MISFIT_DB = 2.0
FIT_MODE_DRIVES = 12

Shaper = Callable[[np.ndarray], np.ndarray]


def _tube(u: np.ndarray) -> np.ndarray:
    # A biased tanh adds even harmonics like a triode; the shift keeps silence at 0.
    return np.tanh(u + TUBE_BIAS) - np.tanh(TUBE_BIAS)


def _soft_clip(u: np.ndarray) -> np.ndarray:
    c = np.clip(u, -1.0, 1.0)
    return c * (1.5 - 0.5 * c * c)


def _hard_clip(u: np.ndarray) -> np.ndarray:
    return np.clip(u, -1.0, 1.0)


def _diode_pair(u: np.ndarray) -> np.ndarray:
    # Two anti-parallel diodes: logarithmic, never flat, softer than tanh.
    return np.sign(u) * np.log1p(np.abs(u))


def _single_diode(u: np.ndarray) -> np.ndarray:
    # One diode: exponential knee on the positive half only, negative half passes.
    return np.where(u > 0.0, -np.expm1(-u), np.maximum(u, -2.0))


def _linear_fold(u: np.ndarray) -> np.ndarray:
    # Triangle wavefolder: slope 1 at zero, reflects at +-1.
    position = (u + 1.0) / 4.0
    position -= np.floor(position)  # np.mod is several times slower
    return 1.0 - 4.0 * np.abs(position - 0.5)


def _sine_fold(u: np.ndarray) -> np.ndarray:
    return np.sin(0.5 * np.pi * u)


def _zero_square(u: np.ndarray) -> np.ndarray:
    # Signed square of the clipped signal: dead zone near zero, hard top.
    c = np.clip(u, -1.0, 1.0)
    return c * np.abs(c)


def _asymmetric(u: np.ndarray) -> np.ndarray:
    # Positive half saturates softly at 1, negative half clips hard at -0.5.
    return np.where(u >= 0.0, np.tanh(u), np.maximum(u, -0.5))


def _rectify(u: np.ndarray) -> np.ndarray:
    # Full-wave rectifier after soft saturation: doubles the pitch.
    return np.abs(np.tanh(u))


def _x_shaper(u: np.ndarray) -> np.ndarray:
    # Fixed curve with two bends per half: minus the 3rd Chebyshev polynomial, which
    # adds a strong third harmonic and folds back near the top.
    c = np.clip(u, -1.0, 1.0)
    return c * (3.0 - 4.0 * c * c)


SHAPERS: dict[str, Shaper] = {
    "tube": _tube,
    "soft clip": _soft_clip,
    "hard clip": _hard_clip,
    "diode 1": _diode_pair,
    "diode 2": _single_diode,
    "linear fold": _linear_fold,
    "sine fold": _sine_fold,
    "zero-square": _zero_square,
    "asymmetric": _asymmetric,
    "rectify": _rectify,
    "x-shaper": _x_shaper,
}
ADDS_DC = frozenset({"tube", "diode 2", "asymmetric", "rectify"})


def sample_and_hold(audio: np.ndarray, hold: int) -> np.ndarray:
    """Keep every ``hold``-th sample and repeat it: a sample-rate reducer without filters."""
    held_index = (np.arange(audio.shape[0]) // hold) * hold
    return audio[held_index]


def remove_dc(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """One-pole DC blocker, about ``DC_BLOCK_HZ`` cut-off."""
    pole = 1.0 - 2.0 * np.pi * DC_BLOCK_HZ / sample_rate
    numerator = np.array([1.0, -1.0], dtype=np.float32)
    denominator = np.array([1.0, -pole], dtype=np.float32)
    return lfilter(numerator, denominator, audio.astype(np.float32, copy=False))


def match_level(shaped: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale ``shaped`` to the RMS of ``reference``, but never to a peak above 1."""
    shaped_rms = float(np.sqrt(np.mean(np.square(shaped, dtype=np.float64))))
    reference_rms = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64))))
    peak = float(np.max(np.abs(shaped)))
    if shaped_rms <= 1e-9 or peak <= 1e-9:
        return shaped
    return shaped * min(reference_rms / shaped_rms, 1.0 / peak)


class Distortion(Effect):
    """Waveshaping distortion with twelve modes and an input drive."""

    name = "distortion"
    label = "Distortion"
    description = (
        "Drive (0 to +24 dB) into one of twelve waveshapers; the output is brought back "
        "to the input's loudness. In downsample mode the drive sets the hold length."
    )
    params = (
        ParamSpec(
            "mode",
            "categorical",
            ((0.0, 1.0),),
            classes=MODES,
            default=0.5 / len(MODES),
            label="Mode",
        ),
        ParamSpec(
            "drive",
            "continuous",
            ((0.3, 1.0),),
            default=0.5,
            label="Drive",
            unit="dB",
            physical_min=0.0,
            physical_max=MAX_DRIVE_DB,
        ),
    )

    def knob_steps(self, knobs: Mapping[str, float]) -> dict[str, list[float]]:
        """In downsample mode the drive sets a whole number of held samples: the drive of
        each hold length within the drive's sampled range."""
        if MODES[self.param("mode").class_index(knobs["mode"])] != "downsample":
            return {}
        low, high = self.param("drive").sample_ranges[0]
        holds = range(math.ceil(2.0 ** (MAX_HOLD_OCTAVES * low) - 0.5), int(2.0 ** (MAX_HOLD_OCTAVES * high)) + 1)
        return {"drive": [float(np.clip(math.log2(hold) / MAX_HOLD_OCTAVES, low, high)) for hold in holds]}

    def measured_knobs(self, before: np.ndarray, after: np.ndarray, sample_rate: int,
                       predicted: Mapping[str, float]) -> dict[str, float]:
        """``predicted`` with the drive whose shaped ``before`` has the average spectrum
        closest to ``after``'s, in the predicted mode, weighed against its distance from
        the predicted drive (``DRIVE_PRIOR_SPREAD``). A model reads the drive to about 0.18
        of the knob; the harmonics the shaper adds pin it closer. When that leaves the
        spectra ``MODE_SWITCH_MISFIT_DB`` apart or more, the other modes are fitted too
        and the closest one under that misfit replaces the predicted mode."""
        knobs = dict(predicted)
        if "drive" not in knobs or "mode" not in knobs or len(before) < FIT_FFT or len(after) < FIT_FFT:
            return knobs
        target_db = average_spectrum_db(after, sample_rate)
        fitted = self._fitted_drive(before, target_db, sample_rate, knobs, FIT_DRIVES)
        if fitted is None:  # nothing to tell the drives apart
            return knobs
        knobs, misfit = fitted
        if misfit < MODE_SWITCH_MISFIT_DB:
            return knobs
        mode_spec = self.param("mode")
        predicted_mode = mode_spec.class_index(knobs["mode"])
        others = [self._fitted_drive(before, target_db, sample_rate, {**knobs, "mode": mode_spec.class_knob(index)},
                                     FIT_MODE_DRIVES) for index in range(len(MODES)) if index != predicted_mode]
        closest = min((other for other in others if other is not None), key=lambda other: other[1], default=None)
        if closest is None or closest[1] >= MODE_SWITCH_MISFIT_DB:
            return knobs
        refined = self._fitted_drive(before, target_db, sample_rate, closest[0], FIT_DRIVES)
        return refined[0] if refined is not None and refined[1] < misfit else knobs

    def _fitted_drive(self, before: np.ndarray, target_db: np.ndarray, sample_rate: int,
                      knobs: dict[str, float], count: int) -> tuple[dict[str, float], float] | None:
        """``knobs`` with the most plausible of ``count`` drives across the sampled range
        (every hold length in downsample mode; judged by the spectra's detail) and its
        whole spectrum misfit; None when no drive changes that misfit."""
        low, high = self.param("drive").sample_ranges[0]
        drives = np.asarray(self.knob_steps(knobs).get("drive") or np.linspace(low, high, count))
        shaped_db = np.stack([average_spectrum_db(self.process(before, sample_rate, {**knobs, "drive": drive}), sample_rate)
                              for drive in drives])
        misfit = spectrum_misfit(shaped_db, target_db)
        if not np.max(misfit) > 0:
            return None
        chosen = most_plausible(detail_misfit(shaped_db, target_db, sample_rate), drives, knobs["drive"],
                                DRIVE_PRIOR_SPREAD)
        return {**knobs, "drive": float(drives[chosen])}, float(misfit[chosen])

    def _process(self, audio: np.ndarray, sample_rate: int, knobs: dict[str, float]) -> np.ndarray:
        if audio.shape[0] == 0:
            return audio.copy()
        mode = MODES[self.param("mode").class_index(knobs["mode"])]
        drive = knobs["drive"]
        if mode == "downsample":
            hold = max(1, int(round(2.0 ** (MAX_HOLD_OCTAVES * drive))))
            return sample_and_hold(audio, hold)
        driven = audio * np.float32(10.0 ** (MAX_DRIVE_DB * drive / 20.0))
        shaped = SHAPERS[mode](driven)
        if mode in ADDS_DC:
            shaped = remove_dc(shaped, sample_rate)
        return match_level(shaped.astype(np.float32, copy=False), audio)

"""Three-band OTT-style compressor: upward and downward compression per band.

The input is split at 400 Hz and 2.5 kHz. Each band's level is followed block by block,
and a gain computer pulls loud parts down and quiet parts up towards the same level. A
band's knob is its wet amount, so knob 0 leaves that band untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from serumrnn.core.interfaces import Effect, KnobClasses
from serumrnn.core.params import ParamSpec
from serumrnn.effects.filters import butterworth_sos, lfilter, sosfilt
from serumrnn.effects.spectrum_fit import (
    TIME_FIT_FFT,
    fitted_on_grids,
    sum_segments,
    time_band_pool,
    time_band_misfit,
    time_fit_spectra,
)

# OTT splits at about 90 Hz, but the rack's notes are C4 (262 Hz): a low band that
# holds the fundamental is the only way the low knob audibly changes them.
LOW_CROSSOVER_HZ = 400.0
HIGH_CROSSOVER_HZ = 2500.0

# Level detector: block power (about 1.5 ms blocks at 44.1 kHz), smoothed forwards and
# backwards so the gain moves before a transient (offline look-ahead, no overshoot).
BLOCK_SIZE = 64
DETECTOR_TIME_S = 0.01

# Gain computer in dBFS, shared by all bands: hard downward compression above one
# threshold, upward below another, then makeup gain.
DOWNWARD_THRESHOLD_DB = -18.0
DOWNWARD_RATIO = 10.0
UPWARD_THRESHOLD_DB = -24.0
UPWARD_RATIO = 4.0
MAX_UPWARD_GAIN_DB = 24.0
# Below this level a band is treated as silence and never lifted (no noise pumping).
NOISE_FLOOR_DB = -90.0
NOISE_FADE_DB = 10.0
MAKEUP_GAIN_DB = 4.0

BAND_KNOBS = ("low", "mid", "high")
# The fit: the gains follow the input's band levels, not the knobs, so the output is
# linear in the three amounts, y = x + sum of a_b c_b (c_b: band b's change at amount 1),
# and each candidate's power per segment and band (``spectrum_fit``'s fits over time)
# follows from the spectra of x and the c_b and their cross terms without rendering.
# A grid of 0.1 over the amounts, then one twice as fine around its winner.
FIT_COARSE_STEP = 0.1
FIT_REFINEMENT = 2
# Each band's level is set aside (``per_band``): how the gains move a band over time
# survives the filters and shapers that follow in a chain, its level does not.
# How far, in knob units, the fitted amounts may stray from the model's (its validation
# RMSE is about 0.21-0.25): where the band levels hardly move (a steady tone) the fit
# sees little, and the model decides.
KNOB_PRIOR_SPREAD = 0.2


def split_bands(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Low, mid and high band of ``audio``, shape ``(3, n_samples)``, float32.

    Low and high are Linkwitz-Riley filtered; mid is the remainder, so the bands
    always sum back to the input exactly.
    """
    # float32 coefficients keep sosfilt in float32: no conversions, and precise enough.
    lowpass = butterworth_sos(LOW_CROSSOVER_HZ, sample_rate, "lowpass", 2).astype(np.float32)
    highpass = butterworth_sos(HIGH_CROSSOVER_HZ, sample_rate, "highpass", 2).astype(np.float32)
    bands = np.empty((3, audio.shape[0]), dtype=np.float32)
    bands[0] = sosfilt(lowpass, audio)
    bands[2] = sosfilt(highpass, audio)
    np.subtract(audio, bands[0], out=bands[1])
    bands[1] -= bands[2]
    return bands


def smooth_both_ways(power: np.ndarray, sample_rate: int) -> np.ndarray:
    """One-pole smoothing of block powers, shape ``(bands, blocks)``, run forwards then
    backwards along the blocks; each pass starts settled at its first value."""
    pole = math.exp(-BLOCK_SIZE / (DETECTOR_TIME_S * sample_rate))
    numerator, denominator = [1.0 - pole], [1.0, -pole]
    forward, _ = lfilter(numerator, denominator, power, axis=1, zi=pole * power[:, :1])
    backward = forward[:, ::-1]
    backward, _ = lfilter(numerator, denominator, backward, axis=1, zi=pole * backward[:, :1])
    return backward[:, ::-1]


def band_gain_db(level_db: np.ndarray) -> np.ndarray:
    """Static OTT-style gain curve: downward above one threshold, upward below another."""
    downward = np.minimum(0.0, (DOWNWARD_THRESHOLD_DB - level_db) * (1.0 - 1.0 / DOWNWARD_RATIO))
    upward = np.clip(
        (UPWARD_THRESHOLD_DB - level_db) * (1.0 - 1.0 / UPWARD_RATIO), 0.0, MAX_UPWARD_GAIN_DB
    )
    upward *= np.clip((level_db - NOISE_FLOOR_DB) / NOISE_FADE_DB, 0.0, 1.0)
    return downward + upward + MAKEUP_GAIN_DB


def band_changes(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """What each band adds to ``audio`` at amount 1, shape ``(3, n_samples)``, float32:
    the compressor's output is ``audio`` plus the amounts times these."""
    n_samples = audio.shape[0]
    # Zero-pad to whole blocks; the padding is dropped at the end.
    n_blocks = -(-n_samples // BLOCK_SIZE)
    padded = np.zeros(n_blocks * BLOCK_SIZE, dtype=np.float32)
    padded[:n_samples] = audio
    blocks = split_bands(padded, sample_rate).reshape(3, n_blocks, BLOCK_SIZE)
    power = np.einsum("bkn,bkn->bk", blocks, blocks) / BLOCK_SIZE
    level_db = 10.0 * np.log10(smooth_both_ways(power, sample_rate) + 1e-12)
    # Gain offset per block, gain - 1, ramping linearly across each block (no zipper noise).
    extra_gain = 10.0 ** (band_gain_db(level_db) / 20.0) - 1.0
    extra_gain = np.concatenate([extra_gain, extra_gain[:, -1:]], axis=1).astype(np.float32)
    start, step = extra_gain[:, :-1, None], np.diff(extra_gain, axis=1)[:, :, None]
    ramp = np.arange(BLOCK_SIZE, dtype=np.float32) / BLOCK_SIZE
    return ((start + ramp * step) * blocks).reshape(3, -1)[:, :n_samples]


class MultibandCompressor(Effect):
    """OTT-style three-band upward and downward compressor."""

    name = "compressor"
    label = "Multiband Compressor"
    description = (
        "Three-band (400 Hz / 2.5 kHz) upward and downward compressor in the style of OTT; "
        "each knob is the wet amount of one band."
    )
    params = (
        ParamSpec("low", "continuous", ((0.0, 1.0),), default=0.5, label="Low band amount"),
        ParamSpec("mid", "continuous", ((0.0, 1.0),), default=0.5, label="Mid band amount"),
        ParamSpec("high", "continuous", ((0.0, 1.0),), default=0.5, label="High band amount"),
    )

    def measured_knobs(self, before: np.ndarray, after: np.ndarray, sample_rate: int,
                       predicted: Mapping[str, float],
                       classes: KnobClasses | None = None) -> dict[str, float]:
        """``predicted`` with the band amounts whose compression of ``before`` has the power
        over time and frequency closest to ``after``'s (each band's level aside), weighed against
        their distance from the predicted amounts (``KNOB_PRIOR_SPREAD``)."""
        knobs = dict(predicted)
        if any(name not in knobs for name in BAND_KNOBS) or min(len(before), len(after)) < TIME_FIT_FFT:
            return knobs
        before = np.ascontiguousarray(before, dtype=np.float32)
        # x, then each c_b
        parts, target_db, floor = time_fit_spectra((before, *band_changes(before, sample_rate)), after, sample_rate)
        pairs = [(i, j) for i in range(len(parts)) for j in range(i, len(parts))]
        # |x + sum a_b c_b|^2 pooled: each pair's pooled Re(conj(p_i) p_j), twice off the diagonal
        pair_power = np.stack([(1.0 if i == j else 2.0)
                               * sum_segments(time_band_pool((np.conj(parts[i]) * parts[j]).real, sample_rate))
                               for i, j in pairs])
        first, second = np.array(pairs).T
        predicted_amounts = np.array([knobs[name] for name in BAND_KNOBS])

        def misfit(candidates: np.ndarray) -> np.ndarray:
            coefficients = np.concatenate([np.ones((len(candidates), 1)), candidates], axis=1)
            weights = coefficients[:, first] * coefficients[:, second]
            power = (weights @ pair_power.reshape(len(pairs), -1)).reshape(len(candidates), *pair_power.shape[1:])
            return time_band_misfit(power, target_db, floor, per_band=True)

        best = fitted_on_grids(self, BAND_KNOBS, (FIT_COARSE_STEP,) * len(BAND_KNOBS), FIT_REFINEMENT, misfit,
                               predicted_amounts, KNOB_PRIOR_SPREAD)
        if best is None:
            return knobs
        knobs.update({name: float(value) for name, value in zip(BAND_KNOBS, best)})
        return knobs

    def _process(self, audio: np.ndarray, sample_rate: int, knobs: dict[str, float]) -> np.ndarray:
        amounts = np.array([knobs[name] for name in BAND_KNOBS], dtype=np.float32)
        if audio.shape[0] == 0 or not amounts.any():
            return audio.copy()
        return audio + amounts @ band_changes(audio, sample_rate)

"""What the effects' knob measurements share: the long-term average spectrum of a sound,
how far two such spectra are apart once their levels are set aside, and the rule that
weighs a measurement against a parameter model's prediction.

A measured knob is the candidate value with the lowest
``log(misfit / best misfit) + (distance from the prediction / spread)^2 / 2``: the
measurement decides between values the model cannot tell apart, the model between those
the measurement cannot.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

# FFTs of 4096 samples every 1024 (a harmonic's bin stays apart from its neighbours' down
# to about 40 Hz at 44.1 kHz), 60 Hz to 16 kHz, bins floored 80 dB under the target's peak
# (quieter detail is noise to every effect here).
FIT_FFT, FIT_HOP, FIT_BAND_HZ, FIT_FLOOR_DB = 4096, 1024, (60.0, 16000.0), 80.0
# Keeps an exact match (a misfit of 0) finite and first.
MISFIT_FLOOR = 1e-6


def spectrum_bins_hz(sample_rate: int) -> np.ndarray:
    """Centre frequencies, in Hz, of the bins ``average_spectrum_db`` returns."""
    bins = np.fft.rfftfreq(FIT_FFT, 1.0 / sample_rate)
    return bins[(bins >= FIT_BAND_HZ[0]) & (bins <= FIT_BAND_HZ[1])]


def average_spectrum_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean power over time of each FFT bin between ``FIT_BAND_HZ``, in dB."""
    from serumrnn.core.features import framed_rfft

    bins = np.fft.rfftfreq(FIT_FFT, 1.0 / sample_rate)
    inside = (bins >= FIT_BAND_HZ[0]) & (bins <= FIT_BAND_HZ[1])
    power = np.mean(np.square(np.abs(framed_rfft(np.asarray(audio, np.float32), FIT_FFT, FIT_HOP))), axis=0)
    return 10.0 * np.log10(power[inside] + 1e-12)


def spectrum_misfit(candidate_db: np.ndarray, target_db: np.ndarray) -> np.ndarray:
    """Mean absolute dB difference of average spectra (the last axis of
    ``candidate_db``: one spectrum or a stack) from ``target_db`` once each one's median
    difference (a level) is taken out; bins quieter than ``FIT_FLOOR_DB`` below the
    target's peak count as that floor."""
    floor = float(np.max(target_db)) - FIT_FLOOR_DB
    difference = np.maximum(candidate_db, floor) - np.maximum(target_db, floor)
    return np.mean(np.abs(difference - np.median(difference, axis=-1, keepdims=True)), axis=-1)


def most_plausible(misfit: np.ndarray, candidates: np.ndarray, predicted: np.ndarray,
                   spread: float, misfit_floor: float = MISFIT_FLOOR) -> int:
    """Index of the candidate (a row of knob values, or one value per candidate) that
    best trades its ``misfit`` against its distance from the ``predicted`` knobs, in
    units of ``spread``. Only misfit ratios count, so a grid may be refined around an
    earlier winner and scored again on the same footing."""
    misfit = np.asarray(misfit, dtype=np.float64)
    offsets = (np.asarray(candidates, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)) / spread
    distance = np.square(offsets) if offsets.ndim == 1 else np.sum(np.square(offsets), axis=1)
    score = np.log((misfit + misfit_floor) / (np.min(misfit) + misfit_floor)) + 0.5 * distance
    return int(np.argmin(score))


def knob_grid(effect, names: Sequence[str], coarse_steps: Sequence[float], refinement: int,
              around: np.ndarray | None = None) -> np.ndarray:
    """Candidate rows of ``effect``'s knobs ``names`` inside their sampled ranges: a coarse
    grid (``coarse_steps`` in knob units), or, ``around`` a coarse winner, one
    ``refinement`` times finer reaching one coarse step either side."""
    axes = []
    for index, (name, step) in enumerate(zip(names, coarse_steps)):
        ranges = effect.param(name).sample_ranges
        if around is None:
            values = np.concatenate([np.arange(low, high + step / 2, step) for low, high in ranges])
        else:
            values = around[index] + step / refinement * np.arange(-refinement, refinement + 1)
        inside = np.any([(values >= low - 1e-9) & (values <= high + 1e-9) for low, high in ranges], axis=0)
        axes.append(np.round(values[inside], 6))
    return np.array(list(itertools.product(*axes)))

"""What the effects' knob measurements share: the long-term average spectrum of a sound,
how far two such spectra are apart once their levels are set aside, and the rule that
weighs a measurement against a parameter model's prediction.

A measured knob is the candidate value with the lowest
``log(misfit / best misfit) + (distance from the prediction / spread)^2 / 2``: the
measurement decides between values the model cannot tell apart, the model between those
the measurement cannot.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import numpy as np

# FFTs of 4096 samples every 1024 (a harmonic's bin stays apart from its neighbours' down
# to about 40 Hz at 44.1 kHz), 60 Hz to 16 kHz, bins floored 80 dB under the target's peak
# (quieter detail is noise to every effect here).
FIT_FFT, FIT_HOP, FIT_BAND_HZ, FIT_FLOOR_DB = 4096, 1024, (60.0, 16000.0), 80.0
# Keeps an exact match (a misfit of 0) finite and first.
MISFIT_FLOOR = 1e-6
# Fits of how power moves over time (the reverb's tail, the compressor's gains): FFTs of
# 1024 every 512, summed in segments of four frames (about 46 ms at 44.1 kHz: a tail's
# growth and a gain's swing still show) and in 40 log-spaced bands over ``FIT_BAND_HZ``,
# levels floored 60 dB under the target's loudest.
TIME_FIT_FFT, TIME_FIT_HOP, TIME_FIT_BANDS, TIME_FIT_FLOOR_DB = 1024, 512, 40, 60.0
TIME_FIT_FRAMES_PER_SEGMENT = 4
# ``detail_misfit``: changes smooth over half an octave (a filter, a reverb's colour, a
# tilt) are set aside; the difference is smoothed on a log-frequency axis of 400 points.
DETAIL_OCTAVES = 0.5
DETAIL_AXIS_POINTS = 400


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


@functools.lru_cache(maxsize=16)
def log_band_membership(n_fft: int, sample_rate: int, bands: int, low_hz: float, high_hz: float) -> np.ndarray:
    """``(bins, bands)``, 1 where a bin of an ``n_fft``-point FFT falls in one of ``bands``
    log-spaced bands between ``low_hz`` and ``high_hz``: a product with it pools power
    spectra into bands faster than adding bins one by one. Read-only (cached)."""
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band_of_bin = np.digitize(bins, np.geomspace(low_hz, high_hz, bands + 1)) - 1
    membership = (band_of_bin[:, None] == np.arange(bands)[None, :]).astype(np.float64)
    membership.flags.writeable = False
    return membership


@functools.lru_cache(maxsize=16)
def _band_runs(n_fft: int, sample_rate: int, bands: int, low_hz: float,
               high_hz: float) -> tuple[np.ndarray, np.ndarray, int]:
    """For ``pool_bands``: the first bin of each band ``log_band_membership`` fills, which
    bands those are, and the bin after the last band's (a band's bins are adjacent)."""
    membership = log_band_membership(n_fft, sample_rate, bands, low_hz, high_hz)
    filled = np.flatnonzero(membership.sum(axis=0) > 0)
    starts = np.array([np.flatnonzero(membership[:, band])[0] for band in filled])
    return starts, filled, int(np.flatnonzero(membership[:, filled[-1]])[-1]) + 1


def pool_bands(power: np.ndarray, n_fft: int, sample_rate: int, bands: int, low_hz: float,
               high_hz: float) -> np.ndarray:
    """``power @ log_band_membership(...)`` (rows of bins summed into bands, empty bands 0)
    by summing runs of adjacent bins: a matrix product with a 0/1 matrix is slow and erratic
    where a multi-threaded BLAS shares a loaded machine."""
    starts, filled, stop = _band_runs(n_fft, sample_rate, bands, low_hz, high_hz)
    pooled = np.zeros(power.shape[:-1] + (bands,), dtype=power.dtype)
    pooled[..., filled] = np.add.reduceat(power[..., :stop], starts, axis=-1)
    return pooled


def time_band_pool(power: np.ndarray, sample_rate: int) -> np.ndarray:
    """``pool_bands`` of the fits over time."""
    return pool_bands(power, TIME_FIT_FFT, sample_rate, TIME_FIT_BANDS, *FIT_BAND_HZ)


def sum_segments(frames: np.ndarray) -> np.ndarray:
    """Rows of ``frames`` (one per FFT frame) summed per segment of
    ``TIME_FIT_FRAMES_PER_SEGMENT``; the last segment may be shorter."""
    return np.add.reduceat(frames, np.arange(0, len(frames), TIME_FIT_FRAMES_PER_SEGMENT), axis=0)


def time_fit_spectra(sources: Sequence[np.ndarray], target: np.ndarray,
                     sample_rate: int) -> tuple[list[np.ndarray], np.ndarray, float]:
    """The fits over time's spectra of ``sources`` (``framed_rfft``, complex128) and the
    ``target``'s level per segment and band and its floor (``time_band_target_db``), all
    cut to the frames every one of them has."""
    from serumrnn.core.features import framed_rfft

    spectra = [framed_rfft(np.asarray(audio, np.float32), TIME_FIT_FFT, TIME_FIT_HOP) for audio in (*sources, target)]
    frames = min(len(spectrum) for spectrum in spectra)
    target_db, floor = time_band_target_db(spectra.pop()[:frames], sample_rate)
    return [spectrum[:frames].astype(np.complex128) for spectrum in spectra], target_db, floor


def time_band_target_db(target_spectrum: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """A target's level per segment and band, in dB, floored ``TIME_FIT_FLOOR_DB`` under
    its loudest, and that floor; ``target_spectrum`` is its ``framed_rfft``."""
    power = sum_segments(time_band_pool(np.square(np.abs(target_spectrum), dtype=np.float64), sample_rate))
    level_db = 10.0 * np.log10(power + 1e-12)
    floor = float(np.max(level_db)) - TIME_FIT_FLOOR_DB
    return np.maximum(level_db, floor), floor


def time_band_misfit(power: np.ndarray, target_db: np.ndarray, floor: float, *,
                     per_band: bool = False) -> np.ndarray:
    """Mean absolute dB difference of candidates' power per segment and band
    (``(candidates, segments, bands)``) from ``time_band_target_db``'s, each candidate's
    median difference (a level) taken out first; with ``per_band``, each band's median
    over the segments (a static filter's change, as later effects in a chain make), so
    only how each band moves over time counts."""
    difference = np.maximum(10.0 * np.log10(np.maximum(power, 0.0) + 1e-12), floor) - target_db
    if per_band:
        difference -= np.median(difference, axis=1, keepdims=True)
    else:
        difference -= np.median(difference.reshape(len(power), -1), axis=1)[:, None, None]
    return np.mean(np.abs(difference), axis=(1, 2))


def detail_misfit(candidate_db: np.ndarray, target_db: np.ndarray, sample_rate: int) -> np.ndarray:
    """``spectrum_misfit`` with the difference's moving average over ``DETAIL_OCTAVES``
    taken out instead of its median: what is left is the detail of the spectra (where
    the harmonics are and how they stand against their neighbours), which effects later
    in a chain keep while they reshape the broad envelope."""
    from scipy.ndimage import uniform_filter1d

    floor = float(np.max(target_db)) - FIT_FLOOR_DB
    difference = np.atleast_2d(np.maximum(candidate_db, floor) - np.maximum(target_db, floor))
    octave_of_bin = np.log2(spectrum_bins_hz(sample_rate))
    axis = np.linspace(octave_of_bin[0], octave_of_bin[-1], DETAIL_AXIS_POINTS)
    width = max(1, round(DETAIL_OCTAVES / (axis[1] - axis[0])))
    smoothed = uniform_filter1d(np.stack([np.interp(axis, octave_of_bin, row) for row in difference]),
                                width, axis=-1, mode="nearest")
    trend = np.stack([np.interp(octave_of_bin, axis, row) for row in smoothed])
    misfit = np.mean(np.abs(difference - trend), axis=-1)
    return misfit if np.ndim(candidate_db) > 1 else misfit[0]


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


def fitted_on_grids(effect, names: Sequence[str], coarse_steps: Sequence[float], refinement: int,
                    misfit: Callable[[np.ndarray], np.ndarray], predicted: np.ndarray,
                    spread: float) -> np.ndarray | None:
    """The most plausible row of ``effect``'s knobs ``names`` on the coarse ``knob_grid``,
    then on the finer one around that winner, each grid scored by ``misfit`` (rows ->
    misfits) against the ``predicted`` knobs; None when no candidate's misfit is above 0
    (nothing tells them apart)."""
    best = None
    for _ in ("coarse", "fine"):
        grid = knob_grid(effect, names, coarse_steps, refinement, best)
        scores = misfit(grid)
        if not np.max(scores) > 0:
            return None
        best = grid[most_plausible(scores, grid, predicted, spread)]
    return best

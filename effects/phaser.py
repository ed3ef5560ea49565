"""Phaser: pedalboard's swept all-pass phaser with LFO depth, rate and feedback."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import pedalboard

from serumrnn.core.interfaces import Effect, KnobClasses
from serumrnn.core.params import ParamSpec
from serumrnn.effects.spectrum_fit import log_band_membership, most_plausible, pool_bands

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
# The rate hint: spectra of 1024 samples every 256 between 200 Hz and 8 kHz (the notches'
# range around the centre), the three strongest repeat periods, each also 1.5% either side
# (an estimate from about a hundred frames is that close, not closer).
HINT_FFT, HINT_HOP, HINT_BAND_HZ = 1024, 256, (200.0, 8000.0)
HINT_RATES, HINT_SPREAD = 3, 0.015
# The change's pattern (the depth fit's comparison): power spectra of 1024 samples every
# 256, pooled into 40 log-spaced bands between 150 Hz and 10 kHz.
FIT_FFT, FIT_HOP, FIT_BANDS, FIT_BAND_HZ = 1024, 256, 40, (150.0, 10000.0)
# The sweep fit. pedalboard's phaser (JUCE's) is six first-order all-pass stages whose
# output returns, negated and one sample late, to their input, mixed half and half with
# the dry sound. Its cutoff moves on a log scale from 20 Hz to 20 kHz: at time t, at
# position SWEEP_CENTRE - depth / 2 * sin(2 pi rate t) of that scale (clipped). Each frame
# of the change is scored against the response at 121 positions, under 6 feedbacks; each
# candidate LFO (701 rates, 0.43% apart, x 41 depths) sums its frames' scores along its path.
ALLPASS_STAGES = 6
SWEEP_LOW_HZ, SWEEP_HIGH_HZ = 20.0, 20000.0
SWEEP_CENTRE = float(np.log(CENTRE_FREQUENCY_HZ / SWEEP_LOW_HZ) / np.log(SWEEP_HIGH_HZ / SWEEP_LOW_HZ))
SWEEP_POSITIONS = np.linspace(0.0, 1.0, 121)
SWEEP_RATE_KNOBS = np.linspace(0.0, 1.0, 701)
SWEEP_DEPTHS = np.linspace(0.0, 1.0, 41)
SWEEP_FEEDBACKS = np.linspace(0.0, 1.0, 6)
# Every candidate as a row (feedback, rate, depth), in ``sweep_misfit``'s order.
SWEEP_CANDIDATES = np.stack(np.meshgrid(SWEEP_FEEDBACKS, SWEEP_RATE_KNOBS, SWEEP_DEPTHS, indexing="ij"),
                            axis=-1).reshape(-1, 3)
# Cells of the change quieter than this under the loudest, before or after, are noise.
SWEEP_FLOOR_DB = 50.0
# The sweep fit is sharp where it sees the sweep, so the model's knobs weigh little
# (validation split, 53 phaser steps whose target has a phaser: the rate, after the depth
# fit's refinement, within 0.01 of the truth in 77% at 0.85, 70% at 0.2; the model's 13%).
SWEEP_PRIOR_SPREAD = 0.85
# The depth fit, once the rate is measured: the phaser rendered on the sound it starts
# from at 5 depths x 9 rates within 0.02 of the measured one (the depth's match needs the
# rate closer than the rate fit alone places it, and a wrong rate hides the depth), then
# at 21 depths at the best of those rates; each candidate's change pattern against the
# target's (mean squared difference), under a prior of 0.2 of the knob around the
# model's depth and the measured rate.
FIT_COARSE_DEPTHS = np.linspace(0.1, 0.9, 5)
FIT_DEPTHS = np.linspace(0.0, 1.0, 21)
# Last, the feedback at 11 values, the depth and rate as fitted, under the same prior.
FIT_FEEDBACKS = np.linspace(0.0, 1.0, 11)
FIT_RATE_OFFSETS = np.linspace(-0.02, 0.02, 9)
DEPTH_PRIOR_SPREAD = 0.2


def paired_magnitudes(before: np.ndarray, after: np.ndarray, n_fft: int,
                      hop: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Magnitude spectra ``(frames, bins)`` of ``before`` and ``after``, cut to the frames
    both have; None under 8 frames (too short to see a sweep)."""
    from serumrnn.core.features import framed_rfft

    spectra = [np.abs(framed_rfft(np.asarray(audio, np.float32), n_fft, hop)) for audio in (before, after)]
    frames = min(len(spectra[0]), len(spectra[1]))
    return None if frames < 8 else (spectra[0][:frames], spectra[1][:frames])


def lfo_rate_estimates(before: np.ndarray, after: np.ndarray, sample_rate: int,
                       count: int = HINT_RATES) -> list[float]:
    """LFO rates in Hz, most likely first, at which the change from ``before`` to ``after``
    repeats: the peaks of the autocorrelation over time of their log-spectral ratio,
    summed over bins. A phaser's notches sweep at its LFO rate, and static effects on
    either side (filters, shapers) change the ratio the same way in every frame."""
    spectra = paired_magnitudes(before, after, HINT_FFT, HINT_HOP)
    if spectra is None:
        return []
    frames = len(spectra[0])
    bins = np.fft.rfftfreq(HINT_FFT, 1.0 / sample_rate)
    band = (bins > HINT_BAND_HZ[0]) & (bins < HINT_BAND_HZ[1])
    ratio = np.log(spectra[1][:frames, band] + 1e-6) - np.log(spectra[0][:frames, band] + 1e-6)
    ratio -= ratio.mean(axis=0)
    power = np.abs(np.fft.rfft(ratio, n=2 * frames, axis=0)) ** 2
    correlation = np.fft.irfft(power, axis=0)[:frames].sum(axis=1)
    if correlation[0] <= 0:  # the change is the same in every frame: nothing repeats
        return []
    correlation = correlation / correlation[0] / (1.0 - np.arange(frames) / frames)  # unbiased
    frame_rate = sample_rate / HINT_HOP
    shortest = max(int(frame_rate / (MAX_RATE_HZ * 1.05)), 1)
    # a period is trusted over two thirds of the sound at most (fewer frames overlap beyond)
    window = correlation[shortest: min(int(frame_rate / (MIN_RATE_HZ * 0.9)), frames * 2 // 3)]
    peaks = []
    for i in range(1, len(window) - 1):
        left, middle, right = window[i - 1: i + 2]
        if middle > left and middle >= right:
            curvature = left - 2 * middle + right
            offset = 0.5 * (left - right) / curvature if curvature else 0.0  # parabolic peak
            peaks.append((middle, frame_rate / (shortest + i + offset)))
    peaks.sort(reverse=True)
    return [rate for _, rate in peaks[:count]]


def pooled_band_power(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Power of each frame (``FIT_FFT`` every ``FIT_HOP``) summed into ``FIT_BANDS``
    log-spaced bands across ``FIT_BAND_HZ``: float64 ``(frames, FIT_BANDS)``."""
    from serumrnn.core.features import framed_rfft

    power = np.square(np.abs(framed_rfft(np.asarray(audio, np.float32), FIT_FFT, FIT_HOP)), dtype=np.float64)
    return pool_bands(power, FIT_FFT, sample_rate, FIT_BANDS, *FIT_BAND_HZ)


def change_pattern(before_power: np.ndarray, after_power: np.ndarray) -> np.ndarray | None:
    """How a change moves over time and frequency: the log ratio of two
    ``pooled_band_power`` results over the frames both have, less its mean per frame (a
    level, a compressor) and per band (a static filter). None under 8 frames (too short
    to see a sweep)."""
    frames = min(len(before_power), len(after_power))
    if frames < 8:
        return None
    ratio = np.log(after_power[:frames] + 1e-8) - np.log(before_power[:frames] + 1e-8)
    ratio -= ratio.mean(axis=1, keepdims=True)
    ratio -= ratio.mean(axis=0, keepdims=True)
    return ratio


def phaser_power_response(frequencies_hz: np.ndarray, cutoffs_hz: np.ndarray, feedback_knob: float,
                          sample_rate: int) -> np.ndarray:
    """Power gain ``(cutoffs, frequencies)`` of the phaser held at each cutoff (see
    ``ALLPASS_STAGES``), before its output trim."""
    delay = np.exp(-2j * np.pi * np.asarray(frequencies_hz) / sample_rate)[None, :]
    warped = np.tan(np.pi * np.minimum(np.asarray(cutoffs_hz, np.float64), 0.49 * sample_rate) / sample_rate)[:, None]
    stages = (((warped - 1.0) + (warped + 1.0) * delay) / ((warped + 1.0) + (warped - 1.0) * delay)) ** ALLPASS_STAGES
    wet = stages / (1.0 + MAX_FEEDBACK * feedback_knob * delay * stages)
    return np.square(np.abs((1.0 - MIX) + MIX * wet))


@functools.lru_cache(maxsize=2)
def sweep_paths(frames: int, sample_rate: int, rate_range_hz: tuple[float, float]) -> np.ndarray:
    """Where each candidate LFO's cutoff is at each frame, as a flat index into a
    ``(SWEEP_POSITIONS, frames)`` array: int32 ``(SWEEP_DEPTHS, SWEEP_RATE_KNOBS, frames)``,
    the rate knobs on a log scale over ``rate_range_hz``. Read-only (cached: about 20 MB
    for a one-second note)."""
    low, high = rate_range_hz
    rates_hz = low * (high / low) ** SWEEP_RATE_KNOBS
    times = np.arange(frames) * FIT_HOP / sample_rate  # frames are centred
    sines = np.sin(2.0 * np.pi * rates_hz[:, None] * times[None, :])
    positions = np.clip(SWEEP_CENTRE - 0.5 * SWEEP_DEPTHS[:, None, None] * sines[None], 0.0, 1.0)
    paths = np.rint(positions * (len(SWEEP_POSITIONS) - 1)).astype(np.int32) * frames + np.arange(frames, dtype=np.int32)
    paths.flags.writeable = False
    return paths


def sweep_misfit(before: np.ndarray, after: np.ndarray, sample_rate: int,
                 rate_range_hz: tuple[float, float]) -> np.ndarray | None:
    """How badly each candidate phaser explains the change from ``before`` to ``after``:
    ``(SWEEP_FEEDBACKS, SWEEP_RATE_KNOBS, SWEEP_DEPTHS)``, the summed squared difference, over
    frames and bands, between the change's log power and the response along the
    candidate's path, less a level per frame (a compressor, a gain) and a static shape per
    band (a filter, a distortion's colour; estimated along the best path, then scored
    again). None under 8 frames or where either sound is silent."""
    from serumrnn.core.features import framed_rfft

    filled = log_band_membership(FIT_FFT, sample_rate, FIT_BANDS, *FIT_BAND_HZ).sum(axis=0) > 0  # not under a bin

    def pooled(power: np.ndarray) -> np.ndarray:
        return pool_bands(power, FIT_FFT, sample_rate, FIT_BANDS, *FIT_BAND_HZ)[..., filled]

    before_power, after_power = (np.square(np.abs(framed_rfft(np.asarray(audio, np.float32), FIT_FFT, FIT_HOP)),
                                           dtype=np.float64) for audio in (before, after))
    frames = min(len(before_power), len(after_power))
    if frames < 8:
        return None
    before_power = before_power[:frames]
    before_bands, after_bands = pooled(before_power), pooled(after_power[:frames])
    if not (before_bands.max() > 0 and after_bands.max() > 0):  # silence holds no sweep
        return None
    before_db, after_db = (10.0 * np.log10(bands + 1e-12) for bands in (before_bands, after_bands))
    weight = ((before_db > before_db.max() - SWEEP_FLOOR_DB)
              & (after_db > after_db.max() - SWEEP_FLOOR_DB)).astype(np.float64)
    frame_weight = weight.sum(axis=1) + 1e-9
    change = np.log(after_bands + 1e-12) - np.log(before_bands + 1e-12)
    # the response pooled as the sound's own bins are: a harmonic sound fills few bins
    bin_weight = before_power.mean(axis=0)
    bins_hz = np.fft.rfftfreq(FIT_FFT, 1.0 / sample_rate)
    cutoffs_hz = SWEEP_LOW_HZ * (SWEEP_HIGH_HZ / SWEEP_LOW_HZ) ** SWEEP_POSITIONS
    paths = sweep_paths(frames, sample_rate, rate_range_hz)
    misfits = []
    for feedback in SWEEP_FEEDBACKS:
        response = phaser_power_response(bins_hz, cutoffs_hz, float(feedback), sample_rate)
        response_log = np.log(pooled(response * bin_weight) + 1e-30) - np.log(pooled(bin_weight) + 1e-30)
        shape = np.zeros(change.shape[1])
        for _ in range(2):
            residual = change[:, None, :] - shape - response_log[None]  # (frames, positions, bands)
            level = np.einsum("fpb,fb->fp", residual, weight) / frame_weight[:, None]
            cost = np.einsum("fpb,fb->fp", np.square(residual - level[:, :, None]), weight)
            # float32 halves the memory the gather moves; the sums stay float64
            total = np.take(cost.T.astype(np.float32).ravel(), paths).sum(axis=-1, dtype=np.float64).T  # (rates, depths)
            best_path = paths[np.unravel_index(np.argmin(total), total.shape)[::-1]] // frames
            along = change - response_log[best_path] - level[np.arange(frames), best_path][:, None]
            shape = np.sum(along * weight, axis=0) / (weight.sum(axis=0) + 1e-9)
        misfits.append(total)
    return np.stack(misfits)


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
            # the sweep lines up with the target's only near the true rate (a narrow basin)
            scan_points=41,
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

    def knob_hints(self, before: np.ndarray, after: np.ndarray, sample_rate: int) -> dict[str, list[float]]:
        """Rate knob values at the LFO rates estimated from the change, most likely first,
        then each 1.5% either side."""
        spec = self.param("rate")
        rates = lfo_rate_estimates(before, after, sample_rate)
        knobs = [spec.knob_at(rate * factor)
                 for factor in (1.0, 1.0 - HINT_SPREAD, 1.0 + HINT_SPREAD) for rate in rates]
        return {"rate": [knob for knob in knobs if 0.0 <= knob <= 1.0]}

    def measured_knobs(self, before: np.ndarray, after: np.ndarray, sample_rate: int,
                       predicted: Mapping[str, float],
                       classes: KnobClasses | None = None) -> dict[str, float]:
        """``predicted`` with the rate of the LFO whose sweep best explains the change
        (``sweep_misfit``, weighed against the distance from the predicted knobs), then the
        depth, and the rate refined, by rendering (``_fitted_depth``): a model reads the rate
        to about 15% of the knob's range, but the sweep lines up with the target's only
        within a few percent of the true rate. Without a change that moves over time (a
        static filter at most), the prediction stands."""
        knobs = dict(predicted)
        if not {"rate", "depth", "feedback"} <= knobs.keys():
            return knobs
        before_power = pooled_band_power(before, sample_rate)
        target = change_pattern(before_power, pooled_band_power(after, sample_rate))
        if target is None or float(np.max(np.abs(target))) < 1e-4:
            return knobs
        spec = self.param("rate")
        misfit = sweep_misfit(before, after, sample_rate, (spec.physical(0.0), spec.physical(1.0)))
        if misfit is None or not np.min(misfit) > 0:
            return knobs
        prior = np.array([knobs["feedback"], knobs["rate"], knobs["depth"]])
        best = most_plausible(misfit.ravel(), SWEEP_CANDIDATES, prior, SWEEP_PRIOR_SPREAD, misfit_floor=0.0)
        knobs["rate"] = float(SWEEP_CANDIDATES[best, 1])
        return self._fitted_depth(before, before_power, target, sample_rate, knobs)

    def _fitted_depth(self, before: np.ndarray, before_power: np.ndarray, target: np.ndarray, sample_rate: int,
                      knobs: dict[str, float]) -> dict[str, float]:
        """``knobs`` (the rate measured) with the depth, and the rate refined, then the
        feedback, whose phased ``before`` (pooled: ``before_power``) changes over time as the
        target does (its ``change_pattern``: ``target``; ``FIT_DEPTHS``, ``FIT_RATE_OFFSETS``,
        ``FIT_FEEDBACKS``)."""
        prior = np.array([knobs["depth"], knobs["rate"], knobs["feedback"]])

        def misfit(candidate: dict[str, float]) -> float:
            pattern = change_pattern(before_power, pooled_band_power(self.process(before, sample_rate, candidate),
                                                                     sample_rate))
            frames = min(len(pattern), len(target))
            return float(np.mean(np.square(pattern[:frames] - target[:frames])))

        def best(candidates: list[dict[str, float]]) -> dict[str, float]:
            scores = np.array([misfit(candidate) for candidate in candidates])
            rows = np.array([[candidate["depth"], candidate["rate"], candidate["feedback"]] for candidate in candidates])
            return candidates[most_plausible(scores, rows, prior, DEPTH_PRIOR_SPREAD)]

        fitted = best([{**knobs, "depth": float(depth), "rate": float(np.clip(knobs["rate"] + offset, 0.0, 1.0))}
                       for depth in FIT_COARSE_DEPTHS for offset in FIT_RATE_OFFSETS])
        fitted = best([{**fitted, "depth": float(depth)} for depth in FIT_DEPTHS])
        return best([{**fitted, "feedback": float(feedback)} for feedback in FIT_FEEDBACKS])

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

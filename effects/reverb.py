"""Hall reverb: pedalboard's large-room reverb with low and high cut on the wet signal.

The tail is cut at the input's length, as for every effect of the rack.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pedalboard

from serumrnn.core.interfaces import Effect, KnobClasses
from serumrnn.core.params import ParamSpec
from serumrnn.effects.filters import butterworth_sos, sos_response, sosfilt
from serumrnn.effects.spectrum_fit import (
    TIME_FIT_FFT,
    fitted_on_grids,
    sum_segments,
    time_band_pool,
    time_band_misfit,
    time_fit_spectra,
)

ROOM_SIZE = 0.9  # hall
DAMPING = 0.4
# pedalboard's reverb at wet level 1 is louder than its input; this brings it near the
# dry level so the mix knob trades timbre, not loudness.
WET_TRIM = 0.5
MIN_LOW_CUT_HZ, MAX_LOW_CUT_HZ = 20.0, 1000.0
MIN_HIGH_CUT_HZ, MAX_HIGH_CUT_HZ = 1000.0, 20000.0
# The fit: the hall's wet sound is rendered once; its cuts are linear filters and the mix
# a weighted sum, so each candidate's power per segment and band (``spectrum_fit``'s fits
# over time: how fast the tail builds tells the mix, which bands it fills the cuts)
# follows from the dry and wet spectra without rendering:
# |a X + b H W|^2 = a^2 |X|^2 + b^2 |H|^2 |W|^2 + 2ab Re(conj(X) H W), summed over each band's bins.
# Each band's level is set aside (``per_band``): how fast the tail builds in each band
# tells the cuts apart, and it survives the filters and shapers that follow in a chain.
FIT_KNOBS = ("mix", "low_cut", "high_cut")
# A coarse grid over the sampled ranges (these steps in knob units), then one twice as
# fine, one coarse step either side of its winner.
FIT_COARSE_STEPS = (0.05, 0.1, 0.1)
FIT_REFINEMENT = 2
# How far, in knob units, the fitted knobs may stray from the model's.
KNOB_PRIOR_SPREAD = 0.2


def _hall(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The hall's wet signal, before the cuts and the mix."""
    hall = pedalboard.Reverb(room_size=ROOM_SIZE, damping=DAMPING, wet_level=1.0, dry_level=0.0, width=1.0)
    return hall.process(audio, sample_rate, reset=True)


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

    def measured_knobs(self, before: np.ndarray, after: np.ndarray, sample_rate: int,
                       predicted: Mapping[str, float],
                       classes: KnobClasses | None = None) -> dict[str, float]:
        """``predicted`` with the mix and cuts whose reverb of ``before`` has the power over
        time and frequency closest to ``after``'s (each band's level aside), weighed against
        their distance from the predicted knobs (``KNOB_PRIOR_SPREAD``): how fast the tail
        builds and which bands it fills tell mix and cuts apart more exactly than the
        features a model reads."""
        knobs = dict(predicted)
        if any(name not in knobs for name in FIT_KNOBS) or min(len(before), len(after)) < TIME_FIT_FFT:
            return knobs
        before = np.ascontiguousarray(before, dtype=np.float32)
        (dry, wet), target_db, floor = time_fit_spectra((before, _hall(before, sample_rate)), after, sample_rate)
        bins_hz = np.fft.rfftfreq(TIME_FIT_FFT, 1.0 / sample_rate)
        # Sums over time commute with the per-bin products below: pool the frames first.
        dry_power = sum_segments(time_band_pool(np.square(np.abs(dry)), sample_rate))
        wet_power = sum_segments(np.square(np.abs(wet)))
        cross = sum_segments(np.conj(dry) * wet)
        predicted_knobs = np.array([knobs[name] for name in FIT_KNOBS])

        def misfit(candidates: np.ndarray) -> np.ndarray:
            cuts, pair_of_row = np.unique(candidates[:, 1:], axis=0, return_inverse=True)
            response = np.stack([self._cut_response(pair, bins_hz, sample_rate) for pair in cuts])  # (pairs, bins)
            # every pair's pooled wet power and dry-wet cross term at once: (pairs, frames, bands)
            wet_band = time_band_pool(wet_power[None] * np.square(np.abs(response))[:, None, :], sample_rate)
            cross_band = time_band_pool(cross.real[None] * response.real[:, None, :]
                                        - cross.imag[None] * response.imag[:, None, :], sample_rate)
            dry_gain = (1.0 - candidates[:, 0])[:, None, None]
            wet_gain = (WET_TRIM * candidates[:, 0])[:, None, None]
            pair_of_row = pair_of_row.reshape(-1)
            power = (dry_gain**2 * dry_power + wet_gain**2 * wet_band[pair_of_row]
                     + 2.0 * dry_gain * wet_gain * cross_band[pair_of_row])
            return time_band_misfit(power, target_db, floor, per_band=True)

        best = fitted_on_grids(self, FIT_KNOBS, FIT_COARSE_STEPS, FIT_REFINEMENT, misfit, predicted_knobs,
                               KNOB_PRIOR_SPREAD)
        if best is None:
            return knobs
        knobs.update({name: float(value) for name, value in zip(FIT_KNOBS, best)})
        return knobs

    def _cuts(self, low_cut: float, high_cut: float, sample_rate: int) -> np.ndarray:
        """The wet signal's high-pass and low-pass sections (``butterworth_sos`` clamps
        both cut-offs below Nyquist)."""
        return np.concatenate([
            butterworth_sos(self.param("low_cut").physical(low_cut), sample_rate, "highpass"),
            butterworth_sos(self.param("high_cut").physical(high_cut), sample_rate, "lowpass"),
        ])

    def _cut_response(self, cuts: np.ndarray, bins_hz: np.ndarray, sample_rate: int) -> np.ndarray:
        return sos_response(self._cuts(float(cuts[0]), float(cuts[1]), sample_rate), bins_hz, sample_rate)

    def _process(self, audio: np.ndarray, sample_rate: int, knobs: dict[str, float]) -> np.ndarray:
        if audio.shape[0] == 0:
            return audio.copy()
        wet = _hall(audio, sample_rate)
        cuts = self._cuts(knobs["low_cut"], knobs["high_cut"], sample_rate)
        wet = sosfilt(cuts.astype(np.float32), wet)  # float32 in and out
        mix = knobs["mix"]
        return np.float32(1.0 - mix) * audio + np.float32(mix * WET_TRIM) * wet

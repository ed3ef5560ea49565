"""Filter helpers shared by the built-in effects.

``scipy.signal`` takes most of a second to import, so it is imported on first use: the
listing commands load every effect and must answer quickly.
"""

from __future__ import annotations

import math

import numpy as np


def lfilter(numerator: np.ndarray, denominator: np.ndarray, signal: np.ndarray, **kwargs):
    """``scipy.signal.lfilter``, imported lazily."""
    from scipy.signal import lfilter as scipy_lfilter

    return scipy_lfilter(numerator, denominator, signal, **kwargs)


def sosfilt(sos: np.ndarray, signal: np.ndarray, **kwargs):
    """``scipy.signal.sosfilt``, imported lazily."""
    from scipy.signal import sosfilt as scipy_sosfilt

    return scipy_sosfilt(sos, signal, **kwargs)


def butterworth_sos(cutoff_hz: float, sample_rate: int, btype: str, sections: int = 1) -> np.ndarray:
    """Second-order sections of a Butterworth-Q biquad (RBJ cookbook), repeated.

    ``scipy.signal.butter`` costs about 0.4 ms per design, more than the filtering itself,
    so the biquad is computed directly. Two identical sections give a Linkwitz-Riley
    (24 dB/octave) filter.

    Parameters
    ----------
    cutoff_hz: cutoff frequency; clamped below Nyquist.
    sample_rate: Hz.
    btype: ``"lowpass"`` or ``"highpass"``.
    sections: how many identical sections to cascade.

    Returns
    -------
    float64 array, shape ``(sections, 6)``, for ``scipy.signal.sosfilt``.
    """
    cutoff_hz = min(max(float(cutoff_hz), 1.0), 0.49 * sample_rate)
    omega = 2.0 * math.pi * cutoff_hz / sample_rate
    cos_w, alpha = math.cos(omega), math.sin(omega) / (2.0 * math.sqrt(0.5))
    if btype == "lowpass":
        b = [(1.0 - cos_w) / 2.0, 1.0 - cos_w, (1.0 - cos_w) / 2.0]
    elif btype == "highpass":
        b = [(1.0 + cos_w) / 2.0, -(1.0 + cos_w), (1.0 + cos_w) / 2.0]
    else:
        raise ValueError(f"unknown filter type {btype!r}")
    a0 = 1.0 + alpha
    section = [b[0] / a0, b[1] / a0, b[2] / a0, 1.0, -2.0 * cos_w / a0, (1.0 - alpha) / a0]
    return np.tile(np.asarray(section, dtype=np.float64), (sections, 1))


def sos_response(sos: np.ndarray, frequencies_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Complex frequency response of second-order sections at ``frequencies_hz`` (what
    ``scipy.signal.sosfreqz`` gives, without importing scipy)."""
    delay = np.exp(-2j * np.pi * np.asarray(frequencies_hz, np.float64) / sample_rate)
    response = np.ones_like(delay)
    for b0, b1, b2, a0, a1, a2 in np.asarray(sos, np.float64):
        response *= (b0 + b1 * delay + b2 * delay**2) / (a0 + a1 * delay + a2 * delay**2)
    return response

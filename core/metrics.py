"""The six distance metrics of DESIGN section 5 (lower is closer, except PCC).

Feature metrics take dB mels / MFCCs of shape ``(..., n_bins, n_frames)`` and return
one value per leading index; MSSMAE takes audio ``(..., n_samples)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serumrnn.core.features import Features

METRICS: tuple[str, ...] = ("mse", "mae", "lsd", "mfccd", "pcc", "mssmae")
LOWER_IS_BETTER: Mapping[str, bool] = {name: name != "pcc" for name in METRICS}
# Reported tables multiply these by 100 (paper convention).
TABLE_SCALE: Mapping[str, float] = {"mse": 100.0, "mae": 100.0, "lsd": 1.0, "mfccd": 1.0, "pcc": 100.0, "mssmae": 100.0}
MSS_FFT_SIZES: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
MSS_LOG_WEIGHT = 0.1
MSS_EPSILON = 1e-10


def mse(norm_mel_a: np.ndarray, norm_mel_b: np.ndarray) -> np.ndarray:
    """Mean squared difference of normalised dB mels."""
    return np.mean((np.asarray(norm_mel_a, np.float64) - norm_mel_b) ** 2, axis=(-2, -1))


def mae(norm_mel_a: np.ndarray, norm_mel_b: np.ndarray) -> np.ndarray:
    """Mean absolute difference of normalised dB mels."""
    return np.mean(np.abs(np.asarray(norm_mel_a, np.float64) - norm_mel_b), axis=(-2, -1))


def lsd(db_mel_a: np.ndarray, db_mel_b: np.ndarray) -> np.ndarray:
    """Log-spectral distance in dB: mean over frames of the RMS difference over bins."""
    diff = np.asarray(db_mel_a, np.float64) - db_mel_b
    return np.mean(np.sqrt(np.mean(diff**2, axis=-2)), axis=-1)


def mfccd(mfcc_a: np.ndarray, mfcc_b: np.ndarray) -> np.ndarray:
    """Mean over frames of the Euclidean distance between MFCC vectors."""
    diff = np.asarray(mfcc_a, np.float64) - mfcc_b
    return np.mean(np.sqrt(np.sum(diff**2, axis=-2)), axis=-1)


def pcc(db_mel_a: np.ndarray, db_mel_b: np.ndarray) -> np.ndarray:
    """Pearson correlation of the flattened dB mels (0 where either is constant)."""
    a = np.asarray(db_mel_a, np.float64)
    b = np.asarray(db_mel_b, np.float64)
    a = a.reshape(a.shape[:-2] + (-1,))
    b = b.reshape(b.shape[:-2] + (-1,))
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denominator = np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, np.sum(a * b, axis=-1) / np.where(denominator > 0, denominator, 1), 0.0)


def magnitude_spectrogram(audio: np.ndarray, n_fft: int) -> np.ndarray:
    """|STFT| with a Hann window, hop n_fft/4 (75% overlap), centred; ``(..., bins, frames)``."""
    import librosa

    return np.abs(librosa.stft(np.asarray(audio, np.float32), n_fft=n_fft, hop_length=n_fft // 4))


def mssmae(audio_a: np.ndarray, audio_b: np.ndarray, fft_sizes: tuple[int, ...] = MSS_FFT_SIZES) -> np.ndarray:
    """Multi-scale spectral MAE: mean over FFT sizes of
    MAE(S, S^) + 0.1 * MAE(log(S + 1e-10), log(S^ + 1e-10))."""
    terms = []
    for n_fft in fft_sizes:
        spec_a = magnitude_spectrogram(audio_a, n_fft).astype(np.float64)
        spec_b = magnitude_spectrogram(audio_b, n_fft).astype(np.float64)
        linear = np.mean(np.abs(spec_a - spec_b), axis=(-2, -1))
        log = np.mean(np.abs(np.log(spec_a + MSS_EPSILON) - np.log(spec_b + MSS_EPSILON)), axis=(-2, -1))
        terms.append(linear + MSS_LOG_WEIGHT * log)
    return np.mean(terms, axis=0)


def all_metrics(
    features_a: Features, features_b: Features, audio_a: np.ndarray, audio_b: np.ndarray
) -> dict[str, float]:
    """All six metrics between A (an output) and B (the target), as plain floats."""
    return {
        "mse": float(mse(features_a.norm_mel, features_b.norm_mel)),
        "mae": float(mae(features_a.norm_mel, features_b.norm_mel)),
        "lsd": float(lsd(features_a.db_mel, features_b.db_mel)),
        "mfccd": float(mfccd(features_a.mfcc, features_b.mfcc)),
        "pcc": float(pcc(features_a.db_mel, features_b.db_mel)),
        "mssmae": float(mssmae(audio_a, audio_b)),
    }


def improvement(before: float, after: float, metric: str) -> float:
    """Positive when ``after`` is closer to the target than ``before``."""
    return (before - after) if LOWER_IS_BETTER[metric] else (after - before)

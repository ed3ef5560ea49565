"""The six distance metrics (docs/design.md, Conventions: "Features and metrics"); lower is closer, except PCC.

Feature metrics take dB mels / MFCCs of shape ``(..., n_bins, n_frames)`` and return
one value per leading index; MSSMAE takes audio ``(..., n_samples)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serumrnn.core.features import Features, framed_rfft

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


def _magnitude_frames_first(audio: np.ndarray, n_fft: int) -> np.ndarray:
    """|STFT| with a Hann window, hop n_fft/4 (75% overlap), centred; ``(..., frames, bins)``."""
    return np.abs(framed_rfft(audio, n_fft, n_fft // 4))


def magnitude_spectrogram(audio: np.ndarray, n_fft: int) -> np.ndarray:
    """|STFT| with a Hann window, hop n_fft/4 (75% overlap), centred; ``(..., bins, frames)``."""
    return _magnitude_frames_first(audio, n_fft).swapaxes(-1, -2)


def mss_spectra(audio: np.ndarray, fft_sizes: tuple[int, ...] = MSS_FFT_SIZES) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per FFT size, the magnitude spectrogram S and log(S + 1e-10) used by MSSMAE."""
    spectra = []
    for n_fft in fft_sizes:
        # Frames-first layout straight from the FFT: the means below do not care.
        magnitude = _magnitude_frames_first(audio, n_fft)
        spectra.append((magnitude, np.log(magnitude + MSS_EPSILON)))
    return spectra


def mssmae_from_spectra(
    spectra_a: list[tuple[np.ndarray, np.ndarray]], spectra_b: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """MSSMAE from precomputed ``mss_spectra`` (lets a session compute the target's once)."""
    terms = []
    for (linear_a, log_a), (linear_b, log_b) in zip(spectra_a, spectra_b):
        linear = np.mean(np.abs(linear_a - linear_b), axis=(-2, -1), dtype=np.float64)
        log = np.mean(np.abs(log_a - log_b), axis=(-2, -1), dtype=np.float64)
        terms.append(linear + MSS_LOG_WEIGHT * log)
    return np.mean(terms, axis=0)


def mssmae_to(audio: np.ndarray, spectra_b: list[tuple[np.ndarray, np.ndarray]],
              fft_sizes: tuple[int, ...] = MSS_FFT_SIZES) -> float:
    """``mssmae_from_spectra(mss_spectra(audio), spectra_b)`` for one sound, bit for bit,
    a third faster: the same operations in place, without keeping the spectra (a session's
    search scores many candidates against one target)."""
    terms = []
    for n_fft, (linear_b, log_b) in zip(fft_sizes, spectra_b):
        magnitude = _magnitude_frames_first(audio, n_fft)
        difference = np.subtract(magnitude, linear_b)
        np.abs(difference, out=difference)
        linear = np.mean(difference, axis=(-2, -1), dtype=np.float64)
        np.add(magnitude, MSS_EPSILON, out=magnitude)
        np.log(magnitude, out=magnitude)
        np.subtract(magnitude, log_b, out=magnitude)
        np.abs(magnitude, out=magnitude)
        terms.append(linear + MSS_LOG_WEIGHT * np.mean(magnitude, axis=(-2, -1), dtype=np.float64))
    return float(np.mean(terms, axis=0))


def mssmae(audio_a: np.ndarray, audio_b: np.ndarray, fft_sizes: tuple[int, ...] = MSS_FFT_SIZES) -> np.ndarray:
    """Multi-scale spectral MAE: mean over FFT sizes of
    MAE(S, S^) + 0.1 * MAE(log(S + 1e-10), log(S^ + 1e-10))."""
    return mssmae_from_spectra(mss_spectra(audio_a, fft_sizes), mss_spectra(audio_b, fft_sizes))


class MetricReference:
    """A target whose features and multi-scale spectra are computed once, to measure
    many outputs against it (a session measures every step against one target)."""

    def __init__(self, audio: np.ndarray, features: Features) -> None:
        self.audio = audio
        self.features = features
        self.spectra = mss_spectra(audio)

    def compare(self, audio: np.ndarray, features: Features, *, mssmae: float | None = None) -> dict[str, float]:
        """All six metrics of an output against this target (``mssmae``: its MSSMAE when
        already computed by ``score``, which gives the same value)."""
        values = feature_metrics(features, self.features)
        values["mssmae"] = self.score("mssmae", audio) if mssmae is None else float(mssmae)
        return values

    def score(self, metric: str, audio: np.ndarray, features: Features | None = None) -> float:
        """One metric of an output against this target, computing only what it needs:
        MSSMAE needs the audio alone, the others ``features``."""
        if metric == "mssmae":
            return mssmae_to(np.asarray(audio, dtype=np.float32), self.spectra)
        function, field = FEATURE_METRICS[metric]
        if features is None:
            raise ValueError(f"metric {metric} needs the output's features")
        return float(function(getattr(features, field), getattr(self.features, field)))


# The feature metrics (all but MSSMAE), in METRICS order: function and the Features field it reads.
FEATURE_METRICS = {"mse": (mse, "norm_mel"), "mae": (mae, "norm_mel"), "lsd": (lsd, "db_mel"),
                   "mfccd": (mfccd, "mfcc"), "pcc": (pcc, "db_mel")}


def feature_metrics(features_a: Features, features_b: Features) -> dict[str, float]:
    """The five feature metrics (all but MSSMAE) as plain floats."""
    return {name: float(function(getattr(features_a, field), getattr(features_b, field)))
            for name, (function, field) in FEATURE_METRICS.items()}


def all_metrics(
    features_a: Features, features_b: Features, audio_a: np.ndarray, audio_b: np.ndarray
) -> dict[str, float]:
    """All six metrics between A (an output) and B (the target), as plain floats."""
    return MetricReference(audio_b, features_b).compare(audio_a, features_a)


def improvement(before: float, after: float, metric: str) -> float:
    """Positive when ``after`` is closer to the target than ``before``."""
    return (before - after) if LOWER_IS_BETTER[metric] else (after - before)


def closer_pct(before: float, after: float, metric: str) -> float:
    """How much closer ``after`` is than ``before``, in percent of ``before``'s distance
    (0 when ``before`` is 0: nothing is left to close)."""
    return 100.0 * improvement(before, after, metric) / abs(before) if before else 0.0

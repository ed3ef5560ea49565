import numpy as np
import pytest

from serumrnn.core import metrics

A = np.zeros((2, 2))  # (bins, frames)
B = np.array([[1.0, 3.0], [0.0, 0.0]])


def test_mse_mae_by_hand():
    assert metrics.mse(A, B) == pytest.approx((1 + 9) / 4)
    assert metrics.mae(A, B) == pytest.approx((1 + 3) / 4)


def test_lsd_by_hand():
    # frame 0: rms([1, 0]) = sqrt(0.5); frame 1: rms([3, 0]) = sqrt(4.5)
    assert metrics.lsd(A, B) == pytest.approx((np.sqrt(0.5) + np.sqrt(4.5)) / 2)


def test_mfccd_by_hand():
    # frame distances 1 and 3
    assert metrics.mfccd(A, B) == pytest.approx(2.0)


def test_pcc_by_hand():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert metrics.pcc(a, 2 * a + 1) == pytest.approx(1.0)
    assert metrics.pcc(a, -a) == pytest.approx(-1.0)
    # flattened [1, 2, 3, 4] vs [1, 3, 2, 4]: covariance 4, variances 5 -> 0.8
    assert metrics.pcc(a, np.array([[1.0, 3.0], [2.0, 4.0]])) == pytest.approx(0.8)
    assert metrics.pcc(a, np.ones((2, 2))) == 0.0  # constant: defined as 0, not NaN


def test_feature_metrics_are_vectorised_over_a_batch(rng):
    a = rng.normal(size=(5, 8, 7))
    b = rng.normal(size=(5, 8, 7))
    for function in (metrics.mse, metrics.mae, metrics.lsd, metrics.mfccd, metrics.pcc):
        batch = function(a, b)
        assert batch.shape == (5,)
        np.testing.assert_allclose(batch, [function(x, y) for x, y in zip(a, b)])


def test_mssmae_zero_on_identical_and_analytic_on_doubled(rng):
    noise = rng.normal(size=8192).astype(np.float32)
    assert metrics.mssmae(noise, noise) == 0.0
    # S(2x) = 2 S(x): linear term is mean(S), log term is log 2 wherever S >> 1e-10
    expected = np.mean([metrics.magnitude_spectrogram(noise, n).mean() for n in metrics.MSS_FFT_SIZES]) + 0.1 * np.log(2)
    assert metrics.mssmae(noise, 2 * noise) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("n_fft", metrics.MSS_FFT_SIZES)
def test_magnitude_spectrogram_equals_librosa_stft(rng, n_fft):
    import librosa

    audio = rng.normal(size=(2, 5000)).astype(np.float32)
    expected = np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=n_fft // 4))
    np.testing.assert_allclose(metrics.magnitude_spectrogram(audio, n_fft), expected, rtol=1e-4, atol=1e-4)


def test_mssmae_uses_75_percent_overlap():
    spectrogram = metrics.magnitude_spectrogram(np.zeros(1024, np.float32), 256)
    assert spectrogram.shape == (129, 1 + 1024 // 64)


def test_improvement_sign():
    assert metrics.improvement(2.0, 1.0, "mse") == 1.0
    assert metrics.improvement(0.5, 0.9, "pcc") == pytest.approx(0.4)


def test_all_metrics_between_features(tone):
    from serumrnn.core.features import LibrosaFeatureExtractor

    extractor = LibrosaFeatureExtractor()
    features = extractor.extract(tone)
    same = metrics.all_metrics(features, features, tone, tone)
    assert same["mse"] == 0 and same["lsd"] == 0 and same["mssmae"] == 0
    assert same["pcc"] == pytest.approx(1.0)
    quieter = 0.25 * tone
    other = metrics.all_metrics(extractor.extract(quieter), features, quieter, tone)
    assert all(other[name] > 0 for name in ("mse", "mae", "lsd", "mfccd", "mssmae"))
    assert list(other) == list(metrics.METRICS)

import librosa
import numpy as np
import pytest

from serumrnn.core.features import DEFAULT_SETTINGS, FeatureSettings, LibrosaFeatureExtractor, _mel_basis, power_to_db


def test_shapes_and_settings(tone):
    features = LibrosaFeatureExtractor().extract(tone)
    assert features.db_mel.shape == (128, 87) == (DEFAULT_SETTINGS.n_mels, DEFAULT_SETTINGS.n_frames)
    assert features.mfcc.shape == (30, 87)
    assert features.db_mel.dtype == np.float32 and features.mfcc.dtype == np.float32
    np.testing.assert_allclose(features.norm_mel, features.db_mel / 80)
    assert features.db_mel.max() - features.db_mel.min() <= 80 + 1e-4


def test_matches_librosa_reference_pipeline(tone):
    """Section 5 exactly: librosa mel power -> power_to_db(ref=1, top_db=80) -> 30 MFCCs."""
    mel = librosa.feature.melspectrogram(y=tone, sr=44100, n_fft=2048, hop_length=512, n_mels=128,
                                         fmin=20, fmax=16000, power=2.0)
    db = librosa.power_to_db(mel, ref=1.0, top_db=80)
    mfcc = librosa.feature.mfcc(S=db, n_mfcc=30)
    features = LibrosaFeatureExtractor().extract(tone)
    np.testing.assert_allclose(features.db_mel, db, atol=2e-3)
    np.testing.assert_allclose(features.mfcc, mfcc, atol=2e-2, rtol=1e-4)


@pytest.mark.parametrize("settings", [DEFAULT_SETTINGS, FeatureSettings(n_fft=1024, n_mels=64, fmin=0.0, fmax=22050.0),
                                      FeatureSettings(sample_rate=22050, n_fft=512, n_mels=40, fmin=300.0, fmax=8000.0)])
def test_mel_filters_are_librosas(settings):
    reference = librosa.filters.mel(sr=settings.sample_rate, n_fft=settings.n_fft, n_mels=settings.n_mels,
                                    fmin=settings.fmin, fmax=settings.fmax)
    ours = _mel_basis(settings)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, reference)  # bit for bit: sessions and datasets must not move


def test_batched_db_is_per_item(rng):
    power = rng.uniform(0, 1, size=(3, 4, 5)) * np.array([1, 1e-6, 1e3])[:, None, None]
    batched = power_to_db(power)
    for item, expected in zip(power, batched):
        np.testing.assert_allclose(librosa.power_to_db(item, ref=1.0, top_db=80), expected, rtol=1e-5, atol=1e-4)


def test_other_sample_rate_is_resampled(tone):
    extractor = LibrosaFeatureExtractor()
    resampled = librosa.resample(tone, orig_sr=44100, target_sr=22050)
    features = extractor.extract(resampled, sample_rate=22050)
    assert features.db_mel.shape == (128, 87)


def test_settings_json_round_trip():
    settings = FeatureSettings(n_mels=64)
    assert FeatureSettings.from_json(settings.to_json()) == settings
    with pytest.raises(TypeError):
        FeatureSettings.from_json({"n_mel": 3})

import numpy as np
import pytest
from pedalboard.io import AudioFile

from serumrnn.core.audio import check_audio, fit_length, load_audio, write_wav
from serumrnn.core.errors import AudioError, OutputError


def _write(path, data, sample_rate=44100, **kwargs):
    data = np.asarray(data)
    with AudioFile(str(path), "w", samplerate=sample_rate, num_channels=data.shape[0], **kwargs) as out:
        out.write(data)


def test_write_then_read_round_trips(tmp_path, tone):
    path = write_wav(tmp_path / "tone.wav", tone)
    np.testing.assert_allclose(load_audio(path), tone, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["tone.wav"]  # no temp file left


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".aiff", ".mp3"])
def test_reads_common_formats_stereo_and_other_rates(tmp_path, tone, suffix):
    import librosa

    stereo = np.stack([librosa.resample(tone, orig_sr=44100, target_sr=48000)] * 2)
    path = tmp_path / f"clip{suffix}"
    _write(path, stereo, 48000)
    audio = load_audio(path)
    assert audio.shape == (44100,) and audio.dtype == np.float32
    # lossy codecs shift and smear a little; the level and pitch must survive
    assert abs(np.sqrt(np.mean(audio[5000:30000] ** 2)) - np.sqrt(np.mean(tone[5000:30000] ** 2))) < 0.05


def test_long_file_is_fitted_and_short_file_padded(tmp_path, tone):
    _write(tmp_path / "long.wav", np.tile(tone, 5)[None])
    assert load_audio(tmp_path / "long.wav").shape == (44100,)
    assert load_audio(tmp_path / "long.wav", duration_s=None).shape == (5 * 44100,)
    _write(tmp_path / "short.wav", tone[None, :1000])
    short = load_audio(tmp_path / "short.wav")
    assert short.shape == (44100,) and not short[1000:].any()


def test_integer_pcm_arrays_are_scaled():
    pcm = (np.array([0, 16384, -32768, 32767], dtype=np.int16))
    audio = check_audio(pcm, duration_s=None)
    np.testing.assert_allclose(audio, [0, 0.5, -1, 1], atol=1e-4)
    channels_last = np.stack([np.ones(100), -np.ones(100)], axis=1)
    assert check_audio(channels_last, duration_s=None).shape == (100,)


def test_fit_length():
    assert fit_length(np.ones(5, np.float32), 3).shape == (3,)
    np.testing.assert_array_equal(fit_length(np.ones(2, np.float32), 4), [1, 1, 0, 0])


@pytest.mark.parametrize(
    "data, match",
    [
        (np.array([], np.float32), "zero-length"),
        (np.array([0.1, np.nan], np.float32), "NaN"),
        (np.array([0.1, np.inf], np.float32), "NaN"),
        (np.array(["a"]), "not numeric"),
        (np.zeros((2, 2, 2)), "shape"),
    ],
)
def test_bad_arrays_are_refused(data, match):
    with pytest.raises(AudioError, match=match):
        check_audio(data)


def test_silent_audio_refused_only_when_asked():
    check_audio(np.zeros(10))
    with pytest.raises(AudioError, match="silent"):
        check_audio(np.zeros(10), allow_silent=False)


def test_unwritable_output_leaves_nothing(tmp_path, tone):
    with pytest.raises(OutputError, match="does not exist"):
        write_wav(tmp_path / "missing" / "x.wav", tone)
    with pytest.raises(OutputError, match="directory"):
        write_wav(tmp_path, tone)

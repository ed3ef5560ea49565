"""Tests for the built-in synth: presets, render contract, band limiting, modulation."""

from __future__ import annotations

import itertools

import librosa
import numpy as np
import pytest

from serumrnn.core.errors import ParameterError
from serumrnn.core.interfaces import Synth
from serumrnn.synths.builtin import BuiltinSynth

SR = 44100
GROUPS = {
    "basic": ("sine", "triangle", "saw", "square"),
    "advanced": ("power-fifths", "mtron-saw", "dirt-stab", "vintage-bells"),
    "modulating": ("heard-fifths", "talking", "busy-lines", "run-the-harm"),
}
ALL_PRESETS = tuple(name for names in GROUPS.values() for name in names)


@pytest.fixture(scope="module")
def synth() -> BuiltinSynth:
    return BuiltinSynth()


@pytest.fixture(scope="module")
def renders(synth: BuiltinSynth) -> dict[str, np.ndarray]:
    """Default render (C4, velocity 127, 1 s, 44.1 kHz) of every preset."""
    return {name: synth.render(name) for name in ALL_PRESETS}


def spectral_variability(audio: np.ndarray, sample_rate: int = SR) -> float:
    """Mean L1 distance (0..2) of each frame's sum-normalised magnitude spectrum from the
    average one, over 0.1-0.85 s (skips attack and release). 0 for a static timbre."""
    frame, hop = 2048, 1024
    window = np.hanning(frame)
    starts = range(int(0.1 * sample_rate), int(0.85 * sample_rate) - frame, hop)
    spectra = np.array([np.abs(np.fft.rfft(audio[i : i + frame] * window)) for i in starts])
    spectra /= spectra.sum(axis=1, keepdims=True)
    return float(np.abs(spectra - spectra.mean(axis=0)).sum(axis=1).mean())


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram in dB (80 dB range), shape ``(64, n_frames)``."""
    mel = librosa.feature.melspectrogram(y=audio, sr=SR, n_fft=2048, hop_length=512, n_mels=64)
    return librosa.power_to_db(mel, ref=np.max, top_db=80.0)


def estimate_f0(audio: np.ndarray, sample_rate: int = SR) -> float:
    """Frequency of the strongest spectral peak (zero-padded FFT, parabolic refinement)."""
    n_fft = 8 * audio.size
    magnitude = np.abs(np.fft.rfft(audio * np.hanning(audio.size), n=n_fft))
    peak = int(np.argmax(magnitude[1:-1])) + 1
    left, mid, right = np.log(magnitude[peak - 1 : peak + 2] + 1e-20)
    offset = 0.5 * (left - right) / (left - 2 * mid + right)
    return (peak + offset) * sample_rate / n_fft


def test_synth_identity(synth: BuiltinSynth) -> None:
    assert isinstance(synth, Synth)
    assert synth.name == "builtin"
    assert synth.label == "Built-in synth"


def test_twelve_presets_in_three_groups(synth: BuiltinSynth) -> None:
    assert len(synth.presets) == 12
    assert len({p.name for p in synth.presets}) == 12
    assert synth.groups() == GROUPS
    for preset in synth.presets:
        assert preset.description and "\n" not in preset.description


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_render_contract(renders: dict[str, np.ndarray], name: str) -> None:
    audio = renders[name]
    assert audio.dtype == np.float32
    assert audio.shape == (SR,)
    assert np.all(np.isfinite(audio))
    assert 0.1 < np.max(np.abs(audio)) <= 1.0


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_render_is_deterministic(synth: BuiltinSynth, renders: dict[str, np.ndarray], name: str) -> None:
    again = synth.render(name)
    assert again.tobytes() == renders[name].tobytes()
    assert BuiltinSynth().render(name).tobytes() == renders[name].tobytes()


def test_unknown_preset_raises(synth: BuiltinSynth) -> None:
    with pytest.raises(ParameterError, match="no preset"):
        synth.render("no-such-preset")


@pytest.mark.parametrize(
    "kwargs",
    [{"note": 128}, {"note": -1}, {"velocity": 200}, {"duration_s": -1.0}, {"sample_rate": 100}],
)
def test_bad_render_arguments_raise(synth: BuiltinSynth, kwargs: dict) -> None:
    with pytest.raises(ParameterError):
        synth.render("saw", **kwargs)


def test_saw_is_band_limited(renders: dict[str, np.ndarray]) -> None:
    audio = renders["saw"].astype(np.float64)
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1.0 / SR)
    assert power[freqs > 16000].sum() < 1e-4 * power.sum()
    # ...while still being bright: plenty of harmonics up to 10 kHz.
    assert power[(freqs > 5000) & (freqs < 10000)].sum() > 1e-3 * power.sum()


def test_modulating_presets_change_over_the_note(renders: dict[str, np.ndarray]) -> None:
    static = max(spectral_variability(renders[name]) for name in GROUPS["basic"])
    assert static < 0.02
    saw = spectral_variability(renders["saw"])
    for name in GROUPS["modulating"]:
        moving = spectral_variability(renders[name])
        assert moving > 0.15, name
        assert moving > 10 * max(saw, static, 1e-3), name


def test_presets_sound_different(renders: dict[str, np.ndarray]) -> None:
    mels = {name: log_mel(audio) for name, audio in renders.items()}
    for a, b in itertools.combinations(ALL_PRESETS, 2):
        distance = float(np.mean(np.abs(mels[a] - mels[b])))
        assert distance > 3.0, f"{a} and {b} differ by only {distance:.2f} dB"


@pytest.mark.parametrize("name", ["saw", "dirt-stab", "talking"])
@pytest.mark.parametrize(
    ("duration_s", "sample_rate"), [(0.5, 22050), (2.0, 48000), (0.01, 44100), (0.0, 44100)]
)
def test_duration_and_sample_rate(
    synth: BuiltinSynth, name: str, duration_s: float, sample_rate: int
) -> None:
    audio = synth.render(name, duration_s=duration_s, sample_rate=sample_rate)
    assert audio.dtype == np.float32
    assert audio.shape == (round(duration_s * sample_rate),)
    assert np.all(np.isfinite(audio))
    if audio.size:
        assert 0.1 < np.max(np.abs(audio)) <= 1.0


@pytest.mark.parametrize(("note", "expected_hz"), [(60, 261.63), (72, 523.25), (69, 440.0)])
def test_note_sets_pitch(synth: BuiltinSynth, note: int, expected_hz: float) -> None:
    f0 = estimate_f0(synth.render("sine", note=note).astype(np.float64))
    assert f0 == pytest.approx(expected_hz, rel=0.02)


def test_velocity_scales_amplitude(synth: BuiltinSynth) -> None:
    loud = synth.render("square", velocity=127)
    soft = synth.render("square", velocity=64)
    assert np.max(np.abs(soft)) == pytest.approx(np.max(np.abs(loud)) * 64 / 127, rel=1e-3)
    assert not np.any(synth.render("square", velocity=0))


@pytest.mark.parametrize("note", [24, 96, 127])
def test_extreme_notes_render(synth: BuiltinSynth, note: int) -> None:
    for name in ALL_PRESETS:
        audio = synth.render(name, note=note)
        assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0


# --- generated patches (synths/varied.py) -----------------------------------------------------

from serumrnn.synths import varied  # noqa: E402


def test_generated_patches_are_deterministic_and_valid(synth: BuiltinSynth) -> None:
    for seed in (0, 17, 100_003, varied.MAX_SEED):
        name = varied.varied_name(seed)
        first, second = synth.render(name), BuiltinSynth().render(name)
        np.testing.assert_array_equal(first, second)
        assert first.shape == (SR,) and first.dtype == np.float32 and np.all(np.isfinite(first))
        assert np.max(np.abs(first)) == pytest.approx(0.8, abs=1e-4)
        assert synth.preset(name).group == "varied"
    assert not np.array_equal(synth.render("varied-1"), synth.render("varied-2"))


@pytest.mark.parametrize("name", ["varied-", "varied-01", "varied--3", "varied-2147483648", "varied-x"])
def test_malformed_generated_names_are_refused(synth: BuiltinSynth, name: str) -> None:
    with pytest.raises(ParameterError, match="varied-<seed>"):
        synth.preset(name)


def test_generated_patches_span_c2_to_c6_and_every_kind() -> None:
    patches = [varied.VariedPatch(seed) for seed in range(300)]
    notes = np.array([patch.note for patch in patches])
    assert notes.min() == varied.LOWEST_NOTE == 36 and notes.max() == varied.HIGHEST_NOTE == 84
    # Every octave C2..C6 is well represented.
    assert all(np.sum((notes >= low) & (notes < low + 12)) >= 30 for low in range(36, 84, 12))
    assert {patch.envelope for patch in patches} == {"pluck", "percussive", "lead", "pad", "swell"}
    assert {patch.colour for patch in patches} == {"plain", "fm", "ring", "bell"}
    assert {osc["shape"] for patch in patches for osc in patch.oscillators} == {
        "sine", "triangle", "saw", "square", "pulse"}
    assert any(patch.noise > 0 for patch in patches) and any(
        osc["voices"] > 1 for patch in patches for osc in patch.oscillators)


def test_generated_patches_play_their_own_note(synth: BuiltinSynth) -> None:
    """Plain (harmonic) patches sound at their drawn note; ``note`` transposes them."""
    checked = 0
    for seed in range(60):
        patch = varied.VariedPatch(seed)
        octaves_only = all(osc["ratio"] in (0.5, 1.0, 2.0) for osc in patch.oscillators)
        if patch.colour != "plain" or patch.noise > 0 or patch.envelope in ("pluck", "percussive") or not octaves_only:
            continue
        f0 = librosa.yin(synth.render(f"varied-{seed}"), fmin=50, fmax=2000, sr=SR, frame_length=4096)
        heard = float(librosa.hz_to_midi(np.median(f0[10:-10])))
        # Pulse and square waves can read an octave off; compare pitch classes.
        assert min(abs(heard - patch.note) % 12, 12 - abs(heard - patch.note) % 12) < 0.6, (seed, heard, patch.note)
        checked += 1
    assert checked >= 5
    up = synth.render("varied-3", note=72)
    f0 = librosa.yin(up, fmin=50, fmax=4000, sr=SR, frame_length=4096)
    base = librosa.yin(synth.render("varied-3"), fmin=50, fmax=4000, sr=SR, frame_length=4096)
    assert float(np.median(f0) / np.median(base)) == pytest.approx(2.0, rel=0.03)


def test_dataset_mixes_presets_and_generated_patches(tmp_path) -> None:
    import json

    from serumrnn.core.dataset import generate_dataset

    summary = generate_dataset(tmp_path / "mix", group="basic", presets=["sine"], chains_per_combo=1,
                               varied=2, varied_first_seed=40, varied_chains_per_combo=1, seed=0, workers=1,
                               progress=False)
    config = json.loads((tmp_path / "mix" / "dataset.json").read_text())["config"]
    assert config["presets"] == ["sine", "varied-40", "varied-41"]
    assert config["loudness"]["name"] == "lufs-14"
    assert summary["renders"] == 3 * 212  # per source: the dry render plus 211 sub-chain renders
    with pytest.raises(ParameterError, match="--varied"):
        generate_dataset(tmp_path / "none", group="varied", chains_per_combo=1, seed=0, workers=1, progress=False)

"""The built-in synth: 12 band-limited presets re-created in the spirit of the paper's
Serum presets (basic shapes, advanced shapes, advanced modulating shapes).

Every oscillator is additive: a patch describes the sine amplitudes of harmonics
1..K, once or per control frame (every ``_HOP`` samples), and
``_wavetable_oscillator`` turns each frame's spectrum into a one-cycle table
(inverse FFT) that it reads with linear interpolation in phase and in time. Filters,
formants and wavetable morphs are gains on those harmonic amplitudes, so they cost
next to nothing, vary smoothly over time and never alias. Harmonics fade out between
``0.75 * band_top`` and ``band_top`` (16 kHz at 44.1 kHz), which keeps even a plain
saw nearly free of energy above 16 kHz.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np

from serumrnn.core.errors import ParameterError
from serumrnn.core.interfaces import Preset, Synth
from serumrnn.synths import varied

_MAX_TABLE_SIZE = 8192  # samples per one-cycle table; harmonics 1..4095 fit
_MAX_HARMONIC = _MAX_TABLE_SIZE // 2 - 1
_SAMPLES_PER_CYCLE = 16  # of the highest kept harmonic: keeps interpolation images < -45 dB
_HOP = 256  # samples between control frames (5.8 ms at 44.1 kHz)
_BAND_TOP_HZ = 16000.0
_PEAK = 0.8  # output peak at velocity 127
_FIFTH = 2.0 ** (7 / 12)


def _cents(cents: float) -> float:
    return 2.0 ** (cents / 1200.0)


class _Note:
    """Timing and pitch of one rendered note, shared by a patch's building blocks.

    Attributes
    ----------
    f0: fundamental in Hz.
    sample_rate: Hz.
    n_samples: output length.
    t: sample times in s, shape ``(n_samples,)``.
    frame_t: control-frame times in s, shape ``(n_frames,)``, one per ``_HOP``
        samples plus one past the end so every sample lies between two frames.
    band_top: Hz above which no harmonic is kept.
    rng: noise generator seeded from the preset name (renders are deterministic).
    """

    def __init__(self, preset: str, note: int, sample_rate: int, n_samples: int) -> None:
        self.f0 = 440.0 * 2.0 ** ((note - 69) / 12.0)
        self.sample_rate = sample_rate
        self.n_samples = n_samples
        self.duration = n_samples / sample_rate
        self.t = np.arange(n_samples) / sample_rate
        self.frame_t = np.arange(n_samples // _HOP + 2) * (_HOP / sample_rate)
        self.band_top = min(_BAND_TOP_HZ, 0.45 * sample_rate)
        self.rng = np.random.default_rng(zlib.crc32(preset.encode()))

    def harmonics(self, ratio: float = 1.0) -> np.ndarray:
        """Harmonic numbers ``1..K`` worth computing for an oscillator at ``ratio * f0``.

        K leaves room for pitch bends down; the oscillator's band limit removes the rest.
        """
        count = math.ceil(self.band_top / (0.75 * self.f0 * ratio))
        return np.arange(1, max(1, min(_MAX_HARMONIC, count)) + 1, dtype=np.float64)


# --- oscillator spectra: sine amplitudes of harmonics k (float array) ------------------


def _saw(k: np.ndarray) -> np.ndarray:
    return (2.0 / np.pi) / k


def _square(k: np.ndarray) -> np.ndarray:
    return np.where(k % 2 == 1, (4.0 / np.pi) / k, 0.0)


def _triangle(k: np.ndarray) -> np.ndarray:
    sign = np.where((k - 1) % 4 == 0, 1.0, -1.0)
    return np.where(k % 2 == 1, sign * (8.0 / np.pi**2) / k**2, 0.0)


def _sine(k: np.ndarray) -> np.ndarray:
    return np.where(k == 1, 1.0, 0.0)


def _pulse(k: np.ndarray, duty: float) -> np.ndarray:
    # Magnitudes of a pulse wave of this duty cycle (phases are irrelevant to the ear).
    return (2.0 / np.pi) * np.abs(np.sin(np.pi * k * duty)) / k


# --- filters as gains on harmonic frequencies (broadcast (F, 1) against (K,)) ---------


def _lowpass_gain(freqs: np.ndarray, cutoff: np.ndarray | float, q: float, poles: int = 2) -> np.ndarray:
    """Magnitude of a resonant low-pass (``poles`` 2 or 4) at ``freqs``."""
    x = freqs / cutoff
    two_pole = 1.0 / np.sqrt((1.0 - x**2) ** 2 + (x / q) ** 2)
    return two_pole if poles == 2 else two_pole**2


def _bandpass_gain(freqs: np.ndarray, center: np.ndarray | float, q: float) -> np.ndarray:
    """Magnitude of a 2-pole band-pass with unit gain at ``center``."""
    x = freqs / center
    return 1.0 / np.sqrt(1.0 + (q * (x - 1.0 / x)) ** 2)


def _band_limit(freqs: np.ndarray, band_top: float) -> np.ndarray:
    """1 below ``0.75 * band_top``, raised-cosine fade to 0 at ``band_top``."""
    start = 0.75 * band_top
    fade = np.clip((freqs - start) / (band_top - start), 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * fade)


# --- oscillators ---------------------------------------------------------------------


def _wavetable_oscillator(
    note: _Note, spectrum: np.ndarray, freq_hz: float | np.ndarray
) -> np.ndarray:
    """Band-limited oscillator from harmonic amplitudes.

    Parameters
    ----------
    note: the note being rendered.
    spectrum: sine amplitudes of harmonics ``1..K``; shape ``(K,)`` for a static
        tone or ``(n_frames, K)`` for one spectrum per control frame.
    freq_hz: fundamental in Hz, a constant or shape ``(n_samples,)``.

    Returns
    -------
    float64 array, shape ``(n_samples,)``.
    """
    n = note.n_samples
    spectrum = np.atleast_2d(spectrum)[:, :_MAX_HARMONIC]
    k = np.arange(1, spectrum.shape[1] + 1)
    if np.ndim(freq_hz) == 0:
        phase = np.arange(n) * (float(freq_hz) / note.sample_rate)
        frame_freq = np.full((1, 1), float(freq_hz))
    else:
        freq_hz = np.asarray(freq_hz, dtype=np.float64)
        phase = np.cumsum(freq_hz) / note.sample_rate
        # Band-limit each frame for the highest pitch reached around it.
        frame_idx = np.minimum(np.arange(note.frame_t.size) * _HOP, n - 1)
        import scipy.ndimage  # lazy: scipy takes most of a second to import

        frame_freq = scipy.ndimage.maximum_filter1d(freq_hz, 2 * _HOP + 1)[frame_idx][:, None]
        if spectrum.shape[0] == 1:
            spectrum = np.repeat(spectrum, note.frame_t.size, axis=0)
    amplitudes = spectrum * _band_limit(k * frame_freq, note.band_top)
    kept = int(np.max(np.nonzero(np.any(amplitudes != 0.0, axis=0))[0], initial=0)) + 1
    amplitudes = amplitudes[:, :kept]

    # The smallest table that still samples the top harmonic finely: less FFT, fewer cache misses.
    size = min(_MAX_TABLE_SIZE, max(256, 1 << math.ceil(math.log2(_SAMPLES_PER_CYCLE * kept))))
    half = np.zeros((amplitudes.shape[0], size // 2 + 1), dtype=np.complex128)
    half[:, 1 : kept + 1] = -0.5j * size * amplitudes  # irfft of this = sum a_k sin
    tables = np.fft.irfft(half, n=size, axis=1).astype(np.float32)
    tables = np.concatenate([tables, tables[:, :1]], axis=1)  # wrap column for i + 1

    position = (phase - np.floor(phase)) * size
    index = np.minimum(position.astype(np.intp), size - 1)
    frac = (position - index).astype(np.float32)
    if tables.shape[0] == 1:
        table = tables[0]
        return (table[index] + frac * (table[index + 1] - table[index])).astype(np.float64)

    flat = tables.ravel()
    row = size + 1
    frame = np.arange(n) // _HOP
    frame_frac = (np.arange(n) % _HOP).astype(np.float32) / np.float32(_HOP)
    base = frame * row + index
    now = flat[base] + frac * (flat[base + 1] - flat[base])
    nxt = flat[base + row] + frac * (flat[base + row + 1] - flat[base + row])
    return (now + frame_frac * (nxt - now)).astype(np.float64)


def _partials(
    note: _Note, ratios: np.ndarray, amplitudes: np.ndarray, decays_s: np.ndarray
) -> np.ndarray:
    """Sum of (inharmonic) exponentially decaying sines at ``ratios * f0``.

    Parameters
    ----------
    ratios, amplitudes, decays_s: shape ``(P,)``; decay time constants in s.

    Returns
    -------
    float64 array, shape ``(n_samples,)``.
    """
    freqs = ratios * note.f0
    keep = _band_limit(freqs, note.band_top) * amplitudes
    used = keep > 0
    freqs, keep, decays_s = freqs[used], keep[used], decays_s[used]
    out = np.zeros(note.n_samples)
    for freq, amp, decay in zip(freqs, keep, decays_s):
        out += amp * np.exp(-note.t / decay) * np.sin((2 * np.pi * freq) * note.t)
    return out


# --- envelopes and LFOs --------------------------------------------------------------


def _adsr(note: _Note, attack_s: float, decay_s: float, sustain: float, release_s: float) -> np.ndarray:
    """Piecewise-linear ADSR whose release ends exactly at the last sample.

    Segment times shrink proportionally when the note is too short for them.
    Returns shape ``(n_samples,)``.
    """
    total = attack_s + decay_s + release_s
    scale = min(1.0, 0.95 * note.duration / total) if total > 0 else 1.0
    attack, decay, release = attack_s * scale, decay_s * scale, release_s * scale
    note_off = note.duration - release
    times = [0.0, attack, attack + decay, note_off, note.duration]
    levels = [0.0, 1.0, sustain, sustain, 0.0]
    return np.interp(note.t, times, levels)


def _sine_lfo(t: np.ndarray, rate_hz: float, phase: float = 0.0) -> np.ndarray:
    """Sine LFO in [-1, 1]."""
    return np.sin(2 * np.pi * (rate_hz * t + phase))


def _triangle_lfo(t: np.ndarray, rate_hz: float) -> np.ndarray:
    """Triangle LFO in [0, 1], starting at 0."""
    cycle = (rate_hz * t) % 1.0
    return 1.0 - np.abs(2.0 * cycle - 1.0)


# --- patches: each returns an unnormalised float64 signal, shape (n_samples,) ---------


def _basic(shape: Callable[[np.ndarray], np.ndarray]) -> Callable[[_Note], np.ndarray]:
    def patch(note: _Note) -> np.ndarray:
        tone = _wavetable_oscillator(note, shape(note.harmonics()), note.f0)
        return tone * _adsr(note, 0.005, 0.0, 1.0, 0.06)

    return patch


def _power_fifths(note: _Note) -> np.ndarray:
    """Root and fifth saws, slightly detuned, through a static 24 dB low-pass."""
    voices = []
    for ratio, level in ((1.0, 1.0), (_FIFTH * _cents(4), 0.8), (0.5, 0.35)):
        k = note.harmonics(ratio)
        gain = _lowpass_gain(k * note.f0 * ratio, 2400.0, 1.4, poles=4)
        voices.append(level * _wavetable_oscillator(note, _saw(k) * gain, note.f0 * ratio))
    return sum(voices) * _adsr(note, 0.004, 0.0, 1.0, 0.08)


def _mtron_saw(note: _Note) -> np.ndarray:
    """Detuned saw pair plus a quiet octave, mellow 12 dB low-pass, slow tape wobble."""
    wobble = _cents(1.0) ** (4.0 * _sine_lfo(note.t, 0.7))
    voices = []
    for ratio, level in ((_cents(-7), 0.7), (_cents(7), 0.7), (2.0 * _cents(3), 0.35)):
        k = note.harmonics(ratio)
        gain = _lowpass_gain(k * note.f0 * ratio, 1500.0, 0.7)
        voices.append(level * _wavetable_oscillator(note, _saw(k) * gain, note.f0 * ratio * wobble))
    return sum(voices) * _adsr(note, 0.035, 0.2, 0.8, 0.15)


def _dirt_stab(note: _Note) -> np.ndarray:
    """Square plus sub saw with a snapping filter envelope, overdrive and a noise click."""
    cutoff = (350.0 + 7000.0 * np.exp(-note.frame_t / 0.07))[:, None]
    tone = np.zeros(note.n_samples)
    for shape, ratio, level in ((_square, 1.0, 1.0), (_saw, 0.5, 0.8)):
        k = note.harmonics(ratio)
        gain = _lowpass_gain(k * note.f0 * ratio, cutoff, 2.5, poles=4)
        tone += level * _wavetable_oscillator(note, shape(k) * gain, note.f0 * ratio)
    dirty = np.tanh(3.0 * tone / (np.max(np.abs(tone)) + 1e-12))
    import scipy.signal  # lazy: scipy takes most of a second to import

    highpass = scipy.signal.butter(2, min(2000.0, 0.4 * note.sample_rate), "highpass", fs=note.sample_rate)
    noise = scipy.signal.lfilter(*highpass, note.rng.standard_normal(note.n_samples))
    click = 0.25 * noise * np.exp(-note.t / 0.025)
    stab = np.exp(-note.t / 0.18)
    return (dirty + click) * stab * _adsr(note, 0.002, 0.0, 1.0, 0.05)


def _vintage_bells(note: _Note) -> np.ndarray:
    """Inharmonic bell partials (hum, prime, tierce, quint, nominal...) plus a decaying FM tine."""
    ratios = np.array([0.5, 1.0, 1.183, 1.506, 2.0, 2.514, 2.662, 3.011, 4.166, 5.433, 6.796])
    amplitudes = np.array([0.35, 1.0, 0.5, 0.3, 0.7, 0.25, 0.3, 0.2, 0.15, 0.1, 0.06])
    decays = np.array([1.5, 1.1, 0.8, 0.6, 0.7, 0.4, 0.35, 0.3, 0.2, 0.15, 0.1])
    body = _partials(note, ratios, amplitudes, decays)

    carrier, modulator = 2.0 * note.f0, 3.5 * note.f0
    tine = np.zeros(note.n_samples)
    if carrier < 0.75 * note.band_top:
        # Cap the FM index so the strongest sidebands stay below the band limit.
        peak_index = min(2.5, max(0.0, (0.75 * note.band_top - carrier) / modulator - 2.0))
        index = peak_index * np.exp(-note.t / 0.25)
        tine = np.sin(2 * np.pi * carrier * note.t + index * np.sin(2 * np.pi * modulator * note.t))
        tine *= 0.5 * np.exp(-note.t / 0.4)
    return (body + tine) * _adsr(note, 0.001, 0.0, 1.0, 0.05)


def _heard_fifths(note: _Note) -> np.ndarray:
    """Saw and fifth square through a resonant low-pass swept by a 3.5 Hz LFO."""
    cutoff = (1100.0 * 2.0 ** (2.2 * _sine_lfo(note.frame_t, 3.5, phase=0.75)))[:, None]
    tone = np.zeros(note.n_samples)
    for shape, ratio, level in ((_saw, 1.0, 1.0), (_square, _FIFTH * _cents(-5), 0.7)):
        k = note.harmonics(ratio)
        gain = _lowpass_gain(k * note.f0 * ratio, cutoff, 4.0)
        tone += level * _wavetable_oscillator(note, shape(k) * gain, note.f0 * ratio)
    return tone * _adsr(note, 0.005, 0.0, 1.0, 0.08)


# Formant centres (Hz) of the vowels a, e, i, o, u: one row per formant.
_VOWEL_FORMANTS = np.array(
    [
        [800.0, 400.0, 270.0, 450.0, 325.0],
        [1200.0, 2000.0, 2300.0, 800.0, 700.0],
        [2500.0, 2600.0, 3000.0, 2600.0, 2500.0],
    ]
)
_FORMANT_LEVELS = (1.0, 0.6, 0.3)


def _talking(note: _Note) -> np.ndarray:
    """Saw plus octave square through three formant peaks gliding a-e-i-o-u and back."""
    vowel = 4.0 * _triangle_lfo(note.frame_t, 1.3)  # position along a, e, i, o, u
    vowels = np.arange(_VOWEL_FORMANTS.shape[1])
    centers = [np.interp(vowel, vowels, row)[:, None] for row in _VOWEL_FORMANTS]
    tone = np.zeros(note.n_samples)
    for shape, ratio, level in ((_saw, 1.0, 1.0), (_square, 2.0 * _cents(6), 0.5)):
        k = note.harmonics(ratio)
        freqs = k * note.f0 * ratio
        formants = (gain * _bandpass_gain(freqs, center, 6.0) for gain, center in zip(_FORMANT_LEVELS, centers))
        gain = 0.02 + sum(formants)
        tone += level * _wavetable_oscillator(note, shape(k) * gain, note.f0 * ratio)
    return tone * _adsr(note, 0.01, 0.0, 1.0, 0.08)


def _busy_lines(note: _Note) -> np.ndarray:
    """Wavetable morph (soft -> saw -> thin pulse) on a 1.7 Hz LFO, sub square, 8 Hz gate."""
    k = note.harmonics()
    position = (0.5 - 0.5 * _sine_lfo(note.frame_t, 1.7, phase=0.25))[:, None]  # 0..1
    soft, saw, thin = np.abs(_triangle(k)), _saw(k), _pulse(k, 0.125)
    to_saw = np.clip(2.0 * position, 0.0, 1.0)
    to_thin = np.clip(2.0 * position - 1.0, 0.0, 1.0)
    table = soft + to_saw * (saw - soft) + to_thin * (thin - saw)
    tone = _wavetable_oscillator(note, table * _lowpass_gain(k * note.f0, 6000.0, 0.8), note.f0)

    k_sub = note.harmonics(0.5)
    sub = _square(k_sub) * _lowpass_gain(k_sub * note.f0 * 0.5, 3000.0, 0.8)
    tone += 0.5 * _wavetable_oscillator(note, sub, 0.5 * note.f0)

    # 16th-note gate with 4 ms ramps so the steps do not click.
    cycle = (8.0 * note.t) % 1.0
    ramp = 0.004 * 8.0
    gate = np.clip(cycle / ramp, 0.0, 1.0) * np.clip((0.55 - cycle) / ramp, 0.0, 1.0)
    return tone * (0.08 + 0.92 * gate) * _adsr(note, 0.003, 0.0, 1.0, 0.05)


# Harmonic numbers the emphasis peak runs through, one step each 1/12 s.
_HARMONIC_RUN = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 12, 10, 8, 6, 5, 4, 3, 2], dtype=np.float64)


def _run_the_harm(note: _Note) -> np.ndarray:
    """Saw whose harmonics are picked out one by one in a running pattern, with vibrato."""
    vibrato = _cents(1.0) ** (30.0 * _sine_lfo(note.t, 5.5))
    k = note.harmonics(1.0 / _cents(30))
    step = (note.frame_t * 12.0).astype(np.intp) % _HARMONIC_RUN.size
    target = _HARMONIC_RUN[step][:, None]
    emphasis = 0.04 + np.exp(-0.5 * (np.log2(k / target) / 0.18) ** 2)
    spectrum = _saw(k) * emphasis
    spectrum /= np.sqrt(np.sum(spectrum**2, axis=1, keepdims=True))  # same loudness per step
    tone = _wavetable_oscillator(note, spectrum, note.f0 * vibrato)

    k_tri = note.harmonics(1.0 / _cents(30))
    tone += 0.45 * _wavetable_oscillator(note, _triangle(k_tri), note.f0 * vibrato)
    return tone * _adsr(note, 0.005, 0.0, 1.0, 0.08)


_PATCHES: tuple[tuple[Preset, Callable[[_Note], np.ndarray]], ...] = (
    (Preset("sine", "basic", "Pure sine wave."), _basic(_sine)),
    (Preset("triangle", "basic", "Band-limited triangle wave."), _basic(_triangle)),
    (Preset("saw", "basic", "Band-limited sawtooth wave."), _basic(_saw)),
    (Preset("square", "basic", "Band-limited square wave."), _basic(_square)),
    (Preset("power-fifths", "advanced", "Lead: root and fifth saws plus a sub, warm low-pass."), _power_fifths),
    (Preset("mtron-saw", "advanced", "Tape-keyboard pad: detuned saws and an octave, mellow, wobbly."), _mtron_saw),
    (Preset("dirt-stab", "advanced", "Short overdriven stab: square and sub saw, snapping filter, noise."), _dirt_stab),
    (Preset("vintage-bells", "advanced", "Bell: decaying inharmonic partials plus an FM tine."), _vintage_bells),
    (Preset("heard-fifths", "modulating", "Lead: saw and fifth square, LFO-wobbled resonant filter."), _heard_fifths),
    (Preset("talking", "modulating", "Talking lead: formant filter gliding through the vowels a-e-i-o-u."), _talking),
    (Preset("busy-lines", "modulating", "Sequence: wavetable morph under a 16th-note gate, sub square."), _busy_lines),
    (Preset("run-the-harm", "modulating", "Harmonic run: single harmonics picked out in turn, vibrato."), _run_the_harm),
)


_SHAPES = {"sine": _sine, "triangle": _triangle, "saw": _saw, "square": _square, "pulse": _pulse}
_HELPERS = {"lowpass": _lowpass_gain, "wavetable": _wavetable_oscillator, "partials": _partials, "adsr": _adsr}


class BuiltinSynth(Synth):
    """Dependency-free additive synth with 12 presets in groups basic, advanced, modulating,
    and the generated patches ``varied-<seed>`` (group ``varied``, ``synths/varied.py``).

    Renders are band-limited, deterministic (noise is seeded from the preset name) and
    peak-normalised to 0.8 at velocity 127; lower velocities scale linearly.
    """

    name = "builtin"
    label = "Built-in synth"
    presets = tuple(preset for preset, _ in _PATCHES)

    # Families of generated patches, addressed by name rather than listed one by one.
    families = {varied.GROUP: f"{varied.PREFIX}<seed> for any seed 0..{varied.MAX_SEED}: generated patches "
                              f"(oscillator mixes, unison, noise, FM, ring, bells, plucks, pads) at notes C2-C6"}

    def __init__(self) -> None:
        self._patches = {preset.name: patch for preset, patch in _PATCHES}

    def generated_presets(self, family: str, first_seed: int, count: int) -> tuple[str, ...]:
        if family != varied.GROUP:
            return super().generated_presets(family, first_seed, count)
        return varied.varied_names(first_seed, count)

    def preset(self, name: str) -> Preset:
        if varied.is_varied(name):
            return varied.VariedPatch(varied.varied_seed(name)).preset(name)
        return super().preset(name)

    def render(self, preset: str, *, note: int = 60, velocity: int = 127, duration_s: float = 1.0,
               sample_rate: int = 44100) -> np.ndarray:
        """``Synth.render``; the sample rate is at least 8000 Hz and the peak is
        ``0.8 * velocity / 127`` (velocity scales the amplitude linearly)."""
        self.preset(preset)
        _check_render_args(note, velocity, duration_s, sample_rate)
        n_samples = round(duration_s * sample_rate)
        if n_samples == 0:
            return np.zeros(0, dtype=np.float32)
        if varied.is_varied(preset):
            # A generated patch plays its own note; ``note`` transposes it (60 = as drawn).
            patch = varied.VariedPatch(varied.varied_seed(preset))
            played = int(np.clip(patch.note + int(note) - 60, 0, 127))
            signal = varied.render_varied(_Note(preset, played, int(sample_rate), n_samples), patch,
                                          shapes=_SHAPES, helpers=_HELPERS)
        else:
            signal = self._patches[preset](_Note(preset, int(note), int(sample_rate), n_samples))
        peak = float(np.max(np.abs(signal)))
        if peak > 0.0:
            signal = signal * (_PEAK * velocity / 127.0 / peak)
        return signal.astype(np.float32)


def _check_render_args(note: int, velocity: int, duration_s: float, sample_rate: int) -> None:
    if not 0 <= note <= 127 or int(note) != note:
        raise ParameterError(f"MIDI note {note!r} is not a whole number in 0..127; pass e.g. 60 for C4.")
    if not 0 <= velocity <= 127:
        raise ParameterError(f"Velocity {velocity!r} is outside 0..127; pass e.g. 127 for full level.")
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise ParameterError(f"Duration {duration_s!r} s is not a finite non-negative number; pass e.g. 1.0.")
    if not sample_rate >= 8000 or int(sample_rate) != sample_rate:
        raise ParameterError(
            f"Sample rate {sample_rate!r} is not a whole number of at least 8000 Hz; pass e.g. 44100."
        )

"""Generated patches of the built-in synth: ``varied-<seed>``, one patch per seed.

The 12 presets are all one note (C4) and twelve timbres; the models trained on them
alone knew nothing else. A varied patch draws from its seed a note between C2 and C6
and a voice: one to three oscillators (sine, triangle, saw, square, pulse) at chosen
ratios, detuned unison, noise, FM or ring modulation or inharmonic bell partials, a
resonant low-pass with its own envelope and LFO, and an amplitude shape (pluck,
percussive, lead, pad, swell). The same seed always gives the same bytes.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from serumrnn.core.errors import ParameterError
from serumrnn.core.interfaces import Preset

GROUP = "varied"
PREFIX = "varied-"
MAX_SEED = 2**31 - 1
LOWEST_NOTE, HIGHEST_NOTE = 36, 84  # C2 .. C6
_NAME = re.compile(r"varied-(0|[1-9][0-9]{0,9})")

_SHAPES = ("sine", "triangle", "saw", "square", "pulse")
_ENVELOPES = ("pluck", "percussive", "lead", "pad", "swell")
_COLOURS = ("plain", "plain", "fm", "ring", "bell")


def is_varied(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def varied_seed(name: str) -> int:
    """The seed of ``varied-<seed>``; one sentence for a malformed name."""
    match = _NAME.fullmatch(name)
    if match is None or int(match.group(1)) > MAX_SEED:
        raise ParameterError(
            f"Preset {name!r} is not a generated patch name; write varied-<seed> with a seed from 0 to {MAX_SEED}, "
            "e.g. varied-7."
        )
    return int(match.group(1))


def varied_name(seed: int) -> str:
    return f"{PREFIX}{int(seed)}"


def varied_names(first_seed: int, count: int) -> tuple[str, ...]:
    """``count`` consecutive patch names from ``first_seed``."""
    if count < 0 or first_seed < 0 or first_seed + count - 1 > MAX_SEED:
        raise ParameterError(f"Generated patches {first_seed}..{first_seed + count - 1} are outside 0..{MAX_SEED}.")
    return tuple(varied_name(seed) for seed in range(first_seed, first_seed + count))


class VariedPatch:
    """A patch drawn from its seed; ``render(note_offset, ...)`` plays it."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([zlib.crc32(b"varied"), seed]))
        self.seed = seed
        self.note = int(rng.integers(LOWEST_NOTE, HIGHEST_NOTE + 1))
        self.colour = str(rng.choice(_COLOURS))
        self.envelope = str(rng.choice(_ENVELOPES))
        n_oscillators = int(rng.integers(1, 4))
        self.oscillators = []
        for index in range(n_oscillators):
            ratio = 1.0 if index == 0 else float(rng.choice([0.5, 1.0, 2.0, 2.0 ** (7 / 12), 3.0]))
            self.oscillators.append({
                "shape": str(rng.choice(_SHAPES)),
                "duty": float(rng.uniform(0.08, 0.5)),
                "ratio": ratio,
                "level": 1.0 if index == 0 else float(rng.uniform(0.2, 0.9)),
                "voices": int(rng.choice([1, 1, 2, 3, 5])),
                "spread_cents": float(rng.uniform(3.0, 30.0)),
            })
        self.noise = float(rng.choice([0.0, 0.0, rng.uniform(0.02, 0.4)]))
        self.cutoff_hz = float(np.exp(rng.uniform(np.log(300.0), np.log(14000.0))))
        self.resonance = float(rng.uniform(0.5, 6.0))
        self.filter_env_octaves = float(rng.choice([0.0, rng.uniform(1.0, 5.0)]))
        self.filter_env_decay_s = float(rng.uniform(0.03, 0.6))
        self.lfo_rate_hz = float(rng.uniform(0.2, 8.0))
        self.lfo_octaves = float(rng.choice([0.0, 0.0, rng.uniform(0.2, 1.5)]))
        self.fm_ratio = float(rng.choice([0.5, 1.0, 1.5, 2.0, 3.5, 7.0]))
        self.fm_index = float(rng.uniform(0.5, 5.0))
        self.fm_decay_s = float(rng.uniform(0.05, 1.0))
        self.ring_ratio = float(rng.uniform(0.5, 4.0))
        self.ring_mix = float(rng.uniform(0.3, 1.0))
        self.bell_ratios = np.sort(rng.uniform(0.5, 7.0, size=8))
        self.bell_decays = rng.uniform(0.08, 1.2, size=8)
        self.attack_s = float(rng.uniform(0.001, 0.01))
        self.decay_s = float(rng.uniform(0.05, 0.5))
        self.sustain = float(rng.uniform(0.3, 1.0))
        self.release_s = float(rng.uniform(0.03, 0.25))
        self.swell_s = float(rng.uniform(0.15, 0.6))

    @property
    def description(self) -> str:
        shapes = "+".join(osc["shape"] for osc in self.oscillators)
        return f"Generated {self.envelope} patch ({shapes}, {self.colour}) at MIDI note {self.note}."

    def preset(self, name: str) -> Preset:
        return Preset(name, GROUP, self.description)


def render_varied(note, patch: VariedPatch, *, shapes, helpers) -> np.ndarray:
    """The patch's signal for one ``note`` (a ``synths.builtin._Note``); unnormalised float64.

    ``shapes``: oscillator spectrum functions by name; ``helpers``: the built-in synth's
    building blocks (oscillator, partials, filters, envelopes), shared rather than copied.
    """
    lowpass, wavetable, partials, adsr = helpers["lowpass"], helpers["wavetable"], helpers["partials"], helpers["adsr"]
    t, frame_t = note.t, note.frame_t
    sweep = patch.filter_env_octaves * np.exp(-frame_t / patch.filter_env_decay_s)
    wobble = patch.lfo_octaves * np.sin(2 * np.pi * patch.lfo_rate_hz * frame_t)
    cutoff = np.clip(patch.cutoff_hz * 2.0 ** (sweep + wobble), 40.0, 0.45 * note.sample_rate)[:, None]
    static = patch.filter_env_octaves == 0.0 and patch.lfo_octaves == 0.0

    tone = np.zeros(note.n_samples)
    if patch.colour == "bell":
        amplitudes = 1.0 / (1.0 + np.arange(patch.bell_ratios.size))
        tone += partials(note, patch.bell_ratios, amplitudes, patch.bell_decays)
    elif patch.colour == "fm":
        index = patch.fm_index * np.exp(-t / patch.fm_decay_s)
        carrier, modulator = note.f0, patch.fm_ratio * note.f0
        # Keep the strongest sidebands under the band limit.
        room = max(0.0, (0.75 * note.band_top - carrier) / max(modulator, 1.0) - 1.0)
        tone += np.sin(2 * np.pi * carrier * t + np.minimum(index, room) * np.sin(2 * np.pi * modulator * t))
    for osc in patch.oscillators:
        voices = osc["voices"]
        detunes = np.linspace(-osc["spread_cents"], osc["spread_cents"], voices) if voices > 1 else np.zeros(1)
        for cents in detunes:
            ratio = osc["ratio"] * 2.0 ** (cents / 1200.0)
            k = note.harmonics(ratio)
            spectrum = shapes["pulse"](k, osc["duty"]) if osc["shape"] == "pulse" else shapes[osc["shape"]](k)
            gain = lowpass(k * note.f0 * ratio, patch.cutoff_hz if static else cutoff, patch.resonance)
            tone += (osc["level"] / np.sqrt(voices)) * wavetable(note, spectrum * gain, note.f0 * ratio)
    if patch.colour == "ring":
        ring = np.sin(2 * np.pi * patch.ring_ratio * note.f0 * t)
        tone = (1.0 - patch.ring_mix) * tone + patch.ring_mix * tone * ring
    if patch.noise > 0.0:
        import scipy.signal  # lazy: scipy takes most of a second to import

        band = scipy.signal.butter(2, min(patch.cutoff_hz, 0.4 * note.sample_rate), "lowpass", fs=note.sample_rate)
        noise = scipy.signal.lfilter(*band, note.rng.standard_normal(note.n_samples))
        tone += patch.noise * noise * np.max(np.abs(tone) + 1e-9) / (np.max(np.abs(noise)) + 1e-12)
    return tone * _amplitude(note, patch, adsr)


def _amplitude(note, patch: VariedPatch, adsr) -> np.ndarray:
    if patch.envelope == "pluck":
        return adsr(note, patch.attack_s, 0.0, 1.0, 0.02) * np.exp(-note.t / (0.3 * patch.decay_s + 0.03))
    if patch.envelope == "percussive":
        return adsr(note, patch.attack_s, patch.decay_s, 0.0, 0.02)
    if patch.envelope == "pad":
        return adsr(note, patch.swell_s, patch.decay_s, patch.sustain, patch.release_s)
    if patch.envelope == "swell":
        return adsr(note, 0.8 * note.duration, 0.0, 1.0, 0.1 * note.duration)
    return adsr(note, patch.attack_s, patch.decay_s, patch.sustain, patch.release_s)

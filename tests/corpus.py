"""The bad-input audio corpus, generated at test time (nothing binary is committed).

``accepted_files`` builds audio the tool must take and convert: every integer and
float PCM width, 8 kHz to 192 kHz, 1 to 8 channels, 1 ms to 10 minutes, DC offset,
clipping, past-full-scale floats, denormals, odd file names. ``refused_files`` builds
files it must refuse with one sentence, each with a fragment of the expected message.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile

C4_HZ = 261.63


def tone(sample_rate: int = 44100, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    """A decaying C4 with a few harmonics, float32 ``(frames, channels)``; each channel
    a little quieter than the one before so channels are not identical."""
    t = np.arange(int(round(sample_rate * seconds))) / sample_rate
    wave = sum(np.sin(2 * np.pi * k * C4_HZ * t) / k for k in (1, 2, 3, 5))
    mono = 0.4 * wave * np.exp(-2 * t)
    return np.stack([mono * (1 - 0.05 * c) for c in range(channels)], axis=1).astype(np.float32)


def write(path: Path, data: np.ndarray, sample_rate: int = 44100, subtype: str | None = None) -> Path:
    soundfile.write(str(path), data, sample_rate, subtype=subtype)
    return path


def sparse_long_wav(path: Path, seconds: float, sample_rate: int, channels: int, head_s: float = 2.0) -> Path:
    """A 16-bit WAV whose header declares ``seconds`` of audio: ``head_s`` of real tone,
    then a sparse hole of zeros, so a 10-minute 8-channel 192 kHz file (1.8 GB) costs a
    few MB of disk and reading it whole would show in memory at once."""
    frames = int(seconds * sample_rate)
    data_bytes = frames * channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * channels * 2, channels * 2, 16)
    header = (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + data_bytes) + b"WAVE"
              + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_bytes))
    head = (tone(sample_rate, head_s, channels) * 32767).astype("<i2")
    with open(path, "wb") as handle:
        handle.write(header)
        handle.write(head.tobytes())
        handle.truncate(len(header) + data_bytes)
    return path


def accepted_files(folder: Path) -> dict[str, Path]:
    """Unusual but valid audio, by case name."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    clip = tone()
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        files[f"wav-{subtype}"] = write(folder / f"{subtype}.wav", clip, subtype=subtype)
    for subtype in ("PCM_16", "PCM_24"):
        files[f"flac-{subtype}"] = write(folder / f"{subtype}.flac", clip, subtype=subtype)
    for subtype in ("PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"):
        files[f"aiff-{subtype}"] = write(folder / f"{subtype}.aiff", clip, subtype=subtype)
    files["mp3"] = write(folder / "clip.mp3", clip)
    files["ogg"] = write(folder / "clip.ogg", clip)
    for rate in (8000, 11025, 16000, 22050, 32000, 48000, 88200, 96000, 176400, 192000):
        files[f"rate-{rate}"] = write(folder / f"rate{rate}.wav", tone(rate), rate)
    for rate in (8000, 22050, 48000):
        files[f"flac-rate-{rate}"] = write(folder / f"rate{rate}.flac", tone(rate), rate)
    for channels in range(2, 9):
        files[f"channels-{channels}"] = write(folder / f"ch{channels}.wav", tone(channels=channels), subtype="PCM_16")
    files["channels-8-flac"] = write(folder / "ch8.flac", tone(channels=8))
    for name, seconds in (("1ms", 0.001), ("10ms", 0.01), ("half-second", 0.5), ("3s", 3.0)):
        files[f"length-{name}"] = write(folder / f"len-{name}.wav", tone(seconds=seconds), subtype="FLOAT")
    files["length-1-sample"] = write(folder / "one-sample.wav", np.array([[0.5]], np.float32), subtype="FLOAT")
    files["length-1ms-8ch-192k"] = write(folder / "ms-8ch.wav", tone(192000, 0.001, 8), 192000)
    files["length-10min-8ch-192k"] = sparse_long_wav(folder / "ten-minutes.wav", 600, 192000, 8)
    files["dc-offset"] = write(folder / "dc.wav", clip + 0.5, subtype="FLOAT")
    files["dc-only"] = write(folder / "dc-only.wav", np.full((44100, 1), 0.25, np.float32), subtype="FLOAT")
    files["clipped"] = write(folder / "clipped.wav", np.clip(clip * 20, -1, 1), subtype="PCM_16")
    files["past-full-scale"] = write(folder / "hot.wav", clip * 8, subtype="FLOAT")
    denormal = clip.copy()
    denormal[::2] = np.float32(1e-41)  # subnormal float32 samples between the tone's
    files["denormals-in-tone"] = write(folder / "denormals.wav", denormal, subtype="FLOAT")
    files["denormal-tail"] = write(folder / "denormal-tail.wav",
                                   np.concatenate([clip[:4410], np.full((40000, 1), 1e-40, np.float32)]), subtype="FLOAT")
    files["silence-then-tone"] = write(folder / "late.wav", np.concatenate([np.zeros((22050, 1), np.float32), clip]))
    spaced = folder / "with spaces" / "my take 1.wav"
    spaced.parent.mkdir()
    files["path-with-spaces"] = write(spaced, clip)
    files["path-unicode"] = write(folder / "mélodie – 音色 ✓.wav", clip)
    files["flac-named-wav"] = folder / "flac-inside.wav"
    soundfile.write(str(files["flac-named-wav"]), clip, 44100, format="FLAC")
    files["wav-named-mp3"] = folder / "wav-inside.mp3"
    soundfile.write(str(files["wav-named-mp3"]), clip, 44100, format="WAV")
    return files


def _cut(source: Path, target: Path, n_bytes: int) -> Path:
    target.write_bytes(source.read_bytes()[:n_bytes])
    return target


def _scramble(source: Path, target: Path, start: int, length: int, seed: int = 0) -> Path:
    data = bytearray(source.read_bytes())
    data[start:start + length] = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target


def refused_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files that must be refused: case name -> (path, fragment of the message)."""
    folder.mkdir(parents=True, exist_ok=True)
    clip = tone()
    sources = {
        "wav": write(folder / "src.wav", clip, subtype="PCM_16"),
        "wav64": write(folder / "src64.wav", clip, subtype="DOUBLE"),
        "flac": write(folder / "src.flac", clip),
        "mp3": write(folder / "src.mp3", clip),
        "ogg": write(folder / "src.ogg", clip),
        "aiff": write(folder / "src.aiff", clip),
    }
    unreadable = "Could not read"
    cases: dict[str, tuple[Path, str]] = {
        "missing": (folder / "nope.wav", "does not exist"),
        "directory": (folder, "is a directory"),
        "empty": (folder / "empty.wav", "is empty"),
        "text-as-wav": (folder / "notes.wav", unreadable),
        "unknown-extension": (folder / "take.m4a", unreadable),
        "no-extension-garbage": (folder / "take", unreadable),
    }
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("these are not samples\n" * 50)
    # Random bytes; not starting with an MPEG frame sync (0xFFE), which any MP3 decoder,
    # ours included, would play as noise: MP3 has no magic number to tell it from garbage.
    garbage = b"\x00" + np.random.default_rng(1).integers(0, 256, 30000, dtype=np.uint8).tobytes()
    (folder / "take.m4a").write_bytes(garbage)
    (folder / "take").write_bytes(garbage)
    for kind in ("wav", "flac", "mp3", "ogg", "aiff"):
        random_file = folder / f"random.{kind}"
        random_file.write_bytes(garbage)
        cases[f"random-bytes-{kind}"] = (random_file, unreadable)
        # The first 16 bytes (magic number and sizes) scrambled.
        cases[f"corrupt-header-{kind}"] = (_scramble(sources[kind], folder / f"badhead.{kind}", 0, 16), unreadable)
    for kind, fragment in (("wav", "cut short"), ("aiff", "cut short"), ("flac", unreadable)):
        cases[f"truncated-header-{kind}"] = (_cut(sources[kind], folder / f"cut30.{kind}", 30), fragment)
    cases["truncated-half-ogg"] = (_cut(sources["ogg"], folder / "half.ogg", sources["ogg"].stat().st_size // 2), unreadable)
    cases["truncated-header-mp3"] = (_cut(sources["mp3"], folder / "cut30.mp3", 30), "no samples")
    # A 64-bit float WAV cut before its data chunk crashes pedalboard's decoder itself.
    cases["truncated-before-data-wav64"] = (_cut(sources["wav64"], folder / "cut48.wav", 48), "cut short")
    cases["truncated-before-data-wav"] = (_cut(sources["wav"], folder / "cut40.wav", 40), "cut short")
    # Headers that promise samples the file does not hold: refused, never read as silence.
    wav_bytes = sources["wav"].read_bytes()
    data_start = wav_bytes.index(b"data") + 8
    cases["header-only-wav"] = (_cut(sources["wav"], folder / "header-only.wav", data_start), "cut short")
    cases["cut-midway-wav"] = (_cut(sources["wav"], folder / "cut-midway.wav", (data_start + len(wav_bytes)) // 2),
                               "cut short")
    cases["zero-length-wav"] = (write(folder / "zero.wav", np.zeros((0, 1), np.float32), subtype="FLOAT"), "no samples")
    for name, value in (("nan", np.nan), ("inf", np.inf), ("minus-inf", -np.inf)):
        data = clip.copy()
        data[1000] = value
        cases[f"{name}-sample"] = (write(folder / f"{name}.wav", data, subtype="FLOAT"), "NaN or infinite")
    stereo = tone(channels=2)
    stereo[500, 1] = np.nan
    cases["nan-in-one-channel"] = (write(folder / "nan-right.wav", stereo, subtype="FLOAT"), "NaN or infinite")
    opposite = tone(channels=2)
    opposite[500] = (np.inf, -np.inf)
    cases["inf-cancelling-channels"] = (write(folder / "inf-pair.wav", opposite, subtype="FLOAT"), "NaN or infinite")
    cases["absurd-level"] = (write(folder / "absurd.wav", clip * 1e30, subtype="FLOAT"), "past full scale")
    return cases


def silent_files(folder: Path) -> dict[str, Path]:
    """Readable but silent clips: fine as an input, refused as a target."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "digital-silence": write(folder / "silence.wav", np.zeros((44100, 1), np.float32)),
        "denormals-only": write(folder / "denormals-only.wav", np.full((44100, 1), 1e-40, np.float32), subtype="FLOAT"),
        "below-minus-100-dbfs": write(folder / "hiss.wav", clip_at(1e-6), subtype="FLOAT"),
    }


def clip_at(peak: float) -> np.ndarray:
    clip = tone()
    return (clip / np.max(np.abs(clip)) * peak).astype(np.float32)

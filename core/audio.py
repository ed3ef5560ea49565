"""Audio I/O and validation.

Reading goes through ``pedalboard.io`` (wav, flac, mp3, ogg, aiff); everything is
converted to mono float32 at 44.1 kHz and fitted to a fixed duration. Only as much of
a long file as needed is read. Writing is atomic: a temporary file renamed at the end,
so a failed write leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import numpy as np

from serumrnn.core.errors import AudioError, OutputError
from serumrnn.core.runtime import atomic_output

SAMPLE_RATE = 44100
DURATION_S = 1.0
# Below this peak a clip counts as silent (about -100 dBFS).
SILENCE_PEAK = 1e-5
# Float files may go past full scale, but not 80 dB past it: such samples are damage, and
# their spectra overflow float32 into inf/NaN distances.
MAX_PEAK = 1e4


def _describe(path: Path) -> str:
    return f"'{path}'"


def load_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int = SAMPLE_RATE,
    duration_s: float | None = DURATION_S,
    allow_silent: bool = True,
) -> np.ndarray:
    """Read an audio file as mono float32 at ``sample_rate``.

    Parameters
    ----------
    path: wav, flac, mp3, ogg or aiff file.
    duration_s: fit to exactly this many seconds (trim or zero-pad); ``None`` keeps the
        whole file.
    allow_silent: refuse an all-silent clip when False.

    Returns
    -------
    float32 array, shape ``(n_samples,)``.
    """
    from pedalboard.io import AudioFile

    path = Path(path)
    if not path.exists():
        raise AudioError(f"Audio file {_describe(path)} does not exist; check the path.")
    if path.is_dir():
        raise AudioError(f"{_describe(path)} is a directory, not an audio file; give a wav, flac, mp3, ogg or aiff file.")
    if path.stat().st_size == 0:
        raise AudioError(f"Audio file {_describe(path)} is empty (0 bytes); give a real recording.")
    _check_has_sample_chunk(path)
    try:
        with AudioFile(str(path)) as source:
            native_rate = source.samplerate
            stream = source.resampled_to(sample_rate) if native_rate != sample_rate else source
            if stream.frames == 0:
                raise AudioError(f"Audio file {_describe(path)} holds no samples (zero-length audio); give a real recording.")
            if duration_s is None:
                frames = stream.frames
            else:
                frames = min(stream.frames, int(round(duration_s * sample_rate)) + 1)
            data = stream.read(frames)
    except (ValueError, RuntimeError, OSError, EOFError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = reason.replace(f'file "{path}" ', "")  # the decoder repeats the path we already name
        raise AudioError(
            f"Could not read {_describe(path)} as audio ({reason.rstrip('.')}); "
            "give a wav, flac, mp3, ogg or aiff file."
        ) from None
    audio = np.asarray(data, dtype=np.float32)
    if audio.size == 0:
        raise AudioError(f"Audio file {_describe(path)} holds no samples (zero-length audio); give a real recording.")
    if audio.ndim == 2:  # (channels, frames); inf - inf gives NaN, which check_audio reports
        with np.errstate(all="ignore"):
            audio = audio.mean(axis=0)
    return check_audio(audio, name=_describe(path), sample_rate=sample_rate, duration_s=duration_s,
                       allow_silent=allow_silent)


def check_audio(
    audio: np.ndarray,
    *,
    name: str = "the audio",
    sample_rate: int = SAMPLE_RATE,
    duration_s: float | None = DURATION_S,
    allow_silent: bool = True,
) -> np.ndarray:
    """Validate audio given as an array and return it mono float32, fitted to ``duration_s``.

    Accepts shape ``(n_samples,)``, ``(channels, n_samples)`` or ``(n_samples, channels)``
    (the shorter axis is taken as channels), integer PCM (scaled to [-1, 1]) or float.
    """
    array = np.asarray(audio)
    if array.dtype.kind not in "iuf":
        raise AudioError(f"{name} is not numeric audio (dtype {array.dtype}); give float or integer samples.")
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        midpoint = (int(info.max) + int(info.min) + 1) / 2
        array = (array.astype(np.float64) - midpoint) / (info.max - midpoint)
    if array.ndim == 2:
        channel_axis = 0 if array.shape[0] <= array.shape[1] else 1
        with np.errstate(all="ignore"):
            array = array.mean(axis=channel_axis)
    elif array.ndim != 1:
        raise AudioError(f"{name} has shape {array.shape}; give mono (n,) or multichannel (channels, n) audio.")
    if array.size == 0:
        raise AudioError(f"{name} holds no samples (zero-length audio); give a real recording.")
    if not np.all(np.isfinite(array)):
        raise AudioError(f"{name} contains NaN or infinite samples; export it again from your audio tool.")
    peak = float(np.max(np.abs(array)))
    if peak > MAX_PEAK:
        raise AudioError(
            f"{name} has samples up to {peak:.3g}, {20 * np.log10(peak):.0f} dB past full scale; "
            "it is damaged or not audio, export it again from your audio tool."
        )
    array = array.astype(np.float32)
    if duration_s is not None:
        array = fit_length(array, int(round(duration_s * sample_rate)))
    if not allow_silent and is_silent(array):
        raise AudioError(f"{name} is silent; give a sound with audible content.")
    return array


# Container magic -> (byte order of chunk sizes, form types, the chunk holding the samples).
_CHUNKED_CONTAINERS = {
    b"RIFF": ("<", (b"WAVE",), b"data"),
    b"RF64": ("<", (b"WAVE",), b"data"),
    b"FORM": (">", (b"AIFF", b"AIFC"), b"SSND"),
}


def _check_has_sample_chunk(path: Path) -> None:
    """Refuse a WAV or AIFF file cut before its sample chunk, before the decoder sees
    it: pedalboard crashes the whole process on a 64-bit float WAV without one, and
    reads a cut AIFF as silence at a made-up rate. Reads only the chunk headers."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        container = _CHUNKED_CONTAINERS.get(head[:4]) if len(head) == 12 else None
        if container is None or head[8:12] not in container[1]:
            return  # another format: the decoder decides
        order, _, sample_chunk = container
        size = path.stat().st_size
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack(order + "4sI", handle.read(8))
            if chunk_id == sample_chunk:
                # 0 and 0xFFFFFFFF are what streaming writers put before they know the size.
                promised = chunk_size not in (0, 0xFFFFFFFF)
                held = size - (offset + 8)
                if promised and held < chunk_size:
                    raise AudioError(
                        f"Audio file {_describe(path)} is cut short: its header promises {chunk_size:,} bytes of "
                        f"audio but only {max(held, 0):,} are there; export it again."
                    )
                return
            offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
    raise AudioError(
        f"Audio file {_describe(path)} is cut short before its audio data; export it again."
    )


def looks_like_audio_path(text: str) -> bool:
    """Whether a command argument means a file rather than a preset name: it exists, or
    it has a file extension (preset names have none), so a mistyped file name gets the
    file's error, not an unknown-preset one."""
    path = Path(text)
    return path.exists() or bool(path.suffix)


def fit_length(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Trim or zero-pad ``audio`` (shape ``(n,)``) to ``n_samples``."""
    if audio.shape[0] >= n_samples:
        return np.ascontiguousarray(audio[:n_samples])
    return np.pad(audio, (0, n_samples - audio.shape[0]))


def is_silent(audio: np.ndarray) -> bool:
    return audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono float32 audio (shape ``(n_samples,)``) as a 32-bit float WAV, atomically."""
    from pedalboard.io import AudioFile

    target = Path(path)
    with atomic_output(target, suffix=".wav") as temp:
        try:
            with AudioFile(str(temp), "w", samplerate=sample_rate, num_channels=1, bit_depth=32) as out:
                out.write(np.asarray(audio, dtype=np.float32).reshape(1, -1))
        except RuntimeError:
            # pedalboard reports a failed write (full disk, file-size limit) without its errno.
            raise OSError(errno.EIO, "the audio writer could not write every sample, the disk may be full") from None
    return target

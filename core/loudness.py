"""The loudness convention: the one level every sound has before features or metrics.

Under ``lufs-14`` (the default since the round-2 bundles, docs/design.md "Loudness") a
sound is scaled to an integrated loudness of -14 LUFS (ITU-R BS.1770, measured with
pyloudnorm), but never past a sample peak of 0.99. It applies to:

- the source that enters a chain (a synth render, a user's input file or array), so an
  effect's knobs mean the same whatever level the user recorded at;
- what comes out of a chain (every dataset render, every session step, the target), so a
  distance never measures a level difference that no knob was asked to make.

Both gains depend only on the sound's shape, so a sound 12 dB quieter or louder comes out
identical. ``none`` is the convention of bundles trained before it existed: sounds are
used at the level they come in (the built-in synth peaks at 0.8).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from serumrnn.core.errors import BundleError

# Below this peak a sound is treated as silence and left alone (about -100 dBFS).
_SILENT_PEAK = 1e-5


@attrs.frozen
class LoudnessConvention:
    """How sounds are levelled; ``target_lufs`` None means "as they come" (``none``)."""

    name: str
    target_lufs: float | None = None
    peak_ceiling: float = 0.99

    @property
    def levels(self) -> bool:
        return self.target_lufs is not None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "target_lufs": self.target_lufs, "peak_ceiling": self.peak_ceiling,
                "meter": "ITU-R BS.1770-4 (pyloudnorm)" if self.levels else None}

    def gain(self, audio: np.ndarray, sample_rate: int) -> float:
        """The factor that brings ``audio`` (float, ``(n_samples,)``) to the convention."""
        if not self.levels:
            return 1.0
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak < _SILENT_PEAK:
            return 1.0
        loudness = _integrated_loudness(audio, sample_rate)
        # A sound quieter than the meter's absolute gate everywhere has no defined loudness:
        # fall back on the peak alone.
        level_gain = 10.0 ** ((self.target_lufs - loudness) / 20.0) if math.isfinite(loudness) else math.inf
        return min(level_gain, self.peak_ceiling / peak)

    def apply(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """``audio`` scaled to the convention, float32 ``(n_samples,)`` (unchanged under ``none``)."""
        if not self.levels:
            return audio
        return (np.asarray(audio, dtype=np.float32) * np.float32(self.gain(audio, sample_rate))).astype(np.float32)


NONE = LoudnessConvention("none")
LUFS_14 = LoudnessConvention("lufs-14", target_lufs=-14.0)
DEFAULT = LUFS_14
CONVENTIONS = {convention.name: convention for convention in (NONE, LUFS_14)}


def convention_named(name: str, *, where: str = "") -> LoudnessConvention:
    """The convention called ``name``; one sentence when this version cannot apply it."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise BundleError(
            f"{where or 'This bundle'} was trained under the loudness convention {name!r}, which this version "
            f"of serumrnn cannot apply (it knows {', '.join(CONVENTIONS)}); upgrade serumrnn or use another bundle."
        ) from None


def convention_from_json(data: Mapping[str, Any] | None, *, where: str = "") -> LoudnessConvention:
    """The convention a bundle or dataset records; none recorded means ``none`` (older files)."""
    if data is None:
        return NONE
    if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
        raise BundleError(f"{where or 'This bundle'} records its loudness convention in an unreadable form; "
                          "retrain it or use another bundle.")
    convention = convention_named(data["name"], where=where)
    if convention.to_json()["target_lufs"] != data.get("target_lufs"):
        raise BundleError(f"{where or 'This bundle'} records loudness convention {data['name']!r} with other "
                          "settings than this version's; use a matching bundle.")
    return convention


@functools.lru_cache(maxsize=8)
def _meter(sample_rate: int):
    import pyloudnorm

    return pyloudnorm.Meter(sample_rate)


def _integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness in LUFS (-inf when every block is gated out)."""
    samples = np.asarray(audio, dtype=np.float64)
    block = int(round(0.4 * sample_rate))
    if samples.shape[0] < block:  # the meter needs one 400 ms block
        samples = np.pad(samples, (0, block - samples.shape[0]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyloudnorm warns on values past full scale; we cap the peak anyway
        return float(_meter(int(sample_rate)).integrated_loudness(samples))

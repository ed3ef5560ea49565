"""The five built-in effects of the rack, in rack order."""

from __future__ import annotations

from serumrnn.effects.compressor import MultibandCompressor
from serumrnn.effects.distortion import Distortion
from serumrnn.effects.eq import HighBandEQ
from serumrnn.effects.phaser import Phaser
from serumrnn.effects.reverb import HallReverb

BUILTIN_EFFECTS = (MultibandCompressor(), Distortion(), HighBandEQ(), Phaser(), HallReverb())

__all__ = [
    "BUILTIN_EFFECTS",
    "Distortion",
    "HallReverb",
    "HighBandEQ",
    "MultibandCompressor",
    "Phaser",
]

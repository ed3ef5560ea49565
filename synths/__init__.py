"""Synths shipped with serumrnn."""

from serumrnn.synths.builtin import BuiltinSynth

__all__ = ["BuiltinSynth"]

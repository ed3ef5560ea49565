"""Error hierarchy. Every user-facing failure is a ``SerumRNNError`` whose message is
one sentence saying what went wrong, where, and what to do."""

from __future__ import annotations


class SerumRNNError(Exception):
    """Base class for all errors serumrnn reports to a user."""


class ParameterError(SerumRNNError, ValueError):
    """A knob, effect chain, preset or option value is invalid."""


class AudioError(SerumRNNError):
    """An audio file or array cannot be used (missing, unreadable, silent, NaN...)."""


class PluginError(SerumRNNError):
    """A plugin, registry name or hook implementation is invalid or unknown."""


class BundleError(SerumRNNError):
    """A model bundle is missing, corrupt, or made for another rack or setting."""


class DatasetError(SerumRNNError):
    """A dataset directory is missing, corrupt, or made with another config."""


class OutputError(SerumRNNError):
    """An output location cannot be written (unwritable path, full disk)."""

"""serumrnn core: the public Python API.

Heavy modules (torch, librosa) are imported lazily where they are used, so importing
``serumrnn.core`` stays fast.
"""

from serumrnn.core.errors import (
    AudioError,
    BundleError,
    DatasetError,
    OutputError,
    ParameterError,
    PluginError,
    SerumRNNError,
)
from serumrnn.core.hookspecs import hookimpl
from serumrnn.core.interfaces import Effect, Preset, Synth
from serumrnn.core.params import ParamSpec
from serumrnn.core.rack import Rack, RackSpec
from serumrnn.core.registry import PluginManager, Registry, get_plugin_manager, reset_plugin_manager
from serumrnn.core.session import Session, suggest

__all__ = [
    "AudioError",
    "BundleError",
    "DatasetError",
    "Effect",
    "OutputError",
    "ParamSpec",
    "ParameterError",
    "PluginError",
    "PluginManager",
    "Preset",
    "Rack",
    "RackSpec",
    "Registry",
    "SerumRNNError",
    "Session",
    "Synth",
    "get_plugin_manager",
    "hookimpl",
    "reset_plugin_manager",
    "suggest",
]

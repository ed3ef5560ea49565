"""serumrnn core: the public Python API. What a plugin implements comes from
``core/interfaces.py`` and is re-exported here.

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
from serumrnn.core.interfaces import (
    Effect,
    FeatureExtractor,
    ParamSpec,
    Preset,
    Rack,
    RackSpec,
    SelectionState,
    Selector,
    Synth,
)
from serumrnn.core.registry import PluginManager, Registry, get_plugin_manager, reset_plugin_manager
from serumrnn.core.session import Session, suggest

__all__ = [
    "AudioError",
    "BundleError",
    "DatasetError",
    "Effect",
    "FeatureExtractor",
    "OutputError",
    "ParamSpec",
    "ParameterError",
    "PluginError",
    "PluginManager",
    "Preset",
    "Rack",
    "RackSpec",
    "Registry",
    "SelectionState",
    "Selector",
    "SerumRNNError",
    "Session",
    "Synth",
    "get_plugin_manager",
    "hookimpl",
    "reset_plugin_manager",
    "suggest",
]

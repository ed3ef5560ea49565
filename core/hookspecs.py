"""Hook specifications: the extension points of serumrnn.

Every registration hook receives a ``register`` callable; call it once per object.
The core owns duplicate-name errors and ordering. Objects are identified by their
``name`` attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "serumrnn"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[Any], None]


@hookspec
def serumrnn_register_synths(register: Register) -> None:
    """Register ``Synth`` instances: ``register(synth)``."""


@hookspec
def serumrnn_register_effects(register: Register) -> None:
    """Register ``Effect`` instances: ``register(effect)``."""


@hookspec
def serumrnn_register_feature_extractors(register: Register) -> None:
    """Register ``FeatureExtractor`` instances: ``register(extractor)``."""


@hookspec
def serumrnn_register_selectors(register: Register) -> None:
    """Register selector factories (objects with ``name`` and ``create(...)``)."""


@hookspec
def serumrnn_register_racks(register: Register) -> None:
    """Register ``RackSpec`` objects: a name, a description, how to build the rack
    and whether it is available on this machine."""

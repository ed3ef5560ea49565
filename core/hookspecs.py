"""Hook specifications: the extension points of serumrnn (``docs/plugins.md``).

Every registration hook receives a ``register`` callable; call it once per object. The
plugin manager (``core/registry.py``) checks each object against its interface
(``core/interfaces.py``), refuses a second object of the same ``name`` and keeps the
built-ins first. Nothing else is called on a plugin module.
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
def serumrnn_register_selectors(register: Register) -> None:
    """Register ``Selector`` instances: ``register(selector)``; sessions call its
    ``probabilities(state)`` to rank the effects."""


@hookspec
def serumrnn_register_racks(register: Register) -> None:
    """Register ``RackSpec`` objects: a name, a description, how to build the rack
    (``build(manager) -> Rack``, called once, on first use) and whether it is available
    on this machine."""

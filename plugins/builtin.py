"""The built-in plugin: the built-in synth, the five effects, the built-in selectors
(rnn, ni, cnn, cnn-1s, random, oracle) and the ``builtin`` rack, registered through the
same hooks as any plugin's."""

from __future__ import annotations

from serumrnn.core import RackSpec, hookimpl
from serumrnn.core.rack import Rack

BUILTIN_EFFECT_ORDER = ("compressor", "distortion", "eq", "phaser", "reverb")


@hookimpl
def serumrnn_register_synths(register):
    from serumrnn.synths.builtin import BuiltinSynth

    register(BuiltinSynth())


@hookimpl
def serumrnn_register_effects(register):
    from serumrnn.effects import BUILTIN_EFFECTS

    for effect in BUILTIN_EFFECTS:
        register(effect)


@hookimpl
def serumrnn_register_selectors(register):
    from serumrnn.core.selectors import BUILTIN_SELECTORS

    for selector in BUILTIN_SELECTORS:
        register(selector)


def _build_builtin_rack(manager) -> Rack:
    return Rack(
        "builtin",
        manager.synths.get("builtin"),
        [manager.effects.get(name) for name in BUILTIN_EFFECT_ORDER],
        description="Built-in synth (12 presets) and five built-in effects",
    )


@hookimpl
def serumrnn_register_racks(register):
    register(
        RackSpec(
            name="builtin",
            description="Built-in synth (12 presets) and the five built-in effects",
            build=_build_builtin_rack,
        )
    )

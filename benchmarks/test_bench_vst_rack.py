"""Render time of the linux-vst rack (real VST2 plugins through DawDreamer) against the
built-in rack, for the same chains in one run; ``summary.py`` prints both and
``docs/RESULTS.md`` quotes the ratio. Skipped where the Debian plugins are missing."""

import numpy as np
import pytest

from serumrnn.core.params import sample_knobs

ORDER = ("compressor", "distortion", "eq", "phaser", "reverb")


@pytest.fixture(scope="module")
def racks():
    from serumrnn.core import get_plugin_manager

    manager = get_plugin_manager()
    available, reason = manager.racks.get("linux-vst").availability()
    if not available:
        pytest.skip(f"linux-vst rack unavailable: {reason}")
    return {name: manager.rack(name) for name in ("builtin", "linux-vst")}


@pytest.mark.parametrize("rack_name", ["builtin", "linux-vst"])
@pytest.mark.parametrize("chain_effects", [("distortion",), ("compressor", "eq"), ORDER], ids=len)
def test_render_same_chain(benchmark, racks, rack_name, chain_effects):
    rack = racks[rack_name]
    rng = np.random.default_rng(len(chain_effects))
    # the same knob values on both racks: both racks share knob names and sampling ranges
    chain = [(name, sample_knobs(racks["builtin"].effect(name).params, rng)) for name in chain_effects]
    rack.dry("saw")  # the dry render is cached, as in a session or dataset generation
    benchmark.extra_info.update(audio_seconds=rack.duration_s, kind="render", rack=rack_name,
                                effects=len(chain_effects))
    audio = benchmark.pedantic(rack.render, args=("saw", chain), rounds=7, warmup_rounds=1)
    assert audio.shape == (44100,)


@pytest.mark.parametrize("effect", ORDER)
def test_linux_vst_single_effect(benchmark, racks, effect):
    rack = racks["linux-vst"]
    knobs = sample_knobs(rack.effect(effect).params, np.random.default_rng(1))
    dry = rack.dry("saw")
    benchmark.extra_info.update(audio_seconds=rack.duration_s, kind="effect", rack="linux-vst", effect=effect)
    benchmark.pedantic(rack.effect(effect).process, args=(dry, rack.sample_rate, knobs), rounds=7, warmup_rounds=1)

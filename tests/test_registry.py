import numpy as np
import pytest

import serumrnn.core
from serumrnn.core import Effect, ParamSpec, PluginError, PluginManager, Rack, RackSpec, hookimpl
from serumrnn.core import interfaces


class Gain(Effect):
    name = "gain"
    label = "Gain"
    params = (ParamSpec("amount", "continuous", default=1.0),)

    def _process(self, audio, sample_rate, knobs):
        return audio * knobs["amount"]


class GainPlugin:
    @hookimpl
    def serumrnn_register_effects(self, register):
        register(Gain())

    @hookimpl
    def serumrnn_register_racks(self, register):
        def build(manager):
            return Rack("gain-rack", manager.synths.get("builtin"), [manager.effects.get("gain")])

        register(RackSpec(name="gain-rack", description="builtin synth with a gain", build=build))


def test_builtin_plugin_registers_everything():
    manager = PluginManager(load_entrypoints=False)
    assert manager.effects.names() == ["compressor", "distortion", "eq", "phaser", "reverb"]
    assert manager.synths.names() == ["builtin"]
    assert manager.selectors.names() == ["rnn", "ni", "cnn", "cnn-1s", "random", "oracle"]
    assert "builtin" in manager.racks
    contributions = manager.plugin_contributions()["serumrnn.plugins.builtin"]
    assert contributions["effect"] == manager.effects.names()
    assert contributions["selector"] == manager.selectors.names()


def test_core_reexports_every_plugin_interface():
    for name in interfaces.__all__:
        assert getattr(serumrnn.core, name) is getattr(interfaces, name)


@pytest.mark.parametrize("hook, kind", [("serumrnn_register_effects", "effect"),
                                        ("serumrnn_register_selectors", "selector"),
                                        ("serumrnn_register_racks", "rack")])
def test_an_object_that_is_not_its_interface_is_refused(hook, kind):
    class NamedOnly:
        name = "impostor"

    class Impostor:
        pass

    setattr(Impostor, hook, hookimpl(lambda self, register: register(NamedOnly())))
    with pytest.raises(PluginError, match=f"registered {kind} 'impostor', which is not a"):
        PluginManager(load_entrypoints=False, extra_plugins=(Impostor(),))


def test_inline_plugin_adds_an_effect_and_a_rack_after_the_builtins():
    manager = PluginManager(load_entrypoints=False, extra_plugins=(GainPlugin(),))
    assert manager.effects.names()[-1] == "gain"
    rack = manager.rack("gain-rack")
    dry = rack.render("saw")
    np.testing.assert_allclose(rack.render("saw", [("gain", {"amount": 0.5})]), 0.5 * dry, atol=1e-7)


def test_duplicate_names_are_refused():
    class Twice:
        @hookimpl
        def serumrnn_register_effects(self, register):
            register(Gain())

    with pytest.raises(PluginError, match="already registered"):
        PluginManager(load_entrypoints=False, extra_plugins=(Twice(), GainPlugin()))


def test_unknown_names_list_the_known_ones():
    manager = PluginManager(load_entrypoints=False)
    with pytest.raises(PluginError, match="Unknown effect 'flanger'; known: compressor"):
        manager.effects.get("flanger")


def test_block_list_disables_the_builtin_plugin(monkeypatch):
    monkeypatch.setenv("SERUMRNN_DISABLE_PLUGINS", "serumrnn.plugins.builtin")
    manager = PluginManager(load_entrypoints=False)
    assert len(manager.effects) == 0


def test_allow_list_keeps_only_named_plugins(monkeypatch):
    monkeypatch.setenv("SERUMRNN_LOAD_PLUGINS", "something-else")
    assert len(PluginManager(load_entrypoints=False).synths) == 0
    monkeypatch.setenv("SERUMRNN_LOAD_PLUGINS", "serumrnn.plugins.builtin")
    assert len(PluginManager(load_entrypoints=False).synths) == 1


def test_hook_with_a_misspelt_name_is_refused():
    class Misspelt:
        @hookimpl
        def serumrnn_register_efects(self, register):
            pass

    with pytest.raises(Exception, match="unknown hook"):
        PluginManager(load_entrypoints=False, extra_plugins=(Misspelt(),))


def test_rack_caches_dry_render_and_refuses_bad_chains(rack):
    assert rack.dry("saw") is rack.dry("saw")
    from serumrnn.core.errors import ParameterError

    with pytest.raises(ParameterError, match="twice"):
        rack.render("saw", [("eq", {}), ("eq", {})])
    with pytest.raises(ParameterError, match="no effect 'flanger'"):
        rack.render("saw", [("flanger", {})])
    with pytest.raises(ParameterError, match="no preset"):
        rack.render("kazoo")

"""A real third-party plugin package (tests/example_plugin) installed with pip and found
through its ``serumrnn`` entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent / "example_plugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    # Installed into its own target folder put on PYTHONPATH, so the venv stays clean
    # for the other tests whatever happens here.
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(EXAMPLE)],
        check=True, capture_output=True,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    return env


def _serumrnn(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "serumrnn.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True)


def test_plugin_shows_in_plugins_listing(plugin_env):
    result = _serumrnn(plugin_env, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["tremolo"]["effect"] == ["tremolo"]
    assert listing["tremolo"]["rack"] == ["builtin-tremolo"]
    assert listing["tremolo"]["selector"] == ["tremolo-first"]


def test_plugin_effect_is_usable_in_render(plugin_env, tmp_path):
    out = tmp_path / "trem.wav"
    result = _serumrnn(plugin_env, "render", "saw", "--rack", "builtin-tremolo",
                       "--fx", "tremolo:rate=0.8,depth=1", "--fx", "reverb:mix=0.5", "-o", str(out))
    assert result.returncode == 0, result.stderr
    from serumrnn.core.audio import load_audio
    from serumrnn.core import get_plugin_manager

    rendered = load_audio(out)
    dry = get_plugin_manager().rack("builtin").render("saw", [("reverb", {"mix": 0.5})])
    assert abs(rendered - dry).mean() > 0.01


def test_suggest_uses_the_plugin_selector_and_searches_the_plugin_effect(plugin_env, tmp_path):
    # The tremolo has no parameter model (no bundle knows the builtin-tremolo rack), so
    # search alone finds its knobs, starting from their defaults.
    target = tmp_path / "target.wav"
    rendered = _serumrnn(plugin_env, "render", "saw", "--rack", "builtin-tremolo",
                         "--fx", "tremolo:rate=0.8,depth=1", "-o", str(target))
    assert rendered.returncode == 0, rendered.stderr
    result = _serumrnn(plugin_env, "suggest", "saw", str(target), "--rack", "builtin-tremolo",
                       "--selector", "tremolo-first", "--top-k", "1", "--max-renders", "12", "--json")
    assert result.returncode == 0, result.stderr
    session = json.loads(result.stdout)
    assert session["rack"] == "builtin-tremolo" and session["selector"] == "tremolo-first"
    effects = [step["effect"] for step in session["steps"]]
    # With one candidate a step, the steps follow the plugin selector's ranking exactly.
    assert effects == ["tremolo", "compressor", "distortion", "eq", "phaser", "reverb"][: len(effects)]
    first = session["steps"][0]
    assert first["mode"] == "searched" and first["better"]
    assert set(first["knobs"]) == {"rate", "depth"} and first["knobs"] != {"rate": 0.5, "depth": 0.5}
    assert session["best_step"] == 1


def test_block_list_hides_the_plugin(plugin_env):
    env = dict(plugin_env, SERUMRNN_DISABLE_PLUGINS="tremolo")
    listing = json.loads(_serumrnn(env, "plugins", "--json").stdout)
    assert "tremolo" not in listing

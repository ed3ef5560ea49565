import json

import numpy as np
import pytest
from typer.testing import CliRunner

from serumrnn.cli.app import app
from serumrnn.core.audio import load_audio, write_wav

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_listing_commands_json():
    plugins = json.loads(invoke("plugins", "--json").stdout)
    assert plugins["serumrnn.plugins.builtin"]["synth"] == ["builtin"]
    presets = json.loads(invoke("presets", "--json").stdout)
    listed = [p for p in presets if not p["generated"]]
    assert len(listed) == 12 and {p["group"] for p in listed} == {"basic", "advanced", "modulating"}
    assert [(p["group"], p["preset"]) for p in presets if p["generated"]] == [("varied", "varied-<seed>")]
    effects = json.loads(invoke("effects", "--json").stdout)
    assert [e["name"] for e in effects] == ["compressor", "distortion", "eq", "phaser", "reverb"]
    racks = json.loads(invoke("racks", "--json").stdout)
    assert racks[0]["name"] == "builtin" and racks[0]["available"]


def test_listing_commands_tables():
    for command in ("plugins", "presets", "effects", "racks"):
        result = invoke(command)
        assert result.exit_code == 0, result.output
    assert "x-shaper" in invoke("effects").stdout
    assert "vintage-bells" in invoke("presets").stdout


def test_render_writes_wav_and_png(tmp_path, rack):
    out, png = tmp_path / "out.wav", tmp_path / "out.png"
    result = invoke("render", "saw", "--fx", "distortion:mode=tube,drive=0.7", "--fx", "reverb:mix=0.5",
                    "-o", out, "--png", png)
    assert result.exit_code == 0, result.output
    expected = rack.render("saw", [("distortion", {"mode": 0.5 / 12, "drive": 0.7}), ("reverb", {"mix": 0.5})])
    np.testing.assert_allclose(load_audio(out), expected, atol=1e-6)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_an_audio_file_as_source(tmp_path, tone):
    source = write_wav(tmp_path / "in.wav", tone)
    out = tmp_path / "out.wav"
    assert invoke("render", source, "--fx", "eq:gain=1,frequency=0.7", "-o", out).exit_code == 0
    assert np.abs(load_audio(out) - tone).mean() > 1e-3


@pytest.mark.parametrize("effect", ["compressor", "distortion", "eq", "phaser", "reverb"])
def test_every_preset_with_each_single_effect_differs_from_dry(tmp_path, rack, effect):
    from serumrnn.core.params import sample_knobs

    rng = np.random.default_rng(7)
    spec = rack.effect(effect).params
    for preset in rack.synth.presets:
        knobs = sample_knobs(spec, rng)
        fx = f"{effect}:" + ",".join(f"{k}={v:.6f}" for k, v in knobs.items())
        out = tmp_path / f"{preset.name}.wav"
        result = invoke("render", preset.name, "--fx", fx, "-o", out)
        assert result.exit_code == 0, result.output
        difference = np.abs(load_audio(out) - rack.dry(preset.name)).mean()
        assert difference > 1e-4, (preset.name, knobs, difference)


def test_compare_identical_gives_zero_and_pcc_100(tmp_path, tone):
    path = write_wav(tmp_path / "x.wav", tone)
    result = invoke("compare", path, path, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["mse"] == 0 and metrics["mssmae"] == 0
    assert metrics["pcc"] == pytest.approx(100.0)


def test_compare_table_lists_six_metrics(tmp_path, tone):
    a = write_wav(tmp_path / "a.wav", tone)
    b = write_wav(tmp_path / "b.wav", 0.3 * tone)
    result = invoke("compare", a, b)
    assert result.exit_code == 0
    for name in ("MSE", "MAE", "LSD", "MFCCD", "PCC", "MSSMAE"):
        assert name in result.stdout


def test_demo_hides_a_chain_and_finds_steps(tmp_path, tiny_bundle):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--seed", 3, "--bundle", tiny_bundle, "--effects", 2)
    assert result.exit_code == 0, result.output
    assert "hidden chain" in result.stdout and "What serumrnn suggests" in result.stdout
    data = json.loads((out / "session.json").read_text())
    assert len(data["demo"]["hidden_chain"]) == 2 and data["steps"]
    assert (out / "progression.png").exists() and (out / "99-target.wav").exists()
    # a second run replaces the folder whole
    assert invoke("demo", "--out", out, "--seed", 4, "--bundle", tiny_bundle).exit_code == 0
    assert json.loads((out / "session.json").read_text())["demo"]["seed"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]

"""The ONNX inference backend: exports equal the torch models, sessions run them without
importing torch, and a bundle refuses a broken export or falls back to torch without one."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from serumrnn.core.audio import write_wav
from serumrnn.core.bundle import ModelBundle, param_model_name, selector_model_name
from serumrnn.core.errors import BundleError
from serumrnn.core.features import LibrosaFeatureExtractor
from serumrnn.core.model_kinds import applied_before_steps
from serumrnn.core.model_config import MODEL_SIZES
from serumrnn.core.models import LastStepSelector, build_model
from serumrnn.core.onnx_backend import OnnxModel, export_onnx
from serumrnn.core.session import BUNDLES_DIR, shipped_bundles

from test_bundle import identity, make_bundle, random_features  # noqa: F401 (identity is a fixture)

CHAINS = [[], [("distortion", {"mode": 0.3, "drive": 0.8})], [("reverb", {"mix": 0.5})],
          [("eq", {"frequency": 0.7, "gain": 0.2}), ("phaser", {"depth": 0.9})]]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def real_features():
    """Features of a dry preset and of it through a few chains (what sessions see)."""
    from serumrnn.core import get_plugin_manager

    rack = get_plugin_manager().rack("builtin")
    extractor = LibrosaFeatureExtractor()
    sounds = [rack.render(rack.dry(source), chain) for source in ("saw", "vintage-bells") for chain in CHAINS]
    return [extractor.extract(sound, rack.sample_rate) for sound in sounds]


@pytest.fixture(scope="module")
def both_backends():
    return ModelBundle.load(BUNDLES_DIR / "all"), ModelBundle.load(BUNDLES_DIR / "all", backend="torch")


def strip_exports(folder):
    """Make ``folder`` a bundle from before ONNX exports: no entries, no files; its meta."""
    meta = json.loads((folder / "bundle.json").read_text())
    for entry in meta["models"].values():
        del entry["onnx"]
    (folder / "bundle.json").write_text(json.dumps(meta))
    for path in folder.glob("*.onnx"):
        path.unlink()
    return meta


def copy_bundle(tmp_path, name="all"):
    folder = tmp_path / name
    shutil.copytree(BUNDLES_DIR / name, folder)
    return folder


# -- the exports equal the torch models ------------------------------------------------------------
def test_shipped_bundle_runs_onnx_with_the_torch_models_outputs(both_backends, real_features):
    onnx, torch_backend = both_backends
    assert all(onnx.uses_onnx(name) for name in onnx.model_names)
    assert not any(torch_backend.uses_onnx(name) for name in torch_backend.model_names)
    currents, targets = real_features[:-1], real_features[1:]
    for effect in onnx.effect_names:
        fast = onnx.predict_knobs_ranked(effect, currents, targets)
        slow = torch_backend.predict_knobs_ranked(effect, currents, targets)
        for (knobs, ranked), (expected, expected_ranked) in zip(fast, slow):
            assert list(knobs) == list(expected)
            for name in knobs:
                assert knobs[name] == pytest.approx(expected[name], abs=1e-4)
            for name in ranked:
                assert [value for value, _ in ranked[name]] == [value for value, _ in expected_ranked[name]]
                np.testing.assert_allclose([p for _, p in ranked[name]], [p for _, p in expected_ranked[name]], atol=1e-5)
    assert isinstance(onnx.runner(param_model_name("eq")), OnnxModel)
    assert isinstance(torch_backend.runner(param_model_name("eq")), torch.nn.Module)
    target = real_features[-1]
    for kind in ("rnn", "ni", "cnn"):
        for steps in range(1, 5):
            history, applied = real_features[:steps], list(onnx.effect_names[: steps - 1])
            np.testing.assert_allclose(onnx.selector_probabilities(kind, history, applied, target),
                                       torch_backend.selector_probabilities(kind, history, applied, target), atol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "ni"])
def test_last_step_selector_equals_the_packed_forward(both_backends, kind):
    """The exported selector skips the prefix expansion: row [0, -1] of the packed forward."""
    _, bundle = both_backends
    name = selector_model_name(kind)
    model, model_kind = bundle.model(name), bundle.model_kind(name)
    session = OnnxModel(export_onnx(model_kind, model, bundle.feature_settings), inputs=model_kind.onnx_inputs,
                        threads=1, what=name)
    rng = np.random.default_rng(5)
    settings = bundle.feature_settings
    for steps in range(1, 7):
        batch = model_kind.onnx_example(settings, steps, rng)
        batch["mfcc"] *= 50.0  # MFCCs are large
        batch["applied"] = applied_before_steps(rng.permutation(5)[: steps - 1].tolist(), 5, steps)[None]
        inputs = [torch.from_numpy(batch[key]) for key in ("mel", "mfcc", "applied")]
        with torch.inference_mode():
            packed = model(*inputs, torch.tensor([steps]))[0, -1]
            last = LastStepSelector(model)(*inputs)[0]
        torch.testing.assert_close(last, packed, atol=2e-6, rtol=0)
        np.testing.assert_allclose(session.run(batch)[0][0], packed.numpy(), atol=1e-5)


# -- sessions do not import torch --------------------------------------------------------------------
@pytest.fixture(scope="module")
def wav_pair(tmp_path_factory):
    from serumrnn.core import get_plugin_manager

    rack = get_plugin_manager().rack("builtin")
    folder = tmp_path_factory.mktemp("onnx-session")
    dry = rack.dry("saw")
    write_wav(folder / "input.wav", dry, rack.sample_rate)
    write_wav(folder / "target.wav", rack.render(dry, CHAINS[1] + CHAINS[2]), rack.sample_rate)
    return folder


def test_a_session_through_the_api_never_imports_torch(wav_pair):
    script = textwrap.dedent("""
        import json, sys
        from serumrnn.core.session import suggest
        session = suggest("input.wav", "target.wav")
        print(json.dumps({"steps": len(session.steps),
                          "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
                          "onnxruntime": "onnxruntime" in sys.modules}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=wav_pair, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["steps"] >= 1 and report["onnxruntime"]
    assert report["torch"] == []


def test_suggest_on_the_command_line_never_imports_torch(wav_pair):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "serumrnn.cli", "suggest", "input.wav", "target.wav",
                           "--no-search", "--json"], cwd=wav_pair, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "onnxruntime" in imported
    assert not [name for name in imported if name == "torch" or name.startswith("torch.")]


# -- which backend, and refusals ------------------------------------------------------------------
def test_add_model_writes_the_onnx_export_of_the_stored_weights(tmp_path, identity, rng):  # noqa: F811
    bundle, modules = make_bundle(tmp_path / "b", identity, float16=True)
    for name in bundle.model_names:
        entry = bundle.meta["models"][name]
        export = entry["onnx"]
        assert export["file"] == f"{name}.onnx"
        assert export["sha256"] == sha256(tmp_path / "b" / export["file"])
        assert export["weights_sha256"] == entry["sha256"] == sha256(tmp_path / "b" / entry["file"])
        assert "onnx_error" not in entry
    first = (tmp_path / "b" / "selector-rnn.onnx").read_bytes()
    bundle.add_model("selector-rnn", modules["selector-rnn"], task="rnn", config=MODEL_SIZES["compact"])
    assert (tmp_path / "b" / "selector-rnn.onnx").read_bytes() == first  # same weights, same bytes
    fast, slow = ModelBundle.load(tmp_path / "b"), ModelBundle.load(tmp_path / "b", backend="torch")
    current, target = random_features(rng), random_features(rng)
    for effect in identity.effects:
        a, b = fast.predict_knobs(effect, current, target), slow.predict_knobs(effect, current, target)
        assert a == pytest.approx(b, abs=1e-4)
    for kind in ("rnn", "ni", "cnn"):
        np.testing.assert_allclose(fast.selector_probabilities(kind, [current], [], target),
                                   slow.selector_probabilities(kind, [current], [], target), atol=1e-5)


def test_a_profile_parameter_model_exports_with_the_torch_outputs(tmp_path, identity, rng):  # noqa: F811
    bundle = ModelBundle.open_or_create(tmp_path / "b", **identity.bundle_kwargs())
    config = MODEL_SIZES["profile"]
    torch.manual_seed(3)
    model = build_model("params", identity.feature_settings, config, specs=identity.effects["eq"])
    bundle.add_model("params-eq", model, task="params", effect="eq", config=config)
    fast, slow = ModelBundle.load(tmp_path / "b"), ModelBundle.load(tmp_path / "b", backend="torch")
    assert fast.uses_onnx("params-eq")
    for _ in range(3):
        current, target = random_features(rng), random_features(rng)
        assert fast.predict_knobs("eq", current, target) == pytest.approx(
            slow.predict_knobs("eq", current, target), abs=1e-4)


def test_a_bundle_without_exports_runs_torch(tmp_path, identity, rng):  # noqa: F811
    bundle = ModelBundle.open_or_create(tmp_path / "b", **identity.bundle_kwargs())
    config = MODEL_SIZES["compact"]
    model = build_model("params", identity.feature_settings, config, specs=identity.effects["eq"])
    bundle.add_model("params-eq", model, task="params", effect="eq", config=config, onnx=False)
    assert "onnx" not in bundle.meta["models"]["params-eq"] and not (tmp_path / "b" / "params-eq.onnx").exists()
    loaded = ModelBundle.load(tmp_path / "b")
    assert not loaded.uses_onnx("params-eq")
    knobs = loaded.predict_knobs("eq", random_features(rng), random_features(rng))
    assert set(knobs) and isinstance(loaded.runner("params-eq"), torch.nn.Module)


def test_older_bundle_or_other_device_runs_torch(tmp_path, real_features):
    folder = copy_bundle(tmp_path)
    strip_exports(folder)
    older, onnx = ModelBundle.load(folder), ModelBundle.load(BUNDLES_DIR / "all")
    assert not any(older.uses_onnx(name) for name in older.model_names)
    a = older.predict_knobs("reverb", real_features[0], real_features[2])
    assert a == pytest.approx(onnx.predict_knobs("reverb", real_features[0], real_features[2]), abs=1e-4)
    assert not ModelBundle.load(BUNDLES_DIR / "all", device="cuda", build_models=False).uses_onnx("params-eq")


def test_a_stale_export_is_not_used(tmp_path):
    folder = copy_bundle(tmp_path)
    meta = json.loads((folder / "bundle.json").read_text())
    meta["models"]["params-eq"]["onnx"]["weights_sha256"] = "0" * 64  # exported from other weights
    (folder / "bundle.json").write_text(json.dumps(meta))
    bundle = ModelBundle.load(folder)
    assert not bundle.uses_onnx("params-eq") and bundle.uses_onnx("params-reverb")


def test_a_tampered_export_is_refused_in_one_sentence(tmp_path, real_features, wav_pair):
    folder = copy_bundle(tmp_path)
    export = folder / "selector-rnn.onnx"
    data = bytearray(export.read_bytes())
    data[len(data) // 2] ^= 0xFF
    export.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"selector-rnn.onnx of bundle .* is corrupt or truncated \(checksum mismatch\)"):
        ModelBundle.load(folder)
    lazy = ModelBundle.load(folder, build_models=False)  # as sessions load: refused on first use
    with pytest.raises(BundleError, match="corrupt or truncated"):
        lazy.selector_probabilities("rnn", real_features[:1], [], real_features[1])
    done = subprocess.run([sys.executable, "-m", "serumrnn.cli", "suggest", "input.wav", "target.wav", "--bundle",
                           str(folder), "--no-search"], cwd=wav_pair, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "corrupt or truncated" in done.stderr and "Traceback" not in done.stderr
    # a file that matches its recorded checksum but is no ONNX model
    export.write_bytes(b"not an onnx model")
    meta = json.loads((folder / "bundle.json").read_text())
    meta["models"]["selector-rnn"]["onnx"]["sha256"] = sha256(export)
    (folder / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"selector-rnn.onnx of bundle .* is not a valid ONNX model \(\w+\); export it"):
        ModelBundle.load(folder).runner("selector-rnn")
    meta["models"]["selector-rnn"]["onnx"]["file"] = "../selector-rnn.onnx"
    (folder / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="refusing to read it"):
        ModelBundle.load(folder)


# -- shipped bundles and the export command --------------------------------------------------------
@pytest.mark.parametrize("name", shipped_bundles())
def test_shipped_exports_match_their_weights(name):
    folder = BUNDLES_DIR / name
    meta = json.loads((folder / "bundle.json").read_text())
    assert meta["models"]
    for model, entry in meta["models"].items():
        assert entry["onnx"]["weights_sha256"] == entry["sha256"] == sha256(folder / entry["file"]), model
        assert entry["onnx"]["sha256"] == sha256(folder / entry["onnx"]["file"]), model


def test_export_command_adds_exports_and_leaves_weights(tmp_path):
    from typer.testing import CliRunner

    from serumrnn.cli.app import app

    folder = copy_bundle(tmp_path, "basic")
    weights = {path.name: path.read_bytes() for path in folder.glob("*.safetensors")}
    shipped = {path.name: path.read_bytes() for path in folder.glob("*.onnx")}
    meta = strip_exports(folder)
    result = CliRunner().invoke(app, ["bundle", "export-onnx", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["model"] for row in rows] == list(meta["models"]) and all(row["changed"] for row in rows)
    assert {path.name: path.read_bytes() for path in folder.glob("*.safetensors")} == weights
    assert {path.name: path.read_bytes() for path in folder.glob("*.onnx")} == shipped  # deterministic bytes
    assert all(ModelBundle.load(folder).uses_onnx(name) for name in meta["models"])
    again = CliRunner().invoke(app, ["bundle", "export-onnx", str(folder), "--json", "--model", "params-eq"])
    assert again.exit_code == 0 and json.loads(again.stdout) == [{**rows[[r["model"] for r in rows].index("params-eq")],
                                                                  "changed": False}]
    missing = CliRunner().invoke(app, ["bundle", "export-onnx", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "does not exist" in missing.output

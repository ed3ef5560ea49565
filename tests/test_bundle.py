"""Model bundles: round trip, inference API, and refusal of anything that does not fit."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from serumrnn.core.bundle import ModelBundle, param_model_name, selector_model_name
from serumrnn.core.errors import BundleError, ParameterError
from serumrnn.core.features import FeatureSettings, Features
from serumrnn.core.model_config import MODEL_SIZES
from serumrnn.core.models import build_model
from serumrnn.core.training import BundleIdentity


@pytest.fixture
def identity(rack) -> BundleIdentity:
    return BundleIdentity(
        rack_name=rack.name,
        effects={name: tuple(rack.effect(name).params) for name in rack.effect_names},
        preset_group="basic",
        feature_settings=FeatureSettings(),
        dataset_fingerprint="test-fingerprint",
    )


def make_bundle(path, identity: BundleIdentity, *, float16: bool = False, seed: int = 0) -> tuple[ModelBundle, dict]:
    """A bundle holding every model with seeded random weights; returns it and the modules."""
    bundle = ModelBundle.open_or_create(path, **identity.bundle_kwargs())
    config = MODEL_SIZES["compact"]
    modules = {}
    torch.manual_seed(seed)
    for effect, specs in identity.effects.items():
        model = build_model("params", identity.feature_settings, config, specs=specs)
        bundle.add_model(param_model_name(effect), model, task="params", effect=effect, config=config,
                         metrics={"validation_loss": 0.1}, float16=float16)
        modules[param_model_name(effect)] = model.eval()
    for kind in ("rnn", "ni", "cnn"):
        model = build_model(kind, identity.feature_settings, config, n_effects=len(identity.effects))
        bundle.add_model(selector_model_name(kind), model, task=kind, config=config, float16=float16)
        modules[selector_model_name(kind)] = model.eval()
    return bundle, modules


def random_features(rng: np.random.Generator, settings: FeatureSettings = FeatureSettings()) -> Features:
    db = rng.uniform(-80, 0, (settings.n_mels, settings.n_frames)).astype(np.float32)
    mfcc = rng.normal(0, 50, (settings.n_mfcc, settings.n_frames)).astype(np.float32)
    return Features(db_mel=db, mfcc=mfcc)


def test_round_trip_same_predictions(tmp_path, identity, rack, rng):
    _, modules = make_bundle(tmp_path / "b", identity)
    loaded = ModelBundle.load(tmp_path / "b", rack=rack)
    assert loaded.rack_name == "builtin" and loaded.effect_names == rack.effect_names
    assert loaded.preset_group == "basic" and loaded.feature_settings == FeatureSettings()
    current, target = random_features(rng), random_features(rng)
    mel = torch.from_numpy(np.stack([current.norm_mel, target.norm_mel]))[None]
    mfcc = torch.from_numpy(np.stack([current.mfcc, target.mfcc]))[None]
    for effect in rack.effect_names:
        assert loaded.has_param_model(effect)
        knobs = loaded.predict_knobs(effect, current, target)
        sampled = [spec for spec in rack.effect(effect).params if spec.sampled]
        assert list(knobs) == [spec.name for spec in sampled]
        with torch.inference_mode():
            continuous, logits = modules[param_model_name(effect)](mel, mfcc)
        expected = iter(continuous[0].tolist())
        for spec in sampled:
            if spec.kind == "continuous":
                assert knobs[spec.name] == pytest.approx(next(expected), abs=1e-6)
                assert 0.0 <= knobs[spec.name] <= 1.0
            else:
                assert knobs[spec.name] == spec.class_knob(int(logits[0].argmax()))


def test_batch_prediction_matches_single(tmp_path, identity, rng):
    bundle, _ = make_bundle(tmp_path / "b", identity)
    currents = [random_features(rng) for _ in range(3)]
    targets = [random_features(rng) for _ in range(3)]
    batch = bundle.predict_knobs_batch("distortion", currents, targets)
    for row, (c, t) in enumerate(zip(currents, targets)):
        single = bundle.predict_knobs("distortion", c, t)
        assert single.keys() == batch[row].keys()
        for name in single:
            assert single[name] == pytest.approx(batch[row][name], abs=1e-5)
    assert bundle.predict_knobs_batch("eq", [], []) == []


def test_selector_probabilities(tmp_path, identity, rng):
    _, modules = make_bundle(tmp_path / "b", identity)
    bundle = ModelBundle.load(tmp_path / "b")
    history = [random_features(rng) for _ in range(3)]
    target = random_features(rng)
    applied = ["eq", "reverb"]
    for kind in ("rnn", "ni", "cnn"):
        assert bundle.has_selector(kind)
        probabilities = bundle.selector_probabilities(kind, history, applied, target)
        assert probabilities.shape == (5,) and np.all(probabilities >= 0)
        if kind != "cnn":
            assert probabilities.sum() == pytest.approx(1.0)
    # rnn equals a direct forward pass of the model on the same sequence
    mel = np.stack([np.stack([h.norm_mel, target.norm_mel]) for h in history])[None]
    mfcc = np.stack([np.stack([h.mfcc, target.mfcc]) for h in history])[None]
    one_hot = torch.eye(6)[[0, 1 + 2, 1 + 4]][None]
    with torch.inference_mode():
        logits = modules["selector-rnn"](torch.from_numpy(mel), torch.from_numpy(mfcc), one_hot, torch.tensor([3]))
    np.testing.assert_allclose(bundle.selector_probabilities("rnn", history, applied, target),
                               torch.softmax(logits[0, 2], 0).numpy(), atol=1e-5)
    # ni ignores everything but the first sound
    other = [history[0]] + [random_features(rng) for _ in range(2)]
    np.testing.assert_allclose(bundle.selector_probabilities("ni", history, applied, target),
                               bundle.selector_probabilities("ni", other, applied, target), atol=1e-6)
    with pytest.raises(ParameterError, match="one more sound"):
        bundle.selector_probabilities("rnn", history, ["eq"], target)
    with pytest.raises(ParameterError, match="no effect"):
        bundle.selector_probabilities("rnn", history, ["eq", "flanger"], target)
    with pytest.raises(ParameterError, match="Unknown selector"):
        bundle.selector_probabilities("oracle", history, applied, target)


def test_float16_storage_is_smaller_and_close(tmp_path, identity, rng):
    make_bundle(tmp_path / "full", identity, float16=False)
    make_bundle(tmp_path / "half", identity, float16=True)
    full, half = ModelBundle.load(tmp_path / "full"), ModelBundle.load(tmp_path / "half")
    size = lambda b: sum(p.stat().st_size for p in b.path.glob("*.safetensors"))  # noqa: E731
    assert size(half) < 0.6 * size(full)
    assert size(half) < 2_000_000  # a whole compact bundle: about 1 MB
    current, target = random_features(rng), random_features(rng)
    a, b = full.predict_knobs("eq", current, target), half.predict_knobs("eq", current, target)
    for name in a:
        assert a[name] == pytest.approx(b[name], abs=2e-2)
    assert half.meta["models"]["params-eq"]["dtype"] == "float16"


def test_subset_bundle_and_adding(tmp_path, identity):
    bundle = ModelBundle.open_or_create(tmp_path / "b", **identity.bundle_kwargs())
    config = MODEL_SIZES["compact"]
    bundle.add_model("params-eq", build_model("params", identity.feature_settings, config,
                                              specs=identity.effects["eq"]), task="params", effect="eq", config=config)
    loaded = ModelBundle.load(tmp_path / "b")
    assert loaded.has_param_model("eq") and not loaded.has_param_model("reverb") and not loaded.has_selector("rnn")
    with pytest.raises(BundleError, match="has no model selector-rnn"):
        loaded.selector_probabilities("rnn", [random_features(np.random.default_rng(0))], [],
                                      random_features(np.random.default_rng(1)))
    again = ModelBundle.open_or_create(tmp_path / "b", **identity.bundle_kwargs())
    again.add_model("selector-cnn", build_model("cnn", identity.feature_settings, config, n_effects=5),
                    task="cnn", config=config)
    assert set(ModelBundle.load(tmp_path / "b").model_names) == {"params-eq", "selector-cnn"}


def test_refuses_other_rack_group_or_settings(tmp_path, identity, rack):
    make_bundle(tmp_path / "b", identity)
    kwargs = identity.bundle_kwargs()
    with pytest.raises(BundleError, match="preset group basic"):
        ModelBundle.open_or_create(tmp_path / "b", **{**kwargs, "preset_group": "advanced"})
    with pytest.raises(BundleError, match="rack builtin"):
        ModelBundle.open_or_create(tmp_path / "b", **{**kwargs, "rack_name": "serum"})
    with pytest.raises(BundleError, match="other feature settings"):
        ModelBundle.open_or_create(tmp_path / "b", **{**kwargs, "feature_settings": FeatureSettings(n_mels=64)})
    with pytest.raises(BundleError, match="other feature settings"):
        ModelBundle.load(tmp_path / "b", feature_settings=FeatureSettings(n_mfcc=20))

    class OtherRack:
        name = "linux-vst"
        effect_names = rack.effect_names
        sample_rate, duration_s = rack.sample_rate, rack.duration_s
        effect = rack.effect

    with pytest.raises(BundleError, match="is for rack builtin, not linux-vst"):
        ModelBundle.load(tmp_path / "b", rack=OtherRack())


def test_refuses_changed_effects_or_specs(tmp_path, identity, rack):
    make_bundle(tmp_path / "b", identity)
    meta_path = tmp_path / "b" / "bundle.json"
    meta = json.loads(meta_path.read_text())
    meta["effects"]["eq"][0]["sample_ranges"] = [[0.0, 1.0]]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="other knobs of effect eq"):
        ModelBundle.load(tmp_path / "b", rack=rack)
    meta["effect_order"] = meta["effect_order"][:4]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="has effects"):
        ModelBundle.load(tmp_path / "b", rack=rack)


def test_refuses_corrupt_truncated_or_missing_files(tmp_path, identity):
    make_bundle(tmp_path / "b", identity)
    weights = tmp_path / "b" / "params-eq.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="corrupt or truncated"):
        ModelBundle.load(tmp_path / "b")
    # without the checksum the safetensors parser itself must refuse the truncated file
    meta_path = tmp_path / "b" / "bundle.json"
    meta = json.loads(meta_path.read_text())
    del meta["models"]["params-eq"]["sha256"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="not a valid safetensors file"):
        ModelBundle.load(tmp_path / "b")
    weights.write_bytes(data)
    ModelBundle.load(tmp_path / "b")
    weights.unlink()
    with pytest.raises(BundleError, match="file params-eq.safetensors is missing"):
        ModelBundle.load(tmp_path / "b")


def test_refuses_weights_of_another_architecture(tmp_path, identity):
    make_bundle(tmp_path / "b", identity)
    meta_path = tmp_path / "b" / "bundle.json"
    meta = json.loads(meta_path.read_text())
    meta["models"]["params-eq"]["config"]["fc_units"] = 32
    meta_path.write_text(json.dumps(meta))
    bundle = ModelBundle.load(tmp_path / "b")  # networks are built on first use
    with pytest.raises(BundleError, match="do not fit its recorded architecture"):
        bundle.model("params-eq")


@pytest.mark.parametrize("bad_file", ["../evil.safetensors", "/etc/passwd", "sub/params-eq.safetensors"])
def test_refuses_path_traversal(tmp_path, identity, bad_file):
    make_bundle(tmp_path / "b", identity)
    meta_path = tmp_path / "b" / "bundle.json"
    meta = json.loads(meta_path.read_text())
    meta["models"]["params-eq"]["file"] = bad_file
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="refusing to read it"):
        ModelBundle.load(tmp_path / "b")
    meta["models"]["params-eq"]["file"] = "params-eq.safetensors"
    meta["models"]["../../params-x"] = meta["models"]["params-eq"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="invalid model"):
        ModelBundle.load(tmp_path / "b")


def test_refuses_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        ModelBundle.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="has no bundle.json"):
        ModelBundle.load(tmp_path / "empty")
    (tmp_path / "empty" / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="corrupt"):
        ModelBundle.load(tmp_path / "empty")
    (tmp_path / "empty" / "bundle.json").write_text(json.dumps({"format": "serumrnn-bundle", "format_version": 99}))
    with pytest.raises(BundleError, match="format version 99"):
        ModelBundle.load(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="not a folder"):
        ModelBundle.load(tmp_path / "file")


def test_refuses_features_of_other_shape(tmp_path, identity, rng):
    bundle, _ = make_bundle(tmp_path / "b", identity)
    wrong = random_features(rng, FeatureSettings(n_mels=64))
    with pytest.raises(BundleError, match="expects"):
        bundle.predict_knobs("eq", wrong, random_features(rng))


def test_single_prediction_is_fast(tmp_path, identity, rng):
    bundle, _ = make_bundle(tmp_path / "b", identity)
    current, target = random_features(rng), random_features(rng)
    for _ in range(5):
        bundle.predict_knobs("distortion", current, target)
    started = time.perf_counter()
    for _ in range(20):
        bundle.predict_knobs("distortion", current, target)
    assert (time.perf_counter() - started) / 20 < 0.05  # generous: shared CI machines

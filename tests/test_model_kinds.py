"""Model kinds: one object per kind builds, feeds and reads its network the same way for
training, the bundle and evaluation; the shared selection rule and applied encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serumrnn.core.bundle import ModelBundle, selector_model_name
from serumrnn.core.errors import ParameterError
from serumrnn.core.features import FeatureSettings, Features
from serumrnn.core.model_kinds import (
    PARAMS,
    SELECTOR_KINDS,
    ModelKind,
    MultiLabelKind,
    ParameterKind,
    SequenceSelectorKind,
    applied_before_steps,
    model_kind,
    model_kind_for,
    most_probable_unused,
)
from serumrnn.core.models import EffectParameterModel, EffectSelectionModel, MultiLabelEffectModel, per_step_one_hot
from serumrnn.core.params import ParamSpec
from serumrnn.core.session import BUNDLES_DIR
from serumrnn.core.views import DatasetReader

SMALL = FeatureSettings(n_mels=40, n_mfcc=12, duration_s=0.3)
SPECS = (
    ParamSpec("mode", "categorical", classes=("a", "b", "c")),
    ParamSpec("drive", "continuous", sample_ranges=((0.2, 1.0),)),
    ParamSpec("fixed", "continuous", sampled=False),
    ParamSpec("tone", "continuous"),
)


def features(rng: np.random.Generator, settings: FeatureSettings = SMALL) -> Features:
    return Features(db_mel=rng.uniform(-80, 0, (settings.n_mels, settings.n_frames)).astype(np.float32),
                    mfcc=rng.normal(0, 50, (settings.n_mfcc, settings.n_frames)).astype(np.float32))


# -- the selection rule ----------------------------------------------------------------------------
def test_most_probable_unused_skips_used_effects_and_breaks_ties_by_rack_order():
    names = ("a", "b", "c", "d")
    assert most_probable_unused(np.array([0.1, 0.9, 0.3, 0.3]), names, []) == ("b", 0.9)
    assert most_probable_unused(np.array([0.1, 0.9, 0.3, 0.3]), names, ["b"]) == ("c", 0.3)
    assert most_probable_unused([5.0, 5.0, 1.0, 0.0], range(4), [0]) == (1, 5.0)  # rack indices work too
    with pytest.raises(ParameterError, match="Every effect has been applied"):
        most_probable_unused(np.ones(4), names, list(names))
    with pytest.raises(ParameterError, match="one finite score per effect"):
        most_probable_unused(np.array([np.nan, 0.0, 0.0, 0.0]), names, [])


# -- the applied-effects encoding ------------------------------------------------------------------
def test_applied_before_steps_is_cumulative_and_padded():
    encoded = applied_before_steps([2, 0, 3], n_effects=4, steps=3, rows=4)
    expected = np.zeros((4, 5), np.float32)
    expected[0, 0] = 1
    expected[1, 1 + 2] = 1
    expected[2, [1 + 2, 1 + 0]] = 1
    np.testing.assert_array_equal(encoded, expected)  # the last effect and the padding row stay unmarked
    assert encoded.dtype == np.float32
    # The network reads each step's own effect back from it.
    own = per_step_one_hot(torch.from_numpy(encoded[None, :3]))[0]
    torch.testing.assert_close(own, torch.eye(5)[[0, 3, 1]])


def test_sequence_encoding_matches_the_training_view(tiny_dataset):
    """What the bundle feeds a selector at inference equals the training view's item
    for the same sounds and chain, so training and inference see the same inputs."""
    reader = DatasetReader(tiny_dataset)
    kind = SequenceSelectorKind("rnn", len(reader.effect_names))
    view = kind.training_view(reader, "train")
    index = max(range(len(view)), key=lambda i: int(view[i]["length"]))
    item = view[index]
    inputs, target, _, labels, length = view.sequences[index]
    assert length >= 2
    mel, mfcc = reader.features([*inputs, target])
    sounds = [Features(db_mel=m * reader.top_db, mfcc=c, top_db=reader.top_db) for m, c in zip(mel, mfcc)]
    batch = kind.encode(sounds[:length], [int(label) for label in labels[: length - 1]], sounds[length])
    np.testing.assert_array_equal(batch["applied"][0], item["applied"][:length])
    np.testing.assert_allclose(batch["mel"][0], item["mel"][:length], rtol=1e-6)
    np.testing.assert_array_equal(batch["mfcc"][0], item["mfcc"][:length])
    assert batch["length"].tolist() == [length]


# -- building ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, network", [(PARAMS, EffectParameterModel), ("rnn", EffectSelectionModel),
                                           ("ni", EffectSelectionModel), ("cnn", MultiLabelEffectModel)])
def test_each_kind_builds_its_network(name, network):
    kind = model_kind(name, specs=SPECS, n_effects=5)
    assert isinstance(kind, ModelKind) and kind.name == name
    model = kind.build(SMALL, "compact")
    assert type(model) is network
    if name == PARAMS:
        assert [spec.name for spec in kind.continuous_specs] == ["drive", "tone"]
        assert model.n_continuous == 2 and model.class_counts == (3,)
    else:
        assert model.n_effects == 5
        assert getattr(model, "first_step_only", False) == (name == "ni")


def test_unknown_kind_and_missing_effect_are_refused():
    with pytest.raises(ParameterError, match="Unknown model task"):
        model_kind("lstm")
    with pytest.raises(KeyError):
        model_kind_for(PARAMS, {"eq": SPECS}, "chorus")
    kind = model_kind_for(PARAMS, {"eq": SPECS, "reverb": ()}, "eq")
    assert isinstance(kind, ParameterKind) and kind.specs == SPECS and kind.effect == "eq"
    assert model_kind_for("cnn", {"eq": SPECS, "reverb": ()}).n_effects == 2
    with pytest.raises(ParameterError, match="needs its effect"):
        ParameterKind(SPECS).training_view(None, "train")


# -- inference --------------------------------------------------------------------------------------
def test_parameter_decoding_orders_knobs_and_ranks_classes(rng):
    torch.manual_seed(0)
    kind = ParameterKind(SPECS)
    model = kind.build(SMALL, "compact").eval()
    currents, targets = [features(rng) for _ in range(2)], [features(rng) for _ in range(2)]
    results = kind.predict(model, currents, targets)
    batch = kind.encode(currents, targets)
    with torch.inference_mode():
        continuous, logits = model(torch.from_numpy(batch["mel"]), torch.from_numpy(batch["mfcc"]))
    for row, (knobs, ranked) in enumerate(results):
        assert list(knobs) == ["mode", "drive", "tone"]  # ParamSpec order, sampled knobs only
        assert knobs["drive"] == pytest.approx(float(continuous[row, 0]), abs=1e-6)
        probabilities = torch.softmax(logits[0][row], 0).numpy()
        values = [value for value, _ in ranked["mode"]]
        assert values[0] == knobs["mode"] == SPECS[0].class_knob(int(probabilities.argmax()))
        assert sorted(values) == sorted(SPECS[0].class_knob(c) for c in range(3))
        # decode's softmax is numpy's (one path for both backends): equal to torch's within float32 rounding
        assert [p for _, p in ranked["mode"]] == pytest.approx(sorted(probabilities.tolist(), reverse=True), abs=1e-6)


@pytest.mark.parametrize("name", SELECTOR_KINDS)
def test_selector_prediction_is_the_last_step_of_a_batched_pass(name, rng):
    """The bundle's one-sequence prediction reads the same numbers as a batched forward
    pass over a padded batch (the evaluation's way)."""
    torch.manual_seed(1)
    kind = model_kind(name, n_effects=4)
    model = kind.build(SMALL, "compact").eval()
    history, target = [features(rng) for _ in range(3)], features(rng)
    probabilities = kind.predict(model, history, [1, 3], target)
    assert probabilities.shape == (4,) and probabilities.dtype == np.float64
    single = kind.encode(history, [1, 3], target)
    shorter = kind.encode(history[:1], [], target)
    if isinstance(kind, SequenceSelectorKind):
        assert probabilities.sum() == pytest.approx(1.0)
        def padded_to_3_steps(array):
            return np.pad(array, [(0, 0), (0, 2)] + [(0, 0)] * (array.ndim - 2))

        padded = {key: np.concatenate([single[key], padded_to_3_steps(shorter[key])]) for key in ("mel", "mfcc", "applied")}
        padded["length"] = np.array([3, 1])
        logits = kind.infer(model, padded, "cpu")
        np.testing.assert_allclose(torch.softmax(logits[0, 2].float(), 0).numpy(), probabilities, atol=1e-6)
        with pytest.raises(ParameterError, match="no next effect"):
            kind.encode(history[:1] * 5, [0, 1, 2, 3], target)
    else:
        assert isinstance(kind, MultiLabelKind)
        both = {key: np.concatenate([single[key], shorter[key]]) for key in ("mel", "mfcc")}
        np.testing.assert_allclose(kind.probabilities(kind.infer(model, both, "cpu"))[0].numpy(), probabilities,
                                   atol=1e-6)


# -- the bundle builds only what it is asked for ---------------------------------------------------
def test_bundle_builds_only_the_models_a_session_uses(monkeypatch, rng):
    built = []
    for cls in (ParameterKind, SequenceSelectorKind, MultiLabelKind):
        original = cls.build

        def counting(self, settings, size, original=original):
            built.append(self.name)
            return original(self, settings, size)

        monkeypatch.setattr(cls, "build", counting)
    bundle = ModelBundle.load(BUNDLES_DIR / "basic", backend="torch")  # ONNX sessions: tests/test_onnx.py
    assert built == []  # weights read and verified, nothing built yet
    settings = bundle.feature_settings
    history, target = [features(rng, settings)], features(rng, settings)
    bundle.selector_probabilities("rnn", history, [], target)
    bundle.selector_probabilities("rnn", history, [], target)
    assert built == ["rnn"]
    bundle.predict_knobs("eq", history[0], target)
    assert built == ["rnn", PARAMS]
    assert isinstance(bundle.model_kind(selector_model_name("ni")), SequenceSelectorKind)
    assert built == ["rnn", PARAMS]

"""Neural models: shapes follow the feature settings, heads, causality of the selector."""

from __future__ import annotations

import pytest
import torch

from serumrnn.core.errors import ParameterError
from serumrnn.core.features import FeatureSettings
from serumrnn.core.model_config import MODEL_SIZES, ModelConfig, model_config
from serumrnn.core.models import (
    EffectParameterModel,
    EffectSelectionModel,
    build_model,
    count_parameters,
    per_step_one_hot,
)
from serumrnn.core.model_kinds import split_specs
from serumrnn.core.params import ParamSpec

DISTORTION = (
    ParamSpec("mode", "categorical", classes=tuple("abcdefghijkl")),
    ParamSpec("drive", "continuous", sample_ranges=((0.3, 1.0),)),
    ParamSpec("unsampled", "continuous", sampled=False),
)
SMALL = FeatureSettings(n_mels=40, n_mfcc=12, duration_s=0.3)


def inputs(settings: FeatureSettings, batch: int = 3, steps: int | None = None):
    shape = (batch,) if steps is None else (batch, steps)
    mel = torch.randn(*shape, 2, settings.n_mels, settings.n_frames)
    mfcc = torch.randn(*shape, 2, settings.n_mfcc, settings.n_frames)
    return mel, mfcc


@pytest.mark.parametrize("settings", [FeatureSettings(), SMALL, FeatureSettings(n_mels=64, duration_s=2.0)])
@pytest.mark.parametrize("size", ["paper", "compact", "profile"])
def test_parameter_model_shapes_follow_settings(settings, size):
    model = build_model("params", settings, size, specs=DISTORTION).eval()
    continuous, logits = model(*inputs(settings))
    assert continuous.shape == (3, 1)
    assert [head.shape for head in logits] == [(3, 12)]
    assert torch.all((continuous >= 0) & (continuous <= 1))


def test_paper_size_matches_the_paper():
    config = MODEL_SIZES["paper"]
    assert config.conv_filters == (64, 128, 128) and config.fc_units == 128 and config.lstm_units == 128
    assert config.selector_filters == (32, 64, 64) and config.mel_prepool == 1 and config.dropout == 0.5
    model = build_model("params", FeatureSettings(), "paper", specs=DISTORTION)
    # 128x87 -> 32x22 -> 8x6 -> 2x2 (mel, pool 4x4); 30x87 -> 15x22 -> 8x6 -> 4x2 (MFCC, pool 2x4)
    assert model.encoder.mel.out_features == 128 * 2 * 2
    assert model.encoder.mfcc.out_features == 128 * 4 * 2
    assert isinstance(model.encoder.mfcc.layers[0], torch.nn.BatchNorm2d)


def test_compact_is_small():
    settings = FeatureSettings()
    total = sum(
        count_parameters(build_model(task, settings, "compact", specs=DISTORTION, n_effects=5))
        for task in ("params",) * 5 + ("rnn", "ni", "cnn")
    )
    assert total * 2 < 2_000_000  # bytes in float16: a whole bundle under 2 MB


@pytest.mark.parametrize("task", ["rnn", "ni", "cnn"])
def test_selectors_build_on_the_profile_encoder(task):
    model = build_model(task, SMALL, "profile", n_effects=5).eval()
    steps = 2 if task != "cnn" else None
    mel, mfcc = inputs(SMALL, steps=steps)
    if task == "cnn":
        assert model(mel, mfcc).shape == (3, 5)
    else:
        applied = torch.zeros(3, 2, 6)
        applied[:, :, 0] = 1
        assert model(mel, mfcc, applied, torch.tensor([2, 1, 2])).shape == (3, 2, 5)


def test_the_profile_encoder_sees_where_in_frequency_a_target_differs():
    """Two targets that differ from the input only in which mel bands are louder give
    different encodings, and the input-target difference is read (swapping them changes it)."""
    torch.manual_seed(0)
    model = build_model("params", SMALL, "profile", specs=DISTORTION).eval()
    mel, mfcc = inputs(SMALL, batch=1)
    low, high = mel.clone(), mel.clone()
    low[:, 1, :10] += 0.3
    high[:, 1, -10:] += 0.3
    encode = model.encoder
    assert not torch.allclose(encode(low, mfcc), encode(high, mfcc))
    assert not torch.allclose(encode(low, mfcc), encode(low.flip(1), mfcc.flip(1)))


def test_an_unknown_encoder_is_refused_in_one_sentence():
    config = ModelConfig("odd", (8, 8, 8), fc_units=8, lstm_units=8, encoder="transformer")
    with pytest.raises(ParameterError, match="Unknown model encoder 'transformer'"):
        build_model("params", SMALL, config, specs=DISTORTION)


def test_a_config_without_an_encoder_reads_as_the_cnn():
    data = MODEL_SIZES["compact"].to_json()
    del data["encoder"]
    assert ModelConfig.from_json(data).encoder == "cnn"


def test_only_sampled_knobs_get_heads():
    continuous, categorical = split_specs(DISTORTION)
    assert [s.name for s in continuous] == ["drive"] and [s.name for s in categorical] == ["mode"]
    model = EffectParameterModel(SMALL, MODEL_SIZES["compact"], [], categorical)
    cont, logits = model(*inputs(SMALL))
    assert cont.shape == (3, 0) and logits[0].shape == (3, 12)


@pytest.mark.parametrize("kind", ["rnn", "ni"])
def test_selector_shapes_and_padding(kind):
    model = build_model(kind, SMALL, "compact", n_effects=5).eval()
    mel, mfcc = inputs(SMALL, batch=4, steps=5)
    applied = torch.zeros(4, 5, 6)
    applied[:, 0, 0] = 1
    lengths = torch.tensor([1, 5, 3, 2])
    logits = model(mel, mfcc, applied, lengths)
    assert logits.shape == (4, 5, 5)
    assert torch.all(logits[0, 1:] == 0) and torch.all(logits[3, 2:] == 0)
    assert torch.all(logits[1] != 0)


def test_selector_is_causal():
    """Step t's prediction must not change when later steps change (BiLSTM over prefixes)."""
    torch.manual_seed(0)
    model = build_model("rnn", SMALL, "compact", n_effects=5).eval()
    mel, mfcc = inputs(SMALL, batch=1, steps=5)
    applied = torch.eye(6)[[0, 3, 1, 5, 2]].unsqueeze(0)
    full = model(mel, mfcc, applied, torch.tensor([5]))
    mel2, mfcc2, applied2 = mel.clone(), mfcc.clone(), applied.clone()
    mel2[:, 3:] += 1.0
    applied2[:, 3:] = torch.eye(6)[[4, 4]]
    changed = model(mel2, mfcc2, applied2, torch.tensor([5]))
    torch.testing.assert_close(full[:, :3], changed[:, :3])
    assert not torch.allclose(full[:, 3:], changed[:, 3:])
    prefix = model(mel[:, :2], mfcc[:, :2], applied[:, :2], torch.tensor([2]))
    torch.testing.assert_close(prefix[:, 1], full[:, 1], atol=1e-5, rtol=1e-5)


def test_ni_sees_only_the_first_step_features():
    torch.manual_seed(0)
    model = build_model("ni", SMALL, "compact", n_effects=5).eval()
    mel, mfcc = inputs(SMALL, batch=1, steps=3)
    applied = torch.eye(6)[[0, 2, 4]].unsqueeze(0)
    before = model(mel, mfcc, applied, torch.tensor([3]))
    mel[:, 1:] = torch.randn_like(mel[:, 1:])
    torch.testing.assert_close(before, model(mel, mfcc, applied, torch.tensor([3])))


def test_cumulative_and_one_hot_applied_are_equivalent():
    one_hot = torch.eye(6)[[0, 3, 1, 5]].unsqueeze(0)
    cumulative = one_hot.clone()
    for step in range(2, 4):
        cumulative[0, step] = torch.clamp(cumulative[0, step] + cumulative[0, step - 1] - torch.eye(6)[0], 0, 1)
    assert cumulative[0, 3].sum() == 3
    torch.testing.assert_close(per_step_one_hot(cumulative), one_hot)
    torch.testing.assert_close(per_step_one_hot(one_hot), one_hot)


def test_cnn_baseline_shapes():
    model = build_model("cnn", SMALL, "paper", n_effects=5)
    assert model(*inputs(SMALL)).shape == (3, 5)


def test_config_round_trip_and_unknown_size():
    config = ModelConfig("custom", (4, 8, 8), fc_units=16, lstm_units=8, mel_prepool=2)
    assert ModelConfig.from_json(config.to_json()) == config
    assert model_config(config) is config
    with pytest.raises(ParameterError, match="Unknown model size"):
        model_config("huge")
    with pytest.raises(ParameterError, match="Unknown model task"):
        build_model("lstm", SMALL, "compact")


def test_selection_model_class_flags():
    model = EffectSelectionModel(SMALL, MODEL_SIZES["compact"], 5, first_step_only=True)
    assert model.task == "ni"

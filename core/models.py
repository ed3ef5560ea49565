"""Neural models (the paper's section 3); ``core/model_kinds.py`` says how each is
trained, fed and read.

Every model reads features as two channels, ``[current/input, target]``:

- normalised dB mel, shape ``(batch, 2, n_mels, n_frames)`` (``db_mel / 80``);
- MFCCs, shape ``(batch, 2, n_mfcc, n_frames)`` (raw; a BatchNorm normalises them).

Models
------
``EffectParameterModel``
    Two CNN branches (mel and MFCC), flattened and concatenated, two fully connected
    layers with ELU and dropout, then a sigmoid head for the continuous knobs (knobs live
    in [0, 1]; trained with MSE) and one logit head per categorical knob (softmax,
    cross-entropy).
``EffectSelectionModel``
    SerumRNN: time-distributed half-width CNNs with one fully connected layer, concatenated
    with the applied-effect one-hot ``[start, effect_1, ..., effect_n]``, a bidirectional
    LSTM, a fully connected layer with ELU and dropout, and logits over the next effect.
    With ``first_step_only=True`` it is the NI baseline: every step sees the features of
    step 0 (initial input and target) plus its own applied one-hot.
``MultiLabelEffectModel``
    The SerumCNN baseline: the parameter-model CNN with a sigmoid per effect
    (multi-label, binary cross-entropy) on ``[dry input, target]``.

Causality of the bidirectional LSTM
-----------------------------------
The label of step ``t`` is the effect applied *after* it, so a bidirectional LSTM run over
a whole training sequence would read the answer from step ``t + 1``. The selector therefore
predicts step ``t`` from the prefix ``0..t`` only: each sequence is expanded into its
prefixes (cheap: the CNNs run once per step, only the LSTM runs per prefix), and the
prediction is read from the final hidden states of both directions. Inference with the
history so far is then exactly what training saw.

Sizes (``MODEL_SIZES``)
-----------------------
``paper``
    Exactly the paper: conv filters 64/128/128 (selector 32/64/64), 3x3 kernels with
    "same" padding, ELU, max-pool 4x4 (mel) and 2x4 (MFCC) with ``ceil_mode`` so
    128x87 -> 32x22 -> 8x6 -> 2x2 and 30x87 -> 15x22 -> 8x6 -> 4x2; FC 128; BiLSTM 128
    units per direction. A parameter model has about 0.65 M weights.
``compact``
    For two CPU cores: filters 16/32/32 (selector 8/16/16), FC 64, BiLSTM 64, and the mel
    input average-pooled by 2x2 first (128x87 -> 64x44). About 50x fewer multiply-adds
    than ``paper``; a parameter model has about 50 k weights, so a full bundle (five
    parameter models and three selectors, about 0.5 M weights) is about 1 MB in float16.

All flattened sizes are derived from the ``FeatureSettings``; nothing assumes 128x87.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from serumrnn.core.features import FeatureSettings
from serumrnn.core.model_config import ModelConfig
from serumrnn.core.params import ParamSpec

MEL_POOL = (4, 4)
MFCC_POOL = (2, 4)


def _pooled(length: int, factor: int) -> int:
    return math.ceil(length / factor)


class ConvBranch(nn.Module):
    """Three conv(3x3, same) -> ELU -> max-pool(ceil) blocks, flattened.

    Input ``(batch, channels, height, width)``; output ``(batch, out_features)``.
    """

    def __init__(
        self,
        in_channels: int,
        height: int,
        width: int,
        filters: Sequence[int],
        pool: tuple[int, int],
        *,
        prepool: int = 1,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if batch_norm:
            layers.append(nn.BatchNorm2d(in_channels))
        if prepool > 1:
            layers.append(nn.AvgPool2d(prepool, ceil_mode=True))
            height, width = _pooled(height, prepool), _pooled(width, prepool)
        channels = in_channels
        for n_filters in filters:
            layers += [
                nn.Conv2d(channels, n_filters, kernel_size=3, padding=1),
                nn.ELU(),
                nn.MaxPool2d(pool, ceil_mode=True),
            ]
            channels = n_filters
            height, width = _pooled(height, pool[0]), _pooled(width, pool[1])
        layers.append(nn.Flatten())
        self.layers = nn.Sequential(*layers)
        self.out_features = channels * height * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _fc_stack(width: int, config: ModelConfig, n_fc: int) -> tuple[nn.Sequential, int]:
    """``n_fc`` FC+ELU+dropout layers on ``width`` features, and the width they output."""
    layers: list[nn.Module] = []
    for _ in range(n_fc):
        layers += [nn.Linear(width, config.fc_units), nn.ELU(), nn.Dropout(config.dropout)]
        width = config.fc_units
    return nn.Sequential(*layers), width


class FeatureEncoder(nn.Module):
    """Mel and MFCC CNN branches, concatenated, then ``n_fc`` FC+ELU+dropout layers.

    ``forward(mel (B, 2, n_mels, n_frames), mfcc (B, 2, n_mfcc, n_frames)) -> (B, fc_units)``.
    """

    def __init__(
        self,
        settings: FeatureSettings,
        config: ModelConfig,
        filters: Sequence[int],
        n_fc: int,
        in_channels: int = 2,
    ) -> None:
        super().__init__()
        frames = settings.n_frames
        self.mel = ConvBranch(in_channels, settings.n_mels, frames, filters, MEL_POOL, prepool=config.mel_prepool)
        self.mfcc = ConvBranch(in_channels, settings.n_mfcc, frames, filters, MFCC_POOL, batch_norm=True)
        self.fc, self.out_features = _fc_stack(self.mel.out_features + self.mfcc.out_features, config, n_fc)

    def forward(self, mel: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.mel(mel), self.mfcc(mfcc)], dim=1))


class ProfileEncoder(nn.Module):
    """``[input, target]`` features read as summaries rather than images (``encoder="profile"``).

    The mel channels gain a third, target minus input. Three 1D CNNs then read: the
    spectral profile (mean and standard deviation over time of each mel band, where an EQ
    or a filter shows), the envelopes of ``ENVELOPE_BANDS`` mel bands over time (where
    compression, reverb tails and a phaser's sweep show), and the MFCCs' mean and standard
    deviation over time (normalised by a BatchNorm). Their outputs are concatenated, then
    ``n_fc`` FC+ELU+dropout layers. The 2D CNN's max pools keep little of where in
    frequency a change happens; a profile keeps every band.

    ``forward(mel (B, 2, n_mels, n_frames), mfcc (B, 2, n_mfcc, n_frames)) -> (B, fc_units)``.
    """

    ENVELOPE_BANDS = 8

    def __init__(self, settings: FeatureSettings, config: ModelConfig, filters: Sequence[int], n_fc: int) -> None:
        super().__init__()
        channels = 3  # input, target, target - input
        self.band_height = max(1, settings.n_mels // self.ENVELOPE_BANDS)
        bands = settings.n_mels // self.band_height
        self.profile = _conv1d_stack(2 * channels, filters)
        self.envelope = _conv1d_stack(channels * bands, filters)
        self.mfcc_norm = nn.BatchNorm1d(2 * channels * settings.n_mfcc)
        width = (
            filters[-1] * _pooled_n(settings.n_mels, len(filters))
            + filters[-1] * _pooled_n(settings.n_frames, len(filters))
            + 2 * channels * settings.n_mfcc
        )
        self.fc, self.out_features = _fc_stack(width, config, n_fc)

    @staticmethod
    def _with_difference(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x[:, 1:2] - x[:, 0:1]], dim=1)

    @staticmethod
    def _mean_and_spread(x: torch.Tensor) -> torch.Tensor:
        """Mean and standard deviation over the last axis, ``(B, C, H, T) -> (B, 2C, H)``
        (written out: it exports to ONNX as plain operators)."""
        mean = x.mean(dim=3)
        spread = ((x - mean.unsqueeze(3)) ** 2).mean(dim=3).clamp_min(1e-8).sqrt()
        return torch.cat([mean, spread], dim=1)

    def forward(self, mel: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        mel = self._with_difference(mel)
        batch, channels, _, frames = mel.shape
        bands = mel[:, :, : self.band_height * (mel.shape[2] // self.band_height)]
        envelopes = bands.reshape(batch, channels, -1, self.band_height, frames).mean(dim=3)
        parts = [
            self.profile(self._mean_and_spread(mel)),
            self.envelope(envelopes.reshape(batch, -1, frames)),
            self.mfcc_norm(self._mean_and_spread(self._with_difference(mfcc)).flatten(1)),
        ]
        return self.fc(torch.cat(parts, dim=1))


def _conv1d_stack(in_channels: int, filters: Sequence[int]) -> nn.Sequential:
    """conv(5, same) -> ELU -> max-pool(2, ceil) per entry of ``filters``, flattened."""
    layers: list[nn.Module] = []
    for n_filters in filters:
        layers += [nn.Conv1d(in_channels, n_filters, kernel_size=5, padding=2), nn.ELU(),
                   nn.MaxPool1d(2, ceil_mode=True)]
        in_channels = n_filters
    return nn.Sequential(*layers, nn.Flatten())


def _pooled_n(length: int, times: int) -> int:
    for _ in range(times):
        length = _pooled(length, 2)
    return length


def feature_encoder(settings: FeatureSettings, config: ModelConfig, filters: Sequence[int], n_fc: int) -> nn.Module:
    """The encoder ``config.encoder`` names: ``FeatureEncoder`` (cnn) or ``ProfileEncoder``."""
    if config.encoder == "profile":
        return ProfileEncoder(settings, config, filters, n_fc)
    if config.encoder != "cnn":
        from serumrnn.core.errors import ParameterError

        raise ParameterError(f"Unknown model encoder {config.encoder!r}; choose cnn or profile.")
    return FeatureEncoder(settings, config, filters, n_fc)


class EffectParameterModel(nn.Module):
    """Predicts an effect's sampled knobs from ``[input, target]`` features.

    ``forward(mel, mfcc) -> (continuous (B, n_continuous) in [0, 1], [logits (B, n_classes_k)])``;
    ``continuous`` has width 0 when the effect has no continuous sampled knob.
    """

    task = "params"

    def __init__(
        self,
        settings: FeatureSettings,
        config: ModelConfig,
        continuous_specs: Sequence[ParamSpec],
        categorical_specs: Sequence[ParamSpec],
    ) -> None:
        super().__init__()
        self.n_continuous = len(continuous_specs)
        self.class_counts = tuple(spec.n_classes for spec in categorical_specs)
        self.encoder = feature_encoder(settings, config, config.conv_filters, n_fc=2)
        width = self.encoder.out_features
        self.continuous_head = nn.Linear(width, self.n_continuous) if self.n_continuous else None
        self.categorical_heads = nn.ModuleList(nn.Linear(width, n) for n in self.class_counts)

    def forward(self, mel: torch.Tensor, mfcc: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden = self.encoder(mel, mfcc)
        if self.continuous_head is not None:
            continuous = torch.sigmoid(self.continuous_head(hidden))
        else:
            continuous = hidden.new_zeros((hidden.shape[0], 0))
        return continuous, [head(hidden) for head in self.categorical_heads]


class FlatParameterOutputs(nn.Module):
    """An ``EffectParameterModel`` whose outputs are one flat tuple, ``(continuous,
    logits_0, ...)`` (what the ONNX export traces: it cannot export an empty list)."""

    def __init__(self, model: EffectParameterModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, mel: torch.Tensor, mfcc: torch.Tensor) -> tuple[torch.Tensor, ...]:
        continuous, logits = self.model(mel, mfcc)
        return (continuous, *logits)


class EffectSelectionModel(nn.Module):
    """SerumRNN (``first_step_only=False``) or its NI baseline (``True``).

    Parameters of ``forward``
    -------------------------
    mel: ``(B, T, 2, n_mels, n_frames)``; mfcc: ``(B, T, 2, n_mfcc, n_frames)``;
    applied: ``(B, T, n_effects + 1)`` ``[start, effect_1..n]``, per-step one-hots or
        cumulative multi-hots (see ``per_step_one_hot``);
    lengths: ``(B,)`` int, valid steps per sequence (>= 1); steps past it are padding.

    Returns
    -------
    Logits ``(B, T, n_effects)``: row ``t`` predicts the effect after step ``t`` from
    steps ``0..t`` only (see the module docstring); padded rows are zero.
    """

    def __init__(self, settings: FeatureSettings, config: ModelConfig, n_effects: int,
                 *, first_step_only: bool = False) -> None:
        super().__init__()
        self.n_effects = n_effects
        self.first_step_only = first_step_only
        self.task = "ni" if first_step_only else "rnn"
        self.encoder = feature_encoder(settings, config, config.selector_filters, n_fc=1)
        self.lstm = nn.LSTM(self.encoder.out_features + n_effects + 1, config.lstm_units,
                            batch_first=True, bidirectional=True)
        self.head = nn.Sequential(
            nn.Linear(2 * config.lstm_units, config.fc_units), nn.ELU(), nn.Dropout(config.dropout),
            nn.Linear(config.fc_units, n_effects),
        )

    def encode_steps(self, mel: torch.Tensor, mfcc: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Per-step feature vectors ``(B, T, D)``; only valid steps go through the CNNs
        (padding would also skew the MFCC BatchNorm statistics)."""
        batch, steps = mel.shape[:2]
        if self.first_step_only:
            first = self.encoder(mel[:, 0], mfcc[:, 0])
            return first.unsqueeze(1).expand(batch, steps, first.shape[1])
        valid = torch.arange(steps, device=mel.device).unsqueeze(0) < lengths.to(mel.device).unsqueeze(1)
        encoded = self.encoder(mel[valid], mfcc[valid])
        out = encoded.new_zeros((batch, steps, encoded.shape[1]))
        out[valid] = encoded
        return out

    def forward(self, mel: torch.Tensor, mfcc: torch.Tensor, applied: torch.Tensor,
                lengths: torch.Tensor) -> torch.Tensor:
        batch, steps = mel.shape[:2]
        lengths = lengths.to(torch.long).clamp(1, steps)
        step_one_hot = per_step_one_hot(applied.to(mel.dtype))
        sequence = torch.cat([self.encode_steps(mel, mfcc, lengths), step_one_hot], dim=2)
        # Expand every sequence into its prefixes 1..length: prefix (b, t) ends at step t.
        step_index = torch.arange(steps, device=mel.device)
        valid = step_index.unsqueeze(0) < lengths.to(mel.device).unsqueeze(1)  # (B, T)
        owner, last_step = valid.nonzero(as_tuple=True)
        prefixes = sequence[owner]  # (P, T, D); steps past last_step are ignored by packing
        packed = pack_padded_sequence(prefixes, (last_step + 1).cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)  # hidden (2, P, H): forward and backward final states
        summary = torch.cat([hidden[0], hidden[1]], dim=1)
        logits_per_prefix = self.head(summary)
        logits = logits_per_prefix.new_zeros((batch, steps, self.n_effects))
        logits[owner, last_step] = logits_per_prefix
        return logits


class LastStepSelector(nn.Module):
    """Inference-only view of an ``EffectSelectionModel`` (what the ONNX export runs): the
    logits after the LAST step of sequences whose every step is valid,
    ``forward(mel (B, T, 2, n_mels, n_frames), mfcc (B, T, 2, n_mfcc, n_frames), applied
    (B, T, n_effects + 1)) -> (B, n_effects)``.

    The prefix ending at the last step is the whole sequence, so the LSTM runs unpacked
    and its final states equal the packed forward's: row ``[:, -1]`` of ``forward`` with
    ``lengths == T``, without the prefix expansion and packing that ONNX cannot export.
    """

    def __init__(self, model: EffectSelectionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, mel: torch.Tensor, mfcc: torch.Tensor, applied: torch.Tensor) -> torch.Tensor:
        model = self.model
        batch, steps = mel.shape[:2]
        if model.first_step_only:
            first = model.encoder(mel[:, 0], mfcc[:, 0])
            encoded = first.unsqueeze(1).expand(batch, steps, first.shape[1])
        else:
            encoded = model.encoder(mel.flatten(0, 1), mfcc.flatten(0, 1)).reshape(batch, steps, -1)
        sequence = torch.cat([encoded, per_step_one_hot(applied.to(mel.dtype))], dim=2)
        _, (hidden, _) = model.lstm(sequence)
        return model.head(torch.cat([hidden[0], hidden[1]], dim=1))


def per_step_one_hot(applied: torch.Tensor) -> torch.Tensor:
    """The effect applied at each step, ``(B, T, n_effects + 1)``, from either encoding
    of ``applied``: per-step one-hots, or cumulative multi-hots (every effect applied
    up to the step). ``relu(applied[t] - applied[t - 1])`` yields the step's own effect
    for both, so training data and inference may use either."""
    previous = torch.cat([torch.zeros_like(applied[:, :1]), applied[:, :-1]], dim=1)
    return torch.relu(applied - previous)


class MultiLabelEffectModel(nn.Module):
    """SerumCNN baseline: which effects turn the dry input into the target.

    ``forward(mel (B, 2, n_mels, n_frames), mfcc (B, 2, n_mfcc, n_frames)) -> logits (B, n_effects)``
    (apply a sigmoid for probabilities).
    """

    task = "cnn"

    def __init__(self, settings: FeatureSettings, config: ModelConfig, n_effects: int) -> None:
        super().__init__()
        self.n_effects = n_effects
        self.encoder = feature_encoder(settings, config, config.conv_filters, n_fc=2)
        self.head = nn.Linear(self.encoder.out_features, n_effects)

    def forward(self, mel: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(mel, mfcc))


def build_model(
    task: str,
    settings: FeatureSettings,
    size: str | ModelConfig,
    *,
    specs: Sequence[ParamSpec] = (),
    n_effects: int = 0,
) -> nn.Module:
    """A fresh model: ``task`` is ``params`` (needs ``specs``, the effect's ParamSpecs) or a
    selector kind ``rnn``/``ni``/``cnn`` (needs ``n_effects``); the kind builds it."""
    from serumrnn.core.model_kinds import model_kind

    return model_kind(task, specs=specs, n_effects=n_effects).build(settings, size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

"""Layer sizes of the models (``ModelConfig``, ``MODEL_SIZES``), apart from
``core/models.py`` so that reading a bundle's description needs no torch."""

from __future__ import annotations

import attrs


@attrs.frozen
class ModelConfig:
    """Layer sizes of one model size.

    Parameters
    ----------
    size: ``"paper"`` or ``"compact"`` (or a custom name).
    conv_filters: filters of the three conv layers of a parameter-model CNN branch; the
        selector uses half of each.
    fc_units: width of the fully connected layers.
    lstm_units: hidden units per direction of the selector's BiLSTM.
    mel_prepool: average-pool factor applied to the mel input before its CNN (1 = none).
    dropout: dropout rate after each fully connected layer.
    encoder: how a model reads ``[input, target]`` features: ``"cnn"`` (the paper's 2D CNN
        branches) or ``"profile"`` (``core.models.ProfileEncoder``: spectral profiles, band
        envelopes and MFCC statistics, with the target-minus-input difference).
    """

    size: str
    conv_filters: tuple[int, int, int] = attrs.field(converter=tuple)
    fc_units: int
    lstm_units: int
    mel_prepool: int = 1
    dropout: float = 0.5
    encoder: str = "cnn"

    @property
    def selector_filters(self) -> tuple[int, int, int]:
        return tuple(max(1, n // 2) for n in self.conv_filters)  # type: ignore[return-value]

    def to_json(self) -> dict:
        data = attrs.asdict(self)
        data["conv_filters"] = list(self.conv_filters)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "ModelConfig":
        return cls(**dict(data))


MODEL_SIZES: dict[str, ModelConfig] = {
    "paper": ModelConfig("paper", (64, 128, 128), fc_units=128, lstm_units=128, mel_prepool=1),
    "compact": ModelConfig("compact", (16, 32, 32), fc_units=64, lstm_units=64, mel_prepool=2),
    # Parameter models of the default bundle since round 2: lower knob errors than compact
    # at half its training time per epoch (docs/design.md, Data flow, "train").
    "profile": ModelConfig("profile", (32, 32, 32), fc_units=128, lstm_units=64, dropout=0.2, encoder="profile"),
}


def model_config(size: str | ModelConfig) -> ModelConfig:
    """The ``ModelConfig`` of a size name (``paper``/``compact``) or a config itself."""
    if isinstance(size, ModelConfig):
        return size
    try:
        return MODEL_SIZES[size]
    except KeyError:
        from serumrnn.core.errors import ParameterError

        raise ParameterError(
            f"Unknown model size {size!r}; choose one of {', '.join(MODEL_SIZES)}."
        ) from None

"""Model benchmarks: training throughput (samples/s) per model and size, on CPU and on
CUDA when present, and single-example inference latency through the bundle API.

Inputs are random tensors of the real feature shape (128 mels x 87 frames, 30 MFCCs),
so the figures measure the models, not the data pipeline.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serumrnn.core.bundle import ModelBundle, param_model_name, selector_model_name
from serumrnn.core.features import FeatureSettings, Features
from serumrnn.core.model_config import MODEL_SIZES
from serumrnn.core.models import build_model
from serumrnn.core.model_kinds import MultiLabelKind, ParameterKind, SequenceSelectorKind
from serumrnn.core.training import BundleIdentity

SETTINGS = FeatureSettings()
N_EFFECTS = 5
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TASKS = ["params", "rnn", "ni", "cnn"]


def _distortion_specs(rack):
    return tuple(rack.effect("distortion").params)


def _batch(task: str, batch_size: int, device: str, generator: torch.Generator) -> dict:
    m, c, t = SETTINGS.n_mels, SETTINGS.n_mfcc, SETTINGS.n_frames
    if task in ("rnn", "ni"):
        lengths = torch.randint(1, N_EFFECTS + 1, (batch_size,), generator=generator)
        labels = torch.randint(0, N_EFFECTS, (batch_size, N_EFFECTS), generator=generator)
        labels[torch.arange(N_EFFECTS)[None] >= lengths[:, None]] = -100
        applied = torch.zeros(batch_size, N_EFFECTS, N_EFFECTS + 1)
        applied[:, 0, 0] = 1
        batch = {"mel": torch.rand(batch_size, N_EFFECTS, 2, m, t, generator=generator) - 1,
                 "mfcc": torch.randn(batch_size, N_EFFECTS, 2, c, t, generator=generator) * 50,
                 "applied": applied, "labels": labels, "length": lengths}
    else:
        batch = {"mel": torch.rand(batch_size, 2, m, t, generator=generator) - 1,
                 "mfcc": torch.randn(batch_size, 2, c, t, generator=generator) * 50}
        if task == "params":
            batch["continuous"] = torch.rand(batch_size, 1, generator=generator)
            batch["categorical"] = torch.randint(0, 12, (batch_size, 1), generator=generator)
        else:
            batch["labels"] = (torch.rand(batch_size, N_EFFECTS, generator=generator) > 0.5).float()
    return {k: v.to(device) for k, v in batch.items()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", ["compact", "paper"])
@pytest.mark.parametrize("task", TASKS)
def test_training_throughput(benchmark, rack, task, size, device):
    """One optimiser step per call at the paper's batch size (smaller for paper on CPU)."""
    specs = _distortion_specs(rack)
    torch.manual_seed(0)
    model = build_model(task, SETTINGS, size, specs=specs, n_effects=N_EFFECTS).to(device).train()
    objective = {"params": ParameterKind(specs), "cnn": MultiLabelKind(N_EFFECTS)}.get(task) or SequenceSelectorKind(task, N_EFFECTS)
    batch_size = objective.default_batch_size
    if size == "paper" and device == "cpu":
        batch_size //= 4  # keep the CPU benchmark short; samples/s is what counts
    batch = _batch(task, batch_size, device, torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = objective.loss(objective.forward(model, batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: kernel selection, allocator
    benchmark.extra_info.update(items=batch_size, unit="samples", model=task, size=size, device=device)
    benchmark.pedantic(step, rounds=3 if size == "paper" else 5, iterations=1)


@pytest.fixture(scope="module")
def bundles(rack, tmp_path_factory) -> dict[str, ModelBundle]:
    """A bundle per size holding every model with random weights."""
    identity = BundleIdentity(rack.name, {name: tuple(rack.effect(name).params) for name in rack.effect_names},
                              "basic", SETTINGS)
    out = {}
    for size in ("compact", "paper"):
        path = tmp_path_factory.mktemp(size)
        bundle = ModelBundle.open_or_create(path, **identity.bundle_kwargs())
        config = MODEL_SIZES[size]
        torch.manual_seed(0)
        bundle.add_model(param_model_name("distortion"), build_model("params", SETTINGS, config, specs=_distortion_specs(rack)),
                         task="params", effect="distortion", config=config)
        for kind in ("rnn", "ni", "cnn"):
            bundle.add_model(selector_model_name(kind), build_model(kind, SETTINGS, config, n_effects=N_EFFECTS),
                             task=kind, config=config)
        out[size] = ModelBundle.load(path, rack=rack)
    return out


def _features(rng: np.random.Generator) -> Features:
    return Features(db_mel=rng.uniform(-80, 0, (SETTINGS.n_mels, SETTINGS.n_frames)).astype(np.float32),
                    mfcc=rng.normal(0, 50, (SETTINGS.n_mfcc, SETTINGS.n_frames)).astype(np.float32))


@pytest.mark.parametrize("size", ["compact", "paper"])
@pytest.mark.parametrize("model", ["params-distortion", "rnn", "ni", "cnn"])
def test_inference_latency(benchmark, bundles, size, model):
    """One example through ``ModelBundle`` (feature stacking included), CPU; selectors
    see a history of three sounds (two effects applied)."""
    rng = np.random.default_rng(0)
    bundle = bundles[size]
    history = [_features(rng) for _ in range(3)]
    target = _features(rng)
    if model == "params-distortion":
        def call():
            return bundle.predict_knobs("distortion", history[-1], target)
    else:
        def call():
            return bundle.selector_probabilities(model, history, ["eq", "reverb"], target)
    call()
    benchmark.extra_info.update(items=1, unit="predictions", size=size)
    benchmark(call)

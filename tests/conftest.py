from __future__ import annotations

import numpy as np
import pytest

SAMPLE_RATE = 44100


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def tone() -> np.ndarray:
    """1 s of a decaying band-limited tone at C4, float32, shape (44100,)."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    f0 = 261.63
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 30))
    return (0.5 * wave * np.exp(-2 * t)).astype(np.float32)


@pytest.fixture
def manager():
    from serumrnn.core import get_plugin_manager

    return get_plugin_manager()


@pytest.fixture
def rack(manager):
    return manager.rack("builtin")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A real generated dataset: one preset, one chain per effect subset."""
    from serumrnn.core.dataset import generate_dataset

    folder = tmp_path_factory.mktemp("tiny-data") / "data"
    generate_dataset(folder, group="basic", chains_per_combo=1, seed=0, workers=1, progress=False, presets=["saw"])
    return folder


@pytest.fixture(scope="session")
def tiny_bundle(tiny_dataset, tmp_path_factory):
    """A complete compact bundle (five parameter models, rnn, ni, cnn) trained for a
    couple of batches: real files and real models, not real accuracy."""
    from serumrnn.core.training import TrainOptions, train_params, train_selector

    folder = tmp_path_factory.mktemp("tiny-bundle") / "bundle"
    options = TrainOptions(epochs=1, max_batches_per_epoch=2, progress=False)
    for effect in ("compressor", "distortion", "eq", "phaser", "reverb"):
        train_params(tiny_dataset, effect, folder, options=options)
    for kind in ("rnn", "ni", "cnn"):
        train_selector(tiny_dataset, kind, folder, options=options)
    return folder

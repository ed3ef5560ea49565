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

"""Property tests (hypothesis): any knobs through any chain of built-in effects give
finite, bounded audio; the metrics are symmetric, zero (PCC one) on identical inputs and
finite on silence; knob encodings round-trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serumrnn.core import get_plugin_manager
from serumrnn.core.errors import ParameterError
from serumrnn.core.features import LibrosaFeatureExtractor
from serumrnn.core.metrics import METRICS, all_metrics
from serumrnn.core.params import ParamSpec

RACK = get_plugin_manager().rack("builtin")
PRESETS = [preset.name for preset in RACK.synth.presets]
ALL_SPECS = [(effect, spec) for effect in RACK.effect_names for spec in RACK.effect(effect).params]
EXTRACTOR = LibrosaFeatureExtractor()
# +12 dBFS: effects may add gain (EQ boost, compression makeup), but never without bound.
PEAK_BOUND = 4.0

# Few examples, no deadline: each renders a second of audio; the suite must stay quick on 2 cores.
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

knob = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0, allow_nan=False))


@st.composite
def chains(draw):
    """An ordered chain of distinct built-in effects, every knob of each set."""
    names = draw(st.lists(st.sampled_from(RACK.effect_names), min_size=1, max_size=len(RACK.effect_names), unique=True))
    return [(name, {spec.name: draw(knob) for spec in RACK.effect(name).params}) for name in names]


@st.composite
def sounds(draw, allow_silence: bool = True):
    """One second at 44.1 kHz: a tone, noise, a click, DC or silence, at any level up
    to full scale, built from a drawn seed (arrays drawn sample by sample would be slow)."""
    kind = draw(st.sampled_from(["tone", "noise", "click", "dc"] + (["silence"] if allow_silence else [])))
    level = draw(st.floats(1e-3, 1.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = np.arange(44100) / 44100
    if kind == "tone":
        audio = np.sin(2 * np.pi * rng.uniform(30, 15000) * t) * np.exp(-rng.uniform(0, 8) * t)
    elif kind == "noise":
        audio = rng.uniform(-1, 1, t.size)
    elif kind == "click":
        audio = np.zeros(t.size)
        audio[rng.integers(t.size)] = 1.0
    elif kind == "dc":
        audio = np.ones(t.size)
    else:
        audio = np.zeros(t.size)
    return (level * audio).astype(np.float32)


@FAST
@given(source=st.sampled_from(PRESETS), chain=chains())
def test_any_chain_of_any_knobs_on_any_preset_is_finite_and_bounded(source, chain):
    audio = RACK.render(source, chain)
    assert audio.dtype == np.float32 and audio.shape == (44100,)
    assert np.all(np.isfinite(audio))
    assert np.max(np.abs(audio)) <= PEAK_BOUND


@FAST
@given(source=sounds(), chain=chains())
def test_any_chain_on_any_user_sound_is_finite_and_bounded(source, chain):
    audio = RACK.render(source, chain)
    assert audio.shape == (44100,) and np.all(np.isfinite(audio))
    assert np.max(np.abs(audio)) <= PEAK_BOUND


def metrics_between(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return all_metrics(EXTRACTOR.extract(a), EXTRACTOR.extract(b), a, b)


@FAST
@given(a=sounds(), b=sounds())
def test_metrics_are_finite_and_symmetric(a, b):
    forward, backward = metrics_between(a, b), metrics_between(b, a)
    for name in METRICS:
        assert math.isfinite(forward[name]), (name, forward)
        assert forward[name] == pytest.approx(backward[name], rel=1e-9, abs=1e-9), name
    assert -1.0 - 1e-9 <= forward["pcc"] <= 1.0 + 1e-9
    assert all(forward[name] >= 0 for name in METRICS if name != "pcc")


@FAST
@given(a=sounds())
def test_metrics_are_zero_on_identical_sounds(a):
    same = metrics_between(a, a.copy())
    assert all(same[name] == pytest.approx(0.0, abs=1e-12) for name in METRICS if name != "pcc"), same
    # PCC of a sound with itself is 1, except for a constant dB mel (silence), where it is defined as 0.
    assert same["pcc"] == pytest.approx(1.0) or np.ptp(EXTRACTOR.extract(a).db_mel) == 0


def test_metrics_are_finite_on_silence():
    silence = np.zeros(44100, np.float32)
    tone = (0.5 * np.sin(2 * np.pi * 261.63 * np.arange(44100) / 44100)).astype(np.float32)
    for pair in ((silence, silence), (silence, tone), (tone, silence)):
        assert all(math.isfinite(value) for value in metrics_between(*pair).values())


spec_and_knob = st.tuples(st.sampled_from(ALL_SPECS), knob)


@settings(max_examples=200, deadline=None)
@given(case=spec_and_knob)
def test_knob_text_round_trips(case):
    (effect, spec), value = case
    # A number as a user types it (repr) comes back exactly.
    assert spec.parse(repr(value), effect=effect) == value
    if spec.kind == "categorical":
        index = spec.class_index(value)
        # The class label a person reads parses back to the centre of the same class.
        assert spec.parse(spec.describe(value), effect=effect) == spec.class_knob(index)
        assert spec.class_index(spec.class_knob(index)) == index
        assert spec.class_index(spec.from_one_hot(spec.one_hot(value))) == index
        assert 0 <= index < spec.n_classes


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not 0.0 <= v <= 1.0),
                       st.just(float("nan"))),
       spec=st.sampled_from(ALL_SPECS))
def test_knobs_outside_the_unit_interval_are_refused(value, spec):
    effect, spec = spec
    with pytest.raises(ParameterError):
        spec.parse(repr(value), effect=effect)


@pytest.mark.parametrize("effect, spec", ALL_SPECS, ids=[f"{e}.{s.name}" for e, s in ALL_SPECS])
def test_every_class_survives_encode_and_decode(effect, spec):
    assert ParamSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    if spec.kind == "categorical":
        for index, label in enumerate(spec.classes):
            knob_value = spec.class_knob(index)
            assert spec.class_index(knob_value) == index and spec.describe(knob_value) == label
            assert spec.one_hot(knob_value).argmax() == index


@FAST
@given(chain=chains())
def test_chain_knobs_round_trip_through_json_and_validation(chain):
    """Knob values are stored as JSON (dataset manifests, session.json) and validated by
    the rack: neither may change them."""
    stored = json.loads(json.dumps({name: knobs for name, knobs in chain}))
    assert RACK.validate_chain(list(stored.items())) == chain

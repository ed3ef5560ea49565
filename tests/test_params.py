import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serumrnn.core.errors import ParameterError
from serumrnn.core.params import ParamSpec, resolve_knobs, sample_knobs

GAIN = ParamSpec("gain", "continuous", sample_ranges=[(0.0, 0.4), (0.6, 1.0)], unit="dB",
                 physical_min=-24, physical_max=24)
MODE = ParamSpec("mode", "categorical", classes=("tube", "soft clip", "hard clip"), default=1 / 6)


def test_union_sampling_stays_inside_intervals_and_covers_both(rng):
    values = np.array([GAIN.sample(rng) for _ in range(4000)])
    assert np.all(((values >= 0) & (values <= 0.4)) | ((values >= 0.6) & (values <= 1.0)))
    assert 0.4 < np.mean(values < 0.5) < 0.6  # equal-length intervals are sampled equally


def test_categorical_sampling_hits_every_class_centre(rng):
    values = {MODE.sample(rng) for _ in range(300)}
    assert values == {MODE.class_knob(i) for i in range(3)}


def test_class_encoding_round_trips():
    for index in range(3):
        knob = MODE.class_knob(index)
        assert MODE.class_index(knob) == index
        np.testing.assert_array_equal(MODE.one_hot(knob), np.eye(3, dtype=np.float32)[index])
        assert MODE.from_one_hot(MODE.one_hot(knob)) == knob
    assert MODE.class_index(1.0) == 2 and MODE.class_index(0.0) == 0


@given(st.floats(0, 1))
@settings(max_examples=50, deadline=None)
def test_any_knob_maps_to_a_class_whose_centre_maps_back(knob):
    index = MODE.class_index(knob)
    assert 0 <= index < 3 and MODE.class_index(MODE.class_knob(index)) == index


def test_parse_accepts_labels_and_numbers():
    assert MODE.parse("Soft-Clip") == MODE.class_knob(1)
    assert MODE.parse("0.9") == 0.9
    assert GAIN.parse(" 0.25 ") == 0.25


@pytest.mark.parametrize("text", ["1.5", "-0.1", "nan", "loud", ""])
def test_parse_refuses_bad_values(text):
    with pytest.raises(ParameterError):
        GAIN.parse(text, effect="eq")


def test_display_in_physical_units():
    assert GAIN.describe(0.5) == "0 dB"
    assert GAIN.describe(1.0) == "+24 dB"
    freq = ParamSpec("frequency", "continuous", unit="Hz", physical_min=20, physical_max=20000, scale="log")
    assert freq.describe(0.0) == "20 Hz" and freq.describe(1.0) == "20.00 kHz"
    np.testing.assert_allclose(freq.physical(0.5), np.sqrt(20 * 20000))
    assert MODE.describe(0.99) == "hard clip"
    for spec in (freq, GAIN):  # knob_at inverts physical, log and linear
        for knob in (0.0, 0.3, 0.77, 1.0):
            assert spec.knob_at(spec.physical(knob)) == pytest.approx(knob)
    assert freq.knob_at(40000) > 1.0


def test_resolve_fills_defaults_and_refuses_unknown_and_out_of_range():
    assert resolve_knobs("x", (GAIN, MODE), {"gain": 0.2}) == {"gain": 0.2, "mode": 1 / 6}
    with pytest.raises(ParameterError, match="no knob 'drive'"):
        resolve_knobs("x", (GAIN,), {"drive": 0.2})
    with pytest.raises(ParameterError):
        resolve_knobs("x", (GAIN,), {"gain": 1.2})
    with pytest.raises(ParameterError):
        resolve_knobs("x", (GAIN,), {"gain": float("nan")})


def test_sample_knobs_keeps_unsampled_at_default(rng):
    fixed = ParamSpec("tone", "continuous", default=0.3, sampled=False)
    knobs = sample_knobs((GAIN, fixed), rng)
    assert knobs["tone"] == 0.3 and 0 <= knobs["gain"] <= 1


def test_json_round_trip():
    for spec in (GAIN, MODE):
        assert ParamSpec.from_json(spec.to_json()) == spec


def test_invalid_specs_are_refused():
    with pytest.raises(ValueError):
        ParamSpec("x", "categorical", classes=("only",))
    with pytest.raises(ValueError):
        ParamSpec("x", "continuous", sample_ranges=[(0.5, 1.5)])
    with pytest.raises(ValueError):
        ParamSpec("x", "stepped")

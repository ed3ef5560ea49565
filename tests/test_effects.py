"""Tests of the five built-in effects: knob specs, audible knobs, purity, errors."""

from __future__ import annotations

import functools
import itertools

import librosa
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serumrnn.core.errors import ParameterError
from serumrnn.core.interfaces import Effect
from serumrnn.effects import (
    BUILTIN_EFFECTS,
    Distortion,
    HallReverb,
    HighBandEQ,
    MultibandCompressor,
    Phaser,
)

SAMPLE_RATE = 44100
NOTE_HZ = 261.63  # C4, the note every rack render plays

FULL = ((0.0, 1.0),)
MODES = (
    "tube",
    "soft clip",
    "hard clip",
    "diode 1",
    "diode 2",
    "linear fold",
    "sine fold",
    "zero-square",
    "downsample",
    "asymmetric",
    "rectify",
    "x-shaper",
)

# name -> (label, sampled knobs as (name, kind, sample_ranges)), in rack order.
EXPECTED = {
    "compressor": (
        "Multiband Compressor",
        [("low", "continuous", FULL), ("mid", "continuous", FULL), ("high", "continuous", FULL)],
    ),
    "distortion": (
        "Distortion",
        [("mode", "categorical", FULL), ("drive", "continuous", ((0.3, 1.0),))],
    ),
    "eq": (
        "EQ (high band)",
        [
            ("frequency", "continuous", ((0.5, 0.95),)),
            ("resonance", "continuous", FULL),
            ("gain", "continuous", ((0.0, 0.4), (0.6, 1.0))),
        ],
    ),
    "phaser": (
        "Phaser",
        [("depth", "continuous", FULL), ("rate", "continuous", FULL), ("feedback", "continuous", FULL)],
    ),
    "reverb": (
        "Hall Reverb",
        [("mix", "continuous", ((0.3, 0.7),)), ("low_cut", "continuous", FULL), ("high_cut", "continuous", FULL)],
    ),
}

# Knob settings that make a knob under test matter: EQ frequency and resonance do
# nothing at 0 dB gain, so they are tested on a -24 dB cut.
CONTEXT = {("eq", "frequency"): {"gain": 0.0}, ("eq", "resonance"): {"gain": 0.0}}

# A knob is audible when some mel band's level changes by at least 1 dB averaged over the
# note: 1 dB is the just-noticeable difference in level. Averaging over all bands instead
# would hide knobs that act on one region (a bell, the low band of the compressor).
AUDIBLE_BAND_CHANGE_DB = 1.0
# Distortion modes must differ more than that: each is a different timbre, so the mean
# over all bands must change by at least 0.5 dB (the closest pair, soft clip and asymmetric, measures about 0.8).
MODE_MEAN_CHANGE_DB = 0.5

EFFECT_IDS = [effect.name for effect in BUILTIN_EFFECTS]


@functools.lru_cache(maxsize=1)
def saw_note() -> np.ndarray:
    """One second of a band-limited saw at C4 with a 10 ms attack and an exponential
    decay, peak about 0.8: float32, shape ``(44100,)``."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    harmonics = np.arange(1, int(SAMPLE_RATE / 2 / NOTE_HZ) + 1)
    phases = 2.0 * np.pi * NOTE_HZ * np.outer(harmonics, t)
    saw = (2.0 / np.pi) * np.sum(np.sin(phases) * ((-1.0) ** (harmonics + 1) / harmonics)[:, None], axis=0)
    envelope = np.minimum(t / 0.01, 1.0) * np.exp(-2.0 * t)
    return (0.8 * saw * envelope).astype(np.float32)


@pytest.fixture(scope="module")
def note() -> np.ndarray:
    return saw_note()


def band_levels_db(audio: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram in dB, shape ``(64, frames)``, floored at -80 dB."""
    power = librosa.feature.melspectrogram(
        y=audio, sr=SAMPLE_RATE, n_fft=2048, hop_length=512, n_mels=64, power=2.0
    )
    return 10.0 * np.log10(power + 1e-8)


def largest_band_change_db(a: np.ndarray, b: np.ndarray) -> float:
    """Largest, over mel bands, of the band's mean absolute level difference in dB."""
    return float(np.max(np.mean(np.abs(band_levels_db(a) - band_levels_db(b)), axis=1)))


def mean_change_db(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute log-mel difference in dB over all bands and frames."""
    return float(np.mean(np.abs(band_levels_db(a) - band_levels_db(b))))


def effect_named(name: str) -> Effect:
    return next(effect for effect in BUILTIN_EFFECTS if effect.name == name)


# -- specs --------------------------------------------------------------------------


def test_builtin_effects_in_rack_order():
    assert [effect.name for effect in BUILTIN_EFFECTS] == list(EXPECTED)
    assert [type(effect) for effect in BUILTIN_EFFECTS] == [
        MultibandCompressor,
        Distortion,
        HighBandEQ,
        Phaser,
        HallReverb,
    ]


@pytest.mark.parametrize("effect", BUILTIN_EFFECTS, ids=EFFECT_IDS)
def test_names_labels_and_sampled_knobs(effect: Effect):
    label, knobs = EXPECTED[effect.name]
    assert effect.label == label
    assert effect.description
    sampled = [(spec.name, spec.kind, spec.sample_ranges) for spec in effect.sampled_params]
    assert sampled == knobs
    for spec in effect.params:
        assert spec.label, f"{effect.name}:{spec.name} has no label"
        assert 0.0 <= spec.default <= 1.0


def test_distortion_modes_in_order():
    mode = effect_named("distortion").param("mode")
    assert mode.classes == MODES
    assert mode.describe(mode.class_knob(5)) == "linear fold"


def test_physical_display():
    eq = effect_named("eq")
    assert eq.param("frequency").describe(0.0) == "20 Hz"
    assert eq.param("frequency").describe(1.0) == "20.00 kHz"
    assert eq.param("gain").describe(0.5) == "0 dB"
    assert eq.param("gain").describe(1.0) == "+24 dB"
    reverb = effect_named("reverb")
    assert reverb.param("low_cut").physical(0.0) == pytest.approx(20.0)
    assert reverb.param("high_cut").physical(1.0) == pytest.approx(20000.0)
    assert effect_named("distortion").param("drive").unit == "dB"
    assert effect_named("phaser").param("rate").unit == "Hz"


# -- every knob is audible ----------------------------------------------------------

KNOB_CASES = [
    (effect.name, spec.name)
    for effect in BUILTIN_EFFECTS
    for spec in effect.sampled_params
    if spec.kind == "continuous" and not (effect.name == "distortion" and spec.name == "drive")
]


@pytest.mark.parametrize(("effect_name", "knob"), KNOB_CASES, ids=[f"{e}-{k}" for e, k in KNOB_CASES])
def test_knob_is_audible_across_its_sampled_range(note, effect_name, knob):
    effect = effect_named(effect_name)
    spec = effect.param(knob)
    low, high = spec.sample_ranges[0][0], spec.sample_ranges[-1][1]
    context = CONTEXT.get((effect_name, knob), {})
    at_low = effect.process(note, SAMPLE_RATE, {**context, knob: low})
    at_high = effect.process(note, SAMPLE_RATE, {**context, knob: high})
    assert largest_band_change_db(at_low, at_high) >= AUDIBLE_BAND_CHANGE_DB


@pytest.mark.parametrize("mode", MODES)
def test_drive_is_audible_in_every_mode(note, mode):
    distortion = effect_named("distortion")
    mode_knob = distortion.param("mode").class_knob(MODES.index(mode))
    soft = distortion.process(note, SAMPLE_RATE, {"mode": mode_knob, "drive": 0.3})
    hard = distortion.process(note, SAMPLE_RATE, {"mode": mode_knob, "drive": 1.0})
    assert largest_band_change_db(soft, hard) >= AUDIBLE_BAND_CHANGE_DB


def test_distortion_modes_differ_pairwise(note):
    distortion = effect_named("distortion")
    mode = distortion.param("mode")
    outputs = {
        name: distortion.process(note, SAMPLE_RATE, {"mode": mode.class_knob(i), "drive": 0.6})
        for i, name in enumerate(MODES)
    }
    for first, second in itertools.combinations(MODES, 2):
        change = mean_change_db(outputs[first], outputs[second])
        assert change >= MODE_MEAN_CHANGE_DB, f"{first} and {second} differ by {change:.2f} dB"


def test_compressor_amount_zero_is_transparent(note):
    out = effect_named("compressor").process(note, SAMPLE_RATE, {"low": 0.0, "mid": 0.0, "high": 0.0})
    np.testing.assert_array_equal(out, note)


def test_eq_gain_half_is_zero_db(note):
    eq = effect_named("eq")
    for frequency, resonance in [(0.5, 0.0), (0.75, 0.5), (0.95, 1.0)]:
        out = eq.process(note, SAMPLE_RATE, {"frequency": frequency, "resonance": resonance, "gain": 0.5})
        np.testing.assert_allclose(out, note, atol=1e-6)
    # Just off 0 dB the bell is still (nearly) the identity: no jump at the knob centre.
    out = eq.process(note, SAMPLE_RATE, {"gain": 0.5001})
    np.testing.assert_allclose(out, note, atol=1e-3)


# -- any knob vector gives sane audio -----------------------------------------------


def knob_vectors(effect: Effect) -> st.SearchStrategy[dict[str, float]]:
    unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
    return st.fixed_dictionaries({spec.name: unit for spec in effect.params})


@pytest.mark.parametrize("effect", BUILTIN_EFFECTS, ids=EFFECT_IDS)
def test_any_knobs_give_finite_audio_in_range(effect: Effect):
    @settings(max_examples=25, deadline=None)
    @given(knobs=knob_vectors(effect))
    def check(knobs):
        note = saw_note()
        out = effect.process(note, SAMPLE_RATE, knobs)
        assert out.dtype == np.float32
        assert out.shape == note.shape
        assert np.all(np.isfinite(out))
        assert np.max(np.abs(out)) <= 1.0

    check()


@pytest.mark.parametrize("effect", BUILTIN_EFFECTS, ids=EFFECT_IDS)
@pytest.mark.parametrize("n_samples", [0, 1, 100, 4097])
def test_short_and_silent_input(effect: Effect, n_samples: int):
    silence = np.zeros(n_samples, dtype=np.float32)
    out = effect.process(silence, SAMPLE_RATE)
    assert out.shape == (n_samples,)
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out), initial=0.0) < 1e-6


# -- purity -------------------------------------------------------------------------


@pytest.mark.parametrize("effect", BUILTIN_EFFECTS, ids=EFFECT_IDS)
def test_same_input_gives_bit_identical_output(note, effect: Effect):
    rng = np.random.default_rng(7)
    knobs = {spec.name: spec.sample(rng) for spec in effect.params}
    first = effect.process(note, SAMPLE_RATE, knobs)
    second = effect.process(note, SAMPLE_RATE, knobs)
    # Other audio, other knobs and another sample rate in between must leave no trace.
    noise = (0.5 * rng.standard_normal(20000)).astype(np.float32)
    effect.process(noise, 48000, {spec.name: spec.sample(rng) for spec in effect.params})
    third = effect.process(note, SAMPLE_RATE, knobs)
    assert first.tobytes() == second.tobytes() == third.tobytes()


@pytest.mark.parametrize("effect", BUILTIN_EFFECTS, ids=EFFECT_IDS)
def test_input_is_not_modified(note, effect: Effect):
    before = note.copy()
    effect.process(note, SAMPLE_RATE)
    np.testing.assert_array_equal(note, before)


# -- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("effect", BUILTIN_EFFECTS, ids=EFFECT_IDS)
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), float("inf")])
def test_knob_outside_unit_interval_is_refused(note, effect: Effect, value: float):
    knob = effect.params[0].name
    with pytest.raises(ParameterError):
        effect.process(note, SAMPLE_RATE, {knob: value})


@pytest.mark.parametrize("effect", BUILTIN_EFFECTS, ids=EFFECT_IDS)
def test_unknown_knob_is_refused(note, effect: Effect):
    with pytest.raises(ParameterError, match="no knob"):
        effect.process(note, SAMPLE_RATE, {"wobble": 0.5})


# -- the phaser's rate hint -----------------------------------------------------------


@pytest.mark.parametrize("rate_knob", [0.5, 0.62, 0.83])  # 2.2, 3.2 and 6.0 Hz
def test_the_phaser_reads_its_rate_from_the_change_it_made(note, rate_knob):
    """A search tries the phaser's rate at the LFO rates read from a source and its
    phased sound (the match is a narrow basin a scan can miss): the true rate is among
    the hinted values, within 1.5%, also with an EQ after the phaser. (A rate slower than
    one and a half cycles a second repeats too few times in this one-second note; its
    basin is wide enough for the scan.)"""
    from serumrnn.effects.phaser import lfo_rate_estimates

    phaser, eq = effect_named("phaser"), effect_named("eq")
    knobs = {"depth": 0.7, "rate": rate_knob, "feedback": 0.4}
    phased = phaser.process(note, SAMPLE_RATE, knobs)
    for after in (phased, eq.process(phased, SAMPLE_RATE, {"frequency": 0.7, "resonance": 0.4, "gain": 0.8})):
        true_hz = phaser.param("rate").physical(rate_knob)
        assert min(abs(rate / true_hz - 1) for rate in lfo_rate_estimates(note, after, SAMPLE_RATE)) < 0.015
        hinted = phaser.knob_hints(note, after, SAMPLE_RATE)["rate"]
        assert min(abs(knob - rate_knob) for knob in hinted) < 0.005
    assert lfo_rate_estimates(note, note, SAMPLE_RATE) == []  # nothing changed: nothing repeats


@pytest.mark.parametrize("n_fft, sample_rate, bands, low_hz, high_hz",
                         [(1024, 44100, 40, 150.0, 10000.0), (4096, 48000, 48, 60.0, 16000.0)])
def test_pooling_bins_into_bands_sums_the_bins_each_band_holds(n_fft, sample_rate, bands, low_hz, high_hz):
    """``pool_bands`` is the product with ``log_band_membership`` (bands under one bin
    stay 0), for one spectrum and a stack of them."""
    from serumrnn.effects.spectrum_fit import log_band_membership, pool_bands

    power = np.random.default_rng(1).random((3, 7, n_fft // 2 + 1))
    expected = power @ log_band_membership(n_fft, sample_rate, bands, low_hz, high_hz)
    np.testing.assert_allclose(pool_bands(power, n_fft, sample_rate, bands, low_hz, high_hz), expected, rtol=1e-12)
    np.testing.assert_allclose(pool_bands(power[0, 0], n_fft, sample_rate, bands, low_hz, high_hz), expected[0, 0],
                               rtol=1e-12)


@pytest.mark.parametrize("centre_hz, feedback_knob", [(200.0, 0.3), (1300.0, 0.0), (3000.0, 0.8)])
def test_the_phaser_response_model_matches_pedalboards_phaser_held_still(centre_hz, feedback_knob):
    """The sweep fit's model of the phaser: held at one cutoff (depth 0), pedalboard's
    phaser on noise has the modelled power gain within 0.1 dB on average, 50 Hz to 15 kHz."""
    import pedalboard
    import scipy.signal

    from serumrnn.effects.phaser import MAX_FEEDBACK, MIX, phaser_power_response

    noise = np.random.default_rng(0).standard_normal(4 * SAMPLE_RATE).astype(np.float32) * 0.1
    held = pedalboard.Phaser(rate_hz=1.0, depth=0.0, centre_frequency_hz=centre_hz,
                             feedback=MAX_FEEDBACK * feedback_knob, mix=MIX).process(noise, SAMPLE_RATE, reset=True)
    frequencies, cross = scipy.signal.csd(noise, held, fs=SAMPLE_RATE, nperseg=4096)
    _, power = scipy.signal.welch(noise, fs=SAMPLE_RATE, nperseg=4096)
    inside = (frequencies > 50) & (frequencies < 15000)
    measured_db = 20 * np.log10(np.abs(cross[inside] / power[inside]))
    modelled_db = 10 * np.log10(phaser_power_response(frequencies[inside], np.array([centre_hz]), feedback_knob,
                                                      SAMPLE_RATE)[0])
    assert np.mean(np.abs(measured_db - modelled_db)) < 0.1


@pytest.mark.parametrize("rate_knob", [0.1, 0.5, 0.83])  # 0.68, 2.2 and 6.0 Hz
@pytest.mark.parametrize("prior_offset", [-0.15, 0.15])
def test_the_phaser_sweep_fit_finds_its_rate(note, rate_knob, prior_offset):
    """The first part of the phaser's measurement: a model reads the rate to about 0.15 of
    the knob; the sweep fit, from that prediction, lands within 0.005 (1.5% in Hz), slow
    rates included, also with a compressor or an EQ after the phaser."""
    from serumrnn.effects.phaser import SWEEP_CANDIDATES, SWEEP_PRIOR_SPREAD, sweep_misfit
    from serumrnn.effects.spectrum_fit import most_plausible

    phaser = effect_named("phaser")
    phased = phaser.process(note, SAMPLE_RATE, {"depth": 0.7, "rate": rate_knob, "feedback": 0.4})
    predicted = np.array([0.4, min(max(rate_knob + prior_offset, 0.0), 1.0), 0.5])
    rate_range = (phaser.param("rate").physical(0.0), phaser.param("rate").physical(1.0))
    for after in (phased,
                  effect_named("compressor").process(phased, SAMPLE_RATE, {"low": 0.8, "mid": 0.8, "high": 0.8}),
                  effect_named("eq").process(phased, SAMPLE_RATE, {"frequency": 0.7, "resonance": 0.4, "gain": 0.8})):
        misfit = sweep_misfit(note, after, SAMPLE_RATE, rate_range)
        best = most_plausible(misfit.ravel(), SWEEP_CANDIDATES, predicted, SWEEP_PRIOR_SPREAD, misfit_floor=0.0)
        assert abs(SWEEP_CANDIDATES[best, 1] - rate_knob) < 0.005


@pytest.mark.parametrize("rate_knob", [0.5, 0.83])
@pytest.mark.parametrize("prior_offset", [-0.15, 0.15])
@pytest.mark.parametrize("depth", [0.4, 0.7])
def test_the_phaser_measures_its_rate_and_depth(note, rate_knob, prior_offset, depth):
    """The whole measurement, the depth predicted 0.3 off: the rate within 0.0075 (2.2% in
    Hz; the depth fit refines it in steps of 0.005), the depth on its 0.05 grid; the
    feedback, predicted right, stays. (Under one LFO cycle in the note, rate and depth
    trade against each other: not asserted.)"""
    phaser = effect_named("phaser")
    after = phaser.process(note, SAMPLE_RATE, {"depth": depth, "rate": rate_knob, "feedback": 0.4})
    predicted = {"depth": depth - 0.3, "rate": min(max(rate_knob + prior_offset, 0.0), 1.0), "feedback": 0.4}
    measured = phaser.measured_knobs(note, after, SAMPLE_RATE, predicted)
    assert abs(measured["rate"] - rate_knob) < 0.0075
    assert abs(measured["depth"] - depth) < 0.026
    assert measured["feedback"] == pytest.approx(0.4)


@pytest.mark.parametrize("rate_knob", [0.5, 0.83])
@pytest.mark.parametrize("feedback, predicted_feedback", [(0.2, 0.5), (0.7, 0.4), (0.5, 0.2)])
def test_the_phaser_measures_its_feedback_last(note, rate_knob, feedback, predicted_feedback):
    """The feedback, predicted 0.3 off (the depth right, the rate 0.15 off), is rendered
    last at 11 values: it lands within one of their steps (0.1)."""
    phaser = effect_named("phaser")
    after = phaser.process(note, SAMPLE_RATE, {"depth": 0.7, "rate": rate_knob, "feedback": feedback})
    predicted = {"depth": 0.7, "rate": min(rate_knob + 0.15, 1.0), "feedback": predicted_feedback}
    measured = phaser.measured_knobs(note, after, SAMPLE_RATE, predicted)
    assert abs(measured["feedback"] - feedback) < 0.101


@pytest.mark.parametrize("mode", ["tube", "hard clip", "diode 1", "sine fold", "x-shaper", "downsample"])
@pytest.mark.parametrize("drive", [0.45, 0.7, 0.88])
@pytest.mark.parametrize("prior_offset", [-0.15, 0.15])
def test_the_distortion_measures_its_drive_from_the_harmonics_it_added(note, mode, drive, prior_offset):
    """A model reads the drive to about 0.18 of the knob; the measurement, starting 0.15
    off, lands on the drive that made the sound (within its 0.02 grid, or the hold
    length's step), in the predicted mode, which it leaves alone."""
    distortion = effect_named("distortion")
    mode_knob = (MODES.index(mode) + 0.5) / len(MODES)
    after = distortion.process(note, SAMPLE_RATE, {"mode": mode_knob, "drive": drive})
    predicted = {"mode": mode_knob, "drive": min(max(drive + prior_offset, 0.3), 1.0)}
    measured = distortion.measured_knobs(note, after, SAMPLE_RATE, predicted)
    assert measured["mode"] == mode_knob
    assert np.allclose(distortion.process(note, SAMPLE_RATE, measured), after, atol=1e-6) or \
        abs(measured["drive"] - drive) <= 0.0101


@pytest.mark.parametrize("true_mode, predicted_mode", [
    ("sine fold", "hard clip"), ("downsample", "zero-square"), ("rectify", "x-shaper"), ("tube", "sine fold"),
    ("soft clip", "diode 1"),
])
@pytest.mark.parametrize("drive", [0.5, 0.8])
def test_the_distortion_replaces_a_mode_its_harmonics_rule_out(note, true_mode, predicted_mode, drive):
    """A lone shaper in a mode the model missed (pairs it confused on held-out patches):
    no drive of the predicted mode comes near the target's spectrum, so every mode is
    fitted and the one that made the sound takes over, with its drive."""
    distortion = effect_named("distortion")
    true_knob, predicted_knob = ((MODES.index(mode) + 0.5) / len(MODES) for mode in (true_mode, predicted_mode))
    after = distortion.process(note, SAMPLE_RATE, {"mode": true_knob, "drive": drive})
    measured = distortion.measured_knobs(note, after, SAMPLE_RATE, {"mode": predicted_knob, "drive": drive + 0.1})
    assert measured["mode"] == true_knob
    assert np.allclose(distortion.process(note, SAMPLE_RATE, measured), after, atol=1e-6) or \
        abs(measured["drive"] - drive) <= 0.0101


def _mode_classes(first: str, *others: tuple[str, float], first_probability: float) -> dict:
    """A parameter model's ranking of the modes: ``first``, then ``others``, then the rest
    sharing what is left."""
    named = [(first, first_probability), *others]
    rest = [mode for mode in MODES if mode not in dict(named)]
    left = (1.0 - sum(p for _, p in named)) / len(rest)
    return {"mode": [((MODES.index(mode) + 0.5) / len(MODES), p) for mode, p in [*named, *((m, left) for m in rest)]]}


@pytest.mark.parametrize("true_mode, predicted_mode", [("sine fold", "hard clip"), ("rectify", "x-shaper"),
                                                       ("diode 2", "tube")])
def test_the_distortion_weighs_the_mode_fits_by_the_models_probabilities(note, true_mode, predicted_mode):
    """The model's runner-up that made the sound wins over its first choice; with that mode
    and every other but the first below ``MODE_MIN_PROBABILITY``, none of them is fitted
    and the model's mode stands."""
    from serumrnn.effects.distortion import MODE_MIN_PROBABILITY

    distortion = effect_named("distortion")
    true_knob, predicted_knob = ((MODES.index(mode) + 0.5) / len(MODES) for mode in (true_mode, predicted_mode))
    after = distortion.process(note, SAMPLE_RATE, {"mode": true_knob, "drive": 0.8})
    predicted = {"mode": predicted_knob, "drive": 0.7}
    runner_up = _mode_classes(predicted_mode, (true_mode, 0.25), first_probability=0.7)
    measured = distortion.measured_knobs(note, after, SAMPLE_RATE, predicted, runner_up)
    assert measured["mode"] == true_knob and abs(measured["drive"] - 0.8) <= 0.0101
    implausible = _mode_classes(predicted_mode, (true_mode, MODE_MIN_PROBABILITY / 2), first_probability=0.9)
    measured = distortion.measured_knobs(note, after, SAMPLE_RATE, predicted, implausible)
    assert measured["mode"] == predicted_knob


def test_the_distortion_drive_measurement_sees_through_a_reverb_after_it(note):
    """Later effects that smear or filter the sound change its average spectrum smoothly;
    a folder's harmonics still place the drive (a clipper's change to a saw is too gentle
    to survive a filter after it, and the prediction then stays about where it was)."""
    distortion, reverb = effect_named("distortion"), effect_named("reverb")
    mode_knob = (MODES.index("sine fold") + 0.5) / len(MODES)
    after = reverb.process(distortion.process(note, SAMPLE_RATE, {"mode": mode_knob, "drive": 0.7}), SAMPLE_RATE,
                           {knob.name: 0.5 for knob in reverb.params})
    for prior in (0.55, 0.85):
        measured = distortion.measured_knobs(note, after, SAMPLE_RATE, {"mode": mode_knob, "drive": prior})
        assert abs(measured["drive"] - 0.7) <= 0.0101


@pytest.mark.parametrize("knobs", [(0.6, 0.1, 0.9), (0.75, 0.5, 0.2), (0.9, 1.0, 0.0), (0.95, 0.0, 1.0)])
@pytest.mark.parametrize("sample_rate", [22050, 44100])
def test_the_eq_bell_response_is_the_filter_the_eq_runs(knobs, sample_rate):
    """The EQ's fit scores bells without rendering them: the response it computes is the
    change the EQ makes to quiet white noise's average spectrum (0.01 dB on average over
    the bins; the FFT window smears the centre of the deepest, narrowest notch by about
    0.5 dB), also with the frequency held under Nyquist."""
    from serumrnn.effects.spectrum_fit import average_spectrum_db

    eq = effect_named("eq")
    noise = (0.005 * np.random.default_rng(0).standard_normal(3 * sample_rate)).astype(np.float32)
    rendered = eq.process(noise, sample_rate, dict(zip(("frequency", "resonance", "gain"), knobs)))
    change = average_spectrum_db(rendered, sample_rate) - average_spectrum_db(noise, sample_rate)
    error = np.abs(change - eq._bell_db(np.array([knobs]), sample_rate)[0])
    assert np.mean(error) < 0.01 and np.max(error) < 0.6


@pytest.mark.parametrize("frequency", [0.55, 0.7, 0.93])
@pytest.mark.parametrize("resonance", [0.2, 0.6])
@pytest.mark.parametrize("gain", [0.1, 0.75])
@pytest.mark.parametrize("prior_offset", [-0.1, 0.1])
def test_the_eq_measures_its_bell_from_the_spectrum_change(note, frequency, resonance, gain, prior_offset):
    """A model reads each EQ knob to 0.1-0.2; from every knob 0.1 off, the measurement
    places the bell's frequency within one coarse grid step (0.02) and brings the
    average spectrum to less than half the prediction's misfit. (A quieter note: a boost
    that clips at full scale is no longer a bell.)"""
    from serumrnn.effects.spectrum_fit import average_spectrum_db, spectrum_misfit

    eq, quiet = effect_named("eq"), 0.4 * note
    true = {"frequency": frequency, "resonance": resonance, "gain": gain}
    after = eq.process(quiet, SAMPLE_RATE, true)
    predicted = {name: float(np.clip(value + prior_offset, 0.0, 1.0)) for name, value in true.items()}
    measured = eq.measured_knobs(quiet, after, SAMPLE_RATE, predicted)
    assert abs(measured["frequency"] - frequency) <= 0.0201
    target_db = average_spectrum_db(after, SAMPLE_RATE)
    misfits = [spectrum_misfit(average_spectrum_db(eq.process(quiet, SAMPLE_RATE, knobs), SAMPLE_RATE), target_db)
               for knobs in (measured, predicted)]
    assert misfits[0] < 0.5 * misfits[1]


def test_sos_response_is_scipys():
    """The reverb's fit evaluates its cuts' responses without scipy; the same numbers."""
    import scipy.signal

    from serumrnn.effects.filters import butterworth_sos, sos_response

    frequencies = np.linspace(0.0, 22000.0, 301)
    for cutoff, kind, sections in ((40.0, "highpass", 1), (3000.0, "lowpass", 2), (21000.0, "lowpass", 1)):
        sos = butterworth_sos(cutoff, SAMPLE_RATE, kind, sections)
        _, expected = scipy.signal.sosfreqz(sos, worN=frequencies, fs=SAMPLE_RATE)
        assert np.allclose(sos_response(sos, frequencies, SAMPLE_RATE), expected, atol=1e-9)


@pytest.mark.parametrize("knobs", [(0.5, 0.3, 0.7), (0.35, 0.1, 0.4), (0.65, 0.6, 0.9), (0.4, 0.8, 0.2)])
@pytest.mark.parametrize("prior_offset", [-0.1, 0.1])
def test_the_reverb_measures_its_mix_and_cuts_from_the_tail(note, knobs, prior_offset):
    """From every knob 0.1 off, the reverb's measurement finds the mix (how fast the tail
    builds against the dry sound) and the high cut (which bands the tail fills) on its
    fine grid; the low cut, which acts below this saw's fundamental, ends no farther from
    the truth than predicted."""
    reverb, quiet = effect_named("reverb"), 0.4 * note
    true = dict(zip(("mix", "low_cut", "high_cut"), knobs))
    after = reverb.process(quiet, SAMPLE_RATE, true)
    predicted = {name: float(np.clip(value + prior_offset, 0.0, 1.0)) for name, value in true.items()}
    measured = reverb.measured_knobs(quiet, after, SAMPLE_RATE, predicted)
    assert abs(measured["mix"] - true["mix"]) < 0.013
    assert abs(measured["high_cut"] - true["high_cut"]) < 0.026
    assert abs(measured["low_cut"] - true["low_cut"]) <= abs(predicted["low_cut"] - true["low_cut"]) + 1e-9


@pytest.mark.parametrize("bell", [(0.55, 0.5, 0.9), (0.7, 0.3, 0.1)])
def test_the_reverb_measures_its_high_cut_through_an_eq_after_it(note, bell):
    """A bell after the reverb (a 6-12 dB boost or cut) reshapes every band's level but not
    how fast the tail builds in it: the high cut, predicted 0.1 off, still lands on the
    fine grid's step (0.05) around the truth."""
    reverb, eq, quiet = effect_named("reverb"), effect_named("eq"), 0.4 * note
    true = {"mix": 0.5, "low_cut": 0.3, "high_cut": 0.6}
    after = eq.process(reverb.process(quiet, SAMPLE_RATE, true), SAMPLE_RATE,
                       dict(zip(("frequency", "resonance", "gain"), bell)))
    measured = reverb.measured_knobs(quiet, after, SAMPLE_RATE, {**true, "high_cut": 0.7})
    assert abs(measured["high_cut"] - true["high_cut"]) < 0.051


def test_the_compressor_output_is_linear_in_its_amounts(note):
    """Its gains follow the input's band levels, not the knobs, so a mix of two settings'
    outputs is the output of the mixed setting (the fit scores amounts without rendering;
    a quieter note: the clip at full scale is not the compressor's)."""
    compressor, note = effect_named("compressor"), 0.3 * note
    first, second = {"low": 0.9, "mid": 0.1, "high": 0.6}, {"low": 0.2, "mid": 0.7, "high": 0.0}
    mixed = {name: 0.25 * first[name] + 0.75 * second[name] for name in first}
    expected = 0.25 * compressor.process(note, SAMPLE_RATE, first) + 0.75 * compressor.process(note, SAMPLE_RATE, second)
    assert np.allclose(compressor.process(note, SAMPLE_RATE, mixed), expected, atol=1e-5)


@pytest.mark.parametrize("knobs", [(0.23, 0.47, 0.81), (0.68, 0.33, 0.52), (0.51, 0.87, 0.12), (0.88, 0.61, 0.38)])
@pytest.mark.parametrize("prior_offset", [-0.15, 0.15])
def test_the_compressor_measures_its_amounts_from_the_band_levels(note, knobs, prior_offset):
    """A model reads each amount to about 0.2. From every amount 0.15 off (alternating
    sides), the measurement finds the mid and high amounts within one fine-grid step (0.05) and
    brings the power over time and bands to under a quarter of the prediction's misfit;
    the low amount (this saw's fundamental alone, which the level set aside hides)
    ends no farther off than predicted. (A quieter note, as above.)"""
    from serumrnn.core.features import framed_rfft
    from serumrnn.effects.spectrum_fit import (
        TIME_FIT_FFT,
        TIME_FIT_HOP,
        sum_segments,
        time_band_pool,
        time_band_misfit,
        time_band_target_db,
    )

    compressor, note = effect_named("compressor"), 0.3 * note
    true = dict(zip(("low", "mid", "high"), knobs))
    after = compressor.process(note, SAMPLE_RATE, true)
    predicted = {name: float(np.clip(value + sign * prior_offset, 0.0, 1.0))
                 for (name, value), sign in zip(true.items(), (1, -1, 1))}
    measured = compressor.measured_knobs(note, after, SAMPLE_RATE, predicted)
    assert abs(measured["mid"] - true["mid"]) < 0.051 and abs(measured["high"] - true["high"]) < 0.051
    assert abs(measured["low"] - true["low"]) <= abs(predicted["low"] - true["low"]) + 1e-9
    target_db, floor = time_band_target_db(framed_rfft(after, TIME_FIT_FFT, TIME_FIT_HOP), SAMPLE_RATE)

    def misfit(knob_values: dict[str, float]) -> float:
        spectrum = framed_rfft(compressor.process(note, SAMPLE_RATE, knob_values), TIME_FIT_FFT, TIME_FIT_HOP)
        power = sum_segments(time_band_pool(np.square(np.abs(spectrum), dtype=np.float64), SAMPLE_RATE))
        return float(time_band_misfit(power[None], target_db, floor)[0])

    assert misfit(measured) < 0.25 * misfit(predicted)


def test_knob_measurements_leave_the_prediction_alone_without_a_change_to_read(note):
    """Nothing changed, or a silent target: the phaser keeps the predicted knobs; a
    prediction without the knobs a measurement reads, and a bare effect type a rack may
    hand out, come back as they were."""
    from serumrnn.core.rack import Rack

    predicted = {"depth": 0.3, "rate": 0.42, "feedback": 0.6}
    assert effect_named("phaser").measured_knobs(note, note, SAMPLE_RATE, predicted) == predicted
    assert effect_named("phaser").measured_knobs(note, np.zeros_like(note), SAMPLE_RATE, predicted) == predicted
    reverb = effect_named("reverb")
    assert reverb.measured_knobs(note, note * 0.5, SAMPLE_RATE, {"mix": 0.2}) == {"mix": 0.2}  # knobs missing
    assert effect_named("compressor").measured_knobs(note, note, SAMPLE_RATE, {"low": 0.3}) == {"low": 0.3}

    class Bare:
        name, params, pure = "bare", (), True

    rack = Rack("test", synth=None, effects=[Bare()])
    assert rack.measure_knobs("bare", note, note * 0.5, {"x": 0.1}) == {"x": 0.1}

"""Render and feature-extraction speed of the built-in rack (1 s notes at 44.1 kHz).

The real-time factor is 1 s of audio divided by the median time; ``summary.py`` prints it.
"""

import numpy as np
import pytest

from serumrnn.core.params import sample_knobs

ORDER = ("compressor", "distortion", "eq", "phaser", "reverb")


@pytest.mark.parametrize("n_effects", range(6))
def test_render_chain(benchmark, rack, n_effects):
    rng = np.random.default_rng(n_effects)
    chain = [(name, sample_knobs(rack.effect(name).params, rng)) for name in ORDER[:n_effects]]
    rack.dry("saw")  # the dry render is cached, as in a session or dataset generation
    benchmark.extra_info.update(audio_seconds=rack.duration_s, kind="render", effects=n_effects)
    audio = benchmark(rack.render, "saw", chain)
    assert audio.shape == (44100,)


@pytest.mark.parametrize("effect", ORDER)
def test_single_effect(benchmark, rack, effect):
    knobs = sample_knobs(rack.effect(effect).params, np.random.default_rng(1))
    dry = rack.dry("saw")
    benchmark.extra_info.update(audio_seconds=rack.duration_s, kind="effect", effect=effect)
    benchmark(rack.effect(effect).process, dry, rack.sample_rate, knobs)


@pytest.mark.parametrize("case", ["compressor", "distortion", "distortion, every mode", "eq", "phaser", "reverb"])
def test_measured_knobs(benchmark, rack, case):
    """An effect measuring its knobs from the sounds before and after it (every plain step's
    prediction passes through this), starting 0.15 off. The distortion fits each mode its
    model gives 2% or more: two here (85% and 10%), or, given no probabilities, all twelve."""
    effect = case.split(",")[0]
    knobs = sample_knobs(rack.effect(effect).params, np.random.default_rng(2))
    dry = rack.dry("saw")
    after = rack.effect(effect).process(dry, rack.sample_rate, knobs)
    measured = {name: value if name == "mode" else min(value + 0.15, 1.0) for name, value in knobs.items()}
    classes = None
    if case == "distortion":
        spec = rack.effect(effect).param("mode")
        first = spec.class_index(knobs["mode"])
        rest = [index for index in range(len(spec.classes)) if index != first]
        classes = {"mode": [(spec.class_knob(first), 0.85), (spec.class_knob(rest[0]), 0.1)]
                   + [(spec.class_knob(index), 0.05 / (len(rest) - 1)) for index in rest[1:]]}
    benchmark.extra_info.update(kind="measured knobs", effect=case)
    benchmark(rack.measure_knobs, effect, dry, after, measured, classes)


def test_dry_synth_render(benchmark, rack):
    benchmark.extra_info.update(audio_seconds=rack.duration_s, kind="synth")
    benchmark(rack.synth.render, "run-the-harm")


def test_feature_extraction(benchmark, rack):
    from serumrnn.core.features import LibrosaFeatureExtractor

    extractor = LibrosaFeatureExtractor()
    audio = rack.render("saw", [("reverb", {"mix": 0.5})])
    extractor.extract(audio)
    benchmark.extra_info.update(audio_seconds=rack.duration_s, kind="features")
    features = benchmark(extractor.extract, audio)
    assert features.db_mel.shape == (128, 87)


def test_all_six_metrics(benchmark, rack):
    from serumrnn.core.features import LibrosaFeatureExtractor
    from serumrnn.core.metrics import all_metrics

    extractor = LibrosaFeatureExtractor()
    a, b = rack.dry("saw"), rack.render("saw", [("reverb", {"mix": 0.5})])
    fa, fb = extractor.extract(a), extractor.extract(b)
    benchmark.extra_info.update(kind="metrics")
    benchmark(all_metrics, fa, fb, a, b)

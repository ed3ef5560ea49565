"""Session latency (docs/design.md, "Performance goals"): one full step (features, selection, parameter
prediction, render, metrics) and whole sessions, for the compact and paper sizes, on CPU.

Latency does not depend on how well the models are trained, so the bundles here are
trained for one batch on a tiny dataset.
"""

import numpy as np
import pytest

from serumrnn.core.params import sample_knobs

TARGET_CHAIN = ("distortion", "eq", "reverb")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from serumrnn.core.dataset import generate_dataset

    folder = tmp_path_factory.mktemp("bench-data") / "data"
    generate_dataset(folder, group="basic", chains_per_combo=1, seed=0, workers=1, progress=False, presets=["saw"])
    return folder


@pytest.fixture(scope="session", params=["compact", "paper"])
def sized_bundle(request, tiny_data, tmp_path_factory):
    from serumrnn.core.bundle import ModelBundle
    from serumrnn.core.training import TrainOptions, train_params, train_selector

    folder = tmp_path_factory.mktemp(f"bench-{request.param}") / "bundle"
    options = TrainOptions(epochs=1, max_batches_per_epoch=1, progress=False)
    for effect in ("compressor", "distortion", "eq", "phaser", "reverb"):
        train_params(tiny_data, effect, folder, size=request.param, options=options)
    for kind in ("rnn", "ni", "cnn"):
        train_selector(tiny_data, kind, folder, size=request.param, options=options)
    return request.param, ModelBundle.load(folder)


@pytest.fixture(scope="session")
def target(rack):
    rng = np.random.default_rng(3)
    chain = [(name, sample_knobs(rack.effect(name).params, rng)) for name in TARGET_CHAIN]
    return rack.render("saw", chain)


def second_step(rack, bundle, target):
    """What the second step of a session from saw sees: the extractor, the rnn selector,
    the target's features and metric reference, the first step and its output, the state."""
    from serumrnn.core.features import LibrosaFeatureExtractor
    from serumrnn.core.metrics import MetricReference
    from serumrnn.core.registry import get_plugin_manager
    from serumrnn.core.interfaces import SelectionState

    extractor = LibrosaFeatureExtractor()
    input_features = extractor.extract(rack.dry("saw"))
    target_features = extractor.extract(target)
    first = ("distortion", bundle.predict_knobs("distortion", input_features, target_features))
    after_first = rack.render("saw", [first])
    state = SelectionState(history=[input_features, extractor.extract(after_first)], applied=["distortion"],
                           target=target_features, effect_names=rack.effect_names, bundle=bundle)
    return (extractor, get_plugin_manager().selectors.get("rnn"), target_features,
            MetricReference(target, target_features), first, after_first, state)


def test_one_step(benchmark, rack, sized_bundle, target):
    """A session step: select (rnn) -> predict and measure knobs -> re-render the chain -> features -> metrics."""
    size, bundle = sized_bundle
    extractor, selector, target_features, reference, first, after_first, state = second_step(rack, bundle, target)

    def step():
        scores = selector.probabilities(state)
        order = [rack.effect_names[i] for i in np.argsort(-scores) if rack.effect_names[i] not in state.applied]
        knobs = rack.measure_knobs(order[0], after_first, target,
                                   bundle.predict_knobs(order[0], state.history[-1], target_features))
        audio = rack.render("saw", [first, (order[0], knobs)])
        return reference.compare(audio, extractor.extract(audio))

    benchmark.extra_info.update(kind="session step", size=size)
    metrics = benchmark(step)
    assert set(metrics) == {"mse", "mae", "lsd", "mfccd", "pcc", "mssmae"}


@pytest.mark.parametrize("budget", ["300 ms", "20 renders"])
def test_hybrid_step(benchmark, rack, sized_bundle, target, budget):
    """A searched step (core/search.py) beside ``test_one_step``'s plain one, from the same
    state: select -> predict every unused effect -> render and score candidates -> refine
    the best -> features and metrics of the kept sound. Only the new effect is rendered."""
    import time

    from serumrnn.core.search import SearchOptions, StepSearch

    size, bundle = sized_bundle
    extractor, selector, target_features, reference, first, after_first, state = second_step(rack, bundle, target)
    options = SearchOptions(budget_ms=300.0) if budget == "300 ms" else SearchOptions(budget_ms=None, max_renders=20)
    search = StepSearch(options, rack=rack, entry=rack.level_source("saw", bundle.loudness), bundle=bundle, extractor=extractor, reference=reference,
                        metric="mssmae", loudness=bundle.loudness, target_features=target_features, seed=0)
    renders = []

    def step():
        started = time.perf_counter()
        search.raw = after_first  # each round searches the same second step
        found = search.step(np.asarray(selector.probabilities(state)), state, [first], started)
        renders.append(found.renders)
        audio = found.trial.audio
        return reference.compare(audio, extractor.extract(audio), mssmae=found.trial.score)

    metrics = benchmark.pedantic(step, rounds=10, warmup_rounds=1)
    benchmark.extra_info.update(kind="hybrid step", size=size, budget=budget, renders=float(np.median(renders)))
    assert set(metrics) == {"mse", "mae", "lsd", "mfccd", "pcc", "mssmae"}


def test_revision(benchmark, rack, target):
    """The revision of a session's kept steps (``search.ChainReviser``) at the default
    ``DEFAULT_REVISE_RENDERS``, on a three-effect chain offered with off knobs and in a wrong order:
    the cost a searched session adds once, after its steps. It spends every render here
    (the chain keeps improving), so this is the revision's worst case."""
    from serumrnn.core.features import LibrosaFeatureExtractor
    from serumrnn.core.loudness import LUFS_14
    from serumrnn.core.metrics import MetricReference
    from serumrnn.core.search import DEFAULT_REVISE_RENDERS, ChainReviser

    entry = rack.level_source("saw", LUFS_14)
    levelled_target = LUFS_14.apply(target, rack.sample_rate)
    reference = MetricReference(levelled_target, LibrosaFeatureExtractor().extract(levelled_target))
    rng = np.random.default_rng(5)
    offered = [(name, sample_knobs(rack.effect(name).params, rng)) for name in reversed(TARGET_CHAIN)]
    start = reference.score("mssmae", LUFS_14.apply(rack.process(entry, offered), rack.sample_rate))

    def revise():
        return ChainReviser(rack=rack, entry=entry, loudness=LUFS_14, reference=reference, metric="mssmae",
                            renders=DEFAULT_REVISE_RENDERS).revise(offered, start)

    revised = benchmark.pedantic(revise, rounds=5, warmup_rounds=1)
    assert revised.score < start
    benchmark.extra_info.update(kind="revision", renders=revised.renders)


@pytest.mark.parametrize("selector", ["rnn", "ni", "cnn", "random", "oracle", "cnn-1s"])
def test_whole_session(benchmark, rack, sized_bundle, target, selector):
    """A whole plain session (no search) from preset to target with no stopping (tolerance 5), for each of
    the six systems; ``summary.py`` divides by its steps for the per-step latency (the
    oracle applies the target's three effects, cnn-1s what it picks, the others five)."""
    from serumrnn.core.registry import get_plugin_manager
    from serumrnn.core.session import run_session

    size, bundle = sized_bundle
    chosen = get_plugin_manager().selectors.get(selector)
    session = benchmark.pedantic(run_session, args=("saw", target),
                                 kwargs=dict(rack=rack, bundle=bundle, selector=chosen, tolerance=5,
                                             true_chain=TARGET_CHAIN, search=False),
                                 rounds=5, warmup_rounds=1)
    assert session.steps
    benchmark.extra_info.update(kind="session", size=size, selector=selector, steps=len(session.steps))

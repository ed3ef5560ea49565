"""The hybrid search of a session step (core/search.py, issue 14)."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from serumrnn.cli.app import app
from serumrnn.core.audio import write_wav
from serumrnn.core.errors import BundleError, ParameterError
from serumrnn.core.loudness import LUFS_14, NONE
from serumrnn.core.metrics import METRICS, MetricReference
from serumrnn.core.params import ParamSpec, default_knobs, sample_knobs
from serumrnn.core.rack import Rack
from serumrnn.core.registry import get_plugin_manager
from serumrnn.core.search import (
    DEFAULT_REVISE_RENDERS, REFINED, THREADS, ChainReviser, SearchOptions, from_unit, ranked_prediction, to_unit,
)
from serumrnn.core import search
from serumrnn.core.session import resolve_bundle, run_session, suggest

runner = CliRunner()
# A render budget alone: deterministic and fast.
RENDERS = dict(budget_ms=None, max_renders=6)


@pytest.fixture(scope="module")
def all_bundle():
    return resolve_bundle("all", get_plugin_manager().rack("builtin"))


@pytest.fixture(scope="module")
def targets():
    """Three targets made by hidden chains on presets: (preset, target audio)."""
    rack = get_plugin_manager().rack("builtin")
    rng = np.random.default_rng(11)
    made = []
    for preset, length in (("saw", 3), ("vintage-bells", 2), ("square", 4)):
        names = [str(name) for name in rng.permutation(rack.effect_names)[:length]]
        made.append((preset, rack.render(preset, [(name, sample_knobs(rack.effect(name).params, rng))
                                                  for name in names])))
    return made


class CountingRack(Rack):
    """The built-in rack, counting chain renders (process calls with effects)."""

    def __init__(self, name="builtin", pure_effects=None):
        builtin = get_plugin_manager().rack("builtin")
        super().__init__(name, builtin.synth, list(builtin.effects.values()), pure_effects=pure_effects)
        self.calls: list[int] = []

    def process(self, audio, chain):
        if len(chain):
            self.calls.append(len(chain))
        return super().process(audio, chain)


class DefaultKnobsBundle:
    """Predicts every effect's default knobs, under a chosen loudness convention."""

    def __init__(self, rack, loudness=NONE):
        self.rack, self.loudness = rack, loudness

    def predict_knobs(self, effect, current, target):
        return default_knobs(self.rack.effect(effect).sampled_params)


class FixedOrder:
    name, description, model_kind, one_shot, needs_true_chain = "fixed", "test", None, False, False

    def probabilities(self, state):
        order = ["eq", "reverb", "distortion", "phaser", "compressor"]
        return np.array([len(order) - order.index(name) for name in state.effect_names], float)


def _model_knobs(bundle, rack, source, chain, effect, history, session):
    """The model's knobs for ``effect`` after ``chain`` with what the effect measures from
    the chain's sound (before levelling, as the search has it) and the target."""
    raw = rack.process(rack.level_source(source, session.loudness), chain)
    return rack.measure_knobs(effect, raw, session.target_audio,
                              *ranked_prediction(bundle, effect, history[-1], session.target_features))


def _plain_guess(bundle, rack, source, chain, history, applied, session):
    """The plain models' step after ``chain``: the rnn's pick with its predicted knobs, scored."""
    scores = bundle.selector_probabilities("rnn", history, applied, session.target_features)
    pick = next(rack.effect_names[i] for i in np.argsort(-scores, kind="stable")
                if rack.effect_names[i] not in applied)
    knobs = _model_knobs(bundle, rack, source, chain, pick, history, session)
    audio = rack.render(source, [*chain, (pick, knobs)], loudness=session.loudness)
    return pick, knobs, MetricReference(session.target_audio, session.target_features).score("mssmae", audio)


def test_search_never_keeps_a_worse_step_than_the_models_guess(all_bundle, targets):
    rack = get_plugin_manager().rack("builtin")
    gained = 0
    for preset, target in targets:
        session = suggest(preset, target, bundle=all_bundle, tolerance=5, **RENDERS)
        history, applied, chain = [session.input_features], [], []
        for step in session.steps:
            pick, knobs, guess = _plain_guess(all_bundle, rack, preset, chain, history, applied, session)
            assert step.metrics["mssmae"] <= guess
            gained += step.metrics["mssmae"] < guess
            if step.mode == "predicted":  # kept the guess itself
                assert (step.effect, step.knobs) == (pick, knobs)
            assert step.model_knobs == _model_knobs(all_bundle, rack, preset, chain, step.effect, history, session)
            history.append(step.features)
            applied.append(step.effect)
            chain.append((step.effect, step.knobs))
    assert gained > 0  # the search found something better at least once


@pytest.mark.parametrize("max_renders", [1, 3, 7])
def test_render_budget_is_respected(all_bundle, targets, max_renders):
    rack = CountingRack()
    preset, target = targets[0]
    session = run_session(preset, target, rack=rack, bundle=all_bundle,
                          selector=get_plugin_manager().selectors.get("rnn"), tolerance=5, budget_ms=None,
                          max_renders=max_renders, revise_renders=0)
    assert session.revision is None
    assert all(1 <= step.renders <= max_renders for step in session.steps)
    assert len(rack.calls) == sum(step.renders for step in session.steps)
    assert set(rack.calls) == {1}  # pure effects: only the new effect is rendered
    if max_renders == 1:  # one render buys only the models' guess
        assert {step.mode for step in session.steps} == {"predicted"}


def test_time_budget_bounds_the_step(all_bundle, targets):
    preset, target = targets[1]
    suggest(preset, target, bundle=all_bundle, max_renders=2, budget_ms=None)  # warm up
    session = suggest(preset, target, bundle=all_bundle, budget_ms=150, tolerance=5)
    default = suggest(preset, target, bundle=all_bundle, tolerance=5)  # 20 renders a step
    # The budget is met up to the first candidate's start (its measured knobs and one render)
    # and the kept sound's metrics (a loaded machine varies); it renders less than the default.
    assert np.median([step.seconds for step in session.steps]) < 0.4
    assert max(step.renders for step in session.steps) < max(step.renders for step in default.steps)
    zero = suggest(preset, target, bundle=all_bundle, budget_ms=0, tolerance=5)
    assert {step.renders for step in zero.steps} == {1}


def test_same_seed_same_session(all_bundle, targets):
    preset, target = targets[2]
    runs = [suggest(preset, target, bundle=all_bundle, tolerance=5, seed=3, **RENDERS) for _ in range(2)]
    assert [(s.effect, s.knobs, s.metrics, s.renders, s.mode) for s in runs[0].steps] == \
           [(s.effect, s.knobs, s.metrics, s.renders, s.mode) for s in runs[1].steps]
    rack = Rack("no-bundle", get_plugin_manager().rack("builtin").synth,
                list(get_plugin_manager().rack("builtin").effects.values()))
    alone = [suggest(preset, target, rack=rack, tolerance=5, seed=3, **RENDERS) for _ in range(2)]
    assert [(s.effect, s.knobs) for s in alone[0].steps] == [(s.effect, s.knobs) for s in alone[1].steps]


def test_no_search_is_exactly_the_plain_models_session(all_bundle, targets):
    rack = get_plugin_manager().rack("builtin")
    for preset, target in targets[:2]:
        session = suggest(preset, target, bundle=all_bundle, search=False, tolerance=5)
        assert session.search is None
        # The plain engine written out: rnn's pick, predicted knobs, whole chain re-rendered.
        history, applied, chain = [session.input_features], [], []
        reference = MetricReference(session.target_audio, session.target_features)
        for step in session.steps:
            pick, knobs, _ = _plain_guess(all_bundle, rack, preset, chain, history, applied, session)
            chain.append((pick, knobs))
            audio = rack.render(preset, chain, loudness=session.loudness)
            assert (step.effect, step.knobs, step.model_knobs, step.mode, step.renders) == (
                pick, knobs, knobs, "predicted", 1)
            np.testing.assert_array_equal(step.audio, audio)
            assert step.metrics == reference.compare(audio, step.features)
            history.append(step.features)
            applied.append(pick)


@pytest.mark.parametrize("loudness", [NONE, LUFS_14], ids=lambda c: c.name)
def test_incremental_render_equals_full_render(rack, loudness):
    rng = np.random.default_rng(4)
    chain = [(name, sample_knobs(rack.effect(name).params, rng)) for name in ("phaser", "distortion", "reverb")]
    raw = rack.level_source("saw", loudness)
    for position in range(1, len(chain) + 1):
        raw = rack.process(raw, chain[position - 1: position])
        np.testing.assert_array_equal(loudness.apply(raw, rack.sample_rate),
                                      rack.render("saw", chain[:position], loudness=loudness))
    target = rack.render("square", chain[:2])
    session = run_session("saw", target, rack=rack, bundle=DefaultKnobsBundle(rack, loudness), selector=FixedOrder(),
                          tolerance=5, budget_ms=None, max_renders=5)
    for step in session.steps:
        steps = [(s.effect, s.knobs) for s in session.steps[: step.index]]
        np.testing.assert_array_equal(step.audio, rack.render("saw", steps, loudness=loudness))


def test_impure_racks_render_the_whole_chain(targets):
    rack = CountingRack(pure_effects=False)
    preset, target = targets[0]
    session = run_session(preset, target, rack=rack, bundle=DefaultKnobsBundle(rack), selector=FixedOrder(),
                          tolerance=5, budget_ms=None, max_renders=3, revise_renders=10)
    expected = [step.index for step in session.steps for _ in range(step.renders)]
    assert rack.calls[: len(expected)] == expected  # every candidate renders the chain so far plus itself
    # The revision, too, renders every trial chain from the source (one effect fewer when it leaves one out).
    revised = rack.calls[len(expected):]
    assert len(revised) in (session.revision.renders, session.revision.renders + 1)
    assert min(revised) >= session.revision.kept - 1
    last = session.steps[-1]
    np.testing.assert_array_equal(last.audio, rack.render(preset, [(s.effect, s.knobs) for s in session.steps]))


def test_search_alone_on_a_rack_without_a_bundle(targets):
    builtin = get_plugin_manager().rack("builtin")
    rack = Rack("bundleless", builtin.synth, list(builtin.effects.values()))
    preset, target = targets[0]
    session = suggest(preset, target, rack=rack, tolerance=5, **RENDERS)
    assert any("search alone" in note for note in session.notes)
    assert session.selector == "search" and session.steps
    assert all(step.mode == "searched" and step.model_knobs is None for step in session.steps)
    assert session.closer_pct(session.best_metrics) > 0
    for step in session.steps:
        assert set(step.knobs) == {spec.name for spec in rack.effect(step.effect).sampled_params}
    data = session.to_json()
    json.dumps(data)
    assert data["search"]["use_models"] is True and data["steps"][0]["model_knobs"] is None
    with pytest.raises(BundleError, match="is for rack builtin, not bundleless"):
        suggest(preset, target, rack=rack, search=False)


def test_missing_parameter_model_falls_back_to_search(tiny_bundle, targets, tmp_path):
    broken = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, broken)
    meta = json.loads((broken / "bundle.json").read_text())
    meta["models"].pop("params-eq")
    (broken / "bundle.json").write_text(json.dumps(meta))
    preset, target = targets[0]
    session = suggest(preset, target, bundle=str(broken), tolerance=5, **RENDERS)
    assert any("no parameter model for eq" in note for note in session.notes)
    eq_steps = [step for step in session.steps if step.effect == "eq"]
    assert eq_steps and all(step.model_knobs is None and step.mode == "searched" for step in eq_steps)
    with pytest.raises(BundleError, match="no parameter model for eq"):
        suggest(preset, target, bundle=str(broken), search=False)
    target_path = write_wav(tmp_path / "target.wav", target)
    result = runner.invoke(app, ["suggest", preset, str(target_path), "--bundle", str(broken), "--no-search"])
    assert result.exit_code != 0 and "no parameter model for eq" in result.stderr


def test_top_k_one_keeps_the_selectors_pick(all_bundle, targets):
    rack = get_plugin_manager().rack("builtin")
    preset, target = targets[2]
    session = suggest(preset, target, bundle=all_bundle, top_k=1, tolerance=5, **RENDERS)
    history, applied = [session.input_features], []
    for step in session.steps:
        scores = all_bundle.selector_probabilities("rnn", history, applied, session.target_features)
        assert step.effect == next(rack.effect_names[i] for i in np.argsort(-scores, kind="stable")
                                   if rack.effect_names[i] not in applied)
        history.append(step.features)
        applied.append(step.effect)


def test_session_json_records_the_search(all_bundle, targets):
    preset, target = targets[1]
    data = suggest(preset, target, bundle=all_bundle, tolerance=5, **RENDERS).to_json()
    assert data["search"] == {"budget_ms": None, "max_renders": 6, "top_k": None, "use_models": True,
                              "refined": REFINED, "threads": THREADS, "revise_renders": DEFAULT_REVISE_RENDERS}
    revision = data["revision"]
    assert revision["kept_steps"] == data["best_step"] and revision["renders"] <= DEFAULT_REVISE_RENDERS
    assert data["best_metrics"] == revision["metrics"]
    assert [i.split(":")[0] for i in revision["instructions"]] == [
        f"Step {n}" for n in range(1, len(revision["chain"]) + 1)]
    for step in data["steps"]:
        assert {"model_knobs", "knobs", "mode", "renders", "seconds"} <= set(step)
        assert step["mode"] in ("predicted", "searched") and 1 <= step["renders"] <= 6
        assert set(step["metrics"]) == set(METRICS)
        assert step["instruction"].startswith(f"Step {step['step']}: add ")
        for name, value in step["knobs"].items():  # the instruction shows the final knobs
            assert f"{value:.2f}" in step["instruction"] or name in ("mode",)


def test_ranked_classes_extend_the_batched_prediction(all_bundle, targets, rack):
    from serumrnn.core.features import LibrosaFeatureExtractor

    extract = LibrosaFeatureExtractor().extract
    preset, target = targets[0]
    current, wanted = extract(rack.dry(preset)), extract(target)
    (knobs, ranked), = all_bundle.predict_knobs_ranked("distortion", [current], [wanted])
    assert knobs == all_bundle.predict_knobs_batch("distortion", [current], [wanted])[0]
    classes = ranked["mode"]
    assert classes[0][0] == knobs["mode"] and len(classes) == rack.effect("distortion").param("mode").n_classes
    assert [p for _, p in classes[1:]] == sorted((p for _, p in classes[1:]), reverse=True)
    assert abs(sum(p for _, p in classes) - 1) < 1e-4


def test_knobs_map_onto_their_sampled_ranges():
    spec = ParamSpec("gain", "continuous", ((0.0, 0.4), (0.6, 1.0)))
    for unit in np.linspace(0, 1, 21):
        knob = from_unit(spec, unit)
        assert 0 <= knob <= 0.4 or 0.6 <= knob <= 1.0
        assert abs(to_unit(spec, knob) - unit) < 1e-9
    # A knob between the ranges starts from the nearest one's edge.
    assert from_unit(spec, to_unit(spec, 0.45)) == pytest.approx(0.4)
    assert from_unit(spec, to_unit(spec, 0.58)) == pytest.approx(0.6)
    assert from_unit(spec, to_unit(spec, 1.5)) == pytest.approx(1.0)
    assert from_unit(spec, to_unit(spec, -1)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(budget_ms=-5), "give 0 or more milliseconds"),
    (dict(top_k=0), "give 1 or more candidate effects"),
    (dict(max_renders=0), "give 1 or more renders"),
    (dict(revise_renders=-1), "give 0 \\(no revision\\) or more renders"),
])
def test_bad_search_options(kwargs, fragment):
    with pytest.raises(ParameterError, match=fragment):
        SearchOptions(**kwargs)


def test_the_default_budget_is_a_render_count_so_sessions_repeat(all_bundle, targets):
    """Search is on by default with 20 renders per step and no time limit: the same
    input gives the same session whatever the machine's speed or load."""
    from serumrnn.core.search import DEFAULT_MAX_RENDERS, SearchOptions

    assert SearchOptions().to_json()["max_renders"] == DEFAULT_MAX_RENDERS == 20
    preset, target = targets[0]
    first, second = (suggest(preset, target, bundle=all_bundle, tolerance=5) for _ in range(2))
    assert first.to_json()["search"]["budget_ms"] is None
    assert all(step.renders <= DEFAULT_MAX_RENDERS for step in first.steps)
    assert [(s.effect, s.knobs, s.metrics) for s in first.steps] == [(s.effect, s.knobs, s.metrics) for s in second.steps]


def test_cli_search_flags(all_bundle, targets, tmp_path):
    preset, target = targets[1]
    target_path = write_wav(tmp_path / "target.wav", target)
    base = ["suggest", preset, str(target_path), "--json", "--tolerance", "5"]
    searched = json.loads(runner.invoke(app, [*base, "--max-renders", "3", "--top-k", "2"]).stdout)
    assert searched["search"]["max_renders"] == 3 and searched["search"]["budget_ms"] is None
    assert searched["search"]["top_k"] == 2 and all(step["renders"] <= 3 for step in searched["steps"])
    plain = json.loads(runner.invoke(app, [*base, "--no-search"]).stdout)
    assert plain["search"] is None and {step["mode"] for step in plain["steps"]} == {"predicted"}
    timed = json.loads(runner.invoke(app, [*base, "--search", "--budget-ms", "60"]).stdout)
    assert timed["search"]["budget_ms"] == 60
    for flags, fragment in [(["--budget-ms", "-5"], "give 0 or more milliseconds"),
                            (["--top-k", "0"], "give 1 or more candidate effects"),
                            (["--max-renders", "0"], "give 1 or more renders")]:
        result = runner.invoke(app, ["suggest", preset, str(target_path), *flags])
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.stderr


def test_threads_do_not_change_a_render_budgeted_session(all_bundle, targets):
    preset, target = targets[0]
    selector = get_plugin_manager().selectors.get("rnn")
    runs = [run_session(preset, target, rack=get_plugin_manager().rack("builtin"), bundle=all_bundle,
                        selector=selector, tolerance=5,
                        search=SearchOptions(budget_ms=None, max_renders=8, threads=threads, refined=refined))
            for threads, refined in ((1, 1), (2, 1), (1, 2), (2, 2))]
    steps = [[(s.effect, s.knobs, s.renders) for s in run.steps] for run in runs]
    assert steps[0] == steps[1] and steps[2] == steps[3]


def test_evaluation_runs_the_search_systems(tiny_dataset, tiny_bundle):
    from serumrnn.core.evaluation import SEARCH_SYSTEMS, EvaluationOptions, evaluate

    result = evaluate(tiny_bundle, tiny_dataset, EvaluationOptions(pairs=5, param_pairs=2, seed=3, split="train",
                                                                   progress=False, search=True, search_budget_ms=40))
    ours = {row["system"]: row for row in result.systems if row["source"] == "ours" and row.get("kept", "best") == "best"}
    assert set(SEARCH_SYSTEMS) <= set(ours)
    assert ours["rnn"]["renders_per_step"] == 1 and ours["rnn+search"]["renders_per_step"] >= 1
    assert all(ours[system]["ms_per_step"] > 0 for system in SEARCH_SYSTEMS)
    assert "depend on the machine's speed" in result.to_markdown()
    # The search systems revise their kept steps afterwards, for the table's tolerance only.
    assert all(0 < ours[system]["revise_renders"] <= DEFAULT_REVISE_RENDERS for system in SEARCH_SYSTEMS)
    assert ours["rnn"]["revise_renders"] is None
    assert not {row["system"] for row in result.tolerance_curve} & set(SEARCH_SYSTEMS)
    assert "Figure 4 leaves them out" in result.to_markdown()


def test_an_evaluation_runs_only_the_systems_asked_for(tiny_dataset, tiny_bundle, tmp_path):
    """``--systems`` with ``--data`` limits Tables 4-6 to the systems named (an in-domain
    run of the default system alone, say); Tables 2 and 3 are made as always."""
    from serumrnn.core.evaluation import EvaluationOptions, evaluate

    options = EvaluationOptions(pairs=5, param_pairs=2, seed=3, split="train", progress=False, systems=("random",))
    result = evaluate(tiny_bundle, tiny_dataset, options)
    assert result.meta["systems"] == ["random"]
    assert {row["system"] for row in result.systems if row["source"] == "ours"} == {"random"}
    assert set(result.progress) == {"random"}  # Table 6; no Table 5 without rnn
    assert result.parameter_models and result.selection
    result.write(tmp_path / "eval")
    assert (tmp_path / "eval" / "figure4_tolerance.png").stat().st_size > 0

    for asked, fragment in [(("rnn+search",), "add --search"), (("nope",), "Unknown system 'nope'")]:
        with pytest.raises(ParameterError, match=fragment):
            EvaluationOptions(pairs=5, systems=asked).check()
    outcome = runner.invoke(app, ["evaluate", "--bundle", str(tiny_bundle), "--data", str(tiny_dataset),
                                  "--systems", "rnn,bogus", "--out", str(tmp_path / "bad")])
    assert outcome.exit_code != 0 and "Unknown system 'bogus'" in outcome.output
    assert not (tmp_path / "bad").exists()


# -- the revision of the kept steps ---------------------------------------------------------------
@pytest.mark.parametrize("revise_renders", [0, 5, 40])
def test_the_revision_keeps_its_budget_and_is_never_farther(all_bundle, targets, revise_renders):
    preset, target = targets[0]
    plain = suggest(preset, target, bundle=all_bundle, revise_renders=0, **RENDERS)
    session = suggest(preset, target, bundle=all_bundle, revise_renders=revise_renders, **RENDERS)
    # The revision comes after the steps: the steps themselves do not change.
    assert [(s.effect, s.knobs, s.metrics) for s in session.steps] == [(s.effect, s.knobs, s.metrics) for s in plain.steps]
    kept = session.steps[session.best_index - 1].metrics["mssmae"]
    if revise_renders == 0:
        assert session.revision is None and session.best_metrics["mssmae"] == kept
        return
    revision = session.revision
    assert revision.kept == session.best_index and 1 <= revision.renders <= revise_renders
    assert revision.metrics["mssmae"] <= kept
    assert session.best_metrics == revision.metrics and session.best_audio is revision.audio
    # The revision's sound is its chain rendered from the input, measured like any step.
    rack = get_plugin_manager().rack("builtin")
    audio = rack.render(preset, revision.chain, loudness=session.loudness)
    np.testing.assert_allclose(revision.audio, audio, atol=1e-6)
    reference = MetricReference(session.target_audio, session.target_features)
    assert revision.metrics["mssmae"] == pytest.approx(reference.score("mssmae", audio), rel=1e-5)
    assert [i.effect for i in revision.instructions] == [name for name, _ in revision.chain]


def test_the_revision_repeats_for_the_same_seed(all_bundle, targets):
    preset, target = targets[2]
    runs = [suggest(preset, target, bundle=all_bundle, seed=4, revise_renders=30, **RENDERS) for _ in range(2)]
    assert runs[0].revision.chain == runs[1].revision.chain
    assert runs[0].revision.metrics == runs[1].revision.metrics


def test_the_reviser_leaves_out_reorders_and_retunes(rack):
    """A target made by reverb then distortion, offered as distortion (wrong knobs), an
    extra EQ, then reverb: the revision drops the EQ, restores the order and lands closer."""
    source = rack.level_source("saw", LUFS_14)
    true_chain = [("reverb", {"mix": 0.5, "low_cut": 0.3, "high_cut": 0.7}),
                  ("distortion", {"mode": 0.3, "drive": 0.7})]
    target = LUFS_14.apply(rack.process(source, true_chain), rack.sample_rate)
    from serumrnn.core.features import LibrosaFeatureExtractor

    reference = MetricReference(target, LibrosaFeatureExtractor().extract(target, rack.sample_rate))
    offered = [("distortion", {"mode": 0.3, "drive": 0.5}), ("eq", {"frequency": 0.5, "resonance": 0.5, "gain": 0.9}),
               ("reverb", {"mix": 0.4, "low_cut": 0.3, "high_cut": 0.7})]
    start = reference.score("mssmae", LUFS_14.apply(rack.process(source, offered), rack.sample_rate))
    revised = ChainReviser(rack=rack, entry=source, loudness=LUFS_14, reference=reference, metric="mssmae",
                           renders=120).revise(offered, start)
    assert [name for name, _ in revised.chain] == ["reverb", "distortion"]
    assert ("dropped", "eq") in revised.moves and revised.renders <= 120
    assert revised.score < 0.2 * start


def test_cli_prints_the_revised_chain(all_bundle, targets, tmp_path):
    preset, target = targets[0]
    write_wav(tmp_path / "target.wav", target, 44100)
    done = runner.invoke(app, ["suggest", preset, str(tmp_path / "target.wav"), "--max-renders", "4",
                               "--revise-renders", "30", "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["search"]["revise_renders"] == 30 and data["revision"]["renders"] <= 30
    bad = runner.invoke(app, ["suggest", preset, str(tmp_path / "target.wav"), "--revise-renders", "-3"])
    assert bad.exit_code != 0 and "give 0 (no revision) or more renders" in bad.output


class _OneKnobRack:
    """A rack with one effect that scales the sound by ``level(x)``: closest to the target
    (scale 1) at x = 0.8, a local optimum at x = 0.2 (scale 1.1) behind a ridge (scale 1.5)."""

    pure_effects, sample_rate = True, 44100

    class effect_type:
        sampled_params = [ParamSpec("x", "continuous", ((0.0, 1.0),))]

    def effect(self, name):
        return self.effect_type

    @staticmethod
    def level(x: float) -> float:
        return 1 + (0.1 + abs(x - 0.2) if x < 0.5 else min(4 * abs(x - 0.8), 0.5))

    def process(self, audio, chain):
        for _, knobs in chain:
            audio = audio * self.level(knobs["x"])
        return audio


def _revise_one_knob(rack, renders: int):
    """Revise a one-effect chain of ``rack`` offered at x = 0.2 against a plain sine (the
    rack scales it: scale 1 matches); the revision and the starting score."""
    source = np.sin(np.linspace(0, 440 * 2 * np.pi, 44100)).astype(np.float32) * 0.3
    reference = MetricReference(source, None)
    offered = [("knob", {"x": 0.2})]
    start = reference.score("mssmae", rack.process(source, offered))
    revised = ChainReviser(rack=rack, entry=source, loudness=NONE, reference=reference, metric="mssmae",
                           renders=renders).revise(offered, start)
    return revised, start


@pytest.mark.parametrize("scan_points", [search.REVISE_SCAN_POINTS, 0])
def test_the_wide_round_scans_past_a_local_optimum(monkeypatch, scan_points):
    """Nelder-Mead from x = 0.2 stays in its local optimum, from the short or the wide
    simplex; the wide round's scan of the knob's range finds the better basin at 0.8."""
    monkeypatch.setattr(search, "REVISE_SCAN_POINTS", scan_points)
    rack = _OneKnobRack()
    revised, start = _revise_one_knob(rack, renders=80)
    assert revised.renders < 80  # it stopped after a wide round that changed nothing
    if scan_points:
        assert abs(revised.chain[0][1]["x"] - 0.8) < 0.01 and revised.score < 0.05 * start
    else:  # without the scan the short and wide simplex both stay near 0.2
        assert abs(revised.chain[0][1]["x"] - 0.2) < 0.1


class _SteepRack:
    """A rack with one three-knob effect that scales the sound by 1 + 4 * (the knobs'
    summed distance from ``TRUTH``): closest at ``TRUTH``, a steep V around it."""

    pure_effects, sample_rate = True, 44100
    TRUTH = {"a": 0.537, "b": 0.212, "c": 0.874}

    class effect_type:
        sampled_params = [ParamSpec(name, "continuous") for name in ("a", "b", "c")]

    def effect(self, name):
        return self.effect_type

    def process(self, audio, chain):
        for _, knobs in chain:
            audio = audio * (1 + 4 * sum(abs(knobs[name] - value) for name, value in self.TRUTH.items()))
        return audio


def test_renders_left_polish_the_knobs_near_a_steep_optimum():
    """The rounds stop near a steep optimum with renders left (their short Nelder-Mead
    ends a few hundredths off); the polish spends those renders and lands on it."""
    rack = _SteepRack()
    source = np.sin(np.linspace(0, 440 * 2 * np.pi, 44100)).astype(np.float32) * 0.3
    reference = MetricReference(source, None)
    offered = [("scale", {"a": 0.58, "b": 0.18, "c": 0.82})]
    start = reference.score("mssmae", rack.process(source, offered))
    revised = ChainReviser(rack=rack, entry=source, loudness=NONE, reference=reference, metric="mssmae",
                           renders=300).revise(offered, start)
    assert max(abs(revised.chain[0][1][name] - value) for name, value in rack.TRUTH.items()) < 0.002
    assert revised.score < 0.1 * start and revised.renders <= 300


class _NeedleRack:
    """A rack with one effect whose knob x matches the target only in a narrow basin at
    ``NEEDLE`` (scale 1 there, 1.3 or more elsewhere, a shallow local optimum at 0.2), as a
    phaser's rate does: ``scan_points`` and ``hints`` as its knob and effect declare them."""

    pure_effects, sample_rate = True, 44100
    NEEDLE = 0.613

    def __init__(self, scan_points: int, hints: list[float]):
        spec = ParamSpec("x", "continuous", scan_points=scan_points)
        self.effect_type = type("Effect", (), {"sampled_params": [spec],
                                               "knob_hints": lambda self, before, after, rate: {"x": hints}})()

    def effect(self, name):
        return self.effect_type

    def process(self, audio, chain):
        for _, knobs in chain:
            audio = audio * (1 + min(0.3 + 0.3 * abs(knobs["x"] - 0.2), 25 * abs(knobs["x"] - self.NEEDLE)))
        return audio


@pytest.mark.parametrize("scan_points, hints, found", [(41, [], True), (0, [0.6131], True), (0, [], False)])
def test_a_stuck_revision_scans_a_narrow_basin_finely(scan_points, hints, found):
    """Neither the wide round's seven-point scan nor Nelder-Mead reaches a basin 0.03 wide;
    once the rounds are stuck, the knob's fine scan (41 points) or its effect's hint does."""
    rack = _NeedleRack(scan_points, hints)
    revised, start = _revise_one_knob(rack, renders=150)
    if found:
        assert abs(revised.chain[0][1]["x"] - rack.NEEDLE) < 0.005 and revised.score < 0.2 * start
    else:
        assert abs(revised.chain[0][1]["x"] - 0.2) < 0.1 and revised.renders < 150


class _RecordingRack:
    """Two effects that render every trial from the source (not pure), recording each
    chain rendered: "gain" scales by its knob, "shape" bends the wave by a mode (three
    classes) and an amount."""

    pure_effects, sample_rate = False, 44100
    specs = {"gain": [ParamSpec("x", "continuous")],
             "shape": [ParamSpec("mode", "categorical", classes=("a", "b", "c")), ParamSpec("amount", "continuous")]}

    def __init__(self):
        self.rendered = []

    def effect(self, name):
        return type("Effect", (), {"sampled_params": self.specs[name]})

    def process(self, audio, chain):
        self.rendered.append(tuple((name, tuple(sorted(knobs.items()))) for name, knobs in chain))
        for name, knobs in chain:
            if name == "gain":
                audio = audio * (0.5 + knobs["x"])
            else:
                power = 1 + int(knobs["mode"] * 3) + knobs["amount"]
                audio = np.sign(audio) * np.abs(audio) ** power
        return audio


def test_the_revision_never_renders_a_chain_twice():
    """Rounds repeat moves (a wide round retries the leave-outs, swaps and classes of the
    round before it on the same chain, and Nelder-Mead revisits points): a chain scored
    once is not rendered again, and every render counted is a new chain."""
    rack = _RecordingRack()
    source = np.sin(np.linspace(0, 440 * 2 * np.pi, 44100)).astype(np.float32) * 0.6
    reference = MetricReference(rack.process(source, [("shape", {"mode": 0.5, "amount": 0.4}),
                                                      ("gain", {"x": 0.7})]), None)
    offered = [("gain", {"x": 0.3}), ("shape", {"mode": 0.2, "amount": 0.8})]
    start = reference.score("mssmae", rack.process(source, offered))
    rack.rendered.clear()
    revised = ChainReviser(rack=rack, entry=source, loudness=NONE, reference=reference, metric="mssmae",
                           renders=400).revise(offered, start)
    assert revised.score < 0.6 * start and revised.renders < 400  # it got closer, then stopped by itself
    assert len(rack.rendered) == revised.renders == len(set(rack.rendered))
    assert ("shape", "gain") == tuple(name for name, _ in revised.chain)


@pytest.mark.parametrize("may_add", [True, False])
def test_the_revision_adds_an_effect_the_steps_stopped_before(may_add):
    """The steps stopped before the target's last effect (no single effect got closer at
    its default knobs): with additions offered, the revision adds it at the end and tunes
    its knobs; without, the chain keeps its one effect."""
    rack = _RecordingRack()
    source = np.sin(np.linspace(0, 440 * 2 * np.pi, 44100)).astype(np.float32) * 0.6
    shape = ("shape", {"mode": 0.5, "amount": 0.4})
    reference = MetricReference(rack.process(source, [shape, ("gain", {"x": 0.85})]), None)
    start = reference.score("mssmae", rack.process(source, [shape]))
    additions = [("gain", {"x": 0.5})] if may_add else []  # x = 0.5 leaves the sound as it is
    revised = ChainReviser(rack=rack, entry=source, loudness=NONE, reference=reference, metric="mssmae",
                           renders=200).revise([shape], start, additions=additions)
    if may_add:
        assert [name for name, _ in revised.chain] == ["shape", "gain"]
        assert abs(revised.chain[1][1]["x"] - 0.85) < 0.03 and revised.score < 0.1 * start
    else:
        assert [name for name, _ in revised.chain] == ["shape"] and revised.score > 0.5 * start


def test_additions_leave_half_the_renders_to_the_chain(monkeypatch):
    """Additions that never help (the chain already matches its target) spend at most half
    the renders left when they are tried; the rest stays for the chain as it is."""
    rack = _RecordingRack()
    source = np.sin(np.linspace(0, 440 * 2 * np.pi, 44100)).astype(np.float32) * 0.6
    shape = ("shape", {"mode": 0.5, "amount": 0.4})
    reference = MetricReference(rack.process(source, [shape]), None)
    offered = [("shape", {"mode": 0.5, "amount": 0.45})]
    start = reference.score("mssmae", rack.process(source, offered))
    spent = []
    add_first_closer = ChainReviser._add_first_closer

    def counted(self, additions):
        left = self.left
        added = add_first_closer(self, additions)
        spent.append((left, left - self.left))
        return added

    monkeypatch.setattr(ChainReviser, "_add_first_closer", counted)
    revised = ChainReviser(rack=rack, entry=source, loudness=NONE, reference=reference, metric="mssmae",
                           renders=30).revise(offered, start, additions=[("gain", {"x": 0.5})])
    assert [name for name, _ in revised.chain] == ["shape"] and spent
    assert all(0 < used <= left - left // 2 for left, used in spent)


def _step(rack, index, name, knobs, audio=np.zeros(1, np.float32), metrics=None):
    from serumrnn.core.session import Instruction, Step

    return Step(index=index, effect=name, knobs=knobs, instruction=Instruction.of(index, rack.effect(name), knobs),
                probability=1.0, audio=audio, features=None, metrics=metrics or {}, better=False, seconds=0.0)


def test_a_session_whose_every_step_moved_away_revises_its_first_step(all_bundle, rack):
    """No step got closer (none kept): the revision retunes the first step and keeps it
    only when it then beats the input."""
    from serumrnn.core.session import revise_session

    source = rack.level_source("saw", LUFS_14)
    subtle = [("eq", {"frequency": 0.8, "resonance": 0.5, "gain": 0.4})]  # a small cut, high up
    for target, beatable in ((LUFS_14.apply(rack.process(source, subtle), rack.sample_rate), True), (source, False)):
        session = suggest("saw", target, bundle=all_bundle, search=False, revise_renders=0)
        reference = MetricReference(session.target_audio, session.target_features)
        wrong = {"frequency": 0.6, "resonance": 0.5, "gain": 0.45}  # a small cut, in the wrong place
        audio = LUFS_14.apply(rack.process(session.entry, [("eq", wrong)]), rack.sample_rate)
        session.steps = [_step(rack, 1, "eq", wrong, audio, {"mssmae": reference.score("mssmae", audio)})]
        assert session.best_index == 0
        revision = revise_session(session, 0, rack=rack, renders=60)
        if not beatable:  # nothing is closer to a target that is the input itself
            assert revision is None
            continue
        assert revision.kept == 1 and [name for name, _ in revision.chain] == ["eq"] and revision.renders <= 60
        assert revision.metrics["mssmae"] < session.initial_metrics["mssmae"]


def test_revision_changes_say_what_moved(rack):
    """The changes a person reads: effects left out, a new order, knobs whose shown value moved."""
    from serumrnn.core.session import Instruction, revision_changes

    def step(index, name, knobs):
        return _step(rack, index, name, knobs)

    steps = [step(1, "compressor", {"low": 0.2, "mid": 0.4, "high": 0.1}),
             step(2, "distortion", {"mode": 0.3, "drive": 0.5}),
             step(3, "reverb", {"mix": 0.4, "low_cut": 0.3, "high_cut": 0.7})]
    revised = [Instruction.of(1, rack.effect("reverb"), {"mix": 0.4, "low_cut": 0.3, "high_cut": 0.7}),
               Instruction.of(2, rack.effect("distortion"), {"mode": 0.3, "drive": 0.8})]
    changes = revision_changes(steps, revised)
    assert changes[0] == "Leave out Multiband Compressor (step 1)."
    assert changes[1] == "New order: Hall Reverb -> Distortion."
    assert changes[2] == "Distortion, Drive: 0.50 -> 0.80."
    assert len(changes) == 3  # the reverb's knobs did not move
    # an effect added at the end is no new order of the steps' effects
    added = revised + [Instruction.of(3, rack.effect("phaser"), {"depth": 0.5, "rate": 0.5, "feedback": 0.5})]
    assert revision_changes(steps[1:], added[1:]) == [  # reverb out, phaser in: still no new order
        "Leave out Hall Reverb (step 3).",
        "Add Phaser (step 3). LFO depth: 0.50. LFO rate: 0.50 (2.24 Hz). Feedback: 0.50 (45%).",
        "Distortion, Drive: 0.50 -> 0.80."]


@pytest.mark.parametrize("hinted_starts", [search.HINTED_STARTS, 0])
def test_a_searched_step_starts_from_the_rate_the_phaser_reads(monkeypatch, hinted_starts):
    """Without a model, a phaser's rate starts at its default and Nelder-Mead does not
    leave that basin for the target's (0.02-0.05 of the knob wide); the rate read from the
    sounds (``Effect.knob_hints``) starts the step in it."""
    monkeypatch.setattr(search, "HINTED_STARTS", hinted_starts)
    builtin = get_plugin_manager().rack("builtin")
    rack = Rack("bundleless", builtin.synth, list(builtin.effects.values()))
    truth = {"depth": 0.7, "rate": 0.62, "feedback": 0.4}
    target = rack.render("saw", [("phaser", truth)])
    session = suggest("saw", target, rack=rack, tolerance=1, budget_ms=None, max_renders=20, revise_renders=0)
    step = session.steps[0]
    found = step.effect == "phaser" and abs(step.knobs["rate"] - truth["rate"]) < 0.01
    assert found == bool(hinted_starts)
    if hinted_starts:
        assert session.closer_pct(step.metrics) > 50


@pytest.mark.parametrize("steps_read", [True, False])
def test_the_revision_tries_every_hold_of_a_downsampler(monkeypatch, steps_read):
    """In downsample mode the distortion's drive sets a whole number of held samples: the
    sound is the same along each step and jumps between them, so Nelder-Mead stalls and an
    evenly spaced scan can miss the target's hold (13 samples: drive 0.729-0.751). Reading
    the steps (``Effect.knob_steps``), the revision tries every hold, also on the way to
    the class, and lands on the target exactly."""
    rack = get_plugin_manager().rack("builtin")
    if not steps_read:
        monkeypatch.setattr(ChainReviser, "_steps", lambda self, effect: {})
    distortion = rack.effect("distortion")
    downsample = distortion.param("mode").class_knob(distortion.param("mode").classes.index("downsample"))
    entry = rack.level_source("saw", LUFS_14)
    target = LUFS_14.apply(rack.process(entry, [("distortion", {"mode": downsample, "drive": 0.746})]),
                           rack.sample_rate)
    reference = MetricReference(target, None)
    offered = [("distortion", {"mode": distortion.param("mode").class_knob(11), "drive": 0.818})]  # x-shaper
    start = reference.score("mssmae", LUFS_14.apply(rack.process(entry, offered), rack.sample_rate))
    revised = ChainReviser(rack=rack, entry=entry, loudness=LUFS_14, reference=reference, metric="mssmae",
                           renders=200).revise(offered, start)
    knobs = revised.chain[0][1]
    on_target = (distortion.param("mode").class_index(knobs["mode"]) == distortion.param("mode").class_index(downsample)
                 and round(2 ** (5 * knobs["drive"])) == 13)
    assert on_target == steps_read
    assert (revised.score < 1e-6) == steps_read
    assert revised.renders <= 200


def test_only_a_downsampler_reads_its_drive_in_steps():
    """The distortion's drive steps in downsample mode only: one value per hold length of
    the drive's sampled range (3 to 32 samples), each giving its own hold."""
    distortion = get_plugin_manager().rack("builtin").effect("distortion")
    mode = distortion.param("mode")
    for index, name in enumerate(mode.classes):
        steps = distortion.knob_steps({"mode": mode.class_knob(index), "drive": 0.5})
        if name != "downsample":
            assert steps == {}
            continue
        holds = [round(2 ** (5 * drive)) for drive in steps["drive"]]
        assert holds == list(range(3, 33))
        low, high = distortion.param("drive").sample_ranges[0]
        assert all(low <= drive <= high for drive in steps["drive"])

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from serumrnn.cli.app import app
from serumrnn.core import hookimpl
from serumrnn.core import session as session_module
from serumrnn.core.audio import write_wav
from serumrnn.core.errors import BundleError, OutputError, ParameterError, SerumRNNError
from serumrnn.core.params import default_knobs
from serumrnn.core.registry import PluginManager
from serumrnn.core.selectors import BUILTIN_SELECTORS, OracleSelector, RandomSelector
from serumrnn.core.session import Instruction, run_session, suggest, write_session

EFFECTS = ("compressor", "distortion", "eq", "phaser", "reverb")


class DefaultKnobsBundle:
    """Predicts every effect's default knobs: isolates the engine from the models."""

    def __init__(self, rack):
        self.rack = rack

    def predict_knobs(self, effect, current, target):
        return default_knobs(self.rack.effect(effect).sampled_params)


class FixedOrderSelector:
    """Always ranks the effects in one fixed order (used effects included)."""

    name = "fixed"
    description = "test"
    model_kind = None
    one_shot = False
    needs_true_chain = False

    def __init__(self, order):
        self.order = order

    def probabilities(self, state):
        return np.array([len(self.order) - self.order.index(name) for name in state.effect_names], float)


def scripted_metric(monkeypatch, values):
    """Make MetricReference.compare return MSSMAE values from ``values`` in turn
    (the first is the input's distance)."""
    sequence = iter(values)

    class Scripted:
        def __init__(self, audio, features):
            pass

        def compare(self, audio, features):
            value = next(sequence)
            return {"mse": value, "mae": value, "lsd": value, "mfccd": value, "pcc": -value, "mssmae": value}

    monkeypatch.setattr(session_module, "MetricReference", Scripted)


@pytest.fixture
def target(rack):
    return rack.render("saw", [("distortion", {"drive": 0.9}), ("reverb", {"mix": 0.6})])


@pytest.mark.parametrize(
    "distances, tolerance, expected_steps, best",
    [
        ([1.0, 0.8, 0.9, 0.7, 0.6, 0.5], 0, 2, 1),   # first bad step stops at once
        ([1.0, 0.8, 0.9, 0.7, 0.6, 0.5], 1, 5, 5),   # one bad step tolerated
        ([1.0, 0.8, 0.9, 0.95, 0.6, 0.5], 1, 3, 1),  # second bad step stops
        ([1.0, 0.8, 0.9, 0.95, 0.6, 0.5], 2, 5, 5),
        ([1.0, 1.1, 1.2, 1.3, 0.5, 0.4], 2, 3, 0),   # nothing better: best is the input
        ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 0, 5, 5),   # all good: every effect used once
    ],
)
def test_stopping_rule_on_constructed_distances(monkeypatch, rack, target, distances, tolerance, expected_steps, best):
    scripted_metric(monkeypatch, distances)
    session = run_session("saw", target, rack=rack, bundle=DefaultKnobsBundle(rack),
                          selector=FixedOrderSelector(list(EFFECTS)), tolerance=tolerance, search=False)
    assert len(session.steps) == expected_steps
    assert session.best_index == best
    assert [s.better for s in session.steps] == [b < a for a, b in zip(distances, distances[1:])][:expected_steps]
    if expected_steps == 5:
        assert session.stop_reason == "every effect has been used"
    else:
        assert "tolerance" in session.stop_reason


def test_pcc_stopping_rule_counts_higher_as_better(monkeypatch, rack, target):
    scripted_metric(monkeypatch, [1.0, 0.5, 0.7, 0.8])  # pcc = -value: -1, -0.5 (up), -0.7 (down)
    session = run_session("saw", target, rack=rack, bundle=DefaultKnobsBundle(rack),
                          selector=FixedOrderSelector(list(EFFECTS)), tolerance=0, metric="pcc", search=False)
    assert [s.better for s in session.steps] == [True, False]


def test_never_repeats_an_effect(rack, target):
    session = run_session("saw", target, rack=rack, bundle=DefaultKnobsBundle(rack),
                          selector=FixedOrderSelector(["reverb", "eq", "phaser", "distortion", "compressor"]),
                          tolerance=5, search=False)
    assert [s.effect for s in session.steps] == ["reverb", "eq", "phaser", "distortion", "compressor"]


def test_rendering_restarts_from_the_source_each_step(rack, target):
    bundle = DefaultKnobsBundle(rack)
    session = run_session("saw", target, rack=rack, bundle=bundle, selector=FixedOrderSelector(list(EFFECTS)),
                          tolerance=5)
    chain = [(s.effect, s.knobs) for s in session.steps]
    np.testing.assert_array_equal(session.steps[-1].audio, rack.render("saw", chain))


def test_oracle_follows_the_true_chain_and_stops_at_its_end(rack, target):
    session = run_session("saw", target, rack=rack, bundle=DefaultKnobsBundle(rack), selector=OracleSelector(),
                          tolerance=5, true_chain=["distortion", "reverb"], search=False)
    assert [s.effect for s in session.steps] == ["distortion", "reverb"]
    assert session.stop_reason == "the true chain is complete"


@pytest.mark.parametrize("one_shot", [False, True])
def test_a_predicted_phaser_rate_is_measured_before_the_step_renders(rack, one_shot):
    """The knobs a step renders are the model's with what the effect measures from the
    sounds (``Effect.measured_knobs``): the bundle predicts the defaults (rate, depth and
    feedback 0.5), the target's phaser runs at rate 0.62, depth 0.8, feedback 0.3; plain
    and one-shot steps render the measured rate, a depth near the true one (the prior may
    hold it a grid step short) and the feedback, measured last, within one of its steps."""
    true = {"depth": 0.8, "rate": 0.62, "feedback": 0.3}
    phased = rack.render("saw", [("phaser", true)])
    selector = FixedOrderSelector(["phaser", *[name for name in EFFECTS if name != "phaser"]])
    if one_shot:
        selector.one_shot = True
    session = run_session("saw", phased, rack=rack, bundle=DefaultKnobsBundle(rack), selector=selector,
                          tolerance=0, search=False)
    first = session.steps[0]
    assert first.effect == "phaser"
    assert abs(first.knobs["rate"] - true["rate"]) < 0.005
    assert abs(first.knobs["depth"] - true["depth"]) <= 0.05 + 1e-9
    assert abs(first.knobs["feedback"] - true["feedback"]) <= 0.1 + 1e-9  # predicted 0.5


def test_random_selector_is_seeded(rack, target):
    runs = [run_session("saw", target, rack=rack, bundle=DefaultKnobsBundle(rack), selector=RandomSelector(),
                        tolerance=5, seed=seed, search=False) for seed in (1, 1, 2)]
    orders = [[s.effect for s in run.steps] for run in runs]
    assert orders[0] == orders[1] and sorted(orders[0]) == sorted(EFFECTS)


def test_identical_input_and_target_needs_no_steps(rack):
    session = run_session("saw", rack.dry("saw"), rack=rack, bundle=DefaultKnobsBundle(rack),
                          selector=FixedOrderSelector(list(EFFECTS)))
    assert session.steps == [] and "nothing to do" in session.stop_reason


@pytest.mark.parametrize("effect", EFFECTS)
def test_instruction_text_for_every_effect(rack, effect):
    fx = rack.effect(effect)
    knobs = default_knobs(fx.sampled_params)
    instruction = Instruction.of(2, fx, knobs)
    text = instruction.text
    assert text.startswith(f"Step 2: add {fx.label}. ") and text == f"Step 2: {instruction.action}"
    for spec in fx.sampled_params:
        assert (spec.label or spec.name.capitalize()) in text
        if spec.kind == "categorical":
            assert spec.describe(knobs[spec.name]) in text
        else:
            assert f"{knobs[spec.name]:.2f}" in text
    # the structured fields the text is made from
    assert [knob.name for knob in instruction.knobs] == [spec.name for spec in fx.sampled_params]
    assert instruction.physical == {spec.name: spec.describe(knobs[spec.name]) for spec in fx.sampled_params}


def test_distortion_instruction_reads_like_a_person_wrote_it(rack):
    fx = rack.effect("distortion")
    instruction = Instruction.of(2, fx, {"mode": fx.param("mode").parse("tube"), "drive": 0.71})
    assert instruction.text.startswith("Step 2: add Distortion. Mode: tube. Drive: 0.71 (+")
    mode, drive = instruction.knobs
    assert (mode.categorical, mode.shown, drive.unit, drive.value) == (True, "tube", "dB", 0.71)
    assert instruction.action == instruction.text.removeprefix("Step 2: ")


def test_a_step_carries_its_structured_instruction(rack, target):
    session = run_session("saw", target, rack=rack, bundle=DefaultKnobsBundle(rack),
                          selector=FixedOrderSelector(list(EFFECTS)), tolerance=5, search=False)
    for step, data in zip(session.steps, session.to_json()["steps"]):
        assert isinstance(step.instruction, Instruction)
        assert (step.instruction.step, step.instruction.effect) == (step.index, step.effect)
        assert data["instruction"] == step.instruction.text and data["label"] == step.instruction.label
        assert data["knobs_physical"] == step.instruction.physical


@pytest.mark.parametrize("selector", [s.name for s in BUILTIN_SELECTORS])
def test_every_selector_with_a_trained_bundle(tiny_bundle, rack, target, selector):
    kwargs = {"true_chain": ["distortion", "reverb"]} if selector == "oracle" else {}
    session = suggest("saw", target, bundle=tiny_bundle, selector=selector, **kwargs)
    assert 1 <= len(session.steps) <= 5
    assert len({s.effect for s in session.steps}) == len(session.steps)
    for step in session.steps:
        assert set(step.knobs) == {spec.name for spec in rack.effect(step.effect).sampled_params}
        assert all(0.0 <= v <= 1.0 for v in step.knobs.values())


def test_third_party_selector_plugin(tiny_bundle, rack, target, monkeypatch):
    class AlwaysEqFirst:
        @hookimpl
        def serumrnn_register_selectors(self, register):
            register(FixedOrderSelector(["eq", "phaser", "reverb", "distortion", "compressor"]))

    manager = PluginManager(load_entrypoints=False, extra_plugins=(AlwaysEqFirst(),))
    monkeypatch.setattr("serumrnn.core.registry._default_manager", manager)
    session = suggest("saw", target, bundle=tiny_bundle, selector="fixed", tolerance=5, search=False)
    assert session.steps[0].effect == "eq" and session.selector == "fixed"


def test_session_json_schema(tiny_bundle, target):
    data = suggest("saw", target, bundle=tiny_bundle).to_json()
    json.dumps(data)
    assert set(data) >= {"rack", "selector", "metric", "tolerance", "initial_metrics", "steps", "best_step",
                         "best_metrics", "best_closer_pct", "stop_reason"}
    for step in data["steps"]:
        assert set(step) >= {"step", "effect", "instruction", "knobs", "knobs_physical", "metrics", "better",
                             "closer_pct"}
        assert set(step["metrics"]) == {"mse", "mae", "lsd", "mfccd", "pcc", "mssmae"}
        assert set(step["knobs_physical"]) == set(step["knobs"])


def test_array_and_file_inputs(tiny_bundle, rack, target, tmp_path):
    dry = rack.dry("saw")
    from_arrays = suggest(np.stack([dry, dry]), target, bundle=tiny_bundle, selector="oracle",
                          true_chain=["distortion"])
    assert from_arrays.source == "audio" and len(from_arrays.steps) == 1
    path = write_wav(tmp_path / "in.wav", 0.5 * dry)
    from_file = suggest(path, write_wav(tmp_path / "t.wav", target), bundle=tiny_bundle)
    assert from_file.steps


def test_to_c4_detects_and_shifts(tiny_bundle, rack, target):
    g4 = rack.synth.render("sine", note=67)
    session = suggest(g4, target, bundle=tiny_bundle, to_c4=True)
    assert any("G4" in note and "shifted to C4" in note for note in session.notes)
    note = session_module.detect_note(session.input_audio)
    assert abs(note - 60) < 0.5


def test_write_session_outputs(tiny_bundle, target, tmp_path):
    session = suggest("saw", target, bundle=tiny_bundle)
    out = write_session(session, tmp_path / "run")
    names = sorted(p.name for p in out.iterdir())
    assert {"00-input.wav", "99-target.wav", "session.json", "progression.png", "index.html"} <= set(names)
    # input, target, every step and the revised chain (search is on by default)
    assert session.revision is not None and "98-revised.wav" in names
    assert len([n for n in names if n.endswith(".wav")]) == len(session.steps) + 3
    with pytest.raises(OutputError, match="not empty"):
        write_session(session, out)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging folder left


def test_errors(tiny_bundle, target, rack):
    with pytest.raises(ParameterError, match="true effect chain"):
        suggest("saw", target, bundle=tiny_bundle, selector="oracle")
    with pytest.raises(Exception, match="Unknown selector 'genius'"):
        suggest("saw", target, bundle=tiny_bundle, selector="genius")
    with pytest.raises(ParameterError, match="Unknown metric"):
        suggest("saw", target, bundle=tiny_bundle, metric="loudness")
    with pytest.raises(BundleError, match="No model bundle 'nope'"):
        suggest("saw", target, bundle="nope")
    from serumrnn.core.errors import AudioError

    with pytest.raises(AudioError, match="silent"):
        suggest("saw", np.zeros(44100, np.float32), bundle=tiny_bundle)



@pytest.mark.parametrize("options, fragment", [
    (dict(metric="loudness"), "Unknown metric"),
    (dict(tolerance=-1), "Tolerance is -1"),
    (dict(selector="oracle"), "true effect chain"),
    (dict(selector="oracle", true_chain=["fuzz"]), "does not have"),
    (dict(selector="genius"), "Unknown selector 'genius'"),
    (dict(rack="moog"), "Unknown rack"),
    (dict(top_k=0), "give 1 or more candidate effects"),
    (dict(search=False, max_renders=0), "give 1 or more renders"),
    (dict(budget_ms=-5), "give 0 or more milliseconds"),
    (dict(bundle="nope"), "No model bundle 'nope'"),
    (dict(preset="kazoo"), "kazoo"),
])
def test_every_option_is_checked_before_any_sound_is_read(monkeypatch, tmp_path, options, fragment):
    def no_io(*args, **kwargs):
        raise AssertionError("read a sound or loaded a model before checking the options")

    monkeypatch.setattr(session_module, "prepare_audio", no_io)
    monkeypatch.setattr(session_module, "resolve_bundle", no_io)
    with pytest.raises(SerumRNNError, match=fragment):
        suggest(str(tmp_path / "missing-input.wav"), str(tmp_path / "missing-target.wav"), **options)


def test_a_session_builds_only_the_models_its_system_uses(tiny_bundle, target, monkeypatch):
    from serumrnn.core.bundle import ModelBundle

    built = []
    build = ModelBundle.runner  # the ONNX session or torch module of a model, made on first use
    monkeypatch.setattr(ModelBundle, "runner", lambda self, name: built.append(name) or build(self, name))
    session = suggest("saw", target, bundle=str(tiny_bundle), selector="ni", search=False)
    used = {"selector-ni", *(f"params-{step.effect}" for step in session.steps)}
    assert set(built) == used, built


runner = CliRunner()


def test_cli_suggest_prints_steps_and_writes_out(tiny_bundle, target, tmp_path):
    target_path = write_wav(tmp_path / "target.wav", target)
    result = runner.invoke(app, ["suggest", "saw", str(target_path), "--bundle", str(tiny_bundle),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "add " in result.stdout and "MSSMAE" in result.stdout
    assert (tmp_path / "out" / "progression.png").exists()
    result = runner.invoke(app, ["suggest", "saw", str(target_path), "--bundle", str(tiny_bundle), "--json"])
    assert json.loads(result.stdout)["steps"]


def test_cli_suggest_bad_input(tiny_bundle, target, tmp_path):
    target_path = write_wav(tmp_path / "target.wav", target)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(44100, np.float32))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (["saw", str(silent)], "silent"),
        (["saw", str(tmp_path / "missing.wav")], "does not exist"),
        (["saw", str(target_path), "--selector", "oracle"], "true effect chain"),
        (["saw", str(target_path), "--selector", "genius"], "Unknown selector"),
        (["kazoo", str(target_path)], "no preset 'kazoo'"),
        (["saw", str(target_path), "--out", str(blocker / "out")], "does not exist"),
        (["saw", str(target_path), "--out", str(blocker)], "is a file"),
        (["saw", str(target_path), "--rack", "moog"], "Unknown rack"),
    ]
    for args, fragment in cases:
        result = runner.invoke(app, ["suggest", *args, "--bundle", str(tiny_bundle)])
        assert result.exit_code != 0 and fragment in " ".join(result.stderr.split()), (args, result.stderr)
        assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "silent.wav", "target.wav"]

"""``serumrnn evaluate`` and ``core.evaluation`` on the real tiny dataset and bundle.

The tiny dataset's test split holds a single chain, so the engine tests evaluate the
train split (28 chains): the tiny bundle has not learnt much, which does not matter for
shapes, determinism, the oracle and chance."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from serumrnn.cli.app import app
from serumrnn.core.evaluation import (
    CHAIN_LENGTHS, EXACT, FILES, KEEP_RULES, MAX_TOLERANCE, NEEDED, SYSTEMS, EvaluationOptions, _parameter_chunk,
    _selector_step_picks, _task_runner, evaluate, plan_session_pairs, rival_lines, session_outcome,
)
from serumrnn.core.metrics import METRICS

runner = CliRunner()
OPTIONS = dict(pairs=5, param_pairs=4, seed=3, split="train", progress=False)


@pytest.fixture(scope="module")
def result(tiny_dataset, tiny_bundle):
    return evaluate(tiny_bundle, tiny_dataset, EvaluationOptions(workers=1, **OPTIONS))


def _figures(result) -> dict:
    """Everything but timings and run facts."""
    data = result.to_json()
    data.pop("meta")
    data.pop("latency")
    data["table4"] = [{key: value for key, value in row.items() if key != "ms_per_step"} for row in data["table4"]]
    return data


def test_table_shapes(result):
    assert [(row["effect"], row["metric"]) for row in result.parameter_models] == [
        (effect, metric.upper()) for effect in ("compressor", "distortion", "eq", "phaser", "reverb") for metric in METRICS]
    assert all(row["pairs"] == 4 and np.isfinite(row["input"]) and np.isfinite(row["output"])
               and np.isfinite(row["output_in_place"]) for row in result.parameter_models)
    assert all(row["paper_delta_pct"] is not None for row in result.parameter_models)  # Adv. Mod. figures beside

    ours = [(row["system"], row["measure"]) for row in result.selection if row["source"] == "ours"]
    assert ours[:8] == [(system, measure) for system in ("rnn", "ni", "oracle", "random") for measure in (NEEDED, EXACT)]
    assert [system for system, _ in ours[8:]] == ["cnn", "cnn"]
    assert {row["system"] for row in result.selection if row["source"].startswith("paper")} == {"rnn", "ni", "cnn"}
    assert {f"step_{n}" for n in CHAIN_LENGTHS} | {"all", "n"} <= set(result.selection[0])

    assert [(row["system"], row["kept"]) for row in result.systems if row["source"] == "ours"] == [
        (system, keep) for keep in KEEP_RULES for system in SYSTEMS]
    assert [(row["system"], row["kept"]) for row in result.systems if row["source"] != "ours"] == [
        (system, "last") for system in SYSTEMS]  # the paper keeps the last step
    assert all(set(METRICS) <= set(row) for row in result.systems)

    for system in ("rnn", "random"):
        rows = result.progress[system]
        assert [(row["kept"], row["metric"]) for row in rows if row["source"] == "ours"] == [
            (keep, m.upper()) for keep in KEEP_RULES for m in METRICS] + [("", "sessions")]
        assert any(row["source"].startswith("paper") for row in rows)
        for keep in KEEP_RULES:
            ours = {row["metric"]: row for row in rows if row["source"] == "ours" and row["kept"] in (keep, "")}
            assert ours["MSSMAE"]["delta"] == pytest.approx(ours["MSSMAE"]["final"] - ours["MSSMAE"]["initial"])
            assert ours["sessions"]["step_1"] == result.meta["session_pairs"]

    assert [(row["system"], row["kept"], row["tolerance"]) for row in result.tolerance_curve] == [
        (system, keep, t) for system in SYSTEMS for keep in KEEP_RULES for t in range(MAX_TOLERANCE + 1)]
    assert [row["system"] for row in result.latency] == list(SYSTEMS)
    assert all(0 < row["step_median_ms"] <= row["step_p95_ms"] and row["session_median_ms"] > 0
               for row in result.latency)


def test_pairs_per_chain_length(result, tiny_dataset):
    from serumrnn.core.views import DatasetReader

    reader = DatasetReader(tiny_dataset)
    planned, counts = plan_session_pairs(reader, 5, 3, "train")
    available = {n: sum(len(c["order"]) == n for c in reader.chains_in("train")) for n in CHAIN_LENGTHS}
    assert counts == {n: min(1, available[n]) for n in CHAIN_LENGTHS}
    assert [len(chain["order"]) for chain in planned] == [n for n in CHAIN_LENGTHS for _ in range(counts[n])]
    assert result.meta["session_pairs"] == len(planned) == len(result.sessions)
    other, _ = plan_session_pairs(reader, 5, 4, "train")
    assert [c["chain_id"] for c in other] != [c["chain_id"] for c in planned]  # the seed draws the pairs


def test_oracle_selects_the_hidden_chain(result):
    rows = {(row["system"], row["measure"]): row for row in result.selection if row["source"] == "ours"}
    assert rows[("oracle", NEEDED)]["all"] == rows[("oracle", EXACT)]["all"] == 1.0
    assert rows[("oracle", NEEDED)]["n"] > 50
    for pair in result.sessions:  # the full trajectory is the hidden chain; the stopping rule may cut it
        assert pair["systems"]["oracle"]["effects"] == pair["hidden"]
        assert pair["systems"]["oracle"]["applied"] <= len(pair["hidden"])


def test_random_selection_is_at_chance(tiny_dataset, manager):
    """Pooled over 40 seeds (2,800 steps) the random selector's rate of picking a
    needed effect is within 5 binomial standard deviations of the exact expectation
    (a chance failure has probability below 1e-6)."""
    from serumrnn.core.views import DatasetReader

    reader = DatasetReader(tiny_dataset)
    selector = manager.selectors.get("random")
    hits, expected, variance = [], 0.0, 0.0
    for seed in range(40):
        for order, picks in _selector_step_picks(reader, selector, "train", seed):
            for step, pick in enumerate(picks):
                p = (len(order) - step) / (5 - step)
                hits.append(pick in order[step:])
                expected += p
                variance += p * (1 - p)
    assert len(hits) == 40 * 70
    assert abs(sum(hits) - expected) < 5 * np.sqrt(variance)


def test_chance_row_is_the_exact_expectation(result):
    rows = {(row["system"], row["measure"]): row for row in result.selection}
    chance = rows[("chance", NEEDED)]
    # Step 1 of a chain of k effects: k of the 5 effects are needed.
    assert rows[("chance", EXACT)]["step_1"] == pytest.approx(1 / 5)
    assert 0.2 <= chance["step_1"] <= 1.0
    assert chance["n"] == rows[("random", NEEDED)]["n"]


def test_post_hoc_stopping_matches_a_real_session(result, tiny_dataset, tiny_bundle, rack, manager):
    """The trajectory run to the end, cut by the stopping rule afterwards, is the session
    ``run_session`` runs with that tolerance."""
    from serumrnn.core.bundle import ModelBundle
    from serumrnn.core.session import run_session
    from serumrnn.core.views import DatasetReader

    reader = DatasetReader(tiny_dataset)
    pair = max(result.sessions, key=lambda p: len(p["hidden"]))
    chain = next(c for c in reader.chains if c["chain_id"] == pair["chain_id"])
    bundle = ModelBundle.load(tiny_bundle, rack=rack)
    # the chain on the levelled source, as the dataset's renders
    target = rack.render(chain["preset"], [(name, chain["knobs"][name]) for name in chain["order"]],
                         loudness=bundle.loudness)
    selector = manager.selectors.get("rnn")
    # the rnn system is the paper's: no search stage
    full = run_session(chain["preset"], target, rack=rack, bundle=bundle, selector=selector, tolerance=5, search=False)
    assert [step.effect for step in full.steps] == pair["systems"]["rnn"]["effects"]
    record = {"initial": [full.initial_metrics[m] for m in METRICS],
              "steps": [[step.metrics[m] for m in METRICS] for step in full.steps]}
    for tolerance in (0, 1):
        session = run_session(chain["preset"], target, rack=rack, bundle=bundle, selector=selector, tolerance=tolerance,
                              search=False)
        applied, kept = session_outcome(record, "mssmae", tolerance)
        assert applied == len(session.steps)
        assert kept == session.best_index
        assert [step.effect for step in session.steps] == pair["systems"]["rnn"]["effects"][:applied]


def test_every_system_stops_and_keeps_by_the_same_rules(result):
    """No system ends by itself any more: a trajectory is cut by the stopping rule and
    its final step chosen by the keep rule, whoever made it."""
    index = METRICS.index("mssmae")
    steps = [[0.0] * len(METRICS) for _ in range(4)]
    for step, value in enumerate([50.0, 60.0, 70.0, 10.0]):  # better, worse, worse (stop), better
        steps[step][index] = value
    record = {"initial": [0.0] * index + [80.0] + [0.0] * (len(METRICS) - index - 1), "steps": steps}
    assert session_outcome(record, "mssmae", 1, "best") == (3, 1)
    assert session_outcome(record, "mssmae", 1, "last") == (3, 3)
    assert session_outcome(record, "mssmae", 2, "best") == (4, 4)
    with pytest.raises(ValueError, match="keep rule"):
        session_outcome(record, "mssmae", 1, "first")

    rows = {(row["system"], row["kept"]): row for row in result.systems if row["source"] == "ours"}
    curve = {(row["system"], row["kept"], row["tolerance"]): row["mssmae"] for row in result.tolerance_curve}
    for system in SYSTEMS:
        # the best step applied is never further from the target than the last one
        assert rows[(system, "best")]["mssmae"] <= rows[(system, "last")]["mssmae"] + 1e-9
        # with keep-best more tolerance never does worse (with keep-last it can)
        best = [curve[(system, "best", t)] for t in range(MAX_TOLERANCE + 1)]
        assert all(later <= earlier + 1e-9 for earlier, later in zip(best, best[1:])), system
    for pair in result.sessions:
        for system, outcome in pair["systems"].items():
            assert 0 <= outcome["kept"] <= outcome["applied"] <= len(outcome["effects"]), system


def test_table2_appends_the_effect_where_a_session_would(tiny_dataset, tiny_bundle, rack):
    """Output = the sub-chain, then the effect with its predicted (measured) knobs; in place = the
    effect at its place in the hidden order. Here they differ (distortion before or after
    reverb), and the output is exactly what the session's chain renders."""
    from serumrnn.core.bundle import ModelBundle
    from serumrnn.core.features import LibrosaFeatureExtractor
    from serumrnn.core.metrics import MetricReference

    bundle = ModelBundle.load(tiny_bundle, rack=rack)
    chain = {"chain_id": "t", "preset": "saw", "order": ["distortion", "reverb"],
             "knobs": {"distortion": {"drive": 0.9, "mode": 0.3}, "reverb": {"mix": 0.7}}}
    with _task_runner(bundle, rack, "mssmae", 1):
        [(before, after, in_place)] = _parameter_chunk({"effect": "distortion", "items": [(chain, ["reverb"])]})
    extractor = LibrosaFeatureExtractor()
    target = rack.render("saw", [("distortion", chain["knobs"]["distortion"]), ("reverb", chain["knobs"]["reverb"])],
                         loudness=bundle.loudness)
    dry_reverb = rack.render("saw", [("reverb", chain["knobs"]["reverb"])], loudness=bundle.loudness)
    predicted = bundle.predict_knobs("distortion", extractor.extract(dry_reverb, rack.sample_rate),
                                     extractor.extract(target, rack.sample_rate))
    # the measured drive, from what the distortion will shape: the reverb's output before levelling
    reverb_output = rack.process(rack.level_source("saw", bundle.loudness), [("reverb", chain["knobs"]["reverb"])])
    knobs = rack.measure_knobs("distortion", reverb_output, target, predicted)
    session_chain = rack.render("saw", [("reverb", chain["knobs"]["reverb"]), ("distortion", knobs)],
                                loudness=bundle.loudness)
    expected = MetricReference(target, extractor.extract(target, rack.sample_rate)).compare(
        session_chain, extractor.extract(session_chain, rack.sample_rate))
    np.testing.assert_allclose(after, [expected[m] for m in METRICS], rtol=1e-3, atol=1e-6)
    assert not np.allclose(after, in_place)


def test_rival_lines_are_computed_from_the_numbers(result):
    def row(system, keep, mssmae, pcc):
        return {"source": "ours", "system": system, "kept": keep,
                **{m: 1.0 for m in METRICS}, "mssmae": mssmae, "pcc": pcc}

    rows = [row("rnn", "best", -30.0, 5.0), row("ni", "best", -31.0, 4.0), row("cnn", "best", -20.0, 6.0),
            row("rnn", "last", -30.0, 5.0), row("ni", "last", -29.0, 5.0), row("cnn", "last", -20.0, 5.0),
            {"source": "paper (x)", "system": "ni", "kept": "last", **{m: -99.0 for m in METRICS}}]
    selection = [{"source": "ours", "system": "rnn", "measure": NEEDED, "all": 0.9},
                 {"source": "ours", "system": "ni", "measure": NEEDED, "all": 0.95}]
    lines = rival_lines(rows, selection)
    assert lines[0] == "SerumRNN NI beats SerumRNN on 1 of 6 metrics (kept best): MSSMAE (-31.00 against -30.00)."
    assert lines[1] == "SerumRNN NI beats SerumRNN on 0 of 6 metrics (kept last)."
    assert lines[2] == "SerumCNN beats SerumRNN on 1 of 6 metrics (kept best): PCC (6.00 against 5.00)."
    assert lines[4].startswith("SerumRNN NI picks an effect the target still needs more often than SerumRNN")

    markdown = result.to_markdown()
    assert "### Where other systems beat SerumRNN" in markdown
    for line in rival_lines(result.systems, result.selection):
        assert f"- {line}" in markdown


def test_figures_do_not_depend_on_workers(result, tiny_dataset, tiny_bundle):
    again = evaluate(tiny_bundle, tiny_dataset, EvaluationOptions(workers=2, **OPTIONS))
    assert _figures(again) == _figures(result)


def test_cli_writes_every_table_and_json(tiny_dataset, tiny_bundle, tmp_path):
    out = tmp_path / "eval"
    outcome = runner.invoke(app, ["evaluate", "--bundle", str(tiny_bundle), "--data", str(tiny_dataset),
                                  "--out", str(out), "--pairs", "5", "--param-pairs", "3", "--workers", "1", "--json"])
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())
    assert summary["meta"]["split"] == "test" and summary["meta"]["session_pairs"] >= 1
    assert json.loads((out / FILES["json"]).read_text())["table4"] == summary["table4"]
    markdown = (out / FILES["markdown"]).read_text()
    for heading in ("Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Figure 4", "Latency"):
        assert f"### {heading}" in markdown
    header = (out / FILES["table4"]).read_text().splitlines()[0].split(",")
    assert header[:3 + len(METRICS) + 1] == ["source", "system", "kept", *METRICS, "pairs"]
    assert (out / FILES["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _fails_cleanly(args, out):
    outcome = runner.invoke(app, ["evaluate", "--pairs", "5", "--param-pairs", "2", *args, "--out", str(out)])
    assert outcome.exit_code == 2, outcome.output
    message = outcome.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message and "Traceback" not in outcome.output
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no staging left
    return message


def test_missing_bundle(tiny_dataset, tmp_path):
    message = _fails_cleanly(["--bundle", str(tmp_path / "nope"), "--data", str(tiny_dataset)], tmp_path / "out")
    assert "nope" in message


def test_dataset_without_test_chains(tiny_dataset, tiny_bundle, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    table = pq.read_table(data / "manifest.parquet")
    splits = ["train" if split == "test" else split for split in table.column("split").to_pylist()]
    table = table.set_column(table.schema.get_field_index("split"), "split", pa.array(splits))
    pq.write_table(table, data / "manifest.parquet")
    message = _fails_cleanly(["--bundle", str(tiny_bundle), "--data", str(data)], tmp_path / "out")
    assert "no chains in its test split" in message


def test_bundle_for_another_rack(tiny_dataset, tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["rack"] = "linux-vst"
    (bundle / "bundle.json").write_text(json.dumps(meta))
    message = _fails_cleanly(["--bundle", str(bundle), "--data", str(tiny_dataset)], tmp_path / "out")
    assert "linux-vst" in message and "builtin" in message


def test_bad_options(tiny_dataset, tiny_bundle, tmp_path):
    args = ["--bundle", str(tiny_bundle), "--data", str(tiny_dataset)]
    assert "--pairs" in _fails_cleanly([*args, "--workers", "1", "--pairs", "2"], tmp_path / "a")
    assert "metric" in _fails_cleanly([*args, "--metric", "loudness"], tmp_path / "b")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    outcome = runner.invoke(app, ["evaluate", *args, "--out", str(tmp_path / "full")])
    assert outcome.exit_code == 2 and "not empty" in outcome.stderr
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_dataset_made_with_other_knobs(tiny_dataset, tiny_bundle, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    meta = json.loads((data / "dataset.json").read_text())
    meta["effects"]["eq"][0]["sample_ranges"] = [[0.0, 0.1]]
    (data / "dataset.json").write_text(json.dumps(meta))
    message = _fails_cleanly(["--bundle", str(tiny_bundle), "--data", str(data)], tmp_path / "out")
    assert "other effects or knobs" in message

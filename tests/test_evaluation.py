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
    CHAIN_LENGTHS, EXACT, FILES, MAX_TOLERANCE, NEEDED, SYSTEMS, EvaluationOptions, _selector_step_picks, evaluate, plan_session_pairs, session_outcome,
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
    return data


def test_table_shapes(result):
    assert [(row["effect"], row["metric"]) for row in result.parameter_models] == [
        (effect, metric.upper()) for effect in ("compressor", "distortion", "eq", "phaser", "reverb") for metric in METRICS]
    assert all(row["pairs"] == 4 and np.isfinite(row["input"]) and np.isfinite(row["output"])
               for row in result.parameter_models)
    assert all(row["paper_delta_pct"] is not None for row in result.parameter_models)  # Adv. Mod. figures beside

    ours = [(row["system"], row["measure"]) for row in result.selection if row["source"] == "ours"]
    assert ours[:8] == [(system, measure) for system in ("rnn", "ni", "oracle", "random") for measure in (NEEDED, EXACT)]
    assert [system for system, _ in ours[8:]] == ["cnn", "cnn"]
    assert {row["system"] for row in result.selection if row["source"].startswith("paper")} == {"rnn", "ni", "cnn"}
    assert {f"step_{n}" for n in CHAIN_LENGTHS} | {"all", "n"} <= set(result.selection[0])

    assert [row["system"] for row in result.systems if row["source"] == "ours"] == list(SYSTEMS)
    assert [row["system"] for row in result.systems if row["source"] != "ours"] == list(SYSTEMS)
    assert all(set(METRICS) <= set(row) for row in result.systems)

    for system in ("rnn", "random"):
        rows = result.progress[system]
        assert [row["metric"] for row in rows if row["source"] == "ours"] == [m.upper() for m in METRICS] + ["sessions"]
        assert any(row["source"].startswith("paper") for row in rows)
        ours = {row["metric"]: row for row in rows if row["source"] == "ours"}
        assert ours["MSSMAE"]["delta"] == pytest.approx(ours["MSSMAE"]["final"] - ours["MSSMAE"]["initial"])
        assert ours["sessions"]["step_1"] == result.meta["session_pairs"]

    assert [(row["system"], row["tolerance"]) for row in result.tolerance_curve] == [
        (system, t) for system in SYSTEMS for t in range(MAX_TOLERANCE + 1)]
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
    for pair in result.sessions:
        assert pair["systems"]["oracle"]["effects"] == pair["hidden"]
        assert pair["systems"]["oracle"]["applied"] == len(pair["hidden"])


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
    target = rack.render(chain["preset"], [(name, chain["knobs"][name]) for name in chain["order"]])
    bundle = ModelBundle.load(tiny_bundle, rack=rack)
    selector = manager.selectors.get("rnn")
    full = run_session(chain["preset"], target, rack=rack, bundle=bundle, selector=selector, tolerance=5)
    record = {"initial": [full.initial_metrics[m] for m in METRICS],
              "steps": [[step.metrics[m] for m in METRICS] for step in full.steps]}
    for tolerance in (0, 1):
        session = run_session(chain["preset"], target, rack=rack, bundle=bundle, selector=selector, tolerance=tolerance)
        applied, kept = session_outcome(record, "rnn", "mssmae", tolerance)
        assert applied == len(session.steps)
        assert kept == session.best_index
        assert [step.effect for step in session.steps] == pair["systems"]["rnn"]["effects"][:applied]


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
    assert header == ["source", "system", *METRICS, "pairs"]
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

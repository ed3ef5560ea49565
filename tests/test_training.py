"""Training on a tiny generated dataset: the loss falls, bundles fill up, runs are
reproducible and resumable, the time limit holds, and torchrun DDP works on CPU."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import pytest

from serumrnn.core.bundle import ModelBundle
from serumrnn.core.errors import BundleError, ParameterError
from serumrnn.core.training import TrainOptions, train_params, train_selector

FAST = dict(progress=False, float16=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """One preset, one chain per effect subset: 31 chains, about 200 renders (a few seconds)."""
    from serumrnn.core.dataset import generate_dataset

    out = tmp_path_factory.mktemp("data") / "saw"
    generate_dataset(out, rack="builtin", group="basic", chains_per_combo=1, seed=0, workers=1,
                     progress=False, presets=["saw"])
    return out


def read_log(bundle: Path, model: str) -> list[dict]:
    with open(bundle / "logs" / model / "train_log.csv") as handle:
        return list(csv.DictReader(handle))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_parameter_model_learns_and_lands_in_bundle(dataset, tmp_path):
    out = tmp_path / "bundle"
    entry = train_params(dataset, "distortion", out, size="compact",
                         options=TrainOptions(epochs=6, batch_size=16, **FAST))
    log = read_log(out, "params-distortion")
    assert len(log) == 6
    assert float(log[-1]["train_loss"]) < float(log[0]["train_loss"])
    metrics = entry["metrics"]
    assert {"validation_loss", "baseline_loss", "knob_mae", "class_accuracy"} <= set(metrics)
    assert set(metrics["knob_mae"]) == {"drive"} and set(metrics["class_accuracy"]) == {"mode"}
    assert entry["training"]["stopped"] == "max epochs" and entry["training"]["device"] == "cpu"
    assert not (out / ".checkpoints").exists()
    bundle = ModelBundle.load(out)
    assert bundle.model_names == ["params-distortion"]
    assert bundle.meta["dataset_fingerprint"] and bundle.preset_group == "basic"


@pytest.mark.parametrize("kind", ["rnn", "ni", "cnn"])
def test_selectors_train(dataset, tmp_path, kind):
    out = tmp_path / "bundle"
    entry = train_selector(dataset, kind, out, size="compact", options=TrainOptions(epochs=4, batch_size=8, **FAST))
    log = read_log(out, f"selector-{kind}")
    assert float(log[-1]["train_loss"]) < float(log[0]["train_loss"])
    if kind == "cnn":
        assert {"label_accuracy", "exact_set_accuracy", "baseline_loss"} <= set(entry["metrics"])
    else:
        assert {"accuracy", "accuracy_per_step", "accuracy_among_unused", "baseline_loss"} <= set(entry["metrics"])
    assert ModelBundle.load(out).has_selector(kind)


def test_seeded_runs_are_reproducible(dataset, tmp_path):
    options = TrainOptions(epochs=1, batch_size=16, seed=3, **FAST)
    train_params(dataset, "eq", tmp_path / "a", options=options)
    train_params(dataset, "eq", tmp_path / "b", options=options)
    assert digest(tmp_path / "a" / "params-eq.safetensors") == digest(tmp_path / "b" / "params-eq.safetensors")
    train_params(dataset, "eq", tmp_path / "c", options=TrainOptions(epochs=1, batch_size=16, seed=4, **FAST))
    assert digest(tmp_path / "a" / "params-eq.safetensors") != digest(tmp_path / "c" / "params-eq.safetensors")


def test_interrupted_run_resumes_exactly(dataset, tmp_path, monkeypatch):
    from serumrnn.core import training

    options = TrainOptions(epochs=3, batch_size=16, seed=1, **FAST)
    train_params(dataset, "reverb", tmp_path / "straight", options=options)

    calls = {"n": 0}
    real_write_log = training._write_log

    def interrupt_after_two_epochs(path, history):
        real_write_log(path, history)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_write_log", interrupt_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        train_params(dataset, "reverb", tmp_path / "resumed", options=options)
    assert (tmp_path / "resumed" / ".checkpoints" / "params-reverb" / "state.json").exists()
    assert not (tmp_path / "resumed" / "params-reverb.safetensors").exists()
    monkeypatch.setattr(training, "_write_log", real_write_log)
    entry = train_params(dataset, "reverb", tmp_path / "resumed", options=options)
    assert entry["training"]["epochs"] == 3
    assert digest(tmp_path / "straight" / "params-reverb.safetensors") == digest(
        tmp_path / "resumed" / "params-reverb.safetensors")


def test_time_limit_keeps_best_and_says_so(dataset, tmp_path):
    entry = train_params(dataset, "phaser", tmp_path / "b",
                         options=TrainOptions(epochs=50, batch_size=8, max_minutes=1e-4, **FAST))
    assert entry["training"]["stopped"] == "time limit"
    assert entry["training"]["epochs"] == 1
    assert ModelBundle.load(tmp_path / "b").has_param_model("phaser")


def test_bad_requests_are_refused(dataset, tmp_path):
    with pytest.raises(ParameterError, match="at least 1 epoch"):
        train_params(dataset, "eq", tmp_path / "b", options=TrainOptions(epochs=0, **FAST))
    with pytest.raises(ParameterError, match="no effect 'flanger'|Unknown effect"):
        train_params(dataset, "flanger", tmp_path / "b", options=TrainOptions(epochs=1, **FAST))
    with pytest.raises(ParameterError, match="Unknown selector kind"):
        train_selector(dataset, "lstm", tmp_path / "b", options=TrainOptions(epochs=1, **FAST))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not empty"):
        train_params(dataset, "eq", tmp_path / "busy", options=TrainOptions(epochs=1, **FAST))


@pytest.mark.slow
def test_torchrun_two_process_gloo(dataset, tmp_path):
    """DistributedDataParallel on CPU: two gloo ranks, rank 0 writes the bundle."""
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from serumrnn.core.training import TrainOptions, train_params
        train_params({str(dataset)!r}, "eq", {str(tmp_path / 'bundle')!r},
                     options=TrainOptions(epochs=2, batch_size=16, progress=False))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Own session, so a hang can be ended with the whole group (ranks included).
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        _, stderr = launcher.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.communicate()
        pytest.fail("torchrun with two gloo ranks did not finish within 180 s")
    assert launcher.returncode == 0, stderr[-3000:]
    bundle = ModelBundle.load(tmp_path / "bundle")
    training = bundle.meta["models"]["params-eq"]["training"]
    assert training["world_size"] == 2 and training["epochs"] == 2
    assert len(read_log(tmp_path / "bundle", "params-eq")) == 2


def test_cli_trains_and_refuses_bad_input(dataset, tmp_path):
    import json

    from typer.testing import CliRunner

    from serumrnn.cli.train import app

    runner = CliRunner()
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["train", "params", "--data", str(dataset), "--out", str(out), "--effect", "eq",
                                 "--epochs", "1", "--batch-size", "32", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["params-eq"]["training"]["epochs"] == 1
    for args, message in [
        (["params", "--data", str(tmp_path / "none"), "--out", str(out)], "does not exist"),
        (["params", "--data", str(dataset), "--out", str(out), "--effect", "flanger"], "has no effect 'flanger'"),
        (["params", "--data", str(dataset), "--out", str(out), "--size", "huge"], "Unknown model size"),
        (["params", "--data", str(dataset), "--out", str(out), "--epochs", "0"], "at least 1 epoch"),
        (["selector", "--data", str(dataset), "--out", str(out), "--kind", "lstm"], "Unknown selector kind"),
        (["selector", "--data", str(dataset), "--out", str(out), "--init-from", "BADNAME"],
         "--init-from 'BADNAME' is neither a bundle folder nor a shipped bundle"),
    ]:
        result = runner.invoke(app, ["train", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
        assert "--bundle" not in result.output  # train has no --bundle option to point to


def test_warm_start_loads_a_shipped_bundles_weights():
    """--init-from starts from the donor's stored (float16) weights: every tensor of the
    fresh module equals them afterwards."""
    import torch

    from serumrnn.core.session import bundle_path
    from serumrnn.core.training import _warm_start

    donor = ModelBundle.load(bundle_path("all"))
    module = donor.model("params-eq")  # a module of the same architecture, to overwrite
    with torch.no_grad():
        for tensor in module.state_dict().values():
            tensor.zero_()
    _warm_start(module, "params-eq", "all")
    stored = donor.read_weights("params-eq")
    assert set(module.state_dict()) == set(stored)
    for key, tensor in module.state_dict().items():  # float32 weights; int64 batch-norm counters
        assert tensor.dtype in (torch.float32, torch.int64)
        np.testing.assert_array_equal(tensor.numpy(), np.asarray(stored[key]).astype(tensor.numpy().dtype))


def test_training_reports_epochs_through_its_reporter_only(dataset, tmp_path, capsys):
    from serumrnn.core.runtime import SILENT

    class Recorder:
        def __init__(self):
            self.tasks, self.notes = [], []

        def task(self, description, total, *, done=0, unit="", transient=False):
            self.tasks.append((description, unit, transient))
            return SILENT.task(description, total)

        def note(self, text):
            self.notes.append(text)

    recorder = Recorder()
    train_params(dataset, "eq", tmp_path / "b", options=TrainOptions(epochs=2, batch_size=32, max_batches_per_epoch=2,
                                                                   float16=False, progress=recorder))
    assert recorder.tasks == [("params-eq epoch 1", "samples", True), ("params-eq epoch 2", "samples", True)]
    assert [note.split()[:2] for note in recorder.notes] == [["params-eq", "1/2"], ["params-eq", "2/2"]]
    assert capsys.readouterr() == ("", "")  # core prints nothing itself


def test_selector_metrics_count_any_remaining_effect():
    """Order is random, so predicting any effect the target still lacks counts as right
    for ``accuracy_remaining``; ``accuracy`` wants the labelled one."""
    import torch

    from serumrnn.core.model_kinds import SequenceSelectorKind

    task = SequenceSelectorKind("rnn", 5)
    labels = torch.tensor([[2, 4, 0, -100, -100]])
    applied = torch.zeros(1, 5, 6)
    applied[0, 0, 0], applied[0, 1, 3], applied[0, 2, 5] = 1, 1, 1
    predicted = torch.tensor([4, 2, 0, 1, 1])  # step 1: 4 remains; step 2: 2 was applied; step 3: right
    logits = torch.nn.functional.one_hot(predicted, 5).float().unsqueeze(0)
    logits[0, 1, 4] = 0.5  # step 2's runner-up is its label
    meter = task.new_meter()
    task.measure(meter, logits, {"labels": labels, "applied": applied})
    metrics = task.metrics(meter)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["accuracy_remaining"] == pytest.approx(2 / 3)
    assert metrics["accuracy_remaining_per_step"] == {"1": 1.0, "2": 0.0, "3": 1.0}
    assert metrics["accuracy_among_unused"] == pytest.approx(2 / 3)  # step 2 masked to the next best

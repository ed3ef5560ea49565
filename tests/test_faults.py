"""Faults: SIGKILL in the middle of ``generate``, ``train`` and ``suggest --out``, then a
rerun; two ``generate`` processes on one directory. Every run here is a real CLI
process. Nothing may be lost or corrupt, and the rerun's result must equal an
uninterrupted run's, byte for byte.

In-process resume tests live beside their modules (tests/test_dataset.py: SIGKILL of
the Python API generator, a half-written shard; tests/test_training.py: an interrupted
epoch loop); these add the command-line processes and their worker pools."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serumrnn.core.dataset import generate_dataset, shard_finished

pytestmark = pytest.mark.slow

# The smallest dataset the CLI makes: four basic presets, one chain per effect subset
# (848 renders in 4 shards, one per preset).
GENERATE = dict(group="basic", chains_per_combo=1, seed=0)
GENERATE_ARGS = ["--group", "basic", "--chains-per-combo", "1", "--seed", "0"]


def serumrnn(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "serumrnn.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(condition, process: subprocess.Popen, what: str, timeout_s: float = 240) -> None:
    """Poll ``condition`` every 5 ms while ``process`` runs."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the process ended before {what}: {process.stderr.read()[-500:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def digests(folder: Path, skip=(".lock",)) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def reference_dataset(tmp_path_factory) -> Path:
    """The uninterrupted result (the API and CLI write the same bytes for one config)."""
    out = tmp_path_factory.mktemp("reference") / "data"
    generate_dataset(out, workers=1, progress=False, **GENERATE)
    return out


def test_second_generate_is_refused_and_a_killed_one_resumes_identically(reference_dataset, tmp_path):
    out = tmp_path / "data"
    first = serumrnn("generate", *GENERATE_ARGS, "--workers", "1", "--out", out)
    try:
        wait_for(lambda: (out / "dataset.json").exists(), first, "dataset.json was written")
        second = serumrnn("generate", *GENERATE_ARGS, "--workers", "1", "--out", out)
        _, stderr = second.communicate(timeout=120)
        assert second.returncode == 2 and "Traceback" not in stderr
        assert stderr.strip().startswith("Error: Another serumrnn generate is writing"), stderr
        wait_for(lambda: shard_finished(out, "shard-00000"), first, "the first shard was finished")
    finally:
        if first.poll() is None:
            kill(first)
    assert first.returncode == -signal.SIGKILL
    assert json.loads((out / "dataset.json").read_text())["status"] == "incomplete"

    rerun = serumrnn("generate", *GENERATE_ARGS, "--workers", "1", "--out", out)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert "kept from an earlier run" in " ".join(stdout.split())
    assert digests(out) == digests(reference_dataset)


def test_killed_generate_takes_its_worker_pool_down_and_resumes_identically(reference_dataset, tmp_path):
    out = tmp_path / "data"
    run = serumrnn("generate", *GENERATE_ARGS, "--workers", "2", "--out", out)
    try:
        wait_for(lambda: any(shard_finished(out, f"shard-{i:05d}") for i in range(4)), run, "a shard was finished")
        pool = children_of(run.pid)
    finally:
        kill(run)
    assert pool, "generate --workers 2 started no worker processes"
    # The workers' parent is the forkserver, which outlives the killed generator; they
    # must notice and stop rather than go on writing shards for a dead run.
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pool if alive(pid)], "worker processes outlived the killed generate"

    rerun = serumrnn("generate", *GENERATE_ARGS, "--workers", "2", "--out", out)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert digests(out) == digests(reference_dataset)


TRAIN_ARGS = ["--effect", "eq", "--epochs", "4", "--batch-size", "16", "--seed", "5", "--threads", "1", "--quiet"]


def test_killed_training_resumes_to_identical_weights(tiny_dataset, tmp_path):
    straight = serumrnn("train", "params", "--data", tiny_dataset, "--out", tmp_path / "straight", *TRAIN_ARGS)
    _, stderr = straight.communicate(timeout=600)
    assert straight.returncode == 0, stderr

    out = tmp_path / "killed"
    checkpoint = out / ".checkpoints" / "params-eq" / "state.json"
    run = serumrnn("train", "params", "--data", tiny_dataset, "--out", out, *TRAIN_ARGS)
    try:
        wait_for(checkpoint.exists, run, "the first checkpoint was written")
    finally:
        kill(run)
    assert not (out / "params-eq.safetensors").exists()
    assert json.loads((out / "bundle.json").read_text())["models"] == {}  # valid, and holds nothing half-done
    # a kill during the log's write leaves its temporary file (the kill above may land there too)
    log_folder = out / "logs" / "params-eq"
    log_folder.mkdir(parents=True, exist_ok=True)
    (log_folder / ".train_log.k1ll3d.csv").write_text("epoch,train_loss\n")

    rerun = serumrnn("train", "params", "--data", tiny_dataset, "--out", out, *TRAIN_ARGS)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr
    assert not (out / ".checkpoints").exists()
    assert digests(out, skip=(".lock", "bundle.json", "train_log.csv")) == digests(
        tmp_path / "straight", skip=(".lock", "bundle.json", "train_log.csv"))
    entries = [json.loads((folder / "bundle.json").read_text())["models"]["params-eq"] for folder in
               (out, tmp_path / "straight")]
    assert entries[0]["sha256"] == entries[1]["sha256"] and entries[0]["training"]["epochs"] == 4


def test_killed_suggest_out_leaves_no_folder_and_the_rerun_writes_it(tiny_bundle, tmp_path):
    from serumrnn.core import get_plugin_manager
    from serumrnn.core.audio import write_wav

    rack = get_plugin_manager().rack("builtin")
    target = write_wav(tmp_path / "target.wav", rack.render("square", [("distortion", {"drive": 0.8}),
                                                                       ("reverb", {"mix": 0.6})]))
    work = tmp_path / "work"
    work.mkdir()
    args = ["suggest", "saw", target, "--bundle", tiny_bundle, "--json"]
    # Kill it as soon as its staging folder appears (the session is being written),
    # trying again if a run happens to finish first.
    for _attempt in range(5):
        out = work / "session"
        run = serumrnn(*args, "--out", out)
        try:
            wait_for(lambda: any(p.name.startswith(".session.") for p in work.iterdir()) or run.poll() is not None,
                     run, "the session was being written")
        except AssertionError:
            pass
        if run.poll() is None:
            kill(run)
            break
        run.communicate()
        for leftover in work.iterdir():
            shutil.rmtree(leftover)
    else:
        pytest.fail("suggest finished before it could be killed while writing, five times")
    assert not out.exists(), "a killed suggest --out left a visible (half-written) output folder"

    rerun = serumrnn(*args, "--out", out)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    once = serumrnn(*args, "--out", tmp_path / "uninterrupted")
    once_stdout, _ = once.communicate(timeout=300)
    assert {p.name for p in out.iterdir()} == {p.name for p in (tmp_path / "uninterrupted").iterdir()}
    wavs = sorted(p.name for p in out.glob("*.wav"))
    assert wavs and all((out / n).read_bytes() == (tmp_path / "uninterrupted" / n).read_bytes() for n in wavs)

    def without_timing(text: str) -> dict:
        data = json.loads(text)
        for step in data["steps"]:
            step.pop("seconds")
        if data.get("revision"):
            data["revision"].pop("seconds")
        return data

    assert without_timing(stdout) == without_timing(once_stdout)

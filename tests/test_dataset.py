"""Dataset generation: determinism across workers and backends, resume after SIGKILL,
refusals, split hygiene, the ``generate`` and ``dataset info`` commands."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from serumrnn.core.dataset import (
    exclusive_lock,
    generate_dataset,
    plan_shards,
    sample_chains,
    shard_finished,
    split_of,
)
from serumrnn.core.errors import DatasetError, ParameterError

# A small but complete configuration: 2 presets x 32 subsets x 1 chain = 424 renders
# in 4 shards of at most 128 renders.
TINY = dict(group="basic", chains_per_combo=1, seed=7, presets=("sine", "saw"), renders_per_shard=128)
TINY_RENDERS = 2 * (1 + (3**5 - 2**5))


def file_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a dataset except the lock, by relative path."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "data"
    summary = generate_dataset(out, workers=1, progress=False, **TINY)
    assert summary["renders"] == summary["rendered_now"] == TINY_RENDERS
    return out


@pytest.fixture
def tiny_copy(tiny_dataset, tmp_path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    return copy


# --- sampling and planning -------------------------------------------------------------


def test_chains_are_distinct_seeded_and_inside_sampling_ranges(rack):
    mask = 0b10110  # distortion, eq, reverb
    chains = sample_chains(rack, 3, "saw", mask, 20)
    again = sample_chains(rack, 3, "saw", mask, 20)
    assert [c.knobs for c in chains] == [c.knobs for c in again]
    assert len({json.dumps([c.order, c.knobs], sort_keys=True) for c in chains}) == 20
    assert len({c.order for c in chains}) > 1  # random orders
    for chain in chains:
        assert sorted(chain.order) == ["distortion", "eq", "reverb"]
        for name in chain.order:
            for spec in rack.effect(name).params:
                value = chain.knobs[name][spec.name]
                assert any(low <= value <= high for low, high in spec.sample_ranges)
    # chain i depends on its coordinates only, not on how many chains are drawn
    assert sample_chains(rack, 3, "saw", mask, 5)[4].knobs == chains[4].knobs
    assert sample_chains(rack, 4, "saw", mask, 1)[0].knobs != chains[0].knobs


def test_empty_subset_is_one_dry_chain_per_preset():
    config = {"presets": ["sine"], "effects": list("abcde"), "chains_per_combo": 3, "renders_per_shard": 100}
    shards = plan_shards(config)
    assert shards[0].units[0] == (0, 0, 1)
    assert sum(s.n_renders for s in shards) == 1 + 3 * (3**5 - 2**5)
    assert all(s.n_renders <= 100 for s in shards)
    assert [s.first_render_id for s in shards] == list(np.cumsum([0] + [s.n_renders for s in shards[:-1]]))


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ParameterError, match="preset group"):
        generate_dataset(tmp_path / "a", group="nope", chains_per_combo=1, seed=0, progress=False)
    with pytest.raises(ParameterError, match="chains-per-combo"):
        generate_dataset(tmp_path / "a", group="basic", chains_per_combo=0, seed=0, progress=False)
    with pytest.raises(ParameterError, match="seed"):
        generate_dataset(tmp_path / "a", group="basic", chains_per_combo=1, seed=-1, progress=False)
    with pytest.raises(ParameterError, match="not in group"):
        generate_dataset(tmp_path / "a", group="basic", chains_per_combo=1, seed=0, presets=["talking"])


def test_extract_batch_matches_librosa_per_clip(rack):
    import librosa

    from serumrnn.core.features import LibrosaFeatureExtractor

    extractor = LibrosaFeatureExtractor()
    clips = np.stack([rack.dry("saw"), rack.render("sine", [("reverb", {"mix": 0.6})]), 1e-3 * rack.dry("square")])
    db_mel, mfcc = extractor.extract_batch(clips)
    assert db_mel.shape == (3, 128, 87) and mfcc.shape == (3, 30, 87)
    for index, clip in enumerate(clips):
        mel = librosa.feature.melspectrogram(y=clip, sr=44100, n_fft=2048, hop_length=512, n_mels=128,
                                             fmin=20, fmax=16000, power=2.0)
        db = librosa.power_to_db(mel, ref=1.0, top_db=80)
        np.testing.assert_allclose(db_mel[index], db, atol=5e-3)
        np.testing.assert_allclose(mfcc[index], librosa.feature.mfcc(S=db, n_mfcc=30), atol=2e-2)
        single = extractor.extract(clip)
        np.testing.assert_array_equal(single.db_mel, db_mel[index])


# --- layout and content ----------------------------------------------------------------------


def test_layout_manifest_and_metadata(tiny_dataset, rack):
    import pyarrow.parquet as pq

    metadata = json.loads((tiny_dataset / "dataset.json").read_text())
    assert metadata["status"] == "complete"
    assert metadata["config"]["presets"] == ["sine", "saw"]
    assert metadata["counts"] == {"renders": TINY_RENDERS, "shards": 4, "chains": 64, "targets": 64}
    assert metadata["effects"]["eq"][2]["sample_ranges"] == [[0.0, 0.4], [0.6, 1.0]]
    assert metadata["features"]["n_mels"] == 128 and len(metadata["fingerprint"]) == 64
    manifest = pq.read_table(tiny_dataset / "manifest.parquet").to_pylist()
    assert [row["render_id"] for row in manifest] == list(range(TINY_RENDERS))
    mel = np.load(tiny_dataset / "shards" / "shard-00000.mel.npy", mmap_mode="r")
    mfcc = np.load(tiny_dataset / "shards" / "shard-00000.mfcc.npy", mmap_mode="r")
    assert mel.dtype == np.float16 and mel.shape[1:] == (128, 87) and mfcc.shape[1:] == (30, 87)
    dry_rows = [row for row in manifest if not row["applied"]]
    assert [row["preset"] for row in dry_rows] == ["sine", "saw"]  # stored once per preset
    for row in manifest:
        assert row["seed"] == 7
        assert row["is_target"] == (row["applied"] == row["chain"])
        assert [name for name in row["chain"] if name in row["applied"]] == row["applied"]  # order kept
        knobs = json.loads(row["knobs"])
        assert list(knobs) == row["chain"]
        for effect in rack.effect_names:
            for spec in rack.effect(effect).params:
                assert row[f"{effect}.{spec.name}"] == (knobs[effect][spec.name] if effect in knobs else None)


def test_stored_features_equal_a_direct_render(tiny_dataset, rack):
    """The prefix-tree renders equal ``rack.render`` of each sub-chain under the dataset's
    loudness convention, featurised."""
    import pyarrow.parquet as pq

    from serumrnn.core.features import LibrosaFeatureExtractor
    from serumrnn.core.loudness import DEFAULT, convention_from_json

    loudness = convention_from_json(json.loads((tiny_dataset / "dataset.json").read_text())["config"]["loudness"])
    assert loudness == DEFAULT
    extractor = LibrosaFeatureExtractor()
    manifest = pq.read_table(tiny_dataset / "manifest.parquet").to_pylist()
    rng = np.random.default_rng(0)
    for row in [manifest[0], *(manifest[i] for i in rng.choice(len(manifest), 6, replace=False))]:
        knobs = json.loads(row["knobs"])
        audio = rack.render(row["preset"], [(name, knobs[name]) for name in row["applied"]], loudness=loudness)
        features = extractor.extract(audio)
        stem = f"shard-{row['shard']:05d}"
        mel = np.load(tiny_dataset / "shards" / f"{stem}.mel.npy", mmap_mode="r")[row["row"]]
        mfcc = np.load(tiny_dataset / "shards" / f"{stem}.mfcc.npy", mmap_mode="r")[row["row"]]
        np.testing.assert_allclose(mel, features.db_mel / 80, atol=2e-3)
        np.testing.assert_allclose(mfcc, features.mfcc, rtol=2e-3, atol=0.05)


# --- determinism -------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_give_identical_bytes(tiny_dataset, tmp_path):
    out = tmp_path / "two"
    generate_dataset(out, workers=2, progress=False, **TINY)
    assert file_bytes(out) == file_bytes(tiny_dataset)


@pytest.mark.slow
def test_ray_local_gives_identical_bytes(tiny_dataset, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    summary = generate_dataset(out, workers=2, ray_address="local", progress=False, **TINY)
    assert summary["rendered_now"] == TINY_RENDERS
    assert file_bytes(out) == file_bytes(tiny_dataset)


def test_missing_ray_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(DatasetError, match=r"serumrnn\[distributed\]"):
        generate_dataset(tmp_path / "r", ray_address="local", progress=False, **TINY)


# --- resume, refusals -------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_after_sigkill_gives_identical_bytes(tiny_dataset, tmp_path):
    out = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        from serumrnn.core.dataset import generate_dataset
        generate_dataset({str(out)!r}, workers=1, progress=False, **{TINY!r})
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    first_shard = out / "shards" / "shard-00000.parquet"
    try:
        deadline = time.monotonic() + 120
        while not first_shard.exists():
            assert process.poll() is None, "generation ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "manifest.parquet").exists()
    assert json.loads((out / "dataset.json").read_text())["status"] == "incomplete"
    finished = [stem for stem in (f"shard-{i:05d}" for i in range(4)) if shard_finished(out, stem)]
    assert "shard-00000" in finished and len(finished) < 4

    summary = generate_dataset(out, workers=1, progress=False, **TINY)
    assert 0 < summary["rendered_now"] < TINY_RENDERS  # finished shards were kept
    assert file_bytes(out) == file_bytes(tiny_dataset)


def test_half_written_shard_is_redone_not_read(tiny_copy, tiny_dataset):
    from serumrnn.core.views import DatasetReader

    shards = tiny_copy / "shards"
    # A killed writer leaves temporaries and possibly arrays without their manifest.
    (shards / "shard-00002.parquet").rename(shards / ".shard-00002.parquet.4242.tmp")
    (shards / ".shard-00002.mel.npy.4242.tmp").write_bytes(b"half a shard")
    assert not shard_finished(tiny_copy, "shard-00002")
    with pytest.raises(DatasetError, match="shard-00002.parquet' is missing"):
        DatasetReader(tiny_copy)
    summary = generate_dataset(tiny_copy, workers=1, progress=False, **TINY)
    assert summary["rendered_now"] == plan_shards(json.loads((tiny_copy / "dataset.json").read_text())["config"])[2].n_renders
    assert not list(shards.glob(".*"))
    assert file_bytes(tiny_copy) == file_bytes(tiny_dataset)


class RecordingProgress:
    """A progress reporter that keeps what core reports (core never prints)."""

    def __init__(self):
        self.tasks, self.advances, self.closed = [], [], 0

    def task(self, description, total, *, done=0, unit="", transient=False):
        self.tasks.append((description, total, done, unit))
        recorder = self

        class Task:
            def advance(self, count=1, *, rate=None):
                recorder.advances.append((count, rate))

            def close(self):
                recorder.closed += 1

        return Task()

    def note(self, text):
        raise AssertionError(f"generate has no notes: {text}")


def test_progress_of_a_resumed_run_counts_only_its_renders(tiny_copy, capsys):
    (tiny_copy / "shards" / "shard-00001.parquet").unlink()
    redo = plan_shards(json.loads((tiny_copy / "dataset.json").read_text())["config"])[1].n_renders
    progress = RecordingProgress()
    generate_dataset(tiny_copy, workers=1, progress=progress, **TINY)
    assert progress.tasks == [("rendering", TINY_RENDERS, TINY_RENDERS - redo, "renders")]
    assert sum(count for count, _ in progress.advances) == redo and progress.closed == 1
    assert all(rate > 0 for _, rate in progress.advances)
    assert capsys.readouterr() == ("", "")  # core reports through the reporter only


def test_rerunning_a_finished_dataset_does_nothing(tiny_copy):
    before = {path: path.stat().st_mtime_ns for path in tiny_copy.rglob("*") if path.is_file()}
    summary = generate_dataset(tiny_copy, workers=1, progress=False, **TINY)
    assert summary["skipped"] and summary["rendered_now"] == 0 and summary["renders"] == TINY_RENDERS
    assert {path: path.stat().st_mtime_ns for path in tiny_copy.rglob("*") if path.is_file()} == before


def test_foreign_config_directory_is_refused(tiny_copy):
    before = file_bytes(tiny_copy)
    with pytest.raises(DatasetError, match="another config.*choose another --out"):
        generate_dataset(tiny_copy, workers=1, progress=False, **{**TINY, "seed": 8})
    assert file_bytes(tiny_copy) == before


def test_non_dataset_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        generate_dataset(tmp_path, workers=1, progress=False, **TINY)
    (tmp_path / "dataset.json").write_text("{oops")
    with pytest.raises(DatasetError, match="not a readable"):
        generate_dataset(tmp_path, workers=1, progress=False, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "dataset.json", "notes.txt"]


def test_concurrent_generate_is_refused_by_the_lock(tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from serumrnn.core.dataset import exclusive_lock
            with exclusive_lock(Path({str(out)!r})):
                print("locked", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DatasetError, match="Another serumrnn generate is writing"):
            generate_dataset(out, workers=1, progress=False, **TINY)
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(out):  # released when its holder died
        pass


# --- splits -------------------------------------------------------------------------------------


def test_splits_are_by_chain(tiny_dataset):
    import pyarrow.parquet as pq

    splits_of_chain: dict[str, set[str]] = defaultdict(set)
    for row in pq.read_table(tiny_dataset / "manifest.parquet", columns=["chain_id", "split"]).to_pylist():
        splits_of_chain[row["chain_id"]].add(row["split"])
    assert all(len(splits) == 1 for splits in splits_of_chain.values())


def test_split_ratios_and_seed_dependence():
    ids = [f"saw/s{mask:02d}/c{index:04d}" for mask in range(32) for index in range(1000)]
    splits = [split_of(chain, 0) for chain in ids]
    fractions = {name: splits.count(name) / len(ids) for name in ("train", "validation", "test")}
    assert fractions["train"] == pytest.approx(0.85, abs=0.01)
    assert fractions["validation"] == pytest.approx(0.10, abs=0.01)
    assert fractions["test"] == pytest.approx(0.05, abs=0.01)
    assert splits != [split_of(chain, 1) for chain in ids]


# --- CLI -----------------------------------------------------------------------------------------


def _cli_app():
    import typer

    from serumrnn.cli import dataset

    app = typer.Typer()
    app.add_typer(dataset.app)
    app.add_typer(dataset.dataset_app, name="dataset")
    return app


def test_dataset_info_command(tiny_dataset):
    from typer.testing import CliRunner

    runner = CliRunner()
    result = runner.invoke(_cli_app(), ["dataset", "info", str(tiny_dataset), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["renders"] == TINY_RENDERS and info["chains"] == 64
    assert info["presets"] == {"sine": {"renders": 212, "chains": 32}, "saw": {"renders": 212, "chains": 32}}
    assert info["subsets"]["none"] == {"renders": 2, "chains": 2}
    assert info["subsets"]["compressor+distortion+eq+phaser+reverb"] == {"renders": 62, "chains": 2}
    assert sum(row["chains"] for row in info["splits"].values()) == 64
    assert info["size_bytes"] > 0
    result = runner.invoke(_cli_app(), ["dataset", "info", str(tiny_dataset)])
    assert result.exit_code == 0
    for text in ("424 renders", "sine", "validation", "compressor+eq", "on disk"):
        assert text in result.output


def test_cli_refusals_are_one_sentence(tmp_path, tiny_copy):
    from typer.testing import CliRunner

    runner = CliRunner()
    result = runner.invoke(_cli_app(), ["dataset", "info", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output and "Traceback" not in result.output
    result = runner.invoke(
        _cli_app(), ["generate", "--rack", "builtin", "--group", "basic", "--chains-per-combo", "1",
                     "--seed", "7", "--out", str(tiny_copy)],
    )
    assert result.exit_code == 2 and "another config" in result.output


@pytest.mark.slow
def test_generate_command_then_rerun(tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "cli"
    args = ["generate", "--rack", "builtin", "--group", "basic", "--chains-per-combo", "1", "--seed", "3",
            "--out", str(out), "--workers", "2"]
    runner = CliRunner()
    result = runner.invoke(_cli_app(), args)
    assert result.exit_code == 0, result.output
    assert "Wrote 848 renders" in result.output and "renders/s" in result.output
    result = runner.invoke(_cli_app(), args)
    assert result.exit_code == 0 and "already complete" in result.output

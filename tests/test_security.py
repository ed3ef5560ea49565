"""Security: model, checkpoint and dataset loading never unpickles; bundle and dataset
files cannot steer reads or writes out of the folders given, nor import code; plugins
load only through entry points and the allow/block lists.

(Path traversal in rack TOML files is covered with the TOML rack, tests/test_toml_rack.py.)"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from serumrnn.cli.app import app
from serumrnn.core.bundle import ModelBundle
from serumrnn.core.errors import BundleError, DatasetError
from serumrnn.core.training import TrainOptions, train_params
from serumrnn.core.views import DatasetReader, ParameterPairs

ROOT = Path(__file__).parent.parent
SOURCE_FOLDERS = ("core", "cli", "plugins", "effects", "synths")
runner = CliRunner()


class Payload:
    """Unpickling this runs ``Path(marker).touch()``: proof that something unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickle_bomb(marker: Path) -> bytes:
    return pickle.dumps({"weight": Payload(marker)})


@pytest.fixture
def no_unpickling(monkeypatch):
    """Make every unpickling entry point fail loudly for the duration of a test."""
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    class RefusingUnpickler:
        def __init__(self, *args, **kwargs):
            refuse()

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)
    import torch

    monkeypatch.setattr(torch, "load", refuse)


def interrupt_after_first_epoch(dataset, bundle, options, monkeypatch) -> None:
    """Train the eq model into ``bundle`` and stop it (KeyboardInterrupt) after its
    first epoch's checkpoint."""
    from serumrnn.core import training

    real_write_log = training._write_log

    def interrupt(path, history):
        real_write_log(path, history)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_write_log", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_params(dataset, "eq", bundle, options=options)
    monkeypatch.setattr(training, "_write_log", real_write_log)


def test_source_has_no_unpickling_calls():
    """No pickle, torch.load, joblib or allow_pickle=True anywhere in the package."""
    # (safetensors.torch.load and module.eval() are fine: hence the look-behinds.)
    pattern = re.compile(r"\bimport pickle\b|\bpickle\.load|(?<![\w.])torch\.load\(|\bjoblib\b|allow_pickle\s*=\s*True|"
                         r"\bdill\b|\bcloudpickle\b|(?<![\w.])eval\(|(?<![\w.])exec\(")
    hits = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for folder in SOURCE_FOLDERS for path in (ROOT / folder).rglob("*.py")
            for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)


def test_loading_bundles_datasets_and_checkpoints_never_unpickles(tiny_bundle, tiny_dataset, tmp_path, monkeypatch,
                                                                  no_unpickling, tone):
    from serumrnn.core import suggest

    bundle = ModelBundle.load(tiny_bundle)
    assert set(bundle.model_names) >= {"params-eq", "selector-rnn"}
    session = suggest("saw", tone, bundle=tiny_bundle)
    assert session.steps
    reader = DatasetReader(tiny_dataset)
    assert ParameterPairs(reader, "eq", "train")[0]["mel"].shape[0] == 2

    # A checkpoint written, then resumed from (an interrupted run), all without pickle.
    options = TrainOptions(epochs=2, batch_size=16, progress=False)
    interrupt_after_first_epoch(tiny_dataset, tmp_path / "b", options, monkeypatch)
    assert train_params(tiny_dataset, "eq", tmp_path / "b", options=options)["training"]["epochs"] == 2


def test_pickled_weights_are_refused_without_running_them(tiny_bundle, tmp_path):
    marker = tmp_path / "pwned"
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "params-eq.safetensors").write_bytes(pickle_bomb(marker))
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["models"]["params-eq"].pop("sha256")  # get past the checksum, to the parser
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="not a valid safetensors file"):
        ModelBundle.load(bundle)
    assert not marker.exists()


def test_pickled_checkpoint_is_ignored_without_running_it(tiny_dataset, tmp_path, monkeypatch):
    options = TrainOptions(epochs=2, batch_size=16, progress=False)
    interrupt_after_first_epoch(tiny_dataset, tmp_path / "b", options, monkeypatch)
    marker = tmp_path / "pwned"
    checkpoints = list((tmp_path / "b" / ".checkpoints" / "params-eq").glob("*.safetensors"))
    assert checkpoints
    for path in checkpoints:
        path.write_bytes(pickle_bomb(marker))
    entry = train_params(tiny_dataset, "eq", tmp_path / "b", options=options)  # starts over
    assert entry["training"]["epochs"] == 2 and not marker.exists()


def test_pickled_dataset_shard_is_refused_without_running_it(tiny_dataset, tmp_path):
    marker = tmp_path / "pwned"
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    bomb = np.empty(1, dtype=object)
    bomb[0] = Payload(marker)
    np.save(data / "shards" / "shard-00000.mfcc.npy", bomb, allow_pickle=True)
    with pytest.raises(DatasetError, match="missing or corrupt"):
        DatasetReader(data)
    result = runner.invoke(app, ["train", "params", "--data", str(data), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "missing or corrupt" in result.stderr
    assert not marker.exists() and not (tmp_path / "b").exists()


def folder_state(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.parametrize("file_name", ["../../escape.safetensors", "../params-eq.safetensors", "/tmp/escape.safetensors",
                                       "sub/params-eq.safetensors", "params-eq.safetensors/../../x"])
def test_bundle_json_cannot_point_reads_or_writes_outside(file_name, tiny_bundle, tiny_dataset, tmp_path):
    """Reading (suggest) and writing (train into it) both refuse; nothing outside the
    bundle folder is read or written."""
    deep = tmp_path / "a" / "b"
    bundle = deep / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (tmp_path / "escape.safetensors").write_bytes((bundle / "params-eq.safetensors").read_bytes())
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["models"]["params-eq"]["file"] = file_name
    (bundle / "bundle.json").write_text(json.dumps(meta))
    target = tmp_path / "target.wav"
    from serumrnn.core.audio import write_wav

    write_wav(target, np.sin(np.linspace(0, 2000, 44100)).astype(np.float32) * 0.3)
    before = folder_state(tmp_path)
    for args in (["suggest", "saw", str(target), "--bundle", str(bundle)],
                 ["train", "params", "--data", str(tiny_dataset), "--out", str(bundle), "--effect", "eq", "--epochs", "1",
                  "--quiet"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "refusing to read it" in result.stderr and "Traceback" not in result.output
    assert folder_state(tmp_path) == before


def test_effect_names_in_data_files_cannot_become_paths(tiny_dataset, tiny_bundle, tmp_path):
    """Effect names turn into model, log and checkpoint paths: a dataset.json or
    bundle.json naming an effect "../../x" is refused before anything is written."""
    evil = "../../escaped"
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    meta = json.loads((data / "dataset.json").read_text())
    meta["config"]["effects"] = [evil if name == "eq" else name for name in meta["config"]["effects"]]
    meta["effects"] = {evil if name == "eq" else name: specs for name, specs in meta["effects"].items()}
    (data / "dataset.json").write_text(json.dumps(meta))
    before = folder_state(tmp_path)
    for args in (["dataset", "info", str(data)],
                 ["train", "params", "--data", str(data), "--out", str(tmp_path / "x" / "y" / "b"), "--epochs", "1"],
                 ["train", "selector", "--data", str(data), "--out", str(tmp_path / "x" / "y" / "b"), "--epochs", "1"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "names an invalid effect" in result.stderr, result.output
    assert folder_state(tmp_path) == before

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["effect_order"] = [evil if name == "eq" else name for name in meta["effect_order"]]
    meta["effects"][evil] = meta["effects"].pop("eq")
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="names an invalid effect"):
        ModelBundle.load(bundle)


def test_bundle_and_dataset_folders_cannot_inject_code(tiny_bundle, tiny_dataset, tmp_path):
    """Python files inside a bundle or dataset folder, and module-like names in their
    JSON, are never imported, whatever the working directory."""
    marker = tmp_path / "imported"
    trap = f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n"
    bundle, data = tmp_path / "bundle", tmp_path / "data"
    shutil.copytree(tiny_bundle, bundle)
    shutil.copytree(tiny_dataset, data)
    for folder in (bundle, data, data / "shards"):
        for name in ("sitecustomize.py", "usercustomize.py", "evil.py", "serumrnn_plugin.py", "__init__.py",
                     "torch.py", "numpy.py"):
            (folder / name).write_text(trap)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["plugins"] = ["evil"]
    meta["models"]["params-eq"]["module"] = "evil"
    (bundle / "bundle.json").write_text(json.dumps(meta))
    target = tmp_path / "target.wav"
    from serumrnn.core.audio import write_wav

    write_wav(target, np.sin(np.linspace(0, 2000, 44100)).astype(np.float32) * 0.3)
    # The installed command, as a user runs it (``python -m`` would put the working
    # directory first on sys.path, which is Python's doing, not ours).
    command = Path(sys.executable).parent / "serumrnn"
    for cwd in (bundle, data):
        for args in (["suggest", "saw", str(target), "--bundle", str(bundle)], ["dataset", "info", str(data)]):
            result = subprocess.run([str(command), *args], cwd=cwd, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr
    assert not marker.exists()


@pytest.fixture(scope="module")
def trap_plugin(tmp_path_factory):
    """A plugin distribution (dist-info with a ``serumrnn`` entry point) whose module
    leaves a marker file when imported, on a PYTHONPATH of its own."""
    site = tmp_path_factory.mktemp("site")
    marker = site / "imported"
    (site / "trap_plugin.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).touch()
    """))
    info = site / "trap_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: trap-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[serumrnn]\ntrap = trap_plugin\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    return env, marker


@pytest.mark.parametrize(
    "lists, imported",
    [
        ({}, True),  # proves the trap works: an installed plugin is imported
        ({"SERUMRNN_LOAD_PLUGINS": "serumrnn.plugins.builtin"}, False),
        ({"SERUMRNN_DISABLE_PLUGINS": "trap"}, False),
        ({"SERUMRNN_LOAD_PLUGINS": "trap", "SERUMRNN_DISABLE_PLUGINS": "trap"}, False),
    ],
)
def test_plugins_load_only_through_entry_points_and_the_lists(trap_plugin, lists, imported):
    env, marker = trap_plugin
    marker.unlink(missing_ok=True)
    env = {key: value for key, value in env.items() if not key.startswith("SERUMRNN_")} | lists
    result = subprocess.run([sys.executable, "-m", "serumrnn.cli", "plugins", "--json"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert marker.exists() == imported
    assert ("trap" in json.loads(result.stdout)) == imported


def test_a_plugin_module_lying_around_is_not_loaded(tmp_path):
    """A module that merely sits on the path, or in the working directory, with a
    plugin-like name and hook implementations but no entry point, is not loaded."""
    marker = tmp_path / "imported"
    for name in ("serumrnn_trap.py", "serumrnn_plugin.py", "plugins.py"):
        (tmp_path / name).write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "serumrnn.cli", "plugins", "--json"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


"""Training views: sizes and labels match the manifest; features come from memory maps;
broken datasets give one clear sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from serumrnn.core.dataset import generate_dataset
from serumrnn.core.errors import DatasetError, ParameterError
from serumrnn.core.views import DatasetReader, MultiLabelTargets, ParameterPairs, SelectionSequences

EFFECTS = ("compressor", "distortion", "eq", "phaser", "reverb")
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("views") / "data"
    generate_dataset(out, group="basic", chains_per_combo=1, seed=11, presets=("triangle", "square"),
                     renders_per_shard=160, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def reader(dataset_dir) -> DatasetReader:
    return DatasetReader(dataset_dir)


@pytest.fixture(scope="module")
def rows(reader) -> list[dict]:
    return reader.manifest.to_pylist()


def test_reader_indexes_every_chain(reader, rows):
    assert len(reader) == len(rows) == 2 * 212
    assert len(reader.chains) == 64
    for chain in reader.chains:
        assert len(chain["renders"]) == 2 ** len(chain["order"])  # every sub-chain, dry included
        for applied, render_id in chain["renders"].items():
            assert tuple(rows[render_id]["applied"]) == applied
            assert rows[render_id]["preset"] == chain["preset"]
            if applied:
                assert rows[render_id]["chain_id"] == chain["chain_id"]


def test_features_come_from_memory_maps(reader, rows):
    fresh = DatasetReader(reader.path)
    assert fresh._open == {}  # nothing opened up front
    mel, mfcc = fresh.features([5, 300])
    assert mel.dtype == np.float32 and mel.shape == (2, 128, 87) and mfcc.shape == (2, 30, 87)
    opened = {rows[5]["shard"], rows[300]["shard"]}
    assert set(fresh._open) == opened
    assert all(isinstance(array, np.memmap) for pair in fresh._open.values() for array in pair)
    stored = np.load(reader.path / "shards" / f"shard-{rows[300]['shard']:05d}.mel.npy")[rows[300]["row"]]
    np.testing.assert_array_equal(mel[1], stored.astype(np.float32))
    # pickled into a DataLoader worker: memory maps reopen there
    import pickle

    assert pickle.loads(pickle.dumps(fresh))._open == {}


@pytest.mark.parametrize("effect", EFFECTS)
def test_parameter_pairs_match_the_manifest(reader, rows, effect):
    specs = {spec.name: spec for spec in reader.specs[effect]}
    sizes = 0
    for split in SPLITS:
        view = ParameterPairs(reader, effect, split)
        expected = sum(2 ** (len(c["order"]) - 1) for c in reader.chains_in(split) if effect in c["order"])
        assert len(view) == expected
        sizes += len(view)
        for index in range(0, len(view), 7):
            input_id, target_id = view.pairs[index]
            target, source = rows[target_id], rows[input_id]
            assert target["is_target"] and effect in target["chain"] and target["split"] == split
            assert effect not in source["applied"]
            assert source["chain_id"] == target["chain_id"] or not source["applied"]
            assert set(source["applied"]) <= set(target["chain"])
            item = view[index]
            assert item["mel"].shape == (2, 128, 87) and item["mfcc"].shape == (2, 30, 87)
            np.testing.assert_array_equal(item["mel"], reader.features([input_id, target_id])[0])
            np.testing.assert_allclose(
                item["continuous"], [target[f"{effect}.{spec.name}"] for spec in view.continuous_specs], rtol=1e-6
            )
            assert item["categorical"].dtype == np.int64
            assert list(item["categorical"]) == [
                specs[spec.name].class_index(target[f"{effect}.{spec.name}"]) for spec in view.categorical_specs
            ]
    # every chain containing the effect: 2 presets x 16 subsets, 2**(k-1) inputs each
    assert sizes == 2 * sum(2 ** (bin(mask).count("1") - 1) for mask in range(32) if mask & (1 << EFFECTS.index(effect)))


def test_parameter_pairs_expose_specs(reader):
    view = ParameterPairs(reader, "distortion", "train")
    assert [s.name for s in view.continuous_specs] == ["drive"]
    assert [s.name for s in view.categorical_specs] == ["mode"]
    assert view[0]["continuous"].shape == (1,) and view[0]["categorical"].shape == (1,)
    assert len(ParameterPairs(reader, "eq", "train").continuous_specs) == 3


def test_selection_sequences_match_the_manifest(reader, rows):
    for split in SPLITS:
        view = SelectionSequences(reader, split)
        chains = [c for c in reader.chains_in(split) if c["order"]]
        assert len(view) == len(chains)
        for index, chain in enumerate(chains):
            item = view[index]
            order = chain["order"]
            k = len(order)
            assert item["length"] == k
            assert item["mel"].shape == (5, 2, 128, 87) and item["applied"].shape == (5, 6)
            assert list(item["labels"]) == [EFFECTS.index(name) for name in order] + [-100] * (5 - k)
            assert item["applied"][0].tolist() == [1, 0, 0, 0, 0, 0]
            for step in range(1, k):
                expected = np.zeros(6)
                expected[[1 + EFFECTS.index(name) for name in order[:step]]] = 1
                np.testing.assert_array_equal(item["applied"][step], expected)
            target_id = chain["renders"][order]
            for step in range(k):
                input_id = chain["renders"][order[:step]]
                assert tuple(rows[input_id]["applied"]) == order[:step]
                mel, mfcc = reader.features([input_id, target_id])
                np.testing.assert_array_equal(item["mel"][step], mel)
                np.testing.assert_array_equal(item["mfcc"][step], mfcc)
            assert not item["mel"][k:].any() and not item["applied"][k:].any()


def test_multilabel_targets_match_the_manifest(reader, rows):
    total = 0
    for split in SPLITS:
        view = MultiLabelTargets(reader, split)
        chains = reader.chains_in(split)
        assert len(view) == len(chains)
        total += len(view)
        for index, chain in enumerate(chains):
            item = view[index]
            assert item["labels"].tolist() == [float(name in chain["order"]) for name in EFFECTS]
            dry_id, target_id = view.pairs[index]
            assert rows[dry_id]["applied"] == [] and rows[dry_id]["preset"] == chain["preset"]
            assert rows[target_id]["applied"] == list(chain["order"]) and rows[target_id]["is_target"]
    assert total == 64  # empty chains included


def test_views_work_with_a_dataloader(reader):
    import torch

    loader = torch.utils.data.DataLoader(SelectionSequences(reader, "train"), batch_size=4, num_workers=2)
    batch = next(iter(loader))
    assert batch["mel"].shape == (4, 5, 2, 128, 87) and batch["labels"].dtype == torch.int64


def test_unknown_split_and_effect(reader):
    with pytest.raises(ParameterError, match="Unknown split"):
        MultiLabelTargets(reader, "dev")
    with pytest.raises(ParameterError, match="no effect 'chorus'"):
        ParameterPairs(reader, "chorus", "train")


def test_broken_datasets_give_one_clear_sentence(dataset_dir, tmp_path):
    def copy() -> Path:
        target = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(dataset_dir, target)
        return target

    with pytest.raises(DatasetError, match="does not exist"):
        DatasetReader(tmp_path / "nowhere")
    broken = copy()
    (broken / "manifest.parquet").unlink()
    with pytest.raises(DatasetError, match="no manifest.parquet"):
        DatasetReader(broken)
    broken = copy()
    (broken / "manifest.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DatasetError, match="corrupt"):
        DatasetReader(broken)
    broken = copy()
    (broken / "shards" / "shard-00001.mel.npy").unlink()
    with pytest.raises(DatasetError, match="shard-00001.mel.npy' is missing"):
        DatasetReader(broken)
    broken = copy()
    metadata = json.loads((broken / "dataset.json").read_text())
    (broken / "dataset.json").write_text(json.dumps({**metadata, "format_version": 99}))
    with pytest.raises(DatasetError, match="format version 99"):
        DatasetReader(broken)
    (broken / "dataset.json").write_text(json.dumps({**metadata, "status": "incomplete"}))
    with pytest.raises(DatasetError, match="unfinished"):
        DatasetReader(broken)
    (broken / "dataset.json").write_text("{")
    with pytest.raises(DatasetError, match="corrupt"):
        DatasetReader(broken)

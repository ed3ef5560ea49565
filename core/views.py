"""Training views of a generated dataset as torch ``Dataset``s (one per model kind, see
``core/model_kinds.py``).

``DatasetReader`` validates a dataset directory and reads features from the
memory-mapped shards: a shard is opened (``np.load(mmap_mode="r")``) the first time one
of its rows is read, separately in each process, so a view costs no memory up front and
works in ``DataLoader`` workers. Views build small integer index tables from the
manifest and read two or more renders per item.

Feature arrays returned by views are float32: ``mel`` is the normalised dB mel
(``db_mel / top_db``), shape ``(..., n_mels, n_frames)``; ``mfcc`` is
``(..., n_mfcc, n_frames)``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from serumrnn.core.dataset import (
    DATASET_JSON,
    FORMAT_VERSION,
    MANIFEST,
    SPLIT_NAMES,
    shard_paths,
)
from serumrnn.core.errors import DatasetError, ParameterError
from serumrnn.core.model_kinds import IGNORE_INDEX, applied_before_steps, split_specs
from serumrnn.core.params import ParamSpec

try:  # views are torch Datasets; the reader itself works without torch
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover - torch is a dependency
    _TorchDataset = object  # type: ignore[assignment,misc]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class DatasetReader:
    """A validated dataset directory.

    Attributes
    ----------
    path: the directory.
    metadata: the parsed ``dataset.json``.
    effect_names: the rack's effects, in rack order.
    specs: effect name -> its ``ParamSpec`` tuple (from ``dataset.json``).
    manifest: the manifest as a ``pyarrow.Table``, one row per render, row ``i`` has
        ``render_id == i``.
    chains: one dict per chain (``chain_id``, ``preset``, ``order``, ``knobs``,
        ``split``, ``renders``: applied-effects tuple -> render id, including ``()``
        for the preset's dry render), in manifest order.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        self.metadata = self._load_metadata()
        config = self.metadata["config"]
        self.effect_names: tuple[str, ...] = tuple(config["effects"])
        self.specs: dict[str, tuple[ParamSpec, ...]] = {
            name: tuple(ParamSpec.from_json(spec) for spec in specs)
            for name, specs in self.metadata["effects"].items()
        }
        self.top_db = float(self.metadata["features"]["top_db"])
        self.manifest = self._load_manifest()
        self._shard_of = np.asarray(self.manifest.column("shard").to_numpy(), dtype=np.int64)
        self._row_of = np.asarray(self.manifest.column("row").to_numpy(), dtype=np.int64)
        self._check_shards()
        self.chains = self._index_chains()
        self._open: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # -- validation ----------------------------------------------------------------
    def _load_metadata(self) -> dict:
        path = self.path / DATASET_JSON
        if self.path.exists() and not self.path.is_dir():
            raise DatasetError(f"'{self.path}' is a file, not a dataset directory; give the folder made by serumrnn generate.")
        if not self.path.is_dir():
            raise DatasetError(f"Dataset directory '{self.path}' does not exist; run serumrnn generate first.")
        if not path.exists():
            raise DatasetError(f"'{self.path}' holds no dataset.json; give a directory made by serumrnn generate.")
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError
        except (OSError, ValueError):
            raise DatasetError(f"'{path}' is corrupt (not JSON); generate the dataset again.") from None
        if data.get("format_version") != FORMAT_VERSION:
            raise DatasetError(
                f"Dataset '{self.path}' has format version {data.get('format_version')!r}, this serumrnn reads "
                f"version {FORMAT_VERSION}; generate it again with this version."
            )
        if data.get("status") != "complete":
            raise DatasetError(
                f"Dataset '{self.path}' is unfinished; rerun the same serumrnn generate command to complete it."
            )
        for key in ("config", "effects", "features", "fingerprint", "counts"):
            if key not in data:
                raise DatasetError(f"'{path}' lacks {key!r}; generate the dataset again.")
        # Effect names become file and folder names of models, logs and checkpoints:
        # a name like "../x" must not steer training's writes out of the bundle.
        names = [*data["config"].get("effects", []), *data["effects"]]
        unsafe = [name for name in names if not isinstance(name, str) or not _SAFE_NAME.match(name)]
        if unsafe:
            raise DatasetError(f"'{path}' names an invalid effect {unsafe[0]!r}; generate the dataset again.")
        return data

    def _load_manifest(self):
        import pyarrow.parquet as pq

        path = self.path / MANIFEST
        if not path.exists():
            raise DatasetError(f"Dataset '{self.path}' has no {MANIFEST}; rerun serumrnn generate to rebuild it.")
        try:
            table = pq.read_table(path)
        except Exception:  # pyarrow raises several types for a damaged file
            raise DatasetError(f"'{path}' is corrupt; rerun serumrnn generate to rebuild it.") from None
        expected = self.metadata["counts"]["renders"]
        if table.num_rows != expected or not np.array_equal(
            table.column("render_id").to_numpy(), np.arange(table.num_rows)
        ):
            raise DatasetError(f"'{path}' does not match dataset.json; rerun serumrnn generate to rebuild it.")
        return table

    def _check_shards(self) -> None:
        """Every shard the manifest names exists, and its arrays (opened as memory maps:
        only the headers are read) hold the rows the manifest points at. A truncated or
        foreign array (an object array would need unpickling) is refused here, not
        halfway through a training run."""
        for shard in np.unique(self._shard_of):
            for path in shard_paths(self.path, f"shard-{int(shard):05d}").values():
                if not path.exists():
                    raise DatasetError(
                        f"Shard file '{path}' is missing; rerun the same serumrnn generate command to restore it."
                    )
            mel, mfcc = self._map_shard(int(shard))  # checked, then closed: views open shards lazily
            rows = self._row_of[self._shard_of == shard]
            if (mel.dtype != np.float16 or mfcc.dtype != np.float16 or mel.ndim != 3 or mfcc.ndim != 3
                    or rows.min() < 0 or rows.max() >= min(mel.shape[0], mfcc.shape[0])):
                raise DatasetError(
                    f"Shard 'shard-{int(shard):05d}' of dataset '{self.path}' does not hold the rows its manifest "
                    "names; rerun serumrnn generate in a new directory."
                )

    # -- structure -----------------------------------------------------------------
    def _index_chains(self) -> list[dict]:
        columns = {
            name: self.manifest.column(name).to_pylist()
            for name in ("preset", "chain_id", "chain", "applied", "knobs", "split")
        }
        chains: dict[str, dict] = {}
        dry: dict[str, int] = {}
        for render_id, chain_key in enumerate(columns["chain_id"]):
            applied = tuple(columns["applied"][render_id])
            entry = chains.get(chain_key)
            if entry is None:
                entry = chains[chain_key] = {
                    "chain_id": chain_key,
                    "preset": columns["preset"][render_id],
                    "order": tuple(columns["chain"][render_id]),
                    "knobs": json.loads(columns["knobs"][render_id]),
                    "split": columns["split"][render_id],
                    "renders": {},
                }
            entry["renders"][applied] = render_id
            if not applied:
                dry[entry["preset"]] = render_id
        for entry in chains.values():
            # Every chain's empty sub-chain is its preset's shared dry render.
            entry["renders"].setdefault((), dry[entry["preset"]])
        return list(chains.values())

    def chains_in(self, split: str) -> list[dict]:
        if split not in SPLIT_NAMES:
            raise ParameterError(f"Unknown split {split!r}; choose one of {', '.join(SPLIT_NAMES)}.")
        return [chain for chain in self.chains if chain["split"] == split]

    def target_id(self, chain: Mapping) -> int:
        return chain["renders"][tuple(chain["order"])]

    # -- features --------------------------------------------------------------------
    def _map_shard(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        paths = shard_paths(self.path, f"shard-{shard:05d}")
        try:
            return (
                np.load(paths["mel"], mmap_mode="r", allow_pickle=False),
                np.load(paths["mfcc"], mmap_mode="r", allow_pickle=False),
            )
        except (OSError, ValueError):
            raise DatasetError(
                f"Shard '{paths['mel'].parent}/shard-{shard:05d}' is missing or corrupt; rerun serumrnn generate."
            ) from None

    def _shard_arrays(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        if shard not in self._open:
            self._open[shard] = self._map_shard(shard)
        return self._open[shard]

    def features(self, render_ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features of renders, read from the memory maps.

        Returns
        -------
        mel: float32, shape ``(n, n_mels, n_frames)``, normalised dB mel.
        mfcc: float32, shape ``(n, n_mfcc, n_frames)``.
        """
        ids = np.asarray(render_ids, dtype=np.int64).reshape(-1)
        mels, mfccs = [], []
        for render_id in ids:
            mel, mfcc = self._shard_arrays(int(self._shard_of[render_id]))
            row = int(self._row_of[render_id])
            mels.append(mel[row])
            mfccs.append(mfcc[row])
        if not mels:
            settings = self.metadata["features"]
            frames = 1 + int(round(settings["duration_s"] * settings["sample_rate"])) // settings["hop_length"]
            return (np.zeros((0, settings["n_mels"], frames), np.float32),
                    np.zeros((0, settings["n_mfcc"], frames), np.float32))
        return np.stack(mels).astype(np.float32), np.stack(mfccs).astype(np.float32)

    def __getstate__(self) -> dict:
        # Memory maps are reopened lazily in each process (DataLoader workers).
        return {**self.__dict__, "_open": {}}

    def __len__(self) -> int:
        return self.manifest.num_rows


class ParameterPairs(_TorchDataset):
    """Parameter-model data for one effect: every chain containing ``effect`` paired
    with each of its sub-chain renders that lack ``effect`` (input), the full chain
    being the target.

    Item: ``mel`` float32 ``(2, n_mels, n_frames)`` [input, target]; ``mfcc`` float32
    ``(2, n_mfcc, n_frames)``; ``continuous`` float32 ``(n_continuous,)`` the effect's
    sampled continuous knobs in ``continuous_specs`` order; ``categorical`` int64
    ``(n_categorical,)`` class indices in ``categorical_specs`` order.
    """

    def __init__(self, reader: DatasetReader, effect: str, split: str = "train") -> None:
        if effect not in reader.effect_names:
            raise ParameterError(
                f"Dataset '{reader.path}' has no effect {effect!r}; its effects are {', '.join(reader.effect_names)}."
            )
        self.reader = reader
        self.effect = effect
        self.split = split
        self.continuous_specs, self.categorical_specs = (tuple(specs) for specs in split_specs(reader.specs[effect]))
        pairs, continuous, categorical = [], [], []
        for chain in reader.chains_in(split):
            if effect not in chain["order"]:
                continue
            knobs = chain["knobs"][effect]
            target = reader.target_id(chain)
            for applied, render_id in chain["renders"].items():
                if effect in applied:
                    continue
                pairs.append((render_id, target))
                continuous.append([knobs[spec.name] for spec in self.continuous_specs])
                categorical.append([spec.class_index(knobs[spec.name]) for spec in self.categorical_specs])
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(len(pairs), 2)
        self.continuous = np.asarray(continuous, dtype=np.float32).reshape(len(pairs), len(self.continuous_specs))
        self.categorical = np.asarray(categorical, dtype=np.int64).reshape(len(pairs), len(self.categorical_specs))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        mel, mfcc = self.reader.features(self.pairs[index])
        return {
            "mel": mel,
            "mfcc": mfcc,
            "continuous": self.continuous[index].copy(),
            "categorical": self.categorical[index].copy(),
        }


class SelectionSequences(_TorchDataset):
    """Effect-selection sequences: one item per chain with at least one effect.

    Step ``t`` (``0 <= t < k``) has input = the render after the chain's first ``t``
    effects (``t = 0``: dry) and target = the full chain; ``applied`` is
    ``[start, effect_1 .. effect_E]`` (rack order; step 0 is ``start``, step ``t`` marks
    the chain's first ``t`` effects: ``applied_before_steps``) and the label
    is the rack index of the chain's effect ``t + 1``. Sequences are padded to ``E``
    steps (zeros, label ``-100``).

    Item: ``mel`` float32 ``(E, 2, n_mels, n_frames)``; ``mfcc`` float32
    ``(E, 2, n_mfcc, n_frames)``; ``applied`` float32 ``(E, E + 1)``; ``labels``
    int64 ``(E,)``; ``length`` int64 scalar ``k``.
    """

    def __init__(self, reader: DatasetReader, split: str = "train") -> None:
        self.reader = reader
        self.split = split
        n_effects = len(reader.effect_names)
        self.n_steps = n_effects
        position = {name: index for index, name in enumerate(reader.effect_names)}
        self.sequences: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = []
        for chain in reader.chains_in(split):
            order = chain["order"]
            if not order:
                continue
            target = reader.target_id(chain)
            inputs = np.array([chain["renders"][order[:step]] for step in range(len(order))], dtype=np.int64)
            indices = [position[name] for name in order]
            applied = applied_before_steps(indices, n_effects, len(order), rows=n_effects)
            labels = np.full(n_effects, IGNORE_INDEX, dtype=np.int64)
            labels[: len(order)] = indices
            self.sequences.append((inputs, np.int64(target), applied, labels, len(order)))

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict:
        inputs, target, applied, labels, length = self.sequences[index]
        ids = np.concatenate([inputs, [target]])
        mel, mfcc = self.reader.features(ids)
        mel_steps = np.zeros((self.n_steps, 2, *mel.shape[1:]), dtype=np.float32)
        mfcc_steps = np.zeros((self.n_steps, 2, *mfcc.shape[1:]), dtype=np.float32)
        mel_steps[:length, 0], mel_steps[:length, 1] = mel[:length], mel[length]
        mfcc_steps[:length, 0], mfcc_steps[:length, 1] = mfcc[:length], mfcc[length]
        return {
            "mel": mel_steps,
            "mfcc": mfcc_steps,
            "applied": applied.copy(),
            "labels": labels.copy(),
            "length": np.int64(length),
        }


class MultiLabelTargets(_TorchDataset):
    """Multi-label data for the CNN baseline: one item per chain (the empty chain
    too), input = the preset's dry render, target = the full chain.

    Item: ``mel`` float32 ``(2, n_mels, n_frames)`` [dry, target]; ``mfcc`` float32
    ``(2, n_mfcc, n_frames)``; ``labels`` float32 ``(E,)``, 1 for each effect the
    target has (rack order).
    """

    def __init__(self, reader: DatasetReader, split: str = "train") -> None:
        self.reader = reader
        self.split = split
        position = {name: index for index, name in enumerate(reader.effect_names)}
        pairs, labels = [], []
        for chain in reader.chains_in(split):
            pairs.append((chain["renders"][()], reader.target_id(chain)))
            label = np.zeros(len(reader.effect_names), dtype=np.float32)
            label[[position[name] for name in chain["order"]]] = 1.0
            labels.append(label)
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(len(pairs), 2)
        self.labels = np.asarray(labels, dtype=np.float32).reshape(len(pairs), len(reader.effect_names))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        mel, mfcc = self.reader.features(self.pairs[index])
        return {"mel": mel, "mfcc": mfcc, "labels": self.labels[index].copy()}

"""Dataset generation (docs/design.md, "Data flow"): sampled effect chains, every
sub-chain rendered, features stored in memory-mappable shards with a parquet manifest.

Layout of a dataset directory::

    DIR/dataset.json              config, effect specs, feature settings, fingerprint, counts
    DIR/manifest.parquet          one row per render (written when every shard is done)
    DIR/shards/shard-00000.mel.npy    float16 (n, n_mels, n_frames): db_mel / top_db
    DIR/shards/shard-00000.mfcc.npy   float16 (n, n_mfcc, n_frames)
    DIR/shards/shard-00000.parquet    the shard's manifest rows (written last)
    DIR/.lock                     lock file held while a generator writes

What gets rendered: for each preset and each non-empty subset of the rack's effects,
``chains_per_combo`` chains (random order, sampled knobs, unique per preset and
subset); for each chain every sub-chain (same knobs, some effects removed, order
kept), i.e. ``2**k - 1`` renders for ``k`` effects. The empty sub-chain is the
preset's dry render: it is stored once per preset as the single chain of the empty
subset. Sub-chains are rendered along a prefix tree (each render is its parent's
audio through one more effect), so a chain of ``k`` effects costs ``2**k - 1``
effect applications.

Determinism: each chain draws from its own RNG seeded by ``(seed, preset, subset,
chain index)``; shards are planned from the config alone; each shard is written by one
worker with single-threaded BLAS. The bytes never depend on the worker count or backend.

Resumability: a shard's files are written under temporary names and renamed when
complete, its parquet last; a shard is finished iff its parquet exists (and its
arrays). A rerun keeps finished shards and redoes the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from serumrnn.core.errors import DatasetError, OutputError, ParameterError
from serumrnn.core.loudness import DEFAULT as DEFAULT_LOUDNESS, LoudnessConvention, convention_from_json
from serumrnn.core.params import sample_knobs
from serumrnn.core.runtime import (
    ProgressReporter, WorkerPool, file_lock, progress_reporter, report_from_worker, single_threaded, write_json_atomic,
)

FORMAT_VERSION = 1
# Renders per shard: large enough that per-shard overhead vanishes, small enough
# that a kill loses little work and two workers share even a one-preset dataset.
RENDERS_PER_SHARD = 2048
# Clips per batched feature extraction (fits the CPU cache best, measured).
FEATURE_BATCH = 32
SPLITS: tuple[tuple[str, float], ...] = (("train", 0.85), ("validation", 0.10), ("test", 0.05))
SPLIT_NAMES = tuple(name for name, _ in SPLITS)
# Tries to draw a chain not drawn before for the same preset and subset.
MAX_SAMPLING_ATTEMPTS = 1000
# The synth family that --varied draws generated presets from.
GENERATED_FAMILY = "varied"
GROUP_ALL = "all"

DATASET_JSON = "dataset.json"
MANIFEST = "manifest.parquet"
SHARD_DIR = "shards"
LOCK_FILE = ".lock"


# --- chains --------------------------------------------------------------------------


@attrs.frozen
class SampledChain:
    """One sampled chain: ``order`` is the effect names in processing order and
    ``knobs`` maps each of them to all its knob values (sampled or default)."""

    preset: str
    subset_mask: int
    index: int
    order: tuple[str, ...]
    knobs: Mapping[str, Mapping[str, float]]

    @property
    def chain_id(self) -> str:
        return chain_id(self.preset, self.subset_mask, self.index)


def chain_id(preset: str, subset_mask: int, index: int) -> str:
    """Stable, readable id of a chain: ``"saw/s13/c0004"``."""
    return f"{preset}/s{subset_mask:02d}/c{index:04d}"


def subset_effects(subset_mask: int, effect_names: Sequence[str]) -> tuple[str, ...]:
    """Effects of a subset (bit ``i`` = ``effect_names[i]``), in rack order."""
    return tuple(name for bit, name in enumerate(effect_names) if subset_mask >> bit & 1)


def subset_name(subset_mask: int, effect_names: Sequence[str]) -> str:
    """``"compressor+eq"``; ``"none"`` for the empty subset."""
    return "+".join(subset_effects(subset_mask, effect_names)) or "none"


def chain_rng(seed: int, preset: str, subset_mask: int, index: int) -> np.random.Generator:
    """The RNG of one chain, derived from its coordinates only (never from a worker)."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(preset.encode()), subset_mask, index]))


def sample_chains(rack, seed: int, preset: str, subset_mask: int, count: int) -> list[SampledChain]:
    """``count`` distinct chains of one preset and effect subset, chain ``i`` drawn
    from ``chain_rng(seed, preset, subset_mask, i)`` (redrawn from the same stream
    if it repeats an earlier chain)."""
    effects = subset_effects(subset_mask, rack.effect_names)
    seen: set[tuple] = set()
    chains = []
    for index in range(count):
        rng = chain_rng(seed, preset, subset_mask, index)
        for _ in range(MAX_SAMPLING_ATTEMPTS):
            order = tuple(effects[i] for i in rng.permutation(len(effects)))
            knobs = {name: sample_knobs(rack.effect(name).params, rng) for name in order}
            key = (order, tuple(tuple(knobs[name].items()) for name in order))
            if key not in seen:
                break
        else:
            raise DatasetError(
                f"Could not draw {count} distinct chains for preset {preset} and effects "
                f"{subset_name(subset_mask, rack.effect_names)}; lower --chains-per-combo."
            )
        seen.add(key)
        chains.append(SampledChain(preset, subset_mask, index, order, knobs))
    return chains


def split_of(chain: str, seed: int) -> str:
    """Train/validation/test split of a chain id: a hash of the chain id and the seed
    mapped to [0, 1) and cut at 0.85 and 0.95. Every render of a chain shares it."""
    digest = hashlib.sha256(f"{seed}:{chain}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2.0**64
    edge = 0.0
    for name, ratio in SPLITS:
        edge += ratio
        if position < edge:
            return name
    return SPLITS[-1][0]


def sub_chain_masks(n_effects: int) -> range:
    """Masks over chain positions of the sub-chains of a ``n_effects`` chain, without
    the empty one. Mask ``m``'s parent (one effect fewer) is ``m`` without its highest
    bit, which is always a smaller mask: iterating in order renders parents first."""
    return range(1, 1 << n_effects)


# --- config and plan ---------------------------------------------------------------


def resolve_presets(rack, group: str, presets: Sequence[str] | None = None) -> tuple[str, ...]:
    """Preset names of ``group`` (``all`` = every preset), optionally restricted."""
    groups = rack.synth.groups()
    if group in rack.synth.families:  # generated presets only: ``varied`` names them
        names: tuple[str, ...] = ()
    elif group == GROUP_ALL:
        names = tuple(preset.name for preset in rack.synth.presets)
    elif group in groups:
        names = groups[group]
    else:
        raise ParameterError(
            f"Rack {rack.name} has no preset group {group!r}; choose one of "
            f"{', '.join([*groups, GROUP_ALL, *rack.synth.families])}."
        )
    if presets is None:
        return names
    for name in presets:
        if name not in names:
            raise ParameterError(f"Preset {name!r} is not in group {group}; its presets are {', '.join(names)}.")
    return tuple(name for name in names if name in set(presets))


def dataset_metadata(
    rack, *, group: str, presets: Sequence[str], chains_per_combo: int, seed: int, renders_per_shard: int,
    varied_chains_per_combo: int | None = None, generated_presets: int = 0,
    loudness: LoudnessConvention = DEFAULT_LOUDNESS,
) -> dict:
    """Everything that defines a dataset's bytes, plus its fingerprint."""
    from serumrnn.core.features import DEFAULT_SETTINGS

    config = {
        "rack": rack.name,
        "group": group,
        "presets": list(presets),
        "chains_per_combo": int(chains_per_combo),
        # The last ``generated_presets`` presets are generated ones, with their own chain count.
        "generated_presets": int(generated_presets),
        "varied_chains_per_combo": int(chains_per_combo if varied_chains_per_combo is None else varied_chains_per_combo),
        "loudness": loudness.to_json(),
        "seed": int(seed),
        "renders_per_shard": int(renders_per_shard),
        "effects": list(rack.effect_names),
        "sample_rate": int(rack.sample_rate),
        "duration_s": float(rack.duration_s),
    }
    effects = {name: [spec.to_json() for spec in rack.effect(name).params] for name in rack.effect_names}
    features = DEFAULT_SETTINGS.to_json()
    defining = json.dumps({"config": config, "effects": effects, "features": features}, sort_keys=True)
    return {
        "format": "serumrnn-dataset",
        "format_version": FORMAT_VERSION,
        "config": config,
        "effects": effects,
        "features": features,
        "fingerprint": hashlib.sha256(defining.encode()).hexdigest(),
    }


@attrs.frozen
class ShardPlan:
    """A unit of work: chains ``[first, stop)`` of each ``(subset_mask, first, stop)``
    in ``units``, all of one preset; rows get render ids from ``first_render_id``."""

    index: int
    preset: str
    units: tuple[tuple[int, int, int], ...]
    first_render_id: int
    n_renders: int

    @property
    def stem(self) -> str:
        return f"shard-{self.index:05d}"

    def to_json(self) -> dict:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> "ShardPlan":
        return cls(**{**data, "units": tuple(tuple(unit) for unit in data["units"])})


def chain_count(config: Mapping, preset: str, subset_mask: int) -> int:
    """Chains drawn for one preset and effect subset (one dry chain for the empty subset;
    generated patches may get fewer chains each than the presets, as there are many more)."""
    if subset_mask == 0:
        return 1
    generated = config["presets"][len(config["presets"]) - int(config.get("generated_presets", 0)):]
    if preset in generated:
        return int(config["varied_chains_per_combo"])
    return int(config["chains_per_combo"])


def renders_per_chain(subset_mask: int) -> int:
    """Renders stored for one chain of a subset (the dry render for the empty one)."""
    return max(1, (1 << bin(subset_mask).count("1")) - 1)


def plan_shards(config: Mapping) -> list[ShardPlan]:
    """Split the work into shards, from the config alone: per preset, the dry chain and
    then every subset's chains in subset order, packed into shards of at most
    ``renders_per_shard`` renders (more only if one chain alone is larger)."""
    n_subsets = 1 << len(config["effects"])
    limit = int(config["renders_per_shard"])
    shards: list[ShardPlan] = []
    next_render_id = 0

    def close(preset: str, units: list[list[int]], n_renders: int) -> None:
        nonlocal next_render_id
        shards.append(ShardPlan(len(shards), preset, tuple(map(tuple, units)), next_render_id, n_renders))
        next_render_id += n_renders

    for preset in config["presets"]:
        units: list[list[int]] = []
        n_renders = 0
        for mask in range(n_subsets):
            count = chain_count(config, preset, mask)
            cost = renders_per_chain(mask)
            for index in range(count):
                if units and n_renders + cost > limit:
                    close(preset, units, n_renders)
                    units, n_renders = [], 0
                if units and units[-1][0] == mask and units[-1][2] == index:
                    units[-1][2] = index + 1
                else:
                    units.append([mask, index, index + 1])
                n_renders += cost
        if units:
            close(preset, units, n_renders)
    return shards


# --- files ---------------------------------------------------------------------------


def shard_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    folder = Path(out_dir) / SHARD_DIR
    return {
        "mel": folder / f"{stem}.mel.npy",
        "mfcc": folder / f"{stem}.mfcc.npy",
        "manifest": folder / f"{stem}.parquet",
    }


def shard_finished(out_dir: Path, stem: str) -> bool:
    """True iff every final file of the shard exists (temporaries never count)."""
    return all(path.exists() for path in shard_paths(out_dir, stem).values())


def _temp_path(path: Path) -> Path:
    # Leading dot and pid: never mistaken for a final file, unique per writer.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_metadata(out_dir: Path, data: Mapping) -> None:
    # ".tmp": a temporary left by a killed run is cleared by the next one
    write_json_atomic(out_dir / DATASET_JSON, data, sort_keys=True, suffix=".tmp")


def _disk_error(exc: OSError, where: Path) -> OutputError:
    import errno

    what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return OutputError(f"Could not write the dataset in '{where}' ({what}); free space or choose another --out.")


def size_on_disk(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def exclusive_lock(out_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``DIR/.lock`` exclusively; refuse at once if another generator holds it.
    The OS drops the lock when the holder dies, even by SIGKILL."""
    return file_lock(Path(out_dir) / LOCK_FILE, busy=DatasetError(
        f"Another serumrnn generate is writing '{out_dir}'; wait for it to finish or choose another --out."))


# --- one shard -------------------------------------------------------------------------


def _manifest_schema(effects: Mapping[str, Sequence[Mapping]]):
    import pyarrow as pa

    fields = [
        ("render_id", pa.int64()),
        ("preset", pa.string()),
        ("chain_id", pa.string()),
        ("chain_index", pa.int32()),
        ("subset", pa.string()),
        ("chain", pa.list_(pa.string())),
        ("applied", pa.list_(pa.string())),
        ("n_applied", pa.int8()),
        ("is_target", pa.bool_()),
        ("knobs", pa.string()),
    ]
    # One float column per knob ("effect.knob"): the chain's value, null if the
    # effect is not in the chain. Same values as the JSON column, handy for scripts.
    fields += [(f"{effect}.{spec['name']}", pa.float64()) for effect, specs in effects.items() for spec in specs]
    fields += [("shard", pa.int32()), ("row", pa.int32()), ("split", pa.string()), ("seed", pa.int64())]
    return pa.schema(fields)


_worker_state: dict[str, Any] = {}


def _worker_rack(rack_name: str):
    """The rack of this process (built once per worker process)."""
    racks = _worker_state.setdefault("racks", {})
    if rack_name not in racks:
        from serumrnn.core.registry import get_plugin_manager

        racks[rack_name] = get_plugin_manager().rack(rack_name)
    return racks[rack_name]


def render_shard(
    out_dir: str | os.PathLike,
    metadata: Mapping,
    shard_json: Mapping,
    report: Callable[[int], None] | None = None,
) -> int:
    """Render, featurise and write one shard; returns its number of renders.

    ``report(n)`` is called as renders complete (progress). Files appear under their
    final names only once complete, the manifest last.
    """
    with single_threaded():
        return _render_shard(Path(out_dir), metadata, ShardPlan.from_json(shard_json), report or (lambda n: None))


def _render_shard(out_dir: Path, metadata: Mapping, shard: ShardPlan, report: Callable[[int], None]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from serumrnn.core.features import FeatureSettings, LibrosaFeatureExtractor

    config = metadata["config"]
    seed = int(config["seed"])
    rack = _worker_rack(config["rack"])
    settings = FeatureSettings.from_json(metadata["features"])
    extractor = LibrosaFeatureExtractor(settings)
    effect_names = list(config["effects"])
    sample_rate = rack.sample_rate

    mel = np.empty((shard.n_renders, settings.n_mels, settings.n_frames), dtype=np.float16)
    mfcc = np.empty((shard.n_renders, settings.n_mfcc, settings.n_frames), dtype=np.float16)
    # The loudness convention (core/loudness.py): the source is levelled before the chain,
    # every render after it; the prefix tree below keeps the unlevelled chain audio.
    loudness = convention_from_json(config.get("loudness"), where="This dataset")
    dry = rack.level_source(shard.preset, loudness)
    batch = np.empty((FEATURE_BATCH, dry.shape[0]), dtype=np.float32)
    batch_fill = 0
    rows_done = 0

    def flush() -> None:
        nonlocal batch_fill, rows_done
        if batch_fill == 0:
            return
        db, cepstra = extractor.extract_batch(batch[:batch_fill])
        mel[rows_done : rows_done + batch_fill] = db / settings.top_db
        mfcc[rows_done : rows_done + batch_fill] = cepstra
        rows_done += batch_fill
        report(batch_fill)
        batch_fill = 0

    def add(audio: np.ndarray) -> None:
        nonlocal batch_fill
        batch[batch_fill] = loudness.apply(audio, sample_rate)
        batch_fill += 1
        if batch_fill == FEATURE_BATCH:
            flush()

    columns: dict[str, list] = {name: [] for name in _manifest_schema(metadata["effects"]).names}
    knob_columns = [(effect, spec["name"]) for effect, specs in metadata["effects"].items() for spec in specs]

    def add_row(chain: SampledChain, applied: tuple[str, ...], is_target: bool) -> None:
        row = len(columns["render_id"])
        columns["render_id"].append(shard.first_render_id + row)
        columns["preset"].append(chain.preset)
        columns["chain_id"].append(chain.chain_id)
        columns["chain_index"].append(chain.index)
        columns["subset"].append(subset_name(chain.subset_mask, effect_names))
        columns["chain"].append(list(chain.order))
        columns["applied"].append(list(applied))
        columns["n_applied"].append(len(applied))
        columns["is_target"].append(is_target)
        columns["knobs"].append(chain_knobs_json(chain))
        for effect, knob in knob_columns:
            columns[f"{effect}.{knob}"].append(chain.knobs[effect][knob] if effect in chain.knobs else None)
        columns["shard"].append(shard.index)
        columns["row"].append(row)
        columns["split"].append(split_of(chain.chain_id, seed))
        columns["seed"].append(seed)

    for subset_mask, first, stop in shard.units:
        count = chain_count(config, shard.preset, subset_mask)
        for chain in sample_chains(rack, seed, shard.preset, subset_mask, count)[first:stop]:
            if not chain.order:
                add_row(chain, (), True)
                add(dry)
                continue
            # Prefix tree over chain positions: audio[m] = audio[parent(m)] + one effect.
            k = len(chain.order)
            audio: list[np.ndarray | None] = [None] * (1 << k)
            audio[0] = dry
            for m in sub_chain_masks(k):
                last = m.bit_length() - 1
                name = chain.order[last]
                audio[m] = rack.effect(name).process(audio[m & ~(1 << last)], sample_rate, chain.knobs[name])
                applied = tuple(chain.order[i] for i in range(k) if m >> i & 1)
                add_row(chain, applied, m == (1 << k) - 1)
                add(audio[m])
    flush()
    if rows_done != shard.n_renders:  # the plan and the sampler disagree: a bug, not user input
        raise RuntimeError(f"shard {shard.index} holds {rows_done} renders, planned {shard.n_renders}")

    paths = shard_paths(out_dir, shard.stem)
    temps = {key: _temp_path(path) for key, path in paths.items()}
    try:
        for key, array in (("mel", mel), ("mfcc", mfcc)):
            with open(temps[key], "wb") as handle:
                np.save(handle, array, allow_pickle=False)
        table = pa.table(columns, schema=_manifest_schema(metadata["effects"]))
        pq.write_table(table, temps["manifest"])
        # The manifest is renamed last: its presence marks the shard finished.
        for key in ("mel", "mfcc", "manifest"):
            os.replace(temps[key], paths[key])
    except OSError as exc:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise _disk_error(exc, out_dir) from None
    return rows_done


def chain_knobs_json(chain: SampledChain) -> str:
    """``{"eq": {"frequency": 0.71, ...}, ...}`` in chain order (floats round-trip)."""
    return json.dumps({name: dict(chain.knobs[name]) for name in chain.order})


# --- running shards ----------------------------------------------------------------------

# Imported once by the forkserver so that each worker starts warm.
_WORKER_PRELOAD = ("serumrnn.core.dataset", "serumrnn.core.features", "serumrnn.core.registry", "librosa",
                   "scipy.fft", "scipy.signal", "pyarrow.parquet", "pedalboard")


def _pool_task(task: tuple[str, Mapping, Mapping]) -> tuple[int, int]:
    out_dir, metadata, shard_json = task
    return shard_json["index"], render_shard(out_dir, metadata, shard_json, report_from_worker)


def _ray_task(out_dir: str, metadata: Mapping, shard_json: Mapping) -> tuple[int, int]:
    return shard_json["index"], render_shard(out_dir, metadata, shard_json)


def _run_in_process(out_dir, metadata, shards, advance) -> None:
    for shard in shards:
        render_shard(out_dir, metadata, shard.to_json(), advance)


def _run_process_pool(out_dir, metadata, shards, workers, advance) -> None:
    with WorkerPool(workers, preload=_WORKER_PRELOAD) as pool:
        pool.run(_pool_task, [(str(out_dir), metadata, shard.to_json()) for shard in shards], progress=advance)


def _run_ray(out_dir, metadata, shards, address, workers, advance) -> None:
    try:
        import ray
    except ImportError:
        raise DatasetError(
            "Ray is not installed; install serumrnn[distributed] (pip install 'serumrnn[distributed]') "
            "or leave out --ray-address."
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        try:
            if address == "local":
                ray.init(num_cpus=workers, **options)
            else:
                ray.init(address=address, **options)
        except Exception as exc:  # ray raises many types for an unreachable cluster
            raise DatasetError(f"Could not connect to Ray at {address!r} ({exc}); check --ray-address.") from None
    try:
        task = ray.remote(num_cpus=1)(_ray_task)
        pending = {task.remote(str(out_dir), metadata, shard.to_json()): shard for shard in shards}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in done:
                pending.pop(ref)
                _, n_renders = ray.get(ref)
                advance(n_renders)
    finally:
        if started_here:
            ray.shutdown()


# --- the public entry point ---------------------------------------------------------------


def _read_metadata(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "fingerprint" not in data:
            raise ValueError("no fingerprint")
    except (OSError, ValueError):
        raise DatasetError(
            f"'{path}' is not a readable serumrnn dataset.json; delete the directory or choose another --out."
        ) from None
    return data


def _describe_config(config: Mapping) -> str:
    return (
        f"rack {config.get('rack')}, group {config.get('group')}, presets {','.join(config.get('presets', []))}, "
        f"{config.get('chains_per_combo')} chains per combo, seed {config.get('seed')}"
    )


def _check_directory(out_dir: Path, metadata: Mapping) -> dict | None:
    """The existing dataset.json if it matches ``metadata``; ``None`` for a fresh
    directory; a clear error for anything else."""
    path = out_dir / DATASET_JSON
    if not path.exists():
        foreign = [entry.name for entry in out_dir.iterdir() if entry.name not in (LOCK_FILE, SHARD_DIR)]
        if foreign:
            raise DatasetError(
                f"'{out_dir}' is not empty and holds no serumrnn dataset; choose an empty or new directory for --out."
            )
        return None
    existing = _read_metadata(path)
    if existing.get("fingerprint") != metadata["fingerprint"]:
        raise DatasetError(
            f"'{out_dir}' holds a dataset of another config ({_describe_config(existing.get('config', {}))}); "
            "choose another --out or delete that directory."
        )
    return existing


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    rack: str = "builtin",
    group: str,
    chains_per_combo: int,
    seed: int,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: ProgressReporter | bool | None = None,
    presets: Sequence[str] | None = None,
    renders_per_shard: int = RENDERS_PER_SHARD,
    varied: int = 0,
    varied_first_seed: int = 0,
    varied_chains_per_combo: int | None = None,
    loudness: LoudnessConvention = DEFAULT_LOUDNESS,
) -> dict:
    """Generate (or finish) a dataset in ``out_dir``.

    Parameters
    ----------
    out_dir: dataset directory (created if missing).
    rack: rack name.
    group: preset group, or ``"all"``.
    chains_per_combo: chains per preset and non-empty effect subset.
    seed: non-negative integer; the same seed gives the same bytes.
    workers: processes (default: all cores); 1 renders in this process.
    ray_address: run shards as Ray tasks instead (``"local"`` starts a local Ray).
    progress: where renders done are reported (``core.runtime.ProgressReporter``;
        ``None`` or ``False``: nowhere).
    presets: restrict the group to these presets (tests, small experiments).
    renders_per_shard: shard size (part of the config).
    varied, varied_first_seed: add this many generated patches ``varied-<seed>`` of the
        built-in synth, seeds from ``varied_first_seed`` on (group ``varied``: only them).
    varied_chains_per_combo: chains per generated patch and subset (default: as presets).
    loudness: the loudness convention renders are stored under (core/loudness.py).

    Worker processes re-import the calling script's ``__main__`` module, so a script
    that calls this with ``workers > 1`` must do so under ``if __name__ == "__main__":``
    (as with any multiprocessing code). With Ray, ``out_dir`` must be on a file system
    that every Ray node sees.

    Returns
    -------
    Summary: ``renders``, ``rendered_now``, ``shards``, ``size_bytes``, ``seconds``,
    ``renders_per_s``, ``skipped`` (True when the dataset was already complete),
    ``out_dir``, ``fingerprint``.
    """
    from serumrnn.core.registry import get_plugin_manager

    if isinstance(chains_per_combo, bool) or not isinstance(chains_per_combo, (int, np.integer)) or chains_per_combo < 1:
        raise ParameterError(f"--chains-per-combo is {chains_per_combo!r}; give a whole number of at least 1.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"--seed is {seed!r}; give a whole number of 0 or more.")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ParameterError(f"--workers is {workers!r}; give a whole number of at least 1.")
    if renders_per_shard < 1:
        raise ParameterError(f"renders_per_shard is {renders_per_shard!r}; give a whole number of at least 1.")
    for name, value in (("--varied", varied), ("--varied-first-seed", varied_first_seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ParameterError(f"{name} is {value!r}; give a whole number of 0 or more.")
    if varied_chains_per_combo is not None and (
            not isinstance(varied_chains_per_combo, (int, np.integer)) or varied_chains_per_combo < 1):
        raise ParameterError(f"--varied-chains-per-combo is {varied_chains_per_combo!r}; give a whole number of at least 1.")
    the_rack = get_plugin_manager().rack(rack)
    preset_names = resolve_presets(the_rack, group, presets)
    generated = the_rack.synth.generated_presets(GENERATED_FAMILY, int(varied_first_seed), int(varied)) if varied else ()
    if set(generated) & set(preset_names):
        raise ParameterError("--varied repeats presets of the group; use --group with presets, or --group varied.")
    preset_names = (*preset_names, *generated)
    if not preset_names:
        raise ParameterError(f"Group {group} holds no presets; give --varied N for that many generated patches.")
    metadata = dataset_metadata(
        the_rack, group=group, presets=preset_names, chains_per_combo=int(chains_per_combo), seed=int(seed),
        renders_per_shard=int(renders_per_shard), varied_chains_per_combo=varied_chains_per_combo,
        generated_presets=len(generated), loudness=loudness,
    )
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"--out '{out_dir}' is a file; give a directory.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(exc, out_dir) from None

    started = time.perf_counter()
    with exclusive_lock(out_dir):
        existing = _check_directory(out_dir, metadata)
        shards = plan_shards(metadata["config"])
        total = sum(shard.n_renders for shard in shards)
        try:
            (out_dir / SHARD_DIR).mkdir(exist_ok=True)
            if existing is None:
                _write_metadata(out_dir, {**metadata, "status": "incomplete"})
            # Temporaries of a killed run: we hold the lock, so nobody is writing them.
            for stale in (out_dir / SHARD_DIR).glob(".*.tmp"):
                stale.unlink()
            for stale in out_dir.glob(".*.tmp"):
                stale.unlink()
        except OSError as exc:
            raise _disk_error(exc, out_dir) from None

        pending = [shard for shard in shards if not shard_finished(out_dir, shard.stem)]
        complete = existing is not None and existing.get("status") == "complete" and (out_dir / MANIFEST).exists()
        if complete and not pending:
            return _summary(out_dir, metadata, total, 0, len(shards), time.perf_counter() - started, skipped=True)

        rendered_now = sum(shard.n_renders for shard in pending)
        with _render_progress(progress_reporter(progress), total, total - rendered_now) as advance:
            n_workers = min(workers or os.cpu_count() or 1, max(1, len(pending)))
            if not pending:
                pass  # every shard is there; only the manifest needs (re)writing
            elif ray_address:
                _run_ray(out_dir, metadata, pending, ray_address, workers, advance)
            elif n_workers == 1:
                _run_in_process(out_dir, metadata, pending, advance)
            else:
                _run_process_pool(out_dir, metadata, pending, n_workers, advance)
        _finalize(out_dir, metadata, shards)
        return _summary(out_dir, metadata, total, rendered_now, len(shards), time.perf_counter() - started)


@contextlib.contextmanager
def _render_progress(reporter: ProgressReporter, total: int, already_done: int) -> Iterator[Callable[[int], None]]:
    """``advance(n)`` for ``n`` more renders, reported with this run's renders per second
    (shards finished by an earlier run do not count towards the rate)."""
    task = reporter.task("rendering", total, done=already_done, unit="renders")
    start = time.perf_counter()
    done_now = 0

    def advance(n: int) -> None:
        nonlocal done_now
        done_now += n
        task.advance(n, rate=done_now / max(time.perf_counter() - start, 1e-9))

    try:
        yield advance
    finally:
        task.close()


def _finalize(out_dir: Path, metadata: Mapping, shards: Sequence[ShardPlan]) -> None:
    """Concatenate the shard manifests and mark the dataset complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(shard_paths(out_dir, shard.stem)["manifest"]) for shard in shards]
    manifest = pa.concat_tables(tables)
    counts = {
        "renders": manifest.num_rows,
        "shards": len(shards),
        "chains": len(set(manifest.column("chain_id").to_pylist())),
        "targets": sum(manifest.column("is_target").to_pylist()),
    }
    try:
        temp = _temp_path(out_dir / MANIFEST)
        pq.write_table(manifest, temp)
        os.replace(temp, out_dir / MANIFEST)
    except OSError as exc:
        raise _disk_error(exc, out_dir) from None
    _write_metadata(out_dir, {**metadata, "status": "complete", "counts": counts})


def _summary(out_dir, metadata, total, rendered_now, n_shards, seconds, skipped=False) -> dict:
    return {
        "out_dir": str(out_dir),
        "renders": total,
        "rendered_now": rendered_now,
        "shards": n_shards,
        "size_bytes": size_on_disk(out_dir),
        "seconds": seconds,
        "renders_per_s": rendered_now / seconds if seconds > 0 else 0.0,
        "skipped": skipped,
        "fingerprint": metadata["fingerprint"],
    }

"""Training loops: parameter models and selectors into a bundle.

- Adam, learning rate 1e-3; batch 128 (parameter models, CNN baseline) or 32
  (sequence selectors); up to 100 epochs; early stopping with patience 8 on the
  validation loss; the best weights are restored at the end.
- Losses: parameter models sum the MSE of the continuous knobs and the cross-entropy of
  each categorical knob with equal weight; selectors use cross-entropy over the next
  effect at every valid step; the CNN baseline binary cross-entropy per effect.
- Reproducible on CPU: the seed fixes the initial weights, and every epoch reseeds the
  shuffling and dropout from ``(seed, epoch)``, so a resumed run continues exactly as an
  uninterrupted one would.
- Checkpoints go to ``<bundle>/.checkpoints/<model>/`` after every epoch: model, best
  model and Adam state as safetensors (moments and step counts), scalars and history as
  JSON. Nothing is pickled. The checkpoint is removed once the model is in the bundle.
- ``max_minutes`` stops a run (even mid-epoch, after a validation pass), keeps the best
  weights so far and records ``"stopped": "time limit"`` in the bundle.
- Device: CUDA when available (bf16 autocast, TF32), else CPU. Under ``torchrun`` with
  ``WORLD_SIZE > 1`` the model is wrapped in DistributedDataParallel (NCCL on CUDA, gloo
  on CPU), data is sharded with ``DistributedSampler``, losses and metrics are reduced
  over ranks, and rank 0 alone writes logs, checkpoints and the bundle.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from serumrnn.core.audio import atomic_output
from serumrnn.core.bundle import ModelBundle, param_model_name, selector_model_name, write_bytes_atomic
from serumrnn.core.errors import DatasetError, ParameterError
from serumrnn.core.features import FeatureSettings
from serumrnn.core.loudness import NONE as NONE_LOUDNESS, LoudnessConvention, convention_from_json
from serumrnn.core.runtime import SILENT, ProgressReporter, ProgressTask, progress_reporter, remove_stale_temporaries
from serumrnn.core.model_kinds import (
    PARAMS,
    SELECTOR_KINDS,
    Meter,
    ModelKind,
    ParameterKind,
    batch_on_device,
    model_kind_for,
)
from serumrnn.core.model_config import ModelConfig, model_config
from serumrnn.core.params import ParamSpec

CHECKPOINT_DIR = ".checkpoints"
LOG_DIR = "logs"


@attrs.define
class TrainOptions:
    """Knobs of a training run.

    Parameters
    ----------
    epochs: most epochs (the paper: 100).
    patience: epochs without a validation improvement before stopping (the paper: 8).
    batch_size: ``None`` takes the paper's (128 parameter models and CNN, 32 sequences).
    learning_rate: Adam's learning rate.
    max_minutes: wall-clock bound of this run; the best weights so far are kept.
    num_workers: DataLoader worker processes; ``None``: 0 on CPU (two cores are busy
        with the model), up to 8 on CUDA.
    seed: fixes initial weights, shuffling and dropout.
    device: ``None`` picks CUDA when available, else CPU.
    progress: where epoch progress and per-epoch lines go (``core.runtime.ProgressReporter``;
        ``None`` or ``False``: nowhere).
    resume: continue from a matching checkpoint of an interrupted run.
    float16: store the bundle's weights in half precision.
    max_batches_per_epoch: cap on training batches per epoch (tests, benchmarks).
    init_from: a bundle (folder or shipped name) whose model of the same name and
        architecture gives the starting weights (a warm start), instead of random ones.
    """

    epochs: int = 100
    patience: int = 8
    batch_size: int | None = None
    learning_rate: float = 1e-3
    max_minutes: float | None = None
    num_workers: int | None = None
    seed: int = 0
    device: str | None = None
    progress: ProgressReporter | bool | None = None
    resume: bool = True
    float16: bool = True
    max_batches_per_epoch: int | None = None
    init_from: str | None = None

    def check(self) -> None:
        if self.epochs < 1:
            raise ParameterError(f"--epochs is {self.epochs}; train for at least 1 epoch.")
        if self.patience < 1:
            raise ParameterError(f"Patience is {self.patience}; give at least 1 epoch.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ParameterError(f"Batch size is {self.batch_size}; give at least 1.")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ParameterError(f"--max-minutes is {self.max_minutes}; give a positive number of minutes.")
        if self.num_workers is not None and self.num_workers < 0:
            raise ParameterError(f"--workers is {self.num_workers}; give 0 or more.")
        if not self.learning_rate > 0:
            raise ParameterError(f"Learning rate is {self.learning_rate}; give a positive number.")
        if self.device is not None:
            pick_device(self.device)  # an unknown device is refused before the bundle folder is made




# -- distributed helpers -----------------------------------------------------------------


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _rank() -> int:
    return torch.distributed.get_rank() if _distributed() else 0


def _world_size() -> int:
    return torch.distributed.get_world_size() if _distributed() else 1


def _collective_device() -> torch.device:
    if _distributed() and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed() -> bool:
    """Join the process group when launched by ``torchrun`` with ``WORLD_SIZE > 1``.
    Returns True when training is distributed."""
    if _distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend=backend)
    # Leave the group before the interpreter is torn down: gloo's worker threads outliving
    # it abort the process ("terminate called without an active exception").
    atexit.register(_leave_process_group)
    return True


def _leave_process_group() -> None:
    if _distributed():
        torch.distributed.destroy_process_group()


def _all_reduce_sum(values: Sequence[float]) -> list[float]:
    if not _distributed():
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
    torch.distributed.all_reduce(tensor)
    return tensor.cpu().tolist()


def pick_device(requested: str | None = None) -> torch.device:
    """``requested``, else CUDA (this rank's GPU under torchrun) when available, else CPU."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ParameterError(f"Unknown device {requested!r}; use cpu or cuda.") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ParameterError("CUDA was requested but no GPU is available here; use --device cpu.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


# -- checkpoints (safetensors + JSON, never pickles) --------------------------------------


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    import safetensors.torch

    data = safetensors.torch.save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})
    with atomic_output(path, suffix=".safetensors") as temp:
        temp.write_bytes(data)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    import safetensors.torch

    return safetensors.torch.load(path.read_bytes())


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Adam state split into tensors (``state.<param>.<key>``) and JSON scalars."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for param_id, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"state.{param_id}.{key}"] = value
            else:
                scalars[f"state.{param_id}.{key}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()} for group in state["param_groups"]]
    return tensors, {"scalars": scalars, "param_groups": groups}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], info: Mapping) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(info["scalars"].items()):
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in group.items()} for group in info["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


class _Checkpoint:
    """Per-epoch checkpoint of one model: ``state.json`` is the commit point and names the
    epoch-stamped weight files, so a kill mid-write never mixes two epochs."""

    def __init__(self, folder: Path, identity: Mapping) -> None:
        self.folder = folder
        self.identity = json.loads(json.dumps(identity))

    def load(self) -> dict | None:
        state_file = self.folder / "state.json"
        if not state_file.exists():
            return None
        try:
            state = json.loads(state_file.read_text())
            if state.get("identity") != self.identity:
                return None
            state["model"] = _load_tensors(self.folder / state["model_file"])
            state["best"] = _load_tensors(self.folder / state["best_file"])
            state["optimizer_tensors"] = _load_tensors(self.folder / state["optimizer_file"])
        except Exception:
            return None  # a damaged checkpoint: start over rather than fail
        return state

    def save(self, epoch: int, model: nn.Module, best: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer,
             progress_state: Mapping) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        names = {"model_file": f"model-{epoch}.safetensors", "best_file": f"best-{epoch}.safetensors",
                 "optimizer_file": f"optimizer-{epoch}.safetensors"}
        _save_tensors(self.folder / names["model_file"], model.state_dict())
        _save_tensors(self.folder / names["best_file"], best)
        tensors, info = _optimizer_tensors(optimizer)
        _save_tensors(self.folder / names["optimizer_file"], tensors)
        state = {"identity": self.identity, "epoch": epoch, "optimizer": info, **names, **progress_state}
        with atomic_output(self.folder / "state.json", suffix=".json") as temp:
            temp.write_text(json.dumps(state))
        for old in self.folder.glob("*.safetensors"):
            if old.name not in names.values():
                old.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.folder.parent.rmdir()  # only when no other model is checkpointing


# -- the training loop -------------------------------------------------------------------


@attrs.frozen
class FitResult:
    """What ``fit`` returns: the best weights (already loaded into the model), the
    validation metrics at those weights, and how the run went."""

    metrics: dict
    history: list[dict]
    best_epoch: int
    epochs_run: int
    stopped: str
    seconds: float
    samples_per_s: float
    device: str


def _loader(dataset: Dataset, batch_size: int, *, shuffle: bool, generator: torch.Generator | None,
            num_workers: int, device: torch.device, seed: int) -> tuple[DataLoader, Any]:
    from torch.utils.data.distributed import DistributedSampler

    if _distributed():
        sampler: Any = DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        pin_memory=device.type == "cuda", persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None, generator=generator,
    )
    return loader, sampler


def _all_reduce_meter(meter: Meter) -> None:
    """Sum a validation pass's sums over the ranks (in a fixed key order on every rank)."""
    if _distributed():
        for key in sorted(meter.sums):
            tensor = meter.sums[key].to(_collective_device())
            torch.distributed.all_reduce(tensor)
            meter.sums[key] = tensor.cpu()


def _evaluate(task: ModelKind, model: nn.Module, loader: DataLoader, device: torch.device, autocast: Callable) -> Meter:
    meter = task.new_meter()
    model.eval()
    with torch.inference_mode(), autocast():
        for batch in loader:
            batch = batch_on_device(batch, device)
            task.measure(meter, task.forward(model, batch), batch)
    _all_reduce_meter(meter)
    return meter


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def fit(
    task: ModelKind,
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    *,
    options: TrainOptions,
    work_dir: Path | None = None,
    log_path: Path | None = None,
    identity: Mapping | None = None,
    title: str = "model",
) -> FitResult:
    """Train ``model`` on ``train_set`` with early stopping on ``val_set``.

    Parameters
    ----------
    task: the model's kind (``core/model_kinds.py``): its forward pass, loss and metrics.
    work_dir: checkpoint folder (resume); ``None`` keeps no checkpoint.
    log_path: where the per-epoch CSV log goes (rank 0).
    identity: what must match for a checkpoint to be resumed (task, size, data, seed).

    Returns
    -------
    ``FitResult``; the model holds the best weights.
    """
    options.check()
    if len(train_set) == 0 or len(val_set) == 0:
        raise DatasetError(f"The {title} training or validation split is empty; generate more chains.")
    distributed = init_distributed()
    device = pick_device(options.device)
    main = _rank() == 0
    report = progress_reporter(options.progress) if main else SILENT  # one rank reports
    if main and log_path:  # a run killed while writing its log left the write's temporary file
        remove_stale_temporaries(log_path)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    def autocast():
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    model.to(device)
    trained = model
    if distributed:
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.learning_rate)
    batch_size = options.batch_size or task.default_batch_size
    workers = options.num_workers if options.num_workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
    shuffle_generator = torch.Generator()
    train_loader, train_sampler = _loader(train_set, batch_size, shuffle=True, generator=shuffle_generator,
                                          num_workers=workers, device=device, seed=options.seed)
    val_loader, _ = _loader(val_set, batch_size * 2, shuffle=False, generator=None, num_workers=workers,
                            device=device, seed=options.seed)

    checkpoint = _Checkpoint(work_dir, {**(identity or {}), "batch_size": batch_size, "world_size": _world_size()}) if work_dir else None
    history: list[dict] = []
    best_state = _cpu_state(model)
    best_loss, best_epoch, bad_epochs, start_epoch, elapsed_before = math.inf, 0, 0, 0, 0.0
    if checkpoint and options.resume:
        saved = checkpoint.load()
        if saved is not None:
            model.load_state_dict(saved["model"])
            _restore_optimizer(optimizer, saved["optimizer_tensors"], saved["optimizer"])
            best_state = saved["best"]
            best_loss, best_epoch, bad_epochs = saved["best_loss"], saved["best_epoch"], saved["bad_epochs"]
            start_epoch, history, elapsed_before = saved["epoch"], saved["history"], saved["seconds"]
            report.note(f"{title}: resuming after epoch {start_epoch} (best validation loss {best_loss:.4f})")

    started = time.monotonic()
    deadline = started + options.max_minutes * 60 if options.max_minutes else None
    stopped = "early stopping" if bad_epochs >= options.patience else "max epochs"
    samples_total, train_seconds = 0, 0.0
    n_batches = len(train_loader) if options.max_batches_per_epoch is None else min(len(train_loader), options.max_batches_per_epoch)
    with _EpochProgress(report, title, n_batches) as bars:
        epoch = start_epoch
        while epoch < options.epochs and bad_epochs < options.patience:
            epoch += 1
            # Reseed per epoch, so a resumed run continues exactly like an uninterrupted one.
            shuffle_generator.manual_seed(options.seed * 1_000_003 + epoch)
            torch.manual_seed(options.seed * 1_000_003 + epoch + 7919 * _rank())
            if distributed:
                train_sampler.set_epoch(epoch)
            trained.train()
            epoch_start = time.monotonic()
            loss_sum, weight_sum, samples, timed_out = 0.0, 0, 0, False
            bars.start(epoch)
            for index, batch in enumerate(train_loader):
                if index >= n_batches:
                    break
                batch = batch_on_device(batch, device)
                with autocast():
                    loss = task.loss(task.forward(trained, batch), batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                weight = task.batch_weight(batch)
                loss_sum += float(loss.detach()) * weight
                weight_sum += weight
                samples += int(batch["mel"].shape[0])
                bars.advance(samples * _world_size() / max(time.monotonic() - epoch_start, 1e-9))
                if deadline is not None:
                    late = _all_reduce_sum([float(time.monotonic() > deadline)])[0] > 0
                    if late:
                        timed_out = True
                        break
            epoch_seconds = time.monotonic() - epoch_start
            bars.end()
            loss_sum, weight_sum, samples = _all_reduce_sum([loss_sum, weight_sum, samples])
            train_loss = loss_sum / max(weight_sum, 1)
            meter = _evaluate(task, model if not distributed else trained.module, val_loader, device, autocast)
            val_loss = task.metrics(meter)["validation_loss"]
            improved = val_loss < best_loss
            if improved:
                best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
                best_state = _cpu_state(model)
            else:
                bad_epochs += 1
            samples_total += int(samples)
            train_seconds += epoch_seconds
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "best_val_loss": best_loss,
                   "improved": improved, "samples_per_s": samples / max(epoch_seconds, 1e-9),
                   "epoch_seconds": epoch_seconds, "partial": timed_out}
            history.append(row)
            elapsed = time.monotonic() - started
            if main:
                if checkpoint:
                    checkpoint.save(epoch, model, best_state, optimizer, {
                        "best_loss": best_loss, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                        "history": history, "seconds": elapsed_before + elapsed,
                    })
                if log_path:
                    _write_log(log_path, history)
                eta = elapsed / max(epoch - start_epoch, 1) * (options.epochs - epoch)
                if deadline is not None:
                    eta = min(eta, max(deadline - time.monotonic(), 0.0))
                report.note(f"{title} {epoch:3d}/{options.epochs} train {train_loss:.4f} "
                            f"val {val_loss:.4f}{' *' if improved else '  '} "
                            f"{row['samples_per_s']:,.0f}/s {epoch_seconds:.0f}s ETA {_clock(eta)}")
            if timed_out:
                stopped = "time limit"
                break
            if bad_epochs >= options.patience:
                stopped = "early stopping"
    model.load_state_dict(best_state)
    meter = _evaluate(task, model, val_loader, device, autocast) if not distributed else _evaluate(
        task, trained.module, val_loader, device, autocast)
    metrics = task.metrics(meter)
    seconds = elapsed_before + time.monotonic() - started
    return FitResult(
        metrics=metrics, history=history, best_epoch=best_epoch, epochs_run=len(history), stopped=stopped,
        seconds=seconds, samples_per_s=samples_total / max(train_seconds, 1e-9), device=str(device),
    )


def _write_log(path: Path, history: Sequence[Mapping]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_bytes_atomic(path, text.getvalue().encode(), ".csv")


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _EpochProgress:
    """One transient progress task per epoch (batches, with samples per second); a task
    left open by an error or a time limit is closed on leaving the ``with`` block."""

    def __init__(self, reporter: ProgressReporter, title: str, n_batches: int) -> None:
        self.reporter, self.title, self.n_batches = reporter, title, n_batches
        self.task: ProgressTask | None = None

    def __enter__(self) -> "_EpochProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.end()

    def start(self, epoch: int) -> None:
        self.end()
        self.task = self.reporter.task(f"{self.title} epoch {epoch}", self.n_batches, unit="samples", transient=True)

    def advance(self, samples_per_s: float) -> None:
        if self.task is not None:
            self.task.advance(1, rate=samples_per_s)

    def end(self) -> None:
        if self.task is not None:
            self.task.close()
            self.task = None


# -- into a bundle -----------------------------------------------------------------------


@attrs.frozen
class BundleIdentity:
    """What a bundle is for: rack, effects (ordered, with specs), preset group, feature
    settings and the training data's fingerprint."""

    rack_name: str
    effects: dict[str, tuple[ParamSpec, ...]]
    preset_group: str
    feature_settings: FeatureSettings
    dataset_fingerprint: str = ""
    loudness: LoudnessConvention = NONE_LOUDNESS

    @property
    def effect_names(self) -> tuple[str, ...]:
        return tuple(self.effects)

    def bundle_kwargs(self) -> dict:
        return {"rack_name": self.rack_name, "effects": self.effects, "preset_group": self.preset_group,
                "feature_settings": self.feature_settings, "dataset_fingerprint": self.dataset_fingerprint,
                "loudness": self.loudness}

    @classmethod
    def from_dataset_meta(cls, meta: Mapping) -> "BundleIdentity":
        """From a dataset's parsed ``dataset.json``."""
        try:
            config = meta.get("config", {})
            order = config.get("effects") or list(meta["effects"])
            effects = {name: tuple(ParamSpec.from_json(s) for s in meta["effects"][name]) for name in order}
            return cls(
                rack_name=str(config.get("rack", meta.get("rack", ""))),
                effects=effects,
                preset_group=str(config.get("group", meta.get("group", ""))),
                feature_settings=FeatureSettings.from_json(meta["features"]),
                dataset_fingerprint=str(meta.get("fingerprint", "")),
                loudness=convention_from_json(config.get("loudness"), where="This dataset"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"The dataset description lacks or garbles {exc}; regenerate the dataset.") from None


def train_into_bundle(
    bundle_path: str | os.PathLike,
    identity: BundleIdentity,
    task_name: str,
    train_set: Dataset,
    val_set: Dataset,
    *,
    effect: str | None = None,
    size: str | ModelConfig = "compact",
    options: TrainOptions | None = None,
) -> dict:
    """Build, train and add one model to a bundle (created when absent).

    ``task_name`` is ``params`` (with ``effect``) or a selector kind (``rnn``, ``ni``,
    ``cnn``). Returns the model's bundle entry (metrics, training facts).
    """
    options = options or TrainOptions()
    options.check()
    config = model_config(size)
    task = _kind(identity, task_name, effect)
    if isinstance(task, ParameterKind):
        name = param_model_name(effect)  # type: ignore[arg-type]
        if not (task.continuous_specs or task.categorical_specs):
            raise ParameterError(f"Effect {effect} has no sampled knob; there is nothing to train.")
    else:
        name = selector_model_name(task_name)

    main = _rank() == 0 if _distributed() else int(os.environ.get("RANK", "0")) == 0
    bundle = ModelBundle.open_or_create(bundle_path, **identity.bundle_kwargs()) if main else None
    if _distributed() or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        init_distributed()
        torch.distributed.barrier()  # rank 0 has created the bundle folder
    bundle_dir = Path(bundle_path)
    torch.manual_seed(options.seed)
    model = task.build(identity.feature_settings, config)
    if options.init_from:
        _warm_start(model, name, options.init_from)
    run_identity = {"model": name, "config": config.to_json(), "seed": options.seed, "init_from": options.init_from,
                    "dataset_fingerprint": identity.dataset_fingerprint, "learning_rate": options.learning_rate,
                    "train_size": len(train_set), "val_size": len(val_set)}
    work_dir = bundle_dir / CHECKPOINT_DIR / name
    result = fit(task, model, train_set, val_set, options=options, work_dir=work_dir,
                 log_path=bundle_dir / LOG_DIR / name / "train_log.csv", identity=run_identity, title=name)
    entry: dict = {}
    if _rank() == 0:
        assert bundle is not None
        training = {
            "seconds": round(result.seconds, 2), "epochs": result.epochs_run, "best_epoch": result.best_epoch,
            "stopped": result.stopped, "device": result.device, "world_size": _world_size(),
            "samples_per_s": round(result.samples_per_s, 1), "train_size": len(train_set), "val_size": len(val_set),
            "batch_size": options.batch_size or task.default_batch_size, "seed": options.seed,
            "learning_rate": options.learning_rate, "max_epochs": options.epochs, "patience": options.patience,
        }
        bundle.add_model(name, model, task=task_name, effect=effect, config=config, metrics=result.metrics,
                         training=training, dataset_fingerprint=identity.dataset_fingerprint, float16=options.float16)
        entry = bundle.meta["models"][name]
        _Checkpoint(work_dir, {}).remove()
    if _distributed():
        torch.distributed.barrier()
    return entry


def _kind(identity: BundleIdentity, task_name: str, effect: str | None) -> ModelKind:
    """Kind ``task_name`` over the dataset's effects; refuses an unknown kind or effect."""
    if task_name != PARAMS and task_name not in SELECTOR_KINDS:
        raise ParameterError(f"Unknown selector kind {task_name!r}; choose one of {', '.join(SELECTOR_KINDS)}.")
    if task_name == PARAMS and effect not in identity.effects:
        raise ParameterError(f"Unknown effect {effect!r}; the dataset has {', '.join(identity.effect_names)}.")
    return model_kind_for(task_name, identity.effects, effect)


def _warm_start(model: nn.Module, name: str, source: str) -> None:
    """Load model ``name``'s weights from bundle ``source`` (same architecture required)."""
    from serumrnn.core.session import bundle_path

    donor = ModelBundle.load(bundle_path(source), build_models=False)
    if name not in donor.meta["models"]:
        raise ParameterError(f"Bundle '{donor.path}' has no model {name} to start from; train it without --init-from.")
    # read_weights gives numpy arrays in the stored dtype (float16 by default): copies, as float32
    weights = {key: torch.tensor(value, dtype=torch.float32) for key, value in donor.read_weights(name).items()}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError:
        raise ParameterError(f"Model {name} of bundle '{donor.path}' has another architecture or size; "
                             "start from a bundle of the same --size.") from None


# -- from a dataset folder ---------------------------------------------------------------


def open_dataset(data_dir: str | os.PathLike):
    """``(reader, identity)`` of a generated dataset folder."""
    from serumrnn.core.views import DatasetReader

    reader = DatasetReader(data_dir)
    return reader, BundleIdentity.from_dataset_meta(getattr(reader, "metadata", None) or reader.meta)


def train_params(data_dir: str | os.PathLike, effect: str, bundle_path: str | os.PathLike, *,
                 size: str = "compact", options: TrainOptions | None = None) -> dict:
    """Train the parameter model of ``effect`` on the dataset at ``data_dir`` into the bundle."""
    return _train_from_dataset(data_dir, PARAMS, bundle_path, effect=effect, size=size, options=options)


def train_selector(data_dir: str | os.PathLike, kind: str, bundle_path: str | os.PathLike, *,
                   size: str = "compact", options: TrainOptions | None = None) -> dict:
    """Train selector ``kind`` (``rnn``, ``ni`` or ``cnn``) on the dataset into the bundle."""
    if kind not in SELECTOR_KINDS:
        raise ParameterError(f"Unknown selector kind {kind!r}; choose one of {', '.join(SELECTOR_KINDS)}.")
    return _train_from_dataset(data_dir, kind, bundle_path, size=size, options=options)


def _train_from_dataset(data_dir: str | os.PathLike, task_name: str, bundle_path: str | os.PathLike, *,
                        effect: str | None = None, size: str, options: TrainOptions | None) -> dict:
    reader, identity = open_dataset(data_dir)
    kind = _kind(identity, task_name, effect)
    train_set, val_set = kind.training_view(reader, "train"), kind.training_view(reader, "validation")
    return train_into_bundle(bundle_path, identity, task_name, train_set, val_set, effect=effect, size=size,
                             options=options)


def evaluate_model(data_dir: str | os.PathLike, bundle_path: str | os.PathLike, name: str, *,
                   split: str = "validation", batch_size: int = 64) -> dict:
    """Metrics of bundle model ``name`` (``params-<effect>``, ``selector-<kind>``) on a
    dataset split, as recorded at training time."""
    reader, identity = open_dataset(data_dir)
    bundle = ModelBundle.load(bundle_path)
    model = bundle.model(name)
    entry = bundle.meta["models"][name]
    task = _kind(identity, entry["task"], entry["effect"])
    loader = DataLoader(task.training_view(reader, split), batch_size=batch_size)
    return task.metrics(_evaluate(task, model, loader, torch.device(bundle.device), contextlib.nullcontext))


def set_cpu_threads(threads: int | None) -> None:
    """Limit torch's intra-op threads (benchmarks, shared machines)."""
    if threads:
        torch.set_num_threads(int(threads))


__all__ = [
    "BundleIdentity", "FitResult", "TrainOptions",
    "fit", "init_distributed", "open_dataset", "pick_device", "train_into_bundle", "train_params", "train_selector",
]

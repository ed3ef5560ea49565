"""``serumrnn train``: train parameter models and selectors into a model bundle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from serumrnn.cli.common import console, friendly_errors, print_json

app = typer.Typer()
train_app = typer.Typer(
    help="Train effect parameter models and effect selectors into a model bundle.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

DataOption = Annotated[Path, typer.Option("--data", help="Dataset folder made by `serumrnn generate`.")]
OutOption = Annotated[Path, typer.Option("--out", help="Model bundle folder (created, or added to).")]
SizeOption = Annotated[str, typer.Option("--size", help="Model size: compact (CPU, minutes) or paper.")]
EpochsOption = Annotated[int, typer.Option("--epochs", help="Most epochs per model.")]
PatienceOption = Annotated[int, typer.Option("--patience", help="Epochs without improvement before stopping.")]
MinutesOption = Annotated[
    float | None, typer.Option("--max-minutes", help="Time bound for the whole command; the best weights so far are kept.")
]
WorkersOption = Annotated[int | None, typer.Option("--workers", help="DataLoader worker processes (default: 0 on CPU).")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of weights, shuffling and dropout.")]
BatchOption = Annotated[int | None, typer.Option("--batch-size", help="Batch size (default: the paper's, 128 or 32).")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda when available).")]
ThreadsOption = Annotated[int | None, typer.Option("--threads", help="torch CPU threads (default: torch's choice).")]
Fp32Option = Annotated[bool, typer.Option("--fp32", help="Store float32 weights (default float16, half the size).")]
FreshOption = Annotated[bool, typer.Option("--fresh", help="Ignore checkpoints of an interrupted run.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the trained models' bundle entries as JSON.")]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress output.")]
InitOption = Annotated[str | None, typer.Option(
    "--init-from", help="Start from this bundle's weights (folder or shipped name; same size) instead of random ones.")]


def _options(epochs, patience, workers, seed, batch_size, device, fp32, fresh, quiet, max_minutes, init_from):
    from serumrnn.core.session import bundle_path
    from serumrnn.core.training import TrainOptions

    options = TrainOptions(
        epochs=epochs, patience=patience, num_workers=workers, seed=seed, batch_size=batch_size, device=device,
        float16=not fp32, resume=not fresh, progress=not quiet, max_minutes=max_minutes,
        init_from=None if init_from is None else str(bundle_path(init_from)),
    )
    options.check()
    return options


def _check_size(size: str) -> None:
    from serumrnn.core.models import model_config

    model_config(size)


def _run_all(jobs, options, max_minutes: float | None, threads: int | None) -> list[tuple[str, dict]]:
    """Run ``jobs`` (name, callable(options)) in order, sharing the time budget."""
    import attrs

    from serumrnn.core.training import set_cpu_threads

    set_cpu_threads(threads)
    deadline = time.monotonic() + max_minutes * 60 if max_minutes else None
    results = []
    for index, (name, job) in enumerate(jobs):
        job_options = options
        if deadline is not None:
            left = (deadline - time.monotonic()) / 60
            if left <= 0:
                console.print(f"[yellow]Time limit reached; {name} and later models were not trained.[/]")
                break
            job_options = attrs.evolve(options, max_minutes=left / (len(jobs) - index))
        results.append((name, job(job_options)))
    return results


def _report(results: list[tuple[str, dict]], out: Path, as_json: bool) -> None:
    results = [(name, entry) for name, entry in results if entry]  # other torchrun ranks get none
    if not results:
        return
    if as_json:
        print_json({name: entry for name, entry in results})
        return
    from rich.table import Table

    table = Table(title=f"trained into {out}")
    for column in ("model", "epochs", "stopped", "val loss", "mean baseline", "accuracy", "time"):
        table.add_column(column, justify="left" if column in ("model", "stopped") else "right")
    for name, entry in results:
        metrics, training = entry["metrics"], entry["training"]
        accuracy = metrics.get("accuracy", metrics.get("exact_set_accuracy"))
        if accuracy is None and metrics.get("class_accuracy"):
            accuracy = min(metrics["class_accuracy"].values())
        table.add_row(
            name, f"{training['epochs']} (best {training['best_epoch']})", training["stopped"],
            f"{metrics['validation_loss']:.4f}", f"{metrics['baseline_loss']:.4f}",
            "" if accuracy is None else f"{accuracy:.3f}", f"{training['seconds']:.0f} s",
        )
    console.print(table)


@train_app.command("params")
@friendly_errors
def params_command(
    data: DataOption,
    out: OutOption,
    effect: Annotated[str, typer.Option("--effect", help="Effect to train, or all.")] = "all",
    size: SizeOption = "compact",
    epochs: EpochsOption = 100,
    patience: PatienceOption = 8,
    max_minutes: MinutesOption = None,
    workers: WorkersOption = None,
    seed: SeedOption = 0,
    batch_size: BatchOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    fp32: Fp32Option = False,
    fresh: FreshOption = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    init_from: InitOption = None,
) -> None:
    """Train effect parameter models (one per effect) on a dataset."""
    from serumrnn.core.errors import ParameterError
    from serumrnn.core.training import open_dataset, train_params

    _check_size(size)
    options = _options(epochs, patience, workers, seed, batch_size, device, fp32, fresh, quiet, max_minutes, init_from)
    _, identity = open_dataset(data)
    names = list(identity.effect_names) if effect == "all" else [effect.strip().lower()]
    unknown = [name for name in names if name not in identity.effects]
    if unknown:
        raise ParameterError(
            f"Dataset '{data}' has no effect {unknown[0]!r}; choose all or one of {', '.join(identity.effect_names)}."
        )
    jobs = [(f"params-{name}", lambda o, name=name: train_params(data, name, out, size=size, options=o)) for name in names]
    _report(_run_all(jobs, options, max_minutes, threads), out, as_json)


@train_app.command("selector")
@friendly_errors
def selector_command(
    data: DataOption,
    out: OutOption,
    kind: Annotated[str, typer.Option("--kind", help="rnn (SerumRNN), ni, cnn, or all.")] = "rnn",
    size: SizeOption = "compact",
    epochs: EpochsOption = 100,
    patience: PatienceOption = 8,
    max_minutes: MinutesOption = None,
    workers: WorkersOption = None,
    seed: SeedOption = 0,
    batch_size: BatchOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    fp32: Fp32Option = False,
    fresh: FreshOption = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    init_from: InitOption = None,
) -> None:
    """Train effect selectors: SerumRNN (rnn) and the NI and CNN baselines."""
    from serumrnn.core.errors import ParameterError
    from serumrnn.core.models import SELECTOR_KINDS
    from serumrnn.core.training import open_dataset, train_selector

    kinds = list(SELECTOR_KINDS) if kind == "all" else [kind.strip().lower()]
    if any(k not in SELECTOR_KINDS for k in kinds):
        raise ParameterError(f"Unknown selector kind {kind!r}; choose rnn, ni, cnn or all.")
    _check_size(size)
    options = _options(epochs, patience, workers, seed, batch_size, device, fp32, fresh, quiet, max_minutes, init_from)
    open_dataset(data)  # a clear error for a bad folder before any work
    jobs = [(f"selector-{k}", lambda o, k=k: train_selector(data, k, out, size=size, options=o)) for k in kinds]
    _report(_run_all(jobs, options, max_minutes, threads), out, as_json)

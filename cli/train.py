"""``serumrnn train``: train parameter models and selectors into a model bundle."""

from __future__ import annotations

import functools
import inspect
import time
from pathlib import Path
from typing import Annotated

import attrs
import typer

from serumrnn.cli.common import console, friendly_errors, print_json
from serumrnn.cli.progress import terminal_progress

app = typer.Typer()
train_app = typer.Typer(
    help="Train effect parameter models and effect selectors into a model bundle.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

DataOption = Annotated[Path, typer.Option("--data", help="Dataset folder made by `serumrnn generate`.")]
OutOption = Annotated[Path, typer.Option("--out", help="Model bundle folder (created, or added to).")]
SizeOption = Annotated[str, typer.Option("--size", help="Model size: compact (CPU, minutes), profile (parameter models of the default bundle) or paper.")]
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


# The options every `train` command takes, after its own: (parameter, annotation, default).
SHARED_OPTIONS = (
    ("size", SizeOption, "compact"), ("epochs", EpochsOption, 100), ("patience", PatienceOption, 8),
    ("max_minutes", MinutesOption, None), ("workers", WorkersOption, None), ("seed", SeedOption, 0),
    ("batch_size", BatchOption, None), ("device", DeviceOption, None), ("threads", ThreadsOption, None),
    ("fp32", Fp32Option, False), ("fresh", FreshOption, False), ("as_json", JsonOption, False),
    ("quiet", QuietOption, False), ("init_from", InitOption, None),
)


@attrs.frozen
class TrainingRun:
    """The shared options of one `train` command, and what they mean."""

    size: str
    epochs: int
    patience: int
    max_minutes: float | None
    workers: int | None
    seed: int
    batch_size: int | None
    device: str | None
    threads: int | None
    fp32: bool
    fresh: bool
    as_json: bool
    quiet: bool
    init_from: str | None

    def options(self):
        """``TrainOptions`` after checking the size and every number (before any work)."""
        from serumrnn.core.model_config import model_config
        from serumrnn.core.training import TrainOptions

        model_config(self.size)
        options = TrainOptions(
            epochs=self.epochs, patience=self.patience, num_workers=self.workers, seed=self.seed,
            batch_size=self.batch_size, device=self.device, float16=not self.fp32, resume=not self.fresh,
            max_minutes=self.max_minutes, init_from=None if self.init_from is None else str(_init_bundle(self.init_from)),
        )
        options.check()
        return options

    def run(self, jobs, options) -> list[tuple[str, dict]]:
        """Run ``jobs`` (name, callable(options)) in order, sharing the time budget."""
        from serumrnn.core.training import set_cpu_threads

        set_cpu_threads(self.threads)
        deadline = time.monotonic() + self.max_minutes * 60 if self.max_minutes else None
        results = []
        for index, (name, job) in enumerate(jobs):
            job_options = options
            if deadline is not None:
                left = (deadline - time.monotonic()) / 60
                if left <= 0:
                    console.print(f"[yellow]Time limit reached; {name} and later models were not trained.[/]")
                    break
                job_options = attrs.evolve(options, max_minutes=left / (len(jobs) - index))
            with terminal_progress(not self.quiet) as progress:
                results.append((name, job(attrs.evolve(job_options, progress=progress))))
        return results


def _init_bundle(name: str) -> Path:
    """The folder of ``--init-from``'s bundle (a folder or a shipped name)."""
    from serumrnn.core.errors import BundleError
    from serumrnn.core.session import bundle_path, shipped_bundles

    try:
        return bundle_path(name)
    except BundleError:
        raise BundleError(
            f"--init-from {name!r} is neither a bundle folder nor a shipped bundle "
            f"(shipped: {', '.join(shipped_bundles()) or 'none'}); give a bundle folder or a shipped name."
        ) from None


def training_command(function):
    """Add ``SHARED_OPTIONS`` to a `train` command's own parameters; the command gets
    them as one ``TrainingRun`` (its parameter ``run``)."""
    own = [parameter for parameter in inspect.signature(function, eval_str=True).parameters.values()
           if parameter.name != "run"]
    shared = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation, default=default)
              for name, annotation, default in SHARED_OPTIONS]

    @functools.wraps(function)
    def command(**arguments):
        run = TrainingRun(**{name: arguments.pop(name) for name, _, _ in SHARED_OPTIONS})
        return function(run=run, **arguments)

    command.__signature__ = inspect.Signature([*own, *shared])  # what typer reads the options from
    return command


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
@training_command
def params_command(
    data: DataOption,
    out: OutOption,
    effect: Annotated[str, typer.Option("--effect", help="Effect to train, or all.")] = "all",
    *,
    run: TrainingRun,
) -> None:
    """Train effect parameter models (one per effect) on a dataset."""
    from serumrnn.core.errors import ParameterError
    from serumrnn.core.training import open_dataset, train_params

    options = run.options()
    _, identity = open_dataset(data)
    names = list(identity.effect_names) if effect == "all" else [effect.strip().lower()]
    unknown = [name for name in names if name not in identity.effects]
    if unknown:
        raise ParameterError(
            f"Dataset '{data}' has no effect {unknown[0]!r}; choose all or one of {', '.join(identity.effect_names)}."
        )
    jobs = [(f"params-{name}", lambda o, name=name: train_params(data, name, out, size=run.size, options=o))
            for name in names]
    _report(run.run(jobs, options), out, run.as_json)


@train_app.command("selector")
@friendly_errors
@training_command
def selector_command(
    data: DataOption,
    out: OutOption,
    kind: Annotated[str, typer.Option("--kind", help="rnn (SerumRNN), ni, cnn, or all.")] = "rnn",
    *,
    run: TrainingRun,
) -> None:
    """Train effect selectors: SerumRNN (rnn) and the NI and CNN baselines."""
    from serumrnn.core.errors import ParameterError
    from serumrnn.core.model_kinds import SELECTOR_KINDS
    from serumrnn.core.training import open_dataset, train_selector

    kinds = list(SELECTOR_KINDS) if kind == "all" else [kind.strip().lower()]
    if any(k not in SELECTOR_KINDS for k in kinds):
        raise ParameterError(f"Unknown selector kind {kind!r}; choose rnn, ni, cnn or all.")
    options = run.options()
    open_dataset(data)  # a clear error for a bad folder before any work
    jobs = [(f"selector-{k}", lambda o, k=k: train_selector(data, k, out, size=run.size, options=o)) for k in kinds]
    _report(run.run(jobs, options), out, run.as_json)

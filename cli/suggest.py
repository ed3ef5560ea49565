"""``serumrnn suggest``: step-by-step instructions from an input sound toward a target."""

from __future__ import annotations

import contextlib

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from serumrnn.cli.common import console, friendly_errors, print_json

app = typer.Typer()


def print_session(session, *, title: str) -> None:
    """The numbered instructions with the distance after each step and % closer."""
    metric = session.metric
    for note in session.notes:
        console.print(f"[dim]{note}[/dim]")
    table = Table(title=title, show_lines=False)
    table.add_column("step", justify="right")
    table.add_column("instruction")
    table.add_column(f"{metric.upper()} to target", justify="right")
    table.add_column("closer", justify="right")
    searched = session.search is not None
    if searched:  # whether the search changed the models' guess, and what it rendered
        table.add_column("found by", justify="right")
    table.add_row("0", "[dim]the input as it is[/dim]", f"{session.initial_metrics[metric]:.4g}", "",
                  *([""] if searched else []))
    best = session.best_index
    for step in session.steps:
        text = step.instruction.action  # the row's step column gives the number
        style = "bold green" if step.index == best else ("" if step.better else "yellow")
        # A worse step before the best one stays: the later steps were chosen with it applied.
        marker = "  <- best" if step.index == best else ("" if step.better else (
            "  (worse on its own)" if step.index < best else "  (worse: leave out)"))
        how = [f"{'search' if step.mode == 'searched' else 'models'}, {step.renders} renders"] if searched else []
        table.add_row(str(step.index), f"[{style}]{text}[/{style}]{marker}" if style else text + marker,
                      f"{step.metrics[metric]:.4g}", f"{session.closer_pct(step.metrics):+.1f}%", *how)
    console.print(table)
    if best == 0:
        console.print(f"No step brought the sound closer on {metric.upper()}; stopped: {session.stop_reason}.")
    else:
        keep = "step 1" if best == 1 else f"steps 1-{best}"
        kept_metrics = session.steps[best - 1].metrics
        console.print(
            f"Keep {keep}: {session.closer_pct(kept_metrics):.1f}% closer to the target on "
            f"{metric.upper()}. Stopped: {session.stop_reason}."
        )
    print_revision(session)


def print_revision(session) -> None:
    """The revised chain, when the session has one: its instructions and what changed."""
    revision = session.revision
    if revision is None:
        return
    if not revision.changes:
        console.print(f"Revising steps 1-{revision.kept} as a whole ({revision.renders} renders) changed nothing.")
        return
    console.print(f"[bold]Revised chain[/bold] ({revision.renders} renders): "
                  f"{session.closer_pct(revision.metrics):.1f}% closer on {session.metric.upper()}. From the input:")
    for instruction in revision.instructions:
        console.print(f"  {instruction.step}. {instruction.action}")
    console.print("[dim]Changed from the steps: " + " ".join(revision.changes) + "[/dim]")


@app.command("suggest")
@friendly_errors
def suggest_command(
    input: Annotated[str, typer.Argument(help="Input sound: an audio file, or a preset name of the rack's synth.")],
    target: Annotated[Path, typer.Argument(help="Target sound (audio file).")],
    rack: Annotated[str, typer.Option("--rack", help="Rack whose effects are used.")] = "builtin",
    bundle: Annotated[str | None, typer.Option("--bundle", help="Shipped bundle name or bundle folder (default: all).")] = None,
    selector: Annotated[str, typer.Option("--selector", help="rnn, ni, cnn, cnn-1s, random (oracle: evaluation only).")] = "rnn",
    tolerance: Annotated[int, typer.Option("--tolerance", min=0, help="Bad steps tolerated before stopping.")] = 1,
    metric: Annotated[str, typer.Option("--metric", help="Metric of the stopping rule: mse, mae, lsd, mfccd, pcc, mssmae.")] = "mssmae",
    to_c4: Annotated[bool, typer.Option("--to-c4", help="Detect the notes and shift both sounds to C4 first.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write every step as WAV, session.json and progression.png here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the session as JSON.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed (random selector, search).")] = 0,
    search: Annotated[bool | None, typer.Option("--search/--no-search", help="After the models' guess, search each step within a budget (default: on); --no-search gives the plain models' session.")] = None,
    budget_ms: Annotated[float | None, typer.Option("--budget-ms", help="Search time per step in ms (default: none, the render count decides); what it buys depends on the machine's speed.")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Candidate effects per step: the selector's top K unused (default: all).")] = None,
    max_renders: Annotated[int | None, typer.Option("--max-renders", help="Search renders per step (default 20 when no --budget-ms); the same steps for the same --seed on any machine.")] = None,
    revise_renders: Annotated[int | None, typer.Option("--revise-renders", help="With search: renders spent revising the kept steps as a whole (leave effects out, reorder, retune) once they are found (default 1000; 0: no revision).")] = None,
) -> None:
    """Step-by-step instructions, effect by effect, from INPUT toward TARGET."""
    from serumrnn.core.runtime import check_output_dir
    from serumrnn.core.session import suggest, write_session

    if out is not None:
        check_output_dir(out)
    with console.status("Finding the steps...", spinner="dots") if not as_json else contextlib.nullcontext():
        session = suggest(input, target, rack=rack, bundle=bundle, selector=selector, tolerance=tolerance,
                          metric=metric, to_c4=to_c4, seed=seed, search=search, budget_ms=budget_ms, top_k=top_k,
                          max_renders=max_renders, revise_renders=revise_renders)
    if out is not None:
        write_session(session, out)
    if as_json:
        print_json(session.to_json())
        return
    print_session(session, title=f"From {input} toward {target.name} ({selector})")
    if out is not None:
        console.print(f"Wrote the steps as WAV, session.json and progression.png to {out}/")
        console.print(f"Listen to every step: open {(out / 'index.html').resolve().as_uri()}", soft_wrap=True)

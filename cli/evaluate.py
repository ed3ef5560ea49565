"""``serumrnn evaluate``: the paper's Tables 2-6, Figure 4 and latency for a model bundle
on a dataset's held-out split, as Markdown, CSV, JSON and PNG."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from serumrnn.cli.common import console, friendly_errors, print_json

app = typer.Typer()


def _print_overview(result) -> None:
    """Table 4 (ours) and latency, the figures a person looks at first."""
    from serumrnn.core.evaluation import SYSTEM_LABELS
    from serumrnn.core.metrics import METRICS

    table = Table(title=f"Mean error Δ against the target ({result.meta['session_pairs']} sessions, "
                        f"tolerance {result.meta['tolerance']})")
    table.add_column("system")
    for metric in METRICS:
        table.add_column(metric.upper(), justify="right")
    table.add_column("step median ms", justify="right")
    latency = {row["system"]: row for row in result.latency}
    for row in result.systems:
        if row["source"] != "ours":
            continue
        step = latency.get(row["system"], {}).get("step_median_ms")
        table.add_row(SYSTEM_LABELS.get(row["system"], row["system"]), *(f"{row[m]:.2f}" for m in METRICS),
                      f"{step:.0f}" if step is not None else "-")
    console.print(table)
    needed = [row for row in result.selection if row["source"] == "ours" and row["measure"].startswith("picks an")]
    if needed:
        console.print("Selection, picks an effect the target still needs: " + ", ".join(
            f"{row['system']} {row['all']:.3f}" for row in needed if row["all"] is not None))


@app.command("evaluate")
@friendly_errors
def evaluate_command(
    bundle: Annotated[str, typer.Option("--bundle", help="Bundle folder or shipped bundle name.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset folder made by serumrnn generate.")],
    out: Annotated[Path, typer.Option("--out", help="New folder for results.md, the CSV tables, summary.json and figure4_tolerance.png.")] = Path("evaluation"),
    pairs: Annotated[int, typer.Option("--pairs", help="Session pairs for Tables 4-6 and Figure 4 (a fifth per chain length 1..5).")] = 1000,
    param_pairs: Annotated[int, typer.Option("--param-pairs", help="Pairs per effect for Table 2.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every draw (pairs, random selector).")] = 0,
    tolerance: Annotated[int, typer.Option("--tolerance", help="Bad steps tolerated by the stopping rule (Tables 4-6).")] = 1,
    metric: Annotated[str, typer.Option("--metric", help="Metric of the stopping rule and Figure 4.")] = "mssmae",
    split: Annotated[str, typer.Option("--split", help="Dataset split to evaluate on.")] = "test",
    workers: Annotated[int, typer.Option("--workers", help="Worker processes (results do not depend on it).")] = max(1, min(4, os.cpu_count() or 1)),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of tables.")] = False,
) -> None:
    """Evaluate a model bundle on a dataset's test split: the paper's Tables 2-6 and Figure 4."""
    from serumrnn.core.evaluation import FILES, EvaluationOptions, evaluate
    from serumrnn.core.session import check_output_dir

    options = EvaluationOptions(pairs=pairs, param_pairs=param_pairs, seed=seed, metric=metric.lower(),
                                tolerance=tolerance, split=split, workers=workers, progress=not as_json)
    options.check()
    check_output_dir(out)  # fail before the long run, not after it
    command = "serumrnn " + " ".join(shlex.quote(arg) for arg in sys.argv[1:]) if sys.argv[1:] else "serumrnn evaluate"
    result = evaluate(bundle, data, options, command=command)
    result.write(out)
    if as_json:
        print_json({"out": str(out), "files": sorted(FILES.values()), **result.to_json()})
        return
    _print_overview(result)
    console.print(f"Wrote {', '.join(sorted(FILES.values()))} to {out}/ in {result.meta['seconds']:.0f} s.")

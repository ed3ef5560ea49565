"""``serumrnn budget``: quality against search budget (% closer on MSSMAE against ms per
step) on made targets, as CSV, JSON and a PNG figure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from serumrnn.cli.common import console, friendly_errors, print_json
from serumrnn.cli.progress import terminal_progress

app = typer.Typer()


def _numbers(text: str) -> tuple[float, ...]:
    from serumrnn.core.errors import ParameterError

    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ParameterError(f"--budgets {text!r} is not a list of numbers; write it as 0,100,300.") from None


@app.command("budget")
@friendly_errors
def budget_command(
    bundle: Annotated[str | None, typer.Option("--bundle", help="Shipped bundle name or bundle folder (default: all).")] = None,
    targets: Annotated[str, typer.Option("--targets", help="Target sets: presets (chains on the 12 presets), varied (chains on generated patches from varied-100000).")] = "presets,varied",
    pairs: Annotated[int, typer.Option("--pairs", help="Targets per set.")] = 24,
    budgets: Annotated[str, typer.Option("--budgets", help="Search budgets in ms per step; 0 is the plain models' session.")] = "0,50,100,200,300,600",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the targets and of the sessions.")] = 0,
    tolerance: Annotated[int, typer.Option("--tolerance", min=0, help="Bad steps tolerated before stopping.")] = 1,
    out: Annotated[Path, typer.Option("--out", help="New folder for budget.png, the CSV tables and budget.json.")] = Path("budget"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """How much closer sessions get as each step's search budget grows, and what a step costs."""
    from serumrnn.core.budget import FILES, check_study, run_study
    from serumrnn.core.runtime import check_output_dir

    kinds = tuple(kind.strip() for kind in targets.split(",") if kind.strip())
    numbers = _numbers(budgets)
    check_study(kinds, pairs, numbers)
    check_output_dir(out)
    with terminal_progress(not as_json) as progress:
        _, summary, meta = run_study(bundle, out, kinds=kinds, count=pairs, budgets=numbers, seed=seed,
                                     tolerance=tolerance, progress=progress)
    if as_json:
        print_json({"out": str(out), "meta": meta, "summary": summary})
        return
    table = Table(title=f"Quality against search budget ({meta['machine']})")
    for column in ("targets", "budget ms", "% closer", "aggregate %", "step median ms", "renders/step", "sessions"):
        table.add_column(column, justify="left" if column == "targets" else "right")
    for row in summary:
        table.add_row(row["set"], f"{row['budget_ms']:g}", f"{row['closer_pct']:.1f}", f"{row['aggregate_closer_pct']:.1f}",
                      f"{row['step_median_ms']:.0f}", f"{row['renders_per_step']:.1f}", str(row["sessions"]))
    console.print(table)
    console.print(f"Wrote {', '.join(sorted(FILES.values()))} to {out}/ in {meta['seconds']:.0f} s.")

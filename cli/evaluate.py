"""``serumrnn evaluate``: the paper's Tables 2-6, Figure 4 and latency for a model bundle
on a dataset's held-out split, as Markdown, CSV, JSON and PNG."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import attrs
import typer
from rich.table import Table

from serumrnn.cli.common import console, friendly_errors, print_json
from serumrnn.cli.progress import terminal_progress
from serumrnn.core.errors import ParameterError

app = typer.Typer()


def _print_overview(result) -> None:
    """Table 4 (ours) and latency, the figures a person looks at first."""
    from serumrnn.core.evaluation import SYSTEM_LABELS
    from serumrnn.core.metrics import METRICS

    table = Table(title=f"Mean error Δ against the target ({result.meta['session_pairs']} sessions, "
                        f"tolerance {result.meta['tolerance']})")
    table.add_column("system")
    table.add_column("kept")
    for metric in METRICS:
        table.add_column(metric.upper(), justify="right")
    table.add_column("step median ms", justify="right")
    latency = {row["system"]: row for row in result.latency}
    for row in result.systems:
        if row["source"] != "ours":
            continue
        step = latency.get(row["system"], {}).get("step_median_ms")
        table.add_row(SYSTEM_LABELS.get(row["system"], row["system"]), row["kept"],
                      *(f"{row[m]:.2f}" for m in METRICS), f"{step:.0f}" if step is not None else "-")
    console.print(table)
    needed = [row for row in result.selection if row["source"] == "ours" and row["measure"].startswith("picks an")]
    if needed:
        console.print("Selection, picks an effect the target still needs: " + ", ".join(
            f"{row['system']} {row['all']:.3f}" for row in needed if row["all"] is not None))


@app.command("evaluate")
@friendly_errors
def evaluate_command(
    bundle: Annotated[str | None, typer.Option("--bundle", help="Bundle folder or shipped bundle name (needed with --data; with --unseen the rack's shipped bundle, or search alone for a rack without one).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Dataset folder made by serumrnn generate (in-domain tables).")] = None,
    out: Annotated[Path, typer.Option("--out", help="New folder for results.md, the CSV tables, summary.json and figure4_tolerance.png.")] = Path("evaluation"),
    pairs: Annotated[int, typer.Option("--pairs", help="Session pairs for Tables 4-6 and Figure 4 (a fifth per chain length 1..5).")] = 1000,
    param_pairs: Annotated[int, typer.Option("--param-pairs", help="Pairs per effect for Table 2.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every draw (pairs, random selector).")] = 0,
    tolerance: Annotated[int, typer.Option("--tolerance", help="Bad steps tolerated by the stopping rule (Tables 4-6).")] = 1,
    metric: Annotated[str, typer.Option("--metric", help="Metric of the stopping rule and Figure 4.")] = "mssmae",
    split: Annotated[str, typer.Option("--split", help="Dataset split to evaluate on.")] = "test",
    workers: Annotated[int, typer.Option("--workers", help="Worker processes (results do not depend on it).")] = max(1, min(4, os.cpu_count() or 1)),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of tables.")] = False,
    search: Annotated[bool, typer.Option("--search", help="Also run rnn+search, random+search and search alone (Table 4, latency).")] = False,
    search_budget_ms: Annotated[float | None, typer.Option("--search-budget-ms", help="Time per step of the systems with --search (default: the default render count).")] = None,
    unseen: Annotated[str | None, typer.Option("--unseen", help="Instead of --data: sounds the models never heard, sets varied, zynaddsubfx, vst-effects, presets (comma-separated, or all: the first three).")] = None,
    cases: Annotated[int, typer.Option("--cases", help="Cases per --unseen set.")] = 12,
    systems: Annotated[str | None, typer.Option("--systems", help="Systems to run, comma-separated (default: every one the bundle can run); with --data, those of Tables 4-6 (Tables 2 and 3 are always made).")] = None,
    rack: Annotated[str | None, typer.Option("--rack", help="With --unseen: the rack the sessions run on (default builtin; --data evaluates on the bundle's rack).")] = None,
) -> None:
    """Evaluate a model bundle on a dataset's test split (the paper's Tables 2-6 and Figure 4),
    or with --unseen on sounds the models never heard."""
    from serumrnn.core.evaluation import FILES, EvaluationOptions, evaluate
    from serumrnn.core.runtime import check_output_dir

    command = "serumrnn " + " ".join(shlex.quote(arg) for arg in sys.argv[1:]) if sys.argv[1:] else "serumrnn evaluate"
    if unseen is not None:
        if data is not None:
            raise ParameterError("Give --data (in-domain tables) or --unseen (unseen sounds), not both; run twice for both.")
        _evaluate_unseen(bundle, unseen, cases=cases, systems=systems, seed=seed, tolerance=tolerance, metric=metric,
                         workers=workers, search=search, search_budget_ms=search_budget_ms, out=out, as_json=as_json,
                         command=command, rack=rack or "builtin")
        return
    if data is None:
        raise ParameterError("Give --data DATASET for the in-domain tables, or --unseen SETS for unseen sounds.")
    if rack is not None:
        raise ParameterError("--rack goes with --unseen; an evaluation on --data runs on the rack its bundle was trained for.")
    if bundle is None:
        raise ParameterError("Give --bundle (a shipped bundle name such as all, or a bundle folder) to evaluate on --data.")

    options = EvaluationOptions(pairs=pairs, param_pairs=param_pairs, seed=seed, metric=metric.lower(),
                                tolerance=tolerance, split=split, workers=workers,
                                search=search, search_budget_ms=search_budget_ms,
                                systems=_names(systems) if systems is not None else None)
    options.check()
    check_output_dir(out)  # fail before the long run, not after it
    with terminal_progress(not as_json) as progress:
        result = evaluate(bundle, data, attrs.evolve(options, progress=progress), command=command)
    result.write(out)
    if as_json:
        print_json({"out": str(out), "files": sorted(FILES.values()), **result.to_json()})
        return
    _print_overview(result)
    console.print(f"Wrote {', '.join(sorted(FILES.values()))} to {out}/ in {result.meta['seconds']:.0f} s.")


def _names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))


def _evaluate_unseen(bundle: str | None, sets: str, *, cases: int, systems: str | None, seed: int, tolerance: int,
                     metric: str, workers: int, search: bool, search_budget_ms: float | None, out: Path, as_json: bool,
                     command: str, rack: str) -> None:
    from serumrnn.core.runtime import check_output_dir
    from serumrnn.core.unseen import FILES, UnseenOptions, default_sets, register_case_set, run_unseen
    from serumrnn.plugins import zyn_banks

    register_case_set(zyn_banks.case_set())
    names = default_sets() if sets.strip().lower() == "all" else _names(sets)
    options = UnseenOptions(sets=names, cases=cases, seed=seed, systems=_names(systems) if systems else None,
                            metric=metric.lower(), tolerance=tolerance, workers=workers,
                            search=search, search_budget_ms=search_budget_ms, rack=rack)
    options.check()
    check_output_dir(out)  # fail before the long run, not after it
    with terminal_progress(not as_json) as progress:
        result = run_unseen(bundle, attrs.evolve(options, progress=progress), command=command)
    result.write(out)
    if as_json:
        print_json({"out": str(out), "files": sorted(FILES.values()), **result.to_json()})
        return
    table = Table(title=f"How much closer on MSSMAE, unseen sounds ({cases} cases per set, kept best; "
                        "mean / median over cases)")
    table.add_column("system")
    for name in names:
        table.add_column(name, justify="right")
    cells = {(row["set"], row["system"]): row for row in result.closer if row["kept"] == "best"}
    for system in result.meta["systems"]:
        table.add_row(system, *(f"{cells[(name, system)]['closer_pct']:.1f}% / "
                                f"{cells[(name, system)]['closer_median_pct']:.1f}%" for name in names))
    console.print(table)
    console.print(f"Wrote {', '.join(sorted(FILES.values()))} to {out}/ in {result.meta['seconds']:.0f} s.")

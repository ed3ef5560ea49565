"""Quality against search budget (issue 14): how much closer sessions get as each step's
search budget grows, and what a step then costs.

Targets are the unseen sets of ``core/unseen.py`` of the same names: ``presets``, a random
chain of 1-5 built-in effects with sampled knobs on a random preset; ``varied``, the same
on held-out generated patches ``varied-<seed>`` (sounds no shipped model heard). Input
and target go to ``suggest`` as WAV files, as a user's would (``unseen.suggest_case``). Budget 0 is the plain models'
session (search off); the others search under that many ms per step, so their figures
depend on the machine's speed and load.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serumrnn.core.errors import ParameterError
from serumrnn.core.reporting import csv_text, machine_text
from serumrnn.core.runtime import ProgressReporter, atomic_output, progress_reporter, staged_output_dir

TARGET_SETS = ("presets", "varied")
DEFAULT_BUDGETS = (0, 50, 100, 200, 300, 600)
FILES = {"csv": "budget_sessions.csv", "summary": "budget_summary.csv", "json": "budget.json",
         "figure": "budget.png"}


def check_study(kinds: Sequence[str], count: int, budgets: Sequence[float]) -> None:
    unknown = [kind for kind in kinds if kind not in TARGET_SETS]
    if unknown or not kinds:
        raise ParameterError(f"Unknown target set {unknown[0] if unknown else ''!r}; choose from {', '.join(TARGET_SETS)}.")
    if count < 1:
        raise ParameterError(f"--pairs is {count}; give 1 or more targets per set.")
    if not budgets or any(not np.isfinite(b) or b < 0 for b in budgets):
        raise ParameterError("--budgets needs one or more budgets of 0 or more ms, e.g. 0,100,300.")


def budget_study(bundle: Any = None, *, kinds: Sequence[str] = TARGET_SETS, count: int = 24,
                 budgets: Sequence[float] = DEFAULT_BUDGETS, seed: int = 0, selector: str = "rnn",
                 tolerance: int = 1, progress: ProgressReporter | bool | None = None) -> list[dict]:
    """One row per (target, budget): % closer on MSSMAE of the kept step, steps, and the
    ms and renders of every step run."""
    from serumrnn.core.registry import get_plugin_manager
    from serumrnn.core.session import resolve_bundle
    from serumrnn.core.unseen import build_cases, suggest_case

    check_study(kinds, count, budgets)
    rack = get_plugin_manager().rack("builtin")
    loaded = resolve_bundle(bundle, rack)
    cases = [case for kind in kinds for case in build_cases(kind, count, seed, rack=rack, loudness=loaded.loudness)]
    sessions = progress_reporter(progress).task("sessions", len(cases) * len(budgets))
    rows = []
    with tempfile.TemporaryDirectory(prefix="serumrnn-budget-") as folder:
        suggest_case(cases[0], Path(folder), rack, bundle=loaded, search=False)  # load models before timing
        for case in cases:
            for budget in budgets:
                session = suggest_case(case, Path(folder), rack, bundle=loaded, selector=selector, tolerance=tolerance,
                                       seed=seed, search=budget > 0, budget_ms=float(budget))
                rows.append({
                    "set": case.meta["set"], "index": int(case.case_id.rsplit("-", 1)[1]),
                    "source": case.meta["source"], "hidden": " ".join(case.true_chain), "budget_ms": float(budget),
                    "closer_pct": session.closer_pct(session.best_metrics, "mssmae"),
                    "initial": session.initial_metrics["mssmae"], "final": session.best_metrics["mssmae"],
                    "steps": len(session.steps), "kept": session.best_index,
                    "step_ms": [step.seconds * 1000 for step in session.steps],
                    "renders": [step.renders for step in session.steps],
                })
                sessions.advance(1)
    return rows


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Per (set, budget): mean % closer, aggregate % closer (of summed distances), median
    and p95 ms per step, mean renders per step, sessions."""
    summary = []
    for kind in dict.fromkeys(row["set"] for row in rows):
        for budget in dict.fromkeys(row["budget_ms"] for row in rows):
            group = [row for row in rows if row["set"] == kind and row["budget_ms"] == budget]
            ms = [value for row in group for value in row["step_ms"]]
            renders = [value for row in group for value in row["renders"]]
            initial, final = sum(row["initial"] for row in group), sum(row["final"] for row in group)
            summary.append({
                "set": kind, "budget_ms": budget, "sessions": len(group),
                "closer_pct": float(np.mean([row["closer_pct"] for row in group])),
                "aggregate_closer_pct": 100.0 * (initial - final) / initial if initial else 0.0,
                "step_median_ms": float(np.median(ms)) if ms else None,
                "step_p95_ms": float(np.percentile(ms, 95)) if ms else None,
                "renders_per_step": float(np.mean(renders)) if renders else None,
            })
    return summary


def plot_budget(summary: Sequence[dict], path: str | os.PathLike, *, title: str = "") -> Path:
    """% closer on MSSMAE against the median ms per step, one line per target set."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    for kind in dict.fromkeys(row["set"] for row in summary):
        rows = [row for row in summary if row["set"] == kind]
        axis.plot([row["step_median_ms"] for row in rows], [row["closer_pct"] for row in rows], marker="o", label=kind)
        for row in rows:
            axis.annotate(f"{row['budget_ms']:g}", (row["step_median_ms"], row["closer_pct"]), fontsize=7,
                          textcoords="offset points", xytext=(3, -9))
    axis.set_xlabel("median ms per step (labels: budget in ms; 0 = no search)")
    axis.set_ylabel("mean % closer on MSSMAE")
    axis.set_title(title or "Quality against search budget", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    target = Path(path)
    with atomic_output(target, suffix=".png") as temp:
        figure.savefig(temp, dpi=110, format="png")
    return target


def write_study(rows: Sequence[dict], summary: Sequence[dict], out_dir: str | os.PathLike, *, meta: dict) -> Path:
    """The sessions and summary as CSV, everything as JSON and the figure, all or nothing."""
    import json

    with staged_output_dir(out_dir, what="the budget study") as staging:
        for name, table in (("csv", rows), ("summary", summary)):
            (staging / FILES[name]).write_text(csv_text(table), newline="")
        (staging / FILES["json"]).write_text(json.dumps({"meta": meta, "summary": summary, "sessions": rows},
                                                        indent=2) + "\n")
        plot_budget(summary, staging / FILES["figure"], title=f"Quality against search budget ({meta['bundle']}, "
                                                             f"{meta['machine']})")
    return Path(out_dir)


def run_study(bundle: Any, out_dir: str | os.PathLike, **options: Any) -> tuple[list[dict], list[dict], dict]:
    """``budget_study`` then ``write_study``: rows, summary and meta."""
    started = time.perf_counter()
    from serumrnn.core.session import bundle_path

    name = bundle.path.name if hasattr(bundle, "path") else bundle_path(bundle).name
    meta = {"bundle": name, "machine": machine_text(), **{k: v for k, v in options.items() if k != "progress"}}
    rows = budget_study(bundle, **options)
    summary = summarise(rows)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    write_study(rows, summary, out_dir, meta=meta)
    return rows, summary, meta

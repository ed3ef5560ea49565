"""Evaluation of a model bundle on a dataset's held-out split, in the
shapes of the paper's Tables 2-6 and Figure 4, plus per-step latency.

- Table 2, parameter models: pairs (input = a sub-chain render lacking the effect,
  target = the full chain) from the split; the output appends the effect with the
  predicted knobs after the sub-chain, where a session puts it, and (second column)
  inserts it at its place in the hidden order. Mean error of input and outputs against
  the target for the six metrics.
- Table 3, selection: teacher forcing on the stored renders of the split. The
  dataset's chain order is random, so effects that commute make the exact next effect
  partly unidentifiable: we count both "picks an effect the target still needs" and
  "picks the exact next effect of the hidden order". SerumCNN: exact effect set and
  per-label accuracy by number of effects.
- Tables 4-6, Figure 4, latency: sessions from the preset's dry render to a chain's
  render, ``pairs / 5`` chains per length 1..5. A session's trajectory with tolerance t
  is a prefix of the trajectory run without stopping (each step depends only on
  earlier ones), so every system runs once to the end per pair and the stopping rule
  (``core.session.steps_before_stopping``) is applied afterwards for each tolerance.
  Every system, oracle and cnn-1s included, gets the same stopping rule, and every
  figure is given for both keep rules (``KEEP_RULES``).

Every draw is derived from ``seed`` and the chain ids, and the work is cut into chunks
planned from them alone, so the figures (not the timings) are identical for any number
of worker processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from serumrnn.core import paper_figures as paper
from serumrnn.core.errors import BundleError, DatasetError, ParameterError
from serumrnn.core.loudness import convention_from_json
from serumrnn.core.metrics import LOWER_IS_BETTER, METRICS, TABLE_SCALE
from serumrnn.core.reporting import csv_text, machine_text, markdown_table
from serumrnn.core.runtime import (
    ProgressReporter, WorkerPool, progress_reporter, single_threaded, staged_output_dir,
)
from serumrnn.core.search import DEFAULT_BUDGET_MS, DEFAULT_MAX_RENDERS, SEARCH_ONLY, SearchOptions
from serumrnn.core.session import best_step_index, steps_before_stopping

SYSTEMS: tuple[str, ...] = ("oracle", "rnn", "ni", "cnn", "random", "cnn-1s")
SYSTEM_LABELS: Mapping[str, str] = {
    "oracle": "Oracle", "rnn": "SerumRNN", "ni": "SerumRNN NI", "cnn": "SerumCNN", "random": "Random",
    "cnn-1s": "SerumCNN 1S", "rnn+search": "SerumRNN + search", "random+search": "Random + search",
    "search": "Search alone",
}
# Hybrid systems (core/search.py, run with --search): a selector's pick and the parameter
# models' knobs, then a budgeted search every step; "search" uses no model at all.
SEARCH_SYSTEMS: Mapping[str, str | None] = {"rnn+search": "rnn", "random+search": "random", "search": None}
# Which step of a stopped session is its final sound: "best", the closest step on the
# stopping metric (what a session offers as best); "last", the last step applied (the
# paper's rule: its Figure 4 optimum at one tolerated bad step exists only if the final
# sound is the last step, since with keep-best more tolerance can never do worse).
KEEP_RULES: tuple[str, ...] = ("best", "last")
# Systems with a step-by-step row in Table 3 (teacher forcing); cnn has its own rows.
STEP_SELECTORS: tuple[str, ...] = ("rnn", "ni", "oracle", "random")
CHAIN_LENGTHS: tuple[int, ...] = (1, 2, 3, 4, 5)
MAX_TOLERANCE = 4
# Parameter-model pairs per worker task: fixed, so batching never depends on --workers.
PARAM_CHUNK = 16
NEEDED = "picks an effect the target still needs"
EXACT = "picks the exact next effect of the hidden order"
CNN_EXACT_SET = "exact effect set (probability > 0.5), by number of effects"
CNN_PER_LABEL = "per-effect accuracy, by number of effects"
PROGRESS_SYSTEMS = {"rnn": 5, "random": 6}  # Table number of each system's progress table
FILES = {
    "markdown": "results.md", "json": "summary.json", "figure": "figure4_tolerance.png",
    "table2": "table2_parameter_models.csv", "table3": "table3_selection.csv", "table4": "table4_systems.csv",
    "table5": "table5_rnn.csv", "table6": "table6_random.csv", "figure4": "figure4_tolerance.csv",
    "latency": "latency.csv",
}


@attrs.frozen
class EvaluationOptions:
    """pairs: session pairs (Tables 4-6, Figure 4, latency), ``pairs / 5`` per chain
    length; param_pairs: pairs per effect for Table 2; tolerance and metric: the
    stopping rule of Tables 4-6; split: the dataset split; workers: processes;
    progress: where each table's progress is reported (``core.runtime.ProgressReporter``)."""

    pairs: int = 1000
    param_pairs: int = 1000
    seed: int = 0
    metric: str = "mssmae"
    tolerance: int = 1
    split: str = "test"
    workers: int = 1
    progress: ProgressReporter | bool | None = None
    # Also run SEARCH_SYSTEMS with this time budget per step (their figures depend on speed).
    search: bool = False
    search_budget_ms: float | None = DEFAULT_BUDGET_MS
    # The systems of Tables 4-6 and the latency (None: every one the bundle can run); Tables 2
    # and 3 are made whatever this says.
    systems: tuple[str, ...] | None = None

    def check(self) -> None:
        if self.search:
            SearchOptions(budget_ms=self.search_budget_ms)  # one sentence for a bad budget
        if self.metric not in METRICS:
            raise ParameterError(f"Unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}.")
        if self.pairs < len(CHAIN_LENGTHS):
            raise ParameterError(f"--pairs is {self.pairs}; give at least {len(CHAIN_LENGTHS)} (one per chain length).")
        if self.param_pairs < 1:
            raise ParameterError(f"--param-pairs is {self.param_pairs}; give 1 or more pairs per effect.")
        if not 0 <= self.tolerance <= MAX_TOLERANCE:
            raise ParameterError(f"Tolerance is {self.tolerance}; give 0 to {MAX_TOLERANCE} bad steps.")
        if self.workers < 1:
            raise ParameterError(f"--workers is {self.workers}; give 1 or more worker processes.")
        for name in self.systems or ():
            if name in SEARCH_SYSTEMS and not self.search:
                raise ParameterError(f"System {name} runs with --search; add --search or leave it out of --systems.")
            if name not in SYSTEMS and name not in SEARCH_SYSTEMS:
                raise ParameterError(f"Unknown system {name!r}; choose from {', '.join((*SYSTEMS, *SEARCH_SYSTEMS))}.")
        if self.systems is not None and not self.systems:
            raise ParameterError("--systems names no system; give at least one.")


# -- results ---------------------------------------------------------------------------------
STEP_COLUMNS = tuple(f"step_{length}" for length in CHAIN_LENGTHS)
# Systems set against SerumRNN in the "where other systems beat it" lines.
RIVALS: tuple[str, ...] = ("ni", "cnn", "cnn-1s")
PROGRESS_TEXT = ("Initial and final mean error against the target, Δ and Δ% (of the initial mean), per keep rule, "
                 "and the mean Δ of each step over the sessions that applied it (row *sessions*: how many).")


def stopping_text(tolerance: int, metric: str) -> str:
    """The stopping and keep rules of Tables 4-6, said once for every table that uses them."""
    name = metric.upper()
    return (f"Every system, oracle and SerumCNN 1S included, stops by the same rule: tolerate {tolerance} step(s) "
            f"that make {name} worse, stop at the next one. *kept best*: the final sound is the step closest on "
            f"{name} (what a session offers as its best). *kept last*: the final sound is the last step applied, "
            "the paper's rule (it does not revert to an earlier step, and its Figure 4 finds an optimum at one "
            "tolerated bad step, which keep-best cannot have: with keep-best more tolerance never does worse). "
            "The paper's oracle and SerumCNN 1S ran to their end without the stopping rule.")


def systems_markdown(rows: Sequence[Mapping]) -> str:
    """Table 4 (and the unseen sets' Table 4) as Markdown."""
    return markdown_table(rows, [("source", "source"), ("system", "system"), ("kept", "kept"),
                                  *((m, m.upper()) for m in METRICS), ("pairs", "pairs"),
                                  ("renders_per_step", "renders/step"), ("ms_per_step", "ms/step"),
                                  ("revise_renders", "revision renders"), ("revise_ms", "revision ms")])


def progress_markdown(rows: Sequence[Mapping]) -> str:
    """Tables 5/6 (and the unseen sets' per-system Table 5) as Markdown."""
    return markdown_table(rows, [("source", "source"), ("kept", "kept"), ("metric", "metric"),
                                  ("initial", "init."), ("final", "final"), ("delta", "Δ"), ("delta_pct", "Δ%"),
                                  *((column, f"Δ step {column.split('_')[1]}") for column in STEP_COLUMNS)])


def _closer(metric: str, value: float, reference: float) -> bool:
    """Whether a mean Δ of ``metric`` beats the reference's (a larger fall, or rise for PCC)."""
    return value < reference if LOWER_IS_BETTER[metric] else value > reference


def rival_lines(system_rows: Sequence[Mapping], selection_rows: Sequence[Mapping] = (), *,
                reference: str = "rnn", rivals: Sequence[str] = RIVALS) -> list[str]:
    """Plain sentences, from the numbers, on where each rival beats ``reference``: per
    keep rule the Table 4 metrics whose mean Δ is better, and Table 3's needed-effect
    accuracy."""
    ours = {(row["system"], row["kept"]): row for row in system_rows if row["source"] == "ours"}
    label = SYSTEM_LABELS.get(reference, reference)
    lines = []
    for rival in rivals:
        for keep in KEEP_RULES:
            mine, theirs = ours.get((reference, keep)), ours.get((rival, keep))
            if mine is None or theirs is None:
                continue
            won = [f"{m.upper()} ({theirs[m]:.2f} against {mine[m]:.2f})" for m in METRICS
                   if _closer(m, theirs[m], mine[m])]
            rival_label = SYSTEM_LABELS.get(rival, rival)
            lines.append(f"{rival_label} beats {label} on {len(won)} of {len(METRICS)} metrics (kept {keep})"
                         + (": " + ", ".join(won) + "." if won else "."))
    accuracy = {row["system"]: row["all"] for row in selection_rows
                if row["source"] == "ours" and row["measure"] == NEEDED and row["all"] is not None}
    for rival in rivals:
        if rival in accuracy and reference in accuracy:
            verb = "more often than" if accuracy[rival] > accuracy[reference] else "no more often than"
            lines.append(f"{SYSTEM_LABELS.get(rival, rival)} picks an effect the target still needs {verb} {label} "
                         f"({accuracy[rival]:.3f} against {accuracy[reference]:.3f}, Table 3).")
    return lines or [f"No rival of {label} was evaluated."]


@attrs.define
class EvaluationResult:
    """All tables as lists of flat rows (the CSV files hold exactly these rows).

    ``meta``: what was evaluated and how (bundle, dataset, split, seed, pair counts,
    seconds). Metric values are in table units (MSE, MAE, PCC and MSSMAE x 100).
    Rows whose ``source`` starts with ``paper`` are the paper's figures. ``sessions``:
    per pair, the hidden chain and each system's effects, steps applied and step kept.
    """

    meta: dict
    parameter_models: list[dict]
    selection: list[dict]
    systems: list[dict]
    progress: dict[str, list[dict]]
    tolerance_curve: list[dict]
    latency: list[dict]
    sessions: list[dict] = attrs.field(factory=list)

    def tables(self) -> dict[str, list[dict]]:
        tables = {"table2": self.parameter_models, "table3": self.selection, "table4": self.systems,
                  "figure4": self.tolerance_curve, "latency": self.latency}
        for system, number in PROGRESS_SYSTEMS.items():
            tables[f"table{number}"] = self.progress.get(system, [])
        return tables

    def to_json(self) -> dict:
        return {"meta": self.meta, **{name: rows for name, rows in self.tables().items()}, "sessions": self.sessions}

    def to_csv(self, out_dir: str | os.PathLike) -> list[Path]:
        """One CSV per table in ``out_dir`` (an existing folder)."""
        written = []
        for name, rows in self.tables().items():
            path = Path(out_dir) / FILES[name]
            path.write_text(csv_text(rows))
            written.append(path)
        return written

    def to_markdown(self) -> str:
        meta = self.meta
        group_title = paper.GROUP_TITLES.get(meta["preset_group"], meta["preset_group"])
        metric = meta["metric"].upper()
        parts = [
            f"## Evaluation of bundle `{meta['bundle_name']}` ({group_title}, rack {meta['rack']})",
            "",
            f"Dataset `{meta['dataset']}`, {meta['split']} split ({meta['split_chains']} chains), seed {meta['seed']}; "
            f"command: `{meta['command']}`. MSE, MAE, PCC and MSSMAE are x 100; lower is closer except PCC. "
            "Rows marked *paper* are the SerumRNN paper's figures (its preset group in brackets).",
            "",
            "### Table 2: effect parameter models",
            "",
            f"Mean error against the target of the input (a sub-chain lacking the effect) and of the output "
            f"with the predicted knobs, up to {meta['param_pairs']} pairs per effect. *output*: the effect "
            "appended after the sub-chain, where a session puts it (Δ, Δ% are of this output); *in place*: "
            "the effect inserted at its place in the hidden order (as earlier versions of this table did).",
            "",
            markdown_table(self.parameter_models, [
                ("effect", "effect"), ("metric", "metric"), ("pairs", "pairs"), ("input", "input"),
                ("output", "output"), ("delta", "Δ"), ("delta_pct", "Δ%"), ("output_in_place", "in place"),
                ("delta_pct_in_place", "in place Δ%"), ("paper_input", "paper input"),
                ("paper_output", "paper output"), ("paper_delta", "paper Δ"), ("paper_delta_pct", "paper Δ%"),
            ]),
            "",
            "### Table 3: effect selection accuracy",
            "",
            "Teacher forcing on the stored renders; columns are the step number (SerumCNN: the number of "
            f"effects). *{NEEDED}*: any effect of the hidden chain not applied yet (the primary figure, since "
            f"effects applied in a random order often commute). *{EXACT}*: the paper's definition. "
            "*chance* is the exact expectation of a uniform pick among the unused effects.",
            "",
            markdown_table(self.selection, [
                ("source", "source"), ("system", "system"), ("measure", "measure"),
                *((column, column.split("_")[1]) for column in STEP_COLUMNS), ("all", "all"), ("n", "n"),
            ], digits=3),
            "",
            "### Table 4: all systems",
            "",
            f"Mean error Δ against the target (final - initial) over {meta['session_pairs']} sessions from the "
            f"preset's dry render to a chain's render (per chain length: {meta['pairs_per_length']}). "
            + stopping_text(meta["tolerance"], meta["metric"]),
            "",
            systems_markdown(self.systems),
            "",
            "### Where other systems beat SerumRNN",
            "",
            *(f"- {line}" for line in rival_lines(self.systems, self.selection)),
        ]
        for system, number in PROGRESS_SYSTEMS.items():
            rows = self.progress.get(system)
            if not rows:
                continue
            parts += [
                "",
                f"### Table {number}: {SYSTEM_LABELS[system]}, step by step",
                "",
                PROGRESS_TEXT,
                "",
                progress_markdown(rows),
            ]
        curve_rows = []
        for system, keep in dict.fromkeys((row["system"], row["kept"]) for row in self.tolerance_curve):
            values = {row["tolerance"]: row[meta["metric"]] for row in self.tolerance_curve
                      if (row["system"], row["kept"]) == (system, keep)}
            curve_rows.append({"system": system, "kept": keep,
                               **{f"t{t}": values.get(t) for t in range(MAX_TOLERANCE + 1)}})
        parts += [
            "",
            f"### Figure 4: final {metric} Δ against tolerated bad steps",
            "",
            f"![final {metric} delta vs tolerated bad steps]({FILES['figure']})",
            "",
            "Solid lines keep the last step applied (the paper's rule), dashed lines the best step.",
            "",
            markdown_table(curve_rows, [("system", "system"), ("kept", "kept"),
                                         *((f"t{t}", f"tolerate {t}") for t in range(MAX_TOLERANCE + 1))]),
            "",
            "### Latency",
            "",
            f"Measured during this run ({meta['workers']} worker process(es), {meta['machine']}). A step is "
            "selection + knob prediction + render + features + metrics; a session is its set-up plus the steps "
            f"it applies with tolerance {meta['tolerance']}, plus the revision of its kept steps for the systems "
            "with search. The paper reports about "
            f"{paper.STEP_LATENCY_MS:.0f} ms per step.",
            "",
            markdown_table(self.latency, [
                ("system", "system"), ("step_median_ms", "step median ms"), ("step_p95_ms", "step p95 ms"),
                ("steps", "steps"), ("session_median_ms", "session median ms"),
                ("session_p95_ms", "session p95 ms"), ("sessions", "sessions"),
            ], digits=1),
            "",
        ]
        if meta.get("notes"):
            parts += ["Notes:", "", *(f"- {note}" for note in meta["notes"]), ""]
        return "\n".join(parts)

    def plot_tolerance(self, path: str | os.PathLike) -> Path:
        """Figure 4 as PNG: mean final Δ of the stopping metric against tolerated bad steps."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from serumrnn.core.audio import atomic_output

        metric = self.meta["metric"]
        figure, axis = plt.subplots(figsize=(8.4, 4.2), layout="constrained")
        for number, system in enumerate(dict.fromkeys(row["system"] for row in self.tolerance_curve)):
            for keep, style in (("last", "-"), ("best", "--")):
                rows = [row for row in self.tolerance_curve if row["system"] == system and row["kept"] == keep]
                axis.plot([row["tolerance"] for row in rows], [row[metric] for row in rows], style, marker="o",
                          color=f"C{number}", label=f"{SYSTEM_LABELS.get(system, system)} ({keep})")
        axis.set_xticks(range(MAX_TOLERANCE + 1))
        axis.set_xlabel("tolerated bad steps")
        axis.set_ylabel(f"mean final Δ {metric.upper()}" + (" (x100)" if TABLE_SCALE[metric] != 1 else ""))
        axis.set_title(f"Final error Δ vs tolerated bad steps ({self.meta['bundle_name']}, "
                       f"{self.meta['session_pairs']} pairs)", fontsize=10)
        axis.grid(alpha=0.3)
        if self.tolerance_curve:
            axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # two lines per system: beside the axes
        else:  # only systems with search ran (--systems), and they revise their kept steps
            axis.text(0.5, 0.5, "no system without search was run", ha="center", va="center", transform=axis.transAxes)
        with atomic_output(Path(path), suffix=".png") as temp:
            figure.savefig(temp, dpi=110, format="png")
        plt.close(figure)
        return Path(path)

    def write(self, out_dir: str | os.PathLike, *, replace: bool = False) -> Path:
        """Markdown, CSV, JSON and the PNG into ``out_dir``, all or nothing."""
        with staged_output_dir(out_dir, replace=replace, what="the evaluation") as staging:
            self.to_csv(staging)
            self.plot_tolerance(staging / FILES["figure"])
            (staging / FILES["markdown"]).write_text(self.to_markdown())
            (staging / FILES["json"]).write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return Path(out_dir)


# -- opening and checking ------------------------------------------------------------------------
def open_for_evaluation(bundle_path: str | os.PathLike, data_dir: str | os.PathLike, split: str = "test"):
    """``(reader, rack, bundle)`` after checking that they belong together: the
    dataset's rack exists, the bundle is for it (effects, knobs, audio settings) and for
    the dataset's feature settings, every parameter model is there, and the split has chains."""
    from serumrnn.core.bundle import model_spec_key
    from serumrnn.core.features import FeatureSettings
    from serumrnn.core.registry import get_plugin_manager
    from serumrnn.core.session import resolve_bundle
    from serumrnn.core.views import DatasetReader

    reader = DatasetReader(data_dir)
    rack = get_plugin_manager().rack(reader.metadata["config"]["rack"])
    # Only the knob fields that change the sound count (a relabelled knob is the same knob).
    dataset_specs = {name: [model_spec_key(spec.to_json()) for spec in reader.specs[name]] for name in reader.effect_names}
    rack_specs = {name: [model_spec_key(spec.to_json()) for spec in rack.effect(name).params] for name in rack.effect_names}
    if tuple(reader.effect_names) != rack.effect_names or dataset_specs != rack_specs:
        raise DatasetError(
            f"Dataset '{reader.path}' was generated with other effects or knobs than rack {rack.name} has now; "
            "generate it again."
        )
    bundle = resolve_bundle(str(bundle_path), rack)
    if FeatureSettings.from_json(reader.metadata["features"]) != bundle.feature_settings:
        raise BundleError(
            f"Bundle '{bundle.path}' was trained with other feature settings than dataset '{reader.path}'; "
            "evaluate it on a dataset made with its settings."
        )
    missing = [name for name in rack.effect_names if not bundle.has_param_model(name)]
    if missing:
        raise BundleError(
            f"Bundle '{bundle.path}' has no parameter model for {', '.join(missing)}; train it with "
            "`serumrnn train params --effect all`."
        )
    dataset_loudness = convention_from_json(reader.metadata["config"].get("loudness"), where=f"Dataset '{reader.path}'")
    if dataset_loudness != bundle.loudness:
        raise BundleError(
            f"Bundle '{bundle.path}' was trained under loudness convention {bundle.loudness.name} but dataset "
            f"'{reader.path}' holds renders under {dataset_loudness.name}; evaluate it on a dataset of its convention."
        )
    if not any(chain["order"] for chain in reader.chains_in(split)):
        raise DatasetError(
            f"Dataset '{reader.path}' has no chains in its {split} split; generate a larger dataset "
            "(more --chains-per-combo) to evaluate on."
        )
    return reader, rack, bundle


def chain_seed(seed: int, chain_id: str) -> int:
    """A per-chain seed from the run's seed and the chain id (random draws per pair)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(chain_id.encode())]).generate_state(1)[0])


def _chain_payload(chain: Mapping) -> dict:
    return {"chain_id": chain["chain_id"], "preset": chain["preset"], "order": list(chain["order"]),
            "knobs": {name: dict(chain["knobs"][name]) for name in chain["order"]}}


def _chain_of(payload: Mapping, effects: Sequence[str] | None = None) -> list[tuple[str, dict]]:
    """The chain's ``(effect, knobs)`` in order, restricted to ``effects`` when given."""
    return [(name, payload["knobs"][name]) for name in payload["order"] if effects is None or name in effects]


# -- worker processes ------------------------------------------------------------------------
_worker: dict[str, Any] = {}
_WORKER_PRELOAD = ("serumrnn.core.evaluation", "serumrnn.core.session", "serumrnn.core.bundle",
                   "serumrnn.core.registry", "librosa", "scipy.fft", "pedalboard", "torch")


def _init_worker(bundle_path: str, rack_name: str, metric: str) -> None:
    """Load the rack and bundle once per worker process, single-threaded BLAS."""
    from serumrnn.core.bundle import ModelBundle
    from serumrnn.core.features import LibrosaFeatureExtractor
    from serumrnn.core.registry import get_plugin_manager

    manager = get_plugin_manager()
    rack = manager.rack(rack_name)
    limits = single_threaded()
    limits.__enter__()  # for the worker's lifetime
    _worker.update(rack=rack, bundle=ModelBundle.load(bundle_path, rack=rack), manager=manager,
                   extractor=LibrosaFeatureExtractor(), metric=metric, limits=limits)


def _parameter_chunk(task: Mapping) -> list[list[list[float]]]:
    """Table 2 for a chunk of one effect's pairs: per pair ``[input metrics, output
    metrics, in-place output metrics]`` against the target, in ``METRICS`` order. The
    output appends the effect after the sub-chain, as a session does; the in-place
    output inserts it at its place in the hidden order."""
    from serumrnn.core.metrics import MetricReference

    rack, bundle, extractor = _worker["rack"], _worker["bundle"], _worker["extractor"]
    effect = task["effect"]
    references: dict[str, MetricReference] = {}
    inputs = []
    for chain, applied in task["items"]:
        if chain["chain_id"] not in references:
            target = rack.render(chain["preset"], _chain_of(chain), loudness=bundle.loudness)
            references[chain["chain_id"]] = MetricReference(target, extractor.extract(target, rack.sample_rate))
        # the sub-chain's output before levelling is what the appended effect shapes
        raw = rack.process(rack.level_source(chain["preset"], bundle.loudness), _chain_of(chain, applied))
        audio = bundle.loudness.apply(raw, rack.sample_rate)
        inputs.append((audio, extractor.extract(audio, rack.sample_rate), raw))
    references_in_order = [references[chain["chain_id"]] for chain, _ in task["items"]]
    predicted = [rack.measure_knobs(effect, raw, reference.audio, knobs, classes)
                 for (_, _, raw), reference, (knobs, classes) in zip(inputs, references_in_order, bundle.predict_knobs_ranked(
                     effect, [features for _, features, _ in inputs], [reference.features for reference in references_in_order]))]
    results = []
    for (chain, applied), (audio, features, _), reference, knobs in zip(task["items"], inputs, references_in_order,
                                                                      predicted):
        appended = [*_chain_of(chain, applied), (effect, knobs)]
        in_place = [(name, knobs if name == effect else values) for name, values in _chain_of(chain, [*applied, effect])]
        after = _measure_chain(rack, extractor, bundle, chain["preset"], appended, reference)
        # the same chain when the effect comes last in the hidden order too
        after_in_place = after if in_place == appended else _measure_chain(
            rack, extractor, bundle, chain["preset"], in_place, reference)
        before = reference.compare(audio, features)
        results.append([[values[m] for m in METRICS] for values in (before, after, after_in_place)])
    return results


def _measure_chain(rack, extractor, bundle, preset: str, chain, reference) -> dict[str, float]:
    output = rack.render(preset, chain, loudness=bundle.loudness)
    return reference.compare(output, extractor.extract(output, rack.sample_rate))


def _session_pair(task: Mapping) -> dict:
    """Every system's full trajectory (no stopping) on one pair: metrics before and after
    each step, the chosen effects, and the time of each step and of the set-up."""
    from serumrnn.core.session import run_session

    rack, bundle, extractor, manager = _worker["rack"], _worker["bundle"], _worker["extractor"], _worker["manager"]
    chain = task["chain"]
    # the chain on the levelled source, as the dataset's renders and the session's steps
    target = rack.render(chain["preset"], _chain_of(chain), loudness=bundle.loudness)
    records = {}
    for system in task["systems"]:
        selector, search = system_setup(manager, system, task.get("search_budget_ms", DEFAULT_BUDGET_MS))
        started = time.perf_counter()
        revise = search.revise_renders if search else 0
        session = run_session(chain["preset"], target, rack=rack, bundle=bundle, selector=selector,
                              metric=_worker["metric"], tolerance=len(rack.effect_names),
                              true_chain=chain["order"] if selector.needs_true_chain else None,
                              seed=task["seed"], extractor=extractor,
                              search=attrs.evolve(search, revise_renders=0) if search else search)
        records[system] = session_record(session, time.perf_counter() - started)
        if revise:
            add_revisions(records[system], session, rack, _worker["metric"], task["tolerance"], revise)
    return {"chain_id": chain["chain_id"], "length": len(chain["order"]), "order": chain["order"], "systems": records}


def system_setup(manager, system: str, budget_ms: float | None) -> tuple[Any, SearchOptions | bool]:
    """The selector and search of an evaluated system: the paper's systems do not search."""
    if system not in SEARCH_SYSTEMS:
        return manager.selectors.get(system), False
    selector = SEARCH_SYSTEMS[system]
    return (manager.selectors.get(selector) if selector else SEARCH_ONLY,
            SearchOptions(budget_ms=budget_ms, use_models=selector is not None))


def session_record(session, total_seconds: float) -> dict:
    """What the tables need of a session run to the end: metrics before and after each
    step (``METRICS`` order), the effects, each step's time and the set-up time."""
    seconds = [step.seconds for step in session.steps]
    return {
        "initial": [session.initial_metrics[m] for m in METRICS],
        "steps": [[step.metrics[m] for m in METRICS] for step in session.steps],
        "effects": [step.effect for step in session.steps],
        "seconds": seconds,
        "renders": [step.renders for step in session.steps],
        "setup_seconds": max(total_seconds - sum(seconds), 0.0),
    }


@contextlib.contextmanager
def _task_runner(bundle, rack, metric: str, workers: int) -> Iterator[Callable]:
    """``run(function, tasks, advance, sizes=None) -> results in task order``, calling
    ``advance(sizes[i])`` (default 1) as task ``i`` finishes: in this process for one
    worker, else in a process pool whose workers load the rack and bundle once."""
    def size(sizes, index: int) -> int:
        return sizes[index] if sizes else 1

    if workers <= 1:
        from serumrnn.core.features import LibrosaFeatureExtractor
        from serumrnn.core.registry import get_plugin_manager

        _worker.update(rack=rack, bundle=bundle, manager=get_plugin_manager(), extractor=LibrosaFeatureExtractor(),
                       metric=metric)

        def run_here(function, tasks, advance, sizes=None):
            results = []
            for index, task in enumerate(tasks):
                results.append(function(task))
                advance(size(sizes, index))
            return results

        try:
            with single_threaded():
                yield run_here
        finally:
            _worker.clear()
        return

    with WorkerPool(workers, preload=_WORKER_PRELOAD, initializer=_init_worker,
                    initargs=(str(bundle.path), rack.name, metric)) as pool:
        def run_pool(function, tasks, advance, sizes=None):
            return pool.run(function, tasks, done=lambda index: advance(size(sizes, index)))

        yield run_pool


# -- Table 2 ------------------------------------------------------------------------------------
def plan_parameter_pairs(reader, effect: str, pairs: int, seed: int, split: str) -> list[tuple[dict, list[str]]]:
    """Up to ``pairs`` (chain, applied sub-chain without ``effect``) of the split, drawn
    without replacement from every such pair (the parameter models' test pairs)."""
    candidates = []
    for chain in reader.chains_in(split):
        if effect not in chain["order"]:
            continue
        for applied in sorted(chain["renders"], key=lambda key: (len(key), key)):
            if effect not in applied:
                candidates.append((chain, list(applied)))
    if len(candidates) > pairs:
        rng = np.random.default_rng([seed, zlib.crc32(effect.encode())])
        chosen = np.sort(rng.choice(len(candidates), size=pairs, replace=False))
        candidates = [candidates[int(i)] for i in chosen]
    return [(_chain_payload(chain), applied) for chain, applied in candidates]


def _mean_rows(values: np.ndarray) -> np.ndarray:
    """Column means of ``(n, len(METRICS))`` values in table units."""
    scale = np.array([TABLE_SCALE[m] for m in METRICS])
    return values.mean(axis=0) * scale


def _pct(delta: float, initial: float) -> float:
    return float(100.0 * delta / abs(initial)) if initial else float("nan")


def parameter_model_rows(results: Mapping[str, np.ndarray], group: str) -> list[dict]:
    """Table 2 rows from per-effect arrays ``(n_pairs, 3, len(METRICS))`` [input, output
    appended, output in place]."""
    reference_group = paper.paper_group(group, paper.PARAMETER_MODELS)
    published = paper.PARAMETER_MODELS.get(reference_group, {}) if reference_group else {}
    rows = []
    for effect, values in results.items():
        before, after, in_place = (_mean_rows(values[:, column]) for column in range(3))
        for index, metric in enumerate(METRICS):
            theirs = published.get(effect, {}).get(metric, (None,) * 4)
            delta = float(after[index] - before[index])
            delta_in_place = float(in_place[index] - before[index])
            rows.append({
                "effect": effect, "metric": metric.upper(), "pairs": len(values), "input": float(before[index]),
                "output": float(after[index]), "delta": delta, "delta_pct": _pct(delta, before[index]),
                "output_in_place": float(in_place[index]), "delta_in_place": delta_in_place,
                "delta_pct_in_place": _pct(delta_in_place, before[index]),
                "paper_group": paper.GROUP_TITLES[reference_group] if theirs[0] is not None else "",
                "paper_input": theirs[0], "paper_output": theirs[1], "paper_delta": theirs[2],
                "paper_delta_pct": theirs[3],
            })
    return rows


# -- Table 3 ------------------------------------------------------------------------------------
def _model_step_picks(reader, bundle, kind: str, split: str) -> list[tuple[list[int], list[int]]]:
    """``(order, picks)`` per chain: rack indices of the hidden order and of the model's
    pick at each step (``most_probable_unused``, as a session), teacher forced, batched."""
    from torch.utils.data import DataLoader

    from serumrnn.core.bundle import selector_model_name
    from serumrnn.core.model_kinds import most_probable_unused

    name = selector_model_name(kind)
    model, model_kind = bundle.model(name), bundle.model_kind(name)
    effects = range(len(reader.effect_names))  # picks are rack indices
    out = []
    for batch in DataLoader(model_kind.training_view(reader, split), batch_size=32):
        logits = model_kind.infer(model, batch, bundle.device).double().cpu().numpy()
        labels, lengths = batch["labels"].numpy(), batch["length"].numpy()
        for row in range(len(lengths)):
            order = [int(label) for label in labels[row, : lengths[row]]]
            out.append((order, [most_probable_unused(logits[row, step], effects, order[:step])[0]
                                for step in range(len(order))]))
    return out


def _selector_step_picks(reader, selector, split: str, seed: int) -> list[tuple[list[int], list[int]]]:
    """``(order, picks)`` per chain for a registered selector, fed the stored features of
    each prefix of the hidden chain (teacher forcing), one step at a time."""
    from serumrnn.core.features import Features
    from serumrnn.core.interfaces import SelectionState
    from serumrnn.core.model_kinds import most_probable_unused

    names = reader.effect_names
    out = []
    for chain in reader.chains_in(split):
        order = list(chain["order"])
        if not order:
            continue
        ids = [chain["renders"][tuple(order[:step])] for step in range(len(order))] + [reader.target_id(chain)]
        mel, mfcc = reader.features(ids)
        features = [Features(db_mel=m * reader.top_db, mfcc=c, top_db=reader.top_db) for m, c in zip(mel, mfcc)]
        state = SelectionState(history=[features[0]], applied=[], target=features[-1], effect_names=names,
                               true_chain=order, rng=np.random.default_rng(chain_seed(seed, chain["chain_id"])))
        picks = []
        for step in range(len(order)):
            state.history, state.applied = features[: step + 1], order[:step]
            picked, _ = most_probable_unused(selector.probabilities(state), names, order[:step])
            picks.append(names.index(picked))
        out.append(([names.index(name) for name in order], picks))
    return out


def _step_rows(system: str, picks: Sequence[tuple[list[int], list[int]]]) -> list[dict]:
    """Two Table 3 rows (needed effect, exact next effect) from step picks."""
    rows = []
    for measure, hit in ((NEEDED, lambda order, step, pick: pick in order[step:]),
                         (EXACT, lambda order, step, pick: pick == order[step])):
        per_step: dict[int, list[float]] = {length: [] for length in CHAIN_LENGTHS}
        for order, chosen in picks:
            for step, pick in enumerate(chosen):
                per_step[step + 1].append(float(hit(order, step, pick)))
        rows.append(_accuracy_row("ours", system, measure, per_step))
    return rows


def _chance_rows(picks: Sequence[tuple[list[int], list[int]]], n_effects: int) -> list[dict]:
    """The exact expected accuracy of a uniform pick among unused effects, on the same steps."""
    needed: dict[int, list[float]] = {length: [] for length in CHAIN_LENGTHS}
    exact: dict[int, list[float]] = {length: [] for length in CHAIN_LENGTHS}
    for order, _ in picks:
        for step in range(len(order)):
            needed[step + 1].append((len(order) - step) / (n_effects - step))
            exact[step + 1].append(1.0 / (n_effects - step))
    return [_accuracy_row("expected", "chance", NEEDED, needed), _accuracy_row("expected", "chance", EXACT, exact)]


def _accuracy_row(source: str, system: str, measure: str, per_step: Mapping[int, list[float]]) -> dict:
    every = [value for values in per_step.values() for value in values]
    return {
        "source": source, "system": system, "measure": measure,
        **{f"step_{length}": float(np.mean(per_step[length])) if per_step[length] else None
           for length in CHAIN_LENGTHS},
        "all": float(np.mean(every)) if every else None, "n": len(every),
    }


def _cnn_rows(reader, bundle, split: str) -> list[dict]:
    """SerumCNN: exact effect set and per-effect accuracy by number of effects."""
    import torch
    from torch.utils.data import DataLoader

    from serumrnn.core.bundle import selector_model_name

    name = selector_model_name("cnn")
    model, model_kind = bundle.model(name), bundle.model_kind(name)
    exact: dict[int, list[float]] = {length: [] for length in CHAIN_LENGTHS}
    per_label: dict[int, list[float]] = {length: [] for length in CHAIN_LENGTHS}
    for batch in DataLoader(model_kind.training_view(reader, split), batch_size=64):
        predicted = (model_kind.probabilities(model_kind.infer(model, batch, bundle.device)) > 0.5).cpu()
        truth = batch["labels"] > 0.5
        for row in range(len(truth)):
            count = int(truth[row].sum())
            if count in exact:
                exact[count].append(float(bool(torch.equal(predicted[row], truth[row]))))
                per_label[count].append(float((predicted[row] == truth[row]).double().mean()))
    return [_accuracy_row("ours", "cnn", CNN_EXACT_SET, exact), _accuracy_row("ours", "cnn", CNN_PER_LABEL, per_label)]


def selection_rows(reader, bundle, manager, split: str, seed: int, group: str, advance: Callable[[int], None]) -> list[dict]:
    """Table 3: rnn, ni, oracle, random (needed / exact), chance, cnn, and the paper's rows."""
    n_effects = len(reader.effect_names)
    rows: list[dict] = []
    picks = None
    for system in STEP_SELECTORS:
        selector = manager.selectors.get(system)
        if selector.model_kind and not bundle.has_selector(selector.model_kind):
            advance(1)
            continue
        if selector.model_kind:
            picks = _model_step_picks(reader, bundle, selector.model_kind, split)
        else:
            picks = _selector_step_picks(reader, selector, split, seed)
        rows += _step_rows(system, picks)
        advance(1)
    if picks is not None:
        rows += _chance_rows(picks, n_effects)
    if bundle.has_selector("cnn"):
        rows += _cnn_rows(reader, bundle, split)
    advance(1)
    reference_group = paper.paper_group(group, paper.SELECTION_ACCURACY)
    if reference_group:
        for system, values in paper.SELECTION_ACCURACY[reference_group].items():
            measure = "accuracy by number of effects (the paper's measure)" if system == "cnn" else EXACT
            rows.append({"source": f"paper ({paper.GROUP_TITLES[reference_group]})", "system": system,
                         "measure": measure, **dict(zip(STEP_COLUMNS, values[:5])), "all": values[5], "n": None})
    return rows


# -- Tables 4-6, Figure 4, latency ---------------------------------------------------------
def plan_session_pairs(reader, pairs: int, seed: int, split: str) -> tuple[list[dict], dict[int, int]]:
    """``pairs / 5`` chains per length 1..5 (the remainder to the shortest lengths), drawn
    without replacement from the split; fewer where the split has fewer."""
    by_length: dict[int, list[dict]] = {length: [] for length in CHAIN_LENGTHS}
    for chain in reader.chains_in(split):
        if len(chain["order"]) in by_length:
            by_length[len(chain["order"])].append(chain)
    planned, counts = [], {}
    for position, length in enumerate(CHAIN_LENGTHS):
        wanted = pairs // len(CHAIN_LENGTHS) + (1 if position < pairs % len(CHAIN_LENGTHS) else 0)
        candidates = by_length[length]
        if len(candidates) > wanted:
            rng = np.random.default_rng([seed, length])
            candidates = [candidates[int(i)] for i in np.sort(rng.choice(len(candidates), wanted, replace=False))]
        counts[length] = len(candidates)
        planned += [_chain_payload(chain) for chain in candidates]
    return planned, counts


def session_outcome(record: Mapping, metric: str, tolerance: int, keep: str = "best") -> tuple[int, int]:
    """``(applied, kept)``: steps a session with ``tolerance`` applies and the step kept
    as its final sound (0 = the input) under the keep rule ``keep`` (``KEEP_RULES``).
    The same rule for every system: one-shot and oracle trajectories are cut too."""
    index = METRICS.index(metric)
    values = [step[index] for step in record["steps"]]
    applied = steps_before_stopping(record["initial"][index], values, metric, tolerance)
    if keep == "last":
        return applied, applied
    if keep != "best":
        raise ParameterError(f"Unknown keep rule {keep!r}; choose one of {', '.join(KEEP_RULES)}.")
    return applied, best_step_index(record["initial"][index], values[:applied], metric)


def final_metrics(record: Mapping, kept: int) -> list[float]:
    """The metrics of a session's final sound: the input's (``kept`` 0), the kept step's,
    or, for a system that revises its kept steps, the revision of the first ``kept``."""
    revision = kept_revision(record, kept)
    if revision is not None:
        return revision["metrics"]
    return record["initial"] if kept == 0 else record["steps"][kept - 1]


def kept_revision(record: Mapping, kept: int) -> Mapping | None:
    """The revision ``add_revisions`` recorded for the first ``kept`` steps, or None."""
    return record.get("revisions", {}).get(str(kept))


REVISION_NOTE = ("Systems with search then revise their kept steps as a whole, as suggest does (leave effects out, "
                 "swap neighbours, retune knobs, add an effect at the end; `revision renders` and `revision ms` per session in Table 4): "
                 "their final sound is the revision, under both keep rules, so Figure 4 leaves them out.")


def add_revisions(record: dict, session, rack, metric: str, tolerance: int, renders: int) -> None:
    """Revise ``session``'s steps as a session with ``tolerance`` would (``revise_session``)
    for the steps each keep rule keeps, and record each revision under its number of
    kept steps (``final_metrics`` reads them). Sessions run to the end, so the stopping
    rule is applied here first, as for every system."""
    from serumrnn.core.session import revise_session

    revisions: dict[str, dict] = {}
    tried: set[int] = set()
    for keep in KEEP_RULES:
        _, kept = session_outcome(record, metric, tolerance, keep)
        if kept in tried:
            continue
        tried.add(kept)
        revision = revise_session(session, kept, rack=rack, renders=renders)
        if revision is not None:
            revisions[str(kept)] = {"metrics": [revision.metrics[m] for m in METRICS], "renders": revision.renders,
                                    "seconds": revision.seconds, "keep": keep,
                                    "effects": [name for name, _ in revision.chain]}
    record["revisions"] = revisions


def revised_systems(pair_records: Sequence[Mapping], systems: Sequence[str]) -> list[str]:
    """The systems whose records carry revisions (made for one tolerance only)."""
    return [system for system in systems if any("revisions" in pair["systems"][system] for pair in pair_records)]


def _deltas(records: Sequence[Mapping], metric: str, tolerance: int, keep: str) -> np.ndarray:
    """Mean (final - initial) per metric in table units."""
    values = []
    for record in records:
        _, kept = session_outcome(record, metric, tolerance, keep)
        values.append(np.subtract(final_metrics(record, kept), record["initial"]))
    return _mean_rows(np.asarray(values))


def system_rows(pair_records: Sequence[Mapping], systems: Sequence[str], metric: str, tolerance: int,
                group: str | None) -> list[dict]:
    """Table 4 rows: ours per keep rule and system, then the paper's (``group`` None: none)."""
    rows = []
    for keep in KEEP_RULES:
        for system in systems:
            records = [pair["systems"][system] for pair in pair_records]
            deltas = _deltas(records, metric, tolerance, keep)
            rows.append({"source": "ours", "system": system, "kept": keep, **dict(zip(METRICS, map(float, deltas))),
                         "pairs": len(records), **_step_cost(records)})
    reference_group = paper.paper_group(group, paper.SYSTEM_DELTAS) if group is not None else None
    if reference_group:
        for system in systems:
            values = paper.SYSTEM_DELTAS[reference_group].get(system)
            if values:
                rows.append({"source": f"paper ({paper.GROUP_TITLES[reference_group]})", "system": system,
                             "kept": "last", **dict(zip(METRICS, values)), "pairs": 1000})
    return rows


def progress_rows(pair_records: Sequence[Mapping], system: str, metric: str, tolerance: int,
                  group: str | None) -> list[dict]:
    """Tables 5/6: per keep rule, initial, final, Δ, Δ% and mean Δ per step (over the
    sessions that applied it; the same for both rules), then the paper's rows."""
    scale = np.array([TABLE_SCALE[m] for m in METRICS])
    records = [pair["systems"][system] for pair in pair_records]
    per_step: dict[int, list[np.ndarray]] = {length: [] for length in CHAIN_LENGTHS}
    for record in records:
        applied, _ = session_outcome(record, metric, tolerance)
        previous = record["initial"]
        for step in range(applied):
            per_step[step + 1].append(np.subtract(record["steps"][step], previous))
            previous = record["steps"][step]
    initial_mean = np.mean([record["initial"] for record in records], axis=0) * scale
    step_means = {length: np.mean(values, axis=0) * scale if values else None for length, values in per_step.items()}
    rows = []
    for keep in KEEP_RULES:
        final_mean = np.mean([final_metrics(record, session_outcome(record, metric, tolerance, keep)[1])
                              for record in records], axis=0) * scale
        for index, name in enumerate(METRICS):
            delta = float(final_mean[index] - initial_mean[index])
            rows.append({"source": "ours", "kept": keep, "metric": name.upper(), "initial": float(initial_mean[index]),
                         "final": float(final_mean[index]), "delta": delta,
                         "delta_pct": _pct(delta, initial_mean[index]),
                         **{f"step_{length}": None if step_means[length] is None else float(step_means[length][index])
                            for length in CHAIN_LENGTHS}})
    rows.append({"source": "ours", "kept": "", "metric": "sessions", "initial": len(records), "final": None,
                 "delta": None, "delta_pct": None, **{f"step_{length}": len(per_step[length]) for length in CHAIN_LENGTHS}})
    with_system = {g: t for g, t in paper.SESSION_PROGRESS.items() if system in t}
    reference_group = paper.paper_group(group, with_system) if group is not None else None
    if reference_group:
        for name, (init, fin, delta, pct, steps) in paper.SESSION_PROGRESS[reference_group][system].items():
            rows.append({"source": f"paper ({paper.GROUP_TITLES[reference_group]})", "kept": "last",
                         "metric": name.upper(), "initial": init, "final": fin, "delta": delta, "delta_pct": pct,
                         **dict(zip(STEP_COLUMNS, steps))})
    return rows


def session_summary(pair: Mapping, metric: str, tolerance: int) -> dict:
    """A pair's hidden chain and, per system, the effects of its full trajectory, how many
    it applies with ``tolerance`` and its best step (``kept``; keep-last keeps ``applied``)."""
    systems = {}
    for system, record in pair["systems"].items():
        applied, best = session_outcome(record, metric, tolerance)
        systems[system] = {"effects": record["effects"], "applied": applied, "kept": best}
    return {"chain_id": pair["chain_id"], "hidden": pair["order"], "systems": systems}


def tolerance_rows(pair_records: Sequence[Mapping], systems: Sequence[str], metric: str) -> list[dict]:
    """Figure 4: mean final Δ per metric for tolerance 0..4, per system and keep rule
    (systems that revise their kept steps were revised for one tolerance only: left out)."""
    rows = []
    revised = revised_systems(pair_records, systems)
    for system in (system for system in systems if system not in revised):
        records = [pair["systems"][system] for pair in pair_records]
        for keep in KEEP_RULES:
            for tolerance in range(MAX_TOLERANCE + 1):
                deltas = _deltas(records, metric, tolerance, keep)
                rows.append({"system": system, "kept": keep, "tolerance": tolerance,
                             **dict(zip(METRICS, map(float, deltas)))})
    return rows


def _step_cost(records: Sequence[Mapping]) -> dict:
    """Mean renders and median ms per step over every step run (searched systems spend a budget)."""
    renders = [count for record in records for count in record.get("renders", [1] * len(record["seconds"]))]
    seconds = [value for record in records for value in record["seconds"]]
    revised = [revision for record in records for revision in record.get("revisions", {}).values()
               if revision["keep"] == "best"]
    return {"renders_per_step": float(np.mean(renders)) if renders else None,
            "ms_per_step": float(np.median(seconds) * 1000) if seconds else None,
            "revise_renders": float(np.mean([r["renders"] for r in revised])) if revised else None,
            "revise_ms": float(np.median([r["seconds"] for r in revised]) * 1000) if revised else None}


def latency_rows(pair_records: Sequence[Mapping], systems: Sequence[str], metric: str, tolerance: int) -> list[dict]:
    """Median and p95 per step (every step run) and per session (set-up plus the steps
    applied with ``tolerance``), in ms."""
    rows = []
    for system in systems:
        steps, sessions = [], []
        for pair in pair_records:
            record = pair["systems"][system]
            applied, kept = session_outcome(record, metric, tolerance)
            steps += record["seconds"]
            revision = kept_revision(record, kept)
            sessions.append(record["setup_seconds"] + sum(record["seconds"][:applied])
                            + (revision["seconds"] if revision else 0.0))
        step_ms, session_ms = np.asarray(steps) * 1000, np.asarray(sessions) * 1000
        rows.append({
            "system": system,
            "step_median_ms": float(np.median(step_ms)) if steps else None,
            "step_p95_ms": float(np.percentile(step_ms, 95)) if steps else None, "steps": len(steps),
            "session_median_ms": float(np.median(session_ms)), "session_p95_ms": float(np.percentile(session_ms, 95)),
            "sessions": len(sessions),
        })
    return rows


# -- the whole evaluation ------------------------------------------------------------------
def _table_progress(reporter: ProgressReporter) -> Callable[[str, int], Callable[[int], None]]:
    """``start(description, total) -> advance(n)``: one progress task per table."""
    def start(description: str, total: int) -> Callable[[int], None]:
        return reporter.task(description, total).advance

    return start


def evaluate(bundle_path: str | os.PathLike, data_dir: str | os.PathLike, options: EvaluationOptions | None = None,
             *, command: str = "") -> EvaluationResult:
    """Evaluate a bundle on a dataset's split: every table of the paper (see the module
    docstring). ``command`` is recorded in the Markdown (how to reproduce it)."""
    from serumrnn.core.registry import get_plugin_manager

    options = options or EvaluationOptions()
    options.check()
    started = time.perf_counter()
    machine = machine_text()
    reader, rack, bundle = open_for_evaluation(bundle_path, data_dir, options.split)
    manager = get_plugin_manager()
    group = bundle.preset_group
    systems = [s for s in SYSTEMS if not manager.selectors.get(s).model_kind
               or bundle.has_selector(manager.selectors.get(s).model_kind)]
    notes = [f"{SYSTEM_LABELS[s]} is left out: the bundle has no {manager.selectors.get(s).model_kind} selection model."
             for s in SYSTEMS if s not in systems]
    if options.search:
        systems += [s for s, selector in SEARCH_SYSTEMS.items() if selector is None or selector in systems]
        notes.append(f"Systems with search spend up to {options.search_budget_ms:g} ms per step: their figures depend "
                     "on the machine's speed and load, unlike the others'." if options.search_budget_ms is not None
                     else f"Systems with search spend {DEFAULT_MAX_RENDERS} renders per step (the default budget).")
        notes.append(REVISION_NOTE)
    if options.systems is not None:
        for name in options.systems:
            if name not in systems:
                raise ParameterError(f"Bundle '{bundle.path}' has no {manager.selectors.get(SEARCH_SYSTEMS.get(name) or name).model_kind} "
                                     f"selection model, which system {name} needs; leave it out of --systems.")
        systems = [system for system in systems if system in options.systems]
    session_plan, per_length = plan_session_pairs(reader, options.pairs, options.seed, options.split)
    short = [f"{length} effect(s): {count}" for length, count in per_length.items()
             if count < options.pairs // len(CHAIN_LENGTHS)]
    if short:
        notes.append(f"The {options.split} split has fewer chains than asked for some lengths ({'; '.join(short)}); "
                     "all of them were used.")
    param_plans = {effect: plan_parameter_pairs(reader, effect, options.param_pairs, options.seed, options.split)
                   for effect in rack.effect_names}

    start = _table_progress(progress_reporter(options.progress))
    with _task_runner(bundle, rack, options.metric, options.workers) as run:
        selection = selection_rows(reader, bundle, manager, options.split, options.seed, group,
                                   start("Table 3: selection accuracy", len(STEP_SELECTORS) + 1))
        param_tasks = [{"effect": effect, "items": plan[i:i + PARAM_CHUNK]}
                       for effect, plan in param_plans.items() for i in range(0, len(plan), PARAM_CHUNK)]
        chunks = run(_parameter_chunk, param_tasks,
                     start("Table 2: parameter-model pairs", sum(len(plan) for plan in param_plans.values())),
                     [len(task["items"]) for task in param_tasks])
        param_results: dict[str, list] = {effect: [] for effect in rack.effect_names}
        for task, chunk in zip(param_tasks, chunks):
            param_results[task["effect"]] += chunk
        session_tasks = [{"chain": chain, "systems": systems, "seed": chain_seed(options.seed, chain["chain_id"]),
                          "search_budget_ms": options.search_budget_ms, "tolerance": options.tolerance}
                         for chain in session_plan]
        pair_records = run(_session_pair, session_tasks,
                           start(f"Tables 4-6: sessions ({len(systems)} systems each)", len(session_tasks)))

    parameter_models = parameter_model_rows(
        {effect: np.asarray(values).reshape(-1, 3, len(METRICS)) for effect, values in param_results.items() if values},
        group)
    progress = {system: progress_rows(pair_records, system, options.metric, options.tolerance, group)
                for system in PROGRESS_SYSTEMS if system in systems and pair_records}
    meta = {
        "bundle": str(bundle.path), "bundle_name": bundle.path.name, "dataset": str(reader.path),
        "rack": rack.name, "preset_group": group, "split": options.split,
        "split_chains": len(reader.chains_in(options.split)), "seed": options.seed, "metric": options.metric,
        "tolerance": options.tolerance, "param_pairs": options.param_pairs, "pairs_asked": options.pairs,
        "session_pairs": len(pair_records), "pairs_per_length": ", ".join(f"{k}: {v}" for k, v in per_length.items()),
        "systems": systems, "workers": options.workers, "machine": machine, "command": command,
        "seconds": round(time.perf_counter() - started, 1), "notes": notes,
    }
    return EvaluationResult(
        meta=meta, parameter_models=parameter_models, selection=selection,
        systems=system_rows(pair_records, systems, options.metric, options.tolerance, group) if pair_records else [],
        progress=progress, tolerance_curve=tolerance_rows(pair_records, systems, options.metric) if pair_records else [],
        latency=latency_rows(pair_records, systems, options.metric, options.tolerance) if pair_records else [],
        sessions=[session_summary(pair, options.metric, options.tolerance) for pair in pair_records],
    )

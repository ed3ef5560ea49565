"""Evaluation on sounds the models never heard, beside the in-domain tables of
``core.evaluation`` (``serumrnn evaluate --unseen``; docs/RESULTS.md, "Unseen sounds").

Case sets; a case is an input sound, a target sound and what made the target, and a set
is the same list of cases for the same seed:

- ``varied``: held-out generated patches of the built-in synth (``varied-<seed>``, seeds
  from ``HELD_OUT_FIRST_SEED``; training data uses lower seeds), each through a random
  chain of built-in effects, so the built-in rack can reach the target exactly.
- ``presets``: the rack's presets through a random chain of the rack's own effects
  (``core/budget.py`` uses it beside ``varied``). On the built-in rack the models heard
  these presets in training; on another rack (``UnseenOptions.rack``, e.g. linux-vst)
  without a bundle, only search alone runs: the rack's own targets, found by search.
- ``vst-effects``: built-in presets and held-out generated patches through a random chain
  of the linux-vst rack's real effects (LSP, Zyn, Dragonfly): targets made by other
  implementations of the effects, which the built-in rack can only approximate.
- ``zynaddsubfx``: instruments from ZynAddSubFX's banks played by the linux-vst rack's
  synth, through a random chain of built-in effects. Core does not import plugins: the
  set is ``plugins/zyn_banks.py``'s ``case_set()``, which the command line registers
  (``register_case_set``), as any caller may.

A chain has 1-5 effects (the length cycles over the cases), in random order, with knobs
drawn as for training data (``sample_knobs``). Sources have their leading silence
trimmed first, as ``suggest`` trims an input, so the input the session hears is the one
the target was made from. Targets are made under the bundle's loudness convention.

Every system runs each case as a user does: input and target written as WAV files and
given to ``suggest`` (``suggest_case``), run to the end once; the stopping rule and both keep rules of
``core.evaluation`` are applied afterwards, giving rows in the shapes of its Tables 4
and 5, plus how much closer to the target each system brings a sound on MSSMAE.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from serumrnn.core.dataset import GENERATED_FAMILY
from serumrnn.core.errors import ParameterError, PluginError
from serumrnn.core.evaluation import (
    KEEP_RULES, MAX_TOLERANCE, REVISION_NOTE, SYSTEM_LABELS, add_revisions, chain_seed, final_metrics,
    kept_revision, progress_markdown, progress_rows, rival_lines, session_outcome, session_record, stopping_text,
    system_rows, systems_markdown,
)
from serumrnn.core.search import search_options
from serumrnn.core.loudness import NONE as NO_LEVELLING, LoudnessConvention
from serumrnn.core.metrics import METRICS, improvement
from serumrnn.core.params import sample_knobs
from serumrnn.core.rack import Rack
from serumrnn.core.reporting import csv_text, machine_text, markdown_table
from serumrnn.core.runtime import ProgressReporter, progress_reporter, staged_output_dir

RACK = "builtin"  # the rack every session runs on
VST_RACK = "linux-vst"
# Generated patches from this seed up are never in training data (training uses lower seeds).
HELD_OUT_FIRST_SEED = 100_000
CLOSER_METRIC = "mssmae"
FILES = {
    "markdown": "results.md", "json": "summary.json", "table4": "unseen_table4_systems.csv",
    "table5": "unseen_table5_progress.csv", "closer": "unseen_closer.csv", "cases": "unseen_cases.csv",
}

# Systems: name -> (registered selector, extra ``suggest`` keyword arguments).
BASE_SYSTEMS: dict[str, tuple[str, dict[str, Any]]] = {
    name: (name, {}) for name in ("rnn", "ni", "cnn", "cnn-1s", "random", "oracle")
}
# Run only when asked for by name: their figures depend on the machine's speed (a time budget).
SEARCH_ALONE = "search"  # no model: every unused effect a candidate, knobs from defaults
SEARCH_SYSTEMS = ("rnn+search", "random+search", SEARCH_ALONE)


def system_table() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every system by name: ``(selector, extra suggest kwargs)``. With a search stage in
    ``suggest`` (a ``search`` keyword) the paper's systems turn it off, since it is on by
    default there, and ``rnn+search`` and ``random+search`` are added; ``search`` (no
    model: every unused effect a candidate, knobs from defaults) when ``suggest`` can also
    leave the parameter models out (a ``use_models`` keyword)."""
    parameters = inspect.signature(_suggest()).parameters
    if "search" not in parameters:
        return dict(BASE_SYSTEMS)
    table = {name: (selector, {**extra, "search": False}) for name, (selector, extra) in BASE_SYSTEMS.items()}
    table["rnn+search"] = ("rnn", {"search": True})
    table["random+search"] = ("random", {"search": True})
    if "use_models" in parameters:
        table[SEARCH_ALONE] = ("random", {"search": True, "use_models": False})
    return table


def _suggest() -> Callable[..., Any]:
    # looked up at call time: the session module is where the search stage lands
    from serumrnn.core import session

    return session.suggest


# -- cases ------------------------------------------------------------------------------
@attrs.frozen(eq=False)
class UnseenCase:
    """One input and target. ``meta``: ``set``, ``source`` (what played the input),
    ``chain`` (``[[effect, knobs], ...]`` that made the target, in order), ``target_rack``,
    ``target_trimmed_samples`` (leading samples ``suggest`` trims off the target)."""

    case_id: str
    input_audio: np.ndarray = attrs.field(repr=False)
    target_audio: np.ndarray = attrs.field(repr=False)
    meta: dict

    @property
    def true_chain(self) -> list[str]:
        return [name for name, _ in self.meta["chain"]]


@attrs.frozen
class CaseSet:
    """``build(count, seed, rack, loudness, workers) -> cases``; ``check()`` raises one
    sentence when what the set needs beyond the built-in rack is missing."""

    name: str
    description: str
    build: Callable[..., list[UnseenCase]]
    check: Callable[[], None] = lambda: None


def case_rng(seed: int, set_name: str, index: int) -> np.random.Generator:
    """Case ``index``'s own generator: a case does not depend on how many are drawn."""
    return np.random.default_rng([seed, zlib.crc32(set_name.encode()), index])


def chain_length(index: int) -> int:
    """Effects in case ``index``'s chain: 1-5, cycling over the cases."""
    return 1 + index % 5


def _held_out_patch(rng: np.random.Generator, rack: Rack) -> str:
    seed = HELD_OUT_FIRST_SEED + int(rng.integers(0, 2**31 - 1 - HELD_OUT_FIRST_SEED))
    return rack.synth.generated_presets(GENERATED_FAMILY, seed, 1)[0]


def random_chain(rng: np.random.Generator, rack: Rack, length: int) -> list[tuple[str, dict[str, float]]]:
    """``length`` distinct effects of ``rack`` in random order, knobs drawn as for training data."""
    names = [rack.effect_names[int(i)] for i in rng.permutation(len(rack.effect_names))[:length]]
    return [(name, sample_knobs(rack.effect(name).params, rng)) for name in names]


def make_case(set_name: str, index: int, source: str, audio: np.ndarray, chain, target_rack: Rack, rack: Rack,
              loudness: LoudnessConvention) -> UnseenCase:
    """A case whose input is ``audio`` as ``suggest`` prepares an input (so the input the
    session hears is the one the target was made from) and whose target is that input
    through ``chain`` on ``target_rack``."""
    from serumrnn.core.session import prepare_audio, trim_leading_silence

    input_audio = prepare_audio(audio, role="input", to_c4=False, notes=[], sample_rate=rack.sample_rate,
                                duration_s=rack.duration_s)
    target = target_rack.render(input_audio, chain, loudness=loudness)
    return UnseenCase(
        case_id=f"{set_name}-{index:03d}", input_audio=input_audio, target_audio=target,
        meta={"set": set_name, "source": source, "chain": [[name, dict(knobs)] for name, knobs in chain],
              "target_rack": target_rack.name,
              "target_trimmed_samples": int(target.shape[0] - trim_leading_silence(target).shape[0])},
    )


def _varied_cases(count: int, seed: int, rack: Rack, loudness: LoudnessConvention, workers: int = 1):
    cases = []
    for index in range(count):
        rng = case_rng(seed, "varied", index)
        patch = _held_out_patch(rng, rack)
        cases.append(make_case("varied", index, patch, rack.dry(patch), random_chain(rng, rack, chain_length(index)),
                               rack, rack, loudness))
    return cases


def _preset_cases(count: int, seed: int, rack: Rack, loudness: LoudnessConvention, workers: int = 1):
    presets = [preset.name for preset in rack.synth.presets]
    cases = []
    for index in range(count):
        rng = case_rng(seed, "presets", index)
        preset = presets[int(rng.integers(len(presets)))]
        cases.append(make_case("presets", index, preset, rack.dry(preset), random_chain(rng, rack, chain_length(index)),
                               rack, rack, loudness))
    return cases


def vst_rack(set_name: str) -> Rack:
    """The linux-vst rack; one sentence when its plugins or host are missing."""
    from serumrnn.core.registry import get_plugin_manager

    manager = get_plugin_manager()
    available, reason = manager.racks.get(VST_RACK).availability()
    if not available:
        raise PluginError(f"The unseen set {set_name} needs the {VST_RACK} rack, which is not available here: "
                          f"{reason.rstrip('.')}.")
    return manager.rack(VST_RACK)


def _check_vst_effects() -> None:
    vst_rack("vst-effects")


def _vst_effect_cases(count: int, seed: int, rack: Rack, loudness: LoudnessConvention, workers: int = 1):
    vst = vst_rack("vst-effects")
    foreign = [name for name in vst.effect_names if name not in rack.effect_names]
    if foreign:
        raise PluginError(f"The {VST_RACK} rack has effect {foreign[0]}, which the {rack.name} rack lacks; "
                          "the vst-effects set needs the same effect names.")
    presets = [preset.name for preset in rack.synth.presets]
    cases = []
    for index in range(count):
        rng = case_rng(seed, "vst-effects", index)
        # alternate the rack's presets (heard in training) and held-out patches
        source = presets[int(rng.integers(len(presets)))] if index % 2 == 0 else _held_out_patch(rng, rack)
        cases.append(make_case("vst-effects", index, source, rack.dry(source),
                               random_chain(rng, vst, chain_length(index)), vst, rack, loudness))
    return cases


# The registered case sets by name; plugins add theirs with register_case_set.
CASE_SETS: dict[str, CaseSet] = {case_set.name: case_set for case_set in (
    CaseSet("varied", "held-out generated patches of the built-in synth, built-in effects", _varied_cases),
    CaseSet("vst-effects", "built-in presets and held-out patches, the linux-vst rack's real effects",
            _vst_effect_cases, _check_vst_effects),
    CaseSet("presets", "the rack's presets through its own effects (reachable)", _preset_cases),
)}
# Sets of the published tables, in their order (``--unseen all``) when registered.
DEFAULT_SETS = ("varied", "zynaddsubfx", "vst-effects")


def register_case_set(case_set: CaseSet) -> None:
    """Add a case set (registering the same set twice changes nothing)."""
    known = CASE_SETS.get(case_set.name)
    if known is not None and known is not case_set:
        raise PluginError(f"Unseen set {case_set.name!r} is registered already; give the new set another name.")
    CASE_SETS[case_set.name] = case_set


def default_sets() -> tuple[str, ...]:
    """The registered sets of ``DEFAULT_SETS``, in that order."""
    return tuple(name for name in DEFAULT_SETS if name in CASE_SETS)


def case_set(name: str) -> CaseSet:
    try:
        return CASE_SETS[name]
    except KeyError:
        raise ParameterError(f"Unknown unseen set {name!r}; choose from {', '.join(CASE_SETS)}.") from None


def build_cases(set_name: str, count: int, seed: int = 0, *, rack: Rack | None = None,
                loudness: LoudnessConvention = NO_LEVELLING, workers: int = 1) -> list[UnseenCase]:
    """The first ``count`` cases of set ``set_name`` for ``seed`` (targets made under
    ``loudness``, the convention of the bundle that will hear them)."""
    from serumrnn.core.registry import get_plugin_manager

    chosen = case_set(set_name)
    if count < 1:
        raise ParameterError(f"--cases is {count}; give 1 or more cases per set.")
    chosen.check()
    return chosen.build(count, seed, rack or get_plugin_manager().rack(RACK), loudness, workers)


# -- running and tables -------------------------------------------------------------------
@attrs.frozen
class UnseenOptions:
    """sets: case set names; cases: per set; systems: names of ``system_table`` (None:
    every one the bundle can run, the search systems only with ``search``);
    search_budget_ms: the search systems' time per step (None: ``suggest``'s default);
    tolerance and metric: the stopping rule; workers: processes for the ZynAddSubFX renders;
    rack: the rack the sessions run on (without a bundle for it, search alone);
    progress: where cases and sessions done are reported (``core.runtime.ProgressReporter``)."""

    sets: tuple[str, ...] | None = None  # None: default_sets()
    cases: int = 12
    seed: int = 0
    systems: tuple[str, ...] | None = None
    metric: str = "mssmae"
    tolerance: int = 1
    workers: int = 1
    progress: ProgressReporter | bool | None = None
    search: bool = False
    search_budget_ms: float | None = None
    rack: str = RACK

    def set_names(self) -> tuple[str, ...]:
        return default_sets() if self.sets is None else self.sets

    def check(self) -> None:
        for name in self.set_names():
            case_set(name)
        if not self.set_names():
            raise ParameterError(f"--unseen names no set; choose from {', '.join(CASE_SETS)}.")
        if self.cases < 1:
            raise ParameterError(f"--cases is {self.cases}; give 1 or more cases per set.")
        if self.metric not in METRICS:
            raise ParameterError(f"Unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}.")
        if not 0 <= self.tolerance <= MAX_TOLERANCE:
            raise ParameterError(f"Tolerance is {self.tolerance}; give 0 to {MAX_TOLERANCE} bad steps.")
        if self.workers < 1:
            raise ParameterError(f"--workers is {self.workers}; give 1 or more worker processes.")


def choose_systems(asked: Sequence[str] | None, table: Mapping[str, tuple[str, dict]], bundle, *,
                   search: bool = False) -> list[str]:
    """The systems to run: those asked for (one sentence for an unknown one or one whose
    model the bundle lacks), else every system of ``table`` the bundle can run, the
    search systems only with ``search``."""
    from serumrnn.core.registry import get_plugin_manager

    selectors = get_plugin_manager().selectors

    def runnable(name: str) -> bool:
        if bundle is None:  # search alone: suggest swaps a model selector for its search-only one
            return bool(table[name][1].get("search"))
        kind = selectors.get(table[name][0]).model_kind
        return not kind or bundle.has_selector(kind)

    if search and not any(name in table for name in SEARCH_SYSTEMS):
        raise ParameterError("This version's suggest has no search stage; leave out --search.")
    if asked is None:
        return [name for name in table if (search or name not in SEARCH_SYSTEMS) and runnable(name)]
    for name in asked:
        if name not in table:
            raise ParameterError(f"Unknown system {name!r}; choose from {', '.join(table)}.")
        if not runnable(name):
            raise ParameterError(f"Bundle '{bundle.path}' has no {selectors.get(table[name][0]).model_kind} "
                                 f"selection model, which system {name} needs; leave it out of --systems.")
    return list(dict.fromkeys(asked))


def _closer_pct(before: float, after: float) -> float:
    """How much closer ``after`` is than ``before`` on MSSMAE, in % of ``before``."""
    return 100.0 * improvement(before, after, CLOSER_METRIC) / abs(before) if before else 0.0


def closer_rows(pairs: Sequence[Mapping], systems: Sequence[str], tolerance: int, metric: str) -> list[dict]:
    """Per keep rule and system: the mean and median over cases of how much closer (in %
    of the input's distance) the final sound is on MSSMAE, and the share of cases it got
    closer. The mean of ratios swings with a few cases that start close and end far; the
    median does not."""
    index = METRICS.index(CLOSER_METRIC)
    rows = []
    for keep in KEEP_RULES:
        for system in systems:
            closer = []
            for pair in pairs:
                record = pair["systems"][system]
                before = record["initial"][index]
                after = final_metrics(record, session_outcome(record, metric, tolerance, keep)[1])[index]
                closer.append(_closer_pct(before, after))
            rows.append({"system": system, "kept": keep, "closer_pct": float(np.mean(closer)),
                         "closer_median_pct": float(np.median(closer)),
                         "closer_share": float(np.mean(np.asarray(closer) > 0)), "cases": len(closer)})
    return rows


def case_summary(pair: Mapping, metric: str, tolerance: int) -> dict:
    """A case's source, true chain and, per system, its effects, steps applied, best step
    and every metric before and after each step."""
    systems = {}
    for system, record in pair["systems"].items():
        applied, best = session_outcome(record, metric, tolerance)
        revision = kept_revision(record, best)
        systems[system] = {"effects": record["effects"], "applied": applied, "best": best,
                           "initial": dict(zip(METRICS, record["initial"])),
                           "steps": [dict(zip(METRICS, step)) for step in record["steps"]],
                           "final": dict(zip(METRICS, final_metrics(record, best))),
                           "revised_effects": None if revision is None else revision["effects"]}
    return {"case_id": pair["chain_id"], **pair["meta"], "systems": systems}


@attrs.define
class UnseenResult:
    """Rows of every set (each row names its ``set``): ``systems`` (Table 4 shape),
    ``progress`` (Table 5 shape, every system), ``closer`` (% closer on MSSMAE), and
    ``cases`` (one summary per case)."""

    meta: dict
    systems: list[dict]
    progress: list[dict]
    closer: list[dict]
    cases: list[dict]

    def tables(self) -> dict[str, list[dict]]:
        flat_cases = [{"set": case["set"], "case_id": case["case_id"], "source": case["source"],
                       "chain": " > ".join(name for name, _ in case["chain"]),
                       "target_trimmed_samples": case["target_trimmed_samples"],
                       **{key: value for system, info in case["systems"].items() for key, value in (
                           (f"{system}_effects", " > ".join(info["effects"][:info["applied"]])),
                           (f"{system}_closer_pct",
                            _closer_pct(info["initial"][CLOSER_METRIC], info["final"][CLOSER_METRIC])),
                           *(((f"{system}_revised", " > ".join(info["revised_effects"])),)
                             if info.get("revised_effects") is not None else ()))}}
                      for case in self.cases]
        return {"table4": self.systems, "table5": self.progress, "closer": self.closer, "cases": flat_cases}

    def to_json(self) -> dict:
        return {"meta": self.meta, "table4": self.systems, "table5": self.progress, "closer": self.closer,
                "cases": self.cases}

    def to_markdown(self) -> str:
        meta = self.meta
        sets = meta["sets"]
        parts = [
            f"## Unseen sounds: bundle `{meta['bundle_name']}` (loudness {meta['loudness']})",
            "",
            f"{meta['cases_per_set']} cases per set, seed {meta['seed']}; command: `{meta['command']}`; "
            f"{meta['machine']}, {meta['seconds']:.0f} s. Each system ran every case as a user does: input and "
            f"target written as WAV files and given to `suggest` (rack {meta.get('rack', RACK)}). Chain lengths cycle 1-5. "
            "MSE, MAE, PCC and MSSMAE are x 100; lower is closer except PCC. "
            + stopping_text(meta["tolerance"], meta["metric"]),
            "",
            f"### How much closer on {CLOSER_METRIC.upper()}",
            "",
            f"How much closer the final sound is than the input on {CLOSER_METRIC.upper()}, in % of the input's "
            "distance: the mean over cases / the median (in brackets: the share of cases that got closer). A few "
            "cases that start close and end far pull the mean down; the median is the typical case.",
            "",
            markdown_table(self._overview_rows(sets), [("system", "system"), ("kept", "kept"),
                                                        *((name, name) for name in sets)]),
        ]
        for name in sets:
            systems = [row for row in self.systems if row["set"] == name]
            parts += [
                "",
                f"### Set `{name}`: {CASE_SETS[name].description}",
                "",
                "Cases: " + "; ".join(f"{case['case_id'].rsplit('-', 1)[1]} {case['source']} "
                                      f"({' > '.join(effect for effect, _ in case['chain'])})"
                                      for case in self.cases if case["set"] == name) + ".",
                "",
                "Table 4 shape: mean error Δ against the target (final - initial).",
                "",
                systems_markdown(systems),
                "",
                *(f"- {line}" for line in rival_lines(systems)),
            ]
            for system in meta["systems"]:
                rows = [row for row in self.progress if row["set"] == name and row["system"] == system]
                parts += ["", f"#### {SYSTEM_LABELS.get(system, system)} on `{name}`, step by step (Table 5 shape)", "",
                          progress_markdown(rows)]
        if meta.get("notes"):
            parts += ["", "Notes:", "", *(f"- {note}" for note in meta["notes"])]
        return "\n".join(parts) + "\n"

    def _overview_rows(self, sets: Sequence[str]) -> list[dict]:
        cells = {(row["set"], row["system"], row["kept"]): row for row in self.closer}
        rows = []
        for keep in KEEP_RULES:
            for system in self.meta["systems"]:
                row = {"system": system, "kept": keep}
                for name in sets:
                    cell = cells.get((name, system, keep))
                    row[name] = (f"{cell['closer_pct']:.1f}% / {cell['closer_median_pct']:.1f}% "
                                 f"({cell['closer_share']:.0%})" if cell else "-")
                rows.append(row)
        return rows

    def write(self, out_dir: str | os.PathLike, *, replace: bool = False) -> Path:
        """Markdown, CSV and JSON into ``out_dir``, all or nothing."""
        with staged_output_dir(out_dir, replace=replace, what="the evaluation") as staging:
            for name, rows in self.tables().items():
                (staging / FILES[name]).write_text(csv_text(rows))
            (staging / FILES["markdown"]).write_text(self.to_markdown())
            (staging / FILES["json"]).write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return Path(out_dir)


def suggest_case(case: UnseenCase, folder: Path, rack: Rack, **arguments: Any):
    """The session ``suggest`` gives for ``case`` when its input and target come as WAV
    files in ``folder`` (written on the first call), as a user's would."""
    from serumrnn.core.audio import write_wav

    input_path, target_path = folder / f"{case.case_id}-input.wav", folder / f"{case.case_id}-target.wav"
    if not target_path.exists():
        write_wav(input_path, case.input_audio, rack.sample_rate)
        write_wav(target_path, case.target_audio, rack.sample_rate)
    return _suggest()(input_path, target_path, rack=rack, **arguments)


def _run_case(case: UnseenCase, systems: Sequence[str], table: Mapping[str, tuple[str, dict]], rack: Rack, bundle,
              options: UnseenOptions, folder: Path, advance: Callable[[int], None]) -> dict:
    """Every system on one case through files, each run to the end."""
    from serumrnn.core.registry import get_plugin_manager

    selectors = get_plugin_manager().selectors
    records = {}
    for system in systems:
        selector, extra = table[system]
        # Sessions run to the end and the stopping rule is applied afterwards; a searched
        # system's revision needs the steps that rule keeps, so it is made afterwards too.
        revise = search_options(True, revise_renders=extra.get("revise_renders")).revise_renders \
            if extra.get("search") else 0
        started = time.perf_counter()
        session = suggest_case(case, folder, rack, bundle=bundle, selector=selector, metric=options.metric,
                               tolerance=len(rack.effect_names),
                               true_chain=case.true_chain if selectors.get(selector).needs_true_chain else None,
                               seed=chain_seed(options.seed, case.case_id),
                               **{**extra, **({"revise_renders": 0} if extra.get("search") else {})})
        records[system] = session_record(session, time.perf_counter() - started)
        if revise:
            add_revisions(records[system], session, rack, options.metric, options.tolerance, revise)
        advance(1)
    return {"chain_id": case.case_id, "order": case.true_chain, "systems": records, "meta": case.meta}


def run_unseen(bundle: Any, options: UnseenOptions | None = None, *, command: str = "",
               systems_table: Mapping[str, tuple[str, dict]] | None = None) -> UnseenResult:
    """Run the systems over the case sets (see the module docstring). ``bundle``: a
    shipped bundle name, folder or loaded bundle; ``systems_table``: name -> (selector,
    extra suggest kwargs), default ``system_table()``."""
    from serumrnn.core.registry import get_plugin_manager
    from serumrnn.core.session import bundle_loudness, resolve_bundle, shipped_bundle_for

    options = options or UnseenOptions()
    options.check()
    started = time.perf_counter()
    machine = machine_text()
    rack = get_plugin_manager().rack(options.rack)
    if bundle is None and shipped_bundle_for(rack) is None:
        loaded = None  # no model for this rack: search alone, as suggest does
        table = {SEARCH_ALONE: ("rnn", {"search": True})}
    else:
        loaded = resolve_bundle(bundle, rack)
        table = dict(systems_table) if systems_table is not None else system_table()
    if options.search_budget_ms is not None:
        table = {name: (selector, {**extra, "budget_ms": options.search_budget_ms} if extra.get("search") else extra)
                 for name, (selector, extra) in table.items()}
    systems = choose_systems(options.systems, table, loaded, search=options.search or loaded is None)
    loudness = bundle_loudness(loaded)
    sets = options.set_names()
    for name in sets:  # fail before any work when plugins or banks are missing
        CASE_SETS[name].check()
    reporter = progress_reporter(options.progress)
    rows4, rows5, closer, cases = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="serumrnn-unseen-") as folder:
        for name in sets:
            making = reporter.task(f"{name}: making {options.cases} cases", 1)
            made = build_cases(name, options.cases, options.seed, rack=rack, loudness=loudness,
                               workers=options.workers)
            making.advance(1)
            running = reporter.task(f"{name}: {len(made)} cases x {len(systems)} systems", len(made) * len(systems))
            pairs = [_run_case(case, systems, table, rack, loaded, options, Path(folder), running.advance)
                     for case in made]
            rows4 += [{"set": name, **row}
                      for row in system_rows(pairs, systems, options.metric, options.tolerance, None)]
            for system in systems:
                rows5 += [{"set": name, "system": system, **row}
                          for row in progress_rows(pairs, system, options.metric, options.tolerance, None)]
            closer += [{"set": name, **row} for row in closer_rows(pairs, systems, options.tolerance, options.metric)]
            cases += [case_summary(pair, options.metric, options.tolerance) for pair in pairs]
    trimmed = [f"{case['case_id']} ({case['target_trimmed_samples']})" for case in cases
               if case["target_trimmed_samples"]]
    notes = [f"suggest trims the leading samples under -50 dB of the peak off a target, so these targets are "
             f"shifted by that many samples against what the rack renders: {', '.join(trimmed)}."] if trimmed else []
    if options.search and "search" not in table:
        notes.append("Search alone is left out: this version's suggest cannot leave the parameter models out "
                     "(no use_models keyword).")
    if any(table[system][1].get("search") for system in systems):
        if options.search_budget_ms is not None:
            notes.append("Systems with search spend a time budget per step: their figures depend on the machine's "
                         "speed and load, unlike the others'.")
        notes.append(REVISION_NOTE)
    meta = {
        "rack": rack.name, "bundle": None if loaded is None else str(loaded.path),
        "bundle_name": "none (search alone)" if loaded is None else loaded.path.name, "loudness": loudness.name,
        "sets": list(sets), "cases_per_set": options.cases, "seed": options.seed,
        "systems": systems, "system_table": {name: {"selector": table[name][0], "suggest": table[name][1]}
                                             for name in systems},
        "metric": options.metric, "tolerance": options.tolerance, "held_out_first_seed": HELD_OUT_FIRST_SEED,
        "machine": machine, "command": command, "seconds": round(time.perf_counter() - started, 1), "notes": notes,
    }
    return UnseenResult(meta=meta, systems=rows4, progress=rows5, closer=closer, cases=cases)

"""The session engine (DESIGN section 8): from an input toward a target, one effect per step.

At every step the selector picks the next unused effect, that effect's parameter model
predicts its knobs from the current sound and the target, the rack re-renders the
source through the whole chain so far, and the six distances to the target are
measured. The session stops when every effect is used or when more than ``tolerance``
steps have made the chosen metric worse.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from serumrnn.core.audio import DURATION_S, SAMPLE_RATE, check_audio, load_audio, looks_like_audio_path, write_wav
from serumrnn.core.errors import AudioError, BundleError, OutputError, ParameterError
from serumrnn.core.features import Features, LibrosaFeatureExtractor
from serumrnn.core.metrics import LOWER_IS_BETTER, METRICS, MetricReference, improvement
from serumrnn.core.rack import Rack
from serumrnn.core.selectors import SelectionState

BUNDLES_DIR = Path(__file__).parent / "bundles"
# The default is the first shipped of these: `all` (every preset group) is the one meant
# for users' sounds; the group bundles stand in until it ships.
DEFAULT_BUNDLES = ("all", "basic", "advanced", "modulating")


def shipped_bundles() -> list[str]:
    """Names of the bundles shipped inside the package."""
    if not BUNDLES_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "bundle.json").is_file())


def default_bundle_name() -> str:
    shipped = shipped_bundles()
    for name in DEFAULT_BUNDLES:
        if name in shipped:
            return name
    raise BundleError(
        "No model bundle is shipped with this installation; train one with `serumrnn train` and pass --bundle PATH."
    )
# RMS level both sounds are brought to before a session on user audio (about -18 dBFS).
TARGET_RMS = 0.125
# Leading samples quieter than this fraction of the peak (-50 dB) are trimmed.
LEADING_SILENCE_RATIO = 10 ** (-50 / 20)


@attrs.define
class Step:
    """One applied effect. ``metrics`` are the distances to the target after the step;
    ``improvement_pct`` is how much closer (in %) the chosen metric got from the input."""

    index: int
    effect: str
    label: str
    knobs: dict[str, float]
    physical: dict[str, str]
    instruction: str
    probability: float
    audio: np.ndarray = attrs.field(repr=False)
    features: Features = attrs.field(repr=False)
    metrics: dict[str, float]
    better: bool
    seconds: float


@attrs.define
class Session:
    """The result of a session: every step, the best one and why it stopped."""

    rack: str
    selector: str
    metric: str
    tolerance: int
    source: str
    input_audio: np.ndarray = attrs.field(repr=False)
    target_audio: np.ndarray = attrs.field(repr=False)
    input_features: Features = attrs.field(repr=False)
    target_features: Features = attrs.field(repr=False)
    initial_metrics: dict[str, float]
    steps: list[Step] = attrs.field(factory=list)
    stop_reason: str = ""
    notes: list[str] = attrs.field(factory=list)
    sample_rate: int = SAMPLE_RATE

    @property
    def best_index(self) -> int:
        """Number of steps to keep for the closest sound on the chosen metric (0 = the input)."""
        return best_step_index(self.initial_metrics[self.metric], [step.metrics[self.metric] for step in self.steps],
                               self.metric)

    @property
    def best_metrics(self) -> dict[str, float]:
        best = self.best_index
        return self.initial_metrics if best == 0 else self.steps[best - 1].metrics

    @property
    def best_audio(self) -> np.ndarray:
        best = self.best_index
        return self.input_audio if best == 0 else self.steps[best - 1].audio

    def closer_pct(self, metrics: Mapping[str, float], metric: str | None = None) -> float:
        """How much closer than the input, in percent of the input's distance."""
        metric = metric or self.metric
        before = self.initial_metrics[metric]
        if before == 0:
            return 0.0
        return 100.0 * improvement(before, metrics[metric], metric) / abs(before)

    def to_json(self) -> dict[str, Any]:
        return {
            "rack": self.rack,
            "selector": self.selector,
            "metric": self.metric,
            "tolerance": self.tolerance,
            "source": self.source,
            "initial_metrics": self.initial_metrics,
            "steps": [
                {
                    "step": step.index,
                    "effect": step.effect,
                    "label": step.label,
                    "instruction": step.instruction,
                    "knobs": step.knobs,
                    "knobs_physical": step.physical,
                    "probability": step.probability,
                    "metrics": step.metrics,
                    "better": step.better,
                    "closer_pct": self.closer_pct(step.metrics),
                    "seconds": step.seconds,
                }
                for step in self.steps
            ],
            "best_step": self.best_index,
            "best_metrics": self.best_metrics,
            "best_closer_pct": self.closer_pct(self.best_metrics),
            "stop_reason": self.stop_reason,
            "notes": self.notes,
        }


# -- stopping rule -------------------------------------------------------------------------
def best_step_index(initial: float, values: Sequence[float], metric: str) -> int:
    """Number of steps to keep for the closest sound (0 = the input), from the metric's
    value before any step (``initial``) and after each step (``values``); ties keep fewer steps."""
    order = np.asarray([initial, *values], dtype=np.float64)
    return int(np.argmin(order if LOWER_IS_BETTER[metric] else -order))


@attrs.define
class StoppingRule:
    """Tolerate ``tolerance`` steps that move ``metric`` away from the target, stop at the
    next one. Feed it the metric after each step with ``after_step``."""

    metric: str
    tolerance: int
    previous: float
    bad_steps: int = 0

    def after_step(self, value: float) -> tuple[bool, bool]:
        """``(better, stop)``: whether this step got closer than the previous one, and
        whether the session stops after it."""
        better = improvement(self.previous, value, self.metric) > 0
        self.previous = value
        if not better:
            self.bad_steps += 1
        return better, self.bad_steps > self.tolerance


def steps_before_stopping(initial: float, values: Sequence[float], metric: str, tolerance: int) -> int:
    """How many steps of a trajectory (metric after each step: ``values``) a session
    with ``tolerance`` applies before its stopping rule fires (all when it never does).
    A session's steps depend only on earlier steps, so this gives the session that
    ``run_session`` would run with this tolerance."""
    rule = StoppingRule(metric, tolerance, initial)
    for applied, value in enumerate(values, start=1):
        if rule.after_step(value)[1]:
            return applied
    return len(values)


# -- preparation -------------------------------------------------------------------------
def trim_leading_silence(audio: np.ndarray) -> np.ndarray:
    """Drop samples before the first one within 50 dB of the peak."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        return audio
    start = int(np.argmax(np.abs(audio) >= peak * LEADING_SILENCE_RATIO))
    return audio[start:]


def normalise_loudness(audio: np.ndarray, rms: float = TARGET_RMS) -> np.ndarray:
    """Scale to the given RMS level, never past a peak of 0.99."""
    level = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if level == 0.0:
        return audio
    gain = min(rms / level, 0.99 / float(np.max(np.abs(audio))))
    return (audio * gain).astype(np.float32)


def estimate_midi_note(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """Median f0 of the voiced part as a fractional MIDI note (None when no pitch is found)."""
    import librosa

    f0, voiced, _ = librosa.pyin(audio, fmin=50.0, fmax=2000.0, sr=sample_rate, frame_length=2048)
    pitched = f0[voiced & np.isfinite(f0)]
    if pitched.size == 0:
        return None
    return float(librosa.hz_to_midi(np.median(pitched)))


def shift_to_c4(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float | None]:
    """Pitch-shift ``audio`` so its detected note becomes C4 (MIDI 60), keeping its length
    and timbre (pedalboard's phase-vocoder shifter). Returns the audio and the detected
    note (None and the audio unchanged when no pitch is found)."""
    import pedalboard

    note = estimate_midi_note(audio, sample_rate)
    if note is None or abs(note - 60.0) < 0.05:
        return audio, note
    semitones = float(np.clip(60.0 - note, -72.0, 72.0))
    shifter = pedalboard.Pedalboard([pedalboard.PitchShift(semitones=semitones)])
    shifted = shifter(audio.astype(np.float32), sample_rate)
    return np.asarray(shifted, dtype=np.float32).reshape(-1)[: audio.shape[0]], note


def note_name(note: float) -> str:
    import librosa

    return librosa.midi_to_note(note, cents=True, unicode=False)


def prepare_audio(
    audio: np.ndarray | str | os.PathLike,
    *,
    role: str,
    normalise: bool,
    to_c4: bool,
    notes: list[str],
    sample_rate: int = SAMPLE_RATE,
    duration_s: float = DURATION_S,
) -> np.ndarray:
    """Load or validate, make mono at ``sample_rate``, optionally normalise loudness,
    trim leading silence and shift to C4; then fit to ``duration_s``."""
    allow_silent = role != "target"
    if isinstance(audio, (str, os.PathLike)):
        # Read a little more than needed so trimming leading silence still leaves a full clip.
        array = load_audio(audio, sample_rate=sample_rate, duration_s=duration_s + 1.0, allow_silent=allow_silent)
        name = f"The {role} '{audio}'"
    else:
        array = check_audio(audio, name=f"The {role} audio", sample_rate=sample_rate, duration_s=None,
                            allow_silent=allow_silent)
        name = f"The {role} audio"
    if normalise:
        array = trim_leading_silence(array)
        array = normalise_loudness(array)
    if to_c4:
        array, note = shift_to_c4(array, sample_rate)
        if note is None:
            notes.append(f"{name} has no clear pitch; it was not shifted.")
        else:
            notes.append(f"{name} was detected as {note_name(note)} and shifted to C4.")
    array = check_audio(array, name=name, sample_rate=sample_rate, duration_s=duration_s,
                        allow_silent=allow_silent)
    return array


def resolve_bundle(bundle: Any, rack: Rack):
    """A loaded ``ModelBundle`` from a bundle object, a shipped bundle name or a folder."""
    from serumrnn.core.bundle import ModelBundle

    # Sessions extract features with the default settings: a bundle trained on others
    # must be refused here, not halfway through the first step.
    settings = LibrosaFeatureExtractor().settings
    if isinstance(bundle, ModelBundle):
        bundle.check_rack(rack)
        if bundle.feature_settings != settings:
            raise BundleError(f"Bundle '{bundle.path}' was trained with other feature settings than sessions use; "
                              "use a matching bundle.")
        return bundle
    name = default_bundle_name() if bundle is None else str(bundle)
    path = Path(name)
    if not path.exists() and name in shipped_bundles():
        path = BUNDLES_DIR / name
    elif not path.exists():
        shipped = shipped_bundles()
        raise BundleError(
            f"No model bundle {name!r}: it is neither a folder nor a shipped bundle "
            f"(shipped: {', '.join(shipped) or 'none'}); train one with `serumrnn train` and pass --bundle PATH."
        )
    return ModelBundle.load(path, rack=rack, feature_settings=settings)


# -- the engine ----------------------------------------------------------------------------
def instruction_text(step: int, effect, knobs: Mapping[str, float]) -> str:
    """Instruction for a person, e.g. ``Step 2: add Distortion. Mode: tube. Drive: 0.71 (+17 dB).``"""
    return f"Step {step}: add {effect.label or effect.name}. {effect.describe_knobs(knobs)}".rstrip()


def _physical(effect, knobs: Mapping[str, float]) -> dict[str, str]:
    return {name: effect.param(name).describe(value) for name, value in knobs.items()}


def run_session(
    source: str | np.ndarray,
    target_audio: np.ndarray,
    *,
    rack: Rack,
    bundle: Any,
    selector: Any,
    metric: str = "mssmae",
    tolerance: int = 1,
    true_chain: Sequence[str] | None = None,
    seed: int = 0,
    extractor: LibrosaFeatureExtractor | None = None,
    notes: Sequence[str] = (),
) -> Session:
    """Run the iterative search.

    Parameters
    ----------
    source: a preset name of ``rack``'s synth, or prepared input audio ``(n_samples,)``.
    target_audio: prepared target, float32 ``(n_samples,)``.
    bundle: a loaded ``ModelBundle`` (its parameter models predict every knob).
    selector: a registered selector (``probabilities(state)``).
    metric: the stopping rule's metric; tolerance: bad steps tolerated before stopping.
    true_chain: effect names that made the target (oracle only).
    """
    if metric not in METRICS:
        raise ParameterError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    if tolerance < 0:
        raise ParameterError(f"Tolerance is {tolerance}; give 0 or more bad steps to tolerate.")
    extractor = extractor or LibrosaFeatureExtractor()
    input_audio = rack.render(source)
    input_features = extractor.extract(input_audio, rack.sample_rate)
    target_features = extractor.extract(target_audio, rack.sample_rate)
    reference = MetricReference(target_audio, target_features)
    initial = reference.compare(input_audio, input_features)
    session = Session(
        rack=rack.name, selector=selector.name, metric=metric, tolerance=tolerance,
        source=source if isinstance(source, str) else "audio",
        input_audio=input_audio, target_audio=target_audio, input_features=input_features,
        target_features=target_features, initial_metrics=initial, notes=list(notes),
        sample_rate=rack.sample_rate,
    )
    if np.array_equal(input_audio, target_audio) or initial["mse"] == 0.0 and initial["mssmae"] == 0.0:
        session.stop_reason = "the input already matches the target: nothing to do"
        return session
    effect_names = rack.effect_names
    state = SelectionState(history=[input_features], applied=[], target=target_features,
                           effect_names=effect_names, bundle=bundle, true_chain=true_chain,
                           rng=np.random.default_rng(seed))
    if getattr(selector, "one_shot", False):
        _run_one_shot(session, source, rack, bundle, selector, state, reference, extractor)
        return session

    chain: list[tuple[str, dict[str, float]]] = []
    rule = StoppingRule(metric, tolerance, initial[metric])
    while len(chain) < len(effect_names):
        started = time.perf_counter()
        scores = np.asarray(selector.probabilities(state), dtype=np.float64)
        if getattr(selector, "needs_true_chain", False) and not np.any(scores > 0):
            session.stop_reason = "the true chain is complete"
            break
        effect_name, probability = _most_probable_unused(scores, effect_names, state.applied)
        knobs = bundle.predict_knobs(effect_name, state.history[-1], target_features)
        chain.append((effect_name, knobs))
        step = _render_step(session, source, rack, chain, probability, rule.previous, reference, extractor, started)
        state.history = [*state.history, step.features]
        state.applied = [*state.applied, effect_name]
        if rule.after_step(step.metrics[metric])[1]:
            session.stop_reason = (
                f"{rule.bad_steps} step(s) moved {metric.upper()} away from the target "
                f"(tolerance {tolerance})"
            )
            break
    else:
        session.stop_reason = "every effect has been used"
    return session


def _most_probable_unused(scores: np.ndarray, effect_names: Sequence[str], applied: Sequence[str]) -> tuple[str, float]:
    """The highest-scoring effect not applied yet (a used effect is never repeated)."""
    if scores.shape != (len(effect_names),) or not np.all(np.isfinite(scores)):
        raise ParameterError(
            f"The selector returned scores of shape {scores.shape}; it must give one finite score per effect."
        )
    for index in np.argsort(-scores, kind="stable"):
        if effect_names[index] not in applied:
            return effect_names[index], float(scores[index])
    raise ParameterError("Every effect has been applied already.")


def _render_step(session, source, rack, chain, probability, previous, reference, extractor, started) -> Step:
    """Render ``source`` through ``chain``, measure it against the target and append the
    step for the chain's last effect; ``better`` compares with ``previous`` on the session's metric."""
    effect_name, knobs = chain[-1]
    audio = rack.render(source, chain)
    features = extractor.extract(audio, rack.sample_rate)
    metrics = reference.compare(audio, features)
    effect = rack.effect(effect_name)
    step = Step(
        index=len(chain), effect=effect_name, label=effect.label or effect_name, knobs=knobs,
        physical=_physical(effect, knobs), instruction=instruction_text(len(chain), effect, knobs),
        probability=probability, audio=audio, features=features, metrics=metrics,
        better=improvement(previous, metrics[session.metric], session.metric) > 0,
        seconds=time.perf_counter() - started,
    )
    session.steps.append(step)
    return step


def _run_one_shot(session, source, rack, bundle, selector, state, reference, extractor) -> None:
    """SerumCNN 1S: choose every effect with probability > 0.5 (at least the most
    probable) from the input alone, predict all knobs from the input and target, render
    once. Intermediate renders are kept only so the steps can be listed and heard."""
    started = time.perf_counter()
    scores = np.asarray(selector.probabilities(state), dtype=np.float64)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0.5] or [int(np.argmax(scores))]
    chain = [(state.effect_names[i], bundle.predict_knobs(state.effect_names[i], session.input_features,
                                                          session.target_features)) for i in order]
    previous = session.initial_metrics[session.metric]
    for position in range(1, len(chain) + 1):
        # The one-shot decision's time is counted once, on the first step.
        step = _render_step(session, source, rack, chain[:position], float(scores[order[position - 1]]),
                            previous, reference, extractor, started if position == 1 else time.perf_counter())
        previous = step.metrics[session.metric]
    session.stop_reason = "one-shot system: every chosen effect applied at once"


# -- public API ----------------------------------------------------------------------------
def suggest(
    input: str | os.PathLike | np.ndarray,
    target: str | os.PathLike | np.ndarray,
    *,
    rack: str | Rack = "builtin",
    bundle: Any = None,
    selector: str = "rnn",
    tolerance: int = 1,
    metric: str = "mssmae",
    to_c4: bool = False,
    preset: str | None = None,
    true_chain: Sequence[str] | None = None,
    normalise: bool | None = None,
    seed: int = 0,
) -> Session:
    """Step-by-step instructions from ``input`` toward ``target``.

    Parameters
    ----------
    input: audio file path, mono/multichannel array at 44.1 kHz, or a preset name of the
        rack's synth (then the synth renders it, as in the paper); ignored with ``preset``.
    target: audio file path or array.
    rack: rack name or object; bundle: shipped bundle name, folder or loaded bundle
        (default: the shipped ``all`` bundle).
    selector: ``rnn`` (default), ``ni``, ``cnn``, ``cnn-1s``, ``random``, ``oracle``
        (needs ``true_chain``) or any plugin selector.
    tolerance: bad steps on ``metric`` tolerated before stopping.
    to_c4: detect the pitch of input and target and shift both to C4.
    normalise: bring user audio to one loudness and trim leading silence (default: on
        for files, off for arrays and presets).

    Returns
    -------
    Session
    """
    from serumrnn.core.registry import get_plugin_manager

    manager = get_plugin_manager()
    the_rack = rack if isinstance(rack, Rack) else manager.rack(rack)
    chosen = manager.selectors.get(selector)
    notes: list[str] = []
    source: str | np.ndarray
    if preset is None and isinstance(input, str) and not looks_like_audio_path(input):
        preset = input
    if preset is not None:
        the_rack.synth.preset(preset)
        source = preset
    else:
        source = prepare_audio(input, role="input", to_c4=to_c4, notes=notes,
                               normalise=isinstance(input, (str, os.PathLike)) if normalise is None else normalise,
                               sample_rate=the_rack.sample_rate, duration_s=the_rack.duration_s)
    target_audio = prepare_audio(target, role="target", to_c4=to_c4, notes=notes,
                                 normalise=isinstance(target, (str, os.PathLike)) if normalise is None else normalise,
                                 sample_rate=the_rack.sample_rate, duration_s=the_rack.duration_s)
    if getattr(chosen, "needs_true_chain", False) and true_chain is None:
        raise ParameterError(
            f"The {chosen.name} selector needs the true effect chain of the target; it is for evaluation "
            "and the demo only, use rnn for your own sounds."
        )
    loaded = resolve_bundle(bundle, the_rack)  # every system needs the parameter models
    if chosen.model_kind and not loaded.has_selector(chosen.model_kind):
        raise BundleError(
            f"Bundle '{loaded.path}' has no {chosen.model_kind} selection model; train it with "
            f"`serumrnn train selector --kind {chosen.model_kind}` or choose another selector."
        )
    missing = [name for name in the_rack.effect_names if not loaded.has_param_model(name)]
    if missing:
        raise BundleError(
            f"Bundle '{loaded.path}' has no parameter model for {', '.join(missing)}; train it with "
            "`serumrnn train params --effect all`."
        )
    return run_session(source, target_audio, rack=the_rack, bundle=loaded, selector=chosen, metric=metric,
                       tolerance=tolerance, true_chain=true_chain, seed=seed, notes=notes)


# -- outputs -------------------------------------------------------------------------------
def check_output_dir(out_dir: str | os.PathLike, *, replace: bool = False) -> Path:
    """Refuse an --out folder that holds files (unless ``replace``) or whose parent is
    missing (checked before a session runs, so a bad path fails at once)."""
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise OutputError(f"Output path '{target}' is a file; choose a folder for --out.")
    if target.exists() and not replace and any(target.iterdir()):
        raise OutputError(f"Output folder '{target}' already exists and is not empty; choose a new --out folder.")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"Output folder's parent '{parent}' does not exist; create it or choose another --out.")
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_output_dir(out_dir: str | os.PathLike, *, replace: bool = False, what: str = "the results") -> Iterator[Path]:
    """Yield an empty staging folder beside ``out_dir``; once the block succeeds it
    becomes ``out_dir`` (all or nothing). On any error the staging folder is removed and
    ``out_dir`` is left as it was. ``replace`` swaps out an existing folder only at the end."""
    target = check_output_dir(out_dir, replace=replace)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the result is the user's folder
    except OSError as exc:
        raise OutputError(f"Cannot write to '{parent}' ({exc.strerror}); choose a writable --out folder.") from None
    try:
        yield staging
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=parent))
            os.replace(target, old / "previous")
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"Could not write {what} to '{target}' ({exc.strerror}); free space or choose another --out.") from None
    except OutputError as exc:  # name the folder the user asked for, not the staging folder
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(str(exc).replace(str(staging), str(target))) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_session(
    session: Session, out_dir: str | os.PathLike, *, replace: bool = False,
    extra_json: Mapping[str, Any] | None = None,
) -> Path:
    """Write input, every step and the target as WAV, ``session.json`` and
    ``progression.png`` into ``out_dir``, all or nothing (built in a temporary folder
    beside it, then renamed). ``replace`` swaps out an existing folder only once the new
    one is complete; ``extra_json`` adds keys to ``session.json``."""
    import json

    from serumrnn.core.plots import plot_mels

    with staged_output_dir(out_dir, replace=replace, what="the session") as staging:
        write_wav(staging / "00-input.wav", session.input_audio, session.sample_rate)
        for step in session.steps:
            write_wav(staging / f"{step.index:02d}-{step.effect}.wav", step.audio, session.sample_rate)
        write_wav(staging / "99-target.wav", session.target_audio, session.sample_rate)
        (staging / "session.json").write_text(json.dumps({**session.to_json(), **(extra_json or {})}, indent=2) + "\n")
        metric = session.metric
        panels = [(f"input\n{metric.upper()} {session.initial_metrics[metric]:.3g}", session.input_features.db_mel)]
        for step in session.steps:
            mark = " (best)" if step.index == session.best_index else ""
            panels.append((f"step {step.index}: {step.label}{mark}\n{metric.upper()} {step.metrics[metric]:.3g}",
                           step.features.db_mel))
        panels.append(("target", session.target_features.db_mel))
        plot_mels(panels, staging / "progression.png",
                  suptitle=f"From input to target, one effect per step (selector {session.selector})")
    return Path(out_dir)


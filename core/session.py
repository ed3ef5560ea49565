"""The session engine (``docs/design.md``, "Data flow"): from an input toward a target,
one effect per step.

``suggest`` checks every option first (``check_options``), then reads the sounds, then
loads only the models its system uses. At every step the selector picks the next unused
effect, that effect's parameter model predicts its knobs from the current sound and the
target, the rack renders the chain so far, and the six distances to the target are
measured. The session stops when every effect is used or when more than ``tolerance``
steps have made the chosen metric worse. Each step carries a structured ``Instruction``;
its text is made in one place (``Instruction.text``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from serumrnn.core.audio import (
    DURATION_S, SAMPLE_RATE, check_audio, is_silent, load_audio, looks_like_audio_path, write_wav,
)
from serumrnn.core.errors import AudioError, BundleError, ParameterError
from serumrnn.core.features import Features, LibrosaFeatureExtractor
from serumrnn.core.loudness import DEFAULT as DEFAULT_LOUDNESS, NONE as NO_LEVELLING, LoudnessConvention
from serumrnn.core.metrics import LOWER_IS_BETTER, METRICS, MetricReference, closer_pct, improvement
from serumrnn.core.model_kinds import most_probable_unused
from serumrnn.core.params import default_knobs
from serumrnn.core.rack import Rack
from serumrnn.core.search import (
    DEFAULT_BUDGET_MS, SEARCH_ONLY, ChainReviser, Found, SearchOptions, StepSearch, ranked_prediction, search_options,
)
from serumrnn.core.interfaces import SelectionState

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
# Leading samples quieter than this fraction of the peak (-50 dB) are trimmed.
LEADING_SILENCE_RATIO = 10 ** (-50 / 20)
# Shorter quiet starts are the attack of the note itself, not a gap before it.
MIN_LEADING_GAP_S = 0.01


@attrs.frozen
class KnobSetting:
    """One knob of an instruction: ``value`` is the knob in [0, 1]; ``shown`` is what a
    person reads (a class label, or the physical value with its unit)."""

    name: str
    label: str
    value: float
    shown: str
    unit: str = ""
    categorical: bool = False

    @property
    def text(self) -> str:
        """``Drive: 0.71 (+17 dB).``, ``Mode: tube.`` or ``Mix: 0.50.``"""
        if self.categorical:
            return f"{self.label}: {self.shown}."
        if self.unit:
            return f"{self.label}: {self.value:.2f} ({self.shown})."
        return f"{self.label}: {self.value:.2f}."


@attrs.frozen
class Instruction:
    """What a person does at step ``step``: add ``effect`` (shown as ``label``) and set
    its ``knobs`` (in the order the effect lists them)."""

    step: int
    effect: str
    label: str
    knobs: tuple[KnobSetting, ...] = ()

    @classmethod
    def of(cls, step: int, effect, knobs: Mapping[str, float]) -> "Instruction":
        """The instruction for ``knobs`` of an ``Effect``; an unknown knob is refused."""
        settings = {}
        for name, value in knobs.items():
            spec = effect.param(name)
            settings[name] = KnobSetting(
                name=name, label=spec.label or spec.name.replace("_", " ").capitalize(), value=float(value),
                shown=spec.describe(value), unit=spec.unit or "", categorical=spec.kind == "categorical")
        ordered = tuple(settings[spec.name] for spec in effect.params if spec.name in settings)
        return cls(step=step, effect=effect.name, label=effect.label or effect.name, knobs=ordered)

    @property
    def settings_text(self) -> str:
        """The knobs as a person sets them: ``Mode: tube. Drive: 0.71 (+17 dB).``"""
        return " ".join(knob.text for knob in self.knobs)

    @property
    def action(self) -> str:
        """The instruction without its step number: ``add Distortion. Mode: tube. ...``"""
        return f"add {self.label}. {self.settings_text}".rstrip()

    @property
    def text(self) -> str:
        """The whole instruction, as ``session.json`` records it: ``Step 2: add Distortion. ...``"""
        return f"Step {self.step}: {self.action}"

    @property
    def physical(self) -> dict[str, str]:
        """Knob name -> what a person reads (``session.json``'s ``knobs_physical``)."""
        return {knob.name: knob.shown for knob in self.knobs}


@attrs.define
class Step:
    """One applied effect. ``metrics`` are the distances to the target after the step;
    ``improvement_pct`` is how much closer (in %) the chosen metric got from the input."""

    index: int
    effect: str
    knobs: dict[str, float]
    instruction: Instruction
    probability: float
    audio: np.ndarray = attrs.field(repr=False)
    features: Features = attrs.field(repr=False)
    metrics: dict[str, float]
    better: bool
    seconds: float
    # The parameter model's knobs for this effect (None without a model), whether search
    # changed the models' guess ("searched") or kept it ("predicted"), and renders spent.
    model_knobs: dict[str, float] | None = None
    mode: str = "predicted"
    renders: int = 1

    @property
    def label(self) -> str:
        return self.instruction.label

    @property
    def physical(self) -> dict[str, str]:
        """Knob name -> physical value, in the order of ``knobs``."""
        shown = self.instruction.physical
        return {name: shown[name] for name in self.knobs}


@attrs.define
class Revision:
    """The chain of the first ``kept`` steps revised as a whole once the steps were found
    (``core/search.py``, ``ChainReviser``): ``instructions`` set up the revised chain from
    the input, ``changes`` say in words what differs from the steps, and ``metrics`` are
    its distances to the target (never farther than the kept step on the session's metric)."""

    kept: int
    chain: list[tuple[str, dict[str, float]]]
    instructions: tuple[Instruction, ...]
    changes: tuple[str, ...]
    audio: np.ndarray = attrs.field(repr=False)
    features: Features = attrs.field(repr=False)
    metrics: dict[str, float]
    renders: int
    seconds: float

    def to_json(self, session: "Session") -> dict[str, Any]:
        return {"kept_steps": self.kept, "chain": [{"effect": name, "knobs": knobs} for name, knobs in self.chain],
                "instructions": [instruction.text for instruction in self.instructions],
                "knobs_physical": [instruction.physical for instruction in self.instructions],
                "changes": list(self.changes), "metrics": self.metrics,
                "closer_pct": session.closer_pct(self.metrics), "renders": self.renders, "seconds": self.seconds}


@attrs.define
class Session:
    """The result of a session: every step, the best one and why it stopped; with search,
    the revision of the kept steps (``revision``), which is then the best sound."""

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
    loudness: LoudnessConvention = NO_LEVELLING
    search: dict[str, Any] | None = None  # the search options (None: the plain models' session)
    revision: Revision | None = None
    # The source as it entered the chain (before levelling its output): revisions start here.
    entry: np.ndarray | None = attrs.field(default=None, repr=False)

    @property
    def best_index(self) -> int:
        """Number of steps to keep for the closest sound on the chosen metric (0 = the input)."""
        return best_step_index(self.initial_metrics[self.metric], [step.metrics[self.metric] for step in self.steps],
                               self.metric)

    @property
    def best_metrics(self) -> dict[str, float]:
        """The distances of the best sound: the revision's when there is one."""
        if self.revision is not None:
            return self.revision.metrics
        best = self.best_index
        return self.initial_metrics if best == 0 else self.steps[best - 1].metrics

    @property
    def best_audio(self) -> np.ndarray:
        if self.revision is not None:
            return self.revision.audio
        best = self.best_index
        return self.input_audio if best == 0 else self.steps[best - 1].audio

    def closer_pct(self, metrics: Mapping[str, float], metric: str | None = None) -> float:
        """How much closer than the input, in percent of the input's distance."""
        metric = metric or self.metric
        return closer_pct(self.initial_metrics[metric], metrics[metric], metric)

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
                    "instruction": step.instruction.text,
                    "knobs": step.knobs,
                    "model_knobs": step.model_knobs,
                    "mode": step.mode,
                    "renders": step.renders,
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
            "loudness": self.loudness.to_json(),
            "search": self.search,
            "revision": None if self.revision is None else self.revision.to_json(self),
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


def check_stopping_rule(metric: str, tolerance: int) -> None:
    """Refuse, in one sentence, a metric or tolerance the stopping rule cannot use."""
    if metric not in METRICS:
        raise ParameterError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    if tolerance < 0:
        raise ParameterError(f"Tolerance is {tolerance}; give 0 or more bad steps to tolerate.")


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
def trim_leading_silence(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Drop a leading gap: the samples before the first one within 50 dB of the peak,
    when they last at least ``MIN_LEADING_GAP_S``. A note that starts at once keeps every
    sample, so an input and a target rendered from it stay aligned sample for sample."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        return audio
    start = int(np.argmax(np.abs(audio) >= peak * LEADING_SILENCE_RATIO))
    return audio[start:] if start >= MIN_LEADING_GAP_S * sample_rate else audio


# The note search range (a 50 Hz to 2 kHz fundamental) and YIN's frame and trough threshold.
NOTE_FMIN_HZ, NOTE_FMAX_HZ = 50.0, 2000.0
YIN_FRAME = 2048
YIN_THRESHOLD = 0.1
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def yin_f0(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """f0 in Hz per frame by YIN (de Cheveigne and Kawahara 2002), the same arithmetic as
    ``librosa.yin(audio, fmin=50, fmax=2000, frame_length=2048)``: centred frames, hop
    512, cumulative mean normalised difference, absolute threshold 0.1, parabolic
    refinement. Written here because importing librosa's pitch module (numba kernels)
    costs a session more than a second of start-up."""
    import scipy.fft

    audio = np.asarray(audio)
    half = YIN_FRAME // 2
    padded = np.pad(audio, (half, half))
    frames = np.lib.stride_tricks.sliding_window_view(padded, YIN_FRAME)[:: YIN_FRAME // 4].T  # (frame, n)
    min_period = int(np.floor(sample_rate / NOTE_FMAX_HZ))
    max_period = min(int(np.ceil(sample_rate / NOTE_FMIN_HZ)), YIN_FRAME - 1)
    # Autocorrelation by FFT, then the difference function
    # d(k) = 2 (r(0) - r(k)) - (energy of the first k samples, the first term left out, as librosa does).
    size = scipy.fft.next_fast_len(2 * YIN_FRAME - 1, real=True)
    spectrum = scipy.fft.rfft(frames, n=size, axis=0)
    autocorrelation = scipy.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=size, axis=0)[: max_period + 1]
    energy = np.cumsum(np.square(frames), axis=0)
    energy[0] = 0
    difference = 2 * (autocorrelation[0:1] - autocorrelation[1:]) - energy[:max_period]
    lags = np.arange(1, max_period + 1)[:, None]
    mean = np.cumsum(difference, axis=0) / lags
    denominator = mean[min_period - 1 : max_period]
    normalised = difference[min_period - 1 :] / (denominator + np.finfo(denominator.dtype).tiny)
    # The first lag below the threshold that is a local minimum; the global minimum otherwise.
    troughs = np.zeros(normalised.shape, dtype=bool)
    troughs[0] = normalised[0] < normalised[1]
    troughs[1:-1] = (normalised[1:-1] < normalised[:-2]) & (normalised[1:-1] <= normalised[2:])
    troughs[-1] = normalised[-1] < normalised[-2]
    deep = troughs & (normalised < YIN_THRESHOLD)
    period = np.where(deep.any(axis=0), np.argmax(deep, axis=0), np.argmin(normalised, axis=0))
    # Parabolic refinement of each lag (0 where the parabola's optimum leaves the
    # neighbouring lags, and at both ends).
    curvature = (normalised[2:] + normalised[:-2]).astype(np.float64) - 2 * normalised[1:-1].astype(np.float64)
    slope = (normalised[2:] - normalised[:-2]).astype(np.float64) / 2
    shifts = np.zeros(normalised.shape, dtype=normalised.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        shifts[1:-1] = np.where(np.abs(slope) >= np.abs(curvature), 0.0, -slope / curvature)
    columns = np.arange(normalised.shape[1])
    return sample_rate / (min_period + period + shifts[period, columns])


def detect_note(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """The note of ``audio`` (YIN, tens of ms): the median f0 as a fractional MIDI note, or
    None when the frames disagree by more than a semitone (no single clear pitch)."""
    f0 = yin_f0(audio, sample_rate)
    notes = 12 * (np.log2(f0[np.isfinite(f0)]) - np.log2(440.0)) + 69
    if notes.size == 0:
        return None
    low, middle, high = np.percentile(notes, [25, 50, 75])
    return float(middle) if high - low <= 1.0 else None


def shift_to_c4(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float | None]:
    """Pitch-shift ``audio`` so its detected note becomes C4 (MIDI 60), keeping its length
    and timbre (pedalboard's phase-vocoder shifter). Returns the audio and the detected
    note (None and the audio unchanged when no pitch is found)."""
    import pedalboard

    note = detect_note(audio, sample_rate)
    if note is None or abs(note - 60.0) < 0.05:
        return audio, note
    semitones = float(np.clip(60.0 - note, -72.0, 72.0))
    shifter = pedalboard.Pedalboard([pedalboard.PitchShift(semitones=semitones)])
    shifted = shifter(audio.astype(np.float32), sample_rate)
    return np.asarray(shifted, dtype=np.float32).reshape(-1)[: audio.shape[0]], note


def note_name(note: float, *, cents: bool = True) -> str:
    """``G4`` (or with cents, ``G4+3``), as ``librosa.midi_to_note`` writes it."""
    number = int(np.round(note))
    name = f"{NOTE_NAMES[number % 12]}{int(number / 12) - 1}"
    return f"{name}{int(100 * np.around(note - number, 2)):+02d}" if cents else name


def prepare_audio(
    audio: np.ndarray | str | os.PathLike,
    *,
    role: str,
    to_c4: bool,
    notes: list[str],
    sample_rate: int = SAMPLE_RATE,
    duration_s: float = DURATION_S,
) -> np.ndarray:
    """Load (a file) or validate (an array), make mono at ``sample_rate``, trim leading
    silence, optionally shift to C4, and fit to ``duration_s``. Files and arrays take the
    same path, so the same samples give the same session; the level is left to the
    bundle's loudness convention (``core/loudness.py``), applied by the session."""
    allow_silent = role != "target"
    if isinstance(audio, (str, os.PathLike)):
        # Read a little more than needed so trimming leading silence still leaves a full clip.
        array = load_audio(audio, sample_rate=sample_rate, duration_s=duration_s + 1.0, allow_silent=allow_silent)
        name = f"The {role} '{audio}'"
    else:
        array = check_audio(audio, name=f"The {role} audio", sample_rate=sample_rate, duration_s=None,
                            allow_silent=allow_silent)
        name = f"The {role} audio"
    if role == "input" and is_silent(array):
        raise AudioError(f"{name} is silent; effects cannot shape silence, give a sound to start from.")
    array = trim_leading_silence(array, sample_rate)
    if to_c4:
        array, note = shift_to_c4(array, sample_rate)
        if note is None:
            notes.append(f"{name} has no clear pitch; it was not shifted.")
        else:
            notes.append(f"{name} was detected as {note_name(note)} and shifted to C4.")
    else:  # silence was refused above (input here, target by check_audio)
        # Any note works as it is (the default bundle trained on C2-C6); say which one we heard.
        note = detect_note(array[: int(duration_s * sample_rate)], sample_rate)
        notes.append(f"{name} sounds like {note_name(round(note), cents=False)}." if note is not None
                     else f"{name} has no single clear pitch.")
    array = check_audio(array, name=name, sample_rate=sample_rate, duration_s=duration_s,
                        allow_silent=allow_silent)
    return array


def bundle_loudness(bundle: Any) -> LoudnessConvention:
    """The loudness convention a bundle was trained under; search without any bundle uses
    the default convention (objects that record none stand for old bundles: ``none``)."""
    if bundle is None:
        return DEFAULT_LOUDNESS
    return getattr(bundle, "loudness", None) or NO_LEVELLING


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
    # Models are built when first used: a session asks only for those its system needs.
    return ModelBundle.load(bundle_path(bundle), rack=rack, feature_settings=settings, build_models=False)


def bundle_path(bundle: str | os.PathLike | None) -> Path:
    """The folder of a shipped bundle name or a bundle folder (None: the default bundle)."""
    name = default_bundle_name() if bundle is None else str(bundle)
    path = Path(name)
    if not path.exists() and name in shipped_bundles():
        return BUNDLES_DIR / name
    if not path.exists():
        shipped = shipped_bundles()
        raise BundleError(
            f"No model bundle {name!r}: it is neither a folder nor a shipped bundle "
            f"(shipped: {', '.join(shipped) or 'none'}); train one with `serumrnn train` and pass --bundle PATH."
        )
    return path


# -- the engine ----------------------------------------------------------------------------
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
    search: bool | SearchOptions | None = None,
    **search_keywords: Any,
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
    search: search every step within a budget (``core/search.py``; None: ``SEARCH_BY_DEFAULT``,
        False: the plain models' session, or ``SearchOptions``); search_keywords:
        ``budget_ms``, ``top_k``, ``max_renders`` as ``suggest`` takes them (not with
        ``SearchOptions``). Without a parameter model for an effect (or ``bundle`` None)
        search alone finds its knobs.
    """
    options = search if isinstance(search, SearchOptions) else search_options(search, **search_keywords)
    if bundle is None and (options is None or getattr(selector, "model_kind", None)):
        raise BundleError(f"Without a model bundle only search can find the steps, choosing among every effect; "
                          f"turn search on and use the {SEARCH_ONLY.name} or random selector, or give a bundle.")
    check_stopping_rule(metric, tolerance)
    extractor = extractor or LibrosaFeatureExtractor()
    # The bundle's loudness convention: the source levelled into the chain, every step and
    # the target levelled before features and distances (core/loudness.py).
    loudness = bundle_loudness(bundle)
    # The source as it enters the chain, levelled once: every step continues from it.
    entry = rack.level_source(source, loudness)
    input_audio = loudness.apply(entry, rack.sample_rate)
    target_audio = loudness.apply(np.asarray(target_audio, dtype=np.float32), rack.sample_rate)
    input_features = extractor.extract(input_audio, rack.sample_rate)
    target_features = extractor.extract(target_audio, rack.sample_rate)
    reference = MetricReference(target_audio, target_features)
    initial = reference.compare(input_audio, input_features)
    session = Session(
        rack=rack.name, selector=selector.name, metric=metric, tolerance=tolerance,
        source=source if isinstance(source, str) else "audio",
        input_audio=input_audio, target_audio=target_audio, input_features=input_features,
        target_features=target_features, initial_metrics=initial, notes=list(notes),
        sample_rate=rack.sample_rate, loudness=loudness, entry=entry,
    )
    if np.array_equal(input_audio, target_audio) or initial["mse"] == 0.0 and initial["mssmae"] == 0.0:
        session.stop_reason = "the input already matches the target: nothing to do"
        return session
    effect_names = rack.effect_names
    state = SelectionState(history=[input_features], applied=[], target=target_features,
                           effect_names=effect_names, bundle=bundle, true_chain=true_chain,
                           rng=np.random.default_rng(seed))
    if getattr(selector, "one_shot", False):
        if options is not None:
            session.notes.append(f"The {selector.name} system renders its one-shot chain as predicted; it does not search.")
        _run_one_shot(session, entry, rack, bundle, selector, state, reference, extractor)
        return session

    searcher = None if options is None else StepSearch(
        options, rack=rack, entry=entry, bundle=bundle, extractor=extractor, reference=reference, metric=metric,
        loudness=loudness, target_features=target_features, seed=seed)
    session.search = None if options is None else options.to_json()
    chain: list[tuple[str, dict[str, float]]] = []
    # What the next effect will shape: the chain's output before levelling (a shaper's
    # measured drive depends on the level it is fed).
    chain_output = entry
    rule = StoppingRule(metric, tolerance, initial[metric])
    try:
        while len(chain) < len(effect_names):
            started = time.perf_counter()
            scores = np.asarray(selector.probabilities(state), dtype=np.float64)
            if getattr(selector, "needs_true_chain", False) and not np.any(scores > 0):
                session.stop_reason = "the true chain is complete"
                break
            found = None
            if searcher is None:
                effect_name, probability = most_probable_unused(scores, effect_names, state.applied)
                knobs = rack.measure_knobs(effect_name, chain_output, target_audio,
                                           *ranked_prediction(bundle, effect_name, state.history[-1], target_features))
            else:
                found = searcher.step(scores, state, chain, started,
                                      positive_only=getattr(selector, "needs_true_chain", False))
                effect_name, knobs, probability = found.trial.effect, found.trial.knobs, found.probability
            searched_at = time.perf_counter()
            chain.append((effect_name, knobs))
            if found is None:
                chain_output = rack.process(entry, chain)
            step = _render_step(session, entry, rack, chain, probability, rule.previous, reference, extractor,
                                started, found, chain_output=chain_output if found is None else None)
            if searcher is not None:  # the kept sound's features and metrics: reserved from the next budget
                searcher.finished(time.perf_counter() - searched_at)
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
    finally:
        if searcher is not None:
            searcher.close()
    if options is not None and options.revise_renders:
        session.revision = revise_session(session, session.best_index, rack=rack, renders=options.revise_renders,
                                          budget_ms=options.budget_ms, extractor=extractor, reference=reference)
    return session


def revise_session(session: Session, kept: int, *, rack: Rack, renders: int, budget_ms: float | None = None,
                   extractor: LibrosaFeatureExtractor | None = None,
                   reference: MetricReference | None = None) -> Revision | None:
    """The first ``kept`` steps of ``session`` revised as a whole within ``renders``
    renders (and ``budget_ms`` per kept step, when given). When no step got closer (``kept``
    0), the first step is revised instead and kept only if it ends closer than the input.
    None when there is nothing to revise, nothing beat the input, or the session has no
    entry audio. Evaluation calls it with the steps a stopping rule keeps."""
    if not session.steps or session.entry is None:
        return None
    started = time.perf_counter()
    extractor = extractor or LibrosaFeatureExtractor()
    reference = reference or MetricReference(session.target_audio, session.target_features)
    steps = session.steps[:max(kept, 1)]
    deadline = math.inf if budget_ms is None else started + budget_ms * len(steps) / 1000.0
    reviser = ChainReviser(rack=rack, entry=session.entry, loudness=session.loudness, reference=reference,
                           metric=session.metric, renders=renders, deadline=deadline)
    chain = [(step.effect, step.knobs) for step in steps]
    revised = reviser.revise(chain, steps[-1].metrics[session.metric], additions=revision_additions(chain, rack))
    if not kept and improvement(session.initial_metrics[session.metric], revised.score, session.metric) <= 0:
        return None  # the retuned first step still does not beat the input
    features = extractor.extract(revised.audio, rack.sample_rate)
    metrics = reference.compare(revised.audio, features, mssmae=revised.score if session.metric == "mssmae" else None)
    instructions = tuple(Instruction.of(index, rack.effect(name), knobs)
                         for index, (name, knobs) in enumerate(revised.chain, start=1))
    return Revision(kept=len(steps), chain=revised.chain, instructions=instructions,
                    changes=tuple(revision_changes(steps, instructions)), audio=revised.audio, features=features,
                    metrics=metrics, renders=revised.renders, seconds=time.perf_counter() - started)


def revision_additions(chain: Sequence[tuple[str, Mapping[str, float]]], rack: Rack) -> list[tuple[str, dict]]:
    """Effects the revision may add to ``chain``: the rack's others, at their knob defaults
    (not the knobs of steps after the kept ones: evaluation runs sessions past the point
    where suggest stops, so those would differ between the two)."""
    used = {name for name, _ in chain}
    return [(name, default_knobs(rack.effect(name).sampled_params))
            for name in rack.effect_names if name not in used]


def revision_changes(steps: Sequence[Step], revised: Sequence[Instruction]) -> list[str]:
    """What a revision changed, as a person reads it: effects left out, a new order, and
    each knob whose shown value changed (``Phaser, Feedback: 0.22 -> 0.10``)."""
    kept = {instruction.effect: instruction for instruction in revised}
    changes = [f"Leave out {step.label} (step {step.index})." for step in steps if step.effect not in kept]
    remaining = [step.effect for step in steps if step.effect in kept]
    stepped = {step.effect for step in steps}
    if remaining != [instruction.effect for instruction in revised if instruction.effect in stepped]:
        changes.append("New order: " + " -> ".join(instruction.label for instruction in revised) + ".")
    changes += [f"Add {instruction.label} (step {instruction.step}). {instruction.settings_text}"
                for instruction in revised if instruction.effect not in stepped]
    for step in steps:
        if step.effect not in kept:
            continue
        before = {knob.name: knob for knob in step.instruction.knobs}
        moved = [f"{knob.label}: {_shown(before[knob.name])} -> {_shown(knob)}" for knob in kept[step.effect].knobs
                 if knob.name in before and _shown(before[knob.name]) != _shown(knob)]
        if moved:
            changes.append(f"{step.label}, " + "; ".join(moved) + ".")
    return changes


def _shown(knob: KnobSetting) -> str:
    return knob.shown if knob.categorical else f"{knob.value:.2f}"


def _render_step(session, entry, rack, chain, probability, previous, reference, extractor, started,
                 found: Found | None = None, chain_output: np.ndarray | None = None) -> Step:
    """Render ``entry`` (the levelled source) through ``chain`` and level the result (or
    level ``chain_output``, the chain's output already rendered), or take the searched
    sound ``found``; measure it against the target and append the step for the chain's
    last effect; ``better`` compares with ``previous`` on the session's metric."""
    effect_name, knobs = chain[-1]
    if found is None:
        raw = rack.process(entry, chain) if chain_output is None else chain_output
        audio = session.loudness.apply(raw, rack.sample_rate)
        features = extractor.extract(audio, rack.sample_rate)
        metrics = reference.compare(audio, features)
    else:  # the search scored the stopping metric already; the other five only for the kept sound
        audio = found.trial.audio
        features = found.trial.features if found.trial.features is not None else extractor.extract(
            audio, rack.sample_rate)
        metrics = reference.compare(audio, features, mssmae=found.trial.score if session.metric == "mssmae" else None)
    step = Step(
        index=len(chain), effect=effect_name, knobs=knobs,
        instruction=Instruction.of(len(chain), rack.effect(effect_name), knobs),
        probability=probability, audio=audio, features=features, metrics=metrics,
        better=improvement(previous, metrics[session.metric], session.metric) > 0,
        seconds=time.perf_counter() - started,
        model_knobs=knobs if found is None else found.model_knobs,
        mode="predicted" if found is None else found.mode,
        renders=1 if found is None else found.renders,
    )
    session.steps.append(step)
    return step


def _run_one_shot(session, entry, rack, bundle, selector, state, reference, extractor) -> None:
    """SerumCNN 1S: choose every effect with probability > 0.5 (at least the most
    probable) from the input alone, predict all knobs from the input and target, render
    once. Intermediate renders are kept only so the steps can be listed and heard."""
    started = time.perf_counter()
    scores = np.asarray(selector.probabilities(state), dtype=np.float64)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0.5] or [int(np.argmax(scores))]
    chain = [(state.effect_names[i], rack.measure_knobs(
        state.effect_names[i], session.input_audio, session.target_audio,
        *ranked_prediction(bundle, state.effect_names[i], session.input_features, session.target_features)))
        for i in order]
    previous = session.initial_metrics[session.metric]
    for position in range(1, len(chain) + 1):
        # The one-shot decision's time is counted once, on the first step.
        step = _render_step(session, entry, rack, chain[:position], float(scores[order[position - 1]]),
                            previous, reference, extractor, started if position == 1 else time.perf_counter())
        previous = step.metrics[session.metric]
    session.stop_reason = "one-shot system: every chosen effect applied at once"


# -- public API ----------------------------------------------------------------------------
@attrs.frozen
class SessionPlan:
    """``suggest``'s options once checked, before any sound is read or model loaded.

    ``preset``: the rack's synth renders the input (None: the input is a sound);
    ``bundle``: a loaded bundle, a bundle folder, or None (search alone);
    ``search``: the search options (None: the plain models' session)."""

    rack: Rack
    selector: Any
    metric: str
    tolerance: int
    search: SearchOptions | None
    bundle: Any
    preset: str | None = None
    true_chain: tuple[str, ...] | None = None


def check_options(input: str | os.PathLike | np.ndarray, *, rack: str | Rack, bundle: Any, selector: str,
                  tolerance: int, metric: str, preset: str | None, true_chain: Sequence[str] | None,
                  search: SearchOptions | None) -> SessionPlan:
    """Check ``suggest``'s options (``search``: its search keywords, checked by
    ``search_options``) without reading a sound or loading a model; the first bad one is
    refused with one sentence (``SerumRNNError``)."""
    from serumrnn.core.registry import get_plugin_manager

    check_stopping_rule(metric, tolerance)
    manager = get_plugin_manager()
    the_rack = rack if isinstance(rack, Rack) else manager.rack(rack)
    chosen = manager.selectors.get(selector)
    if getattr(chosen, "needs_true_chain", False) and true_chain is None:
        raise ParameterError(
            f"The {chosen.name} selector needs the true effect chain of the target; it is for evaluation "
            "and the demo only, use rnn for your own sounds."
        )
    if true_chain is not None:
        unknown = [name for name in true_chain if name not in the_rack.effect_names]
        if unknown:
            raise ParameterError(f"The true chain names {unknown[0]!r}, which rack {the_rack.name} does not have; "
                                 f"its effects are {', '.join(the_rack.effect_names)}.")
        true_chain = tuple(true_chain)
    if preset is None and isinstance(input, str) and not looks_like_audio_path(input):
        preset = input
    if preset is not None:
        the_rack.synth.preset(preset)  # refuses a name the synth does not have
    return SessionPlan(rack=the_rack, selector=chosen, metric=metric, tolerance=tolerance, search=search,
                       bundle=_bundle_source(bundle, the_rack, searching=search is not None),
                       preset=preset, true_chain=true_chain)


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
    seed: int = 0,
    search: bool | None = None,
    budget_ms: float | None = DEFAULT_BUDGET_MS,
    top_k: int | None = None,
    max_renders: int | None = None,
    revise_renders: int | None = None,
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
    search: after the models' guess, search each step within a budget (None: the default,
        ``core.search.SEARCH_BY_DEFAULT``; False: exactly the plain models' session).
    budget_ms: wall time per step (None: no time limit); max_renders: renders per step
        (deterministic for a seed; without either, ``core.search.DEFAULT_MAX_RENDERS``); top_k: candidate effects per step
        (None: every unused effect). With search on, effects without a parameter model and
        racks without a bundle (``bundle`` None) are searched from their knob defaults.
    revise_renders: with search on, renders spent revising the kept steps as a whole once
        they are found (None: ``core.search.DEFAULT_REVISE_RENDERS``; 0: no revision).

    Every option is checked first (``check_options``), then the sounds are read, then
    only the models the session's system uses are loaded. Files and arrays are treated
    alike: leading silence trimmed, then the bundle's loudness convention applied to the
    input, every step and the target.

    Returns
    -------
    Session
    """
    plan = check_options(input, rack=rack, bundle=bundle, selector=selector, tolerance=tolerance, metric=metric,
                         preset=preset, true_chain=true_chain,
                         search=search_options(search, budget_ms=budget_ms, top_k=top_k, max_renders=max_renders,
                                               revise_renders=revise_renders))
    the_rack = plan.rack
    notes: list[str] = []
    source: str | np.ndarray
    if plan.preset is not None:
        source = plan.preset
    else:
        source = prepare_audio(input, role="input", to_c4=to_c4, notes=notes,
                               sample_rate=the_rack.sample_rate, duration_s=the_rack.duration_s)
    target_audio = prepare_audio(target, role="target", to_c4=to_c4, notes=notes,
                                 sample_rate=the_rack.sample_rate, duration_s=the_rack.duration_s)
    loaded, chosen = _session_models(plan, notes)
    return run_session(source, target_audio, rack=the_rack, bundle=loaded, selector=chosen, metric=plan.metric,
                       tolerance=plan.tolerance, true_chain=plan.true_chain, seed=seed, notes=notes,
                       search=False if plan.search is None else plan.search)


def _bundle_source(bundle: Any, rack: Rack, *, searching: bool):
    """Where a session's models come from, without loading any: the bundle object given,
    a bundle folder, or None (search alone) when no bundle was named, no shipped bundle
    is for ``rack`` and search is on."""
    from serumrnn.core.bundle import ModelBundle

    if isinstance(bundle, ModelBundle):
        return bundle
    if bundle is not None or not searching:
        return bundle_path(bundle)
    return shipped_bundle_for(rack)


def shipped_bundle_for(rack: Rack) -> Path | None:
    """The folder of the first shipped bundle trained for ``rack`` (the default bundles
    first), or None when none is."""
    import json

    from serumrnn.core.bundle import META_FILE

    for name in [*DEFAULT_BUNDLES, *shipped_bundles()]:
        try:
            meta = json.loads((BUNDLES_DIR / name / META_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("rack") == rack.name:
            return BUNDLES_DIR / name
    return None


def _session_models(plan: SessionPlan, notes: list[str]):
    """The loaded bundle (or None) and the selector a session runs with. Only the models
    its system uses are built: the selector's model now, each parameter model when the
    session first asks it for knobs."""
    from serumrnn.core.bundle import selector_model_name

    chosen, rack = plan.selector, plan.rack
    if plan.bundle is None:  # no bundle for this rack: search alone, every unused effect a candidate
        notes.append(f"No model bundle is shipped for rack {rack.name}: search alone finds every step, from "
                     "each effect's knob defaults and seeded random knobs.")
        return None, SEARCH_ONLY if chosen.model_kind else chosen
    loaded = resolve_bundle(plan.bundle, rack)
    if chosen.model_kind and not loaded.has_selector(chosen.model_kind):
        raise BundleError(
            f"Bundle '{loaded.path}' has no {chosen.model_kind} selection model; train it with "
            f"`serumrnn train selector --kind {chosen.model_kind}` or choose another selector."
        )
    missing = [name for name in rack.effect_names if not loaded.has_param_model(name)]
    if missing and plan.search is None:  # the plain models' session needs every parameter model
        raise BundleError(
            f"Bundle '{loaded.path}' has no parameter model for {', '.join(missing)}; train it with "
            "`serumrnn train params --effect all`, or turn search on."
        )
    if missing:
        notes.append(f"Bundle '{loaded.path.name}' has no parameter model for {', '.join(missing)}: search alone "
                     "finds their knobs.")
    if chosen.model_kind:  # built before the first step, so a broken file is refused before any work
        loaded.runner(selector_model_name(chosen.model_kind))
    return loaded, chosen


# -- outputs -------------------------------------------------------------------------------


def write_session(
    session: Session, out_dir: str | os.PathLike, *, replace: bool = False,
    extra_json: Mapping[str, Any] | None = None, overview: bool = True,
) -> Path:
    """Write input, every step and the target as WAV, ``session.json``,
    ``progression.png`` and the listening page ``index.html`` (with a spectrogram PNG
    per sound) into ``out_dir``, all or nothing (built in a temporary folder beside it,
    then renamed). ``replace`` swaps out an existing folder only once the new
    one is complete; ``extra_json`` adds keys to ``session.json``; ``overview=False``
    leaves out ``progression.png`` (the slowest file; the page shows each spectrogram)."""
    import json

    from serumrnn.core.page import INPUT_STEM, REVISION_STEM, TARGET_STEM, step_stem, write_page
    from serumrnn.core.runtime import staged_output_dir
    from serumrnn.core.plots import plot_mels

    with staged_output_dir(out_dir, replace=replace, what="the session") as staging:
        write_wav(staging / f"{INPUT_STEM}.wav", session.input_audio, session.sample_rate)
        for step in session.steps:
            write_wav(staging / f"{step_stem(step.index, step.effect)}.wav", step.audio, session.sample_rate)
        if session.revision is not None:
            write_wav(staging / f"{REVISION_STEM}.wav", session.revision.audio, session.sample_rate)
        write_wav(staging / f"{TARGET_STEM}.wav", session.target_audio, session.sample_rate)
        data = {**session.to_json(), **(extra_json or {})}
        (staging / "session.json").write_text(json.dumps(data, indent=2) + "\n")
        metric = session.metric
        panels = [(f"input\n{metric.upper()} {session.initial_metrics[metric]:.3g}", session.input_features.db_mel)]
        for step in session.steps:
            mark = "" if step.index != session.best_index else " (kept)" if session.revision else " (best)"
            panels.append((f"step {step.index}: {step.label}{mark}\n{metric.upper()} {step.metrics[metric]:.3g}",
                           step.features.db_mel))
        if session.revision is not None:
            panels.append((f"revised chain (best)\n{metric.upper()} {session.revision.metrics[metric]:.3g}",
                           session.revision.features.db_mel))
        panels.append(("target", session.target_features.db_mel))
        if overview:
            plot_mels(panels, staging / "progression.png",
                      suptitle=f"From input to target, one effect per step (selector {session.selector})")
        write_page(session, staging, data)  # index.html and a spectrogram PNG per sound
    return Path(out_dir)


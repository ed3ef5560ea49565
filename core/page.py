"""The listening page of a session folder: ``index.html`` beside the WAVs, with one small
spectrogram PNG per sound.

``render_page`` is a pure function of the session's JSON (``session.json``'s dict) and
the file names; it reads optional fields (a demo's hidden chain, per-step ``mode``,
``model_guess``, ``searched``, ``renders``, ...) when they are there. The page is self-
contained (inline CSS and JS, relative links only), so it works from ``file://`` offline.
"""

from __future__ import annotations

import functools
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from serumrnn.core.audio import atomic_output
from serumrnn.core.features import DEFAULT_SETTINGS, FeatureSettings
from serumrnn.core.metrics import LOWER_IS_BETTER, METRICS, TABLE_SCALE

PAGE_NAME = "index.html"
OVERVIEW_NAME = "progression.png"
INPUT_STEM = "00-input"
TARGET_STEM = "99-target"
REVISION_STEM = "98-revised"
# The server puts its navigation here; a page on disk keeps the comment.
NAV_MARKER = "<!--serumrnn:nav-->"

# Step fields the page lays out itself; any other field is listed under the step.
_LAID_OUT_STEP_FIELDS = {"step", "effect", "label", "instruction", "knobs", "knobs_physical", "probability",
                         "metrics", "better", "closer_pct", "seconds", "mode"}
# Optional per-step fields with a label of their own (others get their key as label).
_OPTIONAL_LABELS = {"model_guess": "Model's guess", "model_knobs": "Model's knobs", "searched": "Searched",
                    "renders": "Renders tried", "budget_ms": "Search budget (ms)"}
_LAID_OUT_TOP_FIELDS = {"rack", "selector", "metric", "tolerance", "source", "initial_metrics", "steps",
                        "best_step", "best_metrics", "best_closer_pct", "stop_reason", "notes", "demo", "serve",
                        "revision"}


def step_stem(index: int, effect: str) -> str:
    """File name stem of step ``index`` (``02-distortion``): its WAV and PNG share it."""
    return f"{index:02d}-{effect}"


@attrs.frozen
class SoundFiles:
    """A sound's WAV and spectrogram PNG, relative to the page."""

    audio: str
    spectrogram: str | None = None


def session_files(data: Mapping[str, Any]) -> dict[str, SoundFiles]:
    """``input``, ``target`` and ``step-N`` -> their files, as ``write_session`` names them."""
    stems = {"input": INPUT_STEM, "target": TARGET_STEM}
    stems.update({f"step-{step['step']}": step_stem(int(step["step"]), str(step["effect"]))
                  for step in data.get("steps", [])})
    if data.get("revision"):
        stems["revision"] = REVISION_STEM
    return {key: SoundFiles(f"{stem}.wav", f"{stem}.png") for key, stem in stems.items()}


# -- spectrograms -------------------------------------------------------------------------
def write_spectrograms(session, folder: str | os.PathLike) -> list[Path]:
    """One small PNG per sound of ``session`` (input, each step, target) in ``folder``:
    the dB mel spectrogram, one pixel per bin and frame (the page draws the axes), all
    on one colour scale so they compare by eye."""
    from matplotlib.image import imsave  # no pyplot: its global state is unsafe in the server's threads

    panels = {INPUT_STEM: session.input_features.db_mel, TARGET_STEM: session.target_features.db_mel}
    panels.update({step_stem(step.index, step.effect): step.features.db_mel for step in session.steps})
    if session.revision is not None:
        panels[REVISION_STEM] = session.revision.features.db_mel
    low = min(float(np.min(db)) for db in panels.values())
    high = max(float(np.max(db)) for db in panels.values())
    paths = []
    for stem, db_mel in panels.items():
        paths.append(Path(folder) / f"{stem}.png")
        with atomic_output(paths[-1], suffix=".png") as temp:
            imsave(temp, db_mel, cmap="magma", vmin=low, vmax=high, origin="lower", format="png")
    return paths


@functools.lru_cache(maxsize=4)
def frequency_ticks(settings: FeatureSettings = DEFAULT_SETTINGS) -> tuple[tuple[str, float], ...]:
    """``(label, height in % of the image)`` for 100 Hz, 1 kHz and 10 kHz on the mel axis."""
    import librosa

    centres = librosa.mel_frequencies(n_mels=settings.n_mels, fmin=settings.fmin, fmax=settings.fmax)
    return tuple((label, 100.0 * (float(np.argmin(np.abs(centres - hz))) + 0.5) / settings.n_mels)
                 for hz, label in ((100, "100 Hz"), (1000, "1 kHz"), (10000, "10 kHz"))
                 if centres[0] <= hz <= centres[-1])


# -- the page -----------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> str:
    """A JSON value for a person: mappings as ``key: value``, lists joined, numbers short."""
    if isinstance(value, Mapping):
        return "; ".join(f"{key}: {_plain(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(item) for item in value)
    return "none" if value is None else _number(value)


def _metric_grid(metrics: Mapping[str, float], chosen: str) -> str:
    cells = []
    for name in METRICS:
        if name not in metrics:
            continue
        scale = TABLE_SCALE[name]
        label = name.upper() + (" ×100" if scale != 1 else "")
        hint = "lower is better" if LOWER_IS_BETTER[name] else "higher is better"
        mark = " chosen" if name == chosen else ""
        cells.append(f'<div class="metric{mark}" data-metric="{_e(name)}" title="{hint}"><dt>{_e(label)}</dt>'
                     f"<dd>{metrics[name] * scale:.4g}</dd></div>")
    return f'<dl class="metrics" aria-label="Distances to the target">{"".join(cells)}</dl>'


def _player(key: str, files: SoundFiles, label: str) -> str:
    image = ""
    if files.spectrogram:
        ticks = "".join(f'<span class="tick" style="bottom:{height:.1f}%">{_e(text)}</span>'
                        for text, height in frequency_ticks())
        image = (f'<div class="spec"><img src="{_e(files.spectrogram)}" alt="Mel spectrogram of {_e(label)}">'
                 f'{ticks}<span class="time">0 s</span><span class="time end">{DEFAULT_SETTINGS.duration_s:g} s</span></div>')
    return (f'<audio id="audio-{_e(key)}" controls preload="auto" src="{_e(files.audio)}" '
            f'aria-label="Play {_e(label)}"></audio>{image}')


def _action(step: Mapping[str, Any]) -> str:
    """``add Distortion.``: what to do at a step, from its structured fields (the row's
    heading gives the number, ``_knob_items`` the knobs)."""
    return f"add {step.get('label') or step['effect']}."


def _knob_items(step: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(name, physical value, knob position)`` per knob of a step, from ``knobs_physical``
    and ``knobs`` (the position is blank when the step does not record it)."""
    knobs = step.get("knobs") or {}
    return [(name.replace("_", " ").capitalize(), str(shown),
             f"{knobs[name]:.2f}" if isinstance(knobs.get(name), (int, float)) else "")
            for name, shown in (step.get("knobs_physical") or {}).items()]


def _optional_fields(step: Mapping[str, Any]) -> str:
    rows = [(_OPTIONAL_LABELS.get(key, key.replace("_", " ").capitalize()), value)
            for key, value in step.items() if key not in _LAID_OUT_STEP_FIELDS and value is not None]
    if not rows:
        return ""
    items = "".join(f"<dt>{_e(label)}</dt><dd>{_e(_plain(value))}</dd>" for label, value in rows)
    return f'<dl class="extra">{items}</dl>'


def _step_row(step: Mapping[str, Any], files: SoundFiles, best: int, chosen: str) -> str:
    index = int(step["step"])
    label = str(step.get("label") or step["effect"])
    kept, is_best = index <= best, index == best
    badges = []
    if is_best:
        badges.append('<span class="badge best">best</span>')
    if kept:
        badges.append('<span class="badge kept">kept</span>')
    else:
        badges.append('<span class="badge out">leave out</span>')
    if not step.get("better", True):
        badges.append('<span class="badge worse">worse than the step before</span>')
    if step.get("mode"):
        badges.append(f'<span class="badge mode">{_e(step["mode"])}</span>')
    knob_list = "".join(f"<li><b>{_e(name)}</b> {_e(shown)}"
                        + (f' <span class="small">knob {position}</span>' if position else "") + "</li>"
                        for name, shown, position in _knob_items(step))
    closer = step.get("closer_pct")
    closer_text = "" if closer is None else (
        f'<p class="closer {"up" if closer > 0 else "down"}">{abs(closer):.1f}% '
        f'{"closer to" if closer >= 0 else "further from"} the target than the input on {_e(chosen.upper())}</p>')
    probability = step.get("probability")
    chosen_with = "" if probability is None else f'<p class="small">Selector score {float(probability):.2f}</p>'
    classes = " ".join(["step", *(["kept"] if kept else []), *(["best"] if is_best else [])])
    return (
        f'<li class="{classes}" id="step-{index}" data-step="{index}" data-effect="{_e(step["effect"])}">'
        f'<div class="sound">{_player(f"step-{index}", files, f"step {index}: {label}")}'
        f'<button type="button" class="ab-row" data-ab="audio-step-{index}" '
        f'aria-label="Play step {index}, then the target">A/B with target</button></div>'
        f'<div class="about"><h3>Step {index}: {_e(label)} {"".join(badges)}</h3>'
        f'<p class="instruction">{_e(_action(step))}</p>'
        f'{f"<ul class=knobs>{knob_list}</ul>" if knob_list else ""}'
        f"{closer_text}{_metric_grid(step.get('metrics', {}), chosen)}{chosen_with}{_optional_fields(step)}</div></li>"
    )


def _revision_section(revision: Mapping[str, Any], files: SoundFiles, chosen: str) -> str:
    """The kept steps revised as a whole: its player, the chain to set up from the input,
    and what changed from the steps."""
    kept = int(revision.get("kept_steps", 0))
    steps_text = "step 1" if kept == 1 else f"steps 1–{kept}"
    changes = revision.get("changes") or []
    items = "".join(f"<li>{_e(str(text).split(': ', 1)[-1])}</li>" for text in revision.get("instructions", []))
    closer = revision.get("closer_pct")
    closer_text = "" if closer is None else (
        f'<p class="closer {"up" if closer > 0 else "down"}">{abs(float(closer)):.1f}% '
        f'{"closer to" if closer >= 0 else "further from"} the target than the input on {_e(chosen.upper())}</p>')
    change_text = ("".join(f"<li>{_e(text)}</li>" for text in changes) if changes
                   else "<li>Nothing: no change brought it closer.</li>")
    return (
        f'<section class="revision" aria-labelledby="revision-title"><h2 id="revision-title">Revised chain</h2>'
        f'<p class="small">Once the steps were found, {_e(steps_text)} were revised as a whole '
        f'({_e(revision.get("renders", 0))} renders): effects left out, neighbours swapped, knobs retuned, '
        f'keeping only changes that got closer.</p>'
        f'<div class="step kept best" id="revised"><div class="sound">{_player("revision", files, "the revised chain")}'
        f'<button type="button" class="ab-row" data-ab="audio-revision" '
        f'aria-label="Play the revised chain, then the target">A/B with target</button></div>'
        f'<div class="about"><h3>From the input <span class="badge best">best</span></h3>'
        f'<ol class="revised-chain">{items}</ol>{closer_text}'
        f'<h4>Changed from the steps</h4><ul class="changes">{change_text}</ul>'
        f'{_metric_grid(revision.get("metrics", {}), chosen)}</div></div></section>'
    )


def _demo_section(demo: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], best: int) -> str:
    hidden = demo.get("hidden_chain") or []
    hidden_names = {str(entry.get("effect")) for entry in hidden}
    hidden_items = "".join(
        f'<li data-effect="{_e(entry.get("effect"))}">{_e(entry.get("instruction") or entry.get("effect"))}'
        + ("" if entry.get("instruction") else f' <span class="small">{_e(_plain(entry.get("knobs", {})))}</span>')
        + "</li>" for entry in hidden)
    found = []
    for step in steps[:best]:
        hit = str(step["effect"]) in hidden_names
        mark = ('<span class="badge kept">in the hidden chain</span>' if hit
                else '<span class="badge out">not hidden</span>')
        knobs = ", ".join(f"{name} {shown}" for name, shown, _ in _knob_items(step))
        text = f"{_action(step)} {knobs}".rstrip()
        found.append(f'<li data-effect="{_e(step["effect"])}">{_e(text)} {mark}</li>')
    preset = f" on preset {_e(demo['preset'])}" if demo.get("preset") else ""
    seed = f" (seed {_e(demo['seed'])})" if "seed" in demo else ""
    return (
        f'<section class="demo" aria-labelledby="demo-title"><h2 id="demo-title">Demo: the hidden chain beside the '
        f'suggestions</h2><div class="pair"><div><h3>Hidden chain{preset}{seed}</h3><ol class="hidden-chain">'
        f'{hidden_items}</ol></div><div><h3>Kept suggestions</h3><ol class="found-chain">'
        f'{"".join(found) or "<li>none: no step got closer</li>"}</ol></div></div></section>'
    )


def render_page(data: Mapping[str, Any], files: Mapping[str, SoundFiles] | None = None, *,
                overview: str | None = None) -> str:
    """The listening page of a session as one HTML string.

    ``data``: ``session.to_json()`` plus extras (``demo``: a hidden chain; ``serve``: the
    uploaded file names; optional per-step fields are listed when present).
    ``files``: key (``input``, ``target``, ``step-N``) -> files; default as ``write_session`` names them.
    ``overview``: an image of every spectrogram side by side, linked when given.
    """
    files = {**session_files(data), **(files or {})}
    steps = list(data.get("steps", []))
    chosen = str(data.get("metric", "mssmae"))
    best = int(data.get("best_step", 0))
    names = data.get("serve") or {}
    source = names.get("input_name") or data.get("source", "input")
    target_name = names.get("target_name") or ""
    title = f"From {source} toward {target_name or 'the target'}"
    best_text = (f"Keep steps 1–{best}" if best > 1 else "Keep step 1" if best == 1 else "No step got closer")
    summary = (f"{best_text}: {float(data.get('best_closer_pct', 0.0)):.1f}% closer to the target on "
               f"{chosen.upper()}." if best else f"{best_text} on {chosen.upper()}.")
    revision = data.get("revision") if isinstance(data.get("revision"), Mapping) else None
    if revision is not None:
        summary = (f"{best_text}, revised as a whole: {float(data.get('best_closer_pct', 0.0)):.1f}% closer to "
                   f"the target on {chosen.upper()}.")
    facts = [("Selector", data.get("selector")), ("Rack", data.get("rack")), ("Stopping metric", chosen.upper()),
             ("Tolerance", data.get("tolerance")), ("Stopped", data.get("stop_reason"))]
    facts += [(_OPTIONAL_LABELS.get(key, key.replace("_", " ").capitalize()), _plain(value))
              for key, value in data.items() if key not in _LAID_OUT_TOP_FIELDS]
    fact_list = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts if v not in (None, ""))
    notes = "".join(f"<li>{_e(note)}</li>" for note in data.get("notes", []))
    # The A/B bar starts on the best sound: the revised chain, else the best step (or the input).
    choices = [("audio-input", "The input"),
               *((f'audio-step-{int(s["step"])}', f'Step {int(s["step"])}: {s.get("label") or s["effect"]}')
                 for s in steps),
               *([("audio-revision", "The revised chain")] if revision is not None else [])]
    chosen_audio = "audio-revision" if revision is not None else f"audio-step-{best}" if best else "audio-input"
    options = [f'<option value="{value}"{" selected" if value == chosen_audio else ""}>{_e(text)}</option>'
               for value, text in choices]
    rows = "".join(_step_row(step, files[f"step-{step['step']}"], best, chosen) for step in steps)
    demo = _demo_section(data["demo"], steps, best) if isinstance(data.get("demo"), Mapping) else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>serumrnn: {_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
{NAV_MARKER}
<main>
<header>
<h1>{_e(title)}</h1>
<p class="summary">{_e(summary)}</p>
<dl class="facts">{fact_list}</dl>
{f'<ul class="notes">{notes}</ul>' if notes else ""}
{f'<p><a href="{_e(overview)}">Every spectrogram side by side</a></p>' if overview else ""}
</header>
<section class="ends" aria-label="Input and target">
<div class="card" id="input"><h2>Input <span class="small">{_e(source)}</span></h2>
{_player("input", files["input"], "the input")}{_metric_grid(data.get("initial_metrics", {}), chosen)}</div>
<div class="card" id="target"><h2>Target <span class="small">{_e(target_name)}</span></h2>
{_player("target", files["target"], "the target")}</div>
</section>
{demo}
<section aria-labelledby="steps-title">
<h2 id="steps-title">Steps, effect by effect</h2>
<p class="small">Distances to the target after each step (the stopping metric is outlined).
Steps up to the best one are kept; later ones are left out.</p>
<ol class="steps">{rows or '<li class="empty">No steps: ' + _e(data.get("stop_reason", "")) + "</li>"}</ol>
</section>
{_revision_section(revision, files["revision"], chosen) if revision is not None else ""}
</main>
<form class="ab" aria-label="A/B comparison with the target" onsubmit="return false">
<label for="ab-step">A/B: play</label>
<select id="ab-step">{"".join(options)}</select>
<span class="then">then the target</span>
<button type="button" id="ab-play" aria-pressed="false">Play A/B</button>
<button type="button" id="ab-swap" aria-label="Switch between A and B at the same moment">Switch</button>
<output id="ab-status" aria-live="polite">A: the step, B: the target.</output>
</form>
<script>{_JS}</script>
</body>
</html>
"""


def write_page(session, folder: str | os.PathLike, data: Mapping[str, Any] | None = None) -> Path:
    """Write the spectrogram PNGs and ``index.html`` of ``session`` into ``folder`` (beside
    its WAVs); ``data`` is the session's JSON with extras (default ``session.to_json()``)."""
    folder = Path(folder)
    data = session.to_json() if data is None else data
    write_spectrograms(session, folder)
    path = folder / PAGE_NAME
    overview = OVERVIEW_NAME if (folder / OVERVIEW_NAME).is_file() else None
    with atomic_output(path, suffix=".html") as temp:
        # Through JSON, so the page shows exactly what session.json holds.
        temp.write_text(render_page(json.loads(json.dumps(data)), overview=overview), encoding="utf-8")
    return path


_CSS = """
:root{--bg:#fbfaf7;--fg:#1d1b19;--muted:#5f5a54;--line:#ddd6cc;--kept:#1f7a4a;--best:#b3541e;--out:#8a8580}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg);
  overflow-wrap:anywhere}
main{max-width:1100px;margin:0 auto;padding:1rem 1rem 2rem}
h1{font-size:1.5rem;margin:.3rem 0}
h2{font-size:1.15rem;margin:.2rem 0 .5rem}
h3{font-size:1rem;margin:0 0 .3rem}
.small{color:var(--muted);font-size:.85rem;font-weight:normal}
.summary{font-size:1.1rem;font-weight:600}
dl{margin:0}
.facts{display:flex;flex-wrap:wrap;gap:.1rem 1.4rem;font-size:.9rem}
.facts dt{display:inline;color:var(--muted)}.facts dt::after{content:": "}
.facts dd{display:inline;margin:0}
.extra dt{color:var(--muted)}.extra dd{margin:0}
.notes{color:var(--muted);font-size:.9rem}
.ends,.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem;margin:1rem 0}
.card,.step,.demo{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.8rem}
audio{width:100%;display:block;margin:.2rem 0}
.spec{position:relative;max-width:360px;margin:.2rem 0 1.1rem 3.2rem}
.spec img{width:100%;height:8.5rem;display:block;border-radius:3px}
.tick,.time{position:absolute;font-size:.7rem;color:var(--muted);line-height:1;white-space:nowrap}
.tick{right:100%;margin-right:.3rem;transform:translateY(50%)}
.time{top:100%;left:0;margin-top:.15rem}.time.end{left:auto;right:0}
.steps{list-style:none;padding:0;margin:0;display:grid;gap:.8rem}
.step{display:grid;grid-template-columns:minmax(0,360px) 1fr;gap:1rem;border-left:6px solid var(--out)}
.step.kept{border-left-color:var(--kept)}
.step.best{border-left-color:var(--best);box-shadow:0 0 0 2px var(--best) inset}
.badge{display:inline-block;font-size:.75rem;font-weight:600;border-radius:999px;padding:.05rem .5rem;
  margin-left:.25rem;vertical-align:middle;color:#fff;background:var(--out)}
.badge.kept{background:var(--kept)}.badge.best{background:var(--best)}
.badge.worse{background:#a1862a}.badge.mode{background:#3b5b99}
.instruction{margin:.2rem 0}
.knobs{display:flex;flex-wrap:wrap;gap:.3rem .9rem;padding:0;margin:.2rem 0;list-style:none;font-size:.9rem}
.closer{margin:.2rem 0;font-weight:600}.closer.up{color:var(--kept)}.closer.down{color:#a1862a}
.metrics{display:grid;grid-template-columns:repeat(auto-fit,minmax(6.2rem,1fr));gap:.3rem;margin:.4rem 0}
.metric{border:1px solid var(--line);border-radius:4px;padding:.1rem .4rem}
.metric.chosen{border:2px solid var(--fg)}
.metric dt{font-size:.7rem;color:var(--muted)}.metric dd{margin:0;font-variant-numeric:tabular-nums}
.extra{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;font-size:.85rem;margin-top:.3rem}
button,select{font:inherit;padding:.35rem .7rem;border-radius:6px;border:1px solid var(--muted);background:#fff}
button{cursor:pointer}button[aria-pressed=true]{background:var(--fg);color:#fff}
.ab-row{margin-top:.3rem}
.ab{position:sticky;bottom:0;display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;
  justify-content:center;padding:.5rem;background:#fffdf8ee;border-top:1px solid var(--line)}
.ab output{font-size:.85rem;color:var(--muted);min-width:12rem}
.app-nav{display:flex;flex-wrap:wrap;gap:1rem;padding:.5rem 1rem;background:var(--fg)}
.app-nav a{color:#fff}
@media (max-width:700px){
  .ends,.pair,.step{grid-template-columns:1fr}
  .extra{grid-template-columns:1fr}
  main{padding:.6rem .6rem 2rem}
  .ab .then{display:none}.ab output{min-width:0;width:100%;text-align:center}
}
"""

# A/B: the chosen step (A) plays, then the target (B); "Switch" jumps between them at the
# same moment. Any player started by hand pauses the others.
_JS = """
(function(){
  var select=document.getElementById('ab-step'),play=document.getElementById('ab-play'),
      swap=document.getElementById('ab-swap'),status=document.getElementById('ab-status'),
      target=document.getElementById('audio-target'),phase=null;
  var players=Array.prototype.slice.call(document.querySelectorAll('audio'));
  function a(){return document.getElementById(select.value);}
  function name(){return select.options[select.selectedIndex].text;}
  function others(keep){players.forEach(function(p){if(p!==keep){p.pause();}});}
  function set(p){phase=p;play.setAttribute('aria-pressed',p?'true':'false');play.textContent=p?'Stop':'Play A/B';}
  function start(which,at){
    var player=which==='A'?a():target;others(player);set(which);
    player.currentTime=at||0;
    status.textContent=which==='A'?'A: '+name():'B: the target';
    var done=player.play();
    if(done&&done.catch){done.catch(function(){set(null);status.textContent='The browser did not play the sound; press a player.';});}
  }
  play.addEventListener('click',function(){if(phase){others(null);set(null);status.textContent='Stopped.';}else{start('A');}});
  swap.addEventListener('click',function(){
    var now=phase==='B'?target:a();var t=phase?now.currentTime:0;start(phase==='A'?'B':'A',t);});
  select.addEventListener('change',function(){if(phase){start('A');}});
  players.forEach(function(p){
    p.addEventListener('play',function(){others(p);});
    p.addEventListener('ended',function(){
      if(phase==='A'&&p===a()){start('B');}
      else if(phase==='B'&&p===target){set(null);status.textContent='Played '+name()+', then the target.';}
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('button[data-ab]'),function(b){
    b.addEventListener('click',function(){select.value=b.getAttribute('data-ab');start('A');});
  });
})();
"""

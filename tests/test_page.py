"""The listening page (core/page.py): what it shows for a session's JSON, that it is
self-contained and offline, and that write_session and the demo write it."""

from __future__ import annotations

import html as html_module
import json
import re
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from serumrnn.cli.app import app
from serumrnn.core import page as page_module
from serumrnn.core.errors import OutputError
from serumrnn.core.metrics import METRICS
from serumrnn.core.page import render_page, session_files
from serumrnn.core.session import suggest, write_session

MAX_PAGE_BYTES = 2 * 1024 * 1024


class Elements(HTMLParser):
    """Every start tag as ``(tag, attributes)``, plus the ids of ``<label for=...>``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    @property
    def labelled_ids(self) -> set[str]:
        return {attrs["for"] for attrs in self.all("label") if attrs.get("for")}

    def links(self) -> list[str]:
        return [attrs[key] for _, attrs in self.tags for key in ("src", "href") if attrs.get(key)]


def session_json(steps=3, best=2, **extra):
    metrics = {name: 0.5 for name in METRICS}
    return {
        "rack": "builtin", "selector": "rnn", "metric": "mssmae", "tolerance": 1, "source": "saw",
        "initial_metrics": {name: 1.0 for name in METRICS},
        "steps": [{"step": i, "effect": effect, "label": effect.capitalize(),
                   "instruction": f"Step {i}: add {effect.capitalize()}. Knob: 0.50 (+3 dB).",
                   "knobs": {"knob": 0.5}, "knobs_physical": {"knob": "+3 dB"}, "probability": 0.9,
                   "metrics": dict(metrics, mssmae=1.0 - 0.1 * i), "better": i != 3, "closer_pct": 10.0 * i - 25,
                   "seconds": 0.01}
                  for i, effect in enumerate(["distortion", "eq", "reverb", "phaser", "compressor"][:steps], start=1)],
        "best_step": best, "best_metrics": metrics, "best_closer_pct": 20.0,
        "stop_reason": "every effect has been used", "notes": [], **extra,
    }


def step_rows(html: str) -> list[dict[str, str | None]]:
    return [attrs for attrs in Elements(html).all("li") if "step" in (attrs.get("class") or "").split()]


def test_a_row_per_step_with_kept_and_best_markers():
    html = render_page(session_json(steps=3, best=2))
    rows = step_rows(html)
    assert [(row["data-step"], row["data-effect"]) for row in rows] == [("1", "distortion"), ("2", "eq"),
                                                                        ("3", "reverb")]
    assert [set(row["class"].split()) for row in rows] == [{"step", "kept"}, {"step", "kept", "best"}, {"step"}]
    assert html.count('class="badge best"') == 1 and "leave out" in html
    # the instruction from its structured fields: the effect, each knob in physical units
    # and its position; six distances per sound, and how much closer
    assert '<p class="instruction">add Eq.</p>' in html
    assert '<li><b>Knob</b> +3 dB <span class="small">knob 0.50</span></li>' in html
    assert html.count('data-metric="') == 6 * 4  # the input and three steps
    assert "15.0% further from the target" in html and "5.0% closer to the target" in html


def test_players_link_the_session_files_relatively():
    data = session_json(steps=2)
    html = render_page(data)
    parsed = Elements(html)
    sources = [attrs["src"] for attrs in parsed.all("audio")]
    files = session_files(data)
    assert sources == [files["input"].audio, files["target"].audio, "01-distortion.wav", "02-eq.wav"]
    assert [attrs["src"] for attrs in parsed.all("img")] == ["00-input.png", "99-target.png", "01-distortion.png",
                                                           "02-eq.png"]
    # offline and self-contained: no absolute links, no external scripts or styles
    for link in parsed.links():
        assert not re.match(r"^([a-z]+:)?//", link) and not link.startswith("/"), link
    assert not parsed.all("link") and all("src" not in attrs for attrs in parsed.all("script"))


def test_controls_are_labelled_and_the_page_fits_a_phone():
    html = render_page(session_json())
    parsed = Elements(html)
    labelled = parsed.labelled_ids
    for tag in ("audio", "button", "select", "input"):
        for attrs in parsed.all(tag):
            assert attrs.get("aria-label") or attrs.get("id") in labelled or tag == "button", (tag, attrs)
    assert all(attrs.get("alt") for attrs in parsed.all("img"))
    assert any(attrs.get("name") == "viewport" for attrs in parsed.all("meta"))
    assert "@media (max-width:" in html
    assert parsed.all("select")[0]["id"] == "ab-step" and 'id="ab-play"' in html  # the A/B switch


def test_everything_from_the_json_is_escaped():
    data = session_json(steps=1, best=1, serve={"input_name": "<script>alert(1)</script>.wav", "target_name": "t.wav"})
    data["steps"][0]["label"] = '<b onmouseover="x">'
    data["steps"][0]["knobs_physical"] = {"knob": '<b onmouseover="y">'}
    data["notes"] = ["<img src=x onerror=alert(2)>"]
    html = render_page(data)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.wav" in html
    assert "<b onmouseover" not in html and "<img src=x" not in html
    assert len([tag for tag, _ in Elements(html).tags if tag == "script"]) == 1  # only the page's own


def test_optional_step_fields_are_shown_only_when_present():
    plain = render_page(session_json(steps=2))
    assert "Model's guess" not in plain and "Renders tried" not in plain and "badge mode" not in plain
    data = session_json(steps=2)
    data["steps"][0].update(mode="searched", model_guess={"drive": 0.4}, searched=True, renders=37,
                            brand_new_field=[1, 2])
    data["steps"][1].update(mode="predicted")
    html = render_page(data)
    assert '<span class="badge mode">searched</span>' in html and '<span class="badge mode">predicted</span>' in html
    assert "<dt>Model&#x27;s guess</dt><dd>drive: 0.4</dd>" in html
    assert "<dt>Renders tried</dt><dd>37</dd>" in html and "<dt>Searched</dt><dd>True</dd>" in html
    assert "<dt>Brand new field</dt><dd>1, 2</dd>" in html


def test_the_demo_shows_the_hidden_chain_beside_the_kept_steps():
    assert "hidden-chain" not in render_page(session_json())
    demo = {"seed": 3, "preset": "saw", "hidden_chain": [
        {"effect": "eq", "knobs": {"gain": 0.2}, "instruction": "EQ. Gain: 0.20 (-9 dB)."},
        {"effect": "reverb", "knobs": {"mix": 0.7}}]}
    html = render_page(session_json(steps=3, best=2, demo=demo))
    parsed = Elements(html)
    hidden = [attrs["data-effect"] for attrs in parsed.all("li") if attrs.get("data-effect") and "step" not in
              (attrs.get("class") or "")]
    assert hidden == ["eq", "reverb", "distortion", "eq"]  # hidden chain, then the two kept steps
    assert "EQ. Gain: 0.20 (-9 dB)." in html and "mix: 0.7" in html and "preset saw" in html
    assert html.count("in the hidden chain") == 1 and html.count("not hidden") == 1


@pytest.fixture(scope="module")
def written(tiny_bundle, tmp_path_factory):
    from serumrnn.core import get_plugin_manager

    rack = get_plugin_manager().rack("builtin")
    target = rack.render("saw", [("distortion", {"drive": 0.8}), ("reverb", {"mix": 0.6})])
    session = suggest("saw", target, bundle=tiny_bundle)
    return session, write_session(session, tmp_path_factory.mktemp("page") / "run")


def test_write_session_writes_a_light_page_whose_links_all_resolve(written):
    session, out = written
    html = (out / "index.html").read_text()
    data = json.loads((out / "session.json").read_text())
    assert [int(row["data-step"]) for row in step_rows(html)] == [step["step"] for step in data["steps"]]
    links = [link for link in Elements(html).links()]
    assert links and all((out / link).is_file() for link in links), links
    wavs = sorted(p.name for p in out.glob("*.wav"))
    assert sorted(link for link in links if link.endswith(".wav")) == wavs
    without_audio = sum(p.stat().st_size for p in out.iterdir() if p.suffix != ".wav" and p.name != "progression.png")
    assert without_audio <= MAX_PAGE_BYTES
    # one per sound (input, steps, the revised chain, target), plus progression.png
    assert session.revision is not None
    assert len(list(out.glob("*.png"))) == len(session.steps) + 4
    assert 'href="progression.png"' in html


def test_the_page_shows_the_revised_chain(written):
    session, out = written
    html = (out / "index.html").read_text()
    data = json.loads((out / "session.json").read_text())
    assert 'id="revised"' in html and 'src="98-revised.wav"' in html
    assert html.count("<li>add ") >= len(data["revision"]["chain"])
    for change in data["revision"]["changes"]:
        assert html_module.escape(change) in html
    assert f"{data['best_closer_pct']:.1f}% closer" in html
    assert '<option value="audio-revision" selected>' in html


def test_without_the_overview_there_is_no_progression_png_nor_a_link_to_it(written, tmp_path):
    session, _ = written
    out = write_session(session, tmp_path / "lean", overview=False)
    assert not (out / "progression.png").exists()
    assert "progression.png" not in (out / "index.html").read_text()
    assert len(list(out.glob("*.png"))) == len(session.steps) + 3


def test_a_failing_page_leaves_no_session_folder(written, tmp_path, monkeypatch):
    session, _ = written

    def broken(*args, **kwargs):
        raise OutputError("Could not write the page; free space.")

    monkeypatch.setattr(page_module, "render_page", broken)
    with pytest.raises(OutputError, match="Could not write the page"):
        write_session(session, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_demo_writes_the_page_and_says_where(tmp_path, tiny_bundle):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--seed", "2", "--bundle", str(tiny_bundle),
                                      "--effects", "2"])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").resolve().as_uri() in result.stdout
    html = (out / "index.html").read_text()
    data = json.loads((out / "session.json").read_text())
    hidden = [entry["effect"] for entry in data["demo"]["hidden_chain"]]
    assert all(entry["instruction"] for entry in data["demo"]["hidden_chain"])
    assert 'class="hidden-chain"' in html
    for effect in hidden:
        assert f'<li data-effect="{effect}">' in html


def test_suggest_out_says_where_the_page_is(tmp_path, tiny_bundle):
    from serumrnn.core import get_plugin_manager
    from serumrnn.core.audio import write_wav

    target = write_wav(tmp_path / "target.wav", get_plugin_manager().rack("builtin").render("square"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["suggest", "saw", str(target), "--bundle", str(tiny_bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").is_file() and (out / "index.html").resolve().as_uri() in result.stdout

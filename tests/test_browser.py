"""The web app and the session page in a real browser: headless Chromium from Debian's
packages (/usr/bin/chromium, installed by `make test` as root), driven by Playwright.
Skipped without it on a user's machine, failing under CI, which must have it."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from ci_needs import require
from serumrnn.core import get_plugin_manager
from serumrnn.core.audio import write_wav
from serumrnn.core.server import ServeSettings, serve_in_thread
from serumrnn.core.session import suggest, write_session

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--autoplay-policy=no-user-gesture-required"]
# HAVE_NOTHING < HAVE_METADATA (1): the player has read the WAV's header, so it loaded.
HAVE_METADATA = 1


def require_browser(available: bool, reason: str) -> None:
    """Skip without the browser on a user's machine; fail under CI, which must have it."""
    require(available, f"headless Chromium is not usable here ({reason}); `make test` installs it as root")


def test_a_missing_browser_fails_under_ci(monkeypatch):  # the skip elsewhere: tests/test_vst_rack.py
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="Chromium is not usable here .*chromium not found"):
        require_browser(False, "/usr/bin/chromium not found")


def browser_availability() -> tuple[bool, str]:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False, "the playwright package is missing"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return False, f"{CHROMIUM} not found (Debian package chromium)"
    return True, ""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require_browser(*browser_availability())
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        # A persistent context gives Chromium the fresh user-data-dir of its own.
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield context
        context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    page.close()


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser-sounds")
    rack = get_plugin_manager().rack("builtin")
    target = rack.render("saw", [("distortion", {"drive": 0.8}), ("reverb", {"mix": 0.6})])
    notes = folder / "notes.txt"
    notes.write_text("a shopping list, not a sound\n")
    return {"input": write_wav(folder / "saw.wav", rack.render("saw")),
            "target": write_wav(folder / "saw-fx.wav", target), "text": notes}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with serve_in_thread(ServeSettings(data_dir=tmp_path_factory.mktemp("browser-serve") / "data")) as url:
        yield url


def wait_for_players(page) -> list[int]:
    """Wait until every <audio> has loaded its WAV; their readyStates."""
    page.wait_for_function(f"""() => {{
        const players = Array.from(document.querySelectorAll('audio'));
        return players.length > 0 && players.every(p => p.readyState >= {HAVE_METADATA} || p.error);
    }}""", timeout=30_000)
    states = page.eval_on_selector_all("audio", "ps => ps.map(p => p.error ? -p.error.code : p.readyState)")
    assert all(state >= HAVE_METADATA for state in states), states
    images = page.eval_on_selector_all("img", "is => is.map(i => i.complete && i.naturalWidth > 0)")
    assert images and all(images), images
    return states


def rows_match(page, data: dict) -> None:
    rows = page.eval_on_selector_all(
        "li.step", "rows => rows.map(r => [Number(r.dataset.step), r.dataset.effect, r.className])")
    assert [(step, effect) for step, effect, _ in rows] == [(s["step"], s["effect"]) for s in data["steps"]]
    for step, _, classes in rows:
        assert ("kept" in classes.split()) == (step <= data["best_step"])
        assert ("best" in classes.split()) == (step == data["best_step"])
    instructions = page.eval_on_selector_all("li.step .instruction", "ps => ps.map(p => p.textContent)")
    assert [text in s["instruction"] for text, s in zip(instructions, data["steps"])] == [True] * len(data["steps"])


def submit(page, app_url: str, input_path: Path, target_path: Path) -> None:
    page.goto(app_url + "/")
    page.set_input_files("#input_file", str(input_path))
    page.set_input_files("#target_file", str(target_path))
    page.select_option("#selector", "rnn")
    page.click("#run")


def test_upload_two_sounds_and_land_on_the_session_page(page, app_url, sounds):
    submit(page, app_url, sounds["input"], sounds["target"])
    page.wait_for_url(re.compile(r".*/sessions/[0-9a-f]{32}/$"), timeout=60_000)
    states = wait_for_players(page)
    data = json.loads(page.evaluate("fetch('session.json').then(r => r.text())"))
    # input, target, every step and the revised chain of the searched session
    assert len(states) == len(data["steps"]) + 2 + (data["revision"] is not None)
    rows_match(page, data)
    assert page.inner_text("#input h2").startswith("Input") and "saw.wav" in page.inner_text("#input h2")
    zip_link = page.get_attribute(".app-nav a[download]", "href")
    assert page.evaluate(f"fetch('{zip_link}').then(r => r.headers.get('content-type'))") == "application/zip"
    # the start page now lists it
    session_id = page.url.rstrip("/").rsplit("/", 1)[1]
    page.click("text=New session")
    assert page.locator(f'a[href="/sessions/{session_id}/"]').count() == 1


def test_a_text_file_gets_one_sentence_and_the_next_session_works(page, app_url, sounds):
    submit(page, app_url, sounds["text"], sounds["target"])
    alert = page.locator('p.error[role="alert"]').first
    alert.wait_for(timeout=30_000)
    sentence = alert.inner_text()
    assert sentence == ("The input file 'notes.txt' is not a wav, flac, mp3, ogg or aiff file; "
                        "upload one of those.")
    submit(page, app_url, sounds["input"], sounds["target"])
    page.wait_for_url(re.compile(r".*/sessions/[0-9a-f]{32}/$"), timeout=60_000)
    wait_for_players(page)


@pytest.fixture(scope="module")
def written_page(tmp_path_factory):
    rack = get_plugin_manager().rack("builtin")
    target = rack.render("square", [("eq", {"gain": 0.9}), ("reverb", {"mix": 0.5})])
    session = suggest("saw", target)
    return write_session(session, tmp_path_factory.mktemp("offline") / "session") / "index.html"


def test_a_written_page_plays_from_disk_offline(page, written_page):
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(written_page.as_uri())
    wait_for_players(page)
    rows_match(page, json.loads((written_page.parent / "session.json").read_text()))
    assert requests and all(url.startswith("file://") for url in requests), requests
    # the A/B switch: the chosen step plays, then the target
    page.select_option("#ab-step", "audio-step-1")
    page.click("#ab-play")
    page.wait_for_function("() => !document.getElementById('audio-step-1').paused", timeout=10_000)
    assert page.get_attribute("#ab-play", "aria-pressed") == "true"
    assert page.inner_text("#ab-status").startswith("A: Step 1")
    page.evaluate("() => { const a = document.getElementById('audio-step-1'); a.currentTime = a.duration - 0.05; }")
    page.wait_for_function("() => !document.getElementById('audio-target').paused", timeout=10_000)
    assert page.inner_text("#ab-status") == "B: the target"
    assert page.evaluate("document.getElementById('audio-step-1').paused")
    page.click("#ab-swap")  # back to A at the same moment
    page.wait_for_function("() => !document.getElementById('audio-step-1').paused", timeout=10_000)
    page.click("#ab-play")
    assert page.evaluate("Array.from(document.querySelectorAll('audio')).every(a => a.paused)")


def test_a_page_copied_elsewhere_still_plays(page, written_page, tmp_path):
    copy = shutil.copytree(written_page.parent, tmp_path / "moved")
    page.goto((copy / "index.html").as_uri())
    wait_for_players(page)


def test_the_page_reads_at_phone_width(page, written_page):
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(written_page.as_uri())
    wait_for_players(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    widths = page.eval_on_selector_all("li.step, .card", "els => els.map(e => e.getBoundingClientRect().width)")
    assert widths and max(widths) <= 375
    unlabelled = page.eval_on_selector_all("audio, select, input, button", """els => els.filter(e =>
        !(e.getAttribute('aria-label') || (e.labels && e.labels.length) || e.textContent.trim())).length""")
    assert unlabelled == 0

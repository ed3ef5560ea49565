"""``serumrnn serve``: the web app over real HTTP on loopback (uvicorn in a thread, the
shipped bundle): sessions from uploads and presets, the session page, the zip, one-
sentence refusals with 4xx, bounded queueing, upload names never used as paths, a
50-request load of garbage, and the CLI command itself."""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

from serumrnn.core import get_plugin_manager  # noqa: E402
from serumrnn.core import session as session_module  # noqa: E402
from serumrnn.core.audio import write_wav  # noqa: E402
from serumrnn.core.server import ServeSettings, serve_in_thread  # noqa: E402

JSON = {"Accept": "application/json"}
# The CLI's sentences may start with a quoted file name ('x.wav' is silent; ...).
ONE_SENTENCE = re.compile(r"[A-Z'][^\n]{10,400}[.]")


def wav_bytes(tmp_path: Path, audio: np.ndarray, name: str = "sound.wav") -> bytes:
    return write_wav(tmp_path / f"{uuid.uuid4().hex}-{name}", audio).read_bytes()


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    """An input (saw) and a target (the saw through distortion and reverb) as WAV bytes."""
    folder = tmp_path_factory.mktemp("sounds")
    rack = get_plugin_manager().rack("builtin")
    target = rack.render("saw", [("distortion", {"drive": 0.8}), ("reverb", {"mix": 0.6})])
    return {"input": wav_bytes(folder, rack.render("saw")), "target": wav_bytes(folder, target)}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("serve") / "data"
    with serve_in_thread(ServeSettings(data_dir=data_dir, workers=2)) as url:
        yield url, data_dir


@pytest.fixture
def client(app_url):
    with httpx.Client(base_url=app_url[0], timeout=60) as client:
        yield client


def post_session(client, sounds=None, *, input_name="input.wav", target_name="target.wav", headers=JSON, **fields):
    files = {}
    if sounds is not None:
        files = {"input_file": (input_name, sounds["input"]), "target_file": (target_name, sounds["target"])}
    return client.post("/sessions", files=files or None, data=fields, headers=headers)


def wait_done(client, job: dict, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(job["status_url"]).json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"session {job['id']} did not finish in {timeout_s} s")


def run_session(client, sounds=None, **kwargs) -> dict:
    response = post_session(client, sounds, **kwargs)
    assert response.status_code == 202, response.text
    status = wait_done(client, response.json())
    assert status["state"] == "done", status
    return status


def assert_refused(response, status: int | tuple[int, ...], fragment: str = "") -> str:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text)
    sentence = response.json()["error"]
    assert ONE_SENTENCE.fullmatch(sentence), sentence
    assert "Traceback" not in sentence and "/uploads/" not in sentence
    assert fragment in sentence, sentence
    return sentence


def test_an_uploaded_session_lands_on_its_page_with_every_file(client, sounds, app_url):
    status = run_session(client, sounds)
    page = client.get(status["page_url"])
    assert page.status_code == 200 and 'class="app-nav"' in page.text and "<!--serumrnn:nav-->" not in page.text
    data = client.get(status["page_url"] + "session.json").json()
    assert data["serve"]["input_name"] == "input.wav"
    assert str(app_url[1]) not in json.dumps(data) and str(app_url[1]) not in page.text  # no server paths
    assert data["serve"]["bundle"] == session_module.default_bundle_name()
    rows = re.findall(r'<li class="step[^"]*" id="step-(\d+)" data-step="\d+" data-effect="([a-z]+)"', page.text)
    assert [(int(i), e) for i, e in rows] == [(s["step"], s["effect"]) for s in data["steps"]]
    for name in re.findall(r'(?:src|href)="([^"/:]+)"', page.text):
        assert client.get(status["page_url"] + name).status_code == 200, name
    archive = zipfile.ZipFile(io.BytesIO(client.get(status["page_url"] + "session.zip").content))
    names = {Path(n).name for n in archive.namelist()}
    assert {"session.json", "00-input.wav", "99-target.wav"} <= names
    assert {f"{s['step']:02d}-{s['effect']}.wav" for s in data["steps"]} <= names
    listed = client.get("/api/sessions").json()
    assert status["id"] in [row["id"] for row in listed]
    assert status["id"] in client.get("/").text  # earlier sessions on the start page
    assert list((app_url[1] / "uploads").iterdir()) == []  # uploads removed once used


def test_presets_need_no_upload(client):
    status = run_session(client, input_preset="saw", target_preset="square", selector="ni")
    data = client.get(status["page_url"] + "session.json").json()
    assert data["selector"] == "ni"
    assert (data["serve"]["input_name"], data["serve"]["target_name"]) == ("saw", "square")


def test_the_start_page_offers_presets_bundles_and_systems(client):
    html = client.get("/").text
    for name in [p.name for p in get_plugin_manager().rack("builtin").synth.presets]:
        assert f'<option value="{name}">' in html
    for name in session_module.shipped_bundles():
        assert f'<option value="{name}"' in html
    for name in ("rnn", "ni", "cnn", "cnn-1s", "random"):
        assert f'<option value="{name}"' in html
    assert 'value="oracle"' not in html


def text_upload(sounds):
    return {"input": b"just some text, not audio\n" * 10, "target": sounds["target"]}


@pytest.mark.parametrize("case, status, fragment", [
    ("text file", 415, "is not a wav, flac, mp3, ogg or aiff file"),
    ("text as wav", 400, "Could not read 'notes.wav' as audio"),
    ("empty wav", 400, "is empty (0 bytes)"),
    ("silent wav", 400, "is silent"),
    ("cut wav", 400, "cut short before its audio data"),
    ("no input", 400, "No input sound was given"),
    ("unknown preset", 400, "There is no preset 'kazoo'"),
    ("bundle path", 400, "There is no bundle '/etc'"),
    ("oracle", 400, "There is no system 'oracle'"),
])
def test_refusals_are_one_sentence_and_4xx(client, sounds, tmp_path, case, status, fragment):
    silent = wav_bytes(tmp_path, np.zeros(44100, np.float32))
    bodies = {
        "text file": dict(sounds=text_upload(sounds), input_name="notes.txt"),
        "text as wav": dict(sounds=text_upload(sounds), input_name="notes.wav"),
        "empty wav": dict(sounds={"input": b"", "target": sounds["target"]}),
        "silent wav": dict(sounds={"input": sounds["input"], "target": silent}),
        "cut wav": dict(sounds={"input": sounds["input"][:40], "target": sounds["target"]}),
        "no input": dict(sounds=None, target_preset="saw"),
        "unknown preset": dict(sounds=None, input_preset="kazoo", target_preset="saw"),
        "bundle path": dict(sounds=sounds, bundle="/etc"),
        "oracle": dict(sounds=sounds, selector="oracle"),
    }
    body = bodies[case]
    response = post_session(client, body.pop("sounds"), **body)
    assert_refused(response, status, fragment)


def test_a_browser_form_gets_the_sentence_on_the_page(client, sounds):
    response = post_session(client, text_upload(sounds), input_name="notes.txt", headers={"Accept": "text/html"})
    assert response.status_code == 415
    assert re.search(r'<p class="error" role="alert">The input file &#x27;notes\.txt&#x27; is not a wav', response.text)
    assert '<form id="new-session"' in response.text  # the form again, to try once more


def raw_post(url: str, headers: str, body: bytes = b"") -> tuple[int, dict]:
    """POST with hand-written headers on a raw socket; the status and the JSON answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(f"POST /sessions HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
                           f"{headers}\r\n".encode() + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_uploads_over_the_limit_are_refused(client, sounds, app_url):
    # one file over the limit: read, then refused
    big = b"RIFF" + bytes(21 * 1024 * 1024)
    assert_refused(post_session(client, {"input": big, "target": sounds["target"]}), 413,
                   "The input file 'input.wav' is 21.0 MB; the limit is 20 MB")
    # a request larger than two files may be is refused before its body is read
    status, answer = raw_post(app_url[0], "Content-Type: multipart/form-data; boundary=x\r\n"
                                          "Content-Length: 50000000\r\n")
    assert status == 413 and ONE_SENTENCE.fullmatch(answer["error"]) and "at most 20 MB" in answer["error"]
    # and so is a body of unknown length
    status, answer = raw_post(app_url[0], "Content-Type: multipart/form-data; boundary=x\r\n"
                                          "Transfer-Encoding: chunked\r\n", b"0\r\n\r\n")
    assert status == 411 and ONE_SENTENCE.fullmatch(answer["error"])
    assert list((app_url[1] / "uploads").iterdir()) == []


def test_a_form_with_too_many_files_is_refused(client, sounds):
    files = [("input_file", ("a.wav", sounds["input"])), ("target_file", ("b.wav", sounds["target"])),
             ("extra", ("c.wav", sounds["target"]))]
    assert_refused(client.post("/sessions", files=files, headers=JSON), 400, "The upload form could not be read")


def test_a_foreign_host_name_is_refused_without_the_session_list(client, sounds):
    run_session(client, sounds)
    for headers in (JSON, {"Accept": "text/html"}):
        response = client.get("/", headers={**headers, "Host": "attacker.example:8000"})
        assert response.status_code == 421
        if headers is JSON:
            assert_refused(response, 421, "answers only to 127.0.0.1, localhost, ::1")
        else:
            assert "answers only to" in response.text and "/sessions/" not in response.text
    assert client.get("/", headers={"Host": "localhost"}).status_code == 200


def test_missing_pages_and_files_are_404_sentences(client, sounds):
    status = run_session(client, sounds)
    for path in ("/sessions/0123/", "/sessions/../../etc/passwd", f"{status['page_url']}..%2F..%2Fsession.json",
                 f"{status['page_url']}.hidden", f"{status['page_url']}nothing.wav", "/api/jobs/nope", "/nowhere"):
        assert_refused(client.get(path, headers=JSON), 404)
    assert_refused(client.delete(status["page_url"], headers=JSON), 405)


def test_upload_names_are_shown_never_used_as_paths(client, sounds, app_url, tmp_path):
    marker = f"escape-{uuid.uuid4().hex}"
    names = [f"../../{marker}.wav", f"/tmp/{marker}.wav", f"..\\..\\{marker}.wav",
             f"<img src=x onerror=alert(1)>{marker}.wav"]
    before = set(app_url[1].rglob("*"))
    ids = [run_session(client, sounds, input_name=name, target_name=name)["id"] for name in names]
    roots = {Path("/tmp"), Path.cwd(), app_url[1], app_url[1].parent, app_url[1].parent.parent, tmp_path}
    for root in roots:
        assert not [p for p in root.rglob(f"*{marker}*")], root
    new = set(app_url[1].rglob("*")) - before
    assert {p.relative_to(app_url[1]).parts[:2] for p in new if p.is_file()} == {("sessions", i) for i in ids}
    data = client.get(f"/sessions/{ids[0]}/session.json").json()
    assert data["serve"]["input_name"] == f"{marker}.wav"  # only the last part, for display
    page = client.get(f"/sessions/{ids[3]}/").text
    assert "<img src=x onerror" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_fifty_concurrent_garbage_uploads_get_4xx_sentences_and_the_next_session_works(client, sounds, app_url):
    rng = np.random.default_rng(5)
    garbage = [
        ("noise.wav", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()),
        ("noise.mp3", rng.integers(0, 256, 70000, dtype=np.uint8).tobytes()),
        ("noise.flac", b"fLaC" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()),
        ("header.wav", b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00"),
        ("text.ogg", b"OggS not really"),
        ("../../etc/passwd.wav", b"root:x:0:0:root:/root:/bin/bash\n"),
        ("empty.aiff", b""),
        ("binary.exe", b"MZ" + bytes(100)),
    ]

    def attack(index: int) -> tuple[int, str]:
        name, body = garbage[index % len(garbage)]
        with httpx.Client(base_url=app_url[0], timeout=60) as own:
            response = own.post("/sessions", files={"input_file": (name, body), "target_file": (name, body)},
                                headers=JSON)
        return response.status_code, response.json().get("error", "")

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(attack, range(50)))
    assert len(answers) == 50
    assert all(400 <= status < 500 for status, _ in answers), answers
    assert all(ONE_SENTENCE.fullmatch(sentence) for _, sentence in answers), answers
    assert client.get("/api/health").json()["ready"]
    run_session(client, sounds)
    assert list((app_url[1] / "uploads").iterdir()) == []
    assert not (app_url[1].parent / "etc").exists()


# -- bounded pool, search hook (own small servers) ---------------------------------------
class GatedSuggest:
    """Stands in for ``suggest``: blocks each call until released, counting how many run at once."""

    def __init__(self, real):
        self.real = real
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.kwargs = []

    def __call__(self, input, target, **kwargs):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.kwargs.append(kwargs)
        try:
            assert self.release.wait(60)
            kwargs = {k: v for k, v in kwargs.items() if k not in ("search", "budget_ms")}
            return self.real(input, target, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


def test_sessions_beyond_the_workers_queue_and_the_queue_is_bounded(monkeypatch, tmp_path):
    gate = GatedSuggest(session_module.suggest)
    monkeypatch.setattr(session_module, "suggest", gate)
    settings = ServeSettings(data_dir=tmp_path / "data", workers=2, max_waiting=2, warm=False)
    with serve_in_thread(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        jobs = [post_session(client, input_preset="saw", target_preset=p) for p in ("square", "sine", "triangle",
                                                                                   "mtron-saw")]
        assert [r.status_code for r in jobs] == [202] * 4
        deadline = time.monotonic() + 10
        while gate.running < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        states = [client.get(r.json()["status_url"]).json() for r in jobs]
        assert [s["state"] for s in states] == ["running", "running", "queued", "queued"]
        assert [s["queue_position"] for s in states[2:]] == [0, 1]
        assert_refused(post_session(client, input_preset="saw", target_preset="dirt-stab"), 503, "try again")
        gate.release.set()
        assert all(wait_done(client, r.json())["state"] == "done" for r in jobs)
    assert gate.most == 2


def test_search_options_appear_only_when_suggest_takes_them(monkeypatch, tmp_path):
    settings = ServeSettings(data_dir=tmp_path / "data", workers=1, warm=False)
    with serve_in_thread(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        gate = GatedSuggest(session_module.suggest)
        gate.release.set()

        def plain(input, target, *, rack="builtin", bundle=None, selector="rnn", tolerance=1):
            return gate(input, target, rack=rack, bundle=bundle, selector=selector, tolerance=tolerance)

        monkeypatch.setattr(session_module, "suggest", plain)
        assert 'id="budget_ms"' not in client.get("/").text and 'id="search"' not in client.get("/").text
        run_session(client, input_preset="saw", target_preset="square", search="on", budget_ms="250")
        assert "search" not in gate.kwargs[-1] and "budget_ms" not in gate.kwargs[-1]

        def searching(input, target, *, search=None, budget_ms=300.0, **kwargs):
            return gate(input, target, search=search, budget_ms=budget_ms, **kwargs)

        monkeypatch.setattr(session_module, "suggest", searching)
        html = client.get("/").text
        assert 'id="budget_ms"' in html and 'id="search"' in html and 'for="budget_ms"' in html
        status = run_session(client, input_preset="saw", target_preset="square", search="on", budget_ms="250")
        assert gate.kwargs[-1]["search"] is True and gate.kwargs[-1]["budget_ms"] == 250
        assert client.get(status["page_url"] + "session.json").json()["serve"]["budget_ms"] == 250
        run_session(client, input_preset="saw", target_preset="square", search="", budget_ms="")
        assert gate.kwargs[-1]["search"] is None and gate.kwargs[-1]["budget_ms"] == 300.0  # suggest's defaults
        run_session(client, input_preset="saw", target_preset="square", search="off")
        assert gate.kwargs[-1]["search"] is False
        assert_refused(post_session(client, input_preset="saw", target_preset="square", budget_ms="lots"), 400,
                       "search budget 'lots'")


def test_a_session_that_fails_in_its_worker_shows_its_sentence(monkeypatch, tmp_path):
    from serumrnn.core.errors import AudioError

    def failing(input, target, **kwargs):
        if kwargs["selector"] == "ni":
            raise RuntimeError("boom\nsecond line")
        raise AudioError(f"The target '{target}' has no clear pitch to shift; give a pitched sound.")

    monkeypatch.setattr(session_module, "suggest", failing)
    settings = ServeSettings(data_dir=tmp_path / "data", workers=1, warm=False)
    with serve_in_thread(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        rack = get_plugin_manager().rack("builtin")
        files = {"input_file": ("in.wav", wav_bytes(tmp_path, rack.render("saw"))),
                 "target_file": ("my target.wav", wav_bytes(tmp_path, rack.render("sine")))}
        job = client.post("/sessions", files=files, headers=JSON).json()
        status = wait_done(client, job)
        assert status["state"] == "failed"
        assert status["error"] == "The target 'my target.wav' has no clear pitch to shift; give a pitched sound."
        page = client.get(f"/jobs/{job['id']}")
        assert page.status_code == 200 and "The target &#x27;my target.wav&#x27; has no clear pitch" in page.text
        job = client.post("/sessions", data={"input_preset": "saw", "target_preset": "sine", "selector": "ni"},
                          headers=JSON).json()
        status = wait_done(client, job)
        assert status["error"] == "Internal error (RuntimeError: boom); please report it."
        assert client.get("/api/health").json()["ready"]
        assert list((tmp_path / "data" / "uploads").iterdir()) == []


def test_a_restart_clears_stale_uploads_and_staging_folders_only(tmp_path):
    data = tmp_path / "data"
    stale = [data / "uploads" / ("a" * 32), data / "sessions" / ".0123.staging"]
    fresh = [data / "uploads" / ("b" * 32), data / "sessions" / ".4567.staging"]
    for folder in stale + fresh:
        folder.mkdir(parents=True)
        (folder / "input.wav").write_bytes(b"x")
    for folder in stale:
        os.utime(folder, (time.time() - 7200, time.time() - 7200))
    with serve_in_thread(ServeSettings(data_dir=data, warm=False)):
        assert [folder.exists() for folder in stale + fresh] == [False, False, True, True]


# -- the command ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_cli_starts_without_fastapi_and_serve_starts_the_app(tmp_path):
    check = subprocess.run([sys.executable, "-c", "import sys, serumrnn.cli.app; "
                            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))"],
                           capture_output=True, text=True, check=True)
    assert check.stdout.strip() == "[]"
    port = free_port()
    command = [sys.executable, "-m", "serumrnn.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).json()
                if health["ready"]:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.2)
        assert "<h1>serumrnn" in httpx.get(f"http://127.0.0.1:{port}/").text
        # a second server on the same port is refused with one sentence
        busy = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert busy.returncode == 2 and busy.stderr.strip() == (
            f"Error: Port {port} on 127.0.0.1 is already in use; choose another --port.")
    finally:
        process.terminate()
        process.wait(30)
    assert (tmp_path / "d" / "sessions").is_dir()
    first_line = process.stdout.read().splitlines()[0]
    assert first_line.startswith(f"serumrnn serve: open http://127.0.0.1:{port}/")

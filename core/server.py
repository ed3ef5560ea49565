"""``serumrnn serve``: a local web app around ``suggest`` (FastAPI).

Upload an input and a target (or pick presets), choose a bundle and a system, and land
on the session's listening page (``core/page.py``). Models load once per process; a
bounded pool runs as many sessions as there are cores and queues the rest. Uploads are
capped in size, checked with the CLI's audio loader, and stored under names the server
makes (a client's file name is only ever shown, never used as a path); every failure a
user can cause is answered with one sentence and a 4xx status.

Imported only by ``serumrnn serve`` and the tests, so the CLI starts without FastAPI.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import html
import inspect
import io
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import attrs
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from serumrnn.core.audio import load_audio
from serumrnn.core.errors import OutputError, SerumRNNError
from serumrnn.core.page import NAV_MARKER, PAGE_NAME

log = logging.getLogger("serumrnn.serve")

MB = 1024 * 1024
DEFAULT_MAX_UPLOAD_MB = 20
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".aiff", ".aif")
SYSTEMS = ("rnn", "ni", "cnn", "cnn-1s", "random")
ROLES = ("input", "target")
# Form fields beyond the files: small, so a garbage form is refused early.
MAX_FORM_FIELDS = 16
MAX_FIELD_BYTES = 4096
MAX_BUDGET_MS = 60_000
_SESSION_ID = re.compile(r"[0-9a-f]{32}")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Finished jobs remembered for their status page (sessions themselves stay on disk).
KEEP_FINISHED_JOBS = 500


def default_data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "serumrnn" / "serve"


@attrs.define
class ServeSettings:
    """``workers``: sessions run at once (default: the core count); ``max_waiting``:
    sessions queued behind them before new ones are refused."""

    data_dir: Path = attrs.field(factory=default_data_dir, converter=Path)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * MB
    workers: int = attrs.field(factory=lambda: max(1, os.cpu_count() or 1))
    max_waiting: int = 32
    warm: bool = True
    # Host names the app answers to (None: any). On loopback this stops a web page whose
    # name is rebound to 127.0.0.1 (DNS rebinding) from driving the app.
    allowed_hosts: tuple[str, ...] | None = ("127.0.0.1", "localhost", "::1")

    @property
    def sessions_dir(self) -> Path:
        return self.data_dir / "sessions"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def max_request_bytes(self) -> int:
        # Two files plus the form's small fields and multipart boundaries.
        return 2 * self.max_upload_bytes + MAX_FORM_FIELDS * MAX_FIELD_BYTES + 64 * 1024


class ClientError(SerumRNNError):
    """A request the server refuses, with its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def search_options() -> list[str]:
    """The search keywords ``suggest`` accepts in this version (``search``, ``budget_ms``):
    the form offers them only when they exist."""
    from serumrnn.core.session import suggest

    parameters = inspect.signature(suggest).parameters
    return [name for name in ("search", "budget_ms") if name in parameters]


class Models:
    """The builtin rack and the bundles, loaded once per process and shared by the workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bundles: dict[str, Any] = {}

    @property
    def rack(self):
        from serumrnn.core.registry import get_plugin_manager

        return get_plugin_manager().rack("builtin")

    def bundle(self, name: str):
        from serumrnn.core.session import resolve_bundle

        with self._lock:
            if name not in self._bundles:
                self._bundles[name] = resolve_bundle(name, self.rack)
            return self._bundles[name]

    def warm(self, bundle: str) -> None:
        """Load ``bundle`` and run one short session, so the first request pays no start-up."""
        from serumrnn.core.session import suggest

        target = self.rack.render("saw", [("reverb", {"mix": 0.5})])
        suggest("saw", target, rack=self.rack, bundle=self.bundle(bundle))


@attrs.define
class Job:
    id: str
    input_name: str
    target_name: str
    state: str = "queued"  # queued, running, done, failed
    error: str = ""
    created: float = attrs.field(factory=time.time)
    started: float | None = None
    finished: float | None = None

    def to_json(self, position: int | None = None) -> dict[str, Any]:
        now = self.finished or time.time()
        return {
            "id": self.id, "state": self.state, "error": self.error, "queue_position": position,
            "seconds": round(now - (self.started or self.created), 2),
            "status_url": f"/api/jobs/{self.id}", "page_url": f"/sessions/{self.id}/",
        }


def display_name(filename: str | None) -> str:
    """A client's file name for display only: its last part, at most 80 characters."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name.strip()
    return (name[:77] + "...") if len(name) > 80 else name


# -- the app ------------------------------------------------------------------------------
class SessionServer:
    """State of one app: settings, models, the worker pool and the jobs."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.models = Models()
        # Added, pruned and counted only on the event loop's thread; workers change a job's fields.
        self.jobs: dict[str, Job] = {}
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.ready = threading.Event()

    # -- lifecycle
    def start(self) -> None:
        for folder in (self.settings.sessions_dir, self.settings.uploads_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"Cannot create the data folder '{folder}' ({exc.strerror}); "
                                  "choose a writable --data-dir.") from None
        # Leftovers of a killed server: uploads and half-staged session folders (an hour
        # old, so a second server on the same folder keeps its own).
        stale = time.time() - 3600
        for leftover in [*self.settings.uploads_dir.iterdir(), *self.settings.sessions_dir.glob(".*")]:
            if leftover.stat().st_mtime < stale:
                shutil.rmtree(leftover, ignore_errors=True)
        self.models.rack  # the plugin manager and the rack, built once before any thread asks
        self.pool = concurrent.futures.ThreadPoolExecutor(self.settings.workers, thread_name_prefix="serumrnn-session")
        if self.settings.warm:
            self.pool.submit(self._warm)
        else:
            self.ready.set()

    def _warm(self) -> None:
        try:
            self.models.warm(self.default_bundle())
        except Exception:  # a broken bundle shows up as each session's error instead
            log.exception("warming the models failed")
        finally:
            self.ready.set()

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    # -- choices
    def bundles(self) -> list[str]:
        from serumrnn.core.session import shipped_bundles

        return shipped_bundles()

    def default_bundle(self) -> str:
        from serumrnn.core.session import default_bundle_name

        return default_bundle_name()

    def systems(self) -> list[str]:
        from serumrnn.core.registry import get_plugin_manager

        registered = set(get_plugin_manager().selectors.names())
        return [name for name in SYSTEMS if name in registered]

    def presets(self) -> list[str]:
        return [preset.name for preset in self.models.rack.synth.presets]

    # -- jobs
    def waiting(self) -> int:
        return sum(job.state == "queued" for job in self.jobs.values())

    def position(self, job: Job) -> int | None:
        if job.state != "queued":
            return None
        return sum(other.state == "queued" and other.created < job.created for other in self.jobs.values())

    def submit(self, job: Job, request: dict[str, Any], upload_dir: Path) -> None:
        if self.waiting() >= self.settings.max_waiting:
            raise ClientError(f"The server already has {self.settings.max_waiting} sessions waiting; "
                              "try again in a minute.", 503)
        self.jobs[job.id] = job
        finished = [j for j in self.jobs.values() if j.state in ("done", "failed")]
        for old in sorted(finished, key=lambda j: j.created)[:-KEEP_FINISHED_JOBS]:
            self.jobs.pop(old.id, None)
        assert self.pool is not None
        self.pool.submit(self._run, job, request, upload_dir)

    def _run(self, job: Job, request: dict[str, Any], upload_dir: Path) -> None:
        from serumrnn.core.session import suggest, write_session

        job.state, job.started = "running", time.time()
        try:
            rack = self.models.rack
            sounds = {}
            for role in ROLES:
                kind, value = request[role]
                sounds[role] = value if kind == "file" or role == "input" else rack.render(value)
            session = suggest(sounds["input"], sounds["target"], rack=rack,
                              bundle=self.models.bundle(request["bundle"]), selector=request["selector"],
                              **request["search"])
            session.notes = [_client_sentence(note, request) for note in session.notes]  # no server paths
            # No progression.png: it would double the answer time, and the page shows every spectrogram.
            write_session(session, self.settings.sessions_dir / job.id, overview=False, extra_json={"serve": {
                "input_name": job.input_name, "target_name": job.target_name, "bundle": request["bundle"],
                "selector": request["selector"], **request["search"],
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }})
            job.state = "done"
        except SerumRNNError as exc:
            job.error = _client_sentence(str(exc), request)
            job.state = "failed"
        except Exception as exc:
            log.exception("session %s failed", job.id)
            job.error = internal_error_sentence(exc)
            job.state = "failed"
        finally:
            job.finished = time.time()
            shutil.rmtree(upload_dir, ignore_errors=True)

    # -- sessions on disk
    def session_dir(self, session_id: str) -> Path:
        if not _SESSION_ID.fullmatch(session_id):
            raise ClientError("There is no such session; start a new one.", 404)
        folder = self.settings.sessions_dir / session_id
        if not (folder / "session.json").is_file():
            raise ClientError("There is no such session (it may have been removed); start a new one.", 404)
        return folder

    def earlier_sessions(self, limit: int = 50) -> list[dict[str, Any]]:
        folders = [f for f in self.settings.sessions_dir.iterdir() if _SESSION_ID.fullmatch(f.name)]
        rows = []
        for folder in sorted(folders, key=lambda f: f.stat().st_mtime, reverse=True)[:limit]:
            try:
                data = json.loads((folder / "session.json").read_text())
            except (OSError, ValueError):
                continue
            serve = data.get("serve") or {}
            rows.append({"id": folder.name, "url": f"/sessions/{folder.name}/", "input": serve.get("input_name", ""),
                         "target": serve.get("target_name", ""), "selector": data.get("selector", ""),
                         "bundle": serve.get("bundle", ""), "created": serve.get("created", ""),
                         "steps": len(data.get("steps", [])), "best_step": data.get("best_step", 0),
                         "best_closer_pct": data.get("best_closer_pct", 0.0)})
        return rows


def internal_error_sentence(exc: BaseException) -> str:
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"Internal error ({type(exc).__name__}: {message}); please report it."


def _client_sentence(message: str, request: Mapping[str, Any]) -> str:
    """An error sentence naming the client's file instead of the server's upload path."""
    for role in ROLES:
        kind, value = request.get(role, (None, None))
        if kind == "file":
            message = message.replace(str(value), request[f"{role}_name"] or f"the {role} file")
    return message


# -- requests -----------------------------------------------------------------------------
def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _field(form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def _save_upload(server: SessionServer, upload: UploadFile, role: str, folder: Path) -> Path:
    """Copy an upload to ``folder/<role><suffix>``: the suffix from an allow-list (the
    decoder needs it), never the client's name; refuse it past the size limit."""
    name = display_name(upload.filename)
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise ClientError(f"The {role} file '{name}' is not a wav, flac, mp3, ogg or aiff file; upload one of those.",
                          415)
    limit = server.settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        raise ClientError(f"The {role} file '{name}' is {upload.size / MB:.1f} MB; the limit is {limit / MB:.0f} MB, "
                          "upload a shorter sound.", 413)
    path = folder / f"{role}{suffix}"

    def copy() -> int:
        written = 0
        upload.file.seek(0)
        with open(path, "wb") as out:
            while chunk := upload.file.read(MB):
                written += len(chunk)
                if written > limit:
                    break
                out.write(chunk)
        return written

    if await run_in_threadpool(copy) > limit:
        raise ClientError(f"The {role} file '{name}' is over {limit / MB:.0f} MB; upload a shorter sound.", 413)
    return path


async def _read_request(server: SessionServer, request: Request, folder: Path) -> dict[str, Any]:
    """Check the form and the uploads; raise ``ClientError`` or ``SerumRNNError`` with one sentence."""
    from starlette.formparsers import MultiPartException

    try:
        async with request.form(max_files=2, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES) as form:
            parsed: dict[str, Any] = {}
            for role in ROLES:
                upload = form.get(f"{role}_file")
                preset = _field(form, f"{role}_preset")
                if isinstance(upload, UploadFile) and upload.filename:
                    parsed[f"{role}_name"] = display_name(upload.filename)
                    parsed[role] = ("file", await _save_upload(server, upload, role, folder))
                elif preset:
                    if preset not in server.presets():
                        raise ClientError(f"There is no preset '{preset[:40]}'; pick one from the list.")
                    parsed[f"{role}_name"] = preset
                    parsed[role] = ("preset", preset)
                else:
                    raise ClientError(f"No {role} sound was given; upload a file or pick a preset for the {role}.")
            parsed["bundle"] = _field(form, "bundle") or server.default_bundle()
            if parsed["bundle"] not in server.bundles():
                raise ClientError(f"There is no bundle '{parsed['bundle'][:40]}'; choose one of "
                                  f"{', '.join(server.bundles())}.")
            parsed["selector"] = _field(form, "selector") or "rnn"
            if parsed["selector"] not in server.systems():
                raise ClientError(f"There is no system '{parsed['selector'][:40]}'; choose one of "
                                  f"{', '.join(server.systems())}.")
            parsed["search"] = _search_arguments(form)
    except (MultiPartException, StarletteHTTPException) as exc:  # Starlette wraps the parser's errors
        reason = str(getattr(exc, "detail", None) or getattr(exc, "message", None) or exc).rstrip(".")
        raise ClientError(f"The upload form could not be read ({reason}); send it again from the page.") from None
    for role in ROLES:
        kind, path = parsed[role]
        if kind == "file":
            rack = server.models.rack
            try:  # the CLI's loader: the same checks and sentences; only the first seconds are read
                await run_in_threadpool(load_audio, path, sample_rate=rack.sample_rate,
                                        duration_s=rack.duration_s + 1.0, allow_silent=False)
            except SerumRNNError as exc:
                raise ClientError(_client_sentence(str(exc), parsed)) from None
    return parsed


def _search_arguments(form) -> dict[str, Any]:
    supported = search_options()
    arguments: dict[str, Any] = {}
    choice = _field(form, "search")
    if "search" in supported and choice:  # left blank: suggest's own default
        if choice not in ("on", "off"):
            raise ClientError(f"Search '{choice[:20]}' is neither on nor off; choose one.")
        arguments["search"] = choice == "on"
    text = _field(form, "budget_ms")
    if "budget_ms" in supported and text:
        try:
            budget = int(text)
        except ValueError:
            budget = -1
        if not 0 <= budget <= MAX_BUDGET_MS:
            raise ClientError(f"The search budget '{text[:20]}' is not a whole number of milliseconds from 0 to "
                              f"{MAX_BUDGET_MS}; give one.")
        arguments["budget_ms"] = budget
    return arguments


def _host_name(header: str) -> str:
    """``127.0.0.1:8000`` -> ``127.0.0.1``; ``[::1]:8000`` -> ``::1``."""
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.split(":", 1)[0]


class RequestGuard:
    """Refuse, before anything is read: a Host the app does not answer to, and a request
    body over the limit or of unknown length."""

    def __init__(self, app, server: SessionServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope, receive, send) -> None:
        error = None
        headers = dict(scope.get("headers") or [])
        allowed = self.server.settings.allowed_hosts
        if scope["type"] == "http" and allowed is not None:
            host = _host_name(headers.get(b"host", b"").decode("latin-1"))
            if host not in allowed:
                error = ClientError(f"This app answers only to {', '.join(allowed)}; open it by one of those names.",
                                    421)
        if error is None and scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get(b"content-length")
            limit = self.server.settings.max_request_bytes
            if length is None or not length.isdigit():
                error = ClientError("The upload has no length; send it from the page or with a Content-Length header.",
                                    411)
            elif int(length) > limit:
                error = ClientError(f"The upload is {int(length) / MB:.1f} MB; each sound may be at most "
                                    f"{self.server.settings.max_upload_bytes / MB:.0f} MB, upload shorter sounds.", 413)
        if error is not None:  # a foreign Host gets no start page: it lists the sessions
            response = _error_response(self.server, Request(scope), error, form=error.status != 421)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _error_response(server: SessionServer, request: Request, error: SerumRNNError, *, form: bool = True) -> Response:
    """The sentence as JSON, or as HTML: on the start page to try again (``form``), or alone."""
    status = error.status if isinstance(error, ClientError) else 400
    sentence = str(error)
    if _wants_json(request):
        return JSONResponse({"error": sentence}, status_code=status)
    page = _home_page(server, error=sentence) if form else (
        f'<!doctype html><html lang="en"><meta charset="utf-8"><title>serumrnn</title>'
        f'<p class="error" role="alert">{_e(sentence)}</p></html>')
    return HTMLResponse(page, status_code=status, headers={"Connection": "close"} if status in (411, 413) else None)


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The web app; ``app.state.server`` holds its ``SessionServer``."""
    server = SessionServer(settings or ServeSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        server.start()
        try:
            yield
        finally:
            await run_in_threadpool(server.stop)

    app = FastAPI(title="serumrnn", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    app.add_middleware(RequestGuard, server=server)

    @app.exception_handler(SerumRNNError)
    async def refused(request: Request, exc: SerumRNNError) -> Response:
        return _error_response(server, request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        sentence = {404: "There is no such page; go back to the start page.",
                    405: "That page does not take this kind of request; use the form."}.get(
            exc.status_code, f"The request was refused ({exc.detail}); go back to the start page.")
        return _error_response(server, request, ClientError(sentence, exc.status_code))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.error("request %s failed", request.url.path, exc_info=exc)
        return _error_response(server, request, ClientError(internal_error_sentence(exc), 500))

    @app.get("/", response_class=HTMLResponse)
    async def home() -> HTMLResponse:
        return HTMLResponse(await run_in_threadpool(_home_page, server))

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"ready": server.ready.is_set(), "waiting": server.waiting(), "workers": server.settings.workers}

    @app.get("/api/sessions")
    async def sessions() -> list[dict[str, Any]]:
        return await run_in_threadpool(server.earlier_sessions)

    @app.post("/sessions")
    async def new_session(request: Request) -> Response:
        job_id = uuid.uuid4().hex
        folder = server.settings.uploads_dir / job_id
        folder.mkdir(parents=True)
        try:
            parsed = await _read_request(server, request, folder)
            job = Job(job_id, parsed["input_name"], parsed["target_name"])
            server.submit(job, parsed, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if _wants_json(request):
            return JSONResponse(job.to_json(server.position(job)), status_code=202)
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)

    @app.get("/api/jobs/{job_id}")
    async def job_status(job_id: str) -> dict[str, Any]:
        job = server.jobs.get(job_id)
        if job is None:
            raise ClientError("There is no such job; start a new session.", 404)
        return job.to_json(server.position(job))

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    async def job_page(job_id: str) -> Response:
        job = server.jobs.get(job_id)
        if job is None:
            raise ClientError("There is no such job; start a new session.", 404)
        if job.state == "done":
            return RedirectResponse(f"/sessions/{job_id}/", status_code=303)
        return HTMLResponse(_job_page(job, server.position(job)))

    @app.get("/sessions/{session_id}")
    async def session_no_slash(session_id: str) -> Response:
        server.session_dir(session_id)
        return RedirectResponse(f"/sessions/{session_id}/", status_code=307)

    @app.get("/sessions/{session_id}/", response_class=HTMLResponse)
    async def session_page(session_id: str) -> HTMLResponse:
        page = (server.session_dir(session_id) / PAGE_NAME).read_text(encoding="utf-8")
        return HTMLResponse(page.replace(NAV_MARKER, _NAV, 1))

    @app.get("/sessions/{session_id}/session.zip")
    async def session_zip(session_id: str) -> Response:
        folder = server.session_dir(session_id)
        data = await run_in_threadpool(_zip_folder, folder)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="serumrnn-{session_id[:8]}.zip"'})

    @app.get("/sessions/{session_id}/{name}")
    async def session_file(session_id: str, name: str) -> Response:
        folder = server.session_dir(session_id)
        path = folder / name
        if not _FILE_NAME.fullmatch(name) or not path.is_file():
            raise ClientError("There is no such file in this session.", 404)
        return FileResponse(path)

    return app


@contextlib.contextmanager
def serve_in_thread(settings: ServeSettings, host: str = "127.0.0.1", port: int = 0, *,
                    ready_timeout_s: float = 120.0) -> Iterator[str]:
    """Run the app with uvicorn in a background thread (tests, benchmarks, notebooks);
    yields its base URL once the models are warm. ``port=0`` takes a free port."""
    import uvicorn

    app = create_app(settings)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True,
                              name="serumrnn-serve")
    thread.start()
    deadline = time.monotonic() + ready_timeout_s
    try:
        while not (server.started and app.state.server.ready.is_set()):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise OutputError(f"The web app did not start on {host} within {ready_timeout_s:.0f} s; "
                                  "see the log above.")
            time.sleep(0.05)
        yield f"http://{host}:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(60)
        listener.close()


def _zip_folder(folder: Path) -> bytes:
    """The session's WAVs, session.json, page and pictures in one zip (WAVs stored as they are)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                method = zipfile.ZIP_STORED if path.suffix == ".wav" else zipfile.ZIP_DEFLATED
                archive.write(path, f"{folder.name[:8]}/{path.name}", compress_type=method)
    return buffer.getvalue()


# -- pages --------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_NAV = ('<nav class="app-nav" aria-label="serumrnn app"><a href="/">New session</a>'
        '<a href="session.zip" download>Download the steps and session.json (zip)</a>'
        '<a href="session.json">session.json</a></nav>')

_STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:#fbfaf7;color:#1d1b19}
main{max-width:860px;margin:0 auto;padding:1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem}
fieldset{border:1px solid #ddd6cc;border-radius:8px;margin:0 0 1rem;padding:.6rem .8rem;background:#fff}
legend{font-weight:600}
.row{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:.6rem 1rem}
label{display:block;font-size:.9rem;color:#5f5a54}
input,select,button{font:inherit;max-width:100%}
select,input[type=number]{padding:.3rem;border-radius:6px;border:1px solid #8a8580;background:#fff}
button{padding:.5rem 1.2rem;border-radius:6px;border:0;background:#1d1b19;color:#fff;cursor:pointer}
button:disabled{opacity:.5}
.error{border:2px solid #a12a2a;background:#fff3f3;color:#7a1717;padding:.6rem .8rem;border-radius:8px}
.sessions{padding-left:1.2rem}.small{color:#5f5a54;font-size:.85rem}
"""


def _options(values, selected: str = "", *, blank: str | None = None) -> str:
    items = [f'<option value="">{_e(blank)}</option>'] if blank is not None else []
    items += [f'<option value="{_e(v)}"{" selected" if v == selected else ""}>{_e(v)}</option>' for v in values]
    return "".join(items)


def _home_page(server: SessionServer, *, error: str = "") -> str:
    limit_mb = server.settings.max_upload_bytes / MB
    presets = server.presets()
    sound_sets = "".join(
        f'<fieldset><legend>{role.capitalize()}</legend><div class="row">'
        f'<div><label for="{role}_file">Upload the {role} (wav, flac, mp3, ogg, aiff; '
        f'at most {limit_mb:.0f} MB)</label>'
        f'<input type="file" id="{role}_file" name="{role}_file" accept="{",".join(AUDIO_SUFFIXES)},audio/*"></div>'
        f'<div><label for="{role}_preset">or pick a preset of the builtin synth</label>'
        f'<select id="{role}_preset" name="{role}_preset">{_options(presets, blank="(none: use the upload)")}'
        f"</select></div></div></fieldset>" for role in ROLES)
    supported = search_options()
    search = ""
    if "search" in supported:
        search += ('<div><label for="search">Search around the models\' guess</label><select id="search" '
                   'name="search"><option value="">default</option><option value="on">on</option>'
                   '<option value="off">off</option></select></div>')
    if "budget_ms" in supported:
        search += (f'<div><label for="budget_ms">Search budget per step (ms; blank: the default)</label>'
                   f'<input type="number" id="budget_ms" name="budget_ms" min="0" max="{MAX_BUDGET_MS}" '
                   f'step="50"></div>')
    rows = server.earlier_sessions()
    earlier = "".join(
        f'<li><a href="{_e(r["url"])}">{_e(r["input"] or "input")} → {_e(r["target"] or "target")}</a> '
        f'<span class="small">{_e(r["selector"])}, bundle {_e(r["bundle"])}, {r["steps"]} step(s), '
        f'{float(r["best_closer_pct"]):.1f}% closer, {_e(r["created"])}</span></li>' for r in rows)
    alert = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>serumrnn: from a sound to a target, step by step</title><style>{_STYLE}</style></head>
<body><main>
<h1>serumrnn: from a sound to a target, step by step</h1>
{alert}
<form id="new-session" method="post" action="/sessions" enctype="multipart/form-data">
{sound_sets}
<fieldset><legend>How</legend><div class="row">
<div><label for="bundle">Model bundle</label><select id="bundle" name="bundle">
{_options(server.bundles(), server.default_bundle())}</select></div>
<div><label for="selector">System (effect selection)</label><select id="selector" name="selector">
{_options(server.systems(), "rnn")}</select></div>{search}
</div></fieldset>
<button type="submit" id="run">Find the steps</button>
<p class="error" id="form-error" role="alert" hidden></p>
</form>
<section aria-labelledby="earlier-title"><h2 id="earlier-title">Earlier sessions</h2>
{f'<ul class="sessions">{earlier}</ul>' if earlier else '<p class="small">None yet.</p>'}
</section>
</main>
<script>
(function(){{
  var form=document.getElementById('new-session'),error=document.getElementById('form-error'),limit={server.settings.max_upload_bytes};
  form.addEventListener('submit',function(event){{
    var problem='';
    ['input','target'].forEach(function(role){{
      var file=document.getElementById(role+'_file').files[0];
      if(!problem&&file&&file.size>limit){{problem='The '+role+' file is over '+Math.round(limit/1048576)+' MB; upload a shorter sound.';}}
    }});
    if(problem){{event.preventDefault();error.textContent=problem;error.hidden=false;return;}}
    document.getElementById('run').disabled=true;
  }});
}})();
</script>
</body></html>
"""


def _job_page(job: Job, position: int | None) -> str:
    if job.state == "failed":
        status = f'<p class="error" role="alert">{_e(job.error)}</p><p><a href="/">Start a new session</a></p>'
    else:
        ahead = f" ({position} ahead)" if position else ""
        status = (f'<p id="job-status" role="status" aria-live="polite">'
                  f'{"Waiting for a free worker" + ahead if job.state == "queued" else "Finding the steps"}...</p>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>serumrnn: finding the steps</title><style>{_STYLE}</style>
<noscript><meta http-equiv="refresh" content="2"></noscript></head>
<body><main><h1>From {_e(job.input_name)} toward {_e(job.target_name)}</h1>
<div id="job" data-state="{_e(job.state)}">{status}</div>
<progress id="job-progress" aria-label="Session progress"{"" if job.state != "failed" else " hidden"}></progress>
</main>
<script>
(function(){{
  if(document.getElementById('job').dataset.state==='failed'){{return;}}
  var status=document.getElementById('job-status');
  function poll(){{
    fetch('/api/jobs/{job.id}',{{headers:{{'Accept':'application/json'}}}}).then(function(r){{return r.json();}}).then(function(job){{
      if(job.state==='done'){{location.replace(job.page_url);return;}}
      if(job.state==='failed'||job.error){{location.reload();return;}}
      status.textContent=job.state==='queued'?'Waiting for a free worker'+(job.queue_position?' ('+job.queue_position+' ahead)':'')+'...'
        :'Finding the steps... '+job.seconds.toFixed(1)+' s';
      setTimeout(poll,250);
    }}).catch(function(){{setTimeout(poll,1000);}});
  }}
  poll();
}})();
</script>
</body></html>
"""

"""``serumrnn serve``: the local web app (FastAPI + uvicorn, imported only here)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated

import typer

from serumrnn.cli.common import console, friendly_errors

app = typer.Typer()


def check_port(host: str, port: int) -> None:
    """Refuse a busy or unusable address with one sentence before uvicorn logs its own."""
    from serumrnn.core.errors import ParameterError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ParameterError(f"Cannot resolve the host '{host}'; give an address such as 127.0.0.1.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ParameterError(f"Port {port} on {host} is already in use; choose another --port.") from None
            raise ParameterError(f"Cannot listen on {host}:{port} ({exc.strerror}); choose another --host or --port.") from None


@app.command("serve")
@friendly_errors
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (only this machine by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where sessions are kept (default ~/.cache/serumrnn/serve).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Sessions run at once (default: the core count); more wait.")] = None,
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", min=1, max=1024, help="Largest sound a client may upload.")] = 20,
) -> None:
    """A local web app: upload an input and a target, listen to every step."""
    import torch
    import uvicorn

    from serumrnn.core.server import MB, ServeSettings, create_app, default_data_dir

    check_port(host, port)
    settings = ServeSettings(data_dir=data_dir or default_data_dir(), max_upload_bytes=max_upload_mb * MB)
    if workers is not None:
        settings.workers = workers
    if host not in settings.allowed_hosts:
        # Reached from other machines, by names we cannot know: answer to any Host.
        settings.allowed_hosts = None
    # Sessions run side by side, one per core: one torch thread each keeps them from fighting.
    torch.set_num_threads(1)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"serumrnn serve: open http://{shown}:{port}/ (sessions in {settings.data_dir}); Ctrl+C stops it.")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")

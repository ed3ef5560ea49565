"""The web app (``serumrnn serve``): from the upload of an input and a target to the
session's page being ready, with warm models, for the default system and bundle (target:
at most 1 s on 2 cores), with ``suggest``'s default search setting and with search off
(where ``suggest`` has a search). Real HTTP on loopback: uvicorn in a thread, httpx as the client."""

import time

import pytest

httpx = pytest.importorskip("httpx")


@pytest.mark.parametrize("search", ["default", "off"])
def test_serve_session(benchmark, rack, tmp_path_factory, search):
    from serumrnn.core.audio import write_wav
    from serumrnn.core.server import ServeSettings, search_options, serve_in_thread
    from serumrnn.core.session import default_bundle_name

    if search == "off" and "search" not in search_options():
        pytest.skip("suggest has no search to turn off")

    folder = tmp_path_factory.mktemp("bench-serve")
    target = rack.render("saw", [("distortion", {"drive": 0.8}), ("reverb", {"mix": 0.6})])
    files = {"input_file": ("saw.wav", write_wav(folder / "saw.wav", rack.render("saw")).read_bytes()),
             "target_file": ("target.wav", write_wav(folder / "target.wav", target).read_bytes())}

    with serve_in_thread(ServeSettings(data_dir=folder / "data")) as url, \
            httpx.Client(base_url=url, timeout=60) as client:

        def session():
            job = client.post("/sessions", files=files, data={"search": "" if search == "default" else search},
                              headers={"Accept": "application/json"}).json()
            while (status := client.get(job["status_url"]).json())["state"] not in ("done", "failed"):
                time.sleep(0.005)
            return status

        status = benchmark.pedantic(session, rounds=8, warmup_rounds=1)
    assert status["state"] == "done", status
    benchmark.extra_info.update(kind="serve session", selector="rnn", bundle=default_bundle_name(), search=search)

"""The same inputs give the same ``session.json`` (timings aside) release after release.

The expected files in ``tests/golden_sessions/`` were written by the code before the
round-2 refactor, then rewritten twice on purpose, both in one commit: sessions run the
bundles' ONNX exports (float32 rounding apart from torch's moves later steps), and searched
sessions end with a revision of their kept steps. A refactor must leave them unchanged. Each case goes the way a user's
does: WAV files on the command line of ``serumrnn suggest --json``. After a deliberate
change of behaviour, rewrite them with ``SERUMRNN_UPDATE_GOLDEN=1 pytest tests/test_golden_sessions.py``
and say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serumrnn.cli.app import app
from serumrnn.core.audio import write_wav

GOLDEN = Path(__file__).parent / "golden_sessions"
UPDATE = os.environ.get("SERUMRNN_UPDATE_GOLDEN") == "1"
TIMING_KEYS = {"seconds", "ms", "elapsed_ms", "search_ms"}

# (name, source, hidden chain, extra suggest options)
CASES = [
    ("preset-rnn-plain", "saw", [("distortion", {"mode": 0.3, "drive": 0.8}), ("reverb", {"mix": 0.5})],
     ["--no-search"]),
    ("preset-rnn-search", "vintage-bells",
     [("compressor", {"low": 0.9, "mid": 0.7}), ("eq", {"frequency": 0.3, "gain": 0.9})], []),
    ("patch-rnn-search", "varied-100003",
     [("phaser", {"rate": 0.6, "depth": 0.8}), ("distortion", {"drive": 0.6}), ("reverb", {"mix": 0.3})], []),
    ("patch-ni-plain", "varied-100011", [("eq", {"frequency": 0.7, "resonance": 0.5, "gain": 0.1})],
     ["--no-search", "--selector", "ni"]),
    ("preset-cnn1s-plain", "dirt-stab", [("reverb", {"mix": 0.7}), ("compressor", {"high": 0.9})],
     ["--no-search", "--selector", "cnn-1s"]),
    ("preset-random-topk", "saw", [("distortion", {"drive": 0.9}), ("phaser", {"depth": 0.9})],
     ["--selector", "random", "--seed", "3", "--top-k", "2", "--max-renders", "12"]),
]


def without_timings(value):
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items() if key not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def assert_close(actual, expected, where="session"):
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), f"{where}: keys differ"
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: lengths differ"
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert actual == pytest.approx(expected, rel=1e-4, abs=1e-5), where
    else:
        assert actual == expected, where


@pytest.mark.parametrize("name, source, chain, options", CASES, ids=[case[0] for case in CASES])
def test_session_json_is_unchanged(rack, tmp_path, monkeypatch, name, source, chain, options):
    monkeypatch.chdir(tmp_path)  # relative file names: the notes name the files
    dry = rack.dry(source)
    write_wav(tmp_path / "input.wav", dry, rack.sample_rate)
    write_wav(tmp_path / "target.wav", rack.render(dry, chain), rack.sample_rate)
    result = CliRunner().invoke(app, ["suggest", "input.wav", "target.wav", "--json", *options])
    assert result.exit_code == 0, result.output
    session = without_timings(json.loads(result.stdout))
    expected_path = GOLDEN / f"{name}.json"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        expected_path.write_text(json.dumps(session, indent=1, sort_keys=True) + "\n")
    expected = json.loads(expected_path.read_text())
    assert session["steps"], "a golden case should take at least one step"
    assert_close(session, expected)

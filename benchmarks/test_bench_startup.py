"""Start-up of ``serumrnn suggest`` as a whole process: two WAV files from the built-in
synth, the plain models' session (``--no-search``) and the default search session, each
timed beside ``python -c "import torch"`` in the same run, one after the other, so their
ratio holds while a shared machine's speed drifts. Goal for the plain session: a median
of at most 1.2 s on two cores, and at most 1.6 times the torch import.

The torch import runs in each round's setup (not counted by pytest-benchmark); the
``suggest`` process is what the benchmark times. ``extra_info`` records both medians and
the median of the per-round ratios.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROUNDS = 7
SERUMRNN = Path(sys.executable).with_name("serumrnn")
IMPORT_TORCH = (sys.executable, "-c", "import torch")


@pytest.fixture(scope="module")
def sounds(rack, tmp_path_factory):
    from serumrnn.core.audio import write_wav

    folder = tmp_path_factory.mktemp("bench-startup")
    dry = rack.dry("saw")
    write_wav(folder / "input.wav", dry, rack.sample_rate)
    write_wav(folder / "target.wav", rack.render(dry, [("distortion", {"mode": 0.3, "drive": 0.8}),
                                                       ("reverb", {"mix": 0.5})]), rack.sample_rate)
    return folder


def _seconds(command, folder: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    return elapsed


@pytest.mark.parametrize("search", ["off", "default"])
def test_suggest_process_beside_import_torch(benchmark, sounds, search):
    if not SERUMRNN.is_file():
        pytest.skip(f"no serumrnn command beside {sys.executable}")
    suggest = [str(SERUMRNN), "suggest", "input.wav", "target.wav", *(["--no-search"] if search == "off" else [])]
    torch_s, suggest_s = [], []

    def import_torch():
        torch_s.append(_seconds(IMPORT_TORCH, sounds))
        return (), {}

    def run_suggest():
        suggest_s.append(_seconds(suggest, sounds))

    benchmark.pedantic(run_suggest, setup=import_torch, rounds=ROUNDS, warmup_rounds=1)
    # The warm-up round's pair is left out, as pytest-benchmark leaves out its time.
    torch_s, suggest_s = torch_s[-ROUNDS:], suggest_s[-ROUNDS:]
    ratios = [s / t for s, t in zip(suggest_s, torch_s)]
    benchmark.extra_info.update(
        kind="suggest start-up", search=search, rounds=ROUNDS,
        suggest_median_s=statistics.median(suggest_s), import_torch_median_s=statistics.median(torch_s),
        ratio_median=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios),
    )

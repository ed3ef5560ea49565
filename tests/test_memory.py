"""Memory: ``suggest`` stays under 1 GiB resident on any input (a 10-minute, 8-channel,
192 kHz file is read only as far as needed), and ``generate``'s peak does not grow with
the dataset size (benchmarks/test_bench_memory.py measures larger sizes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import corpus
import pytest

GIB = 1024**3


def run_measured(args: list[str], **kwargs) -> tuple[int, str, str, int]:
    """``(peak RSS bytes, stdout, stderr, exit code)`` of ``args`` as its own process."""
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs) as process:
        stdout, stderr = process.stdout.read(), process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024, stdout, stderr, process.returncode


SERUMRNN = [str(Path(sys.executable).parent / "serumrnn")]


@pytest.fixture(scope="module")
def huge_input(tmp_path_factory) -> Path:
    """10 minutes, 8 channels, 192 kHz, 16-bit: 1.8 GB declared (sparse on disk)."""
    return corpus.sparse_long_wav(tmp_path_factory.mktemp("huge") / "ten minutes.wav", 600, 192000, 8)


@pytest.mark.slow
def test_suggest_on_a_ten_minute_8_channel_192k_file_stays_under_1_gib(huge_input, tmp_path):
    # The file as both input and target, and the whole session written out.
    peak, stdout, stderr, code = run_measured([*SERUMRNN, "suggest", str(huge_input), str(huge_input), "--json",
                                               "--out", str(tmp_path / "out")])
    assert code == 0, stderr
    # Reading the file whole would take 1.8 GB as int16 and twice that as float32.
    assert peak < GIB, f"suggest peaked at {peak / 2**20:.0f} MiB"


GENERATE = textwrap.dedent("""
    import sys
    from serumrnn.core.dataset import generate_dataset
    summary = generate_dataset(sys.argv[1], group="basic", presets=["saw"], chains_per_combo=int(sys.argv[2]),
                               seed=0, workers=1, progress=False, renders_per_shard=128)
    print(summary["renders"])
""")


@pytest.mark.slow
def test_generate_memory_does_not_grow_with_dataset_size(tmp_path):
    peaks = {}
    for chains in (1, 4):
        peak, stdout, stderr, code = run_measured([sys.executable, "-c", GENERATE, str(tmp_path / f"d{chains}"),
                                                   str(chains)])
        assert code == 0, stderr
        peaks[int(stdout)] = peak
    (small, small_peak), (large, large_peak) = sorted(peaks.items())
    assert large > 3.5 * small
    # Four times the renders, the same peak: shards are written and dropped one by one.
    assert large_peak < small_peak * 1.1 + 32 * 2**20, peaks
    assert large_peak < GIB

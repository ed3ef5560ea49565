"""Memory: ``suggest`` stays under 1 GiB resident on any input (a 10-minute, 8-channel,
192 kHz file is read only as far as needed), and ``generate``'s peak does not grow with
the dataset size (benchmarks/test_bench_memory.py measures larger sizes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import corpus
import pytest

GIB = 1024**3


# Prepended to a child's Python code: at exit it prints its own peak resident memory
# (VmHWM, the high-water mark of its address space, which starts afresh at exec). The
# rusage of wait4 would not do: Linux carries a parent's peak into a forked child's
# ru_maxrss, and pytest's own process is large.
REPORT_PEAK = ("import atexit, sys; atexit.register(lambda: print(next(line for line in open('/proc/self/status') "
               "if line.startswith('VmHWM:')), file=sys.stderr))\n")
CLI = "import sys\nsys.argv[0] = 'serumrnn'\nfrom serumrnn.cli.app import main\nmain()\n"


def run_measured(code: str, *args: str) -> tuple[int, str, str, int]:
    """Run Python ``code`` with ``args`` as its own process: ``(peak RSS bytes, stdout, stderr, exit code)``."""
    result = subprocess.run([sys.executable, "-c", REPORT_PEAK + code, *args], capture_output=True, text=True,
                            timeout=600)
    peak_kb = int(result.stderr.strip().splitlines()[-1].split()[1])
    return peak_kb * 1024, result.stdout, result.stderr, result.returncode


@pytest.fixture(scope="module")
def huge_input(tmp_path_factory) -> Path:
    """10 minutes, 8 channels, 192 kHz, 16-bit: 1.8 GB declared (sparse on disk)."""
    return corpus.sparse_long_wav(tmp_path_factory.mktemp("huge") / "ten minutes.wav", 600, 192000, 8)


@pytest.mark.slow
def test_suggest_on_a_ten_minute_8_channel_192k_file_stays_under_1_gib(huge_input, tmp_path):
    # The file as both input and target, and the whole session written out.
    peak, stdout, stderr, code = run_measured(CLI, "suggest", str(huge_input), str(huge_input), "--json",
                                              "--out", str(tmp_path / "out"))
    assert code == 0, stderr
    # Reading the file whole would take 1.8 GB as int16 and twice that as float32.
    assert peak < GIB, f"suggest peaked at {peak / 2**20:.0f} MiB"


# Arguments: out folder, chains per combo, presets of group basic ("all" or a comma list), renders per shard.
GENERATE = textwrap.dedent("""
    import sys
    from serumrnn.core.dataset import generate_dataset
    out, chains, presets, per_shard = sys.argv[1:5]
    summary = generate_dataset(out, group="basic", presets=None if presets == "all" else presets.split(","),
                               chains_per_combo=int(chains), seed=0, workers=1, progress=False,
                               renders_per_shard=int(per_shard))
    print(summary["renders"])
""")


@pytest.mark.slow
def test_generate_memory_does_not_grow_with_dataset_size(tmp_path):
    peaks = {}
    for chains in (1, 4):
        peak, stdout, stderr, code = run_measured(GENERATE, str(tmp_path / f"d{chains}"), str(chains), "saw", "128")
        assert code == 0, stderr
        peaks[int(stdout)] = peak
    (small, small_peak), (large, large_peak) = sorted(peaks.items())
    assert large > 3.5 * small
    # Four times the renders, the same peak: shards are written and dropped one by one.
    assert large_peak < small_peak * 1.1 + 32 * 2**20, peaks
    assert large_peak < GIB

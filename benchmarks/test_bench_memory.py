"""Peak resident memory (``extra_info["peak_rss_mib"]``) of ``generate`` at two dataset
sizes, and of ``suggest`` on a 10-minute, 8-channel, 192 kHz file; each run is its
own process, which reports its own high-water mark (VmHWM) at exit. The timing columns
are the wall time of that run.

``generate`` runs with one worker so that the one process does everything (render,
features, writes). It holds one shard's features at a time (at most 2,048 renders,
about 56 MB as float16), so its peak grows with the shard size up to that cap and then
not at all with the dataset size: 1, 4 and 16 chains per combo give 848, 3,380 and
13,508 renders (shards of 212, 845, and 2,042 + 1,335 renders).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import corpus  # noqa: E402  (the test corpus builder: the sparse 10-minute file)

from test_memory import CLI, GENERATE, run_measured  # noqa: E402  (peak RSS of a child, as the tests measure it)


def peak_rss_mib(code: str, *args: str) -> float:
    peak, _, stderr, exit_code = run_measured(code, *args)
    assert exit_code == 0, stderr[-2000:]
    return peak / 2**20


@pytest.mark.parametrize("chains_per_combo", [1, 4, 16])
def test_generate_peak_memory(benchmark, tmp_path, chains_per_combo):
    renders = 4 * (1 + chains_per_combo * (3**5 - 2**5))
    peak = benchmark.pedantic(
        lambda: peak_rss_mib(GENERATE, str(tmp_path / "data"), str(chains_per_combo), "all", "2048"),
        rounds=1, iterations=1)
    benchmark.extra_info.update(peak_rss_mib=round(peak, 1), renders=renders, items=renders, unit="renders")
    assert peak < 1024


def test_suggest_peak_memory_on_a_ten_minute_8_channel_192k_file(benchmark, tmp_path):
    huge = corpus.sparse_long_wav(tmp_path / "ten minutes.wav", 600, 192000, 8)
    peak = benchmark.pedantic(lambda: peak_rss_mib(CLI, "suggest", str(huge), str(huge), "--json"),
                              rounds=3, iterations=1)
    benchmark.extra_info.update(peak_rss_mib=round(peak, 1), file_bytes=huge.stat().st_size)
    assert peak < 1024

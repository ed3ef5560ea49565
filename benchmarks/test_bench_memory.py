"""Peak resident memory (``extra_info["peak_rss_mib"]``) of ``generate`` at two dataset
sizes, and of ``suggest`` on a 10-minute, 8-channel, 192 kHz file; each run is its
own process, measured with ``wait4``. The timing columns are the wall time of that run.

``generate`` runs with one worker so that the one process does everything (render,
features, writes). It holds one shard's features at a time (at most 2,048 renders,
about 56 MB as float16), so its peak grows with the shard size up to that cap and then
not at all with the dataset size: 1, 4 and 16 chains per combo give 848, 3,380 and
13,508 renders (shards of 212, 845, and 2,042 + 1,335 renders).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import corpus  # noqa: E402  (the test corpus builder: the sparse 10-minute file)

SERUMRNN = str(Path(sys.executable).parent / "serumrnn")
GENERATE = textwrap.dedent("""
    import sys
    from serumrnn.core.dataset import generate_dataset
    generate_dataset(sys.argv[1], group="basic", chains_per_combo=int(sys.argv[2]), seed=0, workers=1, progress=False)
""")


def peak_rss_mib(args: list[str]) -> float:
    """Run ``args`` to the end; its own peak resident memory in MiB."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, process.stderr.read().decode()[-2000:]
    return usage.ru_maxrss / 1024


@pytest.mark.parametrize("chains_per_combo", [1, 4, 16])
def test_generate_peak_memory(benchmark, tmp_path, chains_per_combo):
    renders = 4 * (1 + chains_per_combo * (3**5 - 2**5))
    peak = benchmark.pedantic(
        lambda: peak_rss_mib([sys.executable, "-c", GENERATE, str(tmp_path / "data"), str(chains_per_combo)]),
        rounds=1, iterations=1)
    benchmark.extra_info.update(peak_rss_mib=round(peak, 1), renders=renders, items=renders, unit="renders")
    assert peak < 1024


def test_suggest_peak_memory_on_a_ten_minute_8_channel_192k_file(benchmark, tmp_path):
    huge = corpus.sparse_long_wav(tmp_path / "ten minutes.wav", 600, 192000, 8)
    peak = benchmark.pedantic(lambda: peak_rss_mib([SERUMRNN, "suggest", str(huge), str(huge), "--json"]),
                              rounds=3, iterations=1)
    benchmark.extra_info.update(peak_rss_mib=round(peak, 1), file_bytes=huge.stat().st_size)
    assert peak < 1024

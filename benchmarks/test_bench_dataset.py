"""End-to-end dataset generation throughput: render + features + writes, renders/s.

Group ``basic`` with 2 chains per combo (4 presets, 1,692 renders, shards of 512 so
both workers stay busy); one round is a fresh directory. Process start-up is
included, so a long real run is a little faster than this figure.
"""

from __future__ import annotations

import shutil

import pytest

from serumrnn.core.dataset import generate_dataset

CONFIG = dict(group="basic", chains_per_combo=2, seed=0, renders_per_shard=512)


@pytest.mark.parametrize("workers", [1, 2])
def test_generation_throughput(benchmark, tmp_path, workers):
    counter = iter(range(100))

    def fresh_dir():
        out = tmp_path / f"round{next(counter)}"
        shutil.rmtree(out, ignore_errors=True)
        return (out,), {}

    def generate(out):
        return generate_dataset(out, workers=workers, progress=False, **CONFIG)

    # The warm-up round pays the one-off imports (scipy.signal, librosa, the forkserver).
    summary = benchmark.pedantic(generate, setup=fresh_dir, rounds=2, iterations=1, warmup_rounds=1)
    assert summary["rendered_now"] == summary["renders"] == 4 * (1 + 2 * (3**5 - 2**5))
    benchmark.extra_info.update(items=summary["renders"], unit="renders", workers=workers,
                                size_bytes=summary["size_bytes"])

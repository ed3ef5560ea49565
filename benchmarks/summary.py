"""Print the latest pytest-benchmark JSON: every benchmark (median ms, real-time factor,
throughput), then the headline figures of docs/design.md ("Performance goals") (render real-time factor,
features ms, generation renders/s, training samples/s, session step latency per system
and model size). ``--markdown`` prints the headline table as Markdown for the README."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.table import Table

SYSTEM_ORDER = ("rnn", "ni", "cnn", "random", "oracle", "cnn-1s")


def machine_line(data: dict) -> str:
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    return f"{cpu.get('brand_raw') or platform.processor() or 'CPU'}, {cpu.get('count', '?')} cores"


def _base_name(bench: dict) -> str:
    return bench["name"].split("[")[0]


def headline_rows(data: dict) -> Iterator[tuple[str, str, str]]:
    """``(what, figure, detail)`` rows, in the order of docs/design.md, "Performance goals"."""
    benches = data["benchmarks"]

    def median(bench: dict) -> float:
        return bench["stats"]["median"]

    for bench in benches:
        info = bench.get("extra_info", {})
        if _base_name(bench) == "test_render_chain" and info.get("effects") == 5:
            yield "built-in rack render, five effects", f"{info['audio_seconds'] / median(bench):,.0f}x real time", \
                f"{median(bench) * 1000:.1f} ms per 1 s note"
        if _base_name(bench) == "test_render_same_chain" and info.get("effects") == 5 and info.get("rack") != "builtin":
            yield f"{info['rack']} rack render, five effects", \
                f"{info['audio_seconds'] / median(bench):,.1f}x real time", f"{median(bench) * 1000:.0f} ms per 1 s note"
    for bench in benches:
        if _base_name(bench) == "test_feature_extraction":
            yield "features (dB mel + MFCC), 1 s", f"{median(bench) * 1000:.1f} ms", ""
        if _base_name(bench) == "test_all_six_metrics":
            yield "all six metrics, 1 s", f"{median(bench) * 1000:.1f} ms", ""
    for bench in benches:
        info = bench.get("extra_info", {})
        if _base_name(bench) == "test_generation_throughput":
            yield f"dataset generation, {info.get('workers')} worker(s)", \
                f"{info['items'] / median(bench):,.0f} renders/s", "render + features + write"
    for bench in benches:
        info = bench.get("extra_info", {})
        if _base_name(bench) == "test_training_throughput":
            yield f"training {info.get('model')} ({info.get('size')}, {info.get('device')})", \
                f"{info['items'] / median(bench):,.0f} samples/s", f"batch {info['items']}"
    for bench in benches:
        info = bench.get("extra_info", {})
        if _base_name(bench) == "test_one_step":
            yield f"session step, rnn ({info.get('size')})", f"{median(bench) * 1000:.0f} ms", \
                "select + predict + render + features + metrics"
        if _base_name(bench) == "test_hybrid_step":
            yield f"session step, rnn + search, {info.get('budget')} ({info.get('size')})", \
                f"{median(bench) * 1000:.0f} ms", f"{info.get('renders', 0):.0f} renders: candidates, then Nelder-Mead"
        if _base_name(bench) == "test_revision":
            yield "revision of the kept steps (once per searched session)", f"{median(bench) * 1000:.0f} ms", \
                f"{info.get('renders', 0)} renders: leave out, swap, retune"
    sessions = [b for b in benches if _base_name(b) == "test_whole_session" and b.get("extra_info", {}).get("steps")]
    order = {name: i for i, name in enumerate(SYSTEM_ORDER)}
    sessions.sort(key=lambda b: (b["extra_info"].get("size", ""), order.get(b["extra_info"].get("selector"), 99)))
    for bench in sessions:
        info = bench["extra_info"]
        yield f"step latency, {info['selector']} ({info.get('size')})", \
            f"{median(bench) * 1000 / info['steps']:.0f} ms per step", \
            f"session of {info['steps']} steps: {median(bench) * 1000:.0f} ms"
    for bench in benches:
        info = bench.get("extra_info", {})
        if _base_name(bench) == "test_serve_session":
            yield f"web app session after upload, {info['selector']} (bundle {info['bundle']}, " \
                f"search {info.get('search', 'default')})", \
                f"{median(bench) * 1000:.0f} ms", "two WAVs uploaded -> page written (warm models)"


def main(path: str, markdown: bool = False) -> None:
    data = json.load(open(path))
    if markdown:
        print(f"| measure ({machine_line(data)}) | median | detail |\n|---|---:|---|")
        for what, figure, detail in headline_rows(data):
            print(f"| {what} | {figure} | {detail} |")
        return
    table = Table(title=f"serumrnn benchmarks (medians) on {machine_line(data)}")
    for column in ("benchmark", "median ms", "real-time factor", "throughput"):
        table.add_column(column, justify="right" if column != "benchmark" else "left")
    for bench in data["benchmarks"]:
        median_s = bench["stats"]["median"]
        info = bench.get("extra_info", {})
        rtf = f"{info['audio_seconds'] / median_s:,.0f}x" if "audio_seconds" in info else ""
        throughput = ""
        if "items" in info:
            throughput = f"{info['items'] / median_s:,.0f} {info.get('unit', 'items')}/s"
        table.add_row(escape(bench["name"]), f"{median_s * 1000:.2f}", rtf, throughput)
    console = Console()
    console.print(table)
    headline = Table(title=f"Headline figures on {machine_line(data)}")
    for column in ("measure", "median", "detail"):
        headline.add_column(column, justify="right" if column == "median" else "left")
    for row in headline_rows(data):
        headline.add_row(*map(escape, row))
    console.print(headline)


if __name__ == "__main__":
    arguments = [arg for arg in sys.argv[1:] if arg != "--markdown"]
    main(arguments[0] if arguments else "benchmarks/results/latest.json", markdown="--markdown" in sys.argv[1:])

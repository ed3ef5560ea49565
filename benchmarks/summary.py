"""Print a table of the latest pytest-benchmark JSON: median ms and real-time factor."""

from __future__ import annotations

import json
import platform
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def main(path: str) -> None:
    data = json.load(open(path))
    machine = data.get("machine_info", {})
    table = Table(title=f"serumrnn benchmarks (medians) on {machine.get('cpu', {}).get('brand_raw', platform.processor())}, "
                        f"{machine.get('cpu', {}).get('count', '?')} cores")
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
    Console().print(table)


if __name__ == "__main__":
    main(sys.argv[1])

"""Tables as text: Markdown and CSV from lists of flat rows, and a line on the machine
that made them. The result objects of ``core.evaluation``, ``core.unseen`` and
``core.budget`` write their files with these, so library callers get the same files as
the command line (which is why this lives in core, not in cli)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def format_cell(value: Any, digits: int = 2) -> str:
    """A table cell: ``-`` for a missing or non-finite number, floats to ``digits``."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping], columns: Sequence[tuple[str, str]], digits: int = 2) -> str:
    """A GitHub Markdown table of ``rows`` with ``(key, header)`` columns; columns that
    hold text are left-aligned, numbers right-aligned."""
    text_columns = {key for key, _ in columns if any(isinstance(row.get(key), str) for row in rows)}
    lines = ["| " + " | ".join(header for _, header in columns) + " |",
             "|" + "|".join("---" if key in text_columns else "---:" for key, _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(key), digits) for key, _ in columns) + " |")
    return "\n".join(lines)


def csv_text(rows: Sequence[Mapping]) -> str:
    """``rows`` as CSV with a header from the first row's keys (empty for no rows); a
    list cell becomes its numbers separated by spaces."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: " ".join(f"{item:g}" for item in value) if isinstance(value, list) else value
                          for key, value in row.items()} for row in rows)
    return buffer.getvalue()


def machine_text() -> str:
    """The machine a measurement ran on: architecture, cores and (where known) the load."""
    import platform

    load = f", load average {os.getloadavg()[0]:.1f} at the start" if hasattr(os, "getloadavg") else ""
    return f"{platform.machine()}, {os.cpu_count()} CPU cores{load}"

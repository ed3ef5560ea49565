"""Progress on the terminal: core's progress reports (``core.runtime.ProgressReporter``)
drawn as rich bars on stderr, so stdout stays free for ``--json``."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskID, TaskProgressColumn, TextColumn,
    TimeElapsedColumn, TimeRemainingColumn,
)
from rich.text import Text

from serumrnn.core.runtime import SILENT, ProgressReporter


class _RateColumn(ProgressColumn):
    """The task's speed as core measured it (e.g. renders of this run per second)."""

    def render(self, task) -> Text:
        unit = task.fields.get("unit")
        rate = task.fields.get("rate")
        if not unit or rate is None:
            return Text("")
        return Text(f"{rate:,.0f} {unit}/s")


class _BarTask:
    def __init__(self, bars: Progress, task: TaskID, transient: bool) -> None:
        self._bars, self._task, self._transient = bars, task, transient

    def advance(self, count: int = 1, *, rate: float | None = None) -> None:
        if rate is None:
            self._bars.advance(self._task, count)
        else:
            self._bars.update(self._task, advance=count, rate=rate)

    def close(self) -> None:
        if self._transient:
            self._bars.remove_task(self._task)
        else:
            self._bars.stop_task(self._task)


class RichProgress:
    """A ``ProgressReporter`` that draws bars and prints notes on stderr while the
    ``with`` block runs."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._bars = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            _RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
        )

    def __enter__(self) -> "RichProgress":
        self._bars.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._bars.stop()

    def task(self, description: str, total: int, *, done: int = 0, unit: str = "",
             transient: bool = False) -> _BarTask:
        task = self._bars.add_task(description, total=total, completed=done, unit=unit, rate=None)
        return _BarTask(self._bars, task, transient)

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def terminal_progress(enabled: bool) -> contextlib.AbstractContextManager[ProgressReporter]:
    """``with terminal_progress(enabled) as progress``: rich bars when ``enabled``, else nothing shown."""
    return RichProgress() if enabled else contextlib.nullcontext(SILENT)

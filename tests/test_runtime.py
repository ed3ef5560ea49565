"""``core.runtime``: locks refuse a second holder in one sentence instead of hanging and
are dropped when their holder dies; atomic writes leave the old file or the new one,
never half of one; worker pools keep task order, report progress and pass errors on;
progress reports reach the reporter given, and nothing prints without one."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from serumrnn.core.errors import DatasetError, OutputError
from serumrnn.core.runtime import (
    SILENT, WorkerPool, file_lock, progress_reporter, report_from_worker, staged_output_dir, write_bytes_atomic,
    write_json_atomic,
)


class Busy(Exception):
    pass


# -- locks ------------------------------------------------------------------------------------
def test_a_second_lock_holder_is_refused_at_once(tmp_path):
    lock = tmp_path / ".lock"
    with file_lock(lock, busy=Busy("held")):
        started = time.monotonic()
        with pytest.raises(Busy, match="held"):
            with file_lock(lock, busy=Busy("held")):
                pass
        assert time.monotonic() - started < 2
    with file_lock(lock, busy=Busy("held")):  # released on leaving the block
        pass
    assert lock.exists()  # the lock file stays; deleting it would race another taker


def test_a_waiting_lock_gets_it_once_released_and_gives_up_after_its_wait(tmp_path):
    lock = tmp_path / ".lock"
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with file_lock(lock, busy=Busy("held")):
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(Busy):
            with file_lock(lock, busy=Busy("held"), wait_s=0.3):
                pass
        threading.Timer(0.3, release.set).start()
        with file_lock(lock, busy=Busy("held"), wait_s=10):
            assert release.is_set()
    finally:
        release.set()
        holder.join()


def test_a_lock_held_by_another_process_is_refused_and_dropped_when_it_dies(tmp_path):
    lock = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from serumrnn.core.runtime import file_lock
        with file_lock({str(lock)!r}, busy=RuntimeError("busy")):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DatasetError, match="^Another one is writing"):
            with file_lock(lock, busy=DatasetError("Another one is writing; wait.")):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up of its own
        holder.wait()
    with file_lock(lock, busy=Busy("still held")):
        pass


# -- atomic writes --------------------------------------------------------------------------------
def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "data.json"
    write_json_atomic(path, {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2, sort_keys=True) + "\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # like any file the user makes, not private

    def full_disk(self, data):  # half the bytes reach the disk, then it is full
        with open(self, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OutputError, match="Could not write .*the disk is full"):
        write_bytes_atomic(path, b"x" * 1000, ".json")
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]  # and no temporary


def test_staged_output_dir_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_output_dir(out) as staging:
            (staging / "a.txt").write_text("half")
            raise RuntimeError("the work failed")
    assert list(tmp_path.iterdir()) == []
    with staged_output_dir(out) as staging:
        (staging / "a.txt").write_text("whole")
        assert not out.exists()
    assert [p.name for p in out.iterdir()] == ["a.txt"]
    with pytest.raises(OutputError, match="already exists and is not empty"):
        with staged_output_dir(out):
            pass


# -- worker pools ---------------------------------------------------------------------------------
def _square_and_report(number: int) -> int:
    report_from_worker(number)
    if number < 0:
        raise ValueError(f"negative {number}")
    return number * number


def test_worker_pool_keeps_task_order_reports_progress_and_raises_errors():
    reported, finished = [], []
    with WorkerPool(2) as pool:
        results = pool.run(_square_and_report, [3, 1, 4, 1, 5], done=finished.append, progress=reported.append)
        assert results == [9, 1, 16, 1, 25]
        assert sorted(finished) == [0, 1, 2, 3, 4] and sorted(reported) == [1, 1, 3, 4, 5]
        with pytest.raises(ValueError, match="negative -2"):
            pool.run(_square_and_report, [2, -2, 7])


# -- progress -------------------------------------------------------------------------------------
def test_progress_goes_to_the_reporter_given_or_nowhere():
    class Recorder:
        def __init__(self):
            self.lines = []

        def task(self, description, total, *, done=0, unit="", transient=False):
            return SILENT.task(description, total)

        def note(self, text):
            self.lines.append(text)

    recorder = Recorder()
    assert progress_reporter(recorder) is recorder
    for nothing in (None, False, True):
        assert progress_reporter(nothing) is SILENT
    SILENT.task("x", 3, done=1, unit="renders").advance(2, rate=10.0)
    SILENT.note("never shown")

"""What serumrnn's long-running work shares: progress reporting, worker process pools,
single-threaded maths in workers, atomic writes and file locks (see docs/design.md).

Progress: core reports through a ``ProgressReporter`` it is given and never prints; the
command line draws the reports with rich (``cli/progress.py``); ``SILENT`` drops them.

Files: a result appears under its final name only once complete (``atomic_output``,
``write_bytes_atomic``, ``staged_output_dir``), readable like any file the user makes.
Locks are ``filelock`` locks (POSIX and Windows); the OS drops one when its holder dies.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from serumrnn.core.errors import OutputError

__all__ = [
    "SILENT", "ProgressReporter", "ProgressTask", "WorkerPool", "atomic_output", "check_output_dir", "file_lock",
    "new_folder_mode", "progress_reporter", "report_from_worker", "single_threaded", "staged_output_dir",
    "write_bytes_atomic", "write_json_atomic",
]


# -- progress ------------------------------------------------------------------------------
class ProgressTask(Protocol):
    """One piece of work with a known size."""

    def advance(self, count: int = 1, *, rate: float | None = None) -> None:
        """``count`` more units done; ``rate``: the current speed in the task's unit per second."""

    def close(self) -> None:
        """The task is over (a transient task disappears)."""


class ProgressReporter(Protocol):
    """Where core sends its progress: tasks with a size, and one-line notes."""

    def task(self, description: str, total: int, *, done: int = 0, unit: str = "",
             transient: bool = False) -> ProgressTask:
        """Start a task of ``total`` units, ``done`` of them already; ``unit`` names what
        a ``rate`` counts (no rate is shown without one)."""

    def note(self, text: str) -> None:
        """A line for the person watching (an epoch's losses, a resumed run)."""


class _SilentTask:
    def advance(self, count: int = 1, *, rate: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class _SilentReporter:
    def task(self, description: str, total: int, *, done: int = 0, unit: str = "",
             transient: bool = False) -> ProgressTask:
        return _SilentTask()

    def note(self, text: str) -> None:
        pass


SILENT: ProgressReporter = _SilentReporter()


def progress_reporter(progress: ProgressReporter | bool | None) -> ProgressReporter:
    """The reporter to use for a ``progress`` argument: a reporter as it is; ``None``,
    ``False`` (and ``True``, from callers written when core drew its own bars) report nothing."""
    if progress is None or isinstance(progress, bool):
        return SILENT
    return progress


# -- threads ---------------------------------------------------------------------------------
def single_threaded():
    """Single-threaded BLAS: no oversubscription with one worker per core, and the same
    arithmetic in every worker and backend."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn (librosa)
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


# -- worker pools ------------------------------------------------------------------------------
_progress_queue = None  # in a pool's worker: where report_from_worker sends counts


def report_from_worker(count: int) -> None:
    """In a ``WorkerPool`` worker: ``count`` more units done (passed to the pool's
    ``progress``); anywhere else it does nothing."""
    if _progress_queue is not None:
        _progress_queue.put(count)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process not yet reaped by its parent is a zombie: gone all the same
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _exit_when_orphaned(owner_pid: int, interval_s: float = 0.5) -> None:
    """A forkserver worker's parent is the forkserver, which outlives a SIGKILLed owner:
    without this, workers would go on working (and writing files) for a dead run."""
    while _process_alive(owner_pid):
        time.sleep(interval_s)
    os._exit(1)


def _start_worker(progress_queue, owner_pid: int | None, initializer, initargs: tuple) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    if owner_pid is not None:
        import threading

        threading.Thread(target=_exit_when_orphaned, args=(owner_pid,), daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


class WorkerPool:
    """A pool of worker processes, used as a context manager.

    Workers never fork the calling process (its threads and locks): a forkserver that
    imported ``preload`` once forks them warm, or (without forkserver, e.g. on Windows)
    they are spawned. ``initializer(*initargs)`` runs once in each worker. Forkserver
    workers exit when the process that made the pool dies, even by SIGKILL.
    """

    def __init__(self, workers: int, *, preload: Sequence[str] = (), initializer: Callable | None = None,
                 initargs: tuple = ()) -> None:
        self.workers = workers
        self.preload = tuple(preload)
        self.initializer = initializer
        self.initargs = initargs
        self._executor = None
        self._queue = None

    def __enter__(self) -> "WorkerPool":
        import concurrent.futures
        import multiprocessing

        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(list(self.preload))
            owner: int | None = os.getpid()
        else:  # pragma: no cover - Windows: spawned workers are the caller's children
            context = multiprocessing.get_context("spawn")
            owner = None
        # A SimpleQueue writes in the worker's own thread, so a report is in the pipe before
        # the task's result is sent and the last drain sees it (a Queue's feeder thread may lag).
        self._queue = context.SimpleQueue()
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=context, initializer=_start_worker,
            initargs=(self._queue, owner, self.initializer, self.initargs))
        return self

    def __exit__(self, *exc_info) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._queue.close()

    def run(self, function: Callable[[Any], Any], tasks: Sequence[Any], *,
            done: Callable[[int], None] | None = None, progress: Callable[[int], None] | None = None) -> list:
        """``function(task)`` for every task in the workers; the results in task order.
        ``done(i)`` is called as task ``i`` finishes, ``progress(n)`` with what workers
        reported through ``report_from_worker``. A task's error is raised here, and the
        tasks not started yet are cancelled."""
        import concurrent.futures

        def drain() -> None:
            while not self._queue.empty():
                count = self._queue.get()
                if progress is not None:
                    progress(count)

        futures = {self._executor.submit(function, task): index for index, task in enumerate(tasks)}
        results: list[Any] = [None] * len(tasks)
        waiting = set(futures)
        try:
            while waiting:
                finished, waiting = concurrent.futures.wait(
                    waiting, timeout=0.25, return_when=concurrent.futures.FIRST_COMPLETED)
                drain()
                for future in finished:
                    results[futures[future]] = future.result()
                    if done is not None:
                        done(futures[future])
        except BaseException:
            for future in waiting:
                future.cancel()
            raise
        drain()
        return results


# -- files -------------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_folder_mode() -> int:
    """The mode of a folder the user makes (``tempfile`` makes private ones)."""
    return 0o777 & ~_umask()


def _temporary_affixes(target: Path, suffix: str | None) -> tuple[str, str]:
    """Prefix and suffix of the temporary file ``atomic_output`` writes beside ``target``."""
    return f".{target.stem}.", suffix or target.suffix or ".tmp"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success,
    delete it on any failure. OS errors become ``OutputError`` with one sentence."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError(f"Output path '{target}' is a directory; give a file name.")
    if not parent.exists():
        raise OutputError(f"Output folder '{parent}' does not exist; create it or choose another path.")
    try:
        prefix, temp_suffix = _temporary_affixes(target, suffix)
        handle, temp_name = tempfile.mkstemp(prefix=prefix, suffix=temp_suffix, dir=parent)
        os.close(handle)
    except OSError as exc:
        raise OutputError(f"Cannot write to '{parent}' ({exc.strerror}); choose a writable location.") from None
    temp = Path(temp_name)
    try:
        yield temp
        if temp.exists():  # mkstemp makes it private; the result should read like any file the user makes
            os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise OutputError(f"Could not write '{target}' ({what}); free space or choose another location.") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: str | os.PathLike, suffix: str | None = None) -> None:
    """Delete the temporary files ``atomic_output`` made beside ``path`` that a killed
    process left behind (it cannot delete them itself). Only for a path no other process
    is writing at the time."""
    target = Path(path)
    prefix, temp_suffix = _temporary_affixes(target, suffix)
    pattern = f"{glob.escape(prefix)}*{glob.escape(temp_suffix)}"
    for temp in target.parent.glob(pattern):
        temp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, suffix: str | None = None) -> None:
    """Write ``data`` to ``path`` all or nothing (see ``atomic_output``)."""
    with atomic_output(Path(path), suffix=suffix) as temp:
        temp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, data: Any, *, sort_keys: bool = False, suffix: str | None = None) -> None:
    """``data`` as indented JSON (one trailing newline) in ``path``, all or nothing."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=sort_keys) + "\n").encode(), suffix)


def check_output_dir(out_dir: str | os.PathLike, *, replace: bool = False) -> Path:
    """Refuse an --out folder that holds files (unless ``replace``) or whose parent is
    missing (checked before the work runs, so a bad path fails at once)."""
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise OutputError(f"Output path '{target}' is a file; choose a folder for --out.")
    if target.exists() and not replace and any(target.iterdir()):
        raise OutputError(f"Output folder '{target}' already exists and is not empty; choose a new --out folder.")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"Output folder's parent '{parent}' does not exist; create it or choose another --out.")
    return target


@contextlib.contextmanager
def staged_output_dir(out_dir: str | os.PathLike, *, replace: bool = False, what: str = "the results") -> Iterator[Path]:
    """Yield an empty staging folder beside ``out_dir``; once the block succeeds it
    becomes ``out_dir`` (all or nothing). On any error the staging folder is removed and
    ``out_dir`` is left as it was. ``replace`` swaps out an existing folder only at the end."""
    target = check_output_dir(out_dir, replace=replace)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
        os.chmod(staging, new_folder_mode())
    except OSError as exc:
        raise OutputError(f"Cannot write to '{parent}' ({exc.strerror}); choose a writable --out folder.") from None
    try:
        yield staging
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=parent))
            os.replace(target, old / "previous")
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"Could not write {what} to '{target}' ({exc.strerror}); free space or choose another --out.") from None
    except OutputError as exc:  # name the folder the user asked for, not the staging folder
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(str(exc).replace(str(staging), str(target))) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, busy: Exception, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the lock file ``path`` exclusively. If another holder (process, or another
    lock on it in this process) keeps it longer than ``wait_s`` seconds (0: do not
    wait), raise ``busy``, a one-sentence error, instead of waiting on."""
    from filelock import FileLock, Timeout

    lock = FileLock(os.fspath(path), timeout=wait_s)
    try:
        lock.acquire()
    except Timeout:
        raise busy from None
    try:
        yield
    finally:
        lock.release()


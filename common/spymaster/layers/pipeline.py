"""The per-date job (bronze → silver → gold) and the backfill driver around it.

A date's job is independent of every other date's, so dates run in a process pool; the vector
table has exactly one writer, so indexing runs once, after the date jobs, in the driver.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import pyarrow as pa
from threadpoolctl import threadpool_limits

from spymaster.errors import SpymasterError
from spymaster.lake import Lake, is_committed, paths
from spymaster.lake.paths import Layer
from spymaster.layers import bronze, gold, silver  # imported by the parent: forked workers inherit them
from spymaster.layers import streams as streams_job
from spymaster.settings import PipelineSettings, StorageSettings

STAGES = ("bronze", "silver", "gold", "streams")

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Pool-worker initializer: end this worker the moment its parent dies, however it dies.

    A ``kill -9`` of ``spymaster run`` must not leave workers committing dates on their own and
    then blocking forever on a result queue nobody reads. Linux delivers ``SIGKILL`` to the
    worker when the parent exits (``PR_SET_PDEATHSIG``); elsewhere, and as a second line, a
    watchdog thread notices the parent is gone within half a second.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


@dataclass
class DateResult:
    date: dt.date
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None
    failed_stage: str | None = None
    options: int = 0
    """How many of the date's options raw files were there (0: dealer features are null)."""
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per stage run: (wall seconds, CPU seconds of the worker's process), for the backfill's figures."""

    @property
    def ok(self) -> bool:
        return self.error is None


def landed_options(lake: Lake, date: dt.date) -> list[paths.RawKind]:
    """The date's options raw files that have landed (none is a futures-only date)."""
    return [k for k in paths.OPTIONS_RAW if lake.exists(paths.raw_file(k, date))]


def is_built(lake: Lake, date: dt.date) -> bool:
    """Gold is committed from the raw files there now: every landed raw file's bronze is current
    (a replaced file, or options landing after a futures-only run, make the date stale)."""
    from spymaster.layers import bronze

    if not is_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, date):
        return False
    kinds = [*paths.REQUIRED_RAW, *landed_options(lake, date)]
    return all(bronze.is_current(lake, k, date) for k in kinds)


def run_date(
    storage: StorageSettings,
    date: dt.date,
    *,
    force: bool = False,
    settings: PipelineSettings | None = None,
    allow_shrink: bool = False,
    writers: int = bronze.WRITERS,
) -> DateResult:
    """Bring one date to gold and its streams, skipping layers already committed (unless ``force``).

    ``writers``: bronze's parallel Parquet writers (:func:`run` gives each worker its share of the cores).

    Never raises for bad data: the failure is reported in the result with the stage it hit, so
    a backfill continues with the other dates.
    """
    lake = Lake(storage)
    res = DateResult(date)
    stage = "bronze"
    clock = (time.perf_counter(), time.process_time())

    def lap() -> None:
        nonlocal clock
        now = (time.perf_counter(), time.process_time())
        res.timings[stage] = (now[0] - clock[0], now[1] - clock[1])
        clock = now

    try:
        missing = [k for k in paths.REQUIRED_RAW if not lake.exists(paths.raw_file(k, date))]
        if missing:
            names = ", ".join(f"{k.product.value} {k.schema}" for k in missing)
            raise SpymasterError(f"raw files not landed: {names}", date=date)
        # Options are optional: whatever of them has landed is used, the rest leaves dealer
        # features null. Options landing later make their bronze stale, so the date re-runs.
        kinds = [*paths.REQUIRED_RAW, *landed_options(lake, date)]
        todo = [k for k in kinds if force or not bronze.is_current(lake, k, date)]
        res.options = len(kinds) - len(paths.REQUIRED_RAW)
        for kind in todo:
            bronze.build(lake, kind, date, allow_shrink=allow_shrink, writers=writers)
        (res.done if todo else res.skipped).append("bronze")
        lap()

        stage = "silver"
        force = force or bool(todo)  # new bronze makes the layers above it stale
        if force or not is_committed(lake, Layer.SILVER, paths.STATE_TABLE, date):
            silver.build(lake, date, settings, allow_shrink=allow_shrink)
            res.done.append("silver")
        else:
            res.skipped.append("silver")
        lap()

        stage = "gold"
        if force or not is_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, date):
            gold.build(lake, date, allow_shrink=allow_shrink)
            res.done.append("gold")
        else:
            res.skipped.append("gold")
        lap()

        stage = "streams"  # scaled on earlier dates' silver: stale once one of them changes
        if force or not streams_job.is_current(lake, date):
            streams_job.build(lake, date, allow_shrink=True)
            res.done.append("streams")
        else:
            res.skipped.append("streams")
        lap()
    except SpymasterError as exc:
        res.error, res.failed_stage = str(exc), stage
    except OSError as exc:  # storage outside the lake API (temp space, the vector store)
        res.error, res.failed_stage = f"storage error: {exc.strerror or exc} [date={date}]", stage
    return res


def limit_threads(threads: int) -> Callable[[], None]:
    """Arrow's CPU and I/O pools and BLAS held to ``threads`` in this process; returns the undo."""
    cpu, io = pa.cpu_count(), pa.io_thread_count()
    blas = threadpool_limits(limits=threads)
    pa.set_cpu_count(threads)
    pa.set_io_thread_count(threads)

    def undo() -> None:
        pa.set_cpu_count(cpu)
        pa.set_io_thread_count(io)
        blas.restore_original_limits()

    return undo


def writers_for(threads: int | None, workers: int = 1) -> int:
    """Bronze's Parquet writers for one of ``workers`` workers held to ``threads`` threads
    (``None``: its share of the cores; ``1``: bronze writes on its caller's thread, ``0``)."""
    if threads is None:
        return max(1, (os.cpu_count() or 1) // max(1, workers))
    return 0 if threads == 1 else threads


def _worker_init(parent: int, threads: int | None) -> None:
    """Pool-worker initializer: die with the parent, and keep to ``threads`` threads if given."""
    die_with_parent(parent)
    if threads is not None:
        limit_threads(threads)


def run(
    storage: StorageSettings,
    dates: Sequence[dt.date],
    *,
    workers: int = 1,
    force: bool = False,
    on_result: Callable[[DateResult], None] | None = None,
    allow_shrink: bool = False,
    threads: int | None = None,
) -> list[DateResult]:
    """Run the per-date jobs, ``workers`` at a time; results come back in date order.

    ``threads`` (:attr:`~spymaster.settings.WorkerSettings.worker_threads`): ``None`` gives each
    worker's bronze its share of the cores as Parquet writers (more threads than cores would only
    add switching: one worker on two cores writes two files at once, two write one each); a number
    holds each worker to that many threads (``1``: bronze on its caller's thread alone, Arrow and
    BLAS pools of one), as a per-date Lambda with that many vCPUs would be.
    """
    results: list[DateResult] = []
    writers = writers_for(threads, workers)
    if workers <= 1:
        undo = limit_threads(threads) if threads is not None else None
        try:
            for d in dates:
                r = run_date(storage, d, force=force, allow_shrink=allow_shrink, writers=writers)
                results.append(r)
                if on_result:
                    on_result(r)
        finally:
            if undo is not None:
                undo()
    else:
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_worker_init, initargs=(os.getpid(), threads)
        ) as pool:
            futs = [
                pool.submit(run_date, storage, d, force=force, allow_shrink=allow_shrink, writers=writers)
                for d in dates
            ]
            for f in as_completed(futs):
                try:
                    r = f.result()
                except Exception as exc:  # a worker died (OOM, signal): report its date, go on
                    r = DateResult(dates[futs.index(f)], error=f"worker failed: {exc!r}", failed_stage="?")
                results.append(r)
                if on_result:
                    on_result(r)
        # Dates ran out of order: a date's streams may predate an earlier date's silver.
        streams_job.refresh(Lake(storage), [r.date for r in results if r.ok])
    return sorted(results, key=lambda r: r.date)

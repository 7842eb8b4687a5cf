"""The per-date job (bronze → silver → gold) and the backfill driver around it.

A date's job is independent of every other date's, so dates run in a process pool; the vector
table has exactly one writer, so indexing runs once, after the date jobs, in the driver.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

from spymaster.errors import SpymasterError
from spymaster.lake import Lake, is_committed, paths
from spymaster.lake.paths import Layer
from spymaster.layers import bronze, gold, silver  # imported by the parent: forked workers inherit them
from spymaster.settings import PipelineSettings, StorageSettings

STAGES = ("bronze", "silver", "gold")


@dataclass
class DateResult:
    date: dt.date
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None
    failed_stage: str | None = None
    options: int = 0
    """How many of the date's options raw files were there (0: dealer features are null)."""

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
) -> DateResult:
    """Bring one date to gold, skipping layers already committed (unless ``force``).

    Never raises for bad data: the failure is reported in the result with the stage it hit, so
    a backfill continues with the other dates.
    """
    lake = Lake(storage)
    res = DateResult(date)
    stage = "bronze"
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
            bronze.build(lake, kind, date)
        (res.done if todo else res.skipped).append("bronze")

        stage = "silver"
        force = force or bool(todo)  # new bronze makes the layers above it stale
        if force or not is_committed(lake, Layer.SILVER, paths.STATE_TABLE, date):
            silver.build(lake, date, settings)
            res.done.append("silver")
        else:
            res.skipped.append("silver")

        stage = "gold"
        if force or not is_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, date):
            gold.build(lake, date)
            res.done.append("gold")
        else:
            res.skipped.append("gold")
    except SpymasterError as exc:
        res.error, res.failed_stage = str(exc), stage
    return res


def run(
    storage: StorageSettings,
    dates: Sequence[dt.date],
    *,
    workers: int = 1,
    force: bool = False,
    on_result: Callable[[DateResult], None] | None = None,
) -> list[DateResult]:
    """Run the per-date jobs, ``workers`` at a time; results come back in date order."""
    results: list[DateResult] = []
    if workers <= 1:
        for d in dates:
            r = run_date(storage, d, force=force)
            results.append(r)
            if on_result:
                on_result(r)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(run_date, storage, d, force=force) for d in dates]
            for f in as_completed(futs):
                r = f.result()
                results.append(r)
                if on_result:
                    on_result(r)
    return sorted(results, key=lambda r: r.date)

"""Lambda: committed gold → the LanceDB vector table (its only writer: reserved concurrency 1).

Two ways in:

* an SQS batch from the gold-committed FIFO queue (one message group, so batches arrive in commit
  order): each date is upserted with :func:`spymaster.layers.index.index_date`; a failed date fails
  itself and the rest of the batch (partial batch response), which SQS redelivers;
* ``{"start": …, "end": …, "after": …}`` from the backfill state machine: committed gold dates in
  the range, in date order, for as long as the invocation has time; ``{"done": false, "next": d}``
  asks to be called again after ``d``.

Normalisation uses the statistics of *earlier* committed dates, so when a date arrives after later
ones were indexed, those later dates (within the statistics window) are re-checked too:
:func:`~spymaster.layers.index.index_date` rewrites only the ones whose statistics changed.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from functions.shared import Lazy, events
from functions.shared.events import GoldCommitted, IndexRangeRequest
from spymaster import vectors
from spymaster.lake import Lake, committed_dates, is_committed, paths
from spymaster.lake.paths import Layer
from spymaster.layers import index, models
from spymaster.layers import streams as streams_job
from spymaster.layers.index import IndexResult
from spymaster.settings import StorageSettings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "spymaster-indexer"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spymaster"))


class IndexerSettings(BaseSettings):
    """The function's configuration (``SPYMASTER_`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="SPYMASTER_", extra="ignore")

    index_reserve_seconds: float = Field(default=120.0, ge=0)
    """A range invocation stops starting new dates when less time than this is left."""
    stats_window_days: int = Field(default=vectors.DEFAULT_WINDOW_DAYS, ge=0)


def indexed_dates(lake: Lake) -> list[dt.date]:
    """Dates with an index marker (what the vector table holds)."""
    return sorted(paths.date_from_partition(p) for p in lake.list_files(paths.INDEX_MARKERS))


def index_committed(lake: Lake, date: dt.date, window_days: int) -> list[IndexResult]:
    """Index one committed date, then re-check the indexed dates whose statistics it may change."""
    if not is_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, date):
        logger.warning(
            "gold is not committed (withdrawn since?); nothing to index", extra={"date": str(date)}
        )
        return []
    out = [index.index_date(lake, date)]
    later = [d for d in indexed_dates(lake) if d > date][:window_days]
    out += [index.index_date(lake, d) for d in later]
    return out


def index_range(
    lake: Lake, request: IndexRangeRequest, window_days: int, has_time: Callable[[], bool]
) -> dict[str, Any]:
    """Committed dates of the range after ``request.after``, in order, while ``has_time()`` (at
    least one per call, so a loop of calls always advances)."""
    todo = [
        d
        for d in committed_dates(lake, Layer.GOLD, paths.EPISODES_TABLE)
        if request.start <= d <= request.end and (request.after is None or d > request.after)
    ]
    results: list[IndexResult] = []
    for d in todo:
        if results and not has_time():
            break
        results.append(index.index_date(lake, d))
    done = len(results) == len(todo)
    if done and todo:  # dates after the range whose statistics now include it
        later = [d for d in indexed_dates(lake) if d > todo[-1]][:window_days]
        results += [index.index_date(lake, d) for d in later]
    return {"done": done, "next": None if done else results[-1].date.isoformat(), "results": results}


def _count(results: list[IndexResult]) -> tuple[int, int]:
    changed = [r for r in results if not r.skipped]
    metrics.add_metric(name="DatesIndexed", unit=MetricUnit.Count, value=len(changed))
    metrics.add_metric(name="EpisodesIndexed", unit=MetricUnit.Count, value=sum(r.rows for r in changed))
    return len(changed), len(results) - len(changed)


@dataclass
class Runtime:
    lake: Lake
    settings: IndexerSettings


def build_runtime(storage: StorageSettings | None = None, settings: IndexerSettings | None = None) -> Runtime:
    """The handler's factory: settings from the environment unless given."""
    return Runtime(lake=Lake(storage or StorageSettings()), settings=settings or IndexerSettings())


_runtime: Lazy[Runtime] = Lazy(build_runtime)
"""One runtime per container, built at first use (cold start)."""


def runtime() -> Runtime:
    return _runtime.get()


def _sqs(rt: Runtime, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    results: list[IndexResult] = []

    def record_handler(record: SQSRecord) -> int:
        msg = GoldCommitted.model_validate(record.json_body)
        with logger.append_context_keys(date=msg.date.isoformat(), gold_run=msg.gold_run):
            got = index_committed(rt.lake, msg.date, rt.settings.stats_window_days)
            results.extend(got)
            logger.info("indexed", extra={"dates": [str(r.date) for r in got if not r.skipped]})
        return len(got)

    processor = SqsFifoPartialProcessor()
    try:
        with processor(records=event["Records"], handler=record_handler, lambda_context=context):
            processor.process()
    finally:
        if any(not r.skipped for r in results):
            index.ensure_indexes(rt.lake)
            _refit(rt.lake)
        _count(results)
    return dict(processor.response())


def _refit(lake: Lake) -> None:
    """Refit the learned similarity on the new table (its models are versioned in the lake)."""
    res = models.fit(lake)
    metrics.add_metric(name="ModelsFitted", unit=MetricUnit.Count, value=len(res.models))
    logger.info(
        "learned similarity refitted", extra={"models": len(res.models), "seconds": round(res.seconds, 1)}
    )
    # Date jobs ran in parallel: rebuild streams scaled before an earlier date's silver landed,
    # then refit the projections (the streams' walk-forward models) from the committed streams.
    rebuilt = streams_job.refresh(lake, committed_dates(lake, Layer.SILVER, paths.STATE_TABLE))
    proj = streams_job.fit_projections(lake)
    logger.info(
        "streams projections refitted",
        extra={"rebuilt": len(rebuilt), "models": len(proj.models), "seconds": round(proj.seconds, 1)},
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = runtime()
    if events.is_sqs_event(event):
        return _sqs(rt, event, context)
    request = IndexRangeRequest.model_validate(event)
    reserve_ms = rt.settings.index_reserve_seconds * 1000
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - reserve_ms / 1000

    def has_time() -> bool:
        return time.monotonic() < deadline

    out = index_range(rt.lake, request, rt.settings.stats_window_days, has_time)
    if any(not r.skipped for r in out["results"]):
        index.ensure_indexes(rt.lake)
    if out["done"]:
        _refit(rt.lake)
    indexed, skipped = _count(out["results"])
    logger.info("range indexed", extra={"indexed": indexed, "skipped": skipped, "next": out["next"]})
    return {"done": out["done"], "next": out["next"], "indexed": indexed, "skipped": skipped}

"""Lambda: the per-date job — bronze → silver → gold for one date (:func:`spymaster.layers.pipeline.run_date`).

Triggered by an SQS message from ``ready`` (the date-jobs FIFO queue, one message group per date)
or invoked directly by the backfill state machine with ``{"date": "YYYY-MM-DD", ...}``
(:class:`functions.shared.events.DateRequest`).

* Idempotent per request (date, force, reason): a redelivered message or a retried invocation that
  already succeeded returns the stored result and does not run the job again.
* On success it tells the indexer (a "gold committed" message to the indexer's FIFO queue).
* On failure it reports the date (log, ``DatesFailed`` metric, a status record in the lake) and
  raises, so SQS redelivers the message and moves it to the dead-letter queue after its retries,
  and a backfill's Distributed Map counts the date as failed. Failures leave nothing visible: every
  layer commits through its manifest, and a retry resumes from the last committed layer.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.shared import IdempotencySettings, Lazy, SqsSender, events, replay_hook
from functions.shared.events import DateRequest, GoldCommitted
from spymaster.lake import Lake, is_committed, paths, read_manifest
from spymaster.lake.paths import Layer
from spymaster.layers import bronze, pipeline
from spymaster.settings import StorageSettings, WorkerSettings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "spymaster-date-job"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spymaster"))


class DateJobSettings(IdempotencySettings):
    """The function's configuration (``SPYMASTER_`` environment variables)."""

    gold_committed_queue_url: str


class DateJobError(Exception):
    """A date's job did not commit gold (the Lambda error name the state machine sees)."""


class Notify(Protocol):
    """Announce committed gold to the indexer; returns an id of what was sent."""

    def __call__(self, message: GoldCommitted) -> str: ...


@dataclass(frozen=True)
class SqsNotify:
    """Tell the indexer's FIFO queue (one message group: the indexer works in order)."""

    sender: SqsSender

    def __call__(self, message: GoldCommitted) -> str:
        return self.sender.send(message.body(), group=GoldCommitted.GROUP, dedup_id=message.dedup_id())


def run_job(
    storage: StorageSettings,
    lake: Lake,
    notify: Notify,
    request: DateRequest,
    *,
    writers: int = bronze.WRITERS,
) -> dict[str, Any]:
    """The core: run the date, report its outcome, announce committed gold; raise on failure
    (``writers``: bronze's Parquet writers, from the container's threads by :func:`pipeline.writers_for`)."""
    date = request.date
    outcome: dict[str, Any] = {"date": date.isoformat(), "reason": request.reason, "force": request.force}
    try:
        res = pipeline.run_date(storage, date, force=request.force, writers=writers)
        outcome.update(done=res.done, skipped=res.skipped, error=res.error, stage=res.failed_stage)
    except Exception as exc:  # storage failures are not data errors: pipeline.run_date lets them out
        outcome.update(
            done=[], skipped=[], error=f"{type(exc).__name__}: {exc}", stage=_stage_reached(lake, date)
        )
        _report(lake, request, {**outcome, "status": "failed"})
        raise DateJobError(f"{date}: {outcome['error']}") from exc
    if res.error is not None:
        _report(lake, request, {**outcome, "status": "failed"})
        raise DateJobError(f"{date}: {res.failed_stage} failed: {res.error}")
    man = read_manifest(lake, Layer.GOLD, paths.EPISODES_TABLE, date)
    outcome.update(status="committed", gold_run=man.run_id, rows=man.rows)
    if request.notify:
        outcome["notified"] = notify(GoldCommitted(date=date, gold_run=man.run_id, rows=man.rows))
    _report(lake, request, outcome)
    return outcome


def _stage_reached(lake: Lake, date: dt.date) -> str:
    """The first stage of the date not committed (where an unexpected error stopped the job)."""
    try:
        if not all(is_committed(lake, Layer.BRONZE, k.bronze_table, date) for k in paths.REQUIRED_RAW):
            return "bronze"
        if not is_committed(lake, Layer.SILVER, paths.STATE_TABLE, date):
            return "silver"
        return "gold"
    except Exception:  # storage may be what failed
        return "unknown"


def _report(lake: Lake, request: DateRequest, outcome: dict[str, Any]) -> None:
    """Record the outcome in the lake (per date, and per backfill run); log and count it."""
    ok = outcome.get("status") == "committed"
    if ok:
        metrics.add_metric(name="DatesCommitted", unit=MetricUnit.Count, value=1)
        logger.info("date committed", extra=outcome)
    else:
        metrics.add_metric(name="DatesFailed", unit=MetricUnit.Count, value=1)
        logger.error("date failed", extra=outcome)
    record = {**outcome, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    keys = [paths.date_job_status(request.date)]
    if request.run:
        keys.append(paths.backfill_result_key(request.run, request.date))
    for key in keys:
        try:
            lake.write_json(key, record)
        except Exception:  # the report must not hide the job's own outcome (storage may be failing)
            if ok:
                raise
            logger.exception("could not record the failure in the lake", extra={"report_key": key})


@dataclass
class Runtime:
    """Everything built once per container (cold start)."""

    storage: StorageSettings
    lake: Lake
    idempotency: IdempotencyConfig
    run: Callable[..., dict[str, Any]]
    """``run(request={...})``: the idempotent :func:`run_job`."""


def build_runtime(
    storage: StorageSettings | None = None,
    settings: DateJobSettings | None = None,
    *,
    notify: Notify | None = None,
    persistence: BasePersistenceLayer | None = None,
    threads: int | None = None,
) -> Runtime:
    """The handler's factory: settings from the environment unless given (tests hand their own);
    ``threads``: per container, as ``run --threads`` (default ``SPYMASTER_WORKER_THREADS``)."""
    storage = storage or StorageSettings()
    settings = settings or DateJobSettings()  # type: ignore[call-arg]  # fields come from the environment
    if threads is None:
        threads = WorkerSettings().worker_threads
    if threads is not None:  # once per container: a 1-vCPU Lambda gains nothing from pools of two
        pipeline.limit_threads(threads)
    writers = bronze.WRITERS if threads is None else pipeline.writers_for(threads)
    lake = Lake(storage)
    if notify is None:
        import boto3

        notify = SqsNotify(
            SqsSender(settings.gold_committed_queue_url, boto3.client("sqs", region_name=storage.region))
        )
    persistence = persistence or DynamoDBPersistenceLayer(table_name=settings.idempotency_table)
    config = IdempotencyConfig(
        event_key_jmespath="[date, force, reason]",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=settings.idempotency_ttl_seconds,
        response_hook=replay_hook(logger, metrics),
    )
    send: Notify = notify
    env = storage

    @idempotent_function(data_keyword_argument="request", persistence_store=persistence, config=config)
    def run(request: dict[str, Any]) -> dict[str, Any]:
        return run_job(env, lake, send, DateRequest.model_validate(request), writers=writers)

    return Runtime(storage=storage, lake=lake, idempotency=config, run=run)


_runtime: Lazy[Runtime] = Lazy(build_runtime)
"""One runtime per container, built at first use (cold start)."""


def runtime() -> Runtime:
    return _runtime.get()


def _run(rt: Runtime, request: DateRequest) -> dict[str, Any]:
    with logger.append_context_keys(date=request.date.isoformat(), reason=request.reason):
        return rt.run(request=request.body())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = runtime()
    rt.idempotency.register_lambda_context(context)
    if events.is_sqs_event(event):

        def record_handler(record: SQSRecord) -> dict[str, Any]:
            return _run(rt, DateRequest.model_validate(record.json_body))

        # Records of a date's message group after a failed one are failed too (FIFO order).
        return dict(
            process_partial_response(
                event=event,
                record_handler=record_handler,
                processor=SqsFifoPartialProcessor(skip_group_on_error=True),
                context=context,
            )
        )
    return _run(rt, DateRequest.model_validate(event))

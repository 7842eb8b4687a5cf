"""Lambda: raw files landed → is their date ready? → dispatch the per-date job.

A date is ready when every :data:`spymaster.lake.paths.REQUIRED_RAW` (futures) file of it is in the lake
and either all four options files are there too, or the options policy's wait has run out: ES
options are a separate subscription, so a date waits up to ``SPYMASTER_OPTIONS_WAIT_MINUTES`` after
its last raw file landed, then runs without them (dealer features null). A scheduled sweep
(EventBridge, ``events/ready_schedule.json``) dispatches the dates whose wait ran out with no further
file landing; options that land later make the date stale, and it is dispatched again. Each
ObjectCreated record is handled once per (bucket, key, ETag): the check-and-dispatch step is
idempotent (Powertools, DynamoDB persistence), so a replayed or duplicated S3 event never dispatches
a job again — it gets the stored answer back, marked ``"replay": true``.

Events: S3 notifications wrapped in SQS messages (the deployed path: bucket → raw-events queue →
this function, partial batch failures reported) or direct S3 notifications (``events/ready_s3_put.json``).
Dispatch is a small interface (:class:`Dispatch`); the deployed one sends a :class:`DateRequest`
to the date-jobs FIFO queue, grouped by date so one date's jobs never overlap.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from functions.shared import IdempotencySettings, Lazy, SqsSender, events, replay_hook
from functions.shared.events import DateRequest, LandedObject
from spymaster.lake import Lake, paths, status
from spymaster.layers import pipeline
from spymaster.settings import StorageSettings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "spymaster-ready"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spymaster"))


class ReadySettings(IdempotencySettings):
    """The function's configuration (``SPYMASTER_`` environment variables); idempotency is keyed
    on (bucket, key, ETag)."""

    date_jobs_queue_url: str
    options_wait_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)
    """How long a date whose futures have landed waits for its options files (counted from the
    last raw file of it that landed) before it runs without them; 0 runs at once."""


class Dispatch(Protocol):
    """Start the per-date job; returns an id of what was sent (a message id)."""

    def __call__(self, request: DateRequest) -> str: ...


@dataclass(frozen=True)
class SqsDispatch:
    """Send the request to the date-jobs queue (FIFO: grouped by date, deduplicated by request)."""

    sender: SqsSender

    def __call__(self, request: DateRequest) -> str:
        return self.sender.send(request.body(), group=request.group, dedup_id=request.dedup_id())


Clock = Callable[[], dt.datetime]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _kind_names(kinds: list[paths.RawKind]) -> list[str]:
    return [f"{k.product.value} {k.schema}" for k in kinds]


def options_due(lake: Lake, date: dt.date, wait: dt.timedelta) -> dt.datetime:
    """When a date still lacking options files runs without them: ``wait`` after its last raw
    file landed (so options arriving one by one are waited for, each restarting the wait)."""
    keys = [paths.raw_file(k, date) for k in (*paths.REQUIRED_RAW, *pipeline.landed_options(lake, date))]
    last_ns = max(lake.fingerprint(k)["mtime_ns"] for k in keys)
    return dt.datetime.fromtimestamp(last_ns / 1e9, dt.UTC) + wait


def check_and_dispatch(
    lake: Lake,
    landed: events.RawLanded,
    dispatch: Dispatch,
    *,
    options_wait: dt.timedelta = dt.timedelta(0),
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The core: is the landed file's date ready? If so (and not built yet), dispatch its job.

    Ready means every futures file is there and either every options file too, or ``options_wait``
    has passed since the date's last raw file landed (then it runs without options).
    """
    date = landed.raw.date
    out: dict[str, Any] = {"key": landed.obj.key, "date": date.isoformat(), "replay": False}
    missing = [k for k in paths.REQUIRED_RAW if not lake.exists(paths.raw_file(k, date))]
    if missing:
        out.update(status="waiting", missing=_kind_names(missing))
        return out
    if pipeline.is_built(lake, date):
        out.update(status="built")  # a replaced raw file makes its bronze stale: then dispatch again
        return out
    opts = pipeline.landed_options(lake, date)
    no_opts = [k for k in paths.OPTIONS_RAW if k not in opts]
    if no_opts:
        due = options_due(lake, date, options_wait)
        if (now or _now()) < due:
            out.update(
                status="waiting-options", missing=_kind_names(no_opts), runs_without_at=due.isoformat()
            )
            return out
        out["without"] = _kind_names(no_opts)
    request = DateRequest(date=date, reason=f"{landed.obj.uri}#{landed.obj.etag}")
    out.update(status="dispatched", message_id=dispatch(request), request=request.body())
    return out


def sweep(
    lake: Lake, dispatch: Dispatch, *, options_wait: dt.timedelta, now: dt.datetime
) -> list[dict[str, Any]]:
    """The scheduled half of the options policy: dispatch every date whose futures have landed,
    whose options are still incomplete, that is not built, and whose wait has run out."""
    out: list[dict[str, Any]] = []
    for date, kinds in sorted(status.landed_raw(lake).items()):
        if not kinds >= set(paths.REQUIRED_RAW) or kinds >= set(paths.OPTIONS_RAW):
            continue  # incomplete futures wait for their files; complete dates run from their events
        if pipeline.is_built(lake, date):
            continue
        due = options_due(lake, date, options_wait)
        if now < due:
            continue
        no_opts = [k for k in paths.OPTIONS_RAW if k not in kinds]
        # The reason names the wait that ran out: the same sweep repeated is the same request.
        request = DateRequest(date=date, reason=f"options-wait:{date.isoformat()}:{due.isoformat()}")
        out.append(
            {
                "date": date.isoformat(),
                "status": "dispatched",
                "without": _kind_names(no_opts),
                "message_id": dispatch(request),
                "request": request.body(),
            }
        )
    return out


@dataclass
class Runtime:
    """Everything built once per container (cold start)."""

    lake: Lake
    bucket: str
    prefix: str
    idempotency: IdempotencyConfig
    on_landed: Callable[..., dict[str, Any]]
    """``on_landed(obj={...})``: the idempotent check-and-dispatch of one landed raw file."""
    dispatch: Dispatch
    options_wait: dt.timedelta
    clock: Clock


def build_runtime(
    storage: StorageSettings | None = None,
    settings: ReadySettings | None = None,
    *,
    dispatch: Dispatch | None = None,
    persistence: BasePersistenceLayer | None = None,
    clock: Clock = _now,
) -> Runtime:
    """The handler's factory: settings from the environment unless given (tests hand their own)."""
    storage = storage or StorageSettings()
    settings = settings or ReadySettings()  # type: ignore[call-arg]  # fields come from the environment
    lake = Lake(storage)
    bucket, prefix = events.lake_location(storage.lake_uri)
    if dispatch is None:
        import boto3

        dispatch = SqsDispatch(
            SqsSender(settings.date_jobs_queue_url, boto3.client("sqs", region_name=storage.region))
        )
    persistence = persistence or DynamoDBPersistenceLayer(table_name=settings.idempotency_table)
    config = IdempotencyConfig(
        event_key_jmespath="[bucket, key, etag]",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=settings.idempotency_ttl_seconds,
        response_hook=replay_hook(logger, metrics),
    )
    send: Dispatch = dispatch
    wait = dt.timedelta(minutes=settings.options_wait_minutes)

    @idempotent_function(data_keyword_argument="obj", persistence_store=persistence, config=config)
    def on_landed(obj: dict[str, Any]) -> dict[str, Any]:
        landed = events.raw_landed(LandedObject(**obj), bucket, prefix)
        assert landed is not None  # filtered before: only raw files of this lake get here
        return check_and_dispatch(lake, landed, send, options_wait=wait, now=clock())

    return Runtime(
        lake=lake,
        bucket=bucket,
        prefix=prefix,
        idempotency=config,
        on_landed=on_landed,
        dispatch=send,
        options_wait=wait,
        clock=clock,
    )


_runtime: Lazy[Runtime] = Lazy(build_runtime)
"""One runtime per container, built at first use (cold start)."""


def runtime() -> Runtime:
    return _runtime.get()


def _handle(rt: Runtime, objects: list[LandedObject]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for obj in objects:
        landed = events.raw_landed(obj, rt.bucket, rt.prefix)
        if landed is None:
            logger.info("not a raw file of this lake; ignored", extra={"key": obj.key, "bucket": obj.bucket})
            metrics.add_metric(name="ObjectsIgnored", unit=MetricUnit.Count, value=1)
            results.append({"key": obj.key, "status": "ignored"})
            continue
        with logger.append_context_keys(key=obj.key, etag=obj.etag, date=landed.raw.date.isoformat()):
            res = rt.on_landed(obj=asdict(obj))
            if not res.get("replay"):
                metrics.add_metric(name="RawFilesLanded", unit=MetricUnit.Count, value=1)
                if res["status"] == "dispatched":
                    metrics.add_metric(name="DatesDispatched", unit=MetricUnit.Count, value=1)
            logger.info("raw file checked", extra={"status": res["status"], "replay": res.get("replay")})
        results.append(res)
    return results


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = runtime()
    rt.idempotency.register_lambda_context(context)
    if event.get("source") == "aws.events":  # the schedule: dates whose options wait ran out
        swept = sweep(rt.lake, rt.dispatch, options_wait=rt.options_wait, now=rt.clock())
        metrics.add_metric(name="DatesDispatched", unit=MetricUnit.Count, value=len(swept))
        logger.info("options sweep", extra={"dispatched": [r["date"] for r in swept]})
        return {"results": swept}
    if events.is_sqs_event(event):

        def record_handler(record: SQSRecord) -> list[dict[str, Any]]:
            return _handle(rt, events.landed_objects_in_sqs(record))

        return dict(
            process_partial_response(
                event=event,
                record_handler=record_handler,
                processor=BatchProcessor(event_type=EventType.SQS),
                context=context,
            )
        )
    return {"results": _handle(rt, events.landed_objects(event))}

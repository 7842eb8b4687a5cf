"""Lambda: raw files landed → is their date ready? → dispatch the per-date job.

A date is ready when every :data:`spymaster.lake.paths.REQUIRED_RAW` file of it is in the lake. Each
ObjectCreated record is handled once per (bucket, key, ETag): the check-and-dispatch step is
idempotent (Powertools, DynamoDB persistence), so a replayed or duplicated S3 event never dispatches
a job again — it gets the stored answer back, marked ``"replay": true``.

Events: S3 notifications wrapped in SQS messages (the deployed path: bucket → raw-events queue →
this function, partial batch failures reported) or direct S3 notifications (``events/ready_s3_put.json``).
Dispatch is a small interface (:class:`Dispatch`); the deployed one sends a :class:`DateRequest`
to the date-jobs FIFO queue, grouped by date so one date's jobs never overlap.
"""

from __future__ import annotations

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

from functions.shared import IdempotencySettings, Lazy, SqsSender, events, replay_hook
from functions.shared.events import DateRequest, LandedObject
from spymaster.lake import Lake, is_committed, paths
from spymaster.lake.paths import Layer
from spymaster.layers import bronze
from spymaster.settings import StorageSettings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "spymaster-ready"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spymaster"))


class ReadySettings(IdempotencySettings):
    """The function's configuration (``SPYMASTER_`` environment variables); idempotency is keyed
    on (bucket, key, ETag)."""

    date_jobs_queue_url: str


class Dispatch(Protocol):
    """Start the per-date job; returns an id of what was sent (a message id)."""

    def __call__(self, request: DateRequest) -> str: ...


@dataclass(frozen=True)
class SqsDispatch:
    """Send the request to the date-jobs queue (FIFO: grouped by date, deduplicated by request)."""

    sender: SqsSender

    def __call__(self, request: DateRequest) -> str:
        return self.sender.send(request.body(), group=request.group, dedup_id=request.dedup_id())


def check_and_dispatch(lake: Lake, landed: events.RawLanded, dispatch: Dispatch) -> dict[str, Any]:
    """The core: is the landed file's date complete? If so (and not built yet), dispatch its job."""
    date = landed.raw.date
    out: dict[str, Any] = {"key": landed.obj.key, "date": date.isoformat(), "replay": False}
    missing = [k for k in paths.REQUIRED_RAW if not lake.exists(paths.raw_file(k, date))]
    if missing:
        out.update(status="waiting", missing=[f"{k.product.value} {k.schema}" for k in missing])
        return out
    if is_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, date) and all(
        bronze.is_current(lake, k, date) for k in paths.REQUIRED_RAW
    ):
        out.update(status="built")  # a replaced raw file makes its bronze stale: then dispatch again
        return out
    request = DateRequest(date=date, reason=f"{landed.obj.uri}#{landed.obj.etag}")
    out.update(status="dispatched", message_id=dispatch(request), request=request.body())
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


def build_runtime(
    storage: StorageSettings | None = None,
    settings: ReadySettings | None = None,
    *,
    dispatch: Dispatch | None = None,
    persistence: BasePersistenceLayer | None = None,
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

    @idempotent_function(data_keyword_argument="obj", persistence_store=persistence, config=config)
    def on_landed(obj: dict[str, Any]) -> dict[str, Any]:
        landed = events.raw_landed(LandedObject(**obj), bucket, prefix)
        assert landed is not None  # filtered before: only raw files of this lake get here
        return check_and_dispatch(lake, landed, send)

    return Runtime(lake=lake, bucket=bucket, prefix=prefix, idempotency=config, on_landed=on_landed)


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

"""Event payloads of the serverless functions, parsed into typed requests (no I/O here).

The payloads that pass through the Lambda handlers:

* **S3 ObjectCreated notifications** (raw files landing), either delivered directly
  (``{"Records": [{"eventSource": "aws:s3", ...}]}``) or wrapped in SQS messages whose body is
  that notification (the deployed path: bucket → raw-events queue → ``ready``).
  :func:`landed_objects` / :func:`landed_objects_in_sqs` turn them into :class:`LandedObject`, and
  :func:`raw_landed` says which lake raw file, if any, an object is.
* **Date requests** (:class:`DateRequest`): what ``ready`` sends and the backfill state machine
  invokes the per-date job with — ``{"date": "YYYY-MM-DD"}`` plus optional fields.
* **Gold committed** (:class:`GoldCommitted`): what the per-date job sends to the indexer queue.
* **Backfill** requests (:class:`BackfillRequest`, :class:`IndexRangeRequest`) from the state machine.

The lake keys of the backfill's plan and per-date results live here too, because the per-date
job and the backfill helpers must agree on them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from aws_lambda_powertools.utilities.data_classes import S3Event, SQSEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, ConfigDict, Field, model_validator

from spymaster.lake import paths

__all__ = [
    "BackfillRequest",
    "DateRequest",
    "GoldCommitted",
    "IndexRangeRequest",
    "LandedObject",
    "RawLanded",
    "is_sqs_event",
    "lake_location",
    "landed_objects",
    "landed_objects_in_sqs",
    "raw_landed",
    "sqs_records",
]


# -- S3 notifications --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LandedObject:
    """One ObjectCreated record: which object, which version of its bytes (ETag), when."""

    bucket: str
    key: str
    """The object key, URL-decoded (S3 notifications encode keys like form values)."""
    etag: str
    """Without quotes, as S3 notifications carry it (a PUT response quotes it)."""
    size: int
    sequencer: str
    event_time: str
    event_name: str

    def idempotency_payload(self) -> dict[str, Any]:
        """What the ``ready`` function's idempotency key is computed from: bucket, key and ETag."""
        return {"bucket": self.bucket, "key": self.key, "etag": self.etag, "size": self.size}

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class RawLanded:
    """A landed object that is the canonical raw file of one (kind, date) of the lake."""

    obj: LandedObject
    raw: paths.RawKey
    rel: str
    """The lake-relative key (``raw/dataset=…/…/<file>.dbn.zst``)."""


def normalise_etag(etag: str) -> str:
    return etag.strip().strip('"')


def landed_objects(event: Mapping[str, Any]) -> list[LandedObject]:
    """The ObjectCreated records of a direct S3 notification (other records are dropped)."""
    out: list[LandedObject] = []
    for rec in S3Event(dict(event)).records:
        if rec.get("eventSource") != "aws:s3" or not rec.event_name.startswith("ObjectCreated:"):
            continue
        obj = rec.s3.get_object
        out.append(
            LandedObject(
                bucket=rec.s3.bucket.name,
                key=urllib.parse.unquote_plus(obj.key),
                etag=normalise_etag(obj.get("eTag") or ""),
                size=int(obj.get("size") or 0),
                sequencer=str(obj.get("sequencer") or ""),
                event_time=rec.event_time,
                event_name=rec.event_name,
            )
        )
    return out


def landed_objects_in_sqs(record: SQSRecord) -> list[LandedObject]:
    """The ObjectCreated records of an S3 notification carried in an SQS message body.

    S3 sends an ``s3:TestEvent`` (no ``Records``) when a notification is configured: it yields
    nothing. A body that is not JSON raises ``ValueError`` (the message is bad, not the lake).
    """
    body = json.loads(record.body)
    if not isinstance(body, dict):
        raise ValueError("an S3 notification body is a JSON object")
    if "Records" not in body:
        return []
    return landed_objects(body)


def is_sqs_event(event: Mapping[str, Any]) -> bool:
    records = event.get("Records") or []
    return bool(records) and all(r.get("eventSource") == "aws:sqs" for r in records)


def sqs_records(event: Mapping[str, Any]) -> list[SQSRecord]:
    return list(SQSEvent(dict(event)).records)


def lake_location(lake_uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, ``prefix/``); the prefix is empty at the bucket's root."""
    if not lake_uri.startswith("s3://"):
        raise ValueError(f"the serverless functions need an s3:// lake URI, not {lake_uri!r}")
    bucket, _, prefix = lake_uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def raw_landed(obj: LandedObject, bucket: str, prefix: str) -> RawLanded | None:
    """The raw file ``obj`` is in the lake at ``s3://bucket/prefix``, or None.

    None for other buckets, keys outside the lake's ``raw/``, kinds the pipeline does not use, and
    names other than the canonical one (:func:`spymaster.lake.paths.raw_file`), exactly as
    :func:`spymaster.lake.status.landed_raw` counts landed files.
    """
    if obj.bucket != bucket or not obj.key.startswith(prefix):
        return None
    rel = obj.key[len(prefix) :]
    try:
        raw = paths.parse_raw_key(rel)
    except ValueError:
        return None
    if rel != paths.raw_file(raw.kind, raw.date):
        return None
    return RawLanded(obj=obj, raw=raw, rel=rel)


# -- messages between the functions ---------------------------------------------------------------------


class DateRequest(BaseModel):
    """Run the per-date job (bronze → silver → gold) for one date.

    ``reason`` says who asked (``s3://bucket/key#etag`` for the file that completed the date,
    ``backfill:<run>`` for the state machine); together with the date and ``force`` it is the
    job's idempotency key, so a redelivered request never reruns the job.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    date: dt.date
    force: bool = False
    reason: str = "direct"
    notify: bool = True
    """Tell the indexer queue when gold is committed (the backfill indexes once, in date order)."""
    run: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,80}$")
    """A backfill run: the job writes its result to :func:`backfill_result_key`."""

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def dedup_id(self) -> str:
        """An SQS FIFO deduplication id (≤ 128 chars) of the same fields as the idempotency key."""
        key = f"{self.date.isoformat()}|{self.force}|{self.reason}"
        return hashlib.sha256(key.encode()).hexdigest()

    @property
    def group(self) -> str:
        """SQS FIFO message group: jobs of one date never run at the same time."""
        return self.date.isoformat()


class GoldCommitted(BaseModel):
    """A date's gold is committed (run ``gold_run``): index it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    date: dt.date
    gold_run: str
    rows: int = Field(ge=0)

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def dedup_id(self) -> str:
        return f"{self.date.isoformat()}|{self.gold_run}"[:128]

    GROUP: ClassVar[str] = "vector-table"
    """One message group: the indexer (the vector table's only writer) sees commits one at a time."""


class BackfillRequest(BaseModel):
    """The state machine's input: a date range, and whether committed dates are rebuilt."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    start: dt.date
    end: dt.date
    force: bool = False
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)
    tolerated_failure_percentage: float | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> BackfillRequest:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


class IndexRangeRequest(BaseModel):
    """Index committed gold dates in ``[start, end]`` after ``after``, in date order, for as long
    as the invocation has time (the state machine loops until ``done``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    start: dt.date
    end: dt.date
    after: dt.date | None = None

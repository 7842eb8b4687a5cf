"""Lambdas around the backfill state machine (``infra/statemachine/backfill.asl.json``).

* :func:`plan` — ``{"request": {"start", "end", "force"?}, "run": <execution name>}``: which dates
  of the range have every futures raw file landed (options are optional: such dates run with dealer
  features null and are listed in ``without_options``) and are not built from the raw files there
  now, unless ``force``. It writes the
  Distributed Map's item list (one :class:`~functions.shared.events.DateRequest` per date) and the plan to
  the lake, and returns where the list is plus the Map's concurrency and failure tolerance.
* :func:`report` — the state machine's state at the end: reads the plan and the per-date results the
  date jobs wrote, checks what the vector table holds, and writes ``_reports/backfill/<run>.json``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from functions.shared import Lazy, events
from functions.shared.events import BackfillRequest, DateRequest
from spymaster import sessions
from spymaster.lake import Lake, committed_dates, paths, status
from spymaster.lake.paths import Layer
from spymaster.layers import pipeline
from spymaster.settings import StorageSettings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "spymaster-backfill"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spymaster"))


class BackfillSettings(BaseSettings):
    """Defaults for the Distributed Map (``SPYMASTER_`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="SPYMASTER_", extra="ignore")

    backfill_max_concurrency: int = Field(default=40, ge=1, le=10_000)
    backfill_tolerated_failure_percentage: float = Field(default=10.0, ge=0, le=100)


def make_plan(
    lake: Lake, request: BackfillRequest, run: str, settings: BackfillSettings
) -> tuple[list[DateRequest], dict[str, Any]]:
    """The dates to run and the plan document (also what was left out, and why)."""
    landed = status.landed_raw(lake)
    built = set(committed_dates(lake, Layer.GOLD, paths.EPISODES_TABLE))
    required, options = set(paths.REQUIRED_RAW), set(paths.OPTIONS_RAW)
    without_options: list[str] = []
    todo: list[DateRequest] = []
    incomplete: dict[str, list[str]] = {}
    no_raw: list[str] = []
    already_built: list[str] = []
    for d in sessions.trading_days_between(request.start, request.end):
        kinds = landed.get(d, set())
        if not kinds:
            no_raw.append(d.isoformat())
        elif not kinds >= required:
            incomplete[d.isoformat()] = sorted(f"{k.product.value} {k.schema}" for k in required - kinds)
        elif not request.force and d in built and pipeline.is_built(lake, d):
            already_built.append(d.isoformat())
        else:
            if not kinds & options:  # runs with dealer features null
                without_options.append(d.isoformat())
            todo.append(
                DateRequest(date=d, force=request.force, reason=f"backfill:{run}", notify=False, run=run)
            )
    doc = {
        "run": run,
        "request": request.model_dump(mode="json"),
        "planned": [r.date.isoformat() for r in todo],
        "incomplete_raw": incomplete,
        "without_options": without_options,
        "no_raw": no_raw,
        "already_built": already_built,
        "max_concurrency": request.max_concurrency or settings.backfill_max_concurrency,
        "tolerated_failure_percentage": (
            request.tolerated_failure_percentage
            if request.tolerated_failure_percentage is not None
            else settings.backfill_tolerated_failure_percentage
        ),
    }
    return todo, doc


def make_report(lake: Lake, run: str, state: dict[str, Any]) -> dict[str, Any]:
    """Per-date outcomes of a run: committed, failed (stage, error), no result, indexed or not."""
    plan_doc: dict[str, Any] = lake.read_json(paths.backfill_plan_key(run))
    indexed = {d.isoformat() for d in _indexed_dates(lake)}
    succeeded: list[str] = []
    failed: list[dict[str, Any]] = []
    no_result: list[str] = []
    for iso in plan_doc["planned"]:
        key = paths.backfill_result_key(run, dt.date.fromisoformat(iso))
        if not lake.exists(key):
            no_result.append(iso)  # never ran, timed out or crashed before reporting
            continue
        res = lake.read_json(key)
        if res.get("status") == "committed":
            succeeded.append(iso)
        else:
            failed.append({"date": iso, "stage": res.get("stage"), "error": res.get("error")})
    wanted = succeeded + plan_doc["already_built"]
    return {
        "run": run,
        "request": plan_doc["request"],
        "planned": len(plan_doc["planned"]),
        "succeeded": succeeded,
        "failed": failed,
        "no_result": no_result,
        "incomplete_raw": plan_doc["incomplete_raw"],
        "without_options": plan_doc.get("without_options", []),
        "no_raw": plan_doc["no_raw"],
        "already_built": plan_doc["already_built"],
        "indexed": sorted(d for d in wanted if d in indexed),
        "not_indexed": sorted(d for d in wanted if d not in indexed),
        "map_error": state.get("map_error"),
        "index_error": state.get("index_error"),
        "map_run": (state.get("map") or {}).get("MapRunArn"),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _indexed_dates(lake: Lake) -> list[dt.date]:
    return sorted(paths.date_from_partition(p) for p in lake.list_files(paths.INDEX_MARKERS))


@dataclass
class Runtime:
    lake: Lake
    bucket: str
    prefix: str
    settings: BackfillSettings


def build_runtime(
    storage: StorageSettings | None = None, settings: BackfillSettings | None = None
) -> Runtime:
    """The handlers' factory: settings from the environment unless given."""
    storage = storage or StorageSettings()
    bucket, prefix = events.lake_location(storage.lake_uri)
    return Runtime(Lake(storage), bucket, prefix, settings or BackfillSettings())


_runtime: Lazy[Runtime] = Lazy(build_runtime)
"""One runtime per container, built at first use (cold start)."""


def runtime() -> Runtime:
    return _runtime.get()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def plan(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = runtime()
    run = str(event["run"])
    request = BackfillRequest.model_validate(event.get("request", event))
    with logger.append_context_keys(run=run):
        todo, doc = make_plan(rt.lake, request, run, rt.settings)
        rt.lake.write_json(paths.backfill_items_key(run), [r.body() for r in todo])
        rt.lake.write_json(paths.backfill_plan_key(run), doc)
        metrics.add_metric(name="BackfillDatesPlanned", unit=MetricUnit.Count, value=len(todo))
        logger.info(
            "backfill planned",
            extra={
                "planned": len(todo),
                "incomplete": len(doc["incomplete_raw"]),
                "built": len(doc["already_built"]),
            },
        )
    return {
        "run": run,
        "bucket": rt.bucket,
        "key": rt.prefix + paths.backfill_items_key(run),
        "count": len(todo),
        "start": request.start.isoformat(),
        "end": request.end.isoformat(),
        "max_concurrency": doc["max_concurrency"],
        "tolerated_failure_percentage": doc["tolerated_failure_percentage"],
    }


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def report(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = runtime()
    run = str(event["plan"]["run"])
    with logger.append_context_keys(run=run):
        doc = make_report(rt.lake, run, event)
        key = paths.backfill_report_key(run)
        rt.lake.write_json(key, doc)
        metrics.add_metric(name="BackfillDatesFailed", unit=MetricUnit.Count, value=len(doc["failed"]))
        summary = {
            "uri": rt.lake.full_uri(key),
            "planned": doc["planned"],
            "succeeded": len(doc["succeeded"]),
            "failed": len(doc["failed"]),
            "no_result": len(doc["no_result"]),
            "not_indexed": len(doc["not_indexed"]),
        }
        logger.info("backfill report written", extra=summary)
    return summary

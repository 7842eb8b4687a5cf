"""Idempotency for the handlers that dedupe events: their settings and the replay hook (Powertools)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency.hook import IdempotentHookFunction
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IdempotencySettings(BaseSettings):
    """What every idempotent handler needs (``SPYMASTER_`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="SPYMASTER_", extra="ignore")

    idempotency_table: str
    idempotency_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    """How long a key is remembered: longer than S3 and SQS ever redeliver."""


def replay_hook(logger: Logger, metrics: Metrics) -> IdempotentHookFunction:
    """Idempotency response hook: count and log a replay, and mark the stored answer ``replay``."""

    def hook(response: Any, idempotent_data: DataRecord) -> Any:
        metrics.add_metric(name="ReplaysRecognised", unit=MetricUnit.Count, value=1)
        logger.info("replay recognised", extra={"idempotency_key": idempotent_data.idempotency_key})
        return {**response, "replay": True} if isinstance(response, dict) else response

    return hook

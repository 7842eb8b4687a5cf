"""Pieces every Lambda handler shares (kept out of the core: they speak Powertools)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency.hook import IdempotentHookFunction
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord


def replay_hook(logger: Logger, metrics: Metrics) -> IdempotentHookFunction:
    """Idempotency response hook: count and log a replay, and mark the stored answer ``replay``."""

    def hook(response: Any, idempotent_data: DataRecord) -> Any:
        metrics.add_metric(name="ReplaysRecognised", unit=MetricUnit.Count, value=1)
        logger.info("replay recognised", extra={"idempotency_key": idempotent_data.idempotency_key})
        return {**response, "replay": True} if isinstance(response, dict) else response

    return hook

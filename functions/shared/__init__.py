"""Pieces every Lambda handler shares, kept out of the core (they speak Powertools and AWS):
the runtime singleton (:mod:`.runtime`), SQS sending (:mod:`.sqs`), idempotency (:mod:`.idempotency`)
and event parsing (:mod:`.events`)."""

from functions.shared.idempotency import IdempotencySettings, replay_hook
from functions.shared.runtime import Lazy
from functions.shared.sqs import SqsSender

__all__ = ["IdempotencySettings", "Lazy", "SqsSender", "replay_hook"]

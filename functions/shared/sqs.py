"""Sending to SQS from a handler (a FIFO queue gets its message group and deduplication id)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SqsSender:
    """Send one JSON message; on a FIFO queue with its message group and deduplication id."""

    queue_url: str
    client: Any

    def send(self, body: dict[str, Any], *, group: str, dedup_id: str) -> str:
        kwargs: dict[str, str] = {}
        if self.queue_url.endswith(".fifo"):
            kwargs = {"MessageGroupId": group, "MessageDeduplicationId": dedup_id}
        resp = self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body), **kwargs)
        return str(resp["MessageId"])

"""``/v1/live``: the live session's server-sent events and its status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sse_starlette import EventSourceResponse

from spymaster.api.schemas import path_date
from spymaster.errors import LiveNotStreamingError
from spymaster.live.hub import Hub
from spymaster.settings import PushSettings

router = APIRouter(prefix="/live", tags=["live"])

NO_SESSION = "no live session is running (start one with `spymaster live … --serve`)"


def _hub(request: Request) -> Hub:
    hub: Hub | None = getattr(request.app.state, "live", None)
    if hub is None:
        raise LiveNotStreamingError(NO_SESSION)
    return hub


def _push(request: Request) -> PushSettings:
    s: PushSettings | None = getattr(request.app.state, "push", None)
    return s if s is not None else PushSettings()


@router.get("/status")
def status(request: Request) -> dict[str, Any]:
    """The live session: the date, the engine's progress and lag, the push queues' drops."""
    hub = _hub(request)
    return {"date": hub.date, "push": hub.stats(), "engine": hub.latest_status()}


@router.get("/stream")
async def stream(
    request: Request, date: Annotated[str, Query(description="YYYY-MM-DD: the live session's date")]
) -> EventSourceResponse:
    """Server-sent events of the live session: bars, levels, state, answers, status."""
    hub = _hub(request)
    wanted = path_date(date).isoformat()
    if wanted != hub.date:
        raise LiveNotStreamingError(f"the live session streams {hub.date}, not {wanted}")
    push = _push(request)
    sub = hub.subscribe(loop=asyncio.get_running_loop())

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            while True:
                ev = await sub.next(timeout=push.status_s)
                if ev is None:  # quiet: say so, with this subscriber's own losses
                    body = {
                        "kind": "status",
                        "date": hub.date,
                        "dropped": sub.dropped,
                        "coalesced": sub.coalesced,
                    }
                    yield {"event": "status", "data": json.dumps({**body, "payload": {"push": hub.stats()}})}
                    continue
                data = ev.to_json(dropped=sub.dropped, coalesced=sub.coalesced)
                yield {"event": ev.update.kind, "id": str(ev.seq), "data": json.dumps(data, allow_nan=False)}
        finally:
            sub.close()

    return EventSourceResponse(events(), ping=push.ping_s)

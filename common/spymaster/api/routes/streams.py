"""``/v1/days/{date}/streams``: a level's streams, projections, alerts and exit score as of a bar."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from spymaster.api.schemas import DatePath, StreamsOut, parse_time, path_date
from spymaster.errors import InvalidQueryError
from spymaster.levels import LEVEL_KINDS
from spymaster.serving.streams import StreamsView
from spymaster.streams.exit import POSITIONS

router = APIRouter(tags=["streams"])

Prob = Annotated[float | None, Query(ge=0, le=1, description="the retrieval answer's probability, 0…1")]


def _view(request: Request) -> StreamsView:
    view: StreamsView = request.app.state.streams
    return view


@router.get("/days/{date}/streams", response_model=StreamsOut)
def streams(
    date: DatePath,
    request: Request,
    level: Annotated[str, Query(json_schema_extra={"enum": list(LEVEL_KINDS)})],
    at: Annotated[
        str | None, Query(description="ET HH:MM[:SS]; the last bar closed by then (default: the day's last)")
    ] = None,
    position: Annotated[str | None, Query(json_schema_extra={"enum": list(POSITIONS)})] = None,
    p_break: Prob = None,
    p_reject: Prob = None,
) -> dict[str, Any]:
    """A level's streams up to a bar, their 20-minute projections, its alerts and (with a position) the exit score."""
    if level not in LEVEL_KINDS:
        raise InvalidQueryError(f"level must be one of {', '.join(LEVEL_KINDS)}")
    if position is not None and position not in POSITIONS:
        raise InvalidQueryError(f"position must be one of {', '.join(POSITIONS)}")
    try:
        t = None if at is None else parse_time(at)
    except ValueError as exc:
        raise InvalidQueryError(f"at: {exc}") from None
    return _view(request).answer(path_date(date), level, t, position, p_break, p_reject)

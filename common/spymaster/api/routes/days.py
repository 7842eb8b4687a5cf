"""``/v1/days``: the dates in the lake, a day's bars and levels, and its per-bar signals."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from spymaster.api.deps import MaxK, ServiceDep
from spymaster.api.schemas import Bars, DatePath, Days, Levels, Signals, path_date
from spymaster.outcomes import HORIZONS_MIN, PRIMARY_HORIZON_MIN
from spymaster.serving.query import SIGNAL_KS
from spymaster.settings import SERVED

router = APIRouter(tags=["days"])


@router.get("/days", response_model=Days)
def days(svc: ServiceDep) -> dict[str, Any]:
    """Dates with committed silver, their episode counts and whether they are indexed."""
    return svc.days()


@router.get("/days/{date}/bars", response_model=Bars)
def bars(date: DatePath, svc: ServiceDep) -> dict[str, Any]:
    """2-minute bars (t = bar close) from 09:00 to 12:30 ET."""
    return svc.bars(path_date(date))


@router.get("/days/{date}/levels", response_model=Levels)
def levels(date: DatePath, svc: ServiceDep) -> dict[str, Any]:
    """The six levels per 30-s step from 09:30 to 12:30 ET (null while not active)."""
    return svc.levels(path_date(date))


@router.get("/days/{date}/signals", response_model=Signals)
def signals(
    date: DatePath,
    svc: ServiceDep,
    max_k: MaxK,
    horizon: Annotated[int, Query(json_schema_extra={"enum": list(HORIZONS_MIN)})] = PRIMARY_HORIZON_MIN,
    k: Annotated[
        int,
        Query(
            json_schema_extra={"enum": list(SIGNAL_KS)},
            description="Neighbours per signal: one of the cached sizes (at most max_k)",
        ),
    ] = SERVED.k,
) -> dict[str, Any]:
    """Per 2-minute bar close and level in its zone: the outcome distribution as of that date."""
    return svc.signals(path_date(date), horizon=horizon, k=k, max_k=max_k)

"""``/v1/report``: the latest walk-forward evaluation report and its files."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from spymaster.api.deps import ServiceDep
from spymaster.api.schemas import ReportOut
from spymaster.serving import REPORT_MEDIA_TYPES

router = APIRouter(tags=["evaluation"])


@router.get("/report", response_model=ReportOut)
def report(svc: ServiceDep) -> dict[str, Any]:
    """The latest walk-forward evaluation report: its metrics, markdown and files (404 if none)."""
    return svc.report()


@router.get(
    "/report/files/{name}",
    response_class=Response,
    responses={200: {"content": {t.split(";")[0]: {} for t in REPORT_MEDIA_TYPES.values()}}},
)
def report_file(
    name: Annotated[str, Path(description="a file name listed by /v1/report", max_length=128)],
    svc: ServiceDep,
) -> Response:
    """A file of the latest evaluation report (only the names /v1/report lists)."""
    data, media_type = svc.report_file(name)
    return Response(content=data, media_type=media_type, headers={"Cache-Control": "no-cache"})

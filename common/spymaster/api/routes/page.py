"""Outside ``/v1``: liveness, the trader's page and its vendored chart library (never behind the API key)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path as FsPath
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from spymaster.api.deps import ServiceDep
from spymaster.api.schemas import Health

WEB_DIR = FsPath(__file__).resolve().parents[2] / "web"
"""``spymaster/web``: the page's HTML, JS and CSS (served under ``/static``)."""

meta = APIRouter(tags=["meta"])
page = APIRouter(include_in_schema=False)


@meta.get("/health", response_model=Health)
def health(svc: ServiceDep) -> dict[str, Any]:
    """Liveness, episodes in memory and the vector table version."""
    return svc.health()


@lru_cache(maxsize=1)
def _plotly_js() -> FsPath | None:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = FsPath(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


@page.get("/static/vendor/plotly.min.js")
def plotly() -> Response:
    plotly_js = _plotly_js()
    if plotly_js is None:
        return JSONResponse({"detail": "plotly is not installed"}, status_code=404)
    return FileResponse(plotly_js, media_type="text/javascript")


@page.get("/")
def index_page() -> Response:
    index = WEB_DIR / "index.html"
    if index.is_file():
        return FileResponse(index, media_type="text/html")
    return RedirectResponse("/docs")

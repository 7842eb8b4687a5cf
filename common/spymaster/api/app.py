"""The HTTP API (FastAPI): one app for uvicorn locally and Mangum in Lambda.

``create_app`` builds the app: settings, the :class:`spymaster.serving.Service`, the one error map,
the middleware and the routers of :mod:`spymaster.api.routes`. Errors are JSON
``{"detail": "<reason>"}``: domain errors are mapped to statuses in one place (``_STATUS``, here);
request validation errors become one readable 422 reason; anything unexpected is logged and
answered with a generic 500 that carries no detail (no traceback, no path). When
``SPYMASTER_API_KEY`` is set every ``/v1`` route needs the ``X-API-Key`` header (401 otherwise);
``/health``, the docs and the page stay open.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from spymaster.api.deps import API_KEY_HEADER, api_key_dependencies
from spymaster.api.routes import days, page, query, report, streams
from spymaster.api.routes import live as live_routes
from spymaster.api.schemas import ERROR_RESPONSES
from spymaster.errors import InvalidQueryError, NotCommittedError, NotFoundError, SpymasterError
from spymaster.lake import Lake
from spymaster.live.hub import Hub
from spymaster.serving import Service
from spymaster.serving.streams import StreamsView
from spymaster.settings import ApiSettings, PushSettings, storage_settings

__all__ = ["create_app", "limit_blas_threads"]

log = logging.getLogger(__name__)

DOCS_ASSETS = "/docs-assets"
"""Where the API docs' scripts, styles and icon are served (from the ``fastapi_offline`` package)."""
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:"
)

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, 404),
    (NotCommittedError, 404),
    (InvalidQueryError, 422),
)
"""Domain error → HTTP status, the one mapping (first match wins); other errors are a generic 500."""


# -- errors and the guard ----------------------------------------------------------------------------------------


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _validation_reason(errors: Any) -> str:
    parts = []
    for e in list(errors)[:4]:
        if e.get("type") == "json_invalid":
            parts.append("the request body is not valid JSON")
            continue
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
        msg = str(e.get("msg", "invalid input")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid input"


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class Guard:
    """Outermost app middleware: API-key check on /v1, and the catch-all for unexpected errors."""

    def __init__(self, app: ASGIApp, api_key: SecretStr | None = None, max_body: int | None = None) -> None:
        self.app = app
        self.key = api_key.get_secret_value().encode() if api_key is not None else None
        self.max_body = max_body

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if self.key is not None and (path == "/v1" or path.startswith("/v1/")):
            given = dict(scope.get("headers") or []).get(API_KEY_HEADER.lower().encode(), b"")
            if not hmac.compare_digest(given, self.key):
                resp = _json(401, "missing or invalid API key", {"WWW-Authenticate": API_KEY_HEADER})
                await resp(scope, receive, send)
                return
        too_big = _json(413, f"request body is larger than {self.max_body} bytes")
        if self.max_body is not None:
            length = dict(scope.get("headers") or []).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.max_body:
                await too_big(scope, receive, send)
                return
            receive = _capped(receive, self.max_body)
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), path)
            if started:
                raise
            await _json(500, "internal error")(scope, receive, send)


def _capped(receive: Callable[[], Awaitable[Any]], limit: int) -> Callable[[], Awaitable[Any]]:
    """``receive`` that counts body bytes and stops at ``limit`` (bodies without Content-Length):
    the route's body read fails with a 413, rendered by the app's HTTP-error handler."""
    seen = 0

    async def wrapped() -> Any:
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise StarletteHTTPException(413, f"request body is larger than {limit} bytes")
        return message

    return wrapped


# -- the app ---------------------------------------------------------------------------------------


def limit_blas_threads(n: int) -> bool:
    """Limit the process's BLAS pools to ``n`` threads (threadpoolctl when installed); True if done.

    Without threadpoolctl, ``OPENBLAS_NUM_THREADS`` set before numpy is imported does the same
    (the Lambda handler sets it).
    """
    if n <= 0:
        return False
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(limits=n, user_api="blas")
    return True


class _DocsStayLocal:
    """ReDoc's bundle shows a logo from its CDN: the docs pages may load nothing from elsewhere.

    Plain ASGI, not ``@app.middleware("http")``: a BaseHTTPMiddleware would wrap the request body
    and turn the body limit's 413 into a 400.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in ("/docs", "/redoc"):
            await self.app(scope, receive, send)
            return

        async def with_csp(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    h for h in message.get("headers", []) if h[0].lower() != b"content-security-policy"
                ]
                headers.append((b"content-security-policy", DOCS_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_csp)


def create_app(
    settings: ApiSettings | None = None,
    lake: Lake | None = None,
    *,
    service: Service | None = None,
    live: Hub | None = None,
    push: PushSettings | None = None,
) -> FastAPI:
    """The API (and the page, when ``spymaster/web`` exists) over a lake.

    ``lake`` defaults to the one the environment names (``SPYMASTER_LAKE_URI``); ``service``
    replaces the lake-backed service (benchmarks). ``live`` is the hub of a running live session
    (``/v1/live/*``; without one those routes answer 404). Nothing touches storage until a request.
    """
    s = settings or ApiSettings()
    limit_blas_threads(s.blas_threads)
    if service is None:
        if lake is None:
            lake = Lake(storage_settings())
        service = Service(lake, table_check_seconds=s.table_check_seconds)

    # /docs and /redoc load Swagger UI and ReDoc from the installed fastapi-offline package, not a
    # CDN: they work offline and on a locked-down network.
    app = FastAPIOffline(
        title="Spymaster",
        version="1",
        summary="Historically, what happened from here? Similar ES level approaches and their outcomes.",
        static_url=DOCS_ASSETS,
    )
    app.state.service = service
    app.state.settings = s
    app.state.live = live
    app.state.push = push or PushSettings()
    app.state.streams = StreamsView(service.lake)

    app.add_middleware(_DocsStayLocal)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _json(422, _validation_reason(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=headers)
        return _json(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(SpymasterError)
    async def _domain(request: Request, exc: SpymasterError) -> JSONResponse:
        for kind, status in _STATUS:
            if isinstance(exc, kind):
                return _json(status, exc.message)
        log.error("error on %s %s: %s", request.method, request.url.path, exc)
        return _json(500, "internal error")

    app.include_router(page.meta)
    v1 = APIRouter(
        prefix="/v1", dependencies=api_key_dependencies(s.api_key is not None), responses=ERROR_RESPONSES
    )
    for routes in (days.router, query.router, report.router, live_routes.router, streams.router):
        v1.include_router(routes)
    app.include_router(v1)
    app.include_router(page.page)
    if page.WEB_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=page.WEB_DIR), name="static")

    app.add_middleware(Guard, api_key=s.api_key, max_body=s.max_body_bytes)  # type: ignore[arg-type]
    return app

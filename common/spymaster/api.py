"""The HTTP API (FastAPI): one app for uvicorn locally and Mangum in Lambda.

``create_app`` wires the routes to a :class:`spymaster.serving.Service`. Errors are JSON
``{"detail": "<reason>"}``: domain errors are mapped to statuses in one place (``_STATUS``);
request validation errors become one readable 422 reason; anything unexpected is logged and
answered with a generic 500 that carries no detail (no traceback, no path). When
``SPYMASTER_API_KEY`` is set every ``/v1`` route needs the ``X-API-Key`` header (401 otherwise);
``/health``, the docs and the page stay open.
"""

from __future__ import annotations

import datetime as dt
import hmac
import importlib.util
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from enum import StrEnum
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    model_validator,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from spymaster import sessions, vectors
from spymaster.errors import NotCommittedError, SpymasterError
from spymaster.lake import Lake
from spymaster.levels import DIRECTIONS, LEVEL_KINDS
from spymaster.outcomes import HORIZONS_MIN, PRIMARY_HORIZON_MIN
from spymaster.serving import (
    REPORT_MEDIA_TYPES,
    InvalidQueryError,
    NotFoundError,
    Service,
)
from spymaster.settings import SERVED, ApiSettings, storage_settings

__all__ = ["ApiSettings", "create_app", "limit_blas_threads"]

log = logging.getLogger(__name__)

WEB_DIR = FsPath(__file__).parent / "web"
API_KEY_HEADER = "X-API-Key"

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, 404),
    (NotCommittedError, 404),
    (InvalidQueryError, 422),
)
"""Domain error → HTTP status, the one mapping (first match wins); other errors are a generic 500."""


# -- input types -----------------------------------------------------------------------------------

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")


def parse_date(v: Any) -> dt.date:
    """``YYYY-MM-DD`` → a date, with the reason when it is not one."""
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return v
    if not isinstance(v, str) or not _DATE_RE.match(v):
        raise ValueError("dates are YYYY-MM-DD strings")
    try:
        return dt.date.fromisoformat(v)
    except ValueError:
        raise ValueError(f"{v} is not a calendar date") from None


def parse_time(v: Any) -> dt.time:
    """ET wall-clock ``HH:MM`` or ``HH:MM:SS`` between 09:30 and 12:30."""
    if isinstance(v, dt.time):
        t = v
    else:
        if not isinstance(v, str) or not _TIME_RE.match(v):
            raise ValueError("times are HH:MM or HH:MM:SS strings (ET)")
        try:
            t = dt.time.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{v} is not a time of day") from None
    if not sessions.RTH_OPEN <= t <= sessions.QUERY_END:
        raise ValueError(f"{t.isoformat()} is outside 09:30–12:30 ET")
    return t


DateIn = Annotated[
    dt.date,
    BeforeValidator(parse_date),
    WithJsonSchema({"type": "string", "format": "date", "examples": ["2026-03-05"]}),
]
TimeIn = Annotated[
    dt.time,
    BeforeValidator(parse_time),
    WithJsonSchema({"type": "string", "pattern": _TIME_RE.pattern, "examples": ["10:02", "10:02:30"]}),
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
LevelKind = Literal["PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW", "SMA_90", "EMA_20"]
Direction = Literal["UP", "DOWN"]
Horizon = Literal[2, 4, 8, 20]
if TYPE_CHECKING:
    Group = str
else:
    Group = StrEnum("Group", {g: g for g in vectors.VECTOR_GROUPS})
    """The feature groups a request may weigh: :data:`spymaster.vectors.VECTOR_GROUPS`, as an enum."""
assert set(LevelKind.__args__) == set(LEVEL_KINDS)  # type: ignore[attr-defined]
assert set(Direction.__args__) == set(DIRECTIONS)  # type: ignore[attr-defined]
assert set(Horizon.__args__) == set(HORIZONS_MIN)  # type: ignore[attr-defined]


class PartitionRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level_kind: LevelKind
    direction: Direction
    time_bucket: int = Field(ge=0, le=4, description="0: 0–15, 1: 15–30, 2: 30–60, 3: 60–120, 4: 120–180 min")


class SimilarRequest(BaseModel):
    """Exactly one of: ``episode_id``; ``date`` + ``time`` + ``level_kind``; ``vector`` + ``partition``
    + ``as_of``."""

    model_config = ConfigDict(extra="forbid")

    episode_id: str | None = Field(default=None, min_length=1, max_length=64)
    date: DateIn | None = None
    time: TimeIn | None = Field(default=None, description="ET wall clock, 09:30–12:30 (floored to 30 s)")
    level_kind: LevelKind | None = None
    vector: list[FiniteFloat] | None = Field(
        default=None,
        min_length=vectors.VECTOR_DIM,
        max_length=vectors.VECTOR_DIM,
        description="A normalised vector (the table's `vector` space)",
    )
    partition: PartitionRef | None = None
    as_of: DateIn | None = Field(
        default=None,
        description="Neighbours strictly before this date; default (and latest) the query's date",
    )
    k: int = Field(default=SERVED.k, ge=1, description="Neighbours (at most the server's max_k, default 500)")
    max_per_day: int = Field(default=SERVED.max_per_day, ge=1, le=50)
    weights: dict[Group, Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        default=None,
        description=(
            "Feature-group weights, each overriding the served default for its group (0 ablates a "
            "group); served defaults: "
            + (", ".join(f"{g} {w:g}" for g, w in sorted(SERVED.weights.items())) or "none")
            + ", every other group 1"
        ),
    )
    horizon: Horizon = PRIMARY_HORIZON_MIN

    @model_validator(mode="after")
    def _one_mode(self) -> SimilarRequest:
        state = (self.date, self.time, self.level_kind)
        modes = [
            self.episode_id is not None,
            any(x is not None for x in state),
            self.vector is not None or self.partition is not None,
        ]
        if sum(modes) != 1:
            raise ValueError("give exactly one of: episode_id; date + time + level_kind; vector + partition")
        if modes[1] and any(x is None for x in state):
            raise ValueError("a state query needs date, time and level_kind")
        if modes[2] and (self.vector is None or self.partition is None or self.as_of is None):
            raise ValueError("a vector query needs vector, partition and as_of")
        return self


# -- response models (documentation; the service returns plain dicts) ------------------------------


class ErrorBody(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    episodes: int
    table_version: int | None


class DayInfo(BaseModel):
    date: str
    episodes: int
    indexed: bool


class Days(BaseModel):
    days: list[DayInfo]


class Bar(BaseModel):
    t: str = Field(description="bar close, UTC")
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: int


class Bars(BaseModel):
    date: str
    bars: list[Bar]


class LevelPoint(BaseModel):
    t: str
    value: float | None


class LevelSeries(BaseModel):
    kind: str
    points: list[LevelPoint]


class Levels(BaseModel):
    date: str
    levels: list[LevelSeries]


class Probs(BaseModel):
    BREAK: float
    REJECT: float
    CHOP: float


class Intervals(BaseModel):
    BREAK: tuple[float, float]
    REJECT: tuple[float, float]
    CHOP: tuple[float, float]


class Signal(BaseModel):
    t: str
    level_kind: str
    direction: str
    distance: float | None
    p: Probs
    interval: Intervals
    n: int
    n_eff: float
    smoothed: Probs
    base_rate: Probs = Field(description="the partition's outcome rates over its rows before this date")
    base_n: int = Field(description="labelled partition rows behind base_rate")


class Signals(BaseModel):
    date: str
    horizon: int
    smoothing_alpha: float = Field(description="EMA weight of the newest bar in `smoothed`")
    signals: list[Signal]


class QueryInfo(BaseModel):
    date: str | None
    time: str | None = Field(description="ET wall clock HH:MM:SS")
    ts: str | None
    level_kind: str
    direction: str
    time_bucket: int
    partition: str
    as_of: str
    stats_version: str | None
    episode_id: str | None
    table_version: int | None


class NeighbourOut(BaseModel):
    episode_id: str
    date: str
    time: str = Field(description="ET wall clock HH:MM:SS")
    similarity: float
    weight: float
    outcome: str | None
    mfe: float | None
    mae: float | None
    level_kind: str
    direction: str
    time_bucket: int


class DistributionOut(BaseModel):
    horizon: int
    p: Probs
    interval: Intervals
    counts: Probs = Field(description="similarity-weighted counts")
    n: int
    n_eff: float
    base_rate: Probs
    base_n: int
    expected_mfe: float | None
    expected_mae: float | None
    prior: Probs


class SimilarResponse(BaseModel):
    query: QueryInfo
    neighbours: list[NeighbourOut]
    distribution: DistributionOut


class PartitionInfo(BaseModel):
    key: str
    level_kind: str
    direction: str
    time_bucket: int
    n: int
    base_rate: Probs


class Partitions(BaseModel):
    partitions: list[PartitionInfo]


class ReportFile(BaseModel):
    name: str = Field(description="served at /v1/report/files/{name}")
    kind: Literal["report", "metrics", "plot"]
    media_type: str


class ReportOut(BaseModel):
    run_id: str
    created_at: str | None
    start: str | None
    end: str | None
    markdown: str = Field(description="the report (its images are the files named in `plots`)")
    metrics: dict[str, Any] = Field(description="every number of the run (metrics.json)")
    plots: dict[str, str] = Field(description="plot (reliability, lift, coverage) → file name")
    files: list[ReportFile]


# -- errors ----------------------------------------------------------------------------------------


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


class _Guard:
    """Outermost app middleware: API-key check on /v1, and the catch-all for unexpected errors."""

    def __init__(self, app: ASGIApp, api_key: SecretStr | None = None) -> None:
        self.app = app
        self.key = api_key.get_secret_value().encode() if api_key is not None else None

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


# -- the app ---------------------------------------------------------------------------------------


def _plotly_js() -> FsPath | None:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = FsPath(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


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


def _date(value: str) -> dt.date:
    try:
        return parse_date(value)
    except ValueError as exc:
        raise InvalidQueryError(str(exc)) from None


DatePath = Annotated[str, Path(description="YYYY-MM-DD", examples=["2026-03-05"])]
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody, "description": d}
    for s, d in ((401, "Missing or wrong API key"), (404, "Not in the lake"), (422, "Invalid input"))
}


def create_app(
    settings: ApiSettings | None = None, lake: Lake | None = None, *, service: Service | None = None
) -> FastAPI:
    """The API (and the page, when ``spymaster/web`` exists) over a lake.

    ``lake`` defaults to the one the environment names (``SPYMASTER_LAKE_URI``); ``service``
    replaces the lake-backed service (benchmarks). Nothing touches storage until a request.
    """
    s = settings or ApiSettings()
    limit_blas_threads(s.blas_threads)
    if service is None:
        if lake is None:
            lake = Lake(storage_settings())
        service = Service(lake, table_check_seconds=s.table_check_seconds)
    svc = service
    max_k = s.max_k

    app = FastAPI(
        title="Spymaster",
        version="1",
        summary="Historically, what happened from here? Similar ES level approaches and their outcomes.",
    )
    app.state.service = svc
    app.state.settings = s

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

    deps = [Depends(APIKeyHeader(name=API_KEY_HEADER, auto_error=False))] if s.api_key is not None else []
    v1 = APIRouter(prefix="/v1", dependencies=deps, responses=_ERRORS)

    @app.get("/health", response_model=Health, tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness, episodes in memory and the vector table version."""
        return svc.health()

    @v1.get("/days", response_model=Days, tags=["days"])
    def days() -> dict[str, Any]:
        """Dates with committed silver, their episode counts and whether they are indexed."""
        return svc.days()

    @v1.get("/days/{date}/bars", response_model=Bars, tags=["days"])
    def bars(date: DatePath) -> dict[str, Any]:
        """2-minute bars (t = bar close) from 09:00 to 12:30 ET."""
        return svc.bars(_date(date))

    @v1.get("/days/{date}/levels", response_model=Levels, tags=["days"])
    def levels(date: DatePath) -> dict[str, Any]:
        """The six levels per 30-s step from 09:30 to 12:30 ET (null while not active)."""
        return svc.levels(_date(date))

    @v1.get("/days/{date}/signals", response_model=Signals, tags=["days"])
    def signals(
        date: DatePath,
        horizon: Annotated[int, Query(json_schema_extra={"enum": list(HORIZONS_MIN)})] = PRIMARY_HORIZON_MIN,
        k: Annotated[int, Query(ge=1, description="Neighbours per signal (at most max_k)")] = SERVED.k,
    ) -> dict[str, Any]:
        """Per 2-minute bar close and level in its zone: the outcome distribution as of that date."""
        return svc.signals(_date(date), horizon=horizon, k=k, max_k=max_k)

    @v1.post("/similar", response_model=SimilarResponse, tags=["query"])
    def similar(body: SimilarRequest) -> dict[str, Any]:
        """Nearest earlier episodes of a state and the distribution of what followed."""
        if body.k > max_k:
            raise InvalidQueryError(f"k must be between 1 and {max_k}")
        return svc.similar(
            episode_id=body.episode_id,
            date=body.date,
            time=body.time,
            level_kind=body.level_kind,
            vector=body.vector,
            partition=body.partition.model_dump() if body.partition is not None else None,
            as_of=body.as_of,
            k=body.k,
            max_per_day=body.max_per_day,
            weights={str(g): w for g, w in body.weights.items()} if body.weights else None,
            horizon=body.horizon,
            max_k=max_k,
        )

    @v1.get("/partitions", response_model=Partitions, tags=["query"])
    def partitions() -> dict[str, Any]:
        """Episodes and primary-horizon base rates per partition."""
        return svc.partitions()

    @v1.get("/report", response_model=ReportOut, tags=["evaluation"])
    def report() -> dict[str, Any]:
        """The latest walk-forward evaluation report: its metrics, markdown and files (404 if none)."""
        return svc.report()

    @v1.get(
        "/report/files/{name}",
        tags=["evaluation"],
        response_class=Response,
        responses={200: {"content": {t.split(";")[0]: {} for t in REPORT_MEDIA_TYPES.values()}}},
    )
    def report_file(
        name: Annotated[str, Path(description="a file name listed by /v1/report", max_length=128)],
    ) -> Response:
        """A file of the latest evaluation report (only the names /v1/report lists)."""
        data, media_type = svc.report_file(name)
        return Response(content=data, media_type=media_type, headers={"Cache-Control": "no-cache"})

    app.include_router(v1)

    plotly_js = _plotly_js()

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    def plotly() -> Response:
        if plotly_js is None:
            return _json(404, "plotly is not installed")
        return FileResponse(plotly_js, media_type="text/javascript")

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        index = WEB_DIR / "index.html"
        if index.is_file():
            return FileResponse(index, media_type="text/html")
        return RedirectResponse("/docs")

    if WEB_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    app.add_middleware(_Guard, api_key=s.api_key)  # type: ignore[arg-type]
    return app

"""The API's contract: input types and parsing, the request model and the response models.

Response models document the answers (the service returns plain dicts in this shape); they become
the OpenAPI schemas at ``/docs``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
    model_validator,
)

from spymaster import sessions, vectors
from spymaster.errors import InvalidQueryError
from spymaster.levels import DIRECTIONS, LEVEL_KINDS
from spymaster.outcomes import HORIZONS_MIN, PRIMARY_HORIZON_MIN
from spymaster.settings import SERVED

# -- input types -----------------------------------------------------------------------------------

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")
MIN_DATE, MAX_DATE = dt.date(1990, 1, 1), dt.date(2099, 12, 31)
"""Dates outside these are not ES sessions anyone has or will soon have (9999-12-31 is a typo)."""
MAX_ABS_COMPONENT = 1e6
"""A normalised (robust-scaled) vector component is a few units; 1e6 is already nonsense, and
beyond ~1e19 float32 overflows and every similarity becomes 0."""
MIN_WEIGHT, MAX_WEIGHT = 1e-6, 1e3
"""A group weight is 0 (ablate the group) or in this range: 1e-45 is a denormal zero in float32,
1e39 overflows it."""


def parse_date(v: Any) -> dt.date:
    """``YYYY-MM-DD`` → a date, with the reason when it is not one."""
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        d = v
    else:
        if not isinstance(v, str) or not _DATE_RE.match(v):
            raise ValueError("dates are YYYY-MM-DD strings")
        try:
            d = dt.date.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{v} is not a calendar date") from None
    if not MIN_DATE <= d <= MAX_DATE:
        raise ValueError(f"{d.isoformat()} is outside {MIN_DATE.isoformat()} … {MAX_DATE.isoformat()}")
    return d


def _exact_int(v: Any) -> Any:
    """JSON integers only: not ``8.0``, ``true`` or ``"8"`` (Literal ints would take ``8.0``)."""
    if type(v) is not int:
        raise ValueError("must be a JSON integer")
    return v


def _weight(v: float) -> float:
    if v != 0 and not MIN_WEIGHT <= v <= MAX_WEIGHT:
        raise ValueError(f"a weight is 0 or between {MIN_WEIGHT:g} and {MAX_WEIGHT:g}")
    return v


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
    WithJsonSchema(
        {"type": "string", "format": "date", "pattern": _DATE_RE.pattern, "examples": ["2026-03-05"]}
    ),
]
TimeIn = Annotated[
    dt.time,
    BeforeValidator(parse_time),
    WithJsonSchema({"type": "string", "pattern": _TIME_RE.pattern, "examples": ["10:02", "10:02:30"]}),
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS_COMPONENT, le=MAX_ABS_COMPONENT)]
Weight = Annotated[
    float,
    Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False, description=f"0, or {MIN_WEIGHT:g} … {MAX_WEIGHT:g}"),
    AfterValidator(_weight),
]
if TYPE_CHECKING:
    LevelKind = str
    Direction = str
    Horizon = int
    Group = str
else:  # the vocabulary's own tuples, as the Literal types the OpenAPI schema shows
    LevelKind = Literal[LEVEL_KINDS]
    Direction = Literal[DIRECTIONS]
    Horizon = Literal[HORIZONS_MIN]
    Group = Literal[vectors.VECTOR_GROUPS]
    """The feature groups a request may weigh: :data:`spymaster.vectors.VECTOR_GROUPS`."""


class PartitionRef(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    level_kind: LevelKind
    direction: Direction
    time_bucket: int = Field(ge=0, le=4, description="0: 0–15, 1: 15–30, 2: 30–60, 3: 60–120, 4: 120–180 min")


def _one_of(*groups: tuple[str, ...]) -> list[JsonValue]:
    """JSON Schema for "exactly one query mode": each mode's fields, and none of the others'."""
    every = [f for g in groups for f in g]
    return [
        {"required": list(g), "not": {"anyOf": [{"required": [f]} for f in every if f not in g]}}
        for g in groups
    ]


_MODES = (("episode_id",), ("date", "time", "level_kind"), ("vector", "partition", "as_of"))


class SimilarRequest(BaseModel):
    """Exactly one of: ``episode_id``; ``date`` + ``time`` + ``level_kind``; ``vector`` + ``partition``
    + ``as_of``."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # JSON types as documented: "50", true and 8.0 are not integers
        json_schema_extra={"oneOf": _one_of(*_MODES)},
    )

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
    k: int = Field(
        default=SERVED.k,
        ge=1,
        description="Neighbours (at most the server's max_k, default 500)",
        json_schema_extra={"maximum": 500},
    )
    max_per_day: int = Field(default=SERVED.max_per_day, ge=1, le=50)
    weights: dict[Group, Weight] | None = Field(
        default=None,
        description=(
            "Feature-group weights, each overriding the served default for its group (0 ablates a "
            "group); served defaults: "
            + (", ".join(f"{g} {w:g}" for g, w in sorted(SERVED.weights.items())) or "none")
            + ", every other group 1"
        ),
    )
    horizon: Annotated[Horizon, BeforeValidator(_exact_int)] = PRIMARY_HORIZON_MIN

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
    options: bool = Field(
        description="the day's ES options files were there: its dealer features are computed (false: null)"
    )


class Days(BaseModel):
    days: list[DayInfo]


class Bar(BaseModel):
    t: str = Field(description="bar close, ISO 8601 UTC (…Z); the bar covers the 2 minutes before it")
    time: str = Field(description="the bar close as ET wall clock HH:MM:SS (the same instant as `t`)")
    open: float | None = Field(description="index points")
    high: float | None = Field(description="index points")
    low: float | None = Field(description="index points")
    close: float | None = Field(description="index points")
    volume: int = Field(description="contracts traded in the bar (front month)")


class Bars(BaseModel):
    date: str
    bars: list[Bar]


class LevelPoint(BaseModel):
    t: str = Field(description="instant, ISO 8601 UTC (…Z); `time` is the same instant as ET wall clock")
    time: str = Field(description="the same instant as `t`, ET (America/New_York) wall clock HH:MM:SS")
    value: float | None = Field(description="the level's price, index points (null before it exists)")


class LevelSeries(BaseModel):
    kind: str
    points: list[LevelPoint]


class Levels(BaseModel):
    date: str
    levels: list[LevelSeries]


class Probs(BaseModel):
    """One number per outcome: BREAK (crossed the level by 1 ATR first), REJECT (moved 1 ATR away
    first), CHOP (neither within the horizon)."""

    BREAK: float
    REJECT: float
    CHOP: float


class Intervals(BaseModel):
    """Central 80 % credible intervals [lo, hi] of each outcome's probability."""

    BREAK: tuple[float, float] = Field(description="80 % interval [lo, hi]")
    REJECT: tuple[float, float] = Field(description="80 % interval [lo, hi]")
    CHOP: tuple[float, float] = Field(description="80 % interval [lo, hi]")


class Signal(BaseModel):
    t: str = Field(description="the 2-minute bar close the probabilities are seen at, ISO 8601 UTC (…Z)")
    time: str = Field(description="the same instant as `t`, ET (America/New_York) wall clock HH:MM:SS")
    level_kind: str
    direction: str = Field(description="UP: price approaches from below; DOWN: from above")
    distance: float | None = Field(description="(price − level) / ATR, in ATR (Wilder 14 of 2-minute bars)")
    p: Probs = Field(description="outcome probabilities (smoothed toward the partition's base rate)")
    interval: Intervals = Field(description="80 % intervals")
    n: int = Field(description="neighbours behind the estimate (0: the prior alone)")
    n_eff: float = Field(description="effective number of neighbours (similarity weights)")
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
    ts: str | None = Field(description="the same instant as `time`, ISO 8601 UTC (…Z)")
    level_kind: str
    direction: str
    time_bucket: int
    partition: str
    as_of: str
    stats_version: str | None
    episode_id: str | None
    table_version: int | None
    search: Literal["exact", "ann"] = Field(
        description="which search answered: exact in memory, or the vector table's ANN index "
        "(a partition larger than the ANN setting's min_rows)"
    )


class NeighbourOut(BaseModel):
    episode_id: str
    date: str
    time: str = Field(description="ET wall clock HH:MM:SS")
    similarity: float = Field(description="cosine similarity of the normalised vectors, −1 … 1")
    weight: float = Field(description="the neighbour's weight in the distribution (similarity⁴, time decay)")
    outcome: str | None = Field(description="BREAK, REJECT or CHOP at the horizon")
    mfe: float | None = Field(description="maximum favourable excursion within the horizon, in ATR")
    mae: float | None = Field(description="maximum adverse excursion within the horizon, in ATR")
    level_kind: str
    direction: str
    time_bucket: int


class DistributionOut(BaseModel):
    horizon: int = Field(description="minutes after the query instant: 2, 4, 8 or 20")
    p: Probs
    interval: Intervals = Field(description="80 % intervals")
    counts: Probs = Field(description="similarity-weighted counts")
    n: int = Field(description="neighbours (0: the probabilities are the prior alone)")
    n_eff: float = Field(description="effective number of neighbours (similarity weights)")
    base_rate: Probs
    base_n: int
    expected_mfe: float | None = Field(description="weighted mean favourable excursion, in ATR")
    expected_mae: float | None = Field(description="weighted mean adverse excursion, in ATR")
    prior: Probs


class SetupModelInfo(BaseModel):
    version: str = Field(description="content hash of the fitted model (models/similarity/<version>.json)")
    method: str
    kernel: str = Field(default="uniform", description="how the neighbours are weighed: uniform or gaussian")
    population: str = Field(description="anchor reason of the rows the model fits on and searches")
    fitted_through: str | None = Field(description="last training date (always before as_of)")
    train_days: int


class SetupNeighbour(BaseModel):
    episode_id: str
    date: str
    time: str = Field(description="ET wall clock HH:MM:SS")
    level_kind: str
    direction: str
    outcome: str = Field(description="first crossing at 1 ATR within 8 min")
    distance: float = Field(description="distance in the learned metric (smaller = more alike)")
    weight: float = Field(
        default=1.0,
        description="this neighbour's weight in p_break_raw (the model's kernel; 1 = the nearest)",
    )


class SetupEvidence(BaseModel):
    level_kind: str
    measured: dict[str, float] = Field(
        description="out-of-sample n, AUC and Brier skill of this model's answers at this level kind"
    )
    overall: dict[str, float]
    verdict: str


class SetupAnswer(BaseModel):
    model: SetupModelInfo
    p_break: float = Field(description="P(BREAK within 8 min), calibrated (Platt on earlier days)")
    p_break_raw: float
    interval: list[float] = Field(description="80 % interval of P(BREAK)")
    interval_level: float
    n: int = Field(description="neighbours the probability is computed from (weighed by the model's kernel)")
    breaks: int
    neighbours: list[SetupNeighbour]
    evidence: SetupEvidence


class SimilarResponse(BaseModel):
    query: QueryInfo
    neighbours: list[NeighbourOut]
    distribution: DistributionOut
    setup: SetupAnswer | None = Field(
        default=None,
        description="the learned similarity's answer over earlier approach episodes (null before `spymaster fit`)",
    )


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


class StreamInfo(BaseModel):
    name: str
    symbol: str
    kind: str = Field(description="canonical, merged or composite")
    definition: str


class StreamBar(BaseModel):
    t: str = Field(description="the 2-minute bar close, ISO 8601 UTC (…Z)")
    time: str = Field(description="the same instant, ET wall clock HH:MM:SS")
    direction: str
    values: dict[str, float | None] = Field(description="stream → value in [−1, 1] (null: not defined)")


class StreamAlert(BaseModel):
    alert: str
    t: str
    time: str
    cleared: str | None = Field(description="ET time it cleared (null: still active at the as-of bar)")
    active: bool
    confidence: float
    severity: str
    expects: str | None = Field(description="the outcome the alert argues for (null: a quality gate)")


class StreamProjection(BaseModel):
    model_version: str
    trained_on: list[str] = Field(description="first and last earlier day the model was fitted on")
    t: list[str]
    time: list[str]
    curves: dict[str, dict[str, list[float]]] = Field(
        description="stream → q10 / q50 / q90 → one value per bar ahead"
    )


class StreamExit(BaseModel):
    position: str
    direction: str
    score: float | None = Field(description="0 … 1, 1: exit (docs/STREAMS.md)")


class StreamsOut(BaseModel):
    date: str
    level_kind: str
    as_of: str
    as_of_time: str
    direction: str
    scaling_days: int = Field(description="earlier days the streams' scaling was fitted on")
    scaling_version: str | None
    streams: list[StreamInfo]
    bars: list[StreamBar]
    latest: dict[str, dict[str, float | None]] = Field(description="stream → value, slope, curv, jerk")
    projection: StreamProjection | None = Field(description="null while no model is fitted for the date")
    alerts: list[StreamAlert]
    exit: StreamExit | None


def path_date(value: str) -> dt.date:
    try:
        return parse_date(value)
    except ValueError as exc:
        raise InvalidQueryError(str(exc)) from None


DatePath = Annotated[str, Path(description="YYYY-MM-DD", examples=["2026-03-05"])]
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody, "description": d}
    for s, d in ((401, "Missing or wrong API key"), (404, "Not in the lake"), (422, "Invalid input"))
}

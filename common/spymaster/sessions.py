"""Trading calendar, session windows, the 30-s step grid, 2-minute bar closes and ES contract months.

Trading dates, holidays and early closes come from a maintained exchange calendar
(``pandas_market_calendars``: CME Globex equity, intersected with NYSE for the cash session),
computed offline; nothing is fetched. All session times are wall-clock America/New_York converted with ``zoneinfo`` per date, so the
UTC offset follows US DST; no offset is hard-coded anywhere.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

ET = ZoneInfo("America/New_York")
UTC = dt.UTC

RTH_OPEN = dt.time(9, 30)
RTH_CLOSE = dt.time(16, 0)
QUERY_END = dt.time(12, 30)
OR_END = dt.time(9, 45)
PREMARKET_START = dt.time(4, 0)
GLOBEX_OPEN = dt.time(18, 0)  # previous calendar evening
GLOBEX_CLOSE = dt.time(17, 0)

NS = 1_000_000_000
"""Nanoseconds per second: every timestamp is ns since the epoch (UTC)."""
STEP_S = 30
"""The state grid: one step every 30 s from 09:30 to 12:30 ET."""
STEP_NS = STEP_S * NS
BAR_CLOSE_S = 120
"""2-minute bars close every 120 s counted from the 18:00 ET Globex open."""
BAR_CLOSE_NS = BAR_CLOSE_S * NS
EPOCH = dt.date(1970, 1, 1)

MONTH_CODES = {3: "H", 6: "M", 9: "U", 12: "Z"}
ROLL_DAYS_BEFORE_EXPIRY = 8
"""Front month rolls on the Thursday eight days before the third-Friday expiry (CME's roll date)."""


CALENDAR_FIRST = dt.date(1990, 1, 1)
CALENDAR_LAST = dt.date(2100, 12, 31)
"""The span the exchange calendar is asked about (its rules are computed offline, per year)."""
_CME = "CME Globex Equity"
"""pandas_market_calendars' CME Globex equity-index calendar (ES): its holidays and early closes."""


@dataclass(frozen=True)
class TradingDay:
    """A trading date's hours from the exchange calendars, ET wall clock."""

    globex_close: dt.time
    """CME Globex equity close: 17:00 ET, earlier on an early close (13:15 ET the day after Thanksgiving)."""
    rth_close: dt.time
    """NYSE cash close: 16:00 ET, 13:00 ET on a half day."""

    @property
    def early_close(self) -> bool:
        return self.globex_close < GLOBEX_CLOSE


class CalendarRangeError(ValueError):
    """A date outside the span the exchange calendar is asked about."""


@cache
def _calendars() -> tuple[Any, Any]:
    import pandas_market_calendars as pmc  # ~1 s to import and build: only when a date is asked about

    return pmc.get_calendar(_CME), pmc.get_calendar("NYSE")


_YEARS: dict[int, dict[dt.date, TradingDay]] = {}
"""The years asked about so far, from the calendars or :func:`seed_calendar`."""


def _year(year: int) -> dict[dt.date, TradingDay]:
    """Every trading date of a year (the calendars are asked once per year)."""
    got = _YEARS.get(year)
    if got is None:
        got = _YEARS[year] = _schedule(year)
    return got


def _schedule(year: int) -> dict[dt.date, TradingDay]:
    """Every trading date of a year: a CME Globex equity session that is also an NYSE session.

    The NYSE condition drops the days CME trades an abbreviated holiday session (Thanksgiving,
    Independence Day, MLK and Presidents' days, Good Friday, …): without the 09:30 cash open
    there are no opening-range levels and no query window."""
    cme, nyse = _calendars()
    lo, hi = f"{year}-01-01", f"{year}-12-31"
    with warnings.catch_warnings():
        # pandas_market_calendars 5.5 still calls Series.dt.weekday (a pandas 4 deprecation)
        warnings.filterwarnings("ignore", message=".*weekday is deprecated", category=Warning)
        c = cme.schedule(lo, hi)
        n = nyse.schedule(lo, hi)
    rth = {
        ts.date(): close.tz_convert(str(ET)).time()
        for ts, close in zip(n.index, n["market_close"], strict=True)
    }
    out: dict[dt.date, TradingDay] = {}
    for ts, close in zip(c.index, c["market_close"], strict=True):
        d = ts.date()
        if d in rth:
            out[d] = TradingDay(globex_close=close.tz_convert(str(ET)).time(), rth_close=rth[d])
    return out


def _calendar_version() -> str:
    """The installed calendar library's version (package metadata: no import)."""
    return importlib.metadata.version("pandas-market-calendars")


def calendar_years(years: Iterable[int]) -> dict[str, Any]:
    """The trading days of ``years`` as plain JSON data, for :func:`seed_calendar` elsewhere.

    The indexer stores this beside the vector-table snapshot: the API's cold start then skips
    importing the calendar library and building its schedules (≈ 1 s of CPU)."""
    out: dict[str, Any] = {"library": _calendar_version(), "years": {}}
    for y in sorted(set(years)):
        if CALENDAR_FIRST.year <= y <= CALENDAR_LAST.year:
            out["years"][str(y)] = [
                [d.isoformat(), td.globex_close.isoformat(), td.rth_close.isoformat()]
                for d, td in sorted(_year(y).items())
            ]
    return out


def seed_calendar(data: dict[str, Any]) -> bool:
    """Take the years of :func:`calendar_years` data as this process's calendar, unless it was
    built by another version of the calendar library (then the library answers, as without it).
    True when seeded."""
    if data.get("library") != _calendar_version():
        return False
    for y, rows in data.get("years", {}).items():
        _YEARS.setdefault(
            int(y),
            {
                dt.date.fromisoformat(d): TradingDay(dt.time.fromisoformat(g), dt.time.fromisoformat(r))
                for d, g, r in rows
            },
        )
    return True


def trading_day(d: dt.date) -> TradingDay | None:
    """The hours of trading date ``d``, or ``None`` for a weekend or an exchange holiday.

    Raises
    ------
    CalendarRangeError
        ``d`` is outside 1990-01-01 … 2100-12-31.
    """
    if not CALENDAR_FIRST <= d <= CALENDAR_LAST:
        raise CalendarRangeError(f"{d} is outside the exchange calendar ({CALENDAR_FIRST} … {CALENDAR_LAST})")
    if d.weekday() >= 5:
        return None
    return _year(d.year).get(d)


def is_trading_day(d: dt.date) -> bool:
    """A CME Globex equity session with an NYSE cash session (so: no weekend, no exchange holiday)."""
    return trading_day(d) is not None


def why_not_trading(d: dt.date) -> str:
    """A reason a user can read: "a Saturday", "an exchange holiday"."""
    if d.weekday() >= 5:
        return f"a {d:%A}"
    return "an exchange holiday (CME Globex equity / NYSE calendar)"


def globex_close(d: dt.date) -> dt.time:
    """The Globex close of trading date ``d`` (ET): 17:00, or earlier on an early close."""
    td = trading_day(d)
    return td.globex_close if td is not None else GLOBEX_CLOSE


def rth_close(d: dt.date) -> dt.time:
    """The NYSE cash close of trading date ``d`` (ET): 16:00, or 13:00 on a half day."""
    td = trading_day(d)
    return td.rth_close if td is not None else RTH_CLOSE


def trading_days(start: dt.date, n: int) -> list[dt.date]:
    """``n`` consecutive trading days from ``start`` (inclusive), skipping weekends and holidays."""
    out: list[dt.date] = []
    d = start
    while len(out) < n:
        if is_trading_day(d):
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def trading_days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Trading days in ``[start, end]``."""
    days = (end - start).days + 1
    return [
        start + dt.timedelta(days=i)
        for i in range(max(days, 0))
        if is_trading_day(start + dt.timedelta(days=i))
    ]


def previous_trading_day(d: dt.date) -> dt.date:
    d -= dt.timedelta(days=1)
    while not is_trading_day(d):
        d -= dt.timedelta(days=1)
    return d


def next_trading_day(d: dt.date) -> dt.date:
    d += dt.timedelta(days=1)
    while not is_trading_day(d):
        d += dt.timedelta(days=1)
    return d


def et_ns(d: dt.date, t: dt.time) -> int:
    """Nanoseconds since the epoch (UTC) of wall-clock time ``t`` in New York on date ``d``."""
    return int(dt.datetime.combine(d, t, tzinfo=ET).timestamp()) * NS


def globex_session(d: dt.date) -> tuple[int, int]:
    """(open, close) ns UTC of the Globex session that trades for date ``d``: 18:00 ET the
    previous evening (Sunday evening for a Monday) to 17:00 ET on ``d``, or to the early close
    the exchange calendar gives (13:15 ET the day after Thanksgiving)."""
    return et_ns(d - dt.timedelta(days=1), GLOBEX_OPEN), et_ns(d, globex_close(d))


def step_times(date: dt.date) -> npt.NDArray[np.int64]:
    """The 361 step stamps 09:30:00 … 12:30:00 ET (ns UTC)."""
    start = et_ns(date, RTH_OPEN)
    end = et_ns(date, QUERY_END)
    return np.arange(start, end + 1, STEP_NS, dtype=np.int64)


def is_bar_close(ts: npt.NDArray[np.int64], date: dt.date) -> npt.NDArray[np.bool_]:
    """Whether each stamp is a 2-minute bar close (bars aligned to the 18:00 ET Globex open)."""
    out: npt.NDArray[np.bool_] = (ts - globex_session(date)[0]) % BAR_CLOSE_NS == 0
    return out


def bar_closes(date: dt.date) -> npt.NDArray[np.int64]:
    """2-minute bar closes from 09:30 to 12:30 ET (ns UTC)."""
    steps = step_times(date)
    out: npt.NDArray[np.int64] = steps[is_bar_close(steps, date)]
    return out


def day_number(d: dt.date) -> int:
    """Days since 1970-01-01 (how in-memory tables store a date)."""
    return (d - EPOCH).days


def from_day_number(n: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(n))


def utc_offset_hours(d: dt.date, t: dt.time = RTH_OPEN) -> float:
    off = dt.datetime.combine(d, t, tzinfo=ET).utcoffset()
    assert off is not None
    return off.total_seconds() / 3600


@dataclass(frozen=True, order=True)
class Contract:
    """A quarterly ES future, e.g. ESH6."""

    year: int
    month: int

    @property
    def symbol(self) -> str:
        return f"ES{MONTH_CODES[self.month]}{self.year % 10}"

    @property
    def expiry(self) -> dt.date:
        """Third Friday of the contract month."""
        first = dt.date(self.year, self.month, 1)
        first_friday = first + dt.timedelta(days=(4 - first.weekday()) % 7)
        return first_friday + dt.timedelta(days=14)

    @property
    def roll_date(self) -> dt.date:
        return self.expiry - dt.timedelta(days=ROLL_DAYS_BEFORE_EXPIRY)

    def next(self) -> Contract:
        return Contract(self.year + 1, 3) if self.month == 12 else Contract(self.year, self.month + 3)


def contract_for_month(d: dt.date) -> Contract:
    """The first quarterly contract whose month is not before ``d``'s month."""
    m = ((d.month - 1) // 3 + 1) * 3
    return Contract(d.year, m)


def front_month(d: dt.date) -> Contract:
    """Front month on trading date ``d``: the nearest contract until its roll date, then the next."""
    c = contract_for_month(d)
    while d >= c.roll_date:
        c = c.next()
    return c


def listed_contracts(d: dt.date) -> tuple[Contract, Contract]:
    """Front month and the next contract (the pair whose definitions a day carries)."""
    f = front_month(d)
    return f, f.next()

"""Trading calendar, session windows, the 30-s step grid, 2-minute bar closes and ES contract months.

All session times are wall-clock America/New_York converted with ``zoneinfo`` per date, so the
UTC offset follows US DST; no offset is hard-coded anywhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
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


def is_trading_day(d: dt.date) -> bool:
    """Weekdays. Exchange holidays are not modelled (the generator only needs weekdays)."""
    return d.weekday() < 5


def trading_days(start: dt.date, n: int) -> list[dt.date]:
    """``n`` consecutive trading days from ``start`` (inclusive), skipping weekends."""
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
    previous evening (Sunday evening for a Monday) to 17:00 ET on ``d``."""
    return et_ns(d - dt.timedelta(days=1), GLOBEX_OPEN), et_ns(d, GLOBEX_CLOSE)


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

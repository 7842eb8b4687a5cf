"""The exchange calendar: CME Globex equity sessions with an NYSE cash session, holidays skipped,
early closes given, and every session long enough for the query window and the longest horizon."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from spymaster import evaluation, sessions

D = dt.date


@pytest.mark.parametrize(
    "holiday",
    [
        D(2026, 1, 1),  # New Year's Day
        D(2026, 1, 19),  # Martin Luther King Jr. Day (CME trades a short session; no cash open)
        D(2026, 2, 16),  # Presidents' Day
        D(2026, 4, 3),  # Good Friday
        D(2026, 5, 25),  # Memorial Day
        D(2026, 6, 19),  # Juneteenth
        D(2026, 7, 3),  # Independence Day observed
        D(2026, 9, 7),  # Labor Day
        D(2026, 11, 26),  # Thanksgiving
        D(2026, 12, 25),  # Christmas
    ],
)
def test_exchange_holidays_are_not_trading_days(holiday: dt.date) -> None:
    assert holiday.weekday() < 5
    assert not sessions.is_trading_day(holiday)
    assert "holiday" in sessions.why_not_trading(holiday)


@pytest.mark.parametrize("half_day", [D(2026, 11, 27), D(2026, 12, 24)])
def test_early_closes_end_the_session_at_13_15_et(half_day: dt.date) -> None:
    td = sessions.trading_day(half_day)
    assert td is not None
    assert td.early_close
    assert td.globex_close == dt.time(13, 15)  # 12:15 CT
    assert td.rth_close == dt.time(13, 0)
    _, close = sessions.globex_session(half_day)
    assert close == sessions.et_ns(half_day, dt.time(13, 15))


def test_a_regular_day() -> None:
    td = sessions.trading_day(D(2026, 11, 25))
    assert td is not None
    assert not td.early_close
    assert (td.globex_close, td.rth_close) == (dt.time(17, 0), dt.time(16, 0))
    assert sessions.trading_day(D(2026, 11, 28)) is None  # a Saturday
    assert sessions.why_not_trading(D(2026, 11, 28)) == "a Saturday"


def test_counting_trading_days_skips_holidays() -> None:
    assert sessions.trading_days(D(2026, 11, 25), 3) == [D(2026, 11, 25), D(2026, 11, 27), D(2026, 11, 30)]
    assert sessions.trading_days(D(2026, 12, 24), 3) == [D(2026, 12, 24), D(2026, 12, 28), D(2026, 12, 29)]
    assert sessions.trading_days_between(D(2026, 11, 23), D(2026, 11, 29)) == [
        D(2026, 11, 23),
        D(2026, 11, 24),
        D(2026, 11, 25),
        D(2026, 11, 27),
    ]
    assert sessions.previous_trading_day(D(2026, 11, 27)) == D(2026, 11, 25)
    assert sessions.next_trading_day(D(2026, 11, 25)) == D(2026, 11, 27)


def test_the_walk_forward_embargo_counts_trading_days_not_holidays() -> None:
    assert evaluation.cutoff_date(D(2026, 11, 27), 1) == D(2026, 11, 25)
    assert evaluation.cutoff_date(D(2026, 11, 30), 2) == D(2026, 11, 25)
    assert evaluation.cutoff_date(D(2026, 1, 20), 1) == D(2026, 1, 16)  # over MLK day and a weekend


def test_every_session_holds_the_query_window_and_the_longest_horizon() -> None:
    # A half day is handled, not assumed: the 09:30–12:30 ET query window plus the 20-minute
    # horizon must end before the session does, on every trading day of the calendar.
    latest = (dt.datetime.combine(D(2000, 1, 1), sessions.QUERY_END) + dt.timedelta(minutes=20)).time()
    days = sessions.trading_days_between(D(2000, 1, 1), D(2030, 12, 31))
    assert len(days) > 7000
    early = [d for d in days if sessions.globex_close(d) < sessions.GLOBEX_CLOSE]
    assert early
    assert all(sessions.globex_close(d) >= latest for d in days)
    assert all(sessions.rth_close(d) >= latest for d in days)


def test_dates_outside_the_calendar_are_refused() -> None:
    with pytest.raises(sessions.CalendarRangeError, match="outside the exchange calendar"):
        sessions.is_trading_day(D(1989, 12, 29))


_SEEDED_CHILD = """
import datetime as dt, json, sys
from spymaster import sessions
assert sessions.seed_calendar(json.loads(sys.stdin.read()))
days = [d.isoformat() for d in sessions.trading_days_between(dt.date(2025, 1, 1), dt.date(2026, 12, 31))]
closes = [sessions.globex_close(dt.date(2025, 11, 28)).isoformat(), sessions.rth_close(dt.date(2025, 11, 28)).isoformat()]
print(json.dumps({"days": days, "closes": closes, "library": "pandas_market_calendars" in sys.modules}))
"""


def test_a_seeded_calendar_answers_as_the_library_does_without_importing_it() -> None:
    # Given the trading days of two years exported from the library
    data = sessions.calendar_years([2025, 2026])
    # When a fresh process takes them as its calendar
    out = subprocess.run(
        [sys.executable, "-c", _SEEDED_CHILD],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout)
    # Then it gives the same days and early closes, and never imported the library
    want = [d.isoformat() for d in sessions.trading_days_between(D(2025, 1, 1), D(2026, 12, 31))]
    assert got["days"] == want
    assert len(want) > 480
    assert got["closes"] == [sessions.globex_close(D(2025, 11, 28)).isoformat(), "13:00:00"]
    assert got["closes"][0] != "17:00:00"  # the day after Thanksgiving closes early
    assert got["library"] is False


def test_a_calendar_from_another_library_version_is_not_taken() -> None:
    data = {**sessions.calendar_years([2026]), "library": "0.0-other"}
    assert sessions.seed_calendar(data) is False

"""The page's streams panel in headless Debian chromium: the selected level's streams up to the replay
time (never after it), the 20-minute projection band, the latest values and the alerts, as the API
gives them; it follows the replay and the level picker, with no console errors or foreign requests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

pytestmark = pytest.mark.e2e

ET = ZoneInfo("America/New_York")
TIMEOUT_MS = 15_000


@pytest.fixture
def tab(browser: Any, app_url: str) -> Iterator[tuple[Any, list[str], list[str]]]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id="Europe/Berlin")
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    requests: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.on("request", lambda r: requests.append(r.url))
    yield pg, problems, requests
    context.close()


def _traces(pg: Any) -> list[dict[str, Any]]:
    return pg.evaluate(
        """() => (document.getElementById('streams-chart').data || []).map(t => ({
            name: t.name, x: t.x || [], y: t.y || []}))"""
    )


def _api(app_url: str, date: str, level: str, at: str) -> dict[str, Any]:
    r = httpx.get(f"{app_url}/v1/days/{date}/streams", params={"level": level, "at": at}, timeout=30)
    r.raise_for_status()
    out: dict[str, Any] = r.json()
    return out


def _wall(iso: str) -> str:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ET).strftime("%Y-%m-%d %H:%M:%S")


def test_streams_panel_follows_the_replay_and_the_level(
    tab: tuple[Any, list[str], list[str]], app_url: str
) -> None:
    pg, problems, requests = tab
    days = httpx.get(f"{app_url}/v1/days", timeout=30).json()["days"]
    date = max(d["date"] for d in days)
    want = _api(app_url, date, "PM_HIGH", "10:30")
    assert want["projection"] is not None, "the last page day has a projection model (fitted on earlier days)"

    # Given the page opened at 10:30 on the last day, following PM_HIGH
    pg.goto(f"{app_url}/?date={date}&t=10:30&level=PM_HIGH")
    pg.wait_for_selector("#streams-card[data-as-of='10:30:00'][data-level='PM_HIGH']")
    pg.wait_for_function("() => (document.getElementById('streams-chart').data || []).length > 0")

    # Then it draws the API's bars up to 10:30 and nothing later, and the band 10:32 … 10:50
    traces = {t["name"]: t for t in _traces(pg)}
    net = traces["net"]
    assert net["x"] == [_wall(b["t"]) for b in want["bars"]]
    assert max(net["x"]) == f"{date} 10:30:00"
    assert net["y"] == [b["values"]["net"] for b in want["bars"]]
    band = traces["net q10–q90"]
    assert band["x"][0] == f"{date} 10:32:00"
    assert band["x"][-1] == f"{date} 10:50:00"
    assert band["y"] == want["projection"]["curves"]["net"]["q10"]
    assert all(-1 <= y <= 1 for t in traces.values() for y in t["y"] if y is not None)
    rows = pg.locator("#streams-latest tr[data-stream]")
    assert rows.count() == len(want["streams"])
    alerts = pg.locator("#streams-alerts li[data-alert]")
    assert alerts.count() == len(want["alerts"])
    assert "10:30 ET" in pg.locator("#streams-meta").inner_text()

    # When the replay steps one bar forward, the panel moves with it (one more bar, nothing beyond)
    pg.click("#btn-fwd")
    pg.wait_for_selector("#streams-card[data-as-of='10:32:00']")
    pg.wait_for_function("() => document.getElementById('streams-chart').data[2].x.length > 0")
    later = _api(app_url, date, "PM_HIGH", "10:32")
    assert {t["name"]: t for t in _traces(pg)}["net"]["x"] == [_wall(b["t"]) for b in later["bars"]]
    assert len(later["bars"]) == len(want["bars"]) + 1

    # When another level is picked, the panel follows it
    pg.select_option("#streams-level", "SMA_90")
    pg.wait_for_selector("#streams-card[data-level='SMA_90'][data-as-of='10:32:00']")
    sma = _api(app_url, date, "SMA_90", "10:32")
    pg.wait_for_function(
        "n => document.getElementById('streams-chart').data[2].x.length === n", arg=len(sma["bars"])
    )

    # When a LONG is held into the level, the panel shows its exit score as the API computes it
    pg.select_option("#streams-position", "LONG")
    pg.wait_for_function(
        "() => /^exit (\\d\\.\\d\\d|—)$/.test(document.getElementById('streams-exit').textContent)"
    )
    asked = [u for u in requests if "/streams?" in u and "position=LONG" in u]
    assert asked, "the page asked for the exit score"
    r = httpx.get(asked[-1], timeout=30)
    score = r.json()["exit"]["score"]
    shown = pg.locator("#streams-exit").inner_text()
    assert shown == ("exit —" if score is None else f"exit {score:.2f}")
    assert not problems, problems
    assert all(u.startswith(app_url) for u in requests), [u for u in requests if not u.startswith(app_url)]

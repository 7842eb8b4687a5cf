"""The page's Live mode in headless Debian chromium: a replay of a lake day pushed at N× through the
whole live chain (local gateway → real ``databento.Live`` client → runner → the live engine → hub →
``/v1/live/stream``); candles, levels, probability panels and the streams panel fill in as the
records arrive, the lag / drops indicator shows, and leaving Live mode goes back to the batch day."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from spymaster import sessions
from spymaster.api import create_app
from spymaster.lake import Lake
from spymaster.live.databento_source import DatabentoSource
from spymaster.live.engine import Engine
from spymaster.live.gateway import LocalGateway, lake_feed
from spymaster.live.hub import Hub
from spymaster.live.runner import Runner
from spymaster.live.streams import LiveStreams
from spymaster.serving import Service
from spymaster.settings import DatabentoLiveSettings, PushSettings
from tests.e2e.test_page import ARTIFACTS, TIMEOUT_MS, Browsing, _candles, _chart
from tests.live_support import KEY, serve

pytestmark = pytest.mark.e2e

SPEED = 300.0
"""Record-clock speed after 09:30 ET: an hour of the morning in 12 s."""


@pytest.fixture(scope="module")
def live_url(page_lake: Lake) -> Iterator[tuple[str, str, Runner]]:
    date = max(dt.date.fromisoformat(d["date"]) for d in _days(page_lake))
    opened = sessions.et_ns(date, sessions.RTH_OPEN)
    hub = Hub(date.isoformat())
    # The real engine, answering from the lake's table and models as of the date.
    engine = Engine(
        date,
        service=Service(page_lake, table_check_seconds=float("inf")),
        streams=LiveStreams(page_lake, date),
    )
    with (
        LocalGateway(lake_feed(page_lake, date), api_key=KEY, speed=SPEED, clock_start_ns=opened) as gw,
        serve(create_app(lake=page_lake, live=hub, push=PushSettings(status_s=0.2))) as url,
    ):
        settings = DatabentoLiveSettings(
            DATABENTO_API_KEY=KEY, DATABENTO_LIVE_GATEWAY="127.0.0.1", DATABENTO_LIVE_PORT=gw.port
        )
        runner = Runner(DatabentoSource(settings, date), engine, hub, status_s=0.2).start()
        # The overnight replay (before 09:30) comes in one burst: the page joins after it, from
        # the hub's history, and then follows the paced morning without losing an update.
        deadline = time.monotonic() + 60
        while (runner.last_record_ts or 0) < opened and time.monotonic() < deadline:
            time.sleep(0.05)
        yield url, date.isoformat(), runner
        runner.stop()
        runner.join(10)


def _days(lake: Lake) -> list[dict[str, Any]]:
    from spymaster.serving import Service

    days: list[dict[str, Any]] = Service(lake).days()["days"]
    return days


def test_live_mode_draws_the_day_as_it_arrives(browser: Any, live_url: tuple[str, str, Runner]) -> None:
    url, date, runner = live_url
    context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id="Asia/Tokyo")
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    log = Browsing(origin=url)
    pg.on("console", lambda m: log.console.append((m.type, m.text)))
    pg.on("pageerror", lambda e: log.errors.append(str(e)))
    pg.on("request", lambda r: log.requests.append(r.url))
    pg.goto(f"{url}/")
    pg.wait_for_selector("body[data-ready='1']")

    # When the trader switches to Live
    before_live = len(log.requests)
    pg.click("#btn-live")
    pg.wait_for_selector("body[data-live='on']")
    pg.wait_for_function(
        "() => (document.getElementById('chart').data || []).some(t => t.type === 'candlestick' && t.x.length > 5)"
    )
    first = len(_candles(pg))
    first_clock = pg.text_content("#live-clock")

    # Then candles keep arriving and the record clock moves, with lag and drops shown
    pg.wait_for_function(
        "n => (document.getElementById('chart').data || []).some(t => t.type === 'candlestick' && t.x.length > n + 5)",
        arg=first,
        timeout=30_000,
    )
    assert pg.text_content("#live-clock") != first_clock
    assert date in (pg.get_attribute("#live-clock", "title") or "")
    hms = pg.text_content("#live-clock") or ""
    assert "09:30:00" <= hms <= "12:30:00", hms
    assert "lag " in (pg.text_content("#live-lag") or "")
    assert pg.text_content("#live-lag") != "lag —"
    assert (pg.text_content("#live-drops") or "").startswith(
        "dropped 0"
    )  # coalesced forming bars are no loss
    assert pg.is_disabled("#btn-play")

    # And the six levels and a probability panel appear from pushed levels and answers
    pg.wait_for_function("() => document.querySelectorAll('#panels .level').length > 0", timeout=30_000)
    names = {t["name"] for t in _chart(pg)["traces"] if t["type"] == "scatter"}
    assert sum(1 for n in names if n) >= 4, names
    # And the streams panel follows the pushed streams of its level, bar close after bar close
    pg.wait_for_function("() => !!document.getElementById('streams-card').dataset.asOf", timeout=30_000)
    as_of = pg.get_attribute("#streams-card", "data-as-of") or ""
    pg.wait_for_function(
        "t => (document.getElementById('streams-card').dataset.asOf || '') > t", arg=as_of, timeout=30_000
    )
    assert "as of " in (pg.text_content("#streams-meta") or "")
    assert "projection model" in (pg.text_content("#streams-meta") or "")
    assert pg.locator("#streams-latest tr").count() > 1
    fetched = [r for r in log.requests[before_live:] if "/streams?" in r]
    assert not fetched, f"Live mode must not fetch the batch streams: {fetched}"
    status = httpx.get(f"{url}/v1/live/status", timeout=10).json()
    assert status["push"]["subscribers"] == 1
    assert status["engine"]["payload"]["records"] > 0
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "page-live.png"))

    # When Live is switched off, the batch day comes back and the replay controls work again
    pg.click("#btn-live")
    pg.wait_for_selector("body[data-live='off']")
    pg.wait_for_function("() => !document.getElementById('btn-play').disabled")
    assert pg.is_hidden("#live-status")
    log.assert_clean()
    context.close()
    assert runner.error is None

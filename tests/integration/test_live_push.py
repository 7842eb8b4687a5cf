"""The whole live chain over real sockets: local gateway → real ``databento.Live`` client → runner →
engine (the test double) → hub → ``GET /v1/live/stream`` (server-sent events over HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from spymaster.api import create_app
from spymaster.lake import Lake
from spymaster.live.databento_source import DatabentoSource
from spymaster.live.gateway import LocalGateway, lake_feed
from spymaster.live.hub import Hub
from spymaster.live.runner import Runner
from spymaster.settings import DatabentoLiveSettings, PushSettings
from tests.live_support import KEY, LIVE_DATE, BarsEngine, front_instrument, serve, sse_events

DATE = LIVE_DATE.isoformat()


@pytest.fixture
def gateway(day_lake: Lake) -> Iterator[LocalGateway]:
    with LocalGateway(lake_feed(day_lake, LIVE_DATE), api_key=KEY) as gw:
        yield gw


def _read(url: str, out: list[tuple[str, dict[str, Any]]], connected: threading.Event) -> None:
    with httpx.stream("GET", f"{url}/v1/live/stream", params={"date": DATE}, timeout=30) as resp:
        resp.raise_for_status()
        connected.set()
        for name, data in sse_events(resp.iter_lines()):
            out.append((name, data))
            if name == "status" and data["payload"].get("running") is False:
                return


def test_bars_are_pushed_as_the_records_arrive(
    gateway: LocalGateway, day_lake: Lake, expected: list[Any]
) -> None:
    # Given the API with a live hub, and a subscriber connected before the session starts
    front = front_instrument(expected)
    hub = Hub(DATE, queue_size=100_000)
    settings = DatabentoLiveSettings(
        DATABENTO_API_KEY=KEY, DATABENTO_LIVE_GATEWAY="127.0.0.1", DATABENTO_LIVE_PORT=gateway.port
    )
    source = DatabentoSource(settings, LIVE_DATE)
    got: list[tuple[str, dict[str, Any]]] = []
    connected = threading.Event()
    with serve(create_app(lake=day_lake, live=hub, push=PushSettings(status_s=0.2))) as url:
        reader = threading.Thread(target=_read, args=(url, got, connected), daemon=True)
        reader.start()
        assert connected.wait(10)

        # When the runner drives the real client's records through the engine
        runner = Runner(source, BarsEngine(LIVE_DATE, front), hub, stop_source=source.stop, status_s=0.2)
        runner.start()
        assert runner.join(60)
        reader.join(30)
        status = httpx.get(f"{url}/v1/live/status", timeout=10).json()

    # Then every closed bar of the day arrived once, in order, each stamped with record time and lag
    assert runner.error is None
    reference = BarsEngine(LIVE_DATE, front)
    reference.feed(expected)
    pushed = [d for name, d in got if name == "bar" and d["payload"]["closed"]]
    assert [d["payload"] for d in pushed] == reference.closed
    assert all(d["record_ts_ns"] > 0 and d["lag_ms"] >= 0 and d["dropped"] == 0 for d in pushed)
    assert [d["record_ts_ns"] for d in pushed] == sorted(d["record_ts_ns"] for d in pushed)
    final = got[-1][1]["payload"]
    assert final["records"] == len(expected)
    assert final["source"]["reconnects"] == 0
    assert status["date"] == DATE
    assert status["engine"]["payload"]["records"] == len(expected)
    assert status["push"]["dropped"] == 0


def test_bad_live_requests_are_4xx_with_reasons(day_lake: Lake) -> None:
    with serve(create_app(lake=day_lake, live=Hub(DATE))) as url, httpx.Client(base_url=url, timeout=10) as c:
        other = c.get("/v1/live/stream", params={"date": "2026-03-04"})
        bad = c.get("/v1/live/stream", params={"date": "03/03/2026"})
        missing = c.get("/v1/live/stream")
    with serve(create_app(lake=day_lake)) as url, httpx.Client(base_url=url, timeout=10) as c:
        none = c.get("/v1/live/status")
        none_stream = c.get("/v1/live/stream", params={"date": DATE})

    assert other.status_code == 404
    assert other.json()["detail"] == f"the live session streams {DATE}, not 2026-03-04"
    assert bad.status_code == 422
    assert "YYYY-MM-DD" in bad.json()["detail"]
    assert missing.status_code == 422
    assert "date" in missing.json()["detail"]
    assert none.status_code == 404
    assert "no live session is running" in none.json()["detail"]
    assert none_stream.status_code == 404

"""The real ``databento.Live`` client against the local gateway on 127.0.0.1, streaming a lake date.

No mock of the client: it authenticates by CRAM, subscribes, starts the session and decodes the
DBN stream as it would from Databento. The gateway serves the raw files a generated day put in
the lake and drops the connection on command, so reconnect and resume are tested for real.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spymaster import sessions
from spymaster.errors import LiveSourceError
from spymaster.lake import Lake
from spymaster.live.databento_source import DatabentoSource
from spymaster.live.gateway import LocalGateway, lake_feed
from spymaster.settings import DatabentoLiveSettings
from tests.live_support import KEY, LIVE_DATE, BarsEngine, front_instrument, lake_records

DATE = LIVE_DATE


@pytest.fixture
def gateway(day_lake: Lake) -> Iterator[LocalGateway]:
    with LocalGateway(lake_feed(day_lake, DATE), api_key=KEY) as gw:
        yield gw


def _settings(gw: LocalGateway, **kw: Any) -> DatabentoLiveSettings:
    return DatabentoLiveSettings(
        DATABENTO_API_KEY=kw.pop("key", KEY),
        DATABENTO_LIVE_GATEWAY="127.0.0.1",
        DATABENTO_LIVE_PORT=gw.port,
        reconnect_backoff_s=0.01,
        **kw,
    )


def _bytes(records: list[Any]) -> list[bytes]:
    return [bytes(r) for r in records]


def test_the_client_streams_a_lake_date_from_the_globex_open(
    gateway: LocalGateway, expected: list[Any]
) -> None:
    source = DatabentoSource(_settings(gateway, slow_reader_behavior="skip"), DATE)

    got = list(source)

    assert _bytes(got) == _bytes(expected)
    assert {type(r).__name__ for r in got} == {"InstrumentDefMsg", "TradeMsg", "MBP10Msg"}
    (session,) = gateway.sessions
    assert session.authenticated
    assert session.slow_reader_behavior == "skip"
    assert session.client.startswith("Databento/")
    opened = sessions.globex_session(DATE)[0]
    assert [(s.schema, s.symbols, s.stype_in, s.start_ns) for s in session.subscriptions] == [
        ("definition", ("ES.FUT",), "parent", opened),
        ("trades", ("ES.FUT",), "parent", opened),
        ("mbp-10", ("ES.FUT",), "parent", opened),
    ]
    assert source.stats.reconnects == 0
    assert source.stats.duplicates_skipped == 0


def test_start_replays_from_a_given_time(gateway: LocalGateway, day_lake: Lake) -> None:
    start = sessions.et_ns(DATE, dt.time(10, 0))

    got = list(DatabentoSource(_settings(gateway), DATE, start_ns=start))

    assert got
    assert min(r.ts_event for r in got) >= start
    assert _bytes(got) == _bytes(lake_records(day_lake, DATE, start_ns=start))


def test_a_wrong_key_is_refused_loudly(gateway: LocalGateway) -> None:
    source = DatabentoSource(_settings(gateway, key="db-not-the-key-0000000000wrong"), DATE)

    with pytest.raises(LiveSourceError, match="Authentication failed"):
        list(source)
    assert [s.authenticated for s in gateway.sessions] == [False]


def test_options_are_subscribed_when_configured(gateway: LocalGateway, day_lake: Lake) -> None:
    got = list(DatabentoSource(_settings(gateway, options=True), DATE))

    assert _bytes(got) == _bytes(lake_records(day_lake, DATE, options=True))
    assert {s.symbols for s in gateway.sessions[0].subscriptions} == {("ES.FUT",), ("ES.OPT",)}


def test_disconnects_resume_with_no_missed_or_repeated_record_or_bar(
    gateway: LocalGateway, expected: list[Any]
) -> None:
    # Given a gateway that resets the connection twice mid-stream
    source = DatabentoSource(_settings(gateway), DATE)
    gateway.plan_drops(len(expected) // 3, len(expected) // 4)

    # When the real client streams the day through it
    got = list(source)

    # Then the records are exactly the day's, in order, and so are the bars built from them
    assert source.stats.reconnects == 2
    assert [s.dropped for s in gateway.sessions] == [True, True, False]
    assert _bytes(got) == _bytes(expected)
    front = front_instrument(expected)
    live, batch = BarsEngine(DATE, front), BarsEngine(DATE, front)
    for i in range(0, len(got), 997):  # fed in uneven micro-batches, as the runner would
        live.feed(got[i : i + 997])
    batch.feed(expected)
    assert live.closed == batch.closed
    assert len(live.closed) > 100
    # And each resume asked from the last arrival time less the margin
    margin = int(source.settings.resume_margin_s * sessions.NS)
    assert [s.subscriptions[0].start_ns for s in gateway.sessions[1:]] == [
        last - margin for last, _ in source.stats.resumes
    ]
    assert source.stats.duplicates_skipped > 0  # the resumes overlapped what was delivered


def test_without_a_reconnect_policy_a_lost_connection_is_an_error(gateway: LocalGateway) -> None:
    source = DatabentoSource(_settings(gateway, reconnect_policy="none"), DATE)
    gateway.drop_after(1_000)

    with pytest.raises(LiveSourceError, match="live source failed"):
        list(source)
    assert len(gateway.sessions) == 1


def test_an_unreachable_gateway_gives_up_after_the_reconnect_budget(tmp_path: Path) -> None:
    gw = LocalGateway(lambda symbol, schema: [], api_key=KEY)
    port = gw.port
    gw.stop()  # nothing listens there now
    settings = DatabentoLiveSettings(
        DATABENTO_API_KEY=KEY,
        DATABENTO_LIVE_GATEWAY="127.0.0.1",
        DATABENTO_LIVE_PORT=port,
        max_reconnects=2,
        reconnect_backoff_s=0.01,
    )
    source = DatabentoSource(settings, DATE)

    with pytest.raises(LiveSourceError, match="gave up after 2"):
        list(source)
    assert source.stats.reconnects == 2


def test_a_day_happening_now_resumes_after_a_drop_at_the_live_edge(
    day_lake: Lake, expected: list[Any]
) -> None:
    # Given a gateway whose record clock runs at 10 000x from 11:00 ET (the rest of the morning is live)
    edge = sessions.et_ns(DATE, dt.time(11, 0))
    with LocalGateway(lake_feed(day_lake, DATE), api_key=KEY, speed=10_000.0, clock_start_ns=edge) as gw:
        source = DatabentoSource(_settings(gw), DATE)
        got: list[Any] = []
        for rec in source:
            got.append(rec)
            if rec.ts_recv > edge + 60 * sessions.NS and not gw.sessions[0].dropped:
                gw.drop_now()  # when a record past the live edge has arrived
    # Then the records are the day's exactly, the first session dropped while paced
    assert gw.sessions[0].dropped
    assert source.stats.reconnects == 1
    assert _bytes(got) == _bytes(expected)

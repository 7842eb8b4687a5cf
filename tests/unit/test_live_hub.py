"""The push hub's bounded queues: a slow subscriber loses the oldest, coalesces state, and says so."""

from __future__ import annotations

import asyncio
import time

from spymaster.live.hub import Hub
from spymaster.live.types import Update

DATE = "2026-03-03"


def _u(kind: str, i: int, level: str | None = None) -> Update:
    t = f"2026-03-03T15:{i:02d}:00Z"
    return Update(
        kind, DATE, record_ts_ns=i, emitted_ns=time.time_ns(), level=level, payload={"t": t, "i": i}
    )  # type: ignore[arg-type]


def test_a_slow_subscriber_keeps_the_newest_and_counts_the_drops() -> None:
    hub = Hub(DATE, queue_size=4)
    slow, fast = hub.subscribe(), hub.subscribe()
    got_fast = []
    for i in range(10):
        hub.publish([_u("bar", i)], arrival_ns=time.time_ns())
        ev = fast.get(timeout=1)
        assert ev is not None
        got_fast.append(ev.update.payload["i"])

    kept = [ev.update.payload["i"] for ev in iter(lambda: slow.get(timeout=0), None)]

    assert got_fast == list(range(10))  # the fast one lost nothing
    assert kept == [6, 7, 8, 9]
    assert (slow.dropped, fast.dropped) == (6, 0)
    assert hub.stats()["dropped"] == 6


def test_waiting_state_of_one_level_is_replaced_by_the_newer() -> None:
    hub = Hub(DATE, queue_size=100)
    sub = hub.subscribe()
    for i in range(5):
        hub.publish(
            [_u("state", i, "OR_HIGH"), _u("state", i, "PM_LOW"), _u("bar", i)], arrival_ns=time.time_ns()
        )

    evs = list(iter(lambda: sub.get(timeout=0), None))

    states = [(e.update.level, e.update.payload["i"]) for e in evs if e.update.kind == "state"]
    assert sorted(states) == [("OR_HIGH", 4), ("PM_LOW", 4)]
    assert [e.update.payload["i"] for e in evs if e.update.kind == "bar"] == list(range(5))  # 5 bars
    assert sub.coalesced == 8
    assert sub.dropped == 0


def test_a_forming_bar_waiting_is_replaced_by_its_newer_self() -> None:
    hub = Hub(DATE, queue_size=100)
    sub = hub.subscribe()
    for close in (1.0, 2.0, 3.0):
        u = _u("bar", 7)
        hub.publish(
            [Update("bar", DATE, 7, u.emitted_ns, None, {**u.payload, "close": close})], time.time_ns()
        )

    evs = list(iter(lambda: sub.get(timeout=0), None))

    assert [e.update.payload["close"] for e in evs] == [3.0]
    assert sub.coalesced == 2


def test_a_late_subscriber_gets_the_day_so_far_in_order() -> None:
    hub = Hub(DATE, queue_size=2)
    for i in range(6):
        hub.publish([_u("bar", i), _u("levels", i), _u("status", i)], arrival_ns=time.time_ns())
    hub.publish([_u("bar", 5)], arrival_ns=time.time_ns())  # the forming bar again: one per bar

    sub = hub.subscribe()
    hub.publish([_u("bar", 6)], arrival_ns=time.time_ns())  # live, while the history still waits
    evs = list(iter(lambda: sub.get(timeout=0), None))

    assert [e.update.payload["i"] for e in evs if e.update.kind == "bar"] == list(range(7))
    assert [e.update.payload["i"] for e in evs if e.update.kind == "levels"] == list(range(6))
    assert [e.update.payload["i"] for e in evs if e.update.kind == "status"] == [5]
    assert [e.seq for e in evs] == sorted(e.seq for e in evs)
    assert sub.dropped == 0  # history is not a loss


def test_an_async_subscriber_is_woken_from_another_thread() -> None:
    hub = Hub(DATE)

    async def main() -> list[int]:
        sub = hub.subscribe(loop=asyncio.get_running_loop())
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, lambda: [hub.publish([_u("bar", i)], time.time_ns()) for i in range(3)])
        out = []
        while len(out) < 3:
            ev = await sub.next(timeout=5)
            assert ev is not None
            out.append(ev.update.payload["i"])
        assert await sub.next(timeout=0.05) is None
        sub.close()
        return out

    assert asyncio.run(main()) == [0, 1, 2]
    assert hub.stats()["subscribers"] == 0


def test_events_carry_record_time_and_engine_lag() -> None:
    hub = Hub(DATE)
    sub = hub.subscribe()
    arrival = time.time_ns()
    u = Update("bar", DATE, record_ts_ns=123, emitted_ns=arrival + 2_500_000, payload={"t": "x"})
    hub.publish([u], arrival_ns=arrival)

    ev = sub.get(timeout=1)

    assert ev is not None
    body = ev.to_json(dropped=3)
    assert body["record_ts_ns"] == 123
    assert body["lag_ms"] == 2.5
    assert body["dropped"] == 3
    assert body["published_ns"] >= arrival

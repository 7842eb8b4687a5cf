"""The runner: records in arrival order through the engine into the hub, micro-batched; failures
end the run loudly; a stop ends a source blocked on the network."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from spymaster.live.hub import Hub
from spymaster.live.runner import Runner
from spymaster.live.types import Update

DATE = "2026-03-03"


@dataclass(frozen=True)
class Rec:
    ts_recv: int


class Echo:
    """An engine double: one ``bar`` update per record, remembering the batches it was fed."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_at = fail_at

    def feed(self, records: Sequence[Any]) -> list[Update]:
        ts = [r.ts_recv for r in records]
        if self.fail_at is not None and self.fail_at in ts:
            raise ValueError(f"engine failed at record {self.fail_at}")
        self.batches.append(ts)
        return [Update("bar", DATE, t, time.time_ns(), None, {"t": str(t)}) for t in ts]


def _drain(sub: Any) -> list[Any]:
    return list(iter(lambda: sub.get(timeout=0), None))


def test_every_record_is_fed_once_in_order_and_published() -> None:
    hub = Hub(DATE, queue_size=10_000)
    sub = hub.subscribe()
    engine = Echo()

    runner = Runner([Rec(i) for i in range(5_000)], engine, hub, max_batch=300).start()

    assert runner.join(30)
    assert runner.error is None
    assert [t for b in engine.batches for t in b] == list(range(5_000))
    assert max(len(b) for b in engine.batches) <= 300
    events = _drain(sub)
    assert [e.update.record_ts_ns for e in events if e.update.kind == "bar"] == list(range(5_000))
    final = [e for e in events if e.update.kind == "status"][-1].update.payload
    assert final["running"] is False
    assert final["records"] == 5_000
    assert final["lag_ms_p99"] is not None
    assert final["lag_ms_p99"] >= 0


def _failing_source() -> Iterator[Rec]:
    yield Rec(1)
    raise ConnectionError("gateway gone")


def test_a_failing_source_ends_the_run_with_its_reason() -> None:
    hub = Hub(DATE)
    sub = hub.subscribe()

    runner = Runner(_failing_source(), Echo(), hub).start()

    assert runner.join(10)
    assert isinstance(runner.error, ConnectionError)
    final = [e for e in _drain(sub) if e.update.kind == "status"][-1].update.payload
    assert final["error"] == "gateway gone"
    assert final["running"] is False


def test_a_failing_engine_ends_the_run_with_its_reason() -> None:
    runner = Runner([Rec(i) for i in range(10)], Echo(fail_at=3), Hub(DATE), max_batch=1).start()

    assert runner.join(10)
    assert str(runner.error) == "engine failed at record 3"


class Blocked:
    """A source waiting on the network until told to stop (as ``DatabentoSource`` does)."""

    def __init__(self) -> None:
        self.stopped = threading.Event()

    def __iter__(self) -> Iterator[Rec]:
        yield Rec(1)
        self.stopped.wait(30)

    def stop(self) -> None:
        self.stopped.set()


def test_stop_ends_a_source_blocked_on_the_network() -> None:
    source = Blocked()
    runner = Runner(source, Echo(), Hub(DATE), status_s=0.05).start()
    time.sleep(0.2)

    runner.stop()

    assert runner.join(5)
    assert source.stopped.is_set()
    assert runner.records == 1

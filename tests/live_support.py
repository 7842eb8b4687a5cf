"""A test double of the live engine, and helpers for the live tests (importable, unlike conftest).

``BarsEngine`` is *not* the engine: it turns trades into 2-minute ``bar`` updates itself and
replays a given timeline of ``levels`` / ``answer`` updates (taken from the lake's batch outputs)
as the record clock passes them. It lets the sources, the push and the page be tested before the
incremental engine is wired in; it obeys the same :class:`spymaster.live.types.RecordSink`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import databento_dbn as dbn

from spymaster import sessions
from spymaster.lake import Lake, paths
from spymaster.live.types import Update
from spymaster.serving.days import et_time, iso_z

LIVE_DATE = dt.date(2026, 3, 3)
"""The trading date the live tests stream."""
KEY = "db-localtest000000000000000k3y42"
"""The API key the local gateway accepts in tests (Databento keys end in a 5-character bucket)."""


@dataclass(frozen=True)
class Timed:
    """An update the double emits once the record clock reaches ``ts_ns``."""

    ts_ns: int
    kind: str
    level: str | None
    payload: dict[str, Any]


def lake_records(
    lake: Lake, date: dt.date, *, options: bool = False, start_ns: int | None = None
) -> list[Any]:
    """What a gateway serving the date must deliver: the raw files merged in arrival order."""
    from spymaster.live.gateway import lake_feed

    feed = lake_feed(lake, date)
    kinds = paths.RAW_KINDS if options else paths.FUTURES_RAW
    streams = [feed(k.product.value, k.schema) for k in kinds]
    merged = heapq.merge(*streams, key=lambda r: r.ts_recv)
    return [r for r in merged if start_ns is None or r.ts_event >= start_ns]


def front_instrument(records: Iterable[Any]) -> int:
    """The most traded instrument (the front month the bars follow)."""
    counts: dict[int, int] = {}
    for r in records:
        if isinstance(r, dbn.TradeMsg):
            counts[r.instrument_id] = counts.get(r.instrument_id, 0) + 1
    return max(counts, key=lambda k: counts[k])


class BarsEngine:
    """Test double of the engine: 2-minute bars from one instrument's trades, plus a timeline."""

    def __init__(self, date: dt.date, instrument_id: int, timeline: Sequence[Timed] = ()) -> None:
        self.date = date
        self.instrument_id = instrument_id
        self.timeline = sorted(timeline, key=lambda t: t.ts_ns)
        self._next = 0
        self._bar: dict[str, Any] | None = None
        self._bar_start = -1
        self.closed: list[dict[str, Any]] = []
        self.last_ts = 0

    def feed(self, records: Sequence[Any]) -> list[Update]:
        out: list[Update] = []
        for rec in records:
            self.last_ts = rec.ts_recv
            if isinstance(rec, dbn.TradeMsg) and rec.instrument_id == self.instrument_id:
                out.extend(self._trade(rec))
            while self._next < len(self.timeline) and self.timeline[self._next].ts_ns <= rec.ts_recv:
                t = self.timeline[self._next]
                self._next += 1
                out.append(self._update(t.kind, t.level, t.payload))  # type: ignore[arg-type]
        if self._bar is not None and records:
            out.append(self._update("bar", None, {**self._bar, "closed": False}))
        return out

    def _trade(self, rec: Any) -> Iterator[Update]:
        start = rec.ts_event - rec.ts_event % sessions.BAR_CLOSE_NS
        price = rec.price / 1e9
        if start != self._bar_start:
            if self._bar is not None:
                closed = {**self._bar, "closed": True}
                self.closed.append(closed)
                yield self._update("bar", None, closed)
            self._bar_start = start
            self._bar = {
                "t": iso_z(start + sessions.BAR_CLOSE_NS),  # as the batch API: t = the bar's close
                "time": et_time(start + sessions.BAR_CLOSE_NS),
                "open": price,
                "high": price,
                "low": price,
                "close": price,
                "volume": 0,
            }
        bar = self._bar
        assert bar is not None
        bar["high"] = max(bar["high"], price)
        bar["low"] = min(bar["low"], price)
        bar["close"] = price
        bar["volume"] += rec.size

    def _update(self, kind: str, level: str | None, payload: dict[str, Any]) -> Update:
        return Update(
            kind=kind,  # type: ignore[arg-type]
            date=self.date.isoformat(),
            record_ts_ns=self.last_ts,
            emitted_ns=time.time_ns(),
            level=level,
            payload=payload,
        )


def batch_timeline(lake: Lake, date: dt.date) -> list[Timed]:
    """``levels`` rows and ``answer`` updates of a date from the batch API's own answers, timed
    at the step they describe (what the engine would emit then)."""
    from spymaster.serving import Service

    svc = Service(lake)
    lv = svc.levels(date)["levels"]
    by_t: dict[str, dict[str, Any]] = {}
    for series in lv:
        for p in series["points"]:
            row = by_t.setdefault(p["t"], {"t": p["t"], "time": p["time"], "levels": {}})
            row["levels"][series["kind"]] = p["value"]
    out = [Timed(_ns(t), "levels", None, row) for t, row in by_t.items()]
    for sig in svc.signals(date, horizon=8, k=50)["signals"]:
        out.append(Timed(_ns(sig["t"]), "answer", sig["level_kind"], sig))
    return out


def _ns(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()) * sessions.NS


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free 127.0.0.1 port in a thread; yields its URL."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-live", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, decoded JSON data) of each server-sent event in a line stream."""
    import json

    name, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())

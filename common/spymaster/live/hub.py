"""Fan-out of live updates to subscribers, each behind a bounded queue.

The runner publishes from its own thread; subscribers (the SSE route, benches) read from an event
loop or a thread. A slow subscriber never slows the engine or the others: its queue keeps at most
``queue_size`` events, a newer event about the same thing (the same forming bar, step or answer;
a level's state; the status) replaces a waiting one (counted as *coalesced*), and past the bound
the oldest event is dropped (counted as *dropped*; both counts ride on every event the subscriber gets). A new
subscriber is primed with the day so far, so a page opened mid-session draws the whole picture
(one event per bar, step and answer of the day; the latest state per level and status).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from spymaster.live.types import Update

__all__ = ["RUNNER", "Event", "Hub", "Subscriber"]

RUNNER = "runner"
"""The ``level`` of the runner's own ``status`` updates (the engine may publish status of its own)."""
Key = tuple[str, str | None, str | None]
"""(kind, level, payload ``t``): what an event is about."""
_LATEST_ONLY = frozenset({"state", "streams", "status"})
"""Kinds where only the newest event of a level matters (keyed without time; a ``streams`` event
carries the level's bars so far)."""


@dataclass(frozen=True)
class Event:
    """An update as published: its sequence number, and when its records arrived and it was sent."""

    seq: int
    update: Update
    arrival_ns: int
    """Wall clock when the last record behind the update reached the runner."""
    published_ns: int

    @cached_property
    def key(self) -> Key:
        """What the event is about: a newer event with the same key supersedes it (a forming bar
        grows, a step's levels or an answer is revised, state and status move on)."""
        u = self.update
        if u.kind in _LATEST_ONLY:
            return (u.kind, u.level, None)
        return (u.kind, u.level, str(u.payload.get("t")))

    def to_json(self, *, dropped: int = 0, coalesced: int = 0) -> dict[str, Any]:
        """The SSE ``data`` of the event: the update, its record time and the engine's lag."""
        u = self.update
        return {
            "seq": self.seq,
            "kind": u.kind,
            "date": u.date,
            "level": u.level,
            "record_ts_ns": u.record_ts_ns,
            "arrival_ns": self.arrival_ns,
            "emitted_ns": u.emitted_ns,
            "published_ns": self.published_ns,
            "lag_ms": round(max(u.emitted_ns - self.arrival_ns, 0) / 1e6, 3),
            "dropped": dropped,
            "coalesced": coalesced,
            "payload": u.payload,
        }


class Subscriber:
    """One consumer's bounded queue; thread-safe ``put``, async or blocking ``get``."""

    def __init__(self, hub: Hub, queue_size: int, loop: asyncio.AbstractEventLoop | None) -> None:
        self.hub = hub
        self.queue_size = queue_size
        self.dropped = 0
        self.coalesced = 0
        # Keyed by what each event is about: replacing a waiting event is O(1), order is arrival.
        self._q: OrderedDict[Key, Event] = OrderedDict()
        self._history: deque[Event] = deque()
        """The day so far, handed out before the live queue and never counted against its bound."""
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._loop = loop
        self._wake = asyncio.Event() if loop is not None else None
        self._notified = False

    def put(self, event: Event) -> None:
        with self._lock:
            key = event.key
            if self._q.pop(key, None) is not None:
                self.coalesced += 1
            elif len(self._q) >= self.queue_size:
                self._q.popitem(last=False)
                self.dropped += 1
            self._q[key] = event
            self._ready.notify()
            if self._loop is not None and not self._notified:
                self._notified = True
                self._loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        assert self._wake is not None
        self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._q)

    def _pop(self) -> Event | None:
        """The next event (history first; a history event superseded live is skipped)."""
        while self._history:
            ev = self._history.popleft()
            if ev.key not in self._q:
                return ev
        return self._q.popitem(last=False)[1] if self._q else None

    async def next(self, timeout: float) -> Event | None:
        """The next event, or ``None`` after ``timeout`` seconds without one (from the loop)."""
        assert self._wake is not None, "an async subscriber needs the loop it was made on"
        while True:
            with self._lock:
                ev = self._pop()
                if ev is not None:
                    return ev
                self._notified = False
                self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None

    def get(self, timeout: float) -> Event | None:
        """The next event, blocking this thread at most ``timeout`` seconds."""
        with self._ready:
            if not self._q and not self._history:
                self._ready.wait(timeout)
            return self._pop()

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hub:
    """Publishes updates of one live date to every subscriber."""

    def __init__(self, date: str, *, queue_size: int = 256) -> None:
        self.date = date
        self.queue_size = queue_size
        self.published = 0
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._subs: set[Subscriber] = set()
        self._history: dict[Key, Event] = {}
        self._latest: dict[Key, Event] = {}
        self._gone_dropped = 0
        self._gone_coalesced = 0

    def publish(self, updates: Iterable[Update], arrival_ns: int) -> None:
        """Send updates to every subscriber (called by the runner's thread)."""
        now = time.time_ns()
        with self._lock:
            subs = list(self._subs)
            events = []
            for u in updates:
                ev = Event(next(self._seq), u, arrival_ns, now)
                events.append(ev)
                (self._latest if u.kind in _LATEST_ONLY else self._history)[ev.key] = ev
            self.published += len(events)
        for sub in subs:
            for ev in events:
                sub.put(ev)

    def subscribe(self, *, loop: asyncio.AbstractEventLoop | None = None) -> Subscriber:
        """A new subscriber, primed with the day so far (bars, levels, answers; the latest state and
        status), in publication order."""
        sub = Subscriber(self, self.queue_size, loop)
        with self._lock:
            primer = sorted([*self._history.values(), *self._latest.values()], key=lambda e: e.seq)
            self._subs.add(sub)
        with sub._lock:
            sub._history.extend(primer)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.discard(sub)
                self._gone_dropped += sub.dropped
                self._gone_coalesced += sub.coalesced

    def latest_status(self, level: str | None = RUNNER) -> dict[str, Any] | None:
        """The newest ``status`` event of ``level`` (the runner's by default)."""
        with self._lock:
            ev = self._latest.get(("status", level, None))
        return ev.to_json() if ev is not None else None

    def stats(self) -> dict[str, Any]:
        """Subscribers and what they lost (for ``GET /v1/live/status`` and ``status`` events)."""
        with self._lock:
            subs = list(self._subs)
            gone_d, gone_c = self._gone_dropped, self._gone_coalesced
        return {
            "date": self.date,
            "published": self.published,
            "subscribers": len(subs),
            "queue_size": self.queue_size,
            "dropped": gone_d + sum(s.dropped for s in subs),
            "coalesced": gone_c + sum(s.coalesced for s in subs),
            "pending_max": max((s.pending() for s in subs), default=0),
        }

"""Drive a record source into a :class:`RecordSink` in the background and publish what it emits.

Two threads: a reader pulls records from the source (a blocking iterator: the Live client or a
replay) into a bounded queue, stamping each with its arrival time; the engine thread takes
whatever has arrived (at most ``max_batch``) as one micro-batch, feeds it to the sink and
publishes the updates. Batching by "what is there" keeps the latency of a quiet market at one
record while a burst is fed vectorised. The bounded queue makes a slow engine push back on the
source (the client stops reading; the gateway's ``slow_reader_behavior`` applies) rather than
grow memory. A ``status`` update (lag, records, reconnects, drops) is published about once a
second of wall time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np

from spymaster.live.hub import RUNNER, Hub
from spymaster.live.types import RecordSink, Update

__all__ = ["Runner"]

log = logging.getLogger(__name__)

_END = object()


class Runner:
    """Runs ``source`` → ``sink`` → ``hub`` until the source ends or :meth:`stop` is called.

    Parameters
    ----------
    source
        DBN records in arrival order.
    sink
        The engine (anything with ``feed(records) -> list[Update]``).
    hub
        Where updates are published.
    stop_source
        How to end a source blocked on the network (default: its ``stop``, if it has one).
    source_stats
        The source's own counters for status updates (default: its ``stats``, if any).
    """

    def __init__(
        self,
        source: Iterable[Any],
        sink: RecordSink,
        hub: Hub,
        *,
        max_batch: int = 4096,
        queue_records: int = 200_000,
        status_s: float = 1.0,
        stop_source: Callable[[], None] | None = None,
        source_stats: Callable[[], Any] | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.hub = hub
        self.max_batch = max_batch
        self.status_s = status_s
        # A source that can be stopped or counts for itself (DatabentoSource) is used as such.
        self._stop_source = stop_source or getattr(source, "stop", None)
        self._source_stats = source_stats or (lambda: getattr(source, "stats", None))
        self._q: queue.Queue[Any] = queue.Queue(maxsize=queue_records)
        self._stopped = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.records = 0
        self.batches = 0
        self.updates = 0
        self.last_record_ts: int | None = None
        self._lags: deque[int] = deque(maxlen=4096)
        self._threads: list[threading.Thread] = []
        self._last_status = 0.0

    def start(self) -> Runner:
        for target, name in ((self._read, "live-reader"), (self._run, "live-engine")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._stop_source is not None:
            self._stop_source()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; True if it did."""
        return self.done.wait(timeout)

    # -- threads ---------------------------------------------------------------------------------------

    def _read(self) -> None:
        try:
            for rec in self.source:
                if self._stopped.is_set():
                    break
                self._put((rec, time.time_ns()))
        except BaseException as exc:  # the engine thread reports it; the run ends loudly
            log.exception("live source failed")
            self.error = exc
        finally:
            self._put(_END)

    def _put(self, item: Any) -> None:
        while not self._stopped.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if item is _END:  # stopping: make room for the end mark so the engine thread ends
            with self._q.mutex:
                self._q.queue.clear()
            self._q.put_nowait(item)

    def _run(self) -> None:
        try:
            while True:
                try:
                    first = self._q.get(timeout=self.status_s)
                except queue.Empty:  # a quiet market: the status still says how things are
                    self._publish_status()
                    continue
                items = [first]
                while len(items) < self.max_batch:
                    try:
                        items.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                ended = items[-1] is _END
                batch = [it for it in items if it is not _END]
                if batch:
                    self._feed([r for r, _ in batch], batch[-1][1])
                if ended or self._stopped.is_set():
                    break
            self._publish_status(force=True)
        except BaseException as exc:
            log.exception("live engine failed")
            self.error = self.error or exc
            self._publish_status(force=True)
        finally:
            self.done.set()

    def _feed(self, records: list[Any], arrival_ns: int) -> None:
        updates = self.sink.feed(records)
        self.records += len(records)
        self.batches += 1
        self.last_record_ts = int(records[-1].ts_recv)
        for u in updates:
            self._lags.append(u.emitted_ns - arrival_ns)
        self.updates += len(updates)
        if updates:
            self.hub.publish(updates, arrival_ns)
        self._publish_status()

    # -- status ----------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        lags = np.asarray(self._lags, dtype=np.float64) / 1e6
        src = self._source_stats() if self._source_stats is not None else None
        if is_dataclass(src) and not isinstance(src, type):
            src = asdict(src)
        return {
            "running": not self.done.is_set(),
            "error": None if self.error is None else str(self.error),
            "records": self.records,
            "batches": self.batches,
            "updates": self.updates,
            "record_ts_ns": self.last_record_ts,
            "queued_records": self._q.qsize(),
            "lag_ms_p50": float(np.percentile(lags, 50)) if lags.size else None,
            "lag_ms_p99": float(np.percentile(lags, 99)) if lags.size else None,
            "source": src,
            "push": self.hub.stats(),
        }

    def _publish_status(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < self.status_s:
            return
        self._last_status = now
        st = self.status()
        if force:
            st["running"] = False
        # level "runner": the engine may publish status of its own (model and table versions).
        u = Update("status", self.hub.date, self.last_record_ts or 0, time.time_ns(), RUNNER, st)
        self.hub.publish([u], time.time_ns())

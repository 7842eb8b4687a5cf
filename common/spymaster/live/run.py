"""Running the engine over a source: pacing, the refresher that reloads the served table off the
stream's thread, and JSON lines out."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from spymaster.live.engine import Engine
from spymaster.live.streams import LiveStreams
from spymaster.live.types import Update
from spymaster.serving import Service


def updates(engine: Engine, source: Iterable[Any], *, batch: int = 1) -> Iterator[Update]:
    """Feed the source to the engine (``batch`` records at a time) and yield its updates, then the
    updates of the steps left when the source ends."""
    buf: list[Any] = []
    for rec in source:
        buf.append(rec)
        if len(buf) >= batch:
            yield from engine.feed(buf)
            buf = []
    if buf:
        yield from engine.feed(buf)
    yield from engine.finish()


def to_json(u: Update) -> str:
    """One update as a JSON line (NaN never appears: payloads carry ``null``)."""
    return json.dumps(dataclasses.asdict(u), default=str, allow_nan=False)


def write_jsonl(ups: Iterable[Update], out: TextIO, on_update: Callable[[Update], None] | None = None) -> int:
    n = 0
    for u in ups:
        out.write(to_json(u) + "\n")
        if on_update is not None:
            on_update(u)
        n += 1
    out.flush()
    return n


class Refresher:
    """Reloads the service's vector table and fitted models on a background thread, so the stream
    never waits for a reload: the engine keeps answering from the version in memory until the
    new one is loaded, then answers from it (the answer's ``table_version`` says which)."""

    def __init__(
        self,
        service: Service | None,
        every_s: float = 10.0,
        on_reload: Callable[[], None] | None = None,
        streams: LiveStreams | None = None,
    ) -> None:
        self.service = service
        self.every_s = every_s
        self.on_reload = on_reload
        """Called (on this thread) after a new table version loads: the engine's :meth:`Engine.warm`."""
        self.streams = streams
        """Its scaling and projection model are reloaded too when a new version is committed."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-refresher", daemon=True)

    def start(self) -> Refresher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        version = None
        while not self._stop.wait(self.every_s):
            if self.service is not None:
                now = self.service.refresh()
                if now != version and version is not None and self.on_reload is not None:
                    self.on_reload()
                version = now
            if self.streams is not None:
                self.streams.refresh()

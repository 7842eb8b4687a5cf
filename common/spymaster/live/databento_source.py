"""The ``databento.Live`` record source: GLBX.MDP3 ES futures (and options), warmed up from the open.

It subscribes with intraday replay (``start=`` the Globex open, or a given time) so the engine
sees the whole session before the live edge, and yields data records in arrival order. On a lost
connection it reconnects and resumes by itself rather than with the client's own
``reconnect_policy``: the client resubscribes with ``start=None`` (from now) and only reports the
gap, while a bar built over a gap is wrong. Ours asks again from the last arrival time (less a
margin, since ``start=`` filters on exchange time) and drops what it already delivered, so the
stream has no record missed or repeated across the boundary.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from spymaster import sessions
from spymaster.errors import LiveSourceError
from spymaster.lake import paths
from spymaster.settings import DatabentoLiveSettings

__all__ = ["DatabentoSource", "SourceStats", "subscriptions"]

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 30.0

LiveFactory = Callable[..., Any]
"""``databento.Live`` or anything built like it (the default is the real client)."""


@dataclass
class SourceStats:
    """What the source did, for ``status`` updates and tests."""

    records: int = 0
    duplicates_skipped: int = 0
    reconnects: int = 0
    sessions: int = 0
    slow_reader_warnings: int = 0
    last_ts_recv: int | None = None
    connected: bool = False
    resumes: list[tuple[int, int]] = field(default_factory=list)
    """(last arrival time delivered, ``start=`` asked) of each resume."""
    errors: list[str] = field(default_factory=list)


def subscriptions(options: bool) -> list[tuple[str, str]]:
    """(parent symbol, schema) pairs: the raw kinds a date needs (and the options ones)."""
    kinds = paths.RAW_KINDS if options else paths.FUTURES_RAW
    return [(k.product.value, k.schema) for k in kinds]


class DatabentoSource:
    """Records of one trading date from ``databento.Live``, resumed without gaps or repeats.

    Parameters
    ----------
    settings
        Key, gateway, options, reconnect policy, slow-reader behaviour (read by the entry point).
    date
        The trading date; the default start is its Globex open (the warm-up replay).
    start_ns
        Replay from this time instead of the open.
    live
        The client class (the real ``databento.Live`` unless a caller needs another).
    """

    def __init__(
        self,
        settings: DatabentoLiveSettings,
        date: dt.date,
        *,
        start_ns: int | None = None,
        live: LiveFactory | None = None,
    ) -> None:
        if settings.api_key is None:
            raise LiveSourceError("no Databento API key (DATABENTO_API_KEY)", date=date)
        self.settings = settings
        self.date = date
        self.start_ns = start_ns if start_ns is not None else sessions.globex_session(date)[0]
        self.stats = SourceStats()
        self._live = live
        self._stopped = threading.Event()
        self._client: Any = None
        self._boundary: Counter[bytes] = Counter()
        self._resuming = False

    def stop(self) -> None:
        """End the iteration from another thread (the runner's shutdown)."""
        self._stopped.set()
        client = self._client
        if client is not None:
            _terminate(client)

    def __iter__(self) -> Iterator[Any]:
        from databento.common.error import BentoError

        start = self.start_ns
        failures = 0
        while not self._stopped.is_set():
            try:
                client = self._connect(start)
            except BentoError as exc:
                failures = self._retry_or_raise(exc, failures)
                start = self._resume_start()
                continue
            try:
                for rec in client:
                    if self._stopped.is_set():
                        return
                    if not hasattr(rec, "ts_recv"):
                        self._control(rec)
                        continue
                    if self._is_repeat(rec):
                        self.stats.duplicates_skipped += 1
                        continue
                    self._mark(rec)
                    failures = 0
                    yield rec
                return  # the gateway ended the session (a replay to its end)
            except BentoError as exc:
                if self._stopped.is_set():
                    return
                failures = self._retry_or_raise(exc, failures)
                start = self._resume_start()
            finally:
                self.stats.connected = False
                self._client = None
                _terminate(client)

    # -- connection ------------------------------------------------------------------------------------

    def _connect(self, start: int) -> Any:
        if self._live is None:
            import databento

            self._live = databento.Live
        s = self.settings
        assert s.api_key is not None
        client = self._live(
            key=s.api_key.get_secret_value(),
            gateway=s.gateway,
            port=s.port,
            reconnect_policy="none",
            slow_reader_behavior=s.slow_reader_behavior,
            heartbeat_interval_s=s.heartbeat_interval_s,
        )
        self._client = client
        for symbol, schema in subscriptions(s.options):
            client.subscribe(
                dataset=paths.DATASET, schema=schema, stype_in="parent", symbols=symbol, start=start
            )
        self.stats.sessions += 1
        self.stats.connected = True
        self._resuming = self.stats.last_ts_recv is not None
        log.info("live session %d from %d", self.stats.sessions, start)
        return client

    def _retry_or_raise(self, exc: Exception, failures: int) -> int:
        reason = str(exc)
        self.stats.errors.append(reason)
        if self.settings.reconnect_policy == "none" or not _transient(reason):
            raise LiveSourceError(f"live source failed: {reason}", date=self.date) from exc
        if failures >= self.settings.max_reconnects:
            raise LiveSourceError(
                f"live source gave up after {failures} failed reconnects: {reason}", date=self.date
            ) from exc
        wait = min(self.settings.reconnect_backoff_s * 2**failures, _MAX_BACKOFF_S)
        log.warning("live connection lost (%s); reconnecting in %.2f s", reason, wait)
        self._stopped.wait(wait)
        self.stats.reconnects += 1
        return failures + 1

    def _resume_start(self) -> int:
        last = self.stats.last_ts_recv
        if last is None:
            return self.start_ns
        start = max(self.start_ns, last - int(self.settings.resume_margin_s * sessions.NS))
        self.stats.resumes.append((last, start))
        return start

    # -- the boundary ----------------------------------------------------------------------------------

    def _is_repeat(self, rec: Any) -> bool:
        """After a resume, a record arriving no later than the last one delivered was delivered."""
        if not self._resuming:
            return False
        last = self.stats.last_ts_recv
        assert last is not None
        if rec.ts_recv > last:
            self._resuming = False
            return False
        if rec.ts_recv < last:
            return True
        key = bytes(rec)
        if self._boundary[key] > 0:
            self._boundary[key] -= 1
            return True
        return False

    def _mark(self, rec: Any) -> None:
        """Remember the records at the last arrival time: those are the ones a resume repeats."""
        if rec.ts_recv != self.stats.last_ts_recv:
            self._boundary.clear()
            self.stats.last_ts_recv = rec.ts_recv
        self._boundary[bytes(rec)] += 1
        self.stats.records += 1

    def _control(self, rec: Any) -> None:
        import databento_dbn as dbn

        if isinstance(rec, dbn.SystemMsg) and rec.code == dbn.SystemCode.SLOW_READER_WARNING:
            self.stats.slow_reader_warnings += 1
            log.warning("gateway: %s", rec.msg)
        elif isinstance(rec, dbn.ErrorMsg):
            self.stats.errors.append(rec.err)


def _terminate(client: Any) -> None:
    """Close a client whatever state it is in (terminating a closed client is a ValueError)."""
    try:
        client.terminate()
    except ValueError:
        log.debug("live client already closed")


def _transient(reason: str) -> bool:
    """A lost or refused connection is worth retrying; a refused key or subscription is not."""
    low = reason.lower()
    return low.startswith("connection") or any(
        w in low for w in ("reset", "connection lost", "timed out", "timeout")
    )

"""A local Databento Live gateway on 127.0.0.1, so the real ``databento.Live`` client can be tested.

It speaks the Live (Raw API) protocol as the installed client expects it: a text control phase
(``lsg_version=…`` greeting, ``cram=…`` challenge, the client's ``auth=…|dataset=…|…`` reply
checked against the key, ``success=1|session_id=…``, ``schema=…|stype_in=…|symbols=…|start=…``
subscriptions, ``start_session``), then a DBN v3 stream: the metadata, then the subscribed records
merged in arrival (``ts_recv``) order from a lake date's raw files or from given records. It
honours ``start=`` (intraday replay from a time), can pace records at N× the record clock, and
can drop a connection mid-stream on command (a TCP reset), which is how reconnects are tested.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import itertools
import logging
import secrets
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import databento_dbn as dbn
import zstandard

from spymaster.lake import Lake, paths

__all__ = ["LocalGateway", "SessionLog", "Subscription", "lake_feed", "records_feed"]

log = logging.getLogger(__name__)

LSG_VERSION = "0.7.2"
"""What the greeting announces; the client only logs it."""
DBN_VERSION = 3
"""The client decodes with ``UPGRADE_TO_V3``: records and metadata are sent as DBN v3."""
_CHUNK = 64 * 1024
_SCHEMAS = {"definition", "trades", "mbp-10", "mbp-1", "statistics"}


@dataclass(frozen=True)
class Subscription:
    """One parsed subscription request."""

    schema: str
    stype_in: str
    symbols: tuple[str, ...]
    start_ns: int | None
    """``start=`` (inclusive, on ``ts_event``); ``None`` = from the gateway's clock ("now")."""


Feed = Callable[[str, str], Iterable[Any]]
"""``feed(symbol, schema)``: that product's records of one schema in ``ts_recv`` order (DBN v3
record objects); ``KeyError`` when the gateway has none."""


@dataclass
class SessionLog:
    """What one client session did (tests assert on it)."""

    session_id: int
    authenticated: bool = False
    error: str | None = None
    client: str = ""
    slow_reader_behavior: str | None = None
    subscriptions: list[Subscription] = field(default_factory=list)
    records_sent: int = 0
    dropped: bool = False
    closed: bool = False


def lake_feed(lake: Lake, date: dt.date) -> Feed:
    """Serve a lake date's raw files: symbol ``ES.FUT``/``ES.OPT`` and schema name one raw file."""

    def feed(symbol: str, schema: str) -> Iterator[Any]:
        try:
            kind = paths.raw_kind(symbol, schema)
        except ValueError as exc:
            raise KeyError(f"{symbol} {schema}") from exc
        rel = paths.raw_file(kind, date)
        if not lake.exists(rel):
            raise KeyError(f"{symbol} {schema} on {date}")
        return _decode_file(lake, rel)

    return feed


def records_feed(records: Mapping[tuple[str, str], Sequence[Any]]) -> Feed:
    """Serve given records, keyed by (symbol, schema)."""

    def feed(symbol: str, schema: str) -> Iterable[Any]:
        return records[(symbol, schema)]

    return feed


def _decode_file(lake: Lake, rel: str) -> Iterator[Any]:
    """Decode a raw ``.dbn.zst`` in chunks (bounded memory) into v3 records, metadata dropped."""
    decoder = dbn.DBNDecoder(upgrade_policy=dbn.VersionUpgradePolicy.UPGRADE_TO_V3)  # type: ignore[arg-type]
    with lake.local_copy(rel) as path, path.open("rb") as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        while chunk := reader.read(_CHUNK * 16):
            decoder.write(chunk)
            for rec in decoder.decode():
                if not isinstance(rec, dbn.Metadata):
                    yield rec


def cram_response(challenge: str, key: str) -> str:
    """The reply a client with ``key`` must give to ``challenge`` (Databento's CRAM)."""
    return f"{hashlib.sha256(f'{challenge}|{key}'.encode()).hexdigest()}-{key[-5:]}"


def _parse(line: bytes) -> dict[str, str]:
    text = line.decode("utf-8").strip()
    return {k: v for k, _, v in (t.partition("=") for t in text.split("|")) if k}


class _DroppedError(Exception):
    """The gateway was told to drop this session."""


class LocalGateway:
    """A Live gateway on ``127.0.0.1`` serving records from ``feed``.

    Parameters
    ----------
    feed
        Where records come from (:func:`lake_feed` or :func:`records_feed`).
    api_key
        The key clients must authenticate with (the CRAM reply is checked against it).
    speed
        ``None``: send as fast as the socket takes it. ``N``: the gateway's record clock runs at
        N× wall time from ``clock_start_ns``; records before it are an intraday replay (sent at
        once), later ones wait for the clock, as on a day happening now.
    clock_start_ns
        The record time at which the clock starts (default: the first record's time).
    close_at_end
        Close the session after the last record (a replay); otherwise keep it open with
        heartbeats, as a live session does.
    """

    def __init__(
        self,
        feed: Feed,
        *,
        api_key: str,
        dataset: str = paths.DATASET,
        speed: float | None = None,
        clock_start_ns: int | None = None,
        close_at_end: bool = True,
        heartbeat_s: float = 1.0,
        port: int = 0,
    ) -> None:
        self.feed = feed
        self.api_key = api_key
        self.dataset = dataset
        self.speed = speed
        self.clock_start_ns = clock_start_ns
        self.close_at_end = close_at_end
        self.heartbeat_s = heartbeat_s
        self.sessions: list[SessionLog] = []
        self._lock = threading.Lock()
        self._drop_after: int | None = None
        self._plan: deque[int] = deque()
        self._drop_now = threading.Event()
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", port))
        self._t0 = time.monotonic()
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)

    # -- control -------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.getsockname()[1])

    def start(self) -> LocalGateway:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._accept, name="live-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _abort(conn)

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def drop_after(self, n_records: int) -> None:
        """Reset the streaming session once it has sent ``n_records`` more records (once)."""
        with self._lock:
            self._drop_after = n_records

    def plan_drops(self, *counts: int) -> None:
        """The next sessions to stream drop after sending these many records, one count each."""
        with self._lock:
            self._plan.extend(counts)

    def drop_now(self) -> None:
        """Reset the streaming session at its next record (or heartbeat)."""
        self._drop_now.set()

    def clock_ns(self) -> int | None:
        """The gateway's record clock ("now" in record time); ``None`` when not pacing."""
        if self.speed is None or self.clock_start_ns is None:
            return None
        return self.clock_start_ns + int((time.monotonic() - self._t0) * self.speed * 1e9)

    # -- sessions ------------------------------------------------------------------------------------

    def _accept(self) -> None:
        self._server.settimeout(0.1)  # closing a socket does not wake a blocked accept()
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(
                target=self._serve, args=(conn,), name="live-gateway-session", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        s = SessionLog(session_id=next(self._ids))
        with self._lock:
            self.sessions.append(s)
        try:
            self._session(conn, s)
        except _DroppedError:
            s.dropped = True
            _abort(conn)
        except OSError as exc:
            log.info("gateway session %d ended: %s", s.session_id, exc)
        finally:
            s.closed = True
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _session(self, conn: socket.socket, s: SessionLog) -> None:
        reader = conn.makefile("rb")
        challenge = secrets.token_hex(16)
        conn.sendall(f"lsg_version={LSG_VERSION}\n".encode())
        conn.sendall(f"cram={challenge}\n".encode())
        auth = _parse(reader.readline())
        s.client = auth.get("client", "")
        s.slow_reader_behavior = auth.get("slow_reader_behavior")
        reason = self._auth_error(auth, challenge)
        if reason is not None:
            s.error = reason
            conn.sendall(f"success=0|error={reason}\n".encode())
            conn.shutdown(socket.SHUT_RDWR)
            return
        s.authenticated = True
        conn.sendall(f"success=1|session_id={s.session_id}\n".encode())
        while True:
            line = reader.readline()
            if not line:
                return
            msg = _parse(line)
            if "start_session" in msg:
                break
            s.subscriptions.append(
                Subscription(
                    schema=msg.get("schema", ""),
                    stype_in=msg.get("stype_in", ""),
                    symbols=tuple(x for x in msg.get("symbols", "").split(",") if x),
                    start_ns=int(msg["start"]) if msg.get("start") else None,
                )
            )
        self._stream(conn, s)

    def _auth_error(self, auth: Mapping[str, str], challenge: str) -> str | None:
        if auth.get("auth") != cram_response(challenge, self.api_key):
            return "Authentication failed."
        if auth.get("dataset") != self.dataset:
            return f"Unknown dataset {auth.get('dataset')!r}, this gateway serves {self.dataset}."
        if auth.get("encoding", "dbn") != "dbn":
            return f"Unsupported encoding {auth.get('encoding')!r}: only dbn."
        if auth.get("compression", "none") != "none" or auth.get("ts_out", "0") != "0":
            return "This gateway serves uncompressed DBN without ts_out only."
        return None

    def _stream(self, conn: socket.socket, s: SessionLog) -> None:
        now = self.clock_ns()
        sources: list[Iterator[Any]] = []
        errors: list[str] = []
        for sub in s.subscriptions:
            if sub.schema not in _SCHEMAS or sub.stype_in != "parent":
                errors.append(f"Unsupported subscription schema={sub.schema} stype_in={sub.stype_in}.")
                continue
            start = sub.start_ns if sub.start_ns is not None else now
            for symbol in sub.symbols:
                try:
                    records = self.feed(symbol, sub.schema)
                except KeyError:
                    errors.append(f"No {sub.schema} data for {symbol}.")
                    continue
                sources.append(_from(records, start))
        starts = [x.start_ns for x in s.subscriptions if x.start_ns is not None]
        schemas = {x.schema for x in s.subscriptions}
        meta = dbn.Metadata(
            dataset=self.dataset,
            start=min(starts) if starts else (now or time.time_ns()),
            stype_in=dbn.SType.PARENT,  # type: ignore[arg-type]  # the stubs type enum members as str
            stype_out=dbn.SType.INSTRUMENT_ID,  # type: ignore[arg-type]
            schema=dbn.Schema.from_str(next(iter(schemas))) if len(schemas) == 1 else None,
            symbols=sorted({y for x in s.subscriptions for y in x.symbols}),
            version=DBN_VERSION,
        )
        conn.sendall(bytes(meta.encode()))
        if errors:
            conn.sendall(b"".join(bytes(dbn.ErrorMsg(ts_event=meta.start, err=e)) for e in errors))
            conn.shutdown(socket.SHUT_RDWR)
            return
        with self._lock:
            own_drop = self._plan.popleft() if self._plan else None
        buf = bytearray()
        last_ts = meta.start
        for rec in heapq.merge(*sources, key=_ts_recv):
            self._wait_for_clock(conn, rec.ts_recv, buf)
            buf += bytes(rec)
            s.records_sent += 1
            last_ts = rec.ts_recv
            if self._should_drop(s) or s.records_sent == own_drop:
                conn.sendall(buf)
                raise _DroppedError
            if len(buf) >= _CHUNK:
                conn.sendall(buf)
                buf.clear()
        conn.sendall(buf)
        if self.close_at_end:
            conn.shutdown(socket.SHUT_RDWR)
            return
        while not self._stop.is_set():
            if self._drop_now.is_set():
                self._drop_now.clear()
                raise _DroppedError
            beat = dbn.SystemMsg(ts_event=last_ts, msg="Heartbeat", code=dbn.SystemCode.HEARTBEAT)  # type: ignore[arg-type]
            conn.sendall(bytes(beat))
            self._stop.wait(self.heartbeat_s)

    def _should_drop(self, s: SessionLog) -> bool:
        if self._drop_now.is_set():
            self._drop_now.clear()
            return True
        with self._lock:
            if self._drop_after is None:
                return False
            self._drop_after -= 1
            if self._drop_after > 0:
                return False
            self._drop_after = None
        log.info("gateway drops session %d after %d records", s.session_id, s.records_sent)
        return True

    def _wait_for_clock(self, conn: socket.socket, ts: int, buf: bytearray) -> None:
        """Hold a record the paced clock has not reached yet (flushing what is ready first)."""
        if self.speed is None:
            return
        now = self.clock_ns()
        if now is None:
            self.clock_start_ns = ts
            self._t0 = time.monotonic()
            return
        if ts <= now:
            return
        if buf:
            conn.sendall(buf)
            buf.clear()
        while (now := self.clock_ns() or ts) < ts and not self._stop.is_set():
            if self._drop_now.is_set():
                return
            time.sleep(min((ts - now) / 1e9 / self.speed, 0.05))


def _from(records: Iterable[Any], start: int | None) -> Iterator[Any]:
    for rec in records:
        if start is None or rec.ts_event >= start:
            yield rec


def _ts_recv(rec: Any) -> int:
    return int(rec.ts_recv)


def _abort(conn: socket.socket) -> None:
    """Close with a TCP reset (``SO_LINGER`` 0): the client sees a lost connection, not an end."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    except OSError:
        pass

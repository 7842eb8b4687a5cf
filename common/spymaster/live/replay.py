"""Replay of a lake date's raw DBN files as a live record source (issue 14, source a).

The date's raw files are decoded with ``databento_dbn`` (the record objects ``databento.Live``
yields) and merged by ``ts_recv``, the order they would have arrived in. :func:`paced` then
releases them at a chosen speed against the wall clock; records before the start time are
released at once, so the engine warms up from the Globex open without waiting.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import databento_dbn as dbn
import zstandard

from spymaster import sessions
from spymaster.errors import NotFoundError
from spymaster.lake import Lake, paths

_READ = 1 << 20


def file_records(path: Path) -> Iterator[Any]:
    """One DBN file's records (not its metadata), decoded a megabyte at a time."""
    dec = dbn.DBNDecoder()
    with open(path, "rb") as f:
        compressed = f.read(4) == b"\x28\xb5\x2f\xfd"
        f.seek(0)
        z = zstandard.ZstdDecompressor().decompressobj() if compressed else None
        while raw := f.read(_READ):
            data = raw
            if z is not None:
                out = b""
                while data:
                    if z.eof:
                        z = zstandard.ZstdDecompressor().decompressobj()
                    out += z.decompress(data)
                    data = z.unused_data if z.eof else b""
                data = out
            dec.write(data)
            for rec in dec.decode():
                if not isinstance(rec, dbn.Metadata):
                    yield rec


def records(lake: Lake, date: dt.date, kinds: Iterable[paths.RawKind] | None = None) -> Iterator[Any]:
    """Every record of the date's raw files (those present of ``kinds``) in arrival order.

    Ties keep file order: definitions, then the futures and options streams as ``RAW_KINDS`` lists them.
    """
    kinds = list(paths.RAW_KINDS if kinds is None else kinds)
    present = [k for k in kinds if lake.exists(paths.raw_file(k, date))]
    if not any(k in present for k in paths.REQUIRED_RAW):
        raise NotFoundError(f"no raw futures files for {date}", date=date)
    present.sort(key=lambda k: (k.schema != "definition",))
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(lake.local_copy(paths.raw_file(k, date))) for k in present]
        yield from heapq.merge(*(file_records(p) for p in files), key=lambda r: int(r.ts_recv))


def paced(
    source: Iterable[Any],
    *,
    speed: float | None,
    start_ns: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Any]:
    """Release records at ``speed`` × real time from ``start_ns`` on (``None``: as fast as possible).

    Records stamped before ``start_ns`` are released without waiting (warm-up); the record time
    ``start_ns`` is pinned to the wall clock when the first record at or after it is due.
    """
    t0: float | None = None
    r0 = 0
    for rec in source:
        ts = int(rec.ts_recv)
        if speed is not None and (start_ns is None or ts >= start_ns):
            if t0 is None:
                t0, r0 = clock(), ts if start_ns is None else max(start_ns, 0)
            due = t0 + (ts - r0) / sessions.NS / speed
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        yield rec


def start_of(date: dt.date, at: str | None) -> int | None:
    """``HH:MM`` ET on the date as ns UTC (``None``: from the first record, the Globex open)."""
    return None if at is None else sessions.et_ns(date, dt.time.fromisoformat(at))

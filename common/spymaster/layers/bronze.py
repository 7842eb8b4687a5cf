"""Bronze: a date's raw DBN files decoded to Parquet, one table per (product, schema).

Per (date, kind) job: copy the raw object locally if it lives on S3, check its metadata against
its place, stream-decode once (the screen's session medians are gathered on the way, see
:mod:`spymaster.raw.quality`) in chunks into Parquet (one row group per chunk, so peak memory does not
grow with the file; consecutive files of :data:`ROW_GROUPS_PER_FILE` row groups are encoded by
parallel writers, the manifest lists them in the records' order), then commit. A bad file is quarantined with its reason and no
bronze output of it ever becomes visible.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from spymaster.errors import BadInputError, EmptyInputError, ImplausibleInputError, LakeError
from spymaster.lake import (
    Lake,
    Manifest,
    commit,
    discard,
    is_committed,
    new_run_id,
    paths,
    quarantine,
    read_manifest,
)
from spymaster.lake.paths import Layer, RawKind
from spymaster.raw import dbnread, quality

_PRUNED = ("ts_recv", "ts_event", "instrument_id")
"""The columns readers filter on (silver reads MBP-10 by ``ts_recv``): the only ones with statistics."""


def PARQUET_OPTIONS(schema: pa.Schema) -> dict[str, Any]:  # noqa: N802  # reads as a constant
    """Per column, what measured best (docs/BENCHMARKS.md "bronze", levers): integers and
    timestamps delta-encoded and lz4-compressed (a book level's size and count, a timestamp, a
    sequence number change little from one record to the next, so the deltas pack small and lz4
    has little left to do); floats byte-stream-split and zstd 1 (the 20 book prices: zstd halves
    them, lz4 would not). Against zstd 1 everywhere, MBP-10 writes in ~25–35 % less CPU and silver
    reads its columns back in ~25 % less, for ~18 % more bytes (227 MB a full-scale day, not 193):
    a cost in storage and transfer worth two stages' CPU. Dictionaries only for strings; min/max
    statistics only where readers prune."""
    ints = [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)]
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    encoding = dict.fromkeys(ints, "DELTA_BINARY_PACKED") | dict.fromkeys(floats, "BYTE_STREAM_SPLIT")
    return {
        "compression": {f.name: "zstd" if f.name in floats else "lz4" for f in schema},
        "compression_level": dict.fromkeys(floats, 1),
        "use_dictionary": strings,
        "column_encoding": encoding,
        "write_statistics": [f.name for f in schema if f.name in _PRUNED],
    }


ROW_GROUPS_PER_FILE = 4
"""Decode chunks (row groups) per bronze file: consecutive files are written by parallel writers,
so Parquet encoding, the slowest stage, uses both cores; the files keep the records' order."""
WRITERS = 2
"""Files written at once (one per core: encoding releases the GIL)."""


prefetch = dbnread.prefetch
"""Decode on a second thread while the caller writes (see :func:`spymaster.raw.dbnread.prefetch`)."""
_DONE = object()


_ABORT = object()


def write_parts(
    lake: Lake,
    out: Callable[[int], str],
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    per_file: int = ROW_GROUPS_PER_FILE,
    writers: int = WRITERS,
    options: dict[str, Any] | None = None,
) -> tuple[list[str], int]:
    """Write ``batches`` in order as files ``out(0), out(1), …`` of ``per_file`` row groups each,
    up to ``writers`` files at once; returns the keys written (in order) and the row count.

    Batches wait for their writer in memory, at most ``per_file * (writers + 1)`` of them in all,
    so memory is bounded by the chunk size, not the file. No batches still write one (empty)
    file, so the table has its schema. On failure every writer stops; the caller discards the
    keys ``out`` handed out (:func:`build` records them as they are made).
    """
    opts = PARQUET_OPTIONS(schema) if options is None else options
    if writers < 1:
        return _write_in_turn(lake, out, schema, batches, per_file, opts)
    room = threading.Semaphore(per_file * (writers + 1))
    keys: list[str] = []
    queues: list[queue.Queue[Any]] = []
    rows = 0

    def write(key: str, q: queue.Queue[Any]) -> None:
        with lake.parquet_writer(key, schema, **opts) as writer:
            while (item := q.get()) is not _DONE:
                if item is _ABORT:  # the job failed elsewhere; the caller discards the file
                    return
                writer.write_batch(item)
                room.release()

    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="bronze-write") as pool:
        futures: list[Future[None]] = []
        try:
            for i, batch in enumerate(batches):
                if i % per_file == 0:
                    if queues:
                        queues[-1].put(_DONE)
                    for f in futures:  # a failed writer stops the job at once
                        if f.done() and f.exception() is not None:
                            f.result()
                    keys.append(out(len(keys)))
                    queues.append(queue.Queue())
                    futures.append(pool.submit(write, keys[-1], queues[-1]))
                while not room.acquire(timeout=0.1):
                    for f in futures:
                        if f.done() and f.exception() is not None:
                            f.result()
                queues[-1].put(batch)
                rows += batch.num_rows
            if not queues:
                keys.append(out(0))
                queues.append(queue.Queue())
                futures.append(pool.submit(write, keys[-1], queues[-1]))
            queues[-1].put(_DONE)
            for f in futures:
                f.result()
        except BaseException:
            for q in queues:
                q.put(_ABORT)
            for f in futures:
                f.cancel()
            raise
    return keys, rows


def _write_in_turn(
    lake: Lake,
    out: Callable[[int], str],
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    per_file: int,
    opts: dict[str, Any],
) -> tuple[list[str], int]:
    """:func:`write_parts` on the caller's thread alone (``writers=0``): the same files, one core."""
    keys: list[str] = []
    rows = 0
    it = iter(batches)
    batch = next(it, None)
    while True:
        keys.append(out(len(keys)))
        with lake.parquet_writer(keys[-1], schema, **opts) as writer:
            for _ in range(per_file):
                if batch is None:
                    break
                writer.write_batch(batch)
                rows += batch.num_rows
                batch = next(it, None)
        if batch is None:
            return keys, rows


@dataclass(frozen=True)
class BronzeResult:
    date: dt.date
    kind: RawKind
    rows: int
    manifest: Manifest


def build(
    lake: Lake,
    kind: RawKind,
    date: dt.date,
    *,
    tmp_dir: str | None = None,
    allow_shrink: bool = False,
    writers: int = WRITERS,
) -> BronzeResult:
    """Decode one raw file of a date into its committed bronze table partition.

    ``writers`` Parquet files are encoded at once (a backfill running one date per core passes 1);
    ``writers=0`` runs on the caller's thread alone, decompressing, decoding and writing in turn
    (a worker given one core, like a 1-vCPU Lambda, gains nothing from helper threads).

    Records are screened (:mod:`spymaster.quality`): implausible ones are dropped and counted in
    the manifest and the date's data-quality record, or the whole file is refused above
    :data:`~spymaster.quality.MAX_DROP_FRACTION`.

    Raises
    ------
    BadInputError
        The raw file is empty, corrupt, mislabelled, or its records lie (outside its window,
        unknown instruments, implausible values); it has been quarantined.
    ShrinkError
        The file is plausible but would replace a committed partition with far fewer rows
        (unless ``allow_shrink``); nothing was committed.
    LakeError
        The raw file does not exist, or storage failed (nothing was committed).
    """
    key = paths.raw_file(kind, date)
    if not lake.exists(key):
        raise LakeError("raw file has not landed", file=key, date=date, schema=kind.schema)
    table = kind.bronze_table
    run_id = new_run_id()

    def out(i: int) -> str:
        key = paths.data_file(Layer.BRONZE, table, date, run_id, i)
        written.append(key)
        return key

    written: list[str] = []
    source = lake.fingerprint(key)
    try:
        with lake.local_copy(key, tmp_dir=tmp_dir) as local:
            info = dbnread.inspect(local, label=key)
            dbnread.check_placement(info, kind, date)
            schema = dbnread.arrow_schema(kind.schema)
            # One decode: the screen gathers the session medians as it goes and says after it
            # whether they would have dropped anything; only then decode again, medians first.
            screen = quality.screen(local, info, kind, label=key, deferred=True)
            files, rows = write_parts(
                lake, out, schema, _batches(local, key, screen, writers), writers=writers
            )
            if screen.medians is None and not screen.confirm():
                discard(lake, written)
                written.clear()
                screen = quality.screen(local, info, kind, label=key)
                files, rows = write_parts(
                    lake, out, schema, _batches(local, key, screen, writers), writers=writers
                )
            q = screen.quality
            if q.records == 0:
                raise EmptyInputError(
                    "file has a header but no records", file=key, date=date, schema=kind.schema
                )
            if q.refused:
                _record_quality(lake, kind, date, key, run_id, q, refused=True)
                raise ImplausibleInputError(quality.refusal(q), file=key, date=date, schema=kind.schema)
        manifest = commit(
            lake,
            Layer.BRONZE,
            table,
            date,
            run_id,
            files,
            rows,
            inputs={"raw": key, **source, "dbn_version": info.version},
            stats={"quality": q.as_dict()},
            allow_shrink=allow_shrink,
        )
        _record_quality(lake, kind, date, key, run_id, q, refused=False)
    except BadInputError as exc:
        discard(lake, written)
        try:
            quarantine.put(lake, key, kind, date, exc)
        except LakeError as qexc:  # say what was wrong with the file, then why it stayed put
            raise LakeError(
                f"{exc.message}; the file could not be quarantined: {qexc.message}",
                file=key,
                date=date,
                schema=kind.schema,
            ) from exc
        raise
    except BaseException:
        discard(lake, written)
        raise
    quarantine.resolve(lake, kind, date, run_id)
    return BronzeResult(date=date, kind=kind, rows=rows, manifest=manifest)


def _batches(local: Any, key: str, screen: quality.Screen, writers: int) -> Iterator[pa.RecordBatch]:
    """The screened batches: decompressed on a thread of its own (zstd releases the GIL), screened
    and converted on another, so that they and the writers share both cores; with ``writers=0``
    all on the caller's thread."""
    if writers < 1:
        return dbnread.decode(local, label=key, screen=screen)
    return prefetch(dbnread.decode(local, label=key, screen=screen, ahead=True), name="bronze-decode")


def _record_quality(
    lake: Lake, kind: RawKind, date: dt.date, key: str, run_id: str, q: quality.Quality, *, refused: bool
) -> None:
    """The date's data-quality record for this table: what was read, dropped and why."""
    lake.write_json(
        paths.quality_file(kind.bronze_table, date),
        {
            "table": kind.bronze_table,
            "date": date.isoformat(),
            "raw": key,
            "run_id": run_id,
            "refused": refused,
            **q.as_dict(),
        },
    )


def is_current(lake: Lake, kind: RawKind, date: dt.date) -> bool:
    """Committed from the raw file that is there now (a replaced raw file makes bronze stale)."""
    key = paths.raw_file(kind, date)
    if not is_committed(lake, Layer.BRONZE, kind.bronze_table, date) or not lake.exists(key):
        return False
    inputs = read_manifest(lake, Layer.BRONZE, kind.bronze_table, date).inputs
    return {k: inputs.get(k) for k in ("bytes", "mtime_ns")} == lake.fingerprint(key)


def build_date(
    lake: Lake, date: dt.date, *, tmp_dir: str | None = None
) -> dict[RawKind, BronzeResult | Exception]:
    """Every raw kind of a date that has landed (futures always; options when they are there);
    one kind failing does not stop the others."""
    results: dict[RawKind, BronzeResult | Exception] = {}
    for kind in paths.RAW_KINDS:
        if kind in paths.OPTIONS_RAW and not lake.exists(paths.raw_file(kind, date)):
            continue
        try:
            results[kind] = build(lake, kind, date, tmp_dir=tmp_dir)
        except (BadInputError, LakeError) as exc:
            results[kind] = exc
    return results

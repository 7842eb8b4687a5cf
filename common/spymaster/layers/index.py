"""The LanceDB vector table on the lake: one table, partition columns, one writer.

Design (measured by ``bench/bench_gold_index.py``, figures in docs/BENCHMARKS.md, documented in docs/GOLD.md):

* **One table with partition columns** (``level_kind``, ``direction``, ``time_bucket`` and their
  ``partition`` key) plus bitmap scalar indexes, not 60 tables: one manifest to version, one
  ``merge_insert`` per date, and the API loads each partition once per table version anyway.
* **One writer, enforced.** Date jobs only commit gold Parquet; :func:`index_date` alone writes
  the table, under the lake's ``index`` lock (an ``flock`` locally, a conditional-PUT lease on
  S3), with ``merge_insert`` on ``episode_id`` and a delete of the date's rows that are no longer
  in gold, so re-indexing a date replaces exactly that date and replays change nothing. After each
  write the date's ids are checked for duplicates, and :func:`index` first repairs any table that
  holds some (left by a writer from before the lock, or by a crash mid-commit).
* **Normalised at index time** with the statistics of the trailing window of dates *before* the
  episode's date (``vectors.stats_for_date``), so no vector is scaled with later information; the
  statistics version is stored per row and the query path applies the same version.
* **A snapshot for the API.** After every write the writer also puts the columns the API serves
  (:data:`SNAPSHOT_COLUMNS`) into one Arrow IPC object (:data:`~spymaster.lake.paths.VECTOR_SNAPSHOT`)
  tagged with the table version: the API's cold start is one GET and no LanceDB import (over a
  second on its own). Raw vectors are kept only where a label is (what the learned similarity
  searches). A missing or stale snapshot is rewritten by the next writer; readers fall back to
  the table when there is none.
* **An ANN index once a partition is too large for memory** (``settings.ANN``; measured by
  ``bench/bench_scale.py``, chosen in docs/ARCHITECTURE.md "Scale"): while every partition has at
  most ``ANN.min_rows`` rows the API searches them exactly in memory and no vector index exists.
  When one crosses it, :func:`ensure_ann_index` builds one cosine index on the whole ``vector``
  column (the API prefilters it on the partition and the as-of date); it is part of the table's
  version like every Lance index, each compaction adds new rows to it, and it is retrained once
  the table has grown ``ANN.retrain_growth`` times since (recorded in ``paths.VECTOR_ANN``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from spymaster import sessions, vectors
from spymaster.errors import LakeError
from spymaster.lake import Lake, Lease, committed_dates, is_committed, locked, paths, read_manifest
from spymaster.lake.paths import EPISODES_TABLE, VECTOR_TABLE, Layer
from spymaster.layers import gold
from spymaster.outcomes import HORIZONS_MIN
from spymaster.partitions import partition_key
from spymaster.settings import ANN, AnnSearch

LOCK = "index"
"""The lake lock every writer of the vector table holds."""
HOUSEKEEPING_GRACE = dt.timedelta(hours=24)
"""Table versions and unreferenced files younger than this are kept (a reader or a job may use them)."""

INDEX_COLUMNS = [
    "episode_id",
    "date",
    "ts",
    "level_kind",
    "direction",
    "time_bucket",
    "stats_version",
    "vector",
    *(f"label_{h}m" for h in HORIZONS_MIN),
    *(f"mfe_{h}m" for h in HORIZONS_MIN),
    *(f"mae_{h}m" for h in HORIZONS_MIN),
]
"""The columns a partition of the served index is built from (``serving.snapshot.index_from_arrow``)."""
SNAPSHOT_COLUMNS = [
    *INDEX_COLUMNS,
    "anchor_reason",
    "label",
    "raw",
]
"""What the API holds in memory: the partitions' columns and the learned similarity's history."""
_SNAPSHOT_VERSION = b"table_version"
_SNAPSHOT_CALENDAR = b"calendar"
"""The trading days of the lake's years (``sessions.calendar_years``): the API seeds its calendar
from them instead of importing the exchange-calendar library on its first answer."""

KEY_COLUMNS = ("episode_id", "date", "ts", "level_kind", "direction", "time_bucket", "partition")
CARRIED = ("level_price", "price", "atr", "distance", "anchor_reason")


def schema() -> pa.Schema:
    ep = gold.EPISODE_SCHEMA
    fields = [
        ep.field("episode_id"),
        ep.field("date"),
        ep.field("ts"),
        ep.field("level_kind"),
        ep.field("direction"),
        ep.field("time_bucket"),
        pa.field("partition", pa.string(), nullable=False),
        *(ep.field(c) for c in CARRIED),
        pa.field("stats_version", pa.string(), nullable=False),
        pa.field("vector", vectors.VECTOR_TYPE, nullable=False),
        # Raw (unscaled) features may be NaN; LanceDB refuses NaN in fixed-size float lists,
        # which it treats as vector columns, so the raw copy is a plain list.
        pa.field("raw", pa.list_(pa.float32()), nullable=False),
        *(ep.field(c) for c in gold.OUTCOME_COLUMNS),
    ]
    return pa.schema(fields, metadata={"vector_layout": vectors.LAYOUT_VERSION})


def connect(lake: Lake) -> Any:
    import lancedb

    uri = lake.full_uri(paths.VECTORS_DIR)
    if lake.is_s3:
        return lancedb.connect(uri, storage_options=lake.settings.storage_options())
    return lancedb.connect(uri)


def open_table(lake: Lake, *, create: bool = False) -> Any | None:
    db = connect(lake)
    names = db.list_tables()
    names = list(getattr(names, "tables", names))
    if VECTOR_TABLE in names:
        return db.open_table(VECTOR_TABLE)
    if not create:
        return None
    return db.create_table(VECTOR_TABLE, schema=schema())


StatsCache = dict[tuple[dt.date, tuple[str, ...]], Any]


def rows_for(
    lake: Lake, date: dt.date, episodes: pa.Table, cache: StatsCache | None = None
) -> tuple[pa.Table, str]:
    """Episodes of a date as vector-table rows, normalised with that date's statistics."""
    stats = vectors.stats_for_date(lake, date, cache=cache)
    return _rows(episodes, stats), stats.version


def _rows(episodes: pa.Table, stats: vectors.Stats) -> pa.Table:
    raw = vectors.vectors_from_arrow(episodes.column("vector"))
    norm = vectors.apply(stats, raw)
    part = [
        partition_key(k, d, b)
        for k, d, b in zip(
            episodes.column("level_kind").to_pylist(),
            episodes.column("direction").to_pylist(),
            episodes.column("time_bucket").to_pylist(),
            strict=True,
        )
    ]
    cols: dict[str, Any] = {}
    for f in schema():
        if f.name == "partition":
            cols[f.name] = pa.array(part, pa.string())
        elif f.name == "stats_version":
            cols[f.name] = pa.array([stats.version] * episodes.num_rows, pa.string())
        elif f.name == "vector":
            cols[f.name] = vectors.vectors_to_arrow(norm)
        elif f.name == "raw":
            cols[f.name] = episodes.column("vector").combine_chunks().cast(pa.list_(pa.float32()))
        else:
            cols[f.name] = episodes.column(f.name)
    return pa.table(cols, schema=schema())


@dataclass(frozen=True)
class IndexResult:
    date: dt.date
    rows: int
    stats_version: str
    skipped: bool = False


def index_date(
    lake: Lake,
    date: dt.date,
    *,
    force: bool = False,
    cache: StatsCache | None = None,
    lease: Lease | None = None,
) -> IndexResult:
    """Upsert one date's committed gold into the table; a no-op if that exact gold run and
    statistics version are already indexed (unless ``force``).

    Takes the ``index`` lock unless the caller already holds it (``lease``).
    """
    if lease is None:
        with locked(lake, LOCK) as held:
            res = index_date(lake, date, force=force, cache=cache, lease=held)
            refresh_snapshot(lake)
            return res
    man = read_manifest(lake, Layer.GOLD, EPISODES_TABLE, date)
    episodes = lake.read_parquet(man.files)
    rows, version = rows_for(lake, date, episodes, cache)
    marker = {"gold_run": man.run_id, "stats_version": version, "rows": rows.num_rows}
    if (
        not force
        and lake.exists(paths.index_marker(date))
        and lake.read_json(paths.index_marker(date)) == marker
    ):
        return IndexResult(date, rows.num_rows, version, skipped=True)
    table = open_table(lake, create=True)
    assert table is not None
    where = f"date = date '{date.isoformat()}'"
    if rows.num_rows:
        (
            table.merge_insert("episode_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(where)
            .execute(rows)
        )
    else:
        table.delete(where)
    got = table.search().where(where).select(["episode_id"]).limit(None).to_arrow()
    if got.num_rows != rows.num_rows or pc.count_distinct(got.column("episode_id")).as_py() != got.num_rows:
        # Never leave a date with duplicated or missing ids: rewrite it from gold.
        table.delete(where)
        table.add(rows)
    lake.write_json(paths.index_marker(date), marker)
    return IndexResult(date, rows.num_rows, version)


def index(
    lake: Lake, dates: list[dt.date] | None = None, *, force: bool = False, ann: AnnSearch = ANN
) -> list[IndexResult]:
    """Index committed gold dates (all by default), then make sure the scalar indexes exist.

    Holds the ``index`` lock throughout (a second indexer waits for it), and first repairs a
    table that holds duplicated episode ids.
    """
    with locked(lake, LOCK) as lease, _table_errors():
        repaired = repair(lake, lease)
        todo = dates if dates is not None else committed_dates(lake, Layer.GOLD, EPISODES_TABLE)
        todo = sorted(set(todo) | set(repaired))
        cache: StatsCache = {}
        out = [
            index_date(lake, d, force=force or d in repaired, cache=cache, lease=lease)
            for d in todo
            if is_committed(lake, Layer.GOLD, EPISODES_TABLE, d)
        ]
        if any(not r.skipped for r in out):
            ensure_indexes(lake, lease=lease, ann=ann)
        refresh_snapshot(lake)
    return out


@contextlib.contextmanager
def _table_errors() -> Iterator[None]:
    """LanceDB reports storage failures as ``OSError``/``RuntimeError``: say so in one line."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        why = (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]
        raise LakeError(f"vector table write failed: {why}", file=paths.VECTORS_DIR) from exc


def duplicates(lake: Lake) -> dict[str, int]:
    """Episode ids present more than once in the table, with their row counts."""
    t = read_all(lake, ["episode_id"])
    if t.num_rows == 0:
        return {}
    counts = pc.value_counts(t.column("episode_id"))
    return {
        str(r["values"]): int(r["counts"])
        for r in counts.filter(pc.greater(counts.field("counts"), 1)).to_pylist()
    }


def repair(lake: Lake, lease: Lease) -> list[dt.date]:
    """Remove every row of a duplicated episode id; returns the dates to re-index from gold.

    Needs the ``index`` lock (``lease``) so no writer races the repair.
    """
    dup = duplicates(lake)
    if not dup:
        return []
    table = open_table(lake)
    assert table is not None
    ids = sorted(dup)
    dates: set[dt.date] = set()
    for i in range(0, len(ids), 500):
        listing = ", ".join("'" + x.replace("'", "''") + "'" for x in ids[i : i + 500])
        hit = table.search().where(f"episode_id IN ({listing})").select(["date"]).limit(None).to_arrow()
        dates |= set(hit.column("date").to_pylist())
        table.delete(f"episode_id IN ({listing})")
    for d in dates:  # markers of those dates no longer describe the table
        lake.delete(paths.index_marker(d))
    return sorted(dates)


def ensure_indexes(lake: Lake, *, lease: Lease | None = None, ann: AnnSearch = ANN) -> None:
    """Bitmap indexes on the partition columns and a B-tree on date, created once; the ANN index
    when a partition needs it (:func:`ensure_ann_index`); then compact.

    A table write like any other: takes the ``index`` lock unless the caller holds it (``lease``).
    """
    if lease is None:
        with locked(lake, LOCK) as held:
            ensure_indexes(lake, lease=held, ann=ann)
            refresh_snapshot(lake)
        return
    table = open_table(lake)
    if table is None or table.count_rows() == 0:
        return
    have = {tuple(i.columns) for i in table.list_indices()}
    wanted = {
        "partition": "BITMAP",
        "level_kind": "BITMAP",
        "direction": "BITMAP",
        "time_bucket": "BITMAP",
        "date": "BTREE",
    }
    with warnings.catch_warnings():
        # create_scalar_index is deprecated in favour of create_index(config=…), whose 0.40
        # signature is still the vector one; the scalar call is the one that works today.
        warnings.simplefilter("ignore")
        for col, kind in wanted.items():
            if (col,) not in have:
                table.create_scalar_index(col, index_type=kind)
    ensure_ann_index(lake, table, ann)
    _optimize(table, HOUSEKEEPING_GRACE)


ANN_INDEX = "vector_ann"
"""The name of the table's one vector index."""


def ann_partitions(table: Any, min_rows: int | None) -> dict[str, int]:
    """Partitions with more than ``min_rows`` rows (with their row counts): the ones served by ANN."""
    if min_rows is None or table.count_rows() <= min_rows:
        return {}  # no partition can be larger than the table: skip reading its partition column
    keys = table.search().select(["partition"]).limit(None).to_arrow().column("partition")
    counts = pc.value_counts(keys)
    return {
        str(r["values"]): int(r["counts"])
        for r in counts.filter(pc.greater(counts.field("counts"), min_rows)).to_pylist()
    }


def ann_lists(rows: int) -> int:
    """IVF lists for a table of ``rows``: √rows (LanceDB's rule of thumb), at most 4096."""
    return max(1, min(4096, round(math.sqrt(rows))))


def ann_sub_vectors() -> int:
    """PQ sub-vectors of about 8 dimensions that divide the vector (PQ needs a divisor)."""
    dim = int(vectors.VECTOR_DIM)
    return min((d for d in range(1, dim + 1) if dim % d == 0), key=lambda d: abs(dim / d - 8))


def ensure_ann_index(lake: Lake, table: Any, ann: AnnSearch = ANN) -> bool:
    """Build (or retrain) the cosine vector index when a partition has more than ``ann.min_rows``
    rows; True when it built. Idempotent: an index of the same type trained on at least
    1 / ``ann.retrain_growth`` of today's rows is kept (compaction adds the new rows to it).
    Call it holding the ``index`` lock."""
    if not ann_partitions(table, ann.min_rows):
        return False
    rows = int(table.count_rows())
    have = [i for i in table.list_indices() if tuple(i.columns) == ("vector",)]
    marker = lake.read_json(paths.VECTOR_ANN) if lake.exists(paths.VECTOR_ANN) else None
    if (
        have
        and marker is not None
        and marker.get("index_type") == ann.index_type
        and rows <= ann.retrain_growth * int(marker.get("rows", 0))
    ):
        return False
    lists = ann_lists(rows)
    from lancedb.index import IvfHnswSq, IvfPq

    config: IvfPq | IvfHnswSq = (
        IvfPq(distance_type="cosine", num_partitions=lists, num_sub_vectors=ann_sub_vectors())
        if ann.index_type == "IVF_PQ"
        else IvfHnswSq(distance_type="cosine", num_partitions=lists)
    )
    # the unified API: the first argument is the column (the old one named it the metric)
    table.create_index("vector", replace=True, name=ANN_INDEX, config=config)
    lake.write_json(
        paths.VECTOR_ANN,
        {"rows": rows, "index_type": ann.index_type, "lists": lists, "table_version": int(table.version)},
    )
    return True


def _optimize(table: Any, older_than: dt.timedelta, tries: int = 4) -> None:
    """Compact and clean up; Lance asks callers to retry a compaction preempted by a concurrent
    commit (compaction is idempotent), which a second writer past a non-atomic S3 lease can cause."""
    for attempt in range(tries):
        try:
            table.optimize(cleanup_older_than=older_than)
            return
        except RuntimeError as exc:
            if "Retryable commit conflict" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def prune_versions(lake: Lake, older_than: dt.timedelta) -> int:
    """Remove vector-table versions older than ``older_than`` (the current one always stays);
    returns how many went. Holds the ``index`` lock."""
    with locked(lake, LOCK), _table_errors():
        table = open_table(lake)
        if table is None:
            return 0
        before = len(table.list_versions())
        _optimize(table, older_than)
        refresh_snapshot(lake)
        return before - len(table.list_versions())


def refresh_snapshot(lake: Lake) -> bool:
    """Rewrite :data:`~spymaster.lake.paths.VECTOR_SNAPSHOT` unless it already holds the table's
    current version; True when it wrote. Call it holding the ``index`` lock, after a write."""
    table = open_table(lake)
    if table is None:
        return False
    version = int(table.version)
    if snapshot_version(lake) == version:
        return False
    data = table.search().select(SNAPSHOT_COLUMNS).limit(None).to_arrow()
    labelled = pc.is_valid(data.column("label"))
    raw = pc.if_else(labelled, data.column("raw"), pa.scalar(None, data.schema.field("raw").type))
    data = data.set_column(data.schema.get_field_index("raw"), "raw", raw)
    years = {d.year for d in pc.unique(data.column("date")).to_pylist()}
    # the lake's years and their neighbours (a previous trading day may fall in the year before)
    cal = sessions.calendar_years(y + o for y in years for o in (-1, 0, 1))
    data = data.replace_schema_metadata(
        {_SNAPSHOT_VERSION: str(version).encode(), _SNAPSHOT_CALENDAR: json.dumps(cal).encode()}
    )
    sink = pa.BufferOutputStream()
    # lz4: the vectors compress little and reading must stay fast; one object, one PUT
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_file(sink, data.schema, options=options) as w:
        w.write_table(data, max_chunksize=65_536)
    lake.write_bytes(paths.VECTOR_SNAPSHOT, sink.getvalue().to_pybytes())
    return True


def snapshot_version(lake: Lake) -> int | None:
    """The table version the snapshot holds (None without one); reads only the IPC footer."""
    if not lake.exists(paths.VECTOR_SNAPSHOT):
        return None
    with lake.fs.open_input_file(lake.path(paths.VECTOR_SNAPSHOT)) as f:
        meta = pa.ipc.open_file(f).schema.metadata or {}
    v = meta.get(_SNAPSHOT_VERSION)
    return int(v) if v is not None else None


def read_snapshot(lake: Lake, *, seen: bool = False) -> tuple[pa.Table, int] | None:
    """The snapshot's rows and table version in one GET (None when there is none; ``seen``: the
    caller has just seen it exist, so no second HEAD); seeds this
    process's trading calendar with the days it carries (``sessions.seed_calendar``).

    Raises
    ------
    LakeError
        The object cannot be read or is not a snapshot.
    """
    if not seen and not lake.exists(paths.VECTOR_SNAPSHOT):
        return None
    data = lake.read_bytes(paths.VECTOR_SNAPSHOT)
    try:
        table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
        meta = table.schema.metadata or {}
        version = int(meta[_SNAPSHOT_VERSION])
        if _SNAPSHOT_CALENDAR in meta:
            sessions.seed_calendar(json.loads(meta[_SNAPSHOT_CALENDAR]))
    except (pa.ArrowInvalid, KeyError, ValueError) as exc:
        raise LakeError(f"unreadable vector-table snapshot: {exc}", file=paths.VECTOR_SNAPSHOT) from exc
    return table.replace_schema_metadata(None), version


def read_all(lake: Lake, columns: list[str] | None = None, where: str | None = None) -> pa.Table:
    """The table's rows (for the API's in-memory partitions and for tests)."""
    table = open_table(lake)
    if table is None:
        return schema().empty_table() if columns is None else schema().empty_table().select(columns)
    q = table.search().limit(None) if hasattr(table, "search") else table
    if where:
        q = q.where(where)
    if columns:
        q = q.select(columns)
    out: pa.Table = q.to_arrow()
    return out


def read_from_markers(lake: Lake, columns: list[str] | None = None) -> pa.Table | None:
    """The table's rows rebuilt from what the indexer committed beside it, without LanceDB.

    Per index marker: the date's gold run normalised with the marker's statistics version, exactly
    as :func:`index_date` wrote them. Importing LanceDB alone costs over a second, too much for a
    one-shot command line query. ``None`` when a marker's gold run is no longer the committed one
    (rebuilt, not yet re-indexed): then only the table knows what it holds.
    """
    parts: list[pa.Table] = []
    stats: dict[str, vectors.Stats] = {}
    for f in sorted(lake.list_files(paths.INDEX_MARKERS)):
        date = paths.date_from_partition(f)
        marker = lake.read_json(f)
        if not is_committed(lake, Layer.GOLD, EPISODES_TABLE, date):
            return None
        man = read_manifest(lake, Layer.GOLD, EPISODES_TABLE, date)
        if man.run_id != marker.get("gold_run") or man.rows != marker.get("rows"):
            return None
        if not man.rows:
            continue
        version = str(marker["stats_version"])
        if version not in stats:
            stats[version] = vectors.load_stats(lake, version)
        rows = _rows(lake.read_parquet(man.files), stats[version])
        parts.append(rows.select(columns) if columns else rows)
    empty = schema().empty_table()
    if not parts:
        return empty.select(columns) if columns else empty
    return pa.concat_tables(parts)


def partition_counts(lake: Lake) -> dict[str, dict[str, int]]:
    """Rows and primary-label counts per partition key."""
    t = read_all(lake, ["partition", "label"])
    out: dict[str, dict[str, int]] = {}
    for r in pc.value_counts(
        pc.binary_join_element_wise(t.column("partition"), t.column("label"), "#")
    ).to_pylist():
        part, lab = str(r["values"]).rsplit("#", 1)
        d = out.setdefault(part, {"n": 0})
        d["n"] += int(r["counts"])
        d[lab] = d.get(lab, 0) + int(r["counts"])
    return out

"""The I/O side of the API: the vector table in memory, a date's silver, query vectors, answers.

* **The vector table** is read whole into :class:`retrieval.Index` partitions once per LanceDB
  table version. The version is checked at most every ``table_check_seconds`` (default 10 s;
  ``checkout_latest`` on the open table, ≈ 1 ms locally); a changed version is reloaded by one
  thread while the others keep answering from the previous version. The API never writes.
* **A date's silver** (state, levels, 2-minute bars) is read through the lake into a small LRU
  cache keyed by date; an entry is revalidated against its ``state`` manifest's run id at most
  every ``table_check_seconds``, so a re-run silver date is picked up.
* **Query vectors at an instant** are built exactly as the pipeline builds an episode's: the
  date's silver state → ``vectors.build_vectors`` for that (ts, level_kind) → ``vectors.apply``
  with the statistics version of that date (the version stored on the date's indexed rows, else
  ``stats_for_date(..., save=False)``, fitted on earlier dates only).
* **As-of safety.** Every neighbour comes from a date strictly before ``as_of``; ``as_of``
  defaults to the query's date and may not be later than it (that would let the query date's own
  outcomes, or later ones, in). The pooled prior counts only rows dated strictly before ``as_of``
  too (``Index.pooled_counts``).
* **The estimator** is the evaluation's recommendation, set in one place
  (:mod:`spymaster.retrieval.calibration`): ``SERVED_PARAMS`` (the partition base rate shrunk toward the
  pooled split of all partitions with 100 pseudo-counts, the interval's Beta total capped at 2.5),
  ``SERVED.weights`` (``dealer`` 0; a request's weights override them group by group),
  ``SERVED.k`` and ``SERVED.max_per_day``.
* **The evaluation report** (``reports/evaluation/latest.json`` and the files it lists) is read
  from the lake per request (``latest.json`` is small) and served as JSON and files; only files
  named in ``latest.json`` and lying in its run's folder are ever read.

Answers are plain JSON-ready dicts in the API's contract (times ISO-8601 UTC with ``Z``; ET
wall-clock ``HH:MM:SS`` for neighbours' times). Domain errors are :class:`NotFoundError` and
:class:`InvalidQueryError`; :mod:`spymaster.api` maps them to HTTP statuses in one place.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster import retrieval, sessions, vectors
from spymaster.errors import LakeError, NotCommittedError, SpymasterError
from spymaster.features import STATE_SCHEMA
from spymaster.lake import Lake, committed_dates, paths, read_committed, read_manifest
from spymaster.lake.paths import Layer
from spymaster.layers import gold
from spymaster.layers.index import open_table
from spymaster.levels import DIRECTIONS, LEVEL_KINDS
from spymaster.outcomes import HORIZONS_MIN, OUTCOMES, PRIMARY_HORIZON_MIN, label_codes
from spymaster.partitions import TIME_BUCKETS, all_partitions, partition_key
from spymaster.retrieval import Index, Params, Partition, calibration, finite_or_none
from spymaster.sessions import BAR_CLOSE_NS, NS, STEP_NS, day_number, from_day_number
from spymaster.settings import SERVED

__all__ = [
    "InvalidQueryError",
    "NotFoundError",
    "Service",
    "et_time",
    "iso_z",
]

log = logging.getLogger(__name__)

REPORT_MEDIA_TYPES: Mapping[str, str] = {
    ".md": "text/markdown; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
}
"""The evaluation report's files the API serves, by suffix."""
_REPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9]+)?$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NO_REPORT = "no evaluation report in the lake yet (run `spymaster evaluate`)"
BARS_FROM = dt.time(9, 0)
_INDEX_COLUMNS = [
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


class NotFoundError(SpymasterError, LookupError):
    """The thing asked about is not in the lake (a date, an episode, an active level)."""


class InvalidQueryError(SpymasterError, ValueError):
    """The query is well-formed JSON but cannot be answered as asked."""


# -- small helpers ---------------------------------------------------------------------------------


def iso_z(ts_ns: int) -> str:
    """ns since the epoch (UTC) → ``2026-03-05T14:30:00Z`` (fractions only when present)."""
    sec, frac = divmod(int(ts_ns), NS)
    t = dt.datetime.fromtimestamp(sec, tz=dt.UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{f'{frac:09d}'.rstrip('0')}Z" if frac else f"{base}Z"


def et_time(ts_ns: int) -> str:
    """ns since the epoch (UTC) → New York wall-clock ``HH:MM:SS``."""
    return dt.datetime.fromtimestamp(int(ts_ns) // NS, tz=sessions.ET).strftime("%H:%M:%S")


def _floats(col: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.float64]:
    return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _ns(col: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.int64]:
    return np.asarray(col.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _empty_partition(key: str) -> Partition:
    kind, direction, bucket = key.split("|")
    h = len(HORIZONS_MIN)
    return Partition(
        key=key,
        level_kind=kind,
        direction=direction,
        time_bucket=int(bucket),
        unit=np.zeros((0, vectors.VECTOR_DIM), np.float32),
        day=np.zeros(0, np.int32),
        ts=np.zeros(0, np.int64),
        episode_id=np.zeros(0, np.str_),
        labels=np.zeros((h, 0), np.int8),
        mfe=np.zeros((h, 0)),
        mae=np.zeros((h, 0)),
    )


def index_from_arrow(table: pa.Table, version: int | None) -> tuple[Index, dict[int, str]]:
    """The in-memory index of the vector table's rows, and each date's statistics version."""
    if table.num_rows == 0:
        return Index.empty(version), {}
    days = np.asarray(table.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False), np.int32)
    idx = Index.build(
        version,
        episode_id=np.asarray(table.column("episode_id").to_pylist(), dtype=np.str_),
        day=days,
        ts=_ns(table.column("ts")),
        level_kind=table.column("level_kind").to_pylist(),
        direction=table.column("direction").to_pylist(),
        time_bucket=np.asarray(table.column("time_bucket").to_numpy(zero_copy_only=False), np.int64),
        vectors=vectors.vectors_from_arrow(table.column("vector")),
        labels=np.stack([label_codes(table.column(f"label_{h}m")) for h in HORIZONS_MIN]),
        mfe=np.stack([_floats(table.column(f"mfe_{h}m")) for h in HORIZONS_MIN]),
        mae=np.stack([_floats(table.column(f"mae_{h}m")) for h in HORIZONS_MIN]),
    )
    pairs = (
        pa.table({"d": pa.array(days), "v": table.column("stats_version")}).group_by(["d", "v"]).aggregate([])
    )
    stats_by_day = dict(zip(pairs.column("d").to_pylist(), pairs.column("v").to_pylist(), strict=True))
    return idx, stats_by_day


# -- a date's silver -------------------------------------------------------------------------------


@dataclass
class DayData:
    date: dt.date
    run_id: str
    state: pa.Table
    levels: pa.Table
    bars_2m: pa.Table
    checked: float
    rows: dict[tuple[str, int], int] = field(default_factory=dict)
    """(level_kind, ts ns) → state row."""

    def __post_init__(self) -> None:
        kinds = self.state.column("level_kind").to_pylist()
        ts = _ns(self.state.column("ts")).tolist()
        self.rows = {(k, t): i for i, (k, t) in enumerate(zip(kinds, ts, strict=True))}


@dataclass(frozen=True)
class Point:
    """A (date, ts, level) state as a query: its partition and normalised vector."""

    date: dt.date
    ts: int
    level_kind: str
    direction: str
    time_bucket: int
    distance: float | None
    vector: npt.NDArray[np.float32]
    stats_version: str


@dataclass
class _Snapshot:
    index: Index
    stats_by_day: dict[int, str]


class Service:
    """Everything the routes need; thread-safe (uvicorn runs sync routes in a thread pool)."""

    def __init__(
        self,
        lake: Lake | None,
        *,
        table_check_seconds: float = 10.0,
        day_cache_size: int = 8,
        params: Params | None = None,
        weights: Mapping[str, float] | None = None,
        index: Index | None = None,
        stats_by_day: Mapping[int, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lake = lake
        self.check_s = float(table_check_seconds)
        self.params = params or calibration.SERVED_PARAMS
        self.default_weights: dict[str, float] = dict(SERVED.weights if weights is None else weights)
        self._clock = clock
        self._fixed = index is not None
        self._snap: _Snapshot | None = (
            _Snapshot(index, dict(stats_by_day or {})) if index is not None else None
        )
        self._checked = -math.inf
        self._table: Any = None
        self._snap_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._day_lock = threading.Lock()
        self._days: OrderedDict[dt.date, DayData] = OrderedDict()
        self._day_cache_size = max(1, day_cache_size)
        self._cache_lock = threading.Lock()
        self._stats: OrderedDict[Any, vectors.Stats] = OrderedDict()
        self._signals: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self._days_list: tuple[float, list[dict[str, Any]], int | None] | None = None
        self._report: tuple[bytes, dict[str, Any]] | None = None
        self._report_files: OrderedDict[str, bytes] = OrderedDict()

    # -- the vector table ------------------------------------------------------------------
    def _snapshot(self) -> _Snapshot:
        snap = self._snap
        if self._fixed and snap is not None:
            return snap
        if snap is not None and self._clock() - self._checked < self.check_s:
            return snap
        # One thread checks (and reloads); the others keep the current version meanwhile.
        if not self._reload_lock.acquire(blocking=snap is None):
            assert snap is not None
            return snap
        try:
            snap = self._snap
            if snap is not None and self._clock() - self._checked < self.check_s:
                return snap
            try:
                snap = self._refresh(snap)
            except Exception:
                if snap is None:
                    raise
                # Keep answering from the version in memory; re-open the table next time.
                log.warning(
                    "vector table check failed; serving version %s", snap.index.version, exc_info=True
                )
                self._table = None
            with self._snap_lock:
                self._snap = snap
                self._checked = self._clock()
            return snap
        finally:
            self._reload_lock.release()

    def _refresh(self, snap: _Snapshot | None) -> _Snapshot:
        if self.lake is None:
            return snap or _Snapshot(Index.empty(None), {})
        if self._table is None:
            self._table = open_table(self.lake)
            if self._table is None:
                return _Snapshot(Index.empty(None), {})
        else:
            self._table.checkout_latest()
        version = int(self._table.version)
        if snap is not None and snap.index.version == version:
            return snap
        t0 = time.perf_counter()
        data = self._table.search().select(_INDEX_COLUMNS).limit(None).to_arrow()
        index, stats_by_day = index_from_arrow(data, version)
        log.info(
            "loaded vector table version %s: %d episodes in %d partitions (%.0f ms)",
            version,
            index.episodes,
            len(index.partitions),
            (time.perf_counter() - t0) * 1e3,
        )
        return _Snapshot(index, stats_by_day)

    def index(self) -> Index:
        return self._snapshot().index

    # -- health, days, partitions ------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        idx = self.index()
        return {"status": "ok", "episodes": idx.episodes, "table_version": idx.version}

    def days(self) -> dict[str, Any]:
        snap = self._snapshot()
        cached = self._days_list
        if (
            cached is not None
            and cached[2] == snap.index.version
            and self._clock() - cached[0] < self.check_s
        ):
            return {"days": cached[1]}
        out: list[dict[str, Any]] = []
        if self.lake is not None:
            silver = committed_dates(self.lake, Layer.SILVER, paths.STATE_TABLE)
            marked = {
                paths.date_from_partition(p)
                for p in self.lake.list_files(paths.INDEX_MARKERS)
                if p.endswith(".json")
            }
            for d in silver:
                n = snap.index.day_counts.get(day_number(d), 0)
                out.append({"date": d.isoformat(), "episodes": int(n), "indexed": bool(n) or d in marked})
        self._days_list = (self._clock(), out, snap.index.version)
        return {"days": out}

    def partitions(self) -> dict[str, Any]:
        idx = self.index()
        h = PRIMARY_HORIZON_MIN
        out = []
        order = {(k, d, b): i for i, (k, d, b) in enumerate(all_partitions())}
        for part in sorted(
            idx.partitions.values(),
            key=lambda p: order.get((p.level_kind, p.direction, p.time_bucket), 1 << 30),
        ):
            counts = part.base_counts(h, part.n).astype(np.float64)
            total = counts.sum()
            rate = (
                counts / total
                if total
                else np.asarray(self.params.default_prior) / sum(self.params.default_prior)
            )
            out.append(
                {
                    "key": part.key,
                    "level_kind": part.level_kind,
                    "direction": part.direction,
                    "time_bucket": part.time_bucket,
                    "n": part.n,
                    "base_rate": _named(rate),
                }
            )
        return {"partitions": out}

    # -- a date's silver ----------------------------------------------------------------------
    def day(self, date: dt.date) -> DayData:
        """The date's committed silver (cached); :class:`NotFoundError` if there is none."""
        if self.lake is None:
            raise NotFoundError(f"no silver data for {date.isoformat()}")
        now = self._clock()
        with self._day_lock:
            hit = self._days.get(date)
            if hit is not None:
                self._days.move_to_end(date)
                if now - hit.checked < self.check_s:
                    return hit
        try:
            run_id = read_manifest(self.lake, Layer.SILVER, paths.STATE_TABLE, date).run_id
        except NotCommittedError:
            with self._day_lock:
                self._days.pop(date, None)
            raise NotFoundError(f"no silver data for {date.isoformat()}") from None
        if hit is not None and hit.run_id == run_id:
            hit.checked = now
            return hit
        data = DayData(
            date=date,
            run_id=run_id,
            state=read_committed(self.lake, Layer.SILVER, paths.STATE_TABLE, date),
            levels=read_committed(self.lake, Layer.SILVER, paths.LEVELS_TABLE, date),
            bars_2m=read_committed(self.lake, Layer.SILVER, paths.BARS_2M_TABLE, date),
            checked=now,
        )
        with self._day_lock:
            self._days[date] = data
            self._days.move_to_end(date)
            while len(self._days) > self._day_cache_size:
                self._days.popitem(last=False)
        return data

    def bars(self, date: dt.date) -> dict[str, Any]:
        b = self.day(date).bars_2m
        ts = _ns(b.column("ts"))
        lo, hi = sessions.et_ns(date, BARS_FROM), sessions.et_ns(date, sessions.QUERY_END)
        sel = np.flatnonzero((ts >= lo) & (ts <= hi))
        cols = {c: _floats(b.column(c))[sel].tolist() for c in ("open", "high", "low", "close")}
        vol = _floats(b.column("volume"))[sel].tolist()
        bars = [
            {
                "t": iso_z(int(ts[j])),
                **{c: finite_or_none(cols[c][i]) for c in ("open", "high", "low", "close")},
                "volume": int(vol[i]) if math.isfinite(vol[i]) else 0,
            }
            for i, j in enumerate(sel.tolist())
        ]
        return {"date": date.isoformat(), "bars": bars}

    def levels(self, date: dt.date) -> dict[str, Any]:
        lv = self.day(date).levels
        ts = _ns(lv.column("ts"))
        lo, hi = sessions.et_ns(date, sessions.RTH_OPEN), sessions.et_ns(date, sessions.QUERY_END)
        sel = np.flatnonzero((ts >= lo) & (ts <= hi))
        t = [iso_z(int(x)) for x in ts[sel].tolist()]
        out = []
        for kind in LEVEL_KINDS:
            vals = _floats(lv.column(kind))[sel].tolist() if kind in lv.column_names else [None] * sel.size
            out.append(
                {
                    "kind": kind,
                    "points": [{"t": ti, "value": finite_or_none(v)} for ti, v in zip(t, vals, strict=True)],
                }
            )
        return {"date": date.isoformat(), "levels": out}

    # -- statistics and query vectors ------------------------------------------------------------
    def stats(self, date: dt.date) -> vectors.Stats:
        """The normalisation statistics of ``date``: the version its indexed rows carry, else a
        fresh fit on earlier gold dates (not saved: the API never writes)."""
        snap = self._snapshot()
        version = snap.stats_by_day.get(day_number(date))
        key: Any = ("v", version) if version else ("d", date, snap.index.version)
        with self._cache_lock:
            hit = self._stats.get(key)
        if hit is not None:
            return hit
        if self.lake is None:
            raise NotFoundError(f"no statistics for {date.isoformat()}")
        stats = (
            vectors.load_stats(self.lake, version)
            if version
            else vectors.stats_for_date(self.lake, date, save=False)
        )
        with self._cache_lock:
            self._stats[key] = stats
            while len(self._stats) > 64:
                self._stats.popitem(last=False)
        return stats

    def points(self, date: dt.date, anchors: Sequence[tuple[int, str]]) -> list[Point]:
        """Query points at (ts, level_kind) instants of a date, built as the pipeline builds episodes.

        Every instant must have a state row (the level active there).
        """
        day = self.day(date)
        if not anchors:
            return []
        rows = [day.rows[(k, ts)] for ts, k in anchors]
        table = pa.table(
            {
                "date": pa.array([date] * len(anchors), pa.date32()),
                "ts": pa.array([ts for ts, _ in anchors], pa.timestamp("ns", tz="UTC")),
                "level_kind": pa.array([k for _, k in anchors], pa.string()),
            }
        )
        state = day.state.select(list(STATE_SCHEMA.names))
        raw = vectors.build_vectors(state, table)
        stats = self.stats(date)
        norm = vectors.apply(stats, raw)
        sub = day.state.take(pa.array(rows, pa.int64()))
        dirs = sub.column("direction").to_pylist()
        buckets = sub.column("time_bucket").to_pylist()
        dist = _floats(sub.column("distance")).tolist()
        version = stats.version  # a hash over the statistics: compute it once
        return [
            Point(date, ts, k, str(dr), int(b), finite_or_none(ds), norm[i], version)
            for i, ((ts, k), dr, b, ds) in enumerate(zip(anchors, dirs, buckets, dist, strict=True))
        ]

    def point(self, date: dt.date, at: dt.time, level_kind: str) -> Point:
        """The query point of a level at an ET wall-clock time (floored to the 30-s step)."""
        if level_kind not in LEVEL_KINDS:
            raise InvalidQueryError(f"unknown level kind {level_kind!r}; one of {', '.join(LEVEL_KINDS)}")
        ts = sessions.et_ns(date, at)
        start, end = sessions.et_ns(date, sessions.RTH_OPEN), sessions.et_ns(date, sessions.QUERY_END)
        if not start <= ts <= end:
            raise InvalidQueryError("time must be between 09:30 and 12:30 ET")
        ts = start + (ts - start) // STEP_NS * STEP_NS
        day = self.day(date)
        row = day.rows.get((level_kind, ts))
        when = f"{et_time(ts)} ET on {date.isoformat()}"
        if row is None:
            raise NotFoundError(f"{level_kind} is not active at {when}")
        in_zone = finite_or_none(day.state.column("in_zone")[row].as_py())
        if not in_zone or in_zone < 0.5:
            d = finite_or_none(day.state.column("distance")[row].as_py())
            how = f" (|distance| {abs(d):.2f} ATR)" if d is not None else ""
            raise NotFoundError(
                f"{level_kind} is not in its approach zone at {when}{how}: no episode partition applies"
            )
        return self.points(date, [(ts, level_kind)])[0]

    # -- the similarity query -------------------------------------------------------------------
    def similar(
        self,
        *,
        episode_id: str | None = None,
        date: dt.date | None = None,
        time: dt.time | None = None,
        level_kind: str | None = None,
        vector: Sequence[float] | None = None,
        partition: Mapping[str, Any] | None = None,
        as_of: dt.date | None = None,
        k: int = SERVED.k,
        max_per_day: int = SERVED.max_per_day,
        weights: Mapping[str, float] | None = None,
        horizon: int = PRIMARY_HORIZON_MIN,
        max_k: int = 500,
    ) -> dict[str, Any]:
        """The answer to ``POST /v1/similar`` (see the API contract)."""
        modes = [episode_id is not None, date is not None or time is not None or level_kind is not None]
        modes.append(vector is not None or partition is not None)
        if sum(modes) != 1:
            raise InvalidQueryError(
                "give exactly one of: episode_id; date + time + level_kind; vector + partition (+ as_of)"
            )
        if not 1 <= k <= max_k:
            raise InvalidQueryError(f"k must be between 1 and {max_k}")
        if not 1 <= max_per_day <= 50:
            raise InvalidQueryError("max_per_day must be between 1 and 50")
        if horizon not in HORIZONS_MIN:
            raise InvalidQueryError(f"horizon must be one of {', '.join(map(str, HORIZONS_MIN))}")
        g = self._weights(weights)
        idx = self.index()
        q_date: dt.date | None
        ep_id: str | None = None
        stats_version: str | None = None
        if episode_id is not None:
            hit = idx.locate(episode_id)
            if hit is None:
                raise NotFoundError(f"episode {episode_id!r} not found")
            part, row = hit
            q_date = from_day_number(int(part.day[row]))
            q_ts: int | None = int(part.ts[row])
            qvec = part.unit[row]
            ep_id = episode_id
            stats_version = self._snapshot().stats_by_day.get(int(part.day[row]))
        elif vector is not None or partition is not None:
            if vector is None or partition is None:
                raise InvalidQueryError("a vector query needs both vector and partition")
            if as_of is None:
                raise InvalidQueryError("a vector query needs as_of")
            qvec = np.asarray(vector, dtype=np.float32)
            if qvec.shape != (vectors.VECTOR_DIM,) or not np.isfinite(qvec).all():
                raise InvalidQueryError(f"vector must hold {vectors.VECTOR_DIM} finite numbers")
            kind, direction, bucket = _partition_ref(partition)
            part = idx.partitions.get(partition_key(kind, direction, bucket)) or _empty_partition(
                partition_key(kind, direction, bucket)
            )
            q_date, q_ts = None, None
        else:
            if date is None or time is None or level_kind is None:
                raise InvalidQueryError("a state query needs date, time and level_kind")
            _check_as_of(as_of, date)
            pt = self.point(date, time, level_kind)
            key = partition_key(pt.level_kind, pt.direction, pt.time_bucket)
            part = idx.partitions.get(key) or _empty_partition(key)
            q_date, q_ts, qvec, stats_version = pt.date, pt.ts, pt.vector, pt.stats_version
            eid = gold.episode_id(pt.date, pt.level_kind, pt.direction, pt.ts)
            ep_id = eid if idx.locate(eid) is not None else None
        if as_of is None:
            assert q_date is not None
            as_of = q_date
        elif q_date is not None:
            _check_as_of(as_of, q_date)
        ans = retrieval.query(
            part,
            qvec,
            as_of_day=day_number(as_of),
            k=k,
            max_per_day=max_per_day,
            horizon=horizon,
            dim_weights=g,
            params=self.params,
            pooled_counts=idx.pooled_counts(day_number(as_of), horizon),
        )
        return {
            "query": {
                "date": q_date.isoformat() if q_date else None,
                "time": et_time(q_ts) if q_ts is not None else None,
                "ts": iso_z(q_ts) if q_ts is not None else None,
                "level_kind": part.level_kind,
                "direction": part.direction,
                "time_bucket": part.time_bucket,
                "partition": part.key,
                "as_of": as_of.isoformat(),
                "stats_version": stats_version,
                "episode_id": ep_id,
                "table_version": idx.version,
            },
            "neighbours": [
                {
                    "episode_id": nb.episode_id,
                    "date": from_day_number(nb.day).isoformat(),
                    "time": et_time(nb.ts),
                    "similarity": nb.similarity,
                    "weight": nb.weight,
                    "outcome": nb.outcome,
                    "mfe": nb.mfe,
                    "mae": nb.mae,
                    "level_kind": part.level_kind,
                    "direction": part.direction,
                    "time_bucket": part.time_bucket,
                }
                for nb in ans.neighbours
            ],
            "distribution": _distribution_json(ans.distribution),
        }

    def _weights(self, weights: Mapping[str, float] | None) -> npt.NDArray[np.float32] | None:
        """Per-dimension weights: the service's default group weights, overridden group by group
        by the request's; ``None`` when every group weighs 1 (plain cosine)."""
        weights = weights or {}
        unknown = sorted(set(weights) - set(vectors.VECTOR_GROUPS))
        if unknown:
            raise InvalidQueryError(
                f"unknown feature groups {unknown}; known: {', '.join(vectors.VECTOR_GROUPS)}"
            )
        if any(not math.isfinite(float(v)) or float(v) < 0 for v in weights.values()):
            raise InvalidQueryError("weights must be finite and ≥ 0")
        merged = {**self.default_weights, **{k: float(v) for k, v in weights.items()}}
        g = vectors.group_weights(merged)
        if not np.any(g > 0):
            raise InvalidQueryError("weights give every feature group weight 0")
        return None if np.all(g == 1.0) else g

    # -- signals ----------------------------------------------------------------------------------
    def signals(
        self, date: dt.date, *, horizon: int = PRIMARY_HORIZON_MIN, k: int = SERVED.k, max_k: int = 500
    ) -> dict[str, Any]:
        """Per 2-minute bar close 09:30–12:30 and level in its zone: the answer as of that date."""
        if horizon not in HORIZONS_MIN:
            raise InvalidQueryError(f"horizon must be one of {', '.join(map(str, HORIZONS_MIN))}")
        if not 1 <= k <= max_k:
            raise InvalidQueryError(f"k must be between 1 and {max_k}")
        day = self.day(date)
        idx = self.index()
        key = (date, day.run_id, idx.version, horizon, k)
        with self._cache_lock:
            hit = self._signals.get(key)
        if hit is not None:
            return hit
        out = self._compute_signals(day, idx, horizon, k)
        with self._cache_lock:
            self._signals[key] = out
            while len(self._signals) > 32:
                self._signals.popitem(last=False)
        return out

    def _compute_signals(self, day: DayData, idx: Index, horizon: int, k: int) -> dict[str, Any]:
        date = day.date
        steps = sessions.bar_closes(date)
        state = day.state
        in_zone = np.nan_to_num(_floats(state.column("in_zone"))) >= 0.5
        kinds = state.column("level_kind").to_pylist()
        ts_all = _ns(state.column("ts"))
        closes = set(steps.tolist())
        anchors = sorted(
            (
                (int(t), kd)
                for t, kd, z in zip(ts_all.tolist(), kinds, in_zone.tolist(), strict=True)
                if z and t in closes
            ),
            key=lambda a: (a[0], LEVEL_KINDS.index(a[1])),
        )
        points = self.points(date, anchors)
        as_of = day_number(date)
        g = self._weights(None)
        pooled = idx.pooled_counts(as_of, horizon)
        signals: list[dict[str, Any]] = []
        last: dict[str, tuple[int, str, np.ndarray[Any, Any]]] = {}
        alpha = retrieval.DEFAULT_EMA_ALPHA
        for pt in points:
            key = partition_key(pt.level_kind, pt.direction, pt.time_bucket)
            part = idx.partitions.get(key) or _empty_partition(key)
            hits = retrieval.search(
                part,
                pt.vector,
                as_of_day=as_of,
                k=k,
                max_per_day=SERVED.max_per_day,
                horizon=horizon,
                dim_weights=g,
            )
            dist, _ = retrieval.distribution(
                part, hits, as_of_day=as_of, horizon=horizon, params=self.params, pooled_counts=pooled
            )
            p = np.asarray(dist.p)
            prev = last.get(pt.level_kind)
            # The EMA runs over consecutive bar closes of the same level while it stays in its zone
            # with the same direction; anything else restarts it.
            if prev is not None and prev[0] == pt.ts - BAR_CLOSE_NS and prev[1] == pt.direction:
                smooth = retrieval.ema_step(p, prev[2], alpha)
            else:
                smooth = p
            last[pt.level_kind] = (pt.ts, pt.direction, smooth)
            signals.append(
                {
                    "t": iso_z(pt.ts),
                    "level_kind": pt.level_kind,
                    "direction": pt.direction,
                    "distance": pt.distance,
                    "p": _named(dist.p),
                    "interval": {o: list(iv) for o, iv in zip(OUTCOMES, dist.interval, strict=True)},
                    "n": dist.n,
                    "n_eff": dist.n_eff,
                    "smoothed": _named(smooth),
                    "base_rate": _named(dist.base_rate),
                    "base_n": dist.base_n,
                }
            )
        return {"date": date.isoformat(), "horizon": horizon, "smoothing_alpha": alpha, "signals": signals}

    # -- the evaluation report ----------------------------------------------------------------------
    def _latest_report(self) -> tuple[bytes, dict[str, Any], dict[str, tuple[str, str]]]:
        """``latest.json`` (bytes and parsed) and the files it lists: name → (lake path, kind).

        A file counts only when its path is ``report_path(run_id, name)`` for a plain file name
        with a served suffix: whatever ``latest.json`` says, nothing outside the run's folder is read.
        """
        if self.lake is None or not self.lake.exists(paths.latest_path()):
            raise NotFoundError(NO_REPORT)
        raw = self.lake.read_bytes(paths.latest_path())
        try:
            latest = json.loads(raw)
        except ValueError:
            latest = None
        run = latest.get("run_id") if isinstance(latest, dict) else None
        if not isinstance(latest, dict) or not isinstance(run, str) or not _RUN_ID.match(run):
            raise NotFoundError("the latest evaluation report is malformed (latest.json)")
        listed: list[tuple[Any, str]] = [(latest.get("report"), "report"), (latest.get("metrics"), "metrics")]
        plots = latest.get("plots")
        if isinstance(plots, dict):
            listed += [(p, "plot") for p in plots.values()]
        files: dict[str, tuple[str, str]] = {}
        for path, kind in listed:
            if not isinstance(path, str):
                continue
            name = path.rsplit("/", 1)[-1]
            if (
                _REPORT_NAME.match(name)
                and _suffix(name) in REPORT_MEDIA_TYPES
                and path == paths.report_path(run, name)
            ):
                files[name] = (path, kind)
        return raw, latest, files

    def _report_bytes(self, path: str) -> bytes:
        with self._cache_lock:
            hit = self._report_files.get(path)
        if hit is not None:
            return hit
        assert self.lake is not None
        try:
            data = self.lake.read_bytes(path)
        except LakeError:
            raise NotFoundError("a file of the latest evaluation report is missing from the lake") from None
        with self._cache_lock:
            self._report_files[path] = data
            while len(self._report_files) > 16:
                self._report_files.popitem(last=False)
        return data

    def report(self) -> dict[str, Any]:
        """The latest evaluation report: its run, markdown, metrics and the files it lists."""
        raw, latest, files = self._latest_report()
        cached = self._report
        if cached is not None and cached[0] == raw:
            return cached[1]
        by_kind = {kind: name for name, (_, kind) in files.items() if kind != "plot"}
        if "report" not in by_kind:
            raise NotFoundError("the latest evaluation report lists no markdown report")
        markdown = self._report_bytes(files[by_kind["report"]][0]).decode("utf-8", errors="replace")
        metrics: Any = {}
        if "metrics" in by_kind:
            try:
                metrics = json.loads(self._report_bytes(files[by_kind["metrics"]][0]))
            except ValueError:
                metrics = {}
        listed = latest.get("plots")
        plots: dict[Any, Any] = listed if isinstance(listed, dict) else {}
        out = {
            "run_id": latest["run_id"],
            "created_at": _str_or_none(latest.get("created_at")),
            "start": _str_or_none(latest.get("start")),
            "end": _str_or_none(latest.get("end")),
            "markdown": markdown,
            "metrics": metrics if isinstance(metrics, dict) else {},
            "plots": {
                str(key): path.rsplit("/", 1)[-1]
                for key, path in plots.items()
                if isinstance(path, str) and path.rsplit("/", 1)[-1] in files
            },
            "files": [
                {"name": name, "kind": kind, "media_type": REPORT_MEDIA_TYPES[_suffix(name)]}
                for name, (_, kind) in files.items()
            ],
        }
        self._report = (raw, out)
        return out

    def report_file(self, name: str) -> tuple[bytes, str]:
        """A file of the latest evaluation report (only names ``latest.json`` lists): bytes, media type."""
        _, _, files = self._latest_report()
        hit = files.get(name)
        if hit is None:
            raise NotFoundError("not a file of the latest evaluation report")
        return self._report_bytes(hit[0]), REPORT_MEDIA_TYPES[_suffix(name)]


def _suffix(name: str) -> str:
    """``reliability.png`` → ``.png`` (``""`` without a suffix)."""
    return name[name.rfind(".") :].lower() if "." in name else ""


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _check_as_of(as_of: dt.date | None, q_date: dt.date) -> None:
    if as_of is not None and as_of > q_date:
        raise InvalidQueryError(
            f"as_of {as_of.isoformat()} is after the query date {q_date.isoformat()}: "
            "neighbours must come from earlier dates"
        )


def _named(values: Sequence[float] | npt.NDArray[np.float64]) -> dict[str, float]:
    return {o: float(v) for o, v in zip(OUTCOMES, list(values), strict=True)}


def _distribution_json(d: retrieval.Distribution) -> dict[str, Any]:
    return {
        "horizon": d.horizon,
        "p": _named(d.p),
        "interval": {o: list(iv) for o, iv in zip(OUTCOMES, d.interval, strict=True)},
        "counts": _named(d.counts),
        "n": d.n,
        "n_eff": d.n_eff,
        "base_rate": _named(d.base_rate),
        "base_n": d.base_n,
        "expected_mfe": d.expected_mfe,
        "expected_mae": d.expected_mae,
        "prior": _named(d.prior),
    }


def _partition_ref(p: Mapping[str, Any]) -> tuple[str, str, int]:
    kind, direction, bucket = p.get("level_kind"), p.get("direction"), p.get("time_bucket")
    if kind not in LEVEL_KINDS:
        raise InvalidQueryError(f"unknown level kind {kind!r}; one of {', '.join(LEVEL_KINDS)}")
    if direction not in DIRECTIONS:
        raise InvalidQueryError("direction must be UP or DOWN")
    if not isinstance(bucket, int) or not 0 <= bucket < len(TIME_BUCKETS):
        raise InvalidQueryError(f"time_bucket must be 0..{len(TIME_BUCKETS) - 1}")
    return str(kind), str(direction), int(bucket)

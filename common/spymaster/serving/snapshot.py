"""The vector table in memory: read whole into :class:`~spymaster.retrieval.Index` partitions once per
LanceDB table version; the version is checked at most every ``table_check_seconds`` and a changed
version is reloaded by one thread while the others keep answering from the previous one.

The rows come from the indexer's snapshot (``layers.index.read_snapshot``: one GET, no LanceDB
import, which alone costs over a second of a cold start), checked by its size and mtime (one
HEAD); from the table itself only on a lake without a snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from spymaster import vectors
from spymaster.errors import LakeError
from spymaster.lake import Lake, paths
from spymaster.layers.index import INDEX_COLUMNS, open_table, read_snapshot
from spymaster.outcomes import HORIZONS_MIN, label_codes
from spymaster.retrieval import Index
from spymaster.settings import AnnSearch

log = logging.getLogger(__name__)


def _floats(col: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.float64]:
    return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _ns(col: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.int64]:
    return np.asarray(col.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def index_from_arrow(
    table: pa.Table, version: int | None, ann_min_rows: int | None = None
) -> tuple[Index, dict[int, str]]:
    """The in-memory index of the vector table's rows, and each date's statistics version; the
    vectors of partitions of more than ``ann_min_rows`` rows are dropped (served by ANN)."""
    if table.num_rows == 0:
        return Index.empty(version), {}
    # Whole arrays, not chunked ones: ChunkedArray.to_numpy goes through pandas (an import of
    # about a second on a cold start)
    arrays = {name: table.column(name).combine_chunks() for name in table.column_names}
    col = arrays.__getitem__
    days = np.asarray(col("date").cast(pa.int32()).to_numpy(zero_copy_only=False), np.int32)
    idx = Index.build(
        version,
        episode_id=np.asarray(col("episode_id").to_pylist(), dtype=np.str_),
        day=days,
        ts=_ns(col("ts")),
        level_kind=col("level_kind").to_pylist(),
        direction=col("direction").to_pylist(),
        time_bucket=np.asarray(col("time_bucket").to_numpy(zero_copy_only=False), np.int64),
        vectors=vectors.vectors_from_arrow(col("vector")),
        labels=np.stack([label_codes(col(f"label_{h}m")) for h in HORIZONS_MIN]),
        mfe=np.stack([_floats(col(f"mfe_{h}m")) for h in HORIZONS_MIN]),
        mae=np.stack([_floats(col(f"mae_{h}m")) for h in HORIZONS_MIN]),
        ann_min_rows=ann_min_rows,
    )
    pairs = (
        pa.table({"d": pa.array(days), "v": table.column("stats_version")}).group_by(["d", "v"]).aggregate([])
    )
    stats_by_day = dict(zip(pairs.column("d").to_pylist(), pairs.column("v").to_pylist(), strict=True))
    return idx, stats_by_day


@dataclass
class _Snapshot:
    index: Index
    stats_by_day: dict[int, str]
    history: pa.Table | None = None
    """The labelled rows with raw vectors (from the indexer's snapshot; None: read the table)."""
    fingerprint: dict[str, int] | None = None
    """Size and mtime of the snapshot object it was read from."""


class TableSnapshots:
    """The vector table's in-memory snapshot, reloaded when the table's version changes."""

    lake: Lake | None
    ann: AnnSearch
    check_s: float
    _clock: Callable[[], float]
    _fixed: bool
    _snap: _Snapshot | None
    _checked: float
    _table: Any
    _snap_lock: threading.Lock
    _reload_lock: threading.Lock

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
            fresh = self._from_snapshot(snap)
            if fresh is not None:
                return fresh
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
        data = self._table.search().select(INDEX_COLUMNS).limit(None).to_arrow()
        index, stats_by_day = index_from_arrow(data, version, self.ann.min_rows)
        log.info(
            "loaded vector table version %s: %d episodes in %d partitions (%.0f ms)",
            version,
            index.episodes,
            len(index.partitions),
            (time.perf_counter() - t0) * 1e3,
        )
        return _Snapshot(index, stats_by_day)

    def _from_snapshot(self, snap: _Snapshot | None) -> _Snapshot | None:
        """The rows of the indexer's snapshot object, when the lake has one."""
        assert self.lake is not None
        try:
            fp = self.lake.fingerprint(paths.VECTOR_SNAPSHOT)
        except LakeError:
            return None
        if snap is not None and snap.fingerprint == fp:
            return snap
        t0 = time.perf_counter()
        got = read_snapshot(self.lake, seen=True)
        if got is None:
            return None
        data, version = got
        if snap is not None and snap.index.version == version and snap.history is not None:
            return _Snapshot(snap.index, snap.stats_by_day, snap.history, fp)
        index, stats_by_day = index_from_arrow(data, version, self.ann.min_rows)
        history = data.filter(pc.is_valid(data.column("label")))
        log.info(
            "loaded vector table version %s from its snapshot: %d episodes in %d partitions (%.0f ms)",
            version,
            index.episodes,
            len(index.partitions),
            (time.perf_counter() - t0) * 1e3,
        )
        return _Snapshot(index, stats_by_day, history, fp)

    def index(self) -> Index:
        return self._snapshot().index

    # -- health, days, partitions ------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        idx = self.index()
        return {"status": "ok", "episodes": idx.episodes, "table_version": idx.version}

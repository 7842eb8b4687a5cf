"""The in-memory index: one matrix per partition, built once per vector-table version; no I/O.

* **Partitions in memory.** Each (level_kind, direction, time_bucket) partition is one float32
  matrix ``[n, D]`` of *unit-normalised* rows sorted by (date, ts, episode_id), plus its metadata
  arrays (dates, stamps, ids, labels and excursions per horizon, cumulative label counts). The
  service builds them once per table version; a query never touches storage.
* **Large partitions leave memory.** With ``ann_min_rows`` a partition of more rows keeps only its
  metadata (``Partition.in_memory`` False): its vectors stay in the LanceDB table and it is
  searched through the table's ANN index (``settings.ANN``, ``serving.ann``).
* **As-of cut.** Rows are sorted by date, so "strictly before ``as_of``" is the prefix
  ``[0, searchsorted(day, as_of, "left"))``: a row of the query date or later is outside the
  slice the similarity is even computed on, so it cannot be returned.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from spymaster.outcomes import HORIZONS_MIN, OUTCOMES, PRIMARY_HORIZON_MIN, horizon_index
from spymaster.partitions import partition_key

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


# -- partitions ------------------------------------------------------------------------------------


@dataclass(eq=False)
class Partition:
    """One partition's rows in memory, sorted by (day, ts, episode_id); see the module doc."""

    key: str
    level_kind: str
    direction: str
    time_bucket: int
    unit: F32
    """[n, D] unit-normalised vectors (an all-zero vector stays zero)."""
    day: npt.NDArray[np.int32]
    """Days since 1970-01-01, ascending."""
    ts: I64
    episode_id: npt.NDArray[np.str_]
    labels: npt.NDArray[np.int8]
    """[len(HORIZONS_MIN), n] outcome codes, −1 where null."""
    mfe: F64
    mae: F64
    in_memory: bool = True
    """False: the vectors are not held (``unit`` has no rows); the partition is searched through
    the table's ANN index (``serving.ann``), and only its metadata is here for the answer."""
    cum: npt.NDArray[np.int32] = field(init=False)
    """[len(HORIZONS_MIN), n + 1, 3] label counts of rows [0, i)."""
    _norms: dict[bytes, F32] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        n = self.day.shape[0]
        if (self.unit.shape[0] != (n if self.in_memory else 0)) or self.labels.shape != (
            len(HORIZONS_MIN),
            n,
        ):
            raise ValueError("partition arrays disagree in length")
        if n and np.any(np.diff(self.day) < 0):
            raise ValueError("partition rows must be sorted by day")
        onehot = np.zeros((len(HORIZONS_MIN), n + 1, len(OUTCOMES)), dtype=np.int32)
        for h in range(len(HORIZONS_MIN)):
            for c in range(len(OUTCOMES)):
                onehot[h, 1:, c] = np.cumsum(self.labels[h] == c)
        self.cum = onehot

    @staticmethod
    def build(
        key: str,
        level_kind: str,
        direction: str,
        time_bucket: int,
        *,
        vectors: npt.ArrayLike,
        day: npt.ArrayLike,
        ts: npt.ArrayLike,
        episode_id: Sequence[str] | npt.NDArray[np.str_],
        labels: npt.ArrayLike,
        mfe: npt.ArrayLike,
        mae: npt.ArrayLike,
    ) -> Partition:
        """Sort rows by (day, ts, episode_id) and unit-normalise the vectors."""
        d = np.asarray(day, dtype=np.int32)
        t = np.asarray(ts, dtype=np.int64)
        ids = np.asarray(episode_id, dtype=np.str_)
        order = np.lexsort((ids, t, d))
        return Partition(
            key=key,
            level_kind=level_kind,
            direction=direction,
            time_bucket=int(time_bucket),
            unit=unit_rows(np.asarray(vectors, dtype=np.float32)[order]),
            day=d[order],
            ts=t[order],
            episode_id=ids[order],
            labels=np.asarray(labels, dtype=np.int8).reshape(len(HORIZONS_MIN), -1)[:, order],
            mfe=np.asarray(mfe, dtype=np.float64).reshape(len(HORIZONS_MIN), -1)[:, order],
            mae=np.asarray(mae, dtype=np.float64).reshape(len(HORIZONS_MIN), -1)[:, order],
        )

    @property
    def n(self) -> int:
        return int(self.day.shape[0])

    def rows_before(self, as_of_day: int) -> int:
        """Number of rows dated strictly before ``as_of_day`` (they are the prefix)."""
        return int(np.searchsorted(self.day, as_of_day, side="left"))

    def base_counts(self, horizon: int, cut: int) -> I64:
        """Label counts (BREAK, REJECT, CHOP) of rows [0, cut) at a horizon."""
        out: I64 = self.cum[horizon_index(horizon), cut].astype(np.int64)
        return out

    def weighted_norms(self, g: F32) -> F32:
        """sqrt(Σ g_d y_d²) of every row, cached per weight vector."""
        key = g.tobytes()
        with self._lock:
            hit = self._norms.get(key)
        if hit is not None:
            return hit
        out: F32 = np.sqrt(np.einsum("ij,ij,j->i", self.unit, self.unit, g)).astype(np.float32)
        with self._lock:
            if len(self._norms) >= 8:
                self._norms.pop(next(iter(self._norms)))
            self._norms[key] = out
        return out


def unit_rows(m: F32) -> F32:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32 C-contiguous."""
    m = np.ascontiguousarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    out: F32 = np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
    return out


# -- the whole table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    """Every partition of one table version, plus an episode-id lookup."""

    version: int | None
    partitions: Mapping[str, Partition]
    ids: npt.NDArray[np.str_]
    """Every episode id, sorted."""
    id_part: npt.NDArray[np.int32]
    id_row: npt.NDArray[np.int64]
    keys: tuple[str, ...]
    day_counts: Mapping[int, int]
    pool_days: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    """Every day with rows, ascending."""
    pool_cum: I64 = field(default_factory=lambda: np.zeros((len(HORIZONS_MIN), 1, len(OUTCOMES)), np.int64))
    """[len(HORIZONS_MIN), len(pool_days) + 1, 3]: label counts of all partitions' rows on days before
    ``pool_days[i]`` (row i; the last row counts every day)."""

    @property
    def episodes(self) -> int:
        return int(self.ids.shape[0])

    def pooled_counts(self, as_of_day: int, horizon: int = PRIMARY_HORIZON_MIN) -> I64:
        """Label counts (BREAK, REJECT, CHOP) of every partition's rows dated strictly before
        ``as_of_day`` whose label at ``horizon`` is not null: the pooled prior's evidence."""
        i = int(np.searchsorted(self.pool_days, as_of_day, side="left"))
        out: I64 = self.pool_cum[horizon_index(horizon), i].copy()
        return out

    def locate(self, episode_id: str) -> tuple[Partition, int] | None:
        i = int(np.searchsorted(self.ids, episode_id))
        if i < self.ids.shape[0] and self.ids[i] == episode_id:
            return self.partitions[self.keys[int(self.id_part[i])]], int(self.id_row[i])
        return None

    @staticmethod
    def empty(version: int | None = None) -> Index:
        return Index(
            version=version,
            partitions={},
            ids=np.zeros(0, dtype=np.str_),
            id_part=np.zeros(0, np.int32),
            id_row=np.zeros(0, np.int64),
            keys=(),
            day_counts={},
        )

    @staticmethod
    def build(
        version: int | None,
        *,
        episode_id: Sequence[str] | npt.NDArray[np.str_],
        day: npt.ArrayLike,
        ts: npt.ArrayLike,
        level_kind: Sequence[str],
        direction: Sequence[str],
        time_bucket: npt.ArrayLike,
        vectors: npt.ArrayLike,
        labels: npt.ArrayLike,
        mfe: npt.ArrayLike,
        mae: npt.ArrayLike,
        ann_min_rows: int | None = None,
    ) -> Index:
        """Group rows into partitions (labels / mfe / mae are [len(HORIZONS_MIN), n]); a partition
        of more than ``ann_min_rows`` rows does not keep its vectors (see the module doc)."""
        ids = np.asarray(episode_id, dtype=np.str_)
        n = ids.shape[0]
        if n == 0:
            return Index.empty(version)
        d = np.asarray(day, dtype=np.int32)
        t = np.asarray(ts, dtype=np.int64)
        tb = np.asarray(time_bucket, dtype=np.int64)
        vec = np.asarray(vectors, dtype=np.float32)
        lab = np.asarray(labels, dtype=np.int8).reshape(len(HORIZONS_MIN), n)
        fe = np.asarray(mfe, dtype=np.float64).reshape(len(HORIZONS_MIN), n)
        ae = np.asarray(mae, dtype=np.float64).reshape(len(HORIZONS_MIN), n)
        pkeys = np.array(
            [partition_key(k, r, b) for k, r, b in zip(level_kind, direction, tb.tolist(), strict=True)],
            dtype=np.str_,
        )
        keys, code = np.unique(pkeys, return_inverse=True)
        parts: dict[str, Partition] = {}
        id_part = np.zeros(n, np.int32)
        id_row = np.zeros(n, np.int64)
        for ci, key in enumerate(keys.tolist()):
            rows = np.flatnonzero(code == ci)
            rows = rows[np.lexsort((ids[rows], t[rows], d[rows]))]
            kind, direc, bucket = key.split("|")
            held = ann_min_rows is None or rows.size <= ann_min_rows
            parts[key] = Partition(
                key=key,
                level_kind=kind,
                direction=direc,
                time_bucket=int(bucket),
                unit=unit_rows(vec[rows]) if held else np.zeros((0, vec.shape[1]), np.float32),
                day=d[rows],
                ts=t[rows],
                episode_id=ids[rows],
                labels=lab[:, rows],
                mfe=fe[:, rows],
                mae=ae[:, rows],
                in_memory=held,
            )
            id_part[rows] = ci
            id_row[rows] = np.arange(rows.size)
        order = np.argsort(ids, kind="stable")
        days, day_code, counts = np.unique(d, return_inverse=True, return_counts=True)
        n_out = len(OUTCOMES)
        pool_cum = np.zeros((len(HORIZONS_MIN), days.size + 1, n_out), np.int64)
        for h in range(len(HORIZONS_MIN)):
            ok = (lab[h] >= 0) & (lab[h] < n_out)
            per_day = np.bincount(
                day_code[ok] * n_out + lab[h, ok].astype(np.int64), minlength=days.size * n_out
            ).reshape(days.size, n_out)
            pool_cum[h, 1:] = np.cumsum(per_day, axis=0)
        return Index(
            version=version,
            partitions=parts,
            ids=ids[order],
            id_part=id_part[order],
            id_row=id_row[order],
            keys=tuple(keys.tolist()),
            day_counts=dict(zip(days.tolist(), counts.tolist(), strict=True)),
            pool_days=days.astype(np.int32),
            pool_cum=pool_cum,
        )

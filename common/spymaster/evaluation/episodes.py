"""Gold episodes as the evaluation holds them: arrays per episode (day, stamp, partition, raw vector, labels)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster import sessions, vectors
from spymaster.evaluation.metrics import F32, F64, I64
from spymaster.lake import Lake, read_manifest
from spymaster.lake.paths import EPISODES_TABLE, Layer
from spymaster.layers.gold import EPISODE_SCHEMA
from spymaster.outcomes import BREAK, HORIZONS_MIN, PRIMARY_HORIZON_MIN, label_codes
from spymaster.partitions import partition_key
from spymaster.sessions import NS, from_day_number

H_PRIMARY = HORIZONS_MIN.index(PRIMARY_HORIZON_MIN)


# -- episodes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Episodes:
    """Gold episodes as arrays: keys, raw vectors and labels of every horizon."""

    episode_id: npt.NDArray[np.str_]
    day: npt.NDArray[np.int32]
    ts: I64
    level_kind: npt.NDArray[np.str_]
    direction: npt.NDArray[np.str_]
    time_bucket: npt.NDArray[np.int64]
    raw: F32
    """[n, VECTOR_DIM] raw (unscaled) vectors, NaN kept."""
    labels: npt.NDArray[np.int8]
    """[len(HORIZONS_MIN), n] codes (BREAK 0, REJECT 1, CHOP 2, null −1)."""
    minutes: F64 = field(init=False)
    """Minutes since 09:30 ET of the anchor."""
    key: npt.NDArray[np.str_] = field(init=False)
    """Partition key ``level_kind|direction|time_bucket``."""

    def __post_init__(self) -> None:
        n = self.day.shape[0]
        if self.raw.shape != (n, vectors.VECTOR_DIM) or self.labels.shape != (len(HORIZONS_MIN), n):
            raise ValueError("episode arrays disagree in shape")
        opens = {
            int(d): sessions.et_ns(from_day_number(int(d)), sessions.RTH_OPEN) for d in np.unique(self.day)
        }
        origin = np.array([opens[int(d)] for d in self.day.tolist()], dtype=np.int64)
        object.__setattr__(self, "minutes", (self.ts - origin) / (60 * NS))
        keys = [
            partition_key(k, r, b)
            for k, r, b in zip(self.level_kind, self.direction, self.time_bucket, strict=True)
        ]
        object.__setattr__(self, "key", np.asarray(keys, dtype=np.str_))

    @property
    def n(self) -> int:
        return int(self.day.shape[0])

    @property
    def primary(self) -> npt.NDArray[np.int8]:
        out: npt.NDArray[np.int8] = self.labels[H_PRIMARY]
        return out

    @property
    def is_break(self) -> F64:
        out: F64 = (self.primary == BREAK).astype(np.float64)
        return out

    def take(self, idx: npt.ArrayLike) -> Episodes:
        i = np.asarray(idx, dtype=np.int64)
        return Episodes(
            episode_id=self.episode_id[i],
            day=self.day[i],
            ts=self.ts[i],
            level_kind=self.level_kind[i],
            direction=self.direction[i],
            time_bucket=self.time_bucket[i],
            raw=self.raw[i],
            labels=self.labels[:, i],
        )

    @staticmethod
    def build(
        *,
        episode_id: Sequence[str],
        day: npt.ArrayLike,
        ts: npt.ArrayLike,
        level_kind: Sequence[str],
        direction: Sequence[str],
        time_bucket: npt.ArrayLike,
        raw: npt.ArrayLike,
        labels: npt.ArrayLike,
    ) -> Episodes:
        n = len(episode_id)
        return Episodes(
            episode_id=np.asarray(episode_id, dtype=np.str_).reshape(n),
            day=np.asarray(day, dtype=np.int32).reshape(n),
            ts=np.asarray(ts, dtype=np.int64).reshape(n),
            level_kind=np.asarray(level_kind, dtype=np.str_).reshape(n),
            direction=np.asarray(direction, dtype=np.str_).reshape(n),
            time_bucket=np.asarray(time_bucket, dtype=np.int64).reshape(n),
            raw=np.asarray(raw, dtype=np.float32).reshape(n, vectors.VECTOR_DIM),
            labels=np.asarray(labels, dtype=np.int8).reshape(len(HORIZONS_MIN), n),
        )

    @staticmethod
    def from_arrow(table: pa.Table) -> Episodes:
        """From gold episode rows (episode_id, date, ts, level_kind, direction, time_bucket, vector,
        label_{h}m)."""
        labels = np.stack([label_codes(table.column(f"label_{h}m")) for h in HORIZONS_MIN]).reshape(
            len(HORIZONS_MIN), table.num_rows
        )
        return Episodes.build(
            episode_id=table.column("episode_id").to_pylist(),
            day=np.asarray(table.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False)),
            ts=np.asarray(table.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False)),
            level_kind=table.column("level_kind").to_pylist(),
            direction=table.column("direction").to_pylist(),
            time_bucket=np.asarray(table.column("time_bucket").to_numpy(zero_copy_only=False)),
            raw=vectors.vectors_from_arrow(table.column("vector")),
            labels=labels,
        )


EPISODE_COLUMNS = [
    "episode_id",
    "date",
    "ts",
    "level_kind",
    "direction",
    "time_bucket",
    "vector",
    *(f"label_{h}m" for h in HORIZONS_MIN),
]


def load_episodes(lake: Lake, dates: Sequence[dt.date]) -> Episodes:
    """Committed gold episodes of ``dates`` (only the columns the evaluation needs)."""
    tables = []
    for d in dates:
        files = read_manifest(lake, Layer.GOLD, EPISODES_TABLE, d).files
        schema = pa.schema([EPISODE_SCHEMA.field(c) for c in EPISODE_COLUMNS])
        tables.append(lake.read_parquet(files, schema=schema, columns=EPISODE_COLUMNS))
    if not tables:
        return Episodes.from_arrow(
            pa.schema([EPISODE_SCHEMA.field(c) for c in EPISODE_COLUMNS]).empty_table()
        )
    return Episodes.from_arrow(pa.concat_tables(tables))

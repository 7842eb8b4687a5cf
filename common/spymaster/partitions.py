"""The partition of episodes: level kind × direction × time bucket (6 × 2 × 5 = 60 partitions).

Neighbours are only ever searched within a partition; the vector table stores the key as a column.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from spymaster.levels import DIRECTIONS, LEVEL_KINDS

TIME_BUCKETS: tuple[tuple[int, int], ...] = ((0, 15), (15, 30), (30, 60), (60, 120), (120, 180))
"""Minutes since 09:30 ET; bucket i holds [lo, hi), the last one also holds 180 (12:30)."""


def time_bucket(minutes: npt.ArrayLike) -> npt.NDArray[np.int8]:
    """Index of the time bucket holding each minutes-since-open value (180 goes to the last)."""
    m = np.asarray(minutes, dtype=np.float64)
    edges = np.array([lo for lo, _ in TIME_BUCKETS[1:]], dtype=np.float64)
    return np.searchsorted(edges, m, side="right").astype(np.int8)


def partition_key(level_kind: str, direction: str, time_bucket: int) -> str:
    """``PM_HIGH|UP|0``: the vector table's ``partition`` column and the in-memory index's key."""
    return f"{level_kind}|{direction}|{int(time_bucket)}"


def all_partitions() -> list[tuple[str, str, int]]:
    """Every (level kind, direction, time bucket), in a fixed order."""
    return [(k, d, b) for k in LEVEL_KINDS for d in DIRECTIONS for b in range(len(TIME_BUCKETS))]

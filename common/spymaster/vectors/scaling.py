"""Scaling statistics of raw vectors: fitted on earlier dates only, content-addressed, stored in the lake.

Normalisation is robust scaling — ``(x − median) / IQR``, clipped to ±``clip``, NaN → 0 — with
statistics fitted on the raw vectors of the **earlier** dates only (the last ``window_days`` dates
with gold before the query date). Statistics are content-addressed: their version is a hash of
the layout, window and values, stored at :func:`spymaster.lake.paths.stats_file` so the query path
applies the same one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from spymaster.lake import Lake, committed_dates, paths, read_manifest
from spymaster.lake.paths import EPISODES_TABLE, Layer
from spymaster.vectors.layout import LAYOUT_VERSION, VECTOR_DIM, VECTOR_NAMES, F32Array, vectors_from_arrow

DEFAULT_WINDOW_DAYS = 20
DEFAULT_CLIP = 5.0
DEFAULT_MIN_ROWS = 20
STATS_METHOD = "robust-median-iqr/v1"


# -- normalisation statistics ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Robust-scaling statistics of one trailing window of earlier dates (content-addressed)."""

    center: tuple[float, ...]
    scale: tuple[float, ...]
    clip: float | None
    window: tuple[str, ...]
    """ISO dates whose episodes were fitted (empty for the fallback)."""
    window_days: int
    n_rows: int
    fallback: bool
    method: str = STATS_METHOD
    layout_version: str = LAYOUT_VERSION

    @property
    def version(self) -> str:
        """16 hex chars of blake2b over the canonical JSON of everything that defines the scaling."""
        body = json.dumps(self._content(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.blake2b(body.encode(), digest_size=8).hexdigest()

    def _content(self) -> dict[str, Any]:
        d = asdict(self)
        d["center"] = list(self.center)
        d["scale"] = list(self.scale)
        d["window"] = list(self.window)
        return d

    def to_json(self) -> dict[str, Any]:
        return {**self._content(), "version": self.version, "dims": list(VECTOR_NAMES)}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> Stats:
        s = Stats(
            center=tuple(float(v) for v in obj["center"]),
            scale=tuple(float(v) for v in obj["scale"]),
            clip=None if obj["clip"] is None else float(obj["clip"]),
            window=tuple(str(v) for v in obj["window"]),
            window_days=int(obj["window_days"]),
            n_rows=int(obj["n_rows"]),
            fallback=bool(obj["fallback"]),
            method=str(obj["method"]),
            layout_version=str(obj["layout_version"]),
        )
        if "version" in obj and obj["version"] != s.version:
            raise ValueError(f"stats content does not match its version {obj['version']}")
        return s


def fallback_stats(
    window_days: int = DEFAULT_WINDOW_DAYS, window: Sequence[dt.date] = (), n_rows: int = 0
) -> Stats:
    """Identity scaling (centre 0, scale 1, no clipping; NaN → 0) for dates without enough history."""
    return Stats(
        center=(0.0,) * VECTOR_DIM,
        scale=(1.0,) * VECTOR_DIM,
        clip=None,
        window=tuple(d.isoformat() for d in window),
        window_days=window_days,
        n_rows=n_rows,
        fallback=True,
    )


def fit_stats(
    raw: npt.ArrayLike,
    *,
    window: Sequence[dt.date] = (),
    window_days: int = DEFAULT_WINDOW_DAYS,
    clip: float = DEFAULT_CLIP,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> Stats:
    """Median / IQR per dimension of raw vectors of earlier dates (``window`` names those dates).

    A dimension whose IQR is 0 (binary or near-constant) falls back to its standard deviation, then
    to 1; an all-NaN dimension gets centre 0, scale 1. Fewer than ``min_rows`` rows give
    :func:`fallback_stats`.
    """
    m = np.asarray(raw, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != VECTOR_DIM:
        raise ValueError(f"expected [n, {VECTOR_DIM}] raw vectors, got {m.shape}")
    if m.shape[0] < min_rows:
        return fallback_stats(window_days, window, int(m.shape[0]))
    center = np.zeros(VECTOR_DIM)
    scale = np.ones(VECTOR_DIM)
    for j in range(VECTOR_DIM):
        v = m[:, j]
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        q25, q50, q75 = np.percentile(v, [25.0, 50.0, 75.0])
        center[j] = q50
        iqr = q75 - q25
        if iqr > 1e-9:
            scale[j] = iqr
        elif v.size > 1 and float(v.std()) > 1e-9:
            scale[j] = float(v.std())
    return Stats(
        center=tuple(float(c) for c in center),
        scale=tuple(float(s) for s in scale),
        clip=float(clip),
        window=tuple(d.isoformat() for d in window),
        window_days=window_days,
        n_rows=int(m.shape[0]),
        fallback=False,
    )


def stats_window(
    dates: Sequence[dt.date], query_date: dt.date, window_days: int = DEFAULT_WINDOW_DAYS
) -> list[dt.date]:
    """The last ``window_days`` of ``dates`` strictly before ``query_date`` (ascending)."""
    return sorted(d for d in set(dates) if d < query_date)[-window_days:] if window_days > 0 else []


def fit_stats_before(
    vectors_by_date: Mapping[dt.date, npt.ArrayLike],
    query_date: dt.date,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    clip: float = DEFAULT_CLIP,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> Stats:
    """Statistics for ``query_date`` from the raw vectors of the ``window_days`` dates before it."""
    window = stats_window(list(vectors_by_date), query_date, window_days)
    parts = [np.asarray(vectors_by_date[d], dtype=np.float64).reshape(-1, VECTOR_DIM) for d in window]
    raw = np.concatenate(parts) if parts else np.zeros((0, VECTOR_DIM))
    return fit_stats(raw, window=window, window_days=window_days, clip=clip, min_rows=min_rows)


def apply(stats: Stats, raw: npt.ArrayLike) -> F32Array:
    """Scaled vectors: ``clip((raw − centre) / scale)``, NaN → 0, as float32 [n, VECTOR_DIM]."""
    if stats.layout_version != LAYOUT_VERSION:
        raise ValueError(f"stats are for layout {stats.layout_version}, vectors are {LAYOUT_VERSION}")
    m = np.asarray(raw, dtype=np.float64)
    one = m.ndim == 1
    m = m.reshape(-1, VECTOR_DIM)
    z = (m - np.asarray(stats.center)) / np.asarray(stats.scale)
    if stats.clip is not None:
        z = np.clip(z, -stats.clip, stats.clip)
    z = np.where(np.isfinite(z), z, 0.0)
    out = z.astype(np.float32)
    return out[0] if one else out


def save_stats(lake: Lake, stats: Stats) -> str:
    """Write a statistics version to the lake (content-addressed: an existing version is kept)."""
    path = paths.stats_file(stats.version)
    if not lake.exists(path):
        lake.write_json(path, stats.to_json())
    return path


def load_stats(lake: Lake, version: str) -> Stats:
    s = Stats.from_json(lake.read_json(paths.stats_file(version)))
    if s.version != version:
        raise ValueError(f"stats file {paths.stats_file(version)} holds version {s.version}")
    return s


def stats_for_date(
    lake: Lake,
    query_date: dt.date,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    clip: float = DEFAULT_CLIP,
    min_rows: int = DEFAULT_MIN_ROWS,
    save: bool = True,
    cache: dict[tuple[dt.date, tuple[str, ...]], F32Array] | None = None,
) -> Stats:
    """Fit (and by default store) the statistics for ``query_date`` from committed gold of earlier dates.

    ``cache`` (keyed by date and the committed files, so a re-run's new files miss) lets a caller
    indexing many dates read each date's raw vectors once instead of once per later date.
    """
    window = stats_window(committed_dates(lake, Layer.GOLD, EPISODES_TABLE), query_date, window_days)
    by_date: dict[dt.date, F32Array] = {}
    for d in window:
        files = read_manifest(lake, Layer.GOLD, EPISODES_TABLE, d).files
        key = (d, tuple(files))
        if cache is not None and key in cache:
            by_date[d] = cache[key]
            continue
        by_date[d] = vectors_from_arrow(lake.read_parquet(files, columns=["vector"]).column("vector"))
        if cache is not None:
            cache[key] = by_date[d]
    stats = fit_stats_before(by_date, query_date, window_days=window_days, clip=clip, min_rows=min_rows)
    if save:
        save_stats(lake, stats)
    return stats

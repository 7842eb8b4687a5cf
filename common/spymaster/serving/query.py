"""Query vectors at an instant, the similarity answer and the per-bar signals.

A query vector is built exactly as the pipeline builds an episode's: the date's silver state →
``vectors.build_vectors`` for that (ts, level_kind) → ``vectors.apply`` with the statistics version of
that date (the version stored on the date's indexed rows, else ``stats_for_date(..., save=False)``,
fitted on earlier dates only). Every neighbour comes from a date strictly before ``as_of``.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster import retrieval, sessions, vectors
from spymaster.errors import InvalidQueryError, NotFoundError
from spymaster.features import STATE_SCHEMA
from spymaster.layers import gold
from spymaster.levels import DIRECTIONS, LEVEL_KINDS
from spymaster.outcomes import HORIZONS_MIN, OUTCOMES, PRIMARY_HORIZON_MIN
from spymaster.partitions import TIME_BUCKETS, all_partitions, partition_key
from spymaster.retrieval import Index, Params, Partition, finite_or_none
from spymaster.serving.ann import AnnSearcher
from spymaster.serving.days import DayCache, DayData, et_time, iso_z
from spymaster.serving.setups import LearnedAnswers
from spymaster.serving.snapshot import _floats, _ns
from spymaster.sessions import BAR_CLOSE_NS, STEP_NS, day_number, from_day_number
from spymaster.settings import SERVED


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
    raw: npt.NDArray[np.float32] | None = None


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


SIGNAL_KS: tuple[int, ...] = (10, 20, 50, 100, 200, 500)
"""The ``k`` values ``/signals`` answers: each (date, horizon, k) is a ~0.3 s computation, so a
client choosing any ``k`` could make every request a cache miss."""
SIGNAL_CACHE = 32
"""Signal answers kept (LRU): 32 ≈ a trader's few days × horizons × the usual k."""


class Queries(DayCache, LearnedAnswers):
    """Partitions, statistics, query vectors, the similarity answer and the per-bar signals."""

    _ann_search: AnnSearcher | None
    params: Params
    default_weights: dict[str, float]
    _cache_lock: threading.Lock
    _stats: OrderedDict[Any, vectors.Stats]
    _signals: OrderedDict[Any, dict[str, Any]]
    _signals_busy: threading.Semaphore
    """At most one signals computation at a time: misses queue instead of starving /similar."""

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
            Point(date, ts, k, str(dr), int(b), finite_or_none(ds), norm[i], version, raw[i])
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
        q_raw: npt.NDArray[Any] | None = None
        if episode_id is not None:
            hit = idx.locate(episode_id)
            if hit is None:
                raise NotFoundError(f"episode {episode_id!r} not found")
            part, row = hit
            q_date = from_day_number(int(part.day[row]))
            q_ts: int | None = int(part.ts[row])
            qvec = part.unit[row] if part.in_memory else self._ann().vector(idx, part, episode_id)
            ep_id = episode_id
            stats_version = self._snapshot().stats_by_day.get(int(part.day[row]))
            q_raw = self.learned_raw(episode_id)
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
            q_raw = pt.raw
            eid = gold.episode_id(pt.date, pt.level_kind, pt.direction, pt.ts)
            ep_id = eid if idx.locate(eid) is not None else None
        if as_of is None:
            assert q_date is not None
            as_of = q_date
        elif q_date is not None:
            _check_as_of(as_of, q_date)
        hits, path = self._search(
            idx, part, qvec, as_of_day=day_number(as_of), k=k, max_per_day=max_per_day, horizon=horizon, g=g
        )
        ans = retrieval.answer(
            part,
            hits,
            as_of_day=day_number(as_of),
            horizon=horizon,
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
                "search": path,
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
            "setup": (
                self.setup_answer(q_raw, part.level_kind, part.direction, as_of)
                if q_raw is not None
                else None
            ),
        }

    def _ann(self) -> AnnSearcher:
        if self._ann_search is None:
            raise NotFoundError("no lake: a partition outside memory cannot be searched")
        return self._ann_search

    def _search(
        self,
        idx: Index,
        part: Partition,
        qvec: npt.ArrayLike,
        *,
        as_of_day: int,
        k: int,
        max_per_day: int,
        horizon: int,
        g: npt.NDArray[np.float32] | None,
    ) -> tuple[retrieval.Hits, str]:
        """The top-k hits and which search found them: exact in memory, or the table's ANN index
        for a partition too large for memory (``settings.ANN``)."""
        if part.in_memory:
            hits = retrieval.search(
                part, qvec, as_of_day=as_of_day, k=k, max_per_day=max_per_day, horizon=horizon, dim_weights=g
            )
            return hits, "exact"
        hits = self._ann().hits(
            idx, part, qvec, as_of_day=as_of_day, k=k, max_per_day=max_per_day, horizon=horizon, dim_weights=g
        )
        return hits, "ann"

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
        if k not in SIGNAL_KS or k > max_k:
            allowed = ", ".join(str(x) for x in SIGNAL_KS if x <= max_k)
            raise InvalidQueryError(f"k for signals must be one of {allowed}")
        day = self.day(date)
        idx = self.index()
        key = (date, day.run_id, idx.version, horizon, k)
        with self._cache_lock:
            hit = self._signals.get(key)
        if hit is not None:
            return hit
        with self._signals_busy:
            with self._cache_lock:  # computed while this request waited?
                hit = self._signals.get(key)
            if hit is not None:
                return hit
            out = self._compute_signals(day, idx, horizon, k)
            with self._cache_lock:
                self._signals[key] = out
                while len(self._signals) > SIGNAL_CACHE:
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
            hits, _ = self._search(
                idx,
                part,
                pt.vector,
                as_of_day=as_of,
                k=k,
                max_per_day=SERVED.max_per_day,
                horizon=horizon,
                g=g,
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
                    "time": et_time(pt.ts),
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

"""The walk-forward split with its embargo, and the served kNN run over it.

* **Embargo rule.** For test day T the *cutoff* is the trading day ``embargo_days`` trading days
  before T (weekdays, ``sessions.previous_trading_day`` applied ``embargo_days`` times; T itself
  for ``embargo_days = 0``). Everything the forecast of T uses — neighbours, the partition base
  rate in the prior, the normalisation statistics, the baselines, the boosted classifier and the
  recalibration map — comes from dates **strictly before the cutoff**. With the default embargo of
  one day: neighbour date < T − 1 trading day (Monday's forecasts see Thursday and earlier).
* **Normalisation** is refitted per test day with ``vectors.fit_stats_before`` on the raw vectors
  of the training dates (its trailing ``window_days`` of them), and applied to the training rows
  and the test rows alike; stats that saw the test day (or the embargo day) are never used.
* **kNN** is the served estimator itself: ``retrieval.Partition.build`` over the training rows of
  each (level_kind, direction, time_bucket) partition, then ``retrieval.search`` and
  ``retrieval.distribution`` with ``as_of`` = T (ages are counted from T). Several settings
  (``KnnConfig``) share one search per query: the greedy per-day-capped top-k of a smaller k is a
  prefix of the larger one's.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from spymaster import sessions, vectors
from spymaster.evaluation.episodes import Episodes
from spymaster.evaluation.metrics import B1, F32, F64, I64
from spymaster.levels import LEVEL_KINDS
from spymaster.outcomes import BREAK, HORIZONS_MIN, OUTCOMES
from spymaster.retrieval import (
    Hits,
    Params,
    Partition,
    calibration,
    distribution,
    search,
)
from spymaster.sessions import day_number, from_day_number

EMBARGO_DAYS = 1
MIN_TRAIN_DAYS = 5


# -- the walk-forward split --------------------------------------------------------------------------


def cutoff_date(test_date: dt.date, embargo_days: int = EMBARGO_DAYS) -> dt.date:
    """The first date a forecast of ``test_date`` may *not* use: ``embargo_days`` trading days back."""
    if embargo_days < 0:
        raise ValueError("embargo_days must be ≥ 0")
    d = test_date
    for _ in range(embargo_days):
        d = sessions.previous_trading_day(d)
    return d


def train_mask(ep: Episodes, test_date: dt.date, embargo_days: int = EMBARGO_DAYS) -> B1:
    """Rows a forecast of ``test_date`` may learn from: dated strictly before its cutoff."""
    out: B1 = ep.day < day_number(cutoff_date(test_date, embargo_days))
    return out


def test_rows(ep: Episodes, test_date: dt.date) -> I64:
    """The test rows of a date: its episodes with a primary label, in row order."""
    out: I64 = np.flatnonzero((ep.day == day_number(test_date)) & (ep.primary >= 0)).astype(np.int64)
    return out


POOL_BY: tuple[str, ...] = ("all", "level_kind")
METRICS: tuple[str, ...] = ("none", "logistic", "corr")
"""Similarity metrics of :class:`KnnConfig`: plain (group-weighted) cosine, or a learned diagonal
metric from logistic-regression coefficients or from each dim's correlation with BREAK."""
METRIC_C = 0.05
"""Inverse L2 strength of the logistic regression behind the learned metric."""


def learned_dim_weights(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    base: F32 | None = None,
    shrink: float = 0.5,
    power: float = 2.0,
    c: float = METRIC_C,
    method: str = "logistic",
) -> F32:
    """A learned diagonal metric for ``retrieval.weighted_similarity``, from training rows only.

    Fits an L2 logistic regression of ``y`` (BREAK or not) on the standardised dims of ``x`` (the
    scaled vectors) and takes the standardised coefficient magnitudes |β_d| to the power ``power``
    (2: the dim is scaled by |β_d| inside the cosine, whose weights act on squared coordinates),
    normalised to mean 1 over the dims ``base`` leaves on, shrunk toward uniform (``method="corr"``:
    |Pearson correlation of the dim with BREAK| in place of |β_d|, robust to collinear dims):
    w_d = base_d · ((1 − shrink) · |β_d|^power / mean + shrink). Falls back to ``base`` (or all ones)
    when ``y`` has a single class.
    """
    from sklearn.linear_model import LogisticRegression

    xv = np.asarray(x, dtype=np.float64)
    yv = np.asarray(y, dtype=np.float64).ravel()
    b = np.ones(xv.shape[1], np.float32) if base is None else np.asarray(base, dtype=np.float32)
    on = (b > 0) & (xv.std(axis=0) > 0) if xv.shape[0] else b > 0
    if xv.shape[0] < 2 or np.unique(yv).size < 2 or not on.any():
        return b.copy()
    xs = xv[:, on]
    xs = (xs - xs.mean(axis=0)) / xs.std(axis=0)
    if method == "corr":
        yc = yv - yv.mean()
        beta = (xs.T @ yc) / (xs.shape[0] * yc.std())
    else:
        beta = LogisticRegression(C=c, max_iter=500).fit(xs, yv.astype(np.int64)).coef_[0]
    mag = np.abs(beta) ** power
    learned = np.zeros(xv.shape[1])
    learned[on] = mag / mag.mean() if mag.mean() > 0 else 1.0
    w = b.astype(np.float64) * ((1.0 - shrink) * learned + shrink)
    out: F32 = w.astype(np.float32)
    return out


@dataclass(frozen=True)
class KnnConfig:
    """One setting of the served kNN: neighbours, per-day cap, kernel/prior and group weights."""

    name: str
    k: int = 50
    max_per_day: int = 2
    params: Params = field(default_factory=Params)
    weights: tuple[tuple[str, float], ...] = ()
    """Per-group weights (``vectors.group_weights``); groups not named weigh 1."""
    pooled_prior: float = 0.0
    """> 0: the partition base rate in the prior is shrunk toward a pooled split of earlier rows with
    this many pseudo-counts — ``Params.default_prior`` = m × pooled split, set per as-of day —
    instead of toward the fixed 1/1/0.5 (0: the fixed ``params.default_prior``)."""
    pool_by: str = "all"
    """What the pooled split pools: ``all`` partitions, or the partitions of the same ``level_kind``."""
    metric: str = "none"
    """``none``: cosine with the group weights; ``logistic``: times a learned diagonal metric
    (:func:`learned_dim_weights`) fitted for every test day on its training rows (before the cutoff)."""
    metric_by: str = "all"
    """The learned metric is fitted on ``all`` training rows or per ``level_kind``."""
    metric_shrink: float = 0.5
    metric_power: float = 2.0

    @staticmethod
    def of(
        name: str,
        *,
        k: int = 50,
        max_per_day: int = 2,
        params: Params | None = None,
        weights: Mapping[str, float] | None = None,
        pooled_prior: float = 0.0,
        pool_by: str = "all",
        metric: str = "none",
        metric_by: str = "all",
        metric_shrink: float = 0.5,
        metric_power: float = 2.0,
    ) -> KnnConfig:
        if pool_by not in POOL_BY:
            raise ValueError(f"pool_by must be one of {POOL_BY}")
        if metric not in METRICS or metric_by not in POOL_BY:
            raise ValueError(f"metric must be one of {METRICS}, metric_by one of {POOL_BY}")
        w = tuple(sorted((g, float(v)) for g, v in (weights or {}).items()))
        return KnnConfig(
            name,
            k,
            max_per_day,
            params or Params(),
            w,
            float(pooled_prior),
            pool_by,
            metric,
            metric_by,
            float(metric_shrink),
            float(metric_power),
        )

    @property
    def metric_key(self) -> tuple[str, str, float, float]:
        return (self.metric, self.metric_by, self.metric_shrink, self.metric_power)

    def params_for(self, pooled_counts: npt.ArrayLike) -> Params:
        """The ``Params`` used on a day whose earlier rows (all partitions) have these label counts."""
        c = np.asarray(pooled_counts, dtype=np.float64)
        if self.pooled_prior <= 0 or c.sum() <= 0:
            return self.params
        b, r, ch = (float(self.pooled_prior * v) for v in c / c.sum())
        return replace(self.params, default_prior=(b, r, ch))

    def dim_weights(self) -> F32 | None:
        """``None`` (plain cosine, as the API does) when every group weighs 1."""
        g = vectors.group_weights(dict(self.weights))
        return None if np.all(g == 1.0) else g

    def describe(self) -> str:
        out = calibration.describe(self.params, self.k, self.max_per_day, dict(self.weights))
        if self.pooled_prior > 0:
            what = "all partitions" if self.pool_by == "all" else "the level kind's partitions"
            out += (
                f", partition rate shrunk toward the split of {what} with {self.pooled_prior:g} pseudo-counts"
            )
        if self.metric != "none":
            out += (
                f", learned {self.metric} metric ({self.metric_by}, |β|^{self.metric_power:g}, "
                f"shrink {self.metric_shrink:g})"
            )
        return out


@dataclass(frozen=True)
class Forecast:
    """A kNN setting's answers for the test rows: P of each outcome, the BREAK interval, n_eff."""

    p: F64
    """[n, 3] in OUTCOMES order."""
    lo: F64
    hi: F64
    n_eff: F64
    n_neighbours: I64
    total: F64
    """The interval's Beta pseudo-count: n_eff + prior strength."""

    @property
    def p_break(self) -> F64:
        out: F64 = self.p[:, BREAK]
        return out


@dataclass(frozen=True)
class WalkForward:
    """kNN forecasts of every test row, and what each test day was allowed to see."""

    rows: I64
    """Indices into the Episodes, test days in order, rows in order within a day."""
    knn: Mapping[str, Forecast]
    stats_window: Mapping[int, tuple[str, ...]]
    """Dates whose raw vectors fitted each test day's normalisation."""
    train_days: Mapping[int, tuple[int, ...]]
    """Day numbers of the rows each test day's partitions held."""
    cutoffs: Mapping[int, int]
    """Test day number → first day number it may not use."""


def _partitions(ep: Episodes, rows: I64, norm: F32) -> dict[str, Partition]:
    parts: dict[str, Partition] = {}
    keys = ep.key[rows]
    for key in np.unique(keys).tolist():
        sel = np.flatnonzero(keys == key)
        r = rows[sel]
        kind, direc, bucket = key.split("|")
        nanh = np.full((len(HORIZONS_MIN), r.size), np.nan)
        parts[key] = Partition.build(
            key,
            kind,
            direc,
            int(bucket),
            vectors=norm[sel],
            day=ep.day[r],
            ts=ep.ts[r],
            episode_id=ep.episode_id[r],
            labels=ep.labels[:, r],
            mfe=nanh,
            mae=nanh,
        )
    return parts


def _empty(key: str) -> Partition:
    kind, direc, bucket = key.split("|")
    return Partition.build(
        key,
        kind,
        direc,
        int(bucket),
        vectors=np.zeros((0, vectors.VECTOR_DIM), np.float32),
        day=np.zeros(0, np.int32),
        ts=np.zeros(0, np.int64),
        episode_id=np.zeros(0, np.str_),
        labels=np.zeros((len(HORIZONS_MIN), 0), np.int8),
        mfe=np.zeros((len(HORIZONS_MIN), 0)),
        mae=np.zeros((len(HORIZONS_MIN), 0)),
    )


def day_stats(
    ep: Episodes, train: B1, test_date: dt.date, *, window_days: int = vectors.DEFAULT_WINDOW_DAYS
) -> vectors.Stats:
    """Normalisation for ``test_date`` from the raw vectors of the training rows' dates only."""
    days = ep.day[train]
    by_date = {from_day_number(int(d)): ep.raw[train][days == d] for d in np.unique(days).tolist()}
    return vectors.fit_stats_before(by_date, test_date, window_days=window_days)


def _metric_weights(
    c: KnnConfig, g: F32 | None, x: F32, lab: npt.NDArray[np.int8], kind: npt.NDArray[np.str_]
) -> dict[str, F32]:
    """The learned metric of one test day ({} when ``c.metric`` is ``none``), keyed ``all`` or by
    level kind, fitted on the training rows ``x`` (scaled) with a primary label."""
    if c.metric == "none":
        return {}
    ok = lab >= 0
    keys = ("all",) if c.metric_by == "all" else tuple(np.unique(kind).tolist())
    out: dict[str, F32] = {}
    for key in keys:
        sel = ok if key == "all" else ok & (kind == key)
        out[key] = learned_dim_weights(
            x[sel],
            lab[sel] == BREAK,
            base=g,
            shrink=c.metric_shrink,
            power=c.metric_power,
            method=c.metric,
        )
    return out


def walk_forward(
    ep: Episodes,
    test_dates: Sequence[dt.date],
    configs: Sequence[KnnConfig],
    *,
    embargo_days: int = EMBARGO_DAYS,
    window_days: int = vectors.DEFAULT_WINDOW_DAYS,
    progress: Callable[[str], None] | None = None,
) -> WalkForward:
    """Forecast every test row of every test date with each kNN setting (see the module doc)."""
    if not configs:
        raise ValueError("give at least one kNN setting")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError("kNN setting names must be unique")
    all_rows: list[I64] = []
    outs: dict[str, list[tuple[F64, F64, F64, F64, I64, F64]]] = {c.name: [] for c in configs}
    windows: dict[int, tuple[str, ...]] = {}
    train_days: dict[int, tuple[int, ...]] = {}
    cutoffs: dict[int, int] = {}
    # settings sharing weights and per-day cap share one search (smaller k = prefix)
    families: dict[
        tuple[tuple[tuple[str, float], ...], int, tuple[str, str, float, float]], list[KnnConfig]
    ] = {}
    for c in configs:
        families.setdefault((c.weights, c.max_per_day, c.metric_key), []).append(c)
    for tdate in sorted(test_dates):
        t0 = time.perf_counter()
        tday = day_number(tdate)
        cutoffs[tday] = day_number(cutoff_date(tdate, embargo_days))
        train = train_mask(ep, tdate, embargo_days)
        rows = test_rows(ep, tdate)
        tr = np.flatnonzero(train).astype(np.int64)
        stats = day_stats(ep, train, tdate, window_days=window_days)
        windows[tday] = stats.window
        train_days[tday] = tuple(np.unique(ep.day[tr]).tolist())
        norm_train = (
            vectors.apply(stats, ep.raw[tr]) if tr.size else np.zeros((0, vectors.VECTOR_DIM), np.float32)
        )
        norm_test = (
            vectors.apply(stats, ep.raw[rows]) if rows.size else np.zeros((0, vectors.VECTOR_DIM), np.float32)
        )
        parts = _partitions(ep, tr, norm_train)
        n = rows.size
        res = {
            c.name: (
                np.zeros((n, 3)),
                np.zeros(n),
                np.zeros(n),
                np.zeros(n),
                np.zeros(n, np.int64),
                np.zeros(n),
            )
            for c in configs
        }
        lab_tr = ep.primary[tr]
        pool_counts: dict[str, I64] = {}
        for pk in ("all", *LEVEL_KINDS):
            sel = lab_tr >= 0 if pk == "all" else (lab_tr >= 0) & (ep.level_kind[tr] == pk)
            cnt = np.bincount(lab_tr[sel].astype(np.int64), minlength=len(OUTCOMES))
            pool_counts[pk] = cnt[: len(OUTCOMES)].astype(np.int64)
        day_params = {
            (c.name, pk): c.params_for(cnt)
            for c in configs
            for pk, cnt in pool_counts.items()
            if (pk == "all") == (c.pool_by == "all")
        }
        for (_w, mpd, _m), fam in families.items():
            g = fam[0].dim_weights()
            g_kind = _metric_weights(fam[0], g, norm_train, lab_tr, ep.level_kind[tr])
            kmax = max(c.k for c in fam)
            for i, r in enumerate(rows.tolist()):
                key = str(ep.key[r])
                part = parts.get(key) or _empty(key)
                gi = g_kind.get(part.level_kind, g_kind.get("all", g)) if g_kind else g
                hits = search(part, norm_test[i], as_of_day=tday, k=kmax, max_per_day=mpd, dim_weights=gi)
                for c in fam:
                    sub = Hits(hits.rows[: c.k], hits.similarity[: c.k], hits.candidates)
                    pk = "all" if c.pool_by == "all" else part.level_kind
                    dist, _ = distribution(part, sub, as_of_day=tday, params=day_params[(c.name, pk)])
                    p, lo, hi, ne, nn, tot = res[c.name]
                    p[i] = dist.p
                    lo[i], hi[i] = dist.interval[BREAK]
                    ne[i] = dist.n_eff
                    nn[i] = dist.n
                    tot[i] = dist.n_eff + c.params.prior_strength
        for c in configs:
            outs[c.name].append(res[c.name])
        all_rows.append(rows)
        if progress:
            progress(
                f"kNN {tdate}: {n} test episodes, {tr.size} training rows, {time.perf_counter() - t0:.1f} s"
            )
    knn: dict[str, Forecast] = {}
    for c in configs:
        parts_ = outs[c.name]
        knn[c.name] = Forecast(
            p=np.concatenate([x[0] for x in parts_]) if parts_ else np.zeros((0, 3)),
            lo=np.concatenate([x[1] for x in parts_]) if parts_ else np.zeros(0),
            hi=np.concatenate([x[2] for x in parts_]) if parts_ else np.zeros(0),
            n_eff=np.concatenate([x[3] for x in parts_]) if parts_ else np.zeros(0),
            n_neighbours=np.concatenate([x[4] for x in parts_]) if parts_ else np.zeros(0, np.int64),
            total=np.concatenate([x[5] for x in parts_]) if parts_ else np.zeros(0),
        )
    return WalkForward(
        rows=np.concatenate(all_rows) if all_rows else np.zeros(0, np.int64),
        knn=knn,
        stats_window=windows,
        train_days=train_days,
        cutoffs=cutoffs,
    )

"""Walk-forward evaluation of the served kNN's P(BREAK) against baselines, an ablation and the oracle.

Method (docs/EVALUATION.md has the measured tables):

* **Test days** are the committed gold dates in ``[start, end]`` with at least ``min_train_days``
  dates of training data. A test episode is one with a primary (8-minute) label; the target is
  ``label == BREAK``.
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
* **Baselines** on the same episodes: the partition base rate (the kNN's own prior mean
  ``retrieval.prior_mean`` of the partition's training labels), a time-of-day rate (15-minute slots
  after 09:30 over all partitions, shrunk toward the overall training rate with 2.5 pseudo-counts),
  the overall rate, and scikit-learn's ``HistGradientBoostingClassifier`` on the raw vectors plus
  the partition keys and minutes since the open, retrained walk-forward every ``retrain_every``
  test days on everything before the cutoff of the day it is trained for.
* **Oracle** (generated days): an episode is matched to a planted interaction of the same date,
  level kind and direction whose approach contains its anchor (``start_ts ≤ ts ≤ arrival_ts``) and
  whose arrival is at most ``oracle_window_s`` after it; its true probability is the truth table's
  ``p_break``.

Metrics (tiny-array tests in tests/unit/test_evaluation.py): Brier, log loss (p clipped to
[1e-6, 1 − 1e-6]), ECE over 10 equal-width bins (the last closed), AUC (``roc_auc_score``),
top-decile lift (BREAK rate among the ⌈n/10⌉ highest forecasts — ties broken by row order — over
the overall rate), and two coverages of the 80 % interval:

* **oracle coverage** (the one judged against 78–82 %): share of oracle-matched episodes whose
  planted ``p_break`` lies inside the reported interval — the interval is a statement about the
  episode's probability, which only the planted rule knows;
* **decile coverage** (computable on real data, a weaker proxy): share of episodes whose interval
  contains the realised BREAK rate of their decile of forecasts (10 equal-count bins).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster import sessions, vectors
from spymaster.lake import Lake, committed_dates, new_run_id, paths, read_manifest
from spymaster.lake.paths import EPISODES_TABLE, Layer, truth_file
from spymaster.layers.gold import EPISODE_SCHEMA
from spymaster.levels import LEVEL_KINDS
from spymaster.outcomes import BREAK, HORIZONS_MIN, OUTCOMES, PRIMARY_HORIZON_MIN, label_codes
from spymaster.partitions import TIME_BUCKETS
from spymaster.retrieval import (
    Hits,
    Params,
    Partition,
    calibration,
    distribution,
    prior_mean,
    search,
)
from spymaster.sessions import NS, day_number, from_day_number
from spymaster.settings import SERVED

__all__ = [
    "EMBARGO_DAYS",
    "Episodes",
    "Forecast",
    "KnnConfig",
    "Report",
    "Scores",
    "WalkForward",
    "auc",
    "boosted_forecast",
    "brier",
    "cutoff_date",
    "decile_coverage",
    "ece",
    "evaluate",
    "interval_coverage",
    "load_episodes",
    "log_loss",
    "match_truth",
    "partition_rate",
    "reliability",
    "scores",
    "time_of_day_rate",
    "top_decile_lift",
    "walk_forward",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B1 = npt.NDArray[np.bool_]

EMBARGO_DAYS = 1
LOG_EPS = 1e-6
ECE_BINS = 10
RELIABILITY_MIN_COUNT = 20
TOD_SLOT_MIN = 15
TOD_PRIOR = 2.5
MIN_TRAIN_DAYS = 5
RETRAIN_EVERY = 5
ORACLE_WINDOW_S = 180
SERVED_NAME = "kNN served"
"""The estimator the goals are judged on: the served setting + its recalibration + interval cap."""
H_PRIMARY = HORIZONS_MIN.index(PRIMARY_HORIZON_MIN)

# -- metrics -----------------------------------------------------------------------------------------


def _py(p: npt.ArrayLike, y: npt.ArrayLike) -> tuple[F64, F64]:
    pv = np.asarray(p, dtype=np.float64).ravel()
    yv = np.asarray(y, dtype=np.float64).ravel()
    if pv.shape != yv.shape:
        raise ValueError("forecasts and outcomes differ in length")
    if pv.size and (np.any(~np.isfinite(pv)) or pv.min() < 0 or pv.max() > 1):
        raise ValueError("forecasts must be finite probabilities")
    if yv.size and not np.isin(yv, (0.0, 1.0)).all():
        raise ValueError("outcomes must be 0 or 1")
    return pv, yv


def brier(p: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Mean squared error of the forecast probability against the 0/1 outcome."""
    pv, yv = _py(p, y)
    return float(np.mean((pv - yv) ** 2)) if pv.size else math.nan


def log_loss(p: npt.ArrayLike, y: npt.ArrayLike, eps: float = LOG_EPS) -> float:
    """Mean negative log-likelihood (natural log), forecasts clipped to [eps, 1 − eps]."""
    pv, yv = _py(p, y)
    if not pv.size:
        return math.nan
    q = np.clip(pv, eps, 1 - eps)
    return float(-np.mean(yv * np.log(q) + (1 - yv) * np.log(1 - q)))


def reliability(p: npt.ArrayLike, y: npt.ArrayLike, bins: int = ECE_BINS) -> tuple[F64, F64, I64]:
    """Per equal-width bin of the forecast: (mean forecast, realised rate, count); NaN where empty.

    Bin ``b`` holds ``b/bins ≤ p < (b+1)/bins``; the last bin also holds ``p = 1``.
    """
    pv, yv = _py(p, y)
    idx = np.minimum((pv * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.int64)
    sp = np.bincount(idx, weights=pv, minlength=bins)
    sy = np.bincount(idx, weights=yv, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mp = np.where(count > 0, sp / np.maximum(count, 1), np.nan)
        ry = np.where(count > 0, sy / np.maximum(count, 1), np.nan)
    return mp, ry, count


def ece(p: npt.ArrayLike, y: npt.ArrayLike, bins: int = ECE_BINS) -> float:
    """Expected calibration error: Σ_b (n_b / n) · |mean forecast_b − realised rate_b|."""
    mp, ry, count = reliability(p, y, bins)
    n = int(count.sum())
    if n == 0:
        return math.nan
    ok = count > 0
    return float(np.sum(count[ok] / n * np.abs(mp[ok] - ry[ok])))


def ece_floor(p: npt.ArrayLike, bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float:
    """Mean ECE of a *perfectly calibrated* forecaster with these forecasts (outcomes drawn as
    Bernoulli(p), ``draws`` times): the ECE that sampling noise alone produces at this sample size."""
    pv = np.asarray(p, dtype=np.float64).ravel()
    if not pv.size:
        return math.nan
    rng = np.random.default_rng(seed)
    return float(
        np.mean([ece(pv, (rng.random(pv.size) < pv).astype(np.float64), bins) for _ in range(draws)])
    )


def auc(p: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """ROC AUC (scikit-learn); NaN when the outcomes hold a single class."""
    pv, yv = _py(p, y)
    if np.unique(yv).size < 2:
        return math.nan
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(yv, pv))


def top_decile_lift(p: npt.ArrayLike, y: npt.ArrayLike, frac: float = 0.1) -> float:
    """BREAK rate of the ⌈frac·n⌉ highest forecasts (ties: earlier rows first) ÷ the overall rate."""
    pv, yv = _py(p, y)
    if not pv.size or yv.mean() == 0:
        return math.nan
    m = max(1, math.ceil(frac * pv.size - 1e-9))
    top = np.argsort(-pv, kind="stable")[:m]
    return float(yv[top].mean() / yv.mean())


def interval_coverage(lo: npt.ArrayLike, hi: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """Share of rows with a finite ``truth`` lying in ``[lo, hi]`` (NaN if there is none)."""
    lv = np.asarray(lo, dtype=np.float64).ravel()
    hv = np.asarray(hi, dtype=np.float64).ravel()
    tv = np.asarray(truth, dtype=np.float64).ravel()
    ok = np.isfinite(tv)
    if not ok.any():
        return math.nan
    inside = (lv[ok] <= tv[ok]) & (tv[ok] <= hv[ok])
    return float(inside.mean())


def decile_coverage(
    p: npt.ArrayLike, lo: npt.ArrayLike, hi: npt.ArrayLike, y: npt.ArrayLike, bins: int = 10
) -> float:
    """Share of rows whose interval holds the realised rate of their equal-count bin of forecasts.

    Rows are sorted by forecast (ties: row order) and cut into ``bins`` nearly equal consecutive
    groups (``numpy.array_split``); fewer rows than bins gives one group per row.
    """
    pv, yv = _py(p, y)
    lv = np.asarray(lo, dtype=np.float64).ravel()
    hv = np.asarray(hi, dtype=np.float64).ravel()
    if not pv.size:
        return math.nan
    order = np.argsort(pv, kind="stable")
    rate = np.empty(pv.size)
    for grp in np.array_split(order, min(bins, pv.size)):
        rate[grp] = yv[grp].mean()
    return float(np.mean((lv <= rate) & (rate <= hv)))


def skill(score: float, reference: float) -> float:
    """1 − score / reference (Brier skill score when both are Brier scores)."""
    return 1.0 - score / reference if reference > 0 else math.nan


@dataclass(frozen=True)
class Scores:
    n: int
    rate: float
    """Realised BREAK rate."""
    mean_p: float
    brier: float
    log_loss: float
    ece: float
    auc: float
    lift: float
    coverage: float | None = None
    """Decile coverage of the 80 % interval (None: the estimator has no interval)."""
    oracle_coverage: float | None = None
    n_oracle: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: _json_num(v) for k, v in self.__dict__.items()}


def scores(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    lo: npt.ArrayLike | None = None,
    hi: npt.ArrayLike | None = None,
    truth: npt.ArrayLike | None = None,
) -> Scores:
    """Every metric of one estimator on one set of rows."""
    pv, yv = _py(p, y)
    cov = ocov = None
    n_or = 0
    if lo is not None and hi is not None:
        cov = decile_coverage(pv, lo, hi, yv)
        if truth is not None:
            tv = np.asarray(truth, dtype=np.float64)
            n_or = int(np.isfinite(tv).sum())
            ocov = interval_coverage(lo, hi, tv) if n_or else None
    return Scores(
        n=int(pv.size),
        rate=float(yv.mean()) if pv.size else math.nan,
        mean_p=float(pv.mean()) if pv.size else math.nan,
        brier=brier(pv, yv),
        log_loss=log_loss(pv, yv),
        ece=ece(pv, yv),
        auc=auc(pv, yv) if pv.size else math.nan,
        lift=top_decile_lift(pv, yv),
        coverage=cov,
        oracle_coverage=ocov,
        n_oracle=n_or,
    )


def _json_num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


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
            f"{k}|{r}|{int(b)}"
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


# -- baselines ---------------------------------------------------------------------------------------


def _per_day(
    ep: Episodes,
    test_dates: Sequence[dt.date],
    embargo_days: int,
    fn: Callable[[I64, I64], F64],
) -> F64:
    out: list[F64] = []
    for tdate in sorted(test_dates):
        rows = test_rows(ep, tdate)
        tr = np.flatnonzero(train_mask(ep, tdate, embargo_days) & (ep.primary >= 0)).astype(np.int64)
        out.append(fn(tr, rows))
    return np.concatenate(out) if out else np.zeros(0)


def partition_rate(
    ep: Episodes,
    test_dates: Sequence[dt.date],
    *,
    embargo_days: int = EMBARGO_DAYS,
    params: Params | None = None,
) -> F64:
    """P(BREAK) = the kNN's prior mean: the partition's training label counts shrunk toward 1/1/0.5."""

    def fn(tr: I64, rows: I64) -> F64:
        res = np.zeros(rows.size)
        for key in np.unique(ep.key[rows]).tolist():
            lab = ep.primary[tr[ep.key[tr] == key]]
            counts = np.bincount(lab.astype(np.int64), minlength=len(OUTCOMES))[: len(OUTCOMES)]
            res[ep.key[rows] == key] = prior_mean(counts, params or Params())[BREAK]
        return res

    return _per_day(ep, test_dates, embargo_days, fn)


def _slot(minutes: F64) -> I64:
    out: I64 = np.clip((minutes // TOD_SLOT_MIN).astype(np.int64), 0, 180 // TOD_SLOT_MIN - 1)
    return out


def time_of_day_rate(ep: Episodes, test_dates: Sequence[dt.date], *, embargo_days: int = EMBARGO_DAYS) -> F64:
    """P(BREAK) by 15-minute slot after 09:30 (all partitions), shrunk toward the overall rate."""

    def fn(tr: I64, rows: I64) -> F64:
        y = ep.is_break[tr]
        overall = (y.sum() + 1.0) / (y.size + 2.5)
        st, sr = _slot(ep.minutes[tr]), _slot(ep.minutes[rows])
        nb = np.bincount(st, minlength=12).astype(np.float64)
        bb = np.bincount(st, weights=y, minlength=12)
        rate = (bb + TOD_PRIOR * overall) / (nb + TOD_PRIOR)
        out: F64 = rate[sr]
        return out

    return _per_day(ep, test_dates, embargo_days, fn)


def overall_rate(ep: Episodes, test_dates: Sequence[dt.date], *, embargo_days: int = EMBARGO_DAYS) -> F64:
    """P(BREAK) = the training BREAK rate of all episodes (shrunk like the prior: (B + 1)/(n + 2.5))."""

    def fn(tr: I64, rows: I64) -> F64:
        y = ep.is_break[tr]
        return np.full(rows.size, (y.sum() + 1.0) / (y.size + 2.5))

    return _per_day(ep, test_dates, embargo_days, fn)


def _features(ep: Episodes, rows: I64) -> F64:
    kind = np.array([LEVEL_KINDS.index(str(k)) for k in ep.level_kind[rows]], dtype=np.float64)
    up = (ep.direction[rows] == "UP").astype(np.float64)
    extra = np.stack([kind, up, ep.time_bucket[rows].astype(np.float64), ep.minutes[rows]], axis=1)
    return np.concatenate([ep.raw[rows].astype(np.float64), extra], axis=1)


def boosted_forecast(
    ep: Episodes,
    test_dates: Sequence[dt.date],
    *,
    embargo_days: int = EMBARGO_DAYS,
    retrain_every: int = RETRAIN_EVERY,
    seed: int = 0,
    min_rows: int = 100,
) -> F64:
    """P(BREAK) of a HistGradientBoostingClassifier on the raw vectors + partition keys + minutes.

    The model for test day T is trained on rows before T's cutoff; it is reused for the next
    ``retrain_every − 1`` test days (whose cutoffs are later, so it never saw them). Too few rows
    or a single class: the overall rate.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    model: Any = None
    fallback = 0.4
    since = retrain_every
    out: list[F64] = []
    n_feat = vectors.VECTOR_DIM + 4
    cat = np.zeros(n_feat, dtype=bool)
    cat[vectors.VECTOR_DIM] = True
    for tdate in sorted(test_dates):
        rows = test_rows(ep, tdate)
        if since >= retrain_every:
            tr = np.flatnonzero(train_mask(ep, tdate, embargo_days) & (ep.primary >= 0)).astype(np.int64)
            y = ep.is_break[tr]
            fallback = float((y.sum() + 1.0) / (y.size + 2.5))
            if tr.size >= min_rows and np.unique(y).size == 2:
                model = HistGradientBoostingClassifier(
                    learning_rate=0.03,
                    max_iter=100,
                    max_depth=3,
                    min_samples_leaf=200,
                    l2_regularization=5.0,
                    categorical_features=cat,
                    early_stopping=False,
                    random_state=seed,
                )
                model.fit(_features(ep, tr), y.astype(np.int64))
            else:
                model = None
            since = 0
        since += 1
        if model is None or rows.size == 0:
            out.append(np.full(rows.size, fallback))
        else:
            proba = model.predict_proba(_features(ep, rows))
            out.append(np.asarray(proba[:, list(model.classes_).index(1)], dtype=np.float64))
    return np.concatenate(out) if out else np.zeros(0)


# -- the oracle --------------------------------------------------------------------------------------


def match_truth(
    ep: Episodes, rows: npt.ArrayLike, truth: pa.Table, *, window_s: float = ORACLE_WINDOW_S
) -> F64:
    """Planted ``p_break`` of each row's interaction (NaN when unmatched; see the module doc)."""
    r = np.asarray(rows, dtype=np.int64)
    out = np.full(r.size, np.nan)
    if truth.num_rows == 0 or r.size == 0:
        return out
    t_day = np.asarray(truth.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False), dtype=np.int64)
    t_kind = np.asarray(truth.column("level_kind").to_pylist(), dtype=np.str_)
    t_dir = np.asarray(truth.column("direction").to_pylist(), dtype=np.str_)
    t_start = np.asarray(truth.column("start_ts").to_numpy(zero_copy_only=False), dtype=np.int64)
    t_arr = np.asarray(truth.column("arrival_ts").to_numpy(zero_copy_only=False), dtype=np.int64)
    t_p = np.asarray(truth.column("p_break").to_numpy(zero_copy_only=False), dtype=np.float64)
    win = int(window_s * NS)
    for i, row in enumerate(r.tolist()):
        ts = int(ep.ts[row])
        ok = (
            (t_day == int(ep.day[row]))
            & (t_kind == ep.level_kind[row])
            & (t_dir == ep.direction[row])
            & (t_start <= ts)
            & (ts <= t_arr)
            & (t_arr - ts <= win)
        )
        cand = np.flatnonzero(ok)
        if cand.size:
            out[i] = t_p[cand[np.argmin(t_arr[cand] - ts)]]
    return out


def load_truth(lake: Lake, dates: Sequence[dt.date]) -> pa.Table | None:
    """The generator's truth tables of ``dates`` (None when no date has one: real data)."""
    tables = [lake.read_parquet([truth_file(d)]) for d in dates if lake.exists(truth_file(d))]
    return pa.concat_tables(tables) if tables else None


# -- groups ------------------------------------------------------------------------------------------


def groups(ep: Episodes, rows: I64) -> list[tuple[str, B1]]:
    """(name, mask over ``rows``): overall, then by level kind, by direction, by time bucket."""
    out: list[tuple[str, B1]] = [("all", np.ones(rows.size, dtype=bool))]
    for k in LEVEL_KINDS:
        out.append((f"level_kind={k}", ep.level_kind[rows] == k))
    for d in ("UP", "DOWN"):
        out.append((f"direction={d}", ep.direction[rows] == d))
    for b, (lo, hi) in enumerate(TIME_BUCKETS):
        out.append((f"time_bucket={b} ({lo}–{hi} min)", ep.time_bucket[rows] == b))
    return [(name, m) for name, m in out if m.any()]


# -- ablation ----------------------------------------------------------------------------------------

ABLATION_BASE: tuple[str, ...] = ("geometry", "kinematics", "context", "trajectory")
""""Geometry/trajectory only": where price is, how it moves, the zone context and the DCT shapes."""
ABLATION_STEPS: tuple[str, ...] = ("flow", "barrier", "tape", "dealer", "physics")


def _weights_of(groups_on: Sequence[str]) -> dict[str, float]:
    return {g: (1.0 if g in groups_on else 0.0) for g in vectors.VECTOR_GROUPS}


@dataclass(frozen=True)
class AblationStep:
    step: str
    groups: tuple[str, ...]
    log_loss: float
    brier: float
    delta: float
    """Log loss change against the best so far (negative = better)."""
    kept: bool
    delta_se: float = math.nan
    """Standard error of ``delta`` with test days as clusters (episodes of a day are correlated)."""


def _row_log_loss(p: F64, y: F64) -> F64:
    q = np.clip(p, LOG_EPS, 1 - LOG_EPS)
    out: F64 = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    return out


def clustered_se(diff: npt.ArrayLike, cluster: npt.ArrayLike) -> float:
    """Standard error of mean(diff) with clusters (sandwich): sqrt(Σ_c (S_c − n_c·d̄)²) / n."""
    d = np.asarray(diff, dtype=np.float64).ravel()
    c = np.asarray(cluster).ravel()
    if d.size == 0:
        return math.nan
    _, inv = np.unique(c, return_inverse=True)
    sums = np.bincount(inv, weights=d)
    counts = np.bincount(inv)
    return float(np.sqrt(np.sum((sums - counts * d.mean()) ** 2)) / d.size)


def ablation(
    ep: Episodes,
    test_dates: Sequence[dt.date],
    *,
    base: KnnConfig,
    embargo_days: int = EMBARGO_DAYS,
    window_days: int = vectors.DEFAULT_WINDOW_DAYS,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[AblationStep], dict[str, float], list[AblationStep]]:
    """Forward selection over feature groups by log loss, plus the full vector for reference.

    Start from :data:`ABLATION_BASE`; add each group of :data:`ABLATION_STEPS` in turn and keep it
    only if the log loss of P(BREAK) drops. Returns (steps, recommended group weights, references).
    """

    def run(name: str, on: Sequence[str]) -> tuple[F64, F64, I64]:
        cfg = replace(base, name=name, weights=tuple(sorted(_weights_of(on).items())))
        wf = walk_forward(ep, test_dates, [cfg], embargo_days=embargo_days, window_days=window_days)
        return wf.knn[name].p_break, ep.is_break[wf.rows], ep.day[wf.rows].astype(np.int64)

    kept = list(ABLATION_BASE)
    pb, y, day = run("base", kept)
    best_rows = _row_log_loss(pb, y)
    best = float(best_rows.mean())
    steps = [AblationStep("geometry/trajectory only", tuple(kept), best, brier(pb, y), 0.0, True)]
    for g in ABLATION_STEPS:
        pb, y, day = run(f"+{g}", [*kept, g])
        rows_ll = _row_log_loss(pb, y)
        ll = float(rows_ll.mean())
        better = ll < best
        se = clustered_se(rows_ll - best_rows, day)
        steps.append(AblationStep(f"+ {g}", (*kept, g), ll, brier(pb, y), ll - best, better, se))
        if progress:
            progress(f"ablation + {g}: log loss {ll:.4f} ({'kept' if better else 'dropped'})")
        if better:
            kept.append(g)
            best, best_rows = ll, rows_ll
    refs: list[AblationStep] = []
    full = list(vectors.VECTOR_GROUPS)
    if set(full) != set(kept):
        pb, y, day = run("full", full)
        rows_ll = _row_log_loss(pb, y)
        ll = float(rows_ll.mean())
        refs.append(
            AblationStep(
                "full vector (all groups)",
                tuple(full),
                ll,
                brier(pb, y),
                ll - best,
                False,
                clustered_se(rows_ll - best_rows, day),
            )
        )
    return steps, _weights_of(kept), refs


# -- plots -------------------------------------------------------------------------------------------


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def reliability_png(curves: Mapping[str, tuple[F64, F64]], bins: int = ECE_BINS, title: str = "") -> bytes:
    """Reliability diagram (mean forecast vs realised rate per bin) with forecast histograms."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 7.0))
    FigureCanvasAgg(fig)
    ax, hx = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect")
    edges = np.linspace(0, 1, bins + 1)
    for name, (p, y) in curves.items():
        mp, ry, count = reliability(p, y, bins)
        ok = count >= RELIABILITY_MIN_COUNT
        ax.plot(mp[ok], ry[ok], marker="o", lw=1.5, label=f"{name} (ECE {ece(p, y, bins):.3f})")
        hx.hist(p, bins=edges, histtype="step", lw=1.2, label=name)
    ax.set_ylabel(f"realised BREAK rate (bins with ≥ {RELIABILITY_MIN_COUNT} episodes)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "Reliability of P(BREAK), 8-minute horizon")
    hx.set_xlabel("forecast P(BREAK)")
    hx.set_ylabel("episodes")
    return _png(fig)


def lift_png(curves: Mapping[str, tuple[F64, F64]], bins: int = 10) -> bytes:
    """Realised BREAK rate ÷ overall rate per decile of each estimator's forecast."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / max(len(curves), 1)
    for j, (name, (p, y)) in enumerate(curves.items()):
        order = np.argsort(p, kind="stable")
        base = float(np.mean(y)) if y.size else math.nan
        lifts = [
            float(np.mean(y[g])) / base if g.size and base > 0 else math.nan
            for g in np.array_split(order, bins)
        ]
        ax.bar(np.arange(1, bins + 1) + (j - (len(curves) - 1) / 2) * width, lifts, width=width, label=name)
    ax.axhline(1.0, color="0.5", lw=1, ls="--")
    ax.set_xlabel("decile of forecast P(BREAK) (10 = highest)")
    ax.set_ylabel("lift (BREAK rate ÷ overall)")
    ax.set_xticks(np.arange(1, bins + 1))
    ax.legend(fontsize=8)
    ax.set_title("Lift by forecast decile")
    return _png(fig)


def coverage_png(p_true: F64, p: F64, lo: F64, hi: F64, title: str = "") -> bytes:
    """Oracle-matched episodes: planted p_break against the forecast and its 80 % interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    inside = (lo <= p_true) & (p_true <= hi)
    for sel, colour, name in ((inside, "tab:blue", "inside"), (~inside, "tab:red", "outside")):
        ax.errorbar(
            p_true[sel],
            p[sel],
            yerr=np.clip(np.vstack([p[sel] - lo[sel], hi[sel] - p[sel]]), 0.0, None),
            fmt="o",
            ms=3,
            lw=0.6,
            alpha=0.6,
            color=colour,
            label=f"{name} ({int(sel.sum())})",
        )
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    ax.set_xlabel("planted p_break (oracle)")
    ax.set_ylabel("forecast P(BREAK) with 80 % interval")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title or "Interval coverage on oracle-matched episodes")
    return _png(fig)


# -- the report --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """An evaluation run: its markdown, every number (``metrics``) and where it was written."""

    run_id: str
    markdown: str
    metrics: dict[str, Any]
    paths: dict[str, str]
    """Name → lake-relative path (``report``, ``metrics``, ``reliability``, ``lift``, …, ``latest``)."""
    pngs: dict[str, bytes] = field(default_factory=dict, repr=False)


def _f(v: float | None, nd: int = 4) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.{nd}f}"


def _pct(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{100 * v:.1f} %"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class _Est:
    name: str
    p: F64
    lo: F64 | None = None
    hi: F64 | None = None


def evaluate(
    lake: Lake,
    start: dt.date | None = None,
    end: dt.date | None = None,
    *,
    embargo_days: int = EMBARGO_DAYS,
    window_days: int = vectors.DEFAULT_WINDOW_DAYS,
    min_train_days: int = MIN_TRAIN_DAYS,
    served: KnnConfig | None = None,
    recalibration: str = SERVED.recalibration,
    interval_cap: float | None = SERVED.interval_max_total,
    boosted: bool = True,
    retrain_every: int = RETRAIN_EVERY,
    run_ablation: bool = True,
    sweep: Sequence[KnnConfig] = (),
    oracle_window_s: float = ORACLE_WINDOW_S,
    run_id: str | None = None,
    write: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Evaluate the kNN walk-forward on committed gold and (by default) write the report to the lake.

    Test days: committed gold dates in ``[start, end]`` (open ends = all) having at least
    ``min_train_days`` earlier gold dates before their cutoff. ``served`` is the setting the API
    uses (default: :mod:`spymaster.retrieval.calibration`'s recommendation); the published baseline
    (k 50, ≤ 2/day, similarity⁴, 60-day decay, prior 2.5, all groups) is always evaluated next to it.
    ``sweep`` adds more settings (compared by log loss in a table).
    """
    say = progress or (lambda _m: None)
    t_start = time.perf_counter()
    run = run_id or new_run_id()
    all_dates = [d for d in committed_dates(lake, Layer.GOLD, EPISODES_TABLE) if end is None or d <= end]
    ep = load_episodes(lake, all_dates)
    have = set(np.unique(ep.day).tolist())
    test_dates = []
    for d in all_dates:
        if start is not None and d < start:
            continue
        cut = day_number(cutoff_date(d, embargo_days))
        if sum(1 for x in have if x < cut) >= min_train_days and test_rows(ep, d).size:
            test_dates.append(d)
    if not test_dates:
        raise ValueError(
            f"no test dates in [{start}, {end}] with {min_train_days} gold dates before the embargo cutoff"
        )
    say(f"{len(test_dates)} test dates {test_dates[0]} … {test_dates[-1]}, {ep.n} episodes loaded")

    published = KnnConfig.of("kNN published")
    if served is None:
        served = KnnConfig.of(
            "kNN recommended",
            k=SERVED.k,
            max_per_day=SERVED.max_per_day,
            params=calibration.RECOMMENDED_PARAMS,
            weights=SERVED.weights,
            pooled_prior=SERVED.pooled_prior,
        )
    configs = [published, served, *(c for c in sweep if c.name not in (published.name, served.name))]
    wf = walk_forward(
        ep, test_dates, configs, embargo_days=embargo_days, window_days=window_days, progress=say
    )
    rows = wf.rows
    y = ep.is_break[rows]
    tday = ep.day[rows].astype(np.int64)

    # baselines
    base_p = partition_rate(ep, test_dates, embargo_days=embargo_days)
    tod_p = time_of_day_rate(ep, test_dates, embargo_days=embargo_days)
    all_p = overall_rate(ep, test_dates, embargo_days=embargo_days)
    hgb_p = (
        boosted_forecast(ep, test_dates, embargo_days=embargo_days, retrain_every=retrain_every)
        if boosted
        else None
    )
    say("baselines done")

    # oracle
    truth = load_truth(lake, test_dates)
    p_true = (
        match_truth(ep, rows, truth, window_s=oracle_window_s)
        if truth is not None
        else np.full(rows.size, np.nan)
    )

    ests: list[_Est] = [
        _Est("overall rate", all_p),
        _Est("partition base rate", base_p),
        _Est("time-of-day rate", tod_p),
    ]
    if hgb_p is not None:
        ests.append(_Est("boosted (HGB)", hgb_p))
    # recalibration on past days (before/after), for both settings
    for c in (published, served):
        fc = wf.knn[c.name]
        ests.append(_Est(f"{c.name} raw", fc.p_break, fc.lo, fc.hi))
        for method in ("isotonic", "platt"):
            rc = calibration.walk_forward(
                fc.p_break, y, tday, fc.total, wf.cutoffs, method=method, level=c.params.interval
            )
            ests.append(_Est(f"{c.name} + {method}", rc.p, rc.lo, rc.hi))
    # the served forecast: the served setting, its recalibration (if any) and its interval cap
    fs = wf.knn[served.name]
    final = calibration.walk_forward(
        fs.p_break,
        y,
        tday,
        fs.total,
        wf.cutoffs,
        method=recalibration,
        level=served.params.interval,
        cap=interval_cap,
    )
    served_name = SERVED_NAME
    served_raw = f"{served.name} raw"
    ests.append(_Est(served_name, final.p, final.lo, final.hi))
    final_map = calibration.fit(fs.p_break, y, recalibration)
    caps: list[dict[str, Any]] = []
    for cap in (None, 20.0, 10.0, 6.0, 4.0, 3.0, 2.5, 2.0):
        iv = calibration.intervals(final.p, fs.total, served.params.interval, cap)
        caps.append(
            {
                "cap": cap,
                "oracle_coverage": interval_coverage(iv[:, 0], iv[:, 1], p_true),
                "decile_coverage": decile_coverage(final.p, iv[:, 0], iv[:, 1], y),
                "mean_width": float(np.mean(iv[:, 1] - iv[:, 0])) if rows.size else math.nan,
            }
        )
    for c in sweep:
        if c.name in wf.knn and c.name not in (published.name, served.name):
            fc = wf.knn[c.name]
            ests.append(_Est(f"sweep {c.name}", fc.p_break, fc.lo, fc.hi))
    by_name = {e.name: e for e in ests}

    grp = groups(ep, rows)
    table: dict[str, dict[str, Scores]] = {}
    for gname, m in grp:
        table[gname] = {}
        for e in ests:
            if e.name.startswith("sweep ") and gname != "all":
                continue
            table[gname][e.name] = scores(
                e.p[m],
                y[m],
                None if e.lo is None else e.lo[m],
                None if e.hi is None else e.hi[m],
                p_true[m] if e.lo is not None else None,
            )
    say("scores done")

    # ablation
    abl: tuple[list[AblationStep], dict[str, float], list[AblationStep]] | None = None
    if run_ablation:
        abl = ablation(
            ep,
            test_dates,
            base=replace(served, name="ablation"),
            embargo_days=embargo_days,
            window_days=window_days,
            progress=say,
        )

    # oracle table
    matched = np.isfinite(p_true)
    oracle: dict[str, Any] = {"n_matched": int(matched.sum())}
    if matched.any():
        ym = y[matched]
        oracle["rows"] = {
            "oracle (planted p_break)": {
                "brier": brier(p_true[matched], ym),
                "log_loss": log_loss(p_true[matched], ym),
            }
        }
        for e in ests:
            if e.name.startswith("sweep "):
                continue
            oracle["rows"][e.name] = {
                "brier": brier(e.p[matched], ym),
                "log_loss": log_loss(e.p[matched], ym),
            }
        oracle["rate"] = float(ym.mean())
        # what knowing the planted probability is worth over all test episodes: the planted p where
        # it is known, a baseline elsewhere
        oracle["share_matched"] = float(matched.mean())
        oracle["mixtures"] = {}
        for label, other in (("time-of-day rate", tod_p), ("boosted (HGB)", hgb_p)):
            if other is None:
                continue
            mix = np.where(matched, p_true, other)
            oracle["mixtures"][label] = {
                "brier": brier(mix, y),
                "skill_vs_partition": skill(brier(mix, y), brier(base_p, y)),
                "skill_vs_time_of_day": skill(brier(mix, y), brier(tod_p, y)),
            }

    # plots
    pngs: dict[str, bytes] = {}
    rel_curves = {
        n: (by_name[n].p, y)
        for n in ("partition base rate", "boosted (HGB)", f"{published.name} raw", served_raw, served_name)
        if n in by_name
    }
    pngs["reliability.png"] = reliability_png(rel_curves)
    pngs["lift.png"] = lift_png(
        {
            n: (by_name[n].p, y)
            for n in ("boosted (HGB)", f"{published.name} raw", served_name)
            if n in by_name
        }
    )
    if matched.any():
        s = by_name[served_name]
        assert s.lo is not None
        assert s.hi is not None
        pngs["coverage.png"] = coverage_png(p_true[matched], s.p[matched], s.lo[matched], s.hi[matched])

    metrics: dict[str, Any] = {
        "run_id": run,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "start": start.isoformat() if start else None,
        "end": end.isoformat() if end else None,
        "test_dates": [d.isoformat() for d in test_dates],
        "n_test": int(rows.size),
        "embargo_days": embargo_days,
        "window_days": window_days,
        "horizon_min": PRIMARY_HORIZON_MIN,
        "served": {
            "name": served.name,
            "k": served.k,
            "max_per_day": served.max_per_day,
            "params": served.params.__dict__,
            "weights": dict(served.weights),
            "pooled_prior": served.pooled_prior,
            "recalibration": recalibration,
            "interval_total_cap": interval_cap,
        },
        "published": {
            "k": published.k,
            "max_per_day": published.max_per_day,
            "params": published.params.__dict__,
        },
        "scores": {g: {e: s.as_dict() for e, s in v.items()} for g, v in table.items()},
        "oracle": oracle,
        "ablation": None
        if abl is None
        else {
            "steps": [a.__dict__ for a in abl[0]],
            "recommended_weights": abl[1],
            "references": [a.__dict__ for a in abl[2]],
        },
        "calibration_map": final_map.to_json(),
        "interval_caps": caps,
        "seconds": None,
    }
    floors = {gname: ece_floor(by_name[served_name].p[m], draws=100) for gname, m in grp}
    goals = _goals(
        table,
        served_name,
        "partition base rate",
        "time-of-day rate",
        "boosted (HGB)" if boosted else None,
        floors,
    )
    metrics["ece_noise_floor"] = floors
    metrics["goals"] = goals
    metrics["seconds"] = round(time.perf_counter() - t_start, 1)
    md = _markdown(
        metrics,
        table,
        grp,
        ests,
        served=served,
        published=published,
        served_name=served_name,
        served_raw=served_raw,
        recalibration=recalibration,
        abl=abl,
        oracle=oracle,
        sweep=[c for c in sweep if c.name in wf.knn],
        pngs=sorted(pngs),
    )
    files = {
        "report": paths.report_path(run, "report.md"),
        "metrics": paths.report_path(run, "metrics.json"),
        **{n.removesuffix(".png"): paths.report_path(run, n) for n in pngs},
        "latest": paths.latest_path(),
    }
    if write:
        for n, data in pngs.items():
            lake.write_bytes(paths.report_path(run, n), data)
        lake.write_bytes(
            files["metrics"], json.dumps(_clean(metrics), indent=1, sort_keys=True, allow_nan=False).encode()
        )
        lake.write_bytes(files["report"], md.encode())
        lake.write_json(
            paths.latest_path(),
            {
                "run_id": run,
                "created_at": metrics["created_at"],
                "start": metrics["start"],
                "end": metrics["end"],
                "report": files["report"],
                "metrics": files["metrics"],
                "plots": {n.removesuffix(".png"): paths.report_path(run, n) for n in pngs},
            },
        )
    say(f"evaluation done in {metrics['seconds']} s")
    return Report(run, md, metrics, files, pngs)


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _goals(
    table: Mapping[str, Mapping[str, Scores]],
    served: str,
    base: str,
    tod: str,
    hgb: str | None,
    floors: Mapping[str, float],
) -> list[dict[str, Any]]:
    overall = table["all"]
    s = overall[served]
    out: list[dict[str, Any]] = []
    for ref, label in ((base, "partition base rate"), (tod, "time-of-day rate")):
        v = skill(s.brier, overall[ref].brier)
        out.append(
            {"goal": f"Brier skill over the {label}", "target": "≥ 5 %", "value": v, "met": bool(v >= 0.05)}
        )
    big = [(g, sc[served]) for g, sc in table.items() if sc[served].n >= 500]
    worst = max((x.ece for _, x in big), default=math.nan)
    out.append(
        {
            "goal": f"ECE in every group with ≥ 500 test episodes ({len(big)} groups, worst shown)",
            "target": "≤ 0.02",
            "value": worst,
            "met": bool(big) and bool(worst <= 0.02),
            "detail": {g: {"ece": x.ece, "noise_floor": floors.get(g)} for g, x in big},
        }
    )
    cov = s.oracle_coverage
    out.append(
        {
            "goal": f"80 % interval coverage (oracle, {s.n_oracle} matched episodes)",
            "target": "78–82 %",
            "value": cov,
            "met": None if cov is None else bool(0.78 <= cov <= 0.82),
        }
    )
    if hgb is not None:
        ratio = s.log_loss / overall[hgb].log_loss
        out.append(
            {
                "goal": "kNN log loss within 10 % of the boosted classifier's (ratio)",
                "target": "≤ 1.10",
                "value": ratio,
                "met": bool(ratio <= 1.10),
            }
        )
    return out


def _markdown(
    metrics: Mapping[str, Any],
    table: Mapping[str, Mapping[str, Scores]],
    grp: Sequence[tuple[str, B1]],
    ests: Sequence[_Est],
    *,
    served: KnnConfig,
    published: KnnConfig,
    served_name: str,
    served_raw: str,
    recalibration: str,
    abl: tuple[list[AblationStep], dict[str, float], list[AblationStep]] | None,
    oracle: Mapping[str, Any],
    sweep: Sequence[KnnConfig],
    pngs: Sequence[str],
) -> str:
    td = metrics["test_dates"]
    overall = table["all"]
    base = overall["partition base rate"]
    tod = overall["time-of-day rate"]
    md: list[str] = [
        f"# Walk-forward evaluation — run `{metrics['run_id']}`",
        "",
        f"P(BREAK) at the {PRIMARY_HORIZON_MIN}-minute horizon on **{metrics['n_test']} test episodes** over "
        f"**{len(td)} test days** ({td[0]} … {td[-1]}). Embargo: a forecast for day T uses only dates "
        f"strictly before the trading day {metrics['embargo_days']} trading day(s) before T "
        f"(neighbours, normalisation — refitted per test day on the last {metrics['window_days']} such dates — "
        "base rates, the boosted classifier and the recalibration map).",
        "",
        f"* **{served_name}** (the goals are judged on it) = {served.name}: {served.describe()}; "
        f"recalibration on past test days: {recalibration}; interval pseudo-count cap: "
        f"{metrics['served']['interval_total_cap'] or 'none'}",
        f"* {published.name} (the published baseline): {published.describe()}",
        f"* run time {metrics['seconds']} s",
        "",
        "## Goals",
        "",
    ]
    grows = []
    for g in metrics["goals"]:
        v = g["value"]
        val = _f(v, 3) if "ratio" in g["goal"] or "ECE" in g["goal"] else _pct(v)
        status = "n/a (no planted truth)" if g["met"] is None else "**met**" if g["met"] else "not met"
        grows.append([g["goal"], g["target"], val, status])
    md += [_table(["goal", "target", "measured", "status"], grows), ""]

    heads = [
        "estimator",
        "mean p",
        "Brier",
        "skill vs partition",
        "skill vs time-of-day",
        "log loss",
        "ECE",
        "AUC",
        "top-decile lift",
        "80 % cov. (oracle)",
        "80 % cov. (decile)",
    ]
    rows = []
    for e in ests:
        if e.name.startswith("sweep "):
            continue
        s = overall[e.name]
        rows.append(
            [
                e.name,
                _f(s.mean_p, 3),
                _f(s.brier),
                _pct(skill(s.brier, base.brier)),
                _pct(skill(s.brier, tod.brier)),
                _f(s.log_loss),
                _f(s.ece),
                _f(s.auc, 3),
                _f(s.lift, 2),
                _pct(s.oracle_coverage),
                _pct(s.coverage),
            ]
        )
    md += [f"## All test episodes (BREAK rate {_pct(base.rate)})", "", _table(heads, rows), ""]
    for name in pngs:
        md += [f"![{name}]({name})", ""]

    heads = [
        "group",
        "n",
        "BREAK rate",
        "Brier",
        "skill vs partition",
        "skill vs time-of-day",
        "log loss",
        "LL ÷ HGB",
        "ECE",
        "ECE noise floor",
        "AUC",
        "lift",
        "cov. (oracle)",
        "cov. (decile)",
    ]
    rows = []
    for gname, _m in grp:
        sc = table[gname]
        s = sc[served_name]
        h = sc.get("boosted (HGB)")
        rows.append(
            [
                gname,
                str(s.n),
                _pct(s.rate),
                _f(s.brier),
                _pct(skill(s.brier, sc["partition base rate"].brier)),
                _pct(skill(s.brier, sc["time-of-day rate"].brier)),
                _f(s.log_loss),
                _f(s.log_loss / h.log_loss, 3) if h else "–",
                _f(s.ece),
                _f(metrics["ece_noise_floor"].get(gname)),
                _f(s.auc, 3),
                _f(s.lift, 2),
                _pct(s.oracle_coverage),
                _pct(s.coverage),
            ]
        )
    md += [f"## Per group — {served_name}", "", _table(heads, rows), ""]

    short = (
        "overall rate",
        "partition base rate",
        "time-of-day rate",
        "boosted (HGB)",
        f"{published.name} raw",
        served_raw,
        served_name,
    )
    names = [e.name for e in ests if e.name in short]
    rows = [
        [gname, str(table[gname][served_name].n), *(_f(table[gname][n].brier) for n in names)]
        for gname, _ in grp
    ]
    md += ["## Per group — Brier", "", _table(["group", "n", *names], rows), ""]
    rows = [
        [gname, str(table[gname][served_name].n), *(_f(table[gname][n].ece) for n in names)]
        for gname, _ in grp
    ]
    md += ["## Per group — ECE", "", _table(["group", "n", *names], rows), ""]

    cal_names = [
        *(f"{c.name} {m}" for c in (published, served) for m in ("raw", "+ isotonic", "+ platt")),
        served_name,
    ]
    rows = []
    for n in cal_names:
        s = overall[n]
        rows.append(
            [
                n,
                _f(s.brier),
                _f(s.log_loss),
                _f(s.ece),
                _f(s.mean_p, 3),
                _pct(s.oracle_coverage),
                _pct(s.coverage),
            ]
        )
    md += [
        "## Calibration before / after",
        "",
        f"{published.name} → {served.name}: the fix where the miscalibration arises (the prior's partition "
        "base rate), then a recalibration map (isotonic or Platt) refitted for every test day on the "
        "(forecast, outcome) pairs of earlier test days before its cutoff (fewer than "
        f"{calibration.DEFAULT_MIN_ROWS} such pairs: unchanged); after a map the interval is the Beta interval "
        "around the new mean with the same pseudo-count.",
        "",
        _table(
            ["estimator", "Brier", "log loss", "ECE", "mean forecast", "cov. (oracle)", "cov. (decile)"], rows
        ),
        "",
    ]
    caps = metrics["interval_caps"]
    rows = [
        [
            "none" if c["cap"] is None else f"{c['cap']:g}",
            _pct(c["oracle_coverage"]),
            _pct(c["decile_coverage"]),
            _f(c["mean_width"], 3),
        ]
        for c in caps
    ]
    md += [
        f"## 80 % interval width against coverage ({served_name})",
        "",
        "The interval is Beta(p·N, (1 − p)·N) with N = n_eff + prior strength, optionally capped: it narrows "
        "with more neighbours, whereas the episode's own probability is only as knowable as the features allow.",
        "",
        _table(["N cap", "cov. (oracle)", "cov. (decile)", "mean width"], rows),
        "",
    ]
    if abl is not None:
        steps, weights, refs = abl
        rows = [
            [
                a.step,
                ", ".join(a.groups),
                _f(a.log_loss),
                _f(a.brier),
                _f(a.delta, 5),
                _f(a.delta_se, 5),
                "kept" if a.kept else "dropped",
            ]
            for a in steps
        ]
        rows += [
            [a.step, "all", _f(a.log_loss), _f(a.brier), _f(a.delta, 5), _f(a.delta_se, 5), "reference"]
            for a in refs
        ]
        md += [
            "## Feature-group ablation (forward selection by log loss, raw kNN)",
            "",
            _table(
                ["step", "groups", "log loss", "Brier", "Δ log loss vs best", "SE of Δ (days)", "decision"],
                rows,
            ),
            "",
            "This run's forward selection keeps: `" + json.dumps(dict(weights)) + "` (the served "
            "setting uses `SERVED.weights`, decided on two lakes: docs/EVALUATION.md).",
            "",
        ]
    if sweep:
        rows = []
        for c in sorted(
            sweep,
            key=lambda c: overall[f"sweep {c.name}"].log_loss if f"sweep {c.name}" in overall else math.inf,
        ):
            key = f"sweep {c.name}"
            if key not in overall:
                continue
            s = overall[key]
            rows.append(
                [
                    c.name,
                    str(c.k),
                    str(c.max_per_day),
                    f"{c.params.similarity_power:g}",
                    f"{c.params.prior_strength:g}",
                    f"{c.pooled_prior:g}",
                    _f(s.log_loss),
                    _f(s.brier),
                    _f(s.ece),
                    _f(s.auc, 3),
                ]
            )
        md += [
            "## Parameter sweep (raw kNN, all test episodes, best log loss first)",
            "",
            _table(
                ["setting", "k", "≤/day", "power", "prior", "pooled", "log loss", "Brier", "ECE", "AUC"],
                rows,
            ),
            "",
        ]
    if oracle.get("n_matched"):
        orow = [[n, _f(v["brier"]), _f(v["log_loss"])] for n, v in oracle["rows"].items()]
        md += [
            f"## Oracle (planted rule) on {oracle['n_matched']} matched episodes (BREAK rate {_pct(oracle['rate'])})",
            "",
            "An episode is matched to a planted interaction of the same date, level kind and direction "
            "whose approach holds its anchor (start ≤ anchor ≤ arrival, arrival ≤ "
            f"{ORACLE_WINDOW_S} s after the anchor); the oracle forecasts its planted `p_break`.",
            "",
            _table(["estimator", "Brier", "log loss"], orow),
            "",
        ]
        mrows = [
            [
                f"planted p_break where matched, {label} elsewhere",
                _f(v["brier"]),
                _pct(v["skill_vs_partition"]),
                _pct(v["skill_vs_time_of_day"]),
            ]
            for label, v in oracle["mixtures"].items()
        ]
        md += [
            f"Only {_pct(oracle['share_matched'])} of the test episodes are planted interactions; the rest are "
            "free-walk touches that the planted rule says nothing about. What knowing the planted "
            "probability is worth over all test episodes:",
            "",
            _table(["forecast", "Brier", "skill vs partition", "skill vs time-of-day"], mrows),
            "",
        ]
    md += [
        "## Definitions",
        "",
        "* Brier = mean (p − y)²; log loss = −mean[y ln p + (1 − y) ln(1 − p)], p clipped to [1e-6, 1 − 1e-6]; "
        "skill = 1 − Brier ÷ reference Brier.",
        "* ECE = Σ_b n_b/n · |mean p_b − rate_b| over 10 equal-width bins of p.",
        "* Top-decile lift = BREAK rate of the ⌈n/10⌉ highest forecasts ÷ overall BREAK rate.",
        "* 80 % coverage (oracle) = share of oracle-matched episodes whose planted p_break lies in the reported "
        "interval; (decile, a proxy for real data, not judged) = share of episodes whose interval holds the realised BREAK "
        "rate of their decile of forecasts — near 100 % whenever intervals are wider than the deciles' sampling noise.",
        "* ECE noise floor = mean ECE of a perfectly calibrated forecaster issuing the same forecasts (outcomes drawn "
        "Bernoulli(p), 100 draws): the ECE sampling noise alone gives at that group's size.",
        "* Baselines: partition base rate = the kNN prior mean (partition's training labels shrunk toward 1/1/0.5); "
        "time-of-day = 15-minute slots after 09:30 over all partitions; HGB = HistGradientBoostingClassifier on the raw "
        "vector + partition keys + minutes since the open, retrained every few test days.",
        "",
    ]
    return "\n".join(md)

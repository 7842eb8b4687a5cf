"""The similarity query engine: numpy in, dataclasses out, no I/O.

Design (figures in ``bench/bench_query.py``; the issue measured LanceDB prefiltered exact search at
≈ 73 ms p50 on local disk and ≈ 341 ms on a local S3 endpoint, numpy exact search over a 12 k-row
partition at ≈ 0.2 ms):

* **Partitions in memory.** Each (level_kind, direction, time_bucket) partition is one float32
  matrix ``[n, D]`` of *unit-normalised* rows sorted by (date, ts, episode_id), plus its metadata
  arrays (dates, stamps, ids, labels and excursions per horizon, cumulative label counts). The
  service builds them once per table version; a query never touches storage.
* **As-of cut.** Rows are sorted by date, so "strictly before ``as_of``" is the prefix
  ``[0, searchsorted(day, as_of, "left"))``: a row of the query date or later is outside the
  slice the similarity is even computed on, so it cannot be returned.
* **Similarity: weighted cosine.** ``sim(x, y) = Σ g_d x_d y_d / (‖x‖_g ‖y‖_g)`` with
  ``‖x‖_g = sqrt(Σ g_d x_d²)`` and ``g`` the per-dimension weights of the feature groups
  (``vectors.group_weights``; a group weight multiplies that group's share of the inner product and
  of both norms; 0 ablates the group). Cosine rather than 1/(1+L2): the stored vectors are robust
  z-scores clipped to ±5, whose norms vary with how extreme a state is; cosine compares the *shape*
  of the state across all groups and lies in [−1, 1], so ``similarity⁴`` is a well-scaled kernel.
  Cosine is scale-invariant, so only unit rows are stored; with non-default weights the rows'
  weighted norms are computed once per weight vector and cached on the partition. Negative
  similarities get weight 0 (an even power would otherwise reward opposite states).
* **Exact top-k with a per-day cap.** ``argpartition`` picks a candidate pool (every row at least
  as similar as the pool's m-th best, so ties at the boundary are all in it), sorted by similarity
  (ties: older row first); a greedy pass keeps at most ``max_per_day`` rows per date; the pool
  grows ×4 until ``k`` are kept or the partition is exhausted. The result equals a greedy pass
  over the fully sorted partition: recall@k = 1.0 by construction.
* **Distribution** (the published baseline, every constant a parameter, see :class:`Params`):
  weights ``w_i = max(sim_i, 0)^4 · exp(−age_i / 60 d)`` (age = ``as_of`` − the neighbour's date,
  in calendar days); similarity-weighted counts ``C_k = Σ w_i·1[label_i = k]``; a Dirichlet prior
  ``α_k = α · π_k`` with total strength ``α = 2.5`` (the published 1 + 1 + 0.5) and ``π`` the
  partition's base rate — label counts ``B_k`` of its labelled rows strictly before ``as_of`` —
  itself shrunk toward the published split ``d = (1, 1, 0.5)``: ``π_k = (B_k + d_k) / (ΣB + Σd)``.
  With no earlier rows the prior is exactly the published 1 / 1 / 0.5; with many it is the base
  rate; and a class not yet seen in a few earlier rows keeps a non-zero prior (a plain
  ``α · base_rate`` would give it p = 0 and a zero-width interval after a handful of rows).
* **Pooled prior** (``Params.pooled_prior`` = m > 0, the served setting): the partition's rate is
  shrunk toward the split of *all* partitions' labelled rows strictly before ``as_of`` instead, with
  m pseudo-counts: ``d = m · s`` (:func:`pooled_params`). The pooled split is itself shrunk toward
  the published split: ``s_k = (P_k + d⁰_k) / (ΣP + Σd⁰)`` with ``P`` the pooled label counts
  (:meth:`Index.pooled_counts`) and ``d⁰ = Params.default_prior`` — so with no earlier rows at all
  the prior is still the published 1 / 1 / 0.5, and no class gets a zero prior even when every
  earlier row of the whole table had one label (then ``p`` would reach 1.0 with a zero-width
  interval). With thousands of pooled rows ``s`` is the pooled split to within ``Σd⁰ / ΣP``.
* Posterior mean ``p_k = (C_k + α_k) / (Σw + α)``; effective sample size ``n_eff = (Σw)² / Σw²``;
  the 80 % interval is the 10 % / 90 % quantiles of the Beta marginal ``Beta(p_k·N, (1 − p_k)·N)``
  of a Dirichlet with mean ``p`` and total pseudo-count ``N = n_eff + α`` — the weighted evidence
  rescaled to its effective sample size, so the interval's Beta has the reported ``p`` as its mean
  and narrows like a sample of ``n_eff`` episodes (``scipy.special.betaincinv``, the Beta ppf).
  ``Params.interval_max_total`` caps ``N`` (the served setting: 2.5, see docs/EVALUATION.md — the
  interval is about "the probability of this situation", whose spread across similar-looking
  situations does not shrink with more neighbours). Since every ``α_k > 0``, ``0 < p_k < 1`` and
  every interval has positive width.
  Expected excursions are the ``w``-weighted means of the neighbours' ``mfe``/``mae`` at the horizon
  (ATR units). A partition with no earlier rows answers with the prior (``n = 0``).
* Rows whose label at the chosen horizon is null (the horizon not covered by bars) are neither
  neighbours nor part of the base rate at that horizon.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from scipy.special import betaincinv

from spymaster.outcomes import HORIZONS_MIN, OUTCOMES, PRIMARY_HORIZON_MIN, horizon_index

__all__ = [
    "DEFAULT_EMA_ALPHA",
    "Answer",
    "Distribution",
    "Hits",
    "Index",
    "Neighbour",
    "Params",
    "Partition",
    "beta_interval",
    "distribution",
    "ema",
    "ema_step",
    "finite_or_none",
    "pooled_params",
    "posterior",
    "prior_mean",
    "query",
    "search",
    "weighted_similarity",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DEFAULT_EMA_ALPHA = 0.5
"""EMA weight of the newest bar in the smoothed signal (half-life one 2-minute bar)."""


@dataclass(frozen=True)
class Params:
    """Kernel, prior and interval of the outcome distribution (defaults: the published baseline).

    The API serves ``calibration.SERVED_PARAMS`` (the evaluation's recommendation: a pooled prior
    and a capped interval); ``Params()`` stays the published baseline the evaluation compares with.
    """

    similarity_power: float = 4.0
    decay_days: float = 60.0
    prior_strength: float = 2.5
    default_prior: tuple[float, float, float] = (1.0, 1.0, 0.5)
    """Pseudo-counts (BREAK, REJECT, CHOP) the base rate is shrunk toward: the published prior
    (with ``pooled_prior`` > 0: what the pooled split is shrunk toward)."""
    interval: float = 0.8
    pooled_prior: float = 0.0
    """> 0: shrink the base rate toward the pooled split of all partitions' rows before as_of with
    this many pseudo-counts instead of toward ``default_prior`` (see :func:`pooled_params`)."""
    interval_max_total: float | None = None
    """Upper bound on the interval's Beta total N = n_eff + prior strength (None: no cap)."""

    def __post_init__(self) -> None:
        if not (self.prior_strength > 0 and self.decay_days > 0 and self.similarity_power >= 0):
            raise ValueError("prior strength and decay must be positive, the power non-negative")
        if not 0 < self.interval < 1:
            raise ValueError("interval must be in (0, 1)")
        if min(self.default_prior) < 0 or sum(self.default_prior) <= 0:
            raise ValueError("default prior must be non-negative with a positive sum")
        if not (math.isfinite(self.pooled_prior) and self.pooled_prior >= 0):
            raise ValueError("pooled prior must be finite and non-negative")
        if self.interval_max_total is not None and not (
            math.isfinite(self.interval_max_total) and self.interval_max_total > 0
        ):
            raise ValueError("interval_max_total must be positive (or None)")

    def interval_total(self, n_eff: float) -> float:
        """The interval's Beta total: ``n_eff + prior_strength``, capped at ``interval_max_total``."""
        total = n_eff + self.prior_strength
        return total if self.interval_max_total is None else min(total, self.interval_max_total)


def pooled_params(params: Params, pooled_counts: npt.ArrayLike | None) -> Params:
    """The ``Params`` of one query given the pooled label counts ``P`` of rows before its as_of.

    With ``params.pooled_prior`` = m > 0 and counts given: ``default_prior = m · (P + d⁰) / (ΣP + Σd⁰)``
    (``d⁰`` = ``params.default_prior``) and ``pooled_prior`` 0 (applied); otherwise ``params``.
    """
    if params.pooled_prior <= 0 or pooled_counts is None:
        return params
    c = np.asarray(pooled_counts, dtype=np.float64).reshape(-1)
    if c.shape != (len(OUTCOMES),) or np.any(c < 0) or not np.all(np.isfinite(c)):
        raise ValueError("pooled counts are three non-negative numbers (BREAK, REJECT, CHOP)")
    d0 = np.asarray(params.default_prior, dtype=np.float64)
    split = (c + d0) / (c.sum() + d0.sum())
    b, r, ch = (float(params.pooled_prior * v) for v in split)
    return replace(params, default_prior=(b, r, ch), pooled_prior=0.0)


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
    cum: npt.NDArray[np.int32] = field(init=False)
    """[len(HORIZONS_MIN), n + 1, 3] label counts of rows [0, i)."""
    _norms: dict[bytes, F32] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        n = self.day.shape[0]
        if self.unit.shape[0] != n or self.labels.shape != (len(HORIZONS_MIN), n):
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


# -- similarity and top-k --------------------------------------------------------------------------


def weighted_similarity(
    unit: F32, query: npt.ArrayLike, g: F32 | None = None, norms: F32 | None = None
) -> F64:
    """Weighted cosine of each row of ``unit`` with ``query`` (0 where either norm is 0).

    ``norms`` are the rows' weighted norms (``Partition.weighted_norms(g)``), computed if omitted.
    """
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != unit.shape[1]:
        raise ValueError(f"query has {q.shape[0]} dims, rows have {unit.shape[1]}")
    if unit.shape[0] == 0:
        return np.zeros(0)
    if g is None:
        qn = float(np.linalg.norm(q))
        if qn == 0:
            return np.zeros(unit.shape[0])
        return (unit @ (q / qn)).astype(np.float64)
    g = np.asarray(g, dtype=np.float32)
    qn = float(np.sqrt(np.dot(g, q * q)))
    if qn == 0:
        return np.zeros(unit.shape[0])
    if norms is None:
        norms = np.sqrt(np.einsum("ij,ij,j->i", unit, unit, g)).astype(np.float32)
    dots = (unit @ (q * g)).astype(np.float64)
    den = norms.astype(np.float64) * qn
    out: F64 = np.divide(dots, den, out=np.zeros_like(dots), where=den > 0)
    return np.clip(out, -1.0, 1.0)


@dataclass(frozen=True)
class Hits:
    """Selected rows of a partition, best first."""

    rows: I64
    similarity: F64
    candidates: int
    """Labelled rows strictly before as_of (the rows searched)."""


def _capped(order: I64, day: npt.NDArray[np.int32], max_per_day: int) -> I64:
    """The rows of ``order`` (best first) kept by a greedy pass allowing ``max_per_day`` per day."""
    d = day[order]
    by_day = np.argsort(d, kind="stable")  # within a day, keeps the similarity order
    ds = d[by_day]
    starts = np.r_[True, ds[1:] != ds[:-1]] if ds.size else np.zeros(0, dtype=bool)
    pos = np.arange(ds.size)
    first = np.maximum.accumulate(np.where(starts, pos, 0)) if ds.size else pos
    occ = np.empty(ds.size, dtype=np.int64)
    occ[by_day] = pos - first
    out: I64 = order[occ < max_per_day]
    return out


def search(
    part: Partition,
    query_vec: npt.ArrayLike,
    *,
    as_of_day: int,
    k: int,
    max_per_day: int,
    horizon: int = PRIMARY_HORIZON_MIN,
    dim_weights: F32 | None = None,
) -> Hits:
    """Exact top-``k`` rows dated strictly before ``as_of_day`` with at most ``max_per_day`` per date."""
    if k < 1 or max_per_day < 1:
        raise ValueError("k and max_per_day must be at least 1")
    h = horizon_index(horizon)
    cut = part.rows_before(as_of_day)
    unit = part.unit[:cut]
    norms = part.weighted_norms(dim_weights)[:cut] if dim_weights is not None else None
    sims = weighted_similarity(unit, query_vec, dim_weights, norms)
    valid = part.labels[h, :cut] >= 0
    n_valid = int(valid.sum())
    empty = Hits(np.zeros(0, np.int64), np.zeros(0), n_valid)
    if n_valid == 0:
        return empty
    neg = np.where(valid, -sims, np.inf)  # ascending = best first; unlabelled rows last
    m = min(n_valid, max(2 * k, k + 16))
    while True:
        if m < cut:
            kth = np.partition(neg, m - 1)[m - 1]
            pool = np.flatnonzero(neg <= kth)
        else:
            pool = np.flatnonzero(valid)
        pool = pool[np.isfinite(neg[pool])]
        order = pool[np.lexsort((pool, neg[pool]))]
        kept = _capped(order, part.day, max_per_day)[:k]
        if kept.size == k or m >= n_valid:
            return Hits(kept.astype(np.int64), sims[kept], n_valid)
        m = min(n_valid, m * 4)


# -- the distribution ------------------------------------------------------------------------------


def beta_interval(p: npt.ArrayLike, total: float, level: float = 0.8) -> F64:
    """Central ``level`` interval of Beta(p·total, (1 − p)·total) per entry of ``p``: [len(p), 2]."""
    pa_ = np.asarray(p, dtype=np.float64)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    out = np.zeros((pa_.size, 2))
    for i, pk in enumerate(pa_.tolist()):
        a, b = pk * total, (1 - pk) * total
        if total <= 0 or not math.isfinite(pk):
            out[i] = (0.0, 1.0)
        elif a <= 0:
            out[i] = (0.0, 0.0)
        elif b <= 0:
            out[i] = (1.0, 1.0)
        else:
            out[i] = (float(betaincinv(a, b, lo_q)), float(betaincinv(a, b, hi_q)))
    return out


@dataclass(frozen=True)
class Distribution:
    """The outcome distribution at one horizon; tuples are in ``OUTCOMES`` order."""

    horizon: int
    p: tuple[float, ...]
    interval: tuple[tuple[float, float], ...]
    counts: tuple[float, ...]
    """Kernel-weighted counts Σ w·1[label = k]."""
    n: int
    n_eff: float
    base_rate: tuple[float, ...]
    base_n: int
    """Labelled partition rows strictly before as_of (the base rate's sample)."""
    prior: tuple[float, ...]
    expected_mfe: float | None
    expected_mae: float | None

    def as_dict(self, values: Sequence[float]) -> dict[str, float]:
        return dict(zip(OUTCOMES, (float(v) for v in values), strict=True))


def prior_mean(base_counts: npt.ArrayLike, params: Params = Params()) -> F64:
    """π = (B + d) / (ΣB + Σd): the base rate shrunk toward the published split ``d``."""
    b = np.asarray(base_counts, dtype=np.float64)
    d = np.asarray(params.default_prior, dtype=np.float64)
    out: F64 = (b + d) / (b.sum() + d.sum())
    return out


def posterior(
    counts: npt.ArrayLike,
    w_sum: float,
    w_sq_sum: float,
    prior_split: npt.ArrayLike,
    params: Params = Params(),
) -> tuple[F64, F64, float, F64]:
    """(p, interval [3, 2], n_eff, prior α_k) from weighted counts and the prior's split π (sums to 1).

    The interval's Beta total is ``params.interval_total(n_eff)`` (``n_eff + α``, capped).
    """
    c = np.asarray(counts, dtype=np.float64)
    alpha = params.prior_strength * np.asarray(prior_split, dtype=np.float64)
    p = (c + alpha) / (w_sum + params.prior_strength)
    n_eff = w_sum * w_sum / w_sq_sum if w_sq_sum > 0 else 0.0
    interval = beta_interval(p, params.interval_total(n_eff), params.interval)
    return p, interval, n_eff, alpha


def _weighted_mean(x: F64, w: F64) -> float | None:
    ok = np.isfinite(x)
    if not ok.any():
        return None
    ws = w[ok]
    if ws.sum() > 0:
        return float(np.dot(ws, x[ok]) / ws.sum())
    return float(x[ok].mean())


def distribution(
    part: Partition,
    hits: Hits,
    *,
    as_of_day: int,
    horizon: int = PRIMARY_HORIZON_MIN,
    params: Params = Params(),
    pooled_counts: npt.ArrayLike | None = None,
) -> tuple[Distribution, F64]:
    """The distribution of the hits' outcomes and each hit's kernel weight.

    ``pooled_counts``: label counts of all partitions' rows strictly before ``as_of_day`` at this
    horizon (:meth:`Index.pooled_counts`), used when ``params.pooled_prior`` > 0.
    """
    params = pooled_params(params, pooled_counts)
    h = horizon_index(horizon)
    rows = hits.rows
    age = (as_of_day - part.day[rows]).astype(np.float64)
    w = np.power(np.clip(hits.similarity, 0.0, None), params.similarity_power) * np.exp(
        -age / params.decay_days
    )
    lab = part.labels[h, rows].astype(np.int64)
    counts = np.bincount(lab, weights=w, minlength=len(OUTCOMES)).astype(np.float64)
    base = part.base_counts(horizon, part.rows_before(as_of_day)).astype(np.float64)
    base_n = int(base.sum())
    base_rate = base / base_n if base_n else np.asarray(params.default_prior) / sum(params.default_prior)
    p, interval, n_eff, prior = posterior(
        counts, float(w.sum()), float((w * w).sum()), prior_mean(base, params), params
    )
    dist = Distribution(
        horizon=horizon,
        p=tuple(float(v) for v in p),
        interval=tuple((float(lo), float(hi)) for lo, hi in interval),
        counts=tuple(float(v) for v in counts),
        n=int(rows.size),
        n_eff=float(n_eff),
        base_rate=tuple(float(v) for v in base_rate),
        base_n=base_n,
        prior=tuple(float(v) for v in prior),
        expected_mfe=_weighted_mean(part.mfe[h, rows], w),
        expected_mae=_weighted_mean(part.mae[h, rows], w),
    )
    return dist, w


@dataclass(frozen=True)
class Neighbour:
    row: int
    episode_id: str
    day: int
    ts: int
    similarity: float
    weight: float
    outcome: str | None
    mfe: float | None
    mae: float | None


@dataclass(frozen=True)
class Answer:
    neighbours: tuple[Neighbour, ...]
    distribution: Distribution


def finite_or_none(x: float | None) -> float | None:
    """A float, or None when it is missing, NaN or infinite (JSON has no NaN)."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def query(
    part: Partition,
    query_vec: npt.ArrayLike,
    *,
    as_of_day: int,
    k: int = 50,
    max_per_day: int = 2,
    horizon: int = PRIMARY_HORIZON_MIN,
    dim_weights: F32 | None = None,
    params: Params = Params(),
    pooled_counts: npt.ArrayLike | None = None,
) -> Answer:
    """Neighbours and outcome distribution of a (normalised) query vector within a partition."""
    hits = search(
        part,
        query_vec,
        as_of_day=as_of_day,
        k=k,
        max_per_day=max_per_day,
        horizon=horizon,
        dim_weights=dim_weights,
    )
    dist, w = distribution(
        part, hits, as_of_day=as_of_day, horizon=horizon, params=params, pooled_counts=pooled_counts
    )
    h = horizon_index(horizon)
    nb = tuple(
        Neighbour(
            row=int(r),
            episode_id=str(part.episode_id[r]),
            day=int(part.day[r]),
            ts=int(part.ts[r]),
            similarity=float(s),
            weight=float(wi),
            outcome=OUTCOMES[int(part.labels[h, r])] if part.labels[h, r] >= 0 else None,
            mfe=finite_or_none(float(part.mfe[h, r])),
            mae=finite_or_none(float(part.mae[h, r])),
        )
        for r, s, wi in zip(hits.rows.tolist(), hits.similarity.tolist(), w.tolist(), strict=True)
    )
    return Answer(nb, dist)


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
    ) -> Index:
        """Group rows into partitions (labels / mfe / mae are [len(HORIZONS_MIN), n])."""
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
            [f"{k}|{r}|{int(b)}" for k, r, b in zip(level_kind, direction, tb.tolist(), strict=True)],
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
            parts[key] = Partition(
                key=key,
                level_kind=kind,
                direction=direc,
                time_bucket=int(bucket),
                unit=unit_rows(vec[rows]),
                day=d[rows],
                ts=t[rows],
                episode_id=ids[rows],
                labels=lab[:, rows],
                mfe=fe[:, rows],
                mae=ae[:, rows],
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


# -- smoothing -------------------------------------------------------------------------------------


def ema(values: npt.ArrayLike, alpha: float = DEFAULT_EMA_ALPHA, reset: npt.ArrayLike | None = None) -> F64:
    """Exponential moving average along axis 0: s_0 = x_0, s_t = α·x_t + (1 − α)·s_{t−1};
    rows where ``reset`` is true restart the average (s_t = x_t)."""
    x = np.asarray(values, dtype=np.float64)
    out = np.empty_like(x)
    r = np.zeros(x.shape[0], dtype=bool) if reset is None else np.asarray(reset, dtype=bool)
    for i in range(x.shape[0]):
        out[i] = x[i] if i == 0 or r[i] else ema_step(x[i], out[i - 1], alpha)
    return out


def ema_step(x: F64, prev: F64, alpha: float = DEFAULT_EMA_ALPHA) -> F64:
    """One step of :func:`ema`: ``α·x + (1 − α)·prev`` (the served signals smooth bar by bar)."""
    out: F64 = alpha * x + (1 - alpha) * prev
    return out

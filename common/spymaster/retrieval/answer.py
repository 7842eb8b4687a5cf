"""The outcome distribution of a query's neighbours (and the whole answer, :func:`query`); no I/O.

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
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy.special import betaincinv

from spymaster.outcomes import OUTCOMES, PRIMARY_HORIZON_MIN, horizon_index
from spymaster.retrieval.index import F32, F64, Partition
from spymaster.retrieval.similarity import Hits, search

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
    return answer(
        part, hits, as_of_day=as_of_day, horizon=horizon, params=params, pooled_counts=pooled_counts
    )


def answer(
    part: Partition,
    hits: Hits,
    *,
    as_of_day: int,
    horizon: int = PRIMARY_HORIZON_MIN,
    params: Params = Params(),
    pooled_counts: npt.ArrayLike | None = None,
) -> Answer:
    """Neighbours and outcome distribution of hits found by either search (exact or ANN)."""
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

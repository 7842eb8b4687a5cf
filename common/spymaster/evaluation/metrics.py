"""Forecast metrics and their scores per group.

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

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B1 = npt.NDArray[np.bool_]
LOG_EPS = 1e-6
ECE_BINS = 10
RELIABILITY_MIN_COUNT = 20

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

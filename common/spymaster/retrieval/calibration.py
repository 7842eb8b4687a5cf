"""Recalibration of the kNN's P(BREAK), fitted on past days only, and the recommended estimator settings.

The evaluation (``spymaster.evaluation``, docs/EVALUATION.md) measures the served kNN walk-forward.
This module holds what it found:

* **Estimator settings** the API should use: :data:`RECOMMENDED_PARAMS` (a ``retrieval.Params``)
  and :data:`spymaster.settings.SERVED` (k, the per-day cap, per-group weights, the pooled prior,
  the interval cap and the recalibration method), chosen on one synthetic lake and checked on
  another. The API serves :data:`SERVED_PARAMS`, built here from those; the evaluation's reference
  setting reads the same ``SERVED``, so the two cannot drift apart.
* **Recalibration**: a monotone map ``p ↦ p'`` of the kNN's raw P(BREAK), isotonic (scikit-learn
  ``IsotonicRegression``) or Platt (logistic on ``logit p``), fitted on (prediction, outcome) pairs
  of *earlier* days. :func:`walk_forward` refits it for every test day from the rows of days before
  that day's cutoff (the same embargo as the neighbours), so no test day's outcome shapes its own
  forecast. After the map, the 80 % interval is recomputed as the Beta interval around the new mean
  with the same total pseudo-count (``n_eff + prior strength``), optionally capped
  (``SERVED.interval_max_total``): the interval describes "the probability of this
  situation", whose spread across similar-looking situations does not shrink with more neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from spymaster.retrieval.answer import Params, beta_interval
from spymaster.settings import SERVED

__all__ = [
    "METHODS",
    "PUBLISHED_PARAMS",
    "RECOMMENDED_PARAMS",
    "SERVED_PARAMS",
    "Recalibration",
    "fit",
    "intervals",
    "walk_forward",
]

F64 = npt.NDArray[np.float64]
Method = Literal["isotonic", "platt", "none"]
METHODS: tuple[str, ...] = ("isotonic", "platt", "none")

PUBLISHED_PARAMS = Params()
"""The published baseline: similarity⁴ × exp(−age/60 d), prior 1/1/0.5 (strength 2.5)."""

RECOMMENDED_PARAMS = Params(similarity_power=4.0, decay_days=60.0, prior_strength=2.5)
"""Kernel and prior recommended for the API (see docs/EVALUATION.md, "Parameter sweep")."""
SERVED_PARAMS = replace(
    RECOMMENDED_PARAMS,
    pooled_prior=SERVED.pooled_prior,
    interval_max_total=SERVED.interval_max_total,
)
"""What the API serves: :data:`RECOMMENDED_PARAMS` with the pooled prior and the interval cap applied
inside ``retrieval`` (the evaluation applies the same two constants through ``KnnConfig.pooled_prior``
and its ``interval_cap``)."""
P_FLOOR = 0.005
"""Recalibrated probabilities are kept in [P_FLOOR, 1 − P_FLOOR] (an empty isotonic block is not
certainty, and log loss punishes 0 and 1 without bound)."""
DEFAULT_MIN_ROWS = 200
"""Fewer past rows than this: the raw forecast passes through unchanged."""


def _logit(p: F64) -> F64:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    out: F64 = np.log(q / (1 - q))
    return out


@dataclass(frozen=True)
class Recalibration:
    """A fitted monotone map of P(BREAK); ``identity`` when there was too little past data."""

    method: str
    n: int
    x: tuple[float, ...] = ()
    """Isotonic knots (increasing predictions) …"""
    y: tuple[float, ...] = ()
    """… and their calibrated values (linear in between, clipped outside)."""
    a: float = 1.0
    """Platt: p' = σ(a·logit p + b)."""
    b: float = 0.0

    @property
    def identity(self) -> bool:
        return self.method == "none"

    def apply(self, p: npt.ArrayLike) -> F64:
        q = np.asarray(p, dtype=np.float64)
        if self.method == "none":
            return q.copy()
        if self.method == "isotonic":
            out = np.interp(q, np.asarray(self.x), np.asarray(self.y))
        elif self.method == "platt":
            out = 1.0 / (1.0 + np.exp(-(self.a * _logit(q) + self.b)))
        else:
            raise ValueError(f"unknown recalibration method {self.method!r}")
        res: F64 = np.clip(out, P_FLOOR, 1 - P_FLOOR)
        return res

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "n": self.n,
            "x": list(self.x),
            "y": list(self.y),
            "a": self.a,
            "b": self.b,
        }

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> Recalibration:
        return Recalibration(
            method=str(obj["method"]),
            n=int(obj["n"]),
            x=tuple(float(v) for v in obj.get("x", ())),
            y=tuple(float(v) for v in obj.get("y", ())),
            a=float(obj.get("a", 1.0)),
            b=float(obj.get("b", 0.0)),
        )


def fit(
    p: npt.ArrayLike, y: npt.ArrayLike, method: str = SERVED.recalibration, min_rows: int = DEFAULT_MIN_ROWS
) -> Recalibration:
    """Fit the map on (raw P(BREAK), BREAK ∈ {0, 1}) pairs; identity below ``min_rows`` or one class."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    pv = np.asarray(p, dtype=np.float64).ravel()
    yv = np.asarray(y, dtype=np.float64).ravel()
    if pv.shape != yv.shape:
        raise ValueError("p and y differ in length")
    n = int(pv.size)
    if method == "none" or n < min_rows or np.unique(yv).size < 2:
        return Recalibration("none", n)
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(pv, yv)
        xs = np.asarray(iso.X_thresholds_, dtype=np.float64)
        ys = np.asarray(iso.y_thresholds_, dtype=np.float64)
        return Recalibration("isotonic", n, tuple(xs.tolist()), tuple(ys.tolist()))
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4)
    lr.fit(_logit(pv).reshape(-1, 1), yv.astype(np.int64))
    return Recalibration("platt", n, a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def intervals(p: npt.ArrayLike, total: npt.ArrayLike, level: float = 0.8, cap: float | None = None) -> F64:
    """Beta(p·N, (1 − p)·N) central intervals per row, N = ``total`` (capped at ``cap``): [n, 2]."""
    pv = np.asarray(p, dtype=np.float64).ravel()
    nv = np.asarray(total, dtype=np.float64).ravel()
    if cap is not None:
        nv = np.minimum(nv, cap)
    out = np.zeros((pv.size, 2))
    for i, (pi, ni) in enumerate(zip(pv.tolist(), nv.tolist(), strict=True)):
        out[i] = beta_interval([pi], ni, level)[0]
    return out


@dataclass(frozen=True)
class Recalibrated:
    p: F64
    lo: F64
    hi: F64
    maps: Mapping[int, Recalibration]
    """The map used for each test day (day number → map)."""


def walk_forward(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    day: npt.ArrayLike,
    total: npt.ArrayLike,
    cutoffs: Mapping[int, int],
    *,
    method: str = SERVED.recalibration,
    min_rows: int = DEFAULT_MIN_ROWS,
    level: float = 0.8,
    cap: float | None = None,
) -> Recalibrated:
    """Recalibrate each test day's forecasts with a map fitted on rows of days before its cutoff.

    ``p``/``y``/``day``/``total`` are the test rows (raw P(BREAK), outcome, day number, interval
    pseudo-count ``n_eff + prior strength``); ``cutoffs[d]`` is the first day number *not* usable
    for test day ``d`` (rows of days ``< cutoffs[d]`` are its past).
    """
    pv = np.asarray(p, dtype=np.float64).ravel()
    yv = np.asarray(y, dtype=np.float64).ravel()
    dv = np.asarray(day, dtype=np.int64).ravel()
    nv = np.asarray(total, dtype=np.float64).ravel()
    if not (pv.shape == yv.shape == dv.shape == nv.shape):
        raise ValueError("p, y, day and total differ in length")
    out = pv.copy()
    maps: dict[int, Recalibration] = {}
    for d in np.unique(dv).tolist():
        rows = dv == d
        past = dv < cutoffs[int(d)]
        m = fit(pv[past], yv[past], method, min_rows)
        maps[int(d)] = m
        out[rows] = m.apply(pv[rows])
    iv = intervals(out, nv, level, cap)
    return Recalibrated(out, iv[:, 0], iv[:, 1], maps)


def describe(params: Params, k: int, max_per_day: int, weights: Mapping[str, float]) -> str:
    """One line naming an estimator setting (for reports)."""
    w = ", ".join(f"{g}={v:g}" for g, v in sorted(weights.items())) or "all groups 1"
    return (
        f"k={k}, ≤{max_per_day}/day, similarity^{params.similarity_power:g}, "
        f"decay {params.decay_days:g} d, prior strength {params.prior_strength:g}, weights: {w}"
    )


def grid(
    powers: Sequence[float] = (2.0, 4.0, 8.0),
    strengths: Sequence[float] = (2.5, 10.0),
    decays: Sequence[float] = (60.0,),
) -> list[Params]:
    """The parameter sweep's kernels and priors."""
    return [
        Params(similarity_power=pw, decay_days=dc, prior_strength=st)
        for pw in powers
        for st in strengths
        for dc in decays
        if math.isfinite(pw)
    ]

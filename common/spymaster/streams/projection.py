"""Projections: each stream's next 10 bars (20 minutes) as q10 / q50 / q90 curves.

For horizon ``h`` bars and quantile ``τ``, a linear quantile regression of the stream ``h`` bars
later on ``[1, Σ, slope, curvature, jerk]`` at the bar (the polynomial terms of the original design),
fitted by iteratively reweighted least squares on the pinball loss over earlier days' streams only.
Curves are clipped to [−1, 1] (the streams' range) and sorted so the quantiles never cross.

Beside it, the two references the evaluation scores it against: *naive* (no change: every quantile
is today's value) and *climatology* (the earlier days' unconditional quantiles of the stream).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster.streams.core import DERIVATIVES, STREAM_NAMES

F64 = npt.NDArray[np.float64]

HORIZON_BARS = 10
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
TERMS: tuple[str, ...] = ("1", "value", *DERIVATIVES)
IRLS_ITERATIONS = 40
IRLS_EPS = 1e-3
"""Residuals below this count as this in the IRLS weights (the streams live in [−1, 1])."""
RIDGE = 1e-6
MAX_TRAIN_ROWS = 20_000
"""Training rows per stream beyond which the earliest are dropped (keeps a fit's cost bounded)."""
FIT_CONFIG = (
    f"irls{IRLS_ITERATIONS}-eps{IRLS_EPS:g}-ridge{RIDGE:g}-rows{MAX_TRAIN_ROWS}-q{QUANTILES}-h{HORIZON_BARS}"
)
"""Everything besides the training rows that shapes a fit (a cached model is reused only under the same)."""


def design(values: F64, slope: F64, curv: F64, jerk: F64) -> F64:
    """The regressors per row; a derivative not yet defined (start of a run) counts as 0."""
    cols = [np.ones_like(values), values, slope, curv, jerk]
    return np.nan_to_num(np.column_stack(cols), nan=0.0)


def pairs(t: pa.Table, stream: str, horizon: int = HORIZON_BARS) -> tuple[F64, F64]:
    """Regressors at each bar and the stream's value 1…``horizon`` bars later (NaN past the day's end).

    ``t`` is one or more dates' streams tables; a target is the same date and level ``h`` bars on.
    """
    n = t.num_rows
    if n == 0:
        return np.empty((0, len(TERMS))), np.empty((0, horizon))
    v = np.asarray(t.column(stream).to_numpy(zero_copy_only=False), dtype=np.float64)
    x = design(
        v, *(np.asarray(t.column(f"{stream}_{d}").to_numpy(zero_copy_only=False), float) for d in DERIVATIVES)
    )
    date = t.column("date").cast(pa.int32()).to_numpy().astype(np.int64)
    bar = t.column("bar").to_numpy().astype(np.int64)
    kinds = {k: i for i, k in enumerate(sorted(set(t.column("level_kind").to_pylist())))}
    kind = np.array([kinds[k] for k in t.column("level_kind").to_pylist()], dtype=np.int64)
    key = (date * 16 + kind) * 1024 + bar
    order = np.argsort(key, kind="stable")
    ks = key[order]
    y = np.full((n, horizon), np.nan)
    for h in range(1, horizon + 1):
        j = np.searchsorted(ks, key + h)
        hit = (j < n) & (ks[np.minimum(j, n - 1)] == key + h)
        y[hit, h - 1] = v[order[j[hit]]]
    x[~np.isfinite(v)] = np.nan
    return x, y


def quantile_fit(x: F64, y: F64, tau: F64) -> F64:
    """Linear quantile regression of each column of ``y`` on ``x`` at its ``tau`` (IRLS), p × m.

    Rows where a target is NaN get no weight for that target.
    """
    ok = np.isfinite(y)
    yz = np.where(ok, y, 0.0)
    p, m = x.shape[1], y.shape[1]
    w = ok.astype(np.float64)
    ridge = RIDGE * np.eye(p)
    outer = (x[:, :, None] * x[:, None, :]).reshape(x.shape[0], p * p)  # one BLAS product per step
    beta: F64 = np.zeros((p, m))
    for _ in range(IRLS_ITERATIONS):
        a = (w.T @ outer).reshape(m, p, p) + ridge
        b = (w * yz).T @ x
        beta = np.asarray(np.linalg.solve(a, b[..., None])[..., 0].T, dtype=np.float64)
        r = yz - x @ beta
        w = np.where(r >= 0, tau, 1.0 - tau) / np.maximum(np.abs(r), IRLS_EPS) * ok
    return beta


@dataclass(frozen=True)
class ProjectionModel:
    """Per stream: coefficients [quantile][horizon][term] and the climatology quantiles."""

    days: tuple[dt.date, ...]
    coef: dict[str, list[list[list[float]]]]
    climatology: dict[str, list[float]]
    rows: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "quantile-linear-irls",
            "terms": list(TERMS),
            "quantiles": list(QUANTILES),
            "horizon_bars": HORIZON_BARS,
            "days": [d.isoformat() for d in self.days],
            "coef": self.coef,
            "climatology": self.climatology,
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProjectionModel:
        return cls(tuple(dt.date.fromisoformat(x) for x in d["days"]), d["coef"], d["climatology"], d["rows"])

    @property
    def version(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.blake2b(blob, digest_size=6).hexdigest()

    def project(self, stream: str, x: F64) -> F64 | None:
        """Curves for rows of regressors: (rows × quantiles × horizons); None if not fitted."""
        c = self.coef.get(stream)
        if not c:
            return None
        beta = np.asarray(c, dtype=np.float64)  # q × h × terms
        out = np.einsum("nt,qht->nqh", x, beta)
        return np.sort(np.clip(out, -1.0, 1.0), axis=1)

    def climatology_curves(self, stream: str, n: int) -> F64 | None:
        q = self.climatology.get(stream)
        if not q:
            return None
        return np.broadcast_to(np.asarray(q)[None, :, None], (n, len(QUANTILES), HORIZON_BARS)).copy()


def fit(history: pa.Table, days: tuple[dt.date, ...]) -> ProjectionModel:
    """One model from earlier days' streams tables (``history``, concatenated)."""
    coef: dict[str, list[list[list[float]]]] = {}
    clim: dict[str, list[float]] = {}
    rows: dict[str, int] = {}
    tau = np.repeat(np.asarray(QUANTILES), HORIZON_BARS)
    for s in STREAM_NAMES:
        x, y = pairs(history, s)
        keep = np.isfinite(x).all(axis=1)
        x, y = x[keep][-MAX_TRAIN_ROWS:], y[keep][-MAX_TRAIN_ROWS:]
        rows[s] = int(x.shape[0])
        if x.shape[0] < 10 * len(TERMS):
            continue
        beta = quantile_fit(x, np.tile(y, (1, len(QUANTILES))), tau)  # terms × (q·h)
        b = beta.T.reshape(len(QUANTILES), HORIZON_BARS, len(TERMS))
        coef[s] = np.round(b, 10).tolist()
        clim[s] = [round(float(np.quantile(x[:, 1], q)), 10) for q in QUANTILES]
    return ProjectionModel(days, coef, clim, rows)


def pinball(y: F64, curves: F64) -> F64:
    """Mean pinball loss over the quantiles per row and horizon (rows × horizons; NaN where y is)."""
    tau = np.asarray(QUANTILES)[None, :, None]
    r = y[:, None, :] - curves
    loss: F64 = np.where(r >= 0, tau * r, (tau - 1) * r).mean(axis=1)
    return loss

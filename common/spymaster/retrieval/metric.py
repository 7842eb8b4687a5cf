"""The learned similarity: which dimensions make two level setups alike, fitted on past days only.

Cosine over 160-odd equally weighted dimensions finds neighbours that look alike in free-walk
geometry and differ in what decides the outcome (issue 11, docs/EVALUATION.md). A model here is a
metric fitted on earlier days' episodes, then plain exact kNN in that metric:

* ``diag`` — per-dimension weights w_j = |β_j| of an L2 logistic regression of BREAK on the
  standardised dimensions (plus level kind and direction): d(a, b)² = Σ_j w_j² (a_j − b_j)².
  Dimensions that do not move the outcome get weight ≈ 0, so neighbours agree on those that do.
* ``proj`` — the rows of a multinomial logistic regression (BREAK / REJECT / CHOP) as a
  3-dimensional projection; neighbours are setups with the same outcome log-odds profile.

The answer stays retrieval: the probability is the (prior-smoothed) share of BREAK among the k
nearest earlier episodes, each weighed by a Gaussian kernel of its distance (``kernel_weights``),
then a Platt map fitted on earlier days' out-of-sample answers. Pure
numpy / scikit-learn; no I/O (the lake stores a model as JSON, see :func:`SetupModel.to_json`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logit

from spymaster.levels import DIRECTIONS, LEVEL_KINDS
from spymaster.settings import LEARNED

__all__ = [
    "METHODS",
    "Answer",
    "Platt",
    "SetupModel",
    "design",
    "fit",
]

F64 = npt.NDArray[np.float64]
Strs = Sequence[str] | npt.NDArray[np.str_]
METHODS: tuple[str, ...] = ("diag", "proj")
DEFAULT_K = LEARNED.k
DEFAULT_C = LEARNED.c
"""L2 strength of the metric's logistic regression (inverse); the one home is ``settings.LEARNED``."""
PRIOR_STRENGTH = 2.0
CLIP = 5.0
MIN_PLATT_ROWS = 200


def robust_scale(raw: npt.ArrayLike) -> tuple[F64, F64]:
    """Median and IQR per dimension (std, then 1, where the IQR is 0) of training raw vectors."""
    m = np.asarray(raw, dtype=np.float64)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(m, axis=0)
            q75, q25 = np.nanpercentile(m, [75.0, 25.0], axis=0)
            sd = np.nanstd(m, axis=0)
    iqr = q75 - q25
    scale = np.where(iqr > 1e-9, iqr, np.where(sd > 1e-9, sd, 1.0))
    return np.nan_to_num(med), np.nan_to_num(scale, nan=1.0)


def design(
    raw: npt.ArrayLike,
    level_kind: Strs,
    direction: Strs,
    center: npt.ArrayLike,
    scale: npt.ArrayLike,
) -> F64:
    """Model inputs: raw vectors scaled by the model's own (center, scale), NaN → 0, clipped at ±5,
    then level kind one-hot and 1 for UP (so the metric learns whether kind and side matter)."""
    v = (np.asarray(raw, dtype=np.float64) - np.asarray(center)) / np.asarray(scale)
    v = np.clip(np.nan_to_num(v, nan=0.0, posinf=CLIP, neginf=-CLIP), -CLIP, CLIP)
    kinds = np.asarray(level_kind)
    dirs = np.asarray(direction)
    extra = np.column_stack(
        [kinds == k for k in LEVEL_KINDS] + [dirs == DIRECTIONS[0]],
    ).astype(np.float64)
    return np.concatenate([v, extra.reshape(v.shape[0], -1)], axis=1)


@dataclass(frozen=True)
class Platt:
    """p' = σ(a·logit(p) + b); the identity is a = 1, b = 0."""

    a: float = 1.0
    b: float = 0.0
    n: int = 0

    def __call__(self, p: npt.ArrayLike) -> F64:
        q = np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4)
        out: F64 = expit(self.a * logit(q) + self.b)
        return out

    @staticmethod
    def fit(p: npt.ArrayLike, y: npt.ArrayLike, min_rows: int = MIN_PLATT_ROWS) -> Platt:
        """Logistic regression of the outcome on logit(p); identity below ``min_rows`` pairs."""
        pv = np.asarray(p, dtype=np.float64)
        yv = np.asarray(y, dtype=np.float64)
        if pv.size < min_rows or yv.min(initial=1) == yv.max(initial=0):
            return Platt(n=int(pv.size))
        from sklearn.linear_model import LogisticRegression  # fit time only: the query path stays light

        x = logit(np.clip(pv, 1e-4, 1 - 1e-4))[:, None]
        lr = LogisticRegression(C=1e6, max_iter=200).fit(x, yv)
        return Platt(a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]), n=int(pv.size))


def evidence(
    p: npt.ArrayLike, y: npt.ArrayLike, kinds: Strs, min_rows: int = 30
) -> dict[str, dict[str, float]]:
    """Out-of-sample evidence per level kind: n, AUC, Brier skill over the group's own rate."""
    pv = np.asarray(p, dtype=np.float64)
    yv = np.asarray(y, dtype=np.float64)
    kv = np.asarray(kinds, dtype=np.str_)
    from sklearn.metrics import roc_auc_score  # fit time only: the query path stays light

    out: dict[str, dict[str, float]] = {}
    for name in ("ALL", *LEVEL_KINDS):
        m = np.ones(pv.size, bool) if name == "ALL" else kv == name
        n = int(m.sum())
        if n < min_rows or yv[m].min(initial=1) == yv[m].max(initial=0):
            out[name] = {"n": float(n)}
            continue
        rate = float(yv[m].mean())
        ref = float(np.mean((rate - yv[m]) ** 2))
        brier = float(np.mean((pv[m] - yv[m]) ** 2))
        out[name] = {
            "n": float(n),
            "auc": round(float(roc_auc_score(yv[m], pv[m])), 4),
            "skill": round(1.0 - brier / ref, 4) if ref > 0 else 0.0,
        }
    return out


@dataclass(frozen=True)
class Answer:
    """Raw kNN answers for a batch of queries (before the Platt map)."""

    p_raw: F64
    neighbours: npt.NDArray[np.int64]
    """[n_query, k] row indices into the training set, nearest first."""
    distance: F64
    """[n_query, k] metric distances, nearest first."""
    n_break: F64
    weight: F64 | None = None
    """[n_query, k] each neighbour's kernel weight in ``p_raw`` (None: all 1, the uniform kernel)."""


@dataclass
class SetupModel:
    """A fitted metric + the training rows it searches (rows are the model's history)."""

    method: str
    center: F64
    scale: F64
    transform: F64
    """[D] weights (diag) or [D, r] projection (proj), D = raw dims + 7."""
    k: int
    prior: float
    platt: Platt = field(default_factory=Platt)
    fitted_on: tuple[str, ...] = ()
    """ISO dates of the training days (the model never saw any later day)."""
    basis: F64 | None = None
    """[D, r] orthonormal basis of the weighted space's leading principal components (diag only):
    r ≤ ``MAX_RANK`` dimensions keep ``KEEP_VARIANCE`` of its variance, so the exact search reads a
    fraction of the bytes (docs/BENCHMARKS.md, learned similarity)."""
    kernel: str = "uniform"
    """How the k neighbours are weighed in the answer (``KERNELS``)."""
    evidence: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per level kind (and "ALL"): n, AUC and Brier skill of this method's out-of-sample answers on
    days before the model's cutoff — what the trader is shown next to a probability."""

    def embed(self, raw: npt.ArrayLike, level_kind: Strs, direction: Strs) -> F64:
        """Raw vectors → points of the metric space (Euclidean distance there is the metric)."""
        xv = design(raw, level_kind, direction, self.center, self.scale)
        out: F64 = xv * self.transform if self.method == "diag" else xv @ self.transform
        if self.basis is not None:
            out = out @ self.basis
        return out

    @property
    def version(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.blake2b(blob, digest_size=6).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "center": np.round(self.center, 10).tolist(),
            "scale": np.round(self.scale, 10).tolist(),
            "transform": np.round(self.transform, 10).tolist(),
            "basis": None if self.basis is None else np.round(self.basis, 10).tolist(),
            "k": self.k,
            "kernel": self.kernel,
            "prior": self.prior,
            "platt": {"a": self.platt.a, "b": self.platt.b, "n": self.platt.n},
            "fitted_on": list(self.fitted_on),
            "evidence": self.evidence,
        }

    @staticmethod
    def from_json(obj: dict[str, Any]) -> SetupModel:
        pl = obj.get("platt", {})
        return SetupModel(
            method=str(obj["method"]),
            center=np.asarray(obj["center"], dtype=np.float64),
            scale=np.asarray(obj["scale"], dtype=np.float64),
            transform=np.asarray(obj["transform"], dtype=np.float64),
            basis=None if obj.get("basis") is None else np.asarray(obj["basis"], dtype=np.float64),
            k=int(obj["k"]),
            kernel=str(obj.get("kernel", "uniform")),
            prior=float(obj["prior"]),
            platt=Platt(float(pl.get("a", 1.0)), float(pl.get("b", 0.0)), int(pl.get("n", 0))),
            fitted_on=tuple(obj.get("fitted_on", ())),
            evidence={str(k): dict(v) for k, v in obj.get("evidence", {}).items()},
        )

    def search(
        self,
        z_train: F64 | npt.NDArray[np.float32],
        y_train: npt.ArrayLike,
        z_query: F64 | npt.NDArray[np.float32],
        k: int | None = None,
        train_sq: npt.NDArray[Any] | None = None,
    ) -> Answer:
        """Exact k nearest training rows of each query in the metric (both already embedded).

        ``train_sq`` (the rows' squared norms) may be passed precomputed: the server keeps it per
        model, so a query reads the rows once.
        """
        kk = int(min(k or self.k, z_train.shape[0]))
        yv = np.asarray(y_train, dtype=np.float64)
        n = z_query.shape[0]
        if kk == 0:
            empty = np.zeros((n, 0))
            return Answer(np.full(n, self.prior), empty.astype(np.int64), empty, np.zeros(n))
        sq = np.einsum("ij,ij->i", z_train, z_train) if train_sq is None else train_sq
        d2 = np.einsum("ij,ij->i", z_query, z_query)[:, None] + sq[None, :] - 2.0 * (z_query @ z_train.T)
        np.maximum(d2, 0.0, out=d2)
        if kk < z_train.shape[0]:
            idx = np.argpartition(d2, kk - 1, axis=1)[:, :kk]
        else:
            idx = np.tile(np.arange(z_train.shape[0]), (n, 1))
        dd = np.take_along_axis(d2, idx, axis=1)
        order = np.argsort(dd, axis=1, kind="stable")
        idx = np.take_along_axis(idx, order, axis=1)
        dist = np.sqrt(np.take_along_axis(dd, order, axis=1))
        yk = yv[idx]
        nb = yk.sum(axis=1)
        w = kernel_weights(dist, self.kernel)
        # the kernel-weighted BREAK share counts as k neighbours' worth against the prior's 2
        votes = nb if w is None else kk * (w * yk).sum(axis=1) / w.sum(axis=1)
        p_raw = (votes + PRIOR_STRENGTH * self.prior) / (kk + PRIOR_STRENGTH)
        return Answer(p_raw, idx.astype(np.int64), dist, nb, w)


KERNELS: tuple[str, ...] = ("uniform", "gaussian")


def kernel_weights(distance: F64, kernel: str) -> F64 | None:
    """Neighbour weights for ``distance`` [n_query, k] (nearest first); None for the uniform kernel.

    ``gaussian``: exp(−(d / d_k)²) with d_k the k-th neighbour's distance, so the bandwidth follows
    the local density and the farthest neighbour still counts e^−1 ≈ 0.37 of the nearest.
    """
    if kernel == "uniform" or distance.shape[1] == 0:
        return None
    if kernel != "gaussian":
        raise ValueError(f"kernel must be one of {KERNELS}")
    dk = np.maximum(distance[:, -1:], 1e-12)
    out: F64 = np.exp(-((distance / dk) ** 2))
    return out


def fit(
    raw: npt.ArrayLike,
    level_kind: Strs,
    direction: Strs,
    label: Strs,
    *,
    method: str = "diag",
    k: int = DEFAULT_K,
    c: float = DEFAULT_C,
    kernel: str = LEARNED.kernel,
    fitted_on: Sequence[str] = (),
) -> SetupModel:
    """Fit scaling and metric on training rows (labels BREAK / REJECT / CHOP) of earlier days."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}")
    rv = np.asarray(raw, dtype=np.float64)
    center, scale = robust_scale(rv) if rv.shape[0] else (np.zeros(rv.shape[1]), np.ones(rv.shape[1]))
    xv = design(rv, level_kind, direction, center, scale)
    lab = np.asarray(label, dtype=str)
    y = (lab == "BREAK").astype(np.float64)
    prior = float((y.sum() + 1.0) / (y.size + 2.0))
    from sklearn.linear_model import LogisticRegression  # fit time only: the query path stays light

    basis: F64 | None = None
    if y.size < 20 or len(set(lab.tolist())) < 3:
        transform = np.ones(xv.shape[1]) if method == "diag" else np.eye(xv.shape[1])[:, :3]
    elif method == "diag":
        lr = LogisticRegression(C=c, max_iter=1000).fit(xv, y)
        transform = np.abs(lr.coef_[0])
        basis = _basis(xv * transform)
    else:
        lr = LogisticRegression(C=c, max_iter=1000).fit(xv, lab)
        transform = np.asarray(lr.coef_, dtype=np.float64).T
    return SetupModel(
        method,
        center,
        scale,
        np.asarray(transform, dtype=np.float64),
        k,
        prior,
        fitted_on=tuple(fitted_on),
        basis=basis,
        kernel=kernel,
    )


MAX_RANK = 24
KEEP_VARIANCE = 0.95


def _basis(zw: F64) -> F64 | None:
    """Leading principal directions (uncentred: distances are translation-invariant anyway)."""
    if zw.shape[0] < 2:
        return None
    _, sv, vt = np.linalg.svd(zw - zw.mean(axis=0), full_matrices=False)
    var = sv**2
    share = np.cumsum(var) / max(float(var.sum()), 1e-300)
    r = int(min(MAX_RANK, np.searchsorted(share, KEEP_VARIANCE) + 1, vt.shape[0]))
    out: F64 = vt[:r].T.copy()
    return out

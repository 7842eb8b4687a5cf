"""Walk-forward evaluation of the learned similarity at approaches and over all episodes.

For each test day T, everything is fitted on days strictly before ``cutoff(T)`` (one trading day of
embargo by default): the scaling, the metric, the k-NN history and the Platt map (fitted on the
out-of-sample answers of earlier test days whose own day is before the cutoff). Pure: Arrow /
numpy in, numbers out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from scipy.stats import beta as beta_dist
from sklearn.ensemble import HistGradientBoostingClassifier

from spymaster import vectors
from spymaster.retrieval import metric
from spymaster.sessions import EPOCH

F64 = npt.NDArray[np.float64]
INTERVAL = 0.8


@dataclass
class Rows:
    """The gold columns the evaluation needs, as numpy."""

    day: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    kind: npt.NDArray[np.str_]
    direction: npt.NDArray[np.str_]
    reason: npt.NDArray[np.str_]
    label: npt.NDArray[np.str_]
    raw: F64

    @staticmethod
    def from_arrow(t: pa.Table) -> Rows:
        return Rows(
            day=np.asarray(t.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False), dtype=np.int64),
            ts=np.asarray(t.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64),
            kind=np.asarray(t.column("level_kind").to_pylist(), dtype=np.str_),
            direction=np.asarray(t.column("direction").to_pylist(), dtype=np.str_),
            reason=np.asarray(t.column("anchor_reason").to_pylist(), dtype=np.str_),
            label=np.asarray([x or "" for x in t.column("label").to_pylist()], dtype=np.str_),
            raw=vectors.vectors_from_arrow(t.column("vector")).astype(np.float64),
        )


@dataclass
class Forecasts:
    """Per test row: the forecast of every estimator, the interval and the neighbour distance."""

    rows: npt.NDArray[np.int64]
    p: dict[str, F64] = field(default_factory=dict)
    lo: F64 = field(default_factory=lambda: np.zeros(0))
    hi: F64 = field(default_factory=lambda: np.zeros(0))
    mean_dist: F64 = field(default_factory=lambda: np.zeros(0))
    models: dict[int, metric.SetupModel] = field(default_factory=dict)
    """The first method's model per test day (metric, Platt map and evidence all from earlier days)."""
    rank_quartile_p: F64 = field(default_factory=lambda: np.zeros((0, 4)))
    """[n, 4] BREAK share (prior-smoothed) of each quarter of the neighbours by rank, nearest first."""


def beta_interval(p: npt.ArrayLike, n: npt.ArrayLike, level: float = INTERVAL) -> tuple[F64, F64]:
    """Central ``level`` interval of Beta(p·n + ½, (1 − p)·n + ½): n is the evidence in episodes."""
    pv = np.asarray(p, dtype=np.float64)
    nv = np.asarray(n, dtype=np.float64)
    a = pv * nv + 0.5
    b = (1 - pv) * nv + 0.5
    tail = (1 - level) / 2
    return beta_dist.ppf(tail, a, b), beta_dist.ppf(1 - tail, a, b)


def walk_forward(
    r: Rows,
    test_days: Sequence[int],
    cutoff: Callable[[int], int],
    *,
    train_filter: npt.NDArray[np.bool_],
    test_filter: npt.NDArray[np.bool_],
    methods: Sequence[str] = ("diag", "proj"),
    k: int = metric.DEFAULT_K,
    c: float = metric.DEFAULT_C,
    interval_n: float | None = None,
    hgb_every: int = 5,
    shuffle_seed: int | None = None,
) -> Forecasts:
    """Out-of-sample forecasts of every test row (``test_filter`` rows of ``test_days``).

    ``shuffle_seed`` shuffles the training labels (the null kNN: it must have ≈ 0 skill).
    """
    y_all = (r.label == "BREAK").astype(np.float64)
    labelled = r.label != ""
    out_rows: list[npt.NDArray[np.int64]] = []
    ps: dict[str, list[F64]] = {}
    lo_l: list[F64] = []
    hi_l: list[F64] = []
    dist_l: list[F64] = []
    quart_l: list[F64] = []
    past: dict[str, list[tuple[int, F64, F64, npt.NDArray[np.str_]]]] = {}
    models: dict[int, metric.SetupModel] = {}
    hgb: HistGradientBoostingClassifier | None = None
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    for i, day in enumerate(test_days):
        cut = cutoff(day)
        tr = np.flatnonzero((r.day < cut) & labelled & train_filter)
        te = np.flatnonzero((r.day == day) & labelled & test_filter)
        if te.size == 0 or tr.size < 50:
            continue
        lab_tr = r.label[tr].copy()
        if rng is not None:
            lab_tr = lab_tr[rng.permutation(lab_tr.size)]
        y_tr = (lab_tr == "BREAK").astype(np.float64)
        fitted_on = sorted({(EPOCH + dt.timedelta(days=int(d))).isoformat() for d in r.day[tr]})
        prior = float((y_tr.sum() + 1) / (y_tr.size + 2))
        res: dict[str, F64] = {"base": np.full(te.size, prior)}
        for m in methods:
            model = metric.fit(
                r.raw[tr], r.kind[tr], r.direction[tr], lab_tr, method=m, k=k, c=c, fitted_on=fitted_on
            )
            z_tr = model.embed(r.raw[tr], r.kind[tr], r.direction[tr])
            z_te = model.embed(r.raw[te], r.kind[te], r.direction[te])
            ans = model.search(z_tr, y_tr, z_te)
            hist = [h for h in past.get(m, []) if h[0] < cut]
            if hist:
                hp = np.concatenate([h[1] for h in hist])
                hy = np.concatenate([h[2] for h in hist])
                platt = metric.Platt.fit(hp, hy)
                model.evidence = metric.evidence(
                    platt(hp), hy, np.concatenate([h[3] for h in hist])
                )
            else:
                platt = metric.Platt()
            model.platt = platt
            if m == methods[0] and rng is None:
                models[day] = model
            res[f"knn_{m}_raw"] = ans.p_raw
            res[f"knn_{m}"] = platt(ans.p_raw)
            past.setdefault(m, []).append((day, ans.p_raw, y_all[te], r.kind[te]))
            if m == methods[0]:
                dist_l.append(ans.distance.mean(axis=1))
                yk = y_tr[ans.neighbours]
                quart_l.append(
                    np.column_stack(
                        [
                            (q.sum(axis=1) + metric.PRIOR_STRENGTH * prior)
                            / (q.shape[1] + metric.PRIOR_STRENGTH)
                            for q in np.array_split(yk, 4, axis=1)
                        ]
                    )
                )
                n_ev = ans.neighbours.shape[1] if interval_n is None else interval_n
                lo, hi = beta_interval(res[f"knn_{m}"], np.full(te.size, n_ev))
                lo_l.append(lo)
                hi_l.append(hi)
        if rng is None:
            if hgb is None or i % hgb_every == 0:
                x_tr = metric.design(
                    r.raw[tr], r.kind[tr], r.direction[tr], *metric.robust_scale(r.raw[tr])
                )
                hgb = HistGradientBoostingClassifier(
                    max_iter=150, learning_rate=0.05, max_depth=3, min_samples_leaf=40, random_state=0
                ).fit(x_tr, y_tr)
                hgb_scale = metric.robust_scale(r.raw[tr])
            x_te = metric.design(r.raw[te], r.kind[te], r.direction[te], *hgb_scale)
            res["hgb"] = hgb.predict_proba(x_te)[:, 1]
        for name, p in res.items():
            ps.setdefault(name, []).append(p)
        out_rows.append(te)
    f = Forecasts(rows=np.concatenate(out_rows) if out_rows else np.zeros(0, np.int64))
    f.p = {n: np.concatenate(v) for n, v in ps.items()}
    f.models = models
    f.lo = np.concatenate(lo_l) if lo_l else np.zeros(0)
    f.hi = np.concatenate(hi_l) if hi_l else np.zeros(0)
    f.mean_dist = np.concatenate(dist_l) if dist_l else np.zeros(0)
    f.rank_quartile_p = np.concatenate(quart_l) if quart_l else np.zeros((0, 4))
    return f


def feature_table(
    r: Rows, train: npt.NDArray[np.bool_], test: npt.NDArray[np.bool_], names: Sequence[str]
) -> list[dict[str, Any]]:
    """Per vector dimension: univariate AUC and mutual information with BREAK on the ``test`` rows.

    Walk-forward in one fold: each feature's orientation (does a higher value mean BREAK?) is
    read off the ``train`` rows (earlier days); AUC and MI are measured on the later ``test`` rows.
    """
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.metrics import roc_auc_score

    y = (r.label == "BREAK").astype(np.float64)
    labelled = r.label != ""
    tr = train & labelled
    te = test & labelled
    if tr.sum() < 20 or te.sum() < 20 or y[te].min() == y[te].max():
        return []
    xt = np.nan_to_num(r.raw[te])
    mi = mutual_info_classif(xt, y[te], discrete_features=False, random_state=0)
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        a = np.nan_to_num(r.raw[tr, j])
        sign = 1.0
        if np.ptp(a) > 0:
            sign = 1.0 if roc_auc_score(y[tr], a) >= 0.5 else -1.0
        b = xt[:, j]
        auc_te = float(roc_auc_score(y[te], sign * b)) if np.ptp(b) > 0 else 0.5
        rows.append({"feature": name, "auc": round(auc_te, 4), "mi": round(float(mi[j]), 4), "sign": sign})
    rows.sort(key=lambda d: -d["auc"])
    return rows

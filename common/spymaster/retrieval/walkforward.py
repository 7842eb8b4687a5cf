"""Walk-forward fitting of the learned similarity (shared by the fit job and the evaluation).

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
from scipy.special import betaincinv

from spymaster import vectors
from spymaster.retrieval import metric
from spymaster.sessions import EPOCH
from spymaster.settings import LEARNED

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

    episode_id: npt.NDArray[np.str_] | None = None

    @staticmethod
    def from_arrow(t: pa.Table, vector_column: str = "vector") -> Rows:
        """From gold episodes (``vector`` = raw) or the vector table (``vector_column="raw"``)."""
        col = t.column(vector_column)
        raw = (
            vectors.vectors_from_arrow(col).astype(np.float64)
            if pa.types.is_fixed_size_list(col.type)
            else np.asarray(col.to_pylist(), dtype=np.float64).reshape(t.num_rows, vectors.VECTOR_DIM)
        )
        return Rows(
            day=np.asarray(t.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False), dtype=np.int64),
            ts=np.asarray(t.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64),
            kind=np.asarray(t.column("level_kind").to_pylist(), dtype=np.str_),
            direction=np.asarray(t.column("direction").to_pylist(), dtype=np.str_),
            reason=np.asarray(t.column("anchor_reason").to_pylist(), dtype=np.str_),
            label=np.asarray([x or "" for x in t.column("label").to_pylist()], dtype=np.str_),
            raw=raw,
            episode_id=(
                np.asarray(t.column("episode_id").to_pylist(), dtype=np.str_)
                if "episode_id" in t.column_names
                else None
            ),
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
    return betaincinv(a, b, tail), betaincinv(a, b, 1 - tail)  # the Beta quantiles, without scipy.stats


def logit_interval(p: npt.ArrayLike, offsets: tuple[float, float]) -> tuple[F64, F64]:
    """σ(logit p + lo), σ(logit p + hi): the 80 % interval of the planted p around an answer.

    Fixed offsets in log-odds (``settings.LEARNED.interval_logit``, chosen on lake A): the true p
    of a setup scatters around the answer by far more than the neighbours' sampling noise, and
    more in probability near ½ than near 0 or 1 — a Beta of any evidence count ≥ 1 covered < 70 %
    (docs/EVALUATION.md).
    """
    from scipy.special import expit, logit

    q = logit(np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4))
    lo: F64 = expit(q + offsets[0])
    hi: F64 = expit(q + offsets[1])
    return lo, hi


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
    interval_n: float = LEARNED.interval_evidence,
    interval_logit: tuple[float, float] | None = LEARNED.interval_logit,
    baselines: bool = True,
    hgb_every: int = 5,
    shuffle_seed: int | None = None,
    min_train_rows: int = 50,
    train_window_days: int | None = None,
    platt_min_days: int = LEARNED.platt_min_days,
) -> Forecasts:
    """Out-of-sample forecasts of every test row (``test_filter`` rows of ``test_days``).

    For day T everything is fitted on rows dated before ``cutoff(T)``: scaling, metric, the
    neighbours, and the Platt map (on the answers issued for ≥ ``platt_min_days`` earlier test days
    before the cutoff; the identity until then).
    ``Forecasts.models`` keeps the first method's model per test day (also for a day without test
    rows, e.g. the day after the last: the model to serve then). ``shuffle_seed`` shuffles the
    training labels (the null kNN, which must have ≈ 0 skill).
    """
    y_all = (r.label == "BREAK").astype(np.float64)
    labelled = r.label != ""
    out_rows: list[npt.NDArray[np.int64]] = []
    ps: dict[str, list[F64]] = {}
    lo_l: list[F64] = []
    hi_l: list[F64] = []
    dist_l: list[F64] = []
    quart_l: list[F64] = []
    # per method: (day, raw answers, outcomes, kinds, issued answers) of earlier test days
    past: dict[str, list[tuple[int, F64, F64, npt.NDArray[np.str_], F64]]] = {}
    models: dict[int, metric.SetupModel] = {}
    hgb: Any = None
    hgb_scale: tuple[F64, F64] | None = None
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    for i, day in enumerate(test_days):
        cut = cutoff(day)
        before = (r.day < cut) & labelled & train_filter
        if train_window_days is not None:
            recent = np.unique(r.day[before])[-train_window_days:]
            before &= r.day >= (recent[0] if recent.size else cut)
        tr = np.flatnonzero(before)
        te = np.flatnonzero((r.day == day) & labelled & test_filter)
        if tr.size < min_train_rows:
            continue
        lab_tr = r.label[tr].copy()
        if rng is not None:
            lab_tr = lab_tr[rng.permutation(lab_tr.size)]
        y_tr = (lab_tr == "BREAK").astype(np.float64)
        fitted_on = sorted({(EPOCH + dt.timedelta(days=int(d))).isoformat() for d in np.unique(r.day[tr])})
        prior = float((y_tr.sum() + 1) / (y_tr.size + 2))
        res: dict[str, F64] = {"base": np.full(te.size, prior)}
        for m in methods:
            model = metric.fit(
                r.raw[tr], r.kind[tr], r.direction[tr], lab_tr, method=m, k=k, c=c, fitted_on=fitted_on
            )
            hist = [h for h in past.get(m, []) if h[0] < cut]
            if len(hist) >= platt_min_days:
                model.platt = metric.Platt.fit(
                    np.concatenate([h[1] for h in hist]), np.concatenate([h[2] for h in hist])
                )
            if hist:
                model.evidence = metric.evidence(
                    np.concatenate([h[4] for h in hist]),
                    np.concatenate([h[2] for h in hist]),
                    np.concatenate([h[3] for h in hist]),
                )
            if m == methods[0] and rng is None:
                models[day] = model
            if te.size == 0:
                continue
            z_tr = model.embed(r.raw[tr], r.kind[tr], r.direction[tr])
            z_te = model.embed(r.raw[te], r.kind[te], r.direction[te])
            ans = model.search(z_tr, y_tr, z_te)
            res[f"knn_{m}_raw"] = ans.p_raw
            res[f"knn_{m}"] = model.platt(ans.p_raw)
            past.setdefault(m, []).append((day, ans.p_raw, y_all[te], r.kind[te], res[f"knn_{m}"]))
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
                lo, hi = (
                    logit_interval(res[f"knn_{m}"], interval_logit)
                    if interval_logit is not None
                    else beta_interval(res[f"knn_{m}"], np.full(te.size, interval_n))
                )
                lo_l.append(lo)
                hi_l.append(hi)
        if te.size == 0:
            continue
        if baselines and rng is None:
            if hgb is None or hgb_scale is None or i % hgb_every == 0:
                hgb_scale = metric.robust_scale(r.raw[tr])
                x_tr = metric.design(r.raw[tr], r.kind[tr], r.direction[tr], *hgb_scale)
                from sklearn.ensemble import HistGradientBoostingClassifier  # evaluation only

                hgb = HistGradientBoostingClassifier(
                    max_iter=150, learning_rate=0.05, max_depth=3, min_samples_leaf=40, random_state=0
                ).fit(x_tr, y_tr)
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

"""Baselines the kNN is compared with, each fitted walk-forward on days before the cutoff.

* **Baselines** on the same episodes: the partition base rate (the kNN's own prior mean
  ``retrieval.prior_mean`` of the partition's training labels), a time-of-day rate (15-minute slots
  after 09:30 over all partitions, shrunk toward the overall training rate with 2.5 pseudo-counts),
  the overall rate, and scikit-learn's ``HistGradientBoostingClassifier`` on the raw vectors plus
  the partition keys and minutes since the open, retrained walk-forward every ``retrain_every``
  test days on everything before the cutoff of the day it is trained for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from spymaster import vectors
from spymaster.evaluation.episodes import Episodes
from spymaster.evaluation.forecast import EMBARGO_DAYS, test_rows, train_mask
from spymaster.evaluation.metrics import F64, I64
from spymaster.levels import LEVEL_KINDS
from spymaster.outcomes import BREAK, OUTCOMES
from spymaster.retrieval import (
    Params,
    prior_mean,
)

TOD_SLOT_MIN = 15
TOD_PRIOR = 2.5
RETRAIN_EVERY = 5


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

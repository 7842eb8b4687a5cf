"""The learned similarity's job: fit one model per trading date on earlier days, store them in the lake.

A model for date D (:class:`~spymaster.retrieval.metric.SetupModel`) is fitted on the approach
episodes of the vector table dated before D — its scaling, metric and Platt map (the last fitted on
the out-of-sample answers it would have issued on earlier days) — so an answer "as of D" never
rests on D or later. One more model, fitted on every date, serves the trading day after the last.

Layout (:mod:`spymaster.lake.paths`): each model is content-addressed (``models/similarity/<version>.json``)
and ``models/similarity/index.json`` (written last, one PUT) maps each date to its model's version,
so readers see either the previous set or the new one. Re-running on the same table writes the
same files (the fit is deterministic).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spymaster import sessions
from spymaster.lake import Lake, paths
from spymaster.layers.index import read_all
from spymaster.retrieval.metric import SetupModel
from spymaster.retrieval.walkforward import Rows, walk_forward
from spymaster.settings import LEARNED, LearnedSimilarity

HISTORY_COLUMNS = ["episode_id", "date", "ts", "level_kind", "direction", "anchor_reason", "label", "raw"]


def history(lake: Lake, population: str = LEARNED.population) -> Rows:
    """The vector table's rows the learned similarity fits on and searches (raw vectors)."""
    where = "label IS NOT NULL" + (f" AND anchor_reason = '{population}'" if population != "ALL" else "")
    return history_of(read_all(lake, HISTORY_COLUMNS, where=where), population)


def history_of(t: pa.Table, population: str = LEARNED.population) -> Rows:
    """:func:`history` from rows already read (the API's snapshot of the table)."""
    keep = pc.is_valid(t.column("label"))
    if population != "ALL":
        keep = pc.and_(keep, pc.equal(t.column("anchor_reason"), population))
    t = t.filter(keep).select(HISTORY_COLUMNS)
    keys = ("date", "ts", "level_kind", "direction", "episode_id")
    t = t.sort_by([(k, "ascending") for k in keys])
    return Rows.from_arrow(t, vector_column="raw")


@dataclass(frozen=True)
class FitResult:
    models: dict[dt.date, str]
    """date → model version."""
    seconds: float
    rows: int


def fit_models(r: Rows, cfg: LearnedSimilarity = LEARNED) -> dict[dt.date, SetupModel]:
    """One model per date with ≥ ``min_train_days`` earlier dates, plus the day after the last (pure)."""
    days = sorted(set(r.day.tolist()))
    if not days:
        return {}
    nxt = sessions.day_number(sessions.next_trading_day(sessions.from_day_number(days[-1])))
    targets = [d for i, d in enumerate(days) if i >= cfg.min_train_days] + [nxt]
    every = np.ones(r.day.size, dtype=bool)
    f = walk_forward(
        r,
        targets,
        lambda d: d,
        train_filter=every,
        test_filter=every,
        methods=(cfg.method,),
        k=cfg.k,
        c=cfg.c,
        interval_n=cfg.interval_evidence,
        interval_logit=cfg.interval_logit,
        baselines=False,
    )
    return {sessions.from_day_number(d): m for d, m in f.models.items()}


def fit(lake: Lake, cfg: LearnedSimilarity = LEARNED) -> FitResult:
    """Refit every date's model from the vector table and commit the set (index.json last)."""
    t0 = time.perf_counter()
    r = history(lake, cfg.population)
    models = fit_models(r, cfg)
    versions: dict[dt.date, str] = {}
    for d, m in sorted(models.items()):
        v = m.version
        key = paths.model_file(v)
        if not lake.exists(key):
            lake.write_json(key, m.to_json())
        versions[d] = v
    index: dict[str, Any] = {
        "method": cfg.method,
        "population": cfg.population,
        "k": cfg.k,
        "interval_evidence": cfg.interval_evidence,
        "interval_logit": list(cfg.interval_logit) if cfg.interval_logit is not None else None,
        "models": {d.isoformat(): v for d, v in sorted(versions.items())},
    }
    lake.write_json(paths.MODELS_INDEX, index)
    return FitResult(versions, time.perf_counter() - t0, int(r.day.size))


def read_index(lake: Lake) -> dict[str, Any] | None:
    """The committed model index (None before the first fit)."""
    if not lake.exists(paths.MODELS_INDEX):
        return None
    out: dict[str, Any] = lake.read_json(paths.MODELS_INDEX)
    return out


def load_model(lake: Lake, version: str) -> SetupModel:
    return SetupModel.from_json(lake.read_json(paths.model_file(version)))


def empty_rows() -> Rows:
    return Rows.from_arrow(
        pa.table(
            {
                "date": pa.array([], pa.date32()),
                "ts": pa.array([], pa.timestamp("ns", tz="UTC")),
                "level_kind": pa.array([], pa.string()),
                "direction": pa.array([], pa.string()),
                "anchor_reason": pa.array([], pa.string()),
                "label": pa.array([], pa.string()),
                "raw": pa.array([], pa.list_(pa.float32())),
            }
        ),
        vector_column="raw",
    )

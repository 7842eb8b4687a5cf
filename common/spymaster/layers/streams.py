"""Gold ``streams``: the per-date streams job, and the walk-forward projection models.

The streams of date D are scaled with statistics fitted on the bar-close state rows of the
``SCALING_WINDOW_DAYS`` trading dates with committed silver before D (never D itself), stored
content-addressed (``lake.paths.streams_scaling_file``); the manifest records which earlier silver
runs they came from, so :func:`is_current` notices when an earlier date was rebuilt (or landed
later, in a parallel backfill) and the date's streams are rebuilt in a final pass (:func:`refresh`).

Projection models (:func:`fit_projections`) follow :mod:`spymaster.layers.models`: one model per
date fitted on the streams of the ``PROJECTION_WINDOW_DAYS`` dates before it, content-addressed,
with the date → version map written last (``lake.paths.STREAMS_PROJECTIONS_INDEX``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from threadpoolctl import threadpool_limits

from spymaster import sessions
from spymaster.lake import (
    Lake,
    commit,
    committed_dates,
    discard,
    is_committed,
    new_run_id,
    paths,
    read_committed,
    read_manifest,
)
from spymaster.lake.paths import STREAMS_TABLE, Layer, data_file
from spymaster.streams import (
    STREAMS_SCHEMA,
    ProjectionModel,
    Scaling,
    bar_rows,
    compute,
    fit_scaling,
    projection,
)
from spymaster.streams.core import INPUT_COLUMNS

SCALING_WINDOW_DAYS = 20
PROJECTION_WINDOW_DAYS = 20
PROJECTION_MIN_DAYS = 5
"""Earlier days with streams a projection model needs (fewer: the date has no projections)."""


def _history(lake: Lake, date: dt.date) -> list[dt.date]:
    """The scaling's days: the last ``SCALING_WINDOW_DAYS`` dates with committed silver before ``date``."""
    return [d for d in committed_dates(lake, Layer.SILVER, paths.STATE_TABLE) if d < date][
        -SCALING_WINDOW_DAYS:
    ]


def history_runs(lake: Lake, date: dt.date) -> dict[str, str]:
    """The silver runs ``date``'s scaling is fitted on (date → run id): a change means a new scaling
    (the live engine checks this, cheaply, before refitting)."""
    return _runs(lake, _history(lake, date))


def _runs(lake: Lake, days: Sequence[dt.date]) -> dict[str, str]:
    return {d.isoformat(): read_manifest(lake, Layer.SILVER, paths.STATE_TABLE, d).run_id for d in days}


def _inputs(lake: Lake, date: dt.date, days: Sequence[dt.date]) -> dict[str, Any]:
    return {
        "silver_state_run": read_manifest(lake, Layer.SILVER, paths.STATE_TABLE, date).run_id,
        "history": _runs(lake, days),
    }


def is_current(lake: Lake, date: dt.date) -> bool:
    """Committed from the date's silver and the earlier silver there now."""
    if not is_committed(lake, Layer.GOLD, STREAMS_TABLE, date):
        return False
    got = read_manifest(lake, Layer.GOLD, STREAMS_TABLE, date).inputs
    return bool(got == _inputs(lake, date, _history(lake, date)))


def scaling_for(lake: Lake, date: dt.date) -> tuple[Scaling, list[dt.date]]:
    """The scaling of ``date``'s streams, fitted on earlier dates' silver only."""
    days = _history(lake, date)
    cols = list(INPUT_COLUMNS)
    parts = [
        bar_rows(
            lake.read_parquet(read_manifest(lake, Layer.SILVER, paths.STATE_TABLE, d).files, columns=cols)
        )
        for d in days
    ]
    hist = pa.concat_tables(parts) if parts else pa.table({c: pa.array([], pa.float64()) for c in cols})
    return fit_scaling(hist, tuple(days)), days


def build(lake: Lake, date: dt.date, *, allow_shrink: bool = False) -> pa.Table:
    """Compute and commit ``gold/streams/date=…`` from the date's silver and earlier days' scaling."""
    state = read_committed(lake, Layer.SILVER, paths.STATE_TABLE, date)
    sc, days = scaling_for(lake, date)
    inputs = _inputs(lake, date, days)
    if sc.fitted and not lake.exists(paths.streams_scaling_file(sc.version)):
        lake.write_json(paths.streams_scaling_file(sc.version), sc.to_json())
    out = compute(state, sc)
    run_id = new_run_id()
    path = data_file(Layer.GOLD, STREAMS_TABLE, date, run_id, 0)
    try:
        lake.write_parquet(path, out, compression="zstd", row_group_size=1 << 16)
        commit(
            lake,
            Layer.GOLD,
            STREAMS_TABLE,
            date,
            run_id,
            [path],
            out.num_rows,
            inputs=inputs,
            stats={"scaling_version": sc.version if sc.fitted else None, "scaling_days": len(days)},
            allow_shrink=allow_shrink,
        )
    except BaseException:
        discard(lake, [path])
        raise
    return out


def refresh(lake: Lake, dates: Sequence[dt.date]) -> list[dt.date]:
    """Rebuild, in date order, the streams of dates with committed silver that are not current."""
    done = []
    for d in sorted(dates):
        if is_committed(lake, Layer.SILVER, paths.STATE_TABLE, d) and not is_current(lake, d):
            build(lake, d, allow_shrink=True)
            done.append(d)
    return done


def read_streams(lake: Lake, date: dt.date) -> pa.Table:
    """A date's committed streams."""
    return read_committed(lake, Layer.GOLD, STREAMS_TABLE, date, schema=STREAMS_SCHEMA)


# -- projection models -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FitResult:
    models: dict[dt.date, str]
    seconds: float


def _train_days(days: Sequence[dt.date], target: dt.date, min_days: int) -> list[dt.date] | None:
    train = [d for d in days if d < target][-PROJECTION_WINDOW_DAYS:]
    return train if len(train) >= min_days else None


def _targets(days: Sequence[dt.date]) -> list[dt.date]:
    return [*days, sessions.next_trading_day(days[-1])] if days else []


def fit_projection_models(
    tables: dict[dt.date, pa.Table], min_days: int = PROJECTION_MIN_DAYS
) -> dict[dt.date, ProjectionModel]:
    """One model per date with ≥ ``min_days`` earlier dates, plus the day after the last (pure)."""
    days = sorted(tables)
    out: dict[dt.date, ProjectionModel] = {}
    for target in _targets(days):
        train = _train_days(days, target, min_days)
        if train is not None:
            out[target] = projection.fit(pa.concat_tables([tables[d] for d in train]), tuple(train))
    return out


def fit_projections(lake: Lake, min_days: int = PROJECTION_MIN_DAYS) -> FitResult:
    """Refit the projection model of every date whose training streams changed; commit the set (index last).

    A model's inputs are its training days' streams runs: a date whose inputs match the committed
    index keeps its model (the fit is deterministic, so refitting would write the same file).
    """
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):  # small products: threads only contend
        versions = _fit_projections(lake, min_days)
    return FitResult(versions, time.perf_counter() - t0)


def _fit_projections(lake: Lake, min_days: int) -> dict[dt.date, str]:
    days = committed_dates(lake, Layer.GOLD, STREAMS_TABLE)
    runs = {d: read_manifest(lake, Layer.GOLD, STREAMS_TABLE, d).run_id for d in days}
    old = (
        lake.read_json(paths.STREAMS_PROJECTIONS_INDEX)
        if lake.exists(paths.STREAMS_PROJECTIONS_INDEX)
        else {}
    )
    tables: dict[dt.date, pa.Table] = {}
    versions: dict[dt.date, str] = {}
    inputs: dict[dt.date, str] = {}
    for target in _targets(days):
        train = _train_days(days, target, min_days)
        if train is None:
            continue
        key = f"{projection.FIT_CONFIG}|{PROJECTION_WINDOW_DAYS}|" + ",".join(
            f"{d.isoformat()}:{runs[d]}" for d in train
        )
        t = target.isoformat()
        had = old.get("models", {}).get(t)
        if had and old.get("inputs", {}).get(t) == key and lake.exists(paths.streams_projection_file(had)):
            versions[target], inputs[target] = had, key
            continue
        for d in train:
            if d not in tables:
                tables[d] = read_streams(lake, d)
        m = projection.fit(pa.concat_tables([tables[d] for d in train]), tuple(train))
        if not lake.exists(paths.streams_projection_file(m.version)):
            lake.write_json(paths.streams_projection_file(m.version), m.to_json())
        versions[target], inputs[target] = m.version, key
    lake.write_json(
        paths.STREAMS_PROJECTIONS_INDEX,
        {
            "window_days": PROJECTION_WINDOW_DAYS,
            "min_days": min_days,
            "models": {d.isoformat(): v for d, v in sorted(versions.items())},
            "inputs": {d.isoformat(): k for d, k in sorted(inputs.items())},
        },
    )
    return versions


def projection_version(lake: Lake, date: dt.date) -> str | None:
    """The version of the projection model serving ``date`` (None: no model for it)."""
    if not lake.exists(paths.STREAMS_PROJECTIONS_INDEX):
        return None
    version: str | None = lake.read_json(paths.STREAMS_PROJECTIONS_INDEX)["models"].get(date.isoformat())
    return version


def load_projection(lake: Lake, version: str) -> ProjectionModel:
    return ProjectionModel.from_json(lake.read_json(paths.streams_projection_file(version)))


def projection_model(lake: Lake, date: dt.date) -> ProjectionModel | None:
    """The projection model serving ``date`` (fitted on earlier days only), None if there is none."""
    version = projection_version(lake, date)
    return None if version is None else load_projection(lake, version)

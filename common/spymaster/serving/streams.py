"""A day's streams for one level as of a bar: the rows up to it, its projections, alerts, exit score.

Nothing after the as-of bar leaves this module: rows are cut at it before projections and alerts
are computed (the alerts' state machine is causal, the projection uses the as-of row only), and
the projection model is the one the lake serves for the date (fitted on earlier days).
A date's streams and model are cached, revalidated against the streams manifest's run id and the
projection index's version for the date (a refit replaces the model without touching the streams).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spymaster import sessions
from spymaster.errors import InvalidQueryError, NotCommittedError, NotFoundError
from spymaster.lake import Lake, is_committed, paths, read_manifest
from spymaster.lake.paths import Layer
from spymaster.layers.streams import load_projection, projection_version, read_streams
from spymaster.serving.days import et_time, iso_z
from spymaster.sessions import BAR_CLOSE_NS
from spymaster.streams import STREAMS, ProjectionModel, exit_score, run_alerts
from spymaster.streams.core import DERIVATIVES
from spymaster.streams.projection import HORIZON_BARS, QUANTILES, design

_CACHE_SIZE = 8


def _num(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else round(float(v), 6)


class StreamsView:
    """Thread-safe reader of the lake's streams for the API."""

    def __init__(self, lake: Lake | None) -> None:
        self.lake = lake
        self._lock = threading.Lock()
        self._cache: OrderedDict[dt.date, tuple[tuple[str, str | None], pa.Table, ProjectionModel | None]] = (
            OrderedDict()
        )

    def _day(self, date: dt.date) -> tuple[pa.Table, ProjectionModel | None]:
        lake = self.lake
        if lake is None:
            raise NotFoundError("this service has no lake: no streams")
        if not is_committed(lake, Layer.GOLD, paths.STREAMS_TABLE, date):
            raise NotCommittedError(f"no streams committed for {date}", date=date)
        run = (
            read_manifest(lake, Layer.GOLD, paths.STREAMS_TABLE, date).run_id,
            projection_version(lake, date),
        )
        with self._lock:
            hit = self._cache.get(date)
            if hit is not None and hit[0] == run:
                self._cache.move_to_end(date)
                return hit[1], hit[2]
        table = read_streams(lake, date)
        model = None if run[1] is None else load_projection(lake, run[1])
        with self._lock:
            self._cache[date] = (run, table, model)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return table, model

    def answer(
        self,
        date: dt.date,
        level: str,
        at: dt.time | None = None,
        position: str | None = None,
        p_break: float | None = None,
        p_reject: float | None = None,
    ) -> dict[str, Any]:
        """The level's streams up to the bar at or before ``at`` (ET; default: the day's last bar)."""
        table, model = self._day(date)
        rows = table.filter(pc.equal(table.column("level_kind"), level))
        if rows.num_rows == 0:
            raise NotFoundError(f"{level} has no streams on {date} (not active that day)", date=date)
        ts = rows.column("ts").cast(pa.int64()).to_numpy()
        cut = int(ts.max()) if at is None else sessions.et_ns(date, at)
        rows = rows.filter(pa.array(ts <= cut))
        if rows.num_rows == 0:
            raise InvalidQueryError(f"{level} has no 2-minute bar closed by {at} on {date}")
        return render(date, level, rows, model, position, p_break, p_reject)


def render(
    date: dt.date,
    level: str,
    rows: pa.Table,
    model: ProjectionModel | None,
    position: str | None = None,
    p_break: float | None = None,
    p_reject: float | None = None,
) -> dict[str, Any]:
    """One level's streams answer from its rows up to the as-of bar (the last row): the API's
    answer for a committed day and the live engine's pushed one alike."""
    ts = rows.column("ts").cast(pa.int64()).to_numpy()
    last = rows.num_rows - 1
    cols = {s.name: rows.column(s.name).to_pylist() for s in STREAMS}
    bars = [
        {
            "t": iso_z(int(t)),
            "time": et_time(int(t)),
            "direction": rows.column("direction")[i].as_py(),
            "values": {s.name: _num(cols[s.name][i]) for s in STREAMS},
        }
        for i, t in enumerate(ts)
    ]
    latest = {
        s.name: {
            "value": _num(cols[s.name][last]),
            **{d: _num(rows.column(f"{s.name}_{d}")[last].as_py()) for d in DERIVATIVES},
        }
        for s in STREAMS
    }
    alerts = run_alerts(rows)
    raised = alerts.column("ts").cast(pa.int64()).to_pylist()
    cleared = alerts.column("cleared_ts").cast(pa.int64()).to_pylist()
    out_alerts = [
        {
            "alert": a["alert"],
            "t": iso_z(r),
            "time": et_time(r),
            "cleared": None if c is None else et_time(c),
            "active": c is None,
            "confidence": a["confidence"],
            "severity": a["severity"],
            "expects": a["expects"],
        }
        for a, r, c in zip(
            alerts.select(["alert", "confidence", "severity", "expects"]).to_pylist(),
            raised,
            cleared,
            strict=True,
        )
    ]
    direction = str(rows.column("direction")[last].as_py())
    exit_out = None
    if position is not None:
        net = cols["net"][last]
        score = exit_score(position, direction, math.nan if net is None else float(net), p_break, p_reject)
        exit_out = {"position": position, "direction": direction, "score": score}
    return {
        "date": date.isoformat(),
        "level_kind": level,
        "as_of": iso_z(int(ts[last])),
        "as_of_time": et_time(int(ts[last])),
        "direction": direction,
        "scaling_days": int(rows.column("scaling_days")[last].as_py()),
        "scaling_version": rows.column("scaling_version")[last].as_py(),
        "streams": [
            {"name": s.name, "symbol": s.symbol, "kind": s.kind, "definition": s.definition} for s in STREAMS
        ],
        "bars": bars,
        "latest": latest,
        "projection": _projection(rows, last, int(ts[last]), model),
        "alerts": out_alerts,
        "exit": exit_out,
    }


def _projection(rows: pa.Table, last: int, t0: int, model: ProjectionModel | None) -> dict[str, Any] | None:
    if model is None:
        return None
    curves: dict[str, Any] = {}
    for s in STREAMS:
        v = rows.column(s.name)[last].as_py()
        if v is None:
            continue
        x = design(
            np.array([v], dtype=np.float64),
            *(np.array([rows.column(f"{s.name}_{d}")[last].as_py()], dtype=np.float64) for d in DERIVATIVES),
        )
        c = model.project(s.name, x)
        if c is None:
            continue
        curves[s.name] = {
            f"q{round(q * 100)}": [round(float(y), 6) for y in c[0, i]] for i, q in enumerate(QUANTILES)
        }
    times = [t0 + h * BAR_CLOSE_NS for h in range(1, HORIZON_BARS + 1)]
    return {
        "model_version": model.version,
        "trained_on": [d.isoformat() for d in (model.days[0], model.days[-1])] if model.days else [],
        "t": [iso_z(t) for t in times],
        "time": [et_time(t) for t in times],
        "curves": curves,
    }

"""The live engine's streams: at each 2-minute bar close, per active level, the row of gold
``streams`` and the ``/v1/days/{date}/streams`` answer, from the same core as the job.

The scaling is the one the streams job fits for the date (:func:`spymaster.layers.streams.
scaling_for`: earlier days' silver only) and the projection model the one the lake serves for it
(``models/streams/projection/index.json``). :meth:`LiveStreams.refresh` reloads either when a new
version is committed (an earlier day's silver rebuilt, a refit), off the stream's thread: the
engine reads the pair once per bar, so a bar is computed from one version.

A row's derivatives look back at most ``DERIVATIVE_BARS`` bars of its level's run, so the core is
fed only the state rows of the last eight bar closes: the same numbers as a whole day's
:func:`spymaster.streams.compute` (the parity test), for a cost that does not grow with the day.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spymaster import sessions
from spymaster.lake import Lake
from spymaster.layers import streams as streams_job
from spymaster.serving.streams import render
from spymaster.streams import STREAMS_SCHEMA, ProjectionModel, Scaling, compute
from spymaster.streams.core import DERIVATIVE_BARS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Fitted:
    runs: dict[str, str]
    scaling: Scaling
    projection_version: str | None
    projection: ProjectionModel | None


class LiveStreams:
    """Streams for one live date: the fitted scaling and projection, and the rows so far."""

    def __init__(self, lake: Lake, date: dt.date) -> None:
        self.lake = lake
        self.date = date
        self._lock = threading.Lock()
        self._fitted: _Fitted | None = None
        self._rows: pa.Table = STREAMS_SCHEMA.empty_table()
        self.refresh()

    @property
    def rows(self) -> pa.Table:
        """Every stream row emitted so far (gold ``streams``' rows, in its order per bar)."""
        return self._rows

    @property
    def scaling_version(self) -> str | None:
        f = self._fitted
        return f.scaling.version if f is not None and f.scaling.fitted else None

    @property
    def projection_version(self) -> str | None:
        f = self._fitted
        return None if f is None else f.projection_version

    def refresh(self) -> bool:
        """Refit the scaling if the earlier days' silver changed, reload the projection model if
        the lake serves another version for the date. True when anything changed."""
        with self._lock:
            cur = self._fitted
            runs = streams_job.history_runs(self.lake, self.date)
            version = streams_job.projection_version(self.lake, self.date)
            if cur is not None and cur.runs == runs and cur.projection_version == version:
                return False
            scaling = (
                cur.scaling
                if cur is not None and cur.runs == runs
                else streams_job.scaling_for(self.lake, self.date)[0]
            )
            model = (
                cur.projection
                if cur is not None and cur.projection_version == version
                else (None if version is None else streams_job.load_projection(self.lake, version))
            )
            self._fitted = _Fitted(runs, scaling, version, model)
            return True

    def at_bar(self, state: pa.Table, t: int) -> list[tuple[str, dict[str, Any]]]:
        """The streams of the bar closing at ``t`` from the state rows so far (``state``: every row
        up to and including step ``t``): (level, ``/v1/days/{date}/streams`` answer) per active level."""
        fitted = self._fitted
        if fitted is None:
            return []
        ts = state.column("ts").cast(pa.int64()).to_numpy()
        recent = state.filter(pa.array(ts > t - DERIVATIVE_BARS * sessions.BAR_CLOSE_NS))
        new = compute(recent, fitted.scaling)
        new = new.filter(pc.equal(new.column("ts").cast(pa.int64()), pa.scalar(t, pa.int64())))
        if new.num_rows == 0:
            return []
        self._rows = pa.concat_tables([self._rows, new]).combine_chunks()
        out = []
        kinds = self._rows.column("level_kind")
        for level in new.column("level_kind").to_pylist():
            mine = self._rows.filter(pc.equal(kinds, level))
            out.append((level, render(self.date, level, mine, fitted.projection)))
        return out


def bar_close(t: int, date: dt.date) -> bool:
    """Whether a step is a 2-minute bar close (the streams' grid)."""
    return bool(sessions.is_bar_close(np.array([t], dtype=np.int64), date)[0])

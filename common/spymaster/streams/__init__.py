"""Streams: the state table as a few bounded, readable signals per bar and level (:mod:`.core`),
their projections (:mod:`.projection`), alerts (:mod:`.alerts`) and the exit score (:mod:`.exit`).

Arrow / numpy in, Arrow / dataclasses out; nothing here touches storage.
"""

from spymaster.streams.alerts import ALERT_NAMES, ALERT_TYPES, hysteresis, run_alerts
from spymaster.streams.core import (
    STREAM_NAMES,
    STREAMS,
    STREAMS_SCHEMA,
    Scaling,
    bar_rows,
    compute,
    fit_scaling,
)
from spymaster.streams.exit import exit_score, wants_break
from spymaster.streams.projection import HORIZON_BARS, QUANTILES, ProjectionModel

__all__ = [
    "ALERT_NAMES",
    "ALERT_TYPES",
    "HORIZON_BARS",
    "QUANTILES",
    "STREAMS",
    "STREAMS_SCHEMA",
    "STREAM_NAMES",
    "ProjectionModel",
    "Scaling",
    "bar_rows",
    "compute",
    "exit_score",
    "fit_scaling",
    "hysteresis",
    "run_alerts",
    "wants_break",
]

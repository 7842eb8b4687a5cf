"""Alerts: a small state machine per level over its streams, with hysteresis.

Each alert type has a *score* in [0, 1] per bar from the streams (signed into the level, so
"pushing in" is > 0). An alert is raised when its score reaches ``ON`` and stays active until the
score falls below ``OFF`` < ``ON``: a stream wobbling around one threshold raises it once, not bar
after bar. Confidence is the score at the bar it was raised; severity grades that confidence.
Quality gates (THIN_HISTORY, NO_OPTIONS) are raised once per level at its first bar.

Causal by construction: the state at bar t depends on bars ≤ t only, so the alerts "as of" a bar
are the alerts of the rows up to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster.streams.core import THIN_HISTORY_DAYS

F64 = npt.NDArray[np.float64]

ON = 0.30
OFF = 0.15
SLOPE_UNIT = 0.10
"""A per-bar slope of this size counts as a full-strength move in a score."""
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high")


def _pos(x: F64) -> F64:
    out: F64 = np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0)
    return out


@dataclass(frozen=True)
class AlertType:
    name: str
    expects: str | None
    """The outcome this alert argues for (BREAK / REJECT), None for quality gates."""
    definition: str
    score: Callable[[Mapping[str, F64]], F64] | None = None


ALERT_TYPES: tuple[AlertType, ...] = (
    AlertType(
        "EXHAUSTION",
        "REJECT",
        "pushing in but fading: Σ_P⁺ · (−slope Σ_P / 0.1)⁺",
        lambda s: _pos(s["pressure"]) * _pos(-s["pressure_slope"] / SLOPE_UNIT),
    ),
    AlertType(
        "CONTINUATION",
        "BREAK",
        "a push winning against the wall and not fading: min(Σ_P, 2·Σ_N)⁺ · (1 + slope Σ_P / 0.1)⁺",
        lambda s: _pos(np.minimum(s["pressure"], 2 * s["net"])) * _pos(1 + s["pressure_slope"] / SLOPE_UNIT),
    ),
    AlertType(
        "REVERSAL_RISK",
        "REJECT",
        "a push meeting a strong structure that is not weakening: min(Σ_P, Σ_R)⁺ · (1 + slope Σ_R / 0.1)⁺",
        lambda s: (
            _pos(np.minimum(s["pressure"], s["structure"])) * _pos(1 + s["structure_slope"] / SLOPE_UNIT)
        ),
    ),
    AlertType(
        "FLOW_DIVERGENCE",
        "REJECT",
        "price moving in while flow leans out: min(Σ_M, −Σ_F)⁺",
        lambda s: _pos(np.minimum(s["momentum"], -s["flow"])),
    ),
    AlertType(
        "BARRIER_BUILDING",
        "REJECT",
        "the level's liquidity strong and growing: Σ_B⁺ · (slope Σ_B / 0.1)⁺",
        lambda s: _pos(s["barrier"]) * _pos(s["barrier_slope"] / SLOPE_UNIT),
    ),
    AlertType(
        "BARRIER_ERODING",
        "BREAK",
        "the level's liquidity weak and shrinking: (−Σ_B)⁺ · (−slope Σ_B / 0.1)⁺",
        lambda s: _pos(-s["barrier"]) * _pos(-s["barrier_slope"] / SLOPE_UNIT),
    ),
    AlertType(
        "THIN_HISTORY", None, f"the streams' scaling rests on fewer than {THIN_HISTORY_DAYS} earlier days"
    ),
    AlertType("NO_OPTIONS", None, "no options data for the day: Σ_D is null and the dealer view is missing"),
)
ALERT_NAMES: tuple[str, ...] = tuple(a.name for a in ALERT_TYPES)
SIGNAL_ALERTS: tuple[AlertType, ...] = tuple(a for a in ALERT_TYPES if a.score is not None)

ALERTS_SCHEMA = pa.schema(
    [
        pa.field("level_kind", pa.string(), nullable=False),
        pa.field("alert", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("bar", pa.int16(), nullable=False),
        pa.field("cleared_ts", pa.timestamp("ns", tz="UTC")),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("expects", pa.string()),
    ]
)


def severity(confidence: float) -> str:
    return "high" if confidence >= 0.6 else "medium" if confidence >= 0.45 else "low"


def hysteresis(score: F64, on: float = ON, off: float = OFF) -> tuple[list[int], list[int | None]]:
    """Bars where an alert is raised, and where each clears (None: still active at the end)."""
    raised: list[int] = []
    cleared: list[int | None] = []
    active = False
    for i, c in enumerate(np.nan_to_num(score, nan=0.0)):
        if not active and c >= on:
            active = True
            raised.append(i)
            cleared.append(None)
        elif active and c < off:
            active = False
            cleared[-1] = i
    return raised, cleared


def scores(streams: pa.Table) -> dict[str, F64]:
    """Each signal alert's score per row of a streams table."""
    cols = {
        n: np.asarray(streams.column(n).to_numpy(zero_copy_only=False), dtype=np.float64)
        for n in streams.column_names
        if streams.schema.field(n).type == pa.float64()
    }
    return {a.name: a.score(cols) for a in SIGNAL_ALERTS if a.score is not None}


def run_alerts(streams: pa.Table) -> pa.Table:
    """Every alert raised on a date's streams (rows up to the as-of bar give the alerts as of it)."""
    out: dict[str, list[object]] = {f.name: [] for f in ALERTS_SCHEMA}
    if streams.num_rows == 0:
        return ALERTS_SCHEMA.empty_table()
    t = streams.sort_by([("level_kind", "ascending"), ("ts", "ascending")])
    kinds = t.column("level_kind").to_pylist()
    ts = t.column("ts").cast(pa.int64()).to_numpy()
    bar = t.column("bar").to_numpy()
    sc = scores(t)
    days = t.column("scaling_days").to_numpy()
    dealer = np.asarray(t.column("dealer").to_numpy(zero_copy_only=False), dtype=np.float64)
    momentum = np.asarray(t.column("momentum").to_numpy(zero_copy_only=False), dtype=np.float64)

    def add(kind: str, name: str, i: int, j: int | None, conf: float, sev: str, exp: str | None) -> None:
        for k, v in zip(
            out,
            (kind, name, int(ts[i]), int(bar[i]), None if j is None else int(ts[j]), conf, sev, exp),
            strict=True,
        ):
            out[k].append(v)

    starts = [i for i in range(len(kinds)) if i == 0 or kinds[i] != kinds[i - 1]]
    for a, b in zip(starts, [*starts[1:], len(kinds)], strict=True):
        kind = kinds[a]
        if days[a] < THIN_HISTORY_DAYS:
            add(kind, "THIN_HISTORY", a, None, 1.0, "info", None)
        if np.isnan(dealer[a]) and np.isfinite(momentum[a]):
            add(kind, "NO_OPTIONS", a, None, 1.0, "info", None)
        for at in SIGNAL_ALERTS:
            raised, cleared = hysteresis(sc[at.name][a:b])
            for r, c in zip(raised, cleared, strict=True):
                conf = round(float(sc[at.name][a + r]), 6)
                add(kind, at.name, a + r, None if c is None else a + c, conf, severity(conf), at.expects)
    table = pa.table(
        {f.name: pa.array(out[f.name], type=f.type) for f in ALERTS_SCHEMA}, schema=ALERTS_SCHEMA
    )
    return table.sort_by([("ts", "ascending"), ("level_kind", "ascending"), ("alert", "ascending")])


def markdown() -> str:
    """The alert types as a markdown table (kept in docs/STREAMS.md by a test)."""
    lines = ["| alert | argues for | score (raised at ≥ ON, cleared below OFF) |", "|---|---|---|"]
    lines += [f"| `{a.name}` | {a.expects or 'quality gate'} | {a.definition} |" for a in ALERT_TYPES]
    return "\n".join(lines) + "\n"

"""The streams: a few readable signals per 2-minute bar and active level, each in [−1, +1].

Every canonical stream is ``tanh(Σ_i w_i · (x_i − c_i) / s_i)`` over a handful of state-table
features ``x_i`` (:mod:`spymaster.features`), where the centre ``c_i`` (0 for features signed into
the level, else the median) and the scale ``s_i`` (the 75th percentile of ``|x_i − c_i|``) are
fitted on *earlier days only* (:func:`fit_scaling`). ``tanh`` makes the bound a fact of the
formula, not of the data; at the fitted scale one feature's typical large value maps to ≈ 0.76.
Merged streams and composites are averages / products of bounded streams, so they stay bounded.

Derivatives (slope, curvature, jerk, per bar) come from a least-squares cubic over the level's
last eight bars (fewer at the start of a run: lower degree, the missing orders null); a run breaks
when the level's direction flips, since the streams are signed into the level.

Pure: Arrow in, Arrow out, no I/O. docs/STREAMS.md is generated from :func:`markdown` (a test).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from spymaster import sessions
from spymaster.features import FEATURE_NAMES

F64 = npt.NDArray[np.float64]

DERIVATIVE_BARS = 8
"""Bars in the trailing window the derivatives are fitted over."""
DERIVATIVES: tuple[str, ...] = ("slope", "curv", "jerk")
SCALE_QUANTILE = 0.75
THIN_HISTORY_DAYS = 10
"""Fewer earlier days than this behind the scaling raises the THIN_HISTORY quality gate."""


@dataclass(frozen=True)
class Component:
    feature: str
    weight: float
    centred: bool = False
    """True: centre on the earlier days' median (the feature is not signed into the level)."""


@dataclass(frozen=True)
class Stream:
    name: str
    symbol: str
    kind: str
    """``canonical`` (from features), ``merged`` (mean of two streams) or ``composite``."""
    definition: str
    components: tuple[Component, ...] = ()
    nullable_when: str | None = None
    """A feature that, when 1, makes the stream null (dealer without options)."""


def _c(feature: str, weight: float, centred: bool = False) -> Component:
    assert feature in FEATURE_NAMES, feature
    return Component(feature, weight, centred)


STREAMS: tuple[Stream, ...] = (
    Stream(
        "momentum",
        "Σ_M",
        "canonical",
        "price moving into the level: short and medium velocity, and acceleration (> 0: toward / through)",
        (_c("kin_vel_2m", 0.35), _c("kin_vel_5m", 0.35), _c("kin_acc_2m", 0.15), _c("kin_acc_5m", 0.15)),
    ),
    Stream(
        "flow",
        "Σ_F",
        "canonical",
        "order flow into the level: best-level and 10-level OFI, aggressor imbalance (> 0: buying into"
        " a level above / selling into one below)",
        (
            _c("flow_ofi_60s", 0.3),
            _c("flow_mlofi_120s", 0.3),
            _c("tape_imbalance_60s", 0.2),
            _c("tape_imbalance_300s", 0.2),
        ),
    ),
    Stream(
        "barrier",
        "Σ_B",
        "canonical",
        "liquidity standing at the level: resting size there against usual, and the wall ahead against"
        " the support behind (> 0: the level is defended; near 0 while the level is outside the book)",
        (
            _c("barrier_log", 0.5, centred=True),
            _c("book_level_vs_opposite", 0.5, centred=True),
        ),
    ),
    Stream(
        "dealer",
        "Σ_D",
        "canonical",
        "dealer gamma near the level and in total (> 0: long gamma, dealers damp moves; null without options)",
        (_c("dealer_gex_5", 0.3), _c("dealer_gex_10", 0.5), _c("dealer_gex_total", 0.2)),
        nullable_when="dealer_missing",
    ),
    Stream(
        "setup",
        "Σ_S",
        "canonical",
        "the level's geometry: other levels close by, how often it was tested today, and price near it"
        " (> 0: a level worth respecting, close at hand)",
        (
            _c("confluence_n", 0.4, centred=True),
            _c("touches", 0.3, centred=True),
            _c("abs_distance", -0.3, centred=True),
        ),
    ),
    Stream("pressure", "Σ_P", "merged", "(Σ_M + Σ_F) / 2: how hard price pushes into the level"),
    Stream("structure", "Σ_R", "merged", "(Σ_B + Σ_S) / 2: how much the level stands in the way"),
    Stream(
        "net",
        "Σ_N",
        "composite",
        "(Σ_P − Σ_R) / 2: the push against the wall (> 0 leans to a break, < 0 to a rejection)",
    ),
    Stream(
        "alignment",
        "Σ_A",
        "composite",
        "Σ_M · Σ_F: momentum and flow agree (> 0) or diverge (< 0), weighted by their strength",
    ),
)
STREAM_NAMES: tuple[str, ...] = tuple(s.name for s in STREAMS)
CANONICAL: tuple[Stream, ...] = tuple(s for s in STREAMS if s.kind == "canonical")
SCALED_FEATURES: tuple[str, ...] = tuple(dict.fromkeys(c.feature for s in CANONICAL for c in s.components))
INPUT_COLUMNS: tuple[str, ...] = (
    "date",
    "ts",
    "level_kind",
    "direction",
    "level_price",
    "price",
    "ctx_atr_points",
    "dealer_missing",
    *SCALED_FEATURES,
)
"""The state-table columns the streams read."""

KEY_FIELDS: tuple[pa.Field, ...] = (
    pa.field("date", pa.date32(), nullable=False),
    pa.field("ts", pa.timestamp("ns", tz="UTC"), nullable=False),
    pa.field("bar", pa.int16(), nullable=False),
    pa.field("level_kind", pa.string(), nullable=False),
    pa.field("direction", pa.string(), nullable=False),
    pa.field("level_price", pa.float64(), nullable=False),
    pa.field("price", pa.float64(), nullable=False),
    pa.field("atr", pa.float64()),
)
STREAMS_SCHEMA = pa.schema(
    [
        *KEY_FIELDS,
        *(
            pa.field(f"{s.name}{sfx}", pa.float64())
            for s in STREAMS
            for sfx in ("", *(f"_{d}" for d in DERIVATIVES))
        ),
        pa.field("scaling_days", pa.int16(), nullable=False),
        pa.field("scaling_version", pa.string()),
    ]
)


# -- scaling ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scaling:
    """Centre and scale per feature, fitted on the bar-close rows of earlier days."""

    days: tuple[dt.date, ...]
    center: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    rows: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "days": [d.isoformat() for d in self.days],
            "rows": self.rows,
            "quantile": SCALE_QUANTILE,
            "center": {k: round(v, 12) for k, v in sorted(self.center.items())},
            "scale": {k: round(v, 12) for k, v in sorted(self.scale.items())},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Scaling:
        return cls(
            tuple(dt.date.fromisoformat(x) for x in d["days"]),
            {k: float(v) for k, v in d["center"].items()},
            {k: float(v) for k, v in d["scale"].items()},
            int(d["rows"]),
        )

    @property
    def version(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.blake2b(blob, digest_size=6).hexdigest()

    @property
    def fitted(self) -> bool:
        return bool(self.days) and bool(self.scale)


def _col(t: pa.Table, name: str) -> F64:
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def bar_rows(state: pa.Table) -> pa.Table:
    """The state rows at 2-minute bar closes (the streams' grid), ordered by level then time."""
    if state.num_rows == 0:
        return state.select([c for c in INPUT_COLUMNS if c in state.column_names])
    d = state.column("date")[0].as_py()
    ts = state.column("ts").cast(pa.int64()).to_numpy()
    keep = pa.array(sessions.is_bar_close(ts, d))
    t = state.filter(keep).select(list(INPUT_COLUMNS))
    return t.sort_by([("level_kind", "ascending"), ("ts", "ascending")])


def fit_scaling(history: pa.Table, days: tuple[dt.date, ...]) -> Scaling:
    """Centres and scales from earlier days' bar-close rows (``history``: :func:`bar_rows` of them)."""
    center: dict[str, float] = {}
    scale: dict[str, float] = {}
    centred = {c.feature for s in CANONICAL for c in s.components if c.centred}
    for f in SCALED_FEATURES:
        x = _col(history, f) if history.num_rows else np.empty(0)
        x = x[np.isfinite(x)]
        if x.size == 0:
            continue
        c = float(np.median(x)) if f in centred else 0.0
        s = float(np.quantile(np.abs(x - c), SCALE_QUANTILE))
        if not s > 0:  # a feature constant on earlier days (e.g. no walls): fall back to its spread
            s = float(np.max(np.abs(x - c)))
        if s > 0:
            center[f], scale[f] = c, s
    return Scaling(days, center, scale, history.num_rows)


# -- streams ---------------------------------------------------------------------------------------


def _canonical(stream: Stream, t: pa.Table, sc: Scaling) -> F64:
    acc = np.zeros(t.num_rows)
    have = np.zeros(t.num_rows, dtype=bool)
    for comp in stream.components:
        if comp.feature not in sc.scale:
            continue
        z = (_col(t, comp.feature) - sc.center[comp.feature]) / sc.scale[comp.feature]
        ok = np.isfinite(z)
        acc += comp.weight * np.where(ok, z, 0.0)
        have |= ok
    out = np.where(have, np.tanh(acc), np.nan)
    if stream.nullable_when is not None:
        out = np.where(_col(t, stream.nullable_when) == 1.0, np.nan, out)
    return out


def stream_values(rows: pa.Table, sc: Scaling) -> dict[str, F64]:
    """Every stream's value per row (NaN: not defined, e.g. no scaling yet or no options)."""
    n = rows.num_rows
    if not sc.fitted:
        return {s.name: np.full(n, np.nan) for s in STREAMS}
    v = {s.name: _canonical(s, rows, sc) for s in CANONICAL}
    v["pressure"] = (v["momentum"] + v["flow"]) / 2
    v["structure"] = (v["barrier"] + v["setup"]) / 2
    v["net"] = (v["pressure"] - v["structure"]) / 2
    v["alignment"] = v["momentum"] * v["flow"]
    return {s.name: v[s.name] for s in STREAMS}


def _poly_filters() -> dict[int, F64]:
    """For a window of L bars (t = −L+1 … 0): the rows mapping values to (slope, curv, jerk) at t = 0."""
    out: dict[int, F64] = {}
    for n in range(2, DERIVATIVE_BARS + 1):
        deg = min(3, n - 1)
        t = np.arange(-(n - 1), 1, dtype=np.float64)
        vander = np.vander(t, deg + 1, increasing=True)
        coef = np.linalg.pinv(vander)  # (deg+1) × n: values → polynomial coefficients
        rows = np.full((3, n), np.nan)
        for order in range(1, deg + 1):
            rows[order - 1] = coef[order] * float(np.prod(np.arange(1, order + 1)))
        out[n] = rows
    return out


_FILTERS = _poly_filters()


def derivatives(values: F64, run_start: npt.NDArray[np.bool_]) -> tuple[F64, F64, F64]:
    """Slope, curvature and jerk per bar from the trailing window of the same run (past only)."""
    n = values.size
    out = np.full((3, n), np.nan)
    start = 0
    for i in range(n):
        if run_start[i]:
            start = i
        if not np.isfinite(values[i]):
            start = i + 1
            continue
        lo = max(start, i - DERIVATIVE_BARS + 1)
        w = values[lo : i + 1]
        if w.size >= 2:
            out[:, i] = _FILTERS[w.size] @ w
    return out[0], out[1], out[2]


def compute(state: pa.Table, sc: Scaling) -> pa.Table:
    """A date's ``streams`` table from its state table and the scaling fitted on earlier days."""
    rows = bar_rows(state)
    n = rows.num_rows
    if n == 0:
        return STREAMS_SCHEMA.empty_table()
    d = rows.column("date")[0].as_py()
    ts = rows.column("ts").cast(pa.int64()).to_numpy()
    closes = sessions.bar_closes(d)
    bar = np.searchsorted(closes, ts).astype(np.int16)
    kind = rows.column("level_kind").to_pylist()
    direction = rows.column("direction").to_pylist()
    run_start = np.ones(n, dtype=bool)
    for i in range(1, n):
        run_start[i] = not (
            kind[i] == kind[i - 1] and direction[i] == direction[i - 1] and bar[i] == bar[i - 1] + 1
        )
    vals = stream_values(rows, sc)
    cols: dict[str, Any] = {
        "date": rows.column("date"),
        "ts": rows.column("ts"),
        "bar": pa.array(bar, pa.int16()),
        "level_kind": rows.column("level_kind"),
        "direction": rows.column("direction"),
        "level_price": rows.column("level_price"),
        "price": rows.column("price"),
        "atr": rows.column("ctx_atr_points"),
    }
    for s in STREAMS:
        v = vals[s.name]
        cols[s.name] = v
        for dname, dv in zip(DERIVATIVES, derivatives(v, run_start), strict=True):
            cols[f"{s.name}_{dname}"] = dv
    cols["scaling_days"] = pa.array(np.full(n, len(sc.days), dtype=np.int16))
    cols["scaling_version"] = pa.array([sc.version if sc.fitted else None] * n, pa.string())
    arrays = [
        pa.array(cols[f.name], type=f.type, from_pandas=True)
        if isinstance(cols[f.name], np.ndarray)
        else pc.cast(cols[f.name], f.type)
        for f in STREAMS_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=STREAMS_SCHEMA)


# -- the definitions, for docs/STREAMS.md ----------------------------------------------------------


def markdown() -> str:
    """The streams' definitions as a markdown table (kept in docs/STREAMS.md by a test)."""
    lines = ["| stream | symbol | kind | definition | formula |", "|---|---|---|---|---|"]
    for s in STREAMS:
        if s.components:
            terms = " + ".join(
                f"{c.weight:g}·{'(' if c.centred else ''}`{c.feature}`{' − median)' if c.centred else ''}/s"
                for c in s.components
            )
            formula = f"tanh({terms})".replace("+ -", "− ")
        else:
            formula = s.definition.split(":", 1)[0]
        lines.append(f"| `{s.name}` | {s.symbol} | {s.kind} | {s.definition} | {formula} |")
    return "\n".join(lines) + "\n"

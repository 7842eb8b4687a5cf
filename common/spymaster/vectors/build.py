"""Episode vectors: the builder — the fixed-length float32 description of the state at an anchor.

A vector is built from the silver state table only — the rows of the anchor's (date, level_kind)
stamped at or before the anchor — in five sections (docs/GOLD.md lists every dimension; the layout is
:mod:`spymaster.vectors.layout`):

* **snapshot** (49): the registry features at the anchor step (``in_zone``, always 1 at an anchor,
  and ``barrier_depth``, which ``barrier_log`` carries, are left out), each in its registry group;
* **micro-history** (35): 7 key series at each of the 5 steps before the anchor;
* **dynamics** (16): multi-scale summaries of the trailing 5/10/20 minutes (closest approach,
  cumulative OFI, mean tape imbalance, barrier change) and zone context;
* **physics** (12): products and ratios across groups (flow × barrier, time-to-level, …);
* **trajectory** (32): orthonormal DCT-II, 8 coefficients, of 4 series over the last 40 steps.

The builder accepts feature columns only (the leak guard in :mod:`~spymaster.vectors.layout`): any
column named like an outcome is refused with :class:`~spymaster.errors.OutcomeLeakError`. Each anchor's
vector is computed from a slice of its own history that ends at the anchor row, so nothing after the
anchor can enter it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster import sessions
from spymaster.features import FEATURE_NAMES
from spymaster.indicators.trajectory import dct_coefficients
from spymaster.levels import LEVEL_KINDS
from spymaster.sessions import STEP_NS, STEP_S
from spymaster.vectors.layout import (
    _STATE_COLUMNS,
    ANCHOR_KEYS,
    MICRO_LAGS,
    MICRO_SERIES,
    SIGNED_INTO_LEVEL,
    SNAPSHOT,
    TRAJ_K,
    TRAJ_WINDOW,
    TTL_CAP_MIN,
    VECTOR_DIM,
    F32Array,
    FloatArray,
    _guard,
)

# -- the builder -----------------------------------------------------------------------------------

_COL = {n: i for i, n in enumerate(FEATURE_NAMES)}
_SNAP_IDX = np.array([_COL[n] for n in SNAPSHOT], dtype=np.int64)
_SIGN_MASK = np.array([n in SIGNED_INTO_LEVEL for n in FEATURE_NAMES], dtype=bool)


def build_vectors(state: pa.Table, anchors: pa.Table) -> F32Array:
    """Raw (un-normalised) vectors, one row per anchor, in the anchors' order: [n, VECTOR_DIM].

    ``state`` may hold only state-table columns (keys + registry features) and ``anchors`` only
    ``ANCHOR_KEYS`` (``direction`` optional, checked against the state); anything else — in
    particular any outcome column — raises :class:`OutcomeLeakError`. Every anchor must have a
    state row of its (date, level_kind) at its ``ts``.
    """
    _guard(state, _STATE_COLUMNS, "state")
    _guard(anchors, frozenset(ANCHOR_KEYS), "anchors")
    for need in ("date", "ts", "level_kind"):
        if need not in anchors.column_names:
            raise ValueError(f"anchors need a {need!r} column")
    have = set(state.column_names)  # once: the property builds a new list at each call
    missing = [c for c in ("date", "ts", "level_kind", "direction", *FEATURE_NAMES) if c not in have]
    if missing:
        raise ValueError(f"state lacks columns {missing}")
    out = np.full((anchors.num_rows, VECTOR_DIM), np.nan, dtype=np.float32)
    if anchors.num_rows == 0:
        return out

    a_dates = anchors.column("date").to_pylist()
    a_kinds = anchors.column("level_kind").to_pylist()
    a_ts = anchors.column("ts").cast(pa.int64()).to_numpy()
    a_dir = anchors.column("direction").to_pylist() if "direction" in anchors.column_names else None
    s_dates = np.asarray(state.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False))
    s_kinds = np.asarray(state.column("level_kind").to_pylist(), dtype=object)
    groups: dict[tuple[dt.date, str], list[int]] = {}
    for i, key in enumerate(zip(a_dates, a_kinds, strict=True)):
        groups.setdefault(key, []).append(i)
    for (date, kind), idx in groups.items():
        if kind not in LEVEL_KINDS:
            raise ValueError(f"unknown level kind {kind!r}")
        epoch_day = (date - dt.date(1970, 1, 1)).days
        rows = np.flatnonzero((s_dates == epoch_day) & (s_kinds == kind))
        hist = _History.of(state.take(pa.array(rows, pa.int64())), date)
        for i in idx:
            g = hist.index_of(int(a_ts[i]))
            if a_dir is not None and hist.sign[g] != (1.0 if a_dir[i] == "UP" else -1.0):
                raise ValueError(f"anchor {date} {kind} {a_ts[i]}: direction differs from the state row")
            out[i] = _vector_at(hist, g).astype(np.float32)
    return out


@dataclass(frozen=True)
class _History:
    """One (date, level_kind)'s state on its 30-s grid from 09:30, NaN-padded in front and at gaps."""

    origin_ns: int
    feats: FloatArray  # [pad + n, n_features]
    sign: FloatArray  # +1 UP, −1 DOWN, NaN where the level has no row
    zone_run: FloatArray  # consecutive in-zone steps ending at each step (causal)
    zone_visits: FloatArray  # zone entries so far today, this step included (causal)

    @staticmethod
    def of(rows: pa.Table, date: dt.date) -> _History:
        origin = sessions.et_ns(date, sessions.RTH_OPEN)
        ts = rows.column("ts").cast(pa.int64()).to_numpy()
        rel = ts - origin
        if rel.size and (np.any(rel < 0) or np.any(rel % STEP_NS)):
            raise ValueError("state rows must sit on the 30-s grid from 09:30 ET")
        k = rel // STEP_NS
        if np.unique(k).size != k.size:
            raise ValueError("duplicate state rows for one (date, level_kind, ts)")
        pad = TRAJ_WINDOW
        n = (int(k.max()) + 1 if k.size else 0) + pad
        feats = np.full((n, len(FEATURE_NAMES)), np.nan)
        cols = [
            np.asarray(rows.column(c).to_numpy(zero_copy_only=False), dtype=np.float64) for c in FEATURE_NAMES
        ]
        if k.size:
            feats[k + pad] = np.stack(cols, axis=1)
        sign = np.full(n, np.nan)
        dirs = np.asarray(rows.column("direction").to_pylist(), dtype=object)
        sign[k + pad] = np.where(dirs == "UP", 1.0, -1.0)
        return _History.from_grid(origin, feats, sign)

    @staticmethod
    def from_grid(origin: int, feats: FloatArray, sign: FloatArray) -> _History:
        """The history of a grid already laid out (``TRAJ_WINDOW`` rows of padding in front)."""
        n = sign.size
        inz = np.nan_to_num(feats[:, _COL["in_zone"]]) >= 0.5
        run = np.zeros(n)
        visits = np.zeros(n)
        count = 0.0
        for j in range(1, n):  # causal: each value uses steps <= j only
            if inz[j]:
                run[j] = run[j - 1] + 1.0
                if not inz[j - 1]:
                    count += 1.0
            visits[j] = count
        return _History(origin_ns=origin, feats=feats, sign=sign, zone_run=run, zone_visits=visits)

    def index_of(self, ts_ns: int) -> int:
        rel = ts_ns - self.origin_ns
        g = rel // STEP_NS + TRAJ_WINDOW
        if rel < 0 or rel % STEP_NS or g >= self.sign.size or not np.isfinite(self.sign[g]):
            raise ValueError(f"no state row at anchor ts {ts_ns}")
        return int(g)


class StepHistory:
    """One (date, level_kind)'s grid, grown one state row a step: the live engine's vector source.

    It lays rows out as :class:`_History` does and builds the vector with the same
    :func:`_vector_at`, so a vector built here equals the batch one bit for bit; only the grid's
    growth differs (a row a step instead of the day's rows at once), which keeps an anchor's cost
    flat through the day.
    """

    def __init__(self, date: dt.date, n_steps: int) -> None:
        self.origin = sessions.et_ns(date, sessions.RTH_OPEN)
        self.feats = np.full((TRAJ_WINDOW + n_steps, len(FEATURE_NAMES)), np.nan)
        self.sign = np.full(TRAJ_WINDOW + n_steps, np.nan)
        self.last = -1

    def grid_index(self, ts_ns: int) -> int:
        rel = ts_ns - self.origin
        if rel < 0 or rel % STEP_NS:
            raise ValueError("state rows must sit on the 30-s grid from 09:30 ET")
        return int(rel // STEP_NS) + TRAJ_WINDOW

    def add(self, ts_ns: int, features: FloatArray, direction: str) -> None:
        """The level's state row at ``ts_ns``: ``features`` in ``FEATURE_NAMES`` order."""
        g = self.grid_index(ts_ns)
        if g <= self.last:
            raise ValueError(f"state row at {ts_ns} is not after the last one")
        self.feats[g] = features
        self.sign[g] = 1.0 if direction == "UP" else -1.0
        self.last = g

    def rows(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], FloatArray]:
        """The rows so far as gold's anchoring rules read them: ts, in zone, distance."""
        g = np.flatnonzero(np.isfinite(self.sign[: self.last + 1]))
        ts = self.origin + (g - TRAJ_WINDOW).astype(np.int64) * STEP_NS
        inz = np.nan_to_num(self.feats[g, _COL["in_zone"]]) >= 0.5
        return ts, inz, self.feats[g, _COL["distance"]]

    def vector(self, ts_ns: int) -> F32Array:
        """The raw vector of an anchor at ``ts_ns`` (its row must be the last one added)."""
        g = self.grid_index(ts_ns)
        if g != self.last:
            raise ValueError(f"no state row at anchor ts {ts_ns} as the last row")
        h = _History.from_grid(self.origin, self.feats[: g + 1], self.sign[: g + 1])
        out: F32Array = _vector_at(h, g).astype(np.float32)
        return out


def _vector_at(h: _History, g: int) -> FloatArray:
    """The vector of the anchor at grid index ``g``: sees rows ``g − 39 … g`` (and causal counters)."""
    lo = g - TRAJ_WINDOW + 1
    window = h.feats[lo : g + 1]
    sign = h.sign[lo : g + 1]
    return _vector_from_window(window, sign, float(h.zone_run[g]), float(h.zone_visits[g]))


def _vector_from_window(w: FloatArray, sign: FloatArray, zone_steps: float, visits: float) -> FloatArray:
    """Pure function of a 40-step window whose last row is the anchor row."""
    s_a = sign[-1]
    resign = np.where(_SIGN_MASK[None, :], (sign * s_a)[:, None], 1.0)
    ws = w * resign  # signed-into-level features re-signed to the anchor's direction
    a = w[-1]

    def col(name: str) -> FloatArray:
        return ws[:, _COL[name]]

    def at(name: str) -> float:
        return float(a[_COL[name]])

    x = w[:, _COL["distance"]] * s_a  # distance into the level
    series = {"distance_into": x, **{n: col(n) for n, _ in MICRO_SERIES if n != "distance_into"}}
    parts: list[FloatArray] = [a[_SNAP_IDX]]
    # micro-history: the 5 steps before the anchor
    parts.append(np.array([series[n][-1 - lag] for n, _ in MICRO_SERIES for lag in range(1, MICRO_LAGS + 1)]))
    # dynamics over trailing windows (m minutes = 2m steps, anchor included)
    ofi, tape, bar = col("flow_ofi_30s"), col("tape_imbalance_60s"), col("barrier_log")
    # the level's own tick is often out of the ten visible levels or noisy in one state: its recent peak
    prom = col("barrier_tick_prominence")
    dyn = [
        *(_nanmax(x[-2 * m :]) for m in (5, 10, 20)),
        *(_nanmin(x[-2 * m :]) for m in (5, 10, 20)),
        _nanstd(np.diff(x[-21:])),
        _nansum(ofi[-20:]),
        _nansum(ofi[-40:]),
        _nanmean(tape[-20:]),
        _nanmean(tape[-40:]),
        bar[-1] - bar[-11],
        bar[-1] - bar[-21],
        _nanmax(prom[-4:]),
        _nanmean(prom[-2:]),
        max(zone_steps - 1.0, 0.0) * STEP_S / 60.0,  # minutes since the zone entry
        visits,
        float(np.isfinite(sign).sum()) / TRAJ_WINDOW,
    ]
    parts.append(np.array(dyn, dtype=np.float64))
    # physics
    absd, blog = at("abs_distance"), at("barrier_log")
    vels = np.array([at(f"kin_vel_{m}m") for m in (1, 2, 5, 10)])
    with np.errstate(invalid="ignore", divide="ignore"):
        phys = [
            _ttl(absd, at("kin_vel_2m")),
            _ttl(absd, at("kin_vel_5m")),
            at("flow_ofi_60s") * blog,
            at("flow_mlofi_60s") * blog,
            at("tape_imbalance_60s") * blog,
            at("flow_ofi_120s") / (1.0 + blog),
            at("kin_vel_2m") * at("flow_ofi_60s"),
            at("kin_vel_1m") * abs(at("kin_vel_1m")),
            float(np.mean(np.sign(vels))) if np.isfinite(vels).all() else np.nan,
            at("dealer_gex_10") / (abs(at("dealer_gex_total")) + 1e-3),
            at("tape_near_vol_60s") - float(np.log1p(60.0 * at("tape_rate_60s"))),
            at("touches") / max(at("ctx_minutes"), 0.5),
        ]
    parts.append(np.array(phys, dtype=np.float64))
    # trajectory: DCT-II (orthonormal) of the 40-step window
    traj = np.stack([x, ofi, bar, tape])
    parts.append(dct_coefficients(traj, TRAJ_K).reshape(-1))
    vec = np.concatenate(parts)
    vec[~np.isfinite(vec)] = np.nan
    return vec


def _ttl(abs_distance: float, vel: float) -> float:
    """Minutes to reach the level at the current velocity into it (capped; cap if moving away)."""
    if not (np.isfinite(abs_distance) and np.isfinite(vel)):
        return np.nan
    if vel <= abs_distance / TTL_CAP_MIN:
        return TTL_CAP_MIN
    return abs_distance / vel


def _finite_values(v: FloatArray) -> FloatArray:
    out: FloatArray = v[np.isfinite(v)]
    return out


def _nanmax(v: FloatArray) -> float:
    f = _finite_values(v)
    return float(f.max()) if f.size else np.nan


def _nanmin(v: FloatArray) -> float:
    f = _finite_values(v)
    return float(f.min()) if f.size else np.nan


def _nansum(v: FloatArray) -> float:
    f = _finite_values(v)
    return float(f.sum()) if f.size else np.nan


def _nanmean(v: FloatArray) -> float:
    f = _finite_values(v)
    return float(f.mean()) if f.size else np.nan


def _nanstd(v: FloatArray) -> float:
    f = _finite_values(v)
    return float(f.std()) if f.size >= 2 else np.nan

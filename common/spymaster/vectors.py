"""Episode vectors: the fixed-length float32 description of the state at an anchor, and its scaling.

A vector is built from the silver state table only — the rows of the anchor's (date, level_kind)
stamped at or before the anchor — in five sections (docs/GOLD.md lists every dimension):

* **snapshot** (49): the registry features at the anchor step (``in_zone``, always 1 at an anchor,
  and ``barrier_depth``, which ``barrier_log`` carries, are left out), each in its registry group;
* **micro-history** (35): 7 key series at each of the 5 steps before the anchor;
* **dynamics** (16): multi-scale summaries of the trailing 5/10/20 minutes (closest approach,
  cumulative OFI, mean tape imbalance, barrier change) and zone context;
* **physics** (12): products and ratios across groups (flow × barrier, time-to-level, …);
* **trajectory** (32): orthonormal DCT-II, 8 coefficients, of 4 series over the last 40 steps.

The builder accepts feature columns only: every column of its inputs must be a state-table column
(or an anchor key), and any column named like an outcome is refused with :class:`OutcomeLeakError`
— an outcome cannot reach a vector by construction. Each anchor's vector is computed from a slice
of its own history that ends at the anchor row, so nothing after the anchor can enter it.

Normalisation is robust scaling — ``(x − median) / IQR``, clipped to ±``clip``, NaN → 0 — with
statistics fitted on the raw vectors of the **earlier** dates only (the last ``window_days`` dates
with gold before the query date). Statistics are content-addressed: their version is a hash of
the layout, window and values, stored at :func:`spymaster.lake.paths.stats_file` so the query path applies the same one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from spymaster import sessions
from spymaster.features import FEATURE_NAMES, FEATURES, GROUPS, STATE_SCHEMA
from spymaster.indicators.trajectory import dct_coefficients
from spymaster.lake import Lake, committed_dates, paths, read_manifest
from spymaster.lake.paths import EPISODES_TABLE, Layer
from spymaster.levels import LEVEL_KINDS
from spymaster.sessions import STEP_NS, STEP_S

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]

__all__ = [
    "ANCHOR_KEYS",
    "LAYOUT_VERSION",
    "STATS_METHOD",
    "VECTOR_DIM",
    "VECTOR_GROUPS",
    "VECTOR_LAYOUT",
    "OutcomeLeakError",
    "Stats",
    "apply",
    "build_vectors",
    "definition",
    "fit_stats",
    "fit_stats_before",
    "group_mask",
    "group_weights",
    "is_outcome_name",
    "layout_markdown",
    "load_stats",
    "save_stats",
    "stats_for_date",
    "stats_window",
    "vectors_from_arrow",
    "vectors_to_arrow",
]

TRAJ_WINDOW = 40
"""Trajectory window in 30-s steps: 20 minutes ending at (and including) the anchor step."""
TRAJ_K = 8
MICRO_LAGS = 5
DEFAULT_WINDOW_DAYS = 20
DEFAULT_CLIP = 5.0
DEFAULT_MIN_ROWS = 20
STATS_METHOD = "robust-median-iqr/v1"
TTL_CAP_MIN = 30.0
"""Time-to-level is capped here (also when price is not moving toward the level)."""

VECTOR_GROUPS: tuple[str, ...] = (*GROUPS, "physics", "trajectory")
"""The state table's feature groups, then the two the vector adds (derived dims, trajectory shape)."""

# -- the layout ------------------------------------------------------------------------------------

_GROUP_OF = {f.name: f.group for f in FEATURES}
_FEATURE_DEF = {f.name: f.definition for f in FEATURES}
SIGNED_INTO_LEVEL: frozenset[str] = frozenset(
    f.name for f in FEATURES if "signed into the level" in f.definition
)
"""Registry features signed by the step's direction; histories are re-signed to the anchor's."""

SNAPSHOT: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n not in {"in_zone", "barrier_depth"})

MICRO_SERIES: tuple[tuple[str, str], ...] = (
    ("distance_into", "geometry"),
    ("kin_vel_1m", "kinematics"),
    ("flow_ofi_30s", "flow"),
    ("flow_mlofi_30s", "flow"),
    ("barrier_log", "barrier"),
    ("tape_imbalance_60s", "tape"),
    ("tape_near_vol_60s", "tape"),
)
"""``distance_into`` = distance signed into the level (negative on the approach side, 0 at it)."""

DYNAMICS: tuple[tuple[str, str], ...] = (
    *((f"dyn_closest_{m}m", "geometry") for m in (5, 10, 20)),
    *((f"dyn_farthest_{m}m", "geometry") for m in (5, 10, 20)),
    ("dyn_dx_std_10m", "kinematics"),
    ("dyn_ofi_sum_10m", "flow"),
    ("dyn_ofi_sum_20m", "flow"),
    ("dyn_tape_imb_mean_10m", "tape"),
    ("dyn_tape_imb_mean_20m", "tape"),
    ("dyn_barrier_change_5m", "barrier"),
    ("dyn_barrier_change_10m", "barrier"),
    ("ctx_zone_minutes", "context"),
    ("ctx_zone_visits", "context"),
    ("ctx_history_frac", "context"),
)

PHYSICS: tuple[str, ...] = (
    "phys_ttl_2m",
    "phys_ttl_5m",
    "phys_ofi_x_barrier",
    "phys_mlofi_x_barrier",
    "phys_tape_x_barrier",
    "phys_ofi_over_barrier",
    "phys_vel_x_ofi",
    "phys_momentum",
    "phys_vel_agreement",
    "phys_gex_near_share",
    "phys_near_vol_share",
    "phys_touch_rate",
)

TRAJ_SERIES: tuple[str, ...] = ("distance", "ofi", "barrier", "tape")
"""DCT series: distance into the level, best-level OFI per 30 s, barrier log, 60-s tape imbalance."""

VECTOR_LAYOUT: tuple[tuple[str, str], ...] = (
    *((n, _GROUP_OF[n]) for n in SNAPSHOT),
    *((f"hist_{s}_lag{lag}", g) for s, g in MICRO_SERIES for lag in range(1, MICRO_LAGS + 1)),
    *DYNAMICS,
    *((n, "physics") for n in PHYSICS),
    *((f"traj_{s}_c{k}", "trajectory") for s in TRAJ_SERIES for k in range(TRAJ_K)),
)
"""(dimension name, group) of every vector dimension, in order."""
VECTOR_DIM = len(VECTOR_LAYOUT)
VECTOR_NAMES: tuple[str, ...] = tuple(n for n, _ in VECTOR_LAYOUT)
LAYOUT_VERSION = hashlib.blake2b(
    json.dumps([VECTOR_LAYOUT, TRAJ_WINDOW, TRAJ_K], separators=(",", ":")).encode(), digest_size=6
).hexdigest()
"""Changes whenever a dimension is added, removed, renamed, regrouped or reordered."""

if VECTOR_DIM != 144 or len(set(VECTOR_NAMES)) != VECTOR_DIM:  # pragma: no cover - layout invariant
    raise RuntimeError(f"vector layout has {VECTOR_DIM} dims (names unique: {len(set(VECTOR_NAMES))})")


def group_mask(*groups: str) -> npt.NDArray[np.bool_]:
    """Boolean mask of the dimensions in any of ``groups``."""
    unknown = set(groups) - set(VECTOR_GROUPS)
    if unknown:
        raise ValueError(f"unknown vector groups: {sorted(unknown)}")
    return np.array([g in groups for _, g in VECTOR_LAYOUT], dtype=bool)


_SERIES_TEXT = {
    "distance_into": "distance signed into the level (ATR; < 0 on the approach side)",
    "kin_vel_1m": "`kin_vel_1m`",
    "flow_ofi_30s": "`flow_ofi_30s` (best-level OFI of that 30-s step)",
    "flow_mlofi_30s": "`flow_mlofi_30s`",
    "barrier_log": "`barrier_log`",
    "tape_imbalance_60s": "`tape_imbalance_60s`",
    "tape_near_vol_60s": "`tape_near_vol_60s`",
}
_DEFINITIONS: dict[str, str] = {
    **{
        f"dyn_closest_{m}m": f"max distance-into-level over the last {m} min (closest approach)"
        for m in (5, 10, 20)
    },
    **{f"dyn_farthest_{m}m": f"min distance-into-level over the last {m} min" for m in (5, 10, 20)},
    "dyn_dx_std_10m": "std of the 30-s changes of distance-into-level over the last 10 min",
    "dyn_ofi_sum_10m": "sum of `flow_ofi_30s` over the last 10 min (20 steps)",
    "dyn_ofi_sum_20m": "sum of `flow_ofi_30s` over the last 20 min (40 steps)",
    "dyn_tape_imb_mean_10m": "mean of `tape_imbalance_60s` over the last 10 min",
    "dyn_tape_imb_mean_20m": "mean of `tape_imbalance_60s` over the last 20 min",
    "dyn_barrier_change_5m": "`barrier_log` now − 5 min ago",
    "dyn_barrier_change_10m": "`barrier_log` now − 10 min ago",
    "ctx_zone_minutes": "minutes since this zone visit began (0 at the entry)",
    "ctx_zone_visits": "zone entries of this level so far today (this one included)",
    "ctx_history_frac": "share of the 40-step window with a state row (1/40 at 09:30)",
    "phys_ttl_2m": f"time to level: `abs_distance` / `kin_vel_2m`, min; {TTL_CAP_MIN:g} if not approaching",
    "phys_ttl_5m": f"time to level with `kin_vel_5m`, min; capped at {TTL_CAP_MIN:g}",
    "phys_ofi_x_barrier": "`flow_ofi_60s` × `barrier_log` (pressure against resting size)",
    "phys_mlofi_x_barrier": "`flow_mlofi_60s` × `barrier_log`",
    "phys_tape_x_barrier": "`tape_imbalance_60s` × `barrier_log`",
    "phys_ofi_over_barrier": "`flow_ofi_120s` / (1 + `barrier_log`)",
    "phys_vel_x_ofi": "`kin_vel_2m` × `flow_ofi_60s` (momentum backed by flow)",
    "phys_momentum": "`kin_vel_1m` × |`kin_vel_1m`|",
    "phys_vel_agreement": "mean sign of `kin_vel_{1,2,5,10}m` (−1 … 1)",
    "phys_gex_near_share": "`dealer_gex_10` / (|`dealer_gex_total`| + 0.001)",
    "phys_near_vol_share": "`tape_near_vol_60s` − log(1 + 60·`tape_rate_60s`) (log share traded near the level)",
    "phys_touch_rate": "`touches` / max(`ctx_minutes`, 0.5)",
}
_TRAJ_TEXT = {
    "distance": "distance into the level",
    "ofi": "`flow_ofi_30s`",
    "barrier": "`barrier_log`",
    "tape": "`tape_imbalance_60s`",
}


def definition(name: str) -> str:
    """One-line definition of a vector dimension."""
    if name in SNAPSHOT:
        return f"at the anchor: {_FEATURE_DEF[name]}"
    if name.startswith("hist_"):
        series, lag = name[5:].rsplit("_lag", 1)
        return f"{_SERIES_TEXT[series]} {lag} step(s) ({int(lag) * STEP_S} s) before the anchor"
    if name.startswith("traj_"):
        series, k = name[5:].rsplit("_c", 1)
        return (
            f"DCT-II (ortho) coefficient {k} of {_TRAJ_TEXT[series]} over the 40 steps ending at the anchor"
        )
    return _DEFINITIONS[name]


def layout_markdown() -> str:
    """The vector layout as a markdown table (kept in docs/GOLD.md by a test)."""
    lines = ["| # | dimension | group | definition |", "|---|---|---|---|"]
    lines += [
        f"| {i} | `{n}` | {g} | {definition(n).replace('|', chr(92) + '|')} |"
        for i, (n, g) in enumerate(VECTOR_LAYOUT)
    ]
    return "\n".join(lines) + "\n"


def group_weights(weights: Mapping[str, float], default: float = 1.0) -> F32Array:
    """A per-dimension weight vector from per-group weights (0 ablates a group)."""
    unknown = set(weights) - set(VECTOR_GROUPS)
    if unknown:
        raise ValueError(f"unknown vector groups: {sorted(unknown)}")
    return np.array([weights.get(g, default) for _, g in VECTOR_LAYOUT], dtype=np.float32)


# -- the feature-only guard ------------------------------------------------------------------------

_OUTCOME_RE = re.compile(r"^(label|outcome|first_crossing|resolve|time_to_resolution|mfe|mae|fwd)(_|$)")
ANCHOR_KEYS: tuple[str, ...] = ("date", "ts", "level_kind", "direction")
_STATE_COLUMNS = frozenset(STATE_SCHEMA.names)


class OutcomeLeakError(ValueError):
    """An input of the vector builder carried a column that is not a feature (e.g. an outcome)."""


def is_outcome_name(name: str) -> bool:
    """True for every outcome column name gold writes (and anything named like one)."""
    return bool(_OUTCOME_RE.match(name))


if any(is_outcome_name(n) for n in STATE_SCHEMA.names):  # pragma: no cover - registry invariant
    raise RuntimeError("a state-table column is named like an outcome")


def _guard(table: pa.Table, allowed: frozenset[str], what: str) -> None:
    leaked = [c for c in table.column_names if is_outcome_name(c)]
    if leaked:
        raise OutcomeLeakError(f"{what} carries outcome columns {leaked}; outcomes never reach vectors")
    unknown = [c for c in table.column_names if c not in allowed]
    if unknown:
        raise OutcomeLeakError(f"{what} has columns outside the feature registry: {unknown}")


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
    missing = [
        c for c in ("date", "ts", "level_kind", "direction", *FEATURE_NAMES) if c not in state.column_names
    ]
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


# -- arrow helpers ---------------------------------------------------------------------------------

VECTOR_TYPE = pa.list_(pa.float32(), VECTOR_DIM)


def vectors_to_arrow(mat: npt.ArrayLike) -> pa.FixedSizeListArray:
    """[n, VECTOR_DIM] → a fixed-size list<float32> array (NaN kept)."""
    m = np.ascontiguousarray(mat, dtype=np.float32)
    if m.ndim != 2 or m.shape[1] != VECTOR_DIM:
        raise ValueError(f"expected [n, {VECTOR_DIM}], got {m.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1), pa.float32()), VECTOR_DIM)


def vectors_from_arrow(col: pa.Array | pa.ChunkedArray) -> F32Array:
    """A fixed-size list<float32> column → [n, VECTOR_DIM] float32."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return np.zeros((0, VECTOR_DIM), dtype=np.float32)
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(len(arr), VECTOR_DIM)


# -- normalisation statistics ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Robust-scaling statistics of one trailing window of earlier dates (content-addressed)."""

    center: tuple[float, ...]
    scale: tuple[float, ...]
    clip: float | None
    window: tuple[str, ...]
    """ISO dates whose episodes were fitted (empty for the fallback)."""
    window_days: int
    n_rows: int
    fallback: bool
    method: str = STATS_METHOD
    layout_version: str = LAYOUT_VERSION

    @property
    def version(self) -> str:
        """16 hex chars of blake2b over the canonical JSON of everything that defines the scaling."""
        body = json.dumps(self._content(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.blake2b(body.encode(), digest_size=8).hexdigest()

    def _content(self) -> dict[str, Any]:
        d = asdict(self)
        d["center"] = list(self.center)
        d["scale"] = list(self.scale)
        d["window"] = list(self.window)
        return d

    def to_json(self) -> dict[str, Any]:
        return {**self._content(), "version": self.version, "dims": list(VECTOR_NAMES)}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> Stats:
        s = Stats(
            center=tuple(float(v) for v in obj["center"]),
            scale=tuple(float(v) for v in obj["scale"]),
            clip=None if obj["clip"] is None else float(obj["clip"]),
            window=tuple(str(v) for v in obj["window"]),
            window_days=int(obj["window_days"]),
            n_rows=int(obj["n_rows"]),
            fallback=bool(obj["fallback"]),
            method=str(obj["method"]),
            layout_version=str(obj["layout_version"]),
        )
        if "version" in obj and obj["version"] != s.version:
            raise ValueError(f"stats content does not match its version {obj['version']}")
        return s


def fallback_stats(
    window_days: int = DEFAULT_WINDOW_DAYS, window: Sequence[dt.date] = (), n_rows: int = 0
) -> Stats:
    """Identity scaling (centre 0, scale 1, no clipping; NaN → 0) for dates without enough history."""
    return Stats(
        center=(0.0,) * VECTOR_DIM,
        scale=(1.0,) * VECTOR_DIM,
        clip=None,
        window=tuple(d.isoformat() for d in window),
        window_days=window_days,
        n_rows=n_rows,
        fallback=True,
    )


def fit_stats(
    raw: npt.ArrayLike,
    *,
    window: Sequence[dt.date] = (),
    window_days: int = DEFAULT_WINDOW_DAYS,
    clip: float = DEFAULT_CLIP,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> Stats:
    """Median / IQR per dimension of raw vectors of earlier dates (``window`` names those dates).

    A dimension whose IQR is 0 (binary or near-constant) falls back to its standard deviation, then
    to 1; an all-NaN dimension gets centre 0, scale 1. Fewer than ``min_rows`` rows give
    :func:`fallback_stats`.
    """
    m = np.asarray(raw, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != VECTOR_DIM:
        raise ValueError(f"expected [n, {VECTOR_DIM}] raw vectors, got {m.shape}")
    if m.shape[0] < min_rows:
        return fallback_stats(window_days, window, int(m.shape[0]))
    center = np.zeros(VECTOR_DIM)
    scale = np.ones(VECTOR_DIM)
    for j in range(VECTOR_DIM):
        v = m[:, j]
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        q25, q50, q75 = np.percentile(v, [25.0, 50.0, 75.0])
        center[j] = q50
        iqr = q75 - q25
        if iqr > 1e-9:
            scale[j] = iqr
        elif v.size > 1 and float(v.std()) > 1e-9:
            scale[j] = float(v.std())
    return Stats(
        center=tuple(float(c) for c in center),
        scale=tuple(float(s) for s in scale),
        clip=float(clip),
        window=tuple(d.isoformat() for d in window),
        window_days=window_days,
        n_rows=int(m.shape[0]),
        fallback=False,
    )


def stats_window(
    dates: Sequence[dt.date], query_date: dt.date, window_days: int = DEFAULT_WINDOW_DAYS
) -> list[dt.date]:
    """The last ``window_days`` of ``dates`` strictly before ``query_date`` (ascending)."""
    return sorted(d for d in set(dates) if d < query_date)[-window_days:] if window_days > 0 else []


def fit_stats_before(
    vectors_by_date: Mapping[dt.date, npt.ArrayLike],
    query_date: dt.date,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    clip: float = DEFAULT_CLIP,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> Stats:
    """Statistics for ``query_date`` from the raw vectors of the ``window_days`` dates before it."""
    window = stats_window(list(vectors_by_date), query_date, window_days)
    parts = [np.asarray(vectors_by_date[d], dtype=np.float64).reshape(-1, VECTOR_DIM) for d in window]
    raw = np.concatenate(parts) if parts else np.zeros((0, VECTOR_DIM))
    return fit_stats(raw, window=window, window_days=window_days, clip=clip, min_rows=min_rows)


def apply(stats: Stats, raw: npt.ArrayLike) -> F32Array:
    """Scaled vectors: ``clip((raw − centre) / scale)``, NaN → 0, as float32 [n, VECTOR_DIM]."""
    if stats.layout_version != LAYOUT_VERSION:
        raise ValueError(f"stats are for layout {stats.layout_version}, vectors are {LAYOUT_VERSION}")
    m = np.asarray(raw, dtype=np.float64)
    one = m.ndim == 1
    m = m.reshape(-1, VECTOR_DIM)
    z = (m - np.asarray(stats.center)) / np.asarray(stats.scale)
    if stats.clip is not None:
        z = np.clip(z, -stats.clip, stats.clip)
    z = np.where(np.isfinite(z), z, 0.0)
    out = z.astype(np.float32)
    return out[0] if one else out


def save_stats(lake: Lake, stats: Stats) -> str:
    """Write a statistics version to the lake (content-addressed: an existing version is kept)."""
    path = paths.stats_file(stats.version)
    if not lake.exists(path):
        lake.write_json(path, stats.to_json())
    return path


def load_stats(lake: Lake, version: str) -> Stats:
    s = Stats.from_json(lake.read_json(paths.stats_file(version)))
    if s.version != version:
        raise ValueError(f"stats file {paths.stats_file(version)} holds version {s.version}")
    return s


def stats_for_date(
    lake: Lake,
    query_date: dt.date,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    clip: float = DEFAULT_CLIP,
    min_rows: int = DEFAULT_MIN_ROWS,
    save: bool = True,
    cache: dict[tuple[dt.date, tuple[str, ...]], F32Array] | None = None,
) -> Stats:
    """Fit (and by default store) the statistics for ``query_date`` from committed gold of earlier dates.

    ``cache`` (keyed by date and the committed files, so a re-run's new files miss) lets a caller
    indexing many dates read each date's raw vectors once instead of once per later date.
    """
    window = stats_window(committed_dates(lake, Layer.GOLD, EPISODES_TABLE), query_date, window_days)
    by_date: dict[dt.date, F32Array] = {}
    for d in window:
        files = read_manifest(lake, Layer.GOLD, EPISODES_TABLE, d).files
        key = (d, tuple(files))
        if cache is not None and key in cache:
            by_date[d] = cache[key]
            continue
        by_date[d] = vectors_from_arrow(lake.read_parquet(files, columns=["vector"]).column("vector"))
        if cache is not None:
            cache[key] = by_date[d]
    stats = fit_stats_before(by_date, query_date, window_days=window_days, clip=clip, min_rows=min_rows)
    if save:
        save_stats(lake, stats)
    return stats

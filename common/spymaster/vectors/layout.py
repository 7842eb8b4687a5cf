"""The vector layout: every dimension's name and group, the layout version, and the leak guard.

The builder (:mod:`spymaster.vectors.build`) fills this layout; the builder accepts feature columns
only: every column of its inputs must be a state-table column (or an anchor key), and any column
named like an outcome is refused with :class:`~spymaster.errors.OutcomeLeakError` — an outcome cannot
reach a vector by construction.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from spymaster.errors import OutcomeLeakError
from spymaster.features import FEATURE_NAMES, FEATURES, GROUPS, STATE_SCHEMA
from spymaster.sessions import STEP_S

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]

TRAJ_WINDOW = 40
"""Trajectory window in 30-s steps: 20 minutes ending at (and including) the anchor step."""
TRAJ_K = 8
MICRO_LAGS = 5
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
    ("dyn_tick_prom_max_2m", "barrier"),
    ("dyn_tick_prom_mean_1m", "barrier"),
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

if VECTOR_DIM != 168 or len(set(VECTOR_NAMES)) != VECTOR_DIM:  # pragma: no cover - layout invariant
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
    "dyn_tick_prom_max_2m": "max of `barrier_tick_prominence` over the last 2 min (4 steps, the anchor's included)",
    "dyn_tick_prom_mean_1m": "mean of `barrier_tick_prominence` over the last minute (2 steps)",
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

"""Vectors: layout and groups, what each section holds, no lookahead, the feature-only guard, and the
robust-scaling statistics (earlier days only, versioned, stored in the lake)."""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from spymaster import sessions, vectors
from spymaster.features import FEATURE_NAMES, GROUPS, STATE_SCHEMA
from spymaster.indicators.trajectory import dct_coefficients
from spymaster.lake import Lake, paths
from spymaster.layers import gold, silver
from spymaster.partitions import time_bucket
from tests.support import silver_inputs

NS = 1_000_000_000
DAY = dt.date(2026, 3, 5)
OPEN = sessions.et_ns(DAY, sessions.RTH_OPEN)
TS = pa.timestamp("ns", tz="UTC")
D = vectors.VECTOR_DIM


def _dim(name: str) -> int:
    return vectors.VECTOR_NAMES.index(name)


# -- layout ----------------------------------------------------------------------------------------


def test_layout_has_168_named_dims_in_groups() -> None:
    assert D == 168
    assert len(set(vectors.VECTOR_NAMES)) == D
    groups = {g for _, g in vectors.VECTOR_LAYOUT}
    assert set(GROUPS) | {"trajectory"} <= groups
    assert groups <= set(vectors.VECTOR_GROUPS)
    # the trajectory section: the last 32 dims, 4 series × 8 DCT coefficients
    assert [g for _, g in vectors.VECTOR_LAYOUT[-32:]] == ["trajectory"] * 32
    assert vectors.group_mask("trajectory").sum() == 32
    assert vectors.VECTOR_NAMES[-32] == "traj_distance_c0"
    assert vectors.VECTOR_NAMES[-1] == "traj_tape_c7"
    # every registry feature but in_zone (always 1 at an anchor) and barrier_depth (= expm1 barrier_log)
    assert set(FEATURE_NAMES) - set(vectors.VECTOR_NAMES) == {"in_zone", "barrier_depth"}
    w = vectors.group_weights({"dealer": 0.0, "flow": 2.0})
    assert w.dtype == np.float32
    assert (w[vectors.group_mask("dealer")] == 0).all()
    assert (w[vectors.group_mask("flow")] == 2).all()
    assert (w[vectors.group_mask("geometry")] == 1).all()
    with pytest.raises(ValueError, match="unknown"):
        vectors.group_mask("astrology")


# -- hand-made state -------------------------------------------------------------------------------


def _state(n: int, kind: str = "PM_HIGH", seed: int = 0, flip_at: int | None = None) -> pa.Table:
    """``n`` consecutive steps from 09:30 with random features; direction DOWN from ``flip_at``."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    cols["date"] = [DAY] * n
    cols["ts"] = pa.array([OPEN + k * 30 * NS for k in range(n)], TS)
    cols["level_kind"] = [kind] * n
    dist = rng.uniform(-1.9, -0.1, n)
    if flip_at is not None:
        dist[flip_at:] = -dist[flip_at:]
    cols["direction"] = ["UP" if d <= 0 else "DOWN" for d in dist]
    cols["time_bucket"] = time_bucket(np.arange(n) / 2).tolist()
    cols["level_price"] = [100.0] * n
    cols["price"] = (100.0 + 2.0 * dist).tolist()
    for f in FEATURE_NAMES:
        cols[f] = rng.normal(size=n).tolist()
    cols["distance"] = dist.tolist()
    cols["abs_distance"] = np.abs(dist).tolist()
    cols["in_zone"] = [1.0] * n
    return pa.table(cols, schema=STATE_SCHEMA)


def _keys(state: pa.Table, steps: list[int]) -> pa.Table:
    return state.take(pa.array(steps)).select(["date", "ts", "level_kind", "direction"])


def test_sections_hold_what_the_layout_says() -> None:
    st = _state(60, flip_at=45)  # UP until step 44, DOWN from 45
    g = 50
    v = vectors.build_vectors(st, _keys(st, [g]))[0].astype(np.float64)
    col = {n: np.asarray(st.column(n).to_numpy(), dtype=np.float64) for n in FEATURE_NAMES}
    sign = np.where(np.asarray(st.column("direction").to_pylist()) == "UP", 1.0, -1.0)
    s_a = sign[g]
    assert s_a == -1.0
    # snapshot: the registry features at the anchor
    for name in ("distance", "kin_vel_5m", "flow_ofi_60s", "barrier_log", "dealer_gex_10", "ctx_minutes"):
        assert v[_dim(name)] == np.float32(col[name][g])
    # micro-history: the 5 steps before; distance signed into the level, signed features re-signed
    # from each step's direction to the anchor's
    x = col["distance"] * s_a
    ofi = col["flow_ofi_30s"] * sign * s_a
    for lag in range(1, 6):
        assert v[_dim(f"hist_distance_into_lag{lag}")] == np.float32(x[g - lag])
        assert v[_dim(f"hist_flow_ofi_30s_lag{lag}")] == np.float32(ofi[g - lag])
        assert v[_dim(f"hist_barrier_log_lag{lag}")] == np.float32(col["barrier_log"][g - lag])
    # dynamics
    assert v[_dim("dyn_closest_5m")] == np.float32(x[g - 9 : g + 1].max())
    assert v[_dim("dyn_farthest_20m")] == np.float32(x[g - 39 : g + 1].min())
    assert v[_dim("dyn_ofi_sum_10m")] == pytest.approx(ofi[g - 19 : g + 1].sum(), rel=1e-5)
    assert v[_dim("dyn_barrier_change_5m")] == pytest.approx(
        col["barrier_log"][g] - col["barrier_log"][g - 10], rel=1e-5
    )
    assert v[_dim("ctx_history_frac")] == 1.0
    assert v[_dim("ctx_zone_minutes")] == pytest.approx(g * 0.5)
    # physics
    assert v[_dim("phys_ofi_x_barrier")] == pytest.approx(
        col["flow_ofi_60s"][g] * col["barrier_log"][g], rel=1e-5
    )
    # trajectory: orthonormal DCT-II of the last 40 steps (anchor included), 8 coefficients
    win = slice(g - 39, g + 1)
    tape = col["tape_imbalance_60s"] * sign * s_a
    want = dct_coefficients(np.stack([x[win], ofi[win], col["barrier_log"][win], tape[win]]), 8).reshape(-1)
    np.testing.assert_allclose(v[-32:], want, rtol=2e-6, atol=1e-6)


def test_early_anchor_has_a_short_padded_history() -> None:
    st = _state(10)
    v = vectors.build_vectors(st, _keys(st, [0, 5]))
    assert v[0, _dim("ctx_history_frac")] == np.float32(1 / 40)
    assert v[1, _dim("ctx_history_frac")] == np.float32(6 / 40)
    assert np.isnan(v[0, _dim("hist_distance_into_lag1")])
    assert np.isfinite(v[1, _dim("hist_distance_into_lag5")])
    # a window with a single sample is a constant: only its DC coefficient survives the DCT
    c = v[0, _dim("traj_distance_c0") : _dim("traj_distance_c7") + 1]
    assert c[0] == pytest.approx(np.sqrt(40) * st.column("distance")[0].as_py(), rel=1e-5)
    np.testing.assert_allclose(c[1:], 0.0, atol=1e-5)


def test_anchor_without_a_state_row_is_an_error() -> None:
    st = _state(10)
    bad = pa.table(
        {
            "date": [DAY],
            "ts": pa.array([OPEN + 20 * 30 * NS], TS),
            "level_kind": ["PM_HIGH"],
        }
    )
    with pytest.raises(ValueError, match="no state row"):
        vectors.build_vectors(st, bad)
    wrong_dir = _keys(st, [3]).set_column(3, "direction", pa.array(["DOWN"]))
    with pytest.raises(ValueError, match="direction"):
        vectors.build_vectors(st, wrong_dir)


# -- no lookahead ----------------------------------------------------------------------------------


def test_altering_state_after_an_anchor_leaves_its_vector_bit_identical() -> None:
    st = _state(120, seed=1)
    steps = [0, 7, 40, 63, 64]
    cut = 64
    base = vectors.build_vectors(st, _keys(st, steps))
    ts = st.column("ts").cast(pa.int64()).to_numpy()
    after = ts > OPEN + cut * 30 * NS
    rng = np.random.default_rng(9)
    altered = st
    for name in FEATURE_NAMES:
        i = altered.schema.get_field_index(name)
        vals = np.asarray(altered.column(name).to_numpy(), dtype=np.float64).copy()
        vals[after] = rng.normal(size=after.sum()) * 100
        altered = altered.set_column(i, name, pa.array(vals))
    flipped = altered.set_column(
        3,
        "direction",
        pa.array(np.where(after, "DOWN", st.column("direction").to_numpy(zero_copy_only=False))),
    )
    deleted = st.filter(pa.array(~after))
    for other in (altered, flipped, deleted):
        got = vectors.build_vectors(other, _keys(st, steps))
        assert got.tobytes() == base.tobytes()
    # and the past does matter (the test can fail): altering the anchor row changes the vector
    before = np.asarray(st.column("distance").to_numpy(), dtype=np.float64).copy()
    before[cut] += 0.5
    moved = st.set_column(st.schema.get_field_index("distance"), "distance", pa.array(before))
    assert vectors.build_vectors(moved, _keys(st, steps))[-1].tobytes() != base[-1].tobytes()


GEN_DAY = dt.date(2026, 4, 8)


@functools.cache
def _inputs() -> silver.SilverInputs:
    out: silver.SilverInputs = silver_inputs(GEN_DAY, scale=0.01, seed=5)  # type: ignore[assignment]
    return out


def _episodes(inp: silver.SilverInputs) -> pa.Table:
    out = silver.compute(inp)
    return gold.episodes(out.state, out.levels, out.bars_30s)


def _alter_after(table: pa.Table | None, t_ns: int, mode: str, seed: int) -> pa.Table | None:
    """Every record received after ``t_ns`` deleted, or given other prices, sizes and sides."""
    if table is None:
        return None
    after = table.column("ts_recv").cast(pa.int64()).to_numpy() > t_ns
    if mode == "delete":
        return table.filter(pa.array(~after))
    rng = np.random.default_rng(seed)
    shift = rng.choice([-3.0, -1.25, 2.5, 4.0], size=after.size) * after
    out = table
    for i, field in enumerate(table.schema):
        name = field.name
        if name == "price" or name.startswith(("bid_px", "ask_px")):
            v = np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64) + shift
            out = out.set_column(i, field, pa.array(v, field.type))
        elif name == "size" or name.startswith(("bid_sz", "ask_sz")):
            v = np.asarray(table.column(name).to_numpy(zero_copy_only=False)).copy()
            v[after] = rng.integers(1, 400, after.sum())
            out = out.set_column(i, field, pa.array(v, field.type))
        elif name == "side":
            v = np.asarray(table.column(name).to_pylist(), dtype=object)
            v[after] = rng.choice(["A", "B"], after.sum())
            out = out.set_column(i, field, pa.array(v.tolist(), field.type))
    return out


@pytest.mark.parametrize("mode", ["replace", "delete"])
def test_no_lookahead_from_the_records(mode: str) -> None:
    # Given a generated day's episodes and a cut time inside the query window
    inp = _inputs()
    base = _episodes(inp)
    cut = sessions.et_ns(GEN_DAY, dt.time(10, 47))
    # When every trade and book record after the cut is altered (or deleted)
    alt_inp = silver.SilverInputs(
        date=GEN_DAY,
        fut_definition=inp.fut_definition,
        fut_trades=_alter_after(inp.fut_trades, cut, mode, 1),
        fut_mbp10=_alter_after(inp.fut_mbp10, cut, mode, 2),
        opt_definition=inp.opt_definition,
        opt_statistics=inp.opt_statistics,
        opt_mbp1=_alter_after(inp.opt_mbp1, cut, mode, 3),
    )
    alt = _episodes(alt_inp)

    # Then the anchors up to the cut are the same episodes with bit-identical vectors ...
    def upto(t: pa.Table) -> pa.Table:
        return t.filter(pc.less_equal(t.column("ts").cast(pa.int64()), cut))

    b, a = upto(base), upto(alt)
    assert b.num_rows > 50
    assert b.column("episode_id").to_pylist() == a.column("episode_id").to_pylist()
    vb = vectors.vectors_from_arrow(b.column("vector"))
    va = vectors.vectors_from_arrow(a.column("vector"))
    assert vb.tobytes() == va.tobytes()
    # ... while labels (which look after the anchor) do change for anchors near the cut
    near = pc.greater(b.column("ts").cast(pa.int64()), cut - 20 * 60 * NS)
    fb = b.filter(near).column("fwd_20m").to_numpy()
    fa = a.filter(near).column("fwd_20m").to_numpy()
    assert not np.array_equal(fb, fa, equal_nan=True)
    # and the episodes after the cut differ (the alteration reached the pipeline)
    assert base.num_rows != alt.num_rows or base.column("episode_id") != alt.column("episode_id")


# -- nothing but features reaches the builder ---------------------------------------------------------


def test_no_outcome_column_can_reach_the_vector_builder() -> None:
    st = _state(20)
    keys = _keys(st, [10])
    ok = vectors.build_vectors(st, keys)
    assert ok.shape == (1, D)
    # the gold table itself (features' keys + outcomes) is refused
    bars = pa.table(
        {
            "ts": pa.array([OPEN + k * 30 * NS for k in range(100)], TS),
            "high": np.full(100, 99.0),
            "low": np.full(100, 97.0),
            "close": np.full(100, 98.0),
        }
    )
    ep = gold.episodes(st, None, bars)
    assert ep.num_rows > 0
    with pytest.raises(vectors.OutcomeLeakError, match="outcome"):
        vectors.build_vectors(ep, keys)
    with pytest.raises(vectors.OutcomeLeakError, match="outcome"):
        vectors.build_vectors(st, ep.select(["date", "ts", "level_kind", "direction", "label"]))
    # any single outcome column on either input is refused, whatever its content
    for name in gold.OUTCOME_COLUMNS:
        leaky = st.append_column(name, pa.array([0.0] * st.num_rows))
        with pytest.raises(vectors.OutcomeLeakError, match=name):
            vectors.build_vectors(leaky, keys)
        with pytest.raises(vectors.OutcomeLeakError, match=name):
            vectors.build_vectors(st, keys.append_column(name, pa.array([0.0])))
    # and so is anything outside the feature registry (a future price under an innocent name)
    with pytest.raises(vectors.OutcomeLeakError, match="registry"):
        vectors.build_vectors(st.append_column("next_close", pa.array([0.0] * st.num_rows)), keys)
    with pytest.raises(vectors.OutcomeLeakError, match="registry"):
        vectors.build_vectors(st, keys.append_column("episode_id", pa.array(["x"])))


# -- normalisation ---------------------------------------------------------------------------------


def test_fit_and_apply_robust_scaling() -> None:
    raw = np.zeros((5, D))
    raw[:, 0] = [1.0, 2.0, 3.0, 4.0, 5.0]  # median 3, IQR (linear) 4 − 2 = 2
    raw[:, 1] = [7.0, 7.0, 7.0, 7.0, 7.0]  # constant: IQR 0, std 0 → scale 1
    raw[:, 2] = [0.0, 0.0, 0.0, 0.0, 1.0]  # binary indicator: IQR 0 → std 0.4
    raw[:, 3] = np.nan  # never observed: centre 0, scale 1
    raw[:, 4] = [1.0, np.nan, 3.0, np.nan, 5.0]  # NaNs ignored: median 3, IQR 2
    s = vectors.fit_stats(raw, min_rows=1)
    assert (s.center[0], s.scale[0]) == (3.0, 2.0)
    assert (s.center[1], s.scale[1]) == (7.0, 1.0)
    assert (s.center[2], s.scale[2]) == pytest.approx((0.0, 0.4))
    assert (s.center[3], s.scale[3]) == (0.0, 1.0)
    assert (s.center[4], s.scale[4]) == (3.0, 2.0)
    assert not s.fallback
    q = np.zeros((3, D))
    q[:, 0] = [3.0, 100.0, np.nan]
    q[:, 1] = [8.0, -1e9, 7.0]
    out = vectors.apply(s, q)
    assert out.dtype == np.float32
    assert out.shape == (3, D)
    assert out[:, 0].tolist() == [0.0, 5.0, 0.0]  # clipped at +5; NaN → 0 after scaling
    assert out[:, 1].tolist() == [1.0, -5.0, 0.0]
    assert np.isfinite(out).all()
    assert vectors.apply(s, q[0]).shape == (D,)


def test_too_little_history_gives_the_documented_fallback() -> None:
    s = vectors.fit_stats(np.zeros((3, D)))  # fewer than min_rows
    assert s.fallback
    assert s.clip is None
    raw = np.full((1, D), 123.5)
    raw[0, 7] = np.nan
    out = vectors.apply(s, raw)
    assert out[0, 0] == 123.5  # identity, no clipping
    assert out[0, 7] == 0.0
    assert vectors.fit_stats_before({}, DAY).version == vectors.fallback_stats().version


def _days(n: int, rows: int = 30, seed: int = 0) -> dict[dt.date, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {d: rng.normal(size=(rows, D)) * (1 + i) for i, d in enumerate(sessions.trading_days(DAY, n))}


def test_stats_use_only_earlier_days_in_a_trailing_window() -> None:
    days = _days(25)
    dates = sorted(days)
    query = dates[22]
    s = vectors.fit_stats_before(days, query, window_days=20)
    assert s.window == tuple(d.isoformat() for d in dates[2:22])
    want = np.median(np.concatenate([days[d] for d in dates[2:22]]), axis=0)
    np.testing.assert_allclose(s.center, want)
    # changing the query day or any later day leaves the statistics (and their version) unchanged
    later = dict(days)
    for d in dates[22:]:
        later[d] = days[d] * 50 + 7
    assert vectors.fit_stats_before(later, query, window_days=20) == s
    # changing a day inside the window changes them; one before the window does not
    inside = {**days, dates[10]: days[dates[10]] + 1.0}
    assert vectors.fit_stats_before(inside, query, window_days=20).version != s.version
    outside = {**days, dates[1]: days[dates[1]] + 1.0}
    assert vectors.fit_stats_before(outside, query, window_days=20).version == s.version


def test_stats_version_is_stable_and_content_addressed(local_lake: Lake) -> None:
    days = _days(4)
    query = max(days) + dt.timedelta(days=1)
    a = vectors.fit_stats_before(days, query)
    b = vectors.fit_stats_before({d: v.copy() for d, v in reversed(list(days.items()))}, query)
    assert a.version == b.version
    assert len(a.version) == 16
    int(a.version, 16)
    assert vectors.fit_stats_before(days, query, clip=4.0).version != a.version
    assert vectors.fit_stats_before(days, query, window_days=3).version != a.version
    # stored in the lake under its version, read back identical
    path = vectors.save_stats(local_lake, a)
    assert path == paths.stats_file(a.version) == f"gold/_stats/{a.version}.json"
    assert vectors.load_stats(local_lake, a.version) == a
    doc = json.loads(local_lake.read_bytes(path))
    assert doc["version"] == a.version
    assert doc["dims"] == list(vectors.VECTOR_NAMES)
    assert doc["window"] == [d.isoformat() for d in sorted(days)]
    # a tampered file is detected
    doc["center"][0] += 1.0
    local_lake.write_json(path, doc)
    with pytest.raises(ValueError, match="version"):
        vectors.load_stats(local_lake, a.version)


def test_vectors_round_trip_through_arrow() -> None:
    m = np.random.default_rng(3).normal(size=(4, D)).astype(np.float32)
    m[1, 5] = np.nan
    arr = vectors.vectors_to_arrow(m)
    assert arr.type == vectors.VECTOR_TYPE
    back = vectors.vectors_from_arrow(pa.chunked_array([arr.slice(0, 2), arr.slice(2)]))
    assert back.tobytes() == m.tobytes()
    with pytest.raises(ValueError, match="expected"):
        vectors.vectors_to_arrow(np.zeros((2, 3)))


def test_docs_hold_the_vector_layout() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "GOLD.md").read_text()
    assert vectors.layout_markdown() in doc
    assert all(vectors.definition(n) for n in vectors.VECTOR_NAMES)

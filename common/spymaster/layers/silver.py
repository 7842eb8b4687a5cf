"""Silver: one trading date's bars, the six levels, and the level-relative state table.

The state table has one row per 30-second step from 09:30 to 12:30 ET and per *active* level,
with features in named groups (geometry, kinematics, flow, barrier, tape, dealer, context) so
later stages can weight and ablate them. Every value at step t uses only records stamped at or
before t (tested by altering the future and checking the past is bit-identical).

Warm-up comes from the date's own Globex session (from 18:00 ET the evening before): 465 two-
minute bars precede 09:30, far more than SMA-90, EMA-20 or ATR-14 need, so a date's silver needs
only that date's bronze and per-date jobs stay independent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from spymaster import sessions
from spymaster.errors import BadInputError, NotCommittedError
from spymaster.features import FEATURES, STATE_SCHEMA
from spymaster.indicators import bars, black76, dealer, flow
from spymaster.lake import Lake, check_shrink, commit, discard, is_committed, new_run_id, paths, read_manifest
from spymaster.lake.paths import SILVER_TABLES, Layer, data_file
from spymaster.levels import LEVEL_KINDS
from spymaster.partitions import time_bucket
from spymaster.sessions import NS, STEP_S, step_times
from spymaster.settings import PipelineSettings

FloatArray = npt.NDArray[np.float64]
KINEMATIC_SCALES_MIN = (1, 2, 5, 10, 20)
FLOW_WINDOWS_S = (30, 60, 120, 300)
GEX_WIDTHS = (5, 10, 15)
LOOKBACK_MIN = 3 * max(KINEMATIC_SCALES_MIN)
"""Jerk at the longest scale needs three spans of history before a step."""
OPEN_INTEREST = 9  # databento_dbn.StatType.OPEN_INTEREST


@dataclass(frozen=True)
class SilverInputs:
    """One date's bronze tables, already read (the core does no I/O)."""

    date: dt.date
    fut_definition: pa.Table
    fut_trades: pa.Table
    fut_mbp10: pa.Table
    opt_definition: pa.Table | None = None
    opt_statistics: pa.Table | None = None
    opt_mbp1: pa.Table | None = None


@dataclass(frozen=True)
class SilverTables:
    bars_30s: pa.Table
    bars_2m: pa.Table
    levels: pa.Table
    state: pa.Table
    front_month: str


# -- inputs ----------------------------------------------------------------------------------------


def front_month_id(definitions: pa.Table, date: dt.date) -> tuple[str, int]:
    """The front-month contract by the calendar roll rule, and its instrument id from definitions."""
    symbol = sessions.front_month(date).symbol
    syms = definitions.column("raw_symbol").to_pylist()
    if symbol not in syms:
        raise BadInputError(f"front month {symbol} has no definition", date=date, schema="definition")
    return symbol, int(definitions.column("instrument_id")[syms.index(symbol)].as_py())


def _only(table: pa.Table, instrument_id: int) -> pa.Table:
    return table.filter(pc.equal(table.column("instrument_id"), pa.scalar(instrument_id, pa.uint32())))


# -- levels ----------------------------------------------------------------------------------------


def compute_levels(
    date: dt.date,
    trade_ts: npt.NDArray[np.int64],
    trade_px: FloatArray,
    b2: pa.Table,
    q: npt.NDArray[np.int64],
    s: PipelineSettings,
) -> dict[str, FloatArray]:
    """Each level's value as known at each query time (NaN while not yet defined)."""
    pm_lo_ns = sessions.et_ns(date, dt.time.fromisoformat(s.premarket_start))
    open_ns = sessions.et_ns(date, sessions.RTH_OPEN)
    or_end_ns = sessions.et_ns(date, sessions.OR_END)

    def window_extreme(lo: int, hi: int) -> tuple[float, float]:
        a, b = np.searchsorted(trade_ts, [lo, hi], side="left")
        if b <= a:
            return np.nan, np.nan
        w = trade_px[a:b]
        return float(w.max()), float(w.min())

    pm_hi, pm_lo = window_extreme(pm_lo_ns, open_ns)
    or_hi, or_lo = window_extreme(open_ns, or_end_ns)
    fixed_pm = q >= open_ns
    fixed_or = q >= or_end_ns
    return {
        "PM_HIGH": np.where(fixed_pm, pm_hi, np.nan),
        "PM_LOW": np.where(fixed_pm, pm_lo, np.nan),
        "OR_HIGH": np.where(fixed_or, or_hi, np.nan),
        "OR_LOW": np.where(fixed_or, or_lo, np.nan),
        **bars.moving_average_levels(b2, q),
    }


# -- dealer ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chain:
    strikes: FloatArray
    is_call: npt.NDArray[np.bool_]
    expiry_ns: npt.NDArray[np.int64]
    oi: FloatArray
    mid: FloatArray  # [n_options, n_steps]


def _chain(inp: SilverInputs, q: npt.NDArray[np.int64]) -> _Chain | None:
    """0DTE lines with prior-day open interest and the last quote mid at or before each step."""
    if inp.opt_definition is None or inp.opt_statistics is None or inp.opt_mbp1 is None:
        return None
    d = inp.opt_definition
    if d.num_rows == 0:
        return None
    ids = np.asarray(d.column("instrument_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    strikes = bars.as_float(d.column("strike_price"))
    cls = np.asarray(d.column("instrument_class").to_pylist())
    expiry = bars.as_ns(d.column("expiration"))
    close_ns = sessions.et_ns(inp.date, dt.time(23, 59))
    keep = (
        np.isin(cls, ["C", "P"]) & (expiry <= close_ns) & (expiry >= sessions.et_ns(inp.date, dt.time(0, 0)))
    )
    ids, strikes, cls, expiry = ids[keep], strikes[keep], cls[keep], expiry[keep]
    order = np.argsort(ids)
    ids, strikes, cls, expiry = ids[order], strikes[order], cls[order], expiry[order]
    if ids.size == 0:
        return None
    # Prior-day open interest: the latest OI statistic published before the open.
    st = inp.opt_statistics
    st = st.filter(pc.equal(st.column("stat_type"), OPEN_INTEREST))
    open_ns = sessions.et_ns(inp.date, sessions.RTH_OPEN)
    st_ts = bars.as_ns(st.column("ts_recv"))
    st_ids = np.asarray(st.column("instrument_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    st_q = bars.as_float(st.column("quantity"))
    ok = st_ts <= open_ns
    oi = np.zeros(ids.size)
    o = np.lexsort((st_ts[ok], st_ids[ok]))
    sid, sq = st_ids[ok][o], st_q[ok][o]
    last = np.r_[sid[1:] != sid[:-1], True] if sid.size else np.zeros(0, dtype=bool)
    pos = np.searchsorted(ids, sid[last])
    inside = (pos < ids.size) & (ids[np.minimum(pos, ids.size - 1)] == sid[last])
    oi[pos[inside]] = np.nan_to_num(sq[last][inside])
    # Quote mids as of each step.
    m = inp.opt_mbp1
    m_ts = bars.as_ns(m.column("ts_recv"))
    m_ids = np.asarray(m.column("instrument_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    bid = bars.as_float(m.column("bid_px_00"))
    ask = bars.as_float(m.column("ask_px_00"))
    mid_q = np.where((bid > 0) & (ask >= bid), (bid + ask) / 2, np.nan)
    mid = np.full((ids.size, q.size), np.nan)
    o = np.lexsort((m_ts, m_ids))
    m_ts, m_ids, mid_q = m_ts[o], m_ids[o], mid_q[o]
    bounds = np.searchsorted(m_ids, ids, side="left"), np.searchsorted(m_ids, ids, side="right")
    for i, (a, b) in enumerate(zip(*bounds, strict=True)):
        if b > a:
            mid[i] = bars.asof(m_ts[a:b], mid_q[a:b], q)
    return _Chain(strikes=strikes, is_call=cls == "C", expiry_ns=expiry, oi=oi, mid=mid)


def _dealer_features(
    chain: _Chain | None,
    q: npt.NDArray[np.int64],
    fut_px: FloatArray,
    levels: FloatArray,
    atr: FloatArray,
    s: PipelineSettings,
) -> dict[str, FloatArray]:
    """Per (step, level): net GEX near the level and wall distances; all NaN without a chain."""
    n_steps, n_lv = levels.shape
    names = [f"dealer_gex_{w}" for w in GEX_WIDTHS] + [
        "dealer_gex_total",
        "dealer_call_wall_atr",
        "dealer_put_wall_atr",
    ]
    out = {k: np.full((n_steps, n_lv), np.nan) for k in names}
    if chain is None:
        return out
    tau = black76.year_fraction(q[None, :], chain.expiry_ns[:, None])
    fwd = np.broadcast_to(fut_px[None, :], chain.mid.shape)
    strike = np.broadcast_to(chain.strikes[:, None], chain.mid.shape)
    is_call = np.broadcast_to(chain.is_call[:, None], chain.mid.shape)
    iv = black76.implied_vol(chain.mid, fwd, strike, tau, s.risk_free_rate, is_call)
    g = black76.gamma(fwd, strike, tau, iv, s.risk_free_rate)
    gx = dealer.gex(g, chain.oi[:, None], fwd, is_call, convention=s.gex_convention)  # [n_opt, n_steps]
    scale = 1e9  # report in $bn of dollar gamma per 1 % move
    for j in range(n_steps):
        if not np.isfinite(fut_px[j]):
            continue
        col = gx[:, j]
        total = np.nansum(col) / scale
        w = dealer.walls(chain.strikes, col, chain.is_call)
        for wd in GEX_WIDTHS:
            out[f"dealer_gex_{wd}"][j] = dealer.net_gex_near(chain.strikes, col, levels[j], float(wd)) / scale
        out["dealer_gex_total"][j] = total
        out["dealer_call_wall_atr"][j] = (w.call_wall - levels[j]) / atr[j]
        out["dealer_put_wall_atr"][j] = (w.put_wall - levels[j]) / atr[j]
    return out


# -- the state table ---------------------------------------------------------------------------------


def _bar_end(start_ns: int, close_ns: int, seconds: int) -> int:
    """The session close rounded up to a whole number of bars from the open."""
    step = seconds * NS
    return start_ns + -(-(close_ns - start_ns) // step) * step


def compute(inp: SilverInputs, s: PipelineSettings | None = None) -> SilverTables:
    """Bars, levels and the state table for one date from its bronze tables."""
    s = s or PipelineSettings()
    date = inp.date
    symbol, fid = front_month_id(inp.fut_definition, date)
    tr = _only(inp.fut_trades, fid)
    t_ts = bars.as_ns(tr.column("ts_recv"))
    order = np.argsort(t_ts, kind="stable")
    t_ts = t_ts[order]
    t_px = bars.as_float(tr.column("price"))[order]
    t_sz = bars.as_float(tr.column("size"))[order]
    t_side = np.asarray(tr.column("side").to_numpy(zero_copy_only=False))[order]
    lo, hi = sessions.globex_session(date)
    # An early close (13:15 ET) need not fall on the 2-minute grid: the last bar runs past it.
    b30 = bars.time_bars(t_ts, t_px, t_sz, t_side, start_ns=lo, end_ns=_bar_end(lo, hi, 30), seconds=30)
    b2 = bars.time_bars(t_ts, t_px, t_sz, t_side, start_ns=lo, end_ns=_bar_end(lo, hi, 120), seconds=120)
    b2 = b2.append_column(
        "atr",
        pa.array(
            bars.wilder_atr(
                bars.as_float(b2.column("high")),
                bars.as_float(b2.column("low")),
                bars.as_float(b2.column("close")),
                s.atr_bars,
            )
        ),
    )

    q = step_times(date)
    n = q.size
    # A 30-second grid reaching back far enough for the slowest kinematics.
    back = LOOKBACK_MIN * 60 // STEP_S
    grid = np.concatenate([q[0] - np.arange(back, 0, -1, dtype=np.int64) * STEP_S * NS, q])
    lv_grid = compute_levels(date, t_ts, t_px, b2, grid, s)
    px_grid = bars.asof(t_ts, t_px, grid)
    atr = bars.asof(bars.as_ns(b2.column("ts")), bars.as_float(b2.column("atr")), q)
    price = px_grid[back:]
    level_mat = np.stack([lv_grid[k][back:] for k in LEVEL_KINDS], axis=1)  # [n, 6]

    # Book and tape for the RTH window (plus the longest flow window before it).
    mb = _only(inp.fut_mbp10, fid)
    mb_ts = bars.as_ns(mb.column("ts_recv"))
    keep_from = np.searchsorted(mb_ts, q[0] - (max(FLOW_WINDOWS_S) + 120) * NS, side="left")
    keep_to = np.searchsorted(mb_ts, q[-1], side="right")
    mb = mb.slice(keep_from, keep_to - keep_from)
    ofi = flow.ofi_at(mb, q, FLOW_WINDOWS_S)
    book = _book_features(mb, q)
    opp_band = {side: flow.book_side_band(mb, q, side, 2 * s.barrier_ticks + 1) for side in ("ask", "bid")}
    chain = _chain(inp, q)
    dealer_f = _dealer_features(chain, q, price, level_mat, atr, s)

    is_buy = t_side == "B"
    is_sell = t_side == "A"
    buy_vol = {w: flow.rolling_sum_at(t_ts, t_sz * is_buy, q, w) for w in (60, 300)}
    sell_vol = {w: flow.rolling_sum_at(t_ts, t_sz * is_sell, q, w) for w in (60, 300)}
    n_trades_60 = flow.rolling_sum_at(t_ts, np.ones_like(t_sz), q, 60)
    open_ns = sessions.et_ns(date, sessions.RTH_OPEN)
    i_open = int(np.searchsorted(t_ts, open_ns, side="left"))
    rth_open_px = float(t_px[i_open]) if i_open < t_px.size else np.nan
    globex_open_px = float(t_px[0]) if t_px.size else np.nan
    cum_hi = np.fmax.accumulate(np.where(t_ts >= open_ns, t_px, -np.inf)) if t_px.size else t_px
    cum_lo = np.fmin.accumulate(np.where(t_ts >= open_ns, t_px, np.inf)) if t_px.size else t_px
    with np.errstate(invalid="ignore"):
        rth_range = bars.asof(t_ts, cum_hi, q) - bars.asof(t_ts, cum_lo, q)
    rth_range = np.where(np.isfinite(rth_range), rth_range, np.nan)  # no RTH trade yet
    b30_ts = bars.as_ns(b30.column("ts"))
    b30_hi, b30_lo = bars.as_float(b30.column("high")), bars.as_float(b30.column("low"))
    b30_at_q = np.searchsorted(b30_ts, q, side="right")  # bars with close <= t

    rows: dict[str, list[Any]] = {f.name: [] for f in STATE_SCHEMA}
    minutes = (q - open_ns) / (60 * NS)
    or_width = (lv_grid["OR_HIGH"][back:] - lv_grid["OR_LOW"][back:]) / atr
    gap = (rth_open_px - globex_open_px) / atr
    for li, kind in enumerate(LEVEL_KINDS):
        lvl_grid = lv_grid[kind]
        lvl = lvl_grid[back:]
        active = np.isfinite(lvl) & np.isfinite(price) & np.isfinite(atr) & (atr > 0)
        if not active.any():
            continue
        d = (price - lvl) / atr
        side = np.sign(d)
        # At exactly the level, keep the side it was on (approach direction does not flip on a touch).
        for j in range(1, n):
            if side[j] == 0:
                side[j] = side[j - 1]
        up = side <= 0
        sgn = np.where(up, 1.0, -1.0)
        # Kinematics of price relative to the level, in ATR per minute, all causal.
        kin: dict[str, FloatArray] = {}
        for m in KINEMATIC_SCALES_MIN:
            k = m * 60 // STEP_S

            idx = np.arange(back, back + n)
            v0, v1, v2 = (_rel_move(px_grid, lvl_grid, idx, idx - j * k, k, m) for j in range(3))
            kin[f"kin_vel_{m}m"] = sgn * v0 / atr
            kin[f"kin_acc_{m}m"] = sgn * (v0 - v1) / m / atr
            kin[f"kin_jerk_{m}m"] = sgn * ((v0 - v1) - (v1 - v2)) / (m * m) / atr
        # Touches: 30-s bars since the level became active whose range held the level.
        b_level = bars.asof(grid, lvl_grid, b30_ts)
        touched = (b30_lo <= b_level) & (b_level <= b30_hi)
        cum_touch = np.cumsum(touched)
        touches = np.where(b30_at_q > 0, cum_touch[np.maximum(b30_at_q - 1, 0)], 0)
        # Confluence with the other levels.
        others = np.delete(level_mat, li, axis=1)
        rel_other = (others - lvl[:, None]) / atr[:, None]
        with np.errstate(invalid="ignore"):
            nearest = np.where(np.isfinite(rel_other), np.abs(rel_other), np.inf)
            k_near = np.argmin(nearest, axis=1)
            nearest_rel = rel_other[np.arange(n), k_near]
            nearest_rel = np.where(np.isfinite(nearest[np.arange(n), k_near]), nearest_rel, np.nan)
            confl = np.sum(nearest <= 1.0, axis=1).astype(np.float64)
        # Barrier: resting size near the level on the side the approach must consume.
        ask_depth = flow.book_depth_near(mb, q, lvl, "ask", s.barrier_ticks)
        bid_depth = flow.book_depth_near(mb, q, lvl, "bid", s.barrier_ticks)
        depth = np.where(up, ask_depth, bid_depth)
        opposite = np.where(up, opp_band["bid"], opp_band["ask"])
        wall = np.where(
            up,
            flow.wall_prominence(mb, q, lvl, "ask", s.barrier_ticks),
            flow.wall_prominence(mb, q, lvl, "bid", s.barrier_ticks),
        )
        past = {}
        for lag in (60, 120):
            a_p = flow.book_depth_near(mb, q - lag * NS, lvl, "ask", s.barrier_ticks)
            b_p = flow.book_depth_near(mb, q - lag * NS, lvl, "bid", s.barrier_ticks)
            past[lag] = np.log1p(np.where(up, a_p, b_p))
        # Tape near the level.
        near_vol = {w: np.zeros(n) for w in (60, 300)}
        for j in range(n):
            if not active[j]:
                continue
            band = s.tape_near_atr * atr[j]
            for w in (60, 300):
                a, b = np.searchsorted(t_ts, [q[j] - w * NS, q[j]], side="right")
                sl = t_px[a:b]
                near_vol[w][j] = t_sz[a:b][np.abs(sl - lvl[j]) <= band].sum()
        feats: dict[str, FloatArray | npt.NDArray[Any]] = {
            "distance": d,
            "abs_distance": np.abs(d),
            "in_zone": (np.abs(d) <= s.zone_atr).astype(np.float64),
            "touches": touches.astype(np.float64),
            "confluence_n": confl,
            "nearest_other_atr": nearest_rel,
            "or_width_atr": or_width,
            "gap_atr": np.full(n, gap) if np.ndim(gap) == 0 else gap,
            **kin,
            **{f"flow_ofi_{w}s": sgn * ofi[f"ofi_norm_{w}s"] for w in FLOW_WINDOWS_S},
            **{f"flow_mlofi_{w}s": sgn * ofi[f"mlofi_norm_{w}s"] for w in FLOW_WINDOWS_S},
            "barrier_depth": depth,
            "barrier_log": np.log1p(depth),
            "barrier_change_60s": np.log1p(depth) - past[60],
            "barrier_change_120s": np.log1p(depth) - past[120],
            **{k: (sgn * v if k in _BOOK_SIGNED else v) for k, v in book.items()},
            "book_level_vs_opposite": np.log1p(depth) - np.log1p(opposite),
            "book_wall_prominence": wall,
            "tape_near_vol_60s": np.log1p(near_vol[60]),
            "tape_near_vol_300s": np.log1p(near_vol[300]),
            **{
                f"tape_imbalance_{w}s": sgn * _ratio(buy_vol[w] - sell_vol[w], buy_vol[w] + sell_vol[w])
                for w in (60, 300)
            },
            "tape_rate_60s": n_trades_60 / 60.0,
            **{k: v[:, li] for k, v in dealer_f.items()},
            "dealer_missing": np.full(n, chain is None, dtype=np.float64),
            "ctx_minutes": minutes,
            "ctx_atr_points": atr,
            "ctx_rth_range_atr": rth_range / atr,
            "ctx_level_is_dynamic": np.full(n, kind in ("SMA_90", "EMA_20"), dtype=np.float64),
        }
        sel = np.flatnonzero(active)
        rows["date"].extend([date] * sel.size)
        rows["ts"].extend(q[sel].tolist())
        rows["level_kind"].extend([kind] * sel.size)
        rows["direction"].extend(np.where(up[sel], "UP", "DOWN").tolist())
        rows["time_bucket"].extend(time_bucket(minutes[sel]).tolist())
        rows["level_price"].extend(lvl[sel].tolist())
        rows["price"].extend(price[sel].tolist())
        for f in FEATURES:
            rows[f.name].extend(np.asarray(feats[f.name], dtype=np.float64)[sel].tolist())
    # Missing is null, never NaN: nulls survive Parquet and compare equal, NaN does neither.
    state = pa.table(
        {f.name: pa.array(rows[f.name], type=f.type, from_pandas=True) for f in STATE_SCHEMA},
        schema=STATE_SCHEMA,
    )
    state = state.sort_by([("ts", "ascending"), ("level_kind", "ascending")])
    levels_tbl = pa.table(
        {
            "ts": pa.array(q, pa.timestamp("ns", tz="UTC")),
            **{k: pa.array(v[back:], from_pandas=True) for k, v in lv_grid.items()},
            "price": pa.array(price, from_pandas=True),
            "atr": pa.array(atr, from_pandas=True),
        }
    )
    return SilverTables(
        bars_30s=_nan_to_null(b30),
        bars_2m=_nan_to_null(b2),
        levels=levels_tbl,
        state=state,
        front_month=symbol,
    )


_BOOK_SIGNED = frozenset(
    [f"book_imb_{n}{x}" for n in flow.BOOK_IMBALANCE_LEVELS for x in ("", "_30s", "_60s", "_chg_60s")]
    + ["book_micro_ticks", "book_micro_ticks_30s"]
)


def _book_features(mb: pa.Table, q: npt.NDArray[np.int64]) -> dict[str, FloatArray]:
    """Level-independent book-shape features at each step (unsigned; silver signs them per level)."""
    shape = flow.book_shape(mb)
    ts = shape.pop("ts").astype(np.int64)
    out: dict[str, FloatArray] = {}
    for n in flow.BOOK_IMBALANCE_LEVELS:
        v = shape[f"imb_{n}"]
        now = bars.asof(ts, v, q)
        out[f"book_imb_{n}"] = now
        out[f"book_imb_{n}_30s"] = flow.time_mean_at(ts, v, q, 30)
        out[f"book_imb_{n}_60s"] = flow.time_mean_at(ts, v, q, 60)
        out[f"book_imb_{n}_chg_60s"] = now - bars.asof(ts, v, q - 60 * NS)
    out["book_micro_ticks"] = bars.asof(ts, shape["micro_ticks"], q)
    out["book_micro_ticks_30s"] = flow.time_mean_at(ts, shape["micro_ticks"], q, 30)
    out["book_spread_ticks"] = bars.asof(ts, shape["spread_ticks"], q)
    out["book_depth_log"] = bars.asof(ts, shape["depth_log"], q)
    return out


def _nan_to_null(table: pa.Table) -> pa.Table:
    """Missing is null in stored tables (NaN never compares equal, and means "computed, invalid")."""
    cols = [
        pa.array(c.to_numpy(), type=c.type, from_pandas=True) if pa.types.is_floating(c.type) else c
        for c in table.columns
    ]
    return pa.table(cols, schema=table.schema)


def _rel_move(
    px: FloatArray,
    lvl: FloatArray,
    idx_ref: npt.NDArray[np.int64],
    idx_now: npt.NDArray[np.int64],
    lag: int,
    minutes: int,
) -> FloatArray:
    """Price move relative to the level over ``lag`` steps ending at ``idx_now``, points per minute.

    A level not yet fixed (PM before 09:30, OR before 09:45) counts as not moving: its missing
    values are filled with the level as of the reference step, which is never later than now.
    """
    ref = lvl[idx_ref]
    l_now = np.where(np.isfinite(lvl[idx_now]), lvl[idx_now], ref)
    l_then = np.where(np.isfinite(lvl[idx_now - lag]), lvl[idx_now - lag], ref)
    out: FloatArray = ((px[idx_now] - px[idx_now - lag]) - (l_now - l_then)) / minutes
    return out


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, 0.0)


# -- the job ---------------------------------------------------------------------------------------

_BOOK_COLUMNS = ["ts_recv", "instrument_id"] + [
    f"{side}_{kind}_{i:02d}" for i in range(10) for side in ("bid", "ask") for kind in ("px", "sz")
]


def load_inputs(lake: Lake, date: dt.date) -> SilverInputs:
    """Read the committed bronze a date's silver needs; only the columns and rows it uses.

    Options tables are optional (``None`` when not committed): dealer features are then missing.
    MBP-10 is read only from 09:30 ET minus the longest flow window, pruned by row-group statistics,
    so memory stays bounded whatever the size of the overnight book.
    """

    def read(
        table: str, columns: list[str] | None = None, filters: Any = None, required: bool = True
    ) -> pa.Table | None:
        if not is_committed(lake, Layer.BRONZE, table, date):
            if required:
                raise NotCommittedError(f"bronze {table} is not committed", date=date)
            return None
        files = read_manifest(lake, Layer.BRONZE, table, date).files
        return lake.read_parquet(files, columns=columns, filters=filters)

    steps = step_times(date)
    book_from = pa.scalar(int(steps[0]) - (max(FLOW_WINDOWS_S) + 180) * NS, pa.timestamp("ns", tz="UTC"))
    book_to = pa.scalar(int(steps[-1]), pa.timestamp("ns", tz="UTC"))
    fut_def = read(paths.FUT_DEFINITION.bronze_table, ["raw_symbol", "instrument_id"])
    fut_trades = read(paths.FUT_TRADES.bronze_table, ["ts_recv", "instrument_id", "price", "size", "side"])
    fut_mbp10 = read(
        paths.FUT_MBP10.bronze_table,
        _BOOK_COLUMNS,
        [("ts_recv", ">=", book_from), ("ts_recv", "<=", book_to)],
    )
    assert fut_def is not None
    assert fut_trades is not None
    assert fut_mbp10 is not None
    return SilverInputs(
        date=date,
        fut_definition=fut_def,
        fut_trades=fut_trades,
        fut_mbp10=fut_mbp10,
        opt_definition=read(
            paths.OPT_DEFINITION.bronze_table,
            ["instrument_id", "strike_price", "instrument_class", "expiration"],
            required=False,
        ),
        opt_statistics=read(
            paths.OPT_STATISTICS.bronze_table,
            ["ts_recv", "instrument_id", "stat_type", "quantity"],
            required=False,
        ),
        opt_mbp1=read(
            paths.OPT_MBP1.bronze_table,
            ["ts_recv", "instrument_id", "bid_px_00", "ask_px_00"],
            required=False,
        ),
    )


def build(
    lake: Lake, date: dt.date, settings: PipelineSettings | None = None, *, allow_shrink: bool = False
) -> SilverTables:
    """Compute and commit a date's silver tables (``state`` last, as the date's commit marker).

    Refuses (``ShrinkError``, before committing any table) to replace a committed table with one
    of far fewer rows unless ``allow_shrink``.
    """
    s = settings or PipelineSettings()
    out = compute(load_inputs(lake, date), s)
    if not allow_shrink:
        for name in SILVER_TABLES:
            check_shrink(lake, Layer.SILVER, name, date, getattr(out, name).num_rows)
    run_id = new_run_id()
    written: list[str] = []
    try:
        for name in SILVER_TABLES:
            table: pa.Table = getattr(out, name)
            path = data_file(Layer.SILVER, name, date, run_id, 0)
            written.append(path)
            lake.write_parquet(path, table, compression="zstd", row_group_size=1 << 20)
        for name, path in zip(SILVER_TABLES, written, strict=True):
            commit(
                lake,
                Layer.SILVER,
                name,
                date,
                run_id,
                [path],
                getattr(out, name).num_rows,
                inputs={"front_month": out.front_month},
                stats={"settings": s.model_dump()},
                allow_shrink=True,  # checked for every table above
            )
    except BaseException:
        discard(lake, written)
        raise
    return out

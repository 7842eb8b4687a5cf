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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from spymaster import sessions
from spymaster.errors import BadInputError, NotCommittedError
from spymaster.features import FEATURES, STATE_SCHEMA
from spymaster.indicators import bars, flow
from spymaster.lake import Lake, check_shrink, commit, discard, is_committed, new_run_id, paths, read_manifest
from spymaster.lake.paths import SILVER_TABLES, Layer, data_file
from spymaster.layers import silver_dealer
from spymaster.layers.silver_book import (
    BOOK_COLUMNS,
    BOOK_FEATURES,
    BOOK_SIGNED,
    FLOW_WINDOWS_S,
    BookWindow,
    Grow,
)
from spymaster.levels import LEVEL_KINDS
from spymaster.partitions import time_bucket
from spymaster.sessions import NS, STEP_S, step_times
from spymaster.settings import PipelineSettings

FloatArray = npt.NDArray[np.float64]
KINEMATIC_SCALES_MIN = (1, 2, 5, 10, 20)
LOOKBACK_MIN = 3 * max(KINEMATIC_SCALES_MIN)
"""Jerk at the longest scale needs three spans of history before a step."""


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
    ids = table.column("instrument_id")
    if table.num_rows:
        mm = pc.min_max(ids)
        if mm["min"].as_py() == mm["max"].as_py() == instrument_id:
            return table  # one instrument already (a live feed's usual batch): no copy
    return table.filter(pc.equal(ids, pa.scalar(instrument_id, pa.uint32())))


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


# -- the state table: silver as an engine over steps ---------------------------------------------


@dataclass
class StepOutput:
    """What one engine step produced: the levels row at ``ts`` and the state rows (one per active level)."""

    ts: int
    levels: dict[str, float]
    state: pa.Table


class SilverEngine:
    """Silver as a machine that consumes a date's records in arrival order and completes 30-s steps.

    Batch silver feeds it a whole day (trades at once, the book in row-group chunks); live feeds it
    records as they arrive. Either way step t is computed once, when every record stamped <= t is in
    (the caller's clock has passed t), from the same inputs: trades stamped <= t (the session's
    trades are kept: bars, levels and ATR recurse over them), and the book states stamped in
    [t − 420 s, t] (older states are dropped, so memory does not grow with the day). Steps completed
    together are vectorised over the trade series; book windows are cut per step, so the numbers
    do not depend on how the records were grouped.
    """

    def __init__(
        self,
        date: dt.date,
        fut_definition: pa.Table,
        s: PipelineSettings | None = None,
        *,
        opt_definition: pa.Table | None = None,
        opt_statistics: pa.Table | None = None,
    ) -> None:
        self.date = date
        self.s = s or PipelineSettings()
        self.symbol, self.front_id = front_month_id(fut_definition, date)
        self.steps = step_times(date)
        self.done = 0
        """Steps completed so far (``steps[:done]``)."""
        self._t_ts, self._t_px = Grow(np.int64), Grow(np.float64)
        self._t_sz, self._t_side = Grow(np.float64), Grow(np.uint8)
        self._book = BookWindow()
        self._trim_due = False
        self._chains = silver_dealer.Chains(date, opt_definition)
        self._opt_stats = opt_statistics
        self._opt_quotes: list[pa.Table] = []
        self._quotes_kept = 0
        self._bar_cache: dict[int, tuple[pa.Table, int, float]] = {}
        self._prev_side = np.zeros(len(LEVEL_KINDS))  # 0: no step yet, nothing to carry
        self.outputs: list[StepOutput] = []
        self.keep_outputs = True

    # -- input ------------------------------------------------------------------------------------
    def add_trades(self, trades: pa.Table) -> None:
        """Trades (``ts_recv``, ``instrument_id``, ``price``, ``size``, ``side``) in arrival order."""
        tr = _only(trades, self.front_id)
        if tr.num_rows == 0:
            return
        self._t_ts.extend(bars.as_ns(tr.column("ts_recv")))
        self._t_px.extend(bars.as_float(tr.column("price")))
        self._t_sz.extend(bars.as_float(tr.column("size")))
        side = tr.column("side")
        if pa.types.is_integer(side.type):
            codes = np.asarray(side.to_numpy(zero_copy_only=False), dtype=np.uint8)
        else:
            side = side.cast(pa.string())
            codes = np.full(tr.num_rows, ord("N"), dtype=np.uint8)
            for c in ("A", "B"):
                codes[np.asarray(pc.fill_null(pc.equal(side, c), False).to_numpy(zero_copy_only=False))] = (
                    ord(c)
                )
        self._t_side.extend(codes)

    def add_book(self, book: pa.Table) -> None:
        """MBP-10 states (``ts_recv``, ``instrument_id`` and the 40 level columns) in arrival order."""
        self._trim_if_due()
        self._book.add(_only(book, self.front_id).select(["ts_recv", *BOOK_COLUMNS]))

    def add_option_quotes(self, quotes: pa.Table) -> None:
        """Options MBP-1 (``ts_recv``, ``instrument_id``, ``bid_px_00``, ``ask_px_00``)."""
        self._trim_if_due()
        if quotes.num_rows:
            self._opt_quotes.append(quotes.select(["ts_recv", "instrument_id", "bid_px_00", "ask_px_00"]))
            if (
                len(self._opt_quotes) >= 64
            ):  # a live feed's small tables: one, not thousands, by the first step
                self._opt_quotes = [pa.concat_tables(self._opt_quotes).combine_chunks()]

    def add_option_statistics(self, stats: pa.Table) -> None:
        cols = ["ts_recv", "instrument_id", "stat_type", "quantity"]
        if stats.num_rows:
            st = stats.select(cols)
            self._opt_stats = pa.concat_tables([self._opt_stats.select(cols), st]) if self._opt_stats else st

    # -- steps ------------------------------------------------------------------------------------
    def advance(self, now_ns: int) -> list[StepOutput]:
        """Complete every step stamped before ``now_ns`` (the stream has passed it)."""
        upto = int(np.searchsorted(self.steps, now_ns, side="left"))
        return self._complete(upto)

    def finish(self) -> list[StepOutput]:
        """Complete the remaining steps (the day's records are all in)."""
        return self._complete(self.steps.size)

    def _complete(self, upto: int) -> list[StepOutput]:
        if upto <= self.done:
            return []
        self._trim_if_due()
        q = self.steps[self.done : upto]
        out = self._compute(q)
        self.done = upto
        # Trimmed at the next input, not now: the step's caller (live: its answer) waits for this.
        self._trim_due = True
        if self.keep_outputs:
            self.outputs.extend(out)
        return out

    def _trim_if_due(self) -> None:
        if self._trim_due:
            self._trim_due = False
            self._trim()

    def _trim(self) -> None:
        """Drop book states no later step can read and option quotes superseded before the next step."""
        nxt = int(self.steps[self.done]) if self.done < self.steps.size else int(self.steps[-1]) + 1
        self._book.trim(nxt)
        n_quotes = sum(t.num_rows for t in self._opt_quotes)
        if n_quotes > max(4096, 2 * self._quotes_kept):
            qt = pa.concat_tables(self._opt_quotes)
            ts = bars.as_ns(qt.column("ts_recv"))
            ids = np.asarray(qt.column("instrument_id").to_numpy(zero_copy_only=False), dtype=np.int64)
            o = np.lexsort((ts, ids))
            ts_o, ids_o = ts[o], ids[o]
            done_ts = int(self.steps[self.done - 1]) if self.done else -1
            # A quote is superseded when the same option has a later quote that a past step saw.
            superseded = np.r_[(ids_o[1:] == ids_o[:-1]) & (ts_o[1:] <= done_ts), False]
            keep = np.sort(o[~superseded])
            self._opt_quotes = [qt.take(pa.array(keep, pa.int64()))]
            self._quotes_kept = keep.size

    def _trades_upto(
        self, t: int
    ) -> tuple[npt.NDArray[np.int64], FloatArray, FloatArray, npt.NDArray[np.uint8]]:
        n = int(np.searchsorted(self._t_ts.view(), t, side="right"))
        ts = self._t_ts.view(n)
        if n and np.any(ts[1:] < ts[:-1]):
            o = np.argsort(ts, kind="stable")
            return ts[o], self._t_px.view(n)[o], self._t_sz.view(n)[o], self._t_side.view(n)[o]
        return ts, self._t_px.view(n), self._t_sz.view(n), self._t_side.view(n)

    def _session_bars(
        self,
        seconds: int,
        upto: int,
        t_ts: npt.NDArray[np.int64],
        t_px: FloatArray,
        t_sz: FloatArray,
        t_side: npt.NDArray[np.uint8],
    ) -> pa.Table:
        """The session's bars up to ``upto`` from trades stamped <= it: bars closed by then are final, so
        they are kept and only the bars after them are rebuilt (the same ``time_bars``, with the
        last close carried into leading empty bars exactly as a whole-session call carries it)."""
        lo, hi = sessions.globex_session(self.date)
        end, step = _bar_end(lo, hi, seconds), seconds * NS
        prefix, start, carry = self._bar_cache.get(seconds, (None, lo, np.nan))
        closed = lo + (upto - lo) // step * step
        # Up to the bar in progress: the later ones would be empty, and no read at or before
        # ``upto`` reaches them (every series over bars is causal).
        stop = min(end, closed + step)
        i = int(np.searchsorted(t_ts, start, side="left"))
        new = bars.time_bars(
            t_ts[i:], t_px[i:], t_sz[i:], t_side[i:], start_ns=start, end_ns=stop, seconds=seconds
        )
        if prefix is not None and np.isfinite(carry):
            close = bars.as_float(new.column("close"))
            full = np.asarray(new.column("trades").to_numpy(), dtype=np.int64) > 0
            first = int(np.argmax(full)) if full.any() else close.size
            lead = np.arange(close.size) < first
            cols = {c: bars.as_float(new.column(c)).copy() for c in ("open", "high", "low", "close", "vwap")}
            for c, v in cols.items():
                v[lead] = carry
                new = new.set_column(new.schema.get_field_index(c), c, pa.array(v))
        table = pa.concat_tables([prefix, new]).combine_chunks() if prefix is not None else new
        ts = bars.as_ns(table.column("ts"))
        k = int(np.searchsorted(ts, closed, side="right"))
        if k:
            self._bar_cache[seconds] = (
                table.slice(0, k),
                int(ts[k - 1]),
                float(bars.as_float(table.column("close"))[k - 1]),
            )
        return table

    def _compute(self, q: npt.NDArray[np.int64]) -> list[StepOutput]:
        """The steps ``q`` (consecutive, all complete): trade series vectorised, book per step."""
        s, date = self.s, self.date
        n = q.size
        t_ts, t_px, t_sz, t_side = self._trades_upto(int(q[-1]))
        b30 = self._session_bars(30, int(q[-1]), t_ts, t_px, t_sz, t_side)
        b2 = _with_atr(self._session_bars(120, int(q[-1]), t_ts, t_px, t_sz, t_side), s)
        # A 30-second grid reaching back far enough for the slowest kinematics.
        back = LOOKBACK_MIN * 60 // STEP_S
        grid = np.concatenate([q[0] - np.arange(back, 0, -1, dtype=np.int64) * STEP_S * NS, q])
        # The levels at the grid and at the 30-s bars the touches count, in one call (pointwise in time).
        b30_ts = bars.as_ns(b30.column("ts"))
        touch_from = int(self.steps[0]) - back * STEP_S * NS
        b30_used = b30_ts[(b30_ts >= touch_from) & (b30_ts <= q[-1])]
        lv_both = compute_levels(date, t_ts, t_px, b2, np.concatenate([grid, b30_used]), s)
        lv_grid = {k: v[: grid.size] for k, v in lv_both.items()}
        lv_b30 = {k: v[grid.size :] for k, v in lv_both.items()}
        px_grid = bars.asof(t_ts, t_px, grid)
        atr = bars.asof(bars.as_ns(b2.column("ts")), bars.as_float(b2.column("atr")), q)
        price = px_grid[back:]
        level_mat = np.stack([lv_grid[k][back:] for k in LEVEL_KINDS], axis=1)  # [n, 6]

        # Per step: the book window's OFI, book shape and the resting size near each level.
        dist = (price[:, None] - level_mat) / atr[:, None]
        side_now = np.sign(dist)
        book = self._book.features(q, level_mat, s)
        chain = self._chain(q)
        dealer_f = silver_dealer.features(chain, q, price, level_mat, atr, s)

        is_buy = t_side == ord("B")
        is_sell = t_side == ord("A")
        # Sums of whole contracts are exact from any origin: start at the longest window.
        w0 = int(np.searchsorted(t_ts, q[0] - 300 * NS, side="right"))
        r_ts, r_sz = t_ts[w0:], t_sz[w0:]
        buy_vol = {w: flow.rolling_sum_at(r_ts, r_sz * is_buy[w0:], q, w) for w in (60, 300)}
        sell_vol = {w: flow.rolling_sum_at(r_ts, r_sz * is_sell[w0:], q, w) for w in (60, 300)}
        n_trades_60 = flow.rolling_sum_at(r_ts, np.ones_like(r_sz), q, 60)
        # Counts of aggressor trades: the tilt of who trades without the noise of how much each trade is.
        buy_n = {w: flow.rolling_sum_at(r_ts, is_buy[w0:].astype(np.float64), q, w) for w in (60, 120)}
        sell_n = {w: flow.rolling_sum_at(r_ts, is_sell[w0:].astype(np.float64), q, w) for w in (60, 120)}
        open_ns = sessions.et_ns(date, sessions.RTH_OPEN)
        i_open = int(np.searchsorted(t_ts, open_ns, side="left"))
        # The RTH open price is known once its trade is (at a step stamped at or after it).
        rth_open_px = np.full(n, np.nan)
        if i_open < t_ts.size:
            rth_open_px[q >= t_ts[i_open]] = t_px[i_open]
        globex_open_px = float(t_px[0]) if t_px.size else np.nan
        rth_ts, rth_px = t_ts[i_open:], t_px[i_open:]
        cum_hi = np.fmax.accumulate(rth_px) if rth_px.size else rth_px
        cum_lo = np.fmin.accumulate(rth_px) if rth_px.size else rth_px
        with np.errstate(invalid="ignore"):
            rth_range = bars.asof(rth_ts, cum_hi, q) - bars.asof(rth_ts, cum_lo, q)
        rth_range = np.where(np.isfinite(rth_range), rth_range, np.nan)  # no RTH trade yet
        b30_hi, b30_lo = bars.as_float(b30.column("high")), bars.as_float(b30.column("low"))
        b30_at_q = np.searchsorted(b30_ts, q, side="right")  # bars with close <= t
        # Touches count from the start of the kinematics grid of the first step (08:30 ET): b30_used.

        made: dict[str, tuple[npt.NDArray[np.bool_], FloatArray, npt.NDArray[np.bool_], dict[str, Any]]] = {}
        minutes = (q - open_ns) / (60 * NS)
        or_width = (lv_grid["OR_HIGH"][back:] - lv_grid["OR_LOW"][back:]) / atr
        gap = (rth_open_px - globex_open_px) / atr
        for li, kind in enumerate(LEVEL_KINDS):
            lvl_grid = lv_grid[kind]
            lvl = lvl_grid[back:]
            active = np.isfinite(lvl) & np.isfinite(price) & np.isfinite(atr) & (atr > 0)
            d = dist[:, li]
            side = side_now[:, li].copy()
            # At exactly the level, keep the side it was on (approach direction does not flip on a touch).
            prev = self._prev_side[li]
            for j in range(n):
                if side[j] == 0:
                    side[j] = prev
                prev = side[j]
            self._prev_side[li] = prev
            up = side <= 0
            sgn = np.where(up, 1.0, -1.0)
            if not active.any():
                continue
            kin: dict[str, FloatArray] = {}
            for m in KINEMATIC_SCALES_MIN:
                k = m * 60 // STEP_S
                idx = np.arange(back, back + n)
                v0, v1, v2 = (_rel_move(px_grid, lvl_grid, idx, idx - j * k, k, m) for j in range(3))
                kin[f"kin_vel_{m}m"] = sgn * v0 / atr
                kin[f"kin_acc_{m}m"] = sgn * (v0 - v1) / m / atr
                kin[f"kin_jerk_{m}m"] = sgn * ((v0 - v1) - (v1 - v2)) / (m * m) / atr
            # Touches: 30-s bars since the level became active whose range held the level.
            b_level = np.full(b30_ts.size, np.nan)
            b_level[np.searchsorted(b30_ts, b30_used)] = lv_b30[kind]
            touched = (b30_lo <= b_level) & (b_level <= b30_hi)
            cum_touch = np.cumsum(touched)
            touches = np.where(b30_at_q > 0, cum_touch[np.maximum(b30_at_q - 1, 0)], 0)
            others = np.delete(level_mat, li, axis=1)
            rel_other = (others - lvl[:, None]) / atr[:, None]
            with np.errstate(invalid="ignore"):
                nearest = np.where(np.isfinite(rel_other), np.abs(rel_other), np.inf)
                k_near = np.argmin(nearest, axis=1)
                nearest_rel = rel_other[np.arange(n), k_near]
                nearest_rel = np.where(np.isfinite(nearest[np.arange(n), k_near]), nearest_rel, np.nan)
                confl = np.sum(nearest <= 1.0, axis=1).astype(np.float64)
            # Barrier: resting size near the level on the side the approach must consume.
            depth = np.where(up, book["ask_depth"][:, li], book["bid_depth"][:, li])
            opposite = np.where(up, book["bid_band"], book["ask_band"])
            wall = np.where(up, book["ask_wall"][:, li], book["bid_wall"][:, li])
            own_tick = np.where(up, book["ask_tick"][:, li], book["bid_tick"][:, li])
            past = {
                lag: np.log1p(np.where(up, book[f"ask_depth_{lag}"][:, li], book[f"bid_depth_{lag}"][:, li]))
                for lag in (60, 120)
            }
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
                "gap_atr": gap,
                **kin,
                **{f"flow_ofi_{w}s": sgn * book[f"ofi_norm_{w}s"] for w in FLOW_WINDOWS_S},
                **{f"flow_mlofi_{w}s": sgn * book[f"mlofi_norm_{w}s"] for w in FLOW_WINDOWS_S},
                "barrier_depth": depth,
                "barrier_log": np.log1p(depth),
                "barrier_change_60s": np.log1p(depth) - past[60],
                "barrier_change_120s": np.log1p(depth) - past[120],
                "barrier_tick_prominence": own_tick,
                **{k: (sgn * book[k] if k in BOOK_SIGNED else book[k]) for k in BOOK_FEATURES},
                "book_level_vs_opposite": np.log1p(depth) - np.log1p(opposite),
                "book_wall_prominence": wall,
                "tape_near_vol_60s": np.log1p(near_vol[60]),
                "tape_near_vol_300s": np.log1p(near_vol[300]),
                **{
                    f"tape_imbalance_{w}s": sgn * _ratio(buy_vol[w] - sell_vol[w], buy_vol[w] + sell_vol[w])
                    for w in (60, 300)
                },
                **{
                    f"tape_count_imb_{w}s": sgn * _ratio(buy_n[w] - sell_n[w], buy_n[w] + sell_n[w])
                    for w in (60, 120)
                },
                "tape_rate_60s": n_trades_60 / 60.0,
                **{k: v[:, li] for k, v in dealer_f.items()},
                "dealer_missing": np.full(n, chain is None, dtype=np.float64),
                "ctx_minutes": minutes,
                "ctx_atr_points": atr,
                "ctx_rth_range_atr": rth_range / atr,
                "ctx_level_is_dynamic": np.full(n, kind in ("SMA_90", "EMA_20"), dtype=np.float64),
            }
            made[kind] = (active, lvl, up, feats)
        state = _state_table(date, q, time_bucket(minutes), price, made)
        st_ts = bars.as_ns(state.column("ts"))
        bounds = np.searchsorted(st_ts, q, side="left"), np.searchsorted(st_ts, q, side="right")
        out = []
        for j in range(n):
            lv = {k: float(lv_grid[k][back + j]) for k in lv_grid}
            lv.update(price=float(price[j]), atr=float(atr[j]))
            a, b = int(bounds[0][j]), int(bounds[1][j])
            out.append(StepOutput(ts=int(q[j]), levels=lv, state=state.slice(a, b - a)))
        return out

    def _chain(self, q: npt.NDArray[np.int64]) -> silver_dealer.Chain | None:
        quotes = pa.concat_tables(self._opt_quotes).combine_chunks() if self._opt_quotes else None
        if quotes is not None:
            self._opt_quotes = [quotes]  # a live feed appends small tables: keep one, not hundreds
        return self._chains.at(q, self._opt_stats, quotes)

    def closed_bar(self, close_ns: int, seconds: int) -> pa.Table:
        """The bar of ``seconds`` closing at ``close_ns``, one row: from the bars the steps already
        built when they reach it (a bar closed is final), else built the way a step builds them
        (which keeps them for the steps)."""
        hit = self._bar_cache.get(seconds)
        if hit is not None and hit[1] >= close_ns:
            ts = bars.as_ns(hit[0].column("ts"))
            k = int(np.searchsorted(ts, close_ns, side="left"))
            if k < ts.size and ts[k] == close_ns:
                return hit[0].slice(k, 1)
        b = self._session_bars(seconds, close_ns, *self._trades_upto(close_ns))
        ts = bars.as_ns(b.column("ts"))
        k = int(np.searchsorted(ts, close_ns, side="left"))
        return b.slice(k, 1) if k < ts.size and ts[k] == close_ns else b.slice(b.num_rows)

    def rehearse(self, t_ns: int) -> None:
        """Compute a step at ``t_ns`` (before the first) and discard it, leaving the state as it was:
        the first real step then runs on warm paths (it ran ~2× the later ones: first touches of
        its arrays' memory). Live calls it during the warm-up; nothing it computes is kept but the
        bars closed by ``t_ns``, which are final."""
        prev = self._prev_side.copy()
        self._compute(np.array([t_ns], dtype=np.int64))
        self._prev_side = prev

    def prepare(self, now_ns: int) -> None:
        """Build the bars closed by ``now_ns`` (final: every trade at or before it is in), so the
        first step builds only the bars since, not the whole night's (live: during the warm-up)."""
        trades = self._trades_upto(now_ns)
        for seconds in (30, 120):
            self._session_bars(seconds, now_ns, *trades)

    # -- the batch tables -------------------------------------------------------------------------
    def tables(self) -> SilverTables:
        """The date's silver tables from every completed step and the session's trades."""
        s, date = self.s, self.date
        t_ts, t_px, t_sz, t_side = self._trades_upto(np.iinfo(np.int64).max)
        lo, hi = sessions.globex_session(date)
        b30 = bars.time_bars(t_ts, t_px, t_sz, t_side, start_ns=lo, end_ns=_bar_end(lo, hi, 30), seconds=30)
        b2 = _with_atr(
            bars.time_bars(t_ts, t_px, t_sz, t_side, start_ns=lo, end_ns=_bar_end(lo, hi, 120), seconds=120),
            s,
        )
        outs = self.outputs
        state = (
            pa.concat_tables([o.state for o in outs]).combine_chunks() if outs else STATE_SCHEMA.empty_table()
        )
        keys = list(outs[0].levels) if outs else [*LEVEL_KINDS, "price", "atr"]
        levels_tbl = pa.table(
            {
                "ts": pa.array([o.ts for o in outs], pa.timestamp("ns", tz="UTC")),
                **{
                    k: pa.array(np.array([o.levels[k] for o in outs], dtype=np.float64), from_pandas=True)
                    for k in keys
                },
            }
        )
        return SilverTables(
            bars_30s=_nan_to_null(b30),
            bars_2m=_nan_to_null(b2),
            levels=levels_tbl,
            state=state,
            front_month=self.symbol,
        )


def _state_table(
    date: dt.date,
    q: npt.NDArray[np.int64],
    bucket: npt.NDArray[Any],
    price: FloatArray,
    made: dict[str, tuple[npt.NDArray[np.bool_], FloatArray, npt.NDArray[np.bool_], dict[str, Any]]],
) -> pa.Table:
    """The state rows (one per step and active level) in the table's order, ts then level kind.

    Each column is a [step, level] matrix with the levels in name order, read row-major through the
    active mask: that is the order ``sort_by([ts, level_kind])`` gives, without the sort.
    """
    kinds = sorted(made)
    n = q.size
    mask = np.stack([made[k][0] for k in kinds], axis=1) if kinds else np.zeros((n, 0), dtype=bool)

    def pick(v: npt.NDArray[Any]) -> npt.NDArray[Any]:
        out: npt.NDArray[Any] = np.broadcast_to(v, mask.shape)[mask]
        return out

    rows = int(mask.sum())
    up = np.stack([made[k][2] for k in kinds], axis=1) if kinds else mask
    lvl = np.stack([made[k][1] for k in kinds], axis=1) if kinds else mask * 0.0
    # [step, level, feature] in one array, read through the mask: [row, feature], then by feature.
    names = [f.name for f in FEATURES]
    if kinds:
        cube = np.stack(
            [np.column_stack([made[k][3][x] for x in names]).astype(np.float64) for k in kinds], axis=1
        )
    else:
        cube = np.zeros((n, 0, len(names)))
    by_feature = np.ascontiguousarray(cube[mask].T)
    cols: dict[str, pa.Array] = {
        "date": pa.array([date] * rows, pa.date32()),
        "ts": pa.array(pick(q[:, None]), pa.timestamp("ns", tz="UTC")),
        "level_kind": pa.array(pick(np.array(kinds, dtype=object)[None, :]).tolist(), pa.string()),
        "direction": pa.array(np.where(up[mask], "UP", "DOWN").tolist(), pa.string()),
        "time_bucket": pa.array(pick(np.asarray(bucket)[:, None]), pa.int8()),
        "level_price": pa.array(lvl[mask], pa.float64()),
        "price": pa.array(pick(price[:, None]), pa.float64()),
    }
    for i, name in enumerate(names):
        # Missing is null, never NaN: nulls survive Parquet and compare equal, NaN does neither.
        cols[name] = pa.array(by_feature[i], pa.float64(), from_pandas=True)
    return pa.table([cols[f.name] for f in STATE_SCHEMA], schema=STATE_SCHEMA)


def _with_atr(b2: pa.Table, s: PipelineSettings) -> pa.Table:
    atr = bars.wilder_atr(
        bars.as_float(b2.column("high")),
        bars.as_float(b2.column("low")),
        bars.as_float(b2.column("close")),
        s.atr_bars,
    )
    return b2.append_column("atr", pa.array(atr))


def _bar_end(start_ns: int, close_ns: int, seconds: int) -> int:
    """The session close rounded up to a whole number of bars from the open."""
    step = seconds * NS
    return start_ns + -(-(close_ns - start_ns) // step) * step


BOOK_CHUNK_ROWS = 1 << 18
"""Batch silver feeds the book this many states at a time (one step's window is ~0.1 M states)."""


def compute(inp: SilverInputs, s: PipelineSettings | None = None) -> SilverTables:
    """Bars, levels and the state table for one date: the engine fed the whole day."""
    eng = SilverEngine(
        inp.date, inp.fut_definition, s, opt_definition=inp.opt_definition, opt_statistics=inp.opt_statistics
    )
    eng.add_trades(inp.fut_trades)
    if inp.opt_mbp1 is not None:
        eng.add_option_quotes(inp.opt_mbp1)
    feed_book(eng, inp.fut_mbp10.to_batches(BOOK_CHUNK_ROWS))
    return eng.tables()


def feed_book(eng: SilverEngine, batches: Iterable[pa.RecordBatch]) -> None:
    """Feed book chunks, completing the steps each chunk passes, then finish the day."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        eng.add_book(pa.Table.from_batches([batch]))
        eng.advance(int(bars.as_ns(batch.column("ts_recv"))[-1]))
    eng.finish()


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


def load_inputs(lake: Lake, date: dt.date, *, book: bool = True) -> SilverInputs:
    """Read the committed bronze a date's silver needs; only the columns and rows it uses.

    Options tables are optional (``None`` when not committed): dealer features are then missing.
    MBP-10 is read only from 09:30 ET minus the longest flow window, pruned by row-group statistics,
    so memory stays bounded whatever the size of the overnight book. ``book=False`` leaves MBP-10
    empty: the job streams it (:func:`book_batches`) instead of holding it.
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
        [("ts_recv", ">=", book_from), ("ts_recv", "<=", book_to)]
        if book
        else [("ts_recv", "<", book_from), ("ts_recv", ">", book_to)],
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


def book_batches(lake: Lake, date: dt.date) -> Iterator[pa.RecordBatch]:
    """The date's committed MBP-10 states silver reads (09:30 ET minus 480 s to 12:30), streamed."""
    if not is_committed(lake, Layer.BRONZE, paths.FUT_MBP10.bronze_table, date):
        raise NotCommittedError(f"bronze {paths.FUT_MBP10.bronze_table} is not committed", date=date)
    steps = step_times(date)
    files = read_manifest(lake, Layer.BRONZE, paths.FUT_MBP10.bronze_table, date).files
    yield from lake.iter_parquet(
        files,
        _BOOK_COLUMNS,
        ts_column="ts_recv",
        ts_from=int(steps[0]) - (max(FLOW_WINDOWS_S) + 180) * NS,
        ts_to=int(steps[-1]),
        batch_size=BOOK_CHUNK_ROWS,
    )


def compute_streamed(lake: Lake, date: dt.date, s: PipelineSettings) -> SilverTables:
    """Batch silver with the book streamed from bronze: peak memory is one window, not the day."""
    inp = load_inputs(lake, date, book=False)
    eng = SilverEngine(
        date, inp.fut_definition, s, opt_definition=inp.opt_definition, opt_statistics=inp.opt_statistics
    )
    eng.add_trades(inp.fut_trades)
    if inp.opt_mbp1 is not None:
        eng.add_option_quotes(inp.opt_mbp1)
    feed_book(eng, book_batches(lake, date))
    return eng.tables()


def build(
    lake: Lake, date: dt.date, settings: PipelineSettings | None = None, *, allow_shrink: bool = False
) -> SilverTables:
    """Compute and commit a date's silver tables (``state`` last, as the date's commit marker).

    Refuses (``ShrinkError``, before committing any table) to replace a committed table with one
    of far fewer rows unless ``allow_shrink``.
    """
    s = settings or PipelineSettings()
    out = compute_streamed(lake, date, s)
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

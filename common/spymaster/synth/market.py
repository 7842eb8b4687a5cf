"""The underlying ES price path on a 1-second grid, and the level physics planted in it.

Everything later stages should be able to *recover* lives here: the six levels are computed
online from the synthetic trades exactly as a trader would compute them from the tape, and during
09:30–12:30 ET the path reacts to them through hidden conditions (flow F, barrier B, dealer
gamma G) whose only traces are in the data published *before* the price reaches the level. See
docs/SYNTHETIC.md for the rule in full.

The path is simulated per second (the loop over the 3-hour RTH window is the only Python loop at
that granularity); everything outside the physics window is vectorised.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter
from scipy.special import expit, ndtri

from spymaster import sessions
from spymaster.levels import LEVEL_KINDS
from spymaster.sessions import NS

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
B1 = npt.NDArray[np.bool_]


TICK = 0.25
BAR_SECONDS = sessions.BAR_CLOSE_S
TRADES_PER_DAY = 600_000
"""Expected ES trades (both listed contracts) in a full Globex session at ``scale=1``."""


class Component:
    """Ids of the independent random streams, so one part can change without moving the others."""

    DAY = 0
    OVERNIGHT = 1
    RTH = 2
    INTERACTIONS = 3
    AFTERNOON = 4
    SPREAD = 5
    COUNTS = 6
    SIDES = 7
    FUT_TRADES = 10
    FUT_BOOK = 11
    FUT_BACK = 12
    FUT_SIZES = 13
    OPT_CHAIN = 20
    OPT_EVENTS = 21


def rng_for(seed: int, date: dt.date, component: int) -> np.random.Generator:
    """The random stream of one component of one day: same (seed, date) → same numbers, whether
    the day is generated alone or inside a range."""
    return np.random.default_rng([seed, date.toordinal(), component])


# -- the daily anchor -----------------------------------------------------------------------------

_WALK_EPOCH = dt.date(2000, 1, 1)
_WALK_DAYS = 40_000
_WALK_MEAN = math.log(5800.0)
_WALK_KAPPA = 1.0 / 150.0
_WALK_SIGMA = 0.0093  # per calendar day: ≈ 1.1 % per trading day


@functools.lru_cache(maxsize=8)
def _daily_log_walk(seed: int) -> F64:
    """Log price of each calendar day since 2000-01-01: a mean-reverting walk around 5800 (a
    stationary spread of ≈ ±8 %), so any date's level is a pure function of (seed, date)."""
    eps = np.random.default_rng([seed, 0x5EED, 1]).standard_normal(_WALK_DAYS)
    dev = lfilter([_WALK_SIGMA], [1.0, -(1.0 - _WALK_KAPPA)], eps)
    out: F64 = _WALK_MEAN + np.asarray(dev, dtype=np.float64)
    return out


def session_open_price(seed: int, date: dt.date) -> float:
    """Front-month price at the 18:00 ET open of ``date``'s Globex session."""
    idx = (date - _WALK_EPOCH).days
    if not 0 <= idx < _WALK_DAYS:
        raise ValueError(f"date {date} outside the generator's calendar")
    price = math.exp(float(_daily_log_walk(seed)[idx]))
    return round(price / TICK) * TICK


@dataclass(frozen=True)
class DayParams:
    """Per-day constants drawn before the session starts (so options can be built from them)."""

    open_price: float
    next_open: float
    vol_mult: float
    atm_iv: float
    back_share: float
    calendar_spread: float


def day_params(seed: int, date: dt.date) -> DayParams:
    """The day's constants, from (seed, date) alone: the OI must exist before the path does."""
    r = rng_for(seed, date, Component.DAY)
    vol_mult = float(np.exp(0.2 * r.standard_normal()))
    open_price = session_open_price(seed, date)
    front = sessions.front_month(date)
    days_to_roll = (front.roll_date - date).days
    # volume migrates to the next contract in the week before the roll date
    back_share = 0.35 if 0 < days_to_roll <= 7 else 0.04
    # carry (financing minus dividends, ≈ 3 %/yr) over the quarter between the two expiries
    spread = round(open_price * 0.03 * 91 / 365 / TICK) * TICK
    return DayParams(
        open_price=open_price,
        next_open=session_open_price(seed, _next_trading_day(date)),
        vol_mult=vol_mult,
        atm_iv=float(0.105 * vol_mult + 0.025),
        back_share=back_share,
        calendar_spread=spread,
    )


def _next_trading_day(d: dt.date) -> dt.date:
    d += dt.timedelta(days=1)
    while not sessions.is_trading_day(d):
        d += dt.timedelta(days=1)
    return d


# -- intraday activity ----------------------------------------------------------------------------

_PROFILE: tuple[tuple[dt.time, float], ...] = (
    # (ET clock time, relative trade intensity); times from 18:00 on are the previous evening
    (dt.time(18, 0), 0.40),
    (dt.time(18, 30), 0.26),
    (dt.time(20, 0), 0.17),
    (dt.time(21, 0), 0.22),
    (dt.time(23, 0), 0.14),
    (dt.time(1, 0), 0.11),
    (dt.time(2, 45), 0.12),
    (dt.time(3, 15), 0.30),
    (dt.time(4, 30), 0.26),
    (dt.time(6, 30), 0.24),
    (dt.time(8, 0), 0.36),
    (dt.time(8, 30), 0.95),
    (dt.time(8, 50), 0.55),
    (dt.time(9, 29, 59), 0.70),
    (dt.time(9, 30), 3.30),
    (dt.time(9, 45), 2.30),
    (dt.time(10, 0), 1.80),
    (dt.time(10, 30), 1.40),
    (dt.time(11, 0), 1.10),
    (dt.time(11, 45), 0.85),
    (dt.time(12, 15), 0.68),
    (dt.time(13, 15), 0.66),
    (dt.time(14, 0), 0.90),
    (dt.time(15, 0), 1.10),
    (dt.time(15, 30), 1.50),
    (dt.time(15, 50), 2.70),
    (dt.time(15, 59, 59), 2.70),
    (dt.time(16, 0), 0.45),
    (dt.time(16, 15), 0.14),
    (dt.time(17, 0), 0.08),
)


def session_seconds(date: dt.date, t: dt.time) -> int:
    """Seconds from the Globex open to ET clock time ``t`` (18:00 or later = the previous evening)."""
    t0, _ = sessions.globex_session(date)
    d = date - dt.timedelta(days=1) if t >= sessions.GLOBEX_OPEN else date
    return (sessions.et_ns(d, t) - t0) // NS


def activity_profile(date: dt.date) -> F64:
    """Relative trade intensity per second of the session: quiet overnight, a spike at the 09:30
    open, a lunchtime lull and a rise into 16:00 (RTH averages ≈ 1.3)."""
    t0, t1 = sessions.globex_session(date)
    n = (t1 - t0) // NS
    xs = np.array([session_seconds(date, t) for t, _ in _PROFILE], dtype=np.float64)
    ys = np.array([v for _, v in _PROFILE], dtype=np.float64)
    out: F64 = np.interp(np.arange(n, dtype=np.float64), xs, ys)
    return out


# -- the planted rule -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Physics:
    """THE PLANTED RULE (docs/SYNTHETIC.md): outcome probabilities and how each condition shows.

    p_chop  = σ(chop0 − chop_f·|F| + chop_b·B)
    p_break = (1 − p_chop) · σ(beta0 + beta_f·F − beta_b·B − beta_g·G)
    p_reject = 1 − p_chop − p_break
    """

    # Twice the first version's weights (issue 11): with them the planted p pinned BREAK only loosely
    # (Brier skill ≈ 28 % where planted, ≈ 12 % over all approaches); at these ≈ 49 % where planted,
    # so that skill over all approaches is measurable (≥ 15 %) although many approaches are met
    # inside another interaction's move. Less chop (σ(−1.2) ≈ 23 % at F = B = 0) for the same reason.
    beta0: float = -0.3
    beta_f: float = 2.4
    beta_b: float = 1.6
    beta_g: float = 1.2
    chop0: float = -1.2
    chop_f: float = 1.4
    chop_b: float = 0.5
    # how F shows in the tape: aggressor log-odds tilt dir·(flow_f·F + η), η ~ N(0, flow_noise²)
    flow_f: float = 0.7
    flow_noise: float = 0.3
    flow_dir: float = 0.1
    # how B shows in the book: size multiplier exp(barrier_mu + barrier_s·B) at the level's price
    barrier_mu: float = 0.7
    barrier_s: float = 0.6
    # when an interaction starts (distances in ATR, Wilder-14 of 2-minute bars). Every approach is
    # planted: an idle market starts an interaction with the nearest level it moves toward as soon as
    # that level is in the zone (hazard 0.5/s: within ≈ 2 s), and a level is a candidate again as soon
    # as its last interaction ended, so free walk rarely comes within 0.55 ATR of an active level
    # without an interaction running.
    zone_min_atr: float = 0.55
    zone_max_atr: float = 2.2
    start_hazard: float = 0.5
    momentum_seconds: int = 30
    level_cooldown_s: int = 0
    cooldown_min_s: int = 5
    cooldown_max_s: int = 20
    # A BREAK move 1.05 ATR through its level, or a REJECT move 1.55 ATR back from it (where the
    # first-crossing labels of an approach at 0.5 ATR are decided), hands over to the next level it
    # runs into, so the levels a move crosses are approached with planted physics too. And an
    # approach that runs into a nearer level first hands over to it (no truth row for the first).
    preempt_break_atr: float = 1.05
    preempt_reject_atr: float = 1.55
    # Another level from companion_behind_atr before the planted one to companion_atr past it (at
    # arrival), ahead of where the approach started, is approached inside the same move: BREAK there
    # iff BREAK here (a BREAK carries ≥ 1.2 ATR past it; a REJECT or a CHOP, clipped at 0.65 ATR past
    # the planted level, stays < 1 ATR past it), so it gets a truth row with this interaction's p
    # (issue 11: a truth row per approach).
    companion_atr: float = 0.5
    companion_behind_atr: float = 0.3
    # how outcomes drive the path
    target_min_atr: float = 1.7
    target_max_atr: float = 2.5
    chop_band_atr: float = 0.65
    chop_min_s: int = 480
    chop_max_s: int = 840


PHYSICS = Physics()


def outcome_probabilities(
    f: Any, b: Any, g: Any, phys: Physics = PHYSICS
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(p_break, p_reject, p_chop) of the planted rule; vectorised over arrays of F, B, G."""
    f_ = np.asarray(f, dtype=np.float64)
    b_ = np.asarray(b, dtype=np.float64)
    g_ = np.asarray(g, dtype=np.float64)
    p_chop = expit(phys.chop0 - phys.chop_f * np.abs(f_) + phys.chop_b * b_)
    s = expit(phys.beta0 + phys.beta_f * f_ - phys.beta_b * b_ - phys.beta_g * g_)
    p_break = (1.0 - p_chop) * s
    return p_break, (1.0 - p_chop) * (1.0 - s), p_chop


# -- the simulated day ----------------------------------------------------------------------------


@dataclass
class MarketDay:
    """Per-second state of the front month (what futures.py and options.py render as records)."""

    date: dt.date
    seed: int
    scale: float
    params: DayParams
    t0_ns: int
    n_sec: int
    mid: F64
    bid: I64  # best bid in ticks
    ask: I64  # best ask in ticks
    n_buy: I64  # buy-aggressor trades of the front month in the second
    n_sell: I64
    last_buy: B1  # the second's last trade lifted the offer
    push: F64  # aggressor pressure (−1…1, + = buying) planted in the book's order flow
    barrier_tick: I64  # price (ticks) of the planted resting size, −1 if none
    barrier_side: I8  # +1 ask, −1 bid, 0 none
    barrier_mult: F64
    activity: F64
    trade_rate: F64  # expected trades per second (both contracts) at this scale
    truth: list[dict[str, Any]] = field(default_factory=list)
    levels: dict[str, float] = field(default_factory=dict)
    """PM/OR levels and the SMA/EMA values at the end of the physics window (for inspection)."""


def _quote(m: float, wide: bool) -> tuple[int, int]:
    if wide:
        b = round(m / TICK) - 1
        return b, b + 2
    b = math.floor(m / TICK)
    return b, b + 1


def _quotes(m: F64, wide: B1) -> tuple[I64, I64]:
    one = np.floor(m / TICK).astype(np.int64)
    two = np.rint(m / TICK).astype(np.int64) - 1
    bid = np.where(wide, two, one)
    return bid, bid + np.where(wide, 2, 1)


def _sides(r: np.random.Generator, n: I64, logit: F64) -> tuple[I64, B1]:
    """Buy-aggressor counts and whether each second's last trade was a buy."""
    nb = r.binomial(n, expit(logit)).astype(np.int64)
    u = r.random(len(n))
    last = (n > 0) & (u * np.maximum(n, 1) < nb)
    return nb, last


def _tape(bid: I64, ask: I64, nb: I64, ns: I64, last_buy: B1) -> tuple[F64, F64, F64]:
    """Per-second high, low and last traded price (NaN where nothing traded): buys print at the
    offer, sells at the bid."""
    a = ask * TICK
    b = bid * TICK
    hi = np.where(nb > 0, a, np.where(ns > 0, b, np.nan))
    lo = np.where(ns > 0, b, np.where(nb > 0, a, np.nan))
    last = np.where(nb + ns > 0, np.where(last_buy, a, b), np.nan)
    return hi, lo, last


class _Bars:
    """Online 2-minute bars of the tape with SMA-90, EMA-20 and Wilder ATR-14 of their closes."""

    def __init__(self, first_close: float) -> None:
        self.closes: deque[float] = deque(maxlen=90)
        self.prev_close = first_close
        self.ema: float | None = None
        self.atr: float | None = None
        self._trs: list[float] = []
        self.h = math.nan
        self.lo = math.nan
        self.c = math.nan

    def add(self, hi: float, lo: float, last: float) -> None:
        if math.isnan(last):
            return
        self.h = hi if math.isnan(self.h) else max(self.h, hi)
        self.lo = lo if math.isnan(self.lo) else min(self.lo, lo)
        self.c = last

    def close(self) -> None:
        """Finish the bar; a bar without trades is flat at the previous close."""
        if math.isnan(self.c):
            h = lo = c = self.prev_close
        else:
            h, lo, c = self.h, self.lo, self.c
        tr = max(h - lo, abs(h - self.prev_close), abs(lo - self.prev_close))
        if self.atr is None:
            self._trs.append(tr)
            if len(self._trs) == 14:
                self.atr = sum(self._trs) / 14
        else:
            self.atr += (tr - self.atr) / 14
        self.ema = c if self.ema is None else self.ema + (c - self.ema) * (2.0 / 21.0)
        self.closes.append(c)
        self.prev_close = c
        self.h = self.lo = self.c = math.nan

    @property
    def sma(self) -> float:
        return sum(self.closes) / len(self.closes)


IDLE, APPROACH, BREAK, REJECT, CHOP, COOLDOWN = range(6)
_SIGMA0 = 0.15  # points per √second at activity 1 (vol_mult 1)


def simulate(
    date: dt.date,
    *,
    seed: int,
    scale: float,
    gamma_z: Callable[[float], float],
    phys: Physics = PHYSICS,
) -> MarketDay:
    """Simulate one Globex session of the front month and plant the level physics in RTH."""
    p = day_params(seed, date)
    t0, t1 = sessions.globex_session(date)
    n = (t1 - t0) // NS
    prof = activity_profile(date)
    sigma = _SIGMA0 * p.vol_mult * np.sqrt(prof)
    rate = TRADES_PER_DAY * scale * prof / prof.sum()
    front_rate = rate * (1.0 - p.back_share)

    s_pm = session_seconds(date, sessions.PREMARKET_START)
    s_open = session_seconds(date, sessions.RTH_OPEN)
    s_or = session_seconds(date, sessions.OR_END)
    s_q = session_seconds(date, sessions.QUERY_END)
    s_cap = session_seconds(date, dt.time(13, 0))
    s_830 = session_seconds(date, dt.time(8, 30))
    assert s_open % BAR_SECONDS == 0

    # spreads: one tick, with sticky episodes of two ticks (more often overnight)
    rs = rng_for(seed, date, Component.SPREAD)
    z = lfilter([math.sqrt(1 - 0.85**2)], [1.0, -0.85], rs.standard_normal(n))
    p_wide = np.clip(0.24 - 0.18 * np.minimum(prof, 1.0), 0.05, 0.24)
    wide: B1 = np.asarray(z > ndtri(1.0 - p_wide), dtype=np.bool_)

    n_tot = rng_for(seed, date, Component.COUNTS).poisson(front_rate).astype(np.int64)
    r_sides = rng_for(seed, date, Component.SIDES)

    mid = np.empty(n, dtype=np.float64)
    bid = np.empty(n, dtype=np.int64)
    ask = np.empty(n, dtype=np.int64)
    n_buy = np.zeros(n, dtype=np.int64)
    last_buy = np.zeros(n, dtype=np.bool_)
    push = np.zeros(n, dtype=np.float64)
    b_tick = np.full(n, -1, dtype=np.int64)
    b_side = np.zeros(n, dtype=np.int8)
    b_mult = np.ones(n, dtype=np.float64)

    # -- overnight: a vectorised random walk with an 08:30 data jump -------------------------
    r_on = rng_for(seed, date, Component.OVERNIGHT)
    dm = sigma[:s_open] * r_on.standard_normal(s_open)
    dm[s_830] += r_on.normal(0.0, 2.0) * p.vol_mult
    mid[:s_open] = p.open_price + np.cumsum(dm)
    bid[:s_open], ask[:s_open] = _quotes(mid[:s_open], wide[:s_open])
    nb, lb = _sides(r_sides, n_tot[:s_open], 0.5 * dm / sigma[:s_open])
    n_buy[:s_open], last_buy[:s_open] = nb, lb
    hi, lo, last = _tape(bid[:s_open], ask[:s_open], nb, n_tot[:s_open] - nb, lb)

    bars = _Bars(p.open_price)
    hb, lb_, cb = hi.reshape(-1, BAR_SECONDS), lo.reshape(-1, BAR_SECONDS), last.reshape(-1, BAR_SECONDS)
    traded = ~np.isnan(cb)
    has = traded.any(axis=1)
    bar_h = np.where(has, np.nanmax(np.where(traded, hb, -np.inf), axis=1), np.nan)
    bar_l = np.where(has, np.nanmin(np.where(traded, lb_, np.inf), axis=1), np.nan)
    last_idx = BAR_SECONDS - 1 - np.argmax(traded[:, ::-1], axis=1)
    bar_c = np.where(has, cb[np.arange(len(cb)), last_idx], np.nan)
    for h_, l_, c_ in zip(bar_h.tolist(), bar_l.tolist(), bar_c.tolist(), strict=True):
        bars.add(h_, l_, c_)
        bars.close()

    pm_win_hi, pm_win_lo = hi[s_pm:s_open], lo[s_pm:s_open]
    pm_high = float(np.nanmax(pm_win_hi)) if np.isfinite(pm_win_hi).any() else float(mid[s_open - 1])
    pm_low = float(np.nanmin(pm_win_lo)) if np.isfinite(pm_win_lo).any() else float(mid[s_open - 1])

    # -- RTH physics window: per second ------------------------------------------------------
    r = rng_for(seed, date, Component.RTH)
    ri = rng_for(seed, date, Component.INTERACTIONS)
    eps = r.standard_normal(s_cap - s_open)
    m = float(mid[s_open - 1])
    or_hi = or_lo = math.nan
    levels_fixed: dict[str, float] = {"PM_HIGH": pm_high, "PM_LOW": pm_low}
    last_end: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    state = IDLE
    st: dict[str, Any] = {}
    s_stop = s_cap
    for s in range(s_open, s_cap):
        sig = float(sigma[s])
        e = float(eps[s - s_open])
        flow = 0.0
        if state == APPROACH:
            lvl = _level_value(st["kind"], levels_fixed, bars)
            rem = max(st["arrive_by"] - s, 3)
            step = (lvl - m) / rem + 0.8 * sig * e
            flow = st["flow"]
        elif state in (BREAK, REJECT):
            step = (st["target"] - m) / st["tau"] + 0.5 * sig * e
        elif state == CHOP:
            step = 0.05 * (st["level"] - m) + st["chop_sig"] * e
        else:
            step = sig * e
        m_new = m + step
        if state == CHOP:
            band = phys.chop_band_atr * st["atr"]
            m_new = min(max(m_new, st["level"] - band), st["level"] + band)
        step, m = m_new - m, m_new
        mid[s] = m
        bq, aq = _quote(m, bool(wide[s]))
        bid[s], ask[s] = bq, aq
        k = int(n_tot[s])
        if k:
            nbs = int(r.binomial(k, expit(0.5 * step / sig + flow)))
            lbs = bool(r.random() * k < nbs)
        else:
            nbs, lbs = 0, False
        n_buy[s], last_buy[s] = nbs, lbs
        if k:
            s_hi = aq * TICK if nbs else bq * TICK
            s_lo = bq * TICK if nbs < k else aq * TICK
            s_last = aq * TICK if lbs else bq * TICK
            bars.add(s_hi, s_lo, s_last)
            if s < s_or:
                or_hi = s_hi if math.isnan(or_hi) else max(or_hi, s_hi)
                or_lo = s_lo if math.isnan(or_lo) else min(or_lo, s_lo)
        if (s + 1) % BAR_SECONDS == 0:
            bars.close()
        if s + 1 == s_or:
            levels_fixed["OR_HIGH"] = or_hi if not math.isnan(or_hi) else m
            levels_fixed["OR_LOW"] = or_lo if not math.isnan(or_lo) else m
        if state in (APPROACH, BREAK, REJECT, CHOP):
            lvl_b = _level_value(st["kind"], levels_fixed, bars) if state == APPROACH else st["level"]
            _plant_barrier(s, st, lvl_b, bq, aq, b_tick, b_side, b_mult)
            if state == APPROACH:
                push[s] = math.tanh(flow)

        # -- state transitions ---------------------------------------------------------------
        if state == APPROACH and s < s_q:
            near = _candidate(s, m, mid, levels_fixed, bars, last_end, phys, exclude=st["kind"])
            lvl = _level_value(st["kind"], levels_fixed, bars)
            if near is not None and abs(near[1] - m) < abs(lvl - m) and near[2] == st["dir"]:
                st = _start(s, near, m, ri, gamma_z, phys)  # the nearer level is met first
        if state == APPROACH:
            lvl = _level_value(st["kind"], levels_fixed, bars)
            if st["dir"] * (m - lvl) >= 0 or s >= st["arrive_by"] + 90:
                atr = bars.atr or 1.0
                st.update(arrival=s, level=lvl, atr=atr)
                st["companions"] = _companions(st, lvl, atr, levels_fixed, bars, phys)
                out = st["outcome"]
                if out == "CHOP":
                    state = CHOP
                    st["until"] = s + int(ri.integers(phys.chop_min_s, phys.chop_max_s))
                    st["chop_sig"] = 0.3 * atr * math.sqrt(2 * 0.05)
                else:
                    state = BREAK if out == "BREAK" else REJECT
                    sgn = st["dir"] if out == "BREAK" else -st["dir"]
                    st["sgn"] = sgn
                    st["target"] = lvl + sgn * atr * float(
                        ri.uniform(phys.target_min_atr, phys.target_max_atr)
                    )
                    st["tau"] = float(ri.uniform(50, 100))
        elif state in (BREAK, REJECT):
            done = st["sgn"] * (m - st["target"]) >= -0.15 * st["atr"] or s - st["arrival"] >= 420
            if done:
                state = _finish(s, st, last_end, rows, t0)
                st["cool_until"] = s + int(ri.integers(phys.cooldown_min_s, phys.cooldown_max_s))
            elif s < s_q and st["sgn"] * (m - st["level"]) >= st["atr"] * (
                phys.preempt_break_atr if state == BREAK else phys.preempt_reject_atr
            ):
                cand = _candidate(s, m, mid, levels_fixed, bars, last_end, phys, exclude=st["kind"])
                if cand is not None and ri.random() < phys.start_hazard:
                    _finish(s, st, last_end, rows, t0)
                    st = _start(s, cand, m, ri, gamma_z, phys)
                    state = APPROACH
        elif state == CHOP:
            if s >= st["until"]:
                state = _finish(s, st, last_end, rows, t0)
                st["cool_until"] = s + int(ri.integers(phys.cooldown_min_s, phys.cooldown_max_s))
        elif state == COOLDOWN:
            if s >= st["cool_until"]:
                state = IDLE
        elif state == IDLE and s < s_q and bars.atr:
            cand = _candidate(s, m, mid, levels_fixed, bars, last_end, phys)
            if cand is not None and ri.random() < phys.start_hazard:
                st = _start(s, cand, m, ri, gamma_z, phys)
                state = APPROACH
        if s >= s_q and state in (IDLE, COOLDOWN):
            s_stop = s + 1
            break
    if state not in (IDLE, COOLDOWN):  # cut short at 13:00: record what happened so far
        st.setdefault("arrival", s_stop - 1)
        st.setdefault("level", _level_value(st["kind"], levels_fixed, bars))
        st.setdefault("atr", bars.atr or 1.0)
        _finish(s_stop - 1, st, last_end, rows, t0)

    # -- afternoon: a Brownian bridge to the next session's open -----------------------------
    ra = rng_for(seed, date, Component.AFTERNOON)
    rest = n - s_stop
    inc = sigma[s_stop:] * ra.standard_normal(rest)
    w = np.cumsum(inc)
    target = p.next_open + ra.normal(0.0, 1.5) - m
    frac = np.arange(1, rest + 1, dtype=np.float64) / rest
    mid[s_stop:] = m + w - frac * (w[-1] - target)
    step_a = np.diff(mid[s_stop - 1 :])
    bid[s_stop:], ask[s_stop:] = _quotes(mid[s_stop:], wide[s_stop:])
    nb, lb = _sides(r_sides, n_tot[s_stop:], 0.5 * step_a / sigma[s_stop:])
    n_buy[s_stop:], last_buy[s_stop:] = nb, lb

    levels_fixed["SMA_90_at_1230"] = bars.sma
    levels_fixed["EMA_20_at_1230"] = bars.ema or math.nan
    return MarketDay(
        date=date,
        seed=seed,
        scale=scale,
        params=p,
        t0_ns=t0,
        n_sec=n,
        mid=mid,
        bid=bid,
        ask=ask,
        n_buy=n_buy,
        n_sell=n_tot - n_buy,
        last_buy=last_buy,
        push=push,
        barrier_tick=b_tick,
        barrier_side=b_side,
        barrier_mult=b_mult,
        activity=prof,
        trade_rate=rate,
        truth=rows,
        levels=levels_fixed,
    )


def _level_value(kind: str, fixed: dict[str, float], bars: _Bars) -> float:
    if kind == "SMA_90":
        return bars.sma
    if kind == "EMA_20":
        return float(bars.ema if bars.ema is not None else bars.prev_close)
    return fixed[kind]


def _candidate(
    s: int,
    m: float,
    mid: F64,
    fixed: dict[str, float],
    bars: _Bars,
    last_end: dict[str, int],
    phys: Physics,
    exclude: str | None = None,
) -> tuple[str, float, int] | None:
    """The nearest active level in its approach zone that price is moving toward."""
    atr = bars.atr or 1.0
    move = m - float(mid[s - phys.momentum_seconds])
    best: tuple[str, float, int] | None = None
    best_d = math.inf
    for kind in LEVEL_KINDS:
        if (kind not in fixed and kind not in ("SMA_90", "EMA_20")) or kind == exclude:
            continue
        if s - last_end.get(kind, -(10**9)) < phys.level_cooldown_s:
            continue
        lvl = _level_value(kind, fixed, bars)
        d = lvl - m
        direction = 1 if d > 0 else -1
        dist = abs(d) / atr
        if phys.zone_min_atr <= dist <= phys.zone_max_atr and direction * move > 0 and abs(d) < best_d:
            best, best_d = (kind, lvl, direction), abs(d)
    return best


def _start(
    s: int,
    cand: tuple[str, float, int],
    m: float,
    ri: np.random.Generator,
    gamma_z: Callable[[float], float],
    phys: Physics,
) -> dict[str, Any]:
    """Draw an interaction's hidden conditions and its outcome (the outcome only acts after arrival)."""
    kind, lvl, direction = cand
    f = float(ri.standard_normal())
    b = float(ri.standard_normal())
    eta = float(ri.normal(0.0, phys.flow_noise))
    u = float(ri.random())
    t_a = float(np.clip(ri.uniform(60, 200) * math.exp(-0.2 * f), 40, 300))
    g = float(gamma_z(lvl))
    p_break, p_reject, p_chop = (float(x) for x in outcome_probabilities(f, b, g, phys))
    outcome = "BREAK" if u < p_break else ("REJECT" if u < p_break + p_reject else "CHOP")
    return {
        "kind": kind,
        "dir": direction,
        "start": s,
        "start_level": lvl,
        "arrive_by": s + int(t_a),
        "F": f,
        "B": b,
        "G": g,
        "flow": direction * (phys.flow_f * f + eta + phys.flow_dir),
        "mult": math.exp(phys.barrier_mu + phys.barrier_s * b),
        "p_break": p_break,
        "p_reject": p_reject,
        "p_chop": p_chop,
        "outcome": outcome,
        "start_mid": m,
    }


def _plant_barrier(
    s: int, st: dict[str, Any], lvl: float, bq: int, aq: int, b_tick: I64, b_side: I8, b_mult: F64
) -> None:
    """Resting size at the level on the side an approach must consume, while it is still there."""
    if st["dir"] > 0:
        tick = math.ceil(lvl / TICK - 1e-9)
        if tick >= aq:
            b_tick[s], b_side[s], b_mult[s] = tick, 1, st["mult"]
    else:
        tick = math.floor(lvl / TICK + 1e-9)
        if tick <= bq:
            b_tick[s], b_side[s], b_mult[s] = tick, -1, st["mult"]
    st.setdefault("barrier_tick", tick)


def _companions(
    st: dict[str, Any], lvl: float, atr: float, fixed: dict[str, float], bars: _Bars, phys: Physics
) -> list[tuple[str, float]]:
    """Other active levels the approach meets together with its own (``Physics.companion_atr``)."""
    out: list[tuple[str, float]] = []
    for kind in LEVEL_KINDS:
        if kind == st["kind"] or (kind not in fixed and kind not in ("SMA_90", "EMA_20")):
            continue
        other = _level_value(kind, fixed, bars)
        past = st["dir"] * (other - lvl) / atr
        if (
            -phys.companion_behind_atr <= past <= phys.companion_atr
            and st["dir"] * (other - st["start_mid"]) > 0
        ):
            out.append((kind, other))
    return out


def _finish(s: int, st: dict[str, Any], last_end: dict[str, int], rows: list[dict[str, Any]], t0: int) -> int:
    """Record a finished interaction as a truth row, and one per companion level (same physics)."""
    last_end[st["kind"]] = s
    row = {
        "start_ts": t0 + st["start"] * NS,
        "arrival_ts": t0 + st["arrival"] * NS,
        "end_ts": t0 + s * NS,
        "level_kind": st["kind"],
        "level_price": float(st["level"]),
        "level_price_start": float(st["start_level"]),
        "direction": "UP" if st["dir"] > 0 else "DOWN",
        "F": st["F"],
        "B": st["B"],
        "G": st["G"],
        "p_break": st["p_break"],
        "p_reject": st["p_reject"],
        "p_chop": st["p_chop"],
        "outcome": st["outcome"],
        "atr": float(st["atr"]),
        "barrier_price": st.get("barrier_tick", -1) * TICK,
        "barrier_mult": float(st["mult"]),
        "planted_kind": st["kind"],
    }
    rows.append(row)
    for kind, price in st.get("companions", []):
        rows.append({**row, "level_kind": kind, "level_price": float(price)})
    return COOLDOWN

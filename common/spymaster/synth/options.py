"""The ES 0DTE options chain: definitions, prior-day open interest, MBP-1 quotes and trades.

The open interest is drawn *before* the session from (seed, date) and the session's opening price
only, so the dealer-gamma condition G of the planted rule can be computed from it before RTH, and
later stages can recompute it from the statistics file alone. Quotes and trades are priced with
Black-76 on the simulated futures path, with a skewed smile.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import databento_dbn as dbn
import numpy as np
import numpy.typing as npt
from scipy.special import expit, ndtr

from spymaster import sessions
from spymaster.sessions import NS
from spymaster.synth import dbnwrite
from spymaster.synth.futures import ZSTD_LEVEL, ZSTD_THREADS, instrument_id, session_metadata
from spymaster.synth.market import Component, MarketDay, rng_for

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B1 = npt.NDArray[np.bool_]

STRIKE_STEP = 5.0
STRIKE_HALF_WIDTH = 150.0
MULTIPLIER = 50
YEAR_NS = 365.0 * 86_400 * NS
GAMMA_T_REF_HOURS = 6.5
"""Time to expiry used for G: the whole cash session (09:30 → 16:00), fixed so G is one number
per (level, day) that needs only the OI file."""
GAMMA_SIGMA_REF = 0.15
"""Volatility used for G, fixed (not the day's smile) so G needs nothing but the chain's files."""
GAMMA_WINDOW = 10.0
"""G sums the gamma exposure of strikes within ±10 points of the level."""
GAMMA_GRID_HALF_WIDTH = 60.0
"""G is a z-score against the same sum at levels every 5 points within ±60 of the chain's middle
strike (the open rounded to 5), i.e. against the day's own gamma landscape near the money."""
DEALER_CALL_SIGN = 1
"""Dealer-positioning convention: calls +1, puts −1 (set −1 for the ``−Γ·OI`` convention)."""
MIN_T_SECONDS = 300
"""Near expiry Black-76 is floored at five minutes to expiry (quotes stop at 16:00)."""
QUOTES_PER_DAY = 50_000
TRADES_PER_DAY = 12_000
_MONTHS = "FGHJKMNQUVXZ"
_WEEKDAY_CODE = {0: "A", 1: "B", 2: "C", 3: "D"}


def option_root(date: dt.date) -> str:
    """CME Globex product code of the option expiring on ``date``: Monday–Thursday weeklies are
    E{n}A…E{n}D (n = which such weekday of the month), Friday weeklies EW{n}, and the third Friday
    is the standard ES option. E.g. 2026-03-09 (2nd Monday) → E2A, 2026-03-06 (1st Friday) → EW1."""
    n = (date.day - 1) // 7 + 1
    wd = date.weekday()
    if wd in _WEEKDAY_CODE:
        return f"E{n}{_WEEKDAY_CODE[wd]}"
    if wd == 4:
        return "ES" if n == 3 else f"EW{n}"
    raise ValueError(f"no ES option expires on a weekend: {date}")


def option_symbol(date: dt.date, is_call: bool, strike: float) -> str:
    """Raw symbol as on Globex, e.g. ``E2AH6 C5800``."""
    return (
        f"{option_root(date)}{_MONTHS[date.month - 1]}{date.year % 10} {'C' if is_call else 'P'}{int(strike)}"
    )


def black76(f: F64, k: F64, t: F64, sigma: F64, is_call: B1) -> F64:
    """Black-76 premium (r = 0: the discount over one day is negligible)."""
    sd = sigma * np.sqrt(t)
    d1 = (np.log(f / k) + 0.5 * sd**2) / sd
    d2 = d1 - sd
    call = f * ndtr(d1) - k * ndtr(d2)
    put = k * ndtr(-d2) - f * ndtr(-d1)
    out: F64 = np.where(is_call, call, put)
    return out


def black76_gamma(f: F64 | float, k: F64, t: float, sigma: float) -> F64:
    """Γ = φ(d1) / (F σ √T) (r = 0)."""
    sd = sigma * math.sqrt(t)
    d1 = (np.log(f / k) + 0.5 * sd**2) / sd
    out: F64 = np.exp(-0.5 * d1**2) / math.sqrt(2 * math.pi) / (np.asarray(f) * sd)
    return out


def smile(f: F64, k: F64, atm: float) -> F64:
    """Skewed smile in standardised moneyness m = ln(K/F)/(σ_atm·√(1/252)): puts richer."""
    m = np.log(k / f) / (atm * math.sqrt(1 / 252))
    out: F64 = np.clip(atm * (1 - 0.10 * m + 0.035 * m**2), 0.5 * atm, 3.0 * atm)
    return out


@dataclass
class Chain:
    """The day's 0DTE chain and its prior-day open interest."""

    date: dt.date
    underlying: str
    underlying_id: int
    expiration_ns: int
    strike: F64
    is_call: B1
    symbols: list[str]
    ids: I64
    oi: I64
    atm_iv: float
    spot0: float
    grid_mean: float = 0.0
    grid_std: float = 1.0

    def gex(self, level: float) -> float:
        """Dealer gamma exposure of strikes within ±10 points of ``level``, evaluated at F = level,
        T = 6.5 h, σ = 15 %: Σ sign·Γ·OI·50·F²·0.01 (sign +1 calls, −1 puts)."""
        near = np.abs(self.strike - level) <= GAMMA_WINDOW + 1e-9
        if not near.any():
            return 0.0
        t = GAMMA_T_REF_HOURS / (365 * 24)
        g = black76_gamma(level, self.strike[near], t, GAMMA_SIGMA_REF)
        sign = np.where(self.is_call[near], DEALER_CALL_SIGN, -DEALER_CALL_SIGN)
        return float(np.sum(sign * g * self.oi[near]) * MULTIPLIER * level**2 * 0.01)

    def gamma_z(self, level: float) -> float:
        """G of the planted rule: the level's GEX as a z-score against the day's grid."""
        return (self.gex(level) - self.grid_mean) / self.grid_std


def build_chain(date: dt.date, seed: int, spot0: float, atm_iv: float) -> Chain:
    """Strikes every 5 points within ±150 of the open, and prior-day OI with the structure seen in
    real chains: a hump around the money, round strikes (25s, more so 50s and 100s) heavier, calls
    heavier above spot and puts below, and a few large walls."""
    r = rng_for(seed, date, Component.OPT_CHAIN)
    front = sessions.front_month(date)
    kc = round(spot0 / STRIKE_STEP) * STRIKE_STEP
    ks = kc + STRIKE_STEP * np.arange(-30, 31, dtype=np.float64)
    x = ks - spot0
    base = 900.0 * np.exp(-0.5 * (x / 70.0) ** 2) + 60.0
    roundness = np.where(ks % 100 == 0, 3.5, np.where(ks % 50 == 0, 2.6, np.where(ks % 25 == 0, 1.8, 1.0)))
    oi_c = base * roundness * (0.3 + 1.4 * expit(x / 25.0)) * np.exp(0.45 * r.standard_normal(len(ks)))
    oi_p = base * roundness * (0.3 + 1.4 * expit(-x / 25.0)) * np.exp(0.45 * r.standard_normal(len(ks)))
    for oi, side in ((oi_c, 1.0), (oi_p, -1.0)):
        cands = np.flatnonzero((side * x > 10) & (ks % 25 == 0))
        walls = r.choice(cands, size=min(2, len(cands)), replace=False)
        oi[walls] *= r.uniform(3.0, 6.0, size=len(walls))
    strike = np.concatenate([ks, ks])
    is_call = np.concatenate([np.ones(len(ks), dtype=np.bool_), np.zeros(len(ks), dtype=np.bool_)])
    symbols = [option_symbol(date, bool(c), float(k)) for c, k in zip(is_call, strike, strict=True)]
    ids = _unique_ids(symbols)
    chain = Chain(
        date=date,
        underlying=front.symbol,
        underlying_id=instrument_id(front.symbol),
        expiration_ns=sessions.et_ns(date, sessions.rth_close(date)),  # 13:00 ET on a half day
        strike=strike,
        is_call=is_call,
        symbols=symbols,
        ids=ids,
        oi=np.rint(np.concatenate([oi_c, oi_p])).astype(np.int64),
        atm_iv=atm_iv,
        spot0=spot0,
    )
    chain.grid_mean, chain.grid_std = gex_grid_stats(chain)
    return chain


def gex_grid_stats(chain: Chain) -> tuple[float, float]:
    """Mean and standard deviation of GEX over the z-score grid (from the chain's files alone)."""
    centre = float(np.median(chain.strike))
    grid = centre + np.arange(-GAMMA_GRID_HALF_WIDTH, GAMMA_GRID_HALF_WIDTH + 1, STRIKE_STEP)
    g = np.array([chain.gex(float(level)) for level in grid])
    return float(g.mean()), float(g.std()) or 1.0


def _unique_ids(symbols: list[str]) -> I64:
    ids: list[int] = []
    seen: set[int] = set()
    for s in symbols:
        iid, salt = instrument_id(s), 0
        while iid in seen:  # never seen in practice; keeps ids unique if a hash ever collides
            salt += 1
            iid = instrument_id(f"{s}#{salt}")
        seen.add(iid)
        ids.append(iid)
    return np.array(ids, dtype=np.int64)


# -- records -------------------------------------------------------------------------------------


def _definition(chain: Chain, i: int, ts: int) -> Any:
    date = chain.date
    fields: dict[str, Any] = {
        "publisher_id": dbnwrite.PUBLISHER_GLBX,
        "instrument_id": int(chain.ids[i]),
        "ts_event": ts,
        "ts_recv": ts,
        "min_price_increment": 50_000_000,
        "display_factor": 1_000_000_000,
        "raw_symbol": chain.symbols[i],
        "asset": "ES",
        "security_type": "OOF",
        "instrument_class": dbn.InstrumentClass.CALL if chain.is_call[i] else dbn.InstrumentClass.PUT,
        "security_update_action": dbn.SecurityUpdateAction.ADD,
        "expiration": chain.expiration_ns,
        "activation": sessions.et_ns(date - dt.timedelta(days=35), sessions.GLOBEX_CLOSE),
        "strike_price": int(dbnwrite.to_fixed(float(chain.strike[i]))),
        "underlying_id": chain.underlying_id,
        "unit_of_measure_qty": MULTIPLIER * dbnwrite.PRICE_SCALE,
        "contract_multiplier": MULTIPLIER,
        "currency": "USD",
        "settl_currency": "USD",
        "strike_price_currency": "USD",
        "exchange": "XCME",
        "group": option_root(date),
        "cfi": "OCEFCS" if chain.is_call[i] else "OPEFCS",
        "unit_of_measure": "IPNT",
        "underlying": chain.underlying,
        "maturity_year": date.year,
        "maturity_month": date.month,
        "maturity_day": date.day,
        "market_depth": 10,
        "min_trade_vol": 1,
        "max_trade_vol": 3000,
        "match_algorithm": dbn.MatchAlgorithm.FIFO,
        "channel_id": 0,
    }
    return dbn.InstrumentDefMsg(**fields)


def _stats(chain: Chain) -> npt.NDArray[Any]:
    """Prior-day open interest, published at 07:00 ET (before the RTH open), one record each."""
    n = len(chain.ids)
    rec = dbnwrite.empty_records("statistics", n)
    ts = sessions.et_ns(chain.date, dt.time(7, 0)) + np.arange(n, dtype=np.int64) * 3_000
    prev = sessions.previous_trading_day(chain.date)
    rec["instrument_id"] = chain.ids
    rec["ts_event"] = ts
    rec["ts_recv"] = ts + 15_000
    rec["ts_ref"] = int(dt.datetime.combine(prev, dt.time(0), tzinfo=dt.UTC).timestamp()) * NS
    rec["price"] = dbnwrite.UNDEF_PRICE
    rec["quantity"] = chain.oi
    rec["sequence"] = 1_000 + np.arange(n)
    rec["ts_in_delta"] = 12_000
    rec["stat_type"] = int(dbn.StatType.OPEN_INTEREST)
    rec["channel_id"] = 0
    rec["update_action"] = int(dbn.StatUpdateAction.NEW)
    rec["stat_flags"] = 0
    return rec


def _event_times(r: np.random.Generator, day: MarketDay, count: int, end_s: int) -> I64:
    """Event seconds drawn from the futures activity profile, overnight damped (0DTE is an RTH
    product), none after expiry."""
    w = day.activity[:end_s].copy()
    s_open = (sessions.et_ns(day.date, sessions.RTH_OPEN) - day.t0_ns) // NS
    w[:s_open] *= 0.08
    w /= w.sum()
    out: I64 = np.sort(r.choice(end_s, size=count, p=w)).astype(np.int64)
    return out


def _pick(r: np.random.Generator, chain: Chain, fut: F64) -> I64:
    """Which option each event is on: strikes near the money, out-of-the-money side favoured."""
    nk = len(chain.ids) // 2
    k0 = float(chain.strike[0])
    want = fut + r.normal(0.0, 25.0, size=len(fut))
    ki = np.clip(np.rint((want - k0) / STRIKE_STEP), 0, nk - 1).astype(np.int64)
    k = chain.strike[ki]
    call = r.random(len(fut)) < 0.5 + 0.35 * np.tanh((k - fut) / 20.0)
    out: I64 = np.where(call, ki, ki + nk)
    return out


def _quotes(chain: Chain, opt: I64, fut: F64, ts: I64, r: np.random.Generator) -> tuple[I64, I64]:
    """Bid and ask (fixed-point, UNDEF_PRICE bid when the option is worth less than a tick)."""
    t = np.maximum(chain.expiration_ns - ts, MIN_T_SECONDS * NS) / YEAR_NS
    k = chain.strike[opt]
    theo = black76(fut, k, t, smile(fut, k, chain.atm_iv), chain.is_call[opt])
    tick = np.where(theo < 5.0, 0.05, 0.25)
    hw = np.maximum(tick, 0.012 * theo) * (1.0 + 0.5 * r.random(len(theo)))
    bid = np.floor((theo - hw) / tick + 1e-9) * tick
    ask = np.maximum(np.ceil((theo + hw) / tick - 1e-9) * tick, bid + tick)
    ask = np.maximum(ask, 0.05)
    bid_fx = np.where(bid >= 0.05 - 1e-9, dbnwrite.to_fixed(bid), dbnwrite.UNDEF_PRICE).astype(np.int64)
    return bid_fx, dbnwrite.to_fixed(ask).astype(np.int64)


def _mbp1_and_trades(chain: Chain, day: MarketDay) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    r = rng_for(day.seed, day.date, Component.OPT_EVENTS)
    end_s = int((chain.expiration_ns - day.t0_ns) // NS)
    nq = int(r.poisson(QUOTES_PER_DAY * day.scale))
    nt = int(r.poisson(TRADES_PER_DAY * day.scale))
    sec = np.concatenate([_event_times(r, day, nq, end_s), _event_times(r, day, nt, end_s)])
    is_trade = np.concatenate([np.zeros(nq, dtype=np.bool_), np.ones(nt, dtype=np.bool_)])
    ts = day.t0_ns + sec * NS + r.integers(1, NS, size=len(sec))
    order = np.argsort(ts, kind="stable")
    sec, ts, is_trade = sec[order], ts[order], is_trade[order]
    n = len(ts)
    fut = day.mid[sec]
    opt = _pick(r, chain, fut)
    bid, ask = _quotes(chain, opt, fut, ts, r)
    no_bid = bid == dbnwrite.UNDEF_PRICE
    bsz = np.where(no_bid, 0, np.rint(np.exp(r.normal(3.3, 0.8, size=n))) + 1).astype(np.int64)
    asz = np.rint(np.exp(r.normal(3.3, 0.8, size=n))).astype(np.int64) + 1

    buy = (r.random(n) < 0.52) | no_bid
    on_ask = np.where(is_trade, ~buy, (r.random(n) < 0.5) | no_bid)
    u = r.random(n)
    action = np.where(is_trade, ord("T"), np.where(u < 0.6, ord("A"), np.where(u < 0.9, ord("C"), ord("M"))))
    qty = np.where(
        is_trade,
        np.minimum(np.floor(r.random(n) ** (-1 / 1.3)), 500),
        r.geometric(0.15, size=n),
    ).astype(np.int64)
    price = np.where(is_trade, np.where(buy, ask, bid), np.where(on_ask, ask, bid))
    side = np.where(is_trade, np.where(buy, ord("B"), ord("A")), np.where(on_ask, ord("A"), ord("B")))
    lat = 20_000 + r.gamma(2.0, 10_000.0, size=n).astype(np.int64)
    ts_recv = np.maximum.accumulate(ts + lat)

    mbp = dbnwrite.empty_records("mbp-1", n)
    mbp["instrument_id"] = chain.ids[opt]
    mbp["ts_event"] = ts
    mbp["ts_recv"] = ts_recv
    mbp["ts_in_delta"] = ((ts_recv - ts) * 0.8).astype(np.int32)
    mbp["sequence"] = 50_000 + np.arange(n)
    mbp["price"] = price
    mbp["size"] = qty
    mbp["action"] = action.astype(np.uint8).view("S1")
    mbp["side"] = side.astype(np.uint8).view("S1")
    mbp["flags"] = dbn.F_LAST
    mbp["depth"] = 0
    mbp["bid_px_00"] = bid
    mbp["ask_px_00"] = ask
    mbp["bid_sz_00"] = bsz
    mbp["ask_sz_00"] = asz
    mbp["bid_ct_00"] = np.where(no_bid, 0, np.maximum(1, bsz // 8))
    mbp["ask_ct_00"] = np.maximum(1, asz // 8)

    ti = np.flatnonzero(is_trade)
    trades = dbnwrite.empty_records("trades", len(ti))
    for f in (
        "instrument_id",
        "ts_event",
        "ts_recv",
        "ts_in_delta",
        "sequence",
        "price",
        "size",
        "action",
        "side",
    ):
        trades[f] = mbp[f][ti]
    trades["flags"] = dbn.F_LAST
    trades["depth"] = 0
    return mbp, trades


@dataclass
class OptionFiles:
    definition: bytes
    statistics: bytes
    mbp1: bytes
    trades: bytes
    counts: dict[str, int]


def render(chain: Chain, day: MarketDay) -> OptionFiles:
    """The four options files of the day as zstd DBN bytes."""
    mapping = {s: int(i) for s, i in zip(chain.symbols, chain.ids, strict=True)}
    t0 = day.t0_ns

    def enc(schema: str, records: Any) -> bytes:
        meta = session_metadata(schema, day.date, "ES.OPT", mapping)
        return dbnwrite.encode(meta, records, level=ZSTD_LEVEL, threads=ZSTD_THREADS)

    defs = [_definition(chain, i, t0) for i in range(len(chain.ids))]
    stats = _stats(chain)
    mbp, trades = _mbp1_and_trades(chain, day)
    return OptionFiles(
        definition=enc("definition", defs),
        statistics=enc("statistics", stats),
        mbp1=enc("mbp-1", mbp),
        trades=enc("trades", trades),
        counts={"definition": len(defs), "statistics": len(stats), "mbp-1": len(mbp), "trades": len(trades)},
    )

"""ES futures records rendered from the simulated path: definitions, trades and MBP-10.

The front month carries the planted signals: its aggressor sides come from the path (market.py),
its book's order flow leans with the planted pressure, and resting size sits at the level during
an approach. The next contract trades a small share of the volume (a large one in the week before
the roll) at the front price plus the calendar spread, with no planted signal.

Records are built with numpy in the exact DBN layout; MBP-10 (368 B each, millions per day) is
built in slices and streamed into one zstd frame so the day is never held raw twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

import databento_dbn as dbn
import numpy as np
import numpy.typing as npt
import zstandard
from scipy.special import expit, ndtri

from spymaster import sessions
from spymaster.sessions import NS
from spymaster.synth import dbnwrite
from spymaster.synth.market import TICK, Component, MarketDay, rng_for

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
B1 = npt.NDArray[np.bool_]

TICK_FIXED = 250_000_000
BOOK_EVENTS_PER_TRADE = 5.0
"""Adds, cancels and modifies per trade (each trade adds a T and a C record on top)."""
DEPTH_MEAN = np.array([55, 80, 95, 110, 120, 130, 140, 145, 150, 155], dtype=np.float64)
"""Mean resting size per book level at RTH activity, front month (contracts)."""
_DEPTH_P = np.concatenate([[0.42], 0.58 * (0.75 ** np.arange(9)) / (0.75 ** np.arange(9)).sum()])
_A, _C, _M, _T = ord("A"), ord("C"), ord("M"), ord("T")
_BID, _ASK = ord("B"), ord("A")
KIND_CHANGE, KIND_BOOK, KIND_TRADE, KIND_FILL = 0, 1, 2, 3
SLICE_RECORDS = 262_144
ZSTD_LEVEL = 3
ZSTD_THREADS = 2


def instrument_id(symbol: str) -> int:
    """A stable id from the raw symbol: the same symbol gets the same id on every day."""
    h = hashlib.blake2b(symbol.encode(), digest_size=8, person=b"spymaster-iid").digest()
    return int.from_bytes(h, "little") % (2**31 - 100_000) + 100_000


def _mix(x: U64) -> U64:
    """splitmix64 finaliser: a deterministic hash of integer keys, vectorised."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: U64 = x ^ (x >> np.uint64(31))
    return out


def _hash_normal(key: U64) -> F64:
    u = (_mix(key) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    out: F64 = ndtri(np.clip(u, 1e-12, 1 - 1e-12))
    return out


def _price_noise(ticks: I64, side: int, sec: I64, salt: int) -> F64:
    """Log-normal size factor that belongs to a *price* (so it moves with the book, not with the
    level index) and drifts smoothly every ten minutes."""
    e = sec.astype(np.float64) / 600.0
    e0 = np.floor(e)
    w = (e - e0)[:, None]
    base = ticks.astype(np.uint64) * np.uint64(0x100000001B3) ^ np.uint64((side + 1) << 58) ^ np.uint64(salt)
    ep = e0.astype(np.uint64)[:, None]
    z0 = _hash_normal(base ^ (ep * np.uint64(0x9E3779B1)) << np.uint64(1))
    z1 = _hash_normal(base ^ ((ep + np.uint64(1)) * np.uint64(0x9E3779B1)) << np.uint64(1))
    z = ((1 - w) * z0 + w * z1) / np.sqrt((1 - w) ** 2 + w**2)
    out: F64 = np.exp(0.45 * z - 0.45**2 / 2)
    return out


@dataclass
class _Instrument:
    """Per-second state of one contract, ready to render."""

    symbol: str
    iid: int
    bid: I64
    ask: I64
    n_buy: I64
    n_sell: I64
    last_buy: B1
    push: F64
    b_tick: I64
    b_side: npt.NDArray[np.int8]
    b_mult: F64
    book_rate: F64
    size_scale: float


def _front(day: MarketDay, symbol: str) -> _Instrument:
    return _Instrument(
        symbol=symbol,
        iid=instrument_id(symbol),
        bid=day.bid,
        ask=day.ask,
        n_buy=day.n_buy,
        n_sell=day.n_sell,
        last_buy=day.last_buy,
        push=day.push,
        b_tick=day.barrier_tick,
        b_side=day.barrier_side,
        b_mult=day.barrier_mult,
        book_rate=BOOK_EVENTS_PER_TRADE * day.trade_rate * (1.0 - day.params.back_share),
        size_scale=1.0,
    )


def _back(day: MarketDay, symbol: str) -> _Instrument:
    """The next contract: front mid plus the calendar spread, wider and thinner, no planted signal."""
    r = rng_for(day.seed, day.date, Component.FUT_BACK)
    n = day.n_sec
    mid = day.mid + day.params.calendar_spread
    wide = r.random(n) < 0.3
    one = np.floor(mid / TICK).astype(np.int64)
    two = np.rint(mid / TICK).astype(np.int64) - 1
    bid = np.where(wide, two, one)
    ask = bid + np.where(wide, 2, 1)
    rate = day.trade_rate * day.params.back_share
    n_tot = r.poisson(rate).astype(np.int64)
    dm = np.diff(mid, prepend=mid[0])
    n_buy = r.binomial(n_tot, expit(np.clip(2.0 * dm, -2, 2))).astype(np.int64)
    last_buy = (n_tot > 0) & (r.random(n) * np.maximum(n_tot, 1) < n_buy)
    return _Instrument(
        symbol=symbol,
        iid=instrument_id(symbol),
        bid=bid,
        ask=ask,
        n_buy=n_buy,
        n_sell=n_tot - n_buy,
        last_buy=last_buy,
        push=np.zeros(n),
        b_tick=np.full(n, -1, dtype=np.int64),
        b_side=np.zeros(n, dtype=np.int8),
        b_mult=np.ones(n),
        book_rate=BOOK_EVENTS_PER_TRADE * rate,
        size_scale=0.5,
    )


def _targets(inst: _Instrument, day: MarketDay, salt: int) -> npt.NDArray[np.float32]:
    """Resting size per second, side (0 bid, 1 ask) and level: depth profile × activity ×
    a per-price factor × the planted flow tilt (top three levels) × the planted barrier."""
    n = day.n_sec
    sec = np.arange(n, dtype=np.int64)
    sf = np.clip(0.3 + 0.7 * day.activity, 0.3, 1.8) * inst.size_scale
    lv = np.arange(10, dtype=np.int64)
    tilt_w = np.array([0.35, 0.175, 0.175, 0, 0, 0, 0, 0, 0, 0])
    out = np.empty((n, 2, 10), dtype=np.float32)
    for side, sgn in ((0, 1.0), (1, -1.0)):
        ticks = inst.bid[:, None] - lv if side == 0 else inst.ask[:, None] + lv
        tgt = DEPTH_MEAN * sf[:, None] * _price_noise(ticks, side, sec, salt)
        tgt *= np.exp(sgn * tilt_w[None, :] * inst.push[:, None])
        on = (inst.b_side == (1 if side == 1 else -1))[:, None] & (ticks == inst.b_tick[:, None])
        tgt = np.where(on, tgt * inst.b_mult[:, None], tgt)
        out[:, side, :] = np.maximum(tgt, 1.0)
    return out


@dataclass
class _Events:
    """One contract's records in time order (small per-record fields; no book yet)."""

    sec: I64
    ts: I64
    kind: npt.NDArray[np.uint8]
    action: npt.NDArray[np.uint8]
    side: npt.NDArray[np.uint8]
    depth: npt.NDArray[np.uint8]
    ptick: I64
    size: I64
    lvl0: npt.NDArray[np.int64]  # (n, 2) top-of-book sizes after the record
    col: npt.NDArray[np.int8]  # deep level touched: side*9 + depth-1, −1 for the top
    dcol: I64


def _segment_sizes(price: I64, delta: I64, init_at: F64, cap_at: F64) -> I64:
    """Top-of-book size per record: starts at the target when a price becomes best, then moves only
    by the recorded events until the best price changes."""
    n = len(price)
    new = np.ones(n, dtype=np.bool_)
    new[1:] = price[1:] != price[:-1]
    reg = np.cumsum(new) - 1
    cs = np.cumsum(delta)
    before = (cs - delta)[new]
    init = np.rint(init_at[new]).astype(np.int64)
    size = init[reg] + cs - before[reg]
    out: I64 = np.clip(size, 1, np.maximum(np.rint(cap_at), 2).astype(np.int64))
    return out


def _events(
    inst: _Instrument, day: MarketDay, tgt: npt.NDArray[np.float32], r: np.random.Generator
) -> _Events:
    n_sec = day.n_sec
    # -- trades: per-second counts and sides come from the path; the last one fixes the close --
    n_t = inst.n_buy + inst.n_sell
    nt = int(n_t.sum())
    sec_t = np.repeat(np.arange(n_sec, dtype=np.int64), n_t)
    start_t = np.cumsum(n_t) - n_t
    off_t = _sorted_within(sec_t, r.integers(1, NS, size=nt))
    pos = np.arange(nt) - start_t[sec_t]
    is_last = pos == n_t[sec_t] - 1
    key = r.random(nt)
    key[is_last] = 2.0
    o2 = np.lexsort((key, sec_t))
    rank = np.empty(nt, dtype=np.int64)
    rank[o2] = np.arange(nt) - start_t[sec_t[o2]]
    k_others = inst.n_buy - inst.last_buy.astype(np.int64)
    buy = np.where(is_last, inst.last_buy[sec_t], rank < k_others[sec_t])
    t_size = np.minimum(np.floor(r.random(nt) ** (-1 / 1.6)), 1500).astype(np.int64)
    t_tick = np.where(buy, inst.ask[sec_t], inst.bid[sec_t])

    # -- book events: adds / cancels / modifies leaning with the planted pressure -------------
    n_b = r.poisson(inst.book_rate).astype(np.int64)
    nbk = int(n_b.sum())
    sec_b = np.repeat(np.arange(n_sec, dtype=np.int64), n_b)
    off_b = _sorted_within(sec_b, r.integers(1, NS, size=nbk))
    on_ask = r.random(nbk) < 0.5
    depth = r.choice(10, size=nbk, p=_DEPTH_P).astype(np.int64)
    sgn = np.where(on_ask, -1.0, 1.0)
    lean = np.where(depth == 0, 0.15, np.where(depth <= 2, 0.06, 0.0)) * inst.push[sec_b] * sgn
    p_add = np.where(depth == 0, 0.58, 0.50) + lean
    p_can = np.where(depth == 0, 0.34, 0.42) - lean
    u = r.random(nbk)
    action = np.where(u < p_add, _A, np.where(u < p_add + p_can, _C, _M)).astype(np.uint8)
    qty = r.geometric(0.22, size=nbk).astype(np.int64)
    mq = r.geometric(0.4, size=nbk).astype(np.int64)
    qty = np.where(action == _M, mq, qty)
    delta = np.where(action == _A, qty, np.where(action == _C, -qty, np.where(r.random(nbk) < 0.5, mq, -mq)))
    b_tick = np.where(on_ask, inst.ask[sec_b] + depth, inst.bid[sec_b] - depth)

    # -- best-price changes: one A (improved) or C (level gone) per side, first in its second --
    first = np.full(n_sec, NS, dtype=np.int64)
    if nt:
        np.minimum.at(first, sec_t, off_t)
    if nbk:
        np.minimum.at(first, sec_b, off_b)
    # thinned like every other event at small scales, so record counts stay ∝ scale
    act = np.flatnonzero(((n_t + n_b) > 0) & (r.random(n_sec) < inst.book_rate / 8.0))
    chg_sec: list[I64] = []
    chg_side: list[npt.NDArray[np.uint8]] = []
    chg_act: list[npt.NDArray[np.uint8]] = []
    chg_tick: list[I64] = []
    chg_ord: list[I64] = []
    for s_idx, (px, improve_up, code) in enumerate(((inst.bid, True, _BID), (inst.ask, False, _ASK))):
        p_now = px[act]
        p_prev = np.concatenate([[-1], p_now[:-1]])
        changed = p_now != p_prev
        up = p_now > p_prev
        improved = (up if improve_up else ~up) | (p_prev < 0)
        sel = np.flatnonzero(changed)
        chg_sec.append(act[sel])
        chg_side.append(np.full(len(sel), code, dtype=np.uint8))
        chg_act.append(np.where(improved[sel], _A, _C).astype(np.uint8))
        chg_tick.append(np.where(improved[sel], p_now[sel], p_prev[sel]))
        chg_ord.append(np.full(len(sel), s_idx - 2, dtype=np.int64))
    c_sec = np.concatenate(chg_sec)
    nc = len(c_sec)

    # -- assemble: changes, book events, trades (T then the fill's C on the resting side) -----
    sec = np.concatenate([c_sec, sec_b, sec_t, sec_t])
    off = np.concatenate([first[c_sec], off_b, off_t, off_t])
    evid = np.concatenate([np.concatenate(chg_ord), np.arange(nbk), nbk + np.arange(nt), nbk + np.arange(nt)])
    sub = np.concatenate([np.zeros(nc), np.ones(nbk), np.ones(nt), np.full(nt, 2)]).astype(np.int8)
    kind = np.concatenate(
        [np.full(nc, KIND_CHANGE), np.full(nbk, KIND_BOOK), np.full(nt, KIND_TRADE), np.full(nt, KIND_FILL)]
    ).astype(np.uint8)
    act_c = np.concatenate([np.concatenate(chg_act), action, np.full(nt, _T), np.full(nt, _C)]).astype(
        np.uint8
    )
    resting = np.where(buy, _ASK, _BID)
    side = np.concatenate(
        [np.concatenate(chg_side), np.where(on_ask, _ASK, _BID), np.where(buy, _BID, _ASK), resting]
    ).astype(np.uint8)
    dep = np.concatenate([np.zeros(nc, dtype=np.int64), depth, np.zeros(2 * nt, dtype=np.int64)]).astype(
        np.uint8
    )
    ptick = np.concatenate([np.concatenate(chg_tick), b_tick, t_tick, t_tick])
    size = np.concatenate([np.zeros(nc, dtype=np.int64), qty, t_size, t_size])
    zc, zt = np.zeros(nc, dtype=np.int64), np.zeros(nt, dtype=np.int64)
    # top-of-book size changes: book events at depth 0, and each fill's C on the resting side
    top_b = np.concatenate([zc, np.where(~on_ask & (depth == 0), delta, 0), zt, np.where(buy, 0, -t_size)])
    top_a = np.concatenate([zc, np.where(on_ask & (depth == 0), delta, 0), zt, np.where(buy, -t_size, 0)])
    col = np.concatenate(
        [np.full(nc, -1), np.where(depth > 0, np.where(on_ask, 9, 0) + depth - 1, -1), np.full(2 * nt, -1)]
    ).astype(np.int8)
    dcol = np.concatenate(
        [np.zeros(nc, dtype=np.int64), np.where(depth > 0, delta, 0), np.zeros(2 * nt, np.int64)]
    )

    order = np.lexsort((sub, evid, off, sec))
    sec, off, kind, act_c, side, dep = (
        sec[order],
        off[order],
        kind[order],
        act_c[order],
        side[order],
        dep[order],
    )
    ptick, size, top_b, top_a, col, dcol = (
        ptick[order],
        size[order],
        top_b[order],
        top_a[order],
        col[order],
        dcol[order],
    )
    lvl0 = np.empty((len(sec), 2), dtype=np.int64)
    lvl0[:, 0] = _segment_sizes(
        inst.bid[sec], top_b, tgt[sec, 0, 0].astype(np.float64), 6.0 * tgt[sec, 0, 0] + 40
    )
    lvl0[:, 1] = _segment_sizes(
        inst.ask[sec], top_a, tgt[sec, 1, 0].astype(np.float64), 6.0 * tgt[sec, 1, 0] + 40
    )
    # a best-price change record carries the new level's size (A) or the vanished level's (C)
    chg = np.flatnonzero(kind == KIND_CHANGE)
    sd = (side[chg] == _ASK).astype(np.int64)
    prev = np.maximum(np.searchsorted(sec, sec[chg], side="left") - 1, 0)  # last record of an earlier second
    size[chg] = np.where(act_c[chg] == _A, lvl0[chg, sd], lvl0[prev, sd])
    return _Events(
        sec=sec,
        ts=day.t0_ns + sec * NS + off,
        kind=kind,
        action=act_c,
        side=side,
        depth=dep,
        ptick=ptick,
        size=size,
        lvl0=lvl0,
        col=col,
        dcol=dcol,
    )


def _sorted_within(sec: I64, off: I64) -> I64:
    """Offsets sorted inside each second (``sec`` is already non-decreasing)."""
    if len(off) == 0:
        return off.astype(np.int64)
    out: I64 = off[np.lexsort((off, sec))].astype(np.int64)
    return out


# -- DBN metadata ------------------------------------------------------------------------------


@dataclass
class _Interval:
    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclass
class _SymbolMapping:
    raw_symbol: str
    intervals: list[_Interval]


def session_metadata(schema: str, date: dt.date, parent: str, mappings: dict[str, int]) -> dbn.Metadata:
    """Metadata of one Globex session's file. Like ``dbnwrite.metadata`` but each mapping interval
    spans every UTC date the session touches: the 18:00 ET open is on the previous UTC date, and a
    one-day interval would leave the evening's records without a symbol."""
    t0, t1 = sessions.globex_session(date)
    first = dt.datetime.fromtimestamp(t0 / NS, tz=dt.UTC).date()
    last = dt.datetime.fromtimestamp((t1 - 1) / NS, tz=dt.UTC).date() + dt.timedelta(days=1)
    base = dbnwrite.metadata(schema=schema, start_ns=t0, end_ns=t1, symbols=[parent])
    maps = [_SymbolMapping(sym, [_Interval(first, last, str(iid))]) for sym, iid in sorted(mappings.items())]
    # the stubs type enum members as str: pass the fields untyped
    fields: dict[str, Any] = {
        "dataset": base.dataset,
        "start": base.start,
        "end": base.end,
        "stype_in": dbn.SType.PARENT,
        "stype_out": dbn.SType.INSTRUMENT_ID,
        "schema": dbn.Schema.from_str(schema),
        "symbols": [parent],
        "partial": [],
        "not_found": [],
        "mappings": maps,
    }
    return dbn.Metadata(**fields)


def compressor() -> zstandard.ZstdCompressor:
    """Fixed level and thread count, so the same records always give the same bytes."""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=ZSTD_THREADS)


# -- definitions ---------------------------------------------------------------------------------


def _listed_before(c: sessions.Contract, quarters: int) -> dt.date:
    total = c.year * 12 + (c.month - 1) - 3 * quarters
    return sessions.Contract(total // 12, total % 12 + 1).expiry


def definition(c: sessions.Contract, ts: int) -> Any:
    """An ES future's InstrumentDefMsg; fields DBN leaves undefined keep its sentinels."""
    fields: dict[str, Any] = {
        "publisher_id": dbnwrite.PUBLISHER_GLBX,
        "instrument_id": instrument_id(c.symbol),
        "ts_event": ts,
        "ts_recv": ts,
        "min_price_increment": TICK_FIXED,
        "display_factor": 1_000_000_000,
        "raw_symbol": c.symbol,
        "asset": "ES",
        "security_type": "FUT",
        "instrument_class": dbn.InstrumentClass.FUTURE,
        "security_update_action": dbn.SecurityUpdateAction.ADD,
        "expiration": sessions.et_ns(c.expiry, sessions.RTH_OPEN),
        "activation": sessions.et_ns(_listed_before(c, 5), sessions.RTH_OPEN),
        "unit_of_measure_qty": 50 * dbnwrite.PRICE_SCALE,
        "contract_multiplier": 50,
        "currency": "USD",
        "settl_currency": "USD",
        "exchange": "XCME",
        "group": "ES",
        "cfi": "FFIXSX",
        "unit_of_measure": "IPNT",
        "maturity_year": c.year,
        "maturity_month": c.month,
        "maturity_day": c.expiry.day,
        "market_depth": 10,
        "min_trade_vol": 1,
        "max_trade_vol": 3000,
        "match_algorithm": dbn.MatchAlgorithm.FIFO,
        "channel_id": 0,
    }
    return dbn.InstrumentDefMsg(**fields)


# -- rendering -----------------------------------------------------------------------------------


@dataclass
class FuturesFiles:
    definition: bytes
    trades: bytes
    mbp10: bytes
    symbols: dict[str, int]
    counts: dict[str, int]


def render(day: MarketDay) -> FuturesFiles:
    """All three futures files of the day as zstd DBN bytes."""
    front_c, back_c = sessions.listed_contracts(day.date)
    insts = [_front(day, front_c.symbol), _back(day, back_c.symbol)]
    symbols = {i.symbol: i.iid for i in insts}
    salt = int(rng_for(day.seed, day.date, Component.FUT_SIZES).integers(0, 2**62))
    tgts = np.stack([_targets(inst, day, salt + k) for k, inst in enumerate(insts)])
    r_div = rng_for(day.seed, day.date, Component.FUT_SIZES)
    divs = (2.2 + 3.0 * r_div.random((2, day.n_sec, 2, 10))).astype(np.float32)
    evs = [
        _events(insts[0], day, tgts[0], rng_for(day.seed, day.date, Component.FUT_TRADES)),
        _events(insts[1], day, tgts[1], rng_for(day.seed, day.date, Component.FUT_BOOK)),
    ]
    merged = _merge(evs, rng_for(day.seed, day.date, Component.FUT_BOOK + 100))
    del evs
    t0, _ = sessions.globex_session(day.date)

    defs = dbnwrite.encode(
        session_metadata("definition", day.date, "ES.FUT", symbols),
        [definition(c, t0) for c in (front_c, back_c)],
        level=ZSTD_LEVEL,
        threads=ZSTD_THREADS,
    )
    iids = np.array([i.iid for i in insts], dtype=np.uint32)
    tr = np.flatnonzero(merged["kind"] == KIND_TRADE)
    trades = dbnwrite.empty_records("trades", len(tr))
    for f in ("ts_event", "ts_recv", "ts_in_delta", "sequence", "size", "depth"):
        trades[f] = merged[f][tr]
    trades["instrument_id"] = iids[merged["inst"][tr]]
    trades["price"] = merged["ptick"][tr] * TICK_FIXED
    trades["action"] = merged["action"][tr].view("S1")
    trades["side"] = merged["side"][tr].view("S1")
    trades["flags"] = dbn.F_LAST
    trades_bytes = dbnwrite.encode(
        session_metadata("trades", day.date, "ES.FUT", symbols),
        trades,
        level=ZSTD_LEVEL,
        threads=ZSTD_THREADS,
    )
    n_trades = len(tr)
    del trades, tr

    bid_all = np.stack([i.bid for i in insts])
    ask_all = np.stack([i.ask for i in insts])
    meta = session_metadata("mbp-10", day.date, "ES.FUT", symbols)
    cobj = compressor().compressobj()
    parts = [cobj.compress(bytes(meta.encode()))]
    n = len(merged["ts_event"])
    sec = merged["sec"]
    cuts = np.unique(np.searchsorted(sec, sec[np.arange(0, n, SLICE_RECORDS)], side="left"))
    bounds = [*cuts.tolist(), n]
    for a, b in itertools.pairwise(bounds):
        rec = _mbp10_slice(merged, a, b, iids, tgts, divs, bid_all, ask_all, day.n_sec)
        parts.append(cobj.compress(rec.view(np.uint8).data))
        del rec
    parts.append(cobj.flush())
    return FuturesFiles(
        definition=defs,
        trades=trades_bytes,
        mbp10=b"".join(parts),
        symbols=symbols,
        counts={"trades": n_trades, "mbp-10": n},
    )


def _merge(evs: list[_Events], r: np.random.Generator) -> dict[str, Any]:
    """Both contracts' records in one stream ordered by time, with capture latency and sequence."""
    inst = np.concatenate([np.full(len(e.ts), k, dtype=np.int64) for k, e in enumerate(evs)])
    local = np.concatenate([np.arange(len(e.ts)) for e in evs])
    ts = np.concatenate([e.ts for e in evs])
    order = np.lexsort((local, inst, ts))
    out: dict[str, Any] = {"inst": inst[order]}
    for name in ("sec", "kind", "action", "side", "depth", "ptick", "size", "col", "dcol"):
        out[name] = np.concatenate([getattr(e, name) for e in evs])[order]
    out["lvl0"] = np.concatenate([e.lvl0 for e in evs])[order]
    ts = ts[order]
    lat = 9_000 + r.gamma(2.0, 5_000.0, size=len(ts)).astype(np.int64)
    out["ts_event"] = ts.astype(np.uint64)
    ts_recv = np.maximum.accumulate(ts + lat)
    out["ts_recv"] = ts_recv.astype(np.uint64)
    out["ts_in_delta"] = ((ts_recv - ts) * 0.8).astype(np.int32)
    out["sequence"] = (100_000 + np.arange(len(ts))).astype(np.uint32)
    return out


def _mbp10_slice(
    mg: dict[str, Any],
    a: int,
    b: int,
    iids: npt.NDArray[np.uint32],
    tgts: npt.NDArray[np.float32],
    divs: npt.NDArray[np.float32],
    bid_all: I64,
    ask_all: I64,
    n_sec: int,
) -> npt.NDArray[Any]:
    """MBP-10 records [a, b) with the ten levels after each event (the slice holds whole seconds)."""
    m = b - a
    inst = mg["inst"][a:b]
    sec = mg["sec"][a:b]
    kind = mg["kind"][a:b]
    rec = dbnwrite.empty_records("mbp-10", m)
    rec["instrument_id"] = iids[inst]
    for f in ("ts_event", "ts_recv", "ts_in_delta", "sequence", "size", "depth"):
        rec[f] = mg[f][a:b]
    rec["price"] = mg["ptick"][a:b] * TICK_FIXED
    rec["action"] = mg["action"][a:b].view("S1")
    rec["side"] = mg["side"][a:b].view("S1")
    rec["flags"] = np.where((kind == KIND_CHANGE) | (kind == KIND_TRADE), 0, dbn.F_LAST).astype(np.uint8)

    # deep levels: the per-second resting size plus this second's recorded changes so far
    perm = np.argsort(inst, kind="stable")
    key = inst[perm] * n_sec + sec[perm]
    colp = mg["col"][a:b][perm]
    rows = np.flatnonzero(colp >= 0)
    d = np.zeros((m, 18), dtype=np.int64)
    d[rows, colp[rows].astype(np.int64)] = mg["dcol"][a:b][perm][rows]
    c = np.cumsum(d, axis=0)
    start = np.ones(m, dtype=np.bool_)
    start[1:] = key[1:] != key[:-1]
    grp = np.cumsum(start) - 1
    within_p = c - (c - d)[start][grp]
    within = np.empty_like(within_p)
    within[perm] = within_p
    del d, c, within_p

    sizes = np.rint(tgts[inst, sec]).astype(np.int64)  # (m, 2, 10)
    sizes[:, 0, 1:] += within[:, :9]
    sizes[:, 1, 1:] += within[:, 9:]
    sizes[:, :, 0] = mg["lvl0"][a:b]
    np.maximum(sizes, 1, out=sizes)
    counts = np.maximum(np.ceil(sizes / divs[inst, sec]), 1).astype(np.int64)
    bt = bid_all[inst, sec]
    at = ask_all[inst, sec]
    for k in range(10):
        rec[f"bid_px_{k:02d}"] = (bt - k) * TICK_FIXED
        rec[f"ask_px_{k:02d}"] = (at + k) * TICK_FIXED
        rec[f"bid_sz_{k:02d}"] = sizes[:, 0, k]
        rec[f"ask_sz_{k:02d}"] = sizes[:, 1, k]
        rec[f"bid_ct_{k:02d}"] = np.minimum(counts[:, 0, k], sizes[:, 0, k])
        rec[f"ask_ct_{k:02d}"] = np.minimum(counts[:, 1, k], sizes[:, 1, k])
    return rec

"""Silver's dealer features: the date's 0DTE option lines, their quotes as of each step, GEX near a level.

The lines (strikes, calls and puts, expiries) and their prior-day open interest are the date's
constants: :class:`Chains` derives them once, and each step only samples the quotes' mids as of
its time and prices the lines (the implied volatility moves with the future every step).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from spymaster import sessions
from spymaster.indicators import bars, black76, dealer
from spymaster.settings import PipelineSettings

FloatArray = npt.NDArray[np.float64]
GEX_WIDTHS = (5, 10, 15)
OPEN_INTEREST = 9  # databento_dbn.StatType.OPEN_INTEREST
DEALER_FEATURES: tuple[str, ...] = (
    *(f"dealer_gex_{w}" for w in GEX_WIDTHS),
    "dealer_gex_total",
    "dealer_call_wall_atr",
    "dealer_put_wall_atr",
    "dealer_gex_level_z",
)


@dataclass(frozen=True)
class Lines:
    """The date's 0DTE call and put lines, sorted by instrument id."""

    ids: npt.NDArray[np.int64]
    strikes: FloatArray
    is_call: npt.NDArray[np.bool_]
    expiry_ns: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Chain:
    strikes: FloatArray
    is_call: npt.NDArray[np.bool_]
    expiry_ns: npt.NDArray[np.int64]
    oi: FloatArray
    mid: FloatArray  # [n_options, n_steps]


def lines(date: dt.date, definition: pa.Table) -> Lines | None:
    """The calls and puts expiring on ``date`` (None if there are none)."""
    d = definition
    if d.num_rows == 0:
        return None
    ids = np.asarray(d.column("instrument_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    strikes = bars.as_float(d.column("strike_price"))
    cls = np.asarray(d.column("instrument_class").to_pylist())
    expiry = bars.as_ns(d.column("expiration"))
    close_ns = sessions.et_ns(date, dt.time(23, 59))
    keep = np.isin(cls, ["C", "P"]) & (expiry <= close_ns) & (expiry >= sessions.et_ns(date, dt.time(0, 0)))
    ids, strikes, cls, expiry = ids[keep], strikes[keep], cls[keep], expiry[keep]
    order = np.argsort(ids)
    ids, strikes, cls, expiry = ids[order], strikes[order], cls[order], expiry[order]
    if ids.size == 0:
        return None
    return Lines(ids=ids, strikes=strikes, is_call=cls == "C", expiry_ns=expiry)


def open_interest(date: dt.date, ln: Lines, statistics: pa.Table) -> FloatArray:
    """Prior-day open interest per line: the latest OI statistic published before the open (0 if none)."""
    st = statistics.filter(pc.equal(statistics.column("stat_type"), OPEN_INTEREST))
    open_ns = sessions.et_ns(date, sessions.RTH_OPEN)
    st_ts = bars.as_ns(st.column("ts_recv"))
    st_ids = np.asarray(st.column("instrument_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    st_q = bars.as_float(st.column("quantity"))
    ok = st_ts <= open_ns
    ids = ln.ids
    oi = np.zeros(ids.size)
    o = np.lexsort((st_ts[ok], st_ids[ok]))
    sid, sq = st_ids[ok][o], st_q[ok][o]
    last = np.r_[sid[1:] != sid[:-1], True] if sid.size else np.zeros(0, dtype=bool)
    pos = np.searchsorted(ids, sid[last])
    inside = (pos < ids.size) & (ids[np.minimum(pos, ids.size - 1)] == sid[last])
    oi[pos[inside]] = np.nan_to_num(sq[last][inside])
    return oi


def quote_mids(ln: Lines, mbp1: pa.Table, q: npt.NDArray[np.int64]) -> FloatArray:
    """[line, step]: the mid of each line's last quote at or before each step (NaN before one, or
    for a crossed or one-sided quote)."""
    m_ts = bars.as_ns(mbp1.column("ts_recv"))
    m_ids = np.asarray(mbp1.column("instrument_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    bid = bars.as_float(mbp1.column("bid_px_00"))
    ask = bars.as_float(mbp1.column("ask_px_00"))
    mid_q = np.where((bid > 0) & (ask >= bid), (bid + ask) / 2, np.nan)
    return bars.asof_by(ln.ids, m_ids, m_ts, mid_q, q)


class Chains:
    """The chain at each step from the options seen so far; the date's constants derived once.

    The open interest is fixed once a step at or after the open has been computed: every
    statistic stamped before the open is in by then (records arrive in time order; batch has
    them all), and later ones do not count.
    """

    def __init__(self, date: dt.date, definition: pa.Table | None) -> None:
        self.date = date
        self._lines = lines(date, definition) if definition is not None else None
        self._oi: FloatArray | None = None
        self._open_ns = sessions.et_ns(date, sessions.RTH_OPEN)

    def at(
        self, q: npt.NDArray[np.int64], statistics: pa.Table | None, quotes: pa.Table | None
    ) -> Chain | None:
        """The chain at steps ``q`` from the statistics and quotes stamped at or before ``q[-1]``."""
        ln = self._lines
        if ln is None or statistics is None or quotes is None:
            return None
        upto = int(q[-1])
        oi = self._oi
        if oi is None:
            oi = open_interest(self.date, ln, _upto(statistics, upto))
            if int(q[0]) >= self._open_ns:
                self._oi = oi
        mid = quote_mids(ln, _upto(quotes, upto), q)
        return Chain(strikes=ln.strikes, is_call=ln.is_call, expiry_ns=ln.expiry_ns, oi=oi, mid=mid)


def _upto(table: pa.Table, t: int) -> pa.Table:
    return table.filter(pc.less_equal(table.column("ts_recv").cast(pa.int64()), t))


def features(
    chain: Chain | None,
    q: npt.NDArray[np.int64],
    fut_px: FloatArray,
    levels: FloatArray,
    atr: FloatArray,
    s: PipelineSettings,
) -> dict[str, FloatArray]:
    """Per (step, level): net GEX near the level, its gamma-profile z-score and wall distances; all NaN
    without a chain."""
    n_steps, n_lv = levels.shape
    out = {k: np.full((n_steps, n_lv), np.nan) for k in DEALER_FEATURES}
    if chain is None:
        return out
    tau = black76.year_fraction(q[None, :], chain.expiry_ns[:, None])
    fwd = np.broadcast_to(fut_px[None, :], chain.mid.shape)
    strike = np.broadcast_to(chain.strikes[:, None], chain.mid.shape)
    is_call = np.broadcast_to(chain.is_call[:, None], chain.mid.shape)
    iv = black76.implied_vol(chain.mid, fwd, strike, tau, s.risk_free_rate, is_call)
    g = black76.gamma(fwd, strike, tau, iv, s.risk_free_rate)
    gx = dealer.gex(g, chain.oi[:, None], fwd, is_call, convention=s.gex_convention)  # [n_opt, n_steps]
    atm = dealer.atm_vol(iv, chain.strikes, fut_px)
    out["dealer_gex_level_z"] = dealer.gex_level_z(
        chain.strikes,
        chain.is_call,
        chain.oi,
        tau,
        atm,
        levels,
        r=s.risk_free_rate,
        convention=s.gex_convention,
    )
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

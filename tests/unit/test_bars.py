"""Time bars and indicators: hand-made bars, DST stamps, independent indicator loops, no-lookahead."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from spymaster.indicators.bars import TS_TYPE, asof, asof_by, ema, sma, time_bars, wilder_atr
from spymaster.sessions import QUERY_END, RTH_OPEN, et_ns

S = 1_000_000_000
T0 = et_ns(dt.date(2026, 3, 6), RTH_OPEN)

COLUMNS = ["ts", "open", "high", "low", "close", "volume", "vwap", "buy_volume", "sell_volume", "trades"]


def _bars(ts: list[int], px: list[float], sz: list[int], side: list[str], n: int = 4) -> pa.Table:
    return time_bars(
        np.array(ts, dtype=np.int64), px, np.array(sz, dtype=np.uint32), np.array(side),
        start_ns=T0, end_ns=T0 + n * 30 * S, seconds=30,
    )  # fmt: skip


def test_hand_made_bars() -> None:
    ts = [T0 - 1, T0, T0 + 5 * S, T0 + 29 * S, T0 + 30 * S, T0 + 31 * S, T0 + 119 * S, T0 + 120 * S]
    px = [99.0, 100.0, 101.0, 99.5, 100.25, 100.5, 102.0, 103.0]
    sz = [7, 2, 1, 3, 4, 4, 5, 9]
    side = ["B", "B", "A", "N", "A", "B", "B", "A"]
    t = _bars(ts, px, sz, side)
    assert t.column_names == COLUMNS
    assert t.schema.field("ts").type == TS_TYPE
    d = t.to_pydict()
    # stamps are the bar CLOSE times
    assert t.column("ts").cast(pa.int64()).to_pylist() == [T0 + k * 30 * S for k in (1, 2, 3, 4)]
    # bar 1 [T0, T0+30): trades at T0, +5, +29 (the one at T0-1 is before the window)
    # bar 2 [T0+30, T0+60): the trade exactly at T0+30 (the bar-1 stamp) and +31
    # bar 3 empty -> carries bar 2's close 100.5; bar 4: +119 only (+120 is at/after the end)
    assert d["open"] == [100.0, 100.25, 100.5, 102.0]
    assert d["high"] == [101.0, 100.5, 100.5, 102.0]
    assert d["low"] == [99.5, 100.25, 100.5, 102.0]
    assert d["close"] == [99.5, 100.5, 100.5, 102.0]
    assert d["volume"] == [6, 8, 0, 5]
    # vwap bar 1 = (100*2 + 101*1 + 99.5*3) / 6 = 599.5 / 6; bar 2 = (100.25*4 + 100.5*4) / 8
    assert d["vwap"] == [599.5 / 6, 100.375, 100.5, 102.0]
    assert d["buy_volume"] == [2, 4, 0, 5]
    assert d["sell_volume"] == [1, 4, 0, 0]  # the "N" trade is in neither
    assert d["trades"] == [3, 2, 0, 1]


def test_side_encodings_agree() -> None:
    rng = np.random.default_rng(3)
    n = 500
    ts = np.sort(T0 + rng.integers(0, 120 * S, n))
    px = 100 + rng.integers(-8, 8, n) * 0.25
    sz = rng.integers(1, 10, n).astype(np.uint32)
    is_buy = rng.random(n) < 0.5
    letters = np.where(is_buy, "B", "A")
    kw = {"start_ns": T0, "end_ns": T0 + 120 * S, "seconds": 30}
    a = time_bars(ts, px, sz, is_buy, **kw)
    b = time_bars(ts, px, sz, letters, **kw)
    c = time_bars(ts, px, sz, np.array([ord(x) for x in letters], dtype=np.uint8), **kw)
    d = time_bars(pa.array(ts, type=TS_TYPE), pa.array(px), pa.array(sz), pa.array(letters), **kw)
    assert a.equals(b)
    assert a.equals(c)
    assert a.equals(d)


def test_leading_empty_bars_are_nan_and_unsorted_input_is_sorted() -> None:
    t = _bars([T0 + 95 * S, T0 + 65 * S], [11.0, 10.0], [1, 1], ["B", "A"])
    d = t.to_pydict()
    assert np.isnan(d["close"][0])
    assert np.isnan(d["open"][1])
    assert np.isnan(d["vwap"][1])
    assert d["open"][2:] == [10.0, 11.0]
    assert d["close"][2:] == [10.0, 11.0]
    assert d["volume"] == [0, 0, 1, 1]


def test_bad_window_rejected() -> None:
    with pytest.raises(ValueError, match="whole number"):
        time_bars([], [], [], [], start_ns=T0, end_ns=T0 + 45 * S, seconds=30)


@pytest.mark.parametrize(
    ("day", "first_close_utc"), [(dt.date(2026, 3, 6), "14:30:30"), (dt.date(2026, 3, 9), "13:30:30")]
)
def test_bars_across_dst(day: dt.date, first_close_utc: str) -> None:
    start, end = et_ns(day, RTH_OPEN), et_ns(day, QUERY_END)
    t = time_bars(
        np.array([start + S], dtype=np.int64), [5000.0], [1], ["B"], start_ns=start, end_ns=end, seconds=30
    )
    assert t.num_rows == 3 * 60 * 2
    first = t.column("ts")[0].as_py()
    assert first.strftime("%H:%M:%S") == first_close_utc
    assert t.column("ts")[t.num_rows - 1].as_py().astimezone(dt.UTC) == dt.datetime.fromtimestamp(
        end / S, dt.UTC
    )


def test_bars_fast_on_a_day_of_trades() -> None:
    rng = np.random.default_rng(0)
    n = 600_000
    start = et_ns(dt.date(2026, 3, 5), dt.time(18, 0)) - 86_400 * S
    end = start + 23 * 3600 * S
    ts = np.sort(rng.integers(start, end, n))
    px = 5000 + np.cumsum(rng.integers(-1, 2, n)) * 0.25
    sz = rng.integers(1, 20, n).astype(np.uint32)
    side = pa.array(rng.choice(["A", "B", "N"], n))
    t0 = time.perf_counter()
    t = time_bars(
        pa.array(ts, type=TS_TYPE), pa.array(px), pa.array(sz), side, start_ns=start, end_ns=end, seconds=30
    )
    elapsed = time.perf_counter() - t0
    assert sum(t.column("volume").to_pylist()) == int(sz.sum())
    assert sum(t.column("trades").to_pylist()) == n
    assert elapsed < 0.5


# ---- indicators against plain loops -------------------------------------------------------------


def _loop_ema(x: list[float], n: int, alpha: float) -> list[float]:
    out = [float("nan")] * len(x)
    if len(x) < n:
        return out
    e = sum(x[:n]) / n
    out[n - 1] = e
    for i in range(n, len(x)):
        e = alpha * x[i] + (1 - alpha) * e
        out[i] = e
    return out


def _loop_atr(h: list[float], lo: list[float], c: list[float], n: int) -> list[float]:
    tr = []
    for i in range(len(h)):
        if i == 0:
            tr.append(h[0] - lo[0])
        else:
            tr.append(max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])))
    out = [float("nan")] * len(h)
    if len(h) < n:
        return out
    a = sum(tr[:n]) / n
    out[n - 1] = a
    for i in range(n, len(h)):
        a = a + (tr[i] - a) / n
        out[i] = a
    return out


def _loop_sma(x: list[float], n: int) -> list[float]:
    return [float("nan") if i < n - 1 else sum(x[i - n + 1 : i + 1]) / n for i in range(len(x))]


def _ohlc(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = 100 + np.cumsum(rng.normal(size=n))
    o = np.concatenate([[100.0], c[:-1]])
    h = np.maximum(o, c) + rng.random(n)
    lo = np.minimum(o, c) - rng.random(n)
    return h, lo, c


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n", [1, 5, 14, 20])
def test_indicators_match_loops(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=300).cumsum()
    np.testing.assert_allclose(sma(x, n), _loop_sma(list(x), n), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sma(x, n), pd.Series(x).rolling(n).mean().to_numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ema(x, n), _loop_ema(list(x), n, 2 / (n + 1)), rtol=1e-12, atol=1e-12)
    h, lo, c = _ohlc(rng, 300)
    np.testing.assert_allclose(wilder_atr(h, lo, c, n), _loop_atr(list(h), list(lo), list(c), n), rtol=1e-12)


def test_atr_hand_made() -> None:
    h = [10.0, 11.0, 12.0, 11.0, 13.0]
    lo = [9.0, 10.0, 10.5, 9.0, 12.5]
    c = [9.5, 10.5, 11.0, 9.5, 12.75]
    # TR0 = 10-9 = 1 (no prior close)
    # TR1 = max(11-10, |11-9.5|, |10-9.5|)   = max(1, 1.5, 0.5) = 1.5
    # TR2 = max(12-10.5, |12-10.5|, |10.5-10.5|) = 1.5
    # TR3 = max(11-9, |11-11|, |9-11|)       = 2
    # TR4 = max(13-12.5, |13-9.5|, |12.5-9.5|) = 3.5
    # ATR(3): seed at i=2 = (1 + 1.5 + 1.5)/3 = 4/3; i=3: 4/3 + (2 - 4/3)/3 = 14/9;
    #         i=4: 14/9 + (3.5 - 14/9)/3 = 14/9 + 17.5/27 = 59.5/27
    out = wilder_atr(h, lo, c, 3)
    assert np.isnan(out[:2]).all()
    np.testing.assert_allclose(out[2:], [4 / 3, 14 / 9, 59.5 / 27], rtol=1e-15)


def test_indicators_skip_leading_nan() -> None:
    x = np.array([np.nan, np.nan, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(sma(x, 2), [np.nan, np.nan, np.nan, 1.5, 2.5, 3.5])
    # alpha = 2/3, seed (1 + 2)/2 = 1.5; then 1.5 + 2/3 (3 - 1.5) = 2.5; 2.5 + 2/3 (4 - 2.5) = 3.5
    np.testing.assert_allclose(ema(x, 2), [np.nan, np.nan, np.nan, 1.5, 2.5, 3.5], rtol=1e-15)
    atr = wilder_atr([np.nan, 2.0, 3.0], [np.nan, 1.0, 1.0], [np.nan, 1.5, 2.0], 2)
    # TR = [-, 1 (H-L of the first valid bar), max(2, 1.5, 0.5) = 2] -> seed (1 + 2)/2
    np.testing.assert_array_equal(atr, [np.nan, np.nan, 1.5])


def test_asof() -> None:
    vts = np.array([10, 20, 20, 30])
    vals = np.array([1.0, 2.0, 3.0, 4.0])
    out = asof(vts, vals, np.array([5, 10, 19, 20, 29, 30, 99]))
    np.testing.assert_array_equal(out, [np.nan, 1.0, 1.0, 3.0, 3.0, 4.0, 4.0])
    with pytest.raises(ValueError, match="sorted"):
        asof(vts[::-1], vals, [1])


# ---- no lookahead --------------------------------------------------------------------------------


def _trades(rng: np.random.Generator, lo: int, hi: int, n: int) -> tuple[np.ndarray, ...]:
    ts = np.sort(rng.integers(lo, hi, n))
    px = 5000 + np.cumsum(rng.integers(-2, 3, n)) * 0.25
    sz = rng.integers(1, 30, n).astype(np.uint32)
    side = rng.choice(np.array(["A", "B", "N"]), n)
    return ts, px, sz, side


@pytest.mark.parametrize("seed", range(8))
def test_bars_and_indicators_no_lookahead(seed: int) -> None:
    rng = np.random.default_rng(seed)
    start, end = T0, T0 + 3600 * S
    ts, px, sz, side = _trades(rng, start - 60 * S, end + 60 * S, 4000)
    cut = int(rng.integers(start, end)) if seed % 2 else int(start + rng.integers(1, 120) * 30 * S)
    keep = ts <= cut
    nts, npx, nsz, nside = _trades(rng, cut + 1, end + 60 * S, int(rng.integers(0, 4000)))
    nts[:3] = cut + 1  # a trade 1 ns after the cut: the tightest possible lookahead must show
    npx = npx + 37.0  # different prices too
    other = [
        np.concatenate([a[keep], b]) for a, b in zip((ts, px, sz, side), (nts, npx, nsz, nside), strict=True)
    ]

    kw = {"start_ns": start, "end_ns": end, "seconds": 30}
    a = time_bars(ts, px, sz, side, **kw)
    b = time_bars(*other, **kw)
    stamp = a.column("ts").cast(pa.int64()).to_numpy()
    known = stamp <= cut
    assert known.any()
    assert a.slice(0, int(known.sum())).equals(b.slice(0, int(known.sum())))

    def cols(t: pa.Table) -> dict[str, np.ndarray]:
        h, lo, c = (t.column(k).to_numpy() for k in ("high", "low", "close"))
        return {"sma": sma(c, 10), "ema": ema(c, 10), "atr": wilder_atr(h, lo, c, 14)}

    ia, ib = cols(a), cols(b)
    for key in ia:
        np.testing.assert_array_equal(ia[key][known], ib[key][known], err_msg=key)

    q = np.sort(rng.integers(start, end + 30 * S, 200))
    q = np.append(q, cut)
    qk = q <= cut
    np.testing.assert_array_equal(
        asof(stamp, ia["ema"], q)[qk], asof(b.column("ts").cast(pa.int64()).to_numpy(), ib["ema"], q)[qk]
    )
    # the test has teeth: something after the cut did change
    assert not a.equals(b)


@pytest.mark.parametrize("seed", range(6))
def test_asof_no_lookahead(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vts = np.sort(rng.integers(0, 10_000, 500))
    vals = rng.normal(size=500)
    q = np.sort(rng.integers(-10, 10_010, 300))
    cut = int(rng.choice(q))
    keep = vts <= cut
    new_ts = np.sort(np.concatenate([[cut + 1], rng.integers(cut + 1, 10_020, 200)]))
    ots = np.concatenate([vts[keep], new_ts])
    ovals = np.concatenate([vals[keep], rng.normal(size=new_ts.size)])
    known = q <= cut
    np.testing.assert_array_equal(asof(vts, vals, q)[known], asof(ots, ovals, q)[known])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_asof_by_is_asof_per_key(seed: int) -> None:
    """One search over (key, time) gives each key's own ``asof``, ties and foreign keys included."""
    rng = np.random.default_rng(seed)
    n = 3000
    vk = rng.integers(0, 40, n)  # keys 0..39, of which only some are asked for
    vts = rng.integers(0, 500, n).astype(np.int64) * 1_000_000 + 1_700_000_000 * 10**9  # many ties
    vals = rng.normal(size=n)
    keys = np.unique(rng.choice(45, 25, replace=False)).astype(np.int64)  # some without rows
    q = np.sort(rng.integers(-10, 520, 60)).astype(np.int64) * 1_000_000 + 1_700_000_000 * 10**9
    got = asof_by(keys, vk, vts, vals, q)
    o = np.lexsort((vts, vk))
    for i, k in enumerate(keys):
        mine = o[vk[o] == k]
        want = asof(vts[mine], vals[mine], q) if mine.size else np.full(q.size, np.nan)
        np.testing.assert_array_equal(got[i], want)

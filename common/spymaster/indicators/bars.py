"""Time bars and bar-level indicators (pure numpy / pyarrow, no I/O).

Every function here is *causal*: a value stamped at time ``t`` is computed only from inputs whose
timestamp is ``<= t``. Bars are stamped by their CLOSE time and contain trades strictly before it, so a
bar is known the instant it is stamped. Indicators are recursive or trailing, never centred.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from spymaster.sessions import NS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

TS_TYPE = pa.timestamp("ns", tz="UTC")

__all__ = [
    "TS_TYPE",
    "as_float",
    "as_ns",
    "asof",
    "ema",
    "sma",
    "time_bars",
    "wilder_atr",
]


def as_ns(ts: Any) -> IntArray:
    """Timestamps as int64 nanoseconds since the epoch (UTC).

    Accepts int arrays, ``datetime64`` arrays and pyarrow timestamp arrays / chunked arrays, so callers
    can pass bronze columns straight through. Nulls are rejected: a missing time cannot be ordered.
    """
    if isinstance(ts, pa.ChunkedArray | pa.Array):
        if ts.null_count:
            raise ValueError("timestamps contain nulls")
        if isinstance(ts, pa.ChunkedArray) and ts.num_chunks == 1:
            ts = ts.chunk(0)
        if pa.types.is_timestamp(ts.type):
            # the same int64 buffer: a view costs nothing, a cast is a kernel call per column read
            ts = ts.view(pa.int64()) if isinstance(ts, pa.Array) else ts.cast(pa.int64())
        ts = ts.to_numpy()
    arr = np.asarray(ts)
    if arr.dtype.kind == "M":
        arr = arr.astype("datetime64[ns]").view(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"timestamps must be integers or datetime64, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_float(x: Any) -> FloatArray:
    """A float64 numpy array; pyarrow nulls become NaN."""
    if isinstance(x, pa.ChunkedArray | pa.Array):
        if not pa.types.is_float64(x.type):  # float64 already: nulls become NaN without a cast
            x = x.cast(pa.float64())
        x = x.to_numpy(zero_copy_only=False)
    return np.asarray(x, dtype=np.float64)


def _side_masks(side: Any, n: int) -> tuple[BoolArray, BoolArray]:
    """(is_buy, is_sell) aggressor masks from "A"/"B"/"N" strings, their uint8 codes, or a bool is_buy."""
    if isinstance(side, pa.ChunkedArray | pa.Array):
        if pa.types.is_dictionary(side.type):
            side = side.cast(pa.string())
        if pa.types.is_string(side.type) or pa.types.is_large_string(side.type):
            buy = pc.fill_null(pc.equal(side, "B"), False).to_numpy(zero_copy_only=False)
            sell = pc.fill_null(pc.equal(side, "A"), False).to_numpy(zero_copy_only=False)
            return np.asarray(buy, dtype=bool), np.asarray(sell, dtype=bool)
        side = side.to_numpy(zero_copy_only=False)
    arr = np.asarray(side)
    if arr.shape != (n,):
        raise ValueError(f"side has shape {arr.shape}, expected ({n},)")
    if arr.dtype == np.bool_:
        return arr.copy(), ~arr
    if arr.dtype.kind in "iu":
        return arr == ord("B"), arr == ord("A")
    if arr.dtype.kind == "S":
        return arr == b"B", arr == b"A"
    if arr.dtype.kind in "UO":
        return np.asarray(arr == "B", dtype=bool), np.asarray(arr == "A", dtype=bool)
    raise ValueError(f"unsupported side dtype {arr.dtype}")


def time_bars(
    ts_ns: Any,
    price: Any,
    size: Any,
    side: Any,
    *,
    start_ns: int,
    end_ns: int,
    seconds: int,
) -> pa.Table:
    """OHLCV bars of ``seconds`` length over ``[start_ns, end_ns)``, stamped by their close time.

    Bar ``[t0, t0 + s)`` is stamped ``t0 + s``; a trade exactly at ``t0 + s`` belongs to the next bar, so
    a bar never contains a trade from after its own stamp (no lookahead). Every bar exists, so bar
    series can be sampled on a fixed grid: an empty bar carries the previous close as
    open = high = low = close (and vwap) with zero volume; bars before the first trade are NaN.

    Parameters
    ----------
    ts_ns : trade times (int64 ns UTC, datetime64 or a pyarrow timestamp column). Unsorted input is
        stably sorted, so trades sharing a time keep their input order for open / close.
    price, size : trade price and size.
    side : aggressor, "B" buy / "A" sell / "N" none (strings or their uint8 codes), or a bool is_buy
        array (True buy, False sell). "N" trades count in volume but in neither buy nor sell volume.
    start_ns, end_ns, seconds : the window and bar length; ``end_ns - start_ns`` must be a whole number
        of bars so that the last stamp is ``end_ns``.

    Returns
    -------
    pa.Table with ts (timestamp[ns, UTC]), open, high, low, close, vwap (float64), volume, buy_volume,
    sell_volume, trades (int64).
    """
    step = int(seconds) * NS
    if step <= 0:
        raise ValueError("seconds must be positive")
    span = int(end_ns) - int(start_ns)
    if span <= 0 or span % step:
        raise ValueError("end_ns - start_ns must be a positive whole number of bars")
    n_bars = span // step

    ts = as_ns(ts_ns)
    px = as_float(price)
    sz = np.asarray(size.to_numpy() if isinstance(size, pa.ChunkedArray | pa.Array) else size)
    sz = sz.astype(np.int64)
    buy, sell = _side_masks(side, ts.size)
    if not (px.shape == sz.shape == ts.shape):
        raise ValueError("ts_ns, price, size and side must have the same length")
    if ts.size and np.any(ts[1:] < ts[:-1]):
        order = np.argsort(ts, kind="stable")
        ts, px, sz, buy, sell = ts[order], px[order], sz[order], buy[order], sell[order]

    edges = int(start_ns) + step * np.arange(n_bars + 1, dtype=np.int64)
    bounds = np.searchsorted(ts, edges, side="left")  # bar k holds trades [bounds[k], bounds[k+1])
    counts = np.diff(bounds).astype(np.int64)
    lo = bounds[:-1]
    full = counts > 0
    starts = lo[full]
    first_trade = bounds[0]
    last_trade = bounds[-1]

    open_ = np.full(n_bars, np.nan)
    high = np.full(n_bars, np.nan)
    low = np.full(n_bars, np.nan)
    close = np.full(n_bars, np.nan)
    pxv = np.zeros(n_bars)
    volume = np.zeros(n_bars, dtype=np.int64)
    buy_volume = np.zeros(n_bars, dtype=np.int64)
    sell_volume = np.zeros(n_bars, dtype=np.int64)
    if starts.size:
        # reduceat over the in-window slice only; every group is non-empty so reduceat is exact.
        seg = slice(first_trade, last_trade)
        rel = starts - first_trade
        p, s = px[seg], sz[seg]
        open_[full] = p[rel]
        close[full] = p[bounds[1:][full] - 1 - first_trade]
        high[full] = np.maximum.reduceat(p, rel)
        low[full] = np.minimum.reduceat(p, rel)
        pxv[full] = np.add.reduceat(p * s, rel)
        volume[full] = np.add.reduceat(s, rel)
        buy_volume[full] = np.add.reduceat(np.where(buy[seg], s, 0), rel)
        sell_volume[full] = np.add.reduceat(np.where(sell[seg], s, 0), rel)

    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(volume > 0, pxv / volume, close)

    # Carry the last close into empty bars (forward fill over bar index).
    last_full = np.where(full, np.arange(n_bars), -1)
    np.maximum.accumulate(last_full, out=last_full)
    carried = np.where(last_full >= 0, close[np.maximum(last_full, 0)], np.nan)
    empty = ~full
    for col in (open_, high, low, close, vwap):
        col[empty] = carried[empty]

    return pa.table(
        {
            "ts": pa.array(edges[1:], type=TS_TYPE),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "vwap": vwap,
            "buy_volume": buy_volume,
            "sell_volume": sell_volume,
            "trades": counts,
        }
    )


def sma(x: npt.ArrayLike, n: int) -> FloatArray:
    """Trailing simple moving average over ``n`` values; NaN until ``n`` values exist.

    A window containing a NaN is NaN (like ``pandas.Series.rolling(n).mean()``), so leading NaN bars
    (before the first trade) simply delay the first value.
    """
    v = np.asarray(x, dtype=np.float64)
    if n < 1:
        raise ValueError("n must be >= 1")
    out = np.full(v.shape, np.nan)
    if v.size >= n:
        out[n - 1 :] = np.lib.stride_tricks.sliding_window_view(v, n).mean(axis=1)
    return out


def _seeded_recursion(x: FloatArray, n: int, alpha: float) -> FloatArray:
    """y = y_prev + alpha (x - y_prev), seeded with the mean of the first ``n`` finite-start values.

    Leading NaNs are skipped (the series starts at its first finite value); a NaN after that start
    propagates, as it would in any recursive filter.
    """
    out = np.full(x.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(x))
    if finite.size == 0:
        return out
    first = int(finite[0])
    seed_end = first + n
    if seed_end > x.size:
        return out
    seed = float(np.mean(x[first:seed_end]))
    out[seed_end - 1] = seed
    rest = x[seed_end:]
    if rest.size:
        from scipy.signal import lfilter  # 0.6 s to import: only the EMA needs it

        y, _ = lfilter([alpha], [1.0, alpha - 1.0], rest, zi=[(1.0 - alpha) * seed])
        out[seed_end:] = y
    return out


def ema(x: npt.ArrayLike, n: int) -> FloatArray:
    """Exponential moving average, alpha = 2 / (n + 1), seeded with the SMA of the first ``n`` values.

    Seeding with the SMA (rather than the first value) removes the dependence on a single print;
    values before the seed are NaN. Leading NaNs are skipped before counting the ``n`` seed values.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    return _seeded_recursion(np.asarray(x, dtype=np.float64), n, 2.0 / (n + 1.0))


def wilder_atr(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, n: int = 14) -> FloatArray:
    """Wilder's average true range.

    TR_t = max(H_t - L_t, |H_t - C_{t-1}|, |L_t - C_{t-1}|) with the first TR = H - L (no prior close);
    ATR is seeded with the mean of the first ``n`` TRs, then ATR_t = ATR_{t-1} + (TR_t - ATR_{t-1}) / n.
    NaN before the seed. Leading bars with any NaN in H/L/C (before the first trade) are skipped, and
    the first valid bar's TR is its H - L.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    if not (h.shape == lo.shape == c.shape) or h.ndim != 1:
        raise ValueError("high, low and close must be 1-D arrays of the same length")
    tr = np.full(h.shape, np.nan)
    valid = np.flatnonzero(~(np.isnan(h) | np.isnan(lo) | np.isnan(c)))
    if valid.size:
        f = int(valid[0])
        hh, ll, cc = h[f:], lo[f:], c[f:]
        t = hh - ll
        if t.size > 1:
            prev = cc[:-1]
            t[1:] = np.maximum(t[1:], np.maximum(np.abs(hh[1:] - prev), np.abs(ll[1:] - prev)))
        tr[f:] = t
    return _seeded_recursion(tr, n, 1.0 / n)


def asof(values_ts: Any, values: npt.ArrayLike, query_ts: Any) -> FloatArray:
    """The last value stamped at or before each query time (NaN if none): causal sampling.

    ``values_ts`` must be non-decreasing; with ties the last row wins. ``values`` may have extra
    trailing dimensions (rows are sampled along the first axis).
    """
    vts = as_ns(values_ts)
    q = as_ns(query_ts)
    vals = np.asarray(values, dtype=np.float64)
    if vals.shape[:1] != vts.shape:
        raise ValueError("values and values_ts must have the same length")
    if vts.size and np.any(vts[1:] < vts[:-1]):
        raise ValueError("values_ts must be sorted")
    idx = np.searchsorted(vts, q, side="right") - 1
    out = np.full(q.shape + vals.shape[1:], np.nan)
    ok = idx >= 0
    out[ok] = vals[idx[ok]]
    return out


def asof_by(
    keys: npt.NDArray[np.int64],
    values_key: npt.ArrayLike,
    values_ts: Any,
    values: npt.ArrayLike,
    query_ts: Any,
) -> FloatArray:
    """[key, query]: :func:`asof` over each key's rows, for many keys in one search.

    ``keys`` sorted and unique; rows of other keys are ignored. Rows need not be sorted: they are
    ordered by (key, time) stably, so with ties the last row in input order wins, as in ``asof``.
    One ``searchsorted`` over (key rank, time) replaces a loop of one ``asof`` per key.
    """
    k = np.asarray(keys, dtype=np.int64)
    q = as_ns(query_ts)
    vk = np.asarray(values_key, dtype=np.int64)
    vts = as_ns(values_ts)
    vals = np.asarray(values, dtype=np.float64)
    if not vk.shape == vts.shape == vals.shape:
        raise ValueError("values_key, values_ts and values must have the same length")
    out = np.full((k.size, q.size), np.nan)
    if k.size == 0 or vts.size == 0:
        return out
    rank = np.searchsorted(k, vk)
    mine = (rank < k.size) & (k[np.minimum(rank, k.size - 1)] == vk)
    rank, vts, vals = rank[mine], vts[mine], vals[mine]
    if rank.size == 0:
        return out
    o = np.lexsort((vts, rank))
    rank, vts, vals = rank[o], vts[o], vals[o]
    base = int(vts.min())
    span = int(vts.max()) - base + 2  # a time in [base, max] maps inside its key's band
    if k.size * span >= 2**62:  # the bands would overflow int64: one search per key
        bounds = (
            np.searchsorted(rank, np.arange(k.size), "left"),
            np.searchsorted(rank, np.arange(k.size), "right"),
        )
        for i, (a, b) in enumerate(zip(*bounds, strict=True)):
            if b > a:
                out[i] = asof(vts[a:b], vals[a:b], q)
        return out
    code = rank * span + (vts - base)
    rel = np.clip(q - base, -1, span - 2)  # before every row: −1, the band's previous key
    target = np.arange(k.size, dtype=np.int64)[:, None] * span + rel[None, :]
    idx = np.searchsorted(code, target, side="right") - 1
    ok = (idx >= 0) & (rank[np.maximum(idx, 0)] == np.arange(k.size)[:, None])
    out[ok] = vals[idx[ok]]
    return out


def moving_average_levels(b2: pa.Table, q: npt.NDArray[np.int64]) -> dict[str, FloatArray]:
    """The SMA_90 and EMA_20 levels: SMA-90 and EMA-20 of the 2-minute closes as known at each
    time ``q`` (the last closed bar's value)."""
    closes = as_float(b2.column("close"))
    b2_ts = as_ns(b2.column("ts"))
    return {"SMA_90": asof(b2_ts, sma(closes, 90), q), "EMA_20": asof(b2_ts, ema(closes, 20), q)}

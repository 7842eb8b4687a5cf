"""Silver's book window: the trailing MBP-10 states one step reads, and the book features at a step.

A step's book features read only the states stamped in [t − 420 s, t] (:data:`BOOK_WINDOW_NS`),
so batch silver (fed the day in chunks) and live (fed records as they arrive) cut the same window
and get the same numbers. Each state's OFI terms and book shape are computed once, when it
arrives; the OFI terms' running sums are carried with them (whole and half contracts: exact, so a
window's sum from them is the bits a sum over the window alone gives) and a step's OFI windows are
then a few look-ups instead of prefix sums over the ~40 k states of its window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster.indicators import bars, flow
from spymaster.sessions import NS
from spymaster.settings import PipelineSettings

FloatArray = npt.NDArray[np.float64]
FLOW_WINDOWS_S = (30, 60, 120, 300)
BOOK_WINDOW_NS = (max(FLOW_WINDOWS_S) + 120) * NS
"""A step's book features read only the states stamped in [t − 420 s, t]: the 300-s flow window, the
state prevailing at its start, and the 120-s barrier change. Batch and live cut the same window."""
BOOK_COLUMNS: tuple[str, ...] = tuple(
    f"{side}_{kind}_{i:02d}" for i in range(10) for side in ("bid", "ask") for kind in ("px", "sz")
)
_SHAPE = ("imb_1", "imb_5", "imb_10", "micro_ticks", "spread_ticks", "depth_log")
BOOK_SIGNED = frozenset(
    [f"book_imb_{n}{x}" for n in flow.BOOK_IMBALANCE_LEVELS for x in ("", "_30s", "_60s", "_chg_60s")]
    + ["book_micro_ticks", "book_micro_ticks_30s"]
)
"""Book features silver signs per level (positive = towards the level)."""
BOOK_FEATURES: tuple[str, ...] = (
    *(f"book_imb_{n}{x}" for n in flow.BOOK_IMBALANCE_LEVELS for x in ("", "_30s", "_60s", "_chg_60s")),
    "book_micro_ticks",
    "book_micro_ticks_30s",
    "book_spread_ticks",
    "book_depth_log",
)
PER_LEVEL: tuple[str, ...] = (
    "ask_depth",
    "bid_depth",
    "ask_wall",
    "bid_wall",
    "ask_tick",
    "bid_tick",
    *(f"{sd}_depth_{lag}" for lag in (60, 120) for sd in ("ask", "bid")),
)
"""The [step, level] reads of :meth:`BookWindow.features` (the rest are one value per step)."""


class Grow:
    """A 1-D array that grows by appending and shrinks from the front, never re-copied per call.

    Appends are amortised (doubling); :meth:`drop` only moves the start, and the rows kept are
    moved to the front when an append runs out of room, so a trailing window costs no copy per
    step (a copy of the whole window on the step's path was the live engine's latency spike).
    """

    def __init__(self, dtype: Any) -> None:
        self._a = np.empty(1024, dtype=dtype)
        self._lo = 0
        self.n = 0

    def extend(self, v: npt.NDArray[Any]) -> None:
        if self._lo + self.n + v.size > self._a.size:
            cap = self._a.size if 2 * (self.n + v.size) <= self._a.size else 2 * (self.n + v.size)
            room = np.empty(cap, dtype=self._a.dtype) if cap != self._a.size else self._a
            room[: self.n] = self._a[self._lo : self._lo + self.n]
            self._a, self._lo = room, 0
        self._a[self._lo + self.n : self._lo + self.n + v.size] = v
        self.n += v.size

    def drop(self, k: int) -> None:
        """Forget the first ``k`` values."""
        k = min(k, self.n)
        self._lo += k
        self.n -= k

    @classmethod
    def of(cls, v: npt.NDArray[Any]) -> Grow:
        g = cls(v.dtype)
        g.extend(v)
        return g

    def view(self, n: int | None = None) -> npt.NDArray[Any]:
        return self._a[self._lo : self._lo + (self.n if n is None else n)]


class BookWindow:
    """The trailing window of one instrument's raw book states, one growable column each (nulls
    held as NaN), with each state's OFI terms, their running sums and its book shape, same rows.

    A step reads only a few of its raw rows (:meth:`rows`), and trimming it copies nothing.
    """

    def __init__(self) -> None:
        self._cols: dict[str, Grow] = {}
        self.schema: pa.Schema | None = None
        self._ts = Grow(np.int64)
        self._series: dict[str, Grow] = {}
        self._sums: dict[str, Grow] = {}
        self._sums_before = dict.fromkeys(flow.OFI_SERIES, 0.0)
        """The OFI terms' running sums before the window's first state (the states trimmed)."""
        self._last: pa.Table | None = None
        """The last state added, as it came (one row), for the next states' OFI."""

    @property
    def n(self) -> int:
        return self._ts.n

    def ts(self) -> npt.NDArray[np.int64]:
        return self._ts.view()

    def add(self, mb: pa.Table) -> None:
        """States (``ts_recv`` and :data:`BOOK_COLUMNS`, one instrument) in arrival order."""
        if mb.num_rows == 0:
            return
        n_book = self._ts.n
        if self.schema is None:
            self.schema = mb.schema
        if not mb.schema.equals(self.schema):
            mb = mb.cast(self.schema)
        # The state before these continues the OFI: the last one added, unless trimmed away.
        last = self._last if self._last is not None and n_book else None
        prev = last if last is not None else (self.rows(np.array([n_book - 1])) if n_book else None)
        with_prev = pa.concat_tables([prev, mb]) if prev is not None else mb
        new = flow.ofi_series(with_prev)
        if prev is not None:
            new = {k: v[1:] for k, v in new.items()}
        start = {k: float(g.view()[-1]) for k, g in self._sums.items()} if n_book else self._sums_before
        sums = flow.running_sums(new, start)
        shape = flow.book_shape(mb)
        shape.pop("ts")
        new.update(shape)
        # Appends are amortised (a live feed adds a few hundred states at a time): the book's
        # columns and the series grow in place.
        for name in BOOK_COLUMNS:
            col = mb.column(name)
            v = bars.as_float(col) if pa.types.is_floating(col.type) else col.to_numpy()
            self._cols.setdefault(name, Grow(v.dtype)).extend(v)
        self._ts.extend(bars.as_ns(mb.column("ts_recv")))
        for k, v in new.items():
            self._series.setdefault(k, Grow(v.dtype)).extend(v)
        for k, v in sums.items():
            self._sums.setdefault(k, Grow(v.dtype)).extend(v)
        self._last = mb.take(pa.array([mb.num_rows - 1]))  # a copy: a slice would pin the whole batch

    def trim(self, next_step_ns: int) -> None:
        """Drop the states no step at or after ``next_step_ns`` can read."""
        if not self._ts.n:
            return
        cut = int(np.searchsorted(self._ts.view(), next_step_ns - BOOK_WINDOW_NS, side="left"))
        if cut:
            self._sums_before = {k: float(g.view()[cut - 1]) for k, g in self._sums.items()}
        for g in (self._ts, *self._cols.values(), *self._series.values(), *self._sums.values()):
            g.drop(cut)

    def rows(self, rows: npt.NDArray[np.int64]) -> pa.Table:
        """The window's states at ``rows`` (sorted) as bronze's columns (NaN prices back to null)."""
        schema = self.schema
        assert schema is not None
        cols = [pa.array(self._ts.view()[rows], schema.field("ts_recv").type)]
        for name in BOOK_COLUMNS:
            typ = schema.field(name).type
            cols.append(pa.array(self._cols[name].view()[rows], typ, from_pandas=pa.types.is_floating(typ)))
        return pa.Table.from_arrays(cols, schema=schema)

    def features(
        self, q: npt.NDArray[np.int64], level_mat: FloatArray, s: PipelineSettings
    ) -> dict[str, FloatArray]:
        """Book features at each step from that step's own window [t − 420 s, t]."""
        n, n_lv = level_mat.shape
        names = [f"{x}_{w}s" for w in FLOW_WINDOWS_S for x in ("ofi_norm", "mlofi_norm")]
        out: dict[str, FloatArray] = {
            k: np.full(n, np.nan) for k in [*names, *BOOK_FEATURES, "ask_band", "bid_band"]
        }
        out.update({k: np.full((n, n_lv), np.nan) for k in PER_LEVEL})
        if self._ts.n == 0:
            return out
        ts_all = self._ts.view()
        series = {k: v.view() for k, v in self._series.items()}
        sums = {k: v.view() for k, v in self._sums.items()}
        lags = np.array([120, 60, 0], dtype=np.int64) * NS
        picks = np.full((n, lags.size), -1, dtype=np.int64)  # the state in force at t − lag, in its window
        for j in range(n):
            t = int(q[j])
            a = int(np.searchsorted(ts_all, t - BOOK_WINDOW_NS, side="left"))
            b = int(np.searchsorted(ts_all, t, side="right"))
            if b <= a:
                continue
            ts = ts_all[a:b]
            tq = q[j : j + 1]
            before = {k: float(c[a - 1]) for k, c in sums.items()} if a else self._sums_before
            ofi = flow.ofi_windows(
                ts,
                {k: series[k][a:b] for k in flow.OFI_SERIES},
                tq,
                FLOW_WINDOWS_S,
                sums={k: c[a:b] for k, c in sums.items()},
                sums_before=before,
            )
            for k, v in ofi.items():
                if k in out:
                    out[k][j] = v[0]
            # The shape features look back 60 s: start at the state in force then.
            f0 = a + max(int(np.searchsorted(ts, t - 60 * NS, side="right")) - 1, 0)
            for k, v in _book_features(ts_all[f0:b], {x: series[x][f0:b] for x in _SHAPE}, tq).items():
                out[k][j] = v[0]
            p = np.searchsorted(ts, t - lags, side="right") - 1
            picks[j] = np.where(p >= 0, p + a, -1)
        # The level-relative reads need only the states in force at t, t − 60 s and t − 120 s: read
        # them all at once from those rows; a time whose window holds no state stays NaN.
        rows = np.unique(picks[picks >= 0])
        if rows.size == 0:
            return out
        mb = self.rows(rows)
        tl = np.repeat(q, n_lv)
        lv = level_mat.reshape(-1)
        ok = {lag: np.repeat(picks[:, li] >= 0, n_lv).reshape(n, n_lv) for li, lag in enumerate((120, 60, 0))}
        for sd in ("ask", "bid"):
            side: Any = sd
            # One read for the three times (each query is its own: the same values as three reads).
            t3 = np.concatenate([tl - 120 * NS, tl - 60 * NS, tl])
            depth = flow.book_depth_near(mb, t3, np.tile(lv, 3), side, s.barrier_ticks).reshape(3, n, n_lv)
            for i, lag in enumerate((120, 60, 0)):
                out[f"{sd}_depth_{lag}" if lag else f"{sd}_depth"] = np.where(ok[lag], depth[i], np.nan)
            wall = flow.wall_prominence(mb, tl, lv, side, s.barrier_ticks).reshape(n, n_lv)
            out[f"{sd}_wall"] = np.where(ok[0], wall, np.nan)
            own = flow.level_tick_prominence(mb, tl, lv, side).reshape(n, n_lv)
            out[f"{sd}_tick"] = np.where(ok[0], own, np.nan)
            band = flow.book_side_band(mb, q, side, 2 * s.barrier_ticks + 1)
            out[f"{sd}_band"] = np.where(ok[0][:, 0], band, np.nan)
        return out


def _book_features(
    ts: npt.NDArray[np.int64], shape: dict[str, FloatArray], q: npt.NDArray[np.int64]
) -> dict[str, FloatArray]:
    """Level-independent book-shape features at each step (unsigned; silver signs them per level)."""
    n = q.size
    # The shape in force at t and at t − 60 s, every series at once (the same rows as one read each).
    both = bars.asof(ts, np.stack([shape[x] for x in _SHAPE], axis=1), np.concatenate([q, q - 60 * NS]))
    now, then = both[:n], both[n:]
    col = {x: i for i, x in enumerate(_SHAPE)}
    out: dict[str, FloatArray] = {}
    for lv in flow.BOOK_IMBALANCE_LEVELS:
        i = col[f"imb_{lv}"]
        out[f"book_imb_{lv}"] = now[:, i]
        out[f"book_imb_{lv}_30s"], out[f"book_imb_{lv}_60s"] = flow.time_means_at(
            ts, shape[f"imb_{lv}"], q, (30, 60)
        )
        out[f"book_imb_{lv}_chg_60s"] = now[:, i] - then[:, i]
    out["book_micro_ticks"] = now[:, col["micro_ticks"]]
    out["book_micro_ticks_30s"] = flow.time_mean_at(ts, shape["micro_ticks"], q, 30)
    out["book_spread_ticks"] = now[:, col["spread_ticks"]]
    out["book_depth_log"] = now[:, col["depth_log"]]
    return out

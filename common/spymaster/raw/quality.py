"""What a plausible record is, and what bronze does with the rest (issue 12 #2, #3).

A file can be well-formed DBN and still lie: records outside the window its own metadata claims
(another day's data under this day's header), instruments its symbology does not know, prices of
zero, negative or near ``int64`` max, sizes of 2³²−1, every record twice. The screen needs,
per instrument, the median of the prices that pass the contract's static limits — the session's
own price level — before it can judge the first record against it. Bronze therefore decodes once
with a **deferred** screen (:func:`screen` with ``deferred=True``): each chunk is masked by every
other check before conversion, while the screen gathers the medians' inputs and each outright's
lowest and highest checked price. When the file ends, :meth:`Screen.confirm` says whether any
price lies outside ±:data:`BAND` of its median; only then (a file with such a price is rare) does
bronze discard the decode and run the two-pass screen:

1. **Reference pass** (raw numpy, no conversion): the medians.
2. **Decode pass**: each chunk is masked before conversion.

Both ways every dropped record is counted by reason in a :class:`Quality` record, with the same
counts and the same records kept. A 64-bit hash of every record is checked against the hashes of
all earlier records, so exact duplicates are found across the whole file, not just within a chunk
(the same records as hashing the whole file first, without a second pass).

A record is plausible when (for trades, MBP-1, MBP-10 and TBBO):

* its ``ts_recv`` lies in the file's own [start, end) window;
* its instrument maps to a symbol through the file's symbology;
* every defined price is finite and within the contract's static limits — ES outrights
  (0, 100 000] index points and within ±20 % of that instrument's session median (CME's widest
  daily price limit); ES calendar spreads |p| ≤ 100 000; ES options [0, 100 000];
* its sizes are bounded: a trade 1…100 000 lots, a book level ≤ 10 000 000;
* it is not a byte-for-byte copy of an earlier record.

Up to :data:`MAX_DROP_FRACTION` of a file may be dropped (counted, committed, shown in
``status``); above it the file is refused and quarantined with the counts as its reason, because a
file that wrong is not this session's data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import databento_dbn as dbn
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from databento.common.symbology import InstrumentMap

from spymaster.errors import ImplausibleInputError
from spymaster.lake import paths
from spymaster.raw import dbnread

MAX_DROP_FRACTION = 0.01
"""Above this share of implausible records a file is quarantined instead of cleaned."""
PRICE_MAX = 100_000.0
"""Static limit for every ES price (index points); ES has traded between 600 and 7 500."""
BAND = 0.20
"""An outright's price may stray this far from its session median (CME's widest daily limit)."""
MAX_TRADE_SIZE = 100_000
MAX_BOOK_SIZE = 10_000_000
SCREENED_SCHEMAS = frozenset({"trades", "mbp-1", "mbp-10", "tbbo"})
"""Price/size/duplicate/instrument screening applies to these; every schema gets the window check."""

_OUTRIGHT = re.compile(r"^ES[HMUZ]\d{1,2}$")
_SCALE = float(dbn.FIXED_PRICE_SCALE)
_UNDEF = np.int64(dbn.UNDEF_PRICE)
_LIMIT = np.int64(round(PRICE_MAX * dbn.FIXED_PRICE_SCALE))
_INT_MAX, _INT_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min
REASONS = (
    "outside_window",
    "unknown_instrument",
    "price_out_of_limits",
    "price_off_median",
    "size_out_of_bounds",
    "duplicate",
)


@dataclass
class Quality:
    """Counts of one file's screening: records read, and dropped by reason."""

    records: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def fraction(self) -> float:
        return self.n_dropped / self.records if self.records else 0.0

    @property
    def refused(self) -> bool:
        return self.fraction > MAX_DROP_FRACTION

    def summary(self) -> str:
        parts = ", ".join(f"{n:,} {r.replace('_', ' ')}" for r, n in sorted(self.dropped.items()))
        return f"{self.n_dropped:,} of {self.records:,} records implausible ({parts})"

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "dropped": dict(sorted(self.dropped.items()))}


def _hash_records(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A 64-bit hash of each record's bytes (records are multiples of 8 bytes): the record's words
    times fixed odd 64-bit multipliers, summed modulo 2**64 — one matrix-vector product, ~1.6x
    faster than a word-by-word FNV loop. Two records that differ in one word never collide (an odd
    multiplier is invertible modulo 2**64); ones differing in several collide with probability
    about 2**-64, as for any 64-bit hash."""
    words = np.ascontiguousarray(arr).view(np.uint64).reshape(len(arr), -1)
    mult = _MULTIPLIERS[: words.shape[1]]
    if len(mult) < words.shape[1]:
        raise ValueError(f"records of {words.shape[1]} words: more than the hash's {len(_MULTIPLIERS)}")
    out: np.ndarray[Any, Any] = words @ mult
    return out


_MULTIPLIERS = np.random.default_rng(0x5EED).integers(0, 2**63, 512, dtype=np.uint64) * np.uint64(
    2
) + np.uint64(1)
"""Odd multipliers, fixed (a seeded generator), so a file's hashes are the same in every run."""


class _Seen:
    """Hashes of every record so far, sorted: a record is a duplicate when an earlier one (in
    this chunk or any before) has its hash.

    Held in one buffer that grows by doubling, the new hashes appended and sorted in place
    (timsort merges the two sorted runs in linear time): a new array per chunk, each larger than
    the last, cost page faults for every one of its bytes."""

    def __init__(self) -> None:
        self._buf = np.empty(0, dtype=np.uint64)
        self._n = 0

    @property
    def hashes(self) -> np.ndarray[Any, Any]:
        return self._buf[: self._n]

    def duplicates(self, h: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        uniq = np.sort(h)
        if not (uniq[1:] == uniq[:-1]).any():  # the usual chunk: no repeat within it, no index needed
            dup = np.zeros(len(h), dtype=bool)
            earlier = self._known(uniq)
            if earlier is not None:
                dup = np.isin(h, uniq[earlier])
                uniq = uniq[~earlier]
        else:
            uniq, first = np.unique(h, return_index=True)
            dup = np.ones(len(h), dtype=bool)
            dup[first] = False
            earlier = self._known(uniq)
            if earlier is not None:
                dup[first[earlier]] = True
                uniq = uniq[~earlier]
        self._add(uniq)
        return dup

    def _known(self, uniq: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
        """Which of the sorted distinct ``uniq`` were seen before (``None``: none were)."""
        seen = self.hashes
        if not len(seen):
            return None
        earlier: np.ndarray[Any, Any] = seen[np.searchsorted(seen, uniq).clip(max=len(seen) - 1)] == uniq
        return earlier if earlier.any() else None

    def _add(self, uniq: np.ndarray[Any, Any]) -> None:
        total = self._n + len(uniq)
        if total > len(self._buf):
            grown = np.empty(max(total, 2 * len(self._buf)), dtype=np.uint64)
            grown[: self._n] = self.hashes
            self._buf = grown
        self._buf[self._n : total] = uniq
        self._buf[:total].sort(kind="stable")
        self._n = total


def _price_fields(arr: np.ndarray[Any, Any]) -> list[str]:
    return _price_fields_of(arr.dtype.names or ())


def _size_fields(arr: np.ndarray[Any, Any]) -> list[str]:
    return _size_fields_of(arr.dtype.names or ())


def _price_fields_of(names: Iterable[str]) -> list[str]:
    return [n for n in names if n == "price" or re.fullmatch(r"(bid|ask)_px_\d\d", n)]


def _size_fields_of(names: Iterable[str]) -> list[str]:
    return [n for n in names if n == "size" or re.fullmatch(r"(bid|ask)_sz_\d\d", n)]


class Screen:
    """The record filter of one file (:class:`spymaster.dbnread.RecordFilter`).

    Build it with :func:`screen`; hand it to ``dbnread.decode``; read :attr:`quality` after.
    """

    def __init__(
        self,
        schema: str,
        product: paths.Product,
        window: tuple[int, int] | None,
        medians: dict[int, float] | None,
        outright: set[int] | Callable[[int], bool],
    ) -> None:
        self.schema = schema
        self.product = product
        self.window = window
        self.medians = medians
        """``None``: deferred, gathered while decoding and checked by :meth:`confirm`."""
        self.outright = outright
        self.seen = _Seen()
        self.quality = Quality()
        self._prices_of: dict[int, list[np.ndarray[Any, Any]]] = {}
        self._range: dict[int, tuple[float, float]] = {}
        self._is_out: dict[int, bool] = {}

    def _outright(self, i: int) -> bool:
        if isinstance(self.outright, set):
            return i in self.outright
        if i not in self._is_out:
            self._is_out[i] = self.outright(i)
        return self._is_out[i]

    def confirm(self) -> bool:
        """After a deferred decode: True when no checked price of an outright lies off its session
        median, so that decode kept and counted exactly what the two-pass screen would have.

        ``|px - med|`` rounds monotonically on each side of ``med``, so each outright's lowest and
        highest checked price decide for all of its prices."""
        assert self.medians is None, "confirm() is for a deferred screen"
        medians = _medians(self._prices_of)
        for i, (lo, hi) in self._range.items():
            med = medians.get(i, np.nan)
            if np.isnan(med) or abs(lo - med) > BAND * abs(med) or abs(hi - med) > BAND * abs(med):
                return False
        return True

    def keep(
        self, arr: np.ndarray[Any, Any], cols: dict[str, np.ndarray[Any, Any]] | None = None
    ) -> np.ndarray[Any, Any] | None:
        n = len(arr)
        self.quality.records += n
        keep = np.ones(n, dtype=bool)
        names = arr.dtype.names or ()
        wanted = ["ts_recv"] if self.window is not None and "ts_recv" in names else []
        if self.schema in SCREENED_SCHEMAS:
            wanted += ["instrument_id", *_price_fields(arr), *_size_fields(arr)]
        if cols is None or any(w not in cols for w in wanted):
            cols = dbnread.columns(arr, wanted)
        if self.window is not None and "ts_recv" in cols:
            ts = cols["ts_recv"].view(np.int64)
            bad = (ts < self.window[0]) | (ts >= self.window[1])
            self.quality.add("outside_window", int(np.count_nonzero(bad & keep)))
            keep &= ~bad
        if self.schema in SCREENED_SCHEMAS:
            dup = self.seen.duplicates(_hash_records(arr))
            self.quality.add("duplicate", int(np.count_nonzero(dup & keep)))
            keep &= ~dup
            self._prices(cols, keep)
            self._sizes(cols, keep)
        return None if keep.all() else keep

    def _prices(self, cols: dict[str, np.ndarray[Any, Any]], keep: np.ndarray[Any, Any]) -> None:
        """Static limits in fixed-point units (``raw > PRICE_MAX * 1e9`` is ``raw / 1e9 > PRICE_MAX``
        exactly: near the limit one unit moves the quotient by far more than a float's spacing),
        then the median band: judged now, or with the screen deferred, the outrights' lowest and
        highest checked prices kept for :meth:`confirm`."""
        iid = cols["instrument_id"].astype(np.int64)
        uniq, inv = _ids(iid)
        deferred = self.medians is None
        if deferred:
            _gather(self._prices_of, uniq, inv, cols["price"])
        outs = np.array([self._outright(int(u)) for u in uniq], dtype=bool)
        every_out, no_out = bool(outs.all()), not outs.any()
        is_out = outs[inv]
        medians = self.medians or {}
        med = np.array([medians.get(int(u), np.nan) for u in uniq], dtype=np.float64)[inv]
        limits = np.zeros(len(iid), dtype=bool)
        off = np.zeros(len(iid), dtype=bool)
        lo = np.full(len(iid), _INT_MAX) if deferred and not no_out else None
        hi = np.full(len(iid), _INT_MIN) if lo is not None else None
        for name in _price_fields_of(cols):
            raw = cols[name]
            defined = raw != _UNDEF
            above = raw > _LIMIT
            if self.product is paths.Product.OPT:
                bad = defined & ((raw < 0) | above)
            else:
                outright_bad = (raw <= 0) | above
                spread_bad = above | (raw < -_LIMIT)
                if every_out:
                    bad = defined & outright_bad
                elif no_out:
                    bad = defined & spread_bad
                else:
                    bad = defined & np.where(is_out, outright_bad, spread_bad)
                if lo is not None and hi is not None:  # the prices confirm() will judge
                    checked = defined & ~bad if every_out else defined & is_out & ~bad
                    np.minimum(lo, raw, out=lo, where=checked)
                    np.maximum(hi, raw, out=hi, where=checked)
                elif not deferred and not no_out:
                    px = raw.astype(np.float64) / _SCALE
                    with np.errstate(invalid="ignore"):
                        far = np.abs(px - med) > BAND * np.abs(med)
                    off |= defined & is_out & ~bad & (far | np.isnan(med))
            limits |= bad
        self.quality.add("price_out_of_limits", int(np.count_nonzero(limits & keep)))
        keep &= ~limits
        self.quality.add("price_off_median", int(np.count_nonzero(off & keep)))
        keep &= ~off
        if lo is not None and hi is not None:
            for j in np.flatnonzero(outs):
                sel = slice(None) if len(uniq) == 1 else inv == j
                a, b = int(lo[sel].min()), int(hi[sel].max())
                if a <= b:  # some checked price: as floats, the way the two-pass screen sees them
                    fa, fb = float(np.float64(a) / _SCALE), float(np.float64(b) / _SCALE)
                    i = int(uniq[j])
                    was = self._range.get(i, (fa, fb))
                    self._range[i] = (min(was[0], fa), max(was[1], fb))

    def _sizes(self, cols: dict[str, np.ndarray[Any, Any]], keep: np.ndarray[Any, Any]) -> None:
        bad = np.zeros(len(keep), dtype=bool)
        for name in _size_fields_of(cols):
            sz = cols[name].astype(np.int64)
            if self.schema == "trades" and name == "size":
                bad |= (sz < 1) | (sz > MAX_TRADE_SIZE)
            else:
                bad |= sz > MAX_BOOK_SIZE
        self.quality.add("size_out_of_bounds", int(np.count_nonzero(bad & keep)))
        keep &= ~bad

    def keep_symbols(self, symbols: pa.Array) -> pa.Array | None:
        if self.schema not in SCREENED_SCHEMAS or symbols.null_count == 0:
            return None
        self.quality.add("unknown_instrument", symbols.null_count)
        return pc.is_valid(symbols)


_FEW = 8
"""Instruments in a chunk up to which :func:`_gather` selects each with a mask instead of sorting."""


def _ids(iid: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``np.unique(iid, return_inverse=True)`` by hashing: a chunk holds a handful of
    instruments, and sorting its every record to find them cost more than the rest of the screen."""
    codes, uniq = pd.factorize(iid, sort=True)
    return np.asarray(uniq), codes


def _gather(
    prices: dict[int, list[np.ndarray[Any, Any]]],
    ids: np.ndarray[Any, Any],
    inv: np.ndarray[Any, Any],
    raw: np.ndarray[Any, Any],
) -> None:
    """Add a chunk's prices within the static limits to their instruments' median inputs."""
    px = raw.astype(np.float64) / _SCALE
    ok = (raw != _UNDEF) & (px > 0) & (px <= PRICE_MAX)
    if len(ids) == 1:
        if ok.any():
            prices.setdefault(int(ids[0]), []).append(px[ok])
        return
    if len(ids) <= _FEW:  # one pass per instrument beats sorting the chunk by instrument
        groups = [px[ok & (inv == j)] for j in range(len(ids))]
    else:
        order = np.argsort(inv[ok], kind="stable")
        groups = np.split(px[ok][order], np.cumsum(np.bincount(inv[ok], minlength=len(ids)))[:-1])
    for i, g in zip(ids, groups, strict=True):
        if len(g):
            prices.setdefault(int(i), []).append(g)


def _medians(prices: dict[int, list[np.ndarray[Any, Any]]]) -> dict[int, float]:
    return {i: float(np.median(np.concatenate(v))) for i, v in prices.items()}


def screen(
    path: Any, info: Any, kind: paths.RawKind, *, label: str | None = None, deferred: bool = False
) -> Screen:
    """A file's screen: the reference pass over it (per-instrument session medians), or with
    ``deferred`` none (the decode gathers them; call :meth:`Screen.confirm` after it).

    ``info`` is the file's :class:`spymaster.dbnread.DbnInfo`.
    """
    window = (dbnread._ns(info.start), dbnread._ns(info.end)) if info.end is not None else None
    if kind.schema not in SCREENED_SCHEMAS:
        return Screen(kind.schema, kind.product, window, {}, set())
    symbols = InstrumentMap()
    symbols.insert_metadata(info.metadata)
    days = {info.start.date(), (info.end or info.start).date()}

    def is_outright(i: int) -> bool:
        if kind.product is not paths.Product.FUT:
            return False
        syms = {symbols.resolve(i, d) for d in days} - {None}
        return any(_OUTRIGHT.match(str(sym)) for sym in syms)

    if deferred:
        return Screen(kind.schema, kind.product, window, None, is_outright)
    prices: dict[int, list[np.ndarray[Any, Any]]] = {}
    seen: set[int] = set()
    for arr in dbnread.records(path, label=label):
        cols = dbnread.columns(arr, ["instrument_id", "price"])
        ids, inv = _ids(cols["instrument_id"].astype(np.int64))
        seen.update(int(i) for i in ids)
        _gather(prices, ids, inv, cols["price"])
    return Screen(kind.schema, kind.product, window, _medians(prices), {i for i in seen if is_outright(i)})


def check_file(path: Any, info: Any, kind: paths.RawKind, *, label: str | None = None) -> Quality:
    """Screen a whole file without keeping it (``ingest``): its :class:`Quality`.

    Raises
    ------
    ImplausibleInputError
        More than :data:`MAX_DROP_FRACTION` of its records are implausible.
    """
    s = screen(path, info, kind, label=label, deferred=True)
    for _ in dbnread.decode(path, label=label, screen=s):
        pass
    if s.medians is None and not s.confirm():  # a price off its median: screen again, medians first
        s = screen(path, info, kind, label=label)
        for _ in dbnread.decode(path, label=label, screen=s):
            pass
    if s.quality.refused:
        raise ImplausibleInputError(refusal(s.quality), file=label or str(path), schema=kind.schema)
    return s.quality


def refusal(q: Quality) -> str:
    """Why a file is refused, in one line."""
    why = f"{q.summary()}, more than the {MAX_DROP_FRACTION:.0%} a file may lose"
    if q.dropped.get("outside_window", 0) * 2 > q.records:
        why += "; its records are not from the window its own metadata claims"
    return why

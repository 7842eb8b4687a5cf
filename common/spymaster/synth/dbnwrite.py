"""DBN record layouts and encoding, taken from Databento's own ``databento_dbn`` types.

Writing millions of records one Python object at a time is too slow; numpy structured arrays
with the record classes' own on-disk layout (``Msg._dtypes``) encode byte-identically.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import databento_dbn as dbn
import numpy as np
import zstandard

PRICE_SCALE = dbn.FIXED_PRICE_SCALE
UNDEF_PRICE = dbn.UNDEF_PRICE
PUBLISHER_GLBX = 1  # GLBX.MDP3 on the Globex venue

RECORD_CLASSES: dict[str, Any] = {
    "trades": dbn.TradeMsg,
    "mbp-1": dbn.MBP1Msg,
    "mbp-10": dbn.MBP10Msg,
    "statistics": dbn.StatMsg,
    "definition": dbn.InstrumentDefMsg,
}

RTYPES: dict[str, int] = {
    "trades": int(dbn.RType.MBP_0),
    "mbp-1": int(dbn.RType.MBP_1),
    "mbp-10": int(dbn.RType.MBP_10),
    "statistics": int(dbn.RType.STATISTICS),
    "definition": int(dbn.RType.INSTRUMENT_DEF),
}


def record_dtype(schema: str) -> np.dtype[Any]:
    """The exact on-disk layout of one record of ``schema`` (current DBN version)."""
    dtype: np.dtype[Any] = np.dtype(RECORD_CLASSES[schema]._dtypes)
    assert dtype.itemsize == RECORD_CLASSES[schema].size_hint, schema
    return dtype


def empty_records(schema: str, n: int) -> np.ndarray[Any, Any]:
    """``n`` zeroed records with their header (length, rtype, publisher) already filled."""
    dtype = record_dtype(schema)
    rec = np.zeros(n, dtype=dtype)
    rec["length"] = dtype.itemsize // 4
    rec["rtype"] = RTYPES[schema]
    rec["publisher_id"] = PUBLISHER_GLBX
    return rec


@dataclass
class _Interval:
    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclass
class _Mapping:
    raw_symbol: str
    intervals: list[_Interval]


def metadata(
    *,
    schema: str,
    start_ns: int,
    end_ns: int,
    symbols: Sequence[str],
    mappings: Mapping[str, int] | None = None,
    date: dt.date | None = None,
    dataset: str = "GLBX.MDP3",
) -> dbn.Metadata:
    """DBN metadata for a parent-symbology request, with raw symbol → instrument id mappings.

    Mapping intervals are UTC dates (as Databento's are) covering [start, end]: a Globex session
    opens on the previous UTC date, so one date alone would leave the evening records unmapped.
    """
    maps: list[_Mapping] = []
    if mappings:
        first = dt.datetime.fromtimestamp(start_ns / 1e9, dt.UTC).date()
        last = dt.datetime.fromtimestamp(end_ns / 1e9, dt.UTC).date() + dt.timedelta(days=1)
        if date is not None:
            first, last = min(first, date), max(last, date + dt.timedelta(days=1))
        maps = [_Mapping(sym, [_Interval(first, last, str(iid))]) for sym, iid in sorted(mappings.items())]
    return dbn.Metadata(
        dataset=dataset,
        start=start_ns,
        end=end_ns,
        stype_in=dbn.SType.PARENT,  # type: ignore[arg-type]
        stype_out=dbn.SType.INSTRUMENT_ID,  # type: ignore[arg-type]
        schema=dbn.Schema.from_str(schema),
        symbols=list(symbols),
        partial=[],
        not_found=[],
        mappings=maps,  # type: ignore[arg-type]  # duck-typed like SymbolMapping
    )


def encode(
    meta: dbn.Metadata,
    records: np.ndarray[Any, Any] | Iterable[Any],
    *,
    level: int = 3,
    threads: int = 0,
) -> bytes:
    """A complete zstd-compressed DBN stream: metadata header, then records in order."""
    cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    chunks: list[bytes] = [bytes(meta.encode())]
    if isinstance(records, np.ndarray):
        chunks.append(records.tobytes())
    else:
        chunks.extend(bytes(r) for r in records)
    return cctx.compress(b"".join(chunks))


def to_fixed(price: np.ndarray[Any, Any] | float) -> Any:
    """Float prices → DBN fixed-point int64 (1e-9), rounded to the nearest nano."""
    return np.rint(np.asarray(price, dtype=np.float64) * PRICE_SCALE).astype(np.int64)

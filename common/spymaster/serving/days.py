"""A date's silver for the page: state, levels and 2-minute bars in a small LRU cache keyed by date,
revalidated against the ``state`` manifest's run id; the day list, bars and levels answers.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from spymaster import sessions
from spymaster.errors import NotCommittedError, NotFoundError
from spymaster.indicators.bars import moving_average_levels
from spymaster.lake import committed_dates, paths, read_committed, read_manifest
from spymaster.lake.paths import Layer
from spymaster.levels import LEVEL_KINDS
from spymaster.retrieval import finite_or_none
from spymaster.serving.snapshot import TableSnapshots, _floats, _ns
from spymaster.sessions import NS, STEP_NS, day_number

BARS_FROM = dt.time(9, 0)
DEALER_INPUTS = (paths.OPT_DEFINITION, paths.OPT_STATISTICS, paths.OPT_MBP1)
"""The options tables silver's dealer features are computed from."""


# -- small helpers ---------------------------------------------------------------------------------


def iso_z(ts_ns: int) -> str:
    """ns since the epoch (UTC) → ``2026-03-05T14:30:00Z`` (fractions only when present)."""
    sec, frac = divmod(int(ts_ns), NS)
    t = dt.datetime.fromtimestamp(sec, tz=dt.UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{f'{frac:09d}'.rstrip('0')}Z" if frac else f"{base}Z"


def et_time(ts_ns: int) -> str:
    """ns since the epoch (UTC) → New York wall-clock ``HH:MM:SS``."""
    return dt.datetime.fromtimestamp(int(ts_ns) // NS, tz=sessions.ET).strftime("%H:%M:%S")


# -- a date's silver -------------------------------------------------------------------------------


@dataclass
class DayData:
    date: dt.date
    run_id: str
    state: pa.Table
    levels: pa.Table
    bars_2m: pa.Table
    checked: float
    rows: dict[tuple[str, int], int] = field(default_factory=dict)
    """(level_kind, ts ns) → state row."""

    def __post_init__(self) -> None:
        kinds = self.state.column("level_kind").to_pylist()
        ts = _ns(self.state.column("ts")).tolist()
        self.rows = {(k, t): i for i, (k, t) in enumerate(zip(kinds, ts, strict=True))}


class DayCache(TableSnapshots):
    """A date's silver (cached) and the day list, bars and levels answers."""

    _day_lock: threading.Lock
    _days: OrderedDict[dt.date, DayData]
    _day_cache_size: int
    _days_list: tuple[float, list[dict[str, Any]], int | None] | None

    def days(self) -> dict[str, Any]:
        snap = self._snapshot()
        cached = self._days_list
        if (
            cached is not None
            and cached[2] == snap.index.version
            and self._clock() - cached[0] < self.check_s
        ):
            return {"days": cached[1]}
        out: list[dict[str, Any]] = []
        if self.lake is not None:
            silver = committed_dates(self.lake, Layer.SILVER, paths.STATE_TABLE)
            marked = {
                paths.date_from_partition(p)
                for p in self.lake.list_files(paths.INDEX_MARKERS)
                if p.endswith(".json")
            }
            # Dealer features need the options tables silver reads; without them they are null.
            dealer = set.intersection(
                *(set(committed_dates(self.lake, Layer.BRONZE, k.bronze_table)) for k in DEALER_INPUTS)
            )
            for d in silver:
                n = snap.index.day_counts.get(day_number(d), 0)
                out.append(
                    {
                        "date": d.isoformat(),
                        "episodes": int(n),
                        "indexed": bool(n) or d in marked,
                        "options": d in dealer,
                    }
                )
        self._days_list = (self._clock(), out, snap.index.version)
        return {"days": out}

    # -- a date's silver ----------------------------------------------------------------------
    def day(self, date: dt.date) -> DayData:
        """The date's committed silver (cached); :class:`NotFoundError` if there is none."""
        if self.lake is None:
            raise NotFoundError(f"no silver data for {date.isoformat()}")
        now = self._clock()
        with self._day_lock:
            hit = self._days.get(date)
            if hit is not None:
                self._days.move_to_end(date)
                if now - hit.checked < self.check_s:
                    return hit
        lake = self.lake
        try:
            # a cached date is revalidated by its state manifest alone; a new one reads it with the rest
            m = read_manifest(lake, Layer.SILVER, paths.STATE_TABLE, date) if hit is not None else None
        except NotCommittedError:
            with self._day_lock:
                self._days.pop(date, None)
            raise NotFoundError(f"no silver data for {date.isoformat()}") from None
        if hit is not None and m is not None and hit.run_id == m.run_id:
            hit.checked = now
            return hit

        def state() -> tuple[str, pa.Table]:
            sm = m or read_manifest(lake, Layer.SILVER, paths.STATE_TABLE, date)
            return sm.run_id, lake.read_parquet(sm.files)

        # The three tables at once: each is a few sequential round trips to S3 (manifest, footer,
        # data), and a cold start's first answer waits for the slowest, not their sum
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="silver-read") as pool:
            got = pool.submit(state)
            rest = [
                pool.submit(read_committed, lake, Layer.SILVER, t, date)
                for t in (paths.LEVELS_TABLE, paths.BARS_2M_TABLE)
            ]
            try:  # no state: no silver for the date, whatever the other two say
                run_id, state_table = got.result()
            except NotCommittedError:
                with self._day_lock:
                    self._days.pop(date, None)
                raise NotFoundError(f"no silver data for {date.isoformat()}") from None
            levels, bars_2m = (f.result() for f in rest)
        data = DayData(
            date=date, run_id=run_id, state=state_table, levels=levels, bars_2m=bars_2m, checked=now
        )
        with self._day_lock:
            self._days[date] = data
            self._days.move_to_end(date)
            while len(self._days) > self._day_cache_size:
                self._days.popitem(last=False)
        return data

    def bars(self, date: dt.date) -> dict[str, Any]:
        b = self.day(date).bars_2m
        ts = _ns(b.column("ts"))
        lo, hi = sessions.et_ns(date, BARS_FROM), sessions.et_ns(date, sessions.QUERY_END)
        sel = np.flatnonzero((ts >= lo) & (ts <= hi))
        cols = {c: _floats(b.column(c))[sel].tolist() for c in ("open", "high", "low", "close")}
        vol = _floats(b.column("volume"))[sel].tolist()
        bars = [
            {
                "t": iso_z(int(ts[j])),
                "time": et_time(int(ts[j])),
                **{c: finite_or_none(cols[c][i]) for c in ("open", "high", "low", "close")},
                "volume": int(vol[i]) if math.isfinite(vol[i]) else 0,
            }
            for i, j in enumerate(sel.tolist())
        ]
        return {"date": date.isoformat(), "bars": bars}

    def levels(self, date: dt.date) -> dict[str, Any]:
        day = self.day(date)
        lv = day.levels
        ts = _ns(lv.column("ts"))
        lo, hi = sessions.et_ns(date, sessions.RTH_OPEN), sessions.et_ns(date, sessions.QUERY_END)
        sel = np.flatnonzero((ts >= lo) & (ts <= hi))
        # Silver's levels start at 09:30; the chart starts at 09:00 (BARS_FROM). The moving averages
        # exist before the open: computed from the same 2-minute bars the same way, on the 30-s grid.
        early = np.arange(sessions.et_ns(date, BARS_FROM), lo, STEP_NS, dtype=np.int64)
        mas = moving_average_levels(day.bars_2m, early)
        stamps = np.concatenate([early, ts[sel]])
        t = [(iso_z(int(x)), et_time(int(x))) for x in stamps.tolist()]
        out = []
        for kind in LEVEL_KINDS:
            later = _floats(lv.column(kind))[sel].tolist() if kind in lv.column_names else [None] * sel.size
            vals = (mas[kind].tolist() if kind in mas else [None] * early.size) + later
            out.append(
                {
                    "kind": kind,
                    "points": [
                        {"t": ti, "time": et, "value": finite_or_none(v)}
                        for (ti, et), v in zip(t, vals, strict=True)
                    ],
                }
            )
        return {"date": date.isoformat(), "levels": out}

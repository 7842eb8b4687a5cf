"""Gold: a date's approach episodes, their raw vectors and their first-crossing outcomes.

An **episode** is a moment the trader asks "will this level break or hold?": price enters a level's
approach zone (silver ``in_zone``: |distance| ≤ 2 ATR), and again at every 2-minute bar close while
it stays there, between 09:30 and 12:30 ET. Anchoring rules (docs/GOLD.md):

* ``FIRST_BAR`` — the level's first active step of the day is in the zone (09:30 for PM/SMA/EMA,
  09:45 for OR levels: already being in the zone when the level appears counts as an entry);
* ``ENTRY`` — in the zone at a step whose previous 30-s step was out of it (or had no row for the
  level): leaving the zone for one step re-arms the entry;
* ``BAR_CLOSE`` — in the zone at a 2-minute bar close (even ET minutes, bars aligned to the 18:00
  Globex open) that is not itself an entry.
* ``APPROACH`` — the moment of the question: |distance| ≤ ``APPROACH_ATR`` (0.5) at a step after
  having been > ``APPROACH_REARM_ATR`` (1.0) since the level's last approach (a gap in the level's
  rows disarms it). 0.5 ATR is near enough that the resting size at the level is inside the ten
  visible book levels (1–2.5 points at RTH ATRs of 2–5), and far enough that neither outcome has
  started (BREAK needs 1.5 ATR more, REJECT 1 ATR back). Takes precedence over ENTRY / BAR_CLOSE.

``episode_id`` = 16 hex chars of blake2b("<date>|<level_kind>|<direction>|<anchor ns>").

**Outcomes** use only the 30-s bars that start at or after the anchor, with the level and ATR
frozen at their anchor values. In coordinates signed into the level (x = ±(price − level)/ATR,
x₀ ≤ 0 at the anchor): BREAK when a bar reaches x ≥ +1 (1 ATR through the level), REJECT when a
bar reaches x ≤ x₀ − 1 (1 ATR further back than the anchor price); the first bar doing either
decides; a bar doing both (a tie, or a gap through both inside one 30-s step) is CHOP; nothing
within the horizon is CHOP. Horizons 2, 4, 8, 20 minutes; the primary label is 8 minutes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from spymaster import sessions, vectors
from spymaster.indicators.bars import as_float, as_ns
from spymaster.lake import Lake, commit, discard, new_run_id, paths, read_committed, read_manifest
from spymaster.lake.paths import EPISODES_TABLE, Layer, data_file
from spymaster.levels import LEVEL_KINDS
from spymaster.outcomes import HORIZONS_MIN, PRIMARY_HORIZON_MIN, THRESHOLD_ATR
from spymaster.sessions import NS

__all__ = [
    "ANCHOR_REASONS",
    "ANCHOR_SCHEMA",
    "EPISODE_SCHEMA",
    "OUTCOME_COLUMNS",
    "OUTCOME_SCHEMA",
    "AnchorMarks",
    "anchor_marks",
    "anchor_table",
    "anchors",
    "build",
    "episode_id",
    "episodes",
    "label",
    "read_episodes",
]

BAR_S = sessions.STEP_S
BAR_NS = sessions.STEP_NS
_EPS = 1e-9
ANCHOR_REASONS: tuple[str, ...] = ("FIRST_BAR", "ENTRY", "BAR_CLOSE", "APPROACH")
APPROACH = "APPROACH"
APPROACH_ATR = 0.5
"""An approach fires when |distance| comes within this many ATR of the level (docs/GOLD.md)."""
APPROACH_REARM_ATR = 1.0
"""…having been farther than this since the level's last approach (hysteresis: no chatter at 0.5)."""

TS = pa.timestamp("ns", tz="UTC")
ANCHOR_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("level_kind", pa.string(), nullable=False),
        pa.field("direction", pa.string(), nullable=False),
        pa.field("time_bucket", pa.int8(), nullable=False),
        pa.field("level_price", pa.float64(), nullable=False),
        pa.field("price", pa.float64()),
        pa.field("atr", pa.float64()),
        pa.field("distance", pa.float64()),
        pa.field("anchor_reason", pa.string(), nullable=False),
        pa.field("visit", pa.int32(), nullable=False),
        pa.field("minutes_in_zone", pa.float64(), nullable=False),
    ]
)


def _outcome_fields(horizons: tuple[int, ...]) -> list[pa.Field]:
    return [
        pa.field("label", pa.string()),
        *(pa.field(f"label_{h}m", pa.string()) for h in horizons),
        pa.field("first_crossing", pa.string()),
        pa.field("resolve_s", pa.float64()),
        *(pa.field(f"mfe_{h}m", pa.float64()) for h in horizons),
        *(pa.field(f"mae_{h}m", pa.float64()) for h in horizons),
        *(pa.field(f"fwd_{h}m", pa.float64()) for h in horizons),
    ]


OUTCOME_SCHEMA = pa.schema(_outcome_fields(HORIZONS_MIN))
OUTCOME_COLUMNS: tuple[str, ...] = tuple(OUTCOME_SCHEMA.names)
"""Every outcome column: never an input of the vector builder (which refuses these names)."""
EPISODE_SCHEMA = pa.schema(
    [*ANCHOR_SCHEMA, pa.field("vector", vectors.VECTOR_TYPE, nullable=False), *OUTCOME_SCHEMA],
    metadata={
        "vector_layout": vectors.LAYOUT_VERSION,
        "horizons_min": ",".join(map(str, HORIZONS_MIN)),
        "primary_horizon_min": str(PRIMARY_HORIZON_MIN),
        "threshold_atr": str(THRESHOLD_ATR),
    },
)

if not all(vectors.is_outcome_name(c) for c in OUTCOME_COLUMNS):  # pragma: no cover - invariant
    raise RuntimeError("an outcome column would not be refused by the vector builder")


def episode_id(date: dt.date, level_kind: str, direction: str, anchor_ns: int) -> str:
    """Deterministic id: blake2b (8-byte digest, 16 hex chars) of ``date|kind|direction|anchor ns``."""
    key = f"{date.isoformat()}|{level_kind}|{direction}|{int(anchor_ns)}"
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


# -- anchoring -------------------------------------------------------------------------------------

_ANCHOR_INPUTS = ("date", "ts", "level_kind", "direction", "time_bucket", "level_price", "price")


def anchors(state: pa.Table, levels: pa.Table | None = None) -> pa.Table:
    """Episode anchors of the state table (any number of dates), sorted by (date, ts, level_kind).

    ``price`` and ``atr`` come from ``levels`` at the anchor step when given (the silver levels
    table), else from the state row (``price``, ``ctx_atr_points``).
    """
    t = state.select([*_ANCHOR_INPUTS, "distance", "in_zone", "ctx_atr_points"])
    if t.num_rows == 0:
        return ANCHOR_SCHEMA.empty_table()
    days = np.asarray(t.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False), dtype=np.int64)
    kinds = np.asarray(t.column("level_kind").to_pylist(), dtype=object)
    ts_all = as_ns(t.column("ts"))
    inz_all = np.nan_to_num(as_float(t.column("in_zone"))) >= 0.5
    dist_all = as_float(t.column("distance"))
    picked: list[npt.NDArray[np.int64]] = []
    marks: list[AnchorMarks] = []
    for day in np.unique(days):
        date = sessions.from_day_number(int(day))
        for kind in LEVEL_KINDS:
            rows = np.flatnonzero((days == day) & (kinds == kind))
            if rows.size == 0:
                continue
            rows = rows[np.argsort(ts_all[rows], kind="stable")]
            m = anchor_marks(date, kind, ts_all[rows], inz_all[rows], dist_all[rows])
            picked.append(rows[m.at])
            marks.append(m)
    idx = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    return anchor_table(t.take(pa.array(idx, pa.int64())), AnchorMarks.concat(marks), levels)


@dataclass(frozen=True)
class AnchorMarks:
    """The anchors of one (date, level kind)'s rows: positions in those rows and what each carries."""

    at: npt.NDArray[np.int64]
    reason: npt.NDArray[np.int8]  # index into ANCHOR_REASONS
    visit: npt.NDArray[np.int64]
    minutes_in_zone: npt.NDArray[np.float64]

    @staticmethod
    def concat(parts: list[AnchorMarks]) -> AnchorMarks:
        if not parts:
            return AnchorMarks(
                np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64), np.zeros(0)
            )
        return AnchorMarks(*(np.concatenate([getattr(p, f) for p in parts]) for f in _MARK_FIELDS))


_MARK_FIELDS = ("at", "reason", "visit", "minutes_in_zone")


def anchor_marks(
    date: dt.date,
    kind: str,
    ts: npt.NDArray[np.int64],
    in_zone: npt.NDArray[np.bool_],
    distance: npt.NDArray[np.float64],
) -> AnchorMarks:
    """The anchoring rules over one (date, level kind)'s state rows in time order (pure numpy).

    Each mark depends on the rows up to it only, so the live engine, which calls this with the
    rows so far, finds at its last row exactly the anchor batch gold finds there.
    """
    open_ns = sessions.et_ns(date, sessions.RTH_OPEN)
    end_ns = sessions.et_ns(date, sessions.QUERY_END)
    if np.any(np.diff(ts) <= 0):
        raise ValueError(f"duplicate state rows for {date} {kind}")
    if np.any((ts - open_ns) % BAR_NS):
        raise ValueError(f"state rows of {date} {kind} are off the 30-s grid")
    inz = in_zone
    follows = np.r_[False, np.diff(ts) == BAR_NS]  # the previous grid step has a row
    prev_in = np.r_[False, inz[:-1]] & follows
    entry = inz & ~prev_in
    first_bar = entry & (np.arange(ts.size) == 0)
    bar_close = sessions.is_bar_close(ts, date)
    sel = inz & (entry | bar_close) & (ts >= open_ns) & (ts <= end_ns)
    visit = np.cumsum(entry)
    last_entry = np.maximum.accumulate(np.where(entry, np.arange(ts.size), 0))
    minutes = (ts - ts[last_entry]) / (60 * NS)
    approach = _approaches(distance, follows)
    approach &= ~first_bar
    sel |= approach & (ts >= open_ns) & (ts <= end_ns)
    reason = np.where(first_bar, 0, np.where(approach, 3, np.where(entry, 1, 2))).astype(np.int8)
    at = np.flatnonzero(sel)
    return AnchorMarks(at, reason[at], visit[at], minutes[at])


def anchor_table(a: pa.Table, marks: AnchorMarks, levels: pa.Table | None = None) -> pa.Table:
    """The anchor rows (ANCHOR_SCHEMA, sorted) from the marked state rows ``a`` (in the marks' order)."""
    reason_s = [ANCHOR_REASONS[r] for r in marks.reason.tolist()]
    a_ts = as_ns(a.column("ts"))
    if levels is not None:
        l_ts = as_ns(levels.column("ts"))
        pos = np.searchsorted(l_ts, a_ts)
        ok = (pos < l_ts.size) & (l_ts[np.minimum(pos, l_ts.size - 1)] == a_ts) if l_ts.size else pos < 0
        if not ok.all():
            raise ValueError("levels table has no row at some anchor steps")
        price = as_float(levels.column("price"))[pos]
        atr = as_float(levels.column("atr"))[pos]
    else:
        price = as_float(a.column("price"))
        atr = as_float(a.column("ctx_atr_points"))
    dates = a.column("date").to_pylist()
    kinds_a = a.column("level_kind").to_pylist()
    dirs = a.column("direction").to_pylist()
    ids = [
        episode_id(d, k, r, int(x)) for d, k, r, x in zip(dates, kinds_a, dirs, a_ts.tolist(), strict=True)
    ]
    out = pa.table(
        {
            "episode_id": pa.array(ids, pa.string()),
            "date": a.column("date"),
            "ts": a.column("ts"),
            "level_kind": a.column("level_kind"),
            "direction": a.column("direction"),
            "time_bucket": a.column("time_bucket"),
            "level_price": a.column("level_price"),
            "price": pa.array(price, pa.float64()),
            "atr": pa.array(atr, pa.float64()),
            "distance": a.column("distance"),
            "anchor_reason": pa.array(reason_s, pa.string()),
            "visit": pa.array(marks.visit, pa.int32()),
            "minutes_in_zone": pa.array(marks.minutes_in_zone, pa.float64()),
        },
        schema=ANCHOR_SCHEMA,
    )
    return out.sort_by([("date", "ascending"), ("ts", "ascending"), ("level_kind", "ascending")])


def _approaches(
    distance: npt.NDArray[np.float64],
    follows: npt.NDArray[np.bool_],
    near: float = APPROACH_ATR,
    rearm: float = APPROACH_REARM_ATR,
) -> npt.NDArray[np.bool_]:
    """Steps where |distance| comes within ``near`` from beyond ``rearm`` on the same side (hysteresis).

    Price that jumps through the level between two steps did not approach it: crossing disarms.
    """
    out = np.zeros(distance.size, dtype=np.bool_)
    armed_side = 0.0
    for i, (x, cont) in enumerate(zip(distance.tolist(), follows.tolist(), strict=True)):
        if not cont or not np.isfinite(x):
            armed_side = 0.0
            if not np.isfinite(x):
                continue
        side = 1.0 if x > 0 else -1.0
        if armed_side and side != armed_side:
            armed_side = 0.0
        if armed_side and abs(x) <= near:
            out[i] = True
            armed_side = 0.0
        elif abs(x) > rearm:
            armed_side = side
    return out


# -- labels ----------------------------------------------------------------------------------------


def label(
    anchor_rows: pa.Table,
    bars_30s: pa.Table,
    *,
    horizons: tuple[int, ...] = HORIZONS_MIN,
    primary_min: int = PRIMARY_HORIZON_MIN,
    threshold_atr: float = THRESHOLD_ATR,
) -> pa.Table:
    """First-crossing outcomes of each anchor from the 30-s bars after it (rows in the anchors' order).

    ``anchor_rows`` needs ts, direction, level_price, price (at the anchor) and atr (at the anchor);
    ``bars_30s`` needs ts (bar close stamps, 30 s apart), high, low, close. The bar stamped
    t + 30 s covers [t, t + 30 s): the first bar a label may use starts at the anchor. A horizon
    not covered by contiguous bars gives a null label (unless resolved earlier) and NaN excursions.

    Columns: ``label`` (the primary horizon), ``label_{h}m`` (BREAK/REJECT/CHOP), ``first_crossing``
    (BREAK/REJECT/TIE/NONE within the longest horizon), ``resolve_s`` (end of the bar that
    resolved it, s after the anchor), ``mfe_{h}m`` / ``mae_{h}m`` (max favourable / adverse
    excursion from the anchor price, ATR, ≥ 0; favourable = into the level), ``fwd_{h}m`` (close at
    the horizon minus the anchor price, ATR, signed into the level).
    """
    hz = tuple(sorted(set(horizons)))
    if primary_min not in hz:
        raise ValueError("the primary horizon must be one of the horizons")
    schema = pa.schema(_outcome_fields(hz))
    n = anchor_rows.num_rows
    steps = max(hz) * 60 // BAR_S
    ts = as_ns(anchor_rows.column("ts"))
    up = np.asarray([d == "UP" for d in anchor_rows.column("direction").to_pylist()], dtype=bool)
    s = np.where(up, 1.0, -1.0)[:, None]
    lvl = as_float(anchor_rows.column("level_price"))[:, None]
    p0 = as_float(anchor_rows.column("price"))[:, None]
    atr = as_float(anchor_rows.column("atr"))[:, None]
    b_ts = as_ns(bars_30s.column("ts"))
    if b_ts.size and np.any(np.diff(b_ts) <= 0):
        raise ValueError("bars must be sorted by ts")
    want = ts[:, None] + (np.arange(steps, dtype=np.int64)[None, :] + 1) * BAR_NS
    pos = np.searchsorted(b_ts, want)
    safe = np.minimum(pos, max(b_ts.size - 1, 0))
    if b_ts.size:
        hi = as_float(bars_30s.column("high"))[safe]
        lo = as_float(bars_30s.column("low"))[safe]
        cl = as_float(bars_30s.column("close"))[safe]
        valid = (pos < b_ts.size) & (b_ts[safe] == want) & np.isfinite(hi) & np.isfinite(lo) & np.isfinite(cl)
    else:
        hi = lo = cl = np.full(want.shape, np.nan)
        valid = np.zeros(want.shape, dtype=bool)
    valid &= np.isfinite(lvl) & np.isfinite(p0) & np.isfinite(atr) & (atr > 0)
    contiguous = np.cumprod(valid, axis=1).astype(bool)  # the path stops at its first gap
    with np.errstate(invalid="ignore", divide="ignore"):
        x0 = s * (p0 - lvl) / atr
        into = np.where(up[:, None], hi - lvl, lvl - lo) / atr  # furthest into the level in the bar
        back = np.where(up[:, None], lo - lvl, lvl - hi) / atr  # furthest away from it in the bar
        close_x = s * (cl - lvl) / atr
        brk = contiguous & (into >= threshold_atr - _EPS)
        rej = contiguous & (back <= x0 - threshold_atr + _EPS)
    event = brk | rej
    has = event.any(axis=1)
    first = np.argmax(event, axis=1)
    r = np.arange(n)
    fb, fr = brk[r, first] & has, rej[r, first] & has
    crossing = np.where(~has, "NONE", np.where(fb & fr, "TIE", np.where(fb, "BREAK", "REJECT")))
    resolve_s = np.where(has, (first + 1) * BAR_S, np.nan).astype(np.float64)
    cols: dict[str, Any] = {"first_crossing": crossing.tolist(), "resolve_s": resolve_s}
    into_c = np.where(contiguous, into, np.nan)
    back_c = np.where(contiguous, back, np.nan)
    for h in hz:
        k = h * 60 // BAR_S
        covered = contiguous[:, k - 1]
        resolved = has & (first < k)
        decided = np.where(crossing == "TIE", "CHOP", crossing)
        cols[f"label_{h}m"] = [
            str(d) if res else ("CHOP" if cov else None)
            for d, res, cov in zip(decided.tolist(), resolved.tolist(), covered.tolist(), strict=True)
        ]
        with np.errstate(invalid="ignore"):
            mfe = np.maximum(0.0, _rowmax(into_c[:, :k]) - x0[:, 0])
            mae = np.maximum(0.0, x0[:, 0] - _rowmin(back_c[:, :k]))
            fwd = close_x[:, k - 1] - x0[:, 0]
        cols[f"mfe_{h}m"] = np.where(covered, mfe, np.nan)
        cols[f"mae_{h}m"] = np.where(covered, mae, np.nan)
        cols[f"fwd_{h}m"] = np.where(covered, fwd, np.nan)
    cols["label"] = cols[f"label_{primary_min}m"]
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)


def _rowmax(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = np.where(np.isfinite(m), m, -np.inf).max(axis=1, initial=-np.inf)
    return np.where(np.isfinite(out), out, np.nan)


def _rowmin(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = np.where(np.isfinite(m), m, np.inf).min(axis=1, initial=np.inf)
    return np.where(np.isfinite(out), out, np.nan)


# -- the episodes table ------------------------------------------------------------------------------


def episodes(state: pa.Table, levels: pa.Table | None, bars_30s: pa.Table) -> pa.Table:
    """A date's gold episodes: anchors, raw vectors (features up to the anchor) and outcomes."""
    a = anchors(state, levels)
    raw = vectors.build_vectors(state, a.select(list(vectors.ANCHOR_KEYS)))
    lab = label(a, bars_30s)
    cols = {n: a.column(n) for n in a.column_names}
    cols["vector"] = vectors.vectors_to_arrow(raw)
    cols.update({n: lab.column(n) for n in lab.column_names})
    return pa.table(cols, schema=EPISODE_SCHEMA)


# -- the job ---------------------------------------------------------------------------------------


def build(lake: Lake, date: dt.date, *, allow_shrink: bool = False) -> pa.Table:
    """Read a date's committed silver, compute its episodes and commit ``gold/episodes/date=…``.

    Refuses (``ShrinkError``) to replace committed episodes with none or far fewer unless
    ``allow_shrink``.
    """
    inputs = {
        name: read_manifest(lake, Layer.SILVER, name, date).run_id
        for name in (paths.STATE_TABLE, paths.LEVELS_TABLE, paths.BARS_30S_TABLE)
    }
    state = read_committed(lake, Layer.SILVER, paths.STATE_TABLE, date)
    levels = read_committed(lake, Layer.SILVER, paths.LEVELS_TABLE, date)
    bars_30s = read_committed(lake, Layer.SILVER, paths.BARS_30S_TABLE, date)
    out = episodes(state, levels, bars_30s)
    run_id = new_run_id()
    path = data_file(Layer.GOLD, EPISODES_TABLE, date, run_id, 0)
    written = [path]
    try:
        lake.write_parquet(path, out, compression="zstd", row_group_size=1 << 16)
        counts = pc.value_counts(out.column("label")).to_pylist() if out.num_rows else []
        commit(
            lake,
            Layer.GOLD,
            EPISODES_TABLE,
            date,
            run_id,
            written,
            out.num_rows,
            inputs={f"silver_{k}_run": v for k, v in inputs.items()},
            stats={
                "vector_layout": vectors.LAYOUT_VERSION,
                "vector_dim": vectors.VECTOR_DIM,
                "horizons_min": list(HORIZONS_MIN),
                "primary_horizon_min": PRIMARY_HORIZON_MIN,
                "threshold_atr": THRESHOLD_ATR,
                "labels": {str(c["values"]): int(c["counts"]) for c in counts},
            },
            allow_shrink=allow_shrink,
        )
    except BaseException:
        discard(lake, written)
        raise
    return out


def read_episodes(lake: Lake, date: dt.date) -> pa.Table:
    """A date's committed gold episodes."""
    return read_committed(lake, Layer.GOLD, EPISODES_TABLE, date, schema=EPISODE_SCHEMA)

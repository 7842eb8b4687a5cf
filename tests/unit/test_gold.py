"""Gold: golden first-crossing labels on hand-made price paths, and anchoring on hand-made distances."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pytest

from spymaster import outcomes, sessions, vectors
from spymaster.features import FEATURE_NAMES, STATE_SCHEMA
from spymaster.layers import gold
from spymaster.partitions import time_bucket

NS = 1_000_000_000
DAY = dt.date(2026, 3, 5)  # a Thursday, EST
T0 = sessions.et_ns(DAY, dt.time(10, 0))  # an anchor time on the 30-s grid
TS = pa.timestamp("ns", tz="UTC")


# -- hand-made price paths ---------------------------------------------------------------------------


def _bars(hlc: Sequence[tuple[float, float, float]], t0: int = T0, before: bool = True) -> pa.Table:
    """30-s bars after an anchor at ``t0``: bar k (1-based) is stamped t0 + k·30 s and covers
    [t0 + (k−1)·30 s, t0 + k·30 s). With ``before``, a bar stamped at t0 (the 30 s *before* the
    anchor) with absurd prices is included: labels must never look at it."""
    ts = [t0 + (k + 1) * 30 * NS for k in range(len(hlc))]
    rows = list(hlc)
    if before:
        ts = [t0, *ts]
        rows = [(1e6, -1e6, 0.0), *rows]
    return pa.table(
        {
            "ts": pa.array(ts, TS),
            "high": [r[0] for r in rows],
            "low": [r[1] for r in rows],
            "close": [r[2] for r in rows],
        }
    )


def _flat(price: float, n: int) -> list[tuple[float, float, float]]:
    return [(price, price, price)] * n


def _anchor(direction: str, level: float, price: float, atr: float, t0: int = T0) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array([t0], TS),
            "direction": [direction],
            "level_price": [level],
            "price": [price],
            "atr": [atr],
        }
    )


def _one(
    direction: str, level: float, price: float, atr: float, hlc: list[tuple[float, float, float]]
) -> dict:
    out = gold.label(_anchor(direction, level, price, atr), _bars(hlc))
    assert out.num_rows == 1
    return {k: v[0] for k, v in out.to_pydict().items()}


def test_break_first_up() -> None:
    # level 100, ATR 2, anchor at 99 (x0 = −0.5): BREAK at 102 (x = +1), REJECT at 97 (x = −1.5)
    path = [
        (99.5, 98.5, 99.0),
        (100.5, 98.8, 100.2),
        (101.6, 100.0, 101.5),
        (102.0, 101.0, 101.8),  # high exactly 1 ATR through: BREAK, in the 4th bar → 120 s
        (101.8, 99.0, 99.5),
        (99.5, 96.0, 96.5),  # the reject threshold later does not matter
        *_flat(96.5, 34),
    ]
    r = _one("UP", 100.0, 99.0, 2.0, path)
    assert r["first_crossing"] == "BREAK"
    assert r["resolve_s"] == 120.0
    assert [r[f"label_{h}m"] for h in (2, 4, 8, 20)] == ["BREAK"] * 4
    assert r["label"] == "BREAK"
    # 2 min = bars 1–4: best high 102 → x = 1.0; worst low 98.5 → x = −0.75; close 101.8 → x = 0.9
    assert r["mfe_2m"] == pytest.approx(1.5)
    assert r["mae_2m"] == pytest.approx(0.25)
    assert r["fwd_2m"] == pytest.approx(1.4)
    # 4 min = bars 1–8: low 96 → x = −2; close 96.5 → x = −1.75
    assert r["mfe_4m"] == pytest.approx(1.5)
    assert r["mae_4m"] == pytest.approx(1.5)
    assert r["fwd_4m"] == pytest.approx(-1.25)
    assert r["fwd_20m"] == pytest.approx(-1.25)


def test_reject_first_down() -> None:
    # approaching 200 from above, ATR 4, anchor at 203 (x0 = −0.75):
    # BREAK when price ≤ 196 (x = +1), REJECT when price ≥ 207 (x = −1.75)
    path = [
        (203.5, 201.0, 201.5),
        (204.0, 201.5, 203.8),
        (206.0, 203.0, 205.5),
        (207.5, 205.0, 207.0),  # 207.5 ≥ 207: REJECT at 120 s
        (206.0, 199.0, 199.5),
        (199.5, 195.0, 195.5),  # through the break threshold afterwards: irrelevant
        *_flat(195.5, 34),
    ]
    r = _one("DOWN", 200.0, 203.0, 4.0, path)
    assert r["first_crossing"] == "REJECT"
    assert r["resolve_s"] == 120.0
    assert [r[f"label_{h}m"] for h in (2, 4, 8, 20)] == ["REJECT"] * 4
    # bars 1–4: lowest low 201 → x = −0.25; highest high 207.5 → x = −1.875; close 207 → x = −1.75
    assert r["mfe_2m"] == pytest.approx(0.5)
    assert r["mae_2m"] == pytest.approx(1.125)
    assert r["fwd_2m"] == pytest.approx(-1.0)
    # bars 1–8: low 195 → x = +1.25; close 195.5 → x = 1.125
    assert r["mfe_4m"] == pytest.approx(2.0)
    assert r["fwd_4m"] == pytest.approx(1.875)


def test_neither_is_chop_at_every_horizon() -> None:
    # level 100, ATR 2, anchor 99.5 (x0 = −0.25): thresholds 102 and 97.5, never reached
    rng = np.random.default_rng(0)
    path = []
    for _ in range(40):
        lo = float(rng.uniform(98.0, 100.0))
        path.append((min(lo + 1.5, 101.5), lo, lo + 0.5))
    path[10] = (101.5, 99.0, 100.0)
    path[20] = (100.0, 98.0, 98.5)
    r = _one("UP", 100.0, 99.5, 2.0, path)
    assert r["first_crossing"] == "NONE"
    assert math.isnan(r["resolve_s"])
    assert [r[f"label_{h}m"] for h in (2, 4, 8, 20)] == ["CHOP"] * 4
    assert r["mfe_20m"] == pytest.approx(1.0)  # 101.5 → x = 0.75
    assert r["mae_20m"] == pytest.approx(0.75)  # 98 → x = −1
    assert r["fwd_20m"] == pytest.approx(((path[-1][2] - 100.0) / 2.0) + 0.25)


def test_tie_in_one_step_is_chop() -> None:
    # anchor at the level (x0 = 0): thresholds 102 and 98; the 3rd bar spans both
    path = [
        (100.5, 99.5, 100.0),
        (100.5, 99.5, 100.0),
        (102.5, 97.5, 101.0),  # both thresholds inside one 30-s step: order unknown → TIE
        *_flat(105.0, 37),  # a clear break afterwards does not undo the tie
    ]
    r = _one("UP", 100.0, 100.0, 2.0, path)
    assert r["first_crossing"] == "TIE"
    assert r["resolve_s"] == 90.0
    assert [r[f"label_{h}m"] for h in (2, 4, 8, 20)] == ["CHOP"] * 4
    assert r["mfe_2m"] == pytest.approx(2.5)  # 105 in bar 4 → x = 2.5
    assert r["mae_2m"] == pytest.approx(1.25)


def test_gap_through_both_thresholds_within_one_step_is_chop() -> None:
    # DOWN into 50, ATR 1, anchor 50.5 (x0 = −0.5): BREAK ≤ 49, REJECT ≥ 51.5. The first step
    # after the anchor gaps from 52 to 48.5: through both, in an unknown order → CHOP.
    path = [(52.0, 48.5, 48.75), *_flat(48.0, 39)]
    r = _one("DOWN", 50.0, 50.5, 1.0, path)
    assert r["first_crossing"] == "TIE"
    assert r["resolve_s"] == 30.0
    assert r["label"] == "CHOP"
    # a gap through one threshold only is an ordinary first crossing
    r = _one("DOWN", 50.0, 50.5, 1.0, [(48.5, 48.5, 48.5), *_flat(52.0, 39)])
    assert (r["first_crossing"], r["label"]) == ("BREAK", "BREAK")


def test_horizons() -> None:
    # UP into 100, ATR 2, anchor 99: BREAK in bar 10 (300 s): CHOP at 2 and 4 minutes
    path = [*_flat(99.5, 9), (102.5, 99.5, 102.0), *_flat(102.0, 30)]
    r = _one("UP", 100.0, 99.0, 2.0, path)
    assert r["resolve_s"] == 300.0
    assert (r["label_2m"], r["label_4m"], r["label_8m"], r["label_20m"]) == ("CHOP", "CHOP", "BREAK", "BREAK")
    assert r["label"] == r[f"label_{outcomes.PRIMARY_HORIZON_MIN}m"] == "BREAK"
    assert r["fwd_2m"] == pytest.approx(0.25)
    assert r["fwd_8m"] == pytest.approx(1.5)


def test_bars_before_the_anchor_are_never_used() -> None:
    quiet = _flat(99.5, 40)
    a = gold.label(_anchor("UP", 100.0, 99.0, 2.0), _bars(quiet, before=True))
    b = gold.label(_anchor("UP", 100.0, 99.0, 2.0), _bars(quiet, before=False))
    assert a.to_pandas().equals(b.to_pandas())  # NaN-aware
    assert a.column("label").to_pylist() == ["CHOP"]


def test_a_horizon_the_path_does_not_cover_is_null() -> None:
    r = _one("UP", 100.0, 99.0, 2.0, _flat(99.5, 6))  # 3 minutes of bars
    assert r["label_2m"] == "CHOP"
    assert r["label_4m"] is None
    assert r["label"] is None
    assert math.isnan(r["fwd_4m"])
    # ... unless the first crossing happened inside the covered part
    r = _one("UP", 100.0, 99.0, 2.0, [*_flat(99.5, 2), (102.0, 101.0, 101.0)])
    assert r["label_20m"] == "BREAK"
    assert math.isnan(r["mfe_20m"])


def test_label_thresholds_scale_with_the_anchor_atr() -> None:
    path = [(101.2, 99.0, 101.0), *_flat(101.0, 39)]
    assert _one("UP", 100.0, 99.5, 1.0, path)["label"] == "BREAK"  # 1.2 ATR through
    assert _one("UP", 100.0, 99.5, 2.0, path)["label"] == "CHOP"  # 0.6 ATR through


def test_outcome_columns_are_the_schema_and_all_refused_by_the_vector_builder() -> None:
    out = gold.label(_anchor("UP", 100.0, 99.0, 2.0), _bars(_flat(99.0, 40)))
    assert tuple(out.column_names) == gold.OUTCOME_COLUMNS
    assert all(vectors.is_outcome_name(c) for c in gold.OUTCOME_COLUMNS)
    assert not any(vectors.is_outcome_name(c) for c in gold.ANCHOR_SCHEMA.names)
    assert set(gold.OUTCOME_COLUMNS).isdisjoint(gold.ANCHOR_SCHEMA.names)


# -- anchoring on a hand-made distance series ----------------------------------------------------------


def _state(date: dt.date, series: dict[str, dict[int, float]], atr: float = 2.0) -> pa.Table:
    """A state table: per level kind, {step index from 09:30: distance}; features NaN otherwise."""
    open_ns = sessions.et_ns(date, sessions.RTH_OPEN)
    cols: dict[str, list[object]] = {n: [] for n in STATE_SCHEMA.names}
    for kind, steps in series.items():
        for k, d in sorted(steps.items()):
            cols["date"].append(date)
            cols["ts"].append(open_ns + k * 30 * NS)
            cols["level_kind"].append(kind)
            cols["direction"].append("UP" if d <= 0 else "DOWN")
            cols["time_bucket"].append(int(time_bucket(k / 2)))
            cols["level_price"].append(100.0)
            cols["price"].append(100.0 + d * atr)
            for f in FEATURE_NAMES:
                cols[f].append(math.nan)
            cols["distance"][-1] = d
            cols["abs_distance"][-1] = abs(d)
            cols["in_zone"][-1] = float(abs(d) <= 2.0)
            cols["ctx_atr_points"][-1] = atr
    return pa.Table.from_pydict(cols, schema=STATE_SCHEMA)


PM_SERIES = {
    0: -3.0,
    1: -2.5,
    2: -1.5,  # 09:31:00 enters: ENTRY (odd minute, no bar close)
    3: -1.2,
    4: -1.0,  # 09:32:00 bar close in the zone
    5: -0.9,
    6: -0.8,
    7: -0.7,
    8: -0.6,  # 09:34:00 bar close
    9: -2.1,  # leaves the zone: re-arms
    10: -1.9,  # 09:35:00 re-enters: ENTRY
    11: 0.5,  # crosses the level inside the zone: no new anchor (jumping through is no approach)
    12: 0.8,  # 09:36:00 bar close, now approaching from above
    13: 2.5,
    14: 2.6,
    15: 2.2,
    16: 1.0,  # 09:38:00 enters at a bar close: one anchor, an ENTRY
    # step 17 has no row (the level had no value): counts as outside the zone
    18: 1.0,  # 09:39:00: ENTRY again
    19: 1.1,
    20: 0.4,  # 09:40:00 within 0.5 ATR from beyond 1.0, same side: APPROACH (outranks the bar close)
    21: 1.05,  # beyond the 1.0 re-arm distance …
    22: 0.5,  # … so 09:41:00 is an APPROACH again
    23: 0.3,  # still near: no new approach until re-armed
}


@pytest.mark.parametrize("date", [DAY, dt.date(2026, 3, 9)], ids=["EST", "EDT-after-change"])
def test_anchoring_entry_bar_close_rearm_and_or_first_bar(date: dt.date) -> None:
    st = _state(
        date,
        {
            "PM_HIGH": PM_SERIES,
            "OR_HIGH": {30: -0.5, 31: -0.4, 32: -0.3},  # in the zone when it appears at 09:45
            "OR_LOW": {30: 3.0, 31: 2.5, 32: 1.5},  # out at 09:45, in at 09:46 (a bar close)
            "SMA_90": {0: 0.2, 1: 0.3, 359: 1.0, 360: 1.0},  # in the zone at the open; 12:29:30, 12:30
        },
    )
    a = gold.anchors(st)
    open_ns = sessions.et_ns(date, sessions.RTH_OPEN)
    got = [
        (k, int((t - open_ns) // (30 * NS)), r, v, d, m)
        for k, t, r, v, d, m in zip(
            a.column("level_kind").to_pylist(),
            a.column("ts").cast(pa.int64()).to_pylist(),
            a.column("anchor_reason").to_pylist(),
            a.column("visit").to_pylist(),
            a.column("direction").to_pylist(),
            a.column("minutes_in_zone").to_pylist(),
            strict=True,
        )
    ]
    pm = [g[1:] for g in got if g[0] == "PM_HIGH"]
    assert pm == [
        (2, "ENTRY", 1, "UP", 0.0),
        (4, "BAR_CLOSE", 1, "UP", 1.0),
        (8, "BAR_CLOSE", 1, "UP", 3.0),
        (10, "ENTRY", 2, "UP", 0.0),
        (12, "BAR_CLOSE", 2, "DOWN", 1.0),
        (16, "ENTRY", 3, "DOWN", 0.0),
        (18, "ENTRY", 4, "DOWN", 0.0),
        (20, "APPROACH", 4, "DOWN", 1.0),
        (22, "APPROACH", 4, "DOWN", 2.0),
    ]
    assert [g[1:3] for g in got if g[0] == "OR_HIGH"] == [(30, "FIRST_BAR"), (32, "BAR_CLOSE")]
    assert [g[1:3] for g in got if g[0] == "OR_LOW"] == [(32, "ENTRY")]
    assert [g[1:3] for g in got if g[0] == "SMA_90"] == [
        (0, "FIRST_BAR"),
        (359, "ENTRY"),  # after the gap in the level's rows
        (360, "BAR_CLOSE"),
    ]
    # sorted by time, partition keys carried over from the state rows
    ts = a.column("ts").cast(pa.int64()).to_numpy()
    assert (np.diff(ts) >= 0).all()
    assert a.column("time_bucket").to_pylist()[-1] == 4
    assert a.schema.equals(gold.ANCHOR_SCHEMA)


def test_no_anchor_outside_0930_1230() -> None:
    date = DAY
    st = _state(date, {"PM_LOW": {358: -1.0, 359: -1.0, 360: -1.0, 361: -1.0, 362: -1.0}})
    a = gold.anchors(st)
    open_ns = sessions.et_ns(date, sessions.RTH_OPEN)
    steps = [(t - open_ns) // (30 * NS) for t in a.column("ts").cast(pa.int64()).to_pylist()]
    assert steps == [358, 360]  # 12:29 entry, 12:30 bar close; 12:30:30 and 12:31 are after the window


def test_episode_ids_are_deterministic() -> None:
    st = _state(DAY, {"PM_HIGH": PM_SERIES})
    a, b = gold.anchors(st), gold.anchors(st)
    ids = a.column("episode_id").to_pylist()
    assert ids == b.column("episode_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    t = int(a.column("ts").cast(pa.int64())[0].as_py())
    d = a.column("direction")[0].as_py()
    want = hashlib.blake2b(f"2026-03-05|PM_HIGH|{d}|{t}".encode(), digest_size=8).hexdigest()
    assert ids[0] == want == gold.episode_id(DAY, "PM_HIGH", d, t)
    # every part of the key matters
    assert (
        len(
            {
                gold.episode_id(DAY, "PM_HIGH", "UP", t),
                gold.episode_id(DAY, "PM_LOW", "UP", t),
                gold.episode_id(DAY, "PM_HIGH", "DOWN", t),
                gold.episode_id(DAY, "PM_HIGH", "UP", t + 30 * NS),
                gold.episode_id(DAY + dt.timedelta(days=1), "PM_HIGH", "UP", t),
            }
        )
        == 5
    )


def test_anchor_price_and_atr_come_from_the_levels_table() -> None:
    st = _state(DAY, {"PM_HIGH": PM_SERIES})
    open_ns = sessions.et_ns(DAY, sessions.RTH_OPEN)
    n = len(PM_SERIES) + 2
    levels = pa.table(
        {
            "ts": pa.array([open_ns + k * 30 * NS for k in range(n)], TS),
            "price": [1000.0 + k for k in range(n)],
            "atr": [3.0 + k for k in range(n)],
        }
    )
    a = gold.anchors(st, levels)
    steps = [(t - open_ns) // (30 * NS) for t in a.column("ts").cast(pa.int64()).to_pylist()]
    assert a.column("price").to_pylist() == [1000.0 + k for k in steps]
    assert a.column("atr").to_pylist() == [3.0 + k for k in steps]
    with pytest.raises(ValueError, match="no row"):
        gold.anchors(st, levels.slice(0, 5))


def test_episodes_table_has_vectors_and_labels() -> None:
    st = _state(DAY, {"PM_HIGH": PM_SERIES})
    open_ns = sessions.et_ns(DAY, sessions.RTH_OPEN)
    bars = pa.table(
        {
            "ts": pa.array([open_ns + k * 30 * NS for k in range(-10, 200)], TS),
            "high": np.full(210, 99.5),
            "low": np.full(210, 98.5),
            "close": np.full(210, 99.0),
        }
    )
    ep = gold.episodes(st, None, bars)
    assert ep.schema.equals(gold.EPISODE_SCHEMA)
    assert ep.num_rows == 9  # the anchors of test_anchoring_…: 7 entries / bar closes + 2 approaches
    v = vectors.vectors_from_arrow(ep.column("vector"))
    assert v.shape == (9, vectors.VECTOR_DIM)
    assert v.dtype == np.float32
    assert np.isfinite(v[:, vectors.VECTOR_NAMES.index("distance")]).all()

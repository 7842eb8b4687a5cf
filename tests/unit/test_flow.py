"""Order-flow imbalance and book depth: hand-worked CKS events, windows, and no-lookahead."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from spymaster.indicators.bars import TS_TYPE, as_float
from spymaster.indicators.flow import (
    OFI_SERIES,
    book_depth_near,
    book_shape,
    book_side_band,
    level_tick_prominence,
    multi_level_ofi,
    ofi_at,
    ofi_events,
    ofi_series,
    ofi_windows,
    rolling_mean_at,
    rolling_sum_at,
    running_sums,
    time_mean_at,
    time_means_at,
    wall_prominence,
)

S = 1_000_000_000
T0 = 1_772_000_000 * S  # an arbitrary UTC instant

# Hand-built best-level book: each event moves one side only.
#            bid_px   bid_sz  ask_px  ask_sz
BOOK = [
    (100.00, 10, 100.50, 8),  # s0 initial state                 e0 = 0 by definition
    (100.25, 3, 100.50, 8),  # s1 bid UP                          see below
    (100.25, 7, 100.50, 8),  # s2 bid SAME, size 3 -> 7
    (100.00, 12, 100.50, 8),  # s3 bid DOWN
    (100.00, 12, 100.25, 5),  # s4 ask DOWN
    (100.00, 12, 100.25, 2),  # s5 ask SAME, size 5 -> 2
    (100.00, 12, 100.50, 9),  # s6 ask UP
]
# e_n = 1{Pb_n>=Pb_n-1} qb_n - 1{Pb_n<=Pb_n-1} qb_n-1 - 1{Pa_n<=Pa_n-1} qa_n + 1{Pa_n>=Pa_n-1} qa_n-1
# s1: bid 100.25>100.00 -> +3, (<=) no;  ask same 100.50: -8 + 8 = 0            -> e1 = +3
# s2: bid same 100.25:  +7 - 3 = +4;     ask same: -8 + 8 = 0                     -> e2 = +4
# s3: bid 100.00<100.25: (>=) no, -7;    ask same: 0                              -> e3 = -7
# s4: bid same 100.00: +12 - 12 = 0;     ask 100.25<100.50: -5, (>=) no           -> e4 = -5
# s5: bid same: 0;                       ask same 100.25: -2 + 5 = +3             -> e5 = +3
# s6: bid same: 0;                       ask 100.50>100.25: (<=) no, +2           -> e6 = +2
EXPECTED_E = [0.0, 3.0, 4.0, -7.0, -5.0, 3.0, 2.0]


def _cols(book: list[tuple[float, int, float, int]]) -> tuple[list[float], ...]:
    bp, bs, ap, az = zip(*book, strict=True)
    return list(bp), list(bs), list(ap), list(az)


def test_ofi_events_hand_worked() -> None:
    e = ofi_events(*_cols(BOOK))
    assert e.tolist() == EXPECTED_E


def test_ofi_events_empty_level_counts_whole_queue() -> None:
    # bid level empties (NaN price): all 10 resting contracts left -> -10; it refills with 4 -> +4.
    e = ofi_events([100.0, np.nan, 100.0], [10, 0, 4], [101.0, 101.0, 101.0], [5, 5, 5])
    assert e.tolist() == [0.0, -10.0, 4.0]
    # ask empties: +5 (sell depth gone); ask refills with 6 -> -6.
    e = ofi_events([100.0, 100.0, 100.0], [1, 1, 1], [101.0, np.nan, 101.0], [5, 0, 6])
    assert e.tolist() == [0.0, 5.0, -6.0]


def _mbp10(ts: np.ndarray, rng: np.random.Generator, *, instrument_id: int = 42) -> pa.Table:
    """Random but well-formed MBP-10 states: ten levels a tick apart around a random-walk mid."""
    n = ts.size
    mid_ticks = 20_000 + np.cumsum(rng.integers(-1, 2, n))
    cols: dict[str, pa.Array] = {
        "ts_recv": pa.array(ts, type=TS_TYPE),
        "ts_event": pa.array(ts, type=TS_TYPE),
        "instrument_id": pa.array(np.full(n, instrument_id, dtype=np.uint32)),
    }
    for m in range(10):
        cols[f"bid_px_{m:02d}"] = pa.array((mid_ticks - m) * 0.25)
        cols[f"ask_px_{m:02d}"] = pa.array((mid_ticks + 1 + m) * 0.25)
        cols[f"bid_sz_{m:02d}"] = pa.array(rng.integers(1, 50, n).astype(np.uint32))
        cols[f"ask_sz_{m:02d}"] = pa.array(rng.integers(1, 50, n).astype(np.uint32))
    return pa.table(cols)


def _hand_table() -> pa.Table:
    bp, bs, ap, az = _cols(BOOK)
    n = len(BOOK)
    cols: dict[str, pa.Array] = {
        "ts_recv": pa.array(T0 + S * np.arange(n), type=TS_TYPE),
        "instrument_id": pa.array(np.full(n, 7, dtype=np.uint32)),
    }
    for m in range(10):  # deeper levels: the same book shifted m ticks away, sizes * (m + 1)
        cols[f"bid_px_{m:02d}"] = pa.array([p - 0.25 * m for p in bp])
        cols[f"ask_px_{m:02d}"] = pa.array([p + 0.25 * m for p in ap])
        cols[f"bid_sz_{m:02d}"] = pa.array([q * (m + 1) for q in bs], type=pa.uint32())
        cols[f"ask_sz_{m:02d}"] = pa.array([q * (m + 1) for q in az], type=pa.uint32())
    return pa.table(cols)


def test_multi_level_ofi_per_level() -> None:
    ml = multi_level_ofi(_hand_table(), levels=3)
    assert ml.shape == (7, 3)
    for m in range(3):  # same price moves, sizes scaled by (m + 1) -> OFI scaled by (m + 1)
        assert ml[:, m].tolist() == [(m + 1) * e for e in EXPECTED_E]


def test_multi_instrument_table_needs_an_id() -> None:
    rng = np.random.default_rng(0)
    t = pa.concat_tables(
        [_mbp10(T0 + S * np.arange(3), rng), _mbp10(T0 + S * np.arange(3), rng, instrument_id=9)]
    )
    with pytest.raises(ValueError, match="instrument_id"):
        multi_level_ofi(t)
    assert multi_level_ofi(t, instrument_id=9).shape == (3, 10)


def test_rolling_sum_window_is_half_open() -> None:
    ts = T0 + S * np.array([0, 10, 20, 30])
    v = np.array([1.0, 2.0, 4.0, 8.0])
    q = T0 + S * np.array([-1, 0, 19, 20, 30, 40, 50, 61])
    # window 30 s = (t-30, t]: t=20 -> {0,10,20} = 7; t=30 -> {10,20,30} = 14; t=40 -> {20,30} = 12
    assert rolling_sum_at(ts, v, q, 30).tolist() == [0.0, 1.0, 3.0, 7.0, 14.0, 12.0, 8.0, 0.0]
    m = rolling_mean_at(ts, v, q, 30)
    np.testing.assert_array_equal(m, [np.nan, 1.0, 1.5, 7 / 3, 14 / 3, 6.0, 8.0, np.nan])
    # with the prevailing state: t=61 has no events in (31, 61] but the state from t=30 (8) holds
    mp = rolling_mean_at(ts, v, q, 30, include_prevailing=True)
    # t=30: (0, 30] = {10,20,30} + prevailing 1 -> 15/4; t=50: (20, 50] = {30} + prevailing 4 -> 12/2
    np.testing.assert_array_equal(mp, [np.nan, 1.0, 1.5, 7 / 3, 15 / 4, 14 / 3, 12 / 2, 8.0])


def test_ofi_at_hand_values() -> None:
    t = _hand_table()  # events at T0 + 0..6 s
    q = np.array([T0 + 6 * S, T0 + 3 * S])
    out = ofi_at(t, q, windows=(3, 10))
    # 3-s window at T0+6 s covers events 4,5,6: -5 + 3 + 2 = 0; at T0+3: events 1..3 = 3 + 4 - 7 = 0
    # 10-s window at T0+6: all = 0; at T0+3: 0 + 3 + 4 - 7 = 0. Use a sharper query too.
    assert out["ofi_3s"].tolist() == [0.0, 0.0]
    out = ofi_at(t, np.array([T0 + 2 * S, T0 + 5 * S]), windows=(2,))
    # (T0, T0+2] -> e1 + e2 = 7; (T0+3, T0+5] -> e4 + e5 = -2
    assert out["ofi_2s"].tolist() == [7.0, -2.0]
    # average best depth over the prevailing state plus the window's events:
    # T0+2: states s0 (10+8)/2=9, s1 (3+8)/2=5.5, s2 (7+8)/2=7.5 -> 22/3
    # T0+5: states s3 (12+8)/2=10, s4 (12+5)/2=8.5, s5 (12+2)/2=7 -> 25.5/3 = 8.5
    np.testing.assert_allclose(out["ofi_norm_2s"], [7.0 / (22 / 3), -2.0 / 8.5], rtol=1e-15)
    # multi-level: level m OFI = (m+1) e, depth_m = (m+1) depth_0 -> sum ratio is the same:
    # Σ(m+1)·OFI / ((1/10) Σ(m+1)·depth) = 55 OFI / (5.5 depth) = 10 · OFI/depth
    np.testing.assert_allclose(out["mlofi_norm_2s"], 10 * out["ofi_norm_2s"], rtol=1e-14)


def test_book_depth_near_hand_values() -> None:
    t = _hand_table()
    # at T0+4.5 s the state is s4: asks 100.25 + 0.25 m, sizes 5 (m+1)
    q = np.array([T0 + 4 * S + S // 2] * 3 + [T0 - 1])
    lvl = np.array([100.25, 102.0, 110.0, 100.25])
    d = book_depth_near(t, q, lvl, "ask", ticks=4)
    # level 100.25 ± 1.00: ask levels m=0..4 (100.25..101.25): 5 * (1+2+3+4+5) = 75
    # level 102.00 ± 1.00: 101.00..102.50 visible: m=3..9 -> 5 * (4+5+...+10) = 5 * 49 = 245
    # level 110: nothing visible -> 0; before the first book: NaN
    np.testing.assert_array_equal(d, [75.0, 245.0, 0.0, np.nan])
    # bids at s4: 100.00 - 0.25 m, sizes 12 (m+1); 99.00 ± 0.5 -> 98.50..99.50: m=2..6 -> 12*(3+..+7)=300
    b = book_depth_near(t, q[:1], np.array([99.0]), "bid", ticks=2)
    assert b.tolist() == [300.0]


def test_book_shape_hand_values() -> None:
    # state s4: bids 100.00 − 0.25 m with 12 (m + 1), asks 100.25 + 0.25 m with 5 (m + 1)
    sh = book_shape(_hand_table())
    assert sh["imb_1"][4] == pytest.approx((12 - 5) / 17)
    assert sh["imb_5"][4] == pytest.approx((12 - 5) * 15 / (17 * 15))
    # microprice (ask·q_bid + bid·q_ask)/(q_bid + q_ask) = 1703/17; mid 100.125; in ticks of 0.25
    assert sh["micro_ticks"][4] == pytest.approx((1703 / 17 - 100.125) / 0.25)
    assert sh["spread_ticks"][4] == pytest.approx(1.0)
    assert sh["depth_log"][4] == pytest.approx(np.log1p((12 + 5) * 55))
    # s1: bid 100.25 × 3 against ask 100.50 × 8 → sellers heavier, microprice below the mid
    assert sh["imb_1"][1] == pytest.approx((3 - 8) / 11)
    assert sh["micro_ticks"][1] < 0


def test_time_mean_weighs_states_by_how_long_they_lasted() -> None:
    ts = T0 + S * np.arange(7)
    v = np.arange(7, dtype=float)
    q = np.array([T0 + 4 * S + S // 2, T0 + S, T0 + 6 * S + 10 * S])
    # [2.5 s, 4.5 s]: s2 for 0.5 s, s3 for 1 s, s4 for 0.5 s → (1 + 3 + 2) / 2
    got = time_mean_at(ts, v, q, 2.0)
    assert got[0] == pytest.approx(3.0)
    assert np.isnan(got[1])  # the window starts before the first state
    assert got[2] == pytest.approx(6.0)  # the last state still holds
    # event-weighted would give (2 + 3 + 4) / 3 = 3 too here; a burst shows the difference:
    ts2 = np.array([T0, T0 + S, T0 + S + 1, T0 + S + 2])
    v2 = np.array([0.0, 10.0, 10.0, 0.0])
    assert time_mean_at(ts2, v2, [T0 + 2 * S], 2.0)[0] == pytest.approx(20 / (2 * S), abs=1e-6)


def test_wall_prominence_and_side_band_hand_values() -> None:
    t = _hand_table()
    q = np.array([T0 + 4 * S + S // 2] * 2 + [T0 - 1])
    got = wall_prominence(t, q, np.array([101.0, 110.0, 101.0]), "ask", ticks=1)
    # asks within 101.00 ± 0.25: 15, 20, 25 → largest 25; median of 5·(1..10) = 27.5
    assert got[0] == pytest.approx(np.log1p(25) - np.log1p(27.5))
    assert got[1] == 0.0  # not within the visible book
    assert np.isnan(got[2])  # no book yet
    assert book_side_band(t, q[:1], "bid", 3).tolist() == [12.0 * 6]


def test_level_tick_prominence_reads_the_levels_own_tick() -> None:
    t = _hand_table()
    q = np.array([T0 + 4 * S + S // 2] * 4 + [T0 - 1])
    asks = np.array([as_float(t.column(f"ask_px_{m:02d}"))[4] for m in range(10)])
    sizes = np.array([t.column(f"ask_sz_{m:02d}").to_numpy()[4] for m in range(10)], dtype=float)
    lvl = np.array([asks[2] - 0.1, asks[2], 500.0, asks[2], asks[2]])
    got = level_tick_prominence(t, q, lvl, "ask")
    # a level between ticks is met at the tick above it on the ask (a move up trades there first)
    assert got[0] == pytest.approx(np.log(sizes[2]) - np.log(np.median(sizes)))
    assert got[1] == got[0]
    assert np.isnan(got[2])  # the level's tick is not among the ten visible levels
    assert np.isnan(got[4])  # no book yet
    bids = np.array([as_float(t.column(f"bid_px_{m:02d}"))[4] for m in range(10)])
    bsz = np.array([t.column(f"bid_sz_{m:02d}").to_numpy()[4] for m in range(10)], dtype=float)
    # on the bid the level rounds down: a level just above bid 3 is met at bid 3
    got_b = level_tick_prominence(t, q[:1], np.array([bids[3] + 0.1]), "bid")
    assert got_b[0] == pytest.approx(np.log(bsz[3]) - np.log(np.median(bsz)))


def _cut_replace(table: pa.Table, cut: int, rng: np.random.Generator) -> pa.Table:
    ts = table.column("ts_recv").cast(pa.int64()).to_numpy()
    keep = table.slice(0, int(np.searchsorted(ts, cut, side="right")))
    n_new = int(rng.integers(0, 400))
    # always a burst 1 ns after the cut: the tightest possible lookahead must show
    new_ts = np.sort(np.concatenate([np.full(3, cut + 1), rng.integers(cut + 1, ts[-1] + 60 * S, n_new)]))
    return pa.concat_tables([keep, _mbp10(new_ts, rng)])


@pytest.mark.parametrize("seed", range(6))
def test_flow_no_lookahead(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ts = np.sort(T0 + rng.integers(0, 600 * S, 3000))
    ts[100:110] = ts[100]  # same-timestamp bursts
    table = _mbp10(ts, rng)
    q = np.sort(T0 + rng.integers(-30 * S, 650 * S, 300))
    cut = int(rng.choice(np.concatenate([q, ts])))  # cut exactly on a query or an event time
    q = np.append(q, cut)
    lvl = rng.integers(19_980, 20_020, q.size) * 0.25
    other = _cut_replace(table, cut, rng)
    before = q <= cut

    a, b = ofi_at(table, q), ofi_at(other, q)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key][before], b[key][before], err_msg=key)
    for side in ("ask", "bid"):
        np.testing.assert_array_equal(
            book_depth_near(table, q, lvl, side)[before], book_depth_near(other, q, lvl, side)[before]
        )
    for side in ("ask", "bid"):
        np.testing.assert_array_equal(
            wall_prominence(table, q, lvl, side)[before], wall_prominence(other, q, lvl, side)[before]
        )
        np.testing.assert_array_equal(
            book_side_band(table, q, side, 9)[before], book_side_band(other, q, side, 9)[before]
        )
        np.testing.assert_array_equal(
            level_tick_prominence(table, q, lvl, side)[before],
            level_tick_prominence(other, q, lvl, side)[before],
        )
    ets = table.column("ts_recv").cast(pa.int64()).to_numpy()
    ots = other.column("ts_recv").cast(pa.int64()).to_numpy()
    va, vb = rng.normal(size=ets.size), rng.normal(size=ots.size)
    k = int(np.searchsorted(ets, cut, side="right"))
    vb[:k] = va[:k]
    for w in (1, 30, 300):
        np.testing.assert_array_equal(
            rolling_sum_at(ets, va, q, w)[before], rolling_sum_at(ots, vb, q, w)[before]
        )
        np.testing.assert_array_equal(
            time_mean_at(ets, va, q, w)[before], time_mean_at(ots, vb, q, w)[before], err_msg="time mean"
        )
        np.testing.assert_array_equal(
            rolling_mean_at(ets, va, q, w, include_prevailing=True)[before],
            rolling_mean_at(ots, vb, q, w, include_prevailing=True)[before],
        )
    # and the check can fail: a later query does see the changed data
    assert not np.array_equal(a["ofi_300s"][~before], b["ofi_300s"][~before]) or not (~before).any()


def test_ofi_at_matches_brute_force() -> None:
    rng = np.random.default_rng(11)
    ts = np.sort(T0 + rng.integers(0, 120 * S, 500))
    table = _mbp10(ts, rng)
    q = np.sort(T0 + rng.integers(0, 130 * S, 50))
    out = ofi_at(table, q, windows=(30,))
    e = multi_level_ofi(table)
    for i, t in enumerate(q):
        inside = (ts > t - 30 * S) & (ts <= t)
        assert out["ofi_30s"][i] == e[inside, 0].sum()


def test_carried_running_sums_give_a_windows_own_bits() -> None:
    """OFI windows from running sums carried from the day's first state equal those from sums
    over the window alone, bit for bit (the terms are whole and half contracts: exact)."""
    rng = np.random.default_rng(3)
    ts = np.sort(rng.integers(0, 900, 20_000)).astype(np.int64) * (S // 20) + T0
    book = _mbp10(ts, rng)
    series = ofi_series(book)
    sums = running_sums(series)
    for t in T0 + S * np.array([400, 600, 899]):
        a = int(np.searchsorted(ts, t - 420 * S, side="left"))
        b = int(np.searchsorted(ts, t, side="right"))
        part = {k: v[a:b] for k, v in series.items()}
        own = ofi_windows(ts[a:b], part, [t], (30, 60, 120, 300))
        before = {k: float(sums[k][a - 1]) for k in OFI_SERIES}
        carried = ofi_windows(
            ts[a:b],
            part,
            [t],
            (30, 60, 120, 300),
            sums={k: v[a:b] for k, v in sums.items()},
            sums_before=before,
        )
        for k in own:
            assert own[k].tobytes() == carried[k].tobytes(), k


def test_time_means_share_one_integral() -> None:
    rng = np.random.default_rng(4)
    ts = np.sort(rng.integers(0, 120, 500)).astype(np.int64) * S + T0
    v = rng.normal(size=ts.size)
    q = T0 + S * np.array([10, 61, 90, 119])
    both = time_means_at(ts, v, q, (30, 60))
    assert both[0].tobytes() == time_mean_at(ts, v, q, 30).tobytes()
    assert both[1].tobytes() == time_mean_at(ts, v, q, 60).tobytes()

"""The synthetic market: real, decodable DBN; realistic structure; determinism; session windows;
the roll; and the planted physics recoverable from the decoded data itself."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import databento as db
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spymaster import sessions
from spymaster.lake import Lake, paths
from spymaster.lake.paths import Product, RawKind
from spymaster.levels import LEVEL_KINDS
from spymaster.synth import DayFiles, generate, generate_day
from spymaster.synth.futures import instrument_id
from spymaster.synth.market import outcome_probabilities
from spymaster.synth.options import (
    GAMMA_GRID_HALF_WIDTH,
    GAMMA_SIGMA_REF,
    GAMMA_T_REF_HOURS,
    GAMMA_WINDOW,
    black76_gamma,
)

DATE = dt.date(2026, 3, 9)  # the Monday after the US DST change, in ESH6's roll week
SEED = 3
FIXED = 1_000_000_000
TICK_FX = 250_000_000

FUT_DEF = RawKind(Product.FUT, "definition")
FUT_TRADES = RawKind(Product.FUT, "trades")
FUT_MBP10 = RawKind(Product.FUT, "mbp-10")
OPT_DEF = RawKind(Product.OPT, "definition")
OPT_TRADES = RawKind(Product.OPT, "trades")
OPT_MBP1 = RawKind(Product.OPT, "mbp-1")
OPT_STATS = RawKind(Product.OPT, "statistics")


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # databento's pandas deprecation noise
        yield


@pytest.fixture(scope="module")
def day() -> DayFiles:
    return generate_day(DATE, scale=0.02, seed=SEED)


def _store(day: DayFiles, kind: RawKind) -> db.DBNStore:
    return db.DBNStore.from_bytes(day.files[kind])


def _df(day: DayFiles, kind: RawKind) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _store(day, kind).to_df(pretty_ts=False)


def _arr(day: DayFiles, kind: RawKind) -> np.ndarray[Any, Any]:
    return _store(day, kind).to_ndarray()


# -- format ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", paths.RAW_KINDS, ids=lambda k: f"{k.product.short}-{k.schema}")
def test_every_file_decodes_with_its_metadata(day: DayFiles, kind: RawKind) -> None:
    store = _store(day, kind)
    md = store.metadata
    t0, t1 = sessions.globex_session(DATE)
    assert md.dataset == "GLBX.MDP3"
    assert str(md.schema) == kind.schema
    assert md.symbols == [kind.product.value]
    assert md.start == t0
    assert md.end == t1
    assert md.mappings
    df = _df(day, kind)
    assert len(df) > 0
    # every record's instrument resolves to a symbol, including the evening before (UTC date − 1)
    assert df["symbol"].notna().all()
    assert df.index.is_monotonic_increasing
    assert (df.index.to_numpy().astype(np.int64) >= t0 - 10**9).all()


def test_futures_definitions(day: DayFiles) -> None:
    df = _df(day, FUT_DEF)
    front, nxt = sessions.listed_contracts(DATE)
    assert list(df["raw_symbol"]) == [front.symbol, nxt.symbol]
    assert (df["instrument_class"] == "F").all()
    assert (df["security_type"] == "FUT").all()
    assert (df["asset"] == "ES").all()
    assert (df["exchange"] == "XCME").all()
    assert (df["group"] == "ES").all()
    assert (df["currency"] == "USD").all()
    assert (df["min_price_increment"] == 0.25).all()
    assert (df["contract_multiplier"] == 50).all()
    assert (df["unit_of_measure_qty"] == 50).all()
    assert df["strike_price"].isna().all()  # UNDEF_PRICE for a future
    raw = _arr(day, FUT_DEF)
    assert (raw["display_factor"] == FIXED).all()
    for rec, c in zip(raw, (front, nxt), strict=True):
        assert rec["instrument_id"] == instrument_id(c.symbol) < 2**31
        assert rec["expiration"] == sessions.et_ns(c.expiry, sessions.RTH_OPEN)
        assert rec["activation"] < rec["expiration"]
        assert rec["ts_event"] == sessions.globex_session(DATE)[0]


def test_futures_trades_are_sane(day: DayFiles) -> None:
    a = _arr(day, FUT_TRADES)
    assert (a["price"] % TICK_FX == 0).all()
    assert set(np.unique(a["action"])) == {b"T"}
    sides = pd.Series(a["side"].astype(str)).value_counts(normalize=True)
    assert set(sides.index) == {"A", "B"}
    assert sides.min() > 0.35
    assert (a["flags"] & 0x80).all()
    assert (a["depth"] == 0).all()
    assert (a["size"] >= 1).all()
    assert (a["size"] <= 5).mean() > 0.85
    assert a["size"].max() > 20
    assert (np.diff(a["ts_recv"].astype(np.int64)) >= 0).all()
    assert (np.diff(a["ts_event"].astype(np.int64)) >= 0).all()
    assert (a["ts_event"] < a["ts_recv"]).all()
    assert (np.diff(a["sequence"].astype(np.int64)) > 0).all()
    front = sessions.front_month(DATE)
    px = a["price"][a["instrument_id"] == instrument_id(front.symbol)] / FIXED
    assert px.min() > 3000
    assert px.max() < 9000


def test_mbp10_book_is_sane(day: DayFiles) -> None:
    a = _arr(day, FUT_MBP10)
    assert set(np.unique(a["action"])) <= {b"A", b"C", b"M", b"T"}
    assert (np.diff(a["ts_recv"].astype(np.int64)) >= 0).all()
    assert (a["ts_event"] <= a["ts_recv"]).all()
    assert (a["ask_px_00"] > a["bid_px_00"]).all()
    for k in range(10):
        for side in ("bid", "ask"):
            assert (a[f"{side}_px_{k:02d}"] % TICK_FX == 0).all()
            assert (a[f"{side}_sz_{k:02d}"] > 0).all()
            assert (a[f"{side}_ct_{k:02d}"] >= 1).all()
        if k < 9:
            assert (a[f"bid_px_{k:02d}"] > a[f"bid_px_{k + 1:02d}"]).all()
            assert (a[f"ask_px_{k:02d}"] < a[f"ask_px_{k + 1:02d}"]).all()
    front = a[a["instrument_id"] == instrument_id(sessions.front_month(DATE).symbol)]
    spread = (front["ask_px_00"] - front["bid_px_00"]) / FIXED
    assert (spread == 0.25).mean() > 0.75
    assert (spread == 0.5).any()
    top = np.concatenate([front["bid_sz_00"], front["ask_sz_00"]])
    assert 10 < np.median(top) < 300
    assert np.median(front["bid_sz_09"]) > np.median(front["bid_sz_00"])  # deeper levels larger
    # every trade appears as an MBP-10 T record with the same event time, price and size
    t = _arr(day, FUT_TRADES)
    mt = a[a["action"] == b"T"]
    assert len(mt) == len(t)
    for f in ("ts_event", "price", "size", "side", "sequence"):
        assert (mt[f] == t[f]).all()


def test_options_definitions_and_open_interest(day: DayFiles) -> None:
    d = _df(day, OPT_DEF)
    front = sessions.front_month(DATE)
    assert set(d["instrument_class"]) == {"C", "P"}
    assert (d["security_type"] == "OOF").all()
    assert (d["asset"] == "ES").all()
    assert (d["underlying"] == front.symbol).all()
    assert (d["underlying_id"] == instrument_id(front.symbol)).all()
    assert (d["contract_multiplier"] == 50).all()
    strikes = np.sort(d.loc[d["instrument_class"] == "C", "strike_price"].to_numpy())
    assert set(np.diff(strikes)) == {5.0}
    assert 280 <= strikes[-1] - strikes[0] <= 320
    exp = _arr(day, OPT_DEF)["expiration"]
    assert (exp == sessions.et_ns(DATE, sessions.RTH_CLOSE)).all()
    assert d["raw_symbol"].str.match(r"^E2AH6 [CP]\d{4}$").all()  # 2nd Monday of March 2026

    s = _arr(day, OPT_STATS)
    assert set(s["instrument_id"]) == set(_arr(day, OPT_DEF)["instrument_id"])
    assert (s["stat_type"] == 9).all()
    assert (s["update_action"] == 1).all()
    assert (s["price"] == np.iinfo(np.int64).max).all()
    assert (s["quantity"] > 0).all()
    assert (s["ts_recv"].astype(np.int64) < sessions.et_ns(DATE, sessions.RTH_OPEN)).all()
    prev = sessions.previous_trading_day(DATE)
    assert (
        s["ts_ref"] == int(dt.datetime.combine(prev, dt.time(0), tzinfo=dt.UTC).timestamp()) * FIXED
    ).all()


def test_options_quotes_and_trades(day: DayFiles) -> None:
    q = _arr(day, OPT_MBP1)
    has_bid = q["bid_px_00"] != np.iinfo(np.int64).max
    assert has_bid.mean() > 0.5
    assert (q["ask_px_00"][has_bid] > q["bid_px_00"][has_bid]).all()
    assert (q["ask_px_00"] % 50_000_000 == 0).all()
    assert (q["ts_event"].astype(np.int64) < sessions.et_ns(DATE, sessions.RTH_CLOSE)).all()
    t = _arr(day, OPT_TRADES)
    qt = q[q["action"] == b"T"]
    assert len(t) == len(qt) > 0
    at_quote = np.where(qt["side"] == b"B", qt["price"] == qt["ask_px_00"], qt["price"] == qt["bid_px_00"])
    assert at_quote.all()


def test_levels_are_recomputable_from_the_trades(day: DayFiles) -> None:
    """Every truth level is what a trader computes from the front month's tape (ts_event windows,
    2-minute bars from 18:00 ET, empty bars flat, SMA-90 / EMA-20 of closes)."""
    a = _arr(day, FUT_TRADES)
    a = a[a["instrument_id"] == instrument_id(sessions.front_month(DATE).symbol)]
    t0, _ = sessions.globex_session(DATE)
    ts = a["ts_event"].astype(np.int64)
    px = a["price"] / FIXED

    def window(start: dt.time, end: dt.time) -> np.ndarray[Any, Any]:
        return px[(ts >= sessions.et_ns(DATE, start)) & (ts < sessions.et_ns(DATE, end))]

    pm, orng = window(dt.time(4), dt.time(9, 30)), window(dt.time(9, 30), dt.time(9, 45))
    fixed = {"PM_HIGH": pm.max(), "PM_LOW": pm.min(), "OR_HIGH": orng.max(), "OR_LOW": orng.min()}
    bar = (ts - t0) // (120 * FIXED)
    closes = pd.Series(px).groupby(bar).last().reindex(range(int(bar.max()) + 1)).ffill().bfill().to_numpy()
    truth = day.truth.to_pandas()
    assert len(truth) > 5
    for row in truth.itertuples():
        if row.level_kind in fixed:
            assert row.level_price == fixed[row.level_kind]
        if row.planted_kind in fixed:  # level_price_start is the planted level's (where G was evaluated)
            continue
        n = ((row.start_ts - t0) // FIXED + 1) // 120  # bars closed when the interaction starts
        if row.planted_kind == "SMA_90":
            want = closes[n - 90 : n].mean()
        else:
            want = closes[0]
            for c in closes[1:n]:
                want += (c - want) * 2 / 21
        assert row.level_price_start == pytest.approx(want, abs=1e-6), row.planted_kind


# -- determinism and scaling --------------------------------------------------------------------


def test_deterministic_per_seed_and_date(day: DayFiles) -> None:
    again = generate_day(DATE, scale=0.02, seed=SEED)
    assert again.files == day.files
    assert again.truth.equals(day.truth)
    other = generate_day(DATE, scale=0.02, seed=SEED + 1)
    for kind in paths.RAW_KINDS:
        if kind.schema != "definition":  # definitions depend on the date and the opening strike only
            assert other.files[kind] != day.files[kind], kind


def test_counts_scale_linearly(day: DayFiles) -> None:
    big = generate_day(DATE, scale=0.04, seed=SEED)
    assert big.counts["fut_trades"] / day.counts["fut_trades"] == pytest.approx(2.0, rel=0.05)
    assert big.counts["fut_mbp10"] / day.counts["fut_mbp10"] == pytest.approx(2.0, rel=0.15)
    assert big.counts["opt_mbp-1"] / day.counts["opt_mbp-1"] == pytest.approx(2.0, rel=0.15)


# -- time structure -----------------------------------------------------------------------------


def test_volume_profile_is_u_shaped(day: DayFiles) -> None:
    a = _arr(day, FUT_TRADES)
    et = pd.to_datetime(a["ts_event"].astype(np.int64), utc=True).tz_convert(sessions.ET)
    minute = pd.Series(et.hour * 60 + et.minute)

    def per_minute(h0: float, h1: float) -> float:
        return float(((minute >= h0 * 60) & (minute < h1 * 60)).sum() / ((h1 - h0) * 60))

    open_, close_ = per_minute(9.5, 10), per_minute(15.5, 16)
    lunch, night = per_minute(12, 13), per_minute(1, 3)
    assert open_ > lunch
    assert close_ > lunch
    assert lunch > night > 0


@pytest.mark.parametrize(
    ("date", "utc_hour"),
    [
        (dt.date(2026, 3, 6), 23),  # EST: 18:00 ET on Thursday 03-05 = 23:00 UTC
        (dt.date(2026, 3, 9), 22),  # EDT from Sunday 03-08: 18:00 ET Sunday = 22:00 UTC
        (dt.date(2026, 10, 30), 22),  # still EDT
        (dt.date(2026, 11, 2), 23),  # EST from Sunday 11-01
    ],
)
def test_session_window_follows_dst(date: dt.date, utc_hour: int) -> None:
    d = generate_day(date, scale=0.01, seed=SEED)
    t0, t1 = sessions.globex_session(date)
    for kind in (FUT_MBP10, FUT_TRADES):
        a = _arr(d, kind)
        first = pd.Timestamp(int(a["ts_recv"][0]), tz="UTC")
        last = pd.Timestamp(int(a["ts_recv"][-1]), tz="UTC")
        assert first.date() == date - dt.timedelta(days=1)  # a Monday's session opens on Sunday
        assert first.hour == utc_hour
        assert 0 <= int(a["ts_recv"][0]) - t0 < 600 * FIXED
        assert last.value < t1 + FIXED
        assert last.hour == (utc_hour - 2) % 24 or last.hour == (utc_hour - 1) % 24  # before 17:00 ET


def test_roll_week_front_month() -> None:
    before = generate_day(dt.date(2026, 3, 11), scale=0.01, seed=SEED)
    after = generate_day(dt.date(2026, 3, 12), scale=0.01, seed=SEED)

    def share(d: DayFiles) -> pd.Series:
        return _df(d, FUT_TRADES)["symbol"].value_counts(normalize=True)

    assert list(_df(after, FUT_DEF)["raw_symbol"]) == ["ESM6", "ESU6"]
    assert share(after)["ESM6"] > 0.85
    assert (_df(after, OPT_DEF)["underlying"] == "ESM6").all()
    assert list(_df(before, FUT_DEF)["raw_symbol"]) == ["ESH6", "ESM6"]
    s = share(before)
    assert s["ESH6"] > 0.5
    assert 0.2 < s["ESM6"] < 0.5


# -- the planted physics ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def episodes() -> pd.DataFrame:
    """Truth rows of several days, each with the trade aggressor imbalance of the two minutes
    before arrival computed from the decoded trades file (signed toward the level)."""
    rows: list[pd.DataFrame] = []
    for date in sessions.trading_days(dt.date(2026, 4, 6), 12):
        d = generate_day(date, scale=0.01, seed=SEED)
        truth = d.truth.to_pandas()
        a = _arr(d, FUT_TRADES)
        a = a[a["instrument_id"] == instrument_id(sessions.front_month(date).symbol)]
        ts = a["ts_recv"].astype(np.int64)
        buy = (a["side"] == b"B").astype(np.int64)
        cum = np.concatenate([[0], np.cumsum(buy)])
        lo = np.searchsorted(ts, truth["arrival_ts"].to_numpy() - 120 * FIXED)
        hi = np.searchsorted(ts, truth["arrival_ts"].to_numpy())
        n = hi - lo
        sgn = np.where(truth["direction"] == "UP", 1.0, -1.0)
        truth["imbalance"] = sgn * (2 * (cum[hi] - cum[lo]) - n) / np.maximum(n, 1)
        truth["n_trades"] = n
        rows.append(truth)
    return pd.concat(rows, ignore_index=True)


def test_truth_table_is_consistent(episodes: pd.DataFrame) -> None:
    e = episodes
    assert len(e) >= 12 * 12  # many interactions per day
    assert set(e["level_kind"]) <= set(LEVEL_KINDS)
    assert e["level_kind"].nunique() >= 5
    assert set(e["direction"]) == {"UP", "DOWN"}
    assert set(e["outcome"]) == {"BREAK", "REJECT", "CHOP"}
    assert ((e["start_ts"] <= e["arrival_ts"]) & (e["arrival_ts"] <= e["end_ts"])).all()
    start_et = pd.to_datetime(e["start_ts"], utc=True).dt.tz_convert(sessions.ET).dt.time
    assert ((start_et >= dt.time(9, 30)) & (start_et < dt.time(12, 30))).all()
    pb, pr, pc = outcome_probabilities(e["F"], e["B"], e["G"])
    assert np.allclose(pb, e["p_break"])
    assert np.allclose(pr, e["p_reject"])
    assert np.allclose(pc, e["p_chop"])
    assert np.allclose(e["p_break"] + e["p_reject"] + e["p_chop"], 1.0)


def test_companion_rows_share_their_interaction(episodes: pd.DataFrame) -> None:
    """A level met 0.3 ATR before to 0.5 ATR past a planted one inherits that interaction's draw."""
    e = episodes
    own = e[e["level_kind"] == e["planted_kind"]]
    comp = e[e["level_kind"] != e["planted_kind"]]
    assert len(comp) > 0.05 * len(own)  # levels do sit together (EMA_20 near SMA_90, OR near PM)
    keys = ["date", "start_ts", "arrival_ts", "end_ts", "direction", "F", "B", "G", "p_break", "outcome"]
    parent = comp.merge(
        own, left_on=[*keys, "planted_kind"], right_on=[*keys, "level_kind"], suffixes=("", "_own")
    )
    assert len(parent) == len(comp)  # every companion row has its planted interaction
    sgn = np.where(parent["direction"] == "UP", 1.0, -1.0)
    past = sgn * (parent["level_price"] - parent["level_price_own"]) / parent["atr"]
    assert ((past >= -0.3 - 1e-9) & (past <= 0.5 + 1e-9)).all()  # met inside the planted move


def test_outcomes_follow_the_planted_probabilities(episodes: pd.DataFrame) -> None:
    e = episodes
    brk = (e["outcome"] == "BREAK").astype(float)
    hi, lo = e["F"] > 0.4, e["F"] < -0.4
    assert brk[hi].mean() > brk[lo].mean() + 0.2  # pressure into the level breaks it
    assert abs(brk.mean() - e["p_break"].mean()) < 0.08  # realised ≈ planted on average
    brier = ((e["p_break"] - brk) ** 2).mean()
    base = ((brk.mean() - brk) ** 2).mean()
    assert brier < base - 0.015


def test_flow_condition_is_visible_in_the_trades_before_arrival(episodes: pd.DataFrame) -> None:
    e = episodes[episodes["n_trades"] >= 5]
    assert len(e) > 120
    rho = e[["imbalance", "F"]].corr(method="spearman").iloc[0, 1]
    assert rho > 0.35


def test_gamma_condition_is_recomputable_from_the_options_files() -> None:
    date = dt.date(2026, 4, 7)
    d = generate_day(date, scale=0.01, seed=SEED)
    defs = _arr(d, OPT_DEF)
    oi = dict(
        zip(
            _arr(d, OPT_STATS)["instrument_id"].tolist(), _arr(d, OPT_STATS)["quantity"].tolist(), strict=True
        )
    )
    strike = defs["strike_price"] / FIXED
    sign = np.where(defs["instrument_class"] == b"C", 1.0, -1.0)
    qty = np.array([oi[i] for i in defs["instrument_id"].tolist()], dtype=np.float64)
    t = GAMMA_T_REF_HOURS / (365 * 24)

    def gex(level: float) -> float:
        near = np.abs(strike - level) <= GAMMA_WINDOW + 1e-9
        g = black76_gamma(level, strike[near], t, GAMMA_SIGMA_REF)
        return float(np.sum(sign[near] * g * qty[near]) * 50 * level**2 * 0.01)

    centre = float(np.median(strike))
    grid = [gex(centre + k) for k in np.arange(-GAMMA_GRID_HALF_WIDTH, GAMMA_GRID_HALF_WIDTH + 1, 5.0)]
    mu, sd = float(np.mean(grid)), float(np.std(grid))
    truth = d.truth.to_pandas()
    assert len(truth) > 5
    # G belongs to the level's price when the interaction starts (an SMA/EMA drifts a little after)
    for level, g in zip(truth["level_price_start"], truth["G"], strict=True):
        assert (gex(level) - mu) / sd == pytest.approx(g, abs=1e-6)


def test_generate_writes_the_lake(local_lake: Lake) -> None:
    dates = generate(local_lake, dt.date(2026, 3, 6), 2, scale=0.01, seed=SEED, progress=False)
    assert dates == [dt.date(2026, 3, 6), dt.date(2026, 3, 9)]
    for date in dates:
        for kind in paths.RAW_KINDS:
            assert local_lake.size(paths.raw_file(kind, date)) > 0
        truth = pq.read_table(local_lake.path(paths.truth_file(date)))
        assert truth.num_rows > 0
        assert truth.column("date").to_pylist()[0] == date
    alone = generate_day(dt.date(2026, 3, 9), scale=0.01, seed=SEED)
    on_disk = Path(local_lake.path(paths.raw_file(FUT_TRADES, dt.date(2026, 3, 9)))).read_bytes()
    assert on_disk == alone.files[FUT_TRADES]  # a day alone = the same day inside a range


def test_generate_skips_dates_already_landed_unless_forced(local_lake: Lake) -> None:
    date = dt.date(2026, 3, 6)
    generate(local_lake, date, 1, scale=0.01, seed=SEED, progress=False)
    key = paths.raw_file(FUT_TRADES, date)
    local_lake.write_bytes(key, b"sentinel: must survive a plain re-run")
    generate(local_lake, date, 1, scale=0.01, seed=SEED, progress=False)
    assert local_lake.read_bytes(key) == b"sentinel: must survive a plain re-run"
    generate(local_lake, date, 1, scale=0.01, seed=SEED, progress=False, force=True)
    assert local_lake.read_bytes(key) == generate_day(date, scale=0.01, seed=SEED).files[FUT_TRADES]


def test_a_holiday_is_refused_and_a_half_day_ends_at_its_early_close(tmp_path: Path) -> None:
    from tests.support import decode_day_files

    with pytest.raises(ValueError, match="not a trading day"):
        generate_day(dt.date(2026, 11, 26), scale=0.005, seed=1)  # Thanksgiving
    half = dt.date(2026, 11, 27)
    t = decode_day_files(generate_day(half, scale=0.005, seed=1).files, tmp_path)
    lo, hi = sessions.globex_session(half)
    assert hi == sessions.et_ns(half, dt.time(13, 15))
    for table in ("fut_trades", "fut_mbp10", "opt_trades"):
        ts = t[table].column("ts_recv").cast(pa.int64()).to_numpy()  # type: ignore[attr-defined]
        assert ts.size
        assert lo <= ts.min()
        assert ts.max() < hi, table
    # the day's 0DTE options expire at the 13:00 ET cash close
    exp = t["opt_definition"].column("expiration").cast(pa.int64()).to_numpy()  # type: ignore[attr-defined]
    assert set(exp.tolist()) >= {sessions.et_ns(half, dt.time(13, 0))}

"""Silver on generated days: no lookahead, determinism, DST, the roll, missing options, reference values."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from spymaster import features, levels, sessions
from spymaster.lake import Lake, paths, read_committed, read_manifest
from spymaster.lake.paths import Layer
from spymaster.layers import bronze, silver
from spymaster.synth import generate, generate_day
from tests.support import silver_inputs

DAY = dt.date(2026, 3, 5)
ROLL_DAY = dt.date(2026, 3, 12)
NS = 1_000_000_000


@functools.cache
def _inputs(date: dt.date, scale: float = 0.02, seed: int = 11) -> silver.SilverInputs:
    out: silver.SilverInputs = silver_inputs(date, scale=scale, seed=seed)  # type: ignore[assignment]
    return out


@functools.cache
def _silver(date: dt.date) -> silver.SilverTables:
    return silver.compute(_inputs(date))


def _cut(table: pa.Table, t_ns: int, mode: str, rng: np.random.Generator) -> pa.Table:
    """Delete, or rewrite with other values, every record stamped after ``t_ns``."""
    ts = table.column("ts_recv").cast(pa.int64()).to_numpy()
    after = ts > t_ns
    if mode == "delete":
        return table.filter(pa.array(~after))
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_floating(col.type) and name != "strike_price":
            v = col.to_numpy(zero_copy_only=False).copy()
            v[after] += rng.choice([-0.5, 0.25, 1.0], after.sum())
            cols[name] = pa.array(v, col.type)
        elif pa.types.is_unsigned_integer(col.type) and ("sz" in name or name == "size"):
            v = col.to_numpy(zero_copy_only=False).copy()
            v[after] = rng.integers(1, 500, after.sum())
            cols[name] = pa.array(v, col.type)
        elif name == "side":
            v = np.asarray(col.to_pylist(), dtype=object)
            v[after] = rng.choice(["A", "B"], after.sum())
            cols[name] = pa.array(v.tolist(), pa.string())
        else:
            cols[name] = col
    return pa.table(cols, schema=table.schema)


@pytest.mark.parametrize("mode", ["delete", "replace"])
@pytest.mark.parametrize(("hh", "mm", "ss"), [(9, 44, 30), (10, 47, 30), (12, 1, 0)])
def test_no_lookahead_altering_the_future_leaves_the_past_bit_identical(
    mode: str, hh: int, mm: int, ss: int
) -> None:
    # Given a day's silver and a cut time t
    inp = _inputs(DAY)
    full = _silver(DAY)
    t_ns = sessions.et_ns(DAY, dt.time(hh, mm, ss))
    rng = np.random.default_rng(hh * 60 + mm)
    # When every record after t is deleted or rewritten
    altered = silver.SilverInputs(
        date=DAY,
        fut_definition=inp.fut_definition,
        fut_trades=_cut(inp.fut_trades, t_ns, mode, rng),
        fut_mbp10=_cut(inp.fut_mbp10, t_ns, mode, rng),
        opt_definition=inp.opt_definition,
        opt_statistics=inp.opt_statistics,
        opt_mbp1=_cut(inp.opt_mbp1, t_ns, mode, rng),  # type: ignore[arg-type]
    )
    cut = silver.compute(altered)
    # Then every silver row at or before t is bit-identical
    for name in ("state", "levels", "bars_30s", "bars_2m"):
        a, b = getattr(full, name), getattr(cut, name)
        ts_a = a.column("ts").cast(pa.int64())
        ts_b = b.column("ts").cast(pa.int64())
        pa_ = a.filter(pc.less_equal(ts_a, t_ns))
        pb = b.filter(pc.less_equal(ts_b, t_ns))
        assert pa_.num_rows > 0
        assert pa_.equals(pb), name
    # and the future did change (so the test can fail)
    later = pc.greater(full.state.column("ts").cast(pa.int64()), t_ns)
    assert not full.state.filter(later).equals(
        cut.state.filter(pc.greater(cut.state.column("ts").cast(pa.int64()), t_ns))
    )


def test_deterministic_and_byte_identical_on_the_lake(local_lake: Lake) -> None:
    again = silver.compute(_inputs(DAY))
    assert again.state.equals(_silver(DAY).state)
    generate(local_lake, DAY, 1, scale=0.01, seed=3, progress=False)
    for kind in paths.RAW_KINDS:
        bronze.build(local_lake, kind, DAY)
    silver.build(local_lake, DAY)
    first = {
        n: local_lake.read_bytes(read_manifest(local_lake, Layer.SILVER, n, DAY).files[0])
        for n in paths.SILVER_TABLES
    }
    silver.build(local_lake, DAY)
    second = {
        n: local_lake.read_bytes(read_manifest(local_lake, Layer.SILVER, n, DAY).files[0])
        for n in paths.SILVER_TABLES
    }
    assert first == second


@pytest.mark.parametrize(
    ("date", "utc_hour"),
    [
        (dt.date(2026, 3, 6), 14),
        (dt.date(2026, 3, 9), 13),
        (dt.date(2026, 10, 30), 13),
        (dt.date(2026, 11, 2), 14),
    ],
)
def test_dst_dates_give_the_right_et_windows(date: dt.date, utc_hour: int) -> None:
    steps = sessions.step_times(date)
    first = dt.datetime.fromtimestamp(steps[0] / NS, dt.UTC)
    last = dt.datetime.fromtimestamp(steps[-1] / NS, dt.UTC)
    assert (first.hour, first.minute) == (utc_hour, 30)
    assert (last.hour, last.minute) == (utc_hour + 3, 30)  # 12:30 ET
    assert steps.size == 361


def test_roll_week_uses_the_documented_front_month() -> None:
    out = _silver(ROLL_DAY)
    assert out.front_month == sessions.front_month(ROLL_DAY).symbol == "ESM6"
    inp = _inputs(ROLL_DAY)
    ids = dict(
        zip(
            inp.fut_definition.column("raw_symbol").to_pylist(),
            inp.fut_definition.column("instrument_id").to_pylist(),
            strict=True,
        )
    )
    tr = inp.fut_trades.to_pandas()
    esm6 = tr[tr.instrument_id == ids["ESM6"]]
    last = esm6[esm6.ts_recv <= pd.Timestamp(sessions.et_ns(ROLL_DAY, dt.time(10, 0)), tz="UTC")].price.iloc[
        -1
    ]
    lv = out.levels.to_pandas().set_index("ts")
    assert lv.loc[pd.Timestamp(sessions.et_ns(ROLL_DAY, dt.time(10, 0)), tz="UTC"), "price"] == last


def test_missing_options_mark_dealer_features_missing_not_zero() -> None:
    inp = _inputs(DAY)
    no_opt = silver.SilverInputs(
        date=DAY, fut_definition=inp.fut_definition, fut_trades=inp.fut_trades, fut_mbp10=inp.fut_mbp10
    )
    out = silver.compute(no_opt)
    full = _silver(DAY).state
    dealer = [f for f in features.by_group("dealer") if f != "dealer_missing"]
    for name in dealer:
        assert out.state.column(name).null_count == out.state.num_rows, name  # missing, not zero
        assert full.column(name).null_count < 0.1 * full.num_rows, name
    assert set(out.state.column("dealer_missing").to_pylist()) == {1.0}
    assert set(full.column("dealer_missing").to_pylist()) == {0.0}
    others = [n for n in full.column_names if n not in features.by_group("dealer")]
    assert out.state.select(others).equals(full.select(others))


def _front_trades(date: dt.date) -> pd.DataFrame:
    """The day's trades of the contract silver names as the front month."""
    inp = _inputs(date)
    ids = dict(
        zip(
            inp.fut_definition.column("raw_symbol").to_pylist(),
            inp.fut_definition.column("instrument_id").to_pylist(),
            strict=True,
        )
    )
    tr = inp.fut_trades.to_pandas()
    out: pd.DataFrame = tr[tr.instrument_id == ids[_silver(date).front_month]]
    return out


def test_levels_match_an_independent_pandas_computation() -> None:
    out = _silver(DAY)
    tr = _front_trades(DAY).set_index("ts_recv").sort_index()
    et = tr.tz_convert("America/New_York")
    pm = et.between_time("04:00", "09:30", inclusive="left").price
    orng = et.between_time("09:30", "09:45", inclusive="left").price
    lv = out.levels.to_pandas().set_index("ts")
    at_1000 = pd.Timestamp(dt.datetime(2026, 3, 5, 10, 0), tz="America/New_York").tz_convert("UTC")
    assert lv.loc[at_1000, "PM_HIGH"] == pm.max()
    assert lv.loc[at_1000, "PM_LOW"] == pm.min()
    assert lv.loc[at_1000, "OR_HIGH"] == orng.max()
    assert lv.loc[at_1000, "OR_LOW"] == orng.min()
    # OR is not known before 09:45; PM is fixed from 09:30
    assert pd.isna(lv.loc[at_1000 - pd.Timedelta(minutes=16), "OR_HIGH"])
    # SMA-90 / EMA-20 of 2-minute closes (bars labelled by their close, carried when empty)
    lo, _ = sessions.globex_session(DAY)
    closes = (
        tr.price.resample("2min", closed="left", label="right", origin=pd.Timestamp(lo, tz="UTC"))
        .last()
        .ffill()
    )
    closes = closes[closes.index <= at_1000]
    assert lv.loc[at_1000, "SMA_90"] == pytest.approx(closes.iloc[-90:].mean(), rel=1e-12)
    e = closes.iloc[:20].mean()
    for c in closes.iloc[20:]:
        e += (2 / 21) * (c - e)
    assert lv.loc[at_1000, "EMA_20"] == pytest.approx(e, rel=1e-9)


def test_tape_count_imbalance_matches_an_independent_count() -> None:
    """tape_count_imb_{60,120}s: front-month aggressor trades in (t − w, t], counted, signed into the level."""
    out = _silver(DAY)
    tr = _front_trades(DAY)
    ts = tr.ts_recv.astype("int64").to_numpy()
    side = tr.side.to_numpy()
    st = out.state.to_pandas()
    rows = st.iloc[:: max(1, len(st) // 40)]
    checked = 0
    for _, r in rows.iterrows():
        t = pd.Timestamp(r.ts).value
        into = 1.0 if r.direction == "UP" else -1.0
        for w in (60, 120):
            m = (ts > t - w * NS) & (ts <= t)
            buys, sells = int((side[m] == "B").sum()), int((side[m] == "A").sum())
            want = into * (buys - sells) / (buys + sells) if buys + sells else 0.0
            assert r[f"tape_count_imb_{w}s"] == pytest.approx(want, abs=1e-12)
            checked += buys + sells > 0
    assert checked > 20


def test_planted_levels_agree_with_the_generator_truth() -> None:
    day = generate_day(DAY, scale=0.02, seed=11)
    out = _silver(DAY).levels.to_pandas()
    truth = day.truth.to_pandas()
    fixed = truth[truth.level_kind.isin(["PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW"])]
    assert len(fixed) > 0
    for _, row in fixed.iterrows():
        at = out[out.ts.astype("int64") <= row.arrival_ts].iloc[-1]
        assert at[row.level_kind] == pytest.approx(row.level_price), row.level_kind


def test_state_schema_groups_and_docs_in_sync() -> None:
    state = _silver(DAY).state
    assert state.schema.equals(features.STATE_SCHEMA, check_metadata=False)
    assert set(state.column("level_kind").to_pylist()) == set(levels.LEVEL_KINDS)
    assert set(state.column("direction").to_pylist()) == {"UP", "DOWN"}
    groups = {f.metadata[b"group"].decode() for f in state.schema if f.metadata}
    assert groups == set(features.GROUPS)
    doc = (Path(__file__).parents[2] / "docs" / "FEATURES.md").read_text()
    assert features.markdown() in doc


@pytest.mark.s3
def test_silver_commits_on_s3(s3_lake: Lake) -> None:
    generate(s3_lake, DAY, 1, scale=0.01, seed=3, progress=False)
    for kind in paths.RAW_KINDS:
        bronze.build(s3_lake, kind, DAY)
    out = silver.build(s3_lake, DAY)
    assert read_committed(s3_lake, Layer.SILVER, "state", DAY).equals(out.state)

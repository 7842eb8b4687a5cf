"""Streams core: bounded, causal (alter the future), hysteresis, projections, exit score, docs in sync."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import spymaster.streams.exit as exit_mod
from spymaster import sessions
from spymaster.features import STATE_SCHEMA
from spymaster.streams import (
    STREAM_NAMES,
    compute,
    core,
    exit_score,
    fit_scaling,
    hysteresis,
    projection,
    wants_break,
)
from spymaster.streams import alerts as alerts_mod
from spymaster.streams.alerts import run_alerts as alerts
from spymaster.streams.core import STREAMS_SCHEMA, bar_rows

DAY = dt.date(2026, 3, 10)
KINDS = ("PM_HIGH", "OR_LOW", "SMA_90")


def state(day: dt.date, seed: int, scale: float = 1.0) -> pa.Table:
    """A state table on the real step grid with heavy-tailed features (some NaN, some huge)."""
    rng = np.random.default_rng(seed)
    steps = sessions.step_times(day)
    n = steps.size * len(KINDS)
    cols: dict[str, pa.Array] = {}
    for f in STATE_SCHEMA:
        if f.name == "date":
            cols[f.name] = pa.array([day] * n, pa.date32())
        elif f.name == "ts":
            cols[f.name] = pa.array(np.tile(steps, len(KINDS)), pa.int64()).cast(f.type)
        elif f.name == "level_kind":
            cols[f.name] = pa.array(np.repeat(KINDS, steps.size).tolist())
        elif f.name == "direction":
            cols[f.name] = pa.array(rng.choice(["UP", "DOWN"], n, p=[0.9, 0.1]).tolist())
        elif f.name == "time_bucket":
            cols[f.name] = pa.array(np.zeros(n, np.int8))
        elif f.name == "dealer_missing":
            cols[f.name] = pa.array(np.zeros(n))
        elif f.name in ("level_price", "price"):
            cols[f.name] = pa.array(5000 + rng.normal(0, 5, n))
        elif f.name == "ctx_atr_points":
            cols[f.name] = pa.array(np.full(n, 2.0))
        else:
            x = rng.standard_t(2, n) * scale * 10.0 ** rng.integers(-2, 3)
            x[rng.random(n) < 0.02] = np.nan
            cols[f.name] = pa.array(x, from_pandas=True)
    return pa.table(cols).cast(STATE_SCHEMA)


def history(days: int = 3) -> tuple[pa.Table, tuple[dt.date, ...]]:
    ds = tuple(sessions.trading_days(dt.date(2026, 3, 2), days))
    return pa.concat_tables([bar_rows(state(d, i)) for i, d in enumerate(ds)]), ds


def test_every_stream_is_bounded_even_on_extreme_inputs() -> None:
    hist, ds = history()
    sc = fit_scaling(hist, ds)
    out = compute(state(DAY, 99, scale=1e6), sc)  # a day a million times wilder than its history
    assert out.schema.equals(STREAMS_SCHEMA)
    assert out.num_rows == sessions.bar_closes(DAY).size * len(KINDS)
    for name in STREAM_NAMES:
        v = np.asarray(out.column(name).to_numpy(zero_copy_only=False), dtype=float)
        assert np.isfinite(v).mean() > 0.9, name
        assert np.nanmax(np.abs(v)) <= 1.0, name
    assert np.nanmax(np.abs(out.column("momentum").to_numpy(zero_copy_only=False))) > 0.99  # it does saturate


def test_no_scaling_history_means_null_streams_not_guesses() -> None:
    out = compute(state(DAY, 1), fit_scaling(pa.table({}), ()))
    assert all(out.column(n).null_count == out.num_rows for n in STREAM_NAMES)
    assert set(out.column("scaling_days").to_pylist()) == {0}


def test_altering_the_future_leaves_the_past_bit_identical() -> None:
    hist, ds = history()
    sc = fit_scaling(hist, ds)
    s0 = state(DAY, 7)
    cut = sessions.et_ns(DAY, dt.time(10, 30))
    ts = s0.column("ts").cast(pa.int64()).to_numpy()
    future = ts > cut
    other = state(DAY, 8)  # every feature (and direction) different after the cut
    s1 = pa.table(
        {
            n: pa.array(
                np.where(
                    future,
                    other.column(n).to_numpy(zero_copy_only=False),
                    s0.column(n).to_numpy(zero_copy_only=False),
                ),
                type=s0.schema.field(n).type,
                from_pandas=True,
            )
            if n not in ("date", "ts")
            else s0.column(n)
            for n in s0.column_names
        }
    )
    a, b = compute(s0, sc), compute(s1, sc)
    keep = pa.array(a.column("ts").cast(pa.int64()).to_numpy() <= cut)
    assert a.filter(keep).equals(b.filter(keep))
    assert not a.equals(b)  # the future did change
    al_a, al_b = alerts(a.filter(keep)), alerts(b.filter(keep))
    assert al_a.equals(al_b)
    # the alerts raised as of the cut are the same whether computed on the whole day or up to it
    whole = alerts(a)
    early = whole.filter(pa.array(whole.column("ts").cast(pa.int64()).to_numpy() <= cut))
    assert early.drop_columns(["cleared_ts"]).equals(al_a.drop_columns(["cleared_ts"]))


def test_derivatives_of_a_cubic_are_exact_and_need_only_the_past() -> None:
    t = np.arange(20, dtype=float)
    v = 0.001 * t**3 - 0.01 * t**2 + 0.05 * t
    starts = np.zeros(20, dtype=bool)
    starts[0] = True
    slope, curv, jerk = core.derivatives(v, starts)
    i = 12
    assert slope[i] == pytest.approx(0.003 * t[i] ** 2 - 0.02 * t[i] + 0.05)
    assert curv[i] == pytest.approx(0.006 * t[i] - 0.02)
    assert jerk[i] == pytest.approx(0.006)
    assert np.isnan(slope[0])
    assert np.isnan(jerk[2])
    assert np.isfinite(jerk[3])
    starts[10] = True  # a direction flip starts a new run: its first bar has no slope
    slope2, _, _ = core.derivatives(v, starts)
    assert np.isnan(slope2[10])
    assert slope2[9] == slope[9]


def test_hysteresis_raises_once_for_a_score_wobbling_around_the_threshold() -> None:
    wobble = alerts_mod.ON + 0.05 * np.sin(np.arange(60))  # crosses ON again and again, never below OFF
    raised, cleared = hysteresis(wobble)
    assert raised == [int(np.argmax(wobble >= alerts_mod.ON))]
    assert cleared == [None]
    dips = wobble.copy()
    dips[30] = 0.0  # falling below OFF clears it: the next crossing raises it again
    raised2, cleared2 = hysteresis(dips)
    assert len(raised2) == 2
    assert cleared2[0] == 30


def _streams_rows(barrier_slope: np.ndarray) -> pa.Table:
    n = barrier_slope.size
    cols: dict[str, object] = {}
    ts0 = sessions.bar_closes(DAY)[:n]
    for f in STREAMS_SCHEMA:
        if f.type == pa.float64():
            cols[f.name] = np.zeros(n)
    cols.update(
        date=[DAY] * n,
        ts=pa.array(ts0, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        bar=np.arange(n, dtype=np.int16),
        level_kind=["OR_HIGH"] * n,
        direction=["UP"] * n,
        level_price=np.full(n, 5000.0),
        price=np.full(n, 4999.0),
        atr=np.full(n, 2.0),
        barrier=np.full(n, 0.6),
        barrier_slope=barrier_slope,
        scaling_days=np.full(n, 20, np.int16),
        scaling_version=["v"] * n,
    )
    return pa.table(
        {f.name: pa.array(cols[f.name], type=f.type) for f in STREAMS_SCHEMA}, schema=STREAMS_SCHEMA
    )


def test_an_oscillating_stream_raises_its_alert_once() -> None:
    # barrier building = Σ_B⁺ · (slope/0.1)⁺ = 0.6 · slope/0.1 wobbles between 0.27 and 0.33 around ON = 0.3
    slope = 0.05 + 0.005 * np.where(np.arange(40) % 2 == 0, 1.0, -1.0)
    got = alerts(_streams_rows(slope))
    building = got.filter(pa.compute.equal(got.column("alert"), "BARRIER_BUILDING"))
    assert building.num_rows == 1
    assert building.column("bar").to_pylist() == [0]
    assert building.column("cleared_ts").to_pylist() == [None]
    assert 0.3 <= building.column("confidence")[0].as_py() <= 0.34
    # without hysteresis (OFF = ON) the same stream would flicker: it is the band doing the work
    score = alerts_mod.scores(_streams_rows(slope))["BARRIER_BUILDING"]
    assert len(hysteresis(score, on=alerts_mod.ON, off=alerts_mod.ON)[0]) == 20


def test_quantile_fit_recovers_known_quantiles() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    x = np.column_stack([np.ones(n), rng.uniform(-1, 1, n)])
    y = 0.2 + 0.5 * x[:, 1] + rng.normal(0, 0.1, n)
    tau = np.array([0.1, 0.5, 0.9])
    beta = projection.quantile_fit(x, np.repeat(y[:, None], 3, axis=1), tau)
    z = np.array([-1.2815515655446004, 0.0, 1.2815515655446004]) * 0.1
    assert beta[0] == pytest.approx(0.2 + z, abs=0.01)
    assert beta[1] == pytest.approx([0.5] * 3, abs=0.01)


def test_projections_are_bounded_sorted_curves() -> None:
    hist, ds = history(4)
    sc = fit_scaling(hist, ds)
    train = pa.concat_tables([compute(state(d, 10 + i), sc) for i, d in enumerate(ds)])
    m = projection.fit(train, ds)
    assert projection.ProjectionModel.from_json(m.to_json()).version == m.version
    x, y = projection.pairs(compute(state(DAY, 50), sc), "net")
    assert np.isnan(y[-1]).all()  # the day's last bar has no future
    cur = m.project("net", x[np.isfinite(x).all(axis=1)])
    assert cur is not None
    assert cur.shape[1:] == (3, projection.HORIZON_BARS)
    assert np.all(np.abs(cur) <= 1)
    assert np.all(np.diff(cur, axis=1) >= 0)


def test_exit_score_follows_the_position() -> None:
    assert wants_break("LONG", "UP")
    assert wants_break("SHORT", "DOWN")
    assert not wants_break("LONG", "DOWN")
    assert not wants_break("SHORT", "UP")
    # a push winning (net > 0) is good for a long into resistance, bad for a long on support
    assert exit_score("LONG", "UP", 0.8) == pytest.approx(0.1)
    assert exit_score("LONG", "DOWN", 0.8) == pytest.approx(0.9)
    assert exit_score("SHORT", "DOWN", 0.8, p_break=0.7, p_reject=0.3) == pytest.approx((0.1 + 0.3) / 2)
    assert exit_score("LONG", "UP", float("nan")) is None
    with pytest.raises(ValueError, match="position"):
        wants_break("FLAT", "UP")


def test_docs_streams_md_matches_the_code() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "STREAMS.md").read_text()
    assert core.markdown() in doc
    assert alerts_mod.markdown() in doc
    assert f"ON = {alerts_mod.ON:g}" in doc
    assert f"OFF = {alerts_mod.OFF:g}" in doc
    assert exit_mod.__doc__ is not None
    formula = [ln.strip() for ln in exit_mod.__doc__.splitlines() if "=" in ln and "adverse" in ln]
    assert len(formula) == 2
    for line in formula:
        assert line in doc, line

"""Evaluation metrics against hand-computed values, recalibration on past days only, and a
walk-forward that never lets a test day see itself, later days or its embargo day."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from spymaster import evaluation, sessions, vectors
from spymaster.evaluation import Episodes, KnnConfig
from spymaster.outcomes import HORIZONS_MIN
from spymaster.retrieval import Params, calibration

# -- metrics -----------------------------------------------------------------------------------------


def test_brier_by_hand() -> None:
    # (0.1−0)² + (0.8−1)² + (0.5−1)² + (1−0)² = 0.01 + 0.04 + 0.25 + 1 = 1.30, over 4
    assert evaluation.brier([0.1, 0.8, 0.5, 1.0], [0, 1, 1, 0]) == pytest.approx(0.325)


def test_log_loss_by_hand_and_clipping() -> None:
    # −(ln 0.5 + ln 0.2) / 2
    assert evaluation.log_loss([0.5, 0.8], [1, 0]) == pytest.approx((math.log(2) + math.log(5)) / 2)
    # certainty on the wrong side is clipped at 1e-6: −ln(1e-6) each
    assert evaluation.log_loss([0.0, 1.0], [1, 0]) == pytest.approx(-math.log(1e-6))


def test_ece_and_reliability_by_hand() -> None:
    p = [0.05, 0.15, 0.15, 0.95]
    y = [0, 1, 0, 1]
    # bin 0: |0.05 − 0| · 1/4; bin 1: |0.15 − 0.5| · 2/4; bin 9: |0.95 − 1| · 1/4
    assert evaluation.ece(p, y) == pytest.approx(0.0125 + 0.175 + 0.0125)
    mp, rate, count = evaluation.reliability(p, y)
    assert count.tolist() == [1, 1 + 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert mp[1] == pytest.approx(0.15)
    assert rate[1] == pytest.approx(0.5)
    assert math.isnan(mp[4])
    # edges: 0.1 belongs to bin 1, 1.0 to the last bin
    _, _, c = evaluation.reliability([0.1, 1.0, 0.0], [0, 1, 0])
    assert c[0] == 1
    assert c[1] == 1
    assert c[9] == 1
    assert evaluation.ece([0.1], [0]) == pytest.approx(0.1)


def test_auc_by_hand() -> None:
    # positive scores 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs ordered
    assert evaluation.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert math.isnan(evaluation.auc([0.2, 0.3], [1, 1]))


def test_top_decile_lift_by_hand() -> None:
    p = np.linspace(0.9, 0.0, 20)
    y = np.zeros(20)
    y[[0, 5, 10, 15]] = 1  # overall rate 0.2
    # the top ⌈20/10⌉ = 2 forecasts hold one BREAK: 0.5 / 0.2
    assert evaluation.top_decile_lift(p, y) == pytest.approx(2.5)
    # ties are broken by row order: the first row is the top decile of 10 equal forecasts
    assert evaluation.top_decile_lift(np.full(10, 0.3), [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]) == pytest.approx(5.0)
    assert math.isnan(evaluation.top_decile_lift([0.2, 0.3], [0, 0]))


def test_coverages_by_hand() -> None:
    # bounds are inclusive; rows without a truth are not counted
    assert evaluation.interval_coverage([0, 0.2, 0.5], [0.3, 0.4, 0.6], [0.3, 0.5, np.nan]) == 0.5
    assert math.isnan(evaluation.interval_coverage([0], [1], [np.nan]))
    # two equal-count bins by forecast: realised rates 0.5 (rows 0, 1) and 1.0 (rows 2, 3)
    p = [0.1, 0.2, 0.8, 0.9]
    y = [0, 1, 1, 1]
    lo = [0.4, 0.0, 0.95, 0.5]
    hi = [0.6, 0.4, 1.0, 0.9]
    assert evaluation.decile_coverage(p, lo, hi, y, bins=2) == 0.5


def test_skill_scores_and_validation() -> None:
    assert evaluation.skill(0.18, 0.2) == pytest.approx(0.1)
    s = evaluation.scores([0.2, 0.6], [0, 1], lo=[0.1, 0.5], hi=[0.3, 0.7], truth=[0.25, np.nan])
    assert s.n == 2
    assert s.brier == pytest.approx((0.04 + 0.16) / 2)
    assert s.oracle_coverage == 1.0
    assert s.n_oracle == 1
    with pytest.raises(ValueError, match="probabilities"):
        evaluation.brier([1.2], [1])
    with pytest.raises(ValueError, match="0 or 1"):
        evaluation.brier([0.2], [2])


def test_ece_noise_floor_shrinks_with_sample_size() -> None:
    small = evaluation.ece_floor(np.full(100, 0.3), draws=50)
    large = evaluation.ece_floor(np.full(10_000, 0.3), draws=50)
    assert 0 < large < small < 0.1


# -- recalibration -----------------------------------------------------------------------------------


def test_recalibration_fits_only_past_days() -> None:
    rng = np.random.default_rng(0)
    n_day = 300
    day = np.repeat(np.arange(6), n_day)
    p = rng.uniform(0.1, 0.9, day.size)
    y = (rng.random(day.size) < p / 2).astype(float)  # the raw forecast is twice the truth
    cutoffs = {d: d - 1 for d in range(6)}  # one-day embargo on consecutive day numbers
    res = calibration.walk_forward(
        p, y, day, np.full(day.size, 20.0), cutoffs, method="isotonic", min_rows=200
    )
    # days 0 and 1 have no (or too little) past: unchanged
    assert np.array_equal(res.p[day <= 1], p[day <= 1])
    assert res.maps[1].identity
    # later days are pulled toward the truth
    late = day >= 3
    assert abs(np.mean(res.p[late]) - np.mean(p[late]) / 2) < 0.05
    # a day's map does not depend on that day's (or the embargo day's) outcomes
    y2 = y.copy()
    y2[day >= 3] = 1 - y2[day >= 3]
    res2 = calibration.walk_forward(p, y2, day, np.full(day.size, 20.0), cutoffs, method="isotonic")
    assert np.array_equal(res2.p[day <= 4], res.p[day <= 4])
    assert not np.array_equal(res2.p[day == 5], res.p[day == 5])  # day 5 may use day 3
    # intervals hold the recalibrated mean
    assert np.all(res.lo <= res.p)
    assert np.all(res.p <= res.hi)


def test_platt_and_json_round_trip() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, 2000)
    y = (rng.random(p.size) < p).astype(float)
    m = calibration.fit(p, y, "platt")
    assert m.a == pytest.approx(1.0, abs=0.2)
    assert m.b == pytest.approx(0.0, abs=0.2)
    back = calibration.Recalibration.from_json(m.to_json())
    assert np.allclose(back.apply(p), m.apply(p))
    assert calibration.fit(p[:10], y[:10]).identity


# -- the walk-forward never looks ahead -------------------------------------------------------------

DAYS = sessions.trading_days(dt.date(2026, 3, 2), 7)  # Mon 2 … Tue 10 March
TEST_DAY, EMBARGO_DAY = DAYS[4], DAYS[3]
KEY = ("PM_HIGH", "UP", 0)
PER_DAY = 12


def _episodes(rng: np.random.Generator) -> tuple[Episodes, np.ndarray]:
    """Days 0–2: random states, mostly REJECT. Day 3 (the embargo day of day 4), day 4 (the test
    day) and days 5–6: copies of day 4's query states, all BREAK — a leak would be obvious."""
    queries = rng.normal(size=(PER_DAY, vectors.VECTOR_DIM)).astype(np.float32)
    raws, labels, days, ts = [], [], [], []
    for i, d in enumerate(DAYS):
        if i <= 2:
            raw = rng.normal(size=(PER_DAY, vectors.VECTOR_DIM)).astype(np.float32)
            lab = np.where(rng.random(PER_DAY) < 0.2, 0, 1)
        else:
            raw = queries.copy()
            lab = np.zeros(PER_DAY, dtype=np.int64)
        open_ns = int(dt.datetime(d.year, d.month, d.day, 14, 31, tzinfo=dt.UTC).timestamp()) * 10**9
        raws.append(raw)
        labels.append(lab)
        days += [sessions.day_number(d)] * PER_DAY
        ts += [open_ns + j * 30 * 10**9 for j in range(PER_DAY)]
    n = PER_DAY * len(DAYS)
    lab_all = np.concatenate(labels)
    ep = Episodes.build(
        episode_id=[f"e{i:03d}" for i in range(n)],
        day=days,
        ts=ts,
        level_kind=[KEY[0]] * n,
        direction=[KEY[1]] * n,
        time_bucket=[KEY[2]] * n,
        raw=np.concatenate(raws),
        labels=np.tile(lab_all, (len(HORIZONS_MIN), 1)),
    )
    return ep, queries


def _perturbed(ep: Episodes, from_day: dt.date, test_day: dt.date) -> Episodes:
    """Every outcome of ``from_day`` on flipped to CHOP; every vector of those days but the test
    day's (its own queries) scaled ×50."""
    late = ep.day >= sessions.day_number(from_day)
    scale = late & (ep.day != sessions.day_number(test_day))
    raw = ep.raw.copy()
    raw[scale] *= 50.0
    labels = ep.labels.copy()
    labels[:, late] = 2
    return Episodes.build(
        episode_id=list(ep.episode_id),
        day=ep.day,
        ts=ep.ts,
        level_kind=list(ep.level_kind),
        direction=list(ep.direction),
        time_bucket=ep.time_bucket,
        raw=raw,
        labels=labels,
    )


CONFIGS = [
    KnnConfig.of("published"),
    KnnConfig.of("tuned", k=5, max_per_day=5, params=Params(similarity_power=1.0, prior_strength=10.0)),
    KnnConfig.of("learned corr", weights={"dealer": 0.0}, metric="corr"),
    KnnConfig.of("learned logistic", metric="logistic", metric_by="level_kind", metric_shrink=0.2),
]


def test_learned_dim_weights_favour_informative_dims_and_shrink_to_uniform() -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2000, 6))
    y = (x[:, 0] + 0.5 * rng.normal(size=2000) > 0.8).astype(float)
    base = np.array([1, 1, 1, 1, 0, 1], np.float32)
    for method in ("corr", "logistic"):
        w = evaluation.learned_dim_weights(x, y, base=base, shrink=0.5, method=method)
        assert w.dtype == np.float32
        assert w.shape == (6,)
        assert w[4] == 0.0  # a dim the base weights drop stays dropped
        assert w[0] > 5 * max(w[1], w[2], w[3], w[5])  # the informative dim dominates
        assert np.all(w[base > 0] >= 0.5 - 1e-6)  # shrink 0.5: every kept dim keeps half its weight
        assert float(np.mean(w[base > 0])) == pytest.approx(1.0, rel=1e-5)
        # full shrinkage is the base weights; a single class cannot fit a metric
        assert np.array_equal(
            evaluation.learned_dim_weights(x, y, base=base, shrink=1.0, method=method), base
        )
        assert np.array_equal(
            evaluation.learned_dim_weights(x, np.zeros(2000), base=base, method=method), base
        )
    with pytest.raises(ValueError, match="metric"):
        KnnConfig.of("bad", metric="mahalanobis")
    assert "learned corr metric" in KnnConfig.of("m", metric="corr").describe()


def test_cutoff_is_embargo_trading_days_back() -> None:
    monday = dt.date(2026, 3, 9)
    assert evaluation.cutoff_date(monday, 0) == monday
    assert evaluation.cutoff_date(monday, 1) == dt.date(2026, 3, 6)  # Friday
    assert evaluation.cutoff_date(monday, 2) == dt.date(2026, 3, 5)
    with pytest.raises(ValueError, match="embargo"):
        evaluation.cutoff_date(monday, -1)


def test_walk_forward_never_sees_the_test_day_the_embargo_day_or_later_days() -> None:
    ep, _ = _episodes(np.random.default_rng(3))
    test_day, embargo_day = TEST_DAY, EMBARGO_DAY
    wf = evaluation.walk_forward(ep, [test_day], CONFIGS, embargo_days=1)
    tday = sessions.day_number(test_day)
    # what the day was allowed to see: days strictly before its embargo day, stats likewise
    assert wf.cutoffs[tday] == sessions.day_number(embargo_day)
    assert set(wf.train_days[tday]) == {sessions.day_number(d) for d in DAYS[:3]}
    assert wf.stats_window[tday] == tuple(d.isoformat() for d in DAYS[:3])
    assert len(wf.rows) == PER_DAY
    # With no leak the forecasts are low (the past is mostly REJECT) …
    assert np.all(wf.knn["published"].p_break < 0.6)
    # … and identical when the embargo day, the test day's outcomes and the later days change
    other = evaluation.walk_forward(
        _perturbed(ep, embargo_day, test_day), [test_day], CONFIGS, embargo_days=1
    )
    for c in CONFIGS:
        a, b = wf.knn[c.name], other.knn[c.name]
        assert np.array_equal(a.p, b.p)
        assert np.array_equal(a.lo, b.lo)
        assert np.array_equal(a.hi, b.hi)
    # A leak would change the answer: without the embargo, the embargo day's BREAK copies of the
    # queries are the nearest neighbours, and perturbing that day moves the forecasts
    leaky = evaluation.walk_forward(ep, [test_day], CONFIGS, embargo_days=0)
    assert np.all(leaky.knn["published"].p_break > wf.knn["published"].p_break + 0.2)
    leaky2 = evaluation.walk_forward(
        _perturbed(ep, embargo_day, test_day), [test_day], CONFIGS, embargo_days=0
    )
    assert not np.array_equal(leaky.knn["published"].p, leaky2.knn["published"].p)
    assert embargo_day.isoformat() in leaky.stats_window[tday]


def test_baselines_never_see_the_embargo_day_or_later() -> None:
    ep, _ = _episodes(np.random.default_rng(4))
    test_day = TEST_DAY
    other = _perturbed(ep, EMBARGO_DAY, test_day)
    for fn in (evaluation.partition_rate, evaluation.time_of_day_rate, evaluation.overall_rate):
        a = fn(ep, [test_day], embargo_days=1)
        assert np.array_equal(a, fn(other, [test_day], embargo_days=1))
        assert not np.array_equal(fn(ep, [test_day], embargo_days=0), fn(other, [test_day], embargo_days=0))
    a = evaluation.boosted_forecast(ep, [test_day], embargo_days=1, min_rows=10)
    b = evaluation.boosted_forecast(other, [test_day], embargo_days=1, min_rows=10)
    assert np.array_equal(a, b)
    # the partition base rate is the kNN's prior mean over days 0–2: (B + 1) / (n + 2.5)
    train = ep.day < sessions.day_number(DAYS[3])
    breaks = int((ep.primary[train] == 0).sum())
    assert evaluation.partition_rate(ep, [test_day])[0] == pytest.approx((breaks + 1) / (train.sum() + 2.5))


def test_match_truth_picks_the_interaction_whose_approach_holds_the_anchor() -> None:
    import pyarrow as pa

    ep, _ = _episodes(np.random.default_rng(5))
    d = TEST_DAY
    rows = evaluation.test_rows(ep, d)
    t0 = int(ep.ts[rows[0]])
    s = 10**9
    truth = pa.table(
        {
            "date": pa.array([d, d, d], pa.date32()),
            "start_ts": [t0 - 60 * s, t0 + 200 * s, t0 - 60 * s],
            "arrival_ts": [t0 + 90 * s, t0 + 300 * s, t0 + 90 * s],
            "level_kind": ["PM_HIGH", "PM_HIGH", "OR_LOW"],
            "direction": ["UP", "UP", "UP"],
            "p_break": [0.7, 0.2, 0.9],
        }
    )
    got = evaluation.match_truth(ep, rows, truth, window_s=180)
    # row 0 (anchor t0) is inside the first approach; row 11 (t0 + 330 s) is after every arrival
    assert got[0] == 0.7
    assert got[3] == 0.7  # t0 + 90 s = the arrival itself
    assert math.isnan(got[4])  # t0 + 120 s: after the first arrival, before the second start
    assert got[7] == 0.2  # t0 + 210 s: inside the second approach
    assert math.isnan(got[11])

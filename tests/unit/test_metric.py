"""The learned similarity: metric fitting, exact search, Platt map, and no lookahead in the walk-forward."""

from __future__ import annotations

import numpy as np
import pytest

from spymaster.levels import LEVEL_KINDS
from spymaster.retrieval import metric
from spymaster.retrieval.walkforward import Rows, beta_interval, walk_forward

D = 12


def _rows(n_days: int = 24, per_day: int = 60, seed: int = 0) -> Rows:
    """Day-stamped rows whose BREAK odds depend on dims 0 and 1 only (2..11 are noise)."""
    rng = np.random.default_rng(seed)
    n = n_days * per_day
    raw = rng.normal(size=(n, D))
    p = 1 / (1 + np.exp(-(1.5 * raw[:, 0] - 1.0 * raw[:, 1])))
    u = rng.random(n)
    label = np.where(u < p, "BREAK", np.where(u < p + (1 - p) * 0.7, "REJECT", "CHOP"))
    return Rows(
        day=np.repeat(np.arange(20_000, 20_000 + n_days), per_day).astype(np.int64),
        ts=np.arange(n, dtype=np.int64),
        kind=np.asarray(rng.choice(LEVEL_KINDS, n), dtype=np.str_),
        direction=np.asarray(rng.choice(["UP", "DOWN"], n), dtype=np.str_),
        reason=np.full(n, "APPROACH"),
        label=np.asarray(label, dtype=np.str_),
        raw=raw,
        episode_id=np.asarray([f"e{i}" for i in range(n)], dtype=np.str_),
    )


def test_diag_metric_weighs_the_informative_dimensions() -> None:
    r = _rows()
    m = metric.fit(r.raw, r.kind, r.direction, r.label, method="diag")
    w = m.transform[:D]
    assert w[0] > 3 * np.max(w[2:])
    assert w[1] > 3 * np.max(w[2:])
    proj = metric.fit(r.raw, r.kind, r.direction, r.label, method="proj")
    assert proj.transform.shape == (D + len(LEVEL_KINDS) + 1, 3)


def test_search_is_exact_and_nearest_first() -> None:
    rng = np.random.default_rng(1)
    m = metric.SetupModel("diag", np.zeros(3), np.ones(3), np.ones(3), k=5, prior=0.4)
    z_tr, z_q = rng.normal(size=(200, 3)), rng.normal(size=(7, 3))
    y = rng.random(200) < 0.5
    ans = m.search(z_tr, y, z_q)
    brute = np.argsort(((z_q[:, None, :] - z_tr[None]) ** 2).sum(-1), axis=1)[:, :5]
    np.testing.assert_array_equal(ans.neighbours, brute)
    assert np.all(np.diff(ans.distance, axis=1) >= 0)
    expect = (y[brute].sum(1) + metric.PRIOR_STRENGTH * 0.4) / (5 + metric.PRIOR_STRENGTH)
    np.testing.assert_allclose(ans.p_raw, expect)


def test_gaussian_kernel_weighs_nearer_neighbours_more() -> None:
    # Given one query and training rows at distances 1, 2, 3, 4 (the k-th sets the bandwidth)
    z_tr = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, -4.0], [9.0, 9.0]])
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    m = metric.SetupModel("diag", np.zeros(2), np.ones(2), np.ones(2), k=4, prior=0.3, kernel="gaussian")
    ans = m.search(z_tr, y, np.zeros((1, 2)))
    # Then weight_i = exp(−(d_i / d_4)²) and p_raw = (4 · Σw·y / Σw + 2 · prior) / (4 + 2)
    w = np.exp(-((np.array([1.0, 2.0, 3.0, 4.0]) / 4.0) ** 2))
    assert ans.weight is not None
    np.testing.assert_allclose(ans.weight[0], w, rtol=1e-12)
    share = (w[0] + w[2]) / w.sum()
    assert ans.p_raw[0] == pytest.approx((4 * share + 2 * 0.3) / 6, rel=1e-12)
    # uniform: every neighbour counts 1 (the same rows, 2 of 4 BREAK)
    uni = metric.SetupModel("diag", np.zeros(2), np.ones(2), np.ones(2), k=4, prior=0.3)
    u = uni.search(z_tr, y, np.zeros((1, 2)))
    assert u.weight is None
    assert u.p_raw[0] == pytest.approx((2 + 0.6) / 6)
    assert share > 0.5  # the nearer BREAK outweighs the farther REJECT
    # the kernel is part of the model (its JSON and so its version)
    assert metric.SetupModel.from_json(m.to_json()).kernel == "gaussian"
    assert m.version != uni.version
    with pytest.raises(ValueError, match="kernel"):
        metric.kernel_weights(ans.distance, "box")


def test_platt_is_identity_on_few_rows_and_fixes_overconfidence() -> None:
    assert metric.Platt.fit([0.2, 0.8], [0, 1]) == metric.Platt(n=2)
    rng = np.random.default_rng(2)
    true = rng.uniform(0.3, 0.7, 5000)
    y = rng.random(5000) < true
    stretched = 1 / (1 + np.exp(-3 * np.log(true / (1 - true))))  # 3× overconfident
    pl = metric.Platt.fit(stretched, y)
    assert pl.a == pytest.approx(1 / 3, abs=0.08)
    assert np.abs(pl(stretched) - true).mean() < 0.02


def test_model_json_round_trip_keeps_the_version() -> None:
    r = _rows(n_days=4)
    m = metric.fit(r.raw, r.kind, r.direction, r.label, fitted_on=("2026-01-05",))
    back = metric.SetupModel.from_json(m.to_json())
    assert back.version == m.version
    # the JSON keeps 10 decimals: equal to an absolute 1e-9 in the embedded space
    np.testing.assert_allclose(
        back.embed(r.raw, r.kind, r.direction), m.embed(r.raw, r.kind, r.direction), rtol=1e-7, atol=1e-9
    )


def test_beta_interval_is_central_and_narrows_with_evidence() -> None:
    lo, hi = beta_interval([0.3, 0.3], [2.5, 100.0])
    assert lo[0] < lo[1] < 0.3 < hi[1] < hi[0]


def test_walk_forward_never_sees_the_cutoff_day_or_later() -> None:
    # Given rows over 24 days and a test day T with its cutoff one day earlier
    r = _rows()
    days = sorted(set(r.day.tolist()))
    t = days[15]
    every = np.ones(r.day.size, bool)

    def cut(d: int) -> int:
        return d - 1

    kw = {"train_filter": every, "test_filter": every, "methods": ("diag",), "platt_min_days": 3}
    base = walk_forward(r, days[8:16], cut, **kw)  # type: ignore[arg-type]
    # When the labels of the cutoff day and everything later, and the vectors of days after T, change
    rng = np.random.default_rng(9)
    future = r.day >= cut(t)
    altered = Rows(**{**r.__dict__})
    altered.label = np.where(future, rng.choice(["BREAK", "REJECT", "CHOP"], r.day.size), r.label)
    altered.raw = np.where((r.day > t)[:, None], rng.normal(size=r.raw.shape), r.raw)
    alt = walk_forward(altered, days[8:16], cut, **kw)  # type: ignore[arg-type]
    assert base.models[t].platt.n > 0  # the Platt map was fitted (and so is covered)
    # Then T's model (scaling, metric, Platt map, evidence) and T's forecasts are bit-identical
    assert alt.models[t].version == base.models[t].version
    sel = r.day[base.rows] == t
    np.testing.assert_array_equal(alt.p["knn_diag"][r.day[alt.rows] == t], base.p["knn_diag"][sel])
    # and a planted leak (a cutoff after T) is caught by the same comparison
    leak = walk_forward(r, days[8:16], lambda d: d + 1, **kw)  # type: ignore[arg-type]
    leak_alt = walk_forward(altered, days[8:16], lambda d: d + 1, **kw)  # type: ignore[arg-type]
    assert leak.models[t].version != leak_alt.models[t].version


def test_platt_map_waits_for_enough_days_of_answers() -> None:
    r = _rows(n_days=24, per_day=120)
    days = sorted(set(r.day.tolist()))
    every = np.ones(r.day.size, bool)
    f = walk_forward(
        r,
        days[6:],
        lambda d: d,
        train_filter=every,
        test_filter=every,
        methods=("diag",),
        platt_min_days=5,
        baselines=False,
    )
    fitted = [d for d in days[6:] if f.models[d].platt.n > 0]
    # the map is the identity for the first 5 test days (≥ 200 answers after two), then fitted
    assert fitted == days[11:]
    assert all(f.models[d].platt == metric.Platt() for d in days[6:11])


def test_null_knn_with_shuffled_labels_has_no_skill() -> None:
    r = _rows(n_days=30)
    days = sorted(set(r.day.tolist()))
    every = np.ones(r.day.size, bool)
    f = walk_forward(
        r,
        days[10:],
        lambda d: d,
        train_filter=every,
        test_filter=every,
        methods=("diag",),
        baselines=False,
        shuffle_seed=1,
    )
    good = walk_forward(
        r, days[10:], lambda d: d, train_filter=every, test_filter=every, methods=("diag",), baselines=False
    )
    y = (r.label[f.rows] == "BREAK").astype(float)

    def skill(p: np.ndarray) -> float:
        return 1 - np.mean((p - y) ** 2) / np.mean((f.p["base"] - y) ** 2)

    assert abs(skill(f.p["knn_diag"])) < 0.02
    assert skill(good.p["knn_diag"]) > 0.1

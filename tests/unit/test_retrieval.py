"""The query engine against hand-computed values: similarity, as-of cut, per-day cap, the kernel,
the Dirichlet posterior, its interval, excursions, and the empty-history answer; the served
estimator's pooled prior (as-of safe) and interval cap, and no degenerate answer from a one-label
history."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import beta

from spymaster import outcomes, retrieval
from spymaster.outcomes import HORIZONS_MIN, OUTCOMES
from spymaster.retrieval import Index, Params, Partition, calibration
from spymaster.settings import SERVED

B, R, C = 0, 1, 2
H = len(HORIZONS_MIN)
I8 = HORIZONS_MIN.index(8)


def part(
    vectors: list[list[float]],
    days: list[int],
    labels: list[int],
    *,
    mfe: list[float] | None = None,
    mae: list[float] | None = None,
    labels_by_h: list[list[int]] | None = None,
) -> Partition:
    n = len(days)
    lab = np.array(labels_by_h if labels_by_h is not None else [labels] * H, dtype=np.int8)
    return Partition.build(
        "PM_HIGH|UP|2",
        "PM_HIGH",
        "UP",
        2,
        vectors=np.array(vectors, dtype=np.float32),
        day=days,
        ts=np.arange(n) * 30,
        episode_id=[f"e{i:02d}" for i in range(n)],
        labels=lab,
        mfe=np.array([mfe or [0.0] * n] * H),
        mae=np.array([mae or [0.0] * n] * H),
    )


def test_label_codes() -> None:
    assert outcomes.label_codes(["BREAK", "REJECT", "CHOP", None, "x"]).tolist() == [0, 1, 2, -1, -1]


def test_weighted_cosine_by_hand() -> None:
    unit = retrieval.unit_rows(np.array([[1, 1, 0], [0, 0, 2], [0, 0, 0]], dtype=np.float32))
    q = np.array([1, 0, 1], dtype=np.float32)
    # unweighted: cos((1,0,1), (1,1,0)) = 1/2; cos((1,0,1), (0,0,1)) = 1/√2; a zero row → 0
    np.testing.assert_allclose(
        retrieval.weighted_similarity(unit, q), [0.5, 1 / math.sqrt(2), 0.0], atol=1e-6
    )
    # g = (1, 0, 1): Σ g x y = 1, ‖x‖_g = √2, ‖y‖_g = 1/√2 (unit row (1,1,0)/√2) → (1/√2)/(√2 · 1/√2) = 1/√2
    g = np.array([1, 0, 1], dtype=np.float32)
    np.testing.assert_allclose(
        retrieval.weighted_similarity(unit, q, g), [1 / math.sqrt(2), 1 / math.sqrt(2), 0.0], atol=1e-6
    )
    # scaling a group's weight changes the answer; a zero query gives 0 everywhere
    g2 = np.array([4, 1, 1], dtype=np.float32)
    # Σ g x y = 4/√2, ‖x‖_g = √5, ‖y‖_g = √((4 + 1)/2) → (4/√2) / (√5 · √2.5) = 4/(√2·√12.5) = 0.8
    assert retrieval.weighted_similarity(unit[:1], q, g2)[0] == pytest.approx(0.8, abs=1e-6)
    assert retrieval.weighted_similarity(unit, np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_as_of_cut_excludes_the_query_date_and_later() -> None:
    # identical vectors on days 10, 11, 12: only day 10 is strictly before as_of = 11
    p = part([[1, 0, 0]] * 6, [10, 10, 11, 11, 12, 12], [B, R, B, B, B, B])
    hits = retrieval.search(p, [1, 0, 0], as_of_day=11, k=50, max_per_day=50)
    assert p.day[hits.rows].tolist() == [10, 10]
    assert hits.candidates == 2
    # as_of on the first day: nothing
    assert retrieval.search(p, [1, 0, 0], as_of_day=10, k=50, max_per_day=50).rows.size == 0
    # the most similar rows are the later ones: still never returned
    q = part([[0, 1, 0], [1, 0, 0], [1, 0, 0]], [1, 5, 6], [B, B, B])
    hits = retrieval.search(q, [1, 0, 0], as_of_day=5, k=3, max_per_day=2)
    assert q.day[hits.rows].tolist() == [1]
    assert hits.similarity.tolist() == [0.0]


def test_per_day_cap_is_greedy_by_similarity() -> None:
    # day 1 holds the four best rows, day 2 a weaker one, day 3 the weakest
    vecs = [[1, 0.0, 0], [1, 0.1, 0], [1, 0.2, 0], [1, 0.3, 0], [1, 1.0, 0], [0.1, 1, 0]]
    p = part(vecs, [1, 1, 1, 1, 2, 3], [B] * 6)
    hits = retrieval.search(p, [1, 0, 0], as_of_day=9, k=3, max_per_day=2)
    assert p.episode_id[hits.rows].tolist() == ["e00", "e01", "e04"]
    assert np.all(np.diff(hits.similarity) <= 0)
    hits = retrieval.search(p, [1, 0, 0], as_of_day=9, k=3, max_per_day=1)
    assert p.episode_id[hits.rows].tolist() == ["e00", "e04", "e05"]
    # fewer rows than k: all of them, capped
    hits = retrieval.search(p, [1, 0, 0], as_of_day=9, k=50, max_per_day=2)
    assert p.episode_id[hits.rows].tolist() == ["e00", "e01", "e04", "e05"]


def _reference(p: Partition, q: np.ndarray, as_of: int, k: int, cap: int, h: int) -> list[int]:
    """Brute force: every labelled row before as_of, sorted by (−sim, row), greedy cap."""
    sims = retrieval.weighted_similarity(p.unit, q)
    rows = [i for i in range(p.n) if p.day[i] < as_of and p.labels[h, i] >= 0]
    rows.sort(key=lambda i: (-sims[i], i))
    seen: dict[int, int] = {}
    out = []
    for i in rows:
        if seen.get(int(p.day[i]), 0) < cap:
            out.append(i)
            seen[int(p.day[i])] = seen.get(int(p.day[i]), 0) + 1
        if len(out) == k:
            break
    return out


@pytest.mark.parametrize("seed", range(6))
def test_search_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    days = np.sort(rng.integers(0, 30, n))
    vecs = rng.standard_normal((n, 8)).astype(np.float32)
    vecs[rng.random(n) < 0.1] = vecs[0]  # exact ties
    labels = rng.integers(-1, 3, (H, n))
    p = Partition.build(
        "k",
        "PM_LOW",
        "DOWN",
        0,
        vectors=vecs,
        day=days,
        ts=np.zeros(n),
        episode_id=[f"{i:04d}" for i in range(n)],
        labels=labels,
        mfe=np.zeros((H, n)),
        mae=np.zeros((H, n)),
    )
    for _ in range(10):
        q = rng.standard_normal(8).astype(np.float32)
        as_of, k, cap, h = int(rng.integers(0, 32)), int(rng.integers(1, 80)), int(rng.integers(1, 4)), 2
        hits = retrieval.search(p, q, as_of_day=as_of, k=k, max_per_day=cap, horizon=HORIZONS_MIN[h])
        assert hits.rows.tolist() == _reference(p, q, as_of, k, cap, h)


def test_distribution_by_hand() -> None:
    s3 = math.sqrt(3)
    p = part(
        [[1, 0, 0], [1, s3, 0], [0, 1, 0], [1, 0, 0]],
        [0, 0, 60, 120],
        [B, R, C, B],
        mfe=[1.0, 0.2, 0.3, 9.0],
        mae=[0.5, 1.0, 0.3, 9.0],
    )
    ans = retrieval.query(p, [1, 0, 0], as_of_day=120, k=50, max_per_day=2)
    # neighbours: sims 1, 0.5, 0 (the day-120 twin of the query is the as_of date: excluded)
    assert [n.episode_id for n in ans.neighbours] == ["e00", "e01", "e02"]
    np.testing.assert_allclose([n.similarity for n in ans.neighbours], [1.0, 0.5, 0.0], atol=1e-6)
    # w = sim⁴ · exp(−age/60): ages 120, 120, 60
    e2 = math.exp(-2.0)
    w = [e2, 0.0625 * e2, 0.0]
    np.testing.assert_allclose([n.weight for n in ans.neighbours], w, rtol=1e-5)
    d = ans.distribution
    np.testing.assert_allclose(d.counts, [e2, 0.0625 * e2, 0.0], rtol=1e-5)
    # base counts before day 120: one of each → π = (1+1, 1+1, 1+0.5) / (3 + 2.5)
    assert d.base_rate == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert d.base_n == 3
    alpha = [2.5 * 2 / 5.5, 2.5 * 2 / 5.5, 2.5 * 1.5 / 5.5]
    assert d.prior == pytest.approx(alpha)
    sw = 1.0625 * e2
    p_hand = [(e2 + alpha[0]) / (sw + 2.5), (0.0625 * e2 + alpha[1]) / (sw + 2.5), alpha[2] / (sw + 2.5)]
    assert d.p == pytest.approx(p_hand, rel=1e-6)
    assert sum(d.p) == pytest.approx(1.0)
    n_eff = 1.0625**2 / (1 + 0.0625**2)
    assert d.n_eff == pytest.approx(n_eff, rel=1e-6)
    assert d.n == 3
    big_n = n_eff + 2.5
    for pk, (lo, hi) in zip(p_hand, d.interval, strict=True):
        assert lo == pytest.approx(beta.ppf(0.1, pk * big_n, (1 - pk) * big_n), rel=1e-6)
        assert hi == pytest.approx(beta.ppf(0.9, pk * big_n, (1 - pk) * big_n), rel=1e-6)
        assert lo < pk < hi
    # excursions: weighted by w (the sim-0 row has weight 0)
    assert d.expected_mfe == pytest.approx((1.0 + 0.0625 * 0.2) / 1.0625, rel=1e-6)
    assert d.expected_mae == pytest.approx((0.5 + 0.0625 * 1.0) / 1.0625, rel=1e-6)


def test_kernel_parameters_are_parameters() -> None:
    p = part([[1, 0, 0], [1, 1, 0]], [0, 30], [B, R])
    params = Params(similarity_power=1.0, decay_days=30.0, prior_strength=1.0)
    ans = retrieval.query(p, [1, 0, 0], as_of_day=60, params=params)
    w = [math.exp(-2.0), math.sqrt(0.5) * math.exp(-1.0)]
    np.testing.assert_allclose([n.weight for n in ans.neighbours], w, rtol=1e-5)
    assert sum(ans.distribution.prior) == pytest.approx(1.0)


def test_no_earlier_rows_gives_the_published_prior() -> None:
    p = part([[1, 0, 0]], [5], [B])
    for as_of in (5, 3):
        d = retrieval.query(p, [1, 0, 0], as_of_day=as_of).distribution
        assert d.n == 0
        assert d.n_eff == 0.0
        assert d.base_n == 0
        assert d.prior == pytest.approx((1.0, 1.0, 0.5))
        assert d.p == pytest.approx((0.4, 0.4, 0.2))
        assert d.base_rate == pytest.approx((0.4, 0.4, 0.2))
        assert d.expected_mfe is None
        for pk, (lo, hi) in zip(d.p, d.interval, strict=True):
            assert lo == pytest.approx(beta.ppf(0.1, pk * 2.5, (1 - pk) * 2.5))
            assert lo < pk < hi
    empty = Partition.build(
        "x",
        "PM_HIGH",
        "UP",
        0,
        vectors=np.zeros((0, 3), np.float32),
        day=[],
        ts=[],
        episode_id=[],
        labels=np.zeros((H, 0)),
        mfe=np.zeros((H, 0)),
        mae=np.zeros((H, 0)),
    )
    assert retrieval.query(empty, [1, 0, 0], as_of_day=1).distribution.p == pytest.approx((0.4, 0.4, 0.2))


def test_unlabelled_rows_are_skipped_per_horizon() -> None:
    by_h = [[B, R, C], [B, R, C], [-1, R, C], [-1, -1, C]]  # 2, 4, 8, 20 minutes
    p = part([[1, 0, 0], [1, 1, 0], [0, 1, 0]], [0, 1, 2], [], labels_by_h=by_h)
    for h, n in zip(HORIZONS_MIN, (3, 3, 2, 1), strict=True):
        ans = retrieval.query(p, [1, 0, 0], as_of_day=10, horizon=h)
        assert ans.distribution.n == n
        assert ans.distribution.base_n == n
        assert all(nb.outcome in OUTCOMES for nb in ans.neighbours)
    assert [nb.outcome for nb in retrieval.query(p, [1, 0, 0], as_of_day=10, horizon=8).neighbours] == [
        "REJECT",
        "CHOP",
    ]
    with pytest.raises(ValueError, match="horizon"):
        retrieval.query(p, [1, 0, 0], as_of_day=10, horizon=3)


def test_negative_similarity_has_no_weight_and_ties_prefer_older_rows() -> None:
    p = part([[-1, 0, 0], [1, 0, 0], [1, 0, 0]], [0, 1, 2], [B, R, C])
    ans = retrieval.query(p, [1, 0, 0], as_of_day=5, k=3)
    assert [n.episode_id for n in ans.neighbours] == ["e01", "e02", "e00"]
    assert ans.neighbours[-1].similarity == pytest.approx(-1.0)
    assert ans.neighbours[-1].weight == 0.0


def test_zero_weight_answers_with_the_prior() -> None:
    # every neighbour orthogonal to the query: Σw = 0 → p = the prior split, n_eff 0, plain excursion mean
    p = part([[0, 1, 0], [0, 0, 1]], [0, 1], [B, R], mfe=[1.0, 3.0])
    d = retrieval.query(p, [1, 0, 0], as_of_day=5).distribution
    assert d.n == 2
    assert d.n_eff == 0.0
    assert d.p == pytest.approx(retrieval.prior_mean([1, 1, 0]).tolist())
    assert d.expected_mfe == pytest.approx(2.0)


def test_beta_interval_edges() -> None:
    out = retrieval.beta_interval([0.0, 1.0, 0.5], 4.0)
    assert out[0].tolist() == [0.0, 0.0]
    assert out[1].tolist() == [1.0, 1.0]
    assert out[2].tolist() == pytest.approx([beta.ppf(0.1, 2, 2), beta.ppf(0.9, 2, 2)])


def test_ema_and_resets() -> None:
    np.testing.assert_allclose(retrieval.ema([1.0, 0.0, 0.0], 0.5), [1.0, 0.5, 0.25])
    np.testing.assert_allclose(
        retrieval.ema([1.0, 0.0, 0.0], 0.5, reset=[False, False, True]), [1.0, 0.5, 0.0]
    )
    two = retrieval.ema(np.array([[1.0, 0.0], [0.0, 1.0]]), 0.25)
    np.testing.assert_allclose(two, [[1.0, 0.0], [0.75, 0.25]])


def test_index_groups_partitions_and_locates_episodes() -> None:
    n = 6
    idx = Index.build(
        7,
        episode_id=["f", "a", "e", "b", "d", "c"],
        day=[3, 1, 2, 1, 2, 1],
        ts=[0, 0, 0, 5, 0, 9],
        level_kind=["PM_HIGH", "PM_HIGH", "OR_LOW", "PM_HIGH", "OR_LOW", "PM_HIGH"],
        direction=["UP", "UP", "DOWN", "UP", "DOWN", "DOWN"],
        time_bucket=[0, 0, 4, 0, 4, 0],
        vectors=np.eye(n, 4, dtype=np.float32) + 0.1,
        labels=np.zeros((H, n)),
        mfe=np.zeros((H, n)),
        mae=np.zeros((H, n)),
    )
    assert idx.version == 7
    assert idx.episodes == n
    assert set(idx.partitions) == {"OR_LOW|DOWN|4", "PM_HIGH|DOWN|0", "PM_HIGH|UP|0"}
    up = idx.partitions["PM_HIGH|UP|0"]
    assert up.episode_id.tolist() == ["a", "b", "f"]  # by (day, ts, id)
    assert up.day.tolist() == [1, 1, 3]
    np.testing.assert_allclose(np.linalg.norm(up.unit, axis=1), 1.0, rtol=1e-6)
    for eid in "abcdef":
        hit = idx.locate(eid)
        assert hit is not None
        assert hit[0].episode_id[hit[1]] == eid
    assert idx.locate("zz") is None
    assert idx.locate("") is None
    assert idx.day_counts == {1: 3, 2: 2, 3: 1}
    assert Index.empty().locate("a") is None


def test_weighted_norms_are_cached_and_consistent() -> None:
    rng = np.random.default_rng(1)
    p = part(rng.standard_normal((20, 3)).tolist(), list(range(20)), [B] * 20)
    g = np.array([2.0, 0.0, 1.0], dtype=np.float32)
    a = p.weighted_norms(g)
    assert p.weighted_norms(g) is a
    hits = retrieval.search(p, [1, 2, 3], as_of_day=99, k=5, max_per_day=1, dim_weights=g)
    ref = retrieval.weighted_similarity(p.unit, [1, 2, 3], g)
    assert hits.similarity.tolist() == pytest.approx(np.sort(ref)[::-1][:5].tolist(), abs=1e-6)


# -- the served estimator: pooled prior, interval cap, no degenerate answers --------------------------


def _two_partitions(later: list[int] | None = None) -> Index:
    """PM_HIGH|UP|0 and OR_LOW|DOWN|4 over days 1–5; ``later`` relabels every row dated ≥ 3."""
    kinds = ["PM_HIGH", "PM_HIGH", "PM_HIGH", "PM_HIGH", "OR_LOW", "OR_LOW", "OR_LOW", "OR_LOW", "OR_LOW"]
    dirs = ["UP"] * 4 + ["DOWN"] * 5
    buckets = [0] * 4 + [4] * 5
    day = [1, 2, 3, 4, 1, 1, 2, 3, 5]
    lab = [B, R, B, C, R, R, C, B, B]
    if later is not None:
        lab = [later[i % len(later)] if d >= 3 else x for i, (x, d) in enumerate(zip(lab, day, strict=True))]
    by_h = np.array([lab] * H, dtype=np.int8)
    by_h[I8, 6] = -1  # OR_LOW's day-2 CHOP has no 8-minute label
    vecs = np.array(
        [[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 1, 1], [1, 0, 0], [1, 0, 0]]
    )
    return Index.build(
        1,
        episode_id=[f"e{i}" for i in range(len(day))],
        day=day,
        ts=np.zeros(len(day)),
        level_kind=kinds,
        direction=dirs,
        time_bucket=buckets,
        vectors=vecs.astype(np.float32),
        labels=by_h,
        mfe=np.zeros((H, len(day))),
        mae=np.zeros((H, len(day))),
    )


def test_index_pooled_counts_by_hand() -> None:
    idx = _two_partitions()
    # day 1: B (PM_HIGH), R R (OR_LOW); day 2: R (PM_HIGH), C (OR_LOW, null at 8 minutes);
    # day 3: B, B; day 4: C; day 5: B — each as_of counts the days strictly before it
    assert idx.pooled_counts(1).tolist() == [0, 0, 0]
    assert idx.pooled_counts(2).tolist() == [1, 2, 0]
    assert idx.pooled_counts(3).tolist() == [1, 3, 0]
    assert idx.pooled_counts(3, horizon=2).tolist() == [1, 3, 1]
    assert idx.pooled_counts(4).tolist() == [3, 3, 0]
    assert idx.pooled_counts(5).tolist() == [3, 3, 1]
    assert idx.pooled_counts(6).tolist() == idx.pooled_counts(99).tolist() == [4, 3, 1]
    assert idx.pooled_counts(0).tolist() == [0, 0, 0]
    assert Index.empty().pooled_counts(10).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="horizon"):
        idx.pooled_counts(3, horizon=3)


def test_pooled_params_by_hand() -> None:
    params = Params(pooled_prior=100.0)
    # s = (P + d⁰) / (ΣP + Σd⁰) with d⁰ = (1, 1, 0.5): (30+1, 50+1, 20+0.5) / 102.5
    got = retrieval.pooled_params(params, [30, 50, 20])
    assert got.default_prior == pytest.approx((100 * 31 / 102.5, 100 * 51 / 102.5, 100 * 20.5 / 102.5))
    assert got.pooled_prior == 0.0  # applied once
    # no pooled rows: the published split, scaled to the pooled strength → prior mean still 0.4/0.4/0.2
    assert retrieval.pooled_params(params, [0, 0, 0]).default_prior == pytest.approx((40.0, 40.0, 20.0))
    # off (m = 0) or no counts given: unchanged
    assert retrieval.pooled_params(Params(), [30, 50, 20]) == Params()
    assert retrieval.pooled_params(params, None) is params
    with pytest.raises(ValueError, match="pooled counts"):
        retrieval.pooled_params(params, [1, 2])
    with pytest.raises(ValueError, match="pooled counts"):
        retrieval.pooled_params(params, [1, -2, 3])
    for bad in (-1.0, math.inf):
        with pytest.raises(ValueError, match="pooled prior"):
            Params(pooled_prior=bad)
    with pytest.raises(ValueError, match="interval_max_total"):
        Params(interval_max_total=0.0)


def test_pooled_prior_distribution_by_hand() -> None:
    idx = _two_partitions()
    part_a = idx.partitions["PM_HIGH|UP|0"]
    params = Params(pooled_prior=10.0, interval_max_total=3.0)
    pooled = idx.pooled_counts(3)  # (1, 3, 0), see above
    d = retrieval.query(
        part_a, [1, 0, 0], as_of_day=3, k=50, max_per_day=2, params=params, pooled_counts=pooled
    ).distribution
    # pooled split s = (1+1, 3+1, 0+0.5) / (4 + 2.5); d = 10·s
    s = np.array([2.0, 4.0, 0.5]) / 6.5
    # the partition's rows before day 3: BREAK (day 1), REJECT (day 2) → π = (B + 10·s) / (2 + 10)
    pi = (np.array([1.0, 1.0, 0.0]) + 10 * s) / 12.0
    assert d.base_n == 2
    assert d.base_rate == pytest.approx((0.5, 0.5, 0.0))
    assert d.prior == pytest.approx(tuple(2.5 * pi))
    # neighbours: day 1 (sim 1, age 2 → w = e^(−2/60)), day 2 (sim 0 → w = 0)
    w1 = math.exp(-2 / 60)
    p = (np.array([w1, 0.0, 0.0]) + 2.5 * pi) / (w1 + 2.5)
    assert d.p == pytest.approx(tuple(p), rel=1e-6)
    assert d.n_eff == pytest.approx(1.0)
    # interval: Beta total min(n_eff + 2.5, 3) = 3
    for pk, (lo, hi) in zip(p, d.interval, strict=True):
        assert lo == pytest.approx(beta.ppf(0.1, 3 * pk, 3 * (1 - pk)), rel=1e-6)
        assert hi == pytest.approx(beta.ppf(0.9, 3 * pk, 3 * (1 - pk)), rel=1e-6)
    # without pooled counts (or with the published Params) the prior is the partition rate shrunk
    # toward 1/1/0.5, as before
    plain = retrieval.query(part_a, [1, 0, 0], as_of_day=3, params=Params()).distribution
    assert plain.prior == pytest.approx(tuple(2.5 * np.array([2.0, 2.0, 0.5]) / 4.5))


def test_pooled_prior_ignores_rows_on_and_after_as_of() -> None:
    base = _two_partitions()
    for later in ([C], [R, C], [B, B, R]):
        changed = _two_partitions(later=later)
        assert changed.pooled_counts(3).tolist() == base.pooled_counts(3).tolist()
        for key in base.partitions:
            for params in (calibration.SERVED_PARAMS, Params(pooled_prior=10.0)):
                got = [
                    retrieval.query(
                        idx.partitions[key],
                        [1, 0, 0],
                        as_of_day=3,
                        params=params,
                        pooled_counts=idx.pooled_counts(3),
                    ).distribution
                    for idx in (base, changed)
                ]
                assert got[0] == got[1]
        # and the same change before as_of does move the prior
        assert changed.pooled_counts(4).tolist() != base.pooled_counts(4).tolist()


def test_interval_cap_by_hand() -> None:
    s3 = math.sqrt(3)
    p = part([[1, 0, 0], [1, s3, 0], [0, 1, 0]], [0, 0, 60], [B, R, C])
    n_eff = 1.0625**2 / (1 + 0.0625**2)  # ≈ 1.125: weights e⁻², e⁻²/16, 0 (see test_distribution_by_hand)
    for cap, total in ((None, n_eff + 2.5), (10.0, n_eff + 2.5), (3.0, 3.0), (2.5, 2.5), (1.0, 1.0)):
        params = Params(interval_max_total=cap)
        assert params.interval_total(n_eff) == pytest.approx(total)
        d = retrieval.query(p, [1, 0, 0], as_of_day=120, params=params).distribution
        assert d.n_eff == pytest.approx(n_eff, rel=1e-6)
        for pk, (lo, hi) in zip(d.p, d.interval, strict=True):
            assert lo == pytest.approx(beta.ppf(0.1, pk * total, (1 - pk) * total), rel=1e-6)
            assert hi == pytest.approx(beta.ppf(0.9, pk * total, (1 - pk) * total), rel=1e-6)
        # the cap widens, never moves the mean
        assert d.p == pytest.approx(retrieval.query(p, [1, 0, 0], as_of_day=120).distribution.p)
    # the served cap equals the prior strength: N = 2.5 whatever n_eff is
    served = calibration.SERVED_PARAMS
    assert served.interval_total(0.0) == served.interval_total(40.0) == 2.5


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10])
def test_one_label_history_never_gives_certainty(n: int) -> None:
    # A partition whose n earlier rows are all BREAK, every one a perfect neighbour; pooled counts
    # from none to one-label to a realistic split: P(BREAK) stays below 1 with a real interval, and
    # no outcome gets probability 0.
    p = part([[1, 0, 0]] * n, list(range(n)), [B] * n)
    pooled_cases: list[list[int] | None] = [
        None,
        [0, 0, 0],
        [3, 0, 0],
        [n, 0, 0],
        [0, 0, 7],
        [2600, 5000, 2400],
    ]
    settings = [
        calibration.SERVED_PARAMS,
        calibration.PUBLISHED_PARAMS,
        replace(calibration.SERVED_PARAMS, interval_max_total=None),
    ]
    for params in settings:
        for pooled in pooled_cases:
            d = retrieval.query(
                p, [1, 0, 0], as_of_day=n, k=50, max_per_day=50, params=params, pooled_counts=pooled
            ).distribution
            why = (params, pooled, d.p, d.interval)
            assert d.n == n
            assert d.counts[B] > 0
            assert d.counts[R] == d.counts[C] == 0
            assert all(a > 0 for a in d.prior), why
            assert all(0 < x < 1 for x in d.p), why
            lo_b, hi_b = d.interval[B]
            assert lo_b < d.p[B] < hi_b, why
            assert d.p[B] < 0.99, why
            for lo, hi in d.interval:
                assert 0 <= lo < hi <= 1, why
                assert hi - lo > 1e-3, why
            if params.pooled_prior and pooled is not None and min(pooled) > 0:
                # served, with a pooled history that saw every outcome: the outcomes this partition
                # never saw keep a plausible share
                assert min(d.p) > 0.02, why


def test_served_params_are_the_evaluations_recommendation() -> None:
    from spymaster.evaluation import KnnConfig

    served = calibration.SERVED_PARAMS
    assert replace(served, pooled_prior=0.0, interval_max_total=None) == calibration.RECOMMENDED_PARAMS
    assert served.pooled_prior == SERVED.pooled_prior == 100.0
    assert served.interval_max_total == SERVED.interval_max_total == 2.5
    assert dict(SERVED.weights) == {"dealer": 0.0}
    assert (SERVED.k, SERVED.max_per_day) == (50, 2)
    # The evaluation's setting (KnnConfig with the same constants) shrinks toward the raw pooled
    # split; the served one shrinks that split toward 1/1/0.5 with Σd⁰ = 2.5 pseudo-counts: the same
    # prior to within 100 · 2.5 / ΣP pseudo-counts (< 0.25 for the ≥ 1 000 rows of any evaluation).
    cfg = KnnConfig.of(
        "served",
        params=calibration.RECOMMENDED_PARAMS,
        weights=SERVED.weights,
        pooled_prior=SERVED.pooled_prior,
    )
    for counts in ([260, 500, 240], [2600, 5000, 2400], [7, 1, 2]):
        theirs = np.array(cfg.params_for(counts).default_prior)
        ours = np.array(retrieval.pooled_params(served, counts).default_prior)
        assert np.abs(theirs - ours).max() <= 100 * 2.5 / sum(counts) + 1e-12
        assert ours.sum() == pytest.approx(theirs.sum()) == pytest.approx(100.0)
    # and the evaluation's served interval (calibration.intervals with the cap) is the API's
    pk = np.array([0.27, 0.5, 0.23])
    np.testing.assert_allclose(
        calibration.intervals(pk, np.full(3, 7.3), served.interval, SERVED.interval_max_total),
        retrieval.beta_interval(pk, served.interval_total(7.3 - served.prior_strength), served.interval),
    )


@pytest.mark.parametrize("seed", range(4))
def test_rank_of_every_candidate_equals_exact_search(seed: int) -> None:
    """The ANN path's re-ranking (``rank``) given every row, in any order, with later rows and
    duplicates among the candidates, is exactly the in-memory search."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 300))
    vecs = rng.standard_normal((n, 8)).astype(np.float32)
    p = Partition.build(
        "k",
        "PM_LOW",
        "DOWN",
        0,
        vectors=vecs,
        day=np.sort(rng.integers(0, 30, n)),
        ts=np.zeros(n),
        episode_id=[f"{i:04d}" for i in range(n)],
        labels=rng.integers(-1, 3, (H, n)),
        mfe=np.zeros((H, n)),
        mae=np.zeros((H, n)),
    )
    g = rng.random(8).astype(np.float32)
    for _ in range(8):
        q = rng.standard_normal(8).astype(np.float32)
        as_of, k, cap = int(rng.integers(1, 32)), int(rng.integers(1, 60)), int(rng.integers(1, 4))
        cand = np.r_[rng.permutation(n), rng.integers(0, n, 10)]  # every row, some twice
        # candidates carry the stored (not unit) vectors, scaled arbitrarily
        stored = p.unit[cand] * rng.uniform(0.5, 3.0, (cand.size, 1)).astype(np.float32)
        for w in (None, g):
            want = retrieval.search(p, q, as_of_day=as_of, k=k, max_per_day=cap, horizon=8, dim_weights=w)
            got = retrieval.rank(
                p, cand, stored, q, as_of_day=as_of, k=k, max_per_day=cap, horizon=8, dim_weights=w
            )
            assert got.rows.tolist() == want.rows.tolist()
            np.testing.assert_allclose(got.similarity, want.similarity, atol=1e-5)
            assert got.candidates == want.candidates


def test_a_partition_above_ann_min_rows_keeps_no_vectors() -> None:
    rng = np.random.default_rng(0)
    n = 30
    kinds = ["PM_HIGH"] * 20 + ["PM_LOW"] * 10
    idx = Index.build(
        1,
        episode_id=[f"e{i:02d}" for i in range(n)],
        day=np.arange(n),
        ts=np.arange(n),
        level_kind=kinds,
        direction=["UP"] * n,
        time_bucket=np.zeros(n, np.int64),
        vectors=rng.standard_normal((n, 8)).astype(np.float32),
        labels=np.zeros((H, n), np.int8),
        mfe=np.zeros((H, n)),
        mae=np.zeros((H, n)),
        ann_min_rows=15,
    )
    big, small = idx.partitions["PM_HIGH|UP|0"], idx.partitions["PM_LOW|UP|0"]
    assert not big.in_memory
    assert big.unit.shape == (0, 8)
    assert big.n == 20
    assert small.in_memory
    assert small.unit.shape == (10, 8)
    with pytest.raises(ValueError, match="not in memory"):
        retrieval.search(big, np.ones(8), as_of_day=100, k=5, max_per_day=2)

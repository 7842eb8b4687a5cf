"""The query engine against hand-computed values: similarity, as-of cut, per-day cap, the kernel,
the Dirichlet posterior, its interval, excursions, and the empty-history answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta

from spymaster import retrieval
from spymaster.retrieval import HORIZONS, OUTCOMES, Index, Params, Partition

B, R, C = 0, 1, 2
H = len(HORIZONS)
I8 = retrieval.HORIZONS.index(8)


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
    assert retrieval.label_codes(["BREAK", "REJECT", "CHOP", None, "x"]).tolist() == [0, 1, 2, -1, -1]


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
        hits = retrieval.search(p, q, as_of_day=as_of, k=k, max_per_day=cap, horizon=HORIZONS[h])
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
    for h, n in zip(HORIZONS, (3, 3, 2, 1), strict=True):
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

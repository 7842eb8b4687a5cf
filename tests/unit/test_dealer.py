"""GEX: sign conventions, net exposure near levels, and walls on a hand-made chain."""

from __future__ import annotations

import numpy as np
import pytest

from spymaster.indicators.dealer import Walls, by_strike, gex, net_gex_near, walls

# Hand-made chain (F = 5000): strike, is_call, gamma, open interest
CHAIN = [
    (4950.0, False, 0.001, 3000),
    (4975.0, False, 0.002, 5000),  # biggest put exposure
    (4975.0, True, 0.002, 100),
    (5000.0, True, 0.003, 1000),
    (5000.0, False, 0.003, 1000),
    (5025.0, True, 0.002, 4000),  # biggest call exposure
    (5050.0, True, 0.001, 2000),
]
K, C, G, OI = (np.array(col) for col in zip(*CHAIN, strict=True))
F = 5000.0
UNIT = 50.0 * F * F * 0.01  # multiplier · F² · 1 % = 12 500 000 per unit of Γ·OI


def test_gex_sign_conventions() -> None:
    long_ = gex(G, OI, F, C)
    short = gex(G, OI, F, C, convention="dealer_short")
    # calls_long: +Γ·OI·50·F²·0.01 for calls, − for puts
    expected = G * OI * UNIT * np.where(C, 1.0, -1.0)
    np.testing.assert_allclose(long_, expected, rtol=1e-15)
    # first line: put, 0.001 · 3000 · 12.5e6 = 37.5e6 -> −37.5e6
    assert long_[0] == pytest.approx(-37_500_000.0)
    # dealer_short: −Γ·OI for everything
    np.testing.assert_allclose(short, -np.abs(expected), rtol=1e-15)
    assert (short < 0).all()
    np.testing.assert_allclose(gex(G, OI, F, C, multiplier=1.0), long_ / 50.0, rtol=1e-15)
    with pytest.raises(ValueError, match="convention"):
        gex(G, OI, F, C, convention="bogus")  # type: ignore[arg-type]


def test_net_gex_near() -> None:
    g = gex(G, OI, F, C) / UNIT  # in Γ·OI units for readable arithmetic
    # per-line: 4950P −3, 4975P −10, 4975C +0.2, 5000C +3, 5000P −3, 5025C +8, 5050C +2
    levels = np.array([5000.0, 5000.0, 4975.0, 5012.5, 6000.0, np.nan])
    width = np.array([0.0, 25.0, 10.0, 12.5, 25.0, 25.0])
    out = net_gex_near(K, g, levels, width)
    # 5000 ± 0:    +3 − 3 = 0
    # 5000 ± 25:   4975..5025 inclusive: −10 + 0.2 + 3 − 3 + 8 = −1.8
    # 4975 ± 10:   4975 only: −9.8
    # 5012.5 ± 12.5: 5000 and 5025 (edges inclusive): 0 + 8 = 8
    # 6000 ± 25:   none -> 0; NaN level -> NaN
    np.testing.assert_allclose(out[:5], [0.0, -1.8, -9.8, 8.0, 0.0], atol=1e-12)
    assert np.isnan(out[5])
    # scalar width broadcast, NaN exposure counts as none
    g2 = g.copy()
    g2[-1] = np.nan
    np.testing.assert_allclose(net_gex_near(K, g2, [5050.0], 0.0), [0.0], atol=1e-12)


def test_net_gex_near_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    k = rng.integers(900, 1100, 400) * 5.0
    g = rng.normal(size=400)
    lv = rng.uniform(4500, 5500, 100)
    w = rng.uniform(0, 60, 100)
    brute = [g[np.abs(k - lv[i]) <= w[i]].sum() for i in range(100)]
    np.testing.assert_allclose(net_gex_near(k, g, lv, w), brute, atol=1e-9)


def test_walls() -> None:
    g = gex(G, OI, F, C)
    assert walls(K, g, C) == Walls(call_wall=5025.0, put_wall=4975.0)
    # convention-independent
    assert walls(K, gex(G, OI, F, C, convention="dealer_short"), C) == Walls(5025.0, 4975.0)
    # lines sharing a strike are summed first: 5050 calls of 2 + 7 units beat 5025 (8), neither alone does
    k2, g2, c2 = np.append(K, 5050.0), np.append(g, 7 * UNIT), np.append(C, True)
    assert walls(k2, g2, c2).call_wall == 5050.0
    # a chain without puts
    assert np.isnan(walls(K[C], g[C], C[C]).put_wall)


def test_by_strike() -> None:
    k, v = by_strike([5.0, 1.0, 5.0, np.nan], [1.0, 2.0, np.nan, 4.0])
    assert k.tolist() == [1.0, 5.0]
    assert v.tolist() == [2.0, 1.0]


# -- the level's gamma profile z-score --------------------------------------------------------------


def _profile_by_hand(
    strikes: list[float], calls: list[bool], oi: list[float], tau: float, vol: float, s: float
) -> float:
    """Σ over lines within ±10 of S of sign·Γ(S, K)·OI·50·S²·0.01, Γ = φ(d1)/(S σ √T) written out."""
    from math import exp, log, pi, sqrt

    total = 0.0
    for k, c, o in zip(strikes, calls, oi, strict=True):
        if abs(k - s) > 10.0:
            continue
        sd = vol * sqrt(tau)
        d1 = (log(s / k) + 0.5 * sd * sd) / sd
        gamma = exp(-0.5 * d1 * d1) / sqrt(2 * pi) / (s * sd)
        total += (1.0 if c else -1.0) * gamma * o * 50.0 * s * s * 0.01
    return total


def test_gex_level_z_matches_the_profile_by_hand() -> None:
    from spymaster.indicators.dealer import atm_vol, gex_level_z

    strikes = [4980.0, 4990.0, 5000.0, 5010.0, 5020.0, 4990.0, 5000.0]
    calls = [False, False, True, True, True, False, False]
    oi = [400.0, 900.0, 700.0, 1200.0, 300.0, 500.0, 650.0]
    tau, vol = 3.0 / (365 * 24), 0.16
    levels = np.array([[5004.0, 4987.5, np.nan]])
    got = gex_level_z(strikes, calls, oi, np.full((len(strikes), 1), tau), np.array([vol]), levels)
    grid = sorted(set(strikes))
    prof = np.array([_profile_by_hand(strikes, calls, oi, tau, vol, g) for g in grid])
    for j in range(2):
        want = (
            _profile_by_hand(strikes, calls, oi, tau, vol, float(levels[0, j])) - prof.mean()
        ) / prof.std()
        assert got[0, j] == pytest.approx(want, rel=1e-12)
    assert np.isnan(got[0, 2])  # an inactive level
    assert np.isnan(gex_level_z(strikes, calls, oi, np.full((7, 1), tau), np.array([np.nan]), levels)).all()
    # the ATM vol is the median over the lines within ±10 points of the future only
    iv = np.array([[0.30], [0.20], [0.15], [0.17], [0.90], [np.nan], [0.16]])
    assert atm_vol(iv, strikes, np.array([5000.0]))[0] == pytest.approx(np.median([0.20, 0.15, 0.17, 0.16]))
    assert np.isnan(atm_vol(iv, strikes, np.array([5100.0]))[0])

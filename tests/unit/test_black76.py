"""Black-76: Hull's worked example, parity, gamma by finite differences, implied-vol round trips."""

from __future__ import annotations

import numpy as np
import pytest

from spymaster.indicators import black76
from spymaster.indicators.black76 import gamma, implied_vol, price, vega, year_fraction

MIN = 60 * 1_000_000_000
FLOOR_T = 5.0 / (365 * 24 * 60)


def test_hull_put_on_futures() -> None:
    # Hull, Options Futures and Other Derivatives: European put on a futures, F=K=20, r=9 %, T=4 months,
    # σ=25 %: d1 = σ√T/2 = 0.0722, p = e^{-0.03}·20·(N(0.0722) − N(−0.0722)) ≈ 1.12
    p = price(20.0, 20.0, 4 / 12, 0.25, 0.09, False)
    assert round(float(p), 2) == 1.12
    assert float(p) == pytest.approx(1.1166, abs=1e-4)


def test_put_call_parity() -> None:
    F = 5000.0
    K = np.arange(4500.0, 5501.0, 25.0)
    for T in (FLOOR_T, 1 / 365, 0.1, 1.0):
        for r in (0.0, 0.05):
            c = price(F, K, T, 0.2, r, True)
            p = price(F, K, T, 0.2, r, False)
            np.testing.assert_allclose(c - p, np.exp(-r * T) * (F - K), atol=1e-9 * F)


@pytest.mark.parametrize("is_call", [True, False])
def test_gamma_is_second_derivative_in_F(is_call: bool) -> None:
    K = np.array([80.0, 95.0, 100.0, 105.0, 120.0])
    for T, sigma in ((0.05, 0.3), (0.5, 0.2), (2.0, 0.6)):
        F, h = 100.0, 0.01
        up = price(F + h, K, T, sigma, 0.03, is_call)
        mid = price(F, K, T, sigma, 0.03, is_call)
        dn = price(F - h, K, T, sigma, 0.03, is_call)
        fd = (up - 2 * mid + dn) / h**2
        np.testing.assert_allclose(gamma(F, K, T, sigma, 0.03), fd, rtol=1e-5, atol=1e-7)


def test_vega_is_derivative_in_sigma() -> None:
    K = np.array([90.0, 100.0, 110.0])
    h = 1e-5
    fd = (price(100.0, K, 0.3, 0.25 + h, 0.02, True) - price(100.0, K, 0.3, 0.25 - h, 0.02, True)) / (2 * h)
    np.testing.assert_allclose(vega(100.0, K, 0.3, 0.25, 0.02), fd, rtol=1e-7)


def test_implied_vol_round_trip() -> None:
    F = 5000.0
    Ts = np.array([FLOOR_T, 1 / (365 * 24), 1 / 365, 7 / 365, 0.25, 1.0])
    sigmas = np.array([0.08, 0.15, 0.3, 0.8, 2.0])
    z = np.linspace(-2.5, 2.5, 11)  # strikes spread in standard deviations, so even the floor T has range
    T, sig, zz, call = np.meshgrid(Ts, sigmas, z, [True, False], indexing="ij")
    K = np.round(F * np.exp(zz * sig * np.sqrt(T)) / 0.25) * 0.25
    p = price(F, K, T, sig, 0.04, call)
    iv = implied_vol(p, F, K, T, 0.04, call)
    # only where the price carries information above float noise (deep OTM at the floor can round to ~0)
    informative = vega(F, K, T, sig, 0.04) > 1e-6 * F * np.sqrt(T)
    assert informative.mean() > 0.95
    np.testing.assert_allclose(iv[informative], sig[informative], rtol=1e-7)
    # and at-the-money at the floor explicitly
    atm = implied_vol(price(F, F, FLOOR_T, 0.2, 0.0, True), F, F, FLOOR_T, 0.0, True)
    assert float(atm) == pytest.approx(0.2, rel=1e-10)


def test_implied_vol_out_of_bounds_is_nan() -> None:
    F, K, T, r = 100.0, 90.0, 0.5, 0.05
    disc = np.exp(-r * T)
    prices = np.array([disc * 10.0 - 1e-3, disc * F + 1.0, -1.0, np.nan])  # below intrinsic, above F·e^{-rT}
    assert np.isnan(implied_vol(prices, F, K, T, r, True)).all()
    # a put above K·e^{-rT}
    assert np.isnan(implied_vol(disc * K + 0.01, F, K, T, r, False))
    # in bounds but the vol is outside [lo, hi]
    p_hi = price(F, K, T, 7.0, r, True)
    assert np.isnan(implied_vol(p_hi, F, K, T, r, True))
    assert float(implied_vol(p_hi, F, K, T, r, True, hi=10.0)) == pytest.approx(7.0, rel=1e-9)
    # invalid T
    assert np.isnan(implied_vol(5.0, F, K, 0.0, r, True))


def test_year_fraction_floor_and_expiry() -> None:
    now = 1_772_000_000 * 1_000_000_000
    exp = now + np.array([0, 2 * MIN, 5 * MIN, 60 * MIN, 365 * 24 * 60 * MIN])
    T = year_fraction(now, exp)
    np.testing.assert_allclose(T, [FLOOR_T, FLOOR_T, FLOOR_T, 60 / (365 * 24 * 60), 1.0], rtol=1e-15)
    assert np.isnan(year_fraction(now, now - 1))  # expired: no exposure
    assert float(year_fraction(now, now, floor_minutes=1.0)) == pytest.approx(1 / (365 * 24 * 60))
    # why the floor matters: ATM gamma stays finite and bounded at the floor
    g = gamma(5000.0, 5000.0, year_fraction(now, now + 1), 0.2, 0.0)
    assert np.isfinite(g)
    assert g < 1.0
    assert black76.DAYS_PER_YEAR == 365.0

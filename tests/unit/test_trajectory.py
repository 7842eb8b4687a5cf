"""DCT-II trajectory coefficients against the explicit formula; trailing windows without lookahead."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spymaster.indicators.trajectory import (
    dct_coefficients,
    fill_window_gaps,
    trailing_windows,
    trajectory_features,
)


def _loop_dct(x: list[float], k: int) -> list[float]:
    """y_k = s_k · 2 Σ x_n cos(πk(2n+1)/(2N)), s_0 = √(1/(4N)), s_k = √(1/(2N)) (DOMAIN.md)."""
    n_ = len(x)
    out = []
    for j in range(k):
        s = math.sqrt(1 / (4 * n_)) if j == 0 else math.sqrt(1 / (2 * n_))
        out.append(s * 2 * sum(x[n] * math.cos(math.pi * j * (2 * n + 1) / (2 * n_)) for n in range(n_)))
    return out


def test_dct_matches_formula() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 40))
    got = dct_coefficients(x, 8)
    assert got.shape == (5, 8)
    for i in range(5):
        np.testing.assert_allclose(got[i], _loop_dct(list(x[i]), 8), rtol=1e-12, atol=1e-12)
    one = dct_coefficients(x[0], 8)
    assert one.shape == (8,)
    np.testing.assert_array_equal(one, got[0])
    # constant series: only the DC term, = c · √N
    np.testing.assert_allclose(dct_coefficients(np.full(40, 2.0), 3), [2 * math.sqrt(40), 0, 0], atol=1e-12)


def test_dct_nan_safe() -> None:
    x = np.array([[np.nan, np.nan, 1.0, np.nan, 3.0, np.nan], [np.nan] * 6])
    # forward fill then back fill: [1, 1, 1, 1, 3, 3]
    np.testing.assert_array_equal(fill_window_gaps(x)[0], [1, 1, 1, 1, 3, 3])
    got = dct_coefficients(x, 4)
    np.testing.assert_allclose(got[0], _loop_dct([1, 1, 1, 1, 3, 3], 4), atol=1e-12)
    assert np.isnan(got[1]).all()
    with pytest.raises(ValueError, match="k must be"):
        dct_coefficients(x, 7)


def test_trailing_windows() -> None:
    s = np.arange(10.0)
    w = trailing_windows(s, np.array([0, 2, 9, -1]), 4)
    np.testing.assert_array_equal(
        w,
        [[np.nan, np.nan, np.nan, 0], [np.nan, 0, 1, 2], [6, 7, 8, 9], [np.nan] * 4],
    )
    two = trailing_windows(np.vstack([s, -s]), np.array([3]), 2)
    assert two.shape == (1, 2, 2)
    np.testing.assert_array_equal(two[0], [[2, 3], [-2, -3]])
    with pytest.raises(ValueError, match="beyond"):
        trailing_windows(s, np.array([10]), 3)


def test_trajectory_features_shape_and_order() -> None:
    rng = np.random.default_rng(2)
    series = rng.normal(size=(4, 200))
    steps = np.array([39, 100, 199])
    feats = trajectory_features(series, steps, window=40, k=8)
    assert feats.shape == (3, 4 * 8)
    for i, st in enumerate(steps):
        for j in range(4):
            np.testing.assert_allclose(
                feats[i, j * 8 : (j + 1) * 8], _loop_dct(list(series[j, st - 39 : st + 1]), 8), atol=1e-12
            )


@pytest.mark.parametrize("seed", range(6))
def test_trailing_windows_no_lookahead(seed: int) -> None:
    rng = np.random.default_rng(seed)
    series = rng.normal(size=(4, 300))
    series[:, rng.integers(0, 300, 30)] = np.nan
    cut = int(rng.integers(0, 300))
    other = series.copy()
    other[:, cut + 1 :] = rng.normal(size=(4, 300 - cut - 1))
    steps = np.arange(-1, 300)
    known = steps <= cut
    a = trajectory_features(series, steps, 40, 8)
    b = trajectory_features(other, steps, 40, 8)
    np.testing.assert_array_equal(a[known], b[known])
    np.testing.assert_array_equal(
        trailing_windows(series[0], steps, 40)[known], trailing_windows(other[0], steps, 40)[known]
    )
    if cut < 299:
        assert not np.array_equal(a[~known], b[~known], equal_nan=True)

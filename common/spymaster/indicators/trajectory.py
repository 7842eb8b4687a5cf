"""Trajectory shape features: orthonormal DCT-II coefficients of trailing windows (numpy / scipy).

The first k DCT-II coefficients summarise a window's shape (level, slope, curvature, ...) in a way
that is stable to noise and comparable across episodes. Windows are *trailing*: the window for step i
ends at sample i inclusive, so a feature stamped at a step sees nothing after it. Normalising a series
(e.g. distance to a level in ATR units) is the caller's job, before windowing.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.fft import dct

from spymaster.indicators.bars import FloatArray

__all__ = ["dct_coefficients", "fill_window_gaps", "trailing_windows", "trajectory_features"]


def fill_window_gaps(x: npt.ArrayLike) -> FloatArray:
    """Forward-fill NaNs along the last axis, then back-fill the leading ones; all-NaN rows stay NaN.

    Back-filling inside a window is causal: every value in a trailing window is already at or before
    the window's stamp.
    """
    v = np.array(x, dtype=np.float64)
    if v.size == 0:
        return v
    n = v.shape[-1]
    pos = np.broadcast_to(np.arange(n), v.shape)
    miss = np.isnan(v)
    fwd = np.maximum.accumulate(np.where(miss, -1, pos), axis=-1)
    v = np.where(fwd >= 0, np.take_along_axis(v, np.maximum(fwd, 0), axis=-1), np.nan)
    miss = np.isnan(v)  # only leading gaps remain
    bwd = np.flip(np.minimum.accumulate(np.flip(np.where(miss, n, pos), axis=-1), axis=-1), axis=-1)
    out: FloatArray = np.where(bwd < n, np.take_along_axis(v, np.minimum(bwd, n - 1), axis=-1), np.nan)
    return out


def dct_coefficients(x: npt.ArrayLike, k: int = 8) -> FloatArray:
    """First ``k`` orthonormal DCT-II coefficients along the last axis (window), NaN-safe.

    y_k = s_k · 2 Σ_n x_n cos(πk(2n+1)/(2N)), s_0 = √(1/(4N)), s_k = √(1/(2N)) — ``scipy.fft.dct``
    with ``norm="ortho"``. Gaps are filled with ``fill_window_gaps``; an all-NaN window gives NaN
    coefficients. Input [..., window] → output [..., k] (1-D → [k], [n_series, window] → [n_series, k]).
    """
    v = fill_window_gaps(x)
    if v.ndim == 0:
        raise ValueError("x must have at least one dimension")
    if not 1 <= k <= v.shape[-1]:
        raise ValueError(f"k must be in 1..window ({v.shape[-1]})")
    out: FloatArray = dct(v, type=2, norm="ortho", axis=-1)[..., :k]
    return out


def trailing_windows(series: npt.ArrayLike, step_index: npt.ArrayLike, window: int) -> FloatArray:
    """The last ``window`` samples up to and including ``step_index[i]``, NaN-padded at the start.

    ``series`` is [n_samples] or [n_series, n_samples]; the result is [n_steps, window] or
    [n_steps, n_series, window]. A negative step index (no sample yet) gives an all-NaN window.
    """
    s = np.asarray(series, dtype=np.float64)
    idx = np.asarray(step_index, dtype=np.int64)
    if s.ndim not in (1, 2) or idx.ndim != 1:
        raise ValueError("series must be 1-D or 2-D and step_index 1-D")
    if window < 1:
        raise ValueError("window must be >= 1")
    n = s.shape[-1]
    if idx.size and idx.max() >= n:
        raise ValueError("step_index beyond the end of the series")
    cols = idx[:, None] + np.arange(1 - window, 1)  # [n_steps, window]
    ok = cols >= 0
    safe = np.maximum(cols, 0)
    if s.ndim == 1:
        return np.where(ok, s[safe], np.nan) if n else np.full(cols.shape, np.nan)
    if n == 0:
        return np.full((idx.size, s.shape[0], window), np.nan)
    out: FloatArray = np.where(ok[:, None, :], s[:, safe].transpose(1, 0, 2), np.nan)
    return out


def trajectory_features(
    series: npt.ArrayLike, step_index: npt.ArrayLike, window: int = 40, k: int = 8
) -> FloatArray:
    """DCT shape features for the vector builder: [n_steps, n_series * k].

    ``series`` is [n_series, n_samples] (or 1-D for one series). Columns are series-major: the k
    coefficients of series 0, then of series 1, and so on.
    """
    s = np.asarray(series, dtype=np.float64)
    if s.ndim == 1:
        s = s[None, :]
    w = trailing_windows(s, step_index, window)  # [n_steps, n_series, window]
    coef = dct_coefficients(w, k)  # [n_steps, n_series, k]
    out: FloatArray = coef.reshape(coef.shape[0], -1)
    return out

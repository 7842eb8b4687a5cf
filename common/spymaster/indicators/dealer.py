"""Dealer gamma exposure (GEX) per strike, near a price level, and gamma walls (vectorised numpy).

GEX of an option line = Γ · OI · multiplier · F² · 0.01 · sign: the dollar change in dealers' delta
for a 1 % move in the future. The sign encodes an assumption about who holds the options, which no
public data reveals, so it is a setting:

- ``"calls_long"`` (default, the common published convention): dealers are long the calls customers
  sell (overwriting) and short the puts customers buy (hedging): +1 for calls, −1 for puts.
- ``"dealer_short"``: dealers are short everything customers hold: −Γ·OI for calls and puts alike.
"""

# ruff: noqa: N803  (F is the futures price, as in the formulas)
from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from spymaster.indicators import black76
from spymaster.indicators.bars import FloatArray

__all__ = ["GexConvention", "Walls", "atm_vol", "by_strike", "gex", "gex_level_z", "net_gex_near", "walls"]

GexConvention = Literal["calls_long", "dealer_short"]
ES_OPTION_MULTIPLIER = 50.0


def gex(
    gamma: npt.ArrayLike,
    oi: npt.ArrayLike,
    F: npt.ArrayLike,
    is_call: npt.ArrayLike,
    *,
    multiplier: float = ES_OPTION_MULTIPLIER,
    convention: GexConvention = "calls_long",
) -> FloatArray:
    """Dollar gamma exposure per 1 % move of each option line: Γ · OI · multiplier · F² · 0.01 · sign.

    ``convention`` picks the sign (see the module docstring); the default ``"calls_long"`` gives +1
    to calls and −1 to puts, ``"dealer_short"`` gives −1 to both.
    """
    g, o, f, c = np.broadcast_arrays(
        np.asarray(gamma, dtype=np.float64),
        np.asarray(oi, dtype=np.float64),
        np.asarray(F, dtype=np.float64),
        np.asarray(is_call).astype(bool),
    )
    if convention == "calls_long":
        sign = np.where(c, 1.0, -1.0)
    elif convention == "dealer_short":
        sign = np.full(c.shape, -1.0)
    else:
        raise ValueError(f"unknown GEX convention {convention!r}")
    out: FloatArray = g * o * multiplier * f * f * 0.01 * sign
    return out


def by_strike(strikes: npt.ArrayLike, values: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(unique sorted strikes, summed values): merges expiries / lines sharing a strike. NaN counts as 0."""
    k = np.asarray(strikes, dtype=np.float64)
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    keep = ~np.isnan(k)
    uniq, inv = np.unique(k[keep], return_inverse=True)
    total: FloatArray = np.bincount(inv, weights=v[keep], minlength=uniq.size).astype(np.float64)
    return uniq.astype(np.float64), total


def net_gex_near(
    strikes: npt.ArrayLike,
    gex_values: npt.ArrayLike,
    level: npt.ArrayLike,
    width_points: npt.ArrayLike,
) -> FloatArray:
    """Net GEX of all strikes with |K − level| <= width (inclusive), for each of many levels.

    NaN GEX (e.g. expired lines, see ``black76.year_fraction``) counts as no exposure; a NaN level
    gives NaN. Vectorised with a prefix sum over sorted strikes and two ``searchsorted`` calls.
    """
    k, v = by_strike(strikes, gex_values)
    lv = np.asarray(level, dtype=np.float64)
    w = np.broadcast_to(np.asarray(width_points, dtype=np.float64), lv.shape)
    cs = np.concatenate([[0.0], np.cumsum(v)])
    eps = 1e-9 * np.maximum(1.0, np.abs(lv))
    with np.errstate(invalid="ignore"):
        lo = np.searchsorted(k, np.where(np.isnan(lv), 0.0, lv - w - eps), side="left")
        hi = np.searchsorted(k, np.where(np.isnan(lv), 0.0, lv + w + eps), side="right")
    out: FloatArray = np.where(np.isnan(lv) | np.isnan(w), np.nan, cs[hi] - cs[np.minimum(lo, hi)])
    return out


class Walls(NamedTuple):
    """Strikes of the largest call and put gamma concentrations (NaN when a side is absent)."""

    call_wall: float
    put_wall: float


def walls(strikes: npt.ArrayLike, gex_values: npt.ArrayLike, is_call: npt.ArrayLike) -> Walls:
    """Call wall = strike with the largest call |GEX|; put wall = strike with the largest put |GEX|.

    Lines sharing a strike (several expiries) are summed first. Magnitude makes the walls independent
    of the sign convention: under ``"calls_long"`` this is the max call GEX and the most negative put
    GEX. Ties go to the lower strike.
    """
    k = np.asarray(strikes, dtype=np.float64)
    v = np.asarray(gex_values, dtype=np.float64)
    c = np.broadcast_to(np.asarray(is_call).astype(bool), k.shape)

    def wall(mask: npt.NDArray[np.bool_]) -> float:
        uniq, total = by_strike(k[mask], v[mask])
        if uniq.size == 0 or not np.any(total != 0):
            return float("nan")
        return float(uniq[int(np.argmax(np.abs(total)))])

    return Walls(call_wall=wall(c), put_wall=wall(~c))


def atm_vol(
    iv: npt.ArrayLike, strikes: npt.ArrayLike, F: npt.ArrayLike, width_points: float = 10.0
) -> FloatArray:
    """Per step: the median implied vol of the lines struck within ±``width_points`` of the future.

    Why one vol: 0DTE quotes away from the money are a few ticks wide, so per-strike implied vols
    there are noise that a gamma sum over strikes would carry (the level's GEX read the planted
    dealer condition at 0.69 with per-strike vols against 0.94 with this one, docs/EVALUATION.md).
    ``iv`` is [n_lines, n_steps]; NaN where no line near the money has a finite vol.
    """
    v = np.asarray(iv, dtype=np.float64)
    k = np.asarray(strikes, dtype=np.float64)[:, None]
    f = np.asarray(F, dtype=np.float64)[None, :]
    near = (np.abs(k - f) <= width_points + 1e-9) & np.isfinite(v)
    masked = np.where(near, v, np.nan)
    out = np.full(v.shape[1], np.nan)
    ok = near.any(axis=0)
    if ok.any():
        out[ok] = np.nanmedian(masked[:, ok], axis=0)
    return out


def gex_level_z(
    strikes: npt.ArrayLike,
    is_call: npt.ArrayLike,
    oi: npt.ArrayLike,
    tau: npt.ArrayLike,
    vol: npt.ArrayLike,
    levels: npt.ArrayLike,
    width_points: float = 10.0,
    *,
    r: float = 0.0,
    multiplier: float = ES_OPTION_MULTIPLIER,
    convention: GexConvention = "calls_long",
) -> FloatArray:
    """Per (step, level): the day's gamma profile at the level as a z-score across the chain.

    The profile at a price S is the net GEX of the strikes within ±``width_points`` of S with the
    future placed at S (what dealers' hedging will be when price gets there, not what it is now),
    every line at the step's one ``vol``; the z-score is against the same profile at every listed
    strike, so days with more or less open interest are comparable. ``tau`` is [n_lines, n_steps]
    (NaN once expired), ``vol`` [n_steps], ``levels`` [n_steps, n_levels]; NaN where a level, the
    vol or the spread of the profile is missing.
    """
    k = np.asarray(strikes, dtype=np.float64)
    c = np.asarray(is_call).astype(bool)
    o = np.nan_to_num(np.asarray(oi, dtype=np.float64))
    t = np.asarray(tau, dtype=np.float64)
    sig = np.asarray(vol, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    n_steps, n_lv = lv.shape
    grid = np.unique(k[np.isfinite(k)])
    spots = np.concatenate([np.nan_to_num(lv), np.broadcast_to(grid, (n_steps, grid.size))], axis=1)
    s3 = spots[:, :, None]  # [n_steps, n_spots, 1] against the lines on the last axis
    near = np.abs(k[None, None, :] - s3) <= width_points + 1e-9
    with np.errstate(all="ignore"):
        g = black76.gamma(s3, k[None, None, :], t.T[:, None, :], sig[:, None, None], r)
    sign = np.where(c, 1.0, -1.0) if convention == "calls_long" else np.full(c.shape, -1.0)
    contrib = np.where(near & np.isfinite(g), g * (o * sign)[None, None, :], 0.0)
    prof = contrib.sum(axis=2) * multiplier * spots * spots * 0.01
    at, over = prof[:, :n_lv], prof[:, n_lv:]
    mu = over.mean(axis=1, keepdims=True) if grid.size else np.full((n_steps, 1), np.nan)
    sd = over.std(axis=1, keepdims=True) if grid.size else np.full((n_steps, 1), np.nan)
    with np.errstate(all="ignore"):
        z = (at - mu) / sd
    bad = ~np.isfinite(lv) | ~np.isfinite(sig)[:, None] | ~(sd > 0)
    out: FloatArray = np.where(bad, np.nan, z)
    return out

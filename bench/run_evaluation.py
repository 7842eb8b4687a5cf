"""Generate synthetic days, run the pipeline, evaluate the kNN walk-forward and print the report.

Slow (CPU heavy); not part of the tests. Examples::

    python bench/run_evaluation.py --days 40 --scale 0.02 --seed 7 --sweep      # tune
    python bench/run_evaluation.py --days 40 --scale 0.02 --seed 8 --start 2026-04-06  # check

The lake is kept (``--lake``, default ``bench/out/eval-lake-<seed>``) so a second run re-uses it;
the report is written into that lake under ``reports/evaluation/<run>/`` and printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from spymaster import evaluation, sessions
from spymaster.lake import Lake, is_committed, paths
from spymaster.lake.paths import Layer
from spymaster.layers import index, pipeline
from spymaster.retrieval import calibration
from spymaster.settings import SERVED, StorageSettings
from spymaster.synth import generate


def sweep_configs(weights: dict[str, float]) -> list[evaluation.KnnConfig]:
    out = []
    for mpd in (2, 5):
        for k in (50, 100):
            for pool in (0.0, 30.0, 100.0, 300.0):
                for prm in calibration.grid():
                    name = (
                        f"k{k}/d{mpd}/pow{prm.similarity_power:g}/prior{prm.prior_strength:g}"
                        f"/pool{pool:g}/decay{prm.decay_days:g}"
                    )
                    out.append(
                        evaluation.KnnConfig.of(
                            name, k=k, max_per_day=mpd, params=prm, weights=weights, pooled_prior=pool
                        )
                    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", default=None)
    ap.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 1, 5))
    ap.add_argument("--days", type=int, default=40)
    ap.add_argument("--scale", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--embargo", type=int, default=1)
    ap.add_argument("--min-train-days", type=int, default=evaluation.MIN_TRAIN_DAYS)
    ap.add_argument("--sweep", action="store_true", help="add the parameter sweep (slower)")
    ap.add_argument(
        "--learned-metric",
        action="store_true",
        help="add the served setting with a learned diagonal metric (|corr with BREAK|², shrink 0.5)",
    )
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--no-index", action="store_true", help="skip building the LanceDB vector table")
    args = ap.parse_args()

    root = Path(args.lake or Path(__file__).parent / "out" / f"eval-lake-{args.seed}-{args.scale:g}")
    lake = Lake(StorageSettings(lake_uri=str(root)))
    dates = sessions.trading_days(args.start, args.days)
    todo = [d for d in dates if not is_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, d)]
    t0 = time.perf_counter()
    if todo:
        generate(
            lake,
            todo[0],
            len(sessions.trading_days_between(todo[0], todo[-1])),
            scale=args.scale,
            seed=args.seed,
        )
        res = pipeline.run(lake.settings, todo, workers=args.workers)
        bad = [r for r in res if not r.ok]
        if bad:
            print("failed dates:", [(r.date, r.failed_stage, r.error) for r in bad], file=sys.stderr)
        print(f"generated + pipeline: {len(todo)} days in {time.perf_counter() - t0:.0f} s", flush=True)
    if not args.no_index:
        index.index(lake, dates)
    sweep = sweep_configs(dict(SERVED.weights)) if args.sweep else []
    if args.learned_metric:
        sweep.append(
            evaluation.KnnConfig.of(
                "kNN served + learned metric",
                k=SERVED.k,
                max_per_day=SERVED.max_per_day,
                params=calibration.RECOMMENDED_PARAMS,
                weights=SERVED.weights,
                pooled_prior=SERVED.pooled_prior,
                metric="corr",
                metric_shrink=0.5,
                metric_power=2.0,
            )
        )
    report = evaluation.evaluate(
        lake,
        dates[0],
        dates[-1],
        embargo_days=args.embargo,
        min_train_days=args.min_train_days,
        run_ablation=not args.no_ablation,
        sweep=sweep,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(report.markdown)
    print("\nwritten:", *(f"{k}: {root / v}" for k, v in report.paths.items()), sep="\n  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

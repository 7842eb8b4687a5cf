"""Where the 80 % interval's log-odds offsets (``settings.LEARNED.interval_logit``) come from.

Runs the served learned similarity walk-forward at the approaches of each lake (the evaluation's split:
every test day from the 7th date, 1-day embargo), matches each approach to its planted interaction,
and prints the 10 % / 90 % quantiles of logit(planted p) − logit(served answer). The offsets are the
quantiles on the first lake's first ``--fit-days`` test days (a generator prior: real data has no
planted p); the coverage of the planted p under them is printed for those days, for the first lake's
later days and for every other lake, so everything after the fit days is an out-of-sample check::

    OMP_NUM_THREADS=1 python bench/interval_offsets.py /tmp/hA /tmp/hB --fit-days 100   # all of A
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.special import expit, logit

from spymaster.evaluation.forecast import cutoff_date
from spymaster.evaluation.setups import load_rows, planted_p
from spymaster.lake import Lake, paths
from spymaster.lake.manifests import committed_dates
from spymaster.lake.paths import Layer
from spymaster.layers.gold import APPROACH
from spymaster.retrieval.walkforward import walk_forward
from spymaster.sessions import day_number, from_day_number
from spymaster.settings import LEARNED, StorageSettings

FIRST_TEST = 6


def _residuals(uri: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(served answer, planted p, test-day index) at every matched test approach of the lake."""
    lake = Lake(StorageSettings(lake_uri=uri))
    dates = sorted(committed_dates(lake, Layer.GOLD, paths.EPISODES_TABLE))
    rows = load_rows(lake, dates)
    test_dates = dates[FIRST_TEST:]
    appr = rows.reason == APPROACH
    f = walk_forward(
        rows,
        [day_number(d) for d in test_dates],
        lambda d: day_number(cutoff_date(from_day_number(d), 1)),
        train_filter=appr,
        test_filter=appr,
        methods=(LEARNED.method,),
        baselines=False,
    )
    r = f.rows
    p_true = planted_p(lake, rows, r, test_dates)
    if not np.isfinite(p_true).any():
        raise SystemExit(f"{uri}: no synthetic truth (a generated lake is needed)")
    m = np.isfinite(p_true)
    day_index = np.searchsorted([day_number(d) for d in test_dates], rows.day[r])
    return f.p[f"knn_{LEARNED.method}"][m], p_true[m], day_index[m]


def _logit(p: np.ndarray) -> np.ndarray:
    out: np.ndarray = logit(np.clip(p, 1e-4, 1 - 1e-4))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("lakes", nargs="+", help="generated lakes; the first one fits the offsets")
    ap.add_argument("--fit-days", type=int, default=30, help="test days of the first lake to fit on")
    args = ap.parse_args()
    res = {uri: _residuals(uri) for uri in args.lakes}
    p, pt, day = res[args.lakes[0]]
    fit = day < args.fit_days
    q10, q90 = np.quantile(_logit(pt[fit]) - _logit(p[fit]), [0.1, 0.9])
    print(
        f"offsets from {args.lakes[0]}'s first {args.fit_days} test days ({int(fit.sum())} matched "
        f"approaches): ({q10:.2f}, {q90:.2f}); served {LEARNED.interval_logit}"
    )

    def report(name: str, p: np.ndarray, pt: np.ndarray) -> None:
        for label, (a, b) in (
            ("these offsets", (q10, q90)),
            ("served", LEARNED.interval_logit or (0.0, 0.0)),
        ):
            lo, hi = expit(_logit(p) + a), expit(_logit(p) + b)
            cover = float(np.mean((pt >= lo) & (pt <= hi)))
            print(
                f"  {name} ({p.size}): {label} cover {100 * cover:.1f} %, mean width {float(np.mean(hi - lo)):.3f}"
            )

    report(f"{args.lakes[0]} fit days", p[fit], pt[fit])
    report(f"{args.lakes[0]} later days", p[~fit], pt[~fit])
    for uri in args.lakes[1:]:
        report(uri, res[uri][0], res[uri][1])


if __name__ == "__main__":
    main()

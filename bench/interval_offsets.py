"""Where the 80 % interval's log-odds offsets (``settings.LEARNED.interval_logit``) come from.

Runs the served learned similarity walk-forward at the approaches of each lake (the evaluation's split:
every test day from the 7th date, 1-day embargo), matches each approach to its planted interaction,
and prints the 10 % / 90 % quantiles of logit(planted p) − logit(served answer). The first lake's
quantiles are the offsets (a generator prior: real data has no planted p); every lake's coverage of
the planted p under them is printed, so the second lake is the out-of-sample check::

    OMP_NUM_THREADS=1 python bench/interval_offsets.py /tmp/hA /tmp/hB
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.special import expit, logit

from spymaster.evaluation.episodes import Episodes
from spymaster.evaluation.forecast import cutoff_date
from spymaster.evaluation.oracle import load_truth, match_truth
from spymaster.evaluation.setups import load_rows
from spymaster.lake import Lake, paths
from spymaster.lake.manifests import committed_dates
from spymaster.lake.paths import Layer
from spymaster.layers.gold import APPROACH
from spymaster.outcomes import HORIZONS_MIN
from spymaster.retrieval.walkforward import walk_forward
from spymaster.sessions import day_number, from_day_number
from spymaster.settings import LEARNED, StorageSettings

FIRST_TEST = 6


def _residuals(uri: str) -> tuple[np.ndarray, np.ndarray]:
    """(served answer, planted p) at every matched test approach of the lake."""
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
    ep = Episodes.build(
        episode_id=list(rows.episode_id[r]) if rows.episode_id is not None else [""] * r.size,
        day=rows.day[r].astype(np.int32),
        ts=rows.ts[r],
        level_kind=list(rows.kind[r]),
        direction=list(rows.direction[r]),
        time_bucket=np.zeros(r.size, np.int64),
        raw=rows.raw[r].astype(np.float32),
        labels=np.zeros((len(HORIZONS_MIN), r.size), np.int8),
    )
    truth = load_truth(lake, test_dates)
    if truth is None:
        raise SystemExit(f"{uri}: no synthetic truth (a generated lake is needed)")
    p_true = match_truth(ep, np.arange(r.size), truth, window_s=600.0)
    m = np.isfinite(p_true)
    return f.p[f"knn_{LEARNED.method}"][m], p_true[m]


def _logit(p: np.ndarray) -> np.ndarray:
    out: np.ndarray = logit(np.clip(p, 1e-4, 1 - 1e-4))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("lakes", nargs="+", help="generated lakes; the first one fits the offsets")
    args = ap.parse_args()
    res = {uri: _residuals(uri) for uri in args.lakes}
    offsets = (0.0, 0.0)
    for i, (uri, (p, pt)) in enumerate(res.items()):
        q10, q90 = np.quantile(_logit(pt) - _logit(p), [0.1, 0.9])
        print(f"{uri}: {p.size} matched approaches, q10 {q10:+.3f}, q90 {q90:+.3f}")
        if i == 0:
            offsets = (float(q10), float(q90))
    print(
        f"offsets from {args.lakes[0]}: ({offsets[0]:.2f}, {offsets[1]:.2f}); served {LEARNED.interval_logit}"
    )
    for uri, (p, pt) in res.items():
        lo, hi = expit(_logit(p) + offsets[0]), expit(_logit(p) + offsets[1])
        cover = float(np.mean((pt >= lo) & (pt <= hi)))
        print(f"{uri}: coverage {100 * cover:.1f} %, mean width {float(np.mean(hi - lo)):.3f}")


if __name__ == "__main__":
    main()

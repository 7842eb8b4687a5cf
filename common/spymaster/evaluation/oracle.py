"""The oracle on generated days: episodes matched to the planted interactions and their true probability.

* **Oracle** (generated days): an episode is matched to a planted interaction of the same date,
  level kind and direction whose approach contains its anchor (``start_ts ≤ ts ≤ arrival_ts``) and
  whose arrival is at most ``oracle_window_s`` after it; its true probability is the truth table's
  ``p_break``.

Metrics (tiny-array tests in tests/unit/test_evaluation.py): Brier, log loss (p clipped to
[1e-6, 1 − 1e-6]), ECE over 10 equal-width bins (the last closed), AUC (``roc_auc_score``),
top-decile lift (BREAK rate among the ⌈n/10⌉ highest forecasts — ties broken by row order — over
the overall rate), and two coverages of the 80 % interval:
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from spymaster.evaluation.episodes import Episodes
from spymaster.evaluation.metrics import F64
from spymaster.lake import Lake
from spymaster.lake.paths import truth_file
from spymaster.sessions import NS

ORACLE_WINDOW_S = 180


# -- the oracle --------------------------------------------------------------------------------------


def match_truth(
    ep: Episodes, rows: npt.ArrayLike, truth: pa.Table, *, window_s: float = ORACLE_WINDOW_S
) -> F64:
    """Planted ``p_break`` of each row's interaction (NaN when unmatched; see the module doc)."""
    r = np.asarray(rows, dtype=np.int64)
    out = np.full(r.size, np.nan)
    if truth.num_rows == 0 or r.size == 0:
        return out
    t_day = np.asarray(truth.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False), dtype=np.int64)
    t_kind = np.asarray(truth.column("level_kind").to_pylist(), dtype=np.str_)
    t_dir = np.asarray(truth.column("direction").to_pylist(), dtype=np.str_)
    t_start = np.asarray(truth.column("start_ts").to_numpy(zero_copy_only=False), dtype=np.int64)
    t_arr = np.asarray(truth.column("arrival_ts").to_numpy(zero_copy_only=False), dtype=np.int64)
    t_p = np.asarray(truth.column("p_break").to_numpy(zero_copy_only=False), dtype=np.float64)
    win = int(window_s * NS)
    for i, row in enumerate(r.tolist()):
        ts = int(ep.ts[row])
        ok = (
            (t_day == int(ep.day[row]))
            & (t_kind == ep.level_kind[row])
            & (t_dir == ep.direction[row])
            & (t_start <= ts)
            & (ts <= t_arr)
            & (t_arr - ts <= win)
        )
        cand = np.flatnonzero(ok)
        if cand.size:
            out[i] = t_p[cand[np.argmin(t_arr[cand] - ts)]]
    return out


def load_truth(lake: Lake, dates: Sequence[dt.date]) -> pa.Table | None:
    """The generator's truth tables of ``dates`` (None when no date has one: real data)."""
    tables = [lake.read_parquet([truth_file(d)]) for d in dates if lake.exists(truth_file(d))]
    return pa.concat_tables(tables) if tables else None

"""Feature-group ablation: drop groups one at a time, keep a drop only if the log loss falls."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from spymaster import vectors
from spymaster.evaluation.episodes import Episodes
from spymaster.evaluation.forecast import EMBARGO_DAYS, KnnConfig, walk_forward
from spymaster.evaluation.metrics import B1, F64, I64, LOG_EPS, brier
from spymaster.levels import LEVEL_KINDS
from spymaster.partitions import TIME_BUCKETS

# -- groups ------------------------------------------------------------------------------------------


def groups(ep: Episodes, rows: I64) -> list[tuple[str, B1]]:
    """(name, mask over ``rows``): overall, then by level kind, by direction, by time bucket."""
    out: list[tuple[str, B1]] = [("all", np.ones(rows.size, dtype=bool))]
    for k in LEVEL_KINDS:
        out.append((f"level_kind={k}", ep.level_kind[rows] == k))
    for d in ("UP", "DOWN"):
        out.append((f"direction={d}", ep.direction[rows] == d))
    for b, (lo, hi) in enumerate(TIME_BUCKETS):
        out.append((f"time_bucket={b} ({lo}–{hi} min)", ep.time_bucket[rows] == b))
    return [(name, m) for name, m in out if m.any()]


# -- ablation ----------------------------------------------------------------------------------------

ABLATION_BASE: tuple[str, ...] = ("geometry", "kinematics", "context", "trajectory")
""""Geometry/trajectory only": where price is, how it moves, the zone context and the DCT shapes."""
ABLATION_STEPS: tuple[str, ...] = ("flow", "barrier", "tape", "dealer", "physics")


def _weights_of(groups_on: Sequence[str]) -> dict[str, float]:
    return {g: (1.0 if g in groups_on else 0.0) for g in vectors.VECTOR_GROUPS}


@dataclass(frozen=True)
class AblationStep:
    step: str
    groups: tuple[str, ...]
    log_loss: float
    brier: float
    delta: float
    """Log loss change against the best so far (negative = better)."""
    kept: bool
    delta_se: float = math.nan
    """Standard error of ``delta`` with test days as clusters (episodes of a day are correlated)."""


def _row_log_loss(p: F64, y: F64) -> F64:
    q = np.clip(p, LOG_EPS, 1 - LOG_EPS)
    out: F64 = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    return out


def clustered_se(diff: npt.ArrayLike, cluster: npt.ArrayLike) -> float:
    """Standard error of mean(diff) with clusters (sandwich): sqrt(Σ_c (S_c − n_c·d̄)²) / n."""
    d = np.asarray(diff, dtype=np.float64).ravel()
    c = np.asarray(cluster).ravel()
    if d.size == 0:
        return math.nan
    _, inv = np.unique(c, return_inverse=True)
    sums = np.bincount(inv, weights=d)
    counts = np.bincount(inv)
    return float(np.sqrt(np.sum((sums - counts * d.mean()) ** 2)) / d.size)


def ablation(
    ep: Episodes,
    test_dates: Sequence[dt.date],
    *,
    base: KnnConfig,
    embargo_days: int = EMBARGO_DAYS,
    window_days: int = vectors.DEFAULT_WINDOW_DAYS,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[AblationStep], dict[str, float], list[AblationStep]]:
    """Forward selection over feature groups by log loss, plus the full vector for reference.

    Start from :data:`ABLATION_BASE`; add each group of :data:`ABLATION_STEPS` in turn and keep it
    only if the log loss of P(BREAK) drops. Returns (steps, recommended group weights, references).
    """

    def run(name: str, on: Sequence[str]) -> tuple[F64, F64, I64]:
        cfg = replace(base, name=name, weights=tuple(sorted(_weights_of(on).items())))
        wf = walk_forward(ep, test_dates, [cfg], embargo_days=embargo_days, window_days=window_days)
        return wf.knn[name].p_break, ep.is_break[wf.rows], ep.day[wf.rows].astype(np.int64)

    kept = list(ABLATION_BASE)
    pb, y, day = run("base", kept)
    best_rows = _row_log_loss(pb, y)
    best = float(best_rows.mean())
    steps = [AblationStep("geometry/trajectory only", tuple(kept), best, brier(pb, y), 0.0, True)]
    for g in ABLATION_STEPS:
        pb, y, day = run(f"+{g}", [*kept, g])
        rows_ll = _row_log_loss(pb, y)
        ll = float(rows_ll.mean())
        better = ll < best
        se = clustered_se(rows_ll - best_rows, day)
        steps.append(AblationStep(f"+ {g}", (*kept, g), ll, brier(pb, y), ll - best, better, se))
        if progress:
            progress(f"ablation + {g}: log loss {ll:.4f} ({'kept' if better else 'dropped'})")
        if better:
            kept.append(g)
            best, best_rows = ll, rows_ll
    refs: list[AblationStep] = []
    full = list(vectors.VECTOR_GROUPS)
    if set(full) != set(kept):
        pb, y, day = run("full", full)
        rows_ll = _row_log_loss(pb, y)
        ll = float(rows_ll.mean())
        refs.append(
            AblationStep(
                "full vector (all groups)",
                tuple(full),
                ll,
                brier(pb, y),
                ll - best,
                False,
                clustered_se(rows_ll - best_rows, day),
            )
        )
    return steps, _weights_of(kept), refs

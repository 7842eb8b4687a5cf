"""Exact similarity search within a partition: numpy in, dataclasses out, no I/O.

* **Similarity: weighted cosine.** ``sim(x, y) = Σ g_d x_d y_d / (‖x‖_g ‖y‖_g)`` with
  ``‖x‖_g = sqrt(Σ g_d x_d²)`` and ``g`` the per-dimension weights of the feature groups
  (``vectors.group_weights``; a group weight multiplies that group's share of the inner product and
  of both norms; 0 ablates the group). Cosine rather than 1/(1+L2): the stored vectors are robust
  z-scores clipped to ±5, whose norms vary with how extreme a state is; cosine compares the *shape*
  of the state across all groups and lies in [−1, 1], so ``similarity⁴`` is a well-scaled kernel.
  Cosine is scale-invariant, so only unit rows are stored; with non-default weights the rows'
  weighted norms are computed once per weight vector and cached on the partition. Negative
  similarities get weight 0 (an even power would otherwise reward opposite states).
* **Exact top-k with a per-day cap.** ``argpartition`` picks a candidate pool (every row at least
  as similar as the pool's m-th best, so ties at the boundary are all in it), sorted by similarity
  (ties: older row first); a greedy pass keeps at most ``max_per_day`` rows per date; the pool
  grows ×4 until ``k`` are kept or the partition is exhausted. The result equals a greedy pass
  over the fully sorted partition: recall@k = 1.0 by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spymaster.outcomes import PRIMARY_HORIZON_MIN, horizon_index
from spymaster.retrieval.index import F32, F64, I64, Partition, unit_rows

# -- similarity and top-k --------------------------------------------------------------------------


def weighted_similarity(
    unit: F32, query: npt.ArrayLike, g: F32 | None = None, norms: F32 | None = None
) -> F64:
    """Weighted cosine of each row of ``unit`` with ``query`` (0 where either norm is 0).

    ``norms`` are the rows' weighted norms (``Partition.weighted_norms(g)``), computed if omitted.
    """
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != unit.shape[1]:
        raise ValueError(f"query has {q.shape[0]} dims, rows have {unit.shape[1]}")
    if unit.shape[0] == 0:
        return np.zeros(0)
    if g is None:
        qn = float(np.linalg.norm(q))
        if qn == 0:
            return np.zeros(unit.shape[0])
        return (unit @ (q / qn)).astype(np.float64)
    g = np.asarray(g, dtype=np.float32)
    qn = float(np.sqrt(np.dot(g, q * q)))
    if qn == 0:
        return np.zeros(unit.shape[0])
    if norms is None:
        norms = np.sqrt(np.einsum("ij,ij,j->i", unit, unit, g)).astype(np.float32)
    dots = (unit @ (q * g)).astype(np.float64)
    den = norms.astype(np.float64) * qn
    out: F64 = np.divide(dots, den, out=np.zeros_like(dots), where=den > 0)
    return np.clip(out, -1.0, 1.0)


@dataclass(frozen=True)
class Hits:
    """Selected rows of a partition, best first."""

    rows: I64
    similarity: F64
    candidates: int
    """Labelled rows strictly before as_of (the rows searched)."""


def _capped(order: I64, day: npt.NDArray[np.int32], max_per_day: int) -> I64:
    """The rows of ``order`` (best first) kept by a greedy pass allowing ``max_per_day`` per day."""
    d = day[order]
    by_day = np.argsort(d, kind="stable")  # within a day, keeps the similarity order
    ds = d[by_day]
    starts = np.r_[True, ds[1:] != ds[:-1]] if ds.size else np.zeros(0, dtype=bool)
    pos = np.arange(ds.size)
    first = np.maximum.accumulate(np.where(starts, pos, 0)) if ds.size else pos
    occ = np.empty(ds.size, dtype=np.int64)
    occ[by_day] = pos - first
    out: I64 = order[occ < max_per_day]
    return out


def _horizon_and_cut(
    part: Partition, as_of_day: int, k: int, max_per_day: int, horizon: int
) -> tuple[int, int]:
    """The label row of ``horizon`` and the number of rows dated before ``as_of_day`` (the as-of cut)."""
    if k < 1 or max_per_day < 1:
        raise ValueError("k and max_per_day must be at least 1")
    return horizon_index(horizon), part.rows_before(as_of_day)


def search(
    part: Partition,
    query_vec: npt.ArrayLike,
    *,
    as_of_day: int,
    k: int,
    max_per_day: int,
    horizon: int = PRIMARY_HORIZON_MIN,
    dim_weights: F32 | None = None,
) -> Hits:
    """Exact top-``k`` rows dated strictly before ``as_of_day`` with at most ``max_per_day`` per date."""
    if not part.in_memory:
        raise ValueError(f"partition {part.key} is not in memory: search it through its ANN index")
    h, cut = _horizon_and_cut(part, as_of_day, k, max_per_day, horizon)
    unit = part.unit[:cut]
    norms = part.weighted_norms(dim_weights)[:cut] if dim_weights is not None else None
    sims = weighted_similarity(unit, query_vec, dim_weights, norms)
    valid = part.labels[h, :cut] >= 0
    n_valid = int(valid.sum())
    empty = Hits(np.zeros(0, np.int64), np.zeros(0), n_valid)
    if n_valid == 0:
        return empty
    neg = np.where(valid, -sims, np.inf)  # ascending = best first; unlabelled rows last
    m = min(n_valid, max(2 * k, k + 16))
    while True:
        if m < cut:
            kth = np.partition(neg, m - 1)[m - 1]
            pool = np.flatnonzero(neg <= kth)
        else:
            pool = np.flatnonzero(valid)
        pool = pool[np.isfinite(neg[pool])]
        order = pool[np.lexsort((pool, neg[pool]))]
        kept = _capped(order, part.day, max_per_day)[:k]
        if kept.size == k or m >= n_valid:
            return Hits(kept.astype(np.int64), sims[kept], n_valid)
        m = min(n_valid, m * 4)


def rank(
    part: Partition,
    rows: npt.ArrayLike,
    vectors: npt.ArrayLike,
    query_vec: npt.ArrayLike,
    *,
    as_of_day: int,
    k: int,
    max_per_day: int,
    horizon: int = PRIMARY_HORIZON_MIN,
    dim_weights: F32 | None = None,
) -> Hits:
    """Exact top-``k`` among candidate rows of a partition (an ANN index's answer), with their
    vectors: the same similarity, order and day cap as :func:`search`.

    A candidate dated on or after ``as_of_day``, or unlabelled at ``horizon``, is dropped here too,
    whatever the index's filter did: no lookahead depends on the index.
    """
    h, cut = _horizon_and_cut(part, as_of_day, k, max_per_day, horizon)
    n_valid = int(part.cum[h, cut].sum())
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    v = np.asarray(vectors, dtype=np.float32).reshape(r.size, -1)
    keep = (r >= 0) & (r < cut)
    keep[keep] = part.labels[h, r[keep]] >= 0
    r, v = r[keep], v[keep]
    r, first = np.unique(r, return_index=True)
    v = v[first]
    if r.size == 0:
        return Hits(np.zeros(0, np.int64), np.zeros(0), n_valid)
    unit = unit_rows(v)
    norms = None
    if dim_weights is not None:
        norms = np.sqrt(np.einsum("ij,ij,j->i", unit, unit, dim_weights)).astype(np.float32)
    sims = weighted_similarity(unit, query_vec, dim_weights, norms)
    order = np.lexsort((r, -sims))
    kept = _capped(r[order], part.day, max_per_day)[:k]
    at = {int(x): i for i, x in enumerate(r[order].tolist())}
    sim_of = sims[order]
    return Hits(kept.astype(np.int64), np.asarray([sim_of[at[int(x)]] for x in kept.tolist()]), n_valid)

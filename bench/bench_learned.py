"""The learned similarity: query latency at 1 M approach episodes, and the cost of refitting.

    python bench/bench_learned.py [--episodes 1000000] [--queries 200]

Synthetic rows (the layout's dimension count, six kinds, two directions) so the figure does not
depend on a lake; the served search is :meth:`SetupModel.search` over the model's embedded rows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from spymaster.levels import LEVEL_KINDS
from spymaster.retrieval import metric
from spymaster.settings import LEARNED
from spymaster.vectors import VECTOR_DIM


def _rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, VECTOR_DIM)).astype(np.float32)
    # the outcome leans on 40 dimensions with decaying strength: like the lakes' fitted models, the
    # weighted space then needs the full 24-dim basis for 95 % of its variance
    coef = 0.8 * 0.93 ** np.arange(40) * np.where(np.arange(40) % 2, -1.0, 1.0)
    p = 1 / (1 + np.exp(-(raw[:, :40] @ coef)))
    lab = np.where(rng.random(n) < p, "BREAK", np.where(rng.random(n) < 0.7, "REJECT", "CHOP"))
    return raw, rng.choice(LEVEL_KINDS, n), rng.choice(["UP", "DOWN"], n), lab


def _pct(a: list[float]) -> str:
    v = np.asarray(a) * 1e3
    return f"p50 {np.percentile(v, 50):7.2f} ms   p99 {np.percentile(v, 99):7.2f} ms"


def _daily_refit(episodes: int, days: int = 2_500) -> None:
    """What a new trading day costs at ``episodes``: the served population (≈ 1 in 7 episodes are
    approaches) spread over ``days`` (10 years), one model fitted on every earlier row, the
    day's answers issued out of sample, the Platt map and evidence refitted on every earlier
    answer, then the API embedding the history once for the new model. One BLAS thread."""
    n = episodes // 7
    per_day = max(1, n // days)
    raw, kind, direction, lab = _rows(n + per_day, seed=3)
    tr, te = slice(0, n), slice(n, n + per_day)
    y = (lab == "BREAK").astype(np.float64)
    print(
        f"\n## Refit for one new day at {episodes:,} episodes ({n:,} approach rows over {days:,} days,"
        f" {per_day} per day; one BLAS thread)"
    )
    with threadpool_limits(1):
        steps: list[tuple[str, float]] = []
        t0 = time.perf_counter()
        model = metric.fit(raw[tr], kind[tr], direction[tr], lab[tr])
        steps.append((f"fit the metric on {n:,} rows", time.perf_counter() - t0))
        t0 = time.perf_counter()
        z_tr = model.embed(raw[tr], kind[tr], direction[tr])
        z_te = model.embed(raw[te], kind[te], direction[te])
        steps.append(("embed the training rows and the day's rows", time.perf_counter() - t0))
        t0 = time.perf_counter()
        ans = model.search(z_tr, y[tr], z_te)
        steps.append((f"answer the day's {per_day} rows (exact k-NN)", time.perf_counter() - t0))
        # the Platt map and evidence are fitted on every earlier out-of-sample answer: one per row
        rng = np.random.default_rng(4)
        p_past = np.clip(y[tr] * 0.2 + rng.random(n) * 0.8, 1e-3, 1 - 1e-3)
        t0 = time.perf_counter()
        metric.Platt.fit(p_past, y[tr])
        metric.evidence(p_past, y[tr], kind[tr])
        steps.append((f"Platt map + evidence on {n:,} earlier answers", time.perf_counter() - t0))
        t0 = time.perf_counter()
        model.embed(raw[tr], kind[tr], direction[tr]).astype(np.float32)
        steps.append(("the API embeds the history for the new model", time.perf_counter() - t0))
    for label, secs in steps:
        print(f"  {label:<52}{secs:7.2f} s")
    print(f"  {'total per new day':<52}{sum(s for _, s in steps):7.2f} s  ({ans.p_raw.size} answers)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args()
    print("## Refit cost (one model; L2 logistic regression + robust scaling)")
    for n in (4_000, 40_000, 200_000):
        raw, kind, direction, lab = _rows(n)
        t0 = time.perf_counter()
        metric.fit(raw, kind, direction, lab)
        print(f"  {n:>9,} training rows: {time.perf_counter() - t0:6.2f} s")
    _daily_refit(a.episodes)
    print(f"\n## Query latency at {a.episodes:,} episodes (k = {LEARNED.k}, one BLAS thread)")
    raw, kind, direction, lab = _rows(a.episodes)
    model = metric.fit(raw[:20_000], kind[:20_000], direction[:20_000], lab[:20_000])
    t0 = time.perf_counter()
    z = model.embed(raw, kind, direction)
    print(
        f"  embed the history once per model: {time.perf_counter() - t0:.2f} s, {z.nbytes / 2**20:,.0f} MiB (float64)"
    )
    y = (lab == "BREAK").astype(np.float64)
    q = model.embed(raw[: a.queries] + 0.1, kind[: a.queries], direction[: a.queries])
    z32 = z.astype(np.float32)
    sq = np.einsum("ij,ij->i", z32, z32)
    q32 = q.astype(np.float32)
    print(f"  metric space: {z.shape[1]} dims (principal components of the weighted {VECTOR_DIM + 7})")
    with threadpool_limits(1):
        for n in (a.episodes // 7, a.episodes):  # approaches are about 1 in 7 episodes
            lat = []
            for i in range(a.queries):
                t0 = time.perf_counter()
                model.search(z32[:n], y[:n], q32[i : i + 1], train_sq=sq[:n])
                lat.append(time.perf_counter() - t0)
            print(f"  served search (float32, cached norms) over {n:>9,} rows: {_pct(lat)}")
        ref = model.search(z, y, q[:20]).neighbours
        got = model.search(z32, y, q32[:20], train_sq=sq).neighbours
        rec = np.mean([len(set(r) & set(g)) / r.size for r, g in zip(ref, got, strict=True)])
        print(f"  recall@100 of float32 against float64: {rec:.3f}")
        full = metric.SetupModel(
            model.method, model.center, model.scale, model.transform, model.k, model.prior
        )
        zf = full.embed(raw[:100_000], kind[:100_000], direction[:100_000])
        qf = full.embed(raw[:20] + 0.1, kind[:20], direction[:20])
        ref = full.search(zf, y[:100_000], qf).neighbours
        got = model.search(z[:100_000], y[:100_000], q[:20]).neighbours
        rec = np.mean([len(set(r) & set(g)) / r.size for r, g in zip(ref, got, strict=True)])
        print(
            f"  recall@100 of the {z.shape[1]}-dim basis against the full weighted space (100 k rows): {rec:.3f}"
        )


if __name__ == "__main__":
    main()

"""Query latency of the similarity API (issue 5's benchmark): p50 / p99 per query

* in-process, engine only (``retrieval.query`` on an in-memory partition),
* in-process through the ASGI app (httpx ``ASGITransport``, the full FastAPI stack, no socket),
* over HTTP (uvicorn on 127.0.0.1, one keep-alive httpx client),

against exact numpy search over the same partition (``rows @ q`` + ``argpartition``, no per-day
cap), with recall@50 of what the API serves against the exact full sort (per-day cap lifted so
both answer the same question). Two sizes:

* **demo** — the vector table of a generated lake (``--lake PATH``, e.g. ``./lake`` after
  ``make demo``; by default ``--days`` days at ``--scale`` are generated into a temp dir), queried
  by ``episode_id`` and by (date, time, level) — the latter builds the vector from silver;
* **1M** — ``--episodes`` synthetic episodes (random unit vectors, random labels) over the 60
  partitions and 250 trading days, served by the same app from an in-memory index.

    python bench/bench_query.py                 # demo (generated) + 1 M
    python bench/bench_query.py --lake ./lake --queries 500
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import socket
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

GOALS = {"in-process p50": 5.0, "HTTP p50": 20.0, "recall@50": 0.99}


def _pct(xs: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def _row(name: str, xs: Sequence[float], extra: str = "") -> str:
    return f"  {name:<54}{_pct(xs, 50):>9.3f}{_pct(xs, 99):>10.3f}  {extra}"


def _time(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _exact_topk(unit: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """The reference: exact cosine top-k by numpy (argpartition, then sort the k)."""
    sims = unit @ (q / max(float(np.linalg.norm(q)), 1e-30))
    k = min(k, sims.size)
    if k == 0:
        return np.zeros(0, np.int64)
    top = np.argpartition(-sims, k - 1)[:k]
    out: np.ndarray = top[np.argsort(-sims[top], kind="stable")]
    return out


class _Server:
    def __init__(self, app: Any) -> None:
        import httpx
        import uvicorn

        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP; a
        # plain socket.socket() (proto 0) leaves Nagle on and every response stalls ≈ 40 ms on the
        # delayed ACK between uvicorn's header and body writes.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=60)

    def close(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)


def _asgi_latencies(app: Any, bodies: list[dict[str, Any]]) -> list[float]:
    import httpx

    async def run() -> list[float]:
        out = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
            for b in bodies:
                t0 = time.perf_counter()
                r = await c.post("/v1/similar", json=b)
                out.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
        return out

    return asyncio.run(run())


def _http_latencies(server: _Server, bodies: list[dict[str, Any]]) -> list[float]:
    out = []
    for b in bodies:
        t0 = time.perf_counter()
        r = server.client.post("/v1/similar", json=b)
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    return out


def measure(
    label: str,
    index: Any,
    app: Any,
    n_queries: int,
    k: int,
    rng: np.random.Generator,
    state_bodies: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Engine / numpy / ASGI / HTTP latencies and recall@k for ``n_queries`` episode queries."""
    from spymaster import retrieval

    picks = rng.choice(index.episodes, size=min(n_queries, index.episodes), replace=False)
    queries = []
    for i in picks.tolist():
        eid = str(index.ids[i])
        part, row = index.locate(eid)
        queries.append((eid, part, row))
    sizes = [part.rows_before(int(part.day[row])) for _, part, row in queries]

    engine, numpy_t, recall = [], [], []
    for _, part, row in queries:
        q = part.unit[row]
        as_of = int(part.day[row])
        t0 = time.perf_counter()
        retrieval.query(part, q, as_of_day=as_of, k=k, max_per_day=2)
        engine.append(time.perf_counter() - t0)
        cut = part.rows_before(as_of)
        t0 = time.perf_counter()
        exact = _exact_topk(part.unit[:cut], q, k)
        numpy_t.append(time.perf_counter() - t0)
        # recall: the served top-k (day cap lifted) against the exact full sort of the same rows
        served = retrieval.search(part, q, as_of_day=as_of, k=k, max_per_day=k, horizon=2)
        labelled = np.flatnonzero(part.labels[0, :cut] >= 0)
        if labelled.size < cut:
            exact = labelled[_exact_topk(part.unit[labelled], q, k)]
        if exact.size:
            recall.append(len(set(served.rows.tolist()) & set(exact.tolist())) / exact.size)
    bodies = [{"episode_id": eid, "k": k} for eid, _, _ in queries]
    asgi = _asgi_latencies(app, bodies[: max(20, len(bodies) // 2)])
    server = _Server(app)
    try:
        _http_latencies(server, bodies[:5])  # warm the connection
        http = _http_latencies(server, bodies)
        http_state = _http_latencies(server, state_bodies) if state_bodies else []
    finally:
        server.close()
    print(
        f"\n{label}: {index.episodes:,} episodes in {len(index.partitions)} partitions; "
        f"rows searched per query: median {int(statistics.median(sizes)):,}, max {max(sizes):,}"
    )
    print(f"  {'path (k = ' + str(k) + ')':<54}{'p50 ms':>9}{'p99 ms':>10}")
    print(_row("exact numpy search, same partition (reference)", numpy_t))
    print(_row("in-process: engine (top-k, day cap, distribution)", engine))
    print(_row("in-process: ASGI app, POST /v1/similar {episode_id}", asgi))
    print(_row("HTTP: uvicorn, POST /v1/similar {episode_id}", http))
    if http_state:
        print(
            _row("HTTP: POST /v1/similar {date, time, level}", http_state, "(builds the vector from silver)")
        )
    rec = float(np.mean(recall)) if recall else 1.0
    print(f"  recall@{k} vs exact full sort: {rec:.4f} over {len(recall)} queries")
    return {
        "engine_p50": _pct(engine, 50),
        "asgi_p50": _pct(asgi, 50),
        "http_p50": _pct(http, 50),
        "recall": rec,
    }


def demo_index(args: argparse.Namespace, tmp: str) -> tuple[Any, Any, list[dict[str, Any]]]:
    from spymaster import sessions, synth
    from spymaster.api import ApiSettings, create_app
    from spymaster.lake import Lake
    from spymaster.layers import pipeline
    from spymaster.layers.index import index as build_index
    from spymaster.layers.index import read_all
    from spymaster.settings import StorageSettings

    if args.lake:
        lake = Lake(StorageSettings(lake_uri=args.lake))
    else:
        lake = Lake(StorageSettings(lake_uri=tmp))
        t0 = time.perf_counter()
        dates = synth.generate(
            lake,
            dt.date.fromisoformat(args.start),
            args.days,
            scale=args.scale,
            seed=args.seed,
            progress=False,
        )
        pipeline.run(lake.settings, dates, workers=2)
        build_index(lake)
        print(
            f"generated and indexed {args.days} days at scale {args.scale} in {time.perf_counter() - t0:.0f} s"
        )
    app = create_app(ApiSettings(table_check_seconds=3600), lake)
    svc = app.state.service
    t0 = time.perf_counter()
    index = svc.index()
    print(f"demo lake: vector table v{index.version} read into memory in {time.perf_counter() - t0:.2f} s")
    rows = read_all(lake, ["date", "ts", "level_kind"]).to_pylist()
    rng = np.random.default_rng(1)
    state = []
    for i in rng.choice(len(rows), size=min(args.queries // 2, len(rows)), replace=False).tolist():
        r = rows[i]
        et = r["ts"].astimezone(sessions.ET).strftime("%H:%M:%S")
        state.append({"date": r["date"].isoformat(), "time": et, "level_kind": r["level_kind"], "k": 50})
    return index, app, state


def synthetic_index(n: int, seed: int, ann_min_rows: int | None = None) -> Any:
    from spymaster import retrieval, vectors
    from spymaster.levels import DIRECTIONS, LEVEL_KINDS
    from spymaster.outcomes import HORIZONS_MIN
    from spymaster.sessions import day_number

    rng = np.random.default_rng(seed)
    keys = [(k, d, b) for k in LEVEL_KINDS for d in DIRECTIONS for b in range(5)]
    part = rng.integers(0, len(keys), n)
    days0 = day_number(dt.date(2025, 1, 2))
    days = days0 + np.sort(rng.integers(0, 365, n))  # ≈ 250 trading days' worth of dates
    vecs = rng.standard_normal((n, vectors.VECTOR_DIM), dtype=np.float32)
    labels = rng.integers(0, 3, (len(HORIZONS_MIN), n))
    exc = rng.exponential(1.0, (len(HORIZONS_MIN), n))
    t0 = time.perf_counter()
    index = retrieval.Index.build(
        1,
        episode_id=np.char.mod("%016x", np.arange(n, dtype=np.int64)),
        day=days,
        ts=np.arange(n, dtype=np.int64),
        level_kind=[keys[p][0] for p in part.tolist()],
        direction=[keys[p][1] for p in part.tolist()],
        time_bucket=np.array([keys[p][2] for p in part.tolist()]),
        vectors=vecs,
        labels=labels,
        mfe=exc,
        mae=exc,
        ann_min_rows=ann_min_rows,
    )
    print(f"\nsynthetic index of {n:,} episodes built in {time.perf_counter() - t0:.1f} s")
    return index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", help="an existing lake (default: generate one into a temp dir)")
    ap.add_argument("--days", type=int, default=8)
    ap.add_argument("--scale", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", default="2026-03-02")
    ap.add_argument("--episodes", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("-k", type=int, default=50)
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from spymaster.api import ApiSettings, create_app
    from spymaster.serving import Service

    rng = np.random.default_rng(args.seed)
    results: dict[str, dict[str, Any]] = {}
    if not args.skip_demo:
        with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
            index, app, state = demo_index(args, tmp)
            results["demo"] = measure("demo lake", index, app, args.queries, args.k, rng, state)
    if args.episodes:
        index = synthetic_index(args.episodes, args.seed)
        app = create_app(ApiSettings(), service=Service(None, index=index))
        results["1M"] = measure(
            f"{args.episodes:,} synthetic episodes", index, app, args.queries, args.k, rng
        )

    print("\ngoals:")
    for size, r in results.items():
        checks = [
            ("in-process p50", r["engine_p50"], GOALS["in-process p50"], "≤"),
            ("HTTP p50", r["http_p50"], GOALS["HTTP p50"], "≤"),
            ("recall@50", r["recall"], GOALS["recall@50"], "≥"),
        ]
        for name, got, goal, op in checks:
            ok = got <= goal if op == "≤" else got >= goal
            print(f"  {size:<5} {name:<15} {got:>9.3f}  goal {op} {goal:<6} {'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()

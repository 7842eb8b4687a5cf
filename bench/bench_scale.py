"""Where the in-memory design stops: the served index at 1 M and 2 M episodes against an ANN index
on the LanceDB table itself, read from S3 (moto over HTTP).

    python bench/bench_scale.py [--sizes 1000000 2000000] [--partitions 50000 166667]

* **In memory** (what the API does today): a synthetic :class:`retrieval.Index` of N episodes over
  the 60 partitions (``bench_query.synthetic_index``): resident memory it adds, build time, the
  served query (top-50, day cap, distribution) p50/p99 over the largest partitions. 10 M is
  extrapolated linearly from the two sizes (memory per episode and query time per searched row;
  the script prints both sizes so the linearity is visible), and so is the cold-start load, from
  reading an indexer's snapshot of ``--snapshot-rows`` rows from S3.
* **Scale-out** (LanceDB on S3; 30 queries, each a round of S3 requests): one partition's rows in a LanceDB table on the moto server, with
  an IVF-PQ index (cosine; sub-vectors of about 8 dimensions, refined with the full vectors), queried
  per request; p50/p99 and recall@50 against exact numpy search over the same rows. The vectors are
  clustered (a mixture in a 24-dimensional subspace plus noise), as real state vectors are; random
  vectors in 169 dimensions have no neighbourhoods for any index to find.
* **Crossover**: the partition size at which exact in-memory search costs what one ANN query
  costs, and the episode count at which the in-memory index fills a 10 GB Lambda.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_query import synthetic_index

OUT = Path(__file__).parent / "out"
K = 50
LAMBDA_GB = 10.0


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def in_memory(sizes: list[int], queries: int, seed: int) -> list[dict[str, Any]]:
    """Memory, build time and served latency of the in-memory index at each size."""
    from threadpoolctl import threadpool_limits

    from spymaster import retrieval

    out = []
    rng = np.random.default_rng(seed)
    for n in sizes:
        before = _rss()
        t0 = time.perf_counter()
        index = synthetic_index(n, seed)
        build = time.perf_counter() - t0
        added = _rss() - before
        parts = sorted(index.partitions.values(), key=lambda p: -p.unit.shape[0])[:5]
        lat: list[float] = []
        searched: list[int] = []
        with threadpool_limits(1):
            for _ in range(queries):
                part = parts[int(rng.integers(len(parts)))]
                row = int(rng.integers(part.unit.shape[0]))
                as_of = int(part.day[-1]) + 1  # search the whole partition: the worst case
                searched.append(part.rows_before(as_of))
                t0 = time.perf_counter()
                retrieval.query(part, part.unit[row], as_of_day=as_of, k=K, max_per_day=2)
                lat.append(time.perf_counter() - t0)
        res = {
            "episodes": n,
            "rss_added_gb": added / 1e9,
            "bytes_per_episode": added / n,
            "build_s": build,
            "rows_searched": int(statistics.median(searched)),
            "p50_ms": _pct(lat, 50),
            "p99_ms": _pct(lat, 99),
        }
        print(
            f"  {n:>10,} episodes: +{res['rss_added_gb']:.2f} GB resident ({res['bytes_per_episode']:,.0f} B/episode),"
            f" built in {build:.1f} s; query over {res['rows_searched']:,} rows p50 {res['p50_ms']:.2f} ms"
            f" p99 {res['p99_ms']:.2f} ms",
            flush=True,
        )
        out.append(res)
        del index, parts
    return out


def _clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors with neighbourhoods: 200 centres in a 24-dim subspace, spread, plus noise."""
    from spymaster.vectors import VECTOR_DIM

    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((VECTOR_DIM, 24)))[0].T.astype(np.float32)
    centres = rng.standard_normal((200, 24)).astype(np.float32) * 2.0
    pick = rng.integers(0, 200, n)
    low = centres[pick] + rng.standard_normal((n, 24), dtype=np.float32)
    v = low @ basis + 0.3 * rng.standard_normal((n, VECTOR_DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


_MOTO = """
import logging, sys, time
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False).start()
print("up", flush=True)
time.sleep(86_400)
"""


def _moto() -> tuple[subprocess.Popen[str], str]:
    """A moto S3 server in its own process: in this one it would compete with the reads it serves
    for the GIL (a 76 MB GET took 50 s that way)."""
    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", _MOTO, str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert server.stdout is not None
    server.stdout.readline()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="bench")
    return server, endpoint


def snapshot_load(endpoint: str, n: int, seed: int) -> dict[str, float]:
    """Cold-start load of the in-memory path: the indexer's snapshot of ``n`` rows, one GET from S3,
    into partitions (``serving.snapshot.index_from_arrow``)."""
    import pyarrow as pa

    from spymaster import vectors
    from spymaster.lake import Lake, paths
    from spymaster.layers.index import _SNAPSHOT_VERSION, read_snapshot
    from spymaster.levels import DIRECTIONS, LEVEL_KINDS
    from spymaster.outcomes import HORIZONS_MIN, OUTCOMES
    from spymaster.serving.snapshot import index_from_arrow
    from spymaster.settings import StorageSettings

    rng = np.random.default_rng(seed)
    keys = [(k, d, b) for k in LEVEL_KINDS for d in DIRECTIONS for b in range(5)]
    part = rng.integers(0, len(keys), n)
    labels = pa.array(np.asarray(OUTCOMES)[rng.integers(0, 3, n)])
    exc = pa.array(rng.exponential(1.0, n))
    cols: dict[str, Any] = {
        "episode_id": pa.array(np.char.mod("%016x", np.arange(n))),
        "date": pa.array(np.sort(rng.integers(20_000, 20_365, n)).astype(np.int32)).cast(pa.date32()),
        "ts": pa.array(np.arange(n, dtype=np.int64)).cast(pa.timestamp("ns", tz="UTC")),
        "level_kind": pa.array([keys[p][0] for p in part.tolist()]),
        "direction": pa.array([keys[p][1] for p in part.tolist()]),
        "time_bucket": pa.array([keys[p][2] for p in part.tolist()], pa.int8()),
        "stats_version": pa.array(["s1"] * n),
        "vector": vectors.vectors_to_arrow(rng.standard_normal((n, vectors.VECTOR_DIM), dtype=np.float32)),
    }
    for h in HORIZONS_MIN:
        cols[f"label_{h}m"], cols[f"mfe_{h}m"], cols[f"mae_{h}m"] = labels, exc, exc
    table = pa.table(cols).replace_schema_metadata({_SNAPSHOT_VERSION: b"1"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as w:
        w.write_table(table, max_chunksize=65_536)
    del table, cols
    lake = Lake(
        StorageSettings(
            lake_uri="s3://bench/scale",
            endpoint_url=endpoint,
            access_key_id="testing",
            secret_access_key="testing",
        )
    )
    blob = sink.getvalue()
    lake.write_bytes(paths.VECTOR_SNAPSHOT, blob.to_pybytes())
    size = blob.size
    del blob, sink
    t0 = time.perf_counter()
    got = read_snapshot(lake)
    assert got is not None
    t1 = time.perf_counter()
    index_from_arrow(got[0], got[1])
    t2 = time.perf_counter()
    res = {"episodes": n, "mb": size / 1e6, "get_s": t1 - t0, "partitions_s": t2 - t1}
    print(
        f"  snapshot of {n:,} rows ({size / 1e6:,.0f} MB lz4) from S3: GET + decode {t1 - t0:.2f} s,"
        f" into partitions {t2 - t1:.2f} s",
        flush=True,
    )
    return res


def scale_out(
    endpoint: str, sizes: list[int], queries: int, seed: int, budget_s: float = 1e9
) -> list[dict[str, Any]]:
    """An IVF-PQ index on a LanceDB table on S3 per partition size: build, latency, recall@50.
    A size is skipped (and says so) once ``budget_s`` has gone: builds slow down badly on a busy
    machine."""
    import lancedb
    import pyarrow as pa

    from spymaster import vectors
    from spymaster.settings import StorageSettings

    settings = StorageSettings(
        lake_uri="s3://bench/lance",
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
    )
    db = lancedb.connect(settings.lake_uri, storage_options=settings.storage_options())
    out: list[dict[str, Any]] = []
    start = time.perf_counter()
    for p in sizes:
        if out and time.perf_counter() - start > budget_s:
            print(f"  {p:>9,} rows: skipped, past the time budget of {budget_s:.0f} s", flush=True)
            continue
        v = _clustered(p, seed)
        table = db.create_table(
            f"part_{p}",
            pa.table({"row": pa.array(np.arange(p)), "vector": vectors.vectors_to_arrow(v)}),
            mode="overwrite",
        )
        t0 = time.perf_counter()
        parts = max(16, round(float(np.sqrt(p))))
        dim = v.shape[1]
        subs = min((d for d in range(1, dim + 1) if dim % d == 0), key=lambda d: abs(dim / d - 8))
        table.create_index(metric="cosine", index_type="IVF_PQ", num_partitions=parts, num_sub_vectors=subs)
        build = time.perf_counter() - t0
        rng = np.random.default_rng(seed + 1)
        qs = v[rng.integers(0, p, queries)] + 0.05 * rng.standard_normal((queries, v.shape[1])).astype(
            np.float32
        )
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        for nprobes, refine in ((max(1, parts // 20), 4), (max(1, parts // 8), 10)):
            lat: list[float] = []
            recall: list[float] = []
            for q in qs:
                t0 = time.perf_counter()
                got = (
                    table.search(q)
                    .metric("cosine")
                    .nprobes(nprobes)
                    .refine_factor(refine)
                    .limit(K)
                    .select(["row"])
                    .to_arrow()
                )
                lat.append(time.perf_counter() - t0)
                exact = np.argpartition(-(v @ q), K)[:K]
                recall.append(len(set(got.column("row").to_pylist()) & set(exact.tolist())) / K)
            res = {
                "rows": p,
                "ivf_partitions": parts,
                "nprobes": nprobes,
                "refine": refine,
                "build_s": build,
                "p50_ms": _pct(lat, 50),
                "p99_ms": _pct(lat, 99),
                "recall": float(np.mean(recall)),
            }
            print(
                f"  {p:>9,} rows: IVF-PQ ({parts} lists, {subs} sub-vectors) built in {build:.1f} s; nprobes {nprobes:>3}, refine {refine:>2}:"
                f" p50 {res['p50_ms']:.1f} ms p99 {res['p99_ms']:.1f} ms, recall@{K} {res['recall']:.3f}",
                flush=True,
            )
            out.append(res)
        # exact search of the same rows held in memory, for the crossover
        lat = []
        for q in qs:
            t0 = time.perf_counter()
            np.argpartition(-(v @ q), K)[:K]
            lat.append(time.perf_counter() - t0)
        out[-1]["exact_numpy_p50_ms"] = _pct(lat, 50)
        del v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000])
    ap.add_argument("--partitions", type=int, nargs="+", default=[50_000, 166_667])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--snapshot-rows", type=int, default=200_000, help="rows of the snapshot read from S3")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds for the LanceDB part")
    args = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("LANCE_LOG", "error")  # a deprecation warning per search otherwise
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("in-memory index (what the API serves), synthetic episodes over 60 partitions:")
    mem = in_memory(sorted(args.sizes), args.queries, args.seed)
    server, endpoint = _moto()
    try:
        load = snapshot_load(endpoint, args.snapshot_rows, args.seed)
        print("scale-out: one partition in a LanceDB table on S3 (moto over HTTP), IVF-PQ, cosine:")
        ann = scale_out(endpoint, sorted(args.partitions), min(args.queries, 30), args.seed, args.budget)
    finally:
        server.terminate()
        server.wait()
    print(f"load after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    # Extrapolation: linear in episodes (memory) and in rows searched (exact search time)
    a, b = mem[0], mem[-1]
    per_ep = b["bytes_per_episode"]
    per_row_ms = (b["p50_ms"] - a["p50_ms"]) / max(1, b["rows_searched"] - a["rows_searched"])
    fixed_ms = a["p50_ms"] - per_row_ms * a["rows_searched"]
    n10 = 10_000_000
    rows10 = b["rows_searched"] * n10 / b["episodes"]
    p50_10 = fixed_ms + per_row_ms * rows10
    load10 = (load["get_s"] + load["partitions_s"]) * n10 / load["episodes"]
    max_eps = LAMBDA_GB * 1e9 * 0.8 / per_ep  # leave a fifth of the Lambda for the rest of the process
    best = max((r for r in ann if r["recall"] >= 0.95), key=lambda r: r["rows"], default=ann[-1])
    crossover_rows = max(0.0, (best["p50_ms"] - fixed_ms) / per_row_ms) if per_row_ms > 0 else float("inf")
    print()
    print("extrapolated to 10 M episodes (linear from the sizes above):")
    print(
        f"  in memory: {per_ep * n10 / 1e9:.1f} GB resident, load from the snapshot ≈ {load10:.0f} s,"
        f" query p50 ≈ {p50_10:.1f} ms over ≈ {rows10:,.0f} rows per partition"
    )
    print(
        f"  a 10 GB Lambda holds ≈ {max_eps / 1e6:.1f} M episodes in memory (80 % of it for the index at"
        f" {per_ep:,.0f} B/episode)"
    )
    print(
        f"  scale-out p50 {best['p50_ms']:.0f} ms (recall {best['recall']:.3f}) at {best['rows']:,} rows per partition;"
        f" in-memory exact search costs that at ≈ {crossover_rows:,.0f} rows per partition (crossover)"
    )
    OUT.mkdir(exist_ok=True)
    with open(OUT / "scale.jsonl", "a") as f:
        f.write(
            json.dumps(
                {
                    "at": dt.datetime.now(dt.UTC).isoformat(),
                    "in_memory": mem,
                    "snapshot_load": load,
                    "scale_out": ann,
                    "extrapolated_10m": {
                        "gb": per_ep * n10 / 1e9,
                        "load_s": load10,
                        "p50_ms": p50_10,
                        "lambda_max_episodes": max_eps,
                        "crossover_rows": crossover_rows,
                    },
                }
            )
            + "\n"
        )


if __name__ == "__main__":
    main()

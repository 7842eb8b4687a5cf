"""Where the in-memory design stops, and the ANN path that takes over (issue 16 goal 4).

    python bench/bench_scale.py [--sizes 1000000 2000000] [--ann-rows 50000] [--ann-parts 4]

* **In memory** (what the API serves below ``settings.ANN.min_rows``): a synthetic
  :class:`retrieval.Index` of N episodes over the 60 partitions (``bench_query.synthetic_index``):
  resident memory it adds, build time, the served query (top-50, day cap, distribution) p50/p99
  over the largest partitions; the same at the largest size with every partition's vectors left
  out (what an ANN-served partition still holds). 10 M is extrapolated linearly from the sizes
  (memory per episode and query time per searched row; both sizes are printed so the linearity is
  visible), and so is the cold-start load from the indexer's snapshot of ``--snapshot-rows`` rows
  read from S3 in one GET (``Lake.read_bytes``).
* **ANN on the LanceDB table** (the served query shape: ``ANN.pool`` × 50 candidates with their
  vectors, re-ranked exactly; ``ANN.nprobes``, ``ANN.refine_factor``): clustered vectors (a mixture
  in a 24-dimensional subspace plus noise, as real state vectors are; random vectors in 162
  dimensions have no neighbourhoods for any index to find) in ``--ann-parts`` partitions of
  ``--ann-rows`` rows. Three tables on local disk: one partition alone with IVF-PQ, the same with
  IVF-HNSW-SQ, and all partitions in one table with IVF-HNSW-SQ (searched with the partition
  prefilter, as served, and without a filter as one partition of all the rows). The same tables
  copied to S3 (moto over HTTP, its own process) and searched again, so the S3 requests' cost is
  separated from the index's. p50/p99 and recall@50 against exact search over the partition.
* **Crossover**: the partition size at which exact in-memory search costs one ANN query, and the
  episode count at which the in-memory index fills a 10 GB Lambda (with and without vectors).
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
    """Memory, build time and served latency of the in-memory index at each size, each size in a
    forked process of its own: in one process the larger index reuses the pages the smaller one
    released, and its resident growth understates its bytes per episode (1 M then 2 M read 1,012
    then 804 B/episode that way)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    out = []
    for n in sizes:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as pool:
            out.append(pool.submit(_one_size, n, queries, seed).result())
    return out


def _one_size(n: int, queries: int, seed: int) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from spymaster import retrieval

    rng = np.random.default_rng(seed)
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
    return res


def _array_bytes(index: Any) -> int:
    """Bytes of every array the index holds (partitions and the id lookup): what stays resident,
    free of the allocator's reuse of memory released by an earlier index."""
    total = sum(a.nbytes for a in (index.ids, index.id_part, index.id_row, index.pool_days, index.pool_cum))
    for p in index.partitions.values():
        total += sum(a.nbytes for a in (p.unit, p.day, p.ts, p.episode_id, p.labels, p.mfe, p.mae, p.cum))
    return int(total)


def metadata_only(n: int, seed: int) -> dict[str, Any]:
    """Array bytes per episode with every partition's vectors (served by ANN) and without."""
    index = synthetic_index(n, seed, ann_min_rows=0)
    assert not any(p.in_memory for p in index.partitions.values())
    lean = _array_bytes(index)
    del index
    index = synthetic_index(n, seed)
    full = _array_bytes(index)
    del index
    res = {"episodes": n, "array_bytes_per_episode": full / n, "metadata_bytes_per_episode": lean / n}
    print(
        f"  {n:>10,} episodes, array bytes: {full / n:,.0f} B/episode with vectors,"
        f" {lean / n:,.0f} B/episode without (every partition on ANN)",
        flush=True,
    )
    return res


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

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", _MOTO, str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert server.stdout is not None
    server.stdout.readline()
    endpoint = f"http://127.0.0.1:{port}"
    _s3(endpoint).create_bucket(Bucket="bench")
    return server, endpoint


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _settings(endpoint: str, uri: str) -> Any:
    from spymaster.settings import StorageSettings

    return StorageSettings(
        lake_uri=uri, endpoint_url=endpoint, access_key_id="testing", secret_access_key="testing"
    )


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
    lake = Lake(_settings(endpoint, "s3://bench/scale"))
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
    decoded = got[0].nbytes
    res = {
        "episodes": n,
        "mb": size / 1e6,
        "get_s": t1 - t0,
        "partitions_s": t2 - t1,
        "decoded_bytes_per_episode": decoded / n,
    }
    print(
        f"  snapshot of {n:,} rows ({size / 1e6:,.0f} MB lz4) from S3, one GET: GET + decode {t1 - t0:.2f} s"
        f" ({decoded / n:,.0f} B/row decoded, transient), into partitions {t2 - t1:.2f} s",
        flush=True,
    )
    return res


def _build_tables(
    root: str, rows: int, parts: int, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The three ANN tables on local disk (see the module doc); returns vectors, partition codes
    and build seconds per table."""
    import warnings

    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfHnswSq, IvfPq

    from spymaster import vectors
    from spymaster.layers.index import ann_lists, ann_sub_vectors

    v = _clustered(rows * parts, seed)
    code = np.repeat(np.arange(parts), rows)
    db = lancedb.connect(root)
    builds: dict[str, float] = {}

    def table(name: str, sel: np.ndarray) -> Any:
        return db.create_table(
            name,
            pa.table(
                {
                    "row": pa.array(np.flatnonzero(sel)),
                    "partition": pa.array([f"p{c}" for c in code[sel].tolist()]),
                    "vector": vectors.vectors_to_arrow(v[sel]),
                }
            ),
            mode="overwrite",
        )

    own = code == 0
    for name, sel, kind in (
        ("own_pq", own, "IVF_PQ"),
        ("own_hnsw", own, "IVF_HNSW_SQ"),
        ("shared_hnsw", np.ones(code.size, bool), "IVF_HNSW_SQ"),
    ):
        t = table(name, sel)
        n = int(sel.sum())
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name.startswith("shared"):
                t.create_scalar_index("partition", index_type="BITMAP")
        config = (
            IvfPq(distance_type="cosine", num_partitions=ann_lists(n), num_sub_vectors=ann_sub_vectors())
            if kind == "IVF_PQ"
            else IvfHnswSq(distance_type="cosine", num_partitions=ann_lists(n))
        )
        t.create_index("vector", config=config)
        builds[name] = time.perf_counter() - t0
        print(f"  built {name}: {n:,} rows, {kind}, {ann_lists(n)} lists, {builds[name]:.1f} s", flush=True)
    return v, code, builds


def _ann_queries(
    db: Any, v: np.ndarray, code: np.ndarray, queries: int, seed: int, where: str
) -> list[dict[str, Any]]:
    """The served query shape against each table; recall@50 of the exact re-rank of the returned
    candidates against exact search over the partition."""
    from spymaster.settings import ANN

    rng = np.random.default_rng(seed + 1)
    rows0 = np.flatnonzero(code == 0)
    configs = (
        ("one partition alone, IVF-PQ", "own_pq", None, rows0, "IVF_PQ"),
        ("one partition alone, IVF-HNSW-SQ", "own_hnsw", None, rows0, "IVF_HNSW_SQ"),
        (
            "one table, partition prefilter, IVF-HNSW-SQ",
            "shared_hnsw",
            "partition = 'p0'",
            rows0,
            "IVF_HNSW_SQ",
        ),
        (
            "one table, all its rows as one partition",
            "shared_hnsw",
            None,
            np.arange(code.size),
            "IVF_HNSW_SQ",
        ),
    )
    limit = K * ANN.pool
    out = []
    for label, name, flt, rows, kind in configs:
        if where == "S3" and flt is None and rows.size > rows0.size:
            continue  # a 200 k-row partition from moto: minutes, and disk already shows the index's cost
        t = db.open_table(name)
        sub = v[rows]
        qs = sub[rng.integers(0, rows.size, queries)] + 0.05 * rng.standard_normal(
            (queries, v.shape[1])
        ).astype(np.float32)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        lat: list[float] = []
        recall: list[float] = []
        first = 0.0
        for i, q in enumerate(qs):
            t0 = time.perf_counter()
            s = (
                t.search(q, vector_column_name="vector")
                .distance_type("cosine")
                .nprobes(ANN.nprobes)
                .refine_factor(ANN.refine_factor)
                .limit(limit)
                .select(["row", "vector"])
            )
            if flt:
                s = s.where(flt, prefilter=True)
            if kind == "IVF_HNSW_SQ":
                s = s.ef(max(limit * max(1, ANN.refine_factor), 64))
            got = s.to_arrow()
            cand = np.asarray(got.column("row").to_pylist())
            cv = np.asarray(got.column("vector").to_pylist(), dtype=np.float32)
            top = cand[np.argsort(-(cv @ q))[:K]] if cand.size else cand
            dt_s = time.perf_counter() - t0
            if i == 0:
                first = dt_s
            else:
                lat.append(dt_s)
            exact = rows[np.argpartition(-(sub @ q), K)[:K]]
            recall.append(len(set(top.tolist()) & set(exact.tolist())) / K)
        res = {
            "where": where,
            "config": label,
            "rows": int(rows.size),
            "table_rows": int(t.count_rows()),
            "first_ms": first * 1e3,
            "p50_ms": _pct(lat, 50),
            "p99_ms": _pct(lat, 99),
            "recall": float(np.mean(recall)),
        }
        print(
            f"  {where:<5} {label:<46} {res['rows']:>8,} rows: first {res['first_ms']:8.1f} ms,"
            f" p50 {res['p50_ms']:8.1f} ms p99 {res['p99_ms']:8.1f} ms, recall@{K} {res['recall']:.3f}",
            flush=True,
        )
        out.append(res)
    return out


def _exact_ms(v: np.ndarray, n: int, queries: int, seed: int) -> dict[str, float]:
    """Exact numpy search over n rows held in memory (the in-memory path's core), p50/p99."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed + 2)
    sub = v[:n]
    lat: list[float] = []
    with threadpool_limits(1):
        for q in sub[rng.integers(0, n, queries)]:
            t0 = time.perf_counter()
            np.argpartition(-(sub @ q), K)[:K]
            lat.append(time.perf_counter() - t0)
    return {"rows": n, "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99)}


def _upload(endpoint: str, root: Path, prefix: str) -> None:
    s3 = _s3(endpoint)
    for f in root.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "bench", f"{prefix}/{f.relative_to(root)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000])
    ap.add_argument("--ann-rows", type=int, default=50_000, help="rows per partition of the ANN tables")
    ap.add_argument("--ann-parts", type=int, default=4, help="partitions in the shared ANN table")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument(
        "--s3-queries", type=int, default=6, help="queries per table on moto S3 (the first, cold, apart)"
    )
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--snapshot-rows", type=int, default=200_000, help="rows of the snapshot read from S3")
    args = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("LANCE_LOG", "error")  # a deprecation warning per search otherwise
    import tempfile

    import lancedb

    from spymaster.settings import ANN

    t_start = time.perf_counter()
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"served ANN settings: min_rows {ANN.min_rows}, {ANN.index_type}, nprobes {ANN.nprobes},"
        f" refine {ANN.refine_factor}, pool {ANN.pool} x k"
    )
    print("in-memory index (what the API serves), synthetic episodes over 60 partitions:")
    mem = in_memory(sorted(args.sizes), args.queries, args.seed)
    meta = metadata_only(min(args.sizes), args.seed)
    server, endpoint = _moto()
    try:
        load = snapshot_load(endpoint, args.snapshot_rows, args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            print(
                f"ANN on the LanceDB table: {args.ann_parts} partitions x {args.ann_rows:,} clustered rows, cosine,"
                f" the served query ({ANN.pool} x {K} candidates with vectors, re-ranked exactly):"
            )
            v, code, builds = _build_tables(tmp, args.ann_rows, args.ann_parts, args.seed)
            ann = _ann_queries(lancedb.connect(tmp), v, code, args.queries, args.seed, "disk")
            _upload(endpoint, Path(tmp), "ann")
            s3 = lancedb.connect(
                "s3://bench/ann", storage_options=_settings(endpoint, "s3://bench/ann").storage_options()
            )
            ann += _ann_queries(s3, v, code, args.s3_queries, args.seed, "S3")
            exact = [_exact_ms(v, n, args.queries, args.seed) for n in (args.ann_rows, v.shape[0])]
            for e in exact:
                print(
                    f"  exact numpy search in memory over {e['rows']:,} rows: p50 {e['p50_ms']:.2f} ms"
                    f" p99 {e['p99_ms']:.2f} ms",
                    flush=True,
                )
            del v, code
    finally:
        server.terminate()
        server.wait()
    print(f"load after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    # Extrapolation: linear in episodes (memory) and in rows searched (exact search time)
    a, b = mem[0], mem[-1]
    per_ep = b["bytes_per_episode"]
    per_row_ms = (b["p50_ms"] - a["p50_ms"]) / max(1, b["rows_searched"] - a["rows_searched"])
    if per_row_ms <= 0:  # a noisy pair of sizes: fall back to the larger size's ratio
        per_row_ms = b["p50_ms"] / b["rows_searched"]
    fixed_ms = max(0.0, a["p50_ms"] - per_row_ms * a["rows_searched"])
    n10 = 10_000_000
    rows10 = b["rows_searched"] * n10 / b["episodes"]
    p50_10 = fixed_ms + per_row_ms * rows10
    p99_10 = b["p99_ms"] * rows10 / b["rows_searched"]
    load10 = (load["get_s"] + load["partitions_s"]) * n10 / load["episodes"]
    usable = LAMBDA_GB * 1e9 * 0.8  # leave a fifth of the Lambda for the rest of the process
    max_eps = usable / per_ep
    peak_eps = usable / (per_ep + load["decoded_bytes_per_episode"])
    # the resident figure scaled by the share of its arrays that is not vectors
    meta_per_ep = per_ep * meta["metadata_bytes_per_episode"] / meta["array_bytes_per_episode"]
    max_eps_meta = usable / meta_per_ep
    chosen = [r for r in ann if r["config"] == "one table, partition prefilter, IVF-HNSW-SQ"]
    disk = next(r for r in chosen if r["where"] == "disk")
    s3r = next(r for r in chosen if r["where"] == "S3")
    cross_disk = (disk["p50_ms"] - fixed_ms) / per_row_ms
    cross_s3 = (s3r["p50_ms"] - fixed_ms) / per_row_ms
    print()
    print("extrapolated to 10 M episodes (linear from the sizes above):")
    print(
        f"  in memory: {per_ep * n10 / 1e9:.1f} GB resident, load from the snapshot ≈ {load10:.0f} s"
        f" (+ {load['decoded_bytes_per_episode'] * n10 / 1e9:.1f} GB decoded while loading),"
        f" query p50 ≈ {p50_10:.1f} ms p99 ≈ {p99_10:.1f} ms over ≈ {rows10:,.0f} rows per partition"
    )
    print(
        f"  a 10 GB Lambda (80 % for the index) holds ≈ {max_eps / 1e6:.1f} M episodes in memory at"
        f" {per_ep:,.0f} B/episode, ≈ {peak_eps / 1e6:.1f} M counting the snapshot decoded at load;"
        f" with every partition on ANN (≈ {meta_per_ep:,.0f} B/episode resident)"
        f" ≈ {max_eps_meta / 1e6:.0f} M"
    )
    print(
        f"  crossover: exact in-memory search costs one served ANN query (prefiltered, p50"
        f" {disk['p50_ms']:.1f} ms on disk, {s3r['p50_ms']:.0f} ms on moto S3) at ≈ {cross_disk:,.0f} rows"
        f" (disk) / ≈ {cross_s3:,.0f} rows (moto S3) per partition; ANN wins on memory, not on latency"
    )
    print(
        "caveats: moto is one Python process answering over loopback HTTP on the same 2 cores, so the"
        " S3 figures are moto's per-request cost (each LanceDB search is several sequential ranged GETs),"
        " not S3's; the ANN tables are clustered synthetic vectors, the in-memory index random ones"
        " (exact search does not care); 10 M is extrapolated, not run (2 M is the largest size held);"
        f" {args.s3_queries} queries per table on S3, {args.queries} elsewhere"
    )
    print(f"total {time.perf_counter() - t_start:.0f} s")
    OUT.mkdir(exist_ok=True)
    with open(OUT / "scale.jsonl", "a") as f:
        f.write(
            json.dumps(
                {
                    "at": dt.datetime.now(dt.UTC).isoformat(),
                    "in_memory": mem,
                    "metadata_only": meta,
                    "snapshot_load": load,
                    "ann_builds_s": builds,
                    "ann": ann,
                    "exact": exact,
                    "extrapolated_10m": {
                        "gb": per_ep * n10 / 1e9,
                        "load_s": load10,
                        "p50_ms": p50_10,
                        "p99_ms": p99_10,
                        "lambda_max_episodes": max_eps,
                        "lambda_max_episodes_at_load": peak_eps,
                        "lambda_max_episodes_ann": max_eps_meta,
                        "crossover_rows_disk": cross_disk,
                        "crossover_rows_s3": cross_s3,
                    },
                }
            )
            + "\n"
        )


if __name__ == "__main__":
    main()

"""The streams: per-date job cost, one projection fit, and the API's answer latency, on a lake.

    python bench/bench_streams.py --lake /tmp/s15lake [--repeat 20]

Needs a lake run through the pipeline (gold ``streams`` committed); writes nothing to it (the
job's compute is timed without its commit, the fit on the lake's own training windows).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from spymaster.lake import Lake, committed_dates, paths, read_committed
from spymaster.lake.paths import Layer
from spymaster.layers import streams as job
from spymaster.serving.streams import StreamsView
from spymaster.settings import StorageSettings
from spymaster.streams import compute, projection


def _pct(a: list[float]) -> str:
    v = np.asarray(a) * 1e3
    return f"p50 {np.percentile(v, 50):8.2f} ms   p99 {np.percentile(v, 99):8.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    lake = Lake(StorageSettings(lake_uri=a.lake))
    days = committed_dates(lake, Layer.GOLD, paths.STREAMS_TABLE)
    d = days[-1]
    print(f"## Streams job for {d} ({job.SCALING_WINDOW_DAYS}-day scaling window, warm process)")
    job.scaling_for(lake, days[-2])  # imports and the exchange calendar load once per process
    t0 = time.perf_counter()
    sc, hist = job.scaling_for(lake, d)
    t1 = time.perf_counter()
    state = read_committed(lake, Layer.SILVER, paths.STATE_TABLE, d)
    t2 = time.perf_counter()
    out = compute(state, sc)
    t3 = time.perf_counter()
    print(
        f"  scaling on {len(hist)} earlier days: {t1 - t0:.2f} s; read state: {t2 - t1:.2f} s; "
        f"compute {out.num_rows} rows: {t3 - t2:.3f} s"
    )
    train = [x for x in days if x < d][-job.PROJECTION_WINDOW_DAYS :]
    tables = pa.concat_tables([job.read_streams(lake, x) for x in train])
    with threadpool_limits(limits=1, user_api="blas"):
        t0 = time.perf_counter()
        projection.fit(tables, tuple(train))
        fit_s = time.perf_counter() - t0
    print(
        f"\n## One projection model ({len(train)} days, {tables.num_rows:,} rows, 9 streams × 10 horizons × 3 quantiles)"
    )
    print(f"  fit: {fit_s:.2f} s (one BLAS thread)")
    view = StreamsView(lake)
    view.answer(d, "PM_HIGH")  # warm the date's cache
    lat: list[float] = []
    for i in range(a.repeat):
        at = dt.time(10 + i % 2, (7 * i) % 60)
        t0 = time.perf_counter()
        view.answer(d, "PM_HIGH", at, "LONG")
        lat.append(time.perf_counter() - t0)
    print(f"\n## GET /v1/days/{{date}}/streams, in-process, cached date ({a.repeat} answers)\n  {_pct(lat)}")


if __name__ == "__main__":
    main()

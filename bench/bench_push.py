"""The push hop's latency: ``Hub.publish`` → the update received by an SSE client over HTTP.

The real app (``create_app`` with a live hub) runs under uvicorn on 127.0.0.1; subscribers read
``GET /v1/live/stream`` with httpx in threads of this process; a publisher thread publishes
``--rate`` updates a second (a mix shaped like the engine's: state per level, levels, bars,
answers) for ``--seconds``. Each client notes ``time.time_ns()`` on receipt minus the event's
``published_ns`` (one clock: same machine). Printed per subscriber count: p50 / p99 / max in ms,
events received, drops. The clients share the server's process (and GIL): a pessimistic setup
next to a browser in its own process.

Then the source's throughput: a generated day (``--source-scale``) from the local gateway through
the real client and ``DatabentoSource``, as fast as it goes (records/s).

    python bench/bench_push.py                        # 1 and 10 subscribers, 200 updates/s, 15 s
    python bench/bench_push.py --subscribers 1 --rate 1000 --seconds 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np

from spymaster.live.hub import Hub
from spymaster.live.types import Update

DATE = "2026-03-03"
GOAL_P99_MS = 50.0
LEVELS = ("PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW", "SMA_90", "EMA_20")


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _update(i: int) -> Update:
    """The i-th update of a mix like the engine's: 6 state rows, then levels, a bar, an answer."""
    now = time.time_ns()
    t = f"2026-03-03T15:{(i // 60) % 60:02d}:{i % 60:02d}Z"
    k = i % 9
    if k < 6:
        payload: dict[str, Any] = {"t": t, "level_kind": LEVELS[k], **{f"f{j}": j * 0.5 for j in range(40)}}
        return Update("state", DATE, i, now, LEVELS[k], payload)
    if k == 6:
        return Update("levels", DATE, i, now, None, {"t": t, "levels": dict.fromkeys(LEVELS, 5000.25)})
    if k == 7:
        return Update("bar", DATE, i, now, None, {"t": t, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5})
    probs = {"BREAK": 0.3, "REJECT": 0.5, "CHOP": 0.2}
    return Update(
        "answer", DATE, i, now, "OR_HIGH", {"t": t, "p": probs, "interval": {}, "n": 50, "n_eff": 31.2}
    )


def _client(
    url: str, out: list[float], stop: threading.Event, ready: threading.Barrier, counts: dict[str, int]
) -> None:
    with httpx.stream("GET", f"{url}/v1/live/stream", params={"date": DATE}, timeout=60) as resp:
        resp.raise_for_status()
        ready.wait()
        data = None
        for line in resp.iter_lines():
            if line.startswith("data:"):
                data = line[5:]
            elif not line and data is not None:
                now = time.time_ns()
                body = json.loads(data)
                data = None
                if "published_ns" in body and body["kind"] != "status":
                    out.append((now - body["published_ns"]) / 1e6)
                    counts["dropped"] = body["dropped"]
                    counts["coalesced"] = body["coalesced"]
                if stop.is_set():
                    return


def run(subscribers: int, rate: float, seconds: float) -> dict[str, Any]:
    from spymaster.api import create_app

    hub = Hub(DATE, queue_size=4096)
    with _serve(create_app(live=hub)) as url:
        stop = threading.Event()
        ready = threading.Barrier(subscribers + 1)
        outs: list[list[float]] = [[] for _ in range(subscribers)]
        counts: list[dict[str, int]] = [{"dropped": 0, "coalesced": 0} for _ in range(subscribers)]
        threads = [
            threading.Thread(target=_client, args=(url, outs[i], stop, ready, counts[i]), daemon=True)
            for i in range(subscribers)
        ]
        for t in threads:
            t.start()
        ready.wait(30)
        time.sleep(0.2)
        n = int(rate * seconds)
        t0 = time.monotonic()
        for i in range(n):
            hub.publish([_update(i)], arrival_ns=time.time_ns())
            delay = t0 + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        time.sleep(0.5)
        stop.set()
        hub.publish([_update(n)], arrival_ns=time.time_ns())  # wakes the clients to see the stop
        for t in threads:
            t.join(10)
    lat = np.concatenate([np.asarray(o) for o in outs]) if any(outs) else np.zeros(0)
    return {
        "subscribers": subscribers,
        "rate": rate,
        "published": n,
        "received": int(lat.size),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "dropped": sum(c["dropped"] for c in counts),
        "coalesced": sum(c["coalesced"] for c in counts),
    }


def source_throughput(scale: float) -> dict[str, Any]:
    """Records a second from the local gateway through the real ``databento.Live`` client and
    :class:`DatabentoSource` (dedupe included), one generated day from the Globex open."""
    import datetime as dt
    import tempfile

    from spymaster import synth
    from spymaster.lake import Lake
    from spymaster.live.databento_source import DatabentoSource
    from spymaster.live.gateway import LocalGateway, lake_feed
    from spymaster.settings import DatabentoLiveSettings, StorageSettings

    key = "db-bench00000000000000000000bench"
    day = dt.date(2026, 3, 3)
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(StorageSettings(lake_uri=f"{tmp}/lake"))
        synth.generate(lake, day, 1, scale=scale, seed=1, progress=False)
        with LocalGateway(lake_feed(lake, day), api_key=key) as gw:
            settings = DatabentoLiveSettings(
                DATABENTO_API_KEY=key, DATABENTO_LIVE_GATEWAY="127.0.0.1", DATABENTO_LIVE_PORT=gw.port
            )
            t0 = time.perf_counter()
            n = sum(1 for _ in DatabentoSource(settings, day))
            secs = time.perf_counter() - t0
    return {"records": n, "seconds": secs, "per_s": n / secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--rate", type=float, default=200.0, help="updates published per second")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument(
        "--source-scale", type=float, default=0.1, help="day size for the source throughput (0: skip)"
    )
    args = ap.parse_args()
    print(f"push hop: Hub.publish → SSE client over HTTP; {args.rate:g} updates/s for {args.seconds:g} s")
    print(
        f"{'subs':>5} {'published':>10} {'received':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'dropped':>8} {'coalesced':>10}"
    )
    for subs in args.subscribers:
        r = run(subs, args.rate, args.seconds)
        print(
            f"{r['subscribers']:>5} {r['published']:>10} {r['received']:>9} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['max_ms']:>8.2f} {r['dropped']:>8} {r['coalesced']:>10}"
            + ("" if r["p99_ms"] <= GOAL_P99_MS else f"   (p99 above the {GOAL_P99_MS:g} ms budget)")
        )
    if args.source_scale > 0:
        t = source_throughput(args.source_scale)
        print(
            f"source: local gateway → databento.Live → DatabentoSource, day at scale {args.source_scale:g}: "
            f"{t['records']:,} records in {t['seconds']:.2f} s = {t['per_s']:,.0f} records/s"
        )


if __name__ == "__main__":
    main()

"""The API over real HTTP (uvicorn on 127.0.0.1, httpx) against a lake built from generated days:
every endpoint, as-of safety, the per-day cap, bad inputs, auth, the query vector built exactly
as the pipeline builds it, the served estimator (pooled prior, interval cap, default weights), the
evaluation report and its files, a table reload, and the same app over S3 (moto server)."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
import uvicorn
from fastapi import FastAPI
from scipy.stats import beta

from spymaster import evaluation, sessions, synth, vectors
from spymaster.api import ApiSettings, create_app
from spymaster.lake import Lake, paths, read_committed, read_manifest
from spymaster.lake.paths import Layer
from spymaster.layers import index, pipeline
from spymaster.retrieval import calibration
from spymaster.serving import Service
from spymaster.settings import StorageSettings
from tests.support import s3_settings

START = dt.date(2026, 3, 2)
N_DAYS = 7
SCALE = 0.02
SEED = 7
NS = 1_000_000_000
LAKE_PREFIXES = ("silver", "gold", "_manifests", "vectors")
"""What the API reads: a copy of these is a complete lake for it."""


# -- the demo lake, built once per test session (shared with the fuzz and handler tests) ------------


@dataclass(frozen=True)
class Demo:
    lake: Lake
    dates: list[dt.date]
    episodes: pa.Table
    """The vector table's rows (normalised vectors; no raw copy)."""


def demo_lake(factory: pytest.TempPathFactory) -> Demo:
    """Generate → bronze → silver → gold → index, once per session: later callers (any module)
    find the finished lake under the session's base temp dir."""
    root = factory.getbasetemp() / "api-demo-lake"
    done = root / "_built"
    lake = Lake(StorageSettings(lake_uri=str(root)))
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        lake = Lake(StorageSettings(lake_uri=str(root)))
        dates = synth.generate(lake, START, N_DAYS, scale=SCALE, seed=SEED, progress=False)
        results = pipeline.run(lake.settings, dates)
        assert all(r.ok for r in results), [r.error for r in results]
        index.index(lake)
        done.write_text("\n".join(d.isoformat() for d in dates))
    dates = [dt.date.fromisoformat(x) for x in done.read_text().split()]
    rows = index.read_all(lake).drop(["raw"])
    return Demo(lake, dates, rows)


def copy_lake_to_s3(src: Lake, endpoint: str) -> Lake:
    """The API's part of a local lake copied to a fresh prefix of the moto bucket."""
    dst = Lake(s3_settings(endpoint, f"api-{uuid.uuid4().hex[:10]}"))
    for prefix in LAKE_PREFIXES:
        for rel in src.list_files(prefix):
            dst.put_file(src.path(rel), rel)
    return dst


# -- a real server ---------------------------------------------------------------------------------


class Served:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP; a
        # plain socket.socket() (proto 0) leaves Nagle on and every response stalls ≈ 40 ms on the
        # delayed ACK between uvicorn's header and body writes.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def close(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return demo_lake(tmp_path_factory)


@pytest.fixture(scope="session")
def served(demo: Demo) -> Iterator[Served]:
    s = Served(create_app(ApiSettings(), demo.lake))
    yield s
    s.close()


@pytest.fixture(scope="session")
def http(served: Served) -> httpx.Client:
    return served.client


def _ep(demo: Demo, i: int) -> dict[str, Any]:
    return demo.episodes.slice(i, 1).drop(["vector"]).to_pylist()[0]


def _et(ts: Any) -> str:
    return ts.astimezone(sessions.ET).strftime("%H:%M:%S")


def _sample(demo: Demo, n: int, *, skip_first_day: bool = True, seed: int = 0) -> list[dict[str, Any]]:
    dates = demo.episodes.column("date").to_pylist()
    ok = [i for i, d in enumerate(dates) if not skip_first_day or d > demo.dates[0]]
    rng = np.random.default_rng(seed)
    return [_ep(demo, int(i)) for i in rng.choice(ok, size=min(n, len(ok)), replace=False)]


def _no_leak(text: str, demo: Demo) -> None:
    assert "Traceback" not in text
    assert demo.lake.root not in text
    assert not re.search(r"(/tmp/|/home/|/root/|/work/|\.py\b|s3://)", text), text


# -- meta and days ---------------------------------------------------------------------------------


def test_health_is_open_and_counts_the_table(http: httpx.Client, demo: Demo) -> None:
    r = http.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["episodes"] == demo.episodes.num_rows > 500
    assert isinstance(body["table_version"], int)


def test_days_are_the_dates_with_silver(http: httpx.Client, demo: Demo) -> None:
    days = http.get("/v1/days").json()["days"]
    assert [d["date"] for d in days] == [d.isoformat() for d in demo.dates]
    for d in days:
        date = dt.date.fromisoformat(d["date"])
        assert d["indexed"] is True
        assert d["episodes"] == read_manifest(demo.lake, Layer.GOLD, paths.EPISODES_TABLE, date).rows


def test_bars_are_two_minute_bars_from_nine_to_half_past_twelve(http: httpx.Client, demo: Demo) -> None:
    date = demo.dates[3]
    r = http.get(f"/v1/days/{date}/bars")
    assert r.status_code == 200
    body = r.json()
    assert body["date"] == date.isoformat()
    bars = body["bars"]
    assert len(bars) == 106  # 09:00 … 12:30 closes, every 2 minutes
    t = [dt.datetime.fromisoformat(b["t"].replace("Z", "+00:00")) for b in bars]
    assert all(b["t"].endswith("Z") for b in bars)
    assert t[0].astimezone(sessions.ET).time() == dt.time(9, 0)
    assert t[-1].astimezone(sessions.ET).time() == dt.time(12, 30)
    assert all((b - a).total_seconds() == 120 for a, b in itertools.pairwise(t))
    silver = read_committed(demo.lake, Layer.SILVER, "bars_2m", date).to_pylist()
    by_t = {row["ts"].to_pydatetime(): row for row in silver}
    for b, ts in zip(bars, t, strict=True):
        row = by_t[ts]
        assert (b["open"], b["high"], b["low"], b["close"], b["volume"]) == (
            row["open"],
            row["high"],
            row["low"],
            row["close"],
            row["volume"],
        )
        assert b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"]


def test_levels_are_the_six_levels_per_step(http: httpx.Client, demo: Demo) -> None:
    date = demo.dates[2]
    body = http.get(f"/v1/days/{date}/levels").json()
    assert [lv["kind"] for lv in body["levels"]] == [
        "PM_HIGH",
        "PM_LOW",
        "OR_HIGH",
        "OR_LOW",
        "SMA_90",
        "EMA_20",
    ]
    open_ns = sessions.et_ns(date, sessions.RTH_OPEN)
    or_end = sessions.et_ns(date, sessions.OR_END)
    chart_from = sessions.et_ns(date, dt.time(9, 0))
    for lv in body["levels"]:
        pts = lv["points"]
        assert len(pts) == 60 + 361  # 09:00–09:29:30 (the chart's first half hour), then 09:30–12:30
        for p in pts:
            t_ns = int(dt.datetime.fromisoformat(p["t"].replace("Z", "+00:00")).timestamp()) * NS
            assert chart_from <= t_ns
            if lv["kind"].startswith("OR_"):
                assert (p["value"] is None) == (t_ns < or_end)
            elif lv["kind"].startswith("PM_"):
                assert (p["value"] is None) == (t_ns < open_ns)
            else:
                assert isinstance(p["value"], float)


def test_unknown_date_is_404_and_bad_date_422(http: httpx.Client, demo: Demo) -> None:
    for path in ("bars", "levels", "signals"):
        r = http.get(f"/v1/days/2026-04-01/{path}")
        assert r.status_code == 404, r.text
        assert "2026-04-01" in r.json()["detail"]
        r = http.get(f"/v1/days/2026-02-30/{path}")
        assert r.status_code == 422
        assert "calendar date" in r.json()["detail"]
        r = http.get(f"/v1/days/yesterday/{path}")
        assert r.status_code == 422
        _no_leak(r.text, demo)


# -- signals ----------------------------------------------------------------------------------------


def _signals(http: httpx.Client, date: dt.date, **params: Any) -> dict[str, Any]:
    r = http.get(f"/v1/days/{date}/signals", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_signals_are_in_zone_bar_closes_as_of_their_date(http: httpx.Client, demo: Demo) -> None:
    date = demo.dates[-2]
    body = _signals(http, date)
    assert body["horizon"] == 8
    alpha = body["smoothing_alpha"]
    sig = body["signals"]
    assert sig
    state = read_committed(demo.lake, Layer.SILVER, "state", date).to_pylist()
    zone = {(r["ts"].to_pydatetime(), r["level_kind"]): r for r in state}
    prev: dict[str, tuple[dt.datetime, str, dict[str, float]]] = {}
    for s in sig:
        t = dt.datetime.fromisoformat(s["t"].replace("Z", "+00:00"))
        et = t.astimezone(sessions.ET)
        assert dt.time(9, 30) <= et.time() <= dt.time(12, 30)
        assert (et.minute % 2, et.second) == (0, 0)  # 2-minute bar closes
        row = zone[(t, s["level_kind"])]
        assert row["in_zone"] == 1.0
        assert s["direction"] == row["direction"]
        assert sum(s["p"].values()) == pytest.approx(1.0)
        for o in ("BREAK", "REJECT", "CHOP"):
            lo, hi = s["interval"][o]
            assert 0 <= lo <= s["p"][o] <= hi <= 1
        assert s["n"] <= 50
        # smoothed: an EMA of p over consecutive bars of the same level and direction
        last = prev.get(s["level_kind"])
        if last and (t - last[0]).total_seconds() == 120 and last[1] == s["direction"]:
            want = {o: alpha * s["p"][o] + (1 - alpha) * last[2][o] for o in s["p"]}
        else:
            want = s["p"]
        assert s["smoothed"] == pytest.approx(want)
        prev[s["level_kind"]] = (t, s["direction"], s["smoothed"])
    # the same answer as /v1/similar at that instant (which only uses earlier dates)
    for s in sig[:: max(1, len(sig) // 5)]:
        t = dt.datetime.fromisoformat(s["t"].replace("Z", "+00:00"))
        q = {"date": date.isoformat(), "time": _et(t), "level_kind": s["level_kind"]}
        ans = http.post("/v1/similar", json=q).json()
        assert ans["distribution"]["p"] == pytest.approx(s["p"])
        assert ans["distribution"]["n"] == s["n"]
        assert all(dt.date.fromisoformat(nb["date"]) < date for nb in ans["neighbours"])


def test_signals_on_the_first_day_are_the_prior(http: httpx.Client) -> None:
    body = _signals(http, START)
    assert body["signals"]
    for s in body["signals"]:
        assert s["n"] == 0
        assert s["p"] == pytest.approx({"BREAK": 0.4, "REJECT": 0.4, "CHOP": 0.2})


def test_signals_are_cached_per_date_and_options(http: httpx.Client, demo: Demo) -> None:
    date = demo.dates[-1]
    t0 = time.perf_counter()
    first = _signals(http, date, horizon=4, k=20)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = _signals(http, date, horizon=4, k=20)
    warm = time.perf_counter() - t0
    assert again == first
    assert first["horizon"] == 4
    assert all(s["n"] <= 20 for s in first["signals"])
    assert warm < max(cold, 0.5)
    for bad in ({"horizon": 3}, {"k": 0}, {"k": 501}, {"k": "x"}):
        r = http.get(f"/v1/days/{date}/signals", params=bad)
        assert r.status_code == 422, bad
        assert r.json()["detail"]


def _labels_before(demo: Demo, date: dt.date, partition: str | None = None, h: int = 8) -> list[str]:
    """Non-null labels at horizon ``h`` of the table's rows dated strictly before ``date``."""
    pc = pa.compute
    sel = pc.less(demo.episodes.column("date"), pa.scalar(date, pa.date32()))
    if partition is not None:
        sel = pc.and_(sel, pc.equal(demo.episodes.column("partition"), partition))
    return [x for x in demo.episodes.filter(sel).column(f"label_{h}m").to_pylist() if x]


def test_signals_carry_the_partition_base_rate(http: httpx.Client, demo: Demo) -> None:
    date = demo.dates[-3]
    sig = _signals(http, date)["signals"]
    assert sig
    buckets = {
        (r["level_kind"], r["direction"], r["ts"]): r["time_bucket"] for r in demo.episodes.to_pylist()
    }
    state = read_committed(demo.lake, Layer.SILVER, "state", date).to_pylist()
    bucket_of = {(r["level_kind"], r["direction"], r["ts"].to_pydatetime()): r["time_bucket"] for r in state}
    assert buckets  # the episodes' partitions are the state's (level, direction, time bucket)
    for s in sig:
        t = dt.datetime.fromisoformat(s["t"].replace("Z", "+00:00"))
        key = f"{s['level_kind']}|{s['direction']}|{bucket_of[(s['level_kind'], s['direction'], t)]}"
        labels = _labels_before(demo, date, key)
        assert s["base_n"] == len(labels)
        assert sum(s["base_rate"].values()) == pytest.approx(1.0)
        if labels:
            for o in ("BREAK", "REJECT", "CHOP"):
                assert s["base_rate"][o] == pytest.approx(labels.count(o) / len(labels))
    # the same figures as /v1/similar at that instant
    for s in sig[:: max(1, len(sig) // 4)]:
        t = dt.datetime.fromisoformat(s["t"].replace("Z", "+00:00"))
        q = {"date": date.isoformat(), "time": _et(t), "level_kind": s["level_kind"]}
        d = _similar(http, q)["distribution"]
        assert (d["base_rate"], d["base_n"]) == (pytest.approx(s["base_rate"]), s["base_n"])


# -- /v1/similar --------------------------------------------------------------------------------------


def _similar(http: httpx.Client, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = http.post("/v1/similar", json=body)
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json()
    return out


def test_similar_answer_has_the_contract_shape(http: httpx.Client, demo: Demo) -> None:
    ep = _sample(demo, 1, seed=3)[0]
    ans = _similar(http, {"episode_id": ep["episode_id"]})
    q = ans["query"]
    assert q["episode_id"] == ep["episode_id"]
    assert q["date"] == ep["date"].isoformat() == q["as_of"]
    assert q["time"] == _et(ep["ts"])
    assert (q["level_kind"], q["direction"], q["time_bucket"]) == (
        ep["level_kind"],
        ep["direction"],
        ep["time_bucket"],
    )
    assert q["partition"] == ep["partition"]
    assert q["stats_version"] == ep["stats_version"]
    nbs = ans["neighbours"]
    sims = [n["similarity"] for n in nbs]
    assert sims == sorted(sims, reverse=True)
    by_id = {r["episode_id"]: r for r in demo.episodes.drop(["vector"]).to_pylist()}
    for n in nbs:
        row = by_id[n["episode_id"]]
        assert n["date"] == row["date"].isoformat()
        assert n["time"] == _et(row["ts"])
        assert re.fullmatch(r"\d{2}:\d{2}:\d{2}", n["time"])
        assert n["outcome"] == row["label_8m"]
        assert n["mfe"] == pytest.approx(row["mfe_8m"])
        assert n["mae"] == pytest.approx(row["mae_8m"])
        assert (n["level_kind"], n["time_bucket"]) == (ep["level_kind"], ep["time_bucket"])
        assert -1 <= n["similarity"] <= 1
    d = ans["distribution"]
    assert d["horizon"] == 8
    assert d["n"] == len(nbs)
    assert 0 <= d["n_eff"] <= d["n"] + 1e-9
    assert sum(d["p"].values()) == pytest.approx(1.0)
    assert sum(d["base_rate"].values()) == pytest.approx(1.0)
    assert sum(d["prior"].values()) == pytest.approx(2.5)
    assert sum(d["counts"].values()) == pytest.approx(sum(n["weight"] for n in nbs))
    for o in ("BREAK", "REJECT", "CHOP"):
        lo, hi = d["interval"][o]
        assert 0 <= lo <= d["p"][o] <= hi <= 1
    # base rate: the partition's labels strictly before the query date
    part = demo.episodes.filter(
        pa.compute.and_(
            pa.compute.equal(demo.episodes.column("partition"), ep["partition"]),
            pa.compute.less(demo.episodes.column("date"), pa.scalar(ep["date"], pa.date32())),
        )
    )
    labels = [x for x in part.column("label_8m").to_pylist() if x]
    assert d["base_n"] == len(labels)
    if labels:
        assert d["base_rate"]["BREAK"] == pytest.approx(labels.count("BREAK") / len(labels))
    if d["n"]:
        assert isinstance(d["expected_mfe"], float)
        assert isinstance(d["expected_mae"], float)


def test_neighbours_are_strictly_before_as_of(http: httpx.Client, demo: Demo) -> None:
    checked = 0
    for ep in _sample(demo, 30, skip_first_day=False, seed=1):
        date = ep["date"]
        ans = _similar(http, {"episode_id": ep["episode_id"], "k": 200, "max_per_day": 50})
        assert all(dt.date.fromisoformat(n["date"]) < date for n in ans["neighbours"])
        by_state = _similar(
            http, {"date": date.isoformat(), "time": _et(ep["ts"]), "level_kind": ep["level_kind"], "k": 200}
        )
        assert all(dt.date.fromisoformat(n["date"]) < date for n in by_state["neighbours"])
        assert ep["episode_id"] not in {n["episode_id"] for n in by_state["neighbours"]}
        earlier = [d for d in demo.dates if d < date]
        if len(earlier) >= 2:
            cut = earlier[len(earlier) // 2]
            ans = _similar(http, {"episode_id": ep["episode_id"], "as_of": cut.isoformat(), "k": 200})
            assert ans["query"]["as_of"] == cut.isoformat()
            assert all(dt.date.fromisoformat(n["date"]) < cut for n in ans["neighbours"])
            checked += 1
        later = date + dt.timedelta(days=1)
        r = http.post("/v1/similar", json={"episode_id": ep["episode_id"], "as_of": later.isoformat()})
        assert r.status_code == 422
        assert "after the query date" in r.json()["detail"]
    assert checked >= 10
    # a raw-vector query takes its cut from as_of alone
    vec = vectors.vectors_from_arrow(demo.episodes.column("vector").slice(0, 1))[0].tolist()
    ep = _ep(demo, 0)
    part = {"level_kind": ep["level_kind"], "direction": ep["direction"], "time_bucket": ep["time_bucket"]}
    for as_of in demo.dates:
        ans = _similar(http, {"vector": vec, "partition": part, "as_of": as_of.isoformat(), "k": 500})
        assert all(dt.date.fromisoformat(n["date"]) < as_of for n in ans["neighbours"])
        assert (ans["query"]["episode_id"], ans["query"]["date"]) == (None, None)


def test_at_most_max_per_day_neighbours_per_date(http: httpx.Client, demo: Demo) -> None:
    ep = _sample(demo, 1, seed=5)[0]
    for k in (1, 3, 50):
        for cap in (1, 2, 3):
            ans = _similar(http, {"episode_id": ep["episode_id"], "k": k, "max_per_day": cap})
            dates = [n["date"] for n in ans["neighbours"]]
            assert len(dates) <= k
            assert max((dates.count(d) for d in dates), default=0) <= cap
    default = _similar(http, {"episode_id": ep["episode_id"]})["neighbours"]
    dates = [n["date"] for n in default]
    assert max((dates.count(d) for d in dates), default=0) <= 2
    wide = _similar(http, {"episode_id": ep["episode_id"], "max_per_day": 50})["neighbours"]
    assert len(wide) >= len(default)


def test_state_query_builds_the_vector_the_pipeline_stored(
    http: httpx.Client, served: Served, demo: Demo
) -> None:
    service: Service = served.app.state.service
    stored = vectors.vectors_from_arrow(demo.episodes.column("vector"))
    ids = demo.episodes.column("episode_id").to_pylist()
    for ep in _sample(demo, 12, skip_first_day=False, seed=7):
        date, et = ep["date"], _et(ep["ts"])
        # in process: the vector at (date, time, level) is the episode's stored normalised vector
        pt = service.point(date, dt.time.fromisoformat(et), ep["level_kind"])
        want = stored[ids.index(ep["episode_id"])]
        cos = float(np.dot(pt.vector, want) / (np.linalg.norm(pt.vector) * np.linalg.norm(want)))
        assert cos == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(pt.vector, want, atol=1e-5)
        assert pt.stats_version == ep["stats_version"]
        # over HTTP: the state query finds that episode and answers exactly as the episode query
        by_state = _similar(http, {"date": date.isoformat(), "time": et, "level_kind": ep["level_kind"]})
        by_id = _similar(http, {"episode_id": ep["episode_id"]})
        assert by_state["query"]["episode_id"] == ep["episode_id"]
        assert by_state["query"]["stats_version"] == ep["stats_version"]
        assert [n["episode_id"] for n in by_state["neighbours"]] == [
            n["episode_id"] for n in by_id["neighbours"]
        ]
        assert [n["similarity"] for n in by_state["neighbours"]] == pytest.approx(
            [n["similarity"] for n in by_id["neighbours"]], abs=1e-5
        )
        # a time inside the step is floored to it
        inside = _et(ep["ts"] + dt.timedelta(seconds=15))
        r = _similar(http, {"date": date.isoformat(), "time": inside, "level_kind": ep["level_kind"]})
        assert r["query"]["time"] == et


def test_weights_and_horizons(http: httpx.Client, demo: Demo) -> None:
    ep = _sample(demo, 1, seed=11)[0]
    base = _similar(http, {"episode_id": ep["episode_id"], "k": 10})
    ones = _similar(http, {"episode_id": ep["episode_id"], "k": 10, "weights": {"flow": 1.0}})
    assert ones["neighbours"] == base["neighbours"]
    geo = _similar(http, {"episode_id": ep["episode_id"], "k": 10, "weights": {"trajectory": 0, "dealer": 0}})
    assert [n["similarity"] for n in geo["neighbours"]] != [n["similarity"] for n in base["neighbours"]]
    for h in (2, 4, 20):
        ans = _similar(http, {"episode_id": ep["episode_id"], "horizon": h})
        assert ans["distribution"]["horizon"] == h
        rows = {r["episode_id"]: r for r in demo.episodes.drop(["vector"]).to_pylist()}
        for n in ans["neighbours"]:
            assert n["outcome"] == rows[n["episode_id"]][f"label_{h}m"]


def test_served_estimator_pooled_prior_and_capped_interval(http: httpx.Client, demo: Demo) -> None:
    served = calibration.SERVED_PARAMS
    d0 = np.array(served.default_prior)
    order = ("BREAK", "REJECT", "CHOP")

    def counts(labels: list[str]) -> np.ndarray:
        return np.array([labels.count(o) for o in order], dtype=np.float64)

    checked = 0
    for ep in _sample(demo, 8, seed=17):
        earlier = [d for d in demo.dates if d < ep["date"]]
        for as_of in {ep["date"], earlier[len(earlier) // 2]}:
            for h in (8, 20):
                ans = _similar(
                    http, {"episode_id": ep["episode_id"], "as_of": as_of.isoformat(), "horizon": h}
                )
                d = ans["distribution"]
                # by hand, from the table's rows strictly before as_of: partition counts B, pooled P
                b = counts(_labels_before(demo, as_of, ep["partition"], h))
                pooled = counts(_labels_before(demo, as_of, None, h))
                split = (pooled + d0) / (pooled.sum() + d0.sum())
                pi = (b + served.pooled_prior * split) / (b.sum() + served.pooled_prior)
                assert [d["prior"][o] for o in order] == pytest.approx(list(2.5 * pi), rel=1e-9)
                assert d["base_n"] == int(b.sum())
                # the interval: Beta with total min(n_eff + 2.5, 2.5) = 2.5 around p
                for o in order:
                    pk = d["p"][o]
                    lo, hi = d["interval"][o]
                    assert lo == pytest.approx(beta.ppf(0.1, 2.5 * pk, 2.5 * (1 - pk)), rel=1e-6, abs=1e-12)
                    assert hi == pytest.approx(beta.ppf(0.9, 2.5 * pk, 2.5 * (1 - pk)), rel=1e-6)
                    assert hi - lo > 0.01  # not a point (a p near 0 on the issue-11 generator: ≈ 0.04 wide)
                checked += 1
    assert checked >= 16
    # default weights: dealer 0 (the request's weights override group by group)
    ep = _sample(demo, 1, seed=19)[0]
    base = _similar(http, {"episode_id": ep["episode_id"], "k": 10})
    explicit = _similar(http, {"episode_id": ep["episode_id"], "k": 10, "weights": {"dealer": 0}})
    assert explicit["neighbours"] == base["neighbours"]
    assert explicit["distribution"] == base["distribution"]


def test_partitions_cover_the_table(http: httpx.Client, demo: Demo) -> None:
    parts = http.get("/v1/partitions").json()["partitions"]
    assert sum(p["n"] for p in parts) == demo.episodes.num_rows
    counts = index.partition_counts(demo.lake)
    for p in parts:
        assert p["key"] == f"{p['level_kind']}|{p['direction']}|{p['time_bucket']}"
        assert p["n"] == counts[p["key"]]["n"]
        labelled = sum(counts[p["key"]].get(o, 0) for o in ("BREAK", "REJECT", "CHOP"))
        if labelled:
            assert p["base_rate"]["BREAK"] == pytest.approx(counts[p["key"]].get("BREAK", 0) / labelled)
        assert sum(p["base_rate"].values()) == pytest.approx(1.0)


# -- bad input and errors ------------------------------------------------------------------------------


def _bad_bodies(demo: Demo) -> list[tuple[dict[str, Any], int, str]]:
    d = demo.dates[3].isoformat()
    ep = _ep(demo, 0)
    return [
        ({"date": "2026-02-30", "time": "10:00", "level_kind": "PM_HIGH"}, 422, "calendar date"),
        ({"date": "03/05/2026", "time": "10:00", "level_kind": "PM_HIGH"}, 422, "YYYY-MM-DD"),
        ({"date": d, "time": "25:00", "level_kind": "PM_HIGH"}, 422, "not a time"),
        ({"date": d, "time": "09:29", "level_kind": "PM_HIGH"}, 422, "outside 09:30–12:30"),
        ({"date": d, "time": "12:31", "level_kind": "PM_HIGH"}, 422, "outside 09:30–12:30"),
        ({"date": d, "time": "10", "level_kind": "PM_HIGH"}, 422, "HH:MM"),
        ({"date": d, "time": "10:00", "level_kind": "VWAP"}, 422, "level_kind"),
        ({"date": d, "time": "10:00"}, 422, "needs date, time and level_kind"),
        ({"episode_id": ep["episode_id"], "k": 0}, 422, "k"),
        ({"episode_id": ep["episode_id"], "k": 501}, 422, "k must be between 1 and 500"),
        ({"episode_id": ep["episode_id"], "k": "many"}, 422, "k"),
        ({"episode_id": ep["episode_id"], "max_per_day": 0}, 422, "max_per_day"),
        ({"episode_id": ep["episode_id"], "horizon": 5}, 422, "horizon"),
        ({"episode_id": ep["episode_id"], "weights": {"astrology": 1}}, 422, "weights"),
        ({"episode_id": ep["episode_id"], "weights": {"flow": -1}}, 422, "weights"),
        (
            {"episode_id": ep["episode_id"], "weights": dict.fromkeys(vectors.VECTOR_GROUPS, 0)},
            422,
            "weight 0",
        ),
        ({"episode_id": ep["episode_id"], "colour": "red"}, 422, "colour"),
        (
            {"episode_id": ep["episode_id"], "date": d, "time": "10:00", "level_kind": "PM_HIGH"},
            422,
            "exactly one",
        ),
        ({}, 422, "exactly one"),
        (
            {
                "vector": [0.0] * 3,
                "partition": {"level_kind": "PM_HIGH", "direction": "UP", "time_bucket": 0},
            },
            422,
            "vector",
        ),
        (
            {
                "vector": [0.0] * vectors.VECTOR_DIM,
                "partition": {"level_kind": "PM_HIGH", "direction": "UP", "time_bucket": 0},
            },
            422,
            "as_of",
        ),
        (
            {
                "vector": [0.0] * vectors.VECTOR_DIM,
                "partition": {"level_kind": "PM_HIGH", "direction": "SIDEWAYS", "time_bucket": 9},
                "as_of": d,
            },
            422,
            "partition",
        ),
        ({"episode_id": "0000000000000000"}, 404, "not found"),
        (
            {"date": "2026-04-01", "time": "10:00", "level_kind": "PM_HIGH"},
            404,
            "no silver data for 2026-04-01",
        ),
        (
            {"date": "2026-03-07", "time": "10:00", "level_kind": "PM_HIGH"},
            404,
            "no silver data",
        ),  # a Saturday
        ({"date": d, "time": "09:40", "level_kind": "OR_HIGH"}, 404, "not active"),  # OR exists from 09:45
    ]


def test_bad_inputs_are_4xx_with_a_reason(http: httpx.Client, demo: Demo) -> None:
    for body, status, reason in _bad_bodies(demo):
        r = http.post("/v1/similar", json=body)
        assert r.status_code == status, (body, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str)
        assert reason in detail, (body, detail)
        _no_leak(r.text, demo)
    for raw in (b"{", b"[1, 2]", b"null", b'{"k": NaN, "episode_id": "x"}'):
        r = http.post("/v1/similar", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, raw
        _no_leak(r.text, demo)
    assert http.get("/v1/nowhere").status_code == 404
    assert http.delete("/v1/similar").status_code == 405


def test_out_of_zone_level_is_404_with_the_reason(http: httpx.Client, demo: Demo) -> None:
    date = demo.dates[2]
    state = read_committed(demo.lake, Layer.SILVER, "state", date).to_pylist()
    out = next(r for r in state if r["in_zone"] == 0.0)
    body = {"date": date.isoformat(), "time": _et(out["ts"]), "level_kind": out["level_kind"]}
    r = http.post("/v1/similar", json=body)
    assert r.status_code == 404
    assert "not in its approach zone" in r.json()["detail"]


def test_unexpected_errors_are_a_generic_500(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(ApiSettings(), demo.lake)
    served = Served(app)
    try:

        def boom(*_: Any, **__: Any) -> Any:
            raise RuntimeError(f"disk on fire at {demo.lake.root}/secret.parquet")

        monkeypatch.setattr(app.state.service, "partitions", boom)
        r = served.client.get("/v1/partitions")
        assert r.status_code == 500
        assert r.json() == {"detail": "internal error"}
        _no_leak(r.text, demo)
        assert served.client.get("/health").status_code == 200
    finally:
        served.close()


# -- auth -----------------------------------------------------------------------------------------------


def test_api_key_guards_v1_but_not_health(demo: Demo) -> None:
    served = Served(create_app(ApiSettings(api_key="s3cret-key"), demo.lake))
    try:
        c = served.client
        for path in ("/v1/days", "/v1/partitions", f"/v1/days/{demo.dates[1]}/bars"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"X-API-Key": "wrong"}).status_code == 401
            assert c.get(path, headers={"X-API-Key": "s3cret-key"}).status_code == 200
        for path in ("/v1/report", "/v1/report/files/report.md"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"X-API-Key": "s3cret-key"}).status_code == 404  # no report yet
        r = c.post("/v1/similar", json={"k": "garbage"})
        assert r.status_code == 401
        assert r.json() == {"detail": "missing or invalid API key"}
        ep = _ep(demo, 1)
        r = c.post("/v1/similar", json={"episode_id": ep["episode_id"]}, headers={"x-api-key": "s3cret-key"})
        assert r.status_code == 200
        assert c.get("/health").status_code == 200
        assert c.get("/openapi.json").status_code == 200
    finally:
        served.close()


# -- docs and page hooks ------------------------------------------------------------------------------


def test_openapi_docs_and_page_hooks(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/health",
        "/v1/days",
        "/v1/days/{date}/bars",
        "/v1/days/{date}/levels",
        "/v1/days/{date}/signals",
        "/v1/similar",
        "/v1/partitions",
        "/v1/report",
        "/v1/report/files/{name}",
    } <= paths
    for ops in spec["paths"].values():
        for op in ops.values():
            assert op["description"]
            assert "\n" not in op["description"].strip()
    assert http.get("/docs").status_code == 200
    js = http.get("/static/vendor/plotly.min.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert len(js.content) > 1_000_000
    assert http.get("/", follow_redirects=True).status_code == 200


def test_the_schema_states_units_and_times_come_in_utc_and_et(http: httpx.Client, demo: Demo) -> None:
    schemas = http.get("/openapi.json").json()["components"]["schemas"]

    def desc(model: str, field: str) -> str:
        return str(schemas[model]["properties"][field].get("description", ""))

    for model, field in (
        ("Signal", "distance"),
        ("NeighbourOut", "mfe"),
        ("NeighbourOut", "mae"),
        ("DistributionOut", "expected_mfe"),
        ("DistributionOut", "expected_mae"),
    ):
        assert "ATR" in desc(model, field), (model, field)
    assert "80 %" in desc("DistributionOut", "interval")
    assert "80 %" in desc("Signal", "interval")
    for model in ("Bar", "LevelPoint", "Signal"):
        assert "UTC" in desc(model, "t")
        assert "ET" in desc(model, "time")
    assert "contracts" in desc("Bar", "volume")
    # and the answers carry both: `t` in UTC and `time` as ET wall clock, the same instant
    day = demo.dates[-1].isoformat()
    bar = http.get(f"/v1/days/{day}/bars").json()["bars"][0]
    point = http.get(f"/v1/days/{day}/levels").json()["levels"][0]["points"][0]
    signal = http.get(f"/v1/days/{day}/signals").json()["signals"][0]
    for item in (bar, point, signal):
        t = dt.datetime.fromisoformat(item["t"].replace("Z", "+00:00")).astimezone(sessions.ET)
        assert item["time"] == t.strftime("%H:%M:%S")


def test_moving_averages_start_with_the_chart_at_0900(http: httpx.Client, demo: Demo) -> None:
    from spymaster.indicators import bars as bar_math

    day = demo.dates[-1]
    levels = {
        lv["kind"]: lv["points"] for lv in http.get(f"/v1/days/{day.isoformat()}/levels").json()["levels"]
    }
    first = {k: pts[0]["time"] for k, pts in levels.items()}
    assert set(first.values()) == {"09:00:00"}  # every series on one time axis
    # before 09:30 only the moving averages exist; they continue silver's values without a seam
    for kind in ("PM_HIGH", "PM_LOW", "OR_HIGH", "OR_LOW"):
        assert all(p["value"] is None for p in levels[kind] if p["time"] < "09:30:00")
    b2 = read_committed(demo.lake, Layer.SILVER, paths.BARS_2M_TABLE, day)
    t0900 = sessions.et_ns(day, dt.time(9, 0))
    want = bar_math.moving_average_levels(b2, np.array([t0900], dtype=np.int64))
    for kind in ("SMA_90", "EMA_20"):
        assert levels[kind][0]["value"] == pytest.approx(float(want[kind][0]))
        at_open = next(p for p in levels[kind] if p["time"] == "09:30:00")
        silver = read_committed(demo.lake, Layer.SILVER, paths.LEVELS_TABLE, day).column(kind)[0].as_py()
        assert at_open["value"] == pytest.approx(silver)


# -- the evaluation report ----------------------------------------------------------------------------


def test_report_is_404_with_a_reason_when_there_is_none(http: httpx.Client, demo: Demo) -> None:
    r = http.get("/v1/report")
    assert r.status_code == 404
    assert "no evaluation report" in r.json()["detail"]
    _no_leak(r.text, demo)
    for name in ("report.md", "reliability.png", "latest.json"):
        r = http.get(f"/v1/report/files/{name}")
        assert r.status_code == 404
        _no_leak(r.text, demo)


@pytest.fixture(scope="module")
def report_lake(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, evaluation.Report]:
    """A copy of the demo lake's gold with a real evaluation run written into it."""
    root = tmp_path_factory.mktemp("report") / "lake"
    for prefix in ("gold", "_manifests"):
        shutil.copytree(Path(demo.lake.path(prefix)), root / prefix)
    lake = Lake(StorageSettings(lake_uri=str(root)))
    rep = evaluation.evaluate(lake, demo.dates[-1], None, min_train_days=1, boosted=False, run_ablation=False)
    return lake, rep


def test_report_serves_the_latest_run_and_its_files(report_lake: tuple[Lake, evaluation.Report]) -> None:
    lake, rep = report_lake
    served = Served(create_app(ApiSettings(), lake))
    try:
        c = served.client
        r = c.get("/v1/report")
        assert r.status_code == 200, r.text
        body = r.json()
        latest = lake.read_json(paths.latest_path())
        assert body["run_id"] == latest["run_id"] == rep.run_id
        # the span tested: the requested start, and (an open end) the last test day
        assert latest["end"] is None
        assert (body["created_at"], body["start"], body["end"]) == (
            latest["created_at"],
            latest["start"],
            rep.metrics["test_dates"][-1],
        )
        assert body["markdown"] == rep.markdown == lake.read_bytes(latest["report"]).decode()
        assert body["metrics"]["n_test"] == rep.metrics["n_test"] > 0
        assert body["metrics"]["scores"]["all"][evaluation.SERVED_NAME]["n"] == rep.metrics["n_test"]
        assert body["plots"] == {k: v.rsplit("/", 1)[-1] for k, v in latest["plots"].items()}
        assert {"reliability", "lift"} <= set(body["plots"])
        files = {f["name"]: f for f in body["files"]}
        assert set(files) == {"report.md", "metrics.json", *body["plots"].values()}
        # every listed file, with its media type and the lake's bytes
        for name, f in files.items():
            r = c.get(f"/v1/report/files/{name}")
            assert r.status_code == 200, name
            assert r.headers["content-type"] == f["media_type"]
            assert r.content == lake.read_bytes(paths.report_path(rep.run_id, name))
        png = c.get(f"/v1/report/files/{body['plots']['reliability']}")
        assert png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert c.get("/v1/report/files/report.md").headers["content-type"].startswith("text/markdown")
        # nothing else: not latest.json, not a file the run folder holds but latest.json does not list,
        # no path out of the folder however it is spelled
        lake.write_bytes(paths.report_path(rep.run_id, "extra.png"), png.content)
        for bad in (
            "latest.json",
            "extra.png",
            "x.png",
            "..%2Fx",
            "..%2Flatest.json",
            "..%2F..%2F..%2Fgold",
            "%2E%2E%2Freport.md",
            "%2E%2E",
            "...",
            "report.md%00.png",
        ):
            r = c.get(f"/v1/report/files/{bad}")
            assert r.status_code == 404, (bad, r.text)
            assert r.json()["detail"]
            assert lake.root not in r.text
        r = c.get("/v1/report/files/../x")  # the client resolves it to /v1/report/x: no such route
        assert r.status_code == 404
        # a latest.json naming files outside its run's folder: those are never served
        tampered = dict(latest)
        tampered["plots"] = {
            "reliability": latest["plots"]["reliability"],
            "escape": f"{paths.report_dir(rep.run_id)}/../other/lift.png",
            "gold": "gold/secret.png",
        }
        lake.write_json(paths.latest_path(), tampered)
        try:
            body = c.get("/v1/report").json()
            assert body["plots"] == {"reliability": "reliability.png"}
            assert c.get("/v1/report/files/lift.png").status_code == 404
            assert c.get("/v1/report/files/secret.png").status_code == 404
            assert c.get("/v1/report/files/reliability.png").status_code == 200
            lake.write_bytes(paths.latest_path(), b"{not json")
            r = c.get("/v1/report")
            assert r.status_code == 404
            assert "malformed" in r.json()["detail"]
        finally:
            lake.write_json(paths.latest_path(), latest)
        assert c.get("/v1/report").json()["run_id"] == rep.run_id
    finally:
        served.close()


# -- table versions ---------------------------------------------------------------------------------


def test_table_is_reloaded_only_when_its_version_changes(demo: Demo, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    for prefix in LAKE_PREFIXES:
        shutil.copytree(Path(demo.lake.path(prefix)), root / prefix)
    lake = Lake(StorageSettings(lake_uri=str(root)))
    lake.delete(paths.VECTOR_SNAPSHOT)  # a lake indexed before snapshots: the API reads the table
    now = [0.0]
    svc = Service(lake, table_check_seconds=10, clock=lambda: now[0])
    first = svc.index()
    assert first.episodes == demo.episodes.num_rows
    now[0] = 30.0
    assert svc.index() is first  # checked, same version: same objects
    table = index.open_table(lake)
    assert table is not None
    gone = demo.dates[-1]
    table.delete(f"date = date '{gone.isoformat()}'")
    now[0] = 35.0
    assert svc.index() is first  # within the check interval
    now[0] = 45.0
    second = svc.index()
    assert second.version == first.version + 1
    assert second.episodes == first.episodes - first.day_counts[(gone - dt.date(1970, 1, 1)).days]

    # a failing check keeps the version in memory, and the table is re-opened at the next check
    class Broken:
        def checkout_latest(self) -> None:
            raise OSError("store unreachable")

    svc._table = Broken()
    now[0] = 60.0
    assert svc.index() is second
    now[0] = 75.0
    assert svc.index() is second  # re-opened, same version
    assert svc._table is not None
    assert not isinstance(svc._table, Broken)


def test_the_snapshot_is_reloaded_when_the_writer_replaces_it(demo: Demo, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    for prefix in LAKE_PREFIXES:
        shutil.copytree(Path(demo.lake.path(prefix)), root / prefix)
    lake = Lake(StorageSettings(lake_uri=str(root)))
    now = [0.0]
    svc = Service(lake, table_check_seconds=10, clock=lambda: now[0])
    # Given the API serving the indexer's snapshot (LanceDB never opened)
    first = svc.index()
    assert first.episodes == demo.episodes.num_rows
    assert svc._table is None
    now[0] = 30.0
    assert svc.index() is first  # checked, same snapshot: same objects
    # When the writer changes the table and refreshes the snapshot, as every writer does
    table = index.open_table(lake)
    assert table is not None
    gone = demo.dates[-1]
    table.delete(f"date = date '{gone.isoformat()}'")
    assert index.refresh_snapshot(lake)
    now[0] = 35.0
    assert svc.index() is first  # within the check interval
    now[0] = 45.0
    # Then the next check loads the new version
    second = svc.index()
    assert second.version == first.version + 1 == table.version
    assert second.episodes == first.episodes - first.day_counts[(gone - dt.date(1970, 1, 1)).days]
    assert svc._table is None


def test_concurrent_requests_all_succeed(http: httpx.Client, served: Served, demo: Demo) -> None:
    eps = _sample(demo, 24, seed=13)
    errors: list[str] = []

    def worker(chunk: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=served.url, timeout=60) as c:
            for ep in chunk:
                r = c.post("/v1/similar", json={"episode_id": ep["episode_id"]})
                if r.status_code != 200:
                    errors.append(r.text)
                r = c.get(f"/v1/days/{ep['date']}/signals")
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=worker, args=(eps[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- the same API over S3 ----------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_lake_answers_similar(demo: Demo, s3_endpoint: str) -> None:
    lake = copy_lake_to_s3(demo.lake, s3_endpoint)
    served = Served(create_app(ApiSettings(), lake))
    try:
        c = served.client
        assert c.get("/health").json()["episodes"] == demo.episodes.num_rows
        ep = _sample(demo, 1, seed=2)[0]
        body = {"date": ep["date"].isoformat(), "time": _et(ep["ts"]), "level_kind": ep["level_kind"]}
        r = c.post("/v1/similar", json=body)
        assert r.status_code == 200, r.text
        ans = r.json()
        assert ans["query"]["episode_id"] == ep["episode_id"]
        assert ans["neighbours"]
        assert all(dt.date.fromisoformat(n["date"]) < ep["date"] for n in ans["neighbours"])
        assert math.isfinite(ans["distribution"]["n_eff"])
        assert c.get(f"/v1/days/{ep['date']}/signals").status_code == 200
        assert c.get("/v1/days/2026-04-01/bars").status_code == 404
    finally:
        served.close()

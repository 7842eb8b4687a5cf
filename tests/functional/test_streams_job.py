"""The gold ``streams`` job on generated days: committed per date by the pipeline, scaled on earlier
days only (altering a later day's silver changes nothing before it), rebuilt when an earlier day
changes, idempotent, queryable with ``sql``; the projection models walk forward and are reused when
nothing changed; the API answers as of a bar, over real HTTP."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest

from spymaster.api import ApiSettings, create_app
from spymaster.evaluation.streams import evaluate_streams
from spymaster.lake import (
    Lake,
    commit,
    committed_dates,
    new_run_id,
    paths,
    read_committed,
    read_manifest,
    sql,
)
from spymaster.lake.paths import Layer, data_file
from spymaster.layers import streams as streams_job
from spymaster.settings import StorageSettings
from spymaster.streams import STREAM_NAMES, STREAMS_SCHEMA
from tests.functional.conftest import BUILT_DATES
from tests.functional.test_api import Served


@pytest.fixture
def lake_copy(built_lake: Lake, tmp_path: Path) -> Lake:
    root = tmp_path / "lake"
    shutil.copytree(built_lake.settings.lake_uri, root)
    return Lake(StorageSettings(lake_uri=str(root)))


def test_pipeline_commits_streams_scaled_on_earlier_days(built_lake: Lake) -> None:
    assert committed_dates(built_lake, Layer.GOLD, paths.STREAMS_TABLE) == list(BUILT_DATES)
    first, second, third = (streams_job.read_streams(built_lake, d) for d in BUILT_DATES)
    assert first.schema.equals(STREAMS_SCHEMA)
    # the first day has no earlier day: its streams are null, not guessed from itself
    assert all(first.column(n).null_count == first.num_rows for n in STREAM_NAMES)
    assert set(second.column("scaling_days").to_pylist()) == {1}
    assert set(third.column("scaling_days").to_pylist()) == {2}
    for t in (second, third):
        for n in STREAM_NAMES:
            v = np.asarray(t.column(n).to_numpy(zero_copy_only=False), dtype=float)
            assert np.nanmax(np.abs(v)) <= 1.0
        assert t.column("momentum").null_count == 0
    m = read_manifest(built_lake, Layer.GOLD, paths.STREAMS_TABLE, BUILT_DATES[2])
    assert list(m.inputs["history"]) == [d.isoformat() for d in BUILT_DATES[:2]]
    assert built_lake.exists(paths.streams_scaling_file(m.stats["scaling_version"]))
    assert all(streams_job.is_current(built_lake, d) for d in BUILT_DATES)
    got = sql.query(built_lake, "SELECT count(*) AS n, max(abs(net)) AS m FROM gold.streams")
    assert got.column("n")[0].as_py() == sum(t.num_rows for t in (first, second, third))
    assert got.column("m")[0].as_py() <= 1.0


def test_altering_a_later_day_leaves_earlier_streams_identical(lake_copy: Lake) -> None:
    lake = lake_copy
    d1, d2, d3 = BUILT_DATES
    before = {d: streams_job.read_streams(lake, d) for d in BUILT_DATES}
    # Given day 2's silver state replaced by a wilder one (every feature × 7, directions flipped)
    state = read_committed(lake, Layer.SILVER, paths.STATE_TABLE, d2)
    cols = {}
    for f in state.schema:
        c = state.column(f.name)
        if f.type == pa.float64() and f.name not in (
            "level_price",
            "price",
            "ctx_atr_points",
            "dealer_missing",
        ):
            c = pa.array(np.asarray(c.to_numpy(zero_copy_only=False), dtype=float) * 7.0, from_pandas=True)
        elif f.name == "direction":
            c = pa.array(["DOWN" if x == "UP" else "UP" for x in c.to_pylist()])
        cols[f.name] = c
    altered = pa.table(cols).cast(state.schema)
    run = new_run_id()
    path = data_file(Layer.SILVER, paths.STATE_TABLE, d2, run, 0)
    lake.write_parquet(path, altered)
    commit(lake, Layer.SILVER, paths.STATE_TABLE, d2, run, [path], altered.num_rows)
    # Then day 2 and day 3 are stale (day 3 was scaled on day 2), day 1 is not
    assert streams_job.is_current(lake, d1)
    assert not streams_job.is_current(lake, d2)
    assert not streams_job.is_current(lake, d3)
    assert streams_job.refresh(lake, list(BUILT_DATES)) == [d2, d3]
    after = {d: streams_job.read_streams(lake, d) for d in BUILT_DATES}
    assert after[d1].equals(before[d1])
    # day 2's own scaling rests on day 1 only: its streams change because its own features did
    assert after[d2].column("scaling_version").equals(before[d2].column("scaling_version"))
    assert not after[d2].equals(before[d2])
    assert not after[d3].column("scaling_version").equals(before[d3].column("scaling_version"))
    assert streams_job.refresh(lake, list(BUILT_DATES)) == []  # idempotent


def test_rebuilding_writes_the_same_streams(lake_copy: Lake) -> None:
    d = BUILT_DATES[2]
    before = streams_job.read_streams(lake_copy, d)
    streams_job.build(lake_copy, d)
    assert streams_job.read_streams(lake_copy, d).equals(before)


def test_projection_models_walk_forward_and_are_reused(lake_copy: Lake) -> None:
    res = streams_job.fit_projections(lake_copy, min_days=1)
    # day 2 trains on day 1 (all-null streams: no pairs, no coefficients), day 3 on days 1–2, and the next day
    assert sorted(res.models)[:2] == list(BUILT_DATES[1:])
    assert len(res.models) == 3
    m3 = streams_job.projection_model(lake_copy, BUILT_DATES[2])
    assert m3 is not None
    assert m3.days == BUILT_DATES[:2]
    assert set(m3.coef) >= {"momentum", "net"}
    again = streams_job.fit_projections(lake_copy, min_days=1)
    assert again.models == res.models
    index = lake_copy.read_json(paths.STREAMS_PROJECTIONS_INDEX)
    assert set(index["inputs"]) == {d.isoformat() for d in res.models}


@pytest.fixture
def served(lake_copy: Lake) -> Iterator[Served]:
    streams_job.fit_projections(lake_copy, min_days=1)
    s = Served(create_app(ApiSettings(), lake_copy))
    yield s
    s.close()


def test_api_answers_as_of_a_bar(served: Served) -> None:
    http: httpx.Client = served.client
    d = BUILT_DATES[2].isoformat()
    r = http.get(f"/v1/days/{d}/streams", params={"level": "PM_HIGH", "at": "10:31", "position": "LONG"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of_time"] == "10:30:00"
    assert [b["time"] for b in body["bars"]][-1] == "10:30:00"
    assert all(b["time"] <= "10:30:00" for b in body["bars"])
    assert body["projection"]["time"][0] == "10:32:00"
    assert len(body["projection"]["time"]) == 10
    for q in body["projection"]["curves"]["net"].values():
        assert all(-1 <= v <= 1 for v in q)
    assert all(a["time"] <= "10:30:00" for a in body["alerts"])
    assert {a["alert"] for a in body["alerts"]} >= {"THIN_HISTORY"}
    assert 0 <= body["exit"]["score"] <= 1
    # the same bar seen from the end of the day: the past is the same (nothing later leaked into it)
    full = http.get(f"/v1/days/{d}/streams", params={"level": "PM_HIGH"}).json()
    assert full["bars"][: len(body["bars"])] == body["bars"]
    assert full["as_of_time"] == "12:30:00"
    bad = http.get(f"/v1/days/{d}/streams", params={"level": "NOPE"})
    assert bad.status_code == 422
    assert "level" in bad.json()["detail"]
    assert http.get(f"/v1/days/{d}/streams", params={"level": "PM_HIGH", "at": "13:00"}).status_code == 422
    assert http.get("/v1/days/2026-01-02/streams", params={"level": "PM_HIGH"}).status_code == 404


def test_evaluation_section_scores_the_served_models(lake_copy: Lake) -> None:
    streams_job.fit_projections(lake_copy, min_days=1)
    m, md = evaluate_streams(lake_copy)
    # days 2 and 3 have a model; only day 3's has coefficients (day 2's rests on day 1's null streams)
    assert m["test_dates"] == [d.isoformat() for d in BUILT_DATES[1:]]
    assert 0.0 < m["coverage"] < 1.0
    net = m["streams"]["net"]
    assert net["n"] > 0
    assert net["pinball"]["model"] > 0
    assert set(m["alerts"]) == {
        "EXHAUSTION",
        "CONTINUATION",
        "REVERSAL_RISK",
        "FLOW_DIVERGENCE",
        "BARRIER_BUILDING",
        "BARRIER_ERODING",
    }
    assert m["quality_gates"]["THIN_HISTORY"] > 0
    assert md.startswith("## Streams, projections and alerts")
    assert "q10–q90" in md

"""The live engine answers from the served table and picks up the indexer's new version off its
own thread: the stream never waits for a reload."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from spymaster import sessions
from spymaster.lake import Lake
from spymaster.layers import gold, index, pipeline
from spymaster.live.engine import Engine
from spymaster.live.run import Refresher
from spymaster.serving import Service
from spymaster.settings import StorageSettings
from spymaster.synth import generate
from tests.functional.conftest import BUILT_DATES


def test_engine_answers_from_the_new_table_version(built_lake: Lake, tmp_path: Path) -> None:
    shutil.copytree(built_lake.path(""), tmp_path / "lake")
    lake = Lake(StorageSettings(lake_uri=str(tmp_path / "lake")))
    service = Service(lake, table_check_seconds=float("inf"))
    v1 = service.refresh()
    assert v1 is not None
    nxt = sessions.trading_days(BUILT_DATES[-1], 2)[1]
    engine = Engine(nxt, service=service)
    ep = gold.read_episodes(lake, BUILT_DATES[-1]).slice(0, 1).to_pylist()[0]
    raw = np.asarray(ep["vector"], dtype=np.float32)

    def ask() -> dict[str, object]:
        ans = engine.answer(raw, ep["level_kind"], ep["direction"], ep["time_bucket"])
        assert ans is not None
        return ans

    first = ask()
    assert first["query"]["table_version"] == v1  # type: ignore[index]

    # The indexer commits a new version (one more date).
    generate(lake, nxt, 1, scale=0.01, seed=3, progress=False)
    assert all(r.ok for r in pipeline.run(lake.settings, [nxt]))
    index.index(lake)
    # The stream's own calls never reload (that would pause it) …
    t0 = time.perf_counter()
    assert ask()["query"]["table_version"] == v1  # type: ignore[index]
    assert time.perf_counter() - t0 < 1.0
    # … the refresher does, and the next answer comes from the new version.
    refresher = Refresher(service, every_s=0.05).start()
    try:
        deadline = time.monotonic() + 60
        while service.index().version == v1 and time.monotonic() < deadline:
            ask()  # answering goes on meanwhile
            time.sleep(0.05)
    finally:
        refresher.stop()
    v2 = service.index().version
    assert v2 is not None
    assert v2 > v1
    assert ask()["query"]["table_version"] == v2  # type: ignore[index]

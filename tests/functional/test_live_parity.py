"""The live engine fed a day's raw records one by one gives batch silver's and gold's numbers.

Batch: raw → bronze → ``silver.build`` (the engine fed the whole day, the book streamed from
bronze) → ``gold.episodes``. Live: the same raw files decoded with ``databento_dbn``, merged in
arrival order and fed to :class:`spymaster.live.engine.Engine` a record at a time. Every state row,
every levels row, the 2-minute bars and every episode (id, anchor, raw vector) must be equal to the
bit: both paths run the same code on the same numbers, so no tolerance is needed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from spymaster import sessions
from spymaster.lake import Lake, paths
from spymaster.layers import bronze, gold, pipeline, silver
from spymaster.layers import streams as streams_job
from spymaster.levels import LEVEL_KINDS
from spymaster.live import replay
from spymaster.live.engine import Engine
from spymaster.live.streams import LiveStreams
from spymaster.live.types import Update
from spymaster.serving.days import BARS_FROM
from spymaster.serving.streams import StreamsView
from spymaster.settings import StorageSettings
from spymaster.synth import generate

SCALE = 0.02
NORMAL = dt.date(2026, 3, 5)
DST = dt.date(2026, 3, 9)  # the Monday after US DST began (Sunday 2026-03-08)
ROLL = dt.date(2026, 3, 12)  # ESH6 → ESM6


def _day(tmp: Path, date: dt.date, *, options: bool = True) -> Lake:
    lake = Lake(StorageSettings(lake_uri=str(tmp / "lake")))
    generate(lake, date, 1, scale=SCALE, seed=5, progress=False, options=options)
    for kind in paths.RAW_KINDS if options else paths.REQUIRED_RAW:
        bronze.build(lake, kind, date)
    return lake


def _run(
    lake: Lake, date: dt.date, until_ns: int | None = None, streams: LiveStreams | None = None
) -> tuple[Engine, list[Update]]:
    eng = Engine(date, streams=streams)
    ups: list[Update] = []
    for rec in replay.records(lake, date):
        if until_ns is not None and rec.ts_recv > until_ns:
            break
        ups += eng.feed([rec])
    ups += eng.finish()
    return eng, ups


def _bits(v: Any) -> Any:
    return np.asarray(v, dtype=np.float32).view(np.uint32)


def _check_parity(lake: Lake, date: dt.date) -> None:
    batch = silver.build(lake, date)
    episodes = gold.episodes(batch.state, batch.levels, batch.bars_30s)
    eng, ups = _run(lake, date)

    assert eng.silver is not None
    assert eng.silver.symbol == batch.front_month == sessions.front_month(date).symbol
    assert batch.state.num_rows > 1000
    assert eng.state.equals(batch.state)

    lv = [u.payload for u in ups if u.kind == "levels"]
    assert len(lv) == batch.levels.num_rows == sessions.step_times(date).size
    for name in batch.levels.column_names[1:]:
        want = batch.levels.column(name).to_pylist()
        got = [p["levels"][name] if name in LEVEL_KINDS else p[name] for p in lv]
        assert got == [None if w is None else w for w in want], name

    bars = [u.payload for u in ups if u.kind == "bar"]
    b2 = batch.bars_2m
    ts = b2.column("ts").cast(pa.int64()).to_numpy()
    sel = (ts >= sessions.et_ns(date, BARS_FROM)) & (ts <= sessions.step_times(date)[-1])
    assert len(bars) == int(sel.sum()) > 0
    for c in ("open", "high", "low", "close"):
        assert [p[c] for p in bars] == np.asarray(b2.column(c).to_pylist(), dtype=object)[sel].tolist(), c

    assert episodes.num_rows > 20
    assert [e["episode_id"] for e in eng.episodes] == episodes.column("episode_id").to_pylist()
    assert [e["anchor_reason"] for e in eng.episodes] == episodes.column("anchor_reason").to_pylist()
    live_v = np.stack([e["vector"] for e in eng.episodes])
    gold_v = np.stack(episodes.column("vector").to_numpy(zero_copy_only=False))
    assert np.array_equal(_bits(live_v), _bits(gold_v))
    answers = [u for u in ups if u.kind == "answer"]
    assert len(answers) == episodes.num_rows


def test_parity_normal_day(tmp_path: Path) -> None:
    _check_parity(_day(tmp_path, NORMAL), NORMAL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("date", "options"), [(DST, True), (ROLL, True), (NORMAL, False)], ids=["dst", "roll", "no-options"]
)
def test_parity_other_days(tmp_path: Path, date: dt.date, options: bool) -> None:
    _check_parity(_day(tmp_path, date, options=options), date)


def test_engine_never_looks_ahead(tmp_path: Path) -> None:
    """Cut the stream at 10:31 ET: every update stamped up to then is the same as with the whole day."""
    lake = _day(tmp_path, NORMAL)
    cut = sessions.et_ns(NORMAL, dt.time(10, 31))
    full, ups_full = _run(lake, NORMAL)
    part, ups_part = _run(lake, NORMAL, until_ns=cut)

    def upto(ups: list[Update]) -> list[tuple[str, str | None, dict[str, Any]]]:
        out = []
        for u in ups:
            t = u.payload.get("t") or u.payload.get("ts")
            if (
                t is not None
                and dt.datetime.fromisoformat(str(t).replace("Z", "+00:00")).timestamp() * 1e9 <= cut
            ):
                out.append((u.kind, u.level, u.payload))
        return out

    a, b = upto(ups_full), upto(ups_part)
    assert len(a) > 500
    assert a == b
    ts_full = full.state.column("ts").cast(pa.int64()).to_numpy()
    ts_part = part.state.column("ts").cast(pa.int64()).to_numpy()
    assert full.state.filter(pa.array(ts_full <= cut)).equals(part.state.filter(pa.array(ts_part <= cut)))


def test_live_streams_match_gold_streams(tmp_path: Path) -> None:
    """At each bar close the engine's stream rows are gold ``streams``' rows (scaled on the earlier
    days, to the bit), and its pushed answers are the API's as of the same bar, projection included."""
    prev = sessions.previous_trading_day(NORMAL)
    first = sessions.previous_trading_day(prev)  # scales prev's streams, so prev can train a model
    lake = Lake(StorageSettings(lake_uri=str(tmp_path / "lake")))
    generate(lake, first, 3, scale=SCALE, seed=5, progress=False)
    assert all(r.ok for r in pipeline.run(lake.settings, [first, prev]))
    for kind in paths.RAW_KINDS:
        bronze.build(lake, kind, NORMAL)
    silver.build(lake, NORMAL)
    want = streams_job.build(lake, NORMAL)
    streams_job.fit_projections(lake, min_days=2)  # NORMAL's model: fitted on the earlier streams

    live = LiveStreams(lake, NORMAL)
    assert live.scaling_version is not None
    assert live.scaling_version == want.column("scaling_version")[0].as_py()
    assert live.projection_version is not None
    _, ups = _run(lake, NORMAL, streams=live)

    got = live.rows.sort_by([("level_kind", "ascending"), ("ts", "ascending")])
    assert want.num_rows > 200
    assert got.equals(want)
    pushed = [u for u in ups if u.kind == "streams"]
    assert len(pushed) == want.num_rows
    view = StreamsView(lake)
    last = {u.level: u.payload for u in pushed}
    assert set(last) == set(want.column("level_kind").to_pylist())
    for level, payload in last.items():
        assert payload == view.answer(NORMAL, str(level))
    for u in pushed[::25]:  # and as of bars during the day (the API cuts the rows at the bar)
        at = dt.datetime.fromisoformat(u.payload["as_of"].replace("Z", "+00:00")).astimezone(sessions.ET)
        assert u.payload == view.answer(NORMAL, str(u.level), at=at.time())
    assert all(u.payload["projection"] is not None for u in pushed)
    assert any(u.payload["projection"]["curves"] for u in pushed)

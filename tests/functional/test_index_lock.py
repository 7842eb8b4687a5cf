"""The vector table's single-writer rule, enforced (issue 12 #1), on a local lake and on S3 over
HTTP: two indexers racing never duplicate or lose an episode; the lock is exclusive, survives a
killed holder, and ``index`` repairs a table that already holds duplicates."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from spymaster.errors import LockedError
from spymaster.lake import Lake, locked, paths, read_committed
from spymaster.lake.paths import Layer
from spymaster.layers import index, pipeline
from spymaster.settings import StorageSettings
from spymaster.synth import generate

START = dt.date(2026, 3, 10)
ROUNDS = 10


def _gold_ids(lake: Lake, dates: list[dt.date]) -> list[str]:
    ids: list[str] = []
    for d in dates:
        ids += read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, d).column("episode_id").to_pylist()
    return sorted(ids)


def _table_ids(lake: Lake) -> list[str]:
    return sorted(index.read_all(lake, ["episode_id"]).column("episode_id").to_pylist())


def _reset(lake: Lake) -> None:
    db = index.connect(lake)
    if index.open_table(lake) is not None:
        db.drop_table(paths.VECTOR_TABLE)
    for m in lake.list_files(paths.INDEX_MARKERS):
        lake.delete(m)


def _warm(_: int) -> int:
    import lancedb  # noqa: F401

    return os.getpid()


def _index_at(settings: StorageSettings, t0: float) -> tuple[float, float, int]:
    """One indexer process: start at ``t0`` (so two of them race), report when it ran."""
    lake = Lake(settings)
    time.sleep(max(0.0, t0 - time.time()))
    start = time.time()
    res = index.index(lake)
    return start, time.time(), sum(1 for r in res if not r.skipped)


def test_two_indexers_racing_ten_times_duplicate_and_lose_nothing(lake: Lake) -> None:
    # Given two committed gold days
    dates = generate(lake, START, 2, scale=0.01, seed=31, progress=False)
    assert all(r.ok for r in pipeline.run(lake.settings, dates))
    want = _gold_ids(lake, dates)
    assert want
    ctx = mp.get_context("spawn")  # fresh interpreters: no lancedb runtime inherited over fork
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        assert len(set(pool.map(_warm, range(2)))) >= 1
        for i in range(ROUNDS):
            _reset(lake)
            if i % 2:  # odd rounds: the table holds the first day, both racers add the second
                index.index(lake, [dates[0]])
            # When two indexers start at the same instant
            t0 = time.time() + 0.3
            a, b = (pool.submit(_index_at, lake.settings, t0) for _ in range(2))
            (s1, e1, n1), (s2, e2, n2) = a.result(), b.result()
            # Then they overlapped in time, exactly one did the work, and every gold episode is
            # in the table exactly once
            assert max(s1, s2) < min(e1, e2), f"round {i}: the indexers did not overlap"
            assert sorted([n1, n2]) == [0, 1 if i % 2 else 2], f"round {i}"
            got = _table_ids(lake)
            assert len(got) == len(set(got)), f"round {i}: {len(got) - len(set(got))} duplicated rows"
            assert got == want, f"round {i}: lost {len(set(want) - set(got))}"


def test_index_repairs_a_table_holding_duplicates(lake: Lake) -> None:
    # Given an indexed table into which a rogue writer appended a date's rows a second time
    dates = generate(lake, START, 2, scale=0.01, seed=32, progress=False)
    assert all(r.ok for r in pipeline.run(lake.settings, dates))
    index.index(lake)
    want = _gold_ids(lake, dates)
    table = index.open_table(lake)
    assert table is not None
    rows, _ = index.rows_for(lake, dates[1], read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, dates[1]))
    table.add(rows)
    assert len(_table_ids(lake)) > len(want)
    assert index.duplicates(lake)
    # When index runs (without --force)
    index.index(lake)
    # Then the duplicates are gone and nothing is lost
    assert index.duplicates(lake) == {}
    assert _table_ids(lake) == want


def test_the_lock_is_exclusive(lake: Lake) -> None:
    with locked(lake, "test") as first:
        t = time.monotonic()
        with pytest.raises(LockedError, match="held by"), locked(lake, "test", wait=0.6):
            pass
        assert time.monotonic() - t >= 0.5
        assert first.owner
    with locked(lake, "test", wait=0.1):  # released on exit
        pass


def test_a_stale_s3_lease_is_broken_and_a_live_one_is_renewed(s3_lake: Lake) -> None:
    # A live holder renews its lease (ttl 0.6 s) while it works: nobody else gets in
    with locked(s3_lake, "live", ttl=0.6) as lease:
        with pytest.raises(LockedError), locked(s3_lake, "live", wait=1.5):
            pass
        assert not lease.lost
    # A holder that died (its lease object left behind, never renewed) is broken after its ttl
    s3 = s3_lake.s3_client()
    bucket, _, prefix = s3_lake.root.partition("/")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/_locks/dead.lock", Body=b'{"owner": "ghost", "expires": 0}')
    with locked(s3_lake, "dead", wait=2) as lease:
        assert lease.etag


def _hold_forever(uri: str) -> None:
    lake = Lake(StorageSettings(lake_uri=uri))
    with locked(lake, "test"):
        time.sleep(600)


def test_a_local_lock_dies_with_its_holder(local_lake: Lake) -> None:
    # Given a process that holds the lock and is then killed with SIGKILL
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_hold_forever, args=(local_lake.uri,))
    p.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with locked(local_lake, "test", wait=0):
                pass
        except LockedError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the holder never took the lock")
    os.kill(p.pid or 0, signal.SIGKILL)
    p.join()
    # Then the lock is free at once
    with locked(local_lake, "test", wait=2):
        pass

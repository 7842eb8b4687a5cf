"""Gold + vector table idempotency, on a local lake and on S3 over HTTP: parallel date jobs then
one indexer lose nothing and duplicate nothing; re-runs and either index order give the same rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # pa.compute

from spymaster.lake import Lake, paths, read_committed
from spymaster.lake.paths import Layer
from spymaster.layers import gold, index, pipeline
from spymaster.synth import generate

START = dt.date(2026, 3, 10)


def _table_rows(lake: Lake) -> pa.Table:
    cols = ["episode_id", "date", "partition", "stats_version", "vector", "label"]
    return index.read_all(lake, cols).sort_by("episode_id")


def _assert_snapshot_is_the_table(lake: Lake) -> None:
    """The API's snapshot holds the table's current version, row for row (raw only where labelled)."""
    got = index.read_snapshot(lake)
    assert got is not None
    snap, version = got
    table = index.open_table(lake)
    assert table is not None
    assert version == table.version
    want = index.read_all(lake, index.SNAPSHOT_COLUMNS).sort_by("episode_id")
    snap = snap.sort_by("episode_id")
    assert snap.num_rows == want.num_rows > 0
    for name in index.SNAPSHOT_COLUMNS:
        if name == "raw":
            labelled = pa.compute.is_valid(want.column("label"))
            got_raw = snap.column("raw").combine_chunks()
            # raw is null exactly where the label is, and equal (NaN for NaN) elsewhere
            assert pa.compute.is_valid(got_raw).equals(labelled.combine_chunks())
            keep = want.column("raw").filter(labelled).combine_chunks()
            np.testing.assert_array_equal(
                got_raw.filter(labelled.combine_chunks()).flatten().to_numpy(zero_copy_only=False),
                keep.flatten().to_numpy(zero_copy_only=False),
            )
        else:
            assert snap.column(name).equals(want.column(name)), name


def _gold_ids(lake: Lake, dates: list[dt.date]) -> list[str]:
    ids: list[str] = []
    for d in dates:
        ids += read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, d).column("episode_id").to_pylist()
    return sorted(ids)


def test_parallel_jobs_then_indexer_lose_and_duplicate_nothing(lake: Lake) -> None:
    # Given three generated days, run as parallel per-date jobs (two processes), then the indexer
    dates = generate(lake, START, 3, scale=0.01, seed=21, progress=False)
    results = pipeline.run(lake.settings, dates, workers=2)
    assert all(r.ok for r in results), [r.error for r in results]
    index.index(lake)
    table = _table_rows(lake)
    ids = _gold_ids(lake, dates)
    # Then every gold episode is in the table exactly once
    assert table.num_rows == len(ids) > 0
    assert table.column("episode_id").to_pylist() == ids
    assert len(set(table.column("partition").to_pylist())) > 10
    _assert_snapshot_is_the_table(lake)

    # When a date is recomputed and re-indexed, and every event is replayed
    again = pipeline.run(lake.settings, [dates[1]], force=True)
    assert again[0].ok
    index.index(lake)
    index.index(lake)
    index.index(lake, [dates[0]], force=True)
    # Then the table is unchanged: same ids, same vectors
    assert _table_rows(lake).equals(table)
    assert _gold_ids(lake, dates) == ids
    _assert_snapshot_is_the_table(lake)


def test_index_order_does_not_matter(tmp_path: Path) -> None:
    from spymaster.settings import StorageSettings

    base = Lake(StorageSettings(lake_uri=str(tmp_path / "a")))
    dates = generate(base, START, 3, scale=0.01, seed=22, progress=False)
    assert all(r.ok for r in pipeline.run(base.settings, dates))
    index.index(base, dates)
    forward = _table_rows(base)
    # A second table on the same gold, indexed newest first
    other = Lake(StorageSettings(lake_uri=str(tmp_path / "a")))
    db = index.connect(other)
    db.drop_table(paths.VECTOR_TABLE)
    for m in other.list_files("_manifests/index"):
        other.delete(m)
    for d in reversed(dates):
        index.index_date(other, d)
    assert _table_rows(other).equals(forward)


def test_a_date_with_no_episodes_clears_its_rows(local_lake: Lake) -> None:
    dates = generate(local_lake, START, 2, scale=0.01, seed=23, progress=False)
    assert all(r.ok for r in pipeline.run(local_lake.settings, dates))
    index.index(local_lake)
    n_before = _table_rows(local_lake).num_rows
    # Commit an empty gold partition for the first date (as if its episodes vanished)
    from spymaster.lake import commit, new_run_id
    from spymaster.lake.paths import data_file

    run = new_run_id()
    path = data_file(Layer.GOLD, paths.EPISODES_TABLE, dates[0], run, 0)
    local_lake.write_parquet(path, gold.EPISODE_SCHEMA.empty_table())
    commit(local_lake, Layer.GOLD, paths.EPISODES_TABLE, dates[0], run, [path], 0, allow_shrink=True)
    index.index(local_lake, [dates[0]])
    rows = _table_rows(local_lake)
    assert dates[0] not in rows.column("date").to_pylist()
    assert rows.num_rows < n_before
    _assert_snapshot_is_the_table(local_lake)


_SERVE = """
import sys
from spymaster.lake import Lake
from spymaster.serving import Service
from spymaster.settings import StorageSettings
idx = Service(Lake(StorageSettings(lake_uri=sys.argv[1]))).index()
print(idx.episodes, idx.version, "lancedb" in sys.modules)
"""


def test_the_api_loads_the_snapshot_without_lancedb_and_falls_back_to_the_table(local_lake: Lake) -> None:
    import subprocess
    import sys

    # Given an indexed lake
    dates = generate(local_lake, START, 2, scale=0.01, seed=24, progress=False)
    assert all(r.ok for r in pipeline.run(local_lake.settings, dates))
    index.index(local_lake)
    table = index.open_table(local_lake)
    assert table is not None
    n, version = table.count_rows(), table.version

    def serve() -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", _SERVE, local_lake.settings.lake_uri],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.split()

    # When a fresh process serves it: every row, the table's version, and LanceDB never imported
    assert serve() == [str(n), str(version), "False"]
    # When the snapshot is gone (a lake indexed before snapshots): the same rows, from the table
    local_lake.delete(paths.VECTOR_SNAPSHOT)
    assert serve() == [str(n), str(version), "True"]
    # And the next indexer run writes it again
    index.index(local_lake)
    assert index.snapshot_version(local_lake) == version

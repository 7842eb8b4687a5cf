"""``spymaster vacuum`` (issue 12 #9), on a local lake and on S3 over HTTP: files no manifest
references (a run killed before its commit) go once older than the grace period, younger ones
stay, committed data and raw files are untouched, and old vector-table versions are pruned."""

from __future__ import annotations

import datetime as dt
import time

from spymaster.lake import Lake, paths, read_manifest, sql
from spymaster.lake.paths import Layer
from spymaster.layers import index, pipeline
from spymaster.layers.vacuum import vacuum
from spymaster.synth import generate


def test_vacuum_removes_orphans_after_the_grace_period_and_old_versions(lake: Lake) -> None:
    # Given an indexed day, re-indexed twice (three table versions or more)
    (d,) = generate(lake, dt.date(2026, 3, 10), 1, scale=0.01, seed=91, progress=False)
    assert all(r.ok for r in pipeline.run(lake.settings, [d]))
    index.index(lake)
    index.index(lake, force=True)
    index.index(lake, force=True)
    table = index.open_table(lake)
    assert table is not None
    versions = len(table.list_versions())
    assert versions > 1
    rows = index.read_all(lake, ["episode_id"]).num_rows
    # and the leftovers of a bronze run killed before its commit
    committed = read_manifest(lake, Layer.BRONZE, "fut_trades", d).files
    orphan = paths.data_file(Layer.BRONZE, "fut_trades", d, "20260310T000000-deadbeef", 0)
    lake.write_bytes(orphan, b"half a parquet file")
    raw = sorted(lake.list_files(paths.RAW_ROOT))
    n_before = sql.query(lake, "SELECT count(*) FROM bronze.fut_trades").to_pylist()
    # When vacuum runs with a grace period the orphan is younger than, it stays
    res = vacuum(lake, grace=dt.timedelta(hours=1))
    assert orphan in res.kept_young
    assert lake.exists(orphan)
    # When the orphan is older than the grace period, it goes; so do old table versions
    time.sleep(1.1)
    res = vacuum(lake, grace=dt.timedelta(seconds=1))
    assert res.removed == [orphan]
    assert not lake.exists(orphan)
    assert res.table_versions_removed > 0
    after = index.open_table(lake)
    assert after is not None
    assert len(after.list_versions()) < versions
    # Then everything committed is intact
    assert all(lake.exists(f) for f in committed)
    assert sorted(lake.list_files(paths.RAW_ROOT)) == raw
    assert sql.query(lake, "SELECT count(*) FROM bronze.fut_trades").to_pylist() == n_before
    assert index.read_all(lake, ["episode_id"]).num_rows == rows
    assert lake.exists(read_manifest(lake, Layer.GOLD, paths.EPISODES_TABLE, d).files[0])


def test_a_dry_run_removes_nothing(local_lake: Lake) -> None:
    orphan = paths.data_file(Layer.SILVER, "bars_2m", dt.date(2026, 3, 10), "x", 0)
    local_lake.write_bytes(orphan, b"x")
    tmp = "_manifests/bronze/fut_trades/.date=2026-03-10.json.abc.tmp"
    local_lake.write_bytes(tmp, b"{")
    time.sleep(1.1)
    res = vacuum(local_lake, grace=dt.timedelta(seconds=1), dry_run=True)
    assert sorted(res.removed) == sorted([orphan, tmp])
    assert local_lake.exists(orphan)
    assert local_lake.exists(tmp)
    vacuum(local_lake, grace=dt.timedelta(seconds=1))
    assert not local_lake.exists(orphan)
    assert not local_lake.exists(tmp)

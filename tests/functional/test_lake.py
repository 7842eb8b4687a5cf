"""The lake's storage and commit protocol, on a local folder and on S3 over HTTP."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from spymaster.errors import NotCommittedError
from spymaster.lake import (
    Lake,
    commit,
    committed_dates,
    new_run_id,
    paths,
    read_committed,
    read_manifest,
    uncommit,
)
from spymaster.lake.paths import Layer
from tests.support import fixture

D = dt.date(2026, 3, 5)


def test_bytes_round_trip_exactly_even_for_zst_names(lake: Lake, tmp_path: Path) -> None:
    # pyarrow streams guess compression from the extension unless told not to; a lake must not.
    data = fixture("trades").read_bytes()
    lake.write_bytes("raw/x/file.dbn.zst", data)
    assert lake.read_bytes("raw/x/file.dbn.zst") == data
    lake.put_file(fixture("mbp-10"), "raw/y/file.dbn.zst")
    with lake.local_copy("raw/y/file.dbn.zst") as local:
        assert local.read_bytes() == fixture("mbp-10").read_bytes()
    assert lake.size("raw/y/file.dbn.zst") == fixture("mbp-10").stat().st_size


def test_commit_makes_a_run_visible_and_replaces_the_previous(lake: Lake) -> None:
    t1 = pa.table({"x": [1, 2, 3]})
    t2 = pa.table({"x": [4, 5]})
    # Given files written but not committed: readers see nothing
    run1 = new_run_id()
    f1 = paths.data_file(Layer.SILVER, "demo", D, run1, 0)
    lake.write_parquet(f1, t1)
    assert committed_dates(lake, Layer.SILVER, "demo") == []
    with pytest.raises(NotCommittedError):
        read_committed(lake, Layer.SILVER, "demo", D)
    # When committed, then it is the content
    commit(lake, Layer.SILVER, "demo", D, run1, [f1], 3)
    assert read_committed(lake, Layer.SILVER, "demo", D).equals(t1)
    # A second run replaces it and removes the first run's files
    run2 = new_run_id()
    f2 = paths.data_file(Layer.SILVER, "demo", D, run2, 0)
    lake.write_parquet(f2, t2)
    assert read_committed(lake, Layer.SILVER, "demo", D).equals(t1)  # not visible until commit
    commit(lake, Layer.SILVER, "demo", D, run2, [f2], 2)
    assert read_committed(lake, Layer.SILVER, "demo", D).equals(t2)
    assert lake.list_files(paths.table_dir(Layer.SILVER, "demo", D)) == [f2]
    assert read_manifest(lake, Layer.SILVER, "demo", D).rows == 2
    # Uncommit hides first, then removes
    uncommit(lake, Layer.SILVER, "demo", D)
    assert committed_dates(lake, Layer.SILVER, "demo") == []
    assert lake.list_files(paths.table_dir(Layer.SILVER, "demo", D)) == []


def test_local_write_is_atomic_on_failure(local_lake: Lake) -> None:
    local_lake.write_bytes("a/b.json", b"old")

    with pytest.raises(TypeError):
        local_lake.write_bytes("a/b.json", object())  # type: ignore[arg-type]
    assert local_lake.read_bytes("a/b.json") == b"old"
    assert local_lake.list_files("a") == ["a/b.json"]  # no temp file left behind

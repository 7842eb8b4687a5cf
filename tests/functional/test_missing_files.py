"""A committed file gone missing (issue 12 #8), on a local lake and on S3 over HTTP: it breaks
only the queries that read its table, and ``validate`` / ``status`` name it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from spymaster.errors import LakeError
from spymaster.lake import Lake, read_manifest, sql
from spymaster.lake.paths import Layer, Product, RawKind
from spymaster.lake.status import missing_files
from spymaster.layers import bronze
from spymaster.raw.ingest import ingest
from tests.support import fixture

FIX_DATE = dt.date(2020, 12, 28)
KINDS = [RawKind(Product.FUT, s) for s in ("trades", "mbp-10", "definition")]


def _cli(lake: Lake, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if lake.is_s3 and lake.settings.endpoint_url:
        env |= {
            "AWS_ENDPOINT_URL": lake.settings.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    return subprocess.run(
        [sys.executable, "-m", "spymaster.cli", "--lake", lake.uri, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_missing_file_breaks_only_its_table(lake: Lake) -> None:
    # Given three committed bronze tables
    placed, refused, _unused = ingest(lake, [fixture(s) for s in ("trades", "mbp-10", "definition")])
    assert not refused
    assert len(placed) == 3
    for kind in KINDS:
        bronze.build(lake, kind, FIX_DATE)
    assert missing_files(lake) == []
    # When one committed data file disappears
    gone = read_manifest(lake, Layer.BRONZE, "fut_mbp10", FIX_DATE).files[0]
    lake.delete(gone)
    # Then the other tables still answer
    assert sql.query(lake, "SELECT count(*) FROM bronze.fut_trades").column(0).to_pylist() == [4]
    assert sql.query(lake, "SELECT count(*) FROM bronze.fut_definition").column(0).to_pylist() == [1]
    # and the broken one says which file is missing, in one line
    with pytest.raises(LakeError, match="missing") as err:
        sql.query(lake, "SELECT count(*) FROM bronze.fut_mbp10")
    assert gone in str(err.value)
    # validate and status name it; validate exits 1
    assert [m.file for m in missing_files(lake)] == [gone]
    r = _cli(lake, "validate")
    assert r.returncode == 1
    assert gone in r.stderr
    r = _cli(lake, "status")
    assert r.returncode == 0
    assert "missing: 1 committed file(s)" in r.stdout
    r = _cli(lake, "sql", "SELECT count(*) FROM bronze.fut_mbp10")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    # Rebuilding the date repairs it
    bronze.build(lake, KINDS[1], FIX_DATE)
    assert missing_files(lake) == []
    assert _cli(lake, "validate").returncode == 0

"""The ``spymaster`` command as a user runs it (a real subprocess), on a local lake and on S3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spymaster.lake import paths
from spymaster.lake.paths import Product, RawKind
from tests.support import S3_BUCKET, fixture

BAD_KEY = paths.raw_file(RawKind(Product.FUT, "trades"), __import__("datetime").date(2020, 12, 29))


def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spymaster.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def lake_cli(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    if request.param == "local":
        return str(tmp_path / "lake"), {}
    endpoint = request.getfixturevalue("s3_endpoint")
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return f"s3://{S3_BUCKET}/cli-{tmp_path.name}", env


def test_ingest_bronze_status_sql(lake_cli: tuple[str, dict[str, str]]) -> None:
    uri, env = lake_cli
    files = [str(fixture(s)) for s in ("trades", "mbp-10", "definition")]
    r = _cli(["--lake", uri, "ingest", *files], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("placed") == 3

    r = _cli(["--lake", uri, "bronze"], env)
    assert r.returncode == 0, r.stderr
    assert "3 of 3 file(s) committed" in r.stdout

    r = _cli(["--lake", uri, "status"], env)
    assert r.returncode == 0, r.stderr
    assert "2020-12-28" in r.stdout
    assert "3/7    3/7       -      -        -" in r.stdout

    r = _cli(["--lake", uri, "sql", "SELECT count(*) AS n, min(symbol) AS s FROM bronze.fut_trades"], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["n\ts", "4\tESH1"]

    # Bad input: a truncated file for another date → non-zero exit naming the file; nothing else changes
    data = fixture("trades").read_bytes()
    bad = Path(os.environ.get("TMPDIR", "/tmp")) / f"bad-{os.getpid()}.dbn.zst"
    bad.write_bytes(b"")
    try:
        r = _cli(["--lake", uri, "ingest", str(bad)], env)
        assert r.returncode == 1
        assert "empty" in r.stderr
        assert str(bad) in r.stderr
    finally:
        bad.unlink()
    assert data  # the good fixture is untouched on disk

    r = _cli(["--lake", uri, "sql", "SELECT count(*) FROM bronze.fut_trades"], env)
    assert r.stdout.splitlines()[-1] == "4"


def test_bronze_exits_nonzero_and_status_shows_quarantine(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    target = tmp_path / "lake" / BAD_KEY
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 64)

    r = _cli(["--lake", uri, "bronze"])
    assert r.returncode == 1
    assert BAD_KEY in r.stderr
    assert "corrupt" in r.stderr
    assert "Traceback" not in r.stderr

    r = _cli(["status", "--lake", uri])  # --lake also works after the command
    assert "quarantined: 1" in r.stdout
    assert "CorruptInputError" in r.stdout


def test_sql_error_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    r = _cli(["--lake", str(tmp_path / "lake"), "sql", "SELECT * FROM bronze.nope"])
    assert r.returncode == 2
    assert "error:" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_dates_are_refused(tmp_path: Path) -> None:
    r = _cli(["--lake", str(tmp_path / "lake"), "bronze", "--start", "2026-13-01"])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_run_with_one_thread_per_worker_writes_its_timings(tmp_path: Path) -> None:
    import datetime as dt
    import json

    from spymaster.lake import Lake
    from spymaster.settings import StorageSettings
    from spymaster.synth import generate

    lake = tmp_path / "lake"
    generate(
        Lake(StorageSettings(lake_uri=str(lake))), dt.date(2026, 3, 10), 2, scale=0.01, seed=5, progress=False
    )
    report = tmp_path / "timings.json"
    # the thread count from the environment, as a deployed job reads it
    r = _cli(
        ["--lake", str(lake), "run", "--workers", "2", "--timings", str(report)],
        {"SPYMASTER_WORKER_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr
    assert "2 of 2 date(s) at gold" in r.stdout
    doc = json.loads(report.read_text())
    assert (doc["workers"], doc["threads"]) == (2, 1)
    assert set(doc["phases"]) == {"date_jobs", "index", "fit", "fit_streams"}
    assert sorted(doc["dates"]) == ["2026-03-10", "2026-03-11"]
    assert all(set(d) == {"bronze", "silver", "gold", "streams"} for d in doc["dates"].values())

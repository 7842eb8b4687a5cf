"""Storage faults as a user meets them (issue 12 #6, #7): a misspelt bucket, an unreachable
endpoint, a read-only lake and a full disk give one-line errors and a non-zero exit, per date."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import S3_BUCKET


def _cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spymaster.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def _one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode != 0, r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.s3
@pytest.mark.parametrize("command", [["status"], ["run"], ["index"], ["sql", "SELECT 1"]])
def test_a_misspelt_bucket_is_bucket_not_found(s3_endpoint: str, command: list[str]) -> None:
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    r = _cli(["--lake", f"s3://{S3_BUCKET}-typo/lake", *command], env)
    _one_line_error(r, "bucket not found", f"{S3_BUCKET}-typo")


@pytest.mark.parametrize("command", [["status"], ["run"]])
def test_an_unreachable_endpoint_is_one_line(command: list[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
    }
    r = _cli(["--lake", f"s3://{S3_BUCKET}/lake", *command], env)
    _one_line_error(r, "endpoint unreachable", f"127.0.0.1:{port}")


# -- a read-only lake and a full disk (local): real mounts in a private mount namespace ----------


def _in_mount_ns(script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as (namespace-)root in a private mount namespace: ``unshare -rm`` needs no
    privileges on Linux, and the mounts vanish with it."""
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=timeout,
        check=False,
    )


def _failures(stderr: str) -> dict[str, str]:
    return {
        ln.split()[1]: ln for ln in stderr.splitlines() if ln.startswith("failed ") and len(ln.split()) > 1
    }


@pytest.fixture(scope="module")
def raw_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Three generated days, raw files only."""
    import datetime as dt

    from spymaster.lake import Lake
    from spymaster.settings import StorageSettings
    from spymaster.synth import generate

    root = tmp_path_factory.mktemp("raw") / "lake"
    dates = generate(
        Lake(StorageSettings(lake_uri=str(root))),
        dt.date(2026, 3, 10),
        3,
        scale=0.01,
        seed=51,
        progress=False,
    )
    return root, [d.isoformat() for d in dates]


def test_a_read_only_lake_fails_each_date_naming_the_write(
    raw_days: tuple[Path, list[str]], tmp_path: Path
) -> None:
    src, dates = raw_days
    lake = tmp_path / "lake"
    subprocess.run(["cp", "-a", f"{src}/.", str(lake)], check=True)
    py = sys.executable
    r = _in_mount_ns(
        f"mount --bind {lake} {lake} && mount -o remount,bind,ro {lake} && "
        f"{py} -m spymaster.cli --lake {lake} run --workers 2"
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    # Every date is reported, each with the write that failed and why (not the cleanup's failure)
    failed = _failures(r.stderr)
    assert sorted(failed) == dates, r.stderr
    for line in failed.values():
        assert "at bronze: cannot write lake file: Read-only file system" in line, line
        assert "[file=bronze/" in line
    assert "run: 0 of 3 date(s) at gold" in r.stdout
    # and the index command says so in one line
    r = _in_mount_ns(
        f"mount --bind {lake} {lake} && mount -o remount,bind,ro {lake} && {py} -m spymaster.cli --lake {lake} index"
    )
    _one_line_error(r, "Read-only file system")


def test_a_full_disk_fails_per_date_and_the_run_goes_on(
    raw_days: tuple[Path, list[str]], tmp_path: Path
) -> None:
    src, dates = raw_days
    raw_bytes = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    lake = tmp_path / "lake"
    lake.mkdir()
    py = sys.executable
    # A 'disk' (tmpfs) with room for the raw files and about one more day's bronze
    size_kb = raw_bytes // 1024 + 4096
    r = _in_mount_ns(
        f"mount -t tmpfs -o size={size_kb}k tmpfs {lake} && cp -a {src}/. {lake} && "
        f"{py} -m spymaster.cli --lake {lake} run --workers 2"
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    failed = _failures(r.stderr)
    ok = int(r.stdout.split("run: ")[1].split(" of ")[0])
    # Every date is accounted for: at gold, or failed with the file and "No space left on device"
    assert ok + len([d for d in failed if d in dates]) == len(dates), r.stdout + r.stderr
    assert any("No space left on device" in ln and "[file=" in ln for ln in failed.values()), r.stderr

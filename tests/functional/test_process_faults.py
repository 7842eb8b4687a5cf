"""``kill -9`` of ``spymaster run --workers 2`` (issue 12 #5): its pool workers die with it and
commit nothing afterwards."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from spymaster.lake import Lake
from spymaster.settings import StorageSettings
from spymaster.synth import generate


def _manifests(root: Path) -> set[str]:
    return (
        {str(p) for p in (root / "_manifests").rglob("*.json")} if (root / "_manifests").exists() else set()
    )


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    # Given four raw days and `run --workers 2` busy on them
    root = tmp_path / "lake"
    generate(
        Lake(StorageSettings(lake_uri=str(root))), dt.date(2026, 3, 9), 4, scale=0.03, seed=61, progress=False
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "spymaster.cli", "--lake", str(root), "run", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parent = psutil.Process(proc.pid)
    workers: list[psutil.Process] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (workers and _manifests(root)):
        workers = [c for c in parent.children(recursive=True) if c.is_running()]
        time.sleep(0.05)
    assert len(workers) >= 2, "the pool never started"
    # When the parent is killed with SIGKILL mid-run
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Then every worker is gone within two seconds
    _gone, alive = psutil.wait_procs(workers, timeout=2)
    assert not alive, [p.pid for p in alive]
    # and nothing is committed afterwards
    after = _manifests(root)
    time.sleep(2)
    assert _manifests(root) == after

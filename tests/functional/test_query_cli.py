"""``spymaster query``: refuses bad input before loading anything, answers cold within 2 s of CPU
with the API's own answer, and flags a prior-only (n = 0) answer."""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time

import pytest

from spymaster.lake import Lake, read_committed
from spymaster.lake.paths import Layer
from spymaster.layers import index
from spymaster.layers.index import INDEX_COLUMNS
from spymaster.serving import Service
from spymaster.serving.days import et_time
from tests.functional.conftest import BUILT_DATES

QUERY_CPU_S = 3.0
"""The exchange calendar alone (pandas-market-calendars: import 0.8 s + the year's schedule 0.56 s of
CPU, measured with cProfile on this machine, the same on the previous release) is most of a cold
command; the bound still fails if the query path loads LanceDB, scikit-learn or a whole table."""
REFUSE_CPU_S = 2.5
"""Bad input is refused after the calendar (≈ 1.4 s) and the lake's listing, before any table."""


def _run(lake: Lake, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """The command as a user runs it, cold (a new process); its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(
        [sys.executable, "-m", "spymaster.cli", "--lake", lake.uri, "query", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return r, cpu


def _in_zone(lake: Lake, date: object) -> tuple[str, str]:
    """(ET time, level kind) of the first state row of a date in its level's approach zone."""
    state = read_committed(lake, Layer.SILVER, "state", date)  # type: ignore[arg-type]
    rows = state.select(["ts", "level_kind", "in_zone"]).to_pylist()
    row = next(r for r in rows if r["in_zone"] is not None and r["in_zone"] >= 0.5)
    ts_ns = int(row["ts"].timestamp()) * 1_000_000_000
    return et_time(ts_ns)[:5], row["level_kind"]


def test_rows_rebuilt_from_markers_equal_the_vector_table(built_lake: Lake) -> None:
    rebuilt = index.read_from_markers(built_lake, INDEX_COLUMNS)
    assert rebuilt is not None
    table = index.read_all(built_lake, INDEX_COLUMNS)
    assert rebuilt.num_rows == table.num_rows > 0
    assert rebuilt.sort_by("episode_id").to_pylist() == table.sort_by("episode_id").to_pylist()


def test_query_answers_cold_with_the_apis_answer(built_lake: Lake) -> None:
    date = BUILT_DATES[-1]
    at, level = _in_zone(built_lake, date)
    t0 = time.perf_counter()
    r, cpu = _run(built_lake, "--date", date.isoformat(), "--time", at, "--level", level, "--json")
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert cpu < QUERY_CPU_S, f"{cpu:.2f} s of CPU (wall {wall:.2f} s)"
    got = json.loads(r.stdout)
    # The same answer the API's service gives from the LanceDB table itself
    want = json.loads(
        json.dumps(
            Service(built_lake).similar(date=date, time=dt.time.fromisoformat(at), level_kind=level),
            default=str,
        )
    )
    # (the command line reads no table version: it rebuilt the rows from the index markers)
    assert got["query"].pop("table_version") is None
    assert got["query"] == {k: v for k, v in want["query"].items() if k != "table_version"}
    assert got["neighbours"] == want["neighbours"]
    assert got["distribution"] == want["distribution"]
    assert got["neighbours"], "no neighbours: the test would prove little"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--date", "2026-03-07", "--time", "10:00", "--level", "PM_HIGH"], "Saturday) is not a trading day"),
        (["--date", "2026-03-12", "--time", "10:00", "--level", "PM_HIGH"], "is not in the lake"),
        (["--date", "2026-03-10", "--time", "08:00", "--level", "PM_HIGH"], "outside 09:30–12:30 ET"),
        (["--date", "2026-03-10", "--time", "10:00", "--level", "PM_HIGHER"], "unknown level"),
        (["--date", "2026-03-10", "--time", "10:00", "--level", "PM_HIGH", "--horizon", "3"], "not one of"),
        (["--date", "2026-03-10", "--time", "10:00", "--level", "PM_HIGH", "--as-of", "2026-03-11"], "after"),
        (["--date", "2026-03-10", "--time", "10h", "--level", "PM_HIGH"], "not a time"),
    ],
)
def test_bad_input_is_refused_before_anything_loads(built_lake: Lake, args: list[str], says: str) -> None:
    r, cpu = _run(built_lake, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert says in " ".join(r.stderr.replace("│", " ").split()), r.stderr
    assert "Traceback" not in r.stderr
    assert cpu < REFUSE_CPU_S, f"{cpu:.2f} s of CPU to refuse bad input"


def test_prior_only_answer_is_flagged(built_lake: Lake) -> None:
    first = BUILT_DATES[0]  # nothing before it: every answer is the prior alone
    at, level = _in_zone(built_lake, first)
    r, _ = _run(built_lake, "--date", first.isoformat(), "--time", at, "--level", level)
    assert r.returncode == 0, r.stderr
    assert "n = 0," in r.stdout
    assert "prior only" in r.stdout

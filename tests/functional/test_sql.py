"""``spymaster sql``: every view answers ``SELECT *`` (timestamps included, no pytz needed), and
nothing but a single read-only statement is accepted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from spymaster.cli import app
from spymaster.lake import Lake

VIEWS = (
    "bronze.fut_trades",
    "bronze.fut_mbp10",
    "bronze.fut_definition",
    "bronze.opt_definition",
    "bronze.opt_trades",
    "bronze.opt_mbp1",
    "bronze.opt_statistics",
    "silver.bars_30s",
    "silver.bars_2m",
    "silver.levels",
    "silver.state",
    "gold.episodes",
)


@pytest.fixture
def built(built_lake: Lake) -> Lake:
    return built_lake


def _sql(lake: Lake, statement: str) -> Result:
    return CliRunner().invoke(app, ["sql", "--lake", lake.uri, statement])


@pytest.mark.parametrize("view", VIEWS)
def test_select_star_on_every_view(built: Lake, view: str) -> None:
    r = _sql(built, f"SELECT * FROM {view} LIMIT 3")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    header = lines[0].split("\t")
    assert 2 <= len(lines) <= 4, lines  # a header and up to three rows (at least one)
    assert all(len(line.split("\t")) == len(header) for line in lines[1:])
    # timestamps print as ISO 8601 UTC
    ts_cols = [i for i, c in enumerate(header) if c in ("ts", "ts_recv", "ts_event")]
    if ts_cols:
        first = lines[1].split("\t")[ts_cols[0]]
        # a date of the lake, or the evening before its first (the Globex session opens then)
        assert first[:10] in ("2026-03-08", "2026-03-09", "2026-03-10", "2026-03-11"), first
        assert first[10] == "T"
        assert first.endswith("Z")


def test_timestamp_values_are_exact(built: Lake) -> None:
    r = _sql(built, "SELECT ts_recv, epoch_ns(ts_recv) AS ns FROM bronze.fut_trades ORDER BY ts_recv LIMIT 1")
    assert r.exit_code == 0, r.output
    text, ns = r.output.splitlines()[1].split("\t")
    parsed = dt.datetime.fromisoformat(text[:19] + "+00:00")
    assert int(parsed.timestamp()) == int(ns) // 1_000_000_000
    assert text[20:29] == ns[-9:]  # the nanoseconds are all there


@pytest.mark.parametrize(
    "statement",
    [
        "DROP VIEW silver.levels",
        "COPY (SELECT * FROM silver.levels) TO '{out}'",
        "CREATE TABLE t AS SELECT 1",
        "ATTACH '{out}' AS x",
        "SET threads = 1",
        "INSTALL httpfs",
        "SELECT 1; DROP VIEW silver.levels",
    ],
)
def test_sql_is_read_only(built: Lake, tmp_path: Path, statement: str) -> None:
    out = tmp_path / "out.csv"
    r = _sql(built, statement.format(out=out))
    assert r.exit_code == 2, r.output
    assert "error:" in r.output
    assert "read-only" in r.output or "one statement" in r.output
    assert not out.exists()
    # and the view is still there
    assert _sql(built, "SELECT count(*) FROM silver.levels").exit_code == 0

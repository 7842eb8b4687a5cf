"""What a new user touches, end to end through the command line (in process, on a local lake):
a holiday and an early close through generate, run and evaluate, a futures-only day among them,
and the commands' messages."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from spymaster import sessions
from spymaster.cli import app
from spymaster.lake import Lake, committed_dates, paths, read_committed
from spymaster.lake.paths import Layer
from spymaster.settings import StorageSettings
from tests.support import fixture

HOLIDAY, HALF_DAY, NO_OPTIONS = dt.date(2026, 11, 26), dt.date(2026, 11, 27), dt.date(2026, 11, 25)


def _flat(text: str) -> str:
    """Terminal output as one line, without the boxes rich draws around errors and help."""
    return " ".join(text.replace("│", " ").split())


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def thanksgiving(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, Result]:
    """Nine trading days around Thanksgiving 2026, generated and run; 11-25 without options."""
    lake = Lake(StorageSettings(lake_uri=str(tmp_path_factory.mktemp("thanksgiving") / "lake")))
    r = _cli(
        "--lake",
        lake.uri,
        "generate",
        "--start",
        "2026-11-17",
        "--days",
        "9",
        "--scale",
        "0.01",
        "--seed",
        "4",
    )
    assert r.exit_code == 0, r.output
    for kind in paths.OPTIONS_RAW:
        lake.delete(paths.raw_file(kind, NO_OPTIONS))
    run = _cli("--lake", lake.uri, "run")
    assert run.exit_code == 0, run.output
    return lake, r


def test_generate_skips_the_holiday_and_names_the_early_close(thanksgiving: tuple[Lake, Result]) -> None:
    lake, gen = thanksgiving
    assert "generated 9 day(s): 2026-11-17 … 2026-11-30" in gen.output
    assert "exchange holidays skipped: 2026-11-26" in gen.output
    assert "2026-11-27 is an early close: its session ends 13:15 ET" in gen.output
    assert not any(lake.exists(paths.raw_file(k, HOLIDAY)) for k in paths.RAW_KINDS)


def test_run_takes_the_half_day_through_every_layer(thanksgiving: tuple[Lake, Result]) -> None:
    lake, _ = thanksgiving
    dates = committed_dates(lake, Layer.GOLD, paths.EPISODES_TABLE)
    assert len(dates) == 9
    assert HOLIDAY not in dates
    assert HALF_DAY in dates
    # the half day's market ends at its 13:15 ET close; its bars cover the session to the close
    trades = read_committed(lake, Layer.BRONZE, "fut_trades", HALF_DAY)
    _, close = sessions.globex_session(HALF_DAY)
    assert max(trades.column("ts_recv").cast("int64").to_pylist()) < close
    bars = read_committed(lake, Layer.SILVER, "bars_2m", HALF_DAY).column("ts").cast("int64").to_pylist()
    assert close <= max(bars) < close + 120 * 10**9
    assert read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, HALF_DAY).num_rows > 0
    # the futures-only day ran with its dealer features null
    state = read_committed(lake, Layer.SILVER, "state", NO_OPTIONS)
    assert set(state.column("dealer_missing").to_pylist()) == {1.0}


def test_evaluate_prints_a_summary_and_says_which_days_lacked_options(
    thanksgiving: tuple[Lake, Result],
) -> None:
    lake, _ = thanksgiving
    r = _cli("--lake", lake.uri, "evaluate", "--no-ablation")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "## Goals" in out
    assert "## Per group" not in out  # the rest is in the report file
    assert "![" not in out
    assert f"report: {lake.uri}/reports/evaluation/" in out
    assert "test day(s) had no (or partial) options files" in out
    assert NO_OPTIONS.isoformat() in out
    latest = lake.read_json("reports/evaluation/latest.json")
    metrics = lake.read_json(latest["metrics"])
    assert HALF_DAY.isoformat() in metrics["test_dates"]
    assert HOLIDAY.isoformat() not in metrics["test_dates"]


def test_run_reports_what_the_vector_table_holds(thanksgiving: tuple[Lake, Result]) -> None:
    lake, _ = thanksgiving
    total = sum(
        read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, d).num_rows
        for d in committed_dates(lake, Layer.GOLD, paths.EPISODES_TABLE)
    )
    r = _cli("--lake", lake.uri, "run", "--start", "2026-11-30", "--days", "1", "--force")
    assert r.exit_code == 0, r.output
    one = read_committed(lake, Layer.GOLD, paths.EPISODES_TABLE, dt.date(2026, 11, 30)).num_rows
    assert f"indexed 1 date(s) ({one:,} episodes); the vector table holds {total:,} episodes" in r.stdout


def test_layer_commands_take_dates_as_arguments(thanksgiving: tuple[Lake, Result]) -> None:
    lake, _ = thanksgiving
    r = _cli("--lake", lake.uri, "silver", "2026-11-27", "2026-11-30", "--force")
    assert r.exit_code == 0, r.output
    assert "silver: 2 of 2 date(s) committed" in r.stdout
    r = _cli("--lake", lake.uri, "gold", "2026-11-27")
    assert r.exit_code == 0, r.output
    r = _cli("--lake", lake.uri, "silver", "2026-11-26")
    assert r.exit_code == 2
    assert "exchange holiday" in r.output
    r = _cli("--lake", lake.uri, "silver", "2026-11-27", "--start", "2026-11-27")
    assert r.exit_code == 2
    assert "not both" in r.output


def test_a_weekend_range_is_refused_not_widened(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    for cmd in ("bronze", "silver", "gold", "run"):
        r = _cli("--lake", uri, cmd, "--start", "2026-11-28", "--end", "2026-11-29")
        assert r.exit_code == 2, (cmd, r.output)
        assert "no trading day from 2026-11-28 to 2026-11-29" in _flat(r.output)
    r = _cli("--lake", uri, "bronze")
    assert r.exit_code == 1
    assert "no raw files have landed" in r.output


def test_generate_says_what_it_did(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    r = _cli("--lake", uri, "generate", "--start", "2026-03-07", "--scale", "0.005")
    assert r.exit_code == 0, r.output
    assert "2026-03-07 is a Saturday, not a trading day: starting at 2026-03-09" in r.stdout
    assert "generated 1 day(s): 2026-03-09 … 2026-03-09" in r.stdout
    r = _cli("--lake", uri, "generate", "--start", "2026-03-09", "--scale", "0.005")
    assert "generated 0 day(s)" in r.stdout
    assert "1 day(s) already in the lake" in r.stdout
    r = _cli("--lake", uri, "generate", "--start", "1999-01-04")
    assert r.exit_code == 2
    assert "2000-01-03 to 2099-12-31" in _flat(r.output)
    r = _cli("--lake", uri, "generate", "--start", "2026-03-05", "--seed", "-5")
    assert r.exit_code == 2
    assert "greater than or equal to 0" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_ingest_skips_schemas_it_does_not_use(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    files = [str(fixture(s)) for s in ("trades", "mbp-1", "tbbo", "statistics", "mbo")]
    r = _cli("--lake", uri, "ingest", *files)
    assert r.exit_code == 0, r.output
    assert r.stdout.count("placed ") == 1
    assert r.stdout.count("skipped ") == 4
    assert "ES.FUT mbp-1 is not used" in r.stdout
    # a broken file still fails the command
    bad = tmp_path / "bad.dbn.zst"
    bad.write_bytes(b"")
    r = _cli("--lake", uri, "ingest", str(bad), str(fixture("tbbo")))
    assert r.exit_code == 1
    assert "skipped " in r.stdout


def test_help_reads_as_text() -> None:
    top = _cli("--help")
    assert top.exit_code == 0
    assert "``" not in top.output
    assert "The spymaster command line" in top.output
    q = _flat(_cli("query", "--help").output)
    assert "strictly before this one" in q

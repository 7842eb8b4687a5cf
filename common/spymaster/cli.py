"""The spymaster command line: one option for the lake, one command per job."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor as _ThreadPool
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from tqdm import tqdm

from spymaster import sessions
from spymaster.errors import LiveSourceError, SettingsError, SpymasterError
from spymaster.lake import Lake, is_committed, paths
from spymaster.lake.paths import Layer
from spymaster.outcomes import OUTCOMES
from spymaster.settings import storage_settings_for

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

LakeOpt = Annotated[
    str | None,
    typer.Option(
        "--lake", help="Lake URI: a folder or s3://bucket/prefix (default $SPYMASTER_LAKE_URI or ./lake)"
    ),
]
StartOpt = Annotated[dt.datetime | None, typer.Option("--start", formats=["%Y-%m-%d"], help="First date")]
EndOpt = Annotated[
    dt.datetime | None, typer.Option("--end", formats=["%Y-%m-%d"], help="Last date (inclusive)")
]
DaysOpt = Annotated[int | None, typer.Option("--days", min=1, help="Number of trading days from --start")]
ShrinkOpt = Annotated[
    bool,
    typer.Option("--allow-shrink", help="Let a re-run empty a committed partition or drop most of its rows"),
]


class _State:
    lake_uri: str | None = None


_state = _State()


@app.callback()
def _main(lake: LakeOpt = None) -> None:
    """Spymaster: similarity retrieval of ES level approaches."""
    _state.lake_uri = lake


def _lake(override: str | None = None) -> Lake:
    """``--lake`` may come before the command or after it; the later one wins."""
    lake = Lake(storage_settings_for(override or _state.lake_uri))
    lake.check()
    return lake


DatesArg = Annotated[
    list[dt.datetime] | None,
    typer.Argument(
        formats=["%Y-%m-%d"], help="Trading dates (YYYY-MM-DD); or a range with --start", show_default=False
    ),
]


def _dates(
    start: dt.datetime | None,
    end: dt.datetime | None,
    days: int | None,
    given: list[dt.datetime] | None = None,
) -> list[dt.date] | None:
    """The dates a command was asked for (``None``: every date it can work on). A request that
    names no trading day is refused, never widened to every date."""
    if given:
        if start is not None or end is not None or days is not None:
            raise typer.BadParameter("give dates or --start (--end/--days), not both")
        out = sorted({g.date() for g in given})
        try:
            bad = [d for d in out if not sessions.is_trading_day(d)]
        except sessions.CalendarRangeError as exc:
            raise typer.BadParameter(str(exc)) from None
        if bad:
            raise typer.BadParameter(
                "; ".join(f"{d} is {sessions.why_not_trading(d)}, not a trading day" for d in bad)
            )
        return out
    if start is None:
        if end is not None or days is not None:
            raise typer.BadParameter("--end/--days need --start")
        return None
    if end is not None and days is not None:
        raise typer.BadParameter("give --end or --days, not both")
    try:
        if days is not None:
            return sessions.trading_days(start.date(), days)
        last = end.date() if end is not None else start.date()
        if last < start.date():
            raise typer.BadParameter("--end is before --start")
        out = sessions.trading_days_between(start.date(), last)
    except sessions.CalendarRangeError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not out:
        span = [start.date() + dt.timedelta(days=i) for i in range((last - start.date()).days + 1)]
        why = ", ".join(f"{d} is {sessions.why_not_trading(d)}" for d in span[:7])
        raise typer.BadParameter(f"no trading day from {start.date()} to {last}: {why}")
    return out


def _each(jobs: Sequence[T], desc: str, unit: str, job: Callable[[T], int]) -> tuple[int, list[str]]:
    """Run jobs with a progress bar; one failing never stops the rest. Returns (sum, failures)."""
    total, failures = 0, []
    for item in tqdm(jobs, desc=desc, unit=unit, disable=not jobs):
        try:
            total += job(item)
        except SpymasterError as exc:
            failures.append(str(exc))
    return total, failures


def _exit_on(failures: list[str]) -> None:
    for f in failures:
        typer.secho(f"failed: {f}", fg="red", err=True)
    if failures:
        raise typer.Exit(1)


def _fail(exc: SpymasterError) -> None:
    typer.secho(f"error: {exc}", fg="red", err=True)
    raise typer.Exit(1)


@app.command()
def generate(
    start: Annotated[dt.datetime, typer.Option("--start", formats=["%Y-%m-%d"], help="First date")],
    days: Annotated[int, typer.Option("--days", min=1, help="Trading days to generate")] = 1,
    scale: Annotated[float, typer.Option("--scale", min=0.001, max=4.0, help="1.0 = a realistic day")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed (0 or more)")] = 0,
    force: Annotated[bool, typer.Option(help="Rewrite dates whose raw files already exist")] = False,
    options: Annotated[
        bool, typer.Option(help="Also write the ES options files (--no-options: futures only)")
    ] = True,
    lake: LakeOpt = None,
) -> None:
    """Write synthetic ES futures + 0DTE options days as real DBN files into raw/."""
    from spymaster.synth import generate as gen
    from spymaster.synth.generate import FIRST_DATE, LAST_DATE, is_generated

    first = start.date()
    dates = sessions.trading_days(first, days) if FIRST_DATE <= first <= LAST_DATE else []
    if not dates or dates[-1] > LAST_DATE:
        raise typer.BadParameter(
            f"the generator makes days from {FIRST_DATE} to {LAST_DATE}; {first} + {days} trading day(s) is outside",
            param_hint="--start",
        )
    if dates[0] != first:
        typer.echo(f"{first} is {sessions.why_not_trading(first)}, not a trading day: starting at {dates[0]}")
    store = _lake(lake)
    there = set() if force else {d for d in dates if is_generated(store, d, options=options)}
    gen(store, first, days, scale=scale, seed=seed, progress=True, force=force, options=options)
    made = [d for d in dates if d not in there]
    span = f": {made[0]} … {made[-1]}" if made else ""
    typer.echo(f"generated {len(made)} day(s){span}")
    if there:
        typer.echo(
            f"{len(there)} day(s) already in the lake, left as they are (--force rewrites them): "
            + ", ".join(d.isoformat() for d in sorted(there))
        )
    skipped_days = sessions.trading_days_between(first, dates[-1])
    holidays = [
        d
        for d in (first + dt.timedelta(days=i) for i in range((dates[-1] - first).days + 1))
        if d.weekday() < 5 and d not in skipped_days
    ]
    if holidays:
        typer.echo("exchange holidays skipped: " + ", ".join(d.isoformat() for d in holidays))
    early = [d for d in dates if (td := sessions.trading_day(d)) is not None and td.early_close]
    for d in early:
        typer.echo(f"{d} is an early close: its session ends {sessions.globex_close(d):%H:%M} ET")


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="DBN files")],
    force: Annotated[bool, typer.Option(help="Replace files already in raw/")] = False,
    lake: LakeOpt = None,
) -> None:
    """Place Databento DBN files into raw/ by their own metadata; refuse what cannot be placed,
    skip (with a notice) good files of schemas Spymaster does not use."""
    from spymaster.raw.ingest import ingest as run

    placed, refused, unused = run(_lake(lake), files, force=force)
    for p in placed:
        typer.echo(f"placed {p.source} -> {p.key}")
    for u in unused:
        typer.secho(f"skipped {u.file}: {u.message}", fg="yellow")
    for r in refused:
        typer.secho(f"refused {r}", fg="red", err=True)
    if refused:
        raise typer.Exit(1)


@app.command()
def download(
    start: Annotated[dt.datetime, typer.Option("--start", formats=["%Y-%m-%d"])],
    end: Annotated[dt.datetime, typer.Option("--end", formats=["%Y-%m-%d"])],
    workers: Annotated[int, typer.Option(min=1, max=32)] = 4,
    force: Annotated[bool, typer.Option(help="Refetch files already in raw/")] = False,
    options: Annotated[
        bool, typer.Option(help="Also fetch the ES options files (a separate Databento subscription)")
    ] = True,
    lake: LakeOpt = None,
) -> None:
    """Fetch the needed schemas per day from Databento (DATABENTO_API_KEY), in parallel, resumably."""
    from spymaster.raw.download import download as run
    from spymaster.settings import DatabentoSettings

    try:
        report = run(
            _lake(lake),
            start.date(),
            end.date(),
            settings=DatabentoSettings(),
            workers=workers,
            force=force,
            options=options,
        )
    except SpymasterError as exc:
        _fail(exc)
        return
    typer.echo(f"fetched {len(report.fetched)}, skipped {len(report.skipped)}, failed {len(report.failed)}")
    if report.unavailable:
        days = sorted({d.isoformat() for d, _k, _w in report.unavailable})
        typer.echo(
            f"options not available to this account for {len(days)} date(s) ({report.unavailable[0][2]}); "
            "they run without options, dealer features null"
        )
    for _d, _kind, why in report.failed:
        typer.secho(f"failed: {why}", fg="red", err=True)
    if report.failed:
        raise typer.Exit(1)


@app.command("bronze")
def bronze_cmd(
    dates_arg: DatesArg = None,
    start: StartOpt = None,
    end: EndOpt = None,
    days: DaysOpt = None,
    force: Annotated[bool, typer.Option(help="Rebuild partitions already committed")] = False,
    allow_shrink: ShrinkOpt = False,
    lake: LakeOpt = None,
) -> None:
    """Decode raw DBN into committed bronze Parquet, per (date, schema); all landed dates by default."""
    from spymaster.lake.status import landed_raw
    from spymaster.layers import bronze

    store = _lake(lake)
    landed = landed_raw(store)
    asked = _dates(start, end, days, dates_arg)
    dates = asked if asked is not None else sorted(landed)
    wanted = [(d, k) for d in dates for k in paths.RAW_KINDS]
    missing = [(d, k) for d, k in wanted if k in paths.REQUIRED_RAW and k not in landed.get(d, set())]
    no_options = [d for d in dates if not landed.get(d, set()) & set(paths.OPTIONS_RAW)]
    jobs = [
        (d, k)
        for d, k in wanted
        if k in landed.get(d, set()) and (force or not bronze.is_current(store, k, d))
    ]
    if not dates:
        typer.secho("bronze: no raw files have landed; nothing to do", fg="yellow", err=True)
        raise typer.Exit(1)
    rows, failures = _each(
        jobs, "bronze", "file", lambda j: bronze.build(store, j[1], j[0], allow_shrink=allow_shrink).rows
    )
    current = len(wanted) - len(jobs) - len([1 for d, k in wanted if k not in landed.get(d, set())])
    typer.echo(
        f"bronze: {len(jobs) - len(failures)} of {len(jobs)} file(s) committed, {rows:,} rows"
        + (f"; {current} already current" if current else "")
    )
    if missing:
        typer.echo(f"bronze: {len(missing)} futures raw file(s) of these dates have not landed yet")
    if no_options and dates:
        typer.echo(f"bronze: {len(no_options)} date(s) without options files (dealer features will be null)")
    _exit_on(failures)


@app.command("silver")
def silver_cmd(
    dates_arg: DatesArg = None,
    start: StartOpt = None,
    end: EndOpt = None,
    days: DaysOpt = None,
    force: Annotated[bool, typer.Option(help="Rebuild dates already committed")] = False,
    allow_shrink: ShrinkOpt = False,
    lake: LakeOpt = None,
) -> None:
    """Bars, the six levels and the level-relative state table per date (needs committed bronze)."""
    from spymaster.lake import committed_dates
    from spymaster.layers import silver

    store = _lake(lake)
    ready = set(committed_dates(store, Layer.BRONZE, paths.FUT_TRADES.bronze_table)) & set(
        committed_dates(store, Layer.BRONZE, paths.FUT_MBP10.bronze_table)
    )
    asked = _dates(start, end, days, dates_arg)
    dates = asked if asked is not None else sorted(ready)
    jobs = [d for d in dates if force or not is_committed(store, Layer.SILVER, paths.STATE_TABLE, d)]
    rows, failures = _each(
        jobs, "silver", "day", lambda d: silver.build(store, d, allow_shrink=allow_shrink).state.num_rows
    )
    typer.echo(f"silver: {len(jobs) - len(failures)} of {len(jobs)} date(s) committed, {rows:,} state rows")
    _exit_on(failures)


@app.command("gold")
def gold_cmd(
    dates_arg: DatesArg = None,
    start: StartOpt = None,
    end: EndOpt = None,
    days: DaysOpt = None,
    force: Annotated[bool, typer.Option(help="Rebuild dates already committed")] = False,
    allow_shrink: ShrinkOpt = False,
    lake: LakeOpt = None,
) -> None:
    """Approach episodes with raw vectors and first-crossing outcomes per date (needs silver)."""
    from spymaster.lake import committed_dates
    from spymaster.layers import gold

    store = _lake(lake)
    asked = _dates(start, end, days, dates_arg)
    dates = asked if asked is not None else committed_dates(store, Layer.SILVER, paths.STATE_TABLE)
    jobs = [d for d in dates if force or not is_committed(store, Layer.GOLD, paths.EPISODES_TABLE, d)]
    n, failures = _each(
        jobs, "gold", "day", lambda d: gold.build(store, d, allow_shrink=allow_shrink).num_rows
    )
    typer.echo(f"gold: {len(jobs) - len(failures)} of {len(jobs)} date(s) committed, {n:,} episodes")
    _exit_on(failures)


@app.command("index")
def index_cmd(
    force: Annotated[bool, typer.Option(help="Re-index dates already indexed")] = False,
    lake: LakeOpt = None,
) -> None:
    """Upsert committed gold into the LanceDB vector table (the table's only writer)."""
    from spymaster.layers import index
    from spymaster.layers.vacuum import vacuum

    store = _lake(lake)
    res = index.index(store, force=force)
    vacuum(store)  # housekeeping: orphans older than the grace period, old table versions
    done = [r for r in res if not r.skipped]
    typer.echo(
        f"index: {len(done)} date(s) upserted, {len(res) - len(done)} unchanged, {sum(r.rows for r in res):,} episodes"
    )
    if done or force:
        _fit(store)


def _fit(store: Lake) -> None:
    from spymaster.layers import models

    res = models.fit(store)
    last = max(res.models) if res.models else None
    typer.echo(
        f"fit: {len(res.models)} learned-similarity model(s) over {res.rows:,} approach episodes in "
        f"{res.seconds:.1f} s" + (f"; latest serves from {last}" if last else "")
    )


def _fit_projections(store: Lake) -> Any:
    from spymaster.layers import streams

    return streams.fit_projections(store)


def _echo_streams(res: Any) -> None:
    typer.echo(f"streams: {len(res.models)} projection model(s) fitted in {res.seconds:.1f} s")


def _fit_streams(store: Lake) -> None:
    _echo_streams(_fit_projections(store))


@app.command("fit")
def fit_cmd(lake: LakeOpt = None) -> None:
    """Refit the learned similarity and the streams' projections: one model per date, on earlier days."""
    store = _lake(lake)
    _fit(store)
    _fit_streams(store)


@app.command("run")
def run_cmd(
    dates_arg: DatesArg = None,
    start: StartOpt = None,
    end: EndOpt = None,
    days: DaysOpt = None,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Dates processed in parallel")] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Threads per worker (default SPYMASTER_WORKER_THREADS, else each worker's share of the cores)",
        ),
    ] = None,
    timings: Annotated[
        Path | None, typer.Option(help="Write each phase's wall seconds and each date's stages here (JSON)")
    ] = None,
    force: Annotated[bool, typer.Option(help="Recompute layers already committed")] = False,
    allow_shrink: ShrinkOpt = False,
    lake: LakeOpt = None,
) -> None:
    """bronze → silver → gold per date (in parallel), then index; resumable, failures per date."""
    from spymaster.lake.status import landed_raw
    from spymaster.layers import index, pipeline
    from spymaster.settings import WorkerSettings

    if threads is None:
        threads = WorkerSettings().worker_threads
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[phase] = now - clock
        clock = now

    store = _lake(lake)
    asked = _dates(start, end, days, dates_arg)
    dates = asked if asked is not None else sorted(landed_raw(store))
    bar = tqdm(total=len(dates), desc="run", unit="day", disable=not dates)
    failed: list[pipeline.DateResult] = []

    def done(r: pipeline.DateResult) -> None:
        bar.update(1)
        if not r.ok:
            failed.append(r)

    results = pipeline.run(
        store.settings,
        dates,
        workers=workers,
        force=force,
        on_result=done,
        allow_shrink=allow_shrink,
        threads=threads,
    )
    bar.close()
    lap("date_jobs")
    ok = [r.date for r in results if r.ok]
    index_error = None
    # The streams' projections read only gold's streams, never the vector table: fitted on a
    # thread while the index (LanceDB and Arrow, which release the GIL) runs, joined before the
    # learned fit, whose BLAS must not run under the streams fit's one-thread limit.
    streams_fit = _ThreadPool(1).submit(_fit_projections, store) if ok else None
    try:
        idx = index.index(store, ok, force=force) if ok else []
    except SpymasterError as exc:  # the date jobs' report still follows
        idx, index_error = [], str(exc)
    try:
        table = index.open_table(store)
        total = table.count_rows() if table is not None else 0
    except (OSError, ValueError):  # no readable table (a read-only or empty lake): the index failed above
        total = 0
    lap("index")
    upserted = [r for r in idx if not r.skipped]
    typer.echo(
        f"run: {len(ok)} of {len(dates)} date(s) at gold; indexed {len(upserted)} date(s) "
        f"({sum(r.rows for r in upserted):,} episodes); the vector table holds {total:,} episodes"
    )
    if streams_fit is not None:
        _echo_streams(streams_fit.result())
    lap("fit_streams")  # what is left of the streams fit once the index is done
    if any(not r.skipped for r in idx):
        _fit(store)
    lap("fit")
    if timings is not None:
        per_date = {r.date.isoformat(): {k: list(v) for k, v in r.timings.items()} for r in results}
        doc = {"workers": workers, "threads": threads, "phases": phases, "dates": per_date}
        timings.write_text(json.dumps(doc, indent=1))
    for r in sorted(failed, key=lambda r: r.date):
        typer.secho(f"failed {r.date} at {r.failed_stage}: {r.error}", fg="red", err=True)
    if index_error:
        typer.secho(f"failed index: {index_error}", fg="red", err=True)
    if failed or index_error:
        raise typer.Exit(1)


QUERY_HORIZONS = (2, 4, 8, 20)


def _check_query(
    store: Lake, date: dt.date, at: dt.time, level: str, horizon: int, as_of: dt.date | None
) -> None:
    """Refuse a query the answer could only refuse, before the vector table is loaded (seconds)."""
    from spymaster.levels import LEVEL_KINDS

    if level not in LEVEL_KINDS:
        raise typer.BadParameter(
            f"unknown level {level!r}; one of {', '.join(LEVEL_KINDS)}", param_hint="--level"
        )
    if not sessions.RTH_OPEN <= at <= sessions.QUERY_END:
        raise typer.BadParameter(f"{at.isoformat()} is outside 09:30–12:30 ET", param_hint="--time")
    if horizon not in QUERY_HORIZONS:
        raise typer.BadParameter(f"{horizon} is not one of 2, 4, 8, 20", param_hint="--horizon")
    if as_of is not None and as_of > date:
        raise typer.BadParameter(
            "--as-of may not be after --date (later outcomes would leak in)", param_hint="--as-of"
        )
    if not sessions.is_trading_day(date):
        raise typer.BadParameter(f"{date} ({date:%A}) is not a trading day", param_hint="--date")
    if not is_committed(store, Layer.SILVER, "state", date):
        raise typer.BadParameter(
            f"{date} is not in the lake (no silver for it; see `spymaster status`)", param_hint="--date"
        )


@app.command()
def query(
    date: Annotated[dt.datetime, typer.Option("--date", formats=["%Y-%m-%d"], help="Trading date")],
    time: Annotated[str, typer.Option("--time", help="ET wall-clock time, HH:MM[:SS], 09:30–12:30")],
    level: Annotated[str, typer.Option("--level", help="PM_HIGH, PM_LOW, OR_HIGH, OR_LOW, SMA_90 or EMA_20")],
    k: Annotated[int, typer.Option(min=1, max=500, help="Neighbours to retrieve")] = 50,
    horizon: Annotated[int, typer.Option(help="Minutes: 2, 4, 8 or 20")] = 8,
    as_of: Annotated[
        dt.datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Only neighbours from dates strictly before this one (default: --date; not after it)",
        ),
    ] = None,
    show: Annotated[int, typer.Option(help="Neighbours to print")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON answer")] = False,
    lake: LakeOpt = None,
) -> None:
    """The answer POST /v1/similar gives, in the terminal: neighbours and the outcome distribution."""
    import json

    try:
        at = dt.time.fromisoformat(time)
    except ValueError:
        raise typer.BadParameter(f"not a time: {time!r} (HH:MM or HH:MM:SS)", param_hint="--time") from None
    store = _lake(lake)
    _check_query(store, date.date(), at, level, horizon, as_of.date() if as_of else None)

    from spymaster.layers import index as vector_index
    from spymaster.layers.index import INDEX_COLUMNS
    from spymaster.serving import Service
    from spymaster.serving.snapshot import index_from_arrow

    rows = vector_index.read_from_markers(store, INDEX_COLUMNS)
    if rows is None:  # the table is mid-change: ask it (LanceDB) directly
        svc = Service(store)
    else:
        index, stats_by_day = index_from_arrow(rows, None)
        svc = Service(store, index=index, stats_by_day=stats_by_day)
    ans = svc.similar(
        date=date.date(),
        time=at,
        level_kind=level,
        k=k,
        horizon=horizon,
        as_of=as_of.date() if as_of else None,
    )
    if as_json:
        typer.echo(json.dumps(ans, indent=1, default=str))
        return
    q, d = ans["query"], ans["distribution"]
    typer.echo(
        f"{q['date']} {q['time']} ET  {q['level_kind']} from {'below' if q['direction'] == 'UP' else 'above'}"
        f"  (partition {q['partition']}, neighbours before {q['as_of']})"
    )
    typer.echo(f"horizon {d['horizon']} min, n = {d['n']}, n_eff = {d['n_eff']:.1f}")
    if d["n"] == 0:
        typer.secho(
            "  prior only: no earlier setup of this level, direction and time of day; "
            "the numbers below are the prior alone",
            fg="yellow",
        )
    elif d["n_eff"] < 3:
        typer.secho("  thin: fewer than 3 effective setups; read the interval, not the point", fg="yellow")
    for o in OUTCOMES:
        lo, hi = d["interval"][o]
        typer.echo(
            f"  P({o:<6}) = {d['p'][o]:.2f}   80 % [{lo:.2f}, {hi:.2f}]   base rate {d['base_rate'][o]:.2f}"
        )
    mfe, mae = d["expected_mfe"], d["expected_mae"]
    if mfe is not None and mae is not None:
        typer.echo(f"  expected excursion: favourable {mfe:.2f} ATR, adverse {mae:.2f} ATR")
    for nb in ans["neighbours"][:show]:
        typer.echo(f"  {nb['date']} {nb['time']}  sim {nb['similarity']:.3f}  {nb['outcome']}")


def _summary(markdown: str) -> str:
    """The report's head (title, what was tested) and its goals table; the rest is in the report."""
    head, _, rest = markdown.partition("\n## ")
    sections = ["## " + sec for sec in rest.split("\n## ")] if rest else []
    goals = [sec for sec in sections if sec.startswith("## Goals")]
    return "\n\n".join([head.rstrip(), *(g.rstrip() for g in goals)])


@app.command()
def evaluate(
    start: StartOpt = None,
    end: EndOpt = None,
    embargo: Annotated[
        int, typer.Option("--embargo-days", min=1, help="Trading days between train and test")
    ] = 1,
    ablation: Annotated[bool, typer.Option(help="Also ablate feature groups (slower)")] = True,
    learned: Annotated[bool, typer.Option(help="Evaluate the learned similarity (served as `setup`)")] = True,
    all_episodes: Annotated[
        bool, typer.Option(help="Also evaluate the learned similarity over all episodes (slower)")
    ] = True,
    lake: LakeOpt = None,
) -> None:
    """Walk-forward evaluation of the served kNN against baselines; writes the report to the lake."""
    from spymaster import evaluation

    store = _lake(lake)
    rep = evaluation.evaluate(
        store,
        start.date() if start else None,
        end.date() if end else None,
        embargo_days=embargo,
        run_ablation=ablation,
        learned=learned,
        learned_all_episodes=all_episodes,
        progress=lambda msg: typer.echo(msg, err=True),
    )
    typer.echo(_summary(rep.markdown))
    tested = [dt.date.fromisoformat(str(d)) for d in rep.metrics.get("test_dates", [])]
    from spymaster.lake.status import collect

    lacking = [s.date.isoformat() for s in collect(store) if s.date in set(tested) and s.options_note]
    if lacking:
        typer.echo(
            f"{len(lacking)} of {len(tested)} test day(s) had no (or partial) options files: their dealer "
            f"features were null ({', '.join(lacking)})"
        )
    typer.echo(f"report: {store.full_uri(rep.paths['report'])}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    lake: LakeOpt = None,
) -> None:
    """Serve the API and the trader's page (uvicorn)."""
    import uvicorn

    from spymaster.api import create_app

    store = _lake(lake)
    typer.echo(f"Spymaster on http://{host}:{port}/  (API docs http://{host}:{port}/docs, lake {store.uri})")
    uvicorn.run(create_app(lake=store), host=host, port=port, log_level="warning")


# -- live ----------------------------------------------------------------------------------------------
# `spymaster live` runs one record source (a lake date's replay, or databento.Live) into the incremental
# engine; its updates go to JSON lines, or, with --serve, to the page through the API's SSE route.


@app.command()
def live(
    replay: Annotated[
        dt.datetime | None,
        typer.Option("--replay", formats=["%Y-%m-%d"], help="Replay this lake date's raw files"),
    ] = None,
    databento: Annotated[
        bool, typer.Option("--databento", help="Stream from databento.Live (GLBX.MDP3)")
    ] = False,
    date: Annotated[
        dt.datetime | None,
        typer.Option(
            "--date",
            formats=["%Y-%m-%d"],
            help="With --databento: the trading date (default today, New York)",
        ),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option("--speed", min=0.001, help="Replay speed (1 = real time; default as fast as possible)"),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from", help="Start pacing (replay) or the intraday replay (databento) at this ET time HH:MM"
        ),
    ] = None,
    jsonl: Annotated[
        Path | None, typer.Option("--jsonl", help="Write updates as JSON lines here (default stdout)")
    ] = None,
    answers: Annotated[bool, typer.Option("--answers/--no-answers", help="Answer at each anchor")] = True,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the API, the page and /v1/live/stream with the engine")
    ] = False,
    host: Annotated[str, typer.Option(help="Interface to bind (with --serve)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    lake: LakeOpt = None,
) -> None:
    """Run the live engine over a record source: updates (bars, levels, state, answers) as JSON lines or pushed."""
    from spymaster.live import replay as replay_mod
    from spymaster.live import run as live_run
    from spymaster.live.engine import Engine
    from spymaster.live.streams import LiveStreams
    from spymaster.serving import Service

    if (replay is None) == (not databento):
        _fail(SettingsError("choose one source: --replay DATE or --databento"))
    store = _lake(lake)
    if replay is not None:
        day = replay.date()
    else:
        day = date.date() if date is not None else dt.datetime.now(tz=sessions.ET).date()
    try:  # the source first: a bad time or a missing key fails before anything loads
        if replay is not None:
            start = replay_mod.start_of(day, from_)
            source: Any = replay_mod.paced(replay_mod.records(store, day), speed=speed, start_ns=start)
        else:
            source = _live_databento_source(day, from_)
    except SpymasterError as exc:
        _fail(exc)
    service = Service(store, table_check_seconds=float("inf")) if answers else None
    live_streams = LiveStreams(store, day)
    engine = Engine(day, service=service, streams=live_streams)
    refresher = live_run.Refresher(service, on_reload=engine.warm, streams=live_streams).start()
    try:
        if serve or (databento and jsonl is None):
            _live_run(store, day, source, engine, serve=serve, host=host, port=port)
            return
        ups = live_run.updates(engine, source)
        if jsonl is None:
            n = live_run.write_jsonl(ups, sys.stdout)
        else:
            with open(jsonl, "w") as f:
                n = live_run.write_jsonl(ups, f)
        typer.echo(f"{n:,} updates for {day}", err=True)
    except SpymasterError as exc:
        _fail(exc)
    finally:
        refresher.stop()


def _live_databento_source(day: dt.date, start: str | None) -> Any:
    """``databento.Live`` with the key and gateway read from the environment, once, here."""
    from spymaster.live.databento_source import DatabentoSource
    from spymaster.settings import DatabentoLiveSettings

    settings = DatabentoLiveSettings()
    start_ns = None
    if start is not None:
        try:
            start_ns = sessions.et_ns(day, dt.time.fromisoformat(start))
        except ValueError:
            raise SettingsError(f"--from must be an ET time HH:MM, not {start!r}") from None
    return DatabentoSource(settings, day, start_ns=start_ns)


def _live_run(
    store: Lake, day: dt.date, source: Any, engine: Any, *, serve: bool, host: str, port: int
) -> None:
    """Drive ``source`` into ``engine`` in the background; serve the API with the hub, or wait."""
    from spymaster.live.hub import Hub
    from spymaster.live.runner import Runner
    from spymaster.settings import PushSettings

    push = PushSettings()
    hub = Hub(day.isoformat(), queue_size=push.queue_size)
    runner = Runner(source, engine, hub, status_s=push.status_s).start()
    typer.echo(f"live {day}: {type(source).__name__} → engine, lake {store.uri}")
    try:
        if serve:
            import uvicorn

            from spymaster.api import create_app

            typer.echo(f"Spymaster live on http://{host}:{port}/  (stream /v1/live/stream?date={day})")
            uvicorn.run(
                create_app(lake=store, live=hub, push=push), host=host, port=port, log_level="warning"
            )
        else:
            while not runner.join(5.0):
                st = runner.status()
                typer.echo(
                    f"records {st['records']:,}  lag p99 {st['lag_ms_p99'] or 0:.1f} ms  push {st['push']}"
                )
    finally:
        runner.stop()
        runner.join(10)
    if runner.error is not None:
        raise LiveSourceError(f"the live run failed: {runner.error}", date=day)


@app.command()
def status(lake: LakeOpt = None) -> None:
    """Which dates are at which layer, and what is quarantined."""
    from spymaster.lake import quarantine
    from spymaster.lake.status import collect

    store = _lake(lake)
    rows = collect(store)
    typer.echo(f"lake: {store.uri}")
    typer.echo(f"{'date':<12}{'raw':>6}{'bronze':>8}{'silver':>8}{'gold':>7}{'indexed':>9}  layer")
    for s in rows:
        q = f"  quarantined: {len(s.quarantined)}" if s.quarantined else ""
        q += f"  dropped: {s.n_dropped:,} implausible record(s)" if s.n_dropped else ""
        opt = f"  {s.options_note}" if s.options_note else ""
        n_raw, n_br, n_all = len(s.raw), len(s.bronze), len(paths.RAW_KINDS)
        sv, gd = ("yes" if s.silver else "-"), (f"{s.episodes}" if s.gold else "-")
        ix = "yes" if s.indexed else ("stale" if s.index_stale else "-")
        typer.echo(
            f"{s.date.isoformat():<12}{n_raw:>3}/{n_all}{n_br:>5}/{n_all}{sv:>8}{gd:>7}{ix:>9}  {s.layer}{opt}{q}"
        )
    lacking = [s.date.isoformat() for s in rows if s.raw_ready and s.options_note]
    if lacking:
        typer.echo(
            f"{len(lacking)} date(s) lack options (dealer features null or partial): {', '.join(lacking)}"
        )
    from spymaster.lake.status import missing_files

    if missing := missing_files(store):
        typer.secho(
            f"missing: {len(missing)} committed file(s), first {missing[0].file}; run `spymaster validate`",
            fg="red",
        )
    qs = quarantine.list_all(store)
    current = [q for q in qs if not q.resolved]
    if current:
        typer.echo("quarantine:")
        for item in current:
            typer.echo(
                f"  {item.date} {item.product} {item.schema}: {item.error}: {item.reason}  ({item.file})"
            )
    dropped = [s for s in rows if s.n_dropped]
    if dropped:
        typer.echo("data quality (records dropped by bronze):")
        for s in dropped:
            for table, why in sorted(s.dropped.items()):
                reasons = ", ".join(f"{n:,} {r.replace('_', ' ')}" for r, n in sorted(why.items()))
                typer.echo(f"  {s.date} {table}: {reasons}")
    if len(qs) > len(current):
        typer.echo(f"quarantine: {len(qs) - len(current)} older file(s) kept, their dates since rebuilt")


@app.command("vacuum")
def vacuum_cmd(
    grace_hours: Annotated[
        float, typer.Option("--grace-hours", min=0, help="Keep files younger than this (a run may own them)")
    ] = 24.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go, remove nothing")] = False,
    lake: LakeOpt = None,
) -> None:
    """Remove files no manifest references (older than the grace period) and old vector-table versions."""
    from spymaster.layers.vacuum import vacuum

    res = vacuum(_lake(lake), grace=dt.timedelta(hours=grace_hours), dry_run=dry_run)
    for f in res.removed:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {f}")
    typer.echo(
        f"vacuum: {len(res.removed)} unreferenced file(s) {'to remove' if dry_run else 'removed'}, "
        f"{len(res.kept_young)} younger than {grace_hours:g} h kept, "
        f"{res.table_versions_removed} old vector-table version(s) removed"
    )


@app.command()
def validate(lake: LakeOpt = None) -> None:
    """Check that every file a committed manifest lists exists; exit 1 naming those that do not."""
    from spymaster.lake.status import missing_files

    store = _lake(lake)
    missing = missing_files(store)
    for m in missing:
        typer.secho(f"missing: {m.file}  (listed by {m.manifest})", fg="red", err=True)
    if missing:
        typer.secho(
            f"validate: {len(missing)} committed file(s) missing; rebuild their dates with --force",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo("validate: every committed file is present")


@app.command()
def sql(
    statement: Annotated[
        str, typer.Argument(help="A DuckDB SQL statement, e.g. SELECT … FROM bronze.fut_trades")
    ],
    lake: LakeOpt = None,
) -> None:
    """Query the committed lake with DuckDB (views bronze.*, silver.*, gold.*); read-only."""
    import duckdb

    from spymaster.errors import ReadOnlyQueryError
    from spymaster.lake.sql import display, query

    try:
        table = query(_lake(lake), statement)
    except (duckdb.Error, ReadOnlyQueryError) as exc:
        typer.secho(f"error: {str(exc).splitlines()[0]}", fg="red", err=True)
        raise typer.Exit(2) from None
    if not table.num_columns:
        return
    typer.echo("\t".join(table.column_names))
    for row in display(table):
        typer.echo("\t".join(row))


def main() -> None:
    try:
        app()
    except SpymasterError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

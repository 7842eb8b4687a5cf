"""Generate synthetic trading days: the seven raw DBN files of each date plus its planted truth.

Order matters only through the random streams, which are keyed by (seed, date, component): the
open interest is drawn first (it is prior-day data), the path is simulated with G computed from
it, and the futures and options records are rendered from the path.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow as pa
from tqdm import tqdm

from spymaster import sessions
from spymaster.lake import Lake, paths
from spymaster.lake.paths import Product, RawKind
from spymaster.synth import futures, market, options

TRUTH_SCHEMA = pa.schema(
    [
        pa.field("date", pa.date32()),
        pa.field("start_ts", pa.int64()),
        pa.field("arrival_ts", pa.int64()),
        pa.field("end_ts", pa.int64()),
        pa.field("level_kind", pa.string()),
        pa.field("level_price", pa.float64()),
        pa.field("level_price_start", pa.float64()),
        pa.field("direction", pa.string()),
        pa.field("F", pa.float64()),
        pa.field("B", pa.float64()),
        pa.field("G", pa.float64()),
        pa.field("p_break", pa.float64()),
        pa.field("p_reject", pa.float64()),
        pa.field("p_chop", pa.float64()),
        pa.field("outcome", pa.string()),
        pa.field("atr", pa.float64()),
        pa.field("barrier_price", pa.float64()),
        pa.field("barrier_mult", pa.float64()),
        pa.field("planted_kind", pa.string()),
    ]
)
"""One row per planted interaction and per companion level it decides (``planted_kind`` names the
interaction's own level); timestamps are ns since the epoch, UTC (docs/SYNTHETIC.md)."""


@dataclass
class DayFiles:
    """A generated date: zstd DBN bytes per raw kind, and the planted truth."""

    date: dt.date
    files: dict[RawKind, bytes]
    truth: pa.Table
    counts: dict[str, int] = field(default_factory=dict)


def generate_day(date: dt.date, *, scale: float = 1.0, seed: int = 0) -> DayFiles:
    """One trading date's seven raw files and truth; byte-identical for the same arguments."""
    if not FIRST_DATE <= date <= LAST_DATE:
        raise ValueError(f"{date} is outside the generator's range {FIRST_DATE} … {LAST_DATE}")
    if not sessions.is_trading_day(date):
        raise ValueError(f"{date} is not a trading day")
    if scale <= 0:
        raise ValueError("scale must be positive")
    params = market.day_params(seed, date)
    chain = options.build_chain(date, seed, params.open_price, params.atm_iv)
    day = market.simulate(date, seed=seed, scale=scale, gamma_z=chain.gamma_z)
    fut = futures.render(day)
    opt = options.render(chain, day)
    files = {
        RawKind(Product.FUT, "definition"): fut.definition,
        RawKind(Product.FUT, "trades"): fut.trades,
        RawKind(Product.FUT, "mbp-10"): fut.mbp10,
        RawKind(Product.OPT, "definition"): opt.definition,
        RawKind(Product.OPT, "trades"): opt.trades,
        RawKind(Product.OPT, "mbp-1"): opt.mbp1,
        RawKind(Product.OPT, "statistics"): opt.statistics,
    }
    assert set(files) == set(paths.RAW_KINDS)
    rows = [{**row, "date": date} for row in day.truth]
    truth = pa.Table.from_pylist(rows, schema=TRUTH_SCHEMA)
    counts = {
        "fut_trades": fut.counts["trades"],
        "fut_mbp10": fut.counts["mbp-10"],
        **{f"opt_{k}": v for k, v in opt.counts.items()},
        "interactions": truth.num_rows,
    }
    return DayFiles(date=date, files=files, truth=truth, counts=counts)


FIRST_DATE = dt.date(2000, 1, 3)
LAST_DATE = dt.date(2099, 12, 31)
"""The dates the generator's market walk covers."""


def is_generated(lake: Lake, date: dt.date, *, options: bool = True) -> bool:
    """The date's raw files (futures, and options unless ``options=False``) and truth are there."""
    kinds = paths.RAW_KINDS if options else paths.REQUIRED_RAW
    return all(lake.exists(p) for p in [*(paths.raw_file(k, date) for k in kinds), paths.truth_file(date)])


def generate(
    lake: Lake,
    start: dt.date,
    days: int,
    *,
    scale: float,
    seed: int,
    progress: bool = True,
    force: bool = False,
    options: bool = True,
) -> list[dt.date]:
    """Generate ``days`` trading days from ``start`` into the lake's raw/ and synthetic/truth/.

    A date whose seven raw files and truth are already there is skipped unless ``force`` (the
    bytes would be identical for the same seed and scale; a different seed or scale needs ``force``).
    ``options=False`` writes the three futures files only, as a lake without the options
    subscription holds.
    """
    dates = sessions.trading_days(start, days)
    for date in tqdm(dates, desc="generate", unit="day", disable=not progress):
        if not force and is_generated(lake, date, options=options):
            continue
        kinds = paths.RAW_KINDS if options else paths.REQUIRED_RAW
        day = generate_day(date, scale=scale, seed=seed)
        for kind in kinds:
            lake.write_bytes(paths.raw_file(kind, date), day.files[kind])
        lake.write_parquet(paths.truth_file(date), day.truth)
    return dates

"""Every lake key and table name, in one place.

The lake is Hive-partitioned by date. Layers (bronze/silver/gold) are *tables*; a table's date
partition is visible to readers only once its manifest exists (see :mod:`spymaster.lake`).

::

    raw/dataset=GLBX.MDP3/product=ES.FUT/schema=trades/date=2026-03-02/<file>.dbn.zst
    bronze/fut_trades/date=2026-03-02/part-<run>-00000.parquet
    silver/<table>/date=.../...      gold/<table>/date=.../...
    gold/_stats/<version>.json        (normalisation statistics, content-addressed)
    models/streams/{scaling,projection}/<version>.json   (the streams' fitted artefacts) + projection/index.json
    vectors/episodes.lance/           (the LanceDB database: one table)
    quarantine/dataset=.../product=.../schema=.../date=.../<file>  +  <file>.reason.json
    _manifests/<layer>/<table>/date=2026-03-02.json
    _manifests/index/date=2026-03-02.json        (what the vector table holds of a date)
    reports/evaluation/<run>/<file>   reports/evaluation/latest.json
    _reports/date_jobs/date=….json    _reports/backfill/<run>.json    _backfill/<run>/…
    synthetic/truth/date=…/truth.parquet         (the generator's planted truth; never read by the pipeline)
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

DATASET = "GLBX.MDP3"
"""The one dataset Spymaster places in ``raw/``: CME Globex (ES futures and ES options)."""

DECODABLE_DATASETS = frozenset({"GLBX.MDP3", "OPRA.PILLAR"})
"""Datasets the bronze decoder understands (OPRA only for format checks, never placed)."""


class Layer(StrEnum):
    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"


class Product(StrEnum):
    """Databento parent symbols for the two ES products we consume."""

    FUT = "ES.FUT"
    OPT = "ES.OPT"

    @property
    def short(self) -> str:
        return "fut" if self is Product.FUT else "opt"


@dataclass(frozen=True, order=True)
class RawKind:
    """One kind of raw file a trading date needs."""

    product: Product
    schema: str

    @property
    def bronze_table(self) -> str:
        return f"{self.product.short}_{self.schema.replace('-', '')}"


FUT_DEFINITION = RawKind(Product.FUT, "definition")
FUT_TRADES = RawKind(Product.FUT, "trades")
FUT_MBP10 = RawKind(Product.FUT, "mbp-10")
OPT_DEFINITION = RawKind(Product.OPT, "definition")
OPT_TRADES = RawKind(Product.OPT, "trades")
OPT_MBP1 = RawKind(Product.OPT, "mbp-1")
OPT_STATISTICS = RawKind(Product.OPT, "statistics")

FUTURES_RAW: tuple[RawKind, ...] = (FUT_DEFINITION, FUT_TRADES, FUT_MBP10)
OPTIONS_RAW: tuple[RawKind, ...] = (OPT_DEFINITION, OPT_TRADES, OPT_MBP1, OPT_STATISTICS)
RAW_KINDS: tuple[RawKind, ...] = FUTURES_RAW + OPTIONS_RAW
"""Every kind of raw file a date may have."""

REQUIRED_RAW: tuple[RawKind, ...] = FUTURES_RAW
"""The raw files a date needs before its per-date job may run. ES options are a separate (costly)
subscription that older dates often lack: without them a date runs with its dealer features null."""

BRONZE_TABLES: tuple[str, ...] = tuple(k.bronze_table for k in RAW_KINDS)
REQUIRED_BRONZE: tuple[str, ...] = tuple(k.bronze_table for k in REQUIRED_RAW)

# -- table names ---------------------------------------------------------------------------------

BARS_30S_TABLE = "bars_30s"
BARS_2M_TABLE = "bars_2m"
LEVELS_TABLE = "levels"
STATE_TABLE = "state"
"""Silver's level-relative state table; its manifest is written last (the date's silver commit)."""
SILVER_TABLES: tuple[str, ...] = (BARS_30S_TABLE, BARS_2M_TABLE, LEVELS_TABLE, STATE_TABLE)
EPISODES_TABLE = "episodes"
"""Gold's one table: approach episodes with raw vectors and outcomes."""
STREAMS_TABLE = "streams"
"""Gold's streams: one row per 2-minute bar and active level (:mod:`spymaster.layers.streams`)."""
VECTOR_TABLE = "episodes"
"""The LanceDB table under :data:`VECTORS_DIR`."""

_RAW_RE = re.compile(
    r"raw/dataset=(?P<dataset>[^/]+)/product=(?P<product>[^/]+)/schema=(?P<schema>[^/]+)/"
    r"date=(?P<date>\d{4}-\d{2}-\d{2})/(?P<name>[^/]+)$"
)


def raw_kind(product: str, schema: str) -> RawKind:
    """The :class:`RawKind` for a product/schema pair, or ``ValueError`` if we never need it."""
    kind = RawKind(Product(product), schema)
    if kind not in RAW_KINDS:
        raise ValueError(f"no raw file of product {product} and schema {schema} is used")
    return kind


def raw_dir(kind: RawKind, date: dt.date) -> str:
    return f"raw/dataset={DATASET}/product={kind.product.value}/schema={kind.schema}/date={date.isoformat()}"


def raw_file(kind: RawKind, date: dt.date) -> str:
    """The canonical key of a date's raw file of one kind."""
    name = f"{DATASET}-{kind.product.value}-{kind.schema}-{date.isoformat()}.dbn.zst"
    return f"{raw_dir(kind, date)}/{name}"


@dataclass(frozen=True)
class RawKey:
    """A raw key parsed back into its parts (for S3 events and status)."""

    dataset: str
    kind: RawKind
    date: dt.date
    name: str


def parse_raw_key(key: str) -> RawKey:
    """Parse a key under ``raw/`` (a lake-relative path); ``ValueError`` if it is not one."""
    m = _RAW_RE.search(key)
    if not m:
        raise ValueError(f"not a raw lake key: {key!r}")
    return RawKey(
        dataset=m["dataset"],
        kind=raw_kind(m["product"], m["schema"]),
        date=dt.date.fromisoformat(m["date"]),
        name=m["name"],
    )


def table_dir(layer: Layer, table: str, date: dt.date) -> str:
    return f"{layer.value}/{table}/date={date.isoformat()}"


def table_root(layer: Layer, table: str) -> str:
    return f"{layer.value}/{table}"


def data_file(layer: Layer, table: str, date: dt.date, run_id: str, part: int) -> str:
    """A data file of one run; unreferenced by any manifest until that run commits."""
    return f"{table_dir(layer, table, date)}/part-{run_id}-{part:05d}.parquet"


def manifest_root(layer: Layer, table: str) -> str:
    return f"{layer_manifest_root(layer)}/{table}"


def manifest(layer: Layer, table: str, date: dt.date) -> str:
    return f"{manifest_root(layer, table)}/date={date.isoformat()}.json"


def date_from_partition(name: str) -> dt.date:
    """``date=2026-03-02`` or ``date=2026-03-02.json`` → the date."""
    m = re.search(r"date=(\d{4}-\d{2}-\d{2})", name)
    if not m:
        raise ValueError(f"not a date partition: {name!r}")
    return dt.date.fromisoformat(m[1])


def quarantine_file(kind: RawKind, date: dt.date, name: str) -> str:
    return (
        f"quarantine/dataset={DATASET}/product={kind.product.value}/schema={kind.schema}/"
        f"date={date.isoformat()}/{name}"
    )


def quarantine_reason(quarantined: str) -> str:
    return f"{quarantined}.reason.json"


def quality_file(table: str, date: dt.date) -> str:
    """A date's data-quality record for one bronze table (records read, dropped by reason)."""
    return f"_quality/{table}/date={date.isoformat()}.json"


QUALITY_ROOT = "_quality"


def lock_file(name: str) -> str:
    """The lake-wide lock (or S3 lease) object of one writer role, e.g. ``index``."""
    return f"_locks/{name}.lock"


QUARANTINE_ROOT = "quarantine"
RAW_ROOT = "raw"
MANIFESTS_ROOT = "_manifests"
VECTORS_DIR = "vectors"


def layer_manifest_root(layer: Layer) -> str:
    """Where a layer's tables' manifests live (one folder per table)."""
    return f"{MANIFESTS_ROOT}/{layer.value}"


# -- the vector table and its statistics ---------------------------------------------------------

VECTOR_SNAPSHOT = f"{VECTORS_DIR}/snapshot.arrow"
"""The served columns of the vector table's current version in one Arrow IPC object, so the API
starts with one GET and without LanceDB (written by the table's writer, under its lock)."""

VECTOR_ANN = f"{VECTORS_DIR}/ann.json"
"""What the table's ANN index was trained on (rows, index type, table version): retrain on growth."""

INDEX_MARKERS = f"{MANIFESTS_ROOT}/index"
"""Per-date record of what was indexed (gold run + stats version): re-index only what changed."""


def index_marker(date: dt.date) -> str:
    return f"{INDEX_MARKERS}/date={date.isoformat()}.json"


def stats_file(version: str) -> str:
    """A normalisation statistics version (content-addressed)."""
    return f"gold/_stats/{version}.json"


MODELS_ROOT = "models/similarity"
"""The learned similarity's fitted models (``spymaster fit``; :mod:`spymaster.layers.models`)."""
MODELS_INDEX = f"{MODELS_ROOT}/index.json"
"""Which model serves which date: ``{"method", "models": {date: version}, …}``; written last."""


def model_file(version: str) -> str:
    """One fitted model (content-addressed: the same fit writes the same file)."""
    return f"{MODELS_ROOT}/{version}.json"


STREAMS_MODELS_ROOT = "models/streams"
"""The streams' walk-forward fitted artefacts: scaling statistics and projection models."""
STREAMS_PROJECTIONS_INDEX = f"{STREAMS_MODELS_ROOT}/projection/index.json"
"""Which projection model serves which date (``{"models": {date: version}, …}``); written last."""


def streams_scaling_file(version: str) -> str:
    """The streams' scaling statistics of one version (content-addressed)."""
    return f"{STREAMS_MODELS_ROOT}/scaling/{version}.json"


def streams_projection_file(version: str) -> str:
    """One fitted projection model (content-addressed)."""
    return f"{STREAMS_MODELS_ROOT}/projection/{version}.json"


# -- reports -------------------------------------------------------------------------------------
# Two roots, as deployed lakes have them: the evaluation's reports are served (``/v1/report``),
# the jobs' status records are operational.

EVALUATION_REPORTS = "reports/evaluation"


def report_dir(run_id: str) -> str:
    """Lake-relative folder of one evaluation run."""
    return f"{EVALUATION_REPORTS}/{run_id}"


def report_path(run_id: str, name: str) -> str:
    """A file of one run: ``report.md``, ``metrics.json``, ``reliability.png``, ``lift.png``, …"""
    return f"{report_dir(run_id)}/{name}"


def latest_path() -> str:
    """The entry point: a small JSON naming the newest run and its files."""
    return f"{EVALUATION_REPORTS}/latest.json"


DATE_JOB_STATUS = "_reports/date_jobs"
"""The last outcome of each date's job: ``_reports/date_jobs/date=YYYY-MM-DD.json``."""


def date_job_status(date: dt.date) -> str:
    return f"{DATE_JOB_STATUS}/date={date.isoformat()}.json"


BACKFILL_ROOT = "_backfill"
BACKFILL_REPORTS = "_reports/backfill"


def backfill_items_key(run: str) -> str:
    """The Distributed Map's item list: one date request per planned date."""
    return f"{BACKFILL_ROOT}/{run}/items.json"


def backfill_plan_key(run: str) -> str:
    """What a backfill run planned, and what it left out (and why)."""
    return f"{BACKFILL_ROOT}/{run}/plan.json"


def backfill_result_key(run: str, date: dt.date) -> str:
    """The outcome the date job of a backfill run wrote for one date."""
    return f"{BACKFILL_ROOT}/{run}/results/date={date.isoformat()}.json"


def backfill_report_key(run: str) -> str:
    """The report of a backfill run."""
    return f"{BACKFILL_REPORTS}/{run}.json"


def truth_file(date: dt.date) -> str:
    """Ground truth the synthetic generator planted for a date (never read by the pipeline)."""
    return f"synthetic/truth/date={date.isoformat()}/truth.parquet"

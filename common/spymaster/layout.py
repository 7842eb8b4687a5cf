"""Every lake path, in one place.

The lake is Hive-partitioned by date. Layers (bronze/silver/gold) are *tables*; a table's date
partition is visible to readers only once its manifest exists (see :mod:`spymaster.lake`).

::

    raw/dataset=GLBX.MDP3/product=ES.FUT/schema=trades/date=2026-03-02/<file>.dbn.zst
    bronze/fut_trades/date=2026-03-02/part-<run>-00000.parquet
    silver/<table>/date=.../...      gold/<table>/date=.../...
    vectors/                          (the LanceDB database)
    quarantine/dataset=.../product=.../schema=.../date=.../<file>  +  <file>.reason.json
    _manifests/<layer>/<table>/date=2026-03-02.json
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


REQUIRED_RAW: tuple[RawKind, ...] = (
    RawKind(Product.FUT, "definition"),
    RawKind(Product.FUT, "trades"),
    RawKind(Product.FUT, "mbp-10"),
    RawKind(Product.OPT, "definition"),
    RawKind(Product.OPT, "trades"),
    RawKind(Product.OPT, "mbp-1"),
    RawKind(Product.OPT, "statistics"),
)
"""Every raw file a date needs before its per-date job may run."""

BRONZE_TABLES: tuple[str, ...] = tuple(k.bronze_table for k in REQUIRED_RAW)

_RAW_RE = re.compile(
    r"raw/dataset=(?P<dataset>[^/]+)/product=(?P<product>[^/]+)/schema=(?P<schema>[^/]+)/"
    r"date=(?P<date>\d{4}-\d{2}-\d{2})/(?P<name>[^/]+)$"
)


def raw_kind(product: str, schema: str) -> RawKind:
    """The :class:`RawKind` for a product/schema pair, or ``ValueError`` if we never need it."""
    kind = RawKind(Product(product), schema)
    if kind not in REQUIRED_RAW:
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
    return f"_manifests/{layer.value}/{table}"


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


QUARANTINE_ROOT = "quarantine"
RAW_ROOT = "raw"
VECTORS_DIR = "vectors"


def truth_file(date: dt.date) -> str:
    """Ground truth the synthetic generator planted for a date (never read by the pipeline)."""
    return f"synthetic/truth/date={date.isoformat()}/truth.parquet"

"""Which dates are at which layer, and what is quarantined."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from spymaster import layout, quarantine
from spymaster.lake import Lake, committed_dates, read_manifest
from spymaster.layout import Layer


@dataclass
class DateStatus:
    date: dt.date
    raw: set[layout.RawKind] = field(default_factory=set)
    bronze: set[str] = field(default_factory=set)
    quarantined: set[layout.RawKind] = field(default_factory=set)
    silver: bool = False
    gold: bool = False
    episodes: int = 0
    indexed: bool = False

    @property
    def raw_ready(self) -> bool:
        return len(self.raw) == len(layout.REQUIRED_RAW)

    @property
    def bronze_done(self) -> bool:
        return self.bronze >= set(layout.BRONZE_TABLES)

    @property
    def layer(self) -> str:
        """The furthest layer complete for this date."""
        if self.indexed:
            return "indexed"
        if self.gold:
            return "gold"
        if self.silver:
            return "silver"
        if self.bronze_done:
            return "bronze"
        if self.raw_ready:
            return "raw"
        return "partial-raw" if self.raw else "none"


def landed_raw(lake: Lake) -> dict[dt.date, set[layout.RawKind]]:
    out: dict[dt.date, set[layout.RawKind]] = {}
    for f in lake.list_files(layout.RAW_ROOT):
        try:
            k = layout.parse_raw_key(f)
        except ValueError:
            continue
        if f == layout.raw_file(k.kind, k.date):
            out.setdefault(k.date, set()).add(k.kind)
    return out


def collect(lake: Lake) -> list[DateStatus]:
    by_date: dict[dt.date, DateStatus] = {}

    def get(d: dt.date) -> DateStatus:
        return by_date.setdefault(d, DateStatus(d))

    for d, kinds in landed_raw(lake).items():
        get(d).raw |= kinds
    for table in layout.BRONZE_TABLES:
        for d in committed_dates(lake, Layer.BRONZE, table):
            get(d).bronze.add(table)
    for d in committed_dates(lake, Layer.SILVER, "state"):
        get(d).silver = True
    for d in committed_dates(lake, Layer.GOLD, "episodes"):
        get(d).gold = True
        get(d).episodes = read_manifest(lake, Layer.GOLD, "episodes", d).rows
    for f in lake.list_files("_manifests/index"):
        get(layout.date_from_partition(f)).indexed = True
    for q in quarantine.list_all(lake):
        get(dt.date.fromisoformat(q.date)).quarantined.add(layout.raw_kind(q.product, q.schema))
    return [by_date[d] for d in sorted(by_date)]
